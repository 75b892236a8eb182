//! Cores (Go's P): the right to run tasks, with the run queues that go
//! with it.
//!
//! A [`Core`] is a value: a local FIFO queue (a crossbeam deque: other cores
//! steal half of it when idle, bounded to `LOCAL_QUEUE_CAP` by spilling half
//! into the injector), a LIFO slot (the task most recently woken by the
//! running task: message passing, the receiver runs next while the data is
//! hot; not stealable, and at most `MAX_LIFO_POLLS` in a row), the list of
//! tasks that yielded (run after everything else that is ready), the
//! scheduling tick, and whether its thread is searching. What other threads
//! may touch of core `i` is its [`CoreShared`]: the core value behind a
//! mutex, the ownership word, the stealer, the parker and the counters.
//!
//! # Ownership
//!
//! The core value sits in an [`Owned`] (see `owner.rs`): an ownership word
//! naming the thread that holds the core, and a mutex. Only the owner runs
//! the core's scheduling steps; it locks the core for each step
//! (`next_task`, stealing, bookkeeping) and unlocks it before it polls the
//! task, so the lock is never held across user code. Code *inside* a poll
//! that would touch the core (a `spawn` pushing to the local queue, a wake
//! into the LIFO slot) first checks that its thread is still the owner and
//! then only `try_lock`s; otherwise the task goes to the injector (Go's
//! `exitsyscall` compare-and-swap on its P). That is what lets a core be
//! handed to another thread while its first thread is stuck in a poll: the
//! core value moves (it is `Send`), the mutex makes sure no two threads run
//! its steps at once, and a push that passed the check just before a
//! hand-over lands in a queue the new owner runs.
//!
//! Today every worker thread takes core `i` at start and keeps it until
//! shutdown; the hand-over itself (retake, thread park) is the next step.
//!
//! A started CPU task is bound to its *thread*, not to a core (see
//! `worker.rs`): its queue entries never enter a core's queues.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

use crossbeam_deque::{Injector, Steal, Stealer, Worker as LocalQueue};
use crossbeam_utils::CachePadded;

use super::super::park::Parker;
use super::owner::Owned;
use crate::task::{ScheduleKind, TaskRef};

const LOCAL_QUEUE_CAP: usize = 256;
const MAX_LIFO_POLLS: u8 = 3;
/// Every this many ticks a core looks at the injector first (Go's
/// `schedtick % 61`) and turns the timers.
pub(super) const GLOBAL_QUEUE_INTERVAL: u32 = 61;
/// Every this many ticks a thread looks at its bound CPU tasks first.
pub(super) const PINNED_INTERVAL: u32 = 8;

/// Per-core counters. Each is written only by the core's owner (a plain
/// load + store, no read-modify-write) and read by anyone.
#[derive(Default)]
pub(crate) struct CoreMetrics {
    pub(crate) polls: CachePadded<AtomicU64>,
    pub(crate) steals: CachePadded<AtomicU64>,
    pub(crate) spawned: CachePadded<AtomicU64>,
}

pub(super) fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed) + n, Relaxed);
}

/// The core value (see the module docs).
pub(super) struct Core {
    local: LocalQueue<TaskRef>,
    lifo: Option<TaskRef>,
    /// Tasks that yielded; run after everything else that is ready.
    deferred: Vec<TaskRef>,
    lifo_polls: u8,
    pub(super) tick: u32,
    pub(super) searching: bool,
    rng: u32,
}

/// What every thread may touch of one core.
pub(crate) struct CoreShared {
    pub(super) index: usize,
    /// The core value and the ownership word (see the module docs).
    core: Owned<Core>,
    stealer: Stealer<TaskRef>,
    pub(super) parker: Parker,
    pub(crate) metrics: CoreMetrics,
    /// Set by the core's home thread (worker thread `index`) while it waits
    /// to get the core back from a spare thread; cleared when it has it.
    home_wants: AtomicBool,
    /// Not before this time (ns since the runtime's epoch), unless the core
    /// has nothing ready: a thread park lets the others run a quantum first.
    want_after: AtomicU64,
}

/// A locked core, usable only by its owner.
pub(super) type CoreGuard<'a> = crate::sync::model::MutexGuard<'a, Core>;

impl CoreShared {
    pub(super) fn new(index: usize) -> CoreShared {
        let local = LocalQueue::new_fifo();
        CoreShared {
            index,
            stealer: local.stealer(),
            core: Owned::new(Core {
                local,
                lifo: None,
                deferred: Vec::new(),
                lifo_polls: 0,
                tick: 0,
                searching: false,
                rng: 0x9E37_79B9 ^ (index as u32 + 1).wrapping_mul(0x85EB_CA6B),
            }),
            parker: Parker::new(),
            metrics: CoreMetrics::default(),
            home_wants: AtomicBool::new(false),
            want_after: AtomicU64::new(0),
        }
    }

    /// Makes `thread` the owner of this free core; false if another thread
    /// holds it.
    pub(super) fn acquire(&self, thread: usize) -> bool {
        self.core.acquire(thread)
    }

    /// Gives the core up (its owner only).
    pub(super) fn release(&self, thread: usize) {
        self.core.release(thread)
    }

    /// Locks the core for a scheduling step of its owner; `None` if `thread`
    /// no longer owns it.
    pub(super) fn lock_for(&self, thread: usize) -> Option<CoreGuard<'_>> {
        self.core.lock_for(thread)
    }

    /// For code inside a poll on `thread`: the core, if that thread still
    /// owns it and nobody else has it locked right now.
    pub(super) fn try_lock_for(&self, thread: usize) -> Option<CoreGuard<'_>> {
        self.core.try_lock_for(thread)
    }

    /// Moves the core from `from` to `to` (retake, thread park, hand-back);
    /// false if `from` no longer owns it.
    pub(super) fn hand_over(&self, from: usize, to: usize) -> bool {
        self.core.hand_over(from, to)
    }

    pub(super) fn is_owned_by(&self, thread: usize) -> bool {
        self.core.is_owned_by(thread)
    }

    /// The thread that holds the core (`None`: free), for schedtrace.
    pub(super) fn owner(&self) -> Option<usize> {
        self.core.owner()
    }

    /// The home thread asks for its core back, not before `after` unless
    /// the holder has nothing ready.
    pub(super) fn want_home(&self, after: u64) {
        self.want_after.store(after, Relaxed);
        self.home_wants.store(true, Release);
    }

    pub(super) fn clear_home_want(&self) {
        self.home_wants.store(false, Relaxed);
    }

    /// Whether the home thread wants the core back now (`idle`: the holder
    /// has nothing ready, so the time does not matter).
    pub(super) fn home_wants_now(&self, now: u64, idle: bool) -> bool {
        self.home_wants.load(Acquire) && (idle || now >= self.want_after.load(Relaxed))
    }

    /// Length of the stealable queue, for schedtrace and `has_work`.
    pub(super) fn stealable_len(&self) -> usize {
        self.stealer.len()
    }

    pub(super) fn has_stealable(&self) -> bool {
        !self.stealer.is_empty()
    }
}

impl Core {
    /// Queues a task on this core; returns true if the local queue got a
    /// task others may steal (the caller then notifies a parked core).
    pub(super) fn push(
        &mut self,
        task: TaskRef,
        kind: ScheduleKind,
        injector: &Injector<TaskRef>,
    ) -> bool {
        let displaced = match kind {
            ScheduleKind::Wake => self.lifo.replace(task),
            ScheduleKind::Spawn => Some(task),
            ScheduleKind::Yield => {
                self.deferred.push(task);
                None
            }
        };
        let Some(task) = displaced else { return false };
        if self.local.len() >= LOCAL_QUEUE_CAP {
            // Spill half to the injector so others can take it.
            for _ in 0..LOCAL_QUEUE_CAP / 2 {
                match self.local.pop() {
                    Some(t) => injector.push(t),
                    None => break,
                }
            }
        }
        self.local.push(task);
        true
    }

    /// Whether anything is ready on the core itself (LIFO slot or local
    /// queue).
    pub(super) fn has_ready(&self) -> bool {
        self.lifo.is_some() || !self.local.is_empty()
    }

    /// The next task from this core's own queues or the injector, in the
    /// order the scheduler docs give; `pinned` is the thread's bound CPU
    /// tasks.
    pub(super) fn next_task(
        &mut self,
        injector: &Injector<TaskRef>,
        pinned: &mut std::collections::VecDeque<TaskRef>,
    ) -> Option<TaskRef> {
        if self.tick.is_multiple_of(GLOBAL_QUEUE_INTERVAL) {
            self.flush_deferred();
            if let Some(t) = self.steal_injector(injector) {
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
            if let Some(t) = pinned.pop_front() {
                return Some(t);
            }
        }
        self.local
            .pop()
            .or_else(|| self.steal_injector(injector))
            .or_else(|| pinned.pop_front())
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

    fn steal_injector(&mut self, injector: &Injector<TaskRef>) -> Option<TaskRef> {
        loop {
            match injector.steal_batch_and_pop(&self.local) {
                Steal::Success(t) => return Some(t),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    /// Steals half of another core's queue (random start), then the
    /// injector.
    pub(super) fn steal_others(
        &mut self,
        me: &CoreShared,
        cores: &[CoreShared],
        injector: &Injector<TaskRef>,
    ) -> Option<TaskRef> {
        let n = cores.len();
        // xorshift32
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        let start = self.rng as usize % n;
        for k in 0..n {
            let i = (start + k) % n;
            if i == me.index {
                continue;
            }
            loop {
                match cores[i].stealer.steal_batch_and_pop(&self.local) {
                    Steal::Success(t) => {
                        bump(&me.metrics.steals, 1);
                        return Some(t);
                    }
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
        self.steal_injector(injector)
    }

    /// Drops every queue entry (shutdown; the tasks themselves are
    /// cancelled through the owned list).
    pub(super) fn clear(&mut self) -> Vec<TaskRef> {
        let mut all: Vec<TaskRef> = self.lifo.take().into_iter().collect();
        all.append(&mut self.deferred);
        while let Some(t) = self.local.pop() {
            all.push(t);
        }
        all
    }
}
