//! x86_64 Linux `current`: an 8-byte thread-local defined in assembly, in
//! `.tbss` (zero, i.e. null, on every new thread), accessed with the
//! initial-exec TLS model. The offset from the thread pointer comes from the
//! GOT (or, in an executable, the linker relaxes it to an immediate); it is a
//! link-time constant, identical on every thread. The access itself is one
//! `fs:`-relative instruction, so it either happened on this thread or not
//! at all, whatever signal arrives around it.
//!
//! Initial-exec TLS works in executables and in shared libraries loaded at
//! start-up; a library `dlopen`ed later takes its 8 bytes from glibc's static
//! TLS surplus, which is reserved for exactly such uses.
//!
//! The symbol is global (the accessors are inlined into other crates, which
//! must be able to name it) but hidden (not exported from a shared object),
//! and its name carries the crate's major version, so two semver-incompatible
//! copies of this crate in one program do not collide.

use std::arch::{asm, global_asm};

global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 3",
    ".globl __urgent_stackful_v0_current",
    ".hidden __urgent_stackful_v0_current",
    ".type __urgent_stackful_v0_current,@object",
    ".size __urgent_stackful_v0_current,8",
    "__urgent_stackful_v0_current:",
    ".zero 8",
    ".popsection",
);

/// This thread's current-coroutine pointer (null outside coroutines).
/// Async-signal-safe.
#[inline(always)]
pub(crate) fn current() -> *const () {
    let p: *const ();
    // SAFETY: loads the thread-pointer offset of the 8-byte, 8-aligned TLS
    // variable defined above and reads it through `fs`, which on x86_64 Linux
    // always addresses this thread's TLS block. Reads memory only; no stack,
    // flags untouched. Not `pure`: the compiler must not merge two reads
    // across a context switch.
    unsafe {
        asm!(
            "mov {p}, qword ptr [rip + __urgent_stackful_v0_current@GOTTPOFF]",
            "mov {p}, qword ptr fs:[{p}]",
            p = out(reg) p,
            options(nostack, readonly, preserves_flags),
        );
    }
    p
}

/// Sets this thread's current-coroutine pointer. Async-signal-safe.
#[inline(always)]
pub(crate) fn set_current(p: *const ()) {
    // SAFETY: as in `current`, with one store instead of the load; it writes
    // only this thread's copy of the variable, which nothing else aliases.
    unsafe {
        asm!(
            "mov {t}, qword ptr [rip + __urgent_stackful_v0_current@GOTTPOFF]",
            "mov qword ptr fs:[{t}], {p}",
            t = out(reg) _,
            p = in(reg) p,
            options(nostack, preserves_flags),
        );
    }
}

/// The floating-point control modes of a thread that never changed them:
/// MXCSR 0x1F80 (low half: all exceptions masked, round to nearest, no
/// flush-to-zero or denormals-are-zero) and x87 control word 0x037F (high
/// half: all masked, round to nearest, 64-bit precision).
pub(crate) const DEFAULT_FP_CONTROL: u32 = 0x1F80 | (0x037F << 16);

/// MXCSR exception flags (sticky status, not control): bits 0..5.
const MXCSR_FLAGS: u32 = 0x3F;

/// This thread's floating-point control modes: MXCSR without its exception
/// flags in the low half, the x87 control word in the high half.
#[inline(always)]
pub(crate) fn fp_control() -> u32 {
    let mut mxcsr: u32 = 0;
    let mut fcw: u16 = 0;
    // SAFETY: STMXCSR and FNSTCW store 4 and 2 bytes to the given locals and
    // change no state (FNSTCW does not wait for pending x87 exceptions).
    unsafe {
        asm!(
            "stmxcsr dword ptr [{m}]",
            "fnstcw word ptr [{c}]",
            m = in(reg) &mut mxcsr,
            c = in(reg) &mut fcw,
            options(nostack, preserves_flags),
        );
    }
    (mxcsr & !MXCSR_FLAGS) | (u32::from(fcw) << 16)
}

/// Switches this thread's floating-point control modes from `from` (what
/// [`fp_control`] returns now) to `to` (a value it returned earlier), loading
/// only the register that differs. MXCSR's exception flags stay as they are:
/// only the control bits travel.
#[cold]
#[inline(never)]
pub(crate) fn switch_fp_control(from: u32, to: u32) {
    if (from ^ to) & 0xFFFF != 0 {
        let mut mxcsr: u32 = 0;
        // SAFETY: read MXCSR into a local, then load it with the control bits
        // of `to`, a value read from MXCSR earlier (so no reserved bit is
        // set), and the current flags. Changes only the SSE control modes.
        unsafe {
            asm!(
                "stmxcsr dword ptr [{m}]",
                m = in(reg) &mut mxcsr,
                options(nostack, preserves_flags),
            );
            mxcsr = (mxcsr & MXCSR_FLAGS) | (to & 0xFFFF);
            asm!(
                "ldmxcsr dword ptr [{m}]",
                m = in(reg) &mxcsr,
                options(nostack, preserves_flags, readonly),
            );
        }
    }
    if (from ^ to) >> 16 != 0 {
        let fcw = (to >> 16) as u16;
        // SAFETY: loads an x87 control word read earlier with FNSTCW on some
        // thread; it changes only the x87 control modes.
        unsafe {
            asm!(
                "fldcw word ptr [{c}]",
                c = in(reg) &fcw,
                options(nostack, preserves_flags, readonly),
            );
        }
    }
}
