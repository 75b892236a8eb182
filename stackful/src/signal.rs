//! The signal layer shared by urgent's crates: per-thread alternate signal
//! stacks, chaining to a previously installed handler, and the guard-page
//! overflow reporter (SIGSEGV/SIGBUS).
//!
//! # Who owns what
//!
//! - **Alternate stacks** belong to threads. [`ensure_alt_stack`] gives the
//!   calling thread one of at least [`alt_stack_size`] bytes (or keeps an
//!   enabled one that is already that big), remembers it in a thread-local
//!   and unmaps it at thread exit. Both handlers that can run on a coroutine
//!   thread use it: the overflow reporter here and preempt's SIGURG handler.
//! - **Previous handlers** are kept in a [`PrevAction`] per signal, written by
//!   [`install_handler`] before and right after our handler goes in (a
//!   leaked, never-freed copy published with a release store), read by the
//!   handler with [`chain`]. One function chains for every signal; what to do
//!   when the previous disposition is `SIG_DFL`/`SIG_IGN` depends on the
//!   signal and is the caller's choice ([`Chained`]).
//! - Everything reachable from a handler (`chain`, the overflow check) is
//!   async-signal-safe: atomics, const-initialised thread-locals, `write(2)`,
//!   `sigaction(2)`, `raise(3)`, `abort(3)`; no allocation, no lock.

use std::cell::RefCell;
use std::io;
use std::mem;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Once;

use crate::coroutine::current_bounds;
use crate::stack::page_size;

/// Stack budget for the handlers themselves, beyond the kernel's signal
/// frames: the overflow report needs a few hundred bytes, preempt's SIGURG
/// handler about 1 KiB today and, once it walks the interrupted stack with an
/// unwinder (register rows, a bounded frame loop), a few KiB more; a chained
/// foreign handler needs whatever it needs. 64 KiB leaves a wide margin for
/// all of them. The installed stack is larger: see [`alt_stack_size`].
pub const ALT_STACK_SIZE: usize = 64 * 1024;

/// Kernel signal-frame size assumed when `AT_MINSIGSTKSZ` is absent. Kernels
/// that do not report it (x86_64 before 5.14) predate AMX, so their largest
/// frame is the AVX-512 one, about 3.4 KB; 8 KiB covers it twice over.
const FALLBACK_FRAME: usize = 8 * 1024;

/// Size of the alternate signal stack [`ensure_alt_stack`] installs (and the
/// minimum size of one it keeps): [`ALT_STACK_SIZE`] for the handlers plus
/// room for **two** kernel signal frames, rounded up to whole pages.
///
/// The frame size is the kernel's `AT_MINSIGSTKSZ` (the signal frame with the
/// full XSAVE area of this CPU: about 3.5 KB with AVX-512, about 11 KB with
/// AMX), or 8 KiB where the kernel does not report it. Two frames, because a
/// fault inside a handler that runs on the alternate stack (e.g. a SIGSEGV
/// while the SIGURG handler walks a stack) nests its frame on the same
/// stack. On this kind of machine (AVX-512, no AMX) that gives 72 KiB.
pub fn alt_stack_size() -> usize {
    // SAFETY: getauxval has no preconditions (0 if the entry is absent).
    let reported = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
    let frame = if reported == 0 {
        FALLBACK_FRAME
    } else {
        reported
    };
    let page = page_size();
    (ALT_STACK_SIZE + 2 * frame + page - 1) & !(page - 1)
}

/// A signal handler with the `SA_SIGINFO` signature.
pub type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// The disposition a signal had before [`install_handler`] put ours in place.
///
/// Written by [`install_handler`] only (a leaked copy, published with a
/// release store, never freed, so a handler that loaded the pointer can read
/// it at any later time); read by [`chain`] from the handler.
pub struct PrevAction(AtomicPtr<libc::sigaction>);

impl PrevAction {
    /// No previous action recorded yet (treated as `SIG_DFL`).
    pub const fn new() -> PrevAction {
        PrevAction(AtomicPtr::new(ptr::null_mut()))
    }

    fn set(&self, act: libc::sigaction) {
        self.0
            .store(Box::into_raw(Box::new(act)), Ordering::Release);
    }

    /// The previous handler address (`SIG_DFL`, `SIG_IGN` or a function).
    pub fn handler(&self) -> libc::sighandler_t {
        let p = self.0.load(Ordering::Acquire);
        if p.is_null() {
            return libc::SIG_DFL;
        }
        // SAFETY: a non-null pointer comes from `set`: a leaked, never
        // freed, never written again allocation.
        unsafe { (*p).sa_sigaction }
    }
}

impl Default for PrevAction {
    fn default() -> Self {
        PrevAction::new()
    }
}

/// What [`chain`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chained {
    /// The previous handler was a function and has been called.
    Called,
    /// The previous disposition was `SIG_DFL` (nothing called).
    Default,
    /// The previous disposition was `SIG_IGN` (nothing called).
    Ignored,
}

/// Installs `handler` for `sig` with `SA_SIGINFO | SA_ONSTACK | extra_flags`
/// and an empty mask, recording the disposition it replaces in `prev` (read
/// first, so that a signal arriving right after ours goes in already finds
/// it; then overwritten with what was really replaced, in case someone raced
/// us). Call it once per signal and `prev` (e.g. under a `Once`).
pub fn install_handler(
    sig: libc::c_int,
    handler: Handler,
    extra_flags: libc::c_int,
    prev: &'static PrevAction,
) -> io::Result<()> {
    // SAFETY: plain sigaction calls with valid pointers to zero-initialised
    // (hence valid) structs; `handler` has the SA_SIGINFO signature.
    unsafe {
        let mut old: libc::sigaction = mem::zeroed();
        if libc::sigaction(sig, ptr::null(), &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        prev.set(old);
        let mut new: libc::sigaction = mem::zeroed();
        new.sa_sigaction = handler as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | extra_flags;
        libc::sigemptyset(&mut new.sa_mask);
        let mut replaced: libc::sigaction = mem::zeroed();
        if libc::sigaction(sig, &new, &mut replaced) != 0 {
            return Err(io::Error::last_os_error());
        }
        if replaced.sa_sigaction != old.sa_sigaction || replaced.sa_flags != old.sa_flags {
            prev.set(replaced);
        }
    }
    Ok(())
}

/// Whether `handler` is the disposition of `sig` right now (false if another
/// handler has replaced it since, or if the query fails). Not for use in a
/// signal handler (it is a system call, though an async-signal-safe one).
pub fn handler_installed(sig: libc::c_int, handler: Handler) -> bool {
    // SAFETY: querying the current action into a zero-initialised struct.
    unsafe {
        let mut cur: libc::sigaction = mem::zeroed();
        libc::sigaction(sig, ptr::null(), &mut cur) == 0
            && cur.sa_sigaction == handler as *const () as usize
    }
}

/// Calls the handler recorded in `prev` the way the kernel would have: with
/// all three arguments if it was installed with `SA_SIGINFO`, with the signal
/// number only otherwise. Returns [`Chained::Default`] or
/// [`Chained::Ignored`] without calling anything if the previous disposition
/// was not a function; what that means is the caller's business (for SIGURG
/// both mean "ignore"; for a hardware fault the default action must run).
///
/// Async-signal-safe.
///
/// # Safety
///
/// Call it only from the handler of `sig`, with the arguments the kernel
/// passed to it.
pub unsafe fn chain(
    prev: &PrevAction,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) -> Chained {
    let p = prev.0.load(Ordering::Acquire);
    if p.is_null() {
        return Chained::Default;
    }
    // SAFETY: a non-null pointer comes from `PrevAction::set`: a leaked,
    // never freed, never written again allocation.
    let old = unsafe { &*p };
    match old.sa_sigaction {
        libc::SIG_DFL => Chained::Default,
        libc::SIG_IGN => Chained::Ignored,
        h if old.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: the previous owner installed `h` with SA_SIGINFO, so it
            // is a three-argument handler; we pass the kernel's arguments
            // (caller's contract).
            let f: Handler = unsafe { mem::transmute::<usize, Handler>(h) };
            f(sig, info, ctx);
            Chained::Called
        }
        h => {
            // SAFETY: without SA_SIGINFO, `h` is a one-argument sa_handler.
            let f: extern "C" fn(libc::c_int) =
                unsafe { mem::transmute::<usize, extern "C" fn(libc::c_int)>(h) };
            f(sig);
            Chained::Called
        }
    }
}

/// The handlers that were installed for SIGSEGV and SIGBUS before ours.
static PREV_SEGV: PrevAction = PrevAction::new();
static PREV_BUS: PrevAction = PrevAction::new();
static INSTALL: Once = Once::new();

/// Installs the SIGSEGV/SIGBUS handler once per process.
pub(crate) fn install_overflow_handler() {
    if INSTALL.is_completed() {
        return;
    }
    INSTALL.call_once(|| {
        for (sig, prev) in [(libc::SIGSEGV, &PREV_SEGV), (libc::SIGBUS, &PREV_BUS)] {
            if let Err(e) = install_handler(sig, overflow_handler, 0, prev) {
                // Not fatal: overflows are then reported by whoever handles
                // the signal (a plain SIGSEGV at worst).
                eprintln!("urgent: could not install the stack overflow reporter: {e}");
            }
        }
    });
}

/// Formats the overflow message into `buf` without allocating; returns its
/// length.
fn format_message(buf: &mut [u8; 128], size: usize) -> usize {
    const HEAD: &[u8] = b"urgent: CPU task overflowed its ";
    const TAIL: &[u8] = b" KiB stack; raise Builder::stack_size\n";
    let mut n = 0;
    buf[..HEAD.len()].copy_from_slice(HEAD);
    n += HEAD.len();
    let mut digits = [0u8; 20];
    let mut d = 0;
    let mut v = size / 1024;
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        buf[n] = digits[d];
        n += 1;
    }
    buf[n..n + TAIL.len()].copy_from_slice(TAIL);
    n + TAIL.len()
}

/// SIGSEGV/SIGBUS handler. Async-signal-safe: reads a const-initialised
/// thread-local, formats into a stack buffer, `write(2)`, `abort(3)`.
extern "C" fn overflow_handler(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some((guard_lo, stack_lo, top)) = current_bounds() {
        if addr >= guard_lo && addr < stack_lo {
            let mut buf = [0u8; 128];
            let n = format_message(&mut buf, top - stack_lo);
            // SAFETY: write(2) and abort(3) are async-signal-safe; buf holds
            // n initialised bytes.
            unsafe {
                libc::write(2, buf.as_ptr().cast(), n);
                libc::abort();
            }
        }
    }
    // Not a coroutine overflow: hand it to whoever handled the signal before
    // us (for ordinary threads: Rust's own overflow reporter).
    let prev = if sig == libc::SIGSEGV {
        &PREV_SEGV
    } else {
        &PREV_BUS
    };
    // SAFETY: we are the handler of `sig` and pass the kernel's arguments.
    if unsafe { chain(prev, sig, info, ctx) } == Chained::Called {
        return;
    }
    // The default action (an ignored SIGSEGV or SIGBUS would loop forever on
    // a real fault: use the default instead): put it in place and return. A
    // hardware fault then re-executes and kills the process the usual way; a
    // signal sent with kill(2) is re-raised (it stays pending until we
    // return).
    // SAFETY: sigaction/raise are async-signal-safe; `act` is a valid,
    // zero-initialised action with SIG_DFL; `info` is the kernel's siginfo.
    unsafe {
        let mut act: libc::sigaction = mem::zeroed();
        act.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &act, ptr::null_mut());
        if (*info).si_code <= 0 {
            libc::raise(sig);
        }
    }
}

/// An alternate signal stack registered for one thread (`len == 0`: an
/// enabled, big enough one that someone else installed, kept and not ours to
/// free).
struct AltStack {
    /// Start of the mapping (a guard page, then the stack).
    map: usize,
    len: usize,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        let ours = self.map + page_size();
        // SAFETY: we only disable the alternate stack if it is still ours
        // (std may already have disabled it at thread exit, or a newer one of
        // ours replaced it), and only unmap memory we mapped. Querying with a
        // null new-stack is always valid.
        unsafe {
            let mut cur: libc::stack_t = mem::zeroed();
            let queried = libc::sigaltstack(ptr::null(), &mut cur) == 0;
            if queried && cur.ss_sp as usize == ours && cur.ss_flags & libc::SS_DISABLE == 0 {
                if cur.ss_flags & libc::SS_ONSTACK != 0 {
                    // Still in use (we are on it): leak rather than unmap.
                    return;
                }
                let disable = libc::stack_t {
                    ss_sp: ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                };
                libc::sigaltstack(&disable, ptr::null_mut());
            } else if !queried {
                return; // Cannot tell whether it is in use: leak.
            }
            libc::munmap(self.map as *mut libc::c_void, self.len);
        }
    }
}

thread_local! {
    static ALT_STACK: RefCell<Option<AltStack>> = const { RefCell::new(None) };
}

/// Maps a stack of `size` bytes with a guard page below it and registers it
/// as the calling thread's alternate signal stack.
fn map_alt_stack(size: usize) -> io::Result<AltStack> {
    let guard = page_size();
    let len = size + guard;
    // SAFETY: a fresh anonymous mapping; the guard page is the low end of it;
    // the stack_t describes the rest, which stays mapped until `AltStack`
    // drops (which unregisters it first).
    unsafe {
        let map = libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        );
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Not yet registered: dropping it on an error path only unmaps.
        let alt = AltStack {
            map: map as usize,
            len,
        };
        if libc::mprotect(map, guard, libc::PROT_NONE) != 0 {
            return Err(io::Error::last_os_error());
        }
        let st = libc::stack_t {
            ss_sp: (map as usize + guard) as *mut libc::c_void,
            ss_flags: 0,
            ss_size: size,
        };
        if libc::sigaltstack(&st, ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(alt)
    }
}

/// Makes sure the calling thread has an alternate signal stack of at least
/// [`alt_stack_size`] bytes, so that the kernel's signal frame and the
/// handlers never run on a small coroutine stack.
///
/// Keeps an enabled alternate stack that is already big enough (whoever
/// installed it); replaces a smaller one (std gives its threads a few pages)
/// with one mapped here, with a guard page, unmapped at thread exit.
/// Idempotent and cheap once done.
///
/// Errors: the thread is running on its alternate stack (it cannot be
/// replaced then), the thread is exiting, or the OS refused the mapping.
pub fn ensure_alt_stack() -> io::Result<()> {
    let need = alt_stack_size();
    ALT_STACK
        .try_with(|slot| {
            // SAFETY: querying the current alternate stack into a zeroed
            // struct.
            let cur = unsafe {
                let mut cur: libc::stack_t = mem::zeroed();
                if libc::sigaltstack(ptr::null(), &mut cur) != 0 {
                    return Err(io::Error::last_os_error());
                }
                cur
            };
            if cur.ss_flags & libc::SS_DISABLE == 0 && cur.ss_size >= need {
                let mut slot = slot.borrow_mut();
                if slot.is_none() {
                    // Someone else's, big enough: keep it.
                    *slot = Some(AltStack { map: 0, len: 0 });
                }
                return Ok(());
            }
            if cur.ss_flags & libc::SS_ONSTACK != 0 {
                return Err(io::Error::other(
                    "running on the alternate signal stack: cannot replace it",
                ));
            }
            let alt = map_alt_stack(need)?;
            // Dropping a previous stack of ours (no longer the active one)
            // unmaps it.
            *slot.borrow_mut() = Some(alt);
            Ok(())
        })
        .unwrap_or_else(|_| Err(io::Error::other("the thread is exiting")))
}

/// Per-thread set-up for threads that run coroutines.
///
/// Installs an alternate signal stack for the calling thread
/// ([`ensure_alt_stack`]: [`alt_stack_size`] bytes, mapped with a guard page,
/// freed when the thread exits; an enabled one of at least that size that is
/// already in place is kept), so signal handlers never run on a small
/// coroutine stack. Once per process, it also installs the SIGSEGV/SIGBUS
/// handler that reports a coroutine stack overflow as `urgent: CPU task
/// overflowed its 256 KiB stack; raise Builder::stack_size` and aborts; any
/// other fault goes to the previously installed handler, so Rust's own "has
/// overflowed its stack" report keeps working for ordinary threads.
///
/// Idempotent. If called while running on an alternate signal stack, the
/// per-thread part is skipped; other failures are reported on stderr (not
/// fatal: signals then use whatever stack they find).
///
/// ```
/// urgent_stackful::init_thread();
/// urgent_stackful::init_thread(); // no-op
/// ```
pub fn init_thread() {
    install_overflow_handler();
    if let Err(e) = ensure_alt_stack() {
        if !on_alt_stack() {
            eprintln!("urgent: could not install an alternate signal stack: {e}");
        }
    }
}

/// Whether the calling thread runs on its alternate signal stack.
fn on_alt_stack() -> bool {
    // SAFETY: querying the current alternate stack into a zeroed struct.
    unsafe {
        let mut cur: libc::stack_t = mem::zeroed();
        libc::sigaltstack(ptr::null(), &mut cur) == 0 && cur.ss_flags & libc::SS_ONSTACK != 0
    }
}

/// Whether [`init_thread`] (or [`ensure_alt_stack`]) has given this thread
/// its alternate signal stack.
pub fn thread_initialized() -> bool {
    ALT_STACK
        .try_with(|s| s.borrow().is_some())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_format() {
        let mut buf = [0u8; 128];
        let n = format_message(&mut buf, 256 * 1024);
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            "urgent: CPU task overflowed its 256 KiB stack; raise Builder::stack_size\n"
        );
        let n = format_message(&mut buf, 1 << 30);
        assert!(std::str::from_utf8(&buf[..n])
            .unwrap()
            .contains(" 1048576 KiB "));
    }

    #[test]
    fn alt_stack_size_covers_handlers_and_two_kernel_frames() {
        let size = alt_stack_size();
        // SAFETY: getauxval has no preconditions.
        let frame = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
        assert!(
            size >= ALT_STACK_SIZE + 2 * frame,
            "{size} vs frame {frame}"
        );
        assert_eq!(size % page_size(), 0);
        assert!(size <= ALT_STACK_SIZE + 2 * frame.max(FALLBACK_FRAME) + page_size());
    }

    #[test]
    fn init_thread_keeps_a_big_enough_alt_stack() {
        std::thread::spawn(|| {
            let len = 2 * alt_stack_size();
            // SAFETY: a fresh anonymous mapping, installed as this thread's
            // alternate stack, disabled and unmapped before the thread ends.
            unsafe {
                let map = libc::mmap(
                    ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                assert_ne!(map, libc::MAP_FAILED);
                let st = libc::stack_t {
                    ss_sp: map,
                    ss_flags: 0,
                    ss_size: len,
                };
                assert_eq!(libc::sigaltstack(&st, ptr::null_mut()), 0);
                init_thread();
                assert!(thread_initialized());
                let mut cur: libc::stack_t = mem::zeroed();
                assert_eq!(libc::sigaltstack(ptr::null(), &mut cur), 0);
                assert_eq!(cur.ss_sp, map, "init_thread replaced a big enough stack");
                let off = libc::stack_t {
                    ss_sp: ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                };
                libc::sigaltstack(&off, ptr::null_mut());
                libc::munmap(map, len);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn init_thread_installs_alt_stack() {
        std::thread::spawn(|| {
            init_thread();
            assert!(thread_initialized());
            // SAFETY: query only.
            let cur = unsafe {
                let mut cur: libc::stack_t = mem::zeroed();
                assert_eq!(libc::sigaltstack(ptr::null(), &mut cur), 0);
                cur
            };
            assert!(cur.ss_size >= alt_stack_size());
            assert_eq!(cur.ss_flags & libc::SS_DISABLE, 0);
            init_thread();
            assert!(thread_initialized());
            ensure_alt_stack().unwrap(); // idempotent
                                         // SAFETY: query only.
            let again = unsafe {
                let mut again: libc::stack_t = mem::zeroed();
                assert_eq!(libc::sigaltstack(ptr::null(), &mut again), 0);
                again
            };
            assert_eq!(again.ss_sp, cur.ss_sp, "the stack was kept");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn ensure_alt_stack_replaces_a_small_one() {
        std::thread::spawn(|| {
            let small = 16 * 1024;
            let mut buf = vec![0u8; small];
            let st = libc::stack_t {
                ss_sp: buf.as_mut_ptr().cast(),
                ss_flags: 0,
                ss_size: small,
            };
            // SAFETY: `buf` outlives its registration (replaced below, before
            // `buf` drops); query only otherwise.
            unsafe { assert_eq!(libc::sigaltstack(&st, ptr::null_mut()), 0) };
            ensure_alt_stack().unwrap();
            // SAFETY: query only.
            let cur = unsafe {
                let mut cur: libc::stack_t = mem::zeroed();
                assert_eq!(libc::sigaltstack(ptr::null(), &mut cur), 0);
                cur
            };
            assert_ne!(cur.ss_sp, buf.as_mut_ptr().cast());
            assert!(cur.ss_size >= alt_stack_size());
            drop(buf);
        })
        .join()
        .unwrap();
    }
}
