//! urgent inside a `cdylib` that a host process `dlopen`s (issue 12): the
//! module table takes symbols and unwind tables from the object that holds
//! the code, so a sorting CPU task inside the library is preempted and a
//! 1 ms sleeper beside it keeps running.
//!
//! The library is `tests/fixtures/cdylib` (its own workspace), built here
//! with the cargo running the tests into `CARGO_TARGET_TMPDIR`, then loaded
//! by a child process of this test binary (the host never starts a runtime
//! of its own), with a timeout.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(120);

fn is_child() -> bool {
    std::env::var_os("URGENT_CDYLIB_FIXTURE").is_some()
}

/// Builds the fixture and returns the path of the shared object.
fn build_fixture() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let manifest = root.join("tests/fixtures/cdylib/Cargo.toml");
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cdylib-fixture");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        // The outer build's flags (e.g. +crt-static) do not apply to a cdylib.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap_or_else(|e| panic!("run {cargo} to build the cdylib fixture: {e}"));
    assert!(
        out.status.success(),
        "building {} failed:\n{}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug/liburgent_cdylib_fixture.so")
}

/// The child: dlopen the fixture and run its scenario for 1.5 s.
#[test]
fn child_runs_the_fixture() {
    let Some(path) = std::env::var_os("URGENT_CDYLIB_FIXTURE") else {
        return;
    };
    let path = std::ffi::CString::new(path.into_encoded_bytes()).unwrap();
    // SAFETY: dlopen/dlsym with NUL-terminated names; the library is never
    // closed, so the function stays valid; the fixture defines it with this
    // signature (`extern "C" fn(u64) -> u64`).
    let preemptions = unsafe {
        let h = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(!h.is_null(), "dlopen {path:?} failed");
        let f = libc::dlsym(h, c"urgent_fixture_run".as_ptr());
        assert!(!f.is_null(), "the fixture exports urgent_fixture_run");
        let f: extern "C" fn(u64) -> u64 = std::mem::transmute(f);
        f(1500)
    };
    assert!(
        preemptions >= 10,
        "urgent inside a dlopen'ed cdylib preempted its sorting task {preemptions} times in \
         1.5 s (the fixture's stderr above has its metrics)"
    );
}

#[test]
fn urgent_inside_a_dlopened_cdylib_preempts_cpu_tasks() {
    if is_child() || !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        return;
    }
    if std::env::var("URGENT_ASYNC_PREEMPT").as_deref() == Ok("0") {
        eprintln!("async preemption disabled: test skipped");
        return;
    }
    let lib = build_fixture();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_runs_the_fixture", "--exact", "--nocapture"])
        .env("URGENT_CDYLIB_FIXTURE", &lib)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the test binary as a child");
    let mut err = child.stderr.take().unwrap();
    let mut out = child.stdout.take().unwrap();
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for the child") {
            break st;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child running the cdylib fixture hung for {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = err_t.join().unwrap() + &out_t.join().unwrap();
    assert!(status.success(), "the child failed ({status}):\n{log}");
    assert!(log.contains("1 passed"), "the child ran no test:\n{log}");
    eprintln!(
        "{}",
        log.lines()
            .find(|l| l.starts_with("fixture:"))
            .unwrap_or("")
    );
}
