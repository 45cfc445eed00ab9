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

    /// The bytes, as an owned vector.
    pub fn into_vec(self) -> Vec<u8> {
        match self.repr {
            Repr::Inline { len, bytes } => bytes[..len as usize].to_vec(),
            Repr::Heap(v) => v,
        }
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
