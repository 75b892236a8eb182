//! The multi-threaded scheduler: cores, worker threads, run queues, stealing
//! and parking.
//!
//! The pieces, each in its own file:
//! - `core.rs`: a core (Go's P) — local queue, LIFO slot, deferred yields,
//!   tick — as a value behind an ownership word, so that a core can change
//!   threads;
//! - `worker.rs`: worker threads (Go's M) and the worker loop in named
//!   steps; CPU tasks bound to their thread; the thread park;
//! - `threads.rs`: which thread holds which core, spare threads, and how a
//!   core changes threads (retake, thread park, hand-back);
//! - `owner.rs`: the ownership word a core carries, so a core can be handed
//!   to another thread while its first thread is inside a poll;
//! - `idle.rs`: idle and searching cores, and the Dekker pair that keeps
//!   wake-ups from being lost;
//! - this file: [`Shared`], what every thread of a runtime shares, split by
//!   concern (queues, idle cores, driver and timers, blocking pool, tokio
//!   companion, preemption), with the spawn API and wake routing.
//!
//! # Where a scheduled task goes
//!
//! | who schedules                      | kind    | where                                  |
//! |------------------------------------|---------|----------------------------------------|
//! | a worker thread owning its core    | spawn   | back of its core's local queue         |
//! | a worker thread owning its core    | wake    | its core's LIFO slot (the old one moves to the local queue) |
//! | a worker thread owning its core    | yield   | its core's `deferred` list             |
//! | any other thread, or a worker whose core moved on | any | the global injector       |
//! | anyone, for a CPU task bound to thread T | any | T's pinned queue (T itself) or T's inbox |
//!
//! A yielded task is *deferred*: it waits in a private list that is moved to
//! the back of the local queue only when the core has nothing else to run,
//! or at the global-queue tick. Otherwise busy tasks that yield in a loop
//! keep the local queue non-empty forever and the injector is only looked at
//! every 61st tick (tokio defers yields the same way).
//!
//! A thread takes its pinned queue after its core's local queue, and first
//! every `PINNED_INTERVAL` ticks, so neither side starves.

mod core;
mod idle;
mod threads;
#[cfg(all(test, loom))]
pub(crate) use idle::loom_idle;
mod owner;
mod worker;

pub(crate) use worker::run as run_worker;
pub(crate) use worker::{is_worker_of, park_current_thread};

use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_deque::Injector;

use self::core::{bump, CoreShared};
use self::idle::Idle;
use self::threads::{Spares, ThreadShared, NO_CORE};
use super::driver::DriverHandle;
use super::Config;
use crate::cpu::CpuFuture;
use crate::sync::lock;
use crate::task::{self, Header, JoinHandle, OwnedTasks, Schedule, ScheduleKind, TaskRef};

pub(crate) use self::core::CoreMetrics;

/// State shared by every thread of one runtime.
pub(crate) struct Shared {
    config: Config,
    /// Every live task, so shutdown can drop them.
    owned: OwnedTasks,
    /// Queues: the global injector, the cores, the threads' inboxes.
    injector: Injector<TaskRef>,
    cores: Box<[CoreShared]>,
    threads: Box<[ThreadShared]>,
    /// Tasks spawned from threads that hold no core of this runtime.
    external_spawns: AtomicU64,
    /// Spare threads that stand in for a worker thread (`threads.rs`).
    spares: Spares,
    /// Cores handed to another thread: retakes, thread parks, hand-backs.
    handoffs: HandoffMetrics,
    /// Time origin of `now_ns`.
    epoch: Instant,
    /// Idle and searching cores.
    idle: Idle,
    shutdown: AtomicBool,
    /// The mio driver, the timers and the socket readiness slots.
    driver: DriverHandle,
    /// sysmon and the per-thread preemption slots.
    preemptor: urgent_preempt::Preemptor,
    /// Threads for `spawn_blocking`.
    blocking: crate::task::blocking::BlockingPool,
    /// The background tokio runtime.
    #[cfg(feature = "tokio")]
    tokio: crate::io::tokio_compat::TokioCompat,
}

impl Shared {
    /// Builds the shared state; the caller starts one worker thread per core
    /// (`run_worker(shared, i, i)`).
    pub(crate) fn new(config: Config) -> std::io::Result<Arc<Shared>> {
        let n = config.worker_threads;
        let driver = DriverHandle::new()?;
        crate::preempt_glue::init_process();
        let preemptor = urgent_preempt::Preemptor::start(
            urgent_preempt::Config {
                quantum: config.quantum,
                async_preempt: config.async_preempt,
                deny_prefixes: config.no_preempt_in.clone(),
                retake_after: config.retake_after,
            },
            n,
        )?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shared = Arc::new_cyclic(|weak| Shared {
            owned: OwnedTasks::new(),
            injector: Injector::new(),
            cores: (0..n).map(CoreShared::new).collect(),
            threads: (0..n + config.max_spare_threads)
                .map(|i| ThreadShared::new(if i < n { i } else { NO_CORE }))
                .collect(),
            external_spawns: AtomicU64::new(0),
            spares: Spares::new(config.max_spare_threads),
            handoffs: HandoffMetrics::default(),
            epoch: Instant::now(),
            idle: Idle::new(n, cpus),
            shutdown: AtomicBool::new(false),
            driver,
            preemptor,
            blocking: crate::task::blocking::BlockingPool::new(
                (
                    config.thread_name.clone(),
                    config.max_blocking_threads,
                    config.blocking_keep_alive,
                ),
                weak.clone(),
            ),
            #[cfg(feature = "tokio")]
            tokio: crate::io::tokio_compat::TokioCompat::new(),
            config,
        });
        // sysmon calls this when a thread should lose its core. A weak
        // reference: sysmon must not keep the runtime alive.
        let weak = Arc::downgrade(&shared);
        shared.preemptor.set_retake_handler(move |slot| {
            if let Some(shared) = weak.upgrade() {
                shared.retake(slot);
            }
        });
        Ok(shared)
    }

    // ---- accessors, by concern ----

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn driver(&self) -> &DriverHandle {
        &self.driver
    }

    pub(crate) fn preemptor(&self) -> &urgent_preempt::Preemptor {
        &self.preemptor
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn tokio(&self) -> &crate::io::tokio_compat::TokioCompat {
        &self.tokio
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Acquire)
    }

    pub(crate) fn cores(&self) -> &[CoreShared] {
        &self.cores
    }

    fn core(&self, i: usize) -> &CoreShared {
        &self.cores[i]
    }

    fn injector(&self) -> &Injector<TaskRef> {
        &self.injector
    }

    fn idle(&self) -> &Idle {
        &self.idle
    }

    /// Live tasks (spawned and not yet complete).
    pub(crate) fn live_tasks(&self) -> usize {
        self.owned.len()
    }

    /// Tasks spawned, over every core and from outside.
    pub(crate) fn tasks_spawned(&self) -> u64 {
        self.sum_metrics(|m| &m.spawned) + self.external_spawns.load(Relaxed)
    }

    /// A counter summed over the cores.
    pub(crate) fn sum_metrics(&self, f: impl Fn(&CoreMetrics) -> &AtomicU64) -> u64 {
        self.cores.iter().map(|c| f(&c.metrics).load(Relaxed)).sum()
    }

    /// (parked cores, searching cores), for schedtrace.
    pub(crate) fn idle_counts(&self) -> (usize, usize) {
        self.idle.counts()
    }

    pub(crate) fn injector_len(&self) -> usize {
        self.injector.len()
    }

    /// (stealable queue length of core `i`, bound CPU tasks waiting for
    /// thread `i`), for schedtrace.
    pub(crate) fn queue_lens(&self, i: usize) -> (usize, usize) {
        let t = &self.threads[i];
        (
            self.cores[i].stealable_len(),
            t.pinned_len.load(Relaxed) + t.inbox_len.load(Relaxed),
        )
    }

    fn publish_pinned_len(&self, thread: usize, len: usize) {
        self.threads[thread].pinned_len.store(len, Relaxed);
    }

    // ---- spawning ----

    /// Spawns a future onto this runtime.
    pub(crate) fn spawn<F>(self: &Arc<Self>, future: F) -> JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.register(future, false, |t| self.schedule(t, ScheduleKind::Spawn))
    }

    /// Spawns a closure as a CPU task, on a coroutine.
    pub(crate) fn spawn_cpu<F, R>(self: &Arc<Self>, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let fut = CpuFuture::new(f, self.config.stack_size);
        self.register(fut, true, |t| self.schedule(t, ScheduleKind::Spawn))
    }

    /// Spawns a future polled on a coroutine, as a CPU task.
    pub(crate) fn spawn_preemptible<F>(self: &Arc<Self>, future: F) -> JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_cpu(move || crate::wait(future))
    }

    pub(crate) fn spawn_blocking<F, R>(self: &Arc<Self>, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.register(crate::task::blocking::BlockingTask::new(f), false, |t| {
            self.blocking.submit(t)
        })
    }

    /// Allocates a task, adds it to the owned list and hands it to `queue`
    /// (a run queue, or the blocking pool); cancels it instead if the
    /// runtime is shutting down.
    fn register<F>(
        self: &Arc<Self>,
        future: F,
        cpu: bool,
        queue: impl FnOnce(TaskRef),
    ) -> JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (task, join) = task::new_task(future, self.clone(), cpu);
        match self.owned.insert(task.clone()) {
            Ok(()) => {
                self.count_spawn();
                queue(task);
            }
            Err(task) => task.shutdown(),
        }
        join
    }

    fn count_spawn(self: &Arc<Self>) {
        let counted =
            worker::with_worker(self, |w| bump(&self.cores[w.core.get()].metrics.spawned, 1));
        if counted.is_none() {
            self.external_spawns.fetch_add(1, Relaxed);
        }
    }

    // ---- wake routing ----

    /// Queues a task that is SCHEDULED and in no run queue (see the table
    /// in the module docs).
    fn route(self: &Arc<Self>, task: TaskRef, kind: ScheduleKind) {
        if self.is_shutdown() {
            // Shutdown cancels every owned task; this queue entry would only
            // be dropped later.
            return;
        }
        if task.header().cpu {
            let bound = task.header().bound_thread.load(Acquire);
            if bound != usize::MAX {
                return self.schedule_bound(task, bound);
            }
            if kind == ScheduleKind::Yield && self.config.migrate_preempted {
                return self.push_injector(task);
            }
        }
        let mut task = Some(task);
        // This runs inside polls, CPU tasks included: no preemption while
        // the core is locked (see `sync::Locked`).
        let _no_preempt = urgent_preempt::disable();
        let pushed = worker::with_worker(self, |w| {
            let home = &self.cores[w.core.get()];
            let Some(mut core) = home.try_lock_for(w.thread) else {
                return false;
            };
            let stealable = core.push(take(&mut task), kind, &self.injector);
            drop(core);
            if stealable {
                self.notify_parked();
            }
            true
        });
        if pushed != Some(true) {
            self.push_injector(take(&mut task));
        }
    }

    fn push_injector(&self, task: TaskRef) {
        self.injector.push(task);
        self.notify_parked();
    }

    fn schedule_bound(self: &Arc<Self>, task: TaskRef, thread: usize) {
        let mut task = Some(task);
        let pushed = worker::with_worker(self, |w| {
            if w.thread != thread {
                return false;
            }
            let Ok(mut pinned) = w.pinned.try_borrow_mut() else {
                return false;
            };
            pinned.push_back(take(&mut task));
            self.publish_pinned_len(thread, pinned.len());
            true
        });
        if pushed == Some(true) {
            return;
        }
        let t = &self.threads[thread];
        lock(&t.inbox).push_back(take(&mut task));
        t.inbox_len.fetch_add(1, SeqCst);
        match t.core.load(Acquire) {
            // Waiting for its core (or parked with a task): wake it so it
            // asks for the core again.
            NO_CORE => t.notify(),
            core => self.cores[core].parker.unpark(&self.driver),
        }
    }

    /// Moves thread `thread`'s inbox into its pinned queue.
    fn take_inbox(&self, thread: usize, pinned: &mut VecDeque<TaskRef>) {
        let t = &self.threads[thread];
        if t.inbox_len.load(Acquire) > 0 {
            let mut inbox = lock(&t.inbox);
            t.inbox_len.store(0, Release);
            pinned.extend(inbox.drain(..));
        }
    }

    /// Wakes one parked core if none is searching (the scheduler's half of
    /// the Dekker pair in `idle.rs`).
    pub(crate) fn notify_parked(&self) {
        fence(SeqCst);
        if let Some(i) = self.idle.core_to_notify() {
            self.cores[i].parker.unpark(&self.driver);
        }
    }

    /// Work that came from outside the cores' own queues: the injector, or
    /// bound CPU tasks sent to thread `thread`'s inbox.
    fn has_external_work(&self, thread: usize) -> bool {
        !self.injector.is_empty() || self.threads[thread].inbox_len.load(SeqCst) > 0
    }

    fn has_work(&self) -> bool {
        !self.injector.is_empty()
            || self.cores.iter().any(CoreShared::has_stealable)
            || self.threads.iter().any(|t| t.inbox_len.load(SeqCst) > 0)
    }

    // ---- cores changing threads (threads.rs) ----

    /// Number of worker threads (and cores).
    pub(crate) fn workers(&self) -> usize {
        self.cores.len()
    }

    /// Nanoseconds since the runtime started.
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Moves core `core` from thread `from` to thread `to` and wakes `to`;
    /// false if `from` no longer holds it.
    ///
    /// The ownership word is the truth; `ThreadShared::core` is a hint
    /// written for the receiver only (the thread that loses the core clears
    /// its own hint when it notices). Writing the loser's hint here could
    /// land after a later hand-over and wipe a hint that is right by then.
    fn hand_core(&self, core: usize, from: usize, to: usize) -> bool {
        if !self.cores[core].hand_over(from, to) {
            return false;
        }
        self.threads[to].core.store(core, Release);
        self.handoffs.handoffs.fetch_add(1, Relaxed);
        self.threads[to].notify();
        // Should `from` have gone idle on the core's parker meanwhile, wake
        // it: it finds the core gone and stops using that parker.
        self.cores[core].parker.unpark(&self.driver);
        true
    }

    /// Called by sysmon: thread `thread` (a slot index) is stuck in one poll
    /// of a future, or blocked in the kernel inside a CPU task; give its
    /// core to a spare thread so the core's other tasks run (Go's
    /// `retake` + `handoffp`).
    fn retake(self: &Arc<Self>, thread: usize) {
        if self.is_shutdown() || thread >= self.threads.len() {
            return;
        }
        let core = self.threads[thread].core.load(Acquire);
        if core == NO_CORE || !self.threads[thread].polling.load(Acquire) {
            return;
        }
        let Some(spare) = self.spare_thread("a poll runs long or blocks") else {
            return;
        };
        debug_assert_ne!(spare, thread, "a thread holding a core was listed idle");
        if spare != thread && self.hand_core(core, thread, spare) {
            self.handoffs.retakes.fetch_add(1, Relaxed);
        } else {
            self.spares.put_idle(spare);
        }
    }

    /// A spare thread waiting for a core: an idle one, or a new one (under
    /// the cap; at the cap, `None` after one warning on stderr).
    fn spare_thread(self: &Arc<Self>, what: &str) -> Option<usize> {
        if let Some(t) = self.spares.take_idle() {
            return Some(t);
        }
        if !self.spares.reserve() {
            self.spares.refuse(what);
            return None;
        }
        let started = self.preemptor.add_slot().and_then(|slot| {
            let id = slot.index();
            if id >= self.threads.len() {
                return Err(std::io::Error::other("no thread record for this slot"));
            }
            let t = &self.threads[id];
            t.core.store(NO_CORE, Relaxed);
            t.parked.store(false, Relaxed);
            let shared = self.clone();
            std::thread::Builder::new()
                .name(format!("{}-spare", self.config.thread_name))
                .spawn(move || worker::run_spare(shared, id, slot))
                .map(|_| id)
        });
        match started {
            Ok(id) => Some(id),
            Err(e) => {
                self.spares.alive.fetch_sub(1, AcqRel);
                eprintln!("urgent: could not start a spare thread ({e}); the core stays put");
                None
            }
        }
    }

    // ---- lifecycle ----

    /// Begins shutdown: no more scheduling, every core unparked.
    pub(crate) fn begin_shutdown(&self) {
        if self.shutdown.swap(true, SeqCst) {
            return;
        }
        for c in self.cores.iter() {
            c.parker.unpark(&self.driver);
        }
        for t in self.threads.iter() {
            t.notify();
        }
        self.driver.io().shutdown();
        #[cfg(feature = "tokio")]
        self.tokio.shutdown();
        self.blocking.shutdown();
        self.driver.wake();
    }

    /// Drops every task still owned (workers have stopped, or some are
    /// stuck), and whatever the injector and the inboxes hold.
    pub(crate) fn drop_all_tasks(&self) {
        for task in self.owned.close() {
            task.shutdown();
        }
        while !self.injector.steal().is_empty() {}
        for t in self.threads.iter() {
            let drained: Vec<TaskRef> = lock(&t.inbox).drain(..).collect();
            drop(drained);
        }
    }

    /// Fires due timers and, if sockets are registered, polls them without
    /// blocking. Called by busy threads every `GLOBAL_QUEUE_INTERVAL` ticks
    /// and after each CPU-task run.
    pub(crate) fn maintenance(&self) {
        self.driver.maintenance();
    }
}

/// Counters of cores changing threads.
#[derive(Default)]
pub(crate) struct HandoffMetrics {
    /// Cores sysmon took from a stuck thread and gave to a spare.
    pub(crate) retakes: AtomicU64,
    /// Threads parked with a CPU task preempted at a thread-affine point.
    pub(crate) thread_parks: AtomicU64,
    /// Every move of a core to another thread (retakes, thread parks,
    /// hand-backs).
    pub(crate) handoffs: AtomicU64,
}

impl Shared {
    pub(crate) fn handoff_metrics(&self) -> &HandoffMetrics {
        &self.handoffs
    }

    /// (spare threads alive, refused for lack of one).
    pub(crate) fn spare_counts(&self) -> (usize, u64) {
        (
            self.spares.alive.load(Relaxed),
            self.spares.refused.load(Relaxed),
        )
    }

    /// For schedtrace: the thread holding core `i`, and how many threads
    /// are parked with a CPU task.
    pub(crate) fn core_holder(&self, i: usize) -> Option<usize> {
        self.cores[i].owner()
    }

    pub(crate) fn parked_threads(&self) -> usize {
        self.threads
            .iter()
            .filter(|t| t.parked.load(Relaxed))
            .count()
    }
}

/// Moves the task out of an `Option` filled just before (lets a closure that
/// may decline hand it back without cloning the `Arc`).
fn take(task: &mut Option<TaskRef>) -> TaskRef {
    task.take()
        .expect("urgent internal error: task routed twice")
}

/// Tasks reach their runtime through this (see `task::Schedule`).
impl Schedule for Arc<Shared> {
    fn schedule(&self, task: TaskRef, kind: ScheduleKind) {
        self.route(task, kind);
    }

    fn release(&self, task: &Header) {
        self.owned.remove(task);
    }
}
