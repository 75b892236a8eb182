//! Per-thread alternate signal stacks and the guard-page overflow reporter.

use std::cell::{RefCell, UnsafeCell};
use std::io;
use std::mem::{self, MaybeUninit};
use std::ptr;
use std::sync::Once;

use crate::coroutine::current_bounds;
use crate::stack::page_size;

/// Size of the alternate signal stack `init_thread` installs: room for the
/// kernel's signal frame with a full XSAVE area (AVX-512: about 3.4 KB) plus a
/// handler that chains to others, with a wide margin.
pub const ALT_STACK_SIZE: usize = 64 * 1024;

/// The handlers that were installed for SIGSEGV and SIGBUS before ours.
struct OldActions(UnsafeCell<[MaybeUninit<libc::sigaction>; 2]>);

// SAFETY: written exactly once, inside `INSTALL.call_once`, before our handler
// is installed (so before any reader can run); read-only afterwards.
unsafe impl Sync for OldActions {}

static OLD_ACTIONS: OldActions = OldActions(UnsafeCell::new([MaybeUninit::uninit(); 2]));
static INSTALL: Once = Once::new();

const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// Installs the SIGSEGV/SIGBUS handler once per process.
pub(crate) fn install_overflow_handler() {
    if INSTALL.is_completed() {
        return;
    }
    INSTALL.call_once(|| {
        for (i, &sig) in SIGNALS.iter().enumerate() {
            // SAFETY: plain sigaction calls with valid pointers. The old
            // action is stored before ours goes in, so the handler always
            // finds it; OLD_ACTIONS is not read before this Once completes
            // except by the handler, which cannot run before the second call.
            unsafe {
                let slot = (*OLD_ACTIONS.0.get())[i].as_mut_ptr();
                if libc::sigaction(sig, ptr::null(), slot) != 0 {
                    // Keep a defined value: the default action.
                    ptr::write_bytes(slot, 0, 1);
                    (*slot).sa_sigaction = libc::SIG_DFL;
                }
                let mut new: libc::sigaction = mem::zeroed();
                new.sa_sigaction = overflow_handler as *const () as usize;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut new.sa_mask);
                libc::sigaction(sig, &new, ptr::null_mut());
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
    chain(sig, info, ctx);
}

/// Hands a fault that is not a coroutine overflow to whoever handled the
/// signal before us (for ordinary threads: Rust's own overflow reporter).
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let i = if sig == libc::SIGSEGV { 0 } else { 1 };
    // SAFETY: OLD_ACTIONS[i] was initialised before our handler was installed
    // (see install_overflow_handler) and is never written again.
    let old = unsafe { (*OLD_ACTIONS.0.get())[i].assume_init_ref() };
    let handler = old.sa_sigaction;
    if old.sa_flags & libc::SA_SIGINFO != 0 && handler != libc::SIG_DFL && handler != libc::SIG_IGN
    {
        // SAFETY: the previous owner installed this address as an SA_SIGINFO
        // handler, so it has this signature; we call it with the arguments
        // the kernel gave us, as the kernel would have.
        unsafe {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                mem::transmute(handler);
            f(sig, info, ctx);
        }
        return;
    }
    // A plain handler, or the default action: put it back in place with its
    // own flags and mask and return. A hardware fault then re-executes and
    // the kernel delivers it to that handler; a signal sent with kill(2) is
    // re-raised (it stays pending until we return). An ignored SIGSEGV or
    // SIGBUS would loop forever on a real fault: use the default instead.
    // SAFETY: sigaction/raise are async-signal-safe; `act` is a valid copy.
    unsafe {
        let mut act: libc::sigaction = ptr::read(old);
        if act.sa_sigaction == libc::SIG_IGN {
            act.sa_sigaction = libc::SIG_DFL;
        }
        libc::sigaction(sig, &act, ptr::null_mut());
        if (*info).si_code <= 0 {
            libc::raise(sig);
        }
    }
}

/// An alternate signal stack owned by one thread (`len == 0`: a big enough
/// one was already installed by someone else, and is not ours to free).
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
        let guard = page_size();
        // SAFETY: we only disable the alternate stack if it is still ours
        // (std may already have disabled it at thread exit), and only unmap
        // memory we mapped. Querying with a null new-stack is always valid.
        unsafe {
            let mut cur: libc::stack_t = mem::zeroed();
            if libc::sigaltstack(ptr::null(), &mut cur) == 0
                && cur.ss_sp as usize == self.map + guard
                && cur.ss_flags & libc::SS_ONSTACK == 0
            {
                let disable = libc::stack_t {
                    ss_sp: ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                };
                libc::sigaltstack(&disable, ptr::null_mut());
            } else if cur.ss_sp as usize == self.map + guard {
                // Still in use (we are on it): leak rather than unmap.
                return;
            }
            libc::munmap(self.map as *mut libc::c_void, self.len);
        }
    }
}

thread_local! {
    static ALT_STACK: RefCell<Option<AltStack>> = const { RefCell::new(None) };
}

fn install_alt_stack() -> io::Result<AltStack> {
    let guard = page_size();
    // The kernel's minimum can exceed ours on machines with huge register
    // files (AMX); keep a wide margin above it.
    // SAFETY: getauxval has no preconditions (0 if the entry is absent).
    let min = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
    let size = (ALT_STACK_SIZE.max(min * 4) + guard - 1) & !(guard - 1);
    let len = size + guard;
    // SAFETY: a fresh anonymous mapping; the guard page is the low end of it.
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

/// Per-thread set-up for threads that run coroutines.
///
/// Installs a 64 KiB alternate signal stack for the calling thread (mapped
/// with a guard page, freed when the thread exits; an enabled one of at
/// least that size that is already in place is kept), big enough for the
/// kernel's signal frame with full XSAVE state plus a handler, so signal
/// handlers never run on a small coroutine stack. Once per process, it also
/// installs the SIGSEGV/SIGBUS handler that reports a coroutine stack
/// overflow as `urgent: CPU task overflowed its 256 KiB stack; raise
/// Builder::stack_size` and aborts; any other fault goes to the previously
/// installed handler, so Rust's own "has overflowed its stack" report keeps
/// working for ordinary threads.
///
/// Idempotent. If called while running on an alternate signal stack, the
/// per-thread part is skipped.
///
/// ```
/// urgent_stackful::init_thread();
/// urgent_stackful::init_thread(); // no-op
/// ```
pub fn init_thread() {
    install_overflow_handler();
    let _ = ALT_STACK.try_with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_some() {
            return;
        }
        // SAFETY: querying the current alternate stack with valid pointers.
        let cur = unsafe {
            let mut cur: libc::stack_t = mem::zeroed();
            if libc::sigaltstack(ptr::null(), &mut cur) != 0 {
                cur.ss_flags = libc::SS_DISABLE;
            }
            cur
        };
        if cur.ss_flags & libc::SS_ONSTACK != 0 {
            return;
        }
        if cur.ss_flags & libc::SS_DISABLE == 0 && cur.ss_size >= ALT_STACK_SIZE {
            // Someone (e.g. the preempt crate) already gave this thread one
            // that is big enough: keep it.
            *slot = Some(AltStack { map: 0, len: 0 });
            return;
        }
        match install_alt_stack() {
            Ok(alt) => *slot = Some(alt),
            Err(e) => {
                // Not fatal: signals then use whatever stack they find.
                eprintln!("urgent: could not install an alternate signal stack: {e}");
            }
        }
    });
}

/// Whether `init_thread` has installed this thread's alternate signal stack.
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
    fn init_thread_keeps_a_big_enough_alt_stack() {
        std::thread::spawn(|| {
            let len = 2 * ALT_STACK_SIZE;
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
            assert!(cur.ss_size >= ALT_STACK_SIZE);
            assert_eq!(cur.ss_flags & libc::SS_DISABLE, 0);
            init_thread();
            assert!(thread_initialized());
        })
        .join()
        .unwrap();
    }
}
