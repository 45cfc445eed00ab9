//! What one message costs in software alone: one thread, no second core, no waiting. A tokio
//! current_thread task sends a burst of 512 64-byte messages into a channel of 1024 and then
//! receives them with `recv_many`, over and over; the same with tokio `mpsc` (`send().await`,
//! `recv_many`); both once more receiving with `recv().await` per message (as a `while let`
//! loop, or a `Stream`, does); and with the bytes a buffered socket stream would copy (`BufWriter` into a
//! `Vec`, `BufReader::read_exact` out of it, 4-byte length prefixes, no system call).
//!
//! This is the floor under the cross-process figures of the async benches: a stream between
//! two processes runs no faster than its slower side's software cost, plus the cache lines
//! that then move between the cores. Reported: nanoseconds per message on each side, and
//! shmchan's over the alternative's (lower is cheaper), medians of alternating rounds.
//!
//! The same on an MPMC ring (the Vyukov producer and consumers: a CAS per claim, a sequence
//! word per slot), once with `feed` / `recv_many` and once in chunks (`reserve_many` /
//! `recv_chunk`: one CAS per chunk).
//!
//! `cargo bench --bench per_message` (`BENCH_ROUNDS`, 5 by default; each round is the
//! fastest of 3 passes of 1,000 bursts). Run it pinned (`taskset -c 0`) for steadier figures.

use std::time::Instant;

use futures::SinkExt;
use shmchan::{Options, Segment, mpmc, spsc};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};

#[path = "support/harness.rs"]
mod harness;
use harness::median;

const BURST: usize = 512;
const BURSTS: usize = 1_000;
const MSG: usize = 64;
const PASSES: usize = 3;

/// Nanoseconds per message: (send side, receive side).
#[derive(Clone, Copy)]
struct Cost(f64, f64);

impl Cost {
    fn min(self, o: Cost) -> Cost {
        Cost(self.0.min(o.0), self.1.min(o.1))
    }
}

fn per_msg(seconds: f64) -> f64 {
    seconds * 1e9 / (BURST * BURSTS) as f64
}

/// How shmchan's producer sends: `send().await` each, `feed` with a `flush` every 64 (as a
/// `BufWriter`), `try_send`, or chunks of 64 slots (`reserve_many(64).await`, `write` each,
/// one `commit`), received in chunks too (`recv_chunk`, a `read` each into a buffer); the
/// others are received with `recv_many` (but `Each`).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Send,
    Feed,
    Try,
    Chunk,
    /// `send().await` each, received with `recv().await` each (what a `while let` loop does).
    Each,
}

/// Times `PASSES` passes of `BURSTS` bursts, each a `send` of `BURST` messages then a
/// `recv` of them: the fastest pass's cost per message on each side.
async fn passes(mut send: impl AsyncFnMut(), mut recv: impl AsyncFnMut()) -> Cost {
    let mut best = Cost(f64::INFINITY, f64::INFINITY);
    for _ in 0..PASSES {
        let (mut ts, mut tr) = (0.0, 0.0);
        for _ in 0..BURSTS {
            let t = Instant::now();
            send().await;
            ts += t.elapsed().as_secs_f64();
            let t = Instant::now();
            recv().await;
            tr += t.elapsed().as_secs_f64();
        }
        best = best.min(Cost(per_msg(ts), per_msg(tr)));
    }
    best
}

async fn shmchan(mode: Mode) -> Cost {
    let name = format!("/shmchan-bench-per-message-{}", std::process::id());
    let opts = Options::new().slot_size(MSG).capacity(2 * BURST);
    let mut tx = spsc::Producer::create(&name, opts.clone()).unwrap();
    let mut rx = spsc::Consumer::open(&name, opts).unwrap();
    // Nothing else opens it: unlinked at once, so a failing run leaves nothing behind.
    Segment::unlink(&name).unwrap();
    let payload = [7u8; MSG];
    let mut batch = Vec::with_capacity(BURST);
    let send = async || match mode {
        Mode::Chunk => {
            for _ in 0..BURST / 64 {
                let mut c = tx.reserve_many(64).await.unwrap();
                for j in 0..64 {
                    c.write(j, &payload).unwrap();
                }
                c.commit(64);
            }
        }
        Mode::Send | Mode::Each => {
            for _ in 0..BURST {
                tx.send(payload).await.unwrap();
            }
        }
        Mode::Try => {
            for _ in 0..BURST {
                tx.try_send(payload).unwrap();
            }
        }
        Mode::Feed => {
            for i in 0..BURST {
                tx.feed(payload).await.unwrap();
                if i % 64 == 63 {
                    SinkExt::<[u8; MSG]>::flush(&mut tx).await.unwrap();
                }
            }
        }
    };
    let mut buf = [0u8; MSG];
    let recv = async || {
        let mut got = 0;
        while got < BURST {
            if mode == Mode::Chunk {
                // The chunk's receiving half: each record copied into our buffer.
                let chunk = rx.recv_chunk(BURST).await.unwrap();
                for j in 0..chunk.len() {
                    assert_eq!(chunk.read(j, &mut buf).unwrap(), MSG);
                }
                got += chunk.len();
                continue;
            }
            if mode == Mode::Each {
                std::hint::black_box(rx.recv().await.unwrap());
                got += 1;
                continue;
            }
            batch.clear();
            got += rx.recv_many(&mut batch, BURST).await.unwrap();
        }
    };
    passes(send, recv).await
}

/// The MPMC ring, one producer and one consumer handle: `feed` (a flush every 64) and
/// `recv_many`, or chunks of 64 and `recv_chunk`.
async fn shmchan_mpmc(chunks: bool) -> Cost {
    let name = format!("/shmchan-bench-per-message-mpmc-{}", std::process::id());
    let opts = Options::new().slot_size(MSG).capacity(2 * BURST);
    let mut tx = mpmc::Producer::create(&name, opts.clone()).unwrap();
    let mut rx = mpmc::Consumer::open(&name, opts).unwrap();
    Segment::unlink(&name).unwrap();
    let payload = [7u8; MSG];
    let mut batch = Vec::with_capacity(BURST);
    let send = async || {
        if chunks {
            for _ in 0..BURST / 64 {
                let mut c = tx.reserve_many(64).await.unwrap();
                for j in 0..64 {
                    c.write(j, &payload).unwrap();
                }
                c.commit(64);
            }
            return;
        }
        for i in 0..BURST {
            tx.feed(payload).await.unwrap();
            if i % 64 == 63 {
                SinkExt::<[u8; MSG]>::flush(&mut tx).await.unwrap();
            }
        }
    };
    let mut buf = [0u8; MSG];
    let recv = async || {
        let mut got = 0;
        while got < BURST {
            if chunks {
                let chunk = rx.recv_chunk(BURST).await.unwrap();
                for j in 0..chunk.len() {
                    assert_eq!(chunk.read(j, &mut buf).unwrap(), MSG);
                }
                got += chunk.len();
                continue;
            }
            batch.clear();
            got += rx.recv_many(&mut batch, BURST).await.unwrap();
        }
    };
    passes(send, recv).await
}

async fn tokio_mpsc(each: bool) -> Cost {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<[u8; MSG]>(2 * BURST);
    let payload = [7u8; MSG];
    let mut batch = Vec::with_capacity(BURST);
    let send = async || {
        for _ in 0..BURST {
            tx.send(payload).await.unwrap();
        }
    };
    let recv = async || {
        let mut got = 0;
        while got < BURST {
            if each {
                std::hint::black_box(rx.recv().await.unwrap());
                got += 1;
                continue;
            }
            batch.clear();
            got += rx.recv_many(&mut batch, BURST).await;
        }
    };
    passes(send, recv).await
}

/// A buffered byte stream's copies without its system calls: length-prefixed records through
/// a `BufWriter` into memory, and out through a `BufReader`.
// The two closures share the buffer and run one after the other in one task, so a borrow
// held across their awaits never meets the other's.
#[allow(clippy::await_holding_refcell_ref)]
async fn buffered_bytes() -> Cost {
    let mut frame = [7u8; 4 + MSG];
    frame[..4].copy_from_slice(&(MSG as u32).to_le_bytes());
    let wire = std::cell::RefCell::new(Vec::with_capacity(BURST * frame.len()));
    let send = async || {
        let mut wire = wire.borrow_mut();
        wire.clear();
        let mut w = BufWriter::new(&mut *wire);
        for _ in 0..BURST {
            w.write_all(&frame).await.unwrap();
        }
        w.flush().await.unwrap();
    };
    let recv = async || {
        let wire = wire.borrow();
        let mut r = BufReader::new(&wire[..]);
        let mut got = [0u8; 4 + MSG];
        for _ in 0..BURST {
            r.read_exact(&mut got).await.unwrap();
        }
        assert_eq!(got, frame);
    };
    passes(send, recv).await
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds = harness::rounds(5);
    let rt = harness::rt();
    println!(
        "per-message software cost, one thread, bursts of {BURST} x {MSG} B, {rounds} alternating rounds, medians (ns per message, send side / receive side):"
    );
    let mut rows: Vec<(&str, Vec<Cost>)> = vec![
        ("shmchan send().await", Vec::new()),
        ("shmchan feed+flush/64", Vec::new()),
        ("shmchan try_send", Vec::new()),
        ("shmchan chunks (64 / recv_chunk)", Vec::new()),
        ("shmchan send / recv() each", Vec::new()),
        ("tokio mpsc send().await", Vec::new()),
        ("buffered bytes (no syscall)", Vec::new()),
        ("tokio mpsc send / recv() each", Vec::new()),
        ("shmchan MPMC feed / recv_many", Vec::new()),
        ("shmchan MPMC chunks", Vec::new()),
    ];
    const MPSC: usize = 5;
    const BYTES: usize = 6;
    const MPSC_EACH: usize = 7;
    const MPMC_FEED: usize = 8;
    const MPMC_CHUNKS: usize = 9;
    for _ in 0..rounds {
        rt.block_on(async {
            rows[0].1.push(shmchan(Mode::Send).await);
            rows[MPSC].1.push(tokio_mpsc(false).await);
            rows[1].1.push(shmchan(Mode::Feed).await);
            rows[BYTES].1.push(buffered_bytes().await);
            rows[2].1.push(shmchan(Mode::Try).await);
            rows[3].1.push(shmchan(Mode::Chunk).await);
            rows[MPSC_EACH].1.push(tokio_mpsc(true).await);
            rows[4].1.push(shmchan(Mode::Each).await);
            rows[MPMC_FEED].1.push(shmchan_mpmc(false).await);
            rows[MPMC_CHUNKS].1.push(shmchan_mpmc(true).await);
        });
    }
    let med = |v: &[Cost], f: fn(&Cost) -> f64| median(v.iter().map(f).collect());
    let ratio = |a: &[Cost], b: &[Cost], f: fn(&Cost) -> f64| {
        median(a.iter().zip(b).map(|(x, y)| f(x) / f(y)).collect())
    };
    for (n, v) in &rows {
        println!(
            "{n:<28} {:>7.1} / {:>6.1} ns",
            med(v, |c| c.0),
            med(v, |c| c.1)
        );
    }
    let (mpsc, bytes) = (&rows[MPSC].1, &rows[BYTES].1);
    let compared = rows[..MPSC].iter().chain(&rows[MPMC_FEED..]);
    for (i, (n, v)) in compared.enumerate() {
        // The receive-each row against tokio received the same way.
        let mpsc = if i == 4 { &rows[MPSC_EACH].1 } else { mpsc };
        println!(
            "{n:<28} vs tokio mpsc {:.2}x / {:.2}x, vs buffered bytes {:.2}x / {:.2}x",
            ratio(v, mpsc, |c| c.0),
            ratio(v, mpsc, |c| c.1),
            ratio(v, bytes, |c| c.0),
            ratio(v, bytes, |c| c.1)
        );
    }
}
