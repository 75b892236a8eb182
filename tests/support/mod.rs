//! Helpers shared by the integration tests of CPU tasks and preemption.
#![allow(dead_code)]

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

/// How long a test body may run before it counts as hung.
pub const HANG: Duration = Duration::from_secs(60);

/// Runs `f` on its own thread; fails with a clear message instead of hanging
/// if it does not finish within [`HANG`]. A panic in `f` is re-raised.
pub fn guard<F: FnOnce() + Send + 'static>(f: F) {
    let (tx, rx) = mpsc::channel();
    let body = std::thread::spawn(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(HANG) {
        Ok(Ok(())) => body.join().expect("test body thread"),
        Ok(Err(payload)) => resume_unwind(payload),
        Err(_) => panic!("the test did not finish within {HANG:?}: the runtime hung"),
    }
}

/// A runtime with `workers` workers and the given quantum.
pub fn rt(workers: usize, quantum: Duration) -> urgent::Runtime {
    urgent::Builder::new()
        .worker_threads(workers)
        .quantum(quantum)
        .build()
        .expect("build runtime")
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// Whether this process is a child started by [`run_child`].
pub fn is_child() -> bool {
    std::env::var_os("URGENT_TEST_CHILD").is_some()
}

/// Runs test `name` of this binary in a child process with `envs` set and
/// returns its exit status and stderr.
pub fn run_child(name: &str, envs: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("URGENT_TEST_CHILD", "1")
        .envs(envs.iter().copied())
        .output()
        .expect("run the test binary as a child");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

/// Runs test `name` (its path without the crate name) in a child process of
/// this test binary, with `URGENT_TEST_CHILD=1` and `envs` set, and fails with
/// the child's output unless exactly that test ran and passed. For scenarios
/// that need their own environment, or that can take the whole process down
/// when they fail.
pub fn run_in_child(name: &str, envs: &[(&str, &str)]) {
    let (status, out) = run_child(name, envs);
    assert!(
        status.success(),
        "the child process running {name} failed ({status}):\n{out}"
    );
    assert!(out.contains("1 passed"), "the child ran no test:\n{out}");
}

/// Awaits every handle in order (from outside the runtime) and returns the
/// outputs; panics if a task failed.
pub fn join_all<T: Send + 'static>(
    rt: &urgent::Runtime,
    handles: Vec<urgent::JoinHandle<T>>,
) -> Vec<T> {
    rt.block_on(async {
        let mut v = Vec::with_capacity(handles.len());
        for h in handles {
            v.push(h.await.expect("a task failed"));
        }
        v
    })
}
