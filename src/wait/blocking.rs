//! The wait loop of blocking and timed calls (`send_blocking`, `recv_timeout`, ...): spin,
//! then yield the thread, then park on the side's futex word, per the [`WaitStrategy`], with a
//! liveness check after every park.
//!
//! It knows nothing of rings or channels: the caller supplies the attempt (claim a slot, take
//! a message) and implements [`Park`] for its handle. May call `protocol` and `sys` only.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use super::WaitStrategy;
use super::protocol::{PARK_FUTEX, Sleepers};
use crate::error::Result;

/// What a handle gives the wait loops: its budget, its parked word and side, and the check
/// that runs after every park.
pub(crate) trait Park {
    /// The spin / yield / park budget.
    fn strategy(&self) -> WaitStrategy;
    /// The longest a park lasts before the liveness check runs.
    fn liveness_interval(&self) -> Duration;
    /// The waiting side's sleepers and this handle's parked word.
    fn parking(&self) -> (Sleepers<'_>, &AtomicU64);
    /// After a park: look for dead peers (may report `PeerGone` or `Corrupt`), and let the
    /// next attempt run its clock-gated checks (repair, adoption) at once.
    fn after_park(&mut self) -> Result<()>;
}

/// Tries `attempt` until it gives a value, waiting per the handle's strategy in between, or
/// until `deadline` passes (`Ok(None)`).
pub(crate) fn block<P: Park, R>(
    p: &mut P,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(&mut P) -> Result<Option<R>>,
) -> Result<Option<R>> {
    let start = Instant::now();
    let strategy = p.strategy();
    let mut n: u32 = 0;
    loop {
        if let Some(r) = attempt(p)? {
            return Ok(Some(r));
        }
        // The clock is read once every 32 attempts while spinning.
        let now = if n % 32 == 0 { Instant::now() } else { start };
        if let Some(d) = deadline {
            if now >= d {
                return Ok(None);
            }
        }
        n = n.wrapping_add(1);
        match strategy.phase(now.saturating_duration_since(start)) {
            super::Phase::Spin => std::hint::spin_loop(),
            super::Phase::Yield => std::thread::yield_now(),
            super::Phase::Park => {
                let mut timeout = p.liveness_interval();
                if let Some(d) = deadline {
                    timeout = timeout.min(d.saturating_duration_since(Instant::now()));
                }
                let seq = {
                    let (sl, parked) = p.parking();
                    sl.announce(parked, PARK_FUTEX)
                };
                // Re-check after announcing (protocol step 3).
                let r = attempt(p);
                if !matches!(r, Ok(None)) {
                    let (sl, parked) = p.parking();
                    sl.retract(parked);
                    return r;
                }
                {
                    let (sl, parked) = p.parking();
                    sl.sleep(seq, timeout);
                    sl.retract(parked);
                }
                p.after_park()?;
            }
        }
    }
}
