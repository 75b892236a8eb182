//! TCP echo: urgent's own driver (`urgent::net`) against tokio (`tokio::net`),
//! same client, same run, rounds interleaved.
//!
//! ```text
//! cargo bench --bench echo                     # quick: 3 rounds of 1 s per case
//! URGENT_BENCH_LONG=1 cargo bench --bench echo # 6 rounds of 3 s per case
//! ```
//!
//! Each server runs on one worker thread (urgent: `worker_threads(1)`;
//! tokio: multi-thread runtime with one worker), so both get the same share
//! of this 2-core machine; the client is a tokio current-thread runtime on
//! its own thread. Each client connection ping-pongs one message at a time
//! and records its round trip in an HDR histogram.
//!
//! Cases: `small` = 32 connections × 64-byte messages (msgs/s, latency);
//! `bulk` = 4 connections × 64 KiB messages (MB/s).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const BUF: usize = 64 * 1024;

/// Starts an echo server on `$runtime` (one worker) and returns the runtime
/// and the server's address; `$rt` is the runtime's crate (`urgent` or
/// `tokio`), whose `net::TcpListener` and `spawn` the server uses.
macro_rules! echo_server {
    ($rt:ident, $runtime:expr) => {{
        let rt = $runtime;
        let addr = rt.block_on(async {
            let l = $rt::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            $rt::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    s.set_nodelay(true).unwrap();
                    $rt::spawn(echo(s));
                }
            });
            addr
        });
        (rt, addr)
    }};
}

/// One server connection: sends back what it reads until the client closes.
async fn echo(mut s: impl AsyncRead + AsyncWrite + Unpin) {
    let mut buf = vec![0u8; BUF];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

fn urgent_server() -> (urgent::Runtime, SocketAddr) {
    echo_server!(urgent, common::urgent_rt(1, None))
}

fn tokio_server() -> (tokio::runtime::Runtime, SocketAddr) {
    echo_server!(tokio, common::tokio_rt(1))
}

struct Outcome {
    msgs: u64,
    bytes: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
}

/// An empty histogram of round trips, µs.
fn round_trips() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000, 3).unwrap()
}

/// Runs `conns` ping-pong connections of `size`-byte messages for `dur`.
fn client(addr: SocketAddr, conns: usize, size: usize, dur: Duration) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut streams = Vec::new();
        for _ in 0..conns {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            streams.push(s);
        }
        let start = Instant::now();
        let deadline = start + dur;
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|mut s| {
                tokio::spawn(async move {
                    let msg = vec![0xA5u8; size];
                    let mut back = vec![0u8; size];
                    let mut hist = round_trips();
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        s.write_all(&msg).await.unwrap();
                        s.read_exact(&mut back).await.unwrap();
                        hist.saturating_record(t0.elapsed().as_micros() as u64);
                        n += 1;
                    }
                    (n, hist)
                })
            })
            .collect();
        let mut hist = round_trips();
        let mut msgs = 0;
        for t in tasks {
            let (n, h) = t.await.unwrap();
            msgs += n;
            hist.add(h).unwrap();
        }
        Outcome {
            msgs,
            bytes: msgs * size as u64,
            elapsed: start.elapsed(),
            hist,
        }
    })
}

fn run_client(addr: SocketAddr, conns: usize, size: usize, dur: Duration) -> Outcome {
    std::thread::spawn(move || client(addr, conns, size, dur))
        .join()
        .unwrap()
}

#[derive(Default)]
struct Totals {
    msgs: u64,
    bytes: u64,
    secs: f64,
    hist: Option<Histogram<u64>>,
}

impl Totals {
    fn add(&mut self, o: Outcome) {
        self.msgs += o.msgs;
        self.bytes += o.bytes;
        self.secs += o.elapsed.as_secs_f64();
        match &mut self.hist {
            Some(h) => h.add(&o.hist).unwrap(),
            None => self.hist = Some(o.hist),
        }
    }
    fn msgs_per_s(&self) -> f64 {
        self.msgs as f64 / self.secs
    }
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
    fn q(&self, q: f64) -> u64 {
        self.hist.as_ref().map_or(0, |h| h.value_at_quantile(q))
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    let (rounds, dur) = if common::long_run() {
        (6, Duration::from_secs(3))
    } else {
        (3, Duration::from_secs(1))
    };
    let (_urt, uaddr) = urgent_server();
    let (_trt, taddr) = tokio_server();
    let cases: [(&str, usize, usize); 2] = [("small", 32, 64), ("bulk", 4, BUF)];

    println!(
        "TCP echo, server on 1 worker thread, {rounds} interleaved rounds × {} s per case",
        dur.as_secs()
    );
    println!(
        "{:<6} {:<7} {:>12} {:>10} {:>9} {:>9} {:>9}",
        "case", "server", "msgs/s", "MB/s", "p50 µs", "p99 µs", "max µs"
    );
    for (name, conns, size) in cases {
        // Warm-up, not counted.
        run_client(uaddr, conns, size, Duration::from_millis(200));
        run_client(taddr, conns, size, Duration::from_millis(200));
        let mut u = Totals::default();
        let mut t = Totals::default();
        for r in 0..rounds {
            // Alternate which goes first.
            if r % 2 == 0 {
                u.add(run_client(uaddr, conns, size, dur));
                t.add(run_client(taddr, conns, size, dur));
            } else {
                t.add(run_client(taddr, conns, size, dur));
                u.add(run_client(uaddr, conns, size, dur));
            }
        }
        for (server, x) in [("urgent", &u), ("tokio", &t)] {
            println!(
                "{:<6} {:<7} {:>12.0} {:>10.1} {:>9} {:>9} {:>9}",
                name,
                server,
                x.msgs_per_s(),
                x.mb_per_s(),
                x.q(0.5),
                x.q(0.99),
                x.q(1.0)
            );
        }
        println!(
            "{:<6} urgent/tokio throughput ratio: {:.3} (target >= 0.95)",
            name,
            u.msgs_per_s() / t.msgs_per_s()
        );
    }
}
