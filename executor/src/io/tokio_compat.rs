//! tokio compatibility: a background tokio runtime per urgent runtime.
//!
//! tokio's resources (`tokio::net`, `tokio::time`, `tokio::io`'s
//! `AsyncFd`, ...) need a tokio *driver* to be running and a tokio *handle*
//! to be current when they are created. Each urgent runtime therefore owns a
//! multi-thread tokio runtime (`enable_all`; as many threads as urgent
//! workers unless `Builder::tokio_worker_threads` says otherwise; thread
//! name `<thread_name>-tokio`, `urgent-worker-tokio` by default),
//! created when the first worker starts, and every urgent worker thread and
//! every `block_on` enters its handle. A tokio socket or timer created inside
//! an urgent task (or a CPU task, through `urgent::wait`) registers with that
//! driver; the driver's thread wakes the urgent task's waker, and the task
//! runs on an urgent worker as usual.
//!
//! `tokio::spawn` (and `tokio::task::spawn_blocking`) inside urgent run on
//! that background runtime: tokio has no way to hand a spawned future to
//! another executor. Its threads are given the urgent runtime as their
//! current one, so `urgent::spawn`, `urgent::spawn_cpu` and `urgent::time`
//! work there too, which is what lets an axum handler (spawned by
//! `axum::serve` with `tokio::spawn`) offload work with `urgent::spawn_cpu`.
//!
//! Life cycle: `Uninit → Running → Shut`. Shutting the urgent runtime down
//! shuts the tokio one down in the background (never blocking, so it may be
//! done from any thread, even one of tokio's), which also ends the reference
//! cycle urgent runtime → tokio threads → urgent runtime.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};

use crate::runtime::context::{self, SetCurrentGuard};
use crate::runtime::scheduler::Shared;
use crate::runtime::Handle;

thread_local! {
    /// On tokio's threads: the urgent runtime they belong to.
    static TOKIO_THREAD_CURRENT: RefCell<Option<SetCurrentGuard>> = const { RefCell::new(None) };
}

enum State {
    Uninit,
    Running(tokio::runtime::Runtime),
    Shut,
}

pub(crate) struct TokioCompat {
    handle: OnceLock<tokio::runtime::Handle>,
    state: Mutex<State>,
}

impl TokioCompat {
    pub(crate) fn new() -> TokioCompat {
        TokioCompat {
            handle: OnceLock::new(),
            state: Mutex::new(State::Uninit),
        }
    }

    fn handle(&self, shared: &Arc<Shared>) -> Option<&tokio::runtime::Handle> {
        if let Some(h) = self.handle.get() {
            return Some(h);
        }
        let mut state = crate::sync::lock(&self.state);
        if let Some(h) = self.handle.get() {
            return Some(h);
        }
        if !matches!(*state, State::Uninit) || shared.is_shutdown() {
            return None;
        }
        let weak = Arc::downgrade(shared);
        let built = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(shared.config().tokio_worker_threads)
            .thread_name(format!("{}-tokio", shared.config().thread_name))
            .enable_all()
            .on_thread_start(move || {
                if let Some(shared) = weak.upgrade() {
                    let guard = context::set_current(Handle { shared });
                    TOKIO_THREAD_CURRENT.with(|c| *c.borrow_mut() = Some(guard));
                }
            })
            .on_thread_stop(|| {
                let guard = TOKIO_THREAD_CURRENT.try_with(|c| c.borrow_mut().take());
                drop(guard);
            })
            .build();
        match built {
            Ok(rt) => {
                let _ = self.handle.set(rt.handle().clone());
                *state = State::Running(rt);
                self.handle.get()
            }
            Err(e) => {
                eprintln!(
                    "urgent: could not start the background tokio runtime ({e}); tokio resources \
                     will not work inside this runtime"
                );
                *state = State::Shut;
                None
            }
        }
    }

    /// Makes the tokio handle current on this thread until the guard drops.
    pub(crate) fn enter<'a>(
        &'a self,
        shared: &Arc<Shared>,
    ) -> Option<tokio::runtime::EnterGuard<'a>> {
        self.handle(shared).map(|h| h.enter())
    }

    /// Tasks alive on the background runtime (`tokio::spawn` and
    /// `spawn_blocking` from inside urgent); 0 if it never started.
    pub(crate) fn alive_tasks(&self) -> usize {
        self.handle
            .get()
            .map_or(0, |h| h.metrics().num_alive_tasks())
    }

    pub(crate) fn shutdown(&self) {
        let prev = std::mem::replace(&mut *crate::sync::lock(&self.state), State::Shut);
        if let State::Running(rt) = prev {
            rt.shutdown_background();
        }
    }
}

impl Drop for TokioCompat {
    fn drop(&mut self) {
        self.shutdown();
    }
}
