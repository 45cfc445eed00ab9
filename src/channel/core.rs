//! What every handle holds besides its algorithm state ([`Core`]): attaching to a channel
//! (create, open, memfd), the participant record and the clean leave. The wait sets its
//! wake-ups go through and its parking are in `wake.rs`; liveness, close detection and crash
//! repair in `peers.rs`.
//!
//! May call `wait`, `ring`, `layout`, `segment` and `sys`.

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use super::options::{Lifetime, Options, Stale, Unlink};
use crate::error::{Error, Result};
use crate::layout::{self, Kind, Layout, LayoutSpec, Registration, Role};
use crate::loom::Ordering;
use crate::ring::{self, Geometry, Ring};
use crate::segment::{Mode, Segment, SegmentOptions};
use crate::wait::protocol::{AUX_FENCED, Bells};

/// Record aux word of an MPMC consumer that holds a chunk (`Consumer::try_recv_many`): the
/// position after the chunk's last, while its intent names the first (0: a single claim, which
/// holds only the position its intent names). Written by the owner before the chunk's claim
/// and cleared after its intent; read only in the records of dead consumers, whose messages
/// a live consumer adopts one at a time (`adopt_dead_consumer`).
pub(crate) const AUX_CHUNK_END: usize = 6;
use crate::wait::reactor::AsyncState;
use crate::wait::{Learned, WaitStrategy};

/// Which side a handle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Producer,
    Consumer,
}

impl Side {
    /// The other side.
    pub(super) fn other(self) -> Side {
        match self {
            Side::Producer => Side::Consumer,
            Side::Consumer => Side::Producer,
        }
    }

    /// `"producer"` or `"consumer"`.
    pub(super) fn name(self) -> &'static str {
        match self {
            Side::Producer => "producer",
            Side::Consumer => "consumer",
        }
    }

    /// The role recorded in the participant table.
    pub(super) fn role(self) -> Role {
        match self {
            Side::Producer => Role::PRODUCER,
            Side::Consumer => Role::CONSUMER,
        }
    }

    /// The side's clean-close counter and its "attached once" flag in the ring's control block.
    pub(super) fn counter_and_flag(self) -> (usize, u32) {
        match self {
            Side::Producer => (ring::OFF_PRODUCERS, ring::FLAG_PRODUCER_SEEN),
            Side::Consumer => (ring::OFF_CONSUMERS, ring::FLAG_CONSUMER_SEEN),
        }
    }
}

/// How long an MPMC producer rings no other worker while the one it rang last has not run
/// yet (`Core::ring_peers`): a few wake-up latencies of a loaded VM (75-90 µs a park/wake
/// round trip), short beside a liveness interval.
pub(super) const RUNG_GRACE: Duration = Duration::from_micros(500);

/// A pointer to our participant record's intent word (see [`Core::intent`]).
#[derive(Clone, Copy)]
pub(super) struct IntentWord(NonNull<AtomicU64>);

// SAFETY: the pointer is only turned into a shared `&AtomicU64` (`Core::intent`), which is
// `Send + Sync`; the memory is the handle's own mapping, as for `Ring`.
unsafe impl Send for IntentWord {}
// SAFETY: as for `Send`.
unsafe impl Sync for IntentWord {}

/// Everything a handle holds besides its algorithm state.
pub(super) struct Core {
    /// Must outlive `ring` (which points into it): declared after it, dropped after it.
    pub(super) ring: Ring,
    pub(super) layout: Layout,
    /// Our participant record; `None` only after `leave`.
    pub(super) reg: Option<Registration>,
    pub(super) side: Side,
    pub(super) kind: Kind,
    pub(super) created: bool,
    pub(super) name: String,
    pub(super) wait: WaitStrategy,
    pub(super) liveness_interval: Duration,
    pub(super) unlink: Unlink,
    /// Last liveness check (`peers.rs`); every park refreshes it.
    pub(super) last_check: Instant,
    /// Last look for slots pinned by dead parties (repair, adoption); separate from
    /// `last_check`, which every park refreshes.
    pub(super) last_repair: Instant,
    /// Empty / full attempts since the clock was last read for the checks above: the hot
    /// paths read it once every `CHECK_EVERY` attempts, not on every spin.
    pub(super) idle_polls: u32,
    /// Peers seen dead and reclaimed while no live peer remained: report PeerGone once drained.
    pub(super) peer_died: bool,
    /// Abandoned slots skipped (consumers).
    pub(super) abandoned: u64,
    /// Socket to ring peers' doorbells, made on first use.
    pub(super) bells: Bells,
    /// MPMC producer: the worker its last publish or flush rang, that worker's wake count
    /// then, and when (see [`Core::ring_peers`]).
    pub(super) rung_worker: std::sync::Mutex<Option<(u32, u64, Instant)>>,
    /// Doorbell, pid watches and announcement state of a handle used from async code.
    pub(super) async_state: AsyncState,
    /// What this handle's recent waits needed (`wait/mod.rs`).
    pub(super) learned: Learned,
    /// Whether `count_in` ran (a failed attach leaves without touching the counters).
    pub(super) counted: bool,
    /// Lifetime::Creator channels: the creator's process was found dead (liveness check).
    pub(super) creator_gone: bool,
    /// Something the handle keeps open for as long as it lives (a connected endpoint's
    /// socket, the liveness line, shared by both halves so that `split` keeps it).
    pub(super) keepalive: Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
    /// The heap of large messages and the blocks sent still in flight (`large.rs`).
    pub(super) large: super::large::LargeState,
    /// Our record's intent word, found once at registration: every claim and free passes it
    /// to the ring's algorithm. `None` before registration and after `leave`.
    pub(super) intent_word: Option<IntentWord>,
    /// Consumers: a message claimed by `recv_into` whose buffer was too small, kept claimed
    /// (position, length) so that the next receive of any kind returns it first.
    pub(super) held: Option<(u64, usize)>,
    /// For the rings of an endpoint: the endpoint's name and what the peer is to us
    /// ("server", "client", "side A", "side B"), so that errors name those, not the ring.
    pub(super) owner: Option<(String, &'static str)>,
    /// The pid of the last peer a liveness check found dead (for the `PeerGone` message).
    pub(super) dead_peer: Option<u32>,
    /// Messages sent or received since this handle last published its CPU (`note_progress`).
    pub(super) progress: u32,
    /// This handle's parks at the last `note_progress` look (fenced mode is left when no
    /// park came between two looks and the mode cost the wakers too much since the last).
    pub(super) parks_seen: u64,
    /// `note_progress` looks in a row that found no park since the one before.
    pub(super) idle_looks: u32,
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
pub(super) fn records(kind: Kind, max: u32, side: Side) -> std::ops::Range<u32> {
    match (kind, side) {
        (Kind::SPSC, Side::Producer) => 0..1,
        (Kind::SPSC, Side::Consumer) => 1..2,
        (Kind::MPSC, Side::Consumer) => 0..1,
        (Kind::MPSC, Side::Producer) => 1..max,
        _ => 0..max,
    }
}

impl Core {
    /// Bytes a segment needs for a channel of `kind` with `opts`.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(super) fn segment_len(kind: Kind, opts: &Options) -> Result<usize> {
        Core::spec(kind, opts)?.1.total_len()
    }

    /// The geometry and layout spec `opts` asks for.
    pub(super) fn spec(kind: Kind, opts: &Options) -> Result<(Geometry, LayoutSpec)> {
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

    /// Creates the channel `name`. A stale segment of that name (every participant dead) is
    /// handled per [`Options::stale`]; a live one is `AlreadyExists` naming its pid. A segment
    /// whose creator is still laying it out (not sized yet, or no pid written yet) is waited
    /// for until [`Options::init_timeout`], then judged like any other.
    pub(super) fn create(name: &str, kind: Kind, opts: &Options, side: Side) -> Result<Core> {
        let (_, spec) = Core::spec(kind, opts)?;
        let what = format!("{} channel '{name}'", kind_name(kind));
        let segment = SegmentOptions::new().permissions(opts.permissions);
        layout::CreateNamed {
            name,
            what: &what,
            len: spec.total_len()?,
            segment: &segment,
            init_timeout: opts.init_timeout,
            stale: match opts.stale {
                Stale::Reclaim => layout::OnStale::Reclaim,
                Stale::Refuse => layout::OnStale::Refuse,
                Stale::Keep => layout::OnStale::Keep,
            },
            reclaim_hint: "Options::stale(Stale::Reclaim)",
        }
        .run(
            |seg| Core::create_in(seg, name, kind, opts, side),
            || Core::open(name, kind, opts, side, true),
        )
    }

    /// Lays out a channel in a segment this process just created (named or memfd) and
    /// attaches to it.
    pub(super) fn create_in(
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
        if opts.lifetime == Lifetime::Creator {
            // Relaxed: published with the header (Layout::init's Release store of READY).
            ring.word32(ring::OFF_FLAGS)
                .fetch_or(ring::FLAG_LIFETIME_CREATOR, Ordering::Relaxed);
        }
        let layout = Layout::init(seg, &spec)?;
        debug_assert_eq!(layout.data_offset(), data_off);
        Core::finish(layout, ring, name, kind, opts, side, true)
    }

    /// Attaches to the existing channel `name`. With `expect`, its geometry must be the one
    /// `opts` asks for (`open_or_create`); checked before anything is claimed.
    pub(super) fn open(
        name: &str,
        kind: Kind,
        opts: &Options,
        side: Side,
        expect: bool,
    ) -> Result<Core> {
        let layout = Layout::open(name, kind, Mode::ReadWrite, opts.init_timeout)?;
        Core::attach(layout, name, kind, opts, side, expect)
    }

    /// Attaches to a channel in a segment received from a peer (a memfd).
    pub(super) fn open_in(
        seg: Segment,
        name: &str,
        kind: Kind,
        opts: &Options,
        side: Side,
    ) -> Result<Core> {
        let layout = Layout::attach(seg, kind, opts.init_timeout)?;
        Core::attach(layout, name, kind, opts, side, false)
    }

    pub(super) fn attach(
        layout: Layout,
        name: &str,
        kind: Kind,
        opts: &Options,
        side: Side,
        expect: bool,
    ) -> Result<Core> {
        let what = format!("{} channel '{name}'", kind_name(kind));
        let g = Geometry::from_words(layout.geometry(), layout.data_len(), &what)?;
        if kind != Kind::SPSC && g.capacity < 2 {
            return Err(Error::Corrupt(format!(
                "{what}: capacity {} below 2",
                g.capacity
            )));
        }
        if expect {
            for (what, expected, found) in [
                ("slot size", opts.slot_size, g.slot_size),
                ("capacity", opts.capacity, g.capacity),
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
        }
        let base = layout.segment().as_mut_ptr()?;
        // SAFETY: Layout validated data_offset + data_len <= mapped length and from_words that
        // region_len <= data_len; data_offset is 128-aligned by construction (validated:
        // HEADER_LEN + cap * RECORD_LEN); the mapping is read-write and lives in `layout`.
        let ring = unsafe { Ring::new(base.add(layout.data_offset()), g) };
        Core::finish(layout, ring, name, kind, opts, side, false)
    }

    pub(super) fn finish(
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
            bells: Bells::default(),
            rung_worker: std::sync::Mutex::new(None),
            async_state: AsyncState::default(),
            learned: Learned::default(),
            counted: false,
            creator_gone: false,
            keepalive: None,
            large: Default::default(),
            intent_word: None,
            held: None,
            owner: None,
            dead_peer: None,
            progress: 0,
            parks_seen: 0,
            idle_looks: 0,
        };
        let range = records(kind, core.layout.participant_capacity(), side);
        // Free records only: a dead participant's record is released first by
        // `reclaim_dead`, which undoes what the dead owner held (its clean-close count, a
        // parked announcement) exactly as its clean leave would have; taking it over directly
        // would keep its count, and the peers would never see the channel close.
        let claimed = match core.layout.claim_any_free(range.clone(), side.role()) {
            Ok(r) => Ok(r),
            Err(Error::InUse(_)) => {
                core.reclaim_dead(side)?;
                if kind == Kind::MPMC {
                    // Both sides share the records.
                    core.reclaim_dead(side.other())?;
                }
                core.layout.claim_any_free(range, side.role())
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
                        side.name()
                    )
                } else {
                    m
                }));
            }
            Err(e) => return Err(e),
        };
        core.intent_word = Some(IntentWord(NonNull::from(
            core.layout.intent_word(reg.index())?,
        )));
        core.reg = Some(reg);
        Ok(core)
    }

    /// Counts this handle in: its side's clean-close counter and "attached once" flag. The
    /// last step of an attach, after everything that can fail (geometry, the algorithm's
    /// check of the positions): a failed attach leaves the peers' view of the channel as it was.
    pub(super) fn count_in(&mut self) {
        let (counter, flag) = self.side.counter_and_flag();
        // AcqRel (both): pairs with the Acquire loads of the counter and flags in
        // `peers_closed`; a peer that sees the flag set also sees the count that came first.
        self.ring.word32(counter).fetch_add(1, Ordering::AcqRel);
        self.ring
            .word32(ring::OFF_FLAGS)
            .fetch_or(flag, Ordering::AcqRel);
        self.counted = true;
        if !self.created {
            // A parked task watches the pidfds of the participants it saw when it parked; it
            // must notice our death too (else, say, jobs we publish and then die before
            // waking anyone for would wait for the next wake). Ring everybody once: each
            // looks at the table again and parks watching us. Our record is claimed (SeqCst)
            // before the fence of this wake, and a waiter reads the table after the fence of
            // its announcement (`reactor::poll_wait`): store-buffering again, so either we
            // ring it or it sees us.
            self.wake_everyone();
        }
    }

    #[inline]
    pub(super) fn reg(&self) -> Registration {
        self.reg.expect("registered while the handle lives")
    }

    #[inline]
    pub(super) fn intent(&self) -> &AtomicU64 {
        let w = self.intent_word.expect("registered while the handle lives");
        // SAFETY: `w` was made from a reference to our record's intent word in the mapping
        // `self.layout` holds (`Layout::intent_word`, bounds-checked then), which stays
        // mapped at the same address while `self.layout` lives; the reference returned is
        // bounded by `&self`. An `AtomicU64` may be shared and written by other processes.
        unsafe { w.0.as_ref() }
    }

    /// Our record's chunk-end word ([`AUX_CHUNK_END`]).
    #[inline]
    pub(super) fn chunk_end_word(&self) -> &AtomicU64 {
        self.layout
            .aux_word(self.reg().index(), AUX_CHUNK_END)
            .expect("channels map read-write")
    }

    /// The records of `side`.
    pub(super) fn records(&self, side: Side) -> std::ops::Range<u32> {
        records(self.kind, self.layout.participant_capacity(), side)
    }

    /// Whether the channel lives while its creator does ([`Lifetime::Creator`]).
    pub(super) fn lifetime_creator(&self) -> bool {
        // Relaxed: the bit is written once, before the header was published (Acquire in
        // the attach).
        self.ring.word32(ring::OFF_FLAGS).load(Ordering::Relaxed) & ring::FLAG_LIFETIME_CREATOR != 0
    }

    /// Takes one participant of `side` off its clean-close counter (a clean leave, or a dead
    /// participant's record released), never below zero (a hostile peer may have zeroed it).
    pub(super) fn uncount(&self, side: Side) {
        let (counter, _) = side.counter_and_flag();
        // AcqRel: the leaver's publishes happen before a peer's Acquire read of the counter
        // in `peers_closed`.
        let _ = self
            .ring
            .word32(counter)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Leaves the channel cleanly: counters, record, wake the other side, unlink per policy.
    pub(super) fn leave(&mut self) {
        if self.reg.is_none() {
            return;
        }
        self.sleepers(self.side).retract(self.parked_word());
        // Out of fenced mode: the wakers of our side need not fence for us any more.
        if let Ok(w) = self.layout.aux_word(self.reg().index(), AUX_FENCED) {
            self.sleepers(self.side).drop_fenced(w);
        }
        let reg = self.reg.take().expect("checked above");
        self.intent_word = None;
        if std::mem::take(&mut self.counted) {
            self.uncount(self.side);
        }
        let creator_lifetime = self.lifetime_creator();
        if creator_lifetime && self.created {
            // AcqRel: pairs with the Acquire load of the flags in `peers_closed`; our
            // publishes happen before a peer sees the channel's life end.
            self.ring
                .word32(ring::OFF_FLAGS)
                .fetch_or(ring::FLAG_CREATOR_LEFT, Ordering::AcqRel);
        }
        self.layout.release(reg);
        // Every wake path fences first (wait/protocol.rs): a waiter that announced while we
        // left either sees our counter update in its re-check or is rung here.
        self.wake_everyone();
        // SeqCst fence: pairs with the same fence in a peer's leave: of two participants
        // leaving at once, at least one sees the other's record released (store-buffering
        // again), so the last one out does unlink the name.
        crate::loom::fence(Ordering::SeqCst);
        let unlink = match self.unlink {
            Unlink::Never => false,
            Unlink::Creator => self.created,
            Unlink::LastOut if creator_lifetime => self.created,
            Unlink::LastOut => {
                // Acquire (both): pair with the Release stores of tail (publish) and head
                // (free), so that "nothing queued" reflects every message published before.
                let tail = self.ring.tail().load(Ordering::Acquire);
                let head = self.ring.head().load(Ordering::Acquire);
                tail == head && self.layout.live_participants(None).is_empty()
            }
        };
        if unlink {
            self.unlink_if_ours();
        }
    }

    pub(super) fn unlink_if_ours(&self) {
        // Only while the name still refers to our segment (another may have replaced it);
        // nothing for a memfd.
        self.layout.segment().unlink_if_ours();
    }

    /// Messages queued now (a snapshot, clamped to the capacity: a hostile peer's positions
    /// cannot make it larger).
    #[inline]
    pub(super) fn pending(&self) -> u64 {
        // Acquire (both): pair with the Release stores of tail (publish) and head (free).
        let tail = self.ring.tail().load(Ordering::Acquire);
        let head = self.ring.head().load(Ordering::Acquire);
        tail.saturating_sub(head).min(self.ring.cap)
    }
}

/// `"spsc"`, `"mpsc"`, `"mpmc"`.
pub(super) fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::SPSC => "spsc",
        Kind::MPSC => "mpsc",
        Kind::MPMC => "mpmc",
        _ => "unknown",
    }
}

impl Core {
    /// The channel as a person knows it: `endpoint '/usersvc'` for the rings of an endpoint,
    /// else `mpsc channel '/orders'`.
    pub(super) fn describe(&self) -> String {
        match &self.owner {
            Some((endpoint, _)) => format!("endpoint '{endpoint}'"),
            None => format!("{} channel '{}'", kind_name(self.kind), self.name),
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.leave();
    }
}

pub(super) fn open_or_create(name: &str, kind: Kind, opts: &Options, side: Side) -> Result<Core> {
    for _ in 0..16 {
        match Core::create(name, kind, opts, side) {
            Err(Error::AlreadyExists(_)) => {}
            other => return other,
        }
        match Core::open(name, kind, opts, side, true) {
            Ok(core) => return Ok(core),
            Err(Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::TimedOut(format!(
        "'{name}' kept appearing and disappearing while opening or creating it"
    )))
}
