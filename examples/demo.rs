//! The main demo: two processes share one shmchan segment.
//!
//! The first process creates a segment with a shmchan header, spawns a second copy of itself
//! that attaches by name, and the two exchange a greeting and then play ping-pong on one shared
//! word, printing what each saw and the measured round-trip times.
//!
//! ```text
//! cargo run --release --example demo
//! ```

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmchan::layout::{Kind, Layout, LayoutSpec, Role};
use shmchan::{Mode, Result, SegmentOptions};

const ROUNDS: u64 = 200_000;
const DEMO_KIND: Kind = Kind(Kind::USER_FIRST.0 + 1);

fn spec() -> LayoutSpec {
    LayoutSpec {
        kind: DEMO_KIND,
        geometry: [ROUNDS, 0, 0, 0, 0, 0, 0, 0],
        participants: 2,
        data_len: 4096,
    }
}

/// The shared word at the start of the data area (the data area is 128-aligned).
fn word(layout: &Layout, index: usize) -> Result<&AtomicU64> {
    layout
        .segment()
        .atomic_u64(layout.data_offset() + 128 * index)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (Some("child"), Some(name)) => child(&name),
        _ => parent(),
    }
}

fn parent() -> Result<()> {
    let name = format!("/shmchan-demo-{}", std::process::id());
    let layout = Layout::create(&name, &spec(), &SegmentOptions::new().unlink_on_drop(true))?;
    let me = layout.claim(0, Role::PRODUCER)?;
    println!(
        "[parent {}] created {name} ({} bytes)",
        std::process::id(),
        layout.segment().len()
    );

    let mut child = Command::new(std::env::current_exe()?)
        .args(["child", &name])
        .stdout(Stdio::inherit())
        .spawn()?;

    // Wait for the child's greeting in the data area (word 1 = its length, bytes from 256).
    let len = wait_for(&layout, &mut child, |l| {
        word(l, 1).map(|w| w.load(Ordering::Acquire))
    })?;
    let mut greeting = vec![0u8; len.min(1024) as usize];
    layout
        .segment()
        .read(layout.data_offset() + 256, &mut greeting)?;
    println!(
        "[parent] child wrote: {:?}",
        String::from_utf8_lossy(&greeting)
    );
    for p in layout.live_participants(None) {
        println!(
            "[parent] participant {}: pid {} role {:?}",
            p.index,
            p.pid(),
            p.role
        );
    }

    // Ping-pong: the parent writes odd numbers, the child answers with the next even one.
    let ball = word(&layout, 0)?;
    let mut rtts = Vec::with_capacity(ROUNDS as usize);
    let start = Instant::now();
    for i in 0..ROUNDS {
        let t = Instant::now();
        ball.store(2 * i + 1, Ordering::Release);
        let mut spins = 0u32;
        while ball.load(Ordering::Acquire) != 2 * i + 2 {
            spins += 1;
            if spins % 1024 == 0 {
                std::thread::yield_now();
                if spins % (1024 * 1024) == 0 && child.try_wait()?.is_some() {
                    return Err(shmchan::Error::PeerGone("the child exited mid-game".into()));
                }
            } else {
                std::hint::spin_loop();
            }
        }
        rtts.push(t.elapsed());
    }
    let total = start.elapsed();
    let status = child.wait()?;
    rtts.sort();
    let pct = |p: f64| rtts[((rtts.len() - 1) as f64 * p) as usize];
    println!(
        "[parent] {ROUNDS} round trips over one shared word in {total:.2?}: \
         p50 {:?}, p99 {:?}, p99.9 {:?} (busy-spinning both sides; 2 vCPUs are noisy)",
        pct(0.50),
        pct(0.99),
        pct(0.999)
    );
    println!("[parent] child exited with {status}");
    layout.release(me);
    Ok(())
}

fn child(name: &str) -> Result<()> {
    let layout = Layout::open(name, DEMO_KIND, Mode::ReadWrite, Duration::from_secs(2))?;
    let me = layout.claim(1, Role::CONSUMER)?;
    let rounds = layout.geometry()[0];
    println!(
        "[child {}] attached to {name}: kind {:?}, geometry says {rounds} rounds",
        std::process::id(),
        layout.kind()
    );
    let hello = format!("hello from pid {}", std::process::id());
    layout
        .segment()
        .write(layout.data_offset() + 256, hello.as_bytes())?;
    word(&layout, 1)?.store(hello.len() as u64, Ordering::Release);

    let ball = word(&layout, 0)?;
    for i in 0..rounds {
        let mut spins = 0u32;
        while ball.load(Ordering::Acquire) != 2 * i + 1 {
            spins += 1;
            if spins % 1024 == 0 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        ball.store(2 * i + 2, Ordering::Release);
    }
    println!("[child] answered {rounds} pings");
    layout.release(me);
    Ok(())
}

/// Spins (yielding) until `f` returns non-zero; fails if the child exits first.
fn wait_for(
    layout: &Layout,
    child: &mut std::process::Child,
    f: impl Fn(&Layout) -> Result<u64>,
) -> Result<u64> {
    loop {
        let v = f(layout)?;
        if v != 0 {
            return Ok(v);
        }
        if let Some(status) = child.try_wait()? {
            return Err(shmchan::Error::PeerGone(format!(
                "the child exited early: {status}"
            )));
        }
        std::thread::yield_now();
    }
}
