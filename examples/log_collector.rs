//! Several processes write log lines into one MPSC channel; the collector prints a sample of
//! them and a summary.
//!
//! `cargo run --release --example log_collector [writers] [lines]`

use std::collections::BTreeMap;

use futures::StreamExt;
use shmchan::{Lifetime, Options, mpsc};

#[tokio::main(flavor = "current_thread")]
async fn main() -> shmchan::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "writer" {
        let lines: u64 = args[3].parse().unwrap();
        let mut tx = mpsc::Producer::open(&args[2], Options::new())?;
        let pid = std::process::id();
        for i in 0..lines {
            let level = ["INFO", "WARN", "DEBUG"][(i % 3) as usize];
            tx.send(format!("{level} pid={pid} line {i}: request served"))
                .await?;
        }
        return Ok(()); // dropping the producer tells the collector this writer is done
    }
    let writers: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4);
    let lines: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let name = format!("/shmchan-logs-{}", std::process::id());
    // Lifetime::Creator: the collector's stream does not end when a writer leaves (one may
    // finish before the next even attaches); it lives as long as the collector does.
    let opts = Options::new()
        .slot_size(256)
        .capacity(512)
        .lifetime(Lifetime::Creator);
    let mut logs = mpsc::Consumer::create(&name, opts)?;
    let mut children = Vec::new();
    for _ in 0..writers {
        children.push(
            std::process::Command::new(&args[0])
                .args(["writer", &name, &lines.to_string()])
                .spawn()?,
        );
    }
    let (mut total, mut by_level, mut by_pid) = (0u64, BTreeMap::new(), BTreeMap::new());
    // Writers come and go; the collector counts what it expects (a real one would run on).
    let expected = writers as u64 * lines;
    while total < expected {
        let Some(line) = logs.next().await else {
            break;
        };
        let line = String::from_utf8_lossy(&line?).into_owned();
        if total % 20_000 == 0 {
            println!("[collector] {line}");
        }
        let mut words = line.split_whitespace();
        *by_level
            .entry(words.next().unwrap_or("?").to_owned())
            .or_insert(0u64) += 1;
        *by_pid
            .entry(words.next().unwrap_or("?").to_owned())
            .or_insert(0u64) += 1;
        total += 1;
    }
    for mut c in children {
        c.wait()?;
    }
    println!(
        "[collector] {total} lines from {} writers: {by_level:?}",
        by_pid.len()
    );
    assert_eq!(total, writers as u64 * lines);
    Ok(())
}
