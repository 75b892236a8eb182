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

/// Floating-point control modes are not isolated on this target yet (the
/// switch does not touch them): a constant, so the checks compile away.
pub(crate) const DEFAULT_FP_CONTROL: u32 = 0;

/// See [`DEFAULT_FP_CONTROL`].
#[inline(always)]
pub(crate) fn fp_control() -> u32 {
    0
}

/// See [`DEFAULT_FP_CONTROL`].
#[inline(always)]
pub(crate) fn switch_fp_control(_from: u32, _to: u32) {}
