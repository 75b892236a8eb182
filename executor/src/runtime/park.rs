//! Parking a worker: either on the runtime's driver (mio `Poll`, which also
//! fires timers) or, when another worker already sits in the driver, on a
//! condition variable.
//!
//! States of a [`Parker`]:
//!
//! ```text
//! EMPTY --park--> PARKED_CONDVAR | PARKED_DRIVER --unpark--> NOTIFIED --park returns--> EMPTY
//! EMPTY --unpark--> NOTIFIED (the next park returns at once)
//! ```
//!
//! `unpark` is called by any thread; `park` only by the owning worker. An
//! unpark is never lost: it either finds the parker `EMPTY` (and the next
//! park consumes it) or parked (and wakes it through the condvar or the
//! driver's mio waker).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::scheduler::Shared;

const EMPTY: usize = 0;
const PARKED_CONDVAR: usize = 1;
const PARKED_DRIVER: usize = 2;
const NOTIFIED: usize = 3;

pub(crate) struct Parker {
    state: AtomicUsize,
    mutex: Mutex<()>,
    condvar: Condvar,
}

impl Parker {
    pub(crate) fn new() -> Parker {
        Parker {
            state: AtomicUsize::new(EMPTY),
            mutex: Mutex::new(()),
            condvar: Condvar::new(),
        }
    }

    /// Blocks until unparked, or until a timer is due.
    pub(crate) fn park(&self, shared: &Shared) {
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
            .is_ok()
        {
            return;
        }
        if let Some(mut driver) = shared.try_lock_driver() {
            if self
                .state
                .compare_exchange(EMPTY, PARKED_DRIVER, SeqCst, SeqCst)
                .is_err()
            {
                // Notified in between.
                self.state.store(EMPTY, SeqCst);
                return;
            }
            driver.park(shared, None);
            self.state.store(EMPTY, SeqCst);
            return;
        }

        let mut guard = self.mutex.lock().unwrap_or_else(|e| e.into_inner());
        if self
            .state
            .compare_exchange(EMPTY, PARKED_CONDVAR, SeqCst, SeqCst)
            .is_err()
        {
            self.state.store(EMPTY, SeqCst);
            return;
        }
        loop {
            // Another worker owns the driver; still wake up for the next
            // timer in case that worker leaves the driver to run tasks.
            match shared.timers.next_timeout() {
                Some(t) => {
                    let (g, res) = self
                        .condvar
                        .wait_timeout(guard, t.max(Duration::from_micros(50)))
                        .unwrap_or_else(|e| e.into_inner());
                    guard = g;
                    if res.timed_out() {
                        // Leave PARKED_CONDVAR unless a notification raced in.
                        if self
                            .state
                            .compare_exchange(PARKED_CONDVAR, EMPTY, SeqCst, SeqCst)
                            .is_ok()
                        {
                            return;
                        }
                    }
                }
                None => {
                    guard = self.condvar.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
            }
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
                .is_ok()
            {
                return;
            }
        }
    }

    pub(crate) fn unpark(&self, shared: &Shared) {
        match self.state.swap(NOTIFIED, SeqCst) {
            PARKED_CONDVAR => {
                drop(self.mutex.lock().unwrap_or_else(|e| e.into_inner()));
                self.condvar.notify_one();
            }
            PARKED_DRIVER => shared.wake_driver(),
            _ => {}
        }
    }
}

/// Busy-waits (with the CPU's spin hint) until `ready()` returns true or
/// `limit` has passed; returns whether it became ready. The clock is read
/// once per 32 checks.
pub(crate) fn spin_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        for _ in 0..32 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= limit {
            return false;
        }
    }
}
