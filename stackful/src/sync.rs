//! A poison-tolerant lock, for the urgent crates. Not part of the public API.
//!
//! The runtime's mutexes guard plain data whose invariants hold between
//! statements (queues, pools, tables), and a panic on one thread must not
//! turn into a panic on every other thread that touches the same lock (a
//! CPU task's panic is caught and reported as its result). So a poisoned
//! lock is simply taken.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poison.
#[inline]
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
