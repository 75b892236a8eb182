//! The sysmon thread: a deadline-driven watch over the slots (Go's `sysmon`
//! + `retake` + `preemptone`). See the crate docs, steps 3 and 4.
//!
//! # Protocol
//!
//! sysmon keeps a private [`Watch`] per slot, a small state machine driven by
//! consistent samples of the slot (`tick`, `state`, `run_start`, re-read
//! seqlock-style: a torn sample means "look again now"):
//!
//! ```text
//!             worker polls a future               same tick, a quantum later:
//!   Idle ───────────────────────────▶ Future ──── count one long poll (once)
//!    ▲  ▲                               │
//!    │  └──────── worker idle ──────────┘
//!    │                                                 same run still going on
//!    │   new run (new tick)          deadline passed   at retry_at: request and
//!    └─▶ Coroutine{deadline} ─────────────────────▶ Requested{retry_at} ◀─┐
//!         (run_start + quantum)      request + SIGURG          └──────────┘
//! ```
//!
//! - **Idle**: the worker runs runtime code or sleeps. Nothing to time.
//! - **Future{tick, since, counted}**: a plain-future poll (`tick`) first
//!   seen at `since`; still the same poll a quantum later counts one
//!   `long_poll`. Sampled every quantum, never signalled.
//! - **Coroutine{tick, deadline}**: a coroutine run; at `deadline` (its
//!   `run_start + quantum`) sysmon stores `request_tick = tick` (release),
//!   counts a `preempt_request` and, with async preemption on, sends SIGURG
//!   unless one is still pending (Go's `signalPending`).
//! - **Requested{tick, retry_at, interval}**: the request is out. A request that
//!   succeeds ends the run (new tick or idle), so nothing more happens. If
//!   the same run is still going on at `retry_at` (the handler declined: not
//!   a safe point, a `NoPreempt` guard, no headroom; or the signal is still
//!   in flight), sysmon stores the request again, signals again unless a
//!   signal is still pending, and re-checks [`RETRY_NS`] later: a constant
//!   short interval, so a task that spends most of its time in code where
//!   it cannot be stopped is caught soon after it leaves it. Only while the
//!   last signal is still pending (the thread has not run since, so nothing
//!   was declined) does the interval double, up to 1.2 ms, to spare a
//!   loaded machine; it drops back to 150 µs once the handler has run. Without async
//!   preemption there is no retry: `should_yield` sees the request.
//! - A request made from elsewhere (`diagnostics::request_preempt`) is
//!   adopted as if sysmon had made it (not counted again).
//! - **Retake** (Go's `retake`, with [`Config::retake_after`]): beside the
//!   watch, a `RetakeWatch` per slot. A future poll still going on
//!   `retake_after` after sysmon first saw it, or a coroutine run whose
//!   request keeps being declined while its thread's CPU clock advances by
//!   less than a quarter of the wall time over `retake_after` and whose
//!   scheduler state is not `R` (blocked in the kernel: a futex, a read, a
//!   sleep), is handed to the retake handler once per run: the executor
//!   then gives that thread's core to another thread. The CPU clock (one
//!   `clock_gettime`, on the retries that happen anyway) screens; the state
//!   in `/proc/self/task/<tid>/stat` decides, so a thread that only waits
//!   for a CPU on a loaded machine is not taken for a blocked one.
//! - Beside the watch, an `AckWatch` per slot notices signals that are
//!   never acknowledged (handler replaced, SIGURG blocked: `unacked.rs`);
//!   such a slot is retried once a quantum instead of every 150 µs.
//!
//! - A handler that met a PC in no known object (a library `dlopen`ed after
//!   the module table was built) sets a flag; each scan takes it and, if
//!   the loader's object counters moved since the table was built, rebuilds
//!   the table on a short-lived thread of its own (a build reads every
//!   object's symbols: tens of milliseconds that the scan must not wait
//!   for). Until the new table is published the handler keeps declining
//!   with `UnknownPc` and sysmon keeps retrying, so the request is not lost:
//!   it lands on the first retry after the publication.
//!
//! Any sample with another tick (or state) than the watch expects starts
//! over from that sample: ticks only grow, so "same tick" means "the same
//! run is still going on".
//!
//! sysmon then sleeps until the earliest time any watch asked for; if none
//! did, it sleeps with no deadline through the [`Gate`] handshake (in
//! `gate.rs`), which a worker starting a coroutine (or a future) wakes.
//!
//! # Who touches what
//!
//! The watches are sysmon's alone. In the slots sysmon writes only the
//! sysmon line (`request_tick`, `signal_pending`, its counters); it reads
//! the worker line and the handler's `ack`.

mod gate;
mod slots;
mod unacked;

pub use gate::Gate;
pub(crate) use slots::SlotList;

/// The primitives `gate.rs` is written against: std's here, loom's when
/// `tests/loom_sysmon.rs` compiles `gate.rs` under `--cfg loom`.
mod sync {
    pub(super) use std::sync::atomic::{fence, AtomicBool, Ordering};
    pub(super) use std::sync::{Condvar, Mutex};
    pub(super) use urgent_stackful::sync::lock;
}

use crate::{now_ns, Slot, RUNNING_COROUTINE, RUNNING_FUTURE};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use unacked::AckWatch;

/// Re-check interval after a request that did not end the run: short
/// (issue 12: a task in a region where it cannot be stopped is caught
/// ~150 µs after it leaves it) and constant (no backoff to a quantum).
pub(crate) const RETRY_NS: u64 = 150_000;

/// Longest re-check interval while a signal is still in flight (sent, not
/// yet handled: the worker thread has not run since, e.g. on a loaded
/// machine).
const IN_FLIGHT_MAX_NS: u64 = 1_200_000;

/// sysmon's private view of one slot; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watch {
    Idle,
    Future {
        tick: u64,
        since: u64,
        counted: bool,
    },
    Coroutine {
        tick: u64,
        deadline: u64,
    },
    Requested {
        tick: u64,
        retry_at: u64,
        interval: u64,
    },
}

/// One consistent read of a slot's worker line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    pub(crate) state: u8,
    pub(crate) tick: u64,
    pub(crate) run_start: u64,
}

/// Consistent snapshot of a slot's worker fields (seqlock-style re-read of
/// the tick); `None` if the worker moved on mid-read.
pub(crate) fn snapshot(slot: &Slot) -> Option<Sample> {
    let w = &slot.worker;
    let t1 = w.tick.load(Ordering::Acquire);
    let state = w.state.load(Ordering::Acquire);
    let run_start = w.run_start.load(Ordering::Acquire);
    std::sync::atomic::fence(Ordering::Acquire);
    let t2 = w.tick.load(Ordering::Acquire);
    (t1 == t2).then_some(Sample {
        state,
        tick: t1,
        run_start,
    })
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

/// What does not change while sysmon runs, plus the time of this scan.
struct Scan {
    now: u64,
    /// Retry interval for the slot at hand: [`RETRY_NS`], or a quantum for
    /// a slot whose signals go unacknowledged (see `unacked.rs`).
    retry_ns: u64,
    quantum_ns: u64,
    async_on: bool,
    pid: i32,
}

impl Scan {
    /// Whether requests to `slot` are followed by signals and retries.
    fn signals(&self, slot: &Slot) -> bool {
        self.async_on && slot.async_enabled()
    }

    /// Makes (or renews) the request for run `tick` and signals the worker
    /// unless a signal is still pending.
    fn request(&self, slot: &Slot, tick: u64) {
        slot.sysmon.request_tick.store(tick, Ordering::Release);
        if self.signals(slot) && !slot.sysmon.signal_pending.load(Ordering::Acquire) {
            send_signal(slot, self.pid);
        }
    }

    /// The watch after `sample`, and when to look again (`None`: nothing to
    /// time).
    fn step(&self, slot: &Slot, watch: Watch, sample: Sample) -> (Watch, Option<u64>) {
        match sample.state {
            RUNNING_COROUTINE => self.coroutine(slot, watch, sample),
            RUNNING_FUTURE => self.future(slot, watch, sample.tick),
            _ => (Watch::Idle, None),
        }
    }

    fn future(&self, slot: &Slot, watch: Watch, tick: u64) -> (Watch, Option<u64>) {
        let q = self.quantum_ns;
        match watch {
            Watch::Future {
                tick: t,
                since,
                counted,
            } if t == tick => {
                let due = !counted && self.now.saturating_sub(since) >= q;
                if due {
                    slot.sysmon.long_polls.fetch_add(1, Ordering::Relaxed);
                }
                let counted = counted || due;
                // Sample every quantum while the same poll goes on.
                let next = if counted { self.now + q } else { since + q };
                let watch = Watch::Future {
                    tick,
                    since,
                    counted,
                };
                (watch, Some(next))
            }
            _ => {
                let watch = Watch::Future {
                    tick,
                    since: self.now,
                    counted: false,
                };
                (watch, Some(self.now + q))
            }
        }
    }

    fn coroutine(&self, slot: &Slot, watch: Watch, s: Sample) -> (Watch, Option<u64>) {
        let watch = match watch {
            Watch::Coroutine { tick, .. } | Watch::Requested { tick, .. } if tick == s.tick => {
                watch
            }
            _ => Watch::Coroutine {
                tick: s.tick,
                deadline: s.run_start.saturating_add(self.quantum_ns),
            },
        };
        match watch {
            Watch::Coroutine { tick, deadline } => {
                let external = slot.sysmon.request_tick.load(Ordering::Acquire) == tick;
                if external {
                    // Requested (and signalled) by someone else: retry it.
                    return self.requested(slot, tick, self.retry_ns);
                }
                if self.now < deadline {
                    return (watch, Some(deadline));
                }
                slot.sysmon.preempt_requests.fetch_add(1, Ordering::Relaxed);
                self.request(slot, tick);
                self.requested(slot, tick, self.retry_ns)
            }
            Watch::Requested {
                tick,
                retry_at,
                interval,
            } if self.now >= retry_at => {
                // Same run still going on: declined, or still in flight.
                let interval = self.next_interval(slot, interval);
                self.request(slot, tick);
                self.requested(slot, tick, interval)
            }
            Watch::Requested { retry_at, .. } => (watch, self.signals(slot).then_some(retry_at)),
            _ => unreachable!("a coroutine watch"),
        }
    }

    /// The wait before the next retry: the retry interval once the handler
    /// has seen the last signal (it declined), doubling up to
    /// [`IN_FLIGHT_MAX_NS`] while the signal is still pending (the thread
    /// has not run since: re-checking sooner cannot help).
    fn next_interval(&self, slot: &Slot, prev: u64) -> u64 {
        if slot.sysmon.signal_pending.load(Ordering::Acquire) {
            prev.saturating_mul(2)
                .min(IN_FLIGHT_MAX_NS)
                .max(self.retry_ns)
        } else {
            self.retry_ns
        }
    }

    fn requested(&self, slot: &Slot, tick: u64, interval: u64) -> (Watch, Option<u64>) {
        let retry_at = self.now + interval;
        let watch = Watch::Requested {
            tick,
            retry_at,
            interval,
        };
        // Without signals the cooperative request is all there is.
        (watch, self.signals(slot).then_some(retry_at))
    }
}

/// Whether a slot needs timing that its watch does not know of yet (read
/// after the gate's fence: see `gate.rs`).
fn news(slot: &Slot, watch: Watch) -> bool {
    let state = slot.worker.state.load(Ordering::Acquire);
    let tick = slot.worker.tick.load(Ordering::Acquire);
    match state {
        RUNNING_FUTURE => true,
        RUNNING_COROUTINE => !matches!(
            watch,
            Watch::Coroutine { tick: t, .. } | Watch::Requested { tick: t, .. } if t == tick
        ),
        _ => false,
    }
}

/// The executor's retake handler: called with a slot index.
pub(crate) type RetakeHandler = Box<dyn Fn(usize) + Send + Sync>;

/// sysmon's shared state: the gate, the retake handler and a counter for
/// diagnostics.
pub(crate) struct Sysmon {
    pub(crate) gate: Gate,
    /// Scans made (each wake-up of the sysmon thread is one scan).
    pub(crate) wakeups: AtomicU64,
    pub(crate) retake: OnceLock<RetakeHandler>,
    /// Retakes handed to the handler.
    pub(crate) retakes: AtomicU64,
    /// A table rebuild is under way (see [`rebuild_if_unknown_pc`]).
    rebuilding: Arc<AtomicBool>,
}

impl Sysmon {
    pub(crate) fn new() -> Sysmon {
        Sysmon {
            gate: Gate::new(),
            wakeups: AtomicU64::new(0),
            retake: OnceLock::new(),
            retakes: AtomicU64::new(0),
            rebuilding: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// A thread's CPU time in ns (Linux: the per-thread CPU clock of `tid`,
/// readable from any thread of the process); `None` if unavailable.
fn thread_cpu_ns(tid: i32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        // The kernel's MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED).
        let clock: libc::clockid_t = ((!tid) << 3) | 6;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer; an invalid clock id (a thread
        // that exited) is an error return, not UB.
        if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
            return None;
        }
        Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        None
    }
}

/// Whether thread `tid` of this process is running or runnable (state `R`
/// in `/proc/self/task/<tid>/stat`); true if that cannot be read.
fn thread_runnable(tid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return true;
    };
    // The state follows the command name, which is in parentheses and may
    // itself contain spaces and parentheses.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_none_or(|state| state == 'R')
}

/// sysmon's retake bookkeeping for one slot (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
struct RetakeWatch {
    /// The run last handed to the retake handler (0: none).
    done_tick: u64,
    /// The coroutine run being measured, when, and its CPU clock then.
    tick: u64,
    checked_at: u64,
    cpu_ns: u64,
}

impl RetakeWatch {
    /// Whether to retake the slot's thread now; and when to look again.
    fn check(&mut self, slot: &Slot, watch: Watch, now: u64, after: u64) -> (bool, Option<u64>) {
        match watch {
            Watch::Future { tick, since, .. } if tick != self.done_tick => {
                if now.saturating_sub(since) >= after {
                    self.done_tick = tick;
                    (true, None)
                } else {
                    (false, Some(since + after))
                }
            }
            Watch::Requested { tick, .. } if tick != self.done_tick => {
                let tid = slot.tid.load(Ordering::Relaxed);
                let Some(cpu) = thread_cpu_ns(tid) else {
                    return (false, None);
                };
                if tick != self.tick {
                    (self.tick, self.checked_at, self.cpu_ns) = (tick, now, cpu);
                    return (false, Some(now + after));
                }
                let wall = now.saturating_sub(self.checked_at);
                if wall < after {
                    return (false, Some(self.checked_at + after));
                }
                // The CPU clock first (one cheap call); a thread that looks
                // blocked by it may just be waiting for a CPU on a loaded
                // machine, so its scheduler state decides (`R`: runnable).
                let blocked = cpu.saturating_sub(self.cpu_ns).saturating_mul(4) < wall
                    && !thread_runnable(tid);
                if blocked {
                    self.done_tick = tick;
                    return (true, None);
                }
                (self.checked_at, self.cpu_ns) = (now, cpu);
                (false, Some(now + after))
            }
            _ => (false, None),
        }
    }
}

/// If a handler met a PC in no known object and objects were loaded since
/// the module table was built, rebuilds the table on a thread of its own
/// (one rebuild at a time). A PC that stays unknown (JIT code, anonymous
/// memory) costs one cheap loader-counter check per scan and no rebuild.
fn rebuild_if_unknown_pc(rebuilding: &Arc<AtomicBool>) {
    if !crate::safepoint::take_unknown_pc() || rebuilding.load(Ordering::Acquire) {
        return;
    }
    if !crate::safepoint::needs_rebuild() {
        return;
    }
    rebuilding.store(true, Ordering::Release);
    let flag = Arc::clone(rebuilding);
    let spawned = std::thread::Builder::new()
        .name("urgent-symtab".into())
        .spawn(move || {
            crate::safepoint::rebuild();
            flag.store(false, Ordering::Release);
        });
    if spawned.is_err() {
        // No thread to spare: rebuild here rather than lose the request.
        crate::safepoint::rebuild();
        rebuilding.store(false, Ordering::Release);
    }
}

fn set_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 5_000 as libc::c_ulong, 0, 0, 0);
    }
}

/// sysmon's main loop; returns at shutdown.
pub(crate) fn run(
    slots: Arc<SlotList>,
    shared: Arc<Sysmon>,
    quantum_ns: u64,
    async_on: bool,
    retake_ns: Option<u64>,
) {
    set_timer_slack();
    let mut watches: Vec<Watch> = Vec::with_capacity(slots.capacity());
    let mut acks: Vec<AckWatch> = Vec::with_capacity(slots.capacity());
    let mut retakes: Vec<RetakeWatch> = Vec::with_capacity(slots.capacity());
    let mut scan = Scan {
        now: 0,
        retry_ns: RETRY_NS,
        quantum_ns,
        async_on,
        pid: std::process::id() as i32,
    };
    while !shared.gate.is_shutdown() {
        shared.wakeups.fetch_add(1, Ordering::Relaxed);
        rebuild_if_unknown_pc(&shared.rebuilding);
        scan.now = now_ns();
        let mut next = u64::MAX;
        // Slots added since the last scan start as Idle.
        watches.resize(slots.len(), Watch::Idle);
        acks.resize(slots.len(), AckWatch::default());
        retakes.resize(slots.len(), RetakeWatch::default());
        for (((slot, watch), ack), retake) in slots
            .iter()
            .zip(watches.iter_mut())
            .zip(acks.iter_mut())
            .zip(retakes.iter_mut())
        {
            ack.observe(slot, scan.now);
            scan.retry_ns = if ack.diagnosed {
                quantum_ns.max(RETRY_NS)
            } else {
                RETRY_NS
            };
            let Some(sample) = snapshot(slot) else {
                next = scan.now; // The worker moved on mid-read: look again.
                continue;
            };
            let (w, at) = scan.step(slot, *watch, sample);
            *watch = w;
            next = next.min(at.unwrap_or(u64::MAX));
            if let (Some(after), Some(handler)) = (retake_ns, shared.retake.get()) {
                let (now, at) = retake.check(slot, w, scan.now, after);
                if now {
                    shared.retakes.fetch_add(1, Ordering::Relaxed);
                    handler(slot.index());
                }
                next = next.min(at.unwrap_or(u64::MAX));
            }
        }
        if next == u64::MAX {
            // A slot added meanwhile is news only once it runs something,
            // which its thread publishes through the gate like any other.
            let news = || {
                let watched = watches
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(Watch::Idle));
                slots.iter().zip(watched).any(|(s, w)| news(s, w))
            };
            shared.gate.sleep(news);
        } else if next > scan.now {
            shared.gate.sleep_for(next - scan.now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IDLE;

    fn scan(now: u64) -> Scan {
        Scan {
            now,
            quantum_ns: 1_000_000,
            async_on: true,
            pid: std::process::id() as i32,
            retry_ns: RETRY_NS,
        }
    }

    fn running(tick: u64, run_start: u64) -> Sample {
        Sample {
            state: RUNNING_COROUTINE,
            tick,
            run_start,
        }
    }

    #[test]
    fn coroutine_run_is_requested_at_its_deadline_then_retried_at_a_constant_interval() {
        // No registered thread (tid 0): requests are made, no signal is sent.
        let slot = Slot::new(0, 1_000_000, true, Arc::new(Sysmon::new()));
        let (w, at) = scan(10).step(&slot, Watch::Idle, running(5, 0));
        assert_eq!(
            w,
            Watch::Coroutine {
                tick: 5,
                deadline: 1_000_000
            }
        );
        assert_eq!(at, Some(1_000_000));
        let (mut w, mut at) = scan(1_000_000).step(&slot, w, running(5, 0));
        assert_eq!(slot.sysmon.request_tick.load(Ordering::Relaxed), 5);
        assert_eq!(slot.metrics().preempt_requests, 1);
        let mut now = 1_000_000;
        for _ in 0..100 {
            assert_eq!(at, Some(now + RETRY_NS), "constant retry interval");
            now += RETRY_NS;
            (w, at) = scan(now).step(&slot, w, running(5, 0));
        }
        assert_eq!(
            slot.metrics().preempt_requests,
            1,
            "retries are not new requests"
        );
        // The run ended (preempted): nothing more to time.
        let (w, at) = scan(now).step(
            &slot,
            w,
            Sample {
                state: IDLE,
                tick: 6,
                run_start: 0,
            },
        );
        assert_eq!((w, at), (Watch::Idle, None));
    }

    #[test]
    fn retries_back_off_only_while_the_signal_is_in_flight() {
        let slot = Slot::new(0, 1_000_000, true, Arc::new(Sysmon::new()));
        let (w, _) = scan(10).step(&slot, Watch::Idle, running(5, 0));
        let (mut w, mut at) = scan(1_000_000).step(&slot, w, running(5, 0));
        slot.sysmon.signal_pending.store(true, Ordering::Relaxed);
        let mut waits = Vec::new();
        for _ in 0..5 {
            let now = at.unwrap();
            (w, at) = scan(now).step(&slot, w, running(5, 0));
            waits.push(at.unwrap() - now);
        }
        assert_eq!(waits, [300_000, 600_000, 1_200_000, 1_200_000, 1_200_000]);
        // Handled (and declined): back to the short interval.
        slot.sysmon.signal_pending.store(false, Ordering::Relaxed);
        let now = at.unwrap();
        let (_, at) = scan(now).step(&slot, w, running(5, 0));
        assert_eq!(at, Some(now + RETRY_NS));
    }

    #[test]
    fn without_async_preemption_a_request_is_not_retried() {
        let slot = Slot::new(0, 1_000_000, false, Arc::new(Sysmon::new()));
        let (w, _) = scan(10).step(&slot, Watch::Idle, running(3, 0));
        assert_eq!(
            w,
            Watch::Coroutine {
                tick: 3,
                deadline: 1_000_000
            }
        );
        let (w, at) = scan(2_000_000).step(&slot, w, running(3, 0));
        assert!(matches!(w, Watch::Requested { tick: 3, .. }));
        assert_eq!(at, None);
        assert!(!news(&slot, w), "the same run is no news");
    }

    #[test]
    fn a_long_future_poll_is_counted_once() {
        let slot = Slot::new(0, 1_000_000, true, Arc::new(Sysmon::new()));
        let fut = Sample {
            state: RUNNING_FUTURE,
            tick: 9,
            run_start: 0,
        };
        let (mut w, _) = scan(0).step(&slot, Watch::Idle, fut);
        for now in [500_000, 1_000_000, 2_000_000, 3_000_000] {
            (w, _) = scan(now).step(&slot, w, fut);
        }
        assert_eq!(slot.metrics().long_polls, 1);
    }
}
