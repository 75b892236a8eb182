//! tokio's task-level APIs inside urgent tasks and CPU tasks:
//! `task_local!`, `JoinSet`, `select!`, `yield_now`, `Handle::current()`,
//! and what `block_in_place` does (it cannot move other tasks aside: it runs
//! the closure in place; the urgent equivalents are `spawn_blocking` and
//! `spawn_cpu`). Every wait is bounded so a bug fails instead of hanging.

use std::time::Duration;

use urgent::{Builder, Runtime};

const LIMIT: Duration = Duration::from_secs(20);

fn rt(workers: usize) -> Runtime {
    Builder::new().worker_threads(workers).build().unwrap()
}

tokio::task_local! {
    static REQUEST_ID: u32;
}

#[test]
fn task_local_in_urgent_tasks() {
    rt(2).block_on(async {
        let h = urgent::spawn(REQUEST_ID.scope(7, async {
            tokio::task::yield_now().await;
            urgent::time::sleep(Duration::from_millis(2)).await;
            REQUEST_ID.get()
        }));
        assert_eq!(h.await.unwrap(), 7);
        assert!(
            REQUEST_ID.try_with(|v| *v).is_err(),
            "no value outside the scope"
        );
    });
}

#[test]
fn task_local_in_cpu_tasks() {
    rt(1).block_on(async {
        let h = urgent::spawn_cpu(|| {
            let sync = REQUEST_ID.sync_scope(3, || REQUEST_ID.get() * 2);
            let waited = urgent::wait(REQUEST_ID.scope(5, async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                REQUEST_ID.get()
            }));
            (sync, waited)
        });
        assert_eq!(h.await.unwrap(), (6, 5));
    });
}

#[test]
fn join_set_in_urgent_tasks_and_cpu_tasks() {
    rt(2).block_on(async {
        let from_task = urgent::spawn(async {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..10u32 {
                set.spawn(async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    i
                });
            }
            let mut sum = 0;
            while let Some(r) = set.join_next().await {
                sum += r.unwrap();
            }
            sum
        });
        let from_cpu = urgent::spawn_cpu(|| {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..4u32 {
                set.spawn(async move { i * 10 });
            }
            urgent::wait(async move {
                let mut v: Vec<u32> = Vec::new();
                while let Some(r) = set.join_next().await {
                    v.push(r.unwrap());
                }
                v.sort();
                v
            })
        });
        tokio::time::timeout(LIMIT, async {
            assert_eq!(from_task.await.unwrap(), 45);
            assert_eq!(from_cpu.await.unwrap(), vec![0, 10, 20, 30]);
        })
        .await
        .expect("JoinSet timed out");
    });
}

#[test]
fn select_in_urgent_tasks_and_cpu_tasks() {
    rt(2).block_on(async {
        let h = urgent::spawn(async {
            let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
            urgent::spawn(async move {
                urgent::time::sleep(Duration::from_millis(2)).await;
                let _ = tx.send(1);
            });
            tokio::select! {
                v = rx => v.unwrap(),
                _ = tokio::time::sleep(LIMIT) => 0,
            }
        });
        assert_eq!(h.await.unwrap(), 1);
        let c = urgent::spawn_cpu(|| {
            urgent::wait(async {
                tokio::select! {
                    biased;
                    _ = std::future::pending::<()>() => 0,
                    _ = urgent::time::sleep(Duration::from_millis(1)) => 2,
                }
            })
        });
        assert_eq!(c.await.unwrap(), 2);
    });
}

#[test]
fn tokio_yield_now_lets_other_tasks_run_on_one_worker() {
    rt(1).block_on(async {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f2 = flag.clone();
        let spinner = urgent::spawn(async move {
            let mut yields = 0u64;
            while !f2.load(std::sync::atomic::Ordering::Acquire) {
                tokio::task::yield_now().await;
                yields += 1;
            }
            yields
        });
        let setter = urgent::spawn(async move {
            flag.store(true, std::sync::atomic::Ordering::Release);
        });
        tokio::time::timeout(LIMIT, async {
            setter.await.unwrap();
            assert!(spinner.await.unwrap() >= 1);
        })
        .await
        .expect("yield_now did not let the other task run");
    });
}

#[test]
fn tokio_handle_current_in_urgent_tasks_and_cpu_tasks() {
    rt(2).block_on(async {
        let in_task = urgent::spawn(async {
            tokio::runtime::Handle::current()
                .spawn(async { 1 })
                .await
                .unwrap()
        });
        let in_cpu = urgent::spawn_cpu(|| {
            let h = tokio::runtime::Handle::current();
            urgent::wait(h.spawn(async { 2 })).unwrap()
        });
        assert_eq!(in_task.await.unwrap() + in_cpu.await.unwrap(), 3);
    });
}

/// `block_in_place` cannot give the worker's other tasks to another thread
/// under urgent (tokio's own runtime is not the one running the task): it
/// runs the closure in place. README's tokio section names the urgent
/// equivalents.
#[test]
fn block_in_place_runs_the_closure_in_place() {
    rt(1).block_on(async {
        let h = urgent::spawn(async {
            let me = std::thread::current().id();
            tokio::task::block_in_place(move || std::thread::current().id() == me)
        });
        assert!(h.await.unwrap());
    });
}

#[test]
fn tokio_worker_threads_zero_is_an_error_naming_the_fix() {
    let err = Builder::new().tokio_worker_threads(0).build().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        err.to_string()
            .contains("tokio_worker_threads must be at least 1"),
        "{err}"
    );
}

#[test]
fn background_tokio_runtime_has_as_many_threads_as_workers() {
    let rt = Builder::new()
        .worker_threads(3)
        .thread_name("tkcount")
        .build()
        .unwrap();
    let n = rt.block_on(async { tokio::runtime::Handle::current().metrics().num_workers() });
    assert_eq!(n, 3);
}
