//! The latency demo: a 1 ms ticker keeps ticking on time while CPU hogs run
//! on every worker, on urgent and on tokio side by side.
//!
//! ```text
//! cargo run --release --example hogs
//! cargo run --release --example hogs -- --workers 4 --secs 3 --docs
//! ```
//!
//! Every worker gets busy with 2 × workers CPU hogs: call-free arithmetic
//! loops of about 200 ms each, respawned as soon as one finishes. Next to them
//! a latency-sensitive task ticks every millisecond (an `interval`, missed
//! ticks burst as in tokio) and records how late each tick is against its
//! schedule. The same load runs on
//!
//! * urgent, hogs in `urgent::spawn_cpu`, at the default 10 ms quantum and at 1 ms;
//! * tokio, hogs as plain futures (`tokio::spawn(async { hog() })`);
//! * tokio, hogs in `tokio::task::spawn_blocking`,
//!
//! with the same number of workers, and the demo prints the ticker's lateness
//! percentiles and the hogs' throughput (completed hog work per second, in
//! 200 ms hogs) side by side, then writes a latency CDF plot (SVG).
//!
//! Then a real CPU route: requests that each parse a ~750 KB JSON body with
//! serde_json, re-encode it and deflate it with flate2 (library code, not a
//! hand-written loop) in `urgent::spawn_cpu`, 2 × workers in flight, beside
//! the same ticker, on urgent at the default quantum for half the window.
//!
//! Options: `--workers N` (default: available parallelism), `--secs S`
//! (measured seconds per runtime, default 2), `--docs` (write the plot to
//! `docs/hogs-cdf.svg` instead of `target/urgent-hogs-cdf.svg`).

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// One hog's length on an unloaded core.
pub const HOG_LEN: Duration = Duration::from_millis(200);
/// The ticker's period.
pub const PERIOD: Duration = Duration::from_millis(1);

/// The hogs' work: a call-free multiply/xor-shift chain, in chunks of
/// `chunk` iterations; each chunk adds to `done` (completed work) and the
/// loop stops early when `stop` is set. Nothing in here calls a function, so
/// only a signal can take the thread away from it.
#[inline(never)]
pub fn spin(chunks: u64, chunk: u64, stop: &AtomicBool, done: &AtomicU64) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut c = 0;
    while c < chunks && !stop.load(Relaxed) {
        let mut i = 0;
        while i < chunk {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i) ^ (x >> 29);
            i += 1;
        }
        done.fetch_add(chunk, Relaxed);
        c += 1;
    }
    x
}

/// How much [`spin`] work makes a hog: measured once on this machine.
#[derive(Clone, Copy, Debug)]
pub struct Work {
    /// Iterations per chunk (about 100 µs of work).
    pub chunk: u64,
    /// Chunks per hog (about [`HOG_LEN`]).
    pub chunks: u64,
    /// Iterations per second on an unloaded plain thread.
    pub per_sec: f64,
}

impl Work {
    /// Times `spin` on this thread (best of a few runs, so a busy machine
    /// makes hogs longer rather than shorter).
    pub fn calibrate() -> Work {
        let stop = AtomicBool::new(false);
        let done = AtomicU64::new(0);
        let probe = 1_000_000;
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            std::hint::black_box(spin(std::hint::black_box(10), probe / 10, &stop, &done));
            best = best.min(t.elapsed());
        }
        let per_sec = probe as f64 / best.as_secs_f64();
        let chunk = ((per_sec * 100e-6) as u64).max(1);
        let chunks = ((per_sec * HOG_LEN.as_secs_f64()) as u64 / chunk).max(1);
        Work {
            chunk,
            chunks,
            per_sec,
        }
    }

    /// Iterations in one hog.
    pub fn per_hog(&self) -> u64 {
        self.chunk * self.chunks
    }
}

/// Where the hogs run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// urgent, hogs in `spawn_cpu`, at this quantum.
    Urgent(Duration),
    /// tokio multi-thread runtime, hogs as plain futures.
    TokioPlain,
    /// tokio multi-thread runtime, hogs in `spawn_blocking`.
    TokioBlocking,
}

/// The runtimes the demo compares, in its order: urgent at 10 ms and 1 ms,
/// tokio with plain futures, tokio with `spawn_blocking`.
pub const KINDS: [Kind; 4] = [
    Kind::Urgent(urgent::runtime::DEFAULT_QUANTUM),
    Kind::Urgent(Duration::from_millis(1)),
    Kind::TokioPlain,
    Kind::TokioBlocking,
];

impl Kind {
    pub fn label(&self) -> String {
        match self {
            Kind::Urgent(q) => format!("urgent spawn_cpu, quantum {}", fmt_dur(*q)),
            Kind::TokioPlain => "tokio, hogs as plain futures".into(),
            Kind::TokioBlocking => "tokio, hogs in spawn_blocking".into(),
        }
    }
}

/// Shape of one run.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub workers: usize,
    /// Number of hog slots (each respawns its hog when it finishes).
    pub hogs: usize,
    /// Measured window.
    pub window: Duration,
    /// Hogs run this long before the ticker starts.
    pub warmup: Duration,
    /// Measure TCP request/response instead of a ticker: a client sends 64
    /// bytes every `PERIOD` to an echo server on the same runtime (loopback)
    /// and records when each answer arrived against the request's schedule.
    pub echo: bool,
}

/// What one run measured.
pub struct Outcome {
    pub label: String,
    /// Lateness of every tick, ns, sorted.
    pub sorted_ns: Vec<u64>,
    pub hist: Histogram<u64>,
    /// Completed hog work per second, in hogs of `HOG_LEN`.
    pub hogs_per_sec: f64,
    /// urgent only: preemptions during the run.
    pub preemptions: Option<u64>,
    /// Time the runtime's threads spent runnable but waiting for a CPU
    /// (Linux schedstat run delay), as a share of the window and workers.
    pub os_wait: Option<f64>,
    /// Hog work done per CPU-second the runtime's threads got, as a share
    /// of a plain thread's speed: preemption overhead, free of how much CPU
    /// other processes took.
    pub efficiency: Option<f64>,
    /// Machine floor: overshoot p99 (ms) of a plain OS thread sleeping 1 ms
    /// in a loop during the same window (no runtime involved).
    pub floor_p99: Option<f64>,
}

impl Outcome {
    pub fn from_samples(label: String, mut ns: Vec<u64>, hogs_per_sec: f64) -> Outcome {
        ns.sort_unstable();
        let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for &v in &ns {
            hist.saturating_record(v.max(1));
        }
        Outcome {
            label,
            sorted_ns: ns,
            hist,
            hogs_per_sec,
            preemptions: None,
            os_wait: None,
            efficiency: None,
            floor_p99: None,
        }
    }

    /// Percentile `q` (0..=100) in ms.
    pub fn ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return f64::NAN;
        }
        self.hist.value_at_quantile(q / 100.0) as f64 / 1e6
    }

    pub fn max_ms(&self) -> f64 {
        self.sorted_ns.last().map_or(f64::NAN, |&v| v as f64 / 1e6)
    }

    /// p50, p99, p99.9 and max in ms, each written by `fmt`.
    pub fn ms_cells(&self, fmt: impl Fn(f64) -> String) -> [String; 4] {
        [self.ms(50.0), self.ms(99.0), self.ms(99.9), self.max_ms()].map(fmt)
    }
}

/// Shared between the ticker and the progress line.
#[derive(Default)]
pub struct Live {
    ticks: AtomicU64,
    max_ns: AtomicU64,
}

impl Live {
    fn record(&self, ns: u64) {
        self.ticks.fetch_add(1, Relaxed);
        self.max_ns.fetch_max(ns, Relaxed);
    }
}

/// The runtime-specific half of a run, written once and instantiated for
/// each runtime as module `$module`: `$rt` is the runtime's crate (`urgent`,
/// `tokio`: its `spawn`, `time::interval_at`, `net`, `task::JoinHandle` and
/// `runtime::Runtime`), `$($io)::+` the module of the I/O traits its sockets
/// implement, and `$preemptions` the runtime's preemption count so far
/// (`None`: it does not preempt).
macro_rules! per_runtime {
    ($module:ident, $rt:ident, $($io:ident)::+, $preemptions:expr) => {
        pub mod $module {
            use super::*;
            use $($io)::+::{AsyncReadExt, AsyncWriteExt};
            use $rt::runtime::Runtime;
            use $rt::task::JoinHandle;

            /// The latency-sensitive task: ticks every `PERIOD` from `start`
            /// until `end` and returns how late each tick was against its
            /// schedule (ns). Ticks missed while the task could not run come in
            /// a burst later (tokio's default), so a starved ticker shows up as
            /// many very late ticks.
            pub async fn ticker(start: Instant, end: Instant, live: Arc<Live>) -> Vec<u64> {
                let mut samples = Vec::with_capacity((end - start).as_millis() as usize + 16);
                let mut iv = $rt::time::interval_at(start.into(), PERIOD);
                loop {
                    let scheduled = Instant::from(iv.tick().await);
                    let now = Instant::now();
                    if scheduled >= end {
                        return samples;
                    }
                    let late = now.saturating_duration_since(scheduled).as_nanos() as u64;
                    samples.push(late);
                    live.record(late);
                }
            }

            /// An echo server: one task per connection.
            pub async fn echo_server(listener: $rt::net::TcpListener) {
                while let Ok((mut s, _)) = listener.accept().await {
                    let _ = s.set_nodelay(true);
                    $rt::spawn(async move {
                        let mut buf = [0u8; 64];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            }

            /// The echo client: a 64-byte request every `PERIOD` from `start`
            /// to `end`; each sample is when its answer arrived, against the
            /// request's schedule (ns).
            pub async fn echo_client(
                addr: std::net::SocketAddr,
                start: Instant,
                end: Instant,
                live: Arc<Live>,
            ) -> Vec<u64> {
                let mut s = $rt::net::TcpStream::connect(addr).await.expect("connect");
                s.set_nodelay(true).expect("nodelay");
                let mut samples = Vec::with_capacity((end - start).as_millis() as usize + 16);
                let mut iv = $rt::time::interval_at(start.into(), PERIOD);
                let mut buf = [7u8; 64];
                loop {
                    let scheduled = Instant::from(iv.tick().await);
                    if scheduled >= end {
                        return samples;
                    }
                    s.write_all(&buf).await.expect("write");
                    s.read_exact(&mut buf).await.expect("read");
                    let late = scheduled.elapsed().as_nanos() as u64;
                    samples.push(late);
                    live.record(late);
                }
            }

            /// [`run`](super::run) on `rt`: the ticker (with `load.echo`, an
            /// echo server and its client) on the schedule `ticks`, and
            /// `load.hogs` hog slots, each running one hog at a time (`one`
            /// spawns it) until `stop`; see [`drive`] for `measure`.
            pub fn under_hogs<M>(
                rt: Runtime,
                load: Load,
                ticks: std::ops::Range<Instant>,
                live: &Arc<Live>,
                stop: &Arc<AtomicBool>,
                one: impl Fn() -> JoinHandle<u64> + Clone + Send + 'static,
                measure: impl FnOnce(&dyn Fn() -> Option<u64>) -> M,
            ) -> (M, Vec<u64>, Option<u64>) {
                let (start, end) = (ticks.start, ticks.end);
                // The ticker exists before the load arrives, as in a server.
                let probe = |rt: &Runtime| {
                    if load.echo {
                        let listener = rt
                            .block_on($rt::net::TcpListener::bind("127.0.0.1:0"))
                            .expect("bind");
                        let addr = listener.local_addr().expect("local_addr");
                        rt.spawn(echo_server(listener));
                        rt.spawn(echo_client(addr, start, end, live.clone()))
                    } else {
                        rt.spawn(ticker(start, end, live.clone()))
                    }
                };
                let slots = |rt: &Runtime| {
                    (0..load.hogs)
                        .map(|_| rt.spawn(hog_slot(stop.clone(), one.clone())))
                        .collect()
                };
                drive(rt, probe, slots, measure)
            }

            /// One measurement on `rt`: spawns `probe` (the task whose
            /// latency is measured; it exists before the load arrives, as in a
            /// server), then `load`, and runs `measure` on this thread, which
            /// is given the preemptions since then (`None` on a runtime without
            /// preemption) and must make the load stop. Then collects the
            /// probe's samples, waits for the load and shuts `rt` down.
            /// Returns what `measure` returned, the samples and the
            /// preemptions up to when the probe finished.
            pub fn drive<M, T>(
                rt: Runtime,
                probe: impl FnOnce(&Runtime) -> JoinHandle<Vec<u64>>,
                load: impl FnOnce(&Runtime) -> Vec<JoinHandle<T>>,
                measure: impl FnOnce(&dyn Fn() -> Option<u64>) -> M,
            ) -> (M, Vec<u64>, Option<u64>) {
                let preemptions: fn(&Runtime) -> Option<u64> = $preemptions;
                let probe = probe(&rt);
                let load = load(&rt);
                let p0 = preemptions(&rt);
                let since = || Some(preemptions(&rt)? - p0?);
                let m = measure(&since);
                let samples = rt.block_on(probe).unwrap();
                let preempted = since();
                rt.block_on(async {
                    for h in load {
                        let _ = h.await;
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
                (m, samples, preempted)
            }
        }
    };
}

per_runtime!(on_urgent, urgent, futures::io, |rt| Some(
    rt.metrics().preemptions()
));
per_runtime!(on_tokio, tokio, tokio::io, |_| None);

/// An urgent runtime with `workers` workers at `quantum`.
pub fn urgent_rt(workers: usize, quantum: Duration) -> urgent::Runtime {
    urgent::Builder::new()
        .worker_threads(workers)
        .quantum(quantum)
        .build()
        .expect("urgent runtime")
}

/// A tokio multi-thread runtime with `workers` workers.
pub fn tokio_rt(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A hog slot: runs one hog at a time (`one` spawns it) until `stop`.
async fn hog_slot<E: std::fmt::Debug, H: Future<Output = Result<u64, E>>>(
    stop: Arc<AtomicBool>,
    one: impl Fn() -> H,
) {
    while !stop.load(Relaxed) {
        one().await.unwrap();
    }
}

/// Total run-queue wait (ns) of this process's worker threads (urgent's
/// `urgent-worker-*`, tokio's `tokio-rt-worker` and `tokio-runtime-w*`), from
/// `/proc/self/task/*/schedstat`: how long they were runnable but another
/// thread (of this or another process) had the CPU. 0 where unavailable.
pub fn run_delay_ns() -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    let (mut cpu, mut total) = (0, 0);
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !(comm.starts_with("urgent-worker") || comm.starts_with("tokio-r")) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        let mut f = stat
            .split_whitespace()
            .map(|v| v.parse::<u64>().unwrap_or(0));
        cpu += f.next().unwrap_or(0);
        total += f.next().unwrap_or(0);
    }
    (cpu, total)
}

/// A plain OS thread sleeping 1 ms in a loop (`std::thread::sleep`), which
/// records its overshoot: the wake-up latency the machine itself adds at
/// that moment (timer slack, CPUs taken by other processes).
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<u64>>,
}

impl Probe {
    pub fn start() -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("latency-probe".into())
            .spawn(move || {
                let mut v = Vec::new();
                while !s.load(Relaxed) {
                    let t = Instant::now();
                    std::thread::sleep(PERIOD);
                    v.push(t.elapsed().saturating_sub(PERIOD).as_nanos() as u64);
                }
                v
            })
            .expect("spawn the probe thread");
        Probe { stop, thread }
    }

    /// Stops the probe; its overshoot samples (ns).
    pub fn finish(self) -> Vec<u64> {
        self.stop.store(true, Relaxed);
        self.thread.join().unwrap_or_default()
    }

    /// Stops the probe; its overshoot p99 in ms.
    pub fn finish_p99(self) -> f64 {
        Outcome::from_samples(String::new(), self.finish(), 0.0).ms(99.0)
    }
}

/// Shows a progress line on stderr until `until`.
fn progress(label: &str, start: Instant, until: Instant, live: &Live, extra: &dyn Fn() -> String) {
    let total = until - start;
    let tty = std::io::stderr().is_terminal();
    loop {
        let now = Instant::now();
        let shown = now.min(until) - start;
        let done = now >= until;
        if !tty && !done {
            std::thread::sleep((until - now).min(Duration::from_millis(200)));
            continue;
        }
        eprint!(
            "\r  {label:<34} {:>4.1}/{:.1} s  ticks {:>6}  worst lateness {:>8.2} ms{}   ",
            shown.as_secs_f64(),
            total.as_secs_f64(),
            live.ticks.load(Relaxed),
            live.max_ns.load(Relaxed) as f64 / 1e6,
            extra()
        );
        let _ = std::io::stderr().flush();
        if done {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(200)));
    }
    eprintln!();
}

/// What a run measured besides the probe's samples.
struct Measured {
    hogs_per_sec: f64,
    os_wait: f64,
    efficiency: f64,
    floor: f64,
}

impl Measured {
    fn outcome(self, label: String, samples: Vec<u64>, preemptions: Option<u64>) -> Outcome {
        let mut out = Outcome::from_samples(label, samples, self.hogs_per_sec);
        out.preemptions = preemptions;
        out.os_wait = Some(self.os_wait);
        out.efficiency = Some(self.efficiency);
        out.floor_p99 = Some(self.floor);
        out
    }
}

/// Runs the ticker under hogs on `kind` and measures it.
pub fn run(kind: Kind, load: Load, work: Work, show_progress: bool) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let live = Arc::new(Live::default());
    let label = kind.label();
    let hog = {
        let (stop, done) = (stop.clone(), done.clone());
        move || spin(work.chunks, work.chunk, &stop, &done)
    };

    // The ticker's schedule: hogs get `warmup` to occupy every worker first.
    let t0 = Instant::now() + load.warmup;
    let t1 = t0 + load.window;
    let measure = |preempted: &dyn Fn() -> Option<u64>| {
        std::thread::sleep(t0.saturating_duration_since(Instant::now()));
        let d0 = done.load(Relaxed);
        let (c0, w0) = run_delay_ns();
        let probe = Probe::start();
        if show_progress {
            let extra = || preempted().map_or_else(String::new, |p| format!("  preemptions {p}"));
            progress(&label, t0, t1, &live, &extra);
        } else {
            std::thread::sleep(t1.saturating_duration_since(Instant::now()));
        }
        let secs = t0.elapsed().as_secs_f64();
        let work_done = (done.load(Relaxed) - d0) as f64;
        let (c1, w1) = run_delay_ns();
        let floor = probe.finish_p99();
        let hogs_per_sec = work_done / work.per_hog() as f64 / secs;
        let os_wait = (w1 - w0) as f64 / 1e9 / secs / load.workers as f64;
        let efficiency = work_done / ((c1 - c0) as f64 / 1e9) / work.per_sec;
        stop.store(true, Relaxed);
        Measured {
            hogs_per_sec,
            os_wait,
            efficiency,
            floor,
        }
    };

    let (m, samples, preemptions) = match kind {
        Kind::Urgent(quantum) => on_urgent::under_hogs(
            urgent_rt(load.workers, quantum),
            load,
            t0..t1,
            &live,
            &stop,
            move || urgent::spawn_cpu(hog.clone()),
            measure,
        ),
        Kind::TokioPlain | Kind::TokioBlocking => {
            let blocking = kind == Kind::TokioBlocking;
            let one = move || {
                let h = hog.clone();
                if blocking {
                    tokio::task::spawn_blocking(h)
                } else {
                    tokio::spawn(async move { h() })
                }
            };
            on_tokio::under_hogs(
                tokio_rt(load.workers),
                load,
                t0..t1,
                &live,
                &stop,
                one,
                measure,
            )
        }
    };
    m.outcome(label, samples, preemptions)
}

/// The JSON body of the demo's CPU route: `records` records, about 130
/// bytes each, made from a fixed seed (no download).
pub fn json_body(records: usize) -> String {
    const WORDS: [&str; 8] = [
        "alpha",
        "bravo",
        "café",
        "delta",
        "naïve",
        "foxtrot",
        "日本語",
        "hotel",
    ];
    let mut x: u64 = 0x243F_6A88_85A3_08D3;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut s = String::from("[");
    for i in 0..records {
        let (a, b) = (WORDS[next() as usize % 8], WORDS[next() as usize % 8]);
        let score = (next() % 1_000_000) as f64 / 1000.0;
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"id":{i},"name":"{a} {b}","score":{score},"tags":["{b}","{a}"],"active":{},"nested":{{"x":{},"y":[1,2,3]}}}}"#,
            next() & 1 == 0,
            next() % 10_000
        ));
    }
    s.push(']');
    s
}

/// One request of the demo's CPU route, real library work: parse `body`
/// with serde_json, add up its scores, re-encode it and deflate that with
/// flate2; returns the compressed length.
pub fn json_request(body: &str) -> u64 {
    use std::io::Write;
    let v: serde_json::Value = serde_json::from_str(body).expect("the demo's JSON body");
    let total: f64 = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["score"].as_f64())
        .sum();
    let encoded = serde_json::to_vec(&v).expect("re-encode the JSON body");
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&encoded).expect("deflate into a Vec");
    let out = z.finish().expect("deflate into a Vec");
    std::hint::black_box(total);
    out.len() as u64
}

/// What the CPU route measured.
pub struct Route {
    pub outcome: Outcome,
    /// Requests completed per second.
    pub per_sec: f64,
    /// Time of one request alone on this thread (the best of three).
    pub request_cpu: Duration,
    /// Size of the request's JSON body.
    pub body_bytes: usize,
}

/// A CPU route on urgent at `quantum`: `load.hogs` requests in flight, each
/// [`json_request`] on a ~750 KB body in `spawn_cpu` (several quanta of
/// work), respawned as soon as it finishes, with the ticker beside them.
pub fn route(quantum: Duration, load: Load, show_progress: bool) -> Route {
    let body: Arc<str> = json_body(6000).into();
    // The request's cost on a plain thread (the best of three).
    let request_cpu = (0..3)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(json_request(&body));
            t.elapsed()
        })
        .min()
        .unwrap_or_default();
    let body_len = body.len();
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let live = Arc::new(Live::default());
    let label = format!("urgent, JSON route, quantum {}", fmt_dur(quantum));
    let t0 = Instant::now() + load.warmup;
    let t1 = t0 + load.window;
    let measure = |preempted: &dyn Fn() -> Option<u64>| {
        std::thread::sleep(t0.saturating_duration_since(Instant::now()));
        let n0 = served.load(Relaxed);
        if show_progress {
            let extra = || preempted().map_or_else(String::new, |p| format!("  preemptions {p}"));
            progress(&label, t0, t1, &live, &extra);
        } else {
            std::thread::sleep(t1.saturating_duration_since(Instant::now()));
        }
        let per_sec = (served.load(Relaxed) - n0) as f64 / t0.elapsed().as_secs_f64();
        stop.store(true, Relaxed);
        per_sec
    };
    let one = {
        let served = served.clone();
        move || {
            let (body, served) = (body.clone(), served.clone());
            urgent::spawn_cpu(move || {
                let n = json_request(&body);
                served.fetch_add(1, Relaxed);
                n
            })
        }
    };
    let (per_sec, samples, preemptions) = on_urgent::under_hogs(
        urgent_rt(load.workers, quantum),
        load,
        t0..t1,
        &live,
        &stop,
        one,
        measure,
    );
    let mut outcome = Outcome::from_samples(label, samples, 0.0);
    outcome.preemptions = preemptions;
    Route {
        outcome,
        per_sec,
        request_cpu,
        body_bytes: body_len,
    }
}

/// Milliseconds to three significant digits (two decimals below 10).
pub fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `10ms`, `1ms`, `100µs`.
pub fn fmt_dur(d: Duration) -> String {
    if d >= Duration::from_secs(1) && d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d >= Duration::from_millis(1) && d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}µs", d.as_micros())
    }
}

/// Line colours of the plots.
pub const COLORS: [plotters::style::RGBColor; 6] = [
    plotters::style::RGBColor(0, 114, 178),
    plotters::style::RGBColor(86, 180, 233),
    plotters::style::RGBColor(213, 94, 0),
    plotters::style::RGBColor(230, 159, 0),
    plotters::style::RGBColor(0, 158, 115),
    plotters::style::RGBColor(204, 121, 167),
];

/// The outcomes as [`plot_cdf`] series: label and sorted samples.
pub fn cdf_series<'a>(
    outcomes: impl IntoIterator<Item = &'a Outcome>,
) -> Vec<(&'a str, &'a [u64])> {
    outcomes
        .into_iter()
        .map(|o| (o.label.as_str(), o.sorted_ns.as_slice()))
        .collect()
}

/// Writes a CDF of each series' sorted nanosecond samples (log-scale ms on x).
pub fn plot_cdf(
    path: &Path,
    title: &str,
    x_desc: &str,
    series: &[(&str, &[u64])],
) -> Result<(), String> {
    use plotters::prelude::*;
    let lo = 1e-3f64;
    let hi = series
        .iter()
        .filter_map(|(_, s)| s.last())
        .map(|&v| v as f64 / 1e6)
        .fold(1.0f64, f64::max)
        * 1.5;
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1.0f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("fraction of samples ≤ x")
        .x_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        })
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (name, samples)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let n = samples.len();
        if n == 0 {
            continue;
        }
        let step = (n / 4000).max(1);
        let mut pts: Vec<(f64, f64)> = Vec::with_capacity(n / step + 3);
        pts.push(((samples[0] as f64 / 1e6).max(lo), 0.0));
        let mut k = 0;
        while k < n {
            pts.push(((samples[k] as f64 / 1e6).max(lo), (k + 1) as f64 / n as f64));
            k += step;
        }
        pts.push(((samples[n - 1] as f64 / 1e6).max(lo), 1.0));
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!("{name} (n = {n})"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    draw_legend(&mut chart)?;
    root.present().map_err(|e| e.to_string())
}

/// Draws the series' legend in the upper left corner of `chart`.
pub fn draw_legend<'a, DB, CT>(
    chart: &mut plotters::chart::ChartContext<'a, DB, CT>,
) -> Result<(), String>
where
    DB: plotters::prelude::DrawingBackend + 'a,
    CT: plotters::coord::CoordTranslate,
{
    use plotters::prelude::*;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

/// The target directory this binary was built into (`…/target`).
pub fn target_dir() -> PathBuf {
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

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            let prefix = format!("{name}=");
            args.iter()
                .find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
        })
}

#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: hogs [--workers N] [--secs S] [--docs]");
        return;
    }
    let workers = arg_value(&args, "--workers")
        .map(|v| {
            v.parse::<usize>()
                .expect("--workers takes a whole number ≥ 1")
        })
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let secs = arg_value(&args, "--secs")
        .map(|v| v.parse::<f64>().expect("--secs takes a number of seconds"))
        .unwrap_or(2.0);
    let to_docs = args.iter().any(|a| a == "--docs");

    let work = Work::calibrate();
    let load = Load {
        workers,
        hogs: 2 * workers,
        window: Duration::from_secs_f64(secs),
        warmup: Duration::from_millis(200),
        echo: false,
    };
    println!(
        "urgent hogs demo: {workers} workers on both runtimes, {} CPU hogs of ~{} each \
         (call-free loops, respawned), and a {} ticker measuring how late each tick is",
        load.hogs,
        fmt_dur(HOG_LEN),
        fmt_dur(PERIOD)
    );
    println!();

    let outcomes: Vec<Outcome> = KINDS.iter().map(|&k| run(k, load, work, true)).collect();
    // The real CPU route, on urgent only and for half the window (it is one
    // extra row, not a second demo).
    let route_load = Load {
        window: (load.window / 2).max(Duration::from_millis(500)),
        ..load
    };
    let json = route(urgent::runtime::DEFAULT_QUANTUM, route_load, true);

    println!();
    println!(
        "ticker lateness (ms) and hog throughput ({workers} workers, {} hogs):",
        load.hogs
    );
    println!();
    print_table(&outcomes, workers);
    println!();
    let p99 = |i: usize| outcomes[i].ms(99.0);
    println!(
        "verdict: with every worker busy, the ticker's p99 lateness is {:.1} ms on urgent \
         (10 ms quantum; target ≤ 11) and {:.1} ms (1 ms quantum; target ≤ 2),",
        p99(0),
        p99(1)
    );
    println!(
        "         {:.0} ms on tokio with the hogs as futures (the ticker only runs when a hog \
         ends and the timer is turned),",
        p99(2)
    );
    println!(
        "         {:.1} ms on tokio with the hogs in spawn_blocking ({} threads the OS time-slices \
         on {workers} workers' CPUs).",
        p99(3),
        load.hogs
    );
    let jo = &json.outcome;
    let [j50, j99, _, jmax] = jo.ms_cells(fmt_ms);
    println!();
    println!(
        "real CPU route on urgent ({} quantum, {} s): {} requests in flight on {workers} workers, \
         each parsing a {} KB JSON body",
        fmt_dur(urgent::runtime::DEFAULT_QUANTUM),
        route_load.window.as_secs_f64(),
        route_load.hogs,
        json.body_bytes / 1000
    );
    println!(
        "         (serde_json), re-encoding it and deflating it (flate2) in spawn_cpu, \
         ~{:.0} ms each alone:",
        json.request_cpu.as_secs_f64() * 1e3,
    );
    println!(
        "         {:.0} requests/s, {} preemptions; ticker lateness p50 {j50} / p99 {j99} / \
         max {jmax} ms (target p99 ≤ 11 ms: {}).",
        json.per_sec,
        jo.preemptions.map_or("-".to_string(), |p| p.to_string()),
        if jo.ms(99.0) <= 11.0 { "met" } else { "missed" }
    );
    if jo.ms(99.0) > 11.0 {
        println!(
            "         The requests spend their time in library code (serde_json, miniz_oxide, \
             core, the allocator),\n         where this build's preemption does not stop a task."
        );
    }
    let busy = outcomes
        .iter()
        .filter_map(|o| o.os_wait)
        .take(2)
        .fold(0.0, f64::max);
    let floor = outcomes
        .iter()
        .filter_map(|o| o.floor_p99)
        .fold(0.0, f64::max);
    if busy > 0.15 || floor > 2.0 {
        println!(
            "note: this machine is busy: urgent's workers waited for a CPU up to {:.0} % of the \
             time and a plain thread's 1 ms sleep overshot by up to {floor:.1} ms (p99);",
            busy * 100.0
        );
        println!("      those delays are in every number above. Run it on an idle machine for clean ones.");
    }

    let path = if to_docs {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&dir).expect("create docs/");
        dir.join("hogs-cdf.svg")
    } else {
        let dir = target_dir();
        std::fs::create_dir_all(&dir).expect("create target/");
        dir.join("urgent-hogs-cdf.svg")
    };
    let series = cdf_series(&outcomes);
    let title = format!(
        "1 ms ticker lateness under {} CPU hogs on {workers} workers (CDF)",
        load.hogs
    );
    match plot_cdf(&path, &title, "lateness (ms, log scale)", &series) {
        Ok(()) => println!("\nlatency CDF written to {}", path.display()),
        Err(e) => println!("\ncould not write the plot {}: {e}", path.display()),
    }
}

/// The verdict table.
pub fn print_table(outcomes: &[Outcome], workers: usize) {
    println!(
        "| {:<32} | {:>5} | {:>7} | {:>7} | {:>7} | {:>7} | {:>15} | {:>7} | {:>9} | {:>9} |",
        "runtime, hogs as",
        "ticks",
        "p50",
        "p99",
        "p99.9",
        "max",
        "hogs/s (% CPUs)",
        "preempt",
        "OS wait",
        "floor p99"
    );
    println!(
        "|{:-<34}|{:->7}|{:->9}|{:->9}|{:->9}|{:->9}|{:->17}|{:->9}|{:->11}|{:->11}|",
        "", ":", ":", ":", ":", ":", ":", ":", ":", ":"
    );
    let full = workers as f64 / HOG_LEN.as_secs_f64();
    for o in outcomes {
        let [p50, p99, p999, max] = o.ms_cells(fmt_ms);
        println!(
            "| {:<32} | {:>5} | {p50:>7} | {p99:>7} | {p999:>7} | {max:>7} | {:>6.2} ({:>4.0} %) | {:>7} | {:>7.0} % | {:>9} |",
            o.label,
            o.sorted_ns.len(),
            o.hogs_per_sec,
            o.hogs_per_sec / full * 100.0,
            o.preemptions.map_or("-".to_string(), |p| p.to_string()),
            o.os_wait.unwrap_or(0.0) * 100.0,
            o.floor_p99.map_or("-".to_string(), fmt_ms),
        );
    }
    println!();
    println!(
        "lateness in ms. ticks: 1 ms ticks scheduled in the window, each measured when it ran."
    );
    println!(
        "hogs/s: completed hog work per second, in 200 ms hogs. preempt: preemptions (urgent)."
    );
    println!(
        "OS wait: share of the time the runtime's threads were runnable but off-CPU (other \
         processes,\n  or tokio's extra spawn_blocking threads). floor p99: overshoot p99 of a \
         plain OS thread sleeping 1 ms\n  during the same window: what the machine alone adds."
    );
}
