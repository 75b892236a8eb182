//! A first tour of urgent: spawn a few hundred tasks, join them, see what a panicking
//! task and a cancelled task look like from the outside, time something out, and read
//! the runtime's counters.
//!
//! ```text
//! cargo run --release --example hello
//! URGENT_WORKER_THREADS=4 cargo run --release --example hello
//! ```
//!
//! Everything here is what you would write with tokio; only the names change
//! (`#[tokio::main]` → `#[urgent::main]`, `tokio::spawn` → `urgent::spawn`, ...).

use std::time::{Duration, Instant};
use urgent::task::{yield_now, JoinError};
use urgent::time::{sleep, timeout};

/// How many tasks the first part spawns.
const TASKS: u64 = 300;

/// Three kinds of task, so the workers have a mix to schedule.
async fn job(i: u64) -> u64 {
    match i % 3 {
        // Waits on a timer: 1..=20 ms. A sleeping task costs no thread.
        0 => {
            sleep(Duration::from_millis(1 + i % 20)).await;
            i
        }
        // Gives the worker back a few times, like a task waiting on busy I/O would.
        1 => {
            for _ in 0..10 {
                yield_now().await;
            }
            i
        }
        // A little computation, in slices, yielding between them so one long
        // computation does not hold a worker for everyone else.
        _ => {
            let mut primes = 0;
            for chunk in 0..10 {
                let lo = 2 + chunk * 500;
                primes += (lo..lo + 500).filter(|&n| is_prime(n)).count() as u64;
                yield_now().await;
            }
            assert_eq!(primes, 669, "there are 669 primes below 5002");
            i
        }
    }
}

/// Integer division as a task; divides by zero if asked to, which panics.
async fn divide(a: u64, b: u64) -> u64 {
    yield_now().await;
    a / b
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// The payload of a panic, as text (panics carry a `&str` or a `String`).
fn panic_message(err: JoinError) -> String {
    let payload = err.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

#[urgent::main]
async fn main() {
    let start = Instant::now();
    let workers = urgent::Handle::current().metrics().workers();
    println!("urgent hello: a runtime with {workers} worker threads");
    println!();

    // 1. Spawn and join.
    println!("1. spawning {TASKS} tasks (timers, yields, a little prime counting) ...");
    let t = Instant::now();
    let handles: Vec<_> = (0..TASKS).map(|i| urgent::spawn(job(i))).collect();
    let mut sum = 0;
    for h in handles {
        sum += h.await.expect("job tasks do not panic");
    }
    assert_eq!(sum, TASKS * (TASKS - 1) / 2);
    println!(
        "   all {TASKS} joined in {:.1} ms; their results add up to {sum} as expected",
        t.elapsed().as_secs_f64() * 1e3
    );
    println!();

    // 2. A task that panics. The runtime catches the panic: the worker thread and the
    //    other tasks carry on, and whoever awaits the JoinHandle gets a JoinError.
    //    (A panic hook that prints one short line replaces the default report here.)
    println!("2. a task that panics ...");
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("<non-string payload>");
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        println!("   [panic hook] a task panicked at {place}: {message}");
    }));
    let result = urgent::spawn(divide(100, 0)).await;
    std::panic::set_hook(default_hook);
    match result {
        Ok(v) => println!("   unexpected: the task returned {v}"),
        Err(err) => {
            println!("   awaiting it gave Err(JoinError): {err}");
            println!("   is_panic() = {}", err.is_panic());
            println!(
                "   into_panic() gives the payload back: {:?}",
                panic_message(err)
            );
        }
    }
    println!();

    // 3. Aborting a task: it is dropped at its next await point and its JoinHandle
    //    reports cancellation.
    println!("3. aborting a task that would sleep for an hour ...");
    let sleeper = urgent::spawn(async {
        sleep(Duration::from_secs(3600)).await;
    });
    sleep(Duration::from_millis(5)).await;
    sleeper.abort();
    match sleeper.await {
        Ok(()) => println!("   unexpected: it finished"),
        Err(err) => println!(
            "   awaiting it gave Err(JoinError): {err}; is_cancelled() = {}",
            err.is_cancelled()
        ),
    }
    println!();

    // 4. Timeouts: `timeout(d, fut)` gives `Ok(output)` if `fut` finishes within `d`,
    //    `Err(Elapsed)` otherwise, and then drops `fut`.
    println!("4. timeouts ...");
    let fast = timeout(Duration::from_millis(100), sleep(Duration::from_millis(5))).await;
    match fast {
        Ok(()) => println!("   a 5 ms sleep under a 100 ms timeout: Ok(()), it finished in time"),
        Err(e) => println!("   unexpected: a 5 ms sleep under a 100 ms timeout: Err({e})"),
    }
    let t = Instant::now();
    let slow = timeout(Duration::from_millis(50), sleep(Duration::from_secs(10))).await;
    match slow {
        Ok(()) => println!("   unexpected: a 10 s sleep finished under a 50 ms timeout"),
        Err(e) => println!(
            "   a 10 s sleep under a 50 ms timeout: Err(Elapsed) \"{e}\" after {:.1} ms; the sleep was dropped",
            t.elapsed().as_secs_f64() * 1e3
        ),
    }
    println!();

    // 5. What the scheduler did.
    let m = urgent::Handle::current().metrics();
    println!("5. runtime metrics:");
    println!("   workers        {:>8}   worker threads", m.workers());
    println!(
        "   tasks_spawned  {:>8}   tasks created so far",
        m.tasks_spawned()
    );
    println!(
        "   polls          {:>8}   times a task was polled",
        m.polls()
    );
    println!(
        "   steals         {:>8}   times an idle worker took work from a busy one",
        m.steals()
    );
    println!();
    println!("done in {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
}
