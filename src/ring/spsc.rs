//! Single-producer single-consumer ring: Lamport's queue with cached indices (rtrb, Agrona's
//! OneToOne). The producer owns `tail`, the consumer owns `head`; each keeps a process-local
//! copy of the other's index and reloads it only when the ring looks full (empty), so a busy
//! stream touches the other side's cache line once per lap, not once per message.
//!
//! A slot becomes visible only by the release store of `tail` after its bytes are written, so
//! no message is ever seen torn. A producer that dies mid-write leaves nothing visible; a
//! consumer that dies mid-read has not advanced `head`, so the next consumer reads the same
//! message again. No repair is needed.

use super::{RecvSide, Ring, SendSide, checked_pending};
use crate::error::{Error, Result};
use crate::loom::{AtomicU64, Ordering};

/// The producer's process-local state.
#[derive(Debug)]
pub struct Tx {
    /// Next position to write. Invariant: `cached_head <= tail <= cached_head + cap`.
    tail: u64,
    /// Last value stored to the shared `tail`: slots in `published..tail` are written and
    /// *staged* (a `Sink` fed them and has not flushed), not yet visible to the consumer.
    published: u64,
    /// Last `head` seen.
    cached_head: u64,
}

impl Tx {
    /// Attaches to a ring whose `tail` this producer now owns.
    pub(crate) fn attach(ring: &Ring) -> Result<Tx> {
        // Acquire: pairs with the Release stores of a previous producer (tail) and the consumer
        // (head), so slots freed before are ours to overwrite.
        let tail = ring.tail().load(Ordering::Acquire);
        let head = ring.head().load(Ordering::Acquire);
        checked_pending(tail, head, ring.cap)?;
        Ok(Tx {
            tail,
            published: tail,
            cached_head: head,
        })
    }

    /// Reloads `head`, checking that it moved only forward and stays within a lap.
    fn reload_head(&mut self, ring: &Ring) -> Result<()> {
        // Acquire: pairs with the consumer's Release store of `head` in `Rx::release`: the
        // consumer's reads of the slots it freed happen before we overwrite them.
        let head = ring.head().load(Ordering::Acquire);
        if head < self.cached_head {
            return Err(Error::Corrupt(format!(
                "ring head went back from {} to {head}",
                self.cached_head
            )));
        }
        checked_pending(self.tail, head, ring.cap)?;
        self.cached_head = head;
        Ok(())
    }

    /// Free slots as far as this producer knows after reloading `head`.
    pub(crate) fn free(&mut self, ring: &Ring) -> Result<u64> {
        self.reload_head(ring)?;
        Ok(ring.cap - (self.tail.wrapping_sub(self.cached_head)))
    }

    /// Claims up to `n` consecutive slots: the first position and how many (0 when full).
    #[inline]
    pub(crate) fn claim(&mut self, ring: &Ring, n: u64) -> Result<(u64, u64)> {
        debug_assert!(self.tail.wrapping_sub(self.cached_head) <= ring.cap);
        let mut free = ring.cap - (self.tail.wrapping_sub(self.cached_head));
        if free < n {
            self.reload_head(ring)?;
            free = ring.cap - (self.tail.wrapping_sub(self.cached_head));
        }
        Ok((self.tail, free.min(n)))
    }

    /// Publishes `n` slots from the claimed position; their lengths and bytes are written.
    #[inline]
    pub(crate) fn publish(&mut self, ring: &Ring, n: u64) {
        debug_assert!(self.tail.wrapping_add(n).wrapping_sub(self.cached_head) <= ring.cap);
        // Wrapping: a hostile peer may have started us near u64::MAX; the next reload then
        // reports Corrupt instead of this process panicking on overflow.
        self.tail = self.tail.wrapping_add(n);
        self.store_tail(ring);
    }

    /// Stages `n` written slots from the claimed position without making them visible: the
    /// next [`publish`](Self::publish) or [`flush`](Self::flush) publishes them with its own
    /// (positions are consecutive, so the order is kept).
    #[inline]
    pub(crate) fn stage(&mut self, ring: &Ring, n: u64) {
        debug_assert!(self.tail.wrapping_add(n).wrapping_sub(self.cached_head) <= ring.cap);
        self.tail = self.tail.wrapping_add(n);
    }

    /// Slots staged and not yet published.
    #[inline]
    pub(crate) fn staged(&self) -> u64 {
        self.tail.wrapping_sub(self.published)
    }

    /// Publishes the staged slots: whether there were any (then the caller wakes).
    #[inline]
    pub(crate) fn flush(&mut self, ring: &Ring) -> bool {
        if self.published == self.tail {
            return false;
        }
        self.store_tail(ring);
        true
    }

    #[inline]
    fn store_tail(&mut self, ring: &Ring) {
        self.published = self.tail;
        // Release: pairs with the consumer's Acquire load of `tail` in `Rx::reload_tail`; the
        // slot bytes and lengths written before (staged ones included) are visible once the
        // new tail is.
        ring.tail().store(self.tail, Ordering::Release);
    }

    /// The position the next claim starts at.
    #[inline]
    pub(crate) fn position(&self) -> u64 {
        self.tail
    }
}

/// The consumer's process-local state.
#[derive(Debug)]
pub struct Rx {
    /// Next position to read. Invariant: `stored <= head <= cached_tail <= stored + cap`.
    head: u64,
    /// Last value stored to the shared `head`: slots in `stored..head` were read by a batch
    /// receive (`recv_many`) that frees them all with one store before it returns.
    stored: u64,
    /// Last `tail` seen.
    cached_tail: u64,
}

impl Rx {
    /// Attaches to a ring whose `head` this consumer now owns.
    pub(crate) fn attach(ring: &Ring) -> Result<Rx> {
        // Acquire: pairs with the Release stores of tail (producer) and of head (a previous
        // consumer).
        let head = ring.head().load(Ordering::Acquire);
        let tail = ring.tail().load(Ordering::Acquire);
        checked_pending(tail, head, ring.cap)?;
        Ok(Rx {
            head,
            stored: head,
            cached_tail: tail,
        })
    }

    fn reload_tail(&mut self, ring: &Ring) -> Result<()> {
        // Acquire: pairs with the producer's Release store of `tail` in `Tx::publish`.
        let tail = ring.tail().load(Ordering::Acquire);
        if tail < self.cached_tail {
            return Err(Error::Corrupt(format!(
                "ring tail went back from {} to {tail}",
                self.cached_tail
            )));
        }
        checked_pending(tail, self.head, ring.cap)?;
        self.cached_tail = tail;
        Ok(())
    }

    /// Queued messages after reloading `tail`.
    pub(crate) fn pending(&mut self, ring: &Ring) -> Result<u64> {
        self.reload_tail(ring)?;
        Ok(self.cached_tail.wrapping_sub(self.head))
    }

    /// Up to `n` readable consecutive positions: the first and how many (0 when empty).
    #[inline]
    pub(crate) fn peek(&mut self, ring: &Ring, n: u64) -> Result<(u64, u64)> {
        let mut ready = self.cached_tail.wrapping_sub(self.head);
        if ready < n {
            self.reload_tail(ring)?;
            ready = self.cached_tail.wrapping_sub(self.head);
        }
        Ok((self.head, ready.min(n)))
    }

    /// Frees `n` slots from the current position after they were read (and any deferred
    /// before them).
    #[inline]
    pub(crate) fn release(&mut self, ring: &Ring, n: u64) {
        debug_assert!(n <= self.cached_tail.wrapping_sub(self.head));
        self.head = self.head.wrapping_add(n);
        self.store_head(ring);
    }

    /// Frees `n` read slots in this handle only: the next `release` or `flush` stores them.
    #[inline]
    pub(crate) fn defer_release(&mut self, n: u64) {
        debug_assert!(n <= self.cached_tail.wrapping_sub(self.head));
        self.head = self.head.wrapping_add(n);
    }

    /// Stores the deferred frees: whether there were any (then the caller wakes).
    #[inline]
    pub(crate) fn flush(&mut self, ring: &Ring) -> bool {
        if self.stored == self.head {
            return false;
        }
        self.store_head(ring);
        true
    }

    #[inline]
    fn store_head(&mut self, ring: &Ring) {
        self.stored = self.head;
        // Release: pairs with the producer's Acquire load of `head` in `Tx::reload_head`; our
        // copies out of the slots happen before the producer overwrites them.
        ring.head().store(self.head, Ordering::Release);
    }
}

impl SendSide for Tx {
    fn attach(ring: &Ring) -> Result<Tx> {
        Tx::attach(ring)
    }
    #[inline]
    fn claim(&mut self, ring: &Ring, _intent: &AtomicU64) -> Result<Option<u64>> {
        let (pos, n) = Tx::claim(self, ring, 1)?;
        Ok((n == 1).then_some(pos))
    }
    #[inline]
    fn publish(&mut self, ring: &Ring, pos: u64, _intent: &AtomicU64) {
        debug_assert_eq!(pos, self.tail);
        Tx::publish(self, ring, 1)
    }
    #[inline]
    fn stage(&mut self, ring: &Ring, pos: u64, _intent: &AtomicU64) -> bool {
        debug_assert_eq!(pos, self.tail);
        Tx::stage(self, ring, 1);
        false
    }
    #[inline]
    fn staged(&self) -> u64 {
        Tx::staged(self)
    }
    #[inline]
    fn flush(&mut self, ring: &Ring) -> bool {
        Tx::flush(self, ring)
    }
    fn discard(&mut self, _ring: &Ring, _pos: u64, _intent: &AtomicU64) {
        // Nothing was published: the claim is simply forgotten (the next claim returns the
        // same position).
    }
    #[inline]
    fn claim_many(
        &mut self,
        ring: &Ring,
        _intent: &AtomicU64,
        n: u64,
        exact: bool,
    ) -> Result<(u64, u64)> {
        // Nothing is claimed in shared memory: fewer than `n` are simply not used.
        let (pos, k) = Tx::claim(self, ring, n)?;
        Ok((pos, if exact && k < n { 0 } else { k }))
    }
    #[inline]
    fn publish_many(&mut self, ring: &Ring, pos: u64, k: u64, n: u64, _intent: &AtomicU64) {
        // An empty chunk (the ring was full) has no position of its own.
        debug_assert!(n == 0 || pos == self.tail);
        // The `n - k` slots not sent were never published: they stay free.
        Tx::publish(self, ring, k)
    }
}

impl RecvSide for Rx {
    const ADOPTS: bool = false;
    fn attach(ring: &Ring) -> Result<Rx> {
        Rx::attach(ring)
    }
    #[inline]
    fn claim(&mut self, ring: &Ring, _intent: &AtomicU64) -> Result<Option<u64>> {
        let (pos, n) = self.peek(ring, 1)?;
        Ok((n == 1).then_some(pos))
    }
    #[inline]
    fn release(&mut self, ring: &Ring, pos: u64, _intent: &AtomicU64) {
        debug_assert_eq!(pos, self.head);
        Rx::release(self, ring, 1)
    }
    #[inline]
    fn defer_release(&mut self, ring: &Ring, pos: u64, _intent: &AtomicU64) -> bool {
        debug_assert_eq!(pos, self.head);
        let _ = ring;
        Rx::defer_release(self, 1);
        false
    }
    #[inline]
    fn flush(&mut self, ring: &Ring) -> bool {
        Rx::flush(self, ring)
    }
    fn blocked_head(&self, _ring: &Ring) -> Option<u64> {
        None
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
        debug_assert_eq!(pos, self.head);
        Rx::release(self, ring, n)
    }
}
