//! The task state word and its transitions.
//!
//! | bit             | set by                                  | cleared by                        |
//! |-----------------|-----------------------------------------|-----------------------------------|
//! | `SCHEDULED`     | a wake, `abort`                          | the thread that starts running it |
//! | `RUNNING`       | the thread that pops it (or shutdown)    | that thread, after the poll       |
//! | `COMPLETE`      | the thread that finished or cancelled it | never                             |
//! | `CANCELLED`     | `abort`, shutdown                        | never                             |
//! | `JOIN_INTEREST` | spawn                                    | dropping the `JoinHandle`         |
//!
//! Invariants (checked by the loom model at the bottom of this file):
//! - Only the thread that set `RUNNING` touches the future.
//! - A task is in at most one run queue at a time: only the transition that
//!   sets `SCHEDULED` while neither `RUNNING` nor `COMPLETE` is set tells its
//!   caller to push it ([`State::notify`] returns true). A wake that arrives
//!   while the task runs only sets `SCHEDULED`; the runner sees it when the
//!   poll ends ([`State::end_poll`]) and requeues the task itself (a yield).
//!   So no wake-up is lost and none is doubled.
//! - `COMPLETE` is set exactly once, by the `RUNNING` holder, after the
//!   output (or the error) is stored; a join handle that sees it may read
//!   the output.

use crate::sync::atomic::{AtomicUsize, Ordering::*};

pub(super) const SCHEDULED: usize = 1;
pub(super) const RUNNING: usize = 2;
pub(super) const COMPLETE: usize = 4;
pub(super) const CANCELLED: usize = 8;
pub(super) const JOIN_INTEREST: usize = 16;

/// What [`State::end_poll`] found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum AfterPoll {
    /// Nobody woke the task during the poll: it waits for a wake.
    Idle,
    /// Woken during its own poll: the runner requeues it (a yield).
    Requeue,
    /// Aborted during its poll: the runner completes it as cancelled.
    Cancel,
}

pub(crate) struct State(AtomicUsize);

impl State {
    /// A new task: scheduled (its spawner queues it) with join interest.
    pub(super) fn new() -> State {
        State(AtomicUsize::new(SCHEDULED | JOIN_INTEREST))
    }

    pub(super) fn load(&self) -> usize {
        self.0.load(Acquire)
    }

    /// SCHEDULED → RUNNING. `Err` if the task is complete or already running
    /// (a shutdown claimed it to cancel it); the holder finishes it. `Ok`
    /// carries whether it was cancelled before it started.
    pub(super) fn start_poll(&self) -> Result<bool, ()> {
        self.0
            .fetch_update(AcqRel, Acquire, |s| {
                (s & (COMPLETE | RUNNING) == 0).then_some((s & !SCHEDULED) | RUNNING)
            })
            .map(|prev| prev & CANCELLED != 0)
            .map_err(drop)
    }

    /// RUNNING → idle after a `Pending` poll.
    pub(super) fn end_poll(&self) -> AfterPoll {
        match self.0.fetch_update(AcqRel, Acquire, |s| {
            (s & CANCELLED == 0).then_some(s & !RUNNING)
        }) {
            Err(_) => AfterPoll::Cancel,
            Ok(prev) if prev & SCHEDULED != 0 => AfterPoll::Requeue,
            Ok(_) => AfterPoll::Idle,
        }
    }

    /// Sets `SCHEDULED` (and `extra`, e.g. `CANCELLED`) unless complete or
    /// already set; true if the caller must push the task to a run queue
    /// (it was neither queued nor running).
    pub(super) fn notify(&self, extra: usize) -> bool {
        let prev = self.0.fetch_update(AcqRel, Acquire, |s| {
            if s & COMPLETE != 0 || (s & SCHEDULED != 0 && s & extra == extra) {
                None
            } else {
                Some(s | SCHEDULED | extra)
            }
        });
        matches!(prev, Ok(prev) if prev & (SCHEDULED | RUNNING) == 0)
    }

    /// RUNNING → COMPLETE; returns whether a `JoinHandle` still wants the
    /// output.
    pub(super) fn complete(&self) -> bool {
        let prev = self
            .0
            .fetch_update(AcqRel, Acquire, |s| Some((s & !RUNNING) | COMPLETE))
            .expect("fetch_update closure never fails");
        prev & JOIN_INTEREST != 0
    }

    /// At shutdown: claims an idle task (sets RUNNING | CANCELLED) so the
    /// caller may complete it; if it is running elsewhere, only marks it
    /// cancelled and returns false: the runner cancels it when its poll
    /// ends. One read-modify-write, so a poll ending concurrently either sees
    /// `CANCELLED` or ended before, and then the task is claimed here: a
    /// cancelled task is never left idle with nobody to complete it.
    pub(super) fn claim_for_shutdown(&self) -> bool {
        let prev = self.0.fetch_update(AcqRel, Acquire, |s| {
            if s & COMPLETE != 0 {
                None
            } else if s & RUNNING != 0 {
                Some(s | CANCELLED)
            } else {
                Some(s | RUNNING | CANCELLED)
            }
        });
        matches!(prev, Ok(p) if p & RUNNING == 0)
    }

    /// Drops join interest; true if the task is complete (the caller then
    /// drops the output nobody will read).
    pub(super) fn drop_join_interest(&self) -> bool {
        self.0.fetch_and(!JOIN_INTEREST, AcqRel) & COMPLETE != 0
    }

    pub(super) fn is_complete(&self) -> bool {
        self.load() & COMPLETE != 0
    }
}

/// Loom model of the state word: a wake racing the end of a poll, an abort
/// racing a wake, and a shutdown racing a poll. Run with
/// `RUSTFLAGS="--cfg loom" cargo test -p urgent-executor --no-default-features --lib --release loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize as Pushes;
    use loom::sync::Arc;

    /// A wake from another thread during the poll is never lost and never
    /// doubled: after the runner's `end_poll` and the waker's `notify`,
    /// exactly one of them queues the task (covers every interleaving of
    /// the waker's read-modify-write with the runner's two).
    #[test]
    fn wake_during_poll_queues_exactly_once() {
        loom::model(|| {
            let st = Arc::new(State::new());
            assert_eq!(st.start_poll(), Ok(false));
            let pushes = Arc::new(Pushes::new(0));
            let (st2, p2) = (st.clone(), pushes.clone());
            let waker = loom::thread::spawn(move || {
                if st2.notify(0) {
                    p2.fetch_add(1, Relaxed);
                }
            });
            if st.end_poll() == AfterPoll::Requeue {
                pushes.fetch_add(1, Relaxed);
            }
            waker.join().unwrap();
            assert_eq!(pushes.load(Relaxed), 1);
            // Whoever queued it: the task is scheduled and not running.
            assert_eq!(st.load() & (SCHEDULED | RUNNING), SCHEDULED);
        });
    }

    /// Two wakers on an idle task: exactly one pushes it.
    #[test]
    fn two_wakes_push_once() {
        loom::model(|| {
            let st = Arc::new(State::new());
            assert_eq!(st.start_poll(), Ok(false));
            assert_eq!(st.end_poll(), AfterPoll::Idle);
            let pushes = Arc::new(Pushes::new(0));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let (st, p) = (st.clone(), pushes.clone());
                    loom::thread::spawn(move || {
                        if st.notify(0) {
                            p.fetch_add(1, Relaxed);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(pushes.load(Relaxed), 1);
        });
    }

    /// A shutdown racing the end of a poll: exactly one of them completes
    /// the task (the runner, through `end_poll` → Cancel, or the shutdown's
    /// claim). A claim made of two steps (try to claim, else set CANCELLED)
    /// fails this model: the poll can end between the steps and leave the
    /// task idle, cancelled and never completed.
    #[test]
    fn shutdown_racing_poll_completes_once() {
        loom::model(|| {
            let st = Arc::new(State::new());
            assert_eq!(st.start_poll(), Ok(false));
            let completions = Arc::new(Pushes::new(0));
            let (st2, c2) = (st.clone(), completions.clone());
            let shut = loom::thread::spawn(move || {
                if st2.claim_for_shutdown() {
                    st2.complete();
                    c2.fetch_add(1, Relaxed);
                }
            });
            if st.end_poll() == AfterPoll::Cancel {
                st.complete();
                completions.fetch_add(1, Relaxed);
            }
            shut.join().unwrap();
            assert_eq!(completions.load(Relaxed), 1);
            assert!(st.is_complete());
        });
    }
}
