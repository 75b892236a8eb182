//! A SIGURG handler installed before the preemptor keeps being called
//! (own binary: it needs a process where ours is installed second).

mod common;

use common::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use urgent_preempt::{Config, Preemptor};

static CHAINED: AtomicU64 = AtomicU64::new(0);

extern "C" fn previous(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    CHAINED.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn previously_installed_handler_is_chained() {
    // SAFETY: installs a handler that only bumps an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = previous as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGURG, &sa, std::ptr::null_mut()), 0);
    }
    urgent_preempt::set_preempt_hook(hook);
    let p = Preemptor::start(
        Config {
            quantum: Duration::from_micros(300),
            ..Config::default()
        },
        1,
    )
    .unwrap();
    assert!(p.async_enabled());
    // Signals to a thread without a slot: only the previous handler acts.
    for _ in 0..10 {
        // SAFETY: signals this very thread; the handlers are installed.
        unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                std::process::id() as i32,
                libc::syscall(libc::SYS_gettid),
                libc::SIGURG,
            )
        };
    }
    assert_eq!(CHAINED.load(Ordering::Relaxed), 10);
    // Preemption still works and every signal is forwarded as well.
    let reference = asm_gpr_work(2_000_000);
    let (ok, m, _) = run_on_slot(&p, 0, move |slot| {
        let mut ok = true;
        while slot.metrics().preemptions < 20 {
            ok &= asm_gpr_work(2_000_000) == reference;
        }
        (ok, slot.acks())
    });
    assert!(ok.0);
    assert!(m.preemptions >= 20);
    assert!(
        CHAINED.load(Ordering::Relaxed) >= 10 + ok.1,
        "every SIGURG reaches the old handler"
    );
}
