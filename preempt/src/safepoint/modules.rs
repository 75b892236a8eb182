//! The module table: every loaded object (executable, shared objects, the
//! vDSO) with its executable ranges, its unwind tables and the class of each
//! of its functions.
//!
//! Built outside the signal handler (`dl_iterate_phdr`, file reads, `dlsym`
//! and demangling all allocate or take the loader lock), then published
//! through an atomic pointer and never freed: a replaced table is leaked,
//! because a handler may still be walking it. The handler reads it with one
//! acquire load and binary searches.
//!
//! Unwind tables are read from the *loaded* segments (`PT_GNU_EH_FRAME` →
//! `.eh_frame_hdr`, whose binary-search table points into `.eh_frame`), so no
//! file is needed for them. Function classes come from the object's file
//! (`.symtab`, else `.dynsym`; the vDSO's from its in-memory image). The
//! leaf allow list ([`LEAF_ALLOW`]) is resolved with `dlsym`, which applies
//! the IFUNC choice (glibc's `memcpy` runs as `__memmove_avx_unaligned_erms`,
//! which has no dynamic symbol), and each resolved entry point gets the extent
//! of the FDE that covers it.
//!
//! A dlclosed object's entry stays in the table until the next rebuild; its
//! unwind data is then unmapped, but the handler only reads the unwind data of
//! the object whose range holds the PC being classified, and a PC cannot be
//! in code that is no longer mapped unless another object was mapped at the
//! same place, which `rebuild_if_changed` (the loader's add/sub counters)
//! detects.

use super::classify::{c_name_class, symbol_class, Class, LEAF_ALLOW, VDSO_ALLOW};
use gimli::{
    BaseAddresses, EhFrame, EhFrameHdr, EndianSlice, LittleEndian, ParsedEhFrameHdr, UnwindSection,
};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

pub(crate) type Reader = EndianSlice<'static, LittleEndian>;

/// One function (or merged aliases) of an object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Func {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) class: Class,
}

/// Unwind tables of an object, parsed from its loaded segments.
pub(crate) struct Eh {
    pub(crate) hdr: ParsedEhFrameHdr<Reader>,
    pub(crate) frame: EhFrame<Reader>,
    pub(crate) bases: BaseAddresses,
}

/// One loaded object.
pub(crate) struct Module {
    #[allow(dead_code)] // Diagnostics and tests.
    pub(crate) name: String,
    /// Lowest and highest address of its executable segments.
    pub(crate) lo: usize,
    pub(crate) hi: usize,
    pub(crate) eh: Option<Eh>,
    /// Sorted, disjoint.
    pub(crate) funcs: Vec<Func>,
    /// Leaf functions allowed by address (dlsym + covering FDE). Sorted.
    pub(crate) leaves: Vec<(usize, usize)>,
    /// Whether function classes came from a `.symtab`.
    #[allow(dead_code)] // Diagnostics and tests.
    pub(crate) has_symtab: bool,
}

impl Module {
    /// Class of the code at `pc` (a PC inside this module's range).
    pub(crate) fn class_of(&self, pc: usize) -> Class {
        if find_range(&self.leaves, pc, |r| (r.0, r.1)).is_some() {
            return Class::Pure;
        }
        match find_range(&self.funcs, pc, |f| (f.start, f.end)) {
            Some(f) => f.class,
            // PLT stubs, padding, code without a symbol: unknown, so never.
            None => Class::Never,
        }
    }
}

/// Binary search for the range containing `pc` in a sorted, disjoint slice,
/// written by hand so that nothing can allocate.
fn find_range<T>(v: &[T], pc: usize, range: impl Fn(&T) -> (usize, usize)) -> Option<&T> {
    let (mut lo, mut hi) = (0usize, v.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if range(&v[mid]).0 <= pc {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo == 0 {
        return None;
    }
    let e = &v[lo - 1];
    (pc < range(e).1).then_some(e)
}

/// A published table.
pub(crate) struct Table {
    /// Sorted by `lo`, disjoint.
    pub(crate) modules: Vec<Module>,
    /// Distinguishes tables in the per-thread caches (never 0).
    pub(crate) generation: u32,
    /// Loader counters when built (`dlpi_adds`, `dlpi_subs`).
    adds: u64,
    subs: u64,
}

impl Table {
    /// The module whose executable range holds `pc`.
    pub(crate) fn find(&self, pc: usize) -> Option<&Module> {
        let (mut lo, mut hi) = (0usize, self.modules.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.modules[mid].lo <= pc {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            return None;
        }
        let m = &self.modules[lo - 1];
        (pc < m.hi).then_some(m)
    }

    /// Total number of classified functions.
    pub(crate) fn func_count(&self) -> usize {
        self.modules.iter().map(|m| m.funcs.len()).sum()
    }
}

static TABLE: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The published table, if any. Async-signal-safe.
pub(crate) fn current() -> Option<&'static Table> {
    let t = TABLE.load(Ordering::Acquire);
    // SAFETY: published tables are leaked, never freed or mutated after the
    // release store that published them.
    (!t.is_null()).then(|| unsafe { &*t })
}

/// Publishes `t` (leaking any previous table) or clears the table.
pub(crate) fn publish(t: Option<Table>) {
    let p = match t {
        Some(mut t) => {
            t.generation = (GENERATION.fetch_add(1, Ordering::Relaxed) as u32).wrapping_add(1) | 1;
            Box::into_raw(Box::new(t))
        }
        None => std::ptr::null_mut(),
    };
    // The old table (if any) is leaked on purpose: a signal handler may be
    // walking it right now.
    TABLE.store(p, Ordering::Release);
}

/// Whether objects were loaded or unloaded since the published table was
/// built.
pub(crate) fn changed_since_build() -> bool {
    match current() {
        None => true,
        Some(t) => {
            let (adds, subs) = loader_counters();
            adds != t.adds || subs != t.subs
        }
    }
}

/// One object as reported by `dl_iterate_phdr`.
struct Raw {
    name: String,
    bias: usize,
    /// (p_type, p_flags, vaddr, memsz, offset, filesz)
    phdrs: Vec<(u32, u32, usize, usize, usize, usize)>,
}

fn loader_counters() -> (u64, u64) {
    unsafe extern "C" fn cb(
        info: *mut libc::dl_phdr_info,
        size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info of `size` bytes; the
        // counters exist when the size covers them; `data` is ours.
        unsafe {
            let out = &mut *(data as *mut (u64, u64));
            if size >= std::mem::size_of::<libc::dl_phdr_info>() {
                *out = ((*info).dlpi_adds, (*info).dlpi_subs);
            }
        }
        1
    }
    let mut out = (0u64, 0u64);
    // SAFETY: `cb` matches the callback type and only writes `out`.
    unsafe { libc::dl_iterate_phdr(Some(cb), &mut out as *mut _ as *mut libc::c_void) };
    out
}

fn loaded_objects() -> Vec<Raw> {
    unsafe extern "C" fn cb(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info whose phdr array has
        // dlpi_phnum entries; `data` is the Vec handed in below.
        unsafe {
            let out = &mut *(data as *mut Vec<Raw>);
            let info = &*info;
            let name = if info.dlpi_name.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(info.dlpi_name)
                    .to_string_lossy()
                    .into_owned()
            };
            let mut phdrs = Vec::new();
            for i in 0..info.dlpi_phnum as usize {
                let p = &*info.dlpi_phdr.add(i);
                phdrs.push((
                    p.p_type,
                    p.p_flags,
                    p.p_vaddr as usize,
                    p.p_memsz as usize,
                    p.p_offset as usize,
                    p.p_filesz as usize,
                ));
            }
            out.push(Raw {
                name,
                bias: info.dlpi_addr as usize,
                phdrs,
            });
        }
        0
    }
    let mut out: Vec<Raw> = Vec::new();
    // SAFETY: `cb` matches the callback type and only pushes into `out`.
    unsafe { libc::dl_iterate_phdr(Some(cb), &mut out as *mut Vec<Raw> as *mut libc::c_void) };
    out
}

/// Parses the unwind tables of a loaded object from memory.
fn parse_eh(raw: &Raw) -> Option<Eh> {
    let &(_, _, vaddr, memsz, _, _) = raw.phdrs.iter().find(|p| p.0 == libc::PT_GNU_EH_FRAME)?;
    let hdr_addr = raw.bias.checked_add(vaddr)?;
    // SAFETY: PT_GNU_EH_FRAME describes memsz bytes of a loaded, readable
    // segment that stays mapped while the object is loaded.
    let hdr_bytes: &'static [u8] =
        unsafe { std::slice::from_raw_parts(hdr_addr as *const u8, memsz) };
    let bases = BaseAddresses::default().set_eh_frame_hdr(hdr_addr as u64);
    let hdr = EhFrameHdr::new(hdr_bytes, LittleEndian)
        .parse(&bases, 8)
        .ok()?;
    let eh_addr = usize::try_from(hdr.eh_frame_ptr().direct().ok()?).ok()?;
    // .eh_frame's length is not recorded: it extends at most to the end of
    // the loaded segment that contains it.
    let seg_end = raw.phdrs.iter().find_map(|&(ty, _, v, m, _, _)| {
        let s = raw.bias + v;
        (ty == libc::PT_LOAD && s <= eh_addr && eh_addr < s + m).then_some(s + m)
    })?;
    // SAFETY: [eh_addr, seg_end) lies inside one loaded PT_LOAD segment.
    let frame_bytes: &'static [u8] =
        unsafe { std::slice::from_raw_parts(eh_addr as *const u8, seg_end - eh_addr) };
    hdr.table()?;
    // Fault the tables in now, so the handler's first walks do not page
    // them in from disk (and hit the walk's time limit).
    prefault(hdr_bytes);
    prefault(frame_bytes);
    let bases = bases.set_eh_frame(eh_addr as u64);
    let mut frame = EhFrame::new(frame_bytes, LittleEndian);
    frame.set_address_size(8);
    Some(Eh { hdr, frame, bases })
}

/// Reads one byte per page of `b`.
fn prefault(b: &[u8]) {
    let mut sum = 0u8;
    for i in (0..b.len()).step_by(4096) {
        sum = sum.wrapping_add(b[i]);
    }
    std::hint::black_box(sum);
}

impl Eh {
    /// Extent of the FDE covering `pc`, if any.
    pub(crate) fn fde_range(&self, pc: usize) -> Option<(usize, usize)> {
        let table = self.hdr.table()?;
        let fde = table
            .fde_for_address(
                &self.frame,
                &self.bases,
                pc as u64,
                EhFrame::cie_from_offset,
            )
            .ok()?;
        let s = fde.initial_address() as usize;
        Some((s, s + fde.len() as usize))
    }
}

/// A read-only private mapping of a whole file.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn open(path: &str) -> std::io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path)?;
        let len = usize::try_from(f.metadata()?.len()).map_err(std::io::Error::other)?;
        if len == 0 {
            return Err(std::io::Error::other("empty file"));
        }
        // SAFETY: maps `len` bytes of an open regular file read-only; the
        // mapping outlives the descriptor.
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

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no borrow of it outlives `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// The vDSO's ELF image in memory, if `raw` is the vDSO.
fn vdso_image(raw: &Raw) -> Option<&'static [u8]> {
    // SAFETY: getauxval has no preconditions.
    let ehdr = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
    if ehdr == 0 {
        return None;
    }
    let first = raw
        .phdrs
        .iter()
        .find(|p| p.0 == libc::PT_LOAD && p.4 == 0)?;
    if raw.bias + first.2 != ehdr {
        return None;
    }
    let len = raw
        .phdrs
        .iter()
        .filter(|p| p.0 == libc::PT_LOAD)
        .map(|p| p.4 + p.5)
        .max()?
        // Section headers may follow the last segment's bytes on its page.
        .next_multiple_of(4096);
    // SAFETY: the vDSO image is mapped readable, in whole pages, for the life
    // of the process, and its file image is its memory image from the ELF
    // header on.
    Some(unsafe { std::slice::from_raw_parts(ehdr as *const u8, len) })
}

/// Function classes of one object from its symbols. Returns the functions
/// and whether they came from a `.symtab`.
fn functions(
    data: &[u8],
    bias: usize,
    vdso: bool,
    deny: &[String],
    allow: &[String],
) -> (Vec<Func>, bool) {
    use object::{Object, ObjectSymbol, SymbolKind};
    let Ok(file) = object::File::parse(data) else {
        return (Vec::new(), false);
    };
    let collect = |out: &mut Vec<Func>, syms: &mut dyn Iterator<Item = object::Symbol<'_, '_>>| {
        for sym in syms {
            if sym.kind() != SymbolKind::Text || !sym.is_definition() || sym.size() == 0 {
                continue;
            }
            let Ok(raw) = sym.name() else { continue };
            let class = if vdso {
                if VDSO_ALLOW.contains(&raw) {
                    Class::Pure
                } else {
                    Class::Never
                }
            } else {
                symbol_class(raw, deny, allow)
            };
            let start = (sym.address() as usize).wrapping_add(bias);
            out.push(Func {
                start,
                end: start + sym.size() as usize,
                class,
            });
        }
    };
    let mut out = Vec::new();
    collect(&mut out, &mut file.symbols());
    let has_symtab = !out.is_empty();
    if !has_symtab {
        collect(&mut out, &mut file.dynamic_symbols());
    }
    (merge(out), has_symtab)
}

/// Sorts, merges aliases (a range gets the most severe class of its names)
/// and clips overlaps so the binary search sees disjoint ranges.
fn merge(mut v: Vec<Func>) -> Vec<Func> {
    v.sort_unstable_by_key(|f| (f.start, f.end));
    let mut merged: Vec<Func> = Vec::with_capacity(v.len());
    for f in v {
        match merged.last_mut() {
            Some(last) if last.start == f.start => {
                last.end = last.end.max(f.end);
                last.class = last.class.max(f.class);
            }
            _ => merged.push(f),
        }
    }
    for i in 1..merged.len() {
        if merged[i - 1].end > merged[i].start {
            merged[i - 1].end = merged[i].start;
        }
    }
    merged
}

/// Builds the table for the current process. Errors (with the reason) when
/// the object holding this crate has no `.symtab`: then nothing can be
/// classified and async preemption stays off.
pub(crate) fn build(deny: &[String], allow: &[String]) -> Result<Table, String> {
    let (adds, subs) = loader_counters();
    let raws = loaded_objects();
    let me = build as *const () as usize;
    let mut modules = Vec::new();
    for (i, raw) in raws.iter().enumerate() {
        let exec: Vec<(usize, usize)> = raw
            .phdrs
            .iter()
            .filter(|p| p.0 == libc::PT_LOAD && p.1 & libc::PF_X != 0)
            .map(|p| (raw.bias + p.2, raw.bias + p.2 + p.3))
            .collect();
        let (Some(lo), Some(hi)) = (
            exec.iter().map(|r| r.0).min(),
            exec.iter().map(|r| r.1).max(),
        ) else {
            continue;
        };
        let vdso = vdso_image(raw);
        let (funcs, has_symtab) = if let Some(img) = vdso {
            functions(img, raw.bias, true, deny, allow)
        } else {
            // The first object is the executable; its dlpi_name is empty.
            let path = if i == 0 && raw.name.is_empty() {
                "/proc/self/exe".to_string()
            } else {
                raw.name.clone()
            };
            match Mapped::open(&path) {
                Ok(map) => functions(map.bytes(), raw.bias, false, deny, allow),
                Err(_) => (Vec::new(), false),
            }
        };
        if (lo..hi).contains(&me) && !has_symtab {
            return Err(if i == 0 {
                "the executable has no .symtab (stripped)".to_string()
            } else {
                format!("{} has no .symtab (stripped)", raw.name)
            });
        }
        modules.push(Module {
            name: if vdso.is_some() {
                "[vdso]".to_string()
            } else if raw.name.is_empty() {
                "[exe]".to_string()
            } else {
                raw.name.clone()
            },
            lo,
            hi,
            eh: parse_eh(raw),
            funcs,
            leaves: Vec::new(),
            has_symtab,
        });
    }
    modules.sort_unstable_by_key(|m| m.lo);
    // Overlapping ranges would break the binary search: drop later ones.
    let mut kept: Vec<Module> = Vec::with_capacity(modules.len());
    for m in modules {
        if kept.last().is_none_or(|l| l.hi <= m.lo) {
            kept.push(m);
        }
    }
    let mut table = Table {
        modules: kept,
        generation: 0,
        adds,
        subs,
    };
    resolve_leaves(&mut table);
    Ok(table)
}

/// Resolves each allowed leaf entry point with `dlsym` and allows the extent
/// of its covering FDE in the module that holds it.
fn resolve_leaves(table: &mut Table) {
    for name in LEAF_ALLOW {
        debug_assert_eq!(c_name_class(name), Class::Pure);
        let Ok(c) = std::ffi::CString::new(*name) else {
            continue;
        };
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
        let addr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c.as_ptr()) } as usize;
        if addr == 0 {
            continue;
        }
        let Some(idx) = table
            .modules
            .iter()
            .position(|m| (m.lo..m.hi).contains(&addr))
        else {
            continue;
        };
        let m = &mut table.modules[idx];
        let Some(range) = m.eh.as_ref().and_then(|eh| eh.fde_range(addr)) else {
            continue;
        };
        m.leaves.push(range);
    }
    for m in &mut table.modules {
        m.leaves.sort_unstable();
        m.leaves.dedup();
        for i in 1..m.leaves.len() {
            if m.leaves[i - 1].1 > m.leaves[i].0 {
                m.leaves[i - 1].1 = m.leaves[i].0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        build(&[], &[]).expect("test binaries have a .symtab")
    }

    #[test]
    fn finds_objects_and_classifies_leaves() {
        let t = table();
        assert!(t.modules.len() >= 2, "exe and libc at least");
        assert!(t.modules.iter().any(|m| m.name == "[exe]" && m.has_symtab));
        // memcpy as dlsym resolves it (the IFUNC choice) is pure, wherever
        // it lives, and so is the rest of its FDE.
        for name in [
            c"memcpy",
            c"memmove",
            c"memset",
            c"strlen",
            c"clock_gettime",
        ] {
            // SAFETY: dlsym with a NUL-terminated name.
            let a = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
            assert_ne!(a, 0);
            let m = t.find(a).expect("in a module");
            assert_eq!(m.class_of(a), Class::Pure, "{name:?} in {}", m.name);
            assert_eq!(m.class_of(a + 4), Class::Pure, "{name:?} in {}", m.name);
        }
        // libc's other functions are never.
        // SAFETY: dlsym with a NUL-terminated name; the address is only compared.
        let getpid = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"getpid".as_ptr()) } as usize;
        assert_eq!(t.find(getpid).unwrap().class_of(getpid), Class::Never);
        // SAFETY: as above.
        let malloc = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) } as usize;
        assert_eq!(t.find(malloc).unwrap().class_of(malloc + 2), Class::Never);
        // Anonymous memory is in no module.
        assert!(t.find(0x1000).is_none());
        assert!(t.func_count() > 100);
    }

    #[test]
    fn vdso_clock_is_pure() {
        let t = table();
        let Some(v) = t.modules.iter().find(|m| m.name == "[vdso]") else {
            return; // no vDSO (unusual)
        };
        let pure = v.funcs.iter().filter(|f| f.class == Class::Pure).count();
        assert!(pure >= 1, "{:?}", v.funcs);
        assert!(v.eh.is_some());
    }
}
