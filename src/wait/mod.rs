//! Waiting: the spin -> yield -> park budget ([`WaitStrategy`]), the policy that adapts it to
//! what recent waits needed (`Learned`), and the park/wake protocol that makes a wake-up
//! system call only when a peer announced that it sleeps.
//!
//! # The wait policy (one for blocking and async waits)
//!
//! A wait that finds nothing runs three phases, each bounded by the [`WaitStrategy`]:
//!
//! 1. **Spin** (re-check with a CPU pause hint) for the handle's *learned* spin budget, at most
//!    the strategy's. The clock is not read for the first `SPIN_ROUND` (32) checks, and then once
//!    per round: a wait that ends within a round (the common case on a busy stream) reads no
//!    clock at all. Async waits spin one round inside `poll`, then one round per poll,
//!    waking themselves in between: the runtime's other tasks, and the other futures of the
//!    same `join!` or `select!`, run between rounds, since one of them may be what the peer
//!    waits for. (Spinning the whole budget inside one `poll` held back a coordinator's
//!    feeding half while its collecting half waited for results of jobs not yet fed:
//!    `cargo bench --bench worker_pool` ran 1 worker at 4-5 M jobs/s that way, 7-9 M
//!    with the rounds; `a_spinning_wait_lets_the_futures_beside_it_run` in tests/coop.rs.)
//!    Under tokio's multi_thread runtime a task that wakes itself is rescheduled as a yield,
//!    which unparks an idle worker thread, so there a round ends with a deferred wake
//!    (`yield_now`) instead.
//! 2. **Yield to the OS** (`sched_yield`) between checks until the yield budget is spent. This
//!    is what lets a peer that shares our CPU run. An async wait first lets the executor run
//!    its other tasks once (the CPU goes to another process only when nothing of ours is
//!    ready: `a_wait_runs_the_futures_beside_it_before_it_yields_to_the_os`; the worker pool
//!    on one CPU went from 5 to 8 M jobs/s; under tokio's multi_thread runtime only while
//!    the process has more than two handles that wait: there the turn is a deferred wake,
//!    which halved the requests/s of an endpoint server with one client on a shared CPU,
//!    while without it a server with several clients held the ready tasks queued on a
//!    worker behind a task whose `sched_yield` gave the CPU away: p99.9 of 5-29 ms with 4-16
//!    clients on one CPU, 0.2-1 ms with the turn; see `reactor.rs`), then makes one
//!    `sched_yield` per poll and yields to the executor as `tokio::task::yield_now` does (the wake is deferred until the
//!    runtime has polled its driver, so timers and I/O of other tasks keep running).
//!    Yielding only to the executor, as this crate did before, starves a peer on the same CPU:
//!    every hop then cost the whole spin + yield budget (RTT p50 ~225 µs with both processes
//!    on one CPU, measured by `BENCH_PLACEMENTS=one-cpu cargo bench --bench async`).
//! 3. **Park** (announce, re-check, sleep on the futex or the doorbell; `protocol.rs`).
//!
//! Where the peer is decides first: each wait begins by publishing the CPU it runs on in its
//! participant record (`AUX_CPU`; read with `rdtscp`, no system call) and reading its single
//! peer's (SPSC rings, endpoints, an MPSC consumer's producers). A peer that last ran on
//! our CPU cannot run while we spin, so the wait goes straight to `sched_yield`; for one on
//! another CPU the wait spins through the whole spin + yield budget and then parks, never
//! calling `sched_yield`, which could only hand our CPU to a stranger: beside a CPU-burning
//! process, for the rest of its time slice (milliseconds), while the peer fills the ring and
//! waits for us in turn (`a_wait_for_a_peer_on_another_cpu_never_yields_its_cpu` in
//! tests/wait_policy.rs; before, 17-75 `sched_yield`s per 2 ms wait). The word must be
//! fresh, or a peer that shares our CPU is spun against: a side that never waits (a producer
//! whose consumer keeps up, a consumer slower than its producers) also publishes its CPU
//! every 64 messages (`Core::note_progress`;
//! `a_wait_for_a_busy_consumer_on_another_cpu_never_yields_its_cpu`), and a wait publishes
//! it again after a park or a `sched_yield` that gave the CPU away (the scheduler often
//! moves a woken task to its waker's CPU). Without that word (several peers, none published yet), what the wait
//! needed teaches the next one (`Learned`): a wait that found its data while
//! spinning keeps (or doubles back towards) the full spin budget; a wait whose `sched_yield`
//! gave the CPU away (it took longer than `SWITCHED` (4 µs), so another task ran on our CPU) and
//! then found data spins no more, since its peer most likely runs on our CPU and every spin
//! only delays it; a wait that found data after quick yields (nobody else wanted our CPU)
//! within the full spin budget would have been met spinning, so the budget grows back; a wait
//! that had to park halves the budget. A `sched_yield` that gave the CPU away and still
//! found nothing parks at once: what ran was not our peer, and yielding again to a task that
//! burns its whole time slice (milliseconds) is slower than being woken (the busy placement
//! of `cargo bench --bench endpoint`, 4 clients: 0.16x `UnixStream` without this rule). The yield and park phases are untouched by this, so a
//! peer that is killed is still seen at the liveness interval, and the park protocol (no lost
//! wake-ups) is the same.
//!
//! Measured on the team's 2-vCPU VM while another engineer's builds ran (load 4-5),
//! `BENCH_ONLY=hot,64 cargo bench --bench async` (5 alternating rounds, medians; "before" is
//! the executor-only yield, 3 rounds):
//!
//! | placement | hot RTT p50, before -> now | 64 B one-way, before -> now |
//! |---|---|---|
//! | unpinned | - -> 5.4 µs (0.29x the hot floor) | - -> 9.6 M msg/s (1.9x tokio mpsc) |
//! | both on one CPU | 225 µs -> 5.9 µs (0.31x) | 0.94 -> 9.2 M msg/s (1.9x) |
//! | each on its own CPU | 0.99 µs -> 0.94 µs (1.7x) | 1.6 -> 1.8 M msg/s (2.0x) |
//! | beside a CPU burner | 1.0 µs -> 6.1 µs (0.37x) | 0.65 -> 7.5 M msg/s (1.6x) |
//!
//! (The hot floor also hands the CPU to the OS every 16th check, else it starves itself when
//! its two sides share a CPU.)
//!
//! **Wake one per item** (`protocol.rs`, `WaitSet::wake`): a publish rings one parked async
//! waiter, a free of `n` slots up to `n`. Waking every parked waiter for every item made the
//! MPMC `worker_pool` example 7x slower with 8 workers than with 1 (10.2 s against 1.5 s for
//! 100 k jobs on the loaded VM: seven of eight workers woke, found nothing and parked again,
//! per job); with wake-one the 8-worker run took 2.0-3.7 s. A waiter that was rung but does
//! not take an item passes the wake on (`reactor::retract`; loom model
//! `loom_wake_one_passes_on_a_wake_it_does_not_use`). `closed()` waits as an *event* waiter:
//! it parks at once and only close and death wakes ring it, so it never absorbs a wake meant
//! for a waiter of work. An MPMC producer rings no second worker while the one it rang last
//! has not run yet (at most 500 µs): that worker's next attempt sees the new work and the chain
//! spreads it (`protocol::woken_since`, loom model `loom_a_skipped_ring_is_never_lost`); on
//! one CPU the flushes of `cargo bench --bench worker_pool` had woken all 8 workers for each
//! batch of 1024 jobs (0.017 doorbells per job, 0.005 now). Still a miss: 8 workers are
//! slower than 1 on one CPU (each wake-up of a parked worker costs its process a switch
//! in and its caches; `cargo bench --bench worker_pool`).
//!
//! **Fenced mode** (`protocol.rs`): a handle whose park comes within `protocol::FENCED_ITEMS`
//! (4,096) ring positions of its previous one pays the park's `membarrier` once more and then
//! parks with a plain fence, while the wakers of its side fence fully and count those fences;
//! it stays in the mode while they made at most `protocol::FENCED_CHECKS` (256) between two
//! of its parks (`Learned::fenced_park`; `WaitStats::barriers` counts the barriers paid).
//! Until 2026-12-03 evening the distance alone decided, at most 8 positions, so a pool's
//! worker (parks hundreds of jobs apart, its coordinator checking once per flush of 64)
//! paid a barrier per park: `cargo bench --bench worker_pool` with 8 workers, unpinned, made
//! 2,376 `membarrier` calls in 3 rounds, 499 after (`perf stat -e
//! syscalls:sys_enter_membarrier`), and its `perf record -a` had 10% of all samples in the
//! barrier's IPIs and 3% spinning on its kernel mutex, 1.3% and none after. Measured 2026-12-03 afternoon, alternating
//! the build before (A) with this one (C), 2-3 pairs of 3 rounds: a timer task's gap beside a
//! parked receiver, p99 6.5 -> 2.2-2.4 µs unpinned, 4.3-5.3 -> 2.1-2.2 µs on one CPU, 5.0-5.4
//! -> 2.1 µs beside a burner (`BENCH_ONLY=neighbour cargo bench --bench async`: the barrier's
//! IPI interrupted the CPU the timer task ran on); a multi_thread endpoint server with 16
//! clients 118-135 k -> 149-172 k requests/s unpinned, 82-87 k -> 98-133 k on one CPU. What it
//! costs: a round trip where both sides always park (`WaitStrategy::park_only`) across two
//! CPUs, 24-29 -> 65-80 µs p50 on this VM that afternoon (its cold floor, an eventfd ping-pong,
//! 60-65 µs): the barrier kept the parking process on its CPU, spinning in the kernel until
//! the other vCPU took the IPI, long enough for the answer to arrive before it slept; and a
//! current_thread server with 16 clients unpinned, 385-495 k -> 300-390 k requests/s, where
//! the clients' barriers had worked as extra spinning too and the server now rings more
//! doorbells. Both are spins a wait can choose (its `WaitStrategy`) rather than pay as a
//! side effect of every park.
//!
//! Everything a waiting handle does lives in this module, below the channel types:
//!
//! - `protocol.rs`: the park/wake protocol over an explicit set of participant records, the
//!   waiter's half (announce, re-check, retract) beside the waker's (the one fenced scan that
//!   every wake path goes through: publish, free, close, repair, death), and the lost-wake-up
//!   argument, once; its loom models are in `loom_models.rs` beside it.
//! - `blocking.rs`: the wait loop of blocking and timed calls (threads park on a futex word).
//! - `reactor.rs`: the wait of futures, `Sink`s and `Stream`s (tasks park on a doorbell
//!   registered in their runtime's reactor, and watch their peers' pidfds).
//!
//! This module may call `ring` (nothing of it: it only sees words), `layout` (the records),
//! `runtime` and `sys`; never `channel` or `endpoint`, which call it through the `Park` and
//! `AsyncPark` traits.

#[cfg(not(shmchan_loom))]
pub(crate) mod blocking;
pub(crate) mod protocol;
#[cfg(not(shmchan_loom))]
pub(crate) mod reactor;

#[cfg(all(test, not(shmchan_loom)))]
mod doorbell_tests;
#[cfg(all(test, shmchan_loom))]
mod loom_models;

use std::time::Duration;

/// Record aux word where a handle publishes the CPU it ran on when its last wait began
/// (`cpu + 1`; 0: unknown). `protocol.rs` owns aux words 0 and 1.
pub(crate) const AUX_CPU: usize = 2;

/// What the peer's published CPU says about spinning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerCpu {
    /// No word to read (several peers, or none published yet, or no cheap way to know ours).
    Unknown,
    /// The peer last waited on our CPU: it cannot run while we spin.
    Same,
    /// The peer last waited on another CPU: spinning can meet it.
    Other,
}

/// The CPU this thread runs on, plus one, or 0 when it cannot be read without a system call.
///
/// On x86_64 Linux, `rdtscp` returns `TSC_AUX`, which the kernel sets to `node << 12 | cpu`
/// on every CPU (the vDSO's `getcpu` reads the same); that is checked once against the
/// `getcpu` system call, and the answer is 0 if they disagree or the CPU has no `rdtscp`.
#[cfg_attr(shmchan_loom, allow(dead_code))]
pub(crate) fn this_cpu() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::atomic::{AtomicU8, Ordering};
        // 0: not checked yet, 1: usable, 2: not usable.
        static USABLE: AtomicU8 = AtomicU8::new(0);
        fn rdtscp_cpu() -> u64 {
            let mut aux = 0u32;
            // SAFETY: only called once `USABLE` says the CPU implements `rdtscp` (CPUID
            // 0x8000_0001 EDX bit 27); the intrinsic only writes `aux`.
            unsafe { std::arch::x86_64::__rdtscp(&mut aux) };
            u64::from(aux & 0xfff)
        }
        // Relaxed: a cached, idempotent probe result; no other memory depends on it.
        match USABLE.load(Ordering::Relaxed) {
            1 => return rdtscp_cpu() + 1,
            2 => return 0,
            _ => {}
        }
        let has = std::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 27) != 0;
        let ok = has && rdtscp_cpu() == rustix::thread::sched_getcpu() as u64;
        // Relaxed: as above.
        USABLE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
        if ok { rdtscp_cpu() + 1 } else { 0 }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Checks made in the spin phase between two clock reads (and before the first).
pub(crate) const SPIN_ROUND: u32 = 32;

/// A `sched_yield` that takes longer than this gave the CPU to another task: something else
/// (most likely the peer we wait for) wants to run where we run. A `sched_yield` with nothing
/// else runnable returns in well under a microsecond on the team's VM; a switch to another
/// process and back takes several.
pub(crate) const SWITCHED: Duration = Duration::from_micros(4);

/// The smallest spin budget a grown budget starts from.
const SPIN_STEP: Duration = Duration::from_micros(2);

/// What recent waits of one handle needed: the spin budget the next wait uses (at most its
/// strategy's), adapted as the [module docs](self) describe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Learned {
    /// The learned spin budget in nanoseconds; `u32::MAX`: the strategy's whole budget.
    spin_ns: u32,
    /// Whether a `sched_yield` of the current wait gave the CPU away.
    switched: bool,
    /// Whether the current wait has parked (the budget is halved once per wait).
    has_parked: bool,
    /// Where the wakers of our side had got to (a ring position) at our last announcement:
    /// a park within `protocol::FENCED_ITEMS` of it enters fenced mode.
    last_park_at: Option<u64>,
    /// The side's fenced-checks counter at our last announcement: a handle in fenced mode
    /// stays in it while its wakers fenced at most `protocol::FENCED_CHECKS` times since.
    last_park_checks: u64,
    /// What the waits did so far.
    stats: WaitStats,
}

/// What a handle's waits did so far: how often an operation found nothing ready and waited,
/// how often those waits handed the CPU to the OS, and how many of them parked. For tuning a
/// [`WaitStrategy`] and checking the policy of the [module docs](self): on a busy stream
/// most waits end spinning; a wait that parks costs its peer a wake-up system call.
///
/// ```
/// use shmchan::{Options, spsc};
///
/// # fn main() -> shmchan::Result<()> {
/// # let name = format!("/shmchan-doc-wait-stats-{}", std::process::id());
/// let mut tx = spsc::Producer::create(&name, Options::new())?;
/// let mut rx = spsc::Consumer::open(&name, Options::new())?;
/// tx.send_blocking(b"ready")?;
/// rx.recv_blocking()?; // ready at once: no wait
/// assert_eq!(rx.wait_stats().waits, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitStats {
    /// Operations that found nothing ready (an empty ring, a full one) and waited.
    pub waits: u64,
    /// `sched_yield` calls made while waiting.
    pub os_yields: u64,
    /// Waits that parked (announced themselves and slept until woken).
    pub parks: u64,
    /// Announcements (a park may announce more than once) that paid a system-wide memory
    /// barrier (`membarrier`): the first of a run of frequent parks, and parks that come
    /// rarely. The others, in *fenced mode*, paid a plain fence (see the crate's Guarantees).
    pub barriers: u64,
}

impl Default for Learned {
    fn default() -> Self {
        Learned {
            spin_ns: u32::MAX,
            switched: false,
            has_parked: false,
            last_park_at: None,
            last_park_checks: 0,
            stats: WaitStats::default(),
        }
    }
}

#[cfg_attr(shmchan_loom, allow(dead_code))]
impl Learned {
    /// The spin budget of the next wait under `s`, given where the peer last waited: none
    /// when on our CPU; when on another, the whole spin + yield budget (a `sched_yield`
    /// there could only help a stranger, and parking sooner costs both sides a wake-up:
    /// two parked sides of a full-then-empty ring ran the demo's stream at 1.5-2.6 M msg/s);
    /// else the learned one.
    pub(crate) fn spin(&mut self, s: &WaitStrategy, peer: PeerCpu) -> Duration {
        self.stats.waits += 1;
        match peer {
            PeerCpu::Same => Duration::ZERO,
            PeerCpu::Other => s.yield_until,
            PeerCpu::Unknown => self.learned_spin(s),
        }
    }

    fn learned_spin(&self, s: &WaitStrategy) -> Duration {
        s.spin.min(Duration::from_nanos(u64::from(self.spin_ns)))
    }

    fn set(&mut self, s: &WaitStrategy, d: Duration) {
        self.spin_ns = if d >= s.spin {
            u32::MAX
        } else {
            d.as_nanos().min(u128::from(u32::MAX - 1)) as u32
        };
    }

    /// A wait begins (its first clock-free spin round found nothing).
    pub(crate) fn begin(&mut self) {
        self.switched = false;
        self.has_parked = false;
    }

    /// Hands the CPU to the OS once (`sched_yield`) and notes whether that let another task
    /// run; returns whether it did.
    pub(crate) fn os_yield(&mut self) -> bool {
        self.stats.os_yields += 1;
        let t = std::time::Instant::now();
        std::thread::yield_now();
        let switched = t.elapsed() > SWITCHED;
        self.switched |= switched;
        switched
    }

    /// A wait found its data while spinning.
    pub(crate) fn found_spinning(&mut self, s: &WaitStrategy) {
        let d = self.learned_spin(s);
        self.set(s, (d * 2).max(SPIN_STEP));
    }

    /// A wait found its data in the yield phase, `elapsed` after it began.
    pub(crate) fn found_yielding(&mut self, s: &WaitStrategy, elapsed: Duration) {
        if self.switched {
            // The peer ran on our CPU: spinning would only have delayed it.
            self.spin_ns = 0;
        } else if elapsed < s.spin {
            // Nobody else wanted our CPU and the data came within the full spin budget:
            // spinning would have met it without a system call.
            let d = self.learned_spin(s);
            self.set(s, (d * 2).max(elapsed * 2).max(SPIN_STEP));
        }
    }

    /// What the waits did so far.
    pub(crate) fn stats(&self) -> WaitStats {
        self.stats
    }

    /// Whether the current wait parked already (it yields no more).
    pub(crate) fn gave_up_yielding(&self) -> bool {
        self.has_parked
    }

    /// An announcement is about to be made with the wakers of our side at ring position
    /// `at` and the side's fenced-checks counter at `checks`; `holds`: whether we are in
    /// fenced mode. Whether the announcement is made in the mode: one in it stays while its
    /// wakers fenced for it at most `protocol::FENCED_CHECKS` times since our previous
    /// announcement (what the mode cost them, against the barrier a park pays); one out of
    /// it enters when the previous announcement was at most `protocol::FENCED_ITEMS`
    /// positions before. Never where this process's barriers fail, since the barrier of the
    /// park that enters the mode is what makes it safe.
    pub(crate) fn fenced_park(&mut self, at: u64, checks: u64, holds: bool) -> bool {
        let before = self.last_park_at.replace(at);
        let checks_before = std::mem::replace(&mut self.last_park_checks, checks);
        let want = if holds {
            checks.wrapping_sub(checks_before) <= protocol::FENCED_CHECKS
        } else {
            before.is_some_and(|b| at.wrapping_sub(b) <= protocol::FENCED_ITEMS)
        };
        #[cfg(not(shmchan_loom))]
        let want = want && !crate::sys::membarrier::parks_are_bounded();
        want
    }

    /// Whether the wakers of our side fenced for fenced mode more than
    /// `protocol::FENCED_CHECKS` times since our last announcement (`checks`: the side's
    /// counter now): a handle in the mode that does not park leaves it then.
    pub(crate) fn fenced_mode_costly(&self, checks: u64) -> bool {
        checks.wrapping_sub(self.last_park_checks) > protocol::FENCED_CHECKS
    }

    /// An announcement paid the barrier (`heavy`) or a plain fence.
    pub(crate) fn announced(&mut self, heavy: bool) {
        if heavy {
            self.stats.barriers += 1;
        }
    }

    /// A wait is about to park (counted once per wait).
    pub(crate) fn parked(&mut self, s: &WaitStrategy) {
        if !std::mem::replace(&mut self.has_parked, true) {
            self.stats.parks += 1;
            let d = self.learned_spin(s);
            self.set(s, d / 2);
        }
    }
}

/// How long a blocked operation spins, then yields, before it parks.
///
/// On the team's 2-vCPU VM a park/wake round trip through a futex costs 75-90 µs, against
/// ~0.4 µs for two spinning processes: a peer that answers within tens of microseconds is much
/// better met spinning. The defaults spin for up to 20 µs, then hand the CPU to the OS
/// (`sched_yield`, letting a peer that shares it run) between checks until 100 µs have
/// passed, then park; a wait whose single peer runs on another CPU spins for the whole
/// 100 µs instead (a `sched_yield` could not help that peer). The spin budget actually used adapts to what the handle's recent waits
/// needed (down to none while the peer shares our CPU; see the [module docs](self)). A throughput-oriented service on busy
/// cores may want less spinning ([`WaitStrategy::park_only`]); a latency-critical one on
/// dedicated cores more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStrategy {
    spin: Duration,
    yield_until: Duration,
}

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy {
            spin: Duration::from_micros(20),
            yield_until: Duration::from_micros(100),
        }
    }
}

impl WaitStrategy {
    /// The default: spin 20 µs, yield until 100 µs, then park.
    pub fn new() -> Self {
        Self::default()
    }

    /// Park at once, never spin or yield (lowest CPU use, highest wake latency).
    pub fn park_only() -> Self {
        WaitStrategy {
            spin: Duration::ZERO,
            yield_until: Duration::ZERO,
        }
    }

    /// How long to busy-spin (re-checking with a CPU pause hint) before yielding.
    ///
    /// Keep it well under a scheduler time slice (a few milliseconds) unless both peers have
    /// cores of their own: when they share one CPU, a spinning side holds it for the whole
    /// budget before the other can answer, so every hop costs the full budget.
    pub fn spin_for(mut self, d: Duration) -> Self {
        self.spin = d;
        self.yield_until = self.yield_until.max(d);
        self
    }

    /// Until when (from the start of the wait) to yield the CPU between checks before parking.
    /// At least the spin time.
    pub fn yield_until(mut self, d: Duration) -> Self {
        self.yield_until = d.max(self.spin);
        self
    }

    /// The spin budget.
    pub fn spin_duration(&self) -> Duration {
        self.spin
    }

    /// The spin + yield budget.
    pub fn yield_duration(&self) -> Duration {
        self.yield_until
    }
}
