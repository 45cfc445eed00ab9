//! Restarts: a participant SIGKILLed and replaced by a new process leaves the channel exactly
//! as a clean leave would have; an attach that fails changes nothing for the peers.
//!
//! These are the deterministic regression tests of the bugs the kill matrix
//! (`tests/kill_matrix.rs`) found at random: each orders the steps so that the bug, if present,
//! shows every time.

mod common;

use std::time::{Duration, Instant};

use common::{ShmName, kill9, read_report, report, spawn_holding};
use shmchan::{Error, Options, TrySendError, mpmc, mpsc, spsc};

const MAX: usize = 64;

fn opts() -> Options {
    Options::new()
        .slot_size(MAX)
        .capacity(8)
        .liveness_interval(Duration::from_millis(20))
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let (name, flavour) = (&args[0], args[1].as_str());
        let count: u64 = args[2].parse().unwrap();
        macro_rules! send {
            ($m:ident) => {{
                let mut tx = $m::Producer::open(name, opts()).unwrap();
                for i in 0..count {
                    tx.send_blocking(i.to_le_bytes()).unwrap();
                }
                tx
            }};
        }
        macro_rules! by_flavour {
            ($body:ident) => {
                match flavour {
                    "spsc" => drop($body!(spsc)),
                    "mpsc" => drop($body!(mpsc)),
                    _ => drop($body!(mpmc)),
                }
            };
        }
        match role {
            // Sends `count` messages, reports, and holds its handle until killed.
            "send-and-hold" => {
                macro_rules! hold {
                    ($m:ident) => {{
                        let tx = send!($m);
                        report("sent");
                        let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
                        tx
                    }};
                }
                by_flavour!(hold)
            }
            // Sends `count` messages and leaves cleanly.
            "send" => {
                by_flavour!(send);
                report("done");
            }
            // Opens a consumer with another capacity than the channel's: must fail.
            "mismatched-consumer" => {
                let o = opts().capacity(16);
                let r = match flavour {
                    "spsc" => spsc::Consumer::open_or_create(name, o).map(drop),
                    "mpsc" => mpsc::Consumer::open_or_create(name, o).map(drop),
                    _ => mpmc::Consumer::open_or_create(name, o).map(drop),
                };
                report(match r {
                    Err(Error::Mismatch { .. }) => "mismatch".to_owned(),
                    other => format!("unexpected {other:?}"),
                });
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// Receives until the stream ends; every wait is bounded: a hang is a failure, not a stall.
fn drain<F: shmchan::channel::Flavour>(rx: &mut shmchan::channel::Consumer<F>) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "the consumer never saw the end of the channel (received {got:?})"
        );
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(m) => got.push(u64::from_le_bytes(m[..8].try_into().unwrap())),
            Err(Error::Closed) => return got,
            // The consumer may or may not notice the death itself: both end the stream.
            Err(Error::PeerGone(_)) => {}
            Err(e) => panic!("the consumer got {e} instead of the end (received {got:?})"),
        }
    }
}

/// A producer SIGKILLed, then replaced by a new producer process that sends and leaves
/// cleanly, before the consumer looks: the consumer must see everything, then the end. (The
/// replacement used to take over the dead producer's record without undoing its clean-close
/// count, so the channel never closed.)
fn killed_producer_replaced(flavour: &str) {
    let name = ShmName::new(&format!("restart-{flavour}"));
    macro_rules! run {
        ($m:ident) => {{
            let mut rx = $m::Consumer::create(name.as_str(), opts()).unwrap();
            let mut victim = spawn_holding("send-and-hold", &[name.as_str(), flavour, "3"]);
            assert_eq!(read_report(&mut victim), "sent");
            kill9(victim.id());
            let _ = victim.0.take().unwrap().wait(); // reaped: certainly dead
            let out = common::spawn("send", &[name.as_str(), flavour, "2"]).wait_ok();
            assert_eq!(common::reports(&out), ["done"]);
            let got = drain(&mut rx);
            assert_eq!(got, [0, 1, 2, 0, 1], "every committed message, in order");
        }};
    }
    match flavour {
        "spsc" => run!(spsc),
        "mpsc" => run!(mpsc),
        _ => run!(mpmc),
    }
}

#[test]
fn spsc_killed_producer_replaced_then_the_channel_closes() {
    killed_producer_replaced("spsc");
}

#[test]
fn mpsc_killed_producer_replaced_then_the_channel_closes() {
    killed_producer_replaced("mpsc");
}

#[test]
fn mpmc_killed_producer_replaced_then_the_channel_closes() {
    killed_producer_replaced("mpmc");
}

/// A consumer whose attach fails (another geometry) must not make the channel look closed to
/// its producer: a full ring stays `Full`. (The failed attach used to set the "consumer seen"
/// flag and count in before the geometry check, so the producer got `Closed`.)
fn failed_attach_changes_nothing(flavour: &str) {
    let name = ShmName::new(&format!("badattach-{flavour}"));
    macro_rules! run {
        ($m:ident) => {{
            let mut tx = $m::Producer::create(name.as_str(), opts()).unwrap();
            for i in 0..8u64 {
                tx.try_send(i.to_le_bytes()).unwrap();
            }
            let out =
                common::spawn("mismatched-consumer", &[name.as_str(), flavour, "0"]).wait_ok();
            assert_eq!(common::reports(&out), ["mismatch"]);
            match tx.try_send(8u64.to_le_bytes()) {
                Err(TrySendError::Full(_)) => {}
                other => panic!("a full ring with no consumer yet must be Full: {other:?}"),
            }
        }};
    }
    match flavour {
        "spsc" => run!(spsc),
        "mpsc" => run!(mpsc),
        _ => run!(mpmc),
    }
}

#[test]
fn spsc_failed_attach_does_not_close_the_channel() {
    failed_attach_changes_nothing("spsc");
}

#[test]
fn mpsc_failed_attach_does_not_close_the_channel() {
    failed_attach_changes_nothing("mpsc");
}

#[test]
fn mpmc_failed_attach_does_not_close_the_channel() {
    failed_attach_changes_nothing("mpmc");
}
