//! Helpers shared by the benches (each includes this file with `mod common;`):
//! the `URGENT_BENCH_*` knobs, criterion's quick settings and the positional
//! filter, statistics and time formatting, thread CPU time and the runtimes
//! the comparisons build.

// Every bench uses a part of this module.
#![allow(dead_code)]

use std::time::Duration;

use criterion::Criterion;

/// `URGENT_BENCH_LONG` set to anything but empty or `0`: longer runs.
pub fn long_run() -> bool {
    std::env::var_os("URGENT_BENCH_LONG").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `URGENT_BENCH_WORKERS`: worker threads of each runtime (default 2).
pub fn workers() -> usize {
    match std::env::var("URGENT_BENCH_WORKERS") {
        Ok(s) => {
            s.trim().parse().ok().filter(|&n| n > 0).unwrap_or_else(|| {
                panic!("URGENT_BENCH_WORKERS={s:?}: expected a positive integer")
            })
        }
        Err(_) => 2,
    }
}

/// Criterion's settings: its defaults with `URGENT_BENCH_LONG`, else a quick
/// run (0.5 s warm-up, 2 s measurement, `quick_samples` samples).
pub fn criterion(quick_samples: usize) -> Criterion {
    let c = Criterion::default();
    if long_run() {
        c
    } else {
        c.measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500))
            .sample_size(quick_samples)
    }
}

/// The positional arguments (criterion's filter); `part` runs if there is
/// none, or one of them is a substring of its name or starts with it
/// (`spawn_cpu_join_batch/urgent` selects `spawn_cpu_join`).
pub fn selected(part: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| part.contains(f.as_str()) || f.starts_with(part))
}

/// The `q` quantile (0..=1) of `sorted`, interpolated between neighbours.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Sorts `v` and returns its median (NaN if empty).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        quantile(v, 0.5)
    }
}

/// The sample of `sorted` nearest to quantile `p` (0..=1); `None` if empty.
pub fn nearest_rank(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

/// `1.23 ms`, `4.56 µs` (`us_decimals` decimals), `789 ns`.
pub fn fmt_time(ns: f64, us_decimals: usize) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.*} µs", us_decimals, ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// CPU time consumed by the calling thread.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer and clock id.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Number of memory mappings of this process (`/proc/self/maps` lines).
pub fn map_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// An urgent runtime with `workers` workers (and `quantum`, if given).
pub fn urgent_rt(workers: usize, quantum: Option<Duration>) -> urgent::Runtime {
    let mut b = urgent::Builder::new();
    b.worker_threads(workers);
    if let Some(q) = quantum {
        b.quantum(q);
    }
    b.build().expect("build the urgent runtime")
}

/// A tokio multi-thread runtime with `workers` workers, all drivers enabled.
pub fn tokio_rt(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("build the tokio runtime")
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`), `?` if unknown.
pub fn load_average() -> String {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let v: Vec<&str> = s.split_whitespace().take(3).collect();
    if v.len() == 3 {
        v.join(" ")
    } else {
        "?".into()
    }
}

/// The target directory this bench was built into (`…/target`).
pub fn target_dir() -> std::path::PathBuf {
    use std::path::{Path, PathBuf};
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|a| {
                    a.file_name()
                        .is_some_and(|n| n == "release" || n == "debug")
                })
                .and_then(|p| p.parent().map(Path::to_path_buf))
        })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Builds `benches/go/{name}.go` into `target/go/{name}` (module mode off, a
/// private build cache) and returns the binary; `Err` says why not, e.g.
/// that `go` is not on PATH.
pub fn go_build(name: &str) -> Result<std::path::PathBuf, String> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/go")
        .join(format!("{name}.go"));
    let dir = target_dir().join("go");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let bin = dir.join(name);
    let build = std::process::Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .env("GOCACHE", dir.join("cache"))
        .env("GO111MODULE", "off")
        .output()
        .map_err(|e| format!("`go` is not on PATH ({e})"))?;
    if !build.status.success() {
        return Err(format!(
            "go build {} failed: {}",
            src.display(),
            String::from_utf8_lossy(&build.stderr)
        ));
    }
    Ok(bin)
}
