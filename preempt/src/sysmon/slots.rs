//! The slots sysmon watches: a list that can grow while sysmon runs.
//!
//! Slots belong to threads: the runtime's workers get theirs at start, and a
//! thread created later (a spare thread taking over a core) gets one with
//! `Preemptor::add_slot`. sysmon reads the list at every scan, so the read
//! side must take no lock: the list is a fixed-capacity array of
//! `OnceLock<Arc<Slot>>` plus a published length.
//!
//! - **Adders** (any thread) serialise on `grow`: they fill entry `len`
//!   (or hand out an entry no thread holds any more, see `recycle`) and then
//!   store `len + 1` (release).
//! - **Readers** (sysmon, metrics) load `len` (acquire) and read entries
//!   below it, which are set and never change: a slot is never removed, so a
//!   reference into the list stays valid as long as the list.

use super::Slot;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use urgent_stackful::sync::lock;

pub(crate) struct SlotList {
    entries: Box<[OnceLock<Arc<Slot>>]>,
    len: AtomicUsize,
    grow: Mutex<()>,
}

impl SlotList {
    pub(crate) fn with_capacity(capacity: usize) -> SlotList {
        SlotList {
            entries: (0..capacity).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            grow: Mutex::new(()),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Number of published slots.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Slot `i`, if published.
    pub(crate) fn get(&self, i: usize) -> Option<&Arc<Slot>> {
        if i < self.len() {
            self.entries[i].get()
        } else {
            None
        }
    }

    /// The published slots, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.entries[..self.len()].iter().filter_map(OnceLock::get)
    }

    /// Adds a slot made by `make(index)`, or, if `recycle_from` is given,
    /// hands out again a slot at an index at or above it that no one but
    /// this list holds any more (its thread exited and dropped it). `None`
    /// when the list is full.
    pub(crate) fn add(
        &self,
        recycle_from: Option<usize>,
        make: impl FnOnce(usize) -> Arc<Slot>,
    ) -> Option<Arc<Slot>> {
        let _g = lock(&self.grow);
        let len = self.len.load(Ordering::Relaxed);
        if let Some(from) = recycle_from {
            // Under `grow`, and no one else can clone an entry at or above
            // `from` (they are handed out only here): a count of 1 stays 1.
            let free = self.entries[from.min(len)..len]
                .iter()
                .filter_map(OnceLock::get)
                .find(|s| Arc::strong_count(s) == 1);
            if let Some(s) = free {
                return Some(s.clone());
            }
        }
        let entry = self.entries.get(len)?;
        let slot = make(len);
        let _ = entry.set(slot.clone());
        self.len.store(len + 1, Ordering::Release);
        Some(slot)
    }
}
