//! Whole-stack safe points through the crate's public diagnostics: names
//! match on whole path segments, stateless libc/libm leaves are preemptible
//! where `dlsym` resolves them (the IFUNC choice), and a sort running on a
//! registered thread is preempted although its PCs are in `core`.

mod common;

use common::*;
use std::time::Duration;
use urgent_preempt::diagnostics::{name_preemptible, pc_preemptible};
use urgent_preempt::{Config, Preemptor};

#[test]
fn user_crates_named_like_runtime_crates_are_preemptible() {
    for n in [
        "mi_crate::work",
        "tc_parser::parse",
        "je_ne_sais::quoi",
        "tracing_free_crate::f",
        "futures_x::f",
        "urgent_foo::f",
        "<mi_crate::Foo as core::iter::traits::iterator::Iterator>::next",
        "core::slice::sort::unstable::quicksort::quicksort",
        "alloc::collections::btree::map::BTreeMap<K,V,A>::insert",
        "futures_util::future::future::FutureExt::map",
        "memcpy",
    ] {
        assert!(name_preemptible(n, &[]), "{n} should be preemptible");
    }
    for n in [
        "mi_malloc",
        "tracing::span::Span::enter",
        "futures_executor::local_pool::block_on",
        "urgent_executor::worker::run",
        "std::io::stdio::_print",
        "_int_malloc",
    ] {
        assert!(!name_preemptible(n, &[]), "{n} should not be preemptible");
    }
    // The user's no_preempt_in prefixes still deny, on whole segments.
    assert!(!name_preemptible(
        "mi_crate::ffi::call",
        &["mi_crate::ffi".into()]
    ));
    assert!(name_preemptible(
        "mi_crate::ffix::call",
        &["mi_crate::ffi".into()]
    ));
}

#[test]
fn libc_and_libm_leaves_are_preemptible_where_dlsym_resolves_them() {
    assert!(urgent_preempt::diagnostics::async_preempt_supported());
    for (name, pure) in [
        (c"memcpy", true),
        (c"memset", true),
        (c"strlen", true),
        (c"sin", true),
        (c"clock_gettime", true),
        (c"malloc", false),
        (c"free", false),
        (c"pthread_mutex_lock", false),
    ] {
        // SAFETY: dlsym with a NUL-terminated name.
        let a = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
        if a == 0 {
            continue; // libm not loaded in this binary
        }
        assert_eq!(pc_preemptible(a + 1) == Some(true), pure, "{name:?}");
    }
}

#[inline(never)]
fn sort_rounds(ms: u64) -> u64 {
    let end = std::time::Instant::now() + Duration::from_millis(ms);
    let mut s = 0x1234_5678_9abc_def1u64;
    let mut h = 0;
    while std::time::Instant::now() < end {
        let mut v: Vec<u64> = (0..50_000)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            })
            .collect();
        v.sort_unstable();
        h ^= v[1000];
    }
    h
}

#[test]
fn sort_on_a_registered_thread_is_preempted() {
    let _s = serial();
    urgent_preempt::set_preempt_hook(hook);
    let p = Preemptor::start(
        Config {
            quantum: Duration::from_micros(200),
            ..Config::default()
        },
        1,
    )
    .unwrap();
    let (_, m, calls) = run_on_slot(&p, 0, |_| sort_rounds(300));
    assert!(m.preemptions >= 20, "{m:?}");
    assert_eq!(calls, m.preemptions);
}
