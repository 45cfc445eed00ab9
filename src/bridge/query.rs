//! Request/response over Zenoh queries: [`Requester`] (`get`), [`Responder`] (a queryable) and
//! [`serve`], which answers queries with a local [`Endpoint`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use zenoh::Wait;
use zenoh::handlers::{FifoChannel, FifoChannelHandler};
use zenoh::query::{Query, Queryable};

use super::{Ended, IMPORT_QUEUE, Running, Shared, Stats, TICK, zerr};
use crate::channel::Message;
use crate::endpoint::Endpoint;
use crate::error::{Error, Result, SendTimeoutError};

/// How long a [`Requester`] waits for a reply unless told otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends requests to whatever answers queries on a key expression (a [`Responder`] or a
/// [`serve`]d endpoint, on any host of the Zenoh network) and waits for the reply.
pub struct Requester {
    querier: zenoh::query::Querier<'static>,
    key: String,
    timeout: Duration,
}

impl std::fmt::Debug for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requester")
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Requester {
    /// A requester (a Zenoh querier) for `key` in `session`; each request waits up to `timeout`
    /// for its reply ([`DEFAULT_REQUEST_TIMEOUT`] is a sensible default).
    pub fn new(session: &zenoh::Session, key: &str, timeout: Duration) -> Result<Requester> {
        let querier = session
            .declare_querier(key.to_owned())
            .timeout(timeout)
            .wait()
            .map_err(|e| zerr(format!("querier {key}"), e))?;
        Ok(Requester {
            querier,
            key: key.to_owned(),
            timeout,
        })
    }

    /// Waits up to `timeout` until a responder for the key is reachable (a request sent before
    /// gets no reply); [`Error::TimedOut`] if none appeared.
    pub fn wait_for_responder(&self, timeout: Duration) -> Result<()> {
        let deadline = crate::deadline_after(timeout);
        let what = || format!("querier {}", self.key);
        let listener = self
            .querier
            .matching_listener()
            .with(FifoChannel::new(16))
            .wait()
            .map_err(|e| zerr(what(), e))?;
        loop {
            let status = self
                .querier
                .matching_status()
                .wait()
                .map_err(|e| zerr(what(), e))?;
            if status.matching() {
                return Ok(());
            }
            match listener.recv_deadline(deadline) {
                Ok(Some(status)) if status.matching() => return Ok(()),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    return Err(Error::TimedOut(format!(
                        "no responder on {} within {timeout:?}",
                        self.key
                    )));
                }
            }
        }
    }

    /// Sends `request` and waits for the reply (on this thread).
    ///
    /// [`Error::TimedOut`] when nothing answered within the timeout (no responder, or it was
    /// too slow); [`Error::PeerGone`] when the responder answered with an error (its local
    /// endpoint is gone); [`Error::Io`] for a Zenoh failure.
    pub fn request_blocking(&self, request: &[u8]) -> Result<Message> {
        let replies = self
            .querier
            .get()
            .payload(request)
            .wait()
            .map_err(|e| zerr(format!("get {}", self.key), e))?;
        self.answer(replies.recv().ok())
    }

    /// Sends `request` and waits for the reply (async; Zenoh's `get` itself returns at once).
    pub async fn request(&self, request: &[u8]) -> Result<Message> {
        let replies = self
            .querier
            .get()
            .payload(request)
            .await
            .map_err(|e| zerr(format!("get {}", self.key), e))?;
        self.answer(replies.recv_async().await.ok())
    }

    fn answer(&self, reply: Option<zenoh::query::Reply>) -> Result<Message> {
        let Some(reply) = reply else {
            return Err(Error::TimedOut(format!(
                "no reply on {} within {:?}",
                self.key, self.timeout
            )));
        };
        match reply.into_result() {
            Ok(sample) => Ok(Message::copy_from(&sample.payload().to_bytes())),
            Err(e) => Err(Error::PeerGone(format!(
                "the responder on {} failed: {}",
                self.key,
                String::from_utf8_lossy(&e.payload().to_bytes())
            ))),
        }
    }
}

/// Answers queries on a key expression: each [`recv`](Self::recv) gives one [`Request`].
#[derive(Debug)]
pub struct Responder {
    queryable: Queryable<FifoChannelHandler<Query>>,
    key: String,
}

impl Responder {
    /// Declares a queryable on `key` in `session` (queued requests: [`IMPORT_QUEUE`]).
    pub fn new(session: &zenoh::Session, key: &str) -> Result<Responder> {
        let queryable = session
            .declare_queryable(key.to_owned())
            .with(FifoChannel::new(IMPORT_QUEUE))
            .wait()
            .map_err(|e| zerr(format!("queryable {key}"), e))?;
        Ok(Responder {
            queryable,
            key: key.to_owned(),
        })
    }

    /// The next request, waiting on this thread; [`Error::Closed`] when the session closed.
    pub fn recv_blocking(&self) -> Result<Request> {
        self.queryable
            .recv()
            .map(|query| Request { query })
            .map_err(|_| Error::Closed)
    }

    /// The next request, waiting up to `timeout`: `Ok(None)` when none came.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Request>> {
        match self.queryable.recv_timeout(timeout) {
            Ok(q) => Ok(q.map(|query| Request { query })),
            Err(_) => Err(Error::Closed),
        }
    }

    /// The next request (async).
    pub async fn recv(&self) -> Result<Request> {
        self.queryable
            .recv_async()
            .await
            .map(|query| Request { query })
            .map_err(|_| Error::Closed)
    }

    /// The key expression.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// One request received by a [`Responder`]; answer it with [`reply`](Self::reply).
#[derive(Debug)]
pub struct Request {
    query: Query,
}

impl Request {
    /// The request's bytes (empty if it carried none).
    pub fn payload(&self) -> Message {
        match self.query.payload() {
            Some(p) => Message::copy_from(&p.to_bytes()),
            None => Message::copy_from(&[]),
        }
    }

    /// Length of the request's payload, without a copy.
    fn payload_len(&self) -> usize {
        self.query.payload().map_or(0, |p| p.len())
    }

    /// Sends the reply.
    pub fn reply(self, reply: &[u8]) -> Result<()> {
        self.query
            .reply(self.query.key_expr().clone(), reply)
            .wait()
            .map_err(|e| zerr(format!("reply on {}", self.query.key_expr()), e))
    }

    /// Sends an error reply ([`Requester`] returns it as [`Error::PeerGone`] with this text).
    pub fn reply_err(self, why: &str) -> Result<()> {
        self.query
            .reply_err(why)
            .wait()
            .map_err(|e| zerr(format!("reply on {}", self.query.key_expr()), e))
    }
}

/// A [`serve`] running: a thread answers queries with a local endpoint.
#[derive(Debug)]
pub struct Server {
    run: Running,
}

impl Server {
    handle_methods!();
}

/// Answers queries on `key` with the local service behind `endpoint`, on a thread of its own:
/// each request is sent on the endpoint, and the next message the endpoint receives is the
/// reply. Requests are served one at a time, in arrival order.
///
/// `endpoint` is the client side of a local service's endpoint (the service created it and
/// answers each message with one reply). When the service closes, the server stops
/// ([`Ended::LocalClosed`]); when it dies ([`Ended::LocalGone`]) the request in hand gets an
/// error reply. Stats count replies forwarded and requests dropped. A request longer than the
/// endpoint's slots gets an error reply that says so, and the server goes on.
pub fn serve(session: &zenoh::Session, key: &str, endpoint: Endpoint) -> Result<Server> {
    let responder = Responder::new(session, key)?;
    let what = format!("serve {key}");
    let shared = Arc::new(Shared::default());
    let s = shared.clone();
    let run = Running::spawn(what, shared, move || serve_loop(responder, endpoint, &s))?;
    Ok(Server { run })
}

fn serve_loop(responder: Responder, mut endpoint: Endpoint, s: &Shared) -> Result<Ended> {
    loop {
        if s.stop.load(Ordering::Relaxed) {
            return Ok(Ended::Stopped);
        }
        let Some(request) = responder.recv_timeout(TICK)? else {
            continue;
        };
        // The remote sizes its requests, not the endpoint: one that cannot fit a slot gets an
        // error reply and is counted; ending here would let any remote stop the service.
        let len = request.payload_len();
        if len > endpoint.slot_size() {
            s.dropped.fetch_add(1, Ordering::Relaxed);
            let _ = request.reply_err(&format!(
                "a request of {len} bytes is longer than the {} bytes of a slot of endpoint \
                 '{}'",
                endpoint.slot_size(),
                endpoint.label()
            ));
            continue;
        }
        let payload = request.payload();
        let mut msg: &[u8] = &payload;
        let failed = loop {
            match endpoint.send_timeout(msg, TICK) {
                Ok(()) => break None,
                Err(SendTimeoutError::Timeout(m)) if !s.stop.load(Ordering::Relaxed) => msg = m,
                Err(SendTimeoutError::Timeout(_)) => break Some(Ok(Ended::Stopped)),
                Err(SendTimeoutError::Closed(_)) => break Some(Ok(Ended::LocalClosed)),
                Err(SendTimeoutError::Other(_, e)) => break Some(ended_by(*e)),
            }
        };
        let failed = failed.or_else(|| {
            loop {
                match endpoint.recv_timeout(TICK) {
                    Ok(reply) => match request_reply(&request, &reply) {
                        Ok(()) => {
                            s.forwarded.fetch_add(1, Ordering::Relaxed);
                            break None;
                        }
                        Err(e) => break Some(Err(e)),
                    },
                    Err(Error::TimedOut(_)) if !s.stop.load(Ordering::Relaxed) => {}
                    Err(Error::TimedOut(_)) => break Some(Ok(Ended::Stopped)),
                    Err(e) => break Some(ended_by(e)),
                }
            }
        });
        if let Some(ended) = failed {
            s.dropped.fetch_add(1, Ordering::Relaxed);
            let _ = request.reply_err(&format!("the local service is gone ({ended:?})"));
            return ended;
        }
    }
}

fn request_reply(request: &Request, reply: &[u8]) -> Result<()> {
    request
        .query
        .reply(request.query.key_expr().clone(), reply)
        .wait()
        .map_err(|e| zerr(format!("reply on {}", request.query.key_expr()), e))
}

fn ended_by(e: Error) -> Result<Ended> {
    match e {
        Error::Closed => Ok(Ended::LocalClosed),
        Error::PeerGone(_) => Ok(Ended::LocalGone),
        e => Err(e),
    }
}
