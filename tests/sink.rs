//! The `Sink`'s reservation and every other send path: a slot reserved by `poll_ready` is next
//! in line, so a direct send made before `start_send` uses it; `start_send` then takes the next
//! slot, or keeps its item until `poll_flush`. Nothing is lost, invented or reordered, and a
//! live producer's reserved slot is never repaired as abandoned.

#![cfg(feature = "tokio")]

mod common;

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use common::{ShmName, read_report, report, spawn_holding};
use futures::Sink;
use shmchan::channel::{Flavour, Producer};
use shmchan::{Options, mpmc, mpsc, spsc};

fn opts() -> Options {
    common::opts(16, 4, common::ms(20))
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| match role {
        // An MPMC consumer in its own process: receives `count` messages, then reports them
        // and how many slots it skipped as abandoned.
        "consume" => {
            let count: usize = args[1].parse().unwrap();
            let mut rx = mpmc::Consumer::open(&args[0], opts()).unwrap();
            report("ready");
            let mut got = Vec::new();
            for _ in 0..count {
                match rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(m) => got.push(String::from_utf8(m.into_vec()).unwrap()),
                    Err(e) => {
                        report(format!("error {e} after {got:?}"));
                        return;
                    }
                }
            }
            report(format!("{} abandoned {}", got.join(","), rx.abandoned()));
        }
        // An SPSC consumer: receives `count` u32 messages, checks they count up from 0.
        "consume-spsc" => {
            let count: u32 = args[1].parse().unwrap();
            let mut rx = spsc::Consumer::open(&args[0], opts()).unwrap();
            for i in 0..count {
                match rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(m) if *m == i.to_le_bytes() => {}
                    Ok(m) => return report(format!("message {i} was {:?}", &*m)),
                    Err(e) => return report(format!("error {e} at {i}")),
                }
            }
            report(format!("ok {count}"));
        }
        other => panic!("unknown role {other}"),
    });
}

async fn poll_ready<F: Flavour>(tx: &mut Producer<F>) {
    poll_fn(|cx| Sink::<&[u8]>::poll_ready(Pin::new(&mut *tx), cx))
        .await
        .unwrap();
}

async fn flush<F: Flavour>(tx: &mut Producer<F>) {
    poll_fn(|cx| Sink::<&[u8]>::poll_flush(Pin::new(&mut *tx), cx))
        .await
        .unwrap();
}

fn start_send<F: Flavour>(tx: &mut Producer<F>, item: &[u8]) {
    Pin::new(tx).start_send(item).unwrap();
}

/// `poll_ready; try_send(A); start_send(B)` delivers A then B (it used to deliver B and an
/// invented empty message on SPSC, and lose B on MPMC).
macro_rules! direct_send_uses_the_reservation {
    ($test:ident, $m:ident) => {
        #[tokio::test(flavor = "current_thread")]
        async fn $test() {
            let name = ShmName::new(stringify!($test));
            let mut tx = $m::Producer::create(name.as_str(), opts()).unwrap();
            let mut rx = $m::Consumer::open(name.as_str(), opts()).unwrap();
            poll_ready(&mut tx).await;
            tx.try_send(b"A").unwrap();
            start_send(&mut tx, b"B");
            flush(&mut tx).await;
            let mut got = Vec::new();
            while let Ok(m) = rx.try_recv() {
                got.push(String::from_utf8(m.into_vec()).unwrap());
            }
            assert_eq!(got, ["A", "B"]);
            // The ring is still sound after: four more fill it exactly.
            for m in [b"C", b"D", b"E", b"F"] {
                tx.try_send(m).unwrap();
            }
            assert!(tx.try_send(b"G").is_err());
            got.clear();
            while let Ok(m) = rx.try_recv() {
                got.push(String::from_utf8(m.into_vec()).unwrap());
            }
            assert_eq!(got, ["C", "D", "E", "F"]);
        }
    };
}

direct_send_uses_the_reservation!(spsc_direct_send_uses_the_sink_reservation, spsc);
direct_send_uses_the_reservation!(mpsc_direct_send_uses_the_sink_reservation, mpsc);
direct_send_uses_the_reservation!(mpmc_direct_send_uses_the_sink_reservation, mpmc);

/// `poll_ready; reserve_many(2) + commit; start_send(B)`: the chunk is a send path too. On
/// SPSC it starts at the reserved slot; on MPSC and MPMC the reservation is given back
/// (discarded, which consumers skip without counting it abandoned) and `start_send` takes the
/// next slot. Either way the chunk's messages, then B, and the ring stays whole.
macro_rules! chunk_uses_or_returns_the_reservation {
    ($test:ident, $m:ident) => {
        #[tokio::test(flavor = "current_thread")]
        async fn $test() {
            let name = ShmName::new(stringify!($test));
            let mut tx = $m::Producer::create(name.as_str(), opts()).unwrap();
            let mut rx = $m::Consumer::open(name.as_str(), opts()).unwrap();
            poll_ready(&mut tx).await;
            let mut chunk = tx.reserve_many(2).await.unwrap();
            chunk.write(0, b"A1").unwrap();
            chunk.write(1, b"A2").unwrap();
            chunk.commit(2);
            start_send(&mut tx, b"B");
            flush(&mut tx).await;
            let mut got = Vec::new();
            while let Ok(m) = rx.try_recv() {
                got.push(String::from_utf8(m.into_vec()).unwrap());
            }
            assert_eq!(got, ["A1", "A2", "B"]);
            assert_eq!(rx.abandoned(), 0);
            for m in [b"C", b"D", b"E", b"F"] {
                tx.try_send(m).unwrap();
            }
            assert!(tx.try_send(b"G").is_err());
        }
    };
}

chunk_uses_or_returns_the_reservation!(spsc_chunk_uses_the_sink_reservation, spsc);
chunk_uses_or_returns_the_reservation!(mpsc_chunk_returns_the_sink_reservation, mpsc);
chunk_uses_or_returns_the_reservation!(mpmc_chunk_returns_the_sink_reservation, mpmc);

/// The same with a full ring: the reservation goes to the first direct send, the ring fills,
/// and `start_send`'s item waits in the sink until `poll_flush` finds room, after the messages
/// sent before it and before those sent after it.
#[tokio::test(flavor = "current_thread")]
async fn start_send_after_the_ring_filled_is_delivered_by_flush_in_order() {
    let name = ShmName::new("sink-full");
    let mut tx = spsc::Producer::create(name.as_str(), opts()).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str(), opts()).unwrap();
    poll_ready(&mut tx).await;
    for m in [b"A", b"X", b"Y", b"Z"] {
        tx.try_send(m).unwrap(); // A takes the reservation; the ring is full after Z
    }
    start_send(&mut tx, b"B"); // accepted, kept in the sink
    assert!(
        tx.try_send(b"late").is_err(),
        "nothing may overtake B while the ring is full"
    );
    assert_eq!(&*rx.try_recv().unwrap(), b"A");
    flush(&mut tx).await;
    let mut got = Vec::new();
    while let Ok(m) = rx.try_recv() {
        got.push(String::from_utf8(m.into_vec()).unwrap());
    }
    assert_eq!(got, ["X", "Y", "Z", "B"]);
}

/// MPMC across processes: the producer holds a Sink reservation, a direct send takes it, and
/// the producer waits several liveness intervals before `start_send` (the consumer meanwhile
/// looks at the head and runs its repair checks). The consumer in its own process gets A then
/// B and skips nothing: a live producer's slot is never repaired. (The direct send used to
/// claim past the reservation and overwrite the intent that proved the reserved slot live, so
/// the consumer released it as abandoned and B was lost.)
#[tokio::test(flavor = "current_thread")]
async fn mpmc_reserved_slot_of_a_live_producer_is_never_abandoned() {
    let name = ShmName::new("sink-mpmc-live");
    let mut tx = mpmc::Producer::create(name.as_str(), opts()).unwrap();
    let mut child = spawn_holding("consume", &[name.as_str(), "3"]);
    assert_eq!(read_report(&mut child), "ready");
    poll_ready(&mut tx).await;
    tx.try_send(b"A").unwrap();
    // Not a synchronisation: the scenario itself is "the consumer keeps checking for longer
    // than its liveness interval while the reservation stands".
    tokio::time::sleep(Duration::from_millis(150)).await;
    start_send(&mut tx, b"B");
    flush(&mut tx).await;
    tx.send(b"C").await.unwrap();
    assert_eq!(read_report(&mut child), "A,B,C abandoned 0");
}

// Batching: `feed` stages messages on SPSC rings; `flush` (or a direct send, a full ring, a
// quarter of the ring staged, dropping the producer) publishes them in order.

fn big() -> Options {
    Options::new()
        .slot_size(16)
        .capacity(128)
        .liveness_interval(Duration::from_millis(20))
}

#[tokio::test(flavor = "current_thread")]
async fn fed_messages_are_visible_after_flush_not_before() {
    use futures::SinkExt;
    let name = ShmName::new("feed-flush");
    let mut tx = spsc::Producer::create(name.as_str(), big()).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str(), big()).unwrap();
    for i in 0..10u8 {
        tx.feed([i]).await.unwrap();
    }
    assert!(
        rx.try_recv().is_err(),
        "staged messages are not visible before a flush"
    );
    assert_eq!(rx.pending(), 0);
    tx.flush().await.unwrap();
    for i in 0..10u8 {
        assert_eq!(&*rx.try_recv().unwrap(), &[i]);
    }
    assert!(rx.try_recv().is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn a_quarter_of_the_ring_staged_is_published_without_flush() {
    use futures::SinkExt;
    let name = ShmName::new("feed-quarter");
    let mut tx = spsc::Producer::create(name.as_str(), big()).unwrap();
    let rx = spsc::Consumer::open(name.as_str(), big()).unwrap();
    for i in 0..31u8 {
        tx.feed([i]).await.unwrap();
    }
    assert_eq!(rx.pending(), 0);
    tx.feed([31]).await.unwrap();
    assert_eq!(
        rx.pending(),
        32,
        "32 staged (a quarter of 128) are published"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_direct_send_after_feed_keeps_the_order_and_publishes_both() {
    use futures::SinkExt;
    let name = ShmName::new("feed-direct");
    let mut tx = spsc::Producer::create(name.as_str(), big()).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str(), big()).unwrap();
    tx.feed(&b"fed"[..]).await.unwrap();
    tx.try_send(b"direct").unwrap();
    assert_eq!(&*rx.try_recv().unwrap(), b"fed");
    assert_eq!(&*rx.try_recv().unwrap(), b"direct");
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_producer_publishes_what_it_staged() {
    use futures::SinkExt;
    let name = ShmName::new("feed-drop");
    let mut tx = spsc::Producer::create(name.as_str(), big()).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str(), big()).unwrap();
    for i in 0..3u8 {
        tx.feed([i]).await.unwrap();
    }
    drop(tx);
    for i in 0..3u8 {
        assert_eq!(&*rx.recv().await.unwrap(), &[i]);
    }
    assert!(matches!(rx.recv().await, Err(shmchan::Error::Closed)));
}

#[tokio::test(flavor = "current_thread")]
async fn close_and_forward_need_no_item_type() {
    use futures::{StreamExt, stream};
    let name = ShmName::new("feed-infer");
    let mut tx = spsc::Producer::create(name.as_str(), big()).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str(), big()).unwrap();
    let items = stream::iter((0..100u8).map(|i| Ok::<_, shmchan::Error>(vec![i])));
    items.forward(&mut tx).await.unwrap();
    tx.close().await.unwrap();
    for i in 0..100u8 {
        assert_eq!(&*rx.recv().await.unwrap(), &[i]);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn send_errors_are_static_and_convert_with_question_mark() {
    async fn send_to_nobody(name: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut tx = spsc::Producer::create(name, big())?;
        drop(spsc::Consumer::open(name, big())?);
        let local = [1u8, 2, 3];
        tx.send(&local[..]).await?; // a borrowed message: the error does not borrow it
        Ok(())
    }
    let name = ShmName::new("send-static");
    let e = send_to_nobody(name.as_str()).await.unwrap_err();
    assert!(e.to_string().contains("closed"), "{e}");
}

#[tokio::test(flavor = "current_thread")]
async fn recv_many_frees_every_slot_it_took() {
    let name = ShmName::new("recv-many");
    let mut tx = spsc::Producer::create(name.as_str(), big()).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str(), big()).unwrap();
    for i in 0..128u8 {
        tx.try_send([i]).unwrap();
    }
    assert_eq!(tx.available(), 0);
    let mut buf = Vec::new();
    assert_eq!(rx.recv_many(&mut buf, 100).await.unwrap(), 100);
    assert_eq!(
        tx.available(),
        100,
        "the batch's slots are free when it returns"
    );
    assert!(buf.iter().enumerate().all(|(i, m)| **m == [i as u8]));
    assert_eq!(rx.recv_many(&mut buf, 100).await.unwrap(), 28);
    assert_eq!(tx.available(), 128);
}

/// A Sink fed far more than the ring holds, never flushed until the end, with the consumer in
/// another process: a full ring publishes what is staged before waiting, so this cannot hang,
/// and every message arrives once, in order.
#[test]
fn feeding_past_a_full_ring_across_processes_delivers_everything_in_order() {
    use futures::SinkExt;
    let name = ShmName::new("feed-xproc");
    let mut tx = spsc::Producer::create(name.as_str(), opts()).unwrap();
    let mut child = spawn_holding("consume-spsc", &[name.as_str(), "5000"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for i in 0..5000u32 {
            tx.feed(i.to_le_bytes()).await.unwrap();
        }
        tx.flush().await.unwrap();
    });
    let got = read_report(&mut child);
    assert_eq!(got, "ok 5000");
}

#[tokio::test(flavor = "current_thread")]
async fn an_endpoint_batches_what_it_feeds_until_flush() {
    use futures::SinkExt;
    use shmchan::endpoint::{Endpoint, Side};
    let name = ShmName::new("ep-feed");
    let mut a = Endpoint::create(name.as_str(), Side::A, big()).unwrap();
    let mut b = Endpoint::open(name.as_str(), Side::B, big()).unwrap();
    for i in 0..10u8 {
        a.feed([i]).await.unwrap();
    }
    assert!(b.try_recv().is_err(), "fed, not flushed: not visible");
    a.flush().await.unwrap();
    for i in 0..10u8 {
        assert_eq!(&*b.recv().await.unwrap(), &[i]);
    }
    a.close().await.unwrap();
}

/// A `Sink` stages only while nobody waits: a message fed while the consumer is parked is
/// published at once (a parked consumer gains nothing from a batch it sleeps through; before,
/// each batch cost it a park and a wake, 0.35 M msg/s against 7 M beside a CPU burner).
#[tokio::test(flavor = "current_thread")]
async fn a_message_fed_to_a_parked_consumer_is_published_at_once() {
    use futures::SinkExt;
    use std::task::Poll;
    let name = ShmName::new("feed-parked");
    let park = big().wait_strategy(shmchan::WaitStrategy::park_only());
    let mut tx = spsc::Producer::create(name.as_str(), park.clone()).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str(), park).unwrap();
    let mut recv = std::pin::pin!(rx.recv());
    poll_fn(|cx| {
        assert!(
            recv.as_mut().poll(cx).is_pending(),
            "parks: nothing sent yet"
        );
        Poll::Ready(())
    })
    .await;
    tx.feed(&b"now"[..]).await.unwrap(); // no flush
    let got = tokio::time::timeout(Duration::from_secs(10), recv)
        .await
        .expect("the parked consumer gets the fed message without a flush")
        .unwrap();
    assert_eq!(&*got, b"now");
}
