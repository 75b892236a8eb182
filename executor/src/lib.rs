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
//! - Sockets ([`net`]) register with the driver's mio `Poll`; the worker
//!   turning the driver wakes the tasks whose sockets became ready (see
//!   `io` for the readiness protocol).
//! - CPU tasks ([`spawn_cpu`]) run on coroutines on the workers and are
//!   preempted; closures that block in system calls go to a separate pool of
//!   plain threads ([`task::spawn_blocking`]), where blocking harms nobody.
//!
//! # tokio compatibility (feature `tokio`, on by default)
//!
//! Each runtime owns a background tokio runtime (`enable_all`, as many
//! threads as workers; `Builder::tokio_worker_threads`) whose handle every
//! worker thread and every `block_on` enters. So `tokio::net`, `tokio::time`, `tokio::sync` and `tokio::io`
//! work inside urgent tasks as under tokio, and inside CPU tasks through
//! [`wait`]; their readiness and timers are driven by those tokio threads,
//! which wake the urgent tasks.
//!
//! `tokio::spawn` (and `tokio::task::spawn_blocking`) called inside urgent
//! run on that background runtime (`metrics().tokio_tasks()` counts them),
//! not on urgent's workers: tokio cannot hand a spawned future to another
//! executor. Those threads have
//! the urgent runtime as its current one, so code there may call [`spawn`],
//! [`spawn_cpu`] and [`time`]. Prefer [`spawn`] for your own tasks; libraries
//! that call `tokio::spawn` themselves (`axum::serve` spawns one task per
//! connection) keep working, with that work on the tokio threads. Shutting
//! the urgent runtime down shuts the background runtime down too.
//!
//! ```
//! let rt = urgent_executor::Runtime::new().unwrap();
//! rt.block_on(async {
//!     let (tx, rx) = tokio::sync::oneshot::channel();
//!     urgent_executor::spawn(async move {
//!         tokio::time::sleep(std::time::Duration::from_millis(1)).await;
//!         tx.send(1).unwrap();
//!     });
//!     let on_tokio = tokio::spawn(async { 2 }).await.unwrap();
//!     assert_eq!(rx.await.unwrap() + on_tokio, 3);
//! });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cpu;
#[cfg(feature = "hyper")]
pub mod http;
mod io;
pub mod metrics;
pub mod net;
mod preempt_glue;
pub mod runtime;
mod sync;
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
    shared.unwrap_or_else(|| runtime::context::outside_runtime(what))
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
    current_shared("spawn_preemptible").spawn_preemptible(future)
}
