//! Cost of async preemption (urgent-preempt alone, no executor).
//!
//! A call-free CPU loop runs on a thread registered as a worker, between
//! `coroutine_started(own stack)` and `coroutine_stopped`, with a hook that
//! does what the executor's does minus the two context switches (report
//! "stopped", then "started" again). For each quantum (10 ms, 1 ms, 100 µs)
//! we compare wall time and thread CPU time with the same loop on a plain
//! thread, and derive the cost of one preemption (signal delivery + handler +
//! trampoline with XSAVE/XRSTOR + hook + sigreturn) as extra CPU time divided
//! by the number of preemptions. We also report how late the hook runs after
//! the quantum expired (sysmon wake-up + tgkill + delivery), p50/p99, the raw
//! CPU cost of a SIGURG a thread sends itself (handler fast path), and the
//! latency from `diagnostics::request_preempt` on another thread to hook entry.
//! Wall-time columns are only meaningful on an otherwise idle machine; the
//! CPU-time columns are less sensitive to other load.
//!
//! `cargo bench --bench preempt_cost` (quick); `URGENT_BENCH_LONG=1` for
//! longer runs and more repetitions; `URGENT_BENCH_ROUNDTRIPS=N` sets the
//! number of request round trips.

mod common;

use common::{long_run, nearest_rank, thread_cpu};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use urgent_preempt::{Config, Preemptor};

thread_local! {
    static CTX: Cell<(usize, usize, usize)> = const { Cell::new((0, 0, 0)) };
    static RUN_START: Cell<Option<Instant>> = const { Cell::new(None) };
    static QUANTUM: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

static LATENESS_NS: Mutex<Vec<u64>> = Mutex::new(Vec::new());
/// Nanoseconds since `base()` at the last hook entry (request round trips).
static HOOK_AT_NS: AtomicU64 = AtomicU64::new(0);

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn hook() {
    let now = Instant::now();
    HOOK_AT_NS.store(
        now.duration_since(base()).as_nanos() as u64,
        Ordering::Release,
    );
    if let Some(start) = RUN_START.with(|c| c.get()) {
        let late = now.saturating_duration_since(start + QUANTUM.with(|q| q.get()));
        if let Ok(mut v) = LATENESS_NS.try_lock() {
            v.push(late.as_nanos() as u64);
        }
    }
    let (slot, lo, hi) = CTX.with(|c| c.get());
    if slot != 0 {
        // SAFETY: set by `register`, whose callers keep the Arc alive meanwhile.
        let slot = unsafe { &*(slot as *const urgent_preempt::Slot) };
        slot.coroutine_stopped();
        RUN_START.with(|c| c.set(Some(Instant::now())));
        slot.coroutine_started(lo, hi);
    }
}

/// Call-free integer/f64 loop.
#[inline(never)]
fn work(iters: u64) -> u64 {
    let mut x: u64 = 12345;
    let mut f: f64 = 1.0;
    let mut i = 0u64;
    while i < iters {
        x = (x.wrapping_mul(6364136223846793005)).wrapping_add(i) ^ (x >> 29);
        f = f * 0.999_999_9 + (x & 0xff) as f64 * 1e-9;
        i += 1;
    }
    x ^ f.to_bits()
}

fn own_stack_bounds() -> (usize, usize) {
    // SAFETY: pthread_getattr_np on the current thread; attr destroyed after.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_getattr_np(libc::pthread_self(), &mut attr);
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (addr as usize + 64 * 1024, addr as usize + size)
    }
}

/// Registers this thread as `slot`'s worker and points the hook at it; the
/// bounds of this thread's stack, for `coroutine_started`.
fn register(slot: &Arc<urgent_preempt::Slot>) -> (usize, usize) {
    slot.register_current_thread();
    let (lo, hi) = own_stack_bounds();
    CTX.with(|c| c.set((Arc::as_ptr(slot) as usize, lo, hi)));
    (lo, hi)
}

/// (wall, thread cpu, result) of `work(iters)` on a plain thread.
fn run_plain(iters: u64) -> (Duration, Duration, u64) {
    std::thread::spawn(move || {
        let (t0, c0) = (Instant::now(), thread_cpu());
        let r = work(std::hint::black_box(iters));
        (t0.elapsed(), thread_cpu() - c0, r)
    })
    .join()
    .unwrap()
}

/// (wall, thread cpu, result, preemptions) under preemption at `quantum`.
fn run_preempted(p: &Preemptor, iters: u64) -> (Duration, Duration, u64, u64) {
    let slot = p.slot(0);
    let quantum = p.quantum();
    let before = slot.metrics().preemptions;
    let s2 = slot.clone();
    let (wall, cpu, r) = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let (lo, hi) = register(&s2);
            QUANTUM.with(|q| q.set(quantum));
            let (t0, c0) = (Instant::now(), thread_cpu());
            RUN_START.with(|c| c.set(Some(Instant::now())));
            s2.coroutine_started(lo, hi);
            let r = work(std::hint::black_box(iters));
            s2.coroutine_stopped();
            (t0.elapsed(), thread_cpu() - c0, r)
        })
        .unwrap()
        .join()
        .unwrap();
    (wall, cpu, r, slot.metrics().preemptions - before)
}

/// Sorts `v`; its sample nearest to quantile `p`, in µs (0 if empty).
fn pct_us(v: &mut [u64], p: f64) -> f64 {
    v.sort_unstable();
    nearest_rank(v, p).unwrap_or(0) as f64 / 1e3
}

/// Runs `work(chunk)` until `stop`; kept out of line so the loop is not
/// inlined into std's thread-start code (where it could not be preempted).
#[inline(never)]
fn victim_loop(stop: &AtomicBool, chunk: u64) -> u64 {
    let mut iters = 0u64;
    while !stop.load(Ordering::Relaxed) {
        std::hint::black_box(work(std::hint::black_box(chunk)));
        iters += chunk;
    }
    iters
}

/// Another thread calls `diagnostics::request_preempt` `n` times, each time waiting
/// for the hook, while the victim loops on `work(chunk)`. Returns request ->
/// hook latencies (ns) and the number of preemptions.
fn request_round_trips(n: usize, chunk: u64) -> (Vec<u64>, u64) {
    // A quantum long enough that sysmon never interferes.
    let p = Preemptor::start(
        Config {
            quantum: Duration::from_secs(3600),
            ..Config::default()
        },
        1,
    )
    .unwrap();
    let slot = p.slot(0);
    let stop = Arc::new(AtomicBool::new(false));
    let victim = {
        let slot = slot.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (lo, hi) = register(&slot);
            slot.coroutine_started(lo, hi);
            victim_loop(&stop, chunk);
            slot.coroutine_stopped();
        })
    };
    let mut lat = Vec::with_capacity(n);
    let before = slot.metrics().preemptions;
    for i in 0..n {
        let want = before + i as u64 + 1;
        let t0 = base().elapsed().as_nanos() as u64;
        while !urgent_preempt::diagnostics::request_preempt(&slot) {
            std::thread::sleep(Duration::from_micros(20));
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        // Sleep rather than spin: on 2 vCPUs a spinning requester would
        // compete with the victim it is waiting for.
        while slot.metrics().preemptions < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(20));
        }
        let t1 = HOOK_AT_NS.load(Ordering::Acquire);
        if t1 > t0 {
            lat.push(t1 - t0);
        }
    }
    stop.store(true, Ordering::Relaxed);
    victim.join().unwrap();
    (lat, slot.metrics().preemptions - before)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` style probing
    }
    let long = long_run();
    let (target, reps) = if long {
        (Duration::from_secs(2), 5)
    } else {
        (Duration::from_millis(500), 3)
    };
    urgent_preempt::set_preempt_hook(hook);
    let t = Instant::now();
    assert!(
        urgent_preempt::diagnostics::async_preempt_supported(),
        "needs x86_64 Linux and a .symtab"
    );
    let build = t.elapsed();
    let pc = work as *const () as usize + 8;
    let n = 1_000_000;
    let t = Instant::now();
    for i in 0..n {
        std::hint::black_box(urgent_preempt::diagnostics::pc_preemptible(
            std::hint::black_box(pc + (i & 7)),
        ));
    }
    println!(
        "symbol table: {} functions, built in {:.1} ms, lookup {:.1} ns",
        urgent_preempt::diagnostics::symbol_count(),
        build.as_secs_f64() * 1e3,
        t.elapsed().as_nanos() as f64 / n as f64
    );

    // Calibrate the loop to `target` on a plain thread.
    let mut iters = 1_000_000u64;
    loop {
        let (wall, _, _) = run_plain(iters);
        if wall >= Duration::from_millis(50) {
            iters = (iters as f64 * target.as_secs_f64() / wall.as_secs_f64()) as u64;
            break;
        }
        iters *= 4;
    }
    let mut plain_wall = Duration::MAX;
    let mut plain_cpu = Duration::MAX;
    let mut expect = 0;
    for _ in 0..reps {
        let (w, c, r) = run_plain(iters);
        plain_wall = plain_wall.min(w);
        plain_cpu = plain_cpu.min(c);
        expect = r;
    }
    println!(
        "urgent-preempt cost ({} iterations, best of {reps}; {:?} xsave area)",
        iters,
        {
            let _p = Preemptor::start(Config::default(), 1).unwrap();
            urgent_preempt::diagnostics::xsave_info()
        }
    );
    println!(
        "{:>9} {:>11} {:>11} {:>8} {:>8} {:>12} {:>11} {:>11}",
        "quantum",
        "wall ms",
        "cpu ms",
        "wall %",
        "cpu %",
        "preemptions",
        "ns/preempt",
        "late p50/p99 us"
    );
    println!(
        "{:>9} {:>11.2} {:>11.2} {:>8} {:>8} {:>12} {:>11} {:>11}",
        "plain",
        plain_wall.as_secs_f64() * 1e3,
        plain_cpu.as_secs_f64() * 1e3,
        "-",
        "-",
        0,
        "-",
        "-"
    );
    for quantum in [
        Duration::from_millis(10),
        Duration::from_millis(1),
        Duration::from_micros(100),
    ] {
        let p = Preemptor::start(
            Config {
                quantum,
                ..Config::default()
            },
            1,
        )
        .unwrap();
        LATENESS_NS.lock().unwrap().clear();
        let (mut best_wall, mut best_cpu, mut n_at_best) = (Duration::MAX, Duration::MAX, 0);
        for _ in 0..reps {
            let (w, c, r, n) = run_preempted(&p, iters);
            assert_eq!(r, expect, "preempted result differs");
            if c < best_cpu {
                best_cpu = c;
                n_at_best = n;
            }
            best_wall = best_wall.min(w);
        }
        let mut late = std::mem::take(&mut *LATENESS_NS.lock().unwrap());
        let per = if n_at_best > 0 {
            format!(
                "{:.0}",
                (best_cpu.as_nanos() as f64 - plain_cpu.as_nanos() as f64) / n_at_best as f64
            )
        } else {
            "-".into()
        };
        println!(
            "{:>9} {:>11.2} {:>11.2} {:>+8.2} {:>+8.2} {:>12} {:>11} {:>6.1}/{:.1}",
            format!("{quantum:?}"),
            best_wall.as_secs_f64() * 1e3,
            best_cpu.as_secs_f64() * 1e3,
            (best_wall.as_secs_f64() / plain_wall.as_secs_f64() - 1.0) * 100.0,
            (best_cpu.as_secs_f64() / plain_cpu.as_secs_f64() - 1.0) * 100.0,
            n_at_best,
            per,
            pct_us(&mut late, 0.5),
            pct_us(&mut late, 0.99),
        );
        let m = p.metrics();
        assert!(m.preemptions > 0, "{m:?}");
    }

    // Raw cost of one SIGURG sent by a thread to itself (no slot: the
    // handler only chains and returns): kernel delivery + sigreturn.
    let _p = Preemptor::start(Config::default(), 1).unwrap();
    let n_self = if long { 200_000 } else { 50_000 };
    let self_ns = std::thread::spawn(move || {
        let pid = std::process::id() as libc::pid_t;
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::pid_t;
        let c0 = thread_cpu();
        for _ in 0..n_self {
            // SAFETY: signals this thread; our SIGURG handler is installed.
            unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGURG) };
        }
        (thread_cpu() - c0).as_nanos() as f64 / n_self as f64
    })
    .join()
    .unwrap();
    println!(
        "SIGURG to self, handler fast path (tgkill + delivery + sigreturn): {self_ns:.0} ns CPU"
    );

    // Request round trips: latency from request_preempt() on another thread
    // to hook entry.
    let n = if long { 10_000 } else { 1_000 };
    let n = std::env::var("URGENT_BENCH_ROUNDTRIPS")
        .map(|v| v.parse().unwrap())
        .unwrap_or(n);
    let (mut lat, preempts) = request_round_trips(n, 20_000);
    println!(
        "request_preempt -> hook ({} round trips, from another thread): p50 {:.1} us, p99 {:.1} us",
        preempts,
        pct_us(&mut lat, 0.5),
        pct_us(&mut lat, 0.99),
    );
}
