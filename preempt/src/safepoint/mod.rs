//! Where a task may be stopped (DESIGN §5.4): whole-stack classification of
//! the interrupted point.
//!
//! # Protocol
//!
//! * **Build** (outside the handler: `Preemptor::start` through
//!   `symtab::ensure_built`, or [`rebuild`]): [`modules::build`] lists every
//!   loaded object with `dl_iterate_phdr`, parses its unwind tables from its
//!   loaded segments and classifies its functions by name
//!   ([`classify`]); the table is published with a release store and never
//!   freed (a replaced table is leaked: a handler may still walk it).
//! * **Prepare** (each worker thread, at registration, outside the handler):
//!   [`prepare_thread`] allocates the thread's unwind cache and touches the
//!   thread-local that points at it, so the handler never triggers a lazy TLS
//!   allocation (`__tls_get_addr` in a cdylib).
//! * **Classify** (in the handler, [`classify_interrupted`]): one acquire load
//!   of the table, then [`unwind::walk`] from the interrupted RIP/RSP/RBP to
//!   the coroutine's base, bounds-checked against the coroutine stack
//!   `[lo, hi)`, bounded in frames and time. *Pure* → push the call;
//!   *thread-affine* → decline with [`Reason::ThreadAffine`] (the thread-park
//!   path is a later step; sysmon retries); *never* → decline with the reason.
//!   A PC in no known object sets a flag ([`take_unknown_pc`]) so that sysmon
//!   can [`rebuild`] the table (a library loaded after start).
//!
//! Who touches what: the table pointer is written by builders (serialised by
//! `symtab`'s build lock) and read by handlers; a thread's cache is written
//! only by that thread's handler (SIGURG is blocked while it runs, so there is
//! no nesting) and allocated/freed by that thread outside the handler.

pub(crate) mod classify;
pub(crate) mod modules;
pub(crate) mod unwind;

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub(crate) use classify::Class;
pub(crate) use unwind::Verdict;

/// Why the handler declined a preemption request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Reason {
    /// Async preemption off for the slot, no hook, or a call already pushed.
    NotArmed = 0,
    /// A `NoPreempt` guard (or a runtime critical section) is alive.
    NoPreempt = 1,
    /// RSP outside the coroutine stack or too close to its limit.
    StackHeadroom = 2,
    /// A frame in a thread-affine function (std's stdio, sync, thread,
    /// panicking...): needs a thread park.
    ThreadAffine = 3,
    /// A frame in a never-preempt function (allocator, libc internals,
    /// unwinder, the runtime, a `no_preempt_in` prefix).
    NeverFrame = 4,
    /// A PC in no known object.
    UnknownPc = 5,
    /// A frame without usable unwind information.
    NoUnwindInfo = 6,
    /// The walk left the stack or found a garbage return address.
    BadStack = 7,
    /// Frame or time limit reached.
    WalkLimit = 8,
    /// No module table published.
    NoTable = 9,
}

/// Number of [`Reason`] values.
pub(crate) const REASONS: usize = 10;

/// Per-slot decline counters, one per [`Reason`] (written by the handler).
#[derive(Default)]
pub(crate) struct DeclineCounters([AtomicU64; REASONS]);

impl DeclineCounters {
    pub(crate) fn new() -> DeclineCounters {
        DeclineCounters::default()
    }

    pub(crate) fn bump(&self, r: Reason) {
        self.0[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts, as the public metrics report them.
    pub(crate) fn declines(&self) -> crate::Declines {
        let n = |r: Reason| self.0[r as usize].load(Ordering::Relaxed);
        crate::Declines {
            not_armed: n(Reason::NotArmed),
            no_preempt: n(Reason::NoPreempt),
            stack_headroom: n(Reason::StackHeadroom),
            thread_affine: n(Reason::ThreadAffine),
            never_frame: n(Reason::NeverFrame),
            unknown_pc: n(Reason::UnknownPc),
            no_unwind_info: n(Reason::NoUnwindInfo),
            bad_stack: n(Reason::BadStack),
            walk_limit: n(Reason::WalkLimit),
            no_table: n(Reason::NoTable),
        }
    }
}

static UNKNOWN_PC: AtomicBool = AtomicBool::new(false);

fn note_unknown_pc() {
    UNKNOWN_PC.store(true, Ordering::Relaxed);
}

/// Whether a handler met a PC in no known object since the last call (for
/// sysmon: then call [`rebuild`]).
pub(crate) fn take_unknown_pc() -> bool {
    UNKNOWN_PC.swap(false, Ordering::Relaxed)
}

/// Whether objects were loaded or unloaded since the published table was
/// built (cheap: one `dl_iterate_phdr` call that stops at the first object).
/// Never call it from a signal handler (it takes the loader lock).
pub(crate) fn needs_rebuild() -> bool {
    modules::changed_since_build()
}

/// Rebuilds and republishes the module table if objects were loaded or
/// unloaded since it was built (cheap otherwise, see [`needs_rebuild`]).
/// Never call it from a signal handler.
pub(crate) fn rebuild() {
    if needs_rebuild() {
        crate::symtab::force_rebuild();
    }
}

thread_local! {
    /// This thread's unwind cache (null until `prepare_thread`). Const
    /// initialised, no destructor: async-signal-safe to read.
    static CACHE: Cell<*mut unwind::Cache> = const { Cell::new(std::ptr::null_mut()) };
    /// Owns the cache; at thread exit clears `CACHE` before freeing it.
    static CACHE_OWNER: RefCell<Option<CacheOwner>> = const { RefCell::new(None) };
}

struct CacheOwner(*mut unwind::Cache);

impl Drop for CacheOwner {
    fn drop(&mut self) {
        // A handler on this thread either ran before the store (the cache is
        // still allocated) or sees null after it.
        let _ = CACHE.try_with(|c| c.set(std::ptr::null_mut()));
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        // SAFETY: allocated by Box::into_raw in prepare_thread, unpublished
        // above, freed once.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

/// Prepares the calling thread for the handler's walk: allocates its unwind
/// cache and touches every thread-local the handler reads. Idempotent. Call
/// at worker registration, never from a signal handler.
pub(crate) fn prepare_thread() {
    if !CACHE.with(|c| c.get()).is_null() {
        return;
    }
    let p = Box::into_raw(unwind::Cache::new_boxed());
    CACHE_OWNER.with(|o| *o.borrow_mut() = Some(CacheOwner(p)));
    CACHE.with(|c| c.set(p));
    // Touch the other thread-locals the handler reads.
    let _ = crate::current_slot();
    let _ = crate::NO_PREEMPT.with(|c| c.get());
}

/// Classifies the stack of the interrupted coroutine (RIP, RSP, RBP from the
/// handler's ucontext) whose stack is `[lo, hi)`.
///
/// # Safety
/// `ctx` must be the running handler's ucontext, `[lo, hi)` readable memory.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) unsafe fn classify_interrupted(ctx: *mut libc::c_void, lo: usize, hi: usize) -> Verdict {
    let uc = ctx as *const libc::ucontext_t;
    // SAFETY: the kernel-provided ucontext is valid for reads in the handler.
    let g = unsafe { &(*uc).uc_mcontext.gregs };
    let regs = unwind::Regs {
        pc: g[libc::REG_RIP as usize] as usize,
        sp: g[libc::REG_RSP as usize] as usize,
        bp: g[libc::REG_RBP as usize] as usize,
    };
    // SAFETY: forwarded contract.
    unsafe { classify_regs(regs, lo, hi) }
}

/// [`unwind::walk`] with the published table and this thread's cache.
///
/// # Safety
/// `[lo, hi)` must be readable memory.
pub(crate) unsafe fn classify_regs(regs: unwind::Regs, lo: usize, hi: usize) -> Verdict {
    let Some(table) = modules::current() else {
        return Verdict::Never(Reason::NoTable);
    };
    let cache = CACHE.with(|c| c.get());
    // SAFETY: the cache is only used by this thread, and the handler does not
    // nest (SIGURG is blocked while it runs); it stays allocated until
    // CacheOwner clears the pointer.
    let cache = unsafe { cache.as_mut() };
    unwind::walk(table, regs, lo, hi, cache, crate::now_ns)
}

/// Class of the code at `pc` alone (diagnostics): `None` if no table or no
/// known object holds it.
pub(crate) fn pc_class(pc: usize) -> Option<Class> {
    let t = modules::current()?;
    Some(t.find(pc)?.class_of(pc))
}

#[cfg(test)]
mod tests;
