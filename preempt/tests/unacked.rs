//! sysmon notices SIGURGs that never reach urgent's handler: another
//! handler installed after ours, or a worker thread that blocks SIGURG. Each
//! case runs in a child process (it breaks preemption for the whole
//! process, and the report goes to stderr once).

mod common;

use common::*;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use urgent_preempt::{Config, Preemptor};

const CHILD_ENV: &str = "URGENT_PREEMPT_UNACKED_CHILD";

fn run_child(test: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .output()
        .expect("spawn child test process")
}

fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(test)
}

fn preemptor() -> Preemptor {
    urgent_preempt::set_preempt_hook(hook);
    Preemptor::start(
        Config {
            quantum: Duration::from_micros(500),
            ..Config::default()
        },
        1,
    )
    .unwrap()
}

/// Spins on the slot's thread (after `setup` ran there) until sysmon
/// reports unacknowledged signals, or 20 s.
fn spin_until_reported(p: &Preemptor, setup: fn()) -> urgent_preempt::PreemptMetrics {
    let (_, m, _) = run_on_slot(p, 0, move |slot| {
        setup();
        let end = Instant::now() + Duration::from_secs(20);
        while slot.metrics().unacknowledged_signals == 0 && Instant::now() < end {
            std::hint::black_box(int_f64_work(100_000));
        }
        // Keep running a little: the report and the count happen once.
        let more = Instant::now() + Duration::from_millis(300);
        while Instant::now() < more {
            std::hint::black_box(int_f64_work(100_000));
        }
    });
    m
}

fn child_ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    stderr
}

extern "C" fn other_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn install_other_handler() {
    // SAFETY: installs a handler that does nothing.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = other_handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGURG, &sa, std::ptr::null_mut()), 0);
    }
}

#[test]
fn replaced_child() {
    if !is_child("replaced_child") {
        return;
    }
    let p = preemptor();
    assert!(p.async_enabled());
    install_other_handler();
    let m = spin_until_reported(&p, || {});
    assert_eq!(m.unacknowledged_signals, 1, "{m:?}");
    assert_eq!(m.preemptions, 0, "{m:?}");
    assert_eq!(p.metrics().unacknowledged_signals, 1);
}

#[test]
fn handler_installed_after_ours_is_reported() {
    let stderr = child_ok(&run_child("replaced_child"));
    assert_eq!(
        stderr
            .matches(
                "urgent: another SIGURG handler replaced urgent's (it was installed after the \
                 runtime started)"
            )
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("install that handler before starting the runtime"));
    assert!(!stderr.contains("blocks SIGURG"), "{stderr}");
}

fn block_sigurg() {
    // SAFETY: changes this thread's signal mask only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGURG);
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
            0
        );
    }
}

#[test]
fn blocked_child() {
    if !is_child("blocked_child") {
        return;
    }
    let p = preemptor();
    assert!(p.async_enabled());
    let m = spin_until_reported(&p, block_sigurg);
    assert_eq!(m.unacknowledged_signals, 1, "{m:?}");
    assert_eq!(m.preemptions, 0, "{m:?}");
    // Preemption works again on a thread that does not block SIGURG.
    let (_, m, _) = run_on_slot(&p, 0, |slot| {
        let end = Instant::now() + Duration::from_secs(10);
        while slot.metrics().preemptions == 0 && Instant::now() < end {
            std::hint::black_box(int_f64_work(100_000));
        }
    });
    assert!(m.preemptions >= 1, "{m:?}");
    assert_eq!(m.unacknowledged_signals, 0, "{m:?}");
}

#[test]
fn thread_blocking_sigurg_is_reported() {
    let stderr = child_ok(&run_child("blocked_child"));
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("blocks SIGURG"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("urgent: thread ")
            && lines[0].contains("do not block SIGURG (pthread_sigmask/sigprocmask)"),
        "{stderr}"
    );
    assert!(!stderr.contains("replaced urgent's"), "{stderr}");
}

/// Declined requests (a NoPreempt guard) are acknowledged: no report.
#[test]
fn declined_signals_are_not_unacknowledged() {
    let _s = serial();
    let p = preemptor();
    let (_, m, _) = run_on_slot(&p, 0, |slot| {
        let _g = urgent_preempt::disable();
        let end = Instant::now() + Duration::from_secs(20);
        let t = Instant::now();
        while (t.elapsed() < Duration::from_millis(300) || slot.metrics().preempt_declined < 10)
            && Instant::now() < end
        {
            std::hint::black_box(int_f64_work(100_000));
        }
    });
    assert!(m.preempt_declined >= 10, "{m:?}");
    assert_eq!(m.unacknowledged_signals, 0, "{m:?}");
}
