//! Per-message cost of try_send + try_recv in one process (a development aid).
use shmchan::{Options, spsc};
use std::time::Instant;
fn main() {
    let name = format!("/shmchan-percost-{}", std::process::id());
    let mut tx = spsc::Producer::create(&name, Options::new().slot_size(64).capacity(256)).unwrap();
    let mut rx = spsc::Consumer::open(&name, Options::new()).unwrap();
    let p = [7u8; 64];
    for round in 0..3 {
        let t = Instant::now();
        let n = 2_000_000u64;
        for _ in 0..n / 128 {
            for _ in 0..128 {
                tx.try_send(p).unwrap();
            }
            for _ in 0..128 {
                let _ = rx.try_recv().unwrap();
            }
        }
        println!(
            "round {round}: {:.1} ns per message (send + recv with copy)",
            t.elapsed().as_nanos() as f64 / n as f64
        );
        let t = Instant::now();
        for _ in 0..n / 128 {
            for _ in 0..128 {
                tx.try_send(p).unwrap();
            }
            for _ in 0..128 {
                let s = rx.try_recv_ref().unwrap().unwrap();
                let mut b = [0u8; 64];
                s.read(0, &mut b).unwrap();
            }
        }
        println!(
            "round {round}: {:.1} ns per message (send + recv_ref)",
            t.elapsed().as_nanos() as f64 / n as f64
        );
    }
}
