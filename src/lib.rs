//! # shmchan: async inter-process channels over shared memory
//!
//! shmchan moves messages between processes on one host through lock-free rings in POSIX
//! shared memory, for services that talk over Unix sockets or TCP loopback today and want the
//! latency and throughput of shared memory without giving up async Rust. A busy stream makes
//! no system call per message; a clean close, a dead peer and garbage in shared memory each
//! come back as a value you can match on.
//!
//! # Quick start: a channel
//!
//! Process A creates a channel by name and sends; process B opens the same name and receives.
//! Both halves are in one program here so that the example runs as a test. As two programs,
//! start A first: until the channel exists, [`spsc::Consumer::open`] fails with
//! [`Error::NotFound`].
//!
//! ```
//! use futures::StreamExt;
//! use shmchan::{Options, spsc};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> shmchan::Result<()> {
//! // Process A: create the channel (a file in /dev/shm, mode 0600) and send.
//! let mut tx = spsc::Producer::create("/doc-quickstart-orders", Options::new())?;
//!
//! // Process B: attach by name; slot size and capacity come from the channel itself.
//! let mut rx = spsc::Consumer::open("/doc-quickstart-orders", Options::new())?;
//!
//! tx.send(b"hello").await?;   // waits while the ring is full
//! tx.try_send(b"now").unwrap(); // or fails at once with TrySendError::Full(msg)
//! drop(tx);                   // a clean close: B drains what is queued, then the stream ends
//!
//! let mut got = Vec::new();
//! while let Some(msg) = rx.next().await {  // a Stream of Result<Message>
//!     got.push(msg?.into_vec());           // a Message derefs to [u8]
//! }
//! assert_eq!(got, [&b"hello"[..], b"now"]);
//! # Ok(())
//! # }
//! ```
//!
//! [`mpsc`] and [`mpmc`] channels have the same methods, for several producers (and
//! consumers), in one process or many. Every operation comes in try, blocking, timed and async
//! forms; producers are `Sink`s and consumers `Stream`s.
//!
//! # Quick start: an endpoint
//!
//! An [`Endpoint`](endpoint::Endpoint) is a duplex connection: two rings, one each way. Side A
//! creates it by name, side B opens it, and each sends to and receives from the other.
//!
//! ```
//! use shmchan::Options;
//! use shmchan::endpoint::{Endpoint, Side};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> shmchan::Result<()> {
//! // Process A, a server: create both rings.
//! let mut server = Endpoint::create("/doc-quickstart-echo", Side::A, Options::new())?;
//! // Process B, a client: open them by the same name.
//! let mut client = Endpoint::open("/doc-quickstart-echo", Side::B, Options::new())?;
//!
//! client.send(b"ping").await?;
//! let request = server.recv().await?;
//! server.send(request).await?; // echo it back
//! assert_eq!(&*client.recv().await?, b"ping");
//! # Ok(())
//! # }
//! ```
//!
//! A service with many clients uses `Listener::bind` and `listener.accept().await` on the
//! server and `Endpoint::connect(name).await` on each client (feature `tokio` or `async-io`): every client
//! gets its own pair of rings, handed over a Unix socket, so nothing is left in `/dev/shm`.
//!
//! ```
//! # #[cfg(feature = "tokio")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> shmchan::Result<()> {
//! use shmchan::Options;
//! use shmchan::endpoint::{Endpoint, Listener};
//!
//! let mut listener = Listener::bind("/doc-quickstart-service", Options::new())?; // server
//! let (server, client) = tokio::join!(
//!     listener.accept(),
//!     Endpoint::connect("/doc-quickstart-service"), // a client, usually another process
//! );
//! let (mut server, mut client) = (server?, client?);
//! client.send(b"2").await?;
//! let request = server.recv().await?;
//! server.send(request).await?;
//! assert_eq!(&*client.recv().await?, b"2");
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tokio"))]
//! # fn main() {}
//! ```
//!
//! # Features
//!
//! - `tokio` (on by default): async operations that have to wait park in tokio's reactor;
//!   adds `endpoint::Listener` and `Endpoint::connect`.
//! - `async-io`: async operations park in async-io's reactor (smol, async-std) when the task
//!   does not run inside a tokio runtime; adds `Listener` and `connect` too (they work on
//!   either runtime).
//! - `serde`: the `typed` module, channels and endpoints that send serde values (postcard,
//!   encoded straight into the slot).
//! - `zenoh`: the `bridge` module carries channels between hosts through Zenoh (export, import,
//!   remote `Sink`/`Stream`, request/response) and adds `shmchan bridge` to the CLI.
//!
//! With neither, the try, blocking and timed operations work as usual, and an async operation
//! that would have to park fails with an error that names the missing feature.
//!
//! # The layers
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
//! # Using a segment directly
//!
//! For a layout of your own, a [`Segment`] gives raw access: bounds-checked copies and atomics
//! over aligned words, never a reference over bytes another process may write.
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
//! Who can write: a named segment is created with mode `0600`, so only processes of the
//! creator's uid (and root) can open it for writing, unless you ask for wider permissions. A
//! peer with write access **can**:
//!
//! - send you any bytes as messages (shmchan does not authenticate content), or corrupt the
//!   header, indices and participant records: your calls then fail with [`Error::Corrupt`] or
//!   misjudge who is alive (a forged live record stops a repair, a forged dead one invites it);
//! - stop making progress, fill the ring and never drain it, or unlink the name: a denial of
//!   service, which timeouts and [`Error::PeerGone`] bound but cannot prevent;
//! - `ftruncate` a **named** segment (or a file) after you attached: an access past the new end
//!   is `SIGBUS`, which kills your process. Attaching checks the object's current size against
//!   the header (a shrunk segment is [`Error::Corrupt`] naming both sizes), but POSIX shared
//!   memory cannot be sealed, so nothing stops a later truncation. Share named segments only
//!   with processes you trust not to do this.
//!
//! It **cannot** make shmchan read or write outside its mappings, hold a reference over shared
//! bytes, or reach any memory of yours outside the segment.
//!
//! The rings of a `Listener` / `Endpoint::connect` connection are memfds sealed against
//! shrinking (`F_SEAL_SHRINK`) before they are passed, and [`Segment::from_fd`] refuses an
//! unsealed descriptor, so they are immune to truncation (they have no name; only a process
//! that may already ptrace yours could reach them through `/proc/<pid>/fd`). Both
//! sides of the handshake check the other's uid (`SO_PEERCRED`), each refusing another uid
//! unless told otherwise. A segment made in another pid or network namespace (containers that
//! share `/dev/shm`) is refused on attach with [`Error::Mismatch`]: liveness checks by pid, and
//! doorbells on abstract sockets, would not work across it.
//!
//! # Platform
//!
//! Linux is the tested platform (futex, memfd, `/proc` liveness checks).

#![warn(clippy::undocumented_unsafe_blocks, clippy::unnecessary_safety_comment)]
// docs.rs (see Cargo.toml metadata) marks feature-gated items.
#![cfg_attr(docsrs, feature(doc_cfg))]
// Under loom only the algorithms are built; what the channels use of the rest goes unused.
#![cfg_attr(shmchan_loom, allow(dead_code))]

#[cfg(feature = "zenoh")]
pub mod bridge;
#[cfg(not(shmchan_loom))]
pub mod channel;
#[cfg(not(shmchan_loom))]
pub mod endpoint;
mod error;
pub mod heap;
#[cfg(not(shmchan_loom))]
pub mod inspect;
pub mod layout;
#[allow(dead_code)]
mod loom;
#[cfg(not(shmchan_loom))]
pub mod mpmc;
#[cfg(not(shmchan_loom))]
pub mod mpsc;
#[allow(dead_code)]
mod ring;
#[cfg(not(shmchan_loom))]
mod runtime;
mod segment;
#[cfg(not(shmchan_loom))]
pub mod spsc;
mod sys;
#[cfg(all(feature = "serde", not(shmchan_loom)))]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod typed;
pub mod wait;

#[cfg(not(shmchan_loom))]
pub use channel::{INLINE_MESSAGE, Lifetime, Message, Options, Stale, Unlink};
pub use error::{Error, ErrorBox, Result, SendTimeoutError, TryRecvError, TrySendError};
#[cfg(not(shmchan_loom))]
pub use heap::{Handle, Heap, HeapOptions, ShmBuf, TrustedBuf};
pub use ring::{MAX_CAPACITY, MAX_SLOT_SIZE};
pub use segment::{Mode, Segment, SegmentOptions};
pub use wait::{WaitStats, WaitStrategy};

/// The instant `timeout` from now, saturated (a caller's `Duration::MAX` means "no deadline
/// we could ever reach", not an overflow panic).
pub(crate) fn deadline_after(timeout: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    // A century is beyond any wait; it keeps the sum representable on every platform.
    now.checked_add(timeout)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(100 * 365 * 86_400))
}

/// The README's examples, run as doctests so that what it claims stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
