//! Stale segments: what a creator finds when its name is taken, and the reclaim protocol of
//! the parent module's docs ([Stale segments](super#stale-segments)).

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// What is known of an existing segment when a creator finds its name taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Staleness {
    /// A participant (or an initialising creator) lives: the name is in use.
    Live { pid: u32 },
    /// Every participant is dead (or there never was one and the creator is gone); `pid` is
    /// the last owner or creator seen, if any.
    Stale { pid: Option<u32> },
}

impl Layout {
    /// Judges the shmchan segment `seg` (mapped read-write, or read-only by `inspect`): live,
    /// or stale.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if it is not a shmchan segment (bad magic, unknown state, a
    /// participant table that does not fit): nothing this crate should take over.
    pub(crate) fn staleness(seg: &Segment) -> Result<Staleness> {
        let d = seg.describe();
        if seg.len() < HEADER_LEN {
            return Err(Error::Corrupt(format!(
                "{d} is smaller than a shmchan header"
            )));
        }
        if load64(seg, OFF_MAGIC, Ordering::Relaxed) != MAGIC {
            // A creator that died before writing the magic leaves zeroes: judge by its pid.
            if load32(seg, OFF_STATE, Ordering::Acquire) > STATE_INIT {
                return Err(Error::Corrupt(format!("{d} is not a shmchan segment")));
            }
        }
        let creator = ProcessId {
            pid: load32(seg, OFF_CPID, Ordering::Relaxed),
            start_time: load64(seg, OFF_CSTART, Ordering::Relaxed),
        };
        // Made in another pid namespace: its pids mean nothing here, so every participant
        // would look dead; such a segment is never stale from here (never reclaimed).
        let theirs = load64(seg, OFF_PIDNS, Ordering::Relaxed);
        let mine = Namespaces::current().pid;
        if theirs != 0 && mine != 0 && theirs != mine {
            return Err(Error::Mismatch {
                segment: format!("{d} (created in another pid namespace: not reclaimed)"),
                what: "pid namespace",
                expected: mine,
                found: theirs,
            });
        }
        let state = load32(seg, OFF_STATE, Ordering::SeqCst);
        match state {
            STATE_FRESH | STATE_INIT => {
                return Ok(if creator.pid != 0 && creator.is_alive() {
                    Staleness::Live { pid: creator.pid }
                } else if creator.pid == 0 {
                    // Not even a pid yet: a creator between shm_open and its first store.
                    Staleness::Live { pid: 0 }
                } else {
                    Staleness::Stale {
                        pid: Some(creator.pid),
                    }
                });
            }
            STATE_READY | STATE_RECLAIMING => {}
            other => return Err(Error::Corrupt(format!("{d}: header state {other}"))),
        }
        let cap = u64::from(load32(seg, OFF_PCAP, Ordering::Relaxed));
        let poff = load64(seg, OFF_POFF, Ordering::Relaxed);
        let end = cap
            .checked_mul(RECORD_LEN as u64)
            .and_then(|n| n.checked_add(poff));
        if cap > u64::from(MAX_PARTICIPANTS)
            || poff % 128 != 0
            || poff < HEADER_LEN as u64
            || end.is_none_or(|e| e > seg.len() as u64)
        {
            return Err(Error::Corrupt(format!(
                "{d}: participant table out of range"
            )));
        }
        // A creator that still runs may have left its handle but keeps the channel (queued
        // messages for a consumer that comes later): not stale while it lives.
        if creator.pid != 0 && creator.is_alive() {
            return Ok(Staleness::Live { pid: creator.pid });
        }
        let mut last = (creator.pid != 0).then_some(creator.pid);
        for i in 0..cap as usize {
            let at = poff as usize + i * RECORD_LEN;
            // SeqCst: pairs with the SeqCst owner CAS of a claimer (see the module docs).
            let owner = shared_load!(
                seg,
                seg.as_ptr().wrapping_add(at + REC_OWNER) as *mut u64,
                AtomicU64,
                Ordering::SeqCst
            );
            if owner == 0 {
                continue;
            }
            let live = (owner >> 40) & 0xff == OWNER_LIVE;
            let start = shared_load!(
                seg,
                seg.as_ptr().wrapping_add(at + REC_START) as *mut u64,
                AtomicU64,
                Ordering::Relaxed
            );
            let p = ProcessId {
                pid: owner as u32,
                start_time: if live { start } else { 0 },
            };
            if p.is_alive() {
                return Ok(Staleness::Live { pid: p.pid });
            }
            last = Some(p.pid);
        }
        Ok(Staleness::Stale { pid: last })
    }

    /// Takes over the stale segment `seg` (mapped read-write from `name`, judged
    /// [`Staleness::Stale`] by the caller) for a new creator: marks the header *being
    /// reclaimed* (one winner among racing reclaimers), proves it stale again, and unlinks the
    /// name while it still names that object. The caller then creates the segment afresh.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] naming the live pid if a participant attached meanwhile;
    /// [`Error::NotFound`] if the name was replaced meanwhile (look again);
    /// [`Error::Corrupt`] if it is not a shmchan segment; [`Error::PermissionDenied`].
    pub(crate) fn reclaim_stale(name: &str, seg: &Segment) -> Result<()> {
        Layout::mark_reclaiming(seg)?;
        match crate::segment::remove_if_same(name, seg.dev_ino())? {
            crate::segment::Removal::Removed | crate::segment::Removal::Gone => Ok(()),
            crate::segment::Removal::Replaced => Err(Error::NotFound(format!(
                "segment '{name}' was replaced while it was being reclaimed"
            ))),
        }
    }

    /// Marks the stale segment `seg` (mapped read-write) *being reclaimed*, so that nobody
    /// attaches any more, after proving again that nobody did meanwhile. A half-initialised
    /// segment (its creator died before publishing) needs no mark: nobody can attach to it.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] naming the live pid if a participant attached;
    /// [`Error::Corrupt`] if it is not a shmchan segment.
    pub(crate) fn mark_reclaiming(seg: &Segment) -> Result<()> {
        let in_use = |pid: u32| {
            Error::AlreadyExists(format!(
                "{} already exists and is in use by live process {pid}",
                seg.describe()
            ))
        };
        let state = word32(seg, OFF_STATE);
        let seen = state.load(Ordering::SeqCst);
        if seen == STATE_READY {
            // SeqCst: pairs with the claimers' SeqCst owner CAS + state load. A failed CAS
            // means another reclaimer marked it first (fine: the removal below is safe for
            // any number of us) or the state changed to something we do not take over.
            let _ =
                state.compare_exchange(seen, STATE_RECLAIMING, Ordering::SeqCst, Ordering::SeqCst);
            match Layout::staleness(seg)? {
                Staleness::Live { pid } => {
                    // Somebody attached between our two looks: give it back.
                    let _ = state.compare_exchange(
                        STATE_RECLAIMING,
                        STATE_READY,
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    );
                    return Err(in_use(pid));
                }
                Staleness::Stale { .. } => {}
            }
        }
        Ok(())
    }
}
