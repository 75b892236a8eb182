use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Yields execution back to the scheduler: every other task that is ready
/// on this worker (and what waits in the global queue at the next check)
/// runs before the current task is polled again.
///
/// # Examples
///
/// ```
/// let rt = urgent_executor::Runtime::new().unwrap();
/// rt.block_on(async {
///     for _ in 0..3 {
///         urgent_executor::task::yield_now().await;
///     }
/// });
/// ```
pub async fn yield_now() {
    struct YieldNow {
        yielded: bool,
    }

    impl Future for YieldNow {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.yielded {
                return Poll::Ready(());
            }
            self.yielded = true;
            // Waking ourselves while running marks the task SCHEDULED; the
            // worker defers it after this poll (see runtime::scheduler).
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    YieldNow { yielded: false }.await
}
