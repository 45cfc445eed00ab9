//! Atomics, `UnsafeCell` and spin hints: loom's under `cfg(shmchan_loom)`, std's otherwise.
//!
//! Every ring and wakeup algorithm imports its atomics from here, so that the same code runs in
//! loom models (`RUSTFLAGS="--cfg shmchan_loom" cargo test --release --lib loom`) over an in-process
//! buffer with tiny capacities. Loom cannot model two processes or shared mappings; the models
//! check the orderings of the algorithms, the cross-process tests check the rest.

#![allow(unused_imports)]

#[cfg(shmchan_loom)]
pub(crate) use loom::{
    cell::UnsafeCell,
    hint,
    sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering, fence},
    thread,
};

#[cfg(not(shmchan_loom))]
pub(crate) use std::{
    cell::UnsafeCell,
    hint,
    sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering, fence},
    thread,
};
