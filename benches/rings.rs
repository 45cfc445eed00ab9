//! Ring benchmarks across processes, each compared in the same run with what users would
//! pick instead, alternating the two sides (A B A B ..., `ROUNDS` rounds) and reporting the
//! median ratio, because the VM's figures drift 2-4x with where its vCPUs land.
//!
//! - one-way throughput, SPSC, 64 B / 1 KiB / 64 KiB: a child process sends continuously; the
//!   parent receives (copying each message out into a reusable buffer) and measures;
//!   baselines: `crossbeam_queue::ArrayQueue` between two threads of one process (arrays moved
//!   by value for 64 B and 1 KiB, `Vec<u8>` for 64 KiB: one copy in, one out, like a ring
//!   slot), and a `std` `UnixStream` across processes (4-byte length prefixes, buffered);
//! - ping-pong round trips over two SPSC channels, spinning and parked, against the same over
//!   a `UnixStream`;
//! - MPSC throughput with 2 and 4 producer processes.
//!
//! The receive buffer is 4 KiB-aligned and so is every slot's payload offset modulo 64, so
//! the 64 KiB copies are not on glibc's page-offset memcpy cliff by accident (DESIGN.md).
//!
//! `cargo bench --bench rings`

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use shmchan::{Options, WaitStrategy, mpsc, spsc};

#[path = "support/harness.rs"]
mod harness;
use harness::{SelfExec, median, ratios, stop};

const ROUNDS: usize = 5;

/// This bench's child processes.
const CHILD: SelfExec = SelfExec {
    role_var: "RINGS_ROLE",
    args_var: "RINGS_ARGS",
};

fn spawn(role: &str, args: &[&str]) -> Child {
    CHILD.spawn(role, args)
}

/// A 4 KiB-aligned receive buffer of `len` bytes.
struct Aligned {
    v: Vec<u8>,
    off: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let v = vec![0u8; len + 4096];
        let off = (4096 - (v.as_ptr() as usize % 4096)) % 4096;
        Aligned { v, off }
    }
    fn buf(&mut self, len: usize) -> &mut [u8] {
        &mut self.v[self.off..self.off + len]
    }
}

fn opts(size: usize) -> Options {
    Options::new()
        .slot_size(size)
        .capacity(if size > 4096 { 16 } else { 256 })
}

// ---- children -------------------------------------------------------------------------

fn child(role: &str, args: &[String]) {
    match role {
        "spsc-send" | "mpsc-send" => {
            let size: usize = args[1].parse().unwrap();
            let payload = vec![7u8; size];
            if role == "spsc-send" {
                let mut tx = spsc::Producer::open(&args[0], opts(size)).unwrap();
                while tx.send_blocking(&payload[..]).is_ok() {}
            } else {
                let mut tx = mpsc::Producer::open(&args[0], opts(size)).unwrap();
                while tx.send_blocking(&payload[..]).is_ok() {}
            }
        }
        "uds-send" => {
            let size: usize = args[1].parse().unwrap();
            let mut s = BufWriter::with_capacity(1 << 16, UnixStream::connect(&args[0]).unwrap());
            let mut frame = vec![7u8; 4 + size];
            frame[..4].copy_from_slice(&(size as u32).to_le_bytes());
            while s.write_all(&frame).is_ok() {}
        }
        "echo" => {
            let wait = if args[2] == "spin" {
                WaitStrategy::new().spin_for(Duration::from_secs(1))
            } else {
                WaitStrategy::park_only()
            };
            let mut rx = spsc::Consumer::open(&args[0], opts(64).wait_strategy(wait)).unwrap();
            let mut tx = spsc::Producer::open(&args[1], opts(64).wait_strategy(wait)).unwrap();
            while let Ok(m) = rx.recv_blocking() {
                if tx.send_blocking(m).is_err() {
                    break;
                }
            }
        }
        "uds-echo" => {
            let mut s = UnixStream::connect(&args[0]).unwrap();
            let mut b = [0u8; 12];
            while s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {}
        }
        _ => panic!("unknown role {role}"),
    }
}

// ---- measurements (each returns messages per second or a median RTT) ---------------------

fn name(tag: &str) -> String {
    format!("/shmchan-bench-{}-{tag}", std::process::id())
}

/// Receives 1000 warm-up messages (they include the children's start), then times `n`.
fn timed_receive<F: shmchan::channel::Flavour>(
    rx: &mut shmchan::channel::Consumer<F>,
    buf: &mut [u8],
    n: u64,
) -> Duration {
    let mut take = || rx.recv_ref_blocking().unwrap().read(0, buf).unwrap();
    for _ in 0..1000.min(n) {
        take();
    }
    let start = Instant::now();
    for _ in 0..n {
        take();
    }
    start.elapsed()
}

/// Receives `n` messages of `size` bytes from `producers` child processes (SPSC for one).
fn shm_throughput(size: usize, n: u64, producers: usize) -> f64 {
    let nm = name(&format!("tp{size}-{producers}"));
    let mut buf = Aligned::new(size);
    let t = if producers == 1 {
        let mut rx = spsc::Consumer::create(&nm, opts(size)).unwrap();
        let c = spawn("spsc-send", &[&nm, &size.to_string()]);
        let t = timed_receive(&mut rx, buf.buf(size), n);
        stop(c);
        t
    } else {
        let mut rx = mpsc::Consumer::create(&nm, opts(size)).unwrap();
        let cs: Vec<_> = (0..producers)
            .map(|_| spawn("mpsc-send", &[&nm, &size.to_string()]))
            .collect();
        let t = timed_receive(&mut rx, buf.buf(size), n);
        cs.into_iter().for_each(stop);
        t
    };
    let _ = shmchan::Segment::unlink(&nm);
    n as f64 / t.as_secs_f64()
}

fn crossbeam_throughput(size: usize, n: u64) -> f64 {
    let stop_flag = Arc::new(AtomicBool::new(false));
    let mut buf = Aligned::new(size);
    macro_rules! run {
        ($q:expr, $make:expr, $read:expr) => {{
            let q = Arc::new($q);
            let (q2, s2) = (q.clone(), stop_flag.clone());
            let producer = std::thread::spawn(move || {
                while !s2.load(Ordering::Relaxed) {
                    let mut item = $make;
                    while let Err(back) = q2.push(item) {
                        if s2.load(Ordering::Relaxed) {
                            return;
                        }
                        item = back;
                        std::hint::spin_loop();
                    }
                }
            });
            let mut got = 0;
            let mut start = Instant::now();
            while got < n + 1000 {
                if got == 1000 {
                    start = Instant::now();
                }
                match q.pop() {
                    Some(item) => {
                        #[allow(clippy::redundant_closure_call)]
                        ($read)(&item, buf.buf(size));
                        got += 1;
                    }
                    None => std::hint::spin_loop(),
                }
            }
            let t = start.elapsed();
            stop_flag.store(true, Ordering::Relaxed);
            producer.join().unwrap();
            n as f64 / t.as_secs_f64()
        }};
    }
    match size {
        64 => run!(
            ArrayQueue::<[u8; 64]>::new(256),
            [7u8; 64],
            |i: &[u8; 64], b: &mut [u8]| b.copy_from_slice(i)
        ),
        1024 => run!(
            ArrayQueue::<[u8; 1024]>::new(256),
            [7u8; 1024],
            |i: &[u8; 1024], b: &mut [u8]| b.copy_from_slice(i)
        ),
        _ => run!(
            ArrayQueue::<Vec<u8>>::new(16),
            vec![7u8; size],
            |i: &Vec<u8>, b: &mut [u8]| b.copy_from_slice(i)
        ),
    }
}

fn uds_throughput(size: usize, n: u64) -> f64 {
    let path = harness::uds_path("tput");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    let c = spawn("uds-send", &[path.to_str().unwrap(), &size.to_string()]);
    let (s, _) = l.accept().unwrap();
    let mut r = BufReader::with_capacity(1 << 16, s);
    let mut frame = Aligned::new(4 + size);
    for _ in 0..1000 {
        r.read_exact(frame.buf(4 + size)).unwrap();
    }
    let start = Instant::now();
    for _ in 0..n {
        r.read_exact(frame.buf(4 + size)).unwrap();
    }
    let t = start.elapsed();
    stop(c);
    let _ = std::fs::remove_file(&path);
    n as f64 / t.as_secs_f64()
}

fn shm_rtt(mode: &str, n: u32) -> Duration {
    let (a, b) = (name(&format!("pa-{mode}")), name(&format!("pb-{mode}")));
    let wait = if mode == "spin" {
        WaitStrategy::new().spin_for(Duration::from_secs(1))
    } else {
        WaitStrategy::park_only()
    };
    let mut tx = spsc::Producer::create(&a, opts(64).wait_strategy(wait)).unwrap();
    let mut rx = spsc::Consumer::create(&b, opts(64).wait_strategy(wait)).unwrap();
    let c = spawn("echo", &[&a, &b, mode]);
    let mut rtt = Vec::with_capacity(n as usize);
    for i in 0..n + 100 {
        let t = Instant::now();
        tx.send_blocking(u64::from(i).to_le_bytes()).unwrap();
        rx.recv_blocking().unwrap();
        if i >= 100 {
            rtt.push(t.elapsed());
        }
    }
    drop(tx);
    drop(rx);
    stop(c);
    let _ = shmchan::Segment::unlink(&a);
    let _ = shmchan::Segment::unlink(&b);
    rtt.sort();
    rtt[rtt.len() / 2]
}

fn uds_rtt(n: u32) -> Duration {
    let path = harness::uds_path("rtt");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    let c = spawn("uds-echo", &[path.to_str().unwrap()]);
    let (mut s, _) = l.accept().unwrap();
    let mut rtt = Vec::with_capacity(n as usize);
    let mut b = [0u8; 12];
    for i in 0..n + 100 {
        let t = Instant::now();
        b[4..].copy_from_slice(&u64::from(i).to_le_bytes());
        s.write_all(&b).unwrap();
        s.read_exact(&mut b).unwrap();
        if i >= 100 {
            rtt.push(t.elapsed());
        }
    }
    drop(s);
    stop(c);
    let _ = std::fs::remove_file(&path);
    rtt.sort();
    rtt[rtt.len() / 2]
}

fn main() {
    if let Some((role, args)) = CHILD.role() {
        child(&role, &args);
        return;
    }
    if harness::listing() {
        return;
    }
    println!("shmchan ring benchmarks; {ROUNDS} alternating rounds per comparison, medians");
    for (size, n) in [(64usize, 2_000_000u64), (1024, 500_000), (65536, 20_000)] {
        let (mut s, mut cb, mut u) = (Vec::new(), Vec::new(), Vec::new());
        let (mut r_cb, mut r_u) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let a = shm_throughput(size, n, 1);
            let b = crossbeam_throughput(size, n);
            let c = uds_throughput(size, n);
            r_cb.push(a / b);
            r_u.push(a / c);
            s.push(a);
            cb.push(b);
            u.push(c);
        }
        println!(
            "SPSC one-way {size:>5} B: shmchan {:>6.2} M msg/s ({:>6.0} MB/s) | ArrayQueue in-process {:>6.2} M/s | UnixStream {:>6.2} M/s | median ratios: {:.2}x ArrayQueue, {:.2}x UnixStream",
            median(s.clone()) / 1e6,
            median(s) * size as f64 / 1e6,
            median(cb) / 1e6,
            median(u) / 1e6,
            median(r_cb),
            median(r_u)
        );
    }
    for producers in [2usize, 4] {
        let v: Vec<f64> = (0..ROUNDS)
            .map(|_| shm_throughput(64, 1_000_000, producers))
            .collect();
        println!(
            "MPSC 64 B, {producers} producer processes: shmchan {:.2} M msg/s",
            median(v) / 1e6
        );
    }
    for mode in ["spin", "park"] {
        let (s, u) = harness::alternate(
            ROUNDS,
            || shm_rtt(mode, 5_000).as_secs_f64(),
            || uds_rtt(5_000).as_secs_f64(),
        );
        let r = ratios(&s, &u, |a, b| b / a);
        println!(
            "ping-pong RTT p50, {mode:>5}: shmchan {:>8.2} µs | UnixStream {:>8.2} µs | median ratio {:.1}x lower",
            median(s) * 1e6,
            median(u) * 1e6,
            median(r)
        );
    }
}
