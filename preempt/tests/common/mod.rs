//! Helpers shared by the preemption tests: a fake "coroutine" (the test
//! thread's own stack), a hook that clobbers registers and simulates
//! suspend/resume, and call-free workloads.
#![allow(dead_code)]

use std::arch::asm;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use urgent_preempt::{PreemptMetrics, Preemptor, Slot};
use urgent_stackful::sync::lock;

/// Serialises CPU-heavy tests (2 shared cores).
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    lock(&SERIAL)
}

thread_local! {
    static CTX: Cell<(*const Slot, usize, usize)> = const { Cell::new((std::ptr::null(), 0, 0)) };
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

pub static TOTAL_HOOK_CALLS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// When set, the next hook call on this thread records a backtrace.
    pub static CAPTURE_BACKTRACE: Cell<bool> = const { Cell::new(false) };
}

/// Backtrace captured inside the hook (see `CAPTURE_BACKTRACE`).
pub static CAPTURED: Mutex<Option<String>> = Mutex::new(None);

/// Usable bounds of the current thread's stack (64 KiB kept clear above the
/// guard).
pub fn own_stack_bounds() -> (usize, usize) {
    // SAFETY: pthread_getattr_np on the current thread fills `attr`, which
    // we destroy after reading the stack address and size.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        assert_eq!(libc::pthread_attr_getstack(&attr, &mut addr, &mut size), 0);
        libc::pthread_attr_destroy(&mut attr);
        (addr as usize + 64 * 1024, addr as usize + size)
    }
}

/// The test hook: clobbers caller-saved GPRs, flags and (with AVX) every
/// YMM register, then simulates "suspend, worker schedules, resume" on the
/// slot of this thread.
pub fn hook() {
    CALLS.with(|c| c.set(c.get() + 1));
    TOTAL_HOOK_CALLS.fetch_add(1, Ordering::Relaxed);
    if CAPTURE_BACKTRACE.with(|c| c.replace(false)) {
        let bt = std::backtrace::Backtrace::force_capture().to_string();
        *lock(&CAPTURED) = Some(bt);
    }
    // The executor's suspend path may allocate: so does the test hook.
    std::hint::black_box(Box::new([0u8; 48]));
    clobber();
    let (slot, lo, hi) = CTX.with(|c| c.get());
    if !slot.is_null() {
        // SAFETY: set by `run_on_slot`, which keeps the Arc alive meanwhile.
        let slot = unsafe { &*slot };
        slot.coroutine_stopped();
        slot.coroutine_started(lo, hi);
    }
}

#[inline(never)]
pub fn clobber() {
    // SAFETY: only writes registers declared clobbered by clobber_abi.
    unsafe {
        asm!(
            "mov rax, -1",
            "mov rcx, -1",
            "mov rdx, -1",
            "mov rsi, -1",
            "mov rdi, -1",
            "mov r8, -1",
            "mov r9, -1",
            "mov r10, -1",
            "mov r11, -1",
            "xorps xmm0, xmm0",
            "pcmpeqd xmm1, xmm1",
            "pcmpeqd xmm15, xmm15",
            "cmp rax, rcx",
            clobber_abi("C"),
        );
    }
    if std::is_x86_feature_detected!("avx") {
        // SAFETY: AVX was detected.
        unsafe { clobber_avx() };
    }
}

#[target_feature(enable = "avx")]
unsafe fn clobber_avx() {
    // SAFETY: vzeroall zeroes ymm0-15, all declared clobbered.
    unsafe { asm!("vzeroall", clobber_abi("C")) };
}

/// Runs `f` on a fresh thread registered with `p.slot(idx)`, between
/// `coroutine_started` (bounds: the thread's own stack) and
/// `coroutine_stopped`. Returns f's result, the slot's metrics and the
/// number of hook calls on that thread.
pub fn run_on_slot<R: Send + 'static>(
    p: &Preemptor,
    idx: usize,
    f: impl FnOnce(&Arc<Slot>) -> R + Send + 'static,
) -> (R, PreemptMetrics, u64) {
    run_with_slot(p.slot(idx), f)
}

/// [`run_on_slot`] with a given slot (e.g. one from `Preemptor::add_slot`).
pub fn run_with_slot<R: Send + 'static>(
    slot: Arc<Slot>,
    f: impl FnOnce(&Arc<Slot>) -> R + Send + 'static,
) -> (R, PreemptMetrics, u64) {
    let before = slot.metrics();
    let theirs = slot.clone();
    let t = std::thread::Builder::new()
        .stack_size(4 << 20)
        .spawn(move || {
            let slot = theirs;
            slot.register_current_thread();
            let (lo, hi) = own_stack_bounds();
            CTX.with(|c| c.set((Arc::as_ptr(&slot), lo, hi)));
            CALLS.with(|c| c.set(0));
            slot.coroutine_started(lo, hi);
            let r = f(&slot);
            slot.coroutine_stopped();
            CTX.with(|c| c.set((std::ptr::null(), 0, 0)));
            (r, CALLS.with(|c| c.get()))
        })
        .unwrap();
    let (r, calls) = t.join().unwrap();
    let after = slot.metrics();
    let m = PreemptMetrics {
        preempt_requests: after.preempt_requests - before.preempt_requests,
        preemptions: after.preemptions - before.preemptions,
        preempt_declined: after.preempt_declined - before.preempt_declined,
        long_polls: after.long_polls - before.long_polls,
        unacknowledged_signals: after.unacknowledged_signals - before.unacknowledged_signals,
        declines: after.declines,
    };
    (r, m, calls)
}

/// Call-free integer + f64 loop (no iterator, no wrapping_* calls, so even
/// a debug build keeps it inside this function).
#[inline(never)]
pub fn int_f64_work(iters: u64) -> (u64, u64) {
    let mut x: u64 = 88172645463325252 % 1_000_000_007;
    let mut f: f64 = 1.0;
    let mut i: u64 = 0;
    while i < iters {
        x = (x * 48271 + i) % 2_147_483_647;
        f = f * 0.999_999_9 + (x & 0xff) as f64 * 1e-9;
        i += 1;
    }
    (x, f.to_bits())
}

/// Register-heavy loop written in assembly: 9 GPRs, RFLAGS live between
/// `add` and `adc`, and 8 XMM registers, all kept in registers for the
/// whole loop.
#[inline(never)]
pub fn asm_gpr_work(iters: u64) -> [u64; 17] {
    let (mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h, mut k) =
        (1u64, 2u64, 3u64, 4u64, 5u64, 6u64, 7u64, 8u64, 9u64);
    let (mut x0, mut x1, mut x2, mut x3, mut x4, mut x5, mut x6, mut x7) = (
        1.0f64,
        0.999_999f64,
        1e-7f64,
        2.0f64,
        0.5f64,
        1.000_001f64,
        3.0f64,
        1e-9f64,
    );
    // SAFETY: pure register arithmetic on the declared operands.
    unsafe {
        asm!(
            "2:",
            "add {a}, {b}",
            "adc {c}, {a}",
            "rol {c}, 7",
            "xor {b}, {c}",
            "imul {d}, {a}",
            "add {d}, 1",
            "add {e}, {d}",
            "adc {f}, {e}",
            "sub {g}, {f}",
            "ror {h}, 3",
            "xor {h}, {g}",
            "lea {k}, [{k} + {h}*2 + 1]",
            "mulsd {x0}, {x1}",
            "addsd {x0}, {x2}",
            "mulsd {x3}, {x5}",
            "mulsd {x3}, {x4}",
            "addsd {x3}, {x4}",
            "addsd {x6}, {x7}",
            "subsd {x6}, {x2}",
            "dec {n}",
            "jnz 2b",
            a = inout(reg) a, b = inout(reg) b, c = inout(reg) c, d = inout(reg) d,
            e = inout(reg) e, f = inout(reg) f, g = inout(reg) g, h = inout(reg) h,
            k = inout(reg) k, n = inout(reg) iters => _,
            x0 = inout(xmm_reg) x0, x1 = inout(xmm_reg) x1, x2 = inout(xmm_reg) x2,
            x3 = inout(xmm_reg) x3, x4 = inout(xmm_reg) x4, x5 = inout(xmm_reg) x5,
            x6 = inout(xmm_reg) x6, x7 = inout(xmm_reg) x7,
            options(nomem, nostack),
        );
    }
    [
        a,
        b,
        c,
        d,
        e,
        f,
        g,
        h,
        k,
        x0.to_bits(),
        x1.to_bits(),
        x2.to_bits(),
        x3.to_bits(),
        x4.to_bits(),
        x5.to_bits(),
        x6.to_bits(),
        x7.to_bits(),
    ]
}

/// AVX2/FMA loop over all sixteen YMM registers (must only be called when
/// `avx2` and `fma` are detected).
#[inline(never)]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn avx_fma_work(iters: u64) -> [u64; 64] {
    let mut buf = [0f64; 64];
    for (i, v) in buf.iter_mut().enumerate() {
        *v = if i < 32 {
            1.0 + i as f64 * 0.01
        } else {
            0.999_99 - (i - 32) as f64 * 1e-7
        };
    }
    // SAFETY: loads and stores 16 x 32 bytes inside `buf`; all YMM registers
    // used are declared clobbered.
    unsafe {
        asm!(
            "vmovupd ymm0, [{p}]", "vmovupd ymm1, [{p} + 32]", "vmovupd ymm2, [{p} + 64]",
            "vmovupd ymm3, [{p} + 96]", "vmovupd ymm4, [{p} + 128]", "vmovupd ymm5, [{p} + 160]",
            "vmovupd ymm6, [{p} + 192]", "vmovupd ymm7, [{p} + 224]",
            "vmovupd ymm8, [{p} + 256]", "vmovupd ymm9, [{p} + 288]", "vmovupd ymm10, [{p} + 320]",
            "vmovupd ymm11, [{p} + 352]", "vmovupd ymm12, [{p} + 384]", "vmovupd ymm13, [{p} + 416]",
            "vmovupd ymm14, [{p} + 448]", "vmovupd ymm15, [{p} + 480]",
            "2:",
            "vfmadd213pd ymm0, ymm8, ymm9",
            "vfmadd213pd ymm1, ymm9, ymm10",
            "vfmadd213pd ymm2, ymm10, ymm11",
            "vfmadd213pd ymm3, ymm11, ymm12",
            "vfmadd213pd ymm4, ymm12, ymm13",
            "vfmadd213pd ymm5, ymm13, ymm14",
            "vfmadd213pd ymm6, ymm14, ymm15",
            "vfmadd213pd ymm7, ymm15, ymm8",
            "vpaddq ymm15, ymm15, ymm15",
            "vpsubq ymm15, ymm15, ymm8",
            "vpaddq ymm15, ymm15, ymm8",
            "vpsrlq ymm15, ymm15, 1",
            "dec {n}",
            "jnz 2b",
            "vmovupd [{p}], ymm0", "vmovupd [{p} + 32], ymm1", "vmovupd [{p} + 64], ymm2",
            "vmovupd [{p} + 96], ymm3", "vmovupd [{p} + 128], ymm4", "vmovupd [{p} + 160], ymm5",
            "vmovupd [{p} + 192], ymm6", "vmovupd [{p} + 224], ymm7",
            "vmovupd [{p} + 256], ymm8", "vmovupd [{p} + 288], ymm9", "vmovupd [{p} + 320], ymm10",
            "vmovupd [{p} + 352], ymm11", "vmovupd [{p} + 384], ymm12", "vmovupd [{p} + 416], ymm13",
            "vmovupd [{p} + 448], ymm14", "vmovupd [{p} + 480], ymm15",
            p = in(reg) buf.as_mut_ptr(),
            n = inout(reg) iters => _,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
            out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            options(nostack),
        );
    }
    buf.map(f64::to_bits)
}

/// Spins (call-free) for about `ms` milliseconds, checking the clock only
/// every few million iterations.
#[inline(never)]
pub fn spin_for_ms(ms: u64) -> u64 {
    let end = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    let mut acc = 0u64;
    loop {
        let (x, _) = int_f64_work(200_000);
        acc ^= x;
        if std::time::Instant::now() >= end {
            return acc;
        }
    }
}

/// Waits (up to 10 s) until `cond` holds.
pub fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    cond()
}
