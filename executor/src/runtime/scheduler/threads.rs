//! Threads as the scheduler sees them (Go's Ms): the N worker threads and
//! the spare threads that stand in for them.
//!
//! # Who holds which core
//!
//! Core `i` belongs to worker thread `i`, its *home* thread: only that
//! thread ever starts CPU tasks on it or resumes them (they are bound to
//! the thread). A *spare* thread holds a core only while its home thread
//! cannot: sysmon retook the core from a home thread stuck in one poll of a
//! future, or blocked in the kernel inside a CPU task (`Shared::retake`), or
//! the home thread parked itself with a CPU task preempted at a
//! thread-affine point (`worker::park_current_thread`). A spare runs the
//! core's futures (it never starts a CPU task: one it pops goes to the home
//! thread's queue) and gives the core back to the home thread as soon as
//! the home thread asks (`home_wants`) and either the core has nothing
//! ready or the time it asked for has come (a thread park lets the core's
//! other tasks run a quantum first). Then the spare waits in the pool for
//! another core, and exits after the keep-alive.
//!
//! # Hand-over
//!
//! Every move of a core is `Shared::hand_core`: a compare-and-swap of the
//! core's ownership word from the old holder to the new (see `owner.rs`),
//! then `core` of both thread records, then a wake-up of the new holder.
//! The old holder notices at its next scheduling step (`lock_for` fails)
//! and waits for a core; code inside its current poll routes spawns and
//! wakes to the injector once the ownership check fails.
//!
//! A thread waits for a core on its own parker (`ThreadShared::wait`): a
//! flag plus `std::thread::park`, so a wake-up sent before the wait is not
//! lost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::sync::lock;
use crate::task::TaskRef;

/// `ThreadShared::core` of a thread that holds no core.
pub(super) const NO_CORE: usize = usize::MAX;

/// What other threads may touch of a thread.
pub(super) struct ThreadShared {
    /// Bound CPU tasks scheduled from other threads.
    pub(super) inbox: Mutex<VecDeque<TaskRef>>,
    pub(super) inbox_len: AtomicUsize,
    /// Length of the thread's pinned queue, published for schedtrace.
    pub(super) pinned_len: AtomicUsize,
    /// The core the thread holds, or [`NO_CORE`].
    pub(super) core: AtomicUsize,
    /// Parked inside the preempt hook with its CPU task (for schedtrace).
    pub(super) parked: AtomicBool,
    /// Inside a task's poll (set around `run_task`): only such a thread may
    /// have its core retaken. sysmon's sample can be stale by the time its
    /// handler runs; a thread that has meanwhile gone idle and parked on its
    /// core's parker must keep the core (two threads parked on one parker
    /// would lose wake-ups).
    pub(super) polling: AtomicBool,
    handle: Mutex<Option<Thread>>,
    woken: AtomicBool,
}

impl ThreadShared {
    pub(super) fn new(core: usize) -> ThreadShared {
        ThreadShared {
            inbox: Mutex::new(VecDeque::new()),
            inbox_len: AtomicUsize::new(0),
            pinned_len: AtomicUsize::new(0),
            core: AtomicUsize::new(core),
            parked: AtomicBool::new(false),
            polling: AtomicBool::new(false),
            handle: Mutex::new(None),
            woken: AtomicBool::new(false),
        }
    }

    /// Called by the thread itself when it starts.
    pub(super) fn set_handle(&self) {
        *lock(&self.handle) = Some(std::thread::current());
    }

    /// Wakes the thread if it waits (or makes its next wait return).
    pub(super) fn notify(&self) {
        self.woken.store(true, Release);
        if let Some(t) = lock(&self.handle).as_ref() {
            t.unpark();
        }
    }

    /// Waits for [`notify`](Self::notify), at most `timeout`; true if
    /// notified.
    pub(super) fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.woken.swap(false, Acquire) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::park_timeout(deadline - now);
        }
    }
}

/// The pool of spare threads.
pub(super) struct Spares {
    /// Spare threads waiting for a core.
    idle: Mutex<Vec<usize>>,
    /// Spare threads alive (running, waiting or starting).
    pub(super) alive: AtomicUsize,
    pub(super) max: usize,
    warned: AtomicBool,
    /// Retakes and thread parks that found no spare thread (at the cap).
    pub(super) refused: AtomicU64,
}

impl Spares {
    pub(super) fn new(max: usize) -> Spares {
        Spares {
            idle: Mutex::new(Vec::new()),
            alive: AtomicUsize::new(0),
            max,
            warned: AtomicBool::new(false),
            refused: AtomicU64::new(0),
        }
    }

    pub(super) fn take_idle(&self) -> Option<usize> {
        lock(&self.idle).pop()
    }

    pub(super) fn put_idle(&self, t: usize) {
        lock(&self.idle).push(t);
    }

    /// Removes `t` from the idle list; false if a hand-over took it first
    /// (a core is on its way).
    pub(super) fn retire(&self, t: usize) -> bool {
        let mut idle = lock(&self.idle);
        match idle.iter().position(|&x| x == t) {
            Some(i) => {
                idle.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Reserves room for one more spare thread; false at the cap.
    pub(super) fn reserve(&self) -> bool {
        self.alive
            .fetch_update(AcqRel, Acquire, |n| (n < self.max).then_some(n + 1))
            .is_ok()
    }

    /// At the cap: counts it, and says so once on stderr.
    pub(super) fn refuse(&self, what: &str) {
        self.refused.fetch_add(1, Relaxed);
        if !self.warned.swap(true, Relaxed) {
            eprintln!(
                "urgent: all {} spare threads are in use (Builder::max_spare_threads), so a core \
                 stays with its thread while {what}; other tasks of that core wait. Raise \
                 Builder::max_spare_threads, or move blocking calls to \
                 urgent::task::spawn_blocking and long computations to urgent::spawn_cpu",
                self.max
            );
        }
    }
}

/// Loom model of the hand-back (run with the other models:
/// `RUSTFLAGS="--cfg loom" cargo test -p urgent-executor --no-default-features --lib --release loom`).
#[cfg(all(test, loom))]
mod loom_tests {
    use crate::runtime::park::loom_tests::MockDriver;
    use crate::runtime::park::Parker;
    use crate::runtime::scheduler::owner::Owned;
    use crate::sync::atomic::{AtomicBool, Ordering::*};
    use loom::sync::Arc;

    /// Home thread H lost its core to spare S, which is idle. H asks for it
    /// back (`home_wants`, then an unpark of the core's parker) and waits on
    /// its own parker; S checks `home_wants` before each park of the core's
    /// parker and hands the core back with the ownership CAS when it sees
    /// the request. Covers every interleaving of H's request with S's
    /// check-then-park: S never sleeps through the request and H never
    /// through the hand-back (loom reports either as a deadlock), and the
    /// core ends up H's. Setting `home_wants` after the unpark instead of
    /// before fails this model.
    #[test]
    fn hand_back_is_never_missed() {
        loom::model(|| {
            const H: usize = 0;
            const S: usize = 1;
            let core = Arc::new(Owned::new(()));
            assert!(core.acquire(H));
            assert!(core.hand_over(H, S));
            let wants = Arc::new(AtomicBool::new(false));
            let core_parker = Arc::new(Parker::new());
            let home_parker = Arc::new(Parker::new());
            let driver = Arc::new(MockDriver::new());
            let (c2, w2, cp2, hp2, d2) = (
                core.clone(),
                wants.clone(),
                core_parker.clone(),
                home_parker.clone(),
                driver.clone(),
            );
            let spare = loom::thread::spawn(move || loop {
                if w2.load(Acquire) {
                    assert!(c2.hand_over(S, H));
                    hp2.unpark(&*d2);
                    return;
                }
                cp2.park(&*d2);
            });
            wants.store(true, Release);
            core_parker.unpark(&*driver);
            while !core.is_owned_by(H) {
                home_parker.park(&*driver);
            }
            spare.join().unwrap();
            assert!(core.lock_for(H).is_some());
        });
    }
}
