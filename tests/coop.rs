//! Executor citizenship on tokio (issue 11): a channel task shares a current_thread runtime
//! with other tasks. An always-ready `Stream` must yield once tokio's coop budget is spent,
//! and a task waiting on a channel (spinning, yielding, parking) must delay its neighbours
//! only briefly. The peer is a real second process.

#![cfg(feature = "tokio")]

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{Rng, ShmName, check_message, message, report, reports, rt};
use futures::StreamExt;
use shmchan::{Options, WaitStats, WaitStrategy, spsc};

const MAX: usize = 32;

fn opts(capacity: usize) -> Options {
    common::opts(MAX, capacity, None)
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let name = &args[0];
        let count: u64 = args[1].parse().unwrap();
        match role {
            // Fills the ring without waiting, then leaves cleanly.
            "fill" => {
                let mut tx = spsc::Producer::open(name, opts(count as usize)).unwrap();
                for i in 0..count {
                    tx.try_send(message(0, i, MAX)).unwrap();
                }
                report("filled");
            }
            // Bursts of 1..32 messages with idle gaps of 0..1 ms, so that the consumer spins,
            // yields and parks.
            "bursts" => {
                let mut tx = spsc::Producer::open(name, opts(64)).unwrap();
                let mut rng = Rng(0xc00b);
                let mut i = 0;
                while i < count {
                    for _ in 0..(1 + rng.below(32)).min(count - i) {
                        tx.send_blocking(message(0, i, MAX)).unwrap();
                        i += 1;
                    }
                    std::thread::sleep(Duration::from_micros(rng.below(1_000)));
                }
                report("sent");
            }
            // In a process of its own (what it checks depends on how many handles of the
            // process wait): the multi_thread wait's turn before its `sched_yield`.
            "mt-turn" => mt_turn(),
            other => panic!("unknown role {other}"),
        }
    });
}

/// A task that counts its polls and records the gap between consecutive ones, until `stop`.
async fn neighbour(stop: Rc<Cell<bool>>, polls: Rc<Cell<u64>>, gaps: Rc<Cell<Vec<Duration>>>) {
    let mut last = Instant::now();
    let mut v = Vec::new();
    while !stop.get() {
        let now = Instant::now();
        v.push(now - last);
        last = now;
        polls.set(polls.get() + 1);
        tokio::task::yield_now().await;
    }
    gaps.set(v);
}

#[test]
fn an_always_ready_stream_yields_to_other_tasks() {
    const N: u64 = 16_384;
    let name = ShmName::new("coop-ready");
    let mut rx = spsc::Consumer::create(name.as_str(), opts(N as usize)).unwrap();
    let out = common::spawn("fill", &[name.as_str(), &N.to_string()]).wait_ok();
    assert_eq!(reports(&out), ["filled"]);
    assert_eq!(rx.pending(), N as usize);
    let local = tokio::task::LocalSet::new();
    let (during, got) = local.block_on(&rt(), async move {
        let stop = Rc::new(Cell::new(false));
        let polls = Rc::new(Cell::new(0));
        let gaps = Rc::new(Cell::new(Vec::new()));
        let other = tokio::task::spawn_local(neighbour(stop.clone(), polls.clone(), gaps));
        // Let the neighbour start.
        tokio::task::yield_now().await;
        let before = polls.get();
        let mut got = 0u64;
        // Every message is ready: without a coop budget this loop never returns to the
        // executor until the stream ends.
        while let Some(m) = rx.next().await {
            assert_eq!(check_message(&m.unwrap(), MAX), (0, got));
            got += 1;
        }
        let during = polls.get() - before;
        stop.set(true);
        other.await.unwrap();
        (during, got)
    });
    assert_eq!(got, N);
    // tokio's budget is 128 units per task turn, and a channel operation takes a unit every
    // 8 (`COOP_EVERY` in src/wait/reactor.rs): about N / 1024 = 16 turns of the neighbour.
    assert!(
        during >= N / (128 * 8) / 4,
        "the neighbour ran {during} times while {N} ready messages were drained"
    );
    // And not once per 128 messages (a unit per operation), where each turn cost the
    // runtime a driver poll: an `epoll_wait` per 128 messages, most of a stream's syscalls.
    assert!(
        during <= N / 256,
        "the stream gave its task back {during} times for {N} ready messages"
    );
}

#[test]
fn a_waiting_channel_task_delays_other_tasks_little() {
    const N: u64 = 3_000;
    let name = ShmName::new("coop-wait");
    let mut rx = spsc::Consumer::create(name.as_str(), opts(64)).unwrap();
    let child = common::spawn("bursts", &[name.as_str(), &N.to_string()]);
    let local = tokio::task::LocalSet::new();
    let (gaps, waited) = local.block_on(&rt(), async move {
        let stop = Rc::new(Cell::new(false));
        let polls = Rc::new(Cell::new(0));
        let gaps = Rc::new(Cell::new(Vec::new()));
        let other = tokio::task::spawn_local(neighbour(stop.clone(), polls, gaps.clone()));
        let t = Instant::now();
        for i in 0..N {
            assert_eq!(check_message(&rx.recv().await.unwrap(), MAX), (0, i));
        }
        let waited = t.elapsed();
        stop.set(true);
        other.await.unwrap();
        (gaps.take(), waited)
    });
    assert_eq!(reports(&child.wait_ok()), ["sent"]);
    let mut gaps = gaps;
    gaps.sort();
    let q = |f: f64| gaps[((gaps.len() - 1) as f64 * f) as usize];
    let (p50, p99, max) = (q(0.5), q(0.99), gaps[gaps.len() - 1]);
    println!(
        "neighbour beside a waiting channel task: {} turns in {waited:?}, gap p50 {p50:?}, p99 {p99:?}, max {max:?}",
        gaps.len()
    );
    // The policy's target is p99 < 50 µs on a quiet machine (measured alone: 73-90 µs on the
    // 2-vCPU VM, see the wait module docs); this bound only catches a task that holds the
    // executor for a whole wait budget or a scheduler slice, with room for a loaded CI host
    // running the other tests of this file beside it (seen: 2 ms and more in a full run).
    assert!(p99 < Duration::from_millis(25), "gap p99 {p99:?}");
    // The producer idles ~0.5 ms per burst: the neighbour must have run throughout.
    assert!(gaps.len() as u64 >= N / 16, "{} turns", gaps.len());
}

/// A consumer whose message comes from another future of the same task (a coordinator's
/// feeding half beside its collecting half, in one `join!`), waiting under `strategy`:
/// what its wait did, and how long the whole exchange took.
fn wait_beside_the_sender(
    rt: &tokio::runtime::Runtime,
    what: &str,
    strategy: WaitStrategy,
) -> (WaitStats, Duration) {
    let name = ShmName::new(what);
    let o = opts(8).wait_strategy(strategy);
    let mut rx = spsc::Consumer::create(name.as_str(), o.clone()).unwrap();
    let mut tx = spsc::Producer::open(name.as_str(), o).unwrap();
    rt.block_on(async move {
        let t = Instant::now();
        // The receiver is polled first and finds nothing: only the sender beside it can
        // change that, and only if the wait lets it run.
        let (got, sent) = tokio::join!(rx.recv(), tx.send(message(0, 0, MAX)));
        sent.unwrap();
        assert_eq!(check_message(&got.unwrap(), MAX), (0, 0));
        (rx.wait_stats(), t.elapsed())
    })
}

/// A wait with no spinning under tokio's multi_thread runtime, beside the sender of its
/// message in the same task: alone (its process has no other waiting handle) it hands the
/// CPU to the OS first, as a service with one peer should (the turn would halve its
/// requests/s on a shared CPU); once several handles of the process wait, it gives the
/// executor a turn first, as under current_thread, so the sender runs before any
/// `sched_yield` (without it, a multi_thread server with 4 clients on one CPU had a p99.9 of
/// 5 ms: `cargo bench --bench endpoint`).
fn mt_turn() {
    let strategy = no_spin();
    let (alone, _) = wait_beside_the_sender(&multi_thread_rt(), "coop-mt-alone", strategy);
    assert_eq!(alone.waits, 1, "{alone:?}");
    assert!(alone.os_yields >= 1, "a lone wait took a turn: {alone:?}");
    // Three more handles that have waited (and live on): a process that serves several peers.
    let rt = multi_thread_rt();
    let names: Vec<ShmName> = (0..3)
        .map(|i| ShmName::new(&format!("coop-mt-{i}")))
        .collect();
    let others: Vec<_> = names
        .iter()
        .map(|n| {
            let mut rx = spsc::Consumer::create(n.as_str(), opts(8)).unwrap();
            let waited = rt.block_on(async {
                tokio::time::timeout(Duration::from_millis(1), rx.recv()).await
            });
            assert!(waited.is_err(), "nothing was sent");
            assert_eq!(rx.wait_stats().waits, 1);
            rx
        })
        .collect();
    let (several, took) = wait_beside_the_sender(&rt, "coop-mt-several", strategy);
    assert_eq!(several.waits, 1, "{several:?}");
    assert_eq!(
        several.os_yields, 0,
        "sched_yield before the sender beside ran: {several:?}, {took:?}"
    );
    drop(others);
    report("ok");
}

#[test]
fn a_wait_of_several_gives_the_executor_a_turn_under_multi_thread() {
    let out = common::spawn("mt-turn", &["-", "0"]).wait_ok();
    assert_eq!(reports(&out), ["ok"]);
}

/// A wait that goes straight to its yield phase (no spinning), for up to 2 s.
fn no_spin() -> WaitStrategy {
    WaitStrategy::new()
        .spin_for(Duration::ZERO)
        .yield_until(Duration::from_secs(2))
}

fn multi_thread_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_spinning_wait_lets_the_futures_beside_it_run() {
    // A spin budget of 2 s: a wait that spins inside `poll` for its whole budget holds back
    // the sender beside it for 2 s and then parks; one that spins a round at a time lets it
    // run at once and finds the message while still spinning.
    let strategy = WaitStrategy::new()
        .spin_for(Duration::from_secs(2))
        .yield_until(Duration::from_secs(2));
    let (stats, took) = wait_beside_the_sender(&rt(), "coop-spin-beside", strategy);
    assert_eq!(stats.waits, 1, "{stats:?}");
    assert_eq!(stats.parks, 0, "the wait parked: {stats:?}, {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn a_wait_runs_the_futures_beside_it_before_it_yields_to_the_os() {
    // No spinning: the wait goes straight to its yield phase, which must give the executor
    // (the sender beside it) a turn before it hands the CPU to another process, which on a
    // shared CPU runs for a while.
    let strategy = no_spin();
    // (Under tokio's multi_thread runtime the wait gives that turn only while its process
    // has several waiting handles, as this test process may or may not have: `mt_turn`
    // checks both cases in a process of its own. Either way the sender beside runs.)
    let (stats, took) = wait_beside_the_sender(&rt(), "coop-yield-beside", strategy);
    assert_eq!(stats.waits, 1, "{stats:?}");
    assert_eq!(
        stats.os_yields, 0,
        "sched_yield before the sender beside ran: {stats:?}, {took:?}"
    );
    assert_eq!(stats.parks, 0, "{stats:?}");
    let (stats, _) = wait_beside_the_sender(&multi_thread_rt(), "coop-yield-beside-mt", strategy);
    assert_eq!(stats.waits, 1, "multi_thread: {stats:?}");
}
