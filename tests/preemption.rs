//! Signal-driven preemption seen from the runtime: Go's preemption scenarios
//! (TestPreemption's token passing, the AsyncPreempt program, a sleeper
//! against a spinner), state preservation through many preemptions,
//! malloc/println-heavy tasks, `NoPreempt`, worker binding and migration,
//! spurious SIGURG. Behaviour only; time bounds are generous.
//!
//! The spinning loops are call-free in release builds; in debug builds they
//! call into `core` (atomics, arithmetic helpers), where preemption is
//! declined and retried, so they are preempted less often but still are.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
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

#[inline(never)]
fn spin_until(stop: &AtomicBool) -> u64 {
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        n = n.wrapping_add(1);
    }
    n
}

/// Go's TestPreemption: one worker, two CPU tasks pass a token back and
/// forth by spinning on an atomic, with no calls in the loops. Only
/// preemption lets the other one see the token.
#[test]
fn token_passing_between_spinners_on_one_worker() {
    if !async_preempt_available() {
        return;
    }
    guard(|| {
        let rt = rt(1, Duration::from_millis(1));
        let token = Arc::new(AtomicU64::new(0));
        const PASSES: u64 = 5;
        let handles: Vec<_> = (0..2u64)
            .map(|me| {
                let token = token.clone();
                rt.spawn_cpu(move || {
                    for i in 0..PASSES {
                        let want = 2 * i + me;
                        while token.load(Acquire) != want {}
                        token.store(want + 1, Release);
                    }
                })
            })
            .collect();
        rt.block_on(async {
            for h in handles {
                h.await.unwrap();
            }
        });
        assert_eq!(token.load(SeqCst), 2 * PASSES);
        assert!(rt.metrics().preemptions() > 0);
    });
}

/// Go's AsyncPreempt program: on one worker, a task storing to an atomic
/// forever and a call-free leaf loop; the main task still runs and stops
/// them.
#[test]
fn main_task_runs_beside_call_free_loops() {
    if !async_preempt_available() {
        return;
    }
    guard(|| {
        let rt = rt(1, Duration::from_millis(1));
        let stop = Arc::new(AtomicBool::new(false));
        let sink = Arc::new(AtomicU64::new(0));
        let (s1, k1) = (stop.clone(), sink.clone());
        let storer = rt.spawn_cpu(move || {
            let mut i = 0u64;
            while !s1.load(Relaxed) {
                k1.store(i, Relaxed);
                i = i.wrapping_add(1);
            }
        });
        let s2 = stop.clone();
        let leaf = rt.spawn_cpu(move || spin_until(&s2));
        // The main task is a future on the same (only) worker.
        let main = rt.spawn(async move {
            urgent::time::sleep(Duration::from_millis(20)).await;
            stop.store(true, Relaxed);
        });
        rt.block_on(async {
            main.await.unwrap();
            storer.await.unwrap();
            leaf.await.unwrap();
        });
        assert!(rt.metrics().preemptions() >= 2);
    });
}

/// A 1 ms sleeper keeps waking while a call-free spinner holds the only
/// worker; the metrics show the preemptions.
#[test]
fn sleeper_keeps_waking_beside_a_spinner() {
    if !async_preempt_available() {
        return;
    }
    guard(|| {
        let rt = rt(1, Duration::from_millis(1));
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let spinner = rt.spawn_cpu(move || spin_until(&s));
        let wakes = rt.block_on(rt.spawn(async move {
            let mut wakes = 0;
            for _ in 0..50 {
                urgent::time::sleep(Duration::from_millis(1)).await;
                wakes += 1;
            }
            stop.store(true, Relaxed);
            wakes
        }));
        assert_eq!(wakes.unwrap(), 50);
        rt.block_on(spinner).unwrap();
        let m = rt.metrics();
        assert!(m.preemptions() > 0, "{m:?}");
        assert!(m.preempt_requests() >= m.preemptions(), "{m:?}");
    });
}

/// Four call-free hogs on two workers; a ticker future keeps ticking.
#[test]
fn ticker_keeps_ticking_beside_four_hogs_on_two_workers() {
    if !async_preempt_available() {
        return;
    }
    guard(|| {
        let rt = rt(2, Duration::from_millis(1));
        let stop = Arc::new(AtomicBool::new(false));
        let hogs: Vec<_> = (0..4)
            .map(|_| {
                let s = stop.clone();
                rt.spawn_cpu(move || spin_until(&s))
            })
            .collect();
        let ticks = rt.block_on(rt.spawn(async move {
            let mut iv = urgent::time::interval(Duration::from_millis(1));
            for _ in 0..100 {
                iv.tick().await;
            }
            stop.store(true, Relaxed);
            100
        }));
        assert_eq!(ticks.unwrap(), 100);
        rt.block_on(async {
            for h in hogs {
                h.await.unwrap();
            }
        });
        assert!(rt.metrics().preemptions() > 0);
    });
}

#[inline(never)]
fn int_work(seed: u64, n: u64) -> u64 {
    let mut x = seed;
    let mut acc = 0u64;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc = acc.wrapping_mul(31).wrapping_add(x ^ i);
    }
    acc
}

#[inline(never)]
fn f64_work(seed: u64, n: u64) -> u64 {
    let mut a = seed as f64 * 1e-3 + 0.5;
    let mut b = 1.000_000_1f64;
    let mut s = 0.0f64;
    for i in 0..n {
        a = (a * b + 0.123_456_789).fract() + 0.25;
        b = b * 0.999_999_9 + 1e-7 * (i & 7) as f64;
        s += a.sqrt() * b;
    }
    s.to_bits()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn avx2_work_inner(seed: u64, n: u64) -> u64 {
    use std::arch::x86_64::*;
    let mut acc = _mm256_set_pd(seed as f64, 1.5, 2.25, 3.125);
    let mul = _mm256_set1_pd(0.999_999_3);
    let add = _mm256_set_pd(0.1, 0.2, 0.3, 0.4);
    let mut iacc = _mm256_set1_epi64x(seed as i64);
    let step = _mm256_set_epi64x(1, 3, 5, 7);
    for _ in 0..n {
        acc = _mm256_fmadd_pd(acc, mul, add);
        iacc = _mm256_add_epi64(_mm256_xor_si256(iacc, step), step);
    }
    let mut out = [0f64; 4];
    let mut iout = [0i64; 4];
    // SAFETY: `out`/`iout` are 32 bytes; unaligned stores accept any address.
    unsafe {
        _mm256_storeu_pd(out.as_mut_ptr(), acc);
        _mm256_storeu_si256(iout.as_mut_ptr() as *mut __m256i, iacc);
    }
    out.iter()
        .map(|f| f.to_bits())
        .chain(iout.iter().map(|&i| i as u64))
        .fold(0u64, |h, v| h.rotate_left(7) ^ v)
}

#[inline(never)]
fn avx2_work(seed: u64, n: u64) -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return Some(unsafe { avx2_work_inner(seed, n) });
    }
    let _ = (seed, n);
    None
}

/// Integer, f64 and AVX2/FMA results are bit-identical to an unpreempted run
/// through many preemptions at a 100 µs quantum, with tasks of all three
/// kinds interleaving on the same workers.
#[test]
fn results_are_bit_identical_through_preemptions() {
    if !async_preempt_available() {
        return;
    }
    guard(|| {
        const N: u64 = if cfg!(debug_assertions) {
            3_000_000
        } else {
            60_000_000
        };
        type Job = fn(u64, u64) -> Option<u64>;
        let jobs: [(&str, Job); 3] = [
            ("int", |s, n| Some(int_work(s, n))),
            ("f64", |s, n| Some(f64_work(s, n))),
            ("avx2", avx2_work),
        ];
        let expected: Vec<Option<u64>> = (0..6).map(|i| (jobs[i % 3].1)(i as u64, N)).collect();
        let rt = rt(2, Duration::from_micros(100));
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let f = jobs[i % 3].1;
                rt.spawn_cpu(move || f(i as u64, N))
            })
            .collect();
        let got: Vec<Option<u64>> = support::join_all(&rt, handles);
        for i in 0..6 {
            assert_eq!(
                got[i],
                expected[i],
                "{} job {i} differs after preemption",
                jobs[i % 3].0
            );
        }
        let m = rt.metrics();
        assert!(
            m.preemptions() >= 20,
            "too few preemptions to mean anything: {m:?}"
        );
        eprintln!("bit-identical through {} preemptions", m.preemptions());
    });
}

/// Allocation- and formatting-heavy CPU tasks at a 100 µs quantum: malloc
/// and stdio are never interrupted, so no deadlock and no panic.
#[test]
fn allocation_and_println_heavy_tasks_do_not_deadlock() {
    if !async_preempt_available() {
        return;
    }
    guard(|| {
        let rt = rt(2, Duration::from_micros(100));
        let deadline = Instant::now() + Duration::from_millis(600);
        let handles: Vec<_> = (0..4)
            .map(|k| {
                rt.spawn_cpu(move || {
                    let mut total = 0usize;
                    let mut rounds = 0u64;
                    while Instant::now() < deadline {
                        let v: Vec<String> = (0..64).map(|i| format!("{k}-{i}-{total}")).collect();
                        total = total.wrapping_add(v.iter().map(String::len).sum::<usize>());
                        let mut m = std::collections::HashMap::new();
                        for s in v {
                            m.insert(s, rounds);
                        }
                        if rounds.is_multiple_of(256) {
                            eprintln!("alloc task {k}: round {rounds}, {} keys", m.len());
                        }
                        rounds += 1;
                    }
                    rounds
                })
            })
            .collect();
        let rounds: u64 = rt.block_on(async {
            let mut sum = 0;
            for h in handles {
                sum += h.await.unwrap();
            }
            sum
        });
        assert!(rounds > 0);
        eprintln!("{:?}", rt.metrics());
    });
}

/// A `NoPreempt` guard keeps a future on the same worker from running for
/// the guard's duration.
#[test]
fn no_preempt_guard_blocks_preemption_while_alive() {
    if !async_preempt_available() {
        return;
    }
    guard(|| {
        let rt = rt(1, Duration::from_millis(1));
        let guarded_done = Arc::new(AtomicBool::new(false));
        let saw_during_guard = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicBool::new(false));
        let (gd, st) = (guarded_done.clone(), started.clone());
        let cpu = rt.spawn_cpu(move || {
            let _g = urgent::preempt::disable();
            assert!(urgent::preempt::is_disabled());
            st.store(true, SeqCst);
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(50) {
                std::hint::spin_loop();
            }
            gd.store(true, SeqCst);
        });
        let (gd2, saw) = (guarded_done.clone(), saw_during_guard.clone());
        let fut = rt.spawn(async move {
            // Runs only once the worker is free of the guarded task.
            saw.store(!gd2.load(SeqCst), SeqCst);
        });
        rt.block_on(async {
            cpu.await.unwrap();
            fut.await.unwrap();
        });
        assert!(started.load(SeqCst));
        assert!(
            !saw_during_guard.load(SeqCst),
            "a future ran on the only worker while the NoPreempt guard was alive"
        );
    });
}

/// Two workers at `quantum`, preempted CPU tasks migrating or not.
fn two_workers(quantum: Duration, migrate: bool) -> urgent::Runtime {
    urgent::Builder::new()
        .worker_threads(2)
        .quantum(quantum)
        .migrate_preempted(migrate)
        .build()
        .unwrap()
}

fn thread_ids_over_time(
    migrate: bool,
) -> (
    Vec<std::thread::ThreadId>,
    u64,
    urgent::metrics::RuntimeMetrics,
) {
    let rt = two_workers(Duration::from_micros(200), migrate);
    // Another hog keeps both workers busy so migration has a reason to happen.
    let stop = Arc::new(AtomicBool::new(false));
    let others: Vec<_> = (0..3)
        .map(|_| {
            let s = stop.clone();
            rt.spawn_cpu(move || spin_until(&s))
        })
        .collect();
    let (ids, check) = rt
        .block_on(rt.spawn_cpu(|| {
            let mut ids = Vec::new();
            let t = Instant::now();
            let mut check = 0u64;
            while t.elapsed() < Duration::from_millis(300) {
                check = int_work(check, 20_000);
                ids.push(std::thread::current().id());
            }
            (ids, check)
        }))
        .unwrap();
    stop.store(true, Relaxed);
    rt.block_on(async {
        for h in others {
            h.await.unwrap();
        }
    });
    (ids, check, rt.metrics())
}

/// A preempted task stays on its worker by default.
#[test]
fn preempted_task_stays_on_its_worker() {
    if !async_preempt_available() {
        return;
    }
    guard(|| {
        let (ids, _, m) = thread_ids_over_time(false);
        assert!(m.preemptions() > 0, "{m:?}");
        assert!(
            ids.iter().all(|id| *id == ids[0]),
            "a bound CPU task changed threads"
        );
    });
}

/// With `migrate_preempted(true)` results stay correct (and the task may
/// move between workers).
#[test]
fn migrate_preempted_keeps_results_correct() {
    if !async_preempt_available() {
        return;
    }
    guard(|| {
        let (ids, check, m) = thread_ids_over_time(true);
        let mut expect = 0u64;
        for _ in 0..ids.len() {
            expect = int_work(expect, 20_000);
        }
        assert_eq!(check, expect);
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        eprintln!("ran on {} distinct threads; {m:?}", distinct.len());
        assert!(m.preemptions() > 0);
    });
}

/// Preemptions that land inside the inlined cooperative suspension path
/// (`checkpoint` and `yield_now` inline `suspend` into the task's own code in
/// release builds), with migration on: the task must always suspend *itself*
/// and keep its own state, whichever thread resumes it. Four tasks on two
/// workers at a 100 µs quantum, each yielding in a tight loop while doing
/// checked work.
#[test]
fn preemption_inside_cooperative_yields_with_migration() {
    if !async_preempt_available() {
        return;
    }
    guard(|| {
        let rt = two_workers(Duration::from_micros(100), true);
        let handles: Vec<_> = (0..4u64)
            .map(|seed| {
                rt.spawn_cpu(move || {
                    let t = Instant::now();
                    let (mut check, mut rounds) = (seed, 0u64);
                    while t.elapsed() < Duration::from_millis(300) {
                        check = int_work(check, 500);
                        urgent::task::checkpoint();
                        check = int_work(check, 500);
                        urgent::wait(urgent::task::yield_now());
                        rounds += 1;
                    }
                    (seed, check, rounds)
                })
            })
            .collect();
        let results: Vec<_> = support::join_all(&rt, handles);
        for (seed, check, rounds) in results {
            let mut expect = seed;
            for _ in 0..rounds {
                expect = int_work(int_work(expect, 500), 500);
            }
            assert_eq!(check, expect, "task {seed} lost its state");
            assert!(rounds > 0);
        }
        eprintln!("{:?}", rt.metrics());
    });
}
/// A storm of process-wide SIGURG from another thread changes nothing.
#[test]
fn sigurg_storm_changes_nothing() {
    guard(|| {
        let rt = rt(2, Duration::from_millis(1));
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let storm = std::thread::spawn(move || {
            let mut sent = 0;
            while !s.load(Relaxed) && sent < 20_000 {
                // SAFETY: kill(2) on our own pid with SIGURG, whose handler
                // is installed (and whose default action is to ignore it).
                unsafe { libc::kill(libc::getpid(), libc::SIGURG) };
                sent += 1;
                std::thread::yield_now();
            }
            sent
        });
        let results: Vec<u64> = rt.block_on(async {
            let hs: Vec<_> = (0..8u64)
                .map(|i| urgent::spawn_cpu(move || int_work(i, 2_000_000)))
                .collect();
            let mut v = Vec::new();
            for h in hs {
                v.push(h.await.unwrap());
            }
            for _ in 0..20 {
                urgent::time::sleep(Duration::from_millis(1)).await;
            }
            v
        });
        stop.store(true, Relaxed);
        assert!(storm.join().unwrap() > 0);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(*r, int_work(i as u64, 2_000_000));
        }
    });
}

/// Runs a call-free spinner on `rt` until `done(metrics)` holds (at most
/// 20 s, generous for loaded debug builds, where many signals land in
/// `core` and are declined).
fn spin_until_metrics(
    rt: &urgent::Runtime,
    done: impl Fn(&urgent::metrics::RuntimeMetrics) -> bool,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = rt.spawn_cpu(move || spin_until(&s));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&rt.metrics()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Relaxed);
    rt.block_on(h).unwrap();
}

static EARLIER_HANDLER_CALLS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn earlier_handler(_: libc::c_int) {
    EARLIER_HANDLER_CALLS.fetch_add(1, SeqCst);
}

/// A SIGURG handler installed before the runtime keeps being called.
#[test]
fn earlier_sigurg_handler_still_called() {
    if !support::is_child() {
        support::run_in_child("earlier_sigurg_handler_still_called", &[]);
        return;
    }
    // SAFETY: installs a plain handler that only bumps an atomic
    // (async-signal-safe); the struct is zeroed and then filled in.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = earlier_handler as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = libc::SA_RESTART;
        assert_eq!(libc::sigaction(libc::SIGURG, &sa, std::ptr::null_mut()), 0);
    }
    let rt = rt(1, Duration::from_millis(1));
    spin_until_metrics(&rt, |m| m.preemptions() > 0 || !async_preempt_available());
    // SAFETY: sends SIGURG to ourselves; both handlers tolerate it.
    unsafe { libc::kill(libc::getpid(), libc::SIGURG) };
    std::thread::sleep(Duration::from_millis(10));
    let calls = EARLIER_HANDLER_CALLS.load(SeqCst);
    assert!(calls >= 1, "the earlier SIGURG handler was never called");
    if async_preempt_available() {
        let m = rt.metrics();
        assert!(m.preemptions() > 0, "{m:?}");
    }
}

/// `URGENT_ASYNC_PREEMPT=0` gives zero preemptions (and checkpoint still
/// works: see cpu_tasks.rs).
#[test]
fn async_preempt_off_gives_zero_preemptions() {
    if !support::is_child() {
        support::run_in_child(
            "async_preempt_off_gives_zero_preemptions",
            &[("URGENT_ASYNC_PREEMPT", "0")],
        );
        return;
    }
    let rt = rt(2, Duration::from_millis(1));
    spin_until_metrics(&rt, |m| m.preempt_requests() >= 1);
    let m = rt.metrics();
    assert_eq!(m.preemptions(), 0, "{m:?}");
    assert!(m.preempt_requests() > 0, "sysmon still asks: {m:?}");
}

/// A plain future that runs past the quantum is counted, not signalled.
#[test]
fn long_plain_future_polls_are_counted() {
    guard(|| {
        let rt = rt(1, Duration::from_millis(1));
        rt.block_on(rt.spawn(async {
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(30) {
                std::hint::spin_loop();
            }
        }))
        .unwrap();
        let m = rt.metrics();
        assert!(m.long_polls() >= 1, "{m:?}");
        assert_eq!(m.preemptions(), 0, "{m:?}");
    });
}
