//! Which runtime the current thread belongs to.
//!
//! Two thread-locals: the handle that `spawn`, timers and `Handle::current`
//! use, and whether the thread is already *inside* a runtime (a worker, or a
//! thread in `block_on`), which is what makes a nested `block_on` a clear
//! panic instead of a deadlock.

use std::cell::{Cell, RefCell};

use super::Handle;

thread_local! {
    static CURRENT: RefCell<Option<Handle>> = const { RefCell::new(None) };
    static ENTERED: Cell<bool> = const { Cell::new(false) };
}

/// The one panic for runtime APIs called where no runtime is current.
#[cold]
#[track_caller]
pub(crate) fn outside_runtime(what: &str) -> ! {
    panic!(
        "urgent: {what}() called outside a runtime; call it from a task, a CPU task or inside \
         Runtime::block_on (#[urgent::main] sets one up), or pass a Handle \
         (rt.handle().clone()) to this thread and call it through that"
    )
}

/// The current runtime's handle, or [`outside_runtime`]'s panic.
#[track_caller]
pub(crate) fn current_or_panic(what: &str) -> Handle {
    try_current().unwrap_or_else(|| outside_runtime(what))
}

pub(crate) fn try_current() -> Option<Handle> {
    CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
}

/// Runs `f` with the current handle, without cloning it.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Handle>) -> R) -> R {
    CURRENT.with(|c| f(c.borrow().as_ref()))
}

/// Makes `handle` current until the guard drops.
pub(crate) struct SetCurrentGuard {
    prev: Option<Handle>,
}

pub(crate) fn set_current(handle: Handle) -> SetCurrentGuard {
    // `try_with`: a runtime may be dropped from a thread-local destructor,
    // after this thread-local is gone; then there is simply no current
    // runtime.
    let prev = CURRENT
        .try_with(|c| c.borrow_mut().replace(handle))
        .ok()
        .flatten();
    SetCurrentGuard { prev }
}

impl Drop for SetCurrentGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        let _ = CURRENT.try_with(|c| *c.borrow_mut() = prev);
    }
}

/// Marks the thread as running inside a runtime until the guard drops.
pub(crate) struct EnterGuard {
    _current: SetCurrentGuard,
}

#[track_caller]
pub(crate) fn enter(handle: Handle) -> EnterGuard {
    if ENTERED.with(|e| e.replace(true)) {
        panic!(
            "urgent: cannot call block_on from inside a runtime (a task, a CPU task or another \
             block_on) because it would block a worker thread; use `.await` instead, or \
             `urgent::spawn` the work and await its JoinHandle"
        );
    }
    EnterGuard {
        _current: set_current(handle),
    }
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let _ = ENTERED.try_with(|e| e.set(false));
    }
}
