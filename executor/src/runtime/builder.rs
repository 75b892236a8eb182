use std::io;
use std::time::Duration;

use super::config::{self, invalid};
use super::{Config, Runtime};

/// Configures and builds a [`Runtime`].
///
/// Options that are not set fall back to the environment
/// (`URGENT_WORKER_THREADS`, `URGENT_QUANTUM_US`, `URGENT_ASYNC_PREEMPT=0`),
/// then to the defaults: one worker per available CPU, a 10 ms quantum,
/// 256 KiB coroutine stacks.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let rt = urgent_executor::Builder::new()
///     .worker_threads(2)
///     .quantum(Duration::from_millis(1))
///     .thread_name("my-worker")
///     .build()
///     .unwrap();
/// assert_eq!(rt.metrics().workers(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    worker_threads: Option<usize>,
    quantum: Option<Duration>,
    stack_size: Option<usize>,
    thread_name: Option<String>,
    migrate_preempted: bool,
    no_preempt_in: Vec<String>,
    max_blocking_threads: Option<usize>,
    thread_keep_alive: Option<Duration>,
    tokio_worker_threads: Option<usize>,
    max_spare_threads: Option<usize>,
    retake_after: Option<Duration>,
    strict_preemption: bool,
}

/// The shortest quantum sysmon can honour without spending the machine on
/// signals.
pub const MIN_QUANTUM: Duration = Duration::from_micros(50);
/// The default time slice of a CPU task before it is preempted.
pub const DEFAULT_QUANTUM: Duration = Duration::from_millis(10);
/// The default for [`Builder::max_spare_threads`].
pub const DEFAULT_MAX_SPARE_THREADS: usize = 256;
/// Most spare threads a runtime may have ([`Builder::max_spare_threads`]).
pub const MAX_SPARE_THREADS: usize = 1024;
/// The default for [`Builder::retake_after`].
pub const DEFAULT_RETAKE_AFTER: Duration = Duration::from_millis(2);
/// The default coroutine stack size.
pub const DEFAULT_STACK_SIZE: usize = urgent_stackful::DEFAULT_STACK_SIZE;
/// The smallest coroutine stack size accepted.
pub const MIN_STACK_SIZE: usize = urgent_stackful::MIN_STACK_SIZE;

impl Builder {
    /// A builder with every option unset.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// The number of worker threads (default: available parallelism, or
    /// `URGENT_WORKER_THREADS`). Zero is rejected by [`build`](Self::build).
    pub fn worker_threads(&mut self, n: usize) -> &mut Self {
        self.worker_threads = Some(n);
        self
    }

    /// How long a CPU task runs before sysmon preempts it (default 10 ms, or
    /// `URGENT_QUANTUM_US`). Below 50 µs is rejected by [`build`](Self::build).
    pub fn quantum(&mut self, quantum: Duration) -> &mut Self {
        self.quantum = Some(quantum);
        self
    }

    /// Stack size of CPU-task coroutines, rounded up to whole pages
    /// (default 256 KiB). [`build`](Self::build) rejects sizes below
    /// [`urgent_preempt::min_stack_size`] (about 28 KiB; more on CPUs with
    /// large AVX-512/AMX state), on which a task could never be preempted,
    /// unless async preemption is off.
    pub fn stack_size(&mut self, bytes: usize) -> &mut Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Name prefix of the worker threads (default `urgent-worker`); workers
    /// are named `<prefix>-<index>`.
    pub fn thread_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.thread_name = Some(name.into());
        self
    }

    /// Whether a preempted CPU task may resume on another worker (Go's
    /// behaviour). Off by default: code compiled to keep a thread-local's
    /// address in a register would then touch the first thread's
    /// thread-locals from the second thread. Turn it on only for CPU tasks
    /// that use no thread-locals.
    pub fn migrate_preempted(&mut self, migrate: bool) -> &mut Self {
        self.migrate_preempted = migrate;
        self
    }

    /// Never preempt code whose demangled function path starts with
    /// `path_prefix` (for example `my_crate::ffi::`). Adds to the built-in
    /// deny list (std, the runtime, tokio, mio, allocators, ...).
    pub fn no_preempt_in(&mut self, path_prefix: impl Into<String>) -> &mut Self {
        self.no_preempt_in.push(path_prefix.into());
        self
    }

    /// Most threads the [`spawn_blocking`](crate::task::spawn_blocking)
    /// pool runs at once (default
    /// [`MAX_BLOCKING_THREADS`](crate::task::MAX_BLOCKING_THREADS), 512);
    /// further closures wait for one to finish. Zero is rejected by
    /// [`build`](Self::build).
    ///
    /// ```
    /// let rt = urgent_executor::Builder::new().max_blocking_threads(4).build().unwrap();
    /// assert_eq!(rt.block_on(rt.spawn_blocking(|| 7)).unwrap(), 7);
    /// ```
    pub fn max_blocking_threads(&mut self, n: usize) -> &mut Self {
        self.max_blocking_threads = Some(n);
        self
    }

    /// How long an idle `spawn_blocking` thread waits for work before it
    /// exits (default
    /// [`BLOCKING_KEEP_ALIVE`](crate::task::BLOCKING_KEEP_ALIVE), 10 s).
    pub fn thread_keep_alive(&mut self, keep_alive: Duration) -> &mut Self {
        self.thread_keep_alive = Some(keep_alive);
        self
    }

    /// Worker threads of the background tokio runtime that runs what
    /// `tokio::spawn` is given inside urgent (default: as many as
    /// [`worker_threads`](Self::worker_threads), so an unchanged tokio
    /// program keeps tokio's throughput). Zero is rejected by
    /// [`build`](Self::build).
    ///
    /// ```
    /// let rt = urgent_executor::Builder::new().tokio_worker_threads(1).build().unwrap();
    /// assert_eq!(rt.block_on(async { tokio::spawn(async { 3 }).await.unwrap() }), 3);
    /// ```
    pub fn tokio_worker_threads(&mut self, n: usize) -> &mut Self {
        self.tokio_worker_threads = Some(n);
        self
    }

    /// Most spare threads alive at once (default
    /// [`DEFAULT_MAX_SPARE_THREADS`], at most [`MAX_SPARE_THREADS`]). A spare
    /// thread takes over a worker's core while the worker's thread cannot
    /// use it: stuck in one poll of a future, blocked in the kernel inside a
    /// CPU task, or parked with a CPU task preempted where it holds
    /// thread-affine state (Go's `retake`/`handoffp` and locked M). Spares
    /// run futures, never start CPU tasks, and exit after
    /// [`thread_keep_alive`](Self::thread_keep_alive) idle. At the cap a core
    /// stays with its thread (one warning on stderr,
    /// `metrics().spare_threads_refused()`). Zero turns hand-overs off.
    pub fn max_spare_threads(&mut self, n: usize) -> &mut Self {
        self.max_spare_threads = Some(n);
        self
    }

    /// How long a worker thread may stay in one poll of a future (blocked
    /// or computing), or blocked in the kernel inside a CPU task sysmon
    /// cannot preempt, before sysmon gives its core to a spare thread
    /// (default [`DEFAULT_RETAKE_AFTER`], 2 ms). At least 100 µs.
    pub fn retake_after(&mut self, after: Duration) -> &mut Self {
        self.retake_after = Some(after);
        self
    }

    /// The strict mode: every preemption parks the worker thread with its
    /// task (its core moves to a spare thread) instead of switching
    /// coroutines on the thread, so no task ever runs on a thread while
    /// another task's `thread_local!` borrows are live there. The price: a
    /// thread per concurrently preempted task, and a thread hand-over (tens
    /// of µs) instead of a coroutine switch per preemption. Off by default:
    /// only preemptions at points that hold thread-affine state (std's
    /// locks, stdio, a running panic...) park the thread.
    pub fn strict_preemption(&mut self, strict: bool) -> &mut Self {
        self.strict_preemption = strict;
        self
    }

    /// Builds the runtime and starts its workers.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for zero workers, zero blocking threads, a quantum
    /// under 50 µs, a bad environment variable or a stack size that is too
    /// small; any I/O error
    /// from creating the driver or the threads.
    pub fn build(&mut self) -> io::Result<Runtime> {
        Runtime::from_config(self.config()?)
    }

    pub(crate) fn config(&self) -> io::Result<Config> {
        let worker_threads = match self.worker_threads {
            Some(n) => n,
            None => match config::env_worker_threads()? {
                Some(n) => n,
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
        };
        if worker_threads == 0 {
            return Err(invalid(
                "urgent: worker_threads must be at least 1 (got 0); use Builder::worker_threads(1) \
                 or more"
                    .into(),
            ));
        }
        let quantum = match self.quantum {
            Some(q) => q,
            None => config::env_quantum()?.unwrap_or(DEFAULT_QUANTUM),
        };
        if quantum < MIN_QUANTUM {
            return Err(invalid(format!(
                "urgent: quantum must be at least {MIN_QUANTUM:?} (got {quantum:?}); use \
                 Builder::quantum(Duration::from_millis(10)) or another value >= 50 µs"
            )));
        }
        let max_blocking_threads = self
            .max_blocking_threads
            .unwrap_or(crate::task::MAX_BLOCKING_THREADS);
        if max_blocking_threads == 0 {
            return Err(invalid(
                "urgent: max_blocking_threads must be at least 1 (got 0); leave it unset for the \
                 default of 512"
                    .into(),
            ));
        }
        let max_spare_threads = self.max_spare_threads.unwrap_or(DEFAULT_MAX_SPARE_THREADS);
        if max_spare_threads > MAX_SPARE_THREADS {
            return Err(invalid(format!(
                "urgent: max_spare_threads is at most {MAX_SPARE_THREADS} (got \
                 {max_spare_threads}); a core stuck with its thread beyond that many is better \
                 served by moving the blocking work to spawn_blocking"
            )));
        }
        let retake_after = self.retake_after.unwrap_or(DEFAULT_RETAKE_AFTER);
        if retake_after < Duration::from_micros(100) {
            return Err(invalid(format!(
                "urgent: retake_after must be at least 100 µs (got {retake_after:?}); sysmon \
                 would wake too often. Leave it unset for the default of 2 ms"
            )));
        }
        let tokio_worker_threads = self.tokio_worker_threads.unwrap_or(worker_threads);
        if tokio_worker_threads == 0 {
            return Err(invalid(
                "urgent: tokio_worker_threads must be at least 1 (got 0); leave it unset to run \
                 as many tokio threads as urgent workers"
                    .into(),
            ));
        }
        let stack_size = self.stack_size.unwrap_or(DEFAULT_STACK_SIZE);
        let stack_size = urgent_stackful::validate_stack_size(stack_size)?;
        let async_preempt = config::env_async_preempt();
        // Below this the preemption trampoline never fits: every task would
        // silently be unpreemptible.
        let min = urgent_preempt::min_stack_size();
        if async_preempt && stack_size < min {
            return Err(invalid(format!(
                "urgent: a CPU task stack of {stack_size} bytes is too small to preempt its task \
                 (the preemption trampoline saves {} bytes of CPU state and needs {} KiB of \
                 headroom below the task's frames); the minimum is {min} bytes ({} KiB): raise \
                 Builder::stack_size to at least that, or set URGENT_ASYNC_PREEMPT=0 for \
                 cooperative preemption only",
                urgent_preempt::diagnostics::xsave_info().0,
                urgent_preempt::HOOK_HEADROOM / 1024,
                min / 1024
            )));
        }
        Ok(Config {
            worker_threads,
            quantum,
            stack_size,
            thread_name: self
                .thread_name
                .clone()
                .unwrap_or_else(|| "urgent-worker".to_string()),
            migrate_preempted: self.migrate_preempted,
            no_preempt_in: self.no_preempt_in.clone(),
            max_blocking_threads,
            tokio_worker_threads,
            max_spare_threads,
            retake_after: (max_spare_threads > 0).then_some(retake_after),
            strict_preemption: self.strict_preemption,
            blocking_keep_alive: self
                .thread_keep_alive
                .unwrap_or(crate::task::BLOCKING_KEEP_ALIVE),
            async_preempt,
            schedtrace: config::env_schedtrace()?,
        })
    }
}
