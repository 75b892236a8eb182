//! The scheduler, tasks, timers and I/O driver of the urgent runtime.
//!
//! Most users want the `urgent` facade crate, which re-exports this crate's
//! public API. This crate contains no `unsafe` code: stacks and context
//! switches live in `urgent-stackful`, signals in `urgent-preempt`.
//!
//! # How the pieces fit
//!
//! - A [`Runtime`] owns N worker threads (see `runtime::scheduler` for the
//!   queues, stealing and parking protocol), one driver (mio `Poll` + the
//!   timer heap, turned by whichever worker parks first) and the list of
//!   every live task.
//! - A task (see `task`) is one `Arc` holding its state word, future and
//!   output; wakers and [`JoinHandle`]s point at it.
//! - A thread belongs to a runtime while it is a worker or inside
//!   [`Runtime::block_on`]; that is what [`spawn`], [`time`] and
//!   [`Handle::current`] look at.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod metrics;
pub mod runtime;
pub mod task;
pub mod time;

pub use runtime::{Builder, Handle, Runtime};
pub use task::{JoinError, JoinHandle};

use std::future::Future;

/// Spawns a future onto the current runtime.
///
/// # Panics
///
/// Outside a runtime, with a message naming the fix.
///
/// # Examples
///
/// ```
/// let rt = urgent_executor::Runtime::new().unwrap();
/// rt.block_on(async {
///     let h = urgent_executor::spawn(async { 1 });
///     assert_eq!(h.await.unwrap(), 1);
/// });
/// ```
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let spawned = runtime::context::with_current(|h| h.map(|h| h.shared.clone()));
    match spawned {
        Some(shared) => shared.spawn(future),
        None => panic!(
            "urgent: spawn() called outside a runtime; call it from a task or inside \
             Runtime::block_on, use #[urgent::main], or spawn through a Handle \
             (rt.handle().spawn(fut))"
        ),
    }
}
