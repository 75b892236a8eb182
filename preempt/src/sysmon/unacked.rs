//! Signals nobody acknowledges: sysmon's check that its SIGURGs reach
//! urgent's handler.
//!
//! Two things silently disable async preemption on a thread: a SIGURG
//! handler installed after urgent's (it replaces ours; `sigaction` keeps
//! one handler per signal), and a thread that blocks SIGURG (the signal
//! stays pending forever). Both look the same from sysmon: the slot's
//! `signal_pending` stays set and the handler's `ack` counter does not move.
//!
//! - Per slot, sysmon keeps an [`AckWatch`]: the `ack` it last saw and when
//!   it first saw a signal pending without `ack` moving. Any `ack` movement,
//!   or the pending flag cleared (handled, or a new thread registered),
//!   ends the episode.
//! - After [`UNACKED_NS`] of such an episode sysmon looks for the cause:
//!   is the installed SIGURG action still ours (`sigaction` query)? Does
//!   the thread block SIGURG (`SigBlk` in `/proc/self/task/<tid>/status`)?
//!   If one holds it says so on stderr (a replaced handler once per
//!   process, a blocking thread once per registration) and counts one
//!   `unacknowledged_signals`; sysmon then retries that slot's request only
//!   once a quantum. If neither holds (the thread is merely not running,
//!   e.g. stopped in a debugger), it looks again after another
//!   `UNACKED_NS`.

use crate::Slot;
use std::sync::atomic::Ordering;
use std::sync::Once;

/// How long a signal may stay unacknowledged before sysmon looks for a
/// cause (a delivered signal is handled within microseconds; a thread that
/// is runnable but not running for this long is rare, and is then told apart
/// by the cause check anyway).
pub(crate) const UNACKED_NS: u64 = 100_000_000;

/// sysmon's view of one slot's acknowledgements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AckWatch {
    ack: u64,
    /// When the current episode (signal pending, `ack` unchanged) began.
    since: Option<u64>,
    /// A cause was found and reported for this episode.
    pub(crate) diagnosed: bool,
}

/// Why signals go unacknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Replaced,
    Blocked,
}

impl AckWatch {
    /// Called at every scan for every slot.
    pub(crate) fn observe(&mut self, slot: &Slot, now: u64) {
        let ack = slot.handler.ack.load(Ordering::Relaxed);
        let pending = slot.sysmon.signal_pending.load(Ordering::Acquire);
        if ack != self.ack || !pending {
            *self = AckWatch {
                ack,
                ..AckWatch::default()
            };
            return;
        }
        let since = *self.since.get_or_insert(now);
        if self.diagnosed || now.saturating_sub(since) < UNACKED_NS {
            return;
        }
        match cause(slot) {
            Some(c) => {
                report(slot, c);
                slot.sysmon.unacknowledged.fetch_add(1, Ordering::Relaxed);
                self.diagnosed = true;
            }
            None => self.since = Some(now),
        }
    }
}

fn cause(slot: &Slot) -> Option<Cause> {
    if !crate::signal::still_installed() {
        return Some(Cause::Replaced);
    }
    let tid = slot.tid.load(Ordering::Acquire);
    (tid != 0 && blocks_sigurg(tid) == Some(true)).then_some(Cause::Blocked)
}

/// Whether thread `tid` of this process has SIGURG in its blocked mask.
fn blocks_sigurg(tid: i32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("SigBlk:"))?;
    let mask = u64::from_str_radix(hex.trim(), 16).ok()?;
    Some(mask & (1u64 << (libc::SIGURG - 1)) != 0)
}

fn thread_name(tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn report(slot: &Slot, cause: Cause) {
    match cause {
        Cause::Replaced => {
            static ONCE: Once = Once::new();
            ONCE.call_once(|| {
                eprintln!(
                    "urgent: another SIGURG handler replaced urgent's (it was installed after \
                     the runtime started), so CPU tasks are no longer preempted asynchronously, \
                     only at checkpoints; install that handler before starting the runtime \
                     (urgent chains to it) instead of after"
                )
            });
        }
        Cause::Blocked => {
            if !slot.sysmon.blocked_reported.swap(true, Ordering::Relaxed) {
                let tid = slot.tid.load(Ordering::Relaxed);
                eprintln!(
                    "urgent: thread {tid} ('{}') blocks SIGURG, so its CPU tasks cannot be \
                     preempted asynchronously, only at checkpoints; do not block SIGURG \
                     (pthread_sigmask/sigprocmask) on threads that run urgent's CPU tasks",
                    thread_name(tid)
                );
            }
        }
    }
}
