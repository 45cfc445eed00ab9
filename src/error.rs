//! Errors.
//!
//! Every fallible operation of the crate returns [`Error`]; its messages name the segment and the
//! numbers involved. Operations that hand a value to the crate and may fail without consuming it
//! (`try_send`, `send_timeout`) return errors that give the value back, in the style of
//! crossbeam-channel and tokio: [`TrySendError`], [`SendTimeoutError`].

use std::fmt;
use std::io;

/// A specialised `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong.
///
/// The variant says what kind of failure it is, so that callers can match on it; the text inside
/// says which segment and which numbers were involved, for humans.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An argument broke a rule: a bad name, a zero size, a message longer than a slot. The text
    /// states the rule.
    InvalidArgument(String),
    /// A segment (or file) of that name already exists (`EEXIST`).
    AlreadyExists(String),
    /// No segment (or file) of that name exists (`ENOENT`).
    NotFound(String),
    /// The caller may not do this (`EACCES`, `EPERM`), or asked to write through a read-only
    /// segment.
    PermissionDenied(String),
    /// The segment exists but was laid out differently from what the caller asked for.
    Mismatch {
        /// The segment's name (or a description of an anonymous segment).
        segment: String,
        /// The quantity that differs, e.g. `"slot size"`.
        what: &'static str,
        /// What the caller expected.
        expected: u64,
        /// What the segment holds.
        found: u64,
    },
    /// Shared memory holds a value that cannot be right: a bad magic number, an index out of
    /// range, a length longer than a slot. A peer is buggy or hostile; nothing was read out of
    /// bounds.
    Corrupt(String),
    /// A bounded wait ran out.
    TimedOut(String),
    /// The other side closed the channel cleanly and everything it sent has been received.
    Closed,
    /// The peer died (its process is gone) without closing cleanly.
    PeerGone(String),
    /// A single-producer or single-consumer side is already held by a live process.
    InUse(String),
    /// A shared heap has no room for the request (even after reclaiming the blocks of dead
    /// processes); the text gives the sizes.
    OutOfMemory(String),
    /// Any other operating-system error, with the operation that failed in its message.
    Io(io::Error),
}

impl Error {
    /// Maps an errno from a system call on `what` to the matching kind.
    pub(crate) fn from_errno(err: rustix::io::Errno, what: impl FnOnce() -> String) -> Error {
        use rustix::io::Errno;
        match err {
            Errno::EXIST => Error::AlreadyExists(format!("{} already exists", what())),
            Errno::NOENT => Error::NotFound(format!("{} does not exist", what())),
            Errno::ACCESS | Errno::PERM => {
                Error::PermissionDenied(format!("{}: permission denied ({err})", what()))
            }
            Errno::NAMETOOLONG => {
                Error::InvalidArgument(format!("{}: name too long for the system", what()))
            }
            _ => {
                let io = io::Error::from(err);
                Error::Io(io::Error::new(io.kind(), format!("{}: {io}", what())))
            }
        }
    }

    /// Short name of the kind, used by `Display`.
    fn kind_str(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "invalid argument",
            Error::AlreadyExists(_) => "already exists",
            Error::NotFound(_) => "not found",
            Error::PermissionDenied(_) => "permission denied",
            Error::Mismatch { .. } => "layout mismatch",
            Error::Corrupt(_) => "corrupt shared memory",
            Error::TimedOut(_) => "timed out",
            Error::Closed => "channel closed",
            Error::PeerGone(_) => "peer gone",
            Error::InUse(_) => "in use",
            Error::OutOfMemory(_) => "out of memory",
            Error::Io(_) => "i/o error",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind_str();
        match self {
            Error::InvalidArgument(m)
            | Error::AlreadyExists(m)
            | Error::NotFound(m)
            | Error::PermissionDenied(m)
            | Error::Corrupt(m)
            | Error::TimedOut(m)
            | Error::PeerGone(m)
            | Error::InUse(m)
            | Error::OutOfMemory(m) => write!(f, "{kind}: {m}"),
            // Kinds by name: "segment '/x' is an spsc channel, expected an mpsc channel".
            Error::Mismatch {
                segment,
                what: "kind",
                expected,
                found,
            } => {
                let name = |k: &u64| match u32::try_from(*k) {
                    Ok(k) => crate::layout::Kind(k).describe(),
                    Err(_) => format!("a segment of kind {k}"),
                };
                write!(
                    f,
                    "{kind}: {segment} is {}, expected {}",
                    name(found),
                    name(expected)
                )
            }
            Error::Mismatch {
                segment,
                what,
                expected,
                found,
            } => write!(
                f,
                "{kind}: {what} of {segment} is {found}, expected {expected}"
            ),
            Error::Closed => f.write_str("channel closed by the peer"),
            Error::Io(e) => write!(f, "{kind}: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        use io::ErrorKind as K;
        let kind = match &e {
            Error::Io(inner) => return io::Error::new(inner.kind(), e),
            Error::InvalidArgument(_) => K::InvalidInput,
            Error::AlreadyExists(_) => K::AlreadyExists,
            Error::NotFound(_) => K::NotFound,
            Error::PermissionDenied(_) => K::PermissionDenied,
            Error::Mismatch { .. } | Error::Corrupt(_) => K::InvalidData,
            Error::TimedOut(_) => K::TimedOut,
            Error::Closed | Error::PeerGone(_) => K::BrokenPipe,
            Error::InUse(_) => K::ResourceBusy,
            Error::OutOfMemory(_) => K::OutOfMemory,
        };
        io::Error::new(kind, e)
    }
}

/// The error of a `try_send`: the message is given back.
pub enum TrySendError<T> {
    /// The ring is full right now.
    Full(T),
    /// Every consumer is gone (closed cleanly or died); nothing will read the message.
    Closed(T),
    /// Anything else (a message longer than a slot, corrupt shared memory, ...).
    Other(T, ErrorBox),
}

/// An [`Error`] boxed so that the errors that carry a value stay small.
pub type ErrorBox = Box<Error>;

impl<T> TrySendError<T> {
    /// Gives the message back.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(t) | TrySendError::Closed(t) | TrySendError::Other(t, _) => t,
        }
    }
    /// `true` if the ring was full.
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }
    /// `true` if the consumers are gone.
    pub fn is_closed(&self) -> bool {
        matches!(self, TrySendError::Closed(_))
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
            TrySendError::Other(_, e) => write!(f, "Other(.., {e:?})"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("sending on a full channel"),
            TrySendError::Closed(_) => f.write_str("sending on a closed channel"),
            TrySendError::Other(_, e) => write!(f, "sending failed: {e}"),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TrySendError::Other(_, e) => Some(&**e),
            _ => None,
        }
    }
}

impl<T> From<TrySendError<T>> for Error {
    fn from(e: TrySendError<T>) -> Self {
        match e {
            TrySendError::Full(_) => Error::Io(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the channel is full",
            )),
            TrySendError::Closed(_) => Error::Closed,
            TrySendError::Other(_, e) => *e,
        }
    }
}

/// The error of a `send_timeout`: the message is given back.
pub enum SendTimeoutError<T> {
    /// The ring stayed full until the deadline.
    Timeout(T),
    /// Every consumer is gone.
    Closed(T),
    /// Anything else.
    Other(T, ErrorBox),
}

impl<T> SendTimeoutError<T> {
    /// Gives the message back.
    pub fn into_inner(self) -> T {
        match self {
            SendTimeoutError::Timeout(t)
            | SendTimeoutError::Closed(t)
            | SendTimeoutError::Other(t, _) => t,
        }
    }
    /// `true` if the deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendTimeoutError::Timeout(_))
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SendTimeoutError::Closed(_) => f.write_str("Closed(..)"),
            SendTimeoutError::Other(_, e) => write!(f, "Other(.., {e:?})"),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("timed out sending on a full channel"),
            SendTimeoutError::Closed(_) => f.write_str("sending on a closed channel"),
            SendTimeoutError::Other(_, e) => write!(f, "sending failed: {e}"),
        }
    }
}

impl<T> std::error::Error for SendTimeoutError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendTimeoutError::Other(_, e) => Some(&**e),
            _ => None,
        }
    }
}

impl<T> From<SendTimeoutError<T>> for Error {
    fn from(e: SendTimeoutError<T>) -> Self {
        match e {
            SendTimeoutError::Timeout(_) => {
                Error::TimedOut("the channel stayed full until the deadline".into())
            }
            SendTimeoutError::Closed(_) => Error::Closed,
            SendTimeoutError::Other(_, e) => *e,
        }
    }
}

/// The error of a `try_recv`.
#[derive(Debug)]
#[non_exhaustive]
pub enum TryRecvError {
    /// Nothing is queued right now.
    Empty,
    /// The producers closed cleanly and everything they sent has been received.
    Closed,
    /// Anything else (peer gone, corrupt shared memory, ...).
    Other(Error),
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("receiving on an empty channel"),
            TryRecvError::Closed => f.write_str("receiving on a closed channel"),
            TryRecvError::Other(e) => write!(f, "receiving failed: {e}"),
        }
    }
}

impl std::error::Error for TryRecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TryRecvError::Other(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for TryRecvError {
    fn from(e: Error) -> Self {
        match e {
            Error::Closed => TryRecvError::Closed,
            e => TryRecvError::Other(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_maps_to_kinds() {
        use rustix::io::Errno;
        let name = || "segment '/x'".to_string();
        assert!(
            matches!(Error::from_errno(Errno::EXIST, name), Error::AlreadyExists(m) if m.contains("/x"))
        );
        assert!(matches!(
            Error::from_errno(Errno::NOENT, name),
            Error::NotFound(_)
        ));
        assert!(matches!(
            Error::from_errno(Errno::ACCESS, name),
            Error::PermissionDenied(_)
        ));
        let e = Error::from_errno(Errno::NOMEM, name);
        assert!(matches!(&e, Error::Io(_)));
        assert!(e.to_string().contains("/x"), "{e}");
    }

    #[test]
    fn mismatch_display_names_numbers() {
        let e = Error::Mismatch {
            segment: "'/orders'".into(),
            what: "slot size",
            expected: 1024,
            found: 512,
        };
        let s = e.to_string();
        assert!(
            s.contains("/orders") && s.contains("1024") && s.contains("512"),
            "{s}"
        );
    }

    #[test]
    fn try_send_error_gives_value_back_and_debug_needs_no_debug() {
        struct NoDebug(u8);
        let e = TrySendError::Full(NoDebug(7));
        assert_eq!(format!("{e:?}"), "Full(..)");
        assert_eq!(e.into_inner().0, 7);
    }
}
