//! CPU tasks: closures and futures that run on stackful coroutines.
//!
//! A CPU task is an ordinary task (same cell, state word, `JoinHandle`)
//! whose future is a [`CpuFuture`]: polling it resumes the coroutine, and
//! the coroutine returning control ends the poll.
//!
//! | the coroutine...                         | the poll returns                    |
//! |------------------------------------------|-------------------------------------|
//! | returned `R`                             | `Ready(R)`                          |
//! | panicked                                 | re-raises the panic (→ `JoinError::is_panic`) |
//! | suspended in `wait` on a pending future  | `Pending`; that future holds the task's waker (requeued at once if it already fired: see `WaitWake`) |
//! | suspended in `checkpoint` / was preempted| `Pending` after waking itself: the task goes to the back of its queue |
//!
//! The coroutine and its stack are created at the first poll, on the worker
//! that runs it, from that worker's stack pool. From then on the task is
//! bound to that worker (see `runtime::scheduler`) unless the runtime was
//! built with `migrate_preempted(true)`.
//!
//! While a coroutine runs, the thread-local `CPU_CX` holds the task's
//! `WaitWake` (its waker plus a woken flag), or its plain waker until it
//! first waits or yields; only code on that coroutine reads
//! it (through `#[inline(never)]` accessors, so that no caller keeps a
//! thread-local address across a suspension).

use std::cell::RefCell;
use std::future::Future;
use std::panic::resume_unwind;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use urgent_stackful::{suspend, Coroutine, Resume, Stack, SuspendKind};

enum CpuCx {
    /// The task has not waited or yielded yet (most CPU tasks never do):
    /// its waker, for this poll, to build the `WaitWake` from if it does.
    Task(Waker),
    /// The task's `WaitWake`, kept in the `CpuFuture` between polls.
    Wake(Arc<WaitWake>),
}

/// The waker a CPU task hands to the futures it waits on (and its own
/// yields). A wake sets `woken` before waking the task, and a cooperative
/// suspension looks at `woken` once the coroutine is off the CPU.
///
/// Why the flag: the task's state word merges wake-ups. A wake that arrives
/// while the task is already queued is absorbed, which is right for a
/// future. But a CPU task can be preempted between polling a future and
/// suspending for it; the preemption requeues it, a wake arriving meanwhile
/// is absorbed by that requeue, and the coroutine, once resumed, suspends
/// for a wake that has already happened: it would sleep forever. With the
/// flag, that suspension sees the wake and requeues the task at once.
struct WaitWake {
    woken: AtomicBool,
    task: Waker,
}

impl Wake for WaitWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Release);
        self.task.wake_by_ref();
    }
}

thread_local! {
    static CPU_CX: RefCell<Option<CpuCx>> = const { RefCell::new(None) };
}

enum State<F, R> {
    NotStarted(F),
    /// The coroutine keeps `R` on its own stack until we take it.
    Running(Coroutine<R>),
    Done,
}

/// The future of a CPU task.
pub(crate) struct CpuFuture<F, R> {
    state: State<F, R>,
    stack_size: usize,
    /// Created the first time the task waits or yields (see `CpuCx`); until
    /// then each resume lends the coroutine the task's waker instead.
    wake: Option<Arc<WaitWake>>,
}

impl<F, R> CpuFuture<F, R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    pub(crate) fn new(f: F, stack_size: usize) -> Self {
        CpuFuture {
            state: State::NotStarted(f),
            stack_size,
            wake: None,
        }
    }
}

// No pinning is needed: the closure and the coroutine handle move freely
// (the coroutine's frames live on its own stack, not in this struct).
impl<F, R> Unpin for CpuFuture<F, R> {}

impl<F, R> Future for CpuFuture<F, R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    type Output = R;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        let this = &mut *self;
        if let State::NotStarted(_) = this.state {
            let State::NotStarted(f) = std::mem::replace(&mut this.state, State::Done) else {
                unreachable!()
            };
            let stack = Stack::new(this.stack_size).unwrap_or_else(|e| {
                panic!("urgent: could not allocate a stack for a CPU task: {e}")
            });
            this.state = State::Running(Coroutine::new(stack, move || run_user(f)));
        }
        let State::Running(co) = &mut this.state else {
            panic!("urgent: CPU task polled after completion");
        };

        let mine = match this.wake.take() {
            Some(wake) => CpuCx::Wake(wake),
            None => CpuCx::Task(cx.waker().clone()),
        };
        let prev = CPU_CX.with(|c| c.borrow_mut().replace(mine));
        let resumed = crate::preempt_glue::run_coroutine(co);
        let mine = CPU_CX.with(|c| std::mem::replace(&mut *c.borrow_mut(), prev));
        if let Some(CpuCx::Wake(wake)) = mine {
            this.wake = Some(wake);
        }

        match resumed {
            Resume::Finished => {
                let r = co
                    .take_output()
                    .expect("urgent internal error: CPU task finished without an output");
                this.state = State::Done;
                Poll::Ready(r)
            }
            Resume::Panicked(payload) => {
                this.state = State::Done;
                resume_unwind(payload)
            }
            Resume::Suspended(SuspendKind::Yield) => {
                // Woken since `wait` polled, or a `checkpoint` yield: run
                // again (see `WaitWake`). A wake after this check finds the
                // task still RUNNING and requeues it when the poll ends.
                if this.wake.as_ref().is_some_and(|w| w.woken.load(Acquire)) {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
            Resume::Suspended(SuspendKind::Preempted) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

#[inline(never)]
fn current_wake() -> Option<Arc<WaitWake>> {
    CPU_CX.with(|c| {
        let mut c = c.borrow_mut();
        let cx = c.as_mut()?;
        Some(match cx {
            CpuCx::Wake(wake) => wake.clone(),
            CpuCx::Task(task) => {
                let wake = Arc::new(WaitWake {
                    woken: AtomicBool::new(false),
                    task: task.clone(),
                });
                *cx = CpuCx::Wake(wake.clone());
                wake
            }
        })
    })
}

/// The frame user code runs in. Async preemption is denied in this crate's
/// functions, but a user closure or future poll inlined here is user code:
/// the symbol table allow-lists exactly this function (see `preempt_glue`).
/// Never inlined, so that it keeps its name.
#[inline(never)]
fn run_user<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The frame a future awaited by a CPU task (`wait`, `spawn_preemptible`)
/// is polled in: like [`run_user`], an entry shim the safe-point walk stops
/// at, so the runtime's own frames below it do not count. A closure passed
/// to `run_user` would be a frame of its own named after `wait` (a runtime
/// function) in builds that do not inline it. Never inlined, so that it
/// keeps its name.
#[inline(never)]
fn poll_user<F: Future>(future: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    future.poll(cx)
}

/// Inside a CPU task, suspends the task until `future` completes and returns
/// its output; the worker runs other tasks meanwhile. This is how CPU tasks
/// await timers, channels, sockets, or tokio futures.
///
/// # Panics
///
/// Outside a CPU task (`spawn_cpu` / `spawn_preemptible`): in async code use
/// `.await`, and in synchronous code outside the runtime use `block_on`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let rt = urgent_executor::Runtime::new().unwrap();
/// let n = rt.block_on(async {
///     urgent_executor::spawn_cpu(|| {
///         urgent_executor::wait(urgent_executor::time::sleep(Duration::from_millis(1)));
///         21 * 2
///     })
///     .await
///     .unwrap()
/// });
/// assert_eq!(n, 42);
/// ```
#[track_caller]
pub fn wait<F: Future>(future: F) -> F::Output {
    let Some(wake) = current_wake() else {
        panic!(
            "urgent: wait() called outside a CPU task; in async code use `.await`, and in \
             synchronous code outside the runtime use Runtime::block_on"
        );
    };
    // The task's own `WaitWake`, not a thread-local: it stays valid across
    // the suspensions below, whichever thread resumes the coroutine.
    let waker = Waker::from(wake.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        // Wakes before this poll are what resumed us; from here on, one
        // must not be lost (see `WaitWake`).
        wake.woken.store(false, Relaxed);
        if let Poll::Ready(v) = poll_user(future.as_mut(), &mut cx) {
            return v;
        }
        suspend(SuspendKind::Yield);
    }
}

/// A cooperative preemption point: inside a CPU task whose time slice has
/// run out, lets other tasks on the worker run before continuing. Elsewhere
/// (and when the slice has time left) it returns at once; it costs a clock
/// read.
///
/// Signal-driven preemption makes this unnecessary for most code, but it
/// keeps a loop responsive where that is off (`URGENT_ASYNC_PREEMPT=0`,
/// stripped binaries, targets other than x86_64 Linux) or while a
/// `NoPreempt` guard is held.
///
/// # Examples
///
/// ```
/// let rt = urgent_executor::Runtime::new().unwrap();
/// let sum = rt.block_on(async {
///     urgent_executor::spawn_cpu(|| {
///         let mut s = 0u64;
///         for i in 0..1_000_000u64 {
///             s = s.wrapping_add(i);
///             urgent_executor::task::checkpoint();
///         }
///         s
///     })
///     .await
///     .unwrap()
/// });
/// assert_eq!(sum, 499_999_500_000);
/// ```
pub fn checkpoint() {
    if !is_cpu_task() {
        return;
    }
    if crate::preempt_glue::should_yield() {
        yield_cpu();
    }
}

/// Suspends the current CPU task to the back of its worker's queue.
fn yield_cpu() {
    if let Some(wake) = current_wake() {
        // Not a wake-up call: the flag alone, which the poll that resumed us
        // sees once the coroutine is off the CPU, so the task is requeued
        // even if a preemption lands between here and the suspension.
        wake.woken.store(true, Release);
        drop(wake);
        suspend(SuspendKind::Yield);
    }
}

/// True inside a CPU task (`spawn_cpu`, `spawn_preemptible`), false in
/// futures and outside the runtime.
///
/// # Examples
///
/// ```
/// let rt = urgent_executor::Runtime::new().unwrap();
/// rt.block_on(async {
///     assert!(!urgent_executor::is_cpu_task());
///     let inside = urgent_executor::spawn_cpu(urgent_executor::is_cpu_task).await.unwrap();
///     assert!(inside);
/// });
/// ```
pub fn is_cpu_task() -> bool {
    urgent_stackful::in_coroutine()
}
