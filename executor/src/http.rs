//! HTTP servers whose connections run on urgent's workers (features `hyper`
//! and `axum`).
//!
//! `axum::serve` spawns every connection with `tokio::spawn`, so under
//! `#[urgent::main]` connections run on the background tokio runtime and a
//! handler that burns CPU inline blocks a tokio thread like on tokio. The
//! one-line change is [`serve`]: the same listener and router, each
//! connection an urgent task; with [`Serve::preemptible`] each connection is
//! polled on a coroutine (`spawn_preemptible`), so a handler that computes
//! inline is preempted after its quantum like a CPU task and the other
//! connections keep being served.
//!
//! For hyper users, [`HyperExecutor`] and [`HyperTimer`] are hyper's
//! `rt::Executor` and `rt::Timer` on urgent.
//!
//! Memory: a preemptible connection owns a coroutine stack, a reservation of
//! `Builder::stack_size` (256 KiB by default) of which only the touched
//! pages are resident; see BENCHMARKS.md for the measured resident memory
//! per idle connection.

use std::future::{Future, IntoFuture};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// hyper's `rt::Executor` on urgent: each future hyper spawns (HTTP/2
/// streams, background connection tasks) becomes an urgent task, or a
/// preemptible one.
///
/// # Examples
///
/// ```
/// use urgent_executor::http::HyperExecutor;
/// let rt = urgent_executor::Runtime::new().unwrap();
/// rt.block_on(async {
///     let (tx, rx) = tokio::sync::oneshot::channel();
///     hyper::rt::Executor::execute(&HyperExecutor::new(), async move { tx.send(1).unwrap() });
///     assert_eq!(rx.await.unwrap(), 1);
/// });
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperExecutor {
    preemptible: bool,
}

impl HyperExecutor {
    /// Spawns with `urgent::spawn`.
    pub fn new() -> HyperExecutor {
        HyperExecutor { preemptible: false }
    }

    /// Spawns with `urgent::spawn_preemptible`: each future is polled on a
    /// coroutine and preempted when a poll runs past the quantum.
    pub fn preemptible() -> HyperExecutor {
        HyperExecutor { preemptible: true }
    }
}

impl<F> hyper::rt::Executor<F> for HyperExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[track_caller]
    fn execute(&self, fut: F) {
        if self.preemptible {
            crate::spawn_preemptible(fut);
        } else {
            crate::spawn(fut);
        }
    }
}

/// hyper's `rt::Timer` on urgent's timers (header-read timeouts, keep-alive
/// timers).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use hyper::rt::Timer;
/// let rt = urgent_executor::Runtime::new().unwrap();
/// rt.block_on(async { urgent_executor::http::HyperTimer.sleep(Duration::from_millis(1)).await });
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperTimer;

struct HyperSleep(Pin<Box<crate::time::Sleep>>);

impl Future for HyperSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(Box::pin(crate::time::sleep(duration))))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(Box::pin(crate::time::sleep_until(deadline))))
    }
}

/// A listener [`serve`] can accept connections from: tokio's (what an
/// unchanged axum program binds) or urgent's own.
pub trait Listener: Send + 'static {
    /// The accepted connection.
    type Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    /// Accepts the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&mut self) -> io::Result<Self::Io> {
        tokio::net::TcpListener::accept(self).await.map(|(s, _)| s)
    }
}

impl Listener for crate::net::TcpListener {
    type Io = crate::net::TcpStream;
    async fn accept(&mut self) -> io::Result<Self::Io> {
        crate::net::TcpListener::accept(self).await.map(|(s, _)| s)
    }
}

/// Serves `router` on `listener` with every connection an urgent task:
/// `axum::serve` with urgent's workers instead of `tokio::spawn`. Await it,
/// or configure it first with [`Serve::preemptible`] and
/// [`Serve::with_graceful_shutdown`]. Like `axum::serve`, accept errors do
/// not end it (it waits briefly and goes on), so it only returns after a
/// graceful shutdown. Like `axum::serve`, accept errors do
/// not end it (it waits briefly and goes on), so it only returns after a
/// graceful shutdown.
///
/// # Examples
///
/// ```
/// use axum::{routing::get, Router};
/// let rt = urgent_executor::Runtime::new().unwrap();
/// rt.block_on(async {
///     let app = Router::new().route("/", get(|| async { "hi" }));
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
///     let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
///     let server = urgent_executor::spawn(
///         urgent_executor::http::serve(listener, app)
///             .preemptible(true)
///             .with_graceful_shutdown(async move { let _ = stop_rx.await; })
///             .into_future(),
///     );
///     stop_tx.send(()).unwrap();
///     server.await.unwrap().unwrap();
/// });
/// # use std::future::IntoFuture;
/// ```
#[cfg(feature = "axum")]
pub fn serve<L: Listener>(listener: L, router: axum::Router) -> Serve<L> {
    Serve {
        listener,
        router,
        preemptible: false,
    }
}

/// The future of [`serve`], with its options.
#[cfg(feature = "axum")]
#[must_use = "a server does nothing unless awaited"]
pub struct Serve<L> {
    listener: L,
    router: axum::Router,
    preemptible: bool,
}

#[cfg(feature = "axum")]
impl<L: Listener> Serve<L> {
    /// Polls each connection on a coroutine (`spawn_preemptible`), so a
    /// handler that burns CPU inline is preempted after its quantum instead
    /// of holding its worker. Costs a coroutine stack per connection.
    pub fn preemptible(mut self, yes: bool) -> Self {
        self.preemptible = yes;
        self
    }

    /// Stops accepting when `signal` completes, lets every connection
    /// finish its in-flight requests (hyper's graceful shutdown), then
    /// returns: `axum::serve(..).with_graceful_shutdown(..)`.
    pub fn with_graceful_shutdown<F>(self, signal: F) -> WithGracefulShutdown<L, F>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        WithGracefulShutdown {
            serve: self,
            signal,
        }
    }

    async fn run(
        mut self,
        signal: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    ) -> io::Result<()> {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut signal = signal;
        loop {
            let accepted = match signal.as_mut() {
                None => self.listener.accept().await,
                Some(sig) => {
                    tokio::select! {
                        r = self.listener.accept() => r,
                        _ = sig.as_mut() => break,
                    }
                }
            };
            let io = match accepted {
                Ok(io) => io,
                Err(e) if is_connection_error(&e) => continue,
                Err(_) => {
                    // Out of file descriptors and the like: wait for some to
                    // close and go on, as axum::serve does.
                    crate::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(self.router.clone());
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(HyperTimer)
                .serve_connection(hyper_util::rt::TokioIo::new(io), service);
            // Spawned as it is, not inside an async block of this crate: a
            // preemption is declined in frames of the runtime itself, and an
            // async block here would put one under every handler.
            let conn = graceful.watch(conn);
            if self.preemptible {
                drop(crate::spawn_preemptible(conn));
            } else {
                drop(crate::spawn(conn));
            }
        }
        drop(self.listener);
        graceful.shutdown().await;
        Ok(())
    }
}

#[cfg(feature = "axum")]
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

#[cfg(feature = "axum")]
impl<L: Listener> IntoFuture for Serve<L> {
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run(None))
    }
}

/// [`serve`] with a shutdown signal, from [`Serve::with_graceful_shutdown`].
#[cfg(feature = "axum")]
#[must_use = "a server does nothing unless awaited"]
pub struct WithGracefulShutdown<L, F> {
    serve: Serve<L>,
    signal: F,
}

#[cfg(feature = "axum")]
impl<L: Listener, F: Future<Output = ()> + Send + 'static> IntoFuture
    for WithGracefulShutdown<L, F>
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.serve.run(Some(Box::pin(self.signal))))
    }
}
