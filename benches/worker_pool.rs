//! A job queue with worker processes (the `worker_pool` example's shape): a coordinator feeds
//! `JOBS` 8-byte jobs to W worker processes and collects their 16-byte results.
//!
//! - shmchan: one MPMC job channel shared by every worker, one MPSC result channel; the
//!   coordinator runs a feeding task (`feed` per job, `flush` every 64, as a `BufWriter`)
//!   beside a collecting one (`recv_many`); workers take what is ready with `recv_many`, feed
//!   each result and flush once per batch.
//! - the same pool over tokio `UnixStream`: one connection per worker, the jobs split evenly
//!   beforehand (a static partition, the most favourable case for sockets: no dispatcher),
//!   written through a `BufWriter`, results read through a `BufReader`.
//!
//! - shmchan in chunks: the same channels, the coordinator reserving 64 job slots at a time
//!   (`reserve_many`, a `write` each, one `commit`) and taking results with `recv_chunk`,
//!   the workers taking up to 64 jobs with `recv_chunk` and committing their results as one
//!   chunk: the batch API, one claim and one wake check per chunk instead of per message.
//!
//! Reported: jobs/s for 1 and 8 workers (`BENCH_WORKERS`), alternating the transports,
//! median ratios, and shmchan's scaling (8 workers against 1) in each placement. The clock
//! starts once every worker has attached and said hello (a result of `HELLO`), so the figures
//! are the pool's, not the time to start processes.
//!
//! `cargo bench --bench worker_pool` (`BENCH_PLACEMENTS`, `BENCH_ROUNDS`, `BENCH_WORKERS`,
//! `BENCH_POOL_SEND=1` for a `send` per job).

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use futures::SinkExt;
use shmchan::{Error, Options, mpmc, mpsc};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};

#[path = "support/harness.rs"]
mod harness;
#[path = "support/placement.rs"]
mod placement;
use harness::{UnlinkOnDrop, median};
use placement::Placement;

const JOBS: u64 = 200_000;
/// The first result of every worker: it is attached and ready.
const HELLO: [u8; 16] = [0xff; 16];
const ROUNDS: usize = 5;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn opts() -> Options {
    Options::new().slot_size(16).capacity(1024)
}

fn spawn(pl: Placement, role: &str, args: &[&str]) -> Child {
    pl.child(&mut Command::new(std::env::current_exe().unwrap()))
        .env("POOL_BENCH_ROLE", role)
        .env("POOL_BENCH_ARGS", args.join(","))
        .spawn()
        .unwrap()
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
        "shm" | "shm-chunks" => {
            let chunks = role == "shm-chunks";
            let (jobs, results) = args[0].split_once('|').unwrap();
            let mut rx = mpmc::Consumer::open(jobs, opts()).unwrap();
            let mut tx = mpsc::Producer::open(results, opts()).unwrap();
            tx.send(HELLO).await.unwrap();
            if chunks {
                // A chunk of jobs, its results as one chunk: a claim and a commit each.
                let mut job = [0u8; 8];
                loop {
                    let jobs = match rx.recv_chunk(64).await {
                        Ok(c) if c.is_empty() => return,
                        Ok(c) => c,
                        Err(Error::Closed) => return,
                        Err(e) => panic!("worker: {e}"),
                    };
                    let n = jobs.len();
                    let mut out = tx.reserve_many(n).await.unwrap();
                    for i in 0..n {
                        jobs.read(i, &mut job).unwrap();
                        out.write(i, &square(&job, id)).unwrap();
                    }
                    out.commit(n);
                }
            }
            let mut batch = Vec::with_capacity(64);
            loop {
                batch.clear();
                match rx.recv_many(&mut batch, 64).await {
                    Ok(0) | Err(Error::Closed) => return,
                    Ok(_) => {
                        // As the socket worker's `BufWriter`: results of a batch, one flush.
                        for job in &batch {
                            tx.feed(square(job, id)).await.unwrap();
                        }
                        tx.flush().await.unwrap();
                    }
                    Err(e) => panic!("worker: {e}"),
                }
            }
        }
        "uds" => {
            let s = tokio::net::UnixStream::connect(&args[0]).await.unwrap();
            let (r, w) = s.into_split();
            let (mut r, mut w) = (BufReader::new(r), BufWriter::new(w));
            w.write_all(&HELLO).await.unwrap();
            w.flush().await.unwrap();
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

/// Jobs/s, and the doorbells the coordinator rang for the job channel per job; `chunks`: the
/// batch API on both channels, else `feed` / `recv_many`.
async fn shm_pool(pl: Placement, workers: u64, chunks: bool) -> (f64, f64) {
    let pid = std::process::id();
    let (jn, rn) = (
        format!("/shmchan-bench-pool-{pid}-jobs"),
        format!("/shmchan-bench-pool-{pid}-results"),
    );
    let mut jobs = mpmc::Producer::create(&jn, opts()).unwrap();
    let _unlink = UnlinkOnDrop(vec![jn.clone()]);
    let mut results = mpsc::Consumer::create(&rn, opts()).unwrap();
    let _unlink_results = UnlinkOnDrop(vec![rn.clone()]);
    let both = format!("{jn}|{rn}");
    let children: Vec<_> = (0..workers)
        .map(|w| {
            let role = if chunks { "shm-chunks" } else { "shm" };
            spawn(pl, role, &[&both, &w.to_string()])
        })
        .collect();
    for _ in 0..workers {
        let m = tokio::time::timeout(Duration::from_secs(10), results.recv())
            .await
            .expect("every worker's hello within 10 s")
            .unwrap();
        assert_eq!(m[..], HELLO[..]);
    }
    let t = Instant::now();
    let feed = async {
        // As the socket side's `BufWriter`: jobs are fed, and flushed every 64
        // (`BENCH_POOL_SEND=1`: a `send` per job instead, each visible and rung at once).
        let direct = std::env::var("BENCH_POOL_SEND").is_ok_and(|v| v == "1");
        if chunks {
            let mut j = 0;
            while j < JOBS {
                let k = (JOBS - j).min(64) as usize;
                let mut chunk = jobs.reserve_many(k).await.unwrap();
                for i in 0..k {
                    chunk.write(i, &(j + i as u64).to_le_bytes()).unwrap();
                }
                chunk.commit(k);
                j += k as u64;
            }
            return jobs;
        }
        for j in 0..JOBS {
            if direct {
                jobs.send(j.to_le_bytes()).await.unwrap();
                continue;
            }
            jobs.feed(j.to_le_bytes()).await.unwrap();
            if j % 64 == 63 {
                jobs.flush().await.unwrap();
            }
        }
        jobs.flush().await.unwrap();
        jobs
    };
    let collect = async {
        let (mut done, mut sum, mut batch) = (0u64, 0u64, Vec::with_capacity(1024));
        let mut buf = [0u8; 16];
        while chunks && done < JOBS {
            let chunk = tokio::time::timeout(Duration::from_secs(10), results.recv_chunk(1024))
                .await
                .expect("a result within 10 s")
                .unwrap();
            for i in 0..chunk.len() {
                chunk.read(i, &mut buf).unwrap();
                sum = sum.wrapping_add(u64::from_le_bytes(buf[8..16].try_into().unwrap()));
            }
            done += chunk.len() as u64;
        }
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
    let rings = jobs.doorbells_rung() as f64 / JOBS as f64;
    drop(jobs);
    for mut c in children {
        c.wait().unwrap();
    }
    drop(results);
    check(sum);
    (JOBS as f64 / took.as_secs_f64(), rings)
}

async fn uds_pool(pl: Placement, workers: u64) -> f64 {
    let path = std::env::temp_dir().join(format!("shmchan-bench-pool-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let l = tokio::net::UnixListener::bind(&path).unwrap();
    let children: Vec<_> = (0..workers)
        .map(|w| spawn(pl, "uds", &[path.to_str().unwrap(), &w.to_string()]))
        .collect();
    let mut conns = Vec::new();
    for _ in 0..workers {
        let (mut s, _) = l.accept().await.unwrap();
        let mut hello = [0u8; 16];
        s.read_exact(&mut hello).await.unwrap();
        assert_eq!(hello, HELLO);
        conns.push(s);
    }
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (w, s) in (0..workers).zip(conns) {
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
    placement::burn_if_asked();
    if let Ok(role) = std::env::var("POOL_BENCH_ROLE") {
        placement::pin_from_env();
        let args: Vec<String> = std::env::var("POOL_BENCH_ARGS")
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect();
        rt().block_on(child(&role, &args));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds = harness::rounds(ROUNDS);
    let counts: Vec<u64> = std::env::var("BENCH_WORKERS")
        .map(|s| s.split(',').map(|n| n.parse().unwrap()).collect())
        .unwrap_or_else(|_| vec![1, 8]);
    let rt = rt();
    println!(
        "worker pool, {JOBS} jobs, {rounds} alternating rounds, medians (clock from every worker's hello):"
    );
    for pl in Placement::selected() {
        let _in = pl.enter();
        let mut shm_by_count = Vec::new();
        for &w in &counts {
            let (mut s, mut c, mut u, mut r, mut rc, mut g) = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            );
            for _ in 0..rounds {
                let (a, rings) = rt.block_on(shm_pool(pl, w, false));
                g.push(rings);
                let b = rt.block_on(uds_pool(pl, w));
                let (ch, _) = rt.block_on(shm_pool(pl, w, true));
                r.push(a / b);
                rc.push(ch / b);
                s.push(a);
                c.push(ch);
                u.push(b);
            }
            let (ms, mc) = (median(s), median(c));
            shm_by_count.push((ms, mc));
            println!(
                "[{:>8}] {w:>2} workers: shmchan MPMC {:>9.0} jobs/s | in chunks {:>9.0} jobs/s | UnixStream {:>9.0} jobs/s | median ratios {:.2}x / {:.2}x (chunks) | job doorbells {:.3}/job",
                pl.name(),
                ms,
                mc,
                median(u),
                median(r),
                median(rc),
                median(g)
            );
        }
        if shm_by_count.len() > 1 {
            let (first, last) = (shm_by_count[0], shm_by_count[shm_by_count.len() - 1]);
            println!(
                "[{:>8}] shmchan scaling: {} workers at {:.2}x the jobs/s of {} ({:.2}x in chunks)",
                pl.name(),
                counts[counts.len() - 1],
                last.0 / first.0,
                counts[0],
                last.1 / first.1
            );
        }
    }
}
