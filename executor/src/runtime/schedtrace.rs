//! `URGENT_SCHEDTRACE=<ms>`: one line of scheduler state per period on
//! stderr, in the spirit of Go's `GODEBUG=schedtrace=<ms>`.
//!
//! ```text
//! SCHED 1003ms: workers=2 parked=0 searching=0 injector=0 live=5 spawned=9 polls=812 steals=3 preempt(req=96 done=96 declined=0) long_polls=0 retakes=1 parks=0 spares=1 parked_threads=0 [0: coroutine 4.1ms q=0 pinned=1] [1: future q=2 pinned=0 on spare 2]
//! ```
//!
//! `parked` counts idle cores; `retakes`, `parks` (thread parks), `spares`
//! (spare threads alive) and `parked_threads` (worker threads parked with a
//! task) show cores changing threads. Per core: what its worker runs
//! (`idle`, `future`, or `coroutine` with how long the current run has
//! lasted), the length of its stealable queue (`q`), the CPU tasks bound to
//! its worker thread (`pinned`), and `on spare N` while a spare thread
//! holds it. The reader thread only loads atomics;
//! it never takes a scheduler lock, so tracing does not perturb what it
//! traces beyond a wake-up per period.

use std::fmt::Write as _;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::scheduler::Shared;
use crate::metrics::RuntimeMetrics;

/// Starts the tracer thread; it exits when the runtime shuts down or is
/// dropped.
pub(crate) fn start(shared: &Arc<Shared>, period: Duration) -> std::io::Result<()> {
    let weak = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("urgent-schedtrace".into())
        .spawn(move || run(weak, period))
        .map(drop)
}

fn run(weak: Weak<Shared>, period: Duration) {
    let start = Instant::now();
    loop {
        std::thread::sleep(period);
        let Some(shared) = weak.upgrade() else { return };
        if shared.is_shutdown() {
            return;
        }
        eprintln!("{}", line(&shared, start.elapsed()));
    }
}

/// One trace line.
pub(crate) fn line(shared: &Shared, elapsed: Duration) -> String {
    let m = RuntimeMetrics::collect(shared);
    let (parked, searching) = shared.idle_counts();
    let mut s = format!(
        "SCHED {}ms: workers={} parked={} searching={} injector={} live={} spawned={} polls={} \
         steals={} preempt(req={} done={} declined={}) long_polls={} retakes={} parks={} \
         spares={} parked_threads={}",
        elapsed.as_millis(),
        m.workers(),
        parked,
        searching,
        shared.injector_len(),
        m.live_tasks(),
        m.tasks_spawned(),
        m.polls(),
        m.steals(),
        m.preempt_requests(),
        m.preemptions(),
        m.preempt_declined(),
        m.long_polls(),
        m.retakes(),
        m.thread_parks(),
        m.spare_threads(),
        shared.parked_threads(),
    );
    for i in 0..shared.cores().len() {
        let (queued, pinned) = shared.queue_lens(i);
        let activity = match shared.preemptor().slot(i).activity() {
            urgent_preempt::Activity::Idle => "idle".to_string(),
            urgent_preempt::Activity::Future => "future".to_string(),
            urgent_preempt::Activity::Coroutine(d) => {
                format!("coroutine {:.1}ms", d.as_secs_f64() * 1e3)
            }
        };
        let holder = match shared.core_holder(i) {
            Some(t) if t == i => String::new(),
            Some(t) => format!(" on spare {t}"),
            None => " free".to_string(),
        };
        let _ = write!(s, " [{i}: {activity} q={queued} pinned={pinned}{holder}]");
    }
    s
}
