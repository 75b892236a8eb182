//! # urgent
//!
//! A multi-threaded async runtime for Rust that keeps latency-sensitive tasks
//! responsive while CPU-heavy work runs on the same worker threads.
//!
//! Ordinary futures are polled like in tokio. CPU-bound work runs with
//! `urgent::spawn_cpu` on stackful coroutines that a monitor thread preempts
//! with a signal once they overrun their time slice, the way the Go runtime
//! preempts goroutines.
//!
//! Moving a tokio program over: replace `#[tokio::main]` with
//! `#[urgent::main]`.
//!
//! ```
//! #[urgent::main(worker_threads = 2)]
//! async fn main() {
//!     let h = urgent::spawn(async { 40 + 2 });
//!     assert_eq!(h.await.unwrap(), 42);
//! }
//! ```
//!
//! This crate is a facade: it re-exports `urgent-executor` (scheduler,
//! tasks, timers, I/O), `urgent-preempt` and `urgent-macros`.

pub use urgent_executor::{
    spawn, spawn_cpu, spawn_preemptible, wait, Builder, Handle, JoinError, JoinHandle, Runtime,
};
pub use urgent_macros::{main, test};

/// The runtime, its builder and handle.
pub mod runtime {
    pub use urgent_executor::runtime::{
        Builder, Handle, Runtime, DEFAULT_QUANTUM, DEFAULT_STACK_SIZE, MIN_QUANTUM, MIN_STACK_SIZE,
    };
}

/// Tasks: spawning, joining, yielding, cooperative preemption points.
pub mod task {
    pub use urgent_executor::task::{
        checkpoint, spawn_blocking, yield_now, JoinError, JoinHandle, BLOCKING_KEEP_ALIVE,
        MAX_BLOCKING_THREADS,
    };
    pub use urgent_executor::{spawn, spawn_cpu, spawn_preemptible, wait};
}

/// Control over signal-driven preemption of CPU tasks.
pub mod preempt {
    pub use urgent_executor::preempt::{disable, is_cpu_task, is_disabled, NoPreempt};
}

/// Sleeping, timeouts and intervals, with tokio's semantics.
pub mod time {
    pub use urgent_executor::time::*;
}

/// TCP and UDP on urgent's own driver: `TcpListener`, `TcpStream`,
/// `UdpSocket`, with tokio's method names.
pub mod net {
    pub use urgent_executor::net::*;
}

/// Runtime counters.
pub mod metrics {
    pub use urgent_executor::metrics::{Declines, RuntimeMetrics};
}

/// HTTP servers whose connections run on urgent's workers: hyper's
/// `rt::Executor` and `rt::Timer` (feature `hyper`), and [`serve`] for axum
/// (feature `axum`).
#[cfg(feature = "hyper")]
pub mod http {
    #[cfg(feature = "axum")]
    pub use urgent_executor::http::{serve, Serve, WithGracefulShutdown};
    pub use urgent_executor::http::{HyperExecutor, HyperTimer, Listener};
}

#[cfg(feature = "axum")]
pub use urgent_executor::http::serve;
