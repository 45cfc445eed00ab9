//! MPSC and MPMC channels across real processes: many producers, many consumers, exactly-once
//! delivery, repair of slots claimed by dead producers, redelivery of slots claimed by dead
//! consumers.

mod common;

use std::io::{BufRead, Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{ShmName, check_message, kill9, message, read_report, report, reports, spawn_holding};
use shmchan::{Error, Mode, Options, Segment, WaitStrategy, mpmc, mpsc};

const MAX: usize = 64;

fn opts() -> Options {
    common::opts(MAX, 32, common::ms(20))
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let name = &args[0];
        match role {
            // Sends `count` messages of stream `stream`, on an MPSC or MPMC channel.
            "produce" => {
                let stream: u64 = args[1].parse().unwrap();
                let count: u64 = args[2].parse().unwrap();
                if args[3] == "mpsc" {
                    let mut tx = mpsc::Producer::open(name, opts()).unwrap();
                    for i in 0..count {
                        tx.send_blocking(message(stream, i, MAX)).unwrap();
                    }
                } else {
                    let mut tx = mpmc::Producer::open(name, opts()).unwrap();
                    for i in 0..count {
                        tx.send_blocking(message(stream, i, MAX)).unwrap();
                    }
                }
                report("sent");
            }
            // MPMC consumer: marks each message in a shared bitmap (args: bitmap segment, count
            // per stream), checks per-stream order, reports how many it took and duplicates seen.
            "consume" => {
                let bitmap = Segment::open(&args[1], Mode::ReadWrite).unwrap();
                let per: u64 = args[2].parse().unwrap();
                let mut rx = mpmc::Consumer::open(name, opts()).unwrap();
                report("ready");
                let mut last = [None::<u64>; 8];
                let (mut n, mut dups) = (0u64, 0u64);
                loop {
                    match rx.recv_blocking() {
                        Ok(m) => {
                            let (s, i) = check_message(&m, MAX);
                            if let Some(prev) = last[s as usize] {
                                assert!(i > prev, "stream {s}: {i} after {prev}");
                            }
                            last[s as usize] = Some(i);
                            let bit = s * per + i;
                            let word = bitmap.atomic_u64((bit / 64 * 8) as usize).unwrap();
                            if word.fetch_or(1 << (bit % 64), Ordering::AcqRel) & (1 << (bit % 64))
                                != 0
                            {
                                dups += 1;
                            }
                            n += 1;
                        }
                        Err(Error::Closed) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                report(format!("took {n} dups {dups}"));
            }
            // Sends message (9, 0), reserves a slot and holds it until told on stdin: "commit" sends
            // (9, 1); the parent may kill us instead.
            "reserve-and-hold" => {
                let flavour = &args[1];
                let mut line = String::new();
                macro_rules! run {
                    ($m:ident) => {{
                        let mut tx = $m::Producer::open(name, opts()).unwrap();
                        tx.send_blocking(message(9, 0, MAX)).unwrap();
                        let mut slot = tx.try_reserve().unwrap().unwrap();
                        let m = message(9, 1, MAX);
                        slot.write(0, &m).unwrap();
                        report("holding");
                        std::io::stdin().lock().read_line(&mut line).unwrap();
                        if line.trim() == "commit" {
                            slot.commit(m.len()).unwrap();
                        }
                        report("done");
                    }};
                }
                if flavour == "mpsc" {
                    run!(mpsc)
                } else {
                    run!(mpmc)
                }
            }
            // MPMC consumer that borrows one message in place and holds it until killed.
            "take-and-hold" => {
                let mut rx = mpmc::Consumer::open(name, opts()).unwrap();
                let slot = rx.recv_ref_blocking().unwrap();
                let (_, i) = check_message(&slot.to_vec(), MAX);
                report(format!("holding {i}"));
                let _ = std::io::stdin().read(&mut [0u8; 1]);
                drop(slot);
            }
            // Parked-only MPMC consumer that takes messages until Closed, then reports the count.
            "park-consume" => {
                let mut rx =
                    mpmc::Consumer::open(name, opts().wait_strategy(WaitStrategy::park_only()))
                        .unwrap();
                report("ready");
                let mut n = 0;
                while rx.recv_blocking().is_ok() {
                    n += 1;
                }
                report(format!("took {n}"));
            }
            "second-consumer" => {
                report(common::open_outcome(mpsc::Consumer::open(name, opts())));
            }
            other => panic!("unknown role {other}"),
        }
    });
}

#[test]
fn mpsc_four_producer_processes_each_in_order_exactly_once() {
    const PER: u64 = 25_000;
    let name = ShmName::new("mpsc4");
    let mut rx = mpsc::Consumer::create(name.as_str(), opts()).unwrap();
    let children: Vec<_> = (0..4u64)
        .map(|s| {
            common::spawn(
                "produce",
                &[name.as_str(), &s.to_string(), &PER.to_string(), "mpsc"],
            )
        })
        .collect();
    let mut next = [0u64; 4];
    for _ in 0..4 * PER {
        let m = rx.recv_blocking().unwrap();
        let (s, i) = check_message(&m, MAX);
        assert_eq!(i, next[s as usize], "stream {s} out of order");
        next[s as usize] += 1;
    }
    for c in children {
        assert_eq!(reports(&c.wait_ok()), ["sent"]);
    }
    assert_eq!(next, [PER; 4]);
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(5)),
        Err(Error::Closed)
    ));
    assert_eq!(rx.abandoned(), 0);
}

#[test]
fn mpsc_second_consumer_is_in_use() {
    let name = ShmName::new("mpscinuse");
    let _rx = mpsc::Consumer::create(name.as_str(), opts()).unwrap();
    let out = common::spawn("second-consumer", &[name.as_str()]).wait_ok();
    assert!(
        reports(&out)[0].starts_with("in use"),
        "{:?}",
        reports(&out)
    );
    // Producers are many.
    let _a = mpsc::Producer::open(name.as_str(), opts()).unwrap();
    let _b = mpsc::Producer::open(name.as_str(), opts()).unwrap();
}

#[test]
fn mpmc_two_by_two_processes_exactly_once() {
    const PER: u64 = 20_000;
    let name = ShmName::new("mpmc22");
    let bitmap_name = ShmName::new("bitmap");
    let bitmap =
        Segment::create(bitmap_name.as_str(), (2 * PER as usize).div_ceil(64) * 8).unwrap();
    // The parent holds a producer handle until every consumer is ready, so that the channel
    // is not closed before anyone sends.
    let tx = mpmc::Producer::create(name.as_str(), opts()).unwrap();
    let mut consumers: Vec<_> = (0..2)
        .map(|_| {
            common::spawn(
                "consume",
                &[name.as_str(), bitmap_name.as_str(), &PER.to_string()],
            )
        })
        .collect();
    for c in &mut consumers {
        assert_eq!(read_report(c), "ready");
    }
    let producers: Vec<_> = (0..2u64)
        .map(|s| {
            common::spawn(
                "produce",
                &[name.as_str(), &s.to_string(), &PER.to_string(), "mpmc"],
            )
        })
        .collect();
    for p in producers {
        assert_eq!(reports(&p.wait_ok()), ["sent"]);
    }
    drop(tx);
    let mut total = 0;
    for c in consumers {
        let out = c.wait_ok();
        let line = reports(&out).pop().unwrap();
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[3], "0", "duplicates: {line}");
        total += parts[1].parse::<u64>().unwrap();
    }
    assert_eq!(total, 2 * PER);
    for w in 0..(2 * PER as usize).div_ceil(64) {
        let bits = bitmap.atomic_u64(w * 8).unwrap().load(Ordering::Acquire);
        let valid = (2 * PER as usize - w * 64).min(64);
        let want = if valid == 64 {
            u64::MAX
        } else {
            (1 << valid) - 1
        };
        assert_eq!(bits, want, "missing messages in word {w}");
    }
}

fn dead_producer_slot_is_repaired_and_live_one_never_skipped(flavour: &str) {
    let name = ShmName::new(&format!("repair-{flavour}"));
    macro_rules! run {
        ($m:ident) => {{
            let mut rx = $m::Consumer::create(name.as_str(), opts()).unwrap();
            // A live holder: its claimed slot blocks later messages, which must wait for it.
            let mut live = spawn_holding("reserve-and-hold", &[name.as_str(), flavour]);
            assert_eq!(read_report(&mut live), "holding");
            assert_eq!(check_message(&rx.recv_blocking().unwrap(), MAX), (9, 0));
            let mut other = $m::Producer::open(name.as_str(), opts()).unwrap();
            other.send_blocking(message(1, 0, MAX)).unwrap();
            let e = rx.recv_timeout(Duration::from_millis(200)).unwrap_err();
            assert!(
                matches!(e, Error::TimedOut(_)),
                "a live producer's slot was skipped: {e}"
            );
            let stdin = live.0.as_mut().unwrap().stdin.as_mut().unwrap();
            stdin.write_all(b"commit\n").unwrap();
            assert_eq!(check_message(&rx.recv_blocking().unwrap(), MAX), (9, 1));
            assert_eq!(check_message(&rx.recv_blocking().unwrap(), MAX), (1, 0));
            assert_eq!(reports(&live.wait_ok()), ["done"]);

            // A dead holder: once it is proven dead, its slot is skipped as abandoned.
            let mut dead = spawn_holding("reserve-and-hold", &[name.as_str(), flavour]);
            assert_eq!(read_report(&mut dead), "holding");
            assert_eq!(check_message(&rx.recv_blocking().unwrap(), MAX), (9, 0));
            other.send_blocking(message(1, 1, MAX)).unwrap();
            kill9(dead.id());
            let t = Instant::now();
            assert_eq!(check_message(&rx.recv_blocking().unwrap(), MAX), (1, 1));
            assert!(t.elapsed() < Duration::from_secs(5));
            assert_eq!(rx.abandoned(), 1);
        }};
    }
    if flavour == "mpsc" {
        run!(mpsc)
    } else {
        run!(mpmc)
    }
}

#[test]
fn mpsc_dead_producer_slot_is_repaired_and_live_one_never_skipped() {
    dead_producer_slot_is_repaired_and_live_one_never_skipped("mpsc");
}

#[test]
fn mpmc_dead_producer_slot_is_repaired_and_live_one_never_skipped() {
    dead_producer_slot_is_repaired_and_live_one_never_skipped("mpmc");
}

#[test]
fn mpmc_message_of_a_killed_consumer_is_redelivered() {
    let name = ShmName::new("redeliver");
    let mut tx = mpmc::Producer::create(name.as_str(), opts()).unwrap();
    tx.send_blocking(message(5, 0, MAX)).unwrap();
    let mut holder = spawn_holding("take-and-hold", &[name.as_str()]);
    assert_eq!(read_report(&mut holder), "holding 0");
    let mut rx = mpmc::Consumer::open(name.as_str(), opts()).unwrap();
    tx.send_blocking(message(5, 1, MAX)).unwrap();
    tx.send_blocking(message(5, 2, MAX)).unwrap();
    assert_eq!(check_message(&rx.recv_blocking().unwrap(), MAX), (5, 1));
    assert_eq!(check_message(&rx.recv_blocking().unwrap(), MAX), (5, 2));
    kill9(holder.id());
    let t = Instant::now();
    let m = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        check_message(&m, MAX),
        (5, 0),
        "the dead consumer's message comes again"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // Nothing else: exactly the three messages, the slot is free again.
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(50)),
        Err(Error::TimedOut(_))
    ));
    for i in 3..40 {
        tx.send_blocking(message(5, i, MAX)).unwrap();
        assert_eq!(check_message(&rx.recv_blocking().unwrap(), MAX), (5, i));
    }
}

/// Parked counts stay exact across thousands of parks on both sides of an MPMC ring (where
/// both sides share the participant records): every announcement is taken exactly once, by
/// its waker or by its own retraction.
#[test]
fn mpmc_parked_counts_stay_exact_when_both_sides_park() {
    const N: u64 = 3_000;
    let name = ShmName::new("counts");
    let park = opts().capacity(2).wait_strategy(WaitStrategy::park_only());
    let mut tx = mpmc::Producer::create(name.as_str(), park).unwrap();
    let mut consumers: Vec<_> = (0..2)
        .map(|_| common::spawn("park-consume", &[name.as_str()]))
        .collect();
    for c in &mut consumers {
        assert_eq!(read_report(c), "ready");
    }
    for i in 0..N {
        tx.send_blocking(message(3, i, MAX)).unwrap();
    }
    // Wait until the consumers took everything and are parked again, then look at the counts
    // (control block after the header and 64 participant records: consumers' count at +260,
    // producers' at +388).
    let seg = Segment::open(name.as_str(), Mode::ReadOnly).unwrap();
    let ctrl = 256 + 64 * 128;
    let word = |off: usize| {
        let mut b = [0u8; 4];
        seg.read(ctrl + off, &mut b).unwrap();
        u32::from_ne_bytes(b)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while tx.pending() > 0 || word(260) != 2 {
        assert!(
            Instant::now() < deadline,
            "consumers did not park: count {}",
            word(260)
        );
        std::thread::yield_now();
    }
    assert_eq!(word(388), 0, "producers' parked count");
    drop(tx);
    let mut total = 0;
    for c in consumers {
        let line = reports(&c.wait_ok()).pop().unwrap();
        total += line.trim_start_matches("took ").parse::<u64>().unwrap();
    }
    assert_eq!(total, N);
    assert_eq!(
        (word(260), word(388)),
        (0, 0),
        "parked counts after everybody left"
    );
}
