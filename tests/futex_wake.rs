//! Futex wakes of blocked threads (`sys/futex.rs`, `wait/protocol.rs`): a publish wakes a
//! thread for it, and only that one.
//!
//! The waker takes every futex announcement of the side and then calls `FUTEX_WAKE` once for
//! all of them. It asked for `u32::MAX` waiters, which the kernel reads as the `int` -1 and
//! wakes one: the others' announcements were gone, so no later publish rang them, and they
//! slept until their liveness check. Three blocking MPMC consumer processes park, each to take
//! one message; three messages must wake all three long before that check (a minute here).

mod common;

use std::time::{Duration, Instant};

use common::{ChildGuard, ShmName};
use shmchan::{Options, mpmc};

const CONSUMERS: usize = 3;

fn opts() -> Options {
    common::parked_opts(8, 8)
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| match role {
        "take-one" => {
            let mut rx = mpmc::Consumer::open(&args[0], opts()).unwrap();
            let m = rx.recv_blocking().unwrap();
            common::report(u64::from_le_bytes(m[..8].try_into().unwrap()));
            // Stays attached (a consumer that leaves wakes the others itself) until killed.
            std::thread::sleep(Duration::from_secs(120));
        }
        other => panic!("unknown role {other}"),
    });
}

#[test]
fn one_publish_per_parked_thread_wakes_every_one_of_them() {
    let name = ShmName::new("futex-all");
    let mut tx = mpmc::Producer::create(name.as_str(), opts()).unwrap();
    let mut children: Vec<_> = (0..CONSUMERS).map(|_| take_one(name.as_str())).collect();
    wait_for_sleepers(name.as_str(), CONSUMERS, &children);
    for i in 0..CONSUMERS as u64 {
        tx.send_blocking(i.to_le_bytes()).unwrap();
    }
    // Each child takes one message and reports it; a sleeper that was never woken would
    // hold on until its liveness check, a minute from now.
    let t = Instant::now();
    let mut got: Vec<u64> = children
        .iter_mut()
        .map(|c| common::read_report(c).parse().unwrap())
        .collect();
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "a parked consumer was woken only by its liveness check, after {:?}",
        t.elapsed()
    );
    got.sort();
    assert_eq!(got, [0, 1, 2]);
}

/// A consumer process that takes one message, with unbounded parks: without membarrier
/// (`SHMCHAN_MEMBARRIER=0` in our environment) a parked thread would wake every millisecond.
fn take_one(name: &str) -> ChildGuard {
    let mut cmd = common::command("take-one", &[name]);
    cmd.env_remove("SHMCHAN_MEMBARRIER");
    ChildGuard::spawn(cmd)
}

/// Voluntary context switches of every thread of `pid` so far.
fn switches(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| {
            let status =
                std::fs::read_to_string(t.unwrap().path().join("status")).unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .map_or(0, |n| n.trim().parse::<u64>().unwrap())
        })
        .sum()
}

/// Waits until `n` consumers are parked (as the segment's header counts them) and every
/// thread of `children` is asleep: a consumer that has announced itself may still be
/// re-checking the ring (after a membarrier that can take microseconds) on its way to sleep.
fn wait_for_sleepers(name: &str, n: usize, children: &[ChildGuard]) {
    let t = Instant::now();
    loop {
        let info = shmchan::inspect::inspect(name).unwrap();
        if info.ring.as_ref().unwrap().consumer_sleepers as usize == n
            && children.iter().all(|c| common::asleep(c.id()))
        {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "never {n} sleepers: {info:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn one_publish_wakes_one_parked_thread_not_all_of_them() {
    // Each parked thread sleeps on a futex word of its own: waking the side's shared word
    // woke all three for one message (two of them to find nothing and sleep again).
    let name = ShmName::new("futex-one");
    let mut tx = mpmc::Producer::create(name.as_str(), opts()).unwrap();
    let mut children: Vec<_> = (0..CONSUMERS).map(|_| take_one(name.as_str())).collect();
    wait_for_sleepers(name.as_str(), CONSUMERS, &children);
    let before: Vec<u64> = children.iter().map(|c| switches(c.id())).collect();
    tx.send_blocking(7u64.to_le_bytes()).unwrap();
    // One child takes it (which one is up to the waker) and leaves its wait; the others
    // stay parked. A thread woken for nothing sleeps again at once (it re-announces first);
    // give a stray wake-up time to show anyway.
    wait_for_sleepers(name.as_str(), CONSUMERS - 1, &children);
    std::thread::sleep(Duration::from_millis(50));
    let woken: Vec<usize> = (0..CONSUMERS)
        .filter(|&i| switches(children[i].id()) != before[i])
        .collect();
    assert_eq!(
        woken.len(),
        1,
        "consumers {woken:?} were woken for one message"
    );
    assert_eq!(common::read_report(&mut children[woken[0]]), "7");
}
