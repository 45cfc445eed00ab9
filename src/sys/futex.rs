//! `futex(2)` on a word in shared memory. Never `FUTEX_PRIVATE_FLAG`: a private futex is keyed by
//! the address space, so a waker in another process would never find the waiter.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;

/// `futex(uaddr, FUTEX_WAIT, expected, timeout)`: sleeps while `*word == expected`, at most
/// `timeout`. Returns on a wake, a changed word, a signal or the timeout; callers re-check their
/// condition in every case.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    });
    // EAGAIN (word changed), EINTR and ETIMEDOUT all mean "go and look again".
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// `futex(uaddr, FUTEX_WAKE, n)`: wakes up to `n` waiters on `word`, in any process (`n` of
/// `i32::MAX` or more: all of them).
///
/// The kernel reads the count as an `int`: `u32::MAX` passed as is would be -1, which wakes
/// one waiter only (its loop stops once it woke "at least -1"), and the other sleepers of a
/// side whose announcements the waker took slept until their liveness check
/// (`tests/futex_wake.rs`).
pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
    futex::wake(word, futex::Flags::empty(), n.min(i32::MAX as u32)).unwrap_or(0)
}
