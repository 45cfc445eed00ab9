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

/// Which reactor a task runs on, for [`Watched`].
#[cfg(any(feature = "tokio", feature = "async-io"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reactor {
    /// The tokio runtime the caller runs in.
    #[cfg(feature = "tokio")]
    Tokio,
    /// async-io's global reactor (smol, async-std, or no executor at all).
    #[cfg(feature = "async-io")]
    AsyncIo,
}

#[cfg(any(feature = "tokio", feature = "async-io"))]
impl Reactor {
    /// The reactor of the caller's context: tokio's inside a tokio runtime, else async-io's
    /// if the feature is on and `async_io_allowed`.
    ///
    /// # Errors
    ///
    /// `Unsupported`, naming `what` and the features, when neither can serve the caller.
    pub(crate) fn current(what: &str, async_io_allowed: bool) -> io::Result<Reactor> {
        #[cfg(feature = "tokio")]
        if tokio::runtime::Handle::try_current().is_ok() {
            return Ok(Reactor::Tokio);
        }
        #[cfg(feature = "async-io")]
        if async_io_allowed {
            return Ok(Reactor::AsyncIo);
        }
        let _ = async_io_allowed;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "{what}: no async runtime: call it inside a tokio runtime (feature `tokio`), \
                 or turn on the `async-io` feature for smol, async-std or any executor"
            ),
        ))
    }
}

/// Which readiness [`Watched::poll_io`] waits for.
#[cfg(any(feature = "tokio", feature = "async-io"))]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dir {
    Read,
    Write,
}

/// A nonblocking descriptor (a socket, a timerfd) registered in a reactor for reads and writes:
/// the runtime-neutral I/O of the listener handshake.
#[cfg(any(feature = "tokio", feature = "async-io"))]
#[derive(Debug)]
pub(crate) enum Watched<T: OwnsFd> {
    #[cfg(feature = "tokio")]
    Tokio(tokio::io::unix::AsyncFd<T>),
    #[cfg(feature = "async-io")]
    AsyncIo(async_io::Async<T>),
}

/// Types that own one open descriptor for their whole life and always report that one: what
/// [`Watched`] may register.
#[cfg(any(feature = "tokio", feature = "async-io"))]
pub(crate) trait OwnsFd: std::os::fd::AsFd + std::os::fd::AsRawFd {}
#[cfg(any(feature = "tokio", feature = "async-io"))]
impl OwnsFd for OwnedFd {}
#[cfg(any(feature = "tokio", feature = "async-io"))]
impl OwnsFd for std::os::unix::net::UnixStream {}
#[cfg(any(feature = "tokio", feature = "async-io"))]
impl OwnsFd for std::os::unix::net::UnixListener {}

#[cfg(any(feature = "tokio", feature = "async-io"))]
impl<T: OwnsFd> Watched<T> {
    /// Registers `io` (already nonblocking) in `reactor`.
    pub(crate) fn new(reactor: Reactor, io: T) -> io::Result<Self> {
        match reactor {
            #[cfg(feature = "tokio")]
            // SAFETY: `T: OwnsFd`: `io` owns an open descriptor that stays open, and is the
            // one `as_raw_fd` returns, until the AsyncFd is dropped or gives `io` back.
            Reactor::Tokio => unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    io,
                    tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE,
                )
            }
            .map(Watched::Tokio)
            .map_err(|e| e.into_parts().1),
            #[cfg(feature = "async-io")]
            Reactor::AsyncIo => async_io::Async::new(io).map(Watched::AsyncIo),
        }
    }

    /// The descriptor's owner.
    pub(crate) fn get_ref(&self) -> &T {
        match self {
            #[cfg(feature = "tokio")]
            Watched::Tokio(a) => a.get_ref(),
            #[cfg(feature = "async-io")]
            Watched::AsyncIo(a) => a.get_ref(),
        }
    }

    /// Deregisters and gives the owner back (still nonblocking).
    pub(crate) fn into_inner(self) -> io::Result<T> {
        match self {
            #[cfg(feature = "tokio")]
            Watched::Tokio(a) => Ok(a.into_inner()),
            #[cfg(feature = "async-io")]
            Watched::AsyncIo(a) => a.into_inner(),
        }
    }

    /// Runs `op` until it does not fail with `WouldBlock`, waiting for `dir` readiness in
    /// between.
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Dir,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        match self {
            #[cfg(feature = "tokio")]
            Watched::Tokio(a) => loop {
                let ready = match dir {
                    Dir::Read => a.poll_read_ready(cx),
                    Dir::Write => a.poll_write_ready(cx),
                };
                let mut guard = std::task::ready!(ready)?;
                // `try_io` clears the readiness when `op` would block, and we poll again.
                if let Ok(r) = guard.try_io(|a| op(a.get_ref())) {
                    return Poll::Ready(r);
                }
            },
            #[cfg(feature = "async-io")]
            Watched::AsyncIo(a) => loop {
                match op(a.get_ref()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    r => return Poll::Ready(r),
                }
                let ready = match dir {
                    Dir::Read => a.poll_readable(cx),
                    Dir::Write => a.poll_writable(cx),
                };
                std::task::ready!(ready)?;
            },
        }
    }
}
