//! The runtime's driver: one mio `Poll` per runtime, plus the timer heap.
//!
//! At most one worker at a time owns the driver (a `try_lock`): a worker
//! about to park takes it if it is free and sleeps in `epoll_wait` with the
//! next timer deadline as its timeout, so no extra thread sits between a
//! ready socket or an expired timer and the task it wakes. Busy workers also
//! turn the driver without blocking every so often (the maintenance tick), so
//! timers fire while every worker is busy.
//!
//! While a worker sleeps in the driver, `parked_until` holds its deadline;
//! inserting an earlier timer pokes the mio waker so it re-computes.
//!
//! [`DriverHandle`] is the whole concern as the rest of the runtime sees
//! it: the driver behind its lock, the waker that interrupts it, the timer
//! heap, the socket readiness slots and the count of registered sockets.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::io::IoState;
use crate::time::timers::Timers;

/// The driver, timers and I/O readiness of one runtime.
pub(crate) struct DriverHandle {
    driver: Mutex<Driver>,
    waker: mio::Waker,
    timers: Timers,
    /// Per-socket readiness slots and the mio registry.
    io: IoState,
    /// Registered I/O sources; the maintenance tick skips `epoll_wait` while
    /// there are none.
    sources: AtomicUsize,
}

impl DriverHandle {
    pub(crate) fn new() -> io::Result<DriverHandle> {
        let (driver, waker) = Driver::new()?;
        let io = IoState::new(driver.poll.registry())?;
        Ok(DriverHandle {
            driver: Mutex::new(driver),
            waker,
            timers: Timers::new(),
            io,
            sources: AtomicUsize::new(0),
        })
    }

    pub(crate) fn timers(&self) -> &Timers {
        &self.timers
    }

    pub(crate) fn io(&self) -> &IoState {
        &self.io
    }

    /// The driver, if no other thread is turning it.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, Driver>> {
        match self.driver.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Whether nobody turns the driver right now (a racy hint).
    pub(crate) fn is_free(&self) -> bool {
        self.try_lock().is_some()
    }

    /// Interrupts a thread waiting in the driver.
    pub(crate) fn wake(&self) {
        // Failing to write to the eventfd only happens when it is full, i.e.
        // a wake-up is already pending.
        let _ = self.waker.wake();
    }

    pub(crate) fn has_sources(&self) -> bool {
        self.sources.load(Relaxed) > 0
    }

    pub(crate) fn source_added(&self) {
        self.sources.fetch_add(1, Relaxed);
    }

    pub(crate) fn source_removed(&self) {
        self.sources.fetch_sub(1, Relaxed);
    }

    /// Fires due timers and, if sockets are registered and nobody else
    /// turns the driver, polls them without blocking.
    pub(crate) fn maintenance(&self) {
        if self.has_sources() {
            if let Some(mut d) = self.try_lock() {
                d.park(self, Some(Duration::ZERO));
                return;
            }
        }
        // No clock read when no timer is armed: this runs after every CPU
        // task poll.
        if self.timers.any_armed() {
            self.timers.fire_due(Instant::now());
        }
    }
}

pub(crate) const WAKE_TOKEN: Token = Token(usize::MAX);

pub(crate) struct Driver {
    poll: Poll,
    events: Events,
}

impl Driver {
    pub(crate) fn new() -> io::Result<(Driver, mio::Waker)> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKE_TOKEN)?;
        Ok((
            Driver {
                poll,
                events: Events::with_capacity(1024),
            },
            waker,
        ))
    }

    /// Waits for I/O events or the next timer (at most `max`, `None` for no
    /// limit), then fires due timers and dispatches events. `Some(ZERO)`
    /// never blocks.
    pub(crate) fn park(&mut self, handle: &DriverHandle, max: Option<Duration>) {
        let timer = handle.timers.next_timeout();
        let timeout = match (timer, max) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let blocking = timeout != Some(Duration::ZERO);
        if blocking {
            handle
                .timers
                .set_parked_until(timeout.map(|t| Instant::now() + t));
        }
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            // A signal (SIGURG is spurious by design) or EINTR: just go
            // around; the caller loops.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("urgent: epoll_wait failed in the runtime driver: {e}"),
        }
        if blocking {
            handle.timers.set_parked_until(None);
        }
        for event in self.events.iter() {
            if event.token() == WAKE_TOKEN {
                continue;
            }
            handle.io.dispatch(event);
        }
        handle.timers.fire_due(Instant::now());
    }
}
