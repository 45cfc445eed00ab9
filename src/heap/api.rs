//! The public heap types over the allocator: [`Heap`], [`HeapOptions`], [`ShmBuf`], [`Handle`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::{Duration, Instant};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::alloc::{Bad, Block, owner_id};
use super::region::{OFF_FREE_SEQ, OFF_WAITERS, Offsets, Region};
use crate::Stale;
use crate::error::{Error, Result};
use crate::layout::{
    self, CreateNamed, DEFAULT_INIT_TIMEOUT, Kind, Layout, LayoutSpec, OnStale, Registration, Role,
};
use crate::segment::{Mode, SegmentOptions};
use crate::sys::futex;
use crate::wait::protocol::{Bells, Sleepers, WaitSet};

/// Version of the heap's own format, in geometry word 0.
const HEAP_FORMAT: u64 = 1;
/// Chunks are 64 KiB.
const CHUNK_SHIFT: u32 = 16;
/// Most chunks a heap may have (payload fields are 32 bits; 1 TiB of heap).
const MAX_CHUNKS: u64 = 1 << 24;
/// The role heap participants register with.
const HEAP_ROLE: Role = Role(0x48);
/// Longest a bounded wait sleeps before it re-runs the dead-owner sweep.
pub(super) const RECLAIM_INTERVAL: Duration = Duration::from_millis(10);

/// A block handed from one process to another: plain bytes that any channel can carry.
///
/// It names a block by its offset in the heap, the length the sender allocated, the block's
/// generation, and check bits tied to the heap. [`Heap::take`] validates all of them; a forged,
/// stale or foreign handle gives [`Error::Corrupt`].
///
/// # Examples
///
/// ```
/// use shmchan::Handle;
/// use zerocopy::{FromBytes, IntoBytes};
///
/// # fn main() -> shmchan::Result<()> {
/// # let name = format!("/shmchan-doc-handle-{}", std::process::id());
/// # let heap = shmchan::Heap::options().unlink_on_drop(true).create(&name, 1 << 20)?;
/// let handle = heap.alloc(100)?.into_handle();
/// let bytes: [u8; 24] = handle.as_bytes().try_into().unwrap(); // what a channel carries
/// let back = Handle::read_from_bytes(&bytes).unwrap();
/// assert_eq!(back, handle);
/// drop(heap.take(back)?); // freed
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Handle {
    offset: u64,
    len: u64,
    generation: u32,
    check: u32,
}

impl Handle {
    /// Offset of the block from the start of the heap area.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// Length in bytes the block was allocated with.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether the length is zero.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The block's generation when the handle was made.
    pub fn generation(&self) -> u32 {
        self.generation
    }
}

/// Check bits of a handle: a mix of the heap id and the other fields.
fn check_bits(heap_id: u64, offset: u64, len: u64, generation: u32) -> u32 {
    let mut x = heap_id
        ^ offset.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ len.rotate_left(23).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ u64::from(generation) << 40;
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 32;
    x as u32
}

/// Options for creating a heap, in the style of `std::fs::OpenOptions`.
///
/// Defaults: permissions `0o600`, the name kept on drop, 64 participant records (processes
/// or heap handles attached at once), a 2 s wait for a creator that is still initialising,
/// and [`Stale::Reclaim`] for a name left by a heap whose processes all died.
#[derive(Debug, Clone)]
pub struct HeapOptions {
    /// Permissions and unlink on drop of the named segment.
    segment: SegmentOptions,
    max_participants: u32,
    init_timeout: Duration,
    stale: Stale,
}

impl Default for HeapOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl HeapOptions {
    /// The defaults.
    pub fn new() -> Self {
        HeapOptions {
            segment: SegmentOptions::new(),
            max_participants: 64,
            init_timeout: DEFAULT_INIT_TIMEOUT,
            stale: Stale::default(),
        }
    }
    /// Permission bits of the created segment (`0o600` by default); see
    /// [`SegmentOptions::permissions`].
    pub fn permissions(mut self, mode: u32) -> Self {
        self.segment = self.segment.permissions(mode);
        self
    }
    /// Whether dropping the creating [`Heap`] removes the name from `/dev/shm` (while it still
    /// names this heap). Processes attached keep their mappings.
    pub fn unlink_on_drop(mut self, yes: bool) -> Self {
        self.segment = self.segment.unlink_on_drop(yes);
        self
    }
    /// How many heap handles (usually one per process) may be attached at once; at most
    /// 4096.
    pub fn max_participants(mut self, n: u32) -> Self {
        self.max_participants = n;
        self
    }
    /// How long [`open`](Self::open) waits for a creator that is still initialising, and how
    /// long [`create`](Self::create) keeps looking at a name another creator is laying out.
    pub fn init_timeout(mut self, d: Duration) -> Self {
        self.init_timeout = d;
        self
    }
    /// What [`create`](Self::create) does when the name is taken by a *stale* heap: one whose
    /// creator and participants are all dead (pid and start time), as a SIGKILLed service
    /// leaves it. The same policies and default as channels' [`Options::stale`]:
    ///
    /// - [`Stale::Reclaim`] (default): take the name over and create the heap afresh; no
    ///   block of the dead heap is visible in the new one (handles into it are
    ///   [`Error::Corrupt`]). Of creators racing for one stale name, one wins; the others get
    ///   [`Error::AlreadyExists`] naming the winner.
    /// - [`Stale::Refuse`]: fail with [`Error::AlreadyExists`], naming the last pid seen and
    ///   how to reclaim.
    /// - [`Stale::Keep`]: attach to the stale heap as it is, as [`open`](Self::open) does
    ///   (its size must be the one asked for, else [`Error::Mismatch`]): blocks in flight
    ///   survive, blocks the dead held are freed by [`Heap::reclaim_dead`]. The name is then
    ///   not unlinked on drop: this process did not create it.
    ///
    /// A heap with a live participant or a live creator is never taken over, whatever the
    /// policy: `create` fails with [`Error::AlreadyExists`] naming the live pid.
    ///
    /// [`Options::stale`]: crate::Options::stale
    ///
    /// # Examples
    ///
    /// A restarted service gets its heap's name back after a crash (the default), or refuses
    /// to:
    ///
    /// ```
    /// use shmchan::{Error, Heap, Stale};
    ///
    /// # fn main() -> shmchan::Result<()> {
    /// # let name = format!("/shmchan-doc-heap-stale-{}", std::process::id());
    /// let heap = Heap::options().stale(Stale::Reclaim).create(&name, 1 << 20)?;
    /// // While it lives, nobody takes the name over:
    /// match Heap::options().stale(Stale::Reclaim).create(&name, 1 << 20) {
    ///     Err(Error::AlreadyExists(m)) => assert!(m.contains("live process")),
    ///     other => panic!("{other:?}"),
    /// }
    /// heap.destroy()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn stale(mut self, s: Stale) -> Self {
        self.stale = s;
        self
    }

    /// Creates the heap `name` with room for `size` bytes of blocks (rounded up to 64 KiB).
    /// A name taken by a stale heap is handled per [`stale`](Self::stale).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad name, a zero size, more than 1 TiB, or more than
    /// 4096 participants; [`Error::AlreadyExists`] for a live heap of that name (naming the
    /// live pid), or a stale one with [`Stale::Refuse`]; [`Error::TimedOut`] for a name
    /// another creator kept laying out for the whole init timeout; [`Error::Corrupt`] for a
    /// name that holds no shmchan segment; [`Error::Mismatch`] with [`Stale::Keep`];
    /// [`Error::PermissionDenied`]; [`Error::Io`].
    pub fn create(&self, name: &str, size: usize) -> Result<Heap> {
        let spec = self.spec(name, size)?;
        let what = format!("heap '{name}'");
        let job = CreateNamed {
            name,
            what: &what,
            len: spec.total_len()?,
            segment: &self.segment,
            init_timeout: self.init_timeout,
            stale: match self.stale {
                Stale::Reclaim => OnStale::Reclaim,
                Stale::Refuse => OnStale::Refuse,
                Stale::Keep => OnStale::Keep,
            },
            reclaim_hint: "HeapOptions::stale(Stale::Reclaim)",
        };
        job.run(
            |seg| Heap::from_layout(Layout::init(seg, &spec)?, name),
            || {
                let heap = self.open(name)?;
                // The chunk count is geometry word 2 (`spec`).
                let (want, found) = (spec.geometry[2], heap.inner.layout.geometry()[2]);
                if want != found {
                    return Err(Error::Mismatch {
                        segment: format!("{what} (kept: Stale::Keep)"),
                        what: "heap size in 64 KiB chunks",
                        expected: want,
                        found,
                    });
                }
                Ok(heap)
            },
        )
    }

    /// Opens the existing heap `name` read-write.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::PermissionDenied`], [`Error::TimedOut`] (creator still
    /// initialising), [`Error::Mismatch`] (not a heap, or another format),
    /// [`Error::Corrupt`] (a header that does not fit), [`Error::InUse`] (every participant
    /// record is held by a live process).
    pub fn open(&self, name: &str) -> Result<Heap> {
        let layout = Layout::open(name, Kind::HEAP, Mode::ReadWrite, self.init_timeout)?;
        Heap::from_layout(layout, name)
    }

    /// Creates a heap with no name, in a sealed memfd (`memfd_create`, sealed against
    /// shrinking): nothing appears in `/dev/shm`, and the heap vanishes with the last process
    /// that maps it. Share it by passing [`Heap::as_fd`] to another process (over a Unix
    /// socket with `SCM_RIGHTS`, or by inheritance), which attaches with
    /// [`attach_fd`](Self::attach_fd). [`Listener`](crate::endpoint::Listener) and
    /// [`Endpoint::connect`](crate::endpoint::Endpoint::connect) do this for every connection when asked to
    /// ([`Listener::heap_size`](crate::endpoint::Listener::heap_size)).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create), without the name errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::Heap;
    ///
    /// # fn main() -> shmchan::Result<()> {
    /// let heap = Heap::options().create_memfd(1 << 20)?;
    /// let buf = heap.alloc(1000)?;
    /// assert_eq!(buf.len(), 1000);
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_memfd(&self, size: usize) -> Result<Heap> {
        let name = "(memfd heap)";
        let spec = self.spec(name, size)?;
        let seg = SegmentOptions::new().memfd(spec.total_len()?)?;
        let layout = Layout::init(seg, &spec)?;
        Heap::from_layout(layout, name)
    }

    /// Attaches to a heap received as a descriptor (made by
    /// [`create_memfd`](Self::create_memfd) in another process). The descriptor must be sealed
    /// against shrinking (see [`Segment::from_fd`](crate::Segment::from_fd)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a descriptor that is not a sealed writable memfd; as
    /// [`open`](Self::open) for a segment that is not a heap.
    pub fn attach_fd(&self, fd: std::os::fd::OwnedFd) -> Result<Heap> {
        let seg = crate::segment::Segment::from_fd(fd, Mode::ReadWrite)?;
        let layout = Layout::attach(seg, Kind::HEAP, self.init_timeout)?;
        Heap::from_layout(layout, "(memfd heap)")
    }

    fn spec(&self, name: &str, size: usize) -> Result<LayoutSpec> {
        if size == 0 {
            return Err(Error::InvalidArgument(format!(
                "heap '{name}': size must be at least 1 byte"
            )));
        }
        let n = (size as u64).div_ceil(1 << CHUNK_SHIFT);
        if n > MAX_CHUNKS {
            return Err(Error::InvalidArgument(format!(
                "heap '{name}': {size} bytes asked for, at most {} allowed",
                MAX_CHUNKS << CHUNK_SHIFT
            )));
        }
        if self.max_participants == 0 || self.max_participants > layout::MAX_PARTICIPANTS {
            return Err(Error::InvalidArgument(format!(
                "heap '{name}': {} participants asked for, 1 to {} allowed",
                self.max_participants,
                layout::MAX_PARTICIPANTS
            )));
        }
        let data_abs = layout::HEADER_LEN + self.max_participants as usize * layout::RECORD_LEN;
        let off = Offsets::compute(n as u32, CHUNK_SHIFT, data_abs).ok_or_else(|| {
            Error::InvalidArgument(format!("heap '{name}': {size} bytes is too large"))
        })?;
        let heap_id = {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            let a = t ^ u64::from(std::process::id()) << 32 ^ (&off as *const _ as u64);
            check_bits(a, t, 0x5a17, 7) as u64 | u64::from(check_bits(t, a, 3, 1)) << 32
        };
        Ok(LayoutSpec {
            kind: Kind::HEAP,
            geometry: [HEAP_FORMAT, CHUNK_SHIFT.into(), n, heap_id, 0, 0, 0, 0],
            participants: self.max_participants,
            data_len: off.total,
        })
    }
}

/// The state shared by a heap handle and its buffers.
pub(super) struct Inner {
    pub(super) layout: Layout,
    region: Region,
    pub(super) reg: Registration,
    me: u32,
    heap_id: u64,
    name: String,
    /// Async waiters of this handle (`wait.rs`).
    pub(super) waiting: super::wait::AsyncWaiters,
    /// The ringer for async waiters of other handles.
    bells: Bells,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.layout.release(self.reg);
    }
}

impl Inner {
    /// The heap's waiting side as the park/wake protocol sees it: the count of waiters
    /// (blocking ones count themselves, async ones announce; blocking ones sleep on the
    /// `OFF_FREE_SEQ` futex word, which `notify_freed` bumps).
    pub(super) fn sleepers(&self) -> Sleepers<'_> {
        // The heap's waiters always pay the barrier when they park.
        Sleepers::unfenced(self.futex_word(OFF_WAITERS))
    }

    fn futex_word(&self, off: usize) -> &AtomicU32 {
        // The region's control words are std atomics outside loom (this module is not built
        // under loom).
        self.region.ctrl32(off)
    }

    /// Wakes threads waiting for memory in `alloc_timeout`, if any announced themselves.
    /// `fenced`: whether the free was more than a single SeqCst CAS (large runs, reclaim), so
    /// a fence is needed here.
    fn notify_freed(&self, fenced: bool) {
        // Store-buffer pattern with the waiter's SeqCst increment of `waiters` and its SeqCst
        // fence: either we see the waiter, or the waiter's retry sees our free. A small free
        // is one SeqCst CAS (Region::free), so the SeqCst load below suffices; other frees are
        // several CASes and take a SeqCst fence first.
        if fenced {
            fence(Ordering::SeqCst);
        }
        if self.futex_word(OFF_WAITERS).load(Ordering::SeqCst) != 0 {
            // Release: pairs with the waiter's Acquire load of the sequence before it sleeps.
            self.futex_word(OFF_FREE_SEQ)
                .fetch_add(1, Ordering::Release);
            futex::wake(self.futex_word(OFF_FREE_SEQ), u32::MAX);
            // Async waiters announced in their records: ring their doorbells. The fence pairs
            // with the one in the waiter's `announce` (wait.rs), whatever the kind of free.
            let set = WaitSet {
                sleepers: self.sleepers(),
                layout: &self.layout,
                records: 0..self.layout.participant_capacity(),
                only_role: None,
            };
            set.sleepers.waker_fence();
            // Every waiter: a free may satisfy several allocations of any size.
            set.ring_parked(&self.bells, usize::MAX);
        }
    }

    fn describe(&self) -> String {
        format!("heap '{}'", self.name)
    }

    fn corrupt(&self, bad: Bad) -> Error {
        match bad {
            Bad::Corrupt(m) => Error::Corrupt(format!("{}: {m}", self.describe())),
            Bad::Exhausted => Error::OutOfMemory(format!("{}: exhausted", self.describe())),
        }
    }

    fn is_dead_fn(&self) -> impl FnMut(u32) -> bool + '_ {
        let mut cache: HashMap<u32, bool> = HashMap::new();
        let cap = self.layout.participant_capacity();
        move |owner: u32| {
            *cache.entry(owner).or_insert_with(|| {
                let rec = owner & 0xfff;
                let gn = (owner >> 12) as u16;
                if rec >= cap {
                    return true;
                }
                match self.layout.participant(rec) {
                    None => true,
                    Some(p) => p.generation() != gn || !p.is_alive(),
                }
            })
        }
    }

    fn reclaim(&self, flight: bool) -> u64 {
        let mut dead = self.is_dead_fn();
        let (_, bytes) = self.region.reclaim(&mut dead, flight, self.me);
        if bytes > 0 {
            self.notify_freed(true);
        }
        bytes
    }
}

/// A shared heap: see the [module documentation](crate::heap) for the design.
///
/// `Heap` is `Send` and `Sync`; share it between threads by reference, in an `Arc`, or by
/// cloning it (clones share one handle). Each `Heap` (made by [`create`](Heap::create),
/// [`open`](Heap::open) or the memfd constructors) holds one record of the heap's participant
/// table until it, its clones and every [`ShmBuf`] from it are dropped.
///
/// # Examples
///
/// ```
/// use shmchan::Heap;
///
/// # fn main() -> shmchan::Result<()> {
/// let name = format!("/shmchan-doc-heap-type-{}", std::process::id());
/// let heap = Heap::create(&name, 4 << 20)?;
/// let mut big = heap.alloc(1 << 20)?; // 1 MiB block
/// big.write_at(1 << 19, &[7; 16])?;
/// drop(big); // freed
/// heap.destroy()?; // unlinks the name
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Heap {
    pub(super) inner: Arc<Inner>,
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("name", &self.inner.name)
            .field("capacity", &self.capacity())
            .field("record", &self.inner.reg.index())
            .finish()
    }
}

impl Heap {
    /// Options for creating or opening a heap; see [`HeapOptions`].
    pub fn options() -> HeapOptions {
        HeapOptions::new()
    }

    /// Creates the heap `name` with `size` bytes of room (rounded up to 64 KiB) and default
    /// options. See [`HeapOptions::create`].
    ///
    /// # Errors
    ///
    /// As [`HeapOptions::create`].
    pub fn create(name: &str, size: usize) -> Result<Heap> {
        HeapOptions::new().create(name, size)
    }

    /// Opens the existing heap `name`. See [`HeapOptions::open`].
    ///
    /// # Errors
    ///
    /// As [`HeapOptions::open`].
    pub fn open(name: &str) -> Result<Heap> {
        HeapOptions::new().open(name)
    }

    fn from_layout(layout: Layout, name: &str) -> Result<Heap> {
        let g = layout.geometry();
        let d = layout.segment().describe();
        if g[0] != HEAP_FORMAT {
            return Err(Error::Mismatch {
                segment: d,
                what: "heap format",
                expected: HEAP_FORMAT,
                found: g[0],
            });
        }
        if g[1] != u64::from(CHUNK_SHIFT) {
            return Err(Error::Mismatch {
                segment: d,
                what: "heap chunk shift",
                expected: CHUNK_SHIFT.into(),
                found: g[1],
            });
        }
        let n = g[2];
        if n == 0 || n > MAX_CHUNKS {
            return Err(Error::Corrupt(format!("{d}: {n} chunks")));
        }
        let off = Offsets::compute(n as u32, CHUNK_SHIFT, layout.data_offset())
            .filter(|o| o.total <= layout.data_len())
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "{d}: {n} chunks do not fit in the {}-byte data area",
                    layout.data_len()
                ))
            })?;
        let base = layout.segment().as_mut_ptr()?;
        // SAFETY: the data area starts at data_offset (128-aligned by the layout) and holds
        // off.total bytes (checked just above against the validated data length); the
        // mapping is read-write (as_mut_ptr succeeded) and lives in `layout`, which the Inner
        // keeps next to the region for as long as the region is used.
        let region =
            unsafe { Region::new(base.add(layout.data_offset()), off, n as u32, CHUNK_SHIFT) };
        let reg = layout.claim_any(0..layout.participant_capacity(), HEAP_ROLE)?;
        let me = owner_id(reg.index(), reg.generation());
        Ok(Heap {
            inner: Arc::new(Inner {
                layout,
                region,
                reg,
                me,
                heap_id: g[3],
                name: name.to_owned(),
                waiting: Default::default(),
                bells: Bells::default(),
            }),
        })
    }

    /// The heap's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Bytes of room in the heap area.
    pub fn capacity(&self) -> u64 {
        u64::from(self.inner.region.n_chunks) << CHUNK_SHIFT
    }

    /// Bytes free right now (free chunks and free small blocks; a snapshot that other
    /// processes change at once). Blocks held by dead processes count as used until
    /// [`reclaim_dead`](Self::reclaim_dead).
    pub fn free_bytes(&self) -> u64 {
        self.inner.region.free_bytes()
    }

    /// Allocates a buffer of `len` bytes (contents unspecified), owned by this process until
    /// it is dropped or turned into a handle.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `len` exceeds the heap's capacity;
    /// [`Error::OutOfMemory`] if there is no room even after reclaiming the blocks of dead
    /// processes and returning empty chunks to the pool.
    pub fn alloc(&self, len: usize) -> Result<ShmBuf> {
        let inner = &self.inner;
        if len as u64 > self.capacity() {
            return Err(Error::InvalidArgument(format!(
                "{}: {len} bytes asked for, the heap holds {}",
                inner.describe(),
                self.capacity()
            )));
        }
        match inner.region.alloc(len as u64, inner.me) {
            Ok(b) => return Ok(self.buf(b, len)),
            Err(Bad::Corrupt(m)) => return Err(inner.corrupt(Bad::Corrupt(m))),
            Err(Bad::Exhausted) => {}
        }
        // Slow path: take back what dead processes hold, return empty small chunks, retry.
        inner.reclaim(false);
        inner.region.retire_empty(inner.me);
        let mut result = inner.region.alloc(len as u64, inner.me);
        // A live process carving or claiming chunks right now (a CLAIM descriptor) may be
        // about to make room for us, e.g. carving the last free chunk for our class: give it a
        // bounded number of turns before reporting exhaustion.
        for _ in 0..64 {
            if result != Err(Bad::Exhausted) || !inner.region.claims_in_progress() {
                break;
            }
            std::thread::yield_now();
            result = inner.region.alloc(len as u64, inner.me);
        }
        match result {
            Ok(b) => Ok(self.buf(b, len)),
            Err(Bad::Exhausted) => Err(Error::OutOfMemory(format!(
                "{}: no room for {len} bytes ({} of {} bytes free, fragmented or in small \
                 blocks)",
                inner.describe(),
                self.free_bytes(),
                self.capacity()
            ))),
            Err(e) => Err(inner.corrupt(e)),
        }
    }

    /// Like [`alloc`](Self::alloc), but waits up to `timeout` for room: frees in any process
    /// wake the waiter (futex), and the dead-owner sweep runs every 10 ms meanwhile.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`] if no room appeared in time; otherwise as [`alloc`](Self::alloc).
    pub fn alloc_timeout(&self, len: usize, timeout: Duration) -> Result<ShmBuf> {
        // A timeout too large to represent waits "forever" (a century).
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400));
        let inner = &self.inner;
        loop {
            match self.alloc(len) {
                Err(Error::OutOfMemory(_)) => {}
                other => return other,
            }
            let waiters = inner.futex_word(OFF_WAITERS);
            let seq_word = inner.futex_word(OFF_FREE_SEQ);
            // SeqCst RMW and fence: pair with the SeqCst free CAS (or fence) and the SeqCst
            // load of `waiters` in notify_freed (see there).
            waiters.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            // Acquire: pairs with the Release increment in notify_freed.
            let seq = seq_word.load(Ordering::Acquire);
            let retry = inner.region.alloc(len as u64, inner.me);
            if let Ok(b) = retry {
                waiters.fetch_sub(1, Ordering::Relaxed);
                return Ok(self.buf(b, len));
            }
            let now = Instant::now();
            if now >= deadline {
                waiters.fetch_sub(1, Ordering::Relaxed);
                return Err(Error::TimedOut(format!(
                    "{}: no room for {len} bytes within {timeout:?}",
                    inner.describe()
                )));
            }
            futex::wait(seq_word, seq, Some((deadline - now).min(RECLAIM_INTERVAL)));
            waiters.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// One allocation attempt without the slow path (no sweep): the re-check of a waiter.
    pub(super) fn try_alloc_quiet(&self, len: usize) -> std::result::Result<ShmBuf, ()> {
        match self.inner.region.alloc(len as u64, self.inner.me) {
            Ok(b) => Ok(self.buf(b, len)),
            Err(_) => Err(()),
        }
    }

    /// Whether `handle` still names a block in flight (sent, not yet taken nor freed). A
    /// snapshot: a receiver may take it at once.
    pub fn is_in_flight(&self, handle: &Handle) -> bool {
        if self.check(handle).is_err() {
            return false;
        }
        let r = &self.inner.region;
        match r.locate(handle.offset, handle.len, handle.generation) {
            Ok((b, _)) => {
                // Acquire: pairs with the Release CAS that put the block in flight.
                let w = r.meta(b.chunk, b.index).load(Ordering::Acquire);
                super::alloc::m_state(w) == super::alloc::M_FLIGHT
                    && super::alloc::m_gen(w) == handle.generation
            }
            Err(_) => false,
        }
    }

    /// Whether this handle and `other` are attached to the same heap (same heap id and
    /// mapping size).
    pub fn same_heap(&self, other: &Heap) -> bool {
        self.inner.heap_id == other.inner.heap_id && self.capacity() == other.capacity()
    }

    /// Whether `buf` is a block of this heap.
    pub fn owns(&self, buf: &ShmBuf) -> bool {
        self.inner.heap_id == buf.heap.heap_id
    }

    /// The descriptor of the heap's segment, for passing a memfd heap to another process
    /// (which attaches with [`HeapOptions::attach_fd`]).
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.inner.layout.segment().as_fd()
    }

    fn buf(&self, block: Block, len: usize) -> ShmBuf {
        let ptr = self.inner.region.heap_ptr(self.inner.region.offset(&block));
        ShmBuf {
            heap: self.inner.clone(),
            block,
            len,
            ptr,
        }
    }

    /// Takes ownership of the block a handle names (made by [`ShmBuf::into_handle`] in this
    /// or another process). Each handle can be taken once.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the handle is not a live in-flight block of this heap: out of
    /// bounds, misaligned, wrong size or class, stale generation (already taken or freed),
    /// bad check bits (random bytes, another heap).
    pub fn take(&self, handle: Handle) -> Result<ShmBuf> {
        let inner = &self.inner;
        self.check(&handle)?;
        let b = inner
            .region
            .take(handle.offset, handle.len, handle.generation, inner.me)
            .map_err(|e| inner.corrupt(e))?;
        Ok(self.buf(b, handle.len as usize))
    }

    fn check(&self, h: &Handle) -> Result<()> {
        if h.check != check_bits(self.inner.heap_id, h.offset, h.len, h.generation) {
            return Err(Error::Corrupt(format!(
                "{}: handle check bits do not match (forged, damaged, or from another heap)",
                self.inner.describe()
            )));
        }
        if h.len > self.capacity() {
            return Err(Error::Corrupt(format!(
                "{}: handle length {} exceeds the heap",
                self.inner.describe(),
                h.len
            )));
        }
        Ok(())
    }

    /// Frees the blocks held by processes that died, and finishes or rolls back what they
    /// left half done. Returns the bytes reclaimed. Blocks in flight (handles not yet taken)
    /// are left alone. [`alloc`](Self::alloc) runs this before it reports exhaustion.
    pub fn reclaim_dead(&self) -> u64 {
        self.inner.reclaim(false)
    }

    /// Like [`reclaim_dead`](Self::reclaim_dead), and also frees the blocks **in flight**
    /// whose sender died: handles made by a process that is gone and not taken yet. Call it
    /// only when no live process can still receive those handles (every channel that carried
    /// them is drained or gone): a later [`take`](Self::take) of such a handle fails with
    /// [`Error::Corrupt`], but a process that read the block through
    /// [`handle_to_ptr`](Self::handle_to_ptr) would read reused memory.
    pub fn reclaim_dead_in_flight(&self) -> u64 {
        self.inner.reclaim(true)
    }

    /// For users with their own layouts: the address of the live block (owned or in flight) a
    /// handle names, without taking it. Its owner may free it at any time; only use the
    /// pointer while your own protocol guarantees the block stays alive, and access it with
    /// raw copies (another process may write it).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] as for [`take`](Self::take).
    pub fn handle_to_ptr(&self, handle: &Handle) -> Result<*mut u8> {
        self.check(handle)?;
        let r = &self.inner.region;
        let b = r
            .check_live(handle.offset, handle.len, handle.generation)
            .map_err(|e| self.inner.corrupt(e))?;
        Ok(r.heap_ptr(r.offset(&b)))
    }

    /// For users with their own layouts: the handle of the live block of at least `len`
    /// bytes that starts at `ptr` (from [`ShmBuf::as_ptr`] or
    /// [`handle_to_ptr`](Self::handle_to_ptr)). The handle can name the block to
    /// [`handle_to_ptr`](Self::handle_to_ptr); [`take`](Self::take) accepts it only once the
    /// block is in flight.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `ptr` is not in this heap's mapping; [`Error::Corrupt`]
    /// if no live block of that size starts there.
    pub fn ptr_to_handle(&self, ptr: *const u8, len: usize) -> Result<Handle> {
        let r = &self.inner.region;
        let base = r.heap_ptr(0) as usize;
        let offset = (ptr as usize).wrapping_sub(base) as u64;
        if (ptr as usize) < base || offset >= self.capacity() {
            return Err(Error::InvalidArgument(format!(
                "{}: pointer {ptr:p} is not inside the heap",
                self.inner.describe()
            )));
        }
        let (b, _) = r
            .locate(offset, len as u64, 0)
            .map_err(|e| self.inner.corrupt(e))?;
        let w = r.meta(b.chunk, b.index).load(Ordering::Acquire);
        let generation = super::alloc::m_gen(w);
        let b = r
            .check_live(offset, len as u64, generation)
            .map_err(|e| self.inner.corrupt(e))?;
        let offset = r.offset(&b);
        Ok(Handle {
            offset,
            len: len as u64,
            generation,
            check: check_bits(self.inner.heap_id, offset, len as u64, generation),
        })
    }

    /// Detaches this handle. The participant record is released once the buffers from this
    /// handle are dropped too; the name stays (unless created with
    /// [`HeapOptions::unlink_on_drop`]).
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for detach-time checks.
    pub fn detach(self) -> Result<()> {
        drop(self);
        Ok(())
    }

    /// Removes the heap's name from `/dev/shm` and detaches. Processes attached keep their
    /// mappings; the memory is freed when the last is gone.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the name was already removed, [`Error::PermissionDenied`].
    pub fn destroy(self) -> Result<()> {
        let name = self.inner.name.clone();
        drop(self);
        crate::segment::Segment::unlink(&name)
    }
}

/// An owned buffer in a [`Heap`]: writable while owned, freed on drop, or turned into a
/// [`Handle`] for another process with [`into_handle`](ShmBuf::into_handle).
///
/// The bytes are shared memory: a buggy or hostile process attached to the heap could write
/// them at any time, so the buffer offers copies ([`write_at`](Self::write_at),
/// [`read_at`](Self::read_at), [`to_vec`](Self::to_vec)) and raw pointers, never `&[u8]`.
/// The buffer keeps the heap mapped while it lives.
pub struct ShmBuf {
    heap: Arc<Inner>,
    block: Block,
    len: usize,
    ptr: *mut u8,
}

// SAFETY: the buffer is a pointer into a shared mapping kept alive by the Arc, accessed only
// through raw copies; ownership of the block is recorded in shared memory, not per thread.
unsafe impl Send for ShmBuf {}
// SAFETY: `&ShmBuf` only reads (copies out); writes need `&mut`.
unsafe impl Sync for ShmBuf {}

impl fmt::Debug for ShmBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmBuf")
            .field("heap", &self.heap.name)
            .field("offset", &self.offset())
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl ShmBuf {
    /// Length in bytes, as allocated.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the length is zero.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Bytes the block really has (at least `len`).
    pub fn capacity(&self) -> usize {
        self.heap.region.capacity(&self.block) as usize
    }
    /// Offset of the block in the heap area.
    pub fn offset(&self) -> u64 {
        self.heap.region.offset(&self.block)
    }
    /// Start of the buffer, for reading `len()` bytes with raw copies.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }
    /// Start of the buffer, for writing `len()` bytes with raw copies.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }

    /// The buffer as a byte slice, without a copy: for parsers, `serde`, hashing.
    ///
    /// # Safety
    ///
    /// The bytes are shared memory. The caller must make sure that **no other process writes
    /// this block** while the slice lives. An honest peer never does: the block is owned by
    /// this process (it was allocated here or taken from a handle), and the allocator only
    /// hands it to someone else after it is freed. A *hostile* process attached to the heap
    /// can write any byte of the heap at any time (and can even mark the block free so that
    /// it is allocated again); with a slice over it that is a data race (undefined behaviour,
    /// in practice bytes that change while you read them). What it can never do is unmap the
    /// memory or shrink the segment under you (memfd heaps are sealed against shrinking; a
    /// named heap can be truncated by any process allowed to open it), so the slice never
    /// points outside the mapping. Use it only when every process attached to the heap is
    /// trusted; otherwise copy with [`read_at`](Self::read_at) / [`to_vec`](Self::to_vec) and
    /// validate the copy.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len lies in the mapping kept alive by `heap` (len <= capacity);
        // the caller guarantees no concurrent writer (this function's contract).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The buffer as a mutable byte slice, to fill it in place (serialise into it, read a
    /// file into it) without a copy.
    ///
    /// # Safety
    ///
    /// As [`as_slice`](Self::as_slice): no other process may read or write this block while
    /// the slice lives. An honest peer never touches a block it does not own; a hostile one
    /// can, and then this is a data race. Use [`write_at`](Self::write_at) when the peers
    /// are not trusted (a hostile peer can still overwrite what you wrote, which the receiver
    /// must validate anyway).
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice; `&mut self` excludes other users in this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// The buffer as a value that derefs to `&[u8]` (and implements `AsRef<[u8]>`), for
    /// APIs that take an owner, such as `bytes::Bytes::from_owner`. The block is freed when
    /// the value (and every `Bytes` made from it) is dropped.
    ///
    /// # Safety
    ///
    /// As [`as_slice`](Self::as_slice), for as long as the returned value lives.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> shmchan::Result<()> {
    /// let heap = shmchan::Heap::options().create_memfd(1 << 20)?;
    /// let mut buf = heap.alloc(3)?;
    /// buf.write_at(0, b"abc")?;
    /// // SAFETY: only this process is attached to the heap.
    /// let bytes = bytes::Bytes::from_owner(unsafe { buf.assume_trusted() });
    /// assert_eq!(&bytes[..], b"abc");
    /// # Ok(())
    /// # }
    /// ```
    pub unsafe fn assume_trusted(self) -> TrustedBuf {
        TrustedBuf(self)
    }

    fn check_range(&self, at: usize, n: usize) -> Result<()> {
        match at.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::InvalidArgument(format!(
                "range {at}..{at}+{n} is outside the {}-byte buffer",
                self.len
            ))),
        }
    }

    /// Copies `data` into the buffer at `at`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the range is outside `0..len()`.
    pub fn write_at(&mut self, at: usize, data: &[u8]) -> Result<()> {
        self.check_range(at, data.len())?;
        // SAFETY: at + data.len() <= len <= the block's capacity (checked), the block lies in
        // the mapping kept alive by `heap`, and `data` is private memory, so they don't overlap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(at), data.len()) };
        Ok(())
    }

    /// Copies `buf.len()` bytes at `at` out of the buffer.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the range is outside `0..len()`.
    pub fn read_at(&self, at: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range(at, buf.len())?;
        // SAFETY: as in write_at; `buf` is private memory.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(at), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies the whole buffer out.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len];
        // Cannot fail: the range is the buffer.
        let _ = self.read_at(0, &mut v);
        v
    }

    /// Gives up ownership and returns the handle another process passes to
    /// [`Heap::take`]. Until it is taken, the block is *in flight*: not freed, and not
    /// reclaimed if this process dies. A handle that is never taken leaks its block.
    pub fn into_handle(self) -> Handle {
        let me = std::mem::ManuallyDrop::new(self);
        let r = &me.heap.region;
        // If the block was not ours any more (a peer scribbled on it), the handle will simply
        // fail to be taken; nothing else to do.
        let _ = r.to_flight(&me.block, me.heap.me);
        let offset = r.offset(&me.block);
        let handle = Handle {
            offset,
            len: me.len as u64,
            generation: me.block.gn,
            check: check_bits(me.heap.heap_id, offset, me.len as u64, me.block.gn),
        };
        // SAFETY: `me` is never used again and never dropped; this releases its Arc once.
        drop(unsafe { std::ptr::read(&me.heap) });
        handle
    }
}

impl Drop for ShmBuf {
    fn drop(&mut self) {
        if self.heap.region.free(&self.block, self.heap.me) {
            self.heap.notify_freed(self.block.class.is_none());
        }
    }
}

/// A [`ShmBuf`] whose bytes the user promised no other process writes
/// ([`ShmBuf::assume_trusted`]): it derefs to `&[u8]`, so it can back a `bytes::Bytes`
/// (`Bytes::from_owner`) or go to a parser without a copy. Dropping it frees the block.
#[derive(Debug)]
pub struct TrustedBuf(ShmBuf);

impl TrustedBuf {
    /// The buffer back.
    pub fn into_inner(self) -> ShmBuf {
        self.0
    }
}

impl std::ops::Deref for TrustedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the creator of this value promised (`assume_trusted`'s contract) that no
        // other process writes the block while it lives.
        unsafe { self.0.as_slice() }
    }
}

impl AsRef<[u8]> for TrustedBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}
