//! Failures of the wake-up machinery itself, injected per thread (`sys::*::faults`): a waker
//! that cannot make its ringer socket, and a parked task that cannot open a peer's pidfd.
//! Neither may leave a waiter asleep for good.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use crate::channel::Options;
use crate::error::Error;
use crate::{WaitStrategy, mpsc, spsc};

/// A unique segment name, unlinked when the guard drops (also when a test fails).
struct Name(String);

impl Name {
    fn new(tag: &str) -> Name {
        Name(format!("/shmchan-t-fault-{tag}-{}", std::process::id()))
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = crate::Segment::unlink(&self.0);
    }
}

/// Waits (bounded) until `cond` holds; a failure detector, not a synchronisation delay.
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A producer whose ringer socket cannot be made leaves the consumer's doorbell announcement
/// standing, and rings it on a later publish once it can. (The failure used to be cached for
/// good while the announcement was taken: the async consumer slept forever.)
#[test]
fn a_ringer_that_cannot_be_made_leaves_the_waiter_announced() {
    let n = Name::new("ringer");
    let opts = Options::new()
        .wait_strategy(WaitStrategy::park_only())
        .liveness_interval(Duration::from_secs(60));
    let mut tx = spsc::Producer::create(&n, opts.clone()).unwrap();
    let mut rx = spsc::Consumer::open(&n, opts).unwrap();
    let (got_tx, got) = std_mpsc::channel();
    let (tid_tx, tid) = std_mpsc::channel();
    let consumer = std::thread::spawn(move || {
        tid_tx
            .send(rustix::thread::gettid().as_raw_nonzero().get())
            .unwrap();
        rt().block_on(async {
            for _ in 0..2 {
                let m = rx.recv().await.unwrap();
                got_tx.send(m.into_vec()).unwrap();
            }
        });
    });
    let parked = |tx: &spsc::Producer| {
        tx.core
            .sleepers(super::core::Side::Consumer)
            .count
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let tid = tid.recv().unwrap();
    // Announced is not yet asleep: between its announcement and its sleep the consumer
    // re-checks the ring (after a membarrier that may take microseconds), and would find the
    // message itself and retract. Asleep (state S, in the runtime's epoll_wait) it can only
    // be rung: its liveness check is a minute away.
    until("the consumer to park", || {
        parked(&tx) == 1 && crate::sys::process::thread_state(tid) == Some(b'S')
    });
    crate::sys::doorbell::faults::RINGER.with(|f| f.set(true));
    tx.try_send(b"1").unwrap();
    // Where membarrier fails, parks last 1 ms at most: the consumer may then wake by itself
    // and take the message (and cannot sleep for good either way).
    if !crate::sys::membarrier::parks_are_bounded() {
        assert_eq!(
            parked(&tx),
            1,
            "an announcement the waker cannot ring must stay standing"
        );
    }
    crate::sys::doorbell::faults::RINGER.with(|f| f.set(false));
    tx.try_send(b"2").unwrap();
    let t = Duration::from_secs(5);
    assert_eq!(
        got.recv_timeout(t).expect("woken by the second publish"),
        b"1"
    );
    assert_eq!(got.recv_timeout(t).unwrap(), b"2");
    consumer.join().unwrap();
    drop(tx);
}

/// A parked async consumer that cannot open its producer's pidfd still sees that producer die
/// within about the liveness interval, through the fallback timer. (It used to take the failed
/// `pidfd_open` for "already gone" and park with no death watch at all: a hang.)
#[test]
fn a_pidfd_that_cannot_be_opened_falls_back_to_a_timed_recheck() {
    use crate::layout::{HEADER_LEN, RECORD_LEN};
    use std::sync::atomic::Ordering;
    let n = Name::new("pidfd");
    let opts = Options::new()
        .wait_strategy(WaitStrategy::park_only())
        .liveness_interval(Duration::from_millis(20));
    let mut rx = mpsc::Consumer::create(&n, opts).unwrap();
    // A producer process attached: a live record (index 1, role producer, start time unknown),
    // its clean-close count and the "producer seen" flag, as its attach writes them.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let owner = u64::from(child.id()) | 1 << 32 | 2 << 40 | 1 << 48;
    let seg = rx.core.layout.segment();
    let doff = rx.core.layout.data_offset();
    seg.atomic_u64(HEADER_LEN + RECORD_LEN)
        .unwrap()
        .store(owner, Ordering::SeqCst);
    rx.core
        .ring
        .word32(crate::ring::OFF_PRODUCERS)
        .fetch_add(1, Ordering::SeqCst);
    rx.core
        .ring
        .word32(crate::ring::OFF_FLAGS)
        .fetch_or(crate::ring::FLAG_PRODUCER_SEEN, Ordering::SeqCst);
    let (done_tx, done) = std_mpsc::channel();
    let consumer = std::thread::spawn(move || {
        crate::sys::process::faults::PIDFD.with(|f| f.set(true));
        let r = rt().block_on(async { rx.recv().await });
        done_tx.send(r.map(|m| m.into_vec())).unwrap();
    });
    // Once it parked (no message will come), the producer dies.
    let watcher = crate::Segment::open(&n, crate::Mode::ReadWrite).unwrap();
    let parked = watcher
        .atomic_u32(doff + crate::ring::OFF_CONS_SLEEPERS)
        .unwrap();
    until("the consumer to park", || {
        parked.load(Ordering::SeqCst) == 1
    });
    child.kill().unwrap();
    child.wait().unwrap();
    match done.recv_timeout(Duration::from_secs(5)) {
        Ok(Err(Error::PeerGone(_))) => {}
        Ok(other) => panic!("expected PeerGone, got {other:?}"),
        Err(_) => panic!("the parked consumer never noticed its producer's death"),
    }
    consumer.join().unwrap();
}
