//! sysmon's sleep without a deadline, and how workers wake it from it.
//!
//! # Protocol
//!
//! sysmon sleeps with no deadline only when no slot needs timing. A worker
//! that then starts something sysmon must time (a coroutine run) must not be
//! missed, yet the worker's hot path must not take a lock or make a system
//! call while sysmon is awake. It is a Dekker pair over two locations: the
//! slot's published state (written by the worker, read by sysmon) and
//! `idle` (written by sysmon, read by the worker).
//!
//! - **Worker** ([`Gate::published`]): store the new state (release), then
//!   `fence(SeqCst)`, then load `idle` (relaxed). If it reads `true`, call
//!   [`Gate::wake`].
//! - **sysmon** ([`Gate::sleep`]): take `lock`, store `idle = true`
//!   (relaxed), `fence(SeqCst)`, then re-read the slots (`news`). If one
//!   needs timing, clear `idle` and return; otherwise wait on `cv` while
//!   `idle` is true and no shutdown was asked.
//! - **Why nothing is lost**: the two SeqCst fences are ordered one way or
//!   the other. If the worker's fence comes first, sysmon's re-read (after
//!   its own fence) sees the worker's store; if sysmon's comes first, the
//!   worker's load of `idle` (after its fence) sees `true`. Both may happen;
//!   neither missing is impossible. (SeqCst *accesses* instead of fences
//!   would also be correct, but loom models them as AcqRel, so the fences
//!   are what the loom test can check.)
//! - **Wake**: `idle.swap(false)` (release, paired with sysmon's acquire
//!   load of `idle` in its wait loop, so whatever the waker published is
//!   visible to sysmon's next scan even when it did not have to wait); only
//!   the caller that flips it takes the lock and notifies. sysmon holds the lock from its store of `idle` until
//!   `wait` releases it, so the notification cannot fall between sysmon's
//!   check of `idle` and its wait; and a flip before the check is seen by
//!   the check (same location).
//! - [`Gate::kick`] and [`Gate::shutdown`] clear `idle` and notify
//!   unconditionally (they also cut a timed sleep short).
//!
//! The loom test `preempt/tests/loom_sysmon.rs` compiles this very file with
//! loom's primitives (`super::sync` is the shim: std's in the crate, loom's
//! in the test).

use super::sync::{fence, lock, AtomicBool, Condvar, Mutex, Ordering};
use std::sync::PoisonError;
use std::time::Duration;

/// See the module docs.
pub struct Gate {
    /// True while sysmon sleeps with no deadline (set by sysmon under
    /// `lock`, cleared by whoever wakes it).
    idle: AtomicBool,
    shutdown: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl Gate {
    /// A gate with sysmon awake.
    pub fn new() -> Gate {
        Gate {
            idle: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    /// Worker side, right after the store sysmon must not miss: wakes
    /// sysmon if it sleeps with no deadline (see the module docs).
    #[inline]
    pub fn published(&self) {
        fence(Ordering::SeqCst);
        if self.idle.load(Ordering::Relaxed) {
            self.wake();
        }
    }

    /// Worker side, lossy variant without the fence: a racing sleep may miss
    /// it (for events whose loss costs only a statistic).
    #[inline]
    pub fn hint(&self) {
        if self.idle.load(Ordering::Relaxed) {
            self.wake();
        }
    }

    /// Wakes sysmon if it sleeps with no deadline (only the first caller
    /// pays).
    #[cold]
    pub fn wake(&self) {
        // Release: sysmon, seeing `idle == false` in its wait loop without
        // waiting (no lock hand-over), must also see what the caller
        // published before (loom found that a relaxed swap allows a stale
        // re-scan after such a wake-up).
        if self.idle.swap(false, Ordering::AcqRel) {
            let _g = lock(&self.lock);
            self.cv.notify_one();
        }
    }

    /// Makes sysmon look at the slots now, whatever it sleeps on.
    pub fn kick(&self) {
        self.idle.store(false, Ordering::Release);
        let _g = lock(&self.lock);
        self.cv.notify_one();
    }

    /// Asks sysmon to stop, waking it.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.idle.store(false, Ordering::Release);
        let _g = lock(&self.lock);
        self.cv.notify_all();
    }

    /// Whether [`Gate::shutdown`] was called.
    pub fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// sysmon side: sleeps until woken, unless `news` (called after `idle`
    /// is published, see the module docs) finds something to time. Returns
    /// whether it slept.
    pub fn sleep(&self, news: impl FnOnce() -> bool) -> bool {
        let mut g = lock(&self.lock);
        if self.is_shutdown() {
            return false;
        }
        self.idle.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if news() {
            self.idle.store(false, Ordering::Relaxed);
            return false;
        }
        while self.idle.load(Ordering::Acquire) && !self.is_shutdown() {
            g = self.cv.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
        true
    }

    /// sysmon side: sleeps for `ns` nanoseconds or until kicked (or woken
    /// spuriously).
    pub fn sleep_for(&self, ns: u64) {
        let g = lock(&self.lock);
        if self.is_shutdown() {
            return;
        }
        let _ = self
            .cv
            .wait_timeout(g, Duration::from_nanos(ns))
            .unwrap_or_else(PoisonError::into_inner);
    }
}
