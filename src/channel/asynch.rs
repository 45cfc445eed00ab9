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

use super::consumer::{Consumer, value_from};
use super::message::Message;
use super::producer::{Producer, claim_with, deliver_pending};
use super::{Flavour, SendError};
use crate::error::{Error, Result};
use crate::wait::reactor::{self, poll_op};

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
    type Output = std::result::Result<(), SendError<M>>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let msg = this.msg.as_ref().expect("Send polled after completion");
        match this.tx.poll_send_bytes(cx, msg.as_ref(), &mut this.started) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => {
                this.msg = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                let msg = this.msg.take().expect("present until completion");
                Poll::Ready(Err(SendError::new(msg, e)))
            }
        }
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
    /// The message comes back in a [`SendError`] with [`Error::Closed`],
    /// [`Error::PeerGone`], [`Error::InvalidArgument`] (longer than a slot),
    /// [`Error::Corrupt`], or [`Error::Io`] if no async runtime can be used.
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
    /// As [`send`](Self::send), with the value given back.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`send`](Self::send).
    pub async fn send_value<T: IntoBytes + Immutable>(
        &mut self,
        value: T,
    ) -> std::result::Result<(), SendError<T>> {
        let mut started = None;
        let r = std::future::poll_fn(|cx| self.poll_send_bytes(cx, value.as_bytes(), &mut started))
            .await;
        reactor::retract(&mut self.core);
        r.map_err(|e| SendError::new(value, e))
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
        match poll_op(&mut self.core, cx, started, |core| claim_with(core, tx)) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(pos)) => {
                self.write_commit(pos, bytes);
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Gives back a slot reserved by `Sink::poll_ready` and not used.
    pub(crate) fn release_sink_reservation(&mut self) {
        self.tx.granted = false;
        if let Some(pos) = self.tx.reserved.take() {
            self.discard(pos);
        }
    }

    /// Waits until the Sink's pending item (if any) is in the ring.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.tx.pending.is_none() {
            return Poll::Ready(Ok(()));
        }
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
/// `start_send` fills and publishes it, so `poll_flush` has nothing left to do (a sent message
/// is visible to the consumers). A reservation not used is released by `poll_close` or when
/// the producer is dropped.
///
/// The reservation is the next slot in line: a direct send (`try_send`, `send`, ...) made
/// between `poll_ready` and `start_send` uses it, and `start_send` then takes the next free
/// slot, or keeps its item until `poll_flush` (or the next `poll_ready`) can put it in. Either
/// way the messages arrive in the order they were sent and none is lost or invented.
///
/// `SinkExt::send` flushes after every item; `feed` + one `flush` is the same here, since every
/// item is published by `start_send`.
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
        let r = poll_op(&mut this.core, cx, &mut started, |core| {
            claim_with(core, tx)
        });
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
            this.write_commit(pos, bytes);
            return Ok(());
        }
        // Another send path used our reservation: take the next slot if one is free now,
        // else keep the item for poll_flush.
        match claim_with(&mut this.core, &mut this.tx)? {
            Some(pos) => this.write_commit(pos, bytes),
            None => this.tx.pending = Some(bytes.to_vec()),
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_pending(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
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
        match poll_op(&mut self.core, cx, started, |core| {
            Consumer::<F>::take(core, rx)
        }) {
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
