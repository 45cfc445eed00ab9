//! Asymmetric fences (`sys/membarrier.rs`): a publish fences only against the compiler, and a
//! waiter that parks makes the kernel fence every CPU that runs a registered process. A
//! lost wake-up would leave a parked side asleep until its liveness check (set to a minute
//! here), so every hop of these ping-pongs, where each side parks for every message
//! (`WaitStrategy::park_only`), is held to a bound far below that. Real processes on both
//! sides, in each mix of modes: both registered, and one of them with membarrier turned off
//! (`SHMCHAN_MEMBARRIER=0`: full fences as a waker; as a waiter it cannot know whether its
//! wakers fence, so its parks are bounded by 1 ms instead).

#![cfg(feature = "tokio")]

mod common;

use std::time::{Duration, Instant};

use common::{ChildGuard, ShmName, command, report, reports, rt};
use shmchan::{Options, spsc};

const TRIPS: u64 = 1000;
/// A hop that takes this long lost its wake-up (the liveness check would end it after a
/// minute); a parked hop takes well under a millisecond.
const HOP_BOUND: Duration = Duration::from_secs(10);

fn opts() -> Options {
    common::parked_opts(8, 4)
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let names = || (args[0].as_str(), args[1].as_str());
        match role {
            "echo-blocking" => {
                let (ab, ba) = names();
                let mut rx = spsc::Consumer::open(ab, opts()).unwrap();
                let mut tx = spsc::Producer::open(ba, opts()).unwrap();
                for i in 0..TRIPS {
                    let m = rx.recv_blocking().unwrap();
                    assert_eq!(m[..], i.to_le_bytes());
                    tx.send_blocking(m).unwrap();
                }
                report(format!("parks {}", rx.wait_stats().parks));
            }
            "echo-async" => rt().block_on(async {
                let (ab, ba) = names();
                let mut rx = spsc::Consumer::open(ab, opts()).unwrap();
                let mut tx = spsc::Producer::open(ba, opts()).unwrap();
                for i in 0..TRIPS {
                    let m = rx.recv().await.unwrap();
                    assert_eq!(m[..], i.to_le_bytes());
                    tx.send(m).await.unwrap();
                }
                report(format!("parks {}", rx.wait_stats().parks));
            }),
            // Started with membarrier turned off: drives a registered echo.
            "drive" => {
                ping_pong("echo-blocking", None, false);
                ping_pong("echo-async", None, true);
                report("done");
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// Runs `TRIPS` round trips against an echoing child started with `child_env` (the value of
/// `SHMCHAN_MEMBARRIER`, or none), asserting every hop within `HOP_BOUND` and that both
/// sides parked for many messages (so the wake path is what was tested; nearly all of them
/// when nothing slows a side down).
fn ping_pong(role: &str, child_env: Option<&str>, parent_async: bool) {
    let (ab, ba) = (ShmName::new("fence-ab"), ShmName::new("fence-ba"));
    let mut tx = spsc::Producer::create(ab.as_str(), opts()).unwrap();
    let mut rx = spsc::Consumer::create(ba.as_str(), opts()).unwrap();
    let mut cmd = command(role, &[ab.as_str(), ba.as_str()]);
    if let Some(v) = child_env {
        cmd.env("SHMCHAN_MEMBARRIER", v);
    } else {
        cmd.env_remove("SHMCHAN_MEMBARRIER");
    }
    let child = ChildGuard::spawn(cmd);
    let mut slowest = Duration::ZERO;
    let rt = rt();
    for i in 0..TRIPS {
        let t = Instant::now();
        let m = if parent_async {
            rt.block_on(async {
                tx.send(i.to_le_bytes()).await.unwrap();
                rx.recv().await.unwrap()
            })
        } else {
            tx.send_blocking(i.to_le_bytes()).unwrap();
            rx.recv_blocking().unwrap()
        };
        assert_eq!(m[..], i.to_le_bytes());
        slowest = slowest.max(t.elapsed());
        assert!(
            slowest < HOP_BOUND,
            "round trip {i} took {slowest:?}: a wake-up was lost"
        );
    }
    let out = child.wait_ok();
    let parks: u64 = reports(&out)
        .iter()
        .find_map(|l| l.strip_prefix("parks ").map(|n| n.parse().unwrap()))
        .expect("the child's report");
    assert!(
        parks > TRIPS / 10,
        "the child parked for {parks} of {TRIPS} messages"
    );
    assert!(
        rx.wait_stats().parks > TRIPS / 10,
        "we parked for {:?}",
        rx.wait_stats()
    );
}

#[test]
fn parked_round_trips_between_registered_processes_lose_no_wake_up() {
    ping_pong("echo-blocking", None, false);
    ping_pong("echo-async", None, true);
}

#[test]
fn a_peer_without_membarrier_loses_no_wake_up_either_way() {
    // The child wakes with full fences and parks bounded; we wake with light fences.
    ping_pong("echo-blocking", Some("0"), false);
    ping_pong("echo-async", Some("0"), true);
    ping_pong("echo-async", Some("0"), false);
}

#[test]
fn a_process_without_membarrier_loses_no_wake_up_of_a_registered_peer() {
    // We wake with full fences and park bounded; the echo wakes with light fences.
    let mut cmd = command("drive", &[]);
    cmd.env("SHMCHAN_MEMBARRIER", "0");
    let out = ChildGuard::spawn(cmd).wait_ok();
    assert_eq!(reports(&out), ["done"]);
}
