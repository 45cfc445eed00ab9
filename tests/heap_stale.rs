//! A heap whose processes all died (a SIGKILLed service) leaves its name behind: `create`
//! handles it per `HeapOptions::stale`, like channels' `Options::stale`, and never takes over
//! a heap with a live creator or participant. Every party is a real separate process.

mod common;

use common::{ChildGuard, ShmName, kill9, read_report, report, spawn_holding};
use shmchan::{Error, Handle, Heap, HeapOptions, Stale};
use zerocopy::{FromBytes, IntoBytes};

/// Heap size of every test: 16 chunks of 64 KiB.
const SIZE: usize = 1 << 20;
/// Length of the block a creator leaves in flight.
const BLOCK: usize = 4096;
/// What the dead run wrote in its block.
const PATTERN: u8 = 0xa7;

fn opts(stale: Stale) -> HeapOptions {
    Heap::options().stale(stale)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hold() {
    let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        let name = args[0].as_str();
        match role {
            // Creates the heap, leaves a block full of PATTERN in flight (its handle
            // reported), and holds until killed or stdin closes.
            "create-hold" => {
                let heap = Heap::create(name, SIZE).unwrap();
                let mut buf = heap.alloc(BLOCK).unwrap();
                buf.write_at(0, &[PATTERN; BLOCK]).unwrap();
                report(hex(buf.into_handle().as_bytes()));
                hold();
                drop(heap);
            }
            // Opens the heap and holds it: a live participant.
            "open-hold" => {
                let heap = Heap::open(name).unwrap();
                report("open");
                hold();
                drop(heap);
            }
            // Races to create the heap over a stale name: reports "won" or the error, then
            // holds (a winner keeps the heap alive while the losers judge it).
            "race-create" => {
                let r = opts(Stale::Reclaim).create(name, SIZE);
                report(match &r {
                    Ok(_) => "won".to_owned(),
                    Err(Error::AlreadyExists(m)) => format!("lost: {m}"),
                    Err(e) => format!("error: {e}"),
                });
                hold();
                drop(r);
            }
            other => panic!("unknown role {other}"),
        }
    });
}

/// A running creator of `name` with a block in flight: its guard and the block's handle.
fn live_creator(name: &ShmName) -> (ChildGuard, Handle) {
    let mut child = spawn_holding("create-hold", &[name.as_str()]);
    let line = read_report(&mut child);
    let handle = Handle::read_from_bytes(&unhex(&line)).unwrap();
    (child, handle)
}

/// Starts a process that creates `name`, leaves a block in flight, and is then SIGKILLed
/// (and reaped): the stale heap a crashed service leaves. Returns its pid and the handle.
fn leave_a_stale_heap(name: &ShmName) -> (u32, Handle) {
    let (mut victim, handle) = live_creator(name);
    let pid = victim.id();
    kill9(pid);
    let _ = victim.0.take().unwrap().wait();
    assert!(name.exists(), "the killed creator left its heap");
    (pid, handle)
}

/// A SIGKILLed heap creator's name is taken over by a new `create` with `Stale::Reclaim`,
/// and nothing of the dead heap is visible in the new one: all memory free, the dead run's
/// in-flight handle refused, fresh blocks zeroed. (`create` used to fail with
/// `AlreadyExists` until someone ran `shmchan gc`.)
#[test]
fn a_killed_heap_creators_name_is_reclaimed_without_its_blocks() {
    let name = ShmName::new("heap-reclaim");
    let (_, old) = leave_a_stale_heap(&name);
    let heap = opts(Stale::Reclaim)
        .create(name.as_str(), SIZE)
        .expect("a stale heap's name is reclaimed");
    assert_eq!(
        heap.free_bytes(),
        heap.capacity(),
        "the new heap holds blocks"
    );
    assert!(
        !heap.is_in_flight(&old),
        "the dead run's block is in flight"
    );
    match heap.take(old) {
        Err(Error::Corrupt(_)) => {}
        other => panic!("the dead run's handle was accepted: {other:?}"),
    }
    let buf = heap.alloc(BLOCK).unwrap();
    assert!(
        buf.to_vec().iter().all(|&b| b == 0),
        "a fresh block shows the dead run's bytes"
    );
    drop(buf);
    // The default policy is Reclaim too.
    heap.destroy().unwrap();
    leave_a_stale_heap(&name);
    let again = Heap::create(name.as_str(), SIZE).expect("the default reclaims");
    assert_eq!(again.free_bytes(), again.capacity());
}

/// `Stale::Refuse` leaves the stale heap alone and says why: every participant is dead, the
/// last pid, and how to reclaim it.
#[test]
fn refuse_names_the_dead_pid_and_how_to_reclaim() {
    let name = ShmName::new("heap-refuse");
    let (pid, old) = leave_a_stale_heap(&name);
    match opts(Stale::Refuse).create(name.as_str(), SIZE) {
        Err(Error::AlreadyExists(m)) => {
            assert!(m.contains(name.as_str()), "{m}");
            assert!(m.contains("every participant is dead"), "{m}");
            assert!(m.contains(&format!("pid {pid}")), "{m}");
            assert!(
                m.contains("Stale::Reclaim") && m.contains("shmchan gc"),
                "{m}"
            );
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert!(name.exists(), "Refuse removed the stale heap");
    // Untouched: the dead run's block is still in flight there.
    let kept = Heap::open(name.as_str()).unwrap();
    assert!(kept.is_in_flight(&old));
}

/// `Stale::Keep` attaches to the stale heap as it is: the dead run's block in flight is
/// still there with its bytes; a heap of another size is a `Mismatch`.
#[test]
fn keep_attaches_to_the_stale_heap() {
    let name = ShmName::new("heap-keep");
    let (_, old) = leave_a_stale_heap(&name);
    match opts(Stale::Keep).create(name.as_str(), 2 * SIZE) {
        Err(Error::Mismatch { .. }) => {}
        other => panic!("expected Mismatch for another size, got {other:?}"),
    }
    let heap = opts(Stale::Keep).create(name.as_str(), SIZE).unwrap();
    let buf = heap.take(old).expect("the block in flight survived");
    assert!(buf.to_vec().iter().all(|&b| b == PATTERN));
}

/// A heap with a live creator, or a live participant after its creator died, is never taken
/// over, whatever the policy: `AlreadyExists` naming the live pid, and the heap keeps working.
#[test]
fn a_live_heap_is_never_taken() {
    let name = ShmName::new("heap-live");
    let (creator, handle) = live_creator(&name);
    for policy in [Stale::Reclaim, Stale::Refuse, Stale::Keep] {
        match opts(policy).create(name.as_str(), SIZE) {
            Err(Error::AlreadyExists(m)) => {
                assert!(
                    m.contains(&format!("live process {}", creator.id())),
                    "{policy:?}: {m}"
                );
            }
            other => panic!("{policy:?}: a live heap was taken: {other:?}"),
        }
    }
    // A live participant keeps it live after the creator died.
    let mut user = spawn_holding("open-hold", &[name.as_str()]);
    assert_eq!(read_report(&mut user), "open");
    kill9(creator.id());
    let _ = creator.wait();
    for policy in [Stale::Reclaim, Stale::Refuse] {
        match opts(policy).create(name.as_str(), SIZE) {
            Err(Error::AlreadyExists(m)) => {
                assert!(
                    m.contains(&format!("live process {}", user.id())),
                    "{policy:?}: {m}"
                );
            }
            other => panic!("{policy:?}: a heap with a live user was taken: {other:?}"),
        }
    }
    // Still the same heap: the block the creator left in flight is there.
    let heap = Heap::open(name.as_str()).unwrap();
    let buf = heap.take(handle).expect("the live heap was replaced");
    assert!(buf.to_vec().iter().all(|&b| b == PATTERN));
}

/// Three processes race to create one stale heap name, ten times: exactly one wins each
/// round, and the others get `AlreadyExists` naming the winner (never two heaps of one name).
#[test]
fn racing_creators_on_a_stale_heap_have_one_winner() {
    for round in 0..10 {
        let name = ShmName::new(&format!("heap-race-{round}"));
        leave_a_stale_heap(&name);
        let mut racers: Vec<_> = (0..3)
            .map(|_| spawn_holding("race-create", &[name.as_str()]))
            .collect();
        let results: Vec<String> = racers.iter_mut().map(read_report).collect();
        let winners: Vec<usize> = (0..3).filter(|&i| results[i] == "won").collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let winner = racers[winners[0]].id();
        for r in results.iter().filter(|r| *r != "won") {
            assert!(
                r.starts_with("lost: ") && r.contains(&format!("live process {winner}")),
                "round {round}: {r}"
            );
        }
        // The name is the winner's heap: fresh, every byte free.
        let heap = Heap::open(name.as_str()).unwrap();
        assert_eq!(heap.free_bytes(), heap.capacity(), "round {round}");
        drop(heap);
        for mut r in racers {
            drop(r.0.as_mut().unwrap().stdin.take());
            r.wait_ok();
        }
    }
}
