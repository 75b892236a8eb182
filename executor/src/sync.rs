//! Synchronisation helpers shared by the executor.
//!
//! - [`lock`]: the one poison-tolerant way to take a std `Mutex` here. A
//!   poisoned lock only means a panic unwound through a critical section;
//!   the runtime's critical sections leave their data consistent at every
//!   panic point (user code runs outside them, under `catch_unwind`), so
//!   the data is used as it is.
//! - `atomic`: std's atomics, or loom's under `--cfg loom`, for the
//!   protocols that have loom models beside them (the task state word, the
//!   parker, the idle protocol, the core ownership word).

/// Locks a std `Mutex`, ignoring poisoning (see the module docs): the
/// workspace's one helper, from `urgent-stackful`.
pub(crate) use urgent_stackful::sync::lock;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic;

/// Locks and condition variables of the modelled protocols: std's, or
/// loom's under `--cfg loom`.
pub(crate) mod model {
    #[cfg(loom)]
    pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
    #[cfg(not(loom))]
    pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

    #[cfg(not(loom))]
    pub(crate) use super::lock;

    /// [`super::lock`] for loom's mutex.
    #[cfg(loom)]
    pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(loom)]
pub(crate) use loom::sync::atomic;
