//! Beyond one host: shmchan channels bridged through [Zenoh](https://zenoh.io) (feature `zenoh`).
//!
//! shmchan moves messages between processes of one host. When a service grows onto several
//! hosts, the code on both ends keeps its shmchan `Sink`s and `Stream`s, and a bridge carries
//! the messages between the hosts through Zenoh, which routes, discovers and transports them:
//!
//! ```text
//! producer -> shm channel -> export(consumer, session, "svc/orders")
//!                               -> Zenoh (TCP) ->
//!                            import(session, "svc/orders", producer) -> shm channel -> consumer
//! ```
//!
//! - [`export`] drains a local channel's [`Consumer`] and publishes every message on a key
//!   expression, with congestion control `Block`: when Zenoh pushes back, the exporter stops
//!   draining, the local ring fills and the local producer waits.
//! - [`import`] subscribes to a key expression and sends every sample into a local channel's
//!   [`Producer`]; when the local channel is full it stops taking samples from Zenoh (see
//!   *Back-pressure*).
//! - [`RemoteSink`] and [`RemoteStream`] speak Zenoh directly (a publisher as a `Sink` of
//!   bytes, a subscriber as a `Stream` of [`Message`](crate::Message)s), for code that wants no local hop.
//! - [`serve`] answers Zenoh queries on a key with a local [`Endpoint`](crate::endpoint::Endpoint)
//!   (request in, reply out), and [`Requester`] sends requests from anywhere; [`Responder`]
//!   answers them directly.
//! - [`peer_config`] builds a session config with explicit endpoints and scouting off;
//!   [`run`] is what the `shmchan bridge` command runs.
//!
//! Messages are bytes: the bridge carries exactly the bytes of each message, whatever they
//! encode. Typed values travel as their encoded bytes: encode before the local producer (or
//! [`RemoteSink`]) and decode after the local consumer (or [`RemoteStream`]); the bridge never
//! looks inside.
//!
//! # Guarantees across the hop
//!
//! - **Order**: messages of one exporter arrive at an importer in the order the local channel
//!   delivered them (Zenoh's reliable channel over one TCP link, one publisher).
//! - **At most once**: the bridge never resends. A message taken from the local ring is handed
//!   to Zenoh once; if a bridge process, its host or the link dies, what sits in Zenoh's queues,
//!   the TCP buffers or the importer's queue is lost, never duplicated. Each side counts what
//!   it forwarded and what it dropped ([`Stats`]).
//! - **No loss while both ends live**: the exporter does not drain before a remote subscriber
//!   matches its key (messages wait in the local ring meanwhile), and `Block` never drops.
//! - **Death is reported**: a bridge that dies is a dead peer of the local channel it was
//!   attached to, so that side's producer or consumer gets [`Error::PeerGone`] within its
//!   [`Options::liveness_interval`](crate::Options::liveness_interval). The bridge on the other
//!   host sees the remote vanish (Zenoh drops the session's subscriber, publisher and
//!   liveliness token when its TCP link closes, at once for a killed process, after the lease,
//!   10 s by default, for a lost host) and closes its own local channel: that side's producer gets
//!   `Closed` on its next send, its consumer gets `Closed` once it drained what arrived.
//!
//! # Back-pressure
//!
//! The importer takes samples from a bounded queue (capacity [`IMPORT_QUEUE`]) that Zenoh's
//! receive task fills. When the local channel is full, the importer waits on it, the queue fills,
//! and Zenoh's receive task waits on the queue: it stops reading the TCP link, the kernel's
//! flow control stops the sender, the remote publisher's transmit queue fills, and its `put`
//! (congestion control `Block`) waits: the exporter stops draining its ring and the remote local
//! producer waits. Memory stays bounded everywhere. While it waits, that Zenoh session receives
//! nothing else on the link (other keys, queries). Zenoh closes a link whose `Block` sender has
//! waited longer than `transport/link/tx/queue/congestion_control/block/wait_before_close`
//! (5 s by default): a remote consumer that stalls longer than that ends the bridge as a lost
//! remote; raise that value for consumers that may stall.
//!
//! # Example
//!
//! Two sessions in one program (in production, one per host); scouting is off and the sessions
//! meet on a loopback port.
//!
//! ```no_run
//! use shmchan::bridge::{self, zenoh};
//! use shmchan::{Options, mpsc};
//! use zenoh::Wait;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let a = zenoh::open(bridge::peer_config(&["tcp/127.0.0.1:7447"], &[])?).wait()?;
//! let b = zenoh::open(bridge::peer_config(&[], &["tcp/127.0.0.1:7447"])?).wait()?;
//!
//! // Host A: the local service sends into /orders; the bridge drains it to "svc/orders".
//! let mut orders = mpsc::Producer::create("/doc-bridge-orders", Options::new())?;
//! let exporter = bridge::export(
//!     mpsc::Consumer::open("/doc-bridge-orders", Options::new())?, &a, "svc/orders")?;
//!
//! // Host B: what arrives on "svc/orders" goes into /orders-in, read by the local service.
//! let mut inbox = mpsc::Consumer::create("/doc-bridge-orders-in", Options::new())?;
//! let importer = bridge::import(
//!     &b, "svc/orders", mpsc::Producer::open("/doc-bridge-orders-in", Options::new())?)?;
//!
//! orders.send_blocking(b"order 1")?;
//! assert_eq!(&*inbox.recv_blocking()?, b"order 1");
//! drop(orders); // a clean close travels too: the importer closes /orders-in
//! assert!(matches!(inbox.recv_blocking(), Err(shmchan::Error::Closed)));
//! println!("{:?} {:?}", exporter.join()?, importer.join()?);
//! # Ok(())
//! # }
//! ```

macro_rules! handle_methods {
    () => {
        /// What it counted so far.
        pub fn stats(&self) -> Stats {
            self.run.shared.stats()
        }
        /// Whether it has stopped (then [`join`](Self::join) returns at once).
        pub fn is_finished(&self) -> bool {
            self.run.is_finished()
        }
        /// Waits until it stops by itself, and says why; a Zenoh failure or a corrupt local
        /// channel is an error.
        pub fn join(mut self) -> Result<Ended> {
            self.run.join()
        }
        /// Stops it (within a few tens of milliseconds, or once a send that waits on a full
        /// channel gives up) and says why it ended, which is [`Ended::Stopped`] unless it had
        /// ended by itself before. Dropping the handle does the same.
        pub fn stop(mut self) -> Result<Ended> {
            self.run.shared.stop.store(true, Ordering::Relaxed);
            self.run.join()
        }
    };
}

mod cli;
mod query;
mod remote;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub use cli::{BridgeSpec, Outcome, run, split_pair};
pub use query::{DEFAULT_REQUEST_TIMEOUT, Request, Requester, Responder, Server, serve};
pub use remote::{RemoteSink, RemoteStream};
/// The Zenoh crate this module is built on, for its `Session`, `Config` and `Wait`.
pub use zenoh;

use zenoh::Wait;
use zenoh::handlers::FifoChannel;
use zenoh::qos::CongestionControl;
use zenoh::sample::SampleKind;

use crate::channel::{Consumer, Flavour, Producer};
use crate::error::{Error, Result, SendTimeoutError};

/// Samples an importer (and a [`RemoteStream`]) queues between Zenoh's receive task and the
/// local channel; when it is full, Zenoh's receive task waits.
pub const IMPORT_QUEUE: usize = 256;

/// How often a bridge thread that waits checks whether it should stop and whether its peers
/// are alive.
const TICK: Duration = Duration::from_millis(20);

/// The prefix of the liveliness tokens exporters declare (`shmchan/bridge/<zid>/export/<key>`).
const TOKEN_PREFIX: &str = "shmchan/bridge";

/// Maps a Zenoh error to an [`Error::Io`] naming what failed.
pub(crate) fn zerr(what: impl fmt::Display, e: zenoh::Error) -> Error {
    Error::Io(std::io::Error::other(format!("zenoh: {what}: {e}")))
}

/// A Zenoh session config in peer mode that listens on `listen` and connects to `connect`
/// (endpoints such as `tcp/127.0.0.1:7447`) and does no scouting: multicast and gossip
/// discovery are off, so the session talks only to the endpoints given and nothing leaves the
/// interfaces they name.
///
/// ```
/// # #[cfg(feature = "zenoh")]
/// # fn main() -> shmchan::Result<()> {
/// let config = shmchan::bridge::peer_config(&["tcp/127.0.0.1:0"], &[])?;
/// assert_eq!(config.get_json("scouting/multicast/enabled").unwrap(), "false");
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "zenoh"))]
/// # fn main() {}
/// ```
pub fn peer_config(listen: &[&str], connect: &[&str]) -> Result<zenoh::Config> {
    let mut config = zenoh::Config::default();
    let list = |eps: &[&str]| {
        let quoted: Vec<String> = eps.iter().map(|e| format!("{e:?}")).collect();
        format!("[{}]", quoted.join(","))
    };
    let settings = [
        ("mode", "\"peer\"".to_owned()),
        ("listen/endpoints", list(listen)),
        ("connect/endpoints", list(connect)),
        ("scouting/multicast/enabled", "false".to_owned()),
        ("scouting/gossip/enabled", "false".to_owned()),
    ];
    for (key, value) in settings {
        config
            .insert_json5(key, &value)
            .map_err(|e| Error::InvalidArgument(format!("zenoh config {key} = {value}: {e}")))?;
    }
    Ok(config)
}

/// What a bridge counted: messages it handed on, and messages it took but could not hand on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages handed on: published to Zenoh (exporter) or sent into the local channel
    /// (importer).
    pub forwarded: u64,
    /// Messages taken from one side that never reached the other: Zenoh refused the `put`
    /// (exporter), or the local channel closed while samples were still queued, or a sample
    /// was longer than the local channel's slots (importer), or a request longer than the
    /// endpoint's slots, or one the local service stopped answering ([`serve`]).
    pub dropped: u64,
}

/// Why a bridge stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ended {
    /// The local side closed cleanly: every local producer left and everything queued was
    /// forwarded (exporter), or the local consumer left (importer).
    LocalClosed,
    /// The local side's process died ([`Error::PeerGone`] from the local channel).
    LocalGone,
    /// The remote exporter closed cleanly: its local channel ended and it said so.
    RemoteClosed,
    /// The remote side vanished: its subscriber (exporter) or its liveliness token (importer)
    /// went away without a clean close: a killed or stopped bridge, a lost link or host.
    RemoteLost,
    /// [`Exporter::stop`] / [`Importer::stop`] was called (or the handle dropped).
    Stopped,
}

/// Counters and flags a bridge thread shares with its handle.
#[derive(Debug, Default)]
struct Shared {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn stats(&self) -> Stats {
        Stats {
            forwarded: self.forwarded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// A running bridge thread and what it shares.
#[derive(Debug)]
struct Running {
    what: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<Ended>>>,
}

impl Running {
    fn spawn(
        what: String,
        shared: Arc<Shared>,
        body: impl FnOnce() -> Result<Ended> + Send + 'static,
    ) -> Result<Running> {
        let thread = std::thread::Builder::new()
            .name(format!("shmchan-bridge {what}"))
            .spawn(body)
            .map_err(|e| Error::Io(std::io::Error::new(e.kind(), format!("{what}: {e}"))))?;
        Ok(Running {
            what,
            shared,
            thread: Some(thread),
        })
    }

    fn join(&mut self) -> Result<Ended> {
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(Error::Io(std::io::Error::other(format!(
                    "{}: bridge thread panicked",
                    self.what
                ))))
            }),
            None => Ok(Ended::Stopped),
        }
    }

    fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.join();
    }
}

/// An [`export`] running: a thread drains the local channel into Zenoh.
#[derive(Debug)]
pub struct Exporter {
    run: Running,
}

impl Exporter {
    handle_methods!();
}

/// An [`import`] running: a thread sends what arrives from Zenoh into the local channel.
#[derive(Debug)]
pub struct Importer {
    run: Running,
}

impl Importer {
    handle_methods!();
}

/// The key of the liveliness token an exporter of `key` from session `zid` declares.
fn token_key(zid: impl fmt::Display, key: &str) -> String {
    format!("{TOKEN_PREFIX}/{zid}/export/{key}")
}

/// Forwards every message of a local channel to Zenoh key expression `key`, on a thread of its
/// own, until the channel closes, the remote goes away or the handle stops.
///
/// The exporter declares a publisher with congestion control `Block` and a liveliness token
/// importers watch. It drains nothing until a subscriber of `key` matches (messages wait in the
/// local ring meanwhile, and the local producer waits when it is full). When the local channel
/// closes cleanly it forwards what is queued, then publishes a delete on `key` (the clean end an
/// importer turns into `Closed`). When the last matching subscriber goes away it stops
/// draining and drops the consumer, so the local producer gets `Closed`.
///
/// Failures to set up (a bad key expression, a closed session) are errors here; what ends the
/// running bridge is in [`Exporter::join`].
pub fn export<F: Flavour>(
    consumer: Consumer<F>,
    session: &zenoh::Session,
    key: &str,
) -> Result<Exporter> {
    let what = format!("export {} -> {key}", consumer.name());
    let publisher = session
        .declare_publisher(key.to_owned())
        .congestion_control(CongestionControl::Block)
        .wait()
        .map_err(|e| zerr(&what, e))?;
    let token = session
        .liveliness()
        .declare_token(token_key(session.zid(), key))
        .wait()
        .map_err(|e| zerr(&what, e))?;
    // Matching changes arrive on Zenoh's task; the thread waits on this channel for the first
    // match and reads the flag while draining.
    let matched = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel::<bool>();
    let flag = matched.clone();
    let tx = std::sync::Mutex::new(tx);
    let listener = publisher
        .matching_listener()
        .callback(move |status| {
            flag.store(status.matching(), Ordering::Release);
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(status.matching());
            }
        })
        .wait()
        .map_err(|e| zerr(&what, e))?;
    let shared = Arc::new(Shared::default());
    let s = shared.clone();
    let name = what.clone();
    let run = Running::spawn(what, shared, move || {
        let ended = export_loop(consumer, &publisher, &matched, &rx, &s, &name);
        drop(listener);
        drop(token);
        let _ = publisher.undeclare().wait();
        ended
    })?;
    Ok(Exporter { run })
}

fn export_loop<F: Flavour>(
    mut consumer: Consumer<F>,
    publisher: &zenoh::pubsub::Publisher<'static>,
    matched: &AtomicBool,
    events: &std::sync::mpsc::Receiver<bool>,
    s: &Shared,
    what: &str,
) -> Result<Ended> {
    // Wait for a subscriber before draining: a put that matches nobody is lost.
    while !matched.load(Ordering::Acquire) {
        if s.stop.load(Ordering::Relaxed) {
            return Ok(Ended::Stopped);
        }
        let _ = events.recv_timeout(TICK);
    }
    loop {
        if !matched.load(Ordering::Acquire) {
            return Ok(Ended::RemoteLost);
        }
        if s.stop.load(Ordering::Relaxed) {
            return Ok(Ended::Stopped);
        }
        let msg = match consumer.recv_timeout(TICK) {
            Ok(msg) => msg,
            Err(Error::TimedOut(_)) => continue,
            Err(Error::Closed) => {
                // Everything queued was forwarded; tell importers this is a clean end.
                publisher.delete().wait().map_err(|e| zerr(what, e))?;
                return Ok(Ended::LocalClosed);
            }
            Err(Error::PeerGone(_)) => return Ok(Ended::LocalGone),
            Err(e) => return Err(e),
        };
        match publisher.put(&*msg).wait() {
            Ok(()) => s.forwarded.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                s.dropped.fetch_add(1, Ordering::Relaxed);
                return Err(zerr(what, e));
            }
        };
    }
}

/// Delivers every sample that arrives on Zenoh key expression `key` into a local channel, on a
/// thread of its own, until the remote exporter ends, the local channel closes or the handle
/// stops.
///
/// The importer subscribes with a bounded queue of [`IMPORT_QUEUE`] samples and watches the
/// liveliness tokens of the exporters of `key`. When the local channel is full it waits, and so
/// does Zenoh once the queue is full (see the module's *Back-pressure*). A delete on `key` (an
/// exporter's clean end) ends it with [`Ended::RemoteClosed`]; the last exporter's token going
/// away without one ends it with [`Ended::RemoteLost`] once the samples that arrived before are
/// delivered. Either way it drops the producer, so the local consumer drains and gets `Closed`.
/// A sample longer than the local channel's slots is dropped and counted ([`Stats::dropped`]);
/// the importer goes on.
pub fn import<F: Flavour>(
    session: &zenoh::Session,
    key: &str,
    producer: Producer<F>,
) -> Result<Importer> {
    let what = format!("import {key} -> {}", producer.name());
    let exporters = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicBool::new(false));
    let (count, ever) = (exporters.clone(), seen.clone());
    let watch = session
        .liveliness()
        .declare_subscriber(token_key("*", key))
        .history(true)
        .callback(move |sample| match sample.kind() {
            SampleKind::Put => {
                count.fetch_add(1, Ordering::AcqRel);
                ever.store(true, Ordering::Release);
            }
            SampleKind::Delete => {
                // Saturating: a delete never seen as a put does not wrap the count.
                let _ = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    Some(n.saturating_sub(1))
                });
            }
        })
        .wait()
        .map_err(|e| zerr(&what, e))?;
    let subscriber = session
        .declare_subscriber(key.to_owned())
        .with(FifoChannel::new(IMPORT_QUEUE))
        .wait()
        .map_err(|e| zerr(&what, e))?;
    let shared = Arc::new(Shared::default());
    let s = shared.clone();
    let run = Running::spawn(what, shared, move || {
        let remote_gone = || seen.load(Ordering::Acquire) && exporters.load(Ordering::Acquire) == 0;
        let ended = import_loop(producer, &subscriber, &remote_gone, &s);
        // Samples still queued (the local side is gone, or we were stopped) are lost.
        let left = subscriber.drain().count() as u64;
        s.dropped.fetch_add(left, Ordering::Relaxed);
        drop(watch);
        let _ = subscriber.undeclare().wait();
        ended
    })?;
    Ok(Importer { run })
}

fn import_loop<F: Flavour>(
    mut producer: Producer<F>,
    subscriber: &zenoh::pubsub::Subscriber<
        zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>,
    >,
    remote_gone: &dyn Fn() -> bool,
    s: &Shared,
) -> Result<Ended> {
    loop {
        if s.stop.load(Ordering::Relaxed) {
            return Ok(Ended::Stopped);
        }
        // Check before waiting: samples that arrived before the token went away are delivered
        // (they were queued ahead of the token's removal on the same link).
        let gone = remote_gone();
        let sample = match subscriber.recv_timeout(TICK) {
            Ok(Some(sample)) => sample,
            Ok(None) if gone => return Ok(Ended::RemoteLost),
            Ok(None) => {
                if producer.is_closed() {
                    return Ok(Ended::LocalClosed);
                }
                continue;
            }
            // Every sender dropped: the session closed.
            Err(_) => return Ok(Ended::RemoteLost),
        };
        if sample.kind() == SampleKind::Delete {
            return Ok(Ended::RemoteClosed);
        }
        let bytes = sample.payload().to_bytes();
        if bytes.len() > producer.slot_size() {
            // The remote publisher sizes its samples, not the local channel: one that cannot
            // fit a slot is dropped (and counted); ending here would let any remote close the
            // local channel with one sample.
            s.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut msg: &[u8] = &bytes;
        loop {
            match producer.send_timeout(msg, TICK) {
                Ok(()) => {
                    s.forwarded.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(SendTimeoutError::Timeout(m)) if !s.stop.load(Ordering::Relaxed) => msg = m,
                Err(SendTimeoutError::Timeout(_)) => {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(Ended::Stopped);
                }
                Err(SendTimeoutError::Closed(_)) => {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(Ended::LocalClosed);
                }
                Err(SendTimeoutError::Other(_, e)) => {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    return match *e {
                        Error::PeerGone(_) => Ok(Ended::LocalGone),
                        e => Err(e),
                    };
                }
            }
        }
    }
}
