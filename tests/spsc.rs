//! SPSC channels across real processes: streams, close, death, InUse, mismatch, timeouts.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{ShmName, check_message, kill9, message, read_report, report, reports, spawn_holding};
use shmchan::{Error, Options, TryRecvError, spsc};

const MAX: usize = 64;

fn opts() -> Options {
    common::opts(MAX, 64, common::ms(20))
}

/// Blocks until the parent closes our stdin (or kills us).
fn hold() {
    let _ = std::io::stdin().read(&mut [0u8; 1]);
}

/// Checks that the peer killed at `killed` ended the stream with `PeerGone`, within 5 s.
fn assert_peer_gone_soon(end: &Error, killed: Instant) {
    assert!(matches!(end, Error::PeerGone(_)), "{end}");
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "took {:?}",
        killed.elapsed()
    );
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let name = &args[0];
        match role {
            "produce" => {
                let count: u64 = args[1].parse().unwrap();
                let mut tx = spsc::Producer::open(name, opts()).unwrap();
                for i in 0..count {
                    tx.send_blocking(message(0, i, MAX)).unwrap();
                }
                report("sent");
            }
            "produce-forever" => {
                let mut tx = spsc::Producer::open(name, opts()).unwrap();
                report("ready");
                let mut i = 0;
                while tx.send_blocking(message(0, i, MAX)).is_ok() {
                    i += 1;
                }
            }
            "consume-forever" => {
                let mut rx = spsc::Consumer::open(name, opts()).unwrap();
                report("ready");
                let mut next = 0;
                loop {
                    let m = rx.recv_blocking().unwrap();
                    assert_eq!(check_message(&m, MAX), (0, next));
                    next += 1;
                }
            }
            "hold-producer" => {
                let _tx = spsc::Producer::open(name, opts()).unwrap();
                report("ready");
                hold();
            }
            "second-producer" => {
                report(common::open_outcome(spsc::Producer::open(name, opts())));
            }
            other => panic!("unknown role {other}"),
        }
    });
}

#[test]
fn a_million_messages_arrive_in_order_and_intact() {
    const N: u64 = 1_000_000;
    let name = ShmName::new("million");
    let mut rx = spsc::Consumer::create(name.as_str(), opts()).unwrap();
    let child = common::spawn("produce", &[name.as_str(), &N.to_string()]);
    for i in 0..N {
        let m = rx.recv_blocking().unwrap();
        assert_eq!(check_message(&m, MAX), (0, i));
    }
    // The producer left cleanly: the stream ends with Closed, not PeerGone.
    assert!(matches!(rx.recv_blocking(), Err(Error::Closed)));
    assert_eq!(reports(&child.wait_ok()), ["sent"]);
}

#[test]
fn a_killed_producer_is_peer_gone_after_the_committed_messages() {
    let name = ShmName::new("killprod");
    let mut rx = spsc::Consumer::create(name.as_str(), opts()).unwrap();
    let mut child = common::spawn("produce-forever", &[name.as_str()]);
    assert_eq!(read_report(&mut child), "ready");
    let mut next = 0;
    while next < 20_000 {
        let m = rx.recv_blocking().unwrap();
        assert_eq!(check_message(&m, MAX), (0, next));
        next += 1;
    }
    kill9(child.id());
    let killed = Instant::now();
    // Everything committed before the kill still arrives, in order and intact; then PeerGone.
    let end = loop {
        match rx.recv_blocking() {
            Ok(m) => {
                assert_eq!(check_message(&m, MAX), (0, next));
                next += 1;
            }
            Err(e) => break e,
        }
    };
    assert_peer_gone_soon(&end, killed);
    // A new producer can take the dead one's place.
    let mut tx = spsc::Producer::open(name.as_str(), opts()).unwrap();
    tx.try_send(b"again").unwrap();
    assert_eq!(&*rx.recv_blocking().unwrap(), b"again");
}

#[test]
fn a_killed_consumer_is_peer_gone_and_a_new_consumer_resumes() {
    let name = ShmName::new("killcons");
    let mut tx = spsc::Producer::create(name.as_str(), opts()).unwrap();
    let mut child = common::spawn("consume-forever", &[name.as_str()]);
    assert_eq!(read_report(&mut child), "ready");
    let mut sent = 0u64;
    while sent < 20_000 {
        tx.send_blocking(message(0, sent, MAX)).unwrap();
        sent += 1;
    }
    kill9(child.id());
    let killed = Instant::now();
    let end = loop {
        match tx.send_blocking(message(0, sent, MAX)) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    assert_peer_gone_soon(&end, killed);
    drop(child);
    // The ring holds a contiguous run of the stream ending with the last message sent.
    let mut rx = spsc::Consumer::open(name.as_str(), opts()).unwrap();
    let mut last = None;
    while let Ok(m) = rx.try_recv() {
        let (_, i) = check_message(&m, MAX);
        if let Some(prev) = last {
            assert_eq!(i, prev + 1);
        }
        last = Some(i);
    }
    assert_eq!(last, Some(sent - 1));
}

#[test]
fn a_second_live_producer_is_in_use_until_the_first_dies() {
    let name = ShmName::new("inuse");
    let _rx = spsc::Consumer::create(name.as_str(), opts()).unwrap();
    let mut holder = spawn_holding("hold-producer", &[name.as_str()]);
    assert_eq!(read_report(&mut holder), "ready");
    let out = common::spawn("second-producer", &[name.as_str()]).wait_ok();
    let line = &reports(&out)[0];
    assert!(
        line.starts_with("in use") && line.contains(name.as_str()),
        "{line}"
    );
    assert!(matches!(
        spsc::Producer::open(name.as_str(), opts()),
        Err(Error::InUse(_))
    ));
    kill9(holder.id());
    drop(holder); // reaped: the record's process is gone
    spsc::Producer::open(name.as_str(), opts()).unwrap();
}

#[test]
fn geometry_and_flavour_mismatches_are_reported() {
    let name = ShmName::new("mismatch");
    let _tx = spsc::Producer::create(name.as_str(), opts()).unwrap();
    let e = spsc::Consumer::open_or_create(name.as_str(), opts().slot_size(MAX * 2)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Mismatch {
                what: "slot size",
                expected: 128,
                found: 64,
                ..
            }
        ),
        "{e}"
    );
    let e = spsc::Consumer::open_or_create(name.as_str(), opts().capacity(3)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Mismatch {
                what: "capacity",
                expected: 3,
                found: 64,
                ..
            }
        ),
        "{e}"
    );
    let e = shmchan::mpmc::Consumer::open(name.as_str(), opts()).unwrap_err();
    assert!(matches!(e, Error::Mismatch { what: "kind", .. }), "{e}");
    let rx = spsc::Consumer::open_or_create(name.as_str(), opts()).unwrap();
    assert!(!rx.is_creator());
    assert_eq!((rx.slot_size(), rx.capacity()), (MAX, 64));
}

#[test]
fn timeouts_are_honoured() {
    let name = ShmName::new("timeouts");
    let mut tx = spsc::Producer::create(name.as_str(), opts().capacity(2)).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str(), opts()).unwrap();
    for timeout in [Duration::from_millis(30), Duration::from_millis(120)] {
        let t = Instant::now();
        let e = rx.recv_timeout(timeout).unwrap_err();
        let took = t.elapsed();
        assert!(
            matches!(&e, Error::TimedOut(m) if m.contains(name.as_str())),
            "{e}"
        );
        // Lower bound exact; upper bound generous for a shared, loaded 2-core machine.
        assert!(
            took >= timeout && took < timeout + Duration::from_millis(400),
            "{took:?}"
        );
    }
    tx.try_send(b"1").unwrap();
    tx.try_send(b"2").unwrap();
    let t = Instant::now();
    let e = tx
        .send_timeout(b"3", Duration::from_millis(50))
        .unwrap_err();
    assert!(e.is_timeout());
    assert_eq!(e.into_inner(), b"3");
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert_eq!(&*rx.recv_timeout(Duration::from_millis(50)).unwrap(), b"1");
    assert!(matches!(rx.try_recv(), Ok(m) if &*m == b"2"));
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
}

#[test]
fn name_is_removed_by_the_last_participant_out() {
    let name = ShmName::new("lastout");
    let tx = spsc::Producer::create(name.as_str(), opts()).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str(), opts()).unwrap();
    let mut tx = tx;
    tx.try_send(b"kept").unwrap();
    drop(tx);
    assert!(name.exists(), "the consumer is still attached");
    drop(rx);
    assert!(name.exists(), "a queued message keeps the channel");
    rx = spsc::Consumer::open(name.as_str(), opts()).unwrap();
    assert_eq!(&*rx.try_recv().unwrap(), b"kept");
    drop(rx);
    assert!(
        !name.exists(),
        "the last participant out of an empty channel unlinks it"
    );
}

#[test]
fn a_short_message_in_a_slot_that_held_a_long_one_is_only_its_own_bytes() {
    // Short messages are copied out as a whole 64-byte block of their slot: what the slot
    // held before, past the message's length, must never show.
    let name = ShmName::new("spsc-short-after-long");
    let o = Options::new().slot_size(64).capacity(1);
    let mut rx = spsc::Consumer::create(name.as_str(), o.clone()).unwrap();
    let mut tx = spsc::Producer::open(name.as_str(), o).unwrap();
    for len in (0..=64usize).rev() {
        tx.try_send([0xaa; 64]).unwrap();
        assert_eq!(&*rx.try_recv().unwrap(), &[0xaa; 64][..]);
        let short: Vec<u8> = (0..len as u8).collect();
        tx.try_send(&short).unwrap();
        let got = rx.try_recv().unwrap();
        assert_eq!(got.len(), len);
        assert_eq!(&*got, &short[..]);
        assert_eq!(got.clone(), got);
        assert_eq!(got.clone().into_vec(), short);
        assert_eq!(&got.into_bytes()[..], &short[..]);
    }
}

#[test]
fn every_length_round_trips_in_every_small_slot_size() {
    // Small messages are written with word copies (lengths up to 16) and read as fixed 16-,
    // 32- or 64-byte blocks, chosen by the slot size: every length in every slot size around
    // those tiers arrives exactly, with nothing of the slot's earlier bytes, on the SPSC and
    // the Vyukov rings, through `try_recv` and `recv_many`.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for slot in [1usize, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65] {
        let name = ShmName::new(&format!("every-length-{slot}"));
        let o = Options::new().slot_size(slot).capacity(2);
        let mut rx = spsc::Consumer::create(name.as_str(), o.clone()).unwrap();
        let mut tx = spsc::Producer::open(name.as_str(), o.clone()).unwrap();
        let name2 = ShmName::new(&format!("every-length-mpmc-{slot}"));
        let mut mtx = shmchan::mpmc::Producer::create(name2.as_str(), o.clone()).unwrap();
        let mut mrx = shmchan::mpmc::Consumer::open(name2.as_str(), o).unwrap();
        for len in 0..=slot {
            let full = vec![0x5a; slot];
            let msg: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(7).wrapping_add(1))
                .collect();
            tx.try_send(&full).unwrap();
            assert_eq!(&*rx.try_recv().unwrap(), &full[..], "slot {slot}");
            tx.try_send(&msg).unwrap();
            tx.try_send(&msg).unwrap();
            assert_eq!(
                &*rx.try_recv().unwrap(),
                &msg[..],
                "slot {slot}, length {len}"
            );
            let mut batch = Vec::new();
            assert_eq!(rt.block_on(rx.recv_many(&mut batch, 4)).unwrap(), 1);
            assert_eq!(&*batch[0], &msg[..], "slot {slot}, length {len} (batch)");

            mtx.try_send(&full).unwrap();
            assert_eq!(&*mrx.try_recv().unwrap(), &full[..], "mpmc slot {slot}");
            mtx.try_send(&msg).unwrap();
            assert_eq!(
                &*mrx.try_recv().unwrap(),
                &msg[..],
                "mpmc slot {slot}, length {len}"
            );
        }
    }
}
