//! Reactor glue: a descriptor registered for readability in the runtime the task runs on.
//!
//! - tokio (feature `tokio`, on by default): `tokio::io::unix::AsyncFd`, chosen when the
//!   calling task runs inside a tokio runtime (current_thread or multi_thread);
//! - async-io (feature `async-io`): `async_io::Async`, the reactor behind smol and
//!   async-std, chosen otherwise.
//!
//! Channels register two kinds of descriptors: their own doorbell (rung by a peer that
//! published while we were parked) and pidfds of the other participants (readable once that
//! process exits, so a death wakes a parked task at once). No timer and no thread per channel
//! is involved.

use std::io;
use std::os::fd::OwnedFd;
use std::task::{Context, Poll};

/// A descriptor registered in a reactor for readability.
#[derive(Debug)]
pub(crate) enum Registered {
    /// In tokio's reactor.
    #[cfg(feature = "tokio")]
    Tokio(tokio::io::unix::AsyncFd<OwnedFd>),
    /// In async-io's reactor.
    #[cfg(feature = "async-io")]
    AsyncIo(async_io::Async<OwnedFd>),
}

impl Registered {
    /// Registers `fd` in the reactor of the current context: tokio's if called inside a tokio
    /// runtime, else async-io's.
    ///
    /// # Errors
    ///
    /// If no runtime feature can serve the caller, or registration fails.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Registered> {
        #[cfg(feature = "tokio")]
        if tokio::runtime::Handle::try_current().is_ok() {
            // SAFETY: `fd` is an open descriptor we own; the AsyncFd takes ownership and
            // keeps it open (same description) until it is dropped.
            let afd = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            };
            return afd.map(Registered::Tokio).map_err(|e| e.into_parts().1);
        }
        #[cfg(feature = "async-io")]
        {
            return async_io::Async::new(fd).map(Registered::AsyncIo);
        }
        #[allow(unreachable_code)]
        {
            drop(fd);
            Err(io::Error::other(
                "shmchan: async use needs a tokio runtime (feature `tokio`) or the `async-io` \
                 feature",
            ))
        }
    }

    /// Whether the descriptor became readable since the last `Ready`; registers the task's
    /// waker when it returns `Pending`. Readiness is consumed: the caller drains the
    /// descriptor (or is done with it) after `Ready`.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        #[cfg(not(any(feature = "tokio", feature = "async-io")))]
        let _ = cx;
        match self {
            #[cfg(feature = "tokio")]
            Registered::Tokio(afd) => match afd.poll_read_ready(cx) {
                Poll::Ready(Ok(mut guard)) => {
                    guard.clear_ready();
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            #[cfg(feature = "async-io")]
            Registered::AsyncIo(a) => a.poll_readable(cx),
            #[allow(unreachable_patterns)]
            _ => Poll::Ready(Err(io::Error::other("no async runtime feature enabled"))),
        }
    }
}
