//! tokio's `benches/rt_multi_threaded.rs` shapes, run on urgent and on tokio side by
//! side: one criterion group per shape, with the ids `<shape>/urgent` and
//! `<shape>/tokio`, both runtimes with the same number of workers.
//!
//! ```text
//! cargo bench --bench rt_multi_threaded                 # quick run (~2 s per id)
//! URGENT_BENCH_LONG=1 cargo bench --bench rt_multi_threaded   # criterion defaults
//! URGENT_BENCH_WORKERS=4 cargo bench --bench rt_multi_threaded
//! cargo bench --bench rt_multi_threaded -- ping_pong    # one shape
//! ```
//!
//! After each group, the same two runtimes run again in alternating equal batches
//! (see `ab_compare`), and at the end a table of the urgent/tokio time ratio per
//! shape is printed: criterion's medians and the interleaved A/B ratio, which is the
//! one to quote in BENCHMARKS.md (target DESIGN.md §7: ≤ 1.0 each, never above 1.25).
//!
//! Each shape is written once, in the `shapes!` macro, and instantiated for both
//! runtimes; the two runtimes have the same method names (`block_on`, `spawn`,
//! `handle().spawn`), only the free functions (`spawn`, `yield_now`) differ.
//! Channels are the same for both: `std::sync::mpsc` and `futures::channel::oneshot`.
//! Each runtime is built once per shape, with `worker_threads(URGENT_BENCH_WORKERS)`
//! (default 2), tokio with `enable_all()`.

mod common;

use common::{fmt_time, long_run, quantile, workers};
use criterion::Criterion;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Tasks spawned per iteration in the `spawn_many_*` shapes.
const NUM_SPAWN: usize = 10_000;
/// `yield_many`: tasks, and yields per task.
const YIELD_TASKS: usize = 200;
const NUM_YIELD: usize = 1_000;
/// `ping_pong`: pairs of tasks per iteration.
const NUM_PINGS: usize = 1_000;
/// `chained_spawn`: length of the chain.
const CHAIN_LEN: usize = 1_000;
/// `spawn_many_remote_busy`: CPU time a busy task burns between two yields.
const STALL_DUR: Duration = Duration::from_micros(10);

/// Burn CPU for `STALL_DUR` without giving the thread up.
fn stall() {
    let start = Instant::now();
    while start.elapsed() < STALL_DUR {
        std::hint::spin_loop();
    }
}

/// Which `<shape>/<runtime>` ids criterion actually measured in this process (a
/// filter on the command line skips the others); only those go into the table.
static RAN: Mutex<BTreeSet<(&'static str, &'static str)>> = Mutex::new(BTreeSet::new());

fn mark_ran(shape: &'static str, runtime: &'static str) {
    RAN.lock().unwrap().insert((shape, runtime));
}

/// A countdown shared by the tasks of one iteration: the task that brings it to zero
/// fires `done`.
struct Countdown {
    rem: AtomicUsize,
    done: Mutex<Option<futures::channel::oneshot::Sender<()>>>,
}

impl Countdown {
    fn new(n: usize) -> (Arc<Self>, futures::channel::oneshot::Receiver<()>) {
        let (tx, rx) = futures::channel::oneshot::channel();
        let c = Countdown {
            rem: AtomicUsize::new(n),
            done: Mutex::new(Some(tx)),
        };
        (Arc::new(c), rx)
    }

    fn tick(&self) {
        if self.rem.fetch_sub(1, AcqRel) == 1 {
            let tx = self
                .done
                .lock()
                .unwrap()
                .take()
                .expect("countdown fired twice");
            tx.send(()).expect("the waiter is gone");
        }
    }
}

/// Times `iters` runs of `body`.
fn timed(iters: u64, mut body: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        body();
    }
    start.elapsed()
}

/// A shape bound to one runtime: runs the shape `iters` times and returns the time
/// that took, the signature of criterion's `Bencher::iter_custom`. Setup that must
/// not be timed (the busy tasks of `spawn_many_remote_busy`) happens inside, around
/// the timed part.
type Batch<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

/// Instantiates every shape for one runtime, as module `$module`. `$Rt` is the
/// runtime type, `$spawn` spawns onto the current runtime from inside it,
/// `$yield_now` is the runtime's `yield_now`.
macro_rules! shapes {
    ($module:ident, $Rt:ty, $spawn:path, $yield_now:path) => {
        mod $module {
            use super::*;
            use futures::channel::oneshot;

            /// From inside one task, spawn `n` tasks made by `task`, each given a
            /// countdown that it ticks when done; `block_on` waits for the last one.
            fn fan_out<F>(
                rt: &$Rt,
                n: usize,
                task: impl Fn(Arc<Countdown>) -> F + Copy + Send + 'static,
            ) -> Batch<'_>
            where
                F: std::future::Future<Output = ()> + Send + 'static,
            {
                Box::new(move |iters| {
                    timed(iters, || {
                        let (countdown, done) = Countdown::new(n);
                        rt.block_on(async move {
                            drop($spawn(async move {
                                for _ in 0..n {
                                    drop($spawn(task(countdown.clone())));
                                }
                            }));
                            done.await.unwrap();
                        });
                    })
                })
            }

            /// From inside one task, spawn `NUM_SPAWN` tasks that each tick a countdown;
            /// `block_on` waits for the last one.
            pub fn spawn_many_local(rt: &$Rt) -> Batch<'_> {
                fan_out(rt, NUM_SPAWN, |countdown| async move { countdown.tick() })
            }

            /// From the bench thread (outside the runtime), spawn `NUM_SPAWN` empty
            /// tasks through the handle, then await every `JoinHandle` in `block_on`.
            pub fn spawn_many_remote_idle(rt: &$Rt) -> Batch<'_> {
                let handle = rt.handle();
                let mut handles = Vec::with_capacity(NUM_SPAWN);
                Box::new(move |iters| {
                    timed(iters, || {
                        for _ in 0..NUM_SPAWN {
                            handles.push(handle.spawn(async {}));
                        }
                        rt.block_on(async {
                            for h in handles.drain(..) {
                                h.await.unwrap();
                            }
                        });
                    })
                })
            }

            /// `spawn_many_remote_idle` while every worker is kept busy by 2 × workers
            /// tasks that burn `STALL_DUR` of CPU and yield, in a loop. The busy tasks
            /// are started before and stopped after each batch, untimed, so that they
            /// never run while the other runtime is measured.
            pub fn spawn_many_remote_busy(rt: &$Rt) -> Batch<'_> {
                let mut remote_idle = spawn_many_remote_idle(rt);
                Box::new(move |iters| {
                    let busy = Arc::new(AtomicBool::new(true));
                    let busy_tasks: Vec<_> = (0..2 * workers())
                        .map(|_| {
                            let busy = busy.clone();
                            rt.spawn(async move {
                                while busy.load(Relaxed) {
                                    $yield_now().await;
                                    stall();
                                }
                            })
                        })
                        .collect();
                    let elapsed = remote_idle(iters);
                    busy.store(false, Relaxed);
                    rt.block_on(async {
                        for h in busy_tasks {
                            h.await.unwrap();
                        }
                    });
                    elapsed
                })
            }

            /// From the bench thread, spawn `YIELD_TASKS` tasks that each yield
            /// `NUM_YIELD` times; the bench thread waits on a channel.
            pub fn yield_many(rt: &$Rt) -> Batch<'_> {
                let (tx, rx) = mpsc::sync_channel(YIELD_TASKS);
                Box::new(move |iters| {
                    timed(iters, || {
                        for _ in 0..YIELD_TASKS {
                            let tx = tx.clone();
                            drop(rt.spawn(async move {
                                for _ in 0..NUM_YIELD {
                                    $yield_now().await;
                                }
                                tx.send(()).unwrap();
                            }));
                        }
                        for _ in 0..YIELD_TASKS {
                            rx.recv().unwrap();
                        }
                    })
                })
            }

            /// A task spawns `NUM_PINGS` tasks; each spawns a partner and the two
            /// exchange one message each way over oneshots. `block_on` waits for all.
            pub fn ping_pong(rt: &$Rt) -> Batch<'_> {
                fan_out(rt, NUM_PINGS, |countdown| async move {
                    let (ping_tx, ping_rx) = oneshot::channel::<()>();
                    let (pong_tx, pong_rx) = oneshot::channel::<()>();
                    drop($spawn(async move {
                        ping_rx.await.unwrap();
                        pong_tx.send(()).unwrap();
                    }));
                    ping_tx.send(()).unwrap();
                    pong_rx.await.unwrap();
                    countdown.tick();
                })
            }

            /// Each task spawns the next, `CHAIN_LEN` deep; the last one signals
            /// `block_on`.
            pub fn chained_spawn(rt: &$Rt) -> Batch<'_> {
                fn link(done: oneshot::Sender<()>, n: usize) {
                    if n == 0 {
                        done.send(()).unwrap();
                    } else {
                        drop($spawn(async move { link(done, n - 1) }));
                    }
                }
                Box::new(move |iters| {
                    timed(iters, || {
                        rt.block_on(async {
                            let (done_tx, done_rx) = oneshot::channel();
                            drop($spawn(async move { link(done_tx, CHAIN_LEN) }));
                            done_rx.await.unwrap();
                        });
                    })
                })
            }
        }
    };
}

shapes!(
    on_urgent,
    ::urgent::Runtime,
    ::urgent::spawn,
    ::urgent::task::yield_now
);
shapes!(
    on_tokio,
    ::tokio::runtime::Runtime,
    ::tokio::spawn,
    ::tokio::task::yield_now
);

type Shape<R> = for<'a> fn(&'a R) -> Batch<'a>;

/// The interleaved A/B comparison of one shape (see `ab_compare`).
#[derive(Clone, Debug)]
struct Ab {
    rounds: usize,
    iters: u64,
    /// Median, 25th and 75th percentile of the per-round urgent/tokio time ratio.
    ratio: [f64; 3],
    /// Median time per iteration over the rounds, ns.
    urgent_ns: f64,
    tokio_ns: f64,
}

static AB: Mutex<Vec<(&'static str, Ab)>> = Mutex::new(Vec::new());

/// Whether this process measures for real: `cargo bench` passes `--bench`, and
/// `--test` (or `cargo test --benches`, which passes no `--bench`) makes criterion run
/// each routine once without measuring.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench")
        && !args
            .iter()
            .any(|a| a == "--test" || a == "--list" || a == "--profile-time")
}

/// Criterion measures urgent, then tokio, a few seconds apart; on a shared 2-vCPU VM
/// the load drifts in between by more than the differences we look for (the same
/// runtime measured twice that way differed by up to 1.6×). So the table's ratio
/// comes from batches of the same size run alternately on the two runtimes (the
/// order swapped every round); each round gives one urgent/tokio ratio, and the
/// median of those is reported with its quartiles.
fn ab_compare(urgent: &mut Batch<'_>, tokio: &mut Batch<'_>) -> Ab {
    let rounds = if long_run() { 41 } else { 21 };
    let target = Duration::from_millis(if long_run() { 200 } else { 80 });
    // Warm both up, then size the batches from the faster of the two runtimes' best
    // time per iteration (a single slow calibration run would make every batch one
    // iteration long, and the ratios noisy).
    urgent(1);
    tokio(1);
    let one = (0..3)
        .flat_map(|_| [urgent(1), tokio(1)])
        .min()
        .unwrap()
        .as_secs_f64();
    let iters = ((target.as_secs_f64() / one.max(1e-9)) as u64).clamp(1, 100_000);
    let (mut ratios, mut u_ns, mut t_ns) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (u, t) = if round % 2 == 0 {
            let u = urgent(iters);
            (u, tokio(iters))
        } else {
            let t = tokio(iters);
            (urgent(iters), t)
        };
        ratios.push(u.as_secs_f64() / t.as_secs_f64());
        u_ns.push(u.as_secs_f64() * 1e9 / iters as f64);
        t_ns.push(t.as_secs_f64() * 1e9 / iters as f64);
    }
    for v in [&mut ratios, &mut u_ns, &mut t_ns] {
        v.sort_by(f64::total_cmp);
    }
    Ab {
        rounds,
        iters,
        ratio: [
            quantile(&ratios, 0.5),
            quantile(&ratios, 0.25),
            quantile(&ratios, 0.75),
        ],
        urgent_ns: quantile(&u_ns, 0.5),
        tokio_ns: quantile(&t_ns, 0.5),
    }
}

/// One criterion group per shape, `<shape>/urgent` then `<shape>/tokio`, each runtime
/// built once for the group; then the interleaved A/B pass over the same runtimes.
fn group(
    c: &mut Criterion,
    shape: &'static str,
    on_urgent: Shape<::urgent::Runtime>,
    on_tokio: Shape<::tokio::runtime::Runtime>,
) {
    let urgent_rt = common::urgent_rt(workers(), None);
    let tokio_rt = common::tokio_rt(workers());
    let mut urgent = on_urgent(&urgent_rt);
    let mut tokio = on_tokio(&tokio_rt);

    let mut g = c.benchmark_group(shape);
    g.bench_function("urgent", |b| {
        mark_ran(shape, "urgent");
        b.iter_custom(&mut urgent)
    });
    g.bench_function("tokio", |b| {
        mark_ran(shape, "tokio");
        b.iter_custom(&mut tokio)
    });
    g.finish();

    let ran = RAN.lock().unwrap().clone();
    if measuring() && ran.contains(&(shape, "urgent")) && ran.contains(&(shape, "tokio")) {
        let ab = ab_compare(&mut urgent, &mut tokio);
        println!(
            "{shape}: interleaved A/B, {} rounds x {} iterations: urgent/tokio = {:.3} (quartiles {:.3}..{:.3})",
            ab.rounds, ab.iters, ab.ratio[0], ab.ratio[1], ab.ratio[2]
        );
        AB.lock().unwrap().push((shape, ab));
    }
}

/// Where criterion writes its results, found the way criterion finds it.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // The bench binary is <target>/<profile>/deps/<name>-<hash>.
    if let Some(target) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
    {
        return target.join("criterion");
    }
    PathBuf::from("target/criterion")
}

/// The median point estimate (ns per iteration) from criterion's `estimates.json`.
/// The file is a single JSON object; its `"median"` entry holds a
/// `"point_estimate"` number, which is all we need, so no JSON parser.
fn median_ns(shape: &str, runtime: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(shape)
        .join(runtime)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let median = &text[text.find("\"median\"")?..];
    let value = &median[median.find("\"point_estimate\"")? + "\"point_estimate\"".len()..];
    let value = value.trim_start().strip_prefix(':')?.trim_start();
    let end = value
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')))
        .unwrap_or(value.len());
    value[..end].parse().ok()
}

fn print_ratio_table() {
    let ab = AB.lock().unwrap().clone();
    if ab.is_empty() {
        return;
    }
    println!();
    println!(
        "urgent vs tokio, {} workers each; time per iteration (target: urgent/tokio <= 1.00, never > 1.25)",
        workers()
    );
    println!();
    println!(
        "| {:<22} | {:>9} | {:>9} | {:>6} | {:>9} | {:>9} | {:>19} |",
        "shape", "urgent", "tokio", "ratio", "A/B urg.", "A/B tokio", "A/B ratio [q1, q3]"
    );
    println!(
        "|{:-<24}|{:->11}|{:->11}|{:->8}|{:->11}|{:->11}|{:->21}|",
        "", "", "", "", "", "", ""
    );
    for (shape, ab) in &ab {
        let u = median_ns(shape, "urgent");
        let t = median_ns(shape, "tokio");
        let time = |ns: f64| fmt_time(ns, 1);
        let show = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), time);
        let crit_ratio = match (u, t) {
            (Some(u), Some(t)) if t > 0.0 => format!("{:.2}", u / t),
            _ => "n/a".to_string(),
        };
        let [r, q1, q3] = ab.ratio;
        let flag = if r > 1.25 {
            " !!"
        } else if r > 1.0 {
            " !"
        } else {
            ""
        };
        println!(
            "| {:<22} | {:>9} | {:>9} | {:>6} | {:>9} | {:>9} | {:>19} |",
            shape,
            show(u),
            show(t),
            crit_ratio,
            time(ab.urgent_ns),
            time(ab.tokio_ns),
            format!("{r:.2} [{q1:.2}, {q3:.2}]{flag}")
        );
    }
    println!();
    println!(
        "urgent, tokio, ratio: criterion's median estimates (from {}), measured one after the other.",
        criterion_dir().display()
    );
    println!(
        "A/B: medians over rounds that alternate the two runtimes with equal batches; the ratio to quote."
    );
    println!("!: ratio above 1.00; !!: above 1.25");
}

fn main() {
    let mut c = common::criterion(20).configure_from_args();
    group(
        &mut c,
        "spawn_many_local",
        on_urgent::spawn_many_local,
        on_tokio::spawn_many_local,
    );
    group(
        &mut c,
        "spawn_many_remote_idle",
        on_urgent::spawn_many_remote_idle,
        on_tokio::spawn_many_remote_idle,
    );
    group(
        &mut c,
        "spawn_many_remote_busy",
        on_urgent::spawn_many_remote_busy,
        on_tokio::spawn_many_remote_busy,
    );
    group(
        &mut c,
        "yield_many",
        on_urgent::yield_many,
        on_tokio::yield_many,
    );
    group(
        &mut c,
        "ping_pong",
        on_urgent::ping_pong,
        on_tokio::ping_pong,
    );
    group(
        &mut c,
        "chained_spawn",
        on_urgent::chained_spawn,
        on_tokio::chained_spawn,
    );
    c.final_summary();
    print_ratio_table();
}
