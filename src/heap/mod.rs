//! A shared heap: an allocator in a named shared-memory segment that many processes (and
//! threads) use at once, with owned buffers and plain handles for zero-copy large messages.
//!
//! A process allocates a [`ShmBuf`] with [`Heap::alloc`], writes it, turns it into a
//! [`Handle`] with [`ShmBuf::into_handle`] and sends the handle (24 plain bytes) to another
//! process by any means: a shmchan channel, a socket, a file. That process calls
//! [`Heap::take`], which validates the handle and transfers ownership: the receiver now owns
//! the same bytes, and frees them by dropping its `ShmBuf`. Nothing is copied.
//!
//! # Design
//!
//! The heap area is split into chunks of 64 KiB, each with an atomic descriptor word (free,
//! carved into small blocks of one class, head of a large run of `n` chunks, continuation of a
//! run, or claimed by a process mid-operation). Each block has an atomic meta word: its state
//! (free, owned, in flight, retired), a generation, and its owner (the participant record
//! index and that record's generation, so a record recycled for another process does not
//! inherit the blocks).
//!
//! - **Small requests** (up to 32 KiB) use ten power-of-two classes from 64 bytes. A block is
//!   taken by one compare-and-swap of its meta word from free to owned; a per-class hint names
//!   a chunk that recently had room and a per-chunk cursor says where to look first, so the
//!   usual allocation is a handful of loads and one CAS, and a free is one CAS. When no carved
//!   chunk of the class has room, a free chunk is carved for it.
//! - **Large requests** take a run of contiguous free chunks, first fit from where the last
//!   search ended: each chunk is claimed by a CAS and the claims are rolled back on conflict.
//!   Freed chunks are simply free again, so neighbouring free chunks coalesce without any
//!   merging step.
//! - There is no free list: a block's meta word is the single truth about it. This is a
//!   deliberate departure from a Treiber stack of free blocks: a process killed between a
//!   stack's head CAS and the update of the popped block leaves a block that is neither on the
//!   list nor owned by anyone, and one pushed twice corrupts the links. Here each step is one
//!   CAS on one word tagged with its owner, so every crash leaves a state that names a dead
//!   process (see *Crash behaviour*).
//!
//! # Handles and ownership
//!
//! A [`Handle`] is `offset`, `len`, the block's `generation`, and check bits derived from a
//! random heap id, so a handle of another heap or random bytes fail. [`Heap::take`] accepts a
//! handle only if it is in bounds, at a block boundary of the class its length implies, names
//! a chunk in the right state, and the block is in flight with the same generation; then one
//! CAS moves it to owned-by-the-taker, so a second `take` of the same handle fails. A block's
//! generation grows each time it is freed, so stale handles (use after free, double take,
//! double free) are [`Error::Corrupt`](crate::Error::Corrupt), never a wrong block. Generations are 24 bits: a stale
//! handle could only alias after 16 M reuses of the very same block.
//!
//! # Crash behaviour
//!
//! Blocks owned by a process that died (killed at any instruction) are reclaimed by
//! [`Heap::reclaim_dead`], which [`Heap::alloc`] also runs before giving up. Half-finished
//! operations of a dead process (a chunk being carved, a large run being claimed or freed, an
//! empty chunk being returned) are recognisable by the dead owner's id and are rolled back or
//! completed by the same sweep. Nothing can be wedged: no step waits for another process.
//! Blocks **in flight** (turned into handles) are not reclaimed when their sender dies: the
//! handle may still be in a channel and be taken later. A handle that is lost (never taken)
//! leaks its block until [`Heap::reclaim_dead_in_flight`] is called at a point where the
//! application knows no live process can still receive it, or the heap is destroyed. Channels
//! with a heap attached ([`Producer::send_large`](crate::channel::Producer::send_large)) do
//! this bookkeeping themselves: each producer frees its blocks still in flight once every
//! consumer is gone.
//!
//! # Waiting for room
//!
//! [`Heap::alloc_timeout`] parks the thread on a futex; [`Heap::alloc_async`] parks the task
//! on a doorbell in its runtime's reactor (tokio or async-io). Frees in any process wake
//! both, with no system call while nobody waits.
//!
//! # Fragmentation
//!
//! - Internal: a small block is the next power of two of the request (at least 64 bytes), at
//!   most twice the request; a large block rounds up to 64 KiB.
//! - External, large: first fit over 64 KiB chunks, with the usual first-fit behaviour; free
//!   neighbours coalesce at once.
//! - External, small: a chunk carved for a class stays with that class while any of its blocks
//!   is held. Chunks whose blocks are all free are returned to the pool when an allocation
//!   would otherwise fail. **Worst case**: one live small block in every chunk (`n` blocks of
//!   64 bytes in an `n`-chunk heap) leaves no chunk for a large request, and no room for other
//!   small classes, although almost all bytes are free.
//!
//! # Costs
//!
//! An uncontended small alloc + free is a few loads and two CASes plus the buffer's reference
//! count (about 60 ns on the team's 2-vCPU VM, twice a spinlocked first-fit allocator on an
//! empty heap, and flat while first fit walks past live blocks: 75 ns against 10 µs with 2000
//! live blocks). A large block costs one CAS per 64 KiB chunk to claim and one to free
//! (about 0.3 µs for 1 MiB), small beside writing the bytes. There is no per-process cache
//! of free blocks: it would need a lock of its own (the same cost as the CAS it saves) or
//! per-thread state per heap, and it would hide free blocks from other processes.
//! When every carved chunk of a class is full, an allocation scans the class's chunks block
//! by block before carving a new one: slow near exhaustion of a class, never wrong.
//!
//! # Memory
//!
//! The segment holds, beside the heap area, 8 bytes of descriptor per chunk and a meta table of
//! 8 KiB per chunk (one word per possible 64-byte block). Meta pages are touched only for
//! chunks carved into small blocks (8 KiB for the 64-byte class, one page for classes of
//! 1 KiB and more), so the memory really used is at most 12.5 % more than the heap area.
//!
//! # Examples
//!
//! ```
//! use shmchan::Heap;
//!
//! # fn main() -> shmchan::Result<()> {
//! let name = format!("/shmchan-doc-heap-{}", std::process::id());
//! let heap = Heap::options().unlink_on_drop(true).create(&name, 1 << 20)?;
//!
//! let mut buf = heap.alloc(5)?;
//! buf.write_at(0, b"hello")?;
//! let handle = buf.into_handle(); // plain bytes: send them through any channel
//!
//! // Another process (here another handle on the same heap) takes the block.
//! let peer = Heap::open(&name)?;
//! let got = peer.take(handle)?;
//! let mut out = [0u8; 5];
//! got.read_at(0, &mut out)?;
//! assert_eq!(&out, b"hello");
//! assert!(peer.take(handle).is_err()); // a handle is taken once
//! # Ok(())
//! # }
//! ```

// Under loom only the algorithm and its models are built; the public types are not.
#[cfg_attr(shmchan_loom, allow(dead_code))]
mod alloc;
#[cfg(all(test, shmchan_loom))]
mod loom_models;
#[cfg_attr(shmchan_loom, allow(dead_code))]
mod region;

#[cfg(not(shmchan_loom))]
pub use api::{Handle, Heap, HeapOptions, ShmBuf, TrustedBuf};
#[cfg(not(shmchan_loom))]
pub use wait::AllocFuture;

#[cfg(not(shmchan_loom))]
mod api;
#[cfg(not(shmchan_loom))]
mod wait;
