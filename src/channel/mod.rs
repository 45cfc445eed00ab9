//! Public producer and consumer handles, shared by the three flavours.
//!
//! [`Producer<F>`] and [`Consumer<F>`] are generic over a flavour marker ([`Spsc`], [`Mpsc`],
//! [`Mpmc`]); the facades [`crate::spsc`], [`crate::mpsc`] and [`crate::mpmc`] name them. The
//! algorithms are chosen by the flavour at compile time ([`Flavour`] names its producer and
//! consumer algorithm types); everything else (options, messages, waiting, close and death
//! handling, zero-copy guards) is written once here.
//!
//! # Close and death
//!
//! - Dropping a producer releases its participant record. When no producer is left (and one
//!   had attached), consumers drain what is queued and then get [`Error::Closed`](crate::Error::Closed)
//!   ([`TryRecvError::Closed`](crate::TryRecvError::Closed)). The same holds the other way round for producers sending to a
//!   channel whose consumers all left: [`TrySendError::Closed`](crate::TrySendError::Closed).
//! - A participant killed at any instruction never hangs the others: blocked calls wake at
//!   least every [`Options::liveness_interval`] and check the processes behind the participant
//!   table (pid and start time). When every peer is gone and at least one died, the call
//!   returns [`Error::PeerGone`](crate::Error::PeerGone) once the ring is drained.
//! - What a dead producer can lose: only the message (or the [chunk](WriteChunk)) it had
//!   claimed but not yet committed. In an MPSC or MPMC ring its claimed slots are released as
//!   *abandoned* (consumers skip them and count them in [`Consumer::abandoned`]) once the
//!   producer is proven dead, a chunk's together; a live producer's slot is never skipped.
//!   Everything committed is delivered.
//! - What a dead consumer can cause: a message (or each message of a [chunk](ReadChunk)) it
//!   had claimed but not released is delivered again to another consumer (SPSC and MPSC: the
//!   next consumer to attach; MPMC: a live consumer adopts it, a chunk's one message at a
//!   time), so a consumer that died after acting on a message may make it be seen twice. MPMC
//!   redelivery can reorder that message after later ones.

//!
//! # Where things live
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | these docs, [`Flavour`] and its markers |
//! | `options.rs` | [`Options`], [`Unlink`] |
//! | `message.rs` | [`Message`] |
//! | `core.rs` | what a handle holds: attach (create / open / memfd), its record, leave |
//! | `wake.rs` | its wait sets and wake-ups, the CPU word and fenced mode, the `Park` / `AsyncPark` implementations |
//! | `peers.rs` | liveness checks, close detection, repair of dead producers' slots, adoption of dead consumers' messages, release of dead records |
//! | `producer.rs`, `consumer.rs` | the public handles and their try / blocking / timed calls |
//! | `zero_copy.rs` | [`WriteSlot`], [`WriteChunk`], [`ReadSlot`], [`ReadChunk`] |
//! | `chunks.rs` | receiving in chunks: `try_recv_many`, `recv_chunk` per flavour |
//! | `asynch.rs` | futures, `Sink`, `Stream` |
//!
//! A send runs `producer.rs` (claim) -> `ring` (the flavour's `SendSide`) ->
//! `producer.rs` (copy, commit) -> `wait` (wake a sleeper, if announced); when full it waits in
//! `wait::blocking` or `wait::reactor`, which call back only the attempt and the liveness check
//! (`peers.rs`). A receive is the mirror image through `consumer.rs`. This module may call
//! `wait`, `ring`, `layout`, `segment` and `sys`; nothing above it.

/// Methods shared by both sides.
macro_rules! common_methods {
    ($side:expr) => {
        /// Lays out a new channel in `seg` (a fresh memfd) and attaches to it.
        #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
        pub(crate) fn create_in(seg: Segment, name: &str, opts: &Options) -> Result<Self> {
            Self::from_core(Core::create_in(seg, name, F::KIND, opts, $side)?)
        }

        /// Attaches to the channel in `seg` (a memfd from a peer).
        #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
        pub(crate) fn open_in(seg: Segment, name: &str, opts: &Options) -> Result<Self> {
            Self::from_core(Core::open_in(seg, name, F::KIND, opts, $side)?)
        }

        /// The channel's segment (for passing a memfd's descriptor).
        #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
        pub(crate) fn segment(&self) -> &Segment {
            self.core.layout.segment()
        }

        /// Keeps `thing` open for as long as this handle lives.
        #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
        pub(crate) fn keep_alive(
            &mut self,
            thing: std::sync::Arc<dyn std::any::Any + Send + Sync>,
        ) {
            self.core.keepalive = Some(thing);
        }

        /// What [`keep_alive`](Self::keep_alive) keeps open, if anything.
        #[allow(dead_code)] // used by the endpoint tests, on the producer half only
        pub(crate) fn kept_alive(
            &self,
        ) -> Option<&std::sync::Arc<dyn std::any::Any + Send + Sync>> {
            self.core.keepalive.as_ref()
        }

        /// Makes errors name the endpoint `endpoint` and the peer as `peer` ("the server",
        /// "the client", "side A", "side B") instead of this ring.
        pub(crate) fn set_endpoint(&mut self, endpoint: &str, peer: &'static str) {
            self.core.owner = Some((endpoint.to_owned(), peer));
        }

        /// The channel as errors name it: `endpoint '/usersvc'` or `mpsc channel '/orders'`.
        #[cfg_attr(not(feature = "serde"), allow(dead_code))]
        pub(crate) fn describe(&self) -> String {
            self.core.describe()
        }

        /// The channel's name.
        pub fn name(&self) -> &str {
            &self.core.name
        }
        /// Async waiters' doorbells this handle has rung (a diagnostic for tests: a
        /// publish rings one waiter, not every one).
        #[doc(hidden)]
        pub fn doorbells_rung(&self) -> u64 {
            self.core.bells.rung()
        }
        /// What this handle's waits did so far ([`WaitStats`](crate::WaitStats)): how
        /// many operations waited, how often they handed the CPU to the OS, how many
        /// parked.
        pub fn wait_stats(&self) -> crate::WaitStats {
            self.core.learned.stats()
        }
        /// Largest message in bytes.
        pub fn slot_size(&self) -> usize {
            self.core.ring.slot_size
        }
        /// Number of slots.
        pub fn capacity(&self) -> usize {
            self.core.ring.cap as usize
        }
        /// Messages queued now (a snapshot).
        pub fn pending(&self) -> usize {
            self.core.pending() as usize
        }
        /// Free slots now (a snapshot).
        pub fn available(&self) -> usize {
            self.capacity() - self.pending()
        }
        /// Whether nothing is queued now.
        pub fn is_empty(&self) -> bool {
            self.pending() == 0
        }
        /// Whether every slot is taken now.
        pub fn is_full(&self) -> bool {
            self.pending() == self.capacity()
        }
        /// Whether this handle created the channel.
        pub fn is_creator(&self) -> bool {
            self.core.created
        }
        /// Whether the other side is gone now: every peer that attached has left or was found
        /// dead (a snapshot, read from shared memory without a system call; a death is seen
        /// once a liveness check noticed it). A peer that attaches later opens the channel
        /// again.
        pub fn is_closed(&self) -> bool {
            self.core.peers_closed()
        }
    };
}

mod asynch;
mod chunks;
mod consumer;
mod core;
mod large;
mod message;
mod options;
mod peers;
mod producer;
mod wake;
mod zero_copy;

#[cfg(all(test, feature = "tokio"))]
mod fault_tests;

pub use asynch::{ClosedFuture, RecvFuture, SendFuture};
pub use consumer::{Consumer, RecvIntoFuture};
pub use large::{
    InlineMessage, LARGE_HEADER, LARGE_MIN_SLOT, LargeMessage, LargeSink, TrustedMessage,
};
pub use message::{INLINE_MESSAGE, Message};
pub use options::{Lifetime, Options, Stale, Unlink};
pub use producer::Producer;
pub use zero_copy::{ReadChunk, ReadSlot, ReserveFuture, WriteChunk, WriteSlot};

#[cfg_attr(not(feature = "tokio"), allow(unused_imports))]
pub(crate) use consumer::spsc_segment_len;

use crate::layout::Kind;
use crate::ring::{mpmc, mpsc, spsc};

mod sealed {
    pub trait Sealed {
        /// The producer algorithm and its process-local state.
        type Tx: crate::ring::SendSide;
        /// The consumer algorithm and its process-local state.
        type Rx: crate::ring::RecvSide;
    }
}

/// A channel flavour: how many producers and consumers it admits, and (sealed, crate-private)
/// which ring algorithms serve each side. Implemented by [`Spsc`], [`Mpsc`] and [`Mpmc`] only.
pub trait Flavour: sealed::Sealed + Send + Sync + Unpin + 'static {
    /// The kind recorded in the segment header.
    const KIND: Kind;
    /// `"spsc"`, `"mpsc"` or `"mpmc"`.
    const NAME: &'static str;
}

/// Single producer, single consumer: a Lamport ring.
#[derive(Debug, Clone, Copy)]
pub struct Spsc;
/// Many producers, one consumer: Vyukov producers, a consumer without CAS.
#[derive(Debug, Clone, Copy)]
pub struct Mpsc;
/// Many producers, many consumers: Vyukov's ring.
#[derive(Debug, Clone, Copy)]
pub struct Mpmc;

impl sealed::Sealed for Spsc {
    type Tx = spsc::Tx;
    type Rx = spsc::Rx;
}
impl sealed::Sealed for Mpsc {
    type Tx = mpmc::Tx;
    type Rx = mpsc::Rx;
}
impl sealed::Sealed for Mpmc {
    type Tx = mpmc::Tx;
    type Rx = mpmc::Rx;
}
impl Flavour for Spsc {
    const KIND: Kind = Kind::SPSC;
    const NAME: &'static str = "spsc";
}
impl Flavour for Mpsc {
    const KIND: Kind = Kind::MPSC;
    const NAME: &'static str = "mpsc";
}
impl Flavour for Mpmc {
    const KIND: Kind = Kind::MPMC;
    const NAME: &'static str = "mpmc";
}

/// The producer algorithm of flavour `F`.
type TxOf<F> = <F as sealed::Sealed>::Tx;
/// The consumer algorithm of flavour `F`.
type RxOf<F> = <F as sealed::Sealed>::Rx;
