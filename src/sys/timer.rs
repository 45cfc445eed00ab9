//! One-shot timers as descriptors: `timerfd_create(CLOCK_MONOTONIC)`, for reactors to watch.
//!
//! Used by the listener handshake (a step bound that works in any reactor), and as a fallback:
//! an async task that could not watch a peer's pidfd (out of descriptors, or a kernel without
//! pidfds) re-checks its peers' liveness when this fires, so that a death is still seen within
//! the liveness interval.

use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::io::Errno;
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};

/// A one-shot monotonic timer.
#[derive(Debug)]
pub(crate) struct Timer {
    fd: OwnedFd,
}

impl Timer {
    /// `timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)`, disarmed.
    pub(crate) fn new() -> Result<Timer, Errno> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Timer { fd })
    }

    /// `timerfd_settime`: fires once, `after` from now (at least 1 ns: zero would disarm).
    pub(crate) fn arm(&self, after: Duration) -> Result<(), Errno> {
        let after = after.max(Duration::from_nanos(1));
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: after.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: after.subsec_nanos() as _,
            },
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &spec).map(|_| ())
    }

    /// Consumes an expiry (`read` of the 8-byte count), so the descriptor is quiet again.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
    }

    /// A duplicate of the descriptor, to register in a reactor.
    pub(crate) fn try_clone_fd(&self) -> Result<OwnedFd, Errno> {
        rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_after_the_delay() {
        let t = Timer::new().unwrap();
        t.arm(Duration::from_millis(5)).unwrap();
        let mut fds = [rustix::event::PollFd::new(
            &t.fd,
            rustix::event::PollFlags::IN,
        )];
        let ts = Timespec {
            tv_sec: 2,
            tv_nsec: 0,
        };
        assert_eq!(rustix::event::poll(&mut fds, Some(&ts)).unwrap(), 1);
        t.drain();
        let quick = Timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        assert_eq!(rustix::event::poll(&mut fds, Some(&quick)).unwrap(), 0);
    }
}
