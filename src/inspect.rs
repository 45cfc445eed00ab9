//! Read-only inspection of shmchan segments, for operators and the `shmchan` command-line tool:
//! what exists in `/dev/shm`, who is attached, how full each ring is, which segments are stale,
//! and their careful removal.
//!
//! Everything here maps segments read-only (`PROT_READ`) and never joins a participant table:
//! looking does not change what it looks at. Values are a snapshot; a peer may change them the
//! next instant, and a hostile peer may have written anything, so every number read is
//! validated before it sizes or addresses anything, as everywhere in the crate.
//!
//! # What is a shmchan segment
//!
//! An object in `/dev/shm` whose first eight bytes are the header magic `b"SHMCHAN\x01"`,
//! whatever its name. Other objects are skipped, and so are those that cannot be told apart
//! from them: objects of size 0 or below the 256-byte header (a creator killed between
//! `shm_open` and `ftruncate`, or before it wrote the magic, leaves one of these; remove it by
//! name with [`Segment::unlink`](crate::Segment::unlink)), and objects this user may not read.
//!
//! # Stale
//!
//! A segment is *stale* when nobody can ever use it again: its header is published, no live
//! process holds a participant record, and its creator is dead; or its header was never
//! published and its creator is dead (it can never become ready). Liveness is the rings' own
//! proof (pid plus start time, zombies are dead). A segment made in another pid namespace is
//! never stale from here: its pids mean nothing in ours. The verdict is the layout's own
//! (`Layout::staleness`), the rule `create` applies before it takes over a taken name.
//!
//! # Removal and its races
//!
//! [`reclaim`] removes one stale segment and never a live one it can see:
//!
//! 1. it checks staleness on its own read-only mapping, and checks again right before it acts;
//! 2. where it may write the header, it marks it *being reclaimed* and proves staleness once
//!    more (the layout's [stale segments](crate::layout#stale-segments) protocol, shared with
//!    `create`): an attacher that claims a record from then on sees the mark and backs off,
//!    one that claimed before is seen and the removal is abandoned;
//! 3. it removes the name with the segment's `remove_if_same`: the name is moved aside with
//!    `renameat2(RENAME_NOREPLACE)`, device and inode of the moved object are compared with
//!    those checked, and only a match is unlinked; a new object that took the name meanwhile
//!    is moved back ([`Reclaim::Replaced`]).
//!
//! A plain "compare inodes, then `shm_unlink(name)`" would leave a window in which a new
//! segment under the name is removed; the rename closes it. While a new object is moved back
//! (microseconds, only in that race), an `open` of the name fails with `NotFound`. Without
//! write access to the header (another user's segment), step 2 is skipped: an attacher racing
//! the removal may then keep a mapping of a nameless segment.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::layout::{HEADER_LEN, Kind, LAYOUT_VERSION, Layout, MAGIC, RECORD_LEN, Role, Staleness};
use crate::ring::{self, ABANDONED_TAG, CTRL_LEN, DISCARDED, Geometry};
use crate::segment::{Mode, Segment};
use crate::sys::process::{Namespaces, ProcessId};
use crate::wait::protocol::AUX_PARKED;

/// Where POSIX shared-memory objects live on Linux.
pub const SHM_DIR: &str = "/dev/shm";

// Header and record offsets: the layout's own (one definition, `layout.rs`).
use crate::layout::{
    OFF_CPID, OFF_CSTART, OFF_KIND, OFF_MAGIC, OFF_PCAP, OFF_PIDNS, OFF_STATE, OFF_TOTAL,
    OFF_VERSION, REC_AUX,
};
/// Slots at the head of a Vyukov ring that [`inspect`] describes.
const HEAD_SLOTS: u64 = 8;
/// The role heap participants register with (`heap/api.rs`).
const HEAP_ROLE: Role = Role(0x48);

/// The header's publication state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderState {
    /// Created, not yet being initialised (0).
    Fresh,
    /// Its creator is filling it in (1).
    Initialising,
    /// Published (2).
    Ready,
    /// Any other value: not a shmchan header, or a corrupt one.
    Invalid(u32),
}

impl HeaderState {
    fn from_word(w: u32) -> HeaderState {
        match w {
            0 => HeaderState::Fresh,
            1 => HeaderState::Initialising,
            2 => HeaderState::Ready,
            other => HeaderState::Invalid(other),
        }
    }

    /// `"fresh"`, `"initialising"`, `"ready"` or `"invalid"`.
    pub fn name(self) -> &'static str {
        match self {
            HeaderState::Fresh => "fresh",
            HeaderState::Initialising => "initialising",
            HeaderState::Ready => "ready",
            HeaderState::Invalid(_) => "invalid",
        }
    }
}

/// A process named in a header or record, and whether it runs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its pid (0: not recorded).
    pub pid: u32,
    /// Whether it runs (same pid and start time, not a zombie).
    pub alive: bool,
}

/// The header fields, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Publication state.
    pub state: HeaderState,
    /// Layout version (this build reads [`LAYOUT_VERSION`]).
    pub version: u32,
    /// The kind word.
    pub kind: Kind,
    /// Records in the participant table.
    pub participant_capacity: u32,
    /// Bytes the layout says it uses.
    pub total_len: u64,
    /// The process that created it.
    pub creator: ProcessInfo,
    /// The eight geometry words (their meaning is the kind's).
    pub geometry: [u64; 8],
    /// Whether the creator's pid namespace differs from ours (liveness cannot be judged).
    pub foreign_namespace: bool,
}

/// One participant record in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// Index in the table.
    pub index: u32,
    /// The owner's pid.
    pub pid: u32,
    /// The role number it registered with.
    pub role: Role,
    /// Whether the owner runs.
    pub alive: bool,
    /// The record's generation (grows with each claim).
    pub generation: u16,
    /// The ring position the owner was claiming or holds, if any (`intent - 1`).
    pub intent: Option<u64>,
    /// The parked announcement: 0 none, 1 on a futex, 2 on a doorbell.
    pub parked: u64,
}

impl ParticipantInfo {
    /// `"producer"`, `"consumer"`, `"heap"` or `"role N"`.
    pub fn role_name(&self) -> String {
        role_name(self.role)
    }
}

/// `"producer"`, `"consumer"`, `"heap"` or `"role N"`.
pub fn role_name(role: Role) -> String {
    match role {
        Role::PRODUCER => "producer".into(),
        Role::CONSUMER => "consumer".into(),
        HEAP_ROLE => "heap".into(),
        Role(n) => format!("role {n}"),
    }
}

/// What a slot at the head of a Vyukov ring (MPSC, MPMC) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// A published message of this many bytes.
    Message(u32),
    /// Released by a repair: its producer died before committing (consumers skip it).
    Abandoned,
    /// Reserved and dropped uncommitted by a live producer (consumers skip it).
    Discarded,
    /// Claimed by a producer that has not published it yet.
    Unpublished,
    /// A sequence word that fits none of the above (a corrupt ring, or one that moved on
    /// while we looked).
    Unexpected(u64),
}

/// One slot at the head of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotInfo {
    /// The ring position it serves.
    pub position: u64,
    /// What it holds.
    pub state: SlotState,
}

/// A ring's control block, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingInfo {
    /// Largest message in bytes.
    pub slot_size: u64,
    /// Number of slots.
    pub capacity: u64,
    /// Next position to publish (SPSC) or claim (Vyukov).
    pub tail: u64,
    /// Next position to consume (or claim, MPMC).
    pub head: u64,
    /// `tail - head`, or `None` if the positions are out of range (corrupt).
    pub pending: Option<u64>,
    /// Attach flags: bit 0 a producer attached once, bit 1 a consumer attached once.
    pub flags: u32,
    /// The producers' clean-close counter (a hint).
    pub producers: u32,
    /// The consumers' clean-close counter (a hint).
    pub consumers: u32,
    /// Consumers announced as sleeping.
    pub consumer_sleepers: u32,
    /// Producers announced as sleeping.
    pub producer_sleepers: u32,
    /// Consumers in *fenced mode* (they park often, so the producers fence every publish
    /// instead of the consumers paying a system-wide barrier per park).
    pub consumer_fenced: u32,
    /// Producers in fenced mode (the consumers fence every free).
    pub producer_fenced: u32,
    /// The first slots from `head` (Vyukov rings only; empty for SPSC).
    pub head_slots: Vec<SlotInfo>,
}

/// A heap's geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapInfo {
    /// The heap's own format version.
    pub format: u64,
    /// Bytes per chunk (0 if the header's chunk shift is out of range).
    pub chunk_size: u64,
    /// Number of chunks.
    pub chunks: u64,
}

/// Everything [`inspect`] reads of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Its name, with the leading `/`.
    pub name: String,
    /// The object's size in bytes.
    pub size: u64,
    /// The header.
    pub header: HeaderInfo,
    /// The records in use (empty if the header is not ready or not valid).
    pub participants: Vec<ParticipantInfo>,
    /// The ring, for channel kinds with a valid header.
    pub ring: Option<RingInfo>,
    /// The heap geometry, for heaps.
    pub heap: Option<HeapInfo>,
    /// Why the header or ring could not be read in full, if it could not.
    pub problem: Option<String>,
    /// Whether the segment is stale (see the [module docs](self#stale)).
    pub stale: bool,
    dev_ino: (u64, u64),
}

impl SegmentInfo {
    /// `"spsc"`, `"mpsc"`, `"mpmc"`, `"heap"`, `"endpoint"`, `"user"` or `"unknown"`.
    pub fn kind_name(&self) -> &'static str {
        kind_name(self.header.kind)
    }

    /// Whether any participant runs.
    pub fn has_live_participant(&self) -> bool {
        self.participants.iter().any(|p| p.alive)
    }
}

/// `"spsc"`, `"mpsc"`, `"mpmc"`, `"heap"`, `"endpoint"`, `"user"` (from [`Kind::USER_FIRST`])
/// or `"unknown"`.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::SPSC => "spsc",
        Kind::MPSC => "mpsc",
        Kind::MPMC => "mpmc",
        Kind::HEAP => "heap",
        Kind::ENDPOINT => "endpoint",
        Kind(n) if n >= Kind::USER_FIRST.0 => "user",
        _ => "unknown",
    }
}

/// A segment held open (read-only) while it is looked at.
struct Probe {
    seg: Segment,
    name: String,
}

/// Loads the aligned word at `off` of a read-only mapping: one volatile load (see
/// `layout.rs`, `shared_load!`, for why not an atomic), then an Acquire fence that pairs with
/// the writers' Release stores (the header's READY, a record going live, a slot's publish).
fn load<T: Copy>(seg: &Segment, off: usize) -> Option<T> {
    let width = std::mem::size_of::<T>();
    if off % width != 0 || off.checked_add(width)? > seg.len() {
        return None;
    }
    // SAFETY: off + width is inside the mapping (checked), off is aligned to the width and the
    // mapping is page-aligned; the mapping lives as long as `seg`. T is u32 or u64 here, for
    // which every bit pattern is valid.
    let v = unsafe { std::ptr::read_volatile(seg.as_ptr().add(off).cast::<T>()) };
    std::sync::atomic::fence(Ordering::Acquire);
    Some(v)
}

fn load32(seg: &Segment, off: usize) -> u32 {
    load::<u32>(seg, off).unwrap_or(0)
}

fn load64(seg: &Segment, off: usize) -> u64 {
    load::<u64>(seg, off).unwrap_or(0)
}

impl Probe {
    /// Opens `name` read-only; `Ok(None)` if it is not recognisably a shmchan segment.
    fn open(name: &str) -> Result<Option<Probe>> {
        let seg = match Segment::open(name, Mode::ReadOnly) {
            Ok(seg) => seg,
            // Size 0: nothing to recognise (see the module docs).
            Err(Error::Corrupt(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if seg.len() < HEADER_LEN || load64(&seg, OFF_MAGIC) != MAGIC {
            return Ok(None);
        }
        Ok(Some(Probe {
            seg,
            name: name.to_owned(),
        }))
    }

    /// Reads everything, now.
    fn read(&self) -> SegmentInfo {
        let seg = &self.seg;
        // Acquire (in `load`): the state first, so that a READY seen orders the reads after it.
        let state = HeaderState::from_word(load32(seg, OFF_STATE));
        let creator = ProcessId {
            pid: load32(seg, OFF_CPID),
            start_time: load64(seg, OFF_CSTART),
        };
        let theirs = load64(seg, OFF_PIDNS);
        let ours = Namespaces::current().pid;
        let foreign_namespace = theirs != 0 && ours != 0 && theirs != ours;
        let mut geometry = [0u64; 8];
        for (i, g) in geometry.iter_mut().enumerate() {
            *g = load64(seg, 64 + 8 * i);
        }
        let header = HeaderInfo {
            state,
            version: load32(seg, OFF_VERSION),
            kind: Kind(load32(seg, OFF_KIND)),
            participant_capacity: load32(seg, OFF_PCAP),
            total_len: load64(seg, OFF_TOTAL),
            creator: ProcessInfo {
                pid: creator.pid,
                alive: !foreign_namespace && creator.pid != 0 && creator.is_alive(),
            },
            geometry,
            foreign_namespace,
        };
        let mut info = SegmentInfo {
            name: self.name.clone(),
            size: seg.object_len().unwrap_or(seg.len() as u64),
            header,
            participants: Vec::new(),
            ring: None,
            heap: None,
            problem: None,
            stale: false,
            dev_ino: seg.dev_ino(),
        };
        if foreign_namespace {
            info.problem = Some(
                "created in another pid namespace: its participants' liveness cannot be judged \
                 from here"
                    .into(),
            );
            return info;
        }
        match state {
            HeaderState::Ready => {}
            HeaderState::Invalid(w) => {
                info.problem = Some(format!("header state {w} is none of 0, 1, 2"));
                return info;
            }
            HeaderState::Fresh | HeaderState::Initialising => {
                // Never published: stale once its creator is gone (it can never become ready).
                info.stale = self.is_stale();
                if info.stale {
                    info.problem = Some(format!(
                        "its creator (pid {}) died before publishing the header",
                        creator.pid
                    ));
                }
                return info;
            }
        }
        if info.header.version != LAYOUT_VERSION {
            info.problem = Some(format!(
                "layout version {}, this build reads {LAYOUT_VERSION}",
                info.header.version
            ));
            return info;
        }
        // Validation by the layout itself (bounds of the table and data area against the mapped
        // and the current object size). It wants the segment by value: a second read-only
        // mapping of the same object, so that `self.seg` keeps naming what we checked.
        let layout = match self.reopen().and_then(|s| {
            if s.dev_ino() != seg.dev_ino() {
                return Err(Error::NotFound(format!(
                    "segment '{}' was replaced while it was read",
                    self.name
                )));
            }
            Layout::attach(s, info.header.kind, Duration::ZERO)
        }) {
            Ok(l) => l,
            Err(e) => {
                info.problem = Some(e.to_string());
                return info;
            }
        };
        info.participants = participants(&layout);
        let kind = layout.kind();
        if matches!(kind, Kind::SPSC | Kind::MPSC | Kind::MPMC) {
            match ring_info(&layout, &self.name) {
                Ok(r) => info.ring = Some(r),
                Err(e) => info.problem = Some(e.to_string()),
            }
        } else if kind == Kind::HEAP {
            let g = layout.geometry();
            info.heap = Some(HeapInfo {
                format: g[0],
                // A peer wrote the shift: out of range is 0, never truncated into a size.
                chunk_size: u32::try_from(g[1])
                    .ok()
                    .and_then(|shift| 1u64.checked_shl(shift))
                    .unwrap_or(0),
                chunks: g[2],
            });
        }
        info.stale = self.is_stale();
        info
    }

    /// Whether the segment is stale now, by the layout's rule ([`Layout::staleness`], the one
    /// `create` applies to a taken name): judged last, after the snapshot above, and only
    /// for a header this build reads.
    fn is_stale(&self) -> bool {
        matches!(Layout::staleness(&self.seg), Ok(Staleness::Stale { .. }))
    }

    fn reopen(&self) -> Result<Segment> {
        Segment::open(&self.name, Mode::ReadOnly)
    }
}

fn participants(layout: &Layout) -> Vec<ParticipantInfo> {
    let seg = layout.segment();
    (0..layout.participant_capacity())
        .filter_map(|i| {
            let p = layout.participant(i)?;
            let intent = layout.intent(i);
            // The table starts at HEADER_LEN (validated by the layout) and record `i` lies
            // inside it; `load` bounds-checks again.
            let rec = HEADER_LEN + i as usize * RECORD_LEN;
            Some(ParticipantInfo {
                index: i,
                pid: p.pid(),
                role: p.role,
                alive: p.is_alive(),
                generation: p.generation(),
                intent: intent.checked_sub(1),
                parked: load64(seg, rec + REC_AUX + 8 * AUX_PARKED),
            })
        })
        .collect()
}

fn ring_info(layout: &Layout, name: &str) -> Result<RingInfo> {
    let what = format!("{} channel '{name}'", kind_name(layout.kind()));
    let g = Geometry::from_words(layout.geometry(), layout.data_len(), &what)?;
    let seg = layout.segment();
    // data_offset + region_len <= data_offset + data_len <= mapped length (validated by the
    // layout and `from_words`).
    let base = layout.data_offset();
    let w64 = |off: usize| load64(seg, base + off);
    let w32 = |off: usize| load32(seg, base + off);
    let (tail, head) = (w64(ring::OFF_TAIL), w64(ring::OFF_HEAD));
    let cap = g.capacity as u64;
    let pending = ring::checked_pending(tail, head, cap).ok();
    let mut head_slots = Vec::new();
    if layout.kind() != Kind::SPSC {
        let end = tail.min(head.saturating_add(cap.min(HEAD_SLOTS)));
        for p in head..end {
            let slot = CTRL_LEN + (p % cap) as usize * g.stride();
            let seq = w64(slot);
            let len = w32(slot + 8);
            let state = if seq == p.wrapping_add(1) | ABANDONED_TAG {
                SlotState::Abandoned
            } else if seq == p.wrapping_add(1) {
                if len == DISCARDED {
                    SlotState::Discarded
                } else {
                    SlotState::Message(len)
                }
            } else if seq == p {
                SlotState::Unpublished
            } else {
                SlotState::Unexpected(seq)
            };
            head_slots.push(SlotInfo { position: p, state });
        }
    }
    Ok(RingInfo {
        slot_size: g.slot_size as u64,
        capacity: cap,
        tail,
        head,
        pending,
        flags: w32(ring::OFF_FLAGS),
        producers: w32(ring::OFF_PRODUCERS),
        consumers: w32(ring::OFF_CONSUMERS),
        consumer_sleepers: w32(ring::OFF_CONS_SLEEPERS),
        producer_sleepers: w32(ring::OFF_PROD_SLEEPERS),
        consumer_fenced: w32(ring::OFF_CONS_FENCED),
        producer_fenced: w32(ring::OFF_PROD_FENCED),
        head_slots,
    })
}

/// Reads the segment `name` (`/orders`).
///
/// # Errors
///
/// [`Error::NotFound`]; [`Error::InvalidArgument`] for a name that is not a POSIX shm name or
/// an object that is not a shmchan segment; [`Error::PermissionDenied`]; [`Error::Io`].
pub fn inspect(name: &str) -> Result<SegmentInfo> {
    match Probe::open(name)? {
        Some(p) => Ok(p.read()),
        None => Err(Error::InvalidArgument(format!(
            "segment '{name}' is not a shmchan segment (no shmchan header)"
        ))),
    }
}

/// Every shmchan segment in [`SHM_DIR`] whose name (with the leading `/`) starts with
/// `prefix`, sorted by name. Objects that are not shmchan segments, vanish while listed, or
/// may not be read are skipped.
///
/// # Errors
///
/// [`Error::Io`] if the directory cannot be read.
pub fn list(prefix: &str) -> Result<Vec<SegmentInfo>> {
    let mut out = Vec::new();
    for name in shm_names(prefix)? {
        if let Ok(Some(p)) = Probe::open(&name) {
            out.push(p.read());
        }
    }
    Ok(out)
}

/// The names in [`SHM_DIR`] that start with `prefix` and are valid shm names, sorted.
fn shm_names(prefix: &str) -> Result<Vec<String>> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(Error::Io)?;
    let mut names: Vec<String> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            if !e.file_type().ok()?.is_file() {
                return None;
            }
            let name = format!("/{}", e.file_name().to_str()?);
            (name.starts_with(prefix) && crate::segment::validate_name(&name).is_ok())
                .then_some(name)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// What [`reclaim`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reclaim {
    /// The stale segment was removed.
    Removed(SegmentInfo),
    /// Stale, and would have been removed (a dry run).
    WouldRemove(SegmentInfo),
    /// Not stale (checked again right before acting): left alone.
    NotStale(SegmentInfo),
    /// The name was gone by the time we acted (removed by someone else).
    Gone,
    /// The name came to refer to a new object between the check and the removal; it was put
    /// back and left alone.
    Replaced,
}

/// Removes `name` if it is stale (see the [module docs](self#removal-and-its-races) for how,
/// and what races remain); with `dry_run`, only says whether it would.
///
/// # Errors
///
/// As [`inspect`]; [`Error::PermissionDenied`] if the name may not be removed (another user's,
/// in the sticky `/dev/shm`); [`Error::Io`] if a new object that took the name could not be
/// put back (it is then left under the private name in the error message).
pub fn reclaim(name: &str, dry_run: bool) -> Result<Reclaim> {
    let probe = match Probe::open(name) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Err(Error::InvalidArgument(format!(
                "segment '{name}' is not a shmchan segment (no shmchan header)"
            )));
        }
        Err(Error::NotFound(_)) => return Ok(Reclaim::Gone),
        Err(e) => return Err(e),
    };
    let info = probe.read();
    if !info.stale {
        return Ok(Reclaim::NotStale(info));
    }
    if dry_run {
        return Ok(Reclaim::WouldRemove(info));
    }
    // Again, right before acting: a process may have attached since.
    let info = probe.read();
    if !info.stale {
        return Ok(Reclaim::NotStale(info));
    }
    // Mark the header "being reclaimed" first when we may write it (an attacher that comes
    // now backs off, see layout.rs "Stale segments"); then move the name aside and remove
    // the object only if it is the one we checked.
    if let Ok(rw) = Segment::open(name, Mode::ReadWrite) {
        if rw.dev_ino() == info.dev_ino {
            if let Err(Error::AlreadyExists(_)) = Layout::mark_reclaiming(&rw) {
                return Ok(Reclaim::NotStale(probe.read()));
            }
        }
    }
    Ok(match crate::segment::remove_if_same(name, info.dev_ino)? {
        crate::segment::Removal::Removed => Reclaim::Removed(info),
        crate::segment::Removal::Gone => Reclaim::Gone,
        crate::segment::Removal::Replaced => Reclaim::Replaced,
    })
}

/// The live processes behind `info` (its creator and participants), sorted, each once.
pub fn live_pids(info: &SegmentInfo) -> Vec<u32> {
    let mut pids: Vec<u32> = info
        .participants
        .iter()
        .filter(|p| p.alive)
        .map(|p| p.pid)
        .collect();
    if info.header.creator.alive {
        pids.push(info.header.creator.pid);
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}
