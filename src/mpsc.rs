//! Multi-producer single-consumer channels: Vyukov's ring with per-slot sequences.
//!
//! Any number of producers (up to [`Options::max_participants`]), in one process or many; one
//! live consumer at a time (a second one gets [`Error::InUse`]).
//!
//! See [`crate::channel`] for close and crash semantics.
//!
//! # Examples
//!
//! ```
//! use shmchan::{mpsc, Options};
//! use std::time::Duration;
//!
//! # fn main() -> shmchan::Result<()> {
//! let name = format!("/shmchan-doc-mpsc-{}", std::process::id());
//! // Usually two processes; one is enough to show the calls.
//! let mut tx = mpsc::Producer::create(&name, Options::new().slot_size(64).capacity(8))?;
//! let mut rx = mpsc::Consumer::open(&name, Options::new())?;
//! tx.try_send(b"hello")?;
//! tx.send_timeout(b"world", Duration::from_millis(100))?;
//! assert_eq!(&*rx.recv_blocking()?, b"hello");
//! assert_eq!(&*rx.recv_timeout(Duration::from_millis(100))?, b"world");
//! drop(tx); // the last producer leaves: the consumer sees the end
//! assert!(matches!(rx.recv_blocking(), Err(shmchan::Error::Closed)));
//! # Ok(())
//! # }
//! ```

#[allow(unused_imports)]
use crate::{Error, Options};

/// The producer of a mpsc channel.
pub type Producer = crate::channel::Producer<crate::channel::Mpsc>;
/// The consumer of a mpsc channel.
pub type Consumer = crate::channel::Consumer<crate::channel::Mpsc>;
