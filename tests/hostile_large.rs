//! Large messages (`channel/large.rs`): what a send costs on the hot path. A counting global
//! allocator (this test binary only) counts the allocations of the sending thread.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::ShmName;
use shmchan::{Heap, Options, spsc};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to `System` unchanged; the counter is a const-initialised
// thread-local `Cell` (no allocation, no reentrancy into the allocator).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// A message that fits a slot travels inline: `send_large` writes its frame straight into the
/// slot, with no buffer allocated per message.
#[test]
fn an_inline_send_large_allocates_nothing() {
    let name = ShmName::new("hl-inline");
    let opts = Options::new().slot_size(256).capacity(128);
    let heap = Heap::options().create_memfd(1 << 20).unwrap();
    let mut tx = spsc::Producer::create(name.as_str(), opts.clone()).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str(), opts).unwrap();
    tx.attach_heap(&heap).unwrap();
    rx.attach_heap(&heap).unwrap();
    let data = [7u8; 100];
    tx.send_large_blocking(&data).unwrap(); // warm-up: first-use allocations are not per message
    assert_eq!(rx.try_recv_large().unwrap().unwrap().to_vec(), data);

    const N: u64 = 100;
    let before = allocs();
    for _ in 0..N {
        tx.send_large_blocking(&data).unwrap();
    }
    let spent = allocs() - before;
    for _ in 0..N {
        let m = rx.try_recv_large().unwrap().expect("a message per send");
        assert!(!m.is_block());
        assert_eq!(m.to_vec(), data);
    }
    assert_eq!(spent, 0, "{spent} allocations for {N} inline sends");

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        tx.send_large(&data).await.unwrap();
        let before = allocs();
        for _ in 0..N {
            tx.send_large(&data).await.unwrap();
        }
        let spent = allocs() - before;
        for _ in 0..=N {
            assert_eq!(rx.try_recv_large().unwrap().unwrap().to_vec(), data);
        }
        assert_eq!(spent, 0, "{spent} allocations for {N} async inline sends");
    });
}
