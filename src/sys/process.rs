//! Process identity and liveness: a pid plus the process's start time, so that a recycled pid is
//! not mistaken for the process that registered.

use std::sync::atomic::{AtomicU64, Ordering};

/// A process as other processes can check it: pid and start time (clock ticks since boot, field
/// 22 of `/proc/<pid>/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessId {
    pub(crate) pid: u32,
    pub(crate) start_time: u64,
}

/// What `/proc` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Running (or sleeping, stopped, ...) with the same start time.
    Alive,
    /// Gone, a zombie, or the pid now belongs to another process.
    Dead,
}

/// Cache of this process's identity: `pid << 32 | valid` would not hold the start time, so two
/// words; the pid word is checked to survive `fork` (a child re-reads its own).
static CACHED_PID: AtomicU64 = AtomicU64::new(0);
static CACHED_START: AtomicU64 = AtomicU64::new(0);

impl ProcessId {
    /// This process: `getpid()` and its start time from `/proc/self/stat`.
    pub(crate) fn current() -> ProcessId {
        let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
        // Relaxed: the cache is a pure optimisation; a stale or torn pair is detected by the pid
        // comparison below and simply recomputed.
        if CACHED_PID.load(Ordering::Relaxed) == u64::from(pid) {
            let start = CACHED_START.load(Ordering::Relaxed);
            if start != 0 {
                return ProcessId {
                    pid,
                    start_time: start,
                };
            }
        }
        let start_time = read_stat(pid).map(|(_, s)| s).unwrap_or(0);
        CACHED_START.store(start_time, Ordering::Relaxed);
        CACHED_PID.store(u64::from(pid), Ordering::Relaxed);
        ProcessId { pid, start_time }
    }

    /// Whether the process still runs. A pid that exists with another start time is a recycled
    /// pid: dead. A zombie (killed but not yet reaped by its parent) is dead.
    pub(crate) fn liveness(&self) -> Liveness {
        if self.raw_pid().is_none() {
            return Liveness::Dead;
        }
        match read_stat(self.pid) {
            Some((state, start)) => {
                if matches!(state, b'Z' | b'X' | b'x')
                    || (self.start_time != 0 && start != self.start_time)
                {
                    Liveness::Dead
                } else {
                    Liveness::Alive
                }
            }
            None => Liveness::Dead,
        }
    }

    /// `pidfd_open(pid, 0)`: a descriptor that becomes readable when the process exits, for
    /// reactors to watch. `Ok(None)` if the process is already gone (the start time is
    /// re-checked after opening, so a recycled pid is not watched by mistake); `Err` if it
    /// could not be opened for another reason (out of descriptors, a kernel without pidfds):
    /// the caller must then re-check liveness some other way.
    pub(crate) fn pidfd(&self) -> Result<Option<std::os::fd::OwnedFd>, rustix::io::Errno> {
        let Some(pid) = self.raw_pid() else {
            return Ok(None);
        };
        #[cfg(test)]
        if faults::PIDFD.with(|f| f.get()) {
            return Err(rustix::io::Errno::MFILE);
        }
        match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => Ok(self.is_alive().then_some(fd)),
            Err(rustix::io::Errno::SRCH) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The pid as the kernel takes it, if it can name a process at all: `1..=PID_MAX_LIMIT`
    /// (2^22, the kernel's ceiling for `pid_max`). A pid read from shared memory may be any
    /// `u32`: one that cannot be a process is dead, never cast into a negative `pid_t` (which
    /// `kill`/`pidfd_open` would read as a process group, and rustix rejects with a panic in
    /// debug builds).
    pub(crate) fn raw_pid(&self) -> Option<rustix::process::Pid> {
        const PID_MAX_LIMIT: u32 = 1 << 22;
        if self.pid == 0 || self.pid > PID_MAX_LIMIT {
            return None;
        }
        rustix::process::Pid::from_raw(self.pid as i32)
    }

    /// `liveness() == Alive`.
    pub(crate) fn is_alive(&self) -> bool {
        self.liveness() == Liveness::Alive
    }
}

/// Fault injection for unit tests: failures of this thread's system calls, on request.
#[cfg(test)]
pub(crate) mod faults {
    use std::cell::Cell;
    thread_local! {
        /// `pidfd_open` fails with `EMFILE`.
        pub(crate) static PIDFD: Cell<bool> = const { Cell::new(false) };
    }
}

/// The scheduler state (`R`, `S`, `D`, ...) of thread `tid`, of any process, as
/// `/proc/<tid>/stat` shows it; `None` if there is no such thread. Tests use it to tell a
/// thread that is asleep from one that is about to be.
#[cfg(test)]
pub(crate) fn thread_state(tid: i32) -> Option<u8> {
    read_stat(u32::try_from(tid).ok()?).map(|(state, _)| state)
}

/// Reads `/proc/<pid>/stat`: (state character, start time). `None` if the process does not exist.
fn read_stat(pid: u32) -> Option<(u8, u64)> {
    let text = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses the state (field 3) and start time (field 22) of a `/proc/<pid>/stat` line. The
/// command name (field 2) is in parentheses and may itself hold spaces and parentheses, so the
/// fields are counted from the last `)`.
fn parse_stat(text: &[u8]) -> Option<(u8, u64)> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.as_bytes().first().copied()?;
    // Fields 4..=21 come between the state and the start time.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The namespaces that liveness checks and doorbells depend on, named by the inode of
/// `/proc/self/ns/<ns>` (namespaces(7): two processes are in the same namespace exactly when
/// these inodes, all on the one nsfs device, are equal). 0 where `/proc` does not tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Namespaces {
    /// `stat("/proc/self/ns/pid")`: pids in `/proc` and in participant records are this
    /// namespace's.
    pub(crate) pid: u64,
    /// `stat("/proc/self/ns/net")`: abstract Unix socket names (doorbells, listeners) are
    /// this namespace's.
    pub(crate) net: u64,
}

impl Namespaces {
    /// This process's namespaces: two `stat` calls, not cached (`setns` can change them).
    pub(crate) fn current() -> Namespaces {
        let ino = |path: &str| rustix::fs::stat(path).map_or(0, |st| st.st_ino);
        Namespaces {
            pid: ino("/proc/self/ns/pid"),
            net: ino("/proc/self/ns/net"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = b"1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 0\n";
        assert_eq!(parse_stat(line), Some((b'S', 987654)));
        assert_eq!(parse_stat(b"garbage"), None);
        assert_eq!(parse_stat(b"1 (x) R 1 2"), None);
    }

    #[test]
    fn pids_that_cannot_name_a_process_are_dead_without_a_panic() {
        for pid in [0, (1 << 22) + 1, 1 << 31, u32::MAX - 1, u32::MAX] {
            let id = ProcessId { pid, start_time: 7 };
            assert_eq!(id.liveness(), Liveness::Dead, "pid {pid}");
            assert!(matches!(id.pidfd(), Ok(None)), "pid {pid}");
        }
    }

    #[test]
    fn current_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessId::current();
        assert!(me.start_time > 0);
        assert!(me.is_alive());
        let recycled = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!recycled.is_alive());
        assert!(
            !ProcessId {
                pid: 0,
                start_time: 0
            }
            .is_alive()
        );
    }

    #[test]
    fn a_reaped_child_and_a_zombie_are_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessId {
            pid: child.id(),
            start_time: read_stat(child.id()).map(|s| s.1).unwrap_or(0),
        };
        // Wait until it exits but do not reap it yet (`WNOWAIT`): a zombie.
        let pid = rustix::process::Pid::from_raw(id.pid as i32).unwrap();
        rustix::process::waitid(
            rustix::process::WaitId::Pid(pid),
            rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
        )
        .unwrap();
        assert_eq!(read_stat(id.pid).map(|s| s.0), Some(b'Z'));
        assert!(!id.is_alive());
        child.wait().unwrap();
        assert!(!id.is_alive());
    }

    #[test]
    fn namespaces_match_proc() {
        use std::os::unix::fs::MetadataExt;
        let ns = Namespaces::current();
        assert_eq!(
            ns.pid,
            std::fs::metadata("/proc/self/ns/pid").unwrap().ino()
        );
        assert_eq!(
            ns.net,
            std::fs::metadata("/proc/self/ns/net").unwrap().ino()
        );
        assert!(ns.pid != 0 && ns.net != 0 && ns.pid != ns.net);
    }
}
