//! The runtime: a builder, the [`Runtime`] that owns the worker threads, and
//! the cloneable [`Handle`] that spawns onto it.

mod builder;
mod config;
pub(crate) mod context;
pub(crate) mod driver;
mod park;
mod schedtrace;
pub(crate) mod scheduler;

pub use builder::{
    Builder, DEFAULT_MAX_SPARE_THREADS, DEFAULT_QUANTUM, DEFAULT_RETAKE_AFTER, DEFAULT_STACK_SIZE,
    MAX_SPARE_THREADS, MIN_QUANTUM, MIN_STACK_SIZE,
};

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::metrics::RuntimeMetrics;
use crate::task::JoinHandle;
pub(crate) use config::Config;
use scheduler::Shared;

/// The urgent runtime: worker threads, run queues, timers and the I/O
/// driver.
///
/// Dropping it shuts it down: workers stop after their current poll, every
/// task that has not completed is dropped (its `JoinHandle` reports
/// cancellation), and the threads are joined. Use
/// [`shutdown_timeout`](Runtime::shutdown_timeout) if a task may block its
/// thread forever.
///
/// # Examples
///
/// ```
/// let rt = urgent_executor::Runtime::new().unwrap();
/// let answer = rt.block_on(async {
///     let h = urgent_executor::spawn(async { 6 * 7 });
///     h.await.unwrap()
/// });
/// assert_eq!(answer, 42);
/// ```
pub struct Runtime {
    handle: Handle,
    threads: Vec<thread::JoinHandle<()>>,
    /// Disconnected once every worker thread has exited (crossbeam's receiver
    /// is `Sync`, so `Runtime` is, as tokio's is).
    exited: Option<crossbeam_channel::Receiver<()>>,
}

/// A cheap, cloneable reference to a runtime, usable from any thread.
///
/// # Examples
///
/// ```
/// let rt = urgent_executor::Runtime::new().unwrap();
/// let handle = rt.handle().clone();
/// let out = std::thread::spawn(move || handle.block_on(async { 5 }))
///     .join()
///     .unwrap();
/// assert_eq!(out, 5);
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl Runtime {
    /// A runtime with the default configuration (see [`Builder`]).
    pub fn new() -> io::Result<Runtime> {
        Builder::new().build()
    }

    pub(crate) fn from_config(config: Config) -> io::Result<Runtime> {
        let n = config.worker_threads;
        let name = config.thread_name.clone();
        let shared = Shared::new(config)?;
        let (exit_tx, exit_rx) = crossbeam_channel::unbounded::<()>();
        let mut threads = Vec::with_capacity(n);
        for index in 0..n {
            let shared2 = shared.clone();
            let tx = exit_tx.clone();
            let spawned = thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    // Dropped when the thread exits, however it exits.
                    let _exit = tx;
                    scheduler::run_worker(shared2, index);
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    shared.begin_shutdown();
                    return Err(e);
                }
            }
        }
        if let Some(period) = shared.config().schedtrace {
            schedtrace::start(&shared, period)?;
        }
        Ok(Runtime {
            handle: Handle { shared },
            threads,
            exited: Some(exit_rx),
        })
    }

    /// Runs `future` to completion on the current thread, while the workers
    /// run spawned tasks.
    ///
    /// # Panics
    ///
    /// If called from inside a runtime (a task, a CPU task or another
    /// `block_on`); also propagates a panic of `future`.
    #[track_caller]
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }

    /// Spawns a future onto the runtime. See [`Handle::spawn`].
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Runs a CPU-heavy closure as a CPU task. See
    /// [`spawn_cpu`](crate::spawn_cpu).
    pub fn spawn_cpu<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.handle.spawn_cpu(f)
    }

    /// Spawns a future polled on a coroutine. See
    /// [`spawn_preemptible`](crate::spawn_preemptible).
    pub fn spawn_preemptible<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn_preemptible(future)
    }

    /// Runs a closure that blocks its thread on the blocking pool. See
    /// [`task::spawn_blocking`](crate::task::spawn_blocking).
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.handle.spawn_blocking(f)
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// A snapshot of the runtime's counters.
    pub fn metrics(&self) -> RuntimeMetrics {
        self.handle.metrics()
    }

    /// Shuts down, waiting at most about `timeout` for the workers to stop.
    /// Workers still busy then (a task blocking its thread) are detached;
    /// every other task is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = urgent_executor::Runtime::new().unwrap();
    /// rt.spawn(async { std::thread::sleep(Duration::from_secs(3600)) });
    /// rt.shutdown_timeout(Duration::from_millis(100)); // returns
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) {
        self.shutdown(Some(timeout));
    }

    fn shutdown(&mut self, timeout: Option<Duration>) {
        let Some(exited) = self.exited.take() else {
            return;
        };
        let shared = self.handle.shared.clone();
        if scheduler::is_worker_of(&shared) && !thread::panicking() {
            panic!(
                "urgent: cannot drop or shut down a runtime from inside one of its own tasks; \
                 move the Runtime out of the runtime (drop it from the thread that created it)"
            );
        }
        shared.begin_shutdown();
        let deadline = timeout.map(|t| Instant::now() + t);
        let all_stopped = loop {
            let r = match deadline {
                Some(d) => exited.recv_deadline(d),
                None => exited
                    .recv()
                    .map_err(|_| crossbeam_channel::RecvTimeoutError::Disconnected),
            };
            match r {
                Ok(()) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break true,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => break false,
            }
        };
        let threads = std::mem::take(&mut self.threads);
        if all_stopped {
            for t in threads {
                let _ = t.join();
            }
        }
        // Drop futures with this runtime as the current one, so their
        // destructors can use `spawn` (which then cancels) and timers.
        let _current = context::set_current(self.handle.clone());
        shared.drop_all_tasks();
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown(None);
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.threads.len())
            .finish()
    }
}

impl Handle {
    /// The handle of the runtime the current thread runs in.
    ///
    /// # Panics
    ///
    /// Outside a runtime, with a message saying how to get one.
    #[track_caller]
    pub fn current() -> Handle {
        context::current_or_panic("Handle::current")
    }

    /// The handle of the current runtime, if any.
    pub fn try_current() -> Option<Handle> {
        context::try_current()
    }

    /// Spawns a future onto the runtime; it starts running at once on some
    /// worker, without being awaited.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = urgent_executor::Runtime::new().unwrap();
    /// let h = rt.handle().spawn(async { "done" });
    /// assert_eq!(rt.block_on(h).unwrap(), "done");
    /// ```
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.shared.spawn(future)
    }

    /// Runs a CPU-heavy closure as a CPU task. See
    /// [`spawn_cpu`](crate::spawn_cpu).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = urgent_executor::Runtime::new().unwrap();
    /// let h = rt.handle().spawn_cpu(|| (1..=10u64).product::<u64>());
    /// assert_eq!(rt.block_on(h).unwrap(), 3_628_800);
    /// ```
    pub fn spawn_cpu<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.shared.spawn_cpu(f)
    }

    /// Runs a closure that blocks its thread on the blocking pool. See
    /// [`task::spawn_blocking`](crate::task::spawn_blocking).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = urgent_executor::Runtime::new().unwrap();
    /// let h = rt.handle().spawn_blocking(|| std::thread::current().name().map(str::to_owned));
    /// let name = rt.block_on(h).unwrap().unwrap();
    /// assert!(name.ends_with("-blocking"), "{name}");
    /// ```
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.shared.spawn_blocking(f)
    }

    /// Spawns a future polled on a coroutine. See
    /// [`spawn_preemptible`](crate::spawn_preemptible).
    pub fn spawn_preemptible<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.shared.spawn_preemptible(future)
    }

    /// Runs `future` to completion on the current thread. See
    /// [`Runtime::block_on`].
    #[track_caller]
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let _enter = context::enter(self.clone());
        #[cfg(feature = "tokio")]
        let _tokio = self.shared.tokio().enter(&self.shared);
        block_on_thread(future)
    }

    /// A snapshot of the runtime's counters.
    pub fn metrics(&self) -> RuntimeMetrics {
        RuntimeMetrics::collect(&self.shared)
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

struct ThreadNotify {
    thread: Thread,
    notified: AtomicBool,
}

impl Wake for ThreadNotify {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.notified.swap(true, Ordering::Release) {
            self.thread.unpark();
        }
    }
}

/// How long `block_on` spins for a wake-up before it parks its thread.
const BLOCK_ON_SPIN: Duration = Duration::from_micros(5);

/// Spins for up to `BLOCK_ON_SPIN` until `notified` is set; consumes it and
/// returns true if it was.
fn spin_until_notified(notified: &AtomicBool) -> bool {
    park::spin_until(BLOCK_ON_SPIN, || {
        notified.load(Ordering::Relaxed) && notified.swap(false, Ordering::Acquire)
    })
}

/// Polls `future` on this thread, parking the thread between wake-ups.
fn block_on_thread<F: Future>(future: F) -> F::Output {
    let notify = Arc::new(ThreadNotify {
        thread: thread::current(),
        notified: AtomicBool::new(false),
    });
    let waker = Waker::from(notify.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        // A result often comes back within microseconds (a worker was
        // searching and picked the spawn up at once): spin briefly before
        // paying for a futex sleep and wake-up.
        if !spin_until_notified(&notify.notified) {
            while !notify.notified.swap(false, Ordering::Acquire) {
                thread::park();
            }
        }
    }
}
