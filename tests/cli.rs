//! The `shmchan` command-line tool, run as a separate process against channels made by this test
//! and by child processes: list, inspect, gc (never a live segment, also while a live creator
//! keeps making and using channels), tail, `--json` and the exit codes.
#![cfg(feature = "cli")]

mod common;

use std::io::Read;
use std::process::{Command, Output};

use common::{ChildGuard, ShmName};
use serde_json::Value;
use shmchan::channel::{Consumer, Flavour, Mpmc, Mpsc, Producer, Spsc};
use shmchan::{Options, Unlink};

#[test]
fn child_entry() {
    common::dispatch(|role, args| match role {
        "hold" => match args[0].as_str() {
            "spsc" => hold::<Spsc>(args),
            "mpsc" => hold::<Mpsc>(args),
            "mpmc" => hold::<Mpmc>(args),
            f => panic!("unknown flavour {f}"),
        },
        "churn" => churn(args),
        r => panic!("unknown role {r}"),
    });
}

fn opts() -> Options {
    common::opts(64, 8, None)
}

/// The messages a producing child sends: text, non-ASCII text, and bytes that are not UTF-8.
fn sample(i: usize) -> Vec<u8> {
    match i % 3 {
        0 => format!("hello {i}").into_bytes(),
        1 => format!("wörld {i}").into_bytes(),
        _ => vec![0, 0xff, i as u8],
    }
}

/// `hold FLAVOUR NAME SIDE N`: attaches as SIDE (`create-producer`, `open-producer`,
/// `create-consumer`, `open-consumer`), sends N sample messages if a producer, reports
/// `ready`, then holds the channel until stdin closes (or it is killed).
fn hold<F: Flavour>(args: &[String]) {
    let (name, side) = (&args[1], args[2].as_str());
    let n: usize = args[3].parse().unwrap();
    let mut keep: (Option<Producer<F>>, Option<Consumer<F>>) = (None, None);
    match side {
        "create-producer" | "open-producer" => {
            let mut tx = if side == "create-producer" {
                Producer::<F>::create(name, opts())
            } else {
                Producer::<F>::open(name, opts())
            }
            .unwrap();
            for i in 0..n {
                tx.send_blocking(sample(i)).unwrap();
            }
            keep.0 = Some(tx);
        }
        "create-consumer" => keep.1 = Some(Consumer::<F>::create(name, opts()).unwrap()),
        "open-consumer" => keep.1 = Some(Consumer::<F>::open(name, opts()).unwrap()),
        s => panic!("unknown side {s}"),
    }
    common::report("ready");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(keep);
}

/// `churn PREFIX ROUNDS`: keeps one channel for the whole run and, each round, creates a fresh
/// channel, checks it by name, sends and receives through it and drops it, checking by name
/// that neither channel has been removed. A `gc` running meanwhile must never take either.
fn churn(args: &[String]) {
    let prefix = &args[0];
    let rounds: usize = args[1].parse().unwrap();
    let long = format!("{prefix}long");
    let _long_tx = Producer::<Mpsc>::create(&long, opts()).unwrap();
    common::report("ready");
    for round in 0..rounds {
        let name = format!("{prefix}r{}", round % 4);
        let mut rx = Consumer::<Mpsc>::create(&name, opts().unlink(Unlink::Creator)).unwrap();
        // By name, as a late joiner would: NotFound here means somebody removed it.
        let mut tx = match Producer::<Mpsc>::open(&name, opts()) {
            Ok(tx) => tx,
            Err(e) => panic!("round {round}: live channel {name} lost: {e}"),
        };
        tx.send_blocking(format!("round {round}")).unwrap();
        assert_eq!(
            &*rx.recv_blocking().unwrap(),
            format!("round {round}").as_bytes()
        );
        drop(tx);
        drop(rx);
        if let Err(e) = shmchan::inspect::inspect(&long) {
            panic!("round {round}: long-lived channel {long} lost: {e}");
        }
    }
    common::report("done");
}

/// A prefix that only this test's names have (see [`ShmName::new`]).
fn prefix(tag: &str) -> String {
    format!("/shmchan-t-{tag}-{}-", std::process::id())
}

fn shmchan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmchan"))
        .args(args)
        .output()
        .expect("running shmchan")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `shmchan ARGS`, expects exit code 0, returns stdout.
fn ok(args: &[&str]) -> String {
    let o = shmchan(args);
    assert!(
        o.status.success(),
        "shmchan {args:?} failed ({}):\n{}\n{}",
        o.status,
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o)
}

fn json(args: &[&str]) -> Value {
    let out = ok(args);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("shmchan {args:?}: bad JSON ({e}):\n{out}"))
}

fn holder(flavour: &str, name: &ShmName, side: &str, n: usize) -> ChildGuard {
    let n = n.to_string();
    let mut c = common::spawn_holding("hold", &[flavour, name.as_str(), side, &n]);
    assert_eq!(common::read_report(&mut c), "ready");
    c
}

/// Closes a holding child's stdin, so it leaves cleanly, and waits for it.
fn release(mut c: ChildGuard) {
    drop(c.0.as_mut().unwrap().stdin.take());
    c.wait_ok();
}

fn entry<'a>(list: &'a Value, name: &ShmName) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{} not listed in {list:#}", name.as_str()))
}

fn roles(e: &Value) -> Vec<(u64, String, bool)> {
    let mut v: Vec<_> = e["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pid"].as_u64().unwrap(),
                p["role"].as_str().unwrap().to_owned(),
                p["alive"].as_bool().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn list_and_inspect_show_a_live_channel_and_its_participants() {
    let pre = prefix("cli-list");
    let name = ShmName::new("cli-list");
    let rx = Consumer::<Mpsc>::create(name.as_str(), opts()).unwrap();
    let child = holder("mpsc", &name, "open-producer", 3);
    let me = u64::from(std::process::id());
    let them = u64::from(child.id());

    let list = json(&["list", "--prefix", &pre, "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
    let e = entry(&list, &name);
    assert_eq!(e["kind"], "mpsc");
    assert_eq!(e["slot_size"], 64);
    assert_eq!(e["capacity"], 8);
    assert_eq!(e["pending"], 3);
    assert_eq!(e["stale"], false);
    let mut expect = vec![
        (me, "consumer".to_owned(), true),
        (them, "producer".to_owned(), true),
    ];
    expect.sort();
    assert_eq!(roles(e), expect);

    let text = ok(&["list", "--prefix", &pre]);
    let line = text.lines().find(|l| l.starts_with(name.as_str())).unwrap();
    assert!(line.contains("mpsc") && line.contains("64x8") && line.contains("3/8"));
    assert!(line.contains(" live ") && !line.contains("STALE"), "{line}");
    assert!(line.contains(&format!("{them} producer alive")), "{line}");

    let info = json(&["inspect", name.as_str(), "--json"]);
    assert_eq!(info["ring"]["tail"], 3);
    assert_eq!(info["ring"]["head"], 0);
    assert_eq!(info["ring"]["flags"], 3);
    assert_eq!(info["header"]["creator"]["pid"], me);
    assert_eq!(info["ring"]["head_slots"][0]["state"], "message");
    assert_eq!(info["participants"].as_array().unwrap().len(), 2);
    let text = ok(&["inspect", name.as_str()]);
    assert!(text.contains("tail / head  3 / 0 (pending 3)"), "{text}");

    release(child);
    drop(rx);
}

#[test]
fn killed_channel_is_stale_and_gc_removes_it_never_the_live_one() {
    let pre = prefix("cli-gc");
    let dead = ShmName::new("cli-gc");
    let live = ShmName::new("cli-gc");
    // The dead channel: a producer and a consumer in two processes, both SIGKILLed.
    let p = holder("spsc", &dead, "create-producer", 2);
    let c = holder("spsc", &dead, "open-consumer", 0);
    for child in [p, c] {
        common::kill9(child.id());
        child.wait(); // reaped: dead for the liveness check, no sleeping involved
    }
    // The live one: held by this process.
    let _tx = Producer::<Mpmc>::create(live.as_str(), opts()).unwrap();

    let list = json(&["list", "--prefix", &pre, "--json"]);
    assert_eq!(entry(&list, &dead)["stale"], true);
    assert!(roles(entry(&list, &dead)).iter().all(|r| !r.2));
    assert_eq!(entry(&list, &live)["stale"], false);
    let text = ok(&["list", "--prefix", &pre]);
    let line = text.lines().find(|l| l.starts_with(dead.as_str())).unwrap();
    assert!(line.contains("STALE") && line.contains("dead"), "{line}");

    let dry = ok(&["gc", "--dry-run", "--prefix", &pre]);
    assert!(
        dry.contains(&format!("would remove: {}", dead.as_str())),
        "{dry}"
    );
    assert!(!dry.contains(live.as_str()), "{dry}");
    assert!(dead.exists() && live.exists());

    let gc = json(&["gc", "--prefix", &pre, "--json"]);
    let segs = gc["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 1, "{gc:#}");
    assert_eq!(segs[0]["name"], dead.as_str());
    assert_eq!(segs[0]["action"], "removed");
    assert!(!dead.exists());
    assert!(live.exists());

    // Nothing left to do; the removed one is now "not found".
    assert!(ok(&["gc", "--prefix", &pre]).contains("no stale segments"));
    assert_eq!(shmchan(&["inspect", dead.as_str()]).status.code(), Some(3));
}

#[test]
fn gc_never_removes_the_segments_of_a_live_creator_racing_it() {
    let pre = prefix("cli-race");
    let stale = ShmName::new("cli-race");
    // Names the churning child uses, guarded so that a failure leaves nothing behind.
    let _names: Vec<ShmName> = ["long", "r0", "r1", "r2", "r3"]
        .iter()
        .map(|s| ShmName(format!("{pre}{s}")))
        .collect();
    let victim = holder("mpsc", &stale, "create-consumer", 0);
    common::kill9(victim.id());
    victim.wait();

    let mut churn = common::spawn("churn", &[&pre, "2000"]);
    assert_eq!(common::read_report(&mut churn), "ready");
    let mut runs = 0;
    let mut removed = 0;
    // gc as fast as it goes, for as long as the child churns.
    while churn.0.as_mut().unwrap().try_wait().unwrap().is_none() {
        let gc = json(&["gc", "--prefix", &pre, "--json"]);
        for s in gc["segments"].as_array().unwrap() {
            if s["action"] == "removed" {
                assert_eq!(
                    s["name"],
                    stale.as_str(),
                    "gc removed a live segment: {gc:#}"
                );
                removed += 1;
            }
        }
        runs += 1;
    }
    let out = churn.wait_ok();
    assert_eq!(
        common::reports(&out).last().map(String::as_str),
        Some("done")
    );
    assert_eq!(removed, 1, "the stale segment is removed exactly once");
    assert!(runs >= 1);
    eprintln!("gc ran {runs} times while the child churned");
    assert!(!stale.exists());
}

#[test]
fn tail_prints_what_a_producer_sent_as_text_or_hex() {
    let name = ShmName::new("cli-tail");
    let child = holder("mpsc", &name, "create-producer", 6);

    let text = ok(&["tail", name.as_str(), "-n", "3"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "#0 (7 B) hello 0",
            "#1 (8 B) wörld 1",
            "#2 (3 B) hex 00ff02"
        ],
        "{text}"
    );
    let js = ok(&["tail", name.as_str(), "-n", "3", "--json"]);
    let msgs: Vec<Value> = js
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(msgs.len(), 3, "{js}");
    assert_eq!(msgs[0]["text"], "hello 3");
    assert_eq!(msgs[1]["text"], "wörld 4");
    assert_eq!(msgs[2]["hex"], "00ff05");
    assert_eq!(msgs[2]["len"], 3);

    // Nothing more is queued: a timeout ends the tail cleanly.
    assert_eq!(ok(&["tail", name.as_str(), "--timeout", "0.05"]), "");
    release(child);
}

#[test]
fn tail_refuses_an_spsc_channel_with_a_live_consumer_and_exit_codes_are_distinct() {
    let name = ShmName::new("cli-refuse");
    let _rx = Consumer::<Spsc>::create(name.as_str(), opts()).unwrap();
    let o = shmchan(&["tail", name.as_str(), "-n", "1"]);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("live consumer") && err.contains(&std::process::id().to_string()));

    let missing = ShmName::new("cli-missing");
    assert_eq!(
        shmchan(&["inspect", missing.as_str()]).status.code(),
        Some(3)
    );
    assert_eq!(shmchan(&["tail", missing.as_str()]).status.code(), Some(3));
    assert_eq!(shmchan(&["inspect"]).status.code(), Some(2));
    assert_eq!(shmchan(&["frobnicate"]).status.code(), Some(2));
    let help = ok(&["--help"]);
    assert!(help.contains("Exit codes") && help.contains("4  refused"));

    // A non-shmchan object is skipped by list and gc, and is an error for inspect.
    let other = ShmName::new("cli-other");
    let seg = shmchan::Segment::create(other.as_str(), 4096).unwrap();
    seg.write(0, b"not a shmchan header").unwrap();
    assert_eq!(
        json(&["list", "--prefix", other.as_str(), "--json"]),
        Value::Array(vec![])
    );
    assert!(ok(&["gc", "--prefix", other.as_str()]).contains("no stale segments"));
    assert_eq!(shmchan(&["inspect", other.as_str()]).status.code(), Some(1));
    assert!(other.exists());
}

#[test]
fn a_header_never_published_by_a_dead_creator_is_stale_and_collected() {
    let pre = prefix("cli-half");
    let half = ShmName::new("cli-half");
    // What a creator killed mid-initialisation leaves: magic and state "initialising" (1)
    // written, the creator's pid one that cannot name a process (above the kernel's pid limit).
    let seg = shmchan::Segment::create(half.as_str(), 4096).unwrap();
    seg.write(0, b"SHMCHAN\x01").unwrap();
    seg.write(8, &1u32.to_le_bytes()).unwrap();
    seg.write(32, &0x3fff_fff0u32.to_le_bytes()).unwrap();
    let list = json(&["list", "--prefix", &pre, "--json"]);
    let e = entry(&list, &half);
    assert_eq!(e["state"], "initialising");
    assert_eq!(e["stale"], true);
    assert!(
        e["problem"]
            .as_str()
            .unwrap()
            .contains("died before publishing")
    );
    let text = ok(&["gc", "--prefix", &pre]);
    assert!(
        text.contains(&format!("removed: {}", half.as_str())),
        "{text}"
    );
    assert!(!half.exists());
    drop(seg);
}

/// A segment name is anyone's to choose in /dev/shm: one holding a terminal escape sequence
/// is listed with its control characters escaped, never written to the terminal as they are.
#[test]
fn names_with_control_characters_are_printed_escaped() {
    let pre = prefix("esc");
    let name = format!("{pre}\u{1b}[2J");
    let _guard = ShmName(name.clone());
    let _tx = shmchan::spsc::Producer::create(&name, shmchan::Options::new()).unwrap();
    let out = ok(&["list", "--prefix", &pre]);
    assert!(
        !out.contains('\u{1b}'),
        "a raw escape reached the terminal: {out:?}"
    );
    assert!(
        out.contains("\\u{1b}[2J"),
        "the name is shown, escaped: {out:?}"
    );
}
