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
use shmchan::{Options, spsc};

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
    // tokio's budget is 128 polls per task turn: about N / 128 = 128 turns of the neighbour.
    assert!(
        during >= N / 128 / 4,
        "the neighbour ran {during} times while {N} ready messages were drained"
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
