//! Large messages on an [`Endpoint`]: the channel methods of `channel/large.rs` on both
//! halves, and the heap a [`Listener`](super::Listener) gives each connection (a sealed
//! memfd passed in the handshake beside the rings, so nothing is left in `/dev/shm`).

use super::Endpoint;
use crate::channel::LargeMessage;
use crate::error::Result;
use crate::heap::{Heap, ShmBuf};

impl Endpoint {
    /// Attaches `heap` to both directions for large messages (the peer attaches the same
    /// heap). A connection made with a [`Listener::heap_size`](super::Listener::heap_size)
    /// has its own heap attached already.
    ///
    /// # Errors
    ///
    /// As [`Producer::attach_heap`](crate::channel::Producer::attach_heap).
    pub fn attach_heap(&mut self, heap: &Heap) -> Result<()> {
        self.tx.attach_heap(heap)?;
        self.rx.attach_heap(heap)
    }

    /// The heap attached for large messages, if any.
    pub fn heap(&self) -> Option<&Heap> {
        self.tx.heap()
    }

    /// Allocates a block for a large message, waiting while the heap is full. See
    /// [`Producer::alloc_large`](crate::channel::Producer::alloc_large).
    ///
    /// # Errors
    ///
    /// As [`Producer::alloc_large`](crate::channel::Producer::alloc_large).
    pub async fn alloc_large(&mut self, len: usize) -> Result<ShmBuf> {
        self.tx.alloc_large(len).await
    }

    /// Sends `data` of any size to the peer: inline if it fits a slot, else through the
    /// heap. See [`Producer::send_large`](crate::channel::Producer::send_large). Cancel safe.
    ///
    /// # Errors
    ///
    /// As [`Producer::send_large`](crate::channel::Producer::send_large).
    pub async fn send_large(&mut self, data: &[u8]) -> Result<()> {
        self.tx.send_large(data).await
    }

    /// Sends a filled heap block to the peer. See
    /// [`Producer::send_buf`](crate::channel::Producer::send_buf). Cancel safe.
    ///
    /// # Errors
    ///
    /// As [`Producer::send_buf`](crate::channel::Producer::send_buf).
    pub async fn send_buf(&mut self, buf: ShmBuf) -> Result<()> {
        self.tx.send_buf(buf).await
    }

    /// Receives a message of any size from the peer. See
    /// [`Consumer::recv_large`](crate::channel::Consumer::recv_large). Cancel safe.
    ///
    /// # Errors
    ///
    /// As [`Consumer::recv_large`](crate::channel::Consumer::recv_large).
    pub async fn recv_large(&mut self) -> Result<LargeMessage> {
        self.rx.recv_large().await
    }

    /// [`send_large`](Self::send_large), parking the thread.
    ///
    /// # Errors
    ///
    /// As [`Producer::send_large`](crate::channel::Producer::send_large).
    pub fn send_large_blocking(&mut self, data: &[u8]) -> Result<()> {
        self.tx.send_large_blocking(data)
    }

    /// [`recv_large`](Self::recv_large), parking the thread.
    ///
    /// # Errors
    ///
    /// As [`Consumer::recv_large`](crate::channel::Consumer::recv_large).
    pub fn recv_large_blocking(&mut self) -> Result<LargeMessage> {
        self.rx.recv_large_blocking()
    }
}

/// The heap a listener makes for one connection (`size` bytes, in a sealed memfd).
#[cfg(any(feature = "tokio", feature = "async-io"))]
pub(super) fn connection_heap(size: usize) -> Result<Option<Heap>> {
    if size == 0 {
        return Ok(None);
    }
    // Two processes per connection (plus a few handles each).
    Heap::options()
        .max_participants(8)
        .create_memfd(size)
        .map(Some)
}

/// Attaches the connection heap a listener passed (the handshake's third descriptor).
#[cfg(any(feature = "tokio", feature = "async-io"))]
pub(super) fn attach_connection_heap(
    ep: &mut Endpoint,
    fd: std::os::fd::OwnedFd,
    timeout: std::time::Duration,
) -> Result<()> {
    let heap = Heap::options().init_timeout(timeout).attach_fd(fd)?;
    ep.attach_heap(&heap)
}
