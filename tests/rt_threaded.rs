//! Multi-worker behaviour, ported in spirit from tokio's `tests/rt_threaded.rs`:
//! many small tasks, fairness between a self-respawning chain and work from
//! outside, spawning from many threads at once, and work really spreading
//! over several worker threads, and idle workers parking after their spin.
//!
//! Each test body runs under [`guard`], so a deadlock fails with a message
//! instead of hanging. No test asserts speed.

mod support;

use futures::channel::oneshot;
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use support::{guard, HANG};
use urgent::Runtime;

fn rt(workers: usize) -> Runtime {
    urgent::Builder::new()
        .worker_threads(workers)
        .build()
        .unwrap()
}

/// Starts `threads` threads, thread `t` running `f(t, handle of rt)`, then
/// joins them all and sums what they returned.
fn sum_over_threads<F>(rt: &Runtime, threads: u64, f: F) -> u64
where
    F: FnOnce(u64, urgent::Handle) -> u64 + Clone + Send + 'static,
{
    let spawned: Vec<_> = (0..threads)
        .map(|t| {
            let (h, f) = (rt.handle().clone(), f.clone());
            thread::spawn(move || f(t, h))
        })
        .collect();
    spawned.into_iter().map(|s| s.join().unwrap()).sum()
}

/// Waits (bounded by [`HANG`], calling `pause` between looks) until `counter`
/// reaches `n`; fails with `never` if it does not.
fn wait_for_count(counter: &AtomicUsize, n: usize, never: &str, pause: impl Fn()) {
    let start = Instant::now();
    while counter.load(Ordering::Relaxed) < n {
        assert!(start.elapsed() < HANG, "{never}");
        pause();
    }
}

fn sleep_1ms() {
    thread::sleep(Duration::from_millis(1));
}

/// Spawns through `h` a task that sends on `tx`.
fn spawn_sender(h: &urgent::Handle, tx: mpsc::Sender<()>) {
    h.spawn(async move {
        tx.send(()).unwrap();
    });
}

/// Hands `spawn` a sender for a task to send on, waits up to 10 s for that
/// send, then sets `stop` (also when the send never came) and fails with
/// `starved` if it never came.
fn expect_task_runs(stop: &AtomicBool, starved: &str, spawn: impl FnOnce(mpsc::Sender<()>)) {
    let (tx, rx) = mpsc::channel();
    spawn(tx);
    let res = rx.recv_timeout(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    res.expect(starved);
}

#[test]
fn many_oneshot_futures() {
    guard(|| {
        const NUM: usize = 1_000;
        for _ in 0..10 {
            let rt = rt(2);
            let (txs, rxs): (Vec<_>, Vec<_>) = (0..NUM).map(|_| oneshot::channel()).unzip();
            for (i, tx) in txs.into_iter().enumerate() {
                rt.spawn(async move {
                    tx.send(i).unwrap();
                });
            }
            let got = rt.block_on(async {
                let mut got = Vec::with_capacity(NUM);
                for rx in rxs {
                    got.push(rx.await.unwrap());
                }
                got
            });
            assert_eq!(got, (0..NUM).collect::<Vec<_>>());
            drop(rt);
        }
    });
}

#[test]
fn many_multishot_futures() {
    guard(|| {
        // TRACKS independent pipelines of CHAIN tasks, each task forwarding
        // CYCLES messages to the next one.
        const CHAIN: usize = 100;
        const CYCLES: usize = 5;
        const TRACKS: usize = 20;
        let rt = rt(2);
        rt.block_on(async {
            let mut starts = Vec::new();
            let mut ends = Vec::new();
            for _ in 0..TRACKS {
                let (start_tx, mut chain_rx) = futures::channel::mpsc::unbounded::<usize>();
                for _ in 0..CHAIN {
                    let (next_tx, next_rx) = futures::channel::mpsc::unbounded();
                    urgent::spawn(async move {
                        while let Some(v) = chain_rx.next().await {
                            next_tx.unbounded_send(v).unwrap();
                        }
                    });
                    chain_rx = next_rx;
                }
                starts.push(start_tx);
                ends.push(chain_rx);
            }
            for cycle in 0..CYCLES {
                for tx in &starts {
                    tx.unbounded_send(cycle).unwrap();
                }
                for rx in &mut ends {
                    assert_eq!(rx.next().await, Some(cycle));
                }
            }
            drop(starts);
            for rx in &mut ends {
                assert_eq!(rx.next().await, None);
            }
        });
    });
}

#[test]
fn self_respawning_chain_does_not_starve_outside_task() {
    fn respawn(stop: Arc<AtomicBool>, count: Arc<AtomicUsize>) {
        urgent::spawn(async move {
            count.fetch_add(1, Ordering::Relaxed);
            if !stop.load(Ordering::Relaxed) {
                respawn(stop, count);
            }
        });
    }

    guard(|| {
        let rt = rt(1);
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let start_chain = || {
            let (stop, count) = (stop.clone(), count.clone());
            rt.spawn(async move { respawn(stop, count) });
        };
        start_chain();
        // Make sure the chain is running before the outside task arrives.
        wait_for_count(&count, 100, "the chain never started", sleep_1ms);

        expect_task_runs(
            &stop,
            "a task spawned from outside starved behind a self-respawning chain",
            |tx| spawn_sender(rt.handle(), tx),
        );

        // Same from a thread that is not the one owning the runtime.
        stop.store(false, Ordering::Relaxed);
        start_chain();
        expect_task_runs(
            &stop,
            "a task spawned from another thread starved behind a self-respawning chain",
            |tx| {
                let h = rt.handle().clone();
                thread::spawn(move || spawn_sender(&h, tx));
            },
        );
    });
}

#[test]
fn self_waking_task_does_not_starve_timer() {
    guard(|| {
        let rt = rt(1);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        rt.spawn(async move {
            while !s.load(Ordering::Relaxed) {
                urgent::task::yield_now().await;
            }
        });
        expect_task_runs(
            &stop,
            "a sleeping task never woke while another task kept yielding",
            |tx| {
                rt.spawn(async move {
                    urgent::time::sleep(Duration::from_millis(10)).await;
                    tx.send(()).unwrap();
                });
            },
        );
    });
}

#[test]
fn spawn_from_many_threads() {
    guard(|| {
        const THREADS: usize = 8;
        const PER_THREAD: usize = 1_000;
        let rt = rt(2);
        let count = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let start = Arc::new(Barrier::new(THREADS));
        let spawners: Vec<_> = (0..THREADS)
            .map(|_| {
                let h = rt.handle().clone();
                let count = count.clone();
                let tx = tx.clone();
                let start = start.clone();
                thread::spawn(move || {
                    start.wait();
                    for _ in 0..PER_THREAD {
                        let count = count.clone();
                        let tx = tx.clone();
                        h.spawn(async move {
                            if count.fetch_add(1, Ordering::AcqRel) + 1 == THREADS * PER_THREAD {
                                tx.send(()).unwrap();
                            }
                        });
                    }
                })
            })
            .collect();
        drop(tx);
        for s in spawners {
            s.join().unwrap();
        }
        rx.recv_timeout(HANG).expect("not every spawned task ran");
        assert_eq!(count.load(Ordering::Acquire), THREADS * PER_THREAD);
    });
}

#[test]
fn spawn_from_many_threads_and_join() {
    guard(|| {
        let rt = rt(2);
        let total = sum_over_threads(&rt, 4, |t, h| {
            let handles: Vec<_> = (0..250u64)
                .map(|i| h.spawn(async move { t * 1000 + i }))
                .collect();
            // Join from this (non-runtime) thread through block_on.
            h.block_on(async move {
                let mut sum = 0;
                for jh in handles {
                    sum += jh.await.unwrap();
                }
                sum
            })
        });
        let expected: u64 = (0..4u64)
            .flat_map(|t| (0..250u64).map(move |i| t * 1000 + i))
            .sum();
        assert_eq!(total, expected);
    });
}

/// Two tasks that each block their worker thread until the other one has
/// started: they can only both finish if they run on two different workers
/// at the same time. Each wait is bounded, so a scheduler that runs them one
/// after the other fails the assertion instead of hanging.
#[test]
fn tasks_run_on_several_worker_threads() {
    guard(|| {
        let rt = rt(2);
        let main_thread = thread::current().id();
        let arrived = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let arrived = arrived.clone();
                rt.spawn(async move {
                    arrived.fetch_add(1, Ordering::AcqRel);
                    let start = Instant::now();
                    while arrived.load(Ordering::Acquire) < 2 {
                        if start.elapsed() > Duration::from_secs(10) {
                            break;
                        }
                        thread::yield_now();
                    }
                    (thread::current().id(), arrived.load(Ordering::Acquire))
                })
            })
            .collect();
        let results = rt.block_on(async {
            let mut out = vec![];
            for h in handles {
                out.push(h.await.unwrap());
            }
            out
        });
        for (_, seen) in &results {
            assert_eq!(
                *seen, 2,
                "a task never saw the other one running concurrently"
            );
        }
        let ids: HashSet<_> = results.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), 2, "both tasks ran on one thread");
        assert!(
            !ids.contains(&main_thread),
            "a task ran on the block_on thread"
        );
    });
}

/// Short tasks that each hold their worker briefly end up on both workers,
/// also when they are all spawned from inside one task (so the second worker
/// has to be woken for them or steal them). Batches repeat until both workers
/// were seen, so a busy machine only makes the test slower, not flaky.
#[test]
fn work_spreads_over_workers() {
    guard(|| {
        let rt = rt(2);
        let ids = Arc::new(Mutex::new(HashSet::new()));
        let start = Instant::now();
        let mut batches = 0;
        while ids.lock().unwrap().len() < 2 && start.elapsed() < Duration::from_secs(10) {
            batches += 1;
            let i2 = ids.clone();
            rt.block_on(rt.spawn(async move {
                let handles: Vec<_> = (0..50)
                    .map(|_| {
                        let ids = i2.clone();
                        urgent::spawn(async move {
                            let t = Instant::now();
                            while t.elapsed() < Duration::from_micros(500) {
                                std::hint::spin_loop();
                            }
                            ids.lock().unwrap().insert(thread::current().id());
                        })
                    })
                    .collect();
                for h in handles {
                    h.await.unwrap();
                }
            }))
            .unwrap();
        }
        // At least both workers: on a loaded machine sysmon may also hand a
        // core to a spare thread for a while (a poll descheduled past
        // `retake_after`), which runs some of the tasks too.
        let n = ids.lock().unwrap().len();
        assert!(
            n >= 2,
            "{batches} batches of 50 tasks of 0.5 ms ran on {n} worker thread(s)"
        );
    });
}

/// A task that blocks its worker thread must not stop the other worker from
/// running the task it waits for, even when that task was spawned onto the
/// blocked worker's own queue.
#[test]
fn blocked_worker_does_not_block_the_other() {
    guard(|| {
        let rt = rt(2);
        let got = rt
            .block_on(rt.spawn(async {
                let (tx, rx) = mpsc::channel();
                urgent::spawn(async move {
                    tx.send(42).unwrap();
                });
                // Blocks this worker (bounded); the sender sits in its queue.
                rx.recv_timeout(Duration::from_secs(10)).ok()
            }))
            .unwrap();
        assert_eq!(got, Some(42), "the idle worker never took the queued task");
    });
}

#[test]
fn thread_name_is_used_for_workers() {
    guard(|| {
        let rt = urgent::Builder::new()
            .worker_threads(2)
            .thread_name("urgent-test-worker")
            .build()
            .unwrap();
        let name = rt
            .block_on(rt.spawn(async { thread::current().name().map(str::to_owned) }))
            .unwrap();
        let name = name.expect("worker threads are named");
        assert!(name.starts_with("urgent-test-worker"), "{name}");
    });
}

/// CPU time (ns, from `/proc/self/task/*/schedstat`) of every thread of this
/// process named `{prefix}-{number}` (the workers, not other helper threads).
#[cfg(target_os = "linux")]
fn cpu_ns_of_threads(prefix: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = entry.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // the thread exited meanwhile
        };
        let is_worker = comm
            .trim_end()
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_worker {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(dir.join("schedstat")) {
            out.push(stat.split_whitespace().next().unwrap().parse().unwrap());
        }
    }
    out
}

/// Idle workers spin briefly for new work, then park: a runtime left idle
/// after a burst of spawns and CPU tasks must not keep burning CPU.
#[cfg(target_os = "linux")]
#[test]
fn idle_workers_stop_spinning_and_park() {
    guard(|| {
        let rt = urgent::Builder::new()
            .worker_threads(2)
            .thread_name("idlepark-w")
            .build()
            .unwrap();
        // A burst of work from outside and from inside, so that workers
        // search, spin and park many times.
        for _ in 0..200 {
            rt.block_on(rt.spawn_cpu(|| ())).unwrap();
        }
        rt.block_on(async {
            let hs: Vec<_> = (0..1000).map(|i| urgent::spawn(async move { i })).collect();
            for h in hs {
                h.await.unwrap();
            }
        });
        thread::sleep(Duration::from_millis(50));
        let before = cpu_ns_of_threads("idlepark-w");
        assert_eq!(before.len(), 2, "expected 2 worker threads: {before:?}");
        let window = Duration::from_millis(500);
        thread::sleep(window);
        let after = cpu_ns_of_threads("idlepark-w");
        for (b, a) in before.iter().zip(&after) {
            let used = Duration::from_nanos(a - b);
            // A parked worker uses ~nothing; one that never stops spinning
            // uses the whole window. A fifth of it is a generous bound.
            assert!(
                used < window / 5,
                "an idle worker used {used:?} of CPU in {window:?}: it did not park"
            );
        }
    });
}

#[test]
fn drop_runtime_drops_every_task() {
    guard(|| {
        let rt = rt(2);
        let alive = Arc::new(());
        let (tx, rx) = mpsc::channel();
        for _ in 0..100 {
            let alive = alive.clone();
            let tx = tx.clone();
            rt.spawn(async move {
                let _alive = alive;
                let _ = tx.send(thread::current().id());
                std::future::pending::<()>().await
            });
        }
        drop(tx);
        // Wait until at least one task ran, so workers are busy with state.
        rx.recv_timeout(HANG).unwrap();
        drop(rt);
        assert_eq!(Arc::strong_count(&alive), 1);
    });
}

#[test]
fn block_on_from_many_threads() {
    guard(|| {
        let rt = rt(2);
        let total = sum_over_threads(&rt, 8, |t, h| {
            h.block_on(async move {
                let handles: Vec<_> = (0..100u64)
                    .map(|i| urgent::spawn(async move { t * 100 + i }))
                    .collect();
                let mut sum = 0;
                for jh in handles {
                    urgent::task::yield_now().await;
                    sum += jh.await.unwrap();
                }
                sum
            })
        });
        assert_eq!(total, (0..800u64).sum());
    });
}

/// Two tasks that keep handing a message to each other always have one of
/// them runnable (and, with a LIFO slot, always the next to run): on one
/// worker a task spawned from outside must still get its turn.
#[test]
fn ping_pong_pair_does_not_starve_outside_task() {
    guard(|| {
        use futures::channel::mpsc::unbounded;
        let rt = rt(1);
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let (a_tx, mut a_rx) = unbounded::<()>();
        let (b_tx, mut b_rx) = unbounded::<()>();
        {
            let (stop, rounds, b_tx) = (stop.clone(), rounds.clone(), b_tx.clone());
            rt.spawn(async move {
                while a_rx.next().await.is_some() {
                    rounds.fetch_add(1, Ordering::Relaxed);
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    b_tx.unbounded_send(()).unwrap();
                }
            });
        }
        {
            let a_tx = a_tx.clone();
            rt.spawn(async move {
                while b_rx.next().await.is_some() {
                    if a_tx.unbounded_send(()).is_err() {
                        break;
                    }
                }
            });
        }
        a_tx.unbounded_send(()).unwrap();
        wait_for_count(&rounds, 100, "the ping-pong never started", sleep_1ms);

        expect_task_runs(
            &stop,
            "a task spawned from outside starved behind a ping-pong pair",
            |tx| spawn_sender(rt.handle(), tx),
        );
    });
}

/// Other threads keep spawning through a Handle while the runtime is being
/// dropped: no panic, no deadlock, and every future is dropped in the end.
#[test]
fn spawn_while_runtime_drops() {
    guard(|| {
        let rt = rt(2);
        let alive = Arc::new(());
        let stop = Arc::new(AtomicBool::new(false));
        let spawned = Arc::new(AtomicUsize::new(0));
        let spawners: Vec<_> = (0..2)
            .map(|_| {
                let h = rt.handle().clone();
                let (alive, stop, spawned) = (alive.clone(), stop.clone(), spawned.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let a = alive.clone();
                        drop(h.spawn(async move {
                            let _a = a;
                            urgent::task::yield_now().await;
                            std::future::pending::<()>().await
                        }));
                        spawned.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        wait_for_count(
            &spawned,
            1000,
            "the spawning threads never ran",
            thread::yield_now,
        );
        drop(rt);
        stop.store(true, Ordering::Relaxed);
        for s in spawners {
            s.join()
                .expect("Handle::spawn panicked during or after shutdown");
        }
        assert_eq!(Arc::strong_count(&alive), 1);
    });
}

/// Build, use and drop many runtimes: every drop stops the workers and drops
/// the one never-finishing future exactly once.
#[test]
fn drop_runtime_drops_futures_many_times() {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    struct Never(Arc<AtomicUsize>);
    impl Future for Never {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
    }
    impl Drop for Never {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    guard(|| {
        for i in 0..100 {
            let drops = Arc::new(AtomicUsize::new(0));
            let rt = rt(1 + i % 2);
            rt.spawn(Never(drops.clone()));
            if i % 3 == 0 {
                // Sometimes let it be polled first.
                rt.block_on(urgent::task::yield_now());
            }
            drop(rt);
            assert_eq!(drops.load(Ordering::Relaxed), 1, "iteration {i}");
        }
    });
}

/// tokio-rs/tokio#3869: during shutdown, dropping one task wakes another
/// (through a waker stored under a mutex) on one worker.
#[test]
fn wake_during_shutdown() {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    struct MyFuture {
        shared: Arc<Mutex<Option<Waker>>>,
        put_waker: bool,
    }
    impl Future for MyFuture {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.put_waker {
                *self.shared.lock().unwrap() = Some(cx.waker().clone());
            }
            Poll::Pending
        }
    }
    impl Drop for MyFuture {
        fn drop(&mut self) {
            let mut lock = self.shared.lock().unwrap();
            if !self.put_waker {
                if let Some(w) = lock.take() {
                    w.wake();
                }
            }
        }
    }

    guard(|| {
        let rt = rt(1);
        let shared = Arc::new(Mutex::new(None));
        rt.spawn(MyFuture {
            shared: shared.clone(),
            put_waker: true,
        });
        rt.spawn(MyFuture {
            shared: shared.clone(),
            put_waker: false,
        });
        rt.block_on(async { urgent::time::sleep(Duration::from_millis(20)).await });
        assert!(
            shared.lock().unwrap().is_some(),
            "the first task was never polled"
        );
        drop(rt);
    });
}

/// A task that spawns a copy of itself forever (tokio's `lifo_slot_budget`):
/// the runtime still gets other work done and still shuts down.
#[test]
fn drop_with_endless_respawn_chain() {
    fn again() {
        urgent::spawn(async { again() });
    }

    guard(|| {
        let rt = rt(1);
        let (tx, rx) = oneshot::channel();
        rt.spawn(async move {
            again();
            let _ = tx.send(());
        });
        rt.block_on(rx).unwrap();
        let start = Instant::now();
        drop(rt);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "shutdown took {:?}",
            start.elapsed()
        );
    });
}
