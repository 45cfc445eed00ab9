//! [`Consumer`]: the receiving side of a channel, in try, blocking and timed forms (async
//! ones are in `asynch.rs`, zero-copy guards in `zero_copy.rs`).
//!
//! May call `core`/`peers` (attach, liveness, repair, close), `wait::blocking`, and the
//! flavour's [`RecvSide`](crate::ring::RecvSide) in `ring`.

use std::fmt;
use std::time::{Duration, Instant};

use zerocopy::FromBytes;

use super::core::{self, Core, Side};
use super::message::{INLINE_MESSAGE, Message};
use super::options::Options;
use super::zero_copy::ReadSlot;
use super::{Flavour, RxOf};
#[allow(unused_imports)] // for doc links
use crate::channel::Producer;
use crate::error::{Error, Result, TryRecvError};
use crate::layout::{Kind, Role};
use crate::loom::Ordering;
use crate::ring::{self, Content, RecvSide, repair};
use crate::segment::Segment;
use crate::wait::blocking;
use crate::wait::reactor::{self, poll_op};

/// The receiving side of a channel.
pub struct Consumer<F: Flavour> {
    pub(super) core: Core,
    /// The flavour's consumer algorithm state.
    pub(super) rx: RxOf<F>,
    pub(super) stream_started: Option<Instant>,
    pub(super) terminated: bool,
}

impl<F: Flavour> fmt::Debug for Consumer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Consumer").field(&self.core).finish()
    }
}

impl<F: Flavour> Consumer<F> {
    /// Creates the channel `name` and attaches as a consumer.
    ///
    /// # Errors
    ///
    /// As [`Producer::create`].
    pub fn create(name: &str, opts: Options) -> Result<Self> {
        Self::from_core(Core::create(name, F::KIND, &opts, Side::Consumer)?)
    }

    /// Attaches as a consumer to the existing channel `name`.
    ///
    /// # Errors
    ///
    /// As [`Producer::open`]; [`Error::InUse`] if the channel is SPSC or MPSC and a live
    /// consumer is attached.
    pub fn open(name: &str, opts: Options) -> Result<Self> {
        Self::from_core(Core::open(name, F::KIND, &opts, Side::Consumer, false)?)
    }

    /// Opens `name`, or creates it with `opts`.
    ///
    /// # Errors
    ///
    /// As [`Producer::open_or_create`].
    pub fn open_or_create(name: &str, opts: Options) -> Result<Self> {
        Self::from_core(core::open_or_create(name, F::KIND, &opts, Side::Consumer)?)
    }

    /// Whether a producer is attached now (a snapshot).
    pub(crate) fn has_producer(&self) -> bool {
        !self.core.peers_closed()
            && !self
                .core
                .layout
                .live_participants(Some(Role::PRODUCER))
                .is_empty()
    }

    fn from_core(mut core: Core) -> Result<Self> {
        // The algorithm checks the shared positions (Corrupt) before the handle counts in.
        let rx = RxOf::<F>::attach(&core.ring)?;
        core.count_in();
        Ok(Consumer {
            rx,
            core,
            stream_started: None,
            terminated: false,
        })
    }

    common_methods!(Side::Consumer);

    /// Closes the channel from the receiving side, as tokio's `Receiver::close`: from now on
    /// every producer's send fails with `Closed` (waiting ones are woken), while the messages
    /// already queued (and slots producers reserved before) can still be received; then
    /// receives give [`Error::Closed`] (`None` from the stream). Final for this segment: it
    /// holds for every participant, in every process, and for those that attach later.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Error, Options, TrySendError, spsc};
    ///
    /// # fn main() -> shmchan::Result<()> {
    /// # let name = format!("/shmchan-doc-close-{}", std::process::id());
    /// let mut tx = spsc::Producer::create(&name, Options::new())?;
    /// let mut rx = spsc::Consumer::open(&name, Options::new())?;
    /// tx.try_send(b"queued").unwrap();
    /// rx.close();
    /// assert!(matches!(tx.try_send(b"late"), Err(TrySendError::Closed(_))));
    /// assert_eq!(&*rx.try_recv().unwrap(), b"queued");
    /// assert!(matches!(rx.recv_timeout(std::time::Duration::from_secs(1)), Err(Error::Closed)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn close(&mut self) {
        // AcqRel: pairs with the Acquire load of the flags in `peers_closed`.
        self.core
            .ring
            .word32(ring::OFF_FLAGS)
            .fetch_or(ring::FLAG_RECV_CLOSED, Ordering::AcqRel);
        // Waiting producers (and consumers, for the end of the drained stream) look again.
        self.core.wake_everyone();
    }

    /// Messages skipped because their producer died after claiming a slot and before
    /// committing it (MPSC and MPMC only).
    pub fn abandoned(&self) -> u64 {
        self.core.abandoned
    }

    /// Tries to take one message: `Ok(Some((pos, len)))` for a readable slot held by us (to be
    /// released after reading), `Ok(None)` when nothing is ready, errors for closed / gone.
    #[inline(always)]
    pub(super) fn take(core: &mut Core, rx: &mut RxOf<F>) -> Result<Option<(u64, usize)>> {
        if let Some(held) = core.held.take() {
            return Ok(Some(held)); // a message `recv_into` could not take: still ours, first
        }
        loop {
            let Some(pos) = rx.claim(&core.ring, core.intent())? else {
                return Self::nothing_ready(core, rx);
            };
            match ring::content(&core.ring, pos) {
                Ok(Content::Message(len)) => {
                    core.note_progress();
                    return Ok(Some((pos, len)));
                }
                Ok(Content::Abandoned) => {
                    core.abandoned += 1;
                    Self::release_pos(core, rx, pos);
                }
                Ok(Content::Discarded) => Self::release_pos(core, rx, pos),
                Err(e) => {
                    // Do not leave a claimed MPMC slot pinned by a live record forever.
                    Self::release_pos(core, rx, pos);
                    return Err(e);
                }
            }
        }
    }

    /// Nothing readable at the head: decide between empty, closed, gone, or repairable.
    pub(super) fn nothing_ready(core: &mut Core, rx: &mut RxOf<F>) -> Result<Option<(u64, usize)>> {
        if let Some(head) = rx.blocked_head(&core.ring) {
            if let repair::Blocked::Unpublished(pos) = repair::blocked_at(&core.ring, head) {
                // A producer claimed `pos` and has not published: fine while it lives. Check
                // at the liveness interval whether the claimer died.
                if core.clock_due() && core.last_repair.elapsed() >= core.liveness_interval {
                    core.last_repair = Instant::now();
                    core.repair_stuck(pos)?;
                }
                return Ok(None);
            }
        }
        let due = core.clock_due();
        if due && RxOf::<F>::ADOPTS && core.last_repair.elapsed() >= core.liveness_interval {
            core.last_repair = Instant::now();
            // Adopt messages of dead consumers before concluding anything.
            if let Some(found) = core.adopt_dead_consumer()? {
                // More of a dead consumer's chunk may wait: look again at the next empty
                // attempt, not a liveness interval later.
                core.force_checks();
                return Ok(Some(found));
            }
        }
        if due {
            core.check_peers(false)?;
        }
        if core.pending() != 0 {
            return Ok(None); // drain first (a concurrent consumer may hold the rest)
        }
        match core.closed_error() {
            Some(e) => {
                // Report a death once; the stream then ends like a clean close.
                core.peer_died = false;
                Err(e)
            }
            None => Ok(None),
        }
    }

    /// Frees the slot of `pos` after reading, and wakes producers waiting for space.
    #[inline]
    pub(super) fn release_pos(core: &mut Core, rx: &mut RxOf<F>, pos: u64) {
        rx.release(&core.ring, pos, core.intent());
        core.wake_peers();
    }

    /// Makes deferred frees visible: the end of a batch receive (which then wakes).
    fn flush_releases(core: &mut Core, rx: &mut RxOf<F>) {
        let _ = rx.flush(&core.ring);
    }

    #[inline]
    pub(super) fn read_message(&mut self, pos: u64, len: usize) -> Message {
        let msg = self.copy_message(pos, len);
        Self::release_pos(&mut self.core, &mut self.rx, pos);
        msg
    }

    /// Takes the messages ready now, up to `limit`, into `buf`, freeing their slots with one
    /// store and at most one wake-up at the end (SPSC; Vyukov rings free each slot's sequence
    /// word, with one wake-up): how many. A clean close ends the batch (reported by the next
    /// receive); another error is returned, with the messages taken before it in `buf`.
    pub(super) fn take_ready(&mut self, buf: &mut Vec<Message>, limit: usize) -> Result<usize> {
        let mut n = 0;
        let mut r = Ok(());
        while n < limit {
            match Self::take(&mut self.core, &mut self.rx) {
                Ok(Some((pos, len))) => {
                    buf.push(self.copy_message(pos, len));
                    self.rx
                        .defer_release(&self.core.ring, pos, self.core.intent());
                    n += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        Self::flush_releases(&mut self.core, &mut self.rx);
        if n > 0 {
            // One wake check for the batch, ringing up to `n` producers waiting for space.
            self.core.wake_peers_n(n);
        }
        match r {
            Ok(()) | Err(Error::Closed) => Ok(n), // the end is reported by the next receive
            Err(e) => Err(e),
        }
    }

    /// Copies the message at the claimed `pos` out of its slot (not yet freed).
    #[inline]
    fn copy_message(&mut self, pos: u64, len: usize) -> Message {
        // `len <= slot_size` (checked_len in `take`); the slot is ours until it is released.
        let idx = self.core.ring.index(pos);
        let slot = self.core.ring.slot_size;
        if len <= INLINE_MESSAGE && slot >= INLINE_MESSAGE {
            // One fixed-size copy of the slot's first 64 bytes (inlined: no `memcpy` call, no
            // zeroing first): the bytes past `len` are the slot's own, never shown.
            let src = self.core.ring.payload(idx).cast::<[u8; INLINE_MESSAGE]>();
            // SAFETY: the slot's payload holds `slot_size >= INLINE_MESSAGE` bytes and is ours
            // until released (as in `read_payload`); `[u8; N]` has no invalid values and
            // alignment 1 (read_unaligned).
            let bytes = unsafe { std::ptr::read_unaligned(src) };
            Message::inline(bytes, len)
        } else if len <= INLINE_MESSAGE {
            self.copy_from_small_slot(idx, len)
        } else {
            let mut bytes = Vec::with_capacity(len);
            let src = self.core.ring.payload(idx);
            // SAFETY: the slot holds at least `len <= slot_size` bytes; the vector has
            // capacity `len`, and its first `len` bytes are initialised by the copy before
            // `set_len` (no zeroing first: large messages would pay for it twice).
            unsafe {
                std::ptr::copy_nonoverlapping(src, bytes.as_mut_ptr(), len);
                bytes.set_len(len);
            }
            Message::from_vec(bytes)
        }
    }

    /// A message of `len <= INLINE_MESSAGE` bytes from slot `idx` of a ring whose slots are
    /// smaller than `INLINE_MESSAGE`: up to 16 or 32 bytes as one fixed block (a job queue's 8-
    /// and 16-byte records; callgrind, `worker_pool` bench: 66 -> 49 instructions a message,
    /// most of the rest building the `Message`), else zeroed and copied.
    ///
    /// Out of line, so that the 64-byte path of `copy_message` stays a few instructions.
    #[inline(never)]
    fn copy_from_small_slot(&self, idx: u64, len: usize) -> Message {
        let slot = self.core.ring.slot_size;
        if len <= 16 && slot >= 16 {
            Message::inline(self.read_fixed::<16>(idx), len)
        } else if len <= 32 && slot >= 32 {
            Message::inline(self.read_fixed::<32>(idx), len)
        } else {
            let mut msg = Message::with_len(len);
            self.core.ring.read_payload(idx, 0, msg.bytes_mut());
            msg
        }
    }

    /// The first `N` bytes of slot `idx`'s payload (`N <= slot_size`, checked by the
    /// caller), zero-extended to an inline message's buffer.
    #[inline(always)]
    fn read_fixed<const N: usize>(&self, idx: u64) -> [u8; INLINE_MESSAGE] {
        debug_assert!(N <= self.core.ring.slot_size && N <= INLINE_MESSAGE);
        let src = self.core.ring.payload(idx).cast::<[u8; N]>();
        // SAFETY: the caller checked `slot_size >= N`, so the payload holds `N` bytes; the
        // slot is ours until released (as in `read_payload`: a hostile writer can only change
        // plain bytes); `[u8; N]` has no invalid values and alignment 1 (read_unaligned).
        let head = unsafe { std::ptr::read_unaligned(src) };
        let mut bytes = [0u8; INLINE_MESSAGE];
        bytes[..N].copy_from_slice(&head);
        bytes
    }

    /// Takes a message if one is queued now.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when nothing is queued, [`TryRecvError::Closed`] when the
    /// producers left and everything was received, [`TryRecvError::Other`] with
    /// [`Error::PeerGone`] or [`Error::Corrupt`].
    pub fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        match Self::take(&mut self.core, &mut self.rx)? {
            Some((pos, len)) => Ok(self.read_message(pos, len)),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Takes a message, waiting (spin, yield, park) while the ring is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the producers left and everything was received,
    /// [`Error::PeerGone`], [`Error::Corrupt`].
    pub fn recv_blocking(&mut self) -> Result<Message> {
        let (pos, len) = self.take_until(None)?.expect("no deadline");
        Ok(self.read_message(pos, len))
    }

    /// Takes a message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`] if nothing came, else as [`recv_blocking`](Self::recv_blocking).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message> {
        match self.take_until(Some(crate::deadline_after(timeout)))? {
            Some((pos, len)) => Ok(self.read_message(pos, len)),
            None => Err(Error::TimedOut(format!(
                "no message on {} within {timeout:?}",
                self.core.describe()
            ))),
        }
    }

    fn take_until(&mut self, deadline: Option<Instant>) -> Result<Option<(u64, usize)>> {
        if let Some(found) = Self::take(&mut self.core, &mut self.rx)? {
            return Ok(Some(found));
        }
        let rx = &mut self.rx;
        blocking::block(&mut self.core, deadline, |core| Self::take(core, rx))
    }

    /// Takes a plain-old-data value sent with [`Producer::try_send_value`].
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Self::try_recv); a message of another size than `T` is
    /// [`Error::Mismatch`] (the message is consumed).
    pub fn try_recv_value<T: FromBytes>(&mut self) -> Result<T, TryRecvError> {
        let msg = self.try_recv()?;
        value_from(&msg, &self.core.name).map_err(TryRecvError::Other)
    }

    /// Takes a plain-old-data value, waiting while the ring is empty.
    ///
    /// # Errors
    ///
    /// As [`recv_blocking`](Self::recv_blocking) and [`try_recv_value`](Self::try_recv_value).
    pub fn recv_value_blocking<T: FromBytes>(&mut self) -> Result<T> {
        let msg = self.recv_blocking()?;
        value_from(&msg, &self.core.name)
    }

    /// Borrows the next message in place (zero-copy) if one is queued; the slot is freed when
    /// the guard is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::PeerGone`], [`Error::Corrupt`].
    pub fn try_recv_ref(&mut self) -> Result<Option<ReadSlot<'_, F>>> {
        Ok(Self::take(&mut self.core, &mut self.rx)?
            .map(|(pos, len)| ReadSlot::new(self, pos, len)))
    }

    /// Borrows the next message in place, waiting while the ring is empty.
    ///
    /// # Errors
    ///
    /// As [`recv_blocking`](Self::recv_blocking).
    pub fn recv_ref_blocking(&mut self) -> Result<ReadSlot<'_, F>> {
        let (pos, len) = self.take_until(None)?.expect("no deadline");
        Ok(ReadSlot::new(self, pos, len))
    }
}

pub(super) fn value_from<T: FromBytes>(msg: &[u8], name: &str) -> Result<T> {
    T::read_from_bytes(msg).map_err(|_| Error::Mismatch {
        segment: format!("channel '{name}'"),
        what: "message size",
        expected: std::mem::size_of::<T>() as u64,
        found: msg.len() as u64,
    })
}

impl<F: Flavour> Drop for Consumer<F> {
    fn drop(&mut self) {
        if let Some((pos, _)) = self.core.held.take() {
            Self::release_pos(&mut self.core, &mut self.rx, pos);
        }
        self.core.leave();
    }
}

/// Bytes a segment needs for an SPSC channel with `opts` (for memfd channels).
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn spsc_segment_len(opts: &Options) -> Result<usize> {
    Core::segment_len(Kind::SPSC, opts)
}

/// Receiving into a caller's buffer: `recv_into` and friends.
impl<F: Flavour> Consumer<F> {
    /// Copies the claimed message at `pos` into `buf` and frees its slot, or, if `buf` is too
    /// small, keeps the message claimed (the next receive of any kind returns it) and says so.
    fn copy_into(&mut self, pos: u64, len: usize, buf: &mut [u8]) -> Result<usize> {
        if len > buf.len() {
            self.core.held = Some((pos, len));
            return Err(Error::InvalidArgument(format!(
                "recv_into on {}: the next message is {len} bytes and the buffer {} bytes; the \
                 message stays queued (a buffer of slot_size() = {} bytes always fits)",
                self.core.describe(),
                buf.len(),
                self.core.ring.slot_size
            )));
        }
        let idx = self.core.ring.index(pos);
        self.core.ring.read_payload(idx, 0, &mut buf[..len]);
        Self::release_pos(&mut self.core, &mut self.rx, pos);
        Ok(len)
    }

    /// Takes a message into `buf` if one is queued now: its length. No allocation.
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Self::try_recv); [`TryRecvError::Other`] with
    /// [`Error::InvalidArgument`] naming both sizes if the message is longer than `buf`: the
    /// message is not lost, the next receive (with a larger buffer, or any other receive
    /// method) returns it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Options, spsc};
    ///
    /// # fn main() -> shmchan::Result<()> {
    /// # let name = format!("/shmchan-doc-recv-into-{}", std::process::id());
    /// let mut tx = spsc::Producer::create(&name, Options::new())?;
    /// let mut rx = spsc::Consumer::open(&name, Options::new())?;
    /// tx.try_send(b"hello").unwrap();
    /// let mut small = [0u8; 2];
    /// assert!(rx.try_recv_into(&mut small).is_err()); // too small: still queued
    /// let mut buf = [0u8; 16];
    /// let n = rx.try_recv_into(&mut buf).unwrap();
    /// assert_eq!(&buf[..n], b"hello");
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvError> {
        match Self::take(&mut self.core, &mut self.rx)? {
            Some((pos, len)) => Ok(self.copy_into(pos, len, buf)?),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Takes a message into `buf`, waiting (spin, yield, park) while the ring is empty.
    ///
    /// # Errors
    ///
    /// As [`recv_blocking`](Self::recv_blocking), and as
    /// [`try_recv_into`](Self::try_recv_into) for a buffer too small.
    pub fn recv_into_blocking(&mut self, buf: &mut [u8]) -> Result<usize> {
        let (pos, len) = self.take_until(None)?.expect("no deadline");
        self.copy_into(pos, len, buf)
    }

    /// Takes a message into `buf`, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`] if nothing came, else as
    /// [`recv_into_blocking`](Self::recv_into_blocking).
    pub fn recv_into_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        match self.take_until(Some(crate::deadline_after(timeout)))? {
            Some((pos, len)) => self.copy_into(pos, len, buf),
            None => Err(Error::TimedOut(format!(
                "no message on {} within {timeout:?}",
                self.core.describe()
            ))),
        }
    }

    /// Takes a message into `buf`, waiting asynchronously: its length.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), and as [`try_recv_into`](Self::try_recv_into) for a buffer
    /// too small (the message stays queued).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken only in the poll that copies it into `buf`.
    pub fn recv_into<'a>(&'a mut self, buf: &'a mut [u8]) -> RecvIntoFuture<'a, F> {
        RecvIntoFuture {
            rx: self,
            buf,
            started: None,
        }
    }

    /// Polls for a message into `buf` (the typed consumers' stream).
    pub(crate) fn poll_recv_into(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
        started: &mut Option<Instant>,
    ) -> std::task::Poll<Result<usize>> {
        let rx = &mut self.rx;
        match poll_op(&mut self.core, cx, started, |core| Self::take(core, rx)) {
            std::task::Poll::Ready(Ok((pos, len))) => {
                std::task::Poll::Ready(self.copy_into(pos, len, buf))
            }
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    /// Withdraws an async wait announced by [`poll_recv_into`](Self::poll_recv_into).
    pub(crate) fn retract_wait(&mut self) {
        reactor::retract(&mut self.core);
    }
}

/// The future of [`Consumer::recv_into`]: the length of the message copied into the buffer.
#[must_use = "futures do nothing unless polled"]
pub struct RecvIntoFuture<'a, F: Flavour> {
    rx: &'a mut Consumer<F>,
    buf: &'a mut [u8],
    started: Option<Instant>,
}

impl<F: Flavour> fmt::Debug for RecvIntoFuture<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvIntoFuture")
            .field("buf_len", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl<F: Flavour> std::future::Future for RecvIntoFuture<'_, F> {
    type Output = Result<usize>;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<usize>> {
        let this = self.get_mut();
        this.rx.poll_recv_into(cx, this.buf, &mut this.started)
    }
}

impl<F: Flavour> Drop for RecvIntoFuture<'_, F> {
    fn drop(&mut self) {
        self.rx.retract_wait();
    }
}
