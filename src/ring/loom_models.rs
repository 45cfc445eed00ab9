//! Loom models of the three ring algorithms over an in-process [`Ring`] with tiny capacity.
//! Loom explores the thread interleavings (bounded by `LOOM_MAX_PREEMPTIONS`) and checks that
//! every payload access is ordered by the sequence / index stores, so a torn or lost message
//! in any interleaving fails the model.

use super::{Geometry, Ring, mpmc, mpsc, repair, spsc};
use crate::loom::{AtomicU64, thread};
use loom::sync::Arc;

fn ring(capacity: usize) -> Arc<Ring> {
    Arc::new(Ring::new_for_model(Geometry {
        slot_size: 8,
        capacity,
    }))
}

fn write(r: &Ring, pos: u64, v: u64) {
    r.write_payload(r.index(pos), 0, &v.to_le_bytes());
    r.len(r.index(pos)).store(8, crate::loom::Ordering::Relaxed);
}

fn read(r: &Ring, pos: u64) -> u64 {
    assert_eq!(r.len(r.index(pos)).load(crate::loom::Ordering::Relaxed), 8);
    let mut b = [0; 8];
    r.read_payload(r.index(pos), 0, &mut b);
    u64::from_le_bytes(b)
}

#[test]
fn loom_spsc_in_order_without_tearing() {
    loom::model(|| {
        let r = ring(2);
        let r2 = r.clone();
        let producer = thread::spawn(move || {
            let mut tx = spsc::Tx::attach(&r2).unwrap();
            for v in 1..=3u64 {
                loop {
                    let (pos, n) = tx.claim(&r2, 1).unwrap();
                    if n == 1 {
                        write(&r2, pos, v);
                        tx.publish(&r2, 1);
                        break;
                    }
                    thread::yield_now();
                }
            }
        });
        let mut rx = spsc::Rx::attach(&r).unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            let (pos, n) = rx.peek(&r, 1).unwrap();
            if n == 1 {
                got.push(read(&r, pos));
                rx.release(&r, 1);
            } else {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(got, [1, 2, 3]);
    });
}

/// The `Sink`'s batching: staged slots are invisible until the flush, then all are visible
/// in order and untorn; a batch receive frees its slots with one deferred store, after which
/// the producer may overwrite them (and never before).
#[test]
fn loom_spsc_staged_batch_and_deferred_release() {
    loom::model(|| {
        let r = ring(2);
        let r2 = r.clone();
        let producer = thread::spawn(move || {
            let mut tx = spsc::Tx::attach(&r2).unwrap();
            let mut v = 1u64;
            while v <= 4 {
                let (pos, n) = tx.claim(&r2, 1).unwrap();
                if n == 1 {
                    write(&r2, pos, v);
                    tx.stage(&r2, 1);
                    v += 1;
                    if tx.staged() == 2 || v > 4 {
                        assert!(tx.flush(&r2));
                    }
                } else {
                    // Full: what is staged is published before waiting.
                    tx.flush(&r2);
                    thread::yield_now();
                }
            }
        });
        let mut rx = spsc::Rx::attach(&r).unwrap();
        let mut got = Vec::new();
        while got.len() < 4 {
            let (pos, n) = rx.peek(&r, 2).unwrap();
            if n == 0 {
                thread::yield_now();
                continue;
            }
            for i in 0..n {
                got.push(read(&r, pos + i));
                rx.defer_release(1);
            }
            rx.flush(&r);
        }
        producer.join().unwrap();
        assert_eq!(got, [1, 2, 3, 4]);
    });
}

fn vyukov_send(r: &Ring, intent: &AtomicU64, v: u64) {
    loop {
        if let Some(pos) = mpmc::claim_send(r, intent).unwrap() {
            write(r, pos, v);
            mpmc::publish_send(r, pos, intent);
            return;
        }
        thread::yield_now();
    }
}

#[test]
fn loom_mpsc_two_producers_exactly_once() {
    // Three parties with waiting loops: at two preemptions the model exceeds loom's branch
    // budget (the yield loops multiply), so it runs with one. The producer code is the same as
    // in the MPMC models, which run with two; this model adds the CAS-free consumer.
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(1);
    builder.check(|| {
        let r = ring(2);
        // Producer A sends two messages (so it wraps a 2-slot ring with B's), B one.
        let producers: Vec<_> = [(10u64, 2u64), (20, 1)]
            .into_iter()
            .map(|(base, n)| {
                let r = r.clone();
                thread::spawn(move || {
                    let intent = AtomicU64::new(0);
                    for i in 1..=n {
                        vyukov_send(&r, &intent, base + i);
                    }
                    assert_eq!(intent.load(crate::loom::Ordering::Relaxed), 0);
                })
            })
            .collect();
        let mut rx = mpsc::Rx::attach(&r).unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            match rx.peek(&r).unwrap() {
                Some(pos) => {
                    got.push(read(&r, pos));
                    rx.release(&r, pos);
                }
                None => thread::yield_now(),
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        // Each producer's messages arrive in its order, each exactly once.
        let a: Vec<_> = got.iter().copied().filter(|v| *v < 20).collect();
        let b: Vec<_> = got.iter().copied().filter(|v| *v >= 20).collect();
        assert_eq!(a, [11, 12]);
        assert_eq!(b, [21]);
    });
}

#[test]
fn loom_mpmc_two_by_two_exactly_once() {
    loom::model(|| {
        let r = ring(2);
        let producers: Vec<_> = [10u64, 20]
            .into_iter()
            .map(|v| {
                let r = r.clone();
                thread::spawn(move || {
                    let intent = AtomicU64::new(0);
                    vyukov_send(&r, &intent, v);
                })
            })
            .collect();
        let r2 = r.clone();
        let other = thread::spawn(move || {
            let intent = AtomicU64::new(0);
            // Takes at most one message, trying a bounded number of times.
            for _ in 0..3 {
                if let Some(pos) = mpmc::claim_recv(&r2, &intent).unwrap() {
                    let v = read(&r2, pos);
                    mpmc::release_recv(&r2, pos, &intent);
                    return Some(v);
                }
                thread::yield_now();
            }
            None
        });
        let intent = AtomicU64::new(0);
        let mut got = Vec::new();
        for p in producers {
            p.join().unwrap();
        }
        let theirs = other.join().unwrap();
        got.extend(theirs);
        while got.len() < 2 {
            match mpmc::claim_recv(&r, &intent).unwrap() {
                Some(pos) => {
                    got.push(read(&r, pos));
                    mpmc::release_recv(&r, pos, &intent);
                }
                None => panic!("a message was lost: got {got:?}"),
            }
        }
        got.sort();
        assert_eq!(got, [10, 20]);
        assert!(
            mpmc::claim_recv(&r, &intent).unwrap().is_none(),
            "a message was duplicated"
        );
    });
}

/// The intent a claim stores (Relaxed) is visible to whoever sees the counter past the
/// claimed position (a repairer's Acquire load of tail), through the claim CAS's Release;
/// also after a second producer's claim moved the counter further.
/// A chunk sent through the Vyukov producer (`claim_send_many`, a write each,
/// `publish_send_many`), waiting while fewer than `k` slots are free.
fn vyukov_send_chunk(r: &Ring, intent: &AtomicU64, vs: &[u64]) {
    loop {
        if let Some((pos, k)) = mpmc::claim_send_many(r, intent, vs.len() as u64, true).unwrap() {
            assert_eq!(k, vs.len() as u64);
            for (i, v) in vs.iter().enumerate() {
                write(r, pos + i as u64, *v);
            }
            mpmc::publish_send_many(r, pos, k, k, intent);
            return;
        }
        thread::yield_now();
    }
}

/// MPSC chunks both ways: producer A sends a chunk of two, B a single message, into a ring of
/// two; the consumer takes what is ready with `peek_many` and frees it with `release_many`.
/// Every message arrives once, intact (the payload accesses are ordered by the sequence
/// stores of the chunk's publish and of the chunk's free), in each producer's order.
#[test]
fn loom_mpsc_chunks_exactly_once_in_order() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(1);
    builder.check(|| {
        let r = ring(2);
        let ra = r.clone();
        let a = thread::spawn(move || {
            let intent = AtomicU64::new(0);
            vyukov_send_chunk(&ra, &intent, &[11, 12]);
            assert_eq!(intent.load(crate::loom::Ordering::Relaxed), 0);
        });
        let rb = r.clone();
        let b = thread::spawn(move || {
            let intent = AtomicU64::new(0);
            vyukov_send(&rb, &intent, 21);
        });
        let mut rx = mpsc::Rx::attach(&r).unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            let (pos, n) = rx.peek_many(&r, 2).unwrap();
            if n == 0 {
                thread::yield_now();
                continue;
            }
            for i in 0..n {
                got.push(read(&r, pos + i));
            }
            rx.release_many(&r, pos, n);
        }
        a.join().unwrap();
        b.join().unwrap();
        let a: Vec<_> = got.iter().copied().filter(|v| *v < 20).collect();
        assert_eq!(a, [11, 12]);
        assert!(got.contains(&21));
    });
}

/// MPMC chunks on the consumer side, two races. (1) Three published messages, one consumer
/// claiming up to two at once (`claim_recv_many`, freed with `release_recv_many`), another
/// one at a time: each message is taken exactly once. (2) A producer publishing three into a
/// ring of two while a chunk consumer takes them: every slot it frees is reused intact, in
/// order. The chunk end is 0 again whenever no chunk is held.
#[test]
fn loom_mpmc_chunk_and_single_consumers_exactly_once() {
    loom::model(|| {
        let r = ring(4);
        let intent = AtomicU64::new(0);
        for v in 1..=3 {
            vyukov_send(&r, &intent, v);
        }
        let rc = r.clone();
        let chunker = thread::spawn(move || {
            let (intent, end) = (AtomicU64::new(0), AtomicU64::new(0));
            let mut got = Vec::new();
            while let Some((pos, k)) =
                mpmc::claim_recv_many(&rc, &intent, &end, 2, |_| true).unwrap()
            {
                for i in 0..k {
                    got.push(read(&rc, pos + i));
                }
                mpmc::release_recv_many(&rc, pos, k, &intent, &end);
            }
            assert_eq!(end.load(crate::loom::Ordering::Relaxed), 0);
            got
        });
        let mut all = Vec::new();
        while let Some(pos) = mpmc::claim_recv(&r, &intent).unwrap() {
            all.push(read(&r, pos));
            mpmc::release_recv(&r, pos, &intent);
        }
        let theirs = chunker.join().unwrap();
        all.extend(theirs);
        all.sort();
        assert_eq!(all, [1, 2, 3]);
    });
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(1);
    builder.check(|| {
        let r = ring(2);
        let rp = r.clone();
        let producer = thread::spawn(move || {
            let intent = AtomicU64::new(0);
            for v in 1..=3 {
                vyukov_send(&rp, &intent, v);
            }
        });
        let (intent, end) = (AtomicU64::new(0), AtomicU64::new(0));
        let mut got = Vec::new();
        while got.len() < 3 {
            match mpmc::claim_recv_many(&r, &intent, &end, 2, |_| true).unwrap() {
                Some((pos, k)) => {
                    for i in 0..k {
                        got.push(read(&r, pos + i));
                    }
                    mpmc::release_recv_many(&r, pos, k, &intent, &end);
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(end.load(crate::loom::Ordering::Relaxed), 0);
    });
}

/// A chunk's intent names only its first position, and a repairer that sees `tail` past any
/// position of the chunk sees an intent that covers it (`repair::intent_covers`) for as long
/// as that slot is unpublished, read in `repair_stuck`'s order: tail, then the intents, then
/// the slot. Also beside a single claim of another producer.
#[test]
fn loom_mpmc_chunk_claim_publishes_an_intent_covering_it() {
    loom::model(|| {
        let r = ring(4);
        let (i1, i2) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (ra, ia) = (r.clone(), i1.clone());
        let a = thread::spawn(move || vyukov_send_chunk(&ra, &ia, &[1, 2]));
        let (rb, ib) = (r.clone(), i2.clone());
        let b = thread::spawn(move || vyukov_send(&rb, &ib, 3));
        // Without a yield first, loom (0.7) never ran a spawned thread's claim (a load, then
        // the CAS) before this load: the model saw `tail == 0` in every one of its executions.
        thread::yield_now();
        let tail = r.tail().load(crate::loom::Ordering::Acquire);
        let seen = [
            i1.load(crate::loom::Ordering::SeqCst),
            i2.load(crate::loom::Ordering::SeqCst),
        ];
        for p in 0..tail {
            if repair::blocked_at(&r, p) == repair::Blocked::Unpublished(p) {
                assert!(
                    seen.iter().any(|&i| repair::intent_covers(i, p, 4)),
                    "tail {tail}, {p} unpublished, but no intent covers it: {seen:?}"
                );
            }
        }
        a.join().unwrap();
        b.join().unwrap();
    });
}

#[test]
fn loom_mpmc_claim_publishes_its_intent() {
    loom::model(|| {
        let r = ring(2);
        let (i1, i2) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (ra, ia) = (r.clone(), i1.clone());
        let a = thread::spawn(move || mpmc::claim_send(&ra, &ia).unwrap().unwrap());
        let (rb, ib) = (r.clone(), i2.clone());
        let b = thread::spawn(move || mpmc::claim_send(&rb, &ib).unwrap().unwrap());
        // A repairer: the counter past `p` means the holder of `p` has its intent visible.
        // (The yield: see `loom_mpmc_chunk_claim_publishes_an_intent_covering_it`.)
        thread::yield_now();
        let tail = r.tail().load(crate::loom::Ordering::Acquire);
        let seen = [
            i1.load(crate::loom::Ordering::Relaxed),
            i2.load(crate::loom::Ordering::Relaxed),
        ];
        for p in 0..tail {
            assert!(
                seen.contains(&(p + 1)),
                "tail {tail} but no intent for {p}: {seen:?}"
            );
        }
        let (pa, pb) = (a.join().unwrap(), b.join().unwrap());
        assert_ne!(pa, pb);
    });
}

/// A producer that claims a position and "dies" (stops) before publishing leaves its intent;
/// the repair releases exactly that slot, once, and the consumer sees the live producer's
/// message after the abandoned one.
#[test]
fn loom_mpmc_repair_of_a_dead_producer_slot() {
    loom::model(|| {
        let r = ring(2);
        let dead_intent = Arc::new(AtomicU64::new(0));
        // The dead producer claims position 0 and stops.
        let pos = mpmc::claim_send(&r, &dead_intent).unwrap().unwrap();
        assert_eq!(pos, 0);
        let r2 = r.clone();
        let live = thread::spawn(move || {
            let intent = AtomicU64::new(0);
            vyukov_send(&r2, &intent, 7);
        });
        // Two repairers race; exactly one wins.
        let r3 = r.clone();
        let rep = thread::spawn(move || repair::repair_unpublished(&r3, 0));
        let mine = repair::repair_unpublished(&r, 0);
        let theirs = rep.join().unwrap();
        assert!(mine ^ theirs, "exactly one repair must win");
        live.join().unwrap();
        let intent = AtomicU64::new(0);
        let p0 = mpmc::claim_recv(&r, &intent).unwrap().unwrap();
        assert_eq!(super::content(&r, p0).unwrap(), super::Content::Abandoned);
        mpmc::release_recv(&r, p0, &intent);
        let p1 = mpmc::claim_recv(&r, &intent).unwrap().unwrap();
        assert_eq!(read(&r, p1), 7);
        mpmc::release_recv(&r, p1, &intent);
    });
}

/// Two repairers of one dead producer's slot, and the slot reused one lap later before the
/// slower repairer finishes: the reused slot's message must arrive intact, not be skipped as
/// abandoned. (The repair used to store the ABANDONED length before the CAS that picks the
/// winner, so a losing repairer's late store could land on the next lap's message.)
#[test]
fn loom_late_repairer_never_touches_the_next_lap() {
    loom::model(|| {
        let r = ring(2);
        let dead_intent = AtomicU64::new(0);
        // The dead producer claims position 0 and stops; a live one sends position 1.
        assert_eq!(mpmc::claim_send(&r, &dead_intent).unwrap(), Some(0));
        let intent = AtomicU64::new(0);
        vyukov_send(&r, &intent, 1);
        let r2 = r.clone();
        let late = thread::spawn(move || repair::repair_unpublished(&r2, 0));
        // Meanwhile: repair, consume both (the first abandoned), and reuse slot 0 for
        // position 2.
        let won = repair::repair_unpublished(&r, 0);
        let cons = AtomicU64::new(0);
        let p0 = mpmc::claim_recv(&r, &cons).unwrap().unwrap();
        assert_eq!(super::content(&r, p0).unwrap(), super::Content::Abandoned);
        mpmc::release_recv(&r, p0, &cons);
        let p1 = mpmc::claim_recv(&r, &cons).unwrap().unwrap();
        assert_eq!(read(&r, p1), 1);
        mpmc::release_recv(&r, p1, &cons);
        vyukov_send(&r, &intent, 2);
        let late_won = late.join().unwrap();
        assert!(won ^ late_won, "exactly one repair wins");
        let p2 = mpmc::claim_recv(&r, &cons).unwrap().unwrap();
        assert_eq!(p2, 2);
        assert_eq!(
            super::content(&r, p2).unwrap(),
            super::Content::Message(8),
            "the next lap's message was marked abandoned by a late repairer"
        );
        assert_eq!(read(&r, p2), 2);
        mpmc::release_recv(&r, p2, &cons);
    });
}
