//! Doorbells: how a process wakes a task parked in another process's reactor.
//!
//! A waiter binds a Unix datagram socket in the Linux *abstract* namespace under a name derived
//! from a 64-bit token (`shmchan/<pid>-<n>` as `pid << 32 | n`), registers it in its runtime's
//! reactor (epoll), and publishes the token in its participant record. A ringer that finds the
//! waiter parked sends a 1-byte datagram to that name (`sendto(MSG_DONTWAIT)`): one syscall.
//!
//! Why this mechanism (against an eventfd passed with `SCM_RIGHTS`, or a FIFO):
//! - it works between unrelated processes that share only the channel name: the token in
//!   shared memory is the whole address, no descriptor has to travel, and nothing depends on
//!   the channel's creator being alive;
//! - abstract names vanish with the socket, so a waiter killed by SIGKILL leaves nothing in
//!   the filesystem (a FIFO would), and a ring to a vanished name fails harmlessly
//!   (`ECONNREFUSED`);
//! - repeated rings coalesce: the waiter drains every queued byte at once, and a full socket
//!   buffer (`EAGAIN`) already means "rung";
//! - an eventfd would be cheaper to ring (no socket buffer), but reaching it from another
//!   process needs either a side channel for `SCM_RIGHTS` or `pidfd_getfd`, which needs ptrace
//!   rights that Yama forbids between unrelated processes on common distributions.
//!
//! Measured (`cargo bench --bench doorbell`: cross-process ping-pong, each side sleeping
//! until the other rings it; 7 alternating rounds of 2,000 round trips; 2-vCPU VM shared with
//! other builds, so absolute figures move by 2-10x between runs and only same-run ratios
//! mean much):
//!
//! | run | socket, blocking `recv` | eventfd, blocking `read` | socket, tokio `AsyncFd` | eventfd, tokio `AsyncFd` | ratio socket/eventfd, blocking / async |
//! |---|---|---|---|---|---|
//! | 02:08, earlier bench (blocking only) | 44 µs | 17 µs | - | - | 1.9 / - |
//! | 02:34, load ~1 | 6.4 µs | 3.4 µs | 10.1 µs | 6.7 µs | 1.68 / 1.44 |
//! | 02:41, load ~5.5 | 4.5 µs | 3.0 µs | 8.0 µs | 4.8 µs | 1.50 / 1.63 |
//!
//! (2026-11-23, rustc 1.95, medians of the rounds; the ratios are medians of per-round
//! ratios.) Figures are bimodal: single rounds of every mechanism jump to 50-90 µs, presumably
//! when the woken side's vCPU was idle and had to be woken itself (we did not isolate it;
//! the earlier run may have been mostly in that mode). Across runs the socket
//! costs 1.4-1.9x the eventfd, and awaiting through tokio's reactor 1.7-2.3x a blocking wait.
//! `strace -c -f` per wake, async: the socket takes one `sendto`, ~1.7 `epoll_wait` and two
//! `recvfrom` (the datagram, then the `EAGAIN` that proves the queue drained); the eventfd
//! one `write`, ~2 `epoll_wait` and one `read` (which takes the whole counter). So the
//! socket pays one extra syscall per wake plus the socket path (buffer allocation, queueing).
//!
//! We keep sockets because the eventfd's advantage needs the descriptor in the ringer's
//! hands, which unrelated processes cannot arrange without a side channel; a later step could
//! hand an eventfd over once (`SCM_RIGHTS` over this very socket) and ring it from then on.
//! Either cost is paid per park, never per message, and is small beside the 75-90 µs of
//! waking an idle vCPU.
//!
//! Rings only happen when a peer has announced that it parks (see [`crate::wait`]), so their
//! cost is paid per sleep, never per message on a busy stream.
//!
//! Abstract names are per network namespace: all participants must share one (as they share a
//! pid namespace for the liveness checks).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::io::Errno;
use rustix::net::{
    self, AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

/// The abstract socket name of a token.
///
/// Formatted on the stack: ringing allocates nothing.
pub(crate) fn address(token: u64) -> Result<SocketAddrUnix, Errno> {
    use std::io::Write;
    // "shmchan/" + two u32 in decimal (at most 10 digits each) + "-": 29 bytes.
    let mut buf = [0u8; 32];
    let mut w = &mut buf[..];
    write!(w, "shmchan/{}-{}", token >> 32, token & 0xffff_ffff).map_err(|_| Errno::INVAL)?;
    let len = 32 - w.len();
    SocketAddrUnix::new_abstract_name(&buf[..len])
}

pub(crate) fn dgram_socket() -> Result<OwnedFd, Errno> {
    net::socket_with(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
}

/// The receiving end: a bound, non-blocking datagram socket.
#[derive(Debug)]
pub(crate) struct Doorbell {
    fd: OwnedFd,
    token: u64,
}

impl Doorbell {
    /// `socket(AF_UNIX, SOCK_DGRAM|SOCK_NONBLOCK)` + `bind` to a fresh abstract name.
    pub(crate) fn bind() -> Result<Doorbell, Errno> {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let pid = u64::from(rustix::process::getpid().as_raw_nonzero().get() as u32);
        let fd = dgram_socket()?;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let token = pid << 32 | u64::from(n);
            match net::bind(&fd, &address(token)?) {
                Ok(()) => return Ok(Doorbell { fd, token }),
                // A name left bound by a process that had our pid before and still runs
                // (recycled pid in another namespace): take the next number.
                Err(Errno::ADDRINUSE) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The token to publish; never 0.
    pub(crate) fn token(&self) -> u64 {
        self.token
    }

    /// Takes every queued ring (`recv(MSG_DONTWAIT)` until `EAGAIN`); returns how many.
    pub(crate) fn drain(&self) -> usize {
        let mut n = 0;
        let mut buf = [0u8; 16];
        while net::recv(&self.fd, &mut buf[..], RecvFlags::DONTWAIT).is_ok() {
            n += 1;
        }
        n
    }

    /// A duplicate of the descriptor, to register in a reactor.
    pub(crate) fn try_clone_fd(&self) -> Result<OwnedFd, Errno> {
        rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The ringing end: an unbound datagram socket.
#[derive(Debug)]
pub(crate) struct Ringer {
    fd: OwnedFd,
}

impl Ringer {
    /// `socket(AF_UNIX, SOCK_DGRAM)`. Fails when the process is out of descriptors (`EMFILE`).
    pub(crate) fn new() -> Result<Ringer, Errno> {
        #[cfg(test)]
        if faults::RINGER.with(|f| f.get()) {
            return Err(Errno::MFILE);
        }
        Ok(Ringer {
            fd: dgram_socket()?,
        })
    }

    /// `sendto(token's name, 1 byte, MSG_DONTWAIT)`. Errors are ignored: `EAGAIN` means the
    /// doorbell is already full of rings, `ECONNREFUSED`/`ENOENT` that its owner is gone.
    /// Token 0 (never a doorbell's: nothing published yet) makes no syscall.
    pub(crate) fn ring(&self, token: u64) {
        if token == 0 {
            return;
        }
        if let Ok(addr) = address(token) {
            let _ = net::sendto(&self.fd, &[1], SendFlags::DONTWAIT, &addr);
        }
    }
}

/// Fault injection for unit tests: failures of this thread's system calls, on request.
#[cfg(test)]
pub(crate) mod faults {
    use std::cell::Cell;
    thread_local! {
        /// `Ringer::new` fails with `EMFILE`.
        pub(crate) static RINGER: Cell<bool> = const { Cell::new(false) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_coalesce_and_a_gone_doorbell_is_harmless() {
        let bell = Doorbell::bind().unwrap();
        let ringer = Ringer::new().unwrap();
        assert_eq!(bell.drain(), 0);
        ringer.ring(bell.token());
        ringer.ring(bell.token());
        assert_eq!(bell.drain(), 2);
        assert_eq!(bell.drain(), 0);
        let token = bell.token();
        drop(bell);
        ringer.ring(token); // nobody there: no error, no panic
        ringer.ring(0);
    }

    #[test]
    fn addresses_are_formatted_without_allocating_and_fit() {
        let name = |t| address(t).unwrap().abstract_name().unwrap().to_vec();
        assert_eq!(name(7 << 32 | 9), b"shmchan/7-9");
        assert_eq!(name(u64::MAX), b"shmchan/4294967295-4294967295");
    }
}
