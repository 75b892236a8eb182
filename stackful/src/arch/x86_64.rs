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
