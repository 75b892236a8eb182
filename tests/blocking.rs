//! `urgent::task::spawn_blocking`: closures that block their thread run on
//! the blocking pool, off the workers. Values, panics, misuse, workers left
//! free while closures block, thread reuse, and shutdown with a closure
//! still blocked. Bounds are generous; nothing asserts speed.

mod support;

use std::collections::HashSet;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use support::{guard, panic_message, rt};

const Q: Duration = Duration::from_millis(10);

#[test]
fn value_and_panic_through_join_handle() {
    guard(|| {
        let rt = rt(1, Q);
        let v = rt.block_on(async { urgent::task::spawn_blocking(|| 6 * 7).await });
        assert_eq!(v.unwrap(), 42);
        let err = rt
            .block_on(rt.spawn_blocking(|| -> u8 { panic!("blocking boom") }))
            .unwrap_err();
        assert!(err.is_panic());
        assert_eq!(panic_message(&*err.into_panic()), "blocking boom");
        // The pool survives a panicking closure.
        assert_eq!(rt.block_on(rt.handle().spawn_blocking(|| 1)).unwrap(), 1);
    });
}

/// Inside the closure the runtime is current (as in tokio): it can spawn,
/// and `block_on` through the handle, since it does not block a worker.
#[test]
fn the_runtime_is_current_inside_the_closure() {
    guard(|| {
        let rt = rt(2, Q);
        let v = rt
            .block_on(rt.spawn_blocking(|| {
                let h = urgent::Handle::current();
                let task = urgent::spawn(async { 20 });
                h.block_on(async move { task.await.unwrap() + 1 })
            }))
            .unwrap();
        assert_eq!(v, 21);
    });
}

#[test]
fn outside_a_runtime_it_panics_with_the_fix() {
    let err = std::panic::catch_unwind(|| urgent::task::spawn_blocking(|| ())).unwrap_err();
    let msg = panic_message(&*err);
    assert!(
        msg.contains("spawn_blocking() called outside a runtime"),
        "{msg}"
    );
}

/// Four closures blocked at once on a one-worker runtime: each gets its own
/// pool thread (none runs on the worker), and a ticker on the worker keeps
/// ticking meanwhile.
#[test]
fn blocked_closures_leave_the_worker_free() {
    guard(|| {
        let rt = rt(1, Q);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = std::sync::Arc::new(std::sync::Mutex::new(release_rx));
        let (started_tx, started_rx) = mpsc::channel::<String>();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (rx, tx) = (release_rx.clone(), started_tx.clone());
                rt.spawn_blocking(move || {
                    let name = thread::current().name().unwrap_or("").to_owned();
                    tx.send(name).unwrap();
                    // Blocks until the test releases it (one release each).
                    rx.lock().unwrap().recv().unwrap();
                })
            })
            .collect();
        // Each closure blocks until released, so all four can only start if
        // each has a thread of its own.
        for _ in 0..4 {
            let name = started_rx
                .recv_timeout(Duration::from_secs(20))
                .expect("a blocking closure never started: the pool did not grow");
            assert!(name.ends_with("-blocking"), "ran on {name:?}");
        }
        // All four are blocked now; the only worker still runs futures.
        let ticks = rt.block_on(async {
            let mut n = 0;
            for _ in 0..20 {
                urgent::time::sleep(Duration::from_millis(1)).await;
                n += 1;
            }
            n
        });
        assert_eq!(ticks, 20);
        for _ in 0..4 {
            release_tx.send(()).unwrap();
        }
        rt.block_on(async {
            for h in handles {
                h.await.unwrap();
            }
        });
    });
}

/// A closure aborted while it waits for a pool thread never runs; its handle
/// reports the cancellation once a thread gets to it (as tokio). The pool is
/// filled with `MAX_BLOCKING_THREADS` blocked closures first, so the next one
/// has to wait in the queue.
#[test]
fn closure_aborted_before_it_starts_never_runs() {
    guard(|| {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
        use std::sync::{Arc, Barrier};
        let max = urgent::task::MAX_BLOCKING_THREADS;
        let rt = rt(1, Q);
        let started = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Barrier::new(max + 1));
        let blockers: Vec<_> = (0..max)
            .map(|_| {
                let (started, gate) = (started.clone(), gate.clone());
                rt.spawn_blocking(move || {
                    started.fetch_add(1, SeqCst);
                    gate.wait();
                })
            })
            .collect();
        let t = Instant::now();
        while started.load(SeqCst) < max {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "the pool did not grow to {max}"
            );
            thread::sleep(Duration::from_millis(1));
        }
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let queued = rt.spawn_blocking(move || r.store(true, SeqCst));
        queued.abort();
        thread::sleep(Duration::from_millis(20));
        assert!(
            !queued.is_finished(),
            "the queued closure ran with no thread free"
        );
        // Free the pool: a thread takes the aborted task and cancels it
        // instead of running its closure.
        gate.wait();
        assert!(rt.block_on(queued).unwrap_err().is_cancelled());
        assert!(!ran.load(SeqCst), "an aborted, never-started closure ran");
        rt.block_on(async {
            for b in blockers {
                b.await.unwrap();
            }
        });
    });
}

/// `max_blocking_threads(1)`: a second blocked closure waits until the
/// first one returns; zero is a build error; a short keep-alive lets the
/// idle thread exit, and the pool starts a new one for the next job.
#[test]
fn builder_limits_the_pool() {
    guard(|| {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        use std::sync::Arc;
        let err = urgent::Builder::new()
            .max_blocking_threads(0)
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("max_blocking_threads"), "{err}");

        let rt = urgent::Builder::new()
            .worker_threads(1)
            .max_blocking_threads(1)
            .thread_keep_alive(Duration::from_millis(20))
            .build()
            .unwrap();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let first_done = Arc::new(AtomicBool::new(false));
        let fd = first_done.clone();
        let first = rt.spawn_blocking(move || {
            release_rx.recv().unwrap();
            fd.store(true, SeqCst);
            thread::current().id()
        });
        let fd = first_done.clone();
        let second = rt.spawn_blocking(move || (fd.load(SeqCst), thread::current().id()));
        thread::sleep(Duration::from_millis(50));
        assert!(
            !second.is_finished(),
            "the second closure ran beside the first"
        );
        release_tx.send(()).unwrap();
        let first_id = rt.block_on(first).unwrap();
        let (saw_first_done, second_id) = rt.block_on(second).unwrap();
        assert!(
            saw_first_done,
            "the second closure started before the first ended"
        );
        assert_eq!(first_id, second_id, "one thread only");
        // After the keep-alive the idle thread is gone; a new one serves.
        thread::sleep(Duration::from_millis(200));
        let third_id = rt
            .block_on(rt.spawn_blocking(|| thread::current().id()))
            .unwrap();
        assert_ne!(
            third_id, first_id,
            "the idle thread outlived its keep-alive"
        );
    });
}

#[test]
fn pool_threads_are_reused() {
    guard(|| {
        let rt = rt(1, Q);
        let mut ids = HashSet::new();
        for _ in 0..20 {
            let id = rt
                .block_on(rt.spawn_blocking(|| thread::current().id()))
                .unwrap();
            ids.insert(id);
        }
        // One after another: the idle thread takes the next one (a second
        // thread may start if a submit races the first thread going idle).
        assert!(
            ids.len() <= 2,
            "{} threads for 20 sequential jobs",
            ids.len()
        );
    });
}

/// Dropping the runtime while a closure is blocked returns; the closure
/// finishes on its own thread later.
#[test]
fn shutdown_does_not_wait_for_a_blocked_closure() {
    guard(|| {
        let rt = rt(1, Q);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let _h = rt.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            release_rx.recv().ok();
            done_tx.send(()).ok();
        });
        started_rx.recv_timeout(Duration::from_secs(20)).unwrap();
        let t = Instant::now();
        drop(rt);
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "runtime drop waited for a blocked closure"
        );
        release_tx.send(()).unwrap();
        done_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    });
}
