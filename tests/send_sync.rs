//! Compile-time checks of the auto traits of every public type (tokio's `async_send_sync`
//! habit): handles move between threads and tasks, futures can be spawned on multi-threaded
//! runtimes, errors can cross threads.

use shmchan::channel::{Mpmc, Mpsc, Spsc};

fn send<T: Send>() {}
fn sync<T: Sync>() {}
fn unpin<T: Unpin>() {}

#[test]
fn public_types_are_send_and_unpin() {
    send::<shmchan::channel::Producer<Spsc>>();
    send::<shmchan::channel::Producer<Mpsc>>();
    send::<shmchan::channel::Producer<Mpmc>>();
    send::<shmchan::channel::Consumer<Spsc>>();
    send::<shmchan::channel::Consumer<Mpsc>>();
    send::<shmchan::channel::Consumer<Mpmc>>();
    unpin::<shmchan::channel::Producer<Spsc>>();
    unpin::<shmchan::channel::Consumer<Mpmc>>();
    send::<shmchan::channel::RecvFuture<'static, Spsc>>();
    send::<shmchan::channel::SendFuture<'static, Mpmc, Vec<u8>>>();
    send::<shmchan::endpoint::Endpoint>();
    send::<shmchan::Segment>();
    sync::<shmchan::Segment>();
    send::<shmchan::Heap>();
    sync::<shmchan::Heap>();
    send::<shmchan::ShmBuf>();
    send::<shmchan::Handle>();
    send::<shmchan::Message>();
    sync::<shmchan::Message>();
    send::<shmchan::Error>();
    sync::<shmchan::Error>();
    send::<shmchan::TrySendError<Vec<u8>>>();
    send::<shmchan::SendError<Vec<u8>>>();
}

#[cfg(feature = "tokio")]
#[test]
fn listener_is_send() {
    send::<shmchan::endpoint::Listener>();
}
