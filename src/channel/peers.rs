//! Peers: liveness checks, close detection, and crash repair.
//!
//! - **Close**: [`Core::peers_closed`] reads the other side's clean-close counter (a hint) and
//!   the participant table (the truth); [`Core::closed_error`] turns it into `Closed` or
//!   `PeerGone`.
//! - **Liveness**: [`Core::check_peers`] runs at most once per liveness interval (after every
//!   park, and once every 64 idle attempts on hot paths), reclaims dead participants'
//!   records, and notes deaths.
//! - **Repair** (Vyukov rings): a dead producer's claimed, unpublished slot is released as
//!   abandoned by the consumer that meets it ([`Core::repair_stuck`]); a dead MPMC consumer's
//!   claimed message is adopted by a live consumer ([`Core::adopt_dead_consumer`]). The
//!   shared-memory steps are in `ring/repair.rs`; this file decides when, from liveness.
//!
//! May call `wait`, `ring`, `layout` and `sys`.

use std::time::{Duration, Instant};

use super::core::{AUX_CHUNK_END, Core, Side};
use crate::error::{Error, Result};
use crate::layout::{Kind, Role};
use crate::loom::Ordering;
use crate::ring::{self, Content, repair};
use crate::wait::protocol::{AUX_FENCED, AUX_PARKED};

impl Core {
    /// Cheap check on an empty (full) ring: are peers of the other side gone? Uses the
    /// clean-close counter as a hint and the participant table as the truth; never reads
    /// `/proc`.
    #[inline(always)]
    pub(super) fn peers_closed(&self) -> bool {
        let (counter, flag) = self.side.other().counter_and_flag();
        // Acquire: pairs with the AcqRel updates in finish/drop; a peer's last publish happens
        // before its counter decrement.
        let flags = self.ring.word32(ring::OFF_FLAGS).load(Ordering::Acquire);
        if flags & ring::FLAG_RECV_CLOSED != 0 {
            return true; // Consumer::close: final, for both sides
        }
        if flags & flag == 0 {
            return false;
        }
        // Acquire: as the flags'. A peer attached: the common case on every send, so it is
        // answered here, inline; the rest is the cold path.
        if self.ring.word32(counter).load(Ordering::Acquire) != 0 {
            return false;
        }
        self.peers_closed_slow(flags)
    }

    /// The rest of [`peers_closed`](Self::peers_closed), once the clean-close counter of the
    /// other side reads 0.
    #[cold]
    #[inline(never)]
    fn peers_closed_slow(&self, flags: u32) -> bool {
        // Lifetime::Creator: open while the creator's handle is attached (ours, or one whose
        // process the liveness checks still find alive).
        if flags & ring::FLAG_LIFETIME_CREATOR != 0
            && flags & ring::FLAG_CREATOR_LEFT == 0
            && (self.created || !self.creator_gone)
        {
            return false;
        }
        let range = self.records(self.side.other());
        let want = self.side.other().role();
        !range
            .into_iter()
            .any(|i| self.layout.participant(i).is_some_and(|p| p.role == want))
    }

    /// Whether a hot path (an empty or full attempt) should look at the clock now: once every
    /// `CHECK_EVERY` calls, so spinning on an empty ring does not read the clock each time.
    /// The park path checks liveness after every park regardless.
    #[inline]
    pub(super) fn clock_due(&mut self) -> bool {
        const CHECK_EVERY: u32 = 64;
        self.idle_polls = self.idle_polls.wrapping_add(1);
        self.idle_polls % CHECK_EVERY == 0
    }

    /// When every peer of the other side is gone: `PeerGone` if one died, else `Closed`.
    #[inline(always)]
    pub(super) fn closed_error(&self) -> Option<Error> {
        if !self.peers_closed() {
            return None;
        }
        self.closed_error_slow()
    }

    /// [`closed_error`](Self::closed_error) once the peers are gone.
    #[cold]
    #[inline(never)]
    fn closed_error_slow(&self) -> Option<Error> {
        // Relaxed: `peers_closed` just read the flags with Acquire.
        let by_close =
            self.ring.word32(ring::OFF_FLAGS).load(Ordering::Relaxed) & ring::FLAG_RECV_CLOSED != 0;
        Some(if self.peer_died && !by_close {
            Error::PeerGone(self.peer_gone_message())
        } else {
            Error::Closed
        })
    }

    /// "the server (pid 4242) of endpoint '/usersvc' died", or for a channel "the producer
    /// (pid 4242) of mpsc channel '/orders' died, and no other producer is attached".
    fn peer_gone_message(&self) -> String {
        let role = self.side.other().name();
        let who = match &self.owner {
            Some((_, peer)) => (*peer).to_owned(),
            None => format!("the {role}"),
        };
        let who = match self.dead_peer {
            Some(pid) => format!("{who} (pid {pid})"),
            None => who,
        };
        if self.owner.is_some() {
            format!("{who} of {} died", self.describe())
        } else {
            format!(
                "{who} of {} died, and no other {role} is attached",
                self.describe()
            )
        }
    }

    /// The liveness check, at most once per interval unless `force`: reclaims dead peers'
    /// records (after repairing what they pinned) and notes whether any died. Returns whether
    /// a dead peer was found.
    pub(super) fn check_peers(&mut self, force: bool) -> Result<bool> {
        if !force && self.last_check.elapsed() < self.liveness_interval {
            return Ok(false);
        }
        self.last_check = Instant::now();
        let peer = self.side.other();
        let mut found = self.reclaim_dead(peer)?;
        // In MPMC our own side's dead members pin slots too (consumers adopt their messages).
        if self.kind == Kind::MPMC {
            found |= self.reclaim_dead(self.side)? && self.side == Side::Producer;
        }
        if !self.created && !self.creator_gone && self.lifetime_creator() {
            let creator = self.layout.creator();
            if !creator.is_alive() {
                // The channel's life ended with its creator: from now on, as LastOut.
                self.creator_gone = true;
                self.dead_peer = Some(creator.pid);
                found = true;
            }
        }
        if found {
            self.peer_died = true;
        } else if self.peer_died && !self.peers_closed() {
            // A peer attached since the death (a restarted service): the channel is open
            // again, and its next close is judged afresh.
            self.peer_died = false;
        }
        Ok(found)
    }

    /// Reclaims the records of dead participants of `side`, repairing slots they pinned.
    /// Returns whether any dead one was found.
    pub(super) fn reclaim_dead(&mut self, side: Side) -> Result<bool> {
        let range = self.records(side);
        let want = side.role();
        let mut found = false;
        for i in range {
            if Some(i) == self.reg.map(|r| r.index()) {
                continue;
            }
            let Some(p) = self.layout.participant(i) else {
                continue;
            };
            if p.role != want || p.is_alive() {
                continue;
            }
            found = true;
            self.dead_peer = Some(p.pid());
            let intent = self.layout.intent(i);
            if intent != 0 && self.kind != Kind::SPSC {
                let pinned = match side {
                    Side::Producer => repair::intent_pins_slot(&self.ring, intent, true),
                    // A chunk's: any of its slots.
                    Side::Consumer => self.pinned_by_consumer(i, intent)?.is_some(),
                };
                if pinned {
                    // A dead producer's claimed slot: handled by the consumer that meets it
                    // (repair_stuck); a dead consumer's: adopted by a live MPMC consumer
                    // (adopt). Leave the record until then.
                    continue;
                }
                // Stale intent (the claim failed or was completed): clear it.
                let _ = self.layout.intent_word(i)?.compare_exchange(
                    intent,
                    0,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
            }
            self.release_dead_record(i, side)?;
        }
        Ok(found)
    }

    /// Frees a dead participant's record (its intent is clear), fixing the counters it held.
    pub(super) fn release_dead_record(&self, index: u32, side: Side) -> Result<()> {
        // Take a parked announcement the dead party left, so the count stays exact (the claim
        // below zeroes the record's aux words).
        self.sleepers(side)
            .take(self.layout.aux_word(index, AUX_PARKED)?);
        // And the unit of the fenced count it held, if it was in fenced mode (else the wakers
        // of its side would fence for it forever).
        self.sleepers(side)
            .drop_fenced(self.layout.aux_word(index, AUX_FENCED)?);
        // Take the record over briefly through a claim (which checks death and clear intent
        // again, race-free through the owner CAS), then release it.
        let reg = match self.layout.claim(index, side.role()) {
            Ok(r) => r,
            Err(Error::InUse(_)) => return Ok(()), // someone else got there, or it is alive
            Err(e) => return Err(e),
        };
        self.uncount(side);
        self.layout.release(reg);
        Ok(())
    }

    /// A consumer found the slot at `pos` claimed but unpublished. If no live producer holds
    /// the position, release it as abandoned, and with it the stuck slots that follow (a dead
    /// producer's chunk: up to a ring's worth), up to the first one a live producer may hold.
    /// Returns whether `pos` is now readable.
    pub(super) fn repair_stuck(&mut self, pos: u64) -> Result<bool> {
        // Acquire: pairs with the AcqRel tail CAS of every claim below `tail` (all of them in
        // one release sequence), so the scan below sees those claimers' intents.
        let tail = self.ring.tail().load(Ordering::Acquire);
        let cap = self.ring.cap;
        let mut live = Vec::new();
        for i in self.records(Side::Producer) {
            let intent = self.layout.intent(i);
            if intent == 0 {
                continue;
            }
            if let Some(p) = self.layout.participant(i) {
                if p.is_alive() {
                    live.push(intent);
                }
            }
        }
        // A chunk's intent names its first position only (`repair::intent_covers`).
        let held = |p: u64| live.iter().any(|&i| repair::intent_covers(i, p, cap));
        if held(pos) {
            return Ok(false);
        }
        let mut p = pos;
        let mut repaired = false;
        while p.wrapping_sub(pos) < cap && (tail.wrapping_sub(p) as i64) > 0 && !held(p) {
            // Acquire re-check of the whole condition: still stuck at `p`?
            if repair::blocked_at(&self.ring, p) != repair::Blocked::Unpublished(p) {
                break;
            }
            repair::repair_unpublished(&self.ring, p);
            repaired = true;
            p = p.wrapping_add(1);
        }
        if repaired {
            self.peer_died = true;
            self.wake_everyone();
        }
        Ok(true)
    }

    /// The positions a consumer record's claim holds, from its intent and chunk end: `first ..
    /// end` (a single claim: one position). `Corrupt` for an end that no claim could leave.
    fn consumer_claim(&self, index: u32, intent: u64) -> Result<Option<(u64, u64)>> {
        let Some(first) = intent.checked_sub(1) else {
            return Ok(None);
        };
        // Acquire: the record of a dead consumer, whose stores all happened before its death
        // was seen; pairs with nothing live.
        let end = match self
            .layout
            .aux_word(index, AUX_CHUNK_END)?
            .load(Ordering::Acquire)
        {
            0 => first.wrapping_add(1),
            e => e,
        };
        let span = end.wrapping_sub(first);
        if span == 0 || span > self.ring.cap {
            return Err(Error::Corrupt(format!(
                "participant #{index} of {} claims positions {first}..{end}, more than the {} \
                 slots",
                self.describe(),
                self.ring.cap
            )));
        }
        Ok(Some((first, end)))
    }

    /// The lowest position of a consumer record's claim whose slot it still pins (published,
    /// unfreed, behind the head), if any.
    fn pinned_by_consumer(&self, index: u32, intent: u64) -> Result<Option<u64>> {
        let Some((first, end)) = self.consumer_claim(index, intent)? else {
            return Ok(None);
        };
        let mut p = first;
        while p != end {
            if repair::intent_pins_slot(&self.ring, p.wrapping_add(1), false) {
                return Ok(Some(p));
            }
            p = p.wrapping_add(1);
        }
        Ok(None)
    }

    /// MPMC: takes over a message a dead consumer claimed and never freed: its position and
    /// length, now held by us (read it, then release it), or `None`. A dead consumer's chunk
    /// is adopted one message at a time, lowest first: the dead record's intent then names
    /// the position after the one taken (its chunk end stays), so the next adoption, ours or
    /// another consumer's, continues there.
    pub(super) fn adopt_dead_consumer(&mut self) -> Result<Option<(u64, usize)>> {
        let me = self.reg().index();
        for i in self.records(Side::Consumer) {
            if i == me {
                continue;
            }
            if self.layout.intent(i) == 0 {
                continue;
            }
            // Dead first: only a dead record's intent and chunk end stay still while we read
            // them.
            let Some(p) = self.layout.participant(i) else {
                continue;
            };
            if p.role != Role::CONSUMER || p.is_alive() {
                continue;
            }
            // Bounded: each turn frees a slot of the record's claim or loses a CAS to another
            // adopter; a record whose intent keeps changing (hostile) is left for later.
            for _ in 0..=self.ring.cap {
                let intent = self.layout.intent(i);
                let Some(pos) = self.pinned_by_consumer(i, intent)? else {
                    break;
                };
                let (_, end) = self
                    .consumer_claim(i, intent)?
                    .expect("pinned_by_consumer found a claim");
                let rest = if pos.wrapping_add(1) == end {
                    0
                } else {
                    pos.wrapping_add(2)
                };
                // Our intent first (SeqCst, like a claim's), so that if we die now our record
                // pins the slot in turn; then the CAS on the dead record's intent decides
                // which of several adopters gets it (AcqRel: pairs with the dead consumer's
                // intent store, and with an earlier adopter's CAS).
                self.intent().store(pos.wrapping_add(1), Ordering::SeqCst);
                if self
                    .layout
                    .intent_word(i)?
                    .compare_exchange(intent, rest, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    // Release: like the clear after a release_recv (ring/mpmc.rs), pairs with a
                    // repairer's Acquire read of our intent. Look at the record again.
                    self.intent().store(0, Ordering::Release);
                    continue;
                }
                match ring::content(&self.ring, pos) {
                    Ok(Content::Message(len)) => {
                        self.peer_died = false;
                        return Ok(Some((pos, len)));
                    }
                    Ok(Content::Abandoned | Content::Discarded) => {
                        ring::mpmc::release_recv(&self.ring, pos, self.intent());
                    }
                    Err(e) => {
                        ring::mpmc::release_recv(&self.ring, pos, self.intent());
                        return Err(e);
                    }
                }
            }
        }
        Ok(None)
    }

    /// The side(s) whose deaths a parked handle of ours must notice.
    pub(super) fn watched_sides(&self) -> &'static [Side] {
        match (self.kind == crate::layout::Kind::MPMC, self.side) {
            (true, Side::Consumer) => &[Side::Producer, Side::Consumer],
            (_, Side::Consumer) => &[Side::Producer],
            (_, Side::Producer) => &[Side::Consumer],
        }
    }

    /// Makes the next liveness check and repair look run at once.
    pub(super) fn force_checks(&mut self) {
        let past = Instant::now()
            .checked_sub(
                self.liveness_interval
                    .saturating_add(Duration::from_millis(1)),
            )
            .unwrap_or_else(Instant::now);
        self.last_check = past;
        self.last_repair = past;
        self.idle_polls = u32::MAX; // the next attempt reads the clock
    }
}
