//! Preemption coverage on real CPU work (issue 12, DESIGN §7: "real CPU
//! workloads ..., one worker, 1 ms sleeper beside: sleeper p99 ≤ 2 quanta on
//! every workload").
//!
//! ```text
//! cargo bench --bench coverage                     # quick: ~1 s of work per workload
//! URGENT_BENCH_LONG=1 cargo bench --bench coverage # or `-- --long`: ~5 s each
//! cargo bench --bench coverage -- sort regex       # only workloads whose name contains
//!                                                  # one of the words
//! ```
//!
//! Each workload is real CPU work from std/core/alloc, libc/libm, the vDSO or
//! a popular crate (sorting, maps, formatting, `Instant::elapsed`, flate2,
//! serde_json, regex, libm, memcpy, sha2, ...), cut into rounds of a few
//! milliseconds to a few tens of milliseconds, on deterministic input made
//! in-process (xorshift64*, no downloads). For each workload:
//!
//! 1. **plain thread**: rounds run on a plain OS thread until it has used
//!    ~1 s of CPU (5 s long); that fixes the number of rounds. The same
//!    rounds run on a plain thread again after step 2, and the mean of the
//!    two is the baseline CPU time.
//! 2. **urgent**: the same rounds in one `spawn_cpu` task on a one-worker
//!    runtime at the default quantum (10 ms), beside a task sleeping 1 ms in a
//!    loop. Recorded: each sleep's overshoot (hdrhistogram; p50/p99/max), the
//!    deltas of the runtime's preemption counters over the run, the task's CPU
//!    time against the plain thread's (slowdown; it includes the signal
//!    handler, the switches and the sleeper's polls), and the overshoot p99 of
//!    a plain OS thread sleeping 1 ms during the same run (the floor: what the
//!    machine alone adds).
//! 3. **Go**, when `go` is on PATH: `benches/go/coverage.go` runs the same
//!    workload shape with Go's standard library (sort, compress/flate,
//!    encoding/json, regexp, math, crypto/sha256, ...) for the same time with
//!    `GOMAXPROCS=1` and a goroutine sleeping 1 ms beside it; its p99/max.
//!
//! The counters are read from `RuntimeMetrics`' `Debug` output, so counters
//! that later versions add (coroutine switches, thread parks, declines by
//! reason) show up without a change here, and print `-` while they do not
//! exist. Ends with one markdown table for BENCHMARKS.md; each row is marked
//! against the target (sleeper p99 ≤ 2 quanta: 20 ms in release, 3 quanta in
//! a debug build).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{go_build, load_average, long_run, selected, thread_cpu};
use hdrhistogram::Histogram;

const SLEEP: Duration = Duration::from_millis(1);

/// One round of a workload: does the work once and returns a checksum (kept
/// alive with `black_box`, so the work is not optimised away).
type Round = Box<dyn FnMut() -> u64 + Send>;

struct Workload {
    name: &'static str,
    /// What a round does, and where its time goes.
    what: &'static str,
    /// Makes the input (from the seeded generator) and returns the round.
    make: fn(&mut Rng) -> Round,
}

/// xorshift64*: deterministic input, the same generator as the Go side.
struct Rng(u64);

impl Rng {
    /// Seeded from the workload's name (FNV-style, as in coverage.go).
    fn for_workload(name: &str) -> Rng {
        let mut s: u64 = 0x243F_6A88_85A3_08D3;
        for c in name.bytes() {
            s = (s ^ c as u64).wrapping_mul(0x100_0000_01B3);
        }
        Rng(s.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn word(&mut self) -> &'static str {
        WORDS[(self.next() % WORDS.len() as u64) as usize]
    }

    fn u64s(&mut self, n: usize) -> Vec<u64> {
        (0..n).map(|_| self.next()).collect()
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The text vocabulary (some of it multi-byte UTF-8), as in coverage.go.
const WORDS: [&str; 40] = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliett",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "running",
    "jumping",
    "singing",
    "thinking",
    "café",
    "naïve",
    "über",
    "façade",
    "jalapeño",
    "smörgåsbord",
    "日本語",
    "Ωmega",
    "ÉCOLE",
    "Straße",
];

/// About `n` bytes of words, 12 to a line.
fn text(r: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n + 32);
    let mut i = 0;
    while s.len() < n {
        s.push_str(r.word());
        i += 1;
        s.push(if i % 12 == 0 { '\n' } else { ' ' });
    }
    s
}

/// A JSON array of `n` records (about 130 bytes each).
fn json_doc(r: &mut Rng, n: usize) -> String {
    use std::fmt::Write;
    let mut s = String::from("[");
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        let (w1, w2) = (r.word(), r.word());
        let score = (r.next() % 1_000_000) as f64 / 1000.0;
        let active = r.next() & 1 == 0;
        let x = r.next() % 10_000;
        write!(
            s,
            r#"{{"id":{i},"name":"{w1} {w2}","score":{score},"tags":["{w2}","{w1}"],"active":{active},"nested":{{"x":{x},"y":[1,2,3]}}}}"#
        )
        .unwrap();
    }
    s.push(']');
    s
}

/// The control: a call-free multiply/xor-shift chain (user code only).
#[inline(never)]
fn arith(n: u64) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut i = 0;
    while i < n {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i) ^ (x >> 29);
        i += 1;
    }
    x
}

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "arith",
            what: "hand-written multiply/xor-shift loop, 20M steps (the control: user code only)",
            make: |_| Box::new(|| arith(black_box(20_000_000))),
        },
        Workload {
            name: "sort_unstable",
            what: "copy 1M random u64 into a buffer, `sort_unstable` (core)",
            make: |r| {
                let src = r.u64s(1 << 20);
                let mut buf = src.clone();
                Box::new(move || {
                    buf.copy_from_slice(&src);
                    buf.sort_unstable();
                    buf[buf.len() / 2]
                })
            },
        },
        Workload {
            name: "sort_stable",
            what: "copy 1M random u64 into a buffer, `sort` (core/alloc driftsort)",
            make: |r| {
                let src = r.u64s(1 << 20);
                let mut buf = src.clone();
                Box::new(move || {
                    buf.copy_from_slice(&src);
                    buf.sort();
                    buf[buf.len() / 2]
                })
            },
        },
        Workload {
            name: "sort_by_strings",
            what: "`sort_by` of 200k indices comparing the Strings they name (core sort, memcmp)",
            make: |r| {
                let strs: Vec<String> = (0..200_000)
                    .map(|_| format!("{}{}", r.word(), r.next() % 1_000_000))
                    .collect();
                let src: Vec<u32> = (0..strs.len() as u32).collect();
                let mut buf = src.clone();
                Box::new(move || {
                    buf.copy_from_slice(&src);
                    buf.sort_by(|&a, &b| strs[a as usize].cmp(&strs[b as usize]));
                    buf[buf.len() / 2] as u64
                })
            },
        },
        Workload {
            name: "btreemap_insert",
            what: "200k random u64 inserts into a new `BTreeMap`, then drop (alloc, malloc/free)",
            make: |r| {
                let keys = r.u64s(200_000);
                Box::new(move || {
                    let mut m = BTreeMap::new();
                    for (i, &k) in keys.iter().enumerate() {
                        m.insert(k, i as u64);
                    }
                    m.len() as u64
                })
            },
        },
        Workload {
            name: "hashmap_insert",
            what: "200k random u64 inserts into a new `HashMap` (SipHash, hashbrown), then drop",
            make: |r| {
                let keys = r.u64s(200_000);
                Box::new(move || {
                    let mut m = HashMap::new();
                    for (i, &k) in keys.iter().enumerate() {
                        m.insert(k, i as u64);
                    }
                    m.len() as u64
                })
            },
        },
        Workload {
            name: "format",
            what: "100k `write!` of a JSON-ish line (int, `{:.3}` float, hex) plus a `format!` each (core::fmt)",
            make: |_| {
                let mut s = String::new();
                Box::new(move || {
                    use std::fmt::Write;
                    s.clear();
                    for i in 0..100_000u64 {
                        let f = i as f64 * 1.5;
                        writeln!(
                            s,
                            r#"{{"i":{i},"f":{f:.3},"h":"{:x}"}}"#,
                            i.wrapping_mul(2_654_435_761)
                        )
                        .unwrap();
                        s.push_str(&format!("{i:>8}"));
                    }
                    s.len() as u64
                })
            },
        },
        Workload {
            name: "instant_elapsed",
            what: "1M `Instant::elapsed()` (clock_gettime: libc wrapper + vDSO)",
            make: |_| {
                Box::new(|| {
                    let t = Instant::now();
                    let mut s = 0u64;
                    for _ in 0..1_000_000 {
                        s = s.wrapping_add(t.elapsed().as_nanos() as u64);
                    }
                    s
                })
            },
        },
        Workload {
            name: "flate2_compress",
            what: "deflate 1 MiB of text, default level (flate2 + miniz_oxide)",
            make: |r| {
                let src = text(r, 1 << 20).into_bytes();
                Box::new(move || {
                    use std::io::Write;
                    let mut e = flate2::write::DeflateEncoder::new(
                        Vec::with_capacity(1 << 19),
                        flate2::Compression::default(),
                    );
                    e.write_all(&src).unwrap();
                    e.finish().unwrap().len() as u64
                })
            },
        },
        Workload {
            name: "serde_json_parse",
            what: "parse a 1.1 MB JSON array of 8000 records into `serde_json::Value`",
            make: |r| {
                let doc = json_doc(r, 8000);
                Box::new(move || {
                    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
                    v.as_array().map_or(0, |a| a.len() as u64)
                })
            },
        },
        Workload {
            name: "regex_search",
            what: "`[a-z]+ing [a-z]+` find_iter over 1 MiB of text (regex)",
            make: |r| {
                let t = text(r, 1 << 20);
                let re = regex::Regex::new("[a-z]+ing [a-z]+").unwrap();
                Box::new(move || re.find_iter(&t).count() as u64)
            },
        },
        Workload {
            name: "libm_f64",
            what: "sin + exp + ln of 1M f64 (glibc libm)",
            make: |r| {
                let xs: Vec<f64> = (0..1 << 20)
                    .map(|_| (r.next() % 1_000_000) as f64 / 1000.0)
                    .collect();
                Box::new(move || {
                    let mut s = 0.0f64;
                    for &x in &xs {
                        s += x.sin() + (-x / 100.0).exp() + (1.0 + x).ln();
                    }
                    s.to_bits()
                })
            },
        },
        Workload {
            name: "vec_clone",
            what: "clone a 16 MiB `Vec<u8>`, then drop (malloc + memcpy)",
            make: |r| {
                let src = r.bytes(16 << 20);
                Box::new(move || {
                    let c = black_box(src.clone());
                    c[c.len() / 2] as u64
                })
            },
        },
        Workload {
            name: "chars_rev",
            what: "`chars().rev().collect::<String>()` of 1 MiB of UTF-8 text",
            make: |r| {
                let t = text(r, 1 << 20);
                Box::new(move || t.chars().rev().collect::<String>().len() as u64)
            },
        },
        Workload {
            name: "sha256",
            what: "SHA-256 of 1 MiB (sha2)",
            make: |r| {
                let src = r.bytes(1 << 20);
                Box::new(move || {
                    use sha2::Digest;
                    sha2::Sha256::digest(&src)[0] as u64
                })
            },
        },
        Workload {
            name: "f64_parse",
            what: "`str::parse::<f64>` of 200k decimal strings (core dec2flt)",
            make: |r| {
                let strs: Vec<String> = (0..200_000)
                    .map(|_| format!("{}", (r.next() % 1_000_000_000) as f64 / 997.0))
                    .collect();
                Box::new(move || {
                    let s: f64 = strs.iter().map(|x| x.parse::<f64>().unwrap()).sum();
                    s.to_bits()
                })
            },
        },
        Workload {
            name: "u128_div",
            what: "100k u128 `/` and `%` (compiler_builtins __udivti3/__umodti3)",
            make: |r| {
                let xs: Vec<(u128, u128)> = (0..100_000)
                    .map(|_| {
                        let a = ((r.next() as u128) << 64) | r.next() as u128;
                        let b = ((r.next() as u128) << (r.next() % 64)) | 1;
                        (a, b)
                    })
                    .collect();
                Box::new(move || {
                    xs.iter()
                        .fold(0u64, |s, &(a, b)| s ^ (a / b) as u64 ^ (a % b) as u64)
                })
            },
        },
        Workload {
            name: "to_lowercase",
            what: "`str::to_lowercase` of 1 MiB of upper-case UTF-8 text (alloc, core unicode tables)",
            make: |r| {
                let t = text(r, 1 << 20).to_uppercase();
                Box::new(move || t.to_lowercase().len() as u64)
            },
        },
        Workload {
            name: "str_matches",
            what: "count `\"ing zulu\"` in 1 MiB of text (core two-way searcher)",
            make: |r| {
                let t = text(r, 1 << 20);
                Box::new(move || t.matches("ing zulu").count() as u64)
            },
        },
    ]
}

/// Runs `w`'s rounds on a plain OS thread (after one warm-up round):
/// `Ok(n)` exactly `n` rounds, `Err(cpu)` until it has used `cpu` of CPU
/// time. Returns the rounds it did and the CPU time they took.
fn plain(w: &Workload, rounds: Result<u64, Duration>) -> (u64, Duration) {
    let make = w.make;
    let name = w.name;
    std::thread::spawn(move || {
        let mut round = make(&mut Rng::for_workload(name));
        black_box(round());
        let c0 = thread_cpu();
        let (mut n, mut sink) = (0u64, 0u64);
        while match rounds {
            Ok(r) => n < r,
            Err(cpu) => thread_cpu() - c0 < cpu,
        } {
            sink ^= round();
            n += 1;
        }
        black_box(sink);
        (n, thread_cpu() - c0)
    })
    .join()
    .expect("the plain-thread run panicked")
}

/// What the urgent run measured.
struct UrgentRun {
    /// Sleep overshoot of every sleep, ns.
    hist: Histogram<u64>,
    max_ns: u64,
    /// The CPU task's thread CPU time over its rounds.
    cpu: Duration,
    /// The CPU task's wall time over its rounds.
    wall: Duration,
    /// Counter deltas over the run, by name (see [`counters`]).
    deltas: BTreeMap<String, u64>,
    /// Overshoot p99 of a plain OS thread sleeping 1 ms meanwhile, ns.
    floor_p99_ns: u64,
}

/// `rounds` rounds of `w` in one `spawn_cpu` task on a one-worker runtime at
/// the default quantum, beside a task sleeping 1 ms in a loop.
fn on_urgent(w: &Workload, rounds: u64) -> UrgentRun {
    let mut round = (w.make)(&mut Rng::for_workload(w.name));
    black_box(round()); // warm up (fault the buffers in) before the window
    let rt = if cfg!(debug_assertions) {
        // Unoptimised miniz_oxide (flate2_compress) overflows the default
        // 256 KiB CPU-task stack: its frames are several times larger.
        urgent::Builder::new()
            .worker_threads(1)
            .stack_size(2 << 20)
            .build()
            .expect("build the urgent runtime")
    } else {
        common::urgent_rt(1, None)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sleeper = {
        let stop = stop.clone();
        rt.spawn(async move {
            let mut v = Vec::with_capacity(8192);
            loop {
                let t = Instant::now();
                urgent::time::sleep(SLEEP).await;
                v.push(t.elapsed().saturating_sub(SLEEP).as_nanos() as u64);
                if stop.load(Relaxed) {
                    return v;
                }
            }
        })
    };
    let m0 = counters(&rt.metrics());
    let floor = FloorProbe::start();
    let task = {
        let stop = stop.clone();
        rt.spawn_cpu(move || {
            let (c0, t0) = (thread_cpu(), Instant::now());
            let mut sink = 0u64;
            for _ in 0..rounds {
                sink ^= round();
            }
            let cpu = thread_cpu() - c0;
            stop.store(true, Relaxed);
            black_box(sink);
            (cpu, t0.elapsed())
        })
    };
    let (cpu, wall) = rt.block_on(task).expect("the CPU task panicked");
    let samples = rt.block_on(sleeper).expect("the sleeper panicked");
    let floor_p99_ns = floor.finish_p99();
    let m1 = counters(&rt.metrics());
    rt.shutdown_timeout(Duration::from_secs(1));
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
    for &s in &samples {
        hist.saturating_record(s.max(1));
    }
    let deltas = m1
        .iter()
        .map(|(k, &v)| (k.clone(), v.saturating_sub(m0.get(k).copied().unwrap_or(0))))
        .collect();
    UrgentRun {
        hist,
        max_ns: samples.iter().copied().max().unwrap_or(0),
        cpu,
        wall,
        deltas,
        floor_p99_ns,
    }
}

/// Every integer counter in `m`'s `Debug` output (`name: 123`), nested
/// structs' fields as `outer.inner`. Reading the `Debug` output instead of
/// calling accessors keeps this bench compiling against versions of
/// `RuntimeMetrics` with more or fewer counters.
fn counters(m: &impl Debug) -> BTreeMap<String, u64> {
    let text = format!("{m:?}");
    let re = regex::Regex::new(
        r"(?P<name>\w+)\s*:\s*(?P<num>\d+)(?P<frac>\.\d+)?|(?:(?P<open>\w+)\s*:\s*)?(?:[\w:]+\s*)?\{|\}",
    )
    .unwrap();
    let mut out = BTreeMap::new();
    let mut path: Vec<String> = Vec::new();
    for c in re.captures_iter(&text) {
        if let (Some(name), Some(num)) = (c.name("name"), c.name("num")) {
            if c.name("frac").is_none() {
                if let Ok(v) = num.as_str().parse::<u64>() {
                    let mut key: Vec<&str> = path
                        .iter()
                        .filter(|p| !p.is_empty())
                        .map(String::as_str)
                        .collect();
                    key.push(name.as_str());
                    out.insert(key.join("."), v);
                }
            }
        } else if c.get(0).is_some_and(|m| m.as_str() == "}") {
            path.pop();
        } else {
            path.push(c.name("open").map_or(String::new(), |m| m.as_str().into()));
        }
    }
    out
}

/// A plain OS thread sleeping 1 ms in a loop: what the machine alone adds.
struct FloorProbe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<u64>>,
}

impl FloorProbe {
    fn start() -> FloorProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut v = Vec::new();
            while !s.load(Relaxed) {
                let t = Instant::now();
                std::thread::sleep(SLEEP);
                v.push(t.elapsed().saturating_sub(SLEEP).as_nanos() as u64);
            }
            v
        });
        FloorProbe { stop, thread }
    }

    /// Stops the probe: its overshoot p99, ns.
    fn finish_p99(self) -> u64 {
        self.stop.store(true, Relaxed);
        let mut v = self.thread.join().unwrap_or_default();
        v.sort_unstable();
        common::nearest_rank(&v, 0.99).unwrap_or(0)
    }
}

/// Go's result for one workload.
enum GoRun {
    Measured {
        p99_us: u64,
        max_us: u64,
    },
    /// No standard-library equivalent in Go.
    Unsupported,
    Failed(String),
}

fn on_go(bin: &Path, name: &str, secs: f64) -> GoRun {
    let out = match Command::new(bin)
        .args(["-w", name, "-secs", &format!("{secs}")])
        .env("GOMAXPROCS", "1")
        .output()
    {
        Ok(o) => o,
        Err(e) => return GoRun::Failed(format!("run {}: {e}", bin.display())),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if text.starts_with("unsupported=") {
        return GoRun::Unsupported;
    }
    let field = |k: &str| {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse::<i64>().ok())
            .map(|v| v.max(0) as u64)
    };
    match (out.status.success(), field("p99_us"), field("max_us")) {
        (true, Some(p99_us), Some(max_us)) => GoRun::Measured { p99_us, max_us },
        _ => GoRun::Failed(format!(
            "{name}: {}{}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// `go version`'s version word, e.g. `go1.19.8`.
fn go_version() -> String {
    Command::new("go")
        .arg("version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "go".into())
}

/// Milliseconds to three significant digits (two decimals below 10).
fn ms(ns: u64) -> String {
    let v = ns as f64 / 1e6;
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The delta of counter `key`, `-` if this runtime has no such counter.
fn cell(d: &BTreeMap<String, u64>, key: &str) -> String {
    d.get(key).map_or("-".into(), u64::to_string)
}

/// The delta of the first counter whose name contains `part`, `-` if none.
fn cell_like(d: &BTreeMap<String, u64>, part: &str) -> String {
    d.iter()
        .find(|(k, _)| k.contains(part))
        .map_or("-".into(), |(_, v)| v.to_string())
}

/// Declines by reason: every counter about declines but the total, as
/// `reason=n`; `-` while the runtime has none.
fn decline_reasons(d: &BTreeMap<String, u64>) -> String {
    let v: Vec<String> = d
        .iter()
        .filter(|(k, _)| k.contains("declin") && k.as_str() != "preempt_declined")
        .map(|(k, v)| {
            let short = k
                .trim_start_matches("preempt_")
                .trim_start_matches("declined_")
                .trim_start_matches("declines_");
            format!("{short}={v}")
        })
        .collect();
    if v.is_empty() {
        "-".into()
    } else {
        v.join(", ")
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo test --benches` probing
    }
    let long = args.iter().any(|a| a == "--long") || long_run();
    let work = Duration::from_secs(if long { 5 } else { 1 });
    let quantum = urgent::runtime::DEFAULT_QUANTUM;
    let (quanta, build) = if cfg!(debug_assertions) {
        (3, "debug")
    } else {
        (2, "release")
    };
    let target = quantum * quanta;
    let started = Instant::now();
    let load_start = load_average();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "coverage bench ({} mode, {build}): {cpus} CPUs, load average {load_start}; \
         ~{} s of work per workload; one worker, quantum {} ms, target sleeper p99 ≤ {} ms",
        if long { "long" } else { "quick" },
        work.as_secs(),
        quantum.as_millis(),
        target.as_millis()
    );
    let go = go_build("coverage");
    let go_note = match &go {
        Ok(_) => format!("Go: {}, GOMAXPROCS=1, benches/go/coverage.go", go_version()),
        Err(e) => format!(
            "Go: not measured: {e}. Install it (e.g. `apt-get install golang-go`) to get the Go column."
        ),
    };
    println!("{go_note}\n");

    let mut rows = Vec::new();
    let mut details = Vec::new();
    let (mut met, mut total) = (0, 0);
    for w in workloads().iter().filter(|w| selected(w.name)) {
        eprint!("{:<17} plain thread... ", w.name);
        let (rounds, plain_before) = plain(w, Err(work));
        eprint!(
            "{rounds} rounds in {:.2} s CPU; urgent... ",
            plain_before.as_secs_f64()
        );
        let u = on_urgent(w, rounds);
        // The baseline again after the urgent run: on a shared machine the
        // CPU time of the same work drifts, so the slowdown is taken against
        // the mean of the two plain runs (both are in the second table).
        let (_, plain_after) = plain(w, Ok(rounds));
        let plain_cpu = (plain_before + plain_after) / 2;
        let p50 = u.hist.value_at_quantile(0.5);
        let p99 = u.hist.value_at_quantile(0.99);
        let ok = !u.hist.is_empty() && Duration::from_nanos(p99) <= target;
        total += 1;
        met += ok as usize;
        eprint!("p99 {} ms; ", ms(p99));
        let go_cell = match &go {
            Ok(bin) => match on_go(bin, w.name, plain_cpu.as_secs_f64()) {
                GoRun::Measured { p99_us, max_us } => {
                    format!("{} / {}", ms(p99_us * 1000), ms(max_us * 1000))
                }
                GoRun::Unsupported => "n/a".into(),
                GoRun::Failed(e) => {
                    eprint!("(Go failed: {e}) ");
                    "failed".into()
                }
            },
            Err(_) => "-".into(),
        };
        eprintln!("Go {go_cell}");
        let slowdown = (u.cpu.as_secs_f64() / plain_cpu.as_secs_f64() - 1.0) * 100.0;
        let d = &u.deltas;
        rows.push(format!(
            "| {} | {} | {} / {} / {} | {} | {go_cell} | {} / {} / {} | {} / {} | {} | {slowdown:+.1} % | {} |",
            w.name,
            u.hist.len(),
            ms(p50),
            ms(p99),
            ms(u.max_ns),
            if ok { "met" } else { "MISSED" },
            cell(d, "preempt_requests"),
            cell(d, "preemptions"),
            cell(d, "preempt_declined"),
            cell_like(d, "switch"),
            cell_like(d, "park"),
            decline_reasons(d),
            ms(u.floor_p99_ns),
        ));
        details.push(format!(
            "| {} | {} | {rounds} | {:.1} ms | {:.3} / {:.3} s | {:.3} s | {:.2} s |",
            w.name,
            w.what,
            plain_cpu.as_secs_f64() * 1e3 / rounds.max(1) as f64,
            plain_before.as_secs_f64(),
            plain_after.as_secs_f64(),
            u.cpu.as_secs_f64(),
            u.wall.as_secs_f64()
        ));
    }

    let table = format!(
        "| workload | sleeps | urgent sleeper p50 / p99 / max ms | p99 ≤ {} ms | Go p99 / max ms \
         | requests / preemptions / declined | switches / parks | declines by reason \
         | CPU slowdown | floor p99 ms |\n\
         |---|---:|---:|:---:|---:|---:|---:|---|---:|---:|\n{}\n",
        target.as_millis(),
        rows.join("\n")
    );
    let what = format!(
        "| workload | one round | rounds | plain CPU per round | plain CPU before / after \
         | urgent CPU | urgent wall |\n|---|---|---:|---:|---:|---:|---:|\n{}\n",
        details.join("\n")
    );
    println!("\n---- markdown for BENCHMARKS.md ----\n");
    println!(
        "Command: `cargo bench --bench coverage{}` ({build}, {cpus} CPUs, load average {load_start} \
         at start, {} at end, {:.0} s). One worker at the default {} ms quantum; each workload runs \
         ~{} s of CPU in one `spawn_cpu` task beside a task sleeping 1 ms in a loop. {go_note}\n",
        if long { " -- --long" } else { "" },
        load_average(),
        started.elapsed().as_secs_f64(),
        quantum.as_millis(),
        work.as_secs(),
    );
    println!("{table}");
    println!(
        "{met} of {total} workloads met the target (sleeper p99 ≤ {quanta} quanta = {} ms). \
         sleeps: 1 ms sleeps completed during the run (about one per quantum of the run's wall \
         time when preemption works; 1 or 2 when the task is never stopped). \
         Counters are deltas of `RuntimeMetrics` over the run (`-`: this runtime has no such \
         counter). CPU slowdown: the task's thread CPU time against the same rounds on a plain \
         thread (the mean of a run before and one after; at a high load average expect \
         ±10 % or more of noise). floor p99: overshoot of a plain OS thread sleeping 1 ms meanwhile (the machine's \
         own noise). Go n/a: no standard-library equivalent.\n",
        target.as_millis(),
    );
    println!("{what}");
    println!("---- end ----");
}
