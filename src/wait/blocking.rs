//! The wait loop of blocking and timed calls (`send_blocking`, `recv_timeout`, ...): spin,
//! then hand the CPU to the OS, then park on the side's futex word, per the [`WaitStrategy`]
//! and the handle's `Learned` budget, with a liveness check after every park.
//!
//! It knows nothing of rings or channels: the caller supplies the attempt (claim a slot, take
//! a message) and implements [`Park`] for its handle. May call `protocol` and `sys` only.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::protocol::{PARK_FUTEX, Sleepers};
use super::{Learned, PeerCpu, SPIN_ROUND, WaitStrategy, this_cpu};
use crate::error::Result;

/// What a handle gives the wait loops: its budget, its parked word and side, and the check
/// that runs after every park.
pub(crate) trait Park {
    /// The spin / yield / park budget.
    fn strategy(&self) -> WaitStrategy;
    /// What the handle's recent waits needed (the adaptive spin budget).
    fn learned(&mut self) -> &mut Learned;
    /// Publishes `cpu` (see `this_cpu`) as where this handle waits, and says where its peer
    /// last waited.
    fn meet_peer(&mut self, cpu: u64) -> PeerCpu;
    /// Publishes `cpu` as where this handle runs now: after a park or a `sched_yield` that
    /// gave the CPU away, since the scheduler may have moved us (a woken task often lands
    /// on its waker's CPU), and a peer that judged by the old word would spin on a CPU
    /// it shares with us.
    fn moved(&mut self, cpu: u64);
    /// The longest a park lasts before the liveness check runs.
    fn liveness_interval(&self) -> Duration;
    /// The waiting side's sleepers and this handle's parked word.
    fn parking(&self) -> (Sleepers<'_>, &AtomicU64);
    /// After a park: look for dead peers (may report `PeerGone` or `Corrupt`), and let the
    /// next attempt run its clock-gated checks (repair, adoption) at once.
    fn after_park(&mut self) -> Result<()>;
    /// This handle's own futex word (`protocol::AUX_FUTEX`), which a waker that takes its
    /// announcement bumps and wakes: one thread per item, not the whole side.
    fn futex_word(&self) -> &AtomicU32;
    /// Rings one other waiter of our side: a wake we were given is passed on (we leave
    /// without the item it was for, or work remains after ours).
    fn pass_on_wake(&self);
    /// Whether work of our side may remain after an attempt of ours succeeded.
    fn work_remains(&self) -> bool;
    /// A waker took our announcement and we run again, before the attempt that uses the
    /// wake: count it as used (`protocol::note_woken`), for a waker deciding whether to ring
    /// another waiter of our side.
    fn used_wake(&self) {}
    /// For fenced mode (`protocol.rs`): where the wakers of our side are, and our record's
    /// `AUX_FENCED` word. `None`: this handle always pays the barrier when it parks.
    fn fenced_mode(&self) -> Option<FencedMode<'_>> {
        None
    }
}

/// What a park needs to decide on fenced mode (`protocol.rs`, `Learned::fenced_park`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FencedMode<'a> {
    /// The ring position the wakers of our side advance (the tail, for a consumer; the head,
    /// for a producer).
    pub(crate) at: u64,
    /// The side's fenced-checks counter (`ring::OFF_CONS_FENCED_CHECKS`), now.
    pub(crate) checks: u64,
    /// Our record's `AUX_FENCED` word.
    pub(crate) word: &'a AtomicU64,
}

/// Protocol step 2 for the handle `p`: announces `mode` in its parked word, in fenced mode if
/// its parks come often (`Learned::fenced_park`), and counts the barrier if it paid one.
pub(crate) fn announce<P: Park + ?Sized>(p: &mut P, mode: u64) {
    // Relaxed: our own record's word (only we set it; a releaser of our record runs after
    // our death).
    let seen = p
        .fenced_mode()
        .map(|f| (f.at, f.checks, f.word.load(Ordering::Relaxed) != 0));
    let want = match seen {
        Some((at, checks, holds)) => p.learned().fenced_park(at, checks, holds),
        None => false,
    };
    let heavy = {
        let (sl, parked) = p.parking();
        let mine = p.fenced_mode().map(|f| (f.word, want));
        sl.announce_as(parked, mode, mine)
    };
    p.learned().announced(heavy);
}

/// Tries `attempt` until it gives a value, waiting per the handle's strategy and what its
/// recent waits needed (the policy in the [module docs](super)) in between, or until
/// `deadline` passes (`Ok(None)`).
pub(crate) fn block<P: Park, R>(
    p: &mut P,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(&mut P) -> Result<Option<R>>,
) -> Result<Option<R>> {
    let strategy = p.strategy();
    if let Some(r) = attempt(p)? {
        return Ok(Some(r));
    }
    let peer = p.meet_peer(this_cpu());
    let spin = p.learned().spin(&strategy, peer);
    // Spin phase, its first round clock-free.
    if !spin.is_zero() && deadline.is_none() {
        for _ in 0..SPIN_ROUND {
            std::hint::spin_loop();
            if let Some(r) = attempt(p)? {
                p.learned().found_spinning(&strategy);
                return Ok(Some(r));
            }
        }
    }
    let start = Instant::now();
    p.learned().begin();
    let past = |now: Instant| deadline.is_some_and(|d| now >= d);
    loop {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(start);
        if past(now) || elapsed >= spin {
            break;
        }
        for _ in 0..SPIN_ROUND {
            std::hint::spin_loop();
            if let Some(r) = attempt(p)? {
                p.learned().found_spinning(&strategy);
                return Ok(Some(r));
            }
        }
    }
    // Yield phase: hand the CPU to the OS between checks. A wait whose peer runs on another
    // CPU never gets here: its spin budget is the whole yield budget (`Learned::spin`).
    loop {
        let now = Instant::now();
        if past(now) {
            return Ok(None);
        }
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= strategy.yield_duration() {
            break;
        }
        let switched = p.learned().os_yield();
        if switched {
            p.moved(this_cpu());
        }
        if let Some(r) = attempt(p)? {
            p.learned().found_yielding(&strategy, elapsed);
            return Ok(Some(r));
        }
        if switched {
            // Another task ran and our peer did not answer: park rather than yield to it
            // again.
            break;
        }
    }
    // Park phase.
    p.learned().parked(&strategy);
    // Whether a waker took our last announcement (rang us) and no attempt has run since: the
    // item it rang us for may still be there, and must not be left with nobody rung for it.
    let mut rung = false;
    loop {
        // Bounded only where this process's membarrier calls fail (`sys/membarrier.rs`).
        let mut timeout = crate::sys::membarrier::bound_park(p.liveness_interval());
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if rung {
                    p.pass_on_wake();
                }
                return Ok(None);
            }
            timeout = timeout.min(left);
        }
        // Acquire: pairs with the waker's Release bump in `WaitSet::ring_parked`. Read before
        // announcing, so that a bump after the announcement makes the sleep return at once.
        let seq = p.futex_word().load(Ordering::Acquire);
        announce(p, PARK_FUTEX);
        // Re-check after announcing (protocol step 3).
        let r = attempt(p);
        if !matches!(r, Ok(None)) {
            let (sl, parked) = p.parking();
            // A waker that took this announcement rang us for an item we may not have taken:
            // pass it on. A wake of before, used now: if work remains, ring the next waiter
            // (the chain; a batch flushed to MPMC consumers rings one).
            let taken = sl.retract(parked);
            if taken {
                p.used_wake();
            }
            if taken || (rung && matches!(r, Ok(Some(_))) && p.work_remains()) {
                p.pass_on_wake();
            }
            return r;
        }
        crate::sys::futex::wait(p.futex_word(), seq, Some(timeout));
        rung = {
            let (sl, parked) = p.parking();
            sl.retract(parked)
        };
        if rung {
            p.used_wake();
        }
        p.moved(this_cpu());
        if let Err(e) = p.after_park() {
            if rung {
                p.pass_on_wake();
            }
            return Err(e);
        }
    }
}
