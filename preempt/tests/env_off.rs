//! `URGENT_ASYNC_PREEMPT=0` turns async preemption off (own binary: it sets
//! the environment variable for the whole process).

mod common;

use common::*;
use std::time::Duration;
use urgent_preempt::{Config, Preemptor};

#[test]
fn env_var_disables_async_preemption() {
    std::env::set_var("URGENT_ASYNC_PREEMPT", "0");
    urgent_preempt::set_preempt_hook(hook);
    let p = Preemptor::start(
        Config {
            quantum: Duration::from_micros(200),
            ..Config::default()
        },
        1,
    )
    .unwrap();
    assert!(!p.async_enabled());
    let ((acks, yielded), m, calls) = run_on_slot(&p, 0, |slot| {
        spin_for_ms(200);
        (slot.acks(), urgent_preempt::should_yield())
    });
    assert!(yielded, "cooperative requests still work");
    assert_eq!(acks, 0, "no signals sent");
    assert_eq!(m.preemptions, 0);
    assert_eq!(calls, 0);
    assert!(m.preempt_requests >= 1);
}
