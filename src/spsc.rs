//! Single-producer single-consumer channels: a Lamport ring with cached indices.
//!
//! One live producer and one live consumer at a time (a second one gets [`Error::InUse`]);
//! either may create the channel, and either may be replaced after it leaves or dies.
//!
//! See [`crate::channel`] for close and crash semantics.
//!
//! # Examples
//!
//! ```
//! use shmchan::{spsc, Options};
//! use std::time::Duration;
//!
//! # fn main() -> shmchan::Result<()> {
//! let name = format!("/shmchan-doc-spsc-{}", std::process::id());
//! // Usually two processes; one is enough to show the calls.
//! let mut tx = spsc::Producer::create(&name, Options::new().slot_size(64).capacity(8))?;
//! let mut rx = spsc::Consumer::open(&name, Options::new())?;
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

/// The producer of a spsc channel.
pub type Producer = crate::channel::Producer<crate::channel::Spsc>;
/// The consumer of a spsc channel.
pub type Consumer = crate::channel::Consumer<crate::channel::Spsc>;
