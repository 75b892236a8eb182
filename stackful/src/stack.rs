//! Coroutine stacks: `mmap` reservations with a guard page, pooled per thread
//! and globally.
//!
//! Layout of one stack (addresses grow to the right, the stack grows left):
//!
//! ```text
//!   map_lo        stack_lo                               top - WARM    top
//!   | guard page  | usable, MADV_DONTNEED'ed when pooled | warm prefix |
//! ```
//!
//! The guard page is installed with `madvise(MADV_GUARD_INSTALL)` where the
//! kernel supports it (Linux 6.13+): the guard then lives in the page tables
//! and does not split the mapping, so 100 000 stacks do not run into
//! `vm.max_map_count` (65 530 by default; a `PROT_NONE` page costs one extra
//! VMA per stack, two in all). Older kernels get a classic
//! `mprotect(PROT_NONE)` guard page. Either way, touching it raises `SIGSEGV`
//! with `si_addr` inside the guard page.

use std::cell::RefCell;
use std::io;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Smallest usable stack size accepted by [`Stack::new`] and
/// [`validate_stack_size`]: 16 KiB.
pub const MIN_STACK_SIZE: usize = 16 * 1024;

/// Largest usable stack size accepted by [`Stack::new`] and
/// [`validate_stack_size`]: 1 GiB.
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// Stack size used by the runtime when `Builder::stack_size` is not set:
/// 256 KiB.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Bytes at the top of a pooled stack that stay resident (the "warm prefix").
/// Everything below is given back to the kernel when a stack enters a pool.
pub const WARM_PREFIX: usize = 16 * 1024;

/// How many stacks one thread keeps for itself.
const THREAD_POOL_CAP: usize = 32;
/// How many stacks the process-wide pool keeps.
const GLOBAL_POOL_CAP: usize = 256;

/// `madvise` advice values for guard regions (Linux 6.13+); not all libc
/// versions name them.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Set once `MADV_GUARD_INSTALL` failed with `EINVAL`: use `mprotect`.
static NO_GUARD_ADVICE: AtomicBool = AtomicBool::new(false);

/// The system page size.
pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let p = if p > 0 { p as usize } else { 4096 };
    assert!(p.is_power_of_two());
    PAGE.store(p, Ordering::Relaxed);
    p
}

/// Checks a requested coroutine stack size and rounds it up to whole pages.
///
/// Sizes below [`MIN_STACK_SIZE`] (16 KiB) or above [`MAX_STACK_SIZE`]
/// (1 GiB) are refused with [`io::ErrorKind::InvalidInput`] and a message that
/// names `Builder::stack_size`. `Builder::build` calls this so a bad size is
/// reported up front, not at the first `spawn_cpu`.
///
/// ```
/// use urgent_stackful::validate_stack_size;
/// assert_eq!(validate_stack_size(256 * 1024).unwrap(), 256 * 1024);
/// assert_eq!(validate_stack_size(20_000).unwrap() % 4096, 0);
/// let err = validate_stack_size(1024).unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// assert!(err.to_string().contains("Builder::stack_size"));
/// ```
pub fn validate_stack_size(size: usize) -> io::Result<usize> {
    if size < MIN_STACK_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "urgent: a CPU task stack of {size} bytes is too small (minimum {} KiB); \
                 raise Builder::stack_size",
                MIN_STACK_SIZE / 1024
            ),
        ));
    }
    if size > MAX_STACK_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "urgent: a CPU task stack of {size} bytes is too large (maximum {} MiB); \
                 lower Builder::stack_size",
                MAX_STACK_SIZE >> 20
            ),
        ));
    }
    let page = page_size();
    Ok((size + page - 1) & !(page - 1))
}

/// The memory of one stack, without ownership semantics (no `Drop`): what the
/// pools hold.
#[derive(Debug)]
struct RawStack {
    /// Highest address (exclusive); page aligned.
    top: usize,
    /// Usable bytes below `top`, page multiple.
    size: usize,
    /// Whether the canary words in the lowest warm page were written when
    /// the stack was last pooled (see `release_cold_pages`).
    canary: bool,
    /// Times this stack entered a pool since its cold pages were last
    /// released.
    clean_reuses: u32,
}

/// Canary value written every `CANARY_STRIDE` bytes into the lowest page of
/// the warm prefix.
const CANARY: u64 = 0x5a17_c0de_d00d_f00d;
/// One canary word per this many bytes (16 per 4 KiB page).
const CANARY_STRIDE: usize = 256;
/// Release the cold pages at least every this many poolings, whatever the
/// canary says.
const MAX_CLEAN_REUSES: u32 = 1024;

fn warm_prefix() -> usize {
    WARM_PREFIX.max(page_size())
}

impl RawStack {
    fn guard_len() -> usize {
        page_size()
    }

    fn map_lo(&self) -> usize {
        self.top - self.size - Self::guard_len()
    }

    fn map_len(&self) -> usize {
        self.size + Self::guard_len()
    }

    /// Reserves a fresh stack of `size` usable bytes (page multiple).
    fn map(size: usize) -> io::Result<RawStack> {
        let guard = Self::guard_len();
        let len = size + guard;
        // MAP_NORESERVE: only touched pages cost memory, no commit charge.
        // MAP_STACK: on Linux 6.7+ also marks the range VM_NOHUGEPAGE, so a
        // transparent huge page never backs a mostly-empty stack.
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK;
        // SAFETY: an anonymous mapping at a kernel-chosen address does not
        // touch any existing memory.
        let lo = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if lo == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let raw = RawStack {
            top: lo as usize + len,
            size,
            canary: false,
            clean_reuses: 0,
        };
        if let Err(e) = raw.install_guard() {
            raw.unmap();
            return Err(e);
        }
        Ok(raw)
    }

    fn install_guard(&self) -> io::Result<()> {
        let lo = self.map_lo() as *mut libc::c_void;
        let guard = Self::guard_len();
        if !NO_GUARD_ADVICE.load(Ordering::Relaxed) {
            // SAFETY: [lo, lo + guard) is the low end of the mapping we just
            // created and own; nothing lives there.
            if unsafe { libc::madvise(lo, guard, MADV_GUARD_INSTALL) } == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
            NO_GUARD_ADVICE.store(true, Ordering::Relaxed);
        }
        // Older kernel: a PROT_NONE page (one more VMA per stack). Also keep
        // transparent huge pages away explicitly: MAP_STACK does not imply
        // VM_NOHUGEPAGE before Linux 6.7. Failure of the hint is harmless.
        // SAFETY: as above, the range belongs to this fresh mapping.
        unsafe {
            libc::madvise(
                (self.map_lo() + guard) as *mut libc::c_void,
                self.size,
                libc::MADV_NOHUGEPAGE,
            );
            if libc::mprotect(lo, guard, libc::PROT_NONE) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Start of the canary page: the lowest page of the warm prefix.
    fn canary_page(&self) -> usize {
        self.top - warm_prefix()
    }

    /// Whether all canary words are as `write_canary` left them.
    fn canary_intact(&self) -> bool {
        let lo = self.canary_page();
        (0..page_size() / CANARY_STRIDE).all(|i| {
            // SAFETY: the canary page is inside the usable range of a stack
            // we own exclusively; nothing runs on it.
            unsafe { ptr::read((lo + i * CANARY_STRIDE) as *const u64) == CANARY }
        })
    }

    fn write_canary(&mut self) {
        let lo = self.canary_page();
        for i in 0..page_size() / CANARY_STRIDE {
            // SAFETY: as in canary_intact.
            unsafe { ptr::write((lo + i * CANARY_STRIDE) as *mut u64, CANARY) };
        }
        self.canary = true;
    }

    /// Gives the pages below the warm prefix back to the kernel, unless they
    /// were certainly not touched since the last time.
    ///
    /// The syscall costs about as much as a whole coroutine life cycle, so it
    /// is skipped when the canary words (one per 256 bytes of the warm
    /// prefix's lowest page, written when the stack was last pooled) are all
    /// intact: a coroutine that used the stack below the warm prefix crossed
    /// that page, and its frames (return addresses, spills, locals) overwrote
    /// canaries. Frames that cross the page without writing to any canary
    /// word (a large uninitialised buffer) could slip through; the periodic
    /// unconditional release bounds how long such pages stay resident.
    fn release_cold_pages(&mut self) {
        let warm = warm_prefix();
        if self.size <= warm {
            return;
        }
        if self.canary && self.clean_reuses < MAX_CLEAN_REUSES && self.canary_intact() {
            self.clean_reuses += 1;
            return;
        }
        let lo = self.top - self.size;
        let len = self.size - warm;
        // SAFETY: we own the stack exclusively (it is being pooled, nothing
        // runs on it), so discarding its contents below the warm prefix is
        // invisible to anyone. The range is page aligned and excludes the
        // guard page, whose marker or protection stays in place.
        unsafe {
            libc::madvise(lo as *mut libc::c_void, len, libc::MADV_DONTNEED);
        }
        self.clean_reuses = 0;
        self.write_canary();
    }

    fn unmap(self) {
        // SAFETY: the mapping is exclusively ours and nothing runs on it.
        let rc = unsafe { libc::munmap(self.map_lo() as *mut libc::c_void, self.map_len()) };
        debug_assert_eq!(rc, 0, "munmap of a coroutine stack failed");
    }
}

// ---------------------------------------------------------------------------
// Pools.
//
// Invariants: a stack in a pool is owned by the pool alone (no coroutine, no
// `Stack` handle points at it); its pages below the warm prefix have been
// MADV_DONTNEED'ed; its guard page is intact. Pools are bounded; overflow goes
// thread pool -> global pool -> munmap.

struct ThreadPool(Vec<RawStack>);

impl Drop for ThreadPool {
    fn drop(&mut self) {
        for raw in self.0.drain(..) {
            global_put(raw);
        }
    }
}

thread_local! {
    static THREAD_POOL: RefCell<ThreadPool> = const { RefCell::new(ThreadPool(Vec::new())) };
}

static GLOBAL_POOL: Mutex<Vec<RawStack>> = Mutex::new(Vec::new());
/// Length of `GLOBAL_POOL`, readable without the lock (a hint).
static GLOBAL_LEN: AtomicUsize = AtomicUsize::new(0);

fn take_matching(pool: &mut Vec<RawStack>, size: usize) -> Option<RawStack> {
    let i = pool.iter().rposition(|s| s.size == size)?;
    Some(pool.swap_remove(i))
}

fn thread_take(size: usize) -> Option<RawStack> {
    THREAD_POOL
        .try_with(|p| take_matching(&mut p.borrow_mut().0, size))
        .ok()
        .flatten()
}

/// Offers `raw` to this thread's pool, releasing its cold pages first; gives
/// it back untouched if the pool is full or gone (thread exiting).
fn thread_put(raw: RawStack) -> Option<RawStack> {
    let mut raw = Some(raw);
    let _ = THREAD_POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.0.len() < THREAD_POOL_CAP {
            let mut r = raw.take().expect("stack offered twice");
            r.release_cold_pages();
            p.0.push(r);
        }
    });
    raw
}

fn global_take(size: usize) -> Option<RawStack> {
    if GLOBAL_LEN.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let mut g = GLOBAL_POOL.lock().unwrap_or_else(|e| e.into_inner());
    let r = take_matching(&mut g, size);
    GLOBAL_LEN.store(g.len(), Ordering::Relaxed);
    r
}

/// Puts `raw` into the global pool, releasing its cold pages first (outside
/// the lock), or unmaps it if the pool is full: no point in a `madvise` for
/// a stack about to be unmapped.
fn global_put(mut raw: RawStack) {
    if GLOBAL_LEN.load(Ordering::Relaxed) >= GLOBAL_POOL_CAP {
        return raw.unmap();
    }
    raw.release_cold_pages();
    let mut g = GLOBAL_POOL.lock().unwrap_or_else(|e| e.into_inner());
    if g.len() < GLOBAL_POOL_CAP {
        g.push(raw);
        GLOBAL_LEN.store(g.len(), Ordering::Relaxed);
    } else {
        drop(g);
        raw.unmap();
    }
}

/// Number of stacks in the calling thread's pool and in the global pool.
/// For tests and diagnostics.
pub fn pooled_stacks() -> (usize, usize) {
    let local = THREAD_POOL.try_with(|p| p.borrow().0.len()).unwrap_or(0);
    (local, GLOBAL_LEN.load(Ordering::Relaxed))
}

/// Stacks quarantined by [`Stack::quarantine`] since the process started.
static LEAKED: AtomicUsize = AtomicUsize::new(0);

/// How many coroutine stacks have been leaked on purpose since the process
/// started: stacks of coroutines dropped while suspended by async preemption
/// (an aborted preempted task, or one still preempted when its runtime shut
/// down). Such a stack stays mapped and is never pooled or unmapped, because
/// something may still point into it (see "States" in the crate docs). Each
/// one keeps the pages its task touched resident. For diagnostics and tests.
///
/// ```
/// assert_eq!(urgent_stackful::leaked_stacks(), 0);
/// ```
pub fn leaked_stacks() -> usize {
    LEAKED.load(Ordering::Relaxed)
}

/// A coroutine stack: an `mmap`'ed reservation with a guard page at its low
/// end, taken from and returned to a pool.
///
/// [`Stack::new`] takes a stack of the same size from the calling thread's
/// pool, then from the global pool, and only then maps a new one. Dropping a
/// `Stack` gives its pages below the top [`WARM_PREFIX`] bytes back to the
/// kernel (`MADV_DONTNEED`; skipped when canary words at the bottom of the
/// warm prefix show the stack was not used that deep since the last time)
/// and returns it to the current thread's pool,
/// overflowing to the global pool and then to `munmap`. The reservation is
/// `MAP_NORESERVE`: a stack costs address space, and memory only for the
/// pages it touched.
///
/// `Stack` is `Send`: it is plain owned memory.
///
/// ```
/// use urgent_stackful::Stack;
/// let stack = Stack::new(64 * 1024).unwrap();
/// assert_eq!(stack.size(), 64 * 1024);
/// let (lo, top) = stack.bounds();
/// assert_eq!(top - lo, 64 * 1024);
/// ```
#[derive(Debug)]
pub struct Stack {
    raw: RawStack,
}

impl Stack {
    /// Gets a stack with at least `size` usable bytes (rounded up to pages).
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] if `size` is below 16 KiB or
    /// above 1 GiB (see [`validate_stack_size`]), or with the OS error if the
    /// mapping fails.
    pub fn new(size: usize) -> io::Result<Stack> {
        let size = validate_stack_size(size)?;
        let raw = match thread_take(size).or_else(|| global_take(size)) {
            Some(raw) => raw,
            None => RawStack::map(size)?,
        };
        Ok(Stack { raw })
    }

    /// Usable size in bytes (excluding the guard page).
    pub fn size(&self) -> usize {
        self.raw.size
    }

    /// `(lowest usable address, top)`: the guard page lies just below the
    /// first, and the stack grows down from the second.
    pub fn bounds(&self) -> (usize, usize) {
        (self.raw.top - self.raw.size, self.raw.top)
    }

    /// `(start, end)` of the guard page.
    pub fn guard(&self) -> (usize, usize) {
        (self.raw.map_lo(), self.raw.top - self.raw.size)
    }

    /// Leaks the stack for good: it stays mapped, with its contents and its
    /// guard page, and never enters a pool, is never `madvise`d and never
    /// unmapped. Counted in [`leaked_stacks`].
    ///
    /// For the stack of a coroutine dropped while suspended by async
    /// preemption, whose frames were discarded without running destructors:
    /// anything those frames had lent their memory to may still read or
    /// write it (see `Coroutine`'s `Drop`). Reusing the stack would hand that
    /// memory to the next coroutine's frames; unmapping it or giving its
    /// pages back (`MADV_DONTNEED` reads back zeroes) would turn those
    /// accesses into crashes or into reads of nonsense.
    pub(crate) fn quarantine(self) {
        LEAKED.fetch_add(1, Ordering::Relaxed);
        std::mem::forget(self);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let raw = RawStack {
            top: self.raw.top,
            size: self.raw.size,
            canary: self.raw.canary,
            clean_reuses: self.raw.clean_reuses,
        };
        if let Some(raw) = thread_put(raw) {
            global_put(raw);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Number of resident pages of [lo, hi).
    fn resident_pages(lo: usize, hi: usize) -> usize {
        let page = page_size();
        let n = (hi - lo) / page;
        let mut vec = vec![0u8; n];
        // SAFETY: [lo, hi) is a mapped, page-aligned range; vec has one byte
        // per page.
        let rc = unsafe { libc::mincore(lo as *mut libc::c_void, hi - lo, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        vec.iter().filter(|b| **b & 1 != 0).count()
    }

    #[test]
    fn rounds_to_pages() {
        let s = Stack::new(MIN_STACK_SIZE + 1).unwrap();
        assert_eq!(s.size() % page_size(), 0);
        assert!(s.size() > MIN_STACK_SIZE);
        let (g0, g1) = s.guard();
        assert_eq!(g1 - g0, page_size());
        assert_eq!(g1, s.bounds().0);
    }

    #[test]
    fn pooled_stack_releases_cold_pages() {
        // A size no other test uses, so the pools cannot hand us another one.
        let size = 200 * 1024;
        let s = Stack::new(size).unwrap();
        let (lo, top) = s.bounds();
        // SAFETY: the usable range is ours; fill it so every page is resident.
        unsafe { ptr::write_bytes(lo as *mut u8, 0xa5, top - lo) };
        assert_eq!(resident_pages(lo, top), size / page_size());
        drop(s);
        let warm = WARM_PREFIX.max(page_size());
        assert_eq!(
            resident_pages(lo, top - warm),
            0,
            "cold pages still resident"
        );
        assert_eq!(resident_pages(top - warm, top), warm / page_size());
        // Same thread, same size: the pool hands the same stack back.
        let s2 = Stack::new(size).unwrap();
        assert_eq!(s2.bounds(), (lo, top));
        // The cold part reads back as zeroes, the warm prefix kept its data.
        // SAFETY: both addresses are in the usable range of s2.
        unsafe {
            assert_eq!(*(lo as *const u8), 0);
            assert_eq!(*((top - 1) as *const u8), 0xa5);
        }
    }

    #[test]
    fn canary_skips_release_only_for_shallow_use() {
        let size = 136 * 1024; // unique to this test
        let warm = WARM_PREFIX.max(page_size());
        let s = Stack::new(size).unwrap();
        let (lo, top) = s.bounds();
        assert!(!s.raw.canary);
        drop(s);
        // Shallow use: only the top page. The canary holds, no release.
        let s = Stack::new(size).unwrap();
        assert_eq!(s.bounds(), (lo, top));
        assert!(s.raw.canary);
        assert_eq!(s.raw.clean_reuses, 0);
        // SAFETY: inside the usable range.
        unsafe { ptr::write_bytes((top - 512) as *mut u8, 1, 512) };
        drop(s);
        let s = Stack::new(size).unwrap();
        assert_eq!(s.raw.clean_reuses, 1);
        // Deep use: through the canary page into the cold region.
        // SAFETY: inside the usable range.
        unsafe { ptr::write_bytes(lo as *mut u8, 7, top - lo) };
        assert_eq!(resident_pages(lo, top - warm), (size - warm) / page_size());
        drop(s);
        assert_eq!(resident_pages(lo, top - warm), 0);
        let s = Stack::new(size).unwrap();
        assert_eq!(s.raw.clean_reuses, 0);
        assert!(s.raw.canary_intact());
    }

    #[test]
    fn mprotect_guard_fallback() {
        // Force the pre-6.13 path (other tests running meanwhile just get
        // mprotect guards too, which is equally correct).
        let before = NO_GUARD_ADVICE.swap(true, Ordering::Relaxed);
        let raw = RawStack::map(24 * 1024).unwrap();
        NO_GUARD_ADVICE.store(before, Ordering::Relaxed);
        let guard_lo = raw.map_lo();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps
            .lines()
            .find(|l| {
                let range = l.split_whitespace().next().unwrap();
                let (a, b) = range.split_once('-').unwrap();
                let (a, b) = (
                    usize::from_str_radix(a, 16).unwrap(),
                    usize::from_str_radix(b, 16).unwrap(),
                );
                a <= guard_lo && guard_lo < b
            })
            .expect("guard page mapped");
        assert!(line.contains(" ---p "), "guard not PROT_NONE: {line}");
        raw.unmap();
    }

    #[test]
    fn thread_pool_overflows_to_global() {
        let size = 48 * 1024;
        let stacks: Vec<Stack> = (0..THREAD_POOL_CAP + 4)
            .map(|_| Stack::new(size).unwrap())
            .collect();
        let tops: Vec<usize> = stacks.iter().map(|s| s.bounds().1).collect();
        drop(stacks);
        let (local, global) = pooled_stacks();
        assert!(local >= THREAD_POOL_CAP.min(local));
        assert!(global >= 4 || local < THREAD_POOL_CAP, "{local} {global}");
        // Another thread finds some of them in the global pool.
        let top = std::thread::spawn(move || Stack::new(size).unwrap().bounds().1)
            .join()
            .unwrap();
        assert!(tops.contains(&top));
    }
}
