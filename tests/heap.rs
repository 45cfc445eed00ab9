//! The shared heap across real processes.

mod common;

use std::time::{Duration, Instant};

use common::{Rng, ShmName, kill9, read_report, report, reports};
use shmchan::heap::PAGE;
use shmchan::{Error, Handle, Heap, Options, spsc};
use zerocopy::{FromBytes, IntoBytes};

fn fill(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    (0..len).map(|_| r.next() as u8).collect()
}

#[test]
fn child_entry() {
    let Some((role, args)) = common::role() else {
        return;
    };
    let heap = Heap::open(&args[0]).unwrap();
    match role.as_str() {
        // Allocates, fills, checks and frees random blocks, keeping up to 8 alive.
        "stress" => {
            let seed: u64 = args[1].parse().unwrap();
            let mut rng = Rng(seed);
            let mut live: Vec<(shmchan::ShmBuf, u64)> = Vec::new();
            let mut oom = 0;
            for i in 0..1500u64 {
                if live.len() < 8 && rng.below(3) != 0 {
                    let len = 1 + rng.below(6 * PAGE as u64) as usize;
                    match heap.alloc(len) {
                        Ok(mut b) => {
                            let tag = seed << 32 | i;
                            b.write_at(0, &fill(tag, len)).unwrap();
                            live.push((b, tag));
                        }
                        Err(Error::OutOfMemory(_)) => oom += 1,
                        Err(e) => panic!("{e}"),
                    }
                } else if !live.is_empty() {
                    let (b, tag) = live.swap_remove(rng.below(live.len() as u64) as usize);
                    assert_eq!(b.to_vec(), fill(tag, b.len()), "a block was overwritten");
                }
            }
            for (b, tag) in live {
                assert_eq!(b.to_vec(), fill(tag, b.len()));
            }
            report(format!("ok {oom}"));
        }
        // Allocates blocks and holds them until killed.
        "hold" => {
            let _bufs: Vec<_> = (0..10).map(|_| heap.alloc(3 * PAGE).unwrap()).collect();
            report("holding");
            std::thread::sleep(Duration::from_secs(60));
        }
        // Receives a handle over a channel, takes the block and checks its content.
        "receive" => {
            let mut rx = spsc::Consumer::open(&args[1], Options::new()).unwrap();
            let h: Handle = rx.recv_value_blocking().unwrap();
            let b = heap.take(h).unwrap();
            assert_eq!(b.len(), 16 << 20);
            assert_eq!(b.to_vec(), fill(16, 16 << 20), "the 16 MiB payload differs");
            assert!(heap.take(h).is_err(), "a handle is taken once");
            report("received");
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn four_processes_allocate_and_free_without_overlap() {
    let name = ShmName::new("heapstress");
    let heap = Heap::create(name.as_str(), 1 << 20).unwrap();
    let kids: Vec<_> = (1..=4)
        .map(|s| common::spawn("stress", &[name.as_str(), &s.to_string()]))
        .collect();
    for k in kids {
        let out = k.wait_ok();
        assert!(reports(&out)[0].starts_with("ok"), "{:?}", reports(&out));
    }
    assert_eq!(heap.free_bytes(), heap.capacity(), "every block came back");
}

#[test]
fn forged_stale_and_double_taken_handles_are_corrupt() {
    let name = ShmName::new("heapforge");
    let heap = Heap::create(name.as_str(), 64 * PAGE).unwrap();
    let mut b = heap.alloc(2 * PAGE + 5).unwrap();
    b.write_at(0, b"x").unwrap();
    let h = b.into_handle();
    let bytes = h.as_bytes().to_vec();
    // Random bytes and single-bit flips of a valid handle.
    let mut rng = Rng(9);
    for _ in 0..2000 {
        let mut v = bytes.clone();
        if rng.below(2) == 0 {
            v.iter_mut().for_each(|x| *x = rng.next() as u8);
        } else {
            let bit = rng.below(8 * v.len() as u64) as usize;
            v[bit / 8] ^= 1 << (bit % 8);
        }
        let forged = Handle::read_from_bytes(&v[..]).unwrap();
        if forged != h {
            assert!(matches!(heap.take(forged), Err(Error::Corrupt(_))));
        }
    }
    // A handle of another heap.
    let other_name = ShmName::new("heapother");
    let other = Heap::create(other_name.as_str(), 64 * PAGE).unwrap();
    assert!(matches!(other.take(h), Err(Error::Corrupt(_))));
    // The real one works once; then it is stale.
    let got = heap.take(h).unwrap();
    assert_eq!(got.len(), 2 * PAGE + 5);
    assert!(matches!(heap.take(h), Err(Error::Corrupt(m)) if m.contains("not a block in flight")));
    drop(got);
    // After free and reuse of the same pages, the old handle is stale.
    let again = heap.alloc(2 * PAGE + 5).unwrap();
    let h2 = again.into_handle();
    assert!(matches!(heap.take(h), Err(Error::Corrupt(_))));
    heap.take(h2).unwrap();
}

#[test]
fn blocks_of_a_killed_process_are_reclaimed() {
    let name = ShmName::new("heapkill");
    let heap = Heap::create(name.as_str(), 64 * PAGE).unwrap();
    let mut child = common::spawn("hold", &[name.as_str()]);
    assert_eq!(read_report(&mut child), "holding");
    assert_eq!(heap.free_bytes(), heap.capacity() - 30 * PAGE);
    assert_eq!(heap.reclaim_dead(), 0, "a live owner's blocks stay");
    kill9(child.id());
    drop(child); // reaped
    assert_eq!(heap.reclaim_dead(), 30 * PAGE);
    assert_eq!(heap.free_bytes(), heap.capacity());
}

#[test]
fn exhaustion_is_an_error_or_a_bounded_wait() {
    let name = ShmName::new("heapfull");
    let heap = Heap::create(name.as_str(), 8 * PAGE).unwrap();
    let all = heap.alloc(8 * PAGE).unwrap();
    let e = heap.alloc(1).unwrap_err();
    assert!(
        matches!(&e, Error::OutOfMemory(m) if m.contains(name.as_str())),
        "{e}"
    );
    assert!(matches!(
        heap.alloc(9 * PAGE),
        Err(Error::InvalidArgument(_))
    ));
    let t = Instant::now();
    assert!(matches!(
        heap.alloc_timeout(1, Duration::from_millis(30)),
        Err(Error::OutOfMemory(_))
    ));
    assert!(t.elapsed() >= Duration::from_millis(30));
    // Fragmentation: with every other page taken, a two-page block does not fit.
    drop(all);
    let pages: Vec<_> = (0..8).map(|_| heap.alloc(1).unwrap()).collect();
    let odd: Vec<_> = pages
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .collect();
    assert_eq!(heap.free_bytes(), 4 * PAGE);
    assert!(matches!(heap.alloc(2 * PAGE), Err(Error::OutOfMemory(_))));
    drop(odd);
    heap.alloc(8 * PAGE).unwrap();
}

#[test]
fn a_16_mib_message_end_to_end_by_handle() {
    let name = ShmName::new("heap16");
    let chan = ShmName::new("heap16c");
    let heap = Heap::create(name.as_str(), 32 << 20).unwrap();
    let mut tx = spsc::Producer::create(chan.as_str(), Options::new()).unwrap();
    let mut child = common::spawn("receive", &[name.as_str(), chan.as_str()]);
    let mut buf = heap.alloc(16 << 20).unwrap();
    buf.write_at(0, &fill(16, 16 << 20)).unwrap();
    tx.send_value_blocking(buf.into_handle()).unwrap();
    assert_eq!(read_report(&mut child), "received");
    child.wait_ok();
    assert_eq!(
        heap.free_bytes(),
        heap.capacity(),
        "the receiver freed the block"
    );
}
