//! The heap's words: chunk descriptors, block meta words, per-chunk cursors and control words,
//! over shared memory (or, under `cfg(shmchan_loom)`, over an in-process model made of loom atomics).
//!
//! ```text
//! data area of the layout (offsets from its start, which is 128-aligned)
//!      0  free_seq: u32, waiters: u32          bounded waits in alloc_timeout (futex word)
//!     64  class_hint[k]: u32 per small class   a chunk of class k that recently had room
//!    192  large_hint: u32                      where the last large run search ended
//!    256  desc[n_chunks]: u64                  one descriptor per chunk
//!         cursor[n_chunks]: u32                next block to look at in a small chunk (hint)
//!         meta[n_chunks][metas_per_chunk]: u64 page-aligned; one word per block
//!         heap[n_chunks][chunk]                page-aligned; the blocks users write
//! ```

#[allow(unused_imports)]
use crate::loom::{AtomicU32, AtomicU64};

/// Offset of the futex word bumped after frees when someone waits for memory.
pub(crate) const OFF_FREE_SEQ: usize = 0;
/// Number of threads waiting in `alloc_timeout`.
pub(crate) const OFF_WAITERS: usize = 4;
/// First class hint word.
pub(crate) const OFF_CLASS_HINT: usize = 64;
/// Large-run search hint.
pub(crate) const OFF_LARGE_HINT: usize = 192;
/// Size of the control block.
pub(crate) const CTRL_LEN: usize = 256;
/// Most small classes (so the hint words fit in the control block).
pub(crate) const MAX_CLASSES: u32 = 32;

/// Smallest block: 64 bytes (one cache line).
pub(crate) const MIN_BLOCK_SHIFT: u32 = 6;

/// Where the tables of a heap of `n_chunks` chunks of `1 << chunk_shift` bytes lie, relative to
/// the data area; `data_abs` is the data area's offset in the segment, used to page-align.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offsets {
    pub(crate) desc: usize,
    pub(crate) cursor: usize,
    pub(crate) meta: usize,
    pub(crate) heap: usize,
    pub(crate) total: usize,
}

/// Rounds `x` up to a multiple of `a` (a power of two).
fn align_up(x: usize, a: usize) -> usize {
    (x + a - 1) & !(a - 1)
}

impl Offsets {
    /// Computes the offsets; `None` on overflow.
    pub(crate) fn compute(n_chunks: u32, chunk_shift: u32, data_abs: usize) -> Option<Offsets> {
        let n = n_chunks as usize;
        let desc = CTRL_LEN;
        let cursor = desc.checked_add(n.checked_mul(8)?)?;
        let after = cursor.checked_add(n.checked_mul(4)?)?;
        let page = 4096;
        let meta = align_up(data_abs.checked_add(after)?, page) - data_abs;
        let metas = n.checked_mul(1 << (chunk_shift - MIN_BLOCK_SHIFT))?;
        let after = meta.checked_add(metas.checked_mul(8)?)?;
        let heap = align_up(data_abs.checked_add(after)?, page) - data_abs;
        let total = heap.checked_add(n.checked_mul(1usize.checked_shl(chunk_shift)?)?)?;
        Some(Offsets {
            desc,
            cursor,
            meta,
            heap,
            total,
        })
    }
}

#[cfg(not(shmchan_loom))]
pub(crate) use shm_region::Region;

#[cfg(not(shmchan_loom))]
mod shm_region {
    use super::*;

    /// The heap's tables and blocks in shared memory.
    ///
    /// Invariant: `base .. base + offsets.total` is mapped read-write and 128-aligned for as
    /// long as the `Region` is used (the heap handle keeps the mapping next to it); every word
    /// is accessed atomically at one width, every block only through raw copies.
    #[derive(Debug)]
    pub(crate) struct Region {
        base: *mut u8,
        off: Offsets,
        pub(crate) n_chunks: u32,
        pub(crate) chunk_shift: u32,
    }

    // SAFETY: shared memory reached only through atomics and raw copies; no thread-affine state.
    unsafe impl Send for Region {}
    // SAFETY: as above; every method takes `&self` and synchronises through atomics.
    unsafe impl Sync for Region {}

    impl Region {
        /// # Safety
        ///
        /// `base` must point to a 128-aligned read-write mapping of at least `off.total` bytes
        /// laid out by [`Offsets::compute`] with these `n_chunks` and `chunk_shift`, which
        /// outlives the `Region`.
        pub(crate) unsafe fn new(
            base: *mut u8,
            off: Offsets,
            n_chunks: u32,
            chunk_shift: u32,
        ) -> Region {
            debug_assert_eq!(base as usize % 128, 0);
            Region {
                base,
                off,
                n_chunks,
                chunk_shift,
            }
        }

        pub(crate) fn ctrl32(&self, off: usize) -> &AtomicU32 {
            assert!(off % 4 == 0 && off + 4 <= CTRL_LEN);
            // SAFETY: inside the control block (asserted), 4-aligned, mapped (type invariant).
            unsafe { AtomicU32::from_ptr(self.base.add(off).cast()) }
        }

        pub(crate) fn desc(&self, c: u32) -> &AtomicU64 {
            assert!(c < self.n_chunks);
            // SAFETY: c < n_chunks (asserted), so the word lies in the descriptor table; the
            // table offset is 8-aligned and the region 128-aligned.
            unsafe { AtomicU64::from_ptr(self.base.add(self.off.desc + 8 * c as usize).cast()) }
        }

        pub(crate) fn cursor(&self, c: u32) -> &AtomicU32 {
            assert!(c < self.n_chunks);
            // SAFETY: c < n_chunks (asserted): inside the cursor table, 4-aligned.
            unsafe { AtomicU32::from_ptr(self.base.add(self.off.cursor + 4 * c as usize).cast()) }
        }

        pub(crate) fn meta(&self, c: u32, j: u32) -> &AtomicU64 {
            let per = 1u32 << (self.chunk_shift - MIN_BLOCK_SHIFT);
            assert!(c < self.n_chunks && j < per);
            let at = self.off.meta + 8 * (c as usize * per as usize + j as usize);
            // SAFETY: c < n_chunks and j < metas per chunk (asserted): inside the meta table,
            // which is page-aligned; 8-aligned.
            unsafe { AtomicU64::from_ptr(self.base.add(at).cast()) }
        }

        /// Pointer to byte `offset` of the heap area (`offset <= heap length`, checked).
        pub(crate) fn heap_ptr(&self, offset: u64) -> *mut u8 {
            assert!(offset <= (self.n_chunks as u64) << self.chunk_shift);
            // SAFETY: offset is at most the heap area's length (asserted), which lies inside
            // the mapping (type invariant): in bounds or one past the end.
            unsafe { self.base.add(self.off.heap + offset as usize) }
        }
    }
}

#[cfg(shmchan_loom)]
pub(crate) use model_region::Region;

#[cfg(shmchan_loom)]
mod model_region {
    use super::*;

    /// An in-process heap for loom models: the same words, no blocks.
    #[derive(Debug)]
    pub(crate) struct Region {
        ctrl: Vec<AtomicU32>,
        desc: Vec<AtomicU64>,
        cursor: Vec<AtomicU32>,
        meta: Vec<AtomicU64>,
        pub(crate) n_chunks: u32,
        pub(crate) chunk_shift: u32,
    }

    impl Region {
        pub(crate) fn new_for_model(n_chunks: u32, chunk_shift: u32) -> Region {
            let per = 1usize << (chunk_shift - MIN_BLOCK_SHIFT);
            Region {
                ctrl: (0..CTRL_LEN / 4).map(|_| AtomicU32::new(0)).collect(),
                desc: (0..n_chunks).map(|_| AtomicU64::new(0)).collect(),
                cursor: (0..n_chunks).map(|_| AtomicU32::new(0)).collect(),
                meta: (0..n_chunks as usize * per)
                    .map(|_| AtomicU64::new(0))
                    .collect(),
                n_chunks,
                chunk_shift,
            }
        }
        pub(crate) fn ctrl32(&self, off: usize) -> &AtomicU32 {
            &self.ctrl[off / 4]
        }
        pub(crate) fn desc(&self, c: u32) -> &AtomicU64 {
            &self.desc[c as usize]
        }
        pub(crate) fn cursor(&self, c: u32) -> &AtomicU32 {
            &self.cursor[c as usize]
        }
        pub(crate) fn meta(&self, c: u32, j: u32) -> &AtomicU64 {
            let per = 1usize << (self.chunk_shift - MIN_BLOCK_SHIFT);
            &self.meta[c as usize * per + j as usize]
        }
    }
}
