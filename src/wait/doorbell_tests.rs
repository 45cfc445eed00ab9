//! Doorbells between real processes: the lib test binary re-executes itself with a role (the
//! test `child_entry` does nothing unless `SHMCHAN_DOORBELL_ROLE` is set). The processes share
//! nothing but a named segment holding the tokens and a few protocol words; every wait has a
//! generous deadline that only detects failure, nothing sleeps to synchronise.

use std::os::fd::{AsFd, BorrowedFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};

use super::protocol::{PARK_DOORBELL, Sleepers};
#[cfg(any(feature = "tokio", feature = "async-io"))]
use crate::runtime::Registered;
use crate::segment::{Mode, Segment};
use crate::sys::doorbell::{Doorbell, Ringer};
use crate::sys::process::ProcessId;

const ROLE: &str = "SHMCHAN_DOORBELL_ROLE";
/// Failure detector only: a wake that takes this long is a lost wake-up.
const DEADLINE: Duration = Duration::from_secs(10);

// Word offsets in the test segment.
const PARENT_TOKEN: usize = 0;
const CHILD_TOKEN: usize = 8;
const PUBLISHED: usize = 16;
const STOP: usize = 24;
const PARKED: usize = 32;
const COUNT: usize = 44;

/// A segment name unlinked on drop.
struct Seg(Segment, String);

impl Seg {
    fn create(tag: &str) -> Seg {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "/shmchan-t-bell-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let seg = Segment::options()
            .unlink_on_drop(true)
            .create(&name, 4096)
            .unwrap();
        Seg(seg, name)
    }
    fn u64(&self, off: usize) -> &AtomicU64 {
        self.0.atomic_u64(off).unwrap()
    }
}

impl Drop for Seg {
    fn drop(&mut self) {
        let _ = Segment::unlink(&self.1);
    }
}

fn words(seg: &Segment) -> (&AtomicU64, &AtomicU64, &AtomicU64, &AtomicU64) {
    (
        seg.atomic_u64(PARENT_TOKEN).unwrap(),
        seg.atomic_u64(CHILD_TOKEN).unwrap(),
        seg.atomic_u64(PUBLISHED).unwrap(),
        seg.atomic_u64(STOP).unwrap(),
    )
}

/// A child that is killed and reaped if the test fails before waiting for it.
struct Kid(Option<Child>);

impl Kid {
    fn spawn(role: &str, seg: &str) -> Kid {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "wait::doorbell_tests::child_entry",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ROLE, role)
            .env("SHMCHAN_DOORBELL_SEG", seg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Kid(Some(child))
    }
    fn id(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }
    fn wait_ok(mut self) -> String {
        let out = self.0.take().unwrap().wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "child failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `poll` on `fds` for readability until `timeout`: which ones are readable (all false on
/// timeout).
fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> Vec<bool> {
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    let ts = Timespec::try_from(timeout).unwrap();
    match rustix::event::poll(&mut pfds, Some(&ts)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => {}
        Err(e) => panic!("poll: {e}"),
    }
    pfds.iter()
        .map(|p| p.revents().intersects(PollFlags::IN | PollFlags::HUP))
        .collect()
}

/// Blocks until `bell` has at least one ring and drains it; panics after [`DEADLINE`].
fn wait_rung(bell: &Doorbell) -> usize {
    let start = Instant::now();
    loop {
        let n = bell.drain();
        if n > 0 {
            return n;
        }
        let left = DEADLINE.checked_sub(start.elapsed()).expect("lost wake-up");
        poll_readable(&[bell.as_fd()], left);
    }
}

/// Waits (spinning with yields, bounded by [`DEADLINE`]) until `word` is non-zero.
fn await_nonzero(word: &AtomicU64) -> u64 {
    let start = Instant::now();
    loop {
        // Acquire: pairs with the Release store of the token by its owner.
        let v = word.load(Ordering::Acquire);
        if v != 0 {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "peer never published");
        std::thread::yield_now();
    }
}

#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = std::env::var("SHMCHAN_DOORBELL_SEG").unwrap();
    let seg = Segment::open(&name, Mode::ReadWrite).unwrap();
    let (parent_token, child_token, published, stop) = words(&seg);
    let bell = Doorbell::bind().unwrap();
    let ringer = Ringer::new().unwrap();
    match role.as_str() {
        // Blocks on its doorbell; each time it is rung, rings the parent back, until `stop`.
        "echo" => {
            child_token.store(bell.token(), Ordering::Release);
            let parent = await_nonzero(parent_token);
            loop {
                wait_rung(&bell);
                // Acquire: pairs with the parent's Release store of `stop` before its ring.
                if stop.load(Ordering::Acquire) != 0 {
                    break;
                }
                ringer.ring(parent);
            }
        }
        // Consumes a counter the parent bumps in bursts, parking on its doorbell through the
        // announce / re-check / ring protocol of `crate::wait` whenever it has caught up.
        "consumer" => {
            child_token.store(bell.token(), Ordering::Release);
            let total = await_nonzero(stop);
            let parked = seg.atomic_u64(PARKED).unwrap();
            let sl = Sleepers::unfenced(seg.atomic_u32(COUNT).unwrap());
            let (mut seen, mut parks, mut rung) = (0u64, 0u64, 0u64);
            while seen < total {
                // Acquire: pairs with the parent's Release increments.
                let now = published.load(Ordering::Acquire);
                if now > seen {
                    seen = now;
                    continue;
                }
                sl.announce(parked, PARK_DOORBELL);
                if published.load(Ordering::Acquire) > seen {
                    // The parent may have taken (and rung) the announcement meanwhile.
                    if sl.retract(parked) {
                        rung += 1;
                    }
                    continue;
                }
                parks += 1;
                // Sleep until rung. A ring left over from an earlier park (taken by the
                // parent just as we retracted) only makes us re-check early.
                wait_rung(&bell);
                if sl.retract(parked) {
                    rung += 1;
                }
            }
            println!("\n@@ parks {parks} rung {rung} seen {seen}");
        }
        // Publishes its token, reports, and waits to be killed.
        "victim" => {
            child_token.store(bell.token(), Ordering::Release);
            std::thread::sleep(DEADLINE);
            panic!("victim was not killed");
        }
        _ => panic!("unknown role {role}"),
    }
}

/// Ping-pong of `rounds` with an `echo` child, the parent's side awaiting its doorbell
/// through `Registered` (the reactor of whatever runtime runs `block_on`).
#[cfg(feature = "tokio")]
async fn ping_pong_async(rounds: u32) {
    let seg = Seg::create("async");
    let (parent_token, child_token, _, stop) = words(&seg.0);
    let bell = Doorbell::bind().unwrap();
    let reg = Registered::new(bell.try_clone_fd().unwrap()).unwrap();
    let ringer = Ringer::new().unwrap();
    parent_token.store(bell.token(), Ordering::Release);
    let kid = Kid::spawn("echo", &seg.1);
    let child = await_nonzero(child_token);
    for _ in 0..rounds {
        ringer.ring(child);
        // Register, then check again: `poll_readable` registers the waker when it returns
        // Pending; a ring that lands between the drain and the registration leaves the fd
        // readable, so the next poll is Ready.
        let woke = tokio::time::timeout(DEADLINE, async {
            loop {
                std::future::poll_fn(|cx| reg.poll_readable(cx))
                    .await
                    .unwrap();
                if bell.drain() > 0 {
                    break;
                }
            }
        });
        woke.await.expect("lost wake-up");
    }
    // Release: pairs with the child's Acquire load after its wake.
    stop.store(1, Ordering::Release);
    ringer.ring(child);
    kid.wait_ok();
}

#[test]
fn ring_by_token_blocking_ping_pong() {
    let seg = Seg::create("block");
    let (parent_token, child_token, _, stop) = words(&seg.0);
    let bell = Doorbell::bind().unwrap();
    let ringer = Ringer::new().unwrap();
    parent_token.store(bell.token(), Ordering::Release);
    let kid = Kid::spawn("echo", &seg.1);
    let child = await_nonzero(child_token);
    for _ in 0..200 {
        ringer.ring(child);
        wait_rung(&bell);
    }
    stop.store(1, Ordering::Release);
    ringer.ring(child);
    kid.wait_ok();
}

#[cfg(feature = "tokio")]
#[test]
fn async_wake_across_processes_tokio_current_thread() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(ping_pong_async(200));
}

#[cfg(feature = "tokio")]
#[test]
fn async_wake_across_processes_tokio_multi_thread() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { tokio::spawn(ping_pong_async(200)).await.unwrap() });
}

#[cfg(feature = "async-io")]
#[test]
fn async_wake_across_processes_async_io() {
    // Outside any tokio runtime, `Registered` picks async-io. The deadline inside uses a tokio
    // timer only under tokio; here a thread-free race against an async-io timer instead.
    async_io::block_on(async {
        let seg = Seg::create("aio");
        let (parent_token, child_token, _, stop) = words(&seg.0);
        let bell = Doorbell::bind().unwrap();
        let reg = Registered::new(bell.try_clone_fd().unwrap()).unwrap();
        assert!(matches!(reg, Registered::AsyncIo(_)));
        let ringer = Ringer::new().unwrap();
        parent_token.store(bell.token(), Ordering::Release);
        let kid = Kid::spawn("echo", &seg.1);
        let child = await_nonzero(child_token);
        for _ in 0..200 {
            ringer.ring(child);
            let wake = async {
                loop {
                    std::future::poll_fn(|cx| reg.poll_readable(cx))
                        .await
                        .unwrap();
                    if bell.drain() > 0 {
                        return true;
                    }
                }
            };
            let deadline = async {
                async_io::Timer::after(DEADLINE).await;
                false
            };
            assert!(futures_lite_or(wake, deadline).await, "lost wake-up");
        }
        stop.store(1, Ordering::Release);
        ringer.ring(child);
        kid.wait_ok();
    });
}

/// The first of two futures to finish (what `futures_lite::future::or` does), to avoid a
/// dependency for one test.
#[cfg(feature = "async-io")]
async fn futures_lite_or<T>(
    a: impl std::future::Future<Output = T>,
    b: impl std::future::Future<Output = T>,
) -> T {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
            return std::task::Poll::Ready(v);
        }
        b.as_mut().poll(cx)
    })
    .await
}

/// Bursts of publishes separated by idle gaps (so the consumer parks often), through the real
/// announce / re-check / ring protocol: every publish is eventually seen, none is lost.
#[test]
fn stress_bursts_and_idle_gaps_lose_no_wakeup() {
    const BURSTS: u64 = 300;
    let seg = Seg::create("stress");
    let (_, child_token, published, stop) = words(&seg.0);
    let parked = seg.u64(PARKED);
    let sl = Sleepers::unfenced(seg.0.atomic_u32(COUNT).unwrap());
    let ringer = Ringer::new().unwrap();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut plan = Vec::new();
    for _ in 0..BURSTS {
        plan.push((1 + next() % 8, next() % 300));
    }
    let total: u64 = plan.iter().map(|p| p.0).sum();
    stop.store(total, Ordering::Release);
    let kid = Kid::spawn("consumer", &seg.1);
    let child = await_nonzero(child_token);
    let mut rings = 0u64;
    for (burst, gap_us) in plan {
        for _ in 0..burst {
            // Release: pairs with the consumer's Acquire loads.
            published.fetch_add(1, Ordering::Release);
            if sl.anyone() && sl.take(parked) == Some(PARK_DOORBELL) {
                ringer.ring(child);
                rings += 1;
            }
        }
        // Workload shape, not synchronisation: an idle gap lets the consumer park.
        if gap_us > 0 {
            std::thread::sleep(Duration::from_micros(gap_us));
        }
    }
    let out = kid.wait_ok();
    let line = out.lines().find(|l| l.starts_with("@@ ")).unwrap();
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (parks, rung, seen) = (nums[0], nums[1], nums[2]);
    println!("stress: {total} publishes, {parks} parks, {rings} rings");
    assert_eq!(seen, total);
    assert_eq!(
        rung, rings,
        "every ring taken by the parent is one the child saw taken"
    );
    assert!(parks > 0, "the gaps should have made the consumer park");
    assert_eq!(sl.count.load(Ordering::Relaxed), 0);
}

#[test]
fn ringing_a_killed_waiters_doorbell_is_harmless_and_leaves_nothing() {
    let seg = Seg::create("dead");
    let (_, child_token, _, _) = words(&seg.0);
    let kid = Kid::spawn("victim", &seg.1);
    let token = await_nonzero(child_token);
    let name = format!("@shmchan/{}-{}", token >> 32, token & 0xffff_ffff);
    let listed = || {
        std::fs::read_to_string("/proc/net/unix")
            .unwrap()
            .lines()
            .any(|l| l.ends_with(&name))
    };
    assert!(listed(), "{name} should be bound while the waiter lives");
    // SIGKILL, then reap: the socket dies with the process.
    let pid = rustix::process::Pid::from_raw(kid.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    drop(kid);
    assert!(!listed(), "{name} outlived its process");
    let ringer = Ringer::new().unwrap();
    for _ in 0..3 {
        ringer.ring(token); // ECONNREFUSED, ignored
    }
    // The name is free again: nothing was left behind.
    let probe = crate::sys::doorbell::dgram_socket().unwrap();
    rustix::net::bind(&probe, &crate::sys::doorbell::address(token).unwrap()).unwrap();
}

#[test]
fn a_full_doorbell_coalesces_rings() {
    let bell = Doorbell::bind().unwrap();
    let ringer = Ringer::new().unwrap();
    // Far more rings than the socket buffer holds: the excess fails with EAGAIN, ignored.
    for _ in 0..5_000 {
        ringer.ring(bell.token());
    }
    let n = bell.drain();
    assert!(n > 0 && n < 5_000, "{n} rings queued");
    assert_eq!(bell.drain(), 0);
}

#[test]
fn pidfd_becomes_readable_when_the_peer_is_sigkilled() {
    let seg = Seg::create("pidfd");
    let (_, child_token, _, _) = words(&seg.0);
    let kid = Kid::spawn("victim", &seg.1);
    await_nonzero(child_token);
    let id = ProcessId {
        pid: kid.id(),
        start_time: 0,
    };
    let pidfd = id.pidfd().unwrap().expect("pidfd of a live child");
    let bell = Doorbell::bind().unwrap();
    assert_eq!(
        poll_readable(&[bell.as_fd(), pidfd.as_fd()], Duration::ZERO),
        [false, false]
    );
    let pid = rustix::process::Pid::from_raw(kid.id() as i32).unwrap();
    let killed = Instant::now();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    // "Doorbell or peer death or timeout", as a blocked thread would wait.
    let ready = poll_readable(&[bell.as_fd(), pidfd.as_fd()], DEADLINE);
    assert_eq!(ready, [false, true]);
    assert!(killed.elapsed() < Duration::from_secs(2));
    drop(kid);
}
