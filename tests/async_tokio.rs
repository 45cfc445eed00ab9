//! Async channels on tokio, across real processes: streams with bursts and idle gaps (so that
//! consumers really park on their doorbells), blocking <-> async in both directions,
//! `select!` / `timeout` loops that lose and duplicate nothing, Sink and Stream, and a death
//! wake that comes from the peer's pidfd, not from the liveness interval.

#![cfg(feature = "tokio")]

mod common;

use std::time::{Duration, Instant};

use common::{Rng, ShmName, check_message, kill9, message, read_report, report, reports, rt};
use futures::{SinkExt, StreamExt};
use shmchan::{Error, Options, WaitStrategy, mpsc, spsc};

const MAX: usize = 64;

fn opts() -> Options {
    common::opts(MAX, 16, common::ms(50))
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let name = &args[0];
        match role {
            // Async producer: bursts of 1..64 messages separated by idle gaps of 0..2 ms.
            "async-bursts" => {
                let count: u64 = args[1].parse().unwrap();
                rt().block_on(async {
                    let mut tx = spsc::Producer::open(name, opts()).unwrap();
                    let mut rng = Rng(0x5eed);
                    let mut i = 0;
                    while i < count {
                        let burst = 1 + rng.below(64);
                        for _ in 0..burst.min(count - i) {
                            tx.send(message(0, i, MAX)).await.unwrap();
                            i += 1;
                        }
                        let gap = rng.below(2_000);
                        tokio::time::sleep(Duration::from_micros(gap)).await;
                    }
                });
                report("sent");
            }
            // Blocking producer with idle gaps, for an async consumer.
            "blocking-bursts" => {
                let count: u64 = args[1].parse().unwrap();
                let mut tx = spsc::Producer::open(name, opts()).unwrap();
                let mut rng = Rng(0xb10c);
                for i in 0..count {
                    tx.send_blocking(message(0, i, MAX)).unwrap();
                    if rng.below(50) == 0 {
                        std::thread::sleep(Duration::from_micros(rng.below(1_500)));
                    }
                }
                report("sent");
            }
            // Blocking consumer, for an async producer.
            "blocking-consumer" => {
                let count: u64 = args[1].parse().unwrap();
                let mut rx = spsc::Consumer::open(name, opts()).unwrap();
                for i in 0..count {
                    assert_eq!(check_message(&rx.recv_blocking().unwrap(), MAX), (0, i));
                }
                assert!(matches!(rx.recv_blocking(), Err(Error::Closed)));
                report("received");
            }
            // Slow async producer for the select! test: one message every ~0..3 ms.
            "slow" => {
                let count: u64 = args[1].parse().unwrap();
                rt().block_on(async {
                    let mut tx = mpsc::Producer::open(name, opts()).unwrap();
                    let mut rng = Rng(7);
                    for i in 0..count {
                        tx.send(message(0, i, MAX)).await.unwrap();
                        tokio::time::sleep(Duration::from_micros(rng.below(3_000))).await;
                    }
                });
                report("sent");
            }
            // Attaches as producer and never sends; the parent kills it.
            "idle-producer" => {
                common::ready_then_idle(spsc::Producer::open(name, opts()).unwrap());
            }
            other => panic!("unknown role {other}"),
        }
    });
}

#[test]
fn async_to_async_with_bursts_and_idle_gaps_current_thread() {
    const N: u64 = 20_000;
    let name = ShmName::new("aa-ct");
    rt().block_on(async {
        let mut rx = spsc::Consumer::create(name.as_str(), opts()).unwrap();
        let child = common::spawn("async-bursts", &[name.as_str(), &N.to_string()]);
        let mut i = 0;
        while let Some(m) = rx.next().await {
            assert_eq!(check_message(&m.unwrap(), MAX), (0, i));
            i += 1;
        }
        assert_eq!(i, N, "the stream ended early");
        assert_eq!(reports(&child.wait_ok()), ["sent"]);
        assert!(rx.next().await.is_none(), "a fused stream stays ended");
    });
}

#[test]
fn blocking_producer_wakes_async_consumer_on_multi_thread() {
    const N: u64 = 20_000;
    let name = ShmName::new("ba-mt");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rx = spsc::Consumer::create(name.as_str(), opts()).unwrap();
    let child = common::spawn("blocking-bursts", &[name.as_str(), &N.to_string()]);
    let got = rt.block_on(async move {
        tokio::spawn(async move {
            let mut i = 0;
            loop {
                match rx.recv().await {
                    Ok(m) => {
                        assert_eq!(check_message(&m, MAX), (0, i));
                        i += 1;
                    }
                    Err(Error::Closed) => return i,
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .await
        .unwrap()
    });
    assert_eq!(got, N);
    assert_eq!(reports(&child.wait_ok()), ["sent"]);
}

#[test]
fn async_producer_wakes_blocking_consumer() {
    const N: u64 = 20_000;
    let name = ShmName::new("ab");
    let mut tx = spsc::Producer::create(name.as_str(), opts()).unwrap();
    let child = common::spawn("blocking-consumer", &[name.as_str(), &N.to_string()]);
    rt().block_on(async {
        let mut rng = Rng(3);
        for i in 0..N {
            tx.send(message(0, i, MAX)).await.unwrap();
            if rng.below(100) == 0 {
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }
    });
    drop(tx);
    assert_eq!(reports(&child.wait_ok()), ["received"]);
}

#[test]
fn select_and_timeout_loops_lose_and_duplicate_nothing() {
    const N: u64 = 600;
    let name = ShmName::new("select");
    rt().block_on(async {
        let mut rx = mpsc::Consumer::create(name.as_str(), opts()).unwrap();
        let child = common::spawn("slow", &[name.as_str(), &N.to_string()]);
        let (mut next, mut ticks, mut timeouts) = (0u64, 0u64, 0u64);
        while next < N {
            if next % 2 == 0 {
                tokio::select! {
                    m = rx.recv() => {
                        assert_eq!(check_message(&m.unwrap(), MAX), (0, next));
                        next += 1;
                    }
                    _ = tokio::time::sleep(Duration::from_micros(700)) => ticks += 1,
                }
            } else {
                match tokio::time::timeout(Duration::from_micros(700), rx.recv()).await {
                    Ok(m) => {
                        assert_eq!(check_message(&m.unwrap(), MAX), (0, next));
                        next += 1;
                    }
                    Err(_) => timeouts += 1,
                }
            }
        }
        assert!(matches!(rx.recv().await, Err(Error::Closed)));
        assert!(
            ticks + timeouts > 0,
            "the cancellation paths were never taken"
        );
        println!("{ticks} select ticks, {timeouts} timeouts cancelled a pending recv");
        assert_eq!(reports(&child.wait_ok()), ["sent"]);
    });
}

#[test]
fn sink_and_stream_round_trip() {
    let name = ShmName::new("sink");
    rt().block_on(async {
        let mut tx = mpsc::Producer::create(name.as_str(), opts()).unwrap();
        let mut rx = mpsc::Consumer::open(name.as_str(), opts()).unwrap();
        let reader = async {
            let mut got = Vec::new();
            while let Some(m) = rx.next().await {
                got.push(m.unwrap().into_vec());
            }
            got
        };
        let writer = async {
            let mut items =
                futures::stream::iter((0..100u32).map(|i| Ok(i.to_le_bytes().to_vec())));
            tx.send_all(&mut items).await.unwrap();
            tx.feed(b"fed".to_vec()).await.unwrap();
            SinkExt::<Vec<u8>>::flush(&mut tx).await.unwrap();
            SinkExt::<Vec<u8>>::close(&mut tx).await.unwrap();
            drop(tx);
        };
        let (got, ()) = tokio::join!(reader, writer);
        assert_eq!(got.len(), 101);
        for (i, m) in got[..100].iter().enumerate() {
            assert_eq!(m, &(i as u32).to_le_bytes());
        }
        assert_eq!(got[100], b"fed");
    });
}

#[test]
fn a_killed_peer_wakes_a_parked_task_through_its_pidfd() {
    let name = ShmName::new("deathwake");
    // A liveness interval far longer than the test: only the pidfd can wake the task in time.
    let slow = opts().liveness_interval(Duration::from_secs(30));
    rt().block_on(async {
        let mut rx = spsc::Consumer::create(name.as_str(), slow).unwrap();
        let mut child = common::spawn("idle-producer", &[name.as_str()]);
        assert_eq!(read_report(&mut child), "ready");
        let pid = child.id();
        let waiter = async {
            let r = rx.recv().await;
            (r, Instant::now())
        };
        let killer = async {
            tokio::time::sleep(Duration::from_millis(100)).await; // let the task park
            kill9(pid);
            Instant::now()
        };
        let ((r, woke), killed) = tokio::join!(waiter, killer);
        assert!(matches!(r, Err(Error::PeerGone(_))), "{r:?}");
        let lag = woke.saturating_duration_since(killed);
        assert!(lag < Duration::from_secs(2), "woken {lag:?} after the kill");
        println!("death seen {lag:?} after SIGKILL");
    });
}

#[test]
fn parked_send_is_woken_when_space_frees() {
    let name = ShmName::new("asyncfull");
    rt().block_on(async {
        let park = opts().capacity(2).wait_strategy(WaitStrategy::park_only());
        let mut tx = spsc::Producer::create(name.as_str(), park.clone()).unwrap();
        let mut rx = spsc::Consumer::open(name.as_str(), park).unwrap();
        tx.send(b"1").await.unwrap();
        tx.send(b"2").await.unwrap();
        let sender = async {
            tx.send(b"3").await.unwrap(); // parks: the ring is full
        };
        let receiver = async {
            tokio::task::yield_now().await;
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(rx.recv().await.unwrap().into_vec());
            }
            got
        };
        let ((), got) = tokio::join!(sender, receiver);
        assert_eq!(got, [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
    });
}
