//! A hostile remote peer of the Zenoh bridge: what it sends (a sample, a request) is sized by
//! it, not by the local channel. On loopback only (peer mode, scouting off, as
//! `tests/zenoh_bridge.rs`): the bridge runs in a child process, the hostile remote in the test.
#![cfg(feature = "zenoh")]

mod common;

use std::time::Duration;

use common::ShmName;
use shmchan::bridge::{self, Ended, zenoh};
use shmchan::endpoint::{Endpoint, Side};
use shmchan::{Error, Options, mpsc};
use zenoh::Wait;

/// Slot size of the local channels: the hostile messages are larger.
const SLOT: usize = 256;

#[test]
fn child_entry() {
    common::dispatch(|role, args| match role {
        "import" => import_role(args),
        "service" => service_role(args),
        other => panic!("unknown role {other}"),
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn opts() -> Options {
    Options::new()
        .slot_size(SLOT)
        .liveness_interval(Duration::from_millis(50))
}

fn open_session(listen: &str, connect: &str) -> zenoh::Session {
    let l: Vec<&str> = [listen].into_iter().filter(|s| !s.is_empty()).collect();
    let c: Vec<&str> = [connect].into_iter().filter(|s| !s.is_empty()).collect();
    zenoh::open(bridge::peer_config(&l, &c).unwrap())
        .wait()
        .unwrap()
}

fn unique_key(tag: &str) -> String {
    format!(
        "shmchan-test/hostile-{tag}/{}/{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// args: channel name, key, listen endpoint. Imports `key` into a local MPSC channel of
/// `SLOT`-byte slots and reports what the local consumer receives (one report per message),
/// then how the importer ended.
fn import_role(args: &[String]) {
    let (name, key) = (&args[0], &args[1]);
    let session = open_session(&args[2], "");
    let mut inbox = mpsc::Consumer::create(name, opts()).unwrap();
    let importer =
        bridge::import(&session, key, mpsc::Producer::open(name, opts()).unwrap()).unwrap();
    common::report("ready");
    loop {
        match inbox.recv_timeout(Duration::from_secs(20)) {
            Ok(m) => common::report(format!("got {}", String::from_utf8_lossy(&m))),
            Err(e) => {
                common::report(format!("end {}", matches!(e, Error::Closed)));
                break;
            }
        }
    }
    let stats = importer.stats();
    let ended = importer.join();
    common::report(format!(
        "import {ended:?} {} {}",
        stats.forwarded, stats.dropped
    ));
}

/// A remote sample longer than the local channel's slots cannot be delivered; the importer
/// must drop it (and count it), not end: one such sample from any remote publisher would
/// otherwise close the local channel for everyone.
#[test]
fn oversized_remote_sample_does_not_end_the_importer() {
    let name = ShmName::new("hb-imp");
    let key = unique_key("import");
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let mut child = common::spawn_holding("import", &[name.as_str(), &key, &endpoint]);
    assert_eq!(common::read_report(&mut child), "ready");

    let session = open_session("", &endpoint);
    let sink = bridge::RemoteSink::new(&session, &key).unwrap();
    sink.wait_for_subscriber(Duration::from_secs(30)).unwrap();
    sink.send_blocking(&vec![b'x'; 4 * SLOT]).unwrap(); // the hostile one
    sink.send_blocking(b"after").unwrap();
    sink.finish().unwrap(); // a clean end: the importer closes the local channel

    // The child ends by itself once the local channel closed. (One read of its whole output:
    // `read_report` buffers past the line it returns.)
    let out = child.wait_ok();
    assert_eq!(
        common::reports(&out),
        ["got after", "end true", "import Ok(RemoteClosed) 1 1"],
        "the importer delivers what follows the oversized sample, counts that one dropped, \
         and ends only at the clean end"
    );
    session.close().wait().unwrap();
    assert!(!name.exists(), "a segment was left in /dev/shm");
}

/// args: endpoint name, key, listen endpoint. `bridge::serve` answers queries on `key` with a
/// local echo service on an endpoint of `SLOT`-byte slots; runs until stdin closes, then
/// reports how the server ended.
fn service_role(args: &[String]) {
    let (name, key) = (&args[0], &args[1]);
    let session = open_session(&args[2], "");
    let mut service = Endpoint::create(name, Side::A, opts()).unwrap();
    let client = Endpoint::open(name, Side::B, opts()).unwrap();
    let server = bridge::serve(&session, key, client).unwrap();
    let local = std::thread::spawn(move || {
        while let Ok(req) = service.recv_blocking() {
            let mut reply = b"re:".to_vec();
            reply.extend_from_slice(&req);
            if service.send_blocking(reply).is_err() {
                break;
            }
        }
    });
    common::report("ready");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let stats = server.stats();
    let ended = server.stop();
    local.join().unwrap(); // the endpoint dropped: its rings unlinked
    common::report(format!(
        "served {ended:?} {} {}",
        stats.forwarded, stats.dropped
    ));
}

/// A remote request longer than the endpoint's slots gets an error reply naming the endpoint,
/// and the server goes on answering: one such query must not end the service for everyone.
#[test]
fn oversized_remote_request_does_not_end_the_server() {
    let name = ShmName::new("hb-srv");
    let key = unique_key("serve");
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let mut child = common::spawn_holding("service", &[name.as_str(), &key, &endpoint]);
    assert_eq!(common::read_report(&mut child), "ready");

    let session = open_session("", &endpoint);
    let requester = bridge::Requester::new(&session, &key, Duration::from_secs(10)).unwrap();
    requester
        .wait_for_responder(Duration::from_secs(30))
        .unwrap();
    match requester.request_blocking(&vec![b'x'; 4 * SLOT]) {
        Err(Error::PeerGone(m)) => {
            assert!(
                m.contains(name.as_str()),
                "the error names the endpoint: {m}"
            );
            assert!(m.contains("bytes"), "the error says why: {m}");
        }
        other => panic!("an oversized request: {other:?}"),
    }
    let reply = requester.request_blocking(b"hello").unwrap();
    assert_eq!(&*reply, b"re:hello");

    drop(child.0.as_mut().unwrap().stdin.take());
    let out = child.wait_ok();
    let last = common::reports(&out).pop().unwrap();
    assert_eq!(
        last,
        format!("served {:?} 1 1", Ok::<_, Error>(Ended::Stopped))
    );
    session.close().wait().unwrap();
    assert!(!name.exists(), "a segment was left in /dev/shm");
}
