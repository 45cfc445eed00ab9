//! Channel lifetimes across processes: `Lifetime::Creator` keeps a collector's stream open
//! while emitters come and go (no end, no `NotFound` for late emitters, no unlink under them),
//! keeps a job queue's producer from seeing `Closed` when workers leave, and ends with the
//! creator; `Lifetime::LastOut` (the default) keeps today's behaviour.

mod common;

use std::time::Duration;

use common::{ShmName, kill9, read_report, report, spawn_holding};
use shmchan::{Error, Lifetime, Options, TrySendError, mpmc, mpsc};

fn opts() -> Options {
    common::opts(32, 16, common::ms(20))
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let name = &args[0];
        match role {
            // An emitter: opens the collector's channel, sends `count` lines, leaves.
            "emit" => {
                let count: u32 = args[1].parse().unwrap();
                let mut tx = mpsc::Producer::open(name, opts()).unwrap();
                for i in 0..count {
                    tx.send_blocking(format!("{}:{i}", std::process::id()))
                        .unwrap();
                }
                report("done");
            }
            // A worker: attaches to the job queue, reports, leaves when stdin closes.
            "worker" => {
                let rx = mpmc::Consumer::open(name, opts()).unwrap();
                report("attached");
                let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
                drop(rx);
            }
            // A collector in its own process, killed by the parent.
            "collector" => {
                let rx = mpsc::Consumer::create(name, opts().lifetime(Lifetime::Creator)).unwrap();
                report("created");
                let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
                drop(rx);
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// A collector outlives its emitters: after the first emitter leaves, the stream waits (no
/// `Closed`), a second emitter attaches by name and is received; when the collector leaves,
/// the name is removed and a late emitter gets `NotFound`.
#[test]
fn a_collector_outlives_its_emitters() {
    let name = ShmName::new("collector");
    let mut rx = mpsc::Consumer::create(name.as_str(), opts().lifetime(Lifetime::Creator)).unwrap();
    for round in 0..3 {
        let out = common::spawn("emit", &[name.as_str(), "4"]).wait_ok();
        assert_eq!(common::reports(&out), ["done"]);
        for _ in 0..4 {
            rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        // Every emitter so far left cleanly: with LastOut this would be Closed.
        assert!(
            matches!(
                rx.recv_timeout(Duration::from_millis(60)),
                Err(Error::TimedOut(_))
            ),
            "round {round}: the collector's stream ended with its emitters"
        );
        assert!(!rx.is_closed());
        assert!(name.exists(), "the name was removed under the collector");
    }
    drop(rx);
    assert!(!name.exists(), "the creator's leave removes the name");
    assert!(matches!(
        mpsc::Producer::open(name.as_str(), opts()),
        Err(Error::NotFound(_))
    ));
}

/// The default is unchanged: the stream ends when the last emitter leaves.
#[test]
fn last_out_ends_the_stream_with_the_last_emitter() {
    let name = ShmName::new("lastout");
    let mut rx = mpsc::Consumer::create(name.as_str(), opts()).unwrap();
    common::spawn("emit", &[name.as_str(), "2"]).wait_ok();
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(5)),
        Err(Error::Closed)
    ));
}

/// A job queue's creator (a producer) is not told `Closed` when its workers leave; with
/// LastOut it would be.
#[test]
fn a_job_queue_producer_outlives_its_workers() {
    for (lifetime, closes) in [(Lifetime::Creator, false), (Lifetime::LastOut, true)] {
        let name = ShmName::new("jobs");
        let mut tx = mpmc::Producer::create(name.as_str(), opts().lifetime(lifetime)).unwrap();
        let mut worker = spawn_holding("worker", &[name.as_str()]);
        assert_eq!(read_report(&mut worker), "attached");
        drop(worker.0.as_mut().unwrap().stdin.take());
        worker.wait_ok();
        match tx.try_send(b"job") {
            Ok(()) => assert!(!closes, "{lifetime:?}: expected Closed"),
            Err(TrySendError::Closed(_)) => assert!(closes, "{lifetime:?}: closed by a worker"),
            Err(e) => panic!("{e:?}"),
        }
        assert_eq!(tx.is_closed(), closes);
    }
}

/// The creator killed: its emitters learn it (`PeerGone`), they do not wait forever.
#[test]
fn emitters_see_a_killed_collector_as_peer_gone() {
    let name = ShmName::new("deadcollector");
    let mut collector = spawn_holding("collector", &[name.as_str()]);
    assert_eq!(read_report(&mut collector), "created");
    let mut tx = mpsc::Producer::open(name.as_str(), opts()).unwrap();
    kill9(collector.id());
    let _ = collector.0.take().unwrap().wait();
    let end = loop {
        match tx.send_timeout(b"line", Duration::from_secs(5)) {
            Ok(()) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(end, shmchan::SendTimeoutError::Other(_, ref e) if matches!(**e, Error::PeerGone(_))),
        "{end:?}"
    );
}
