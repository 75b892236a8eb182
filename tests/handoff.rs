//! Cores that change threads (Go's retake, handoffp and locked M): a
//! future that blocks in its poll, a CPU task blocked on a lock held by a
//! preempted task, std's per-thread panic state, thread parks in the strict
//! mode, the spare-thread cap and shutdown. Scenarios that would hang or
//! abort on failure run in a child process (`support::run_in_child`), every
//! wait is bounded, and no test asserts speed: the bounds are generous
//! (seconds where the fixed runtime needs milliseconds).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use support::{guard, is_child, run_child, run_in_child};

fn rt(workers: usize, quantum: Duration) -> urgent::Runtime {
    urgent::Builder::new()
        .worker_threads(workers)
        .quantum(quantum)
        .build()
        .unwrap()
}

/// A call-free spin for `d` (clock read every 100k iterations).
#[inline(never)]
fn spin(d: Duration) -> u64 {
    let t0 = Instant::now();
    let mut x = 1u64;
    while t0.elapsed() < d {
        for _ in 0..100_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
    }
    x
}

// ---- family 1: a future that blocks in its poll ----

/// Two workers, two futures that block their threads for 800 ms in their
/// polls: a task spawned 50 ms later that sleeps 1 ms finishes long before
/// the blockers do (it took 751 ms before cores could change threads).
fn blocked_polls_do_not_stall_their_workers(workers: usize) {
    guard(move || {
        let rt = rt(workers, Duration::from_millis(10));
        let took = rt.block_on(async {
            for _ in 0..workers {
                urgent::spawn(async { std::thread::sleep(Duration::from_millis(800)) });
            }
            urgent::time::sleep(Duration::from_millis(50)).await;
            let t0 = Instant::now();
            urgent::spawn(async { urgent::time::sleep(Duration::from_millis(1)).await })
                .await
                .unwrap();
            t0.elapsed()
        });
        assert!(
            took < Duration::from_millis(500),
            "a 1 ms sleeper took {took:?} behind futures blocked in their polls"
        );
        assert!(rt.metrics().retakes() >= 1, "{:?}", rt.metrics());
    });
}

#[test]
fn blocked_polls_do_not_stall_their_workers_two_workers() {
    blocked_polls_do_not_stall_their_workers(2);
}

#[test]
fn blocked_polls_do_not_stall_their_workers_one_worker() {
    blocked_polls_do_not_stall_their_workers(1);
}

/// One worker: a future blocks in `mpsc::Receiver::recv` for a message
/// another task sends after reading a byte from an urgent TCP socket.
/// Nothing turned the I/O driver before; now a spare thread holds the core
/// and does.
#[test]
fn blocking_recv_waiting_for_io_completes_on_one_worker() {
    if !is_child() {
        return run_in_child("blocking_recv_waiting_for_io_completes_on_one_worker", &[]);
    }
    let rt = rt(1, Duration::from_millis(10));
    rt.block_on(async {
        let listener = urgent::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<u8>();
        let reader = urgent::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 1];
            tokio::io::AsyncReadExt::read_exact(&mut s, &mut b)
                .await
                .unwrap();
            tx.send(b[0]).unwrap();
        });
        let blocker = urgent::spawn(async move { rx.recv().unwrap() });
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            use std::io::Write;
            std::net::TcpStream::connect(addr)
                .unwrap()
                .write_all(&[42])
                .unwrap();
        });
        assert_eq!(blocker.await.unwrap(), 42);
        reader.await.unwrap();
    });
}

/// 1000 futures block in their polls at once with at most 4 spare threads:
/// the spare threads stay within the cap, everything completes, and the
/// cap is reported once on stderr.
#[test]
fn many_blocking_polls_stay_within_the_spare_cap() {
    if !is_child() {
        let (status, out) = run_child("many_blocking_polls_stay_within_the_spare_cap", &[]);
        assert!(status.success(), "{out}");
        assert!(out.contains("1 passed"), "{out}");
        assert_eq!(
            out.matches("spare threads are in use").count(),
            1,
            "the warning, once:\n{out}"
        );
        assert!(out.contains("Builder::max_spare_threads"), "{out}");
        return;
    }
    let rt = urgent::Builder::new()
        .worker_threads(2)
        .max_spare_threads(4)
        .build()
        .unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let max_spares = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let hs: Vec<_> = (0..1000)
            .map(|_| {
                let done = done.clone();
                urgent::spawn(async move {
                    std::thread::sleep(Duration::from_millis(15));
                    done.fetch_add(1, SeqCst);
                })
            })
            .collect();
        let m = max_spares.clone();
        let h = urgent::Handle::current();
        let watcher = std::thread::spawn(move || {
            for _ in 0..600 {
                m.fetch_max(h.metrics().spare_threads(), SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        for h in hs {
            h.await.unwrap();
        }
        watcher.join().unwrap();
    });
    assert_eq!(done.load(SeqCst), 1000);
    assert!(max_spares.load(SeqCst) <= 4, "{}", max_spares.load(SeqCst));
    assert!(rt.metrics().spare_threads_refused() > 0);
}

// ---- family 2: a preempted task holds a blocking lock ----

static SLOW_INIT: LazyLock<u64> = LazyLock::new(|| spin(Duration::from_millis(300)));

/// One worker, 2 ms quantum: task A starts initialising a LazyLock (300 ms
/// of work) and is preempted inside the initialiser (a std::sync frame:
/// thread-affine, so its thread parks with it); task B reads the same
/// LazyLock. Before, B blocked the only worker forever.
#[test]
fn lazylock_initialised_by_a_preempted_task_does_not_deadlock() {
    if !is_child() {
        return run_in_child(
            "lazylock_initialised_by_a_preempted_task_does_not_deadlock",
            &[],
        );
    }
    let rt = rt(1, Duration::from_millis(2));
    let (a, b) = rt.block_on(async {
        let a = urgent::spawn_cpu(|| *SLOW_INIT);
        urgent::time::sleep(Duration::from_millis(20)).await;
        let b = urgent::spawn_cpu(|| *SLOW_INIT);
        let f = urgent::spawn(async { *SLOW_INIT });
        (a.await.unwrap(), (b.await.unwrap(), f.await.unwrap()))
    });
    assert_eq!(a, b.0);
    assert_eq!(a, b.1);
    // Main can still use it afterwards.
    assert_eq!(*SLOW_INIT, a);
}

static SLOW_ONCE: OnceLock<u64> = OnceLock::new();

/// The same with a OnceLock, on two workers.
#[test]
fn oncelock_initialised_by_a_preempted_task_does_not_deadlock() {
    if !is_child() {
        return run_in_child(
            "oncelock_initialised_by_a_preempted_task_does_not_deadlock",
            &[],
        );
    }
    let rt = rt(2, Duration::from_millis(2));
    let vals = rt.block_on(async {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                urgent::spawn_cpu(|| *SLOW_ONCE.get_or_init(|| spin(Duration::from_millis(200))))
            })
            .collect();
        let mut v = Vec::new();
        for h in hs {
            v.push(h.await.unwrap());
        }
        v
    });
    assert!(vals.windows(2).all(|w| w[0] == w[1]));
}

// ---- family 3: std's per-thread panic state ----

struct SlowDrop;
impl Drop for SlowDrop {
    fn drop(&mut self) {
        spin(Duration::from_millis(300));
    }
}

/// One worker: a CPU task is preempted while unwinding (a slow `Drop`
/// during a panic); another CPU task must never see
/// `std::thread::panicking()`, and its own Mutex must not come out
/// poisoned. Before: 606 sightings in 600 ms.
#[test]
fn a_panic_unwinding_in_one_task_is_not_seen_by_another() {
    if !is_child() {
        return run_in_child("a_panic_unwinding_in_one_task_is_not_seen_by_another", &[]);
    }
    let rt = rt(1, Duration::from_millis(2));
    let seen = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, st2) = (seen.clone(), stop.clone());
    rt.block_on(async move {
        let watcher = urgent::spawn_cpu(move || {
            let m = Mutex::new(0u32);
            while !st2.load(Relaxed) {
                if std::thread::panicking() {
                    s2.fetch_add(1, Relaxed);
                }
                *m.lock().expect("a private Mutex came out poisoned") += 1;
                urgent::task::checkpoint();
            }
        });
        let panicker = urgent::spawn_cpu(|| {
            let _d = SlowDrop;
            panic!("boom (expected by the test)");
        });
        assert!(panicker.await.unwrap_err().is_panic());
        stop.store(true, Relaxed);
        watcher.await.unwrap();
    });
    assert_eq!(
        seen.load(Relaxed),
        0,
        "another task saw a panic in progress"
    );
}

// ---- thread parks: thread-locals, bit-exact results, shutdown ----

thread_local! {
    static TL: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The strict mode parks the thread at every preemption: a task resumed
/// after parks is on the same thread and sees its own thread-locals (the
/// address and a value written before).
#[test]
fn a_parked_task_resumes_on_its_own_thread_with_its_thread_locals() {
    guard(|| {
        let rt = urgent::Builder::new()
            .worker_threads(1)
            .quantum(Duration::from_micros(500))
            .strict_preemption(true)
            .build()
            .unwrap();
        let ok = rt.block_on(async {
            let side = urgent::spawn(async {
                for _ in 0..50 {
                    urgent::time::sleep(Duration::from_millis(1)).await;
                }
            });
            let h = urgent::spawn_cpu(|| {
                let me = std::thread::current().id();
                let addr = TL.with(|t| t as *const _ as usize);
                TL.with(|t| t.set(0xfeed));
                let t0 = Instant::now();
                let mut ok = true;
                while t0.elapsed() < Duration::from_millis(200) {
                    spin(Duration::from_micros(100));
                    ok &= std::thread::current().id() == me
                        && TL.with(|t| t as *const _ as usize) == addr
                        && TL.with(|t| t.get()) == 0xfeed;
                }
                ok
            });
            side.await.unwrap();
            h.await.unwrap()
        });
        assert!(ok);
        assert!(rt.metrics().thread_parks() > 0, "{:?}", rt.metrics());
    });
}

fn work(seed: u64) -> (u64, u64) {
    let mut x = seed;
    let mut f = seed as f64;
    for i in 0..3_000_000u64 {
        x = x.rotate_left(7) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        f = (f * 1.000_000_1 + (i as f64).sqrt()).rem_euclid(1e12);
    }
    (x, f.to_bits())
}

/// Bit-exact results through thread parks (strict mode, 100 µs quantum).
#[test]
fn results_are_bit_identical_through_thread_parks() {
    guard(|| {
        let expected: Vec<_> = (1..=4).map(work).collect();
        let rt = urgent::Builder::new()
            .worker_threads(2)
            .quantum(Duration::from_micros(100))
            .strict_preemption(true)
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let hs: Vec<_> = (1..=4u64)
                .map(|s| urgent::spawn_cpu(move || work(s)))
                .collect();
            let mut v = Vec::new();
            for h in hs {
                v.push(h.await.unwrap());
            }
            v
        });
        assert_eq!(got, expected);
        assert!(rt.metrics().thread_parks() > 0, "{:?}", rt.metrics());
    });
}

/// Shutdown while worker threads are parked mid-task (strict mode, tasks
/// that never end) and while a thread is stuck in a poll returns within
/// `shutdown_timeout`, and `println!` works from main afterwards.
#[test]
fn shutdown_with_parked_threads_and_stuck_polls_returns() {
    if !is_child() {
        return run_in_child("shutdown_with_parked_threads_and_stuck_polls_returns", &[]);
    }
    let rt = urgent::Builder::new()
        .worker_threads(2)
        .quantum(Duration::from_millis(1))
        .strict_preemption(true)
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..3 {
            urgent::spawn_cpu(|| loop {
                spin(Duration::from_millis(1));
            });
        }
        urgent::spawn(async { std::thread::sleep(Duration::from_secs(3600)) });
        urgent::time::sleep(Duration::from_millis(100)).await;
    });
    let t0 = Instant::now();
    rt.shutdown_timeout(Duration::from_secs(5));
    assert!(t0.elapsed() < Duration::from_secs(30));
    println!("main still prints after the shutdown");
    assert_eq!(*SLOW_INIT_AFTER, 7);
}

static SLOW_INIT_AFTER: LazyLock<u64> = LazyLock::new(|| 7);

#[test]
fn bad_handoff_settings_are_errors_naming_the_fix() {
    let e = urgent::Builder::new()
        .max_spare_threads(100_000)
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains("max_spare_threads is at most"),
        "{e}"
    );
    let e = urgent::Builder::new()
        .retake_after(Duration::from_micros(10))
        .build()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("retake_after must be at least 100 µs"),
        "{e}"
    );
}

static USER_LOCK: Mutex<u64> = Mutex::new(0);

/// The default mode's one remaining hazard, resolved by the strict mode: a
/// CPU task preempted while a `MutexGuard` lives in its own frames (the
/// stack walk cannot see it), and a future on the same worker that then
/// blocks on that Mutex. Strict: the holder's thread parks with it, the
/// future blocks a spare thread instead (which sysmon retakes), the holder
/// gets its core back, finishes, and both complete.
#[test]
fn strict_mode_resolves_a_user_mutex_held_across_a_preemption() {
    if !is_child() {
        return run_in_child(
            "strict_mode_resolves_a_user_mutex_held_across_a_preemption",
            &[],
        );
    }
    let rt = urgent::Builder::new()
        .worker_threads(1)
        .quantum(Duration::from_millis(2))
        .strict_preemption(true)
        .build()
        .unwrap();
    let (a, b) = rt.block_on(async {
        let holder = urgent::spawn_cpu(|| {
            let mut g = USER_LOCK.lock().unwrap();
            *g += spin(Duration::from_millis(150)) | 1;
            *g
        });
        urgent::time::sleep(Duration::from_millis(20)).await;
        let waiter = urgent::spawn(async { *USER_LOCK.lock().unwrap() });
        (holder.await.unwrap(), waiter.await.unwrap())
    });
    assert_eq!(a, b, "the waiter saw the holder's write");
    assert!(rt.metrics().thread_parks() > 0, "{:?}", rt.metrics());
}
