//! How a channel handle waits and wakes, on top of `wait`: its side's wait set and sleeper
//! words, the wake-ups after a publish or a free (one fenced look, the ringing out of line),
//! the CPU word and fenced mode kept up to date as messages pass, and the [`Park`] and
//! [`AsyncPark`] implementations the wait loops call.
//!
//! May call `wait`, `ring`, `layout` and `sys`.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use super::core::{Core, RUNG_GRACE, Side};
use crate::error::Result;
use crate::layout::Kind;
use crate::loom::Ordering;
use crate::ring;
use crate::sys::process::ProcessId;
use crate::wait::blocking::{FencedMode, Park};
use crate::wait::protocol::{
    AUX_FENCED, AUX_FUTEX, AUX_PARKED, AUX_TOKEN, AUX_WOKEN, FENCED_IDLE_LOOKS, Sleepers, WaitSet,
    futex_of, note_woken, woken_since,
};
use crate::wait::reactor::{AsyncPark, AsyncState};
use crate::wait::{AUX_CPU, Learned, PeerCpu, WaitStrategy};

impl Core {
    /// A message was received or a slot claimed (or tried for, while the ring is full): every
    /// 64, publish where we run. A side that never
    /// waits (a producer whose consumer keeps up, a consumer of several busy producers)
    /// would otherwise leave a stale word, and a peer that shares our CPU but reads
    /// "another CPU" spins against us instead of handing the CPU over.
    #[inline]
    pub(super) fn note_progress(&mut self) {
        self.progress = self.progress.wrapping_add(1);
        if self.progress % 64 == 0 {
            self.publish_cpu(crate::wait::this_cpu());
            self.leave_fenced_mode_if_busy();
        }
    }

    /// Every 64 messages: a handle in fenced mode (`wait/protocol.rs`) that has not parked
    /// since the last look leaves it if its wakers fenced for the mode more than
    /// `FENCED_CHECKS` times since its last park, or after `FENCED_IDLE_LOOKS` such looks in
    /// a row, so that a stream which turned busy does not keep its wakers fencing every
    /// publish (the mode is left otherwise only at a park, and a busy consumer does not
    /// park). Its next park pays the barrier again.
    #[cold]
    fn leave_fenced_mode_if_busy(&mut self) {
        let parks = self.learned.stats().parks;
        if std::mem::replace(&mut self.parks_seen, parks) != parks {
            self.idle_looks = 0;
            return;
        }
        self.idle_looks = self.idle_looks.saturating_add(1);
        let Some(reg) = self.reg.as_ref() else { return };
        if let Ok(w) = self.layout.aux_word(reg.index(), AUX_FENCED) {
            // Relaxed: our own record's word (see `Sleepers::announce_as`); the counter is a
            // statistic.
            if w.load(Ordering::Relaxed) != 0
                && (self.idle_looks >= FENCED_IDLE_LOOKS
                    || self
                        .learned
                        .fenced_mode_costly(self.fenced_checks(self.side).load(Ordering::Relaxed)))
            {
                self.sleepers(self.side).drop_fenced(w);
            }
        }
    }

    /// The fenced-checks counter of `side` (`ring::OFF_CONS_FENCED_CHECKS`).
    #[inline]
    fn fenced_checks(&self, side: Side) -> &AtomicU64 {
        self.ring.word64(match side {
            Side::Consumer => ring::OFF_CONS_FENCED_CHECKS,
            Side::Producer => ring::OFF_PROD_FENCED_CHECKS,
        })
    }

    /// Publishes `cpu` (`this_cpu()`, 0: unknown) as where this handle runs, for a peer's
    /// wait policy (`meet_peer`): as a wait begins, after a park or a `sched_yield` that
    /// switched (`moved`), and every 64 messages (`note_progress`).
    #[inline]
    pub(super) fn publish_cpu(&mut self, cpu: u64) {
        // Only a handle alone on its side is anyone's single peer (SPSC, an MPSC consumer).
        if cpu == 0 || self.records(self.side).len() != 1 {
            return;
        }
        let Some(reg) = self.reg.as_ref() else { return };
        // Relaxed (both): a hint for the wait policy; nothing else is ordered by it.
        if let Ok(w) = self.layout.aux_word(reg.index(), AUX_CPU) {
            if w.load(Ordering::Relaxed) != cpu {
                w.store(cpu, Ordering::Relaxed);
            }
        }
    }

    /// The parked count of `side`.
    #[inline]
    pub(super) fn sleepers(&self, side: Side) -> Sleepers<'_> {
        let (c, f) = match side {
            Side::Consumer => (ring::OFF_CONS_SLEEPERS, ring::OFF_CONS_FENCED),
            Side::Producer => (ring::OFF_PROD_SLEEPERS, ring::OFF_PROD_FENCED),
        };
        Sleepers {
            count: self.ring.word32(c),
            fenced: Some(self.ring.word32(f)),
            checks: Some(self.fenced_checks(side)),
        }
    }

    /// The waiting side `side` as a waker sees it.
    #[inline]
    pub(super) fn wait_set(&self, side: Side) -> WaitSet<'_> {
        WaitSet {
            sleepers: self.sleepers(side),
            layout: &self.layout,
            records: self.records(side),
            only_role: (self.kind == Kind::MPMC).then(|| side.role()),
        }
    }

    /// Our record's parked word.
    pub(super) fn parked_word(&self) -> &AtomicU64 {
        self.layout
            .aux_word(self.reg().index(), AUX_PARKED)
            .expect("channels map read-write")
    }

    /// Wakes parked peers after publishing (producer) or freeing (consumer): a fence and one
    /// load unless somebody is parked.
    #[inline]
    pub(super) fn wake_peers(&self) {
        self.wake_peers_n(1);
    }

    /// Whether a peer seems to be parked now: a plain look at the other side's sleeper count,
    /// without the waker's fence, so it may miss one that is announcing this instant (the
    /// fenced [`wake_peers`](Self::wake_peers) of the next publish or flush rings that one).
    /// A `Sink` stages messages only while nobody waits for them: a parked consumer gains
    /// nothing from a batch it sleeps through, and each batch would cost it a park.
    #[inline]
    pub(super) fn peer_parked_hint(&self) -> bool {
        // Relaxed: a hint; correctness rests on the fenced wake of every publish and flush.
        self.sleepers(self.side.other())
            .count
            .load(Ordering::Relaxed)
            != 0
    }

    /// As [`wake_peers`](Self::wake_peers) after `n` items became visible at once (a batch
    /// receive freed `n` slots): up to `n` async waiters are rung.
    ///
    /// The fenced look at the count is inline; building the wait set and ringing is not
    /// (a message's wake check built the set first: about 40 instructions per message, for
    /// a peer that was rarely parked).
    #[inline]
    pub(super) fn wake_peers_n(&self, n: usize) {
        if self.sleepers(self.side.other()).anyone() {
            self.ring_peers(n);
        }
    }

    /// [`wake_peers_n`](Self::wake_peers_n)'s slow half: somebody of the other side may be
    /// parked.
    ///
    /// An MPMC producer rings no second worker while the one its last publish or flush rang
    /// has not run yet (for at most [`RUNG_GRACE`]): that worker's next attempt sees
    /// everything published before this call (`protocol::woken_since`), takes its share, and
    /// rings the next worker if work remains (the chain in `reactor.rs`). Ringing another
    /// one per flush woke, on one CPU, all 8 workers of `cargo bench --bench worker_pool`
    /// for each batch of 1024 jobs, 7 of them to find nothing (0.017 doorbells per job).
    /// The grace bounds what a rung worker that never runs again (killed before it ran, or
    /// its task never polled) can hold back: then the next publish rings another.
    #[cold]
    #[inline(never)]
    fn ring_peers(&self, n: usize) {
        let set = self.wait_set(self.side.other());
        if n != 1 || self.kind != Kind::MPMC || self.side != Side::Producer {
            set.ring_parked(&self.bells, n);
            return;
        }
        let mut last = self
            .rung_worker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((i, at_ring, when)) = *last {
            let used = self
                .layout
                .aux_word(i, AUX_WOKEN)
                .map_or(true, |w| woken_since(w, at_ring));
            if !used && when.elapsed() < RUNG_GRACE {
                return;
            }
        }
        if let Some((i, at_ring)) = set.ring_parked(&self.bells, 1) {
            *last = Some((i, at_ring, Instant::now()));
        }
    }

    /// Wakes everybody parked on either side (close, repair).
    pub(super) fn wake_everyone(&self) {
        for side in [Side::Consumer, Side::Producer] {
            self.wait_set(side).wake_everyone(&self.bells);
        }
    }
}

impl Park for Core {
    fn strategy(&self) -> WaitStrategy {
        self.wait
    }
    fn learned(&mut self) -> &mut Learned {
        &mut self.learned
    }
    fn meet_peer(&mut self, cpu: u64) -> PeerCpu {
        self.publish_cpu(cpu);
        let peers = self.records(self.side.other());
        if cpu == 0 || peers.len() != 1 {
            return PeerCpu::Unknown;
        }
        // Relaxed: a hint for the wait policy; nothing else is ordered by it.
        match self.layout.aux_word(peers.start, AUX_CPU) {
            Ok(w) => match w.load(Ordering::Relaxed) {
                0 => PeerCpu::Unknown,
                c if c == cpu => PeerCpu::Same,
                _ => PeerCpu::Other,
            },
            Err(_) => PeerCpu::Unknown,
        }
    }
    fn moved(&mut self, cpu: u64) {
        self.publish_cpu(cpu);
    }
    fn liveness_interval(&self) -> Duration {
        self.liveness_interval
    }
    fn parking(&self) -> (Sleepers<'_>, &AtomicU64) {
        (self.sleepers(self.side), self.parked_word())
    }
    fn after_park(&mut self) -> Result<()> {
        // Parking is where dead peers are looked for; the attempt after a park also runs the
        // clock-gated checks (repair, adoption) at once.
        self.check_peers(false)?;
        self.idle_polls = u32::MAX;
        Ok(())
    }
    fn futex_word(&self) -> &std::sync::atomic::AtomicU32 {
        futex_of(
            self.layout
                .aux_word(self.reg().index(), AUX_FUTEX)
                .expect("channels map read-write"),
        )
    }
    fn pass_on_wake(&self) {
        AsyncPark::pass_on(self)
    }
    fn work_remains(&self) -> bool {
        AsyncPark::more_work(self)
    }
    fn fenced_mode(&self) -> Option<FencedMode<'_>> {
        // Relaxed (both): only distances between two parks are taken from them (any value
        // is safe: a hostile one costs fences or barriers, nothing else).
        let at = match self.side {
            Side::Consumer => self.ring.tail().load(Ordering::Relaxed),
            Side::Producer => self.ring.head().load(Ordering::Relaxed),
        };
        let checks = self.fenced_checks(self.side).load(Ordering::Relaxed);
        let word = self
            .layout
            .aux_word(self.reg.as_ref()?.index(), AUX_FENCED)
            .ok()?;
        Some(FencedMode { at, checks, word })
    }
    fn used_wake(&self) {
        // Only MPMC producers look (`ring_peers`), at their consumers' records.
        if self.kind == Kind::MPMC && self.side == Side::Consumer {
            if let Ok(w) = self.layout.aux_word(self.reg().index(), AUX_WOKEN) {
                note_woken(w);
            }
        }
    }
}

impl AsyncPark for Core {
    fn async_state(&mut self) -> &mut AsyncState {
        &mut self.async_state
    }
    fn token_word(&self) -> Result<&AtomicU64> {
        self.layout.aux_word(self.reg().index(), AUX_TOKEN)
    }
    fn for_each_watched(&self, f: &mut dyn FnMut(ProcessId)) {
        let me = self.reg().index();
        for &side in self.watched_sides() {
            for i in self.records(side) {
                if i == me {
                    continue;
                }
                if let Some(p) = self.layout.participant(i) {
                    f(p.process_id());
                }
            }
        }
    }
    fn force_checks(&mut self) {
        Core::force_checks(self)
    }
    fn pass_on(&self) {
        // Our own side's waiters: the wake we were given was for work of our side.
        self.wait_set(self.side).wake(&self.bells, 1);
    }
    fn more_work(&self) -> bool {
        // Claimed Vyukov positions count as queued: at worst one wake too many, which the
        // rung waiter's re-check absorbs (it parks again).
        match self.side {
            Side::Consumer => self.pending() > 0,
            Side::Producer => self.pending() < self.ring.cap,
        }
    }
}
