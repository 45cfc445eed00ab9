//! A shared heap: a segment many processes allocate from, with handles that any process can
//! turn back into memory, so that a payload larger than a channel slot moves between
//! processes without being copied: the sender writes it into an [`ShmBuf`], sends its
//! [`Handle`] (24 plain bytes) over any channel, and the receiver [`Heap::take`]s it.
//!
//! # Design
//!
//! The heap area is an array of 4 KiB pages. Each page has an atomic descriptor word in the
//! segment, and a generation counter:
//!
//! ```text
//! descriptor: 0 = free, else
//!   bit 63 used | bit 62 head | bit 61 in flight | bits 48..60 owner's participant record
//!   | bits 32..48 generation of that record's claim | bits 0..32 run length (head)
//!                                                     or distance back to the head (others)
//! ```
//!
//! `alloc(len)` takes the first run of free pages long enough (first fit, the seed's policy at
//! page granularity): it claims the head page with a CAS from 0, then each following page,
//! and rolls back if another allocator got one first. Freed runs return their pages to 0, so
//! neighbouring free runs coalesce by construction; there are no free lists to repair. Every
//! allocation takes whole pages: a 100-byte buffer costs 4 KiB, which suits the heap's
//! purpose (payloads too large for a channel slot). The scan is linear in the number of
//! pages; fragmentation is the classic first-fit one: in the worst case, alternating live and
//! free single pages, a heap that is half free cannot serve a two-page request.
//!
//! # Ownership and handles
//!
//! A block belongs to the participant record (process) in its head descriptor. `into_handle`
//! marks the block *in flight*; `take` validates the handle (its check word, bounds, a live
//! head of that size, the page's generation) and moves ownership to the taker with one CAS
//! that also clears *in flight*, so a handle can be taken once. Freeing bumps the page's
//! generation, so a stale handle (used after free, or freed twice) fails. Anything wrong is
//! [`Error::Corrupt`], never undefined behaviour.
//!
//! # Crashes
//!
//! A process killed at any instruction leaves its blocks, or a half-claimed run, marked with
//! its record. [`Heap::reclaim_dead`] frees every block whose owner is dead (process gone, or
//! its record released or reused), and orphaned pages of a half-done claim or free; `alloc`
//! runs it once before failing with [`Error::OutOfMemory`]. A block in flight belongs to its
//! sender until taken: a sender that exits before the receiver takes the handle lets the block
//! be reclaimed (the take then fails), so senders keep their [`Heap`] open until their
//! handles are taken.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Result};
use crate::layout::{self, Kind, Layout, LayoutSpec, Registration, Role};
use crate::segment::{Mode, SegmentOptions};

/// Bytes per page, the unit of allocation.
pub const PAGE: usize = 4096;
/// Participant records of a heap: processes attached at once.
const RECORDS: u32 = 64;
/// The role heap participants register with.
const HEAP_ROLE: Role = Role(3);

const USED: u64 = 1 << 63;
const HEAD: u64 = 1 << 62;
const INFLIGHT: u64 = 1 << 61;

fn owner_bits(rec: u32, rgen: u16) -> u64 {
    (u64::from(rec) & 0xfff) << 48 | u64::from(rgen) << 32
}

/// What a handle carries across processes: plain bytes, safe to send over any channel
/// (`Producer::try_send_value`, `Consumer::recv_value::<Handle>`). Every field is checked by
/// [`Heap::take`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Handle {
    page: u32,
    pages: u32,
    len: u64,
    generation: u32,
    check: u32,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Handle(page {}, {} pages, {} bytes, generation {})",
            self.page, self.pages, self.len, self.generation
        )
    }
}

impl Handle {
    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Offset of the block from the start of the heap's page area, for users who lay out
    /// their own data.
    pub fn offset(&self) -> usize {
        self.page as usize * PAGE
    }
    fn checksum(page: u32, pages: u32, len: u64, generation: u32, nonce: u32) -> u32 {
        let mut x = u64::from(page)
            ^ u64::from(pages) << 20
            ^ len.rotate_left(17)
            ^ u64::from(generation) << 40
            ^ u64::from(nonce) << 7;
        x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (x >> 32) as u32 ^ x as u32
    }
}

struct Shared {
    layout: Layout,
    reg: Registration,
    descs: *mut u8,
    gens: *mut u8,
    pages: *mut u8,
    npages: u32,
    nonce: u32,
    name: String,
}

// SAFETY: the pointers address the shared mapping owned by `layout`, accessed only through
// atomics and raw copies; nothing is thread-affine.
unsafe impl Send for Shared {}
// SAFETY: as above; all access synchronises through atomics.
unsafe impl Sync for Shared {}

impl Shared {
    fn desc(&self, i: u32) -> &AtomicU64 {
        assert!(i < self.npages);
        // SAFETY: i < npages and the descriptor array of npages words lies inside the mapped
        // data area (validated on attach / computed on create), 8-aligned.
        unsafe { AtomicU64::from_ptr(self.descs.add(8 * i as usize).cast()) }
    }

    fn gen_word(&self, i: u32) -> &AtomicU32 {
        assert!(i < self.npages);
        // SAFETY: as in `desc`, for the generation array of npages u32 words.
        unsafe { AtomicU32::from_ptr(self.gens.add(4 * i as usize).cast()) }
    }

    fn me(&self) -> u64 {
        owner_bits(self.reg.index(), self.reg.generation())
    }

    /// Claims the first free run of `n` pages; `None` if there is none.
    fn try_alloc(&self, n: u32) -> Option<u32> {
        let me = self.me();
        let mut i = 0u32;
        while i.checked_add(n).is_some_and(|end| end <= self.npages) {
            // Look for n free pages from i.
            let mut j = 0;
            let mut used = 0;
            while j < n {
                used = self.desc(i + j).load(Ordering::Relaxed);
                if used != 0 {
                    break;
                }
                j += 1;
            }
            if j < n {
                // Skip the whole block we ran into (a head's low bits are its run length; a
                // garbage length only makes the scan skip less or more, never index out of
                // range: the loop condition bounds every page looked at).
                let run = if used & HEAD != 0 {
                    (used as u32).max(1)
                } else {
                    1
                };
                i = i.saturating_add(j).saturating_add(run);
                continue;
            }
            // Acquire: pairs with the Release stores of `free`: the previous owner's accesses
            // to these pages happen before ours.
            if self
                .desc(i)
                .compare_exchange(
                    0,
                    USED | HEAD | me | u64::from(n),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                i += 1;
                continue;
            }
            let mut k = 1;
            while k < n
                && self
                    .desc(i + k)
                    .compare_exchange(
                        0,
                        USED | me | u64::from(k),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                k += 1;
            }
            if k == n {
                return Some(i);
            }
            // Another allocator took page i + k: give back what we claimed.
            for m in (0..k).rev() {
                self.desc(i + m).store(0, Ordering::Release);
            }
            i += k + 1;
        }
        None
    }

    /// Frees the run at `start` of `n` pages (held by us, or by a dead owner).
    fn free(&self, start: u32, n: u32) {
        // The generation first, so that a handle to this block fails from now on.
        self.gen_word(start).fetch_add(1, Ordering::AcqRel);
        for m in (1..n).rev() {
            // Release: pairs with the Acquire claim of the next allocator.
            self.desc(start + m).store(0, Ordering::Release);
        }
        self.desc(start).store(0, Ordering::Release);
    }

    fn page_ptr(&self, i: u32) -> *mut u8 {
        assert!(i <= self.npages);
        // SAFETY: i <= npages and the page area of npages pages lies inside the mapping.
        unsafe { self.pages.add(i as usize * PAGE) }
    }

    /// Whether the owner encoded in a descriptor is dead (or its record released/reused).
    fn owner_dead(&self, d: u64, cache: &mut [Option<bool>]) -> bool {
        let rec = ((d >> 48) & 0xfff) as u32;
        let rgen = (d >> 32) as u16;
        if rec >= self.layout.participant_capacity() {
            return true; // garbage: nobody can own it
        }
        let slot = &mut cache[rec as usize];
        let alive = *slot.get_or_insert_with(|| {
            self.layout
                .participant(rec)
                .is_some_and(|p| p.role == HEAP_ROLE && p.is_alive())
        });
        !alive
            || self
                .layout
                .participant(rec)
                .is_none_or(|p| p.generation() != rgen)
    }
}

/// A heap in shared memory; see the [module docs](self). Cloning is cheap (the handle is
/// shared); every clone and every [`ShmBuf`] keeps this process attached.
#[derive(Clone)]
pub struct Heap {
    inner: Arc<Shared>,
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("name", &self.inner.name)
            .field("pages", &self.inner.npages)
            .finish()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.layout.release(self.reg);
    }
}

/// Geometry words: [pages, descriptor offset, generation offset, page offset, nonce].
fn geometry(data_off: usize, npages: u32, nonce: u32) -> ([u64; 8], usize) {
    let descs = 0usize;
    let gens = (descs + 8 * npages as usize).div_ceil(128) * 128;
    let after = gens + 4 * npages as usize;
    // Pages start on a page boundary of the segment.
    let pages = (data_off + after).div_ceil(PAGE) * PAGE - data_off;
    let len = pages + npages as usize * PAGE;
    (
        [
            u64::from(npages),
            descs as u64,
            gens as u64,
            pages as u64,
            u64::from(nonce),
            0,
            0,
            0,
        ],
        len,
    )
}

impl Heap {
    /// Creates the heap `name` with room for `size` bytes of blocks (rounded up to whole
    /// pages), mode 0600.
    ///
    /// # Errors
    ///
    /// As [`SegmentOptions::create`]; [`Error::InvalidArgument`] for a size of 0 or over
    /// 2^44 bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::heap::Heap;
    ///
    /// # fn main() -> shmchan::Result<()> {
    /// let name = format!("/shmchan-doc-heap-{}", std::process::id());
    /// let heap = Heap::create(&name, 1 << 20)?;
    /// let mut buf = heap.alloc(10_000)?;
    /// buf.write_at(0, b"large payload")?;
    /// let handle = buf.into_handle(); // send these 24 bytes over any channel
    ///
    /// let other = Heap::open(&name)?; // usually another process
    /// let got = other.take(handle)?;
    /// assert_eq!(&got.to_vec()[..13], b"large payload");
    /// assert!(other.take(handle).is_err()); // a handle is taken once
    /// # drop((got, other)); heap.destroy()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn create(name: &str, size: usize) -> Result<Heap> {
        Heap::create_with(name, size, &SegmentOptions::new())
    }

    /// Creates the heap with segment options (permissions, unlink on drop).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_with(name: &str, size: usize, opts: &SegmentOptions) -> Result<Heap> {
        if size == 0 || size > 1 << 44 {
            return Err(Error::InvalidArgument(format!(
                "heap size {size} is outside 1..=2^44 bytes"
            )));
        }
        let npages = u32::try_from(size.div_ceil(PAGE)).map_err(|_| {
            Error::InvalidArgument(format!("heap size {size} needs too many pages"))
        })?;
        let data_off = layout::HEADER_LEN + RECORDS as usize * layout::RECORD_LEN;
        // A per-heap nonce in every handle's check word: a handle from another heap, or
        // random bytes, fail `take` early.
        let nonce = std::process::id().rotate_left(16)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos();
        let (geom, data_len) = geometry(data_off, npages, nonce);
        let spec = LayoutSpec {
            kind: Kind::HEAP,
            geometry: geom,
            participants: RECORDS,
            data_len,
        };
        let layout = Layout::create(name, &spec, opts)?;
        Heap::attach(layout, name)
    }

    /// Attaches to the existing heap `name`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Mismatch`] if it is not a heap, [`Error::Corrupt`] for a
    /// geometry that does not fit, [`Error::InUse`] if 64 processes are attached.
    pub fn open(name: &str) -> Result<Heap> {
        let layout = Layout::open(
            name,
            Kind::HEAP,
            Mode::ReadWrite,
            layout::DEFAULT_INIT_TIMEOUT,
        )?;
        Heap::attach(layout, name)
    }

    fn attach(layout: Layout, name: &str) -> Result<Heap> {
        let g = layout.geometry();
        let corrupt = |why: &str| Error::Corrupt(format!("heap '{name}': {why}"));
        let npages = u32::try_from(g[0]).map_err(|_| corrupt("page count"))?;
        if npages == 0 {
            return Err(corrupt("no pages"));
        }
        let (expected, len) = geometry(layout.data_offset(), npages, g[4] as u32);
        if expected != g || len > layout.data_len() {
            return Err(corrupt(&format!(
                "geometry {g:?} does not match {npages} pages in {} bytes",
                layout.data_len()
            )));
        }
        let reg = layout.claim_any(0..RECORDS, HEAP_ROLE)?;
        let base = layout.segment().as_mut_ptr()?;
        // SAFETY: data_offset + data_len <= mapped length (validated by Layout) and the three
        // areas lie inside the data area (checked against `geometry` just above).
        let (descs, gens, pages) = unsafe {
            let d = base.add(layout.data_offset());
            (
                d.add(g[1] as usize),
                d.add(g[2] as usize),
                d.add(g[3] as usize),
            )
        };
        Ok(Heap {
            inner: Arc::new(Shared {
                layout,
                reg,
                descs,
                gens,
                pages,
                npages,
                nonce: g[4] as u32,
                name: name.to_owned(),
            }),
        })
    }

    /// Bytes of blocks the heap holds in all.
    pub fn capacity(&self) -> usize {
        self.inner.npages as usize * PAGE
    }

    /// Bytes in free pages now (a snapshot).
    pub fn free_bytes(&self) -> usize {
        (0..self.inner.npages)
            .filter(|&i| self.inner.desc(i).load(Ordering::Relaxed) == 0)
            .count()
            * PAGE
    }

    /// Allocates a block of `len` bytes (whole pages), owned by this process until it is
    /// dropped or handed over. Blocks of dead processes are reclaimed once before failing.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfMemory`] when no run of free pages is long enough;
    /// [`Error::InvalidArgument`] for a length larger than the heap.
    pub fn alloc(&self, len: usize) -> Result<ShmBuf> {
        let n = self.pages_for(len)?;
        if let Some(start) = self.inner.try_alloc(n) {
            return Ok(self.buf(start, n, len));
        }
        self.reclaim_dead();
        match self.inner.try_alloc(n) {
            Some(start) => Ok(self.buf(start, n, len)),
            None => Err(Error::OutOfMemory(format!(
                "heap '{}': no run of {n} free pages for {len} bytes ({} of {} bytes free)",
                self.inner.name,
                self.free_bytes(),
                self.capacity()
            ))),
        }
    }

    /// Allocates, waiting up to `timeout` for other processes to free enough pages.
    ///
    /// # Errors
    ///
    /// As [`alloc`](Self::alloc), after the timeout.
    pub fn alloc_timeout(&self, len: usize, timeout: Duration) -> Result<ShmBuf> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(50);
        loop {
            match self.alloc(len) {
                Err(Error::OutOfMemory(m)) if Instant::now() < deadline => {
                    let _ = m;
                    std::thread::sleep(
                        pause.min(deadline.saturating_duration_since(Instant::now())),
                    );
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                other => return other,
            }
        }
    }

    fn pages_for(&self, len: usize) -> Result<u32> {
        let n = len.max(1).div_ceil(PAGE);
        if n > self.inner.npages as usize {
            return Err(Error::InvalidArgument(format!(
                "{len} bytes do not fit in heap '{}' of {} bytes",
                self.inner.name,
                self.capacity()
            )));
        }
        Ok(n as u32)
    }

    fn buf(&self, start: u32, n: u32, len: usize) -> ShmBuf {
        ShmBuf {
            heap: self.inner.clone(),
            page: start,
            pages: n,
            len,
            owned: true,
        }
    }

    /// Takes ownership of the block a peer handed over with [`ShmBuf::into_handle`].
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the handle is forged, out of bounds, stale (freed, reused,
    /// reclaimed) or already taken.
    pub fn take(&self, h: Handle) -> Result<ShmBuf> {
        let s = &self.inner;
        let bad = |why: &str| Err(Error::Corrupt(format!("heap '{}': {h:?}: {why}", s.name)));
        if h.check != Handle::checksum(h.page, h.pages, h.len, h.generation, s.nonce) {
            return bad("check word mismatch (forged, damaged, or from another heap)");
        }
        if h.pages == 0
            || h.page.checked_add(h.pages).is_none_or(|end| end > s.npages)
            || h.len > u64::from(h.pages) * PAGE as u64
        {
            return bad("out of bounds");
        }
        // Acquire: pairs with the AcqRel CAS of `into_handle` (the sender's writes to the
        // block happen before we see it in flight).
        let d = s.desc(h.page).load(Ordering::Acquire);
        if d & (USED | HEAD | INFLIGHT) != USED | HEAD | INFLIGHT || d as u32 != h.pages {
            return bad("not a block in flight of that size (already taken, or freed)");
        }
        if s.gen_word(h.page).load(Ordering::Acquire) != h.generation {
            return bad("stale generation (the block was freed)");
        }
        let mine = USED | HEAD | s.me() | u64::from(h.pages);
        if s.desc(h.page)
            .compare_exchange(d, mine, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return bad("taken or freed concurrently");
        }
        Ok(self.buf(h.page, h.pages, h.len as usize))
    }

    /// Frees every block whose owner process is dead (or detached), and pages left half
    /// claimed or half freed by a process that died; returns the bytes freed.
    pub fn reclaim_dead(&self) -> usize {
        let s = &self.inner;
        let mut cache = vec![None; s.layout.participant_capacity() as usize];
        let mut freed = 0;
        let mut i = 0;
        while i < s.npages {
            let d = s.desc(i).load(Ordering::Acquire);
            if d == 0 {
                i += 1;
                continue;
            }
            let n = d as u32;
            if d & HEAD != 0 {
                let run_ok = n >= 1 && i.checked_add(n).is_some_and(|e| e <= s.npages);
                if run_ok && s.owner_dead(d, &mut cache) {
                    // Take the head from the dead owner first, so that two reclaimers cannot
                    // both free the run.
                    if s.desc(i)
                        .compare_exchange(
                            d,
                            USED | HEAD | s.me() | u64::from(n),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        // Free only the pages of this run that still point back to it.
                        s.gen_word(i).fetch_add(1, Ordering::AcqRel);
                        for m in 1..n {
                            let c = s.desc(i + m).load(Ordering::Acquire);
                            if c & (USED | HEAD) == USED && c as u32 == m {
                                s.desc(i + m).store(0, Ordering::Release);
                                freed += PAGE;
                            }
                        }
                        s.desc(i).store(0, Ordering::Release);
                        freed += PAGE;
                    }
                }
                i += if run_ok { n } else { 1 };
                continue;
            }
            // A continuation page whose head does not cover it: left by a claim or free that
            // died half-way, once its owner is dead.
            let covered = i.checked_sub(n).is_some_and(|h| {
                let hd = s.desc(h).load(Ordering::Acquire);
                hd & (USED | HEAD) == USED | HEAD && (hd as u32) > n
            });
            if !covered
                && s.owner_dead(d, &mut cache)
                && s.desc(i)
                    .compare_exchange(d, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                freed += PAGE;
            }
            i += 1;
        }
        freed
    }

    /// Unmaps the heap from this process once every clone and buffer is dropped (the same as
    /// dropping it); the heap stays for others.
    pub fn detach(self) {}

    /// Removes the heap's name; attached processes keep their mappings until they detach.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the name is already gone.
    pub fn destroy(self) -> Result<()> {
        let name = self.inner.name.clone();
        drop(self);
        crate::Segment::unlink(&name)
    }
}

/// A block of the shared heap owned by this process; freed when dropped, unless handed over
/// with [`into_handle`](Self::into_handle). It hands out raw pointers and copies only: a
/// buggy peer could write the same bytes.
pub struct ShmBuf {
    heap: Arc<Shared>,
    page: u32,
    pages: u32,
    len: usize,
    owned: bool,
}

impl fmt::Debug for ShmBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmBuf")
            .field("page", &self.page)
            .field("pages", &self.pages)
            .field("len", &self.len)
            .finish()
    }
}

impl ShmBuf {
    /// The payload length.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Bytes the block can hold (whole pages).
    pub fn capacity(&self) -> usize {
        self.pages as usize * PAGE
    }
    /// Sets the payload length (at most `capacity()`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] beyond the capacity.
    pub fn set_len(&mut self, len: usize) -> Result<()> {
        if len > self.capacity() {
            return Err(Error::InvalidArgument(format!(
                "length {len} beyond a block of {}",
                self.capacity()
            )));
        }
        self.len = len;
        Ok(())
    }
    fn check(&self, at: usize, n: usize) -> Result<()> {
        match at.checked_add(n) {
            Some(end) if end <= self.capacity() => Ok(()),
            _ => Err(Error::InvalidArgument(format!(
                "{n} bytes at {at} outside a block of {}",
                self.capacity()
            ))),
        }
    }
    /// Copies `data` into the block at `at`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if it does not fit.
    pub fn write_at(&mut self, at: usize, data: &[u8]) -> Result<()> {
        self.check(at, data.len())?;
        // SAFETY: in bounds (checked); the block is ours (owned), in a read-write mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.as_mut_ptr().add(at), data.len())
        };
        Ok(())
    }
    /// Copies `buf.len()` bytes from `at` out of the block.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the range is outside the block.
    pub fn read_at(&self, at: usize, buf: &mut [u8]) -> Result<()> {
        self.check(at, buf.len())?;
        // SAFETY: in bounds (checked); `buf` is private memory.
        unsafe {
            std::ptr::copy_nonoverlapping(self.as_ptr().add(at), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }
    /// The payload, copied out.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len];
        self.read_at(0, &mut v).expect("len <= capacity");
        v
    }
    /// Start of the block, for reading in place (`capacity()` bytes).
    pub fn as_ptr(&self) -> *const u8 {
        self.heap.page_ptr(self.page)
    }
    /// Start of the block, for writing in place (`capacity()` bytes).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.heap.page_ptr(self.page)
    }
    /// Hands the block over: it is marked in flight and the returned handle lets one process
    /// (this one or another attached to the heap) [`Heap::take`] it.
    pub fn into_handle(mut self) -> Handle {
        let s = &self.heap;
        let d = s.desc(self.page).load(Ordering::Relaxed);
        // Release: our writes to the block happen before a taker's Acquire load sees it in
        // flight. A plain store is enough: the block is ours, nobody else writes its head.
        s.desc(self.page).store(d | INFLIGHT, Ordering::Release);
        let generation = s.gen_word(self.page).load(Ordering::Acquire);
        self.owned = false;
        Handle {
            page: self.page,
            pages: self.pages,
            len: self.len as u64,
            generation,
            check: Handle::checksum(self.page, self.pages, self.len as u64, generation, s.nonce),
        }
    }
}

impl Drop for ShmBuf {
    fn drop(&mut self) {
        if self.owned {
            self.heap.free(self.page, self.pages);
        }
    }
}
