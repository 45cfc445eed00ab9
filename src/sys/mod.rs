//! Every system call the crate makes, through rustix.
//!
//! This is the operating-system contract of shmchan in one place (mio's `sys/` habit). Each
//! wrapper says which C call it makes. Linux is the tested platform; the calls used are:
//!
//! | module | calls | used for |
//! |---|---|---|
//! | [`shm`] | `shm_open`, `shm_unlink`, `memfd_create`, `fcntl(F_ADD_SEALS / F_GET_SEALS)`, `ftruncate`, `fstat`, `open` | segments |
//! | [`process`] | `getpid`, `/proc/<pid>/stat`, `pidfd_open` | liveness of participants (pid + start time) |
//! | `fdpass` (feature `tokio` or `async-io`) | `sendmsg` / `recvmsg` with `SCM_RIGHTS`, `getsockopt(SO_PEERCRED)` | the listener handshake: passing memfd rings, checking the peer's uid |
//! | [`doorbell`] | `socket(AF_UNIX, SOCK_DGRAM)`, `bind` (abstract names), `sendto`, `recv` | waking tasks parked in a reactor |
//! | [`timer`] | `timerfd_create`, `timerfd_settime`, `read` | a fallback liveness re-check for async waits that could not watch a pidfd; the bound of each listener handshake step, in any reactor |
//! | [`futex`] | `futex(FUTEX_WAIT / FUTEX_WAKE)` without `FUTEX_PRIVATE_FLAG` | parking blocked threads across processes |
//! | [`membarrier`] | `membarrier(QUERY / REGISTER_GLOBAL_EXPEDITED / GLOBAL_EXPEDITED)` | asymmetric fences: none on a publish, a barrier on every CPU when a waiter parks |
//!
//! Mappings themselves are made by memmap2's `MmapRaw`, which hands out raw pointers only.

pub(crate) mod doorbell;
#[cfg(any(feature = "tokio", feature = "async-io"))]
pub(crate) mod fdpass;
pub(crate) mod futex;
pub(crate) mod membarrier;
pub(crate) mod process;
pub(crate) mod shm;
pub(crate) mod timer;
