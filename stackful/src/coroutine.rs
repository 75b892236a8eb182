//! The coroutine type, built on corosensei's context switch.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

use corosensei::{CoroutineResult, Yielder};

use crate::stack::Stack;

/// A panic payload.
type Payload = Box<dyn Any + Send + 'static>;

type Inner = corosensei::Coroutine<(), SuspendKind, Result<(), Payload>, Stack>;

/// Why a coroutine suspended itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SuspendKind {
    /// A cooperative suspension at a call site (`wait`, `checkpoint`,
    /// `yield_now`). A coroutine suspended this way can be unwound.
    Yield,
    /// An asynchronous preemption, requested from the signal trampoline. The
    /// interrupted instruction is not a call site, so the coroutine can only
    /// be resumed, never unwound.
    Preempted,
}

/// What [`Coroutine::resume`] observed.
pub enum Resume {
    /// The coroutine called [`suspend`] with this kind.
    Suspended(SuspendKind),
    /// The closure returned.
    Finished,
    /// The closure panicked; the panic was caught on the coroutine's stack and
    /// this is its payload (as from [`std::panic::catch_unwind`]).
    Panicked(Box<dyn Any + Send + 'static>),
}

impl fmt::Debug for Resume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resume::Suspended(k) => f.debug_tuple("Suspended").field(k).finish(),
            Resume::Finished => f.write_str("Finished"),
            Resume::Panicked(_) => f.write_str("Panicked(..)"),
        }
    }
}

/// Book-keeping for one coroutine, reachable from the thread-local `CURRENT`
/// while that coroutine runs (only then: the `Coroutine` may move between
/// resumptions, so nothing keeps this address across a suspension).
pub(crate) struct Running {
    /// The coroutine's yielder (the parent link on its own stack, so its
    /// address is stable). Set on first entry.
    yielder: Cell<*const Yielder<(), SuspendKind>>,
    /// The `Running` of whatever ran on this thread before we were resumed:
    /// null for a plain thread, or an outer coroutine that resumed us.
    parent: Cell<*const Running>,
    /// Kind of the current suspension; `None` while new, running or finished.
    /// Written only by the resumer.
    last_suspend: Cell<Option<SuspendKind>>,
    /// Set by `Drop` before the forced unwind.
    unwinding: Cell<bool>,
    /// How many times a `suspend` restarted the forced unwind.
    repanics: Cell<u32>,
    /// Start of the guard page.
    pub(crate) guard_lo: usize,
    /// End of the guard page = lowest usable address.
    pub(crate) stack_lo: usize,
    /// Top of the stack.
    pub(crate) top: usize,
}

thread_local! {
    /// The coroutine running on this thread, or null. Const-initialised and
    /// without a destructor, so reading it is a plain TLS load: safe in a
    /// signal handler (no allocation, no lazy registration).
    static CURRENT: Cell<*const Running> = const { Cell::new(ptr::null()) };
}

/// Guard bounds of the coroutine running on this thread: `(guard_lo,
/// stack_lo, top)`. Async-signal-safe.
pub(crate) fn current_bounds() -> Option<(usize, usize, usize)> {
    let cur = CURRENT.try_with(|c| c.get()).unwrap_or(ptr::null());
    if cur.is_null() {
        return None;
    }
    // SAFETY: CURRENT is non-null only while `Coroutine::resume` (or its
    // drop-time unwind) runs on this thread, and it points into that
    // coroutine's `Coroutine` value, which is borrowed for the whole time.
    let r = unsafe { &*cur };
    Some((r.guard_lo, r.stack_lo, r.top))
}

/// `(lowest usable address, top)` of the stack of the coroutine running on
/// this thread, or `None` outside coroutines.
///
/// Async-signal-safe (one read of a const-initialised thread-local, no
/// allocation, no lock), so a signal handler can check whether an
/// interrupted stack pointer lies on the current coroutine's stack.
#[inline]
pub fn current_stack_bounds() -> Option<(usize, usize)> {
    current_bounds().map(|(_, lo, top)| (lo, top))
}

/// Payload of the panic that keeps unwinding a coroutine whose forced unwind
/// was caught by a `catch_unwind` inside it.
struct ForcedUnwind;

/// A stackful coroutine running a `FnOnce() + Send + 'static` closure on its
/// own [`Stack`].
///
/// States: *new* (created, never resumed), *running* (inside
/// [`resume`](Coroutine::resume)), *suspended* with a [`SuspendKind`], and
/// *finished* (the closure returned or panicked).
///
/// ```
/// use urgent_stackful::{suspend, Coroutine, Resume, Stack, SuspendKind};
///
/// let mut co = Coroutine::new(Stack::new(64 * 1024).unwrap(), || {
///     for _ in 0..3 {
///         suspend(SuspendKind::Yield);
///     }
/// });
/// let mut n = 0;
/// while let Resume::Suspended(SuspendKind::Yield) = co.resume() {
///     n += 1;
/// }
/// assert_eq!(n, 3);
/// assert!(co.is_finished());
/// ```
///
/// # Dropping
///
/// Dropping a coroutine that is new drops its closure. Dropping one that is
/// suspended with [`SuspendKind::Yield`] unwinds its stack on the dropping
/// thread (corosensei's forced unwind: the pending `suspend` call panics with
/// a private payload), so every destructor on it runs. A `catch_unwind`
/// inside the coroutine can catch that panic, but cannot stop it: every later
/// [`suspend`] panics again at once without switching (or returns at once, if
/// called from a destructor during the unwind). A closure that catches the
/// unwind and never suspends again runs on until it returns, inside `drop`;
/// one that catches it at every suspension point more than 1000 times aborts
/// the process rather than hang `drop` forever.
///
/// Dropping a coroutine suspended with [`SuspendKind::Preempted`] does **not**
/// unwind it: the interrupted instruction is not a call site, so there is no
/// unwind information to resume from. Its stack is discarded (corosensei's
/// `force_reset`) and reused, and **the destructors of everything on that
/// stack never run**: memory it owned leaks, locks it held stay locked,
/// reference counts it held are never released. The runtime only does this
/// when a preempted task is aborted or the runtime shuts down.
///
/// # `Send`
///
/// The closure is `Send`, but values it creates on the coroutine's stack need
/// not be: an `Rc` or a `MutexGuard` may live across a suspension and then be
/// used on the thread that resumes the coroutine next. This is sound as long
/// as no such value is shared with anything outside the coroutine that stays
/// on the old thread, i.e. the coroutine does not keep references into
/// thread-local state across a suspension. That is the rule the runtime
/// states for CPU tasks (DESIGN §6): cooperative suspensions happen at calls
/// the task makes knowingly, and preempted coroutines stay on their worker
/// unless the user opts into migration. A coroutine must never be resumed
/// from inside itself (checked).
pub struct Coroutine {
    inner: ManuallyDrop<Inner>,
    state: Running,
    size: usize,
}

// SAFETY: see "Send" in the type's documentation. The closure is Send +
// 'static; the `Running` raw pointers are only dereferenced while the
// coroutine is being resumed on the current thread.
unsafe impl Send for Coroutine {}

impl fmt::Debug for Coroutine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coroutine")
            .field("stack_bounds", &self.stack_bounds())
            .field("started", &self.inner.started())
            .field("finished", &self.is_finished())
            .field("last_suspend", &self.last_suspend())
            .finish()
    }
}

impl Coroutine {
    /// Prepares `f` to run on `stack`. Nothing runs until the first
    /// [`resume`](Coroutine::resume).
    ///
    /// Also installs the process-wide stack overflow reporter if
    /// [`init_thread`](crate::init_thread) has not done so yet.
    pub fn new(stack: Stack, f: impl FnOnce() + Send + 'static) -> Coroutine {
        crate::signal::install_overflow_handler();
        let (stack_lo, top) = stack.bounds();
        let (guard_lo, _) = stack.guard();
        let size = stack.size();
        let body = move |yielder: &Yielder<(), SuspendKind>, ()| -> Result<(), Payload> {
            let cur = CURRENT.with(|c| c.get());
            // SAFETY: the first entry happens inside `resume` (or never: a
            // new coroutine that is dropped only drops this closure), which
            // set CURRENT to this coroutine's `Running` on this thread.
            unsafe { (*cur).yielder.set(yielder) };
            // Catch everything here, on the coroutine's own stack, including
            // the forced unwind of `Drop`: the coroutine then simply returns.
            panic::catch_unwind(AssertUnwindSafe(f))
        };
        Coroutine {
            inner: ManuallyDrop::new(Inner::with_stack(stack, body)),
            state: Running {
                yielder: Cell::new(ptr::null()),
                parent: Cell::new(ptr::null()),
                last_suspend: Cell::new(None),
                unwinding: Cell::new(false),
                repanics: Cell::new(0),
                guard_lo,
                stack_lo,
                top,
            },
            size,
        }
    }

    /// Runs the coroutine until its closure returns ([`Resume::Finished`]),
    /// panics ([`Resume::Panicked`]) or calls [`suspend`]
    /// ([`Resume::Suspended`]).
    ///
    /// # Panics
    ///
    /// If the coroutine has finished, or if called from inside this same
    /// coroutine.
    #[inline]
    pub fn resume(&mut self) -> Resume {
        if self.inner.done() {
            finished_panic();
        }
        let me: *const Running = &self.state;
        let parent = CURRENT.with(|c| c.get());
        if !parent.is_null() {
            check_not_running(me, parent);
        }
        self.state.parent.set(parent);
        self.state.last_suspend.set(None);
        CURRENT.with(|c| c.set(me));
        let r = self.inner.resume(());
        CURRENT.with(|c| c.set(parent));
        match r {
            CoroutineResult::Yield(kind) => {
                // Recorded here, from the value that crossed the switch, not
                // in `suspend`: a preemption that lands in `suspend` before
                // its switch must not leave a stale kind behind.
                self.state.last_suspend.set(Some(kind));
                Resume::Suspended(kind)
            }
            CoroutineResult::Return(Ok(())) => Resume::Finished,
            CoroutineResult::Return(Err(p)) => Resume::Panicked(p),
        }
    }

    /// `(lowest usable address above the guard page, top of the stack)`.
    pub fn stack_bounds(&self) -> (usize, usize) {
        (self.state.stack_lo, self.state.top)
    }

    /// Usable size of the coroutine's stack in bytes.
    pub fn stack_size(&self) -> usize {
        self.size
    }

    /// Whether the closure has returned or panicked.
    pub fn is_finished(&self) -> bool {
        self.inner.done()
    }

    /// Whether the coroutine has been resumed at least once.
    pub fn is_started(&self) -> bool {
        self.inner.started()
    }

    /// How the coroutine is suspended right now; `None` if it is new,
    /// running or finished.
    pub fn last_suspend(&self) -> Option<SuspendKind> {
        self.state.last_suspend.get()
    }
}

#[cold]
#[inline(never)]
fn finished_panic() -> ! {
    panic!("urgent: resume() called on a finished coroutine")
}

#[cold]
#[inline(never)]
fn check_not_running(me: *const Running, mut p: *const Running) {
    while !p.is_null() {
        if p == me {
            panic!("urgent: a coroutine cannot resume itself (resume() called from inside it)");
        }
        // SAFETY: every `Running` on the chain belongs to a coroutine whose
        // `resume` is still on this thread's call stack, so it is alive.
        p = unsafe { (*p).parent.get() };
    }
}

impl Drop for Coroutine {
    fn drop(&mut self) {
        // SAFETY: `inner` is never used again after this.
        let mut inner = unsafe { ManuallyDrop::take(&mut self.inner) };
        if !inner.done() {
            if inner.started() && self.state.last_suspend.get() == Some(SuspendKind::Preempted) {
                // SAFETY: this skips the destructors of everything on the
                // coroutine's stack (documented leak); it runs no code on it
                // and leaves the stack reusable. Unwinding is not an option:
                // the interrupted PC is not a call site.
                unsafe { inner.force_reset() };
            } else {
                // New (drops the closure) or suspended at a call site (the
                // pending `suspend` panics and the stack unwinds). The code
                // that runs sees itself as the current coroutine.
                self.state.unwinding.set(true);
                let me: *const Running = &self.state;
                let parent = CURRENT.with(|c| c.get());
                self.state.parent.set(parent);
                CURRENT.with(|c| c.set(me));
                inner.force_unwind();
                CURRENT.with(|c| c.set(parent));
            }
        }
        drop(inner.into_stack());
    }
}

/// Suspends the coroutine running on this thread, returning control to the
/// [`Coroutine::resume`] call that ran it; returns when it is resumed again
/// (possibly on another thread).
///
/// # Panics
///
/// With `urgent: suspend() called outside a CPU task` if no coroutine is
/// running on this thread.
///
/// ```should_panic
/// urgent_stackful::suspend(urgent_stackful::SuspendKind::Yield); // not in a coroutine
/// ```
///
/// Never inlined, on purpose: its body reads the coroutine's book-keeping
/// through a pointer that is only valid until the switch, so it must not be
/// preempted itself. As a function of this crate it is on the preemption deny
/// list; inlined into user code it would not be.
#[inline(never)]
pub fn suspend(kind: SuspendKind) {
    let cur = CURRENT.with(|c| c.get());
    if cur.is_null() {
        outside_panic();
    }
    // SAFETY: non-null CURRENT points to the running coroutine's `Running`,
    // alive while it runs. We read what we need before switching and never
    // touch it after the switch: the coroutine may have moved (or changed
    // threads) by the time we are resumed.
    unsafe {
        let run = &*cur;
        if run.unwinding.get() {
            return unwinding_suspend(run, kind);
        }
        let yielder = run.yielder.get();
        (*yielder).suspend(kind);
    }
}

#[cold]
#[inline(never)]
fn outside_panic() -> ! {
    panic!("urgent: suspend() called outside a CPU task")
}

/// How often a coroutine may swallow its forced unwind before we give up.
const MAX_REPANICS: u32 = 1000;

/// `suspend` while `Drop` unwinds the coroutine.
#[cold]
#[inline(never)]
fn unwinding_suspend(run: &Running, kind: SuspendKind) {
    // Preemption during the unwind is simply declined; a destructor that
    // suspends cooperatively continues (panicking there would abort);
    // anything else means a catch_unwind swallowed the forced unwind: start
    // another one.
    if kind == SuspendKind::Yield && !std::thread::panicking() {
        let n = run.repanics.get() + 1;
        run.repanics.set(n);
        if n > MAX_REPANICS {
            // Dropping would otherwise never finish.
            eprintln!(
                "urgent: a dropped CPU task caught the unwind of its stack {MAX_REPANICS} times \
                 (catch_unwind around a suspension point); aborting"
            );
            std::process::abort();
        }
        panic::resume_unwind(Box::new(ForcedUnwind));
    }
}

/// Whether a coroutine is running on this thread (i.e. [`suspend`] would not
/// panic).
#[inline]
pub fn in_coroutine() -> bool {
    CURRENT.with(|c| !c.get().is_null())
}
