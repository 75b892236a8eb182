//! Worker threads (Go's M): the loop that takes a core and runs tasks.
//!
//! A worker thread holds at most one core (see `core.rs`) and has a queue of
//! its own: the CPU tasks *bound* to it. A CPU task is stealable until it
//! first runs; from then on its coroutine may only be resumed on the thread
//! that started it, because compilers keep thread-local addresses in
//! callee-saved registers, also across `wait()`. So its queue entries go to
//! that thread's `pinned` queue (from the thread itself) or its `inbox` (from
//! any other thread, which then unparks the core that thread holds). With
//! `migrate_preempted(true)` CPU tasks are never bound and a preempted one
//! goes to the injector (Go's `gopreempt_m`).
//!
//! # The loop, in named steps
//!
//! ```text
//! start ─▶ find_work ─┬─ task ──▶ run_task ──▶ find_work ...
//!                     └─ none ──▶ go_idle (spin, then park) ──▶ find_work ...
//! shutdown ─▶ stop (drop queue entries, give the core back)
//! ```
//!
//! `find_work` is one locked step on the core (tick, maintenance decision,
//! next task or steal, searching bookkeeping), `run_task` polls with the
//! core unlocked, `go_idle` is the idle protocol of `idle.rs`.
//!
//! The thread-local [`WorkerCx`] holds what code inside a poll needs to
//! route a `spawn` or a wake: the runtime, the thread's id, the core it
//! holds, and its pinned queue. The loop never keeps a `RefCell` borrow of
//! it across a poll.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{fence, Ordering::*};
use std::sync::Arc;

use super::core::{bump, CoreShared, GLOBAL_QUEUE_INTERVAL};
use super::Shared;
use crate::runtime::context;
use crate::runtime::Handle;
use crate::task::TaskRef;

/// How long a searching thread keeps looking for work before it parks.
const SPIN: std::time::Duration = std::time::Duration::from_micros(5);

/// What code running on a worker thread needs from it.
pub(super) struct WorkerCx {
    pub(super) shared: Arc<Shared>,
    pub(super) thread: usize,
    /// The core this thread holds.
    pub(super) core: Cell<usize>,
    /// Bound CPU tasks ready to resume on this thread.
    pub(super) pinned: RefCell<VecDeque<TaskRef>>,
}

thread_local! {
    static WORKER: RefCell<Option<Rc<WorkerCx>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's worker context if it is a worker of `shared`;
/// `None` elsewhere (including while thread-locals are torn down).
pub(super) fn with_worker<R>(shared: &Arc<Shared>, f: impl FnOnce(&WorkerCx) -> R) -> Option<R> {
    WORKER
        .try_with(|w| {
            let w = w.try_borrow().ok()?;
            let cx = w.as_ref()?;
            Arc::ptr_eq(&cx.shared, shared).then(|| f(cx))
        })
        .ok()
        .flatten()
}

/// True if the current thread is a worker of `shared`.
pub(crate) fn is_worker_of(shared: &Arc<Shared>) -> bool {
    with_worker(shared, |_| ()).is_some()
}

/// The body of worker thread `thread`, which starts holding core `core`.
pub(crate) fn run(shared: Arc<Shared>, thread: usize, core: usize) {
    urgent_stackful::init_thread();
    let acquired = shared.core(core).acquire(thread);
    debug_assert!(acquired, "core {core} already held at start");
    let cx = Rc::new(WorkerCx {
        shared: shared.clone(),
        thread,
        core: Cell::new(core),
        pinned: RefCell::new(VecDeque::new()),
    });
    WORKER.with(|w| *w.borrow_mut() = Some(cx.clone()));
    let _enter = context::enter(Handle {
        shared: shared.clone(),
    });
    #[cfg(feature = "tokio")]
    let _tokio = shared.tokio().enter(&shared);
    let slot = shared.preemptor().slot(thread);
    crate::preempt_glue::register_worker(slot.clone());
    let worker = Worker { cx, slot };
    while !shared.is_shutdown() {
        match worker.find_work() {
            Some(task) => worker.run_task(task),
            None => worker.go_idle(),
        }
    }
    worker.stop();
}

struct Worker {
    cx: Rc<WorkerCx>,
    slot: Arc<urgent_preempt::Slot>,
}

impl Worker {
    fn shared(&self) -> &Shared {
        &self.cx.shared
    }

    fn core(&self) -> &CoreShared {
        self.shared().core(self.cx.core.get())
    }

    /// One scheduling step on the core: the next task to run, if any.
    fn find_work(&self) -> Option<TaskRef> {
        let shared = self.shared();
        let home = self.core();
        let mut core = home.lock_for(self.cx.thread)?;
        core.tick = core.tick.wrapping_add(1);
        // Also before resuming a bound CPU task when no future is ready:
        // what a due timer or a ready socket wakes then runs first, instead
        // of a quantum later (Go's sysmon polls the network for the same
        // reason).
        let maintenance = core.tick.is_multiple_of(GLOBAL_QUEUE_INTERVAL)
            || (!core.has_ready() && !self.cx.pinned.borrow().is_empty());
        if maintenance {
            // Not under the core lock: what the timers and sockets wake is
            // pushed to this core.
            drop(core);
            shared.maintenance();
            core = home.lock_for(self.cx.thread)?;
        }
        let mut task = {
            let mut pinned = self.cx.pinned.borrow_mut();
            shared.take_inbox(self.cx.thread, &mut pinned);
            core.next_task(shared.injector(), &mut pinned)
        };
        if task.is_none() {
            if !core.searching {
                core.searching = shared.idle().try_begin_searching();
            }
            if core.searching {
                task = core.steal_others(home, shared.cores(), shared.injector());
            }
        }
        let was_last_searcher = task.is_some()
            && std::mem::replace(&mut core.searching, false)
            && shared.idle().end_searching();
        drop(core);
        shared.publish_pinned_len(self.cx.thread, self.cx.pinned.borrow().len());
        // Wake a helper only if more work is visible: waking one for nothing
        // costs a futex call here and a thread that spins and parks again,
        // fighting this one for a CPU. Work pushed after this check is
        // covered by its pusher's own notify (we no longer count as
        // searching: Dekker pair, see idle.rs).
        if was_last_searcher {
            fence(SeqCst);
            if shared.has_work() {
                shared.notify_parked();
            }
        }
        task
    }

    /// Polls one task with the core unlocked.
    fn run_task(&self, task: TaskRef) {
        let shared = self.shared();
        bump(&self.core().metrics.polls, 1);
        self.slot.future_started();
        let header = task.header();
        let cpu = header.cpu;
        if cpu && !shared.config().migrate_preempted {
            let bound = header.bound_thread.load(Relaxed);
            if bound == usize::MAX {
                header.bound_thread.store(self.cx.thread, Release);
            } else {
                debug_assert_eq!(
                    bound, self.cx.thread,
                    "urgent internal error: a bound CPU task is about to resume on a thread \
                     other than the one that started its coroutine"
                );
            }
        }
        task.run();
        if cpu {
            // The coroutine may have run for a whole quantum: fire due
            // timers and poll sockets before picking the next task, so what
            // they wake runs next.
            shared.maintenance();
        }
    }

    /// Nothing to run: spin while searching, then park the core.
    fn go_idle(&self) {
        self.slot.idle();
        let shared = self.shared();
        let home = self.core();
        let searching = home
            .lock_for(self.cx.thread)
            .is_some_and(|core| core.searching);
        if searching && self.spin_for_work() {
            // Still searching: the next find_work takes it.
            return;
        }
        let was_searching = home
            .lock_for(self.cx.thread)
            .is_some_and(|mut core| std::mem::replace(&mut core.searching, false));
        if was_searching {
            shared.idle().end_searching();
        }
        shared.idle().register_sleeper(home.index);
        fence(SeqCst);
        if !(shared.has_work() || shared.is_shutdown()) {
            home.parker.park(shared.driver());
        }
        if !shared.idle().unregister_sleeper(home.index) {
            // A notifier woke us and counted us as searching.
            if let Some(mut core) = home.lock_for(self.cx.thread) {
                core.searching = true;
            }
        }
    }

    /// Spins for up to `SPIN` while searching; true as soon as work arrives
    /// from outside (injector, or this thread's inbox) or the runtime shuts
    /// down.
    ///
    /// A spinner watches only the injector and its own inbox, not the other
    /// cores' queues: it already stole from those, and watching them would
    /// have it steal every task a busy core spawns (a chain of spawns would
    /// hop between cores). A backlog there is still seen by the full
    /// re-check before parking.
    fn spin_for_work(&self) -> bool {
        let shared = self.shared();
        // Sockets registered and nobody in the driver: this thread would be
        // the one to wait in epoll, and spinning would leave their readiness
        // unseen for `SPIN`. Park at once.
        if shared.driver().has_sources() && shared.driver().is_free() {
            return false;
        }
        // More cores awake than CPUs: a spinner would take a CPU from a core
        // with work. Park instead.
        if shared.idle().oversubscribed() {
            return false;
        }
        let thread = self.cx.thread;
        super::super::park::spin_until(SPIN, || {
            shared.has_external_work(thread) || shared.is_shutdown()
        })
    }

    /// Shutdown: drop this thread's queue entries (the tasks themselves are
    /// cancelled through the owned list by whoever shuts the runtime down)
    /// and give the core back.
    fn stop(self) {
        let shared = self.shared();
        let home = self.core();
        let entries = home.lock_for(self.cx.thread).map(|mut core| {
            if std::mem::replace(&mut core.searching, false) {
                shared.idle().end_searching();
            }
            core.clear()
        });
        drop(entries);
        let pinned = std::mem::take(&mut *self.cx.pinned.borrow_mut());
        drop(pinned);
        home.release(self.cx.thread);
        WORKER.with(|w| w.borrow_mut().take());
    }
}
