//! Crash repair for the Vyukov rings (MPSC, MPMC): intents, pinned slots, winner-only repair.
//!
//! Vyukov's ring wedges when a party dies between claiming a position (the CAS on tail or
//! head) and releasing the slot (the store of its sequence). The participant table lets us
//! prove a claimer dead (pid + start time), so we repair only then, never on a timeout alone.
//!
//! Before each CAS a party stores `intent = p + 1` (Relaxed: the CAS's Release publishes it to
//! whoever Acquires the counter past `p`) in its participant record, and
//! clears it after its sequence store, so a live party holds position `p` only while its intent
//! is `p + 1`. A slot stuck at `p` (a consumer sees `seq == p` while `tail > p`) whose every
//! intent holder is dead (or that no live record claims) is repaired by CAS of `seq` from `p` to
//! `(p + 1) | ABANDONED_TAG`: consumers skip it. A slot a dead consumer claimed
//! (`seq == p + 1` while `head > p`, a dead record with intent `p + 1`) still holds its intact
//! message: a live consumer adopts it (its own intent first, then a CAS on the dead record's
//! intent), reads it and frees it: redelivery, not loss.
//!
//! The callers (channel/peers.rs) decide *when* to repair, from liveness; this file holds the
//! shared-memory steps, which loom models (`ring/loom_models.rs`) race against each other.

use super::{ABANDONED_TAG, Ring};
use crate::loom::Ordering;

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
    // One CAS is the whole repair: it picks the winner and marks the slot, so a repairer that
    // loses (or runs late, after the slot was consumed and reused) writes nothing. Release:
    // pairs with the consumers' Acquire of `seq` in their claim, like a publish.
    ring.seq(idx)
        .compare_exchange(
            pos,
            pos.wrapping_add(1) | ABANDONED_TAG,
            Ordering::Release,
            Ordering::Relaxed,
        )
        .is_ok()
}

/// Whether a *producer's* intent word `intent` may hold position `pos`: it names `q + 1` for a
/// `q` at most `cap - 1` positions before `pos`. A chunk (`mpmc::claim_send_many`) holds up
/// to `cap` positions from the one its intent names, so a repairer takes a live producer with
/// such an intent for a holder of every one of them. That is conservative only for a moment:
/// a live single claim at `q < pos` was published before the head reached `pos` (the
/// consumer reads in position order), and its intent is cleared right after.
pub(crate) fn intent_covers(intent: u64, pos: u64, cap: u64) -> bool {
    match intent.checked_sub(1) {
        Some(first) => pos.wrapping_sub(first) < cap,
        None => false,
    }
}

/// Whether a dead party's intent `p + 1` still pins a slot: for a producer, `seq == p` while
/// `tail > p`; for a consumer, `seq == p + 1` while `head > p`.
pub(crate) fn intent_pins_slot(ring: &Ring, intent: u64, producer: bool) -> bool {
    let Some(pos) = intent.checked_sub(1) else {
        return false;
    };
    // Acquire (all three): pair with the Release stores of `seq` (publish / free) and the
    // AcqRel CASes of tail / head, so that a slot freed or published before is not seen pinned.
    let seq = ring.seq(ring.index(pos)).load(Ordering::Acquire) & !ABANDONED_TAG;
    if producer {
        seq == pos && ring.tail().load(Ordering::Acquire) > pos
    } else {
        seq == pos.wrapping_add(1) && ring.head().load(Ordering::Acquire) > pos
    }
}
