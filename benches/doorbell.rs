//! Doorbell mechanisms compared across processes: a ping-pong where each side sleeps until
//! the other rings it, over
//! (a) abstract-namespace Unix datagram sockets (what shmchan uses: the ringer needs only a
//!     name, derived from a token in shared memory), and
//! (b) a pair of eventfds inherited by the child (the cheapest kernel wake-up, but it needs
//!     the descriptor to travel to the ringer),
//!
//! each two ways: a blocking wait (`recv` / `read` on a blocking descriptor), and a task in a
//! tokio current_thread runtime awaiting readiness through `AsyncFd` (epoll), which is how
//! shmchan's async handles park. The async sides wait as shmchan does: readiness, then drain
//! until `EAGAIN` (the socket: one `recv` per queued ring plus the one that says "empty"; the
//! eventfd: one `read` takes the whole counter).
//!
//! The mechanisms alternate (A B A B ..., 7 rounds) because the VM's figures drift with vCPU
//! placement; medians of the per-round ratios are printed. Run with
//! `cargo bench --bench doorbell`; `DOORBELL_ONLY=<mode>` runs one mode (for `strace -c -f`),
//! modes being `uds`, `eventfd`, `uds-async`, `eventfd-async`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Child;
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, eventfd};
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};
use tokio::io::unix::AsyncFd;

#[path = "support/harness.rs"]
mod harness;
use harness::{SelfExec, median_by as median};

const ROUNDS: usize = 7;
const TRIPS: u32 = 2_000;
const MODES: [&str; 4] = ["uds", "eventfd", "uds-async", "eventfd-async"];

fn uds(name: &str, flags: SocketFlags) -> OwnedFd {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC | flags,
        None,
    )
    .unwrap();
    rustix::net::bind(
        &fd,
        &SocketAddrUnix::new_abstract_name(name.as_bytes()).unwrap(),
    )
    .unwrap();
    fd
}

/// Rings `to` (one `sendto(MSG_DONTWAIT)`), retrying only until the peer has bound its name.
fn uds_ring(fd: &OwnedFd, to: &SocketAddrUnix) {
    loop {
        match rustix::net::sendto(fd, &[1], SendFlags::DONTWAIT, to) {
            Ok(_) | Err(Errno::AGAIN) => return,
            Err(_) => std::thread::yield_now(),
        }
    }
}

fn uds_side(me: &str, peer: &str, first: bool, trips: u32) {
    let fd = uds(me, SocketFlags::empty());
    let to = SocketAddrUnix::new_abstract_name(peer.as_bytes()).unwrap();
    let mut buf = [0u8; 8];
    for i in 0..trips {
        if first || i > 0 {
            uds_ring(&fd, &to);
        }
        rustix::net::recv(&fd, &mut buf[..], RecvFlags::empty()).unwrap();
    }
    if !first {
        uds_ring(&fd, &to);
    }
}

/// Drains every queued ring; how many there were.
fn uds_drain(fd: &OwnedFd) -> usize {
    let mut n = 0;
    let mut buf = [0u8; 8];
    while rustix::net::recv(fd, &mut buf[..], RecvFlags::DONTWAIT).is_ok() {
        n += 1;
    }
    n
}

/// Awaits readiness, then drains; returns once at least one ring was taken.
async fn await_rings(afd: &AsyncFd<OwnedFd>, drain: fn(&OwnedFd) -> usize) {
    loop {
        let mut guard = afd.readable().await.unwrap();
        // Clear first, then drain: a ring that lands after the drain bumps tokio's readiness
        // tick again, so clearing never hides it.
        guard.clear_ready();
        if drain(afd.get_ref()) > 0 {
            return;
        }
    }
}

fn register(fd: OwnedFd) -> AsyncFd<OwnedFd> {
    // SAFETY: `fd` is an open descriptor we own; the AsyncFd owns it from here and keeps it
    // open until it is dropped, which deregisters it first.
    unsafe { AsyncFd::register(fd) }.unwrap()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap()
}

fn uds_side_async(me: &str, peer: &str, first: bool, trips: u32) {
    current_thread().block_on(async {
        let afd = register(uds(me, SocketFlags::NONBLOCK));
        let to = SocketAddrUnix::new_abstract_name(peer.as_bytes()).unwrap();
        for i in 0..trips {
            if first || i > 0 {
                uds_ring(afd.get_ref(), &to);
            }
            await_rings(&afd, uds_drain).await;
        }
        if !first {
            uds_ring(afd.get_ref(), &to);
        }
    });
}

fn efd_wait(fd: &OwnedFd) {
    let mut b = [0u8; 8];
    rustix::io::read(fd, &mut b).unwrap();
}

fn efd_ring(fd: &OwnedFd) {
    rustix::io::write(fd, &1u64.to_ne_bytes()).unwrap();
}

/// One non-blocking `read` takes the whole counter.
fn efd_drain(fd: &OwnedFd) -> usize {
    let mut b = [0u8; 8];
    match rustix::io::read(fd, &mut b) {
        Ok(_) => u64::from_ne_bytes(b) as usize,
        Err(_) => 0,
    }
}

fn efd_side(ring: &OwnedFd, wait: &OwnedFd, first: bool, trips: u32) {
    for _ in 0..trips {
        if first {
            efd_ring(ring);
            efd_wait(wait);
        } else {
            efd_wait(wait);
            efd_ring(ring);
        }
    }
}

fn efd_side_async(ring: OwnedFd, wait: OwnedFd, first: bool, trips: u32) {
    current_thread().block_on(async {
        let wait = register(wait);
        for _ in 0..trips {
            if first {
                efd_ring(&ring);
                await_rings(&wait, efd_drain).await;
            } else {
                await_rings(&wait, efd_drain).await;
                efd_ring(&ring);
            }
        }
    });
}

/// This bench's child processes.
const CHILD: SelfExec = SelfExec {
    role_var: "DOORBELL_ROLE",
    args_var: "DOORBELL_ARGS",
};

fn spawn(role: &str, args: &[String]) -> Child {
    CHILD.spawn(role, args)
}

/// One timed ping-pong of `TRIPS` round trips over abstract sockets; returns the RTT.
fn run_uds(round: usize, asynch: bool) -> Duration {
    let pid = std::process::id();
    let (a, b) = (
        format!("shmchan-bench/{pid}-{round}-{asynch}-a"),
        format!("shmchan-bench/{pid}-{round}-{asynch}-b"),
    );
    let role = if asynch { "uds-async" } else { "uds" };
    let mut child = spawn(role, &[b.clone(), a.clone()]);
    let t = Instant::now();
    if asynch {
        uds_side_async(&a, &b, true, TRIPS);
    } else {
        uds_side(&a, &b, true, TRIPS);
    }
    let took = t.elapsed();
    assert!(child.wait().unwrap().success());
    took / TRIPS
}

/// One timed ping-pong over two eventfds inherited by the child; returns the RTT.
fn run_eventfd(asynch: bool) -> Duration {
    // Without CLOEXEC, so the child inherits them under the same numbers. Non-blocking for the
    // async sides (the flag is on the shared file description, so both sides get it).
    let flags = if asynch {
        EventfdFlags::NONBLOCK
    } else {
        EventfdFlags::empty()
    };
    let ping = eventfd(0, flags).unwrap();
    let pong = eventfd(0, flags).unwrap();
    let role = if asynch { "eventfd-async" } else { "eventfd" };
    let mut child = spawn(
        role,
        &[ping.as_raw_fd().to_string(), pong.as_raw_fd().to_string()],
    );
    let t = Instant::now();
    if asynch {
        efd_side_async(ping, pong, true, TRIPS);
    } else {
        efd_side(&ping, &pong, true, TRIPS);
    }
    let took = t.elapsed();
    assert!(child.wait().unwrap().success());
    took / TRIPS
}

fn run(mode: &str, round: usize) -> Duration {
    match mode {
        "uds" => run_uds(round, false),
        "eventfd" => run_eventfd(false),
        "uds-async" => run_uds(round, true),
        "eventfd-async" => run_eventfd(true),
        _ => panic!("unknown mode {mode}"),
    }
}

fn child(role: &str, args: &[String]) {
    let inherited = || {
        // SAFETY: the parent passed the numbers of two eventfds it created without CLOEXEC;
        // this process inherited them and owns its copies.
        unsafe {
            (
                OwnedFd::from_raw_fd(args[0].parse().unwrap()),
                OwnedFd::from_raw_fd(args[1].parse().unwrap()),
            )
        }
    };
    match role {
        "uds" => uds_side(&args[0], &args[1], false, TRIPS),
        "uds-async" => uds_side_async(&args[0], &args[1], false, TRIPS),
        "eventfd" => {
            let (ping, pong) = inherited();
            efd_side(&pong, &ping, false, TRIPS);
        }
        "eventfd-async" => {
            let (ping, pong) = inherited();
            efd_side_async(pong, ping, false, TRIPS);
        }
        _ => panic!("unknown role {role}"),
    }
}

fn main() {
    if let Some((role, args)) = CHILD.role() {
        child(&role, &args);
        return;
    }
    if harness::listing() {
        return;
    }
    if let Ok(mode) = std::env::var("DOORBELL_ONLY") {
        for round in 0..3 {
            println!("{mode} round {round}: RTT {:?}", run(&mode, round));
        }
        return;
    }
    let mut rtts: Vec<Vec<Duration>> = vec![Vec::new(); MODES.len()];
    for round in 0..ROUNDS {
        let line: Vec<String> = MODES
            .iter()
            .zip(&mut rtts)
            .map(|(mode, v)| {
                let d = run(mode, round);
                v.push(d);
                format!("{mode} {d:.1?}")
            })
            .collect();
        println!("round {round}: RTT {}", line.join(", "));
    }
    let ratio = |a: usize, b: usize| -> f64 {
        let r: Vec<f64> = rtts[a]
            .iter()
            .zip(&rtts[b])
            .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
            .collect();
        median(r, f64::total_cmp)
    };
    for (mode, v) in MODES.iter().zip(&rtts) {
        println!("median RTT {mode}: {:.1?}", median(v.clone(), Ord::cmp));
    }
    println!(
        "median per-round ratios ({ROUNDS} alternating rounds of {TRIPS} round trips): \
         blocking socket/eventfd {:.2}, async socket/eventfd {:.2}, \
         socket async/blocking {:.2}, eventfd async/blocking {:.2}",
        ratio(0, 1),
        ratio(2, 3),
        ratio(2, 0),
        ratio(3, 1)
    );
}
