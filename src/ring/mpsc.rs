//! Multi-producer single-consumer ring: Vyukov producers ([`super::mpmc::claim_send`] and
//! [`super::mpmc::publish_send`]) and one consumer that needs no CAS.
//!
//! The consumer keeps `head` locally and stores it to shared memory after freeing each slot, so
//! that a consumer that replaces a dead one resumes where it stopped: a slot the dead one read
//! but did not free is read again (redelivery); a slot it freed without storing `head` is
//! recognised by its sequence (`p + cap`, or `p + cap + 1` once reused) and skipped.

use super::{ABANDONED_TAG, RecvSide, Ring};
use crate::error::{Error, Result};
use crate::loom::{AtomicU64, Ordering};

/// The single consumer's process-local state.
#[derive(Debug)]
pub struct Rx {
    /// The next position to read; the shared `head` equals it after each free (or lags by one
    /// if we die between the free and the store, which a replacement recognises by `seq`).
    head: u64,
}

impl Rx {
    pub(crate) fn attach(ring: &Ring) -> Result<Rx> {
        // Acquire: pairs with the Release store of head by a previous consumer.
        let head = ring.head().load(Ordering::Acquire);
        let tail = ring.tail().load(Ordering::Acquire);
        super::checked_pending(tail, head, ring.cap)?;
        Ok(Rx { head })
    }

    /// The next readable position, or `None` when the slot at the head is not published.
    #[inline]
    pub(crate) fn peek(&mut self, ring: &Ring) -> Result<Option<u64>> {
        loop {
            let pos = self.head;
            // Acquire: pairs with the producer's Release store `seq = p + 1` in publish_send.
            // An abandoned slot (tagged by a repair) counts as published for its position.
            let seq = ring.seq(ring.index(pos)).load(Ordering::Acquire) & !ABANDONED_TAG;
            let ready = pos.wrapping_add(1);
            let freed = pos.wrapping_add(ring.cap);
            if seq == ready {
                return Ok(Some(pos));
            }
            if seq == freed || seq == freed.wrapping_add(1) {
                // Freed by a consumer that died before storing head: skip it.
                self.store_head(ring, ready);
                continue;
            }
            if seq.wrapping_sub(ready) as i64 > 0 {
                return Err(Error::Corrupt(format!(
                    "slot sequence {seq} at consumer position {pos} is none of {ready}, {freed} \
                     or {}",
                    freed.wrapping_add(1)
                )));
            }
            return Ok(None);
        }
    }

    /// Up to `n` readable consecutive positions from the head: the first (as
    /// [`peek`](Self::peek)) and how many (0 when nothing is ready). Claims nothing: the
    /// head is ours alone.
    #[inline]
    pub(crate) fn peek_many(&mut self, ring: &Ring, n: u64) -> Result<(u64, u64)> {
        if n == 0 {
            return Ok((self.head, 0));
        }
        let Some(pos) = self.peek(ring)? else {
            return Ok((self.head, 0));
        };
        let n = n.min(ring.cap);
        let mut k = 1;
        while k < n {
            let p = pos.wrapping_add(k);
            // Acquire: as in `peek`, pairs with the producer's Release store of `seq`.
            if ring.seq(ring.index(p)).load(Ordering::Acquire) & !ABANDONED_TAG != p.wrapping_add(1)
            {
                break;
            }
            k += 1;
        }
        Ok((pos, k))
    }

    /// Frees the `n` slots from `pos` (the current head) after they were read: a sequence
    /// store each, then one store of `head`. A consumer that dies between the two leaves
    /// freed slots behind `head`, which a replacement recognises and skips (`peek`).
    #[inline]
    pub(crate) fn release_many(&mut self, ring: &Ring, pos: u64, n: u64) {
        debug_assert_eq!(pos, self.head);
        for i in 0..n {
            let p = pos.wrapping_add(i);
            // Release: pairs with the producers' Acquire of `seq` in their claim.
            ring.seq(ring.index(p))
                .store(p.wrapping_add(ring.cap), Ordering::Release);
        }
        self.store_head(ring, pos.wrapping_add(n));
    }

    /// The position the consumer reads next.
    pub(crate) fn position(&self) -> u64 {
        self.head
    }

    fn store_head(&mut self, ring: &Ring, head: u64) {
        self.head = head;
        // Release: producers and later consumers read head only for counts and resumption;
        // ordering after the slot's free keeps `tail - head <= cap` for them.
        ring.head().store(head, Ordering::Release);
    }

    /// Frees the slot of `pos` (the current head) after it was read.
    #[inline]
    pub(crate) fn release(&mut self, ring: &Ring, pos: u64) {
        debug_assert_eq!(pos, self.head);
        // Release: pairs with the producers' Acquire of `seq` in claim_send.
        ring.seq(ring.index(pos))
            .store(pos.wrapping_add(ring.cap), Ordering::Release);
        self.store_head(ring, pos.wrapping_add(1));
    }
}

impl RecvSide for Rx {
    const ADOPTS: bool = false;
    fn attach(ring: &Ring) -> Result<Rx> {
        Rx::attach(ring)
    }
    #[inline]
    fn claim(&mut self, ring: &Ring, _intent: &AtomicU64) -> Result<Option<u64>> {
        self.peek(ring)
    }
    #[inline]
    fn release(&mut self, ring: &Ring, pos: u64, _intent: &AtomicU64) {
        Rx::release(self, ring, pos)
    }
    fn blocked_head(&self, _ring: &Ring) -> Option<u64> {
        Some(self.head)
    }
    #[inline]
    fn release_many(
        &mut self,
        ring: &Ring,
        pos: u64,
        n: u64,
        _intent: &AtomicU64,
        _end: &AtomicU64,
    ) {
        Rx::release_many(self, ring, pos, n)
    }
}
