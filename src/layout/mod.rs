//! The versioned header at the start of every segment shmchan lays out, its init protocol, and
//! the participant table behind the liveness checks.
//!
//! ```text
//! offset  size  field
//!      0     8  magic            b"SHMCHAN\x01"
//!      8     4  state            0 fresh, 1 initialising, 2 ready, 3 being reclaimed (futex word)
//!     12     4  version          LAYOUT_VERSION
//!     16     4  kind             Kind (spsc, mpsc, mpmc, heap, endpoint, user kinds)
//!     20     4  participant_cap  records in the participant table
//!     24     8  total_len        bytes the layout uses; at most the mapped size
//!     32     4  creator_pid      written before state = initialising
//!     40     8  creator_start    the creator's start time
//!     48     8  participants_off 128-aligned, >= HEADER_LEN
//!     56     8  data_off         128-aligned, after the table: the kind's own area
//!     64    64  geometry         8 words whose meaning the kind defines
//!    128     8  creator_pidns    inode of the creator's /proc/self/ns/pid (0: not recorded)
//!    136     8  creator_netns    inode of the creator's /proc/self/ns/net (0: not recorded)
//!    144   112  reserved (zero)
//!    256        participant table: participant_cap records of 128 bytes
//! ```
//!
//! Every word is read and written with atomics of one width, in every process.
//!
//! # Init protocol
//!
//! The creator gets the name with `shm_open(O_CREAT|O_EXCL)`, so exactly one process
//! initialises. It sizes the object (`ftruncate`), records its pid and start time, stores
//! `state = initialising`, fills the header, and publishes `state = ready` with a release store,
//! then wakes futex waiters on the state word. An attacher that finds the object still empty,
//! or the state not ready, waits (futex on the state word, re-checking the creator's liveness
//! every few milliseconds) up to a bound; then it fails with [`Error::TimedOut`]. If the creator
//! died before publishing, the attacher fails at once with [`Error::Corrupt`]: such a segment
//! can never become ready and should be unlinked.
//!
//! An attacher copies the geometry once, validates it against the mapped size, and never reads
//! it from shared memory again, so a peer that scribbles on the header later cannot make this
//! process index out of bounds.
//!
//! # Participant table
//!
//! Each record's first word is the *owner*: `pid | role << 32 | state << 40 | generation << 48`
//! (0 = free). A process claims a record with a compare-and-swap of the owner word, then stores
//! its start time and publishes the record live. Records of processes that died (pid gone, a
//! zombie, or a recycled pid with another start time) are recycled by the next claimant, but
//! only while their `intent` word is 0; upper layers use `intent` to mark a ring position a
//! participant is about to claim, and clear or repair it before the record may be reused.
//!
//! # Stale segments
//!
//! A segment whose participants are all dead (pid and start time, the proof the rings use)
//! and whose creator is dead or finished is *stale*: what a SIGKILLed service leaves behind.
//! `create` (and `shmchan gc`) take one over: it checks staleness, moves the
//! state from ready to *being reclaimed* with a compare-and-swap (so of two racing
//! reclaimers exactly one wins), checks again that nobody attached meanwhile, and unlinks the
//! name only while it still names that object; the caller then creates afresh. An attacher
//! re-checks the state after claiming its record (SeqCst on both sides: either the reclaimer
//! sees the new participant and backs off, or the attacher sees the reclaim and releases its
//! record with [`Error::NotFound`]), so no process is ever left attached to a replaced
//! object.
//!
//! # Namespaces
//!
//! All participants must live in one pid namespace and one network namespace: pids are
//! compared as the kernel reports them in `/proc` (a live peer in another pid namespace would
//! look dead and get its slots "repaired"), and doorbells are abstract Unix socket names,
//! which are per network namespace (its wake-ups would be lost). Containers that share
//! `/dev/shm` can break both, so the creator records the inodes of its `/proc/self/ns/pid`
//! and `/proc/self/ns/net`, and an attacher in another namespace is refused with
//! [`Error::Mismatch`] (`what: "pid namespace"` or `"network namespace"`) before it touches the
//! participant table. The words were reserved zero in layout 1, so they need no new version:
//! a segment made before they existed (0) is accepted unchecked, as before.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::segment::{Mode, Segment, SegmentOptions};
use crate::sys::futex;
use crate::sys::process::{Namespaces, ProcessId};

/// `b"SHMCHAN\x01"` read as a little-endian word.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMCHAN\x01");
/// The layout version this build writes and accepts. 2 (2026-12-02): a blocked thread
/// sleeps on a futex word in its own participant record (`wait::protocol::AUX_FUTEX`), not on
/// its ring side's shared word, so a build of version 1 would never wake it (nor it one of
/// version 1): the two refuse each other's segments. Version 2 also packs slots of at most 16
/// bytes at a 32-byte stride (`ring::Geometry::stride`). 3 (2026-12-03): a waiter that parks
/// often parks with a plain fence once every waker of its side fences fully, as a count in the
/// ring's control block tells them (`wait/protocol.rs`, fenced mode); a waker of version 2
/// would not read that count, skip its fence and miss such a waiter. 4 (2026-12-04): a
/// producer of an MPSC or MPMC ring may claim a chunk of consecutive positions with one
/// intent, which names only the first (`ring::repair::intent_covers`); a consumer of version
/// 3 would take the chunk's later slots for nobody's and repair them while their producer
/// lives.
pub const LAYOUT_VERSION: u32 = 4;
/// Size of the header before the participant table.
pub const HEADER_LEN: usize = 256;
/// Size of one participant record.
pub const RECORD_LEN: usize = 128;
/// Most participant records a layout may have.
pub const MAX_PARTICIPANTS: u32 = 4096;
/// How long an attacher waits for a creator to publish the header, by default.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) const OFF_MAGIC: usize = 0;
pub(crate) const OFF_STATE: usize = 8;
pub(crate) const OFF_VERSION: usize = 12;
pub(crate) const OFF_KIND: usize = 16;
pub(crate) const OFF_PCAP: usize = 20;
pub(crate) const OFF_TOTAL: usize = 24;
pub(crate) const OFF_CPID: usize = 32;
pub(crate) const OFF_CSTART: usize = 40;
const OFF_POFF: usize = 48;
const OFF_DOFF: usize = 56;
const OFF_GEOM: usize = 64;
pub(crate) const OFF_PIDNS: usize = 128;
const OFF_NETNS: usize = 136;

const STATE_FRESH: u32 = 0;
const STATE_INIT: u32 = 1;
const STATE_READY: u32 = 2;
/// A process proved every participant dead and is replacing the segment (see
/// [Stale segments](self#stale-segments)): nobody may attach any more.
const STATE_RECLAIMING: u32 = 3;

// Record word offsets.
/// `owner`: 0 (free), or `pid | role << 32 | state << 40 | generation << 48` with state
/// [`OWNER_FILLING`] (being claimed: start time not yet written) or [`OWNER_LIVE`]. Changed only
/// by CAS (claim, takeover, release); the generation grows by one per claim.
const REC_OWNER: usize = 0;
/// `start`: the owner's start time (clock ticks since boot), valid once `owner` is LIVE.
const REC_START: usize = 8;
/// `intent`: 0, or `p + 1` while the owner claims or holds ring position `p` (Vyukov rings,
/// `ring/repair.rs`). A record whose owner died with a non-zero intent is not recycled until
/// the intent is repaired or found stale.
const REC_INTENT: usize = 16;
/// First of the words a record leaves to upper layers.
pub(crate) const REC_AUX: usize = 24;
/// How many auxiliary words a record has.
pub const RECORD_AUX_WORDS: usize = (RECORD_LEN - REC_AUX) / 8;

const OWNER_FILLING: u64 = 1;
const OWNER_LIVE: u64 = 2;

/// What a segment holds. The crate's own kinds are the associated constants; kinds from
/// [`Kind::USER_FIRST`] up are free for users who lay out their own data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kind(pub u32);

impl Kind {
    /// A single-producer single-consumer channel.
    pub const SPSC: Kind = Kind(1);
    /// A multi-producer single-consumer channel.
    pub const MPSC: Kind = Kind(2);
    /// A multi-producer multi-consumer channel.
    pub const MPMC: Kind = Kind(3);
    /// A shared heap.
    pub const HEAP: Kind = Kind(4);
    /// A duplex endpoint (two rings).
    pub const ENDPOINT: Kind = Kind(5);
    /// The first kind number free for users.
    pub const USER_FIRST: Kind = Kind(0x1000);

    /// What the kind is, for people: `"an spsc channel"`, `"a shared heap"`, ...,
    /// `"a segment of kind 4096"` for the others.
    pub fn describe(self) -> String {
        match self {
            Kind::SPSC => "an spsc channel".into(),
            Kind::MPSC => "an mpsc channel".into(),
            Kind::MPMC => "an mpmc channel".into(),
            Kind::HEAP => "a shared heap".into(),
            Kind::ENDPOINT => "an endpoint".into(),
            Kind(n) => format!("a segment of kind {n}"),
        }
    }
}

/// What a participant is; the meaning of the numbers is the kind's. The crate's channels use
/// [`Role::PRODUCER`] and [`Role::CONSUMER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Role(pub u8);

impl Role {
    /// Sends into a ring.
    pub const PRODUCER: Role = Role(1);
    /// Receives from a ring.
    pub const CONSUMER: Role = Role(2);
}

/// What a creator lays out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutSpec {
    /// The kind recorded in the header.
    pub kind: Kind,
    /// Eight words the kind defines (slot size, capacity, ...). Validated by the kind on attach.
    pub geometry: [u64; 8],
    /// Records in the participant table (at most [`MAX_PARTICIPANTS`]).
    pub participants: u32,
    /// Bytes of the kind's own area, after the table.
    pub data_len: usize,
}

impl LayoutSpec {
    fn offsets(&self) -> Result<(usize, usize, usize)> {
        if self.participants > MAX_PARTICIPANTS {
            return Err(Error::InvalidArgument(format!(
                "{} participant records asked for, at most {MAX_PARTICIPANTS} are allowed",
                self.participants
            )));
        }
        let poff = HEADER_LEN;
        let doff = poff + self.participants as usize * RECORD_LEN;
        let total = doff.checked_add(self.data_len).ok_or_else(|| {
            Error::InvalidArgument(format!("data area of {} bytes is too large", self.data_len))
        })?;
        Ok((poff, doff, total))
    }

    /// Total bytes a segment needs for this spec.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the numbers overflow or exceed the limits.
    pub fn total_len(&self) -> Result<usize> {
        self.offsets().map(|(_, _, t)| t)
    }
}

/// A segment with a validated shmchan header.
///
/// The geometry, offsets and sizes here are a snapshot taken when the header was created or
/// validated; they are never re-read from shared memory.
pub struct Layout {
    segment: Segment,
    kind: Kind,
    geometry: [u64; 8],
    participants_off: usize,
    participant_cap: u32,
    data_off: usize,
    data_len: usize,
}

impl fmt::Debug for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layout")
            .field("segment", &self.segment)
            .field("kind", &self.kind)
            .field("geometry", &self.geometry)
            .field("participant_cap", &self.participant_cap)
            .field("data_off", &self.data_off)
            .field("data_len", &self.data_len)
            .finish()
    }
}

/// The header word at `off` of a writable segment of at least `HEADER_LEN` bytes, as an
/// atomic (for the creator's stores and the futex).
///
/// # Panics
///
/// In debug builds, if the segment is read-only: `AtomicU32::from_ptr` requires memory valid
/// for writes, which a `PROT_READ` mapping is not; readers of read-only mappings go through
/// [`load32`] / [`load64`].
fn word32(seg: &Segment, off: usize) -> &AtomicU32 {
    debug_assert!(off + 4 <= HEADER_LEN && off % 4 == 0);
    debug_assert!(seg.mode() == Mode::ReadWrite);
    // SAFETY: off is a constant inside the header (checked above), 4-aligned, and every caller
    // has checked seg.len() >= HEADER_LEN; the mapping is page-aligned, writable (callers only
    // use this on read-write segments) and lives as long as seg.
    unsafe { AtomicU32::from_ptr(seg.as_ptr().add(off) as *mut u32) }
}

fn word64(seg: &Segment, off: usize) -> &AtomicU64 {
    debug_assert!(off + 8 <= HEADER_LEN && off % 8 == 0);
    debug_assert!(seg.mode() == Mode::ReadWrite);
    // SAFETY: as in word32, with 8-byte alignment.
    unsafe { AtomicU64::from_ptr(seg.as_ptr().add(off) as *mut u64) }
}

/// Loads the aligned word at `ptr` of `seg` with `order`: atomically on a writable mapping; on
/// a read-only one (where the atomic types' contract, memory valid for writes, cannot hold) as
/// one volatile load of the aligned word, which every supported target performs as a single
/// access, followed by an Acquire fence when `order` asks for more than Relaxed. Another
/// process's writes are outside the Rust memory model either way; what this relies on is that
/// the hardware makes an aligned word load single-copy atomic, as the atomic load would.
macro_rules! shared_load {
    ($seg:expr, $ptr:expr, $atomic:ty, $order:expr) => {{
        let ptr = $ptr;
        let order: Ordering = $order;
        if $seg.mode() == Mode::ReadWrite {
            // SAFETY: the caller's pointer is aligned, inside the mapping, and the mapping is
            // writable and alive as long as the segment.
            unsafe { <$atomic>::from_ptr(ptr) }.load(order)
        } else {
            // SAFETY: as above, but read-only: a volatile read of an aligned, mapped word.
            let v = unsafe { std::ptr::read_volatile(ptr) };
            if order != Ordering::Relaxed {
                // Acquire: pairs, as the atomic load would, with the writer's Release store.
                std::sync::atomic::fence(Ordering::Acquire);
            }
            v
        }
    }};
}

/// Loads the header word at `off` (see [`shared_load!`]).
fn load32(seg: &Segment, off: usize, order: Ordering) -> u32 {
    debug_assert!(off + 4 <= HEADER_LEN && off % 4 == 0);
    // Every caller has checked seg.len() >= HEADER_LEN; off is 4-aligned in the page-aligned
    // mapping.
    shared_load!(
        seg,
        seg.as_ptr().wrapping_add(off) as *mut u32,
        AtomicU32,
        order
    )
}

/// Loads the header word at `off` (see [`shared_load!`]).
fn load64(seg: &Segment, off: usize, order: Ordering) -> u64 {
    debug_assert!(off + 8 <= HEADER_LEN && off % 8 == 0);
    shared_load!(
        seg,
        seg.as_ptr().wrapping_add(off) as *mut u64,
        AtomicU64,
        order
    )
}

impl Layout {
    /// Creates the named segment and lays out the header (see the module docs for the
    /// protocol).
    ///
    /// # Errors
    ///
    /// As [`SegmentOptions::create`], and [`Error::InvalidArgument`] for a spec over the limits.
    pub fn create(name: &str, spec: &LayoutSpec, options: &SegmentOptions) -> Result<Layout> {
        let total = spec.total_len()?;
        let seg = options.create(name, total)?;
        Layout::init(seg, spec)
    }

    /// Lays out the header in a segment this process just created (a named one, or a memfd),
    /// which must be zero-filled and not yet visible to other processes as ready.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the spec does not fit in the segment,
    /// [`Error::PermissionDenied`] for a read-only segment, [`Error::AlreadyExists`] if the
    /// segment already holds a header.
    pub fn init(segment: Segment, spec: &LayoutSpec) -> Result<Layout> {
        segment.as_mut_ptr()?;
        let (poff, doff, total) = spec.offsets()?;
        if segment.len() < total {
            return Err(Error::InvalidArgument(format!(
                "{} is {} bytes, the layout needs {total}",
                segment.describe(),
                segment.len()
            )));
        }
        let me = ProcessId::current();
        let state = word32(&segment, OFF_STATE);
        // Relaxed: only the creator writes these before the release store of READY below; an
        // attacher reads them after its acquire load of READY, or reads the pid early merely to
        // check liveness (a stale 0 means "unknown creator, keep waiting").
        word32(&segment, OFF_CPID).store(me.pid, Ordering::Relaxed);
        word64(&segment, OFF_CSTART).store(me.start_time, Ordering::Relaxed);
        if state
            .compare_exchange(
                STATE_FRESH,
                STATE_INIT,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return Err(Error::AlreadyExists(format!(
                "{} already holds a header",
                segment.describe()
            )));
        }
        word64(&segment, OFF_MAGIC).store(MAGIC, Ordering::Relaxed);
        word32(&segment, OFF_VERSION).store(LAYOUT_VERSION, Ordering::Relaxed);
        word32(&segment, OFF_KIND).store(spec.kind.0, Ordering::Relaxed);
        word32(&segment, OFF_PCAP).store(spec.participants, Ordering::Relaxed);
        word64(&segment, OFF_TOTAL).store(total as u64, Ordering::Relaxed);
        word64(&segment, OFF_POFF).store(poff as u64, Ordering::Relaxed);
        word64(&segment, OFF_DOFF).store(doff as u64, Ordering::Relaxed);
        for (i, g) in spec.geometry.iter().enumerate() {
            word64(&segment, OFF_GEOM + 8 * i).store(*g, Ordering::Relaxed);
        }
        let ns = Namespaces::current();
        word64(&segment, OFF_PIDNS).store(ns.pid, Ordering::Relaxed);
        word64(&segment, OFF_NETNS).store(ns.net, Ordering::Relaxed);
        // Release: pairs with the Acquire load of the state in `wait_ready`; everything written
        // above (header and the zero-filled body) is visible to whoever sees READY.
        state.store(STATE_READY, Ordering::Release);
        futex::wake(state, u32::MAX);
        Ok(Layout {
            segment,
            kind: spec.kind,
            geometry: spec.geometry,
            participants_off: poff,
            participant_cap: spec.participants,
            data_off: doff,
            data_len: spec.data_len,
        })
    }

    /// Opens the named segment and validates its header, waiting up to `timeout` for a creator
    /// that is still initialising it.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::PermissionDenied`], [`Error::TimedOut`] if the header was
    /// not published in time, [`Error::Corrupt`] for a bad magic number, a geometry that does
    /// not fit the mapped size or the object's current (`fstat`) size, or a creator that died
    /// mid-initialisation, [`Error::Mismatch`] for another version or kind, or a creator in
    /// another pid or network namespace (see [Namespaces](self#namespaces)).
    pub fn open(name: &str, kind: Kind, mode: Mode, timeout: Duration) -> Result<Layout> {
        let deadline = crate::deadline_after(timeout);
        let seg = Layout::open_sized(name, mode, deadline)?;
        Layout::attach_until(seg, kind, deadline)
    }

    /// Opens the segment `name` once it is at least a header long, waiting until `deadline`
    /// for its creator to size it: the object exists but `shm_open` and `ftruncate` are two
    /// calls, and no mapping exists to wait on, so this backs off briefly.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`] if it stays smaller than a header until `deadline`; as
    /// [`Segment::open`] otherwise.
    pub(crate) fn open_sized(name: &str, mode: Mode, deadline: Instant) -> Result<Segment> {
        let mut pause = Duration::from_micros(50);
        loop {
            let small = match Segment::open(name, mode) {
                Ok(seg) if seg.len() >= HEADER_LEN => return Ok(seg),
                Ok(seg) => seg.len(),
                Err(Error::Corrupt(_)) => 0,
                Err(e) => return Err(e),
            };
            if Instant::now() >= deadline {
                return Err(Error::TimedOut(format!(
                    "segment '{name}' stayed {small} bytes (less than a {HEADER_LEN}-byte \
                     header) until the init timeout: is it a shmchan segment, or did its \
                     creator die before sizing it? (remove it with `shmchan gc` or \
                     Segment::unlink)"
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// Validates the header of a mapped segment (a named one, or a memfd received from a
    /// peer), waiting up to `timeout` for it to be published.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn attach(segment: Segment, kind: Kind, timeout: Duration) -> Result<Layout> {
        Layout::attach_until(segment, kind, crate::deadline_after(timeout))
    }

    fn attach_until(seg: Segment, kind: Kind, deadline: Instant) -> Result<Layout> {
        if seg.len() < HEADER_LEN {
            return Err(Error::Corrupt(format!(
                "{} is {} bytes, smaller than the {HEADER_LEN}-byte header",
                seg.describe(),
                seg.len()
            )));
        }
        wait_ready(&seg, deadline)?;
        Layout::validate(seg, kind)
    }

    fn validate(seg: Segment, kind: Kind) -> Result<Layout> {
        let d = seg.describe();
        let magic = load64(&seg, OFF_MAGIC, Ordering::Relaxed);
        if magic != MAGIC {
            return Err(Error::Corrupt(format!(
                "{d} is not a shmchan segment: magic {magic:#018x}, expected {MAGIC:#018x}"
            )));
        }
        let version = load32(&seg, OFF_VERSION, Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(Error::Mismatch {
                segment: d,
                what: "layout version",
                expected: LAYOUT_VERSION.into(),
                found: version.into(),
            });
        }
        let found = load32(&seg, OFF_KIND, Ordering::Relaxed);
        if found != kind.0 {
            return Err(Error::Mismatch {
                segment: d,
                what: "kind",
                expected: kind.0.into(),
                found: found.into(),
            });
        }
        // 0 on either side: not recorded (a layout-1 segment from before these words, or no
        // /proc to ask); liveness checks then work as well as they can.
        let ours = Namespaces::current();
        for (what, off, mine) in [
            ("pid namespace", OFF_PIDNS, ours.pid),
            ("network namespace", OFF_NETNS, ours.net),
        ] {
            let theirs = load64(&seg, off, Ordering::Relaxed);
            if theirs != 0 && mine != 0 && theirs != mine {
                return Err(Error::Mismatch {
                    segment: format!(
                        "{d} (created in another {what}; its participants' liveness cannot be \
                         checked from here)"
                    ),
                    what,
                    expected: mine,
                    found: theirs,
                });
            }
        }
        let cap = load32(&seg, OFF_PCAP, Ordering::Relaxed);
        let total = load64(&seg, OFF_TOTAL, Ordering::Relaxed);
        let poff = load64(&seg, OFF_POFF, Ordering::Relaxed);
        let doff = load64(&seg, OFF_DOFF, Ordering::Relaxed);
        let mut geometry = [0u64; 8];
        for (i, g) in geometry.iter_mut().enumerate() {
            *g = load64(&seg, OFF_GEOM + 8 * i, Ordering::Relaxed);
        }
        let corrupt = |why: String| Err(Error::Corrupt(format!("{d}: {why}")));
        if total > seg.len() as u64 {
            return corrupt(format!(
                "header says the layout is {total} bytes, only {} are mapped",
                seg.len()
            ));
        }
        // The object may have been truncated since it was mapped (a peer with write access to
        // a named segment can): touching a page past its end would be SIGBUS, not an error.
        let size = seg.object_len()?;
        if total > size {
            return corrupt(format!(
                "header says the layout is {total} bytes, but the object is only {size} bytes \
                 (truncated after it was mapped?)"
            ));
        }
        if cap > MAX_PARTICIPANTS {
            return corrupt(format!(
                "{cap} participant records (at most {MAX_PARTICIPANTS})"
            ));
        }
        if poff != HEADER_LEN as u64 {
            return corrupt(format!(
                "participant table at {poff}, expected {HEADER_LEN}"
            ));
        }
        let table_end = poff + u64::from(cap) * RECORD_LEN as u64;
        if doff != table_end || doff > total {
            return corrupt(format!(
                "data area at {doff}, expected {table_end} within {total} bytes"
            ));
        }
        Ok(Layout {
            kind,
            geometry,
            participants_off: poff as usize,
            participant_cap: cap,
            data_off: doff as usize,
            data_len: (total - doff) as usize,
            segment: seg,
        })
    }

    /// The segment underneath.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Gives the segment back (e.g. to [`Segment::detach`] it).
    pub fn into_segment(self) -> Segment {
        self.segment
    }

    /// The kind recorded in the header.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The geometry words, as validated at create or attach time.
    pub fn geometry(&self) -> [u64; 8] {
        self.geometry
    }

    /// Offset of the kind's own area in the segment.
    pub fn data_offset(&self) -> usize {
        self.data_off
    }

    /// Length of the kind's own area.
    pub fn data_len(&self) -> usize {
        self.data_len
    }

    /// The process that created the segment (pid and start time from the header).
    pub(crate) fn creator(&self) -> ProcessId {
        ProcessId {
            pid: load32(&self.segment, OFF_CPID, Ordering::Relaxed),
            start_time: load64(&self.segment, OFF_CSTART, Ordering::Relaxed),
        }
    }

    /// Number of records in the participant table.
    pub fn participant_capacity(&self) -> u32 {
        self.participant_cap
    }

    /// Pointer to the kind's own area, for reading.
    pub fn data_ptr(&self) -> *const u8 {
        // SAFETY: data_off <= total_len <= the mapped length (validated), so the result is in
        // bounds or one past the end.
        unsafe { self.segment.as_ptr().add(self.data_off) }
    }
}

/// Waits until the header's state is READY, or fails.
fn wait_ready(seg: &Segment, deadline: Instant) -> Result<()> {
    loop {
        // Acquire: pairs with the creator's Release store of READY in `Layout::init`.
        let s = load32(seg, OFF_STATE, Ordering::Acquire);
        match s {
            STATE_READY => return Ok(()),
            STATE_FRESH | STATE_INIT => {}
            STATE_RECLAIMING => {
                return Err(Error::NotFound(format!(
                    "{} is being replaced by a new creator (every participant had died)",
                    seg.describe()
                )));
            }
            other => {
                return Err(Error::Corrupt(format!(
                    "{}: header state {other} is none of 0, 1, 2; not a shmchan segment",
                    seg.describe()
                )));
            }
        }
        let creator = ProcessId {
            pid: load32(seg, OFF_CPID, Ordering::Relaxed),
            start_time: load64(seg, OFF_CSTART, Ordering::Relaxed),
        };
        // Acquire: as above, pairs with the creator's Release store of READY (it may have
        // published just before dying).
        if creator.pid != 0
            && !creator.is_alive()
            && load32(seg, OFF_STATE, Ordering::Acquire) != STATE_READY
        {
            return Err(Error::Corrupt(format!(
                "{} was left half-initialised: its creator (pid {}) died before publishing the \
                 header; unlink it",
                seg.describe(),
                creator.pid
            )));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::TimedOut(format!(
                "{}: header not published by its creator (pid {}) in time (state {s})",
                seg.describe(),
                creator.pid
            )));
        }
        // Sleep on the state word; wake at the latest every 10 ms to re-check the creator. A
        // read-only mapping cannot lend the futex call an atomic (see `word32`): it polls at
        // 1 ms instead (an init wait is short and rare).
        let nap = deadline - now;
        if seg.mode() == Mode::ReadWrite {
            futex::wait(
                word32(seg, OFF_STATE),
                s,
                Some(nap.min(Duration::from_millis(10))),
            );
        } else {
            std::thread::sleep(nap.min(Duration::from_millis(1)));
        }
    }
}

// The participant table (records, claims, takeovers) and the reclaim of stale segments, each
// in its own file; declared after the helpers above (`shared_load!` is textually scoped).
mod create;
mod participants;
mod stale;

pub(crate) use create::{CreateNamed, OnStale};
pub use participants::{Participant, Registration};
pub(crate) use stale::Staleness;

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LayoutSpec {
        LayoutSpec {
            kind: Kind::USER_FIRST,
            geometry: [1, 2, 3, 4, 5, 6, 7, 8],
            participants: 4,
            data_len: 1000,
        }
    }

    #[test]
    fn memfd_layout_roundtrip_and_claims() {
        let seg = Segment::memfd(spec().total_len().unwrap()).unwrap();
        let l = Layout::init(seg, &spec()).unwrap();
        assert_eq!(l.data_offset(), HEADER_LEN + 4 * RECORD_LEN);
        assert_eq!(l.data_len(), 1000);
        let r = l.claim(0, Role::PRODUCER).unwrap();
        let p = l.participant(0).unwrap();
        assert_eq!(p.pid(), std::process::id());
        assert!(p.is_alive());
        assert!(matches!(l.claim(0, Role::PRODUCER), Err(Error::InUse(_))));
        let any = l.claim_any(0..4, Role::CONSUMER).unwrap();
        assert_eq!(any.index(), 1);
        assert_eq!(l.live_participants(Some(Role::CONSUMER)).len(), 1);
        l.release(r);
        assert!(l.participant(0).is_none());
        l.release(any);
        assert!(l.live_participants(None).is_empty());
    }

    #[test]
    fn dead_owner_is_taken_over_only_without_intent() {
        let seg = Segment::memfd(spec().total_len().unwrap()).unwrap();
        let l = Layout::init(seg, &spec()).unwrap();
        // Forge a record owned by a pid that cannot exist (pid_max is at most 2^22).
        let dead = 0x3fff_fff0u64 | u64::from(Role::PRODUCER.0) << 32 | OWNER_LIVE << 40;
        l.rec_word(2, REC_OWNER).store(dead, Ordering::SeqCst);
        l.rec_word(2, REC_INTENT).store(5, Ordering::SeqCst);
        assert!(matches!(l.claim(2, Role::PRODUCER), Err(Error::InUse(m)) if m.contains("repair")));
        l.rec_word(2, REC_INTENT).store(0, Ordering::SeqCst);
        let r = l.claim(2, Role::PRODUCER).unwrap();
        assert_eq!(l.participant(2).unwrap().pid(), std::process::id());
        l.release(r);
    }

    #[test]
    fn init_twice_is_refused_and_limits_are_checked() {
        let too_many = LayoutSpec {
            participants: MAX_PARTICIPANTS + 1,
            ..spec()
        };
        assert!(matches!(
            too_many.total_len(),
            Err(Error::InvalidArgument(_))
        ));
        let small = Segment::memfd(100).unwrap();
        assert!(matches!(
            Layout::init(small, &spec()),
            Err(Error::InvalidArgument(_))
        ));
    }
}
