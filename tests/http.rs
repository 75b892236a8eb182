//! `urgent::serve` (axum) and the hyper adapters: connections as urgent
//! tasks, preemptible connections, graceful shutdown. Loopback only, raw
//! HTTP/1.1 over a std TcpStream as the client, every wait bounded.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;

fn get_once(addr: SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A call-free loop: CPU work inline in a handler, the naive port.
#[inline(never)]
fn burn(d: Duration) -> u64 {
    let t0 = Instant::now();
    let mut x = 1u64;
    while t0.elapsed() < d {
        for _ in 0..100_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
    }
    x
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "hello" })).route(
        "/burn",
        get(|| async { format!("{:x}", burn(Duration::from_millis(600))) }),
    )
}

fn runtime(workers: usize) -> urgent::Runtime {
    urgent::Builder::new()
        .worker_threads(workers)
        .quantum(Duration::from_millis(2))
        .build()
        .unwrap()
}

#[test]
fn serve_answers_on_a_tokio_listener_and_an_urgent_listener() {
    let rt = runtime(2);
    let (a, b) = rt.block_on(async {
        let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let l2 = urgent::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a, b) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
        urgent::spawn(urgent::serve(l1, app()).into_future());
        urgent::spawn(urgent::serve(l2, app()).into_future());
        (a, b)
    });
    for addr in [a, b] {
        let r = std::thread::spawn(move || get_once(addr, "/"))
            .join()
            .unwrap();
        assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("hello"), "{r}");
    }
    // Each connection ran as an urgent task, not on the tokio runtime.
    assert_eq!(rt.metrics().tokio_tasks(), 0);
}

/// One worker, a handler that computes 600 ms inline: with preemptible
/// connections a fast request on another connection is answered while the
/// slow one computes (generous bound: well before the slow one ends).
#[test]
fn preemptible_connections_keep_fast_requests_flowing_past_an_inline_cpu_handler() {
    let rt = runtime(1);
    let addr = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        urgent::spawn(urgent::serve(l, app()).preemptible(true).into_future());
        addr
    });
    let slow = std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = get_once(addr, "/burn");
        (r, t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let fast = get_once(addr, "/");
    let fast_took = t0.elapsed();
    let (slow_r, slow_took) = slow.join().unwrap();
    assert!(fast.ends_with("hello"), "{fast}");
    assert!(slow_r.starts_with("HTTP/1.1 200"), "{slow_r}");
    assert!(
        fast_took < slow_took,
        "the fast request ({fast_took:?}) waited for the inline CPU handler ({slow_took:?})"
    );
    let m = rt.metrics();
    assert!(m.preemptions() > 0, "{m:?}");
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests_then_returns() {
    let rt = runtime(2);
    let (addr, stop, server) = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = urgent::spawn(
            urgent::serve(l, app())
                .preemptible(true)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .into_future(),
        );
        (addr, tx, server)
    });
    let slow = std::thread::spawn(move || get_once(addr, "/burn"));
    std::thread::sleep(Duration::from_millis(150));
    stop.send(()).unwrap();
    let result = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("graceful shutdown hung")
    });
    result.unwrap().unwrap();
    let r = slow.join().unwrap();
    assert!(
        r.starts_with("HTTP/1.1 200"),
        "the in-flight request was cut: {r}"
    );
    // The listener is closed: new connections are refused.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn hyper_executor_and_timer_drive_a_hyper_http1_server() {
    use hyper::server::conn::http1;
    let rt = runtime(2);
    let addr = rt.block_on(async {
        let l = urgent::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        urgent::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(hyper::body::Bytes::from_static(b"hyper")),
                    ))
                });
                let conn = http1::Builder::new()
                    .timer(urgent::http::HyperTimer)
                    .header_read_timeout(Duration::from_secs(5))
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc);
                hyper::rt::Executor::execute(&urgent::http::HyperExecutor::new(), async move {
                    let _ = conn.await;
                });
            }
        });
        addr
    });
    let r = std::thread::spawn(move || get_once(addr, "/"))
        .join()
        .unwrap();
    assert!(r.ends_with("hyper"), "{r}");
}

use std::future::IntoFuture;
