//! Behaviour of `Coroutine`, `suspend` and the stack pools.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use urgent_stackful::{
    current_stack_bounds, in_coroutine, suspend, validate_stack_size, Coroutine, Resume, Stack,
    SuspendKind, MIN_STACK_SIZE,
};

fn stack() -> Stack {
    Stack::new(64 * 1024).unwrap()
}

#[test]
fn returns_values_through_captures() {
    let out = Arc::new(Mutex::new(None));
    let o = out.clone();
    let mut co = Coroutine::new(stack(), move || {
        let v: u64 = (1..=10).product();
        *o.lock().unwrap() = Some(v);
    });
    assert!(!co.is_started());
    assert!(matches!(co.resume(), Resume::Finished));
    assert!(co.is_finished());
    assert_eq!(*out.lock().unwrap(), Some(3_628_800));
    assert_eq!(co.last_suspend(), None);
}

/// Counts drops, to see that an output is dropped exactly once.
struct DropCount(Arc<AtomicUsize>, #[allow(dead_code)] [u8; 64]);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[test]
fn return_value_is_taken_once() {
    // Small (kept in place), over-aligned and large (boxed), zero-sized.
    let mut co = Coroutine::new(stack(), || {
        suspend(SuspendKind::Yield);
        (1..=10u64).product::<u64>()
    });
    assert!(matches!(co.resume(), Resume::Suspended(SuspendKind::Yield)));
    assert_eq!(co.take_output(), None, "no output while suspended");
    assert!(matches!(co.resume(), Resume::Finished));
    assert_eq!(co.take_output(), Some(3_628_800));
    assert_eq!(co.take_output(), None);

    #[derive(Debug, PartialEq, Clone, Copy)]
    #[repr(align(64))]
    struct Aligned(u8);
    let mut co = Coroutine::new(stack(), || Aligned(7));
    assert!(matches!(co.resume(), Resume::Finished));
    assert_eq!(co.take_output(), Some(Aligned(7)));

    let mut co = Coroutine::new(stack(), || {
        let mut v = [0u64; 100];
        for (i, x) in v.iter_mut().enumerate() {
            *x = i as u64;
        }
        v
    });
    assert!(matches!(co.resume(), Resume::Finished));
    let v = co.take_output().unwrap();
    assert_eq!(v.iter().sum::<u64>(), 99 * 100 / 2);

    let mut co = Coroutine::new(stack(), || ());
    assert!(matches!(co.resume(), Resume::Finished));
    assert_eq!(co.take_output(), Some(()));

    let mut co = Coroutine::new(stack(), || -> u32 { panic!("no value") });
    assert!(matches!(co.resume(), Resume::Panicked(_)));
    assert_eq!(co.take_output(), None);
}

#[test]
fn untaken_return_value_is_dropped_with_the_coroutine() {
    let drops = Arc::new(AtomicUsize::new(0));
    for boxed in [false, true] {
        drops.store(0, SeqCst);
        let d = drops.clone();
        if boxed {
            // 664 bytes: over the in-place limit, so boxed.
            let mut co = Coroutine::new(stack(), move || (DropCount(d, [0; 64]), [0u8; 600]));
            assert!(matches!(co.resume(), Resume::Finished));
            drop(co);
        } else {
            let mut co = Coroutine::new(stack(), move || DropCount(d, [0; 64]));
            assert!(matches!(co.resume(), Resume::Finished));
            drop(co);
        }
        assert_eq!(drops.load(SeqCst), 1, "boxed: {boxed}");
    }
    // Taken: dropped by the taker, not again by the coroutine.
    drops.store(0, SeqCst);
    let d = drops.clone();
    let mut co = Coroutine::new(stack(), move || DropCount(d, [0; 64]));
    assert!(matches!(co.resume(), Resume::Finished));
    let out = co.take_output();
    drop(co);
    assert_eq!(drops.load(SeqCst), 0);
    drop(out);
    assert_eq!(drops.load(SeqCst), 1);
}
#[test]
fn panic_is_returned_as_panicked() {
    let n = std::hint::black_box(42);
    let mut co = Coroutine::new(stack(), move || panic!("boom {n}"));
    match co.resume() {
        Resume::Panicked(p) => {
            assert_eq!(
                p.downcast_ref::<String>().map(String::as_str),
                Some("boom 42")
            );
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert!(co.is_finished());
    assert!(!in_coroutine());
}

#[test]
fn panic_after_suspend_is_returned() {
    let mut co = Coroutine::new(stack(), || {
        suspend(SuspendKind::Yield);
        std::panic::panic_any(7u32);
    });
    assert!(matches!(co.resume(), Resume::Suspended(SuspendKind::Yield)));
    match co.resume() {
        Resume::Panicked(p) => assert_eq!(p.downcast_ref::<u32>(), Some(&7)),
        other => panic!("expected Panicked, got {other:?}"),
    }
}

#[test]
fn ping_pong_counts() {
    const N: usize = 10_000;
    let inside = Arc::new(AtomicUsize::new(0));
    let i = inside.clone();
    let mut co = Coroutine::new(stack(), move || {
        for n in 0..N {
            assert!(in_coroutine());
            assert_eq!(i.fetch_add(1, SeqCst), n);
            let kind = if n % 2 == 0 {
                SuspendKind::Yield
            } else {
                SuspendKind::Preempted
            };
            suspend(kind);
        }
    });
    let mut resumes = 0;
    loop {
        assert!(!in_coroutine());
        match co.resume() {
            Resume::Suspended(kind) => {
                assert_eq!(Some(kind), co.last_suspend());
                let expect = if resumes % 2 == 0 {
                    SuspendKind::Yield
                } else {
                    SuspendKind::Preempted
                };
                assert_eq!(kind, expect);
                resumes += 1;
                assert_eq!(inside.load(SeqCst), resumes);
            }
            Resume::Finished => break,
            Resume::Panicked(_) => panic!("coroutine panicked"),
        }
    }
    assert_eq!(resumes, N);
    assert_eq!(inside.load(SeqCst), N);
}

struct SetOnDrop(Arc<AtomicUsize>);
impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[test]
fn drop_of_yield_suspended_runs_destructors() {
    let drops = Arc::new(AtomicUsize::new(0));
    let after = Arc::new(AtomicUsize::new(0));
    let (d, a) = (drops.clone(), after.clone());
    let mut co = Coroutine::new(stack(), move || {
        let _outer = SetOnDrop(d.clone());
        let inner = || {
            let _inner = SetOnDrop(d.clone());
            suspend(SuspendKind::Yield);
            a.fetch_add(1, SeqCst); // never reached
        };
        inner();
    });
    assert!(matches!(co.resume(), Resume::Suspended(SuspendKind::Yield)));
    assert_eq!(drops.load(SeqCst), 0);
    drop(co);
    assert_eq!(drops.load(SeqCst), 2, "both destructors ran");
    assert_eq!(after.load(SeqCst), 0);
    assert!(!in_coroutine());
}

#[test]
fn drop_of_new_coroutine_drops_closure() {
    let drops = Arc::new(AtomicUsize::new(0));
    let guard = SetOnDrop(drops.clone());
    let co = Coroutine::new(stack(), move || {
        let _g = guard;
        unreachable!();
    });
    drop(co);
    assert_eq!(drops.load(SeqCst), 1);
}

#[test]
fn drop_of_preempted_leaks_without_running_destructors() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    // A size no other test uses, so only this test's stacks are in play.
    let size = 72 * 1024;
    let lent = Arc::new(AtomicUsize::new(0));
    let l = lent.clone();
    let mut co = Coroutine::new(Stack::new(size).unwrap(), move || {
        let _g = SetOnDrop(d);
        // A local whose address escapes, as to a scoped thread or an
        // intrusive list.
        let local = std::hint::black_box([0x5a5a_5a5a_u64; 8]);
        l.store(&local as *const _ as usize, SeqCst);
        suspend(SuspendKind::Preempted);
        std::hint::black_box(&local);
    });
    let (_, top) = co.stack_bounds();
    assert!(matches!(
        co.resume(),
        Resume::Suspended(SuspendKind::Preempted)
    ));
    assert_eq!(co.last_suspend(), Some(SuspendKind::Preempted));
    let leaked = urgent_stackful::leaked_stacks();
    drop(co);
    assert_eq!(
        drops.load(SeqCst),
        0,
        "a preempted coroutine is not unwound"
    );
    // The Arc clone on the discarded stack leaked.
    assert_eq!(Arc::strong_count(&drops), 2);
    // The stack itself is quarantined: never handed out again...
    assert!(urgent_stackful::leaked_stacks() > leaked);
    let again: Vec<Stack> = (0..4).map(|_| Stack::new(size).unwrap()).collect();
    assert!(
        again.iter().all(|s| s.bounds().1 != top),
        "the stack of a dropped preempted coroutine was reused"
    );
    // ...and still mapped with its contents, for whoever still points there.
    let p = lent.load(SeqCst) as *mut u64;
    // SAFETY: the quarantined stack stays mapped for the life of the process
    // and nothing else uses it; this is the access it exists to keep valid.
    unsafe {
        assert_eq!(p.read_volatile(), 0x5a5a_5a5a);
        p.write_volatile(1);
    }
}

#[test]
fn forced_unwind_cannot_be_swallowed() {
    let drops = Arc::new(AtomicUsize::new(0));
    let caught = Arc::new(AtomicUsize::new(0));
    let (d, c) = (drops.clone(), caught.clone());
    let mut co = Coroutine::new(stack(), move || {
        let _g = SetOnDrop(d.clone());
        // A user catch_unwind around a suspension point.
        if catch_unwind(AssertUnwindSafe(|| suspend(SuspendKind::Yield))).is_err() {
            c.fetch_add(1, SeqCst);
        }
        loop {
            let _inner = SetOnDrop(d.clone());
            suspend(SuspendKind::Yield);
        }
    });
    for _ in 0..1 {
        assert!(matches!(co.resume(), Resume::Suspended(SuspendKind::Yield)));
    }
    drop(co);
    // The first forced unwind was caught, the next suspend panicked again
    // outside the catch_unwind and unwound everything.
    assert_eq!(caught.load(SeqCst), 1);
    assert_eq!(drops.load(SeqCst), 2);
}

#[test]
fn destructor_may_suspend_during_unwind() {
    struct SuspendOnDrop(Arc<AtomicUsize>);
    impl Drop for SuspendOnDrop {
        fn drop(&mut self) {
            // Returns at once while the coroutine is being unwound.
            suspend(SuspendKind::Yield);
            suspend(SuspendKind::Preempted);
            self.0.fetch_add(1, SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let mut co = Coroutine::new(stack(), move || {
        let _g = SuspendOnDrop(d);
        suspend(SuspendKind::Yield);
    });
    assert!(matches!(co.resume(), Resume::Suspended(SuspendKind::Yield)));
    drop(co);
    assert_eq!(drops.load(SeqCst), 1);
}

#[test]
#[should_panic(expected = "urgent: suspend() called outside a CPU task")]
fn suspend_outside_coroutine_panics() {
    suspend(SuspendKind::Yield);
}

#[test]
#[should_panic(expected = "finished coroutine")]
fn resume_finished_panics() {
    let mut co = Coroutine::new(stack(), || {});
    assert!(matches!(co.resume(), Resume::Finished));
    co.resume();
}

#[test]
fn send_across_threads() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let mut co = Coroutine::new(stack(), move || {
        for i in 0..4 {
            l.lock()
                .unwrap()
                .push((i, std::thread::current().name().map(str::to_owned)));
            suspend(SuspendKind::Yield);
        }
    });
    // Created and first resumed on this thread.
    assert!(matches!(co.resume(), Resume::Suspended(SuspendKind::Yield)));
    // Resumed on two other threads in turn.
    for name in ["a", "b"] {
        co = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                assert!(matches!(co.resume(), Resume::Suspended(SuspendKind::Yield)));
                co
            })
            .unwrap()
            .join()
            .unwrap();
    }
    // Created on one thread, never resumed there.
    let fresh = Coroutine::new(stack(), || suspend(SuspendKind::Yield));
    std::thread::spawn(move || {
        let mut fresh = fresh;
        assert!(matches!(
            fresh.resume(),
            Resume::Suspended(SuspendKind::Yield)
        ));
        // Dropped (unwound) on this thread.
    })
    .join()
    .unwrap();
    assert!(matches!(co.resume(), Resume::Suspended(SuspendKind::Yield)));
    assert!(matches!(co.resume(), Resume::Finished));
    let log = log.lock().unwrap();
    let names: Vec<_> = log.iter().map(|(_, n)| n.clone()).collect();
    assert_eq!(names[1].as_deref(), Some("a"));
    assert_eq!(names[2].as_deref(), Some("b"));
    assert_eq!(names[0], names[3]);
}

#[test]
fn nested_coroutines() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    let mut outer = Coroutine::new(stack(), move || {
        let o2 = o.clone();
        let mut inner = Coroutine::new(Stack::new(32 * 1024).unwrap(), move || {
            o2.lock().unwrap().push("inner 1");
            suspend(SuspendKind::Yield); // back to outer, not to the test
            o2.lock().unwrap().push("inner 2");
        });
        assert!(matches!(
            inner.resume(),
            Resume::Suspended(SuspendKind::Yield)
        ));
        o.lock().unwrap().push("outer 1");
        suspend(SuspendKind::Yield); // back to the test
        assert!(matches!(inner.resume(), Resume::Finished));
        o.lock().unwrap().push("outer 2");
    });
    assert!(matches!(
        outer.resume(),
        Resume::Suspended(SuspendKind::Yield)
    ));
    assert!(matches!(outer.resume(), Resume::Finished));
    assert_eq!(
        *order.lock().unwrap(),
        ["inner 1", "outer 1", "inner 2", "outer 2"]
    );
}

#[test]
fn stack_bounds_contain_locals() {
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let mut co = Coroutine::new(stack(), move || {
        let local = Cell::new(1u8);
        s.store(&local as *const _ as usize, SeqCst);
    });
    let (lo, top) = co.stack_bounds();
    assert_eq!(top - lo, 64 * 1024);
    assert_eq!(co.stack_size(), 64 * 1024);
    assert!(matches!(co.resume(), Resume::Finished));
    let addr = seen.load(SeqCst);
    assert!(lo <= addr && addr < top, "{lo:#x} <= {addr:#x} < {top:#x}");
}

#[test]
fn stacks_are_reused_from_the_pool() {
    let size = 96 * 1024; // unique to this test
    let co = Coroutine::new(Stack::new(size).unwrap(), || {});
    let bounds = co.stack_bounds();
    drop(co);
    for _ in 0..10 {
        let mut co = Coroutine::new(Stack::new(size).unwrap(), || {});
        assert_eq!(co.stack_bounds(), bounds);
        assert!(matches!(co.resume(), Resume::Finished));
    }
}

#[test]
fn stack_size_validation() {
    for bad in [0, 1, 4096, MIN_STACK_SIZE - 1] {
        let err = Stack::new(bad).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("Builder::stack_size"), "{err}");
        assert!(validate_stack_size(bad).is_err());
    }
    assert!(Stack::new(usize::MAX).is_err());
    assert_eq!(validate_stack_size(MIN_STACK_SIZE).unwrap(), MIN_STACK_SIZE);
    let s = Stack::new(MIN_STACK_SIZE + 100).unwrap();
    assert_eq!(s.size(), validate_stack_size(MIN_STACK_SIZE + 100).unwrap());
    assert!(s.size() >= MIN_STACK_SIZE + 100);
}

#[test]
fn deep_recursion_within_bounds() {
    fn depth(n: u32) -> u32 {
        let buf = std::hint::black_box([n as u8; 256]);
        if n == 0 {
            buf[0] as u32
        } else {
            depth(n - 1) + std::hint::black_box(1)
        }
    }
    let out = Arc::new(AtomicUsize::new(0));
    let o = out.clone();
    // ~1000 frames of >256 bytes: well over 256 KiB? No: keep under 1 MiB.
    let mut co = Coroutine::new(Stack::new(1 << 20).unwrap(), move || {
        o.store(depth(1000) as usize, SeqCst);
    });
    assert!(matches!(co.resume(), Resume::Finished));
    assert_eq!(out.load(SeqCst), 1000);
}

#[test]
fn many_suspended_coroutines() {
    let cos: Vec<Coroutine> = (0..2000)
        .map(|i| {
            let mut co = Coroutine::new(Stack::new(32 * 1024).unwrap(), move || {
                let x = std::hint::black_box(i);
                suspend(SuspendKind::Yield);
                assert_eq!(x, i);
            });
            assert!(matches!(co.resume(), Resume::Suspended(SuspendKind::Yield)));
            co
        })
        .collect();
    for mut co in cos {
        assert!(matches!(co.resume(), Resume::Finished));
    }
}

#[inline(never)]
fn resumer_marker_fn(co: &mut Coroutine) -> Resume {
    let r = co.resume();
    std::hint::black_box(&r);
    r
}

#[test]
fn backtrace_crosses_into_resumer() {
    let bt = Arc::new(Mutex::new(String::new()));
    let b = bt.clone();
    let mut co = Coroutine::new(stack(), move || {
        *b.lock().unwrap() = std::backtrace::Backtrace::force_capture().to_string();
    });
    assert!(matches!(resumer_marker_fn(&mut co), Resume::Finished));
    let bt = bt.lock().unwrap();
    assert!(
        // (in optimised builds without debug info the closure is inlined)
        bt.contains("backtrace_crosses_into_resumer::{{closure}}") || bt.contains("coroutine_func"),
        "coroutine frame missing:\n{bt}"
    );
    assert!(
        bt.contains("resumer_marker_fn"),
        "the unwinder did not cross from the coroutine stack into the resumer:\n{bt}"
    );
}

#[test]
fn current_stack_bounds_inside_only() {
    assert_eq!(current_stack_bounds(), None);
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let mut co = Coroutine::new(stack(), move || {
        *s.lock().unwrap() = current_stack_bounds();
    });
    let bounds = co.stack_bounds();
    assert!(matches!(co.resume(), Resume::Finished));
    assert_eq!(*seen.lock().unwrap(), Some(bounds));
    assert_eq!(current_stack_bounds(), None);
}

#[test]
fn last_suspend_tracks_the_current_suspension() {
    let mut co = Coroutine::new(stack(), || {
        suspend(SuspendKind::Preempted);
        suspend(SuspendKind::Yield);
    });
    assert_eq!(co.last_suspend(), None);
    assert!(matches!(
        co.resume(),
        Resume::Suspended(SuspendKind::Preempted)
    ));
    assert_eq!(co.last_suspend(), Some(SuspendKind::Preempted));
    assert!(matches!(co.resume(), Resume::Suspended(SuspendKind::Yield)));
    assert_eq!(co.last_suspend(), Some(SuspendKind::Yield));
    assert!(matches!(co.resume(), Resume::Finished));
    assert_eq!(co.last_suspend(), None);
}

#[test]
fn resume_from_inside_itself_panics() {
    let addr = Arc::new(AtomicUsize::new(0));
    let a = addr.clone();
    let mut co = Box::new(Coroutine::new(stack(), move || {
        let p = a.load(SeqCst) as *mut Coroutine;
        // SAFETY: deliberately wrong (a second `&mut` to the running
        // coroutine) to check that `resume` refuses before touching anything.
        let me = unsafe { &mut *p };
        me.resume();
    }));
    addr.store(&mut *co as *mut Coroutine as usize, SeqCst);
    match co.resume() {
        Resume::Panicked(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .copied()
                .or(p.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            assert!(msg.contains("cannot resume itself"), "{msg}");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert!(!in_coroutine());
}

#[test]
fn send_bounds() {
    fn send<T: Send>() {}
    send::<Stack>();
    send::<Coroutine>();
    send::<Resume>();
}

/// corosensei refuses to move a closure over 1 KiB onto a new stack (it
/// panics "type is too big to transfer"); large closures are boxed instead.
#[test]
fn closures_larger_than_a_kib_run() {
    urgent_stackful::init_thread();
    let big = [7u8; 64 * 1024];
    let mut co = Coroutine::new(Stack::new(256 * 1024).unwrap(), move || {
        big.iter().map(|&b| b as u64).sum::<u64>()
    });
    assert!(matches!(co.resume(), Resume::Finished));
    assert_eq!(co.take_output(), Some(7 * 64 * 1024));
}

/// Each coroutine and its resumer keep their own floating-point control
/// modes across `suspend`/`resume` (corosensei's switch saves neither MXCSR
/// nor the x87 control word).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
#[allow(deprecated)] // _mm_getcsr/_mm_setcsr: the intrinsics are what we test with
fn fp_control_modes_stay_with_each_coroutine() {
    use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
    extern "C" {
        // glibc: sets the x87 and SSE rounding modes; reads the x87 one.
        fn fesetround(round: libc::c_int) -> libc::c_int;
        fn fegetround() -> libc::c_int;
    }
    const FE_TONEAREST: libc::c_int = 0;
    const FE_TOWARDZERO: libc::c_int = 0xc00;
    const FE_UPWARD: libc::c_int = 0x800;
    // Reading/writing MXCSR with defined control bits and setting a valid
    // rounding mode only changes how floating-point results round; this
    // thread is restored to the defaults at the end.
    let modes = || {
        // SAFETY: reads MXCSR (SSE is always present on x86_64).
        let mxcsr = unsafe { _mm_getcsr() };
        // SAFETY: glibc's fegetround has no preconditions.
        let x87 = unsafe { fegetround() };
        (mxcsr & 0xffc0, x87)
    };
    let set = |mxcsr: u32, x87: libc::c_int| {
        // SAFETY: a valid rounding mode constant (see above).
        assert_eq!(unsafe { fesetround(x87) }, 0);
        // SAFETY: defined control bits only (see above).
        unsafe { _mm_setcsr(mxcsr) };
    };
    const DEFAULT: (u32, libc::c_int) = (0x1f80, FE_TONEAREST);
    const FTZ_RZ: (u32, libc::c_int) = (0xff80, FE_TOWARDZERO);
    const UP: (u32, libc::c_int) = (0x5f80, FE_UPWARD);
    assert_eq!(modes(), DEFAULT);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut a = Coroutine::new(stack(), move || {
        s.lock().unwrap().push(("a starts", modes()));
        set(FTZ_RZ.0, FTZ_RZ.1);
        suspend(SuspendKind::Yield);
        s.lock().unwrap().push(("a resumed", modes()));
        suspend(SuspendKind::Yield);
        s.lock().unwrap().push(("a resumed again", modes()));
    });
    let s = seen.clone();
    let mut b = Coroutine::new(stack(), move || {
        s.lock().unwrap().push(("b starts", modes()));
        suspend(SuspendKind::Yield);
        s.lock().unwrap().push(("b resumed", modes()));
    });
    assert!(matches!(a.resume(), Resume::Suspended(_)));
    assert_eq!(modes(), DEFAULT, "a's modes leaked to its resumer");
    assert!(matches!(b.resume(), Resume::Suspended(_)));
    // The resumer changes its own modes; the coroutines must not see them.
    set(UP.0, UP.1);
    assert!(matches!(a.resume(), Resume::Suspended(_)));
    assert!(matches!(b.resume(), Resume::Finished));
    assert_eq!(modes(), UP, "the resumer lost its own modes");
    // Resumed on another thread, a keeps its modes there too.
    // (A new thread inherits its creator's modes: set its own first.)
    let t = std::thread::spawn(move || {
        set(DEFAULT.0, DEFAULT.1);
        assert!(matches!(a.resume(), Resume::Finished));
        modes()
    });
    assert_eq!(t.join().unwrap(), DEFAULT);
    set(DEFAULT.0, DEFAULT.1);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("a starts", DEFAULT),
            ("b starts", DEFAULT),
            ("a resumed", FTZ_RZ),
            ("b resumed", DEFAULT),
            ("a resumed again", FTZ_RZ),
        ]
    );
}
