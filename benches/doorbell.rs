//! Doorbell mechanisms compared across processes: a ping-pong where each side blocks until
//! the other rings it, over
//! (a) abstract-namespace Unix datagram sockets (what shmchan uses: the ringer needs only a
//!     name, derived from a token in shared memory), and
//! (b) a pair of eventfds inherited by the child (the cheapest kernel wake-up, but it needs
//!     the descriptor to travel to the ringer).
//!
//! The two alternate (A B A B ..., 7 rounds) because the VM's figures drift with vCPU
//! placement; the median of the per-round ratios is printed. Run with
//! `cargo bench --bench doorbell`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, eventfd};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

const ROUNDS: usize = 7;
const TRIPS: u32 = 2_000;

fn uds(name: &str) -> OwnedFd {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
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

fn uds_side(me: &str, peer: &str, first: bool, trips: u32) {
    let fd = uds(me);
    let to = SocketAddrUnix::new_abstract_name(peer.as_bytes()).unwrap();
    let mut buf = [0u8; 8];
    for i in 0..trips {
        if first || i > 0 {
            // Retry until the peer has bound its name.
            while rustix::net::sendto(&fd, &[1], SendFlags::empty(), &to).is_err() {
                std::thread::yield_now();
            }
        }
        rustix::net::recv(&fd, &mut buf[..], RecvFlags::empty()).unwrap();
    }
    if !first {
        let _ = rustix::net::sendto(&fd, &[1], SendFlags::empty(), &to);
    }
}

fn efd_wait(fd: &OwnedFd) {
    let mut b = [0u8; 8];
    rustix::io::read(fd, &mut b).unwrap();
}

fn efd_ring(fd: &OwnedFd) {
    rustix::io::write(fd, &1u64.to_ne_bytes()).unwrap();
}

fn spawn(role: &str, args: &[String]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env("DOORBELL_ROLE", role)
        .env("DOORBELL_ARGS", args.join(","))
        .spawn()
        .unwrap()
}

/// One timed ping-pong of `TRIPS` round trips over abstract sockets.
fn run_uds(round: usize) -> Duration {
    let pid = std::process::id();
    let (a, b) = (
        format!("shmchan-bench/{pid}-{round}-a"),
        format!("shmchan-bench/{pid}-{round}-b"),
    );
    let mut child = spawn("uds", &[b.clone(), a.clone()]);
    let t = Instant::now();
    uds_side(&a, &b, true, TRIPS);
    let took = t.elapsed();
    child.wait().unwrap();
    took
}

/// One timed ping-pong over two eventfds inherited by the child.
fn run_eventfd() -> Duration {
    // Without CLOEXEC, so the child inherits them under the same numbers.
    let ping = eventfd(0, EventfdFlags::empty()).unwrap();
    let pong = eventfd(0, EventfdFlags::empty()).unwrap();
    let mut child = spawn(
        "eventfd",
        &[ping.as_raw_fd().to_string(), pong.as_raw_fd().to_string()],
    );
    let t = Instant::now();
    for _ in 0..TRIPS {
        efd_ring(&ping);
        efd_wait(&pong);
    }
    let took = t.elapsed();
    child.wait().unwrap();
    took
}

fn main() {
    if let Ok(role) = std::env::var("DOORBELL_ROLE") {
        let args: Vec<String> = std::env::var("DOORBELL_ARGS")
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect();
        match role.as_str() {
            "uds" => uds_side(&args[0], &args[1], false, TRIPS),
            "eventfd" => {
                // SAFETY: the parent passed the numbers of two eventfds it created without
                // CLOEXEC; this process inherited them and owns its copies.
                let (ping, pong) = unsafe {
                    (
                        OwnedFd::from_raw_fd(args[0].parse().unwrap()),
                        OwnedFd::from_raw_fd(args[1].parse().unwrap()),
                    )
                };
                for _ in 0..TRIPS {
                    efd_wait(&ping);
                    efd_ring(&pong);
                }
            }
            _ => panic!("unknown role"),
        }
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test harness probes
    }
    let mut ratios = Vec::new();
    let mut uds_rtt = Vec::new();
    let mut efd_rtt = Vec::new();
    for round in 0..ROUNDS {
        let u = run_uds(round) / TRIPS;
        let e = run_eventfd() / TRIPS;
        uds_rtt.push(u);
        efd_rtt.push(e);
        ratios.push(u.as_secs_f64() / e.as_secs_f64());
        println!("round {round}: abstract socket RTT {u:?}, eventfd RTT {e:?}");
    }
    ratios.sort_by(f64::total_cmp);
    uds_rtt.sort();
    efd_rtt.sort();
    println!(
        "median RTT: abstract socket {:?}, eventfd {:?}; median ratio socket/eventfd {:.2} ({ROUNDS} alternating rounds of {TRIPS} round trips)",
        uds_rtt[ROUNDS / 2],
        efd_rtt[ROUNDS / 2],
        ratios[ROUNDS / 2]
    );
}
