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
//! start ─▶ find_work ─┬─ task ──────▶ run_task ──▶ find_work ...
//!            ▲        ├─ none ──────▶ go_idle (spin, then park) ──▶ find_work ...
//!            │        └─ lost core ─▶ wait_for_core ──┐
//!            └────────────────────────────────────────┘
//! shutdown ─▶ stop (drop queue entries, give the core back)
//! ```
//!
//! `find_work` is one locked step on the core (tick, hand-back check,
//! maintenance decision, next task or steal, searching bookkeeping),
//! `run_task` polls with the core unlocked, `go_idle` is the idle protocol
//! of `idle.rs`. A thread whose core was handed to another thread (see
//! `threads.rs`) finds out at its next step and waits for a core: a worker
//! thread for its own core back, a spare thread for any core (or it
//! retires).
//!
//! # Thread park
//!
//! [`park_current_thread`] runs inside the preempt hook, on the coroutine's
//! stack, when the handler found the task at a point that holds
//! thread-affine state (or in the strict mode): instead of switching
//! coroutines, the thread hands its core to a spare thread and sleeps with
//! the task on it, its slot idle so sysmon leaves it alone. It asks for its
//! core back not before a quantum from now (the core's other tasks run
//! first) or as soon as the spare has nothing ready; when it has it, the
//! hook returns and the task continues where it was. At shutdown it does
//! not park: the task runs on to a point where it can be switched out.
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

use super::core::{bump, CoreGuard, CoreShared, GLOBAL_QUEUE_INTERVAL};
use super::threads::NO_CORE;
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

/// The body of worker thread `thread`, which holds core `thread` (its home
/// core) at start.
pub(crate) fn run(shared: Arc<Shared>, thread: usize) {
    let acquired = shared.core(thread).acquire(thread);
    debug_assert!(acquired, "core {thread} already held at start");
    let slot = shared.preemptor().slot(thread);
    run_thread(shared, thread, thread, slot);
}

/// The body of spare thread `thread` (its slot index), which starts with no
/// core and waits for one.
pub(super) fn run_spare(shared: Arc<Shared>, thread: usize, slot: Arc<urgent_preempt::Slot>) {
    run_thread(shared.clone(), thread, NO_CORE, slot);
    shared.spares.alive.fetch_sub(1, AcqRel);
}

fn run_thread(shared: Arc<Shared>, thread: usize, core: usize, slot: Arc<urgent_preempt::Slot>) {
    urgent_stackful::init_thread();
    shared.threads[thread].set_handle();
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
    crate::preempt_glue::register_worker(slot.clone());
    slot.set_thread_park(thread_park_mode(&shared, thread));
    let worker = Worker { cx, slot };
    while !shared.is_shutdown() {
        if worker.cx.core.get() == NO_CORE {
            match worker.wait_for_core() {
                Some(core) => worker.cx.core.set(core),
                None => break,
            }
            continue;
        }
        match worker.find_work() {
            Step::Run(task) => worker.run_task(task),
            Step::Idle => worker.go_idle(),
            Step::LostCore => {
                worker.cx.core.set(NO_CORE);
                shared.threads[thread].core.store(NO_CORE, Release);
            }
        }
    }
    worker.stop();
}

/// Worker threads park at thread-affine points (at every point in the
/// strict mode) when spare threads may stand in for them; spare threads
/// never start CPU tasks, so they never need to.
fn thread_park_mode(shared: &Shared, thread: usize) -> urgent_preempt::ThreadPark {
    use urgent_preempt::ThreadPark;
    if thread >= shared.workers() || shared.config().max_spare_threads == 0 {
        ThreadPark::Off
    } else if shared.config().strict_preemption {
        ThreadPark::Always
    } else {
        ThreadPark::AtThreadAffinePoints
    }
}

/// What a scheduling step found.
enum Step {
    Run(TaskRef),
    Idle,
    /// The core was handed to another thread.
    LostCore,
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

    /// A spare holding another thread's core gives it back if the home
    /// thread asks and it is time (see `threads.rs`); true if it let go of
    /// the core (handed back, or lost meanwhile to a retake: either way the
    /// caller holds it no more).
    fn hand_back_if_wanted(&self, core: &mut Option<CoreGuard<'_>>, idle: bool) -> bool {
        let shared = self.shared();
        let home = self.core();
        if home.index == self.cx.thread || !home.home_wants_now(shared.now_ns(), idle) {
            return false;
        }
        if let Some(c) = core.as_mut() {
            if std::mem::replace(&mut c.searching, false) {
                shared.idle().end_searching();
            }
        }
        drop(core.take());
        shared.hand_core(home.index, self.cx.thread, home.index);
        true
    }

    /// One scheduling step on the core: the next task to run, if any.
    fn find_work(&self) -> Step {
        let shared = self.shared();
        let home = self.core();
        let Some(mut core) = home.lock_for(self.cx.thread) else {
            return Step::LostCore;
        };
        if home.index != self.cx.thread {
            let idle = !core.has_ready();
            let mut guard = Some(core);
            if self.hand_back_if_wanted(&mut guard, idle) {
                return Step::LostCore;
            }
            core = guard.expect("urgent internal error: core guard dropped without a hand-back");
        }
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
            let Some(again) = home.lock_for(self.cx.thread) else {
                return Step::LostCore;
            };
            core = again;
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
        match task {
            Some(task) => Step::Run(task),
            None => Step::Idle,
        }
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
            if bound == usize::MAX && self.cx.thread >= shared.workers() {
                // Spare threads never start CPU tasks (a started one would
                // keep the spare alive until it ends): it goes to the home
                // thread of the core, which starts it when it is back.
                let home = self.cx.core.get();
                header.bound_thread.store(home, Release);
                self.cx.shared.schedule_bound(task, home);
                return;
            } else if bound == usize::MAX {
                header.bound_thread.store(self.cx.thread, Release);
            } else {
                debug_assert_eq!(
                    bound, self.cx.thread,
                    "urgent internal error: a bound CPU task is about to resume on a thread \
                     other than the one that started its coroutine"
                );
            }
        }
        let me = &shared.threads[self.cx.thread];
        me.polling.store(true, Relaxed);
        task.run();
        me.polling.store(false, Relaxed);
        if cpu {
            // The coroutine may have run for a whole quantum: fire due
            // timers and poll sockets before picking the next task, so what
            // they wake runs next.
            shared.maintenance();
        }
    }

    /// Nothing to run: hand the core back if its home thread wants it, else
    /// spin while searching, then park the core.
    fn go_idle(&self) {
        self.slot.idle();
        let shared = self.shared();
        let home = self.core();
        if home.index != self.cx.thread {
            let mut guard = home.lock_for(self.cx.thread);
            if guard.is_none() || self.hand_back_if_wanted(&mut guard, true) {
                return;
            }
            // Released before the steps below take the lock again.
            drop(guard);
        }
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

    /// The thread has no core: a worker thread waits for its own core back
    /// (asking the spare that holds it), a spare thread waits in the pool
    /// for any core, or retires after the keep-alive. `None`: stop the
    /// thread (shutdown, or a spare retiring).
    fn wait_for_core(&self) -> Option<usize> {
        let shared = self.shared();
        let me = &shared.threads[self.cx.thread];
        let is_spare = self.cx.thread >= shared.workers();
        let mut listed = false;
        loop {
            // The ownership word decides; the hint only says where to look.
            let core = if is_spare {
                me.core.load(Acquire)
            } else {
                self.cx.thread
            };
            if core != NO_CORE && shared.core(core).is_owned_by(self.cx.thread) {
                if is_spare {
                    // A new spare is handed its first core without going
                    // through the idle list: make sure it is not listed.
                    shared.spares.retire(self.cx.thread);
                } else {
                    shared.core(core).clear_home_want();
                }
                return Some(core);
            }
            if is_spare && !listed {
                shared.spares.put_idle(self.cx.thread);
                listed = true;
                continue;
            }
            if shared.is_shutdown() {
                if is_spare {
                    shared.spares.retire(self.cx.thread);
                }
                return None;
            }
            if is_spare {
                let keep_alive = shared.config().blocking_keep_alive;
                if !me.wait(keep_alive) && shared.spares.retire(self.cx.thread) {
                    return None;
                }
            } else {
                let home = shared.core(self.cx.thread);
                home.want_home(0);
                // The spare may be parked with nothing to do: wake it so it
                // hands the core back.
                home.parker.unpark(shared.driver());
                me.wait(std::time::Duration::from_millis(50));
            }
        }
    }

    /// Shutdown: drop this thread's queue entries (the tasks themselves are
    /// cancelled through the owned list by whoever shuts the runtime down)
    /// and give the core back.
    fn stop(self) {
        let shared = self.shared();
        if self.cx.core.get() == NO_CORE {
            WORKER.with(|w| w.borrow_mut().take());
            return;
        }
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

/// Inside the preempt hook, on the preempted coroutine's stack: parks this
/// thread with its task (see the module docs). Returns whether the hook must
/// return without switching coroutines: always at a thread-affine point
/// (switching there would let another task see this thread's state), and at
/// a pure point of the strict mode once the thread was parked and got its
/// core back.
pub(crate) fn park_current_thread(park: urgent_preempt::Park) -> bool {
    use urgent_preempt::Park;
    let must_not_switch = park == Park::AtAffinePoint;
    let cx = WORKER
        .try_with(|w| w.try_borrow().ok().and_then(|w| w.clone()))
        .ok()
        .flatten();
    let Some(cx) = cx else {
        return must_not_switch;
    };
    let Some((lo, hi)) = urgent_stackful::current_stack_bounds() else {
        return must_not_switch;
    };
    let shared = cx.shared.clone();
    // At shutdown nobody would give the core back: run on to a point where
    // the task can be switched out.
    if shared.is_shutdown() || cx.thread >= shared.workers() {
        return must_not_switch;
    }
    let me = cx.thread;
    let core = cx.core.get();
    crate::preempt_glue::pause_run();
    if core == NO_CORE {
        // Running the task without a core (its core was retaken while it
        // was blocked): wait for the core here, as the worker loop would.
        wait_parked(&shared, me, 0);
    } else {
        let Some(spare) = shared.spare_thread("a CPU task holds thread-affine state") else {
            crate::preempt_glue::resume_run(lo, hi);
            return must_not_switch;
        };
        if !shared.hand_core(core, me, spare) {
            shared.spares.put_idle(spare);
            crate::preempt_glue::resume_run(lo, hi);
            return must_not_switch;
        }
        shared.threads[me].core.store(NO_CORE, Release);
        cx.core.set(NO_CORE);
        shared.handoffs.thread_parks.fetch_add(1, Relaxed);
        let quantum = u64::try_from(shared.config().quantum.as_nanos()).unwrap_or(u64::MAX);
        wait_parked(&shared, me, shared.now_ns().saturating_add(quantum));
    }
    let got = if shared.core(me).is_owned_by(me) {
        me
    } else {
        NO_CORE
    };
    shared.threads[me].core.store(got, Release);
    cx.core.set(got);
    crate::preempt_glue::resume_run(lo, hi);
    true
}

/// A worker thread parked with its task waits until its home core is
/// handed back (asked for not before `after`, or when the holder has
/// nothing ready) or the runtime shuts down.
fn wait_parked(shared: &Shared, me: usize, after: u64) {
    let t = &shared.threads[me];
    let home = shared.core(me);
    t.parked.store(true, Relaxed);
    home.want_home(after);
    home.parker.unpark(shared.driver());
    while !home.is_owned_by(me) && !shared.is_shutdown() {
        t.wait(std::time::Duration::from_millis(50));
    }
    home.clear_home_want();
    t.parked.store(false, Relaxed);
}
