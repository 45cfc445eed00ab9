//! Ring algorithms over a raw region: no I/O, no blocking.
//!
//! A ring region (the data area of a [`Layout`](crate::layout::Layout)) is a control block of
//! five 128-byte lines followed by `capacity` slots:
//!
//! ```text
//! offset  word(s)                                   written by
//!      0  tail: u64, next position to publish        producers
//!    128  head: u64, next position to consume        consumers
//!    256  cons_fenced: u32, cons_sleepers: u32,       parked consumers / producers waking them
//!         cons_fenced_checks: u64
//!    384  prod_fenced: u32, prod_sleepers: u32,       parked producers / consumers waking them
//!         prod_fenced_checks: u64
//!    512  flags: u32 (bit 0: a producer attached once, bit 1: a consumer attached once,
//!         bit 2: lifetime = creator, bit 3: the creator left, bit 4: closed by a consumer),
//!         producers: u32, consumers: u32  (clean-close counters, hints only)
//!    640  slot 0: seq: u64, len: u32, pad: u32, payload[slot_size], padded to the stride
//! ```
//!
//! The stride is a multiple of 64 bytes (a cache line), or 32 for slots of at most 16 bytes:
//! two such slots share a line, so a consumer reading a run of small messages (job ids,
//! counters) pulls half as many lines from the producer's core (`cargo bench --bench
//! worker_pool`, 8-byte jobs and 16-byte results: see README). No slot straddles a line.
//!
//! Positions are `u64`s that only grow; slot `i` serves positions `p` with `p % capacity == i`.
//! Every index is formed as `p % capacity`, so a hostile peer that writes any position can never
//! make us touch memory outside the region; lengths read from slots are checked against
//! `slot_size` before they size a copy.
//!
//! The flavours live in their own files: [`spsc`] (Lamport), [`mpmc`] (Vyukov, producers and
//! consumers) and [`mpsc`] (Vyukov producers, one consumer). Under `cfg(shmchan_loom)` the same
//! algorithms run over an in-process [`Ring`] made of loom atomics and cells.

pub(crate) mod mpmc;
pub(crate) mod mpsc;
pub(crate) mod repair;
pub(crate) mod spsc;

#[cfg(all(test, shmchan_loom))]
mod loom_models;

use crate::error::{Error, Result};
#[allow(unused_imports)]
use crate::loom::{AtomicU32, AtomicU64};

/// Offset of the tail word in the region.
pub(crate) const OFF_TAIL: usize = 0;
/// Offset of the head word.
pub(crate) const OFF_HEAD: usize = 128;
/// Count of consumers in *fenced mode* (`wait/protocol.rs`): while non-zero, every waker of
/// the consumer side makes a full fence. (A shared futex word in layout 1, unused in layout 2.)
pub(crate) const OFF_CONS_FENCED: usize = 256;
/// Sleeper count of parked consumers.
pub(crate) const OFF_CONS_SLEEPERS: usize = 260;
/// Wake checks made by wakers of the consumer side while its fenced count was non-zero (a
/// `u64` that only grows, a statistic): what the fenced mode costs them, read by the
/// consumers in the mode to decide whether to stay in it (`wait/protocol.rs`). Zero in
/// rings written only by builds before it, whose waiters never read it.
pub(crate) const OFF_CONS_FENCED_CHECKS: usize = 264;
/// Count of producers in fenced mode, as [`OFF_CONS_FENCED`].
pub(crate) const OFF_PROD_FENCED: usize = 384;
/// Sleeper count of parked producers.
pub(crate) const OFF_PROD_SLEEPERS: usize = 388;
/// As [`OFF_CONS_FENCED_CHECKS`], for the producer side.
pub(crate) const OFF_PROD_FENCED_CHECKS: usize = 392;
/// Attach flags and clean-close counters.
pub(crate) const OFF_FLAGS: usize = 512;
pub(crate) const OFF_PRODUCERS: usize = 516;
pub(crate) const OFF_CONSUMERS: usize = 520;
/// Size of the control block.
pub(crate) const CTRL_LEN: usize = 640;
/// Slot header: sequence word and length word.
pub(crate) const SLOT_HEADER: usize = 16;

/// `flags` bit: a producer attached at least once.
pub(crate) const FLAG_PRODUCER_SEEN: u32 = 1;
/// `flags` bit: a consumer attached at least once.
pub(crate) const FLAG_CONSUMER_SEEN: u32 = 2;
/// `flags` bit, set by the creator before the header is published: the channel lives while
/// its creator's handle does ([`crate::channel::Lifetime::Creator`]).
pub(crate) const FLAG_LIFETIME_CREATOR: u32 = 4;
/// `flags` bit: the creator's handle left (cleanly).
pub(crate) const FLAG_CREATOR_LEFT: u32 = 8;
/// `flags` bit: a consumer closed the channel (`Consumer::close`): no new sends, queued
/// messages drain, then the stream ends. Final.
pub(crate) const FLAG_RECV_CLOSED: u32 = 16;

// Slot markers. A slot's `len` word is a message length `0..=slot_size`, or DISCARDED (above
// any slot size: MAX_SLOT_SIZE is 2^30); its `seq` word may carry ABANDONED_TAG. Consumers skip
// both kinds of slot.

/// Tag bit of a Vyukov slot's `seq` set by the repair of a slot whose producer died after
/// claiming it: `seq == (p + 1) | ABANDONED_TAG` is "published, abandoned" for position `p`;
/// consumers skip it and count it. It lives in `seq`, not `len`, so that the one CAS that
/// picks the winning repairer is also the only write of the repair
/// ([`repair::repair_unpublished`]): a losing repairer writes nothing, and cannot touch the
/// slot's next lap. Positions never reach 2^63 (292 years at 10^9 messages a second); the
/// algorithms compare `seq & !ABANDONED_TAG` with positions.
pub(crate) const ABANDONED_TAG: u64 = 1 << 63;
/// Length marker of a slot a live producer reserved and then dropped without commit
/// (MPSC/MPMC: the position was claimed in shared memory and must be published): skipped,
/// not counted.
pub(crate) const DISCARDED: u32 = u32::MAX - 1;

/// Largest slot size accepted (1 GiB).
pub const MAX_SLOT_SIZE: usize = 1 << 30;
/// Largest capacity accepted.
pub const MAX_CAPACITY: usize = 1 << 24;

/// The shape of a ring, as recorded in the layout's geometry words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) slot_size: usize,
    pub(crate) capacity: usize,
}

impl Geometry {
    /// Bytes from one slot to the next: header plus payload, rounded up to 64, or 32 when
    /// that holds them (slots of at most 16 bytes: two to a cache line).
    pub(crate) fn stride(&self) -> usize {
        let len = SLOT_HEADER + self.slot_size;
        if len <= 32 { 32 } else { len.div_ceil(64) * 64 }
    }

    /// Bytes of the whole region.
    pub(crate) fn region_len(&self) -> usize {
        CTRL_LEN + self.capacity * self.stride()
    }

    /// Checks the user's numbers.
    pub(crate) fn check(&self) -> Result<()> {
        if self.slot_size == 0 || self.slot_size > MAX_SLOT_SIZE {
            return Err(Error::InvalidArgument(format!(
                "slot size {} is outside 1..={MAX_SLOT_SIZE}",
                self.slot_size
            )));
        }
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "capacity {} is outside 1..={MAX_CAPACITY}",
                self.capacity
            )));
        }
        let total = (self.capacity as u128) * (self.stride() as u128);
        if total > (isize::MAX as u128) / 2 {
            return Err(Error::InvalidArgument(format!(
                "capacity {} x slot size {} is too large to map",
                self.capacity, self.slot_size
            )));
        }
        Ok(())
    }

    /// The geometry words recorded in the header.
    pub(crate) fn to_words(self) -> [u64; 8] {
        [
            self.slot_size as u64,
            self.capacity as u64,
            self.stride() as u64,
            CTRL_LEN as u64,
            0,
            0,
            0,
            0,
        ]
    }

    /// Reads and validates geometry words copied from a header; `data_len` is the size of the
    /// region the header declares (already checked to fit in the mapping).
    pub(crate) fn from_words(w: [u64; 8], data_len: usize, what: &str) -> Result<Geometry> {
        let corrupt = |why: String| Error::Corrupt(format!("{what}: {why}"));
        let slot_size = usize::try_from(w[0]).unwrap_or(usize::MAX);
        let capacity = usize::try_from(w[1]).unwrap_or(usize::MAX);
        let g = Geometry {
            slot_size,
            capacity,
        };
        g.check()
            .map_err(|e| corrupt(format!("bad ring geometry ({e})")))?;
        if w[2] != g.stride() as u64 || w[3] != CTRL_LEN as u64 {
            return Err(corrupt(format!(
                "slot stride {} / control block {} do not match slot size {} (expected {} / {})",
                w[2],
                w[3],
                slot_size,
                g.stride(),
                CTRL_LEN
            )));
        }
        if g.region_len() > data_len {
            return Err(corrupt(format!(
                "{} slots of stride {} need {} bytes, the segment has {data_len}",
                capacity,
                g.stride(),
                g.region_len()
            )));
        }
        Ok(g)
    }
}

#[cfg(not(shmchan_loom))]
pub(crate) use shm_ring::Ring;

#[cfg(not(shmchan_loom))]
mod shm_ring {
    use super::*;

    /// A ring region in shared memory.
    ///
    /// Invariant: `base .. base + geometry.region_len()` is mapped read-write, 128-aligned, for
    /// as long as the `Ring` is used; the owner (a channel handle) keeps the mapping alive next
    /// to it. Every word is accessed atomically at one width; payloads only by copies.
    #[derive(Debug)]
    pub struct Ring {
        base: *mut u8,
        pub(crate) cap: u64,
        /// `cap - 1` when `cap` is a power of two, else 0: indexes by mask instead of a 64-bit
        /// division (which costs more than the rest of a small message's path).
        mask: u64,
        pub(crate) slot_size: usize,
        stride: usize,
    }

    // SAFETY: the region is shared memory accessed only through atomics and raw copies; the
    // struct holds no thread-affine state.
    unsafe impl Send for Ring {}
    // SAFETY: as above; every method takes `&self` and synchronises through atomics.
    unsafe impl Sync for Ring {}

    impl Ring {
        /// # Safety
        ///
        /// `base` must point to a 128-aligned, read-write mapped region of at least
        /// `g.region_len()` bytes that outlives the returned `Ring`.
        pub(crate) unsafe fn new(base: *mut u8, g: Geometry) -> Ring {
            debug_assert_eq!(base as usize % 128, 0);
            let cap = g.capacity as u64;
            Ring {
                base,
                cap,
                mask: if cap.is_power_of_two() { cap - 1 } else { 0 },
                slot_size: g.slot_size,
                stride: g.stride(),
            }
        }

        /// The slot of position `pos`: `pos % cap`, whatever `pos` a peer wrote.
        #[inline]
        pub(crate) fn index(&self, pos: u64) -> u64 {
            let idx = if self.mask != 0 || self.cap == 1 {
                pos & self.mask
            } else {
                pos % self.cap
            };
            debug_assert!(idx < self.cap);
            idx
        }

        #[inline]
        fn w64(&self, off: usize) -> &AtomicU64 {
            debug_assert!(off % 8 == 0 && off + 8 <= CTRL_LEN + self.cap as usize * self.stride);
            // SAFETY: off is a control-block constant or a slot header offset inside the region
            // (callers index slots modulo cap), 8-aligned; the region is mapped (type invariant).
            unsafe { AtomicU64::from_ptr(self.base.add(off).cast()) }
        }

        #[inline]
        fn w32(&self, off: usize) -> &AtomicU32 {
            debug_assert!(off % 4 == 0 && off + 4 <= CTRL_LEN + self.cap as usize * self.stride);
            // SAFETY: as in w64, 4-aligned.
            unsafe { AtomicU32::from_ptr(self.base.add(off).cast()) }
        }

        #[inline]
        fn slot_off(&self, idx: u64) -> usize {
            debug_assert!(idx < self.cap);
            CTRL_LEN + idx as usize * self.stride
        }

        /// `tail`: the next position producers publish (SPSC) or claim (Vyukov). Only grows;
        /// `head <= tail <= head + cap` in a sound ring (checked where it sizes anything:
        /// `checked_pending`), any value in a hostile one.
        #[inline]
        pub(crate) fn tail(&self) -> &AtomicU64 {
            self.w64(OFF_TAIL)
        }
        /// `head`: the next position consumers read (SPSC, MPSC: stored after each free) or
        /// claim (MPMC). Only grows; never past `tail` in a sound ring.
        #[inline]
        pub(crate) fn head(&self) -> &AtomicU64 {
            self.w64(OFF_HEAD)
        }
        #[inline]
        pub(crate) fn word32(&self, off: usize) -> &AtomicU32 {
            debug_assert!(off < CTRL_LEN);
            self.w32(off)
        }
        /// A `u64` word of the control block (one of the `OFF_*` constants).
        #[inline]
        pub(crate) fn word64(&self, off: usize) -> &AtomicU64 {
            debug_assert!(off < CTRL_LEN);
            self.w64(off)
        }
        /// `seq` of slot `idx` (Vyukov rings): for the position `p` the slot serves now, `p`
        /// (free for p's producer), `p + 1` (holds p's message), `(p + 1) | ABANDONED_TAG`
        /// (repaired: p's producer died) or `p + cap` (freed, serves `p + cap` next); see
        /// `mpmc.rs`. Starts at `idx`. SPSC rings leave it at its start.
        #[inline]
        pub(crate) fn seq(&self, idx: u64) -> &AtomicU64 {
            self.w64(self.slot_off(idx))
        }
        /// `len` of slot `idx`: a message length `0..=slot_size`, or [`DISCARDED`];
        /// anything else is `Corrupt` ([`content`]).
        #[inline]
        pub(crate) fn len(&self, idx: u64) -> &AtomicU32 {
            self.w32(self.slot_off(idx) + 8)
        }

        /// Pointer to the payload of slot `idx` (`slot_size` bytes).
        #[inline]
        pub(crate) fn payload(&self, idx: u64) -> *mut u8 {
            // SAFETY: the slot lies inside the region (idx < cap), header then payload.
            unsafe { self.base.add(self.slot_off(idx) + SLOT_HEADER) }
        }

        /// Copies `data` (at most `slot_size` bytes, checked by the caller) into slot `idx`.
        #[inline]
        pub(crate) fn write_payload(&self, idx: u64, at: usize, data: &[u8]) {
            assert!(at + data.len() <= self.slot_size);
            // SAFETY: in bounds (asserted); the producer holds the slot by the ring protocol.
            unsafe {
                let dst = self.payload(idx).add(at);
                if data.len() <= 16 {
                    copy_short(data, dst);
                } else {
                    std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len())
                }
            }
        }

        /// Copies `buf.len()` bytes (at most `slot_size`, checked by the caller) out of slot
        /// `idx`.
        ///
        /// What the copy relies on: the slot is ours by the ring protocol (claimed, or peeked
        /// behind the Acquire load that pairs with the publish), so a correct peer does not
        /// write it meanwhile; a buggy or hostile one may, and we then copy a mix of old and
        /// new bytes. That is harmless because the copy lands in private memory as plain
        /// bytes (no invalid values), nothing is read twice expecting the same value, and
        /// every length or index is validated from our copy or from an atomic load, never
        /// from the shared bytes. A plain `copy_nonoverlapping` is still a data race in the
        /// Rust model if a peer writes concurrently; a loop of volatile aligned word loads
        /// (the "atomic-memcpy" approach) would keep every access single-copy atomic, but
        /// costs 1.1-1.7x (64 B), 2.2-2.8x (1 KiB) and 1.6-2.1x (64 KiB) the plain copy
        /// (`cargo bench --bench payload_copy`, two runs on a 2-vCPU VM, 2026-12-01), for no
        /// protection we need beyond what validation gives. So the rings copy plainly.
        #[inline]
        pub(crate) fn read_payload(&self, idx: u64, at: usize, buf: &mut [u8]) {
            assert!(at + buf.len() <= self.slot_size);
            // SAFETY: in bounds (asserted); `buf` is private memory.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.payload(idx).add(at),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            }
        }
    }

    /// Copies `data` (at most 16 bytes) to `dst` with two overlapping word copies, inline:
    /// for the small records of a job queue or a metrics stream, a `memcpy` call with its
    /// size dispatch cost 17 of the slot write's 78 instructions (callgrind, `worker_pool`
    /// bench, per message).
    ///
    /// # Safety
    ///
    /// `dst .. dst + data.len()` is writable and does not overlap `data`.
    #[inline(always)]
    unsafe fn copy_short(data: &[u8], dst: *mut u8) {
        let (n, src) = (data.len(), data.as_ptr());
        debug_assert!(n <= 16);
        // SAFETY: (every arm) each read lies in `data` and each write in `dst .. dst + n`
        // (for `n >= w` both `0 .. w` and `n - w .. n` are inside `0 .. n`), which the caller
        // guarantees writable and disjoint from `data`; unaligned accesses of plain integers.
        unsafe {
            if n >= 8 {
                let (a, b) = (
                    src.cast::<u64>().read_unaligned(),
                    src.add(n - 8).cast::<u64>().read_unaligned(),
                );
                dst.cast::<u64>().write_unaligned(a);
                dst.add(n - 8).cast::<u64>().write_unaligned(b);
            } else if n >= 4 {
                let (a, b) = (
                    src.cast::<u32>().read_unaligned(),
                    src.add(n - 4).cast::<u32>().read_unaligned(),
                );
                dst.cast::<u32>().write_unaligned(a);
                dst.add(n - 4).cast::<u32>().write_unaligned(b);
            } else {
                for i in 0..n {
                    *dst.add(i) = *src.add(i);
                }
            }
        }
    }
}

#[cfg(shmchan_loom)]
pub(crate) use loom_ring::Ring;

#[cfg(shmchan_loom)]
mod loom_ring {
    use super::*;
    use crate::loom::UnsafeCell;

    /// The in-process stand-in for a ring region, for loom models: the same words as loom
    /// atomics, and payloads as loom cells (at most 8 bytes) so loom checks that the slot's
    /// sequence store orders the payload copy.
    #[derive(Debug)]
    pub struct Ring {
        ctrl: Vec<AtomicU64>,
        ctrl32: Vec<AtomicU32>,
        seqs: Vec<AtomicU64>,
        lens: Vec<AtomicU32>,
        payloads: Vec<UnsafeCell<[u8; 8]>>,
        pub(crate) cap: u64,
        pub(crate) slot_size: usize,
    }

    impl Ring {
        /// A fresh ring as a creator lays it out (zeroed, sequences `0..cap`).
        pub(crate) fn new_for_model(g: Geometry) -> Ring {
            assert!(g.slot_size <= 8);
            Ring {
                ctrl: (0..2).map(|_| AtomicU64::new(0)).collect(),
                ctrl32: (0..CTRL_LEN / 4).map(|_| AtomicU32::new(0)).collect(),
                seqs: (0..g.capacity as u64).map(AtomicU64::new).collect(),
                lens: (0..g.capacity).map(|_| AtomicU32::new(0)).collect(),
                payloads: (0..g.capacity).map(|_| UnsafeCell::new([0; 8])).collect(),
                cap: g.capacity as u64,
                slot_size: g.slot_size,
            }
        }
        pub(crate) fn index(&self, pos: u64) -> u64 {
            pos % self.cap
        }
        #[inline]
        pub(crate) fn tail(&self) -> &AtomicU64 {
            &self.ctrl[0]
        }
        #[inline]
        pub(crate) fn head(&self) -> &AtomicU64 {
            &self.ctrl[1]
        }
        #[inline]
        pub(crate) fn word32(&self, off: usize) -> &AtomicU32 {
            &self.ctrl32[off / 4]
        }
        #[inline]
        pub(crate) fn seq(&self, idx: u64) -> &AtomicU64 {
            &self.seqs[idx as usize]
        }
        #[inline]
        pub(crate) fn len(&self, idx: u64) -> &AtomicU32 {
            &self.lens[idx as usize]
        }
        #[inline]
        pub(crate) fn write_payload(&self, idx: u64, at: usize, data: &[u8]) {
            assert!(at + data.len() <= self.slot_size);
            self.payloads[idx as usize].with_mut(|p| {
                // SAFETY: loom checks the access is exclusive; p is a valid [u8; 8].
                unsafe { (&mut *p)[at..at + data.len()].copy_from_slice(data) }
            })
        }
        #[inline]
        pub(crate) fn read_payload(&self, idx: u64, at: usize, buf: &mut [u8]) {
            assert!(at + buf.len() <= self.slot_size);
            self.payloads[idx as usize].with(|p| {
                // SAFETY: loom checks no write races this read; p is a valid [u8; 8].
                buf.copy_from_slice(unsafe { &(&*p)[at..at + buf.len()] })
            })
        }
    }
}

/// Initialises a fresh (zero-filled) ring region: slot `i`'s sequence is `i`, as Vyukov's
/// algorithm starts. SPSC rings do not use sequences but get the same start, so that one
/// region format serves all flavours.
pub(crate) fn init_sequences(ring: &Ring) {
    for i in 0..ring.cap {
        // Relaxed: the region is published to other processes by the layout header's release
        // store of READY, after this.
        ring.seq(i).store(i, crate::loom::Ordering::Relaxed);
    }
}

/// `tail - head` checked against the capacity: the number of queued messages, or `Corrupt`.
#[inline]
pub(crate) fn checked_pending(tail: u64, head: u64, cap: u64) -> Result<u64> {
    match tail.checked_sub(head) {
        Some(n) if n <= cap => Ok(n),
        _ => Err(bad_positions(tail, head, cap)),
    }
}

#[cold]
fn bad_positions(tail: u64, head: u64, cap: u64) -> Error {
    Error::Corrupt(format!(
        "ring positions out of range: tail {tail}, head {head}, capacity {cap}"
    ))
}

/// What a consumer found in a slot it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Content {
    /// A message of this many bytes (checked: at most `slot_size`).
    Message(usize),
    /// Released by a repair: its producer died before committing. Skip and count.
    Abandoned,
    /// Reserved and dropped uncommitted by a live producer. Skip.
    Discarded,
}

/// What the slot of `pos` holds, which the caller holds (claimed or peeked through an Acquire
/// load of `seq` or `tail` that pairs with the publishing Release store, so the Relaxed loads
/// here see what was written before it; `seq` does not change while we hold the slot).
#[inline]
pub(crate) fn content(ring: &Ring, pos: u64) -> Result<Content> {
    let idx = ring.index(pos);
    if ring.seq(idx).load(crate::loom::Ordering::Relaxed) & ABANDONED_TAG != 0 {
        return Ok(Content::Abandoned);
    }
    match ring.len(idx).load(crate::loom::Ordering::Relaxed) {
        DISCARDED => Ok(Content::Discarded),
        raw => checked_len(raw, ring.slot_size, pos).map(Content::Message),
    }
}

/// The producer side of a flavour's algorithm: process-local state plus the operations on the
/// shared region. `intent` is the producer's participant-record intent word (unused by SPSC).
/// Chosen at compile time by [`crate::channel::Flavour`].
pub trait SendSide: Sized + Send + Sync + Unpin + std::fmt::Debug + 'static {
    /// Attaches to `ring` (validating what it reads of the shared positions).
    fn attach(ring: &Ring) -> Result<Self>;
    /// Claims one slot: its position, or `None` when the ring is full.
    fn claim(&mut self, ring: &Ring, intent: &AtomicU64) -> Result<Option<u64>>;
    /// Publishes the claimed `pos`, whose bytes and length word are written (and every slot
    /// staged before it).
    fn publish(&mut self, ring: &Ring, pos: u64, intent: &AtomicU64);
    /// Commits the claimed, written `pos` and may defer its visibility until [`flush`]
    /// (`Sink::feed` without `poll_flush`). Returns whether it was published now (then the
    /// caller wakes). Rings where an unpublished claim would block other producers' messages
    /// (Vyukov: the consumer reads in position order) publish at once.
    ///
    /// [`flush`]: SendSide::flush
    #[inline]
    fn stage(&mut self, ring: &Ring, pos: u64, intent: &AtomicU64) -> bool {
        self.publish(ring, pos, intent);
        true
    }
    /// Slots staged and not yet published.
    #[inline]
    fn staged(&self) -> u64 {
        0
    }
    /// Publishes every staged slot: whether there were any.
    #[inline]
    fn flush(&mut self, _ring: &Ring) -> bool {
        false
    }
    /// Gives back the claimed `pos` unused.
    fn discard(&mut self, ring: &Ring, pos: u64, intent: &AtomicU64);
    /// Claims up to `n` consecutive slots at once (a chunk): the first position and how
    /// many, 0 when the ring is full (with `exact`, unless `n` are free: then none is
    /// claimed). Slots staged before are published no later than the chunk.
    fn claim_many(
        &mut self,
        ring: &Ring,
        intent: &AtomicU64,
        n: u64,
        exact: bool,
    ) -> Result<(u64, u64)>;
    /// Publishes the first `k` of the `n` slots [`claim_many`](SendSide::claim_many) claimed
    /// at `pos` (lengths and bytes written) and gives back the rest unused.
    fn publish_many(&mut self, ring: &Ring, pos: u64, k: u64, n: u64, intent: &AtomicU64);
}

/// The consumer side of a flavour's algorithm; see [`SendSide`].
pub trait RecvSide: Sized + Send + Sync + Unpin + std::fmt::Debug + 'static {
    /// Whether consumers share the ring, so that a live one adopts what a dead one held
    /// (MPMC); otherwise a replacement consumer simply reads it again.
    const ADOPTS: bool;
    /// Attaches to `ring`.
    fn attach(ring: &Ring) -> Result<Self>;
    /// Claims (or peeks) the next readable position, or `None` when nothing is ready.
    fn claim(&mut self, ring: &Ring, intent: &AtomicU64) -> Result<Option<u64>>;
    /// Frees the slot of `pos` after it was read (and every free deferred before it).
    fn release(&mut self, ring: &Ring, pos: u64, intent: &AtomicU64);
    /// Frees the slot of `pos` and may defer making that visible until [`flush`] (a batch
    /// receive frees all it took with one store of `head` on SPSC). Returns whether it is
    /// visible now. The caller flushes before it returns to its user.
    ///
    /// [`flush`]: RecvSide::flush
    #[inline]
    fn defer_release(&mut self, ring: &Ring, pos: u64, intent: &AtomicU64) -> bool {
        self.release(ring, pos, intent);
        true
    }
    /// Makes every deferred free visible: whether there were any.
    #[inline]
    fn flush(&mut self, _ring: &Ring) -> bool {
        false
    }
    /// Where an unpublished producer claim can block this consumer: the head position of a
    /// Vyukov ring; `None` for SPSC, where nothing unpublished is ever in the way.
    fn blocked_head(&self, ring: &Ring) -> Option<u64>;
    /// Frees the `n` positions from `pos` that a chunk read (single-consumer rings: they
    /// start at the head); `end` is the consumer's chunk-end word (MPMC).
    fn release_many(&mut self, ring: &Ring, pos: u64, n: u64, intent: &AtomicU64, end: &AtomicU64);
}

/// A message length read from a slot, checked against the slot size.
#[inline]
pub(crate) fn checked_len(len: u32, slot_size: usize, pos: u64) -> Result<usize> {
    let n = len as usize;
    if n > slot_size {
        return Err(bad_len(n, slot_size, pos));
    }
    Ok(n)
}

#[cold]
fn bad_len(n: usize, slot_size: usize, pos: u64) -> Error {
    Error::Corrupt(format!(
        "message at position {pos} claims {n} bytes, slots hold {slot_size}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_slots_pack_two_to_a_line_and_none_straddles_one() {
        let stride = |slot_size| {
            Geometry {
                slot_size,
                capacity: 8,
            }
            .stride()
        };
        assert_eq!(stride(1), 32);
        assert_eq!(stride(16), 32);
        assert_eq!(stride(17), 64);
        assert_eq!(stride(48), 64);
        assert_eq!(stride(49), 128);
        assert_eq!(stride(64), 128);
        for s in 1..=4096 {
            let st = stride(s);
            assert!(st >= SLOT_HEADER + s, "slot size {s}: stride {st}");
            // A line holds whole slots, or a slot whole lines.
            assert!(64 % st == 0 || st % 64 == 0, "slot size {s}: stride {st}");
        }
    }
}
