//! Stack overflow reports. Each case runs in a child process: the test
//! re-executes this test binary with `--exact <child test> --nocapture` and an
//! environment variable that makes the child test do the overflowing.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use urgent_stackful::{init_thread, suspend, Coroutine, Resume, Stack, SuspendKind};

const CHILD_ENV: &str = "URGENT_STACKFUL_OVERFLOW_CHILD";

fn run_child(test: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("spawn child test process")
}

fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(test)
}

/// Recurses until the stack runs out. The buffer and black_box keep the
/// frames alive and non-tail-recursive.
#[inline(never)]
fn recurse(n: u64) -> u64 {
    let buf = std::hint::black_box([n; 64]);
    if std::hint::black_box(n) == u64::MAX {
        return buf[0];
    }
    recurse(n + 1) + std::hint::black_box(buf[1])
}

fn assert_sigabrt_with(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(needle),
        "child stderr lacks {needle:?}:\n{stderr}"
    );
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "child did not die by SIGABRT: {:?}\n{stderr}",
        out.status
    );
}

#[test]
fn overflow_child_coroutine() {
    if !is_child("overflow_child_coroutine") {
        return;
    }
    init_thread();
    // Use a stack that has been pooled once (madvise'd), so the guard page is
    // checked on a reused stack too.
    let mut warmup = Coroutine::new(Stack::new(32 * 1024).unwrap(), || {
        suspend(SuspendKind::Yield);
    });
    assert!(matches!(warmup.resume(), Resume::Suspended(_)));
    drop(warmup);
    let mut co = Coroutine::new(Stack::new(32 * 1024).unwrap(), || {
        recurse(0);
    });
    co.resume();
    unreachable!("the overflow must abort");
}

#[test]
fn coroutine_overflow_is_reported() {
    let out = run_child("overflow_child_coroutine");
    assert_sigabrt_with(
        &out,
        "urgent: CPU task overflowed its 32 KiB stack; raise Builder::stack_size",
    );
}

#[test]
fn overflow_child_coroutine_default_size() {
    if !is_child("overflow_child_coroutine_default_size") {
        return;
    }
    // On a thread of our own that only has std's alternate stack, without
    // init_thread: Coroutine::new installs the handler.
    std::thread::spawn(|| {
        let mut co = Coroutine::new(
            Stack::new(urgent_stackful::DEFAULT_STACK_SIZE).unwrap(),
            || {
                recurse(0);
            },
        );
        co.resume();
    })
    .join()
    .unwrap();
    unreachable!("the overflow must abort");
}

#[test]
fn coroutine_overflow_default_size_is_reported() {
    let out = run_child("overflow_child_coroutine_default_size");
    assert_sigabrt_with(
        &out,
        "urgent: CPU task overflowed its 256 KiB stack; raise Builder::stack_size",
    );
}

#[test]
fn overflow_child_thread() {
    if !is_child("overflow_child_thread") {
        return;
    }
    // Our handler is installed, but this overflow is on an ordinary thread:
    // Rust's own report must appear.
    init_thread();
    let mut co = Coroutine::new(Stack::new(32 * 1024).unwrap(), || {});
    assert!(matches!(co.resume(), Resume::Finished));
    std::thread::Builder::new()
        .name("plain".into())
        .stack_size(256 * 1024)
        .spawn(|| {
            init_thread();
            recurse(0);
        })
        .unwrap()
        .join()
        .unwrap();
    unreachable!("the overflow must abort");
}

#[test]
fn thread_overflow_keeps_rust_report() {
    let out = run_child("overflow_child_thread");
    // Rust prints "thread 'plain' has overflowed its stack" (newer versions
    // add the thread id after the name).
    assert_sigabrt_with(&out, "has overflowed its stack");
    assert!(String::from_utf8_lossy(&out.stderr).contains("thread 'plain'"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("urgent: CPU task overflowed"));
}

#[test]
fn overflow_child_null_deref() {
    if !is_child("overflow_child_null_deref") {
        return;
    }
    init_thread();
    let mut co = Coroutine::new(Stack::new(32 * 1024).unwrap(), || {
        let p = std::hint::black_box(16usize) as *const u8;
        // SAFETY: not safe at all: this deliberately faults, in a child process.
        let v = unsafe { std::ptr::read_volatile(p) };
        std::hint::black_box(v);
    });
    co.resume();
    unreachable!("the fault must kill the process");
}

#[test]
fn other_faults_in_coroutines_are_not_overflows() {
    let out = run_child("overflow_child_null_deref");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("urgent: CPU task overflowed"), "{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{stderr}");
}
