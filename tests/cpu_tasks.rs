//! CPU tasks (`spawn_cpu`, `spawn_preemptible`, `wait`, `checkpoint`) on one
//! and on two workers. Behaviour only; time bounds are generous.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use support::{guard, panic_message, rt};

const Q: Duration = Duration::from_millis(10);

macro_rules! on_1_and_2_workers {
    ($($name:ident => $body:expr;)*) => {
        mod one_worker {
            use super::*;
            $( #[test] fn $name() { guard(|| ($body)(1)) } )*
        }
        mod two_workers {
            use super::*;
            $( #[test] fn $name() { guard(|| ($body)(2)) } )*
        }
    };
}

fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

struct SetOnDrop(Arc<AtomicBool>);
impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// A CPU task suspended for good in `wait`, with a guard on its stack that
/// sets the returned flag when dropped; returns once it has suspended.
fn suspended_with_guard(rt: &urgent::Runtime) -> (urgent::JoinHandle<()>, Arc<AtomicBool>) {
    let dropped = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let (d, s) = (dropped.clone(), started.clone());
    let h = rt.spawn_cpu(move || {
        let _guard = SetOnDrop(d);
        s.store(true, SeqCst);
        urgent::wait(std::future::pending::<()>());
    });
    while !started.load(SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    (h, dropped)
}

on_1_and_2_workers! {
    value_through_join_handle => |n| {
        let rt = rt(n, Q);
        assert_eq!(rt.block_on(async { urgent::spawn_cpu(|| fib(20)).await }).unwrap(), 6765);
        assert_eq!(rt.block_on(rt.spawn_cpu(|| "s".to_string())).unwrap(), "s");
        assert_eq!(rt.block_on(rt.handle().spawn_cpu(|| 3u8)).unwrap(), 3);
    };

    large_and_over_aligned_values_through_join_handle => |n| {
        // Values above the coroutine's in-place return slot (boxed there),
        // over-aligned ones, and a value whose drop is observable when its
        // JoinHandle is dropped unread.
        #[derive(Debug, PartialEq)]
        #[repr(align(64))]
        struct Aligned(u64);
        let rt = rt(n, Q);
        let big = rt.block_on(rt.spawn_cpu(|| {
            let mut a = [0u8; 4096];
            for (i, b) in a.iter_mut().enumerate() {
                *b = (i % 251) as u8;
            }
            a
        }));
        let big = big.unwrap();
        assert!(big.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        assert_eq!(rt.block_on(rt.spawn_cpu(|| Aligned(7))).unwrap(), Aligned(7));
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        let h = rt.spawn_cpu(move || Counted(d));
        while !h.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(h);
        assert_eq!(dropped.load(SeqCst), 1, "an unread output is dropped once");
    };

    panic_is_a_join_error_and_runtime_survives => |n| {
        let rt = rt(n, Q);
        let err = rt.block_on(rt.spawn_cpu(|| -> u32 { panic!("cpu boom") })).unwrap_err();
        assert!(err.is_panic());
        assert_eq!(panic_message(&*err.into_panic()), "cpu boom");
        assert_eq!(rt.block_on(rt.spawn_cpu(|| 5)).unwrap(), 5);
    };

    many_cpu_tasks_with_checked_results => |n| {
        let rt = rt(n, Q);
        let handles: Vec<_> = (0..256u64).map(|i| rt.spawn_cpu(move || (i, fib(i % 20)))).collect();
        rt.block_on(async {
            for (i, h) in handles.into_iter().enumerate() {
                let (j, f) = h.await.unwrap();
                assert_eq!(j, i as u64);
                assert_eq!(f, fib(j % 20));
            }
        });
    };

    wait_on_a_sleep => |n| {
        let rt = rt(n, Q);
        let out = rt.block_on(rt.spawn_cpu(|| {
            assert!(urgent::preempt::is_cpu_task());
            let t = std::time::Instant::now();
            urgent::wait(urgent::time::sleep(Duration::from_millis(5)));
            t.elapsed()
        }));
        assert!(out.unwrap() >= Duration::from_millis(5));
    };

    wait_on_a_oneshot_fed_by_a_future_task => |n| {
        let rt = rt(n, Q);
        let (tx, rx) = futures::channel::oneshot::channel::<u32>();
        let cpu = rt.spawn_cpu(move || urgent::wait(rx).unwrap() * 2);
        rt.spawn(async move {
            urgent::time::sleep(Duration::from_millis(2)).await;
            tx.send(21).unwrap();
        });
        assert_eq!(rt.block_on(cpu).unwrap(), 42);
    };

    ten_thousand_concurrently_suspended_cpu_tasks => |n| {
        let rt = rt(n, Q);
        let suspended = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        let gate = futures::future::FutureExt::shared(rx);
        let handles: Vec<_> = (0..10_000usize)
            .map(|i| {
                let gate = gate.clone();
                let suspended = suspended.clone();
                rt.spawn_cpu(move || {
                    suspended.fetch_add(1, SeqCst);
                    urgent::wait(gate).unwrap();
                    i
                })
            })
            .collect();
        // All of them reach `wait` and are suspended at the same time.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while suspended.load(SeqCst) < 10_000 {
            assert!(std::time::Instant::now() < deadline, "CPU tasks did not all start");
            std::thread::sleep(Duration::from_millis(5));
        }
        tx.send(()).unwrap();
        rt.block_on(async {
            for (i, h) in handles.into_iter().enumerate() {
                assert_eq!(h.await.unwrap(), i);
            }
        });
    };

    spawn_preemptible_polls_a_future_on_a_coroutine => |n| {
        let rt = rt(n, Q);
        let v = rt.block_on(rt.spawn_preemptible(async {
            assert!(urgent::preempt::is_cpu_task());
            urgent::time::sleep(Duration::from_millis(1)).await;
            urgent::task::yield_now().await;
            9
        }));
        assert_eq!(v.unwrap(), 9);
        assert!(!rt.block_on(async { urgent::preempt::is_cpu_task() }));
    };

    wait_outside_a_cpu_task_panics_inside_the_task => |n| {
        let rt = rt(n, Q);
        let err = rt.block_on(rt.spawn(async { urgent::wait(async { 1 }) })).unwrap_err();
        let msg = panic_message(&*err.into_panic());
        assert!(msg.contains("wait() called outside a CPU task"), "{msg}");
        assert!(msg.contains(".await"), "{msg}");
    };

    abort_of_a_suspended_cpu_task_runs_its_destructors => |n| {
        let rt = rt(n, Q);
        let (h, dropped) = suspended_with_guard(&rt);
        h.abort();
        let err = rt.block_on(h).unwrap_err();
        assert!(err.is_cancelled());
        assert!(dropped.load(SeqCst), "destructor on the coroutine stack did not run");
    };

    runtime_drop_unwinds_suspended_cpu_tasks => |n| {
        let rt = rt(n, Q);
        let (_h, dropped) = suspended_with_guard(&rt);
        drop(rt);
        assert!(dropped.load(SeqCst));
    };
}

/// One worker: a CPU task that only calls `checkpoint` (async preemption
/// off) still lets a future on the same worker run.
#[test]
fn checkpoint_lets_a_future_run_on_a_single_worker() {
    if !support::is_child() {
        support::run_in_child(
            "checkpoint_lets_a_future_run_on_a_single_worker",
            &[("URGENT_ASYNC_PREEMPT", "0")],
        );
        return;
    }
    guard(|| {
        let rt = rt(1, Duration::from_millis(1));
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let hog = rt.spawn_cpu(move || {
            let mut n = 0u64;
            while !s.load(Relaxed) {
                n = n.wrapping_add(1);
                urgent::task::checkpoint();
            }
            n
        });
        let ran = rt.block_on(rt.spawn(async move {
            // Give the hog the worker first.
            urgent::time::sleep(Duration::from_millis(5)).await;
            stop.store(true, Relaxed);
            true
        }));
        assert!(ran.unwrap());
        assert!(rt.block_on(hog).unwrap() > 0);
        assert_eq!(rt.metrics().preemptions(), 0, "async preemption was off");
    });
}

/// `checkpoint` outside a CPU task is a no-op.
/// A wake that lands between a future's poll inside `urgent::wait` and the
/// coroutine's suspension, while a preemption has the task queued, must not
/// be lost. The future here wakes itself and then suspends the coroutine
/// exactly as the preemption trampoline does
/// (`suspend(SuspendKind::Preempted)`); the requeue absorbs the wake, and
/// the `wait` then suspends for a wake that has already happened. Before
/// the fix this task slept forever (a release-mode test with real signals,
/// `preemption_inside_cooperative_yields_with_migration`, hung in about one
/// run in four).
#[test]
fn wake_absorbed_by_a_preemption_is_not_lost() {
    guard(|| {
        let rt = rt(1, Q);
        let polls = rt
            .block_on(rt.spawn_cpu(|| {
                let mut polls = 0u32;
                urgent::wait(std::future::poll_fn(|cx| {
                    polls += 1;
                    if polls == 1 {
                        cx.waker().wake_by_ref();
                        urgent_stackful::suspend(urgent_stackful::SuspendKind::Preempted);
                        std::task::Poll::Pending
                    } else {
                        std::task::Poll::Ready(())
                    }
                }));
                polls
            }))
            .unwrap();
        assert_eq!(polls, 2);
    });
}

#[test]
fn checkpoint_elsewhere_is_a_no_op() {
    urgent::task::checkpoint();
    let rt = rt(1, Q);
    rt.block_on(async { urgent::task::checkpoint() });
}

#[test]
fn spawn_cpu_outside_a_runtime_panics_with_the_fix() {
    let err = std::panic::catch_unwind(|| urgent::spawn_cpu(|| 1)).unwrap_err();
    let msg = panic_message(&*err);
    assert!(msg.contains("outside a runtime"), "{msg}");
}

#[test]
fn too_small_a_stack_is_invalid_input() {
    let err = urgent::Builder::new().stack_size(1024).build().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("stack_size"), "{err}");
}

#[inline(never)]
fn recurse(depth: u64, buf: &mut [u8; 1024]) -> u64 {
    let mut local = [0u8; 1024];
    local[(depth % 1024) as usize] = buf[0].wrapping_add(1);
    std::hint::black_box(&mut local);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1, &mut local) + local[3] as u64
}

/// A CPU task that overflows its stack is reported with the fix and aborts
/// the process (run in a child).
#[test]
fn stack_overflow_in_a_cpu_task_is_reported() {
    if !support::is_child() {
        let (status, out) = support::run_child("stack_overflow_in_a_cpu_task_is_reported", &[]);
        assert!(!status.success());
        assert!(
            out.contains("urgent: CPU task overflowed its 64 KiB stack; raise Builder::stack_size"),
            "unexpected child output:\n{out}"
        );
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGABRT), "{out}");
        return;
    }
    let rt = urgent::Builder::new()
        .worker_threads(1)
        .stack_size(64 * 1024)
        .build()
        .unwrap();
    let _ = rt.block_on(rt.spawn_cpu(|| recurse(0, &mut [0u8; 1024])));
    unreachable!("the overflow must abort the process");
}

/// A CPU task whose closure captures more than corosensei can move onto a
/// new stack (1 KiB) runs instead of panicking on the worker.
#[test]
fn spawn_cpu_with_a_large_closure() {
    let rt = urgent::Runtime::new().unwrap();
    let big = [3u8; 16 * 1024];
    let sum = rt
        .block_on(rt.spawn_cpu(move || big.iter().map(|&b| b as u32).sum::<u32>()))
        .unwrap();
    assert_eq!(sum, 3 * 16 * 1024);
}
