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
