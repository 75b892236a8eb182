//! Architecture-specific parts of async preemption.
//!
//! Only x86_64 Linux has an implementation; on every other target
//! [`SUPPORTED`] is false and the crate runs with async preemption off
//! (sysmon still sets preempt requests that `should_yield` reports, so
//! cooperative preemption keeps working).

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod x86_64;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub use self::x86_64::*;

/// Whether this target can inject calls into interrupted code.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub const SUPPORTED: bool = true;

/// Whether this target can inject calls into interrupted code.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub const SUPPORTED: bool = false;

/// Stub for targets without async preemption.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub fn init() {}

/// Stub for targets without async preemption.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub fn xsave_size() -> usize {
    0
}

/// Stub for targets without async preemption.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub fn xsave_mode_name() -> &'static str {
    "none"
}

/// Stub for targets without async preemption.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub fn trampoline_bytes() -> usize {
    0
}

/// Room, above the deepest point at which a task can still be preempted,
/// that a stack of [`min_stack_size`] leaves for the task's own frames (its
/// closure, the executor's frames under it, the coroutine's record).
pub const MIN_TASK_FRAMES: usize = 8 * 1024;

/// The smallest coroutine stack size, in bytes (a page multiple), on which
/// async preemption can stop a task: the handler only pushes the trampoline
/// when the interrupted RSP leaves room for the trampoline's frame and
/// extended-state area (sized from CPUID at run time: about 1 KiB with AVX,
/// 2.7 KiB with AVX-512, 11 KiB with AMX) plus
/// [`HOOK_HEADROOM`](crate::HOOK_HEADROOM) for the Rust code it calls, so a
/// smaller stack would make every task on it silently unpreemptible. This
/// adds [`MIN_TASK_FRAMES`] for the task itself and rounds up to pages.
/// 0 on targets without async preemption.
///
/// `Builder::build` refuses a smaller `Builder::stack_size` unless async
/// preemption is off (`URGENT_ASYNC_PREEMPT=0`).
pub fn min_stack_size() -> usize {
    if !SUPPORTED {
        return 0;
    }
    let need = trampoline_bytes() + crate::signal::HOOK_HEADROOM + MIN_TASK_FRAMES;
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => 4096,
    };
    need.next_multiple_of(page)
}
