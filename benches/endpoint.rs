//! Request/response across processes: shmchan endpoints (Listener / connect) against the same
//! service over tokio `UnixStream` (8-byte requests and replies, 4-byte length prefixes), with
//! 1, 4 and 16 client processes. Each client makes `REQUESTS` requests one at a time and
//! reports its round trip's p50, p99 and p99.9 (its 5th slowest of 5,000); the server
//! measures requests per second over the run, and the printed latencies are the medians over
//! clients, then over rounds.
//! The two transports alternate (A B A B ..., `ROUNDS` rounds) and the median ratios are
//! printed: the VM's figures drift with vCPU placement. Every comparison runs in each
//! placement of `support/placement.rs` (unpinned; server and clients on one CPU; server on
//! CPU 0, clients on CPU 1; unpinned beside a CPU burner).
//!
//! The server runs on a tokio current_thread runtime and on a multi_thread one (two workers:
//! its accepted endpoints are served by tasks that move between threads); clients are
//! current_thread processes.
//!
//! `cargo bench --bench endpoint` (`BENCH_PLACEMENTS=one-cpu`, `BENCH_ROUNDS=7`,
//! `BENCH_CLIENTS=1,4`, `BENCH_RUNTIME=current` or `multi` narrow a run).

use std::process::Stdio;
use std::time::{Duration, Instant};

use shmchan::Options;
use shmchan::endpoint::{Endpoint, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "support/placement.rs"]
mod placement;
use placement::Placement;
#[path = "support/harness.rs"]
mod harness;
use harness::{RateLatency, SelfExec, median, quantile, rate_latency_median, ratios, rt};

const REQUESTS: u64 = 5_000;
const ROUNDS: usize = 5;

/// A client process: `EP_BENCH_ROLE` is its transport, `EP_BENCH_ADDR` the server's address.
const CLIENT: SelfExec = SelfExec {
    role_var: "EP_BENCH_ROLE",
    args_var: "EP_BENCH_ADDR",
};

/// Client: returns its RTT p50, p99 and p99.9 in nanoseconds.
async fn client(transport: &str, addr: &str) -> (u128, u128, u128) {
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
    (
        quantile(&rtt, 0.5).as_nanos(),
        quantile(&rtt, 0.99).as_nanos(),
        quantile(&rtt, 0.999).as_nanos(),
    )
}

/// Server for one round: serves `n` clients; returns (requests per second, median of the
/// clients' RTT p50s, median of their p99s) and the median of their p99.9s.
fn round(pl: Placement, transport: &str, n: usize, multi: bool) -> (RateLatency, Duration) {
    let addr = harness::server_addr("ep", transport);
    let _ = std::fs::remove_file(&addr);
    let server = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    } else {
        rt()
    };
    server.block_on(async {
        let mut shm = (transport == "shm")
            .then(|| Listener::bind(&addr, Options::new().slot_size(64).capacity(16)).unwrap());
        let uds = (transport == "uds").then(|| tokio::net::UnixListener::bind(&addr).unwrap());
        let children: Vec<_> = (0..n)
            .map(|_| {
                pl.child(&mut CLIENT.command(transport, &[&addr]))
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
        let (mut p50s, mut p99s, mut p999s) = (Vec::new(), Vec::new(), Vec::new());
        for c in children {
            let out = c.wait_with_output().unwrap();
            let out = String::from_utf8_lossy(&out.stdout);
            let mut it = out.split_whitespace().map(|x| x.parse::<f64>().unwrap());
            p50s.push(it.next().unwrap());
            p99s.push(it.next().unwrap());
            p999s.push(it.next().unwrap());
        }
        let _ = std::fs::remove_file(&addr);
        let us = |v: Vec<f64>| Duration::from_nanos(median(v) as u64);
        (
            (
                (n as u64 * REQUESTS) as f64 / took.as_secs_f64(),
                us(p50s),
                us(p99s),
            ),
            us(p999s),
        )
    })
}

fn main() {
    if let Some((transport, addr)) = placement::child_start(CLIENT) {
        let (p50, p99, p999) = rt().block_on(client(&transport, &addr[0]));
        println!("{p50} {p99} {p999}");
        return;
    }
    if harness::listing() {
        return;
    }
    let rounds = harness::rounds(ROUNDS);
    let clients: Vec<usize> = harness::env_list("BENCH_CLIENTS", &[1, 4, 16]);
    let runtimes: Vec<bool> = std::env::var("BENCH_RUNTIME")
        .unwrap_or_else(|_| "current,multi".into())
        .split(',')
        .map(|r| r == "multi")
        .collect();
    println!(
        "request/response, {REQUESTS} requests per client, {rounds} alternating rounds, medians:"
    );
    for pl in Placement::selected() {
        let _in = pl.enter();
        for (&n, &multi) in clients
            .iter()
            .flat_map(|n| runtimes.iter().map(move |m| (n, m)))
        {
            let (s, u) = harness::alternate(
                rounds,
                || round(pl, "shm", n, multi),
                || round(pl, "uds", n, multi),
            );
            let tail = |v: &[(RateLatency, Duration)]| {
                median(v.iter().map(|r| r.1.as_secs_f64() * 1e6).collect())
            };
            let (s_tail, u_tail) = (tail(&s), tail(&u));
            let s: Vec<RateLatency> = s.into_iter().map(|r| r.0).collect();
            let u: Vec<RateLatency> = u.into_iter().map(|r| r.0).collect();
            let rps_ratio = ratios(&s, &u, |a, b| a.0 / b.0);
            let rtt_ratio = ratios(&s, &u, |a, b| b.1.as_secs_f64() / a.1.as_secs_f64());
            let m = rate_latency_median;
            println!(
                "[{:>8}] {:>7} server, {n:>2} clients: shmchan {:>9.0} req/s, RTT p50/p99/p99.9 {:>7.2}/{:>8.2}/{:>8.2} µs | UnixStream {:>9.0} req/s, RTT p50/p99/p99.9 {:>7.2}/{:>8.2}/{:>8.2} µs | median ratios: {:.2}x req/s, {:.2}x lower RTT p50",
                pl.name(),
                if multi { "multi" } else { "current" },
                m(&s, 0),
                m(&s, 1),
                m(&s, 2),
                s_tail,
                m(&u, 0),
                m(&u, 1),
                m(&u, 2),
                u_tail,
                median(rps_ratio),
                median(rtt_ratio)
            );
        }
    }
}
