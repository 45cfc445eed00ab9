//! Wake one per item: a publish rings one parked async waiter, not all of them (the herd that
//! made the MPMC `worker_pool` example 7x slower with 8 workers than with 1), and a waiter
//! that was rung but is dropped before it takes the item passes the wake on, so nothing is
//! lost.

#![cfg(feature = "tokio")]

mod common;

use std::future::poll_fn;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use common::{ShmName, report, rt, spawn};
use shmchan::{Error, Options, WaitStrategy, mpmc};

fn opts() -> Options {
    common::opts(16, 16, None).wait_strategy(WaitStrategy::park_only())
}

/// Waits (bounded) until `want` consumers of `name` are announced as parked.
fn until_parked(name: &str, want: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = shmchan::inspect::inspect(name).unwrap();
        let parked = info.ring.map(|r| r.consumer_sleepers).unwrap_or(0);
        if parked == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{parked} of {want} consumers parked after 20 s"
        );
        std::thread::yield_now();
    }
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| match role {
        // An async MPMC worker: receives until the channel closes, reports how many.
        "worker" => {
            let mut rx = mpmc::Consumer::open(&args[0], opts()).unwrap();
            let got = rt().block_on(async {
                let mut got = 0u32;
                loop {
                    match rx.recv().await {
                        Ok(_) => got += 1,
                        Err(Error::Closed) => break got,
                        Err(e) => panic!("worker: {e}"),
                    }
                }
            });
            report(format!("got {got}"));
        }
        other => panic!("unknown role {other}"),
    });
}

#[test]
fn a_publish_rings_one_parked_worker_not_all() {
    const WORKERS: u32 = 4;
    let name = ShmName::new("wake-one");
    let mut tx = mpmc::Producer::create(name.as_str(), opts()).unwrap();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| spawn("worker", &[name.as_str()]))
        .collect();
    for job in 1..=3u64 {
        until_parked(name.as_str(), WORKERS);
        tx.try_send(job.to_le_bytes()).unwrap();
        assert_eq!(
            tx.doorbells_rung(),
            job,
            "one job rings one of the {WORKERS} parked workers"
        );
    }
    until_parked(name.as_str(), WORKERS);
    drop(tx); // a clean close wakes every worker
    let total: u32 = workers
        .into_iter()
        .map(|w| {
            let out = w.wait_ok();
            let line = common::reports(&out).pop().expect("a report");
            line.strip_prefix("got ").unwrap().parse::<u32>().unwrap()
        })
        .sum();
    assert_eq!(total, 3, "every job received exactly once");
}

#[test]
fn a_rung_waiter_dropped_before_it_takes_the_item_passes_the_wake_on() {
    let name = ShmName::new("pass-on");
    let mut tx = mpmc::Producer::create(name.as_str(), opts()).unwrap();
    // A is attached first, so a waker scanning the records rings A before B.
    let mut rx_a = mpmc::Consumer::open(name.as_str(), opts()).unwrap();
    let mut rx_b = mpmc::Consumer::open(name.as_str(), opts()).unwrap();
    rt().block_on(async {
        let mut fb = pin!(rx_b.recv());
        {
            let mut fa = pin!(rx_a.recv());
            // Both park (park_only: the first poll announces and returns Pending).
            poll_fn(|cx| {
                assert!(fa.as_mut().poll(cx).is_pending());
                assert!(fb.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            until_parked(name.as_str(), 2);
            tx.try_send(b"job").unwrap();
            assert_eq!(tx.doorbells_rung(), 1);
            // A's future is dropped here, rung and never polled again.
        }
        assert_eq!(
            rx_a.doorbells_rung(),
            1,
            "A was the one rung, and passed the wake on to B"
        );
        let got = tokio::time::timeout(Duration::from_secs(10), fb)
            .await
            .expect("B must be woken: the wake A did not use was passed on")
            .unwrap();
        assert_eq!(&*got, b"job");
    });
}
