//! Endpoints and the listener/connect model across real processes: many clients, killed
//! clients and servers, garbage and stalls on the socket, other uids.

#![cfg(feature = "tokio")]

mod common;

use std::io::Write;
use std::os::linux::net::SocketAddrExt;
use std::time::{Duration, Instant};

use common::{ShmName, kill9, read_report, report, reports, rt};
use shmchan::endpoint::{ConnectOptions, Endpoint, Listener, Side};
use shmchan::{Error, Options};

/// The reply to request `i` of client `c`: the request with every byte inverted.
fn request(c: u64, i: u64) -> Vec<u8> {
    let mut v = c.to_le_bytes().to_vec();
    v.extend_from_slice(&i.to_le_bytes());
    v.extend((0..(i % 40) as u8).map(|b| b ^ c as u8));
    v
}

fn reply_to(req: &[u8]) -> Vec<u8> {
    req.iter().map(|b| !b).collect()
}

/// Serves one connection: answers every request until the client leaves or dies.
async fn serve(mut ep: Endpoint) -> Result<u64, Error> {
    let mut n = 0;
    loop {
        match ep.recv().await {
            Ok(req) => {
                ep.send(reply_to(&req)).await?;
                n += 1;
            }
            Err(Error::Closed) => return Ok(n),
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let name = &args[0];
        match role {
            // Connects and makes `count` requests, checking every reply.
            "client" => {
                let c: u64 = args[1].parse().unwrap();
                let count: u64 = args[2].parse().unwrap();
                rt().block_on(async {
                    let mut ep = Endpoint::connect(name).await.unwrap();
                    for i in 0..count {
                        let req = request(c, i);
                        ep.send(&req[..]).await.unwrap();
                        let rep = ep.recv().await.unwrap();
                        assert_eq!(&*rep, &reply_to(&req)[..], "client {c} request {i}");
                    }
                });
                report("done");
            }
            // Connects, sends one request and hangs before reading the reply.
            "hanging-client" => {
                rt().block_on(async {
                    let mut ep = Endpoint::connect(name).await.unwrap();
                    ep.send(request(99, 0)).await.unwrap();
                    report("sent");
                    std::thread::sleep(Duration::from_secs(60));
                });
            }
            // A server that serves every connection until killed.
            "server" => {
                rt().block_on(async {
                    let mut l = Listener::bind(name, Options::new()).unwrap();
                    report("listening");
                    loop {
                        if let Ok(ep) = l.accept().await {
                            tokio::spawn(serve(ep));
                        }
                    }
                });
            }
            // Runs under another uid and tries to connect (trusting the listener's uid, so
            // that it is the listener's check that refuses).
            "other-uid" => {
                let opts = ConnectOptions::new().allow_any_uid(true);
                let r = rt().block_on(Endpoint::connect_with(name, opts));
                report(match r {
                    Err(Error::PermissionDenied(m)) => format!("refused: {m}"),
                    Err(e) => format!("error: {e}"),
                    Ok(_) => "connected".into(),
                });
            }
            // Runs under another uid: a listener that accepts any uid and serves every
            // connection until killed.
            "any-uid-server" => {
                rt().block_on(async {
                    let mut l = Listener::bind(name, Options::new())
                        .unwrap()
                        .allow_any_uid(true);
                    report("listening");
                    loop {
                        if let Ok(ep) = l.accept().await {
                            tokio::spawn(serve(ep));
                        }
                    }
                });
            }
            other => panic!("unknown role {other}"),
        }
    });
}

#[test]
fn named_endpoint_is_duplex_and_closing_one_side_ends_the_other() {
    let name = common::EndpointNames::new("ep");
    let mut a = Endpoint::create(name.as_str(), Side::A, Options::new().capacity(4)).unwrap();
    assert!(!a.opened());
    let b = Endpoint::open(name.as_str(), Side::B, Options::new()).unwrap();
    assert!(a.opened() && b.opened());
    assert!(matches!(
        Endpoint::open(name.as_str(), Side::B, Options::new()),
        Err(Error::InUse(_))
    ));
    let (mut b_tx, mut b_rx) = b.split();
    a.try_send(b"x").unwrap();
    assert_eq!(a.available(), 3);
    assert_eq!(&*b_rx.try_recv().unwrap(), b"x");
    b_tx.try_send(b"y").unwrap();
    assert_eq!(a.pending(), 1);
    assert_eq!(&*a.recv_timeout(Duration::from_millis(100)).unwrap(), b"y");
    drop(b_tx);
    assert!(matches!(a.recv_blocking(), Err(Error::Closed)));
    a.send_timeout(b"z", Duration::from_millis(100)).unwrap();
    assert_eq!(&*b_rx.recv_blocking().unwrap(), b"z");
}

#[test]
fn sixteen_clients_ten_thousand_requests_each() {
    const CLIENTS: u64 = 16;
    const REQUESTS: u64 = 10_000;
    let name = ShmName::new("svc");
    rt().block_on(async {
        let mut listener =
            Listener::bind(name.as_str(), Options::new().slot_size(128).capacity(8)).unwrap();
        let children: Vec<_> = (0..CLIENTS)
            .map(|c| {
                common::spawn(
                    "client",
                    &[name.as_str(), &c.to_string(), &REQUESTS.to_string()],
                )
            })
            .collect();
        let mut servers = Vec::new();
        for _ in 0..CLIENTS {
            let ep = listener.accept().await.unwrap();
            servers.push(tokio::spawn(serve(ep)));
        }
        for s in servers {
            assert_eq!(s.await.unwrap().unwrap(), REQUESTS);
        }
        for c in children {
            assert_eq!(reports(&c.wait_ok()), ["done"]);
        }
    });
}

#[test]
fn a_client_killed_mid_request_is_peer_gone_and_others_are_served() {
    let name = ShmName::new("killclient");
    rt().block_on(async {
        let mut listener = Listener::bind(name.as_str(), Options::new()).unwrap();
        let mut hanging = common::spawn("hanging-client", &[name.as_str()]);
        let ep = listener.accept().await.unwrap();
        assert_eq!(read_report(&mut hanging), "sent");
        let victim = tokio::spawn(serve(ep));
        let good = common::spawn("client", &[name.as_str(), "1", "500"]);
        let served = tokio::spawn(serve(listener.accept().await.unwrap()));
        kill9(hanging.id());
        let t = Instant::now();
        let r = victim.await.unwrap();
        assert!(matches!(r, Err(Error::PeerGone(_))), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(3));
        assert_eq!(served.await.unwrap().unwrap(), 500);
        assert_eq!(reports(&good.wait_ok()), ["done"]);
    });
}

#[test]
fn a_killed_server_is_peer_gone_for_its_clients() {
    let name = ShmName::new("killserver");
    let mut server = common::spawn("server", &[name.as_str()]);
    assert_eq!(read_report(&mut server), "listening");
    rt().block_on(async {
        let mut a = Endpoint::connect(name.as_str()).await.unwrap();
        let mut b = Endpoint::connect(name.as_str()).await.unwrap();
        for ep in [&mut a, &mut b] {
            ep.send(request(1, 1)).await.unwrap();
            assert_eq!(&*ep.recv().await.unwrap(), &reply_to(&request(1, 1))[..]);
        }
        kill9(server.id());
        let t = Instant::now();
        for ep in [&mut a, &mut b] {
            let r = ep.recv().await;
            assert!(matches!(r, Err(Error::PeerGone(_))), "{r:?}");
        }
        assert!(t.elapsed() < Duration::from_secs(3));
    });
}

#[test]
fn garbage_and_stalled_clients_fail_alone_within_the_timeout() {
    let name = ShmName::new("garbage");
    rt().block_on(async {
        let mut listener = Listener::bind(name.as_str(), Options::new())
            .unwrap()
            .handshake_timeout(Duration::from_secs(1));
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(
            format!("shmchan-listener{}", name.as_str()).as_bytes(),
        )
        .unwrap();
        // A client that connects and says nothing, then one that sends garbage.
        let _staller = std::os::unix::net::UnixStream::connect_addr(&addr).unwrap();
        let mut junk = std::os::unix::net::UnixStream::connect_addr(&addr).unwrap();
        junk.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let e = listener.accept().await.unwrap_err();
        assert!(
            matches!(&e, Error::Corrupt(m) if m.contains("magic")),
            "{e}"
        );
        // A good client is served while the staller still holds its connection.
        let t = Instant::now();
        let (srv, cli) = tokio::join!(listener.accept(), Endpoint::connect(name.as_str()));
        let (mut srv, mut cli) = (srv.unwrap(), cli.unwrap());
        assert!(
            t.elapsed() < Duration::from_millis(800),
            "a good client waited {:?}",
            t.elapsed()
        );
        cli.send(b"hi").await.unwrap();
        assert_eq!(&*srv.recv().await.unwrap(), b"hi");
        // The staller fails on its own, after the timeout.
        let e = listener.accept().await.unwrap_err();
        assert!(
            matches!(&e, Error::TimedOut(m) if m.contains("hello")),
            "{e}"
        );
        // Nobody listening: NotFound.
        let none = ShmName::new("nolistener");
        assert!(matches!(
            Endpoint::connect(none.as_str()).await,
            Err(Error::NotFound(_))
        ));
    });
}

#[test]
fn a_client_of_another_uid_is_refused() {
    if !common::root_or_skip("client") {
        return;
    }
    let name = ShmName::new("uidep");
    rt().block_on(async {
        let mut listener = Listener::bind(name.as_str(), Options::new()).unwrap();
        // A copy the other uid can execute even if the checkout is in a private directory.
        let exe = common::ExeCopy::new();
        let child = common::ChildGuard::spawn(exe.command_as(65534, "other-uid", &[name.as_str()]));
        let e = listener.accept().await.unwrap_err();
        assert!(
            matches!(&e, Error::PermissionDenied(m) if m.contains("65534")),
            "{e}"
        );
        let out = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap();
        let lines = reports(&out);
        assert!(
            !lines.is_empty(),
            "the child under uid 65534 did not report ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            lines[0].starts_with("refused") && lines[0].contains("65534"),
            "{lines:?}"
        );
    });
}

#[test]
fn connect_refuses_a_listener_of_another_uid() {
    if !common::root_or_skip("listener") {
        return;
    }
    let name = ShmName::new("uidlisten");
    let exe = common::ExeCopy::new();
    let mut server =
        common::ChildGuard::spawn(exe.command_as(65534, "any-uid-server", &[name.as_str()]));
    assert_eq!(read_report(&mut server), "listening");
    rt().block_on(async {
        // The listener (uid 65534) would accept us, but we must not talk to it.
        let e = Endpoint::connect(name.as_str()).await.unwrap_err();
        assert!(
            matches!(&e, Error::PermissionDenied(m)
                if m.contains(name.as_str()) && m.contains("65534") && m.contains("uid 0")),
            "{e}"
        );
        // Opting in, the same listener serves us.
        let opts = ConnectOptions::new().allow_any_uid(true);
        let mut ep = Endpoint::connect_with(name.as_str(), opts).await.unwrap();
        ep.send(request(7, 1)).await.unwrap();
        assert_eq!(&*ep.recv().await.unwrap(), &reply_to(&request(7, 1))[..]);
    });
}
