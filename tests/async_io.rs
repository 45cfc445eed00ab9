//! Async channels on async-io (the reactor behind smol and async-std), across real processes.
#![cfg(feature = "async-io")]

mod common;

use std::time::{Duration, Instant};

use common::{ShmName, check_message, kill9, message, read_report, report, reports};
use futures::StreamExt;
use shmchan::{Error, Options, mpmc, spsc};

const MAX: usize = 64;

fn opts() -> Options {
    common::opts(MAX, 16, Some(Duration::from_secs(30)))
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let name = &args[0];
        match role {
            // async-io producer with idle gaps (async_io::Timer), blocking in between.
            "produce" => {
                let count: u64 = args[1].parse().unwrap();
                async_io::block_on(async {
                    let mut tx = mpmc::Producer::open(name, opts()).unwrap();
                    for i in 0..count {
                        tx.send(message(0, i, MAX)).await.unwrap();
                        if i % 97 == 0 {
                            async_io::Timer::after(Duration::from_micros(800)).await;
                        }
                    }
                });
                report("sent");
            }
            "idle-producer" => {
                common::ready_then_idle(spsc::Producer::open(name, opts()).unwrap());
            }
            other => panic!("unknown role {other}"),
        }
    });
}

#[test]
fn async_io_stream_across_processes() {
    const N: u64 = 20_000;
    let name = ShmName::new("aio");
    async_io::block_on(async {
        let mut rx = mpmc::Consumer::create(name.as_str(), opts()).unwrap();
        let child = common::spawn("produce", &[name.as_str(), &N.to_string()]);
        let mut i = 0;
        while let Some(m) = rx.next().await {
            assert_eq!(check_message(&m.unwrap(), MAX), (0, i));
            i += 1;
        }
        assert_eq!(i, N);
        assert_eq!(reports(&child.wait_ok()), ["sent"]);
    });
}

#[test]
fn async_io_death_wake_through_pidfd() {
    let name = ShmName::new("aiodeath");
    let mut rx = spsc::Consumer::create(name.as_str(), opts()).unwrap();
    let mut child = common::spawn("idle-producer", &[name.as_str()]);
    assert_eq!(read_report(&mut child), "ready");
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100)); // let the task park
        kill9(pid);
        Instant::now()
    });
    let r = async_io::block_on(rx.recv());
    let woke = Instant::now();
    let killed = killer.join().unwrap();
    assert!(matches!(r, Err(Error::PeerGone(_))), "{r:?}");
    assert!(woke.saturating_duration_since(killed) < Duration::from_secs(2));
}
