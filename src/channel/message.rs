//! [`Message`]: a received message, copied out of its slot.

use std::fmt;

/// Messages up to this many bytes are kept inside [`Message`], without a heap allocation.
pub const INLINE_MESSAGE: usize = 64;

/// A received message: the bytes, copied out of the slot. Derefs to `[u8]`. Messages of up to
/// [`INLINE_MESSAGE`] bytes are stored inline (no allocation per receive).
#[derive(Clone)]
pub struct Message {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        bytes: [u8; INLINE_MESSAGE],
    },
    Heap(Vec<u8>),
}

impl Message {
    /// A message holding a copy of `bytes`.
    pub fn copy_from(bytes: &[u8]) -> Message {
        let mut m = Message::with_len(bytes.len());
        m.bytes_mut().copy_from_slice(bytes);
        m
    }

    /// A zeroed message of `len` bytes, to copy a slot into.
    pub(super) fn with_len(len: usize) -> Message {
        let repr = if len <= INLINE_MESSAGE {
            Repr::Inline {
                len: len as u8,
                bytes: [0; INLINE_MESSAGE],
            }
        } else {
            Repr::Heap(vec![0; len])
        };
        Message { repr }
    }

    /// An inline message of `len <= INLINE_MESSAGE` bytes, the first `len` of `bytes`.
    #[inline]
    pub(super) fn inline(bytes: [u8; INLINE_MESSAGE], len: usize) -> Message {
        debug_assert!(len <= INLINE_MESSAGE);
        Message {
            repr: Repr::Inline {
                len: len as u8,
                bytes,
            },
        }
    }

    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.repr {
            Repr::Inline { len, bytes } => &mut bytes[..*len as usize],
            Repr::Heap(v) => v,
        }
    }

    /// A message that owns `bytes` (a copy made by the caller).
    pub(super) fn from_vec(bytes: Vec<u8>) -> Message {
        Message {
            repr: Repr::Heap(bytes),
        }
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
        match self.repr {
            Repr::Inline { len, bytes } => bytes::Bytes::copy_from_slice(&bytes[..len as usize]),
            Repr::Heap(v) => bytes::Bytes::from(v),
        }
    }

    /// The bytes, as an owned vector.
    pub fn into_vec(self) -> Vec<u8> {
        match self.repr {
            Repr::Inline { len, bytes } => bytes[..len as usize].to_vec(),
            Repr::Heap(v) => v,
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
    fn deref(&self) -> &[u8] {
        match &self.repr {
            Repr::Inline { len, bytes } => &bytes[..*len as usize],
            Repr::Heap(v) => v,
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
    fn an_inline_message_is_copied_into_bytes() {
        let msg = Message::copy_from(b"small");
        assert_eq!(msg.into_bytes(), bytes::Bytes::from_static(b"small"));
        assert!(Message::default().into_bytes().is_empty());
    }
}
