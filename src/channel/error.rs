//! The error of a blocking (or async) send: the message comes back with the reason.

use std::fmt;

use crate::error::Error;

/// A send that failed for good: the message is given back with the [`Error`] that stopped it
/// ([`Error::Closed`], [`Error::PeerGone`], [`Error::InvalidArgument`], ...).
pub struct SendError<T> {
    value: T,
    error: Error,
}

impl<T> SendError<T> {
    pub(crate) fn new(value: T, error: Error) -> Self {
        SendError { value, error }
    }
    /// Gives the message back.
    pub fn into_inner(self) -> T {
        self.value
    }
    /// Why the send failed.
    pub fn error(&self) -> &Error {
        &self.error
    }
    /// Splits into the message and the reason.
    pub fn into_parts(self) -> (T, Error) {
        (self.value, self.error)
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sending failed: {}", self.error)
    }
}

impl<T> std::error::Error for SendError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<T> From<SendError<T>> for Error {
    fn from(e: SendError<T>) -> Self {
        e.error
    }
}
