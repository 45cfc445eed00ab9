//! The Zenoh bridge's overhead: messages/s and round trips through the bridge (local producer ->
//! shm channel -> export -> Zenoh -> import -> shm channel -> consumer) against Zenoh alone (the
//! same payloads published and subscribed directly), between the same two sessions: this
//! process and a child, each with its own session in peer mode, scouting off, on
//! `tcp/127.0.0.1:<free port>`.
//!
//! The two transports alternate (A B A B ..., `BENCH_ROUNDS`, default 5, rounds); each round
//! opens fresh sessions; the median ratios are printed (bridge / Zenoh alone for messages/s,
//! Zenoh alone / bridge for RTT p50, so 1.00x means no overhead and lower is worse).
//!
//! `cargo bench --features zenoh --bench bridge` (`BENCH_MESSAGES=100000`, `BENCH_PAYLOAD=64`,
//! `BENCH_REQUESTS=2000` change the sizes).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmchan::bridge::{self, zenoh};
use shmchan::{Options, mpsc};
use zenoh::Wait;
use zenoh::qos::CongestionControl;

#[path = "support/harness.rs"]
mod harness;
use harness::{median, quantile};

const ROUNDS: usize = 5;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn session(listen: &[&str], connect: &[&str]) -> zenoh::Session {
    zenoh::open(bridge::peer_config(listen, connect).unwrap())
        .wait()
        .unwrap()
}

fn opts(payload: usize) -> Options {
    Options::new().slot_size(payload.max(64)).capacity(1024)
}

fn name(tag: &str, round: &str) -> String {
    format!("/shmchan-bench-bridge-{tag}-{}-{round}", std::process::id())
}

/// The payload of message `i`: its index, then filler.
fn payload(i: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0xa5u8; len.max(8)];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

fn index(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

/// Child: sends `n` messages (throughput) or makes `n` requests (RTT) through `transport`;
/// for RTT prints its p50 and p99 in nanoseconds.
fn child(kind: &str, transport: &str, endpoint: &str, round: &str, n: u64, len: usize) {
    let s = session(&[], &[endpoint]);
    match (kind, transport) {
        ("tput", "bridge") => {
            let ch = name("tput-out", round);
            let consumer = mpsc::Consumer::create(&ch, opts(len)).unwrap();
            let mut tx = mpsc::Producer::open(&ch, opts(len)).unwrap();
            let exporter = bridge::export(consumer, &s, "bench/tput").unwrap();
            for i in 0..n {
                tx.send_blocking(payload(i, len)).unwrap();
            }
            drop(tx);
            exporter.join().unwrap();
        }
        ("tput", "zenoh") => {
            let publisher = bridge::RemoteSink::new(&s, "bench/tput").unwrap();
            publisher
                .wait_for_subscriber(Duration::from_secs(30))
                .unwrap();
            for i in 0..n {
                publisher.send_blocking(&payload(i, len)).unwrap();
            }
            publisher.finish().unwrap();
        }
        ("rtt", "bridge") => {
            let (out, back) = (name("rtt-out", round), name("rtt-back", round));
            let consumer = mpsc::Consumer::create(&out, opts(len)).unwrap();
            let mut tx = mpsc::Producer::open(&out, opts(len)).unwrap();
            let mut rx = mpsc::Consumer::create(&back, opts(len)).unwrap();
            let producer = mpsc::Producer::open(&back, opts(len)).unwrap();
            let importer = bridge::import(&s, "bench/pong", producer).unwrap();
            let exporter = bridge::export(consumer, &s, "bench/ping").unwrap();
            let mut rtt = Vec::with_capacity(n as usize);
            for i in 0..n {
                let t = Instant::now();
                tx.send_blocking(payload(i, len)).unwrap();
                let r = rx.recv_blocking().unwrap();
                rtt.push(t.elapsed());
                assert_eq!(index(&r), i);
            }
            drop(tx);
            report(&mut rtt);
            exporter.join().unwrap();
            drop(rx);
            let _ = importer.stop();
        }
        ("rtt", "zenoh") => {
            let ping = bridge::RemoteSink::new(&s, "bench/ping").unwrap();
            let mut pong = bridge::RemoteStream::new(&s, "bench/pong").unwrap();
            ping.wait_for_subscriber(Duration::from_secs(30)).unwrap();
            let mut rtt = Vec::with_capacity(n as usize);
            for i in 0..n {
                let t = Instant::now();
                ping.send_blocking(&payload(i, len)).unwrap();
                let r = pong.recv_timeout(Duration::from_secs(30)).unwrap();
                rtt.push(t.elapsed());
                assert_eq!(index(&r), i);
            }
            report(&mut rtt);
            ping.finish().unwrap();
        }
        other => panic!("unknown child {other:?}"),
    }
    s.close().wait().unwrap();
}

fn report(rtt: &mut [Duration]) {
    rtt.sort();
    println!(
        "{} {}",
        quantile(rtt, 0.5).as_nanos(),
        quantile(rtt, 0.99).as_nanos()
    );
}

fn spawn_child(
    kind: &str,
    transport: &str,
    endpoint: &str,
    round: &str,
    n: u64,
    len: usize,
) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .env(
            "BRIDGE_BENCH_ROLE",
            format!("{kind} {transport} {endpoint} {round} {n} {len}"),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn free_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("tcp/127.0.0.1:{port}")
}

/// One throughput round: messages per second received by this process, from the first
/// message to the last.
fn tput_round(transport: &str, round: &str, n: u64, len: usize) -> f64 {
    let endpoint = free_endpoint();
    let s = session(&[&endpoint], &[]);
    let child = spawn_child("tput", transport, &endpoint, round, n, len);
    let mut first = None;
    if transport == "bridge" {
        let ch = name("tput-in", round);
        let mut rx = mpsc::Consumer::create(&ch, opts(len)).unwrap();
        let producer = mpsc::Producer::open(&ch, opts(len)).unwrap();
        let importer = bridge::import(&s, "bench/tput", producer).unwrap();
        for i in 0..n {
            let m = rx.recv_blocking().unwrap();
            first.get_or_insert_with(Instant::now);
            assert_eq!(index(&m), i);
        }
        let _ = importer.join();
    } else {
        let mut stream = bridge::RemoteStream::new(&s, "bench/tput").unwrap();
        for i in 0..n {
            let m = stream.recv_timeout(Duration::from_secs(30)).unwrap();
            first.get_or_insert_with(Instant::now);
            assert_eq!(
                index(&m),
                i,
                "message {i}: {} bytes {:02x?}",
                m.len(),
                &m[..m.len().min(24)]
            );
        }
    }
    let took = first.unwrap().elapsed();
    assert!(child.wait_with_output().unwrap().status.success());
    s.close().wait().unwrap();
    (n - 1) as f64 / took.as_secs_f64()
}

/// One RTT round: this process echoes; the child measures. Returns (p50, p99).
fn rtt_round(transport: &str, round: &str, n: u64, len: usize) -> (Duration, Duration) {
    let endpoint = free_endpoint();
    let s = session(&[&endpoint], &[]);
    let child = spawn_child("rtt", transport, &endpoint, round, n, len);
    if transport == "bridge" {
        let (inp, out) = (name("echo-in", round), name("echo-out", round));
        let mut rx = mpsc::Consumer::create(&inp, opts(len)).unwrap();
        let producer = mpsc::Producer::open(&inp, opts(len)).unwrap();
        let consumer = mpsc::Consumer::create(&out, opts(len)).unwrap();
        let mut tx = mpsc::Producer::open(&out, opts(len)).unwrap();
        let exporter = bridge::export(consumer, &s, "bench/pong").unwrap();
        let importer = bridge::import(&s, "bench/ping", producer).unwrap();
        while let Ok(m) = rx.recv_blocking() {
            tx.send_blocking(&*m).unwrap();
        }
        drop(tx);
        let _ = (exporter.stop(), importer.join());
    } else {
        let mut ping = bridge::RemoteStream::new(&s, "bench/ping").unwrap();
        let pong = s
            .declare_publisher("bench/pong")
            .congestion_control(CongestionControl::Block)
            .wait()
            .unwrap();
        while let Ok(m) = ping.recv_timeout(Duration::from_secs(30)) {
            pong.put(&*m).wait().unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    s.close().wait().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    let mut it = out.split_whitespace().map(|x| x.parse::<u64>().unwrap());
    (
        Duration::from_nanos(it.next().unwrap()),
        Duration::from_nanos(it.next().unwrap()),
    )
}

fn main() {
    if let Ok(role) = std::env::var("BRIDGE_BENCH_ROLE") {
        let a: Vec<&str> = role.split(' ').collect();
        child(
            a[0],
            a[1],
            a[2],
            a[3],
            a[4].parse().unwrap(),
            a[5].parse().unwrap(),
        );
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds = harness::rounds(ROUNDS);
    let n = env_num("BENCH_MESSAGES", 100_000);
    let requests = env_num("BENCH_REQUESTS", 2_000);
    let len = env_num("BENCH_PAYLOAD", 64) as usize;
    println!(
        "Zenoh bridge vs Zenoh alone, {len}-byte payloads, {rounds} alternating rounds, medians:"
    );
    let (mut br, mut zr, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let a = tput_round("bridge", &format!("t{r}a"), n, len);
        let b = tput_round("zenoh", &format!("t{r}b"), n, len);
        println!("  round {r}: bridge {a:>9.0} msg/s, zenoh {b:>9.0} msg/s");
        br.push(a);
        zr.push(b);
        ratio.push(a / b);
    }
    println!(
        "throughput ({n} messages): bridge {:>9.0} msg/s | Zenoh alone {:>9.0} msg/s | median ratio {:.2}x",
        median(br),
        median(zr),
        median(ratio)
    );
    let (mut b50, mut b99, mut z50, mut z99, mut ratio) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let a = rtt_round("bridge", &format!("r{r}a"), requests, len);
        let b = rtt_round("zenoh", &format!("r{r}b"), requests, len);
        println!(
            "  round {r}: bridge RTT p50 {:>7.1} µs, zenoh {:>7.1} µs",
            a.0.as_secs_f64() * 1e6,
            b.0.as_secs_f64() * 1e6
        );
        b50.push(a.0.as_secs_f64() * 1e6);
        b99.push(a.1.as_secs_f64() * 1e6);
        z50.push(b.0.as_secs_f64() * 1e6);
        z99.push(b.1.as_secs_f64() * 1e6);
        ratio.push(b.0.as_secs_f64() / a.0.as_secs_f64());
    }
    println!(
        "RTT ({requests} requests): bridge p50/p99 {:>7.1}/{:>8.1} µs | Zenoh alone p50/p99 {:>7.1}/{:>8.1} µs | median ratio {:.2}x (Zenoh alone / bridge)",
        median(b50),
        median(b99),
        median(z50),
        median(z99),
        median(ratio)
    );
}
