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

mod cpu;
mod io;
pub mod metrics;
pub mod net;
mod preempt_glue;
pub mod runtime;
pub mod task;
pub mod time;

pub use cpu::{is_cpu_task, wait};

/// Control over signal-driven preemption of CPU tasks.
pub mod preempt {
    pub use crate::cpu::is_cpu_task;
    pub use urgent_preempt::{disable, is_disabled, NoPreempt};
}
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
    current_shared("spawn").spawn(future)
}

#[track_caller]
fn current_shared(what: &str) -> std::sync::Arc<runtime::scheduler::Shared> {
    let shared = runtime::context::with_current(|h| h.map(|h| h.shared.clone()));
    match shared {
        Some(shared) => shared,
        None => panic!(
            "urgent: {what}() called outside a runtime; call it from a task or inside \
             Runtime::block_on, use #[urgent::main], or go through a Handle \
             (rt.handle().{what}(..))"
        ),
    }
}

/// Runs a CPU-heavy closure on the current runtime, as a CPU task: on a
/// coroutine of its own stack, on a worker thread, preempted when it runs
/// past its quantum so the worker's other tasks keep running. Use it where a
/// tokio program uses `spawn_blocking`.
///
/// A CPU task is bound to the worker that first runs it. Inside it,
/// [`wait`] awaits a future and [`task::checkpoint`] is a cooperative
/// preemption point.
///
/// # Panics
///
/// Outside a runtime, with a message naming the fix.
///
/// # Examples
///
/// ```
/// let rt = urgent_executor::Runtime::new().unwrap();
/// let primes = rt.block_on(async {
///     urgent_executor::spawn_cpu(|| (2..10_000u32).filter(|n| (2..*n).all(|d| n % d != 0)).count())
///         .await
///         .unwrap()
/// });
/// assert_eq!(primes, 1229);
/// ```
#[track_caller]
pub fn spawn_cpu<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    current_shared("spawn_cpu").spawn_cpu(f)
}

/// Spawns a future that is polled on a coroutine, as a CPU task: a poll that
/// runs long (a big parse inside an async handler) is preempted instead of
/// blocking its worker.
///
/// # Panics
///
/// Outside a runtime, with a message naming the fix.
///
/// # Examples
///
/// ```
/// let rt = urgent_executor::Runtime::new().unwrap();
/// let v = rt.block_on(async {
///     urgent_executor::spawn_preemptible(async {
///         urgent_executor::task::yield_now().await;
///         7
///     })
///     .await
///     .unwrap()
/// });
/// assert_eq!(v, 7);
/// ```
#[track_caller]
pub fn spawn_preemptible<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    current_shared("spawn_preemptible").spawn_cpu(move || wait(future))
}
