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

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};

/// A locked std `Mutex` that also holds a `NoPreempt` guard: a runtime
/// critical section can never be stopped by async preemption, however the
/// compiler inlines it (under fat LTO a runtime function can be inlined into
/// the allow-listed user shim, where the safe-point walk would otherwise
/// see only user code). The guard is dropped after the lock is released.
pub(crate) struct Locked<'a, T: ?Sized> {
    guard: MutexGuard<'a, T>,
    _no_preempt: urgent_preempt::NoPreempt,
}

impl<T: ?Sized> Deref for Locked<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: ?Sized> DerefMut for Locked<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// Locks a std `Mutex`, ignoring poisoning (see the module docs), with
/// async preemption off while it is held. The poison handling is the
/// workspace's one helper, from `urgent-stackful`.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> Locked<'_, T> {
    let no_preempt = urgent_preempt::disable();
    Locked {
        guard: urgent_stackful::sync::lock(m),
        _no_preempt: no_preempt,
    }
}

#[cfg(not(loom))]
pub(crate) use std::sync::atomic;

/// Locks and condition variables of the modelled protocols: std's, or
/// loom's under `--cfg loom`.
pub(crate) mod model {
    #[cfg(loom)]
    pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
    #[cfg(not(loom))]
    pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

    /// [`super::lock`] without the `NoPreempt` guard: the modelled locks
    /// (parker, cores) are taken by worker loops or wait on a condition
    /// variable, which needs the plain guard; their in-poll users take the
    /// guard themselves.
    #[cfg(not(loom))]
    pub(crate) use urgent_stackful::sync::lock;

    /// [`super::lock`] for loom's mutex.
    #[cfg(loom)]
    pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(loom)]
pub(crate) use loom::sync::atomic;
