//! Idle cores (Go's `pidle` + `nmspinning`, tokio's "searching").
//!
//! A core with nothing to run becomes *searching* (its thread steals from
//! the other cores and the injector) if fewer than half the cores already
//! search, and parks otherwise. New work wakes at most one parked core, and
//! only when no core is searching: a searcher will find it. A searcher that
//! finds work and was the last one wakes another parked core if more work is
//! still queued behind it.
//!
//! Lost wake-ups are excluded by a Dekker pair:
//! - a parking core registers as a sleeper (`register_sleeper`, which bumps
//!   `num_idle`), or a searcher stops counting as one (`end_searching`),
//!   then issues `fence(SeqCst)` and re-checks every queue;
//! - a scheduler pushes its task, then issues `fence(SeqCst)` and reads
//!   `num_searching` and `num_idle` (`Shared::notify_parked`).
//!
//! At least one of the two sees the other's write: either the parker sees
//! the task, or the scheduler sees a sleeper and, with nobody searching,
//! wakes it. The fences (not only SeqCst accesses) carry the guarantee, which
//! is also what the loom model checks (loom models SeqCst accesses as
//! AcqRel, and only `fence(SeqCst)` as sequentially consistent).
//!
//! `sleepers` (the list) is guarded by its mutex; the counters are atomics
//! read without it (the fast path of `notify_parked` takes no lock when
//! nobody sleeps or someone searches).

use crate::sync::atomic::{AtomicUsize, Ordering::*};
use crate::sync::model::{lock, Mutex};

struct Sleepers {
    /// Parked cores, most recent last.
    list: Vec<usize>,
    sleeping: Vec<bool>,
}

pub(crate) struct Idle {
    sleepers: Mutex<Sleepers>,
    num_searching: AtomicUsize,
    num_idle: AtomicUsize,
    cores: usize,
    /// CPUs this process may run on: spinning only pays while the cores
    /// that are awake (running or searching) do not outnumber them.
    cpus: usize,
}

impl Idle {
    pub(crate) fn new(cores: usize, cpus: usize) -> Idle {
        Idle {
            sleepers: Mutex::new(Sleepers {
                list: Vec::with_capacity(cores),
                sleeping: vec![false; cores],
            }),
            num_searching: AtomicUsize::new(0),
            num_idle: AtomicUsize::new(0),
            cores,
            cpus,
        }
    }

    /// The scheduler's half of the Dekker pair, after its push (which the
    /// caller's `fence(SeqCst)` orders before these loads): the core to
    /// unpark, if one sleeps and nobody searches. The woken core counts as
    /// searching from here on.
    pub(crate) fn core_to_notify(&self) -> Option<usize> {
        if self.num_searching.load(SeqCst) != 0 || self.num_idle.load(SeqCst) == 0 {
            return None;
        }
        let mut st = lock(&self.sleepers);
        if self.num_searching.load(SeqCst) != 0 {
            return None;
        }
        let i = st.list.pop()?;
        st.sleeping[i] = false;
        self.num_idle.fetch_sub(1, SeqCst);
        self.num_searching.fetch_add(1, SeqCst);
        Some(i)
    }

    /// The parker's half: registers core `i` as asleep. The caller then
    /// issues `fence(SeqCst)` and re-checks the queues before it parks.
    pub(crate) fn register_sleeper(&self, i: usize) {
        let mut st = lock(&self.sleepers);
        debug_assert!(!st.sleeping[i]);
        st.sleeping[i] = true;
        st.list.push(i);
        self.num_idle.fetch_add(1, SeqCst);
    }

    /// Removes `i` from the sleepers. False if a notifier already did, in
    /// which case that notifier counted `i` as searching.
    pub(crate) fn unregister_sleeper(&self, i: usize) -> bool {
        let mut st = lock(&self.sleepers);
        if !st.sleeping[i] {
            return false;
        }
        st.sleeping[i] = false;
        st.list.retain(|&s| s != i);
        self.num_idle.fetch_sub(1, SeqCst);
        true
    }

    /// Starts searching unless half the cores already do.
    pub(crate) fn try_begin_searching(&self) -> bool {
        let s = self.num_searching.load(SeqCst);
        if 2 * s >= self.cores && s > 0 {
            return false;
        }
        self.num_searching.fetch_add(1, SeqCst);
        true
    }

    /// Stops searching; true if the caller was the last searcher.
    pub(crate) fn end_searching(&self) -> bool {
        self.num_searching.fetch_sub(1, SeqCst) == 1
    }

    /// (parked cores, searching cores), for schedtrace.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (
            self.num_idle.load(Relaxed),
            self.num_searching.load(Relaxed),
        )
    }

    /// Whether a spinning searcher would take a CPU from a core with work:
    /// more cores awake than the process has CPUs.
    pub(crate) fn oversubscribed(&self) -> bool {
        self.cores - self.num_idle.load(Relaxed) > self.cpus
    }
}

/// The idle protocol as a loom model body (called from the parker's loom
/// tests, which own the mock driver).
#[cfg(all(test, loom))]
pub(crate) mod loom_idle {
    use super::*;
    use crate::runtime::park::loom_tests::MockDriver;
    use crate::runtime::park::Parker;
    use crate::sync::atomic::{fence, AtomicBool};
    use loom::sync::Arc;

    pub(crate) fn parking_core_sees_work_or_is_woken() {
        let idle = Arc::new(Idle::new(1, 1));
        let parker = Arc::new(Parker::new());
        let driver = Arc::new(MockDriver::new());
        let queue = Arc::new(AtomicBool::new(false));
        let (i2, p2, d2, q2) = (idle.clone(), parker.clone(), driver.clone(), queue.clone());
        let producer = loom::thread::spawn(move || {
            q2.store(true, Relaxed); // the push
            fence(SeqCst);
            if let Some(i) = i2.core_to_notify() {
                assert_eq!(i, 0);
                p2.unpark(&*d2);
            }
        });
        // Core 0 (the worker loop's go_idle, without the spin).
        idle.register_sleeper(0);
        fence(SeqCst);
        if !queue.load(Relaxed) {
            parker.park(&*driver);
        }
        idle.unregister_sleeper(0);
        producer.join().unwrap();
        assert!(queue.load(Relaxed));
    }
}
