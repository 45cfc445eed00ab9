//! [`Listener`] and [`Endpoint::connect`]: the connection handshake over an abstract Unix
//! socket (described in the module docs of [`crate::endpoint`]), credentials, and the memfd
//! rings passed with `SCM_RIGHTS`.
//!
//! May call `channel` (the SPSC rings), `segment` and `sys` (fd passing).

use std::future::Future;
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::UnixStream;

use super::{Endpoint, Side};
use crate::channel::{Consumer, Options, Producer, Spsc, spsc_segment_len};
use crate::error::{Error, Result};
use crate::segment::{Mode, Segment};
use crate::sys::fdpass;

const MAGIC: &[u8; 12] = b"SHMCHAN-EP\0\0";
/// The connection protocol version.
pub const PROTOCOL_VERSION: u32 = 1;

fn address(name: &str) -> Result<SocketAddr> {
    crate::segment::validate_name(name)?;
    SocketAddr::from_abstract_name(format!("shmchan-listener{name}").as_bytes()).map_err(Error::Io)
}

type Handshake = Pin<Box<dyn Future<Output = Result<Endpoint>> + Send>>;

/// Accepts connections from [`Endpoint::connect`]; see the [module docs](super).
pub struct Listener {
    sock: tokio::net::UnixListener,
    name: String,
    opts: Options,
    any_uid: bool,
    timeout: Duration,
    handshakes: Vec<Handshake>,
    /// Bytes of the heap each connection gets (0: none); see `heap_size`.
    heap_size: usize,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Listens for connections to `name` (a Unix socket in the abstract namespace: it
    /// vanishes with the listener). Each connection's rings get `opts`' geometry. Must be
    /// called inside a tokio runtime with I/O and time enabled.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad name, [`Error::AlreadyExists`] if a live
    /// listener has the name, [`Error::Io`].
    pub fn bind(name: &str, opts: Options) -> Result<Listener> {
        let addr = address(name)?;
        let std = std::os::unix::net::UnixListener::bind_addr(&addr).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                Error::AlreadyExists(format!("listener '{name}' already exists"))
            } else {
                Error::Io(e)
            }
        })?;
        std.set_nonblocking(true)?;
        Ok(Listener {
            sock: tokio::net::UnixListener::from_std(std)?,
            name: name.to_owned(),
            opts,
            any_uid: false,
            timeout: Duration::from_secs(2),
            handshakes: Vec::new(),
            heap_size: 0,
        })
    }

    /// Accept clients running under any uid (by default only the listener's own uid).
    pub fn allow_any_uid(mut self, yes: bool) -> Self {
        self.any_uid = yes;
        self
    }

    /// Bound on each handshake step (default 2 s).
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Gives every connection its own heap of `size` bytes for large messages
    /// ([`Endpoint::send_large`]), in a sealed memfd passed in the handshake: it has no name,
    /// nothing is left in `/dev/shm`, and it vanishes with the connection. Both endpoints
    /// have it attached. 0 (the default): no heap.
    pub fn heap_size(mut self, size: usize) -> Self {
        self.heap_size = size;
        self
    }

    /// The next connected client, as side A of its own endpoint.
    ///
    /// # Errors
    ///
    /// A failed handshake (garbage, a wrong version, another uid, a client that stalled
    /// past the timeout or died) is the `Err` of this call; the listener stays usable
    /// and other handshakes continue. [`Error::Io`] if accepting itself fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: handshakes in progress are kept in the listener and continue at the
    /// next call.
    pub async fn accept(&mut self) -> Result<Endpoint> {
        std::future::poll_fn(|cx| {
            // New connections start their handshakes...
            while let Poll::Ready(r) = self.sock.poll_accept(cx) {
                match r {
                    Ok((stream, _)) => {
                        let fut = server_handshake(
                            stream,
                            self.name.clone(),
                            self.opts.clone(),
                            self.any_uid,
                            self.timeout,
                            self.heap_size,
                        );
                        self.handshakes.push(Box::pin(fut));
                    }
                    Err(e) => return Poll::Ready(Err(Error::Io(e))),
                }
            }
            // ...and the first handshake to finish is the result.
            for i in 0..self.handshakes.len() {
                if let Poll::Ready(r) = self.handshakes[i].as_mut().poll(cx) {
                    drop(self.handshakes.swap_remove(i));
                    return Poll::Ready(r);
                }
            }
            Poll::Pending
        })
        .await
    }
}

fn timed_out(what: &str, d: Duration) -> Error {
    Error::TimedOut(format!("endpoint handshake: {what} took longer than {d:?}"))
}

async fn with_timeout<T>(d: Duration, what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(d, f)
        .await
        .unwrap_or_else(|_| Err(timed_out(what, d)))
}

/// Reads exactly `buf.len()` bytes within `d`; errors say `what` was being done.
async fn read_within(
    stream: &mut UnixStream,
    buf: &mut [u8],
    d: Duration,
    what: &str,
) -> Result<()> {
    with_timeout(d, what, async {
        stream
            .read_exact(buf)
            .await
            .map(|_| ())
            .map_err(|e| Error::Io(std::io::Error::new(e.kind(), format!("{what}: {e}"))))
    })
    .await
}

/// Tells the client why it is refused (best effort: it may be gone) and returns the reason.
async fn refuse(stream: &mut UnixStream, d: Duration, why: String) -> String {
    let mut reply = 1u32.to_le_bytes().to_vec();
    reply.extend_from_slice(why.as_bytes());
    let _ = tokio::time::timeout(d, stream.write_all(&reply)).await;
    why
}

async fn server_handshake(
    mut stream: UnixStream,
    name: String,
    opts: Options,
    any_uid: bool,
    d: Duration,
    heap_size: usize,
) -> Result<Endpoint> {
    let mut hello = [0u8; 16];
    read_within(&mut stream, &mut hello, d, "reading the client's hello").await?;
    if &hello[..12] != MAGIC {
        let why = refuse(
            &mut stream,
            d,
            "not a shmchan endpoint client (bad magic)".into(),
        )
        .await;
        return Err(Error::Corrupt(format!("listener '{name}': {why}")));
    }
    let version = u32::from_le_bytes(hello[12..].try_into().expect("4 bytes"));
    if version != PROTOCOL_VERSION {
        let why = refuse(
            &mut stream,
            d,
            format!("protocol version {version}, this listener speaks {PROTOCOL_VERSION}"),
        )
        .await;
        return Err(Error::Mismatch {
            segment: format!("listener '{name}' ({why})"),
            what: "protocol version",
            expected: PROTOCOL_VERSION.into(),
            found: version.into(),
        });
    }
    let cred = stream.peer_cred()?;
    let me = rustix::process::getuid().as_raw();
    if !any_uid && cred.uid() != me {
        let why = refuse(
            &mut stream,
            d,
            format!(
                "uid {} may not connect to a listener of uid {me}",
                cred.uid()
            ),
        )
        .await;
        return Err(Error::PermissionDenied(format!("listener '{name}': {why}")));
    }
    let pid = cred.pid().unwrap_or(0);
    let len = spsc_segment_len(&opts)?;
    let label = |dir: &str| format!("{name}#{pid}-{dir}");
    let tx = Producer::<Spsc>::create_in(Segment::memfd(len)?, &label("a2b"), &opts)?;
    let rx = Consumer::<Spsc>::create_in(Segment::memfd(len)?, &label("b2a"), &opts)?;
    let (slot, cap) = opts.geometry();
    let mut reply = [0u8; 20];
    reply[4..12].copy_from_slice(&(slot as u64).to_le_bytes());
    reply[12..20].copy_from_slice(&(cap as u64).to_le_bytes());
    let heap = super::large::connection_heap(heap_size)?;
    let mut fds = vec![tx.segment().as_fd(), rx.segment().as_fd()];
    fds.extend(heap.as_ref().map(|h| h.as_fd()));
    with_timeout(d, "sending the rings", async {
        stream
            .async_io(Interest::WRITABLE, || {
                fdpass::send_with_fds(&stream, &reply, &fds).map_err(std::io::Error::from)
            })
            .await
            .map_err(Error::Io)
    })
    .await?;
    let mut ack = [0u8; 1];
    read_within(&mut stream, &mut ack, d, "waiting for the client to attach").await?;
    let mut ep = Endpoint::connected(tx, rx, Side::A, stream.into_std()?);
    if let Some(heap) = &heap {
        ep.attach_heap(heap)?;
    }
    Ok(ep)
}

/// Options for [`Endpoint::connect_with`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    any_uid: bool,
    timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnectOptions {
    /// Defaults: only a listener of our own uid, 2 s per handshake step.
    pub fn new() -> Self {
        ConnectOptions {
            any_uid: false,
            timeout: Duration::from_secs(2),
        }
    }

    /// Talk to a listener running under any uid (by default only one of our own uid; the
    /// mirror of [`Listener::allow_any_uid`]). Only opt in if you trust every user on the
    /// host with your requests: whoever binds the name first receives them.
    pub fn allow_any_uid(mut self, yes: bool) -> Self {
        self.any_uid = yes;
        self
    }

    /// Bound on each handshake step (default 2 s).
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
}

impl Endpoint {
    /// Connects to the listener `name` and returns side B of a fresh pair of rings.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if nobody listens; [`Error::PermissionDenied`] if the listener runs
    /// under another uid than ours (see [`ConnectOptions::allow_any_uid`]), or if it refused
    /// us; [`Error::Mismatch`] if it refused our protocol version (the message says why), or
    /// if it runs in another pid namespace (`what: "pid namespace"`: liveness checks by pid
    /// cannot work across it);
    /// [`Error::Corrupt`] for a malformed reply; [`Error::TimedOut`] after 2 s per step.
    ///
    /// # Security
    ///
    /// Abstract socket names have no permissions: any process may bind the name first and
    /// receive our requests. So before sending anything, `connect` reads the listener's uid
    /// from the kernel (`SO_PEERCRED`) and refuses a listener of another uid, the same rule
    /// the listener applies to its clients. [`connect_with`](Self::connect_with) can opt out.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Options, endpoint::{Endpoint, Listener}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmchan::Result<()> {
    /// let name = format!("/shmchan-doc-listen-{}", std::process::id());
    /// let mut listener = Listener::bind(&name, Options::new())?;
    /// let (server, client) = tokio::join!(listener.accept(), Endpoint::connect(&name));
    /// let (mut server, mut client) = (server?, client?);
    /// client.send(b"request").await?;
    /// let req = server.recv().await?;
    /// server.send(req).await?;
    /// assert_eq!(&*client.recv().await?, b"request");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(name: &str) -> Result<Endpoint> {
        Endpoint::connect_with(name, ConnectOptions::new()).await
    }

    /// [`connect`](Self::connect) with options: which listeners to trust, and the handshake
    /// timeout.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use shmchan::endpoint::{ConnectOptions, Endpoint};
    ///
    /// # async fn f() -> shmchan::Result<()> {
    /// // A service that runs under its own uid, on purpose.
    /// let ep = Endpoint::connect_with("/svc", ConnectOptions::new().allow_any_uid(true)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_with(name: &str, options: ConnectOptions) -> Result<Endpoint> {
        let d = options.timeout;
        let addr = address(name)?;
        let std =
            std::os::unix::net::UnixStream::connect_addr(&addr).map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
                    Error::NotFound(format!("no listener '{name}'"))
                }
                _ => Error::Io(e),
            })?;
        // Before a single byte goes out: is the listener one we may talk to?
        let theirs = fdpass::peer_uid(&std)
            .map_err(|e| Error::from_errno(e, || format!("endpoint '{name}': SO_PEERCRED")))?;
        let me = rustix::process::getuid().as_raw();
        if !options.any_uid && theirs != me {
            return Err(Error::PermissionDenied(format!(
                "endpoint '{name}': the listener runs as uid {theirs}, this process as uid {me}; \
                 refusing to connect (anyone can bind an abstract socket name first); opt in \
                 with ConnectOptions::allow_any_uid if that uid is trusted"
            )));
        }
        std.set_nonblocking(true)?;
        let mut stream = UnixStream::from_std(std)?;
        let mut hello = [0u8; 16];
        hello[..12].copy_from_slice(MAGIC);
        hello[12..].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        with_timeout(d, "sending the hello", async {
            stream.write_all(&hello).await.map_err(Error::Io)
        })
        .await?;
        let mut buf = [0u8; 512];
        let (n, fds): (usize, Vec<OwnedFd>) = with_timeout(d, "waiting for the rings", async {
            stream
                .async_io(Interest::READABLE, || {
                    fdpass::recv_with_fds(&stream, &mut buf).map_err(std::io::Error::from)
                })
                .await
                .map_err(Error::Io)
        })
        .await?;
        if n < 4 {
            return Err(Error::Corrupt(format!(
                "listener '{name}' sent a {n}-byte reply"
            )));
        }
        let status = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes"));
        if status != 0 {
            let why = String::from_utf8_lossy(&buf[4..n]).into_owned();
            return Err(if why.contains("uid") {
                Error::PermissionDenied(format!("listener '{name}' refused: {why}"))
            } else {
                Error::Mismatch {
                    segment: format!("listener '{name}' ({why})"),
                    what: "protocol version",
                    expected: 0,
                    found: PROTOCOL_VERSION.into(),
                }
            });
        }
        if n != 20 || !(2..=3).contains(&fds.len()) {
            return Err(Error::Corrupt(format!(
                "listener '{name}' replied {n} bytes with {} descriptors, expected 20 and 2 \
                 (3 with a connection heap)",
                fds.len()
            )));
        }
        let mut fds = fds.into_iter();
        let a2b = Segment::from_fd(fds.next().expect("2 fds"), Mode::ReadWrite)?;
        let b2a = Segment::from_fd(fds.next().expect("2 fds"), Mode::ReadWrite)?;
        let opts = Options::new();
        let label = format!("{name}#{}", std::process::id());
        let rx = Consumer::<Spsc>::open_in(a2b, &format!("{label}-a2b"), &opts)?;
        let tx = Producer::<Spsc>::open_in(b2a, &format!("{label}-b2a"), &opts)?;
        with_timeout(d, "acknowledging", async {
            stream.write_all(&[1]).await.map_err(Error::Io)
        })
        .await?;
        let mut ep = Endpoint::connected(tx, rx, Side::B, stream.into_std()?);
        if let Some(fd) = fds.next() {
            super::large::attach_connection_heap(&mut ep, fd, d)?;
        }
        Ok(ep)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::net::UnixStream as StdUnixStream;

    use super::*;

    /// The server's end of the liveness line: would-block while the client keeps its end open,
    /// end of file once the client closed it.
    fn client_line_open(server: &Endpoint) -> bool {
        let line = server
            .tx
            .kept_alive()
            .expect("a connected endpoint keeps its line")
            .downcast_ref::<StdUnixStream>()
            .expect("the line is a Unix stream");
        line.set_nonblocking(true).unwrap();
        match (&*line).read(&mut [0u8; 1]) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
            Ok(0) => false,
            other => panic!("unexpected read on the line: {other:?}"),
        }
    }

    /// `split` keeps the connection's liveness line open while either half lives (it used
    /// to drop the socket, though the docs said it stays open).
    #[tokio::test(flavor = "current_thread")]
    async fn split_halves_keep_the_liveness_line_open() {
        let name = format!("/shmchan-t-line-{}", std::process::id());
        let mut listener = Listener::bind(&name, Options::new()).unwrap();
        let (server, client) = tokio::join!(listener.accept(), Endpoint::connect(&name));
        let (server, client) = (server.unwrap(), client.unwrap());
        assert!(client_line_open(&server));
        let (tx, rx) = client.split();
        assert!(client_line_open(&server), "split dropped the line");
        drop(tx);
        assert!(
            client_line_open(&server),
            "the receiving half alone keeps it"
        );
        drop(rx);
        assert!(
            !client_line_open(&server),
            "both halves gone: the line is closed"
        );
    }
}
