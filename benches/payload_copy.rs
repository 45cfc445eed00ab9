//! How to copy a payload out of shared memory: `ptr::copy_nonoverlapping` (what the rings use)
//! against a loop of volatile aligned 8-byte loads (the "atomic-memcpy" style, which keeps
//! every access a single-copy-atomic word load even if a hostile peer writes concurrently).
//! Alternating rounds, best of 10 per side; prints the ratio per size.
//!
//! `cargo bench --bench payload_copy`

use std::hint::black_box;
use std::time::Instant;

fn copy_plain(src: *const u8, dst: &mut [u8]) {
    // SAFETY: src points to at least dst.len() readable bytes (a private buffer here).
    unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) }
}

fn copy_volatile_words(src: *const u8, dst: &mut [u8]) {
    let n = dst.len();
    let words = n / 8;
    // SAFETY: src is 8-aligned with at least n readable bytes; dst is n writable bytes.
    unsafe {
        for i in 0..words {
            let w = std::ptr::read_volatile((src as *const u64).add(i));
            (dst.as_mut_ptr() as *mut u64).add(i).write_unaligned(w);
        }
        for (i, d) in dst.iter_mut().enumerate().skip(words * 8) {
            *d = std::ptr::read_volatile(src.add(i));
        }
    }
}

fn main() {
    let src = vec![7u64; 1 << 14]; // 128 KiB, 8-aligned
    for &len in &[64usize, 1024, 65536] {
        let mut dst = vec![0u8; len];
        let iters = (1usize << 27) / len.max(64);
        let mut best = [f64::MAX; 2];
        for round in 0..10 {
            for k in 0..2 {
                let side = (k + round) % 2;
                let t = Instant::now();
                for _ in 0..iters {
                    let s = black_box(src.as_ptr() as *const u8);
                    if side == 0 {
                        copy_plain(s, &mut dst)
                    } else {
                        copy_volatile_words(s, &mut dst)
                    }
                    black_box(&dst);
                }
                let ns = t.elapsed().as_nanos() as f64 / iters as f64;
                best[side] = best[side].min(ns);
            }
        }
        println!(
            "{len:>6} B: copy_nonoverlapping {:.1} ns, volatile words {:.1} ns: {:.2}x",
            best[0],
            best[1],
            best[1] / best[0]
        );
    }
}
