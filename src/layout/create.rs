//! Creating a named segment whose name may be taken by a stale one (the protocol of the
//! parent module's docs, [Stale segments](super#stale-segments)): the loop every named
//! `create` of the crate shares (heaps today; channels call the same shape).

use std::time::{Duration, Instant};

use super::{Layout, Staleness};
use crate::error::{Error, Result};
use crate::segment::{Mode, Segment, SegmentOptions};

/// What to do with a stale segment that holds the name (the upper layers' `Stale` policy,
/// without their types: this layer sits below them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnStale {
    /// Take the name over and create afresh.
    Reclaim,
    /// Fail with `AlreadyExists`, saying every participant is dead and how to reclaim.
    Refuse,
    /// Attach to the stale segment as it is (the caller's `keep`).
    Keep,
}

/// A named create: what is made, and how.
pub(crate) struct CreateNamed<'a> {
    /// The segment's name.
    pub(crate) name: &'a str,
    /// What the user made, for errors: `heap '/x'`, `SPSC channel '/x'`.
    pub(crate) what: &'a str,
    /// Bytes of the segment.
    pub(crate) len: usize,
    /// How the segment is created (permissions, unlink on drop).
    pub(crate) segment: &'a SegmentOptions,
    /// How long a name that keeps changing (another creator at work) is looked at again.
    pub(crate) init_timeout: Duration,
    /// The policy for a stale segment.
    pub(crate) stale: OnStale,
    /// The option that reclaims, named in `Refuse`'s error: `HeapOptions::stale(Stale::Reclaim)`.
    pub(crate) reclaim_hint: &'a str,
}

impl CreateNamed<'_> {
    /// Creates the segment and hands it to `fresh` (which lays it out); if `fresh` fails,
    /// the name is removed again while it still names that object. A name taken by a live
    /// segment (a live participant or creator) is [`Error::AlreadyExists`] naming the live
    /// pid; by a stale one, handled per [`stale`](Self::stale) (`Keep` calls `keep`, which
    /// attaches; its `NotFound` means the name went away meanwhile: look again). A segment
    /// whose creator is still laying it out (not sized yet, or no pid written yet) is waited
    /// for until the init timeout, then [`Error::TimedOut`].
    ///
    /// # Errors
    ///
    /// As above, and whatever [`SegmentOptions::create`], [`Layout::staleness`], `fresh` or
    /// `keep` return.
    pub(crate) fn run<T>(
        &self,
        mut fresh: impl FnMut(Segment) -> Result<T>,
        mut keep: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        let (name, what) = (self.name, self.what);
        let deadline = crate::deadline_after(self.init_timeout);
        let mut pause = Duration::from_micros(50);
        // Every `continue` below is a change seen in the name (removed, replaced, reclaimed,
        // or a creator still at work): look again after a short pause, until the deadline.
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) {
                if Instant::now() >= deadline {
                    return Err(Error::TimedOut(format!(
                        "{what} kept changing (created, removed or being laid out by another \
                         process) for the whole init timeout ({:?}) while creating it",
                        self.init_timeout
                    )));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            match self.segment.create(name, self.len) {
                Ok(seg) => {
                    let ours = seg.dev_ino();
                    return fresh(seg).inspect_err(|_| {
                        let _ = crate::segment::remove_if_same(name, ours);
                    });
                }
                Err(Error::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
            // The name is taken. Its creator may be between shm_open and ftruncate (another
            // creator that just won a race for a stale name): wait for the size.
            let seg = match Layout::open_sized(name, Mode::ReadWrite, deadline) {
                Ok(seg) => seg,
                Err(Error::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let last = match Layout::staleness(&seg)? {
                // Sized, but its creator has not written its pid yet: it is at work.
                Staleness::Live { pid: 0 } => continue,
                Staleness::Live { pid } => {
                    return Err(Error::AlreadyExists(format!(
                        "{what} already exists and is in use by live process {pid}"
                    )));
                }
                Staleness::Stale { pid } => pid,
            };
            match self.stale {
                OnStale::Reclaim => match Layout::reclaim_stale(name, &seg) {
                    // The name is free again; or it was replaced, or a would-be attacher
                    // came (it may have backed off since): look again, which names a live pid.
                    Ok(()) | Err(Error::NotFound(_) | Error::AlreadyExists(_)) => continue,
                    Err(e) => return Err(e),
                },
                OnStale::Refuse => {
                    return Err(Error::AlreadyExists(format!(
                        "{what} exists but every participant is dead{}: create it with {} \
                         to take it over, or remove it (`shmchan gc`, or Segment::unlink)",
                        last.map(|p| format!(" (last: pid {p})"))
                            .unwrap_or_default(),
                        self.reclaim_hint
                    )));
                }
                OnStale::Keep => {
                    drop(seg);
                    match keep() {
                        Err(Error::NotFound(_)) => continue,
                        other => return other,
                    }
                }
            }
        }
    }
}
