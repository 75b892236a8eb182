//! Targets without async preemption: no SIGURG handler. The preemptor runs
//! with async preemption off, so only the cooperative requests seen by
//! `should_yield` are made.

use std::io;

/// Stack headroom the x86_64 handler requires below the interrupted RSP
/// (unused on this target).
pub const HOOK_HEADROOM: usize = 16 * 1024;

/// No handler to install on this target.
pub fn install() -> io::Result<()> {
    Ok(())
}

/// No handler, so nothing can replace it.
pub(crate) fn still_installed() -> bool {
    true
}
