//! The allocator over a [`Region`]: chunk descriptors, block meta words, and every transition
//! between their states, each a single compare-and-swap. No I/O, no blocking; liveness of
//! owners is asked of the caller through `is_dead`.
//!
//! # Words
//!
//! A chunk descriptor is `state:4 | gn:28 | payload:32`:
//!
//! | state | payload | meaning |
//! |---|---|---|
//! | `FREE` | 0 | unused chunk |
//! | `CLAIM` | claimer (record, record generation) | being carved or claimed for a run |
//! | `SMALL` | class `k` | carved into blocks of `64 << k` bytes |
//! | `LARGE` | run length `n` | head of a run of `n` chunks, one block |
//! | `CONT` | head chunk | continuation of the run whose head is named |
//!
//! `gn` grows by one each time the chunk becomes `FREE`, so a descriptor value is never seen
//! twice (modulo 2^28) and a compare-and-swap on an old value fails.
//!
//! A block meta word is `state:4 | gn:24 | owner:28`: `FREE`, `OWNED` (by `owner`),
//! `FLIGHT` (handed out as a handle; `owner` is the sender, for diagnostics), `RETIRED` (locked
//! by `owner` while it returns an empty chunk). `gn` grows each time the block is freed or
//! claimed as a large run, and is what handles carry: a stale handle never matches.
//! Small block `j` of a chunk uses meta word `j`; a large run uses word 0 of its head.
//!
//! # Crash analysis
//!
//! Every step is one CAS on one word, and every word a process holds while between steps is
//! tagged with its owner id, so a process killed at any instruction leaves:
//!
//! - small alloc / free / take / into_handle: a single CAS each; before it nothing happened,
//!   after it the block is owned by the dead process (reclaimed by `reclaim`) or already free.
//!   A stale allocator that lost a race with a chunk's re-carving undoes its CAS; if it dies
//!   before the undo, the block is owned by a dead process: reclaimed.
//! - carving a chunk: `CLAIM(dead)` descriptor: `reclaim` frees it.
//! - claiming a large run: the head `CLAIM(dead)`, some chunks after it already `CONT(head)`:
//!   `reclaim` frees the claim and the orphaned continuations (a continuation whose head is
//!   not a `LARGE` run covering it, nor claimed by a live process).
//! - freeing a large run: the head's meta word is the run's token and is freed after the
//!   continuations, the head last (see `free_large`). Killed while freeing continuations:
//!   the meta word is still `OWNED(dead)`, so `reclaim` takes it over (a CAS to its own id)
//!   and frees the rest as the owner would; killed after the meta word: only the head is left,
//!   which `reclaim` frees by a CAS on its exact value. Only the holder of a live token frees
//!   continuations of a run (besides the rollback of a claim and the orphan rule above, both
//!   CASes on exact, generation-tagged values), so a finisher with a stale view of a head can
//!   never free the chunks of a later run claimed at the same head.
//! - retiring an empty small chunk: some blocks `RETIRED(dead)` in a `SMALL` chunk: `reclaim`
//!   unlocks them.
//!
//! Nothing is ever wedged: no word waits on another process's progress, and every state a dead
//! process leaves is recognisable by its owner id. The cursor and hint words are hints only.

use super::region::{MAX_CLASSES, MIN_BLOCK_SHIFT, OFF_CLASS_HINT, OFF_LARGE_HINT, Region};
use crate::loom::Ordering::{Acquire, Relaxed, Release};

pub(crate) const D_FREE: u64 = 0;
pub(crate) const D_CLAIM: u64 = 1;
pub(crate) const D_SMALL: u64 = 2;
pub(crate) const D_LARGE: u64 = 3;
pub(crate) const D_CONT: u64 = 4;

pub(crate) const M_FREE: u64 = 1;
pub(crate) const M_OWNED: u64 = 2;
pub(crate) const M_FLIGHT: u64 = 3;
pub(crate) const M_RETIRED: u64 = 4;

/// Mask of a block generation (24 bits, as carried by handles).
pub(crate) const GEN_MASK: u32 = 0xff_ffff;
const DGEN_MASK: u64 = 0x0fff_ffff;
const OWNER_MASK: u32 = 0x0fff_ffff;

pub(crate) fn d_state(w: u64) -> u64 {
    w & 0xf
}
pub(crate) fn d_gen(w: u64) -> u64 {
    (w >> 4) & DGEN_MASK
}
pub(crate) fn d_pay(w: u64) -> u32 {
    (w >> 32) as u32
}
pub(crate) fn d_make(state: u64, gn: u64, pay: u32) -> u64 {
    state | (gn & DGEN_MASK) << 4 | u64::from(pay) << 32
}
pub(crate) fn m_state(w: u64) -> u64 {
    w & 0xf
}
pub(crate) fn m_gen(w: u64) -> u32 {
    ((w >> 4) as u32) & GEN_MASK
}
pub(crate) fn m_owner(w: u64) -> u32 {
    ((w >> 28) as u32) & OWNER_MASK
}
pub(crate) fn m_make(state: u64, gn: u32, owner: u32) -> u64 {
    state | u64::from(gn & GEN_MASK) << 4 | u64::from(owner & OWNER_MASK) << 28
}

/// An owner id: participant record index (12 bits) and its generation (16 bits).
pub(crate) fn owner_id(record: u32, generation: u16) -> u32 {
    (record & 0xfff) | u32::from(generation) << 12
}

/// A block as the allocator knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    /// Chunk of the block (the head chunk of a large run).
    pub(crate) chunk: u32,
    /// Meta word index within the chunk (0 for large runs).
    pub(crate) index: u32,
    /// Small class, or `None` for a large run of `n` chunks.
    pub(crate) class: Option<u32>,
    /// Chunks of a large run (1 for small blocks).
    pub(crate) n: u32,
    /// Generation of the block's meta word while it is held.
    pub(crate) gn: u32,
}

/// How a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bad {
    /// No room.
    Exhausted,
    /// A handle or shared word that cannot be right; the text says why.
    Corrupt(String),
}

impl Region {
    /// Bytes of a chunk.
    pub(crate) fn chunk_len(&self) -> u64 {
        1 << self.chunk_shift
    }
    /// Number of small classes: blocks of `64 << k` bytes for `k < classes()`, the largest
    /// being half a chunk.
    pub(crate) fn classes(&self) -> u32 {
        (self.chunk_shift - MIN_BLOCK_SHIFT).min(MAX_CLASSES)
    }
    /// Largest request served by a small class.
    pub(crate) fn small_max(&self) -> u64 {
        self.block_len(self.classes() - 1)
    }
    pub(crate) fn block_len(&self, k: u32) -> u64 {
        1 << (MIN_BLOCK_SHIFT + k)
    }
    pub(crate) fn blocks_per_chunk(&self, k: u32) -> u32 {
        1 << (self.chunk_shift - MIN_BLOCK_SHIFT - k)
    }
    /// The class for a request of `len` bytes, `None` for a large one.
    pub(crate) fn class_of(&self, len: u64) -> Option<u32> {
        if len > self.small_max() {
            return None;
        }
        let len = len.max(1 << MIN_BLOCK_SHIFT);
        Some(len.next_power_of_two().trailing_zeros() - MIN_BLOCK_SHIFT)
    }
    /// Offset of a block in the heap area.
    pub(crate) fn offset(&self, b: &Block) -> u64 {
        let base = u64::from(b.chunk) << self.chunk_shift;
        match b.class {
            Some(k) => base + u64::from(b.index) * self.block_len(k),
            None => base,
        }
    }
    /// Capacity of a block in bytes.
    pub(crate) fn capacity(&self, b: &Block) -> u64 {
        match b.class {
            Some(k) => self.block_len(k),
            None => u64::from(b.n) << self.chunk_shift,
        }
    }

    fn class_hint(&self, k: u32) -> &crate::loom::AtomicU32 {
        self.ctrl32(OFF_CLASS_HINT + 4 * k as usize)
    }

    /// Allocates a block for `len` bytes, owned by `me`. `Err(Exhausted)` when no chunk has
    /// room; the caller may reclaim and retry.
    pub(crate) fn alloc(&self, len: u64, me: u32) -> Result<Block, Bad> {
        match self.class_of(len) {
            Some(k) => self.alloc_small(k, me),
            None => {
                let n = len.div_ceil(self.chunk_len());
                if n > u64::from(self.n_chunks) {
                    return Err(Bad::Exhausted);
                }
                self.alloc_large(n as u32, me)
            }
        }
    }

    fn alloc_small(&self, k: u32, me: u32) -> Result<Block, Bad> {
        let n = self.n_chunks;
        // Relaxed: a hint; try_chunk validates the chunk's descriptor itself.
        let hint = self.class_hint(k).load(Relaxed);
        let start = if hint < n { hint } else { 0 };
        for t in 0..n {
            let c = (start + t) % n;
            if let Some(b) = self.try_chunk(c, k, me) {
                if c != hint {
                    self.class_hint(k).store(c, Relaxed);
                }
                return Ok(b);
            }
        }
        // No carved chunk has room: carve a free one.
        for c in 0..n {
            // Acquire: pairs with the Release that freed the chunk (its last user's writes to
            // the metas happen-before our re-initialisation).
            let d = self.desc(c).load(Acquire);
            if d_state(d) != D_FREE {
                continue;
            }
            let claim = d_make(D_CLAIM, d_gen(d), me);
            if self
                .desc(c)
                .compare_exchange(d, claim, Acquire, Relaxed)
                .is_err()
            {
                continue;
            }
            for j in 0..self.blocks_per_chunk(k) {
                let m = self.meta(c, j);
                // Relaxed inside: the chunk is ours (CLAIM); publication is the Release below.
                let _ = m.fetch_update(Relaxed, Relaxed, |w| {
                    Some(m_make(M_FREE, m_gen(w).wrapping_add(1), 0))
                });
            }
            self.cursor(c).store(0, Relaxed);
            // Release: pairs with the Acquire descriptor loads in try_chunk / take / reclaim;
            // they see the initialised metas.
            if self
                .desc(c)
                .compare_exchange(claim, d_make(D_SMALL, d_gen(d), k), Release, Relaxed)
                .is_err()
            {
                // Only a peer scribbling on our claim gets here; look elsewhere.
                continue;
            }
            self.class_hint(k).store(c, Relaxed);
            if let Some(b) = self.try_chunk(c, k, me) {
                return Ok(b);
            }
        }
        Err(Bad::Exhausted)
    }

    /// Takes a free block of class `k` in chunk `c`, if it is carved for `k` and has one.
    fn try_chunk(&self, c: u32, k: u32, me: u32) -> Option<Block> {
        // Acquire: pairs with the Release that published the carving (alloc_small).
        let d = self.desc(c).load(Acquire);
        if d_state(d) != D_SMALL || d_pay(d) != k {
            return None;
        }
        let count = self.blocks_per_chunk(k);
        let start = self.cursor(c).load(Relaxed) % count;
        for t in 0..count {
            let j = (start + t) % count;
            let m = self.meta(c, j);
            let w = m.load(Relaxed);
            if m_state(w) != M_FREE {
                continue;
            }
            let owned = m_make(M_OWNED, m_gen(w), me);
            // Acquire: pairs with the Release CAS that freed the block, so the previous
            // owner's accesses to its bytes happen-before ours.
            if m.compare_exchange(w, owned, Acquire, Relaxed).is_err() {
                continue;
            }
            // The chunk may have been retired and re-carved for another class between our
            // descriptor load and the CAS: then meta word j is another block. The descriptor's
            // generation grows on every retirement, so an unchanged value proves it was not.
            // Acquire: pairs with the Release of a re-carving.
            if self.desc(c).load(Acquire) != d {
                let _ = m.compare_exchange(
                    owned,
                    m_make(M_FREE, m_gen(w).wrapping_add(1), 0),
                    Release,
                    Relaxed,
                );
                return None;
            }
            self.cursor(c).store(j + 1, Relaxed);
            return Some(Block {
                chunk: c,
                index: j,
                class: Some(k),
                n: 1,
                gn: m_gen(w),
            });
        }
        None
    }

    fn alloc_large(&self, n: u32, me: u32) -> Result<Block, Bad> {
        let total = self.n_chunks;
        let hint = self.ctrl32(OFF_LARGE_HINT).load(Relaxed);
        let start = if hint < total { hint } else { 0 };
        // First fit over chunk runs, from where the last search ended, wrapping once.
        let mut scanned = 0u32;
        let mut c = start;
        while scanned < total {
            if c + n > total {
                scanned += total - c;
                c = 0;
                continue;
            }
            // Length of the free run at c, up to n.
            let mut run = 0;
            while run < n && d_state(self.desc(c + run).load(Relaxed)) == D_FREE {
                run += 1;
            }
            if run == n {
                if let Some(b) = self.claim_run(c, n, me) {
                    self.ctrl32(OFF_LARGE_HINT).store(c + n, Relaxed);
                    return Ok(b);
                }
                run = 0; // lost a race; look again from the next chunk
            }
            let step = run + 1;
            scanned += step;
            c += step;
            if c >= total {
                c = 0;
            }
        }
        Err(Bad::Exhausted)
    }

    /// Claims chunks `h .. h + n`, all seen free, as one large block owned by `me`.
    fn claim_run(&self, h: u32, n: u32, me: u32) -> Option<Block> {
        // The head first, as CLAIM(me): while it is, the continuations below are ours, and a
        // reclaimer sees them as orphans only once `me` is dead.
        // Acquire: pairs with the Release that freed the chunk.
        let hd = self.desc(h).load(Acquire);
        if d_state(hd) != D_FREE {
            return None;
        }
        let claim = d_make(D_CLAIM, d_gen(hd), me);
        if self
            .desc(h)
            .compare_exchange(hd, claim, Acquire, Relaxed)
            .is_err()
        {
            return None;
        }
        // Then each continuation straight from FREE to CONT(h); roll back on conflict. The
        // rollback goes to FREE with the next generation, so a reclaimer that judged one of our
        // continuations an orphan too late cannot free a later CONT(h) of another claimant.
        for i in h + 1..h + n {
            // Acquire: pairs with the Release that freed the chunk.
            let d = self.desc(i).load(Acquire);
            let ok = d_state(d) == D_FREE
                && self
                    .desc(i)
                    .compare_exchange(d, d_make(D_CONT, d_gen(d), h), Acquire, Relaxed)
                    .is_ok();
            if !ok {
                for j in h + 1..i {
                    let w = self.desc(j).load(Relaxed);
                    if d_state(w) == D_CONT && d_pay(w) == h {
                        let _ = self.desc(j).compare_exchange(
                            w,
                            d_make(D_FREE, d_gen(w) + 1, 0),
                            Release,
                            Relaxed,
                        );
                    }
                }
                // Release: pairs with the Acquire of the next claimant.
                let _ = self.desc(h).compare_exchange(
                    claim,
                    d_make(D_FREE, d_gen(hd) + 1, 0),
                    Release,
                    Relaxed,
                );
                return None;
            }
        }
        // The head's meta word carries ownership and the generation handles check.
        let m = self.meta(h, 0);
        // Relaxed: the chunk is ours (CLAIM); publication is the Release on the head below.
        let old = m
            .fetch_update(Relaxed, Relaxed, |w| {
                Some(m_make(M_OWNED, m_gen(w).wrapping_add(1), me))
            })
            .unwrap_or_else(|w| w);
        let gn = m_gen(old).wrapping_add(1) & GEN_MASK;
        // Release: pairs with the Acquire descriptor loads in take / reclaim: who sees LARGE
        // sees the owned meta word and the continuations.
        self.desc(h)
            .compare_exchange(claim, d_make(D_LARGE, d_gen(hd), n), Release, Relaxed)
            .ok()?;
        Some(Block {
            chunk: h,
            index: 0,
            class: None,
            n,
            gn,
        })
    }

    /// Frees a block `me` owns. `false` if it was not owned by `me` any more (a peer took it
    /// over or scribbled on it): nothing is changed then.
    pub(crate) fn free(&self, b: &Block, me: u32) -> bool {
        let m = self.meta(b.chunk, b.index);
        let owned = m_make(M_OWNED, b.gn, me);
        if b.class.is_none() {
            return self.free_large(b.chunk, owned);
        }
        // Release (within SeqCst): pairs with the Acquire CAS of the next allocator or the
        // reclaimer; our accesses to the bytes happen-before theirs. SeqCst: a waiter in
        // `alloc_timeout` increments its counter with a SeqCst RMW and then a SeqCst fence;
        // the freer's SeqCst load of that counter after this CAS sees it, or the waiter's
        // retry sees this free (on x86 a SeqCst CAS costs what a Release one does, and it
        // saves a fence per free).
        if m.compare_exchange(
            owned,
            m_make(M_FREE, b.gn.wrapping_add(1), 0),
            crate::loom::Ordering::SeqCst,
            Relaxed,
        )
        .is_err()
        {
            return false;
        }
        if let Some(k) = b.class {
            // Relaxed: a hint. Loaded first so the line is not written on every free.
            if self.class_hint(k).load(Relaxed) != b.chunk {
                self.class_hint(k).store(b.chunk, Relaxed);
            }
        }
        true
    }

    /// Frees the large run headed by `h` whose meta word is `owned`, held by the live caller
    /// (its owner, or a reclaimer that took it over from a dead one). `false`, with nothing
    /// changed, if the meta word is not `owned` or the head is not a run.
    ///
    /// The meta word is the run's ownership token, and it is given up last but one: first the
    /// continuations, then the meta word, then the head. While the token is held nobody else
    /// frees anything of the run, and the head cannot be claimed again, so no continuation
    /// `CONT(h)` of another incarnation of the run can exist; once the token is free, only the
    /// head is left, and anyone may free it with a CAS on its exact value (a head seen with a
    /// free meta word is never a later incarnation: the descriptor's generation says so).
    /// Freeing the token first and the chunks after, by whoever came, let a finisher with a
    /// stale view of the head free the chunks of the next run claimed there.
    fn free_large(&self, h: u32, owned: u64) -> bool {
        let m = self.meta(h, 0);
        // Relaxed: the word is ours if it holds `owned` (we wrote it, in claim_run, take or a
        // reclaim takeover); only a scribbling peer changes a live owner's word.
        if m.load(Relaxed) != owned {
            return false;
        }
        // Acquire: pairs with the Release that published the run (claim_run); while we hold
        // the token the head stays this run's.
        let head = self.desc(h).load(Acquire);
        if d_state(head) != D_LARGE {
            return false;
        }
        let end = h.saturating_add(d_pay(head)).min(self.n_chunks);
        for i in h + 1..end {
            let d = self.desc(i).load(Relaxed);
            if d_state(d) == D_CONT && d_pay(d) == h {
                // Release: pairs with the Acquire CAS of whoever claims the chunk next; our
                // accesses to its bytes happen-before theirs.
                let _ = self.desc(i).compare_exchange(
                    d,
                    d_make(D_FREE, d_gen(d) + 1, 0),
                    Release,
                    Relaxed,
                );
            }
        }
        // Release (within SeqCst): pairs with the Acquire meta loads in reclaim and take
        // (the freed continuations and our accesses to the head chunk happen-before them).
        // SeqCst: as in `free`, for the waiters of `alloc_timeout` (notify_freed also fences
        // for large frees).
        if m.compare_exchange(
            owned,
            m_make(M_FREE, m_gen(owned).wrapping_add(1), 0),
            crate::loom::Ordering::SeqCst,
            Relaxed,
        )
        .is_err()
        {
            return false;
        }
        self.free_large_head(h, head);
        // The next large request looks here first: the run just freed is the most likely to
        // fit a stream of same-sized messages at once, and its bytes are still in cache.
        // Relaxed: a hint, validated by the claim.
        self.ctrl32(OFF_LARGE_HINT).store(h, Relaxed);
        true
    }

    /// Frees the head of the large run whose descriptor was `head`, once its meta word is free
    /// (so every continuation is already free). A CAS on the exact old value: a later
    /// incarnation of the run is never touched, and two finishers cannot both act.
    fn free_large_head(&self, h: u32, head: u64) {
        // Release: pairs with the Acquire loads of allocators that claim the chunk next.
        let _ = self.desc(h).compare_exchange(
            head,
            d_make(D_FREE, d_gen(head) + 1, 0),
            Release,
            Relaxed,
        );
    }

    /// Marks an owned block as handed out (in flight). `false` if `me` did not own it.
    pub(crate) fn to_flight(&self, b: &Block, me: u32) -> bool {
        // Release: pairs with the Acquire CAS in `take`: our writes to the block are visible
        // to the process that takes it, whatever carried the handle.
        self.meta(b.chunk, b.index)
            .compare_exchange(
                m_make(M_OWNED, b.gn, me),
                m_make(M_FLIGHT, b.gn, me),
                Release,
                Relaxed,
            )
            .is_ok()
    }

    /// Finds the block a handle names: `offset` in the heap, `len` requested bytes, `gn` the
    /// block generation. Checks bounds, alignment, the chunk's state and class; not the meta
    /// word (callers check its state and generation by CAS or load).
    pub(crate) fn locate(&self, offset: u64, len: u64, gn: u32) -> Result<(Block, u64), Bad> {
        let bad = |why: String| Err(Bad::Corrupt(why));
        let heap_len = u64::from(self.n_chunks) << self.chunk_shift;
        if offset >= heap_len {
            return bad(format!(
                "offset {offset} is outside the {heap_len}-byte heap"
            ));
        }
        if gn > GEN_MASK {
            return bad(format!("generation {gn:#x} has more than 24 bits"));
        }
        let c = (offset >> self.chunk_shift) as u32;
        let within = offset & (self.chunk_len() - 1);
        // Acquire: pairs with the Release publishing the chunk's state (carving, claim_run).
        let d = self.desc(c).load(Acquire);
        match (d_state(d), self.class_of(len)) {
            (D_SMALL, Some(k)) if d_pay(d) == k => {
                if within % self.block_len(k) != 0 {
                    return bad(format!(
                        "offset {offset} is not at a {}-byte block boundary",
                        self.block_len(k)
                    ));
                }
                let index = (within / self.block_len(k)) as u32;
                Ok((
                    Block {
                        chunk: c,
                        index,
                        class: Some(k),
                        n: 1,
                        gn,
                    },
                    d,
                ))
            }
            (D_LARGE, None) if within == 0 => {
                let n = d_pay(d);
                if n == 0 || u64::from(n) > u64::from(self.n_chunks - c) {
                    return bad(format!("chunk {c} heads a run of {n} chunks"));
                }
                if len > u64::from(n) << self.chunk_shift {
                    return bad(format!(
                        "length {len} exceeds the {}-byte block at offset {offset}",
                        u64::from(n) << self.chunk_shift
                    ));
                }
                Ok((
                    Block {
                        chunk: c,
                        index: 0,
                        class: None,
                        n,
                        gn,
                    },
                    d,
                ))
            }
            (s, _) => bad(format!(
                "no live block of {len} bytes at offset {offset} (chunk {c} in state {s}, \
                 payload {})",
                d_pay(d)
            )),
        }
    }

    /// Takes ownership of the in-flight block a handle names.
    pub(crate) fn take(&self, offset: u64, len: u64, gn: u32, me: u32) -> Result<Block, Bad> {
        let (b, d) = self.locate(offset, len, gn)?;
        let m = self.meta(b.chunk, b.index);
        let w = m.load(Relaxed);
        if m_state(w) != M_FLIGHT || m_gen(w) != gn {
            return Err(Bad::Corrupt(format!(
                "the block at offset {offset} is not in flight with generation {gn} (state {}, \
                 generation {}): taken twice, freed, or forged",
                m_state(w),
                m_gen(w)
            )));
        }
        // Acquire: pairs with the Release CAS in to_flight; the sender's writes are visible.
        if m.compare_exchange(w, m_make(M_OWNED, gn, me), Acquire, Relaxed)
            .is_err()
        {
            return Err(Bad::Corrupt(format!(
                "the block at offset {offset} was taken concurrently (handle used twice)"
            )));
        }
        // Generations make a re-carved chunk impossible here; check anyway, and undo.
        if self.desc(b.chunk).load(Acquire) != d {
            let _ = m.compare_exchange(m_make(M_OWNED, gn, me), w, Release, Relaxed);
            return Err(Bad::Corrupt(format!(
                "the chunk of offset {offset} changed while taking it"
            )));
        }
        Ok(b)
    }

    /// Checks that a handle names a live block (owned or in flight) without taking it.
    pub(crate) fn check_live(&self, offset: u64, len: u64, gn: u32) -> Result<Block, Bad> {
        let (b, _) = self.locate(offset, len, gn)?;
        let w = self.meta(b.chunk, b.index).load(Acquire);
        if !matches!(m_state(w), M_OWNED | M_FLIGHT) || m_gen(w) != gn {
            return Err(Bad::Corrupt(format!(
                "no live block with generation {gn} at offset {offset}"
            )));
        }
        Ok(b)
    }

    /// Reclaims what dead owners left (see the module's crash analysis). `is_dead` answers for
    /// an owner id; `me` is the caller's (it takes dead owners' large runs over to free them).
    /// Returns (blocks reclaimed, bytes reclaimed).
    // A CAS with side effects reads better in the arm than in a match guard.
    #[allow(clippy::collapsible_match)]
    /// With `flight`, blocks in flight whose sender is dead are freed too.
    pub(crate) fn reclaim(
        &self,
        is_dead: &mut dyn FnMut(u32) -> bool,
        flight: bool,
        me: u32,
    ) -> (u64, u64) {
        let held = |w: u64| m_state(w) == M_OWNED || (flight && m_state(w) == M_FLIGHT);
        let (mut blocks, mut bytes) = (0u64, 0u64);
        for c in 0..self.n_chunks {
            // Acquire: pairs with the Release publishing the chunk's state.
            let d = self.desc(c).load(Acquire);
            match d_state(d) {
                D_CLAIM if is_dead(d_pay(d)) => {
                    if self
                        .desc(c)
                        .compare_exchange(d, d_make(D_FREE, d_gen(d) + 1, 0), Release, Relaxed)
                        .is_ok()
                    {
                        bytes += self.chunk_len();
                    }
                }
                D_CONT => {
                    let h = d_pay(d);
                    let orphan = if h >= c {
                        true
                    } else {
                        let hd = self.desc(h).load(Acquire);
                        match d_state(hd) {
                            D_LARGE => u64::from(h) + u64::from(d_pay(hd)) <= u64::from(c),
                            D_CLAIM => is_dead(d_pay(hd)),
                            _ => true,
                        }
                    };
                    if orphan
                        && self
                            .desc(c)
                            .compare_exchange(d, d_make(D_FREE, d_gen(d) + 1, 0), Release, Relaxed)
                            .is_ok()
                    {
                        bytes += self.chunk_len();
                    }
                }
                D_LARGE => {
                    let m = self.meta(c, 0);
                    // Acquire: pairs with the Release publishing the run (the meta word it
                    // set is visible) and with the Release part of a free of the meta word.
                    let w = m.load(Acquire);
                    let n = u64::from(d_pay(d));
                    match m_state(w) {
                        _ if held(w) && is_dead(m_owner(w)) => {
                            // Take the token over, then free the run as its owner would (see
                            // free_large). Acquire: the dead owner's accesses happen-before
                            // the reuse.
                            let mine = m_make(M_OWNED, m_gen(w), me);
                            if m.compare_exchange(w, mine, Acquire, Relaxed).is_err() {
                                continue;
                            }
                            // Acquire: pairs with the Release publishing the chunk's state.
                            // Unchanged (generations never repeat), it was this run the whole
                            // time, so the word we took is its token; otherwise the word is
                            // something else the dead process held: put it back for a later
                            // sweep.
                            if self.desc(c).load(Acquire) != d {
                                let _ = m.compare_exchange(mine, w, Relaxed, Relaxed);
                            } else if self.free_large(c, mine) {
                                blocks += 1;
                                bytes += n << self.chunk_shift;
                            }
                        }
                        // The token is free, so the continuations are (free_large): only the
                        // head is left. A dead finisher's free is completed here.
                        M_FREE => self.free_large_head(c, d),
                        _ => {}
                    }
                }
                D_SMALL => {
                    let k = d_pay(d);
                    if k >= self.classes() {
                        continue;
                    }
                    for j in 0..self.blocks_per_chunk(k) {
                        let m = self.meta(c, j);
                        let w = m.load(Relaxed);
                        let to = match m_state(w) {
                            _ if held(w) && is_dead(m_owner(w)) => {
                                m_make(M_FREE, m_gen(w).wrapping_add(1), 0)
                            }
                            M_RETIRED if is_dead(m_owner(w)) => m_make(M_FREE, m_gen(w), 0),
                            _ => continue,
                        };
                        // Acquire: the dead owner's accesses happen-before the block's reuse;
                        // Release: the next allocator's Acquire CAS pairs with this one.
                        if m.compare_exchange(w, to, crate::loom::Ordering::AcqRel, Relaxed)
                            .is_ok()
                            && m_state(w) != M_RETIRED
                        {
                            blocks += 1;
                            bytes += self.block_len(k);
                        }
                    }
                }
                _ => {}
            }
        }
        (blocks, bytes)
    }

    /// Returns small chunks whose blocks are all free to the pool of free chunks, so large
    /// runs can use them. Returns how many were returned.
    pub(crate) fn retire_empty(&self, me: u32) -> u32 {
        let mut retired = 0;
        let mut locked = Vec::new();
        for c in 0..self.n_chunks {
            // Acquire: pairs with the Release publishing the carving.
            let d = self.desc(c).load(Acquire);
            if d_state(d) != D_SMALL || d_pay(d) >= self.classes() {
                continue;
            }
            locked.clear();
            let mut all = true;
            for j in 0..self.blocks_per_chunk(d_pay(d)) {
                let m = self.meta(c, j);
                let w = m.load(Relaxed);
                // Acquire: pairs with the Release free of the block's last owner.
                if m_state(w) != M_FREE
                    || m.compare_exchange(w, m_make(M_RETIRED, m_gen(w), me), Acquire, Relaxed)
                        .is_err()
                {
                    all = false;
                    break;
                }
                locked.push((j, m_gen(w)));
            }
            // Release: pairs with the Acquire of whoever claims the free chunk next.
            if all
                && self
                    .desc(c)
                    .compare_exchange(d, d_make(D_FREE, d_gen(d) + 1, 0), Release, Relaxed)
                    .is_ok()
            {
                retired += 1;
                continue;
            }
            for &(j, g) in &locked {
                let _ = self.meta(c, j).compare_exchange(
                    m_make(M_RETIRED, g, me),
                    m_make(M_FREE, g, 0),
                    Release,
                    Relaxed,
                );
            }
        }
        retired
    }

    /// Whether some chunk is being carved or claimed right now (a `CLAIM` descriptor; a dead
    /// claimer's is freed by `reclaim`, which callers run first).
    pub(crate) fn claims_in_progress(&self) -> bool {
        (0..self.n_chunks).any(|c| d_state(self.desc(c).load(Relaxed)) == D_CLAIM)
    }

    /// Bytes free right now: free chunks plus free small blocks (a racy snapshot).
    pub(crate) fn free_bytes(&self) -> u64 {
        let mut free = 0;
        for c in 0..self.n_chunks {
            let d = self.desc(c).load(Relaxed);
            match d_state(d) {
                D_FREE => free += self.chunk_len(),
                D_SMALL if d_pay(d) < self.classes() => {
                    let k = d_pay(d);
                    for j in 0..self.blocks_per_chunk(k) {
                        if m_state(self.meta(c, j).load(Relaxed)) == M_FREE {
                            free += self.block_len(k);
                        }
                    }
                }
                _ => {}
            }
        }
        free
    }
}

#[cfg(all(test, not(shmchan_loom)))]
mod tests {
    use super::super::region::Offsets;
    use super::*;

    /// An in-process region over a heap-allocated, 4096-aligned buffer.
    pub(crate) struct Owned {
        region: Region,
        _buf: Vec<u8>,
    }
    pub(crate) fn region(n_chunks: u32, chunk_shift: u32) -> Owned {
        let off = Offsets::compute(n_chunks, chunk_shift, 0).unwrap();
        let mut buf = vec![0u8; off.total + 4096];
        let pad = buf.as_ptr().align_offset(4096);
        // SAFETY: buf holds off.total bytes from base (padded), zeroed, alive as long as Owned.
        let region = unsafe { Region::new(buf.as_mut_ptr().add(pad), off, n_chunks, chunk_shift) };
        Owned { region, _buf: buf }
    }

    const A: u32 = 1;
    const B: u32 = 2;

    #[test]
    fn classes_and_sizes() {
        let o = region(4, 16);
        let r = &o.region;
        assert_eq!(r.classes(), 10);
        assert_eq!(r.class_of(0), Some(0));
        assert_eq!(r.class_of(64), Some(0));
        assert_eq!(r.class_of(65), Some(1));
        assert_eq!(r.class_of(4096), Some(6));
        assert_eq!(r.class_of(32768), Some(9));
        assert_eq!(r.class_of(32769), None);
        assert_eq!(r.free_bytes(), 4 << 16);
    }

    #[test]
    fn small_blocks_are_distinct_and_reused() {
        let o = region(2, 16);
        let r = &o.region;
        let mut seen = std::collections::HashSet::new();
        let mut held = Vec::new();
        for _ in 0..1024 {
            let b = r.alloc(64, A).unwrap();
            assert!(seen.insert(r.offset(&b)));
            held.push(b);
        }
        assert_eq!(r.free_bytes(), 1 << 16);
        for b in &held {
            assert!(r.free(b, A));
            assert!(!r.free(b, A), "double free must fail");
        }
        assert_eq!(r.free_bytes(), 2 << 16);
    }

    #[test]
    fn large_runs_coalesce_and_exhaust() {
        let o = region(8, 16);
        let r = &o.region;
        let a = r.alloc(3 << 16, A).unwrap();
        let b = r.alloc(3 << 16, A).unwrap();
        assert_eq!(r.alloc(3 << 16, A), Err(Bad::Exhausted));
        let c = r.alloc(2 << 16, A).unwrap();
        assert_eq!(r.free_bytes(), 0);
        assert!(r.free(&a, A) && r.free(&b, A));
        // a and b were adjacent: a 6-chunk run is free again.
        let d = r.alloc(6 << 16, A).unwrap();
        assert!(r.free(&d, A) && r.free(&c, A));
        assert_eq!(r.free_bytes(), 8 << 16);
        assert_eq!(r.alloc(9 << 16, A), Err(Bad::Exhausted));
    }

    #[test]
    fn empty_small_chunks_are_retired_for_large_runs() {
        let o = region(2, 16);
        let r = &o.region;
        let x = r.alloc(100, A).unwrap();
        let y = r.alloc(40_000, A).unwrap();
        assert_eq!(r.alloc(2 << 16, A), Err(Bad::Exhausted));
        assert_eq!(r.retire_empty(A), 0, "both chunks hold a block");
        assert!(r.free(&x, A) && r.free(&y, A));
        assert_eq!(r.retire_empty(A), 1);
        let z = r.alloc(2 << 16, A).unwrap();
        assert!(r.free(&z, A));
    }

    #[test]
    fn handles_transfer_once() {
        let o = region(8, 16);
        let r = &o.region;
        for len in [10u64, 5000, 200_000] {
            let b = r.alloc(len, A).unwrap();
            let off = r.offset(&b);
            assert!(matches!(r.take(off, len, b.gn, B), Err(Bad::Corrupt(_))));
            assert!(r.to_flight(&b, A));
            assert!(r.check_live(off, len, b.gn).is_ok());
            let t = r.take(off, len, b.gn, B).unwrap();
            assert_eq!(t, b);
            assert!(matches!(r.take(off, len, b.gn, B), Err(Bad::Corrupt(_))));
            assert!(!r.free(&t, A), "A does not own it any more");
            assert!(r.free(&t, B));
            assert!(matches!(r.take(off, len, b.gn, B), Err(Bad::Corrupt(_))));
            assert!(r.check_live(off, len, b.gn).is_err());
        }
        assert_eq!(r.free_bytes(), 8 << 16);
    }

    #[test]
    fn forged_handles_are_corrupt() {
        let o = region(4, 16);
        let r = &o.region;
        let b = r.alloc(100, A).unwrap();
        assert!(r.to_flight(&b, A));
        let off = r.offset(&b);
        for (o2, l2, g2) in [
            (off + 1, 100, b.gn),
            (off, 100, b.gn + 1),
            (off, 100_000, b.gn),
            (off, 10, b.gn), // another class
            (u64::MAX, 100, b.gn),
            (4 << 16, 100, b.gn),
            (off, 100, u32::MAX),
            (1 << 16, 100, 0),
        ] {
            assert!(
                matches!(r.take(o2, l2, g2, B), Err(Bad::Corrupt(_))),
                "{o2} {l2} {g2}"
            );
        }
        r.take(off, 100, b.gn, B).unwrap();
    }

    #[test]
    fn reclaim_frees_dead_owners_and_half_done_claims() {
        let o = region(8, 16);
        let r = &o.region;
        let dead = 7;
        let s = r.alloc(64, dead).unwrap();
        let _l = r.alloc(2 << 16, dead).unwrap();
        let mine = r.alloc(64, A).unwrap();
        // A claim of chunks 6..8 interrupted after the first continuation.
        r.desc(6).store(d_make(D_CLAIM, 0, dead), Relaxed);
        r.desc(7).store(d_make(D_CONT, 0, 6), Relaxed);
        let before = r.free_bytes();
        let (blocks, _) = r.reclaim(&mut |o| o == dead, false, A);
        assert_eq!(blocks, 2);
        assert_eq!(r.free_bytes(), before + 64 + (2 << 16) + (2 << 16));
        assert!(!r.free(&s, dead));
        assert!(r.free(&mine, A));
        assert_eq!(r.free_bytes(), 8 << 16);
    }

    #[test]
    fn conflicting_run_claim_rolls_back() {
        let o = region(4, 16);
        let r = &o.region;
        // Chunk 2 is taken (carved for class 5) between the search and the claim.
        r.desc(2).store(d_make(D_SMALL, 0, 5), Relaxed);
        assert!(r.claim_run(1, 3, A).is_none());
        let d1 = r.desc(1).load(Relaxed);
        assert_eq!((d_state(d1), d_gen(d1)), (D_FREE, 1));
        assert_eq!(d_state(r.desc(3).load(Relaxed)), D_FREE);
        // The allocator then finds the run that fits.
        r.desc(2).store(d_make(D_FREE, 0, 0), Relaxed);
        let b = r.alloc(3 << 16, A).unwrap();
        assert!(r.free(&b, A));
        assert_eq!(r.free_bytes(), 4 << 16);
    }

    #[test]
    fn interrupted_large_free_is_finished() {
        let o = region(4, 16);
        let r = &o.region;
        let l = r.alloc(3 << 16, A).unwrap();
        // The owner freed the meta word and died before freeing the chunks.
        r.meta(l.chunk, 0)
            .store(m_make(M_FREE, l.gn + 1, 0), Relaxed);
        r.reclaim(&mut |_| false, false, A);
        assert_eq!(r.free_bytes(), 4 << 16);
    }
}
