//! Segments and the layout header, across real processes.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{ShmName, report, reports, spawn};
use shmchan::layout::{Kind, Layout, LayoutSpec, Role};
use shmchan::{Error, Mode, Segment};

const PATTERN_LEN: usize = 8192;

fn pattern(seed: u8) -> Vec<u8> {
    (0..PATTERN_LEN)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn spec(round: u64) -> LayoutSpec {
    LayoutSpec {
        kind: Kind::USER_FIRST,
        geometry: [round, round * 2, round * 3, 4, 5, 6, 7, 8],
        participants: 8,
        data_len: 4096,
    }
}

/// The child side of every cross-process test in this file.
#[test]
fn child_entry() {
    common::dispatch(|role, args| {
        match role {
            // Opens read-write, checks the parent's pattern, writes a reply after it.
            "rw-peer" => {
                let seg = Segment::open(&args[0], Mode::ReadWrite).unwrap();
                let mut buf = vec![0; PATTERN_LEN];
                seg.read(0, &mut buf).unwrap();
                assert_eq!(
                    buf,
                    pattern(1),
                    "child saw other bytes than the parent wrote"
                );
                seg.write(PATTERN_LEN, &pattern(2)).unwrap();
                seg.atomic_u64(2 * PATTERN_LEN)
                    .unwrap()
                    .store(u64::from(std::process::id()), Ordering::Release);
                report(format!("len {}", seg.len()));
            }
            // Opens read-only, checks the pattern, and that it cannot write.
            "ro-peer" => {
                let seg = Segment::open(&args[0], Mode::ReadOnly).unwrap();
                let mut buf = vec![0; PATTERN_LEN];
                seg.read(0, &mut buf).unwrap();
                assert_eq!(buf, pattern(1));
                assert!(matches!(seg.as_mut_ptr(), Err(Error::PermissionDenied(_))));
                assert!(matches!(
                    seg.write(0, b"x"),
                    Err(Error::PermissionDenied(_))
                ));
                assert!(matches!(seg.atomic_u32(0), Err(Error::PermissionDenied(_))));
                report("ro ok");
            }
            // Runs under another uid: opening a 0600 segment must be refused.
            "other-uid" => {
                let r = Segment::open(&args[0], Mode::ReadOnly);
                report(match r {
                    Err(Error::PermissionDenied(m)) => format!("denied {m}"),
                    Err(e) => format!("other error {e}"),
                    Ok(_) => "opened".to_string(),
                });
            }
            // Attaches to `count` layouts named `base-<i>` as soon as each appears, racing their
            // creation; reports the geometry seen.
            "attach-racer" => {
                let base = &args[0];
                let count: u64 = args[1].parse().unwrap();
                for i in 0..count {
                    let name = format!("{base}-{i}");
                    let deadline = Instant::now() + Duration::from_secs(20);
                    let layout = loop {
                        match Layout::open(
                            &name,
                            Kind::USER_FIRST,
                            Mode::ReadWrite,
                            Duration::from_secs(5),
                        ) {
                            Ok(l) => break l,
                            Err(Error::NotFound(_)) if Instant::now() < deadline => {
                                std::thread::yield_now()
                            }
                            Err(e) => panic!("round {i}: {e}"),
                        }
                    };
                    assert_eq!(layout.geometry(), spec(i).geometry, "round {i}");
                    assert_eq!(layout.data_len(), 4096);
                }
                report(format!("attached {count}"));
            }
            // Creates a raw segment, marks it initialising as its creator, and exits.
            "die-mid-init" => {
                let seg = Segment::create(&args[0], 4096).unwrap();
                seg.atomic_u32(32)
                    .unwrap()
                    .store(std::process::id(), Ordering::Relaxed);
                seg.atomic_u32(8).unwrap().store(1, Ordering::Release);
                report("left initialising");
            }
            // Maps a memfd of the parent through /proc and writes into it.
            "memfd-peer" => {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(format!("/proc/{}/fd/{}", args[0], args[1]))
                    .unwrap();
                let seg = Segment::from_fd(f.into(), Mode::ReadWrite).unwrap();
                let mut buf = vec![0; PATTERN_LEN];
                seg.read(0, &mut buf).unwrap();
                assert_eq!(buf, pattern(1));
                seg.write(PATTERN_LEN, &pattern(3)).unwrap();
                report("memfd ok");
            }
            // Claims participant record 3 and exits without releasing it.
            "claim-and-exit" => {
                let l = Layout::open(
                    &args[0],
                    Kind::USER_FIRST,
                    Mode::ReadWrite,
                    Duration::from_secs(5),
                )
                .unwrap();
                let r = l.claim(3, Role::CONSUMER).unwrap();
                report(format!("claimed {}", r.index()));
            }
            other => panic!("unknown role {other}"),
        }
    });
}

#[test]
fn two_processes_share_a_segment_read_write_and_read_only() {
    let name = ShmName::new("share");
    let seg = Segment::create(name.as_str(), 3 * PATTERN_LEN).unwrap();
    assert!(seg.is_creator());
    assert_eq!(seg.len(), 3 * PATTERN_LEN);
    seg.write(0, &pattern(1)).unwrap();

    let ro = spawn("ro-peer", &[name.as_str()]).wait_ok();
    assert_eq!(reports(&ro), ["ro ok"]);

    let child = spawn("rw-peer", &[name.as_str()]);
    let pid = child.id();
    let out = child.wait_ok();
    assert_eq!(reports(&out), [format!("len {}", 3 * PATTERN_LEN)]);
    let mut back = vec![0; PATTERN_LEN];
    seg.read(PATTERN_LEN, &mut back).unwrap();
    assert_eq!(back, pattern(2), "the parent must see the child's writes");
    assert_eq!(
        seg.atomic_u64(2 * PATTERN_LEN)
            .unwrap()
            .load(Ordering::Acquire),
        u64::from(pid)
    );
    seg.detach(true).unwrap();
    assert!(!name.exists());
}

#[test]
fn creation_errors_are_typed_and_explain_the_rule() {
    let name = ShmName::new("errs");
    let _a = Segment::create(name.as_str(), 4096).unwrap();
    let e = Segment::create(name.as_str(), 4096).unwrap_err();
    assert!(
        matches!(&e, Error::AlreadyExists(m) if m.contains(name.as_str())),
        "{e}"
    );

    let missing = ShmName::new("missing");
    let e = Segment::open(missing.as_str(), Mode::ReadOnly).unwrap_err();
    assert!(
        matches!(&e, Error::NotFound(m) if m.contains(missing.as_str())),
        "{e}"
    );

    for bad in ["noslash", "/a/b", "/", ""] {
        let e = Segment::create(bad, 4096).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains("'/'")),
            "{bad:?}: {e}"
        );
    }
    let long = format!("/{}", "x".repeat(300));
    let e = Segment::create(&long, 4096).unwrap_err();
    assert!(e.to_string().contains("at most 255"), "{e}");

    let zero = ShmName::new("zero");
    let e = Segment::create(zero.as_str(), 0).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("size")),
        "{e}"
    );
    assert!(
        !zero.exists(),
        "a refused create must not leave a name behind"
    );
    assert!(matches!(Segment::memfd(0), Err(Error::InvalidArgument(_))));
}

#[test]
fn default_permissions_are_0600_and_configurable() {
    use std::os::unix::fs::PermissionsExt;
    let a = ShmName::new("perm");
    let _s = Segment::create(a.as_str(), 4096).unwrap();
    let mode = std::fs::metadata(format!("/dev/shm{}", a.as_str()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let b = ShmName::new("perm2");
    let _t = Segment::options()
        .permissions(0o640)
        .create(b.as_str(), 4096)
        .unwrap();
    let mode = std::fs::metadata(format!("/dev/shm{}", b.as_str()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}

#[test]
fn another_uid_cannot_open_a_0600_segment() {
    if !common::root_or_skip("child") {
        return;
    }
    let name = ShmName::new("uid");
    let _seg = Segment::create(name.as_str(), 4096).unwrap();
    // A copy the other uid can execute even if the checkout is in a private directory.
    let exe = common::ExeCopy::new();
    let out =
        common::ChildGuard::spawn(exe.command_as(65534, "other-uid", &[name.as_str()])).wait();
    let lines = reports(&out);
    assert!(
        !lines.is_empty(),
        "the child under uid 65534 did not report ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lines[0].starts_with("denied"), "{lines:?}");
    assert!(lines[0].contains(name.as_str()), "{lines:?}");
}

#[test]
fn unlink_on_drop_and_force_detach_leave_nothing() {
    let a = ShmName::new("drop");
    let seg = Segment::options()
        .unlink_on_drop(true)
        .create(a.as_str(), 4096)
        .unwrap();
    assert!(a.exists());
    drop(seg);
    assert!(!a.exists());

    // Without the option the name survives a drop, and a forced detach by an opener removes it.
    let b = ShmName::new("keep");
    drop(Segment::create(b.as_str(), 4096).unwrap());
    assert!(b.exists());
    let opened = Segment::open(b.as_str(), Mode::ReadOnly).unwrap();
    opened.detach(true).unwrap();
    assert!(!b.exists());

    // unlink-on-drop never removes a newer segment that reused the name.
    let c = ShmName::new("reuse");
    let old = Segment::options()
        .unlink_on_drop(true)
        .create(c.as_str(), 4096)
        .unwrap();
    Segment::unlink(c.as_str()).unwrap();
    let _new = Segment::create(c.as_str(), 4096).unwrap();
    drop(old);
    assert!(
        c.exists(),
        "dropping the old segment removed the new one's name"
    );
    assert!(matches!(
        Segment::unlink("/shmchan-t-never-created-x"),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn open_or_create_creates_once_then_opens() {
    let name = ShmName::new("ooc");
    let a = Segment::open_or_create(name.as_str(), 4096).unwrap();
    let b = Segment::open_or_create(name.as_str(), 4096).unwrap();
    assert!(a.is_creator() && !b.is_creator());
    a.write(0, b"abc").unwrap();
    let mut buf = [0; 3];
    b.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"abc");
    let e = Segment::open_or_create(name.as_str(), 8192).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Mismatch {
                expected: 8192,
                found: 4096,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn bounds_and_alignment_are_checked() {
    let seg = Segment::memfd(4096).unwrap();
    assert!(matches!(
        seg.read(4090, &mut [0; 7]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        seg.read(usize::MAX, &mut [0; 2]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        seg.write(4096, b"x"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(seg.atomic_u64(4), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        seg.atomic_u32(4096),
        Err(Error::InvalidArgument(_))
    ));
    seg.atomic_u32(4092).unwrap().store(7, Ordering::Relaxed);
}

#[test]
fn memfd_segment_travels_to_another_process() {
    use std::os::fd::AsRawFd;
    let seg = Segment::memfd(2 * PATTERN_LEN).unwrap();
    assert!(seg.name().is_none());
    seg.write(0, &pattern(1)).unwrap();
    let fd = std::os::fd::AsFd::as_fd(&seg).as_raw_fd().to_string();
    let out = spawn("memfd-peer", &[&std::process::id().to_string(), &fd]).wait_ok();
    assert_eq!(reports(&out), ["memfd ok"]);
    let mut back = vec![0; PATTERN_LEN];
    seg.read(PATTERN_LEN, &mut back).unwrap();
    assert_eq!(back, pattern(3));
}

#[test]
fn from_fd_refuses_descriptors_that_could_shrink() {
    let name = ShmName::new("unsealed");
    let _seg = Segment::create(name.as_str(), 4096).unwrap();
    let f = std::fs::File::open(format!("/dev/shm{}", name.as_str())).unwrap();
    let e = Segment::from_fd(f.into(), Mode::ReadOnly).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("F_SEAL_SHRINK")),
        "{e}"
    );
}

#[test]
fn file_backed_segment_flushes_to_the_file() {
    let dir = std::env::temp_dir().join(format!("shmchan-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    struct Rm(std::path::PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = Rm(dir.clone());
    let path = dir.join("map");
    let seg = Segment::options().create_file(&path, 4096).unwrap();
    seg.write(100, b"on disk").unwrap();
    seg.flush().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 4096);
    assert_eq!(&bytes[100..107], b"on disk");
    assert!(matches!(
        Segment::options().create_file(&path, 4096),
        Err(Error::AlreadyExists(_))
    ));
    let ro = Segment::map_file(&path, Mode::ReadOnly).unwrap();
    let mut buf = [0; 7];
    ro.read(100, &mut buf).unwrap();
    assert_eq!(&buf, b"on disk");
    drop(ro);
    seg.detach(true).unwrap();
    assert!(!path.exists());
}

#[test]
fn attach_races_creation_and_never_sees_a_partial_header() {
    let base = ShmName::new("race");
    const ROUNDS: u64 = 100;
    let names: Vec<ShmName> = (0..ROUNDS)
        .map(|i| ShmName(format!("{}-{i}", base.as_str())))
        .collect();
    let child = spawn("attach-racer", &[base.as_str(), &ROUNDS.to_string()]);
    let mut layouts = Vec::new();
    for (i, n) in names.iter().enumerate() {
        layouts.push(Layout::create(n.as_str(), &spec(i as u64), &Default::default()).unwrap());
    }
    let out = child.wait_ok();
    assert_eq!(reports(&out), [format!("attached {ROUNDS}")]);
}

#[test]
fn a_creator_that_died_mid_init_is_reported_at_once() {
    let name = ShmName::new("diedinit");
    let out = spawn("die-mid-init", &[name.as_str()]).wait_ok();
    assert_eq!(reports(&out), ["left initialising"]);
    let t = Instant::now();
    let e = Layout::open(
        name.as_str(),
        Kind::USER_FIRST,
        Mode::ReadOnly,
        Duration::from_secs(10),
    )
    .unwrap_err();
    assert!(matches!(&e, Error::Corrupt(m) if m.contains("died")), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn a_live_creator_that_never_publishes_times_out_within_the_bound() {
    let name = ShmName::new("slowinit");
    let seg = Segment::create(name.as_str(), 4096).unwrap();
    seg.atomic_u32(32)
        .unwrap()
        .store(std::process::id(), Ordering::Relaxed);
    seg.atomic_u32(8).unwrap().store(1, Ordering::Release);
    let t = Instant::now();
    let e = Layout::open(
        name.as_str(),
        Kind::USER_FIRST,
        Mode::ReadOnly,
        Duration::from_millis(200),
    )
    .unwrap_err();
    let took = t.elapsed();
    assert!(
        matches!(&e, Error::TimedOut(m) if m.contains(name.as_str())),
        "{e}"
    );
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );

    // A segment too small for a header is waited for too, then reported.
    let small = ShmName::new("small");
    let _s = Segment::create(small.as_str(), 100).unwrap();
    let e = Layout::open(
        small.as_str(),
        Kind::USER_FIRST,
        Mode::ReadOnly,
        Duration::from_millis(50),
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::TimedOut(m) if m.contains("100 bytes")),
        "{e}"
    );
}

#[test]
fn corrupt_and_mismatched_headers_are_refused() {
    let name = ShmName::new("corrupt");
    let layout = Layout::create(name.as_str(), &spec(1), &Default::default()).unwrap();
    let seg = layout.segment();
    let open = || {
        Layout::open(
            name.as_str(),
            Kind::USER_FIRST,
            Mode::ReadOnly,
            Duration::from_millis(100),
        )
    };
    open().unwrap();

    // Wrong kind and version: Mismatch with the numbers.
    let e = Layout::open(
        name.as_str(),
        Kind::SPSC,
        Mode::ReadOnly,
        Duration::from_millis(100),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Mismatch {
                what: "kind",
                expected: 1,
                found: 0x1000,
                ..
            }
        ),
        "{e}"
    );
    seg.atomic_u32(12).unwrap().store(99, Ordering::SeqCst);
    assert!(matches!(
        open(),
        Err(Error::Mismatch {
            what: "layout version",
            found: 99,
            ..
        })
    ));
    seg.atomic_u32(12)
        .unwrap()
        .store(shmchan::layout::LAYOUT_VERSION, Ordering::SeqCst);

    // A total length beyond the mapping, a participant table elsewhere, a bad magic, a bad
    // state: Corrupt, with the numbers.
    let total = seg.atomic_u64(24).unwrap();
    let good_total = total.load(Ordering::SeqCst);
    total.store(1 << 40, Ordering::SeqCst);
    assert!(matches!(open(), Err(Error::Corrupt(m)) if m.contains("1099511627776")));
    total.store(good_total, Ordering::SeqCst);
    let cap = seg.atomic_u32(20).unwrap();
    cap.store(1_000_000, Ordering::SeqCst);
    assert!(matches!(open(), Err(Error::Corrupt(_))));
    cap.store(9, Ordering::SeqCst);
    assert!(matches!(open(), Err(Error::Corrupt(m)) if m.contains("data area")));
    cap.store(8, Ordering::SeqCst);
    seg.atomic_u64(0)
        .unwrap()
        .store(0xdead_beef, Ordering::SeqCst);
    assert!(matches!(open(), Err(Error::Corrupt(m)) if m.contains("magic")));
    seg.atomic_u32(8).unwrap().store(77, Ordering::SeqCst);
    assert!(matches!(open(), Err(Error::Corrupt(m)) if m.contains("state 77")));
}

#[test]
fn participants_are_seen_across_processes_and_dead_ones_recycled() {
    let name = ShmName::new("part");
    let layout = Layout::create(name.as_str(), &spec(1), &Default::default()).unwrap();
    // The child claims record 3 and exits without releasing it: it died holding it.
    let child = spawn("claim-and-exit", &[name.as_str()]);
    let pid = child.id();
    let out = child.wait_ok();
    assert_eq!(reports(&out), ["claimed 3"]);
    let p = layout.participant(3).expect("the child's record");
    assert_eq!(p.pid(), pid);
    assert_eq!(p.role, Role::CONSUMER);
    assert!(!p.is_alive(), "the child exited");
    assert!(layout.live_participants(None).is_empty());
    // Never under another role (a consumer's record taken over by a producer would keep the
    // consumer's counts), never by `claim_free`; as the same role, yes.
    assert!(matches!(layout.claim(3, Role::PRODUCER), Err(Error::InUse(m)) if m.contains("role")));
    assert!(matches!(
        layout.claim_free(3, Role::CONSUMER),
        Err(Error::InUse(_))
    ));
    let r = layout.claim(3, Role::CONSUMER).unwrap();
    assert_eq!(layout.participant(3).unwrap().pid(), std::process::id());
    layout.release(r);
}

/// A read-only attach reads the header and the participant table without forming atomics
/// over the `PROT_READ` mapping (whose contract, memory valid for writes, it cannot meet):
/// debug builds assert that no atomic is made of a read-only mapping.
#[test]
fn a_read_only_layout_reads_header_and_participants() {
    let name = ShmName::new("ro-layout");
    let layout = Layout::create(name.as_str(), &spec(1), &Default::default()).unwrap();
    let reg = layout.claim(2, Role::PRODUCER).unwrap();
    let ro = Layout::open(
        name.as_str(),
        spec(1).kind,
        Mode::ReadOnly,
        Duration::from_secs(1),
    )
    .unwrap();
    let p = ro.participant(2).expect("the record claimed above");
    assert_eq!(p.pid(), std::process::id());
    assert!(p.is_alive());
    assert_eq!(ro.live_participants(None).len(), 1);
    assert_eq!(ro.intent(2), 0);
    assert!(matches!(
        ro.claim(3, Role::CONSUMER),
        Err(Error::PermissionDenied(_))
    ));
    layout.release(reg);
    assert!(ro.participant(2).is_none());
}
