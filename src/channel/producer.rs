//! [`Producer`]: the sending side of a channel, in try, blocking and timed forms (async ones
//! are in `asynch.rs`, zero-copy guards in `zero_copy.rs`).
//!
//! May call `core`/`peers` (attach, liveness, close), `wait::blocking`, and the flavour's
//! [`SendSide`](crate::ring::SendSide) in `ring`.

use std::fmt;
use std::time::{Duration, Instant};

use zerocopy::{Immutable, IntoBytes};

use super::core::{self, Core, Side};
use super::options::Options;
use super::zero_copy::{WriteChunk, WriteSlot};
use super::{Flavour, TxOf};
use crate::error::{Error, Result, SendTimeoutError, TrySendError};
use crate::layout::Kind;
use crate::loom::Ordering;
use crate::ring::SendSide;
use crate::segment::Segment;
use crate::wait::blocking;

/// The sending side of a channel. See the [module docs](crate::channel) and the flavour facades
/// ([`crate::spsc`], [`crate::mpsc`], [`crate::mpmc`]).
pub struct Producer<F: Flavour> {
    pub(super) core: Core,
    /// The flavour's algorithm state and the `Sink`'s reservation, which every send path sees.
    pub(super) tx: Sender<TxOf<F>>,
    /// Start of the `Sink`'s current wait (kept across polls).
    pub(super) sink_started: Option<Instant>,
}

/// A producer's sending state: its algorithm, and what the `Sink` holds (DESIGN invariant 12:
/// every send path sees every reservation).
///
/// - `reserved`: a slot `Sink::poll_ready` claimed for the next `start_send`. It is the next
///   position in line, so any other send path (try, blocking, async, `try_reserve`, chunks)
///   that runs before `start_send` *uses it* for its own message rather than claiming past it
///   (which would publish out of order, or overwrite the Vyukov intent that proves the slot
///   ours to a repairer).
/// - `granted`: `poll_ready` said Ready and `start_send` has not come yet. If another path
///   used the reservation meanwhile, `start_send` claims a slot without waiting, or keeps the
///   item in `pending` when the ring is full.
/// - `pending`: an item `start_send` accepted that is not in the ring yet; it goes in before
///   anything sent after it (every path delivers it first), and `poll_flush` / `poll_close`
///   wait until it is in.
#[derive(Debug)]
pub(super) struct Sender<T> {
    pub(super) algo: T,
    pub(super) reserved: Option<u64>,
    pub(super) granted: bool,
    pub(super) pending: Option<Vec<u8>>,
}

impl<F: Flavour> fmt::Debug for Producer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Producer").field(&self.core).finish()
    }
}

impl<F: Flavour> Producer<F> {
    /// Creates the channel `name` and attaches as a producer.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad name or geometry, [`Error::AlreadyExists`] if the
    /// name is taken, [`Error::PermissionDenied`], [`Error::Io`].
    pub fn create(name: &str, opts: Options) -> Result<Self> {
        Self::from_core(Core::create(name, F::KIND, &opts, Side::Producer)?)
    }

    /// Attaches as a producer to the existing channel `name`; the geometry comes from its
    /// header. `opts` supplies the waiting behaviour (its geometry is ignored).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Mismatch`] if the segment is another flavour,
    /// [`Error::Corrupt`], [`Error::TimedOut`] (creator still initialising),
    /// [`Error::InUse`] if the channel is SPSC and a live producer is attached.
    pub fn open(name: &str, opts: Options) -> Result<Self> {
        Self::from_core(Core::open(name, F::KIND, &opts, Side::Producer, false)?)
    }

    /// Opens `name`, or creates it with `opts` if it does not exist. An existing channel must
    /// have the slot size and capacity `opts` asks for.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`open`](Self::open); [`Error::Mismatch`] for another
    /// geometry.
    pub fn open_or_create(name: &str, opts: Options) -> Result<Self> {
        Self::from_core(core::open_or_create(name, F::KIND, &opts, Side::Producer)?)
    }

    fn from_core(mut core: Core) -> Result<Self> {
        // The algorithm checks the shared positions (Corrupt) before the handle counts in.
        let algo = TxOf::<F>::attach(&core.ring)?;
        core.count_in();
        Ok(Producer {
            tx: Sender {
                algo,
                reserved: None,
                granted: false,
                pending: None,
            },
            core,
            sink_started: None,
        })
    }

    common_methods!(Side::Producer);

    /// Claims one slot: its position, or `None` when full. Checks for closed consumers then.
    #[inline]
    fn claim(&mut self) -> Result<Option<u64>> {
        claim_with(&mut self.core, &mut self.tx)
    }

    /// Makes the claimed position `pos` visible with length `len` (at most the slot size),
    /// and wakes sleepers.
    #[inline]
    pub(super) fn commit(&mut self, pos: u64, len: u32) {
        commit_at(&self.core, &mut self.tx.algo, pos, len);
    }

    /// Copies `bytes` (checked against the slot size by the caller) into the claimed `pos`
    /// and commits it.
    #[inline]
    pub(super) fn write_commit(&mut self, pos: u64, bytes: &[u8]) {
        write_commit_at(&self.core, &mut self.tx.algo, pos, bytes);
    }

    /// Gives back the claimed position `pos` unused (a dropped reservation): forgotten
    /// (SPSC) or published as discarded (Vyukov), and sleepers woken as for a commit.
    pub(super) fn discard(&mut self, pos: u64) {
        let ring = &self.core.ring;
        self.tx.algo.discard(ring, pos, self.core.intent());
        self.core.wake_peers();
    }

    #[inline]
    pub(super) fn check_len(&self, len: usize) -> Result<()> {
        if len > self.core.ring.slot_size {
            return Err(Error::InvalidArgument(format!(
                "message of {len} bytes is longer than the {} bytes of a slot of {}",
                self.core.ring.slot_size,
                self.core.describe()
            )));
        }
        Ok(())
    }

    fn try_send_bytes(&mut self, bytes: &[u8]) -> Result<bool> {
        self.check_len(bytes.len())?;
        match self.claim()? {
            None => Ok(false),
            Some(pos) => {
                self.write_commit(pos, bytes);
                Ok(true)
            }
        }
    }

    /// Sends `msg` if a slot is free now.
    ///
    /// # Errors
    ///
    /// The message comes back in [`TrySendError::Full`] when the ring is full,
    /// [`TrySendError::Closed`] when the consumers left, and [`TrySendError::Other`] for a
    /// message longer than a slot ([`Error::InvalidArgument`]), a dead consumer
    /// ([`Error::PeerGone`]) or corrupt shared memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{spsc, Options, TrySendError};
    ///
    /// # fn main() -> shmchan::Result<()> {
    /// # let name = format!("/shmchan-doc-try-send-{}", std::process::id());
    /// let mut tx = spsc::Producer::create(&name, Options::new().capacity(1))?;
    /// tx.try_send(b"one").unwrap();
    /// match tx.try_send(b"two") {
    ///     Err(TrySendError::Full(msg)) => assert_eq!(msg, b"two"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # drop(tx); shmchan::Segment::unlink(&name)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_send<M: AsRef<[u8]>>(&mut self, msg: M) -> Result<(), TrySendError<M>> {
        match self.try_send_bytes(msg.as_ref()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(TrySendError::Full(msg)),
            Err(Error::Closed) => Err(TrySendError::Closed(msg)),
            Err(e) => Err(TrySendError::Other(msg, Box::new(e))),
        }
    }

    /// Sends `msg`, waiting (spin, yield, then park) while the ring is full.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::PeerGone`], [`Error::InvalidArgument`] or
    /// [`Error::Corrupt`]: final, so the message is not given back (as
    /// [`send`](Self::send)).
    pub fn send_blocking<M: AsRef<[u8]>>(&mut self, msg: M) -> Result<()> {
        self.send_until(msg.as_ref(), None).map(|_| ())
    }

    /// Sends `msg`, waiting at most `timeout` while the ring is full.
    ///
    /// # Errors
    ///
    /// The message comes back in [`SendTimeoutError::Timeout`] if the ring stayed full,
    /// [`SendTimeoutError::Closed`], or [`SendTimeoutError::Other`].
    pub fn send_timeout<M: AsRef<[u8]>>(
        &mut self,
        msg: M,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<M>> {
        match self.send_until(msg.as_ref(), Some(crate::deadline_after(timeout))) {
            Ok(true) => Ok(()),
            Ok(false) => Err(SendTimeoutError::Timeout(msg)),
            Err(Error::Closed) => Err(SendTimeoutError::Closed(msg)),
            Err(e) => Err(SendTimeoutError::Other(msg, Box::new(e))),
        }
    }

    fn send_until(&mut self, bytes: &[u8], deadline: Option<Instant>) -> Result<bool> {
        self.check_len(bytes.len())?;
        if self.try_send_bytes(bytes)? {
            return Ok(true);
        }
        let tx = &mut self.tx;
        let pos = blocking::block(&mut self.core, deadline, |core| claim_with(core, tx))?;
        match pos {
            None => Ok(false),
            Some(pos) => {
                self.write_commit(pos, bytes);
                Ok(true)
            }
        }
    }

    /// Sends a plain-old-data value as its bytes (`size_of::<T>()` must fit a slot).
    ///
    /// # Errors
    ///
    /// As [`try_send`](Self::try_send), with the value given back.
    pub fn try_send_value<T: IntoBytes + Immutable>(
        &mut self,
        value: T,
    ) -> Result<(), TrySendError<T>> {
        match self.try_send_bytes(value.as_bytes()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(TrySendError::Full(value)),
            Err(Error::Closed) => Err(TrySendError::Closed(value)),
            Err(e) => Err(TrySendError::Other(value, Box::new(e))),
        }
    }

    /// Sends a plain-old-data value, waiting while the ring is full.
    ///
    /// # Errors
    ///
    /// As [`send_blocking`](Self::send_blocking).
    pub fn send_value_blocking<T: IntoBytes + Immutable>(&mut self, value: T) -> Result<()> {
        self.send_until(value.as_bytes(), None).map(|_| ())
    }

    /// Reserves a slot to write a message in place (zero-copy); `None` when the ring is full.
    /// [`WriteSlot::commit`] sends it; dropping the guard uncommitted sends nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::PeerGone`], [`Error::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{spsc, Options};
    ///
    /// # fn main() -> shmchan::Result<()> {
    /// # let name = format!("/shmchan-doc-reserve-{}", std::process::id());
    /// let mut tx = spsc::Producer::create(&name, Options::new())?;
    /// let mut rx = spsc::Consumer::open(&name, Options::new())?;
    /// let mut slot = tx.try_reserve()?.expect("a free slot");
    /// slot.write(0, b"in place")?;
    /// slot.commit(8)?;
    /// let msg = rx.try_recv_ref()?.expect("a message");
    /// assert_eq!(msg.to_vec(), b"in place");
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_reserve(&mut self) -> Result<Option<WriteSlot<'_, F>>> {
        Ok(self.claim()?.map(|pos| WriteSlot::new(self, pos)))
    }

    /// Reserves a slot, waiting while the ring is full.
    ///
    /// # Errors
    ///
    /// As [`try_reserve`](Self::try_reserve).
    pub fn reserve_blocking(&mut self) -> Result<WriteSlot<'_, F>> {
        let pos = match self.claim()? {
            Some(p) => p,
            None => {
                let tx = &mut self.tx;
                blocking::block(&mut self.core, None, |core| claim_with(core, tx))?
                    .expect("no deadline")
            }
        };
        Ok(WriteSlot::new(self, pos))
    }
}

/// Makes the claimed `pos` visible with length `len`, and wakes sleepers.
#[inline]
fn commit_at<T: SendSide>(core: &Core, algo: &mut T, pos: u64, len: u32) {
    debug_assert!(len as usize <= core.ring.slot_size);
    let ring = &core.ring;
    // Relaxed: published by the Release store of the flavour's publish (tail or seq).
    ring.len(ring.index(pos)).store(len, Ordering::Relaxed);
    algo.publish(ring, pos, core.intent());
    core.wake_peers();
}

/// Most messages a `Sink` stages (written, not yet visible) before it publishes them with one
/// store of `tail` and one wake check, even without `poll_flush`: a quarter of the ring at
/// most, so that the consumer works on the first batch while the next is written.
pub(super) const STAGE_BATCH: u64 = 32;

/// Copies `bytes` (at most a slot) into the claimed `pos` and stages it (SPSC; other rings
/// publish at once): the `Sink`'s `start_send`. Published by the next publish or flush, or
/// here once `STAGE_BATCH` (or a quarter of the ring) are staged.
#[inline]
pub(super) fn write_stage_at<T: SendSide>(core: &Core, algo: &mut T, pos: u64, bytes: &[u8]) {
    debug_assert!(bytes.len() <= core.ring.slot_size);
    let ring = &core.ring;
    ring.write_payload(ring.index(pos), 0, bytes);
    // Relaxed: published by the Release store of the flavour's publish or flush.
    ring.len(ring.index(pos))
        .store(bytes.len() as u32, Ordering::Relaxed);
    // A parked consumer is woken at once (it gains nothing from a batch it sleeps through),
    // except on MPMC: there each wake would reach another parked worker, one per message (the
    // herd); a flushed batch rings one, and the chain spreads it (`mpmc::Tx::stage`).
    if algo.stage(ring, pos, core.intent())
        || ((algo.staged() >= (ring.cap / 4).clamp(1, STAGE_BATCH)
            || (core.kind != Kind::MPMC && core.peer_parked_hint()))
            && algo.flush(ring))
    {
        core.wake_peers();
    }
}

/// Publishes what the `Sink` staged, and wakes sleepers if there was any.
#[inline]
pub(super) fn flush_staged<T: SendSide>(core: &Core, algo: &mut T) {
    if algo.flush(&core.ring) {
        core.wake_peers();
    }
}

/// Copies `bytes` (at most a slot) into the claimed `pos` and commits it.
#[inline]
fn write_commit_at<T: SendSide>(core: &Core, algo: &mut T, pos: u64, bytes: &[u8]) {
    let ring = &core.ring;
    ring.write_payload(ring.index(pos), 0, bytes);
    commit_at(core, algo, pos, bytes.len() as u32);
}

/// Puts the `Sink`'s pending item (if any) into the ring without waiting: whether nothing is
/// pending now.
pub(super) fn deliver_pending<T: SendSide>(core: &mut Core, tx: &mut Sender<T>) -> Result<bool> {
    if tx.pending.is_none() {
        return Ok(true);
    }
    let pos = match tx.reserved.take() {
        Some(pos) => pos,
        None => match raw_claim(core, &mut tx.algo)? {
            Some(pos) => pos,
            None => return Ok(false),
        },
    };
    let item = tx.pending.take().expect("checked above");
    write_commit_at(core, &mut tx.algo, pos, &item);
    Ok(true)
}

/// `Producer::claim` on split borrows (the wait loops hold `&mut Core`): the `Sink`'s
/// reservation if one stands (it is next in line), else a new slot after the `Sink`'s pending
/// item went in.
#[inline]
pub(super) fn claim_with<T: SendSide>(core: &mut Core, tx: &mut Sender<T>) -> Result<Option<u64>> {
    if let Some(pos) = tx.reserved.take() {
        return Ok(Some(pos));
    }
    if tx.pending.is_some() && !deliver_pending(core, tx)? {
        return Ok(None);
    }
    raw_claim(core, &mut tx.algo)
}

/// The algorithm's claim, and the close / liveness checks when the ring is full.
#[inline]
fn raw_claim<T: SendSide>(core: &mut Core, tx: &mut T) -> Result<Option<u64>> {
    // Honest close: a producer learns that every consumer left on its next send, not only
    // once the ring fills (two loads of read-mostly control words while consumers are
    // attached; the participant table only once the counter says none is), and that they
    // died within a liveness interval (the check runs at most once per interval, and reads
    // the clock once every 64 sends or full attempts).
    if core.clock_due() {
        core.check_peers(false)?;
    }
    core.note_progress();
    if let Some(e) = core.closed_error() {
        return Err(e);
    }
    tx.claim(&core.ring, core.intent())
}

impl<F: Flavour> Producer<F> {
    /// Reserves up to `n` consecutive slots at once (rtrb's write chunk): fill them with
    /// [`WriteChunk::write`] and send the first `k` with one [`WriteChunk::commit`]. The
    /// chunk's slots are the next positions in line, so its messages arrive together and in
    /// order (on MPSC and MPMC rings, after everything other producers claimed before it).
    ///
    /// A chunk costs a message a few nanoseconds, a fraction of a [`send`](Self::send) or a
    /// `Sink::feed` (`cargo bench --bench per_message`). On MPSC and MPMC rings it is one
    /// claim (one CAS of the shared tail) for all its slots, held until the commit: keep
    /// chunks short-lived, since consumers read in position order and wait for it. A producer
    /// killed while it holds a chunk loses its unsent slots only: consumers skip them once
    /// the producer is proven dead, as a single unsent claim (see [Close and
    /// death](crate::channel#close-and-death)). A chunk dropped without a commit sends
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once every consumer left (as `try_send`), [`Error::PeerGone`],
    /// [`Error::Corrupt`].
    pub fn try_reserve_many(&mut self, n: usize) -> Result<WriteChunk<'_, F>> {
        match chunk_claim(&mut self.core, &mut self.tx, n, false)? {
            Some((pos, k)) => Ok(WriteChunk::new(self, pos, k)),
            None => Ok(WriteChunk::new(self, 0, 0)),
        }
    }

    /// Reserves exactly `n` consecutive slots, waiting asynchronously until that many are
    /// free (tokio's `Sender::reserve_many`); fill and commit them as with
    /// [`try_reserve_many`](Self::try_reserve_many).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] at once if `n` exceeds the capacity (it could never be
    /// met); [`Error::Closed`], [`Error::PeerGone`], [`Error::Corrupt`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is claimed until the poll that returns the chunk.
    ///
    /// # Examples
    ///
    /// A worker's results, a batch at a time, into an MPSC channel:
    ///
    /// ```
    /// use shmchan::{Options, mpsc};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmchan::Result<()> {
    /// # let name = format!("/shmchan-doc-reserve-many-{}", std::process::id());
    /// let mut rx = mpsc::Consumer::create(&name, Options::new().slot_size(16))?;
    /// let mut tx = mpsc::Producer::open(&name, Options::new())?;
    /// let results = [3u64, 1, 4, 1, 5];
    /// let mut chunk = tx.reserve_many(results.len()).await?;
    /// for (i, r) in results.iter().enumerate() {
    ///     chunk.write(i, &r.to_le_bytes())?;
    /// }
    /// chunk.commit(results.len());
    /// let got = rx.recv_chunk(64).await?;
    /// let mut buf = [0u8; 16];
    /// assert_eq!(got.len(), 5);
    /// assert_eq!(got.read(2, &mut buf)?, 8);
    /// assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), 4);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn reserve_many(&mut self, n: usize) -> Result<WriteChunk<'_, F>> {
        if n > self.capacity() {
            return Err(Error::InvalidArgument(format!(
                "reserve_many({n}) on '{}', whose capacity is {}",
                self.core.name,
                self.capacity()
            )));
        }
        let mut started = None;
        let tx = &mut self.tx;
        let core = &mut self.core;
        let r = std::future::poll_fn(|cx| {
            crate::wait::reactor::poll_op(core, cx, &mut started, |core| {
                chunk_claim(core, tx, n, true)
            })
        })
        .await;
        crate::wait::reactor::retract(&mut self.core);
        let (pos, k) = r?;
        Ok(WriteChunk::new(self, pos, k))
    }
}

/// Claims up to `n` consecutive slots (exactly `n`, or `None`, with `all`): the close
/// and liveness checks of a send first, then the Sink's pending item. A standing `Sink`
/// reservation is the chunk's first slot on SPSC (the unpublished tail); on the Vyukov rings
/// it is given back (published as discarded: the chunk's claim replaces its intent), and the
/// `Sink`'s next `start_send` claims anew.
pub(super) fn chunk_claim<T: SendSide>(
    core: &mut Core,
    tx: &mut Sender<T>,
    n: usize,
    all: bool,
) -> Result<Option<(u64, usize)>> {
    if core.clock_due() {
        core.check_peers(false)?;
    }
    if let Some(e) = core.closed_error() {
        return Err(e);
    }
    if !deliver_pending(core, tx)? {
        return Ok(None);
    }
    if let Some(pos) = tx.reserved.take() {
        if core.kind != Kind::SPSC {
            tx.algo.discard(&core.ring, pos, core.intent());
            core.wake_peers();
        }
    }
    let (pos, k) = tx
        .algo
        .claim_many(&core.ring, core.intent(), n as u64, all)?;
    if k == 0 && n > 0 {
        return Ok(None);
    }
    Ok(Some((pos, k as usize)))
}

impl<F: Flavour> Drop for Producer<F> {
    fn drop(&mut self) {
        // An item the Sink accepted goes in if it fits now (a dropped, unflushed Sink makes
        // no promise beyond that).
        let _ = deliver_pending(&mut self.core, &mut self.tx);
        self.release_sink_reservation();
        flush_staged(&self.core, &mut self.tx.algo);
        self.reclaim_large_at_drop();
        self.core.leave();
    }
}
