//! A main-thread stack overflow, with urgent's handler installed, still gets
//! Rust's own report. `harness = false`: the overflow must happen on the real
//! main thread, which libtest does not run tests on.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

const CHILD_ENV: &str = "URGENT_STACKFUL_MAIN_OVERFLOW_CHILD";

#[inline(never)]
fn recurse(n: u64) -> u64 {
    let buf = std::hint::black_box([n; 64]);
    if std::hint::black_box(n) == u64::MAX {
        return buf[0];
    }
    recurse(n + 1) + std::hint::black_box(buf[1])
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        urgent_stackful::init_thread();
        recurse(0);
        unreachable!("the overflow must abort");
    }
    // Cargo passes libtest flags (e.g. --quiet); this binary ignores them.
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, "1")
        .output()
        .expect("spawn child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("thread 'main'") && stderr.contains("has overflowed its stack"),
        "child stderr:\n{stderr}"
    );
    assert!(!stderr.contains("urgent: CPU task overflowed"), "{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    println!("main_overflow: ok");
}
