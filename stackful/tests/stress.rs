//! Many coroutines moving between threads, suspending, finishing, panicking
//! and being dropped mid-way, with the stack pools shared by all threads.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use urgent_stackful::{init_thread, suspend, Coroutine, Resume, Stack, SuspendKind};

struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[test]
fn coroutines_hop_between_threads() {
    // Keep the intended panics out of the test output.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("");
        if !msg.contains("on purpose") {
            default_hook(info);
        }
    }));

    const THREADS: usize = 4;
    const COROUTINES: usize = 400;
    const STEPS: usize = 20;

    let created = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let panicked = Arc::new(AtomicUsize::new(0));
    let abandoned = Arc::new(AtomicUsize::new(0));

    // Work items: (coroutine, resumes so far).
    let (tx, rx) = mpsc::channel::<(Coroutine, usize)>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..COROUTINES {
        let (c, d) = (created.clone(), dropped.clone());
        let size = [32 * 1024, 64 * 1024, 256 * 1024][i % 3];
        let co = Coroutine::new(Stack::new(size).unwrap(), move || {
            c.fetch_add(1, SeqCst);
            let _guard = Counted(d);
            let mut local = vec![i; 8];
            for step in 0..STEPS {
                local.push(step);
                let kind = if step % 3 == 0 {
                    SuspendKind::Preempted
                } else {
                    SuspendKind::Yield
                };
                suspend(kind);
                assert_eq!(local[0], i);
            }
            if i % 7 == 0 {
                panic!("coroutine {i} panics on purpose");
            }
        });
        tx.send((co, 0)).unwrap();
    }

    let remaining = Arc::new(AtomicUsize::new(COROUTINES));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (rx, tx) = (rx.clone(), tx.clone());
            let (finished, panicked, abandoned, remaining) = (
                finished.clone(),
                panicked.clone(),
                abandoned.clone(),
                remaining.clone(),
            );
            std::thread::spawn(move || {
                init_thread();
                let mut n = 0usize;
                while remaining.load(SeqCst) > 0 {
                    let item = rx
                        .lock()
                        .unwrap()
                        .recv_timeout(std::time::Duration::from_millis(10));
                    let Ok((mut co, resumes)) = item else {
                        continue;
                    };
                    n += 1;
                    match co.resume() {
                        Resume::Suspended(kind) => {
                            assert_eq!(co.last_suspend(), Some(kind));
                            // Some coroutines are abandoned half-way, at
                            // cooperative points only (Preempted would leak).
                            let lottery = (resumes + t + n) % 97;
                            if kind == SuspendKind::Yield && lottery == 0 {
                                drop(co);
                                abandoned.fetch_add(1, SeqCst);
                                remaining.fetch_sub(1, SeqCst);
                            } else {
                                tx.send((co, resumes + 1)).unwrap();
                            }
                        }
                        Resume::Finished => {
                            finished.fetch_add(1, SeqCst);
                            remaining.fetch_sub(1, SeqCst);
                        }
                        Resume::Panicked(p) => {
                            let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
                            assert!(msg.contains("on purpose"), "{msg}");
                            panicked.fetch_add(1, SeqCst);
                            remaining.fetch_sub(1, SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    drop(tx);
    for w in workers {
        w.join().unwrap();
    }
    let (f, p, a) = (
        finished.load(SeqCst),
        panicked.load(SeqCst),
        abandoned.load(SeqCst),
    );
    assert_eq!(f + p + a, COROUTINES);
    assert_eq!(created.load(SeqCst), COROUTINES);
    // Every coroutine's guard was dropped: by finishing, by the panic, or by
    // the forced unwind of an abandoned one.
    assert_eq!(dropped.load(SeqCst), COROUTINES);
    assert!(p > 0 && f > 0);
}
