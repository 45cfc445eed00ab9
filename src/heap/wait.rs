//! Async allocation: [`Heap::alloc_async`] waits in the task's reactor until a free in any
//! process makes room, woken by a doorbell like the rings (`crate::wait::protocol`).
//!
//! # Protocol
//!
//! The heap's control block has a futex word and a count of waiters (`OFF_FREE_SEQ`,
//! `OFF_WAITERS`); blocking waiters (`alloc_timeout`) only count themselves and sleep on the
//! futex. Async waiters of one [`Heap`] handle (one participant record) share one doorbell:
//! the first one to park binds it, publishes its token in the record's `AUX_TOKEN` word and
//! announces the record (`AUX_PARKED = PARK_DOORBELL`, count + 1, a SeqCst fence: the
//! waiter's half of `protocol.rs`), then re-checks the heap. A free that sees the count
//! non-zero fences, takes every doorbell announcement and rings it (the waker's half), and
//! wakes the futex. Either the re-check sees the free or the freer sees the announcement
//! (store-buffering forbidden by the two fences), so no wake-up is lost.
//!
//! In the process, the waiting futures of a handle keep their wakers in a list beside the
//! doorbell. The reactor wakes only the last task that polled the doorbell; whoever sees it
//! ring drains it and wakes every task in the list, and a future that leaves the list (done
//! or dropped) wakes the rest, so one of them polls the doorbell again. A timer re-runs the
//! dead-owner sweep (inside [`Heap::alloc`]) every 10 ms while anyone waits, so blocks of a
//! process that died are found without a free.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use super::api::{Heap, RECLAIM_INTERVAL, ShmBuf};
use crate::error::{Error, Result};
use crate::runtime::Registered;
use crate::sys::doorbell::Doorbell;
use crate::sys::timer::Timer;
use crate::wait::protocol::{AUX_PARKED, AUX_TOKEN, PARK_DOORBELL};

/// The async waiters of one heap handle.
#[derive(Debug, Default)]
pub(super) struct AsyncWaiters {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    machinery: Option<Machinery>,
    wakers: Vec<(u64, Waker)>,
    next_id: u64,
}

#[derive(Debug)]
struct Machinery {
    bell: Doorbell,
    reg: Registered,
    timer: Timer,
    timer_reg: Registered,
    timer_armed: bool,
}

impl Machinery {
    fn new() -> Result<Machinery> {
        let io = |what: &'static str| move |e| Error::from_errno(e, || what.into());
        let bell = Doorbell::bind().map_err(io("binding a doorbell socket for the heap"))?;
        let reg = Registered::new(
            bell.try_clone_fd()
                .map_err(io("duplicating the doorbell"))?,
        )?;
        let timer = Timer::new().map_err(io("making the heap's reclaim timer"))?;
        let timer_reg =
            Registered::new(timer.try_clone_fd().map_err(io("duplicating the timer"))?)?;
        Ok(Machinery {
            bell,
            reg,
            timer,
            timer_reg,
            timer_armed: false,
        })
    }
}

/// The future of [`Heap::alloc_async`].
///
/// Cancel safe: dropping it before it completes allocates nothing and leaves the heap as it
/// was (its announcement is withdrawn when it was the handle's last waiter).
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct AllocFuture {
    heap: Heap,
    len: usize,
    /// Our place in the handle's waker list, once we waited.
    id: Option<u64>,
}

impl Heap {
    /// Allocates a buffer of `len` bytes, waiting asynchronously (tokio or async-io) while the
    /// heap has no room: a free in any process attached to the heap wakes the task through a
    /// doorbell, and blocks of processes that died are reclaimed meanwhile (every 10 ms).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `len` exceeds the heap's capacity (it could never fit),
    /// [`Error::Corrupt`] for damaged heap words, [`Error::Io`] if no async runtime can be
    /// used.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped future has allocated nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::Heap;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmchan::Result<()> {
    /// let heap = Heap::options().create_memfd(1 << 20)?;
    /// let first = heap.alloc(1 << 20)?; // the whole heap
    /// let waiter = heap.alloc_async(4096);
    /// drop(first); // frees room: the waiter completes
    /// let buf = waiter.await?;
    /// assert_eq!(buf.len(), 4096);
    /// # Ok(())
    /// # }
    /// ```
    pub fn alloc_async(&self, len: usize) -> AllocFuture {
        AllocFuture {
            heap: self.clone(),
            len,
            id: None,
        }
    }
}

impl AllocFuture {
    /// Leaves the waker list; the last one out withdraws the announcement, others are woken
    /// so that one of them polls the doorbell again.
    fn leave(&mut self) {
        let Some(id) = self.id.take() else { return };
        let inner = &self.heap.inner;
        let mut st = inner
            .waiting
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        st.wakers.retain(|(i, _)| *i != id);
        let others: Vec<Waker> = st.wakers.iter().map(|(_, w)| w.clone()).collect();
        if others.is_empty() {
            if let Ok(parked) = inner.layout.aux_word(inner.reg.index(), AUX_PARKED) {
                inner.sleepers().retract(parked);
            }
        }
        drop(st);
        others.into_iter().for_each(Waker::wake);
    }
}

impl Future for AllocFuture {
    type Output = Result<ShmBuf>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<ShmBuf>> {
        let this = self.get_mut();
        loop {
            match this.heap.alloc(this.len) {
                Err(Error::OutOfMemory(_)) => {}
                done => {
                    this.leave();
                    return Poll::Ready(done);
                }
            }
            let heap = this.heap.clone();
            let inner = &heap.inner;
            let mut st = inner
                .waiting
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if st.machinery.is_none() {
                let made = Machinery::new().and_then(|m| {
                    let token = inner.layout.aux_word(inner.reg.index(), AUX_TOKEN)?;
                    // Release: pairs with the waker's Acquire load of the token
                    // (protocol.rs `ring_parked`), made before our first announcement.
                    token.store(m.bell.token(), Ordering::Release);
                    Ok(m)
                });
                match made {
                    Ok(m) => st.machinery = Some(m),
                    Err(e) => {
                        drop(st);
                        this.leave();
                        return Poll::Ready(Err(e));
                    }
                }
            }
            match this.id {
                Some(id) => {
                    if let Some((_, w)) = st.wakers.iter_mut().find(|(i, _)| *i == id) {
                        w.clone_from(cx.waker());
                    }
                }
                None => {
                    let id = st.next_id;
                    st.next_id += 1;
                    st.wakers.push((id, cx.waker().clone()));
                    this.id = Some(id);
                }
            }
            let parked = match inner.layout.aux_word(inner.reg.index(), AUX_PARKED) {
                Ok(p) => p,
                Err(e) => {
                    drop(st);
                    this.leave();
                    return Poll::Ready(Err(e));
                }
            };
            // Relaxed: only this handle's waiters (serialised by the lock) set the word; a
            // waker may clear it at any time, which we then see as 0 and announce again.
            if parked.load(Ordering::Relaxed) == 0 {
                inner.sleepers().announce(parked, PARK_DOORBELL);
            }
            // Re-check after announcing (protocol step 3).
            if let Ok(buf) = heap.try_alloc_quiet(this.len) {
                drop(st);
                this.leave();
                return Poll::Ready(Ok(buf));
            }
            let m = st.machinery.as_mut().expect("made above");
            match m.reg.poll_readable(cx) {
                Poll::Ready(Ok(())) => {
                    m.bell.drain();
                    let others: Vec<Waker> = st
                        .wakers
                        .iter()
                        .filter(|(i, _)| Some(*i) != this.id)
                        .map(|(_, w)| w.clone())
                        .collect();
                    drop(st);
                    others.into_iter().for_each(Waker::wake);
                    continue;
                }
                Poll::Ready(Err(e)) => {
                    drop(st);
                    this.leave();
                    return Poll::Ready(Err(Error::Io(e)));
                }
                Poll::Pending => {}
            }
            if !m.timer_armed {
                if let Err(e) = m
                    .timer
                    .arm(crate::sys::membarrier::bound_park(RECLAIM_INTERVAL))
                {
                    drop(st);
                    this.leave();
                    return Poll::Ready(Err(Error::from_errno(e, || {
                        "arming the heap's reclaim timer".into()
                    })));
                }
                m.timer_armed = true;
            }
            match m.timer_reg.poll_readable(cx) {
                Poll::Ready(_) => {
                    // The sweep interval passed: look again (alloc sweeps dead owners).
                    m.timer.drain();
                    m.timer_armed = false;
                    continue;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for AllocFuture {
    fn drop(&mut self) {
        self.leave();
    }
}
