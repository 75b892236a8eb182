//! The OS layer other urgent crates build on (the preempt crate's SIGURG
//! handler and sysmon): per-thread alternate signal stacks, installing a
//! handler and chaining to the one it replaced, and the page size. Not part
//! of the public API; see the `signal` module's docs for who owns what.

pub use crate::signal::{
    alt_stack_size, chain, ensure_alt_stack, handler_installed, install_handler, Chained, Handler,
    PrevAction,
};

/// The system page size (cached after the first call).
pub fn page_size() -> usize {
    crate::stack::page_size()
}
