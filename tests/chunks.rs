//! Chunks across processes: a producer process sends in chunks (`reserve_many`, a `write`
//! per message, one `commit`), and the consumer takes them in chunks (`recv_chunk`, waiting
//! while the ring is empty, a `read` per message into its own buffer): every message arrives,
//! in order, with its length, and the end of the stream is `Closed` once all were read.
//! The same on the Vyukov rings: MPSC producer processes sending chunks side by side into one
//! consumer's `recv_chunk`, an MPMC producer's chunks taken by consumer processes, and a
//! producer killed while it holds a chunk: its slots are skipped, all of them at once, and
//! the other producers' messages behind them arrive.

#![cfg(feature = "tokio")]

mod common;

use std::time::{Duration, Instant};

use common::{ShmName, kill9, read_report, report, rt, spawn, spawn_holding};
use shmchan::{Error, Options, mpmc, mpsc, spsc};

const N: u64 = 20_000;

fn opts() -> Options {
    common::opts(16, 64, None)
}

/// Message `i`: its number, then `i % 9` bytes of `i as u8`.
fn message(i: u64) -> Vec<u8> {
    let mut m = i.to_le_bytes().to_vec();
    m.extend(std::iter::repeat_n(i as u8, (i % 9) as usize));
    m
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| match role {
        // Sends N messages in chunks of 1 to 64 slots, then leaves (a clean close).
        "chunk-send" => {
            let mut tx = spsc::Producer::open(&args[0], opts()).unwrap();
            rt().block_on(async {
                let mut i = 0;
                while i < N {
                    let k = ((i % 64) + 1).min(N - i) as usize;
                    let mut chunk = tx.reserve_many(k).await.unwrap();
                    for j in 0..k {
                        chunk.write(j, &message(i + j as u64)).unwrap();
                    }
                    chunk.commit(k);
                    i += k as u64;
                }
            });
        }
        // MPSC (args: name, stream): N messages of stream `stream` in chunks of 1 to 64.
        "mpsc-chunk-send" => {
            let mut tx = mpsc::Producer::open(&args[0], opts()).unwrap();
            let stream: u64 = args[1].parse().unwrap();
            rt().block_on(async {
                let mut i = 0;
                while i < N {
                    let k = ((i % 64) + 1).min(N - i) as usize;
                    let mut chunk = tx.reserve_many(k).await.unwrap();
                    for j in 0..k {
                        chunk.write(j, &tagged(stream, i + j as u64)).unwrap();
                    }
                    chunk.commit(k);
                    i += k as u64;
                }
            });
        }
        // MPMC consumer (args: name): takes with `recv_many` until the end, reports how many
        // messages and the sum of their numbers.
        "mpmc-recv" => {
            let mut rx = mpmc::Consumer::open(&args[0], opts()).unwrap();
            let (n, sum) = rt().block_on(async {
                let (mut n, mut sum, mut batch) = (0u64, 0u64, Vec::new());
                loop {
                    batch.clear();
                    match rx.recv_many(&mut batch, 64).await {
                        Ok(0) | Err(Error::Closed) => break,
                        Ok(_) => {}
                        Err(e) => panic!("recv_many: {e}"),
                    }
                    for m in &batch {
                        let (_, i) = untag(m);
                        n += 1;
                        sum += i;
                    }
                }
                (n, sum)
            });
            report(format!("{n} {sum}"));
        }
        // MPMC consumer in chunks (args: name): `recv_chunk` until the end, reports how many
        // messages and the sum of their numbers.
        "mpmc-recv-chunk" => {
            let mut rx = mpmc::Consumer::open(&args[0], opts()).unwrap();
            let (n, sum) = rt().block_on(async {
                let (mut n, mut sum, mut buf) = (0u64, 0u64, [0u8; 16]);
                loop {
                    let chunk = match rx.recv_chunk(32).await {
                        Ok(c) if c.is_empty() => break,
                        Ok(c) => c,
                        Err(Error::Closed) => break,
                        Err(e) => panic!("recv_chunk: {e}"),
                    };
                    for j in 0..chunk.len() {
                        let len = chunk.read(j, &mut buf).unwrap();
                        let (_, i) = untag(&buf[..len]);
                        n += 1;
                        sum += i;
                    }
                }
                (n, sum)
            });
            report(format!("{n} {sum}"));
        }
        // MPMC consumer (args: name): claims a chunk of `HELD` messages, reports the first
        // number, and waits on stdin to be killed, the chunk unfreed.
        "mpmc-hold-chunk" => {
            let mut rx = mpmc::Consumer::open(&args[0], opts()).unwrap();
            let chunk = rt().block_on(rx.recv_chunk(HELD)).unwrap();
            let mut buf = [0u8; 16];
            let len = chunk.read(0, &mut buf).unwrap();
            report(format!(
                "holding {} from {}",
                chunk.len(),
                untag(&buf[..len]).1
            ));
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            drop(chunk);
        }
        // MPSC (args: name): reserves a chunk of `HELD` slots, writes them, reports, and waits
        // on stdin to be killed, the chunk uncommitted.
        "mpsc-hold-chunk" => {
            let mut tx = mpsc::Producer::open(&args[0], opts()).unwrap();
            let mut chunk = tx.try_reserve_many(HELD).unwrap();
            assert_eq!(chunk.len(), HELD);
            for j in 0..HELD {
                chunk.write(j, &tagged(9, j as u64)).unwrap();
            }
            report("holding");
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            drop(chunk);
        }
        other => panic!("unknown role {other}"),
    });
}

/// Slots the `mpsc-hold-chunk` producer holds when it is killed.
const HELD: usize = 48;

/// Message `i` of stream `s`: both numbers, then `i % 9` bytes of `i as u8` (at most 16 + 8:
/// the slot of 16 cuts it to 16).
fn tagged(s: u64, i: u64) -> Vec<u8> {
    let mut m = s.to_le_bytes().to_vec();
    m.extend_from_slice(&i.to_le_bytes());
    m
}

fn untag(m: &[u8]) -> (u64, u64) {
    assert_eq!(m.len(), 16, "a tagged message is 16 bytes");
    (
        u64::from_le_bytes(m[..8].try_into().unwrap()),
        u64::from_le_bytes(m[8..].try_into().unwrap()),
    )
}

#[test]
fn mpsc_chunks_of_two_producer_processes_arrive_whole_and_in_order_per_producer() {
    let name = ShmName::new("mpsc-chunks");
    let mut rx = mpsc::Consumer::create(name.as_str(), opts()).unwrap();
    let kids = [
        spawn("mpsc-chunk-send", &[name.as_str(), "1"]),
        spawn("mpsc-chunk-send", &[name.as_str(), "2"]),
    ];
    let (next, chunks) = rt().block_on(async {
        let (mut next, mut chunks) = ([0u64; 3], 0u64);
        let mut buf = [0u8; 16];
        loop {
            let chunk = match rx.recv_chunk(50).await {
                Ok(c) => c,
                Err(Error::Closed) => break,
                Err(e) => panic!("recv_chunk: {e}"),
            };
            assert!((1..=50).contains(&chunk.len()), "{} messages", chunk.len());
            for j in 0..chunk.len() {
                let n = chunk.read(j, &mut buf).unwrap();
                let (s, i) = untag(&buf[..n]);
                assert_eq!(i, next[s as usize], "stream {s} out of order");
                next[s as usize] += 1;
            }
            chunks += 1;
        }
        (next, chunks)
    });
    for k in kids {
        k.wait_ok();
    }
    assert_eq!(next, [0, N, N], "every message of both producers once");
    assert!(
        chunks < 2 * N,
        "chunks of several messages ({chunks} chunks)"
    );
    assert_eq!(rx.abandoned(), 0);
}

/// Chunks both ways on MPMC: the producer's chunks (some committed short) taken by one
/// consumer process with `recv_many` and two with `recv_chunk`.
#[test]
fn mpmc_chunks_reach_consumer_processes_each_message_once() {
    let name = ShmName::new("mpmc-chunks");
    let mut tx = mpmc::Producer::create(name.as_str(), opts()).unwrap();
    let mut kids = [
        spawn_holding("mpmc-recv", &[name.as_str()]),
        spawn_holding("mpmc-recv-chunk", &[name.as_str()]),
        spawn_holding("mpmc-recv-chunk", &[name.as_str()]),
    ];
    rt().block_on(async {
        let mut i = 0;
        while i < N {
            // Chunks of 1 to 40, some committed short (the rest given back unused).
            let k = ((i % 40) + 1).min(N - i) as usize;
            let mut chunk = tx.reserve_many(k).await.unwrap();
            for j in 0..k {
                chunk.write(j, &tagged(0, i + j as u64)).unwrap();
            }
            let send = if k > 2 && i % 7 == 0 { k - 2 } else { k };
            chunk.commit(send);
            i += send as u64;
        }
    });
    drop(tx);
    let (mut n, mut sum) = (0, 0);
    for k in &mut kids {
        let r = read_report(k);
        let (a, b) = r.split_once(' ').unwrap();
        n += a.parse::<u64>().unwrap();
        sum += b.parse::<u64>().unwrap();
    }
    for k in kids {
        k.wait_ok();
    }
    assert_eq!(n, N, "every message once");
    assert_eq!(sum, N * (N - 1) / 2, "each number once");
}

/// A producer killed while it holds a chunk of 48 slots: the consumer skips them all (each
/// counted as abandoned) once the producer is proven dead, and receives what another
/// producer sent behind them. Before the repair took a dead chunk's slots at once, it
/// released one per liveness interval (48 x 20 ms here); and before range claims a chunk on
/// this ring was not possible at all.
#[test]
fn a_producer_killed_holding_a_chunk_loses_only_the_chunk_and_it_is_skipped_at_once() {
    let name = ShmName::new("mpsc-kill-chunk");
    let liveness = Duration::from_millis(20);
    let o = common::opts(16, 64, Some(liveness));
    let mut rx = mpsc::Consumer::create(name.as_str(), o.clone()).unwrap();
    let mut victim = spawn_holding("mpsc-hold-chunk", &[name.as_str()]);
    assert_eq!(read_report(&mut victim), "holding");
    let mut tx = mpsc::Producer::open(name.as_str(), o).unwrap();
    for i in 0..8u64 {
        tx.try_send(tagged(1, i)).unwrap();
    }
    // Nothing passes the held chunk while its producer lives.
    assert!(
        rx.try_recv().is_err(),
        "a live producer's chunk is never skipped"
    );
    let killed = Instant::now();
    kill9(victim.id());
    // Polled with `try_recv`: no park, so no death notice wakes us early, and each repair
    // waits for the liveness check (at most one per interval).
    let mut got = Vec::new();
    while got.len() < 8 {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the messages behind the dead chunk within 10 s"
        );
        match rx.try_recv() {
            Ok(m) => got.push(untag(&m)),
            Err(shmchan::TryRecvError::Empty) => std::thread::yield_now(),
            Err(e) => panic!("try_recv: {e}"),
        }
    }
    let took = killed.elapsed();
    assert_eq!(got, (0..8).map(|i| (1, i)).collect::<Vec<_>>());
    assert_eq!(
        rx.abandoned(),
        HELD as u64,
        "each slot of the chunk skipped once"
    );
    assert!(
        took < liveness * (HELD as u32 / 4),
        "the dead chunk took {took:?} to skip (liveness interval {liveness:?})"
    );
    drop(victim);
}

#[test]
fn chunks_sent_by_another_process_arrive_whole_in_order_and_then_the_end() {
    let name = ShmName::new("chunks");
    let mut rx = spsc::Consumer::create(name.as_str(), opts()).unwrap();
    let child = spawn("chunk-send", &[name.as_str()]);
    let (got, chunks) = rt().block_on(async {
        let (mut got, mut chunks) = (0u64, 0u64);
        let mut buf = [0u8; 16];
        loop {
            let chunk = match rx.recv_chunk(50).await {
                Ok(c) => c,
                Err(Error::Closed) => break,
                Err(e) => panic!("recv_chunk: {e}"),
            };
            assert!((1..=50).contains(&chunk.len()), "{} messages", chunk.len());
            for j in 0..chunk.len() {
                let n = chunk.read(j, &mut buf).unwrap();
                assert_eq!(&buf[..n], &message(got)[..], "message {got}");
                got += 1;
            }
            chunks += 1;
        }
        (got, chunks)
    });
    child.wait_ok();
    assert_eq!(got, N, "every message once");
    assert!(chunks < N, "chunks of several messages ({chunks} chunks)");
}

#[test]
fn a_chunk_read_names_what_does_not_fit() {
    let name = ShmName::new("chunk-read");
    let mut tx = spsc::Producer::create(name.as_str(), opts()).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str(), opts()).unwrap();
    tx.try_send(message(8)).unwrap();
    rt().block_on(async {
        assert_eq!(rx.recv_chunk(0).await.unwrap().len(), 0);
        let chunk = rx.recv_chunk(8).await.unwrap();
        assert_eq!(chunk.len(), 1);
        let err = chunk.read(0, &mut [0u8; 4]).unwrap_err().to_string();
        assert!(err.contains("16 bytes, the buffer 4"), "{err}");
        let err = chunk.read(1, &mut [0u8; 16]).unwrap_err().to_string();
        assert!(err.contains("message 1 of a chunk of 1"), "{err}");
        let mut buf = [0u8; 16];
        assert_eq!(chunk.read(0, &mut buf).unwrap(), 16);
        assert_eq!(&buf[..], &message(8)[..]);
    });
    // The chunk was dropped: its message is gone.
    assert!(rx.try_recv().is_err());
}

/// An MPMC consumer killed while it holds a chunk of 48 messages: a live consumer adopts each
/// of them (delivered again, once each), and the ring is whole again: the producer fills all
/// of it afterwards. Before adoption knew chunks (the record's chunk end), it took the first
/// message only and left the other 47 slots pinned for good, the producer stuck on them.
#[test]
fn an_mpmc_consumer_killed_holding_a_chunk_has_it_adopted_whole() {
    let name = ShmName::new("mpmc-kill-chunk");
    let o = common::opts(16, 64, Some(Duration::from_millis(20)));
    let mut tx = mpmc::Producer::create(name.as_str(), o.clone()).unwrap();
    let mut rx = mpmc::Consumer::open(name.as_str(), o).unwrap();
    for i in 0..HELD as u64 {
        tx.try_send(tagged(0, i)).unwrap();
    }
    let mut victim = spawn_holding("mpmc-hold-chunk", &[name.as_str()]);
    assert_eq!(read_report(&mut victim), format!("holding {HELD} from 0"));
    for i in HELD as u64..64 {
        tx.try_send(tagged(0, i)).unwrap();
    }
    kill9(victim.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = vec![0u32; 64 + 64];
    rt().block_on(async {
        let mut got = 0;
        while got < 64 {
            let m = tokio::time::timeout_at(deadline.into(), rx.recv())
                .await
                .expect("every message, the dead consumer's adopted, within 10 s")
                .unwrap();
            seen[untag(&m).1 as usize] += 1;
            got += 1;
        }
        // All 64 slots are free again: a full ring's worth goes in without waiting.
        for i in 64..128 {
            tx.try_send(tagged(0, i)).unwrap();
        }
        for _ in 0..64 {
            let m = tokio::time::timeout_at(deadline.into(), rx.recv())
                .await
                .expect("the second lap within 10 s")
                .unwrap();
            seen[untag(&m).1 as usize] += 1;
        }
    });
    assert!(seen.iter().all(|&n| n == 1), "each message once: {seen:?}");
    assert_eq!(rx.abandoned(), 0);
    drop(victim);
}
