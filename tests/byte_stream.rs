//! The byte stream over an endpoint (`ShmStream`), across real processes: echo of random sizes
//! checked byte for byte, end of stream on shutdown (half close), a SIGKILLed peer is an error
//! and not a hang, `Framed<_, LengthDelimitedCodec>` unchanged, and the same on async-io.
#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use common::{Rng, ShmName, kill9, read_report, report, rt, spawn, spawn_holding};
use futures::{SinkExt, StreamExt};
use shmchan::Options;
use shmchan::endpoint::{Endpoint, Listener, ShmStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const SLOT: usize = 16 << 10;

fn opts() -> Options {
    common::opts(SLOT, 16, None)
}

/// Deterministic bytes of chunk `i`, `len` long.
fn chunk(i: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(0x9e37_79b9 ^ (i + 1).wrapping_mul(0x2545_f491));
    (0..len).map(|_| r.next() as u8).collect()
}

/// The sizes the echo test sends: the edges around a slot, then random ones up to 1 MiB.
fn sizes() -> Vec<usize> {
    let mut v = vec![0, 1, SLOT - 1, SLOT, SLOT + 1, 3 * SLOT + 7, 1 << 20];
    let mut r = Rng(42);
    v.extend((0..24).map(|_| r.below((1 << 20) + 1) as usize));
    v
}

/// Echoes every byte of the stream `s` until its end, for tokio's and futures' traits alike;
/// gives the number of bytes echoed.
macro_rules! echo_until_eof {
    ($s:expr) => {{
        let mut buf = vec![0u8; 7000]; // not a multiple of the slot: reads split messages
        let mut total = 0u64;
        loop {
            let n = $s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            $s.write_all(&buf[..n]).await.unwrap();
            $s.flush().await.unwrap();
            total += n as u64;
        }
        total
    }};
}

/// Echoes every byte until end of stream, then shuts down.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> u64 {
    let total = echo_until_eof!(s);
    s.shutdown().await.unwrap();
    total
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let name = &args[0];
        match role {
            "echo" => rt().block_on(async {
                let s = Endpoint::connect(name).await.unwrap().into_stream();
                report(format!("echoed {}", echo(s).await));
            }),
            // Writes `n` bytes in small pieces, shuts down its writing side, then reads what
            // the parent sends until end of stream.
            "half-close" => rt().block_on(async {
                let n: usize = args[1].parse().unwrap();
                let mut s = Endpoint::connect(name).await.unwrap().into_stream();
                let data = chunk(7, n);
                for piece in data.chunks(100) {
                    s.write_all(piece).await.unwrap();
                }
                s.shutdown().await.unwrap();
                let e = s.write_all(b"late").await.unwrap_err();
                assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.unwrap();
                report(format!("got {}", String::from_utf8(got).unwrap()));
            }),
            // Sends a greeting, then waits to be killed.
            "hold" => rt().block_on(async {
                let mut s = Endpoint::connect(name).await.unwrap().into_stream();
                s.write_all(b"hello").await.unwrap();
                s.flush().await.unwrap();
                report("ready");
                let mut stdin = tokio::io::stdin();
                let _ = stdin.read(&mut [0u8; 1]).await;
            }),
            // Echoes each frame reversed.
            "framed" => rt().block_on(async {
                let s = Endpoint::connect(name).await.unwrap().into_stream();
                let mut f = tokio_util::codec::Framed::new(
                    s,
                    tokio_util::codec::LengthDelimitedCodec::new(),
                );
                let mut n = 0;
                while let Some(frame) = f.next().await {
                    let mut frame = frame.unwrap();
                    frame.reverse();
                    f.send(frame.freeze()).await.unwrap();
                    n += 1;
                }
                report(format!("frames {n}"));
            }),
            #[cfg(feature = "async-io")]
            "smol-echo" => on_async_io::echo_role(name),
            #[cfg(feature = "async-io")]
            "smol-hold" => on_async_io::hold_role(name),
            other => panic!("unknown role {other}"),
        }
    });
}

/// Writes every chunk from `sizes` (in pieces of random length, flushing now and then),
/// shuts down, and reads everything back concurrently: checks it byte for byte.
async fn write_and_check<FR, FW>(sizes: &[usize], read: FR, write: FW)
where
    FR: AsyncFnOnce(usize) -> Vec<u8>,
    FW: AsyncFnOnce(Vec<Vec<u8>>),
{
    let chunks: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| chunk(i as u64, n))
        .collect();
    let expected: Vec<u8> = chunks.concat();
    let (got, ()) = futures::join!(read(expected.len()), write(chunks));
    assert_eq!(got.len(), expected.len());
    if let Some(i) = (0..got.len()).find(|&i| got[i] != expected[i]) {
        panic!("byte {i} of {} differs", got.len());
    }
}

/// Splits a write into pieces of random length (1 byte to 3 slots).
/// The reading side of an echo check, for tokio's and futures' read traits alike: reads the
/// echo (about `n` bytes) to its end of stream, then checks that the end of stream stays.
macro_rules! read_to_eof {
    ($rd:expr, $n:expr) => {{
        let mut got = Vec::with_capacity($n);
        // read_to_end: the echo's end of stream ends it.
        $rd.read_to_end(&mut got).await.unwrap();
        // End of stream stays.
        assert_eq!($rd.read(&mut [0u8; 8]).await.unwrap(), 0);
        got
    }};
}

/// The writing side of an echo check, for tokio's and futures' write traits alike: writes
/// each chunk in the random [`pieces`] `rng` picks, flushing after every `flush_every`-th
/// chunk (from the first) when given.
macro_rules! write_in_pieces {
    ($wr:expr, $chunks:expr, $rng:expr, $flush_every:expr) => {{
        let mut rng = $rng;
        let flush_every: Option<usize> = $flush_every;
        for (i, c) in $chunks.iter().enumerate() {
            for r in pieces(c, &mut rng) {
                $wr.write_all(&c[r]).await.unwrap();
            }
            if flush_every.is_some_and(|k| i % k == 0) {
                $wr.flush().await.unwrap();
            }
        }
    }};
}

fn pieces(data: &[u8], rng: &mut Rng) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let n = (1 + rng.below(3 * SLOT as u64) as usize).min(data.len() - at);
        out.push(at..at + n);
        at += n;
    }
    out
}

#[test]
fn echo_of_random_sizes_up_to_1_mib_is_exact_and_ends_with_eof() {
    let name = ShmName::new("bs-echo");
    rt().block_on(async {
        let mut listener = Listener::bind(name.as_str(), opts()).unwrap();
        let child = spawn("echo", &[name.as_str()]);
        let (mut rd, mut wr) = listener.accept().await.unwrap().into_stream().into_split();
        let sizes = sizes();
        write_and_check(
            &sizes,
            async |n| read_to_eof!(rd, n),
            async |chunks| {
                write_in_pieces!(wr, chunks, Rng(7), Some(3));
                wr.shutdown().await.unwrap();
            },
        )
        .await;
        let total: usize = sizes.iter().sum();
        let out = child.wait_ok();
        assert_eq!(
            common::reports(&out),
            vec![format!("echoed {total}")],
            "the child saw end of stream after every byte"
        );
    });
}

#[test]
fn shutdown_is_end_of_stream_and_the_other_direction_stays_open() {
    let name = ShmName::new("bs-half");
    rt().block_on(async {
        let mut listener = Listener::bind(name.as_str(), opts()).unwrap();
        let n = 3 * SLOT + 123;
        let child = spawn("half-close", &[name.as_str(), &n.to_string()]);
        let mut s = listener.accept().await.unwrap().into_stream();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, chunk(7, n));
        assert_eq!(s.read(&mut [0u8; 8]).await.unwrap(), 0, "EOF is sticky");
        // Our direction still works after the peer's shutdown.
        s.write_all(b"ack").await.unwrap();
        s.shutdown().await.unwrap();
        let out = child.wait_ok();
        assert_eq!(common::reports(&out), vec!["got ack".to_owned()]);
    });
}

#[test]
fn a_killed_peer_is_an_error_naming_the_endpoint_not_a_hang() {
    let name = ShmName::new("bs-kill");
    rt().block_on(async {
        let mut listener = Listener::bind(name.as_str(), opts()).unwrap();
        let mut child = spawn_holding("hold", &[name.as_str()]);
        let mut s = listener.accept().await.unwrap().into_stream();
        assert_eq!(read_report(&mut child), "ready");
        let mut hello = [0u8; 5];
        s.read_exact(&mut hello).await.unwrap();
        assert_eq!(&hello, b"hello");
        let (mut rd, mut wr) = s.into_split();
        // The reader parks first; the kill must wake it.
        let reader = tokio::spawn(async move { rd.read(&mut [0u8; 64]).await });
        tokio::task::yield_now().await;
        kill9(child.id());
        let e = tokio::time::timeout(Duration::from_secs(20), reader)
            .await
            .expect("a read from a dead peer must not hang")
            .unwrap()
            .expect_err("a dead peer is an error, not end of stream");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        assert!(e.to_string().contains(name.as_str()), "{e}");
        // Writes fail too, within a liveness interval (the ring has room at first).
        let e = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Err(e) = wr.write_all(&[1u8; 1000]).await {
                    return e;
                }
                wr.flush().await.unwrap_or(());
            }
        })
        .await
        .expect("a write to a dead peer must not hang");
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        assert!(e.to_string().contains(name.as_str()), "{e}");
    });
}

#[test]
fn framed_length_delimited_codec_works_unchanged() {
    use bytes::Bytes;
    let name = ShmName::new("bs-framed");
    rt().block_on(async {
        let mut listener = Listener::bind(name.as_str(), opts()).unwrap();
        let child = spawn("framed", &[name.as_str()]);
        let s: ShmStream = listener.accept().await.unwrap().into_stream();
        let mut f =
            tokio_util::codec::Framed::new(s, tokio_util::codec::LengthDelimitedCodec::new());
        let mut rng = Rng(99);
        let lens: Vec<usize> = [0, 1, SLOT - 4, SLOT, 200_000]
            .into_iter()
            .chain((0..200).map(|_| rng.below(3000) as usize))
            .collect();
        for (i, &n) in lens.iter().enumerate() {
            let frame = chunk(i as u64, n);
            f.send(Bytes::from(frame.clone())).await.unwrap();
            let back = f.next().await.expect("a frame back").unwrap();
            let mut expected = frame;
            expected.reverse();
            assert_eq!(&back[..], &expected[..], "frame {i} of {n} bytes");
        }
        // Feed many, flush once: frames coalesce into slots and arrive in order.
        for i in 0..50u64 {
            f.feed(Bytes::from(chunk(i, 10 + i as usize)))
                .await
                .unwrap();
        }
        SinkExt::<Bytes>::flush(&mut f).await.unwrap();
        for i in 0..50u64 {
            let mut expected = chunk(i, 10 + i as usize);
            expected.reverse();
            assert_eq!(&f.next().await.unwrap().unwrap()[..], &expected[..]);
        }
        SinkExt::<Bytes>::close(&mut f).await.unwrap();
        let out = child.wait_ok();
        assert_eq!(
            common::reports(&out),
            vec![format!("frames {}", lens.len() + 50)]
        );
    });
}

/// The same on async-io (smol's reactor), with endpoints made by name (`futures::io` traits;
/// tokio's extension traits stay out of scope here).
#[cfg(feature = "async-io")]
mod on_async_io {
    use std::time::Duration;

    use futures::io::{AsyncReadExt, AsyncWriteExt};
    use shmchan::endpoint::{Endpoint, ShmStream, Side};

    use super::common::{
        self, EndpointNames, Rng, kill9, read_report, report, spawn, spawn_holding,
    };
    use super::{opts, pieces, sizes, write_and_check};

    pub fn echo_role(name: &str) {
        async_io::block_on(async {
            let mut s = Endpoint::open(name, Side::B, shmchan::Options::new())
                .unwrap()
                .into_stream();
            let total = echo_until_eof!(s);
            s.close().await.unwrap();
            report(format!("echoed {total}"));
        });
    }

    pub fn hold_role(name: &str) {
        async_io::block_on(async {
            let mut s = Endpoint::open(name, Side::B, shmchan::Options::new())
                .unwrap()
                .into_stream();
            s.write_all(b"hello").await.unwrap();
            s.flush().await.unwrap();
            report("ready");
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        });
    }

    #[test]
    fn async_io_echo_is_exact_and_ends_with_eof() {
        let names = EndpointNames::new("bs-smol");
        let ep = Endpoint::create(names.as_str(), Side::A, opts()).unwrap();
        let child = spawn("smol-echo", &[names.as_str()]);
        let sizes: Vec<usize> = sizes().into_iter().take(16).collect();
        async_io::block_on(async {
            let (mut rd, mut wr) = ep.into_stream().into_split();
            write_and_check(
                &sizes,
                async |n| read_to_eof!(rd, n),
                async |chunks| {
                    write_in_pieces!(wr, chunks, Rng(8), None);
                    wr.close().await.unwrap();
                },
            )
            .await;
        });
        let total: usize = sizes.iter().sum();
        let out = child.wait_ok();
        assert_eq!(common::reports(&out), vec![format!("echoed {total}")]);
    }

    #[test]
    fn async_io_killed_peer_is_an_error_not_a_hang() {
        let names = EndpointNames::new("bs-smolkill");
        let ep = Endpoint::create(names.as_str(), Side::A, opts()).unwrap();
        let mut child = spawn_holding("smol-hold", &[names.as_str()]);
        assert_eq!(read_report(&mut child), "ready");
        async_io::block_on(async {
            let mut s: ShmStream = ep.into_stream();
            let mut hello = [0u8; 5];
            s.read_exact(&mut hello).await.unwrap();
            assert_eq!(&hello, b"hello");
            kill9(child.id());
            let mut buf = [0u8; 64];
            let read = s.read(&mut buf);
            let bound = async_io::Timer::after(Duration::from_secs(20));
            let e = match futures::future::select(std::pin::pin!(read), bound).await {
                futures::future::Either::Left((r, _)) => {
                    r.expect_err("a dead peer is an error, not end of stream")
                }
                futures::future::Either::Right(_) => panic!("a read from a dead peer hung"),
            };
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
            assert!(e.to_string().contains(names.as_str()), "{e}");
        });
    }
}
