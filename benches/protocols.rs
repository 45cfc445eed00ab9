//! Protocol crates over shmchan's byte stream (`ShmStream`) against the same over tokio
//! `UnixStream`, across processes: hyper HTTP/1 (`POST` of 128 bytes, echoed) and tonic gRPC
//! unary (a small prost message) between a server (this process) and a client (a child
//! process). The client makes its requests one at a time and reports requests per second
//! and its p50/p99 latency. The two transports alternate (A B A B ..., `ROUNDS` rounds) and
//! the median ratios are printed; every comparison runs in each placement of
//! `support/placement.rs`.
//!
//! `cargo bench --bench protocols` (`BENCH_PLACEMENTS=unpinned,one-cpu`, `BENCH_ROUNDS=5`,
//! `BENCH_PROTOCOLS=http,grpc` narrow a run).

use std::convert::Infallible;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use shmchan::Options;
use shmchan::endpoint::{Endpoint, Listener};

#[path = "support/placement.rs"]
mod placement;
use placement::Placement;
#[path = "support/harness.rs"]
mod harness;
use harness::{RateLatency, SelfExec, median, quantile, rate_latency_median, ratios, rt};

#[path = "support/echo_grpc.rs"]
mod echo_grpc;

const HTTP_REQUESTS: usize = 5_000;
const GRPC_REQUESTS: usize = 3_000;
const ROUNDS: usize = 5;

/// A client process: `PROTO_BENCH_ROLE` is `protocol:transport`, `PROTO_BENCH_ADDR` the
/// server's address.
const CLIENT: SelfExec = SelfExec {
    role_var: "PROTO_BENCH_ROLE",
    args_var: "PROTO_BENCH_ADDR",
};

fn opts() -> Options {
    Options::new().slot_size(16 << 10).capacity(32)
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = req.into_body().collect().await.unwrap().to_bytes();
    Ok(Response::new(Full::new(body)))
}

/// One client's run: requests per second, and latencies sorted.
struct Run {
    rps: f64,
    lat: Vec<Duration>,
}

async fn http_client<IO>(io: IO) -> Run
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let payload = Bytes::from(vec![b'x'; 128]);
    let mut lat = Vec::with_capacity(HTTP_REQUESTS);
    let t0 = Instant::now();
    for _ in 0..HTTP_REQUESTS {
        let t = Instant::now();
        let req = Request::post("/echo")
            .header("host", "bench")
            .body(Full::new(payload.clone()))
            .unwrap();
        sender.ready().await.unwrap();
        let body = sender.send_request(req).await.unwrap();
        let body = body.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 128);
        lat.push(t.elapsed());
    }
    let rps = HTTP_REQUESTS as f64 / t0.elapsed().as_secs_f64();
    lat.sort();
    Run { rps, lat }
}

async fn grpc_client(channel: tonic::transport::Channel) -> Run {
    let mut grpc = tonic::client::Grpc::new(channel);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(echo_grpc::UNARY);
    let mut lat = Vec::with_capacity(GRPC_REQUESTS);
    let t0 = Instant::now();
    for i in 0..GRPC_REQUESTS as u64 {
        let t = Instant::now();
        grpc.ready().await.unwrap();
        let ping = echo_grpc::Ping {
            seq: i,
            payload: vec![7; 64],
        };
        let r = grpc
            .unary(tonic::Request::new(ping), path.clone(), echo_grpc::codec())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.seq, i + 1);
        lat.push(t.elapsed());
    }
    let rps = GRPC_REQUESTS as f64 / t0.elapsed().as_secs_f64();
    lat.sort();
    Run { rps, lat }
}

/// The child: connects over `transport` and runs `protocol`'s client; prints
/// "rps p50_ns p99_ns".
async fn client(protocol: &str, transport: &str, addr: String) {
    let run = match (protocol, transport) {
        ("http", "shm") => {
            http_client(TokioIo::new(
                Endpoint::connect(&addr).await.unwrap().into_stream(),
            ))
            .await
        }
        ("http", _) => {
            http_client(TokioIo::new(
                tokio::net::UnixStream::connect(&addr).await.unwrap(),
            ))
            .await
        }
        ("grpc", "shm") => {
            let channel = tonic::transport::Endpoint::from_static("http://bench")
                .connect_with_connector(tower::service_fn(move |_| {
                    let addr = addr.clone();
                    async move {
                        let s = Endpoint::connect(&addr).await?.into_stream();
                        Ok::<_, shmchan::Error>(TokioIo::new(s))
                    }
                }))
                .await
                .unwrap();
            grpc_client(channel).await
        }
        ("grpc", _) => {
            let channel = tonic::transport::Endpoint::from_static("http://bench")
                .connect_with_connector(tower::service_fn(move |_| {
                    let addr = addr.clone();
                    async move {
                        let s = tokio::net::UnixStream::connect(&addr).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(s))
                    }
                }))
                .await
                .unwrap();
            grpc_client(channel).await
        }
        _ => unreachable!(),
    };
    println!(
        "{} {} {}",
        run.rps,
        quantile(&run.lat, 0.5).as_nanos(),
        quantile(&run.lat, 0.99).as_nanos()
    );
}

/// One round: serves one client of `protocol` over `transport`; (requests/s, p50, p99).
fn round(pl: Placement, protocol: &str, transport: &str) -> RateLatency {
    let addr = harness::server_addr("proto", transport);
    let _ = std::fs::remove_file(&addr);
    let out = rt().block_on(async {
        let mut shm = (transport == "shm").then(|| Listener::bind(&addr, opts()).unwrap());
        let uds = (transport == "uds").then(|| tokio::net::UnixListener::bind(&addr).unwrap());
        let child = pl
            .child(&mut CLIENT.command(&format!("{protocol}:{transport}"), &[&addr]))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let server = if protocol == "http" {
            let fut = async move {
                let http = hyper::server::conn::http1::Builder::new();
                let svc = hyper::service::service_fn(handle);
                if let Some(l) = shm.as_mut() {
                    let s = l.accept().await.unwrap().into_stream();
                    http.serve_connection(TokioIo::new(s), svc).await.unwrap();
                } else if let Some(l) = uds.as_ref() {
                    let (s, _) = l.accept().await.unwrap();
                    http.serve_connection(TokioIo::new(s), svc).await.unwrap();
                }
            };
            tokio::spawn(fut)
        } else {
            let fut = async move {
                let server = tonic::transport::Server::builder();
                if let Some(l) = shm {
                    let incoming = futures::stream::unfold(l, |mut l| async move {
                        let r = l.accept().await.map(|e| echo_grpc::Conn(e.into_stream()));
                        Some((r, l))
                    });
                    server
                        .serve_with_incoming(echo_grpc::EchoServer, incoming)
                        .await
                        .unwrap();
                } else if let Some(l) = uds {
                    let incoming = futures::stream::unfold(l, |l| async move {
                        let r = l.accept().await.map(|(s, _)| s);
                        Some((r, l))
                    });
                    server
                        .serve_with_incoming(echo_grpc::EchoServer, incoming)
                        .await
                        .unwrap();
                }
            };
            tokio::spawn(fut)
        };
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        server.abort();
        out
    });
    let _ = std::fs::remove_file(&addr);
    assert!(out.status.success(), "client failed: {}", out.status);
    let out = String::from_utf8_lossy(&out.stdout);
    let mut it = out.split_whitespace().map(|x| x.parse::<f64>().unwrap());
    let (rps, p50, p99) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    (
        rps,
        Duration::from_nanos(p50 as u64),
        Duration::from_nanos(p99 as u64),
    )
}

fn main() {
    if let Some((role, mut addr)) = placement::child_start(CLIENT) {
        let (protocol, transport) = role.split_once(':').unwrap();
        rt().block_on(client(protocol, transport, addr.remove(0)));
        return;
    }
    if harness::listing() {
        return;
    }
    let rounds = harness::rounds(ROUNDS);
    let protocols: Vec<String> = std::env::var("BENCH_PROTOCOLS")
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|_| vec!["http".into(), "grpc".into()]);
    println!(
        "protocols over shmchan ShmStream vs tokio UnixStream, one client, requests one at a \
         time ({HTTP_REQUESTS} HTTP/1 POSTs of 128 B, {GRPC_REQUESTS} gRPC unary calls), \
         {rounds} alternating rounds, medians:"
    );
    for pl in Placement::selected() {
        let _in = pl.enter();
        for protocol in &protocols {
            let (s, u) = harness::alternate(
                rounds,
                || round(pl, protocol, "shm"),
                || round(pl, protocol, "uds"),
            );
            let rps_ratio = ratios(&s, &u, |a, b| a.0 / b.0);
            let p50_ratio = ratios(&s, &u, |a, b| b.1.as_secs_f64() / a.1.as_secs_f64());
            let p99_ratio = ratios(&s, &u, |a, b| b.2.as_secs_f64() / a.2.as_secs_f64());
            let m = rate_latency_median;
            println!(
                "[{:>8}] {:>4}: shmchan {:>7.0} req/s, p50/p99 {:>6.1}/{:>7.1} µs | UnixStream {:>7.0} req/s, p50/p99 {:>6.1}/{:>7.1} µs | median ratios: {:.2}x req/s, {:.2}x lower p50, {:.2}x lower p99",
                pl.name(),
                protocol,
                m(&s, 0),
                m(&s, 1),
                m(&s, 2),
                m(&u, 0),
                m(&u, 1),
                m(&u, 2),
                median(rps_ratio),
                median(p50_ratio),
                median(p99_ratio)
            );
        }
    }
}
