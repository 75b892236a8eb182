//! `spawn_blocking`: closures that block their thread (file I/O, a
//! synchronous database driver, `std::thread::sleep`) run on a pool of
//! plain threads, off the workers.
//!
//! A CPU task cannot take their place: preemption stops a task that *runs*
//! past its quantum, but a task blocked in a system call is not running. The
//! signal finds it inside libc, declines, and the worker stays blocked with
//! every task bound to it.
//!
//! # The pool
//!
//! One per runtime. Threads are started on demand, up to
//! `Builder::max_blocking_threads` ([`MAX_THREADS`] by default); a thread
//! idle for `Builder::thread_keep_alive` ([`KEEP_ALIVE`]) exits. The queue, the
//! idle count and the thread count live under one mutex; a submitter wakes
//! an idle thread if there is one and starts a new thread otherwise, so a
//! task never waits behind a running one while the pool has room.
//!
//! The closure is the future of an ordinary task ([`BlockingTask`]: one
//! poll runs it to completion), registered in the owned list like any other
//! but queued here instead of on the workers: a pool thread runs that one
//! poll, so the result lands in the task and wakes the `JoinHandle` with no
//! other hop. Output, `is_panic` and `abort` behave as for any task, except
//! that a closure that has started runs to completion regardless; one
//! aborted before a thread took it never runs, and its handle reports the
//! cancellation when a thread gets to it (tokio's `spawn_blocking` behaves
//! the same). At runtime shutdown, tasks that have not started are
//! dropped from the queue (the runtime cancels them); running ones are left
//! to finish on their detached threads.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use super::TaskRef;
use crate::runtime::scheduler::Shared;
use crate::runtime::{context, Handle};

/// Most threads a runtime's blocking pool runs at once, by default (tokio's
/// default; `Builder::max_blocking_threads` changes it).
pub const MAX_THREADS: usize = 512;
/// How long an idle blocking thread waits for a task before it exits, by
/// default (`Builder::thread_keep_alive` changes it).
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

pub(crate) struct BlockingPool {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    cond: Condvar,
    thread_name: String,
    max_threads: usize,
    keep_alive: Duration,
    /// The runtime, made current around each task (as tokio does: a blocking
    /// closure may spawn, or `block_on` through a handle). Weak: the runtime
    /// owns the pool.
    shared: Weak<Shared>,
}

struct State {
    /// Tasks whose future is a [`BlockingTask`], waiting for a thread.
    queue: VecDeque<TaskRef>,
    idle: usize,
    threads: usize,
    shutdown: bool,
}

impl BlockingPool {
    /// `config`: (worker thread name prefix, most threads, keep-alive).
    pub(crate) fn new(config: (String, usize, Duration), shared: Weak<Shared>) -> BlockingPool {
        let (thread_name, max_threads, keep_alive) = config;
        BlockingPool {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    idle: 0,
                    threads: 0,
                    shutdown: false,
                }),
                cond: Condvar::new(),
                thread_name,
                max_threads,
                keep_alive,
                shared,
            }),
        }
    }

    /// Queues a task whose future is a [`BlockingTask`], to be run (polled
    /// once) by a pool thread; drops it if the pool is shut down.
    pub(crate) fn submit(&self, task: TaskRef) {
        let _no_preempt = urgent_preempt::disable();
        let mut st = self.inner.lock();
        if st.shutdown {
            return;
        }
        st.queue.push_back(task);
        if st.idle >= st.queue.len() {
            // An idle thread will take it (one per queued task).
            self.inner.cond.notify_one();
        } else if st.threads < self.inner.max_threads {
            st.threads += 1;
            let inner = self.inner.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{}-blocking", self.inner.thread_name))
                .spawn(move || inner.run());
            if let Err(e) = spawned {
                st.threads -= 1;
                if st.threads == 0 {
                    // Nobody would ever run it: say so now rather than hang.
                    st.queue.pop_back();
                    drop(st);
                    panic!("urgent: could not start a blocking-pool thread: {e}");
                }
            }
        }
        // Else: all `max_threads` busy; a thread takes it when it finishes one.
    }

    /// Drops tasks that have not started and lets idle threads exit.
    pub(crate) fn shutdown(&self) {
        let dropped = {
            let mut st = self.inner.lock();
            st.shutdown = true;
            std::mem::take(&mut st.queue)
        };
        self.inner.cond.notify_all();
        // Outside the lock: a task's last drop may run user destructors.
        // The tasks themselves are in the owned list, which the shutdown
        // cancels.
        drop(dropped);
    }
}

/// The future of a `spawn_blocking` task: its one poll runs the closure.
pub(crate) struct BlockingTask<F>(Option<F>);

impl<F> BlockingTask<F> {
    pub(crate) fn new(f: F) -> Self {
        BlockingTask(Some(f))
    }
}

// Nothing is pinned: the closure is moved out before it runs.
impl<F> Unpin for BlockingTask<F> {}

impl<F, R> Future for BlockingTask<F>
where
    F: FnOnce() -> R,
{
    type Output = R;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<R> {
        let f = self
            .0
            .take()
            .expect("urgent internal error: blocking task polled twice");
        Poll::Ready(f())
    }
}

impl Inner {
    /// The plain guard: pool threads wait on the condition variable with
    /// it. `submit`, which can run inside a CPU task, holds a `NoPreempt`
    /// guard around it.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        urgent_stackful::sync::lock(&self.state)
    }

    /// Runs one task with the runtime current, without the pool lock: the
    /// runtime handle taken here may be the last one, and dropping the
    /// runtime shuts this pool down, which takes the lock.
    fn run_task(&self, task: TaskRef) {
        let shared = self.shared.upgrade();
        let _current = shared
            .as_ref()
            .map(|s| context::set_current(Handle { shared: s.clone() }));
        #[cfg(feature = "tokio")]
        let _tokio = shared.as_ref().and_then(|s| s.tokio().enter(s));
        // `run` catches the closure's panic (it becomes the JoinError); this
        // only guards the pool against a panicking destructor.
        let _ = catch_unwind(AssertUnwindSafe(|| task.run()));
    }

    /// A pool thread: take tasks until idle for `keep_alive` or shut down.
    fn run(&self) {
        let mut st = self.lock();
        loop {
            if let Some(task) = st.queue.pop_front() {
                drop(st);
                self.run_task(task);
                st = self.lock();
                continue;
            }
            if st.shutdown {
                break;
            }
            st.idle += 1;
            let (guard, timeout) = self
                .cond
                .wait_timeout(st, self.keep_alive)
                .unwrap_or_else(|e| e.into_inner());
            st = guard;
            st.idle -= 1;
            if timeout.timed_out() && st.queue.is_empty() {
                break;
            }
        }
        st.threads -= 1;
    }
}
