//! Waiting: the spin -> yield -> park budget, and the park/wake protocol that makes a wake-up
//! syscall only when a peer announced that it sleeps.
//!
//! # The protocol
//!
//! Each ring side that can wait (consumers for data, producers for space) has two words in the
//! ring's control block: a futex word and a sleeper count.
//!
//! Waiter (after finding nothing to do):
//! 1. `seq = futex.load()`;
//! 2. `sleepers += 1` (SeqCst), then a SeqCst fence;
//! 3. re-check the ring; if there is work, `sleepers -= 1` and go;
//! 4. `futex_wait(futex, seq, timeout)`, then `sleepers -= 1`.
//!
//! Waker (after publishing, i.e. after the release store that made work visible):
//! 1. a SeqCst fence;
//! 2. if `sleepers != 0`: `futex += 1`, `futex_wake(futex, all)`.
//!
//! Either the waker's load of `sleepers` sees the waiter's increment (it then bumps the futex
//! word, so a waiter that has not reached `futex_wait` yet returns from it at once), or the
//! waiter's re-check sees the published work: the two SeqCst fences forbid both loads missing
//! both stores (the store-buffering pattern). `loom_models::park_wake_no_lost_wakeup` checks it.
//!
//! A busy stream therefore makes no syscall: the fence and one load of a rarely written word
//! per publish. Waits are bounded by the liveness interval so a dead peer is noticed, and a
//! waiter killed while parked leaves the count raised only until its participant record is
//! reclaimed (its record's parked flag says by how much).

use std::time::Duration;

use crate::loom::{AtomicU32, Ordering, fence};

/// How long a blocked operation spins, then yields, before it parks.
///
/// On the team's 2-vCPU VM a park/wake round trip through a futex costs 75-90 µs, against
/// ~0.4 µs for two spinning processes: a peer that answers within tens of microseconds is much
/// better met spinning. The defaults spin for 20 µs, then yield the CPU (letting a peer that
/// shares it run) until 100 µs have passed, then park. A throughput-oriented service on busy
/// cores may want less spinning ([`WaitStrategy::park_only`]); a latency-critical one on
/// dedicated cores more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStrategy {
    spin: Duration,
    yield_until: Duration,
}

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy {
            spin: Duration::from_micros(20),
            yield_until: Duration::from_micros(100),
        }
    }
}

impl WaitStrategy {
    /// The default: spin 20 µs, yield until 100 µs, then park.
    pub fn new() -> Self {
        Self::default()
    }

    /// Park at once, never spin or yield (lowest CPU use, highest wake latency).
    pub fn park_only() -> Self {
        WaitStrategy {
            spin: Duration::ZERO,
            yield_until: Duration::ZERO,
        }
    }

    /// How long to busy-spin (re-checking with a CPU pause hint) before yielding.
    pub fn spin_for(mut self, d: Duration) -> Self {
        self.spin = d;
        self.yield_until = self.yield_until.max(d);
        self
    }

    /// Until when (from the start of the wait) to yield the CPU between checks before parking.
    /// At least the spin time.
    pub fn yield_until(mut self, d: Duration) -> Self {
        self.yield_until = d.max(self.spin);
        self
    }

    /// The spin budget.
    pub fn spin_duration(&self) -> Duration {
        self.spin
    }

    /// The spin + yield budget.
    pub fn yield_duration(&self) -> Duration {
        self.yield_until
    }

    /// The phase a wait that began `elapsed` ago is in.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn phase(&self, elapsed: Duration) -> Phase {
        if elapsed < self.spin {
            Phase::Spin
        } else if elapsed < self.yield_until {
            Phase::Yield
        } else {
            Phase::Park
        }
    }
}

/// Where a wait is in its budget.
#[cfg_attr(loom, allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Spin,
    Yield,
    Park,
}

/// The futex word and sleeper count of one waiting side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sleepers<'a> {
    pub(crate) futex: &'a AtomicU32,
    pub(crate) count: &'a AtomicU32,
}

impl Sleepers<'_> {
    /// Waker side, called after the release store that published work. Returns whether a
    /// wake-up was sent (a peer had announced that it sleeps).
    #[inline]
    pub(crate) fn wake(&self) -> bool {
        // SeqCst fence: pairs with the fence in `announce` (store-buffering: our publish and
        // their increment cannot both be missed by the two loads that follow them).
        fence(Ordering::SeqCst);
        if self.count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.wake_all();
        true
    }

    /// Bumps the futex word and wakes every parked waiter, unconditionally (close, repair).
    pub(crate) fn wake_all(&self) {
        // Release: a waiter that sees the new value sees what we published before.
        self.futex.fetch_add(1, Ordering::Release);
        #[cfg(not(loom))]
        crate::sys::futex::wake(self.futex, u32::MAX);
    }

    /// Waiter side, step 1-2: reads the futex word and announces. Re-check the ring after
    /// this returns, then [`park`](Self::park) with the returned value or
    /// [`retract`](Self::retract).
    pub(crate) fn announce(&self) -> u32 {
        // Acquire: pairs with the Release bump in `wake_all`.
        let seq = self.futex.load(Ordering::Acquire);
        self.count.fetch_add(1, Ordering::SeqCst);
        // SeqCst fence: pairs with the fence in `wake` (see the module docs).
        fence(Ordering::SeqCst);
        seq
    }

    /// Withdraws an announcement.
    pub(crate) fn retract(&self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }

    /// Sleeps until woken, the futex word changes from `seq`, or `timeout`; then withdraws the
    /// announcement.
    #[cfg(not(loom))]
    pub(crate) fn park(&self, seq: u32, timeout: Duration) {
        crate::sys::futex::wait(self.futex, seq, Some(timeout));
        self.retract();
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::loom::{AtomicU64, thread};
    use loom::sync::Arc;

    /// The announce / re-check / wake protocol never loses a wake-up: if the waiter decides to
    /// sleep (its re-check found nothing), the waker must have seen the announcement and bumped
    /// the futex word, so the waiter's futex_wait (modelled as "the word still equals seq")
    /// returns at once.
    #[test]
    fn loom_park_wake_no_lost_wakeup() {
        loom::model(|| {
            let futex = Arc::new(AtomicU32::new(0));
            let count = Arc::new(AtomicU32::new(0));
            let data = Arc::new(AtomicU64::new(0));

            let (f2, c2, d2) = (futex.clone(), count.clone(), data.clone());
            let waker = thread::spawn(move || {
                d2.store(1, Ordering::Release); // publish
                let s = Sleepers {
                    futex: &f2,
                    count: &c2,
                };
                s.wake();
            });

            let s = Sleepers {
                futex: &futex,
                count: &count,
            };
            let seq = s.announce();
            let ready = data.load(Ordering::Acquire) == 1;
            if !ready {
                // futex_wait(futex, seq) sleeps only while the word equals seq; after the
                // waker finishes, a sleeping waiter would never be woken if it still did.
                waker.join().unwrap();
                assert_ne!(
                    futex.load(Ordering::Acquire),
                    seq,
                    "lost wake-up: waiter would sleep with nobody to wake it"
                );
            } else {
                waker.join().unwrap();
            }
            s.retract();
        });
    }
}
