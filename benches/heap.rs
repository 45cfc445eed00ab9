//! Alloc + free cost of the shared heap against a first-fit allocator with coalescing (the
//! shmheap seed's design), both over a shared-memory segment, in the same run.
//!
//! `cargo bench --bench heap -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use shmchan::{Heap, Segment};

/// First fit with coalescing over one shared segment, as the seed describes it: blocks laid
/// end to end, each with a 16-byte header (`size | used` and the previous block's size, so a
/// free merges with both neighbours in O(1)); allocation walks from the start to the first
/// free block that fits and splits it. A spinlock word in the segment serialises processes
/// (the seed uses a process-shared mutex).
struct FirstFit {
    seg: Segment,
    len: usize,
}

const FF_BASE: usize = 64;
const HDR: usize = 16;

impl FirstFit {
    fn new(len: usize) -> FirstFit {
        let seg = Segment::memfd(FF_BASE + len).unwrap();
        let ff = FirstFit { seg, len };
        ff.set(FF_BASE, len as u64, 0);
        ff
    }
    fn lock(&self) -> &AtomicU32 {
        self.seg.atomic_u32(0).unwrap()
    }
    fn acquire(&self) {
        while self
            .lock()
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
    }
    fn release(&self) {
        self.lock().store(0, Ordering::Release);
    }
    fn word(&self, at: usize) -> *mut u64 {
        // SAFETY: the bench only passes offsets of block headers, which lie inside the
        // read-write segment (at + 16 <= FF_BASE + len) and are 8-aligned.
        unsafe { self.seg.as_mut_ptr().unwrap().add(at).cast() }
    }
    fn get(&self, at: usize) -> (u64, bool, u64) {
        // SAFETY: at is a header offset inside the segment, 8-aligned.
        let (s, p) = unsafe { (self.word(at).read(), self.word(at + 8).read()) };
        (s & !1, s & 1 == 1, p)
    }
    fn set(&self, at: usize, size: u64, prev: u64) {
        // SAFETY: as in get.
        unsafe {
            self.word(at).write(size);
            self.word(at + 8).write(prev);
        }
    }
    fn end(&self) -> usize {
        FF_BASE + self.len
    }
    fn alloc(&self, n: usize) -> Option<usize> {
        let need = (n.max(16) + HDR).div_ceil(16) * 16;
        self.acquire();
        let mut at = FF_BASE;
        while at < self.end() {
            let (size, used, prev) = self.get(at);
            if !used && size as usize >= need {
                if size as usize - need >= 64 {
                    let rest = at + need;
                    self.set(rest, size - need as u64, need as u64);
                    let next = at + size as usize;
                    if next < self.end() {
                        let (ns, nu, _) = self.get(next);
                        self.set(next, ns | nu as u64, size - need as u64);
                    }
                    self.set(at, need as u64 | 1, prev);
                } else {
                    self.set(at, size | 1, prev);
                }
                self.release();
                return Some(at + HDR);
            }
            at += size as usize;
        }
        self.release();
        None
    }
    fn free(&self, p: usize) {
        self.acquire();
        let mut at = p - HDR;
        let (mut size, _, mut prev) = self.get(at);
        // Merge with the next block.
        let next = at + size as usize;
        if next < self.end() {
            let (ns, nu, _) = self.get(next);
            if !nu {
                size += ns;
            }
        }
        // Merge with the previous block.
        if at > FF_BASE {
            let pat = at - prev as usize;
            let (ps, pu, pp) = self.get(pat);
            if !pu {
                at = pat;
                size += ps;
                prev = pp;
            }
        }
        self.set(at, size, prev);
        let next = at + size as usize;
        if next < self.end() {
            let (ns, nu, _) = self.get(next);
            self.set(next, ns | nu as u64, size);
        }
        self.release();
    }
}

/// Benchmark group `name`: an allocation and its free, of 64 B, 4 KiB and 1 MiB, by the
/// shmchan heap and by the first-fit baseline.
fn alloc_free_group(c: &mut Criterion, name: &str, heap: &Heap, ff: &FirstFit) {
    let mut g = c.benchmark_group(name);
    for size in [64usize, 4096, 1 << 20] {
        g.bench_with_input(BenchmarkId::new("shmchan", size), &size, |b, &n| {
            b.iter(|| drop(black_box(heap.alloc(n).unwrap())))
        });
        g.bench_with_input(BenchmarkId::new("first_fit", size), &size, |b, &n| {
            b.iter(|| ff.free(black_box(ff.alloc(n).unwrap())))
        });
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    let name = format!("/shmchan-bench-heap-{}", std::process::id());
    let heap = Heap::options()
        .unlink_on_drop(true)
        .create(&name, 64 << 20)
        .unwrap();
    let ff = FirstFit::new(64 << 20);

    alloc_free_group(c, "alloc_free", &heap, &ff);

    // The same with 2000 live 64-byte blocks allocated first: first fit walks past them.
    let held: Vec<_> = (0..2000).map(|_| heap.alloc(64).unwrap()).collect();
    let ff_held: Vec<_> = (0..2000).map(|_| ff.alloc(64).unwrap()).collect();
    alloc_free_group(c, "alloc_free_2000_live", &heap, &ff);
    drop(held);
    for p in ff_held {
        ff.free(p);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
