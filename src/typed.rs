//! Typed channels and endpoints (feature `serde`): values of a serde type instead of bytes.
//!
//! [`TypedProducer<F, T>`] and [`TypedConsumer<F, T>`] wrap a [`Producer<F>`] and a
//! [`Consumer<F>`] of any flavour ([`Spsc`], [`Mpsc`](crate::channel::Mpsc),
//! [`Mpmc`](crate::channel::Mpmc)); [`TypedEndpoint<Out, In>`] wraps an [`Endpoint`] that
//! sends `Out` and receives `In` (a client of a service is `TypedEndpoint<Request, Response>`,
//! its server `TypedEndpoint<Response, Request>`). They have the same try, blocking and async
//! forms as the byte channels, and are `Sink<T>` / `Stream<Item = Result<T>>`.
//!
//! # Encoding
//!
//! Values are encoded with [postcard](https://docs.rs/postcard) (varints, no field names, no
//! schema), **straight into the reserved slot**: the encoder writes through the slot's raw
//! pointer, with no intermediate buffer and no reference over shared bytes. Receiving copies
//! the message into a buffer the consumer keeps (one slot, allocated once) and decodes from
//! there, so a hostile peer cannot change the bytes under the decoder.
//!
//! Why postcard and not bincode: `benches/serde_codec.rs` measures both on the same structs
//! (encode + decode into and from a preallocated buffer, alternating rounds). bincode 2 was
//! the faster of the two, by 13 to 22 % (on the 2-vCPU VM: 113 ns against 100 ns for a
//! 25-byte order, 4.9 µs against 3.8 µs for a 1 KiB batch), and postcard's encoding the
//! smaller (25 against 28 bytes, 1017 against 1067: varints everywhere), which matters where
//! the slot size is the limit. The choice is postcard because bincode is unmaintained: its
//! authors ceased development in December 2025 (RUSTSEC-2025-0141, which names postcard as an
//! alternative; its 3.0 release is a `compile_error!`), while postcard has a documented,
//! stable 1.x wire format and is kept up. Some nanoseconds per small message are the price;
//! the README has the numbers. postcard also writes through a custom output (its `Flavor`
//! trait), so the slot needs no `&mut [u8]`.
//!
//! # Errors
//!
//! - A value that encodes to more bytes than a slot holds is [`Error::InvalidArgument`]
//!   naming the encoded size, the slot size and the channel; nothing is sent (the slot is
//!   given back).
//! - A message that does not decode as `T` (garbage from a raw-bytes or hostile producer, or
//!   another type) is [`Error::Corrupt`] naming the channel; never a panic. A message with
//!   bytes left over after the value is corrupt too.
//! - A *recursive* `T` (a tree as an enum that holds `Box<Self>`) is decoded recursively, and
//!   postcard sets no depth limit: a hostile producer can send a value nested deep enough to
//!   overflow the consumer's stack (a slot bounds the depth at about its size in bytes). Use
//!   flat types on a channel a peer you do not trust writes, or bound the depth yourself
//!   (decode from [`Consumer::recv`](crate::channel::Consumer::recv)'s bytes with a limit).
//!
//! The wire format is postcard's: both sides must use the same `T` (or a type with the same
//! serde shape). shmchan records no type in the segment.
//!
//! # Examples
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use shmchan::Options;
//! use shmchan::channel::Mpsc;
//! use shmchan::typed::{TypedConsumer, TypedProducer};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Order { id: u64, item: String, qty: u32 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> shmchan::Result<()> {
//! # let name = format!("/shmchan-doc-typed-{}", std::process::id());
//! let mut rx = TypedConsumer::<Mpsc, Order>::create(&name, Options::new())?;
//! let mut tx = TypedProducer::<Mpsc, Order>::open(&name, Options::new())?; // another process
//! tx.send(&Order { id: 1, item: "tea".into(), qty: 2 }).await?;
//! assert_eq!(rx.recv().await?, Order { id: 1, item: "tea".into(), qty: 2 });
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::{FusedStream, Stream};
use futures_sink::Sink;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::channel::{Consumer, Flavour, Options, Producer, Spsc};
use crate::endpoint::{Endpoint, Side};
use crate::error::{Error, Result, TryRecvError, TrySendError};

mod codec;

use codec::{decode, encode_into};

fn try_send_error(e: Error) -> TrySendError<()> {
    match e {
        Error::Closed => TrySendError::Closed(()),
        e => TrySendError::Other((), Box::new(e)),
    }
}

/// The sending side of a typed channel: sends values of `T`, encoded in place. See the
/// [module docs](self).
pub struct TypedProducer<F: Flavour, T> {
    inner: Producer<F>,
    /// Start of the `Sink`'s current wait.
    sink_started: Option<Instant>,
    _values: PhantomData<fn(&T)>,
}

impl<F: Flavour, T> fmt::Debug for TypedProducer<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedProducer")
            .field("inner", &self.inner)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<F: Flavour, T> From<Producer<F>> for TypedProducer<F, T> {
    fn from(inner: Producer<F>) -> Self {
        TypedProducer::new(inner)
    }
}

impl<F: Flavour, T> TypedProducer<F, T> {
    /// Sends values of `T` on `inner`.
    pub fn new(inner: Producer<F>) -> Self {
        TypedProducer {
            inner,
            sink_started: None,
            _values: PhantomData,
        }
    }

    /// Creates the channel `name`, as [`Producer::create`].
    ///
    /// # Errors
    ///
    /// As [`Producer::create`].
    pub fn create(name: &str, opts: Options) -> Result<Self> {
        Producer::create(name, opts).map(Self::new)
    }

    /// Attaches to the channel `name`, as [`Producer::open`].
    ///
    /// # Errors
    ///
    /// As [`Producer::open`].
    pub fn open(name: &str, opts: Options) -> Result<Self> {
        Producer::open(name, opts).map(Self::new)
    }

    /// The byte producer underneath.
    pub fn get_ref(&self) -> &Producer<F> {
        &self.inner
    }

    /// The byte producer underneath (a `Sink` reservation it holds is used by its next send).
    pub fn get_mut(&mut self) -> &mut Producer<F> {
        &mut self.inner
    }

    /// Gives back the byte producer.
    pub fn into_inner(self) -> Producer<F> {
        self.inner
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Largest encoded value in bytes.
    pub fn slot_size(&self) -> usize {
        self.inner.slot_size()
    }
}

impl<F: Flavour, T: Serialize> TypedProducer<F, T> {
    /// Encodes `value` into a slot if one is free now.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] when the ring is full, [`TrySendError::Closed`] when the
    /// consumers left; [`TrySendError::Other`] with [`Error::InvalidArgument`] for a value
    /// larger than a slot, or [`Error::PeerGone`], [`Error::Corrupt`].
    pub fn try_send(&mut self, value: &T) -> Result<(), TrySendError<()>> {
        match self.inner.try_reserve() {
            Ok(Some(slot)) => encode_into(slot, value).map_err(try_send_error),
            Ok(None) => Err(TrySendError::Full(())),
            Err(e) => Err(try_send_error(e)),
        }
    }

    /// Encodes `value` into a slot, parking the thread while the ring is full.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::PeerGone`], [`Error::Corrupt`]; [`Error::InvalidArgument`]
    /// for a value larger than a slot.
    pub fn send_blocking(&mut self, value: &T) -> Result<()> {
        encode_into(self.inner.reserve_blocking()?, value)
    }

    /// Encodes `value` into a slot, waiting asynchronously while the ring is full.
    ///
    /// # Errors
    ///
    /// As [`send_blocking`](Self::send_blocking), and [`Error::Io`] if no async runtime can
    /// be used.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is sent unless the future completes.
    pub async fn send(&mut self, value: &T) -> Result<()> {
        encode_into(self.inner.reserve().await?, value)
    }
}

/// `Sink` reserve-then-encode: `poll_ready` claims a slot (the byte producer's `Sink`
/// reservation), `start_send` encodes the value into it and publishes it, so `poll_flush` has
/// nothing left to do. A value too large for a slot fails `start_send` with
/// [`Error::InvalidArgument`].
impl<F: Flavour, T: Serialize> Sink<T> for TypedProducer<F, T> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.inner.has_reservation() {
            return Poll::Ready(Ok(()));
        }
        let r = this.inner.poll_claim(cx, &mut this.sink_started);
        if let Poll::Ready(r) = r {
            this.sink_started = None;
            this.inner.retract_wait();
            this.inner.hold_reservation(r?);
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<()> {
        let this = self.get_mut();
        if !this.inner.has_reservation() {
            return Err(Error::InvalidArgument(format!(
                "Sink::start_send on {} without a successful poll_ready",
                this.inner.describe()
            )));
        }
        // The reservation is next in line: `try_reserve` hands it out.
        if let Some(slot) = this.inner.try_reserve()? {
            return encode_into(slot, &item);
        }
        Err(Error::InvalidArgument(format!(
            "Sink::start_send on {}: the reservation was used by another send",
            this.inner.describe()
        )))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.inner.has_reservation() {
            // Hand the reservation out as a slot and drop it: discarded.
            drop(this.inner.try_reserve());
        }
        this.inner.retract_wait();
        Poll::Ready(Ok(()))
    }
}

/// The receiving side of a typed channel: receives values of `T`. See the
/// [module docs](self).
pub struct TypedConsumer<F: Flavour, T> {
    inner: Consumer<F>,
    /// One slot: messages are copied here, then decoded.
    buf: Vec<u8>,
    stream_started: Option<Instant>,
    terminated: bool,
    _values: PhantomData<fn() -> T>,
}

impl<F: Flavour, T> fmt::Debug for TypedConsumer<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedConsumer")
            .field("inner", &self.inner)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<F: Flavour, T> From<Consumer<F>> for TypedConsumer<F, T> {
    fn from(inner: Consumer<F>) -> Self {
        TypedConsumer::new(inner)
    }
}

impl<F: Flavour, T> TypedConsumer<F, T> {
    /// Receives values of `T` from `inner` (allocates one slot's worth of buffer).
    pub fn new(inner: Consumer<F>) -> Self {
        TypedConsumer {
            buf: vec![0; inner.slot_size()],
            inner,
            stream_started: None,
            terminated: false,
            _values: PhantomData,
        }
    }

    /// Creates the channel `name`, as [`Consumer::create`].
    ///
    /// # Errors
    ///
    /// As [`Consumer::create`].
    pub fn create(name: &str, opts: Options) -> Result<Self> {
        Consumer::create(name, opts).map(Self::new)
    }

    /// Attaches to the channel `name`, as [`Consumer::open`].
    ///
    /// # Errors
    ///
    /// As [`Consumer::open`].
    pub fn open(name: &str, opts: Options) -> Result<Self> {
        Consumer::open(name, opts).map(Self::new)
    }

    /// The byte consumer underneath.
    pub fn get_ref(&self) -> &Consumer<F> {
        &self.inner
    }

    /// The byte consumer underneath.
    pub fn get_mut(&mut self) -> &mut Consumer<F> {
        &mut self.inner
    }

    /// Gives back the byte consumer.
    pub fn into_inner(self) -> Consumer<F> {
        self.inner
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }
}

impl<F: Flavour, T: DeserializeOwned> TypedConsumer<F, T> {
    /// Takes and decodes a value if one is queued now.
    ///
    /// # Errors
    ///
    /// As [`Consumer::try_recv`]; [`TryRecvError::Other`] with [`Error::Corrupt`] if the
    /// message does not decode as a `T` (it is consumed).
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let n = self.inner.try_recv_into(&mut self.buf)?;
        Ok(decode(&self.buf[..n], || self.inner.describe())?)
    }

    /// Takes and decodes a value, parking the thread while the ring is empty.
    ///
    /// # Errors
    ///
    /// As [`Consumer::recv_blocking`]; [`Error::Corrupt`] if the message does not decode.
    pub fn recv_blocking(&mut self) -> Result<T> {
        let n = self.inner.recv_into_blocking(&mut self.buf)?;
        decode(&self.buf[..n], || self.inner.describe())
    }

    /// Takes and decodes a value, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Consumer::recv_timeout`]; [`Error::Corrupt`] if the message does not decode.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        let n = self.inner.recv_into_timeout(&mut self.buf, timeout)?;
        decode(&self.buf[..n], || self.inner.describe())
    }

    /// Takes and decodes a value, waiting asynchronously.
    ///
    /// # Errors
    ///
    /// As [`Consumer::recv`]; [`Error::Corrupt`] if the message does not decode.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken only in the poll that returns it.
    pub async fn recv(&mut self) -> Result<T> {
        let n = self.inner.recv_into(&mut self.buf).await?;
        decode(&self.buf[..n], || self.inner.describe())
    }
}

/// The stream of values: as the byte consumer's stream (`None` after a clean close), with a
/// message that does not decode yielded once as [`Error::Corrupt`], which ends the stream.
impl<F: Flavour, T: DeserializeOwned> Stream for TypedConsumer<F, T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        let this = self.get_mut();
        if this.terminated {
            return Poll::Ready(None);
        }
        let r = this
            .inner
            .poll_recv_into(cx, &mut this.buf, &mut this.stream_started);
        let r = match r {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        this.stream_started = None;
        this.inner.retract_wait();
        match r.and_then(|n| decode(&this.buf[..n], || this.inner.describe())) {
            Ok(v) => Poll::Ready(Some(Ok(v))),
            Err(Error::Closed) => {
                this.terminated = true;
                Poll::Ready(None)
            }
            Err(e) => {
                this.terminated = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl<F: Flavour, T: DeserializeOwned> FusedStream for TypedConsumer<F, T> {
    fn is_terminated(&self) -> bool {
        self.terminated
    }
}

/// A typed duplex connection: sends `Out`, receives `In`. A service's client is
/// `TypedEndpoint<Request, Response>`, its server `TypedEndpoint<Response, Request>`.
///
/// # Examples
///
/// ```
/// # #[cfg(any(feature = "tokio", feature = "async-io"))]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> shmchan::Result<()> {
/// use serde::{Deserialize, Serialize};
/// use shmchan::Options;
/// use shmchan::endpoint::{Endpoint, Listener};
/// use shmchan::typed::TypedEndpoint;
///
/// #[derive(Serialize, Deserialize)]
/// enum Request { Add(i64, i64) }
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// enum Response { Sum(i64) }
///
/// # let name = format!("/shmchan-doc-typed-ep-{}", std::process::id());
/// let mut listener = Listener::bind(&name, Options::new())?;
/// let (server, client) = tokio::join!(
///     TypedEndpoint::<Response, Request>::accept(&mut listener),
///     TypedEndpoint::<Request, Response>::connect(&name), // usually another process
/// );
/// let (mut server, mut client) = (server?, client?);
/// client.send(&Request::Add(2, 3)).await?;
/// let Request::Add(a, b) = server.recv().await?;
/// server.send(&Response::Sum(a + b)).await?;
/// assert_eq!(client.recv().await?, Response::Sum(5));
/// # Ok(())
/// # }
/// # #[cfg(not(any(feature = "tokio", feature = "async-io")))]
/// # fn main() {}
/// ```
pub struct TypedEndpoint<Out, In> {
    tx: TypedProducer<Spsc, Out>,
    rx: TypedConsumer<Spsc, In>,
    side: Side,
}

impl<Out, In> fmt::Debug for TypedEndpoint<Out, In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedEndpoint")
            .field("side", &self.side)
            .field("tx", &self.tx)
            .field("rx", &self.rx)
            .finish()
    }
}

impl<Out, In> From<Endpoint> for TypedEndpoint<Out, In> {
    fn from(ep: Endpoint) -> Self {
        TypedEndpoint::new(ep)
    }
}

impl<Out, In> TypedEndpoint<Out, In> {
    /// Sends `Out` and receives `In` on `ep`.
    pub fn new(ep: Endpoint) -> Self {
        let side = ep.side();
        let (tx, rx) = ep.split();
        TypedEndpoint {
            tx: TypedProducer::new(tx),
            rx: TypedConsumer::new(rx),
            side,
        }
    }

    /// Creates the endpoint `name`, as [`Endpoint::create`].
    ///
    /// # Errors
    ///
    /// As [`Endpoint::create`].
    pub fn create(name: &str, side: Side, opts: Options) -> Result<Self> {
        Endpoint::create(name, side, opts).map(Self::new)
    }

    /// Attaches to the endpoint `name`, as [`Endpoint::open`].
    ///
    /// # Errors
    ///
    /// As [`Endpoint::open`].
    pub fn open(name: &str, side: Side, opts: Options) -> Result<Self> {
        Endpoint::open(name, side, opts).map(Self::new)
    }

    /// Connects to the listener `name`, as [`Endpoint::connect`] (on tokio or async-io).
    ///
    /// # Errors
    ///
    /// As [`Endpoint::connect`].
    #[cfg(any(feature = "tokio", feature = "async-io"))]
    pub async fn connect(name: &str) -> Result<Self> {
        Endpoint::connect(name).await.map(Self::new)
    }

    /// [`connect`](Self::connect) with options, as [`Endpoint::connect_with`].
    ///
    /// # Errors
    ///
    /// As [`Endpoint::connect`].
    #[cfg(any(feature = "tokio", feature = "async-io"))]
    pub async fn connect_with(
        name: &str,
        options: impl Into<crate::endpoint::ConnectOptions>,
    ) -> Result<Self> {
        Endpoint::connect_with(name, options).await.map(Self::new)
    }

    /// The next client of `listener`, as [`Listener::accept`](crate::endpoint::Listener::accept).
    ///
    /// # Errors
    ///
    /// As [`Listener::accept`](crate::endpoint::Listener::accept).
    #[cfg(any(feature = "tokio", feature = "async-io"))]
    pub async fn accept(listener: &mut crate::endpoint::Listener) -> Result<Self> {
        listener.accept().await.map(Self::new)
    }

    /// This endpoint's side.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Gives back the byte endpoint.
    pub fn into_inner(self) -> Endpoint {
        Endpoint::from_halves(self.tx.into_inner(), self.rx.into_inner(), self.side)
    }

    /// Splits into the typed sending half (a `Sink<Out>`) and receiving half (a
    /// `Stream<Item = Result<In>>`), as [`Endpoint::split`].
    pub fn split(self) -> (TypedProducer<Spsc, Out>, TypedConsumer<Spsc, In>) {
        (self.tx, self.rx)
    }
}

impl<Out: Serialize, In> TypedEndpoint<Out, In> {
    /// Sends to the peer, waiting asynchronously while its ring is full.
    ///
    /// # Errors
    ///
    /// As [`TypedProducer::send`].
    pub async fn send(&mut self, value: &Out) -> Result<()> {
        self.tx.send(value).await
    }

    /// Sends if there is room now.
    ///
    /// # Errors
    ///
    /// As [`TypedProducer::try_send`].
    pub fn try_send(&mut self, value: &Out) -> Result<(), TrySendError<()>> {
        self.tx.try_send(value)
    }

    /// Sends, parking the thread while the peer's ring is full.
    ///
    /// # Errors
    ///
    /// As [`TypedProducer::send_blocking`].
    pub fn send_blocking(&mut self, value: &Out) -> Result<()> {
        self.tx.send_blocking(value)
    }
}

impl<Out, In: DeserializeOwned> TypedEndpoint<Out, In> {
    /// Receives from the peer, waiting asynchronously.
    ///
    /// # Errors
    ///
    /// As [`TypedConsumer::recv`].
    pub async fn recv(&mut self) -> Result<In> {
        self.rx.recv().await
    }

    /// Receives if a message is waiting now.
    ///
    /// # Errors
    ///
    /// As [`TypedConsumer::try_recv`].
    pub fn try_recv(&mut self) -> Result<In, TryRecvError> {
        self.rx.try_recv()
    }

    /// Receives, parking the thread while nothing is waiting.
    ///
    /// # Errors
    ///
    /// As [`TypedConsumer::recv_blocking`].
    pub fn recv_blocking(&mut self) -> Result<In> {
        self.rx.recv_blocking()
    }

    /// Receives, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`TypedConsumer::recv_timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<In> {
        self.rx.recv_timeout(timeout)
    }
}

impl<Out: Serialize, In> Sink<Out> for TypedEndpoint<Out, In> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.get_mut().tx).poll_ready(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Out) -> Result<()> {
        Pin::new(&mut self.get_mut().tx).start_send(item)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.get_mut().tx).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.get_mut().tx).poll_close(cx)
    }
}

impl<Out, In: DeserializeOwned> Stream for TypedEndpoint<Out, In> {
    type Item = Result<In>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<In>>> {
        Pin::new(&mut self.get_mut().rx).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Small {
        id: u32,
        name: String,
    }

    fn name(tag: &str) -> String {
        format!("/shmchan-t-typed-{tag}-{}", std::process::id())
    }

    #[test]
    fn too_large_names_sizes_and_channel_and_sends_nothing() {
        let n = name("large");
        let opts = Options::new().slot_size(32).capacity(4);
        let mut tx = TypedProducer::<Spsc, Small>::create(&n, opts.clone()).unwrap();
        let mut rx = TypedConsumer::<Spsc, Small>::open(&n, opts).unwrap();
        let big = Small {
            id: 1,
            name: "x".repeat(100),
        };
        let e = tx.send_blocking(&big).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        // id (1 byte varint) + length (1 byte varint) + 100 bytes
        assert!(text.contains("102 bytes"), "{text}");
        assert!(text.contains("32 bytes"), "{text}");
        assert!(text.contains(&n), "{text}");
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        // The slot was given back: a value that fits goes through.
        let ok = Small {
            id: 7,
            name: "ok".into(),
        };
        tx.send_blocking(&ok).unwrap();
        assert_eq!(rx.try_recv().unwrap(), ok);
    }

    #[test]
    fn garbage_and_trailing_bytes_are_corrupt() {
        let n = name("garbage");
        let mut raw = Producer::<Spsc>::create(&n, Options::new()).unwrap();
        let mut rx = TypedConsumer::<Spsc, Small>::open(&n, Options::new()).unwrap();
        // A string length of 200 with 2 bytes behind it.
        raw.try_send([1u8, 200, 1, b'a', b'b']).unwrap();
        let e = rx.try_recv().unwrap_err();
        assert!(
            matches!(&e, TryRecvError::Other(Error::Corrupt(m)) if m.contains(&n)),
            "{e:?}"
        );
        // A valid value with a byte more.
        let mut bytes = postcard::to_allocvec(&Small {
            id: 1,
            name: "a".into(),
        })
        .unwrap();
        bytes.push(0);
        raw.try_send(&bytes).unwrap();
        let e = rx.try_recv().unwrap_err();
        assert!(
            matches!(&e, TryRecvError::Other(Error::Corrupt(m)) if m.contains("1 bytes more")),
            "{e:?}"
        );
    }
}
