//! A runtime's resolved configuration, and every environment variable the
//! runtime reads (in one place, each with the error message that names the
//! fix):
//!
//! | variable | meaning | read by |
//! |---|---|---|
//! | `URGENT_WORKER_THREADS=N` | worker threads when `Builder::worker_threads` is unset | `Builder::build` |
//! | `URGENT_QUANTUM_US=N` | quantum when `Builder::quantum` is unset | `Builder::build` |
//! | `URGENT_ASYNC_PREEMPT=0` | cooperative preemption only (Go's `GODEBUG=asyncpreemptoff=1`) | `Builder::build` |
//! | `URGENT_SCHEDTRACE=ms` | one line of scheduler state per period on stderr | `Builder::build` |

use std::io;
use std::time::Duration;

/// Resolved configuration of a runtime.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) worker_threads: usize,
    pub(crate) quantum: Duration,
    pub(crate) stack_size: usize,
    pub(crate) thread_name: String,
    pub(crate) migrate_preempted: bool,
    pub(crate) no_preempt_in: Vec<String>,
    pub(crate) max_blocking_threads: usize,
    /// Most spare threads alive at once (they stand in for worker threads
    /// stuck in a poll, blocked in the kernel, or parked with a task).
    pub(crate) max_spare_threads: usize,
    /// When sysmon gives a stuck thread's core to a spare thread.
    pub(crate) retake_after: Option<Duration>,
    /// Every preemption parks the thread (no coroutine switch).
    pub(crate) strict_preemption: bool,
    /// Worker threads of the background tokio runtime.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) tokio_worker_threads: usize,
    pub(crate) blocking_keep_alive: Duration,
    pub(crate) async_preempt: bool,
    /// `URGENT_SCHEDTRACE` period.
    pub(crate) schedtrace: Option<Duration>,
}

pub(crate) fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A whole number from the environment; `None` when unset.
fn whole_number(name: &str) -> io::Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
            invalid(format!(
                "urgent: environment variable {name}={v:?} is not a whole number; unset it or \
                 give e.g. {name}=4"
            ))
        }),
        Err(_) => Ok(None),
    }
}

/// `URGENT_WORKER_THREADS`.
pub(crate) fn env_worker_threads() -> io::Result<Option<usize>> {
    Ok(whole_number("URGENT_WORKER_THREADS")?.map(|n| n as usize))
}

/// `URGENT_QUANTUM_US`.
pub(crate) fn env_quantum() -> io::Result<Option<Duration>> {
    Ok(whole_number("URGENT_QUANTUM_US")?.map(Duration::from_micros))
}

/// `URGENT_ASYNC_PREEMPT`: false only for `0`.
pub(crate) fn env_async_preempt() -> bool {
    !matches!(
        std::env::var("URGENT_ASYNC_PREEMPT")
            .as_deref()
            .map(str::trim),
        Ok("0")
    )
}

/// `URGENT_SCHEDTRACE`; `None` when unset, empty or zero.
pub(crate) fn env_schedtrace() -> io::Result<Option<Duration>> {
    match std::env::var("URGENT_SCHEDTRACE") {
        Err(_) => Ok(None),
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(ms) => Ok(Some(Duration::from_millis(ms))),
            Err(_) => Err(invalid(format!(
                "urgent: URGENT_SCHEDTRACE={v:?} is not a whole number of milliseconds; unset it \
                 or give e.g. URGENT_SCHEDTRACE=1000"
            ))),
        },
    }
}
