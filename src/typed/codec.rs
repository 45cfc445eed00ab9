//! The wire format of the typed handles: postcard, encoded straight into a reserved slot and
//! decoded from a private copy (see the [parent module's docs](super#encoding)).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::channel::{Flavour, WriteSlot};
use crate::error::{Error, Result};

/// A postcard output that writes through a slot's raw pointer, bounds-checked, and keeps
/// counting past the end so that a value too large is reported with its full size.
struct SlotWriter {
    ptr: *mut u8,
    cap: usize,
    len: usize,
}

impl postcard::ser_flavors::Flavor for SlotWriter {
    type Output = usize;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.try_extend(&[byte])
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self.len.saturating_add(data.len());
        if end <= self.cap {
            // SAFETY: `ptr` points to a claimed slot of `cap` bytes (WriteSlot::as_mut_ptr,
            // the slot is ours until commit or discard) and `len + data.len() <= cap`; the
            // source is private memory, so the ranges do not overlap. Written through the raw
            // pointer: no reference over the shared bytes is made.
            unsafe {
                std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(self.len), data.len())
            }
        }
        self.len = end;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.len)
    }
}

/// Encodes `value` into `slot` and commits it; too large (or unencodable) discards the slot.
pub(super) fn encode_into<F: Flavour, T: Serialize + ?Sized>(
    mut slot: WriteSlot<'_, F>,
    value: &T,
) -> Result<()> {
    let cap = slot.capacity();
    let out = SlotWriter {
        ptr: slot.as_mut_ptr(),
        cap,
        len: 0,
    };
    let len = match postcard::serialize_with_flavor(value, out) {
        Ok(len) => len,
        Err(e) => {
            return Err(Error::InvalidArgument(format!(
                "{}: a {} cannot be encoded: {e}",
                slot.channel(),
                std::any::type_name::<T>()
            )));
        }
    };
    if len > cap {
        return Err(Error::InvalidArgument(format!(
            "{}: a {} encodes to {len} bytes, more than the slot size of {cap} bytes; nothing \
             was sent (create the channel with a larger Options::slot_size)",
            slot.channel(),
            std::any::type_name::<T>()
        )));
    }
    slot.commit(len)
}

/// Decodes a whole message as a `T`: bytes that do not decode, or bytes left over, are corrupt.
pub(super) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    channel: impl FnOnce() -> String,
) -> Result<T> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(Error::Corrupt(format!(
            "{}: a {}-byte message holds a {} and {} bytes more; the \
             producer sends another type",
            channel(),
            bytes.len(),
            std::any::type_name::<T>(),
            rest.len()
        ))),
        Err(e) => Err(Error::Corrupt(format!(
            "{}: a {}-byte message does not decode as a {}: {e} (the producer sends another \
             type, or garbage)",
            channel(),
            bytes.len(),
            std::any::type_name::<T>()
        ))),
    }
}
