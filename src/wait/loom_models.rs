//! Loom models of the park/wake protocol in `protocol.rs`.

use super::protocol::*;
use crate::loom::thread;
use crate::loom::{AtomicU32, AtomicU64, Ordering};
use loom::sync::Arc;

/// The announce / re-check / wake protocol never loses a wake-up: if the waiter decides to
/// sleep (its re-check found nothing), the waker must have taken its announcement (and so
/// rung it); and every announcement is taken exactly once, keeping the count exact.
#[test]
fn loom_park_wake_no_lost_wakeup() {
    loom::model(|| {
        let count = Arc::new(AtomicU32::new(0));
        let parked = Arc::new(AtomicU64::new(0));
        let data = Arc::new(AtomicU64::new(0));

        let (c2, p2, d2) = (count.clone(), parked.clone(), data.clone());
        let waker = thread::spawn(move || {
            d2.store(1, Ordering::Release); // publish
            let s = Sleepers::unfenced(&c2);
            s.anyone() && s.take(&p2).is_some()
        });

        let s = Sleepers::unfenced(&count);
        s.announce(&parked, PARK_DOORBELL);
        let ready = data.load(Ordering::Acquire) == 1;
        let rung = waker.join().unwrap();
        if !ready {
            assert!(rung, "lost wake-up: the waiter sleeps and nobody rang it");
        }
        let taken_by_waker = s.retract(&parked);
        assert_eq!(taken_by_waker, rung);
        assert_eq!(
            count.load(Ordering::Relaxed),
            0,
            "the count must return to 0"
        );
    });
}

/// End to end with a doorbell that really blocks: the waiter sleeps on a loom condvar (the
/// doorbell: a count of queued rings, drained on wake) whenever its re-check finds nothing,
/// the waker rings only announcements it takes, over two publishes so that a ring left
/// over from one park (taken just as the waiter retracted) meets the next park. A lost
/// wake-up leaves the waiter blocked forever, which loom reports as a deadlock (checked:
/// replacing the waker's `anyone()` by a plain load of the count, without the fence,
/// makes this model fail at once with that deadlock).
#[test]
fn loom_doorbell_sleep_never_misses_a_publish() {
    use loom::sync::{Condvar, Mutex};
    const PUBLISHES: u64 = 2;
    loom::model(|| {
        let count = Arc::new(AtomicU32::new(0));
        let parked = Arc::new(AtomicU64::new(0));
        let data = Arc::new(AtomicU64::new(0));
        let bell = Arc::new((Mutex::new(0u32), Condvar::new()));

        let (c2, p2, d2, b2) = (count.clone(), parked.clone(), data.clone(), bell.clone());
        let waker = thread::spawn(move || {
            let s = Sleepers::unfenced(&c2);
            let mut rings = 0;
            for _ in 0..PUBLISHES {
                // Release: pairs with the waiter's Acquire loads.
                d2.fetch_add(1, Ordering::Release);
                if s.anyone() && s.take(&p2) == Some(PARK_DOORBELL) {
                    *b2.0.lock().unwrap() += 1; // ring
                    b2.1.notify_one();
                    rings += 1;
                }
            }
            rings
        });

        let s = Sleepers::unfenced(&count);
        let (mut seen, mut taken) = (0, 0);
        while seen < PUBLISHES {
            let now = data.load(Ordering::Acquire);
            if now > seen {
                seen = now;
                continue;
            }
            s.announce(&parked, PARK_DOORBELL);
            if data.load(Ordering::Acquire) == seen {
                // Sleep until rung, then drain every queued ring.
                let mut rung = bell.0.lock().unwrap();
                while *rung == 0 {
                    rung = bell.1.wait(rung).unwrap();
                }
                *rung = 0;
            }
            if s.retract(&parked) {
                taken += 1;
            }
        }
        let rings = waker.join().unwrap();
        assert_eq!(taken, rings, "each ring answers exactly one announcement");
        assert_eq!(count.load(Ordering::Relaxed), 0);
    });
}

/// A clean close wakes a doorbell waiter that announced at the same moment: the closer takes
/// its producer count down, then fences and takes the announcement; the waiter announces,
/// then re-checks the count. Either the waiter sees the close or the closer rings it.
/// (Without the closer's fence, `leave` used to skip the fence that publishes use: checked,
/// removing `waker_fence` below makes this model fail.)
#[test]
fn loom_close_never_loses_a_doorbell_waiter() {
    loom::model(|| {
        let count = Arc::new(AtomicU32::new(0));
        let parked = Arc::new(AtomicU64::new(0));
        let producers = Arc::new(AtomicU32::new(1));

        let (c2, p2, n2) = (count.clone(), parked.clone(), producers.clone());
        let closer = thread::spawn(move || {
            // AcqRel, as `uncount`.
            n2.fetch_sub(1, Ordering::AcqRel);
            let s = Sleepers::unfenced(&c2);
            s.waker_fence();
            s.take(&p2).is_some()
        });

        let s = Sleepers::unfenced(&count);
        s.announce(&parked, PARK_DOORBELL);
        // Acquire, as `peers_closed`.
        let closed = producers.load(Ordering::Acquire) == 0;
        let rung = closer.join().unwrap();
        if !closed {
            assert!(
                rung,
                "lost wake-up: the waiter sleeps on an open channel nobody rings"
            );
        }
        assert_eq!(s.retract(&parked), rung);
        assert_eq!(count.load(Ordering::Relaxed), 0);
    });
}

/// Wake one per item, and its rule: a waiter that was rung and does not take the item passes
/// the wake on. One item is published; waiter A announces and is cancelled (its future
/// dropped) at any point; waiter B needs the item. The waker rings at most one announcement,
/// scanning A before B. If A was rung, A's retract finds its announcement taken and passes
/// the wake on (fence, then ring one announcement of its side). B must always get the item:
/// a lost wake leaves B asleep forever, reported by loom as a deadlock (checked: without the
/// pass-on, this model fails with that deadlock).
#[test]
fn loom_wake_one_passes_on_a_wake_it_does_not_use() {
    use loom::sync::{Condvar, Mutex};
    type Bell = Arc<(Mutex<u32>, Condvar)>;
    fn ring(b: &Bell) {
        *b.0.lock().unwrap() += 1;
        b.1.notify_one();
    }
    fn sleep(b: &Bell) {
        let mut rung = b.0.lock().unwrap();
        while *rung == 0 {
            rung = b.1.wait(rung).unwrap();
        }
        *rung = 0;
    }
    /// Rings at most one of the announcements (in scan order), as `WaitSet::wake(.., 1)`.
    fn wake_one(s: &Sleepers<'_>, set: &[(&AtomicU64, &Bell)]) {
        if !s.anyone() {
            return;
        }
        for (parked, bell) in set {
            if s.take(parked) == Some(PARK_DOORBELL) {
                ring(bell);
                return;
            }
        }
    }
    loom::model(|| {
        let count = Arc::new(AtomicU32::new(0));
        let (pa, pb) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (ba, bb): (Bell, Bell) = (Arc::default(), Arc::default());
        let items = Arc::new(AtomicU64::new(0));

        let waker = {
            let (c, pa, pb, ba, bb, items) = (
                count.clone(),
                pa.clone(),
                pb.clone(),
                ba.clone(),
                bb.clone(),
                items.clone(),
            );
            thread::spawn(move || {
                items.fetch_add(1, Ordering::Release); // publish one item
                let s = Sleepers::unfenced(&c);
                wake_one(&s, &[(&pa, &ba), (&pb, &bb)]);
            })
        };
        let canceller = {
            let (c, pa, pb, bb) = (count.clone(), pa.clone(), pb.clone(), bb.clone());
            thread::spawn(move || {
                let s = Sleepers::unfenced(&c);
                s.announce(&pa, PARK_DOORBELL);
                // Dropped while parked: `reactor::retract`.
                if s.retract(&pa) {
                    wake_one(&s, &[(&pb, &bb)]);
                }
            })
        };

        let s = Sleepers::unfenced(&count);
        loop {
            // Take the item if there is one (a consumer's claim).
            if items
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
            {
                break;
            }
            s.announce(&pb, PARK_DOORBELL);
            if items.load(Ordering::Acquire) == 0 {
                sleep(&bb);
            }
            s.retract(&pb);
        }
        waker.join().unwrap();
        canceller.join().unwrap();
        assert_eq!(count.load(Ordering::Relaxed), 0);
    });
}

/// A participant that joins while a task parks is seen by one of them: the joiner claims its
/// record, then wakes everyone (`Core::count_in`: the waker's fence, then the parked words);
/// the waiter announces (its fence), then reads the table for participants it has not seen
/// (`reactor::joined_unseen`). Store-buffering again: if the waiter's read misses the new
/// record, the joiner's wake takes its announcement, so the waiter is rung and registers the
/// newcomer's pidfd at its next park (checked: without the waiter's fence, that is with
/// the announcement's store Relaxed and no fence, this fails).
#[test]
fn loom_a_joiner_is_seen_or_rings_the_parked_task() {
    loom::model(|| {
        let count = Arc::new(AtomicU32::new(0));
        let parked = Arc::new(AtomicU64::new(0));
        let record = Arc::new(AtomicU64::new(0));

        let (c2, p2, r2) = (count.clone(), parked.clone(), record.clone());
        let joiner = thread::spawn(move || {
            // The record claim (a SeqCst CAS of the owner word in the layout).
            r2.store(7, Ordering::SeqCst);
            let s = Sleepers::unfenced(&c2);
            s.anyone() && s.take(&p2).is_some()
        });

        let s = Sleepers::unfenced(&count);
        s.announce(&parked, PARK_DOORBELL);
        // The table read of `joined_unseen` (Relaxed, as the participant loads are).
        let seen = record.load(Ordering::Relaxed) == 7;
        let rung = joiner.join().unwrap();
        assert!(
            seen || rung,
            "the newcomer is neither watched nor did its join ring the parked task"
        );
        s.retract(&parked);
    });
}

/// An MPMC producer that rings no second worker because the one it rang has not used that
/// wake yet (`Core::ring_peers`) never strands its work: either it sees the wake used (and
/// rings another), or the rung worker's attempt after using the wake sees the work. Without
/// the two fences both loads could miss (store buffering).
#[test]
fn loom_a_skipped_ring_is_never_lost() {
    loom::model(|| {
        let woken = Arc::new(AtomicU64::new(0));
        let data = Arc::new(AtomicU64::new(0));
        let (w2, d2) = (woken.clone(), data.clone());
        let producer = thread::spawn(move || {
            d2.store(1, Ordering::Release); // publish
            woken_since(&w2, 0) // it rang this worker when its count was 0
        });
        // The rung worker runs again: counts the wake, then attempts.
        note_woken(&woken);
        let saw = data.load(Ordering::Acquire) == 1;
        let rings_another = producer.join().unwrap();
        assert!(
            saw || rings_another,
            "the producer skipped its ring and the worker's attempt missed the work"
        );
    });
}

/// One waiter in fenced mode and a light waker, as in `loom_park_wake_no_lost_wakeup`: the
/// waiter parks with a plain fence (it holds a unit of the side's fenced count, added by an
/// earlier park whose barrier made it visible: here, before the waker thread starts), and the
/// waker fences only because it reads that count. No wake-up is lost, and the count of
/// sleepers returns to 0 while the fenced count stays (the waiter is still in the mode).
#[test]
fn loom_fenced_mode_no_lost_wakeup() {
    fenced_mode_model(1);
}

/// The negative twin: the same plain-fence park with the fenced count at 0 (as if the waiter
/// had not added itself, or the count were lost), so the waker makes no fence. Loom must find
/// the lost wake-up (the store-buffering outcome), which shows the model can see one.
#[test]
#[should_panic(expected = "lost wake-up")]
fn loom_fenced_mode_without_the_count_loses_a_wakeup() {
    fenced_mode_model(0);
}

fn fenced_mode_model(fenced_count: u32) {
    loom::model(move || {
        let count = Arc::new(AtomicU32::new(0));
        let fenced = Arc::new(AtomicU32::new(fenced_count));
        let parked = Arc::new(AtomicU64::new(0));
        let mine = AtomicU64::new(1); // our record's AUX_FENCED: we hold a unit
        let data = Arc::new(AtomicU64::new(0));

        let (c2, f2, p2, d2) = (count.clone(), fenced.clone(), parked.clone(), data.clone());
        let waker = thread::spawn(move || {
            d2.store(1, Ordering::Release); // publish
            let s = Sleepers {
                count: &c2,
                fenced: Some(&f2),
                checks: None,
            };
            s.anyone() && s.take(&p2).is_some()
        });

        let s = Sleepers {
            count: &count,
            fenced: Some(&fenced),
            checks: None,
        };
        s.announce_as(&parked, PARK_DOORBELL, Some((&mine, true)));
        let ready = data.load(Ordering::Acquire) == 1;
        let rung = waker.join().unwrap();
        if !ready {
            assert!(rung, "lost wake-up: the waiter sleeps and nobody rang it");
        }
        let taken_by_waker = s.retract(&parked);
        assert_eq!(taken_by_waker, rung);
        assert_eq!(count.load(Ordering::Relaxed), 0);
        assert_eq!(fenced.load(Ordering::Relaxed), fenced_count);
        // Leaving the mode takes our unit off, once.
        s.drop_fenced(&mine);
        s.drop_fenced(&mine);
        assert_eq!(
            fenced.load(Ordering::Relaxed),
            fenced_count.saturating_sub(1)
        );
    });
}
