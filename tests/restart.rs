//! Restarts: a participant SIGKILLed and replaced by a new process leaves the channel exactly
//! as a clean leave would have; an attach that fails changes nothing for the peers.
//!
//! These are the deterministic regression tests of the bugs the kill matrix
//! (`tests/kill_matrix.rs`) found at random: each orders the steps so that the bug, if present,
//! shows every time.

mod common;

use std::time::{Duration, Instant};

use common::{ShmName, kill9, read_report, report, spawn_holding};
use shmchan::{Error, Options, Stale, TrySendError, mpmc, mpsc, spsc};

const MAX: usize = 64;

fn opts() -> Options {
    common::opts(MAX, 8, common::ms(20))
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let (name, flavour) = (&args[0], args[1].as_str());
        let count: u64 = args[2].parse().unwrap();
        macro_rules! send {
            ($m:ident) => {{
                let mut tx = $m::Producer::open(name, opts()).unwrap();
                for i in 0..count {
                    tx.send_blocking(i.to_le_bytes()).unwrap();
                }
                tx
            }};
        }
        macro_rules! by_flavour {
            ($body:ident) => {
                match flavour {
                    "spsc" => drop($body!(spsc)),
                    "mpsc" => drop($body!(mpsc)),
                    _ => drop($body!(mpmc)),
                }
            };
        }
        match role {
            // Sends `count` messages, reports, and holds its handle until killed.
            "send-and-hold" => {
                macro_rules! hold {
                    ($m:ident) => {{
                        let tx = send!($m);
                        report("sent");
                        let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
                        tx
                    }};
                }
                by_flavour!(hold)
            }
            // Sends `count` messages and leaves cleanly.
            "send" => {
                by_flavour!(send);
                report("done");
            }
            // Opens a consumer with another capacity than the channel's: must fail.
            "mismatched-consumer" => {
                let o = opts().capacity(16);
                let r = match flavour {
                    "spsc" => spsc::Consumer::open_or_create(name, o).map(drop),
                    "mpsc" => mpsc::Consumer::open_or_create(name, o).map(drop),
                    _ => mpmc::Consumer::open_or_create(name, o).map(drop),
                };
                report(match r {
                    Err(Error::Mismatch { .. }) => "mismatch".to_owned(),
                    other => format!("unexpected {other:?}"),
                });
            }
            // Creates the channel, sends `count` messages, reports, and holds until killed
            // (or stdin closes).
            "create-send-hold" => {
                macro_rules! hold {
                    ($m:ident) => {{
                        let mut tx = $m::Producer::create(name, opts()).unwrap();
                        for i in 0..count {
                            tx.send_blocking(i.to_le_bytes()).unwrap();
                        }
                        report("sent");
                        let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
                        tx
                    }};
                }
                by_flavour!(hold)
            }
            // Races to create the channel: reports "won" or the error, then holds.
            "race-create" => {
                let r = spsc::Producer::create(name, opts());
                report(match &r {
                    Ok(_) => "won".to_owned(),
                    Err(Error::AlreadyExists(m)) => format!("lost: {m}"),
                    Err(e) => format!("error: {e}"),
                });
                let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
                drop(r);
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// Starts a process that creates `name`, sends `n` messages and is then SIGKILLed (and
/// reaped): the stale segment a crashed service leaves.
fn leave_a_stale_channel(name: &ShmName, flavour: &str, n: &str) -> u32 {
    let mut victim = spawn_holding("create-send-hold", &[name.as_str(), flavour, n]);
    assert_eq!(read_report(&mut victim), "sent");
    let pid = victim.id();
    kill9(pid);
    let _ = victim.0.take().unwrap().wait();
    assert!(name.exists(), "the killed creator left its segment");
    pid
}

/// A service SIGKILLed and restarted gets its name back with `create`, and its new consumer
/// does not see the dead run's messages. (`create` used to fail with `AlreadyExists`, and
/// `open_or_create` re-delivered the stale messages.)
#[test]
fn a_killed_services_name_is_reclaimed_without_stale_messages() {
    for flavour in ["spsc", "mpsc", "mpmc"] {
        let name = ShmName::new(&format!("reclaim-{flavour}"));
        leave_a_stale_channel(&name, flavour, "3");
        macro_rules! run {
            ($m:ident) => {{
                let mut tx = $m::Producer::create(name.as_str(), opts()).unwrap();
                let mut rx = $m::Consumer::open(name.as_str(), opts()).unwrap();
                assert!(
                    rx.try_recv().is_err(),
                    "{flavour}: a stale message was delivered"
                );
                tx.try_send(b"fresh").unwrap();
                assert_eq!(&*rx.try_recv().unwrap(), b"fresh");
            }};
        }
        match flavour {
            "spsc" => run!(spsc),
            "mpsc" => run!(mpsc),
            _ => run!(mpmc),
        }
    }
    // open_or_create reclaims too.
    let name = ShmName::new("reclaim-ooc");
    leave_a_stale_channel(&name, "mpsc", "5");
    let mut rx = mpsc::Consumer::open_or_create(name.as_str(), opts()).unwrap();
    assert!(rx.is_creator());
    assert!(
        rx.try_recv().is_err(),
        "open_or_create re-delivered stale messages"
    );
}

/// `Stale::Refuse` says what happened and how to reclaim; `Stale::Keep` delivers what the
/// dead run left; a live creator's name is never taken, and the error names its pid.
#[test]
fn stale_policies_and_live_names() {
    let name = ShmName::new("stale-refuse");
    let pid = leave_a_stale_channel(&name, "spsc", "2");
    match spsc::Producer::create(name.as_str(), opts().stale(shmchan::Stale::Refuse)) {
        Err(Error::AlreadyExists(m)) => {
            assert!(m.contains("every participant is dead"), "{m}");
            assert!(m.contains(&format!("pid {pid}")), "{m}");
            assert!(m.contains("Stale::Reclaim"), "{m}");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let tx = spsc::Producer::create(name.as_str(), opts().stale(shmchan::Stale::Keep)).unwrap();
    assert!(!tx.is_creator(), "Keep attaches to the old segment");
    let mut rx = spsc::Consumer::open(name.as_str(), opts()).unwrap();
    assert_eq!(
        drain_now(&mut rx),
        [0, 1],
        "Keep delivers what the dead run committed"
    );
    drop((tx, rx));

    let live = ShmName::new("stale-live");
    let mut holder = spawn_holding("create-send-hold", &[live.as_str(), "spsc", "1"]);
    assert_eq!(read_report(&mut holder), "sent");
    match spsc::Producer::create(live.as_str(), opts()) {
        Err(Error::AlreadyExists(m)) => {
            assert!(
                m.contains(&holder.id().to_string()),
                "names the live pid: {m}"
            )
        }
        other => panic!("a live channel was taken over: {other:?}"),
    }
}

fn drain_now(rx: &mut spsc::Consumer) -> Vec<u64> {
    let mut got = Vec::new();
    while let Ok(m) = rx.try_recv() {
        got.push(u64::from_le_bytes(m[..8].try_into().unwrap()));
    }
    got
}

/// Three processes race to create one stale name, many times: exactly one wins each round,
/// and the others get `AlreadyExists` naming a live process (never two creators of one name,
/// never a live segment unlinked).
#[test]
fn racing_creators_on_a_stale_name_have_one_winner() {
    for round in 0..10 {
        let name = ShmName::new(&format!("race-{round}"));
        leave_a_stale_channel(&name, "spsc", "1");
        let mut racers: Vec<_> = (0..3)
            .map(|_| spawn_holding("race-create", &[name.as_str(), "spsc", "0"]))
            .collect();
        let results: Vec<String> = racers.iter_mut().map(read_report).collect();
        let winners = results.iter().filter(|r| *r == "won").count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        for r in results.iter().filter(|r| *r != "won") {
            assert!(r.starts_with("lost: ") && r.contains("live process"), "{r}");
        }
        for mut r in racers {
            drop(r.0.as_mut().unwrap().stdin.take());
            r.wait_ok();
        }
    }
}

/// A name whose creator has opened it but not laid it out yet (`shm_open`, `ftruncate` and
/// the header's first stores are separate steps; the winner of a race for a stale name is
/// there for a moment) is waited for, not judged corrupt nor "in use by process 0". Here the
/// object never gets further: creating over it, even with `Stale::Reclaim`, ends in
/// `TimedOut` after the init timeout, naming the segment, and leaves it alone. (The waits
/// used to be missing: a racer that lost got `Corrupt: size 0` under load.)
#[test]
fn a_name_still_being_laid_out_is_waited_for() {
    use std::os::unix::fs::OpenOptionsExt;
    for size in [0u64, 4096] {
        let name = ShmName::new(&format!("unsized-{size}"));
        let path = format!("/dev/shm/{}", name.as_str().trim_start_matches('/'));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.set_len(size).unwrap();
        let timeout = Duration::from_millis(200);
        let t0 = Instant::now();
        let r = spsc::Producer::create(
            name.as_str(),
            opts().stale(Stale::Reclaim).init_timeout(timeout),
        );
        match r {
            Err(Error::TimedOut(m)) => assert!(m.contains(name.as_str()), "size {size}: {m}"),
            other => panic!("size {size}: expected TimedOut, got {other:?}"),
        }
        assert!(t0.elapsed() >= timeout, "size {size}: gave up early");
        assert!(
            name.exists(),
            "size {size}: another creator's object was removed"
        );
    }
}

/// Receives until the stream ends; every wait is bounded: a hang is a failure, not a stall.
fn drain<F: shmchan::channel::Flavour>(rx: &mut shmchan::channel::Consumer<F>) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "the consumer never saw the end of the channel (received {got:?})"
        );
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(m) => got.push(u64::from_le_bytes(m[..8].try_into().unwrap())),
            Err(Error::Closed) => return got,
            // The consumer may or may not notice the death itself: both end the stream.
            Err(Error::PeerGone(_)) => {}
            Err(e) => panic!("the consumer got {e} instead of the end (received {got:?})"),
        }
    }
}

/// A producer SIGKILLed, then replaced by a new producer process that sends and leaves
/// cleanly, before the consumer looks: the consumer must see everything, then the end. (The
/// replacement used to take over the dead producer's record without undoing its clean-close
/// count, so the channel never closed.)
fn killed_producer_replaced(flavour: &str) {
    let name = ShmName::new(&format!("restart-{flavour}"));
    macro_rules! run {
        ($m:ident) => {{
            let mut rx = $m::Consumer::create(name.as_str(), opts()).unwrap();
            let mut victim = spawn_holding("send-and-hold", &[name.as_str(), flavour, "3"]);
            assert_eq!(read_report(&mut victim), "sent");
            kill9(victim.id());
            let _ = victim.0.take().unwrap().wait(); // reaped: certainly dead
            let out = common::spawn("send", &[name.as_str(), flavour, "2"]).wait_ok();
            assert_eq!(common::reports(&out), ["done"]);
            let got = drain(&mut rx);
            assert_eq!(got, [0, 1, 2, 0, 1], "every committed message, in order");
        }};
    }
    match flavour {
        "spsc" => run!(spsc),
        "mpsc" => run!(mpsc),
        _ => run!(mpmc),
    }
}

#[test]
fn spsc_killed_producer_replaced_then_the_channel_closes() {
    killed_producer_replaced("spsc");
}

#[test]
fn mpsc_killed_producer_replaced_then_the_channel_closes() {
    killed_producer_replaced("mpsc");
}

#[test]
fn mpmc_killed_producer_replaced_then_the_channel_closes() {
    killed_producer_replaced("mpmc");
}

/// A consumer whose attach fails (another geometry) must not make the channel look closed to
/// its producer: a full ring stays `Full`. (The failed attach used to set the "consumer seen"
/// flag and count in before the geometry check, so the producer got `Closed`.)
fn failed_attach_changes_nothing(flavour: &str) {
    let name = ShmName::new(&format!("badattach-{flavour}"));
    macro_rules! run {
        ($m:ident) => {{
            let mut tx = $m::Producer::create(name.as_str(), opts()).unwrap();
            for i in 0..8u64 {
                tx.try_send(i.to_le_bytes()).unwrap();
            }
            let out =
                common::spawn("mismatched-consumer", &[name.as_str(), flavour, "0"]).wait_ok();
            assert_eq!(common::reports(&out), ["mismatch"]);
            match tx.try_send(8u64.to_le_bytes()) {
                Err(TrySendError::Full(_)) => {}
                other => panic!("a full ring with no consumer yet must be Full: {other:?}"),
            }
        }};
    }
    match flavour {
        "spsc" => run!(spsc),
        "mpsc" => run!(mpsc),
        _ => run!(mpmc),
    }
}

#[test]
fn spsc_failed_attach_does_not_close_the_channel() {
    failed_attach_changes_nothing("spsc");
}

#[test]
fn mpsc_failed_attach_does_not_close_the_channel() {
    failed_attach_changes_nothing("mpsc");
}

#[test]
fn mpmc_failed_attach_does_not_close_the_channel() {
    failed_attach_changes_nothing("mpmc");
}

/// A stale-looking segment made in another pid namespace is never reclaimed: its pids mean
/// nothing here, so its participants only look dead. (`create` used to take it over.)
#[test]
fn a_segment_of_another_pid_namespace_is_never_reclaimed() {
    let name = ShmName::new("reclaim-ns");
    leave_a_stale_channel(&name, "spsc", "1");
    let seg = shmchan::Segment::open(name.as_str(), shmchan::Mode::ReadWrite).unwrap();
    let word = seg.atomic_u64(128).unwrap(); // the creator's pid-namespace inode
    let ours = word.load(std::sync::atomic::Ordering::SeqCst);
    word.store(ours ^ 0x5a5a, std::sync::atomic::Ordering::SeqCst);
    match spsc::Producer::create(name.as_str(), opts()) {
        Err(Error::Mismatch { what, .. }) => assert_eq!(what, "pid namespace"),
        other => panic!("a foreign namespace's segment was taken over: {other:?}"),
    }
    assert!(name.exists(), "the segment must be left alone");
}
