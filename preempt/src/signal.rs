//! The SIGURG handler and the Rust half of the trampoline. Installing it,
//! chaining to the previous handler and the per-thread alternate signal
//! stack it runs on are the stackful crate's signal layer
//! (`urgent_stackful::sys`).
//!
//! Everything reachable from [`handler`] is async-signal-safe: it reads
//! const-initialised, destructor-free thread-locals (plain `%fs`-relative
//! loads in an executable), atomics, the leaked symbol table, and the
//! kernel-provided ucontext; it allocates nothing, takes no lock and makes no
//! system call of its own (a chained handler may, that is its business). It
//! preserves `errno`.

use crate::{arch, Slot, RUNNING_COROUTINE};
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;
use urgent_stackful::sys::{self, PrevAction};

/// Handler that was installed for SIGURG before ours.
static PREV: PrevAction = PrevAction::new();
static INSTALL: Once = Once::new();
static INSTALL_ERR: AtomicI32 = AtomicI32::new(-1);

/// Stack headroom, beyond the trampoline frame and XSAVE area, that must be
/// left below the interrupted RSP for the Rust side of the trampoline, the
/// hook and the executor's suspend path.
pub const HOOK_HEADROOM: usize = 16 * 1024;

/// Installs the SIGURG handler once per process, remembering the previous
/// disposition so the handler can chain to it.
pub fn install() -> io::Result<()> {
    INSTALL.call_once(|| {
        arch::init();
        let err = match sys::install_handler(libc::SIGURG, handler, libc::SA_RESTART, &PREV) {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(libc::EINVAL),
        };
        INSTALL_ERR.store(err, Ordering::Release);
    });
    match INSTALL_ERR.load(Ordering::Acquire) {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Whether our SIGURG handler is still the installed one (false if another
/// handler replaced it since). A system call: for sysmon's diagnostics, not
/// for the handler.
pub(crate) fn still_installed() -> bool {
    sys::handler_installed(libc::SIGURG, handler)
}

/// The SIGURG handler: chain, acknowledge, check the safe point, push a call.
extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: __errno_location returns this thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    // The previous handler runs first, whatever we decide. SIG_DFL and
    // SIG_IGN both mean "ignore" for SIGURG.
    // SAFETY: we are the SIGURG handler and pass the kernel's arguments.
    let _ = unsafe { sys::chain(&PREV, sig, info, ctx) };
    let slot = crate::current_slot();
    if !slot.is_null() {
        // SAFETY: the registration keeps the Arc<Slot> alive while the pointer
        // is published, and clears the pointer before releasing it.
        let slot = unsafe { &*slot };
        slot.handler.ack.fetch_add(1, Ordering::Relaxed);
        slot.sysmon.signal_pending.store(false, Ordering::Relaxed);
        let tick = slot.worker.tick.load(Ordering::Relaxed);
        let requested = slot.sysmon.request_tick.load(Ordering::Acquire) == tick
            && slot.worker.state.load(Ordering::Acquire) == RUNNING_COROUTINE;
        if requested {
            // SAFETY: ctx is this handler's ucontext.
            if let Some(park) = unsafe { is_async_safe_point(slot, ctx) } {
                slot.handler.park.store(park as u8, Ordering::Relaxed);
                slot.handler.pushed.store(true, Ordering::Relaxed);
                slot.sysmon.request_tick.store(0, Ordering::Relaxed);
                // SAFETY: is_async_safe_point verified that RSP is inside the
                // coroutine stack with room for the pushed words and the whole
                // trampoline frame, and that RIP is in allowed executable code.
                unsafe { arch::push_call(ctx) };
            } else {
                slot.handler.declined.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // SAFETY: restore the interrupted code's errno.
    unsafe { *libc::__errno_location() = errno };
}

/// Go's `isAsyncSafePoint`, for the current thread's slot, extended to the
/// whole stack (DESIGN §5.4, `safepoint`): every frame from the interrupted
/// PC up to the coroutine's base must be pure, or the slot parks its thread
/// at thread-affine points. `Some(park)`: push the call, with that park
/// request. `None`: declined; counts the reason in the slot's
/// `decline_reasons`.
///
/// A running panic makes every pure point thread-affine: its unwinding runs
/// `Drop` code in ordinary frames (the unwinder's own frames are gone by
/// then), but the thread's panic count says "panicking" to any other task
/// that would run on the thread. `std::thread::panicking()` reads a global
/// atomic and, only while some thread panics, a const-initialised
/// thread-local (touched at registration): async-signal-safe.
///
/// # Safety
/// `ctx` must be the ucontext of the running handler.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
unsafe fn is_async_safe_point(slot: &Slot, ctx: *mut libc::c_void) -> Option<crate::Park> {
    use crate::safepoint::{Reason, Verdict};
    use crate::{Park, ThreadPark};
    let reasons = &slot.handler.decline_reasons;
    if !slot.async_enabled.load(Ordering::Relaxed)
        || crate::HOOK.load(Ordering::Acquire) == 0
        || slot.handler.pushed.load(Ordering::Relaxed)
    {
        reasons.bump(Reason::NotArmed);
        return None;
    }
    if crate::NO_PREEMPT.with(|c| c.get()) != 0 {
        reasons.bump(Reason::NoPreempt);
        return None;
    }
    // SAFETY: forwarded contract.
    let (_pc, sp) = unsafe { arch::context_pc_sp(ctx) };
    let lo = slot.worker.stack_lo.load(Ordering::Relaxed);
    let hi = slot.worker.stack_hi.load(Ordering::Relaxed);
    let need = arch::PUSHED_BYTES + arch::GPR_FRAME_BYTES + arch::xsave_size() + HOOK_HEADROOM;
    let Some(min_sp) = lo.checked_add(need) else {
        reasons.bump(Reason::StackHeadroom);
        return None;
    };
    if sp < min_sp || sp > hi {
        reasons.bump(Reason::StackHeadroom);
        return None;
    }
    let park_mode = slot.park_mode.load(Ordering::Relaxed);
    let affine = |reasons: &crate::safepoint::DeclineCounters| {
        if park_mode != ThreadPark::Off as u8 {
            // The thread keeps the task and its thread-affine state; the
            // executor hands its core to another thread meanwhile.
            Some(Park::AtAffinePoint)
        } else {
            reasons.bump(Reason::ThreadAffine);
            None
        }
    };

    // SAFETY: ctx is the handler's ucontext; `[lo, hi)` is the running
    // coroutine's stack, mapped while it runs (the worker published it in
    // coroutine_started and RSP lies inside it).
    match unsafe { crate::safepoint::classify_interrupted(ctx, lo, hi) } {
        // Checked after the walk: a "never" frame (malloc holding its arena
        // lock, say) must decline even during a panic, since the park path
        // allocates.
        Verdict::Pure if std::thread::panicking() => affine(reasons),
        Verdict::Pure if park_mode == ThreadPark::Always as u8 => Some(Park::AtPurePoint),
        Verdict::Pure => Some(Park::No),
        Verdict::Affine => affine(reasons),
        Verdict::Never(why) => {
            reasons.bump(why);
            None
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
unsafe fn is_async_safe_point(_slot: &Slot, _ctx: *mut libc::c_void) -> Option<crate::Park> {
    None
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
        slot.handler.pushed.store(false, Ordering::Relaxed);
        slot.handler.preemptions.fetch_add(1, Ordering::Relaxed);
    }
    let hook = crate::HOOK.load(Ordering::Acquire);
    if hook != 0 {
        // The interrupted code may be between a failing libc call and its
        // read of errno; other tasks run on this thread before it resumes
        // (and set errno): keep the task's value across the hook.
        // SAFETY: __errno_location returns this thread's errno slot.
        let errno = unsafe { *libc::__errno_location() };
        // SAFETY: HOOK only ever holds a `fn()` stored by set_preempt_hook.
        let hook: fn() = unsafe { std::mem::transmute(hook) };
        hook();
        // SAFETY: as above; after a migration this is the new thread's slot,
        // which is where the task reads errno from now on.
        unsafe { *libc::__errno_location() = errno };
    }
}
