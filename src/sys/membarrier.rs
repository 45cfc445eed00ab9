//! Asymmetric fences for the park/wake protocol: `membarrier(2)` with
//! `MEMBARRIER_CMD_GLOBAL_EXPEDITED`.
//!
//! The protocol (`wait/protocol.rs`) needs a full fence on both sides of a store-buffering
//! pattern: the waker between its publish and its look at the sleeper count, the waiter
//! between its announcement and its re-check. The waker's side runs on every publish and
//! every free, and there the fence (`lock or` on x86) waits for the store buffer to drain:
//! for the slot and index stores just made, whose cache lines the peer holds. `perf record`
//! of a `send().await` stream put 59% of the producer's samples on the instruction after that
//! fence (`write_commit_at`, 64 B messages, 2026-12-02).
//!
//! So the waker's fence is only a compiler fence, and the waiter, which is about to sleep
//! anyway, pays for both: after its own fence it asks the kernel for a memory barrier on
//! every CPU that runs a thread of a registered process (`MEMBARRIER_CMD_GLOBAL_EXPEDITED`,
//! an IPI to those CPUs; a CPU running something else has passed a context switch, which is
//! a full barrier, since any such thread last ran). membarrier(2) documents exactly this
//! use: it turns the other threads' compiler barriers into memory barriers with respect to
//! the caller. Either the waker's look at the count comes after the barrier the IPI forced on
//! its CPU (and sees the announcement, which our fence made visible before the IPI), or its
//! publish was visible before that barrier (and our re-check sees it). Liburcu and Folly's
//! `asymmetricHeavyBarrier` pair their fences the same way (within one process).
//!
//! Who may use the light side: a process whose registration
//! (`MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`) succeeded, made before its first light fence.
//! A registration racing with a waiter's barrier is still safe: the kernel's barrier makes a
//! full fence before it looks at which CPUs to interrupt, so a waker registered too late to
//! be interrupted looks at the count after the waiter's announcement was visible. A process
//! that cannot register (an old kernel, a seccomp filter) uses full fences as a waker. A
//! waiter whose barrier call fails cannot tell whether its wakers use light fences, so its
//! parks are bounded by [`POLL`] (a lost wake-up costs at most that long, never a hang).
//! A waiter that parks often (within `wait::protocol::FENCED_ITEMS` items of its last park)
//! enters *fenced mode* instead: it pays this barrier once, after adding itself to a count
//! that every light waker reads after its compiler fence, and from then on its parks make a
//! plain fence and its wakers a full one, counted, until they made `FENCED_CHECKS` of them
//! between two of its parks (the argument is in `wait/protocol.rs`).
//! `SHMCHAN_MEMBARRIER=0` in a process's environment makes it use no membarrier at all
//! (full fences as a waker, bounded parks as a waiter): for a process that must not cause
//! IPIs on other CPUs (isolated real-time cores), at the price of a 1 ms poll while parked.

use std::sync::atomic::{AtomicU8, Ordering, compiler_fence, fence};
use std::time::Duration;

use rustix::thread::{MembarrierCommand, membarrier, membarrier_query};

/// Not decided yet.
const UNKNOWN: u8 = 0;
/// Registered: light waker fences, heavy waiter barriers.
const LIGHT: u8 = 1;
/// Full fences on the waker side; the waiter still tries the barrier (its wakers may be light).
const FULL: u8 = 2;

/// This process's waker fence mode.
static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);
/// Set once a waiter's barrier call failed: parks are bounded by [`POLL`] from then on.
static BARRIER_FAILED: AtomicU8 = AtomicU8::new(0);

/// The longest a park lasts in a process whose barrier call failed.
pub(crate) const POLL: Duration = Duration::from_millis(1);

/// Decides this process's mode (once): registers for global expedited barriers unless
/// `SHMCHAN_MEMBARRIER=0` says not to.
#[cold]
fn decide() -> u8 {
    let wanted = std::env::var_os("SHMCHAN_MEMBARRIER").is_none_or(|v| v != "0");
    let ok = wanted
        && membarrier_query().contains_command(MembarrierCommand::GlobalExpedited)
        && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok();
    if !wanted {
        // No membarrier at all, also as a waiter (e.g. to keep its IPIs off isolated CPUs):
        // parks are bounded instead.
        // Relaxed: a sticky, process-local flag.
        BARRIER_FAILED.store(1, Ordering::Relaxed);
    }
    let mode = if ok { LIGHT } else { FULL };
    // Relaxed: every thread that races here computes the same answer; the registration
    // itself is done (or failed) before any thread stores LIGHT.
    MODE.store(mode, Ordering::Relaxed);
    mode
}

/// Whether this process's wakers use light fences (it registered); decides on first use.
#[inline]
pub(crate) fn light() -> bool {
    // Relaxed: see `decide`.
    match MODE.load(Ordering::Relaxed) {
        UNKNOWN => decide() == LIGHT,
        m => m == LIGHT,
    }
}

/// The waker's fence, between the store that made work (or a close) visible and the loads of
/// the sleeper count and parked words. `fenced`: whether a waiter of the side is in fenced
/// mode (it parks with a plain fence: `wait/protocol.rs`), read after the compiler fence.
/// Returns whether the full fence was made *for* such a waiter (a light waker that saw the
/// mode), which the caller counts as what the mode cost it.
#[inline(always)]
pub(crate) fn waker_fence(fenced: impl FnOnce() -> bool) -> bool {
    if light() {
        // Compiler fence only: the waiter's `waiter_barrier` makes it a full one for us.
        compiler_fence(Ordering::SeqCst);
        if fenced() {
            fence(Ordering::SeqCst);
            return true;
        }
        false
    } else {
        fence(Ordering::SeqCst);
        false
    }
}

/// The waiter's barrier, after its announcement and before its re-check: a full fence here
/// and on every CPU running a registered process. Returns whether the kernel did it (when
/// not, park no longer than [`POLL`]).
pub(crate) fn waiter_barrier() -> bool {
    fence(Ordering::SeqCst);
    // Decided first: `SHMCHAN_MEMBARRIER=0` turns the barrier off too.
    light();
    // Relaxed: a sticky, process-local flag.
    if BARRIER_FAILED.load(Ordering::Relaxed) != 0 {
        return false;
    }
    match membarrier(MembarrierCommand::GlobalExpedited) {
        Ok(()) => true,
        Err(_) => {
            BARRIER_FAILED.store(1, Ordering::Relaxed);
            false
        }
    }
}

/// How long a park may last at most, given `want`: `want`, or [`POLL`] if this process's
/// barrier calls fail.
pub(crate) fn bound_park(want: Duration) -> Duration {
    if parks_are_bounded() {
        want.min(POLL)
    } else {
        want
    }
}

/// Whether parks are bounded by [`POLL`] in this process.
pub(crate) fn parks_are_bounded() -> bool {
    light();
    // Relaxed: as in `waiter_barrier`.
    BARRIER_FAILED.load(Ordering::Relaxed) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_uses_light_waker_fences_and_working_barriers() {
        if std::env::var_os("SHMCHAN_MEMBARRIER").is_some_and(|v| v == "0") {
            assert!(!light());
            assert!(!waiter_barrier());
            assert!(parks_are_bounded());
            return;
        }
        if !membarrier_query().contains_command(MembarrierCommand::GlobalExpedited) {
            eprintln!("skipped: this kernel has no MEMBARRIER_CMD_GLOBAL_EXPEDITED");
            return;
        }
        assert!(light(), "registration failed where the command is offered");
        assert!(waiter_barrier());
        assert!(!parks_are_bounded());
        assert_eq!(bound_park(Duration::from_secs(1)), Duration::from_secs(1));
    }
}
