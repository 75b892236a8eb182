use std::future::poll_fn;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{current_handle, far_future, sleep_until_inner, Sleep};

/// What an [`Interval`] does when ticks were missed because the task was not
/// polled in time. The default is [`Burst`](MissedTickBehavior::Burst), as in
/// tokio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedTickBehavior {
    /// Fire the missed ticks as fast as possible, then keep the original
    /// schedule.
    #[default]
    Burst,
    /// Start a new schedule one period after the late tick.
    Delay,
    /// Skip the missed ticks and fire on the next multiple of the period of
    /// the original schedule.
    Skip,
}

impl MissedTickBehavior {
    fn next_timeout(&self, timeout: Instant, now: Instant, period: Duration) -> Instant {
        match self {
            MissedTickBehavior::Burst => timeout + period,
            MissedTickBehavior::Delay => now + period,
            MissedTickBehavior::Skip => {
                let behind = now.saturating_duration_since(timeout).as_nanos();
                let rem = (behind % period.as_nanos().max(1)) as u64;
                now + period - Duration::from_nanos(rem)
            }
        }
    }
}

/// Ticks at a fixed period. Created by [`interval`] or [`interval_at`].
#[derive(Debug)]
pub struct Interval {
    delay: Sleep,
    period: Duration,
    missed_tick_behavior: MissedTickBehavior,
}

/// An interval whose first tick completes immediately, then every `period`.
///
/// # Panics
///
/// If `period` is zero, or outside a runtime.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let rt = urgent_executor::Runtime::new().unwrap();
/// rt.block_on(async {
///     let mut iv = urgent_executor::time::interval(Duration::from_millis(2));
///     let first = iv.tick().await; // immediate
///     let second = iv.tick().await;
///     assert!(second - first >= Duration::from_millis(2));
/// });
/// ```
#[track_caller]
pub fn interval(period: Duration) -> Interval {
    assert!(
        period > Duration::ZERO,
        "urgent: interval period must be non-zero"
    );
    interval_at(Instant::now(), period)
}

/// An interval whose first tick completes at `start`, then every `period`.
///
/// # Panics
///
/// If `period` is zero, or outside a runtime.
#[track_caller]
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(
        period > Duration::ZERO,
        "urgent: interval period must be non-zero"
    );
    Interval {
        delay: sleep_until_inner(start, current_handle("urgent::time::interval")),
        period,
        missed_tick_behavior: MissedTickBehavior::default(),
    }
}

impl Interval {
    /// Completes at the next tick and returns its scheduled instant.
    pub async fn tick(&mut self) -> Instant {
        poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if self.delay.poll_elapsed(cx).is_pending() {
            return Poll::Pending;
        }
        let timeout = self.delay.deadline();
        let now = Instant::now();
        let next = if now > timeout + Duration::from_millis(5) {
            self.missed_tick_behavior
                .next_timeout(timeout, now, self.period)
        } else {
            timeout.checked_add(self.period).unwrap_or_else(far_future)
        };
        self.delay.reset_inner(next);
        Poll::Ready(timeout)
    }

    /// Restarts the schedule: the next tick is one period from now.
    pub fn reset(&mut self) {
        self.delay.reset_inner(Instant::now() + self.period);
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The behaviour for missed ticks.
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.missed_tick_behavior
    }

    /// Sets the behaviour for missed ticks.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed_tick_behavior = behavior;
    }
}
