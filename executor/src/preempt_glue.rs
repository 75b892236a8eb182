//! Where the executor meets `urgent-preempt`: the worker's preemption slot,
//! the bracket around every coroutine resume, and the hook the trampoline
//! calls to suspend a preempted coroutine.
//!
//! Each worker thread registers its [`Slot`] once (`register_worker`); the
//! slot is also kept in a thread-local here so `run_coroutine` can tell
//! sysmon when a coroutine starts and stops. Threads without a slot (none
//! run coroutines today) simply resume without telling anyone.

use std::cell::RefCell;
use std::sync::{Arc, Once};

use urgent_preempt::Slot;
use urgent_stackful::{Coroutine, Resume, SuspendKind};

thread_local! {
    static SLOT: RefCell<Option<Arc<Slot>>> = const { RefCell::new(None) };
}

/// Names of the shims user closures and awaited futures run in: entry
/// frames where the safe-point walk stops (the runtime's frames below them
/// hold nothing while user code runs).
const USER_SHIMS: [&str; 2] = [
    "urgent_executor::cpu::run_user",
    "urgent_executor::cpu::poll_user",
];

/// Installs the process-wide pieces once: the trampoline's hook and the
/// allow-listed shim.
pub(crate) fn init_process() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for shim in USER_SHIMS {
            urgent_preempt::allow_prefix(shim);
        }
        urgent_preempt::set_preempt_hook(preempt_hook);
    });
}

/// Called by the trampoline on the preempted coroutine's own stack: a
/// coroutine switch, or a thread park when the handler found the task where
/// it holds thread-affine state (or the runtime is strict).
fn preempt_hook() {
    let park = urgent_preempt::take_park_request();
    if park != urgent_preempt::Park::No && crate::runtime::scheduler::park_current_thread(park) {
        return;
    }
    urgent_stackful::suspend(SuspendKind::Preempted);
}

/// The preempted coroutine's run is on hold (its thread parks): sysmon
/// stops timing it.
pub(crate) fn pause_run() {
    SLOT.with(|s| {
        if let Some(slot) = s.borrow().as_ref() {
            slot.idle();
        }
    });
}

/// The parked coroutine runs again, on the stack `[lo, hi)`: a new run for
/// sysmon.
pub(crate) fn resume_run(lo: usize, hi: usize) {
    SLOT.with(|s| {
        if let Some(slot) = s.borrow().as_ref() {
            slot.coroutine_started(lo, hi);
        }
    });
}

/// Called once on each worker thread.
pub(crate) fn register_worker(slot: Arc<Slot>) {
    slot.register_current_thread();
    SLOT.with(|s| *s.borrow_mut() = Some(slot));
}

/// Resumes `co` on this worker, telling sysmon when it starts and stops.
#[inline]
pub(crate) fn run_coroutine<R>(co: &mut Coroutine<R>) -> Resume {
    SLOT.with(|s| {
        let s = s.borrow();
        match s.as_ref() {
            Some(slot) => {
                let (lo, hi) = co.stack_bounds();
                slot.coroutine_started(lo, hi);
                let r = co.resume();
                slot.coroutine_stopped();
                r
            }
            None => co.resume(),
        }
    })
}

/// True if sysmon asked this worker's running coroutine to yield, or its
/// quantum is over.
#[inline]
pub(crate) fn should_yield() -> bool {
    urgent_preempt::should_yield()
}
