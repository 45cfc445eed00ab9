//! The shared heap end to end (issue 6; alloc/free costs are in `benches/heap.rs`):
//!
//! - 1 MiB and 16 MiB messages end to end across processes (allocate, fill, send, receive,
//!   read, free), against copying the payload through an SPSC ring in 64 KiB slots and
//!   through a `UnixStream`. The receiver reads every byte in each case (a checksum over the
//!   payload) and acknowledges; the figure is messages per second.
//!
//! Comparisons alternate their sides over `ROUNDS` rounds and report median ratios.
//!
//! `cargo bench --bench heap_e2e`

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Child;
use std::time::Instant;

use shmchan::{Handle, Heap, Options, Segment, spsc};

#[path = "support/harness.rs"]
mod harness;
use harness::{SelfExec, median};

const ROUNDS: usize = 5;
const CHUNK: usize = 64 * 1024;

fn checksum(ptr: *const u8, len: usize) -> u64 {
    let mut s = 0u64;
    for i in (0..len / 8 * 8).step_by(8) {
        // SAFETY: i + 8 <= len, inside the block or buffer the caller holds.
        s = s.wrapping_add(unsafe { ptr.add(i).cast::<u64>().read_unaligned() });
    }
    s
}

/// This bench's child processes.
const CHILD: SelfExec = SelfExec {
    role_var: "HEAP_E2E_ROLE",
    args_var: "HEAP_E2E_ARGS",
};

fn spawn(role: &str, args: &[&str]) -> Child {
    CHILD.spawn(role, args)
}

fn child(role: &str, a: &[String]) {
    match role {
        "heap-recv" => {
            let heap = Heap::open(&a[0]).unwrap();
            let mut rx = spsc::Consumer::open(&a[1], Options::new()).unwrap();
            let mut ack = spsc::Producer::open(&a[2], Options::new()).unwrap();
            while let Ok(h) = rx.recv_value_blocking::<Handle>() {
                let b = heap.take(h).unwrap();
                let s = checksum(b.as_ptr(), b.len());
                drop(b);
                ack.send_blocking(s.to_le_bytes()).unwrap();
            }
        }
        "ring-recv" => {
            let len: usize = a[2].parse().unwrap();
            let mut rx = spsc::Consumer::open(&a[0], Options::new()).unwrap();
            let mut ack = spsc::Producer::open(&a[1], Options::new()).unwrap();
            let mut buf = vec![0u8; len];
            'outer: loop {
                let mut at = 0;
                while at < len {
                    let Ok(slot) = rx.recv_ref_blocking() else {
                        break 'outer;
                    };
                    let n = slot.len();
                    slot.read(0, &mut buf[at..at + n]).unwrap();
                    at += n;
                }
                let s = checksum(buf.as_ptr(), len);
                ack.send_blocking(s.to_le_bytes()).unwrap();
            }
        }
        "uds-recv" => {
            let len: usize = a[1].parse().unwrap();
            let mut s = UnixStream::connect(&a[0]).unwrap();
            let mut buf = vec![0u8; len];
            while s.read_exact(&mut buf).is_ok() {
                let c = checksum(buf.as_ptr(), len);
                if s.write_all(&c.to_le_bytes()).is_err() {
                    break;
                }
            }
        }
        _ => panic!("{role}"),
    }
}

fn name(t: &str) -> String {
    format!("/shmchan-bench-heap-{}-{t}", std::process::id())
}

fn heap_e2e(len: usize, n: u32) -> f64 {
    let (h, c, a) = (name("h"), name("c"), name("a"));
    let heap = Heap::create(&h, 3 * len + (1 << 20)).unwrap();
    let mut tx = spsc::Producer::create(&c, Options::new()).unwrap();
    let mut ack = spsc::Consumer::create(&a, Options::new()).unwrap();
    let mut kid = spawn("heap-recv", &[&h, &c, &a]);
    let pattern = vec![3u8; len];
    let t = Instant::now();
    for _ in 0..n {
        let mut b = heap.alloc(len).unwrap();
        b.write_at(0, &pattern).unwrap();
        tx.send_value_blocking(b.into_handle()).unwrap();
        ack.recv_blocking().unwrap();
    }
    let took = t.elapsed();
    drop((tx, ack));
    kid.wait().unwrap();
    drop(heap);
    let _ = Segment::unlink(&h);
    f64::from(n) / took.as_secs_f64()
}

fn ring_e2e(len: usize, n: u32) -> f64 {
    let (c, a) = (name("rc"), name("ra"));
    let mut tx = spsc::Producer::create(&c, Options::new().slot_size(CHUNK).capacity(32)).unwrap();
    let mut ack = spsc::Consumer::create(&a, Options::new()).unwrap();
    let mut kid = spawn("ring-recv", &[&c, &a, &len.to_string()]);
    let payload = vec![3u8; len];
    let t = Instant::now();
    for _ in 0..n {
        for chunk in payload.chunks(CHUNK) {
            tx.send_blocking(chunk).unwrap();
        }
        ack.recv_blocking().unwrap();
    }
    let took = t.elapsed();
    drop((tx, ack));
    kid.wait().unwrap();
    f64::from(n) / took.as_secs_f64()
}

fn uds_e2e(len: usize, n: u32) -> f64 {
    let path = harness::uds_path("heap");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    let mut kid = spawn("uds-recv", &[path.to_str().unwrap(), &len.to_string()]);
    let (mut s, _) = l.accept().unwrap();
    let payload = vec![3u8; len];
    let mut ack = [0u8; 8];
    let t = Instant::now();
    for _ in 0..n {
        s.write_all(&payload).unwrap();
        s.read_exact(&mut ack).unwrap();
    }
    let took = t.elapsed();
    drop(s);
    kid.wait().unwrap();
    let _ = std::fs::remove_file(&path);
    f64::from(n) / took.as_secs_f64()
}

fn main() {
    if let Some((role, a)) = CHILD.role() {
        child(&role, &a);
        return;
    }
    if harness::listing() {
        return;
    }
    println!("shared heap end to end; {ROUNDS} alternating rounds, medians");
    for (len, n) in [(1usize << 20, 400u32), (16 << 20, 40)] {
        let (mut h, mut rg, mut u, mut rr, mut ru) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..ROUNDS {
            let a = heap_e2e(len, n);
            let b = ring_e2e(len, n);
            let c = uds_e2e(len, n);
            h.push(a);
            rg.push(b);
            u.push(c);
            rr.push(a / b);
            ru.push(a / c);
        }
        println!(
            "{:>2} MiB end to end: heap by handle {:>7.0} msg/s | copy through ring {:>7.0} msg/s | UnixStream {:>7.0} msg/s | median ratios {:.2}x ring, {:.2}x UnixStream",
            len >> 20,
            median(h),
            median(rg),
            median(u),
            median(rr),
            median(ru)
        );
    }
}
