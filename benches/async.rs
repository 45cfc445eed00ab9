//! Async benchmarks across processes, against the floors and the alternatives (issue 4):
//!
//! - RTT, hot: shmchan async ping-pong with the default `WaitStrategy`, against the *async hot
//!   floor*: two processes, each a tokio current_thread runtime, ping-pong one shared word,
//!   the waiting task re-checking and `yield_now().await`-ing.
//! - RTT, cold: shmchan with `WaitStrategy::park_only()`, against the *async cold floor*: the
//!   same with the waiting task always parked on an eventfd in `AsyncFd`.
//! - One-way throughput at 64 B, 1 KiB, 64 KiB: shmchan async across processes, against
//!   `tokio::sync::mpsc` between two current_thread runtimes on two threads of one process
//!   (arrays moved by value; `Vec<u8>` for 64 KiB), and tokio `UnixStream` with
//!   `Framed<_, LengthDelimitedCodec>` across processes, the sender batching with
//!   `feed` + `flush` every 64 frames.
//!
//! Every comparison alternates its sides (A B A B ..., `ROUNDS` rounds) and reports the
//! median ratio: single figures on this VM drift 2-4x with vCPU placement.
//!
//! `cargo bench --bench async`

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use shmchan::{Options, Segment, WaitStrategy, spsc};
use tokio::io::unix::AsyncFd;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

const ROUNDS: usize = 5;
const TRIPS: u64 = 20_000;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn spawn(role: &str, args: &[&str]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env("ASYNC_BENCH_ROLE", role)
        .env("ASYNC_BENCH_ARGS", args.join(","))
        .spawn()
        .unwrap()
}

fn stop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

fn name(tag: &str) -> String {
    format!("/shmchan-bench-async-{}-{tag}", std::process::id())
}

fn opts(size: usize, wait: WaitStrategy) -> Options {
    Options::new()
        .slot_size(size)
        .capacity(if size > 4096 { 16 } else { 256 })
        .wait_strategy(wait)
}

fn wait_of(mode: &str) -> WaitStrategy {
    if mode == "cold" {
        WaitStrategy::park_only()
    } else {
        WaitStrategy::default()
    }
}

/// Waits until the eventfd is readable in the reactor, then takes its count.
async fn efd_wait(fd: &AsyncFd<OwnedFd>) {
    loop {
        let mut guard = fd.readable().await.unwrap();
        let mut b = [0u8; 8];
        match rustix::io::read(fd.get_ref(), &mut b) {
            Ok(_) => return,
            Err(rustix::io::Errno::AGAIN) => guard.clear_ready(),
            Err(e) => panic!("{e}"),
        }
    }
}

fn efd_ring(fd: &AsyncFd<OwnedFd>) {
    rustix::io::write(fd.get_ref(), &1u64.to_ne_bytes()).unwrap();
}

fn register(fd: OwnedFd) -> AsyncFd<OwnedFd> {
    // SAFETY: `fd` is an open eventfd we own; the AsyncFd owns it from here on and it stays
    // the same open description until dropped.
    unsafe { AsyncFd::register(fd) }
        .map_err(|e| e.into_parts().1)
        .unwrap()
}

async fn child(role: &str, args: &[String]) {
    match role {
        "echo" => {
            let w = wait_of(&args[2]);
            let mut rx = spsc::Consumer::open(&args[0], opts(64, w)).unwrap();
            let mut tx = spsc::Producer::open(&args[1], opts(64, w)).unwrap();
            while let Ok(m) = rx.recv().await {
                if tx.send(m).await.is_err() {
                    break;
                }
            }
        }
        "floor-hot" => {
            let seg = Segment::open(&args[0], shmchan::Mode::ReadWrite).unwrap();
            let word = seg.atomic_u64(0).unwrap();
            for i in 0..TRIPS + 100 {
                while word.load(Ordering::Acquire) != 2 * i + 1 {
                    tokio::task::yield_now().await;
                }
                word.store(2 * i + 2, Ordering::Release);
            }
        }
        "floor-cold" => {
            // SAFETY: the parent passed two eventfds it created without CLOEXEC; we inherited
            // them and own our copies.
            let (ping, pong) = unsafe {
                (
                    OwnedFd::from_raw_fd(args[0].parse().unwrap()),
                    OwnedFd::from_raw_fd(args[1].parse().unwrap()),
                )
            };
            rustix::io::ioctl_fionbio(&ping, true).unwrap();
            let (ping, pong) = (register(ping), register(pong));
            for _ in 0..TRIPS + 100 {
                efd_wait(&ping).await;
                efd_ring(&pong);
            }
        }
        "send-shm" => {
            let size: usize = args[1].parse().unwrap();
            let mut tx =
                spsc::Producer::open(&args[0], opts(size, WaitStrategy::default())).unwrap();
            let payload = vec![7u8; size];
            while tx.send(&payload[..]).await.is_ok() {}
        }
        "send-uds" => {
            let size: usize = args[1].parse().unwrap();
            let s = tokio::net::UnixStream::connect(&args[0]).await.unwrap();
            let mut framed = Framed::new(s, LengthDelimitedCodec::new());
            let payload = Bytes::from(vec![7u8; size]);
            'outer: loop {
                for _ in 0..64 {
                    if framed.feed(payload.clone()).await.is_err() {
                        break 'outer;
                    }
                }
                if SinkExt::<Bytes>::flush(&mut framed).await.is_err() {
                    break;
                }
            }
        }
        _ => panic!("unknown role {role}"),
    }
}

async fn shm_rtt(mode: &str) -> Duration {
    let (a, b) = (name(&format!("a-{mode}")), name(&format!("b-{mode}")));
    let w = wait_of(mode);
    let mut tx = spsc::Producer::create(&a, opts(64, w)).unwrap();
    let mut rx = spsc::Consumer::create(&b, opts(64, w)).unwrap();
    let c = spawn("echo", &[&a, &b, mode]);
    let mut rtt = Vec::with_capacity(TRIPS as usize);
    for i in 0..TRIPS + 100 {
        let t = Instant::now();
        tx.send(i.to_le_bytes()).await.unwrap();
        rx.recv().await.unwrap();
        if i >= 100 {
            rtt.push(t.elapsed());
        }
    }
    drop((tx, rx));
    stop(c);
    let _ = Segment::unlink(&a);
    let _ = Segment::unlink(&b);
    rtt.sort();
    rtt[rtt.len() / 2]
}

async fn floor_hot() -> Duration {
    let n = name("floor");
    let seg = Segment::options()
        .unlink_on_drop(true)
        .create(&n, 4096)
        .unwrap();
    let word = seg.atomic_u64(0).unwrap();
    let c = spawn("floor-hot", &[&n]);
    let mut rtt = Vec::with_capacity(TRIPS as usize);
    for i in 0..TRIPS + 100 {
        let t = Instant::now();
        word.store(2 * i + 1, Ordering::Release);
        while word.load(Ordering::Acquire) != 2 * i + 2 {
            tokio::task::yield_now().await;
        }
        if i >= 100 {
            rtt.push(t.elapsed());
        }
    }
    stop(c);
    rtt.sort();
    rtt[rtt.len() / 2]
}

async fn floor_cold() -> Duration {
    // Without CLOEXEC so that the child inherits them under the same numbers.
    let ping = rustix::event::eventfd(0, rustix::event::EventfdFlags::empty()).unwrap();
    let pong = rustix::event::eventfd(0, rustix::event::EventfdFlags::empty()).unwrap();
    let c = spawn(
        "floor-cold",
        &[&ping.as_raw_fd().to_string(), &pong.as_raw_fd().to_string()],
    );
    rustix::io::ioctl_fionbio(&pong, true).unwrap();
    let (ping, pong) = (register(ping), register(pong));
    let mut rtt = Vec::with_capacity(TRIPS as usize);
    for i in 0..TRIPS + 100 {
        let t = Instant::now();
        efd_ring(&ping);
        efd_wait(&pong).await;
        if i >= 100 {
            rtt.push(t.elapsed());
        }
    }
    stop(c);
    rtt.sort();
    rtt[rtt.len() / 2]
}

async fn shm_throughput(size: usize, n: u64) -> f64 {
    let nm = name(&format!("tp{size}"));
    let mut rx = spsc::Consumer::create(&nm, opts(size, WaitStrategy::default())).unwrap();
    let c = spawn("send-shm", &[&nm, &size.to_string()]);
    for _ in 0..1000 {
        rx.recv().await.unwrap();
    }
    let t = Instant::now();
    for _ in 0..n {
        rx.recv().await.unwrap();
    }
    let took = t.elapsed();
    drop(rx);
    stop(c);
    let _ = Segment::unlink(&nm);
    n as f64 / took.as_secs_f64()
}

fn tokio_mpsc_throughput(size: usize, n: u64) -> f64 {
    macro_rules! run {
        ($make:expr) => {{
            let (tx, mut rx) = tokio::sync::mpsc::channel(256);
            let producer = std::thread::spawn(move || {
                rt().block_on(async move { while tx.send($make).await.is_ok() {} })
            });
            let took = rt().block_on(async {
                for _ in 0..1000 {
                    rx.recv().await.unwrap();
                }
                let t = Instant::now();
                for _ in 0..n {
                    std::hint::black_box(rx.recv().await.unwrap());
                }
                t.elapsed()
            });
            drop(rx);
            producer.join().unwrap();
            n as f64 / took.as_secs_f64()
        }};
    }
    match size {
        64 => run!([7u8; 64]),
        1024 => run!([7u8; 1024]),
        _ => run!(vec![7u8; size]),
    }
}

async fn uds_throughput(size: usize, n: u64) -> f64 {
    let path =
        std::env::temp_dir().join(format!("shmchan-bench-async-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let l = tokio::net::UnixListener::bind(&path).unwrap();
    let c = spawn("send-uds", &[path.to_str().unwrap(), &size.to_string()]);
    let (s, _) = l.accept().await.unwrap();
    let mut framed = Framed::new(s, LengthDelimitedCodec::new());
    for _ in 0..1000 {
        framed.next().await.unwrap().unwrap();
    }
    let t = Instant::now();
    for _ in 0..n {
        framed.next().await.unwrap().unwrap();
    }
    let took = t.elapsed();
    drop(framed);
    stop(c);
    let _ = std::fs::remove_file(&path);
    n as f64 / took.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if let Ok(role) = std::env::var("ASYNC_BENCH_ROLE") {
        let args: Vec<String> = std::env::var("ASYNC_BENCH_ARGS")
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect();
        rt().block_on(child(&role, &args));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = rt();
    println!("shmchan async benchmarks; {ROUNDS} alternating rounds per comparison, medians");
    for mode in ["hot", "cold"] {
        let (mut s, mut f, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let a = rt.block_on(shm_rtt(mode)).as_secs_f64();
            let b = rt
                .block_on(if mode == "hot" {
                    Box::pin(floor_hot())
                        as std::pin::Pin<Box<dyn std::future::Future<Output = Duration>>>
                } else {
                    Box::pin(floor_cold())
                })
                .as_secs_f64();
            s.push(a);
            f.push(b);
            r.push(a / b);
        }
        println!(
            "async RTT p50, {mode:>4}: shmchan {:>8.2} µs | {mode} floor {:>8.2} µs | median ratio shmchan/floor {:.2}",
            median(s) * 1e6,
            median(f) * 1e6,
            median(r)
        );
    }
    for (size, n) in [(64usize, 1_000_000u64), (1024, 300_000), (65536, 10_000)] {
        let (mut s, mut m, mut u, mut rm, mut ru) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..ROUNDS {
            let a = rt.block_on(shm_throughput(size, n));
            let b = tokio_mpsc_throughput(size, n);
            let c = rt.block_on(uds_throughput(size, n));
            rm.push(a / b);
            ru.push(a / c);
            s.push(a);
            m.push(b);
            u.push(c);
        }
        println!(
            "async one-way {size:>5} B: shmchan {:>6.2} M msg/s | tokio mpsc in-process {:>6.2} M/s | UnixStream Framed {:>6.2} M/s | median ratios {:.2}x mpsc, {:.2}x UnixStream",
            median(s) / 1e6,
            median(m) / 1e6,
            median(u) / 1e6,
            median(rm),
            median(ru)
        );
    }
}
