//! A byte stream over an [`Endpoint`]: [`ShmStream`], with `AsyncRead` / `AsyncWrite` for
//! tokio (feature `tokio`) and for `futures::io` (feature `async-io`), so that protocol crates
//! (hyper, tonic, tokio-util codecs) run over shared memory as over a `UnixStream`.
//!
//! How bytes travel is in the docs of [`ShmStream`].
//!
//! This module may call `channel` (the SPSC reservations that stay across polls).

use std::fmt;
use std::io;
use std::task::{Context, Poll};
use std::time::Instant;

use super::Endpoint;
use crate::channel::{Consumer, Producer, Spsc};
use crate::error::Error;

/// A byte stream over an [`Endpoint`]: `AsyncRead` + `AsyncWrite` (tokio's with feature
/// `tokio`, `futures::io`'s with feature `async-io`).
///
/// # How bytes travel
///
/// Each direction is the endpoint's SPSC ring; a message is a run of stream bytes.
///
/// - **Writes** fill the slot being built in place: the first write reserves a slot
///   ([`WriteSlot`](crate::channel::WriteSlot)) and copies its bytes there, later writes append
///   to the same slot, and the slot is published when it is full or on `poll_flush`. So a run
///   of small writes (a protocol's header, then its body) costs one copy each into shared
///   memory and one publish, with no buffer in between. A write waits only for a free slot;
///   `poll_flush` never waits (the slot it publishes is already ours). Dropping a write half
///   publishes what it holds.
/// - **Reads** copy straight out of the message at the head of the ring into the caller's
///   buffer; a message larger than the buffer stays in its slot (unreleased) for the next read.
///   A read that finds nothing yields to the executor once before it waits (spin, then park):
///   protocols poll their read side before they write what they owe the peer.
/// - **`poll_shutdown`** (`poll_close` on `futures::io`) publishes what is held and leaves the ring: the peer reads everything
///   sent and then `Ok(0)` (end of stream), as after a TCP `FIN`. Our read direction stays open.
/// - **A dead peer** is an [`io::Error`] of kind `ConnectionReset` on read and `BrokenPipe` on
///   write, naming the endpoint, within a liveness interval at worst (a pidfd wakes a parked
///   task at once). A write to a peer that closed its read side cleanly is `BrokenPipe` too.
///
/// Larger slots carry more bytes per message: for HTTP or gRPC, 16 KiB to 64 KiB slots
/// (`Options::slot_size`) do well.
///
/// # Examples
///
/// ```
/// use shmchan::{Options, endpoint::{Endpoint, ShmStream, Side}};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let name = format!("/shmchan-doc-stream-{}", std::process::id());
/// let a = Endpoint::create(&name, Side::A, Options::new().slot_size(4096))?;
/// let b = Endpoint::open(&name, Side::B, Options::new())?; // usually another process
/// # shmchan::Segment::unlink(&format!("{name}-a2b"))?;
/// # shmchan::Segment::unlink(&format!("{name}-b2a"))?;
/// let (mut a, mut b) = (ShmStream::new(a), b.into_stream());
/// a.write_all(b"GET / HTTP/1.1\r\n\r\n").await?;
/// a.shutdown().await?; // flush, then end of stream for the peer
/// let mut got = String::new();
/// b.read_to_string(&mut got).await?;
/// assert_eq!(got, "GET / HTTP/1.1\r\n\r\n");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ShmStream {
    read: ShmReadHalf,
    write: ShmWriteHalf,
}

/// The reading half of a [`ShmStream`] ([`ShmStream::into_split`]).
pub struct ShmReadHalf {
    rx: Consumer<Spsc>,
    /// The message being read: its position and length (validated), held in its slot.
    current: Option<(u64, usize)>,
    /// Bytes of `current` already read.
    offset: usize,
    /// End of stream seen (the peer shut down or dropped its writing half).
    eof: bool,
    /// The current wait has looked once and yielded (see `poll_read_raw`).
    looked: bool,
    dir: Direction,
}

/// The writing half of a [`ShmStream`] ([`ShmStream::into_split`]).
pub struct ShmWriteHalf {
    /// `None` after `poll_shutdown`.
    tx: Option<Producer<Spsc>>,
    /// The slot being filled: its position, reserved and not yet published.
    filling: Option<u64>,
    /// Bytes written into `filling`.
    filled: usize,
    dir: Direction,
}

/// What each half keeps of its direction: the endpoint's name for errors, the error that ended
/// the direction, and when the current wait began.
struct Direction {
    label: String,
    reading: bool,
    /// The error that ended the direction, reported again on every later call.
    failed: Option<(io::ErrorKind, String)>,
    started: Option<Instant>,
}

impl Direction {
    fn new(label: String, reading: bool) -> Direction {
        Direction {
            label,
            reading,
            failed: None,
            started: None,
        }
    }

    /// The error that ended this direction, if one did.
    fn failed(&self) -> Option<io::Error> {
        self.failed.as_ref().map(to_io)
    }

    /// Ends this direction with `e`: the error to return now, or `None` with `done > 0` bytes
    /// in hand (they are returned first, the error on the next call).
    fn fail(&mut self, e: Error, done: usize) -> Option<io::Error> {
        let f = stream_error(&self.label, self.reading, e);
        let err = to_io(&f);
        self.failed = Some(f);
        (done == 0).then_some(err)
    }
}

impl fmt::Debug for ShmReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmReadHalf")
            .field("endpoint", &self.dir.label)
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ShmWriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmWriteHalf")
            .field("endpoint", &self.dir.label)
            .field("buffered", &self.filled)
            .field("shut_down", &self.tx.is_none())
            .finish_non_exhaustive()
    }
}

/// The user's endpoint name in a ring name: `/svc-a2b` and `/svc#4242-b2a` are `/svc`.
fn endpoint_label(ring: &str) -> String {
    let base = ring
        .strip_suffix("-a2b")
        .or_else(|| ring.strip_suffix("-b2a"))
        .unwrap_or(ring);
    match base.rfind('#') {
        Some(i) if base[i + 1..].bytes().all(|b| b.is_ascii_digit()) => base[..i].to_owned(),
        _ => base.to_owned(),
    }
}

/// The `io::Error` of a channel error on the stream of `label`.
fn stream_error(label: &str, reading: bool, e: Error) -> (io::ErrorKind, String) {
    let what = if reading {
        "reading from"
    } else {
        "writing to"
    };
    match e {
        Error::PeerGone(m) => (
            if reading {
                io::ErrorKind::ConnectionReset
            } else {
                io::ErrorKind::BrokenPipe
            },
            format!("{what} shmchan endpoint '{label}': the peer died ({m})"),
        ),
        Error::Closed => (
            io::ErrorKind::BrokenPipe,
            format!("{what} shmchan endpoint '{label}': the peer closed its reading side"),
        ),
        other => {
            let msg = format!("{what} shmchan endpoint '{label}': {other}");
            (io::Error::from(other).kind(), msg)
        }
    }
}

fn to_io((kind, msg): &(io::ErrorKind, String)) -> io::Error {
    io::Error::new(*kind, msg.clone())
}

impl ShmStream {
    /// A byte stream over `endpoint` (both ends of a connection must use one).
    pub fn new(endpoint: Endpoint) -> ShmStream {
        let (tx, rx) = endpoint.split();
        let label = endpoint_label(tx.name());
        ShmStream {
            read: ShmReadHalf {
                rx,
                current: None,
                offset: 0,
                eof: false,
                looked: false,
                dir: Direction::new(label.clone(), true),
            },
            write: ShmWriteHalf {
                tx: Some(tx),
                filling: None,
                filled: 0,
                dir: Direction::new(label, false),
            },
        }
    }

    /// Splits into halves that can move to separate tasks (`TcpStream::into_split`). The
    /// connection's liveness line stays open while either half lives.
    pub fn into_split(self) -> (ShmReadHalf, ShmWriteHalf) {
        (self.read, self.write)
    }

    /// The endpoint's name, as errors give it.
    pub fn endpoint_name(&self) -> &str {
        &self.read.dir.label
    }

    /// Stream bytes one message carries at most: the slot size of the sending ring.
    pub fn slot_size(&self) -> usize {
        self.write.slot_size()
    }
}

impl From<Endpoint> for ShmStream {
    fn from(endpoint: Endpoint) -> ShmStream {
        ShmStream::new(endpoint)
    }
}

impl Endpoint {
    /// This endpoint as a byte stream ([`ShmStream::new`]).
    pub fn into_stream(self) -> ShmStream {
        ShmStream::new(self)
    }

    /// The user's endpoint name (`/svc`), as errors give it.
    #[cfg_attr(not(feature = "zenoh"), allow(dead_code))]
    pub(crate) fn label(&self) -> String {
        endpoint_label(self.tx.name())
    }
}

impl ShmReadHalf {
    /// Copies up to `cap` stream bytes to `dst`, waiting for the first: the count, 0 at the
    /// end of the stream.
    ///
    /// # Safety
    ///
    /// `dst` is valid for writes of `cap` bytes.
    unsafe fn poll_read_raw(
        &mut self,
        cx: &mut Context<'_>,
        dst: *mut u8,
        cap: usize,
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.dir.failed() {
            return Poll::Ready(Err(e));
        }
        if cap == 0 || self.eof {
            return Poll::Ready(Ok(0));
        }
        let mut done = 0;
        while done < cap {
            let slot = match self.current.take() {
                Some((pos, len)) => self.rx.resume_ref(pos, len),
                None => {
                    let r = if done == 0 && self.looked {
                        self.rx.poll_recv_ref(cx, &mut self.dir.started)
                    } else {
                        match self.rx.try_recv_ref().transpose() {
                            Some(r) => Poll::Ready(r),
                            // Bytes in hand: take more only if they are there now.
                            None if done > 0 => break,
                            // A new wait looks once and yields to the task's other work (a
                            // protocol polls its read side before it writes what it owes the
                            // peer); the wait proper (spin, then park) starts at the next poll.
                            None => {
                                self.looked = true;
                                cx.waker().wake_by_ref();
                                return Poll::Pending;
                            }
                        }
                    };
                    match r {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(slot)) => {
                            self.offset = 0;
                            self.looked = false;
                            slot
                        }
                        Poll::Ready(Err(Error::Closed)) => {
                            self.eof = true;
                            break;
                        }
                        // With bytes in hand, reported after them, on the next read.
                        Poll::Ready(Err(e)) => match self.dir.fail(e, done) {
                            Some(err) => return Poll::Ready(Err(err)),
                            None => break,
                        },
                    }
                }
            };
            let len = slot.len();
            let n = (len - self.offset).min(cap - done);
            // SAFETY: `offset + n <= len`, the validated length of the message in the slot we
            // hold (unreleased until the guard drops), so the source is `n` readable bytes of
            // our mapping; `dst + done` is valid for `cap - done >= n` writes (the caller's
            // contract) and is process-local memory, not the mapping, so the ranges do not
            // overlap. A raw copy, never a reference over bytes the peer may write.
            unsafe {
                std::ptr::copy_nonoverlapping(slot.as_ptr().add(self.offset), dst.add(done), n);
            }
            done += n;
            self.offset += n;
            if self.offset < len {
                self.current = Some(slot.suspend());
            } // else the guard drops here and frees the slot
        }
        Poll::Ready(Ok(done))
    }

    /// The endpoint's name, as errors give it.
    pub fn endpoint_name(&self) -> &str {
        &self.dir.label
    }
}

impl ShmWriteHalf {
    fn slot_size(&self) -> usize {
        self.tx.as_ref().map_or(0, |tx| tx.slot_size())
    }

    fn shut_error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            format!(
                "writing to shmchan endpoint '{}' after shutdown",
                self.dir.label
            ),
        )
    }

    /// Appends from `bufs` to the slot being filled, publishing full slots and reserving new
    /// ones; waits only for the first byte's slot.
    fn poll_write_bufs(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.dir.failed() {
            return Poll::Ready(Err(e));
        }
        let Some(tx) = self.tx.as_mut() else {
            return Poll::Ready(Err(self.shut_error()));
        };
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        let cap = tx.slot_size();
        let mut done = 0;
        let (mut buf_i, mut buf_off) = (0, 0);
        while done < total {
            let mut slot = match self.filling.take() {
                Some(pos) => tx.resume_slot(pos),
                None => {
                    let r = if done == 0 {
                        tx.poll_reserve(cx, &mut self.dir.started)
                    } else {
                        match tx.try_reserve().transpose() {
                            Some(r) => Poll::Ready(r),
                            None => break,
                        }
                    };
                    match r {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(slot)) => {
                            self.filled = 0;
                            slot
                        }
                        // With bytes in hand, reported on the next write.
                        Poll::Ready(Err(e)) => match self.dir.fail(e, done) {
                            Some(err) => return Poll::Ready(Err(err)),
                            None => break,
                        },
                    }
                }
            };
            while self.filled < cap && buf_i < bufs.len() {
                let b = &bufs[buf_i][buf_off..];
                let n = b.len().min(cap - self.filled);
                slot.write(self.filled, &b[..n])
                    .expect("filled + n <= the slot's capacity");
                self.filled += n;
                done += n;
                buf_off += n;
                if buf_off == bufs[buf_i].len() {
                    buf_i += 1;
                    buf_off = 0;
                }
            }
            if self.filled == cap {
                slot.commit(cap).expect("cap is the slot's capacity");
                self.filled = 0;
            } else {
                self.filling = Some(slot.suspend());
            }
        }
        Poll::Ready(Ok(done))
    }

    /// Publishes the slot being filled, if any: the peer can read every byte written.
    fn flush_now(&mut self) {
        if let (Some(pos), Some(tx)) = (self.filling.take(), self.tx.as_mut()) {
            let slot = tx.resume_slot(pos);
            slot.commit(self.filled)
                .expect("filled <= the slot's capacity");
            self.filled = 0;
        }
    }

    fn poll_flush_inner(&mut self) -> Poll<io::Result<()>> {
        self.flush_now();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown_inner(&mut self) -> Poll<io::Result<()>> {
        self.flush_now();
        // Leaving the ring is the clean close: the peer drains, then reads end of stream.
        self.tx = None;
        Poll::Ready(Ok(()))
    }

    /// The endpoint's name, as errors give it.
    pub fn endpoint_name(&self) -> &str {
        &self.dir.label
    }
}

impl Drop for ShmWriteHalf {
    fn drop(&mut self) {
        // Written bytes are not lost with the half (as with a socket's close).
        self.flush_now();
    }
}

#[cfg(any(feature = "tokio", feature = "async-io"))]
impl ShmStream {
    fn writer(&mut self) -> &mut ShmWriteHalf {
        &mut self.write
    }
}

#[cfg(any(feature = "tokio", feature = "async-io"))]
impl ShmWriteHalf {
    fn writer(&mut self) -> &mut ShmWriteHalf {
        self
    }
}

/// The module of one trait family's `AsyncRead` + `AsyncWrite` (tokio's, `futures::io`'s) for
/// [`ShmReadHalf`], [`ShmWriteHalf`] and [`ShmStream`]: one body for both families, over the
/// inherent methods of the halves. The families differ in the type of a read's buffer and its
/// result (so the read half's body is given), in the name of the close method (`poll_shutdown`,
/// `poll_close`) and in tokio's `is_write_vectored` (given as `extra` items).
#[cfg(any(feature = "tokio", feature = "async-io"))]
macro_rules! io_impls {
    (
        $(#[$attr:meta])*
        mod $module:ident {
            uses: { $($uses:item)* }
            read($this:ident, $cx:ident, $buf:ident: $buf_ty:ty) -> $out:ty $read:block
            close: $close:ident,
            extra: { $($extra:tt)* }
        }
    ) => {
        $(#[$attr])*
        mod $module {
            use std::io;
            use std::pin::Pin;
            use std::task::{Context, Poll};

            $($uses)*

            use super::{ShmReadHalf, ShmStream, ShmWriteHalf};

            impl AsyncRead for ShmReadHalf {
                fn poll_read(
                    self: Pin<&mut Self>,
                    $cx: &mut Context<'_>,
                    $buf: $buf_ty,
                ) -> Poll<io::Result<$out>> {
                    let $this = self.get_mut();
                    $read
                }
            }

            impl AsyncRead for ShmStream {
                fn poll_read(
                    self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                    buf: $buf_ty,
                ) -> Poll<io::Result<$out>> {
                    Pin::new(&mut self.get_mut().read).poll_read(cx, buf)
                }
            }

            io_impls!(@write ShmWriteHalf, $close, { $($extra)* });
            io_impls!(@write ShmStream, $close, { $($extra)* });
        }
    };
    (@write $ty:ident, $close:ident, { $($extra:tt)* }) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.get_mut()
                    .writer()
                    .poll_write_bufs(cx, &[io::IoSlice::new(buf)])
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.get_mut().writer().poll_write_bufs(cx, bufs)
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.get_mut().writer().poll_flush_inner()
            }
            fn $close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.get_mut().writer().poll_shutdown_inner()
            }
            $($extra)*
        }
    };
}

io_impls! {
    #[cfg(feature = "tokio")]
    mod tokio_io {
        uses: { use tokio::io::{AsyncRead, AsyncWrite, ReadBuf}; }
        read(this, cx, buf: &mut ReadBuf<'_>) -> () {
            // SAFETY: only the pointer of the unfilled part is taken; nothing uninitialised is
            // read through it.
            let unfilled = unsafe { buf.unfilled_mut() };
            let (dst, cap) = (unfilled.as_mut_ptr().cast::<u8>(), unfilled.len());
            // SAFETY: `dst` is valid for writes of `cap` bytes (the unfilled part of `buf`).
            let n = std::task::ready!(unsafe { this.poll_read_raw(cx, dst, cap) })?;
            // SAFETY: `poll_read_raw` initialised the first `n` unfilled bytes.
            unsafe { buf.assume_init(n) };
            buf.advance(n);
            Poll::Ready(Ok(()))
        }
        close: poll_shutdown,
        extra: {
            fn is_write_vectored(&self) -> bool {
                true
            }
        }
    }
}

io_impls! {
    #[cfg(feature = "async-io")]
    mod futures_io_impl {
        uses: { use futures_io::{AsyncRead, AsyncWrite}; }
        read(this, cx, buf: &mut [u8]) -> usize {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
            unsafe { this.poll_read_raw(cx, buf.as_mut_ptr(), buf.len()) }
        }
        close: poll_close,
        extra: {}
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint_label;

    #[test]
    fn labels_name_the_users_endpoint() {
        assert_eq!(endpoint_label("/svc-a2b"), "/svc");
        assert_eq!(endpoint_label("/svc#4242-b2a"), "/svc");
        assert_eq!(endpoint_label("/a#b-a2b"), "/a#b");
        assert_eq!(endpoint_label("/plain"), "/plain");
    }
}
