//! A tokio request/response service over shmchan endpoints.
//!
//! ```text
//! cargo run --release --example service            # server + 4 client processes
//! cargo run --release --example service -- 8 20000 # 8 clients, 20,000 requests each
//! ```
//!
//! The server binds a [`Listener`], spawns the client processes (copies of this program), and
//! serves each connection in its own task. Each client sends requests (a number), waits for
//! the reply (the number squared) with a per-request timeout in `tokio::select!`, and reports
//! its latency percentiles. The server stops accepting and shuts down gracefully on Ctrl-C,
//! or when every client is done.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmchan::endpoint::{Endpoint, Listener};
use shmchan::{Error, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.first().map(String::as_str) == Some("client") {
        return rt.block_on(client(&args[1], args[2].parse()?, args[3].parse()?));
    }
    let clients: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(4);
    let requests: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    rt.block_on(server(clients, requests))
}

async fn server(clients: usize, requests: u64) -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("/shmchan-service-{}", std::process::id());
    let mut listener = Listener::bind(&name, Options::new().slot_size(64).capacity(16))?;
    println!("[server] listening on {name}; starting {clients} client processes");
    let mut children = Vec::new();
    for c in 0..clients {
        children.push(
            std::process::Command::new(std::env::current_exe()?)
                .args(["client", &name, &c.to_string(), &requests.to_string()])
                .spawn()?,
        );
    }
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut accepted = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    // Accept until every client is connected, or Ctrl-C.
    while accepted < clients {
        tokio::select! {
            ep = listener.accept() => match ep {
                Ok(ep) => {
                    accepted += 1;
                    tasks.spawn(serve(ep));
                }
                Err(e) => eprintln!("[server] a connection failed: {e}"),
            },
            _ = &mut ctrl_c => {
                println!("[server] Ctrl-C: no new connections");
                break;
            }
        }
    }
    // Let the connections finish (a client that leaves closes its endpoint), or stop on
    // Ctrl-C: dropping the tasks closes their endpoints, and the clients see the end.
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => eprintln!("[server] a connection ended with: {e}"),
                Some(Err(e)) => eprintln!("[server] a task failed: {e}"),
                None => break,
            },
            _ = &mut ctrl_c => {
                println!("[server] Ctrl-C: shutting down {} connections", tasks.len());
                tasks.shutdown().await;
                break;
            }
        }
    }
    let took = t.elapsed();
    let served = SERVED.load(Ordering::Relaxed);
    for mut c in children {
        c.wait()?;
    }
    println!(
        "[server] served {served} requests from {accepted} clients in {took:.2?} ({:.0} requests/s)",
        served as f64 / took.as_secs_f64()
    );
    Ok(())
}

/// Requests answered by all connections.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// Answers requests on one connection until the client leaves.
async fn serve(mut ep: Endpoint) -> Result<(), Error> {
    loop {
        let req = match ep.recv().await {
            Ok(req) => req,
            Err(Error::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let x = u64::from_le_bytes(
            req[..8]
                .try_into()
                .map_err(|_| Error::InvalidArgument(format!("a {}-byte request", req.len())))?,
        );
        ep.send(x.wrapping_mul(x).to_le_bytes()).await?;
        SERVED.fetch_add(1, Ordering::Relaxed);
    }
}

async fn client(name: &str, id: u64, requests: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut ep = Endpoint::connect(name).await?;
    let mut rtt = Vec::with_capacity(requests as usize);
    let mut timeouts = 0;
    for i in 0..requests {
        let x = id * 1_000_000 + i;
        let t = Instant::now();
        if ep.send(x.to_le_bytes()).await.is_err() {
            println!("[client {id}] the server went away after {i} requests");
            break;
        }
        tokio::select! {
            reply = ep.recv() => {
                let reply = match reply {
                    Ok(r) => r,
                    Err(e) => {
                        println!("[client {id}] the server went away after {i} requests ({e})");
                        break;
                    }
                };
                let y = u64::from_le_bytes(reply[..8].try_into()?);
                assert_eq!(y, x.wrapping_mul(x), "wrong reply");
                rtt.push(t.elapsed());
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                timeouts += 1;
                eprintln!("[client {id}] request {i} timed out");
                break;
            }
        }
    }
    rtt.sort();
    let p = |q: f64| {
        rtt.get(((rtt.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "[client {id}] {} requests, RTT p50 {:?} p99 {:?}, {timeouts} timeouts",
        rtt.len(),
        p(0.5),
        p(0.99)
    );
    Ok(())
}
