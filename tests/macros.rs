//! `#[urgent::main]` and `#[urgent::test]`: runtime behaviour of the
//! expansion. The compile errors for misuse are trybuild cases in
//! `macros/tests/ui/`.

use std::error::Error;
use urgent::Handle;

fn workers() -> usize {
    Handle::current().metrics().workers()
}

// ---- #[urgent::test] ----

#[urgent::test(worker_threads = 1)]
async fn test_one_worker() {
    assert_eq!(workers(), 1);
}

#[urgent::test(worker_threads = 3)]
async fn test_three_workers() {
    assert_eq!(workers(), 3);
    let on_worker = urgent::spawn(async { workers() }).await.unwrap();
    assert_eq!(on_worker, 3);
}

#[urgent::test]
async fn test_default_workers() {
    let expected = match std::env::var("URGENT_WORKER_THREADS") {
        Ok(v) => v.parse().expect("URGENT_WORKER_THREADS is a number"),
        Err(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    assert_eq!(workers(), expected);
}

#[urgent::test(quantum_us = 500)]
async fn test_quantum_accepted() {
    assert!(workers() >= 1);
    assert_eq!(urgent::spawn(async { 7 }).await.unwrap(), 7);
}

#[urgent::test(worker_threads = 2, quantum_us = 1_000)]
async fn test_both_arguments() {
    assert_eq!(workers(), 2);
}

#[urgent::test(quantum_us = 250, worker_threads = 1)]
async fn test_arguments_in_any_order_with_trailing_comma() {
    assert_eq!(workers(), 1);
}

#[urgent::test]
async fn test_returns_result() -> Result<(), Box<dyn Error>> {
    // `?` converts into the declared error type.
    let n: u32 = "5".parse()?;
    let doubled = urgent::spawn(async move { n * 2 }).await?;
    assert_eq!(doubled, 10);
    Ok(())
}

#[urgent::test]
async fn test_early_return() -> Result<(), String> {
    let ready = true;
    if ready {
        return Ok(());
    }
    Err("not reached".to_string())
}

#[urgent::test]
#[should_panic(expected = "boom in an urgent test")]
async fn test_should_panic_is_kept() {
    urgent::task::yield_now().await;
    panic!("boom in an urgent test");
}

#[should_panic(expected = "attribute before the macro")]
#[urgent::test(worker_threads = 1)]
async fn test_attribute_before_the_macro_is_kept() {
    panic!("attribute before the macro");
}

#[urgent::test]
async fn test_body_need_not_be_send() {
    // block_on does not require Send: a non-Send value may live across .await.
    let rc = std::rc::Rc::new(5);
    urgent::task::yield_now().await;
    assert_eq!(*rc, 5);
}

#[urgent::test]
async fn test_has_runtime_context() {
    assert!(Handle::try_current().is_some());
    urgent::time::sleep(std::time::Duration::from_millis(1)).await;
}

#[urgent::test]
/// Doc comments and other attributes before or after the macro are kept.
#[allow(clippy::bool_assert_comparison)]
async fn test_other_attributes_kept() {
    assert_eq!(true, true);
}

// ---- #[urgent::main] on functions other than `main`, called by plain tests ----

#[urgent::main(worker_threads = 2)]
async fn main_two_workers() -> usize {
    workers()
}

#[urgent::main(worker_threads = 1, quantum_us = 2_000)]
async fn main_one_worker() -> usize {
    workers()
}

#[urgent::main]
async fn main_result_ok() -> Result<u32, std::num::ParseIntError> {
    let n: u32 = "41".parse()?;
    Ok(n + 1)
}

#[urgent::main]
async fn main_result_err() -> Result<u32, std::num::ParseIntError> {
    let n: u32 = "x".parse()?;
    Ok(n + 1)
}

#[urgent::main]
pub(crate) async fn main_spawns() -> Vec<u32> {
    let handles: Vec<_> = (0..10).map(|i| urgent::spawn(async move { i })).collect();
    let mut out = vec![];
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[test]
fn main_honours_worker_threads() {
    assert_eq!(main_two_workers(), 2);
    assert_eq!(main_one_worker(), 1);
}

#[test]
fn main_returns_result() {
    assert_eq!(main_result_ok(), Ok(42));
    assert!(main_result_err().is_err());
}

#[test]
fn main_runs_spawned_tasks_and_leaves_the_context() {
    assert_eq!(main_spawns(), (0..10).collect::<Vec<_>>());
    // The runtime is gone after the call: no context leaks to this thread.
    assert!(Handle::try_current().is_none());
    // And a second call builds a fresh runtime.
    assert_eq!(main_spawns().len(), 10);
}

/// A quantum the runtime refuses (below its minimum) compiles, and the
/// generated function panics with the builder's error.
#[urgent::main(quantum_us = 1)]
async fn main_quantum_below_minimum() {}

#[test]
#[should_panic(expected = "urgent: failed to build the runtime")]
fn main_reports_a_builder_error() {
    main_quantum_below_minimum();
}
