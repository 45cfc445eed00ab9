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
