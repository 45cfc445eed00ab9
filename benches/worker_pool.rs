//! A job queue with worker processes (the `worker_pool` example's shape): a coordinator feeds
//! `JOBS` 8-byte jobs to W worker processes and collects their 16-byte results.
//!
//! - shmchan: one MPMC job channel shared by every worker, one MPSC result channel; the
//!   coordinator runs a feeding task (`send` per job) beside a collecting one (`recv_many`),
//!   workers take what is ready with `recv_many` and send each result.
//! - the same pool over tokio `UnixStream`: one connection per worker, the jobs split evenly
//!   beforehand (a static partition, the most favourable case for sockets: no dispatcher),
//!   written through a `BufWriter`, results read through a `BufReader`.
//!
//! Reported: jobs/s for 1 and 8 workers (`BENCH_WORKERS`), alternating the transports,
//! median ratios, and shmchan's scaling (8 workers against 1) in each placement.
//!
//! `cargo bench --bench worker_pool` (`BENCH_PLACEMENTS`, `BENCH_ROUNDS`, `BENCH_WORKERS`).

use std::process::Child;
use std::time::{Duration, Instant};

use shmchan::{Error, Options, Segment, mpmc, mpsc};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};

#[path = "support/placement.rs"]
mod placement;
use placement::Placement;
#[path = "support/harness.rs"]
mod harness;
use harness::{SelfExec, median, ratios, rt};

const JOBS: u64 = 100_000;
const ROUNDS: usize = 5;

/// This bench's child processes.
const CHILD: SelfExec = SelfExec {
    role_var: "POOL_BENCH_ROLE",
    args_var: "POOL_BENCH_ARGS",
};

fn opts() -> Options {
    Options::new().slot_size(16).capacity(1024)
}

fn spawn(pl: Placement, role: &str, args: &[&str]) -> Child {
    pl.child(&mut CHILD.command(role, args)).spawn().unwrap()
}

fn square(job: &[u8], id: u64) -> [u8; 16] {
    let x = u64::from_le_bytes(job[..8].try_into().unwrap());
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&id.to_le_bytes());
    out[8..].copy_from_slice(&x.wrapping_mul(x).to_le_bytes());
    out
}

async fn child(role: &str, args: &[String]) {
    let id: u64 = args[1].parse().unwrap();
    match role {
        "shm" => {
            let (jobs, results) = args[0].split_once('|').unwrap();
            let mut rx = mpmc::Consumer::open(jobs, opts()).unwrap();
            let mut tx = mpsc::Producer::open(results, opts()).unwrap();
            let mut batch = Vec::with_capacity(64);
            loop {
                batch.clear();
                match rx.recv_many(&mut batch, 64).await {
                    Ok(0) | Err(Error::Closed) => return,
                    Ok(_) => {
                        for job in &batch {
                            tx.send(square(job, id)).await.unwrap();
                        }
                    }
                    Err(e) => panic!("worker: {e}"),
                }
            }
        }
        "uds" => {
            let s = tokio::net::UnixStream::connect(&args[0]).await.unwrap();
            let (r, w) = s.into_split();
            let (mut r, mut w) = (BufReader::new(r), BufWriter::new(w));
            let mut job = [0u8; 8];
            while r.read_exact(&mut job).await.is_ok() {
                w.write_all(&square(&job, id)).await.unwrap();
                if r.buffer().is_empty() {
                    w.flush().await.unwrap();
                }
            }
            w.flush().await.unwrap();
        }
        _ => panic!("unknown role {role}"),
    }
}

async fn shm_pool(pl: Placement, workers: u64) -> f64 {
    let pid = std::process::id();
    let (jn, rn) = (
        format!("/shmchan-bench-pool-{pid}-jobs"),
        format!("/shmchan-bench-pool-{pid}-results"),
    );
    let mut jobs = mpmc::Producer::create(&jn, opts()).unwrap();
    let mut results = mpsc::Consumer::create(&rn, opts()).unwrap();
    let both = format!("{jn}|{rn}");
    let t = Instant::now();
    let children: Vec<_> = (0..workers)
        .map(|w| spawn(pl, "shm", &[&both, &w.to_string()]))
        .collect();
    let feed = async {
        for j in 0..JOBS {
            jobs.send(j.to_le_bytes()).await.unwrap();
        }
        jobs
    };
    let collect = async {
        let (mut done, mut sum, mut batch) = (0u64, 0u64, Vec::with_capacity(1024));
        while done < JOBS {
            batch.clear();
            let n =
                tokio::time::timeout(Duration::from_secs(10), results.recv_many(&mut batch, 1024))
                    .await
                    .expect("a result within 10 s")
                    .unwrap();
            for m in &batch {
                sum = sum.wrapping_add(u64::from_le_bytes(m[8..16].try_into().unwrap()));
            }
            done += n as u64;
        }
        sum
    };
    let (jobs, sum) = tokio::join!(feed, collect);
    let took = t.elapsed();
    drop(jobs);
    for mut c in children {
        c.wait().unwrap();
    }
    drop(results);
    let _ = Segment::unlink(&jn);
    let _ = Segment::unlink(&rn);
    check(sum);
    JOBS as f64 / took.as_secs_f64()
}

async fn uds_pool(pl: Placement, workers: u64) -> f64 {
    let path = harness::uds_path("pool");
    let _ = std::fs::remove_file(&path);
    let l = tokio::net::UnixListener::bind(&path).unwrap();
    let t = Instant::now();
    let children: Vec<_> = (0..workers)
        .map(|w| spawn(pl, "uds", &[path.to_str().unwrap(), &w.to_string()]))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (s, _) = l.accept().await.unwrap();
        let (r, wr) = s.into_split();
        // Jobs w, w + workers, w + 2 workers, ...
        tasks.spawn(async move {
            let mut wr = BufWriter::new(wr);
            let mut j = w;
            while j < JOBS {
                wr.write_all(&j.to_le_bytes()).await.unwrap();
                j += workers;
            }
            wr.flush().await.unwrap();
            wr.into_inner().shutdown().await.unwrap();
            0u64
        });
        tasks.spawn(async move {
            let mut r = BufReader::new(r);
            let mut m = [0u8; 16];
            let mut sum = 0u64;
            while r.read_exact(&mut m).await.is_ok() {
                sum = sum.wrapping_add(u64::from_le_bytes(m[8..].try_into().unwrap()));
            }
            sum
        });
    }
    let mut sum = 0u64;
    while let Some(s) = tasks.join_next().await {
        sum = sum.wrapping_add(s.unwrap());
    }
    let took = t.elapsed();
    for mut c in children {
        c.wait().unwrap();
    }
    let _ = std::fs::remove_file(&path);
    check(sum);
    JOBS as f64 / took.as_secs_f64()
}

fn check(sum: u64) {
    let want = (0..JOBS).fold(0u64, |a, x| a.wrapping_add(x.wrapping_mul(x)));
    assert_eq!(sum, want, "every job answered exactly once");
}

fn main() {
    if let Some((role, args)) = placement::child_start(CHILD) {
        rt().block_on(child(&role, &args));
        return;
    }
    if harness::listing() {
        return;
    }
    let rounds = harness::rounds(ROUNDS);
    let counts: Vec<u64> = harness::env_list("BENCH_WORKERS", &[1, 8]);
    let rt = rt();
    println!(
        "worker pool, {JOBS} jobs, {rounds} alternating rounds, medians (jobs/s include starting the workers):"
    );
    for pl in Placement::selected() {
        let _in = pl.enter();
        let mut shm_by_count = Vec::new();
        for &w in &counts {
            let (s, u) = harness::alternate(
                rounds,
                || rt.block_on(shm_pool(pl, w)),
                || rt.block_on(uds_pool(pl, w)),
            );
            let r = ratios(&s, &u, |a, b| a / b);
            let ms = median(s);
            shm_by_count.push(ms);
            println!(
                "[{:>8}] {w:>2} workers: shmchan MPMC {:>9.0} jobs/s | UnixStream {:>9.0} jobs/s | median ratio {:.2}x",
                pl.name(),
                ms,
                median(u),
                median(r)
            );
        }
        if shm_by_count.len() > 1 {
            println!(
                "[{:>8}] shmchan scaling: {} workers at {:.2}x the jobs/s of {}",
                pl.name(),
                counts[counts.len() - 1],
                shm_by_count[shm_by_count.len() - 1] / shm_by_count[0],
                counts[0]
            );
        }
    }
}
