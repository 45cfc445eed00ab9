//! Zero-copy guards: a slot reserved to write in place ([`WriteSlot`]), consecutive slots
//! reserved at once ([`WriteChunk`]), a message read in place ([`ReadSlot`]), and several
//! consecutive messages read at once ([`ReadChunk`]). None holds a reference to shared bytes: they
//! copy, or hand out raw pointers.

use std::fmt;

use super::consumer::Consumer;
use super::producer::Producer;
use super::{Flavour, Spsc};
use crate::error::{Error, Result};
use crate::loom::Ordering;
use crate::ring::{RecvSide, SendSide};

/// A slot reserved in place; see [`Producer::try_reserve`]. Holds no reference to the shared
/// bytes: write with [`write`](Self::write) or through [`as_mut_ptr`](Self::as_mut_ptr).
pub struct WriteSlot<'a, F: Flavour> {
    producer: &'a mut Producer<F>,
    /// The claimed position: ours until `commit` or drop.
    pos: u64,
    done: bool,
}

impl<F: Flavour> fmt::Debug for WriteSlot<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteSlot")
            .field("position", &self.pos)
            .finish()
    }
}

impl<'a, F: Flavour> WriteSlot<'a, F> {
    pub(super) fn new(producer: &'a mut Producer<F>, pos: u64) -> Self {
        WriteSlot {
            producer,
            pos,
            done: false,
        }
    }

    /// Bytes the slot can hold.
    pub fn capacity(&self) -> usize {
        self.producer.core.ring.slot_size
    }

    /// The channel as errors name it.
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
    pub(crate) fn channel(&self) -> String {
        self.producer.core.describe()
    }

    /// Copies `data` into the slot at byte `at`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if it does not fit.
    pub fn write(&mut self, at: usize, data: &[u8]) -> Result<()> {
        match at.checked_add(data.len()) {
            Some(end) if end <= self.capacity() => {}
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{} bytes at {at} do not fit a slot of {}",
                    data.len(),
                    self.capacity()
                )));
            }
        }
        let ring = &self.producer.core.ring;
        ring.write_payload(ring.index(self.pos), at, data);
        Ok(())
    }

    /// Pointer to the slot's `capacity()` bytes, for writing in place. A peer may write them
    /// too if it is buggy or hostile: write through the pointer, never make a `&mut [u8]` of
    /// it.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        let ring = &self.producer.core.ring;
        ring.payload(ring.index(self.pos))
    }

    /// Sends the first `len` bytes of the slot.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `len > capacity()` (the slot is then discarded).
    pub fn commit(mut self, len: usize) -> Result<()> {
        self.done = true;
        if len > self.capacity() {
            self.discard();
            return Err(Error::InvalidArgument(format!(
                "commit of {len} bytes in a slot of {}",
                self.capacity()
            )));
        }
        self.producer.commit(self.pos, len as u32);
        Ok(())
    }

    fn discard(&mut self) {
        self.producer.discard(self.pos);
    }
}

impl<F: Flavour> Drop for WriteSlot<'_, F> {
    fn drop(&mut self) {
        if !self.done {
            self.discard();
        }
    }
}

/// Several consecutive slots reserved at once; see [`Producer::try_reserve_many`]. Dropped
/// without a [`commit`](Self::commit), it sends nothing (on MPSC and MPMC rings its slots are
/// given back as discarded, which consumers skip).
pub struct WriteChunk<'a, F: Flavour = Spsc> {
    producer: &'a mut Producer<F>,
    pos: u64,
    len: usize,
    lens: Vec<u32>,
    done: bool,
}

impl<F: Flavour> fmt::Debug for WriteChunk<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteChunk")
            .field("position", &self.pos)
            .field("len", &self.len)
            .finish()
    }
}

impl<'a, F: Flavour> WriteChunk<'a, F> {
    pub(super) fn new(producer: &'a mut Producer<F>, pos: u64, len: usize) -> Self {
        WriteChunk {
            producer,
            pos,
            len,
            lens: vec![0; len],
            done: false,
        }
    }

    /// Slots in the chunk (at most the `n` asked for; 0 when the ring was full).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the chunk has no slot.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `msg` into slot `i` of the chunk.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `i` is out of the chunk or `msg` longer than a slot.
    pub fn write(&mut self, i: usize, msg: &[u8]) -> Result<()> {
        if i >= self.len {
            return Err(Error::InvalidArgument(format!(
                "slot {i} of a chunk of {}",
                self.len
            )));
        }
        self.producer.check_len(msg.len())?;
        let ring = &self.producer.core.ring;
        ring.write_payload(ring.index(self.pos.wrapping_add(i as u64)), 0, msg);
        self.lens[i] = msg.len() as u32;
        Ok(())
    }

    /// Sends the first `k` slots (and at most one wake-up): one release store on SPSC, a
    /// sequence store per slot on MPSC and MPMC, where the other `len() - k` are given back.
    ///
    /// # Panics
    ///
    /// If `k > len()`.
    pub fn commit(mut self, k: usize) {
        assert!(
            k <= self.len,
            "commit of {k} slots in a chunk of {}",
            self.len
        );
        self.done = true;
        let p = &mut *self.producer;
        let ring = &p.core.ring;
        for i in 0..k {
            // Relaxed: published by the Release store(s) of `publish_many`.
            ring.len(ring.index(self.pos.wrapping_add(i as u64)))
                .store(self.lens[i], Ordering::Relaxed);
        }
        p.tx.algo
            .publish_many(ring, self.pos, k as u64, self.len as u64, p.core.intent());
        p.core.wake_peers();
    }
}

impl<F: Flavour> Drop for WriteChunk<'_, F> {
    fn drop(&mut self) {
        if self.done || self.len == 0 || F::KIND == crate::layout::Kind::SPSC {
            // SPSC: nothing unpublished is in anyone's way; the slots stay free.
            return;
        }
        let p = &mut *self.producer;
        p.tx.algo
            .publish_many(&p.core.ring, self.pos, 0, self.len as u64, p.core.intent());
        p.core.wake_peers();
    }
}

/// A message borrowed in place; see [`Consumer::try_recv_ref`]. The slot is freed on drop.
pub struct ReadSlot<'a, F: Flavour> {
    consumer: &'a mut Consumer<F>,
    pos: u64,
    len: usize,
}

impl<F: Flavour> fmt::Debug for ReadSlot<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadSlot")
            .field("position", &self.pos)
            .field("len", &self.len)
            .finish()
    }
}

impl<'a, F: Flavour> ReadSlot<'a, F> {
    pub(super) fn new(consumer: &'a mut Consumer<F>, pos: u64, len: usize) -> Self {
        ReadSlot { consumer, pos, len }
    }

    /// The message length (validated against the slot size).
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Copies `buf.len()` bytes from byte `at` of the message.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the range is outside the message.
    pub fn read(&self, at: usize, buf: &mut [u8]) -> Result<()> {
        match at.checked_add(buf.len()) {
            Some(end) if end <= self.len => {}
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{} bytes at {at} of a {}-byte message",
                    buf.len(),
                    self.len
                )));
            }
        }
        let ring = &self.consumer.core.ring;
        ring.read_payload(ring.index(self.pos), at, buf);
        Ok(())
    }
    /// Copies the message out.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len];
        let ring = &self.consumer.core.ring;
        ring.read_payload(ring.index(self.pos), 0, &mut v);
        v
    }
    /// Pointer to the message's `len()` bytes. Read through it (e.g. with
    /// `ptr::copy_nonoverlapping` or `read_unaligned`), never as a `&[u8]`: a buggy or hostile
    /// peer could write the bytes meanwhile.
    pub fn as_ptr(&self) -> *const u8 {
        let ring = &self.consumer.core.ring;
        ring.payload(ring.index(self.pos))
    }
}

impl<F: Flavour> Drop for ReadSlot<'_, F> {
    fn drop(&mut self) {
        let c = &mut *self.consumer;
        Consumer::<F>::release_pos(&mut c.core, &mut c.rx, self.pos);
    }
}

/// Several consecutive messages read at once; see [`Consumer::try_recv_many`]. They are freed
/// together when the chunk is dropped.
pub struct ReadChunk<'a, F: Flavour = Spsc> {
    consumer: &'a mut Consumer<F>,
    pos: u64,
    lens: Vec<usize>,
}

impl<F: Flavour> fmt::Debug for ReadChunk<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadChunk")
            .field("position", &self.pos)
            .field("len", &self.lens.len())
            .finish()
    }
}

impl<'a, F: Flavour> ReadChunk<'a, F> {
    pub(super) fn new(consumer: &'a mut Consumer<F>, pos: u64, lens: Vec<usize>) -> Self {
        ReadChunk {
            consumer,
            pos,
            lens,
        }
    }

    /// Messages in the chunk.
    pub fn len(&self) -> usize {
        self.lens.len()
    }
    /// Whether the chunk is empty.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }
    /// Copies message `i` out.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn get(&self, i: usize) -> Vec<u8> {
        let mut v = vec![0; self.lens[i]];
        let ring = &self.consumer.core.ring;
        ring.read_payload(ring.index(self.pos.wrapping_add(i as u64)), 0, &mut v);
        v
    }
    /// Copies message `i` into the start of `buf`, without allocating: its length.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `i` is out of the chunk or the message longer than
    /// `buf` (a buffer of the channel's slot size always fits).
    pub fn read(&self, i: usize, buf: &mut [u8]) -> Result<usize> {
        let Some(&len) = self.lens.get(i) else {
            return Err(Error::InvalidArgument(format!(
                "message {i} of a chunk of {}",
                self.lens.len()
            )));
        };
        let Some(dst) = buf.get_mut(..len) else {
            return Err(Error::InvalidArgument(format!(
                "message {i} of the chunk is {len} bytes, the buffer {}",
                buf.len()
            )));
        };
        let ring = &self.consumer.core.ring;
        ring.read_payload(ring.index(self.pos.wrapping_add(i as u64)), 0, dst);
        Ok(len)
    }
}

impl<F: Flavour> Drop for ReadChunk<'_, F> {
    fn drop(&mut self) {
        let n = self.lens.len() as u64;
        if n == 0 {
            return;
        }
        let c = &mut *self.consumer;
        c.rx.release_many(
            &c.core.ring,
            self.pos,
            n,
            c.core.intent(),
            c.core.chunk_end_word(),
        );
        // SPSC: its one producer; MPSC, MPMC: up to `n` producers waiting for space.
        c.core.wake_peers_n(n as usize);
    }
}

/// Reservations kept across polls, for the byte stream (`endpoint/stream.rs`): a slot filled
/// by several writes, a message read by several reads. SPSC only: there a claim is the
/// unpublished tail (the unreleased head), which stays ours, and stays the same position,
/// until this handle publishes (releases) it; nothing in shared memory records it.
#[cfg(any(feature = "tokio", feature = "async-io"))]
impl Producer<Spsc> {
    /// Waits asynchronously for a free slot and reserves it.
    pub(crate) fn poll_reserve(
        &mut self,
        cx: &mut std::task::Context<'_>,
        started: &mut Option<std::time::Instant>,
    ) -> std::task::Poll<Result<WriteSlot<'_, Spsc>>> {
        let tx = &mut self.tx;
        match crate::wait::reactor::poll_op(&mut self.core, cx, started, |core| {
            super::producer::claim_with(core, tx)
        }) {
            std::task::Poll::Ready(Ok(pos)) => {
                std::task::Poll::Ready(Ok(WriteSlot::new(self, pos)))
            }
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    /// The guard again of a reservation put aside with [`WriteSlot::suspend`]. `pos` must be
    /// what `suspend` returned, with no send on this producer since (the stream owns it).
    pub(crate) fn resume_slot(&mut self, pos: u64) -> WriteSlot<'_, Spsc> {
        WriteSlot::new(self, pos)
    }
}

#[cfg(any(feature = "tokio", feature = "async-io"))]
impl WriteSlot<'_, Spsc> {
    /// Puts the reservation aside, unpublished, and returns its position for
    /// [`Producer::resume_slot`].
    pub(crate) fn suspend(mut self) -> u64 {
        self.done = true;
        self.pos
    }
}

#[cfg(any(feature = "tokio", feature = "async-io"))]
impl Consumer<Spsc> {
    /// Waits asynchronously for a message and borrows it in place.
    pub(crate) fn poll_recv_ref(
        &mut self,
        cx: &mut std::task::Context<'_>,
        started: &mut Option<std::time::Instant>,
    ) -> std::task::Poll<Result<ReadSlot<'_, Spsc>>> {
        let rx = &mut self.rx;
        match crate::wait::reactor::poll_op(&mut self.core, cx, started, |core| {
            Consumer::<Spsc>::take(core, rx)
        }) {
            std::task::Poll::Ready(Ok((pos, len))) => {
                std::task::Poll::Ready(Ok(ReadSlot::new(self, pos, len)))
            }
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    /// The guard again of a message put aside with [`ReadSlot::suspend`]; `(pos, len)` must be
    /// what `suspend` returned, with no receive on this consumer since.
    pub(crate) fn resume_ref(&mut self, pos: u64, len: usize) -> ReadSlot<'_, Spsc> {
        ReadSlot::new(self, pos, len)
    }
}

#[cfg(any(feature = "tokio", feature = "async-io"))]
impl ReadSlot<'_, Spsc> {
    /// Puts the message aside, unreleased (still ours, `len` still validated), and returns
    /// its position and length for [`Consumer::resume_ref`].
    pub(crate) fn suspend(self) -> (u64, usize) {
        let this = std::mem::ManuallyDrop::new(self);
        (this.pos, this.len)
    }
}

/// Reserving asynchronously, and the pieces the typed channels build their `Sink` on.
impl<F: Flavour> Producer<F> {
    /// Reserves a slot, waiting asynchronously while the ring is full: write the message in
    /// place, then [`WriteSlot::commit`] it (dropping the slot sends nothing).
    ///
    /// # Errors
    ///
    /// As [`try_reserve`](Self::try_reserve), and [`Error::Io`] if no async runtime can be
    /// used.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a slot is claimed only in the poll that returns it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Options, spsc};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmchan::Result<()> {
    /// # let name = format!("/shmchan-doc-reserve-async-{}", std::process::id());
    /// let mut tx = spsc::Producer::create(&name, Options::new())?;
    /// let mut rx = spsc::Consumer::open(&name, Options::new())?;
    /// let mut slot = tx.reserve().await?;
    /// slot.write(0, b"in place")?;
    /// slot.commit(8)?;
    /// assert_eq!(&*rx.recv().await?, b"in place");
    /// # Ok(())
    /// # }
    /// ```
    pub fn reserve(&mut self) -> ReserveFuture<'_, F> {
        ReserveFuture {
            tx: Some(self),
            started: None,
        }
    }

    /// Polls for a claimed position (the Sink's reservation first, as every send path).
    pub(crate) fn poll_claim(
        &mut self,
        cx: &mut std::task::Context<'_>,
        started: &mut Option<std::time::Instant>,
    ) -> std::task::Poll<Result<u64>> {
        let tx = &mut self.tx;
        crate::wait::reactor::poll_op(&mut self.core, cx, started, |core| {
            super::producer::claim_with(core, tx)
        })
    }

    /// Withdraws an async wait announced by [`poll_claim`](Self::poll_claim).
    pub(crate) fn retract_wait(&mut self) {
        crate::wait::reactor::retract(&mut self.core);
    }

    /// Keeps the claimed `pos` as the `Sink` reservation: every send path uses it next, and
    /// dropping the producer discards it.
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
    pub(crate) fn hold_reservation(&mut self, pos: u64) {
        debug_assert!(self.tx.reserved.is_none());
        self.tx.reserved = Some(pos);
    }

    /// Whether a reservation is held (see [`hold_reservation`](Self::hold_reservation)).
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
    pub(crate) fn has_reservation(&self) -> bool {
        self.tx.reserved.is_some()
    }
}

/// The future of [`Producer::reserve`].
#[must_use = "futures do nothing unless polled"]
pub struct ReserveFuture<'a, F: Flavour> {
    tx: Option<&'a mut Producer<F>>,
    started: Option<std::time::Instant>,
}

impl<F: Flavour> fmt::Debug for ReserveFuture<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReserveFuture").finish_non_exhaustive()
    }
}

impl<'a, F: Flavour> std::future::Future for ReserveFuture<'a, F> {
    type Output = Result<WriteSlot<'a, F>>;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let tx = this
            .tx
            .as_mut()
            .expect("ReserveFuture polled after completion");
        match tx.poll_claim(cx, &mut this.started) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(r) => {
                let tx = this.tx.take().expect("checked above");
                tx.retract_wait();
                std::task::Poll::Ready(r.map(|pos| WriteSlot::new(tx, pos)))
            }
        }
    }
}

impl<F: Flavour> Drop for ReserveFuture<'_, F> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            tx.retract_wait();
        }
    }
}
