//! `Listener` / `Endpoint::connect` on either runtime, across real processes: smol (async-io)
//! client and server, mixed with tokio; `connect` taking `Options`; the geometry an endpoint
//! reports; the whole endpoint as a `Sink` + `Stream`; a call outside any runtime.
#![cfg(any(feature = "tokio", feature = "async-io"))]

mod common;

use std::time::{Duration, Instant};

use common::{read_report, report, reports, run, spawn};
use futures::StreamExt;
use shmchan::endpoint::{Endpoint, Listener};
use shmchan::{Error, Options};

fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("/shmchan-t-{tag}-{}-{n}", std::process::id())
}

fn geometry() -> Options {
    Options::new().slot_size(96).capacity(4)
}

/// Echoes every message back, reversed, using the whole endpoint as a Stream and a Sink.
async fn echo(mut ep: Endpoint) -> u64 {
    let mut n = 0;
    while let Some(msg) = ep.next().await {
        let mut v = msg.unwrap().into_vec();
        v.reverse();
        ep.send(v).await.unwrap();
        n += 1;
    }
    n
}

/// `count` requests, each reply checked.
async fn requests(ep: &mut Endpoint, count: u64) {
    for i in 0..count {
        let req = format!("request {i:05}").into_bytes();
        ep.send(&req[..]).await.unwrap();
        let mut want = req.clone();
        want.reverse();
        assert_eq!(&*ep.recv().await.unwrap(), &want[..], "request {i}");
    }
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let name = &args[0];
        let rt = args[1].as_str();
        match role {
            "server" => {
                let n = run(rt, async {
                    let mut l = Listener::bind(name, geometry()).unwrap();
                    report("listening");
                    echo(l.accept().await.unwrap()).await
                });
                report(format!("served {n}"));
            }
            "client" => {
                run(rt, async {
                    let mut ep = Endpoint::connect(name).await.unwrap();
                    assert_eq!((ep.slot_size(), ep.capacity()), (96, 4));
                    requests(&mut ep, 200).await;
                });
                report("done");
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// A server process on `server_rt`, a client process on `client_rt`.
fn across(server_rt: &str, client_rt: &str) {
    let name = unique("ep-rt");
    let mut server = spawn("server", &[&name, server_rt]);
    assert_eq!(read_report(&mut server), "listening");
    let client = spawn("client", &[&name, client_rt]);
    assert_eq!(reports(&client.wait_ok()), ["done"]);
    assert_eq!(reports(&server.wait_ok()), ["served 200"]);
}

#[cfg(feature = "async-io")]
#[test]
fn smol_client_and_smol_server_across_processes() {
    across("smol", "smol");
}

#[cfg(feature = "async-io")]
#[test]
fn smol_client_of_a_tokio_server() {
    across("tokio", "smol");
}

#[cfg(feature = "async-io")]
#[test]
fn tokio_client_of_a_smol_server() {
    across("smol", "tokio");
}

#[cfg(feature = "tokio")]
#[test]
fn tokio_client_and_tokio_server_across_processes() {
    across("tokio", "tokio");
}

/// With async-io, `connect` works under any executor, even a bare `block_on` that is no
/// runtime at all: async-io's reactor serves it.
#[cfg(feature = "async-io")]
#[test]
fn connect_under_a_bare_executor_uses_async_io() {
    let name = unique("ep-bare");
    let mut server = spawn("server", &[&name, "smol"]);
    assert_eq!(read_report(&mut server), "listening");
    futures::executor::block_on(async {
        let mut ep = Endpoint::connect(&name).await.unwrap();
        requests(&mut ep, 20).await;
    });
    assert_eq!(reports(&server.wait_ok()), ["served 20"]);
}

/// Without async-io, a call outside a tokio runtime is a clear error, not a panic.
#[cfg(not(feature = "async-io"))]
#[test]
fn connect_outside_any_runtime_is_a_clear_error() {
    let name = unique("ep-nort");
    let mut server = spawn("server", &[&name, "tokio"]);
    assert_eq!(read_report(&mut server), "listening");
    let e = futures::executor::block_on(Endpoint::connect(&name)).unwrap_err();
    match &e {
        Error::Io(io) => assert_eq!(io.kind(), std::io::ErrorKind::Unsupported),
        other => panic!("expected Io(Unsupported), got {other:?}"),
    }
    assert!(e.to_string().contains("no async runtime"), "{e}");
    drop(server); // killed: it never got a client
}

/// The handshake bound comes from the `Options` given to `connect_with` (its init timeout): a
/// "listener" that accepts and never answers makes `connect` time out after that bound, not
/// after the 2 s default.
#[test]
fn connect_with_options_bounds_the_handshake() {
    use std::os::linux::net::SocketAddrExt;
    let name = unique("ep-mute");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(
        format!("shmchan-listener{name}").as_bytes(),
    )
    .unwrap();
    let mute = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    #[cfg(feature = "tokio")]
    let rt = "tokio";
    #[cfg(not(feature = "tokio"))]
    let rt = "smol";
    let t = Instant::now();
    let opts = Options::new().init_timeout(Duration::from_millis(200));
    let e = run(rt, Endpoint::connect_with(&name, opts)).unwrap_err();
    let took = t.elapsed();
    assert!(matches!(e, Error::TimedOut(_)), "{e:?}");
    assert!(e.to_string().contains("200ms"), "{e}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    drop(mute);
}

/// `Endpoint` is a `Sink` and a `Stream` as a whole: `forward` one endpoint's stream into
/// another endpoint, without `split`.
#[test]
fn the_whole_endpoint_is_sink_and_stream() {
    use shmchan::endpoint::Side;
    let (a, b) = (unique("ep-ss-a"), unique("ep-ss-b"));
    #[cfg(feature = "tokio")]
    let rt = "tokio";
    #[cfg(not(feature = "tokio"))]
    let rt = "smol";
    run(rt, async {
        let mut a1 = Endpoint::create(&a, Side::A, Options::new()).unwrap();
        let a2 = Endpoint::open(&a, Side::B, Options::new()).unwrap();
        let b1 = Endpoint::create(&b, Side::A, Options::new()).unwrap();
        let mut b2 = Endpoint::open(&b, Side::B, Options::new()).unwrap();
        for i in 0..10u8 {
            a1.send([i]).await.unwrap();
        }
        drop(a1); // a2's stream ends after the ten
        // a2 (Stream of Result<Message>) forwarded into b1 (Sink of the messages).
        let fwd = a2.map(|m| m.map(|m| m.into_vec())).forward(b1);
        fwd.await.unwrap();
        let mut got = Vec::new();
        while let Some(m) = b2.next().await {
            got.push(m.unwrap()[0]);
        }
        assert_eq!(got, (0..10).collect::<Vec<u8>>());
    });
    for n in [&a, &b] {
        for dir in ["-a2b", "-b2a"] {
            let _ = shmchan::Segment::unlink(&format!("{n}{dir}"));
        }
    }
}
