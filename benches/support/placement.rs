//! Where a bench's processes run (issue 11): unpinned, both on one CPU, each on its own CPU,
//! and unpinned beside a CPU-burning process. Shared by the benches that compare placements
//! through `#[path]` (beside `harness.rs`).
//!
//! The parent pins itself with `sched_setaffinity` before it spawns its peers; a child pins
//! itself from `BENCH_PIN` as its first step ([`pin_from_env`]). The burner is this same
//! executable re-run with `BENCH_BURN` set ([`burn_if_asked`]); [`Placement::enter`] spawns it
//! and the guard it returns kills it.
//!
//! `BENCH_PLACEMENTS=unpinned,one-cpu,two-cpus,busy` (the default: all) selects placements;
//! `BENCH_ROUNDS` (`harness::rounds`) overrides the number of alternating rounds.

#![allow(dead_code)]

use std::process::{Child, Command};

use rustix::thread::{CpuSet, sched_setaffinity};

/// Where the processes of one comparison run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Wherever the scheduler puts them.
    Unpinned,
    /// Every process (and thread) on CPU 0.
    OneCpu,
    /// The parent (consumer, server) on CPU 0, its peers on CPU 1.
    TwoCpus,
    /// Unpinned, beside a process that burns a CPU.
    Busy,
}

impl Placement {
    pub const ALL: [Placement; 4] = [
        Placement::Unpinned,
        Placement::OneCpu,
        Placement::TwoCpus,
        Placement::Busy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Placement::Unpinned => "unpinned",
            Placement::OneCpu => "one-cpu",
            Placement::TwoCpus => "two-cpus",
            Placement::Busy => "busy",
        }
    }

    /// The placements `BENCH_PLACEMENTS` selects (all by default).
    pub fn selected() -> Vec<Placement> {
        match std::env::var("BENCH_PLACEMENTS") {
            Ok(s) => Self::ALL
                .into_iter()
                .filter(|p| s.split(',').any(|n| n == p.name()))
                .collect(),
            Err(_) => Self::ALL.to_vec(),
        }
    }

    /// The CPU of the parent side, if pinned.
    pub fn parent_cpu(self) -> Option<usize> {
        match self {
            Placement::OneCpu | Placement::TwoCpus => Some(0),
            _ => None,
        }
    }

    /// The CPU of the peer side (child processes, the other thread), if pinned.
    pub fn peer_cpu(self) -> Option<usize> {
        match self {
            Placement::OneCpu => Some(0),
            Placement::TwoCpus => Some(1),
            _ => None,
        }
    }

    /// Pins this process's calling thread for the parent side and starts the burner if any;
    /// dropping the guard kills the burner and unpins.
    pub fn enter(self) -> Entered {
        pin(self.parent_cpu());
        let burner = (self == Placement::Busy).then(|| {
            Command::new(std::env::current_exe().unwrap())
                .env("BENCH_BURN", "1")
                .env_remove("BENCH_PIN")
                .spawn()
                .unwrap()
        });
        Entered { burner }
    }

    /// Sets `BENCH_PIN` on a child command for the peer side.
    pub fn child(self, cmd: &mut Command) -> &mut Command {
        match self.peer_cpu() {
            Some(c) => cmd.env("BENCH_PIN", c.to_string()),
            None => cmd.env_remove("BENCH_PIN"),
        }
    }
}

/// A placement in force (see [`Placement::enter`]).
#[derive(Debug)]
pub struct Entered {
    burner: Option<Child>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Some(mut b) = self.burner.take() {
            let _ = b.kill();
            let _ = b.wait();
        }
        pin(None);
    }
}

/// Pins the calling thread to `cpu`, or lets it run anywhere (`None`).
pub fn pin(cpu: Option<usize>) {
    let mut set = CpuSet::new();
    match cpu {
        Some(c) => set.set(c),
        None => {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            for c in 0..n.max(2) {
                set.set(c);
            }
        }
    }
    // Errors (a CPU we may not use) leave the thread where it was: the bench still runs.
    let _ = sched_setaffinity(None, &set);
}

/// A child's first step: pins itself per `BENCH_PIN`.
pub fn pin_from_env() {
    if let Ok(c) = std::env::var("BENCH_PIN") {
        pin(Some(c.parse().unwrap()));
    }
}

/// If this process is the burner, burns a CPU until killed.
pub fn burn_if_asked() {
    if std::env::var_os("BENCH_BURN").is_some() {
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

/// The first step of a bench that compares placements (it includes `harness.rs` as
/// `mod harness` too): the burner burns and never returns; a child of `exec` pins itself per
/// `BENCH_PIN` and gets its role and arguments; the parent gets `None`.
pub fn child_start(exec: crate::harness::SelfExec) -> Option<(String, Vec<String>)> {
    burn_if_asked();
    let role = exec.role()?;
    pin_from_env();
    Some(role)
}
