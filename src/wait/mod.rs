//! Waiting: the spin -> yield -> park budget ([`WaitStrategy`]), and the park/wake protocol
//! that makes a wake-up system call only when a peer announced that it sleeps.
//!
//! Everything a waiting handle does lives in this module, below the channel types:
//!
//! - `protocol.rs`: the park/wake protocol over an explicit set of participant records, the
//!   waiter's half (announce, re-check, retract) beside the waker's (the one fenced scan that
//!   every wake path goes through: publish, free, close, repair, death), and the lost-wake-up
//!   argument, once; its loom models are in `loom_models.rs` beside it.
//! - `blocking.rs`: the wait loop of blocking and timed calls (threads park on a futex word).
//! - `reactor.rs`: the wait of futures, `Sink`s and `Stream`s (tasks park on a doorbell
//!   registered in their runtime's reactor, and watch their peers' pidfds).
//!
//! This module may call `ring` (nothing of it: it only sees words), `layout` (the records),
//! `runtime` and `sys`; never `channel` or `endpoint`, which call it through the `Park` and
//! `AsyncPark` traits.

#[cfg(not(loom))]
pub(crate) mod blocking;
pub(crate) mod protocol;
#[cfg(not(loom))]
pub(crate) mod reactor;

#[cfg(all(test, not(loom)))]
mod doorbell_tests;
#[cfg(all(test, loom))]
mod loom_models;

use std::time::Duration;

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
    ///
    /// Keep it well under a scheduler time slice (a few milliseconds) unless both peers have
    /// cores of their own: when they share one CPU, a spinning side holds it for the whole
    /// budget before the other can answer, so every hop costs the full budget.
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
