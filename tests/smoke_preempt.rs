use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[inline(never)]
fn spin_until(stop: &AtomicBool) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n = n.wrapping_add(1);
    }
    n
}

#[test]
fn sleeper_wakes_while_spinner_holds_the_only_worker() {
    let rt = urgent::Builder::new()
        .worker_threads(1)
        .quantum(Duration::from_millis(1))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let worst = rt.block_on(async move {
        let spinner = urgent::spawn_cpu(move || spin_until(&s2));
        let sleeper = urgent::spawn(async {
            let mut worst = Duration::ZERO;
            for _ in 0..50 {
                let t = Instant::now();
                urgent::time::sleep(Duration::from_millis(1)).await;
                worst = worst.max(t.elapsed());
            }
            worst
        });
        let worst = sleeper.await.unwrap();
        stop.store(true, Ordering::Relaxed);
        spinner.await.unwrap();
        worst
    });
    let m = rt.metrics();
    eprintln!("worst sleep {worst:?}, metrics {m:?}");
    assert!(m.preemptions() > 0);
}
