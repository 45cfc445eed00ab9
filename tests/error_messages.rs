//! Errors a person can act on: the Display text names the user's channel or endpoint and the
//! peer's role and pid, never an internal ring name ('/svc#123-a2b') or a kind number.

mod common;

#[cfg(any(feature = "tokio", feature = "async-io"))]
use common::rt;

use std::time::Duration;

use common::{EndpointNames, ShmName, kill9, read_report, report, spawn_holding};
use shmchan::endpoint::{Endpoint, Side};
use shmchan::{Error, Options, mpsc, spsc};

fn opts() -> Options {
    Options::new().liveness_interval(Duration::from_millis(20))
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let name = &args[0];
        match role {
            // Attaches as side B of a named endpoint, reports, and waits to be killed.
            "side-b" => {
                let _ep = Endpoint::open(name, Side::B, opts()).unwrap();
                report("attached");
                std::thread::sleep(Duration::from_secs(60));
            }
            // Attaches as a producer of an MPSC channel and waits to be killed.
            "mpsc-producer" => {
                let _tx = mpsc::Producer::open(name, opts()).unwrap();
                report("attached");
                std::thread::sleep(Duration::from_secs(60));
            }
            #[cfg(any(feature = "tokio", feature = "async-io"))]
            "listener" => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut l = shmchan::endpoint::Listener::bind(name, opts()).unwrap();
                    report("listening");
                    let _ep = l.accept().await.unwrap();
                    report("accepted");
                    std::thread::sleep(Duration::from_secs(60));
                });
            }
            #[cfg(any(feature = "tokio", feature = "async-io"))]
            "client" => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let _ep = Endpoint::connect_with(name, opts()).await.unwrap();
                    report("connected");
                    std::thread::sleep(Duration::from_secs(60));
                });
            }
            other => panic!("unknown role {other}"),
        }
    });
}

fn no_internal_names(text: &str) {
    assert!(!text.contains('#'), "an internal ring label in: {text}");
    assert!(
        !text.contains("-a2b") && !text.contains("-b2a"),
        "a ring name in: {text}"
    );
}

#[test]
fn a_kind_mismatch_names_the_kinds() {
    let name = ShmName::new("err-kind");
    let _tx = spsc::Producer::create(name.as_str(), Options::new()).unwrap();
    let e = mpsc::Consumer::open(name.as_str(), Options::new()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Mismatch {
                what: "kind",
                expected: 2,
                found: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "layout mismatch: segment '{}' is an spsc channel, expected an mpsc channel",
            name.as_str()
        )
    );
}

#[test]
fn a_dead_side_of_a_named_endpoint_is_named_with_its_pid() {
    let name = EndpointNames::new("err-ep");
    let mut a = Endpoint::create(name.as_str(), Side::A, opts()).unwrap();
    let mut child = spawn_holding("side-b", &[name.as_str()]);
    assert_eq!(read_report(&mut child), "attached");
    let pid = child.id();
    kill9(pid);
    let e = a.recv_timeout(Duration::from_secs(10)).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::PeerGone(_)), "{e:?}");
    assert_eq!(
        text,
        format!(
            "peer gone: side B (pid {pid}) of endpoint '{}' died",
            name.as_str()
        )
    );
    no_internal_names(&text);
    drop(child);
}

#[test]
fn a_side_held_by_a_live_process_is_named_with_its_pid() {
    let name = EndpointNames::new("err-ep-held");
    let _a = Endpoint::create(name.as_str(), Side::A, opts()).unwrap();
    let mut child = spawn_holding("side-b", &[name.as_str()]);
    assert_eq!(read_report(&mut child), "attached");
    let e = Endpoint::open(name.as_str(), Side::B, opts()).unwrap_err();
    assert!(matches!(e, Error::InUse(_)), "{e:?}");
    let text = e.to_string();
    assert_eq!(
        text,
        format!(
            "in use: side B of endpoint '{}' is already held by a live process (pid {})",
            name.as_str(),
            child.id()
        )
    );
    no_internal_names(&text);
    drop(child);
}

#[test]
fn a_dead_producer_of_a_channel_is_named_with_its_pid() {
    let name = ShmName::new("err-mpsc");
    let mut rx = mpsc::Consumer::create(name.as_str(), opts()).unwrap();
    let mut child = spawn_holding("mpsc-producer", &[name.as_str()]);
    assert_eq!(read_report(&mut child), "attached");
    let pid = child.id();
    kill9(pid);
    let e = rx.recv_timeout(Duration::from_secs(10)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "peer gone: the producer (pid {pid}) of mpsc channel '{}' died, and no other \
             producer is attached",
            name.as_str()
        )
    );
}

#[test]
fn endpoint_timeouts_and_sizes_name_the_endpoint() {
    let name = EndpointNames::new("err-ep-msg");
    let mut a = Endpoint::create(name.as_str(), Side::A, Options::new().slot_size(64)).unwrap();
    let _b = Endpoint::open(name.as_str(), Side::B, Options::new()).unwrap();
    let e = a.recv_timeout(Duration::from_millis(30)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "timed out: no message on endpoint '{}' within 30ms",
            name.as_str()
        )
    );
    let e = a.try_send([0u8; 100]).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "message of 100 bytes is longer than the 64 bytes of a slot of endpoint '{}'",
            name.as_str()
        )),
        "{text}"
    );
    no_internal_names(&text);
    drop((a, _b));
}

/// "the server (pid 4242) of endpoint '/usersvc' died", not "'/usersvc#22824-a2b'".
#[cfg(any(feature = "tokio", feature = "async-io"))]
#[test]
fn a_dead_server_is_named_with_its_pid() {
    let name = format!("/shmchan-t-err-srv-{}", std::process::id());
    let mut server = spawn_holding("listener", &[&name]);
    assert_eq!(read_report(&mut server), "listening");
    let pid = server.id();
    let e = rt().block_on(async {
        let mut ep = Endpoint::connect_with(&name, opts()).await.unwrap();
        kill9(pid);
        ep.recv().await.unwrap_err()
    });
    let text = e.to_string();
    assert_eq!(
        text,
        format!("peer gone: the server (pid {pid}) of endpoint '{name}' died")
    );
    no_internal_names(&text);
}

/// The server sees "the client (pid N) of endpoint '/svc' died".
#[cfg(any(feature = "tokio", feature = "async-io"))]
#[test]
fn a_dead_client_is_named_with_its_pid() {
    let name = format!("/shmchan-t-err-cli-{}", std::process::id());
    rt().block_on(async {
        let mut l = shmchan::endpoint::Listener::bind(&name, opts()).unwrap();
        let mut client = spawn_holding("client", &[&name]);
        let mut ep = l.accept().await.unwrap();
        assert_eq!(read_report(&mut client), "connected");
        let pid = client.id();
        kill9(pid);
        let text = ep.recv().await.unwrap_err().to_string();
        assert_eq!(
            text,
            format!("peer gone: the client (pid {pid}) of endpoint '{name}' died")
        );
        no_internal_names(&text);
    });
}
