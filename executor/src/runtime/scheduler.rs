//! The multi-threaded scheduler: workers, run queues, stealing and parking.
//!
//! # Queues
//!
//! Each worker owns a FIFO local queue (a crossbeam deque; others steal half
//! of it when idle, bounded to `LOCAL_QUEUE_CAP` by spilling half into the
//! global injector) and a LIFO slot that holds the task most recently woken
//! by the running task (message passing: the receiver runs next, while the
//! data is hot). The LIFO slot is not stealable and at most
//! `MAX_LIFO_POLLS` tasks in a row come from it, so a ping-pong pair cannot
//! starve the local queue. Every `GLOBAL_QUEUE_INTERVAL`th tick a worker
//! looks at the injector first (Go's `schedtick % 61`) and turns the timers,
//! so nothing starves there while every worker is busy.
//!
//! A yielded task is *deferred*: it waits in a private list that is moved to
//! the back of the local queue only when the worker has nothing else to run,
//! or at the global-queue tick. Otherwise busy tasks that yield in a loop keep
//! the local queue non-empty forever and the global queue is only looked at
//! every 61st tick (tokio defers yields the same way).
//!
//! # Where a scheduled task goes
//!
//! | who schedules           | kind    | where                               |
//! |-------------------------|---------|-------------------------------------|
//! | a worker of the runtime | spawn   | back of its local queue             |
//! | a worker of the runtime | wake    | its LIFO slot (the old one moves to the local queue) |
//! | a worker of the runtime | yield   | its `deferred` list                 |
//! | any other thread        | any     | the global injector                 |
//!
//! CPU tasks are the exception once they have first run: they are *bound* to
//! that worker (thread-locals the compiler cached in registers must stay
//! valid) and go to its non-stealable `pinned` queue, through its `inbox`
//! when scheduled from another thread, which then unparks that worker
//! directly. With `migrate_preempted(true)` they stay unbound and a
//! preempted one goes to the global injector (Go's `gopreempt_m`). A worker
//! takes its pinned queue after its local queue, and first every
//! `PINNED_INTERVAL` ticks, so neither side starves.
//!
//! # Idle workers (Go's `nmspinning`, tokio's "searching")
//!
//! A worker with nothing to run becomes *searching* (steals from others and
//! the injector) if fewer than half the workers already search, and parks
//! otherwise. New work wakes at most one parked worker, and only when no
//! worker is searching: a searcher will find it. A searcher that finds work
//! and was the last one wakes another parked worker if more work is still
//! queued behind it. Lost wake-ups are excluded by a Dekker pair: a parking
//! worker registers as idle (or a searcher stops counting as one), then
//! (SeqCst fence) re-checks every queue; a scheduler pushes, then (SeqCst
//! fence) reads the idle and searching counts. At least one of the two sees
//! the other.
//!
//! A searcher that found nothing keeps searching for up to `SPIN` (Go's
//! spinning Ms) before it parks: work that arrives meanwhile, typically the
//! next spawn from a thread that just got a result back, is picked up
//! without a futex wake-up on either side, and since the spinner still
//! counts as searching, the spawner makes no wake-up call at all. At most
//! half the workers search, so at most half of them spin, and only for `SPIN`
//! per trip to idle, and not when sockets are registered and no other worker
//! waits in the driver (this one would have to, or readiness would go unseen
//! while it spins), nor while more workers are awake than the process has
//! CPUs. A spinner watches only the injector and its own inbox,
//! not the other workers' queues: it already stole from those, and watching
//! them would have it steal every task a busy worker spawns (a chain of
//! spawns would hop between cores). A backlog there is still seen by the
//! full re-check before parking.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_deque::{Injector, Steal, Stealer, Worker as LocalQueue};
use crossbeam_utils::CachePadded;

use super::driver::Driver;
use super::park::Parker;
use super::{Config, Handle};
use crate::cpu::CpuFuture;
use crate::task::{self, JoinHandle, OwnedTasks, TaskRef};
use crate::time::timers::Timers;

const LOCAL_QUEUE_CAP: usize = 256;
const MAX_LIFO_POLLS: u8 = 3;
const GLOBAL_QUEUE_INTERVAL: u32 = 61;
/// Every this many ticks a worker looks at its bound CPU tasks first.
const PINNED_INTERVAL: u32 = 8;
/// How long a searching worker keeps looking for work before it parks.
const SPIN: std::time::Duration = std::time::Duration::from_micros(5);

/// Why a task is being scheduled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Schedule {
    Spawn,
    Wake,
    Yield,
}

/// Per-worker counters. Each is written only by its worker (a plain
/// load + store, no read-modify-write) and read by anyone.
#[derive(Default)]
pub(crate) struct WorkerMetrics {
    pub(crate) polls: CachePadded<AtomicU64>,
    pub(crate) steals: CachePadded<AtomicU64>,
    pub(crate) spawned: CachePadded<AtomicU64>,
}

fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed) + n, Relaxed);
}

/// What other threads may touch of a worker.
pub(crate) struct Remote {
    stealer: Stealer<TaskRef>,
    parker: Parker,
    /// Bound CPU tasks scheduled from other threads.
    inbox: Mutex<VecDeque<TaskRef>>,
    inbox_len: AtomicUsize,
    /// Length of the worker's pinned queue, published for schedtrace.
    pinned_len: AtomicUsize,
    pub(crate) metrics: WorkerMetrics,
}

struct IdleState {
    sleepers: Vec<usize>,
    sleeping: Vec<bool>,
}

struct Idle {
    state: Mutex<IdleState>,
    num_searching: AtomicUsize,
    num_idle: AtomicUsize,
    /// CPUs this process may run on: spinning only pays while the workers
    /// that are awake (running or searching) do not outnumber them.
    cpus: usize,
}

/// State shared by every thread of one runtime.
pub(crate) struct Shared {
    pub(crate) owned: OwnedTasks,
    injector: Injector<TaskRef>,
    pub(crate) remotes: Box<[Remote]>,
    idle: Idle,
    shutdown: AtomicBool,
    driver: Mutex<Driver>,
    driver_waker: mio::Waker,
    pub(crate) timers: Timers,
    pub(crate) config: Config,
    external_spawns: AtomicU64,
    /// Registered I/O sources; the maintenance tick skips `epoll_wait` while
    /// there are none.
    pub(crate) io_sources: AtomicUsize,
    /// Per-socket readiness slots, the mio registry, the tokio companion.
    pub(crate) io: crate::io::IoState,
    /// sysmon and the per-worker preemption slots.
    pub(crate) preemptor: urgent_preempt::Preemptor,
    /// Threads for `spawn_blocking`.
    blocking: crate::task::blocking::BlockingPool,
}

/// The worker-thread half of a worker: only its own thread touches it.
struct Core {
    shared: Arc<Shared>,
    index: usize,
    local: LocalQueue<TaskRef>,
    lifo: Option<TaskRef>,
    /// Bound CPU tasks ready to resume on this worker.
    pinned: VecDeque<TaskRef>,
    /// Tasks that yielded; run after everything else that is ready.
    deferred: Vec<TaskRef>,
    lifo_polls: u8,
    tick: u32,
    searching: bool,
    rng: u32,
}

thread_local! {
    static CORE: RefCell<Option<Core>> = const { RefCell::new(None) };
}

impl Shared {
    /// Builds the shared state and the local queues to hand to the workers.
    pub(crate) fn new(config: Config) -> std::io::Result<(Arc<Shared>, Vec<LocalQueue<TaskRef>>)> {
        let n = config.worker_threads;
        let blocking_config = (
            config.thread_name.clone(),
            config.max_blocking_threads,
            config.blocking_keep_alive,
        );
        let locals: Vec<LocalQueue<TaskRef>> = (0..n).map(|_| LocalQueue::new_fifo()).collect();
        let remotes = locals
            .iter()
            .map(|l| Remote {
                stealer: l.stealer(),
                parker: Parker::new(),
                inbox: Mutex::new(VecDeque::new()),
                inbox_len: AtomicUsize::new(0),
                pinned_len: AtomicUsize::new(0),
                metrics: WorkerMetrics::default(),
            })
            .collect();
        let (driver, driver_waker) = Driver::new()?;
        let io = crate::io::IoState::new(driver.registry())?;
        crate::preempt_glue::init_process();
        let preemptor = urgent_preempt::Preemptor::start(
            urgent_preempt::Config {
                quantum: config.quantum,
                async_preempt: config.async_preempt,
                deny_prefixes: config.no_preempt_in.clone(),
            },
            n,
        )?;
        let shared = Arc::new_cyclic(|weak| Shared {
            owned: OwnedTasks::new(),
            injector: Injector::new(),
            remotes,
            idle: Idle {
                state: Mutex::new(IdleState {
                    sleepers: Vec::with_capacity(n),
                    sleeping: vec![false; n],
                }),
                num_searching: AtomicUsize::new(0),
                num_idle: AtomicUsize::new(0),
                cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
            shutdown: AtomicBool::new(false),
            driver: Mutex::new(driver),
            driver_waker,
            timers: Timers::new(),
            config,
            external_spawns: AtomicU64::new(0),
            io_sources: AtomicUsize::new(0),
            io,
            preemptor,
            blocking: crate::task::blocking::BlockingPool::new(blocking_config, weak.clone()),
        });
        Ok((shared, locals))
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Acquire)
    }

    pub(crate) fn try_lock_driver(&self) -> Option<MutexGuard<'_, Driver>> {
        match self.driver.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    pub(crate) fn wake_driver(&self) {
        // Failing to write to the eventfd only happens when it is full, i.e.
        // a wake-up is already pending.
        let _ = self.driver_waker.wake();
    }

    pub(crate) fn io_ready(&self, event: &mio::event::Event) {
        self.io.dispatch(event);
    }

    /// Spawns a future onto this runtime.
    pub(crate) fn spawn<F>(self: &Arc<Self>, future: F) -> JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_task(future, false)
    }

    /// Spawns a closure as a CPU task, on a coroutine.
    pub(crate) fn spawn_cpu<F, R>(self: &Arc<Self>, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let fut = CpuFuture::new(f, self.config.stack_size);
        self.spawn_task(fut, true)
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

    fn spawn_task<F>(self: &Arc<Self>, future: F, cpu: bool) -> JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.register(future, cpu, |t| self.schedule(t, Schedule::Spawn))
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
        let counted = CORE.with(|c| match c.try_borrow() {
            Ok(core) => match core.as_ref() {
                Some(core) if Arc::ptr_eq(&core.shared, self) => {
                    bump(&self.remotes[core.index].metrics.spawned, 1);
                    true
                }
                _ => false,
            },
            Err(_) => false,
        });
        if !counted {
            self.external_spawns.fetch_add(1, Relaxed);
        }
    }

    /// Queues a task that is SCHEDULED and owned by nobody else.
    pub(crate) fn schedule(self: &Arc<Self>, task: TaskRef, kind: Schedule) {
        // Not a worker thread, or one whose thread-locals are being torn
        // down: go through the injector.
        if CORE.try_with(|_| ()).is_err() {
            self.injector.push(task);
            self.notify_parked();
            return;
        }
        if self.is_shutdown() {
            // Shutdown cancels every owned task; this queue entry would only
            // be dropped later.
            return;
        }
        if task.header().cpu {
            let bound = task.header().bound_worker.load(Acquire);
            if bound != usize::MAX {
                return self.schedule_bound(task, bound);
            }
            if kind == Schedule::Yield && self.config.migrate_preempted {
                self.injector.push(task);
                self.notify_parked();
                return;
            }
        }
        let task = CORE.with(|c| {
            let Ok(mut core) = c.try_borrow_mut() else {
                return Some(task);
            };
            match core.as_mut() {
                Some(core) if Arc::ptr_eq(&core.shared, self) => {
                    core.push_local(task, kind);
                    None
                }
                _ => Some(task),
            }
        });
        if let Some(task) = task {
            self.injector.push(task);
            self.notify_parked();
        }
    }

    fn schedule_bound(self: &Arc<Self>, task: TaskRef, worker: usize) {
        let task = CORE.with(|c| {
            let Ok(mut core) = c.try_borrow_mut() else {
                return Some(task);
            };
            match core.as_mut() {
                Some(core) if core.index == worker && Arc::ptr_eq(&core.shared, self) => {
                    core.pinned.push_back(task);
                    core.publish_pinned_len();
                    None
                }
                _ => Some(task),
            }
        });
        if let Some(task) = task {
            let remote = &self.remotes[worker];
            remote
                .inbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(task);
            remote.inbox_len.fetch_add(1, SeqCst);
            remote.parker.unpark(self);
        }
    }

    /// Wakes one parked worker if none is searching.
    pub(crate) fn notify_parked(&self) {
        fence(SeqCst);
        if self.idle.num_searching.load(SeqCst) != 0 || self.idle.num_idle.load(SeqCst) == 0 {
            return;
        }
        let woken = {
            let mut st = self.idle.state.lock().unwrap_or_else(|e| e.into_inner());
            if self.idle.num_searching.load(SeqCst) != 0 {
                return;
            }
            let Some(i) = st.sleepers.pop() else { return };
            st.sleeping[i] = false;
            self.idle.num_idle.fetch_sub(1, SeqCst);
            self.idle.num_searching.fetch_add(1, SeqCst);
            i
        };
        self.remotes[woken].parker.unpark(self);
    }

    /// (parked workers, searching workers), for schedtrace.
    pub(crate) fn idle_counts(&self) -> (usize, usize) {
        (
            self.idle.num_idle.load(Relaxed),
            self.idle.num_searching.load(Relaxed),
        )
    }

    pub(crate) fn injector_len(&self) -> usize {
        self.injector.len()
    }

    /// (stealable queue length, bound CPU tasks waiting) of worker `i`.
    pub(crate) fn queue_lens(&self, i: usize) -> (usize, usize) {
        let r = &self.remotes[i];
        (
            r.stealer.len(),
            r.pinned_len.load(Relaxed) + r.inbox_len.load(Relaxed),
        )
    }

    /// Work that came from outside the workers' own queues: the injector,
    /// or bound CPU tasks sent to worker `i`'s inbox.
    fn has_external_work(&self, i: usize) -> bool {
        !self.injector.is_empty() || self.remotes[i].inbox_len.load(SeqCst) > 0
    }

    fn has_work(&self) -> bool {
        !self.injector.is_empty()
            || self
                .remotes
                .iter()
                .any(|r| !r.stealer.is_empty() || r.inbox_len.load(SeqCst) > 0)
    }

    fn register_sleeper(&self, i: usize) {
        let mut st = self.idle.state.lock().unwrap_or_else(|e| e.into_inner());
        debug_assert!(!st.sleeping[i]);
        st.sleeping[i] = true;
        st.sleepers.push(i);
        self.idle.num_idle.fetch_add(1, SeqCst);
    }

    /// Removes `i` from the sleepers. False if a notifier already did, in
    /// which case that notifier counted `i` as searching.
    fn unregister_sleeper(&self, i: usize) -> bool {
        let mut st = self.idle.state.lock().unwrap_or_else(|e| e.into_inner());
        if !st.sleeping[i] {
            return false;
        }
        st.sleeping[i] = false;
        st.sleepers.retain(|&s| s != i);
        self.idle.num_idle.fetch_sub(1, SeqCst);
        true
    }

    fn try_begin_searching(&self) -> bool {
        let n = self.remotes.len();
        let s = self.idle.num_searching.load(SeqCst);
        if 2 * s >= n && s > 0 {
            return false;
        }
        self.idle.num_searching.fetch_add(1, SeqCst);
        true
    }

    /// Returns true if the caller was the last searcher.
    fn end_searching(&self) -> bool {
        self.idle.num_searching.fetch_sub(1, SeqCst) == 1
    }

    /// Begins shutdown: no more scheduling, every worker unparked.
    pub(crate) fn begin_shutdown(&self) {
        if self.shutdown.swap(true, SeqCst) {
            return;
        }
        for r in self.remotes.iter() {
            r.parker.unpark(self);
        }
        self.io.shutdown();
        self.blocking.shutdown();
        self.wake_driver();
    }

    /// Drops every task still owned (workers have stopped, or some are
    /// stuck), and whatever the injector holds.
    pub(crate) fn drop_all_tasks(&self) {
        for task in self.owned.close() {
            task.shutdown();
        }
        while !self.injector.steal().is_empty() {}
        for r in self.remotes.iter() {
            let drained: Vec<TaskRef> = r
                .inbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
                .collect();
            drop(drained);
        }
    }

    /// Fires due timers and, if sockets are registered, polls them without
    /// blocking. Called by busy workers every `GLOBAL_QUEUE_INTERVAL` ticks.
    pub(crate) fn maintenance(&self) {
        if self.io_sources.load(Relaxed) > 0 {
            if let Some(mut d) = self.try_lock_driver() {
                d.park(self, Some(std::time::Duration::ZERO));
                return;
            }
        }
        // No clock read when no timer is armed: this runs after every CPU
        // task poll.
        if self.timers.any_armed() {
            self.timers.fire_due(std::time::Instant::now());
        }
    }

    pub(crate) fn external_spawns(&self) -> u64 {
        self.external_spawns.load(Relaxed)
    }
}

impl Core {
    fn publish_pinned_len(&self) {
        self.shared.remotes[self.index]
            .pinned_len
            .store(self.pinned.len(), Relaxed);
    }

    fn next_task(&mut self) -> Option<TaskRef> {
        let t = self.next_task_inner();
        if t.is_some() {
            self.publish_pinned_len();
        }
        t
    }

    fn push_local(&mut self, task: TaskRef, kind: Schedule) {
        let displaced = match kind {
            Schedule::Wake => self.lifo.replace(task),
            Schedule::Spawn => Some(task),
            Schedule::Yield => {
                self.deferred.push(task);
                None
            }
        };
        if let Some(task) = displaced {
            if self.local.len() >= LOCAL_QUEUE_CAP {
                // Spill half to the injector so others can take it.
                for _ in 0..LOCAL_QUEUE_CAP / 2 {
                    match self.local.pop() {
                        Some(t) => self.shared.injector.push(t),
                        None => break,
                    }
                }
            }
            self.local.push(task);
            self.shared.notify_parked();
        }
    }

    fn next_task_inner(&mut self) -> Option<TaskRef> {
        let remote = &self.shared.remotes[self.index];
        if remote.inbox_len.load(Acquire) > 0 {
            let mut inbox = remote.inbox.lock().unwrap_or_else(|e| e.into_inner());
            remote.inbox_len.store(0, Release);
            self.pinned.extend(inbox.drain(..));
        }
        if self.tick.is_multiple_of(GLOBAL_QUEUE_INTERVAL) {
            self.flush_deferred();
            if let Some(t) = self.steal_injector() {
                return Some(t);
            }
        }
        if let Some(t) = self.lifo.take() {
            if self.lifo_polls < MAX_LIFO_POLLS {
                self.lifo_polls += 1;
                return Some(t);
            }
            self.local.push(t);
        }
        self.lifo_polls = 0;
        // A bound CPU task runs for up to a quantum once resumed, so it comes
        // after every ready future (the LIFO slot, the local queue, the
        // injector), except every PINNED_INTERVAL ticks.
        if self.tick.is_multiple_of(PINNED_INTERVAL) {
            if let Some(t) = self.pinned.pop_front() {
                return Some(t);
            }
        }
        self.local
            .pop()
            .or_else(|| self.steal_injector())
            .or_else(|| self.pinned.pop_front())
            .or_else(|| {
                self.flush_deferred();
                self.local.pop()
            })
    }

    fn flush_deferred(&mut self) {
        for t in self.deferred.drain(..) {
            self.local.push(t);
        }
    }

    fn steal_injector(&mut self) -> Option<TaskRef> {
        loop {
            match self.shared.injector.steal_batch_and_pop(&self.local) {
                Steal::Success(t) => return Some(t),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    fn steal_others(&mut self) -> Option<TaskRef> {
        let n = self.shared.remotes.len();
        // xorshift32
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        let start = self.rng as usize % n;
        for k in 0..n {
            let i = (start + k) % n;
            if i == self.index {
                continue;
            }
            let stealer = &self.shared.remotes[i].stealer;
            loop {
                match stealer.steal_batch_and_pop(&self.local) {
                    Steal::Success(t) => {
                        bump(&self.shared.remotes[self.index].metrics.steals, 1);
                        return Some(t);
                    }
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
        self.steal_injector()
    }
}

fn with_core<R>(f: impl FnOnce(&mut Core) -> R) -> R {
    CORE.with(|c| {
        let mut c = c.borrow_mut();
        f(c.as_mut()
            .expect("urgent internal error: no worker core on a worker thread"))
    })
}

/// The body of worker thread `index`.
pub(crate) fn run_worker(shared: Arc<Shared>, index: usize, local: LocalQueue<TaskRef>) {
    urgent_stackful::init_thread();
    CORE.with(|c| {
        *c.borrow_mut() = Some(Core {
            shared: shared.clone(),
            index,
            local,
            lifo: None,
            pinned: VecDeque::new(),
            deferred: Vec::new(),
            lifo_polls: 0,
            tick: 0,
            searching: false,
            rng: 0x9E37_79B9 ^ (index as u32 + 1).wrapping_mul(0x85EB_CA6B),
        })
    });
    let _enter = super::context::enter(Handle {
        shared: shared.clone(),
    });
    #[cfg(feature = "tokio")]
    let _tokio = shared.io.tokio.enter(&shared);
    let metrics = &shared.remotes[index].metrics;
    let slot = shared.preemptor.slot(index);
    crate::preempt_glue::register_worker(slot.clone());

    while !shared.is_shutdown() {
        let maintenance = with_core(|core| {
            core.tick = core.tick.wrapping_add(1);
            // Also before resuming a CPU task when no future is ready: what
            // a due timer or a ready socket wakes then runs first, instead of
            // a quantum later (Go's sysmon polls the network for the same
            // reason).
            core.tick.is_multiple_of(GLOBAL_QUEUE_INTERVAL)
                || (core.lifo.is_none() && core.local.is_empty() && !core.pinned.is_empty())
        });
        if maintenance {
            shared.maintenance();
        }
        let task = with_core(|core| {
            let t = core.next_task();
            if t.is_some() {
                return t;
            }
            if !core.searching {
                core.searching = shared.try_begin_searching();
            }
            if core.searching {
                core.steal_others()
            } else {
                None
            }
        });
        match task {
            Some(task) => {
                let was_last = with_core(|core| {
                    std::mem::replace(&mut core.searching, false) && shared.end_searching()
                });
                // Wake a helper only if more work is visible: waking one
                // for nothing costs a futex call here and a thread that
                // spins and parks again, fighting this one for a core. Work
                // pushed after this check is covered by its pusher's own
                // notify (we no longer count as searching: Dekker pair).
                if was_last {
                    fence(SeqCst);
                    if shared.has_work() {
                        shared.notify_parked();
                    }
                }
                bump(&metrics.polls, 1);
                slot.future_started();
                let header = task.header();
                let cpu = header.cpu;
                if cpu
                    && !shared.config.migrate_preempted
                    && header.bound_worker.load(Relaxed) == usize::MAX
                {
                    header.bound_worker.store(index, Release);
                }
                task.run();
                if cpu {
                    // The coroutine may have run for a whole quantum: fire
                    // due timers and poll sockets before picking the next
                    // task, so what they wake runs next.
                    shared.maintenance();
                }
            }
            None => {
                slot.idle();
                park(&shared, index)
            }
        }
    }

    // Drop our queue entries; the tasks themselves are cancelled through the
    // owned list by whoever shuts the runtime down.
    let core = CORE.with(|c| c.borrow_mut().take());
    if let Some(mut core) = core {
        if core.searching {
            shared.end_searching();
        }
        core.lifo = None;
        core.pinned.clear();
        core.deferred.clear();
        while core.local.pop().is_some() {}
    }
}

fn park(shared: &Arc<Shared>, index: usize) {
    let searching = with_core(|core| core.searching);
    if searching && spin_for_work(shared, index) {
        // Still searching: the next round of the worker loop takes it.
        return;
    }
    let was_searching = with_core(|core| std::mem::replace(&mut core.searching, false));
    if was_searching {
        shared.end_searching();
    }
    shared.register_sleeper(index);
    fence(SeqCst);
    if !(shared.has_work() || shared.is_shutdown()) {
        shared.remotes[index].parker.park(shared);
    }
    if !shared.unregister_sleeper(index) {
        // A notifier woke us and counted us as searching.
        with_core(|core| core.searching = true);
    }
}

/// Spins for up to `SPIN` while searching; true as soon as work arrives from
/// outside (injector, or this worker's inbox) or the runtime shuts down.
fn spin_for_work(shared: &Shared, index: usize) -> bool {
    // Sockets registered and nobody in the driver: this worker would be the
    // one to wait in epoll, and spinning would leave their readiness unseen
    // for `SPIN`. Park at once.
    if shared.io_sources.load(Relaxed) > 0 && shared.try_lock_driver().is_some() {
        return false;
    }
    // More workers awake than CPUs (more workers configured than cores): a
    // spinner would take a core from a worker with work. Park instead.
    let awake = shared.remotes.len() - shared.idle.num_idle.load(Relaxed);
    if awake > shared.idle.cpus {
        return false;
    }
    super::park::spin_until(SPIN, || {
        shared.has_external_work(index) || shared.is_shutdown()
    })
}

/// True if the current thread is a worker of `shared`.
pub(crate) fn is_worker_of(shared: &Arc<Shared>) -> bool {
    CORE.try_with(|c| {
        c.try_borrow()
            .ok()
            .and_then(|c| c.as_ref().map(|core| Arc::ptr_eq(&core.shared, shared)))
            .unwrap_or(false)
    })
    .unwrap_or(false)
}

/// Exposed for the metrics snapshot.
pub(crate) fn sum(shared: &Shared, f: impl Fn(&WorkerMetrics) -> u64) -> u64 {
    shared.remotes.iter().map(|r| f(&r.metrics)).sum()
}

pub(crate) fn load(c: &AtomicU64) -> u64 {
    c.load(Relaxed)
}
