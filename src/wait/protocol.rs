//! The park/wake protocol: how a waiter announces that it sleeps, and how a waker finds and
//! wakes it, with no system call while nobody sleeps.
//!
//! Each ring side that can wait (consumers for data, producers for space) has a futex word
//! and a count of parked parties in the ring's control block; each party has a *parked* word
//! in its participant record (0, or how to wake it: futex or doorbell).
//!
//! Waiter (after finding nothing to do):
//! 1. `seq = futex.load()` (futex waiters only: the word is the waiter's own, `AUX_FUTEX`);
//! 2. `count += 1`, then `parked = mode` (SeqCst), then a SeqCst fence;
//! 3. re-check the ring; if there is work, retract and go;
//! 4. sleep: `futex_wait(own futex, seq, timeout)`, or `Pending` until the doorbell rings;
//! 5. retract: `if parked.swap(0) != 0 { count -= 1 }`.
//!
//! Waker (after the release store that made work visible):
//! 1. a SeqCst fence; if `count == 0`, done: no syscall;
//! 2. for each record of the waiting side: `mode = parked.load()`; if non-zero and the waker
//!    can ring that mode, `if parked.cas(mode, 0) { count -= 1; ring it }`.
//!
//! (Outside loom models the waker's fence is a compiler fence and the waiter's a
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which makes it a full fence on the waker's
//! CPU: `sys/membarrier.rs`; or, in *fenced mode* below, both are full fences.) The two fences forbid the store-buffering outcome in which the waiter's re-check misses the
//! work *and* the waker's load misses the parked word; so either the waiter sees the work or
//! the waker rings it (`loom_models::loom_park_wake_no_lost_wakeup`). Each announcement is
//! taken exactly once, by the waker (who rings) or by the waiter (who retracts), so the count
//! stays exact; a waiter killed while parked costs one ring, after which its word is clear.
//! The count goes up before the parked word is set, so a waker never takes an announcement
//! whose count was not yet added.
//!
//! A busy stream therefore makes no syscall: one compiler fence and loads of two rarely
//! written words per publish; a waiter pays one `membarrier` call per park.
//!
//! **Fenced mode.** A waiter that parks often (request / response: a park per message) would
//! pay a `membarrier` per message, 7.6-13 µs on the team's VM when a registered process runs
//! on the other vCPU (an IPI, which also interrupts that process), where a full fence on each
//! side costs tens of nanoseconds. So each waiting side also has a *fenced* count in the
//! control block: a waiter whose park comes within [`FENCED_ITEMS`] ring positions of its
//! previous one adds itself to it (once, marking its record's [`AUX_FENCED`]), and every waker
//! of the side makes a full fence while the count is non-zero (it reads the count after its
//! compiler fence, from the cache line of the sleeper count it reads anyway), and counts it
//! in the side's *fenced-checks* word beside the count (Relaxed: a statistic). The park that
//! adds it still pays the `membarrier`; the parks after it make a plain SeqCst fence. Why that
//! is enough: a waker whose load of the fenced count comes after the barrier that park forced
//! on its CPU sees the count (it was added before the barrier) and fences, so the two-fence
//! argument holds; a waker that loaded it before that barrier made its publish before it too,
//! and every later park of ours re-checks after the barrier, so it sees that publish. The
//! count stays up while we are in the mode (only we, or whoever releases our record after our
//! death, take our unit off). What the mode costs while it lasts is a full fence per wake
//! check of a waker (per publish or free, or per flush of a `Sink` batch), 7-11 ns in a
//! stream, against a barrier of 0.4 µs (nothing registered on the other CPUs) to 13 µs. So
//! that cost decides whether we stay, read from the fenced-checks word: a park that finds
//! more than [`FENCED_CHECKS`] since our previous park takes the unit off and pays the
//! `membarrier` again, and so does a handle that goes 64 of its own operations without a
//! park once that many were made (`Core::note_progress`), or 4,096 whatever the word says:
//! a stream that turns busy stops its wakers fencing that soon (`tests/fences.rs`). (Until
//! 2026-12-03 evening the distance in ring positions decided, at most 8: a pool's worker,
//! whose parks are hundreds of jobs apart while its coordinator checks once per flush of 64,
//! left the mode at every park and paid a `membarrier` for each:
//! `a_waiter_parked_between_batches_stays_in_fenced_mode`.) Loom:
//! `loom_fenced_mode_no_lost_wakeup` (and its negative twin, a plain-fence park without the
//! count, which loom must catch).

use std::ops::Range;

#[cfg(shmchan_loom)]
use crate::loom::fence;
use crate::loom::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(shmchan_loom))]
use crate::{
    layout::{Layout, Role},
    sys::doorbell::Ringer,
};

/// Record aux word holding the *parked* announcement (0, [`PARK_FUTEX`] or [`PARK_DOORBELL`]).
pub(crate) const AUX_PARKED: usize = 0;
/// Record aux word holding the doorbell token of a handle that parks in a reactor (0: none).
pub(crate) const AUX_TOKEN: usize = 1;
/// Record aux word whose first four bytes are the handle's own futex word: a blocked thread
/// sleeps on it, and the waker that takes its announcement bumps and wakes it, so a publish
/// wakes one thread, not every thread of the side. Only ever accessed as a `u32` (through
/// [`futex_of`]), apart from the zeroing of a record being claimed, which happens before
/// anyone can see the record.
pub(crate) const AUX_FUTEX: usize = 3;

/// Record aux word counting the wakes its waiter has *used*: bumped when the waiter, running
/// again, finds that a waker took its announcement ([`note_woken`]). An MPMC producer that
/// rang a worker reads it to tell whether that worker has run since ([`woken_since`]): while
/// it has not, the worker will still see everything published before, so another ring is a
/// wake-up that finds nothing (on one CPU, 8 workers rung by every flush cost 7 futile
/// wake-ups per batch).
pub(crate) const AUX_WOKEN: usize = 4;

/// Record aux word: non-zero while the record's owner holds one unit of its side's fenced
/// count (fenced mode, above). Cleared, and the unit taken off, by the owner when it leaves
/// the mode or the channel, or by whoever releases the record after the owner's death.
pub(crate) const AUX_FENCED: usize = 5;

/// A park within this many ring positions (items published or freed by the wakers) of the
/// waiter's previous park enters fenced mode. (8 until 2026-12-03 evening: a worker of an
/// MPMC pool, whose parks are hundreds of jobs apart while its coordinator fences once per
/// flush of 64, never entered it and paid a `membarrier` per park.) What the mode then costs
/// is bounded by [`FENCED_CHECKS`], not by this.
pub(crate) const FENCED_ITEMS: u64 = 4096;

/// A waiter in fenced mode stays in it while the wakers of its side made at most this many
/// full fences for the mode (the side's fenced-checks counter) since its previous park, and
/// leaves it at its next park, or at its next 64th operation if it does not park
/// (`Core::note_progress`), once they made more: 256 fences of 7-15 ns cost its wakers about
/// what one barrier of a busy machine costs the waiter (7.6-13 µs with a registered process
/// on the other vCPU, plus the interrupt there).
pub(crate) const FENCED_CHECKS: u64 = 256;

/// A waiter in fenced mode that went this many of `Core::note_progress`'s looks (64
/// operations each) without a park leaves it whatever the counter says (a ring whose wakers
/// do not count: builds before the counter).
pub(crate) const FENCED_IDLE_LOOKS: u32 = 64;

/// Waiter: a waker took our announcement and we run again: count the wake as used, before
/// the attempt that uses it.
///
/// SeqCst bump, then a SeqCst fence: pairs with the fence in [`woken_since`] (store
/// buffering: a producer that reads the count from before the bump published its work before
/// its fence, so the attempt after ours sees it; loom: `loom_a_skipped_ring_is_never_lost`).
#[inline]
pub(crate) fn note_woken(woken: &AtomicU64) {
    woken.fetch_add(1, Ordering::SeqCst);
    fence_seq_cst();
}

/// Waker, after the store that made work visible: whether the waiter whose wake count read
/// `at_ring` (just before we took its announcement) has used that wake since. While it has
/// not, its next attempt sees our work (the fences of [`note_woken`] and this one), so ringing
/// another waiter for that work is not needed for it to be taken.
#[inline]
pub(crate) fn woken_since(woken: &AtomicU64, at_ring: u64) -> bool {
    fence_seq_cst();
    woken.load(Ordering::Relaxed) != at_ring
}

/// A full fence in the Rust model (the asymmetric membarrier scheme of [`Sleepers`] covers
/// only the announce / wake pair).
#[inline(always)]
fn fence_seq_cst() {
    crate::loom::fence(Ordering::SeqCst);
}

/// Takes one unit off a fenced count, never below zero (a count another process corrupted
/// costs wakers fences, nothing else).
fn release_fenced_unit(f: &AtomicU32) {
    // SeqCst: after it, wakers may stop fencing; the park that follows pays the barrier.
    let _ = f.fetch_update(Ordering::SeqCst, Ordering::Relaxed, |v| v.checked_sub(1));
}

/// The futex word of a record: the first four bytes of its [`AUX_FUTEX`] word.
#[cfg(not(shmchan_loom))]
pub(crate) fn futex_of(word: &AtomicU64) -> &AtomicU32 {
    // SAFETY: the aux word is 8-aligned and lives (mapped) as long as `word` is borrowed, so
    // its first four bytes are a 4-aligned `u32` for as long; every access to them other than
    // the record's zeroing (ordered before by the record's publication) is through this
    // 32-bit atomic view, so no access of another width races with it.
    unsafe { AtomicU32::from_ptr(word.as_ptr().cast::<u32>()) }
}

/// `parked` value: wake by bumping the waiter's own futex word ([`futex_of`] its
/// [`AUX_FUTEX`]) and `futex_wake`.
pub(crate) const PARK_FUTEX: u64 = 1;
/// `parked` value: wake by ringing the doorbell whose token is in the record.
pub(crate) const PARK_DOORBELL: u64 = 2;
/// `parked` value: as [`PARK_DOORBELL`], for a task that waits for an *event* (close, death),
/// not for work: publishes and frees leave it parked; only [`WaitSet::wake_everyone`] rings
/// it. (A work wake taken by such a waiter would be lost to the one waiting for the work.)
pub(crate) const PARK_DOORBELL_EVENT: u64 = 3;

/// The parked count of one waiting side (a word of the ring's control block, or of the
/// heap's).
///
/// Invariants: `count` is the number of non-zero parked words among the side's records (each
/// announcement adds one before its word is set, and exactly one of the waker's `take` and the
/// waiter's `retract` subtracts it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sleepers<'a> {
    pub(crate) count: &'a AtomicU32,
    /// The side's fenced count (fenced mode, above): waiters that park with a plain fence,
    /// so that every waker must make a full one. `None` for a side whose waiters never use
    /// the mode (the heap's); in loom models, `None` also means the symmetric form (every
    /// waker fences), `Some` a waker that fences only when the count says so.
    pub(crate) fenced: Option<&'a AtomicU32>,
    /// The side's fenced-checks counter: bumped (Relaxed, a statistic) by every light waker
    /// that fenced fully because the fenced count was non-zero, so that a waiter in the mode
    /// sees what its mode costs its wakers ([`FENCED_CHECKS`]). `None`: not counted (the
    /// heap's side, loom models).
    pub(crate) checks: Option<&'a AtomicU64>,
}

impl<'a> Sleepers<'a> {
    /// The parked count of a side whose waiters never use fenced mode (the heap's; in loom
    /// models, the symmetric form where every waker fences).
    pub(crate) fn unfenced(count: &'a AtomicU32) -> Self {
        Sleepers {
            count,
            fenced: None,
            checks: None,
        }
    }

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
        // their parked word cannot both be missed by the loads that follow the fences). In a
        // process registered for global expedited membarriers only a compiler fence: the
        // waiter's barrier in `announce` makes it a full one (`sys/membarrier.rs`); the loom
        // models check the symmetric form, which that barrier is equivalent to. Unless a
        // waiter of the side is in fenced mode: then a full fence, paired with that waiter's
        // plain fence (Relaxed load: the count is made visible to us by the barrier of the
        // park that added it, see "Fenced mode" above; loom: `loom_fenced_mode_no_lost_wakeup`).
        #[cfg(shmchan_loom)]
        match self.fenced {
            None => fence(Ordering::SeqCst),
            Some(f) => {
                if f.load(Ordering::Relaxed) != 0 {
                    fence(Ordering::SeqCst);
                }
            }
        }
        #[cfg(not(shmchan_loom))]
        if crate::sys::membarrier::waker_fence(|| {
            self.fenced.is_some_and(|f| f.load(Ordering::Relaxed) != 0)
        }) {
            if let Some(c) = self.checks {
                // Relaxed: a count for the waiters' policy (`Learned::fenced_park`), ordered
                // with nothing; the fence above is what the protocol needs.
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waker, step 2: takes the announcement in `parked`, if any: the mode to wake it with.
    #[inline]
    pub(crate) fn take(&self, parked: &AtomicU64) -> Option<u64> {
        let mode = parked.load(Ordering::Relaxed);
        (mode != 0 && self.take_mode(parked, mode)).then_some(mode)
    }

    /// Waker, step 2 for an announcement seen as `mode`: takes it only if it still is. If the
    /// word changed after the waker's fenced look, the waiter retracted and possibly announced
    /// again; a new announcement's re-check then sees what the waker published (the
    /// store-buffering argument above: the waker's load missed the new word, so the waiter's
    /// load cannot miss the work), so leaving it is safe.
    #[inline]
    pub(crate) fn take_mode(&self, parked: &AtomicU64, mode: u64) -> bool {
        // AcqRel: exactly one of the waker and the waiter's `retract` (a swap) gets the
        // non-zero value; Acquire pairs with the waiter's SeqCst store in `announce`.
        let taken = parked
            .compare_exchange(mode, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if taken {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
        taken
    }

    /// Waiter, step 2: announces in `parked` how to be woken (a futex waiter has read its own
    /// futex word first, step 1). Re-check the ring after this, then sleep or retract.
    pub(crate) fn announce(&self, parked: &AtomicU64, mode: u64) {
        self.announce_as(parked, mode, None);
    }

    /// [`announce`](Self::announce), in fenced mode or out of it: `mine` is the waiter's
    /// [`AUX_FENCED`] word and whether this park wants the mode (its previous park was within
    /// [`FENCED_ITEMS`] positions; never where this process's barriers fail). Entering the
    /// mode adds our unit to the side's fenced count and pays the barrier; staying in it makes
    /// a plain fence; leaving it takes the unit off and pays the barrier. Returns whether
    /// this park paid the barrier.
    pub(crate) fn announce_as(
        &self,
        parked: &AtomicU64,
        mode: u64,
        mine: Option<(&AtomicU64, bool)>,
    ) -> bool {
        let mut heavy = true;
        if let (Some(f), Some((w, want))) = (self.fenced, mine) {
            // Relaxed: our own record's word (only we set it; a releaser of our record runs
            // after our death).
            let holds = w.load(Ordering::Relaxed) != 0;
            match (holds, want) {
                (false, true) => {
                    // SeqCst: ordered before the barrier below, which makes every waker's
                    // later look see it.
                    f.fetch_add(1, Ordering::SeqCst);
                    w.store(1, Ordering::Relaxed);
                }
                (true, false) => {
                    w.store(0, Ordering::Relaxed);
                    release_fenced_unit(f);
                }
                (true, true) => heavy = false,
                (false, false) => {}
            }
        }
        self.count.fetch_add(1, Ordering::SeqCst);
        parked.store(mode, Ordering::SeqCst);
        // SeqCst fence: pairs with the fence in `anyone`; outside loom, with a barrier on
        // every CPU that runs a registered waker, whose fence is only a compiler fence
        // (`sys/membarrier.rs`; if the barrier fails, parks are bounded instead). In fenced
        // mode the fence alone: every waker of the side fences fully (see "Fenced mode").
        #[cfg(shmchan_loom)]
        fence(Ordering::SeqCst);
        #[cfg(not(shmchan_loom))]
        if heavy {
            crate::sys::membarrier::waiter_barrier();
        } else {
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        heavy
    }

    /// Takes the unit that the owner of `word` (an [`AUX_FENCED`] word: ours as we leave, or
    /// a dead owner's as its record is released) holds in the fenced count, if it holds one.
    pub(crate) fn drop_fenced(&self, word: &AtomicU64) {
        // AcqRel: exactly one of several releasers of a dead record takes the unit.
        if word.swap(0, Ordering::AcqRel) != 0 {
            if let Some(f) = self.fenced {
                release_fenced_unit(f);
            }
        }
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
}

/// The doorbell ringer of one handle: a datagram socket made on the first ring. A failure
/// to make it (out of descriptors) is not remembered: the next ring tries again.
#[cfg(not(shmchan_loom))]
#[derive(Debug, Default)]
pub(crate) struct Bells {
    ringer: std::sync::OnceLock<Ringer>,
    /// Doorbells rung through this handle (a diagnostic: wake-one is tested by it).
    rung: std::sync::atomic::AtomicU64,
}

#[cfg(not(shmchan_loom))]
impl Bells {
    /// Doorbells rung so far.
    pub(crate) fn rung(&self) -> u64 {
        // Relaxed: a process-local statistic.
        self.rung.load(Ordering::Relaxed)
    }

    /// The ringer, made now if need be; `None` if it cannot be made now.
    fn ringer(&self) -> Option<&Ringer> {
        if let Some(r) = self.ringer.get() {
            return Some(r);
        }
        let made = Ringer::new().ok()?;
        Some(self.ringer.get_or_init(|| made))
    }
}

/// One waiting side of a ring as a waker sees it: the side's [`Sleepers`] words and the
/// participant records whose parked words may hold its announcements.
#[cfg(not(shmchan_loom))]
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

#[cfg(not(shmchan_loom))]
impl WaitSet<'_> {
    /// Waker, after the release store that made `n` items of work visible (a publish: one
    /// message; a free: `n` slots): one fence and one load unless somebody is parked, then
    /// [`ring_parked`](Self::ring_parked) for `n` of them.
    ///
    /// **Wake one per item.** Async waiters (doorbells) are rung one per item of work, not
    /// all at once: with eight MPMC workers parked, waking all for each job made seven of them
    /// wake, find nothing and park again, for every job (the `worker_pool` example took 10 s
    /// with 8 workers against 1.5 s with one). The rule that keeps this free of lost wake-ups:
    /// *a waiter that was rung and does not take an item passes the wake on* (it was dropped
    /// while parked, or it found an item by its own re-check: `reactor::retract`; a thread
    /// that was rung and times out or finds an item with more left: `blocking::block`). Each
    /// futex sleeper sleeps on a word of its own record (`AUX_FUTEX`), so one can be woken
    /// without the others: until 2026-12-02 they shared the side's word and all woke for
    /// each item (or, through a bug in the count passed to the kernel, only one did, and the
    /// others slept until their liveness check).
    #[inline]
    pub(crate) fn wake(&self, bells: &Bells, n: usize) {
        if self.sleepers.anyone() {
            self.ring_parked(bells, n);
        }
    }

    /// Waker, step 2: takes announcements in the set and rings them: work doorbells one by
    /// one, at most `limit` of them ([`usize::MAX`]: every one, event waiters included), and
    /// futex sleepers the same way, each on its own record's word. Returns the last record
    /// rung and its [`AUX_WOKEN`] count as read before its announcement was taken (for
    /// [`woken_since`]).
    pub(crate) fn ring_parked(&self, bells: &Bells, mut limit: usize) -> Option<(u32, u64)> {
        let everyone = limit == usize::MAX;
        let mut last = None;
        for i in self.records.clone() {
            let Ok(word) = self.layout.aux_word(i, AUX_PARKED) else {
                return last;
            };
            // Acquire: pairs with the waiter's SeqCst store in `announce`, so the wake count
            // read next includes every wake it used before announcing (a count read after our
            // take could already include the use of *our* wake).
            let mode = word.load(Ordering::Acquire);
            if mode == 0 {
                continue;
            }
            let woken = self
                .layout
                .aux_word(i, AUX_WOKEN)
                .map(|w| w.load(Ordering::Relaxed))
                .unwrap_or(0);
            if let Some(role) = self.only_role {
                if !self.layout.participant(i).is_some_and(|p| p.role == role) {
                    continue;
                }
            }
            if mode == PARK_DOORBELL || mode == PARK_DOORBELL_EVENT {
                if limit == 0 || (mode == PARK_DOORBELL_EVENT && !everyone) {
                    continue;
                }
                // Taken only if we can ring it: without a ringer (out of descriptors) the
                // announcement stays standing, the count stays up, and the next waker (our
                // next publish, or a peer's) tries again. Taking it and failing to ring
                // would leave the waiter asleep with nobody left to wake it.
                let Some(ringer) = bells.ringer() else {
                    continue;
                };
                if self.sleepers.take_mode(word, mode) {
                    limit -= 1;
                    last = Some((i, woken));
                    // Relaxed: a process-local statistic.
                    bells.rung.fetch_add(1, Ordering::Relaxed);
                    // Acquire: pairs with the Release store of the token in the waiter's
                    // first async park, made before its first announcement.
                    let token = self
                        .layout
                        .aux_word(i, AUX_TOKEN)
                        .map(|t| t.load(Ordering::Acquire))
                        .unwrap_or(0);
                    ringer.ring(token);
                }
            } else if mode == PARK_FUTEX {
                if limit == 0 {
                    continue;
                }
                if self.sleepers.take_mode(word, mode) {
                    if !everyone {
                        limit -= 1;
                    }
                    last = Some((i, woken));
                    // The thread whose announcement we took, and no other: its own futex word.
                    if let Ok(w) = self.layout.aux_word(i, AUX_FUTEX) {
                        let f = futex_of(w);
                        // Release: pairs with the Acquire load of the word before the
                        // sleeper's announcement (a sleep that began after sees it changed).
                        f.fetch_add(1, Ordering::Release);
                        crate::sys::futex::wake(f, 1);
                    }
                }
            } else {
                // Not a mode this build parks with (a corrupt word): take it, so that the
                // count stays exact, and ring nothing.
                self.sleepers.take_mode(word, mode);
            }
        }
        last
    }

    /// Wakes everybody parked in the set, whatever they wait for (close, repair, death): the
    /// waker's fence, and every announcement taken and rung (a thread on its own record's
    /// futex word, a task on its doorbell).
    pub(crate) fn wake_everyone(&self, bells: &Bells) {
        self.sleepers.waker_fence();
        self.ring_parked(bells, usize::MAX);
    }
}
