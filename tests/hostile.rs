//! A peer that writes garbage: every bad index, position or length read from shared memory is
//! an `Error::Corrupt` (or an ordinary outcome), never a panic, a crash or a hang.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Rng, ShmName, report, reports};
use shmchan::{Error, Mode, Options, Segment, TryRecvError, mpmc, mpsc, spsc};

/// Byte offsets in an SPSC channel's segment: header 256, 2 participant records of 128, then
/// the ring: tail at +0, head at +128, slots from +640, slot header (seq, len) then payload.
const SPSC_RING: usize = 256 + 2 * 128;
const TAIL: usize = SPSC_RING;
const HEAD: usize = SPSC_RING + 128;
const SLOT0_LEN: usize = SPSC_RING + 640 + 8;

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        match role {
            // Writes random words at random offsets of the segment until the deadline.
            "scribble" => {
                let seg = Segment::open(&args[0], Mode::ReadWrite).unwrap();
                let millis: u64 = args[1].parse().unwrap();
                let mut rng = Rng(u64::from(std::process::id()) | 1);
                let end = Instant::now() + Duration::from_millis(millis);
                let mut n = 0u64;
                while Instant::now() < end {
                    let off = (rng.below(seg.len() as u64 / 8) * 8) as usize;
                    let v = match rng.below(4) {
                        0 => rng.next(),
                        1 => rng.below(300),
                        2 => u64::MAX - rng.below(3),
                        _ => 0,
                    };
                    seg.atomic_u64(off).unwrap().store(v, Ordering::Relaxed);
                    n += 1;
                }
                report(format!("scribbled {n}"));
            }
            other => panic!("unknown role {other}"),
        }
    });
}

fn opts() -> Options {
    common::opts(32, 8, common::ms(5))
}

#[test]
fn bad_lengths_and_positions_are_corrupt() {
    let name = ShmName::new("badvals");
    let mut tx = spsc::Producer::create(name.as_str(), opts()).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str(), opts()).unwrap();
    let seg = Segment::open(name.as_str(), Mode::ReadWrite).unwrap();

    // A length longer than the slot.
    tx.try_send(b"ok").unwrap();
    seg.atomic_u32(SLOT0_LEN)
        .unwrap()
        .store(1_000_000, Ordering::SeqCst);
    match rx.try_recv() {
        Err(TryRecvError::Other(Error::Corrupt(m))) => assert!(m.contains("1000000"), "{m}"),
        other => panic!("{other:?}"),
    }

    // A tail more than a lap ahead of the head.
    let fresh = ShmName::new("badtail");
    let _t = spsc::Producer::create(fresh.as_str(), opts()).unwrap();
    let mut r2 = spsc::Consumer::open(fresh.as_str(), opts()).unwrap();
    let s2 = Segment::open(fresh.as_str(), Mode::ReadWrite).unwrap();
    s2.atomic_u64(TAIL).unwrap().store(1_000, Ordering::SeqCst);
    assert!(matches!(
        r2.try_recv(),
        Err(TryRecvError::Other(Error::Corrupt(_)))
    ));
    // Positions near the top of u64 do not overflow into a panic.
    s2.atomic_u64(TAIL)
        .unwrap()
        .store(u64::MAX, Ordering::SeqCst);
    s2.atomic_u64(HEAD)
        .unwrap()
        .store(u64::MAX - 1, Ordering::SeqCst);
    let _ = r2.try_recv();
    let _ = spsc::Consumer::open(fresh.as_str(), opts());

    // A head that runs ahead of the tail, seen by the producer when it fills the ring.
    let third = ShmName::new("badhead");
    let mut t3 = spsc::Producer::create(third.as_str(), opts()).unwrap();
    let s3 = Segment::open(third.as_str(), Mode::ReadWrite).unwrap();
    s3.atomic_u64(HEAD).unwrap().store(500, Ordering::SeqCst);
    let mut corrupt = false;
    for _ in 0..9 {
        match t3.try_send(b"x") {
            Err(shmchan::TrySendError::Other(_, e)) if matches!(*e, Error::Corrupt(_)) => {
                corrupt = true;
                break;
            }
            _ => {}
        }
    }
    assert!(corrupt, "a head beyond the tail must be reported");
}

/// Runs every non-blocking and short-timeout operation on both handles until the deadline;
/// any result is acceptable, a panic is not.
macro_rules! hammer {
    ($flavour:ident, $tag:expr) => {{
        let name = ShmName::new($tag);
        let mut tx = $flavour::Producer::create(name.as_str(), opts()).unwrap();
        let mut rx = $flavour::Consumer::open(name.as_str(), opts()).unwrap();
        let child = common::spawn("scribble", &[name.as_str(), "400"]);
        let end = Instant::now() + Duration::from_millis(400);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut ops = 0u64;
        let mut corrupt = 0u64;
        while Instant::now() < end {
            if let Err(shmchan::TrySendError::Other(_, e)) = tx.try_send(b"payload") {
                corrupt += matches!(*e, Error::Corrupt(_)) as u64;
            }
            if let Err(TryRecvError::Other(Error::Corrupt(_))) = rx.try_recv() {
                corrupt += 1;
            }
            let _ = rx.try_recv_ref().map(|s| s.map(|s| s.to_vec()));
            let _ = tx.send_timeout(b"t", Duration::from_micros(200));
            let _ = rx.recv_timeout(Duration::from_micros(200));
            let _ = (tx.pending(), rx.available(), rx.is_full(), tx.is_empty());
            // Chunks (every flavour): claims of several slots over scribbled sequences,
            // positions and lengths.
            if let Ok(mut c) = tx.try_reserve_many(3) {
                for i in 0..c.len() {
                    let _ = c.write(i, b"chunk");
                }
                let k = c.len();
                c.commit(k);
            }
            match rx.try_recv_many(4) {
                Ok(c) => {
                    let mut buf = [0u8; 32];
                    for i in 0..c.len() {
                        let _ = c.read(i, &mut buf);
                    }
                }
                Err(Error::Corrupt(_)) => corrupt += 1,
                Err(_) => {}
            }
            // Async waits park on doorbells and watch the (scribbled) participants' pidfds.
            rt.block_on(async {
                let t = Duration::from_micros(300);
                let _ = tokio::time::timeout(t, rx.recv()).await;
                let _ = tokio::time::timeout(t, tx.send(b"async")).await;
                if let Ok(Ok(c)) = tokio::time::timeout(t, rx.recv_chunk(4)).await {
                    drop(c);
                }
                if let Ok(Ok(c)) = tokio::time::timeout(t, tx.reserve_many(2)).await {
                    drop(c); // dropped uncommitted: given back
                }
            });
            ops += 1;
        }
        let out = child.wait_ok();
        assert!(reports(&out)[0].starts_with("scribbled"));
        // Attaching to the scribbled segment is an error or a handle, never a panic.
        let _ = $flavour::Consumer::open(name.as_str(), opts());
        let _ = $flavour::Producer::open(name.as_str(), opts());
        drop((tx, rx));
        let _ = Segment::unlink(name.as_str());
        assert!(ops > 10, "only {ops} rounds");
        corrupt
    }};
}

#[test]
fn a_scribbling_process_never_crashes_an_spsc_peer() {
    let c = hammer!(spsc, "scrib-spsc");
    println!("spsc: {c} corrupt results");
}

#[test]
fn a_scribbling_process_never_crashes_an_mpsc_peer() {
    let c = hammer!(mpsc, "scrib-mpsc");
    println!("mpsc: {c} corrupt results");
}

#[test]
fn a_scribbling_process_never_crashes_an_mpmc_peer() {
    let c = hammer!(mpmc, "scrib-mpmc");
    println!("mpmc: {c} corrupt results");
}

/// Participant records a hostile peer filled with pids no process can have (0 excepted: a
/// free record): 2^22 + 1 and up, including values that are negative as a `pid_t`. They are
/// dead records to every check, and parking (blocking or async, which watches peers' pidfds)
/// never panics on them, also in debug builds. (A pid >= 2^31 used to reach
/// `Pid::from_raw(pid as i32)` on every async park and trip rustix's debug assertion.)
#[cfg(feature = "tokio")]
#[test]
fn garbage_pids_in_the_participant_table_are_dead_not_a_panic() {
    use shmchan::WaitStrategy;
    const RECORDS: usize = 256; // participants_off: right after the 256-byte header
    let name = ShmName::new("badpids");
    let o = opts()
        .max_participants(8)
        .wait_strategy(WaitStrategy::park_only());
    let mut tx = mpmc::Producer::create(name.as_str(), o.clone()).unwrap();
    let mut rx = mpmc::Consumer::open(name.as_str(), o.clone()).unwrap();
    let seg = Segment::open(name.as_str(), Mode::ReadWrite).unwrap();
    // Records 0 and 1 are ours; fill 2..8 with LIVE owners of absurd pids, both roles.
    for (i, pid) in [
        (1u64 << 22) + 1,
        1 << 31,
        u32::MAX as u64 - 1,
        u32::MAX as u64,
    ]
    .into_iter()
    .enumerate()
    {
        for (j, role) in [1u64, 2].into_iter().enumerate() {
            let rec = 2 + 2 * (i % 3) + j;
            let owner = pid | role << 32 | 2 << 40 | 1 << 48;
            seg.atomic_u64(RECORDS + rec * 128)
                .unwrap()
                .store(owner, Ordering::SeqCst);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // An async consumer parks on its doorbell (watching every participant's pidfd).
        let waited = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await;
        assert!(waited.is_err(), "nothing was sent: {waited:?}");
        tx.send(b"after").await.unwrap();
        assert_eq!(&*rx.recv().await.unwrap(), b"after");
    });
    // Blocking parks, too.
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(30)),
        Err(Error::TimedOut(_))
    ));
    assert!(rx.is_empty());
}

/// `Duration::MAX` is a timeout a caller may pass ("no limit"): it never overflows into a
/// panic. (`Instant::now() + timeout` used to panic in `send_timeout`, `recv_timeout` and the
/// layout's init wait.)
#[test]
fn duration_max_timeouts_do_not_panic() {
    let name = ShmName::new("durmax");
    let o = opts().init_timeout(Duration::MAX);
    let mut tx = spsc::Producer::create(name.as_str(), o.clone()).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str(), o).unwrap();
    tx.send_timeout(b"x", Duration::MAX).unwrap();
    assert_eq!(&*rx.recv_timeout(Duration::MAX).unwrap(), b"x");
}

/// A dead MPMC consumer's record whose chunk end (aux word 6) claims more positions than the
/// ring has: the live consumer that looks at it for adoption gets `Error::Corrupt` naming the
/// record, never a panic or a walk over slots the record cannot hold; with a sane end it
/// adopts the message the record pins.
#[test]
fn a_dead_consumer_record_with_an_absurd_chunk_end_is_corrupt() {
    const RECORDS: usize = 256; // participants_off: right after the 256-byte header
    const REC_INTENT: usize = 16;
    const REC_CHUNK_END: usize = 24 + 6 * 8;
    for end in [1u64 << 40, 2] {
        let name = ShmName::new("badend");
        let o = opts().max_participants(8);
        let mut tx = mpmc::Producer::create(name.as_str(), o.clone()).unwrap();
        let mut rx = mpmc::Consumer::open(name.as_str(), o).unwrap();
        let seg = Segment::open(name.as_str(), Mode::ReadWrite).unwrap();
        tx.try_send(b"held").unwrap();
        // Record 2: a consumer of a pid no process has, holding position 0 (head moved past
        // it), its chunk said to end at `end`.
        let rec = RECORDS + 2 * 128;
        let owner = ((1u64 << 22) + 1) | 2 << 32 | 2 << 40 | 1 << 48;
        seg.atomic_u64(rec).unwrap().store(owner, Ordering::SeqCst);
        seg.atomic_u64(rec + REC_INTENT)
            .unwrap()
            .store(1, Ordering::SeqCst);
        seg.atomic_u64(rec + REC_CHUNK_END)
            .unwrap()
            .store(end, Ordering::SeqCst);
        let data = seg.atomic_u64(56).unwrap().load(Ordering::SeqCst) as usize;
        seg.atomic_u64(data + 128)
            .unwrap()
            .store(1, Ordering::SeqCst); // head
        let deadline = Instant::now() + Duration::from_secs(5);
        let got = loop {
            assert!(
                Instant::now() < deadline,
                "no verdict within 5 s (end {end})"
            );
            match rx.try_recv() {
                Err(TryRecvError::Empty) => std::thread::yield_now(),
                other => break other,
            }
        };
        match (end, got) {
            (2, Ok(m)) => assert_eq!(&*m, b"held"),
            (_, Err(TryRecvError::Other(Error::Corrupt(e)))) if end != 2 => {
                assert!(
                    e.contains("participant #2") && e.contains("claims positions"),
                    "{e}"
                );
            }
            (end, other) => panic!("end {end}: {other:?}"),
        }
    }
}
