//! What a peer with write access to a segment, or in another namespace, can do to us: a
//! segment truncated under its mapping is refused on attach, and a segment made in another pid
//! or network namespace is refused (forged header words, and a real child in a fresh pid
//! namespace made with `unshare -p -f` where that works).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{ShmName, report, reports};
use shmchan::layout::{Kind, Layout, LayoutSpec};
use shmchan::{Error, Mode, Options, Segment, SegmentOptions, spsc};

/// Header offsets of the creator's namespace inodes (the table in `src/layout.rs`).
const OFF_PIDNS: usize = 128;
const OFF_NETNS: usize = 136;

fn spec() -> LayoutSpec {
    LayoutSpec {
        kind: Kind::USER_FIRST,
        geometry: [0; 8],
        participants: 2,
        data_len: 64 * 1024,
    }
}

fn ns_inode(ns: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/ns/{ns}"))
        .unwrap()
        .ino()
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| match role {
        // Opens the channel `args[0]` as its consumer and reports what happened.
        "open" => {
            let r = spsc::Consumer::open(&args[0], Options::new());
            report(match r {
                Err(Error::Mismatch { what, .. }) => format!("mismatch: {what}"),
                Err(e) => format!("error: {e}"),
                Ok(_) => "opened".into(),
            });
        }
        other => panic!("unknown role {other}"),
    });
}

#[test]
fn a_segment_truncated_after_mapping_is_corrupt_on_attach() {
    let name = ShmName::new("trunc");
    let total = spec().total_len().unwrap();
    drop(Layout::create(name.as_str(), &spec(), &SegmentOptions::new()).unwrap());
    // Mapped at full size...
    let seg = Segment::open(name.as_str(), Mode::ReadWrite).unwrap();
    assert_eq!(seg.len(), total);
    // ...then a peer with write access shrinks the object to one page.
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{}", name.as_str()))
        .unwrap()
        .set_len(4096)
        .unwrap();
    let e = Layout::attach(seg, Kind::USER_FIRST, Duration::from_secs(1)).unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt(m)
            if m.contains(name.as_str()) && m.contains(&total.to_string()) && m.contains("4096")),
        "{e}"
    );
    // Opened afresh, the mapping is small and the header's length does not fit it either.
    let e = Layout::open(
        name.as_str(),
        Kind::USER_FIRST,
        Mode::ReadOnly,
        Duration::ZERO,
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt(m) if m.contains(&total.to_string()) && m.contains("4096")),
        "{e}"
    );
}

#[test]
fn a_segment_from_another_namespace_is_a_mismatch() {
    let name = ShmName::new("ns");
    drop(Layout::create(name.as_str(), &spec(), &SegmentOptions::new()).unwrap());
    let open = || {
        Layout::open(
            name.as_str(),
            Kind::USER_FIRST,
            Mode::ReadOnly,
            Duration::ZERO,
        )
    };
    let raw = Segment::open(name.as_str(), Mode::ReadWrite).unwrap();
    for (off, ns, what) in [
        (OFF_PIDNS, "pid", "pid namespace"),
        (OFF_NETNS, "net", "network namespace"),
    ] {
        let word = raw.atomic_u64(off).unwrap();
        assert_eq!(word.load(Ordering::SeqCst), ns_inode(ns), "{what} recorded");
        word.fetch_xor(1, Ordering::SeqCst);
        let e = open().unwrap_err();
        assert!(
            matches!(&e, Error::Mismatch { what: w, segment, expected, found }
                if *w == what && segment.contains(name.as_str())
                    && *expected == ns_inode(ns) && *found == ns_inode(ns) ^ 1),
            "{e}"
        );
        // 0 is a segment from before the words existed: accepted unchecked.
        word.store(0, Ordering::SeqCst);
        open().unwrap();
        word.store(ns_inode(ns), Ordering::SeqCst);
    }
    open().unwrap();
}

#[test]
fn a_consumer_in_a_fresh_pid_namespace_is_refused() {
    if !rustix::process::geteuid().is_root() {
        println!("SKIPPED: not root, so unshare -p cannot make a pid namespace");
        return;
    }
    let probe = std::process::Command::new("unshare")
        .args(["-p", "-f", "true"])
        .stderr(std::process::Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        println!("SKIPPED: unshare -p -f does not work here");
        return;
    }
    let name = ShmName::new("pidns");
    let _tx = spsc::Producer::create(name.as_str(), Options::new()).unwrap();
    let child = |args: &[&str]| {
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(args)
            .arg(std::env::current_exe().unwrap())
            .args([
                common::ENTRY,
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(common::ROLE_VAR, "open")
            .env("SHMCHAN_TEST_ARGS", name.as_str())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        common::ChildGuard::spawn(cmd).wait_ok()
    };
    // In a fresh pid namespace (same network namespace): refused.
    let out = child(&["-p", "-f", "--kill-child"]);
    assert_eq!(reports(&out), ["mismatch: pid namespace"], "{out:?}");
    // The same child without the new namespace opens it: the refusal was the namespace.
    let out = child(&["-f"]);
    assert_eq!(reports(&out), ["opened"], "{out:?}");
}
