//! Large messages (issue 14) across two processes:
//!
//! - **End to end**, 64 KiB, 1 MiB and 16 MiB: the producer sends with `send_large` (a heap
//!   block allocated with `alloc_async`, filled from a private buffer, its handle sent in a
//!   slot); the consumer process receives with `recv_large_blocking`, reads every byte (a
//!   checksum over the block, in place) and drops the message (the block is freed, which wakes
//!   the producer when the heap is full: the stream is pipelined, bounded by a heap of four
//!   messages). Against `memcpy` of the same size in one process (the goal: the transport adds
//!   < 10 %, i.e. >= 0.9x memcpy's bytes/s), and against a std `UnixStream` carrying the same
//!   bytes to a consumer that reads and checksums them (goal: >= 5x at 1 MiB and 16 MiB).
//! - **Work floor**: the same fill and read in one process with no transport (a warm private
//!   buffer): what the workload itself costs on one CPU, the ceiling of any transport.
//! - **Handoff alone**, 16 MiB: the producer allocates a block and sends it without touching
//!   the payload; the consumer receives it, drops it and acknowledges. Round-trip time per
//!   block, against a `UnixStream` that copies the 16 MiB and acknowledges (goal: >= 1000x
//!   lower).
//!
//! Every comparison alternates its sides over `BENCH_ROUNDS` rounds (default 5) and reports
//! median figures and the median of the per-round ratios. `BENCH_SIZES=64k,1m,16m` narrows a
//! run.
//!
//! `cargo bench --bench large`

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Child;
use std::time::{Duration, Instant};

use shmchan::channel::{Consumer, Producer, Spsc};
use shmchan::{Heap, Options};

#[path = "support/harness.rs"]
mod harness;
use harness::{SelfExec, median, rt};

const ROUNDS: usize = 5;

fn checksum(bytes: &[u8]) -> u64 {
    let mut s = 0u64;
    for w in bytes.chunks_exact(8) {
        s = s.wrapping_add(u64::from_le_bytes(w.try_into().unwrap()));
    }
    s
}

fn name(t: &str) -> String {
    format!("/shmchan-bench-large-{}-{t}", std::process::id())
}

/// This bench's child processes.
const CHILD: SelfExec = SelfExec {
    role_var: "LARGE_BENCH_ROLE",
    args_var: "LARGE_BENCH_ARGS",
};

fn spawn(role: &str, args: &[&str]) -> Child {
    CHILD.spawn(role, args)
}

fn chan_opts() -> Options {
    Options::new().slot_size(64).capacity(16)
}

fn child(role: &str, a: &[String]) {
    match role {
        // Receives `warm` then `n` messages, reading every byte; acks after each phase.
        "heap-recv" => {
            let (warm, n): (usize, usize) = (a[3].parse().unwrap(), a[4].parse().unwrap());
            let heap = Heap::open(&a[0]).unwrap();
            let mut rx = Consumer::<Spsc>::open(&a[1], chan_opts()).unwrap();
            rx.attach_heap(&heap).unwrap();
            let mut ack = Producer::<Spsc>::open(&a[2], Options::new()).unwrap();
            let mut sum = 0u64;
            for i in 0..warm + n {
                let m = rx.recv_large_blocking().unwrap();
                // SAFETY: the bench's two processes are the only ones attached to the heap,
                // and the producer never touches a block it sent.
                sum = sum.wrapping_add(checksum(unsafe { m.as_slice() }));
                drop(m);
                if i + 1 == warm || i + 1 == warm + n {
                    ack.send_blocking(sum.to_le_bytes()).unwrap();
                }
            }
        }
        // Receives blocks untouched, drops them, acks each.
        "handoff-recv" => {
            let heap = Heap::open(&a[0]).unwrap();
            let mut rx = Consumer::<Spsc>::open(&a[1], chan_opts()).unwrap();
            rx.attach_heap(&heap).unwrap();
            let mut ack = Producer::<Spsc>::open(&a[2], Options::new()).unwrap();
            while let Ok(m) = rx.recv_large_blocking() {
                drop(m);
                if ack.send_blocking([1u8]).is_err() {
                    break;
                }
            }
        }
        // Reads `warm` then `n` messages of `len` bytes, checksums them, acks after each
        // phase (`every`: ack each message instead).
        "uds-recv" => {
            let len: usize = a[1].parse().unwrap();
            let (warm, n): (usize, usize) = (a[2].parse().unwrap(), a[3].parse().unwrap());
            let every = a[4] == "every";
            let mut s = UnixStream::connect(&a[0]).unwrap();
            let mut buf = vec![0u8; len];
            let mut sum = 0u64;
            for i in 0..warm + n {
                s.read_exact(&mut buf).unwrap();
                sum = sum.wrapping_add(checksum(&buf));
                if every || i + 1 == warm || i + 1 == warm + n {
                    s.write_all(&sum.to_le_bytes()).unwrap();
                }
            }
        }
        _ => panic!("{role}"),
    }
}

fn source(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 % 251) as u8).collect()
}

/// End to end through the heap: bytes per second over `n` messages after `warm`. `in_place`:
/// the producer fills the block where it lies (`alloc_large` + fill + `send_buf`); otherwise it
/// copies a prepared buffer in with `send_large`.
fn heap_e2e(len: usize, warm: usize, n: usize, in_place: bool) -> f64 {
    let (h, c, a) = (name("h"), name("c"), name("a"));
    let heap = Heap::options()
        .unlink_on_drop(true)
        .create(&h, 4 * len + (1 << 20))
        .unwrap();
    let mut tx = Producer::<Spsc>::create(&c, chan_opts()).unwrap();
    tx.attach_heap(&heap).unwrap();
    let mut ack = Consumer::<Spsc>::create(&a, Options::new()).unwrap();
    let mut kid = spawn(
        "heap-recv",
        &[&h, &c, &a, &warm.to_string(), &n.to_string()],
    );
    let src = source(len);
    let took = rt().block_on(async {
        for _ in 0..warm {
            tx.send_large(&src).await.unwrap();
        }
        ack.recv().await.unwrap();
        let t = Instant::now();
        for i in 0..n {
            if in_place {
                let mut buf = tx.alloc_large(len).await.unwrap();
                // SAFETY: the bench's two processes are the only ones attached to the heap,
                // and the consumer only reads blocks it received.
                unsafe { buf.as_mut_slice() }.fill(i as u8);
                tx.send_buf(buf).await.unwrap();
            } else {
                tx.send_large(&src).await.unwrap();
            }
        }
        ack.recv().await.unwrap();
        t.elapsed()
    });
    drop((tx, ack));
    kid.wait().unwrap();
    drop(heap);
    for x in [&c, &a] {
        let _ = shmchan::Segment::unlink(x);
    }
    (n * len) as f64 / took.as_secs_f64()
}

/// `memcpy` of `len` bytes between two warm private buffers: bytes per second.
fn memcpy(len: usize, n: usize) -> f64 {
    let src = source(len);
    let mut dst = vec![0u8; len];
    dst.copy_from_slice(&src);
    let t = Instant::now();
    for _ in 0..n {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    (n * len) as f64 / t.elapsed().as_secs_f64()
}

/// The work of one end-to-end message with no transport at all, in one process: fill a warm
/// private buffer and read every byte of it. Bytes per second: the ceiling of any transport
/// for this workload on one CPU.
fn work_floor(len: usize, n: usize) -> f64 {
    let mut buf = source(len);
    let t = Instant::now();
    let mut sum = 0u64;
    for i in 0..n {
        buf.fill(i as u8);
        sum = sum.wrapping_add(checksum(std::hint::black_box(&buf)));
    }
    std::hint::black_box(sum);
    (n * len) as f64 / t.elapsed().as_secs_f64()
}

fn uds_pair(len: usize, warm: usize, n: usize, every: bool) -> (UnixStream, Child, String) {
    let path = harness::uds_path("large");
    let path = path.to_str().unwrap().to_owned();
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    let kid = spawn(
        "uds-recv",
        &[
            &path,
            &len.to_string(),
            &warm.to_string(),
            &n.to_string(),
            if every { "every" } else { "phase" },
        ],
    );
    let (s, _) = l.accept().unwrap();
    (s, kid, path)
}

/// End to end through a `UnixStream`: bytes per second. The producer fills its buffer for
/// each message as the in-place heap producer fills its block, then writes it.
fn uds_e2e(len: usize, warm: usize, n: usize) -> f64 {
    let (mut s, mut kid, path) = uds_pair(len, warm, n, false);
    let mut src = source(len);
    let mut ack = [0u8; 8];
    for _ in 0..warm {
        s.write_all(&src).unwrap();
    }
    s.read_exact(&mut ack).unwrap();
    let t = Instant::now();
    for i in 0..n {
        src.fill(i as u8);
        s.write_all(&src).unwrap();
    }
    s.read_exact(&mut ack).unwrap();
    let took = t.elapsed();
    drop(s);
    kid.wait().unwrap();
    let _ = std::fs::remove_file(&path);
    (n * len) as f64 / took.as_secs_f64()
}

/// Handoff of an untouched block: round-trip time per block (median over `n`).
fn heap_handoff(len: usize, n: usize) -> Duration {
    let (h, c, a) = (name("hh"), name("hc"), name("ha"));
    let heap = Heap::options()
        .unlink_on_drop(true)
        .create(&h, 2 * len + (1 << 20))
        .unwrap();
    let mut tx = Producer::<Spsc>::create(&c, chan_opts()).unwrap();
    tx.attach_heap(&heap).unwrap();
    let mut ack = Consumer::<Spsc>::create(&a, Options::new()).unwrap();
    let mut kid = spawn("handoff-recv", &[&h, &c, &a]);
    let mut times = Vec::with_capacity(n);
    rt().block_on(async {
        for i in 0..n + 10 {
            let t = Instant::now();
            let buf = tx.alloc_large(len).await.unwrap();
            tx.send_buf(buf).await.unwrap();
            ack.recv().await.unwrap();
            if i >= 10 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
    });
    drop((tx, ack));
    kid.wait().unwrap();
    drop(heap);
    for x in [&c, &a] {
        let _ = shmchan::Segment::unlink(x);
    }
    Duration::from_secs_f64(median(times))
}

/// A `UnixStream` copying `len` bytes and acknowledging: round-trip time (median over `n`).
fn uds_handoff(len: usize, n: usize) -> Duration {
    let (mut s, mut kid, path) = uds_pair(len, 2, n, true);
    let src = source(len);
    let mut ack = [0u8; 8];
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 2 {
        let t = Instant::now();
        s.write_all(&src).unwrap();
        s.read_exact(&mut ack).unwrap();
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    drop(s);
    kid.wait().unwrap();
    let _ = std::fs::remove_file(&path);
    Duration::from_secs_f64(median(times))
}

fn gbps(x: f64) -> f64 {
    x / 1e9
}

fn main() {
    if let Some((role, a)) = CHILD.role() {
        child(&role, &a);
        return;
    }
    if harness::listing() {
        return;
    }
    let rounds = harness::rounds(ROUNDS);
    let sizes: Vec<(&str, usize, usize)> = [
        ("64k", 64 << 10, 4000),
        ("1m", 1 << 20, 400),
        ("16m", 16 << 20, 30),
    ]
    .into_iter()
    .filter(|(tag, _, _)| {
        std::env::var("BENCH_SIZES").map_or(true, |s| s.split(',').any(|x| x == *tag))
    })
    .collect();
    println!("large messages across two processes; {rounds} alternating rounds, medians");
    for (tag, len, n) in sizes {
        let warm = 8;
        let (mut h, mut cp, mut m, mut u) = (vec![], vec![], vec![], vec![]);
        let (mut rm, mut ru, mut rc, mut rf, mut fl) = (vec![], vec![], vec![], vec![], vec![]);
        for r in 0..rounds {
            // Alternate which side runs first.
            let (a, d, b, c, f) = if r % 2 == 0 {
                let a = heap_e2e(len, warm, n, true);
                let d = heap_e2e(len, warm, n, false);
                let b = memcpy(len, n);
                let f = work_floor(len, n);
                let c = uds_e2e(len, warm, n);
                (a, d, b, c, f)
            } else {
                let c = uds_e2e(len, warm, n);
                let f = work_floor(len, n);
                let b = memcpy(len, n);
                let d = heap_e2e(len, warm, n, false);
                let a = heap_e2e(len, warm, n, true);
                (a, d, b, c, f)
            };
            fl.push(f);
            rf.push(a / f);
            h.push(a);
            cp.push(d);
            m.push(b);
            u.push(c);
            rm.push(a / b);
            ru.push(a / c);
            rc.push(d / b);
        }
        println!(
            "{tag:>3} end to end: in place {:>6.2} GB/s | send_large (copy in) {:>6.2} GB/s | \
             memcpy {:>6.2} GB/s | UnixStream {:>6.2} GB/s | median ratios: in place {:.2}x \
             memcpy, {:.1}x UnixStream; send_large {:.2}x memcpy | fill+read in one process \
             {:>6.2} GB/s, in place {:.2}x of it",
            gbps(median(h)),
            gbps(median(cp)),
            gbps(median(m)),
            gbps(median(u)),
            median(rm),
            median(ru),
            median(rc),
            gbps(median(fl)),
            median(rf)
        );
    }
    if std::env::var("BENCH_SIZES").map_or(true, |s| s.split(',').any(|x| x == "handoff")) {
        let len = 16 << 20;
        let (mut h, mut u, mut r) = (vec![], vec![], vec![]);
        for i in 0..rounds {
            let (a, b) = if i % 2 == 0 {
                let a = heap_handoff(len, 200);
                (a, uds_handoff(len, 20))
            } else {
                let b = uds_handoff(len, 20);
                (heap_handoff(len, 200), b)
            };
            h.push(a.as_secs_f64());
            u.push(b.as_secs_f64());
            r.push(b.as_secs_f64() / a.as_secs_f64());
        }
        println!(
            "16 MiB handoff round trip: block by handle {:>8.1} us | UnixStream copy {:>8.1} us | \
             median ratio {:.0}x lower",
            median(h) * 1e6,
            median(u) * 1e6,
            median(r)
        );
    }
}
