//! Time: sleeping, timeouts and intervals, with tokio's semantics.
//!
//! Timers live in one heap per runtime (see `timers.rs`) and are fired by
//! whichever worker turns the driver: the one parked in it, or a busy worker
//! at its maintenance tick. All functions here must be called from inside a
//! runtime (a task, a CPU task or `block_on`); outside one they panic with a
//! message that says so.

mod interval;
pub(crate) mod timers;

pub use interval::{interval, interval_at, Interval, MissedTickBehavior};
pub use std::time::Instant;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;

use crate::runtime::Handle;
use timers::Entry;

/// Errors returned by [`timeout`].
pub mod error {
    use std::fmt;

    /// The deadline of a [`timeout`](super::timeout) passed before its future
    /// completed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Elapsed(pub(crate) ());

    impl fmt::Display for Elapsed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("deadline has elapsed")
        }
    }

    impl std::error::Error for Elapsed {}

    impl From<Elapsed> for std::io::Error {
        fn from(e: Elapsed) -> Self {
            std::io::Error::new(std::io::ErrorKind::TimedOut, e)
        }
    }
}

#[track_caller]
fn current_handle(what: &str) -> Handle {
    crate::runtime::context::current_or_panic(what)
}

/// A future that completes at a deadline. Created by [`sleep`] and
/// [`sleep_until`].
pub struct Sleep {
    deadline: Instant,
    entry: Option<Arc<Entry>>,
    handle: Handle,
}

/// Waits until `duration` has elapsed.
///
/// # Panics
///
/// Outside a runtime.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let rt = urgent_executor::Runtime::new().unwrap();
/// rt.block_on(async {
///     let start = urgent_executor::time::Instant::now();
///     urgent_executor::time::sleep(Duration::from_millis(10)).await;
///     assert!(start.elapsed() >= Duration::from_millis(10));
/// });
/// ```
#[track_caller]
pub fn sleep(duration: Duration) -> Sleep {
    let deadline = Instant::now()
        .checked_add(duration)
        .unwrap_or_else(far_future);
    sleep_until_inner(deadline, current_handle("urgent::time::sleep"))
}

/// Waits until `deadline` is reached.
///
/// # Panics
///
/// Outside a runtime.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use urgent_executor::time::{sleep_until, Instant};
/// let rt = urgent_executor::Runtime::new().unwrap();
/// rt.block_on(async {
///     let deadline = Instant::now() + Duration::from_millis(5);
///     sleep_until(deadline).await;
///     assert!(Instant::now() >= deadline);
/// });
/// ```
#[track_caller]
pub fn sleep_until(deadline: Instant) -> Sleep {
    sleep_until_inner(deadline, current_handle("urgent::time::sleep_until"))
}

fn sleep_until_inner(deadline: Instant, handle: Handle) -> Sleep {
    Sleep {
        deadline,
        entry: None,
        handle,
    }
}

pub(crate) fn far_future() -> Instant {
    // Roughly 30 years, as tokio does.
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

impl Sleep {
    /// The instant at which this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True once the deadline has been reached.
    pub fn is_elapsed(&self) -> bool {
        self.entry.as_ref().is_some_and(|e| e.is_fired()) || Instant::now() >= self.deadline
    }

    /// Moves the deadline; a completed sleep becomes pending again if the new
    /// deadline is in the future.
    pub fn reset(self: Pin<&mut Self>, deadline: Instant) {
        self.get_mut().reset_inner(deadline);
    }

    pub(crate) fn reset_inner(&mut self, deadline: Instant) {
        self.disarm();
        self.deadline = deadline;
    }

    fn disarm(&mut self) {
        if let Some(e) = self.entry.take() {
            self.handle.shared.driver().timers().cancel(&e);
        }
    }

    pub(crate) fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &self.entry {
            Some(e) => {
                if e.is_fired() {
                    return Poll::Ready(());
                }
                e.waker.register(cx.waker());
                if e.is_fired() {
                    return Poll::Ready(());
                }
                Poll::Pending
            }
            None => {
                if Instant::now() >= self.deadline {
                    return Poll::Ready(());
                }
                let shared = &self.handle.shared;
                let (entry, wake_driver) =
                    shared.driver().timers().insert(self.deadline, cx.waker());
                self.entry = Some(entry);
                if wake_driver {
                    shared.driver().wake();
                }
                Poll::Pending
            }
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_elapsed(cx)
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.disarm();
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}

pin_project! {
    /// A future with a deadline. Created by [`timeout`].
    #[derive(Debug)]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: Sleep,
    }
}

/// Requires `future` to complete within `duration`; otherwise returns
/// [`Elapsed`](error::Elapsed) and drops it.
///
/// # Panics
///
/// Outside a runtime.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use urgent_executor::time::{sleep, timeout};
/// let rt = urgent_executor::Runtime::new().unwrap();
/// rt.block_on(async {
///     assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Ok(7));
///     let slow = sleep(Duration::from_secs(5));
///     assert!(timeout(Duration::from_millis(5), slow).await.is_err());
/// });
/// ```
#[track_caller]
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    let deadline = Instant::now()
        .checked_add(duration)
        .unwrap_or_else(far_future);
    Timeout {
        future,
        sleep: sleep_until_inner(deadline, current_handle("urgent::time::timeout")),
    }
}

/// Like [`timeout`], with an absolute deadline.
#[track_caller]
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep_until_inner(deadline, current_handle("urgent::time::timeout_at")),
    }
}

impl<F> Timeout<F> {
    /// The wrapped future.
    pub fn get_ref(&self) -> &F {
        &self.future
    }

    /// Consumes the timeout, returning the wrapped future.
    pub fn into_inner(self) -> F {
        self.future
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, error::Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.project();
        if let Poll::Ready(v) = me.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match me.sleep.poll_elapsed(cx) {
            Poll::Ready(()) => Poll::Ready(Err(error::Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    }
}
