//! Architecture-specific pieces of `urgent-stackful`. The context switch
//! itself is corosensei's; what lives here is the one thread-local the
//! coroutine layer needs, `current`, read and written with single
//! instructions where the architecture allows it, and access to the
//! floating-point control modes (`fp_control`, `switch_fp_control`), which
//! `Coroutine::resume` keeps per coroutine because corosensei's switch does
//! not save them (x86_64 only for now; elsewhere they are not isolated).
//!
//! # Why not `thread_local!`
//!
//! [`suspend`](crate::suspend) is inlined into its caller (see its docs), so
//! its read of the current coroutine can be interrupted by the preemption
//! signal, and a preempted coroutine may be resumed on another thread
//! (`migrate_preempted`). A `thread_local!` read compiles to "compute this
//! thread's address of the variable, then load from it": interrupted between
//! the two and resumed elsewhere, the load reads the *old* thread's
//! variable. The portable fallback therefore reads it from a function that is
//! never inlined (the preemption handler declines to stop in this crate's
//! code), which costs a call per suspension. On x86_64 the variable is
//! defined in assembly and read with one `fs`-relative load whose offset is a
//! link-time constant, the same on every thread: there is no instant at which
//! a half-done read can be carried to another thread.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod x86_64;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) use x86_64::{current, fp_control, set_current, switch_fp_control, DEFAULT_FP_CONTROL};

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod generic;
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub(crate) use generic::{current, fp_control, set_current, switch_fp_control, DEFAULT_FP_CONTROL};
