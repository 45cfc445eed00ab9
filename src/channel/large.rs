//! Messages of any size in one call: [`Producer::send_large`] puts a small message inline in
//! the slot and a large one in a block of the channel's [`Heap`] whose [`Handle`] travels in
//! the slot; [`Consumer::recv_large`] gives both back as one [`LargeMessage`].
//!
//! # Frames
//!
//! Every large-message slot starts with an 8-byte header, `tag: u32, len: u32` (little
//! endian):
//!
//! | tag | rest of the slot |
//! |---|---|
//! | `FRAME_INLINE` | `len` payload bytes |
//! | `FRAME_BLOCK` | a 24-byte [`Handle`] (`len` = 24) |
//!
//! The receiver checks the tag, that `len` fits in the message, and hands the handle to
//! [`Heap::take`], which validates it: a slot written by a hostile or confused peer gives
//! [`Error::Corrupt`], never a panic or a wrong block.
//!
//! # Ownership and crashes
//!
//! A block belongs to the sender until it is sent, is *in flight* while its handle is in the
//! ring, and belongs to the receiver once received (freed when the [`LargeMessage`] is
//! dropped). Each producer remembers the handles it sent that are still in flight (a list
//! pruned as receivers take them, so it stays about the size of the ring). When a send finds
//! every consumer gone (closed or dead), and when the producer is dropped with every consumer
//! gone, the producer takes those blocks back and frees them: a consumer killed with blocks in
//! the ring leaks nothing, and blocks a dead consumer had already received are owned by a dead
//! process, which every [`Heap::alloc`] that finds no room reclaims. A consumer that attaches
//! later to a channel whose blocks were reclaimed gets [`Error::Corrupt`] for those slots.
//! If the producers die too, the blocks left in the ring die with a memfd heap; a named heap
//! keeps them until [`Heap::reclaim_dead_in_flight`].
//!
//! # Trust
//!
//! Every process attached to a heap can take any handle in flight in it (a handle is plain
//! bytes) and write any block. Channels that share one heap therefore trust each other's
//! peers; give each trust domain its own heap ([`Listener::heap_size`] gives each connection
//! one). What a hostile peer can do to the bytes you read is on [`LargeMessage`].
//!
//! [`Listener::heap_size`]: crate::endpoint::Listener::heap_size

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_sink::Sink;
use zerocopy::{FromBytes, IntoBytes};

use super::{Consumer, Flavour, Message, Producer, WriteSlot};
use crate::error::{Error, Result};
use crate::heap::{AllocFuture, Handle, Heap, ShmBuf};

/// Header tag of a payload stored in the slot.
const FRAME_INLINE: u32 = 0x314e_4c53; // "SLN1"
/// Header tag of a heap block handle.
const FRAME_BLOCK: u32 = 0x314b_4c53; // "SLK1"
/// Bytes of the frame header.
pub const LARGE_HEADER: usize = 8;
/// Smallest slot size that can carry large messages (header and handle).
pub const LARGE_MIN_SLOT: usize = LARGE_HEADER + std::mem::size_of::<Handle>();

/// What a handle keeps for large messages: the attached heap and the blocks it sent that
/// may still be in flight.
#[derive(Debug, Default)]
pub(super) struct LargeState {
    heap: Option<Heap>,
    in_flight: Vec<Handle>,
}

fn frame_header(tag: u32, len: usize) -> [u8; LARGE_HEADER] {
    let mut h = [0u8; LARGE_HEADER];
    h[..4].copy_from_slice(&tag.to_le_bytes());
    h[4..].copy_from_slice(&(len as u32).to_le_bytes());
    h
}

/// Writes the inline frame of `data` straight into `slot` and publishes it: no buffer in
/// between, no allocation per message.
fn commit_inline<F: Flavour>(mut slot: WriteSlot<'_, F>, data: &[u8]) -> Result<()> {
    slot.write(0, &frame_header(FRAME_INLINE, data.len()))?;
    slot.write(LARGE_HEADER, data)?;
    slot.commit(LARGE_HEADER + data.len())
}

fn inline_frame(data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(LARGE_HEADER + data.len());
    f.extend_from_slice(&frame_header(FRAME_INLINE, data.len()));
    f.extend_from_slice(data);
    f
}

fn block_frame(h: &Handle) -> [u8; LARGE_MIN_SLOT] {
    let mut f = [0u8; LARGE_MIN_SLOT];
    f[..LARGE_HEADER].copy_from_slice(&frame_header(FRAME_BLOCK, std::mem::size_of::<Handle>()));
    f[LARGE_HEADER..].copy_from_slice(h.as_bytes());
    f
}

/// A handle put in flight for a send: taken back (and freed, or returned) unless the send
/// completed. Makes the sends cancel safe: a dropped send future leaks no block.
struct Flight {
    heap: Heap,
    handle: Option<Handle>,
}

impl Flight {
    fn new(heap: &Heap, buf: ShmBuf) -> Flight {
        Flight {
            heap: heap.clone(),
            handle: Some(buf.into_handle()),
        }
    }
    fn handle(&self) -> Handle {
        self.handle.expect("a live flight")
    }
    /// The send completed: the receiver owns the block from now on.
    fn sent(mut self) -> Handle {
        self.handle.take().expect("a live flight")
    }
    /// The send failed: the block back (`None` if a peer took it meanwhile, which only a
    /// misbehaving one could).
    fn back(mut self) -> Option<ShmBuf> {
        self.handle.take().and_then(|h| self.heap.take(h).ok())
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            drop(self.heap.take(h));
        }
    }
}

/// `attach_heap` and `heap`, the same on both sides; the attributes are the first paragraph of
/// the side's `attach_heap` docs.
macro_rules! heap_methods {
    ($(#[$doc:meta])*) => {
        $(#[$doc])*
        ///
        /// # Errors
        ///
        /// [`Error::InvalidArgument`] if the slots are smaller than [`LARGE_MIN_SLOT`] bytes
        /// (they could not carry a handle).
        pub fn attach_heap(&mut self, heap: &Heap) -> Result<()> {
            check_slot(self.slot_size(), self.name())?;
            self.core.large.heap = Some(heap.clone());
            Ok(())
        }

        /// The heap attached for large messages, if any.
        pub fn heap(&self) -> Option<&Heap> {
            self.core.large.heap.as_ref()
        }
    };
}

impl<F: Flavour> Producer<F> {
    heap_methods! {
        /// Attaches `heap` for large messages (a clone of the handle is kept): see
        /// [`send_large`](Self::send_large). The consumers must attach the same heap.
    }

    /// Largest payload [`send_large`](Self::send_large) puts inline in a slot; longer ones go
    /// through the heap.
    pub fn inline_max(&self) -> usize {
        self.slot_size().saturating_sub(LARGE_HEADER)
    }

    /// Blocks this producer sent that may still be in flight (sent, not yet received); a
    /// snapshot that receivers change at once.
    pub fn blocks_in_flight(&self) -> usize {
        match &self.core.large.heap {
            Some(h) => self
                .core
                .large
                .in_flight
                .iter()
                .filter(|x| h.is_in_flight(x))
                .count(),
            None => 0,
        }
    }

    fn large_heap(&self) -> Result<Heap> {
        self.core.large.heap.clone().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "channel '{}': no heap attached for large messages (Producer::attach_heap)",
                self.name()
            ))
        })
    }

    /// Allocates a block of the attached heap for a message of `len` bytes, waiting
    /// asynchronously while the heap is full (back-pressure: receivers free blocks as they
    /// drop their messages). Fill it in place ([`ShmBuf::write_at`], or
    /// [`ShmBuf::as_mut_slice`] for a trusted heap) and send it with
    /// [`send_buf`](Self::send_buf).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] without a heap or for more than the heap holds;
    /// [`Error::Closed`] / [`Error::PeerGone`] when every consumer is gone (this producer's
    /// blocks in flight are reclaimed then); as [`Heap::alloc_async`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is allocated until it completes.
    pub async fn alloc_large(&mut self, len: usize) -> Result<ShmBuf> {
        let heap = self.large_heap()?;
        self.reclaim_if_gone()?;
        heap.alloc_async(len).await
    }

    /// Sends `data`, whatever its size: inline in a slot if it fits
    /// ([`inline_max`](Self::inline_max)), else copied into a block of the attached heap
    /// (waiting asynchronously for room) whose handle is sent. The consumer receives it with
    /// [`Consumer::recv_large`]. To avoid the copy, fill a block in place
    /// ([`alloc_large`](Self::alloc_large)) and [`send_buf`](Self::send_buf) it.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send) and [`alloc_large`](Self::alloc_large).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped, nothing was sent and no block is left behind.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Heap, Options, spsc};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmchan::Result<()> {
    /// # let name = format!("/shmchan-doc-large-{}", std::process::id());
    /// let heap = Heap::options().create_memfd(16 << 20)?; // or Heap::create(name, size)
    /// let mut tx = spsc::Producer::create(&name, Options::new())?;
    /// let mut rx = spsc::Consumer::open(&name, Options::new())?;
    /// tx.attach_heap(&heap)?;
    /// rx.attach_heap(&heap)?;
    ///
    /// tx.send_large(b"small").await?; // inline in the slot
    /// tx.send_large(&vec![7u8; 4 << 20]).await?; // 4 MiB: through the heap
    /// assert_eq!(rx.recv_large().await?.to_vec(), b"small");
    /// let big = rx.recv_large().await?;
    /// assert!(big.is_block() && big.len() == 4 << 20);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_large(&mut self, data: &[u8]) -> Result<()> {
        if data.len() <= self.inline_max() {
            check_slot(self.slot_size(), self.name())?;
            return commit_inline(self.reserve().await?, data);
        }
        let mut buf = self.alloc_large(data.len()).await?;
        buf.write_at(0, data)?;
        self.send_buf(buf).await
    }

    /// Sends a filled block of the attached heap: its handle travels in a slot, ownership
    /// moves to the consumer that receives it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] (no heap, or a block of another heap), or the errors of
    /// [`send`](Self::send); the block is then freed (those failures are final, as for
    /// `send`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped, nothing was sent and the block is freed.
    pub async fn send_buf(&mut self, buf: ShmBuf) -> Result<()> {
        let (flight, frame) = self.start_flight(buf)?;
        let sent = self.send(frame).await;
        self.land_flight(flight, sent)
    }

    /// [`send_large`](Self::send_large), parking the thread while the ring or the heap is
    /// full (the heap wait is [`Heap::alloc_timeout`] without a limit).
    ///
    /// # Errors
    ///
    /// As [`send_large`](Self::send_large).
    pub fn send_large_blocking(&mut self, data: &[u8]) -> Result<()> {
        if data.len() <= self.inline_max() {
            check_slot(self.slot_size(), self.name())?;
            return commit_inline(self.reserve_blocking()?, data);
        }
        let heap = self.large_heap()?;
        self.reclaim_if_gone()?;
        let mut buf = heap.alloc_timeout(data.len(), std::time::Duration::MAX)?;
        buf.write_at(0, data)?;
        self.send_buf_blocking(buf)
    }

    /// [`send_buf`](Self::send_buf), parking the thread while the ring is full.
    ///
    /// # Errors
    ///
    /// As [`send_buf`](Self::send_buf).
    pub fn send_buf_blocking(&mut self, buf: ShmBuf) -> Result<()> {
        let (flight, frame) = self.start_flight(buf)?;
        let sent = self.send_blocking(frame);
        self.land_flight(flight, sent)
    }

    /// A `Sink` of messages of any size (anything that is `AsRef<[u8]>`), sent as
    /// [`send_large`](Self::send_large) sends them. Back-pressure comes from the ring and from
    /// the heap: `poll_ready` is pending while the previous item waits for a heap block
    /// ([`Heap::alloc_async`]) or a slot.
    pub fn large_sink<M: AsRef<[u8]> + Unpin>(&mut self) -> LargeSink<'_, F, M> {
        LargeSink {
            tx: self,
            pending: None,
        }
    }

    fn check_buf(&self, buf: &ShmBuf) -> Result<Heap> {
        let heap = self.large_heap()?;
        check_slot(self.slot_size(), self.name())?;
        if !heap.owns(buf) {
            return Err(Error::InvalidArgument(format!(
                "channel '{}': the block is not from the heap attached to the channel",
                self.name()
            )));
        }
        Ok(heap)
    }

    /// Puts `buf` in flight for a send (checked against the attached heap, on error freed on
    /// drop; dead consumers' blocks reclaimed first): the flight and the frame carrying its
    /// handle. A flight dropped before it lands frees the block.
    fn start_flight(&mut self, buf: ShmBuf) -> Result<(Flight, [u8; LARGE_MIN_SLOT])> {
        let heap = self.check_buf(&buf)?;
        self.reclaim_if_gone()?;
        let flight = Flight::new(&heap, buf);
        let frame = block_frame(&flight.handle());
        Ok((flight, frame))
    }

    /// Lands `flight`, whose frame's send returned `sent`: the receiver owns the block, or
    /// (the send failed for good) it is freed.
    fn land_flight(&mut self, flight: Flight, sent: Result<()>) -> Result<()> {
        match sent {
            Ok(()) => {
                self.note_sent(flight.sent());
                Ok(())
            }
            Err(e) => {
                drop(flight.back());
                Err(e)
            }
        }
    }

    /// Remembers a handle sent, pruning the handles receivers already took.
    fn note_sent(&mut self, h: Handle) {
        let cap = self.capacity();
        let large = &mut self.core.large;
        large.in_flight.push(h);
        if large.in_flight.len() > 2 * cap + 8 {
            if let Some(heap) = &large.heap {
                large.in_flight.retain(|x| heap.is_in_flight(x));
            }
        }
    }

    /// When every consumer is gone: frees this producer's blocks still in flight and says
    /// why the channel is closed.
    fn reclaim_if_gone(&mut self) -> Result<()> {
        if self.core.large.in_flight.is_empty() && !self.is_closed() {
            return Ok(());
        }
        self.core.check_peers(false)?;
        match self.core.closed_error() {
            Some(e) => {
                self.reclaim_in_flight();
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Frees the blocks this producer sent that no consumer took (call only when no consumer
    /// can receive them any more).
    fn reclaim_in_flight(&mut self) {
        let large = &mut self.core.large;
        if let Some(heap) = &large.heap {
            for h in large.in_flight.drain(..) {
                // Taking back succeeds only for a block still in flight at that generation.
                drop(heap.take(h));
            }
        }
    }

    /// At drop: with every consumer gone (a fresh liveness check), frees the blocks left in
    /// flight.
    pub(super) fn reclaim_large_at_drop(&mut self) {
        if self.core.large.in_flight.is_empty() {
            return;
        }
        if self.core.check_peers(true).is_ok() && self.core.peers_closed() {
            self.reclaim_in_flight();
        }
    }
}

fn check_slot(slot: usize, name: &str) -> Result<()> {
    if slot < LARGE_MIN_SLOT {
        return Err(Error::InvalidArgument(format!(
            "channel '{name}': {slot}-byte slots cannot carry large messages (at least \
             {LARGE_MIN_SLOT} bytes needed)"
        )));
    }
    Ok(())
}

/// A message received by [`Consumer::recv_large`]: either a copy of a small payload that
/// travelled inline in the slot, or a block of the heap that now belongs to this process
/// (freed when the message is dropped).
///
/// # What a hostile peer can do to the bytes
///
/// An inline payload is a private copy: nobody else can touch it. A block is shared memory:
/// an honest sender never touches a block after sending it, but a hostile process attached to
/// the heap can write any byte of it at any time, even while you read it, and can mark it
/// free so that it is handed out again. It cannot unmap it, move it, or (for memfd heaps,
/// sealed against shrinking) truncate it, so reads never fault and never leave the block.
/// Hence: [`read_at`](Self::read_at) and [`to_vec`](Self::to_vec) copy (validate the copy);
/// [`as_slice`](Self::as_slice) is a zero-copy view that is `unsafe` for blocks, sound only
/// while no other process writes the block (every process attached to the heap trusted).
#[derive(Debug)]
pub enum LargeMessage {
    /// A small payload, copied out of its slot.
    Inline(InlineMessage),
    /// A heap block, owned by this process.
    Block(ShmBuf),
}

/// The payload of an inline [`LargeMessage`]: derefs to `[u8]`.
#[derive(Debug, Clone)]
pub struct InlineMessage {
    msg: Message,
    len: usize,
}

impl std::ops::Deref for InlineMessage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.msg[LARGE_HEADER..LARGE_HEADER + self.len]
    }
}

impl AsRef<[u8]> for InlineMessage {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl LargeMessage {
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            LargeMessage::Inline(m) => m.len(),
            LargeMessage::Block(b) => b.len(),
        }
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether the payload is a heap block (it did not fit in a slot).
    pub fn is_block(&self) -> bool {
        matches!(self, LargeMessage::Block(_))
    }
    /// Copies `buf.len()` bytes at `at` out of the payload.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the range is outside the payload.
    pub fn read_at(&self, at: usize, buf: &mut [u8]) -> Result<()> {
        match self {
            LargeMessage::Inline(m) => {
                let src = at
                    .checked_add(buf.len())
                    .and_then(|end| m.get(at..end))
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "range {at}..{at}+{} is outside the {}-byte message",
                            buf.len(),
                            m.len()
                        ))
                    })?;
                buf.copy_from_slice(src);
                Ok(())
            }
            LargeMessage::Block(b) => b.read_at(at, buf),
        }
    }
    /// Copies the payload out.
    pub fn to_vec(&self) -> Vec<u8> {
        match self {
            LargeMessage::Inline(m) => m.to_vec(),
            LargeMessage::Block(b) => b.to_vec(),
        }
    }
    /// The payload without a copy.
    ///
    /// # Safety
    ///
    /// For a block, as [`ShmBuf::as_slice`]: no other process may write the block while the
    /// slice lives (see the type's docs for what a hostile peer can do). For an inline
    /// message it is always sound.
    pub unsafe fn as_slice(&self) -> &[u8] {
        match self {
            LargeMessage::Inline(m) => m,
            // SAFETY: the caller's promise (this function's contract).
            LargeMessage::Block(b) => unsafe { b.as_slice() },
        }
    }
    /// The message as a value that derefs to `&[u8]`, to back a `bytes::Bytes`
    /// (`Bytes::from_owner`) or feed a parser without a copy. A block is freed when the value
    /// (and every `Bytes` made from it) is dropped.
    ///
    /// # Safety
    ///
    /// As [`as_slice`](Self::as_slice), for as long as the returned value lives.
    pub unsafe fn assume_trusted(self) -> TrustedMessage {
        TrustedMessage(self)
    }
}

/// A [`LargeMessage`] whose bytes the user promised no other process writes
/// ([`LargeMessage::assume_trusted`]); derefs to `[u8]`.
#[derive(Debug)]
pub struct TrustedMessage(LargeMessage);

impl TrustedMessage {
    /// The message back.
    pub fn into_inner(self) -> LargeMessage {
        self.0
    }
}

impl std::ops::Deref for TrustedMessage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the creator of this value promised (`assume_trusted`'s contract) that no
        // other process writes the block while it lives.
        unsafe { self.0.as_slice() }
    }
}

impl AsRef<[u8]> for TrustedMessage {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl<F: Flavour> Consumer<F> {
    heap_methods! {
        /// Attaches `heap` for large messages (a clone of the handle is kept): see
        /// [`recv_large`](Self::recv_large). It must be the heap the producers attached.
    }

    /// Receives a message sent by [`Producer::send_large`] (or `send_buf`), waiting
    /// asynchronously; a block sent through the heap now belongs to this process.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv); [`Error::Corrupt`] for a slot that is not a large-message
    /// frame or a handle that [`Heap::take`] rejects (forged, stale, another heap);
    /// [`Error::InvalidArgument`] for a block while no heap is attached.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`recv`](Self::recv).
    pub async fn recv_large(&mut self) -> Result<LargeMessage> {
        let m = self.recv().await?;
        self.decode_large(m)
    }

    /// [`recv_large`](Self::recv_large), parking the thread.
    ///
    /// # Errors
    ///
    /// As [`recv_large`](Self::recv_large).
    pub fn recv_large_blocking(&mut self) -> Result<LargeMessage> {
        let m = self.recv_blocking()?;
        self.decode_large(m)
    }

    /// [`recv_large`](Self::recv_large) if a message is waiting now (`Ok(None)` if not).
    ///
    /// # Errors
    ///
    /// As [`recv_large`](Self::recv_large).
    pub fn try_recv_large(&mut self) -> Result<Option<LargeMessage>> {
        match self.try_recv() {
            Ok(m) => self.decode_large(m).map(Some),
            Err(crate::error::TryRecvError::Empty) => Ok(None),
            Err(crate::error::TryRecvError::Closed) => Err(Error::Closed),
            Err(crate::error::TryRecvError::Other(e)) => Err(e),
        }
    }

    fn decode_large(&self, m: Message) -> Result<LargeMessage> {
        let corrupt = |why: String| Error::Corrupt(format!("channel '{}': {why}", self.name()));
        if m.len() < LARGE_HEADER {
            return Err(corrupt(format!(
                "a {}-byte message is not a large-message frame",
                m.len()
            )));
        }
        let tag = u32::from_le_bytes(m[..4].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(m[4..8].try_into().expect("4 bytes")) as usize;
        let body = m.len() - LARGE_HEADER;
        match tag {
            FRAME_INLINE if len <= body => Ok(LargeMessage::Inline(InlineMessage { msg: m, len })),
            FRAME_BLOCK if len == std::mem::size_of::<Handle>() && len <= body => {
                let handle = Handle::read_from_bytes(&m[LARGE_HEADER..LARGE_HEADER + len])
                    .map_err(|_| corrupt("a handle of the wrong size".into()))?;
                let heap = self.core.large.heap.as_ref().ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "channel '{}': a heap block arrived but no heap is attached \
                         (Consumer::attach_heap)",
                        self.name()
                    ))
                })?;
                let buf = heap.take(handle).map_err(|e| match e {
                    Error::Corrupt(why) => corrupt(format!("bad block handle: {why}")),
                    other => other,
                })?;
                Ok(LargeMessage::Block(buf))
            }
            _ => Err(corrupt(format!(
                "not a large-message frame (tag {tag:#x}, length {len} in a {}-byte message)",
                m.len()
            ))),
        }
    }
}

/// The `Sink` of [`Producer::large_sink`]: messages of any size, with back-pressure from the
/// ring and the heap.
///
/// `poll_ready` finishes the previous item first (a heap block to allocate, a slot to
/// publish), so at most one item waits inside the sink; `poll_flush` and `poll_close` finish it
/// too. Dropping the sink drops an unfinished item (its block, if any, is freed).
#[derive(Debug)]
pub struct LargeSink<'a, F: Flavour, M> {
    tx: &'a mut Producer<F>,
    pending: Option<Pending<M>>,
}

enum Pending<M> {
    /// Waiting for a heap block for this item.
    Alloc(M, AllocFuture),
    /// A frame waiting for a slot (with the flight of its block, if it has one).
    Frame(FrameBytes, Option<Flight>),
}

impl<M> std::fmt::Debug for Pending<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pending::Alloc(_, _) => f.write_str("Alloc"),
            Pending::Frame(_, fl) => write!(f, "Frame(block: {})", fl.is_some()),
        }
    }
}

enum FrameBytes {
    Inline(Vec<u8>),
    Block([u8; LARGE_MIN_SLOT]),
}

impl AsRef<[u8]> for FrameBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            FrameBytes::Inline(v) => v,
            FrameBytes::Block(b) => b,
        }
    }
}

impl<F: Flavour, M: AsRef<[u8]> + Unpin> LargeSink<'_, F, M> {
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        loop {
            match self.pending.take() {
                None => return Poll::Ready(Ok(())),
                Some(Pending::Alloc(item, mut fut)) => {
                    if let Err(e) = self.tx.reclaim_if_gone() {
                        return Poll::Ready(Err(e));
                    }
                    match Pin::new(&mut fut).poll(cx) {
                        Poll::Pending => {
                            self.pending = Some(Pending::Alloc(item, fut));
                            return Poll::Pending;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(mut buf)) => {
                            buf.write_at(0, item.as_ref())?;
                            let heap = self.tx.large_heap()?;
                            let flight = Flight::new(&heap, buf);
                            let frame = FrameBytes::Block(block_frame(&flight.handle()));
                            self.pending = Some(Pending::Frame(frame, Some(flight)));
                        }
                    }
                }
                Some(Pending::Frame(frame, flight)) => {
                    match Sink::<FrameBytes>::poll_ready(Pin::new(&mut *self.tx), cx) {
                        Poll::Pending => {
                            self.pending = Some(Pending::Frame(frame, flight));
                            return Poll::Pending;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) => {}
                    }
                    Sink::<FrameBytes>::start_send(Pin::new(&mut *self.tx), frame)?;
                    if let Some(fl) = flight {
                        let h = fl.sent();
                        self.tx.note_sent(h);
                    }
                }
            }
        }
    }
}

impl<F: Flavour, M: AsRef<[u8]> + Unpin> Sink<M> for LargeSink<'_, F, M> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().drive(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: M) -> Result<()> {
        let this = self.get_mut();
        if this.pending.is_some() {
            return Err(Error::InvalidArgument(
                "LargeSink::start_send without a successful poll_ready".into(),
            ));
        }
        let len = item.as_ref().len();
        this.pending = Some(if len <= this.tx.inline_max() {
            check_slot(this.tx.slot_size(), this.tx.name())?;
            Pending::Frame(FrameBytes::Inline(inline_frame(item.as_ref())), None)
        } else {
            let heap = this.tx.large_heap()?;
            Pending::Alloc(item, heap.alloc_async(len))
        });
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.drive(cx))?;
        Sink::<FrameBytes>::poll_flush(Pin::new(&mut *this.tx), cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.drive(cx))?;
        Sink::<FrameBytes>::poll_flush(Pin::new(&mut *this.tx), cx)
    }
}
