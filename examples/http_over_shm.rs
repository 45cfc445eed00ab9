//! HTTP/1 over shared memory: a hyper server in this process and a hyper client in a second
//! copy of it, connected by a shmchan `Listener` / `Endpoint::connect` and talking through
//! `ShmStream` (`AsyncRead` + `AsyncWrite`) wrapped in hyper-util's `TokioIo`, exactly as they
//! would over a `TcpStream`. The client prints requests per second and latencies.
//!
//! ```text
//! cargo run --release --example http_over_shm            # 20000 requests
//! cargo run --release --example http_over_shm -- 100000  # as many as you like
//! ```

use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use shmchan::Options;
use shmchan::endpoint::{Endpoint, Listener};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.first().map(String::as_str) == Some("client") {
        return rt.block_on(client(&args[1], args[2].parse()?));
    }
    let requests: u64 = args.first().map_or(Ok(20_000), |a| a.parse())?;
    rt.block_on(server(requests))
}

/// `POST /echo` answers the body; anything else "hello".
async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let echo = req.uri().path() == "/echo";
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    Ok(Response::new(Full::new(match (echo, body) {
        (true, Ok(b)) => b,
        _ => Bytes::from_static(b"hello over shared memory\n"),
    })))
}

async fn server(requests: u64) -> Result<(), Error> {
    let name = format!("/shmchan-http-{}", std::process::id());
    // 16 KiB slots: an HTTP message and its body mostly fit one.
    let mut listener = Listener::bind(&name, Options::new().slot_size(16 << 10).capacity(32))?;
    println!(
        "[server {}] listening on shmchan endpoint '{name}'",
        std::process::id()
    );
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["client", &name, &requests.to_string()])
        .spawn()?;
    let stream = listener.accept().await?.into_stream();
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle));
    conn.await?;
    let status = child.wait()?;
    println!("[server] connection closed by the client ({status})");
    Ok(())
}

async fn client(name: &str, requests: u64) -> Result<(), Error> {
    let stream = Endpoint::connect(name).await?.into_stream();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);

    let req = Request::get("/")
        .header("host", "shm")
        .body(Full::new(Bytes::new()))?;
    let first = sender
        .send_request(req)
        .await?
        .into_body()
        .collect()
        .await?;
    print!(
        "[client {}] GET / -> {}",
        std::process::id(),
        String::from_utf8_lossy(&first.to_bytes())
    );

    let payload = Bytes::from(vec![b'x'; 1024]);
    let mut rtt = Vec::with_capacity(requests as usize);
    let t0 = Instant::now();
    for _ in 0..requests {
        let t = Instant::now();
        let req = Request::post("/echo")
            .header("host", "shm")
            .body(Full::new(payload.clone()))?;
        sender.ready().await?;
        let body = sender
            .send_request(req)
            .await?
            .into_body()
            .collect()
            .await?;
        assert_eq!(body.to_bytes().len(), payload.len());
        rtt.push(t.elapsed());
    }
    let took = t0.elapsed();
    rtt.sort();
    let q = |p: f64| rtt[((rtt.len() - 1) as f64 * p) as usize];
    println!(
        "[client] {requests} POST /echo (1 KiB bodies) in {took:.2?}: {:.0} requests/s, latency p50 {:.1?} p99 {:.1?}",
        requests as f64 / took.as_secs_f64(),
        q(0.5),
        q(0.99)
    );
    Ok(())
}
