//! Request/response across processes: shmchan endpoints (Listener / connect) against the same
//! service over tokio `UnixStream` (8-byte requests and replies, 4-byte length prefixes), with
//! 1, 4 and 16 client processes. Each client makes `REQUESTS` requests one at a time and
//! reports its median round trip; the server measures requests per second over the run.
//! The two transports alternate (A B A B ..., `ROUNDS` rounds) and the median ratios are
//! printed: the VM's figures drift with vCPU placement.
//!
//! `cargo bench --bench endpoint`

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmchan::Options;
use shmchan::endpoint::{Endpoint, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REQUESTS: u64 = 5_000;
const ROUNDS: usize = 5;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Client: returns its median RTT in nanoseconds.
async fn client(transport: &str, addr: &str) -> u128 {
    let mut rtt = Vec::with_capacity(REQUESTS as usize);
    if transport == "shm" {
        let mut ep = Endpoint::connect(addr).await.unwrap();
        for i in 0..REQUESTS {
            let t = Instant::now();
            ep.send(i.to_le_bytes()).await.unwrap();
            let r = ep.recv().await.unwrap();
            rtt.push(t.elapsed());
            assert_eq!(&*r, (i * 2).to_le_bytes());
        }
    } else {
        let mut s = tokio::net::UnixStream::connect(addr).await.unwrap();
        let mut frame = [0u8; 12];
        for i in 0..REQUESTS {
            let t = Instant::now();
            frame[..4].copy_from_slice(&8u32.to_le_bytes());
            frame[4..].copy_from_slice(&i.to_le_bytes());
            s.write_all(&frame).await.unwrap();
            s.read_exact(&mut frame).await.unwrap();
            rtt.push(t.elapsed());
            assert_eq!(frame[4..], (i * 2).to_le_bytes());
        }
    }
    rtt.sort();
    rtt[rtt.len() / 2].as_nanos()
}

/// Server for one round: serves `n` clients; returns (requests per second, median of the
/// clients' median RTTs).
fn round(transport: &str, n: usize) -> (f64, Duration) {
    let pid = std::process::id();
    let addr = if transport == "shm" {
        format!("/shmchan-bench-ep-{pid}")
    } else {
        std::env::temp_dir()
            .join(format!("shmchan-bench-ep-{pid}.sock"))
            .display()
            .to_string()
    };
    let _ = std::fs::remove_file(&addr);
    rt().block_on(async {
        let mut shm = (transport == "shm")
            .then(|| Listener::bind(&addr, Options::new().slot_size(64).capacity(16)).unwrap());
        let uds = (transport == "uds").then(|| tokio::net::UnixListener::bind(&addr).unwrap());
        let children: Vec<_> = (0..n)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .env("EP_BENCH_ROLE", transport)
                    .env("EP_BENCH_ADDR", &addr)
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let t = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            if let Some(l) = shm.as_mut() {
                let mut ep = l.accept().await.unwrap();
                tasks.spawn(async move {
                    while let Ok(r) = ep.recv().await {
                        let x = u64::from_le_bytes(r[..8].try_into().unwrap());
                        if ep.send((x * 2).to_le_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            } else if let Some(l) = uds.as_ref() {
                let (mut s, _) = l.accept().await.unwrap();
                tasks.spawn(async move {
                    let mut frame = [0u8; 12];
                    while s.read_exact(&mut frame).await.is_ok() {
                        let x = u64::from_le_bytes(frame[4..].try_into().unwrap());
                        frame[4..].copy_from_slice(&(x * 2).to_le_bytes());
                        if s.write_all(&frame).await.is_err() {
                            break;
                        }
                    }
                });
            }
        }
        while tasks.join_next().await.is_some() {}
        let took = t.elapsed();
        let mut medians: Vec<u128> = children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
            })
            .collect();
        medians.sort();
        let _ = std::fs::remove_file(&addr);
        (
            (n as u64 * REQUESTS) as f64 / took.as_secs_f64(),
            Duration::from_nanos(medians[medians.len() / 2] as u64),
        )
    })
}

fn main() {
    if let Ok(transport) = std::env::var("EP_BENCH_ROLE") {
        let addr = std::env::var("EP_BENCH_ADDR").unwrap();
        println!("{}", rt().block_on(client(&transport, &addr)));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("request/response, {REQUESTS} requests per client, {ROUNDS} alternating rounds:");
    for n in [1usize, 4, 16] {
        let mut rps_ratio = Vec::new();
        let mut rtt_ratio = Vec::new();
        let (mut last_shm, mut last_uds) = ((0.0, Duration::ZERO), (0.0, Duration::ZERO));
        for _ in 0..ROUNDS {
            let s = round("shm", n);
            let u = round("uds", n);
            rps_ratio.push(s.0 / u.0);
            rtt_ratio.push(u.1.as_secs_f64() / s.1.as_secs_f64());
            (last_shm, last_uds) = (s, u);
        }
        rps_ratio.sort_by(f64::total_cmp);
        rtt_ratio.sort_by(f64::total_cmp);
        println!(
            "{n:>2} clients: shmchan {:>9.0} req/s, RTT p50 {:>9.2?} | UnixStream {:>9.0} req/s, RTT p50 {:>9.2?} (last round) | median ratios: {:.1}x req/s, {:.1}x lower RTT",
            last_shm.0,
            last_shm.1,
            last_uds.0,
            last_uds.1,
            rps_ratio[ROUNDS / 2],
            rtt_ratio[ROUNDS / 2]
        );
    }
}
