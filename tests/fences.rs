//! Asymmetric fences (`sys/membarrier.rs`): a publish fences only against the compiler, and a
//! waiter that parks makes the kernel fence every CPU that runs a registered process. A
//! lost wake-up would leave a parked side asleep until its liveness check (set to a minute
//! here), so every hop of these ping-pongs, where each side parks for every message
//! (`WaitStrategy::park_only`), is held to a bound far below that. Real processes on both
//! sides, in each mix of modes: both registered, and one of them with membarrier turned off
//! (`SHMCHAN_MEMBARRIER=0`: full fences as a waker; as a waiter it cannot know whether its
//! wakers fence, so its parks are bounded by 1 ms instead).
//!
//! Parking for every message puts a registered side in *fenced mode* (`wait/protocol.rs`):
//! after its first parks it parks with a plain fence and its wakers fence fully, so these
//! ping-pongs test that mode's wake-ups too, and check that it is used (few barriers); the
//! last tests check that a waiter in the mode takes its unit of the fenced count off when it
//! leaves, and that a dead one's is taken off when its record is released.

#![cfg(feature = "tokio")]

mod common;

use std::time::{Duration, Instant};

use common::{ChildGuard, ShmName, command, report, reports, rt};
use shmchan::{Options, mpmc, spsc};

const TRIPS: u64 = 1000;
/// A hop that takes this long lost its wake-up (the liveness check would end it after a
/// minute); a parked hop takes well under a millisecond.
const HOP_BOUND: Duration = Duration::from_secs(10);

fn opts() -> Options {
    common::parked_opts(8, 4)
}

/// Room for a burst of [`BURST`] messages.
fn busy_opts() -> Options {
    common::parked_opts(8, 512)
}

/// More publishes than the fenced checks a waiter in fenced mode lets its wakers make
/// between its parks (`FENCED_CHECKS`, 256): each `try_send` of the burst is one.
const BURST: u64 = 400;

/// More messages than a waiter in fenced mode takes without a park before it leaves the mode
/// whatever the fenced-checks counter says (`FENCED_IDLE_LOOKS` looks of 64 operations).
const UNCOUNTED_BURST: u64 = 4400;

/// Batches a `batch-consumer` child receives, each fed and flushed at once.
const BATCHES: u64 = 40;
/// Messages per batch: far more ring positions between the child's parks than a park within
/// `FENCED_ITEMS` (8, before 2026-12-03 evening) of the previous one entered the mode with.
const BATCH: u64 = 64;

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let names = || (args[0].as_str(), args[1].as_str());
        match role {
            "echo-blocking" => {
                let (ab, ba) = names();
                let mut rx = spsc::Consumer::open(ab, opts()).unwrap();
                let mut tx = spsc::Producer::open(ba, opts()).unwrap();
                for i in 0..TRIPS {
                    let m = rx.recv_blocking().unwrap();
                    assert_eq!(m[..], i.to_le_bytes());
                    tx.send_blocking(m).unwrap();
                }
                report_stats(&rx.wait_stats());
            }
            "echo-async" => rt().block_on(async {
                let (ab, ba) = names();
                let mut rx = spsc::Consumer::open(ab, opts()).unwrap();
                let mut tx = spsc::Producer::open(ba, opts()).unwrap();
                for i in 0..TRIPS {
                    let m = rx.recv().await.unwrap();
                    assert_eq!(m[..], i.to_le_bytes());
                    tx.send(m).await.unwrap();
                }
                report_stats(&rx.wait_stats());
            }),
            // Receives 8 messages, each after a park (fenced mode), says so, waits for the
            // parent's line on stdin (a burst is queued by then), drains it without waiting,
            // says so, and leaves when stdin closes.
            "fenced-then-busy" => {
                use std::io::BufRead;
                let mut rx = spsc::Consumer::open(names().0, busy_opts()).unwrap();
                for _ in 0..8 {
                    rx.recv_blocking().unwrap();
                }
                report("fenced");
                let mut stdin = std::io::stdin().lock();
                stdin.read_line(&mut String::new()).unwrap();
                let parks = rx.wait_stats().parks;
                let mut got = 0;
                while rx.try_recv().is_ok() {
                    got += 1;
                }
                assert_eq!(rx.wait_stats().parks, parks, "drained without parking");
                report(format!("drained {got}"));
                stdin.read_line(&mut String::new()).unwrap();
            }
            // Started with membarrier turned off (a waker that fences every wake check itself
            // and so does not count fenced checks, as a build before the counter did not):
            // creates the ring, feeds a consumer one message per park until it is in fenced
            // mode, then at the parent's line a burst of UNCOUNTED_BURST, and holds the ring
            // until stdin closes.
            "uncounted-producer" => {
                use std::io::BufRead;
                let name = names().0;
                let mut tx = spsc::Producer::create(name, common::parked_opts(8, 8192)).unwrap();
                report("created");
                for i in 0..8u64 {
                    until_consumer_parked(name);
                    tx.send_blocking(i.to_le_bytes()).unwrap();
                }
                report("fed");
                let mut stdin = std::io::stdin().lock();
                stdin.read_line(&mut String::new()).unwrap();
                for i in 0..UNCOUNTED_BURST {
                    tx.try_send(i.to_le_bytes()).unwrap();
                }
                report("sent");
                stdin.read_line(&mut String::new()).unwrap();
            }
            // Receives BATCHES batches of BATCH messages as a pool's worker does (a task,
            // `recv_many`), parking between them (the parent feeds the next batch once we
            // parked), and reports what its waits did.
            "batch-consumer" => rt().block_on(async {
                let mut rx = mpmc::Consumer::open(names().0, busy_opts()).unwrap();
                let (mut next, mut batch) = (0u64, Vec::new());
                while next < BATCHES * BATCH {
                    batch.clear();
                    rx.recv_many(&mut batch, BATCH as usize).await.unwrap();
                    for m in &batch {
                        assert_eq!(m[..], next.to_le_bytes());
                        next += 1;
                    }
                }
                report_stats(&rx.wait_stats());
            }),
            // Receives from a parent that sends only once we parked, then waits parked for a
            // last message: a stop (leave cleanly), or SIGKILL.
            "fenced-consumer" => {
                let mut rx = spsc::Consumer::open(names().0, opts()).unwrap();
                loop {
                    let m = rx.recv_blocking().unwrap();
                    if m[..] == u64::MAX.to_le_bytes() {
                        break;
                    }
                }
                report_stats(&rx.wait_stats());
            }
            // Started with membarrier turned off: drives a registered echo.
            "drive" => {
                ping_pong("echo-blocking", None, false);
                ping_pong("echo-async", None, true);
                report("done");
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// Runs `TRIPS` round trips against an echoing child started with `child_env` (the value of
/// `SHMCHAN_MEMBARRIER`, or none), asserting every hop within `HOP_BOUND` and that both
/// sides parked for many messages (so the wake path is what was tested; nearly all of them
/// when nothing slows a side down).
fn ping_pong(role: &str, child_env: Option<&str>, parent_async: bool) {
    let (ab, ba) = (ShmName::new("fence-ab"), ShmName::new("fence-ba"));
    let mut tx = spsc::Producer::create(ab.as_str(), opts()).unwrap();
    let mut rx = spsc::Consumer::create(ba.as_str(), opts()).unwrap();
    let mut cmd = command(role, &[ab.as_str(), ba.as_str()]);
    if let Some(v) = child_env {
        cmd.env("SHMCHAN_MEMBARRIER", v);
    } else {
        cmd.env_remove("SHMCHAN_MEMBARRIER");
    }
    let child = ChildGuard::spawn(cmd);
    let mut slowest = Duration::ZERO;
    let rt = rt();
    for i in 0..TRIPS {
        let t = Instant::now();
        let m = if parent_async {
            rt.block_on(async {
                tx.send(i.to_le_bytes()).await.unwrap();
                rx.recv().await.unwrap()
            })
        } else {
            tx.send_blocking(i.to_le_bytes()).unwrap();
            rx.recv_blocking().unwrap()
        };
        assert_eq!(m[..], i.to_le_bytes());
        slowest = slowest.max(t.elapsed());
        assert!(
            slowest < HOP_BOUND,
            "round trip {i} took {slowest:?}: a wake-up was lost"
        );
    }
    let out = child.wait_ok();
    let (parks, barriers) = child_stats(&out);
    assert!(
        parks > TRIPS / 10,
        "the child parked for {parks} of {TRIPS} messages"
    );
    let ours = rx.wait_stats();
    assert!(ours.parks > TRIPS / 10, "we parked for {ours:?}");
    // A registered side that parks for nearly every message is in fenced mode after its
    // first parks: a barrier for few of them. A side without membarrier never uses the mode.
    if child_env.is_none() {
        assert!(
            barriers * 4 < parks,
            "the child paid {barriers} barriers for {parks} parks"
        );
    }
    if !barriers_off() {
        assert!(ours.barriers * 4 < ours.parks, "we: {ours:?}");
    }
}

/// Whether this process runs without membarrier (`SHMCHAN_MEMBARRIER=0`): it never uses
/// fenced mode, whose first park needs this process's barrier.
fn barriers_off() -> bool {
    std::env::var_os("SHMCHAN_MEMBARRIER").is_some_and(|v| v == "0")
}

fn report_stats(s: &shmchan::WaitStats) {
    report(format!("parks {} barriers {}", s.parks, s.barriers));
}

/// The child's parks and barriers, from its report.
fn child_stats(out: &std::process::Output) -> (u64, u64) {
    let line = reports(out)
        .into_iter()
        .find(|l| l.starts_with("parks "))
        .expect("the child's report");
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

/// The consumers in fenced mode on `name`, as `inspect` reads the ring.
fn consumers_fenced(name: &str) -> u32 {
    shmchan::inspect::inspect(name)
        .unwrap()
        .ring
        .unwrap()
        .consumer_fenced
}

/// Waits (with a bound: a wake-up lost by the mode would show here) until the consumer of
/// `name` has announced that it sleeps.
fn until_consumer_parked(name: &str) {
    let t = Instant::now();
    while shmchan::inspect::inspect(name)
        .unwrap()
        .ring
        .unwrap()
        .consumer_sleepers
        == 0
    {
        assert!(t.elapsed() < HOP_BOUND, "the consumer never parked");
        std::thread::yield_now();
    }
}

/// Feeds a `fenced-consumer` child one message per park until it is in fenced mode, and
/// leaves it parked for the next.
fn fenced_consumer(name: &ShmName, tx: &mut spsc::Producer) -> ChildGuard {
    let child = common::spawn_holding("fenced-consumer", &[name.as_str(), ""]);
    for i in 0..8u64 {
        until_consumer_parked(name.as_str());
        tx.send_blocking(i.to_le_bytes()).unwrap();
    }
    until_consumer_parked(name.as_str());
    assert_eq!(
        consumers_fenced(name.as_str()),
        1,
        "a consumer that parked for each of 8 messages is in fenced mode"
    );
    child
}

#[test]
fn a_waiter_in_fenced_mode_takes_its_unit_off_when_it_leaves() {
    if barriers_off() {
        return;
    }
    let name = ShmName::new("fence-leave");
    let mut tx = spsc::Producer::create(name.as_str(), opts()).unwrap();
    let child = fenced_consumer(&name, &mut tx);
    tx.send_blocking(u64::MAX.to_le_bytes()).unwrap();
    let (parks, barriers) = child_stats(&child.wait_ok());
    assert!(
        parks >= 9 && barriers < parks,
        "{parks} parks, {barriers} barriers"
    );
    assert_eq!(
        consumers_fenced(name.as_str()),
        0,
        "left cleanly, still counted"
    );
}

#[test]
fn a_dead_waiters_unit_of_the_fenced_count_is_taken_off_with_its_record() {
    if barriers_off() {
        return;
    }
    let name = ShmName::new("fence-dead");
    let mut tx = spsc::Producer::create(name.as_str(), opts()).unwrap();
    let child = fenced_consumer(&name, &mut tx);
    common::kill9(child.id());
    let _ = child.wait();
    // Its record still holds the unit: the producer keeps fencing until it is released.
    assert_eq!(consumers_fenced(name.as_str()), 1);
    // A replacement consumer releases the dead one's record first.
    let rx = spsc::Consumer::open(name.as_str(), opts()).unwrap();
    assert_eq!(
        consumers_fenced(name.as_str()),
        0,
        "the dead consumer's unit outlived its record"
    );
    drop(rx);
}

#[test]
fn parked_round_trips_between_registered_processes_lose_no_wake_up() {
    ping_pong("echo-blocking", None, false);
    ping_pong("echo-async", None, true);
}

#[test]
fn a_peer_without_membarrier_loses_no_wake_up_either_way() {
    // The child wakes with full fences and parks bounded; we wake with light fences.
    ping_pong("echo-blocking", Some("0"), false);
    ping_pong("echo-async", Some("0"), true);
    ping_pong("echo-async", Some("0"), false);
}

#[test]
fn a_process_without_membarrier_loses_no_wake_up_of_a_registered_peer() {
    // We wake with full fences and park bounded; the echo wakes with light fences.
    let mut cmd = command("drive", &[]);
    cmd.env("SHMCHAN_MEMBARRIER", "0");
    let out = ChildGuard::spawn(cmd).wait_ok();
    assert_eq!(reports(&out), ["done"]);
}

#[test]
fn a_waiter_in_fenced_mode_leaves_it_when_its_stream_turns_busy() {
    use std::io::Write;
    if barriers_off() {
        return;
    }
    let name = ShmName::new("fence-busy");
    let mut tx = spsc::Producer::create(name.as_str(), busy_opts()).unwrap();
    let mut child = common::spawn_holding("fenced-then-busy", &[name.as_str(), ""]);
    for i in 0..8u64 {
        until_consumer_parked(name.as_str());
        tx.send_blocking(i.to_le_bytes()).unwrap();
    }
    assert_eq!(common::read_report(&mut child), "fenced");
    assert_eq!(
        consumers_fenced(name.as_str()),
        1,
        "parked for each of 8 messages"
    );
    for i in 0..BURST {
        tx.try_send(i.to_le_bytes()).unwrap();
    }
    let mut stdin = child.0.as_mut().unwrap().stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
    assert_eq!(common::read_report(&mut child), format!("drained {BURST}"));
    // 400 messages (and as many fenced wake checks) without a park: the producer need not
    // fence for it any more.
    assert_eq!(
        consumers_fenced(name.as_str()),
        0,
        "a consumer that stopped parking kept its wakers fencing"
    );
    drop(stdin);
    child.wait_ok();
}

/// A waiter that parks once per batch (a worker of a pool, a collector between bursts), its
/// waker checking once per batch (`feed`, then one `flush`), parks in fenced mode although
/// its parks are 64 ring positions apart: what decides is what the mode costs the waker (one
/// fenced check per batch), not the distance. Before, every park paid a `membarrier` (an
/// interrupt to the other CPU: `cargo bench --bench worker_pool`, 8 workers).
#[test]
fn a_waiter_parked_between_batches_stays_in_fenced_mode() {
    use futures::SinkExt;
    if barriers_off() {
        return;
    }
    let name = ShmName::new("fence-batch");
    // MPMC, as a worker pool: each fed message is visible at once, the wake waits for the
    // flush (an SPSC `feed` wakes a parked consumer at once, and its parks then come one
    // position apart while it catches up).
    let mut tx = mpmc::Producer::create(name.as_str(), busy_opts()).unwrap();
    let child = common::spawn_holding("batch-consumer", &[name.as_str(), ""]);
    let rt = rt();
    for b in 0..BATCHES {
        until_consumer_parked(name.as_str());
        rt.block_on(async {
            for i in b * BATCH..(b + 1) * BATCH {
                tx.feed(i.to_le_bytes()).await.unwrap();
            }
            tx.flush().await.unwrap();
        });
    }
    let (parks, barriers) = child_stats(&child.wait_ok());
    assert!(parks >= BATCHES, "{parks} parks for {BATCHES} batches");
    assert!(
        barriers * 4 < parks,
        "{barriers} barriers for {parks} parks between batches"
    );
}

/// A waiter in fenced mode whose wakers do not count their fenced checks (a build before the
/// counter, here a producer without membarrier, which fences every wake check itself) still
/// leaves the mode once it goes 64 of its looks (4,096 operations) without a park, so such a
/// waker never fences for it forever.
#[test]
fn a_waiter_in_fenced_mode_leaves_it_even_when_its_wakers_do_not_count() {
    use std::io::Write;
    if barriers_off() {
        return;
    }
    let name = ShmName::new("fence-uncounted");
    let mut cmd = command("uncounted-producer", &[name.as_str(), ""]);
    cmd.stdin(std::process::Stdio::piped());
    cmd.env("SHMCHAN_MEMBARRIER", "0");
    let mut producer = ChildGuard::spawn(cmd);
    assert_eq!(common::read_report(&mut producer), "created");
    let mut consumer = common::spawn_holding("fenced-then-busy", &[name.as_str(), ""]);
    assert_eq!(common::read_report(&mut consumer), "fenced");
    assert_eq!(common::read_report(&mut producer), "fed");
    assert_eq!(
        consumers_fenced(name.as_str()),
        1,
        "parked for each of 8 messages"
    );
    let mut to_producer = producer.0.as_mut().unwrap().stdin.take().unwrap();
    writeln!(to_producer, "go").unwrap();
    assert_eq!(common::read_report(&mut producer), "sent");
    let mut to_consumer = consumer.0.as_mut().unwrap().stdin.take().unwrap();
    writeln!(to_consumer, "go").unwrap();
    assert_eq!(
        common::read_report(&mut consumer),
        format!("drained {UNCOUNTED_BURST}")
    );
    assert_eq!(
        consumers_fenced(name.as_str()),
        0,
        "a consumer whose wakers do not count stayed in fenced mode"
    );
    drop((to_consumer, to_producer));
    consumer.wait_ok();
    producer.wait_ok();
}
