//! Duplex endpoints (side A / side B) and a listener/connect model for request/response
//! services.
//!
//! An [`Endpoint`] is two SPSC rings, one each way. Two ways to get one:
//!
//! - **By name**: [`Endpoint::create`]`(name, Side::A, ..)` makes the rings `<name>-a2b` and
//!   `<name>-b2a` in `/dev/shm`; [`Endpoint::open`]`(name, Side::B, ..)` attaches to them.
//! - **Listener / connect** (feature `tokio` or `async-io`; either runtime, see below):
//!   `Listener::bind``(name, ..)` listens on a Unix
//!   socket in the abstract namespace; each `Endpoint::connect``(name)` gets its own pair of
//!   rings in two memfd segments that the listener passes over the socket with `SCM_RIGHTS`,
//!   so nothing is ever left in `/dev/shm`, even after SIGKILL.
//!
//! # The connection handshake
//!
//! 0. The client reads the listener's uid (`SO_PEERCRED` on the connected socket) and checks
//!    it against its own before sending anything: abstract socket names have no permissions,
//!    so another user could have bound the name first. Another uid is refused unless
//!    `ConnectOptions::allow_any_uid` was set (`Endpoint::connect_with`).
//! 1. The client sends 16 bytes: `b"SHMCHAN-EP\0\0"` and the protocol version (u32 LE).
//! 2. The listener checks them, and the client's uid (`SO_PEERCRED`) against its own: another
//!    uid is refused unless `Listener::allow_any_uid` was set. It creates the two rings and
//!    replies with 20 bytes (status u32 LE, 0 = ok; slot size and capacity as u64 LE) and the
//!    two memfds; a refusal replies with a non-zero status and a UTF-8 reason instead.
//! 3. The client maps the rings, attaches as side B, and sends one byte; the listener then
//!    returns the endpoint from `Listener::accept`.
//!
//! The sockets are registered in the reactor of the task that polls them (tokio's inside a
//! tokio runtime, else async-io's), and the step bounds are timerfds in the same reactor, so
//! a smol client and a tokio server (or any mix) connect alike; with no runtime usable the call
//! is an `Error::Io` of kind `Unsupported`, never a panic.
//!
//! Each step is bounded by the handshake timeout (the `Options`' init timeout, default 2 s;
//! `Listener::handshake_timeout` and `ConnectOptions::handshake_timeout` override it); handshakes run concurrently
//! inside `accept`, so a client that stalls or sends garbage never delays the others, and its
//! failure is the `Err` of one `accept` call (the listener stays usable). After the handshake
//! the socket stays open as the connection's liveness line; peer death is also seen through
//! the rings' participant tables and pidfds, as for every channel.
//!
//! Endpoints by name are here; the listener and its handshake are in `listener.rs`. This module
//! may call `channel`, `segment` and `sys`.

use std::time::Duration;

use crate::channel::{Consumer, Message, Options, RecvFuture, SendFuture, Spsc};
use crate::error::{Error, Result, SendTimeoutError, TryRecvError, TrySendError};

/// Which end of an endpoint: A sends on `a2b` and receives on `b2a`, B the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The side that usually creates the endpoint (a server, a listener).
    A,
    /// The other side (a client).
    B,
}

/// `InUse` from one of the rings, said of the endpoint: "side B of endpoint '/svc' is already
/// held by a live process (pid 4242)".
fn side_in_use(name: &str, side: Side, e: Error) -> Error {
    match e {
        Error::InUse(m) => {
            // The participant table's message ends "... held by live process <pid>".
            let pid = m
                .rsplit_once("live process ")
                .map(|(_, rest)| {
                    rest.chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                })
                .filter(|pid| !pid.is_empty())
                .map(|pid| format!(" (pid {pid})"))
                .unwrap_or_default();
            Error::InUse(format!(
                "side {side:?} of endpoint '{name}' is already held by a live process{pid}"
            ))
        }
        e => e,
    }
}

impl Side {
    /// How errors name the other side of an endpoint by name.
    fn peer_name(self) -> &'static str {
        match self {
            Side::A => "side B",
            Side::B => "side A",
        }
    }
}

/// A duplex connection: send to the peer, receive from the peer.
#[derive(Debug)]
pub struct Endpoint {
    tx: crate::channel::Producer<Spsc>,
    rx: Consumer<Spsc>,
    side: Side,
}

fn ring_names(name: &str) -> Result<(String, String)> {
    crate::segment::validate_name(name)?;
    if name.len() + 4 > 255 {
        return Err(Error::InvalidArgument(format!(
            "endpoint name {name:?} is {} bytes; with the '-a2b' suffix at most 251 are allowed",
            name.len()
        )));
    }
    Ok((format!("{name}-a2b"), format!("{name}-b2a")))
}

impl Endpoint {
    /// Creates both rings of the endpoint `name` and attaches as `side`.
    ///
    /// # Errors
    ///
    /// As [`Producer::create`](crate::channel::Producer::create); if the second ring cannot be
    /// created the first is removed again.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Options, endpoint::{Endpoint, Side}};
    ///
    /// # fn main() -> shmchan::Result<()> {
    /// let name = format!("/shmchan-doc-ep-{}", std::process::id());
    /// let mut a = Endpoint::create(&name, Side::A, Options::new())?;
    /// let mut b = Endpoint::open(&name, Side::B, Options::new())?; // usually another process
    /// a.try_send(b"ping").unwrap();
    /// assert_eq!(&*b.recv_blocking()?, b"ping");
    /// b.try_send(b"pong").unwrap();
    /// assert_eq!(&*a.recv_blocking()?, b"pong");
    /// # Ok(())
    /// # }
    /// ```
    pub fn create(name: &str, side: Side, opts: Options) -> Result<Endpoint> {
        let (a2b, b2a) = ring_names(name)?;
        let (out_name, in_name) = match side {
            Side::A => (&a2b, &b2a),
            Side::B => (&b2a, &a2b),
        };
        let mut tx = crate::channel::Producer::<Spsc>::create(out_name, opts.clone())?;
        let mut rx = Consumer::<Spsc>::create(in_name, opts).inspect_err(|_| {
            let _ = crate::Segment::unlink(out_name);
        })?;
        tx.set_endpoint(name, side.peer_name());
        rx.set_endpoint(name, side.peer_name());
        Ok(Endpoint { tx, rx, side })
    }

    /// Attaches as `side` to the existing endpoint `name`.
    ///
    /// # Errors
    ///
    /// As [`Producer::open`](crate::channel::Producer::open); [`Error::InUse`] if that side is
    /// held by a live process.
    pub fn open(name: &str, side: Side, opts: Options) -> Result<Endpoint> {
        let (a2b, b2a) = ring_names(name)?;
        let (out_name, in_name) = match side {
            Side::A => (&a2b, &b2a),
            Side::B => (&b2a, &a2b),
        };
        let in_use = |e| side_in_use(name, side, e);
        let mut tx =
            crate::channel::Producer::<Spsc>::open(out_name, opts.clone()).map_err(in_use)?;
        let mut rx = Consumer::<Spsc>::open(in_name, opts).map_err(in_use)?;
        tx.set_endpoint(name, side.peer_name());
        rx.set_endpoint(name, side.peer_name());
        Ok(Endpoint { tx, rx, side })
    }

    /// What this endpoint's waits did so far, both ways together: sends that waited for
    /// room and receives that waited for a message ([`WaitStats`](crate::WaitStats)).
    pub fn wait_stats(&self) -> crate::WaitStats {
        let (a, b) = (self.tx.wait_stats(), self.rx.wait_stats());
        crate::WaitStats {
            waits: a.waits + b.waits,
            os_yields: a.os_yields + b.os_yields,
            parks: a.parks + b.parks,
            barriers: a.barriers + b.barriers,
        }
    }

    /// This endpoint's side.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Whether the peer is attached now (a snapshot).
    pub fn opened(&self) -> bool {
        self.rx.has_producer()
    }

    /// Largest message in bytes, each way (both rings of an endpoint have one geometry; a
    /// connected endpoint's comes from the listener's `Options`).
    pub fn slot_size(&self) -> usize {
        self.tx.slot_size()
    }

    /// Slots per ring (each way).
    pub fn capacity(&self) -> usize {
        self.tx.capacity()
    }

    /// Free slots for sending now.
    pub fn available(&self) -> usize {
        self.tx.available()
    }

    /// Messages waiting to be received now.
    pub fn pending(&self) -> usize {
        self.rx.pending()
    }

    /// Sends to the peer, waiting asynchronously while its ring is full. Cancel safe.
    pub fn send<M: AsRef<[u8]> + Unpin>(&mut self, msg: M) -> SendFuture<'_, Spsc, M> {
        self.tx.send(msg)
    }

    /// Receives from the peer, waiting asynchronously. Cancel safe.
    pub fn recv(&mut self) -> RecvFuture<'_, Spsc> {
        self.rx.recv()
    }

    /// Publishes what the endpoint's `Sink` fed (one store, one wake check); see
    /// [`Producer::flush`](crate::channel::Producer::flush). Needs no item type.
    ///
    /// # Errors
    ///
    /// As [`Producer::flush`](crate::channel::Producer::flush).
    pub async fn flush(&mut self) -> Result<()> {
        self.tx.flush().await
    }

    /// Flushes and gives back the `Sink`'s reservation, as `SinkExt::close`; see
    /// [`Producer::close`](crate::channel::Producer::close). The endpoint stays connected.
    ///
    /// # Errors
    ///
    /// As [`Producer::flush`](crate::channel::Producer::flush).
    pub async fn close(&mut self) -> Result<()> {
        self.tx.close().await
    }

    /// Sends if there is room now.
    ///
    /// # Errors
    ///
    /// As [`Producer::try_send`](crate::channel::Producer::try_send).
    pub fn try_send<M: AsRef<[u8]>>(&mut self, msg: M) -> Result<(), TrySendError<M>> {
        self.tx.try_send(msg)
    }

    /// Receives if a message is waiting now.
    ///
    /// # Errors
    ///
    /// As [`Consumer::try_recv`].
    pub fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        self.rx.try_recv()
    }

    /// Sends, parking the thread while the peer's ring is full.
    ///
    /// # Errors
    ///
    /// As [`Producer::send_blocking`](crate::channel::Producer::send_blocking).
    pub fn send_blocking<M: AsRef<[u8]>>(&mut self, msg: M) -> Result<()> {
        self.tx.send_blocking(msg)
    }

    /// Receives, parking the thread while nothing is waiting.
    ///
    /// # Errors
    ///
    /// As [`Consumer::recv_blocking`].
    pub fn recv_blocking(&mut self) -> Result<Message> {
        self.rx.recv_blocking()
    }

    /// Sends, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Producer::send_timeout`](crate::channel::Producer::send_timeout).
    pub fn send_timeout<M: AsRef<[u8]>>(
        &mut self,
        msg: M,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<M>> {
        self.tx.send_timeout(msg, timeout)
    }

    /// Receives, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Consumer::recv_timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message> {
        self.rx.recv_timeout(timeout)
    }

    /// A connected endpoint: both halves keep the socket open (the liveness line) for as long
    /// as either lives, also after [`split`](Self::split).
    #[cfg(any(feature = "tokio", feature = "async-io"))]
    pub(crate) fn connected(
        mut tx: crate::channel::Producer<Spsc>,
        mut rx: Consumer<Spsc>,
        side: Side,
        line: std::os::unix::net::UnixStream,
    ) -> Endpoint {
        let line: std::sync::Arc<dyn std::any::Any + Send + Sync> = std::sync::Arc::new(line);
        tx.keep_alive(line.clone());
        rx.keep_alive(line);
        Endpoint { tx, rx, side }
    }

    /// Splits into the sending half (a `Sink`) and the receiving half (a `Stream`), for
    /// separate tasks. Dropping the sending half closes this direction: the peer drains, then
    /// its stream ends. A connected endpoint's socket (its liveness line) stays open while
    /// either half lives.
    pub fn split(self) -> (crate::channel::Producer<Spsc>, Consumer<Spsc>) {
        (self.tx, self.rx)
    }

    /// The endpoint made of the halves [`split`](Self::split) gave (the typed endpoints).
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
    pub(crate) fn from_halves(
        tx: crate::channel::Producer<Spsc>,
        rx: Consumer<Spsc>,
        side: Side,
    ) -> Endpoint {
        Endpoint { tx, rx, side }
    }
}

/// The whole endpoint is a `Sink`, without [`split`](Endpoint::split): it sends what its
/// sending half (a `Producer<Spsc>`) sends, with the same item types and error.
impl<M> futures_sink::Sink<M> for Endpoint
where
    crate::channel::Producer<Spsc>: futures_sink::Sink<M>,
{
    type Error = <crate::channel::Producer<Spsc> as futures_sink::Sink<M>>::Error;

    fn poll_ready(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::pin::Pin::new(&mut self.get_mut().tx).poll_ready(cx)
    }

    fn start_send(self: std::pin::Pin<&mut Self>, item: M) -> Result<(), Self::Error> {
        std::pin::Pin::new(&mut self.get_mut().tx).start_send(item)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::pin::Pin::new(&mut self.get_mut().tx).poll_flush(cx)
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::pin::Pin::new(&mut self.get_mut().tx).poll_close(cx)
    }
}

/// The whole endpoint is a `Stream` of what the peer sends, without
/// [`split`](Endpoint::split): as its receiving half (a `Consumer<Spsc>`), `None` after the
/// peer closed cleanly.
impl futures_core::Stream for Endpoint {
    type Item = <Consumer<Spsc> as futures_core::Stream>::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.get_mut().rx).poll_next(cx)
    }
}

impl futures_core::FusedStream for Endpoint {
    fn is_terminated(&self) -> bool {
        self.rx.is_terminated()
    }
}

#[cfg(any(feature = "tokio", feature = "async-io"))]
pub use listener::{ConnectOptions, Listener};

mod large;
#[cfg(any(feature = "tokio", feature = "async-io"))]
mod listener;

#[cfg(any(feature = "tokio", feature = "async-io"))]
pub use stream::{ShmReadHalf, ShmStream, ShmWriteHalf};

#[cfg(any(feature = "tokio", feature = "async-io"))]
mod stream;
