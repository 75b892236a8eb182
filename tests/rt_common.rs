//! Runtime behaviour tests, ported from tokio's `tests/rt_common.rs` and
//! re-implemented for urgent. Every test runs twice: on a runtime with one
//! worker (module `one_worker`) and with two workers (`two_workers`).
//!
//! Each test body runs under [`guard`], which fails the test with a clear
//! message instead of hanging forever when the runtime deadlocks. Tests assert
//! behaviour only; where time matters at all the bounds are generous.

mod support;

use std::panic::catch_unwind;
use std::time::Duration;
use support::{guard, is_child as in_child, panic_message, run_in_child, HANG};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `true` when `$t: Sync`, decided at compile time without failing the build
/// (autoref specialisation), so a missing bound fails one test, not the file.
macro_rules! is_sync {
    ($t:ty) => {{
        struct Probe<T: ?Sized>(std::marker::PhantomData<T>);
        #[allow(dead_code)]
        trait Yes {
            fn sync(&self) -> bool {
                true
            }
        }
        impl<T: Sync + ?Sized> Yes for Probe<T> {}
        #[allow(dead_code)]
        trait No {
            fn sync(&self) -> bool {
                false
            }
        }
        impl<T: ?Sized> No for &Probe<T> {}
        (&Probe::<$t>(std::marker::PhantomData)).sync()
    }};
}

#[test]
fn send_bounds() {
    fn send<T: Send>() {}
    fn clone<T: Clone>() {}
    fn unpin<T: Unpin>() {}
    send::<urgent::Runtime>();
    send::<urgent::Handle>();
    clone::<urgent::Handle>();
    send::<urgent::JoinHandle<u32>>();
    send::<urgent::JoinError>();
    unpin::<urgent::JoinHandle<String>>();
    assert!(is_sync!(urgent::Handle));
    assert!(is_sync!(urgent::JoinHandle<u32>));
}

/// tokio's `Runtime` is `Sync`, so programs share it as `Arc<Runtime>` and
/// call `block_on` / `spawn` from several threads.
#[test]
fn runtime_is_sync() {
    assert!(is_sync!(urgent::Runtime), "urgent::Runtime is not Sync");
}

/// tokio's `JoinError` is `Sync`, so `?` converts it into
/// `Box<dyn Error + Send + Sync>` and `anyhow::Error`.
#[test]
fn join_error_is_sync() {
    assert!(is_sync!(urgent::JoinError), "urgent::JoinError is not Sync");
}

/// Fails unless `built` is an `InvalidInput` error with a message; `setting`
/// names what was asked of the builder.
fn assert_invalid_input(built: std::io::Result<urgent::Runtime>, setting: &str) {
    match built {
        Ok(_) => panic!("{setting} built a runtime"),
        Err(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
            assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn builder_zero_workers_is_invalid_input() {
    assert_invalid_input(
        urgent::Builder::new().worker_threads(0).build(),
        "worker_threads(0)",
    );
}

#[test]
fn builder_zero_quantum_is_invalid_input() {
    assert_invalid_input(
        urgent::Builder::new().quantum(Duration::ZERO).build(),
        "quantum(0)",
    );
}

#[test]
fn spawn_outside_runtime_panics_naming_the_fix() {
    let err = catch_unwind(|| drop(urgent::spawn(async {}))).unwrap_err();
    let msg = panic_message(&*err);
    assert!(msg.contains("urgent"), "{msg}");
    assert!(msg.contains("outside"), "{msg}");
    assert!(
        msg.contains("Runtime") || msg.contains("Handle") || msg.contains("block_on"),
        "the message should name the fix: {msg}"
    );
}

#[test]
fn handle_current_outside_runtime_panics_naming_the_fix() {
    assert!(urgent::Handle::try_current().is_none());
    let err = catch_unwind(|| drop(urgent::Handle::current())).unwrap_err();
    let msg = panic_message(&*err);
    assert!(msg.contains("Handle::current"), "{msg}");
    assert!(msg.contains("outside"), "{msg}");
}

#[test]
fn time_outside_runtime_panics() {
    // A foreign executor is not an urgent runtime: the timer must refuse
    // (at creation or at the first poll) instead of never firing.
    guard(|| {
        let err = catch_unwind(|| {
            futures::executor::block_on(urgent::time::sleep(ms(1)));
        })
        .unwrap_err();
        let msg = panic_message(&*err);
        assert!(msg.contains("runtime"), "{msg}");
    });
}

#[test]
fn runtime_new_uses_available_parallelism() {
    if !in_child() {
        return run_in_child("runtime_new_uses_available_parallelism", &[]);
    }
    std::env::remove_var("URGENT_WORKER_THREADS");
    let rt = urgent::Runtime::new().unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(rt.metrics().workers(), cpus);
}

#[test]
fn urgent_worker_threads_env_sets_the_default() {
    if !in_child() {
        return run_in_child(
            "urgent_worker_threads_env_sets_the_default",
            &[("URGENT_WORKER_THREADS", "3")],
        );
    }
    let rt = urgent::Runtime::new().unwrap();
    assert_eq!(rt.metrics().workers(), 3);
    let rt = urgent::Builder::new().build().unwrap();
    assert_eq!(rt.metrics().workers(), 3);
}

macro_rules! rt_test {
    ($($t:tt)*) => {
        mod one_worker {
            const WORKERS: usize = 1;
            $($t)*
        }

        mod two_workers {
            const WORKERS: usize = 2;
            $($t)*
        }
    };
}

rt_test! {
    use super::{guard, ms, panic_message, HANG};

    use futures::channel::oneshot;
    use futures::StreamExt;
    use std::future::{poll_fn, Future};
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc, Mutex};
    use std::task::{Context, Poll, Waker};
    use std::thread;
    use std::time::{Duration, Instant};
    use urgent::{Handle, Runtime};

    fn rt() -> Runtime {
        urgent::Builder::new()
            .worker_threads(WORKERS)
            .build()
            .unwrap()
    }

    /// Returns `Pending` once after waking itself: a task that loops on this
    /// is always runnable.
    async fn yield_once() {
        let mut yielded = false;
        poll_fn(|cx| {
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await
    }

    /// Spawns a task that never finishes and is always runnable.
    fn spawn_spinner() {
        urgent::spawn(async {
            loop {
                yield_once().await;
            }
        });
    }

    /// Sends `value` on `tx` from another thread after 20 ms.
    fn send_later<T: std::fmt::Debug + Send + 'static>(tx: oneshot::Sender<T>, value: T) {
        thread::spawn(move || {
            thread::sleep(ms(20));
            tx.send(value).unwrap();
        });
    }

    /// Sends on `tx` when dropped.
    struct DropFlag(mpsc::Sender<()>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    /// A [`DropFlag`] and the receiver that hears it drop.
    fn drop_flag() -> (DropFlag, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        (DropFlag(tx), rx)
    }

    /// A future that never completes and owns `flag`.
    async fn pending_with(flag: DropFlag) {
        let _flag = flag;
        std::future::pending::<()>().await
    }

    /// Fails with `msg` unless the flag behind `rx` drops within [`HANG`].
    fn expect_dropped(rx: &mpsc::Receiver<()>, msg: &str) {
        rx.recv_timeout(HANG).expect(msg);
    }

    /// Waits (bounded) until the task behind `jh` has finished.
    fn wait_finished<T>(jh: &urgent::JoinHandle<T>) {
        let start = Instant::now();
        while !jh.is_finished() {
            assert!(start.elapsed() < HANG, "task never finished");
            thread::sleep(ms(1));
        }
    }

    // ---- block_on ----

    #[test]
    fn block_on_sync() {
        guard(|| {
            let rt = rt();
            let mut win = false;
            rt.block_on(async {
                win = true;
            });
            assert!(win);
            assert_eq!(rt.block_on(async { 1 + 2 }), 3);
        });
    }

    #[test]
    fn block_on_async() {
        guard(|| {
            let rt = rt();
            let out = rt.block_on(async {
                let (tx, rx) = oneshot::channel();
                send_later(tx, "ZOMG");
                rx.await.unwrap()
            });
            assert_eq!(out, "ZOMG");
        });
    }

    #[test]
    fn block_on_many_times() {
        guard(|| {
            let rt = rt();
            for i in 0..100 {
                let out = rt.block_on(async move {
                    urgent::spawn(async move { i * 2 }).await.unwrap()
                });
                assert_eq!(out, i * 2);
            }
        });
    }

    #[test]
    fn block_on_from_two_threads() {
        guard(|| {
            let rt = rt();
            let h1 = rt.handle().clone();
            let h2 = rt.handle().clone();
            let (tx1, rx1) = oneshot::channel::<()>();
            let (tx2, rx2) = oneshot::channel::<()>();

            let t1 = thread::spawn(move || {
                h1.block_on(async move {
                    rx2.await.unwrap();
                    urgent::time::sleep(ms(5)).await;
                    tx1.send(()).unwrap();
                });
            });
            let t2 = thread::spawn(move || {
                h2.block_on(async move {
                    tx2.send(()).unwrap();
                    urgent::time::sleep(ms(5)).await;
                    rx1.await.unwrap();
                    urgent::time::sleep(ms(5)).await;
                });
            });
            t1.join().unwrap();
            t2.join().unwrap();
        });
    }

    #[test]
    fn create_rt_in_block_on() {
        guard(|| {
            let rt1 = rt();
            let rt2 = rt1.block_on(async { rt() });
            assert_eq!(rt2.block_on(async { "ZOMG" }), "ZOMG");
            drop(rt2);
            assert_eq!(rt1.block_on(async { 7 }), 7);
        });
    }

    #[test]
    fn handle_current_inside_runtime() {
        guard(|| {
            let rt = rt();
            assert!(Handle::try_current().is_none());
            let workers = rt.block_on(async {
                assert!(Handle::try_current().is_some());
                let in_task = urgent::spawn(async {
                    Handle::current().metrics().workers()
                })
                .await
                .unwrap();
                assert_eq!(in_task, WORKERS);
                Handle::current().metrics().workers()
            });
            assert_eq!(workers, WORKERS);
            // The context is left again when block_on returns.
            assert!(Handle::try_current().is_none());
        });
    }

    #[test]
    fn nested_block_on_panics_naming_the_fix() {
        guard(|| {
            let rt1 = rt();
            let rt2 = rt();
            let msg = rt1.block_on(async {
                let err = catch_unwind(AssertUnwindSafe(|| rt2.block_on(async { "hello" })))
                    .unwrap_err();
                panic_message(&*err)
            });
            assert!(msg.contains("urgent"), "{msg}");
            assert!(msg.contains("block_on"), "{msg}");
            assert!(msg.contains("inside a runtime"), "{msg}");
            assert!(msg.contains(".await"), "the message should name the fix: {msg}");

            // The same runtime, nested.
            let err = rt1.block_on(async {
                catch_unwind(AssertUnwindSafe(|| rt1.block_on(async {}))).unwrap_err()
            });
            assert!(panic_message(&*err).contains("block_on"));

            // Both runtimes are still usable.
            assert_eq!(rt1.block_on(async { 1 }), 1);
            assert_eq!(rt2.block_on(async { 2 }), 2);
        });
    }

    #[test]
    fn block_on_in_a_task_panics() {
        guard(|| {
            let rt = rt();
            let h = rt.handle().clone();
            let err = rt
                .block_on(rt.spawn(async move { h.block_on(async { 1 }) }))
                .unwrap_err();
            assert!(err.is_panic());
            let msg = panic_message(&*err.into_panic());
            assert!(msg.contains("block_on"), "{msg}");
            // The worker survived.
            assert_eq!(rt.block_on(rt.spawn(async { 3 })).unwrap(), 3);
        });
    }

    // ---- spawn ----

    #[test]
    fn spawn_one_bg() {
        guard(|| {
            let rt = rt();
            let out = rt.block_on(async {
                let (tx, rx) = oneshot::channel();
                urgent::spawn(async move {
                    tx.send("ZOMG").unwrap();
                });
                rx.await.unwrap()
            });
            assert_eq!(out, "ZOMG");
        });
    }

    #[test]
    fn spawn_one_join() {
        guard(|| {
            let rt = rt();
            let out = rt.block_on(async {
                let (tx, rx) = oneshot::channel();
                let handle = urgent::spawn(async move {
                    tx.send("ZOMG").unwrap();
                    "DONE"
                });
                let msg = rx.await.unwrap();
                assert_eq!(handle.await.unwrap(), "DONE");
                msg
            });
            assert_eq!(out, "ZOMG");
        });
    }

    #[test]
    fn spawn_from_runtime_and_handle() {
        guard(|| {
            let rt = rt();
            let a = rt.spawn(async { 1 });
            let b = rt.handle().spawn(async { 2 });
            let (a, b) = rt.block_on(async { (a.await.unwrap(), b.await.unwrap()) });
            assert_eq!((a, b), (1, 2));
        });
    }

    #[test]
    fn spawn_two() {
        guard(|| {
            let rt = rt();
            let out = rt.block_on(async {
                let (tx1, rx1) = oneshot::channel();
                let (tx2, rx2) = oneshot::channel();
                urgent::spawn(async move {
                    tx1.send("ZOMG").unwrap();
                });
                urgent::spawn(async move {
                    let msg = rx1.await.unwrap();
                    tx2.send(msg).unwrap();
                });
                rx2.await.unwrap()
            });
            assert_eq!(out, "ZOMG");
        });
    }

    /// Spawns `iter` tasks that each wait for their index from another thread
    /// and report it back; returns the indices in the order they came back.
    async fn spawn_many(iter: usize) -> Vec<usize> {
        let (done_tx, mut done_rx) = futures::channel::mpsc::unbounded();
        let txs: Vec<_> = (0..iter)
            .map(|i| {
                let (tx, rx) = oneshot::channel();
                let done_tx = done_tx.clone();
                urgent::spawn(async move {
                    let msg = rx.await.unwrap();
                    assert_eq!(i, msg);
                    done_tx.unbounded_send(msg).unwrap();
                });
                tx
            })
            .collect();
        drop(done_tx);

        thread::spawn(move || {
            for (i, tx) in txs.into_iter().enumerate() {
                tx.send(i).unwrap();
            }
        });

        let mut out = vec![];
        while let Some(i) = done_rx.next().await {
            out.push(i);
        }
        out
    }

    fn assert_is_permutation_of_0_to(mut out: Vec<usize>, n: usize) {
        out.sort_unstable();
        assert_eq!(out, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn spawn_many_from_block_on() {
        guard(|| {
            const ITER: usize = 200;
            let rt = rt();
            let out = rt.block_on(spawn_many(ITER));
            assert_is_permutation_of_0_to(out, ITER);
        });
    }

    #[test]
    fn spawn_many_from_task() {
        guard(|| {
            const ITER: usize = 500;
            let rt = rt();
            let out = rt.block_on(async { urgent::spawn(spawn_many(ITER)).await.unwrap() });
            assert_is_permutation_of_0_to(out, ITER);
        });
    }

    #[test]
    fn spawn_many_join_handles() {
        guard(|| {
            let rt = rt();
            let out = rt.block_on(async {
                let handles: Vec<_> = (0..1000u64)
                    .map(|i| urgent::spawn(async move { i * 3 }))
                    .collect();
                let mut out = Vec::with_capacity(handles.len());
                for h in handles {
                    out.push(h.await.unwrap());
                }
                out
            });
            assert_eq!(out, (0..1000u64).map(|i| i * 3).collect::<Vec<_>>());
        });
    }

    #[test]
    fn spawn_many_results_over_std_mpsc() {
        guard(|| {
            let rt = rt();
            let (tx, rx) = mpsc::channel();
            for i in 0..1000usize {
                let tx = tx.clone();
                rt.spawn(async move {
                    urgent::task::yield_now().await;
                    tx.send(i).unwrap();
                });
            }
            drop(tx);
            let mut got: Vec<usize> = (0..1000)
                .map(|_| rx.recv_timeout(HANG).expect("a spawned task never ran"))
                .collect();
            got.sort_unstable();
            assert_eq!(got, (0..1000).collect::<Vec<_>>());
        });
    }

    #[test]
    fn spawn_await_chain() {
        guard(|| {
            let rt = rt();
            let out = rt.block_on(async {
                urgent::spawn(async {
                    urgent::spawn(async { "hello" }).await.unwrap()
                })
                .await
                .unwrap()
            });
            assert_eq!(out, "hello");
        });
    }

    #[test]
    fn spawn_chain() {
        fn chain(n: usize, tx: mpsc::Sender<usize>) {
            urgent::spawn(async move {
                if n == 0 {
                    tx.send(0).unwrap();
                } else {
                    chain(n - 1, tx);
                }
            });
        }

        guard(|| {
            let rt = rt();
            let (tx, rx) = mpsc::channel();
            // block_on returns at once; the chain goes on on the workers.
            rt.block_on(async move { chain(1000, tx) });
            assert_eq!(rx.recv_timeout(HANG).expect("the chain stalled"), 0);
        });
    }

    #[test]
    fn spawn_from_handle_current_in_task() {
        guard(|| {
            let rt = rt();
            let out = rt.block_on(rt.spawn(async {
                Handle::current().spawn(async { 5 }).await.unwrap()
            }));
            assert_eq!(out.unwrap(), 5);
        });
    }

    #[test]
    fn dropping_join_handle_detaches() {
        guard(|| {
            let rt = rt();
            let (tx, rx) = mpsc::channel();
            rt.block_on(async move {
                let jh = urgent::spawn(async move {
                    urgent::time::sleep(ms(10)).await;
                    tx.send("detached ran").unwrap();
                });
                drop(jh);
            });
            assert_eq!(rx.recv_timeout(HANG).unwrap(), "detached ran");
        });
    }

    #[test]
    fn outstanding_tasks_dropped() {
        guard(|| {
            let rt = rt();
            let cnt = Arc::new(());
            rt.block_on(async {
                let cnt = cnt.clone();
                urgent::spawn(poll_fn(move |_| {
                    assert_eq!(2, Arc::strong_count(&cnt));
                    Poll::<()>::Pending
                }));
            });
            assert_eq!(2, Arc::strong_count(&cnt));
            drop(rt);
            assert_eq!(1, Arc::strong_count(&cnt));
        });
    }

    #[test]
    fn outstanding_unpolled_tasks_dropped() {
        guard(|| {
            let rt = rt();
            let cnt = Arc::new(());
            for _ in 0..100 {
                let cnt = cnt.clone();
                rt.spawn(async move {
                    let _cnt = cnt;
                    std::future::pending::<()>().await
                });
            }
            drop(rt);
            assert_eq!(1, Arc::strong_count(&cnt));
        });
    }

    // ---- under load ----

    #[test]
    fn complete_block_on_under_load() {
        guard(|| {
            let rt = rt();
            rt.block_on(async {
                let (tx, rx) = oneshot::channel();
                // Spin hard.
                spawn_spinner();
                send_later(tx, ());
                rx.await.unwrap();
            });
        });
    }

    #[test]
    fn complete_task_under_load() {
        guard(|| {
            let rt = rt();
            rt.block_on(async {
                let (tx1, rx1) = oneshot::channel();
                let (tx2, rx2) = oneshot::channel();
                spawn_spinner();
                send_later(tx1, ());
                urgent::spawn(async move {
                    rx1.await.unwrap();
                    tx2.send(()).unwrap();
                });
                rx2.await.unwrap();
            });
        });
    }

    /// From a new thread, after `delay` (none if zero), spawns onto `rt` a
    /// task that sends on the returned receiver.
    fn spawn_from_other_thread(rt: &Runtime, delay: Duration) -> oneshot::Receiver<()> {
        let handle = rt.handle().clone();
        let (tx, rx) = oneshot::channel();
        thread::spawn(move || {
            if !delay.is_zero() {
                thread::sleep(delay);
            }
            handle.spawn(async move {
                tx.send(()).unwrap();
            });
        });
        rx
    }

    #[test]
    fn spawn_from_other_thread_idle() {
        guard(|| {
            let rt = rt();
            let rx = spawn_from_other_thread(&rt, ms(20));
            rt.block_on(async move {
                rx.await.unwrap();
            });
        });
    }

    #[test]
    fn spawn_from_other_thread_under_load() {
        guard(|| {
            let rt = rt();
            let rx = spawn_from_other_thread(&rt, Duration::ZERO);
            rt.block_on(async move {
                spawn_spinner();
                rx.await.unwrap();
            });
        });
    }

    #[test]
    fn ping_pong_saturation() {
        guard(|| {
            use futures::channel::mpsc::unbounded;
            const NUM: usize = 50;
            let rt = rt();
            let running = Arc::new(AtomicBool::new(true));
            rt.block_on(async {
                let (spawned_tx, mut spawned_rx) = unbounded();
                let mut tasks = vec![];
                for _ in 0..NUM {
                    let (tx1, mut rx1) = unbounded::<()>();
                    let (tx2, mut rx2) = unbounded::<()>();
                    let spawned_tx = spawned_tx.clone();
                    let running = running.clone();
                    tasks.push(urgent::spawn(async move {
                        spawned_tx.unbounded_send(()).unwrap();
                        while running.load(Ordering::Relaxed) {
                            tx1.unbounded_send(()).unwrap();
                            rx2.next().await.unwrap();
                        }
                        drop(tx1);
                        assert!(rx2.next().await.is_none());
                    }));
                    tasks.push(urgent::spawn(async move {
                        while rx1.next().await.is_some() {
                            tx2.unbounded_send(()).unwrap();
                        }
                    }));
                }
                for _ in 0..NUM {
                    spawned_rx.next().await.unwrap();
                }
                // Another task gets to run while the pairs saturate the workers.
                urgent::spawn(async {
                    for _ in 0..5 {
                        urgent::task::yield_now().await;
                    }
                })
                .await
                .unwrap();
                running.store(false, Ordering::Relaxed);
                for t in tasks {
                    t.await.unwrap();
                }
            });
        });
    }

    #[test]
    fn yield_now_lets_other_tasks_run() {
        guard(|| {
            let rt = rt();
            let flag = Arc::new(AtomicBool::new(false));
            let yields = rt.block_on(async {
                let f = flag.clone();
                // Spins until the other task has run: on one worker that only
                // ends if yield_now really gives the worker away.
                let spinner = urgent::spawn(async move {
                    let mut n = 0u64;
                    while !f.load(Ordering::Acquire) {
                        urgent::task::yield_now().await;
                        n += 1;
                    }
                    n
                });
                let f = flag.clone();
                urgent::spawn(async move { f.store(true, Ordering::Release) });
                spinner.await.unwrap()
            });
            assert!(flag.load(Ordering::Acquire));
            let _ = yields;
        });
    }

    // ---- panics ----

    #[test]
    fn panic_in_task() {
        guard(|| {
            struct Boom(Option<mpsc::Sender<()>>);
            impl Future for Boom {
                type Output = u32;
                fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<u32> {
                    panic!("boom");
                }
            }
            impl Drop for Boom {
                fn drop(&mut self) {
                    self.0.take().unwrap().send(()).unwrap();
                }
            }

            let rt = rt();
            let (tx, rx) = mpsc::channel();
            let jh = rt.spawn(Boom(Some(tx)));
            wait_finished(&jh);
            assert!(jh.is_finished());
            let err = rt.block_on(jh).unwrap_err();
            assert!(err.is_panic());
            assert!(!err.is_cancelled());
            assert!(!format!("{err}").is_empty());
            assert!(!format!("{err:?}").is_empty());
            let _: &dyn std::error::Error = &err;
            let payload = err.into_panic();
            assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
            rx.recv_timeout(HANG).expect("the panicked future was not dropped");

            // A detached task panicking does not hurt either.
            rt.spawn(async { panic!("detached boom") });
            // The runtime survives.
            for i in 0..10 {
                assert_eq!(rt.block_on(rt.spawn(async move { i })).unwrap(), i);
            }
        });
    }

    #[test]
    fn panic_with_formatted_message_in_task() {
        guard(|| {
            let rt = rt();
            let err = rt
                .block_on(rt.spawn(async {
                    let n = 42;
                    if n == 42 {
                        panic!("boom {n}");
                    }
                }))
                .unwrap_err();
            assert!(err.is_panic());
            let payload = err.try_into_panic().expect("a panic payload");
            assert_eq!(panic_message(&*payload), "boom 42");
        });
    }

    #[test]
    fn panic_in_block_on() {
        guard(|| {
            let rt = rt();
            let err = catch_unwind(AssertUnwindSafe(|| {
                rt.block_on(async { panic!("boom in block_on") })
            }))
            .unwrap_err();
            assert_eq!(panic_message(&*err), "boom in block_on");
            // The runtime is still usable afterwards.
            assert_eq!(rt.block_on(async { 5 }), 5);
            assert_eq!(rt.block_on(rt.spawn(async { 6 })).unwrap(), 6);
        });
    }

    // ---- shutdown ----

    #[test]
    fn eagerly_drops_futures_on_shutdown() {
        guard(|| {
            struct Never {
                _flag: DropFlag,
            }
            impl Future for Never {
                type Output = ();
                fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
                    Poll::Pending
                }
            }

            let rt = rt();
            let (flag, drop_rx) = drop_flag();
            let (run_tx, run_rx) = oneshot::channel();
            rt.block_on(async move {
                urgent::spawn(async move {
                    run_tx.send(()).unwrap();
                    Never { _flag: flag }.await
                });
                run_rx.await.unwrap();
            });
            drop(rt);
            expect_dropped(&drop_rx, "the pending future was not dropped at shutdown");
        });
    }

    #[test]
    fn wake_while_rt_is_dropping() {
        guard(|| {
            struct OnDrop<F: FnMut()>(F);
            impl<F: FnMut()> Drop for OnDrop<F> {
                fn drop(&mut self) {
                    (self.0)()
                }
            }

            let alive = Arc::new(());
            let (tx1, rx1) = oneshot::channel::<()>();
            let (tx2, rx2) = oneshot::channel::<()>();
            let (tx3, rx3) = oneshot::channel::<()>();
            let rt = rt();
            let h1 = rt.handle().clone();

            let a = alive.clone();
            rt.spawn(async move {
                let _a = a;
                // Stores a waker in oneshot 1.
                let _ = rx1.await;
                let _ = tx3.send(());
            });

            let a = alive.clone();
            rt.spawn(async move {
                let _a = a.clone();
                // When this task is dropped at shutdown it spawns a task that
                // owns tx1, whose drop then wakes the first task.
                let mut opt_tx1 = Some(tx1);
                let _d = OnDrop(move || {
                    let tx1 = opt_tx1.take().unwrap();
                    let a = a.clone();
                    h1.spawn(async move {
                        let _a = a;
                        let _ = tx1.send(());
                    });
                });
                let _ = rx2.await;
            });

            let a = alive.clone();
            rt.spawn(async move {
                let _a = a;
                let _ = rx3.await;
                // Never reached; dropping tx2 with this task wakes task 2.
                let _ = tx2.send(());
            });

            // Tick the workers.
            rt.block_on(async {
                urgent::task::yield_now().await;
            });
            drop(rt);
            // Every future is gone, also the one spawned during the drop.
            assert_eq!(Arc::strong_count(&alive), 1);
        });
    }

    #[test]
    fn task_wakes_itself_from_its_drop() {
        guard(|| {
            struct WakeOnDrop {
                waker: Option<Waker>,
                polled: Option<oneshot::Sender<()>>,
            }
            impl Future for WakeOnDrop {
                type Output = ();
                fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                    self.waker = Some(cx.waker().clone());
                    if let Some(tx) = self.polled.take() {
                        let _ = tx.send(());
                    }
                    Poll::Pending
                }
            }
            impl Drop for WakeOnDrop {
                fn drop(&mut self) {
                    if let Some(w) = self.waker.take() {
                        w.wake_by_ref();
                        w.wake();
                    }
                }
            }

            let rt = rt();
            let (tx, rx) = oneshot::channel();
            let alive = Arc::new(());
            let a = alive.clone();
            rt.spawn(async move {
                let _a = a;
                WakeOnDrop { waker: None, polled: Some(tx) }.await
            });
            rt.block_on(rx).unwrap();
            drop(rt);
            assert_eq!(Arc::strong_count(&alive), 1);
        });
    }

    #[test]
    fn wake_from_other_thread_while_rt_is_dropping() {
        guard(|| {
            let rt = rt();
            let slot: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
            let alive = Arc::new(());

            // Several tasks park their wakers in the shared slot.
            for _ in 0..10 {
                let slot = slot.clone();
                let a = alive.clone();
                rt.spawn(async move {
                    let _a = a;
                    poll_fn(|cx| {
                        *slot.lock().unwrap() = Some(cx.waker().clone());
                        Poll::<()>::Pending
                    })
                    .await
                });
            }
            rt.block_on(async {
                while slot.lock().unwrap().is_none() {
                    urgent::task::yield_now().await;
                }
            });

            // A thread wakes them in a tight loop while the runtime drops.
            let stop = Arc::new(AtomicBool::new(false));
            let wakes = Arc::new(AtomicUsize::new(0));
            let waker_thread = {
                let slot = slot.clone();
                let stop = stop.clone();
                let wakes = wakes.clone();
                thread::spawn(move || {
                    let w = slot.lock().unwrap().clone().unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        w.wake_by_ref();
                        wakes.fetch_add(1, Ordering::Relaxed);
                    }
                    // The last reference to a task may now be this waker,
                    // outliving its runtime.
                    w.wake();
                })
            };
            // Drop only once the thread is really waking.
            let start = Instant::now();
            while wakes.load(Ordering::Relaxed) < 100 {
                assert!(start.elapsed() < HANG, "the waker thread never ran");
                thread::yield_now();
            }
            drop(rt);
            stop.store(true, Ordering::Relaxed);
            waker_thread.join().unwrap();
            slot.lock().unwrap().take();
            assert_eq!(Arc::strong_count(&alive), 1);
        });
    }

    /// A runtime on which one task has started running `body` (inside its
    /// poll, so `body` holds the worker until it returns).
    fn rt_running(body: impl FnOnce() + Send + 'static) -> Runtime {
        let rt = rt();
        let (tx, rx) = oneshot::channel();
        rt.spawn(async move {
            tx.send(()).unwrap();
            body();
        });
        rt.block_on(rx).unwrap();
        rt
    }

    /// How long `rt.shutdown_timeout(timeout)` takes.
    fn time_shutdown(rt: Runtime, timeout: Duration) -> Duration {
        let start = Instant::now();
        rt.shutdown_timeout(timeout);
        start.elapsed()
    }

    #[test]
    fn shutdown_timeout_with_sleeping_task() {
        guard(|| {
            let rt = rt_running(|| thread::sleep(Duration::from_secs(10)));
            let took = time_shutdown(rt, ms(100));
            assert!(took < Duration::from_secs(5), "shutdown_timeout(100ms) took {took:?}");
        });
    }

    #[test]
    fn shutdown_timeout_with_spinning_task() {
        guard(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            // A plain future that never returns to the scheduler.
            let rt = rt_running(move || {
                while !s.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
            let took = time_shutdown(rt, ms(100));
            stop.store(true, Ordering::Relaxed);
            assert!(took < Duration::from_secs(5), "shutdown_timeout(100ms) took {took:?}");
        });
    }

    #[test]
    fn shutdown_timeout_zero() {
        guard(|| {
            let rt = rt_running(|| thread::sleep(Duration::from_secs(10)));
            assert!(time_shutdown(rt, Duration::ZERO) < Duration::from_secs(5));
        });
    }

    #[test]
    fn shutdown_timeout_idle_returns_promptly() {
        guard(|| {
            let rt = rt();
            rt.block_on(async { urgent::time::sleep(ms(20)).await });
            // Nothing is running: must not wait for the timeout.
            assert!(time_shutdown(rt, Duration::from_secs(3600)) < Duration::from_secs(5));
        });
    }

    #[test]
    fn runtime_in_thread_local() {
        // A runtime dropped by a thread-local destructor must shut down
        // cleanly. A failure here can abort the whole process ("thread local
        // panicked on drop"), so the scenario runs in a child process.
        if !super::in_child() {
            let name = concat!(module_path!(), "::runtime_in_thread_local");
            let name = name.split_once("::").unwrap().1;
            return guard(move || super::run_in_child(name, &[]));
        }
        use std::cell::RefCell;
        thread_local! {
            static R: RefCell<Option<Runtime>> = const { RefCell::new(None) };
        }
        thread::spawn(|| {
            R.with(|cell| *cell.borrow_mut() = Some(rt()));
            let _rt = rt();
        })
        .join()
        .unwrap();
    }

    // ---- abort and JoinHandle ----

    #[test]
    fn abort_pending_task() {
        guard(|| {
            let rt = rt();
            let (flag, drop_rx) = drop_flag();
            let err = rt.block_on(async move {
                let jh = urgent::spawn(pending_with(flag));
                urgent::task::yield_now().await;
                jh.abort();
                jh.await.unwrap_err()
            });
            assert!(err.is_cancelled());
            assert!(!err.is_panic());
            assert!(!format!("{err}").is_empty());
            expect_dropped(&drop_rx, "the aborted future was not dropped");
        });
    }

    #[test]
    fn abort_from_another_task() {
        guard(|| {
            let rt = rt();
            let err = rt.block_on(async {
                let (started_tx, started_rx) = oneshot::channel();
                let victim = urgent::spawn(async move {
                    started_tx.send(()).unwrap();
                    std::future::pending::<u32>().await
                });
                urgent::spawn(async move {
                    started_rx.await.unwrap();
                    victim.abort();
                    victim.await
                })
                .await
                .unwrap()
                .unwrap_err()
            });
            assert!(err.is_cancelled());
        });
    }

    #[test]
    fn abort_before_first_poll() {
        guard(|| {
            let rt = rt();
            let (flag, drop_rx) = drop_flag();
            let jh = rt.spawn(pending_with(flag));
            jh.abort();
            let err = rt.block_on(jh).unwrap_err();
            assert!(err.is_cancelled());
            expect_dropped(&drop_rx, "the aborted future was not dropped");
        });
    }

    #[test]
    fn abort_from_another_thread() {
        guard(|| {
            let rt = rt();
            let (flag, drop_rx) = drop_flag();
            let (started_tx, started_rx) = mpsc::channel();
            let jh = rt.spawn(async move {
                let _flag = flag;
                started_tx.send(()).unwrap();
                // Busy but cooperative: always runnable.
                loop {
                    urgent::task::yield_now().await;
                }
            });
            started_rx.recv_timeout(HANG).unwrap();
            let jh = thread::spawn(move || {
                jh.abort();
                jh
            })
            .join()
            .unwrap();
            let err = rt.block_on(jh).unwrap_err();
            assert!(err.is_cancelled());
            expect_dropped(&drop_rx, "the aborted future was not dropped");
        });
    }

    #[test]
    fn abort_after_completion_keeps_the_output() {
        guard(|| {
            let rt = rt();
            let jh = rt.spawn(async { 5 });
            wait_finished(&jh);
            jh.abort();
            assert_eq!(rt.block_on(jh).unwrap(), 5);
        });
    }

    #[test]
    fn join_handle_is_finished() {
        guard(|| {
            let rt = rt();
            let (tx, rx) = oneshot::channel::<u32>();
            let jh = rt.spawn(async move { rx.await.unwrap() + 1 });
            assert!(!jh.is_finished());
            thread::sleep(ms(10));
            assert!(!jh.is_finished());
            tx.send(41).unwrap();
            wait_finished(&jh);
            assert!(jh.is_finished());
            assert_eq!(rt.block_on(jh).unwrap(), 42);
        });
    }

    // ---- metrics ----

    #[test]
    fn metrics_grow() {
        guard(|| {
            let rt = rt();
            let m0 = rt.metrics();
            assert_eq!(m0.workers(), WORKERS);
            assert_eq!(rt.handle().metrics().workers(), WORKERS);
            rt.block_on(async {
                let handles: Vec<_> = (0..50)
                    .map(|i| {
                        urgent::spawn(async move {
                            urgent::task::yield_now().await;
                            i
                        })
                    })
                    .collect();
                for (i, h) in handles.into_iter().enumerate() {
                    assert_eq!(h.await.unwrap(), i);
                }
            });
            let m1 = rt.metrics();
            assert_eq!(m1.workers(), WORKERS);
            assert!(
                m1.tasks_spawned() >= m0.tasks_spawned() + 50,
                "tasks_spawned {} -> {}",
                m0.tasks_spawned(),
                m1.tasks_spawned()
            );
            // Each task is polled at least twice (it yields once).
            assert!(m1.polls() >= m0.polls() + 100, "polls {} -> {}", m0.polls(), m1.polls());
            // The other counters exist and never go backwards.
            assert!(m1.steals() >= m0.steals());
            assert!(m1.preempt_requests() >= m0.preempt_requests());
            assert!(m1.preemptions() >= m0.preemptions());
            assert!(m1.preempt_declined() >= m0.preempt_declined());
            assert!(m1.long_polls() >= m0.long_polls());
            assert!(!format!("{m1:?}").is_empty());
        });
    }

    // ---- timers ----

    #[test]
    fn sleep_at_root() {
        guard(|| {
            let rt = rt();
            let now = Instant::now();
            let dur = ms(20);
            rt.block_on(async move { urgent::time::sleep(dur).await });
            assert!(now.elapsed() >= dur);
        });
    }

    #[test]
    fn sleep_in_spawn() {
        guard(|| {
            let rt = rt();
            let now = Instant::now();
            let dur = ms(20);
            rt.block_on(async move {
                urgent::spawn(async move { urgent::time::sleep(dur).await })
                    .await
                    .unwrap()
            });
            assert!(now.elapsed() >= dur);
        });
    }

    #[test]
    fn sleep_until() {
        guard(|| {
            let rt = rt();
            let deadline = urgent::time::Instant::now() + ms(20);
            rt.block_on(async move {
                urgent::time::sleep_until(deadline).await;
                assert!(urgent::time::Instant::now() >= deadline);
                // A deadline in the past completes at once.
                urgent::time::sleep_until(deadline).await;
                urgent::time::sleep(Duration::ZERO).await;
            });
        });
    }

    #[test]
    fn sleep_reset_and_deadline() {
        guard(|| {
            let rt = rt();
            rt.block_on(async {
                let start = Instant::now();
                let sleep = urgent::time::sleep(Duration::from_secs(3600));
                let mut sleep = std::pin::pin!(sleep);
                assert!(!sleep.is_elapsed());
                let target = Instant::now() + ms(20);
                sleep.as_mut().reset(target);
                assert_eq!(sleep.deadline(), target);
                sleep.as_mut().await;
                assert!(sleep.is_elapsed());
                assert!(Instant::now() >= target);
                assert!(start.elapsed() < Duration::from_secs(20));
            });
        });
    }

    #[test]
    fn timeout_elapsed() {
        guard(|| {
            let rt = rt();
            rt.block_on(async {
                let start = Instant::now();
                let res = urgent::time::timeout(ms(20), std::future::pending::<()>()).await;
                let elapsed = res.unwrap_err();
                assert!(start.elapsed() >= ms(20));
                assert!(!elapsed.to_string().is_empty());
            });
        });
    }

    #[test]
    fn timeout_not_elapsed() {
        guard(|| {
            let rt = rt();
            rt.block_on(async {
                let v = urgent::time::timeout(Duration::from_secs(10), async { 5 }).await;
                assert_eq!(v.unwrap(), 5);

                let start = Instant::now();
                let v = urgent::time::timeout(Duration::from_secs(10), async {
                    urgent::time::sleep(ms(10)).await;
                    6
                })
                .await;
                assert_eq!(v.unwrap(), 6);
                // Finished with the inner future, not with the timeout.
                assert!(start.elapsed() < Duration::from_secs(5));
            });
        });
    }

    #[test]
    fn timeout_in_spawned_task() {
        guard(|| {
            let rt = rt();
            let res = rt.block_on(rt.spawn(async {
                urgent::time::timeout(ms(10), std::future::pending::<()>()).await
            }));
            assert!(res.unwrap().is_err());
        });
    }

    #[test]
    fn interval_first_tick_is_immediate() {
        guard(|| {
            let rt = rt();
            rt.block_on(async {
                let mut iv = urgent::time::interval(Duration::from_secs(3600));
                urgent::time::timeout(Duration::from_secs(10), iv.tick())
                    .await
                    .expect("the first tick of an interval completes at once");

                let start = Instant::now();
                let mut iv = urgent::time::interval(ms(20));
                let t1 = iv.tick().await;
                let t2 = iv.tick().await;
                let t3 = iv.tick().await;
                assert!(t2 >= t1 + ms(20), "{t1:?} {t2:?}");
                assert!(t3 >= t2 + ms(20), "{t2:?} {t3:?}");
                assert!(start.elapsed() >= ms(40));
            });
        });
    }

    #[test]
    fn interval_at_starts_at_the_given_instant() {
        guard(|| {
            let rt = rt();
            rt.block_on(async {
                let start = urgent::time::Instant::now() + ms(20);
                let mut iv = urgent::time::interval_at(start, ms(10));
                let t1 = iv.tick().await;
                assert_eq!(t1, start);
                assert!(urgent::time::Instant::now() >= start);
            });
        });
    }

    #[test]
    fn many_concurrent_sleeps() {
        guard(|| {
            const N: usize = 10_000;
            let rt = rt();
            let done = Arc::new(AtomicUsize::new(0));
            rt.block_on(async {
                let handles: Vec<_> = (0..N)
                    .map(|i| {
                        let done = done.clone();
                        urgent::spawn(async move {
                            urgent::time::sleep(ms((i % 50) as u64)).await;
                            done.fetch_add(1, Ordering::Relaxed);
                        })
                    })
                    .collect();
                for h in handles {
                    h.await.unwrap();
                }
            });
            assert_eq!(done.load(Ordering::Relaxed), N);
        });
    }

    #[test]
    fn dropped_sleeps_do_not_delay_shutdown() {
        guard(|| {
            let rt = rt();
            rt.block_on(async {
                for _ in 0..100 {
                    let res = urgent::time::timeout(
                        Duration::ZERO,
                        urgent::time::sleep(Duration::from_secs(3600)),
                    )
                    .await;
                    assert!(res.is_err());
                }
                // A long sleep that is still registered when the runtime drops.
                urgent::spawn(urgent::time::sleep(Duration::from_secs(3600)));
                urgent::task::yield_now().await;
            });
            let start = Instant::now();
            drop(rt);
            assert!(start.elapsed() < Duration::from_secs(5));
        });
    }

    #[test]
    fn interval_bursts_missed_ticks() {
        guard(|| {
            let rt = rt();
            rt.block_on(async {
                let period = ms(10);
                let mut iv = urgent::time::interval(period);
                let t0 = iv.tick().await;
                // Miss about five ticks by blocking this thread.
                thread::sleep(ms(55));
                // Burst (the default) delivers the missed ticks at once, each
                // with its own scheduled instant.
                for k in 1..=5u32 {
                    let t = iv.tick().await;
                    assert_eq!(t, t0 + period * k);
                }
            });
        });
    }

    #[test]
    fn sleep_far_future_does_not_panic() {
        guard(|| {
            let rt = rt();
            rt.block_on(async {
                let res =
                    urgent::time::timeout(ms(5), urgent::time::sleep(Duration::MAX)).await;
                assert!(res.is_err());
                let res =
                    urgent::time::timeout(Duration::MAX, async { 3 }).await;
                assert_eq!(res.unwrap(), 3);
            });
        });
    }

    #[test]
    fn wakeups_across_runtimes() {
        guard(|| {
            let rt1 = rt();
            let rt2 = rt();
            let (tx, rx) = oneshot::channel();
            let (back_tx, back_rx) = oneshot::channel();
            // Waits on rt1 for a value sent by a task on rt2, and answers.
            let waiter = rt1.spawn(async move {
                let v: u32 = rx.await.unwrap();
                back_tx.send(v + 1).unwrap();
                v
            });
            rt2.spawn(async move {
                urgent::time::sleep(ms(5)).await;
                tx.send(41).unwrap();
            });
            assert_eq!(rt2.block_on(back_rx).unwrap(), 42);
            assert_eq!(rt1.block_on(waiter).unwrap(), 41);
        });
    }

    #[test]
    fn spawn_after_shutdown_is_cancelled() {
        guard(|| {
            let rt = rt();
            let h = rt.handle().clone();
            drop(rt);
            let (flag, drop_rx) = drop_flag();
            let jh = h.spawn(async move {
                let _flag = flag;
                1
            });
            expect_dropped(&drop_rx, "a task spawned after shutdown was never dropped");
            // A JoinHandle can be awaited anywhere, also outside a runtime.
            let err = futures::executor::block_on(jh).unwrap_err();
            assert!(err.is_cancelled());
        });
    }
}
