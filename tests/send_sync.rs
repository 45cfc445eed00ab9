//! Compile-time checks of the auto traits (`Send`, `Sync`, `Unpin`) of every public type and of
//! the futures of the public `async fn`s, in the style of tokio's `tests/async_send_sync.rs`:
//! each is asserted both ways, so that gaining a trait is caught as well as losing one.
//!
//! A positive requirement is a bound (`fn require_send<T: Send>`). A negative one calls a
//! method of a trait implemented twice, once for every type and once for the types that have
//! the auto trait: for a type that has it the call is ambiguous and does not compile
//! ("type annotations needed"). Either way a wrong claim fails the build of this test.

#![allow(clippy::diverging_sub_expression)]

use std::rc::Rc;

use shmchan::channel::{
    Consumer, Mpmc, Mpsc, Producer, ReadChunk, ReadSlot, RecvFuture, SendFuture, Spsc, WriteChunk,
    WriteSlot,
};
use shmchan::endpoint::{Endpoint, Side};
use shmchan::layout::{Kind, Layout, LayoutSpec, Participant, Registration, Role};
use shmchan::{
    Error, ErrorBox, Handle, Heap, HeapOptions, Message, Mode, Options, Segment, SegmentOptions,
    SendTimeoutError, ShmBuf, TryRecvError, TrySendError, Unlink, WaitStrategy,
};

fn require_send<T: Send>(_t: &T) {}
fn require_sync<T: Sync>(_t: &T) {}
fn require_unpin<T: Unpin>(_t: &T) {}

#[allow(dead_code)]
struct Invalid;

trait AmbiguousIfSend<A> {
    fn some_item(&self) {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
impl<T: ?Sized + Send> AmbiguousIfSend<Invalid> for T {}

trait AmbiguousIfSync<A> {
    fn some_item(&self) {}
}
impl<T: ?Sized> AmbiguousIfSync<()> for T {}
impl<T: ?Sized + Sync> AmbiguousIfSync<Invalid> for T {}

trait AmbiguousIfUnpin<A> {
    fn some_item(&self) {}
}
impl<T: ?Sized> AmbiguousIfUnpin<()> for T {}
impl<T: ?Sized + Unpin> AmbiguousIfUnpin<Invalid> for T {}

/// `require!(value, Send & !Sync & Unpin)`: each of the three traits, claimed or denied.
macro_rules! require {
    ($f:ident, $($tok:tt)*) => { require_each!($f, & $($tok)*); };
}

macro_rules! require_each {
    ($f:ident,) => {};
    ($f:ident, & ! Send $($rest:tt)*) => {
        AmbiguousIfSend::some_item(&$f);
        require_each!($f, $($rest)*);
    };
    ($f:ident, & Send $($rest:tt)*) => {
        require_send(&$f);
        require_each!($f, $($rest)*);
    };
    ($f:ident, & ! Sync $($rest:tt)*) => {
        AmbiguousIfSync::some_item(&$f);
        require_each!($f, $($rest)*);
    };
    ($f:ident, & Sync $($rest:tt)*) => {
        require_sync(&$f);
        require_each!($f, $($rest)*);
    };
    ($f:ident, & ! Unpin $($rest:tt)*) => {
        AmbiguousIfUnpin::some_item(&$f);
        require_each!($f, $($rest)*);
    };
    ($f:ident, & Unpin $($rest:tt)*) => {
        require_unpin(&$f);
        require_each!($f, $($rest)*);
    };
}

/// `assert_value!(Type: Send & Sync & Unpin)`.
macro_rules! assert_value {
    ($type:ty: $($tok:tt)*) => {
        #[allow(unreachable_code, unused_variables)]
        const _: fn() = || {
            let f: $type = todo!();
            require!(f, $($tok)*);
        };
    };
}

/// A value of any type, for the arguments of the functions below (never run).
macro_rules! into_todo {
    ($typ:ty) => {{
        let x: $typ = todo!();
        x
    }};
}

/// `async_assert_fn!(Path<Generics>::function(ArgTypes): Traits)`: the future it returns.
macro_rules! async_assert_fn {
    ($($f:ident $(< $($generic:ty),* > )? )::+($($arg:ty),*): $($tok:tt)*) => {
        #[allow(unreachable_code, unused_variables)]
        const _: fn() = || {
            let f = $($f $(::<$($generic),*>)? )::+( $( into_todo!($arg) ),* );
            require!(f, $($tok)*);
        };
    };
}

// Channel handles and their flavours.
assert_value!(Producer<Spsc>: Send & Sync & Unpin);
assert_value!(Producer<Mpsc>: Send & Sync & Unpin);
assert_value!(Producer<Mpmc>: Send & Sync & Unpin);
assert_value!(Consumer<Spsc>: Send & Sync & Unpin);
assert_value!(Consumer<Mpsc>: Send & Sync & Unpin);
assert_value!(Consumer<Mpmc>: Send & Sync & Unpin);
assert_value!(shmchan::spsc::Producer: Send & Sync & Unpin);
assert_value!(shmchan::mpmc::Consumer: Send & Sync & Unpin);
assert_value!(Spsc: Send & Sync & Unpin);
assert_value!(Mpsc: Send & Sync & Unpin);
assert_value!(Mpmc: Send & Sync & Unpin);
assert_value!(Options: Send & Sync & Unpin);
assert_value!(Unlink: Send & Sync & Unpin);
assert_value!(WaitStrategy: Send & Sync & Unpin);
assert_value!(Message: Send & Sync & Unpin);

// Zero-copy guards.
assert_value!(WriteSlot<'static, Spsc>: Send & Sync & Unpin);
assert_value!(WriteSlot<'static, Mpsc>: Send & Sync & Unpin);
assert_value!(WriteSlot<'static, Mpmc>: Send & Sync & Unpin);
assert_value!(ReadSlot<'static, Spsc>: Send & Sync & Unpin);
assert_value!(ReadSlot<'static, Mpsc>: Send & Sync & Unpin);
assert_value!(ReadSlot<'static, Mpmc>: Send & Sync & Unpin);
assert_value!(WriteChunk<'static>: Send & Sync & Unpin);
assert_value!(ReadChunk<'static>: Send & Sync & Unpin);

// Futures: spawnable on multi-threaded runtimes; a message type that is not `Send` makes the
// send future not `Send`.
assert_value!(RecvFuture<'static, Spsc>: Send & Sync & Unpin);
assert_value!(RecvFuture<'static, Mpsc>: Send & Sync & Unpin);
assert_value!(RecvFuture<'static, Mpmc>: Send & Sync & Unpin);
assert_value!(SendFuture<'static, Spsc, Vec<u8>>: Send & Sync & Unpin);
assert_value!(SendFuture<'static, Mpsc, &'static [u8]>: Send & Sync & Unpin);
assert_value!(SendFuture<'static, Mpmc, bytes::Bytes>: Send & Sync & Unpin);
assert_value!(SendFuture<'static, Spsc, Rc<[u8]>>: !Send & !Sync & Unpin);
async_assert_fn!(Producer<Spsc>::send_value<u64>(&mut Producer<Spsc>, u64): Send & Sync & !Unpin);
async_assert_fn!(Producer<Mpmc>::send_value<[u8; 16]>(&mut Producer<Mpmc>, [u8; 16]): Send & Sync & !Unpin);
async_assert_fn!(Consumer<Spsc>::recv_value<u64>(&mut Consumer<Spsc>): Send & Sync & !Unpin);
async_assert_fn!(Consumer<Mpsc>::recv_value<u32>(&mut Consumer<Mpsc>): Send & Sync & !Unpin);

// Endpoints: the endpoint, its halves (`split` gives a Producer<Spsc> and a Consumer<Spsc>,
// above) and its futures.
assert_value!(Endpoint: Send & Sync & Unpin);
assert_value!(Side: Send & Sync & Unpin);
async_assert_fn!(Endpoint::send<Vec<u8>>(&mut Endpoint, Vec<u8>): Send & Sync & Unpin);
async_assert_fn!(Endpoint::send<Rc<[u8]>>(&mut Endpoint, Rc<[u8]>): !Send & !Sync & Unpin);
async_assert_fn!(Endpoint::recv(&mut Endpoint): Send & Sync & Unpin);
#[cfg(feature = "tokio")]
mod listener {
    use super::*;
    use shmchan::endpoint::Listener;
    assert_value!(Listener: Send & !Sync & Unpin);
    async_assert_fn!(Listener::accept(&mut Listener): Send & !Sync & !Unpin);
    async_assert_fn!(Endpoint::connect(&str): Send & Sync & !Unpin);
}

// The shared heap.
assert_value!(Heap: Send & Sync & Unpin);
assert_value!(HeapOptions: Send & Sync & Unpin);
assert_value!(ShmBuf: Send & Sync & Unpin);
assert_value!(Handle: Send & Sync & Unpin);

// Segments and layouts.
assert_value!(Segment: Send & Sync & Unpin);
assert_value!(SegmentOptions: Send & Sync & Unpin);
assert_value!(Mode: Send & Sync & Unpin);
assert_value!(Layout: Send & Sync & Unpin);
assert_value!(LayoutSpec: Send & Sync & Unpin);
assert_value!(Kind: Send & Sync & Unpin);
assert_value!(Role: Send & Sync & Unpin);
assert_value!(Participant: Send & Sync & Unpin);
assert_value!(Registration: Send & Sync & Unpin);

// Errors cross threads (into `anyhow`, `Box<dyn Error + Send + Sync>`) with what they carry.
assert_value!(Error: Send & Sync & Unpin);
assert_value!(ErrorBox: Send & Sync & Unpin);
assert_value!(TryRecvError: Send & Sync & Unpin);
assert_value!(TrySendError<Vec<u8>>: Send & Sync & Unpin);
assert_value!(TrySendError<Rc<[u8]>>: !Send & !Sync & Unpin);
assert_value!(SendTimeoutError<Vec<u8>>: Send & Sync & Unpin);
assert_value!(SendTimeoutError<Rc<[u8]>>: !Send & !Sync & Unpin);
