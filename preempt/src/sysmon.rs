//! The sysmon thread: deadline-driven watch over the slots (Go's `sysmon` +
//! `retake` + `preemptone`). See the crate docs, steps 3 and 4.

use crate::{now_ns, Slot, IDLE, RUNNING_COROUTINE, RUNNING_FUTURE};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use urgent_stackful::sync::lock;

/// First re-check after a signal that did not end the run.
const RETRY_NS: u64 = 100_000;

/// How sysmon sleeps and is woken.
pub(crate) struct Wake {
    /// True while sysmon sleeps with no deadline (set by sysmon under `lock`,
    /// cleared by whoever wakes it).
    pub(crate) idle: AtomicBool,
    shutdown: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Wake {
    pub(crate) fn new() -> Wake {
        Wake {
            idle: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    /// Wakes sysmon if it sleeps with no deadline (only the first caller pays).
    pub(crate) fn wake(&self) {
        if self.idle.swap(false, Ordering::SeqCst) {
            let _g = lock(&self.lock);
            self.cv.notify_one();
        }
    }

    /// Makes sysmon re-scan now, whatever it sleeps on.
    pub(crate) fn kick(&self) {
        self.idle.store(false, Ordering::SeqCst);
        let _g = lock(&self.lock);
        self.cv.notify_one();
    }

    pub(crate) fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.idle.store(false, Ordering::SeqCst);
        let _g = lock(&self.lock);
        self.cv.notify_all();
    }
}

/// Sysmon's private view of one slot.
#[derive(Default)]
struct Watch {
    /// Tick of the coroutine run last examined.
    coro_tick: u64,
    coro_seen: bool,
    /// A request was made for `coro_tick`.
    requested: bool,
    retry_at: u64,
    backoff: u64,
    /// Future sampling: tick seen, when first seen, whether counted.
    fut_tick: u64,
    fut_seen: bool,
    fut_since: u64,
    fut_counted: bool,
}

/// Consistent snapshot of a slot's worker fields (seqlock-style re-read of
/// the tick).
pub(crate) fn snapshot(slot: &Slot) -> Option<(u8, u64, u64)> {
    let t1 = slot.worker.tick.load(Ordering::Acquire);
    let state = slot.worker.state.load(Ordering::Acquire);
    let start = slot.worker.run_start.load(Ordering::Acquire);
    std::sync::atomic::fence(Ordering::Acquire);
    let t2 = slot.worker.tick.load(Ordering::Acquire);
    (t1 == t2).then_some((state, t1, start))
}

#[cfg(target_os = "linux")]
pub(crate) fn send_signal(slot: &Slot, pid: i32) {
    let tid = slot.tid.load(Ordering::Acquire);
    if tid == 0 {
        return;
    }
    slot.sysmon.signal_pending.store(true, Ordering::Release);
    // SAFETY: tgkill with our own pid only reaches threads of this process; a
    // stale tid gets ESRCH or, if reused by another of our threads, a
    // spurious SIGURG, which the protocol tolerates.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGURG) };
    if r != 0 {
        slot.sysmon.signal_pending.store(false, Ordering::Relaxed);
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn send_signal(_slot: &Slot, _pid: i32) {}

fn set_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 5_000 as libc::c_ulong, 0, 0, 0);
    }
}

/// Sysmon's main loop; returns at shutdown.
pub(crate) fn run(slots: Vec<Arc<Slot>>, wake: Arc<Wake>, quantum_ns: u64, async_on: bool) {
    set_timer_slack();
    let pid = std::process::id() as i32;
    let max_backoff = quantum_ns.clamp(1_000_000, 10_000_000);
    let mut watch: Vec<Watch> = slots.iter().map(|_| Watch::default()).collect();
    while !wake.shutdown.load(Ordering::Acquire) {
        let now = now_ns();
        let mut next = u64::MAX;
        for (slot, w) in slots.iter().zip(watch.iter_mut()) {
            let Some((state, tick, start)) = snapshot(slot) else {
                next = now; // The worker moved on mid-read: look again.
                continue;
            };
            if state != RUNNING_FUTURE {
                w.fut_seen = false;
            }
            match state {
                RUNNING_COROUTINE => {
                    if !w.coro_seen || w.coro_tick != tick {
                        *w = Watch {
                            coro_tick: tick,
                            coro_seen: true,
                            backoff: RETRY_NS,
                            ..Watch::default()
                        };
                    }
                    let deadline = start.saturating_add(quantum_ns);
                    if !w.requested {
                        // A request made by `diagnostics::request_preempt` (which
                        // signalled already) is retried like our own.
                        let external = slot.sysmon.request_tick.load(Ordering::Acquire) == tick;
                        if now < deadline && !external {
                            next = next.min(deadline);
                            continue;
                        }
                        w.requested = true;
                        if !external {
                            slot.sysmon.request_tick.store(tick, Ordering::Release);
                            slot.sysmon.preempt_requests.fetch_add(1, Ordering::Relaxed);
                        }
                        if async_on && slot.async_enabled() {
                            if !external && !slot.sysmon.signal_pending.load(Ordering::Acquire) {
                                send_signal(slot, pid);
                            }
                            w.retry_at = now + w.backoff;
                            next = next.min(w.retry_at);
                        }
                    } else if async_on && slot.async_enabled() {
                        if now >= w.retry_at {
                            // Same run still going on: the handler declined,
                            // the hook returned without suspending, or the
                            // signal is still in flight. Request again.
                            slot.sysmon.request_tick.store(tick, Ordering::Release);
                            send_signal(slot, pid);
                            w.backoff = (w.backoff * 2).min(max_backoff);
                            w.retry_at = now + w.backoff;
                        }
                        next = next.min(w.retry_at);
                    }
                }
                RUNNING_FUTURE => {
                    if !w.fut_seen || w.fut_tick != tick {
                        w.fut_seen = true;
                        w.fut_tick = tick;
                        w.fut_since = now;
                        w.fut_counted = false;
                    } else if !w.fut_counted && now.saturating_sub(w.fut_since) >= quantum_ns {
                        w.fut_counted = true;
                        slot.sysmon.long_polls.fetch_add(1, Ordering::Relaxed);
                    }
                    // Sample every quantum while a future is being polled.
                    let sample = if w.fut_counted {
                        now + quantum_ns
                    } else {
                        w.fut_since + quantum_ns
                    };
                    next = next.min(sample);
                }
                IDLE => {}
                _ => {}
            }
        }
        if next == u64::MAX {
            // Nothing to time: sleep with no deadline. Publish `idle`, then
            // re-scan (Dekker with coroutine_started's SeqCst state store).
            let mut g = lock(&wake.lock);
            wake.idle.store(true, Ordering::SeqCst);
            let news = slots.iter().zip(watch.iter()).any(|(slot, w)| {
                let state = slot.worker.state.load(Ordering::SeqCst);
                let tick = slot.worker.tick.load(Ordering::SeqCst);
                state == RUNNING_FUTURE
                    || (state == RUNNING_COROUTINE && (!w.coro_seen || tick != w.coro_tick))
            });
            if news {
                wake.idle.store(false, Ordering::SeqCst);
                continue;
            }
            while wake.idle.load(Ordering::SeqCst) && !wake.shutdown.load(Ordering::SeqCst) {
                g = wake.cv.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        } else if next > now {
            let g = lock(&wake.lock);
            if wake.shutdown.load(Ordering::SeqCst) {
                break;
            }
            let _ = wake.cv.wait_timeout(g, Duration::from_nanos(next - now));
        }
    }
}
