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
//! `unpark` is called by any thread; `park` only by the thread holding the
//! core the parker belongs to. An unpark is never lost: it either finds the
//! parker `EMPTY` (and the next park consumes it) or parked (and wakes it
//! through the condvar or the driver's waker). The driver is reached
//! through the [`ParkDriver`] trait, so the loom model at the bottom can
//! stand a mock in for epoll.

use std::time::Duration;

use super::driver::DriverHandle;
use crate::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use crate::sync::model::{lock, Condvar, Mutex};

/// What a parker needs from the runtime's driver.
pub(crate) trait ParkDriver {
    /// If no other thread turns the driver: runs `arm` with the driver
    /// held and, if it returns true, waits in the driver until its waker,
    /// an event or the next timer; returns true. False (without calling
    /// `arm`) if another thread has the driver.
    fn park_in_driver(&self, arm: impl FnOnce() -> bool) -> bool;
    /// Time until the next timer, if any.
    fn next_timeout(&self) -> Option<Duration>;
    /// Interrupts the thread waiting in the driver.
    fn wake(&self);
}

impl ParkDriver for DriverHandle {
    fn park_in_driver(&self, arm: impl FnOnce() -> bool) -> bool {
        let Some(mut driver) = self.try_lock() else {
            return false;
        };
        if arm() {
            driver.park(self, None);
        }
        true
    }

    fn next_timeout(&self) -> Option<Duration> {
        self.timers().next_timeout()
    }

    fn wake(&self) {
        DriverHandle::wake(self)
    }
}

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
    pub(crate) fn park(&self, driver: &impl ParkDriver) {
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
            .is_ok()
        {
            return;
        }
        let in_driver = driver.park_in_driver(|| {
            // Notified in between: do not wait.
            self.state
                .compare_exchange(EMPTY, PARKED_DRIVER, SeqCst, SeqCst)
                .is_ok()
        });
        if in_driver {
            self.state.store(EMPTY, SeqCst);
            return;
        }
        self.park_on_condvar(driver);
    }

    /// Another thread has the driver: wait on the condvar, still waking
    /// for the next timer in case that thread leaves the driver to run
    /// tasks.
    fn park_on_condvar(&self, driver: &impl ParkDriver) {
        let mut guard = lock(&self.mutex);
        if self
            .state
            .compare_exchange(EMPTY, PARKED_CONDVAR, SeqCst, SeqCst)
            .is_err()
        {
            self.state.store(EMPTY, SeqCst);
            return;
        }
        loop {
            match driver.next_timeout() {
                Some(t) => {
                    let (g, res) = self
                        .condvar
                        .wait_timeout(guard, t.max(Duration::from_micros(50)))
                        .unwrap_or_else(|e| e.into_inner());
                    guard = g;
                    // Leave PARKED_CONDVAR unless a notification raced in.
                    if res.timed_out()
                        && self
                            .state
                            .compare_exchange(PARKED_CONDVAR, EMPTY, SeqCst, SeqCst)
                            .is_ok()
                    {
                        return;
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

    pub(crate) fn unpark(&self, driver: &impl ParkDriver) {
        match self.state.swap(NOTIFIED, SeqCst) {
            PARKED_CONDVAR => {
                drop(lock(&self.mutex));
                self.condvar.notify_one();
            }
            PARKED_DRIVER => driver.wake(),
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

/// Loom models of the parker and of the idle protocol that drives it. Run
/// with `RUSTFLAGS="--cfg loom" cargo test -p urgent-executor
/// --no-default-features --lib --release loom`.
#[cfg(all(test, loom))]
pub(crate) mod loom_tests {
    use super::*;
    use crate::runtime::scheduler::loom_idle;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;

    /// epoll stand-in: one thread at a time may wait in it; `wake` is sticky
    /// like the eventfd behind mio's waker. A lost wake-up is a deadlock,
    /// which loom reports.
    pub(crate) struct MockDriver {
        busy: AtomicBool,
        woken: Mutex<bool>,
        cv: Condvar,
    }

    impl MockDriver {
        pub(crate) fn new() -> MockDriver {
            MockDriver {
                busy: AtomicBool::new(false),
                woken: Mutex::new(false),
                cv: Condvar::new(),
            }
        }
    }

    impl ParkDriver for MockDriver {
        fn park_in_driver(&self, arm: impl FnOnce() -> bool) -> bool {
            if self.busy.swap(true, SeqCst) {
                return false;
            }
            if arm() {
                let mut w = lock(&self.woken);
                while !*w {
                    w = self.cv.wait(w).unwrap();
                }
                *w = false;
            }
            self.busy.store(false, SeqCst);
            true
        }
        fn next_timeout(&self) -> Option<Duration> {
            None
        }
        fn wake(&self) {
            *lock(&self.woken) = true;
            self.cv.notify_one();
        }
    }

    /// An unpark from another thread always ends a park, whichever path the
    /// parker takes (driver, or condvar when the driver is taken by a third
    /// party) and wherever the unpark lands in it.
    #[test]
    fn unpark_is_never_lost() {
        for driver_taken in [false, true] {
            loom::model(move || {
                let driver = Arc::new(MockDriver::new());
                if driver_taken {
                    driver.busy.store(true, SeqCst);
                }
                let parker = Arc::new(Parker::new());
                let (p2, d2) = (parker.clone(), driver.clone());
                let t = loom::thread::spawn(move || p2.unpark(&*d2));
                parker.park(&*driver);
                t.join().unwrap();
            });
        }
    }

    /// The idle protocol with the real `Idle` and `Parker`: core 0 finds
    /// no work, registers as a sleeper, fences and re-checks, then parks;
    /// another thread pushes a task, fences and notifies. The core never
    /// sleeps through the push (deadlock otherwise). Removing either
    /// `fence(SeqCst)` makes loom find the lost wake-up.
    #[test]
    fn idle_core_sees_work_or_is_woken() {
        loom::model(loom_idle::parking_core_sees_work_or_is_woken);
    }
}
