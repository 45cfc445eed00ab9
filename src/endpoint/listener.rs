//! [`Listener`] and [`Endpoint::connect`]: the connection handshake over an abstract Unix
//! socket (described in the module docs of [`crate::endpoint`]), credentials, and the memfd
//! rings passed with `SCM_RIGHTS`.
//!
//! Runtime-neutral: the sockets are plain nonblocking `std` sockets registered (through
//! `runtime::Watched`) in the reactor of the task that polls them, tokio's or async-io's, and
//! each handshake step is bounded by a timerfd in the same reactor, so neither a tokio timer
//! nor a tokio reactor is needed. Outside any runtime a call fails with an
//! [`Error::Io`] of kind `Unsupported` that says what is missing; it never panics.
//!
//! May call `channel` (the SPSC rings), `segment`, `runtime` and `sys` (fd passing, timers).

use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use super::{Endpoint, Side};
use crate::channel::{Consumer, Options, Producer, Spsc, spsc_segment_len};
use crate::error::{Error, Result};
use crate::runtime::{Dir, Reactor, Watched};
use crate::segment::{Mode, Segment};
use crate::sys::fdpass;
use crate::sys::timer::Timer;

const MAGIC: &[u8; 12] = b"SHMCHAN-EP\0\0";
/// The connection protocol version.
pub const PROTOCOL_VERSION: u32 = 1;

fn address(name: &str) -> Result<SocketAddr> {
    crate::segment::validate_name(name)?;
    SocketAddr::from_abstract_name(format!("shmchan-listener{name}").as_bytes()).map_err(Error::Io)
}

/// The two handshake setters both ends have, `allow_any_uid` (field `any_uid`) and
/// `handshake_timeout` (field `timeout`, a `Duration` or an `Option<Duration>`), each with
/// the attributes (docs) given before its name.
macro_rules! handshake_setters {
    (
        $(#[$any_uid:meta])* fn allow_any_uid;
        $(#[$timeout:meta])* fn handshake_timeout;
    ) => {
        $(#[$any_uid])*
        pub fn allow_any_uid(mut self, yes: bool) -> Self {
            self.any_uid = yes;
            self
        }

        $(#[$timeout])*
        pub fn handshake_timeout(mut self, d: Duration) -> Self {
            self.timeout = d.into();
            self
        }
    };
}

type Handshake = Pin<Box<dyn Future<Output = Result<Endpoint>> + Send>>;

/// The listening socket: plain until the first `accept` registers it in the caller's reactor.
enum Sock {
    Plain(UnixListener),
    Watched(Watched<UnixListener>),
    /// Registration failed (the error was returned); only left to be dropped.
    Lost,
}

/// Accepts connections from [`Endpoint::connect`]; see the [module docs](super).
///
/// Works on tokio and on async-io (smol, async-std): `bind` needs no runtime, and `accept`
/// registers the socket in the reactor of the task that first polls it.
pub struct Listener {
    sock: Sock,
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
    /// vanishes with the listener). Each connection's rings get `opts`' geometry and waiting
    /// behaviour; each handshake step is bounded by `opts`' init timeout (default 2 s; see
    /// [`handshake_timeout`](Self::handshake_timeout)). Needs no runtime: the socket is
    /// registered in a reactor by the first [`accept`](Self::accept).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad name, [`Error::AlreadyExists`] if a live
    /// listener has the name, [`Error::Io`].
    pub fn bind(name: &str, opts: Options) -> Result<Listener> {
        let addr = address(name)?;
        let std = UnixListener::bind_addr(&addr).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                Error::AlreadyExists(format!("listener '{name}' already exists"))
            } else {
                Error::Io(e)
            }
        })?;
        std.set_nonblocking(true)?;
        Ok(Listener {
            sock: Sock::Plain(std),
            name: name.to_owned(),
            timeout: opts.init_timeout,
            opts,
            any_uid: false,
            handshakes: Vec::new(),
            heap_size: 0,
        })
    }

    handshake_setters! {
        /// Accept clients running under any uid (by default only the listener's own uid).
        fn allow_any_uid;
        /// Bound on each handshake step (default: the `Options`' init timeout, 2 s).
        fn handshake_timeout;
    }

    /// Gives every connection its own heap of `size` bytes for large messages
    /// ([`Endpoint::send_large`]), in a sealed memfd passed in the handshake: it has no name,
    /// nothing is left in `/dev/shm`, and it vanishes with the connection. Both endpoints
    /// have it attached. 0 (the default): no heap.
    pub fn heap_size(mut self, size: usize) -> Self {
        self.heap_size = size;
        self
    }

    /// The listener's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next connected client, as side A of its own endpoint.
    ///
    /// # Errors
    ///
    /// A failed handshake (garbage, a wrong version, another uid, a client that stalled
    /// past the timeout or died) is the `Err` of this call; the listener stays usable
    /// and other handshakes continue. [`Error::Io`] if accepting itself fails, or (kind
    /// `Unsupported`) if the task runs in no runtime shmchan can use.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: handshakes in progress are kept in the listener and continue at the
    /// next call.
    pub async fn accept(&mut self) -> Result<Endpoint> {
        self.accept_in(true).await
    }

    async fn accept_in(&mut self, async_io_allowed: bool) -> Result<Endpoint> {
        if let Sock::Plain(_) = self.sock {
            let what = format!("Listener::accept on '{}'", self.name);
            let reactor = Reactor::current(&what, async_io_allowed)?;
            let Sock::Plain(std) = std::mem::replace(&mut self.sock, Sock::Lost) else {
                unreachable!("checked above")
            };
            self.sock = Sock::Watched(Watched::new(reactor, std)?);
        }
        let Sock::Watched(sock) = &self.sock else {
            return Err(Error::Io(std::io::Error::other(format!(
                "listener '{}': its socket could not be registered in a reactor earlier",
                self.name
            ))));
        };
        std::future::poll_fn(|cx| {
            // New connections start their handshakes...
            while let Poll::Ready(r) = sock.poll_io(cx, Dir::Read, |l| l.accept()) {
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

/// A connection's socket and the timer that bounds each handshake step, in one reactor.
struct Conn {
    sock: Watched<UnixStream>,
    timer: Timer,
    bell: Watched<OwnedFd>,
    d: Duration,
}

impl Conn {
    fn new(reactor: Reactor, stream: UnixStream, d: Duration) -> Result<Conn> {
        stream.set_nonblocking(true)?;
        let timer = Timer::new().map_err(|e| Error::from_errno(e, || "timerfd_create".into()))?;
        let fd = timer
            .try_clone_fd()
            .map_err(|e| Error::from_errno(e, || "dup of a timerfd".into()))?;
        Ok(Conn {
            sock: Watched::new(reactor, stream)?,
            bell: Watched::new(reactor, fd)?,
            timer,
            d,
        })
    }

    /// Runs `step` on the socket, failing with `TimedOut` naming `what` after `d`.
    async fn step<T>(
        &self,
        what: &str,
        step: impl FnMut(&UnixStream, &mut std::task::Context<'_>) -> Poll<Result<T>>,
    ) -> Result<T> {
        let mut step = step;
        self.timer.drain();
        self.timer
            .arm(self.d)
            .map_err(|e| Error::from_errno(e, || "timerfd_settime".into()))?;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = step(self.sock.get_ref(), cx) {
                return Poll::Ready(r);
            }
            let fired = self.bell.poll_io(cx, Dir::Read, |fd| {
                rustix::io::read(fd, &mut [0u8; 8]).map_err(std::io::Error::from)
            });
            match fired {
                Poll::Ready(_) => Poll::Ready(Err(Error::TimedOut(format!(
                    "endpoint handshake: {what} took longer than {:?}",
                    self.d
                )))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Reads exactly `buf.len()` bytes; errors say `what` was being done.
    async fn read_exact(&self, buf: &mut [u8], what: &str) -> Result<()> {
        let len = buf.len();
        self.transfer(Dir::Read, len, what, |s, off| (&*s).read(&mut buf[off..]))
            .await
    }

    /// Writes all of `buf`.
    async fn write_all(&self, buf: &[u8], what: &str) -> Result<()> {
        self.transfer(Dir::Write, buf.len(), what, |s, off| {
            (&*s).write(&buf[off..])
        })
        .await
    }

    /// Moves `len` bytes in direction `dir`, `io` moving those from offset `off` on when the
    /// socket is ready; a read of 0 bytes is the other side's close. Errors say `what` was
    /// being done.
    async fn transfer(
        &self,
        dir: Dir,
        len: usize,
        what: &str,
        mut io: impl FnMut(&UnixStream, usize) -> std::io::Result<usize>,
    ) -> Result<()> {
        let mut off = 0;
        let sock = &self.sock;
        self.step(what, |_, cx| {
            while off < len {
                let r = sock.poll_io(cx, dir, |s| io(s, off));
                match std::task::ready!(r) {
                    Ok(0) if matches!(dir, Dir::Read) => {
                        return Poll::Ready(Err(Error::Io(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("{what}: the other side closed the connection"),
                        ))));
                    }
                    Ok(n) => off += n,
                    Err(e) => {
                        return Poll::Ready(Err(Error::Io(std::io::Error::new(
                            e.kind(),
                            format!("{what}: {e}"),
                        ))));
                    }
                }
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// The connection, deregistered, as the endpoint's liveness line.
    fn into_line(self) -> Result<UnixStream> {
        Ok(self.sock.into_inner()?)
    }
}

/// The peer's pid and uid (`SO_PEERCRED`), as the kernel recorded them.
fn peer_cred(sock: impl AsFd, name: &str) -> Result<(u32, u32)> {
    let cred = rustix::net::sockopt::socket_peercred(sock)
        .map_err(|e| Error::from_errno(e, || format!("endpoint '{name}': SO_PEERCRED")))?;
    Ok((cred.pid.as_raw_nonzero().get() as u32, cred.uid.as_raw()))
}

/// Tells the client why it is refused (best effort: it may be gone) and returns the reason.
async fn refuse(conn: &Conn, why: String) -> String {
    let mut reply = 1u32.to_le_bytes().to_vec();
    reply.extend_from_slice(why.as_bytes());
    let _ = conn.write_all(&reply, "sending a refusal").await;
    why
}

async fn server_handshake(
    stream: UnixStream,
    name: String,
    opts: Options,
    any_uid: bool,
    d: Duration,
    heap_size: usize,
) -> Result<Endpoint> {
    let reactor = Reactor::current(&format!("Listener::accept on '{name}'"), true)?;
    let conn = Conn::new(reactor, stream, d)?;
    let mut hello = [0u8; 16];
    conn.read_exact(&mut hello, "reading the client's hello")
        .await?;
    if &hello[..12] != MAGIC {
        let why = refuse(&conn, "not a shmchan endpoint client (bad magic)".into()).await;
        return Err(Error::Corrupt(format!("listener '{name}': {why}")));
    }
    let version = u32::from_le_bytes(hello[12..].try_into().expect("4 bytes"));
    if version != PROTOCOL_VERSION {
        let why = refuse(
            &conn,
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
    let (pid, uid) = peer_cred(conn.sock.get_ref(), &name)?;
    let me = rustix::process::getuid().as_raw();
    if !any_uid && uid != me {
        let why = refuse(
            &conn,
            format!("uid {uid} may not connect to a listener of uid {me}"),
        )
        .await;
        return Err(Error::PermissionDenied(format!("listener '{name}': {why}")));
    }
    let len = spsc_segment_len(&opts)?;
    let label = |dir: &str| format!("{name}#{pid}-{dir}");
    let mut tx = Producer::<Spsc>::create_in(Segment::memfd(len)?, &label("a2b"), &opts)?;
    let mut rx = Consumer::<Spsc>::create_in(Segment::memfd(len)?, &label("b2a"), &opts)?;
    tx.set_endpoint(&name, "the client");
    rx.set_endpoint(&name, "the client");
    let (slot, cap) = opts.geometry();
    let mut reply = [0u8; 20];
    reply[4..12].copy_from_slice(&(slot as u64).to_le_bytes());
    reply[12..20].copy_from_slice(&(cap as u64).to_le_bytes());
    let heap = super::large::connection_heap(heap_size)?;
    let mut fds = vec![tx.segment().as_fd(), rx.segment().as_fd()];
    fds.extend(heap.as_ref().map(|h| h.as_fd()));
    let sock = &conn.sock;
    conn.step("sending the rings", |_, cx| {
        sock.poll_io(cx, Dir::Write, |s| {
            fdpass::send_with_fds(s, &reply, &fds).map_err(std::io::Error::from)
        })
        .map_err(Error::Io)
    })
    .await?;
    let mut ack = [0u8; 1];
    conn.read_exact(&mut ack, "waiting for the client to attach")
        .await?;
    let mut ep = Endpoint::connected(tx, rx, Side::A, conn.into_line()?);
    if let Some(heap) = &heap {
        ep.attach_heap(heap)?;
    }
    Ok(ep)
}

/// Options for [`Endpoint::connect_with`]: the [`Options`] of the client's rings (waiting
/// behaviour, liveness interval; their geometry comes from the listener) and of the handshake
/// (its init timeout bounds each step, 2 s by default), and which listeners to trust.
///
/// An [`Options`] converts into one, so `Endpoint::connect_with(name, Options::new()...)`
/// works as well.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    options: Options,
    any_uid: bool,
    timeout: Option<Duration>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Options> for ConnectOptions {
    fn from(options: Options) -> Self {
        ConnectOptions {
            options,
            any_uid: false,
            timeout: None,
        }
    }
}

impl ConnectOptions {
    /// Defaults: `Options::new()`, only a listener of our own uid, 2 s per handshake step.
    pub fn new() -> Self {
        Options::new().into()
    }

    /// The options of the client's rings and of the handshake (its init timeout bounds each
    /// step unless [`handshake_timeout`](Self::handshake_timeout) says otherwise).
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    handshake_setters! {
        /// Talk to a listener running under any uid (by default only one of our own uid; the
        /// mirror of [`Listener::allow_any_uid`]). Only opt in if you trust every user on the
        /// host with your requests: whoever binds the name first receives them.
        fn allow_any_uid;
        /// Bound on each handshake step (default: the options' init timeout, 2 s).
        fn handshake_timeout;
    }
}

impl Endpoint {
    /// Connects to the listener `name` and returns side B of a fresh pair of rings. Works on
    /// tokio and on async-io (smol, async-std); outside any runtime it fails with an
    /// [`Error::Io`] of kind `Unsupported`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if nobody listens; [`Error::PermissionDenied`] if the listener runs
    /// under another uid than ours (see [`ConnectOptions::allow_any_uid`]), or if it refused
    /// us; [`Error::Mismatch`] if it refused our protocol version (the message says why), or
    /// if it runs in another pid namespace (`what: "pid namespace"`: liveness checks by pid
    /// cannot work across it);
    /// [`Error::Corrupt`] for a malformed reply; [`Error::TimedOut`] after 2 s per step;
    /// [`Error::Io`] (kind `Unsupported`) in no runtime shmchan can use.
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

    /// [`connect`](Self::connect) with options: the [`Options`] of the client's rings and of
    /// the handshake (wait strategy, liveness interval, init timeout as the bound of each
    /// step), which listeners to trust. Takes a [`ConnectOptions`] or an [`Options`].
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use shmchan::{Options, WaitStrategy};
    /// use shmchan::endpoint::{ConnectOptions, Endpoint};
    ///
    /// # async fn f() -> shmchan::Result<()> {
    /// // Park at once when idle, and give the handshake 500 ms per step.
    /// let opts = Options::new()
    ///     .wait_strategy(WaitStrategy::park_only())
    ///     .init_timeout(Duration::from_millis(500));
    /// let ep = Endpoint::connect_with("/svc", opts).await?;
    /// // A service that runs under its own uid, on purpose.
    /// let ep = Endpoint::connect_with("/svc", ConnectOptions::new().allow_any_uid(true)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_with(name: &str, options: impl Into<ConnectOptions>) -> Result<Endpoint> {
        connect_in(name, options.into(), true).await
    }
}

async fn connect_in(
    name: &str,
    options: ConnectOptions,
    async_io_allowed: bool,
) -> Result<Endpoint> {
    let d = options.timeout.unwrap_or(options.options.init_timeout);
    let addr = address(name)?;
    let reactor = Reactor::current(&format!("Endpoint::connect to '{name}'"), async_io_allowed)?;
    let std = UnixStream::connect_addr(&addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
            Error::NotFound(format!("no listener '{name}'"))
        }
        _ => Error::Io(e),
    })?;
    // Before a single byte goes out: is the listener one we may talk to?
    let (_server_pid, theirs) = peer_cred(&std, name)?;
    let me = rustix::process::getuid().as_raw();
    if !options.any_uid && theirs != me {
        return Err(Error::PermissionDenied(format!(
            "endpoint '{name}': the listener runs as uid {theirs}, this process as uid {me}; \
             refusing to connect (anyone can bind an abstract socket name first); opt in \
             with ConnectOptions::allow_any_uid if that uid is trusted"
        )));
    }
    let conn = Conn::new(reactor, std, d)?;
    let mut hello = [0u8; 16];
    hello[..12].copy_from_slice(MAGIC);
    hello[12..].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    conn.write_all(&hello, "sending the hello").await?;
    let mut buf = [0u8; 512];
    let sock = &conn.sock;
    let (n, fds): (usize, Vec<OwnedFd>) = conn
        .step("waiting for the rings", |_, cx| {
            sock.poll_io(cx, Dir::Read, |s| {
                fdpass::recv_with_fds(s, &mut buf).map_err(std::io::Error::from)
            })
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
    let opts = &options.options;
    let label = format!("{name}#{}", std::process::id());
    let mut rx = Consumer::<Spsc>::open_in(a2b, &format!("{label}-a2b"), opts)?;
    let mut tx = Producer::<Spsc>::open_in(b2a, &format!("{label}-b2a"), opts)?;
    rx.set_endpoint(name, "the server");
    tx.set_endpoint(name, "the server");
    conn.write_all(&[1], "acknowledging").await?;
    let mut ep = Endpoint::connected(tx, rx, Side::B, conn.into_line()?);
    if let Some(fd) = fds.next() {
        super::large::attach_connection_heap(&mut ep, fd, d)?;
    }
    Ok(ep)
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

    /// Outside any runtime (no tokio context, async-io not allowed: what a build without the
    /// `async-io` feature sees), `connect` and `accept` fail with a clear `Unsupported`
    /// error, never a panic ("there is no reactor running").
    #[test]
    fn outside_any_runtime_connect_and_accept_are_clear_errors() {
        let name = format!("/shmchan-t-nort-{}", std::process::id());
        let mut listener = Listener::bind(&name, Options::new()).expect("bind needs no runtime");
        let e = futures::executor::block_on(connect_in(&name, ConnectOptions::new(), false))
            .unwrap_err();
        let Error::Io(io) = &e else {
            panic!("expected Io, got {e:?}")
        };
        assert_eq!(io.kind(), std::io::ErrorKind::Unsupported);
        let text = e.to_string();
        assert!(
            text.contains(&format!("Endpoint::connect to '{name}'")),
            "{text}"
        );
        assert!(text.contains("no async runtime"), "{text}");
        assert!(text.contains("async-io"), "{text}");
        let e = futures::executor::block_on(listener.accept_in(false)).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("Listener::accept on '{name}'")),
            "{e}"
        );
        // The listener is still usable from a runtime afterwards.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (s, c) = tokio::join!(listener.accept(), Endpoint::connect(&name));
            let (mut s, mut c) = (s.unwrap(), c.unwrap());
            c.send(b"x").await.unwrap();
            assert_eq!(&*s.recv().await.unwrap(), b"x");
        });
    }
}
