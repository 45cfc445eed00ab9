//! Multi-producer multi-consumer ring: Dmitry Vyukov's bounded queue with a sequence word per
//! slot, plus the crash-repair protocol of DESIGN.md.
//!
//! Slot `i` starts with `seq = i`. For position `p` in slot `p % cap`:
//! - `seq == p`: free for the producer of `p`;
//! - `seq == p + 1`: holds the message of `p`, for the consumer of `p`;
//! - `seq == p + cap`: consumed, free for the producer of `p + cap`.
//!
//! A producer claims `p` with a CAS of `tail` from `p` to `p + 1`, writes the slot, and
//! publishes with a release store `seq = p + 1`. A consumer claims with a CAS of `head` and
//! frees with a release store `seq = p + cap`.
//!
//! # Intents and repair
//!
//! Before each CAS a party stores `intent = p + 1` (SeqCst) in its participant record, and
//! clears it after its sequence store, so a live party holds position `p` only while its intent
//! is `p + 1`. A slot stuck at `p` (a consumer sees `seq == p` while `tail > p`) whose every
//! intent holder is dead (or that no live record claims) is repaired by CAS of `seq` from `p` to
//! `p + 1` with the length [`ABANDONED`]: consumers skip it. A slot a dead consumer claimed
//! (`seq == p + 1` while `head > p`, a dead record with intent `p + 1`) still holds its intact
//! message: a live consumer adopts it (its own intent first, then a CAS on the dead record's
//! intent), reads it and frees it: redelivery, not loss.

use super::{ABANDONED, Ring};
use crate::error::{Error, Result};
use crate::loom::{AtomicU64, Ordering};

/// The relation of a sequence word to a position, as a signed distance.
fn dist(seq: u64, target: u64) -> i64 {
    seq.wrapping_sub(target) as i64
}

/// Vyukov's claim, shared by both sides: the next position `p` of `counter` (tail for
/// producers, head for consumers) whose slot sequence equals `p + offset` (0 for producers:
/// free; 1 for consumers: published) is claimed with a CAS of `counter`, announced first in
/// `intent`. `Ok(None)` when the slot at `counter` is not ready (full / empty).
#[inline]
fn claim(
    ring: &Ring,
    counter: &AtomicU64,
    offset: u64,
    intent: &AtomicU64,
    what: &str,
) -> Result<Option<u64>> {
    let mut pos = counter.load(Ordering::Relaxed);
    loop {
        let idx = ring.index(pos);
        // Acquire: pairs with the Release store of the slot's sequence by the other side
        // (`publish_send` / `release_recv`): its access to the slot bytes happens before ours.
        let seq = ring.seq(idx).load(Ordering::Acquire);
        let d = dist(seq, pos.wrapping_add(offset));
        if d == 0 {
            // SeqCst: the intent must be visible before the CAS that claims `pos` (the CAS is
            // Release for the same reason); a repairer that sees the counter past `pos` sees
            // this intent.
            intent.store(pos.wrapping_add(1), Ordering::SeqCst);
            match counter.compare_exchange_weak(
                pos,
                pos.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Some(pos)),
                Err(now) => pos = now,
            }
        } else if d < 0 {
            // The slot still belongs to the previous lap: full (producers) / empty (consumers).
            intent.store(0, Ordering::Relaxed);
            return Ok(None);
        } else {
            // Someone else claimed `pos`; the counter must have moved past it.
            let now = counter.load(Ordering::Relaxed);
            if now <= pos {
                return Err(Error::Corrupt(format!(
                    "slot sequence {seq} is ahead of position {pos} but {what} is {now}"
                )));
            }
            pos = now;
        }
    }
}

/// Claims the next position for a producer: `Ok(Some(p))`, or `Ok(None)` when the ring is
/// full. `intent` is this producer's intent word.
#[inline]
pub(crate) fn claim_send(ring: &Ring, intent: &AtomicU64) -> Result<Option<u64>> {
    claim(ring, ring.tail(), 0, intent, "tail")
}

/// Publishes the claimed position `pos`, whose length and bytes are written.
#[inline]
pub(crate) fn publish_send(ring: &Ring, pos: u64, intent: &AtomicU64) {
    // Release: pairs with the consumer's Acquire load of `seq` in `claim_recv`/`peek_single`:
    // the bytes and length are visible before the message is.
    ring.seq(ring.index(pos))
        .store(pos.wrapping_add(1), Ordering::Release);
    // Release: a repairer that reads the cleared intent (Acquire) also sees the sequence store.
    intent.store(0, Ordering::Release);
}

/// Claims the next readable position for one of several consumers: `Ok(Some(p))`, or
/// `Ok(None)` when nothing is ready at the head.
#[inline]
pub(crate) fn claim_recv(ring: &Ring, intent: &AtomicU64) -> Result<Option<u64>> {
    claim(ring, ring.head(), 1, intent, "head")
}

/// Frees the slot of a consumed position.
#[inline]
pub(crate) fn release_recv(ring: &Ring, pos: u64, intent: &AtomicU64) {
    // Release: pairs with the producer's Acquire load of `seq` in `claim_send`: our copy out of
    // the slot happens before its next write.
    ring.seq(ring.index(pos))
        .store(pos.wrapping_add(ring.cap), Ordering::Release);
    intent.store(0, Ordering::Release);
}

/// What is in the way at position `pos` for a consumer that found nothing ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// Nothing was claimed at `pos`: the ring is simply empty.
    Empty,
    /// A producer claimed `pos` (tail is past it) and has not published yet.
    Unpublished(u64),
}

/// Classifies an empty-looking ring at `pos` (the consumer's head).
pub(crate) fn blocked_at(ring: &Ring, pos: u64) -> Blocked {
    // Acquire: pairs with the AcqRel CAS of the claimer, so its intent is visible after this.
    let tail = ring.tail().load(Ordering::Acquire);
    let seq = ring.seq(ring.index(pos)).load(Ordering::Acquire);
    if tail > pos && seq == pos {
        Blocked::Unpublished(pos)
    } else {
        Blocked::Empty
    }
}

/// Releases the slot of `pos`, claimed by a producer that is proven dead, as abandoned.
/// Returns whether this call did it (two repairers cannot both win the CAS).
pub(crate) fn repair_unpublished(ring: &Ring, pos: u64) -> bool {
    let idx = ring.index(pos);
    // The claimer is dead, so only repairers write this length, all the same value.
    ring.len(idx).store(ABANDONED, Ordering::Relaxed);
    // Release: pairs with the consumers' Acquire of `seq`: they see the ABANDONED length.
    ring.seq(idx)
        .compare_exchange(
            pos,
            pos.wrapping_add(1),
            Ordering::Release,
            Ordering::Relaxed,
        )
        .is_ok()
}

/// Whether a dead party's intent `p + 1` still pins a slot: for a producer, `seq == p` while
/// `tail > p`; for a consumer, `seq == p + 1` while `head > p`.
pub(crate) fn intent_pins_slot(ring: &Ring, intent: u64, producer: bool) -> bool {
    let Some(pos) = intent.checked_sub(1) else {
        return false;
    };
    let seq = ring.seq(ring.index(pos)).load(Ordering::Acquire);
    if producer {
        seq == pos && ring.tail().load(Ordering::Acquire) > pos
    } else {
        seq == pos.wrapping_add(1) && ring.head().load(Ordering::Acquire) > pos
    }
}
