//! Public producer and consumer handles, shared by the three flavours.
//!
//! [`Producer<F>`] and [`Consumer<F>`] are generic over a flavour marker ([`Spsc`], [`Mpsc`],
//! [`Mpmc`]); the facades [`crate::spsc`], [`crate::mpsc`] and [`crate::mpmc`] name them. The
//! algorithm is chosen by the flavour; everything else (options, messages, waiting, close and
//! death handling, zero-copy guards) is written once here.
//!
//! # Close and death
//!
//! - Dropping a producer releases its participant record. When no producer is left (and one
//!   had attached), consumers drain what is queued and then get [`Error::Closed`]
//!   ([`TryRecvError::Closed`]). The same holds the other way round for producers sending to a
//!   channel whose consumers all left: [`TrySendError::Closed`].
//! - A participant killed at any instruction never hangs the others: blocked calls wake at
//!   least every [`Options::liveness_interval`] and check the processes behind the participant
//!   table (pid and start time). When every peer is gone and at least one died, the call
//!   returns [`Error::PeerGone`] once the ring is drained.
//! - What a dead producer can lose: only the message it had claimed but not yet committed. In
//!   an MPSC or MPMC ring its claimed slot is released as *abandoned* (consumers skip it and
//!   count it in [`Consumer::abandoned`]) once the producer is proven dead; a live producer's
//!   slot is never skipped. Everything committed is delivered.
//! - What a dead consumer can cause: a message it had claimed but not released is delivered
//!   again to another consumer (SPSC and MPSC: the next consumer to attach; MPMC: a live
//!   consumer adopts it), so a consumer that died after acting on a message may make it be
//!   seen twice. MPMC redelivery can reorder that message after later ones.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering as StdOrdering};
use std::time::{Duration, Instant};

use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::error::{Error, Result, SendTimeoutError, TryRecvError, TrySendError};
use crate::layout::{self, Kind, Layout, LayoutSpec, Registration, Role};
use crate::loom::Ordering;
use crate::ring::{self, ABANDONED, Geometry, Ring, mpmc, mpsc, spsc};
use crate::segment::{Mode, Segment, SegmentOptions};
use crate::sys::doorbell::Ringer;
use crate::wait::{PARK_DOORBELL, PARK_FUTEX, Phase, Sleepers, WaitStrategy};

mod asynch;
pub use asynch::{RecvFuture, SendFuture};

mod error;
pub use error::SendError;

/// Length marker of a reserved slot dropped without commit (MPSC/MPMC): skipped, not counted.
const DISCARDED: u32 = u32::MAX - 1;

/// Record aux word holding the "parked" announcement (see [`crate::wait`]).
const AUX_PARKED: usize = 0;
/// Record aux word holding the doorbell token of a handle that parks in a reactor.
const AUX_TOKEN: usize = 1;

mod sealed {
    pub trait Sealed {}
}

/// A channel flavour: how many producers and consumers it admits. Implemented by [`Spsc`],
/// [`Mpsc`] and [`Mpmc`] only.
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

impl sealed::Sealed for Spsc {}
impl sealed::Sealed for Mpsc {}
impl sealed::Sealed for Mpmc {}
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

/// When the channel's name is removed from `/dev/shm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unlink {
    /// The last participant to leave cleanly removes the name if nothing is queued (default):
    /// a producer that leaves messages behind keeps them for a consumer that comes later.
    #[default]
    LastOut,
    /// The handle that created the channel removes the name when it is dropped; processes
    /// attached by then keep working.
    Creator,
    /// Never: remove it with [`crate::Segment::unlink`].
    Never,
}

/// Channel options: geometry for creators, and waiting behaviour for every handle.
#[derive(Debug, Clone)]
pub struct Options {
    slot_size: usize,
    capacity: usize,
    wait: WaitStrategy,
    liveness_interval: Duration,
    init_timeout: Duration,
    permissions: u32,
    max_participants: u32,
    unlink: Unlink,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            slot_size: 1472,
            capacity: 144,
            wait: WaitStrategy::default(),
            liveness_interval: Duration::from_millis(100),
            init_timeout: layout::DEFAULT_INIT_TIMEOUT,
            permissions: 0o600,
            max_participants: 64,
            unlink: Unlink::LastOut,
        }
    }
}

impl Options {
    /// Defaults: slot size 1472 bytes, capacity 144 slots (the reference framework's), default
    /// [`WaitStrategy`], liveness interval 100 ms, permissions 0600, 64 participants for
    /// MPSC/MPMC, [`Unlink::LastOut`].
    pub fn new() -> Self {
        Self::default()
    }
    /// Largest message in bytes (a creator's setting; attachers read it from the header).
    pub fn slot_size(mut self, n: usize) -> Self {
        self.slot_size = n;
        self
    }
    /// Number of slots (a creator's setting). MPSC and MPMC channels need at least 2.
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }
    /// Spin / yield / park budget of blocking and async waits.
    pub fn wait_strategy(mut self, w: WaitStrategy) -> Self {
        self.wait = w;
        self
    }
    /// How often a blocked call checks that its peers' processes still live; a dead peer is
    /// reported within about this time. Default 100 ms.
    pub fn liveness_interval(mut self, d: Duration) -> Self {
        self.liveness_interval = d.max(Duration::from_millis(1));
        self
    }
    /// How long `open` waits for a creator that is still initialising. Default 2 s.
    pub fn init_timeout(mut self, d: Duration) -> Self {
        self.init_timeout = d;
        self
    }
    /// Permission bits of a created segment (default 0o600).
    pub fn permissions(mut self, mode: u32) -> Self {
        self.permissions = mode & 0o777;
        self
    }
    /// Participant records of an MPSC/MPMC channel: how many producers and consumers can be
    /// attached at once (default 64; SPSC channels always have 2).
    pub fn max_participants(mut self, n: u32) -> Self {
        self.max_participants = n.clamp(2, layout::MAX_PARTICIPANTS);
        self
    }
    /// When the name is removed (default [`Unlink::LastOut`]).
    pub fn unlink(mut self, u: Unlink) -> Self {
        self.unlink = u;
        self
    }
}

/// Messages up to this many bytes are kept inside [`Message`], without a heap allocation.
pub const INLINE_MESSAGE: usize = 64;

/// A received message: the bytes, copied out of the slot. Derefs to `[u8]`. Messages of up to
/// [`INLINE_MESSAGE`] bytes are stored inline (no allocation per receive).
#[derive(Clone)]
pub struct Message {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        bytes: [u8; INLINE_MESSAGE],
    },
    Heap(Vec<u8>),
}

impl Message {
    /// A message holding a copy of `bytes`.
    pub fn copy_from(bytes: &[u8]) -> Message {
        let mut m = Message::with_len(bytes.len());
        m.bytes_mut().copy_from_slice(bytes);
        m
    }

    /// A zeroed message of `len` bytes, to copy a slot into.
    fn with_len(len: usize) -> Message {
        let repr = if len <= INLINE_MESSAGE {
            Repr::Inline {
                len: len as u8,
                bytes: [0; INLINE_MESSAGE],
            }
        } else {
            Repr::Heap(vec![0; len])
        };
        Message { repr }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.repr {
            Repr::Inline { len, bytes } => &mut bytes[..*len as usize],
            Repr::Heap(v) => v,
        }
    }

    /// The bytes, as an owned vector.
    pub fn into_vec(self) -> Vec<u8> {
        match self.repr {
            Repr::Inline { len, bytes } => bytes[..len as usize].to_vec(),
            Repr::Heap(v) => v,
        }
    }
}

impl Default for Message {
    fn default() -> Self {
        Message::with_len(0)
    }
}

impl std::ops::Deref for Message {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.repr {
            Repr::Inline { len, bytes } => &bytes[..*len as usize],
            Repr::Heap(v) => v,
        }
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        **self == **other
    }
}

impl Eq for Message {}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Message({} bytes)", self.len())
    }
}

/// Which side a handle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Producer,
    Consumer,
}

/// Everything a handle holds besides its algorithm state.
struct Core {
    /// Must outlive `ring` (which points into it): declared after it, dropped after it.
    ring: Ring,
    layout: Layout,
    reg: Option<Registration>,
    side: Side,
    kind: Kind,
    created: bool,
    name: String,
    wait: WaitStrategy,
    liveness_interval: Duration,
    unlink: Unlink,
    last_check: Instant,
    /// Last look for slots pinned by dead parties (repair, adoption); separate from
    /// `last_check`, which every park refreshes.
    last_repair: Instant,
    /// Empty / full attempts since the clock was last read for the checks above: the hot
    /// paths read it once every `CHECK_EVERY` attempts, not on every spin.
    idle_polls: u32,
    /// Peers seen dead and reclaimed while no live peer remained: report PeerGone once drained.
    peer_died: bool,
    abandoned: u64,
    /// Socket to ring peers' doorbells, made on first use (`None`: could not be made).
    ringer: std::sync::OnceLock<Option<Ringer>>,
    /// Doorbell and pid watches of a handle used from async code, made on first park.
    aw: Option<asynch::AsyncWait>,
    /// Whether an async announcement may be standing in our record.
    async_parked: bool,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("side", &self.side)
            .field("slot_size", &self.ring.slot_size)
            .field("capacity", &self.ring.cap)
            .finish()
    }
}

/// Records a flavour reserves for each side.
fn records(kind: Kind, max: u32, side: Side) -> std::ops::Range<u32> {
    match (kind, side) {
        (Kind::SPSC, Side::Producer) => 0..1,
        (Kind::SPSC, Side::Consumer) => 1..2,
        (Kind::MPSC, Side::Consumer) => 0..1,
        (Kind::MPSC, Side::Producer) => 1..max,
        _ => 0..max,
    }
}

fn role(side: Side) -> Role {
    match side {
        Side::Producer => Role::PRODUCER,
        Side::Consumer => Role::CONSUMER,
    }
}

impl Core {
    /// Bytes a segment needs for a channel of `kind` with `opts`.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn segment_len(kind: Kind, opts: &Options) -> Result<usize> {
        Core::spec(kind, opts)?.1.total_len()
    }

    /// The geometry and layout spec `opts` asks for.
    fn spec(kind: Kind, opts: &Options) -> Result<(Geometry, LayoutSpec)> {
        let g = Geometry {
            slot_size: opts.slot_size,
            capacity: opts.capacity,
        };
        g.check()?;
        if kind != Kind::SPSC && g.capacity < 2 {
            return Err(Error::InvalidArgument(format!(
                "capacity {} for an {} channel: Vyukov's ring needs at least 2 slots (a slot's \
                 'holds message p' and 'free for p + capacity' states coincide with 1)",
                g.capacity,
                kind_name(kind)
            )));
        }
        let participants = if kind == Kind::SPSC {
            2
        } else {
            opts.max_participants
        };
        let spec = LayoutSpec {
            kind,
            geometry: g.to_words(),
            participants,
            data_len: g.region_len(),
        };
        Ok((g, spec))
    }

    fn create(name: &str, kind: Kind, opts: &Options, side: Side) -> Result<Core> {
        let (_, spec) = Core::spec(kind, opts)?;
        let seg = SegmentOptions::new()
            .permissions(opts.permissions)
            .create(name, spec.total_len()?)?;
        Core::create_in(seg, name, kind, opts, side).inspect_err(|_| {
            let _ = Segment::unlink(name);
        })
    }

    /// Lays out a channel in a segment this process just created (named or memfd) and
    /// attaches to it.
    pub(crate) fn create_in(
        seg: Segment,
        name: &str,
        kind: Kind,
        opts: &Options,
        side: Side,
    ) -> Result<Core> {
        let (g, spec) = Core::spec(kind, opts)?;
        if seg.len() < spec.total_len()? {
            return Err(Error::InvalidArgument(format!(
                "{} is {} bytes, the channel needs {}",
                seg.describe(),
                seg.len(),
                spec.total_len()?
            )));
        }
        let data_off = layout::HEADER_LEN + spec.participants as usize * layout::RECORD_LEN;
        let base = seg.as_mut_ptr()?;
        // SAFETY: the segment is ours alone (just created, header not ready), read-write, and
        // `data_off + region_len == total <= len` (checked above); data_off is a multiple of
        // 128 and the mapping page-aligned.
        let ring = unsafe { Ring::new(base.add(data_off), g) };
        // The header is published (READY) by Layout::init only after the ring is laid out.
        ring::init_sequences(&ring);
        let layout = Layout::init(seg, &spec)?;
        debug_assert_eq!(layout.data_offset(), data_off);
        Core::finish(layout, ring, name, kind, opts, side, true)
    }

    fn open(name: &str, kind: Kind, opts: &Options, side: Side) -> Result<Core> {
        let layout = Layout::open(name, kind, Mode::ReadWrite, opts.init_timeout)?;
        Core::attach(layout, name, kind, opts, side)
    }

    /// Attaches to a channel in a segment received from a peer (a memfd).
    pub(crate) fn open_in(
        seg: Segment,
        name: &str,
        kind: Kind,
        opts: &Options,
        side: Side,
    ) -> Result<Core> {
        let layout = Layout::attach(seg, kind, opts.init_timeout)?;
        Core::attach(layout, name, kind, opts, side)
    }

    fn attach(layout: Layout, name: &str, kind: Kind, opts: &Options, side: Side) -> Result<Core> {
        let what = format!("{} channel '{name}'", kind_name(kind));
        let g = Geometry::from_words(layout.geometry(), layout.data_len(), &what)?;
        if kind != Kind::SPSC && g.capacity < 2 {
            return Err(Error::Corrupt(format!(
                "{what}: capacity {} below 2",
                g.capacity
            )));
        }
        let base = layout.segment().as_mut_ptr()?;
        // SAFETY: Layout validated data_offset + data_len <= mapped length and from_words that
        // region_len <= data_len; data_offset is 128-aligned by construction (validated:
        // HEADER_LEN + cap * RECORD_LEN); the mapping is read-write and lives in `layout`.
        let ring = unsafe { Ring::new(base.add(layout.data_offset()), g) };
        Core::finish(layout, ring, name, kind, opts, side, false)
    }

    fn finish(
        layout: Layout,
        ring: Ring,
        name: &str,
        kind: Kind,
        opts: &Options,
        side: Side,
        created: bool,
    ) -> Result<Core> {
        let mut core = Core {
            ring,
            layout,
            reg: None,
            side,
            kind,
            created,
            name: name.to_owned(),
            wait: opts.wait,
            liveness_interval: opts.liveness_interval,
            unlink: opts.unlink,
            last_check: Instant::now(),
            last_repair: Instant::now(),
            idle_polls: 0,
            peer_died: false,
            abandoned: 0,
            ringer: std::sync::OnceLock::new(),
            aw: None,
            async_parked: false,
        };
        let range = records(kind, core.layout.participant_capacity(), side);
        let claimed = match core.layout.claim_any(range.clone(), role(side)) {
            Ok(r) => Ok(r),
            Err(Error::InUse(_)) => {
                // Dead holders may await repair: repair what we can, then try once more.
                core.reclaim_dead(side)?;
                core.layout.claim_any(range, role(side))
            }
            Err(e) => Err(e),
        };
        let reg = match claimed {
            Ok(r) => r,
            Err(Error::InUse(m)) => {
                let single = kind == Kind::SPSC || (kind == Kind::MPSC && side == Side::Consumer);
                return Err(Error::InUse(if single {
                    format!(
                        "{} channel '{name}' already has a live {}: {m}",
                        kind_name(kind),
                        side_name(side)
                    )
                } else {
                    m
                }));
            }
            Err(e) => return Err(e),
        };
        core.reg = Some(reg);
        let (flag, counter) = match side {
            Side::Producer => (ring::FLAG_PRODUCER_SEEN, ring::OFF_PRODUCERS),
            Side::Consumer => (ring::FLAG_CONSUMER_SEEN, ring::OFF_CONSUMERS),
        };
        core.ring.word32(counter).fetch_add(1, Ordering::AcqRel);
        core.ring
            .word32(ring::OFF_FLAGS)
            .fetch_or(flag, Ordering::AcqRel);
        Ok(core)
    }

    fn reg(&self) -> Registration {
        self.reg.expect("registered while the handle lives")
    }

    fn intent(&self) -> &StdAtomicU64 {
        self.layout
            .intent_word(self.reg().index())
            .expect("channels map read-write")
    }

    #[inline]
    fn sleepers(&self, side: Side) -> Sleepers<'_> {
        let (f, c) = match side {
            Side::Consumer => (ring::OFF_CONS_FUTEX, ring::OFF_CONS_SLEEPERS),
            Side::Producer => (ring::OFF_PROD_FUTEX, ring::OFF_PROD_SLEEPERS),
        };
        Sleepers {
            futex: self.ring.word32(f),
            count: self.ring.word32(c),
        }
    }

    #[inline]
    fn peer_side(&self) -> Side {
        match self.side {
            Side::Producer => Side::Consumer,
            Side::Consumer => Side::Producer,
        }
    }

    /// Our record's parked word.
    fn parked_word(&self) -> &StdAtomicU64 {
        self.layout
            .aux_word(self.reg().index(), AUX_PARKED)
            .expect("channels map read-write")
    }

    /// Wakes parked peers after publishing (producer) or freeing (consumer): a fence and one
    /// load unless somebody is parked.
    #[inline]
    fn wake_peers(&self) {
        let side = self.peer_side();
        if self.sleepers(side).anyone() {
            self.ring_side(side);
        }
    }

    /// Takes every parked announcement of `side` and rings it: doorbells one by one, futex
    /// sleepers with one bump and wake.
    fn ring_side(&self, side: Side) {
        let sl = self.sleepers(side);
        let mut futex = false;
        // In MPMC both sides share the records: take only announcements of `side`'s role, or
        // a waker would take (and uncount) the other side's and leave its count wrong.
        let shared = self.kind == Kind::MPMC;
        let want = role(side);
        for i in records(self.kind, self.layout.participant_capacity(), side) {
            let Ok(word) = self.layout.aux_word(i, AUX_PARKED) else {
                return;
            };
            if word.load(StdOrdering::Relaxed) == 0 {
                continue;
            }
            if shared && !self.layout.participant(i).is_some_and(|p| p.role == want) {
                continue;
            }
            match sl.take(word) {
                Some(PARK_DOORBELL) => {
                    let token = self
                        .layout
                        .aux_word(i, AUX_TOKEN)
                        .map(|t| t.load(StdOrdering::Acquire))
                        .unwrap_or(0);
                    if let Some(r) = self.ringer.get_or_init(|| Ringer::new().ok()) {
                        r.ring(token);
                    }
                }
                Some(_) => futex = true,
                None => {}
            }
        }
        if futex {
            sl.wake_futex();
        }
    }

    /// Wakes everybody parked on either side (close, repair).
    fn wake_everyone(&self) {
        for side in [Side::Consumer, Side::Producer] {
            self.ring_side(side);
            self.sleepers(side).wake_futex();
        }
    }

    /// Cheap check on an empty (full) ring: are peers of the other side gone? Uses the
    /// clean-close counter as a hint and the participant table as the truth; never reads
    /// `/proc`.
    fn peers_closed(&self) -> bool {
        let (flag, counter) = match self.peer_side() {
            Side::Producer => (ring::FLAG_PRODUCER_SEEN, ring::OFF_PRODUCERS),
            Side::Consumer => (ring::FLAG_CONSUMER_SEEN, ring::OFF_CONSUMERS),
        };
        // Acquire: pairs with the AcqRel updates in finish/drop; a peer's last publish happens
        // before its counter decrement.
        if self.ring.word32(ring::OFF_FLAGS).load(Ordering::Acquire) & flag == 0 {
            return false;
        }
        if self.ring.word32(counter).load(Ordering::Acquire) != 0 {
            return false;
        }
        let range = records(
            self.kind,
            self.layout.participant_capacity(),
            self.peer_side(),
        );
        let want = role(self.peer_side());
        !range
            .into_iter()
            .any(|i| self.layout.participant(i).is_some_and(|p| p.role == want))
    }

    /// Whether a hot path (an empty or full attempt) should look at the clock now: once every
    /// `CHECK_EVERY` calls, so spinning on an empty ring does not read the clock each time.
    /// The park path checks liveness after every park regardless.
    #[inline]
    fn clock_due(&mut self) -> bool {
        const CHECK_EVERY: u32 = 64;
        self.idle_polls = self.idle_polls.wrapping_add(1);
        self.idle_polls % CHECK_EVERY == 0
    }

    /// When every peer of the other side is gone: `PeerGone` if one died, else `Closed`.
    fn closed_error(&self) -> Option<Error> {
        if !self.peers_closed() {
            return None;
        }
        Some(if self.peer_died {
            Error::PeerGone(format!(
                "every {} of '{}' is gone and at least one died",
                side_name(self.peer_side()),
                self.name
            ))
        } else {
            Error::Closed
        })
    }

    /// The liveness check, at most once per interval unless `force`: reclaims dead peers'
    /// records (after repairing what they pinned) and notes whether any died. Returns whether
    /// a dead peer was found.
    fn check_peers(&mut self, force: bool) -> Result<bool> {
        if !force && self.last_check.elapsed() < self.liveness_interval {
            return Ok(false);
        }
        self.last_check = Instant::now();
        let peer = self.peer_side();
        let mut found = self.reclaim_dead(peer)?;
        // In MPMC our own side's dead members pin slots too (consumers adopt their messages).
        if self.kind == Kind::MPMC {
            found |= self.reclaim_dead(self.side)? && self.side == Side::Producer;
        }
        if found {
            self.peer_died = true;
        }
        Ok(found)
    }

    /// Reclaims the records of dead participants of `side`, repairing slots they pinned.
    /// Returns whether any dead one was found.
    fn reclaim_dead(&mut self, side: Side) -> Result<bool> {
        let range = records(self.kind, self.layout.participant_capacity(), side);
        let want = role(side);
        let mut found = false;
        for i in range {
            if Some(i) == self.reg.map(|r| r.index()) {
                continue;
            }
            let Some(p) = self.layout.participant(i) else {
                continue;
            };
            if p.role != want || p.is_alive() {
                continue;
            }
            found = true;
            let intent = self.layout.intent(i);
            if intent != 0 && self.kind != Kind::SPSC {
                let pinned = mpmc::intent_pins_slot(&self.ring, intent, side == Side::Producer);
                if pinned {
                    // A dead producer's claimed slot: handled by the consumer that meets it
                    // (repair_stuck); a dead consumer's: adopted by a live MPMC consumer
                    // (adopt). Leave the record until then.
                    continue;
                }
                // Stale intent (the claim failed or was completed): clear it.
                let _ = self.layout.intent_word(i)?.compare_exchange(
                    intent,
                    0,
                    StdOrdering::AcqRel,
                    StdOrdering::Relaxed,
                );
            }
            self.release_dead_record(i, side)?;
        }
        Ok(found)
    }

    /// Frees a dead participant's record (its intent is clear), fixing the counters it held.
    fn release_dead_record(&self, index: u32, side: Side) -> Result<()> {
        // Take a parked announcement the dead party left, so the count stays exact (the claim
        // below zeroes the record's aux words).
        self.sleepers(side)
            .take(self.layout.aux_word(index, AUX_PARKED)?);
        // Take the record over briefly through a claim (which checks death and clear intent
        // again, race-free through the owner CAS), then release it.
        let reg = match self.layout.claim(index, role(side)) {
            Ok(r) => r,
            Err(Error::InUse(_)) => return Ok(()), // someone else got there, or it is alive
            Err(e) => return Err(e),
        };
        let counter = match side {
            Side::Producer => ring::OFF_PRODUCERS,
            Side::Consumer => ring::OFF_CONSUMERS,
        };
        let _ = self
            .ring
            .word32(counter)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.layout.release(reg);
        Ok(())
    }

    /// A consumer found the slot at `pos` claimed but unpublished. If no live producer holds
    /// the position, release it as abandoned. Returns whether it is now readable.
    fn repair_stuck(&mut self, pos: u64) -> Result<bool> {
        let range = records(
            self.kind,
            self.layout.participant_capacity(),
            Side::Producer,
        );
        let mut holders_alive = false;
        for i in range {
            if self.layout.intent(i) != pos.wrapping_add(1) {
                continue;
            }
            if let Some(p) = self.layout.participant(i) {
                if p.is_alive() {
                    holders_alive = true;
                }
            }
        }
        if holders_alive {
            return Ok(false);
        }
        // Acquire re-check of the whole condition: still stuck at pos?
        if mpmc::blocked_at(&self.ring, pos) != mpmc::Blocked::Unpublished(pos) {
            return Ok(true);
        }
        mpmc::repair_unpublished(&self.ring, pos);
        self.peer_died = true;
        self.wake_everyone();
        Ok(true)
    }

    /// Wait loop shared by every blocking and timed call: `attempt` is tried, then spun,
    /// yielded and parked on per the wait strategy, with liveness checks, until it gives a
    /// value or `deadline` passes (`Ok(None)`).
    fn block<R>(
        &mut self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(&mut Core) -> Result<Option<R>>,
    ) -> Result<Option<R>> {
        let start = Instant::now();
        let mut n: u32 = 0;
        loop {
            if let Some(r) = attempt(self)? {
                return Ok(Some(r));
            }
            let now = if n % 32 == 0 { Instant::now() } else { start };
            if let Some(d) = deadline {
                if now >= d {
                    return Ok(None);
                }
            }
            n = n.wrapping_add(1);
            match self.wait.phase(now.saturating_duration_since(start)) {
                Phase::Spin => std::hint::spin_loop(),
                Phase::Yield => std::thread::yield_now(),
                Phase::Park => {
                    let now = Instant::now();
                    let mut timeout = self.liveness_interval;
                    if let Some(d) = deadline {
                        timeout = timeout.min(d.saturating_duration_since(now));
                    }
                    let seq = self
                        .sleepers(self.side)
                        .announce(self.parked_word(), PARK_FUTEX);
                    let r = attempt(self);
                    if !matches!(r, Ok(None)) {
                        self.sleepers(self.side).retract(self.parked_word());
                        return r;
                    }
                    self.sleepers(self.side).sleep(seq, timeout);
                    self.sleepers(self.side).retract(self.parked_word());
                    // Parking is where dead peers are looked for; the attempt after a park also
                    // runs the clock-gated checks (repair, adoption) at once.
                    self.check_peers(false)?;
                    self.idle_polls = u32::MAX;
                }
            }
        }
    }

    /// Leaves the channel cleanly: counters, record, wake the other side, unlink per policy.
    fn leave(&mut self) {
        if self.reg.is_none() {
            return;
        }
        self.sleepers(self.side).retract(self.parked_word());
        let reg = self.reg.take().expect("checked above");
        let counter = match self.side {
            Side::Producer => ring::OFF_PRODUCERS,
            Side::Consumer => ring::OFF_CONSUMERS,
        };
        // AcqRel: our publishes happen before a peer's Acquire read of the counter.
        let _ = self
            .ring
            .word32(counter)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.layout.release(reg);
        self.wake_everyone();
        let unlink = match self.unlink {
            Unlink::Never => false,
            Unlink::Creator => self.created,
            Unlink::LastOut => {
                let tail = self.ring.tail().load(Ordering::Acquire);
                let head = self.ring.head().load(Ordering::Acquire);
                tail == head && self.layout.live_participants(None).is_empty()
            }
        };
        if unlink {
            self.unlink_if_ours();
        }
    }

    fn unlink_if_ours(&self) {
        if self.layout.segment().name().is_none() {
            return; // memfd: nothing to unlink
        }
        // Only while the name still refers to our segment (another may have replaced it).
        if let Ok(other) = crate::Segment::open(&self.name, Mode::ReadOnly) {
            if same_object(&other, self.layout.segment()) {
                let _ = crate::Segment::unlink(&self.name);
            }
        }
    }

    fn pending(&self) -> u64 {
        let tail = self.ring.tail().load(Ordering::Acquire);
        let head = self.ring.head().load(Ordering::Acquire);
        tail.saturating_sub(head).min(self.ring.cap)
    }
}

fn same_object(a: &crate::Segment, b: &crate::Segment) -> bool {
    use std::os::fd::AsFd;
    match (rustix::fs::fstat(a.as_fd()), rustix::fs::fstat(b.as_fd())) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => false,
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::SPSC => "spsc",
        Kind::MPSC => "mpsc",
        Kind::MPMC => "mpmc",
        _ => "unknown",
    }
}

fn side_name(s: Side) -> &'static str {
    match s {
        Side::Producer => "producer",
        Side::Consumer => "consumer",
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.leave();
    }
}

/// The producer algorithm state.
#[derive(Debug)]
enum TxAlgo {
    Spsc(spsc::Tx),
    Vyukov,
}

/// The consumer algorithm state.
#[derive(Debug)]
enum RxAlgo {
    Spsc(spsc::Rx),
    Mpsc(mpsc::Rx),
    Mpmc,
}

/// The sending side of a channel. See the [module docs](self) and the flavour facades
/// ([`crate::spsc`], [`crate::mpsc`], [`crate::mpmc`]).
pub struct Producer<F: Flavour> {
    core: Core,
    algo: TxAlgo,
    /// Slot reserved by `Sink::poll_ready`, filled by `start_send`.
    sink_reserved: Option<u64>,
    sink_started: Option<Instant>,
    _f: PhantomData<F>,
}

/// The receiving side of a channel.
pub struct Consumer<F: Flavour> {
    core: Core,
    algo: RxAlgo,
    stream_started: Option<Instant>,
    terminated: bool,
    _f: PhantomData<F>,
}

impl<F: Flavour> fmt::Debug for Producer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Producer").field(&self.core).finish()
    }
}

impl<F: Flavour> fmt::Debug for Consumer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Consumer").field(&self.core).finish()
    }
}

/// Methods shared by both sides.
macro_rules! common_methods {
    () => {
        /// The channel's name.
        pub fn name(&self) -> &str {
            &self.core.name
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
    };
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
        Self::from_core(Core::open(name, F::KIND, &opts, Side::Producer)?)
    }

    /// Opens `name`, or creates it with `opts` if it does not exist. An existing channel must
    /// have the slot size and capacity `opts` asks for.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`open`](Self::open); [`Error::Mismatch`] for another
    /// geometry.
    pub fn open_or_create(name: &str, opts: Options) -> Result<Self> {
        Self::from_core(open_or_create(name, F::KIND, &opts, Side::Producer)?)
    }

    /// Lays out a new channel in `seg` (a fresh memfd) and attaches as its producer.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn create_in(seg: Segment, name: &str, opts: &Options) -> Result<Self> {
        Self::from_core(Core::create_in(seg, name, F::KIND, opts, Side::Producer)?)
    }

    /// Attaches as producer to the channel in `seg` (a memfd from a peer).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn open_in(seg: Segment, name: &str, opts: &Options) -> Result<Self> {
        Self::from_core(Core::open_in(seg, name, F::KIND, opts, Side::Producer)?)
    }

    /// The channel's segment (for passing a memfd's descriptor).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn segment(&self) -> &Segment {
        self.core.layout.segment()
    }

    fn from_core(core: Core) -> Result<Self> {
        let algo = if core.kind == Kind::SPSC {
            TxAlgo::Spsc(spsc::Tx::attach(&core.ring)?)
        } else {
            TxAlgo::Vyukov
        };
        Ok(Producer {
            core,
            algo,
            sink_reserved: None,
            sink_started: None,
            _f: PhantomData,
        })
    }

    common_methods!();

    /// Claims one slot: its position, or `None` when full. Checks for closed consumers then.
    #[inline]
    fn claim(&mut self) -> Result<Option<u64>> {
        claim_with(&mut self.core, &mut self.algo)
    }

    /// Makes the claimed position `pos` visible with length `len`, and wakes sleepers.
    #[inline]
    fn commit(&mut self, pos: u64, len: u32) {
        let ring = &self.core.ring;
        // Relaxed: published by the Release store in publish / publish_send.
        ring.len(ring.index(pos)).store(len, Ordering::Relaxed);
        match &mut self.algo {
            TxAlgo::Spsc(tx) => tx.publish(ring, 1),
            TxAlgo::Vyukov => mpmc::publish_send(ring, pos, self.core.intent()),
        }
        self.core.wake_peers();
    }

    #[inline]
    fn check_len(&self, len: usize) -> Result<()> {
        if len > self.core.ring.slot_size {
            return Err(Error::InvalidArgument(format!(
                "message of {len} bytes is longer than the {} bytes of a slot of '{}'",
                self.core.ring.slot_size, self.core.name
            )));
        }
        Ok(())
    }

    fn try_send_bytes(&mut self, bytes: &[u8]) -> Result<bool> {
        self.check_len(bytes.len())?;
        match self.claim()? {
            None => Ok(false),
            Some(pos) => {
                self.core
                    .ring
                    .write_payload(self.core.ring.index(pos), 0, bytes);
                self.commit(pos, bytes.len() as u32);
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
    /// The message comes back in a [`SendError`] with [`Error::Closed`],
    /// [`Error::PeerGone`], [`Error::InvalidArgument`] or [`Error::Corrupt`].
    pub fn send_blocking<M: AsRef<[u8]>>(&mut self, msg: M) -> Result<(), SendError<M>> {
        match self.send_until(msg.as_ref(), None) {
            Ok(_) => Ok(()),
            Err(e) => Err(SendError::new(msg, e)),
        }
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
        match self.send_until(msg.as_ref(), Some(Instant::now() + timeout)) {
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
        let pos = self.core.block(deadline, |core| {
            // Re-borrow the algorithm through a raw split: claim needs core + algo.
            claim_with(core, &mut self.algo)
        })?;
        match pos {
            None => Ok(false),
            Some(pos) => {
                self.core
                    .ring
                    .write_payload(self.core.ring.index(pos), 0, bytes);
                self.commit(pos, bytes.len() as u32);
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
    pub fn send_value_blocking<T: IntoBytes + Immutable>(
        &mut self,
        value: T,
    ) -> Result<(), SendError<T>> {
        match self.send_until(value.as_bytes(), None) {
            Ok(_) => Ok(()),
            Err(e) => Err(SendError::new(value, e)),
        }
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
        Ok(self.claim()?.map(|pos| WriteSlot {
            producer: self,
            pos,
            done: false,
        }))
    }

    /// Reserves a slot, waiting while the ring is full.
    ///
    /// # Errors
    ///
    /// As [`try_reserve`](Self::try_reserve).
    pub fn reserve_blocking(&mut self) -> Result<WriteSlot<'_, F>> {
        let pos = match self.claim()? {
            Some(p) => p,
            None => self
                .core
                .block(None, |core| claim_with(core, &mut self.algo))?
                .expect("no deadline"),
        };
        Ok(WriteSlot {
            producer: self,
            pos,
            done: false,
        })
    }
}

/// `Producer::claim` on split borrows (the wait loop holds `&mut Core`).
#[inline]
fn claim_with(core: &mut Core, algo: &mut TxAlgo) -> Result<Option<u64>> {
    let got = match algo {
        TxAlgo::Spsc(tx) => {
            let (pos, n) = tx.claim(&core.ring, 1)?;
            (n == 1).then_some(pos)
        }
        TxAlgo::Vyukov => mpmc::claim_send(&core.ring, core.intent())?,
    };
    if got.is_none() {
        if core.clock_due() {
            core.check_peers(false)?;
        }
        if let Some(e) = core.closed_error() {
            return Err(e);
        }
    }
    Ok(got)
}

impl Producer<Spsc> {
    /// Reserves up to `n` consecutive slots at once (rtrb's write chunk): fill them with
    /// [`WriteChunk::write`] and send the first `k` with one [`WriteChunk::commit`]. Only SPSC
    /// rings offer chunks: claiming several slots at once in the multi-producer ring would need
    /// range intents for crash repair.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`].
    pub fn try_reserve_many(&mut self, n: usize) -> Result<WriteChunk<'_>> {
        let TxAlgo::Spsc(tx) = &mut self.algo else {
            unreachable!("an SPSC producer has SPSC state")
        };
        let (pos, k) = tx.claim(&self.core.ring, n as u64)?;
        Ok(WriteChunk {
            producer: self,
            pos,
            len: k as usize,
            lens: vec![0; k as usize],
        })
    }
}

impl<F: Flavour> Drop for Producer<F> {
    fn drop(&mut self) {
        self.release_sink_reservation();
        self.core.leave();
    }
}

/// A slot reserved in place; see [`Producer::try_reserve`]. Holds no reference to the shared
/// bytes: write with [`write`](Self::write) or through [`as_mut_ptr`](Self::as_mut_ptr).
pub struct WriteSlot<'a, F: Flavour> {
    producer: &'a mut Producer<F>,
    pos: u64,
    done: bool,
}

impl<F: Flavour> fmt::Debug for WriteSlot<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteSlot")
            .field("position", &self.pos)
            .finish()
    }
}

impl<F: Flavour> WriteSlot<'_, F> {
    /// Bytes the slot can hold.
    pub fn capacity(&self) -> usize {
        self.producer.core.ring.slot_size
    }

    /// Copies `data` into the slot at byte `at`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if it does not fit.
    pub fn write(&mut self, at: usize, data: &[u8]) -> Result<()> {
        match at.checked_add(data.len()) {
            Some(end) if end <= self.capacity() => {}
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{} bytes at {at} do not fit a slot of {}",
                    data.len(),
                    self.capacity()
                )));
            }
        }
        let ring = &self.producer.core.ring;
        ring.write_payload(ring.index(self.pos), at, data);
        Ok(())
    }

    /// Pointer to the slot's `capacity()` bytes, for writing in place. A peer may write them
    /// too if it is buggy or hostile: write through the pointer, never make a `&mut [u8]` of
    /// it.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        let ring = &self.producer.core.ring;
        ring.payload(ring.index(self.pos))
    }

    /// Sends the first `len` bytes of the slot.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `len > capacity()` (the slot is then discarded).
    pub fn commit(mut self, len: usize) -> Result<()> {
        self.done = true;
        if len > self.capacity() {
            self.discard();
            return Err(Error::InvalidArgument(format!(
                "commit of {len} bytes in a slot of {}",
                self.capacity()
            )));
        }
        self.producer.commit(self.pos, len as u32);
        Ok(())
    }

    fn discard(&mut self) {
        // SPSC: nothing was published; the claim is simply forgotten. Vyukov: the position is
        // claimed in shared memory, so publish it as discarded (consumers skip it).
        if matches!(self.producer.algo, TxAlgo::Vyukov) {
            self.producer.commit(self.pos, DISCARDED);
        }
    }
}

impl<F: Flavour> Drop for WriteSlot<'_, F> {
    fn drop(&mut self) {
        if !self.done {
            self.discard();
        }
    }
}

/// Several consecutive slots reserved at once on an SPSC ring; see
/// [`Producer::try_reserve_many`].
pub struct WriteChunk<'a> {
    producer: &'a mut Producer<Spsc>,
    pos: u64,
    len: usize,
    lens: Vec<u32>,
}

impl fmt::Debug for WriteChunk<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteChunk")
            .field("position", &self.pos)
            .field("len", &self.len)
            .finish()
    }
}

impl WriteChunk<'_> {
    /// Slots in the chunk (at most the `n` asked for; 0 when the ring was full).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the chunk has no slot.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `msg` into slot `i` of the chunk.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `i` is out of the chunk or `msg` longer than a slot.
    pub fn write(&mut self, i: usize, msg: &[u8]) -> Result<()> {
        if i >= self.len {
            return Err(Error::InvalidArgument(format!(
                "slot {i} of a chunk of {}",
                self.len
            )));
        }
        self.producer.check_len(msg.len())?;
        let ring = &self.producer.core.ring;
        ring.write_payload(ring.index(self.pos.wrapping_add(i as u64)), 0, msg);
        self.lens[i] = msg.len() as u32;
        Ok(())
    }

    /// Sends the first `k` slots with one release store (and at most one wake-up).
    ///
    /// # Panics
    ///
    /// If `k > len()`.
    pub fn commit(self, k: usize) {
        assert!(
            k <= self.len,
            "commit of {k} slots in a chunk of {}",
            self.len
        );
        let ring = &self.producer.core.ring;
        for i in 0..k {
            ring.len(ring.index(self.pos.wrapping_add(i as u64)))
                .store(self.lens[i], Ordering::Relaxed);
        }
        let TxAlgo::Spsc(tx) = &mut self.producer.algo else {
            unreachable!()
        };
        tx.publish(ring, k as u64);
        self.producer.core.wake_peers();
    }
}

impl<F: Flavour> Consumer<F> {
    /// Creates the channel `name` and attaches as a consumer.
    ///
    /// # Errors
    ///
    /// As [`Producer::create`].
    pub fn create(name: &str, opts: Options) -> Result<Self> {
        Self::from_core(Core::create(name, F::KIND, &opts, Side::Consumer)?)
    }

    /// Attaches as a consumer to the existing channel `name`.
    ///
    /// # Errors
    ///
    /// As [`Producer::open`]; [`Error::InUse`] if the channel is SPSC or MPSC and a live
    /// consumer is attached.
    pub fn open(name: &str, opts: Options) -> Result<Self> {
        Self::from_core(Core::open(name, F::KIND, &opts, Side::Consumer)?)
    }

    /// Opens `name`, or creates it with `opts`.
    ///
    /// # Errors
    ///
    /// As [`Producer::open_or_create`].
    pub fn open_or_create(name: &str, opts: Options) -> Result<Self> {
        Self::from_core(open_or_create(name, F::KIND, &opts, Side::Consumer)?)
    }

    /// Lays out a new channel in `seg` (a fresh memfd) and attaches as its consumer.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn create_in(seg: Segment, name: &str, opts: &Options) -> Result<Self> {
        Self::from_core(Core::create_in(seg, name, F::KIND, opts, Side::Consumer)?)
    }

    /// Attaches as consumer to the channel in `seg` (a memfd from a peer).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn open_in(seg: Segment, name: &str, opts: &Options) -> Result<Self> {
        Self::from_core(Core::open_in(seg, name, F::KIND, opts, Side::Consumer)?)
    }

    /// The channel's segment.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn segment(&self) -> &Segment {
        self.core.layout.segment()
    }

    /// Whether a producer is attached now (a snapshot).
    pub(crate) fn has_producer(&self) -> bool {
        !self.core.peers_closed()
            && !self
                .core
                .layout
                .live_participants(Some(Role::PRODUCER))
                .is_empty()
    }

    fn from_core(core: Core) -> Result<Self> {
        let algo = match core.kind {
            Kind::SPSC => RxAlgo::Spsc(spsc::Rx::attach(&core.ring)?),
            Kind::MPSC => RxAlgo::Mpsc(mpsc::Rx::attach(&core.ring)?),
            _ => RxAlgo::Mpmc,
        };
        Ok(Consumer {
            core,
            algo,
            stream_started: None,
            terminated: false,
            _f: PhantomData,
        })
    }

    common_methods!();

    /// Messages skipped because their producer died after claiming a slot and before
    /// committing it (MPSC and MPMC only).
    pub fn abandoned(&self) -> u64 {
        self.core.abandoned
    }

    /// Tries to take one message: `Ok(Some((pos, len)))` for a readable slot held by us (to be
    /// released after reading), `Ok(None)` when nothing is ready, errors for closed / gone.
    #[inline]
    fn take(core: &mut Core, algo: &mut RxAlgo) -> Result<Option<(u64, usize)>> {
        loop {
            let pos = match algo {
                RxAlgo::Spsc(rx) => {
                    let (pos, n) = rx.peek(&core.ring, 1)?;
                    (n == 1).then_some(pos)
                }
                RxAlgo::Mpsc(rx) => rx.peek(&core.ring)?,
                RxAlgo::Mpmc => mpmc::claim_recv(&core.ring, core.intent())?,
            };
            let Some(pos) = pos else {
                return Self::nothing_ready(core, algo);
            };
            let raw = core.ring.len(core.ring.index(pos)).load(Ordering::Relaxed);
            if raw == ABANDONED || raw == DISCARDED {
                if raw == ABANDONED {
                    core.abandoned += 1;
                }
                Self::release_pos(core, algo, pos);
                continue;
            }
            let len = match ring::checked_len(raw, core.ring.slot_size, pos) {
                Ok(n) => n,
                Err(e) => {
                    // Do not leave a claimed MPMC slot pinned by a live record forever.
                    Self::release_pos(core, algo, pos);
                    return Err(e);
                }
            };
            return Ok(Some((pos, len)));
        }
    }

    /// Nothing readable at the head: decide between empty, closed, gone, or repairable.
    fn nothing_ready(core: &mut Core, algo: &mut RxAlgo) -> Result<Option<(u64, usize)>> {
        let head = match algo {
            RxAlgo::Spsc(_) => None,
            RxAlgo::Mpsc(rx) => Some(rx.position()),
            RxAlgo::Mpmc => Some(core.ring.head().load(Ordering::Acquire)),
        };
        if let Some(head) = head {
            if let mpmc::Blocked::Unpublished(pos) = mpmc::blocked_at(&core.ring, head) {
                // A producer claimed `pos` and has not published: fine while it lives. Check
                // at the liveness interval whether the claimer died.
                if core.clock_due() && core.last_repair.elapsed() >= core.liveness_interval {
                    core.last_repair = Instant::now();
                    core.repair_stuck(pos)?;
                }
                return Ok(None);
            }
        }
        let due = core.clock_due();
        if due && core.kind == Kind::MPMC && core.last_repair.elapsed() >= core.liveness_interval {
            core.last_repair = Instant::now();
            // Adopt messages of dead consumers before concluding anything.
            if let Some(found) = Self::adopt(core)? {
                return Ok(Some(found));
            }
        }
        if due {
            core.check_peers(false)?;
        }
        if core.pending() != 0 {
            return Ok(None); // drain first (a concurrent consumer may hold the rest)
        }
        match core.closed_error() {
            Some(e) => {
                // Report a death once; the stream then ends like a clean close.
                core.peer_died = false;
                Err(e)
            }
            None => Ok(None),
        }
    }

    /// MPMC: takes over a message a dead consumer claimed and never freed.
    fn adopt(core: &mut Core) -> Result<Option<(u64, usize)>> {
        let range = records(
            core.kind,
            core.layout.participant_capacity(),
            Side::Consumer,
        );
        let me = core.reg().index();
        for i in range {
            if i == me {
                continue;
            }
            let intent = core.layout.intent(i);
            if intent == 0 || !mpmc::intent_pins_slot(&core.ring, intent, false) {
                continue;
            }
            let Some(p) = core.layout.participant(i) else {
                continue;
            };
            if p.role != Role::CONSUMER || p.is_alive() {
                continue;
            }
            // Our intent first, so that if we die now our record pins the slot in turn.
            core.intent().store(intent, StdOrdering::SeqCst);
            if core
                .layout
                .intent_word(i)?
                .compare_exchange(intent, 0, StdOrdering::AcqRel, StdOrdering::Relaxed)
                .is_err()
            {
                core.intent().store(0, StdOrdering::Release);
                continue;
            }
            let pos = intent - 1;
            let raw = core.ring.len(core.ring.index(pos)).load(Ordering::Acquire);
            if raw == ABANDONED || raw == DISCARDED {
                mpmc::release_recv(&core.ring, pos, core.intent());
                continue;
            }
            let len = match ring::checked_len(raw, core.ring.slot_size, pos) {
                Ok(n) => n,
                Err(e) => {
                    mpmc::release_recv(&core.ring, pos, core.intent());
                    return Err(e);
                }
            };
            core.peer_died = false;
            return Ok(Some((pos, len)));
        }
        Ok(None)
    }

    #[inline]
    fn release_pos(core: &mut Core, algo: &mut RxAlgo, pos: u64) {
        match algo {
            RxAlgo::Spsc(rx) => rx.release(&core.ring, 1),
            RxAlgo::Mpsc(rx) => rx.release(&core.ring, pos),
            RxAlgo::Mpmc => mpmc::release_recv(&core.ring, pos, core.intent()),
        }
        core.wake_peers();
    }

    fn read_message(&mut self, pos: u64, len: usize) -> Message {
        // `len <= slot_size` (checked_len in `take`); the slot is ours until release_pos.
        let idx = self.core.ring.index(pos);
        let msg = if len <= INLINE_MESSAGE {
            let mut msg = Message::with_len(len);
            self.core.ring.read_payload(idx, 0, msg.bytes_mut());
            msg
        } else {
            let mut bytes = Vec::with_capacity(len);
            let src = self.core.ring.payload(idx);
            // SAFETY: the slot holds at least `len <= slot_size` bytes; the vector has
            // capacity `len`, and its first `len` bytes are initialised by the copy before
            // `set_len` (no zeroing first: large messages would pay for it twice).
            unsafe {
                std::ptr::copy_nonoverlapping(src, bytes.as_mut_ptr(), len);
                bytes.set_len(len);
            }
            Message {
                repr: Repr::Heap(bytes),
            }
        };
        Self::release_pos(&mut self.core, &mut self.algo, pos);
        msg
    }

    /// Takes a message if one is queued now.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when nothing is queued, [`TryRecvError::Closed`] when the
    /// producers left and everything was received, [`TryRecvError::Other`] with
    /// [`Error::PeerGone`] or [`Error::Corrupt`].
    pub fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        match Self::take(&mut self.core, &mut self.algo)? {
            Some((pos, len)) => Ok(self.read_message(pos, len)),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Takes a message, waiting (spin, yield, park) while the ring is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the producers left and everything was received,
    /// [`Error::PeerGone`], [`Error::Corrupt`].
    pub fn recv_blocking(&mut self) -> Result<Message> {
        let (pos, len) = self.take_until(None)?.expect("no deadline");
        Ok(self.read_message(pos, len))
    }

    /// Takes a message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`] if nothing came, else as [`recv_blocking`](Self::recv_blocking).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message> {
        match self.take_until(Some(Instant::now() + timeout))? {
            Some((pos, len)) => Ok(self.read_message(pos, len)),
            None => Err(Error::TimedOut(format!(
                "no message on '{}' within {timeout:?}",
                self.core.name
            ))),
        }
    }

    fn take_until(&mut self, deadline: Option<Instant>) -> Result<Option<(u64, usize)>> {
        if let Some(found) = Self::take(&mut self.core, &mut self.algo)? {
            return Ok(Some(found));
        }
        let algo = &mut self.algo;
        self.core.block(deadline, |core| Self::take(core, algo))
    }

    /// Takes a plain-old-data value sent with [`Producer::try_send_value`].
    ///
    /// # Errors
    ///
    /// As [`try_recv`](Self::try_recv); a message of another size than `T` is
    /// [`Error::Mismatch`] (the message is consumed).
    pub fn try_recv_value<T: FromBytes>(&mut self) -> Result<T, TryRecvError> {
        let msg = self.try_recv()?;
        value_from(&msg, &self.core.name).map_err(TryRecvError::Other)
    }

    /// Takes a plain-old-data value, waiting while the ring is empty.
    ///
    /// # Errors
    ///
    /// As [`recv_blocking`](Self::recv_blocking) and [`try_recv_value`](Self::try_recv_value).
    pub fn recv_value_blocking<T: FromBytes>(&mut self) -> Result<T> {
        let msg = self.recv_blocking()?;
        value_from(&msg, &self.core.name)
    }

    /// Borrows the next message in place (zero-copy) if one is queued; the slot is freed when
    /// the guard is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], [`Error::PeerGone`], [`Error::Corrupt`].
    pub fn try_recv_ref(&mut self) -> Result<Option<ReadSlot<'_, F>>> {
        Ok(
            Self::take(&mut self.core, &mut self.algo)?.map(|(pos, len)| ReadSlot {
                consumer: self,
                pos,
                len,
            }),
        )
    }

    /// Borrows the next message in place, waiting while the ring is empty.
    ///
    /// # Errors
    ///
    /// As [`recv_blocking`](Self::recv_blocking).
    pub fn recv_ref_blocking(&mut self) -> Result<ReadSlot<'_, F>> {
        let (pos, len) = self.take_until(None)?.expect("no deadline");
        Ok(ReadSlot {
            consumer: self,
            pos,
            len,
        })
    }
}

impl Consumer<Spsc> {
    /// Reads up to `max` queued messages at once (rtrb's read chunk); they are freed together
    /// when the chunk is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if a length in the chunk is out of range.
    pub fn try_recv_many(&mut self, max: usize) -> Result<ReadChunk<'_>> {
        let RxAlgo::Spsc(rx) = &mut self.algo else {
            unreachable!("an SPSC consumer has SPSC state")
        };
        let (pos, n) = rx.peek(&self.core.ring, max as u64)?;
        let mut lens = Vec::with_capacity(n as usize);
        for i in 0..n {
            let p = pos.wrapping_add(i);
            let raw = self
                .core
                .ring
                .len(self.core.ring.index(p))
                .load(Ordering::Relaxed);
            lens.push(ring::checked_len(raw, self.core.ring.slot_size, p)?);
        }
        Ok(ReadChunk {
            consumer: self,
            pos,
            lens,
        })
    }
}

fn value_from<T: FromBytes>(msg: &[u8], name: &str) -> Result<T> {
    T::read_from_bytes(msg).map_err(|_| Error::Mismatch {
        segment: format!("channel '{name}'"),
        what: "message size",
        expected: std::mem::size_of::<T>() as u64,
        found: msg.len() as u64,
    })
}

impl<F: Flavour> Drop for Consumer<F> {
    fn drop(&mut self) {
        self.core.leave();
    }
}

/// A message borrowed in place; see [`Consumer::try_recv_ref`]. The slot is freed on drop.
pub struct ReadSlot<'a, F: Flavour> {
    consumer: &'a mut Consumer<F>,
    pos: u64,
    len: usize,
}

impl<F: Flavour> fmt::Debug for ReadSlot<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadSlot")
            .field("position", &self.pos)
            .field("len", &self.len)
            .finish()
    }
}

impl<F: Flavour> ReadSlot<'_, F> {
    /// The message length (validated against the slot size).
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Copies `buf.len()` bytes from byte `at` of the message.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the range is outside the message.
    pub fn read(&self, at: usize, buf: &mut [u8]) -> Result<()> {
        match at.checked_add(buf.len()) {
            Some(end) if end <= self.len => {}
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{} bytes at {at} of a {}-byte message",
                    buf.len(),
                    self.len
                )));
            }
        }
        let ring = &self.consumer.core.ring;
        ring.read_payload(ring.index(self.pos), at, buf);
        Ok(())
    }
    /// Copies the message out.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len];
        let ring = &self.consumer.core.ring;
        ring.read_payload(ring.index(self.pos), 0, &mut v);
        v
    }
    /// Pointer to the message's `len()` bytes. Read through it (e.g. with
    /// `ptr::copy_nonoverlapping` or `read_unaligned`), never as a `&[u8]`: a buggy or hostile
    /// peer could write the bytes meanwhile.
    pub fn as_ptr(&self) -> *const u8 {
        let ring = &self.consumer.core.ring;
        ring.payload(ring.index(self.pos))
    }
}

impl<F: Flavour> Drop for ReadSlot<'_, F> {
    fn drop(&mut self) {
        let c = &mut *self.consumer;
        Consumer::<F>::release_pos(&mut c.core, &mut c.algo, self.pos);
    }
}

/// Several messages read at once from an SPSC ring; see [`Consumer::try_recv_many`].
pub struct ReadChunk<'a> {
    consumer: &'a mut Consumer<Spsc>,
    pos: u64,
    lens: Vec<usize>,
}

impl fmt::Debug for ReadChunk<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadChunk")
            .field("position", &self.pos)
            .field("len", &self.lens.len())
            .finish()
    }
}

impl ReadChunk<'_> {
    /// Messages in the chunk.
    pub fn len(&self) -> usize {
        self.lens.len()
    }
    /// Whether the chunk is empty.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }
    /// Copies message `i` out.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn get(&self, i: usize) -> Vec<u8> {
        let mut v = vec![0; self.lens[i]];
        let ring = &self.consumer.core.ring;
        ring.read_payload(ring.index(self.pos.wrapping_add(i as u64)), 0, &mut v);
        v
    }
}

impl Drop for ReadChunk<'_> {
    fn drop(&mut self) {
        let n = self.lens.len() as u64;
        if n == 0 {
            return;
        }
        let c = &mut *self.consumer;
        let RxAlgo::Spsc(rx) = &mut c.algo else {
            unreachable!()
        };
        rx.release(&c.core.ring, n);
        c.core.wake_peers();
    }
}

fn open_or_create(name: &str, kind: Kind, opts: &Options, side: Side) -> Result<Core> {
    for _ in 0..16 {
        match Core::create(name, kind, opts, side) {
            Err(Error::AlreadyExists(_)) => {}
            other => return other,
        }
        match Core::open(name, kind, opts, side) {
            Ok(core) => {
                let (s, c) = (core.ring.slot_size, core.ring.cap as usize);
                for (what, expected, found) in [
                    ("slot size", opts.slot_size, s),
                    ("capacity", opts.capacity, c),
                ] {
                    if expected != found {
                        return Err(Error::Mismatch {
                            segment: format!("{} channel '{name}'", kind_name(kind)),
                            what,
                            expected: expected as u64,
                            found: found as u64,
                        });
                    }
                }
                return Ok(core);
            }
            Err(Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::TimedOut(format!(
        "'{name}' kept appearing and disappearing while opening or creating it"
    )))
}

/// Bytes a segment needs for an SPSC channel with `opts` (for memfd channels).
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn spsc_segment_len(opts: &Options) -> Result<usize> {
    Core::segment_len(Kind::SPSC, opts)
}

impl Options {
    /// (slot size, capacity) a creator would use.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn geometry(&self) -> (usize, usize) {
        (self.slot_size, self.capacity)
    }
}
