//! `shmchan::inspect` over segments a hostile peer wrote: every number it reports comes from
//! bytes that peer controls, so a value out of range is reported as such, never truncated
//! into a plausible one.

mod common;

use std::sync::atomic::Ordering;

use common::ShmName;
use shmchan::{Heap, Mode, Segment, inspect};

/// Header offset of geometry word 1 (a heap's chunk shift): the geometry words start at 64.
const HEAP_CHUNK_SHIFT: usize = 64 + 8;

#[test]
fn a_chunk_shift_past_u32_is_not_truncated_into_a_chunk_size() {
    let name = ShmName::new("hi-heap");
    let heap = Heap::create(name.as_str(), 1 << 20).unwrap();
    let honest = inspect::inspect(name.as_str()).unwrap();
    let chunk = honest.heap.expect("a heap's geometry").chunk_size;
    assert!(chunk.is_power_of_two() && chunk > 1, "{chunk}");
    let shift = u64::from(chunk.trailing_zeros());

    let seg = Segment::open(name.as_str(), Mode::ReadWrite).unwrap();
    let word = seg.atomic_u64(HEAP_CHUNK_SHIFT).unwrap();
    assert_eq!(
        word.load(Ordering::Relaxed),
        shift,
        "the offset is the chunk shift's"
    );
    // A hostile peer's shift: the honest one plus 2^32, which an `as u32` turns back into it.
    word.store((1 << 32) | shift, Ordering::Relaxed);
    let info = inspect::inspect(name.as_str()).unwrap();
    assert_eq!(
        info.heap.expect("a heap's geometry").chunk_size,
        0,
        "a shift of 2^32 + {shift} is out of range, not {chunk}-byte chunks"
    );
    word.store(shift, Ordering::Relaxed);
    drop(seg);
    drop(heap);
}
