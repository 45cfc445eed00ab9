//! The shared heap across real processes: concurrent alloc/free with content checks, forged
//! handles, SIGKILL of a holder then reclaim, exhaustion and bounded waits, a 16 MiB buffer
//! handed from one process to another.

mod common;

use std::time::Duration;

use common::{Rng, ShmName, kill9, read_report, report, reports, spawn};
use shmchan::{Error, Handle, Heap};
use zerocopy::{FromBytes, IntoBytes};

fn to_hex(h: &Handle) -> String {
    h.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Handle {
    let bytes: Vec<u8> = (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    Handle::read_from_bytes(&bytes).unwrap()
}

/// A byte pattern that depends on `seed` and the position (8-byte words).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    common::fill_xorshift(&mut v, seed | 1, len);
    v
}

const SIZES: [usize; 8] = [1, 40, 64, 1000, 4096, 20_000, 70_000, 200_000];

/// The child side of every cross-process test in this file.
#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        match role {
            // Allocates, fills, checks and frees blocks of mixed sizes; up to 12 live at once.
            "stress" => {
                let heap = Heap::open(&args[0]).unwrap();
                let seed: u64 = args[1].parse().unwrap();
                let rounds: u64 = args[2].parse().unwrap();
                let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
                let mut live: Vec<(shmchan::ShmBuf, u8)> = Vec::new();
                let mut full = 0;
                for i in 0..rounds {
                    if live.len() >= 12 || (!live.is_empty() && rng.below(3) == 0) {
                        let at = rng.below(live.len() as u64) as usize;
                        let (buf, tag) = live.swap_remove(at);
                        assert_eq!(buf.to_vec(), vec![tag; buf.len()], "block overwritten");
                        continue;
                    }
                    let len = SIZES[rng.below(SIZES.len() as u64) as usize];
                    match heap.alloc(len) {
                        Ok(mut buf) => {
                            let tag = (seed as u8).wrapping_mul(61).wrapping_add(i as u8);
                            buf.write_at(0, &vec![tag; len]).unwrap();
                            live.push((buf, tag));
                        }
                        Err(Error::OutOfMemory(_)) => full += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                for (buf, tag) in live {
                    assert_eq!(buf.to_vec(), vec![tag; buf.len()], "block overwritten");
                }
                report(format!("done full={full}"));
            }
            // Holds small and large blocks, reports, and waits to be killed.
            "hold" => {
                let heap = Heap::open(&args[0]).unwrap();
                let held: Vec<_> = [64, 64, 5000, 300_000]
                    .iter()
                    .map(|&n| heap.alloc(n).unwrap())
                    .collect();
                report(format!("held {}", held.len()));
                loop {
                    std::thread::park();
                }
            }
            // Writes a 16 MiB buffer and hands out its handle, then exits.
            "writer16" => {
                let heap = Heap::open(&args[0]).unwrap();
                let mut buf = heap.alloc(16 << 20).unwrap();
                buf.write_at(0, &pattern(42, 16 << 20)).unwrap();
                report(to_hex(&buf.into_handle()));
            }
            // Makes a small in-flight block for the parent to forge handles from.
            "handle" => {
                let heap = Heap::open(&args[0]).unwrap();
                let mut buf = heap.alloc(100).unwrap();
                buf.write_at(0, &pattern(7, 100)).unwrap();
                report(to_hex(&buf.into_handle()));
            }
            // Takes a handle and drops the buffer: frees memory for a waiting parent.
            "take-free" => {
                let heap = Heap::open(&args[0]).unwrap();
                drop(heap.take(from_hex(&args[1])).unwrap());
                report("freed");
            }
            // Allocates and frees forever (small and large, some handed out as handles), reporting
            // once it is under way, to be killed at an arbitrary instruction.
            "churn" => {
                let heap = Heap::open(&args[0]).unwrap();
                let mut rng = Rng(u64::from(std::process::id()) | 1);
                let mut live = Vec::new();
                for i in 0u64.. {
                    if i == 2000 {
                        report("churning");
                    }
                    if live.len() >= 6 || (!live.is_empty() && rng.below(2) == 0) {
                        let at = rng.below(live.len() as u64) as usize;
                        drop(live.swap_remove(at));
                        continue;
                    }
                    let len = SIZES[rng.below(SIZES.len() as u64) as usize];
                    if let Ok(buf) = heap.alloc(len) {
                        if rng.below(8) == 0 {
                            // Into flight and back: exercises both transitions.
                            let h = buf.into_handle();
                            live.push(heap.take(h).unwrap());
                        } else {
                            live.push(buf);
                        }
                    }
                }
            }
            // Allocates, fills, checks and frees large blocks (two or three chunks) in a tight
            // loop, retrying when the heap is full, so that frees of runs race new claims of
            // the same head chunks and the reclaim sweep of the slow path.
            "large-churn" => {
                let heap = Heap::open(&args[0]).unwrap();
                let seed: u64 = args[1].parse().unwrap();
                let rounds: u64 = args[2].parse().unwrap();
                let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
                let mut full = 0u64;
                for i in 0..rounds {
                    let len = [70_000, 140_000][rng.below(2) as usize];
                    let mut buf = match heap.alloc(len) {
                        Ok(buf) => buf,
                        Err(Error::OutOfMemory(_)) => {
                            full += 1;
                            heap.reclaim_dead();
                            std::thread::yield_now();
                            continue;
                        }
                        Err(e) => panic!("{e}"),
                    };
                    let tag = (seed as u8).wrapping_mul(61).wrapping_add(i as u8) | 1;
                    buf.write_at(0, &vec![tag; len]).unwrap();
                    if rng.below(4) == 0 {
                        std::thread::yield_now();
                    }
                    let got = buf.to_vec();
                    if let Some(at) = got.iter().position(|&b| b != tag) {
                        panic!(
                            "block overwritten: {len} bytes at heap offset {}, byte {at} is {} \
                             not {tag} (round {i})",
                            buf.offset(),
                            got[at]
                        );
                    }
                }
                report(format!("done full={full}"));
            }
            other => panic!("unknown role {other}"),
        }
    });
}

#[test]
fn four_processes_alloc_free_with_content_checks() {
    let name = ShmName::new("heap-stress");
    // 2 MiB for up to 4 x 12 live blocks of up to 200 KB: the children also run into
    // exhaustion, and so through the reclaim and retire paths, while the others allocate.
    let heap = Heap::create(name.as_str(), 2 << 20).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|i| spawn("stress", &[name.as_str(), &i.to_string(), "4000"]))
        .collect();
    let mut full = 0;
    for k in kids {
        let out = k.wait_ok();
        let line = reports(&out)
            .into_iter()
            .find(|l| l.starts_with("done"))
            .unwrap();
        full += line["done full=".len()..].parse::<u64>().unwrap();
    }
    assert!(
        full > 0,
        "the heap never ran full: the slow paths were not exercised"
    );
    // Everything was freed: all bytes are free again (chunks still carved count their free
    // blocks), and a heap-sized allocation succeeds once empty chunks are returned.
    assert_eq!(heap.free_bytes(), heap.capacity());
    drop(heap.alloc(heap.capacity() as usize).unwrap());
}

/// Regression: a large free racing the reclaim sweep and a new claim of the same head. The
/// freer's meta word went free first and the continuations after; a sweep (or the freer
/// itself, reading the head after its CAS) could then "finish" a run that was already freed
/// and claimed again by another process, freeing that new run's chunks under its owner.
#[test]
fn large_frees_race_sweeps_and_new_claims_of_the_same_head() {
    let name = ShmName::new("heap-large-race");
    // Five chunks: at most two runs live at once, so heads are reused all the time.
    let heap = Heap::create(name.as_str(), 5 << 16).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // A sweeper in this process too, as the slow path of a full heap runs it.
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                heap.reclaim_dead();
            }
        });
        let kids: Vec<_> = (0..3)
            .map(|i| spawn("large-churn", &[name.as_str(), &i.to_string(), "12000"]))
            .collect();
        let outs: Vec<_> = kids.into_iter().map(|k| k.wait()).collect();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        for out in outs {
            assert!(
                out.status.success(),
                "child failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
    assert_eq!(heap.free_bytes(), heap.capacity());
    drop(heap.alloc(heap.capacity() as usize).unwrap());
}

#[test]
fn sigkill_of_a_holder_then_reclaim() {
    let name = ShmName::new("heap-kill");
    let heap = Heap::create(name.as_str(), 2 << 20).unwrap();
    let mut kid = spawn("hold", &[name.as_str()]);
    assert_eq!(read_report(&mut kid), "held 4");
    let held = heap.capacity() - heap.free_bytes();
    assert!(held >= 300_000, "{held}");
    // Alive: nothing to reclaim.
    assert_eq!(heap.reclaim_dead(), 0);
    kill9(kid.id());
    let _ = kid.wait();
    let got = heap.reclaim_dead();
    assert!(got >= 64 + 64 + 5000 + 300_000, "{got}");
    assert_eq!(heap.free_bytes(), heap.capacity());
    assert_eq!(heap.reclaim_dead(), 0);
}

#[test]
fn sigkill_mid_churn_leaves_nothing_unreclaimable() {
    let name = ShmName::new("heap-churn");
    let heap = Heap::create(name.as_str(), 2 << 20).unwrap();
    for _round in 0..3 {
        let mut kids: Vec<_> = (0..2).map(|_| spawn("churn", &[name.as_str()])).collect();
        for k in &mut kids {
            assert_eq!(read_report(k), "churning");
        }
        // Killed wherever they are: inside a CAS sequence, between steps, or idle.
        for k in kids {
            kill9(k.id());
            let _ = k.wait();
        }
        heap.reclaim_dead();
        // A child killed between into_handle and take leaves a block in flight, which
        // reclaim_dead keeps (a channel could still deliver the handle); nobody else holds
        // its handles here.
        heap.reclaim_dead_in_flight();
        assert_eq!(
            heap.free_bytes(),
            heap.capacity(),
            "a killed process left something reclaim could not repair"
        );
    }
    // The whole heap can be one block again: every chunk was returned.
    drop(heap.alloc(heap.capacity() as usize).unwrap());
}

#[test]
fn sixteen_mib_buffer_by_handle_across_processes() {
    let name = ShmName::new("heap-16m");
    let heap = Heap::create(name.as_str(), 20 << 20).unwrap();
    let out = spawn("writer16", &[name.as_str()]).wait_ok();
    // The writer exited: its in-flight block was not reclaimed.
    assert_eq!(heap.reclaim_dead(), 0);
    let handle = from_hex(&reports(&out)[0]);
    assert_eq!(handle.len(), 16 << 20);
    let buf = heap.take(handle).unwrap();
    assert!(
        buf.to_vec() == pattern(42, 16 << 20),
        "16 MiB content differs"
    );
    assert!(matches!(heap.take(handle), Err(Error::Corrupt(_))));
    drop(buf);
    assert_eq!(heap.free_bytes(), heap.capacity());
}

#[test]
fn forged_and_stale_handles_are_corrupt() {
    let name = ShmName::new("heap-forge");
    let heap = Heap::create(name.as_str(), 1 << 20).unwrap();
    let out = spawn("handle", &[name.as_str()]).wait_ok();
    let good = from_hex(&reports(&out)[0]);
    let good_bytes = good.as_bytes().to_vec();
    let corrupt = |h: Handle| matches!(heap.take(h), Err(Error::Corrupt(_)));
    // Random bytes.
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for _ in 0..2000 {
        let bytes: Vec<u8> = (0..24).map(|_| rng.next() as u8).collect();
        assert!(corrupt(Handle::read_from_bytes(&bytes).unwrap()));
    }
    // Single bit flips and off-by-one fields of the real handle.
    for bit in 0..192 {
        let mut b = good_bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(corrupt(Handle::read_from_bytes(&b).unwrap()), "bit {bit}");
    }
    for (field, delta) in [
        (0usize, 1i64),
        (0, -1),
        (0, 64),
        (8, 1),
        (8, 100_000),
        (16, 1),
    ] {
        let mut b = good_bytes.clone();
        let at = field..field + if field == 16 { 4 } else { 8 };
        if field == 16 {
            let v = u32::from_le_bytes(b[at.clone()].try_into().unwrap());
            b[at].copy_from_slice(&(v as i64 + delta).to_le_bytes()[..4]);
        } else {
            let v = u64::from_le_bytes(b[at.clone()].try_into().unwrap());
            b[at].copy_from_slice(&(v as i64 + delta).to_le_bytes());
        }
        assert!(corrupt(Handle::read_from_bytes(&b).unwrap()));
    }
    // The real one works once; a second take, a stale one after free: Corrupt.
    let buf = heap.take(good).unwrap();
    assert_eq!(buf.to_vec(), pattern(7, 100));
    assert!(corrupt(good));
    drop(buf);
    assert!(corrupt(good));
    assert!(heap.handle_to_ptr(&good).is_err());
    // A handle of another heap with the same geometry.
    let other_name = ShmName::new("heap-forge-other");
    let other = Heap::create(other_name.as_str(), 1 << 20).unwrap();
    let h = other.alloc(100).unwrap().into_handle();
    assert!(corrupt(h));
    drop(other.take(h).unwrap());
    assert_eq!(heap.free_bytes(), heap.capacity());
}

#[test]
fn exhaustion_and_bounded_wait() {
    let name = ShmName::new("heap-full");
    let heap = Heap::create(name.as_str(), 1 << 20).unwrap();
    assert!(matches!(
        heap.alloc(2 << 20),
        Err(Error::InvalidArgument(_))
    ));
    let mut bufs: Vec<_> = (0..16).map(|_| heap.alloc(64 << 10).unwrap()).collect();
    assert_eq!(heap.free_bytes(), 0);
    assert!(matches!(heap.alloc(1), Err(Error::OutOfMemory(_))));
    assert!(matches!(
        heap.alloc_timeout(1, Duration::from_millis(20)),
        Err(Error::TimedOut(_))
    ));
    // Another process frees a block: the bounded wait gets it.
    let h = bufs.pop().unwrap().into_handle();
    let kid = spawn("take-free", &[name.as_str(), &to_hex(&h)]);
    let got = heap.alloc_timeout(1000, Duration::from_secs(10)).unwrap();
    kid.wait_ok();
    assert_eq!(got.len(), 1000);
    drop(got);
    drop(bufs);
    assert_eq!(heap.free_bytes(), heap.capacity());
}

#[test]
fn pointer_and_handle_conversions() {
    let name = ShmName::new("heap-ptr");
    let heap = Heap::create(name.as_str(), 1 << 20).unwrap();
    let mut buf = heap.alloc(300).unwrap();
    buf.write_at(0, b"abc").unwrap();
    let h = heap.ptr_to_handle(buf.as_ptr(), 300).unwrap();
    assert_eq!(heap.handle_to_ptr(&h).unwrap() as *const u8, buf.as_ptr());
    assert!(
        heap.ptr_to_handle(buf.as_ptr().wrapping_add(8), 300)
            .is_err()
    );
    assert!(heap.ptr_to_handle(std::ptr::null(), 1).is_err());
    assert!(
        matches!(heap.take(h), Err(Error::Corrupt(_))),
        "owned, not in flight"
    );
    assert!(matches!(
        buf.write_at(298, b"xyz"),
        Err(Error::InvalidArgument(_))
    ));
    let mut out = [0; 3];
    assert!(buf.read_at(usize::MAX, &mut out).is_err());
    buf.read_at(0, &mut out).unwrap();
    assert_eq!(&out, b"abc");
}

#[test]
fn open_checks_kind_and_destroy_unlinks() {
    let name = ShmName::new("heap-open");
    assert!(matches!(Heap::open(name.as_str()), Err(Error::NotFound(_))));
    let heap = Heap::create(name.as_str(), 100).unwrap();
    assert_eq!(heap.capacity(), 64 << 10);
    assert!(matches!(
        Heap::create(name.as_str(), 100),
        Err(Error::AlreadyExists(_))
    ));
    let peer = Heap::open(name.as_str()).unwrap();
    heap.destroy().unwrap();
    assert!(!name.exists());
    // The peer keeps its mapping.
    drop(peer.alloc(10).unwrap());
    peer.detach().unwrap();
}

#[test]
fn heap_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Heap>();
    check::<shmchan::ShmBuf>();
    check::<Handle>();
}

#[test]
fn threads_of_one_process_share_a_heap() {
    let name = ShmName::new("heap-threads");
    let heap = Heap::create(name.as_str(), 4 << 20).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let heap = &heap;
            s.spawn(move || {
                let mut rng = Rng(t + 11);
                let mut live = Vec::new();
                for i in 0..600u64 {
                    if live.len() >= 8 || (!live.is_empty() && rng.below(2) == 0) {
                        let (buf, seed): (shmchan::ShmBuf, u64) = live.pop().unwrap();
                        assert!(buf.to_vec() == pattern(seed, buf.len()));
                        continue;
                    }
                    let len = SIZES[rng.below(SIZES.len() as u64) as usize];
                    let mut buf = heap.alloc(len).unwrap();
                    let seed = t << 32 | i;
                    buf.write_at(0, &pattern(seed, len)).unwrap();
                    live.push((buf, seed));
                }
            });
        }
    });
    assert_eq!(heap.free_bytes(), heap.capacity());
}

#[test]
fn handles_travel_through_a_channel() {
    use shmchan::{Options, spsc};
    let heap_name = ShmName::new("heap-chan-h");
    let chan_name = ShmName::new("heap-chan-c");
    let heap = Heap::create(heap_name.as_str(), 1 << 20).unwrap();
    let opts = || Options::new().slot_size(64).capacity(4);
    let mut tx = spsc::Producer::create(chan_name.as_str(), opts()).unwrap();
    let mut rx = spsc::Consumer::open(chan_name.as_str(), opts()).unwrap();
    let mut buf = heap.alloc(100_000).unwrap();
    buf.write_at(0, &pattern(3, 100_000)).unwrap();
    tx.try_send_value(buf.into_handle()).unwrap();
    let handle: Handle = rx.try_recv_value().unwrap();
    let got = heap.take(handle).unwrap();
    assert!(got.to_vec() == pattern(3, 100_000));
}
