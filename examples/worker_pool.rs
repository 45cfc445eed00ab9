//! A producer feeding a pool of worker processes over one MPMC channel; results come back
//! over an MPSC channel. The coordinator uses `tokio::select!` with a per-result timeout and a
//! progress tick. Both sides move messages in chunks: the coordinator reserves up to 64 job
//! slots at a time (`reserve_many`, one `commit`) and takes results with `recv_chunk`; the
//! workers take their jobs with `recv_chunk` and send their results back with `reserve_many`.
//!
//! `cargo run --release --example worker_pool [workers] [jobs]`

use std::time::Duration;

use shmchan::{Error, Options, mpmc, mpsc};

#[tokio::main(flavor = "current_thread")]
async fn main() -> shmchan::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 5 && args[1] == "worker" {
        return worker(args[2].parse().unwrap(), &args[3], &args[4]).await;
    }
    let workers: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4);
    let jobs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let pid = std::process::id();
    let (job_name, result_name) = (
        format!("/shmchan-jobs-{pid}"),
        format!("/shmchan-results-{pid}"),
    );
    let opts = Options::new().slot_size(16).capacity(1024);
    let mut jobs_tx = mpmc::Producer::create(&job_name, opts.clone())?;
    let mut results = mpsc::Consumer::create(&result_name, opts)?;
    let mut children = Vec::new();
    for w in 0..workers {
        children.push(
            std::process::Command::new(&args[0])
                .args(["worker", &w.to_string(), &job_name, &result_name])
                .spawn()?,
        );
    }
    println!("[coordinator] {workers} worker processes, {jobs} jobs (square a number)");
    let mut per_worker = vec![0u64; workers as usize];
    let (mut sent, mut done, mut sum) = (0u64, 0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    // A busy coordinator skips ticks instead of printing a burst of them later.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut buf = [0u8; 16];
    while done < jobs {
        tokio::select! {
            // Feed jobs while there are some left, up to 64 at a time: `reserve_many` is
            // cancel safe (a lost race claims nothing), and the chunk goes out with one commit.
            r = jobs_tx.reserve_many((jobs - sent).min(64) as usize), if sent < jobs => {
                let mut chunk = r?;
                for i in 0..chunk.len() {
                    chunk.write(i, &(sent + i as u64).to_le_bytes())?;
                }
                sent += chunk.len() as u64;
                let k = chunk.len();
                chunk.commit(k);
            }
            r = tokio::time::timeout(Duration::from_secs(2), results.recv_chunk(256)) => {
                let got = r.map_err(|_| Error::TimedOut("no result for 2 s".into()))??;
                for i in 0..got.len() {
                    got.read(i, &mut buf)?;
                    let w = u64::from_le_bytes(buf[..8].try_into().unwrap());
                    sum = sum.wrapping_add(u64::from_le_bytes(buf[8..16].try_into().unwrap()));
                    per_worker[w as usize] += 1;
                }
                done += got.len() as u64;
            }
            _ = tick.tick() => println!("[coordinator] {done}/{jobs} results"),
        }
    }
    // Closing the job channel lets the workers drain and stop.
    drop(jobs_tx);
    for mut c in children {
        c.wait()?;
    }
    let want = (0..jobs).fold(0u64, |a, x| a.wrapping_add(x.wrapping_mul(x)));
    assert_eq!(sum, want, "every job answered exactly once");
    println!("[coordinator] all {jobs} results in; per worker: {per_worker:?}");
    Ok(())
}

async fn worker(id: u64, jobs: &str, results: &str) -> shmchan::Result<()> {
    let mut rx = mpmc::Consumer::open(jobs, Options::new())?;
    let mut tx = mpsc::Producer::open(results, Options::new())?;
    let mut job = [0u8; 16];
    loop {
        // Whatever is queued, up to 64 jobs, with one claim; the results go back as one
        // chunk (one claim, one commit). A worker killed meanwhile has its jobs delivered
        // again to another worker.
        let batch = match rx.recv_chunk(64).await {
            Ok(b) => b,
            Err(Error::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut out = tx.reserve_many(batch.len()).await?;
        for i in 0..batch.len() {
            batch.read(i, &mut job)?;
            let x = u64::from_le_bytes(job[..8].try_into().unwrap());
            let mut r = [0u8; 16];
            r[..8].copy_from_slice(&id.to_le_bytes());
            r[8..].copy_from_slice(&x.wrapping_mul(x).to_le_bytes());
            out.write(i, &r)?;
        }
        out.commit(batch.len());
    }
}
