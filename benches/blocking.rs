//! `urgent::task::spawn_blocking` against tokio's `spawn_blocking`, side by
//! side in one run: spawn + join of a closure that sleeps (stands for a
//! blocking read), from a task, one at a time and 16 at once.
//!
//! ```text
//! cargo bench --bench blocking                       # quick: 15 rounds
//! URGENT_BENCH_LONG=1 cargo bench --bench blocking   # 41 rounds
//! ```
//!
//! Each round runs both runtimes for the same number of iterations (order
//! alternating); the table gives the median time per closure and the median
//! of the per-round ratios urgent/tokio. There is no DESIGN target: the point
//! is that moving blocking work off the workers costs what it costs in tokio.

mod common;

use std::time::{Duration, Instant};

/// What each closure does: block its thread briefly.
const BLOCK: Duration = Duration::from_micros(50);

/// `iters` rounds of `batch` spawns then `batch` joins, timed from a task.
macro_rules! rounds {
    ($rt:expr, $spawn:path, $batch:expr, $iters:expr) => {{
        let (batch, iters) = ($batch, $iters);
        $rt.block_on(async move {
            let t = Instant::now();
            let mut hs = Vec::with_capacity(batch);
            for _ in 0..iters {
                hs.extend((0..batch).map(|_| $spawn(|| std::thread::sleep(BLOCK))));
                for h in hs.drain(..) {
                    h.await.unwrap();
                }
            }
            t.elapsed()
        })
    }};
}

fn main() {
    let workers = common::workers();
    let u = common::urgent_rt(workers, None);
    let t = common::tokio_rt(workers);
    let rounds = if common::long_run() { 41 } else { 15 };
    println!(
        "spawn_blocking + join of a closure sleeping {BLOCK:?}, {workers} workers, {rounds} rounds"
    );
    println!(
        "| shape | urgent per closure | tokio per closure | urgent/tokio (median of rounds) |"
    );
    println!("|---|---:|---:|---:|");
    for batch in [1usize, 16] {
        let iters = if batch == 1 { 200 } else { 20 };
        // Warm both pools up.
        rounds!(u, urgent::task::spawn_blocking, batch, 5);
        rounds!(t, tokio::task::spawn_blocking, batch, 5);
        let (mut us, mut ts, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..rounds {
            let per = |d: Duration| d.as_nanos() as f64 / (iters * batch) as f64;
            let (a, b) = if r % 2 == 0 {
                let a = per(rounds!(u, urgent::task::spawn_blocking, batch, iters));
                (
                    a,
                    per(rounds!(t, tokio::task::spawn_blocking, batch, iters)),
                )
            } else {
                let b = per(rounds!(t, tokio::task::spawn_blocking, batch, iters));
                (
                    per(rounds!(u, urgent::task::spawn_blocking, batch, iters)),
                    b,
                )
            };
            us.push(a);
            ts.push(b);
            ratios.push(a / b);
        }
        println!(
            "| {batch} at a time | {} | {} | {:.2} |",
            common::fmt_time(common::median(&mut us), 2),
            common::fmt_time(common::median(&mut ts), 2),
            common::median(&mut ratios)
        );
    }
}
