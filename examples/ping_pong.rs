//! Async ping-pong between two processes over two SPSC channels; prints RTT percentiles.
//!
//! `cargo run --release --example ping_pong`

use std::time::{Duration, Instant};

use shmchan::{Options, spsc};

const ROUNDS: u64 = 50_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> shmchan::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "pong" {
        let mut rx = spsc::Consumer::open(&args[2], Options::new())?;
        let mut tx = spsc::Producer::open(&args[3], Options::new())?;
        // Answer until the pinger closes its channel.
        while let Ok(m) = rx.recv().await {
            tx.send(m).await?;
        }
        return Ok(());
    }
    let pid = std::process::id();
    let (ping, pong) = (
        format!("/shmchan-ping-{pid}"),
        format!("/shmchan-pong-{pid}"),
    );
    let opts = Options::new().slot_size(64).capacity(8);
    let mut tx = spsc::Producer::create(&ping, opts.clone())?;
    let mut rx = spsc::Consumer::create(&pong, opts)?;
    let mut child = std::process::Command::new(&args[0])
        .args(["pong", &ping, &pong])
        .spawn()?;
    let mut rtt: Vec<Duration> = Vec::with_capacity(ROUNDS as usize);
    for i in 0..ROUNDS {
        let t = Instant::now();
        tx.send(i.to_le_bytes()).await?;
        let m = rx.recv().await?;
        rtt.push(t.elapsed());
        assert_eq!(&*m, i.to_le_bytes());
    }
    drop(tx);
    child.wait()?;
    rtt.sort();
    let p = |q: f64| rtt[((rtt.len() - 1) as f64 * q) as usize];
    println!(
        "{ROUNDS} async round trips between pid {pid} and pid {}: p50 {:?}, p90 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        child.id(),
        p(0.5),
        p(0.9),
        p(0.99),
        p(0.999),
        rtt[rtt.len() - 1]
    );
    Ok(())
}
