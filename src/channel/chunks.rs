//! Receiving in chunks: `try_recv_many` / `recv_chunk` for each flavour, the receiving half
//! of `Producer::reserve_many`. The single-consumer flavours (SPSC, MPSC) own the messages at
//! their head without a claim; MPMC consumers claim a run of them with one CAS of the head
//! (`ring::mpmc::claim_recv_many`), their record's chunk end telling an adopter what a dead
//! one held (`peers.rs`). The guards themselves ([`ReadChunk`]) live in `zero_copy.rs`.

use super::consumer::Consumer;
use super::core::Core;
use super::zero_copy::ReadChunk;
use super::{Flavour, Mpmc, Mpsc, RxOf, Spsc};
use crate::error::{Error, Result};
use crate::loom::Ordering;
use crate::ring::{self, Content};

impl Consumer<Spsc> {
    /// Reads up to `max` queued messages at once (rtrb's read chunk); they are freed together
    /// when the chunk is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if a length in the chunk is out of range.
    pub fn try_recv_many(&mut self, max: usize) -> Result<ReadChunk<'_>> {
        // A message held by `recv_into` is the head of the ring: the chunk starts with it.
        self.core.held = None;
        let (pos, n) = self.rx.peek(&self.core.ring, max as u64)?;
        let mut lens = Vec::with_capacity(n as usize);
        for i in 0..n {
            let p = pos.wrapping_add(i);
            let raw = self
                .core
                .ring
                .len(self.core.ring.index(p))
                .load(Ordering::Relaxed);
            lens.push(ring::checked_len(raw, self.core.ring.slot_size, p)?);
        }
        Ok(ReadChunk::new(self, pos, lens))
    }

    /// Waits asynchronously until a message is queued, then reads up to `max` queued
    /// messages at once, as [`try_recv_many`](Self::try_recv_many): the receiving half of
    /// [`Producer::reserve_many`](crate::spsc::Producer::reserve_many). Copy each out with
    /// [`ReadChunk::read`] (no allocation); dropping the chunk frees them all with one store
    /// and at most one wake-up. A stream of small records costs far less per message this way
    /// than one [`Message`](crate::Message) each (`cargo bench --bench per_message`).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the producer left and everything was received,
    /// [`Error::PeerGone`] if it died, [`Error::Corrupt`]; `max` of 0 is an empty chunk.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is taken until the poll that returns the chunk.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Options, spsc};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmchan::Result<()> {
    /// # let name = format!("/shmchan-doc-recv-chunk-{}", std::process::id());
    /// let mut tx = spsc::Producer::create(&name, Options::new().slot_size(16))?;
    /// let mut rx = spsc::Consumer::open(&name, Options::new().slot_size(16))?;
    /// let mut chunk = tx.reserve_many(3).await?;
    /// for (i, m) in [&b"one"[..], b"two", b"three"].into_iter().enumerate() {
    ///     chunk.write(i, m)?;
    /// }
    /// chunk.commit(3);
    /// let got = rx.recv_chunk(64).await?;
    /// let mut buf = [0u8; 16];
    /// let n = got.read(2, &mut buf)?;
    /// assert_eq!((got.len(), &buf[..n]), (3, &b"three"[..]));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_chunk(&mut self, max: usize) -> Result<ReadChunk<'_>> {
        if max > 0 {
            self.wait_head().await?;
        }
        self.try_recv_many(max)
    }
}

impl Consumer<Mpsc> {
    /// Reads up to `max` queued messages at once, as the SPSC
    /// [`try_recv_many`](crate::spsc::Consumer::try_recv_many): the MPSC consumer is alone on
    /// its side, so the messages at the head are its own without a claim. They are freed
    /// together when the chunk is dropped (a sequence store each and one store of the head).
    /// The chunk ends before a slot that holds no message (a dead producer's, or a
    /// discarded one), which the next receive skips.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if a length in the chunk is out of range.
    pub fn try_recv_many(&mut self, max: usize) -> Result<ReadChunk<'_, Mpsc>> {
        // A message held by `recv_into` is the head of the ring: the chunk starts with it.
        self.core.held = None;
        loop {
            let (pos, n) = self.rx.peek_many(&self.core.ring, max as u64)?;
            let mut lens = Vec::with_capacity(n as usize);
            for i in 0..n {
                let p = pos.wrapping_add(i);
                match ring::content(&self.core.ring, p)? {
                    Content::Message(len) => lens.push(len),
                    _ => break,
                }
            }
            if lens.is_empty() && n > 0 {
                // No message at the head: skip it (as `take` does) and look again.
                if ring::content(&self.core.ring, pos)? == Content::Abandoned {
                    self.core.abandoned += 1;
                }
                self.rx.release_many(&self.core.ring, pos, 1);
                self.core.wake_peers();
                continue;
            }
            if !lens.is_empty() {
                self.core.note_progress();
            }
            return Ok(ReadChunk::new(self, pos, lens));
        }
    }

    /// Waits asynchronously until a message is queued, then reads up to `max` queued
    /// messages at once, as [`try_recv_many`](Self::try_recv_many): the receiving half of
    /// [`Producer::reserve_many`](crate::mpsc::Producer::reserve_many), and what a collector
    /// of many producers' small records costs least per message with (`cargo bench --bench
    /// worker_pool`).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once every producer left and everything was received,
    /// [`Error::PeerGone`] if they died, [`Error::Corrupt`]; `max` of 0 is an empty chunk.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is taken until the poll that returns the chunk.
    pub async fn recv_chunk(&mut self, max: usize) -> Result<ReadChunk<'_, Mpsc>> {
        if max > 0 {
            self.wait_head().await?;
        }
        self.try_recv_many(max)
    }
}

impl Consumer<Mpmc> {
    /// Claims up to `max` consecutive queued messages at once, with one CAS of the shared
    /// head (a chunk; the consumers of an MPMC ring claim the messages they read): copy each
    /// out with [`ReadChunk::read`]; dropping the chunk frees them all. The chunk ends before
    /// a slot that holds no message. A consumer killed while it holds a chunk causes what a
    /// single claim does, for each of its messages: a live consumer adopts them, one at a
    /// time, so they are delivered again (see [Close and death](crate::channel#close-and-death)).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if a length in the chunk is out of range.
    pub fn try_recv_many(&mut self, max: usize) -> Result<ReadChunk<'_, Mpmc>> {
        match Self::chunk_take(&mut self.core, &mut self.rx, max)? {
            Some((pos, lens)) => Ok(ReadChunk::new(self, pos, lens)),
            None => Ok(ReadChunk::new(self, 0, Vec::new())),
        }
    }

    /// Waits asynchronously until a message is queued, then claims up to `max` at once, as
    /// [`try_recv_many`](Self::try_recv_many): a worker's batch of jobs for the price of one
    /// claim (`cargo bench --bench worker_pool`).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once every producer left and everything was received,
    /// [`Error::PeerGone`] if they died, [`Error::Corrupt`]; `max` of 0 is an empty chunk.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is claimed until the poll that returns the chunk.
    pub async fn recv_chunk(&mut self, max: usize) -> Result<ReadChunk<'_, Mpmc>> {
        if max == 0 {
            return Ok(ReadChunk::new(self, 0, Vec::new()));
        }
        let mut started = None;
        let rx = &mut self.rx;
        let core = &mut self.core;
        let r = std::future::poll_fn(|cx| {
            crate::wait::reactor::poll_op(core, cx, &mut started, |core| {
                Self::chunk_take(core, rx, max)
            })
        })
        .await;
        crate::wait::reactor::retract(&mut self.core);
        let (pos, lens) = r?;
        Ok(ReadChunk::new(self, pos, lens))
    }

    /// The attempt of a chunk receive: a message `recv_into` left held, else up to `max`
    /// consecutive messages claimed at once, else what `take` does when nothing is ready
    /// (repair, adoption, close). A slot without a message at the head is freed and skipped.
    fn chunk_take(
        core: &mut Core,
        rx: &mut RxOf<Mpmc>,
        max: usize,
    ) -> Result<Option<(u64, Vec<usize>)>> {
        if let Some((pos, len)) = core.held.take() {
            return Ok(Some((pos, vec![len])));
        }
        loop {
            let claimed = {
                let ring = &core.ring;
                ring::mpmc::claim_recv_many(
                    ring,
                    core.intent(),
                    core.chunk_end_word(),
                    max as u64,
                    |p| matches!(ring::content(ring, p), Ok(Content::Message(_))),
                )?
            };
            let Some((pos, k)) = claimed else {
                return Ok(Self::nothing_ready(core, rx)?.map(|(p, len)| (p, vec![len])));
            };
            let ring = &core.ring;
            let first = match ring::content(ring, pos) {
                Ok(Content::Message(len)) => Ok(len),
                Ok(Content::Abandoned) => {
                    core.abandoned += 1;
                    Err(None)
                }
                Ok(Content::Discarded) => Err(None),
                Err(e) => Err(Some(e)),
            };
            let (start, mut lens) = match first {
                Ok(len) => (pos, vec![len]),
                Err(e) => {
                    // Free the first slot; the rest of the chunk (messages all) stays ours.
                    if k == 1 {
                        ring::mpmc::release_recv_many(
                            ring,
                            pos,
                            1,
                            core.intent(),
                            core.chunk_end_word(),
                        );
                    } else {
                        // Release (the free): as in `release_recv`. Our intent then names
                        // the chunk's new first position (Release: read only once we are
                        // dead, like the rest of the record).
                        ring.seq(ring.index(pos))
                            .store(pos.wrapping_add(ring.cap), Ordering::Release);
                        core.intent().store(pos.wrapping_add(2), Ordering::Release);
                    }
                    core.wake_peers();
                    match e {
                        Some(e) if k == 1 => return Err(e),
                        Some(e) => {
                            let rest = pos.wrapping_add(1);
                            ring::mpmc::release_recv_many(
                                ring,
                                rest,
                                k - 1,
                                core.intent(),
                                core.chunk_end_word(),
                            );
                            core.wake_peers();
                            return Err(e);
                        }
                        None if k == 1 => continue,
                        None => (pos.wrapping_add(1), Vec::new()),
                    }
                }
            };
            let from = if lens.is_empty() { 0 } else { 1 };
            for i in from..(k - start.wrapping_sub(pos)) {
                let p = start.wrapping_add(i);
                match ring::content(ring, p) {
                    Ok(Content::Message(len)) => lens.push(len),
                    // Checked before the claim: only a hostile peer changes a published slot.
                    other => {
                        let n = k - start.wrapping_sub(pos);
                        ring::mpmc::release_recv_many(
                            ring,
                            start,
                            n,
                            core.intent(),
                            core.chunk_end_word(),
                        );
                        core.wake_peers();
                        return Err(match other {
                            Err(e) => e,
                            Ok(c) => Error::Corrupt(format!(
                                "slot of position {p} in '{}' changed while claimed ({c:?})",
                                core.name
                            )),
                        });
                    }
                }
            }
            core.note_progress();
            return Ok(Some((start, lens)));
        }
    }
}

impl<F: Flavour> Consumer<F> {
    /// Waits asynchronously until a message is ready at the head, taking nothing: on the
    /// single-consumer flavours `take` claims nothing in shared memory, so the message it
    /// finds stays the head until released and the chunk that follows starts with it.
    async fn wait_head(&mut self) -> Result<()> {
        let mut started = None;
        let rx = &mut self.rx;
        let core = &mut self.core;
        let r = std::future::poll_fn(|cx| {
            crate::wait::reactor::poll_op(core, cx, &mut started, |core| Self::take(core, rx))
        })
        .await;
        crate::wait::reactor::retract(&mut self.core);
        r.map(|_| ())
    }
}
