//! Large messages across real processes: 4 MiB messages on SPSC, MPSC, MPMC and an
//! Endpoint (with a per-connection memfd heap), small and large mixed in order, a consumer
//! killed while holding blocks (reclaimed without user code), hostile handles (`Corrupt`),
//! and async allocation that waits for a free in another process (tokio and async-io).

mod common;

use std::io::Write;
use std::time::Duration;

use common::{ShmName, kill9, read_report, report, rt, spawn, spawn_holding};
use shmchan::channel::{Consumer, Flavour, LargeMessage, Mpmc, Mpsc, Producer, Spsc};
use shmchan::{Error, Heap, Options};

const MIB: usize = 1 << 20;
/// Tag of a block frame (`channel/large.rs`), for forging slots.
const FRAME_BLOCK: u32 = 0x314b_4c53;

/// Payload `i` of producer `p`: its length, then bytes that depend on (p, i) and position.
fn payload(p: u64, i: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    let x = (p << 32 | i).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    v.extend_from_slice(&p.to_le_bytes()[..4]);
    v.extend_from_slice(&(i as u32).to_le_bytes());
    common::fill_xorshift(&mut v, x, len);
    v
}

/// The length of message `i`: every third one 4 MiB, the others small (inline).
fn len_of(i: u64) -> usize {
    match i % 3 {
        0 => 4 * MIB,
        1 => 16 + i as usize % 40,
        _ => 100 + i as usize,
    }
}

/// Checks a received message against `payload` and returns its (producer, index).
fn check(m: &LargeMessage) -> (u64, u64) {
    let bytes = m.to_vec();
    assert!(bytes.len() >= 8, "a {}-byte message", bytes.len());
    let p = u64::from(u32::from_le_bytes(bytes[..4].try_into().unwrap()));
    let i = u64::from(u32::from_le_bytes(bytes[4..8].try_into().unwrap()));
    assert_eq!(
        bytes.len(),
        len_of(i),
        "message {p}/{i} has the wrong length"
    );
    assert_eq!(
        m.is_block(),
        bytes.len() > 200,
        "message {p}/{i} took the wrong path"
    );
    assert!(
        bytes == payload(p, i, len_of(i)),
        "message {p}/{i} is corrupt"
    );
    (p, i)
}

fn opts() -> Options {
    common::opts(256, 8, None)
}

/// Producer `p` sends `n` messages of mixed sizes, asynchronously.
fn produce<F: Flavour>(chan: &str, heap: &str, p: u64, n: u64) {
    let heap = Heap::open(heap).unwrap();
    rt().block_on(async {
        let mut tx = Producer::<F>::open(chan, opts()).unwrap();
        tx.attach_heap(&heap).unwrap();
        for i in 0..n {
            tx.send_large(&payload(p, i, len_of(i))).await.unwrap();
        }
    });
}

/// The child side of every cross-process test in this file.
#[test]
fn child_entry() {
    common::dispatch(|role, args| match role {
        "produce-spsc" => produce::<Spsc>(&args[0], &args[1], args[2].parse().unwrap(), 12),
        "produce-mpsc" => produce::<Mpsc>(&args[0], &args[1], args[2].parse().unwrap(), 12),
        "produce-mpmc" => produce::<Mpmc>(&args[0], &args[1], args[2].parse().unwrap(), 12),
        // Receives two 4 MiB blocks and holds them until killed.
        "hold" => {
            let heap = Heap::open(&args[1]).unwrap();
            let mut rx = Consumer::<Spsc>::open(&args[0], opts()).unwrap();
            rx.attach_heap(&heap).unwrap();
            let a = rx.recv_large_blocking().unwrap();
            let b = rx.recv_large_blocking().unwrap();
            assert!(a.is_block() && b.is_block());
            report("holding");
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            drop((a, b));
        }
        // Writes forged frames, then a real message.
        "forge" => {
            let heap = Heap::open(&args[1]).unwrap();
            let mut tx = Producer::<Spsc>::open(&args[0], opts()).unwrap();
            tx.attach_heap(&heap).unwrap();
            // Random bytes as a handle.
            let mut f = FRAME_BLOCK.to_le_bytes().to_vec();
            f.extend_from_slice(&24u32.to_le_bytes());
            f.extend((0..24u8).map(|b| b.wrapping_mul(37) ^ 0x5a));
            tx.send_blocking(&f).unwrap();
            // A length that does not fit the message.
            let mut g = FRAME_BLOCK.to_le_bytes().to_vec();
            g.extend_from_slice(&4000u32.to_le_bytes());
            tx.send_blocking(&g).unwrap();
            // A frame that is not one at all.
            tx.send_blocking(b"plain bytes, no header").unwrap();
            // A handle that was valid once: sent, taken back (freed), then sent again.
            let buf = heap.alloc(MIB).unwrap();
            let h = buf.into_handle();
            drop(heap.take(h).unwrap());
            let mut s = FRAME_BLOCK.to_le_bytes().to_vec();
            s.extend_from_slice(&24u32.to_le_bytes());
            s.extend_from_slice(zerocopy::IntoBytes::as_bytes(&h));
            tx.send_blocking(&s).unwrap();
            tx.send_large_blocking(&payload(9, 0, 4 * MIB)).unwrap();
        }
        // Fills nothing: waits (async) for room that the parent frees.
        "alloc-wait" => {
            let heap = Heap::open(&args[0]).unwrap();
            let cap = heap.capacity() as usize;
            let run = async {
                let mut fut = std::pin::pin!(heap.alloc_async(cap));
                // The parent holds the whole heap: the first polls must stay pending.
                let first = futures::poll!(fut.as_mut());
                assert!(first.is_pending(), "allocated from a full heap");
                report("waiting");
                let buf = fut.await.unwrap();
                assert_eq!(buf.len(), cap);
            };
            if args[1] == "tokio" {
                rt().block_on(run);
            } else {
                futures::executor::block_on(run);
            }
        }
        // Connects to a listener with connection heaps, receives and echoes large messages.
        "ep-client" => rt().block_on(async {
            let mut ep = shmchan::endpoint::Endpoint::connect(&args[0])
                .await
                .unwrap();
            assert!(ep.heap().is_some(), "the connection has no heap");
            for i in 0..6u64 {
                let m = ep.recv_large().await.unwrap();
                assert_eq!(check(&m), (1, i));
                drop(m);
                ep.send_large(&payload(2, i, len_of(i))).await.unwrap();
            }
        }),
        other => panic!("unknown role {other}"),
    });
}

/// One consumer in this process receives `n` messages from each of `producers` children.
fn fan_in<F: Flavour>(tag: &str, role: &str, producers: u64, n: u64) {
    let chan = ShmName::new(tag);
    let heap_name = ShmName::new(&format!("{tag}-heap"));
    // Room for three 4 MiB blocks: producers wait for the consumer's frees (async alloc).
    let heap = Heap::options()
        .unlink_on_drop(true)
        .create(heap_name.as_str(), 12 * MIB + 64 * 1024)
        .unwrap();
    let mut rx = Consumer::<F>::create(chan.as_str(), opts()).unwrap();
    rx.attach_heap(&heap).unwrap();
    let kids: Vec<_> = (0..producers)
        .map(|p| {
            spawn(
                role,
                &[chan.as_str(), heap_name.as_str(), &(p + 1).to_string()],
            )
        })
        .collect();
    let mut next = vec![0u64; producers as usize + 1];
    for _ in 0..producers * n {
        let m = rx.recv_large_blocking().unwrap();
        let (p, i) = check(&m);
        assert_eq!(i, next[p as usize], "producer {p} out of order");
        next[p as usize] += 1;
    }
    for k in kids {
        k.wait_ok();
    }
    assert_eq!(heap.free_bytes(), heap.capacity(), "blocks leaked");
}

#[test]
fn spsc_4mib_mixed_with_small_in_order() {
    fan_in::<Spsc>("lspsc", "produce-spsc", 1, 12);
}

#[test]
fn mpsc_4mib_from_two_processes() {
    fan_in::<Mpsc>("lmpsc", "produce-mpsc", 2, 12);
}

#[test]
fn mpmc_4mib_from_two_processes() {
    fan_in::<Mpmc>("lmpmc", "produce-mpmc", 2, 12);
}

#[test]
fn endpoint_connection_heap_4mib_both_ways_leaves_nothing_in_dev_shm() {
    let name = format!("/shmchan-t-lep-{}", std::process::id());
    let before = shm_entries();
    rt().block_on(async {
        let mut listener = shmchan::endpoint::Listener::bind(&name, Options::new())
            .unwrap()
            .heap_size(16 * MIB);
        let kid = spawn("ep-client", &[&name]);
        let mut ep = listener.accept().await.unwrap();
        let heap = ep.heap().expect("the listener attached a heap").clone();
        for i in 0..6u64 {
            ep.send_large(&payload(1, i, len_of(i))).await.unwrap();
            let m = ep.recv_large().await.unwrap();
            assert_eq!(check(&m), (2, i));
        }
        assert_eq!(
            shm_entries(),
            before,
            "a connection heap appeared in /dev/shm"
        );
        tokio::task::spawn_blocking(move || kid.wait_ok())
            .await
            .unwrap();
        assert_eq!(heap.free_bytes(), heap.capacity(), "blocks leaked");
    });
}

fn shm_entries() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // Ours (this pid), and not the named segments of the other tests running beside.
        .filter(|n| n.starts_with("shmchan") && n.contains(&std::process::id().to_string()))
        .filter(|n| !n.starts_with("shmchan-t-") || n.contains("-lep-"))
        .collect();
    v.sort();
    v
}

#[test]
fn consumer_killed_holding_blocks_is_reclaimed_without_user_code() {
    let chan = ShmName::new("lkill");
    let heap_name = ShmName::new("lkill-heap");
    let heap = Heap::options()
        .unlink_on_drop(true)
        .create(heap_name.as_str(), 16 * MIB)
        .unwrap();
    let mut tx = Producer::<Spsc>::create(
        chan.as_str(),
        opts().liveness_interval(Duration::from_millis(1)),
    )
    .unwrap();
    tx.attach_heap(&heap).unwrap();
    let mut kid = spawn_holding("hold", &[chan.as_str(), heap_name.as_str()]);
    for i in 0..3 {
        tx.send_large_blocking(&payload(1, i * 3, 4 * MIB)).unwrap();
    }
    assert_eq!(read_report(&mut kid), "holding");
    // Two blocks held by the child, one in the ring: 12 of 16 MiB in use.
    assert_eq!(heap.free_bytes(), 4 * MIB as u64);
    kill9(kid.id());
    let _ = kid.0.as_mut().unwrap().wait();
    // The next send sees the consumer gone and frees the block left in the ring.
    let err = tx.send_large_blocking(&payload(1, 9, 4 * MIB)).unwrap_err();
    assert!(matches!(err, Error::PeerGone(_)), "{err:?}");
    assert_eq!(tx.blocks_in_flight(), 0);
    // The blocks the dead child held are found by the allocator's own sweep.
    let all = heap
        .alloc(heap.capacity() as usize)
        .expect("every block reclaimed");
    drop(all);
    drop(kid.0.as_mut().unwrap().stdin.take());
}

#[test]
fn producer_dropped_after_consumer_death_frees_the_ring_blocks() {
    let chan = ShmName::new("ldrop");
    let heap_name = ShmName::new("ldrop-heap");
    let heap = Heap::options()
        .unlink_on_drop(true)
        .create(heap_name.as_str(), 16 * MIB)
        .unwrap();
    let mut tx = Producer::<Spsc>::create(chan.as_str(), opts()).unwrap();
    tx.attach_heap(&heap).unwrap();
    let mut kid = spawn_holding("hold", &[chan.as_str(), heap_name.as_str()]);
    for i in 0..3 {
        tx.send_large_blocking(&payload(1, i * 3, 4 * MIB)).unwrap();
    }
    assert_eq!(read_report(&mut kid), "holding");
    kill9(kid.id());
    let _ = kid.0.as_mut().unwrap().wait();
    drop(tx);
    assert!(
        heap.alloc(heap.capacity() as usize).is_ok(),
        "blocks leaked"
    );
}

#[test]
fn hostile_handles_are_corrupt_and_the_channel_goes_on() {
    let chan = ShmName::new("lforge");
    let heap_name = ShmName::new("lforge-heap");
    let heap = Heap::options()
        .unlink_on_drop(true)
        .create(heap_name.as_str(), 8 * MIB)
        .unwrap();
    let mut rx = Consumer::<Spsc>::create(chan.as_str(), opts()).unwrap();
    rx.attach_heap(&heap).unwrap();
    let kid = spawn("forge", &[chan.as_str(), heap_name.as_str()]);
    for what in ["random handle", "bad length", "no header", "stale handle"] {
        match rx.recv_large_blocking() {
            Err(Error::Corrupt(why)) => assert!(why.contains(chan.as_str()), "{why}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    let m = rx.recv_large_blocking().unwrap();
    assert!(m.is_block());
    assert!(m.to_vec() == payload(9, 0, 4 * MIB));
    drop(m);
    kid.wait_ok();
    assert_eq!(heap.free_bytes(), heap.capacity());
}

fn alloc_waits_for_a_free_in_another_process(runtime: &str) {
    let heap_name = ShmName::new("lwait");
    let heap = Heap::options()
        .unlink_on_drop(true)
        .create(heap_name.as_str(), 2 * MIB)
        .unwrap();
    let all = heap.alloc(heap.capacity() as usize).unwrap();
    let mut kid = spawn("alloc-wait", &[heap_name.as_str(), runtime]);
    assert_eq!(read_report(&mut kid), "waiting");
    drop(all); // the free rings the child's doorbell
    kid.wait_ok();
}

#[test]
fn async_alloc_waits_and_wakes_across_processes_tokio() {
    alloc_waits_for_a_free_in_another_process("tokio");
}

#[cfg(feature = "async-io")]
#[test]
fn async_alloc_waits_and_wakes_across_processes_async_io() {
    alloc_waits_for_a_free_in_another_process("async-io");
}

#[test]
fn async_alloc_is_cancel_safe() {
    let heap = Heap::options().create_memfd(MIB).unwrap();
    let all = heap.alloc(MIB).unwrap();
    rt().block_on(async {
        let mut fut = Box::pin(heap.alloc_async(MIB));
        assert!(futures::poll!(fut.as_mut()).is_pending());
        drop(fut); // cancelled while parked
        let mut other = Box::pin(heap.alloc_async(MIB));
        assert!(futures::poll!(other.as_mut()).is_pending());
        drop(all);
        let got = tokio::time::timeout(Duration::from_secs(10), other)
            .await
            .expect("a later waiter is still woken")
            .unwrap();
        assert_eq!(got.len(), MIB);
    });
    assert_eq!(heap.free_bytes(), heap.capacity());
}

#[test]
fn large_sink_applies_back_pressure_through_the_heap() {
    use futures::SinkExt;
    let chan = ShmName::new("lsink");
    let heap = Heap::options().create_memfd(8 * MIB + 64 * 1024).unwrap();
    let mut tx = Producer::<Spsc>::create(chan.as_str(), opts()).unwrap();
    let mut rx = Consumer::<Spsc>::open(chan.as_str(), opts()).unwrap();
    tx.attach_heap(&heap).unwrap();
    rx.attach_heap(&heap).unwrap();
    rt().block_on(async {
        let send = async {
            let mut sink = tx.large_sink::<Vec<u8>>();
            for i in 0..9u64 {
                sink.send(payload(1, i, len_of(i))).await.unwrap();
            }
        };
        let recv = async {
            for i in 0..9u64 {
                let m = rx.recv_large().await.unwrap();
                assert_eq!(check(&m), (1, i));
                // Hold a block a little while the sink must wait for room.
                tokio::task::yield_now().await;
            }
        };
        tokio::join!(send, recv);
    });
    assert_eq!(heap.free_bytes(), heap.capacity());
    let _ = std::io::stdout().flush();
}

#[test]
fn trusted_views_read_in_place() {
    let chan = ShmName::new("lview");
    let heap = Heap::options().create_memfd(8 * MIB).unwrap();
    let mut tx = Producer::<Spsc>::create(chan.as_str(), opts()).unwrap();
    let mut rx = Consumer::<Spsc>::open(chan.as_str(), opts()).unwrap();
    tx.attach_heap(&heap).unwrap();
    rx.attach_heap(&heap).unwrap();
    let mut buf = heap.alloc(MIB).unwrap();
    // SAFETY: only this process is attached to the heap.
    unsafe { buf.as_mut_slice() }.fill(0xab);
    tx.send_buf_blocking(buf).unwrap();
    let m = rx.recv_large_blocking().unwrap();
    // SAFETY: as above.
    let bytes = bytes::Bytes::from_owner(unsafe { m.assume_trusted() });
    assert_eq!(bytes.len(), MIB);
    assert!(bytes.iter().all(|&b| b == 0xab));
    assert!(
        heap.free_bytes() < heap.capacity(),
        "freed while a Bytes holds it"
    );
    drop(bytes);
    assert_eq!(heap.free_bytes(), heap.capacity());
}
