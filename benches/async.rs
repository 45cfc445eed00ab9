//! Async benchmarks across processes, against the floors and the alternatives (issue 4):
//!
//! - RTT, hot: shmchan async ping-pong with the default `WaitStrategy`, against the *async hot
//!   floor*: two processes, each a tokio current_thread runtime, ping-pong one shared word,
//!   the waiting task re-checking and `yield_now().await`-ing (every 16th check also
//!   `std::thread::yield_now()`, so that the floor itself survives sharing a CPU).
//! - RTT, cold: shmchan with `WaitStrategy::park_only()`, against the *async cold floor*: the
//!   same with the waiting task always parked on an eventfd in `AsyncFd`.
//! - One-way throughput at 64 B, 1 KiB, 64 KiB: shmchan async across processes, against
//!   `tokio::sync::mpsc` between two current_thread runtimes on two threads of one process
//!   (arrays moved by value; `Vec<u8>` for 64 KiB), and tokio `UnixStream` with
//!   `Framed<_, LengthDelimitedCodec>` across processes, the sender batching with
//!   `feed` + `flush` every 64 frames.
//!
//! Every comparison alternates its sides (A B A B ..., `ROUNDS` rounds) and reports the
//! median ratio: single figures on this VM drift 2-4x with vCPU placement. Each runs in every
//! placement of `support/placement.rs` (unpinned, both on one CPU, each on its own CPU, beside
//! a CPU burner), against the same placement of its baseline; RTTs report p50 / p99 / p99.9.
//!
//! - Executor citizenship: the gaps between turns of a neighbour task on the same
//!   current_thread runtime as a task waiting for messages paced ~200 µs apart (shmchan from
//!   another process against tokio mpsc from another thread): how long a wait holds the
//!   executor.
//!
//! `cargo bench --bench async` (`BENCH_PLACEMENTS=one-cpu,busy`, `BENCH_ROUNDS=7`,
//! `BENCH_ONLY=rtt`, `BENCH_ONLY=64` or `BENCH_ONLY=neighbour` narrow a run).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Child;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use shmchan::{Options, Segment, WaitStrategy, spsc};
use tokio::io::unix::AsyncFd;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

#[path = "support/placement.rs"]
mod placement;
use placement::Placement;
#[path = "support/harness.rs"]
mod harness;
use harness::{SelfExec, median, quantile, ratios, rt, stop};

const ROUNDS: usize = 5;
const TRIPS: u64 = 20_000;

/// RTT percentiles of one round: p50, p99, p99.9.
type Rtt = [Duration; 3];

fn percentiles(mut v: Vec<Duration>) -> Rtt {
    v.sort();
    [quantile(&v, 0.5), quantile(&v, 0.99), quantile(&v, 0.999)]
}

/// This bench's child processes.
const CHILD: SelfExec = SelfExec {
    role_var: "ASYNC_BENCH_ROLE",
    args_var: "ASYNC_BENCH_ARGS",
};

fn spawn(pl: Placement, role: &str, args: &[&str]) -> Child {
    pl.child(&mut CHILD.command(role, args)).spawn().unwrap()
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

/// The hot floor's wait: re-check, yield to the executor; every 16th check also hands the CPU
/// to the OS, without which two such loops on one CPU wait out a scheduler tick per hop.
async fn floor_wait(word: &std::sync::atomic::AtomicU64, want: u64) {
    let mut n = 0u32;
    while word.load(Ordering::Acquire) != want {
        n = n.wrapping_add(1);
        if n % 16 == 0 {
            std::thread::yield_now();
        }
        tokio::task::yield_now().await;
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
                floor_wait(word, 2 * i + 1).await;
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
            if args.get(2).map(String::as_str) == Some("feed") {
                // As the Framed sender: `feed` 64, then one `flush` (staged on the SPSC ring,
                // published with one store and one wake check).
                'outer: loop {
                    for _ in 0..64 {
                        if tx.feed(&payload[..]).await.is_err() {
                            break 'outer;
                        }
                    }
                    if tx.flush().await.is_err() {
                        break;
                    }
                }
            } else {
                while tx.send(&payload[..]).await.is_ok() {}
            }
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
        "send-paced" => {
            // One message every ~200 µs (a waiting consumer: spin, yield, park, woken), as
            // a blocking sender so that the pacing needs no runtime.
            let n: u64 = args[1].parse().unwrap();
            let mut tx = spsc::Producer::open(&args[0], opts(64, WaitStrategy::default())).unwrap();
            for i in 0..n {
                std::thread::sleep(Duration::from_micros(200));
                if tx.send_blocking(i.to_le_bytes()).is_err() {
                    break;
                }
            }
        }
        _ => panic!("unknown role {role}"),
    }
}

/// Gaps between the turns of a neighbour task (`yield_now` in a loop) on a current_thread
/// runtime while another task of it receives `PACED` messages sent ~200 µs apart: by
/// shmchan from another process, or by tokio mpsc from another thread. p50 / p99 / p99.9.
const PACED: u64 = 5_000;

fn neighbour_gaps(pl: Placement, shm: bool) -> Rtt {
    use std::cell::Cell;
    use std::rc::Rc;
    let local = tokio::task::LocalSet::new();
    let nm = name("paced");
    // Unlinked even if a round panics (a failed child), so nothing is left in /dev/shm.
    let _unlink = harness::UnlinkOnDrop(vec![nm.clone()]);
    let mut child = None;
    let mut thread = None;
    let mut rx_shm = None;
    let mut rx_tokio = None;
    if shm {
        rx_shm = Some(spsc::Consumer::create(&nm, opts(64, WaitStrategy::default())).unwrap());
        child = Some(spawn(pl, "send-paced", &[&nm, &PACED.to_string()]));
    } else {
        let (tx, rx) = tokio::sync::mpsc::channel::<[u8; 8]>(256);
        rx_tokio = Some(rx);
        thread = Some(std::thread::spawn(move || {
            placement::pin(pl.peer_cpu());
            for i in 0..PACED {
                std::thread::sleep(Duration::from_micros(200));
                if tx.blocking_send(i.to_le_bytes()).is_err() {
                    break;
                }
            }
        }));
    }
    let gaps = local.block_on(&rt(), async move {
        let stop = Rc::new(Cell::new(false));
        let s2 = stop.clone();
        let other = tokio::task::spawn_local(async move {
            let mut v = Vec::with_capacity(100_000);
            let mut last = Instant::now();
            while !s2.get() {
                tokio::task::yield_now().await;
                let now = Instant::now();
                v.push(now - last);
                last = now;
            }
            v
        });
        for _ in 0..PACED {
            if let Some(rx) = rx_shm.as_mut() {
                rx.recv().await.unwrap();
            } else if let Some(rx) = rx_tokio.as_mut() {
                rx.recv().await.unwrap();
            }
        }
        stop.set(true);
        other.await.unwrap()
    });
    if let Some(c) = child {
        stop(c);
    }
    if let Some(t) = thread {
        t.join().unwrap();
    }
    let _ = Segment::unlink(&nm);
    percentiles(gaps)
}

async fn shm_rtt(pl: Placement, mode: &str) -> Rtt {
    let (a, b) = (name(&format!("a-{mode}")), name(&format!("b-{mode}")));
    let w = wait_of(mode);
    let mut tx = spsc::Producer::create(&a, opts(64, w)).unwrap();
    let mut rx = spsc::Consumer::create(&b, opts(64, w)).unwrap();
    let c = spawn(pl, "echo", &[&a, &b, mode]);
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
    percentiles(rtt)
}

async fn floor_hot(pl: Placement) -> Rtt {
    let n = name("floor");
    let seg = Segment::options()
        .unlink_on_drop(true)
        .create(&n, 4096)
        .unwrap();
    let word = seg.atomic_u64(0).unwrap();
    let c = spawn(pl, "floor-hot", &[&n]);
    let mut rtt = Vec::with_capacity(TRIPS as usize);
    for i in 0..TRIPS + 100 {
        let t = Instant::now();
        word.store(2 * i + 1, Ordering::Release);
        floor_wait(word, 2 * i + 2).await;
        if i >= 100 {
            rtt.push(t.elapsed());
        }
    }
    stop(c);
    percentiles(rtt)
}

async fn floor_cold(pl: Placement) -> Rtt {
    // Without CLOEXEC so that the child inherits them under the same numbers.
    let ping = rustix::event::eventfd(0, rustix::event::EventfdFlags::empty()).unwrap();
    let pong = rustix::event::eventfd(0, rustix::event::EventfdFlags::empty()).unwrap();
    let c = spawn(
        pl,
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
    percentiles(rtt)
}

async fn shm_throughput(pl: Placement, size: usize, n: u64, how: &str) -> f64 {
    let nm = name(&format!("tp{size}"));
    let mut rx = spsc::Consumer::create(&nm, opts(size, WaitStrategy::default())).unwrap();
    let c = spawn(pl, "send-shm", &[&nm, &size.to_string(), how]);
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

fn tokio_mpsc_throughput(pl: Placement, size: usize, n: u64) -> f64 {
    macro_rules! run {
        ($make:expr) => {{
            let (tx, mut rx) = tokio::sync::mpsc::channel(256);
            let producer = std::thread::spawn(move || {
                placement::pin(pl.peer_cpu());
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

async fn uds_throughput(pl: Placement, size: usize, n: u64) -> f64 {
    let path = harness::uds_path("async");
    let _ = std::fs::remove_file(&path);
    let l = tokio::net::UnixListener::bind(&path).unwrap();
    let c = spawn(pl, "send-uds", &[path.to_str().unwrap(), &size.to_string()]);
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

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The median over rounds of percentile `k` of [`Rtt`], in µs.
fn rtt_median(v: &[Rtt], k: usize) -> f64 {
    median(v.iter().map(|x| us(x[k])).collect())
}

fn main() {
    if let Some((role, args)) = placement::child_start(CHILD) {
        rt().block_on(child(&role, &args));
        return;
    }
    if harness::listing() {
        return;
    }
    let only = std::env::var("BENCH_ONLY").ok();
    let want = |what: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|w| w == what))
    };
    let rounds = harness::rounds(ROUNDS);
    let rt = rt();
    println!("shmchan async benchmarks; {rounds} alternating rounds per comparison, medians");
    for pl in Placement::selected() {
        let _in = pl.enter();
        let p = pl.name();
        for mode in ["hot", "cold"] {
            if !want("rtt") && !want(mode) {
                continue;
            }
            let (s, f) = harness::alternate(
                rounds,
                || rt.block_on(shm_rtt(pl, mode)),
                || {
                    if mode == "hot" {
                        rt.block_on(floor_hot(pl))
                    } else {
                        rt.block_on(floor_cold(pl))
                    }
                },
            );
            let r = ratios(&s, &f, |a, b| us(a[0]) / us(b[0]));
            let m = rtt_median;
            println!(
                "[{p:>8}] async RTT {mode:>4}: shmchan p50/p99/p99.9 {:>7.2}/{:>8.2}/{:>8.2} µs | {mode} floor {:>7.2}/{:>8.2}/{:>8.2} µs | median ratio p50 shmchan/floor {:.2}",
                m(&s, 0),
                m(&s, 1),
                m(&s, 2),
                m(&f, 0),
                m(&f, 1),
                m(&f, 2),
                median(r)
            );
        }
        if want("neighbour") {
            let (s, t) = harness::alternate(
                rounds,
                || neighbour_gaps(pl, true),
                || neighbour_gaps(pl, false),
            );
            let r = ratios(&s, &t, |a, b| us(a[1]) / us(b[1]));
            let m = rtt_median;
            println!(
                "[{p:>8}] neighbour task's gap beside a waiting receiver: shmchan p50/p99/p99.9 {:>7.2}/{:>8.2}/{:>8.2} µs | tokio mpsc {:>7.2}/{:>8.2}/{:>8.2} µs | median ratio p99 shmchan/mpsc {:.2}",
                m(&s, 0),
                m(&s, 1),
                m(&s, 2),
                m(&t, 0),
                m(&t, 1),
                m(&t, 2),
                median(r)
            );
        }
        for (size, n) in [(64usize, 1_000_000u64), (1024, 300_000), (65536, 10_000)] {
            if !want(&size.to_string()) {
                continue;
            }
            let (mut s, mut m, mut u, mut rm, mut ru) = (vec![], vec![], vec![], vec![], vec![]);
            let (mut fe, mut rfm, mut rfu) = (vec![], vec![], vec![]);
            for _ in 0..rounds {
                let a = rt.block_on(shm_throughput(pl, size, n, "send"));
                let b = tokio_mpsc_throughput(pl, size, n);
                let f = rt.block_on(shm_throughput(pl, size, n, "feed"));
                let c = rt.block_on(uds_throughput(pl, size, n));
                rm.push(a / b);
                ru.push(a / c);
                rfm.push(f / b);
                rfu.push(f / c);
                s.push(a);
                m.push(b);
                fe.push(f);
                u.push(c);
            }
            println!(
                "[{p:>8}] async one-way {size:>5} B: shmchan send {:>6.2} M msg/s, feed+flush/64 {:>6.2} M/s | tokio mpsc in-process {:>6.2} M/s | UnixStream Framed {:>6.2} M/s | median ratios send {:.2}x mpsc, {:.2}x UnixStream; feed {:.2}x mpsc, {:.2}x UnixStream",
                median(s) / 1e6,
                median(fe) / 1e6,
                median(m) / 1e6,
                median(u) / 1e6,
                median(rm),
                median(ru),
                median(rfm),
                median(rfu)
            );
        }
    }
}
