//! The codec behind `shmchan::typed`: postcard against bincode 2 (serde, standard config),
//! encode + decode of the same realistic structs, a small one (an order, ~30 bytes) and a
//! ~1 KiB one (a batch of order lines). Both encode into a preallocated buffer (as the typed
//! channels encode into a slot) and decode from a slice (as they decode from the consumer's
//! copy of the message). The two codecs alternate (A B A B ..., `BENCH_ROUNDS` rounds, at
//! least 5) and the median of the per-round ratios is printed with the medians of each.
//!
//! Then what the codec costs in a channel: a typed SPSC send + receive (`shmchan::typed`,
//! postcard into the slot, decode from the consumer's copy) against the same bytes, encoded
//! once beforehand, through a byte channel, both in one thread (no waiting: the cost of the
//! calls themselves), alternating.
//!
//! `cargo bench --bench serde_codec --features serde` (`BENCH_ROUNDS=9`, `BENCH_ITERS=200000`).

use std::hint::black_box;
use std::time::Instant;

use serde::{Deserialize, Serialize};

#[path = "support/harness.rs"]
mod harness;
use harness::median;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: u32,
    item: String,
    qty: u32,
    price_cents: u64,
    express: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Line {
    sku: u64,
    name: String,
    qty: u16,
    price_cents: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Batch {
    id: u64,
    warehouse: String,
    lines: Vec<Line>,
    notes: Option<String>,
}

fn small() -> Order {
    Order {
        id: 1_234_567,
        customer: 42_001,
        item: "green tea 250g".into(),
        qty: 3,
        price_cents: 1_299,
        express: true,
    }
}

fn large() -> Batch {
    Batch {
        id: 9_876_543_210,
        warehouse: "north-east distribution centre".into(),
        lines: (0..32)
            .map(|i| Line {
                sku: 100_000_000 + i * 7_919,
                name: format!("article number {i:03} ok"),
                qty: (i % 9 + 1) as u16,
                price_cents: 199 + (i as u32) * 1_013,
            })
            .collect(),
        notes: Some("leave at the back door, ring twice".into()),
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// ns per encode + decode with postcard.
fn postcard_round<T: Serialize + for<'de> Deserialize<'de> + PartialEq>(
    v: &T,
    iters: usize,
) -> f64 {
    let mut buf = vec![0u8; 4096];
    let t = Instant::now();
    for _ in 0..iters {
        let n = postcard::to_slice(black_box(v), &mut buf).unwrap().len();
        let back: T = postcard::from_bytes(black_box(&buf[..n])).unwrap();
        black_box(&back);
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

/// ns per encode + decode with bincode 2 (serde, standard config: varints).
fn bincode_round<T: Serialize + for<'de> Deserialize<'de> + PartialEq>(v: &T, iters: usize) -> f64 {
    let cfg = bincode::config::standard();
    let mut buf = vec![0u8; 4096];
    let t = Instant::now();
    for _ in 0..iters {
        let n = bincode::serde::encode_into_slice(black_box(v), &mut buf, cfg).unwrap();
        let (back, _): (T, usize) =
            bincode::serde::decode_from_slice(black_box(&buf[..n]), cfg).unwrap();
        black_box(&back);
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn compare<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(
    what: &str,
    v: &T,
    rounds: usize,
    iters: usize,
) {
    let pc = postcard::to_allocvec(v).unwrap();
    let bc = bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap();
    assert_eq!(&postcard::from_bytes::<T>(&pc).unwrap(), v);
    postcard_round(v, iters / 10); // warm up
    bincode_round(v, iters / 10);
    let (mut p, mut b, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let tp = postcard_round(v, iters);
        let tb = bincode_round(v, iters);
        ratio.push(tb / tp);
        p.push(tp);
        b.push(tb);
    }
    println!(
        "{what}: postcard {} B, {:.0} ns; bincode {} B, {:.0} ns; bincode/postcard time {:.2}x \
         (median of {rounds} alternating rounds, {iters} encode+decode each)",
        pc.len(),
        median(p),
        bc.len(),
        median(b),
        median(ratio)
    );
}

/// ns per typed send + receive of `v` on an SPSC channel.
fn typed_round<T>(name: &str, v: &T, iters: usize) -> f64
where
    T: Serialize + for<'de> Deserialize<'de>,
{
    use shmchan::channel::Spsc;
    use shmchan::typed::{TypedConsumer, TypedProducer};
    let opts = shmchan::Options::new().slot_size(2048).capacity(16);
    let mut tx = TypedProducer::<Spsc, T>::create(name, opts.clone()).unwrap();
    let mut rx = TypedConsumer::<Spsc, T>::open(name, opts).unwrap();
    let t = Instant::now();
    for _ in 0..iters {
        tx.try_send(black_box(v)).unwrap();
        black_box(rx.try_recv().unwrap());
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

/// ns per send + receive of `bytes` (already encoded) on an SPSC byte channel.
fn bytes_round(name: &str, bytes: &[u8], iters: usize) -> f64 {
    let opts = shmchan::Options::new().slot_size(2048).capacity(16);
    let mut tx = shmchan::spsc::Producer::create(name, opts.clone()).unwrap();
    let mut rx = shmchan::spsc::Consumer::open(name, opts).unwrap();
    let t = Instant::now();
    for _ in 0..iters {
        tx.try_send(black_box(bytes)).unwrap();
        black_box(rx.try_recv().unwrap());
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn channel_compare<T>(what: &str, v: &T, rounds: usize, iters: usize)
where
    T: Serialize + for<'de> Deserialize<'de>,
{
    let name = format!("/shmchan-bench-serde-{}", std::process::id());
    let bytes = postcard::to_allocvec(v).unwrap();
    let (mut typed, mut raw, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let a = typed_round(&name, v, iters);
        let b = bytes_round(&name, &bytes, iters);
        ratio.push(a / b);
        typed.push(a);
        raw.push(b);
    }
    let _ = shmchan::Segment::unlink(&name);
    println!(
        "{what} through a channel: typed {:.0} ns, bytes {:.0} ns per send + receive; \
         typed/bytes {:.2}x (median of {rounds} alternating rounds, {iters} each)",
        median(typed),
        median(raw),
        median(ratio)
    );
}

fn main() {
    let rounds = env("BENCH_ROUNDS", 7).max(5);
    let iters = env("BENCH_ITERS", 200_000);
    compare("small order", &small(), rounds, iters);
    compare("~1 KiB batch", &large(), rounds, iters / 8);
    channel_compare("small order", &small(), rounds, iters);
    channel_compare("~1 KiB batch", &large(), rounds, iters / 8);
}
