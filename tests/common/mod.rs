//! Helpers for cross-process tests: unique segment names that are unlinked even when a test
//! fails, and child processes made by re-executing the test binary with a role.
//!
//! A test file that spawns children has a test named `child_entry` that does nothing unless
//! `SHMCHAN_TEST_ROLE` is set; [`spawn`] runs the binary with `child_entry --exact` and that
//! variable, so the child runs the role's code. Children report with lines starting `@@ `.

#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable that tells a re-executed test binary which role to play.
pub const ROLE_VAR: &str = "SHMCHAN_TEST_ROLE";

/// A segment name unique to this process and call, unlinked on drop (also when a test panics).
#[derive(Debug)]
pub struct ShmName(pub String);

impl ShmName {
    pub fn new(tag: &str) -> ShmName {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        ShmName(format!(
            "/shmchan-t-{tag}-{}-{n}-{nanos:x}",
            std::process::id()
        ))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Whether `/dev/shm` still holds the name.
    pub fn exists(&self) -> bool {
        std::path::Path::new(&format!("/dev/shm{}", self.0)).exists()
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let _ = shmchan::Segment::unlink(&self.0);
    }
}

/// The role this process was started with, and its arguments.
pub fn role() -> Option<(String, Vec<String>)> {
    let role = std::env::var(ROLE_VAR).ok()?;
    let args = std::env::var("SHMCHAN_TEST_ARGS")
        .map(|a| a.split('\x1f').map(str::to_owned).collect())
        .unwrap_or_default();
    Some((role, args))
}

/// A command that re-runs this test binary as `role` with `args`.
pub fn command(role: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child_entry",
        "--exact",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(ROLE_VAR, role)
    .env("SHMCHAN_TEST_ARGS", args.join("\x1f"))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// A child process that is killed and reaped if the guard is dropped before `wait` (a failing
/// test never leaves children behind).
#[derive(Debug)]
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn spawn(mut cmd: Command) -> ChildGuard {
        ChildGuard(Some(cmd.spawn().expect("spawning the child process")))
    }
    pub fn id(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }
    /// Waits for the child and returns its output; panics with the output if it failed.
    pub fn wait_ok(mut self) -> Output {
        let out = self.0.take().unwrap().wait_with_output().unwrap();
        if !out.status.success() {
            panic!(
                "child failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out
    }
    /// Waits for the child and returns its output, whatever its status.
    pub fn wait(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Spawns `role` and returns its guard.
pub fn spawn(role: &str, args: &[&str]) -> ChildGuard {
    ChildGuard::spawn(command(role, args))
}

/// The `@@ ` lines a child printed, without the prefix.
pub fn reports(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.find("@@ ").map(|i| l[i + 3..].to_owned()))
        .collect()
}

/// Prints a report line for the parent.
pub fn report(line: impl std::fmt::Display) {
    // libtest prints "test child_entry ... " without a newline first.
    println!("\n@@ {line}");
}
