//! Async sending and receiving: futures, `Stream`, `Sink`.
//!
//! How a pending operation waits (spin, yield to the executor, park on a doorbell in the
//! reactor) is `wait/reactor.rs`; this file only adapts it to the handles.
//!
//! # Cancel safety
//!
//! Every future here claims a slot and finishes with it in the same `poll`: a `Pending` holds
//! nothing. Dropping a [`RecvFuture`] loses no message, dropping a [`SendFuture`] sends nothing and leaves
//! the ring as it was. Both are safe in `select!`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_core::{FusedStream, Stream};
use futures_sink::Sink;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::Flavour;
use super::consumer::{Consumer, value_from};
use super::core::Core;
use super::message::Message;
use super::producer::{Producer, claim_with, deliver_pending, flush_staged, write_stage_at};
use crate::error::{Error, Result};
use crate::wait::reactor::{self, Interest, poll_op, poll_op_for};

/// The future of [`Producer::closed`] and [`Consumer::closed`]: resolves to
/// [`Error::Closed`] when the other side left cleanly, [`Error::PeerGone`] when it died, or
/// [`Error::Io`] if no async runtime can be used.
#[must_use = "futures do nothing unless polled"]
pub struct ClosedFuture<'a> {
    core: &'a mut Core,
    started: Option<Instant>,
}

impl std::fmt::Debug for ClosedFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClosedFuture").finish_non_exhaustive()
    }
}

impl Future for ClosedFuture<'_> {
    type Output = Error;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Error> {
        let this = self.get_mut();
        let r = poll_op_for(
            &mut *this.core,
            cx,
            &mut this.started,
            Interest::Events,
            |core| {
                if core.clock_due() {
                    core.check_peers(false)?;
                }
                Ok(core.closed_error())
            },
        );
        match r {
            Poll::Ready(Ok(e)) | Poll::Ready(Err(e)) => Poll::Ready(e),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for ClosedFuture<'_> {
    fn drop(&mut self) {
        reactor::retract(&mut *self.core);
    }
}

/// The future of [`Consumer::recv`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a, F: Flavour> {
    rx: &'a mut Consumer<F>,
    started: Option<Instant>,
}

impl<F: Flavour> std::fmt::Debug for RecvFuture<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvFuture").finish_non_exhaustive()
    }
}

impl<F: Flavour> Future for RecvFuture<'_, F> {
    type Output = Result<Message>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Message>> {
        let this = self.get_mut();
        this.rx.poll_recv_inner(cx, &mut this.started)
    }
}

impl<F: Flavour> Drop for RecvFuture<'_, F> {
    fn drop(&mut self) {
        reactor::retract(&mut self.rx.core);
    }
}

/// The future of [`Producer::send`].
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, F: Flavour, M> {
    tx: &'a mut Producer<F>,
    msg: Option<M>,
    started: Option<Instant>,
}

impl<F: Flavour, M> std::fmt::Debug for SendFuture<'_, F, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendFuture").finish_non_exhaustive()
    }
}

impl<F: Flavour, M: AsRef<[u8]> + Unpin> Future for SendFuture<'_, F, M> {
    type Output = Result<()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let msg = this.msg.as_ref().expect("Send polled after completion");
        let r = this.tx.poll_send_bytes(cx, msg.as_ref(), &mut this.started);
        if r.is_ready() {
            this.msg = None;
        }
        r
    }
}

impl<F: Flavour, M> Drop for SendFuture<'_, F, M> {
    fn drop(&mut self) {
        reactor::retract(&mut self.tx.core);
    }
}

impl<F: Flavour> Producer<F> {
    /// Sends `msg`, waiting asynchronously while the ring is full.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::PeerGone`], [`Error::InvalidArgument`] (longer than a
    /// slot), [`Error::Corrupt`], or [`Error::Io`] if no async runtime can be used. Each is
    /// final for this channel, so the message is not given back (it is dropped; a borrowed
    /// one is still the caller's), and the error is `'static`: `?` turns it into a
    /// `Box<dyn Error>` or an `io::Error`. [`try_send`](Self::try_send) gives the message
    /// back when the ring is full.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes, nothing was sent and the
    /// ring is as it was.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Options, spsc};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmchan::Result<()> {
    /// # let name = format!("/shmchan-doc-async-{}", std::process::id());
    /// let mut tx = spsc::Producer::create(&name, Options::new())?;
    /// let mut rx = spsc::Consumer::open(&name, Options::new())?;
    /// tx.send(b"hello").await?;
    /// assert_eq!(&*rx.recv().await?, b"hello");
    /// # Ok(())
    /// # }
    /// ```
    pub fn send<M: AsRef<[u8]> + Unpin>(&mut self, msg: M) -> SendFuture<'_, F, M> {
        SendFuture {
            tx: self,
            msg: Some(msg),
            started: None,
        }
    }

    /// Sends a plain-old-data value, waiting asynchronously while the ring is full.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`send`](Self::send).
    pub async fn send_value<T: IntoBytes + Immutable>(&mut self, value: T) -> Result<()> {
        let mut started = None;
        let r = std::future::poll_fn(|cx| self.poll_send_bytes(cx, value.as_bytes(), &mut started))
            .await;
        reactor::retract(&mut self.core);
        r
    }

    fn poll_send_bytes(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        started: &mut Option<Instant>,
    ) -> Poll<Result<()>> {
        if let Err(e) = self.check_len(bytes.len()) {
            return Poll::Ready(Err(e));
        }
        let tx = &mut self.tx;
        match poll_op(
            &mut self.core,
            cx,
            started,
            #[inline(always)]
            |core| claim_with(core, tx),
        ) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(pos)) => {
                self.write_commit(pos, bytes);
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Waits until every consumer is gone: [`Error::Closed`] once they all left cleanly,
    /// [`Error::PeerGone`] once the last one died (seen through its pidfd at once, or a
    /// liveness check). Like tokio's `Sender::closed`, for a task that produces work only
    /// while someone listens.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it takes nothing from the channel.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Error, Options, spsc};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmchan::Result<()> {
    /// # let name = format!("/shmchan-doc-closed-{}", std::process::id());
    /// let mut tx = spsc::Producer::create(&name, Options::new())?;
    /// let rx = spsc::Consumer::open(&name, Options::new())?;
    /// assert!(!tx.is_closed());
    /// drop(rx);
    /// assert!(matches!(tx.closed().await, Error::Closed));
    /// assert!(tx.is_closed());
    /// # Ok(())
    /// # }
    /// ```
    pub fn closed(&mut self) -> ClosedFuture<'_> {
        ClosedFuture {
            core: &mut self.core,
            started: None,
        }
    }

    /// Makes every message the `Sink` accepted visible to the consumers: what `feed` staged,
    /// and an item kept because the ring was full (waiting for room for it). The same as
    /// `SinkExt::flush`, callable without naming the item type.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: what was staged is published by the first poll; an item kept for a full
    /// ring stays kept (the next flush or the producer's drop delivers it if there is room).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::SinkExt;
    /// use shmchan::{Options, spsc};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmchan::Result<()> {
    /// # let name = format!("/shmchan-doc-flush-{}", std::process::id());
    /// let mut tx = spsc::Producer::create(&name, Options::new())?;
    /// let mut rx = spsc::Consumer::open(&name, Options::new())?;
    /// for i in 0..10u8 {
    ///     tx.feed([i]).await?; // written into its slot, not yet visible
    /// }
    /// tx.flush().await?; // all ten visible, with one store and one wake check
    /// let mut got = Vec::new();
    /// assert_eq!(rx.recv_many(&mut got, 10).await?, 10);
    /// assert_eq!(&*got[9], &[9]);
    /// tx.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn flush(&mut self) -> Result<()> {
        std::future::poll_fn(|cx| {
            flush_staged(&self.core, &mut self.tx.algo);
            self.poll_pending(cx)
        })
        .await
    }

    /// Flushes (as [`flush`](Self::flush)) and gives back the `Sink`'s reservation: what
    /// `SinkExt::close` does, callable without naming the item type. The producer stays
    /// attached; drop it to leave the channel.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn close(&mut self) -> Result<()> {
        self.flush().await?;
        self.release_sink_reservation();
        reactor::retract(&mut self.core);
        Ok(())
    }

    /// Gives back a slot reserved by `Sink::poll_ready` and not used.
    pub(crate) fn release_sink_reservation(&mut self) {
        self.tx.granted = false;
        if let Some(pos) = self.tx.reserved.take() {
            self.discard(pos);
        }
    }

    /// Waits until the Sink's pending item (if any) is in the ring.
    #[inline(always)]
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.tx.pending.is_none() {
            return Poll::Ready(Ok(()));
        }
        self.poll_pending_slow(cx)
    }

    #[cold]
    #[inline(never)]
    fn poll_pending_slow(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut started = self.sink_started.take();
        let tx = &mut self.tx;
        let r = poll_op(&mut self.core, cx, &mut started, |core| {
            Ok(deliver_pending(core, tx)?.then_some(()))
        });
        self.sink_started = started;
        r
    }
}

/// `Sink` built reserve-then-send (tokio-util's `PollSender`): `poll_ready` reserves a slot,
/// `start_send` fills it, `poll_flush` makes everything sent visible to the consumers.
///
/// **Batching.** On an SPSC ring (and so on an [`Endpoint`](crate::endpoint::Endpoint)),
/// `start_send` *stages* the message: it is written into its slot but the shared `tail` is
/// not stored, so `feed` after `feed` costs no cross-core cache-line transfer and no wake
/// check. Staged messages become visible, in order, with one store and at most one wake-up
/// on `poll_flush` (`SinkExt::flush`, `send`, `send_all`, `close`), on any direct send
/// (`send`, `try_send`, ...), when 32 (or a quarter of the ring) are staged, when the ring is
/// full (before waiting for space), and when the producer is dropped. Like a buffered socket:
/// feed many, flush once. A producer killed with staged messages never published them (the
/// consumer sees none of them, never a torn one). MPSC and MPMC rings publish each message in
/// `start_send`: an unpublished claim there would hold back other producers' messages.
/// On MPMC, `start_send` defers the *wake-up* instead: consumers that are not parked see the
/// message at once, parked ones are rung by the flush (or at 32 fed), one waiter for the
/// batch, and a waiter rung for it that leaves work behind rings the next. So a fed batch
/// wakes the workers that find work in it, not one parked worker per message (the
/// `worker_pool` bench, 8 workers: the coordinator rang 0.031 doorbells per job fed and
/// flushed every 64, against 0.055 with a `send` per job). A producer killed before its
/// flush leaves published messages: a parked consumer sees them when it notices the death
/// (it watches every producer's pidfd, also of producers that attached after it parked).
///
/// The reservation is the next slot in line: a direct send (`try_send`, `send`, ...) made
/// between `poll_ready` and `start_send` uses it, and `start_send` then takes the next free
/// slot, or keeps its item until `poll_flush` (or the next `poll_ready`) can put it in. Either
/// way the messages arrive in the order they were sent and none is lost or invented.
impl<F: Flavour, M: AsRef<[u8]>> Sink<M> for Producer<F> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if this.tx.reserved.is_some() {
            this.tx.granted = true;
            return Poll::Ready(Ok(()));
        }
        let mut started = this.sink_started.take();
        let tx = &mut this.tx;
        // Inlined into the wait loop: out of line, the attempt's call and its result passed
        // through memory cost 48 of a `feed`'s 417 instructions (SPSC, 64 B, callgrind).
        let r = poll_op(
            &mut this.core,
            cx,
            &mut started,
            #[inline(always)]
            |core| {
                let r = claim_with(core, tx)?;
                if r.is_none() {
                    // Full: what is staged must be visible before we wait for the consumer.
                    flush_staged(core, &mut tx.algo);
                }
                Ok(r)
            },
        );
        this.sink_started = started;
        match r {
            Poll::Ready(Ok(pos)) => {
                this.tx.reserved = Some(pos);
                this.tx.granted = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn start_send(self: Pin<&mut Self>, item: M) -> Result<()> {
        let this = self.get_mut();
        if !this.tx.granted {
            return Err(Error::InvalidArgument(format!(
                "Sink::start_send on '{}' without a successful poll_ready",
                this.core.name
            )));
        }
        let bytes = item.as_ref();
        // A message too long keeps the grant (and the slot) for the next item.
        this.check_len(bytes.len())?;
        this.tx.granted = false;
        if let Some(pos) = this.tx.reserved.take() {
            write_stage_at(&this.core, &mut this.tx.algo, pos, bytes);
            return Ok(());
        }
        // Another send path used our reservation: take the next slot if one is free now,
        // else keep the item for poll_flush.
        match claim_with(&mut this.core, &mut this.tx)? {
            Some(pos) => write_stage_at(&this.core, &mut this.tx.algo, pos, bytes),
            None => {
                flush_staged(&this.core, &mut this.tx.algo);
                this.tx.pending = Some(bytes.to_vec());
            }
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        flush_staged(&this.core, &mut this.tx.algo);
        this.poll_pending(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        flush_staged(&this.core, &mut this.tx.algo);
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        this.release_sink_reservation();
        reactor::retract(&mut this.core);
        Poll::Ready(Ok(()))
    }
}

impl<F: Flavour> Consumer<F> {
    /// Takes a message, waiting asynchronously while the ring is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the producers left and everything was received,
    /// [`Error::PeerGone`] when they died, [`Error::Corrupt`], or [`Error::Io`] if no async
    /// runtime can be used.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken from the ring only in the `poll` that returns it, so
    /// using `recv()` in `select!` loses nothing.
    pub fn recv(&mut self) -> RecvFuture<'_, F> {
        RecvFuture {
            rx: self,
            started: None,
        }
    }

    /// Waits until every producer is gone: [`Error::Closed`] once they all left cleanly,
    /// [`Error::PeerGone`] once the last one died. Messages may still be queued: `recv` drains
    /// them before it reports the end.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it takes nothing from the channel.
    pub fn closed(&mut self) -> ClosedFuture<'_> {
        ClosedFuture {
            core: &mut self.core,
            started: None,
        }
    }

    /// Receives up to `limit` messages into `buf` (appended), waiting for at least one, as
    /// tokio's `Receiver::recv_many`: returns how many. `Ok(0)` only when `limit` is 0 or the
    /// channel is closed and everything was received.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), except that a clean close is `Ok(0)`; messages received
    /// before an error are in `buf`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: messages are taken only in the poll that returns them, and appended to
    /// `buf` at once.
    pub async fn recv_many(&mut self, buf: &mut Vec<Message>, limit: usize) -> Result<usize> {
        if limit == 0 {
            return Ok(0);
        }
        match self.recv().await {
            Ok(m) => buf.push(m),
            Err(Error::Closed) => return Ok(0),
            Err(e) => return Err(e),
        }
        // The rest of what is ready, freed with one store of `head` and one wake check.
        Ok(1 + self.take_ready(buf, limit - 1)?)
    }

    /// Takes a plain-old-data value, waiting asynchronously.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv); a message of another size is [`Error::Mismatch`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`recv`](Self::recv).
    pub async fn recv_value<T: FromBytes>(&mut self) -> Result<T> {
        let msg = self.recv().await?;
        value_from(&msg, &self.core.name)
    }

    fn poll_recv_inner(
        &mut self,
        cx: &mut Context<'_>,
        started: &mut Option<Instant>,
    ) -> Poll<Result<Message>> {
        let rx = &mut self.rx;
        match poll_op(
            &mut self.core,
            cx,
            started,
            #[inline(always)]
            |core| Consumer::<F>::take(core, rx),
        ) {
            Poll::Ready(Ok((pos, len))) => Poll::Ready(Ok(self.read_message(pos, len))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The stream of messages: `Some(Ok(msg))` per message, `None` after a clean close (once
/// everything was received), `Some(Err(Error::PeerGone))` and then `None` if the producers
/// died. Any other error is yielded once and ends the stream too.
impl<F: Flavour> Stream for Consumer<F> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        if this.terminated {
            return Poll::Ready(None);
        }
        let mut started = this.stream_started.take();
        let r = this.poll_recv_inner(cx, &mut started);
        this.stream_started = started;
        match r {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(m)) => Poll::Ready(Some(Ok(m))),
            Poll::Ready(Err(Error::Closed)) => {
                this.terminated = true;
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                this.terminated = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl<F: Flavour> FusedStream for Consumer<F> {
    fn is_terminated(&self) -> bool {
        self.terminated
    }
}
