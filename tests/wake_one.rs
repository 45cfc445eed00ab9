//! Wake one per item: a publish rings one parked async waiter, not all of them (the herd that
//! made the MPMC `worker_pool` example 7x slower with 8 workers than with 1), and a waiter
//! that was rung but is dropped before it takes the item passes the wake on, so nothing is
//! lost. A `Sink` that feeds an MPMC ring defers its wakes to the flush, which rings one
//! waiter; a rung waiter that took its share and sees work left rings the next (the chain).

#![cfg(feature = "tokio")]

mod common;

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{ShmName, kill9, read_report, report, rt, spawn, spawn_holding};
use futures::SinkExt;
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
        // Attaches to an existing MPMC channel, reports, waits for a byte on stdin, feeds `n`
        // jobs without flushing, reports, holds.
        "feed-hold" => {
            let mut tx = mpmc::Producer::open(&args[0], opts()).unwrap();
            let n: u64 = args[1].parse().unwrap();
            report("attached");
            let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
            rt().block_on(async {
                for j in 0..n {
                    tx.feed(j.to_le_bytes()).await.unwrap();
                }
            });
            report("fed");
            let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
            drop(tx);
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
            park_both(fa.as_mut(), fb.as_mut()).await;
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

/// A fed batch on MPMC rings one parked worker at the flush, not one per message (before,
/// every `feed` rang another parked worker: the herd of the `worker_pool` bench); the worker
/// rung takes its job, sees more and rings the next, without being polled again: every job
/// is taken, and nobody waits for the producer's next publish.
#[test]
fn a_fed_batch_rings_one_waiter_and_the_chain_reaches_the_next() {
    let name = ShmName::new("chain");
    let mut tx = mpmc::Producer::create(name.as_str(), opts()).unwrap();
    let mut rx_a = mpmc::Consumer::open(name.as_str(), opts()).unwrap();
    let mut rx_b = mpmc::Consumer::open(name.as_str(), opts()).unwrap();
    rt().block_on(async {
        let mut fa = pin!(rx_a.recv());
        let mut fb = pin!(rx_b.recv());
        park_both(fa.as_mut(), fb.as_mut()).await;
        until_parked(name.as_str(), 2);
        tx.feed(&b"one"[..]).await.unwrap();
        tx.feed(&b"two"[..]).await.unwrap();
        assert_eq!(tx.doorbells_rung(), 0, "feed defers the wake on MPMC");
        assert_eq!(tx.pending(), 2, "but publishes at once");
        SinkExt::<&[u8]>::flush(&mut tx).await.unwrap();
        assert_eq!(
            tx.doorbells_rung(),
            1,
            "the flush rings one waiter for the batch"
        );
        let first = tokio::time::timeout(Duration::from_secs(10), fa)
            .await
            .expect("A, the first record, is rung")
            .unwrap();
        assert_eq!(&*first, b"one");
        // Before B is polled again: its announcement was taken (rung) by A's chain.
        until_parked(name.as_str(), 0);
        let second = tokio::time::timeout(Duration::from_secs(10), fb)
            .await
            .expect("B must be rung by A's chain: the producer rang once")
            .unwrap();
        assert_eq!(&*second, b"two");
    });
    assert_eq!(rx_a.doorbells_rung(), 1, "A rang B");
}

/// While the worker a publish rang has not run yet, the next publishes ring no other worker:
/// that worker's next attempt sees them all, takes its share and rings the next (the chain),
/// so every job is still taken, each future polled only when its own waker fires. Before,
/// every publish rang another parked worker: on one CPU the `worker_pool` bench woke all 8
/// workers for each batch, 7 of them to find nothing (0.017 doorbells per job, against
/// 0.005 now).
#[test]
fn publishes_ring_no_second_worker_while_the_rung_one_has_not_run() {
    use futures::StreamExt;
    const N: usize = 8;
    let name = ShmName::new("rung-not-run");
    let mut tx = mpmc::Producer::create(name.as_str(), opts()).unwrap();
    let mut rxs: Vec<_> = (0..N)
        .map(|_| mpmc::Consumer::open(name.as_str(), opts()).unwrap())
        .collect();
    rt().block_on(async {
        let mut futs: futures::stream::FuturesUnordered<_> =
            rxs.iter_mut().map(|rx| rx.recv()).collect();
        // One poll each (through the set): every worker parks.
        assert!(futures::poll!(futs.next()).is_pending());
        until_parked(name.as_str(), N as u32);
        for job in 0..N as u64 {
            tx.try_send(job.to_le_bytes()).unwrap();
        }
        // Nobody ran between the sends: one ring (two or three if this thread was
        // descheduled for longer than the grace between two sends), not one per send.
        let rung = tx.doorbells_rung();
        assert!(
            rung < (N / 2) as u64,
            "{rung} doorbells for {N} jobs sent while the rung worker had not run"
        );
        let mut jobs = Vec::new();
        while jobs.len() < N {
            let got = tokio::time::timeout(Duration::from_secs(10), futs.next())
                .await
                .expect("every job reaches a worker: the rung one's chain wakes the rest")
                .expect("a future per job")
                .unwrap();
            jobs.push(u64::from_le_bytes(got[..8].try_into().unwrap()));
        }
        jobs.sort_unstable();
        assert_eq!(jobs, (0..N as u64).collect::<Vec<_>>());
    });
}

/// A producer that attaches after the worker parked, feeds (its wakes deferred to a flush
/// that never comes) and is killed still gets its published jobs to the parked worker: its
/// attach rang the worker, which parks again watching its pidfd, so the death wakes it.
/// (Without the join wake the worker watched only the participants it saw when it parked,
/// and slept through the feeder's death.)
#[test]
fn jobs_fed_by_a_producer_killed_before_its_flush_reach_a_parked_worker() {
    let name = ShmName::new("fed-killed");
    // Our producer stays: the channel does not end with the feeder's death.
    let _tx = mpmc::Producer::create(name.as_str(), opts()).unwrap();
    let mut rx = mpmc::Consumer::open(name.as_str(), opts()).unwrap();
    rt().block_on(async {
        // The worker's task is polled only when woken (polling it finds jobs anyway): each
        // poll gets a waker that records its wake, and the runtime runs meanwhile.
        let mut first = pin!(rx.recv());
        let (w1, joined) = flag_waker();
        assert!(
            first
                .as_mut()
                .poll(&mut Context::from_waker(&w1))
                .is_pending()
        );
        until_parked(name.as_str(), 1);
        let mut feeder = spawn_holding("feed-hold", &[name.as_str(), "2"]);
        assert_eq!(read_report(&mut feeder), "attached");
        until_woken(&joined, "the feeder's attach must wake the parked worker").await;
        let (w2, died) = flag_waker();
        assert!(
            first
                .as_mut()
                .poll(&mut Context::from_waker(&w2))
                .is_pending()
        );
        std::io::Write::write_all(feeder.0.as_mut().unwrap().stdin.as_mut().unwrap(), b"g")
            .unwrap();
        assert_eq!(read_report(&mut feeder), "fed");
        kill9(feeder.id());
        let _ = feeder.0.take().unwrap().wait();
        until_woken(&died, "the feeder's death must wake the parked worker").await;
        let got = first.await.unwrap();
        assert_eq!(u64::from_le_bytes(got[..8].try_into().unwrap()), 0);
    });
    let second = rx.try_recv().expect("the second fed job is there too");
    assert_eq!(u64::from_le_bytes(second[..8].try_into().unwrap()), 1);
}

/// Lets the runtime run until `flag` is set (bounded: a missing wake is a failure).
async fn until_woken(flag: &AtomicBool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flag.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A waker that records that it was woken.
fn flag_waker() -> (Waker, Arc<AtomicBool>) {
    struct Flag(Arc<AtomicBool>);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let flag = Arc::new(AtomicBool::new(false));
    (Waker::from(Arc::new(Flag(flag.clone()))), flag)
}

/// Polls both futures once from this task: with `park_only`, each announces and parks
/// (returns `Pending`).
async fn park_both<A: Future, B: Future>(
    mut a: std::pin::Pin<&mut A>,
    mut b: std::pin::Pin<&mut B>,
) {
    poll_fn(|cx| {
        assert!(a.as_mut().poll(cx).is_pending());
        assert!(b.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
}
