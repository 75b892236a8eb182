//! Runtime counters.

use std::sync::atomic::Ordering::Relaxed;

use crate::runtime::scheduler::Shared;

pub use urgent_preempt::Declines;

/// A snapshot of a runtime's counters, from
/// [`Runtime::metrics`](crate::Runtime::metrics) or
/// [`Handle::metrics`](crate::Handle::metrics).
///
/// # Examples
///
/// ```
/// let rt = urgent_executor::Builder::new().worker_threads(2).build().unwrap();
/// rt.block_on(async { urgent_executor::spawn(async {}).await.unwrap() });
/// let m = rt.metrics();
/// assert_eq!(m.workers(), 2);
/// assert!(m.tasks_spawned() >= 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct RuntimeMetrics {
    workers: usize,
    tasks_spawned: u64,
    polls: u64,
    steals: u64,
    preempt_requests: u64,
    preemptions: u64,
    preempt_declined: u64,
    long_polls: u64,
    declines: Declines,
    unacknowledged_signals: u64,
    retakes: u64,
    thread_parks: u64,
    handoffs: u64,
    spare_threads: usize,
    spare_threads_refused: u64,
    live_tasks: usize,
    tokio_tasks: usize,
}

impl RuntimeMetrics {
    pub(crate) fn collect(shared: &Shared) -> RuntimeMetrics {
        let p = shared.preemptor().metrics();
        RuntimeMetrics {
            workers: shared.cores().len(),
            tasks_spawned: shared.tasks_spawned(),
            polls: shared.sum_metrics(|m| &m.polls),
            steals: shared.sum_metrics(|m| &m.steals),
            preempt_requests: p.preempt_requests,
            preemptions: p.preemptions,
            preempt_declined: p.preempt_declined,
            long_polls: p.long_polls,
            declines: p.declines,
            unacknowledged_signals: p.unacknowledged_signals,
            retakes: shared.handoff_metrics().retakes.load(Relaxed),
            thread_parks: shared.handoff_metrics().thread_parks.load(Relaxed),
            handoffs: shared.handoff_metrics().handoffs.load(Relaxed),
            spare_threads: shared.spare_counts().0,
            spare_threads_refused: shared.spare_counts().1,
            live_tasks: shared.live_tasks(),
            #[cfg(feature = "tokio")]
            tokio_tasks: shared.tokio().alive_tasks(),
            #[cfg(not(feature = "tokio"))]
            tokio_tasks: 0,
        }
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Tasks spawned since the runtime started (futures and CPU tasks).
    pub fn tasks_spawned(&self) -> u64 {
        self.tasks_spawned
    }

    /// Tasks that have been spawned and not yet completed.
    pub fn live_tasks(&self) -> usize {
        self.live_tasks
    }

    /// Tasks alive on the runtime's background tokio runtime: futures
    /// started with `tokio::spawn` (or `tokio::task::spawn_blocking`) from
    /// inside urgent. They run on the background tokio threads, not on
    /// urgent's workers, and are never preempted; a program moved from
    /// `#[tokio::main]` should spawn with `urgent::spawn` instead. Always 0
    /// without the `tokio` feature.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// let rt = urgent_executor::Runtime::new().unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// rt.block_on(async move {
    ///     // The trap: this future runs on the background tokio runtime.
    ///     tokio::spawn(async move {
    ///         while rx.try_recv().is_err() {
    ///             tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    ///         }
    ///     });
    /// });
    /// assert_eq!(rt.metrics().tokio_tasks(), 1);
    /// tx.send(()).unwrap();
    /// # }
    /// ```
    pub fn tokio_tasks(&self) -> usize {
        self.tokio_tasks
    }

    /// Task polls (and coroutine resumes) by the workers.
    pub fn polls(&self) -> u64 {
        self.polls
    }

    /// Successful steals from another worker's queue.
    pub fn steals(&self) -> u64 {
        self.steals
    }

    /// Times sysmon asked a worker to preempt its CPU task.
    pub fn preempt_requests(&self) -> u64 {
        self.preempt_requests
    }

    /// CPU tasks actually preempted by the signal.
    pub fn preemptions(&self) -> u64 {
        self.preemptions
    }

    /// Preemption signals that arrived at an unsafe point (in libc, std, the
    /// runtime, or under a `NoPreempt` guard) and were retried later.
    pub fn preempt_declined(&self) -> u64 {
        self.preempt_declined
    }

    /// [`preempt_declined`](Self::preempt_declined), split by reason: where
    /// the handler found the task when it declined (a frame holding
    /// thread-affine state, an allocator or libc internal, a `NoPreempt`
    /// guard, a stack walk it could not finish...). A declined request is
    /// retried within about 150 µs.
    ///
    /// ```
    /// let rt = urgent_executor::Runtime::new().unwrap();
    /// let d = rt.metrics().declines();
    /// assert_eq!(d.thread_affine + d.never_frame, 0);
    /// ```
    pub fn declines(&self) -> Declines {
        self.declines
    }

    /// Episodes in which sysmon found its preemption signals to a worker
    /// unacknowledged, because another SIGURG handler replaced urgent's or
    /// the thread blocks SIGURG (the cause and the fix are printed once on
    /// stderr). Async preemption cannot work there; `checkpoint()` still
    /// does.
    pub fn unacknowledged_signals(&self) -> u64 {
        self.unacknowledged_signals
    }

    /// Cores sysmon took from a worker thread stuck in one poll of a future
    /// (blocked or computing) or blocked in the kernel inside a CPU task,
    /// and gave to a spare thread so the core's other tasks run (Go's
    /// `retake`). See `Builder::retake_after`.
    pub fn retakes(&self) -> u64 {
        self.retakes
    }

    /// Preemptions that parked their worker thread with the task on it
    /// (the task held thread-affine state, or the runtime is strict) while
    /// a spare thread ran the core.
    pub fn thread_parks(&self) -> u64 {
        self.thread_parks
    }

    /// Every move of a core to another thread: retakes, thread parks and
    /// the hand-backs that end them.
    pub fn handoffs(&self) -> u64 {
        self.handoffs
    }

    /// Spare threads alive now.
    pub fn spare_threads(&self) -> usize {
        self.spare_threads
    }

    /// Retakes and thread parks that found every spare thread in use
    /// (`Builder::max_spare_threads`); the core stayed with its thread.
    pub fn spare_threads_refused(&self) -> u64 {
        self.spare_threads_refused
    }

    /// Polls of plain futures that ran past the quantum (never preempted:
    /// move such work to `spawn_cpu` or `spawn_preemptible`).
    pub fn long_polls(&self) -> u64 {
        self.long_polls
    }
}
