//! Async sending and receiving: futures, `Stream`, `Sink`.
//!
//! A pending operation first spins inside `poll` for the
//! [`WaitStrategy`](crate::WaitStrategy)'s spin budget (20 µs by default: set it to zero with
//! [`WaitStrategy::park_only`](crate::WaitStrategy::park_only) or `spin_for` on executors
//! that must never be held), then yields to the executor (it wakes itself and returns
//! `Pending`) until the yield budget is spent, which keeps a busy stream on the fast path;
//! then it *parks*: it publishes
//! its doorbell in its participant record, announces itself (see [`crate::wait`]), re-checks
//! the ring, and returns `Pending` with the doorbell and the other participants' pidfds
//! registered in the runtime's reactor. A peer that publishes rings the doorbell (one
//! `sendto`, only because we announced); a peer that dies makes its pidfd readable. No timer
//! and no thread is involved.
//!
//! # Cancel safety
//!
//! Every future here claims a slot and finishes with it in the same `poll`: a `Pending` holds
//! nothing. Dropping a [`RecvFuture`] loses no message, dropping a [`SendFuture`] sends nothing and leaves
//! the ring as it was. Both are safe in `select!`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::{FusedStream, Stream};
use futures_sink::Sink;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::{
    AUX_TOKEN, Consumer, Core, DISCARDED, Flavour, Message, Producer, SendError, Side, TxAlgo,
    claim_with, records, value_from,
};
use crate::error::{Error, Result};
use crate::runtime::Registered;
use crate::sys::doorbell::Doorbell;
use crate::sys::process::ProcessId;
use crate::wait::PARK_DOORBELL;

/// A handle's async wait machinery, made on its first park.
#[derive(Debug)]
pub(crate) struct AsyncWait {
    bell: Doorbell,
    reg: Registered,
    /// Pidfds of the participants whose death concerns us.
    watches: Vec<(ProcessId, Registered)>,
}

impl Core {
    /// The side(s) whose deaths a parked handle of ours must notice.
    fn watched_sides(&self) -> &'static [Side] {
        match (self.kind == crate::layout::Kind::MPMC, self.side) {
            (true, Side::Consumer) => &[Side::Producer, Side::Consumer],
            (_, Side::Consumer) => &[Side::Producer],
            (_, Side::Producer) => &[Side::Consumer],
        }
    }

    fn ensure_async_wait(&mut self) -> Result<()> {
        if self.aw.is_none() {
            let bell = Doorbell::bind()
                .map_err(|e| Error::from_errno(e, || "binding a doorbell socket".into()))?;
            let fd = bell
                .try_clone_fd()
                .map_err(|e| Error::from_errno(e, || "duplicating the doorbell".into()))?;
            let reg = Registered::new(fd)?;
            self.layout
                .aux_word(self.reg().index(), AUX_TOKEN)?
                .store(bell.token(), std::sync::atomic::Ordering::Release);
            self.aw = Some(AsyncWait {
                bell,
                reg,
                watches: Vec::new(),
            });
        }
        // Watch participants that joined since the last park.
        let me = self.reg().index();
        for &side in self.watched_sides() {
            for i in records(self.kind, self.layout.participant_capacity(), side) {
                if i == me {
                    continue;
                }
                let Some(p) = self.layout.participant(i) else {
                    continue;
                };
                let id = p.process_id();
                let aw = self.aw.as_mut().expect("made above");
                if id.pid == 0 || aw.watches.iter().any(|(w, _)| *w == id) {
                    continue;
                }
                match id.pidfd() {
                    Some(fd) => aw.watches.push((id, Registered::new(fd)?)),
                    // Already gone: let the liveness check see it now.
                    None => self.force_checks(),
                }
            }
        }
        Ok(())
    }

    /// Makes the next liveness check and repair look run at once.
    fn force_checks(&mut self) {
        let past = Instant::now()
            .checked_sub(self.liveness_interval + Duration::from_millis(1))
            .unwrap_or_else(Instant::now);
        self.last_check = past;
        self.last_repair = past;
        self.idle_polls = u32::MAX; // the next attempt reads the clock
    }

    fn retract_async(&mut self) {
        if self.async_parked {
            self.async_parked = false;
            self.sleepers(self.side).retract(self.parked_word());
        }
    }

    /// The async wait loop behind every future, stream and sink here: `attempt` is tried;
    /// then the task yields within the budget; then it parks in the reactor.
    pub(crate) fn poll_op<R>(
        &mut self,
        cx: &mut Context<'_>,
        started: &mut Option<Instant>,
        mut attempt: impl FnMut(&mut Core) -> Result<Option<R>>,
    ) -> Poll<Result<R>> {
        loop {
            self.retract_async();
            match attempt(self) {
                Ok(None) => {}
                done => {
                    *started = None;
                    return Poll::Ready(done.map(|r| r.expect("matched Some")));
                }
            }
            let t0 = *started.get_or_insert_with(Instant::now);
            // Spin phase, inline: a peer that answers within the spin budget is met without a
            // trip through the executor (whose scheduler polls its I/O driver every few dozen
            // ticks: a syscall we would otherwise cause while waiting).
            if t0.elapsed() < self.wait.spin_duration() {
                let mut n = 0u32;
                loop {
                    std::hint::spin_loop();
                    match attempt(self) {
                        Ok(None) => {}
                        done => {
                            *started = None;
                            return Poll::Ready(done.map(|r| r.expect("matched Some")));
                        }
                    }
                    n = n.wrapping_add(1);
                    if n % 64 == 0 && t0.elapsed() >= self.wait.spin_duration() {
                        break;
                    }
                }
            }
            // Yield phase: let the executor run other tasks, then look again.
            if t0.elapsed() < self.wait.yield_duration() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if let Err(e) = self.ensure_async_wait() {
                *started = None;
                return Poll::Ready(Err(e));
            }
            self.sleepers(self.side)
                .announce(self.parked_word(), PARK_DOORBELL);
            self.async_parked = true;
            match attempt(self) {
                Ok(None) => {}
                done => {
                    self.retract_async();
                    *started = None;
                    return Poll::Ready(done.map(|r| r.expect("matched Some")));
                }
            }
            let aw = self.aw.as_mut().expect("made by ensure_async_wait");
            match aw.reg.poll_readable(cx) {
                Poll::Ready(Ok(())) => {
                    aw.bell.drain();
                    continue;
                }
                Poll::Ready(Err(e)) => {
                    self.retract_async();
                    *started = None;
                    return Poll::Ready(Err(Error::Io(e)));
                }
                Poll::Pending => {}
            }
            let before = aw.watches.len();
            aw.watches
                .retain(|(_, reg)| reg.poll_readable(cx).is_pending());
            if aw.watches.len() != before {
                // A participant exited: look at the table now.
                self.force_checks();
                continue;
            }
            return Poll::Pending;
        }
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
        self.rx.core.retract_async();
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
        self.tx.core.retract_async();
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
        self.core.retract_async();
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
        let algo = &mut self.algo;
        match self
            .core
            .poll_op(cx, started, |core| claim_with(core, algo))
        {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(pos)) => {
                self.core
                    .ring
                    .write_payload(self.core.ring.index(pos), 0, bytes);
                self.commit(pos, bytes.len() as u32);
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Gives back a slot reserved by `Sink::poll_ready` and not used.
    pub(crate) fn release_sink_reservation(&mut self) {
        if let Some(pos) = self.sink_reserved.take() {
            // SPSC: nothing was published, forgetting is enough. Vyukov: the position is
            // claimed in shared memory; publish it as discarded.
            if matches!(self.algo, TxAlgo::Vyukov) {
                self.commit(pos, DISCARDED);
            }
        }
    }
}

/// `Sink` built reserve-then-send (tokio-util's `PollSender`): `poll_ready` reserves a slot,
/// `start_send` fills and publishes it, so `poll_flush` has nothing left to do (a sent message
/// is visible to the consumers). A reservation not used is released by `poll_close` or when
/// the producer is dropped.
///
/// `SinkExt::send` flushes after every item; `feed` + one `flush` is the same here, since every
/// item is published by `start_send`.
impl<F: Flavour, M: AsRef<[u8]>> Sink<M> for Producer<F> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.sink_reserved.is_some() {
            return Poll::Ready(Ok(()));
        }
        let mut started = this.sink_started.take();
        let algo = &mut this.algo;
        let r = this
            .core
            .poll_op(cx, &mut started, |core| claim_with(core, algo));
        this.sink_started = started;
        match r {
            Poll::Ready(Ok(pos)) => {
                this.sink_reserved = Some(pos);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn start_send(self: Pin<&mut Self>, item: M) -> Result<()> {
        let this = self.get_mut();
        let Some(pos) = this.sink_reserved.take() else {
            return Err(Error::InvalidArgument(
                "Sink::start_send without a successful poll_ready".into(),
            ));
        };
        let bytes = item.as_ref();
        if let Err(e) = this.check_len(bytes.len()) {
            this.sink_reserved = Some(pos); // keep the slot for the next item
            return Err(e);
        }
        this.core
            .ring
            .write_payload(this.core.ring.index(pos), 0, bytes);
        this.commit(pos, bytes.len() as u32);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        this.release_sink_reservation();
        this.core.retract_async();
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
        let algo = &mut self.algo;
        match self
            .core
            .poll_op(cx, started, |core| Consumer::<F>::take(core, algo))
        {
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
