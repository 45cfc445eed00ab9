//! The park/wake protocol: how a waiter announces that it sleeps, and how a waker finds and
//! wakes it, with no system call while nobody sleeps.
//!
//! Each ring side that can wait (consumers for data, producers for space) has a futex word
//! and a count of parked parties in the ring's control block; each party has a *parked* word
//! in its participant record (0, or how to wake it: futex or doorbell).
//!
//! Waiter (after finding nothing to do):
//! 1. `seq = futex.load()` (futex waiters only);
//! 2. `count += 1`, then `parked = mode` (SeqCst), then a SeqCst fence;
//! 3. re-check the ring; if there is work, retract and go;
//! 4. sleep: `futex_wait(futex, seq, timeout)`, or `Pending` until the doorbell rings;
//! 5. retract: `if parked.swap(0) != 0 { count -= 1 }`.
//!
//! Waker (after the release store that made work visible):
//! 1. a SeqCst fence; if `count == 0`, done: no syscall;
//! 2. for each record of the waiting side: `if parked.swap(0) != 0 { count -= 1; ring it }`.
//!
//! The two fences forbid the store-buffering outcome in which the waiter's re-check misses the
//! work *and* the waker's load misses the parked word; so either the waiter sees the work or
//! the waker rings it (`loom_models::loom_park_wake_no_lost_wakeup`). Each announcement is
//! taken exactly once, by the waker (who rings) or by the waiter (who retracts), so the count
//! stays exact; a waiter killed while parked costs one ring, after which its word is clear.
//! The count goes up before the parked word is set, so a waker never takes an announcement
//! whose count was not yet added.
//!
//! A busy stream therefore makes no syscall: one fence and one load of a rarely written word
//! per publish.

use std::ops::Range;
use std::time::Duration;

use crate::loom::{AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
use crate::{
    layout::{Layout, Role},
    sys::doorbell::Ringer,
};

/// Record aux word holding the *parked* announcement (0, [`PARK_FUTEX`] or [`PARK_DOORBELL`]).
pub(crate) const AUX_PARKED: usize = 0;
/// Record aux word holding the doorbell token of a handle that parks in a reactor (0: none).
pub(crate) const AUX_TOKEN: usize = 1;

/// `parked` value: wake by bumping the side's futex word and `futex_wake`.
pub(crate) const PARK_FUTEX: u64 = 1;
/// `parked` value: wake by ringing the doorbell whose token is in the record.
pub(crate) const PARK_DOORBELL: u64 = 2;

/// The futex word and parked count of one waiting side (two words of the ring's control
/// block).
///
/// Invariants: `count` is the number of non-zero parked words among the side's records (each
/// announcement adds one before its word is set, and exactly one of the waker's `take` and the
/// waiter's `retract` subtracts it); `futex` only grows (wrapping), bumped on every futex wake.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sleepers<'a> {
    pub(crate) futex: &'a AtomicU32,
    pub(crate) count: &'a AtomicU32,
}

impl Sleepers<'_> {
    /// Waker, step 1: whether anybody may be parked. Call after publishing.
    #[inline(always)]
    pub(crate) fn anyone(&self) -> bool {
        self.waker_fence();
        self.count.load(Ordering::Relaxed) != 0
    }

    /// Waker, step 1 for every wake path: the fence between the store that made the change
    /// visible (a publish, a free, a close counter, a repair) and the loads of the count and
    /// parked words. A close or death wake that skipped it could miss a waiter that announced
    /// just then, while that waiter's re-check missed the close: the store-buffering outcome
    /// (`loom_models::loom_close_never_loses_a_doorbell_waiter`).
    #[inline(always)]
    pub(crate) fn waker_fence(&self) {
        // SeqCst fence: pairs with the fence in `announce` (store-buffering: our change and
        // their parked word cannot both be missed by the loads that follow the fences).
        fence(Ordering::SeqCst);
    }

    /// Waker, step 2: takes the announcement in `parked`, if any: the mode to wake it with.
    #[inline]
    pub(crate) fn take(&self, parked: &AtomicU64) -> Option<u64> {
        if parked.load(Ordering::Relaxed) == 0 {
            return None;
        }
        // AcqRel: exactly one of the waker and the waiter's `retract` gets the non-zero value.
        match parked.swap(0, Ordering::AcqRel) {
            0 => None,
            mode => {
                self.count.fetch_sub(1, Ordering::AcqRel);
                Some(mode)
            }
        }
    }

    /// Wakes every thread parked on the futex word (after taking a futex announcement, or on
    /// close).
    pub(crate) fn wake_futex(&self) {
        // Release: a waiter that sees the new value sees what we published before.
        self.futex.fetch_add(1, Ordering::Release);
        #[cfg(not(loom))]
        crate::sys::futex::wake(self.futex, u32::MAX);
    }

    /// Waiter, steps 1-2: announces in `parked` how to be woken; returns the futex word's
    /// value to sleep on. Re-check the ring after this, then sleep or retract.
    pub(crate) fn announce(&self, parked: &AtomicU64, mode: u64) -> u32 {
        // Acquire: pairs with the Release bump in `wake_futex`.
        let seq = self.futex.load(Ordering::Acquire);
        self.count.fetch_add(1, Ordering::SeqCst);
        parked.store(mode, Ordering::SeqCst);
        // SeqCst fence: pairs with the fence in `anyone`.
        fence(Ordering::SeqCst);
        seq
    }

    /// Waiter, step 5: withdraws the announcement unless a waker took it. Returns whether a
    /// waker took it (we were rung).
    pub(crate) fn retract(&self, parked: &AtomicU64) -> bool {
        if parked.swap(0, Ordering::AcqRel) != 0 {
            self.count.fetch_sub(1, Ordering::AcqRel);
            false
        } else {
            true
        }
    }

    /// Futex waiter, step 4: sleeps until woken, the futex word changes from `seq`, or
    /// `timeout`.
    #[cfg(not(loom))]
    pub(crate) fn sleep(&self, seq: u32, timeout: Duration) {
        crate::sys::futex::wait(self.futex, seq, Some(timeout));
    }
}

/// The doorbell ringer of one handle: a datagram socket made on the first ring.
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct Bells {
    ringer: std::sync::OnceLock<Option<Ringer>>,
}

#[cfg(not(loom))]
impl Bells {
    fn ring(&self, token: u64) {
        if let Some(r) = self.ringer.get_or_init(|| Ringer::new().ok()) {
            r.ring(token);
        }
    }
}

/// One waiting side of a ring as a waker sees it: the side's [`Sleepers`] words and the
/// participant records whose parked words may hold its announcements.
#[cfg(not(loom))]
#[derive(Debug, Clone)]
pub(crate) struct WaitSet<'a> {
    pub(crate) sleepers: Sleepers<'a>,
    pub(crate) layout: &'a Layout,
    /// Records of the side (the flavour's record range).
    pub(crate) records: Range<u32>,
    /// MPMC: both sides share the records, so take only announcements of this role (a waker
    /// that took the other side's would uncount it from the wrong count).
    pub(crate) only_role: Option<Role>,
}

#[cfg(not(loom))]
impl WaitSet<'_> {
    /// Waker, after the release store that made work visible (a publish or a free): one fence
    /// and one load unless somebody is parked, then [`ring_parked`](Self::ring_parked).
    #[inline]
    pub(crate) fn wake(&self, bells: &Bells) {
        if self.sleepers.anyone() {
            self.ring_parked(bells);
        }
    }

    /// Waker, step 2: takes every announcement in the set and rings it: doorbells one by one,
    /// futex sleepers with one bump and wake.
    pub(crate) fn ring_parked(&self, bells: &Bells) {
        let mut futex = false;
        for i in self.records.clone() {
            let Ok(word) = self.layout.aux_word(i, AUX_PARKED) else {
                return;
            };
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            if let Some(role) = self.only_role {
                if !self.layout.participant(i).is_some_and(|p| p.role == role) {
                    continue;
                }
            }
            match self.sleepers.take(word) {
                Some(PARK_DOORBELL) => {
                    // Acquire: pairs with the Release store of the token in the waiter's
                    // first async park, made before its first announcement.
                    let token = self
                        .layout
                        .aux_word(i, AUX_TOKEN)
                        .map(|t| t.load(Ordering::Acquire))
                        .unwrap_or(0);
                    bells.ring(token);
                }
                Some(_) => futex = true,
                None => {}
            }
        }
        if futex {
            self.sleepers.wake_futex();
        }
    }

    /// Wakes everybody parked in the set, whatever they wait for (close, repair, death): the
    /// waker's fence, every announcement taken and rung, and the futex bumped regardless.
    pub(crate) fn wake_everyone(&self, bells: &Bells) {
        self.sleepers.waker_fence();
        self.ring_parked(bells);
        self.sleepers.wake_futex();
    }
}
