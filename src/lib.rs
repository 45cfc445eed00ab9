//! # shmchan: async inter-process channels over shared memory
//!
//! shmchan moves messages between processes on one host through lock-free rings in POSIX
//! shared memory, for services that talk over Unix sockets or TCP loopback today and want the
//! latency and throughput of shared memory without giving up async Rust.
//!
//! The crate is built in layers, each importing only the ones below it:
//!
//! - [`Segment`]: named POSIX shared memory, anonymous memfd segments that travel as file
//!   descriptors, and file-backed mappings. Raw pointers, copies and atomics only: another
//!   process may write the same bytes at any time.
//! - [`layout`]: the versioned header at the start of every segment shmchan lays out, its
//!   race-free init protocol, and the participant table behind the liveness checks.
//! - [`spsc`], [`mpsc`], [`mpmc`]: channels over lock-free rings, with try, blocking, timed and
//!   async operations, `Sink` and `Stream`, zero-copy guards and typed messages
//!   ([`channel`] has what they share, including the close and crash guarantees).
//! - [`endpoint`]: duplex endpoints by name, and a `Listener` / `Endpoint::connect` model that
//!   gives each client its own rings in memfds passed over a Unix socket.
//! - [`heap`]: a shared heap whose blocks travel between processes as handles, for payloads
//!   larger than a slot.
//! - [`wait`]: the spin -> yield -> park budget and the park/wake protocol that makes a wake-up
//!   system call only when a peer sleeps.
//! - [`Error`]: one error type whose variants say what went wrong and whose messages name the
//!   segment and the numbers involved.
//!
//! # Example: two handles on one segment
//!
//! ```
//! use shmchan::{Mode, Segment};
//!
//! # fn main() -> shmchan::Result<()> {
//! let name = format!("/shmchan-doc-lib-{}", std::process::id());
//! let writer = Segment::options().unlink_on_drop(true).create(&name, 4096)?;
//! writer.atomic_u64(0)?.store(42, std::sync::atomic::Ordering::Release);
//!
//! let reader = Segment::open(&name, Mode::ReadOnly)?;
//! let mut word = [0u8; 8];
//! reader.read(0, &mut word)?;
//! assert_eq!(u64::from_ne_bytes(word), 42);
//! # Ok(())
//! # }
//! ```
//!
//! # Trust
//!
//! Shared memory is written by another process that may be buggy, hostile or dead. Every
//! index, length and header field read from it is validated before it sizes a copy or forms a
//! pointer; bad data gives [`Error::Corrupt`], never undefined behaviour or a panic.
//!
//! # Platform
//!
//! Linux is the tested platform (futex, memfd, `/proc` liveness checks).

#![warn(clippy::undocumented_unsafe_blocks, clippy::unnecessary_safety_comment)]
// Under loom only the algorithms are built; what the channels use of the rest goes unused.
#![cfg_attr(loom, allow(dead_code))]

#[cfg(not(loom))]
pub mod channel;
#[cfg(not(loom))]
pub mod endpoint;
mod error;
pub mod heap;
pub mod layout;
#[allow(dead_code)]
mod loom;
#[cfg(not(loom))]
pub mod mpmc;
#[cfg(not(loom))]
pub mod mpsc;
#[allow(dead_code)]
mod ring;
#[cfg(not(loom))]
mod runtime;
mod segment;
#[cfg(not(loom))]
pub mod spsc;
mod sys;
pub mod wait;

#[cfg(not(loom))]
pub use channel::{INLINE_MESSAGE, Message, Options, SendError, Unlink};
pub use error::{Error, ErrorBox, Result, SendTimeoutError, TryRecvError, TrySendError};
#[cfg(not(loom))]
pub use heap::{Handle, Heap, HeapOptions, ShmBuf};
pub use ring::{MAX_CAPACITY, MAX_SLOT_SIZE};
pub use segment::{Mode, Segment, SegmentOptions};
pub use wait::WaitStrategy;

/// The README's examples, run as doctests so that what it claims stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
