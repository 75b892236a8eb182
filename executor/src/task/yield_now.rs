use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Yields execution back to the scheduler: the current task goes to the back
/// of its worker's run queue and other tasks run first.
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
            // worker pushes it to the back of the queue after this poll.
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    YieldNow { yielded: false }.await
}
