//! [`Message`]: a received message, copied out of its slot.

use std::fmt;
use std::mem::ManuallyDrop;

/// Messages up to this many bytes are kept inside [`Message`], without a heap allocation.
pub const INLINE_MESSAGE: usize = 64;

/// A received message: the bytes, copied out of the slot. Derefs to `[u8]`. Messages of up to
/// [`INLINE_MESSAGE`] bytes are stored inline (no allocation per receive).
pub struct Message {
    body: Body,
    /// The length of an inline message (at most [`INLINE_MESSAGE`]), or [`HEAP`].
    ///
    /// Invariant: `meta <= INLINE_MESSAGE` and `body.inline` is the initialised field, or
    /// `meta == HEAP` and `body.heap` is (an owned vector, dropped with the message).
    meta: u64,
}

/// The bytes first, then the length word (`repr(C)`): a message is built with the same
/// 16-byte stores (and one 8-byte store) that a move of it loads, so a message received and
/// at once pushed into a `Vec` or returned through a future is forwarded from the store
/// buffer. With an enum (tag byte, length byte, then the bytes at offset 2), every move
/// right after the build loaded across two stores: store-forwarding stalls that made a
/// 64-byte `recv_many` 12 -> 20 ns a message in `taskset -c 0 cargo bench --bench
/// per_message`, depending on how the compiler arranged the code around it.
#[repr(C)]
union Body {
    inline: [u8; INLINE_MESSAGE],
    heap: ManuallyDrop<Vec<u8>>,
}

/// `Message::meta` of a message whose bytes are on the heap.
const HEAP: u64 = u64::MAX;

impl Message {
    /// A message holding a copy of `bytes`.
    pub fn copy_from(bytes: &[u8]) -> Message {
        let mut m = Message::with_len(bytes.len());
        m.bytes_mut().copy_from_slice(bytes);
        m
    }

    /// A zeroed message of `len` bytes, to copy a slot into.
    pub(super) fn with_len(len: usize) -> Message {
        if len <= INLINE_MESSAGE {
            Message::inline([0; INLINE_MESSAGE], len)
        } else {
            Message::from_vec(vec![0; len])
        }
    }

    /// An inline message of `len <= INLINE_MESSAGE` bytes, the first `len` of `bytes`.
    #[inline]
    pub(super) fn inline(bytes: [u8; INLINE_MESSAGE], len: usize) -> Message {
        debug_assert!(len <= INLINE_MESSAGE);
        Message {
            body: Body { inline: bytes },
            meta: len.min(INLINE_MESSAGE) as u64,
        }
    }

    /// A message that owns `bytes` (a copy made by the caller).
    pub(super) fn from_vec(bytes: Vec<u8>) -> Message {
        Message {
            body: Body {
                heap: ManuallyDrop::new(bytes),
            },
            meta: HEAP,
        }
    }

    #[inline]
    fn is_heap(&self) -> bool {
        self.meta == HEAP
    }

    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        if self.is_heap() {
            // SAFETY: `meta == HEAP`: `heap` is the initialised field (type invariant).
            unsafe { &mut (*self.body.heap)[..] }
        } else {
            let len = self.meta as usize;
            // SAFETY: `meta != HEAP`: `inline` is the initialised field, and `len <= 64`.
            unsafe { &mut self.body.inline[..len] }
        }
    }

    /// Takes the heap vector out of a heap message (`None` for an inline one), leaving
    /// nothing to drop.
    fn take_heap(self) -> Result<Vec<u8>, Message> {
        if !self.is_heap() {
            return Err(self);
        }
        let mut me = ManuallyDrop::new(self);
        // SAFETY: `meta == HEAP`: `heap` is initialised; `me` is never dropped, so the vector
        // is moved out exactly once.
        Ok(unsafe { ManuallyDrop::take(&mut me.body.heap) })
    }

    /// The bytes as [`bytes::Bytes`], for the tokio ecosystem (hyper bodies, codecs).
    ///
    /// Without a copy for a message longer than [`INLINE_MESSAGE`]: its heap buffer becomes
    /// the `Bytes`' (same pointer, no allocation). A message of up to [`INLINE_MESSAGE`] bytes
    /// lives inside the `Message` value itself, with no heap buffer for a `Bytes` to own, so
    /// its bytes are copied into a new one: at most 64 bytes, cheaper than boxing the whole
    /// `Message` (which would move as many bytes and allocate as well).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Options, spsc};
    ///
    /// # fn main() -> shmchan::Result<()> {
    /// # let name = format!("/shmchan-doc-bytes-{}", std::process::id());
    /// let mut tx = spsc::Producer::create(&name, Options::new())?;
    /// let mut rx = spsc::Consumer::open(&name, Options::new())?;
    /// tx.try_send(vec![7u8; 1000]).unwrap();
    /// let msg = rx.try_recv().unwrap();
    /// let at = msg.as_ptr();
    /// let bytes: bytes::Bytes = msg.into(); // or msg.into_bytes()
    /// assert_eq!(bytes.as_ptr(), at); // the same buffer: no copy
    /// assert_eq!(bytes.len(), 1000);
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_bytes(self) -> bytes::Bytes {
        match self.take_heap() {
            Ok(v) => bytes::Bytes::from(v),
            Err(m) => bytes::Bytes::copy_from_slice(&m),
        }
    }

    /// The bytes, as an owned vector.
    pub fn into_vec(self) -> Vec<u8> {
        match self.take_heap() {
            Ok(v) => v,
            Err(m) => m.to_vec(),
        }
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        if self.is_heap() {
            // SAFETY: `meta == HEAP`: `heap` is initialised and owned by this message, and
            // dropped only here, once.
            unsafe { ManuallyDrop::drop(&mut self.body.heap) }
        }
    }
}

impl Clone for Message {
    fn clone(&self) -> Message {
        if self.is_heap() {
            Message::from_vec(self.to_vec())
        } else {
            // SAFETY: `meta != HEAP`: `inline` is the initialised field.
            Message::inline(unsafe { self.body.inline }, self.meta as usize)
        }
    }
}

impl From<Message> for bytes::Bytes {
    /// As [`Message::into_bytes`]: no copy for a message longer than [`INLINE_MESSAGE`].
    fn from(msg: Message) -> bytes::Bytes {
        msg.into_bytes()
    }
}

impl Default for Message {
    fn default() -> Self {
        Message::with_len(0)
    }
}

impl std::ops::Deref for Message {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        if self.is_heap() {
            // SAFETY: `meta == HEAP`: `heap` is the initialised field (type invariant).
            unsafe { &self.body.heap[..] }
        } else {
            let len = self.meta as usize;
            // SAFETY: `meta != HEAP`: `inline` is the initialised field, and `len <= 64`.
            unsafe { &self.body.inline[..len] }
        }
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        **self == **other
    }
}

impl Eq for Message {}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Message({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heap_message_becomes_bytes_without_a_copy() {
        let msg = Message::from_vec(vec![3u8; 500]);
        let at = msg.as_ptr();
        let b = bytes::Bytes::from(msg);
        assert_eq!(b.as_ptr(), at, "the Vec's buffer is the Bytes' buffer");
        assert_eq!(&b[..], &[3u8; 500][..]);
    }

    #[test]
    fn every_length_keeps_its_bytes_through_clone_move_and_conversion() {
        for len in 0..=200usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let msg = Message::copy_from(&bytes);
            assert_eq!(msg.is_heap(), len > INLINE_MESSAGE, "length {len}");
            assert_eq!(&*msg, &bytes[..]);
            let copy = msg.clone();
            assert_eq!(copy, msg);
            let moved: Vec<Message> = std::iter::once(copy).collect();
            assert_eq!(&*moved[0], &bytes[..]);
            assert_eq!(msg.clone().into_vec(), bytes);
            assert_eq!(&msg.into_bytes()[..], &bytes[..]);
            let mut zeroed = Message::with_len(len);
            assert!(zeroed.iter().all(|&b| b == 0));
            zeroed.bytes_mut().copy_from_slice(&bytes);
            assert_eq!(&*zeroed, &bytes[..]);
        }
        assert!(Message::default().is_empty());
    }

    #[test]
    fn a_message_is_72_bytes_with_its_bytes_first() {
        // The layout the store-forwarding argument on `Body` rests on.
        assert_eq!(std::mem::size_of::<Message>(), INLINE_MESSAGE + 8);
        let m = Message::copy_from(b"abc");
        assert_eq!(std::ptr::from_ref(&m).cast::<u8>(), m.as_ptr());
    }

    #[test]
    fn an_inline_message_is_copied_into_bytes() {
        let msg = Message::copy_from(b"small");
        assert_eq!(msg.into_bytes(), bytes::Bytes::from_static(b"small"));
        assert!(Message::default().into_bytes().is_empty());
    }
}
