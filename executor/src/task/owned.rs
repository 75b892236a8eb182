//! The list of every task of a runtime that has not completed, so that
//! shutdown can drop their futures. Sharded to keep spawn-heavy workloads on
//! different threads off each other's locks.
//!
//! Invariant: a task is in the list from `insert` until it completes; its key
//! (shard and slot) is stored in its header. Once `close` has run, `insert`
//! refuses new tasks and the caller cancels them instead.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::Mutex;

use super::{Header, TaskRef};

const SHARDS: usize = 16;
const SHARD_BITS: u32 = 4;

pub(crate) struct OwnedTasks {
    shards: Box<[Mutex<Slab>]>,
    closed: AtomicBool,
}

#[derive(Default)]
struct Slab {
    entries: Vec<Entry>,
    free: Option<usize>,
    len: usize,
}

enum Entry {
    Occupied(TaskRef),
    Vacant(Option<usize>),
}

thread_local! {
    /// The shard this thread inserts into next.
    static NEXT_SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The shard for the next insert from this thread: threads start at
/// different shards and then rotate through all of them. One shard per
/// thread would put every task spawned from one thread (a `block_on` loop)
/// behind one lock, which all workers then take again to remove those tasks
/// as they complete.
fn next_shard() -> usize {
    static START: AtomicUsize = AtomicUsize::new(0);
    NEXT_SHARD.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = START.fetch_add(7, Relaxed);
        }
        s.set(i.wrapping_add(1));
        i % SHARDS
    })
}

impl OwnedTasks {
    pub(crate) fn new() -> OwnedTasks {
        OwnedTasks {
            shards: (0..SHARDS).map(|_| Mutex::new(Slab::default())).collect(),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self, shard: usize) -> crate::sync::Locked<'_, Slab> {
        crate::sync::lock(&self.shards[shard])
    }

    /// Adds a task; `Err(task)` if the runtime is shutting down.
    pub(crate) fn insert(&self, task: TaskRef) -> Result<(), TaskRef> {
        let shard = next_shard();
        let mut slab = self.lock(shard);
        // Checked under the lock: `close` takes every lock after setting the
        // flag, so no insert can slip in behind its sweep.
        if self.closed.load(Acquire) {
            return Err(task);
        }
        let slot = match slab.free {
            Some(i) => {
                let Entry::Vacant(next) = slab.entries[i] else {
                    unreachable!("free list points at an occupied slot")
                };
                slab.free = next;
                i
            }
            None => {
                slab.entries.push(Entry::Vacant(None));
                slab.entries.len() - 1
            }
        };
        task.header()
            .owned_key
            .store((slot << SHARD_BITS) | shard, Relaxed);
        slab.entries[slot] = Entry::Occupied(task);
        slab.len += 1;
        Ok(())
    }

    /// Removes a completed task (no-op if it was never inserted or was
    /// already taken by `close`).
    pub(crate) fn remove(&self, header: &Header) {
        let key = header.owned_key.swap(usize::MAX, Relaxed);
        if key == usize::MAX {
            return;
        }
        let (shard, slot) = (key & (SHARDS - 1), key >> SHARD_BITS);
        let removed = {
            let mut slab = self.lock(shard);
            if slot >= slab.entries.len() {
                // `close` drained the list after we read the key.
                return;
            }
            let free = slab.free;
            let old = std::mem::replace(&mut slab.entries[slot], Entry::Vacant(free));
            match old {
                Entry::Occupied(t) => {
                    slab.free = Some(slot);
                    slab.len -= 1;
                    Some(t)
                }
                vacant => {
                    slab.entries[slot] = vacant;
                    None
                }
            }
        };
        // Drop our reference outside the lock.
        drop(removed);
    }

    /// Refuses further inserts and returns every task still in the list.
    pub(crate) fn close(&self) -> Vec<TaskRef> {
        self.closed.store(true, Release);
        let mut all = Vec::new();
        for shard in 0..SHARDS {
            let mut slab = self.lock(shard);
            for e in slab.entries.drain(..) {
                if let Entry::Occupied(t) = e {
                    t.header().owned_key.store(usize::MAX, Relaxed);
                    all.push(t);
                }
            }
            slab.free = None;
            slab.len = 0;
        }
        all
    }

    pub(crate) fn len(&self) -> usize {
        (0..SHARDS).map(|s| self.lock(s).len).sum()
    }
}
