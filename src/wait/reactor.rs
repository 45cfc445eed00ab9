//! The wait of futures, `Sink`s and `Stream`s: spin inside `poll`, yield to the executor, then
//! park on a doorbell registered in the runtime's reactor, with the peers' pidfds registered
//! beside it so that a death wakes the task at once.
//!
//! A pending operation first spins for its learned spin budget (at most the
//! [`WaitStrategy`]'s): inside `poll` for one round of checks, then a round per poll, waking
//! itself in between so that the runtime's other tasks and the other futures of a `join!`
//! run (under tokio's multi_thread runtime, where a self-wake costs a futex wake of another
//! worker, with a deferred wake as `tokio::task::yield_now` makes). Then, until the yield
//! budget is spent, it lets the executor run once (current_thread runtimes only), and from
//! then on hands the CPU to the OS once per poll (`sched_yield`:
//! a peer sharing our CPU runs) and yields to the executor (a deferred wake, as
//! `tokio::task::yield_now`); then it *parks*: it publishes its
//! doorbell token in its participant record, announces itself (`protocol.rs`), re-checks, and
//! returns `Pending` with the doorbell and the other participants' pidfds registered in the
//! reactor. A peer that publishes rings the doorbell (one `sendto`, only because we
//! announced); a peer that dies makes its pidfd readable. No timer and no thread is involved.
//!
//! May call `protocol`, `blocking` (the [`Park`] trait), `runtime` and `sys`.

#[cfg(feature = "tokio")]
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use super::SPIN_ROUND;
use super::blocking::Park;
use super::protocol::{PARK_DOORBELL, PARK_DOORBELL_EVENT};
use crate::error::{Error, Result};
use crate::runtime::Registered;
use crate::sys::doorbell::Doorbell;
use crate::sys::process::ProcessId;
use crate::sys::timer::Timer;

/// Spin rounds (of `SPIN_ROUND` checks each, ~1-2 µs) an async wait spends inside one `poll`
/// before it lets the executor run something else.
const INLINE_SPIN_ROUNDS: u32 = 1;

/// A handle's async wait machinery, made on its first park.
#[derive(Debug)]
struct Machinery {
    bell: Doorbell,
    reg: Registered,
    /// Pidfds of the participants whose death concerns us.
    watches: Vec<(ProcessId, Registered)>,
    /// Every participant the last registration looked at (watched, gone, or unwatchable).
    seen: Vec<ProcessId>,
    /// Armed while some live participant could not be watched (its `pidfd_open` failed): a
    /// timer that makes the parked task re-check liveness every interval, so that a death
    /// is still seen in bounded time. Made on first need.
    fallback: Option<(Timer, Registered)>,
    /// Whether the fallback timer must re-check: the last park left a participant unwatched,
    /// or this process's membarrier calls fail (`sys/membarrier.rs`).
    unwatched: bool,
}

/// Handles of this process that have waited asynchronously (counted from their first async
/// wait until they are dropped). Under tokio's multi_thread runtime a wait gives the executor
/// a turn before its `sched_yield` only while there are more than [`TURN_HANDLES`]
/// (`poll_wait`).
static REACTOR_HANDLES: AtomicUsize = AtomicUsize::new(0);

/// See [`REACTOR_HANDLES`]: a service with one peer (one endpoint's two rings, its requests
/// and its replies) takes no turn.
const TURN_HANDLES: usize = 2;

/// A unit of [`REACTOR_HANDLES`], taken off when dropped.
#[derive(Debug)]
struct Counted;

impl Counted {
    fn new() -> Counted {
        // Relaxed (both): a hint for the wait policy, ordered with nothing.
        REACTOR_HANDLES.fetch_add(1, Ordering::Relaxed);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        REACTOR_HANDLES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The async wait state of one handle.
#[derive(Debug, Default)]
pub(crate) struct AsyncState {
    machinery: Option<Machinery>,
    /// Whether an async announcement may be standing in our record.
    parked: bool,
    /// The spin budget of the current wait (chosen when it began).
    spin: std::time::Duration,
    /// Whether the current wait let the executor run its other tasks before its first
    /// `sched_yield`.
    turned: bool,
    /// Ready operations left before the next takes a unit of tokio's coop budget
    /// ([`COOP_EVERY`]).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    coop_free: u8,
    /// Our unit of [`REACTOR_HANDLES`], taken at our first async wait.
    counted: Option<Counted>,
}

/// Operations per unit of tokio's coop budget. A channel operation costs 10-30 ns, a tenth
/// of what tokio's own resources (sockets, timers) charge one unit for: at one unit per
/// operation an always-ready stream gave its task back every 128 messages (2-4 µs), and each
/// of those yields cost the runtime an `epoll_wait` (about one per 128 messages, most of the
/// demo's system calls). At one per 8 a stream yields every 1,024 messages, some 20-40 µs,
/// still well inside the 50 µs a neighbour task may wait (`tests/coop.rs`).
#[cfg(feature = "tokio")]
const COOP_EVERY: u8 = 8;

/// What a handle adds to [`Park`] for async waits.
pub(crate) trait AsyncPark: Park {
    /// The handle's async wait state.
    fn async_state(&mut self) -> &mut AsyncState;
    /// The record word where peers read our doorbell token.
    fn token_word(&self) -> Result<&AtomicU64>;
    /// Calls `f` for every participant process whose death must wake a parked task of ours.
    fn for_each_watched(&self, f: &mut dyn FnMut(ProcessId));
    /// Makes the next liveness check and repair look run at once (a watched process exited).
    fn force_checks(&mut self);
    /// Rings one other waiter of our own side (fenced, as every wake path): a wake we were
    /// given and will not use (`protocol.rs`, "wake one per item").
    fn pass_on(&self);
    /// Whether work of our side may remain after an attempt of ours succeeded (messages
    /// queued, for a consumer; free slots, for a producer): a conservative snapshot.
    fn more_work(&self) -> bool;
}

/// What a parked task waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    /// Work: a message (consumers) or a free slot (producers). Rung one waiter per item.
    Work,
    /// An event only (the other side closed or died: `closed()`): parks at once, without
    /// spinning, and is rung only by close / death wakes, never by a publish or a free.
    Events,
}

/// Withdraws a standing async announcement (protocol step 5), if any, when the operation
/// ends without taking an item through this wait: the future was dropped while parked, or it
/// completed by its own re-check. If a waker took the announcement (rang us), that wake was
/// meant for an item we do not take: it is passed on to another waiter of our side, so that
/// wake-one loses nothing.
pub(crate) fn retract<P: AsyncPark>(p: &mut P) {
    if retract_quiet(p) {
        p.pass_on();
    }
}

/// Withdraws a standing announcement before the next attempt: whether a waker had taken it
/// (the attempt that follows uses that wake).
fn retract_quiet<P: AsyncPark>(p: &mut P) -> bool {
    if std::mem::take(&mut p.async_state().parked) {
        // Polled again after parking: we may run on another CPU than the one published.
        p.moved(super::this_cpu());
        let (sl, parked) = p.parking();
        let rung = sl.retract(parked);
        if rung {
            p.used_wake();
        }
        rung
    } else {
        false
    }
}

/// Whether a participant whose death concerns us is in the table but was not looked at by the
/// last [`ensure_machinery`].
fn joined_unseen<P: AsyncPark>(p: &mut P) -> bool {
    let seen = match p.async_state().machinery.as_mut() {
        Some(m) => std::mem::take(&mut m.seen),
        None => return false,
    };
    let mut unseen = false;
    p.for_each_watched(&mut |id| unseen |= id.pid != 0 && !seen.contains(&id));
    if let Some(m) = p.async_state().machinery.as_mut() {
        m.seen = seen;
    }
    unseen
}

/// Makes the doorbell on first use and registers pidfds of participants that joined since the
/// last park.
fn ensure_machinery<P: AsyncPark>(p: &mut P) -> Result<()> {
    if p.async_state().machinery.is_none() {
        let bell = Doorbell::bind()
            .map_err(|e| Error::from_errno(e, || "binding a doorbell socket".into()))?;
        let fd = bell
            .try_clone_fd()
            .map_err(|e| Error::from_errno(e, || "duplicating the doorbell".into()))?;
        let reg = Registered::new(fd)?;
        // Release: pairs with the waker's Acquire load of the token (protocol.rs).
        p.token_word()?.store(bell.token(), Ordering::Release);
        p.async_state().machinery = Some(Machinery {
            bell,
            reg,
            watches: Vec::new(),
            seen: Vec::new(),
            fallback: None,
            unwatched: false,
        });
    }
    let mut joined = Vec::new();
    p.for_each_watched(&mut |id| {
        if id.pid != 0 {
            joined.push(id);
        }
    });
    let interval = p.liveness_interval();
    let mut gone = false;
    let m = p.async_state().machinery.as_mut().expect("made above");
    m.unwatched = false;
    m.seen.clone_from(&joined);
    for id in joined {
        if m.watches.iter().any(|(w, _)| *w == id) {
            continue;
        }
        match id.pidfd() {
            Ok(Some(fd)) => m.watches.push((id, Registered::new(fd)?)),
            // Already gone: let the liveness check see it now.
            Ok(None) => gone = true,
            // Cannot be watched (retried at the next park): re-check on a timer meanwhile.
            Err(_) => m.unwatched = true,
        }
    }
    // Where this process's membarrier calls fail, a wake-up can be missed: re-check on the
    // same timer, every `membarrier::POLL` (`sys/membarrier.rs`).
    let bounded = crate::sys::membarrier::parks_are_bounded();
    if m.unwatched || bounded {
        m.unwatched = true;
        if m.fallback.is_none() {
            let no_timer = |e| {
                Error::from_errno(e, || {
                    "a peer's pidfd could not be opened and no fallback timer could be made \
                     for the liveness check (out of file descriptors?)"
                        .into()
                })
            };
            let timer = Timer::new().map_err(no_timer)?;
            let reg = Registered::new(timer.try_clone_fd().map_err(no_timer)?)?;
            m.fallback = Some((timer, reg));
        }
        let (timer, _) = m.fallback.as_ref().expect("made above");
        timer.drain();
        timer
            .arm(crate::sys::membarrier::bound_park(interval))
            .map_err(|e| Error::from_errno(e, || "arming the fallback liveness timer".into()))?;
    }
    if gone {
        p.force_checks();
    }
    Ok(())
}

/// Whether a task that wakes itself inside `poll` is simply queued again behind the runtime's
/// other tasks, with no system call: so under tokio's current_thread runtime, and async-io's
/// executors. Under tokio's multi_thread runtime a task woken while it runs is rescheduled as
/// a yield, which unparks an idle worker thread (a futex wake) that then steals it: there a
/// spin round ends with a deferred wake (`yield_now`), and the wait gives no turn before its
/// `sched_yield`. (Spinning the whole budget inside `poll` there held a worker from the
/// other clients' tasks: a multi_thread endpoint server with 4 clients ran at 3.4-4.0x
/// `UnixStream` that way, 5.4-5.7x with the rounds, unpinned.)
fn cheap_self_wake() -> bool {
    #[cfg(feature = "tokio")]
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        return h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread;
    }
    true
}

/// Yields to the executor the way `tokio::task::yield_now` does: under tokio the wake is
/// deferred until the runtime has polled its driver (timers and I/O of other tasks run first);
/// elsewhere the task wakes itself.
fn yield_to_executor(cx: &mut Context<'_>) {
    #[cfg(feature = "tokio")]
    {
        let mut y = std::pin::pin!(tokio::task::yield_now());
        // A fresh `yield_now` registers the (deferred) wake and is pending on its first poll.
        let _ = y.as_mut().poll(cx);
    }
    #[cfg(not(feature = "tokio"))]
    cx.waker().wake_by_ref();
}

/// The async wait behind every future, stream and sink: `attempt` is tried, then spun on
/// inline, then the task hands the CPU to the OS and yields to the executor within the
/// budget, then it parks in the reactor (the policy in the [module docs](super)).
/// `started` is the caller's wait start (kept across polls; reset when done).
///
/// Under tokio every [`COOP_EVERY`]th call first takes a unit of the task's coop budget
/// (`tokio::task::coop::poll_proceed`), consumed when the call is ready: an always-ready
/// stream yields to other tasks once the budget is spent, as tokio's own channels do.
pub(crate) fn poll_op<P: AsyncPark, R>(
    p: &mut P,
    cx: &mut Context<'_>,
    started: &mut Option<Instant>,
    attempt: impl FnMut(&mut P) -> Result<Option<R>>,
) -> Poll<Result<R>> {
    poll_op_for(p, cx, started, Interest::Work, attempt)
}

/// [`poll_op`] for what `interest` says the task waits for.
pub(crate) fn poll_op_for<P: AsyncPark, R>(
    p: &mut P,
    cx: &mut Context<'_>,
    started: &mut Option<Instant>,
    interest: Interest,
    attempt: impl FnMut(&mut P) -> Result<Option<R>>,
) -> Poll<Result<R>> {
    #[cfg(feature = "tokio")]
    let coop = if p.async_state().coop_free == 0 {
        Some(std::task::ready!(tokio::task::coop::poll_proceed(cx)))
    } else {
        None
    };
    let r = poll_wait(p, cx, started, interest, attempt);
    #[cfg(feature = "tokio")]
    if r.is_ready() {
        let st = p.async_state();
        match coop {
            Some(c) => {
                c.made_progress();
                st.coop_free = COOP_EVERY - 1;
            }
            None => st.coop_free -= 1,
        }
    }
    r
}

fn poll_wait<P: AsyncPark, R>(
    p: &mut P,
    cx: &mut Context<'_>,
    started: &mut Option<Instant>,
    interest: Interest,
    mut attempt: impl FnMut(&mut P) -> Result<Option<R>>,
) -> Poll<Result<R>> {
    let mode = match interest {
        Interest::Work => PARK_DOORBELL,
        Interest::Events => PARK_DOORBELL_EVENT,
    };
    // Copied once the first attempt found nothing: most calls are ready at once.
    let mut strategy = None;
    loop {
        // A wake we were given is used by this attempt (an event waiter's never concerns
        // work, so it has none to pass on).
        let rung = retract_quiet(p);
        match attempt(p) {
            Ok(None) => {}
            done => {
                // **Chain.** A producer rings one waiter for a batch it flushed (`feed` on
                // MPMC defers its wakes to the flush). The waiter rung for it took its share:
                // if work remains, it rings the next waiter of its side, so a batch reaches
                // as many parked workers as it needs, one wake per worker that finds work, and
                // none for a worker that would find nothing. What remains is visible to us: it
                // was published before the producer's fenced ring that woke us.
                if rung && done.is_ok() && p.more_work() {
                    p.pass_on();
                }
                *started = None;
                return Poll::Ready(done.map(|r| r.expect("matched Some")));
            }
        }
        let strategy = *strategy.get_or_insert_with(|| p.strategy());
        let t0 = match *started {
            Some(t) => t,
            None if interest == Interest::Events => *started.insert(Instant::now()),
            None => {
                let peer = p.meet_peer(super::this_cpu());
                let spin = p.learned().spin(&strategy, peer);
                p.async_state().spin = spin;
                // A new wait: its first spin round reads no clock.
                if !spin.is_zero() {
                    for _ in 0..SPIN_ROUND {
                        std::hint::spin_loop();
                        match attempt(p) {
                            Ok(None) => {}
                            done => {
                                p.learned().found_spinning(&strategy);
                                return Poll::Ready(done.map(|r| r.expect("matched Some")));
                            }
                        }
                    }
                }
                p.learned().begin();
                let st = p.async_state();
                st.turned = false;
                if st.counted.is_none() {
                    st.counted = Some(Counted::new());
                }
                *started.insert(Instant::now())
            }
        };
        let spin = match interest {
            Interest::Work => p.async_state().spin,
            Interest::Events => std::time::Duration::ZERO,
        };
        // Spin phase, inline for at most `INLINE_SPIN_ROUNDS` rounds per poll: a peer that
        // answers that soon is met without a trip through the executor. The rest of the spin
        // budget is spun through the executor (the task wakes itself and returns `Pending`),
        // so that other tasks of the runtime, or other futures of the same `join!`/`select!`,
        // run between rounds: one of them may be what the peer waits for (a coordinator's
        // feeding task beside its collecting one), and an inline spin would hold it back for
        // the whole budget. The clock is read once a round.
        let mut rounds = 0;
        loop {
            if t0.elapsed() >= spin {
                break;
            }
            if rounds == INLINE_SPIN_ROUNDS {
                if cheap_self_wake() {
                    cx.waker().wake_by_ref();
                } else {
                    yield_to_executor(cx);
                }
                return Poll::Pending;
            }
            rounds += 1;
            for _ in 0..SPIN_ROUND {
                std::hint::spin_loop();
                match attempt(p) {
                    Ok(None) => {}
                    done => {
                        p.learned().found_spinning(&strategy);
                        *started = None;
                        return Poll::Ready(done.map(|r| r.expect("matched Some")));
                    }
                }
            }
        }
        // Yield phase: hand the CPU to the OS once (a peer sharing it runs), look again, then
        // let the executor run other tasks before the next look. A wait whose peer runs on
        // another CPU never gets here: its spin budget is the whole yield budget
        // (`Learned::spin`), since a `sched_yield` could only help a stranger.
        let elapsed = t0.elapsed();
        if interest == Interest::Work
            && elapsed < strategy.yield_duration()
            && !p.learned().gave_up_yielding()
        {
            // The executor first: before this wait hands the CPU to another process, the
            // runtime's other tasks (and the other futures of a `join!`) run once, since one
            // of them may be what our peer waits for. Without this turn a coordinator whose
            // collecting task found nothing gave its CPU to a worker while its own feeding
            // task had the jobs that worker needed (`cargo bench --bench worker_pool`, one
            // CPU). Under tokio's multi_thread runtime the turn is a deferred wake (a
            // self-wake there unparks the other worker), taken only while this process has
            // more than `TURN_HANDLES` handles that wait: with one, the turn only cost an
            // endpoint server with 1 client half its requests/s on one CPU and beside a
            // burner (`BENCH_RUNTIME=multi cargo bench --bench endpoint`: 1.3-1.4x
            // `UnixStream` with the turn, 2.9-3.1x without); with several, a task whose
            // wait handed the CPU away held back the ready tasks queued behind it on its
            // worker, and some requests waited milliseconds (4 clients on one CPU: p99.9
            // 4.6-5.8 ms without the turn, 0.19-0.22 ms with it; 16 clients: 16-29 ms
            // against 0.75-0.95 ms; unpinned 8.4-8.6 ms against 0.8-2.0 ms, at 2.4x the
            // requests/s; `a_wait_of_several_gives_the_executor_a_turn_under_multi_thread`).
            if !std::mem::replace(&mut p.async_state().turned, true) {
                if cheap_self_wake() {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                // Relaxed: a hint (see `REACTOR_HANDLES`).
                if REACTOR_HANDLES.load(Ordering::Relaxed) > TURN_HANDLES {
                    yield_to_executor(cx);
                    return Poll::Pending;
                }
            }
            let switched = p.learned().os_yield();
            if switched {
                p.moved(super::this_cpu());
            }
            match attempt(p) {
                Ok(None) => {}
                done => {
                    p.learned().found_yielding(&strategy, elapsed);
                    *started = None;
                    return Poll::Ready(done.map(|r| r.expect("matched Some")));
                }
            }
            // Another task ran and our peer did not answer: park rather than yield to it
            // again (below); otherwise look again after the executor's other tasks.
            if !switched {
                yield_to_executor(cx);
                return Poll::Pending;
            }
        }
        if interest == Interest::Work {
            p.learned().parked(&strategy);
        }
        if let Err(e) = ensure_machinery(p) {
            *started = None;
            return Poll::Ready(Err(e));
        }
        super::blocking::announce(p, mode);
        p.async_state().parked = true;
        // A participant that joined after our registration looked at the table, and before
        // our announcement, may have rung nobody (its join wake, `Core::count_in`, missed
        // us); after our announcement's fence we see its record: register it and look again.
        if joined_unseen(p) {
            retract(p);
            continue;
        }
        // Re-check after announcing (protocol step 3). Done by the re-check: a wake taken
        // meanwhile was for another item, so `retract` passes it on.
        match attempt(p) {
            Ok(None) => {}
            done => {
                retract(p);
                *started = None;
                return Poll::Ready(done.map(|r| r.expect("matched Some")));
            }
        }
        let m = p
            .async_state()
            .machinery
            .as_mut()
            .expect("made by ensure_machinery");
        match m.reg.poll_readable(cx) {
            Poll::Ready(Ok(())) => {
                m.bell.drain();
                continue;
            }
            Poll::Ready(Err(e)) => {
                retract(p);
                *started = None;
                return Poll::Ready(Err(Error::Io(e)));
            }
            Poll::Pending => {}
        }
        let before = m.watches.len();
        m.watches
            .retain(|(_, reg)| reg.poll_readable(cx).is_pending());
        let mut recheck = m.watches.len() != before; // a participant exited
        if m.unwatched {
            if let Some((timer, reg)) = &m.fallback {
                if reg.poll_readable(cx).is_ready() {
                    timer.drain();
                    recheck = true; // the fallback interval passed
                }
            }
        }
        if recheck {
            // Look at the table now.
            p.force_checks();
            continue;
        }
        return Poll::Pending;
    }
}
