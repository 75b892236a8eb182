//! tokio programs inside urgent: tokio::net, tokio::time, tokio::sync and
//! tokio::io work in urgent tasks (each worker enters the handle of a small
//! background tokio runtime) and in CPU tasks through `urgent::wait`.
//!
//! Loopback only; every wait is bounded so a bug fails instead of hanging.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use urgent::{Builder, Runtime};

const LIMIT: Duration = Duration::from_secs(20);

fn rt(workers: usize) -> Runtime {
    Builder::new().worker_threads(workers).build().unwrap()
}

fn tokio_net_echo(workers: usize) {
    rt(workers).block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        urgent::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                urgent::spawn(async move {
                    let (mut r, mut w) = s.split();
                    tokio::io::copy(&mut r, &mut w).await.unwrap();
                });
            }
        });
        let clients: Vec<_> = (0..10)
            .map(|id| {
                urgent::spawn(async move {
                    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                    for r in 0..50 {
                        let msg = format!("{id}:{r}");
                        c.write_all(msg.as_bytes()).await.unwrap();
                        let mut b = vec![0u8; msg.len()];
                        c.read_exact(&mut b).await.unwrap();
                        assert_eq!(b, msg.as_bytes());
                    }
                })
            })
            .collect();
        tokio::time::timeout(LIMIT, async {
            for c in clients {
                c.await.unwrap();
            }
        })
        .await
        .expect("tokio::net echo timed out");
    });
}

#[test]
fn tokio_net_in_urgent_tasks_one_worker() {
    tokio_net_echo(1);
}

#[test]
fn tokio_net_in_urgent_tasks_two_workers() {
    tokio_net_echo(2);
}

#[test]
fn tokio_time_in_urgent_tasks() {
    rt(2).block_on(async {
        let t0 = Instant::now();
        urgent::spawn(async { tokio::time::sleep(Duration::from_millis(20)).await })
            .await
            .unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(20));

        let r = tokio::time::timeout(Duration::from_millis(10), std::future::pending::<()>()).await;
        assert!(r.is_err(), "timeout must elapse");

        let ticks = urgent::spawn(async {
            let mut iv = tokio::time::interval(Duration::from_millis(2));
            for _ in 0..5 {
                iv.tick().await;
            }
            5
        });
        assert_eq!(
            tokio::time::timeout(LIMIT, ticks).await.unwrap().unwrap(),
            5
        );
    });
}

#[test]
fn tokio_sync_between_urgent_tasks_and_cpu_tasks() {
    rt(2).block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(4);
        for i in 0..4 {
            let tx = tx.clone();
            urgent::spawn(async move {
                for k in 0..25 {
                    tx.send(i * 100 + k).await.unwrap();
                }
            });
        }
        // A CPU task sends through the same bounded channel with `wait`.
        let cpu_tx = tx.clone();
        let cpu = urgent::spawn_cpu(move || {
            for k in 0..25 {
                urgent::wait(cpu_tx.send(1000 + k)).unwrap();
            }
        });
        drop(tx);
        let mut got = Vec::new();
        tokio::time::timeout(LIMIT, async {
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
        })
        .await
        .expect("channel timed out");
        cpu.await.unwrap();
        assert_eq!(got.len(), 125);

        let (otx, orx) = tokio::sync::oneshot::channel();
        urgent::spawn_cpu(move || otx.send(urgent::wait(async { 7 })).unwrap());
        assert_eq!(orx.await.unwrap(), 7);

        let m = Arc::new(tokio::sync::Mutex::new(0u64));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                urgent::spawn(async move {
                    for _ in 0..100 {
                        let mut g = m.lock().await;
                        tokio::task::yield_now().await;
                        *g += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.await.unwrap();
        }
        assert_eq!(*m.lock().await, 800);

        let notify = Arc::new(tokio::sync::Notify::new());
        let n2 = notify.clone();
        let waiter = urgent::spawn(async move { n2.notified().await });
        urgent::time::sleep(Duration::from_millis(5)).await;
        notify.notify_one();
        tokio::time::timeout(LIMIT, waiter).await.unwrap().unwrap();
    });
}

#[test]
fn tokio_sleep_inside_a_cpu_task_via_wait() {
    rt(1).block_on(async {
        let h = urgent::spawn_cpu(|| {
            let t0 = Instant::now();
            urgent::wait(tokio::time::sleep(Duration::from_millis(15)));
            t0.elapsed()
        });
        let slept = tokio::time::timeout(LIMIT, h).await.unwrap().unwrap();
        assert!(slept >= Duration::from_millis(15), "{slept:?}");
    });
}

#[test]
fn tokio_sleep_wakes_while_a_cpu_hog_holds_the_only_worker() {
    let rt = Builder::new()
        .worker_threads(1)
        .quantum(Duration::from_millis(1))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let s2 = stop.clone();
        let spinner = urgent::spawn_cpu(move || spin(&s2));
        urgent::time::sleep(Duration::from_millis(10)).await;
        let sleeper = urgent::spawn(async {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let r = tokio::time::timeout(LIMIT, sleeper).await;
        stop.store(true, Ordering::Relaxed);
        r.expect("tokio sleeps did not complete beside a spinner")
            .unwrap();
        spinner.await.unwrap();
    });
}

/// A CPU hog that yields at `checkpoint`s. Not call-free on purpose: this
/// test crate is named `tokio_compat`, which the preemption deny list's
/// `tokio_` prefix (meant for tokio_util, tokio_stream, ...) matches, so its
/// own functions are never preempted by signal. The call-free case is in
/// tests/net.rs.
#[inline(never)]
fn spin(stop: &AtomicBool) -> u64 {
    let mut x = 1u64;
    let deadline = Instant::now() + LIMIT * 2;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        urgent::task::checkpoint();
        if x & 4095 == 0 && Instant::now() > deadline {
            break;
        }
    }
    x
}

#[test]
fn tokio_io_traits_on_urgent_sockets() {
    rt(1).block_on(async {
        let listener = urgent::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        urgent::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let (mut r, mut w) = urgent::net::TcpStream::split(&mut s);
            tokio::io::copy(&mut r, &mut w).await.unwrap();
        });
        let mut c = urgent::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"tokio traits").await.unwrap();
        c.shutdown().await.unwrap();
        let mut got = String::new();
        tokio::time::timeout(LIMIT, c.read_to_string(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, "tokio traits");
    });
}

#[test]
fn tokio_spawn_runs_on_the_background_runtime_and_can_reach_urgent() {
    rt(1).block_on(async {
        let h = tokio::spawn(async {
            let name = std::thread::current().name().map(str::to_owned);
            // urgent is the current runtime on tokio's threads too.
            let cpu = urgent::spawn_cpu(|| (1..=10u64).sum::<u64>())
                .await
                .unwrap();
            urgent::time::sleep(Duration::from_millis(1)).await;
            (name, cpu)
        });
        let (name, cpu) = tokio::time::timeout(LIMIT, h).await.unwrap().unwrap();
        assert_eq!(cpu, 55);
        assert!(name.unwrap_or_default().ends_with("-tokio"));
        let blocking = tokio::task::spawn_blocking(|| 3).await.unwrap();
        assert_eq!(blocking, 3);
    });
}

/// `metrics().tokio_tasks()` shows futures that `tokio::spawn` put on the
/// background runtime while they live, so a program ported from tokio can
/// find the spawns that do not run on urgent's workers.
#[test]
fn tokio_spawned_tasks_are_counted_in_metrics() {
    let rt = rt(1);
    assert_eq!(rt.metrics().tokio_tasks(), 0);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // Wrapped in a tuple: the handle is kept, not awaited, here.
    let (h,) = rt.block_on(async { (tokio::spawn(async move { rx.await.ok() }),) });
    assert_eq!(rt.metrics().tokio_tasks(), 1);
    tx.send(()).unwrap();
    rt.block_on(async { tokio::time::timeout(LIMIT, h).await.unwrap().unwrap() });
    // The count drops once the task has exited (eventually: tokio's counter
    // is updated by its worker after the join handle sees the output).
    let t = Instant::now();
    while rt.metrics().tokio_tasks() != 0 {
        assert!(t.elapsed() < LIMIT, "tokio_tasks() stayed above 0");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[urgent::test(worker_threads = 2)]
async fn urgent_test_attribute_runs_a_tokio_body() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    urgent::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        tx.send("done").unwrap();
    });
    assert_eq!(rx.await.unwrap(), "done");
}

fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
                .filter(|n| n.starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn dropping_the_runtime_stops_its_tokio_thread() {
    for _ in 0..5 {
        let rt = Builder::new()
            .worker_threads(1)
            .thread_name("leakchk")
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::spawn(async { tokio::time::sleep(Duration::from_millis(1)).await })
                .await
                .unwrap();
        });
        drop(rt);
    }
    let deadline = Instant::now() + LIMIT;
    while threads_named("leakchk") > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(threads_named("leakchk"), 0, "threads left behind");
}
