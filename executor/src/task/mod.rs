//! Tasks: the unit the scheduler runs.
//!
//! A task is one reference-counted cell (`Cell`) holding its header (the
//! atomic state word and the scheduler it belongs to), its future and, once it
//! completes, its output. Run queues, wakers and the [`JoinHandle`] all hold
//! `Arc`s of the same cell; the waker vtable is std's `Wake` impl over it.
//!
//! # State word
//!
//! | bit           | set by                         | cleared by                       |
//! |---------------|--------------------------------|----------------------------------|
//! | `SCHEDULED`   | a wake, `abort`                | the worker that starts running it|
//! | `RUNNING`     | the worker that pops it        | that worker, after the poll      |
//! | `COMPLETE`    | the worker (or shutdown) that finished or cancelled it | never |
//! | `CANCELLED`   | `abort`, shutdown              | never                            |
//! | `JOIN_INTEREST` | spawn                        | dropping the `JoinHandle`        |
//!
//! Invariants:
//! - Only the thread that set `RUNNING` touches the future. The future lives
//!   behind a mutex anyway (the executor is `forbid(unsafe_code)`), but that
//!   mutex is never contended because of this bit.
//! - A task is in at most one run queue at a time: only the transition that
//!   sets `SCHEDULED` while neither `RUNNING` nor `COMPLETE` pushes it. A wake
//!   that arrives while the task runs only sets `SCHEDULED`; the runner sees it
//!   after the poll and pushes the task to the back of its queue (a yield).
//! - `COMPLETE` is set exactly once, after the output (or the error) is stored
//!   and the future dropped; then the join waker is woken.
//! - A complete task is removed from the runtime's owned-task list, which is
//!   how shutdown finds and drops every outstanding future.

pub(crate) mod blocking;
mod error;
mod join;
mod owned;
mod yield_now;

pub use crate::cpu::checkpoint;
pub use blocking::{KEEP_ALIVE as BLOCKING_KEEP_ALIVE, MAX_THREADS as MAX_BLOCKING_THREADS};
pub use error::JoinError;
pub use join::JoinHandle;
pub(crate) use owned::OwnedTasks;
pub use yield_now::yield_now;

/// Runs a closure that blocks its thread (file I/O, a synchronous database
/// driver, `std::thread::sleep`, a blocking lock) on the runtime's pool of
/// blocking threads, off the workers, and returns its `JoinHandle`: tokio's
/// `spawn_blocking`.
///
/// For *CPU-heavy* work use [`spawn_cpu`](crate::spawn_cpu) instead: it runs
/// on the workers and is preempted. A closure that waits in a system call is
/// not running, so preemption cannot move it aside; on a worker it would hold
/// that worker and every task bound to it.
///
/// Threads are started on demand, up to [`MAX_BLOCKING_THREADS`] (see
/// `Builder::max_blocking_threads`), and exit after [`BLOCKING_KEEP_ALIVE`]
/// idle (`Builder::thread_keep_alive`). A panic in the closure is a
/// [`JoinError::is_panic`]. `abort()` keeps a closure that has not started
/// from running (its handle reports the cancellation when a pool thread
/// gets to it), but does not stop one that has. At runtime shutdown,
/// closures that have not started are dropped and running ones finish on
/// their own threads.
///
/// # Panics
///
/// Outside a runtime, with a message naming the fix.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let rt = urgent_executor::Runtime::new().unwrap();
/// let len = rt.block_on(async {
///     urgent_executor::task::spawn_blocking(|| {
///         std::thread::sleep(Duration::from_millis(10)); // stands for a blocking read
///         std::fs::read_to_string("/proc/self/stat").map(|s| s.len()).unwrap_or(0)
///     })
///     .await
///     .unwrap()
/// });
/// assert!(len > 0);
/// ```
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    crate::current_shared("spawn_blocking").spawn_blocking(f)
}

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

use crate::runtime::scheduler::{Schedule, Shared};

const SCHEDULED: usize = 1;
const RUNNING: usize = 2;
const COMPLETE: usize = 4;
const CANCELLED: usize = 8;
const JOIN_INTEREST: usize = 16;

/// A type-erased task, as the run queues see it.
pub(crate) type TaskRef = Arc<dyn Runnable>;

/// What the scheduler can do with a task without knowing its future type.
pub(crate) trait Runnable: Send + Sync + 'static {
    fn header(&self) -> &Header;
    /// Polls the task once. Must only be called by the thread that popped
    /// it from a run queue.
    fn run(self: Arc<Self>);
    /// Cancels the task at runtime shutdown: drops its future now unless
    /// another thread is polling it.
    fn shutdown(self: Arc<Self>);
}

/// The part of a task every layer may look at.
pub(crate) struct Header {
    state: AtomicUsize,
    /// The runtime this task belongs to; wakes push the task there.
    pub(crate) shared: Arc<Shared>,
    /// Key in the runtime's owned-task list, written once before the task is
    /// first scheduled.
    pub(crate) owned_key: AtomicUsize,
    /// The worker a CPU task is bound to once it has run (`usize::MAX`: none).
    /// Written by that worker before the first poll, read by wakers.
    pub(crate) bound_worker: AtomicUsize,
    /// Whether this is a CPU task (its future resumes a coroutine).
    pub(crate) cpu: bool,
}

impl Header {
    pub(crate) fn is_complete(&self) -> bool {
        self.state.load(Acquire) & COMPLETE != 0
    }
}

enum Stage<F: Future> {
    Running(Pin<Box<F>>),
    Finished(Result<F::Output, JoinError>),
    Consumed,
}

pub(crate) struct Cell<F: Future> {
    header: Header,
    stage: Mutex<Stage<F>>,
    join_waker: AtomicWaker,
}

/// Allocates a task. The caller registers it in the owned list and schedules
/// it (see `Shared::spawn`).
pub(crate) fn new_task<F>(
    future: F,
    shared: Arc<Shared>,
    cpu: bool,
) -> (TaskRef, JoinHandle<F::Output>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let cell = Arc::new(Cell {
        header: Header {
            state: AtomicUsize::new(SCHEDULED | JOIN_INTEREST),
            shared,
            owned_key: AtomicUsize::new(usize::MAX),
            bound_worker: AtomicUsize::new(usize::MAX),
            cpu,
        },
        stage: Mutex::new(Stage::Running(Box::pin(future))),
        join_waker: AtomicWaker::new(),
    });
    let join = JoinHandle::new(cell.clone());
    (cell, join)
}

impl<F> Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn stage(&self) -> MutexGuard<'_, Stage<F>> {
        // A poisoned lock only means a panic escaped while it was held, which
        // cannot happen: polls and drops inside run under catch_unwind.
        self.stage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores the result, drops the future and publishes `COMPLETE`. The
    /// caller holds `RUNNING` (or, at shutdown, has just taken it).
    fn complete(self: &Arc<Self>, result: Result<F::Output, JoinError>) {
        let old = {
            let mut stage = self.stage();
            std::mem::replace(&mut *stage, Stage::Finished(result))
        };
        // Drop the future outside the lock; a panicking destructor must not
        // take the worker down.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(old)));

        // Leave the owned list before anyone can observe completion, so a
        // joiner sees an accurate live-task count.
        self.header.shared.owned.remove(&self.header);
        let prev = self
            .header
            .state
            .fetch_update(AcqRel, Acquire, |s| Some((s & !RUNNING) | COMPLETE))
            .expect("fetch_update closure never fails");
        if prev & JOIN_INTEREST != 0 {
            self.join_waker.wake();
        } else {
            // Nobody will read the output: drop it now.
            let out = std::mem::replace(&mut *self.stage(), Stage::Consumed);
            let _ = catch_unwind(AssertUnwindSafe(move || drop(out)));
        }
    }

    fn poll_future(self: &Arc<Self>) -> Poll<Result<F::Output, JoinError>> {
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let mut stage = self.stage();
        let Stage::Running(fut) = &mut *stage else {
            unreachable!("urgent internal error: a running task has no future");
        };
        match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(JoinError::panic(payload))),
        }
    }

    /// Sets `SCHEDULED` and pushes the task unless it is already queued,
    /// running (the runner will push it) or complete.
    fn schedule_if_idle(self: &Arc<Self>, extra: usize) {
        let prev = self.header.state.fetch_update(AcqRel, Acquire, |s| {
            if s & COMPLETE != 0 || (s & SCHEDULED != 0 && s & extra == extra) {
                None
            } else {
                Some(s | SCHEDULED | extra)
            }
        });
        if let Ok(prev) = prev {
            if prev & (SCHEDULED | RUNNING) == 0 {
                let task: TaskRef = self.clone();
                self.header.shared.schedule(task, Schedule::Wake);
            }
        }
    }

    pub(crate) fn abort(self: &Arc<Self>) {
        self.schedule_if_idle(CANCELLED);
    }
}

impl<F> Runnable for Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn header(&self) -> &Header {
        &self.header
    }

    fn run(self: Arc<Self>) {
        // SCHEDULED -> RUNNING. Already RUNNING: a shutdown claimed the task
        // to cancel it (a blocking-pool thread can take a queued task while
        // the runtime shuts down), or, never, a concurrent poll; the holder
        // finishes it.
        let prev = self.header.state.fetch_update(AcqRel, Acquire, |s| {
            if s & (COMPLETE | RUNNING) != 0 {
                None
            } else {
                Some((s & !SCHEDULED) | RUNNING)
            }
        });
        let Ok(prev) = prev else { return };
        if prev & CANCELLED != 0 {
            self.complete(Err(JoinError::cancelled()));
            return;
        }
        match self.poll_future() {
            Poll::Ready(result) => self.complete(result),
            Poll::Pending => {
                let prev = self.header.state.fetch_update(AcqRel, Acquire, |s| {
                    if s & CANCELLED != 0 {
                        None
                    } else {
                        Some(s & !RUNNING)
                    }
                });
                match prev {
                    Err(_) => self.complete(Err(JoinError::cancelled())),
                    Ok(prev) if prev & SCHEDULED != 0 => {
                        // Woken during its own poll: a yield.
                        let task: TaskRef = self.clone();
                        self.header.shared.schedule(task, Schedule::Yield);
                    }
                    Ok(_) => {}
                }
            }
        }
    }

    fn shutdown(self: Arc<Self>) {
        let prev = self.header.state.fetch_update(AcqRel, Acquire, |s| {
            if s & (COMPLETE | RUNNING) != 0 {
                None
            } else {
                Some(s | RUNNING | CANCELLED)
            }
        });
        match prev {
            Ok(_) => self.complete(Err(JoinError::cancelled())),
            Err(_) => {
                // Running on a thread that did not stop in time (see
                // `shutdown_timeout`), or already complete: mark it so the
                // runner cancels it after its current poll.
                self.header.state.fetch_or(CANCELLED, AcqRel);
            }
        }
    }
}

impl<F> Wake for Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn wake(self: Arc<Self>) {
        self.schedule_if_idle(0);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.schedule_if_idle(0);
    }
}

/// What a [`JoinHandle`] needs from its task, erased over the future type.
pub(crate) trait Join<T>: Send + Sync {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>>;
    fn abort_task(self: Arc<Self>);
    fn is_finished(&self) -> bool;
    fn drop_join_handle(&self);
}

impl<F> Join<F::Output> for Cell<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<F::Output, JoinError>> {
        if self.header.state.load(Acquire) & COMPLETE == 0 {
            self.join_waker.register(cx.waker());
            if self.header.state.load(Acquire) & COMPLETE == 0 {
                return Poll::Pending;
            }
        }
        match std::mem::replace(&mut *self.stage(), Stage::Consumed) {
            Stage::Finished(result) => Poll::Ready(result),
            _ => panic!("urgent: JoinHandle polled after it returned Ready"),
        }
    }

    fn abort_task(self: Arc<Self>) {
        self.abort();
    }

    fn is_finished(&self) -> bool {
        self.header.is_complete()
    }

    fn drop_join_handle(&self) {
        let prev = self.header.state.fetch_and(!JOIN_INTEREST, AcqRel);
        if prev & COMPLETE != 0 {
            let out = std::mem::replace(&mut *self.stage(), Stage::Consumed);
            let _ = catch_unwind(AssertUnwindSafe(move || drop(out)));
        }
    }
}
