//! The participant table: records, claims (free records only, or a dead owner's taken over
//! by its own role), release, and the intent and auxiliary words upper layers use.
//!
//! May call `segment` and `sys` (liveness); only through the parent's word helpers.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

impl Layout {
    /// Pointer to the word of record `index` at byte offset `off` of the record.
    #[inline]
    pub(super) fn rec_ptr(&self, index: u32, off: usize) -> *mut u64 {
        assert!(index < self.participant_cap && off + 8 <= RECORD_LEN && off % 8 == 0);
        let at = self.participants_off + index as usize * RECORD_LEN + off;
        // index < cap (asserted), so `at + 8 <= data_off <= len` (validated on attach or
        // computed on create); participants_off is 128-aligned and the mapping page-aligned, so
        // the word is 8-aligned.
        self.segment.as_ptr().wrapping_add(at) as *mut u64
    }

    /// A word of record `index` as an atomic, on a writable mapping only (callers check with
    /// `writable()` first; readers use [`rec_load`](Self::rec_load)).
    #[inline]
    pub(super) fn rec_word(&self, index: u32, off: usize) -> &AtomicU64 {
        debug_assert!(self.segment.mode() == Mode::ReadWrite);
        // SAFETY: rec_ptr is aligned and inside the mapping, which is writable (callers check)
        // and lives as long as `self`.
        unsafe { AtomicU64::from_ptr(self.rec_ptr(index, off)) }
    }

    /// Loads a word of record `index`, on any mapping (see `shared_load!`).
    pub(super) fn rec_load(&self, index: u32, off: usize, order: Ordering) -> u64 {
        shared_load!(self.segment, self.rec_ptr(index, off), AtomicU64, order)
    }

    #[inline]
    pub(super) fn writable(&self) -> Result<()> {
        self.segment.as_mut_ptr().map(|_| ())
    }

    /// The state of record `index`, as it is now. `None` for a free record.
    ///
    /// # Panics
    ///
    /// If `index >= participant_capacity()`.
    pub fn participant(&self, index: u32) -> Option<Participant> {
        // Acquire: pairs with the Release store that published the record live in `claim`, so
        // the start time read next belongs to this owner.
        let owner = self.rec_load(index, REC_OWNER, Ordering::Acquire);
        if owner == 0 {
            return None;
        }
        Some(Participant {
            index,
            owner,
            process: ProcessId {
                pid: owner as u32,
                start_time: if (owner >> 40) & 0xff == OWNER_LIVE {
                    self.rec_load(index, REC_START, Ordering::Relaxed)
                } else {
                    0
                },
            },
            role: Role((owner >> 32) as u8),
        })
    }

    /// The records held by live processes, optionally only those of one role.
    pub fn live_participants(&self, role: Option<Role>) -> Vec<Participant> {
        (0..self.participant_cap)
            .filter_map(|i| self.participant(i))
            .filter(|p| role.is_none_or(|r| p.role == r) && p.is_alive())
            .collect()
    }

    /// Claims record `index` for this process, with `role`. A record held by a dead process
    /// of the same role whose `intent` is clear is taken over: the caller must then undo what
    /// the dead owner held (counters, announcements) before using it, as a clean leave would
    /// have; use [`claim_free`](Self::claim_free) to take free records only.
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] if a live process holds it, a dead one of another role, or a dead one
    /// that left an intent to repair; [`Error::PermissionDenied`] for a read-only segment.
    ///
    /// # Panics
    ///
    /// If `index >= participant_capacity()`.
    pub fn claim(&self, index: u32, role: Role) -> Result<Registration> {
        self.claim_record(index, role, true)
    }

    /// Claims record `index` only if it is free (never a dead process's).
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] if anybody, live or dead, holds it; [`Error::PermissionDenied`] for a
    /// read-only segment.
    ///
    /// # Panics
    ///
    /// If `index >= participant_capacity()`.
    pub fn claim_free(&self, index: u32, role: Role) -> Result<Registration> {
        self.claim_record(index, role, false)
    }

    fn claim_record(&self, index: u32, role: Role, takeover: bool) -> Result<Registration> {
        self.writable()?;
        let me = ProcessId::current();
        let word = self.rec_word(index, REC_OWNER);
        loop {
            // Acquire: pairs with the Release in `release`/`claim` by the previous owner.
            let cur = word.load(Ordering::Acquire);
            if cur != 0 {
                let p = self.participant(index).filter(|p| p.owner == cur);
                let Some(p) = p else {
                    continue; // changed under us: look again
                };
                let held = |why: String| {
                    Error::InUse(format!(
                        "{}: participant record {index} {why}",
                        self.segment.describe()
                    ))
                };
                if p.is_alive() {
                    return Err(held(format!("is held by live process {}", p.process.pid)));
                }
                if !takeover {
                    return Err(held(format!(
                        "belongs to dead process {} (not yet released)",
                        p.process.pid
                    )));
                }
                if p.role != role {
                    return Err(held(format!(
                        "belongs to dead process {} of role {}, not {}",
                        p.process.pid, p.role.0, role.0
                    )));
                }
                // Read once: a peer may change it between two reads.
                let intent = self.intent(index);
                if intent != 0 {
                    return Err(held(format!(
                        "belongs to dead process {} that left position {} to repair",
                        p.process.pid,
                        intent.wrapping_sub(1)
                    )));
                }
            }
            let generation = ((cur >> 48) + 1) & 0xffff;
            let filling = u64::from(me.pid)
                | u64::from(role.0) << 32
                | OWNER_FILLING << 40
                | generation << 48;
            // Acquire on success: we take over the record after the previous owner's last
            // writes (its intent clear) became visible. SeqCst: pairs with the reclaimer's
            // SeqCst state CAS and record loads (`reclaim_stale`): either it sees us here, or
            // we see its state below.
            if word
                .compare_exchange(cur, filling, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                if load32(&self.segment, OFF_STATE, Ordering::SeqCst) != STATE_READY {
                    // Being reclaimed: the reclaimer proved everyone dead before we came.
                    let _ = word.compare_exchange(filling, 0, Ordering::Release, Ordering::Relaxed);
                    return Err(Error::NotFound(format!(
                        "{} is being replaced by a new creator (every participant had died)",
                        self.segment.describe()
                    )));
                }
                self.rec_word(index, REC_START)
                    .store(me.start_time, Ordering::Relaxed);
                self.rec_word(index, REC_INTENT).store(0, Ordering::Relaxed);
                for i in 0..RECORD_AUX_WORDS {
                    self.rec_word(index, REC_AUX + 8 * i)
                        .store(0, Ordering::Relaxed);
                }
                let live = (filling & !(0xff << 40)) | OWNER_LIVE << 40;
                // Release: pairs with the Acquire load in `participant`; readers that see LIVE
                // see our start time.
                word.store(live, Ordering::Release);
                return Ok(Registration { index, owner: live });
            }
        }
    }

    /// Claims any free record (or one of a dead process of the same role, see
    /// [`claim`](Self::claim)) in `range` for this process.
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] if every record in the range is held by a live process (or awaits
    /// repair); [`Error::PermissionDenied`] for a read-only segment.
    pub fn claim_any(&self, range: std::ops::Range<u32>, role: Role) -> Result<Registration> {
        self.claim_any_with(range, role, true)
    }

    /// Claims any free record in `range`, never one of a dead process.
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] if no record in the range is free; [`Error::PermissionDenied`] for
    /// a read-only segment.
    pub fn claim_any_free(&self, range: std::ops::Range<u32>, role: Role) -> Result<Registration> {
        self.claim_any_with(range, role, false)
    }

    fn claim_any_with(
        &self,
        range: std::ops::Range<u32>,
        role: Role,
        takeover: bool,
    ) -> Result<Registration> {
        let range = range.start..range.end.min(self.participant_cap);
        let mut last = None;
        for i in range.clone() {
            match self.claim_record(i, role, takeover) {
                Ok(r) => return Ok(r),
                Err(Error::InUse(m)) => last = Some(m),
                Err(e) => return Err(e),
            }
        }
        Err(Error::InUse(format!(
            "{}: all {} participant records in {range:?} are taken{}",
            self.segment.describe(),
            range.len(),
            last.map(|m| format!(" (last: {m})")).unwrap_or_default()
        )))
    }

    /// Releases a record this process holds. A record taken over meanwhile (this process was
    /// thought dead) is left alone.
    pub fn release(&self, reg: Registration) {
        if self.writable().is_err() {
            return;
        }
        // Release: our last writes to shared state happen-before the next owner's claim
        // (its Acquire CAS).
        let _ = self.rec_word(reg.index, REC_OWNER).compare_exchange(
            reg.owner,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// The `intent` word of record `index` (0 = none; upper layers store `position + 1`).
    ///
    /// # Panics
    ///
    /// If `index >= participant_capacity()`.
    pub fn intent(&self, index: u32) -> u64 {
        // SeqCst: pairs with the SeqCst intent store before a claim CAS (ring/mpmc.rs): a
        // repairer that saw the counter move past a position sees the claimer's intent.
        self.rec_load(index, REC_INTENT, Ordering::SeqCst)
    }

    /// The `intent` word of record `index`, as an atomic, for upper layers.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] for a read-only segment.
    ///
    /// # Panics
    ///
    /// If `index >= participant_capacity()`.
    #[inline]
    pub fn intent_word(&self, index: u32) -> Result<&AtomicU64> {
        self.writable()?;
        Ok(self.rec_word(index, REC_INTENT))
    }

    /// Auxiliary word `i` (`< RECORD_AUX_WORDS`) of record `index`, free for upper layers.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] for a read-only segment.
    ///
    /// # Panics
    ///
    /// If `index >= participant_capacity()` or `i >= RECORD_AUX_WORDS`.
    pub fn aux_word(&self, index: u32, i: usize) -> Result<&AtomicU64> {
        assert!(i < RECORD_AUX_WORDS);
        self.writable()?;
        Ok(self.rec_word(index, REC_AUX + 8 * i))
    }
}

/// A participant record as read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Participant {
    /// The record's index in the table.
    pub index: u32,
    owner: u64,
    process: ProcessId,
    /// The role it registered with.
    pub role: Role,
}

impl Participant {
    /// The process id that holds the record.
    pub fn pid(&self) -> u32 {
        self.process.pid
    }
    /// The process as liveness checks see it.
    pub(crate) fn process_id(&self) -> ProcessId {
        self.process
    }
    /// Whether that process still runs (same pid and start time, not a zombie).
    pub fn is_alive(&self) -> bool {
        self.process.is_alive()
    }
    /// The record's generation: it grows each time the record is claimed, so (index,
    /// generation) names one registration for as long as the 16-bit counter does not wrap.
    pub fn generation(&self) -> u16 {
        (self.owner >> 48) as u16
    }
}

/// A claimed participant record; hand it back with [`Layout::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    index: u32,
    owner: u64,
}

impl Registration {
    /// The record's index.
    pub fn index(&self) -> u32 {
        self.index
    }
    /// The record's generation at this claim; see [`Participant::generation`].
    pub fn generation(&self) -> u16 {
        (self.owner >> 48) as u16
    }
}
