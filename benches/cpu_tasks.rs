//! CPU tasks (`spawn_cpu`) against the DESIGN.md §7 targets, side by side in one run:
//!
//! 1. `spawn_cpu_join`: spawn + join of an empty closure from inside `block_on`,
//!    `urgent::spawn_cpu` vs tokio `spawn` (of an empty future) vs tokio
//!    `spawn_blocking`; one at a time (`spawn_cpu_join/*`) and in batches of
//!    `BATCH` spawns then join all (`spawn_cpu_join_batch/*`, amortises the
//!    `block_on` wake-ups), and one at a time from a task spawned on the runtime
//!    (`spawn_cpu_join_in_task/*`: no `block_on` wake-up per join at all). Criterion measures each id, then the three run again in
//!    interleaved rounds (A/B/C/A/B/C...), whose median ratios go into the table.
//!    Targets: urgent ≤ 2 × tokio spawn + join, ≤ 0.5 × tokio spawn_blocking + join.
//! 2. `cpu_slowdown`: the same deterministic call-free integer loop (~300 ms quick,
//!    ~1 s long) on (A) a plain std thread, and in `spawn_cpu` alone on a 1-worker
//!    runtime at quantum (B) 10 ms, (C) 1 ms, (D) 100 µs. Sysmon preempts it on every
//!    quantum expiry even with nothing else queued, and it is resumed at once, so
//!    this is the cost of preemption itself. Rounds interleave A/B/C/D; reported:
//!    median over rounds of the paired slowdown vs that round's A, in thread CPU
//!    time (the worker's own clock: it includes the signal handler, trampoline,
//!    requeue and resume, but not the time other processes take the core) and in
//!    wall time, and `metrics().preemptions()` per run. The table's "met" uses the
//!    CPU-time slowdown: on a shared, loaded machine the wall-time one mostly
//!    measures the other processes. Targets: ≤ 1 % at 10 ms, ≤ 3 % at 1 ms.
//! 3. `suspended_rss`: 100 000 `spawn_cpu` tasks that each touch a little stack and
//!    then `urgent::wait` on a shared gate; VmRSS before and once all are
//!    suspended. Target ≤ 1 GiB in all.
//!
//! A markdown table with all ratios/values and targets is printed at the end.
//!
//! ```text
//! cargo bench --bench cpu_tasks                        # quick (~2 s per criterion id)
//! URGENT_BENCH_LONG=1 cargo bench --bench cpu_tasks    # criterion defaults, 1 s loop
//! URGENT_BENCH_WORKERS=4 cargo bench --bench cpu_tasks # workers of parts 1 and 3
//! cargo bench --bench cpu_tasks -- cpu_slowdown        # one part (or spawn_cpu_join,
//!                                                      # suspended_rss)
//! ```

mod common;

use common::{fmt_time, long_run, median, selected, thread_cpu, urgent_rt, workers};
use criterion::Criterion;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Spawns per iteration of the batch variant of part 1.
const BATCH: usize = 100;
/// Tasks of part 3.
const SUSPENDED_TASKS: usize = 100_000;
/// Bytes of its stack each suspended task writes before it suspends.
const TOUCHED_STACK: usize = 1024;

/// One row of the final table: what, measured, target, met (None: no target).
struct Row {
    what: String,
    measured: String,
    target: &'static str,
    met: Option<bool>,
}

static ROWS: Mutex<Vec<Row>> = Mutex::new(Vec::new());

fn row(
    what: impl Into<String>,
    measured: impl Into<String>,
    target: &'static str,
    met: Option<bool>,
) {
    ROWS.lock().unwrap().push(Row {
        what: what.into(),
        measured: measured.into(),
        target,
        met,
    });
}

// ---------------------------------------------------------------------------
// Part 1: spawn + join of an empty closure.
// ---------------------------------------------------------------------------

/// The three contenders, each timing `iters` iterations of one spawn + join
/// (`batch == 1`) or of `batch` spawns then `batch` joins, from inside `block_on`.
#[derive(Clone, Copy, PartialEq)]
enum Who {
    UrgentSpawnCpu,
    TokioSpawn,
    TokioSpawnBlocking,
}

impl Who {
    const ALL: [Who; 3] = [
        Who::UrgentSpawnCpu,
        Who::TokioSpawn,
        Who::TokioSpawnBlocking,
    ];

    fn id(self) -> &'static str {
        match self {
            Who::UrgentSpawnCpu => "urgent_spawn_cpu",
            Who::TokioSpawn => "tokio_spawn",
            Who::TokioSpawnBlocking => "tokio_spawn_blocking",
        }
    }
}

struct Runtimes {
    urgent: urgent::Runtime,
    tokio: tokio::runtime::Runtime,
}

/// `iters` iterations of one spawn + join (`batch == 1`) or of `batch` spawns then
/// `batch` joins, of `$spawn(empty)`, timed from inside the awaiting task.
macro_rules! spawn_join_body {
    ($batch:expr, $iters:expr, $spawn:expr) => {
        async move {
            let (batch, iters) = ($batch, $iters);
            let mut hs = Vec::with_capacity(batch);
            let start = Instant::now();
            for _ in 0..iters {
                if batch == 1 {
                    $spawn.await.unwrap();
                } else {
                    hs.extend((0..batch).map(|_| $spawn));
                    for h in hs.drain(..) {
                        h.await.unwrap();
                    }
                }
            }
            start.elapsed()
        }
    };
}

/// Where the spawning and awaiting task runs.
#[derive(Clone, Copy, PartialEq)]
enum Joiner {
    /// The `block_on` future itself, on the bench thread: each join wakes it.
    BlockOn,
    /// A task spawned on the runtime (awaited by `block_on` once per batch of
    /// iterations): spawner, spawned task and joiner are on the workers.
    Task,
}

/// `spawn_join_body!($spawn)` awaited where `$from` says, on runtime `$rt`.
macro_rules! spawn_join_from {
    ($rt:expr, $from:expr, $batch:expr, $iters:expr, $spawn:expr) => {
        match $from {
            Joiner::BlockOn => $rt.block_on(spawn_join_body!($batch, $iters, $spawn)),
            Joiner::Task => $rt
                .block_on($rt.spawn(spawn_join_body!($batch, $iters, $spawn)))
                .unwrap(),
        }
    };
}

impl Runtimes {
    fn run(&self, who: Who, from: Joiner, batch: usize, iters: u64) -> Duration {
        let (u, t) = (&self.urgent, &self.tokio);
        match who {
            Who::UrgentSpawnCpu => {
                spawn_join_from!(u, from, batch, iters, urgent::spawn_cpu(|| black_box(())))
            }
            Who::TokioSpawn => {
                spawn_join_from!(t, from, batch, iters, tokio::spawn(async { black_box(()) }))
            }
            Who::TokioSpawnBlocking => spawn_join_from!(
                t,
                from,
                batch,
                iters,
                tokio::task::spawn_blocking(|| black_box(()))
            ),
        }
    }
}

/// Interleaved rounds A/B/C/A/B/C...: each round runs each contender for the same
/// number of iterations; returns the median ns per iteration of each contender and
/// the medians over rounds of the per-round ratios urgent/tokio_spawn and
/// urgent/tokio_spawn_blocking.
fn interleaved(rts: &Runtimes, from: Joiner, batch: usize) -> ([f64; 3], [f64; 2]) {
    // Iterations per turn: ~20 ms of the slowest contender.
    let probe = rts.run(Who::TokioSpawnBlocking, from, batch, 50).as_nanos() as f64 / 50.0;
    let iters = ((20e6 / probe.max(1.0)) as u64).clamp(10, 100_000);
    let rounds = if long_run() { 41 } else { 15 };
    let mut per: [Vec<f64>; 3] = Default::default();
    let mut ratios: [Vec<f64>; 2] = Default::default();
    for round in 0..rounds {
        let mut t = [0.0; 3];
        // Rotate the order each round so that no contender always runs first.
        for k in 0..3 {
            let i = (round + k) % 3;
            t[i] = rts.run(Who::ALL[i], from, batch, iters).as_nanos() as f64 / iters as f64;
        }
        for i in 0..3 {
            per[i].push(t[i]);
        }
        ratios[0].push(t[0] / t[1]);
        ratios[1].push(t[0] / t[2]);
    }
    let m = |v: &mut Vec<f64>| median(v);
    (
        [m(&mut per[0]), m(&mut per[1]), m(&mut per[2])],
        [m(&mut ratios[0]), m(&mut ratios[1])],
    )
}

fn part_spawn_join(c: &mut Criterion) {
    let rts = Runtimes {
        urgent: urgent_rt(workers(), None),
        tokio: common::tokio_rt(workers()),
    };
    for (group_name, from, batch, label) in [
        (
            "spawn_cpu_join",
            Joiner::BlockOn,
            1,
            "in `block_on`, 1 spawn + join",
        ),
        (
            "spawn_cpu_join_batch",
            Joiner::BlockOn,
            BATCH,
            "in `block_on`, 100 spawns, then join all",
        ),
        (
            "spawn_cpu_join_in_task",
            Joiner::Task,
            1,
            "in a spawned task, 1 spawn + join",
        ),
    ] {
        {
            let mut g = c.benchmark_group(group_name);
            for who in Who::ALL {
                let rts = &rts;
                g.bench_function(who.id(), move |b| {
                    b.iter_custom(|iters| rts.run(who, from, batch, iters))
                });
            }
            g.finish();
        }
        let (t, [r_spawn, r_blocking]) = interleaved(&rts, from, batch);
        let per_task = |ns: f64| fmt_time(ns / batch as f64, 2);
        println!(
            "{group_name}: interleaved, per task: urgent {} | tokio spawn {} | tokio spawn_blocking {}; \
             urgent/spawn = {r_spawn:.2}, urgent/spawn_blocking = {r_blocking:.2}",
            per_task(t[0]),
            per_task(t[1]),
            per_task(t[2]),
        );
        for (tokio_fn, ratio, tokio_ns, target, limit) in [
            ("spawn", r_spawn, t[1], "≤ 2×", 2.0),
            ("spawn_blocking", r_blocking, t[2], "≤ 0.5×", 0.5),
        ] {
            row(
                format!("`spawn_cpu` + join ({label}) / tokio `{tokio_fn}` + join"),
                format!(
                    "{ratio:.2}× ({} vs {} per task)",
                    per_task(t[0]),
                    per_task(tokio_ns)
                ),
                target,
                Some(ratio <= limit),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Part 2: slowdown of CPU work under preemption.
// ---------------------------------------------------------------------------

/// Deterministic, call-free integer loop (a serial dependency chain the compiler
/// cannot vectorise or close-form).
#[inline(never)]
fn work(iters: u64) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut y: u64 = 1;
    let mut i = 0u64;
    while i < iters {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i) ^ (x >> 29);
        y = y.rotate_left(7) ^ x;
        i += 1;
    }
    x ^ y
}

/// `work(iters)` with the thread CPU time it took; on a CPU task, the task is
/// bound to its worker, so both readings are on the same thread and the CPU time
/// includes the preemptions (handler, trampoline, requeue, resume).
fn timed_work(iters: u64) -> (u64, Duration) {
    let c0 = thread_cpu();
    let r = work(black_box(iters));
    (r, thread_cpu() - c0)
}

struct Run {
    wall: Duration,
    cpu: Duration,
    preemptions: u64,
}

fn on_thread(iters: u64, expect: u64) -> Run {
    let start = Instant::now();
    let (r, cpu) = std::thread::spawn(move || timed_work(iters))
        .join()
        .unwrap();
    let wall = start.elapsed();
    assert_eq!(r, expect, "work() result differs on a plain thread");
    Run {
        wall,
        cpu,
        preemptions: 0,
    }
}

fn on_urgent(quantum: Duration, iters: u64, expect: u64) -> Run {
    let rt = urgent_rt(1, Some(quantum));
    // Warm the worker and its stack pool (not timed).
    rt.block_on(rt.spawn_cpu(|| ())).unwrap();
    let before = rt.metrics().preemptions();
    let start = Instant::now();
    let (r, cpu) = rt
        .block_on(rt.spawn_cpu(move || timed_work(iters)))
        .unwrap();
    let wall = start.elapsed();
    let preemptions = rt.metrics().preemptions() - before;
    assert_eq!(
        r, expect,
        "work() result differs under spawn_cpu at {quantum:?}"
    );
    drop(rt);
    Run {
        wall,
        cpu,
        preemptions,
    }
}

fn part_cpu_slowdown() {
    let target = if long_run() {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(300)
    };
    let rounds = if long_run() { 9 } else { 7 };
    // Calibrate on a plain thread: best of 3 of a short run.
    let probe_iters = 20_000_000u64;
    let probe = (0..3)
        .map(|_| on_thread(probe_iters, work(probe_iters)).cpu)
        .min()
        .unwrap();
    let iters = (probe_iters as f64 * target.as_secs_f64() / probe.as_secs_f64()) as u64;
    let expect = work(iters);
    println!(
        "cpu_slowdown: {iters} iterations (~{target:?} on a plain thread), {rounds} rounds interleaved A/B/C/D"
    );

    let quanta = [
        ("10 ms", Duration::from_millis(10), Some((1.0, "≤ 1 %"))),
        ("1 ms", Duration::from_millis(1), Some((3.0, "≤ 3 %"))),
        ("100 µs", Duration::from_micros(100), None),
    ];
    let mut plain = Vec::new();
    let mut runs: Vec<Vec<Run>> = quanta.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        let a = on_thread(iters, expect);
        print!(
            "  round {round}: plain {:.1} ms (cpu {:.1})",
            a.wall.as_secs_f64() * 1e3,
            a.cpu.as_secs_f64() * 1e3
        );
        plain.push(a);
        for (i, (name, q, _)) in quanta.iter().enumerate() {
            let r = on_urgent(*q, iters, expect);
            print!(
                " | {name}: {:.1} ms (cpu {:.1}, {} preemptions)",
                r.wall.as_secs_f64() * 1e3,
                r.cpu.as_secs_f64() * 1e3,
                r.preemptions
            );
            runs[i].push(r);
        }
        println!();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut pw: Vec<f64> = plain.iter().map(|r| ms(r.wall)).collect();
    let mut pc: Vec<f64> = plain.iter().map(|r| ms(r.cpu)).collect();
    println!(
        "  plain thread: median wall {:.1} ms, cpu {:.1} ms",
        median(&mut pw),
        median(&mut pc)
    );
    let mut last_cost_us = f64::NAN;
    for ((name, q, tgt), rs) in quanta.iter().zip(&runs) {
        let mut wall_pct: Vec<f64> = rs
            .iter()
            .zip(&plain)
            .map(|(r, a)| (ms(r.wall) / ms(a.wall) - 1.0) * 100.0)
            .collect();
        let mut cpu_pct: Vec<f64> = rs
            .iter()
            .zip(&plain)
            .map(|(r, a)| (ms(r.cpu) / ms(a.cpu) - 1.0) * 100.0)
            .collect();
        let mut pre: Vec<f64> = rs.iter().map(|r| r.preemptions as f64).collect();
        let (lo, hi) = (
            wall_pct.iter().cloned().fold(f64::INFINITY, f64::min),
            wall_pct.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        );
        let w = median(&mut wall_pct);
        let c = median(&mut cpu_pct);
        let p = median(&mut pre);
        let expected = target.as_secs_f64() / q.as_secs_f64();
        // Extra worker CPU time per preemption, from the medians.
        let plain_cpu = median(&mut pc.clone());
        let per_preemption_us = c / 100.0 * plain_cpu * 1e3 / p.max(1.0);
        println!(
            "  quantum {name}: slowdown median wall {w:+.2} % (range {lo:+.2}..{hi:+.2}), cpu {c:+.2} %; \
             preemptions/run median {p:.0} (run length / quantum = {expected:.0}); \
             extra worker CPU per preemption ≈ {per_preemption_us:.1} µs"
        );
        let (target_txt, met) = match tgt {
            Some((limit, txt)) => (*txt, Some(c <= *limit)),
            None => ("—", None),
        };
        row(
            format!("CPU work in `spawn_cpu`, quantum {name}, slowdown vs plain thread"),
            format!(
                "thread CPU {c:+.2} % (wall {w:+.2} %); {p:.0} preemptions/run, \
                 ≈ {per_preemption_us:.1} µs CPU each"
            ),
            target_txt,
            met,
        );
        last_cost_us = per_preemption_us;
    }
    // The 100 µs run has ~100× the preemptions of the 10 ms one, so its cost per
    // preemption is the least noisy estimate; what it predicts for the others
    // (at one preemption per quantum of CPU time).
    let pred = |q_ms: f64| last_cost_us / (q_ms * 1e3) * 100.0;
    println!(
        "  from the 100 µs run: {last_cost_us:.1} µs of worker CPU per preemption predicts \
         {:+.2} % at 10 ms, {:+.2} % at 1 ms",
        pred(10.0),
        pred(1.0)
    );
    row(
        "CPU work slowdown predicted from the 100 µs run's cost per preemption",
        format!(
            "{last_cost_us:.1} µs/preemption → {:+.2} % at 10 ms, {:+.2} % at 1 ms",
            pred(10.0),
            pred(1.0)
        ),
        "≤ 1 % / ≤ 3 %",
        Some(pred(10.0) <= 1.0 && pred(1.0) <= 3.0),
    );
}

// ---------------------------------------------------------------------------
// Part 3: resident memory of 100 000 suspended CPU tasks.
// ---------------------------------------------------------------------------

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

#[inline(never)]
fn touch_stack() {
    let mut buf = [0u8; TOUCHED_STACK];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = i as u8;
    }
    black_box(&mut buf);
}

fn part_suspended_rss() {
    let n = SUSPENDED_TASKS;
    let rt = urgent_rt(workers(), None);
    // Warm the runtime (workers, pools) before the baseline.
    rt.block_on(rt.spawn_cpu(|| ())).unwrap();
    let rss0 = status_kib("VmRSS:");
    let maps0 = common::map_count();
    let suspended = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let gate = futures::future::FutureExt::shared(rx);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let gate = gate.clone();
        let suspended = suspended.clone();
        handles.push(rt.spawn_cpu(move || {
            touch_stack();
            suspended.fetch_add(1, SeqCst);
            urgent::wait(gate).unwrap();
        }));
    }
    drop(gate);
    // Wait until all of them have reached `wait` (or stopped making progress).
    let mut last = (0, Instant::now());
    loop {
        let k = suspended.load(SeqCst);
        if k == n {
            break;
        }
        if k != last.0 {
            last = (k, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The last increments happen just before the final switches out.
    std::thread::sleep(Duration::from_millis(100));
    let reached = suspended.load(SeqCst);
    let spawn_s = start.elapsed().as_secs_f64();
    let rss1 = status_kib("VmRSS:");
    let maps1 = common::map_count();
    let live = rt.metrics().live_tasks();
    let _ = tx.send(());
    let errors: Vec<String> = rt.block_on(async {
        let mut errors = Vec::new();
        for h in handles {
            if let Err(e) = h.await {
                errors.push(e.to_string());
            }
        }
        errors
    });
    let delta = rss1.saturating_sub(rss0);
    let per_task = delta as f64 / n as f64;
    println!(
        "suspended_rss: {reached}/{n} suspended after {spawn_s:.2} s ({live} live tasks); \
         VmRSS {rss0} kB -> {rss1} kB, delta {:.1} MiB = {per_task:.2} KiB/task; \
         mappings {maps0} -> {maps1}; {} failed",
        delta as f64 / 1024.0,
        errors.len()
    );
    if let Some(e) = errors.first() {
        println!("  first error, verbatim: {e}");
    }
    let all = reached == n && errors.is_empty();
    row(
        format!("{n} suspended `spawn_cpu` tasks: VmRSS growth"),
        if all {
            format!(
                "{:.1} MiB ({per_task:.2} KiB/task; total VmRSS {:.1} MiB)",
                delta as f64 / 1024.0,
                rss1 as f64 / 1024.0
            )
        } else {
            format!(
                "FAILED: {reached}/{n} suspended, {} errors; first: {}",
                errors.len(),
                errors.first().map_or("none", |s| s.as_str())
            )
        },
        "≤ 1 GiB",
        Some(all && delta <= 1024 * 1024),
    );
}

// ---------------------------------------------------------------------------

fn print_table() {
    let rows = ROWS.lock().unwrap();
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "`cargo bench --bench cpu_tasks`{}: {} workers (parts 1 and 3), 1 worker (CPU work); \
         medians of interleaved rounds",
        if long_run() {
            " (URGENT_BENCH_LONG=1)"
        } else {
            ""
        },
        workers()
    );
    println!();
    println!("| what | measured | target | met |");
    println!("|---|---|---|---|");
    for r in rows.iter() {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        println!("| {} | {} | {} | {met} |", r.what, r.measured, r.target);
    }
}

fn main() {
    let mut c = common::criterion(20).configure_from_args();
    if selected("spawn_cpu_join") {
        part_spawn_join(&mut c);
    }
    if selected("cpu_slowdown") {
        part_cpu_slowdown();
    }
    if selected("suspended_rss") {
        part_suspended_rss();
    }
    c.final_summary();
    print_table();
}
