//! Chunks across processes: a producer process sends in chunks (`reserve_many`, a `write`
//! per message, one `commit`), and the consumer takes them in chunks (`recv_chunk`, waiting
//! while the ring is empty, a `read` per message into its own buffer): every message arrives,
//! in order, with its length, and the end of the stream is `Closed` once all were read.

#![cfg(feature = "tokio")]

mod common;

use common::{ShmName, rt, spawn};
use shmchan::{Error, Options, spsc};

const N: u64 = 20_000;

fn opts() -> Options {
    common::opts(16, 64, None)
}

/// Message `i`: its number, then `i % 9` bytes of `i as u8`.
fn message(i: u64) -> Vec<u8> {
    let mut m = i.to_le_bytes().to_vec();
    m.extend(std::iter::repeat_n(i as u8, (i % 9) as usize));
    m
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| match role {
        // Sends N messages in chunks of 1 to 64 slots, then leaves (a clean close).
        "chunk-send" => {
            let mut tx = spsc::Producer::open(&args[0], opts()).unwrap();
            rt().block_on(async {
                let mut i = 0;
                while i < N {
                    let k = ((i % 64) + 1).min(N - i) as usize;
                    let mut chunk = tx.reserve_many(k).await.unwrap();
                    for j in 0..k {
                        chunk.write(j, &message(i + j as u64)).unwrap();
                    }
                    chunk.commit(k);
                    i += k as u64;
                }
            });
        }
        other => panic!("unknown role {other}"),
    });
}

#[test]
fn chunks_sent_by_another_process_arrive_whole_in_order_and_then_the_end() {
    let name = ShmName::new("chunks");
    let mut rx = spsc::Consumer::create(name.as_str(), opts()).unwrap();
    let child = spawn("chunk-send", &[name.as_str()]);
    let (got, chunks) = rt().block_on(async {
        let (mut got, mut chunks) = (0u64, 0u64);
        let mut buf = [0u8; 16];
        loop {
            let chunk = match rx.recv_chunk(50).await {
                Ok(c) => c,
                Err(Error::Closed) => break,
                Err(e) => panic!("recv_chunk: {e}"),
            };
            assert!((1..=50).contains(&chunk.len()), "{} messages", chunk.len());
            for j in 0..chunk.len() {
                let n = chunk.read(j, &mut buf).unwrap();
                assert_eq!(&buf[..n], &message(got)[..], "message {got}");
                got += 1;
            }
            chunks += 1;
        }
        (got, chunks)
    });
    child.wait_ok();
    assert_eq!(got, N, "every message once");
    assert!(chunks < N, "chunks of several messages ({chunks} chunks)");
}

#[test]
fn a_chunk_read_names_what_does_not_fit() {
    let name = ShmName::new("chunk-read");
    let mut tx = spsc::Producer::create(name.as_str(), opts()).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str(), opts()).unwrap();
    tx.try_send(message(8)).unwrap();
    rt().block_on(async {
        assert_eq!(rx.recv_chunk(0).await.unwrap().len(), 0);
        let chunk = rx.recv_chunk(8).await.unwrap();
        assert_eq!(chunk.len(), 1);
        let err = chunk.read(0, &mut [0u8; 4]).unwrap_err().to_string();
        assert!(err.contains("16 bytes, the buffer 4"), "{err}");
        let err = chunk.read(1, &mut [0u8; 16]).unwrap_err().to_string();
        assert!(err.contains("message 1 of a chunk of 1"), "{err}");
        let mut buf = [0u8; 16];
        assert_eq!(chunk.read(0, &mut buf).unwrap(), 16);
        assert_eq!(&buf[..], &message(8)[..]);
    });
    // The chunk was dropped: its message is gone.
    assert!(rx.try_recv().is_err());
}
