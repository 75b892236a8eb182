//! The coroutine type, built on corosensei's context switch.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

use corosensei::{CoroutineResult, Yielder};

use crate::stack::Stack;

/// A panic payload.
type Payload = Box<dyn Any + Send + 'static>;

type Y = Yielder<(), SuspendKind>;

type Inner = corosensei::Coroutine<(), SuspendKind, (), CoStack>;

/// Bytes reserved at the top of every coroutine stack for its [`Running`]
/// record; corosensei gets the stack below them.
const RESERVED: usize = 128;
const _: () = assert!(std::mem::size_of::<Running>() <= RESERVED);
const _: () = assert!(std::mem::align_of::<Running>() <= 16);

/// Distance from the base corosensei is given down to its *parent link*,
/// which is what a `&Yielder` points at (x86_64 and aarch64 alike). The
/// first entry of every coroutine checks it (see `Coroutine::new`).
const PARENT_LINK_OFFSET: usize = 16;

/// The yielder (parent link) of the coroutine whose record is at `run`.
#[inline(always)]
fn yielder_of(run: *const Running) -> *const Y {
    (run as usize - PARENT_LINK_OFFSET) as *const Y
}

/// The record of the coroutine whose yielder is `y`.
#[inline(always)]
fn running_of(y: *const Y) -> *const Running {
    (y as usize + PARENT_LINK_OFFSET) as *const Running
}

/// Return values up to this size are kept in place at the top of the
/// coroutine's stack until taken; larger ones are boxed there.
const MAX_INLINE_OUTPUT: usize = 512;

/// Where a coroutine returning `R` keeps its return value until
/// [`Coroutine::take_output`]: the top `RESERVE` bytes of its stack, above
/// its [`Running`] record. Stack layout, from the top down:
///
/// ```text
/// top ─┬─ output slot (OutSlot::<R>::RESERVE bytes, 16-aligned; 0 for R = ())
///      ├─ Running record (RESERVED bytes)  <- `run` = corosensei's base
///      ├─ corosensei's parent link (base - 16), then the coroutine's frames
///      ⋮
///      └─ guard page
/// ```
struct OutSlot<R>(PhantomData<R>);

impl<R> OutSlot<R> {
    /// `R` in place (small, at most 16-aligned) or a `Box<R>`.
    const INLINE: bool =
        std::mem::size_of::<R>() <= MAX_INLINE_OUTPUT && std::mem::align_of::<R>() <= 16;
    const RESERVE: usize = {
        let size = if Self::INLINE {
            std::mem::size_of::<R>()
        } else {
            std::mem::size_of::<Box<R>>()
        };
        (size + 15) & !15
    };

    /// Moves `r` into the slot at `at`.
    ///
    /// # Safety
    ///
    /// `at` is the slot of a coroutine whose stack is mapped, 16-aligned,
    /// `RESERVE` bytes long, and holds no value (never written, or taken).
    unsafe fn write(at: usize, r: R) {
        // SAFETY: per the contract, the slot is valid, aligned for `R` (16 ≥
        // align_of::<R>() when INLINE) or for a Box, and empty.
        unsafe {
            if Self::INLINE {
                (at as *mut R).write(r);
            } else {
                (at as *mut Box<R>).write(Box::new(r));
            }
        }
    }

    /// Moves the value out of the slot at `at`.
    ///
    /// # Safety
    ///
    /// The slot holds a value written by [`OutSlot::write`] with the same
    /// `R`, and it is not read again until written again.
    unsafe fn read(at: usize) -> R {
        // SAFETY: per the contract, a value of this representation is there
        // and ownership moves to the caller.
        unsafe {
            if Self::INLINE {
                (at as *const R).read()
            } else {
                *(at as *const Box<R>).read()
            }
        }
    }
}

/// A [`Stack`] as corosensei sees it: without the reserved top bytes
/// (`.1`: the record plus the output slot).
struct CoStack(Stack, usize);

// SAFETY: the stack has a guard page at its low end (installed when it was
// mapped, never removed while it exists) and at least 16 KiB of usable
// memory, of which the reserved top bytes (RESERVED plus an output slot of at
// most MAX_INLINE_OUTPUT, a few hundred bytes) are not given to corosensei;
// `limit` includes the guard page; both addresses are page aligned or page
// aligned minus a multiple of 16, so aligned to STACK_ALIGNMENT.
unsafe impl corosensei::stack::Stack for CoStack {
    #[inline]
    fn base(&self) -> corosensei::stack::StackPointer {
        NonZeroUsize::new(self.0.bounds().1 - self.1).expect("stack top is never null")
    }

    #[inline]
    fn limit(&self) -> corosensei::stack::StackPointer {
        NonZeroUsize::new(self.0.guard().0).expect("stack mapping is never at 0")
    }
}

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

/// Book-keeping for one coroutine. It lives in the top [`RESERVED`] bytes of
/// the coroutine's own stack, right above corosensei's parent link, so its
/// address never changes while the `Coroutine` value moves around, and the
/// running coroutine's record is found from the thread-local `current()`.
pub(crate) struct Running {
    /// The `Running` of whatever ran on this thread before we were resumed:
    /// null for a plain thread, or an outer coroutine that resumed us.
    parent: Cell<*const Running>,
    /// Kind of the current suspension; `None` while new or finished.
    /// Written only by the resumer.
    last_suspend: Cell<Option<SuspendKind>>,
    /// Set by `Drop` before the forced unwind.
    unwinding: Cell<bool>,
    /// How many times a `suspend` restarted the forced unwind.
    repanics: Cell<u32>,
    /// The closure returned and its value sits in the output slot, not yet
    /// taken.
    output_ready: Cell<bool>,
    /// The payload of a panic that ended the closure, until `resume` takes
    /// it (kept here rather than passed through the switch: a smaller return
    /// value makes every switch cheaper).
    panic: Cell<Option<Payload>>,
    /// The coroutine's floating-point control modes (`arch::fp_control`)
    /// while it is not running: what they were when it last switched out,
    /// the defaults before its first resume. Written only by the resumer.
    fp: Cell<u32>,
    /// Start of the guard page.
    guard_lo: usize,
    /// End of the guard page = lowest usable address.
    stack_lo: usize,
    /// Top of the stack.
    top: usize,
}

/// The yielder of the coroutine running on this thread, or null. The
/// coroutine's `Running` record sits at a fixed offset from it
/// (`running_of`). Kept in `arch` (one instruction per access where the
/// architecture allows): safe in a signal handler, and a read cannot be split
/// by a preemption and finished on another thread.
#[inline(always)]
fn current() -> *const Y {
    crate::arch::current().cast()
}

#[inline(always)]
fn set_current(y: *const Y) {
    crate::arch::set_current(y.cast())
}

/// Guard bounds of the coroutine running on this thread: `(guard_lo,
/// stack_lo, top)`. Async-signal-safe.
pub(crate) fn current_bounds() -> Option<(usize, usize, usize)> {
    let y = current();
    if y.is_null() {
        return None;
    }
    // SAFETY: `current()` is non-null only while `Coroutine::resume` (or its
    // drop-time unwind) runs on this thread; the record then lives at the top
    // of that coroutine's stack, which stays mapped meanwhile.
    let r = unsafe { &*running_of(y) };
    Some((r.guard_lo, r.stack_lo, r.top))
}

/// `(lowest usable address, top)` of the stack of the coroutine running on
/// this thread, or `None` outside coroutines.
///
/// Async-signal-safe (one read of a thread-local defined in `arch`, no
/// allocation, no lock), so a signal handler can check whether an
/// interrupted stack pointer lies on the current coroutine's stack.
#[inline]
pub fn current_stack_bounds() -> Option<(usize, usize)> {
    current_bounds().map(|(_, lo, top)| (lo, top))
}

/// Payload of the panic that keeps unwinding a coroutine whose forced unwind
/// was caught by a `catch_unwind` inside it.
struct ForcedUnwind;

/// A stackful coroutine running a `FnOnce() -> R + Send + 'static` closure
/// on its own [`Stack`]. Once it has finished ([`Resume::Finished`]),
/// [`take_output`](Coroutine::take_output) moves the closure's return value
/// out; it is kept at the top of the coroutine's stack meanwhile (boxed there
/// if larger than a few hundred bytes), so no allocation carries it.
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
///
/// // A return value:
/// let mut co = Coroutine::new(Stack::new(64 * 1024).unwrap(), || String::from("done"));
/// assert!(matches!(co.resume(), Resume::Finished));
/// assert_eq!(co.take_output().as_deref(), Some("done"));
/// assert_eq!(co.take_output(), None);
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
/// unwind information to resume from. Its frames are discarded (corosensei's
/// `force_reset`) and **the destructors of everything on that stack never
/// run**: memory it owned leaks, locks it held stay locked, reference counts
/// it held are never released. The stack itself is **quarantined**: it stays
/// mapped and is never reused, pooled or unmapped, because another thread or
/// an intrusive list may still point into it (a scoped thread writing into
/// an array there, a waiter entry pinned there); it is leaked by design and
/// counted in [`leaked_stacks`](crate::leaked_stacks). The runtime only does
/// this when a preempted task is aborted or the runtime shuts down.
///
/// # Floating-point control modes
///
/// On x86_64 each coroutine has its own MXCSR control bits (rounding,
/// flush-to-zero, denormals-are-zero, exception masks) and x87 control word:
/// a new coroutine starts with the defaults, keeps what it sets across its
/// suspensions (on whatever thread resumes it), and whoever calls
/// [`resume`](Coroutine::resume) gets its own modes back when it returns.
/// The exception flags are not switched; they stay with the thread. Other
/// targets do not isolate these modes yet.
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
/// from inside itself (checked). The return value crosses to whoever takes
/// it, hence `R: Send`.
pub struct Coroutine<R = ()> {
    inner: ManuallyDrop<Inner>,
    /// Points into the top of the coroutine's stack, which `inner` owns.
    run: *const Running,
    _output: PhantomData<R>,
}

// SAFETY: see "Send" in the type's documentation. The closure is Send +
// 'static, and so is the return value kept for the owner; `run` points into
// the stack this value owns, and the `Running`
// record is only touched by the owner of the `Coroutine` (through `&`/`&mut
// self`) or by the coroutine itself while it runs, never concurrently.
unsafe impl<R: Send> Send for Coroutine<R> {}

impl<R> fmt::Debug for Coroutine<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coroutine")
            .field("stack_bounds", &self.stack_bounds())
            .field("started", &self.inner.started())
            .field("finished", &self.is_finished())
            .field("last_suspend", &self.last_suspend())
            .finish()
    }
}

/// Closures up to this size are moved onto the coroutine's stack as they
/// are; larger ones are boxed (corosensei panics above 1 KiB).
pub const MAX_INLINE_CLOSURE: usize = 512;

impl<R> Coroutine<R> {
    /// Prepares `f` to run on `stack`. Nothing runs until the first
    /// [`resume`](Coroutine::resume).
    ///
    /// Also installs the process-wide stack overflow reporter if
    /// [`init_thread`](crate::init_thread) has not done so yet.
    ///
    /// A closure of any size works: one larger than [`MAX_INLINE_CLOSURE`]
    /// is boxed first (corosensei moves the closure onto the new stack and
    /// refuses more than 1 KiB).
    pub fn new<F>(stack: Stack, f: F) -> Coroutine<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        if std::mem::size_of::<F>() > MAX_INLINE_CLOSURE {
            let f = Box::new(f);
            Self::new_inline(stack, f)
        } else {
            Self::new_inline(stack, f)
        }
    }

    fn new_inline(stack: Stack, f: impl FnOnce() -> R + Send + 'static) -> Coroutine<R>
    where
        R: Send + 'static,
    {
        crate::signal::install_overflow_handler();
        let (stack_lo, top) = stack.bounds();
        let (guard_lo, _) = stack.guard();
        let reserved = RESERVED + OutSlot::<R>::RESERVE;
        let run = (top - reserved) as *mut Running;
        // SAFETY: the top `reserved` bytes of the stack are ours (corosensei
        // only uses the stack below them), writable, and suitably aligned
        // (page aligned top minus a multiple of 16). No coroutine runs on
        // this stack yet. Whatever a previous coroutine left there is plain
        // bytes (its payload slot was emptied by its `Drop`).
        unsafe {
            run.write(Running {
                parent: Cell::new(ptr::null()),
                last_suspend: Cell::new(None),
                unwinding: Cell::new(false),
                repanics: Cell::new(0),
                output_ready: Cell::new(false),
                panic: Cell::new(None),
                fp: Cell::new(crate::arch::DEFAULT_FP_CONTROL),
                guard_lo,
                stack_lo,
                top,
            });
        }
        let run_addr = run as usize;
        let body = move |yielder: &Y, ()| {
            if !ptr::eq(yielder, yielder_of(run_addr as *const Running)) {
                layout_panic();
            }
            // Catch everything here, on the coroutine's own stack, including
            // the forced unwind of `Drop`: the coroutine then simply returns.
            let run = run_addr as *const Running;
            match panic::catch_unwind(AssertUnwindSafe(f)) {
                // SAFETY: the record at the top of this coroutine's stack and
                // the output slot right above it, empty until now (the
                // closure runs once); the owner is inside `resume` or `drop`
                // and touches neither until this switch returns.
                Ok(r) => unsafe {
                    OutSlot::<R>::write(run_addr + RESERVED, r);
                    (*run).output_ready.set(true);
                },
                // SAFETY: as above, for the payload slot.
                Err(p) => unsafe { (*run).panic.set(Some(p)) },
            }
        };
        Coroutine {
            inner: ManuallyDrop::new(Inner::with_stack(CoStack(stack, reserved), body)),
            run,
            _output: PhantomData,
        }
    }

    #[inline]
    fn state(&self) -> &Running {
        // SAFETY: `run` points at the record initialised in `new`, in the
        // stack that `self.inner` owns until `drop`.
        unsafe { &*self.run }
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
        // First the self-resume check: a running coroutine also looks
        // "done" to corosensei (it clears its saved stack pointer meanwhile).
        let parent = current();
        let parent_run = if parent.is_null() {
            ptr::null()
        } else {
            check_not_running(self.run, running_of(parent))
        };
        if self.inner.done() {
            finished_panic();
        }
        self.state().parent.set(parent_run);
        // `last_suspend` keeps its value while running: nobody can observe
        // it then (`self` is borrowed mutably), and it is rewritten below.
        let outer_fp = enter_fp(self.state());
        set_current(yielder_of(self.run));
        let r = self.inner.resume(());
        set_current(parent);
        leave_fp(self.state(), outer_fp);
        match r {
            CoroutineResult::Yield(kind) => {
                // Recorded here, from the value that crossed the switch, not
                // in `suspend`: a preemption that lands in `suspend` before
                // its switch must not leave a stale kind behind.
                self.state().last_suspend.set(Some(kind));
                Resume::Suspended(kind)
            }
            CoroutineResult::Return(()) => {
                self.state().last_suspend.set(None);
                match self.state().panic.take() {
                    None => Resume::Finished,
                    Some(p) => Resume::Panicked(p),
                }
            }
        }
    }

    /// `(lowest usable address above the guard page, top of the stack)`.
    pub fn stack_bounds(&self) -> (usize, usize) {
        (self.state().stack_lo, self.state().top)
    }

    /// Usable size of the coroutine's stack in bytes.
    pub fn stack_size(&self) -> usize {
        self.state().top - self.state().stack_lo
    }

    /// Whether the closure has returned or panicked.
    pub fn is_finished(&self) -> bool {
        self.inner.done()
    }

    /// Whether the coroutine has been resumed at least once.
    pub fn is_started(&self) -> bool {
        self.inner.started()
    }

    /// How the coroutine is suspended right now; `None` if it is new or
    /// finished.
    pub fn last_suspend(&self) -> Option<SuspendKind> {
        self.state().last_suspend.get()
    }

    /// The closure's return value, once [`resume`](Coroutine::resume) has
    /// returned [`Resume::Finished`]; `None` before that, after a panic, and
    /// after it has been taken once.
    pub fn take_output(&mut self) -> Option<R> {
        let run = self.state();
        if !run.output_ready.replace(false) {
            return None;
        }
        // SAFETY: `output_ready` was set by the closure's root right after
        // writing the slot with this `R`, and is cleared here, so the value
        // is read exactly once. The coroutine has finished, so nothing else
        // touches its stack.
        Some(unsafe { OutSlot::<R>::read(self.run as usize + RESERVED) })
    }
}

// Floating-point control modes (MXCSR's control bits and the x87 control
// word on x86_64) are per-thread CPU state that corosensei's switch does not
// save, so without care a coroutine that sets flush-to-zero or a rounding
// mode would hand it to its resumer and to every coroutine resumed after it
// on the thread. Each coroutine keeps its own in its record instead, and
// the resumer keeps its own across the resume: before switching in, the
// resumer's modes are read and the coroutine's loaded (if they differ); right
// after switching back, before the resumer runs anything else, the
// coroutine's modes are read into its record and the resumer's loaded back
// (if they differ). Nothing between the switch and these reads changes the
// modes, so this is the same as saving them in `suspend`, without making
// `suspend` (inlined into user code) any bigger. A preempted coroutine
// switches out through the trampoline, which has already put the defaults
// in force and restores the task's own after the switch back in; the record
// then holds the defaults, which is what the trampoline expects to resume
// with. New coroutines start with the defaults. MXCSR's exception flags are
// not switched: they stay with the thread.
//
// Cost: two reads of each register per round trip; a load only when the
// modes differ. Reading the x87 control word is cheap, but STMXCSR is
// microcoded on some CPUs (several ns on the AMD EPYC this was measured on,
// which dominates the switch there); it cannot be skipped without losing
// either the coroutine's changes or the resumer's.

/// Loads `run`'s floating-point control modes if they differ from the
/// current ones; returns the current (the resumer's).
#[inline(always)]
fn enter_fp(run: &Running) -> u32 {
    let outer = crate::arch::fp_control();
    let own = run.fp.get();
    if own != outer {
        crate::arch::switch_fp_control(outer, own);
    }
    outer
}

/// Records the modes the coroutine of `run` switched out with, and puts the
/// resumer's (`outer`, from `enter_fp`) back if they differ.
#[inline(always)]
fn leave_fp(run: &Running, outer: u32) {
    let own = crate::arch::fp_control();
    run.fp.set(own);
    if own != outer {
        crate::arch::switch_fp_control(own, outer);
    }
}

#[cold]
#[inline(never)]
fn finished_panic() -> ! {
    panic!("urgent: resume() called on a finished coroutine")
}

#[cold]
#[inline(never)]
fn layout_panic() -> ! {
    // Only if corosensei changed where it keeps the parent link (or its
    // `sanitizer` feature is on): `suspend` could not find the yielder.
    panic!("urgent: unexpected corosensei stack layout; urgent-stackful needs updating")
}

/// Panics if `me` is on the chain of coroutines running on this thread,
/// starting at `p`; returns `p`.
#[cold]
#[inline(never)]
fn check_not_running(me: *const Running, p: *const Running) -> *const Running {
    let mut q = p;
    while !q.is_null() {
        if q == me {
            panic!("urgent: a coroutine cannot resume itself (resume() called from inside it)");
        }
        // SAFETY: every `Running` on the chain belongs to a coroutine whose
        // `resume` is still on this thread's call stack, so it is alive.
        q = unsafe { (*q).parent.get() };
    }
    p
}

impl<R> Drop for Coroutine<R> {
    fn drop(&mut self) {
        // SAFETY: `inner` is never used again after this.
        let mut inner = unsafe { ManuallyDrop::take(&mut self.inner) };
        let mut quarantine = false;
        if !inner.started() {
            // New: this only drops the closure, on this thread's stack, like
            // any value; the coroutine never ran, so it is not made current.
            inner.force_unwind();
        } else if !inner.done() {
            if self.state().last_suspend.get() == Some(SuspendKind::Preempted) {
                // SAFETY: this skips the destructors of everything on the
                // coroutine's stack (documented leak); it runs no code on it.
                // Unwinding is not an option: the interrupted PC is not a
                // call site. The stack is quarantined below, not reused.
                unsafe { inner.force_reset() };
                quarantine = true;
            } else {
                // Suspended at a call site: the pending `suspend` panics and
                // the stack unwinds. The code that runs sees itself as the
                // current coroutine; any later `suspend` sees `unwinding` and
                // does not switch.
                self.state().unwinding.set(true);
                let parent = current();
                let parent_run = if parent.is_null() {
                    ptr::null()
                } else {
                    running_of(parent)
                };
                self.state().parent.set(parent_run);
                set_current(yielder_of(self.run));
                // The destructors run with the coroutine's own FP modes.
                let outer_fp = enter_fp(self.state());
                // Restores the current pointer and the FP modes even if the
                // unwind panics (it should not: the coroutine's root catches
                // everything).
                struct Restore(*const Y, *const Running, u32);
                impl Drop for Restore {
                    fn drop(&mut self) {
                        set_current(self.0);
                        // SAFETY: the record of the coroutine being dropped,
                        // on its stack, which is still owned by `inner`.
                        leave_fp(unsafe { &*self.1 }, self.2);
                    }
                }
                let _restore = Restore(parent, self.run, outer_fp);
                inner.force_unwind();
            }
        }
        // The forced unwind ends in the body's catch_unwind: drop its payload
        // (the record is raw memory that is never dropped in place), and an
        // output nobody took.
        drop(self.state().panic.take());
        drop(self.take_output());
        let stack = inner.into_stack().0;
        if quarantine {
            // The frames of a coroutine stopped by async preemption were
            // discarded, not unwound: whatever they had lent stack memory to
            // still holds it, and nothing will ever tell it to let go.
            // - Other threads: a `std::thread::scope` (or rayon/crossbeam
            //   scope) whose threads write into arrays on this stack; they
            //   run on, since the scope never ends. Raw pointers handed to
            //   another thread or to the kernel (a buffer of a `read` in
            //   flight elsewhere, io_uring/AIO buffers) likewise.
            // - Intrusive entries linked into shared structures: waiters of
            //   `tokio::sync::Notify`/`Semaphore`/channels, timer entries,
            //   any future pinned on this stack by `wait` or
            //   `spawn_preemptible` that registered itself somewhere; their
            //   owners keep walking into this memory and writing to it.
            // - Thread-locals and globals that point at a stack local
            //   (`scoped_tls`-style cells, set by a guard that never resets
            //   them), on this thread or elsewhere.
            // - Nested coroutines owned by frames on this stack (their
            //   stacks leak with them).
            // None of them can be found or notified, so the memory must stay
            // exactly as it is for the rest of the process: mapped, never
            // reused, never `MADV_DONTNEED`ed. Leaked by design; counted.
            stack.quarantine();
        } else {
            drop(stack);
        }
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
/// # Inlining, preemption and thread-locals
///
/// `suspend` is `#[inline]` so that the switch sits in its caller's frame:
/// corosensei's switch keeps call/return balanced only if the coroutine
/// resumes in the same frame it suspended from; an out-of-line `suspend`
/// costs two return mispredictions per round trip (`benches/coroutine.rs`,
/// `resume_suspend` vs `resume_suspend_via_call`: about 4x here).
/// Inlined, its code may be interrupted by the preemption signal like any
/// user code, so everything it touches must stay valid if the coroutine is
/// suspended there and later resumed (after moving, or on another thread):
/// the thread-local is read in a way that a preemption cannot split (one
/// `fs`-relative load on x86_64, an out-of-line call elsewhere; a plain
/// `thread_local!` read computes the variable's address first, and resumed
/// on another thread after a migration, would finish on the old thread's
/// copy; see `arch`), and what it yields, the coroutine's
/// yielder (corosensei's parent link) and the record next to it, live on the
/// coroutine's own stack, whose addresses never change. The switch itself
/// re-reads the parent link, so a nested preemption before it is harmless.
#[inline]
pub fn suspend(kind: SuspendKind) {
    let y = current();
    if y.is_null() {
        outside_panic();
    }
    // SAFETY: a non-null `current()` is the yielder of the coroutine running on
    // this thread, i.e. the one whose stack this code runs on: the parent
    // link on that stack, with the coroutine's record next to it, both valid
    // until the coroutine is dropped, which cannot happen while it runs.
    unsafe {
        if (*running_of(y)).unwinding.get() {
            return unwinding_suspend(&*running_of(y), kind);
        }
        (*y).suspend(kind);
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
    !current().is_null()
}
