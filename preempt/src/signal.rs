//! The SIGURG handler, the Rust half of the trampoline, and per-thread
//! alternate signal stacks.
//!
//! Everything reachable from [`handler`] is async-signal-safe: it reads
//! const-initialised, destructor-free thread-locals (plain `%fs`-relative
//! loads in an executable), atomics, the leaked symbol table, and the
//! kernel-provided ucontext; it allocates nothing, takes no lock and makes no
//! system call of its own (a chained handler may, that is its business). It
//! preserves `errno`.

use crate::{arch, Slot, RUNNING_COROUTINE};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

/// Handler that was installed for SIGURG before ours (`SIG_DFL` = 0 at start).
static OLD_HANDLER: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
/// `sa_flags` of that handler (only `SA_SIGINFO` matters).
static OLD_FLAGS: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);
static INSTALL_ERR: AtomicUsize = AtomicUsize::new(0);

/// Stack headroom, beyond the trampoline frame and XSAVE area, that must be
/// left below the interrupted RSP for the Rust side of the trampoline, the
/// hook and the executor's suspend path.
pub const HOOK_HEADROOM: usize = 16 * 1024;

/// Installs the SIGURG handler once per process, remembering the previous
/// disposition so the handler can chain to it.
pub fn install() -> io::Result<()> {
    INSTALL.call_once(|| {
        arch::init();
        // SAFETY: plain sigaction calls on zero-initialised (valid) structs;
        // `handler` has the SA_SIGINFO signature.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGURG, std::ptr::null(), &mut old) != 0 {
                INSTALL_ERR.store(
                    io::Error::last_os_error().raw_os_error().unwrap_or(1) as usize,
                    Ordering::Relaxed,
                );
                return;
            }
            OLD_HANDLER.store(old.sa_sigaction, Ordering::Relaxed);
            OLD_FLAGS.store(old.sa_flags as usize, Ordering::Relaxed);
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            let mut prev: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGURG, &sa, &mut prev) != 0 {
                INSTALL_ERR.store(
                    io::Error::last_os_error().raw_os_error().unwrap_or(1) as usize,
                    Ordering::Relaxed,
                );
                return;
            }
            // Whatever was really replaced (someone may have raced us).
            OLD_HANDLER.store(prev.sa_sigaction, Ordering::Relaxed);
            OLD_FLAGS.store(prev.sa_flags as usize, Ordering::Relaxed);
        }
        INSTALLED.store(true, Ordering::Release);
    });
    if INSTALLED.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(
            INSTALL_ERR.load(Ordering::Relaxed) as i32,
        ))
    }
}

/// Calls the previously installed SIGURG handler, if it is a function.
/// `SIG_DFL` and `SIG_IGN` both mean "ignore" for SIGURG.
///
/// # Safety
/// Must be called from the signal handler with its own arguments.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let h = OLD_HANDLER.load(Ordering::Relaxed);
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        return;
    }
    if OLD_FLAGS.load(Ordering::Relaxed) & libc::SA_SIGINFO as usize != 0 {
        // SAFETY: the previous action declared SA_SIGINFO, so `h` is a
        // three-argument sa_sigaction function.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(h) };
        f(sig, info, ctx);
    } else {
        // SAFETY: without SA_SIGINFO, `h` is a one-argument sa_handler.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
        f(sig);
    }
}

/// The SIGURG handler: chain, acknowledge, check the safe point, push a call.
extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: __errno_location returns this thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: we are the signal handler and pass its own arguments.
    unsafe { chain(sig, info, ctx) };
    let slot = crate::current_slot();
    if !slot.is_null() {
        // SAFETY: the registration keeps the Arc<Slot> alive while the pointer
        // is published, and clears the pointer before releasing it.
        let slot = unsafe { &*slot };
        slot.h.ack.fetch_add(1, Ordering::Relaxed);
        slot.s.signal_pending.store(false, Ordering::Relaxed);
        let tick = slot.w.tick.load(Ordering::Relaxed);
        let requested = slot.s.request_tick.load(Ordering::Acquire) == tick
            && slot.w.state.load(Ordering::Acquire) == RUNNING_COROUTINE;
        if requested {
            // SAFETY: ctx is this handler's ucontext.
            if unsafe { is_async_safe_point(slot, ctx) } {
                slot.h.pushed.store(true, Ordering::Relaxed);
                slot.s.request_tick.store(0, Ordering::Relaxed);
                // SAFETY: is_async_safe_point verified that RSP is inside the
                // coroutine stack with room for the pushed words and the whole
                // trampoline frame, and that RIP is in allowed executable code.
                unsafe { arch::push_call(ctx) };
            } else {
                slot.h.declined.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // SAFETY: restore the interrupted code's errno.
    unsafe { *libc::__errno_location() = errno };
}

/// Go's `isAsyncSafePoint`, for the current thread's slot, extended to the
/// whole stack (DESIGN §5.4, `safepoint`): every frame from the interrupted
/// PC up to the coroutine's base must be pure. Counts the reason of a
/// decline in the slot's `decline_reasons`.
///
/// # Safety
/// `ctx` must be the ucontext of the running handler.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
unsafe fn is_async_safe_point(slot: &Slot, ctx: *mut libc::c_void) -> bool {
    use crate::safepoint::{Reason, Verdict};
    let reasons = &slot.h.decline_reasons;
    if !slot.async_enabled.load(Ordering::Relaxed)
        || crate::HOOK.load(Ordering::Acquire) == 0
        || slot.h.pushed.load(Ordering::Relaxed)
    {
        reasons.bump(Reason::NotArmed);
        return false;
    }
    if crate::NO_PREEMPT.with(|c| c.get()) != 0 {
        reasons.bump(Reason::NoPreempt);
        return false;
    }
    // SAFETY: forwarded contract.
    let (_pc, sp) = unsafe { arch::context_pc_sp(ctx) };
    let lo = slot.w.stack_lo.load(Ordering::Relaxed);
    let hi = slot.w.stack_hi.load(Ordering::Relaxed);
    let need = arch::PUSHED_BYTES + arch::GPR_FRAME_BYTES + arch::xsave_size() + HOOK_HEADROOM;
    let Some(min_sp) = lo.checked_add(need) else {
        reasons.bump(Reason::StackHeadroom);
        return false;
    };
    if sp < min_sp || sp > hi {
        reasons.bump(Reason::StackHeadroom);
        return false;
    }
    // SAFETY: ctx is the handler's ucontext; `[lo, hi)` is the running
    // coroutine's stack, mapped while it runs (the worker published it in
    // coroutine_started and RSP lies inside it).
    match unsafe { crate::safepoint::classify_interrupted(ctx, lo, hi) } {
        Verdict::Pure => true,
        Verdict::Affine => {
            // The thread-park path is a later step: decline, sysmon retries.
            reasons.bump(Reason::ThreadAffine);
            false
        }
        Verdict::Never(why) => {
            reasons.bump(why);
            false
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
unsafe fn is_async_safe_point(_slot: &Slot, _ctx: *mut libc::c_void) -> bool {
    false
}

/// Called by the assembly trampoline on the coroutine's stack, with all
/// interrupted state saved. Counts the preemption and runs the hook (which
/// normally suspends the coroutine and returns when it is resumed, possibly on
/// another worker thread; nothing here touches the slot after the hook).
pub(crate) extern "C" fn trampoline_rust() {
    let slot = crate::current_slot();
    if !slot.is_null() {
        // SAFETY: see `handler`.
        let slot = unsafe { &*slot };
        slot.h.pushed.store(false, Ordering::Relaxed);
        slot.h.preemptions.fetch_add(1, Ordering::Relaxed);
    }
    let hook = crate::HOOK.load(Ordering::Acquire);
    if hook != 0 {
        // SAFETY: HOOK only ever holds a `fn()` stored by set_preempt_hook.
        let hook: fn() = unsafe { std::mem::transmute(hook) };
        hook();
    }
}

/// Minimum alternate signal stack size this crate accepts.
pub const ALTSTACK_SIZE: usize = 64 * 1024;

struct AltStack {
    base: *mut libc::c_void,
    len: usize,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: plain sigaltstack/munmap calls. If our stack is still the
        // active one, disable it first so no signal lands on freed memory;
        // we cannot be running on it (TLS destructors run on the thread stack).
        unsafe {
            let mut cur: libc::stack_t = std::mem::zeroed();
            libc::sigaltstack(std::ptr::null(), &mut cur);
            let ours = self.base as usize + page_size();
            if cur.ss_flags & libc::SS_DISABLE == 0 && cur.ss_sp as usize == ours {
                let off = libc::stack_t {
                    ss_sp: std::ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                };
                libc::sigaltstack(&off, std::ptr::null_mut());
            }
            libc::munmap(self.base, self.len);
        }
    }
}

thread_local! {
    static ALTSTACK: std::cell::RefCell<Option<AltStack>> = const { std::cell::RefCell::new(None) };
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// Makes sure the calling thread has an alternate signal stack of at least
/// [`ALTSTACK_SIZE`] bytes, so the kernel's signal frame (about 3.4 KB with
/// AVX-512 state) and the handler never run on a small coroutine stack.
/// Idempotent: keeps an existing enabled alternate stack that is large enough
/// (e.g. one set up by `urgent_stackful::init_thread()`), replaces a smaller
/// one (std's default is a few pages). The stack (with a guard page) is freed
/// at thread exit.
pub fn ensure_sigaltstack() -> io::Result<()> {
    // SAFETY: querying the current alternate stack into a zeroed struct.
    let cur = unsafe {
        let mut cur: libc::stack_t = std::mem::zeroed();
        if libc::sigaltstack(std::ptr::null(), &mut cur) != 0 {
            return Err(io::Error::last_os_error());
        }
        cur
    };
    if cur.ss_flags & libc::SS_DISABLE == 0 && cur.ss_size >= ALTSTACK_SIZE {
        return Ok(());
    }
    if cur.ss_flags & libc::SS_ONSTACK != 0 {
        return Err(io::Error::other("running on the alternate signal stack"));
    }
    let page = page_size();
    let len = ALTSTACK_SIZE + page;
    // SAFETY: fresh anonymous mapping; the low page becomes a guard page.
    let base = unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        );
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        libc::mprotect(base, page, libc::PROT_NONE);
        base
    };
    let st = libc::stack_t {
        // SAFETY: `page` is inside the mapping.
        ss_sp: unsafe { (base as *mut u8).add(page) } as *mut libc::c_void,
        ss_flags: 0,
        ss_size: ALTSTACK_SIZE,
    };
    // SAFETY: `st` describes memory we own for the rest of the thread's life.
    if unsafe { libc::sigaltstack(&st, std::ptr::null_mut()) } != 0 {
        let err = io::Error::last_os_error();
        // SAFETY: unmapping the mapping created above, never published.
        unsafe { libc::munmap(base, len) };
        return Err(err);
    }
    // Replacing a previous stack of ours drops (and unmaps) it; it is no
    // longer the active one, so that is safe.
    ALTSTACK.with(|a| *a.borrow_mut() = Some(AltStack { base, len }));
    Ok(())
}
