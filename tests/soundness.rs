//! Fixes from a review of the unsafe core (issue 12): a preempted task's
//! stack is never reused after an abort, floating-point control modes stay
//! with the task that set them, and stack sizes too small for the
//! preemption trampoline are refused.
//!
//! Scenarios that crash the process when they fail run in a child process.

mod support;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{guard, rt};

fn async_preempt_available() -> bool {
    let ok = cfg!(all(target_arch = "x86_64", target_os = "linux"))
        && std::env::var("URGENT_ASYNC_PREEMPT").as_deref() != Ok("0");
    if !ok {
        eprintln!("async preemption unavailable here: test skipped");
    }
    ok
}

const Q100: Duration = Duration::from_micros(100);

// ---------------------------------------------------------------------------
// 1. The stack of an aborted, preempted task.

/// Waits until the runtime has preempted something `n` more times.
fn wait_for_preemptions(rt: &urgent::Runtime, n: u64) {
    let start = rt.metrics().preemptions();
    let deadline = Instant::now() + Duration::from_secs(30);
    while rt.metrics().preemptions() < start + n {
        assert!(
            Instant::now() < deadline,
            "no preemption within 30 s: {:?}",
            rt.metrics()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Spins until preempted for good. Out of line so that the interrupted PC
/// is in this test's code, not inlined into `std::thread::scope` (whose code
/// is never preempted).
#[inline(never)]
fn spin_forever() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Fills a 2 KiB frame per level with a pattern, then checks it for `for_`,
/// recursing `depth` levels (so return addresses and saved registers sit
/// between the arrays). Returns how many words were found changed.
#[inline(never)]
fn check_own_stack(depth: u64, for_: Duration) -> u64 {
    let mut a = [0u64; 256];
    for (i, x) in a.iter_mut().enumerate() {
        *x = (i as u64) ^ (depth << 32) ^ 0x5555_0000_5555_0000;
    }
    let mut bad = if depth > 0 {
        check_own_stack(depth - 1, for_)
    } else {
        let end = Instant::now() + for_;
        while Instant::now() < end {
            std::hint::spin_loop();
        }
        0
    };
    black_box(&mut a);
    for (i, x) in a.iter().enumerate() {
        if *x != (i as u64) ^ (depth << 32) ^ 0x5555_0000_5555_0000 {
            bad += 1;
        }
    }
    bad
}

/// A CPU task that lends an array on its stack to a scoped thread (which
/// keeps writing into it) and then spins until it is preempted and aborted.
/// The next CPU task on the worker must not get that stack: the scoped
/// thread would write into its frames (corrupted data, or a crash when a
/// return address is hit; both were seen before the fix).
#[test]
fn aborted_preempted_task_stack_is_not_reused_scoped_thread() {
    if !async_preempt_available() {
        return;
    }
    if !support::is_child() {
        support::run_in_child(
            "aborted_preempted_task_stack_is_not_reused_scoped_thread",
            &[],
        );
        return;
    }
    guard(|| {
        let rt = rt(1, Q100);
        let writing = Arc::new(AtomicBool::new(false));
        let w = writing.clone();
        let h = rt.spawn_cpu(move || {
            let mut lent = [0u64; 2048];
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut n = 0u64;
                    loop {
                        for x in lent.iter_mut() {
                            *x = n;
                        }
                        n = n.wrapping_add(1);
                        black_box(&mut lent);
                        w.store(true, Relaxed);
                    }
                });
                spin_forever()
            })
        });
        while !writing.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
        }
        wait_for_preemptions(&rt, 3);
        // Aborted from a future on the worker: the task is dropped there, so
        // its stack would go to that worker's pool, first in line.
        let err = rt
            .block_on(rt.spawn(async move {
                h.abort();
                h.await
            }))
            .unwrap()
            .unwrap_err();
        assert!(err.is_cancelled());
        assert_eq!(urgent_stackful::leaked_stacks(), 1);
        let bad = rt
            .block_on(rt.spawn_cpu(|| check_own_stack(12, Duration::from_millis(50))))
            .unwrap();
        assert_eq!(bad, 0, "the next task's stack was written by someone else");
    });
}

/// The same with an intrusive waiter: a `spawn_preemptible` future enables a
/// `tokio::sync::Notify` waiter pinned on the coroutine's stack (the Notify
/// links it into its list) and spins until it is preempted and aborted. The
/// waiter can never be unlinked (no destructor runs on a preempted stack), so
/// `notify_waiters` later walks into that stack: it must still be the dead
/// task's memory, not the frames of the next task.
#[test]
fn aborted_preempted_task_stack_is_not_reused_intrusive_waiter() {
    if !async_preempt_available() {
        return;
    }
    if !support::is_child() {
        support::run_in_child(
            "aborted_preempted_task_stack_is_not_reused_intrusive_waiter",
            &[],
        );
        return;
    }
    guard(|| {
        let rt = rt(1, Q100);
        let notify = Arc::new(tokio::sync::Notify::new());
        let enabled = Arc::new(AtomicBool::new(false));
        let (n, e) = (notify.clone(), enabled.clone());
        let h = rt.spawn_preemptible(async move {
            let waiter = n.notified();
            let mut waiter = std::pin::pin!(waiter);
            waiter.as_mut().enable();
            e.store(true, Relaxed);
            let mut i = 0u64;
            loop {
                i = black_box(i.wrapping_add(1));
            }
        });
        while !enabled.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
        }
        wait_for_preemptions(&rt, 3);
        let err = rt
            .block_on(rt.spawn(async move {
                h.abort();
                h.await
            }))
            .unwrap()
            .unwrap_err();
        assert!(err.is_cancelled());
        assert_eq!(urgent_stackful::leaked_stacks(), 1);
        let n = notify.clone();
        let bad = rt
            .block_on(rt.spawn_cpu(move || {
                // Fill the top of the stack, let the Notify walk its list
                // (it writes into every waiter it finds) and check.
                fn fill_notify_check(depth: u64, n: &tokio::sync::Notify) -> u64 {
                    let mut a = [0u64; 256];
                    for (i, x) in a.iter_mut().enumerate() {
                        *x = !(i as u64 ^ depth);
                    }
                    black_box(&mut a);
                    let mut bad = if depth > 0 {
                        fill_notify_check(depth - 1, n)
                    } else {
                        n.notify_waiters();
                        0
                    };
                    black_box(&mut a);
                    for (i, x) in a.iter().enumerate() {
                        if *x != !(i as u64 ^ depth) {
                            bad += 1;
                        }
                    }
                    bad
                }
                fill_notify_check(12, &n)
            }))
            .unwrap();
        assert_eq!(bad, 0, "the next task's stack was written by the Notify");
    });
}

// ---------------------------------------------------------------------------
// 2. Floating-point control modes stay with the task that set them.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod fp {
    use std::hint::black_box;

    extern "C" {
        // glibc's <fenv.h> (libm, which std links): fesetround sets the
        // rounding mode of both the x87 unit and SSE (MXCSR); fegetenv
        // stores the x87 control word in the first 16 bits of its fenv_t
        // (32 bytes on x86_64).
        fn fesetround(round: libc::c_int) -> libc::c_int;
        fn fegetenv(env: *mut u32) -> libc::c_int;
    }
    const FE_TOWARDZERO: libc::c_int = 0xc00;

    /// MXCSR control bits (exception flags masked off) and the x87 control
    /// word of a thread that never changed them.
    pub const DEFAULT: (u32, u16) = (0x1f80, 0x037f);
    /// After [`set_ftz_rz`]: flush-to-zero and round-toward-zero in MXCSR,
    /// round-toward-zero in the x87 control word.
    pub const FTZ_RZ: (u32, u16) = (0xff80, 0x0f7f);

    /// The calling thread's floating-point control modes.
    #[allow(deprecated)] // _mm_getcsr: the intrinsic is what we test with
    pub fn modes() -> (u32, u16) {
        // SAFETY: SSE is baseline on x86_64; reading MXCSR has no effect.
        let mxcsr = unsafe { std::arch::x86_64::_mm_getcsr() } & 0xffc0;
        let mut env = [0u32; 8];
        // SAFETY: `env` is a 32-byte buffer, the size of glibc's fenv_t.
        assert_eq!(unsafe { fegetenv(env.as_mut_ptr()) }, 0);
        (mxcsr, env[0] as u16)
    }

    /// Sets flush-to-zero and round-toward-zero (SSE), round-toward-zero
    /// (x87) on the calling thread.
    #[allow(deprecated)] // _mm_setcsr
    pub fn set_ftz_rz() {
        // SAFETY: valid rounding constant; the MXCSR value sets only defined
        // bits (masks, RC, FTZ). Code that assumes the default modes only
        // computes different (still defined) floating-point results.
        unsafe {
            assert_eq!(fesetround(FE_TOWARDZERO), 0);
            std::arch::x86_64::_mm_setcsr(FTZ_RZ.0);
        }
        assert_eq!(modes(), FTZ_RZ);
    }

    /// Floating-point work whose bits depend on the rounding mode (divisions)
    /// and on flush-to-zero (subnormal products).
    #[inline(never)]
    pub fn chunk(seed: u64) -> u64 {
        let mut h = 0u64;
        let mut x = black_box(1.0f64 + seed as f64);
        let tiny = black_box(f64::MIN_POSITIVE);
        for i in 0..2000u64 {
            x = x / 3.0 + 1.0;
            let d = tiny * (0.25 + (i % 5) as f64 * 0.1);
            h = h.rotate_left(5) ^ x.to_bits() ^ d.to_bits();
        }
        h
    }

    /// `chunk(0..n)` computed on a fresh thread, with FTZ/RZ if `ftz_rz`.
    pub fn reference(n: u64, ftz_rz: bool) -> Vec<u64> {
        std::thread::spawn(move || {
            if ftz_rz {
                set_ftz_rz();
            } else {
                assert_eq!(modes(), DEFAULT);
            }
            (0..n).map(chunk).collect()
        })
        .join()
        .unwrap()
    }
}

/// One worker runs a CPU task that sets FTZ/RZ, one that keeps the default
/// modes, and a plain future; each checks its own modes and bit-exact
/// results after every chunk of work, until both CPU tasks have been
/// switched out `min_switches` times. `cooperative`: the CPU tasks switch at
/// `checkpoint` and `wait` (run with async preemption off); otherwise only
/// async preemption switches them.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn fp_modes_stay_with_their_task(cooperative: bool) {
    use std::sync::atomic::AtomicU64;
    const CHUNKS: u64 = 16;
    let want_rz = Arc::new(fp::reference(CHUNKS, true));
    let want_default = Arc::new(fp::reference(CHUNKS, false));
    assert_ne!(
        want_rz, want_default,
        "the work does not depend on the modes"
    );

    let rt = rt(1, Q100);
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_task = |ftz_rz: bool, progress: Arc<AtomicU64>| {
        let stop = stop.clone();
        let want = if ftz_rz {
            want_rz.clone()
        } else {
            want_default.clone()
        };
        let own = if ftz_rz { fp::FTZ_RZ } else { fp::DEFAULT };
        rt.spawn_cpu(move || {
            if ftz_rz {
                fp::set_ftz_rz();
            }
            // Counted, not asserted: a panic here would unwind with the
            // wrong modes, and the report is clearer from the test thread.
            let (mut i, mut wrong_modes, mut wrong_bits) = (0u64, 0u64, 0u64);
            let mut first_wrong = None;
            while !stop.load(Relaxed) {
                let got = fp::chunk(i % CHUNKS);
                let m = fp::modes();
                if m != own {
                    wrong_modes += 1;
                    first_wrong.get_or_insert(m);
                }
                if got != want[(i % CHUNKS) as usize] {
                    wrong_bits += 1;
                }
                if cooperative {
                    if i % 2 == 0 {
                        urgent::task::checkpoint();
                    } else {
                        urgent::wait(urgent::time::sleep(Duration::from_micros(50)));
                    }
                    let m = fp::modes();
                    if m != own {
                        wrong_modes += 1;
                        first_wrong.get_or_insert(m);
                    }
                }
                i += 1;
                progress.store(i, Relaxed);
            }
            (ftz_rz, i, wrong_modes, wrong_bits, first_wrong)
        })
    };
    let (rz_progress, default_progress) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let rz = cpu_task(true, rz_progress.clone());
    let default = cpu_task(false, default_progress.clone());
    let s = stop.clone();
    let future = rt.spawn(async move {
        let (mut n, mut wrong, mut first_wrong) = (0u64, 0u64, None);
        while !s.load(Relaxed) {
            let m = fp::modes();
            if m != fp::DEFAULT {
                wrong += 1;
                first_wrong.get_or_insert(m);
            }
            urgent::time::sleep(Duration::from_micros(200)).await;
            n += 1;
        }
        (n, wrong, first_wrong)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = rt.metrics();
        let switched = if cooperative {
            true
        } else {
            m.preemptions() >= 40
        };
        if switched && rz_progress.load(Relaxed) >= 40 && default_progress.load(Relaxed) >= 40
            || rz.is_finished()
            || default.is_finished()
            || future.is_finished()
        {
            break;
        }
        assert!(Instant::now() < deadline, "no progress within 30 s: {m:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Relaxed);
    let (a, b, c) = rt.block_on(async { (rz.await, default.await, future.await) });
    let preemptions = rt.metrics().preemptions();
    let (a, b) = (a.unwrap(), b.unwrap());
    let chunks = (a.1, b.1);
    for (ftz_rz, chunks, wrong_modes, wrong_bits, first) in [a, b] {
        let who = if ftz_rz { "FTZ/RZ" } else { "default-mode" };
        assert!(
            wrong_modes == 0 && wrong_bits == 0,
            "the {who} CPU task saw other modes {wrong_modes} times (first: {first:x?}) and \
             computed {wrong_bits} wrong chunks out of {chunks} ({preemptions} preemptions)"
        );
    }
    let (rounds, wrong, first) = c.unwrap();
    assert_eq!(
        wrong, 0,
        "a plain future on the worker saw other modes {wrong} times out of {rounds} (first: \
         {first:x?})"
    );
    eprintln!("ok: {chunks:?} chunks, {rounds} future rounds, {preemptions} preemptions");
}

/// Async preemption path: only the signal trampoline switches the tasks.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn fp_modes_stay_with_their_task_through_preemption() {
    if !async_preempt_available() {
        return;
    }
    guard(|| fp_modes_stay_with_their_task(false));
}

/// Cooperative path: async preemption off, so the tasks switch only at
/// `checkpoint` and `wait`, through the plain coroutine switch.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn fp_modes_stay_with_their_task_through_checkpoint_and_wait() {
    if !support::is_child() {
        support::run_in_child(
            "fp_modes_stay_with_their_task_through_checkpoint_and_wait",
            &[("URGENT_ASYNC_PREEMPT", "0")],
        );
        return;
    }
    guard(|| fp_modes_stay_with_their_task(true));
}

// ---------------------------------------------------------------------------
// 3. Stack sizes too small for the preemption trampoline.

/// A stack that leaves no room for the trampoline is refused, naming the
/// minimum; the minimum itself works, and a task on it is preempted.
#[test]
fn stack_too_small_to_preempt_is_invalid_input() {
    if !async_preempt_available() {
        return;
    }
    let min = urgent_preempt::min_stack_size();
    assert!(min > urgent_stackful::MIN_STACK_SIZE, "{min}");
    assert_eq!(min % 4096, 0);
    for size in [16 * 1024, min - 4096] {
        let err = urgent::Builder::new()
            .worker_threads(1)
            .stack_size(size)
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("stack of {size} bytes is too small to preempt")),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("the minimum is {min} bytes ({} KiB)", min / 1024)),
            "{msg}"
        );
        assert!(msg.contains("raise Builder::stack_size"), "{msg}");
        assert!(msg.contains("URGENT_ASYNC_PREEMPT=0"), "{msg}");
    }
    eprintln!(
        "minimum stack size here: {min} bytes, xsave {:?}",
        urgent_preempt::diagnostics::xsave_info()
    );
    guard(move || {
        let rt = urgent::Builder::new()
            .worker_threads(1)
            .quantum(Duration::from_millis(1))
            .stack_size(min)
            .build()
            .expect("the minimum is accepted");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let spinner = rt.spawn_cpu(move || {
            let mut n = 0u64;
            while !s.load(Relaxed) {
                n = black_box(n.wrapping_add(1));
            }
            n
        });
        // The sleeper only wakes if the spinner is preempted.
        rt.block_on(rt.spawn(async move {
            urgent::time::sleep(Duration::from_millis(20)).await;
            stop.store(true, Relaxed);
        }))
        .unwrap();
        assert!(rt.block_on(spinner).unwrap() > 0);
        assert!(rt.metrics().preemptions() > 0, "{:?}", rt.metrics());
    });
}

/// With async preemption off, the plain coroutine minimum is enough.
#[test]
fn small_stack_is_fine_without_async_preemption() {
    if !support::is_child() {
        support::run_in_child(
            "small_stack_is_fine_without_async_preemption",
            &[("URGENT_ASYNC_PREEMPT", "0")],
        );
        return;
    }
    let rt = urgent::Builder::new()
        .worker_threads(1)
        .stack_size(urgent_stackful::MIN_STACK_SIZE)
        .build()
        .expect("16 KiB stacks without async preemption");
    assert_eq!(rt.block_on(rt.spawn_cpu(|| 7)).unwrap(), 7);
}
