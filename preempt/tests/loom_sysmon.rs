//! loom model of sysmon's idle-sleep handshake: `preempt/src/sysmon/gate.rs`,
//! this very source file, compiled here against loom's primitives (the
//! `sync` shim below stands in for the crate's std one).
//!
//! Run (about a second in release; a separate target directory keeps the
//! `--cfg loom` build from invalidating the normal one):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p urgent-preempt --test loom_sysmon --release
//! ```
//!
//! What is covered: every interleaving, up to loom's preemption bound, of a
//! worker publishing a new run (store the slot state, `Gate::published`:
//! fence, load `idle`, swap, lock, notify) with sysmon going to sleep
//! (`Gate::sleep`: lock, store `idle`, fence, re-read the slot, wait on the
//! condvar), including every value loom's memory model lets the relaxed and
//! acquire loads return (a load not ordered by the fences may read a stale
//! value). A lost wake-up shows up as sysmon waiting forever after the worker
//! has finished, which loom reports as a deadlock. Also covered: a second run
//! published while sysmon goes back to sleep after the first wake-up, and
//! shutdown racing with the sleep. Not covered: the timed sleep
//! (`sleep_for`, loom does not model time) and sysmon's scan itself.
//!
//! Shown to fail when the key ordering is weakened (checked by hand when
//! this test was added, each edit alone, then reverted): the worker's
//! `fence(SeqCst)` in `Gate::published` turned into `fence(Release)`, or
//! sysmon's `fence(SeqCst)` in `Gate::sleep` into `fence(AcqRel)`: both
//! `a_new_run_is_never_missed` and `a_second_run_wakes_sysmon_again` fail
//! with loom's "deadlock; threads = [(Id(0), Blocked ..), (Id(1),
//! Terminated)]" (sysmon asleep for good, the worker gone). With the swap in
//! `Gate::wake` relaxed instead of AcqRel, `a_new_run_is_never_missed`
//! fails its "sysmon missed the run" assertion (woken without waiting, the
//! re-scan may read the old state); that is how the release was found.
#![cfg(loom)]

/// loom's primitives under the names `gate.rs` uses.
mod sync {
    pub(crate) use loom::sync::atomic::{fence, AtomicBool, Ordering};
    pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

    pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[allow(dead_code)]
#[path = "../src/sysmon/gate.rs"]
mod gate;

use gate::Gate;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// The worker's side of a new coroutine run: the slot's tick (standing in
/// for its state), then the gate.
fn publish_run(gate: &Gate, tick: &AtomicU64, t: u64) {
    tick.store(t, Ordering::Release);
    gate.published();
}

#[test]
fn a_new_run_is_never_missed() {
    model(|| {
        let gate = Arc::new(Gate::new());
        let tick = Arc::new(AtomicU64::new(0));
        let worker = {
            let (gate, tick) = (gate.clone(), tick.clone());
            thread::spawn(move || publish_run(&gate, &tick, 1))
        };
        // sysmon scanned, found nothing to time, sleeps with no deadline.
        gate.sleep(|| tick.load(Ordering::Acquire) != 0);
        // Woken (or not asleep at all): it must now see the run.
        assert_eq!(tick.load(Ordering::Acquire), 1, "sysmon missed the run");
        worker.join().unwrap();
    });
}

#[test]
fn a_second_run_wakes_sysmon_again() {
    model(|| {
        let gate = Arc::new(Gate::new());
        let tick = Arc::new(AtomicU64::new(0));
        let worker = {
            let (gate, tick) = (gate.clone(), tick.clone());
            thread::spawn(move || {
                publish_run(&gate, &tick, 1);
                publish_run(&gate, &tick, 2);
            })
        };
        let mut seen = 0;
        while seen < 2 {
            let cur = tick.load(Ordering::Acquire);
            if cur > seen {
                seen = cur;
                continue;
            }
            gate.sleep(|| tick.load(Ordering::Acquire) > seen);
        }
        worker.join().unwrap();
    });
}

#[test]
fn shutdown_ends_the_sleep() {
    model(|| {
        let gate = Arc::new(Gate::new());
        let stopper = {
            let gate = gate.clone();
            thread::spawn(move || gate.shutdown())
        };
        gate.sleep(|| false);
        stopper.join().unwrap();
        assert!(gate.is_shutdown());
    });
}
