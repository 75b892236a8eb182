use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{Join, JoinError};

/// An owned permission to join a task: a future of its output.
///
/// Awaiting it yields `Ok(output)`, or a [`JoinError`] if the task panicked
/// or was cancelled. Dropping the handle detaches the task: it keeps running
/// and its output is dropped when it completes.
///
/// # Examples
///
/// ```
/// let rt = urgent_executor::Runtime::new().unwrap();
/// let sum = rt.block_on(async {
///     let h = urgent_executor::spawn(async { 1 + 2 });
///     h.await.unwrap()
/// });
/// assert_eq!(sum, 3);
/// ```
pub struct JoinHandle<T> {
    raw: Option<Arc<dyn Join<T>>>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(raw: Arc<dyn Join<T>>) -> JoinHandle<T> {
        JoinHandle { raw: Some(raw) }
    }

    /// Cancels the task. A task that has not completed is dropped the next
    /// time a worker gets to it (at once if it is idle, after its current
    /// poll if it is running) and awaiting this handle then returns a
    /// [`JoinError`] for which [`is_cancelled`](JoinError::is_cancelled) is
    /// true. Aborting a completed task does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = urgent_executor::Runtime::new().unwrap();
    /// rt.block_on(async {
    ///     let h = urgent_executor::spawn(std::future::pending::<()>());
    ///     h.abort();
    ///     assert!(h.await.unwrap_err().is_cancelled());
    /// });
    /// ```
    pub fn abort(&self) {
        if let Some(raw) = &self.raw {
            raw.clone().abort_task();
        }
    }

    /// True once the task has completed, panicked or been cancelled.
    pub fn is_finished(&self) -> bool {
        self.raw.as_ref().is_none_or(|r| r.is_finished())
    }
}

impl<T> Unpin for JoinHandle<T> {}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let raw = self
            .raw
            .as_ref()
            .expect("urgent: JoinHandle polled after completion");
        raw.poll_join(cx)
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            raw.drop_join_handle();
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
