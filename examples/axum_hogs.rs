//! An axum server written for tokio, run on urgent two ways: unchanged, and
//! with the one-line change to `urgent::serve(..).preemptible(true)`.
//!
//! ```text
//! cargo run --release --example axum_hogs                    # unchanged, 127.0.0.1:3000
//! cargo run --release --example axum_hogs -- 127.0.0.1:3000 --serve
//! curl localhost:3000/              # hello (also /fast)
//! curl localhost:3000/hog/2000      # 2 s of CPU in a CPU task (spawn_cpu)
//! curl localhost:3000/inline/2000   # 2 s of CPU inline in the handler, a naive port
//! curl localhost:3000/              # answers at once beside /hog; beside /inline
//!                                   # only with --serve (or with one free thread)
//! ```
//!
//! **Unchanged** (the default): the only change from the tokio version is
//! `#[urgent::main]` instead of `#[tokio::main]`. `axum::serve` spawns each
//! connection with `tokio::spawn`, so connections run on urgent's background
//! tokio runtime (as many threads as urgent has workers) with tokio's
//! throughput. `/hog` moves its work to `urgent::spawn_cpu` (where a tokio
//! program would call `spawn_blocking`) and is preempted every quantum on
//! urgent's workers. `/inline` computes in the handler, so it holds a tokio
//! thread for its whole run, as on tokio: enough of them and `/` waits.
//!
//! **`--serve`**: the last line of `main` becomes
//! `urgent::serve(listener, app()).preemptible(true)`, with the same tokio
//! listener and router. Each connection is an urgent task polled on a
//! coroutine, so `/inline` is preempted after its quantum like a CPU task
//! and `/` keeps being answered; `/hog` is unchanged.
//!
//! BENCHMARKS.md ("tokio programs with real clients") measures both paths
//! against tokio with `wrk`.

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;

/// The application: a tokio/axum router with two CPU-heavy routes.
pub fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello from axum on urgent\n" }))
        .route("/fast", get(|| async { "fast\n" }))
        .route("/hog/{ms}", get(hog))
        .route("/inline/{ms}", get(inline))
}

/// Burns `ms` milliseconds of CPU in a CPU task and reports a checksum.
async fn hog(Path(ms): Path<u64>) -> String {
    let ms = ms.min(60_000);
    let x = urgent::spawn_cpu(move || burn(Duration::from_millis(ms)))
        .await
        .expect("the CPU task panicked");
    format!("burned {ms} ms of CPU in a CPU task ({x:x})\n")
}

/// Burns `ms` milliseconds of CPU in the handler itself.
async fn inline(Path(ms): Path<u64>) -> String {
    let ms = ms.min(60_000);
    let x = burn(Duration::from_millis(ms));
    format!("burned {ms} ms of CPU inline ({x:x})\n")
}

/// A call-free loop (apart from a clock read every million iterations).
#[inline(never)]
pub fn burn(d: Duration) -> u64 {
    let t0 = Instant::now();
    let mut x = 1u64;
    while t0.elapsed() < d {
        for _ in 0..1_000_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
        }
    }
    x
}

/// The one-line change: `urgent::serve` with preemptible connections instead
/// of `axum::serve` (tests/axum_hogs.rs drives both).
pub async fn serve_on_urgent(
    listener: tokio::net::TcpListener,
    app: Router,
) -> std::io::Result<()> {
    urgent::serve(listener, app).preemptible(true).await
}

#[urgent::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".to_string());
    let serve = match args.next().as_deref() {
        None => false,
        Some("--serve") => true,
        Some(other) => panic!("unknown option {other:?}: the only option is --serve"),
    };
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("listening on http://{}", listener.local_addr().unwrap());
    if serve {
        println!("urgent::serve: each connection an urgent task on a coroutine");
        serve_on_urgent(listener, app()).await.unwrap();
    } else {
        println!("axum::serve, unchanged: connections on the background tokio runtime");
        axum::serve(listener, app()).await.unwrap();
    }
}
