//! urgent-stackful micro-benchmarks.
//!
//! ```text
//! cargo bench --bench coroutine                       # quick: ~2 s per benchmark
//! URGENT_BENCH_LONG=1 cargo bench --bench coroutine   # longer, steadier runs
//! cargo bench --bench coroutine -- resume_suspend     # one benchmark (skips the RSS report)
//! ```
//!
//! - `coroutine/resume_suspend`: one `resume()` into a coroutine that
//!   immediately calls `suspend(Yield)`: a full round trip (two switches).
//!   Target (DESIGN §7): ≤ 5 ns.
//! - `coroutine/resume_suspend_via_call`: the same with `suspend` called from
//!   a non-inlined function, as from an executor's `checkpoint()`.
//! - `coroutine/corosensei_resume_suspend_baseline`: the same with corosensei
//!   alone, to read the first one as a ratio on a noisy machine.
//! - `coroutine/new_run_drop_empty`: `Stack::new` (pooled) + `Coroutine::new`
//!   of an empty closure + `resume` to completion + drop (stack back to the
//!   pool, including its `madvise`).
//! - `coroutine/stack_pool_take_return`: `Stack::new` + drop alone.
//! - `resume_suspend_cpu_time` (printed): the round trip again, timed with
//!   the thread's CPU clock next to corosensei alone, less sensitive to other
//!   load on the machine than criterion's wall-clock numbers.
//! - `suspended_100k_rss`: resident memory (from `/proc/self/statm`) of
//!   100 000 coroutines with default 256 KiB stacks, each suspended once.
//!   Target: ≤ 1 GiB in all.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{long_run, selected, thread_cpu};
use criterion::Criterion;
use urgent_stackful::{suspend, Coroutine, Resume, Stack, SuspendKind, DEFAULT_STACK_SIZE};

/// Quick: 30 samples of 2 s; long: criterion's defaults but 10 s of measurement.
fn config() -> Criterion {
    let c = common::criterion(30);
    if long_run() {
        c.measurement_time(Duration::from_secs(10))
    } else {
        c
    }
}

/// A coroutine that suspends with `Yield` forever.
fn yielder() -> Coroutine {
    Coroutine::new(Stack::new(DEFAULT_STACK_SIZE).unwrap(), || loop {
        suspend(SuspendKind::Yield);
    })
}

/// The same with corosensei alone (its own default stack).
fn corosensei_yielder() -> urgent_stackful::__corosensei::Coroutine<(), (), ()> {
    urgent_stackful::__corosensei::Coroutine::new(|y, ()| loop {
        y.suspend(());
    })
}

/// One round trip into a [`yielder`].
#[inline(always)]
fn resume_suspended(co: &mut Coroutine) {
    match co.resume() {
        Resume::Suspended(k) => {
            black_box(k);
        }
        _ => unreachable!(),
    }
}

fn bench_switch(c: &mut Criterion) {
    let mut g = c.benchmark_group("coroutine");
    urgent_stackful::init_thread();
    let mut co = yielder();
    g.bench_function("resume_suspend", |b| b.iter(|| resume_suspended(&mut co)));
    drop(co);

    // The same, but suspending from inside a function that is not inlined
    // (as when user code calls an executor function that suspends): the
    // coroutine then resumes one frame deeper than the switch returns to,
    // which costs return-address mispredictions.
    #[inline(never)]
    fn checkpoint_like() {
        suspend(SuspendKind::Yield);
    }
    let mut co = Coroutine::new(Stack::new(DEFAULT_STACK_SIZE).unwrap(), || loop {
        checkpoint_like();
    });
    g.bench_function("resume_suspend_via_call", |b| {
        b.iter(|| resume_suspended(&mut co))
    });
    drop(co);

    // Baseline: corosensei alone (its own default stack), same shape.
    let mut raw = corosensei_yielder();
    g.bench_function("corosensei_resume_suspend_baseline", |b| {
        b.iter(|| black_box(raw.resume(())))
    });
    drop(raw);

    g.bench_function("new_run_drop_empty", |b| {
        b.iter(|| {
            let mut co = Coroutine::new(Stack::new(DEFAULT_STACK_SIZE).unwrap(), || {});
            let r = co.resume();
            debug_assert!(matches!(r, Resume::Finished));
            black_box(r);
        })
    });

    g.bench_function("stack_pool_take_return", |b| {
        b.iter(|| black_box(Stack::new(DEFAULT_STACK_SIZE).unwrap()))
    });
    g.finish();
}

/// Round trips measured in this thread's CPU time rather than wall time, so
/// that other processes competing for the CPU inflate them less. Printed
/// next to corosensei alone, as a ratio.
fn cpu_time_report() {
    let n: u64 = if long_run() { 200_000_000 } else { 30_000_000 };
    let mut co = yielder();
    let mut raw = corosensei_yielder();
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let t = thread_cpu().as_nanos();
        for _ in 0..n {
            resume_suspended(&mut co);
        }
        best.0 = best.0.min((thread_cpu().as_nanos() - t) as f64 / n as f64);
        let t = thread_cpu().as_nanos();
        for _ in 0..n {
            black_box(raw.resume(()));
        }
        best.1 = best.1.min((thread_cpu().as_nanos() - t) as f64 / n as f64);
    }
    println!(
        "resume_suspend_cpu_time: urgent {:.2} ns, corosensei alone {:.2} ns per round trip \
         (thread CPU time, best of 3 x {n}; ratio {:.2}; target <= 5 ns)",
        best.0,
        best.1,
        best.0 / best.1
    );
}

/// Resident set size of this process in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm resident field");
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

fn rss_100k() {
    const N: usize = 100_000;
    const MIB: f64 = 1024.0 * 1024.0;
    let before = rss();
    let vmas_before = common::map_count();
    let t = Instant::now();
    let mut cos = Vec::with_capacity(N);
    for i in 0..N {
        let mut co = Coroutine::new(Stack::new(DEFAULT_STACK_SIZE).unwrap(), move || {
            let x = black_box(i);
            suspend(SuspendKind::Yield);
            black_box(x);
        });
        match co.resume() {
            Resume::Suspended(SuspendKind::Yield) => {}
            _ => unreachable!(),
        }
        cos.push(co);
    }
    let created = t.elapsed();
    let after = rss();
    let vmas = common::map_count();
    let t = Instant::now();
    for co in &mut cos {
        match co.resume() {
            Resume::Finished => {}
            _ => unreachable!(),
        }
    }
    drop(cos);
    let finished = t.elapsed();
    let end = rss();
    let grown = after.saturating_sub(before);
    println!(
        "suspended_100k_rss: {N} coroutines x {} KiB stacks, each suspended once: \
         RSS {:.1} MiB -> {:.1} MiB (+{:.1} MiB, {:.2} KiB per coroutine; target <= 1024 MiB in all), \
         VMAs {vmas_before} -> {vmas}, create+first resume {:.0} ms ({:.2} us each), \
         finish+drop {:.0} ms; RSS after drop {:.1} MiB",
        DEFAULT_STACK_SIZE / 1024,
        before as f64 / MIB,
        after as f64 / MIB,
        grown as f64 / MIB,
        grown as f64 / N as f64 / 1024.0,
        created.as_secs_f64() * 1e3,
        created.as_secs_f64() * 1e6 / N as f64,
        finished.as_secs_f64() * 1e3,
        end as f64 / MIB,
    );
}

fn main() {
    let mut c = config().configure_from_args();
    bench_switch(&mut c);
    c.final_summary();
    // A positional argument is a benchmark filter: run the RSS report only
    // when it is unfiltered or the filter names it.
    if selected("resume_suspend_cpu_time") {
        cpu_time_report();
    }
    if selected("suspended_100k_rss") {
        rss_100k();
    }
}
