//! Kill matrix: SIGKILL a real producer or consumer process at a random moment and check the
//! crash guarantees of the README ("Close and crash guarantees") across every flavour.
//!
//! Each run picks, from its seed, a flavour (`spsc`, `mpsc`, `mpmc`, an `Endpoint` by name), a
//! scenario, a geometry, a wait strategy, a kill delay (0-30 ms after the victim attached) and
//! whether children send and receive one message at a time or in chunks (`reserve_many`: a
//! victim producer killed holding a chunk loses that chunk only, which the consumers skip
//! whole; `recv_chunk`: a victim consumer's chunk is delivered again, on MPMC adopted one
//! message at a time by a live consumer):
//!
//! - `prod-replaced`: the parent process is the consumer. A victim producer process is killed;
//!   a replacement producer attaches by name, sends a bounded number of messages and drops
//!   cleanly (MPSC/MPMC: a steady producer process runs alongside). The consumer must end
//!   (`Closed` or `PeerGone`) within the hang bound after the last producer finished.
//! - `prod-gone`: as above but the victim is not replaced; the time from SIGKILL to the
//!   consumer's `PeerGone` is measured (p50/p90/max in the table).
//! - `cons-replaced`: the parent process sends (one thread, two for MPSC/MPMC); a victim
//!   consumer process is killed and a replacement consumer attaches and receives until
//!   `Closed`. A consumer records each message in the ledger *before* it frees the slot
//!   (`recv_ref_blocking`), so a kill can cause at most the one documented redelivery.
//!
//! Every message carries (producer id, sequence number, checksum) and a body of variable
//! length derived from them. Consumers record what they receive in a shared-memory ledger
//! (a bitmap per producer, torn and duplicate counters); producers store in it how many
//! messages they committed (`send_*` returned `Ok`). A run fails on: a hang, a torn message,
//! a committed message that never arrived (the killed producer's one claimed-but-uncommitted
//! message may be lost), a message that was never committed, a duplicate outside a consumer
//! kill (or more than one per consumer kill), a wrong end (`prod-gone` without `PeerGone`), or
//! any child or channel error.
//!
//! Commands:
//!
//! ```sh
//! # CI-sized (240 kills by default; KILL_MATRIX_KILLS overrides):
//! cargo test --release --test kill_matrix -- --nocapture
//! # Long run, 1,000 kills by default (KILL_MATRIX_LONG_KILLS overrides):
//! cargo test --release --test kill_matrix -- --ignored --nocapture kill_matrix_long
//! # Replay one run by the seed printed for it (KILL_MATRIX_REPEAT to repeat it):
//! KILL_MATRIX_SEED=0x1234abcd cargo test --release --test kill_matrix -- --ignored --nocapture kill_matrix_replay
//! ```
//!
//! Other knobs: `KILL_MATRIX_BASE_SEED` (the seed the run seeds derive from), `KILL_MATRIX_JOBS`
//! (runs in flight at once, default 4), `KILL_MATRIX_HANG_SECS` (hang bound after the last
//! producer finished, default 10).
//!
//! Children are this test binary re-executed with `child_entry --exact` and the role in
//! `KILL_MATRIX_ROLE`. Waits are bounded everywhere (poll on pipes and pidfds with deadlines,
//! timed receives and sends); the only sleep is the random kill delay. Every run uses unique
//! segment names (pid and run number) removed by a guard, also when the run fails, and every
//! child is killed and reaped when its guard drops.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shmchan::channel::{Consumer, Flavour, Mpmc, Mpsc, Producer, Spsc};
use shmchan::endpoint::{Endpoint, Side};
use shmchan::{Error, Mode, Options, Segment, SendTimeoutError, WaitStrategy};

mod common;

use common::{Rng, mix};

const ROLE_VAR: &str = "KILL_MATRIX_ROLE";
const ARGS_VAR: &str = "KILL_MATRIX_ARGS";

/// Header of a message: producer id (u32), sequence (u64), checksum (u64).
const HDR: usize = 20;
/// Producer ids per run (victim 0, replacement 1, steady 2; parent threads 0 and 1).
const MAX_IDS: usize = 4;
/// Most slots of a chunk a producer child sends (`Spec::chunked`).
const CHUNK: u64 = 8;
/// Sequence numbers per producer id the ledger can record; a victim that reaches it idles.
const MAX_SEQ: u64 = 1 << 17;
const LIVENESS: Duration = Duration::from_millis(20);
/// Slice of a timed receive or send between checks of the run's deadlines.
const SLICE: Duration = Duration::from_millis(25);
/// How long a child may take to attach and report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a producer child may take to send its bounded count and leave.
const PRODUCER_TIMEOUT: Duration = Duration::from_secs(30);
/// Absolute bound on any wait of a run in the parent.
const RUN_CAP: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Randomness and messages

/// FNV-1a over the id and sequence bytes and the body.
fn checksum(head: &[u8], body: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in head.iter().chain(body) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Message `seq` of producer `id`: header, then a body whose length (0 to slot - HDR) and bytes
/// derive from (salt, id, seq).
fn make_msg(salt: u64, id: u32, seq: u64, slot: usize) -> Vec<u8> {
    let mut r = Rng::seeded(salt ^ (u64::from(id) << 48) ^ seq.wrapping_mul(0x100_0000_01b3));
    let len = r.below((slot - HDR) as u64 + 1) as usize;
    let mut v = Vec::with_capacity(HDR + len);
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    while v.len() < HDR + len {
        let w = r.next().to_le_bytes();
        let n = (HDR + len - v.len()).min(8);
        v.extend_from_slice(&w[..n]);
    }
    let sum = checksum(&v[..12], &v[HDR..]);
    v[12..20].copy_from_slice(&sum.to_le_bytes());
    v
}

/// The (id, seq) of an intact message, or `None` for a torn or foreign one.
fn verify(bytes: &[u8], salt: u64, slot: usize) -> Option<(u32, u64)> {
    if bytes.len() < HDR || bytes.len() > slot {
        return None;
    }
    let id = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    let seq = u64::from_le_bytes(bytes[4..12].try_into().unwrap());
    let sum = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
    if checksum(&bytes[..12], &bytes[HDR..]) != sum || id as usize >= MAX_IDS || seq >= MAX_SEQ {
        return None;
    }
    (make_msg(salt, id, seq, slot) == bytes).then_some((id, seq))
}

// ---------------------------------------------------------------------------------------------
// The ledger: a shared-memory record of commits and receipts that survives SIGKILL

const L_COMMITTED: usize = 0; // MAX_IDS words
const L_TORN: usize = 8 * MAX_IDS;
const L_DUP: usize = L_TORN + 8;
const L_RECEIVED: usize = L_DUP + 8;
const L_BITMAP: usize = 128;
const LEDGER_LEN: usize = L_BITMAP + MAX_IDS * (MAX_SEQ as usize / 8);

#[derive(Debug)]
struct Ledger {
    seg: Segment,
}

impl Ledger {
    fn create(name: &str) -> shmchan::Result<Ledger> {
        Ok(Ledger {
            seg: Segment::create(name, LEDGER_LEN)?,
        })
    }
    fn open(name: &str) -> shmchan::Result<Ledger> {
        Ok(Ledger {
            seg: Segment::open(name, Mode::ReadWrite)?,
        })
    }
    fn word(&self, off: usize) -> &AtomicU64 {
        self.seg.atomic_u64(off).expect("ledger word in bounds")
    }
    /// Producer `id` committed messages `0..n`.
    fn commit(&self, id: u32, n: u64) {
        self.word(L_COMMITTED + 8 * id as usize)
            .store(n, Ordering::Release);
    }
    fn committed(&self, id: u32) -> u64 {
        self.word(L_COMMITTED + 8 * id as usize)
            .load(Ordering::Acquire)
    }
    fn bit(&self, id: u32, seq: u64) -> (&AtomicU64, u64) {
        let bit = id as u64 * MAX_SEQ + seq;
        (
            self.word(L_BITMAP + (bit / 64) as usize * 8),
            1u64 << (bit % 64),
        )
    }
    /// Records one received message.
    fn record(&self, bytes: &[u8], salt: u64, slot: usize) {
        match verify(bytes, salt, slot) {
            None => {
                self.word(L_TORN).fetch_add(1, Ordering::AcqRel);
            }
            Some((id, seq)) => {
                let (w, m) = self.bit(id, seq);
                if w.fetch_or(m, Ordering::AcqRel) & m != 0 {
                    self.word(L_DUP).fetch_add(1, Ordering::AcqRel);
                } else {
                    self.word(L_RECEIVED).fetch_add(1, Ordering::AcqRel);
                }
            }
        }
    }
    fn received(&self, id: u32, seq: u64) -> bool {
        let (w, m) = self.bit(id, seq);
        w.load(Ordering::Acquire) & m != 0
    }
    fn counter(&self, off: usize) -> u64 {
        self.word(off).load(Ordering::Acquire)
    }
}

// ---------------------------------------------------------------------------------------------
// Flavours, scenarios, run specs

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fl {
    Spsc,
    Mpsc,
    Mpmc,
    Endpoint,
}

const FLAVOURS: [Fl; 4] = [Fl::Spsc, Fl::Mpsc, Fl::Mpmc, Fl::Endpoint];

impl Fl {
    fn name(self) -> &'static str {
        match self {
            Fl::Spsc => "spsc",
            Fl::Mpsc => "mpsc",
            Fl::Mpmc => "mpmc",
            Fl::Endpoint => "endpoint",
        }
    }
    fn multi(self) -> bool {
        matches!(self, Fl::Mpsc | Fl::Mpmc)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    ProducerReplaced,
    ProducerGone,
    ConsumerReplaced,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario::ProducerReplaced,
    Scenario::ProducerGone,
    Scenario::ConsumerReplaced,
];

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::ProducerReplaced => "prod-replaced",
            Scenario::ProducerGone => "prod-gone",
            Scenario::ConsumerReplaced => "cons-replaced",
        }
    }
}

const COMBOS: u64 = (FLAVOURS.len() * SCENARIOS.len()) as u64;

/// Everything a run does, derived from its seed (`seed % COMBOS` picks flavour and scenario).
#[derive(Debug, Clone)]
struct Spec {
    seed: u64,
    fl: Fl,
    scenario: Scenario,
    slot: usize,
    cap: usize,
    park_only: bool,
    delay: Duration,
    /// Reap the killed victim before the replacement attaches (else it stays a zombie).
    reap_first: bool,
    /// Messages of the replacement producer / the steady producer / each parent producer.
    n_repl: u64,
    n_steady: u64,
    n_parent: u64,
    salt: u64,
    /// Producer children send in chunks (`reserve_many`, up to `CHUNK` slots, one commit),
    /// so a victim may be killed holding a claimed chunk (on MPSC/MPMC: one intent for
    /// several positions, which the repair must release whole).
    chunked: bool,
}

impl Spec {
    fn from_seed(seed: u64) -> Spec {
        let combo = seed % COMBOS;
        let mut r = Rng::seeded(seed);
        Spec {
            seed,
            fl: FLAVOURS[(combo / SCENARIOS.len() as u64) as usize],
            scenario: SCENARIOS[(combo % SCENARIOS.len() as u64) as usize],
            slot: r.pick(&[HDR + 12, 64, 200, 1024]),
            cap: r.pick(&[2, 3, 8, 16, 64]),
            park_only: r.below(3) == 0,
            delay: Duration::from_micros(r.below(30_001)),
            reap_first: r.below(2) == 0,
            n_repl: 50 + r.below(400),
            n_steady: 100 + r.below(1000),
            n_parent: 200 + r.below(2000),
            salt: r.next(),
            // Drawn last, so that the other fields of a seed stay what they were before it.
            chunked: cfg!(feature = "tokio") && r.below(2) == 0,
        }
    }
    fn opts(&self) -> Options {
        let wait = if self.park_only {
            WaitStrategy::park_only()
        } else {
            WaitStrategy::new()
        };
        Options::new()
            .slot_size(self.slot)
            .capacity(self.cap)
            .liveness_interval(LIVENESS)
            .wait_strategy(wait)
    }
    fn label(&self) -> String {
        format!(
            "seed {:#x} ({} {}, slot {}, cap {}, {}, delay {:?}, {}{})",
            self.seed,
            self.fl.name(),
            self.scenario.name(),
            self.slot,
            self.cap,
            if self.park_only {
                "park-only"
            } else {
                "default wait"
            },
            self.delay,
            if self.reap_first { "reaped" } else { "zombie" },
            if self.chunked { ", chunks" } else { "" },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Opening channel handles of any flavour (an endpoint by name is two SPSC rings)

/// The half of an endpoint a side does not use, kept attached while the run lasts.
type Keep = Option<Box<dyn std::any::Any + Send>>;

fn downcast<T: 'static, U: 'static>(x: T) -> U {
    let b: Box<dyn std::any::Any> = Box::new(x);
    *b.downcast::<U>().expect("an endpoint's rings are SPSC")
}

/// Endpoint `name`: side A, created, for the parent (`create`), else side B, opened.
fn endpoint(name: &str, create: bool, opts: Options) -> shmchan::Result<Endpoint> {
    if create {
        Endpoint::create(name, Side::A, opts)
    } else {
        Endpoint::open(name, Side::B, opts)
    }
}

/// A producer handle: `create` is the parent (endpoint side A), else a child (side B).
fn tx_handle<F: Flavour>(
    fl: Fl,
    name: &str,
    create: bool,
    opts: Options,
) -> shmchan::Result<(Producer<F>, Keep)> {
    if fl == Fl::Endpoint {
        let (tx, rx) = endpoint(name, create, opts)?.split();
        return Ok((downcast(tx), Some(Box::new(rx))));
    }
    let tx = if create {
        Producer::<F>::create(name, opts)?
    } else {
        Producer::<F>::open(name, opts)?
    };
    Ok((tx, None))
}

fn rx_handle<F: Flavour>(
    fl: Fl,
    name: &str,
    create: bool,
    opts: Options,
) -> shmchan::Result<(Consumer<F>, Keep)> {
    if fl == Fl::Endpoint {
        let (tx, rx) = endpoint(name, create, opts)?.split();
        return Ok((downcast(rx), Some(Box::new(tx))));
    }
    let rx = if create {
        Consumer::<F>::create(name, opts)?
    } else {
        Consumer::<F>::open(name, opts)?
    };
    Ok((rx, None))
}

// ---------------------------------------------------------------------------------------------
// Children

fn report(line: &str) {
    use std::io::Write;
    // libtest may have printed "test child_entry ... " without a newline.
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "\n@@{line}\n");
    let _ = out.flush();
}

#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE_VAR) else {
        return;
    };
    let args: Vec<String> = std::env::var(ARGS_VAR)
        .unwrap_or_default()
        .split('\x1f')
        .map(str::to_owned)
        .collect();
    let spec = Spec::from_seed(parse_seed(&args[0]));
    let (name, ledger) = (&args[1], Ledger::open(&args[2]).expect("ledger"));
    match (role.as_str(), spec.fl) {
        ("producer", Fl::Spsc | Fl::Endpoint) => child_produce::<Spsc>(&spec, name, &ledger, &args),
        ("producer", Fl::Mpsc) => child_produce::<Mpsc>(&spec, name, &ledger, &args),
        ("producer", Fl::Mpmc) => child_produce::<Mpmc>(&spec, name, &ledger, &args),
        ("consumer", Fl::Spsc | Fl::Endpoint) => child_consume::<Spsc>(&spec, name, &ledger),
        ("consumer", Fl::Mpsc) => child_consume::<Mpsc>(&spec, name, &ledger),
        ("consumer", Fl::Mpmc) => child_consume::<Mpmc>(&spec, name, &ledger),
        (r, _) => panic!("unknown role {r}"),
    }
}

/// Producer child (args: seed, name, ledger, id, count; count 0: the victim, which sends until
/// killed and idles if it reaches `MAX_SEQ`).
fn child_produce<F: Flavour>(spec: &Spec, name: &str, ledger: &Ledger, args: &[String]) {
    let id: u32 = args[3].parse().unwrap();
    let count: u64 = args[4].parse().unwrap();
    let (mut tx, _keep) = match tx_handle::<F>(spec.fl, name, false, spec.opts()) {
        Ok(h) => h,
        Err(e) => panic!("producer {id} could not attach to {name}: {e}"),
    };
    let slot = tx.slot_size();
    report("ready");
    let limit = if count == 0 { MAX_SEQ } else { count };
    if spec.chunked {
        send_chunks(&mut tx, spec, ledger, id, limit);
    } else {
        for seq in 0..limit {
            if let Err(e) = tx.send_blocking(make_msg(spec.salt, id, seq, slot)) {
                panic!("producer {id}: send {seq} failed: {}", e);
            }
            ledger.commit(id, seq + 1);
        }
    }
    if count == 0 {
        loop {
            std::thread::park(); // the victim waits to be killed
        }
    }
    drop(tx);
    report("done");
}

/// Sends messages `0..limit` in chunks of 1 to `CHUNK` slots (at most the capacity), each
/// counted in the ledger once its commit returned.
fn send_chunks<F: Flavour>(
    tx: &mut Producer<F>,
    spec: &Spec,
    ledger: &Ledger,
    id: u32,
    limit: u64,
) {
    let slot = tx.slot_size();
    let most = CHUNK.min(tx.capacity() as u64);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut seq = 0;
        while seq < limit {
            let k = (1 + seq % most).min(limit - seq) as usize;
            let mut chunk = match tx.reserve_many(k).await {
                Ok(c) => c,
                Err(e) => panic!("producer {id}: reserve_many({k}) at {seq} failed: {e}"),
            };
            for i in 0..k {
                chunk
                    .write(i, &make_msg(spec.salt, id, seq + i as u64, slot))
                    .unwrap();
            }
            chunk.commit(k);
            seq += k as u64;
            ledger.commit(id, seq);
        }
    });
}

/// The consumer child's loop in chunks of up to `CHUNK` (`recv_chunk`), each message recorded
/// before the chunk (and so its slot) is freed: a kill redelivers at most a chunk.
macro_rules! consume_chunks {
    ($rx:expr, $spec:expr, $ledger:expr, $slot:expr) => {{
        let mut rx = $rx;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut buf = vec![0u8; $slot];
        rt.block_on(async {
            loop {
                match rx.recv_chunk(CHUNK as usize).await {
                    Ok(chunk) => {
                        for i in 0..chunk.len() {
                            let n = chunk.read(i, &mut buf).unwrap();
                            $ledger.record(&buf[..n], $spec.salt, $slot);
                        }
                    }
                    Err(Error::Closed) => return report("end closed"),
                    Err(Error::PeerGone(_)) => return report("end peergone"),
                    Err(e) => return report(&format!("end error {e}")),
                }
            }
        })
    }};
}

/// Consumer child (args: seed, name, ledger): records each message before freeing its slot,
/// until the channel ends; reports how it ended. Blocks in `recv_ref_blocking`: the parent
/// bounds the wait (it kills the child when the hang bound passes).
fn child_consume<F: Flavour>(spec: &Spec, name: &str, ledger: &Ledger) {
    let (mut rx, _keep) = match rx_handle::<F>(spec.fl, name, false, spec.opts()) {
        Ok(h) => h,
        Err(e) => panic!("consumer could not attach to {name}: {e}"),
    };
    let slot = rx.slot_size();
    report("ready");
    if spec.chunked {
        // The chunk APIs are per flavour (an endpoint's rings are SPSC).
        let rx: Box<dyn std::any::Any> = Box::new(rx);
        let rx = match rx.downcast::<Consumer<Spsc>>() {
            Ok(rx) => return consume_chunks!(*rx, spec, ledger, slot),
            Err(rx) => rx,
        };
        let rx = match rx.downcast::<Consumer<Mpsc>>() {
            Ok(rx) => return consume_chunks!(*rx, spec, ledger, slot),
            Err(rx) => rx,
        };
        let rx = rx
            .downcast::<Consumer<Mpmc>>()
            .expect("one of the three flavours");
        return consume_chunks!(*rx, spec, ledger, slot);
    }
    loop {
        match rx.recv_ref_blocking() {
            Ok(m) => {
                ledger.record(&m.to_vec(), spec.salt, slot);
                drop(m);
            }
            Err(Error::Closed) => return report("end closed"),
            Err(Error::PeerGone(_)) => return report("end peergone"),
            Err(e) => return report(&format!("end error {e}")),
        }
    }
}

/// A child process; killed and reaped on drop.
#[derive(Debug)]
struct Kid {
    what: String,
    child: Option<Child>,
    pidfd: OwnedFd,
    out: Vec<u8>,
}

fn poll_one(fd: &impl AsFd, left: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let ts = Timespec {
        tv_sec: left.as_secs() as _,
        tv_nsec: left.subsec_nanos() as _,
    };
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    loop {
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(n) => return n > 0,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

impl Kid {
    fn spawn(what: String, role: &str, args: &[String]) -> Kid {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "child_entry",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ROLE_VAR, role)
        .env(ARGS_VAR, args.join("\x1f"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("spawning a child");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        // Not reaped yet, so the pid is still ours.
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .expect("pidfd_open");
        Kid {
            what,
            child: Some(child),
            pidfd,
            out: Vec::new(),
        }
    }

    /// Reads the child's stdout until it printed `@@<marker>`; false on EOF or at `deadline`.
    fn wait_report(&mut self, marker: &str, deadline: Instant) -> bool {
        let needle = format!("@@{marker}");
        loop {
            if String::from_utf8_lossy(&self.out).contains(&needle) {
                return true;
            }
            let out = self.child.as_mut().unwrap().stdout.as_mut().unwrap();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !poll_one(out, left) {
                return false;
            }
            let mut buf = [0u8; 4096];
            match out.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => self.out.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Whether the process is dead (exited or killed, perhaps a zombie) by `deadline`.
    fn dead_by(&self, deadline: Instant) -> bool {
        poll_one(
            &self.pidfd,
            deadline.saturating_duration_since(Instant::now()),
        )
    }

    fn is_dead(&self) -> bool {
        poll_one(&self.pidfd, Duration::ZERO)
    }

    fn kill(&mut self) {
        let _ = self.child.as_mut().unwrap().kill();
    }

    /// Reaps a dead child and reads the rest of its stdout. Call after `dead_by`.
    fn reap(&mut self) -> (ExitStatus, String) {
        let child = self.child.as_mut().unwrap();
        let status = child.wait().expect("wait");
        if let Some(mut out) = child.stdout.take() {
            // The child is gone: the pipe has no writer left, so this read ends.
            let _ = out.read_to_end(&mut self.out);
        }
        self.child = None;
        (status, String::from_utf8_lossy(&self.out).into_owned())
    }

    /// Waits (bounded) for a child to exit by itself and checks it succeeded.
    fn finish(&mut self, deadline: Instant, failures: &mut Vec<String>) -> Option<String> {
        if !self.dead_by(deadline) {
            return None;
        }
        let (status, out) = self.reap();
        if !status.success() {
            failures.push(format!("{} failed: {status}", self.what));
        }
        Some(out)
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Runs

/// Removes a run's segments from /dev/shm when dropped, whatever happened.
#[derive(Debug)]
struct ShmGuard(Vec<String>);

impl Drop for ShmGuard {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Segment::unlink(n);
        }
    }
}

/// Milestones of a run: an epoch bumped at each (replacement attached, producers done).
#[derive(Debug, Default)]
struct Events {
    state: Mutex<(u64, Option<Instant>)>,
    cv: Condvar,
}

impl Events {
    fn bump(&self, done: bool) {
        let mut s = self.state.lock().unwrap();
        s.0 += 1;
        if done {
            s.1 = Some(Instant::now());
        }
        self.cv.notify_all();
    }
    fn snapshot(&self) -> (u64, Option<Instant>) {
        *self.state.lock().unwrap()
    }
    /// Waits until the epoch is at least `epoch` or `deadline` passes.
    fn wait_epoch(&self, epoch: u64, deadline: Instant) {
        let mut s = self.state.lock().unwrap();
        while s.0 < epoch {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            s = self.cv.wait_timeout(s, left).unwrap().0;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Closed,
    PeerGone,
}

/// What the consumer side saw.
#[derive(Debug, Default)]
struct Finish {
    ends: Vec<(End, Instant)>,
    hang: Option<String>,
    failures: Vec<String>,
    abandoned: u64,
}

/// A run whose active part is over and whose consumer side may still be finishing.
struct Pending {
    spec: Spec,
    ledger: Arc<Ledger>,
    finisher: JoinHandle<Finish>,
    failures: Vec<String>,
    hang: Option<String>,
    kill_at: Option<Instant>,
    kills: u32,
    /// Producer ids and whether each is a killed victim.
    producers: Vec<(u32, bool)>,
    _guard: ShmGuard,
}

/// The verdict on one run.
#[derive(Debug, Clone)]
struct Outcome {
    spec: Spec,
    kills: u32,
    hang: bool,
    torn: u64,
    dup: u64,
    lost: u64,
    phantom: u64,
    abandoned: u64,
    peer_gone: Option<Duration>,
    problems: Vec<String>,
}

impl Outcome {
    fn failed(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// The parent as consumer: timed receives until the channel ends after the producers finished,
/// or the hang bound passes.
fn parent_consume<F: Flavour>(
    mut rx: Consumer<F>,
    keep: Keep,
    spec: Spec,
    ledger: Arc<Ledger>,
    ev: Arc<Events>,
    hang_bound: Duration,
) -> Finish {
    let slot = rx.slot_size();
    let cap = Instant::now() + RUN_CAP;
    let mut f = Finish::default();
    loop {
        let (epoch, done_at) = ev.snapshot();
        let deadline = done_at.map_or(cap, |d| (d + hang_bound).min(cap));
        let now = Instant::now();
        if now >= deadline {
            f.hang = Some(match done_at {
                Some(d) => format!(
                    "consumer saw no end {:?} after the last producer finished (ends before: \
                     {:?}, pending {})",
                    now - d,
                    f.ends.iter().map(|e| e.0).collect::<Vec<_>>(),
                    rx.pending()
                ),
                None => "the run's producers never finished".into(),
            });
            break;
        }
        let end = match rx.recv_timeout(SLICE.min(deadline - now)) {
            Ok(m) => {
                ledger.record(&m, spec.salt, slot);
                continue;
            }
            Err(Error::TimedOut(_)) => continue,
            Err(Error::Closed) => End::Closed,
            Err(Error::PeerGone(_)) => End::PeerGone,
            Err(e) => {
                f.failures.push(format!("consumer: {e}"));
                break;
            }
        };
        f.ends.push((end, Instant::now()));
        if done_at.is_some() {
            break; // the receive began after every producer had finished: this is the end
        }
        // An end while producers are still to come (a victim gone before its replacement
        // attached): wait for the next milestone instead of spinning on the closed channel.
        ev.wait_epoch(epoch + 1, deadline);
    }
    f.abandoned = rx.abandoned();
    drop(rx);
    drop(keep);
    f
}

/// A parent producer thread (consumer scenario): sends `n` messages as producer `id`, waiting
/// for the replacement consumer when the victim's death closes the channel.
fn parent_produce<F: Flavour>(
    mut tx: Producer<F>,
    keep: Keep,
    id: u32,
    spec: Spec,
    ledger: Arc<Ledger>,
    ev: Arc<Events>,
) -> Vec<String> {
    let slot = tx.slot_size();
    let cap = Instant::now() + RUN_CAP;
    let mut problems = Vec::new();
    let mut seq = 0;
    while seq < spec.n_parent {
        let (epoch, _) = ev.snapshot();
        let gone = match tx.send_timeout(make_msg(spec.salt, id, seq, slot), SLICE) {
            Ok(()) => {
                ledger.commit(id, seq + 1);
                seq += 1;
                continue;
            }
            Err(SendTimeoutError::Timeout(_)) if Instant::now() < cap => continue,
            Err(SendTimeoutError::Timeout(_)) => {
                problems.push(format!("producer {id}: ring full for {RUN_CAP:?}"));
                break;
            }
            Err(SendTimeoutError::Closed(_)) => "Closed".to_string(),
            Err(SendTimeoutError::Other(_, e)) if matches!(*e, Error::PeerGone(_)) => e.to_string(),
            Err(SendTimeoutError::Other(_, e)) => {
                problems.push(format!("producer {id}: {e}"));
                break;
            }
        };
        if epoch >= 1 {
            problems.push(format!(
                "producer {id}: send {seq} failed after the replacement consumer attached: {gone}"
            ));
            break;
        }
        ev.wait_epoch(1, cap); // the replacement consumer attached
    }
    // Stay until the replacement attached: leaving earlier would close the channel and let the
    // victim end cleanly before its kill.
    ev.wait_epoch(1, cap);
    drop(tx);
    drop(keep);
    problems
}

fn chan_names(spec: &Spec, name: &str) -> Vec<String> {
    if spec.fl == Fl::Endpoint {
        vec![format!("{name}-a2b"), format!("{name}-b2a")]
    } else {
        vec![name.to_owned()]
    }
}

fn child_args(spec: &Spec, name: &str, ledger: &str, rest: &[String]) -> Vec<String> {
    let mut v = vec![
        format!("{:#x}", spec.seed),
        name.to_owned(),
        ledger.to_owned(),
    ];
    v.extend_from_slice(rest);
    v
}

/// Runs the active part of one run (children started, victim killed, replacement done) and
/// returns it with its consumer side possibly still finishing.
fn start_run(spec: Spec, run: u64, hang_bound: Duration) -> Result<Pending, String> {
    match spec.fl {
        Fl::Spsc | Fl::Endpoint => start_typed::<Spsc>(spec, run, hang_bound),
        Fl::Mpsc => start_typed::<Mpsc>(spec, run, hang_bound),
        Fl::Mpmc => start_typed::<Mpmc>(spec, run, hang_bound),
    }
}

fn start_typed<F: Flavour>(spec: Spec, run: u64, hang_bound: Duration) -> Result<Pending, String> {
    let name = format!("/shmchan-km-{}-{run}", std::process::id());
    let ledger_name = format!("{name}-ledger");
    let mut names = chan_names(&spec, &name);
    names.push(ledger_name.clone());
    let guard = ShmGuard(names);
    for n in &guard.0 {
        let _ = Segment::unlink(n); // a leftover of an earlier process with our pid
    }
    let ledger = Arc::new(Ledger::create(&ledger_name).map_err(|e| format!("ledger: {e}"))?);
    let ev = Arc::new(Events::default());
    let mut failures = Vec::new();
    let mut hang = None;
    let cap = Instant::now() + RUN_CAP;
    let mut kill_at = None;
    let mut kills = 0;
    let mut producers = Vec::new();

    let finisher = match spec.scenario {
        Scenario::ProducerReplaced | Scenario::ProducerGone => {
            let (rx, keep) = rx_handle::<F>(spec.fl, &name, true, spec.opts())
                .map_err(|e| format!("creating {name}: {e}"))?;
            let consumer = {
                let (spec, ledger, ev) = (spec.clone(), ledger.clone(), ev.clone());
                std::thread::spawn(move || parent_consume(rx, keep, spec, ledger, ev, hang_bound))
            };
            let args = |id: u32, n: u64| {
                child_args(&spec, &name, &ledger_name, &[id.to_string(), n.to_string()])
            };
            let replaced = spec.scenario == Scenario::ProducerReplaced;
            let mut steady = (replaced && spec.fl.multi()).then(|| {
                producers.push((2, false));
                Kid::spawn(
                    "steady producer 2".into(),
                    "producer",
                    &args(2, spec.n_steady),
                )
            });
            producers.push((0, true));
            let mut victim = Kid::spawn("victim producer 0".into(), "producer", &args(0, 0));
            if !victim.wait_report("ready", Instant::now() + READY_TIMEOUT) {
                failures.push("victim producer never attached".into());
            } else {
                std::thread::sleep(spec.delay);
                if victim.is_dead() {
                    failures.push("victim producer died before its kill".into());
                } else {
                    kill_at = Some(Instant::now());
                    victim.kill();
                    kills += 1;
                }
            }
            if !victim.dead_by(Instant::now() + READY_TIMEOUT) {
                failures.push("victim producer survived SIGKILL".into());
            }
            if spec.reap_first || !replaced {
                victim.reap();
            }
            if !replaced {
                ev.bump(true);
            } else {
                producers.push((1, false));
                let mut repl = Kid::spawn(
                    "replacement producer 1".into(),
                    "producer",
                    &args(1, spec.n_repl),
                );
                if repl.wait_report("ready", Instant::now() + READY_TIMEOUT) {
                    ev.bump(false);
                } else {
                    failures.push("replacement producer never attached".into());
                }
                let deadline = Instant::now() + PRODUCER_TIMEOUT;
                for kid in std::iter::once(&mut repl).chain(steady.as_mut()) {
                    if kid.finish(deadline, &mut failures).is_none() {
                        hang = Some(format!(
                            "{} still sending after {PRODUCER_TIMEOUT:?}",
                            kid.what
                        ));
                    }
                }
                drop(repl);
                drop(steady.take());
                drop(victim);
                ev.bump(true);
            }
            consumer
        }
        Scenario::ConsumerReplaced => {
            let (tx, keep) = tx_handle::<F>(spec.fl, &name, true, spec.opts())
                .map_err(|e| format!("creating {name}: {e}"))?;
            let mut txs = vec![(tx, keep)];
            if spec.fl.multi() {
                let tx2 = Producer::<F>::open(&name, spec.opts())
                    .map_err(|e| format!("second producer: {e}"))?;
                txs.push((tx2, None));
            }
            let args = child_args(&spec, &name, &ledger_name, &[]);
            let mut victim = Kid::spawn("victim consumer".into(), "consumer", &args);
            let victim_ready = victim.wait_report("ready", Instant::now() + READY_TIMEOUT);
            let senders: Vec<JoinHandle<Vec<String>>> = txs
                .into_iter()
                .enumerate()
                .map(|(id, (tx, keep))| {
                    producers.push((id as u32, false));
                    let (spec, ledger, ev) = (spec.clone(), ledger.clone(), ev.clone());
                    std::thread::spawn(move || {
                        parent_produce(tx, keep, id as u32, spec, ledger, ev)
                    })
                })
                .collect();
            if !victim_ready {
                failures.push("victim consumer never attached".into());
            } else {
                std::thread::sleep(spec.delay);
                if victim.is_dead() {
                    failures.push("victim consumer died before its kill".into());
                } else {
                    kill_at = Some(Instant::now());
                    victim.kill();
                    kills += 1;
                }
            }
            if !victim.dead_by(Instant::now() + READY_TIMEOUT) {
                failures.push("victim consumer survived SIGKILL".into());
            }
            if spec.reap_first {
                victim.reap();
            }
            let mut repl = Kid::spawn("replacement consumer".into(), "consumer", &args);
            if !repl.wait_report("ready", Instant::now() + READY_TIMEOUT) {
                failures.push("replacement consumer never attached".into());
            }
            ev.bump(false); // also on failure: the senders must not wait for it forever
            for s in senders {
                failures.extend(
                    s.join()
                        .unwrap_or_else(|_| vec!["producer thread panicked".into()]),
                );
            }
            drop(victim);
            ev.bump(true);
            // The replacement consumer must now drain and see Closed within the hang bound.
            std::thread::spawn(move || {
                let mut f = Finish::default();
                let deadline = (Instant::now() + hang_bound).min(cap);
                if !repl.dead_by(deadline) {
                    f.hang = Some(format!(
                        "replacement consumer saw no end {hang_bound:?} after the producers left"
                    ));
                    return f;
                }
                let (status, out) = repl.reap();
                if !status.success() {
                    f.failures
                        .push(format!("replacement consumer failed: {status}"));
                }
                if out.contains("@@end closed") {
                    f.ends.push((End::Closed, Instant::now()));
                } else if out.contains("@@end peergone") {
                    f.ends.push((End::PeerGone, Instant::now()));
                } else if let Some(i) = out.find("@@end error") {
                    let line = out[i..].lines().next().unwrap_or_default();
                    f.failures.push(format!("replacement consumer: {line}"));
                }
                f
            })
        }
    };
    Ok(Pending {
        spec,
        ledger,
        finisher,
        failures,
        hang,
        kill_at,
        kills,
        producers,
        _guard: guard,
    })
}

/// Joins a run's consumer side and judges the run from its ledger.
fn judge(p: Pending) -> Outcome {
    let f = p.finisher.join().unwrap_or_else(|_| Finish {
        failures: vec!["consumer thread panicked".into()],
        ..Finish::default()
    });
    let mut problems = p.failures;
    problems.extend(f.failures);
    let hang = p.hang.or(f.hang);
    if let Some(h) = &hang {
        problems.push(format!("hang: {h}"));
    }
    let l = &p.ledger;
    let (torn, dup) = (l.counter(L_TORN), l.counter(L_DUP));
    let (mut lost, mut phantom) = (0, 0);
    for &(id, victim) in &p.producers {
        let committed = l.committed(id);
        let missing: Vec<u64> = (0..committed).filter(|&s| !l.received(id, s)).collect();
        lost += missing.len() as u64;
        if !missing.is_empty() {
            problems.push(format!(
                "producer {id}: {} of {committed} committed messages never arrived (first {:?})",
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
        // A killed producer may have committed one message (one chunk) it had no time to
        // count.
        let allowed = committed + u64::from(victim) * if p.spec.chunked { CHUNK } else { 1 };
        let extra = (allowed..MAX_SEQ).filter(|&s| l.received(id, s)).count() as u64;
        phantom += extra;
        if extra > 0 {
            problems.push(format!(
                "producer {id}: {extra} messages beyond the {committed} it committed arrived"
            ));
        }
    }
    if torn > 0 {
        problems.push(format!("{torn} torn messages"));
    }
    let consumer_killed = p.spec.scenario == Scenario::ConsumerReplaced && p.kills > 0;
    // A killed consumer may have held one message, or one chunk, it had recorded.
    let per_kill = if p.spec.chunked { CHUNK } else { 1 };
    if dup > u64::from(consumer_killed) * u64::from(p.kills) * per_kill {
        problems.push(format!(
            "{dup} duplicates ({} consumer kills allow at most {per_kill} each)",
            if consumer_killed { p.kills } else { 0 }
        ));
    }
    let mut peer_gone = None;
    if p.spec.scenario == Scenario::ProducerGone && hang.is_none() {
        let kill_at = p.kill_at;
        peer_gone = f
            .ends
            .iter()
            .find(|e| e.0 == End::PeerGone)
            .zip(kill_at)
            .map(|(e, k)| e.1.saturating_duration_since(k));
        if peer_gone.is_none() && kill_at.is_some() {
            problems.push(format!(
                "the only producer was killed but the consumer never saw PeerGone (ends: {:?})",
                f.ends.iter().map(|e| e.0).collect::<Vec<_>>()
            ));
        }
    }
    if p.spec.scenario == Scenario::ConsumerReplaced && hang.is_none() && f.ends.is_empty() {
        problems.push("the replacement consumer reported no end".into());
    }
    Outcome {
        spec: p.spec,
        kills: p.kills,
        hang: hang.is_some(),
        torn,
        dup,
        lost,
        phantom,
        abandoned: f.abandoned,
        peer_gone,
        problems,
    }
}

fn env_u64(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().map_or(default, |v| parse_seed(&v))
}

fn parse_seed(s: &str) -> u64 {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

/// Runs `seeds` with `jobs` runs in their active part at once; consumer sides finish in the
/// background, so a hanging run costs its hang bound once, not once per job slot.
fn run_all(seeds: Vec<u64>, jobs: usize, hang_bound: Duration) -> Vec<Outcome> {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let seeds = Arc::new(seeds);
    let next = Arc::new(AtomicUsize::new(0));
    let pending = Arc::new(Mutex::new(Vec::new()));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let (seeds, next, pending, outcomes) = (
                seeds.clone(),
                next.clone(),
                pending.clone(),
                outcomes.clone(),
            );
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { break };
                    let spec = Spec::from_seed(seed);
                    let run = RUN.fetch_add(1, Ordering::Relaxed);
                    match start_run(spec.clone(), run, hang_bound) {
                        Ok(p) => pending.lock().unwrap().push(p),
                        Err(e) => outcomes.lock().unwrap().push(Outcome {
                            spec,
                            kills: 0,
                            hang: false,
                            torn: 0,
                            dup: 0,
                            lost: 0,
                            phantom: 0,
                            abandoned: 0,
                            peer_gone: None,
                            problems: vec![format!("setup: {e}")],
                        }),
                    }
                    // Judge finished runs as we go, so their segments and threads go early.
                    let done: Vec<Pending> = {
                        let mut p = pending.lock().unwrap();
                        let (fin, rest) = p
                            .drain(..)
                            .partition(|x: &Pending| x.finisher.is_finished());
                        *p = rest;
                        fin
                    };
                    let judged: Vec<Outcome> = done.into_iter().map(judge).collect();
                    outcomes.lock().unwrap().extend(judged);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker thread");
    }
    let rest: Vec<Pending> = pending.lock().unwrap().drain(..).collect();
    let mut out = std::mem::take(&mut *outcomes.lock().unwrap());
    out.extend(rest.into_iter().map(judge));
    out.sort_by_key(|o| seeds.iter().position(|&s| s == o.spec.seed));
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// Prints the table and the failing runs; returns the number of failing runs.
fn print_table(outcomes: &[Outcome], took: Duration) -> usize {
    println!();
    println!(
        "{:<9} {:<14} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>7} {:>6} {:>6}  PeerGone after kill ms p50/p90/max",
        "flavour",
        "scenario",
        "runs",
        "kills",
        "hangs",
        "torn",
        "dup",
        "lost",
        "phantom",
        "aband",
        "failed"
    );
    let mut rows: Vec<(String, String, Vec<&Outcome>)> = Vec::new();
    for fl in FLAVOURS {
        for sc in SCENARIOS {
            let v: Vec<&Outcome> = outcomes
                .iter()
                .filter(|o| o.spec.fl == fl && o.spec.scenario == sc)
                .collect();
            rows.push((fl.name().into(), sc.name().into(), v));
        }
    }
    rows.push(("all".into(), "".into(), outcomes.iter().collect()));
    for (fl, sc, v) in rows {
        if v.is_empty() {
            continue;
        }
        let sum = |f: fn(&Outcome) -> u64| v.iter().map(|o| f(o)).sum::<u64>();
        let mut pg: Vec<Duration> = v.iter().filter_map(|o| o.peer_gone).collect();
        pg.sort();
        let pg = if pg.is_empty() {
            "-".to_string()
        } else {
            format!(
                "{}/{}/{} (n={})",
                ms(percentile(&pg, 0.5)),
                ms(percentile(&pg, 0.9)),
                ms(*pg.last().unwrap()),
                pg.len()
            )
        };
        println!(
            "{fl:<9} {sc:<14} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>7} {:>6} {:>6}  {pg}",
            v.len(),
            sum(|o| u64::from(o.kills)),
            sum(|o| u64::from(o.hang)),
            sum(|o| o.torn),
            sum(|o| o.dup),
            sum(|o| o.lost),
            sum(|o| o.phantom),
            sum(|o| o.abandoned),
            sum(|o| u64::from(o.failed())),
        );
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed()).collect();
    println!(
        "{} runs, {} kills in {took:.1?}; {} failing runs",
        outcomes.len(),
        outcomes.iter().map(|o| o.kills).sum::<u32>(),
        failed.len()
    );
    for o in failed.iter().take(40) {
        println!("FAIL {}: {}", o.spec.label(), o.problems.join("; "));
    }
    if failed.len() > 40 {
        println!("... and {} more failing runs", failed.len() - 40);
    }
    failed.len()
}

/// Seeds for `kills` runs (one kill each), cycling through every flavour and scenario.
fn seeds(kills: u64) -> Vec<u64> {
    let base = env_u64("KILL_MATRIX_BASE_SEED", 0x6b69_6c6c);
    println!("KILL_MATRIX_BASE_SEED={base:#x}");
    (0..kills)
        .map(|i| mix(base.wrapping_add(i)) / COMBOS * COMBOS + i % COMBOS)
        .collect()
}

fn matrix(kills: u64) {
    let jobs = env_u64("KILL_MATRIX_JOBS", 4).max(1) as usize;
    let hang_bound = Duration::from_secs(env_u64("KILL_MATRIX_HANG_SECS", 10));
    let t = Instant::now();
    let outcomes = run_all(seeds(kills), jobs, hang_bound);
    let failed = print_table(&outcomes, t.elapsed());
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let hangs = count(|o| o.hang);
    let torn: u64 = outcomes.iter().map(|o| o.torn).sum();
    let lost: u64 = outcomes.iter().map(|o| o.lost).sum();
    let stray_dups: u64 = outcomes
        .iter()
        .filter(|o| o.spec.scenario != Scenario::ConsumerReplaced)
        .map(|o| o.dup)
        .sum();
    assert_eq!(hangs, 0, "runs that hung (see FAIL lines for seeds)");
    assert_eq!(torn, 0, "torn messages");
    assert_eq!(lost, 0, "committed messages lost");
    assert_eq!(stray_dups, 0, "duplicates without a consumer kill");
    assert_eq!(failed, 0, "failing runs (see FAIL lines for seeds)");
}

/// CI-sized: ~240 kills across the matrix.
#[test]
fn kill_matrix_ci() {
    matrix(env_u64("KILL_MATRIX_KILLS", 240));
}

/// The long run: 1,000 kills (`KILL_MATRIX_LONG_KILLS` to change).
#[test]
#[ignore = "long: run with --ignored"]
fn kill_matrix_long() {
    matrix(env_u64("KILL_MATRIX_LONG_KILLS", 1000));
}

/// Replays one run by its seed: `KILL_MATRIX_SEED=0x... ` (and `KILL_MATRIX_REPEAT=n`).
#[test]
#[ignore = "replay: set KILL_MATRIX_SEED"]
fn kill_matrix_replay() {
    let Ok(seed) = std::env::var("KILL_MATRIX_SEED") else {
        println!("set KILL_MATRIX_SEED to a seed printed by a failing run");
        return;
    };
    let seed = parse_seed(&seed);
    let n = env_u64("KILL_MATRIX_REPEAT", 1);
    let hang_bound = Duration::from_secs(env_u64("KILL_MATRIX_HANG_SECS", 10));
    println!("{}", Spec::from_seed(seed).label());
    let t = Instant::now();
    let outcomes = run_all(vec![seed; n as usize], 1, hang_bound);
    for o in &outcomes {
        println!("{o:?}");
    }
    assert_eq!(print_table(&outcomes, t.elapsed()), 0, "failing runs");
}

/// The detectors themselves: a flipped byte, a cut body and a foreign salt are torn; a second
/// receipt is a duplicate; committed-but-missing and never-committed are told apart.
#[test]
fn ledger_detects_torn_duplicate_and_lost() {
    let name = format!("/shmchan-km-{}-selftest-ledger", std::process::id());
    let _guard = ShmGuard(vec![name.clone()]);
    let l = Ledger::create(&name).unwrap();
    let (salt, slot) = (7, 200);
    for seq in 0..50 {
        let m = make_msg(salt, 1, seq, slot);
        assert_eq!(verify(&m, salt, slot), Some((1, seq)));
    }
    let m = make_msg(salt, 1, 3, slot);
    l.record(&m, salt, slot);
    l.record(&m, salt, slot);
    let mut flipped = make_msg(salt, 1, 4, slot);
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    l.record(&flipped, salt, slot);
    let long = (0..)
        .map(|s| make_msg(salt, 1, s, slot))
        .find(|m| m.len() > HDR + 1);
    let long = long.unwrap();
    l.record(&long[..long.len() - 1], salt, slot);
    l.record(&make_msg(salt + 1, 1, 5, slot), salt, slot);
    l.record(&[0u8; 8], salt, slot);
    assert_eq!(l.counter(L_TORN), 4);
    assert_eq!(l.counter(L_DUP), 1);
    assert_eq!(l.counter(L_RECEIVED), 1);
    assert!(l.received(1, 3) && !l.received(1, 4) && !l.received(0, 3));
    l.commit(1, 4);
    assert_eq!(l.committed(1), 4);
    assert_eq!((0..4).filter(|&s| !l.received(1, s)).count(), 3);
}
