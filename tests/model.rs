//! Model-based tests: each flavour against a `VecDeque`, over random operation sequences, in
//! one process (so every outcome is determined and must match the model exactly).

mod common;

use std::collections::VecDeque;

use common::{Rng, ShmName};
use shmchan::channel::{Consumer, Flavour, Mpmc, Mpsc, Producer, Spsc};
use shmchan::{Error, Options, TryRecvError, TrySendError};

const SLOT: usize = 48;

fn msg(rng: &mut Rng, n: u64) -> Vec<u8> {
    let len = rng.below(SLOT as u64 + 1) as usize;
    (0..len)
        .map(|i| (n as u8).wrapping_add((i as u8).wrapping_mul(13)))
        .collect()
}

/// The model: queued messages, and `None` for a Vyukov slot whose reservation was dropped (it
/// holds a slot until a consumer skips it).
struct Model(VecDeque<Option<Vec<u8>>>);

impl Model {
    /// What the next receive must return: skips ghosts, `None` if only ghosts (or nothing).
    fn pop(&mut self) -> Option<Vec<u8>> {
        while let Some(front) = self.0.pop_front() {
            if front.is_some() {
                return front;
            }
        }
        None
    }
}

/// Runs `steps` random operations; returns how many messages went through.
fn run<F: Flavour>(seed: u64, capacity: usize, steps: usize) -> u64 {
    let name = ShmName::new(F::NAME);
    let opts = Options::new().slot_size(SLOT).capacity(capacity);
    let mut tx = Producer::<F>::create(name.as_str(), opts.clone()).unwrap();
    let mut rx = Consumer::<F>::open(name.as_str(), opts).unwrap();
    let mut model = Model(VecDeque::new());
    let mut rng = Rng(seed | 1);
    let mut n = 0u64;
    let mut through = 0;
    for _ in 0..steps {
        let len = model.0.len();
        assert_eq!(tx.pending(), len);
        assert_eq!(rx.available(), capacity - len);
        assert_eq!(rx.is_empty(), len == 0);
        assert_eq!(tx.is_full(), len == capacity);
        match rng.below(10) {
            0..=3 => {
                n += 1;
                let m = msg(&mut rng, n);
                match tx.try_send(m.clone()) {
                    Ok(()) => model.0.push_back(Some(m)),
                    Err(TrySendError::Full(back)) => {
                        assert_eq!(len, capacity, "Full with room left");
                        assert_eq!(back, m, "the message must come back");
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            4 => {
                // Zero-copy: write in place, then commit, or drop the guard.
                n += 1;
                let m = msg(&mut rng, n);
                let commit = rng.below(3) != 0;
                match tx.try_reserve().unwrap() {
                    Some(mut slot) => {
                        slot.write(0, &m).unwrap();
                        if commit {
                            slot.commit(m.len()).unwrap();
                            model.0.push_back(Some(m));
                        } else {
                            drop(slot);
                            if F::NAME != "spsc" {
                                model.0.push_back(None);
                            }
                        }
                    }
                    None => assert_eq!(len, capacity),
                }
            }
            5 => {
                let want = model.pop();
                match rx.try_recv_ref().unwrap() {
                    Some(r) => {
                        let want = want.expect("a message the model does not have");
                        assert_eq!(r.len(), want.len());
                        assert_eq!(r.to_vec(), want);
                        through += 1;
                    }
                    None => assert!(want.is_none(), "nothing received, model has a message"),
                }
            }
            _ => {
                let want = model.pop();
                match rx.try_recv() {
                    Ok(m) => {
                        assert_eq!(Some(&*m), want.as_deref(), "received another message");
                        through += 1;
                    }
                    Err(TryRecvError::Empty) => {
                        assert!(want.is_none(), "Empty, model has {want:?}")
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
    // Drain and close: the consumer sees everything, then Closed.
    drop(tx);
    while let Some(want) = model.pop() {
        assert_eq!(&*rx.try_recv().unwrap(), &want[..]);
        through += 1;
    }
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Closed)));
    assert!(matches!(rx.recv_blocking(), Err(Error::Closed)));
    through
}

#[test]
fn spsc_matches_a_vecdeque() {
    for (seed, cap) in [(1, 1), (2, 2), (3, 7), (4, 144)] {
        assert!(run::<Spsc>(seed, cap, 5_000) > 500);
    }
}

#[test]
fn mpsc_matches_a_vecdeque() {
    for (seed, cap) in [(5, 2), (6, 3), (7, 16)] {
        assert!(run::<Mpsc>(seed, cap, 5_000) > 500);
    }
}

#[test]
fn mpmc_matches_a_vecdeque() {
    for (seed, cap) in [(8, 2), (9, 4), (10, 33)] {
        assert!(run::<Mpmc>(seed, cap, 5_000) > 500);
    }
}

#[test]
fn spsc_chunks_match_a_vecdeque() {
    let name = ShmName::new("chunks");
    let cap = 10;
    let opts = Options::new().slot_size(SLOT).capacity(cap);
    let mut tx = shmchan::spsc::Producer::create(name.as_str(), opts.clone()).unwrap();
    let mut rx = shmchan::spsc::Consumer::open(name.as_str(), opts).unwrap();
    let mut model = VecDeque::new();
    let mut rng = Rng(77);
    let mut n = 0;
    for _ in 0..3_000 {
        if rng.below(2) == 0 {
            let want = rng.below(6) as usize;
            let mut chunk = tx.try_reserve_many(want).unwrap();
            assert_eq!(chunk.len(), want.min(cap - model.len()));
            let k = rng.below(chunk.len() as u64 + 1) as usize;
            for i in 0..chunk.len() {
                n += 1;
                let m = msg(&mut rng, n);
                chunk.write(i, &m).unwrap();
                if i < k {
                    model.push_back(m);
                }
            }
            chunk.commit(k);
        } else {
            let max = rng.below(6) as usize;
            let chunk = rx.try_recv_many(max).unwrap();
            assert_eq!(chunk.len(), max.min(model.len()));
            for i in 0..chunk.len() {
                assert_eq!(chunk.get(i), model.pop_front().unwrap());
            }
        }
    }
}

#[test]
fn messages_longer_than_a_slot_are_refused_and_given_back() {
    let name = ShmName::new("long");
    let mut tx =
        shmchan::mpsc::Producer::create(name.as_str(), Options::new().slot_size(8)).unwrap();
    let big = vec![1u8; 9];
    match tx.try_send(big.clone()) {
        Err(TrySendError::Other(back, e)) => {
            assert_eq!(back, big);
            assert!(
                matches!(*e, Error::InvalidArgument(ref m) if m.contains("9 bytes")),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    let e = tx.send_blocking(&big[..]).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)));
    tx.try_send(b"").unwrap(); // empty messages are fine
    tx.try_send([7u8; 8]).unwrap();
    let mut rx = shmchan::mpsc::Consumer::open(name.as_str(), Options::new()).unwrap();
    assert_eq!(rx.try_recv().unwrap().len(), 0);
    assert_eq!(&*rx.try_recv().unwrap(), &[7u8; 8]);
}

#[test]
fn typed_values_round_trip_and_size_mismatch_is_reported() {
    #[derive(Debug, PartialEq, zerocopy::IntoBytes, zerocopy::FromBytes, zerocopy::Immutable)]
    #[repr(C)]
    struct Order {
        id: u64,
        price: f64,
        qty: u32,
        side: u32,
    }
    let name = ShmName::new("typed");
    let mut tx = shmchan::spsc::Producer::create(name.as_str(), Options::new()).unwrap();
    let mut rx = shmchan::spsc::Consumer::open(name.as_str(), Options::new()).unwrap();
    let o = Order {
        id: 7,
        price: 1.5,
        qty: 3,
        side: 1,
    };
    tx.try_send_value(Order {
        id: 7,
        price: 1.5,
        qty: 3,
        side: 1,
    })
    .unwrap();
    assert_eq!(rx.try_recv_value::<Order>().unwrap(), o);
    tx.try_send(b"short").unwrap();
    match rx.try_recv_value::<Order>() {
        Err(TryRecvError::Other(Error::Mismatch {
            what: "message size",
            expected: 24,
            found: 5,
            ..
        })) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_geometry_is_refused() {
    let name = ShmName::new("geom");
    for opts in [
        Options::new().slot_size(0),
        Options::new().capacity(0),
        Options::new().slot_size(shmchan::MAX_SLOT_SIZE + 1),
        Options::new().capacity(shmchan::MAX_CAPACITY + 1),
    ] {
        let e = shmchan::spsc::Producer::create(name.as_str(), opts).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        assert!(!name.exists());
    }
    let e = shmchan::mpmc::Producer::create(name.as_str(), Options::new().capacity(1)).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("at least 2")),
        "{e}"
    );
    shmchan::spsc::Producer::create(name.as_str(), Options::new().capacity(1)).unwrap();
}
