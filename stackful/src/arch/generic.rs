//! Portable `current`: a const-initialised `thread_local!` without a
//! destructor (reading it allocates nothing and registers nothing, so it is
//! async-signal-safe), read out of line; see the module docs.

use std::cell::Cell;
use std::ptr;

thread_local! {
    static CURRENT: Cell<*const ()> = const { Cell::new(ptr::null()) };
}

/// This thread's current-coroutine pointer (null outside coroutines).
/// Never inlined: a preemption cannot split the read (see the module docs).
#[inline(never)]
pub(crate) fn current() -> *const () {
    CURRENT.with(|c| c.get())
}

/// Sets this thread's current-coroutine pointer.
#[inline]
pub(crate) fn set_current(p: *const ()) {
    CURRENT.with(|c| c.set(p))
}
