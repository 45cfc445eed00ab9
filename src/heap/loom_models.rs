//! Loom models of the heap's block and chunk transitions over an in-process [`Region`] with
//! tiny chunks (128 bytes: one class of two 64-byte blocks). Each model checks exclusivity: a
//! block (or chunk) is never held by two parties at once, in any interleaving loom explores.
//!
//! The heap has no free list (see the module docs of `heap`): the "push" of a free block is
//! the CAS of its meta word to free, the "pop" the CAS to owned, and these models cover them
//! racing with each other, with a chunk's retirement and re-carving, and with `take`.

use super::alloc::Bad;
use super::region::Region;
use crate::loom::thread;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};

/// A region and one flag per 64-byte unit: set while someone holds a block covering it.
struct Model {
    r: Region,
    held: Vec<AtomicBool>,
}

fn model(n_chunks: u32) -> Arc<Model> {
    Arc::new(Model {
        r: Region::new_for_model(n_chunks, 7),
        held: (0..n_chunks * 2).map(|_| AtomicBool::new(false)).collect(),
    })
}

impl Model {
    fn units(&self, b: &super::alloc::Block) -> std::ops::Range<usize> {
        let start = (self.r.offset(b) / 64) as usize;
        start..start + (self.r.capacity(b) / 64) as usize
    }
    fn hold(&self, b: &super::alloc::Block) {
        for u in self.units(b) {
            assert!(
                !self.held[u].swap(true, Ordering::Relaxed),
                "unit {u} held twice"
            );
        }
    }
    fn unhold(&self, b: &super::alloc::Block) {
        for u in self.units(b) {
            self.held[u].store(false, Ordering::Relaxed);
        }
    }
}

#[test]
fn loom_small_alloc_free_race() {
    loom::model(|| {
        let m = model(1);
        // Carve the chunk first, single-threaded.
        let b = m.r.alloc(64, 9).unwrap();
        assert!(m.r.free(&b, 9));
        let ts: Vec<_> = (1..=2u32)
            .map(|me| {
                let m = m.clone();
                thread::spawn(move || {
                    let b = m.r.alloc(64, me).expect("two blocks for two threads");
                    m.hold(&b);
                    m.unhold(&b);
                    assert!(m.r.free(&b, me));
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(m.r.free_bytes(), 128);
    });
}

#[test]
fn loom_retire_races_alloc() {
    loom::model(|| {
        let m = model(1);
        let b = m.r.alloc(64, 9).unwrap();
        assert!(m.r.free(&b, 9));
        let m2 = m.clone();
        let allocator = thread::spawn(move || {
            if let Ok(b) = m2.r.alloc(64, 1) {
                m2.hold(&b);
                m2.unhold(&b);
                assert!(m2.r.free(&b, 1));
            }
        });
        // Retire the (maybe empty) chunk, then use it as a large run of one chunk... which
        // needs more than a small block: 65 bytes is small here, so claim the whole chunk by
        // asking for 128 (a large request with 128-byte chunks).
        m.r.retire_empty(2);
        if let Ok(b) = m.r.alloc(128, 2) {
            m.hold(&b);
            m.unhold(&b);
            assert!(m.r.free(&b, 2));
        }
        allocator.join().unwrap();
        // Whatever happened, the retired/locked words were all released.
        m.r.retire_empty(3);
        assert_eq!(m.r.free_bytes(), 128);
    });
}

#[test]
fn loom_large_runs_exclusive() {
    loom::model(|| {
        let m = model(2);
        let m2 = m.clone();
        let t = thread::spawn(move || {
            if let Ok(b) = m2.r.alloc(256, 1) {
                m2.hold(&b);
                m2.unhold(&b);
                assert!(m2.r.free(&b, 1));
            }
        });
        if let Ok(b) = m.r.alloc(128, 2) {
            m.hold(&b);
            m.unhold(&b);
            assert!(m.r.free(&b, 2));
        }
        t.join().unwrap();
        assert_eq!(m.r.free_bytes(), 256);
    });
}

#[test]
fn loom_take_once() {
    loom::model(|| {
        let m = model(1);
        let b = m.r.alloc(64, 9).unwrap();
        assert!(m.r.to_flight(&b, 9));
        let off = m.r.offset(&b);
        let gn = b.gn;
        let ts: Vec<_> = (1..=2u32)
            .map(|me| {
                let m = m.clone();
                thread::spawn(move || match m.r.take(off, 64, gn, me) {
                    Ok(b) => {
                        m.hold(&b);
                        m.unhold(&b);
                        assert!(m.r.free(&b, me));
                        1
                    }
                    Err(Bad::Corrupt(_)) => 0,
                    Err(e) => panic!("{e:?}"),
                })
            })
            .collect();
        let taken: u32 = ts.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(taken, 1);
    });
}

#[test]
fn loom_reclaim_of_a_dead_claim_races_a_live_claim() {
    use super::alloc::{D_CLAIM, D_CONT, d_make};
    loom::model(|| {
        // A process (owner 7) died after claiming chunk 0 and continuing into chunk 1.
        let m = model(2);
        m.r.desc(0)
            .store(d_make(D_CLAIM, 0, 7), loom::sync::atomic::Ordering::Relaxed);
        m.r.desc(1)
            .store(d_make(D_CONT, 0, 0), loom::sync::atomic::Ordering::Relaxed);
        let m2 = m.clone();
        let reclaimer = thread::spawn(move || {
            m2.r.reclaim(&mut |o| o == 7, false, 5);
        });
        // A live allocator wants both chunks; it may find them taken or free.
        if let Ok(b) = m.r.alloc(256, 1) {
            m.hold(&b);
            m.unhold(&b);
            assert!(m.r.free(&b, 1));
        }
        reclaimer.join().unwrap();
        m.r.reclaim(&mut |o| o == 7, false, 6);
        assert_eq!(m.r.free_bytes(), 256);
        let b = m.r.alloc(256, 1).expect("both chunks free again");
        assert!(m.r.free(&b, 1));
    });
}

/// A large free racing a reclaim sweep and a new claim of the same head chunk: a finisher
/// must never act on another incarnation of the run. (The freer's meta word used to go free
/// first and its chunks after, by whoever got there: a sweep could finish the free, another
/// claimant take the head again, and the freer, reading the head after its CAS, then freed
/// the new run under its owner; a sweep with a stale view of the head did the same to the
/// continuations of a claim in progress.)
#[test]
fn loom_large_free_races_sweep_and_new_claim() {
    // The race needs three preemptions as loom counts them (the freer after its first CAS,
    // the sweeper while it holds the new run, and one at the sweeper's start).
    let mut builder = loom::model::Builder::new();
    if let Some(p) = builder.preemption_bound {
        builder.preemption_bound = Some(p.max(3));
    }
    builder.check(|| {
        let m = model(2);
        // Owner 9 holds a run of both chunks.
        let b = m.r.alloc(256, 9).unwrap();
        let m2 = m.clone();
        let sweeper = thread::spawn(move || {
            // Nobody is dead: the sweep may only finish frees already under way.
            m2.r.reclaim(&mut |_| false, false, 5);
            // Claims the head again if it is free, and keeps holding it.
            let b = m2.r.alloc(256, 2).ok();
            if let Some(b) = &b {
                m2.hold(b);
            }
            b
        });
        assert!(m.r.free(&b, 9));
        if let Ok(b) = m.r.alloc(128, 1) {
            m.hold(&b);
            m.unhold(&b);
            assert!(m.r.free(&b, 1), "a live owner lost its block");
        }
        if let Some(b) = sweeper.join().unwrap() {
            m.unhold(&b);
            assert!(m.r.free(&b, 2), "a live owner lost its block");
        }
        m.r.reclaim(&mut |_| false, false, 6);
        assert_eq!(m.r.free_bytes(), 256);
        let b = m.r.alloc(256, 1).expect("both chunks free again");
        assert!(m.r.free(&b, 1));
    });
}
