//! The main demo: two processes talk over shmchan async channels, then over a tokio
//! `UnixStream`, and the demo prints what it measured for both.
//!
//! ```text
//! cargo run --release --example demo              # both transports
//! cargo run --release --example demo -- --shm     # shmchan only (e.g. under `strace -c -f`)
//! ```
//!
//! The first process creates two SPSC channels (A -> B and B -> A) and spawns a second copy
//! of itself, which opens them by name. Both run a tokio current_thread runtime. They measure
//! ping-pong round trips (8-byte messages) and one-way throughput of 64-byte messages, the
//! receiver acknowledging the last one: once with `send().await` per message (each visible
//! when it returns), once as a buffered stream (`feed`, with a `flush` every 64 messages; the
//! receiver takes what is ready with `recv_many`), as the `UnixStream` side is buffered
//! (`BufWriter` / `BufReader`), and once in chunks (`reserve_many(64)`, a `write` per
//! message, one `commit`; the receiver's `recv_chunk`, a `read` per message into its buffer:
//! the batch API, which costs a message about what a `BufWriter`'s copy does; `cargo bench
//! --bench per_message`).

use std::time::{Duration, Instant};

use futures::SinkExt;
use shmchan::{Options, spsc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

const ROUNDS: u64 = 20_000;
const STREAM: u64 = 500_000;
const MSG: usize = 64;

fn opts() -> Options {
    Options::new().slot_size(MSG).capacity(256)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.first().map(String::as_str) == Some("child") {
        return rt.block_on(child(&args[1], &args[2], &args[3]));
    }
    let shm_only = args.iter().any(|a| a == "--shm");
    rt.block_on(parent(shm_only))
}

struct Measured {
    rtt: Vec<Duration>,
    stream: Duration,
    /// The buffered stream (shmchan: feed + flush every 64).
    batched: Option<Duration>,
    /// shmchan's chunks of 64 (`reserve_many`).
    chunked: Option<Duration>,
}

impl Measured {
    fn pct(&self, p: f64) -> Duration {
        self.rtt[((self.rtt.len() - 1) as f64 * p) as usize]
    }
    fn rate(&self) -> f64 {
        STREAM as f64 / self.stream.as_secs_f64()
    }
    fn batched_rate(&self) -> f64 {
        STREAM as f64 / self.batched.unwrap_or(self.stream).as_secs_f64()
    }
    fn chunked_rate(&self) -> f64 {
        STREAM as f64 / self.chunked.unwrap_or(self.stream).as_secs_f64()
    }
}

async fn parent(shm_only: bool) -> Result<(), Box<dyn std::error::Error>> {
    let pid = std::process::id();
    let (ab, ba) = (
        format!("/shmchan-demo-{pid}-ab"),
        format!("/shmchan-demo-{pid}-ba"),
    );
    let sock = std::env::temp_dir().join(format!("shmchan-demo-{pid}.sock"));
    let mut tx = spsc::Producer::create(&ab, opts())?;
    let mut rx = spsc::Consumer::create(&ba, opts())?;
    let listener = (!shm_only).then(|| UnixListener::bind(&sock)).transpose()?;
    println!("[parent {pid}] created {ab} and {ba} (slot {MSG} B, 256 slots); spawning the peer");
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args([
            "child",
            &ab,
            &ba,
            if shm_only {
                "-"
            } else {
                sock.to_str().unwrap()
            },
        ])
        .spawn()?;

    // shmchan: ping-pong, then a one-way stream.
    let hello = rx.recv().await?;
    println!("[parent] peer says: {}", String::from_utf8_lossy(&hello));
    // Both processes have the channels mapped: the names can go now, so that a demo killed
    // midway leaves nothing in /dev/shm.
    shmchan::Segment::unlink(&ab)?;
    shmchan::Segment::unlink(&ba)?;
    let mut rtt = Vec::with_capacity(ROUNDS as usize);
    for i in 0..ROUNDS {
        let t = Instant::now();
        tx.send(i.to_le_bytes()).await?;
        let back = rx.recv().await?;
        rtt.push(t.elapsed());
        assert_eq!(&*back, i.to_le_bytes(), "echo mismatch");
    }
    let t = Instant::now();
    let payload = [7u8; MSG];
    for _ in 0..STREAM {
        tx.send(payload).await?;
    }
    let stream = acked(&mut rx, t).await?;
    // The same records as a buffered stream: `feed` writes each into its slot without making
    // it visible; `flush` publishes the 64 with one store and at most one wake-up.
    let t = Instant::now();
    for i in 0..STREAM {
        tx.feed(payload).await?;
        if i % 64 == 63 {
            tx.flush().await?;
        }
    }
    tx.flush().await?;
    let batched = acked(&mut rx, t).await?;
    // In chunks: 64 slots reserved at once, each written in place, all 64 sent with one
    // store (and at most one wake-up).
    let t = Instant::now();
    let mut sent = 0;
    while sent < STREAM {
        let k = (STREAM - sent).min(64) as usize;
        let mut chunk = tx.reserve_many(k).await?;
        for i in 0..k {
            chunk.write(i, &payload)?;
        }
        chunk.commit(k);
        sent += k as u64;
    }
    let chunked = acked(&mut rx, t).await?;
    rtt.sort();
    let shm = Measured {
        rtt,
        stream,
        batched: Some(batched),
        chunked: Some(chunked),
    };

    // The same over a tokio UnixStream with 4-byte length prefixes.
    let uds = match listener {
        None => None,
        Some(l) => {
            let (mut s, _) = l.accept().await?;
            let mut rtt = Vec::with_capacity(ROUNDS as usize);
            let mut buf = [0u8; 4 + 8];
            for i in 0..ROUNDS {
                let t = Instant::now();
                let mut frame = [0u8; 12];
                frame[..4].copy_from_slice(&8u32.to_le_bytes());
                frame[4..].copy_from_slice(&i.to_le_bytes());
                s.write_all(&frame).await?;
                s.read_exact(&mut buf).await?;
                rtt.push(t.elapsed());
                assert_eq!(&buf[4..], i.to_le_bytes());
            }
            let t = Instant::now();
            let mut frame = [7u8; 4 + MSG];
            frame[..4].copy_from_slice(&(MSG as u32).to_le_bytes());
            let mut w = tokio::io::BufWriter::new(&mut s);
            for _ in 0..STREAM {
                w.write_all(&frame).await?;
            }
            w.flush().await?;
            drop(w);
            s.read_exact(&mut buf).await?;
            let stream = t.elapsed();
            rtt.sort();
            Some(Measured {
                rtt,
                stream,
                batched: None,
                chunked: None,
            })
        }
    };
    drop((tx, rx));
    let status = child.wait()?;
    let _ = std::fs::remove_file(&sock);

    println!();
    println!(
        "{ROUNDS} round trips of 8 B, {STREAM} one-way messages of {MSG} B, tokio current_thread on both sides:"
    );
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>14}",
        "", "RTT p50", "p99", "p99.9", "one-way msg/s"
    );
    let row = |n: &str, m: &Measured| {
        println!(
            "{n:<22} {:>10.2?} {:>10.2?} {:>10.2?} {:>14.0}",
            m.pct(0.5),
            m.pct(0.99),
            m.pct(0.999),
            m.rate()
        )
    };
    row("shmchan spsc", &shm);
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>14.0}",
        "  .. feed+flush/64",
        "",
        "",
        "",
        shm.batched_rate()
    );
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>14.0}",
        "  .. chunks of 64",
        "",
        "",
        "",
        shm.chunked_rate()
    );
    if let Some(u) = &uds {
        row("tokio UnixStream", u);
        println!(
            "shmchan vs UnixStream (buffered): RTT p50 {:.1}x lower; one-way throughput ratio shmchan/UnixStream {:.2} in chunks of 64, {:.2} with feed+flush, {:.2} with send().await per message (one run; the machine is shared and noisy)",
            u.pct(0.5).as_secs_f64() / shm.pct(0.5).as_secs_f64(),
            shm.chunked_rate() / u.rate(),
            shm.batched_rate() / u.rate(),
            shm.rate() / u.rate()
        );
    }
    println!("[parent] peer exited with {status}");
    Ok(())
}

/// Waits for the peer's count of a stream started at `t`: how long the stream took.
async fn acked(rx: &mut spsc::Consumer, t: Instant) -> Result<Duration, shmchan::Error> {
    let ack = rx.recv().await?;
    let took = t.elapsed();
    assert_eq!(
        &*ack,
        STREAM.to_le_bytes(),
        "the peer counted another number"
    );
    Ok(took)
}

/// Receives a stream of `STREAM` messages in batches: how many.
async fn drain(rx: &mut spsc::Consumer) -> Result<u64, shmchan::Error> {
    let (mut n, mut batch) = (0u64, Vec::with_capacity(256));
    while n < STREAM {
        batch.clear();
        rx.recv_many(&mut batch, 256).await?;
        assert!(batch.iter().all(|m| m.len() == MSG));
        n += batch.len() as u64;
    }
    Ok(n)
}

async fn child(ab: &str, ba: &str, sock: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut rx = spsc::Consumer::open(ab, opts())?;
    let mut tx = spsc::Producer::open(ba, opts())?;
    tx.send(format!("hello from pid {}", std::process::id()))
        .await?;
    for _ in 0..ROUNDS {
        let m = rx.recv().await?;
        tx.send(m).await?;
    }
    let mut n = 0u64;
    while n < STREAM {
        let m = rx.recv().await?;
        assert_eq!(m.len(), MSG);
        n += 1;
    }
    tx.send(n.to_le_bytes()).await?;
    // The buffered stream: take what is ready, freeing it with one store.
    let n = drain(&mut rx).await?;
    tx.send(n.to_le_bytes()).await?;
    // The chunked one: chunks of what is ready, each record copied into our buffer.
    let (mut n, mut buf) = (0u64, [0u8; MSG]);
    while n < STREAM {
        let chunk = rx.recv_chunk(256).await?;
        for i in 0..chunk.len() {
            assert_eq!(chunk.read(i, &mut buf)?, MSG);
        }
        n += chunk.len() as u64;
    }
    tx.send(n.to_le_bytes()).await?;
    if sock != "-" {
        let mut s = UnixStream::connect(sock).await?;
        let mut buf = [0u8; 12];
        for _ in 0..ROUNDS {
            s.read_exact(&mut buf).await?;
            s.write_all(&buf).await?;
        }
        let mut r = tokio::io::BufReader::new(&mut s);
        let mut frame = [0u8; 4 + MSG];
        for _ in 0..STREAM {
            r.read_exact(&mut frame).await?;
        }
        drop(r);
        let mut ack = [0u8; 12];
        ack[..4].copy_from_slice(&8u32.to_le_bytes());
        ack[4..].copy_from_slice(&STREAM.to_le_bytes());
        s.write_all(&ack).await?;
    }
    // Wait for the parent to finish with the channels before leaving.
    let _ = rx.recv().await;
    Ok(())
}
