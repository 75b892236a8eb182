//! The executable's function table, used by the signal handler to decide
//! whether the interrupted PC lies in code that may be preempted.
//!
//! Built once per process (rebuilt only if new allow/deny prefixes are
//! registered later) from the executable's `.symtab`: every defined function
//! symbol becomes a `(start, end, allowed)` entry, relocated by the load bias of
//! the main object (from `dl_iterate_phdr`, for PIE), sorted by start. Aliases
//! and identical-code-folded functions share a range; such a range is allowed
//! only if every name for it is. The table is leaked and published through an
//! atomic pointer, so the handler reads it with one acquire load and a binary
//! search: no allocation, no lock. A replaced table is leaked too, because a
//! handler may still be searching it.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, OnceLock};

/// One function of the executable.
#[derive(Clone, Copy, Debug)]
struct Entry {
    start: usize,
    end: usize,
    allowed: bool,
}

/// A published table.
struct Table {
    entries: Vec<Entry>,
}

/// The current table; null until built (or when the binary has no `.symtab`).
static TABLE: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());

/// Prefixes denied regardless of anything else (demangled, hash-free paths or
/// raw symbol names).
pub const BUILTIN_DENY: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "urgent::",
    "urgent_",
    "tokio::",
    // tokio's companion crates by name: a bare "tokio_" would also deny user
    // crates that happen to start with it.
    "tokio_util::",
    "tokio_stream::",
    "tokio_macros::",
    "mio::",
    "crossbeam",
    "parking_lot",
    "lock_api::",
    "tracing",
    "futures",
    "corosensei::",
    "libc::",
    "compiler_builtins::",
    "std_detect::",
    "panic_unwind::",
    "panic_abort::",
    "unwind::",
    "gimli::",
    "addr2line::",
    "miniz_oxide::",
    "rustc_demangle::",
    "object::",
    "test::",
    "__rust_",
    "__rdl_",
    "__rg_",
    "__rustc",
    "rust_begin_unwind",
    "rust_panic",
    "rust_eh_personality",
    "_Unwind",
    "__cxa",
    "__gcc_personality",
    "__libc",
    "jemalloc",
    "je_",
    "_rjem_",
    "mi_",
    "_mi_",
    "tc_",
    "_start",
    "_init",
    "_fini",
    "frame_dummy",
    "register_tm_clones",
    "deregister_tm_clones",
    "__do_global",
];

/// C functions denied by exact name (statically linked allocators and libc
/// pieces; a prefix would also catch unrelated crates).
pub const BUILTIN_DENY_EXACT: &[&str] = &[
    "malloc",
    "free",
    "calloc",
    "realloc",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
    "memcpy",
    "memmove",
    "memset",
    "memcmp",
    "bcmp",
];

/// Process-wide extra prefixes: (deny, allow). Denies beat allows, allows beat
/// the built-in list.
static EXTRA: Mutex<(Vec<String>, Vec<String>)> = Mutex::new((Vec::new(), Vec::new()));
/// Serialises builds.
static BUILD: Mutex<()> = Mutex::new(());
/// Whether a build has been attempted, and the extras it used.
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
/// executable has no `.symtab`.
pub fn ensure_built() -> bool {
    let _serial = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let extra = EXTRA.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut built = BUILT_WITH.lock().unwrap_or_else(|e| e.into_inner());
    if built.as_ref() == Some(&extra) {
        return !TABLE.load(Ordering::Acquire).is_null();
    }
    *built = Some(extra.clone());
    match build(&extra.0, &extra.1) {
        Ok(table) => {
            let new = Box::into_raw(Box::new(table));
            // The old table (if any) is leaked on purpose: a signal handler
            // may be searching it right now.
            TABLE.store(new, Ordering::Release);
            true
        }
        Err(why) => {
            TABLE.store(std::ptr::null_mut(), Ordering::Release);
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

/// Async-signal-safe lookup: `Some(allowed)` for a PC inside a known function
/// of the executable, `None` when the PC is in no known function (other
/// objects, PLT stubs, the vDSO) or no table is published.
pub fn lookup(pc: usize) -> Option<bool> {
    let table = TABLE.load(Ordering::Acquire);
    if table.is_null() {
        return None;
    }
    // SAFETY: published tables are leaked, never freed or mutated after the
    // release store that published them.
    let entries = unsafe { &(*table).entries };
    // Last entry whose start <= pc (hand-written so nothing can allocate).
    let (mut lo, mut hi) = (0usize, entries.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if entries[mid].start <= pc {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo == 0 {
        return None;
    }
    let e = entries[lo - 1];
    (pc < e.end).then_some(e.allowed)
}

/// Number of functions in the published table (0 if none).
pub fn len() -> usize {
    let table = TABLE.load(Ordering::Acquire);
    if table.is_null() {
        0
    } else {
        // SAFETY: see `lookup`.
        unsafe { (*table).entries.len() }
    }
}

/// Strips reference/pointer/slice/tuple decorations and, for a qualified path
/// `<Self as Trait>::f`, chooses the path whose crate owns the code: the self
/// type when it is a named path, the trait otherwise (impls on primitives,
/// slices and tuples live with the trait or in core/alloc/std).
fn owner_path(name: &str) -> &str {
    let Some(rest) = name.strip_prefix('<') else {
        return name;
    };
    let self_ty = strip_decorations(rest);
    let named = self_ty
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .is_some_and(|first| !first.is_empty() && self_ty[first.len()..].starts_with("::"));
    if named {
        return self_ty;
    }
    match rest.find(" as ") {
        Some(i) => strip_decorations(&rest[i + 4..]),
        // Inherent impl on a primitive: that code is core/alloc/std.
        None => "core::",
    }
}

fn strip_decorations(mut s: &str) -> &str {
    loop {
        let before = s;
        for p in [
            "&mut ", "&", "*const ", "*mut ", "dyn ", "[", "(", "<", "mut ",
        ] {
            if let Some(r) = s.strip_prefix(p) {
                s = r;
            }
        }
        if s == before {
            return s;
        }
    }
}

/// Whether a demangled (hash-free) function name may be preempted.
pub fn name_allowed(name: &str, deny: &[String], allow: &[String]) -> bool {
    let owner = owner_path(name);
    let matches = |p: &str| name.starts_with(p) || owner.starts_with(p);
    if deny.iter().any(|p| matches(p)) {
        return false;
    }
    if allow.iter().any(|p| matches(p)) {
        return true;
    }
    !(BUILTIN_DENY.iter().any(|p| matches(p)) || BUILTIN_DENY_EXACT.contains(&name))
}

/// [`name_allowed`] with the process-wide registered prefixes plus `deny`.
pub fn name_allowed_with_registered(name: &str, deny: &[String]) -> bool {
    let extra = EXTRA.lock().unwrap_or_else(|e| e.into_inner());
    let mut d = extra.0.clone();
    d.extend(deny.iter().cloned());
    name_allowed(name, &d, &extra.1)
}

#[cfg(target_os = "linux")]
fn load_bias() -> usize {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info pointer; `data` is the
        // `&mut usize` handed to dl_iterate_phdr below.
        unsafe {
            *(data as *mut usize) = (*info).dlpi_addr as usize;
        }
        1 // The main executable comes first; stop there.
    }
    let mut bias = 0usize;
    // SAFETY: `first` matches the callback signature and only writes `bias`.
    unsafe {
        libc::dl_iterate_phdr(Some(first), &mut bias as *mut usize as *mut libc::c_void);
    }
    bias
}

#[cfg(target_os = "linux")]
/// A read-only private mapping of a whole file (the executable can be large;
/// only the pages holding `.symtab`/`.strtab` get touched).
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

#[cfg(target_os = "linux")]
impl Mapped {
    fn open(path: &str) -> std::io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path)?;
        let len = usize::try_from(f.metadata()?.len()).map_err(std::io::Error::other)?;
        if len == 0 {
            return Err(std::io::Error::other("empty file"));
        }
        // SAFETY: maps `len` bytes of an open regular file read-only; the
        // mapping outlives the descriptor, which may be closed afterwards.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

#[cfg(target_os = "linux")]
impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no borrow of it outlives `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

#[cfg(target_os = "linux")]
fn build(deny: &[String], allow: &[String]) -> Result<Table, String> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let map =
        Mapped::open("/proc/self/exe").map_err(|e| format!("cannot read the executable: {e}"))?;
    let file = object::File::parse(map.bytes())
        .map_err(|e| format!("cannot parse the executable: {e}"))?;
    let bias = load_bias();
    let mut entries: Vec<Entry> = Vec::new();
    for sym in file.symbols() {
        if sym.kind() != SymbolKind::Text || !sym.is_definition() || sym.size() == 0 {
            continue;
        }
        let Ok(raw) = sym.name() else { continue };
        let name = format!("{:#}", rustc_demangle::demangle(raw));
        let start = sym.address() as usize + bias;
        entries.push(Entry {
            start,
            end: start + sym.size() as usize,
            allowed: name_allowed(&name, deny, allow),
        });
    }
    if entries.is_empty() {
        return Err("the executable has no .symtab (stripped)".into());
    }
    entries.sort_unstable_by_key(|e| (e.start, e.end));
    // Merge aliases: a range is allowed only if every name for it is.
    let mut merged: Vec<Entry> = Vec::with_capacity(entries.len());
    for e in entries {
        match merged.last_mut() {
            Some(last) if last.start == e.start => {
                last.end = last.end.max(e.end);
                last.allowed &= e.allowed;
            }
            _ => merged.push(e),
        }
    }
    // Nested/overlapping symbols (rare: local labels with sizes): clip so the
    // binary search sees disjoint ranges; the inner symbol decides.
    for i in 1..merged.len() {
        if merged[i - 1].end > merged[i].start {
            merged[i - 1].end = merged[i].start;
        }
    }
    Ok(Table { entries: merged })
}

#[cfg(not(target_os = "linux"))]
fn build(_deny: &[String], _allow: &[String]) -> Result<Table, String> {
    Err("no symbol table support on this target".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(n: &str) -> bool {
        name_allowed(n, &[], &[])
    }

    #[test]
    fn classification() {
        assert!(!ok("std::io::stdio::_print"));
        assert!(!ok("core::fmt::write"));
        assert!(!ok("urgent_executor::worker::run"));
        assert!(!ok("<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop"));
        assert!(!ok("<[u8] as core::fmt::Debug>::fmt"));
        assert!(!ok(
            "<&mut core::slice::iter::Iter<u8> as core::iter::traits::iterator::Iterator>::next"
        ));
        assert!(!ok("__rust_alloc"));
        assert!(!ok("__rdl_alloc"));
        assert!(!ok("malloc"));
        assert!(!ok("<u64>::wrapping_mul"));
        assert!(ok("mycrate::main::{{closure}}"));
        assert!(ok("mycrate::main::{closure#0}"));
        assert!(ok(
            "<mycrate::main::{{closure}} as core::ops::function::FnOnce<()>>::call_once"
        ));
        assert!(ok(
            "<mycrate::Foo as core::iter::traits::iterator::Iterator>::next"
        ));
        assert!(ok("<[u8] as mycrate::Checksum>::sum"));
        assert!(ok("mycrate::hot_loop"));
        let allow = vec!["urgent_executor::cpu::entry".to_string()];
        assert!(name_allowed(
            "urgent_executor::cpu::entry::<mycrate::main::{{closure}}, u64>",
            &[],
            &allow
        ));
        assert!(!name_allowed("urgent_executor::cpu::other", &[], &allow));
        let deny = vec!["mycrate::ffi".to_string()];
        assert!(!name_allowed("mycrate::ffi::call", &deny, &[]));
        assert!(!name_allowed(
            "<mycrate::ffi::Handle as core::ops::drop::Drop>::drop",
            &deny,
            &[]
        ));
    }
}
