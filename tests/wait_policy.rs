//! The wait policy across CPUs (issue 11): a wait whose single peer runs on another CPU must
//! not hand its own CPU to the OS. A `sched_yield` there can only give the CPU to a stranger
//! (beside a CPU-burning process: for a whole time slice, milliseconds, while the peer's
//! messages pile up), so such a wait spins and then parks. The peer is a real second
//! process, pinned to another CPU than ours.

#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use common::{ShmName, check_message, message, report, reports, rt};
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
use shmchan::{Options, WaitStats, spsc};

const MAX: usize = 32;
/// Sent at once first: more than a producer's sends between two publications of its CPU.
const BURST: u64 = 200;
/// Then one message every `GAP`, so that every receive waits past its spin budget.
const PACED: u64 = 30;
const GAP: Duration = Duration::from_millis(2);

fn opts() -> Options {
    // Room for the burst: the producer never waits, so only its sends publish its CPU.
    common::opts(MAX, 256, None)
}

fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu);
    sched_setaffinity(None, &set).expect("pinning to a CPU we may use");
}

/// Two CPUs this process may use, if it has them.
fn two_cpus() -> Option<(usize, usize)> {
    let set = sched_getaffinity(None).ok()?;
    let mut cpus = (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c));
    Some((cpus.next()?, cpus.next()?))
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| match role {
        "paced" => {
            pin(args[1].parse().unwrap());
            let mut tx = spsc::Producer::open(&args[0], opts()).unwrap();
            for i in 0..BURST + 2 * PACED {
                if i >= BURST {
                    std::thread::sleep(GAP);
                }
                tx.send_blocking(message(0, i, MAX)).unwrap();
            }
            report("sent");
        }
        // A consumer slower than its producer: it never finds the ring empty, so it never
        // waits, and only its receives can publish its CPU.
        "slow" => {
            pin(args[1].parse().unwrap());
            let mut rx = spsc::Consumer::open(&args[0], small()).unwrap();
            for i in 0..SMALL + SMALL + 2 * PACED {
                std::thread::sleep(GAP);
                assert_eq!(check_message(&rx.recv_blocking().unwrap(), MAX), (0, i));
            }
            assert_eq!(rx.wait_stats().waits, 0, "the slow consumer waited");
            report("received");
        }
        other => panic!("unknown role {other}"),
    });
}

/// Slots of the ring the slow consumer reads: its receives publish its CPU every 64.
const SMALL: u64 = 64;

fn small() -> Options {
    common::opts(MAX, SMALL as usize, None)
}

/// Checks what the waits between `before` and `after` did: most of `PACED` operations
/// waited, and none of them handed the CPU to the OS.
fn assert_waited_without_yielding(what: &str, before: WaitStats, after: WaitStats) {
    let (waits, yields, parks) = (
        after.waits - before.waits,
        after.os_yields - before.os_yields,
        after.parks - before.parks,
    );
    assert!(
        waits >= PACED / 2,
        "{what}: only {waits} of {PACED} operations waited"
    );
    assert_eq!(
        yields, 0,
        "{what}: {yields} sched_yields in {waits} waits ({parks} parked)"
    );
}

#[test]
fn a_wait_for_a_peer_on_another_cpu_never_yields_its_cpu() {
    let Some((ours, theirs)) = two_cpus() else {
        eprintln!("skipped: this process may use only one CPU");
        return;
    };
    pin(ours);
    let name = ShmName::new("policy-elsewhere");
    let mut rx = spsc::Consumer::create(name.as_str(), opts()).unwrap();
    let child = common::spawn("paced", &[name.as_str(), &theirs.to_string()]);
    let mut i = 0;
    let mut check = |m: shmchan::Message| {
        assert_eq!(check_message(&m, MAX), (0, i));
        i += 1;
    };
    for _ in 0..BURST {
        check(rx.recv_blocking().unwrap());
    }
    // Async waits.
    let before = rx.wait_stats();
    rt().block_on(async {
        for _ in 0..PACED {
            check(rx.recv().await.unwrap());
        }
    });
    assert_waited_without_yielding("async", before, rx.wait_stats());
    // Blocking waits: the same policy.
    let before = rx.wait_stats();
    for _ in 0..PACED {
        check(rx.recv_blocking().unwrap());
    }
    assert_waited_without_yielding("blocking", before, rx.wait_stats());
    assert_eq!(reports(&child.wait_ok()), ["sent"]);
}

#[test]
fn a_wait_for_a_busy_consumer_on_another_cpu_never_yields_its_cpu() {
    // The mirror case: the producer waits for room, the consumer never waits. The consumer's
    // CPU word must come from its receives, or the producer judges by nothing.
    let Some((ours, theirs)) = two_cpus() else {
        eprintln!("skipped: this process may use only one CPU");
        return;
    };
    pin(ours);
    let name = ShmName::new("policy-slow-consumer");
    let mut tx = spsc::Producer::create(name.as_str(), small()).unwrap();
    // Full before the consumer starts, so that it never finds the ring empty.
    for i in 0..SMALL {
        tx.try_send(message(0, i, MAX)).unwrap();
    }
    let child = common::spawn("slow", &[name.as_str(), &theirs.to_string()]);
    let mut i = SMALL;
    // Every send waits for the consumer to free a slot; by the end of these it has received
    // (and published its CPU) 64 times.
    for _ in 0..SMALL {
        tx.send_blocking(message(0, i, MAX)).unwrap();
        i += 1;
    }
    let before = tx.wait_stats();
    rt().block_on(async {
        for _ in 0..PACED {
            tx.send(message(0, i, MAX)).await.unwrap();
            i += 1;
        }
    });
    assert_waited_without_yielding("async", before, tx.wait_stats());
    let before = tx.wait_stats();
    for _ in 0..PACED {
        tx.send_blocking(message(0, i, MAX)).unwrap();
        i += 1;
    }
    assert_waited_without_yielding("blocking", before, tx.wait_stats());
    assert_eq!(reports(&child.wait_ok()), ["received"]);
}
