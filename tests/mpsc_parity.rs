//! Parity with tokio's own `tokio/tests/sync_mpsc.rs` (issue 12, item 4): every case of that
//! file, ported to shmchan with the same intent, named after the tokio case.
//!
//! Both ends live in one process; each test uses its own segment name ([`ShmName`]). tokio's
//! `mpsc::channel` maps to `shmchan::mpsc` (the consumer creates, producers open); a tokio
//! `Sender::clone` is another `Producer::open` handle; `recv() -> None` is
//! `Err(Error::Closed)` (`TryRecvError::Disconnected` is `TryRecvError::Closed`); a `Permit`
//! is a [`WriteSlot`](shmchan::channel::WriteSlot) from `try_reserve` (there is no async
//! `reserve()`; a waiting `send()` future plays the waiting `reserve()` future); the
//! `PermitIterator` of `try_reserve_many` is a `WriteChunk`, taken on SPSC rings here (most of
//! these cases use a capacity of 1, below the Vyukov rings' minimum of 2; MPSC chunks are
//! tested in `tests/chunks.rs`). Messages are bytes: an
//! `i32` travels as its 4 little-endian bytes.
//!
//! Wake-up checks poll a future by hand with a waker that records `wake` ([`Task`]); the
//! channel waits with `WaitStrategy::park_only()` and a 60 s liveness interval, so a wake seen
//! within the 5 s bound came from the wake path under test (not from the spin/yield phase,
//! which wakes itself, nor from the periodic liveness check).
//!
//! Tests marked `#[ignore = "MISSING: ..."]` state what shmchan SHOULD do and are the
//! acceptance tests of issue 12 (run them with `--ignored`).
//!
//! | # | tokio case | shmchan test | class |
//! |---|---|---|---|
//! | 1 | `send_recv_with_buffer` | `send_recv_with_buffer` | SAME |
//! | 2 | `reserve_disarm` | `reserve_disarm` | MISSING (a dropped reservation (mpsc) frees its slot only when the consumer reaches it, and wakes no waiting sender) |
//! | 3 | `send_recv_stream_with_buffer` | `send_recv_stream_with_buffer` | SAME (the Stream yields `Some(Ok(msg))`, then `None` after a clean close) |
//! | 4 | `async_send_recv_with_buffer` | `async_send_recv_with_buffer` | SAME |
//! | 5 | `async_send_recv_many_with_buffer` | `async_send_recv_many_with_buffer` | SAME (was MISSING: `Consumer::recv_many`; since `Consumer::close`, `recv_many`) |
//! | 6 | `start_send_past_cap` | `start_send_past_cap` | SAME (a cancelled waiting send gives its turn away: the other waiting sender is woken, the cancelled one not) |
//! | 7 | `buffer_gteq_one` | `buffer_gteq_one` | DIFFERS (a zero capacity is an `InvalidArgument` error, not a panic; MPSC needs 2 slots) |
//! | 8 | `send_recv_unbounded` | `send_recv_unbounded` | DIFFERS (no unbounded channel in shared memory: a bounded one with room for every message) |
//! | 9 | `send_recv_many_unbounded` | `send_recv_many_unbounded` | SAME (was MISSING: `Consumer::recv_many`; no unbounded channel: bounded with room for all; since `Consumer::close`, `recv_many`) |
//! | 10 | `send_recv_many_bounded_capacity` | `send_recv_many_bounded_capacity` | SAME (was MISSING: `Consumer::recv_many`; since `Consumer::close`, `recv_many`) |
//! | 11 | `send_recv_many_unbounded_capacity` | `send_recv_many_unbounded_capacity` | SAME (was MISSING: `Consumer::recv_many`; no unbounded channel: bounded with room for all; since `Consumer::close`, `recv_many`) |
//! | 12 | `recv_many_with_non_empty_buffer_bounded_rx_closed_and_idle` | `recv_many_with_non_empty_buffer_bounded_rx_closed_and_idle` | SAME (was MISSING: `Consumer::close`, `Consumer::recv_many`; since `Consumer::close`, `recv_many`) |
//! | 13 | `recv_many_with_non_empty_buffer_unbounded_rx_closed_and_idle` | `recv_many_with_non_empty_buffer_unbounded_rx_closed_and_idle` | SAME (was MISSING: `Consumer::close`, `Consumer::recv_many`; no unbounded channel; since `Consumer::close`, `recv_many`) |
//! | 14 | `async_send_recv_unbounded` | `async_send_recv_unbounded` | DIFFERS (no unbounded channel: bounded with room for every message) |
//! | 15 | `send_recv_stream_unbounded` | `send_recv_stream_unbounded` | DIFFERS (no unbounded channel: bounded with room for every message) |
//! | 16 | `no_t_bounds_buffer` | `no_t_bounds_buffer` | DIFFERS (messages are bytes, not `T`: any `AsRef<[u8]>` sends, even a type without Debug/Clone/Send bounds) |
//! | 17 | `no_t_bounds_unbounded` | `no_t_bounds_unbounded` | DIFFERS (no unbounded channel; messages are bytes, not `T`) |
//! | 18 | `send_recv_buffer_limited` | `send_recv_buffer_limited` | SAME (capacity 1: an SPSC ring; a waiting send is woken when the consumer frees the slot) |
//! | 19 | `recv_close_gets_none_idle` | `recv_close_gets_none_idle` | SAME (was MISSING: `Consumer::close`: no new sends, queued messages drain, then `Closed`; since `Consumer::close`, `recv_many`) |
//! | 20 | `recv_close_gets_none_reserved` | `recv_close_gets_none_reserved` | SAME (was MISSING: `Consumer::close` wakes waiting senders with `Closed`; a reservation taken before the close still delivers; since `Consumer::close`, `recv_many`) |
//! | 21 | `failed_reserve_many_wakes_closed_receiver` | `failed_reserve_many_wakes_closed_receiver` | SAME (was MISSING: async `reserve_many`, `Consumer::close`; since async `reserve_many` and the closed check of `try_reserve_many`) |
//! | 22 | `cancelled_reserve_many_wakes_closed_receiver` | `cancelled_reserve_many_wakes_closed_receiver` | SAME (was MISSING: async `reserve_many`, `Consumer::close`; since async `reserve_many` and the closed check of `try_reserve_many`) |
//! | 23 | `failed_reserve_wakes_closed_receiver` | `failed_reserve_wakes_closed_receiver` | SAME (was MISSING: `Consumer::close`: a waiting send fails with `Closed`, and the consumer then ends; since `Consumer::close`, `recv_many`) |
//! | 24 | `cancelled_reserve_wakes_closed_receiver` | `cancelled_reserve_wakes_closed_receiver` | SAME (was MISSING: `Consumer::close`; since `Consumer::close`, `recv_many`) |
//! | 25 | `tx_close_gets_none` | `tx_close_gets_none` | SAME (a producer that attached and left: the consumer gets `Closed`) |
//! | 26 | `try_send_fail` | `try_send_fail` | SAME (capacity 1: an SPSC ring) |
//! | 27 | `try_send_fail_with_try_recv` | `try_send_fail_with_try_recv` | SAME (capacity 1: an SPSC ring) |
//! | 28 | `reserve_many_above_cap` | `reserve_many_above_cap` | SAME (was MISSING: async `reserve_many`: more than the capacity is an error, never a wait; since async `reserve_many` and the closed check of `try_reserve_many`) |
//! | 29 | `try_reserve_many_zero` | `try_reserve_many_zero` | SAME (was MISSING: `try_reserve_many` ignores a closed channel: should be `Closed`; since async `reserve_many` and the closed check of `try_reserve_many`) |
//! | 30 | `reserve_many_zero` | `reserve_many_zero` | SAME (was MISSING: async `reserve_many`; since async `reserve_many` and the closed check of `try_reserve_many`) |
//! | 31 | `try_reserve_many_edge_cases` | `try_reserve_many_edge_cases` | DIFFERS (`try_reserve_many(n)` is rtrb's chunk: up to `n` slots, fewer when fewer are free, instead of `Full`) |
//! | 32 | `try_reserve_fails` | `try_reserve_fails` | SAME (a dropped SPSC reservation frees its slot at once) |
//! | 33 | `reserve_many_and_send` | `reserve_many_and_send` | SAME (was MISSING: async `reserve_many`; since async `reserve_many` and the closed check of `try_reserve_many`) |
//! | 34 | `try_reserve_many_and_send` | `try_reserve_many_and_send` | SAME (SPSC chunks) |
//! | 35 | `reserve_many_on_closed_channel` | `reserve_many_on_closed_channel` | SAME (was MISSING: async `reserve_many`; since async `reserve_many` and the closed check of `try_reserve_many`) |
//! | 36 | `try_reserve_many_on_closed_channel` | `try_reserve_many_on_closed_channel` | SAME (was MISSING: `try_reserve_many` ignores a closed channel: should be `Closed`; since async `reserve_many` and the closed check of `try_reserve_many`) |
//! | 37 | `try_reserve_many_full` | `try_reserve_many_full` | DIFFERS (`try_reserve_many` gives as many slots as are free rather than `Full`; `available()` is tokio's `capacity()`) |
//! | 38 | `drop_permit_releases_permit` | `drop_permit_releases_permit` | MISSING (a dropped mpsc reservation frees its slot only when the consumer reaches it and wakes no waiting sender) |
//! | 39 | `drop_permit_iterator_releases_permits` | `drop_permit_iterator_releases_permits` | SAME (was MISSING: async `reserve_many`; since async `reserve_many` and the closed check of `try_reserve_many`) |
//! | 40 | `dropping_last_permit_wakes_closed_receiver` | `dropping_last_permit_wakes_closed_receiver` | SAME (was MISSING: `Consumer::close`; a dropped reservation then ends the drained stream; since `Consumer::close`, `recv_many`) |
//! | 41 | `dropping_last_owned_permit_wakes_closed_receiver` | `dropping_last_owned_permit_wakes_closed_receiver` | SAME (was MISSING: `Consumer::close`; no owned permits: a `WriteSlot` borrows its producer, so this is dropping_last_permit_wakes_closed_receiver; since `Consumer::close`, `recv_many`) |
//! | 42 | `dropping_last_permit_iterator_wakes_closed_receiver` | `dropping_last_permit_iterator_wakes_closed_receiver` | MISSING (`Consumer::close`; the SPSC chunk is the permit iterator) |
//! | 43 | `sending_last_permit_wakes_closed_receiver` | `sending_last_permit_wakes_closed_receiver` | SAME (was MISSING: `Consumer::close`: a reservation taken before the close still delivers; since `Consumer::close`, `recv_many`) |
//! | 44 | `sending_last_owned_permit_wakes_closed_receiver` | `sending_last_owned_permit_wakes_closed_receiver` | SAME (was MISSING: `Consumer::close`; no owned permits, so this is sending_last_permit_wakes_closed_receiver; since `Consumer::close`, `recv_many`) |
//! | 45 | `releasing_last_owned_permit_wakes_closed_receiver` | `releasing_last_owned_permit_wakes_closed_receiver` | SAME (was MISSING: `Consumer::close`; no `OwnedPermit::release`: the `Sink`'s `poll_close` releases its `poll_ready` reservation; since `Consumer::close`, `recv_many`) |
//! | 46 | `dropping_rx_closes_channel` | `dropping_rx_closes_channel` | SAME (was MISSING: `Closed` right after the consumer leaves, not only once the ring is full; no `reserve`/`reserve_many` futures: `send` and the `Sink`; since honest close, `is_closed`) |
//! | 47 | `dropping_rx_closes_channel_for_try` | `dropping_rx_closes_channel_for_try` | SAME (was MISSING: `try_send` / `try_reserve` return `Ok` after the consumer left until the ring fills; docs say `Closed`; since honest close, `is_closed`) |
//! | 48 | `unconsumed_messages_are_dropped` | `unconsumed_messages_are_dropped` | DIFFERS (messages are bytes with no destructor; a message queued when everyone left stays in the segment, which keeps its name, documented `Unlink::LastOut`) |
//! | 49 | `blocking_recv` | `blocking_recv` | SAME |
//! | 50 | `blocking_recv_async` | `blocking_recv_async` | MISSING (`recv_blocking` inside a runtime blocks the executor silently; should panic like tokio or return an error) |
//! | 51 | `blocking_send` | `blocking_send` | SAME |
//! | 52 | `blocking_send_async` | `blocking_send_async` | MISSING (`send_blocking` inside a runtime blocks the executor silently when full; should panic like tokio or return an error) |
//! | 53 | `ready_close_cancel_bounded` | `ready_close_cancel_bounded` | SAME (was MISSING: `Consumer::close`: a dropped reservation then ends the drained stream; since `Consumer::close`, `recv_many`) |
//! | 54 | `permit_available_not_acquired_close` | `permit_available_not_acquired_close` | SAME (was MISSING: `Consumer::close`; a freed slot wakes a waiting sender; since `Consumer::close`, `recv_many`) |
//! | 55 | `try_recv_bounded` | `try_recv_bounded` | SAME |
//! | 56 | `try_recv_unbounded` | `try_recv_unbounded` | DIFFERS (no unbounded channel: bounded with room for every message) |
//! | 57 | `try_recv_after_receiver_close` | `try_recv_after_receiver_close` | SAME (was MISSING: `Consumer::close`; since `Consumer::close`, `recv_many`) |
//! | 58 | `try_recv_after_receiver_close_with_permit` | `try_recv_after_receiver_close_with_permit` | SAME (was MISSING: `Consumer::close`: `Empty` while a reservation is outstanding, `Closed` once it is dropped; since `Consumer::close`, `recv_many`) |
//! | 59 | `try_recv_close_while_empty_bounded` | `try_recv_close_while_empty_bounded` | SAME |
//! | 60 | `try_recv_close_while_empty_unbounded` | `try_recv_close_while_empty_unbounded` | DIFFERS (no unbounded channel) |
//! | 61 | `recv_timeout` | `recv_timeout` | DIFFERS (`send_timeout` is a blocking call, not a future; so a real, short timeout instead of paused time) |
//! | 62 | `recv_timeout_panic` | `recv_timeout_panic` | DIFFERS (`send_timeout` needs no runtime: outside one it works instead of panicking) |
//! | 63 | `test_tx_capacity` | `test_tx_capacity` | DIFFERS (tokio's `capacity()` is `available()`, `max_capacity()` is `capacity()`) |
//! | 64 | `test_rx_is_closed_when_calling_close_with_sender` | `test_rx_is_closed_when_calling_close_with_sender` | SAME (was MISSING: `Consumer::close`, `Consumer::is_closed`; since `Consumer::close`, `recv_many`) |
//! | 65 | `test_rx_is_closed_when_dropping_all_senders` | `test_rx_is_closed_when_dropping_all_senders` | SAME (was MISSING: `Consumer::is_closed`; since honest close, `is_closed`) |
//! | 66 | `test_rx_is_not_closed_when_there_are_senders` | `test_rx_is_not_closed_when_there_are_senders` | SAME (was MISSING: `Consumer::is_closed`; since honest close, `is_closed`) |
//! | 67 | `test_rx_is_not_closed_when_there_are_senders_and_buffer_filled` | `test_rx_is_not_closed_when_there_are_senders_and_buffer_filled` | SAME (was MISSING: `Consumer::is_closed`; since honest close, `is_closed`) |
//! | 68 | `test_rx_is_closed_when_there_are_no_senders_and_there_are_messages` | `test_rx_is_closed_when_there_are_no_senders_and_there_are_messages` | SAME (was MISSING: `Consumer::is_closed`: true once the producers left, even with messages queued; since honest close, `is_closed`) |
//! | 69 | `test_rx_is_closed_when_there_are_messages_and_close_is_called` | `test_rx_is_closed_when_there_are_messages_and_close_is_called` | SAME (was MISSING: `Consumer::close`, `Consumer::is_closed`; since `Consumer::close`, `recv_many`) |
//! | 70 | `test_rx_is_not_closed_when_there_are_permits_but_not_senders` | `test_rx_is_not_closed_when_there_are_permits_but_not_senders` | SAME (was MISSING: `Consumer::is_closed`; no owned permits: the `Sink`'s `poll_ready` reservation outlives nothing, so a live producer holds it; since honest close, `is_closed`) |
//! | 71 | `test_rx_is_empty_when_no_messages_were_sent` | `test_rx_is_empty_when_no_messages_were_sent` | SAME |
//! | 72 | `test_rx_is_not_empty_when_there_are_messages_in_the_buffer` | `test_rx_is_not_empty_when_there_are_messages_in_the_buffer` | SAME |
//! | 73 | `test_rx_is_not_empty_when_the_buffer_is_full` | `test_rx_is_not_empty_when_the_buffer_is_full` | SAME |
//! | 74 | `test_rx_is_not_empty_when_all_but_one_messages_are_consumed` | `test_rx_is_not_empty_when_all_but_one_messages_are_consumed` | SAME |
//! | 75 | `test_rx_is_empty_when_all_messages_are_consumed` | `test_rx_is_empty_when_all_messages_are_consumed` | SAME |
//! | 76 | `test_rx_is_empty_all_senders_are_dropped_and_messages_consumed` | `test_rx_is_empty_all_senders_are_dropped_and_messages_consumed` | SAME |
//! | 77 | `test_rx_len_on_empty_channel` | `test_rx_len_on_empty_channel` | DIFFERS (tokio's `len()` is `pending()`) |
//! | 78 | `test_rx_len_on_empty_channel_without_senders` | `test_rx_len_on_empty_channel_without_senders` | DIFFERS (tokio's `len()` is `pending()`) |
//! | 79 | `test_rx_len_on_filled_channel` | `test_rx_len_on_filled_channel` | DIFFERS (tokio's `len()` is `pending()`) |
//! | 80 | `test_rx_len_on_filled_channel_without_senders` | `test_rx_len_on_filled_channel_without_senders` | DIFFERS (tokio's `len()` is `pending()`) |
//! | 81 | `test_rx_len_when_consuming_all_messages` | `test_rx_len_when_consuming_all_messages` | DIFFERS (tokio's `len()` is `pending()`) |
//! | 82 | `test_rx_len_when_close_is_called` | `test_rx_len_when_close_is_called` | SAME (was MISSING: `Consumer::close` keeps the queued messages; since `Consumer::close`, `recv_many`) |
//! | 83 | `test_rx_len_when_close_is_called_before_dropping_sender` | `test_rx_len_when_close_is_called_before_dropping_sender` | SAME (was MISSING: `Consumer::close` keeps the queued messages; since `Consumer::close`, `recv_many`) |
//! | 84 | `test_rx_len_when_close_is_called_after_dropping_sender` | `test_rx_len_when_close_is_called_after_dropping_sender` | SAME (was MISSING: `Consumer::close` keeps the queued messages; since `Consumer::close`, `recv_many`) |
//! | 85 | `test_rx_unbounded_is_closed_when_calling_close_with_sender` | `test_rx_unbounded_is_closed_when_calling_close_with_sender` | SAME (was MISSING: `Consumer::close`, `Consumer::is_closed`; no unbounded channel; since `Consumer::close`, `recv_many`) |
//! | 86 | `test_rx_unbounded_is_closed_when_dropping_all_senders` | `test_rx_unbounded_is_closed_when_dropping_all_senders` | SAME (was MISSING: `Consumer::is_closed`; no unbounded channel; since honest close, `is_closed`) |
//! | 87 | `test_rx_unbounded_is_not_closed_when_there_are_senders` | `test_rx_unbounded_is_not_closed_when_there_are_senders` | SAME (was MISSING: `Consumer::is_closed`; no unbounded channel; since honest close, `is_closed`) |
//! | 88 | `test_rx_unbounded_is_closed_when_there_are_no_senders_and_there_are_messages` | `test_rx_unbounded_is_closed_when_there_are_no_senders_and_there_are_messages` | SAME (was MISSING: `Consumer::is_closed`; no unbounded channel; since honest close, `is_closed`) |
//! | 89 | `test_rx_unbounded_is_closed_when_there_are_messages_and_close_is_called` | `test_rx_unbounded_is_closed_when_there_are_messages_and_close_is_called` | SAME (was MISSING: `Consumer::close`, `Consumer::is_closed`; no unbounded channel; since `Consumer::close`, `recv_many`) |
//! | 90 | `test_rx_unbounded_is_empty_when_no_messages_were_sent` | `test_rx_unbounded_is_empty_when_no_messages_were_sent` | DIFFERS (no unbounded channel) |
//! | 91 | `test_rx_unbounded_is_not_empty_when_there_are_messages_in_the_buffer` | `test_rx_unbounded_is_not_empty_when_there_are_messages_in_the_buffer` | DIFFERS (no unbounded channel) |
//! | 92 | `test_rx_unbounded_is_not_empty_when_all_but_one_messages_are_consumed` | `test_rx_unbounded_is_not_empty_when_all_but_one_messages_are_consumed` | DIFFERS (no unbounded channel) |
//! | 93 | `test_rx_unbounded_is_empty_when_all_messages_are_consumed` | `test_rx_unbounded_is_empty_when_all_messages_are_consumed` | DIFFERS (no unbounded channel) |
//! | 94 | `test_rx_unbounded_is_empty_all_senders_are_dropped_and_messages_consumed` | `test_rx_unbounded_is_empty_all_senders_are_dropped_and_messages_consumed` | DIFFERS (no unbounded channel) |
//! | 95 | `test_rx_unbounded_len_on_empty_channel` | `test_rx_unbounded_len_on_empty_channel` | DIFFERS (no unbounded channel; `len()` is `pending()`) |
//! | 96 | `test_rx_unbounded_len_on_empty_channel_without_senders` | `test_rx_unbounded_len_on_empty_channel_without_senders` | DIFFERS (no unbounded channel; `len()` is `pending()`) |
//! | 97 | `test_rx_unbounded_len_with_multiple_messages` | `test_rx_unbounded_len_with_multiple_messages` | DIFFERS (no unbounded channel; `len()` is `pending()`) |
//! | 98 | `test_rx_unbounded_len_with_multiple_messages_and_dropped_senders` | `test_rx_unbounded_len_with_multiple_messages_and_dropped_senders` | DIFFERS (no unbounded channel; `len()` is `pending()`) |
//! | 99 | `test_rx_unbounded_len_when_consuming_all_messages` | `test_rx_unbounded_len_when_consuming_all_messages` | DIFFERS (no unbounded channel; `len()` is `pending()`) |
//! | 100 | `test_rx_unbounded_len_when_close_is_called` | `test_rx_unbounded_len_when_close_is_called` | SAME (was MISSING: `Consumer::close`; no unbounded channel; since `Consumer::close`, `recv_many`) |
//! | 101 | `test_rx_unbounded_len_when_close_is_called_before_dropping_sender` | `test_rx_unbounded_len_when_close_is_called_before_dropping_sender` | SAME (was MISSING: `Consumer::close`; no unbounded channel; since `Consumer::close`, `recv_many`) |
//! | 102 | `test_rx_unbounded_len_when_close_is_called_after_dropping_sender` | `test_rx_unbounded_len_when_close_is_called_after_dropping_sender` | SAME (was MISSING: `Consumer::close`; no unbounded channel; since `Consumer::close`, `recv_many`) |
//! | 103 | `test_is_empty_32_msgs` | `test_is_empty_32_msgs` | SAME (wrap-around of a 33-slot ring) |
//! | 104 | `drop_all_elements_during_panic` | `drop_all_elements_during_panic` | DIFFERS (messages are bytes: no destructors run; a consumer that panics mid-stream leaves, and the producer then sees `Closed` on a full ring) |
//! | 105 | `release_waker_on_rx_drop` | `release_waker_on_rx_drop` | SAME (dropping the consumer releases the waker its pending `recv` registered) |
//!
//! Totals: 105 cases: 70 SAME, 30 DIFFERS-DOCUMENTED, 5 MISSING (ignored). (When ported:
//! 22 / 30 / 53; issue 12's honest close, `is_closed()`, `Consumer::close()`, `recv_many`,
//! async `reserve_many` and the closed check of `try_reserve_many` turned 48 MISSING into
//! SAME.)

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use common::ShmName;
use futures::{FutureExt, StreamExt};
use shmchan::channel::{Consumer, Flavour};
use shmchan::{
    Error, Message, Options, SendTimeoutError, TryRecvError, TrySendError, WaitStrategy, mpsc, spsc,
};

/// A generous bound for things that must happen (never a sleep: only an upper limit).
const BOUND: Duration = Duration::from_secs(5);

fn opts(cap: usize) -> Options {
    common::opts(64, cap, Some(Duration::from_secs(60))).wait_strategy(WaitStrategy::park_only())
}

/// An MPSC channel of `cap` slots: (name, producer, consumer).
fn chan(tag: &str, cap: usize) -> (ShmName, mpsc::Producer, mpsc::Consumer) {
    let name = ShmName::new(tag);
    let rx = mpsc::Consumer::create(name.as_str(), opts(cap)).unwrap();
    let tx = mpsc::Producer::open(name.as_str(), opts(cap)).unwrap();
    (name, tx, rx)
}

/// Another producer on the channel (tokio's `tx.clone()`).
fn clone_tx(name: &ShmName) -> mpsc::Producer {
    mpsc::Producer::open(name.as_str(), opts(2)).unwrap()
}

/// An SPSC channel (for the chunk APIs, which only SPSC has, and for capacity 1).
fn spsc_chan(tag: &str, cap: usize) -> (ShmName, spsc::Producer, spsc::Consumer) {
    let name = ShmName::new(tag);
    let rx = spsc::Consumer::create(name.as_str(), opts(cap)).unwrap();
    let tx = spsc::Producer::open(name.as_str(), opts(cap)).unwrap();
    (name, tx, rx)
}

fn b(i: i32) -> [u8; 4] {
    i.to_le_bytes()
}

fn v(m: Message) -> i32 {
    i32::from_le_bytes(m[..].try_into().expect("a 4-byte message"))
}

fn is_closed_err(r: &Result<Message, Error>) -> bool {
    matches!(r, Err(Error::Closed))
}

/// What [`chan`] returns.
type Chan = (ShmName, mpsc::Producer, mpsc::Consumer);

/// Which tokio channel a case stands for: `channel(n)`, whose `send` waits, or
/// `unbounded_channel()`, whose `send` never waits (here: `try_send` on a ring with room for
/// every message the case sends, [`UNBOUNDED_CAP`]).
#[derive(Clone, Copy, Debug)]
enum Kind {
    Bounded,
    Unbounded,
}

/// The capacity that stands for tokio's unbounded channel.
const UNBOUNDED_CAP: usize = 128;

impl Kind {
    /// Sends `msg` the way this kind's tokio `send` does; panics if it fails.
    async fn put<M: AsRef<[u8]> + Unpin>(self, tx: &mut mpsc::Producer, msg: M) {
        match self {
            Kind::Bounded => tx.send(msg).await.unwrap(),
            Kind::Unbounded => match tx.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => panic!("try_send: full"),
                Err(TrySendError::Closed(_)) => panic!("try_send: closed"),
                Err(TrySendError::Other(_, e)) => panic!("try_send: {e}"),
            },
        }
    }

    /// Sends the messages `0..n`.
    async fn fill(self, tx: &mut mpsc::Producer, n: i32) {
        for i in 0..n {
            self.put(tx, b(i)).await;
        }
    }
}

/// One test per tokio channel kind for a case written once: `bounded("tag", cap), unbounded("tag")
/// => case;` makes `#[tokio::test] bounded` running `case` on a `cap`-slot channel with
/// [`Kind::Bounded`], and `unbounded` running it on an [`UNBOUNDED_CAP`]-slot one with
/// [`Kind::Unbounded`]. Attributes (docs, `#[ignore]`) before a name go to that test.
macro_rules! flavours {
    ($(
        $(#[$bm:meta])* $bounded:ident($btag:literal, $bcap:expr),
        $(#[$um:meta])* $unbounded:ident($utag:literal) => $case:ident;
    )*) => {$(
        $(#[$bm])*
        #[tokio::test]
        async fn $bounded() {
            $case(chan($btag, $bcap), Kind::Bounded).await
        }

        $(#[$um])*
        #[tokio::test]
        async fn $unbounded() {
            $case(chan($utag, UNBOUNDED_CAP), Kind::Unbounded).await
        }
    )*};
}

/// Records wake-ups (tokio_test's `is_woken`), and lets the test await one.
#[derive(Default)]
struct Flag {
    woken: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }
}

/// A future polled by hand (tokio_test's `task::spawn`).
struct Task<F: Future> {
    fut: Pin<Box<F>>,
    flag: Arc<Flag>,
    waker: Waker,
}

impl<F: Future> Task<F> {
    fn new(fut: F) -> Self {
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        Task {
            fut: Box::pin(fut),
            flag,
            waker,
        }
    }
    fn poll(&mut self) -> Poll<F::Output> {
        self.flag.woken.store(false, Ordering::SeqCst);
        let mut cx = Context::from_waker(&self.waker);
        self.fut.as_mut().poll(&mut cx)
    }
    fn is_woken_now(&self) -> bool {
        self.flag.woken.load(Ordering::SeqCst)
    }
    /// Whether a wake-up arrives within [`BOUND`] (the reactor runs while we wait).
    async fn woken(&self) -> bool {
        tokio::time::timeout(BOUND, async {
            while !self.is_woken_now() {
                self.flag.notify.notified().await;
            }
        })
        .await
        .is_ok()
    }
}

/// Polls a `recv` of `rx`, which must be pending, then runs `act`, which must wake it
/// within [`BOUND`]; returns what the woken `recv` gives.
async fn recv_woken_by<F: Flavour>(
    rx: &mut Consumer<F>,
    act: impl FnOnce(),
) -> Poll<Result<Message, Error>> {
    let mut recv = Task::new(rx.recv());
    assert!(recv.poll().is_pending());
    act();
    assert!(recv.woken().await);
    recv.poll()
}

/// After a close: the one queued message is `first`, then `recv` is `Closed` at once.
async fn drains_then_closed<F: Flavour>(rx: &mut Consumer<F>, first: i32) {
    assert_eq!(v(rx.recv().await.unwrap()), first);
    let mut recv = Task::new(rx.recv());
    assert!(matches!(recv.poll(), Poll::Ready(Err(Error::Closed))));
}

// ---------------------------------------------------------------------------------------------

/// parity: SAME
#[tokio::test]
async fn send_recv_with_buffer() {
    let (_n, mut tx, mut rx) = chan("p-srwb", 16);
    let mut permit = tx.try_reserve().unwrap().expect("a free slot");
    permit.write(0, &b(1)).unwrap();
    permit.commit(4).unwrap();
    tx.try_send(b(2)).unwrap();
    drop(tx);
    assert_eq!(v(rx.recv().await.unwrap()), 1);
    assert_eq!(v(rx.recv().await.unwrap()), 2);
    assert!(is_closed_err(&rx.recv().await));
}

/// parity: MISSING (a dropped reservation (mpsc) frees its slot only when the consumer reaches it, and wakes no waiting sender)
#[tokio::test]
#[ignore = "MISSING: a dropped mpsc reservation frees its slot and wakes a waiting sender, issue 12"]
async fn reserve_disarm() {
    let (name, mut tx1, mut rx) = chan("p-rdis", 2);
    let mut tx2 = clone_tx(&name);
    let mut tx3 = clone_tx(&name);
    let mut tx4 = clone_tx(&name);
    let permit1 = tx1.try_reserve().unwrap().expect("slot 1");
    let permit2 = tx2.try_reserve().unwrap().expect("slot 2");
    let mut r3 = Task::new(tx3.send(b(3)));
    assert!(r3.poll().is_pending());
    let mut r4 = Task::new(tx4.send(b(4)));
    assert!(r4.poll().is_pending());
    let mut permit1 = permit1;
    permit1.write(0, &b(1)).unwrap();
    permit1.commit(4).unwrap();
    // Using one reserved slot and receiving it frees a slot: one waiting sender gets it.
    assert_eq!(v(rx.recv().await.unwrap()), 1);
    let (mut done3, mut done4) = (false, false);
    let t0 = std::time::Instant::now();
    while !(done3 || done4) && t0.elapsed() < BOUND {
        tokio::task::yield_now().await;
        done3 = r3.poll().is_ready();
        done4 = !done3 && r4.poll().is_ready();
    }
    assert!(
        done3 ^ done4,
        "exactly one waiting sender got the freed slot"
    );
    let mut other = if done3 { r4 } else { r3 };
    assert!(other.poll().is_pending(), "no second free slot yet");
    // Dropping the other reservation opens a slot at once, without the consumer reading:
    // the remaining waiting sender is woken and completes.
    drop(permit2);
    assert!(
        other.woken().await,
        "a dropped reservation wakes a waiting sender"
    );
    assert!(matches!(other.poll(), Poll::Ready(Ok(()))));
}

async fn case_send_recv_stream(c: Chan, k: Kind) {
    let (_n, mut tx, mut rx) = c;
    let h = tokio::spawn(async move {
        k.put(&mut tx, b(1)).await;
        k.put(&mut tx, b(2)).await;
    });
    assert_eq!(v(rx.next().await.unwrap().unwrap()), 1);
    assert_eq!(v(rx.next().await.unwrap().unwrap()), 2);
    assert!(rx.next().await.is_none());
    h.await.unwrap();
}

flavours! {
    /// parity: SAME (the Stream yields `Some(Ok(msg))`, then `None` after a clean close)
    send_recv_stream_with_buffer("p-srswb", 16),
    /// parity: DIFFERS (no unbounded channel: bounded with room for every message)
    send_recv_stream_unbounded("p-srsu") => case_send_recv_stream;
}

async fn case_async_send_recv(c: Chan, k: Kind) {
    let (_n, mut tx, mut rx) = c;
    let h = tokio::spawn(async move {
        k.put(&mut tx, b(1)).await;
        k.put(&mut tx, b(2)).await;
    });
    assert_eq!(v(rx.recv().await.unwrap()), 1);
    assert_eq!(v(rx.recv().await.unwrap()), 2);
    assert!(is_closed_err(&rx.recv().await));
    h.await.unwrap();
}

flavours! {
    /// parity: SAME
    async_send_recv_with_buffer("p-asrwb", 16),
    /// parity: DIFFERS (no unbounded channel: bounded with room for every message)
    async_send_recv_unbounded("p-asru") => case_async_send_recv;
}

/// parity: MISSING (`Consumer::recv_many`)
#[tokio::test]
async fn async_send_recv_many_with_buffer() {
    let (_n, mut tx, mut rx) = chan("p-asrmwb", 2);
    let mut buffer = Vec::with_capacity(3);
    assert_eq!(0, rx.recv_many(&mut buffer, 0).await.unwrap());
    let h = tokio::spawn(async move {
        for i in [1, 2, 7, 0] {
            tx.send(b(i)).await.unwrap();
        }
    });
    let mut count = 0;
    while count < 4 {
        count += rx.recv_many(&mut buffer, 3).await.unwrap();
        assert_eq!(buffer.len(), count);
    }
    let got: Vec<i32> = buffer.into_iter().map(v).collect();
    assert_eq!(got, [1, 2, 7, 0]);
    let mut rest = Vec::new();
    assert_eq!(0, rx.recv_many(&mut rest, 3).await.unwrap());
    h.await.unwrap();
}

/// parity: SAME (a cancelled waiting send gives its turn away: the other waiting sender is woken, the cancelled one not)
#[tokio::test]
async fn start_send_past_cap() {
    let (name, mut tx1, mut rx) = chan("p-sspc", 2);
    let mut tx2 = clone_tx(&name);
    tx1.try_send(b(0)).unwrap();
    tx1.try_send(b(0)).unwrap(); // full (MPSC needs 2 slots; tokio uses 1)
    {
        let mut r1 = Task::new(tx1.send(b(1)));
        assert!(r1.poll().is_pending());
        let mut r2 = Task::new(tx2.send(b(2)));
        assert!(r2.poll().is_pending());
        drop(r1);
        assert!(rx.recv().await.is_ok());
        assert!(r2.woken().await);
        assert!(r2.poll().is_ready());
    }
    drop(tx1);
    drop(tx2);
    assert!(rx.recv().await.is_ok());
    assert!(rx.recv().await.is_ok());
    assert!(is_closed_err(&rx.recv().await));
}

/// parity: DIFFERS (a zero capacity is an `InvalidArgument` error, not a panic; MPSC needs 2 slots)
#[test]
fn buffer_gteq_one() {
    let name = ShmName::new("p-bg1");
    let e = mpsc::Consumer::create(name.as_str(), opts(0)).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let e = mpsc::Consumer::create(name.as_str(), opts(1)).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    assert!(!name.exists());
}

/// parity: DIFFERS (no unbounded channel in shared memory: a bounded one with room for every message)
#[tokio::test]
async fn send_recv_unbounded() {
    let (_n, mut tx, mut rx) = chan("p-sru", 128);
    tx.try_send(b(1)).unwrap();
    tx.try_send(b(2)).unwrap();
    assert_eq!(v(rx.recv().await.unwrap()), 1);
    assert_eq!(v(rx.recv().await.unwrap()), 2);
    drop(tx);
    assert!(is_closed_err(&rx.recv().await));
}

/// parity: MISSING (`Consumer::recv_many`; no unbounded channel: bounded with room for all)
#[tokio::test]
async fn send_recv_many_unbounded() {
    let (_n, mut tx, mut rx) = chan("p-srmu", 128);
    let mut buffer: Vec<Message> = Vec::new();
    assert_eq!(0, rx.recv_many(&mut buffer, 0).await.unwrap());
    for i in [7, 13, 100, 1002] {
        tx.try_send(b(i)).unwrap();
    }
    assert_eq!(0, rx.recv_many(&mut buffer, 0).await.unwrap());
    assert!(buffer.is_empty());
    let mut count = 0;
    while count < 4 {
        count += rx.recv_many(&mut buffer, 1).await.unwrap();
    }
    assert_eq!(count, 4);
    let got: Vec<i32> = buffer.drain(..).map(v).collect();
    assert_eq!(got, [7, 13, 100, 1002]);
    let cap = buffer.capacity();
    for i in [5, 6, 7, 2] {
        tx.try_send(b(i)).unwrap();
    }
    assert_eq!(4, rx.recv_many(&mut buffer, 32).await.unwrap());
    assert_eq!(cap, buffer.capacity(), "recv_many reuses the buffer");
    let got: Vec<i32> = buffer.drain(..).map(v).collect();
    assert_eq!(got, [5, 6, 7, 2]);
    drop(tx);
    assert_eq!(0, rx.recv_many(&mut buffer, 4).await.unwrap());
    assert!(is_closed_err(&rx.recv().await));
}

/// parity: MISSING (`Consumer::recv_many`)
#[tokio::test]
async fn send_recv_many_bounded_capacity() {
    recv_many_capacity("p-srmbc").await;
}

/// parity: MISSING (`Consumer::recv_many`; no unbounded channel: bounded with room for all)
#[tokio::test]
async fn send_recv_many_unbounded_capacity() {
    recv_many_capacity("p-srmuc").await;
}

async fn recv_many_capacity(tag: &str) {
    let mut buffer: Vec<Message> = Vec::with_capacity(9);
    let limit = buffer.capacity();
    let (_n, mut tx, mut rx) = chan(tag, 100);
    let mut expected: Vec<Vec<u8>> = (0..limit).map(|x| format!("{x}").into_bytes()).collect();
    for x in &expected {
        tx.send(x.as_slice()).await.unwrap();
    }
    tx.send(&b"one more"[..]).await.unwrap();
    assert_eq!(limit, rx.recv_many(&mut buffer, limit).await.unwrap());
    assert_eq!(limit, buffer.capacity());
    assert_eq!(1, rx.recv_many(&mut buffer, limit).await.unwrap());
    expected.push(b"one more".to_vec());
    let h = tokio::spawn(async move {
        tx.send(&b"final"[..]).await.unwrap();
    });
    assert_eq!(1, rx.recv_many(&mut buffer, limit).await.unwrap());
    expected.push(b"final".to_vec());
    h.await.unwrap();
    assert_eq!(0, rx.recv_many(&mut buffer, limit).await.unwrap());
    let got: Vec<Vec<u8>> = buffer.into_iter().map(Message::into_vec).collect();
    assert_eq!(expected, got);
}

async fn case_recv_many_with_non_empty_buffer_rx_closed_and_idle(c: Chan, _k: Kind) {
    let (_n, _tx, mut rx) = c;
    let mut buffer = vec![Message::copy_from(&b(1))];
    rx.close();
    assert_eq!(0, rx.recv_many(&mut buffer, 1).await.unwrap());
    assert_eq!(buffer.len(), 1);
    assert_eq!(v(buffer.pop().unwrap()), 1);
}

flavours! {
    /// parity: MISSING (`Consumer::close`, `Consumer::recv_many`)
    recv_many_with_non_empty_buffer_bounded_rx_closed_and_idle("p-rmnebc", 2),
    /// parity: MISSING (`Consumer::close`, `Consumer::recv_many`; no unbounded channel)
    recv_many_with_non_empty_buffer_unbounded_rx_closed_and_idle("p-rmneuc")
        => case_recv_many_with_non_empty_buffer_rx_closed_and_idle;
}

async fn case_no_t_bounds(c: Chan, k: Kind) {
    struct NoImpls([u8; 3]);
    impl AsRef<[u8]> for NoImpls {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    let (_n, mut tx, mut rx) = c;
    // sender is Debug, receiver is Debug
    let _ = format!("{tx:?} {rx:?}");
    let bytes = match k {
        Kind::Bounded => [1, 2, 3],
        Kind::Unbounded => [4, 5, 6],
    };
    k.put(&mut tx, NoImpls(bytes)).await;
    assert_eq!(&rx.recv().await.unwrap()[..], bytes);
}

flavours! {
    /// parity: DIFFERS (messages are bytes, not `T`: any `AsRef<[u8]>` sends, even a type without Debug/Clone/Send bounds)
    no_t_bounds_buffer("p-ntbb", 100),
    /// parity: DIFFERS (no unbounded channel; messages are bytes, not `T`)
    no_t_bounds_unbounded("p-ntbu") => case_no_t_bounds;
}

/// parity: SAME (capacity 1: an SPSC ring; a waiting send is woken when the consumer frees the slot)
#[tokio::test]
async fn send_recv_buffer_limited() {
    let (_n, mut tx, mut rx) = spsc_chan("p-srbl", 1);
    let mut p1 = tx.try_reserve().unwrap().expect("the slot");
    p1.write(0, &b(1)).unwrap();
    p1.commit(4).unwrap();
    {
        let mut p2 = Task::new(tx.send(b(2)));
        assert!(p2.poll().is_pending());
        assert_eq!(v(rx.recv().await.unwrap()), 1);
        assert!(p2.woken().await);
        assert!(matches!(p2.poll(), Poll::Ready(Ok(()))));
    }
    assert!(matches!(tx.try_send(b(1337)), Err(TrySendError::Full(_))));
    assert_eq!(v(rx.recv().await.unwrap()), 2);
}

/// parity: MISSING (`Consumer::close`: no new sends, queued messages drain, then `Closed`)
#[tokio::test]
async fn recv_close_gets_none_idle() {
    let (_n, mut tx, mut rx) = chan("p-rcgni", 10);
    rx.close();
    assert!(is_closed_err(&rx.recv().await));
    let e = tx.send(b(1)).await.unwrap_err();
    assert!(matches!(e, Error::Closed), "{e:?}");
}

/// parity: MISSING (`Consumer::close` wakes waiting senders with `Closed`; a reservation taken before the close still delivers)
#[tokio::test]
async fn recv_close_gets_none_reserved() {
    let (name, mut tx1, mut rx) = chan("p-rcgnr", 2);
    let mut tx2 = clone_tx(&name);
    tx2.try_send(b(0)).unwrap(); // MPSC needs 2 slots: one is taken here
    let mut permit1 = tx1.try_reserve().unwrap().expect("the last slot");
    {
        let mut permit2 = Task::new(tx2.send(b(9)));
        assert!(permit2.poll().is_pending());
        rx.close();
        assert!(permit2.woken().await);
        match permit2.poll() {
            Poll::Ready(Err(e)) => assert!(matches!(e, Error::Closed), "{e:?}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(v(rx.recv().await.unwrap()), 0);
    let got = recv_woken_by(&mut rx, || {
        permit1.write(0, &b(123)).unwrap();
        permit1.commit(4).unwrap();
    });
    match got.await {
        Poll::Ready(Ok(m)) => assert_eq!(v(m), 123),
        other => panic!("{other:?}"),
    }
    assert!(is_closed_err(&rx.recv().await));
}

/// What a case does with the reservation left waiting when the consumer closes: the close
/// wakes it and it fails with `Closed`, or the case cancels it (drops the future).
#[derive(Clone, Copy, Debug)]
enum Waiting {
    Fails,
    Cancelled,
}

impl Waiting {
    /// Closes `rx` under the waiting `reserve` and checks (or cancels) it per `self`.
    async fn close_under<F: Flavour, T: std::fmt::Debug, Fut: Future<Output = Result<T, Error>>>(
        self,
        rx: &mut Consumer<F>,
        mut reserve: Task<Fut>,
    ) {
        rx.close();
        match self {
            Waiting::Fails => {
                assert!(reserve.woken().await);
                match reserve.poll() {
                    Poll::Ready(Err(e)) => assert!(matches!(e, Error::Closed), "{e:?}"),
                    other => panic!("{other:?}"),
                }
            }
            Waiting::Cancelled => drop(reserve),
        }
    }
}

/// An async `reserve_many` waiting for the slot one queued message holds, then the close.
async fn reserve_many_wakes_closed_receiver(tag: &str, waiting: Waiting) {
    let (_n, mut tx, mut rx) = spsc_chan(tag, 2);
    tx.try_send(b(0)).unwrap(); // holds one of the two slots
    let mut reserve = Task::new(tx.reserve_many(2));
    assert!(reserve.poll().is_pending());
    waiting.close_under(&mut rx, reserve).await;
    drains_then_closed(&mut rx, 0).await;
}

/// A waiting send (tokio's waiting `reserve`) of a second producer, the last slot reserved
/// and released, then the close.
async fn reserve_wakes_closed_receiver(tag: &str, waiting: Waiting) {
    let (name, mut tx1, mut rx) = chan(tag, 2);
    let mut tx2 = clone_tx(&name);
    tx1.try_send(b(0)).unwrap();
    let permit = tx1.try_reserve().unwrap().expect("the last slot");
    let mut reserve = Task::new(tx2.send(b(1)));
    assert!(reserve.poll().is_pending());
    drop(permit);
    waiting.close_under(&mut rx, reserve).await;
    drains_then_closed(&mut rx, 0).await;
}

/// parity: MISSING (async `reserve_many`, `Consumer::close`)
#[tokio::test]
async fn failed_reserve_many_wakes_closed_receiver() {
    reserve_many_wakes_closed_receiver("p-frmwcr", Waiting::Fails).await;
}

/// parity: MISSING (async `reserve_many`, `Consumer::close`)
#[tokio::test]
async fn cancelled_reserve_many_wakes_closed_receiver() {
    reserve_many_wakes_closed_receiver("p-crmwcr", Waiting::Cancelled).await;
}

/// parity: MISSING (`Consumer::close`: a waiting send fails with `Closed`, and the consumer then ends)
#[tokio::test]
async fn failed_reserve_wakes_closed_receiver() {
    reserve_wakes_closed_receiver("p-frwcr", Waiting::Fails).await;
}

/// parity: MISSING (`Consumer::close`)
#[tokio::test]
async fn cancelled_reserve_wakes_closed_receiver() {
    reserve_wakes_closed_receiver("p-crwcr", Waiting::Cancelled).await;
}

/// parity: SAME (a producer that attached and left: the consumer gets `Closed`)
#[tokio::test]
async fn tx_close_gets_none() {
    let (_n, tx, mut rx) = chan("p-tcgn", 10);
    drop(tx);
    assert!(is_closed_err(&rx.recv().await));
}

/// parity: SAME (capacity 1: an SPSC ring)
#[tokio::test]
async fn try_send_fail() {
    let (_n, mut tx, mut rx) = spsc_chan("p-tsf", 1);
    tx.try_send(&b"hello"[..]).unwrap();
    match tx.try_send(&b"fail"[..]) {
        Err(TrySendError::Full(m)) => assert_eq!(m, b"fail"),
        other => panic!("{other:?}"),
    }
    assert_eq!(&rx.recv().await.unwrap()[..], b"hello");
    tx.try_send(&b"goodbye"[..]).unwrap();
    drop(tx);
    assert_eq!(&rx.recv().await.unwrap()[..], b"goodbye");
    assert!(is_closed_err(&rx.recv().await));
}

/// parity: SAME (capacity 1: an SPSC ring)
#[tokio::test]
async fn try_send_fail_with_try_recv() {
    let (_n, mut tx, mut rx) = spsc_chan("p-tsfwtr", 1);
    tx.try_send(&b"hello"[..]).unwrap();
    assert!(matches!(
        tx.try_send(&b"fail"[..]),
        Err(TrySendError::Full(_))
    ));
    assert_eq!(&rx.try_recv().unwrap()[..], b"hello");
    tx.try_send(&b"goodbye"[..]).unwrap();
    drop(tx);
    assert_eq!(&rx.try_recv().unwrap()[..], b"goodbye");
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Closed)));
}

/// parity: MISSING (async `reserve_many`: more than the capacity is an error, never a wait)
#[tokio::test]
async fn reserve_many_above_cap() {
    let (_n, mut tx, _rx) = spsc_chan("p-rmac", 1);
    assert!(tx.reserve_many(2).await.is_err());
    assert!(tx.reserve_many(usize::MAX).await.is_err());
}

/// parity: MISSING (`try_reserve_many` ignores a closed channel: should be `Closed`)
#[test]
fn try_reserve_many_zero() {
    let (_n, mut tx, rx) = spsc_chan("p-trmz", 1);
    assert_eq!(tx.try_reserve_many(0).unwrap().len(), 0);
    tx.try_send(b(0)).unwrap();
    assert_eq!(tx.try_reserve_many(0).unwrap().len(), 0);
    drop(rx);
    assert!(matches!(tx.try_reserve_many(0), Err(Error::Closed)));
}

/// parity: MISSING (async `reserve_many`)
#[tokio::test]
async fn reserve_many_zero() {
    let (_n, mut tx, rx) = spsc_chan("p-rmz", 1);
    assert_eq!(tx.reserve_many(0).await.unwrap().len(), 0);
    tx.send(b(0)).await.unwrap();
    assert_eq!(tx.reserve_many(0).await.unwrap().len(), 0);
    drop(rx);
    assert!(matches!(tx.reserve_many(0).await, Err(Error::Closed)));
}

/// parity: DIFFERS (`try_reserve_many(n)` is rtrb's chunk: up to `n` slots, fewer when fewer are free, instead of `Full`)
#[test]
fn try_reserve_many_edge_cases() {
    let (_n, mut tx, _rx) = spsc_chan("p-trmec", 1);
    assert_eq!(tx.try_reserve_many(0).unwrap().len(), 0);
    assert_eq!(tx.try_reserve_many(2).unwrap().len(), 1);
    assert_eq!(tx.try_reserve_many(usize::MAX).unwrap().len(), 1);
    tx.try_send(b(0)).unwrap();
    assert_eq!(tx.try_reserve_many(usize::MAX).unwrap().len(), 0);
}

/// parity: SAME (a dropped SPSC reservation frees its slot at once)
#[tokio::test]
async fn try_reserve_fails() {
    let (_n, mut tx, mut rx) = spsc_chan("p-trf", 1);
    {
        let mut permit = tx.try_reserve().unwrap().expect("the slot");
        permit.write(0, b"foo").unwrap();
        permit.commit(3).unwrap();
    }
    assert!(tx.try_reserve().unwrap().is_none(), "full");
    assert_eq!(&rx.recv().await.unwrap()[..], b"foo");
    let permit = tx.try_reserve().unwrap().expect("the slot again");
    drop(permit);
    let _permit = tx.try_reserve().unwrap().expect("freed by the drop");
}

/// parity: MISSING (async `reserve_many`)
#[tokio::test]
async fn reserve_many_and_send() {
    let (_n, mut tx, mut rx) = spsc_chan("p-rmas", 100);
    for i in 0..100 {
        let mut chunk = tx.reserve_many(i).await.unwrap();
        assert_eq!(chunk.len(), i);
        for k in 0..i {
            chunk.write(k, b"foo").unwrap();
        }
        chunk.commit(i);
        for _ in 0..i {
            assert_eq!(&rx.recv().await.unwrap()[..], b"foo");
        }
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    }
}

/// parity: SAME (SPSC chunks)
#[tokio::test]
async fn try_reserve_many_and_send() {
    let (_n, mut tx, mut rx) = spsc_chan("p-trmas", 100);
    for i in 0..100 {
        let mut chunk = tx.try_reserve_many(i).unwrap();
        assert_eq!(chunk.len(), i);
        for k in 0..i {
            chunk.write(k, b"foo").unwrap();
        }
        chunk.commit(i);
        for _ in 0..i {
            assert_eq!(&rx.recv().await.unwrap()[..], b"foo");
        }
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    }
}

/// parity: MISSING (async `reserve_many`)
#[tokio::test]
async fn reserve_many_on_closed_channel() {
    let (_n, mut tx, rx) = spsc_chan("p-rmocc", 100);
    drop(rx);
    assert!(matches!(tx.reserve_many(10).await, Err(Error::Closed)));
}

/// parity: MISSING (`try_reserve_many` ignores a closed channel: should be `Closed`)
#[test]
fn try_reserve_many_on_closed_channel() {
    let (_n, mut tx, rx) = spsc_chan("p-trmocc", 100);
    drop(rx);
    assert!(matches!(tx.try_reserve_many(10), Err(Error::Closed)));
}

/// parity: DIFFERS (`try_reserve_many` gives as many slots as are free rather than `Full`; `available()` is tokio's `capacity()`)
#[tokio::test]
async fn try_reserve_many_full() {
    for n in 1..20 {
        for k in 0..n {
            let (_n, mut tx, mut rx) = spsc_chan("p-trmf", n);
            {
                let mut chunk = tx.try_reserve_many(n).unwrap();
                assert_eq!(chunk.len(), n);
                for i in 0..k {
                    chunk.write(i, &b(0)).unwrap();
                }
                chunk.commit(k);
            }
            assert_eq!(tx.available(), n - k);
            assert_eq!(tx.try_reserve_many(n - k + 1).unwrap().len(), n - k);
            for _ in 0..k {
                assert_eq!(v(rx.recv().await.unwrap()), 0);
            }
            assert_eq!(tx.available(), n);
        }
    }
}

/// parity: MISSING (a dropped mpsc reservation frees its slot only when the consumer reaches it and wakes no waiting sender)
#[tokio::test]
#[ignore = "MISSING: a dropped mpsc reservation frees its slot and wakes a waiting sender, issue 12"]
async fn drop_permit_releases_permit() {
    let (name, mut tx1, _rx) = chan("p-dprp", 2);
    let mut tx2 = clone_tx(&name);
    tx2.try_send(b(0)).unwrap(); // MPSC needs 2 slots: one is taken here
    let permit = tx1.try_reserve().unwrap().expect("the last slot");
    let mut reserve2 = Task::new(tx2.send(b(2)));
    assert!(reserve2.poll().is_pending());
    drop(permit);
    assert!(reserve2.woken().await);
    assert!(matches!(reserve2.poll(), Poll::Ready(Ok(()))));
}

/// parity: MISSING (async `reserve_many`)
#[tokio::test]
async fn drop_permit_iterator_releases_permits() {
    // One SPSC producer: the second waiter is the same handle after the chunk is dropped.
    for n in 1..20 {
        let (_n, mut tx, _rx) = spsc_chan("p-dpirp", n);
        let chunk = tx.try_reserve_many(n).unwrap();
        assert_eq!(chunk.len(), n);
        drop(chunk);
        assert_eq!(tx.reserve_many(n).now_or_never().unwrap().unwrap().len(), n);
        assert_eq!(tx.available(), n);
    }
}

/// parity: MISSING (`Consumer::close`; a dropped reservation then ends the drained stream)
#[tokio::test]
async fn dropping_last_permit_wakes_closed_receiver() {
    let (_n, mut tx, mut rx) = chan("p-dlpwcr", 100);
    let permit = tx.try_reserve().unwrap().expect("a slot");
    rx.close();
    let got = recv_woken_by(&mut rx, || drop(permit)).await;
    assert!(matches!(got, Poll::Ready(Err(Error::Closed))));
}

/// parity: MISSING (`Consumer::close`; no owned permits: a `WriteSlot` borrows its producer, so this is dropping_last_permit_wakes_closed_receiver)
#[tokio::test]
async fn dropping_last_owned_permit_wakes_closed_receiver() {
    let (_n, mut tx, mut rx) = chan("p-dlopwcr", 100);
    let permit = tx.try_reserve().unwrap().expect("a slot");
    rx.close();
    let got = recv_woken_by(&mut rx, || drop(permit)).await;
    assert!(matches!(got, Poll::Ready(Err(Error::Closed))));
}

/// parity: MISSING (`Consumer::close`; the SPSC chunk is the permit iterator)
#[tokio::test]
#[ignore = "MISSING: Consumer::close, issue 12"]
async fn dropping_last_permit_iterator_wakes_closed_receiver() {
    let (_n, mut tx, mut rx) = spsc_chan("p-dlpiwcr", 100);
    let chunk = tx.try_reserve_many(1).unwrap();
    rx.close();
    let got = recv_woken_by(&mut rx, || drop(chunk)).await;
    assert!(matches!(got, Poll::Ready(Err(Error::Closed))));
}

/// parity: MISSING (`Consumer::close`: a reservation taken before the close still delivers)
#[tokio::test]
async fn sending_last_permit_wakes_closed_receiver() {
    let (_n, mut tx, mut rx) = chan("p-slpwcr", 100);
    let mut permit = tx.try_reserve().unwrap().expect("a slot");
    rx.close();
    let got = recv_woken_by(&mut rx, || {
        permit.write(0, &b(5)).unwrap();
        permit.commit(4).unwrap();
    });
    match got.await {
        Poll::Ready(Ok(m)) => assert_eq!(v(m), 5),
        other => panic!("{other:?}"),
    }
}

/// parity: MISSING (`Consumer::close`; no owned permits, so this is sending_last_permit_wakes_closed_receiver)
#[tokio::test]
async fn sending_last_owned_permit_wakes_closed_receiver() {
    let (_n, mut tx, mut rx) = chan("p-slopwcr", 100);
    let mut permit = tx.try_reserve().unwrap().expect("a slot");
    rx.close();
    let got = recv_woken_by(&mut rx, || {
        permit.write(0, &b(6)).unwrap();
        permit.commit(4).unwrap();
    });
    assert!(matches!(got.await, Poll::Ready(Ok(_))));
}

/// parity: MISSING (`Consumer::close`; no `OwnedPermit::release`: the `Sink`'s `poll_close` releases its `poll_ready` reservation)
#[tokio::test]
async fn releasing_last_owned_permit_wakes_closed_receiver() {
    let (_n, mut tx, mut rx) = chan("p-rlopwcr", 100);
    futures::future::poll_fn(|cx| futures::Sink::<&[u8]>::poll_ready(Pin::new(&mut tx), cx))
        .await
        .unwrap();
    rx.close();
    let mut recv = Task::new(rx.recv());
    assert!(recv.poll().is_pending());
    futures::future::poll_fn(|cx| futures::Sink::<&[u8]>::poll_close(Pin::new(&mut tx), cx))
        .await
        .unwrap();
    assert!(recv.woken().await);
    assert!(matches!(recv.poll(), Poll::Ready(Err(Error::Closed))));
}

/// parity: MISSING (`Closed` right after the consumer leaves, not only once the ring is full; no `reserve`/`reserve_many` futures: `send` and the `Sink`)
#[tokio::test]
async fn dropping_rx_closes_channel() {
    let (_n, mut tx, rx) = chan("p-drcc", 100);
    tx.try_send(b(1)).unwrap();
    drop(rx);
    let e = tx.send(b(2)).await.unwrap_err();
    assert!(matches!(e, Error::Closed), "{e:?}");
    let e =
        futures::future::poll_fn(|cx| futures::Sink::<&[u8]>::poll_ready(Pin::new(&mut tx), cx))
            .await
            .unwrap_err();
    assert!(matches!(e, Error::Closed), "{e:?}");
}

/// parity: MISSING (`try_send` / `try_reserve` return `Ok` after the consumer left until the ring fills; docs say `Closed`)
#[test]
fn dropping_rx_closes_channel_for_try() {
    let (_n, mut tx, rx) = chan("p-drccft", 100);
    tx.try_send(b(1)).unwrap();
    drop(rx);
    assert!(matches!(tx.try_send(b(2)), Err(TrySendError::Closed(_))));
    assert!(matches!(tx.try_reserve(), Err(Error::Closed)));
}

/// parity: DIFFERS (messages are bytes with no destructor; a message queued when everyone left stays in the segment, which keeps its name, documented `Unlink::LastOut`)
#[test]
fn unconsumed_messages_are_dropped() {
    let (name, mut tx, rx) = chan("p-umad", 100);
    tx.try_send(b(1)).unwrap();
    assert_eq!(rx.pending(), 1);
    drop((tx, rx));
    assert!(
        name.exists(),
        "a queued message keeps the name for a later consumer"
    );
}

/// parity: SAME
#[test]
fn blocking_recv() {
    let (_n, mut tx, mut rx) = chan("p-br", 2);
    let sync_code = std::thread::spawn(move || v(rx.recv_blocking().unwrap()));
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move { tx.send(b(10)).await.unwrap() });
    assert_eq!(sync_code.join().unwrap(), 10);
}

/// Runs `f` on a thread inside a current-thread runtime: Ok if it returned (any value),
/// Err(()) if it panicked; `None` if it was still blocking after [`BOUND`].
fn inside_runtime(f: impl FnOnce() + Send + 'static) -> Option<Result<(), ()>> {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = rt.block_on(async move {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| ())
        });
        let _ = done_tx.send(r);
    });
    done_rx.recv_timeout(BOUND).ok()
}

/// parity: MISSING (`recv_blocking` inside a runtime blocks the executor silently; should panic like tokio or return an error)
#[test]
#[ignore = "MISSING: *_blocking inside an async runtime should panic or error, issue 12"]
fn blocking_recv_async() {
    let name = ShmName::new("p-bra");
    let mut rx = mpsc::Consumer::create(name.as_str(), opts(2)).unwrap();
    let tx = mpsc::Producer::open(name.as_str(), opts(2)).unwrap();
    let r = inside_runtime(move || {
        // Ok(msg) would be wrong (nothing was sent); an error or a panic is right.
        assert!(rx.recv_blocking().is_err());
    });
    drop(tx);
    assert!(r.is_some(), "recv_blocking blocked the executor's thread");
}

/// parity: SAME
#[test]
fn blocking_send() {
    let (_n, mut tx, mut rx) = chan("p-bs", 2);
    let sync_code = std::thread::spawn(move || tx.send_blocking(b(10)).unwrap());
    let got = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move { v(rx.recv().await.unwrap()) });
    assert_eq!(got, 10);
    sync_code.join().unwrap();
}

/// parity: MISSING (`send_blocking` inside a runtime blocks the executor silently when full; should panic like tokio or return an error)
#[test]
#[ignore = "MISSING: *_blocking inside an async runtime should panic or error, issue 12"]
fn blocking_send_async() {
    let name = ShmName::new("p-bsa");
    let rx = mpsc::Consumer::create(name.as_str(), opts(2)).unwrap();
    let mut tx = mpsc::Producer::open(name.as_str(), opts(2)).unwrap();
    tx.try_send(b(0)).unwrap();
    tx.try_send(b(0)).unwrap(); // full: a real blocking send would wait
    let r = inside_runtime(move || {
        assert!(tx.send_blocking(b(1)).is_err());
    });
    drop(rx);
    assert!(r.is_some(), "send_blocking blocked the executor's thread");
}

/// parity: MISSING (`Consumer::close`: a dropped reservation then ends the drained stream)
#[tokio::test]
async fn ready_close_cancel_bounded() {
    let (name, mut tx, mut rx) = chan("p-rccb", 100);
    let _tx2 = clone_tx(&name);
    let permit = tx.try_reserve().unwrap().expect("a slot");
    rx.close();
    let got = recv_woken_by(&mut rx, || drop(permit)).await;
    assert!(matches!(got, Poll::Ready(Err(Error::Closed))));
}

/// parity: MISSING (`Consumer::close`; a freed slot wakes a waiting sender)
#[tokio::test]
async fn permit_available_not_acquired_close() {
    let (name, mut tx1, mut rx) = chan("p-panac", 2);
    let mut tx2 = clone_tx(&name);
    tx2.try_send(b(0)).unwrap();
    let permit1 = tx1.try_reserve().unwrap().expect("the last slot");
    {
        let mut permit2 = Task::new(tx2.send(b(1)));
        assert!(permit2.poll().is_pending());
        rx.close();
        drop(permit1);
        assert!(permit2.woken().await);
    }
    assert_eq!(v(rx.recv().await.unwrap()), 0);
    assert!(is_closed_err(&rx.recv().await));
}

/// parity: SAME
#[test]
fn try_recv_bounded() {
    let (_n, mut tx, mut rx) = chan("p-trb", 5);
    let hello = &b"hello"[..];
    let got = |rx: &mut mpsc::Consumer| assert_eq!(&rx.try_recv().unwrap()[..], hello);
    for _ in 0..5 {
        tx.try_send(hello).unwrap();
    }
    assert!(matches!(tx.try_send(hello), Err(TrySendError::Full(_))));
    for _ in 0..5 {
        got(&mut rx);
    }
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    for _ in 0..4 {
        tx.try_send(hello).unwrap();
    }
    got(&mut rx);
    tx.try_send(hello).unwrap();
    tx.try_send(hello).unwrap();
    assert!(tx.try_send(hello).is_err());
    for _ in 0..5 {
        got(&mut rx);
    }
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    for _ in 0..3 {
        tx.try_send(hello).unwrap();
    }
    drop(tx);
    for _ in 0..3 {
        got(&mut rx);
    }
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Closed)));
}

/// parity: DIFFERS (no unbounded channel: bounded with room for every message)
#[test]
fn try_recv_unbounded() {
    for num in 0..100 {
        let (_n, mut tx, mut rx) = chan("p-tru", 128);
        for i in 0..num {
            tx.try_send(b(i)).unwrap();
        }
        for i in 0..num {
            assert_eq!(v(rx.try_recv().unwrap()), i);
        }
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        drop(tx);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Closed)));
    }
}

/// parity: MISSING (`Consumer::close`)
#[test]
fn try_recv_after_receiver_close() {
    let (_n, _tx, mut rx) = chan("p-trarc", 5);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    rx.close();
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Closed)));
}

/// parity: MISSING (`Consumer::close`: `Empty` while a reservation is outstanding, `Closed` once it is dropped)
#[test]
fn try_recv_after_receiver_close_with_permit() {
    let (_n, mut tx, mut rx) = chan("p-trarcwp", 5);
    let permit = tx.try_reserve().unwrap().expect("a slot");
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    rx.close();
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    drop(permit);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Closed)));
}

fn try_recv_close_while_empty(c: Chan) {
    let (_n, tx, mut rx) = c;
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    drop(tx);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Closed)));
}

/// parity: SAME
#[test]
fn try_recv_close_while_empty_bounded() {
    try_recv_close_while_empty(chan("p-trcweb", 5));
}

/// parity: DIFFERS (no unbounded channel)
#[test]
fn try_recv_close_while_empty_unbounded() {
    try_recv_close_while_empty(chan("p-trcweu", UNBOUNDED_CAP));
}

/// parity: DIFFERS (`send_timeout` is a blocking call, not a future; so a real, short timeout instead of paused time)
#[test]
fn recv_timeout() {
    let (_n, mut tx, rx) = chan("p-rt", 5);
    for i in [10, 20, 30, 40, 50] {
        tx.send_timeout(b(i), Duration::from_secs(1)).unwrap();
    }
    match tx.send_timeout(b(60), Duration::from_millis(20)) {
        Err(SendTimeoutError::Timeout(m)) => assert_eq!(m, b(60)),
        other => panic!("{other:?}"),
    }
    drop(rx);
    match tx.send_timeout(b(70), Duration::from_secs(1)) {
        Err(SendTimeoutError::Closed(m)) => assert_eq!(m, b(70)),
        other => panic!("{other:?}"),
    }
}

/// parity: DIFFERS (`send_timeout` needs no runtime: outside one it works instead of panicking)
#[test]
fn recv_timeout_panic() {
    let (_n, mut tx, _rx) = chan("p-rtp", 5);
    assert!(tokio::runtime::Handle::try_current().is_err());
    tx.send_timeout(b(10), Duration::from_secs(1)).unwrap();
    assert_eq!(tx.pending(), 1);
}

/// parity: DIFFERS (tokio's `capacity()` is `available()`, `max_capacity()` is `capacity()`)
#[tokio::test]
async fn test_tx_capacity() {
    let (name, mut tx, _rx) = chan("p-ttc", 10);
    assert_eq!(tx.available(), 10);
    assert_eq!(tx.capacity(), 10);
    let mut tx2 = clone_tx(&name);
    let _permit = tx2.try_reserve().unwrap().expect("a slot");
    assert_eq!(tx.available(), 9);
    assert_eq!(tx.capacity(), 10);
    tx.send(b(0)).await.unwrap();
    assert_eq!(tx.available(), 8);
    assert_eq!(tx.capacity(), 10);
}

// --- is_closed / is_empty / len ------------------------------------------------------------
//
// tokio writes most of these cases twice, for its bounded and its unbounded channel. Here each
// behaviour is one `case_*` function, run by [`flavours!`] once per tokio channel kind it covers.

async fn case_is_closed_when_calling_close_with_sender(c: Chan, _k: Kind) {
    let (_n, _tx, mut rx) = c;
    rx.close();
    assert!(rx.is_closed());
}

async fn case_is_closed_when_dropping_all_senders(c: Chan, _k: Kind) {
    let (name, tx, rx) = c;
    let another_tx = clone_tx(&name);
    let task = tokio::spawn(async move { drop(another_tx) });
    drop(tx);
    task.await.unwrap();
    assert!(rx.is_closed());
}

async fn case_is_not_closed_when_there_are_senders(c: Chan, _k: Kind) {
    let (_n, _tx, rx) = c;
    assert!(!rx.is_closed());
}

async fn case_is_closed_when_there_are_no_senders_and_there_are_messages(c: Chan, k: Kind) {
    let (_n, mut tx, rx) = c;
    k.fill(&mut tx, 10).await;
    drop(tx);
    assert!(rx.is_closed());
}

async fn case_is_closed_when_there_are_messages_and_close_is_called(c: Chan, k: Kind) {
    let (_n, mut tx, mut rx) = c;
    k.fill(&mut tx, 10).await;
    rx.close();
    assert!(rx.is_closed());
}

async fn case_is_empty_when_no_messages_were_sent(c: Chan, _k: Kind) {
    let (_n, _tx, rx) = c;
    assert!(rx.is_empty());
}

async fn case_is_not_empty_when_there_are_messages_in_the_buffer(c: Chan, k: Kind) {
    let (_n, mut tx, rx) = c;
    k.put(&mut tx, b(42)).await;
    assert!(!rx.is_empty());
}

async fn case_is_not_empty_when_all_but_one_messages_are_consumed(c: Chan, k: Kind) {
    let (_n, mut tx, mut rx) = c;
    k.fill(&mut tx, 10).await;
    for _ in 0..9 {
        assert!(rx.recv().await.is_ok());
    }
    assert!(!rx.is_empty());
}

async fn case_is_empty_when_all_messages_are_consumed(c: Chan, k: Kind) {
    let (_n, mut tx, mut rx) = c;
    k.fill(&mut tx, 10).await;
    while rx.try_recv().is_ok() {}
    assert!(rx.is_empty());
}

async fn case_is_empty_all_senders_are_dropped_and_messages_consumed(c: Chan, k: Kind) {
    let (name, mut tx, mut rx) = c;
    let mut tx2 = clone_tx(&name);
    for i in 0..5 {
        k.put(&mut tx, b(i)).await;
        k.put(&mut tx2, b(i)).await;
    }
    drop((tx, tx2));
    for _ in 0..10 {
        assert!(rx.recv().await.is_ok());
    }
    assert!(rx.is_empty());
}

async fn case_len_on_empty_channel(c: Chan, _k: Kind) {
    let (_n, _tx, rx) = c;
    assert_eq!(rx.pending(), 0);
}

async fn case_len_on_empty_channel_without_senders(c: Chan, _k: Kind) {
    let (_n, tx, rx) = c;
    drop(tx);
    assert_eq!(rx.pending(), 0);
}

async fn case_len_with_100_messages(c: Chan, k: Kind) {
    let (_n, mut tx, rx) = c;
    for _ in 0..100 {
        k.put(&mut tx, b(0)).await;
    }
    assert_eq!(rx.pending(), 100);
}

async fn case_len_with_100_messages_without_senders(c: Chan, k: Kind) {
    let (_n, mut tx, rx) = c;
    for _ in 0..100 {
        k.put(&mut tx, b(0)).await;
    }
    drop(tx);
    assert_eq!(rx.pending(), 100);
}

async fn case_len_when_consuming_all_messages(c: Chan, k: Kind) {
    let (_n, mut tx, mut rx) = c;
    for i in 0..100 {
        k.put(&mut tx, b(i)).await;
        assert_eq!(rx.pending(), i as usize + 1);
    }
    drop(tx);
    for i in (0..100).rev() {
        assert!(rx.recv().await.is_ok());
        assert_eq!(rx.pending(), i);
    }
}

async fn case_len_when_close_is_called(c: Chan, k: Kind) {
    let (_n, mut tx, mut rx) = c;
    k.put(&mut tx, b(0)).await;
    rx.close();
    assert_eq!(rx.pending(), 1);
}

async fn case_len_when_close_is_called_before_dropping_sender(c: Chan, k: Kind) {
    let (_n, mut tx, mut rx) = c;
    k.put(&mut tx, b(0)).await;
    rx.close();
    drop(tx);
    assert_eq!(rx.pending(), 1);
}

async fn case_len_when_close_is_called_after_dropping_sender(c: Chan, k: Kind) {
    let (_n, mut tx, mut rx) = c;
    k.put(&mut tx, b(0)).await;
    drop(tx);
    rx.close();
    assert_eq!(rx.pending(), 1);
}

flavours! {
    /// parity: MISSING (`Consumer::close`, `Consumer::is_closed`)
    test_rx_is_closed_when_calling_close_with_sender("p-ricwcc", 10),
    /// parity: MISSING (`Consumer::close`, `Consumer::is_closed`; no unbounded channel)
    test_rx_unbounded_is_closed_when_calling_close_with_sender("p-ruicwcc")
        => case_is_closed_when_calling_close_with_sender;

    /// parity: MISSING (`Consumer::is_closed`)
    test_rx_is_closed_when_dropping_all_senders("p-ricwdas", 10),
    /// parity: MISSING (`Consumer::is_closed`; no unbounded channel)
    test_rx_unbounded_is_closed_when_dropping_all_senders("p-ruicwdas")
        => case_is_closed_when_dropping_all_senders;

    /// parity: MISSING (`Consumer::is_closed`)
    test_rx_is_not_closed_when_there_are_senders("p-rincwts", 10),
    /// parity: MISSING (`Consumer::is_closed`; no unbounded channel)
    test_rx_unbounded_is_not_closed_when_there_are_senders("p-ruincwts")
        => case_is_not_closed_when_there_are_senders;

    /// parity: MISSING (`Consumer::is_closed`: true once the producers left, even with messages queued)
    test_rx_is_closed_when_there_are_no_senders_and_there_are_messages("p-ricwnsm", 10),
    /// parity: MISSING (`Consumer::is_closed`; no unbounded channel)
    test_rx_unbounded_is_closed_when_there_are_no_senders_and_there_are_messages("p-ruicwnsm")
        => case_is_closed_when_there_are_no_senders_and_there_are_messages;

    /// parity: MISSING (`Consumer::close`, `Consumer::is_closed`)
    test_rx_is_closed_when_there_are_messages_and_close_is_called("p-ricwmcc", 10),
    /// parity: MISSING (`Consumer::close`, `Consumer::is_closed`; no unbounded channel)
    test_rx_unbounded_is_closed_when_there_are_messages_and_close_is_called("p-ruicwmcc")
        => case_is_closed_when_there_are_messages_and_close_is_called;

    /// parity: SAME
    test_rx_is_empty_when_no_messages_were_sent("p-riewnm", 10),
    /// parity: DIFFERS (no unbounded channel)
    test_rx_unbounded_is_empty_when_no_messages_were_sent("p-ruiewnm")
        => case_is_empty_when_no_messages_were_sent;

    /// parity: SAME
    test_rx_is_not_empty_when_there_are_messages_in_the_buffer("p-rinewm", 10),
    /// parity: DIFFERS (no unbounded channel)
    test_rx_unbounded_is_not_empty_when_there_are_messages_in_the_buffer("p-ruinewm")
        => case_is_not_empty_when_there_are_messages_in_the_buffer;

    /// parity: SAME
    test_rx_is_not_empty_when_all_but_one_messages_are_consumed("p-rinewabo", 10),
    /// parity: DIFFERS (no unbounded channel)
    test_rx_unbounded_is_not_empty_when_all_but_one_messages_are_consumed("p-ruinewabo")
        => case_is_not_empty_when_all_but_one_messages_are_consumed;

    /// parity: SAME
    test_rx_is_empty_when_all_messages_are_consumed("p-riewamc", 10),
    /// parity: DIFFERS (no unbounded channel)
    test_rx_unbounded_is_empty_when_all_messages_are_consumed("p-ruiewamc")
        => case_is_empty_when_all_messages_are_consumed;

    /// parity: SAME
    test_rx_is_empty_all_senders_are_dropped_and_messages_consumed("p-rieasd", 10),
    /// parity: DIFFERS (no unbounded channel)
    test_rx_unbounded_is_empty_all_senders_are_dropped_and_messages_consumed("p-ruieasd")
        => case_is_empty_all_senders_are_dropped_and_messages_consumed;

    /// parity: DIFFERS (tokio's `len()` is `pending()`)
    test_rx_len_on_empty_channel("p-rloec", 100),
    /// parity: DIFFERS (no unbounded channel; `len()` is `pending()`)
    test_rx_unbounded_len_on_empty_channel("p-ruloec")
        => case_len_on_empty_channel;

    /// parity: DIFFERS (tokio's `len()` is `pending()`)
    test_rx_len_on_empty_channel_without_senders("p-rloecws", 100),
    /// parity: DIFFERS (no unbounded channel; `len()` is `pending()`)
    test_rx_unbounded_len_on_empty_channel_without_senders("p-ruloecws")
        => case_len_on_empty_channel_without_senders;

    /// parity: DIFFERS (tokio's `len()` is `pending()`)
    test_rx_len_on_filled_channel("p-rlofc", 100),
    /// parity: DIFFERS (no unbounded channel; `len()` is `pending()`)
    test_rx_unbounded_len_with_multiple_messages("p-rulwmm")
        => case_len_with_100_messages;

    /// parity: DIFFERS (tokio's `len()` is `pending()`)
    test_rx_len_on_filled_channel_without_senders("p-rlofcws", 100),
    /// parity: DIFFERS (no unbounded channel; `len()` is `pending()`)
    test_rx_unbounded_len_with_multiple_messages_and_dropped_senders("p-rulwmmds")
        => case_len_with_100_messages_without_senders;

    /// parity: DIFFERS (tokio's `len()` is `pending()`)
    test_rx_len_when_consuming_all_messages("p-rlwcam", 100),
    /// parity: DIFFERS (no unbounded channel; `len()` is `pending()`)
    test_rx_unbounded_len_when_consuming_all_messages("p-rulwcam")
        => case_len_when_consuming_all_messages;

    /// parity: MISSING (`Consumer::close` keeps the queued messages)
    test_rx_len_when_close_is_called("p-rlwcic", 100),
    /// parity: MISSING (`Consumer::close`; no unbounded channel)
    test_rx_unbounded_len_when_close_is_called("p-rulwcic")
        => case_len_when_close_is_called;

    /// parity: MISSING (`Consumer::close` keeps the queued messages)
    test_rx_len_when_close_is_called_before_dropping_sender("p-rlwccbds", 100),
    /// parity: MISSING (`Consumer::close`; no unbounded channel)
    test_rx_unbounded_len_when_close_is_called_before_dropping_sender("p-rulwccbds")
        => case_len_when_close_is_called_before_dropping_sender;

    /// parity: MISSING (`Consumer::close` keeps the queued messages)
    test_rx_len_when_close_is_called_after_dropping_sender("p-rlwccads", 100),
    /// parity: MISSING (`Consumer::close`; no unbounded channel)
    test_rx_unbounded_len_when_close_is_called_after_dropping_sender("p-rulwccads")
        => case_len_when_close_is_called_after_dropping_sender;
}

/// parity: MISSING (`Consumer::is_closed`)
#[tokio::test]
async fn test_rx_is_not_closed_when_there_are_senders_and_buffer_filled() {
    let (_n, mut tx, rx) = chan("p-rincwtsbf", 10);
    Kind::Bounded.fill(&mut tx, 10).await;
    assert!(!rx.is_closed());
}

/// parity: MISSING (`Consumer::is_closed`; no owned permits: the `Sink`'s `poll_ready` reservation outlives nothing, so a live producer holds it)
#[tokio::test]
async fn test_rx_is_not_closed_when_there_are_permits_but_not_senders() {
    let (_n, mut tx, rx) = chan("p-rincwpns", 10);
    let _permit = tx.try_reserve().unwrap().expect("a slot");
    assert!(!rx.is_closed());
}

/// parity: SAME
#[tokio::test]
async fn test_rx_is_not_empty_when_the_buffer_is_full() {
    let (_n, mut tx, rx) = chan("p-rinewbf", 10);
    Kind::Bounded.fill(&mut tx, 10).await;
    assert!(!rx.is_empty());
}

/// parity: SAME (wrap-around of a 33-slot ring)
#[tokio::test]
async fn test_is_empty_32_msgs() {
    let (_n, mut tx, mut rx) = chan("p-ie32", 33);
    for value in 1..257 {
        tx.send(b(value)).await.unwrap();
        assert_eq!(v(rx.recv().await.unwrap()), value);
        assert!(rx.is_empty(), "{value}. len: {}", rx.pending());
    }
}

/// parity: DIFFERS (messages are bytes: no destructors run; a consumer that panics mid-stream leaves, and the producer then sees `Closed` on a full ring)
#[test]
fn drop_all_elements_during_panic() {
    let (_n, mut tx, rx) = chan("p-daedp", 3);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _rx = rx;
        panic!("the consumer's thread panics");
    }));
    assert!(r.is_err());
    // The consumer is gone: the very next send is Closed (honest close), message given back.
    assert!(matches!(tx.try_send(b(0)), Err(TrySendError::Closed(_))));
}

/// parity: SAME (dropping the consumer releases the waker its pending `recv` registered)
#[tokio::test]
async fn release_waker_on_rx_drop() {
    struct DummyWaker;
    impl Wake for DummyWaker {
        fn wake(self: Arc<Self>) {}
    }
    let dummy = Arc::new(DummyWaker);
    let waker = Waker::from(dummy.clone());
    let mut cx = Context::from_waker(&waker);
    assert_eq!(Arc::strong_count(&dummy), 2);
    let (_n, _tx, mut rx) = chan("p-rword", 2);
    {
        let mut recv = std::pin::pin!(rx.recv());
        assert!(recv.as_mut().poll(&mut cx).is_pending());
    }
    assert!(
        Arc::strong_count(&dummy) >= 3,
        "the pending recv registered the waker"
    );
    drop(rx);
    assert_eq!(
        Arc::strong_count(&dummy),
        2,
        "dropping rx did not drop its waker"
    );
}
