//! The process-wide classification settings (the user's deny prefixes, the
//! executor's allow-listed entry shims) and the build of the module table
//! they feed (`safepoint::modules`).
//!
//! The table is built once per process, and rebuilt when new prefixes are
//! registered or objects were loaded since (`safepoint::rebuild`). Builds are
//! serialised by a lock; publication is a release store of a leaked table.

use crate::safepoint::{self, Class};
use std::sync::{Mutex, OnceLock};

/// Process-wide extra prefixes: (deny, allow). Denies beat allows; allowed
/// prefixes name entry shims (the frame user code is called from), which
/// count as pure and end the stack walk.
static EXTRA: Mutex<(Vec<String>, Vec<String>)> = Mutex::new((Vec::new(), Vec::new()));
/// Serialises builds; holds the extras the current table was built with.
static BUILT_WITH: Mutex<Option<(Vec<String>, Vec<String>)>> = Mutex::new(None);
static WARNED: OnceLock<()> = OnceLock::new();

/// Registers extra deny/allow prefixes for future builds.
pub fn add_prefixes(deny: &[String], allow: &[String]) {
    let mut extra = EXTRA.lock().unwrap_or_else(|e| e.into_inner());
    for d in deny {
        if !extra.0.contains(d) {
            extra.0.push(d.clone());
        }
    }
    for a in allow {
        if !extra.1.contains(a) {
            extra.1.push(a.clone());
        }
    }
}

/// Builds (or rebuilds, if the prefixes changed since the last build) the
/// table. Returns whether a table is available. Warns once on stderr if the
/// object holding this crate has no `.symtab`.
pub fn ensure_built() -> bool {
    build_if(false)
}

/// Rebuilds the table with the current prefixes, whatever changed.
pub fn force_rebuild() -> bool {
    build_if(true)
}

fn build_if(force: bool) -> bool {
    let extra = EXTRA.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut built = BUILT_WITH.lock().unwrap_or_else(|e| e.into_inner());
    if !force && built.as_ref() == Some(&extra) {
        return safepoint::modules::current().is_some();
    }
    *built = Some(extra.clone());
    match safepoint::modules::build(&extra.0, &extra.1) {
        Ok(table) => {
            safepoint::modules::publish(Some(table));
            true
        }
        Err(why) => {
            safepoint::modules::publish(None);
            WARNED.get_or_init(|| {
                eprintln!(
                    "urgent: async preemption disabled: {why}; CPU tasks are preempted only at \
                     checkpoint()/wait()/yield_now() (do not strip the binary to re-enable it)"
                );
            });
            false
        }
    }
}

/// Async-signal-safe lookup of the PC alone: `Some(true)` for a PC in pure
/// code (or an entry shim), `Some(false)` for thread-affine or never code,
/// `None` when no known object holds it or no table is published.
pub fn lookup(pc: usize) -> Option<bool> {
    safepoint::pc_class(pc).map(Class::preemptible)
}

/// Number of classified functions in the published table (0 if none).
pub fn len() -> usize {
    safepoint::modules::current().map_or(0, |t| t.func_count())
}

/// Whether a function named `name` (demangled and hash-free, or a raw C
/// symbol) would be preemptible by a coroutine switch, given the registered
/// prefixes plus `deny`. Whole path segments are matched.
pub fn name_allowed_with_registered(name: &str, deny: &[String]) -> bool {
    let extra = EXTRA.lock().unwrap_or_else(|e| e.into_inner());
    let mut d = extra.0.clone();
    d.extend(deny.iter().cloned());
    safepoint::classify::symbol_class(name, &d, &extra.1).preemptible()
}
