//! Helpers for cross-process tests: unique segment names that are unlinked even when a test
//! fails, and child processes made by re-executing the test binary with a role.
//!
//! A test file that spawns children has a test named `child_entry` (see [`ENTRY`]) whose body
//! is [`dispatch`]: it does nothing unless `SHMCHAN_TEST_ROLE` is set. [`command`] and
//! [`spawn`] run the binary with `child_entry --exact` and that variable, so the child runs the
//! role's code. Children report with lines starting `@@ `. A child that must run under another
//! uid runs a copy of the binary made by [`ExeCopy`], which that uid can reach.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
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

/// The name of the test, in every file with child roles, whose body is [`dispatch`].
pub const ENTRY: &str = "child_entry";

/// The body of a file's `child_entry` test: if this process was started as a child (by
/// [`command`]), runs `run` with the role and its arguments; otherwise does nothing, so the
/// test passes in an ordinary run. `run` should panic on a role it does not know.
pub fn dispatch(run: impl FnOnce(&str, &[String])) {
    if let Some((role, args)) = role() {
        run(&role, &args);
    }
}

/// A command that re-runs this test binary as `role` with `args`.
pub fn command(role: &str, args: &[&str]) -> Command {
    command_for(&std::env::current_exe().unwrap(), role, args)
}

/// A command that runs the test binary at `exe` (this one or a copy) as `role` with `args`.
fn command_for(exe: &Path, role: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args([ENTRY, "--exact", "--nocapture", "--test-threads", "1"])
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

/// A small deterministic PRNG (xorshift64*), so tests need no extra dependency.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A generator whose state is `seed` spread by [`mix`] (never zero).
    pub fn seeded(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }
    /// One of `xs`, uniformly.
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// splitmix64: spreads a seed.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Message `i` of stream `stream`: 16 header bytes (stream, index) then `len - 16` bytes that
/// depend on both, so that a torn or misplaced message fails `check_message`.
pub fn message(stream: u64, i: u64, max_len: usize) -> Vec<u8> {
    let len = 16 + (i.wrapping_mul(7919) as usize % (max_len - 15));
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&stream.to_le_bytes());
    v.extend_from_slice(&i.to_le_bytes());
    let mut x = stream
        .wrapping_mul(31)
        .wrapping_add(i)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

/// Checks a message made by `message` and returns its (stream, index).
pub fn check_message(bytes: &[u8], max_len: usize) -> (u64, u64) {
    assert!(bytes.len() >= 16, "message of {} bytes", bytes.len());
    let stream = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let i = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    assert_eq!(
        bytes,
        message(stream, i, max_len),
        "torn or corrupt message {stream}/{i}"
    );
    (stream, i)
}

/// SIGKILL, without reaping (the guard reaps).
pub fn kill9(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
}

/// Reads one `@@ ` report line from a running child's stdout (blocking), for handshakes.
pub fn read_report(child: &mut ChildGuard) -> String {
    use std::io::BufRead;
    let out = child.0.as_mut().unwrap().stdout.as_mut().unwrap();
    let mut reader = std::io::BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("child ended before reporting");
        }
        if let Some(i) = line.find("@@ ") {
            return line[i + 3..].trim_end().to_owned();
        }
    }
}

/// Spawns `role` with a piped stdin: the child can block on it until the parent writes to it,
/// closes it, or kills the child.
pub fn spawn_holding(role: &str, args: &[&str]) -> ChildGuard {
    let mut cmd = command(role, args);
    cmd.stdin(Stdio::piped());
    ChildGuard::spawn(cmd)
}

/// A copy of this test binary in a fresh directory of its own that every uid can reach (0755
/// directory, 0755 file), so that a child can run under another uid even when the checkout
/// lies in a private (0700) directory. Removed on drop, also when the test fails.
#[derive(Debug)]
pub struct ExeCopy {
    dir: PathBuf,
    exe: PathBuf,
}

impl ExeCopy {
    pub fn new() -> ExeCopy {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        static N: AtomicU32 = AtomicU32::new(0);
        let src = std::env::current_exe().unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = world_traversable_temp_dir().join(format!(
            "shmchan-t-exe-{}-{}-{nanos:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        // `create` fails if the name exists: the directory is ours alone.
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        // From here on the guard removes the directory, whatever fails next.
        let copy = ExeCopy {
            exe: dir.join(src.file_name().unwrap()),
            dir,
        };
        // The mode given to `create` is reduced by the umask: set it exactly.
        std::fs::set_permissions(&copy.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::copy(&src, &copy.exe)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", src.display(), copy.exe.display()));
        std::fs::set_permissions(&copy.exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    }

    /// The copied binary.
    pub fn path(&self) -> &Path {
        &self.exe
    }

    /// A command that runs the copy as `role` with `args` under `uid` (and the group of the same
    /// number, without supplementary groups), from the copy's directory.
    pub fn command_as(&self, uid: u32, role: &str, args: &[&str]) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = command_for(&self.exe, role, args);
        cmd.uid(uid).gid(uid).current_dir(&self.dir);
        cmd
    }
}

impl Drop for ExeCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The temporary directory if every uid can traverse it and all its ancestors, else `/tmp` (a
/// `TMPDIR` under a private home would hide the copy again).
fn world_traversable_temp_dir() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let tmp = std::env::temp_dir();
    let open = tmp.ancestors().all(|d| {
        std::fs::metadata(d).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
    });
    if open { tmp } else { PathBuf::from("/tmp") }
}

/// The runtime most tests block on: tokio's current-thread runtime with IO and timers.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Channel options: `slot_size` bytes a slot, `capacity` slots, and the liveness interval
/// when one is given (else shmchan's default).
pub fn opts(
    slot_size: usize,
    capacity: usize,
    liveness: Option<std::time::Duration>,
) -> shmchan::Options {
    let o = shmchan::Options::new()
        .slot_size(slot_size)
        .capacity(capacity);
    match liveness {
        Some(d) => o.liveness_interval(d),
        None => o,
    }
}

/// Options whose waits always park (`WaitStrategy::park_only`), with the liveness check a
/// minute away: a lost wake-up shows as a stall of a minute, not of the default 100 ms.
pub fn parked_opts(slot_size: usize, capacity: usize) -> shmchan::Options {
    opts(
        slot_size,
        capacity,
        Some(std::time::Duration::from_secs(60)),
    )
    .wait_strategy(shmchan::WaitStrategy::park_only())
}

/// `ms` milliseconds, for the liveness interval of [`opts`].
pub fn ms(ms: u64) -> Option<std::time::Duration> {
    Some(std::time::Duration::from_millis(ms))
}

/// Runs `f` to completion on the runtime `runtime` names: "tokio" (as [`rt`]), or async-io's
/// `block_on` under either of its names, "async-io" or "smol".
pub fn run<T>(runtime: &str, f: impl Future<Output = T>) -> T {
    match runtime {
        "tokio" => rt().block_on(f),
        #[cfg(feature = "async-io")]
        "async-io" | "smol" => async_io::block_on(f),
        other => panic!("unknown runtime {other}"),
    }
}

/// What a child that tries to open a handle reports: `in use: <message>` for
/// `Error::InUse`, `error: <error>` for another error, `opened` when it opened.
pub fn open_outcome<T>(r: shmchan::Result<T>) -> String {
    match r {
        Err(shmchan::Error::InUse(m)) => format!("in use: {m}"),
        Err(e) => format!("error: {e}"),
        Ok(_) => "opened".to_owned(),
    }
}

/// A child role that holds `handle` idle: reports `ready`, then sleeps until the parent kills
/// it (60 s at most).
pub fn ready_then_idle<T>(handle: T) {
    report("ready");
    std::thread::sleep(std::time::Duration::from_secs(60));
    drop(handle);
}

/// The name of an endpoint made by name and the names of its two rings (`-a2b`, `-b2a`), all
/// unlinked on drop (also when a test fails).
#[derive(Debug)]
pub struct EndpointNames {
    base: ShmName,
    _a2b: ShmName,
    _b2a: ShmName,
}

impl EndpointNames {
    pub fn new(tag: &str) -> EndpointNames {
        let base = ShmName::new(tag);
        EndpointNames {
            _a2b: ShmName(format!("{}-a2b", base.as_str())),
            _b2a: ShmName(format!("{}-b2a", base.as_str())),
            base,
        }
    }
    /// The endpoint's name.
    pub fn as_str(&self) -> &str {
        self.base.as_str()
    }
}

/// Appends 8-byte xorshift words, from state `x` (not zero), to `v` until it holds at least
/// `len` bytes, then cuts it to `len`.
pub fn fill_xorshift(v: &mut Vec<u8>, mut x: u64, len: usize) {
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
}

/// Whether this process runs as root, which a test that runs a `what` under another uid
/// needs; if not, says the test is skipped.
pub fn root_or_skip(what: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        println!("SKIPPED: not root, so the test cannot run a {what} under another uid");
    }
    root
}

/// Whether every thread of process `pid` is asleep (state `S` in `/proc/<pid>/task/*/stat`):
/// blocked in a system call such as `futex` or `epoll_wait`, not running, runnable or on its
/// way there.
pub fn asleep(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.into_iter().all(|t| {
        let Ok(t) = t else { return false };
        let stat = std::fs::read(t.path().join("stat")).unwrap_or_default();
        // The state follows the command name, which is in parentheses and may hold either.
        stat.iter()
            .rposition(|&b| b == b')')
            .and_then(|close| stat.get(close + 2))
            == Some(&b'S')
    })
}
