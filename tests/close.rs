//! Honest close across processes, for every flavour: a producer learns that its consumers
//! left (`Closed`) or died (`PeerGone`) on its next send, not only once the ring fills;
//! `is_closed()` and `closed().await` on both sides; a consumer that attaches later opens the
//! channel again.

#![cfg(feature = "tokio")]

mod common;

use std::time::{Duration, Instant};

use common::{ShmName, kill9, read_report, report, rt, spawn_holding};
use shmchan::{Error, Options, SendTimeoutError, TrySendError, mpmc, mpsc, spsc};

fn opts() -> Options {
    common::opts(32, 16, common::ms(20))
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let (name, flavour) = (&args[0], args[1].as_str());
        macro_rules! by_flavour {
            ($side:ident, $body:expr) => {
                match flavour {
                    "spsc" => {
                        let h = spsc::$side::open(name, opts()).unwrap();
                        $body(h)
                    }
                    "mpsc" => {
                        let h = mpsc::$side::open(name, opts()).unwrap();
                        $body(h)
                    }
                    _ => {
                        let h = mpmc::$side::open(name, opts()).unwrap();
                        $body(h)
                    }
                }
            };
        }
        match role {
            // Attaches as a consumer, reports, and waits on stdin: EOF (or "leave") makes it
            // leave cleanly; the parent may kill it instead.
            "consumer" => by_flavour!(Consumer, |h| {
                report("attached");
                let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
                drop(h);
            }),
            // Attaches as a producer, reports, and waits likewise.
            "producer" => by_flavour!(Producer, |h| {
                report("attached");
                let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
                drop(h);
            }),
            other => panic!("unknown role {other}"),
        }
    });
}

/// Leaves cleanly: closes the child's stdin and reaps it.
fn leave(mut child: common::ChildGuard) {
    drop(child.0.as_mut().unwrap().stdin.take());
    child.wait_ok();
}

macro_rules! honest_close {
    ($clean:ident, $died:ident, $consumer_side:ident, $m:ident) => {
        /// The consumer process leaves cleanly: the producer's very next `try_send`, on a ring
        /// with free slots, is `Closed`; `is_closed` and `closed()` agree. (A producer used to
        /// keep getting `Ok` until the ring filled.) A consumer that attaches later opens the
        /// channel again.
        #[test]
        fn $clean() {
            let flavour = stringify!($m);
            let name = ShmName::new(&format!("close-{flavour}"));
            let mut tx = $m::Producer::create(name.as_str(), opts()).unwrap();
            let mut child = spawn_holding("consumer", &[name.as_str(), flavour]);
            assert_eq!(read_report(&mut child), "attached");
            tx.try_send(b"before").unwrap();
            assert!(!tx.is_closed());
            leave(child);
            assert!(tx.is_closed());
            match tx.try_send(b"after") {
                Err(TrySendError::Closed(m)) => assert_eq!(m, b"after"),
                other => panic!("the consumer left: expected Closed, got {other:?}"),
            }
            match tx.send_timeout(b"after", Duration::from_secs(5)) {
                Err(SendTimeoutError::Closed(_)) => {}
                other => panic!("expected Closed, got {other:?}"),
            }
            assert!(matches!(rt().block_on(tx.closed()), Error::Closed));
            // A new consumer opens it again, and finds what was queued before.
            let mut rx = $m::Consumer::open(name.as_str(), opts()).unwrap();
            assert!(!tx.is_closed());
            tx.try_send(b"again").unwrap();
            assert_eq!(&*rx.try_recv().unwrap(), b"before");
            assert_eq!(&*rx.try_recv().unwrap(), b"again");
        }

        /// The consumer process is SIGKILLed: the producer's sends fill the ring (for a
        /// consumer that may restart), then report `PeerGone` within about a liveness
        /// interval, never hang; `closed()` then resolves to `PeerGone` at once.
        #[test]
        fn $died() {
            let flavour = stringify!($m);
            let name = ShmName::new(&format!("died-{flavour}"));
            let mut tx = $m::Producer::create(name.as_str(), opts()).unwrap();
            let mut child = spawn_holding("consumer", &[name.as_str(), flavour]);
            assert_eq!(read_report(&mut child), "attached");
            kill9(child.id());
            let _ = child.0.take().unwrap().wait(); // reaped: certainly dead
            // Sends go into the ring (a restarted consumer would get them) until it is full;
            // then the wait checks liveness and reports the death within about an interval.
            let t0 = Instant::now();
            let mut sent = 0;
            loop {
                match tx.send_timeout(b"x", Duration::from_secs(5)) {
                    Ok(()) => sent += 1,
                    Err(SendTimeoutError::Other(_, e)) if matches!(*e, Error::PeerGone(_)) => {
                        break;
                    }
                    other => panic!("expected PeerGone, got {other:?}"),
                }
                assert!(sent <= 16, "sent {sent} into a ring of 16");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "PeerGone took {:?}",
                t0.elapsed()
            );
            assert!(tx.is_closed());
            let closed = rt().block_on(tx.closed());
            assert!(matches!(closed, Error::PeerGone(_)), "{closed:?}");
        }

        /// The producer side: a consumer's `closed()` resolves once the producer process
        /// leaves, and `is_closed()` says so.
        #[test]
        fn $consumer_side() {
            let flavour = stringify!($m);
            let name = ShmName::new(&format!("cclose-{flavour}"));
            let mut rx = $m::Consumer::create(name.as_str(), opts()).unwrap();
            let mut child = spawn_holding("producer", &[name.as_str(), flavour]);
            assert_eq!(read_report(&mut child), "attached");
            assert!(!rx.is_closed());
            let rt = rt();
            let e = rt.block_on(async {
                let waiter = async { rx.closed().await };
                let leaver = async { leave(child) };
                let (e, ()) = tokio::join!(waiter, leaver);
                e
            });
            assert!(matches!(e, Error::Closed), "{e:?}");
            assert!(rx.is_closed());
        }
    };
}

honest_close!(
    spsc_producer_sees_closed_at_once,
    spsc_producer_sees_peer_gone_never_a_hang,
    spsc_consumer_closed_resolves,
    spsc
);
honest_close!(
    mpsc_producer_sees_closed_at_once,
    mpsc_producer_sees_peer_gone_never_a_hang,
    mpsc_consumer_closed_resolves,
    mpsc
);
honest_close!(
    mpmc_producer_sees_closed_at_once,
    mpmc_producer_sees_peer_gone_never_a_hang,
    mpmc_consumer_closed_resolves,
    mpmc
);
