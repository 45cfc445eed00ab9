//! The versioned header at the start of every segment shmchan lays out, its init protocol, and
//! the participant table behind the liveness checks.
//!
//! ```text
//! offset  size  field
//!      0     8  magic            b"SHMCHAN\x01"
//!      8     4  state            0 fresh, 1 initialising, 2 ready          (atomic, futex word)
//!     12     4  version          LAYOUT_VERSION
//!     16     4  kind             Kind (spsc, mpsc, mpmc, heap, endpoint, user kinds)
//!     20     4  participant_cap  records in the participant table
//!     24     8  total_len        bytes the layout uses; at most the mapped size
//!     32     4  creator_pid      written before state = initialising
//!     40     8  creator_start    the creator's start time
//!     48     8  participants_off 128-aligned, >= HEADER_LEN
//!     56     8  data_off         128-aligned, after the table: the kind's own area
//!     64    64  geometry         8 words whose meaning the kind defines
//!    128   128  reserved (zero)
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
//! All participants must live in one pid namespace: pids are compared as the kernel reports
//! them in `/proc`.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::segment::{Mode, Segment, SegmentOptions};
use crate::sys::futex;
use crate::sys::process::ProcessId;

/// `b"SHMCHAN\x01"` read as a little-endian word.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMCHAN\x01");
/// The layout version this build writes and accepts.
pub const LAYOUT_VERSION: u32 = 1;
/// Size of the header before the participant table.
pub const HEADER_LEN: usize = 256;
/// Size of one participant record.
pub const RECORD_LEN: usize = 128;
/// Most participant records a layout may have.
pub const MAX_PARTICIPANTS: u32 = 4096;
/// How long an attacher waits for a creator to publish the header, by default.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(2);

const OFF_MAGIC: usize = 0;
const OFF_STATE: usize = 8;
const OFF_VERSION: usize = 12;
const OFF_KIND: usize = 16;
const OFF_PCAP: usize = 20;
const OFF_TOTAL: usize = 24;
const OFF_CPID: usize = 32;
const OFF_CSTART: usize = 40;
const OFF_POFF: usize = 48;
const OFF_DOFF: usize = 56;
const OFF_GEOM: usize = 64;

const STATE_FRESH: u32 = 0;
const STATE_INIT: u32 = 1;
const STATE_READY: u32 = 2;

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
const REC_AUX: usize = 24;
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

/// Reads the header word at `off` of a segment of at least `HEADER_LEN` bytes.
fn word32(seg: &Segment, off: usize) -> &AtomicU32 {
    debug_assert!(off + 4 <= HEADER_LEN && off % 4 == 0);
    // SAFETY: off is a constant inside the header (checked above), 4-aligned, and every caller
    // has checked seg.len() >= HEADER_LEN; the mapping is page-aligned and lives as long as seg.
    // Read-only mappings are only loaded from (no store goes through these for them).
    unsafe { AtomicU32::from_ptr(seg.as_ptr().add(off) as *mut u32) }
}

fn word64(seg: &Segment, off: usize) -> &AtomicU64 {
    debug_assert!(off + 8 <= HEADER_LEN && off % 8 == 0);
    // SAFETY: as in word32, with 8-byte alignment.
    unsafe { AtomicU64::from_ptr(seg.as_ptr().add(off) as *mut u64) }
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
    /// not fit the mapped size, or a creator that died mid-initialisation,
    /// [`Error::Mismatch`] for another version or kind.
    pub fn open(name: &str, kind: Kind, mode: Mode, timeout: Duration) -> Result<Layout> {
        let deadline = crate::deadline_after(timeout);
        let mut pause = Duration::from_micros(50);
        // Phase 1: the object exists but its creator may not have sized it yet (shm_open and
        // ftruncate are two calls). No mapping exists to wait on, so back off briefly.
        let seg = loop {
            let small = match Segment::open(name, mode) {
                Ok(seg) if seg.len() >= HEADER_LEN => break seg,
                Ok(seg) => seg.len(),
                Err(Error::Corrupt(_)) => 0,
                Err(e) => return Err(e),
            };
            if Instant::now() >= deadline {
                return Err(Error::TimedOut(format!(
                    "segment '{name}' stayed {small} bytes (less than a {HEADER_LEN}-byte \
                     header) for {timeout:?}; is it a shmchan segment?"
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        };
        Layout::attach_until(seg, kind, deadline)
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
        let magic = word64(&seg, OFF_MAGIC).load(Ordering::Relaxed);
        if magic != MAGIC {
            return Err(Error::Corrupt(format!(
                "{d} is not a shmchan segment: magic {magic:#018x}, expected {MAGIC:#018x}"
            )));
        }
        let version = word32(&seg, OFF_VERSION).load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(Error::Mismatch {
                segment: d,
                what: "layout version",
                expected: LAYOUT_VERSION.into(),
                found: version.into(),
            });
        }
        let found = word32(&seg, OFF_KIND).load(Ordering::Relaxed);
        if found != kind.0 {
            return Err(Error::Mismatch {
                segment: d,
                what: "kind",
                expected: kind.0.into(),
                found: found.into(),
            });
        }
        let cap = word32(&seg, OFF_PCAP).load(Ordering::Relaxed);
        let total = word64(&seg, OFF_TOTAL).load(Ordering::Relaxed);
        let poff = word64(&seg, OFF_POFF).load(Ordering::Relaxed);
        let doff = word64(&seg, OFF_DOFF).load(Ordering::Relaxed);
        let mut geometry = [0u64; 8];
        for (i, g) in geometry.iter_mut().enumerate() {
            *g = word64(&seg, OFF_GEOM + 8 * i).load(Ordering::Relaxed);
        }
        let corrupt = |why: String| Err(Error::Corrupt(format!("{d}: {why}")));
        if total > seg.len() as u64 {
            return corrupt(format!(
                "header says the layout is {total} bytes, only {} are mapped",
                seg.len()
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

    /// A word of record `index`, at byte offset `off` of the record.
    fn rec_word(&self, index: u32, off: usize) -> &AtomicU64 {
        assert!(index < self.participant_cap && off + 8 <= RECORD_LEN && off % 8 == 0);
        let at = self.participants_off + index as usize * RECORD_LEN + off;
        // SAFETY: index < cap (asserted), so `at + 8 <= data_off <= len` (validated on attach or
        // computed on create); participants_off is 128-aligned and the mapping page-aligned, so
        // the word is 8-aligned. Loads are fine on read-only mappings; callers that store
        // (claim, release) first check the segment is writable via `writable()`.
        unsafe { AtomicU64::from_ptr(self.segment.as_ptr().add(at) as *mut u64) }
    }

    fn writable(&self) -> Result<()> {
        self.segment.as_mut_ptr().map(|_| ())
    }

    /// The state of record `index`, as it is now. `None` for a free record.
    ///
    /// # Panics
    ///
    /// If `index >= participant_capacity()`.
    pub fn participant(&self, index: u32) -> Option<Participant> {
        // Acquire: pairs with the Release store that published the record live in `claim`, so
        // the start time read next belongs to this owner.
        let owner = self.rec_word(index, REC_OWNER).load(Ordering::Acquire);
        if owner == 0 {
            return None;
        }
        Some(Participant {
            index,
            owner,
            process: ProcessId {
                pid: owner as u32,
                start_time: if (owner >> 40) & 0xff == OWNER_LIVE {
                    self.rec_word(index, REC_START).load(Ordering::Relaxed)
                } else {
                    0
                },
            },
            role: Role((owner >> 32) as u8),
        })
    }

    /// The records held by live processes, optionally only those of one role.
    pub fn live_participants(&self, role: Option<Role>) -> Vec<Participant> {
        (0..self.participant_cap)
            .filter_map(|i| self.participant(i))
            .filter(|p| role.is_none_or(|r| p.role == r) && p.is_alive())
            .collect()
    }

    /// Claims record `index` for this process, with `role`. A record held by a dead process
    /// of the same role whose `intent` is clear is taken over: the caller must then undo what
    /// the dead owner held (counters, announcements) before using it, as a clean leave would
    /// have; use [`claim_free`](Self::claim_free) to take free records only.
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] if a live process holds it, a dead one of another role, or a dead one
    /// that left an intent to repair; [`Error::PermissionDenied`] for a read-only segment.
    ///
    /// # Panics
    ///
    /// If `index >= participant_capacity()`.
    pub fn claim(&self, index: u32, role: Role) -> Result<Registration> {
        self.claim_record(index, role, true)
    }

    /// Claims record `index` only if it is free (never a dead process's).
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] if anybody, live or dead, holds it; [`Error::PermissionDenied`] for a
    /// read-only segment.
    ///
    /// # Panics
    ///
    /// If `index >= participant_capacity()`.
    pub fn claim_free(&self, index: u32, role: Role) -> Result<Registration> {
        self.claim_record(index, role, false)
    }

    fn claim_record(&self, index: u32, role: Role, takeover: bool) -> Result<Registration> {
        self.writable()?;
        let me = ProcessId::current();
        let word = self.rec_word(index, REC_OWNER);
        loop {
            // Acquire: pairs with the Release in `release`/`claim` by the previous owner.
            let cur = word.load(Ordering::Acquire);
            if cur != 0 {
                let p = self.participant(index).filter(|p| p.owner == cur);
                let Some(p) = p else {
                    continue; // changed under us: look again
                };
                let held = |why: String| {
                    Error::InUse(format!(
                        "{}: participant record {index} {why}",
                        self.segment.describe()
                    ))
                };
                if p.is_alive() {
                    return Err(held(format!("is held by live process {}", p.process.pid)));
                }
                if !takeover {
                    return Err(held(format!(
                        "belongs to dead process {} (not yet released)",
                        p.process.pid
                    )));
                }
                if p.role != role {
                    return Err(held(format!(
                        "belongs to dead process {} of role {}, not {}",
                        p.process.pid, p.role.0, role.0
                    )));
                }
                // Read once: a peer may change it between two reads.
                let intent = self.intent(index);
                if intent != 0 {
                    return Err(held(format!(
                        "belongs to dead process {} that left position {} to repair",
                        p.process.pid,
                        intent.wrapping_sub(1)
                    )));
                }
            }
            let generation = ((cur >> 48) + 1) & 0xffff;
            let filling = u64::from(me.pid)
                | u64::from(role.0) << 32
                | OWNER_FILLING << 40
                | generation << 48;
            // Acquire on success: we take over the record after the previous owner's last
            // writes (its intent clear) became visible.
            if word
                .compare_exchange(cur, filling, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                self.rec_word(index, REC_START)
                    .store(me.start_time, Ordering::Relaxed);
                self.rec_word(index, REC_INTENT).store(0, Ordering::Relaxed);
                for i in 0..RECORD_AUX_WORDS {
                    self.rec_word(index, REC_AUX + 8 * i)
                        .store(0, Ordering::Relaxed);
                }
                let live = (filling & !(0xff << 40)) | OWNER_LIVE << 40;
                // Release: pairs with the Acquire load in `participant`; readers that see LIVE
                // see our start time.
                word.store(live, Ordering::Release);
                return Ok(Registration { index, owner: live });
            }
        }
    }

    /// Claims any free record (or one of a dead process of the same role, see
    /// [`claim`](Self::claim)) in `range` for this process.
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] if every record in the range is held by a live process (or awaits
    /// repair); [`Error::PermissionDenied`] for a read-only segment.
    pub fn claim_any(&self, range: std::ops::Range<u32>, role: Role) -> Result<Registration> {
        self.claim_any_with(range, role, true)
    }

    /// Claims any free record in `range`, never one of a dead process.
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] if no record in the range is free; [`Error::PermissionDenied`] for
    /// a read-only segment.
    pub fn claim_any_free(&self, range: std::ops::Range<u32>, role: Role) -> Result<Registration> {
        self.claim_any_with(range, role, false)
    }

    fn claim_any_with(
        &self,
        range: std::ops::Range<u32>,
        role: Role,
        takeover: bool,
    ) -> Result<Registration> {
        let range = range.start..range.end.min(self.participant_cap);
        let mut last = None;
        for i in range.clone() {
            match self.claim_record(i, role, takeover) {
                Ok(r) => return Ok(r),
                Err(Error::InUse(m)) => last = Some(m),
                Err(e) => return Err(e),
            }
        }
        Err(Error::InUse(format!(
            "{}: all {} participant records in {range:?} are taken{}",
            self.segment.describe(),
            range.len(),
            last.map(|m| format!(" (last: {m})")).unwrap_or_default()
        )))
    }

    /// Releases a record this process holds. A record taken over meanwhile (this process was
    /// thought dead) is left alone.
    pub fn release(&self, reg: Registration) {
        if self.writable().is_err() {
            return;
        }
        // Release: our last writes to shared state happen-before the next owner's claim
        // (its Acquire CAS).
        let _ = self.rec_word(reg.index, REC_OWNER).compare_exchange(
            reg.owner,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// The `intent` word of record `index` (0 = none; upper layers store `position + 1`).
    ///
    /// # Panics
    ///
    /// If `index >= participant_capacity()`.
    pub fn intent(&self, index: u32) -> u64 {
        // SeqCst: pairs with the SeqCst intent store before a claim CAS (ring/mpmc.rs): a
        // repairer that saw the counter move past a position sees the claimer's intent.
        self.rec_word(index, REC_INTENT).load(Ordering::SeqCst)
    }

    /// The `intent` word of record `index`, as an atomic, for upper layers.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] for a read-only segment.
    ///
    /// # Panics
    ///
    /// If `index >= participant_capacity()`.
    pub fn intent_word(&self, index: u32) -> Result<&AtomicU64> {
        self.writable()?;
        Ok(self.rec_word(index, REC_INTENT))
    }

    /// Auxiliary word `i` (`< RECORD_AUX_WORDS`) of record `index`, free for upper layers.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] for a read-only segment.
    ///
    /// # Panics
    ///
    /// If `index >= participant_capacity()` or `i >= RECORD_AUX_WORDS`.
    pub fn aux_word(&self, index: u32, i: usize) -> Result<&AtomicU64> {
        assert!(i < RECORD_AUX_WORDS);
        self.writable()?;
        Ok(self.rec_word(index, REC_AUX + 8 * i))
    }
}

/// Waits until the header's state is READY, or fails.
fn wait_ready(seg: &Segment, deadline: Instant) -> Result<()> {
    let state = word32(seg, OFF_STATE);
    loop {
        // Acquire: pairs with the creator's Release store of READY in `Layout::init`.
        let s = state.load(Ordering::Acquire);
        match s {
            STATE_READY => return Ok(()),
            STATE_FRESH | STATE_INIT => {}
            other => {
                return Err(Error::Corrupt(format!(
                    "{}: header state {other} is none of 0, 1, 2; not a shmchan segment",
                    seg.describe()
                )));
            }
        }
        let creator = ProcessId {
            pid: word32(seg, OFF_CPID).load(Ordering::Relaxed),
            start_time: word64(seg, OFF_CSTART).load(Ordering::Relaxed),
        };
        // Acquire: as above, pairs with the creator's Release store of READY (it may have
        // published just before dying).
        if creator.pid != 0 && !creator.is_alive() && state.load(Ordering::Acquire) != STATE_READY {
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
        // Sleep on the state word; wake at the latest every 10 ms to re-check the creator.
        // A read-only mapping can still be waited on (FUTEX_WAIT only reads).
        futex::wait(
            state,
            s,
            Some((deadline - now).min(Duration::from_millis(10))),
        );
    }
}

/// A participant record as read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Participant {
    /// The record's index in the table.
    pub index: u32,
    owner: u64,
    process: ProcessId,
    /// The role it registered with.
    pub role: Role,
}

impl Participant {
    /// The process id that holds the record.
    pub fn pid(&self) -> u32 {
        self.process.pid
    }
    /// The process as liveness checks see it.
    pub(crate) fn process_id(&self) -> ProcessId {
        self.process
    }
    /// Whether that process still runs (same pid and start time, not a zombie).
    pub fn is_alive(&self) -> bool {
        self.process.is_alive()
    }
    /// The record's generation: it grows each time the record is claimed, so (index,
    /// generation) names one registration for as long as the 16-bit counter does not wrap.
    pub fn generation(&self) -> u16 {
        (self.owner >> 48) as u16
    }
}

/// A claimed participant record; hand it back with [`Layout::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    index: u32,
    owner: u64,
}

impl Registration {
    /// The record's index.
    pub fn index(&self) -> u32 {
        self.index
    }
    /// The record's generation at this claim; see [`Participant::generation`].
    pub fn generation(&self) -> u16 {
        (self.owner >> 48) as u16
    }
}

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
