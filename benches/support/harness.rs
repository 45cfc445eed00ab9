//! What the bench binaries of `benches/` share besides placement (`placement.rs`), included
//! with `#[path]`: re-running the bench binary as a child in a role ([`SelfExec`]), the
//! `--list` probe, a tokio runtime, alternating A/B rounds ([`alternate`], `BENCH_ROUNDS`
//! through [`rounds`]), medians and quantiles, comma-separated env lists, and the socket
//! path of a `UnixStream` baseline.

#![allow(dead_code)]

use std::process::{Child, Command};
use std::str::FromStr;
use std::time::Duration;

/// How a bench re-runs its own binary as a child: the environment variables that carry the
/// role and its comma-separated arguments.
#[derive(Debug, Clone, Copy)]
pub struct SelfExec {
    /// The variable naming the role.
    pub role_var: &'static str,
    /// The variable holding the role's arguments, comma-separated.
    pub args_var: &'static str,
}

impl SelfExec {
    /// A command that re-runs this binary as `role` with `args`.
    pub fn command(self, role: &str, args: &[impl AsRef<str>]) -> Command {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(self.role_var, role)
            .env(self.args_var, args.join(","));
        cmd
    }

    /// Spawns [`command`](Self::command).
    pub fn spawn(self, role: &str, args: &[impl AsRef<str>]) -> Child {
        self.command(role, args).spawn().unwrap()
    }

    /// The role and arguments this process was started with, if it is such a child.
    pub fn role(self) -> Option<(String, Vec<String>)> {
        let role = std::env::var(self.role_var).ok()?;
        let args = std::env::var(self.args_var)
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect();
        Some((role, args))
    }
}

/// Kills and reaps a child.
pub fn stop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// Whether this run only lists benches (`cargo bench -- --list` and test harness probes): the
/// bench then does nothing.
pub fn listing() -> bool {
    std::env::args().any(|a| a == "--list")
}

/// The current-thread tokio runtime benches block on.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Alternating rounds per comparison: `BENCH_ROUNDS`, else `default`.
pub fn rounds(default: usize) -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// `rounds` alternating rounds A B A B ...: the results of `a` and of `b`, round by round.
pub fn alternate<A, B>(
    rounds: usize,
    mut a: impl FnMut() -> A,
    mut b: impl FnMut() -> B,
) -> (Vec<A>, Vec<B>) {
    let (mut va, mut vb) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds {
        va.push(a());
        vb.push(b());
    }
    (va, vb)
}

/// The per-round ratios `f(a, b)` of two alternated series.
pub fn ratios<A, B>(a: &[A], b: &[B], f: impl Fn(&A, &B) -> f64) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| f(a, b)).collect()
}

/// The median of `v`.
pub fn median(v: Vec<f64>) -> f64 {
    median_by(v, f64::total_cmp)
}

/// The median of `v` in the order `cmp`.
pub fn median_by<T: Copy>(mut v: Vec<T>, cmp: impl Fn(&T, &T) -> std::cmp::Ordering) -> T {
    v.sort_by(cmp);
    v[v.len() / 2]
}

/// The `q`-quantile (0..=1) of sorted `v`.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// One round of a request/response comparison: requests per second, latency p50 and p99.
pub type RateLatency = (f64, Duration, Duration);

/// The median over rounds of column `k` of [`RateLatency`]: 0 the rate, 1 the p50 and 2 the
/// p99 in µs.
pub fn rate_latency_median(v: &[RateLatency], k: usize) -> f64 {
    median(
        v.iter()
            .map(|x| match k {
                0 => x.0,
                1 => x.1.as_secs_f64() * 1e6,
                _ => x.2.as_secs_f64() * 1e6,
            })
            .collect(),
    )
}

/// The comma-separated list in the environment variable `var`, parsed, else `default`.
pub fn env_list<T>(var: &str, default: &[T]) -> Vec<T>
where
    T: FromStr + Clone,
    T::Err: std::fmt::Debug,
{
    std::env::var(var)
        .map(|s| s.split(',').map(|n| n.parse().unwrap()).collect())
        .unwrap_or_else(|_| default.to_vec())
}

/// The socket path of a `UnixStream` baseline: `shmchan-bench-{tag}-{pid}.sock` in the
/// temporary directory.
pub fn uds_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("shmchan-bench-{tag}-{}.sock", std::process::id()))
}

/// The address a round's server listens on: the segment name `/shmchan-bench-{tag}-{pid}` for
/// the `shm` transport, else the socket path [`uds_path`] of the `UnixStream` baseline.
pub fn server_addr(tag: &str, transport: &str) -> String {
    if transport == "shm" {
        format!("/shmchan-bench-{tag}-{}", std::process::id())
    } else {
        uds_path(tag).display().to_string()
    }
}

/// Unlinks the named segments when dropped, also while a panic unwinds (a worker that never
/// said hello, a timeout): a failing bench leaves nothing in /dev/shm.
pub struct UnlinkOnDrop(pub Vec<String>);

impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = shmchan::Segment::unlink(n);
        }
    }
}
