//! Tasks: the unit the scheduler runs.
//!
//! A task is one reference-counted cell (`Cell`) holding its header (the
//! atomic state word), the scheduler it belongs to, its future and, once it
//! completes, its output. Run queues, wakers and the [`JoinHandle`] all hold
//! `Arc`s of the same cell; the waker vtable is std's `Wake` impl over it.
//!
//! # The seam to the scheduler
//!
//! This module knows the scheduler only through the `Schedule` trait (as
//! in tokio): a task asks its scheduler to queue it (`schedule`) and tells it
//! when it completes (`release`, which takes it off the runtime's list of
//! live tasks). The runtime implements `Schedule` for its shared state; the
//! unit tests at the bottom of this file drive tasks with a mock scheduler
//! that records what it is asked to do, and `state.rs` model-checks the
//! state word with loom.
//!
//! # State word
//!
//! See `state.rs`: the bits, who sets and clears each, and the invariants
//! (at most one run queue entry per task, no lost wake-up, `COMPLETE` set
//! once), with a loom model of the races between them.
//!
//! A complete task is released from its scheduler (taken off the runtime's
//! live-task list), which is how shutdown finds and drops every outstanding
//! future.

pub(crate) mod blocking;
mod error;
mod join;
mod owned;
mod state;
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
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

use state::{AfterPoll, State, CANCELLED};

/// Why a task is being queued.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ScheduleKind {
    /// A new task.
    Spawn,
    /// Woken by a waker (or aborted) while idle.
    Wake,
    /// Woken during its own poll, or a preempted/yielding CPU task: it goes
    /// behind the work that is ready.
    Yield,
}

/// What a task needs from the scheduler it belongs to (tokio's `Schedule`):
/// the only way this module reaches the runtime.
pub(crate) trait Schedule: Send + Sync + 'static {
    /// Queues `task`, which is `SCHEDULED` and in no run queue.
    fn schedule(&self, task: TaskRef, kind: ScheduleKind);
    /// `task` has completed: take it off the list of live tasks.
    fn release(&self, task: &Header);
}

/// A type-erased task, as the run queues see it.
pub(crate) type TaskRef = Arc<dyn Runnable>;

/// What the scheduler can do with a task without knowing its future type.
pub(crate) trait Runnable: Send + Sync + 'static {
    fn header(&self) -> &Header;
    /// Polls the task once. Must only be called by the thread that popped
    /// it from a run queue.
    fn run(self: Arc<Self>);
    /// Cancels the task at runtime shutdown: drops its future now unless
    /// another thread is polling it (that thread cancels it after its poll).
    fn shutdown(self: Arc<Self>);
}

/// The part of a task every layer may look at.
pub(crate) struct Header {
    state: State,
    /// Key in the runtime's owned-task list, written once before the task is
    /// first scheduled.
    pub(crate) owned_key: AtomicUsize,
    /// The thread a started CPU task is bound to (`usize::MAX`: none). The
    /// scheduler's word: written by the thread that first resumes the
    /// coroutine, before it does, and read by whoever schedules the task.
    pub(crate) bound_thread: AtomicUsize,
    /// Whether this is a CPU task (its future resumes a coroutine).
    pub(crate) cpu: bool,
}

impl Header {
    pub(crate) fn is_complete(&self) -> bool {
        self.state.is_complete()
    }
}

enum Stage<F: Future> {
    Running(Pin<Box<F>>),
    Finished(Result<F::Output, JoinError>),
    Consumed,
}

pub(crate) struct Cell<F: Future, S> {
    header: Header,
    scheduler: S,
    stage: Mutex<Stage<F>>,
    join_waker: AtomicWaker,
}

/// Allocates a task. The caller registers it in the owned list and schedules
/// it (see the runtime's `Shared::spawn`).
pub(crate) fn new_task<F, S>(future: F, scheduler: S, cpu: bool) -> (TaskRef, JoinHandle<F::Output>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    let cell = Arc::new(Cell {
        header: Header {
            state: State::new(),
            owned_key: AtomicUsize::new(usize::MAX),
            bound_thread: AtomicUsize::new(usize::MAX),
            cpu,
        },
        scheduler,
        stage: Mutex::new(Stage::Running(Box::pin(future))),
        join_waker: AtomicWaker::new(),
    });
    let join = JoinHandle::new(cell.clone());
    (cell, join)
}

impl<F, S> Cell<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    fn stage(&self) -> MutexGuard<'_, Stage<F>> {
        // A poisoned lock only means a panic escaped while it was held, which
        // cannot happen: polls and drops inside run under catch_unwind. The
        // plain guard, not `sync::Locked`: it is held across the poll, and
        // a CPU task's whole run happens inside that poll.
        urgent_stackful::sync::lock(&self.stage)
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
        self.scheduler.release(&self.header);
        if self.header.state.complete() {
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

    /// Sets `SCHEDULED` (plus `extra`) and pushes the task unless it is
    /// already queued, running (the runner will push it) or complete.
    fn schedule_if_idle(self: &Arc<Self>, extra: usize) {
        if self.header.state.notify(extra) {
            let task: TaskRef = self.clone();
            self.scheduler.schedule(task, ScheduleKind::Wake);
        }
    }

    pub(crate) fn abort(self: &Arc<Self>) {
        self.schedule_if_idle(CANCELLED);
    }
}

impl<F, S> Runnable for Cell<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    fn header(&self) -> &Header {
        &self.header
    }

    fn run(self: Arc<Self>) {
        // Already RUNNING: a shutdown claimed the task to cancel it (a
        // blocking-pool thread can take a queued task while the runtime
        // shuts down); the claimer finishes it.
        let Ok(cancelled) = self.header.state.start_poll() else {
            return;
        };
        if cancelled {
            self.complete(Err(JoinError::cancelled()));
            return;
        }
        match self.poll_future() {
            Poll::Ready(result) => self.complete(result),
            Poll::Pending => match self.header.state.end_poll() {
                AfterPoll::Idle => {}
                AfterPoll::Cancel => self.complete(Err(JoinError::cancelled())),
                AfterPoll::Requeue => {
                    let task: TaskRef = self.clone();
                    self.scheduler.schedule(task, ScheduleKind::Yield);
                }
            },
        }
    }

    fn shutdown(self: Arc<Self>) {
        if self.header.state.claim_for_shutdown() {
            self.complete(Err(JoinError::cancelled()));
        }
    }
}

impl<F, S> Wake for Cell<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
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

impl<F, S> Join<F::Output> for Cell<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<Result<F::Output, JoinError>> {
        if !self.header.is_complete() {
            self.join_waker.register(cx.waker());
            if !self.header.is_complete() {
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
        if self.header.state.drop_join_interest() {
            let out = std::mem::replace(&mut *self.stage(), Stage::Consumed);
            let _ = catch_unwind(AssertUnwindSafe(move || drop(out)));
        }
    }
}

/// Tasks driven by a mock scheduler: what the task asks of its scheduler,
/// with no runtime behind it.
#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    /// Records every request; `run_next` plays the worker.
    #[derive(Default)]
    struct Mock {
        queue: Mutex<Vec<(TaskRef, ScheduleKind)>>,
        released: AtomicUsize,
    }

    impl Schedule for Arc<Mock> {
        fn schedule(&self, task: TaskRef, kind: ScheduleKind) {
            self.queue.lock().unwrap().push((task, kind));
        }
        fn release(&self, _task: &Header) {
            self.released.fetch_add(1, SeqCst);
        }
    }

    impl Mock {
        fn take(&self) -> Vec<(TaskRef, ScheduleKind)> {
            std::mem::take(&mut *self.queue.lock().unwrap())
        }
    }

    fn poll_join<T>(h: &mut JoinHandle<T>) -> Poll<Result<T, JoinError>> {
        let waker = Waker::noop();
        Pin::new(h).poll(&mut Context::from_waker(waker))
    }

    /// A future that is pending until its flag is set, and wakes itself
    /// during its poll when asked to (a yield).
    struct Gate {
        open: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
        yield_once: bool,
    }

    impl Future for Gate {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            if self.open.load(SeqCst) {
                return Poll::Ready(7);
            }
            if std::mem::take(&mut self.yield_once) {
                cx.waker().wake_by_ref();
            } else {
                *self.waker.lock().unwrap() = Some(cx.waker().clone());
            }
            Poll::Pending
        }
    }

    fn gate(yield_once: bool) -> (Gate, Arc<AtomicBool>, Arc<Mutex<Option<Waker>>>) {
        let open = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(Mutex::new(None));
        let g = Gate {
            open: open.clone(),
            waker: waker.clone(),
            yield_once,
        };
        (g, open, waker)
    }

    #[test]
    fn wake_after_pending_schedules_once_and_completes() {
        let mock = Arc::new(Mock::default());
        let (fut, open, waker) = gate(false);
        let (task, mut join) = new_task(fut, mock.clone(), false);
        task.run();
        assert!(mock.take().is_empty(), "a pending poll queues nothing");
        assert!(poll_join(&mut join).is_pending());
        let w = waker.lock().unwrap().take().unwrap();
        open.store(true, SeqCst);
        w.wake_by_ref();
        w.wake_by_ref(); // already queued: absorbed
        let mut queued = mock.take();
        assert_eq!(queued.len(), 1);
        let (task, kind) = queued.pop().unwrap();
        assert_eq!(kind, ScheduleKind::Wake);
        task.run();
        assert_eq!(mock.released.load(SeqCst), 1);
        assert!(matches!(poll_join(&mut join), Poll::Ready(Ok(7))));
    }

    #[test]
    fn wake_during_poll_is_a_yield() {
        let mock = Arc::new(Mock::default());
        let (fut, _open, _waker) = gate(true);
        let (task, _join) = new_task(fut, mock.clone(), false);
        task.run();
        let queued = mock.take();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].1, ScheduleKind::Yield);
    }

    #[test]
    fn abort_of_idle_task_cancels_it_at_its_next_run() {
        let mock = Arc::new(Mock::default());
        let (fut, _open, _waker) = gate(false);
        let (task, mut join) = new_task(fut, mock.clone(), false);
        task.run();
        join.abort();
        let mut queued = mock.take();
        assert_eq!(queued.len(), 1, "abort queues the idle task once");
        queued.pop().unwrap().0.run();
        match poll_join(&mut join) {
            Poll::Ready(Err(e)) => assert!(e.is_cancelled()),
            other => panic!(
                "expected a cancellation, got {:?}",
                other.map(|r| r.is_ok())
            ),
        }
        assert_eq!(mock.released.load(SeqCst), 1);
    }

    #[test]
    fn shutdown_drops_an_idle_future_and_releases_it() {
        let mock = Arc::new(Mock::default());
        let (fut, _open, _waker) = gate(false);
        let (task, mut join) = new_task(fut, mock.clone(), false);
        task.clone().run();
        task.clone().shutdown();
        assert_eq!(mock.released.load(SeqCst), 1);
        assert!(task.header().is_complete());
        assert!(matches!(poll_join(&mut join), Poll::Ready(Err(e)) if e.is_cancelled()));
    }

    #[test]
    fn panicking_poll_is_a_join_error() {
        let mock = Arc::new(Mock::default());
        let (task, mut join) = new_task(async { panic!("boom") }, mock.clone(), false);
        task.run();
        assert!(matches!(poll_join(&mut join), Poll::Ready(Err(e)) if e.is_panic()));
    }
}
