//! [`RemoteSink`] and [`RemoteStream`]: a Zenoh publisher as a `Sink` of bytes and a
//! subscriber as a `Stream` of [`Message`]s, for code that wants no local hop.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_sink::Sink;
use zenoh::Wait;
use zenoh::handlers::FifoChannel;
use zenoh::handlers::fifo::{FifoChannelHandler, RecvStream};
use zenoh::pubsub::{Publisher, Subscriber};
use zenoh::qos::CongestionControl;
use zenoh::sample::{Sample, SampleKind};

use super::{IMPORT_QUEUE, zerr};
use crate::channel::Message;
use crate::error::{Error, Result};

/// A Zenoh publisher on one key expression as a `Sink` of bytes, with congestion control
/// `Block`.
///
/// It speaks the bridge's protocol: [`finish`](Self::finish) (or `Sink::poll_close`) publishes a
/// delete on the key, which an [`import`](super::import) and a [`RemoteStream`] take as the
/// clean end of the stream.
///
/// Zenoh's `put` is synchronous: when Zenoh pushes back, `start_send` (and
/// [`send_blocking`](Self::send_blocking)) blocks the calling thread until there is room (or
/// until Zenoh gives up on the link). Use it from a thread, or a multi-threaded runtime.
pub struct RemoteSink {
    publisher: Publisher<'static>,
    key: String,
    closed: bool,
}

impl std::fmt::Debug for RemoteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSink")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl RemoteSink {
    /// Declares a publisher on `key` in `session`.
    pub fn new(session: &zenoh::Session, key: &str) -> Result<RemoteSink> {
        let publisher = session
            .declare_publisher(key.to_owned())
            .congestion_control(CongestionControl::Block)
            .wait()
            .map_err(|e| zerr(format!("publisher {key}"), e))?;
        Ok(RemoteSink {
            publisher,
            key: key.to_owned(),
            closed: false,
        })
    }

    /// The key expression.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether a subscriber matches the key now (a put with none is lost).
    pub fn has_subscribers(&self) -> Result<bool> {
        let status = self
            .publisher
            .matching_status()
            .wait()
            .map_err(|e| zerr(format!("publisher {}", self.key), e))?;
        Ok(status.matching())
    }

    /// Publishes `msg`, waiting while Zenoh pushes back.
    pub fn send_blocking(&self, msg: &[u8]) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.publisher
            .put(msg)
            .wait()
            .map_err(|e| zerr(format!("put on {}", self.key), e))
    }

    /// Waits up to `timeout` until a subscriber matches the key; [`Error::TimedOut`] if none
    /// did.
    pub fn wait_for_subscriber(&self, timeout: Duration) -> Result<()> {
        let deadline = crate::deadline_after(timeout);
        let what = || format!("publisher {}", self.key);
        let listener = self
            .publisher
            .matching_listener()
            .with(FifoChannel::new(16))
            .wait()
            .map_err(|e| zerr(what(), e))?;
        while !self.has_subscribers()? {
            match listener.recv_deadline(deadline) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    return Err(Error::TimedOut(format!(
                        "no subscriber on {} within {timeout:?}",
                        self.key
                    )));
                }
            }
        }
        Ok(())
    }

    /// Publishes the clean end of the stream (a delete on the key) and undeclares the publisher.
    pub fn finish(mut self) -> Result<()> {
        self.end()
    }

    fn end(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.publisher
            .delete()
            .wait()
            .map_err(|e| zerr(format!("delete on {}", self.key), e))
    }
}

impl<M: AsRef<[u8]>> Sink<M> for RemoteSink {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(if self.closed {
            Err(Error::Closed)
        } else {
            Ok(())
        })
    }

    fn start_send(self: Pin<&mut Self>, item: M) -> Result<()> {
        self.send_blocking(item.as_ref())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        // A put is in Zenoh's transmit queue when it returns; Zenoh sends it without more help.
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(self.get_mut().end())
    }
}

/// A Zenoh subscriber on one key expression as a `Stream` of [`Message`]s.
///
/// Samples queue in a bounded FIFO of [`IMPORT_QUEUE`]; when it is full Zenoh's receive task
/// waits (back-pressure, as for [`import`](super::import)). The stream ends (`None`) at a delete
/// on the key (a [`RemoteSink::finish`] or an exporter's clean end) or when the session closes.
pub struct RemoteStream {
    subscriber: Subscriber<FifoChannelHandler<Sample>>,
    stream: Pin<Box<RecvStream<'static, Sample>>>,
    key: String,
    ended: bool,
}

impl std::fmt::Debug for RemoteStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStream")
            .field("key", &self.key)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl RemoteStream {
    /// Declares a subscriber on `key` in `session`.
    pub fn new(session: &zenoh::Session, key: &str) -> Result<RemoteStream> {
        let subscriber = session
            .declare_subscriber(key.to_owned())
            .with(FifoChannel::new(IMPORT_QUEUE))
            .wait()
            .map_err(|e| zerr(format!("subscriber {key}"), e))?;
        let stream = Box::pin(subscriber.handler().clone().into_stream());
        Ok(RemoteStream {
            subscriber,
            stream,
            key: key.to_owned(),
            ended: false,
        })
    }

    /// The key expression.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn take(&mut self, sample: Sample) -> Result<Message> {
        if sample.kind() == SampleKind::Delete {
            self.ended = true;
            return Err(Error::Closed);
        }
        Ok(Message::copy_from(&sample.payload().to_bytes()))
    }

    /// The next message, waiting up to `timeout`: [`Error::Closed`] after the clean end,
    /// [`Error::TimedOut`] when nothing arrived in time.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message> {
        if self.ended {
            return Err(Error::Closed);
        }
        match self.subscriber.recv_timeout(timeout) {
            Ok(Some(sample)) => self.take(sample),
            Ok(None) => Err(Error::TimedOut(format!(
                "nothing arrived on {} within {timeout:?}",
                self.key
            ))),
            Err(_) => {
                self.ended = true;
                Err(Error::Closed)
            }
        }
    }
}

impl Stream for RemoteStream {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match this.stream.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(sample)) => match this.take(sample) {
                Err(Error::Closed) => Poll::Ready(None),
                other => Poll::Ready(Some(other)),
            },
        }
    }
}
