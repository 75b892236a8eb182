//! The timer heap. One per runtime, shared by every thread.
//!
//! Each armed [`Sleep`](super::Sleep) owns an `Arc<Entry>` and the heap holds
//! another. An entry goes `PENDING → FIRED` (the driver popped it after its
//! deadline and woke its waker) or `PENDING → CANCELLED` (its `Sleep` was
//! dropped or reset first). Cancelled entries stay in the heap until they
//! reach the top or until they make up half of it, when the heap is rebuilt
//! without them; both keep the cost of a cancelled timeout amortised O(log n)
//! and bound the memory they hold.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;

const PENDING: u8 = 0;
const FIRED: u8 = 1;
const CANCELLED: u8 = 2;

pub(crate) struct Entry {
    state: AtomicU8,
    pub(crate) waker: AtomicWaker,
}

impl Entry {
    pub(crate) fn is_fired(&self) -> bool {
        self.state.load(Acquire) == FIRED
    }
}

struct Key {
    deadline: Instant,
    seq: u64,
    entry: Arc<Entry>,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

#[derive(Default)]
struct Heap {
    heap: BinaryHeap<Key>,
    seq: u64,
}

pub(crate) struct Timers {
    heap: Mutex<Heap>,
    cancelled: AtomicUsize,
    /// Earliest deadline in the heap, as nanos since `base` (u64::MAX: none).
    /// Lets idle workers compute their timeout without the lock.
    earliest: AtomicU64,
    /// The deadline a worker sleeping in the driver will wake at (u64::MAX:
    /// no worker sleeps there, or it sleeps without a deadline).
    parked_until: AtomicU64,
    base: Instant,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            heap: Mutex::new(Heap::default()),
            cancelled: AtomicUsize::new(0),
            earliest: AtomicU64::new(u64::MAX),
            parked_until: AtomicU64::new(u64::MAX),
            base: Instant::now(),
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base)
            .as_nanos()
            .min(u64::MAX as u128 - 1) as u64
    }

    fn lock(&self) -> crate::sync::Locked<'_, Heap> {
        crate::sync::lock(&self.heap)
    }

    /// Arms a timer. Returns whether the driver must be woken to re-compute
    /// its sleep (the new deadline is earlier than the one it sleeps to).
    pub(crate) fn insert(&self, deadline: Instant, waker: &Waker) -> (Arc<Entry>, bool) {
        let entry = Arc::new(Entry {
            state: AtomicU8::new(PENDING),
            waker: AtomicWaker::new(),
        });
        entry.waker.register(waker);
        let ns = self.nanos(deadline);
        {
            let mut h = self.lock();
            let cancelled = self.cancelled.load(Relaxed);
            if cancelled > 64 && cancelled * 2 > h.heap.len() {
                h.heap.retain(|k| k.entry.state.load(Relaxed) == PENDING);
                self.cancelled.store(0, Relaxed);
            }
            h.seq += 1;
            let seq = h.seq;
            h.heap.push(Key {
                deadline,
                seq,
                entry: entry.clone(),
            });
            self.earliest.fetch_min(ns, AcqRel);
        }
        let wake_driver = ns < self.parked_until.load(Acquire);
        (entry, wake_driver)
    }

    pub(crate) fn cancel(&self, entry: &Entry) {
        if entry
            .state
            .compare_exchange(PENDING, CANCELLED, AcqRel, Acquire)
            .is_ok()
        {
            self.cancelled.fetch_add(1, Relaxed);
        }
    }

    /// Time until the earliest timer (zero if one is due), `None` if none.
    pub(crate) fn next_timeout(&self) -> Option<Duration> {
        let e = self.earliest.load(Acquire);
        if e == u64::MAX {
            return None;
        }
        let now = self.nanos(Instant::now());
        // Round up to the next millisecond boundary is epoll's business; we
        // hand it the exact remainder.
        Some(Duration::from_nanos(e.saturating_sub(now)))
    }

    pub(crate) fn set_parked_until(&self, t: Option<Instant>) {
        let ns = t.map_or(u64::MAX, |t| self.nanos(t));
        self.parked_until.store(ns, Release);
    }

    /// Fires every timer whose deadline is at or before `now`.
    /// Whether any timer is armed (lock-free; a timer armed concurrently may
    /// be missed, as with any snapshot).
    pub(crate) fn any_armed(&self) -> bool {
        self.earliest.load(Acquire) != u64::MAX
    }

    pub(crate) fn fire_due(&self, now: Instant) {
        if self.nanos(now) < self.earliest.load(Acquire) {
            return;
        }
        let mut wakers: Vec<Waker> = Vec::new();
        {
            let mut h = self.lock();
            while let Some(top) = h.heap.peek() {
                if top.deadline > now {
                    break;
                }
                let key = h.heap.pop().expect("peeked");
                match key
                    .entry
                    .state
                    .compare_exchange(PENDING, FIRED, AcqRel, Acquire)
                {
                    Ok(_) => {
                        if let Some(w) = key.entry.waker.take() {
                            wakers.push(w);
                        }
                    }
                    Err(_) => {
                        let _ = self
                            .cancelled
                            .fetch_update(Relaxed, Relaxed, |c| c.checked_sub(1));
                    }
                }
            }
            let next = h.heap.peek().map_or(u64::MAX, |k| self.nanos(k.deadline));
            self.earliest.store(next, Release);
        }
        for w in wakers {
            w.wake();
        }
    }
}
