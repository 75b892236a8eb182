//! Shows `URGENT_SCHEDTRACE`: one line of scheduler state per period.
//!
//! ```sh
//! URGENT_SCHEDTRACE=200 cargo run --release --example schedtrace
//! ```
//!
//! Two call-free CPU hogs and a 1 ms ticker share two workers for about a
//! second; the trace shows the hogs running as coroutines, being preempted
//! (`preempt(req=.. done=..)` grows), and the ticker's worker alternating.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[inline(never)]
fn spin(stop: &AtomicBool) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n = n.wrapping_add(1);
    }
    n
}

fn main() {
    if std::env::var_os("URGENT_SCHEDTRACE").is_none() {
        // SAFETY-free: set before any thread is started.
        std::env::set_var("URGENT_SCHEDTRACE", "200");
    }
    let rt = urgent::Builder::new()
        .worker_threads(2)
        .quantum(Duration::from_millis(1))
        .build()
        .expect("build runtime");
    rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let hogs: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                urgent::spawn_cpu(move || spin(&stop))
            })
            .collect();
        let mut ticker = urgent::time::interval(Duration::from_millis(1));
        for _ in 0..1000 {
            ticker.tick().await;
        }
        stop.store(true, Ordering::Relaxed);
        for h in hogs {
            h.await.unwrap();
        }
    });
    println!("final metrics: {:?}", rt.metrics());
}
