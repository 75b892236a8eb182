//! Unchanged tokio programs on urgent, measured with real clients (issue 14):
//! an axum app under `wrk`, the same app with a handler that burns CPU
//! inline, mini-redis under `redis-benchmark`, and the resident memory of
//! idle HTTP connections. Every server runs in this process on its own
//! runtime (2 workers each, `URGENT_BENCH_WORKERS`), all in the same run,
//! rounds interleaved; the clients are child processes on loopback.
//!
//! ```text
//! cargo bench --bench tokio_programs                     # quick, about 1.5 minutes
//! cargo bench --bench tokio_programs -- axum_hello       # one part (axum_hello,
//!                                                        # axum_hogs, mini_redis, idle_memory)
//! URGENT_BENCH_LONG=1 cargo bench --bench tokio_programs # more and longer rounds
//! URGENT_BENCH_PIN=1 cargo bench --bench tokio_programs  # servers on CPU 1, clients on CPU 0
//! ```
//!
//! The servers:
//! - `tokio`: a multi-thread tokio runtime with 2 workers and
//!   `axum::serve` (what `#[tokio::main]` runs);
//! - `urgent unchanged`: `urgent::Runtime` with 2 workers and the same
//!   `axum::serve` (what `#[urgent::main]` runs): connections are
//!   `tokio::spawn`ed onto urgent's background tokio runtime;
//! - `urgent::serve`: the one-line change, each connection an urgent task;
//! - `urgent::serve preemptible`: `.preemptible(true)`, each connection
//!   polled on a coroutine.
//!
//! Each server's future runs in `block_on` on a thread of its own, as in a
//! `main` function, and stops through its graceful shutdown.
//!
//! Clients: `wrk` (Debian package `wrk`) and `redis-benchmark` (Debian
//! package `redis-tools`). When one is missing the bench runs
//! `apt-get install -y wrk redis-tools` if it runs as root, else it skips
//! the parts that need it and names the package.
//!
//! CPU sharing: the machine this was written for has 2 CPUs, shared by the
//! servers, the clients and whatever else runs. By default the scheduler
//! places everything. `URGENT_BENCH_PIN=1` (with at least 2 CPUs) pins this
//! process (every server thread) to CPU 1 and the clients to CPU 0 with
//! `taskset`, so a client cannot take the server's CPU at random moments;
//! but then each server's 2 workers (and urgent's background tokio threads)
//! share one CPU, which penalises what cannot move between threads: a
//! preemptible connection, once it has run, is bound to its thread
//! (DESIGN §3), so while that thread waits for the CPU the other worker
//! cannot take it. BENCHMARKS.md has both.
//!
//! The idle-memory part runs each server in a child process (this bench
//! re-executed with `URGENT_BENCH_IDLE_CHILD`), so memory freed by one
//! server and kept by the allocator does not hide the next one's.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;

/// How long the hog route computes inline.
const HOG: Duration = Duration::from_millis(50);
/// Slow clients hitting the hog route back to back.
const SLOW_CLIENTS: usize = 3;
/// Idle connections for the memory part.
const IDLE_CONNS: usize = 10_000;

// ---------------------------------------------------------------------------
// The application and the servers.

/// A call-free loop apart from a clock read every 100 000 iterations: CPU
/// work inline in a handler, as a naive port has it.
#[inline(never)]
fn burn(d: Duration) -> u64 {
    let t0 = Instant::now();
    let mut x = 1u64;
    while t0.elapsed() < d {
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
        }
    }
    x
}

/// hello-world on `/`, and `/hog`, which computes for [`HOG`] inline.
fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "Hello, World!" }))
        .route("/hog", get(|| async { format!("{:x}", burn(HOG)) }))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Tokio,
    Unchanged,
    Serve,
    Preemptible,
}

const KINDS: [Kind; 4] = [Kind::Tokio, Kind::Unchanged, Kind::Serve, Kind::Preemptible];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tokio => "tokio + axum::serve",
            Kind::Unchanged => "urgent unchanged (axum::serve)",
            Kind::Serve => "urgent::serve",
            Kind::Preemptible => "urgent::serve preemptible",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Kind::Tokio => "tokio",
            Kind::Unchanged => "unchanged",
            Kind::Serve => "serve",
            Kind::Preemptible => "preemptible",
        }
    }

    fn from_arg(s: &str) -> Kind {
        KINDS
            .into_iter()
            .find(|k| k.arg() == s)
            .unwrap_or_else(|| panic!("unknown server kind {s:?}"))
    }
}

/// A server running on a thread of its own; dropping it does not stop it,
/// [`Server::stop`] does.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: mpsc::Receiver<()>,
    name: String,
}

impl Server {
    /// Asks for a graceful shutdown and waits for it (bounded: a server
    /// still running after 10 s is left behind with a message).
    fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if self.done.recv_timeout(Duration::from_secs(10)).is_err() {
            eprintln!("note: {} did not shut down within 10 s", self.name);
        }
    }
}

/// Runs `serve(listener, stop)` in `block_on` on a fresh thread with the
/// runtime `$rt` builds; `$rt` is built on that thread.
macro_rules! spawn_server {
    ($name:expr, $rt:expr, |$listener:ident, $stop:ident| $serve:expr) => {{
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop_tx, $stop) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = mpsc::channel();
        let name: String = $name;
        std::thread::Builder::new()
            .name(format!("main {name}"))
            .spawn(move || {
                let rt = $rt;
                rt.block_on(async move {
                    let $listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    addr_tx.send($listener.local_addr().unwrap()).unwrap();
                    $serve.await;
                });
                let _ = done_tx.send(());
            })
            .unwrap();
        Server {
            addr: addr_rx.recv().expect("the server thread panicked"),
            stop: Some(stop_tx),
            done,
            name,
        }
    }};
}

fn start(kind: Kind) -> Server {
    let w = common::workers();
    let name = kind.name().to_string();
    match kind {
        Kind::Tokio => spawn_server!(name, common::tokio_rt(w), |l, stop| async move {
            axum::serve(l, app())
                .with_graceful_shutdown(async move { drop(stop.await) })
                .await
                .unwrap()
        }),
        Kind::Unchanged => {
            spawn_server!(name, common::urgent_rt(w, None), |l, stop| async move {
                axum::serve(l, app())
                    .with_graceful_shutdown(async move { drop(stop.await) })
                    .await
                    .unwrap()
            })
        }
        Kind::Serve | Kind::Preemptible => {
            let preemptible = kind == Kind::Preemptible;
            spawn_server!(name, common::urgent_rt(w, None), |l, stop| async move {
                urgent::serve(l, app())
                    .preemptible(preemptible)
                    .with_graceful_shutdown(async move { drop(stop.await) })
                    .await
                    .unwrap()
            })
        }
    }
}

// ---------------------------------------------------------------------------
// Clients, CPU pinning, tool discovery.

/// Whether client and server are pinned to different CPUs.
/// Decided once, before [`pin_self`] shrinks what `available_parallelism`
/// sees.
fn pinning() -> bool {
    static PIN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PIN.get_or_init(|| {
        let wanted = std::env::var("URGENT_BENCH_PIN").is_ok_and(|v| !v.is_empty() && v != "0");
        wanted && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
    })
}

/// Pins the calling thread (and so every thread it starts later) to CPU 1.
/// Called first thing in `main`, before any other thread exists.
fn pin_self() {
    // Without `-a`, taskset changes only the thread whose id it is given:
    // the main thread, whose affinity the others inherit.
    let ok = Command::new("taskset")
        .args(["-cp", "1", &std::process::id().to_string()])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("note: `taskset -cp 1 <pid>` failed; running unpinned");
    }
}

/// `cmd` as a client process: on CPU 0 when pinning.
fn client_command(program: &str) -> Command {
    if pinning() {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", program]);
        c
    } else {
        Command::new(program)
    }
}

fn on_path(bin: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Finds `bin`, installing the clients with apt-get once if one is missing
/// and this runs as root; `None` (and a message naming `package`) if it
/// cannot be had.
fn find_tool(bin: &str, package: &str, tried_install: &mut bool) -> Option<PathBuf> {
    if let Some(p) = on_path(bin) {
        return Some(p);
    }
    if !*tried_install && is_root() {
        *tried_install = true;
        println!("`{bin}` not found; running `apt-get install -y wrk redis-tools`");
        let ok = Command::new("apt-get")
            .args(["install", "-y", "wrk", "redis-tools"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("apt-get install failed (an `apt-get update` first may help)");
        }
        if let Some(p) = on_path(bin) {
            return Some(p);
        }
    }
    println!(
        "skipping the parts that need `{bin}`: install the Debian package `{package}` \
         (apt-get install {package})"
    );
    None
}

/// What one wrk run measured.
#[derive(Clone, Debug, Default)]
struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Socket errors and non-2xx responses, if wrk reported any.
    errors: String,
}

/// A duration as wrk prints it (`812.00us`, `1.23ms`, `2.00s`), in ms.
fn parse_wrk_time(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1e3,
        "ms" => v,
        "s" => v * 1e3,
        "m" => v * 60e3,
        _ => return None,
    })
}

fn parse_wrk(out: &str) -> Option<Wrk> {
    let mut w = Wrk::default();
    let mut got = (false, false, false);
    for line in out.lines() {
        let t = line.trim();
        let mut f = t.split_whitespace();
        match (f.next(), f.next()) {
            (Some("Requests/sec:"), Some(v)) => {
                w.rps = v.parse().ok()?;
                got.0 = true;
            }
            (Some("50%"), Some(v)) => {
                w.p50_ms = parse_wrk_time(v)?;
                got.1 = true;
            }
            (Some("99%"), Some(v)) => {
                w.p99_ms = parse_wrk_time(v)?;
                got.2 = true;
            }
            _ => {}
        }
        if t.starts_with("Socket errors") || t.starts_with("Non-2xx") {
            if !w.errors.is_empty() {
                w.errors.push_str("; ");
            }
            w.errors.push_str(t);
        }
    }
    (got == (true, true, true)).then_some(w)
}

/// `wrk -t1 -c{conns} -d{secs}s --latency http://addr{path}`.
fn wrk(bin: &Path, addr: SocketAddr, path: &str, conns: usize, secs: u64) -> Wrk {
    let out = client_command(bin.to_str().unwrap())
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            &format!("http://{addr}{path}"),
        ])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    parse_wrk(&text).unwrap_or_else(|| {
        panic!(
            "could not read wrk's output (status {}):\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// One keep-alive HTTP/1.1 GET on `r`/`w`; returns once the whole response
/// (a `content-length` body) is read.
fn http_get(r: &mut BufReader<TcpStream>, path: &str) -> std::io::Result<()> {
    write!(r.get_mut(), "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n")?;
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
}

fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).expect("connect to the server");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    BufReader::new(s)
}

// ---------------------------------------------------------------------------
// Part 1: hello-world throughput.

fn axum_hello(wrk_bin: &Path) {
    let (rounds, secs) = if common::long_run() { (5, 5) } else { (2, 3) };
    let servers: Vec<Server> = KINDS.into_iter().map(start).collect();
    // Warm-up, not counted.
    for s in &servers {
        wrk(wrk_bin, s.addr, "/", 32, 1);
    }
    let mut results: Vec<Vec<Wrk>> = vec![Vec::new(); KINDS.len()];
    for r in 0..rounds {
        // Alternate the order so drift in the machine's load is shared.
        let order: Vec<usize> = if r % 2 == 0 {
            (0..KINDS.len()).collect()
        } else {
            (0..KINDS.len()).rev().collect()
        };
        for i in order {
            results[i].push(wrk(wrk_bin, servers[i].addr, "/", 32, secs));
        }
    }
    for s in servers {
        s.stop();
    }

    println!();
    println!(
        "### axum hello-world: `wrk -t1 -c32 -d{secs}s --latency`, {rounds} interleaved rounds \
         (means over rounds)"
    );
    println!();
    println!("| server | requests/s | p50 ms | p99 ms | ratio vs tokio | per round | target |");
    println!("|---|---|---|---|---|---|---|");
    let mean = |v: &[Wrk], f: fn(&Wrk) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    let tokio_rps = mean(&results[0], |w| w.rps);
    for (i, kind) in KINDS.into_iter().enumerate() {
        let rps = mean(&results[i], |w| w.rps);
        let per_round: Vec<String> = results[i]
            .iter()
            .zip(&results[0])
            .map(|(u, t)| format!("{:.2}", u.rps / t.rps))
            .collect();
        let target = match kind {
            Kind::Tokio => "",
            Kind::Unchanged => "≥ 0.95",
            Kind::Serve => "≥ 1.0",
            Kind::Preemptible => "",
        };
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.3} | {} | {} |",
            kind.name(),
            rps,
            mean(&results[i], |w| w.p50_ms),
            mean(&results[i], |w| w.p99_ms),
            rps / tokio_rps,
            per_round.join(" "),
            target
        );
    }
    print_errors(&results);
}

fn print_errors(results: &[Vec<Wrk>]) {
    for (i, kind) in KINDS.into_iter().enumerate() {
        for w in &results[i] {
            if !w.errors.is_empty() {
                println!("note: wrk against {}: {}", kind.name(), w.errors);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Part 2: fast requests beside handlers that burn CPU inline.

fn axum_hogs(wrk_bin: &Path) {
    let (rounds, secs) = if common::long_run() { (3, 5) } else { (1, 3) };
    let mut results: Vec<Vec<Wrk>> = vec![Vec::new(); KINDS.len()];
    let mut hogs_done = vec![0u64; KINDS.len()];
    for r in 0..rounds {
        let order: Vec<usize> = if r % 2 == 0 {
            (0..KINDS.len()).collect()
        } else {
            (0..KINDS.len()).rev().collect()
        };
        // One server at a time: a hog on an idle server would take CPU
        // from the one being measured.
        for i in order {
            let server = start(KINDS[i]);
            wrk(wrk_bin, server.addr, "/", 32, 1);
            let stop = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicU64::new(0));
            let slow: Vec<_> = (0..SLOW_CLIENTS)
                .map(|_| {
                    let (stop, done, addr) = (stop.clone(), done.clone(), server.addr);
                    std::thread::spawn(move || {
                        let mut c = connect(addr);
                        while !stop.load(Ordering::Relaxed) {
                            http_get(&mut c, "/hog").expect("GET /hog");
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            // Let the hogs start before measuring.
            std::thread::sleep(HOG * 2);
            results[i].push(wrk(wrk_bin, server.addr, "/", 32, secs));
            stop.store(true, Ordering::Relaxed);
            for t in slow {
                t.join().expect("a slow client failed");
            }
            hogs_done[i] += done.load(Ordering::Relaxed);
            server.stop();
        }
    }

    println!();
    println!(
        "### axum, {SLOW_CLIENTS} slow clients on a route that burns {} ms of CPU inline; \
         `wrk -t1 -c32 -d{secs}s --latency` on `/` ({rounds} round(s), means over rounds)",
        HOG.as_millis()
    );
    println!();
    println!(
        "| server | fast requests/s | fast p50 ms | fast p99 ms | hog requests done | target |"
    );
    println!("|---|---|---|---|---|---|");
    let mean = |v: &[Wrk], f: fn(&Wrk) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    for (i, kind) in KINDS.into_iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {} |",
            kind.name(),
            mean(&results[i], |w| w.rps),
            mean(&results[i], |w| w.p50_ms),
            mean(&results[i], |w| w.p99_ms),
            hogs_done[i],
            if kind == Kind::Preemptible {
                "p99 ≤ 20 ms (2 quanta)"
            } else {
                ""
            }
        );
    }
    print_errors(&results);
}

// ---------------------------------------------------------------------------
// Part 3: mini-redis, unchanged, under redis-benchmark.

fn start_redis(urgent_rt: bool) -> Server {
    let w = common::workers();
    if urgent_rt {
        spawn_server!(
            "mini-redis on urgent".to_string(),
            common::urgent_rt(w, None),
            |l, stop| async move { mini_redis::server::run(l, stop).await.unwrap() }
        )
    } else {
        spawn_server!(
            "mini-redis on tokio".to_string(),
            common::tokio_rt(w),
            |l, stop| async move { mini_redis::server::run(l, stop).await.unwrap() }
        )
    }
}

/// `redis-benchmark -t set,get -n {n} -q`: requests/s of SET and GET.
fn redis_benchmark(bin: &Path, addr: SocketAddr, n: usize) -> (f64, f64) {
    let out = client_command(bin.to_str().unwrap())
        .args([
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-t",
            "set,get",
            "-n",
            &n.to_string(),
            "-q",
        ])
        .output()
        .expect("run redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = |cmd: &str| -> Option<f64> {
        // -q prints progress lines ending in '\r' (`SET: rps=…`) and one
        // final line per test: `SET: 86956.52 requests per second, p50=…`.
        text.split(['\r', '\n'])
            .filter(|l| l.contains("requests per second"))
            .filter_map(|l| l.trim().strip_prefix(cmd))
            .rev()
            .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    match (rate("SET:"), rate("GET:")) {
        (Some(s), Some(g)) => (s, g),
        _ => panic!(
            "could not read redis-benchmark's output (status {}):\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn mini_redis(bin: &Path) {
    let (rounds, n) = if common::long_run() {
        (5, 200_000)
    } else {
        (3, 50_000)
    };
    let tokio_srv = start_redis(false);
    let urgent_srv = start_redis(true);
    redis_benchmark(bin, tokio_srv.addr, 5_000);
    redis_benchmark(bin, urgent_srv.addr, 5_000);
    let (mut t, mut u) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        if r % 2 == 0 {
            t.push(redis_benchmark(bin, tokio_srv.addr, n));
            u.push(redis_benchmark(bin, urgent_srv.addr, n));
        } else {
            u.push(redis_benchmark(bin, urgent_srv.addr, n));
            t.push(redis_benchmark(bin, tokio_srv.addr, n));
        }
    }
    tokio_srv.stop();
    urgent_srv.stop();

    println!();
    println!(
        "### mini-redis 0.4 unchanged: `redis-benchmark -t set,get -n {n} -q`, {rounds} \
         interleaved rounds (means over rounds)"
    );
    println!();
    println!(
        "| command | tokio requests/s | urgent requests/s | urgent/tokio | per round | target |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, f) in [
        ("SET", (|x: &(f64, f64)| x.0) as fn(&_) -> f64),
        ("GET", |x| x.1),
    ] {
        let tm = t.iter().map(f).sum::<f64>() / rounds as f64;
        let um = u.iter().map(f).sum::<f64>() / rounds as f64;
        let per: Vec<String> = u
            .iter()
            .zip(&t)
            .map(|(a, b)| format!("{:.2}", f(a) / f(b)))
            .collect();
        println!(
            "| {name} | {tm:.0} | {um:.0} | {:.3} | {} | ≥ 0.95 |",
            um / tm,
            per.join(" ")
        );
    }
}

// ---------------------------------------------------------------------------
// Part 4: resident memory per idle connection (child processes).

fn vm_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Raises this process's open-file limit to `want` (soft and, as root,
/// hard); returns the soft limit in force.
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer for the resource getrlimit fills.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if lim.rlim_cur >= want {
        return lim.rlim_cur;
    }
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: a valid pointer to an initialised rlimit. Raising the hard
    // limit needs CAP_SYS_RESOURCE; without it the call fails and the
    // soft limit is raised only as far as the hard one allows below.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return want;
    }
    let capped = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &capped) };
    // SAFETY: as for the first getrlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur
}

/// The child: one server; prints `ADDR <addr>`, then answers each `RSS`
/// line on stdin with `RSS <VmRSS KiB>`, and exits when stdin closes
/// (without the graceful shutdown, which would wait for every connection).
fn idle_child(kind: Kind) {
    raise_nofile(IDLE_CONNS as u64 + 1024);
    let server = start(kind);
    // Warm the server up, then let it settle.
    for _ in 0..50 {
        http_get(&mut connect(server.addr), "/").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    println!("ADDR {}", server.addr);
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
        println!("RSS {}", vm_rss_kib());
        line.clear();
    }
    std::process::exit(0);
}

/// Opens `n` keep-alive connections to `addr`, each after one request.
fn open_idle(addr: SocketAddr, n: usize) -> Vec<BufReader<TcpStream>> {
    const THREADS: usize = 4;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(THREADS)
                        .map(|_| {
                            let mut c = connect(addr);
                            http_get(&mut c, "/").expect("GET / on a new connection");
                            c
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// One server's line of the idle-memory table.
fn idle_one(exe: &std::path::Path, kind: Kind, n: usize) -> Result<(usize, u64, u64), String> {
    use std::process::Stdio;
    let mut child = Command::new(exe)
        .env("URGENT_BENCH_IDLE_CHILD", kind.arg())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("re-run this bench as a child: {e}"))?;
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut read = |prefix: &str| -> Result<String, String> {
        let mut line = String::new();
        out.read_line(&mut line).map_err(|e| e.to_string())?;
        line.trim()
            .strip_prefix(prefix)
            .map(str::to_string)
            .ok_or_else(|| format!("child said {line:?}, expected {prefix}…"))
    };
    let result = (|| {
        let addr: SocketAddr = read("ADDR ")?.parse().map_err(|e| format!("{e}"))?;
        writeln!(stdin, "RSS").map_err(|e| e.to_string())?;
        let before: u64 = read("RSS ")?.parse().map_err(|e| format!("{e}"))?;
        let conns = open_idle(addr, n);
        std::thread::sleep(Duration::from_millis(500));
        writeln!(stdin, "RSS").map_err(|e| e.to_string())?;
        let after: u64 = read("RSS ")?.parse().map_err(|e| format!("{e}"))?;
        Ok((conns.len(), before, after))
    })();
    drop(stdin);
    let _ = child.wait();
    result
}

fn idle_memory() {
    let exe = std::env::current_exe().unwrap();
    // The client ends live in this process, the server ends in the child.
    let limit = raise_nofile(IDLE_CONNS as u64 + 1024);
    let n = IDLE_CONNS.min(limit.saturating_sub(1024) as usize);
    if n < IDLE_CONNS {
        println!("note: open-file limit {limit}: measuring {n} connections, not {IDLE_CONNS}");
    }
    println!();
    println!(
        "### resident memory per idle HTTP/1.1 keep-alive connection ({n} connections, each \
         after one request; the server's VmRSS delta, server in a child process)"
    );
    println!();
    println!("| server | connections | VmRSS before MiB | after MiB | KiB per connection |");
    println!("|---|---|---|---|---|");
    for kind in KINDS {
        match idle_one(&exe, kind, n) {
            Ok((open, before, after)) => println!(
                "| {} | {open} | {:.1} | {:.1} | {:.2} |",
                kind.name(),
                before as f64 / 1024.0,
                after as f64 / 1024.0,
                after.saturating_sub(before) as f64 / open as f64
            ),
            Err(e) => println!("| {} | failed: {e} | | | |", kind.name()),
        }
    }
}

fn main() {
    if let Ok(kind) = std::env::var("URGENT_BENCH_IDLE_CHILD") {
        idle_child(Kind::from_arg(&kind));
        return;
    }
    if pinning() {
        pin_self();
    }
    println!(
        "tokio programs with real clients: {} workers per server; load average {} at start; {}",
        common::workers(),
        common::load_average(),
        if pinning() {
            "servers pinned to CPU 1, clients to CPU 0 (taskset)"
        } else {
            "not pinned"
        }
    );
    let mut tried = false;
    let need_wrk = common::selected("axum_hello") || common::selected("axum_hogs");
    let wrk_bin = if need_wrk {
        find_tool("wrk", "wrk", &mut tried)
    } else {
        None
    };
    if let Some(w) = &wrk_bin {
        if common::selected("axum_hello") {
            axum_hello(w);
        }
        if common::selected("axum_hogs") {
            axum_hogs(w);
        }
    }
    if common::selected("mini_redis") {
        if let Some(r) = find_tool("redis-benchmark", "redis-tools", &mut tried) {
            mini_redis(&r);
        }
    }
    if common::selected("idle_memory") {
        idle_memory();
    }
    println!();
    println!("load average at the end: {}", common::load_average());
}
