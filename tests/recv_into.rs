//! `recv_into(&mut [u8])` on every flavour (try, blocking, timed, async), a buffer too small
//! losing nothing, and `Message` into `bytes::Bytes` without a copy.

mod common;

use std::time::Duration;

use common::{ShmName, read_report, report, spawn};
use shmchan::channel::{Consumer, Flavour, Mpmc, Mpsc, Producer, Spsc};
use shmchan::{Error, Options, TryRecvError};

fn opts() -> Options {
    common::opts(256, 8, None)
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let name = &args[0];
        match role {
            // Sends a large and a small message, then leaves.
            "sender" => {
                let mut tx = Producer::<Spsc>::open(name, opts()).unwrap();
                report("attached");
                tx.send_blocking(vec![0xabu8; 200]).unwrap();
                tx.send_blocking(b"tail").unwrap();
            }
            other => panic!("unknown role {other}"),
        }
    });
}

fn too_small_keeps_the_message<F: Flavour>() {
    let name = ShmName::new(&format!("rinto-{}", F::NAME));
    let mut tx = Producer::<F>::create(name.as_str(), opts()).unwrap();
    let mut rx = Consumer::<F>::open(name.as_str(), opts()).unwrap();
    tx.try_send(b"0123456789").unwrap();
    tx.try_send(b"next").unwrap();
    let mut small = [0u8; 4];
    let e = rx.try_recv_into(&mut small).unwrap_err();
    let TryRecvError::Other(e @ Error::InvalidArgument(_)) = e else {
        panic!("expected InvalidArgument, got {e:?}")
    };
    let text = e.to_string();
    assert!(text.contains("10 bytes"), "{text}");
    assert!(text.contains("buffer 4 bytes"), "{text}");
    assert!(text.contains(name.as_str()), "{text}");
    assert!(text.contains("stays queued"), "{text}");
    // Still too small, the blocking form says the same and still keeps it.
    assert!(matches!(
        rx.recv_into_blocking(&mut small),
        Err(Error::InvalidArgument(_))
    ));
    // The message was not lost, and comes before the next: through recv_into...
    let mut buf = [0u8; 16];
    let n = rx.try_recv_into(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"0123456789");
    // ...and through any other receive.
    assert_eq!(rx.try_recv_into(&mut small).unwrap(), 4);
    assert_eq!(&small, b"next");
    tx.try_send(b"held then recv").unwrap();
    assert!(rx.try_recv_into(&mut small).is_err());
    assert_eq!(&*rx.try_recv().unwrap(), b"held then recv");
    tx.try_send(b"held then ref").unwrap();
    assert!(rx.try_recv_into(&mut small).is_err());
    assert_eq!(
        rx.try_recv_ref().unwrap().unwrap().to_vec(),
        b"held then ref"
    );
    assert!(matches!(
        rx.try_recv_into(&mut buf),
        Err(TryRecvError::Empty)
    ));
    assert!(matches!(
        rx.recv_into_timeout(&mut buf, Duration::from_millis(10)),
        Err(Error::TimedOut(_))
    ));
    drop(tx);
    assert!(matches!(
        rx.try_recv_into(&mut buf),
        Err(TryRecvError::Closed)
    ));
}

#[test]
fn spsc_recv_into_too_small_keeps_the_message() {
    too_small_keeps_the_message::<Spsc>();
}

#[test]
fn mpsc_recv_into_too_small_keeps_the_message() {
    too_small_keeps_the_message::<Mpsc>();
}

#[test]
fn mpmc_recv_into_too_small_keeps_the_message() {
    too_small_keeps_the_message::<Mpmc>();
}

/// A message held by a too-small `recv_into` is the head of an SPSC ring: a chunk read starts
/// with it, once.
#[test]
fn spsc_chunk_after_a_held_message() {
    let name = ShmName::new("rinto-chunk");
    let mut tx = Producer::<Spsc>::create(name.as_str(), opts()).unwrap();
    let mut rx = Consumer::<Spsc>::open(name.as_str(), opts()).unwrap();
    tx.try_send(b"first one").unwrap();
    tx.try_send(b"second").unwrap();
    assert!(rx.try_recv_into(&mut [0u8; 2]).is_err());
    {
        let chunk = rx.try_recv_many(8).unwrap();
        assert_eq!(chunk.len(), 2);
        assert_eq!(chunk.get(0), b"first one");
        assert_eq!(chunk.get(1), b"second");
    }
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
}

/// Async `recv_into` across processes, on tokio: a large message with a buffer too small,
/// then with one that fits, then the end of the stream.
#[test]
fn async_recv_into_across_processes() {
    let name = ShmName::new("rinto-async");
    let mut rx = Consumer::<Spsc>::create(name.as_str(), opts()).unwrap();
    let mut child = spawn("sender", &[name.as_str()]);
    assert_eq!(read_report(&mut child), "attached");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut small = [0u8; 64];
        let e = rx.recv_into(&mut small).await.unwrap_err();
        assert!(e.to_string().contains("200 bytes"), "{e}");
        let mut buf = vec![0u8; rx.slot_size()];
        let n = rx.recv_into(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &[0xabu8; 200][..]);
        let n = rx.recv_into(&mut small).await.unwrap();
        assert_eq!(&small[..n], b"tail");
        assert!(matches!(rx.recv_into(&mut buf).await, Err(Error::Closed)));
    });
    child.wait_ok();
}

/// A received message longer than the inline size becomes `Bytes` without a copy.
#[test]
fn received_message_into_bytes_keeps_its_buffer() {
    let name = ShmName::new("rinto-bytes");
    let mut tx = Producer::<Mpsc>::create(name.as_str(), opts()).unwrap();
    let mut rx = Consumer::<Mpsc>::open(name.as_str(), opts()).unwrap();
    tx.try_send(vec![5u8; 200]).unwrap();
    tx.try_send(b"tiny").unwrap();
    let big = rx.try_recv().unwrap();
    let at = big.as_ptr();
    let b: bytes::Bytes = big.into();
    assert_eq!(b.as_ptr(), at);
    assert_eq!(&b[..], &[5u8; 200][..]);
    let tiny: bytes::Bytes = rx.try_recv().unwrap().into();
    assert_eq!(&tiny[..], b"tiny");
}
