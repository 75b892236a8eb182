//! The axum example (examples/axum_hogs.rs) on urgent, driven by a real
//! HTTP client (hyper's), including while two CPU hogs hold the only worker.
//!
//! Loopback only; every request has a timeout, no speed is asserted (the
//! bounds are seconds, for a loaded CI machine).

#[path = "../examples/axum_hogs.rs"]
#[allow(dead_code)]
mod example;

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

const LIMIT: Duration = Duration::from_secs(30);
/// Each hog burns this long (wall clock); both share the one worker. The
/// test does not wait for them: dropping the runtime cancels them.
const HOG_MS: u64 = 20_000;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn get(client: &HttpClient, url: &str) -> (u16, String) {
    let resp = tokio::time::timeout(LIMIT, client.get(url.parse().unwrap()))
        .await
        .unwrap_or_else(|_| panic!("GET {url} timed out"))
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let body = tokio::time::timeout(LIMIT, resp.into_body().collect())
        .await
        .unwrap_or_else(|_| panic!("body of {url} timed out"))
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn scenario(on_urgent: bool) {
    let rt = urgent::Builder::new()
        .worker_threads(1)
        .quantum(Duration::from_millis(1))
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        if on_urgent {
            urgent::spawn(example::serve_on_urgent(listener, example::app()));
        } else {
            urgent::spawn(async move { axum::serve(listener, example::app()).await });
        }
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

        let (status, body) = get(&client, &format!("{base}/")).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "hello from axum on urgent\n")
        );
        let (status, _) = get(&client, &format!("{base}/no-such-route")).await;
        assert_eq!(status, 404);
        let (status, body) = get(&client, &format!("{base}/hog/5")).await;
        assert_eq!(status, 200);
        assert!(body.starts_with("burned 5 ms"), "{body}");

        // Two hogs on the only worker.
        let hogs: Vec<_> = (0..2)
            .map(|_| {
                let client = client.clone();
                let url = format!("{base}/hog/{HOG_MS}");
                urgent::spawn(async move { get(&client, &url).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let t0 = Instant::now();
            let (status, body) = get(&client, &format!("{base}/fast")).await;
            assert_eq!((status, body.as_str()), (200, "fast\n"));
            worst = worst.max(t0.elapsed());
        }
        let hogs_running = hogs.iter().filter(|h| !h.is_finished()).count();
        eprintln!(
            "{}: slowest /fast while 2 hogs ran: {worst:?}; hogs still running: {hogs_running}",
            if on_urgent {
                "serve_on_urgent"
            } else {
                "axum::serve"
            }
        );
        assert_eq!(hogs_running, 2, "the fast requests waited for the hogs");
    });
    // Cancels the hogs (CPU tasks stopped at a preemption are freed).
    rt.shutdown_timeout(LIMIT);
}

/// `axum::serve` as written for tokio: connections on urgent's background
/// tokio runtime, CPU work on urgent's worker.
#[test]
fn axum_serve_answers_while_two_hogs_hold_the_only_worker() {
    scenario(false);
}

/// The same router with each connection as an urgent task: the fast route is
/// served on the very worker the hogs occupy, between their quanta.
#[test]
fn connections_on_urgent_answer_while_two_hogs_hold_the_only_worker() {
    scenario(true);
}
