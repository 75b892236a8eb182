//! The ownership word of a core: which thread may run it, checked by every
//! access that can happen from inside a poll (Go's `exitsyscall`
//! compare-and-swap on its P).
//!
//! An [`Owned<T>`] is a value behind a mutex plus `owner`: `thread id + 1`
//! of the thread that holds it, `0` when free.
//!
//! - The owner runs its steps under [`lock_for`](Owned::lock_for), which
//!   checks the owner *under the lock*: once a hand-over has changed the
//!   owner, the old thread's next step sees it and runs nothing.
//! - Code inside a poll uses [`try_lock_for`](Owned::try_lock_for): the
//!   owner check, then `try_lock` (the owner never holds the lock across a
//!   poll, so it only fails while a new owner runs a step). On `None` the
//!   caller goes elsewhere (the injector).
//! - A hand-over ([`hand_over`](Owned::hand_over), a compare-and-swap from
//!   the old owner to the new one) can happen at any time, from any thread;
//!   the new owner then locks the value. A push that passed the old owner's
//!   check just before the hand-over lands in the value the new owner runs:
//!   nothing is lost, nothing runs twice.
//!
//! The loom model at the bottom checks the last two points.

use crate::sync::atomic::{AtomicUsize, Ordering::*};
use crate::sync::model::{lock, Mutex, MutexGuard};

pub(crate) struct Owned<T> {
    owner: AtomicUsize,
    value: Mutex<T>,
}

impl<T> Owned<T> {
    pub(crate) fn new(value: T) -> Owned<T> {
        Owned {
            owner: AtomicUsize::new(0),
            value: Mutex::new(value),
        }
    }

    /// Makes `thread` the owner of this free value; false if another thread
    /// holds it.
    pub(crate) fn acquire(&self, thread: usize) -> bool {
        self.owner
            .compare_exchange(0, thread + 1, AcqRel, Acquire)
            .is_ok()
    }

    /// Gives the value up; no-op unless `thread` owns it.
    pub(crate) fn release(&self, thread: usize) {
        let _ = self.owner.compare_exchange(thread + 1, 0, AcqRel, Acquire);
    }

    /// Moves ownership from `from` to `to` (retake, thread park); false if
    /// `from` no longer owns it.
    pub(crate) fn hand_over(&self, from: usize, to: usize) -> bool {
        self.owner
            .compare_exchange(from + 1, to + 1, AcqRel, Acquire)
            .is_ok()
    }

    /// The owner, if any (a racy snapshot, for diagnostics).
    pub(crate) fn owner(&self) -> Option<usize> {
        self.owner.load(Relaxed).checked_sub(1)
    }

    pub(crate) fn is_owned_by(&self, thread: usize) -> bool {
        self.owner.load(Acquire) == thread + 1
    }

    /// Locks the value for a step of its owner; `None` if `thread` no longer
    /// owns it. Checked under the lock: a hand-over changes the owner before
    /// the new owner takes the lock, so a step never runs on a value that
    /// has moved on.
    pub(crate) fn lock_for(&self, thread: usize) -> Option<MutexGuard<'_, T>> {
        let guard = lock(&self.value);
        self.is_owned_by(thread).then_some(guard)
    }

    /// For code inside a poll on `thread`: the value, if that thread still
    /// owns it and nobody has it locked right now.
    pub(crate) fn try_lock_for(&self, thread: usize) -> Option<MutexGuard<'_, T>> {
        if !self.is_owned_by(thread) {
            return None;
        }
        self.value.try_lock().ok()
    }
}

/// Loom model: a hand-over (retake) racing an in-poll `spawn` on the old
/// owner. Run with
/// `RUSTFLAGS="--cfg loom" cargo test -p urgent-executor --no-default-features --lib --release loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Thread A owns the core; inside a poll it pushes task 1 (to the
    /// core if its check passes, else to the injector), then runs a
    /// scheduling step. Thread S hands the core to B and runs B's step,
    /// which drains the core. Covers every interleaving of A's check,
    /// try_lock and push and A's step with S's CAS and B's step: the steps
    /// never overlap, the old owner never runs a step after the new owner
    /// has run one, and task 1 ends up exactly once: drained by B, still in
    /// the core, or in the injector. Checking the owner before taking the
    /// lock in `lock_for` (instead of under it) fails this model: A's step
    /// then runs after B's.
    #[test]
    fn hand_over_racing_in_poll_push_loses_nothing() {
        use loom::sync::atomic::AtomicBool;
        fn step(in_step: &AtomicBool, f: impl FnOnce()) {
            assert!(
                !in_step.swap(true, SeqCst),
                "two threads ran the core's steps at once"
            );
            f();
            in_step.store(false, SeqCst);
        }
        loom::model(|| {
            const A: usize = 0;
            const B: usize = 1;
            let core = Arc::new(Owned::new(Vec::<u32>::new()));
            let injector = Arc::new(Mutex::new(Vec::<u32>::new()));
            let in_step = Arc::new(AtomicBool::new(false));
            let b_stepped = Arc::new(AtomicBool::new(false));
            assert!(core.acquire(A));
            let (c2, i2, s2, b2) = (
                core.clone(),
                injector.clone(),
                in_step.clone(),
                b_stepped.clone(),
            );
            let a = loom::thread::spawn(move || {
                match c2.try_lock_for(A) {
                    Some(mut q) => q.push(1),
                    None => lock(&i2).push(1),
                }
                if let Some(_q) = c2.lock_for(A) {
                    step(&s2, || {
                        let late = b2.load(SeqCst);
                        assert!(!late, "the old owner ran a step after the new owner's");
                    });
                }
            });
            assert!(core.hand_over(A, B));
            let mut seen_by_b = Vec::new();
            if let Some(mut q) = core.lock_for(B) {
                step(&in_step, || {
                    seen_by_b.extend(q.drain(..));
                    b_stepped.store(true, SeqCst);
                });
            }
            a.join().unwrap();
            let left: Vec<u32> = core.lock_for(B).unwrap().clone();
            let injected = lock(&injector).clone();
            let total = seen_by_b.len() + left.len() + injected.len();
            assert_eq!(
                total, 1,
                "b {seen_by_b:?} left {left:?} injector {injected:?}"
            );
            assert!(core.lock_for(A).is_none());
        });
    }
}
