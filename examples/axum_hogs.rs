//! An axum server written for tokio, run on urgent: the only changes from
//! the tokio version are `#[urgent::main]` instead of `#[tokio::main]` and
//! the CPU-heavy route calling `urgent::spawn_cpu` (where a tokio program
//! would call `tokio::task::spawn_blocking`).
//!
//! ```text
//! cargo run --release --example axum_hogs               # serves on 127.0.0.1:3000
//! cargo run --release --example axum_hogs -- 127.0.0.1:0
//! curl localhost:3000/            # hello
//! curl localhost:3000/hog/2000    # burns 2 s of CPU in a CPU task
//! curl localhost:3000/fast        # still answers at once
//! ```
//!
//! `axum::serve` spawns each connection with `tokio::spawn`, so connections
//! run on urgent's background tokio runtime (one thread), while the CPU work
//! runs on urgent's workers, preempted every quantum. [`serve_on_urgent`]
//! shows the other arrangement: the same `Router`, each connection an urgent
//! task, so a fast request is served on a worker that CPU hogs are holding.

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;

/// The application: a tokio/axum router with one CPU-heavy route.
pub fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello from axum on urgent\n" }))
        .route("/fast", get(|| async { "fast\n" }))
        .route("/hog/{ms}", get(hog))
}

/// Burns `ms` milliseconds of CPU in a CPU task and reports a checksum.
async fn hog(Path(ms): Path<u64>) -> String {
    let ms = ms.min(60_000);
    let x = urgent::spawn_cpu(move || burn(Duration::from_millis(ms)))
        .await
        .expect("the CPU task panicked");
    format!("burned {ms} ms of CPU ({x:x})\n")
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

/// Serves `app` with every connection as an urgent task (hyper's HTTP/1
/// connection driver polled on urgent's workers) instead of `axum::serve`'s
/// `tokio::spawn`.
pub async fn serve_on_urgent(
    listener: tokio::net::TcpListener,
    app: Router,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        urgent::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

#[urgent::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("listening on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app()).await.unwrap();
}
