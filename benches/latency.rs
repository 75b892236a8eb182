//! Latency under CPU load: urgent against tokio and Go (DESIGN §7).
//!
//! ```text
//! cargo bench --bench latency            # quick, about a minute
//! cargo bench --bench latency -- --long  # or URGENT_BENCH_LONG=1: longer windows
//! ```
//!
//! 1. **One worker**: a call-free spinner plus a task sleeping 1 ms in a loop;
//!    the sleep's overshoot. urgent at the default 10 ms quantum and at 1 ms,
//!    tokio (the spinner is a plain future; it stops after the window, which is
//!    the only time the sleeper wakes), and Go (`benches/go/sleeper.go`,
//!    `GOMAXPROCS=1`) when `go` is on PATH.
//! 2. **All workers**: 2 × workers call-free CPU hogs of ~200 ms each,
//!    respawned, plus a 1 ms ticker; the ticker's lateness against its
//!    schedule and the hogs' throughput. urgent (10 ms, 1 ms), tokio with the
//!    hogs as plain futures, tokio with the hogs in `spawn_blocking`. Then the
//!    same load with a TCP echo client instead of the ticker: a 64-byte
//!    request every 1 ms to an echo server on the same runtime (loopback).
//! 3. **Quantum sweep**: the scenario-2 load on urgent at 100 µs, 1 ms and
//!    10 ms, against a quantum longer than any hog (no preemption): ticker
//!    p99 and hog throughput lost.
//!
//! Prints tables and a markdown block for BENCHMARKS.md, and writes SVG plots
//! to `docs/` (`latency-one-worker-cdf.svg`, `latency-all-workers-cdf.svg`,
//! `latency-echo-cdf.svg`, `latency-quantum-sweep.svg`). The scenario code of
//! 2 and 3 is the README demo's (`examples/hogs.rs`).
//!
//! The machine may be shared: each run also reports how long the runtime's
//! threads waited for a CPU (schedstat) and the 1 ms sleep overshoot of a
//! plain OS thread over the same window (the floor), and hog throughput is
//! also given per CPU-second the threads got.

mod common;

#[path = "../examples/hogs.rs"]
#[allow(dead_code)]
mod hogs;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hogs::{fmt_dur, Kind, Load, Outcome, Work};

const SLEEP: Duration = Duration::from_millis(1);

/// Scenario 1: overshoot of 1 ms sleeps next to a call-free spinner on one
/// worker, on urgent at `quantum`, or (`None`) on tokio, where the spinner is a
/// plain future; it stops after `window`.
fn one_worker(quantum: Option<Duration>, window: Duration, work: Work) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let spinner = {
        let (stop, done) = (stop.clone(), done.clone());
        move || hogs::spin(u64::MAX, work.chunk, &stop, &done)
    };
    let measure = |_: &dyn Fn() -> Option<u64>| {
        let probe = hogs::Probe::start();
        std::thread::sleep(window);
        let floor = probe.finish_p99();
        stop.store(true, Relaxed);
        floor
    };
    let (label, (floor, samples, preemptions)) = match quantum {
        Some(quantum) => (
            format!("urgent, quantum {}", fmt_dur(quantum)),
            hogs::on_urgent::drive(
                hogs::urgent_rt(1, quantum),
                |rt| rt.spawn(sleeper(stop.clone(), urgent::time::sleep)),
                |rt| vec![rt.spawn_cpu(spinner)],
                measure,
            ),
        ),
        None => (
            "tokio (spinner stops after the window)".into(),
            hogs::on_tokio::drive(
                hogs::tokio_rt(1),
                |rt| rt.spawn(sleeper(stop.clone(), tokio::time::sleep)),
                |rt| vec![rt.spawn(async move { spinner() })],
                measure,
            ),
        ),
    };
    floored(
        Outcome::from_samples(label, samples, 0.0),
        floor,
        preemptions,
    )
}

/// `o` with the machine's floor (and the preemptions) over its window.
fn floored(mut o: Outcome, floor: f64, preemptions: Option<u64>) -> Outcome {
    o.floor_p99 = Some(floor);
    o.preemptions = preemptions;
    o
}

/// Scenario 1's sleeper: sleeps 1 ms in a loop until `stop` and returns each
/// sleep's overshoot (ns).
async fn sleeper<F: Future<Output = ()>>(
    stop: Arc<AtomicBool>,
    sleep: impl Fn(Duration) -> F,
) -> Vec<u64> {
    let mut v = Vec::new();
    loop {
        let t = Instant::now();
        sleep(SLEEP).await;
        v.push(t.elapsed().saturating_sub(SLEEP).as_nanos() as u64);
        if stop.load(Relaxed) {
            return v;
        }
    }
}

/// Scenario 1 in Go, if `go` is on PATH: builds `benches/go/sleeper.go` into
/// the target directory and runs it with GOMAXPROCS=1.
fn one_worker_go(window: Duration) -> Result<(Outcome, String), String> {
    let bin = common::go_build("sleeper")?;
    let probe = hogs::Probe::start();
    let out = Command::new(&bin)
        .arg("-secs")
        .arg(format!("{}", window.as_secs_f64()))
        .env("GOMAXPROCS", "1")
        .output()
        .map_err(|e| format!("run {}: {e}", bin.display()))?;
    let floor = probe.finish_p99();
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text
        .lines()
        .find(|l| l.starts_with("go="))
        .ok_or("sleeper.go printed no result line")?
        .to_string();
    let version = header
        .split_whitespace()
        .next()
        .unwrap_or("go=?")
        .trim_start_matches("go=")
        .to_string();
    let samples: Vec<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("samples_us:"))
        .ok_or("sleeper.go printed no samples")?
        .split_whitespace()
        .filter_map(|s| s.parse::<i64>().ok())
        .map(|us| us.max(0) as u64 * 1000)
        .collect();
    let o = Outcome::from_samples(format!("Go {version}, GOMAXPROCS=1"), samples, 0.0);
    Ok((floored(o, floor, None), header))
}

/// Reads the time-stamp counter: an instruction, not a call, so the spinner
/// stays call-free.
#[inline(always)]
fn tsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC ticks per ns, measured against `Instant`.
fn tsc_per_ns() -> f64 {
    let (t, c) = (Instant::now(), tsc());
    std::thread::sleep(Duration::from_millis(50));
    (tsc() - c) as f64 / t.elapsed().as_nanos() as f64
}

/// A call-free spinner that notes every gap of more than `min_gap` TSC
/// ticks between two of its loop turns (it was off the CPU: preempted by
/// urgent, or descheduled by the OS). Returns (start, end) of each gap.
#[inline(never)]
fn timeline_spin(stop: &AtomicBool, min_gap: u64, gaps: &mut Vec<(u64, u64)>) {
    let mut last = tsc();
    let mut x: u64 = 1;
    while !stop.load(Relaxed) {
        for i in 0..64u64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i) ^ (x >> 29);
        }
        let now = tsc();
        if now - last > min_gap && gaps.len() < gaps.capacity() {
            gaps.push((last, now));
        }
        last = now;
    }
    std::hint::black_box(x);
}

/// Where the one-worker latency goes: the spinner's uninterrupted run
/// lengths (sysmon deadline + signal delivery decide them) and the gaps
/// between runs (short: urgent switched to the sleeper and back; long: the
/// OS ran someone else), with the worker thread's schedstat run delay.
fn diagnose(quantum: Duration, window: Duration) -> String {
    let per_ns = tsc_per_ns();
    let rt = hogs::urgent_rt(1, quantum);
    let stop = Arc::new(AtomicBool::new(false));
    let sleeper = {
        let stop = stop.clone();
        rt.spawn(async move {
            while !stop.load(Relaxed) {
                urgent::time::sleep(SLEEP).await;
            }
        })
    };
    let min_gap = (20_000.0 * per_ns) as u64; // 20 µs
    let spinner = {
        let stop = stop.clone();
        rt.spawn_cpu(move || {
            let mut gaps = Vec::with_capacity(1 << 20);
            timeline_spin(&stop, min_gap, &mut gaps);
            gaps
        })
    };
    let (_, w0) = hogs::run_delay_ns();
    std::thread::sleep(window);
    let (_, w1) = hogs::run_delay_ns();
    stop.store(true, Relaxed);
    let gaps = rt.block_on(spinner).unwrap();
    rt.block_on(sleeper).unwrap();
    rt.shutdown_timeout(Duration::from_secs(1));
    let ns = |t: u64| t as f64 / per_ns;
    let mut runs: Vec<u64> = gaps
        .windows(2)
        .map(|w| ns(w[1].0 - w[0].1) as u64)
        .collect();
    let mut lens: Vec<u64> = gaps.iter().map(|g| ns(g.1 - g.0) as u64).collect();
    runs.sort_unstable();
    lens.sort_unstable();
    let q = |v: &[u64], p: f64| common::nearest_rank(v, p).map_or(f64::NAN, |n| n as f64 / 1e6);
    let long: Vec<u64> = lens.iter().copied().filter(|&l| l > 1_000_000).collect();
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} ({} ms) | {:.0} % |",
        fmt_dur(quantum),
        runs.len(),
        ms(q(&runs, 0.5)),
        ms(q(&runs, 0.99)),
        ms(q(&runs, 1.0)),
        ms(q(&lens, 0.5)),
        ms(q(&lens, 0.99)),
        ms(q(&lens, 1.0)),
        long.len(),
        ms(long.iter().sum::<u64>() as f64 / 1e6),
        (w1 - w0) as f64 / window.as_nanos() as f64 * 100.0,
    )
}

fn docs_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::create_dir_all(&dir).expect("create docs/");
    dir
}

/// Milliseconds to three significant digits; `-` for none (NaN).
fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        hogs::fmt_ms(v)
    }
}

/// Markdown table of lateness percentiles (+ optional extra columns).
fn md_table(
    first: &str,
    outcomes: &[&Outcome],
    extra_head: &[&str],
    extra: &dyn Fn(&Outcome) -> Vec<String>,
) -> String {
    let mut s = format!("| {first} | n | p50 ms | p99 ms | p99.9 ms | max ms |");
    for h in extra_head {
        s += &format!(" {h} |");
    }
    s += "\n|---|---:|---:|---:|---:|---:|";
    for _ in extra_head {
        s += "---:|";
    }
    s += "\n";
    for o in outcomes {
        let [p50, p99, p999, max] = o.ms_cells(ms);
        s += &format!(
            "| {} | {} | {p50} | {p99} | {p999} | {max} |",
            o.label,
            o.sorted_ns.len()
        );
        for e in extra(o) {
            s += &format!(" {e} |");
        }
        s += "\n";
    }
    s
}

/// Preemptions during the run (urgent only).
fn preemptions(o: &Outcome) -> String {
    o.preemptions.map_or("-".into(), |p| p.to_string())
}

/// The machine's floor: a plain thread's 1 ms sleep overshoot p99.
fn floor(o: &Outcome) -> String {
    o.floor_p99.map_or("-".into(), ms)
}

/// Share of the window the runtime's threads waited for a CPU (see
/// `hogs::run_delay_ns`).
fn os_wait(o: &Outcome) -> String {
    o.os_wait
        .map_or("-".into(), |w| format!("{:.0} %", w * 100.0))
}

/// Hog work per CPU-second the runtime's threads got, vs a plain thread.
fn eff(o: &Outcome) -> String {
    o.efficiency
        .map_or("-".into(), |e| format!("{:.1} %", e * 100.0))
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn plot_sweep(
    path: &Path,
    rows: &[(Duration, f64, f64)],
    baseline_p99: f64,
    workers: usize,
) -> Result<(), String> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1100, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(
            &format!(
                "urgent quantum sweep: {} hogs of 200 ms on {workers} workers + a 1 ms ticker \
                 (no preemption: ticker p99 {} ms)",
                2 * workers,
                ms(baseline_p99)
            ),
            ("sans-serif", 18),
        )
        .map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(550);
    let xs: Vec<f64> = rows.iter().map(|r| r.0.as_secs_f64() * 1e3).collect();
    let (xlo, xhi) = (0.05f64, 20.0f64);
    let panels: [(&DrawingArea<SVGBackend, _>, &str, Vec<f64>); 2] = [
        (
            &left,
            "ticker lateness p99 (ms)",
            rows.iter().map(|r| r.1).collect(),
        ),
        (
            &right,
            "hog throughput lost vs no preemption (%)",
            rows.iter().map(|r| r.2).collect(),
        ),
    ];
    for (i, (area, desc, ys)) in panels.into_iter().enumerate() {
        let ymax = ys.iter().cloned().fold(1.0f64, f64::max) * 1.25;
        let ymin = ys.iter().cloned().fold(0.0f64, f64::min) * 1.25;
        let mut chart = ChartBuilder::on(area)
            .margin(20)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d((xlo..xhi).log_scale(), ymin..ymax)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("quantum (ms, log scale)")
            .y_desc(desc)
            .draw()
            .map_err(|e| e.to_string())?;
        let color = hogs::COLORS[i * 2];
        let pts: Vec<(f64, f64)> = xs.iter().cloned().zip(ys.iter().cloned()).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, y)| Circle::new((x, y), 5, color.filled())),
            )
            .map_err(|e| e.to_string())?;
        if i == 0 {
            // The target: p99 ≤ quantum + 1 ms.
            let target: Vec<(f64, f64)> = (0..=40)
                .map(|k| {
                    let x = xlo * (xhi / xlo).powf(k as f64 / 40.0);
                    (x, x + 1.0)
                })
                .filter(|&(_, y)| y <= ymax)
                .collect();
            chart
                .draw_series(LineSeries::new(target, BLACK.mix(0.5).stroke_width(1)))
                .map_err(|e| e.to_string())?
                .label("target: quantum + 1 ms")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5).stroke_width(1))
                });
            hogs::draw_legend(&mut chart)?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo test --benches` probing
    }
    let long = args.iter().any(|a| a == "--long") || common::long_run();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (w1, w2) = if long {
        (Duration::from_secs(10), Duration::from_secs(10))
    } else {
        (Duration::from_secs(3), Duration::from_secs(3))
    };
    let started = Instant::now();
    let work = Work::calibrate();
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "latency bench ({} mode): {workers} CPUs, load average {}; one hog = {} iterations (~200 ms)",
        if long { "long" } else { "quick" },
        load_avg.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        work.per_hog()
    );
    let mut md = String::new();

    // 1. One worker.
    println!(
        "\n## 1. one worker: call-free spinner + a task sleeping 1 ms in a loop ({} s each)\n",
        w1.as_secs()
    );
    let u10 = one_worker(Some(urgent::runtime::DEFAULT_QUANTUM), w1, work);
    let u1 = one_worker(Some(Duration::from_millis(1)), w1, work);
    let tk = one_worker(None, w1, work);
    let go = one_worker_go(w1);
    let mut one: Vec<&Outcome> = vec![&u10, &u1, &tk];
    let go_note = match &go {
        Ok((o, header)) => {
            one.push(o);
            format!("Go: {header}")
        }
        Err(e) => format!(
            "Go: not measured: {e}. Install it (e.g. `apt-get install golang-go`) to get the Go row."
        ),
    };
    let t1 = md_table(
        "sleep overshoot",
        &one,
        &["preemptions", "floor p99 ms"],
        &|o| vec![preemptions(o), floor(o)],
    );
    println!("{t1}");
    println!("{go_note}");
    println!(
        "tokio: the sleeper woke {} time(s) in {} s; its worst sleep overshot by {} ms: it never \
         woke while the spinner ran.",
        tk.sorted_ns.len(),
        w1.as_secs(),
        ms(tk.max_ms())
    );
    let s1a = u10.ms(99.0) <= 11.0;
    let s1b = u1.ms(99.0) <= 1.5;
    println!(
        "targets: p99 ≤ 11 ms at 10 ms: {} ({} ms); p99 ≤ 1.5 ms at 1 ms: {} ({} ms)",
        verdict(s1a),
        ms(u10.ms(99.0)),
        verdict(s1b),
        ms(u1.ms(99.0))
    );
    let diag_head =
        "| quantum | runs | run p50 ms | run p99 ms | run max ms | gap p50 ms | gap p99 ms \
                     | gap max ms | gaps > 1 ms (total) | worker run-queue wait |\n\
                     |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    let diag = format!(
        "{diag_head}{}\n{}\n",
        diagnose(urgent::runtime::DEFAULT_QUANTUM, w1),
        diagnose(Duration::from_millis(1), w1)
    );
    println!(
        "\nwhere the time goes (urgent, same shape; the spinner timestamps its loop with RDTSC):\n\
         runs = stretches the spinner ran uninterrupted (sysmon deadline + signal decide them),\n\
         gaps = times it was off the CPU (µs: urgent ran the sleeper; ms: the OS ran another thread)\n"
    );
    println!("{diag}");
    md += &format!(
        "### 1. One worker: call-free spinner + 1 ms sleep loop ({} s)\n\n{t1}\n{go_note}\n\n\
         Where the time goes (urgent; runs: the spinner's uninterrupted stretches, gaps: its time \
         off the CPU):\n\n{diag}\n",
        w1.as_secs()
    );
    plot_cdf_to_docs(
        "latency-one-worker-cdf.svg",
        "one worker: spinner + 1 ms sleep loop, sleep overshoot (CDF)",
        "sleep overshoot (ms, log scale)",
        one.iter().copied(),
    );

    // 2. All workers.
    println!(
        "\n## 2. all {workers} workers: {} CPU hogs of ~200 ms + a 1 ms ticker ({} s each)\n",
        2 * workers,
        w2.as_secs()
    );
    let load = Load {
        workers,
        hogs: 2 * workers,
        window: w2,
        warmup: Duration::from_millis(300),
        echo: false,
    };
    let full = workers as f64 / hogs::HOG_LEN.as_secs_f64();
    // Runs scenario 2 with `load` on every runtime; prints and returns the table.
    let scenario2 = |load: Load, first: &str| {
        let outcomes: Vec<Outcome> = hogs::KINDS
            .iter()
            .map(|&k| hogs::run(k, load, work, true))
            .collect();
        let refs: Vec<&Outcome> = outcomes.iter().collect();
        let table = md_table(
            first,
            &refs,
            &[
                "hogs/s (% of CPUs)",
                "work per CPU-s",
                "preemptions",
                "OS wait",
                "floor p99 ms",
            ],
            &|o| {
                vec![
                    format!(
                        "{:.2} ({:.0} %)",
                        o.hogs_per_sec,
                        o.hogs_per_sec / full * 100.0
                    ),
                    eff(o),
                    preemptions(o),
                    os_wait(o),
                    floor(o),
                ]
            },
        );
        println!("\n{table}");
        (outcomes, table)
    };
    let (all, t2) = scenario2(load, "ticker lateness");
    let s2a = all[0].ms(99.0) <= 11.0;
    let s2b = all[1].ms(99.0) <= 2.0;
    println!(
        "targets: p99 ≤ quantum + 1 ms: 10 ms quantum {} ({} ms), 1 ms quantum {} ({} ms)",
        verdict(s2a),
        ms(all[0].ms(99.0)),
        verdict(s2b),
        ms(all[1].ms(99.0))
    );
    println!(
        "\n## 2b. the same load, TCP echo instead of the ticker: a 64-byte request every 1 ms \
         to an echo server on the same runtime (loopback)\n"
    );
    let (echo, t2b) = scenario2(
        Load { echo: true, ..load },
        "answer time vs request schedule",
    );
    md += &format!(
        "### 2. All {workers} workers: {} CPU hogs of ~200 ms + a 1 ms ticker ({} s)\n\n{t2}\n\
         TCP echo under the same load (a 64-byte request every 1 ms to an echo server on the \
         same runtime; time from the request's schedule to its answer):\n\n{t2b}\n",
        2 * workers,
        w2.as_secs()
    );
    plot_cdf_to_docs(
        "latency-all-workers-cdf.svg",
        &format!(
            "all {workers} workers busy with {} hogs: 1 ms ticker lateness (CDF)",
            2 * workers
        ),
        "lateness (ms, log scale)",
        &all,
    );
    plot_cdf_to_docs(
        "latency-echo-cdf.svg",
        &format!(
            "all {workers} workers busy with {} hogs: TCP echo answer time vs schedule (CDF)",
            2 * workers
        ),
        "answer time after the request's schedule (ms, log scale)",
        &echo,
    );

    // 3. Quantum sweep.
    println!(
        "\n## 3. quantum sweep (scenario 2 load on urgent; 10 ms and 1 ms rows are scenario 2's)\n"
    );
    let none = hogs::run(Kind::Urgent(Duration::from_secs(3600)), load, work, true);
    let q100 = hogs::run(Kind::Urgent(Duration::from_micros(100)), load, work, true);
    // Throughput per CPU-second the workers got: the machine is shared, so
    // wall-clock throughput mostly measures what other processes took.
    let base = none.efficiency.unwrap_or(f64::NAN);
    let loss = |o: &Outcome| (1.0 - o.efficiency.unwrap_or(f64::NAN) / base) * 100.0;
    let mut none_row = none;
    none_row.label = "urgent, no preemption (quantum 1 h)".into();
    let sweep: Vec<(Duration, &Outcome)> = vec![
        (Duration::from_micros(100), &q100),
        (Duration::from_millis(1), &all[1]),
        (Duration::from_millis(10), &all[0]),
    ];
    let mut rows: Vec<&Outcome> = vec![&none_row];
    rows.extend(sweep.iter().map(|(_, o)| *o));
    let t3 = md_table(
        "quantum",
        &rows,
        &[
            "hogs/s",
            "work per CPU-s",
            "throughput lost",
            "preemptions",
            "OS wait",
            "floor p99 ms",
        ],
        &|o| {
            vec![
                format!("{:.2}", o.hogs_per_sec),
                eff(o),
                format!("{:+.1} %", loss(o)),
                preemptions(o),
                os_wait(o),
                floor(o),
            ]
        },
    );
    println!("{t3}");
    md += &format!("### 3. Quantum sweep (scenario-2 load)\n\n{t3}\n");
    let curve: Vec<(Duration, f64, f64)> = sweep
        .iter()
        .map(|(q, o)| (*q, o.ms(99.0), loss(o)))
        .collect();
    let p3 = docs_dir().join("latency-quantum-sweep.svg");
    report_plot(plot_sweep(&p3, &curve, none_row.ms(99.0), workers), &p3);

    println!("\n---- markdown for BENCHMARKS.md ----\n");
    println!(
        "Command: `cargo bench --bench latency{}` ({workers} CPUs, load average {}, {:.0} s)\n",
        if long { " -- --long" } else { "" },
        load_avg.split_whitespace().next().unwrap_or("?"),
        started.elapsed().as_secs_f64()
    );
    println!("{md}");
    println!("---- end ----");
}

/// Writes the CDF of `outcomes`' samples to `docs/{name}`.
fn plot_cdf_to_docs<'a>(
    name: &str,
    title: &str,
    x_desc: &str,
    outcomes: impl IntoIterator<Item = &'a Outcome>,
) {
    let path = docs_dir().join(name);
    let series = hogs::cdf_series(outcomes);
    report_plot(hogs::plot_cdf(&path, title, x_desc, &series), &path);
}

fn report_plot(r: Result<(), String>, path: &Path) {
    match r {
        Ok(()) => println!("plot: {}", path.display()),
        Err(e) => println!("could not write the plot {}: {e}", path.display()),
    }
}
