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

use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use super::scheduler::Shared;

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

    /// The registry sockets register with (cloned into `Shared`, so
    /// registering never takes the driver lock).
    pub(crate) fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    /// Waits for I/O events or the next timer (at most `max`, `None` for no
    /// limit), then fires due timers and dispatches events. `Some(ZERO)`
    /// never blocks.
    pub(crate) fn park(&mut self, shared: &Shared, max: Option<Duration>) {
        let timer = shared.timers.next_timeout();
        let timeout = match (timer, max) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let blocking = timeout != Some(Duration::ZERO);
        if blocking {
            shared
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
            shared.timers.set_parked_until(None);
        }
        for event in self.events.iter() {
            if event.token() == WAKE_TOKEN {
                continue;
            }
            shared.io_ready(event);
        }
        shared.timers.fire_due(Instant::now());
    }
}
