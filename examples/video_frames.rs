//! Video-frame style large messages: a producer process renders 4 MiB frames straight into
//! blocks of a per-connection heap and sends them; a consumer process (this same program,
//! re-executed) checks every byte of every frame in place and reports frames/s and GB/s.
//!
//! ```text
//! cargo run --release --example video_frames            # 600 frames
//! cargo run --release --example video_frames -- 2000    # more
//! ```
//!
//! The producer binds a [`Listener`] with a heap per connection (`heap_size`): the heap is a
//! sealed memfd passed to the consumer in the handshake, so nothing appears in `/dev/shm`.
//! The heap holds four frames; when the consumer falls behind, `alloc_large` waits for it to
//! drop a frame (back-pressure through the heap, no frame is lost or copied).

use std::time::Instant;

use shmchan::Options;
use shmchan::endpoint::{Endpoint, Listener};

const FRAME: usize = 4 << 20;

/// Frame `n`: its number in the first 8 bytes, then every byte `n as u8`.
fn render(n: u64, frame: &mut [u8]) {
    frame[8..].fill(n as u8);
    frame[..8].copy_from_slice(&n.to_le_bytes());
}

/// Whether `frame` is frame `n`, every byte of it.
fn is_frame(n: u64, frame: &[u8]) -> bool {
    frame.len() == FRAME
        && frame[..8] == n.to_le_bytes()
        && frame[8..].iter().all(|&b| b == n as u8)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.first().map(String::as_str) == Some("consumer") {
        return rt.block_on(consumer(&args[1], args[2].parse()?));
    }
    let frames: u64 = args.first().map(|s| s.parse()).transpose()?.unwrap_or(600);
    rt.block_on(producer(frames))
}

async fn producer(frames: u64) -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("/shmchan-video-{}", std::process::id());
    let mut listener = Listener::bind(&name, Options::new())?.heap_size(4 * FRAME + (1 << 20));
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["consumer", &name, &frames.to_string()])
        .spawn()?;
    let mut ep = listener.accept().await?;
    let t = Instant::now();
    for n in 0..frames {
        let mut frame = ep.alloc_large(FRAME).await?;
        // SAFETY: the connection heap is a memfd that only this process and the consumer map,
        // and the consumer only reads frames it received (never one we are filling).
        render(n, unsafe { frame.as_mut_slice() });
        ep.send_buf(frame).await?;
    }
    // The consumer's answer: the frames it checked.
    let reply = ep.recv_large().await?.to_vec();
    let took = t.elapsed().as_secs_f64();
    let checked = u64::from_le_bytes(reply[..8].try_into()?);
    println!(
        "producer: sent {frames} frames of {} MiB in {took:.2} s: {:.0} frames/s, {:.2} GB/s",
        FRAME >> 20,
        frames as f64 / took,
        (frames as usize * FRAME) as f64 / took / 1e9
    );
    assert_eq!(checked, frames, "the consumer checked {checked} frames");
    child.wait()?;
    Ok(())
}

async fn consumer(name: &str, frames: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut ep = Endpoint::connect(name).await?;
    let mut t = None;
    for n in 0..frames {
        let frame = ep.recv_large().await?;
        // The clock starts at the first frame (the connection is made by then).
        t.get_or_insert_with(Instant::now);
        // SAFETY: see the producer: only the two processes of this example map the heap, and
        // the producer never touches a frame after sending it.
        if !is_frame(n, unsafe { frame.as_slice() }) {
            return Err(format!("frame {n} is damaged or out of order").into());
        }
        drop(frame); // freed: the producer may reuse the block
    }
    let took = t.map_or(0.0, |t: Instant| t.elapsed().as_secs_f64());
    println!(
        "consumer: checked every byte of {frames} frames in {took:.2} s: {:.0} frames/s, {:.2} \
         GB/s",
        frames as f64 / took,
        (frames as usize * FRAME) as f64 / took / 1e9
    );
    ep.send_large(&frames.to_le_bytes()).await?;
    // Wait until the producer has read the answer (it closes the connection then).
    let _ = ep.recv_large().await;
    Ok(())
}
