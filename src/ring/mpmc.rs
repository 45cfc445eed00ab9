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
//! A party stores its intent (`p + 1`) in its participant record before each claim CAS and
//! clears it after its sequence store, so a dead party's claim can be found and repaired:
//! [`super::repair`] has that protocol.
//!
//! [`Tx`] and [`Rx`] are the [`SendSide`] / [`RecvSide`] of the MPMC flavour; MPSC producers
//! use [`Tx`] too.

use super::{ABANDONED_TAG, DISCARDED, RecvSide, Ring, SendSide};
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
///
/// Always inlined into `claim_send` / `claim_recv` (out of line, its calls cost a third of
/// its ~38 instructions in prologue and epilogue: callgrind, `worker_pool` bench), with the
/// corrupt-counter error out of line.
#[inline(always)]
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
        // An abandoned slot (tagged by a repair) counts as published for its position.
        let d = dist(seq & !ABANDONED_TAG, pos.wrapping_add(offset));
        if d == 0 {
            // Relaxed: the CAS below orders it. Its Release (on success) publishes this
            // intent to a repairer whose Acquire load of the counter (`blocked_at`) sees the
            // claim or any later claim (every write of the counter is a CAS, so all of them are
            // in the release sequence of ours); a repairer that sees the counter past `pos`
            // therefore sees this intent (loom: `loom_mpmc_claim_publishes_its_intent`). An
            // intent left by a failed CAS names a position we do not hold, which only makes a
            // repairer wait while we live. AcqRel on success: Acquire pairs with the previous
            // claimer's CAS (its intent store happens before our claim).
            intent.store(pos.wrapping_add(1), Ordering::Relaxed);
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
                return Err(seq_ahead(seq, pos, what, now));
            }
            pos = now;
        }
    }
}

/// `claim`'s error for a sequence word ahead of a counter that did not move past it.
#[cold]
#[inline(never)]
fn seq_ahead(seq: u64, pos: u64, what: &str, now: u64) -> Error {
    Error::Corrupt(format!(
        "slot sequence {seq} is ahead of position {pos} but {what} is {now}"
    ))
}

/// Claims the next position for a producer: `Ok(Some(p))`, or `Ok(None)` when the ring is
/// full. `intent` is this producer's intent word.
#[inline]
pub(crate) fn claim_send(ring: &Ring, intent: &AtomicU64) -> Result<Option<u64>> {
    claim(ring, ring.tail(), 0, intent, "tail")
}

/// Claims up to `n` consecutive positions for a producer at once (a chunk,
/// `Producer::try_reserve_many`): `Ok(Some((p, k)))` for positions `p .. p + k`, `1 <= k <= n`,
/// or `Ok(None)` when the ring is full (or `n` is 0; with `exact`, when fewer than `n` are
/// free: nothing is claimed then, since a Vyukov claim cannot be given back).
///
/// One CAS of `tail` from `p` to `p + k`, after reading the `k` slots' sequence words: each
/// must be free for its position (consumers free slots out of order, so a free slot at
/// `p + k - 1` says nothing of `p`); the run stops at the first that is not. The slots stay
/// free for their positions until we publish them, since only the claimer of a position
/// writes a free slot (a repair's CAS needs the slot claimed, `tail > p`, and a dead holder).
///
/// The intent names the first position (`p + 1`), as a single claim's does: a repairer
/// treats a live producer's intent `q + 1` as holding every position from `q` to `q + cap
/// - 1` (`repair::intent_covers`), so a chunk's later slots are never repaired while it lives.
#[inline]
pub(crate) fn claim_send_many(
    ring: &Ring,
    intent: &AtomicU64,
    n: u64,
    exact: bool,
) -> Result<Option<(u64, u64)>> {
    if exact && n > ring.cap {
        return Ok(None);
    }
    // A slot joins the run only while it is free for its position (a tagged sequence is never
    // free: `!=` is exact).
    claim_many(ring, ring.tail(), 0, intent, None, n, exact, |seq, p| {
        seq == p
    })
}

/// [`claim_send_many`] and [`claim_recv_many`], as [`claim`] is for single positions: the
/// next position `p` of `counter` whose slot sequence (tag cleared) is `p + offset`, and the
/// run of up to `n` after it for which `joins(seq, q)` holds, claimed with one CAS of
/// `counter`; `end` (consumers) receives the run's end before the intent, and 0 on every
/// return without a claim.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn claim_many(
    ring: &Ring,
    counter: &AtomicU64,
    offset: u64,
    intent: &AtomicU64,
    end: Option<&AtomicU64>,
    n: u64,
    exact: bool,
    mut joins: impl FnMut(u64, u64) -> bool,
) -> Result<Option<(u64, u64)>> {
    let no_chunk = || {
        if let Some(e) = end {
            // Relaxed: our own record's word, read only once we are dead.
            e.store(0, Ordering::Relaxed);
        }
    };
    if n == 0 {
        no_chunk();
        return Ok(None);
    }
    let n = n.min(ring.cap);
    let mut pos = counter.load(Ordering::Relaxed);
    loop {
        // Acquire (each): pairs with the Release store of the slot's sequence by the other
        // side (`publish_send*` / `release_recv*`, a repair, the MPSC consumer's free): its
        // access to the slot bytes happens before ours.
        let first = ring.seq(ring.index(pos)).load(Ordering::Acquire);
        let d = dist(first & !ABANDONED_TAG, pos.wrapping_add(offset));
        if d == 0 {
            let mut k = 1;
            while k < n {
                let p = pos.wrapping_add(k);
                if !joins(ring.seq(ring.index(p)).load(Ordering::Acquire), p) {
                    break;
                }
                k += 1;
            }
            if exact && k < n {
                intent.store(0, Ordering::Relaxed);
                no_chunk();
                return Ok(None);
            }
            // Relaxed (all): published by the CAS's Release, as in `claim`; the end is read
            // only once we are dead.
            if let Some(e) = end {
                e.store(
                    if k > 1 { pos.wrapping_add(k) } else { 0 },
                    Ordering::Relaxed,
                );
            }
            intent.store(pos.wrapping_add(1), Ordering::Relaxed);
            match counter.compare_exchange_weak(
                pos,
                pos.wrapping_add(k),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Some((pos, k))),
                Err(now) => pos = now,
            }
        } else if d < 0 {
            intent.store(0, Ordering::Relaxed);
            no_chunk();
            return Ok(None);
        } else {
            let now = counter.load(Ordering::Relaxed);
            if now <= pos {
                no_chunk();
                let what = if offset == 0 { "tail" } else { "head" };
                return Err(seq_ahead(first, pos, what, now));
            }
            pos = now;
        }
    }
}

/// Publishes the first `k` of the `n` positions claimed at `pos` by [`claim_send_many`] (their
/// lengths and bytes written), in position order, and gives back the other `n - k` as
/// discarded (consumers skip them); then clears the intent.
#[inline]
pub(crate) fn publish_send_many(ring: &Ring, pos: u64, k: u64, n: u64, intent: &AtomicU64) {
    debug_assert!(k <= n && n <= ring.cap);
    for i in 0..n {
        let p = pos.wrapping_add(i);
        let idx = ring.index(p);
        if i >= k {
            // Relaxed: ordered by the Release store of `seq` below.
            ring.len(idx).store(DISCARDED, Ordering::Relaxed);
        }
        // Release: pairs with the consumer's Acquire load of `seq` in `claim_recv` (MPMC) or
        // `mpsc::Rx::peek`: the bytes and length are visible before the message is.
        ring.seq(idx).store(p.wrapping_add(1), Ordering::Release);
    }
    // Release: a repairer that reads the cleared intent (Acquire) also sees the sequence
    // stores.
    intent.store(0, Ordering::Release);
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

/// Claims up to `n` consecutive readable positions for one of several consumers at once (a
/// chunk, `Consumer::try_recv_many`): `Ok(Some((p, k)))`, or `Ok(None)` when nothing is ready
/// at the head. `ready(p)` says whether the published slot of `p` may join the chunk (the
/// caller's content check: a chunk holds messages only); the first slot is always taken.
///
/// As [`claim_send_many`] on the other side: the `k` slots must each be published for their
/// position, one CAS of `head` takes them all, and they stay ours (and published) until we
/// free them. `end` (our record's [`AUX_CHUNK_END`](crate::channel) word) receives `p + k`
/// before the intent, so a dead consumer's record tells an adopter which positions it held;
/// it is 0 again whenever this returns without a chunk, so a later single claim never
/// inherits it.
#[inline]
pub(crate) fn claim_recv_many(
    ring: &Ring,
    intent: &AtomicU64,
    end: &AtomicU64,
    n: u64,
    mut ready: impl FnMut(u64) -> bool,
) -> Result<Option<(u64, u64)>> {
    claim_many(
        ring,
        ring.head(),
        1,
        intent,
        Some(end),
        n,
        false,
        |seq, p| seq & !ABANDONED_TAG == p.wrapping_add(1) && ready(p),
    )
}

/// Frees the `n` slots of a chunk [`claim_recv_many`] claimed at `pos`, then clears the intent
/// and the chunk end.
#[inline]
pub(crate) fn release_recv_many(
    ring: &Ring,
    pos: u64,
    n: u64,
    intent: &AtomicU64,
    end: &AtomicU64,
) {
    for i in 0..n {
        let p = pos.wrapping_add(i);
        // Release: as in `release_recv`.
        ring.seq(ring.index(p))
            .store(p.wrapping_add(ring.cap), Ordering::Release);
    }
    // Release: as in `release_recv`; the end after it (a dead record's end counts only with
    // its intent).
    intent.store(0, Ordering::Release);
    end.store(0, Ordering::Relaxed);
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

/// A Vyukov producer. Its only process-local state: how many messages a `Sink` fed were
/// published without a wake yet (the claim is a CAS on the shared tail).
#[derive(Debug)]
pub struct Tx {
    /// Published by `stage` (`Sink::feed`), their wake deferred to the next flush or publish.
    unwoken: u64,
}

impl SendSide for Tx {
    fn attach(_ring: &Ring) -> Result<Tx> {
        Ok(Tx { unwoken: 0 })
    }
    #[inline]
    fn claim(&mut self, ring: &Ring, intent: &AtomicU64) -> Result<Option<u64>> {
        claim_send(ring, intent)
    }
    #[inline]
    fn publish(&mut self, ring: &Ring, pos: u64, intent: &AtomicU64) {
        // The caller wakes after this: that wake covers what was fed before.
        self.unwoken = 0;
        publish_send(ring, pos, intent)
    }
    /// Publishes at once (an unpublished Vyukov claim would hold back the messages of other
    /// producers behind it) but defers the *wake* to the flush: consumers that are not parked
    /// see the message now, parked ones when the batch is flushed (or 32 are fed). The flush
    /// rings one waiter, which rings the next if work remains (the chain in
    /// `reactor::poll_wait`): a batch wakes the workers that find work in it, instead of one
    /// worker per message.
    #[inline]
    fn stage(&mut self, ring: &Ring, pos: u64, intent: &AtomicU64) -> bool {
        publish_send(ring, pos, intent);
        self.unwoken += 1;
        false
    }
    #[inline]
    fn staged(&self) -> u64 {
        self.unwoken
    }
    #[inline]
    fn flush(&mut self, _ring: &Ring) -> bool {
        std::mem::take(&mut self.unwoken) != 0
    }
    fn discard(&mut self, ring: &Ring, pos: u64, intent: &AtomicU64) {
        // The position is claimed in shared memory: publish it as discarded (consumers skip
        // it). Relaxed: ordered by the Release store of `seq` in publish_send.
        ring.len(ring.index(pos))
            .store(DISCARDED, Ordering::Relaxed);
        publish_send(ring, pos, intent)
    }
    #[inline]
    fn claim_many(
        &mut self,
        ring: &Ring,
        intent: &AtomicU64,
        n: u64,
        exact: bool,
    ) -> Result<(u64, u64)> {
        // Fed messages are published already (`stage`); their deferred wake goes with the
        // chunk's commit.
        Ok(claim_send_many(ring, intent, n, exact)?.unwrap_or((0, 0)))
    }
    #[inline]
    fn publish_many(&mut self, ring: &Ring, pos: u64, k: u64, n: u64, intent: &AtomicU64) {
        // The caller wakes after this: that wake covers what was fed before.
        self.unwoken = 0;
        publish_send_many(ring, pos, k, n, intent)
    }
}

/// A consumer of several: no process-local state.
#[derive(Debug)]
pub struct Rx;

impl RecvSide for Rx {
    const ADOPTS: bool = true;
    fn attach(_ring: &Ring) -> Result<Rx> {
        Ok(Rx)
    }
    #[inline]
    fn claim(&mut self, ring: &Ring, intent: &AtomicU64) -> Result<Option<u64>> {
        claim_recv(ring, intent)
    }
    #[inline]
    fn release(&mut self, ring: &Ring, pos: u64, intent: &AtomicU64) {
        release_recv(ring, pos, intent)
    }
    fn blocked_head(&self, ring: &Ring) -> Option<u64> {
        // Acquire: pairs with the AcqRel head CAS of other consumers (a position they claimed
        // is behind the value read).
        Some(ring.head().load(Ordering::Acquire))
    }
    fn release_many(&mut self, ring: &Ring, pos: u64, n: u64, intent: &AtomicU64, end: &AtomicU64) {
        release_recv_many(ring, pos, n, intent, end)
    }
}
