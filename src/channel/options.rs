//! Channel options: geometry for creators, waiting and lifetime for every handle.

use std::time::Duration;

use crate::layout;
use crate::wait::WaitStrategy;

/// When the channel's name is removed from `/dev/shm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unlink {
    /// The last participant to leave cleanly removes the name if nothing is queued (default):
    /// a producer that leaves messages behind keeps them for a consumer that comes later.
    #[default]
    LastOut,
    /// The handle that created the channel removes the name when it is dropped; processes
    /// attached by then keep working.
    Creator,
    /// Never: remove it with [`crate::Segment::unlink`].
    Never,
}

/// Channel options: geometry for creators, and waiting behaviour for every handle.
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) slot_size: usize,
    pub(crate) capacity: usize,
    pub(crate) wait: WaitStrategy,
    pub(crate) liveness_interval: Duration,
    pub(crate) init_timeout: Duration,
    pub(crate) permissions: u32,
    pub(crate) max_participants: u32,
    pub(crate) unlink: Unlink,
    pub(crate) stale: Stale,
    pub(crate) lifetime: Lifetime,
}

/// How long a channel lives: when its streams end, and who removes its name. A creator's
/// setting, recorded in the segment so that every participant agrees.
///
/// | lifetime | a consumer's stream ends | a producer gets `Closed` | the name is removed | a producer (consumer) that comes late |
/// |---|---|---|---|---|
/// | [`LastOut`](Lifetime::LastOut) (default) | when every producer that attached has left, once drained | when every consumer that attached has left | by the last participant out, if nothing is queued ([`Unlink`]) | attaches while the name exists, and opens the channel again |
/// | [`Creator`](Lifetime::Creator) | only after the creator left (or died), then as `LastOut` | only after the creator left (or died), then as `LastOut` | when the creator leaves | attaches at any time while the creator lives |
///
/// `Creator` is the shape of a log collector or a job queue: the collector creates the
/// channel, emitters come and go, and its stream waits for the next one instead of ending
/// when the first leaves. With `Creator`, an [`Unlink`] of `LastOut` acts as `Creator`
/// (`Never` still keeps the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lifetime {
    /// Closes when the last producer (or consumer) leaves.
    #[default]
    LastOut,
    /// Stays open while the creator's handle is attached.
    Creator,
}

/// What `create` does when the name is taken by a *stale* segment: one whose participants
/// are all dead (pid and start time), as a SIGKILLed service leaves it. A segment with a live
/// participant is never touched: `create` then fails with [`Error::AlreadyExists`] naming
/// the live pid.
///
/// [`Error::AlreadyExists`]: crate::Error::AlreadyExists
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stale {
    /// Take the name over and create the channel afresh (default: what a restarted service
    /// wants). Messages the dead run left queued are dropped with the old segment. Of two
    /// creators racing for one stale name, one wins; the other gets `AlreadyExists` naming
    /// the winner.
    #[default]
    Reclaim,
    /// Fail with `AlreadyExists`, saying that every participant is dead and how to reclaim
    /// (this option, `shmchan gc`, or `Segment::unlink`).
    Refuse,
    /// Keep queued messages across restarts: attach to the stale channel as it is (its slot
    /// size and capacity must be the ones asked for, else `Mismatch`), so the new run
    /// receives what the dead one left.
    Keep,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            slot_size: 1472,
            capacity: 128,
            wait: WaitStrategy::default(),
            liveness_interval: Duration::from_millis(100),
            init_timeout: layout::DEFAULT_INIT_TIMEOUT,
            permissions: 0o600,
            max_participants: 64,
            unlink: Unlink::LastOut,
            stale: Stale::Reclaim,
            lifetime: Lifetime::LastOut,
        }
    }
}

impl Options {
    /// Defaults: slot size 1472 bytes, capacity 128 slots (a power of two: indices by mask, not a
    /// 64-bit division; the reference framework has 144), default
    /// [`WaitStrategy`], liveness interval 100 ms, permissions 0600, 64 participants for
    /// MPSC/MPMC, [`Unlink::LastOut`].
    pub fn new() -> Self {
        Self::default()
    }
    /// Largest message in bytes (a creator's setting; attachers read it from the header).
    pub fn slot_size(mut self, n: usize) -> Self {
        self.slot_size = n;
        self
    }
    /// Number of slots (a creator's setting). MPSC and MPMC channels need at least 2.
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }
    /// Spin / yield / park budget of blocking and async waits.
    pub fn wait_strategy(mut self, w: WaitStrategy) -> Self {
        self.wait = w;
        self
    }
    /// How often a blocked call checks that its peers' processes still live; a dead peer is
    /// reported within about this time. Default 100 ms.
    pub fn liveness_interval(mut self, d: Duration) -> Self {
        self.liveness_interval = d.max(Duration::from_millis(1));
        self
    }
    /// How long `open` waits for a creator that is still initialising. Default 2 s.
    pub fn init_timeout(mut self, d: Duration) -> Self {
        self.init_timeout = d;
        self
    }
    /// Permission bits of a created segment (default 0o600).
    pub fn permissions(mut self, mode: u32) -> Self {
        self.permissions = mode & 0o777;
        self
    }
    /// Participant records of an MPSC/MPMC channel: how many producers and consumers can be
    /// attached at once (default 64; SPSC channels always have 2).
    pub fn max_participants(mut self, n: u32) -> Self {
        self.max_participants = n.clamp(2, layout::MAX_PARTICIPANTS);
        self
    }
    /// How long the channel lives (a creator's setting; default [`Lifetime::LastOut`]).
    pub fn lifetime(mut self, l: Lifetime) -> Self {
        self.lifetime = l;
        self
    }
    /// What `create` does with a stale segment of the same name (default
    /// [`Stale::Reclaim`]).
    pub fn stale(mut self, s: Stale) -> Self {
        self.stale = s;
        self
    }
    /// When the name is removed (default [`Unlink::LastOut`]).
    pub fn unlink(mut self, u: Unlink) -> Self {
        self.unlink = u;
        self
    }
}

impl Options {
    /// (slot size, capacity) a creator would use.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn geometry(&self) -> (usize, usize) {
        (self.slot_size, self.capacity)
    }
}
