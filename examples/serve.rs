//! `urgent::serve`: an axum app whose handler burns CPU inline, as a naive
//! port from tokio has it, kept responsive by a one-line change.
//!
//! ```text
//! cargo run --release --example serve               # 127.0.0.1:3000
//! cargo run --release --example serve -- 127.0.0.1:0
//! cargo run --release --example serve -- 127.0.0.1:3000 --not-preemptible
//! curl localhost:3000/              # hello
//! curl localhost:3000/hog/2000      # computes 2 s inline in the handler
//! curl localhost:3000/              # still answers at once, beside the hog
//! ```
//!
//! The tokio version of this program ends with
//! `axum::serve(listener, app()).with_graceful_shutdown(ctrl_c()).await`;
//! here that line is `urgent::serve(listener, app()).preemptible(true)`,
//! everything else (the tokio listener, the router, the handlers) is
//! unchanged. Each connection is an urgent task polled on a coroutine, so
//! the hog handler is preempted after its quantum (10 ms) and the other
//! connections are served in between. With `--not-preemptible` the
//! connections are plain urgent tasks: a hog holds its thread for its whole
//! run, and `/` gets through only because urgent's retake hands a stuck
//! thread's worker to a spare thread (DESIGN §3), later and less
//! predictably (BENCHMARKS.md, "tokio programs with real clients"). The
//! unchanged program (`axum::serve`, see the `axum_hogs` example) is stuck
//! like tokio: `/` waits for the hogs.
//!
//! Ctrl-C stops accepting, lets the requests in flight finish and exits.

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;

/// The application, written for tokio: the hog computes inline.
fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello from urgent::serve\n" }))
        .route("/hog/{ms}", get(hog))
}

/// Burns `ms` milliseconds of CPU in the handler itself (no `spawn_cpu`,
/// no `spawn_blocking`).
async fn hog(Path(ms): Path<u64>) -> String {
    let ms = ms.min(60_000);
    let x = burn(Duration::from_millis(ms));
    format!("burned {ms} ms of CPU inline ({x:x})\n")
}

/// A call-free loop (apart from a clock read every million iterations).
#[inline(never)]
fn burn(d: Duration) -> u64 {
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

#[urgent::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".to_string());
    let preemptible = match args.next().as_deref() {
        None => true,
        Some("--not-preemptible") => false,
        Some(other) => panic!("unknown option {other:?}: the only option is --not-preemptible"),
    };
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!(
        "listening on http://{} ({})",
        listener.local_addr().unwrap(),
        if preemptible {
            "preemptible connections"
        } else {
            "connections as plain urgent tasks"
        }
    );
    urgent::serve(listener, app())
        .preemptible(preemptible)
        .with_graceful_shutdown(async {
            tokio::signal::ctrl_c().await.expect("listen for Ctrl-C");
        })
        .await
        .unwrap();
    println!("shut down");
}
