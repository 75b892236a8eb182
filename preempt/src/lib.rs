//! Signal-driven preemption of CPU-heavy coroutines, in the manner of Go
//! 1.14+'s asynchronous preemption (`runtime/preempt.go`,
//! `signal_unix.go`, `proc.go` `retake`/`preemptone`).
//!
//! # What this crate does
//!
//! A runtime creates one [`Preemptor`] with one [`Slot`] per worker thread;
//! a thread created later gets its own with [`Preemptor::add_slot`] (slots
//! belong to threads).
//! Workers tell their slot what they are doing (running a coroutine, polling a
//! plain future, idle). A monitor thread, *sysmon* (`urgent-sysmon`), notices
//! a coroutine that has run longer than its quantum and asks it to stop: it
//! sets a preempt request (which cooperative checkpoints see through
//! [`should_yield`]) and, when async preemption is on, sends SIGURG to the
//! worker thread. The signal handler checks that the interrupted instruction
//! is an *async safe point* and, if so, rewrites the signal context so that,
//! when the handler returns, the thread "calls" the yield trampoline. The
//! trampoline saves every register and the whole extended (x87/SSE/AVX/
//! AVX-512) state, calls the hook the executor installed with
//! [`set_preempt_hook`] (which suspends the coroutine back to its worker), and
//! on resumption restores everything and returns into the interrupted code as
//! if nothing had happened. The crate knows nothing of run queues.
//!
//! # Slot states
//!
//! A slot's `state` is one of
//!
//! * `IDLE` — the worker runs runtime code or sleeps; never signalled;
//! * `FUTURE` — the worker polls a plain future on its own stack; never
//!   signalled, but a poll still running after a quantum counts as a
//!   `long_poll` (Go-style sampling: same `tick` at two samples a quantum
//!   apart);
//! * `COROUTINE` — the worker runs a coroutine whose usable stack is
//!   `[stack_lo, stack_hi)`, started at `run_start`; preemptible.
//!
//! `tick` is bumped at every transition (`coroutine_started`,
//! `coroutine_stopped`, `future_started`, `idle`), so "same tick" means "the
//! same run is still going on" (Go's `schedtick`/`schedwhen`).
//!
//! # Who writes what
//!
//! | field | written by | read by |
//! |---|---|---|
//! | `tid` | worker (`register_current_thread`), cleared at thread exit | sysmon (tgkill target) |
//! | `tick`, `state`, `run_start`, `stack_lo/hi` | worker only | sysmon, handler, `should_yield` |
//! | `request_tick` | sysmon (sets it to the overrunning run's tick), any thread via `diagnostics::request_preempt`; handler (clears it when it pushes the call) | handler, `should_yield` |
//! | `signal_pending` | sysmon (before tgkill); handler (clears it) | sysmon (coalescing, Go's `signalPending`) |
//! | `ack` | handler (every SIGURG on the thread, Go's `preemptGen`) | anyone (diagnostics) |
//! | `pushed` | handler (set when it pushes the call); trampoline (clears it before the hook) | handler |
//! | `preempt_requests`, `long_polls`, `unacknowledged` | sysmon | metrics |
//! | `blocked_reported` | sysmon (sets it); worker (clears it at registration) | sysmon |
//! | `preempt_declined` | handler | metrics |
//! | `preemptions` | trampoline | metrics |
//!
//! The worker, sysmon and handler fields sit on separate cache lines. The
//! request is the tick it targets rather than a boolean, so it becomes stale by
//! itself the moment the worker moves on: no "clear the request" store on the
//! hot path, and no race in which sysmon's late request hits the *next* run.
//!
//! # The protocol, step by step
//!
//! 1. **Register.** Each worker thread calls [`Slot::register_current_thread`]
//!    once: it records the thread id, publishes the slot in a const-initialised
//!    thread-local (the only thing the handler can safely read) and makes sure
//!    the thread has an alternate signal stack (the stackful crate's, sized
//!    from `AT_MINSIGSTKSZ` plus 64 KiB for the handlers), so the kernel's
//!    signal frame never lands on a small coroutine stack.
//! 2. **Run.** Before resuming a coroutine the worker calls
//!    [`Slot::coroutine_started`]: stack bounds, `run_start` (CLOCK_MONOTONIC
//!    ns) and the bumped `tick` are stored first, then `state = COROUTINE`
//!    (release), then a SeqCst fence and a load of sysmon's `idle` flag:
//!    Dekker-style with sysmon's own fence, so either sysmon's re-scan sees
//!    the new run or the worker sees `idle` and wakes sysmon (the handshake
//!    is `sysmon/gate.rs`, model-checked by `tests/loom_sysmon.rs`).
//! 3. **sysmon** is deadline driven (the per-slot state machine is in
//!    `sysmon/mod.rs`). It scans all slots; reads are
//!    seqlock-style (tick, state, run_start, tick again; a changed tick means
//!    "look again"). It sleeps until the earliest `run_start + quantum` of the
//!    coroutines running (or an earlier retry), samples every quantum while
//!    some worker polls a future, and otherwise sleeps with no deadline on a
//!    condvar after publishing `idle = true` and re-scanning; only then does
//!    `coroutine_started` (or `future_started`) pay for a wake-up. A new
//!    coroutine's deadline is never earlier than the one sysmon already sleeps
//!    for (all quanta are equal), so nothing else needs to wake it.
//! 4. **Request.** At the deadline, same tick and still `COROUTINE`: store
//!    `request_tick = tick` (release), count `preempt_requests`, and when async
//!    preemption is on and no signal is pending, set `signal_pending` and
//!    `tgkill(pid, tid, SIGURG)`. Then re-check every 150 µs (a constant
//!    interval): while the same run is still going on (the handler declined,
//!    or the signal is still in flight), request again and signal again if no
//!    signal is pending. With async preemption off only the request is made;
//!    `should_yield` reports it.
//! 5. **Handler** (raw `sigaction(SIGURG, SA_SIGINFO|SA_ONSTACK|SA_RESTART)`):
//!    first chains to the previously installed SIGURG handler (SIG_DFL/SIG_IGN
//!    mean ignore), then, on a thread with a slot, bumps `ack`, clears
//!    `signal_pending`, and if `request_tick == tick` and the state is
//!    `COROUTINE`, checks the safe point (Go's `isAsyncSafePoint`): async
//!    preemption enabled for the slot, a hook installed, no call already
//!    pushed, the thread's no-preempt counter ([`disable`]) zero, RSP inside
//!    `[stack_lo, stack_hi)` with room for the red zone, the return address,
//!    the trampoline frame, the XSAVE area and 16 KiB for the hook, and then
//!    the *whole stack* of the coroutine classified pure (see *Symbols*): it
//!    walks from the interrupted RIP/RSP/RBP up to the coroutine's entry
//!    frame with the pre-parsed unwind tables, every frame's function must be
//!    pure. If all hold it sets `pushed`, clears the request and pushes a
//!    call; otherwise it counts `preempt_declined` and the decline's reason
//!    ([`Declines`]: no-preempt, headroom, a thread-affine or never frame, an
//!    unknown PC, missing unwind info, a bad stack, the walk limit), and
//!    sysmon's retry comes 150 µs later. A PC in no known object also raises
//!    a flag on which sysmon rebuilds the module table once the loader's
//!    object counters moved (a library `dlopen`ed after start).
//!    Threads without a slot are left alone. A SIGURG may be spurious (Go's
//!    rule): anything sent by others is acknowledged and otherwise ignored
//!    unless a request is pending, and then it merely preempts a little early.
//! 6. **Push a call** (Go's `pushCall`): RSP -= 128 (the System V red zone),
//!    push the interrupted RIP, RIP = trampoline.
//! 7. **Trampoline** (Go's `asyncPreempt`, `arch/x86_64.rs`): saves RFLAGS,
//!    RBP and all other GPRs, `cld`, saves the full XCR0 state with
//!    XSAVEC/XSAVE into a 64-byte-aligned area sized from CPUID leaf 0xD (header
//!    zeroed first), calls the Rust side, which clears `pushed`, counts
//!    `preemptions` and calls the hook. The hook suspends the coroutine; the
//!    worker calls [`Slot::coroutine_stopped`] and schedules something else.
//!    When the coroutine is resumed (`coroutine_started` again) the hook
//!    returns; the trampoline XRSTORs, pops everything and `ret 128`s into the
//!    interrupted instruction. CFI (with `.cfi_signal_frame`) lets unwinders,
//!    gdb and perf walk through the frame.
//!
//! # Why the handler is async-signal-safe
//!
//! It touches only: atomics in the slot (kept alive by the registration,
//! which unpublishes the pointer before dropping its `Arc`), const-initialised
//! `Cell` thread-locals without destructors, each touched at registration
//! (plain `%fs`-relative accesses in an executable; in a `cdylib`
//! `__tls_get_addr` may allocate on a thread's first access, which then
//! happens outside the handler), the module table (built before the handler
//! is installed or republished with a release store and never freed,
//! searched without allocating), the thread's unwind cache (allocated at
//! registration), the coroutine's stack (bounds-checked reads) and the
//! ucontext. It takes no locks, allocates nothing, and preserves `errno`.
//!
//! # Symbols
//!
//! Where a task may be stopped is decided by the whole stack, not the
//! interrupted PC alone (DESIGN §5.4, `safepoint/`): a user `Display` impl
//! called from `println!` runs under std frames that hold the stdout lock,
//! and an LTO build may inline runtime code that holds a lock into an
//! allowed shim, so no PC-only rule can be sound.
//!
//! * **The module table** (`safepoint/modules.rs`) is built outside the
//!   handler, at [`Preemptor::start`] and again when sysmon finds a PC in no
//!   known object and the loader's counters moved: every object that
//!   `dl_iterate_phdr` reports (the executable, shared objects, a `cdylib` or
//!   `dlopen`ed library holding this crate, the vDSO) with its executable
//!   range, its unwind tables parsed from its loaded `PT_GNU_EH_FRAME`
//!   segment ([`gimli`]), and the class of each function from the object's
//!   `.symtab` (else `.dynsym`; [`object`] + [`rustc_demangle`]). It is
//!   published with a release store and never freed (a replaced table is
//!   leaked: a handler may still walk it). Without a `.symtab` in the object
//!   holding this crate async preemption is off (one warning on stderr).
//! * **Classes, by name, on whole path segments** (`safepoint/classify.rs`):
//!   *pure* by default (user code, `core`, `alloc`, std's stateless parts
//!   such as the clock and `catch_unwind`'s wrappers, `compiler_builtins`,
//!   crates that hold no runtime or thread-local state), *thread-affine*
//!   (std's stdio, sync, thread, panicking, env, fs, net...; `once_cell`,
//!   `lazy_static`, `thread_local`), *never* (the runtime itself, tokio, mio,
//!   crossbeam, parking_lot, lock_api, tracing, futures' executors,
//!   corosensei outside its start frames, unwinding, allocators including
//!   any `GlobalAlloc` impl, [`Config::deny_prefixes`], and every symbol that
//!   does not demangle as Rust, so a statically linked libc's malloc
//!   internals are covered). C leaves that keep no state (`memcpy`,
//!   `strlen`, libm, `clock_gettime`...) are pure: outside the executable
//!   they are resolved with `dlsym` (which applies the IFUNC choice) and
//!   allowed over the extent of their covering FDE; the vDSO's clock entry
//!   points are pure. *Base* frames end the walk: the executor's entry shim
//!   registered with [`allow_prefix`] (a generic runtime function
//!   instantiated with a user closure is named after the runtime function,
//!   so it must be allowed explicitly), a thread's
//!   `__rust_begin_short_backtrace`, corosensei's start frames. For a
//!   qualified path `<T as Trait>::f` the owner is `T` when it is a named
//!   path (user impls of std traits are user code), else the trait.
//! * **The walk** (`safepoint/unwind.rs`, in the handler): one acquire load
//!   of the table, then frame by frame: find the object holding the PC
//!   (none: *never*, and the rebuild flag), the function's class (cached per
//!   thread in a cache allocated at registration, keyed by the table's
//!   generation), the CFA rule from the FDE; every read is bounds-checked
//!   against `[stack_lo, stack_hi)`; no frame-pointer fallback (a garbage
//!   return address must not classify as pure); at most 128 frames and a
//!   time limit, past which the answer is *never*. The stack's class is the
//!   worst of its frames: pure (or base) pushes the call; thread-affine
//!   declines until a thread-park path exists; never declines.
//!
//! # Integration (what the executor does)
//!
//! 1. Once per runtime: [`allow_prefix`] for the CPU-task entry shim (an
//!    `#[inline(never)]` generic fn that only calls the user closure), then
//!    [`set_preempt_hook`] with a fn that suspends the current coroutine with
//!    a "preempted" marker, then [`Preemptor::start`] (`Config::quantum`,
//!    `async_preempt`, `deny_prefixes` from the builder).
//! 2. On each worker thread, before anything else: `slot(i)`,
//!    [`Slot::register_current_thread`].
//! 3. Around every coroutine resume: [`Slot::coroutine_started`] with the
//!    coroutine stack's usable `[limit, base)`, resume, then
//!    [`Slot::coroutine_stopped`] — whether it finished, suspended
//!    cooperatively or was preempted. Around plain future polls:
//!    [`Slot::future_started`], and [`Slot::idle`] when the poll returns or the
//!    worker parks.
//! 4. `checkpoint()` calls [`should_yield`] and suspends if it is true.
//! 5. A coroutine suspended by the hook must be resumed only through step 3,
//!    on its own worker unless the user opted into migration (see DESIGN
//!    §6: thread-local addresses live in registers). It cannot be unwound:
//!    the interrupted PC is not a call site, so dropping it must free the
//!    stack without unwinding.
//! 6. A [`NoPreempt`] guard is per thread: a coroutine must not carry one
//!    across a cooperative suspension that may migrate it.
//! 7. The executor's own blocking calls retry on `EINTR`: SIGURG may arrive
//!    at any time (spuriously too), and `SA_RESTART` does not cover
//!    `epoll_wait`, `nanosleep` or futex waits with a timeout.

#![warn(missing_docs)]
// Without async preemption some handler-side fields and helpers are unused.
#![cfg_attr(
    not(all(target_arch = "x86_64", target_os = "linux")),
    allow(dead_code)
)]

mod arch;
mod safepoint;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod signal;
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
#[path = "signal_stub.rs"]
mod signal;
mod symtab;
mod sysmon;

use std::cell::{Cell, RefCell};
use std::io;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use arch::{min_stack_size, MIN_TASK_FRAMES};
pub use signal::HOOK_HEADROOM;

/// Configuration of a [`Preemptor`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Time slice of a coroutine before sysmon requests its preemption.
    pub quantum: Duration,
    /// Whether to interrupt overrunning coroutines with SIGURG. When false (or
    /// no `.symtab`, or not x86_64 Linux) only the cooperative request seen by
    /// [`should_yield`] is made. (The executor's builder sets it from
    /// `URGENT_ASYNC_PREEMPT`; this crate reads no environment variable.)
    pub async_preempt: bool,
    /// Extra demangled-path prefixes never to preempt in
    /// (`Builder::no_preempt_in`). They win over [`allow_prefix`].
    pub deny_prefixes: Vec<String>,
    /// How long a thread may stay inside one poll of a future, or blocked in
    /// the kernel inside a coroutine run that sysmon could not preempt,
    /// before sysmon calls the retake handler
    /// ([`Preemptor::set_retake_handler`]; Go's `retake` of a P in a system
    /// call). `None`: never.
    pub retake_after: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            quantum: Duration::from_millis(10),
            async_preempt: true,
            deny_prefixes: Vec::new(),
            retake_after: None,
        }
    }
}

/// What the handler does with a preemption request at a point that holds
/// thread-affine state (DESIGN §5.4), per slot: [`Slot::set_thread_park`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ThreadPark {
    /// Decline it (sysmon retries soon); only pure points are preempted.
    Off = 0,
    /// Push the call with a park request ([`take_park_request`] is then
    /// true in the hook): the executor parks the thread with the task on it.
    AtThreadAffinePoints = 1,
    /// Every preemption is a park request, pure points too (the strict
    /// mode, for programs whose own `thread_local!` state must never be seen
    /// by another task).
    Always = 2,
}

/// Counters of a [`Preemptor`] (sums over its slots) or of one [`Slot`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PreemptMetrics {
    /// Runs found over their quantum by sysmon (one per overrunning run).
    pub preempt_requests: u64,
    /// Calls pushed by the handler that reached the trampoline.
    pub preemptions: u64,
    /// Signals that found a pending request but no safe point.
    pub preempt_declined: u64,
    /// Plain-future polls seen still running a quantum later.
    pub long_polls: u64,
    /// Times sysmon found its SIGURGs to a slot unacknowledged for 100 ms
    /// because another SIGURG handler replaced urgent's or the thread
    /// blocks SIGURG (one per episode; the cause is printed on stderr).
    /// Async preemption cannot work there; cooperative requests still do.
    pub unacknowledged_signals: u64,
    /// `preempt_declined`, split by the reason the handler declined.
    pub declines: Declines,
}

/// Declined preemption requests by reason (see DESIGN-derived docs in
/// `docs/architecture.md`): a frame that needs a thread park, one that must
/// never be stopped, a walk that could not finish, and so on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Declines {
    /// Async preemption off for the slot, no hook, or a call already pushed.
    pub not_armed: u64,
    /// A `NoPreempt` guard (or a runtime critical section) was alive.
    pub no_preempt: u64,
    /// The stack pointer was outside the coroutine stack or too close to its
    /// limit.
    pub stack_headroom: u64,
    /// A frame held thread-affine state (std's stdio, sync, thread,
    /// panicking...); a thread park would be needed.
    pub thread_affine: u64,
    /// A frame must never be stopped (allocator, libc internals, unwinder,
    /// the runtime, a `no_preempt_in` prefix).
    pub never_frame: u64,
    /// The interrupted PC was in no known object.
    pub unknown_pc: u64,
    /// A frame had no usable unwind information.
    pub no_unwind_info: u64,
    /// The walk left the stack or met a garbage return address.
    pub bad_stack: u64,
    /// The walk hit its frame or time limit.
    pub walk_limit: u64,
    /// No module table was published.
    pub no_table: u64,
}

impl std::ops::AddAssign for Declines {
    fn add_assign(&mut self, o: Self) {
        self.not_armed += o.not_armed;
        self.no_preempt += o.no_preempt;
        self.stack_headroom += o.stack_headroom;
        self.thread_affine += o.thread_affine;
        self.never_frame += o.never_frame;
        self.unknown_pc += o.unknown_pc;
        self.no_unwind_info += o.no_unwind_info;
        self.bad_stack += o.bad_stack;
        self.walk_limit += o.walk_limit;
        self.no_table += o.no_table;
    }
}

impl std::ops::AddAssign for PreemptMetrics {
    fn add_assign(&mut self, o: Self) {
        self.declines += o.declines;
        self.preempt_requests += o.preempt_requests;
        self.preemptions += o.preemptions;
        self.preempt_declined += o.preempt_declined;
        self.long_polls += o.long_polls;
        self.unacknowledged_signals += o.unacknowledged_signals;
    }
}

/// Slots [`Preemptor::add_slot`] can hand out at once, beyond the workers'.
const MAX_ADDED_SLOTS: usize = 1024;

pub(crate) const IDLE: u8 = 0;
pub(crate) const RUNNING_FUTURE: u8 = 1;
pub(crate) const RUNNING_COROUTINE: u8 = 2;

/// Aligns its content to two cache lines (adjacent-line prefetch).
#[repr(align(128))]
pub(crate) struct CachePadded<T>(T);

impl<T> Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Fields written by the worker only.
pub(crate) struct WorkerLine {
    pub(crate) tick: AtomicU64,
    pub(crate) run_start: AtomicU64,
    pub(crate) state: AtomicU8,
    pub(crate) stack_lo: AtomicUsize,
    pub(crate) stack_hi: AtomicUsize,
}

/// Fields written mostly by sysmon.
pub(crate) struct SysmonLine {
    pub(crate) request_tick: AtomicU64,
    pub(crate) signal_pending: AtomicBool,
    pub(crate) preempt_requests: AtomicU64,
    pub(crate) long_polls: AtomicU64,
    pub(crate) unacknowledged: AtomicU64,
    /// The thread was reported on stderr as blocking SIGURG.
    pub(crate) blocked_reported: AtomicBool,
}

/// Fields written by the signal handler / trampoline.
pub(crate) struct HandlerLine {
    pub(crate) ack: AtomicU64,
    pub(crate) pushed: AtomicBool,
    pub(crate) declined: AtomicU64,
    pub(crate) preemptions: AtomicU64,
    pub(crate) decline_reasons: safepoint::DeclineCounters,
    /// The call being pushed is a park request, a [`Park`] (read and
    /// cleared by the hook through [`take_park_request`]).
    pub(crate) park: AtomicU8,
}

/// One worker's preemption slot. See the crate docs for the protocol.
pub struct Slot {
    index: usize,
    pub(crate) tid: AtomicI32,
    quantum_ns: u64,
    pub(crate) async_enabled: AtomicBool,
    /// A [`ThreadPark`], set by the executor.
    pub(crate) park_mode: AtomicU8,
    monitor: Arc<sysmon::Sysmon>,
    /// Written by the worker thread only.
    pub(crate) worker: CachePadded<WorkerLine>,
    /// Written mostly by sysmon.
    pub(crate) sysmon: CachePadded<SysmonLine>,
    /// Written by the signal handler and the trampoline.
    pub(crate) handler: CachePadded<HandlerLine>,
}

thread_local! {
    /// The slot of this worker thread, read by the signal handler. Const
    /// initialised and without destructor: async-signal-safe to read.
    static CURRENT: Cell<*const Slot> = const { Cell::new(std::ptr::null()) };
    /// Nesting depth of `NoPreempt` guards on this thread.
    pub(crate) static NO_PREEMPT: Cell<u32> = const { Cell::new(0) };
    /// Keeps the registered slot alive; unpublishes it at thread exit.
    static REGISTRATION: RefCell<Option<Registration>> = const { RefCell::new(None) };
}

struct Registration(Arc<Slot>);

impl Drop for Registration {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(std::ptr::null()));
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        self.0.tid.store(0, Ordering::Release);
        self.0.worker.state.store(IDLE, Ordering::Release);
    }
}

/// The current thread's slot pointer (null on non-worker threads).
pub(crate) fn current_slot() -> *const Slot {
    CURRENT.with(|c| c.get())
}

/// CLOCK_MONOTONIC in nanoseconds (vDSO, no system call).
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(target_os = "linux")]
fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

#[cfg(not(target_os = "linux"))]
fn gettid() -> i32 {
    1
}

impl Slot {
    fn new(
        index: usize,
        quantum_ns: u64,
        async_enabled: bool,
        monitor: Arc<sysmon::Sysmon>,
    ) -> Slot {
        Slot {
            index,
            tid: AtomicI32::new(0),
            quantum_ns,
            async_enabled: AtomicBool::new(async_enabled),
            park_mode: AtomicU8::new(ThreadPark::Off as u8),
            monitor,
            worker: CachePadded(WorkerLine {
                tick: AtomicU64::new(0),
                run_start: AtomicU64::new(0),
                state: AtomicU8::new(IDLE),
                stack_lo: AtomicUsize::new(0),
                stack_hi: AtomicUsize::new(0),
            }),
            sysmon: CachePadded(SysmonLine {
                request_tick: AtomicU64::new(0),
                signal_pending: AtomicBool::new(false),
                preempt_requests: AtomicU64::new(0),
                long_polls: AtomicU64::new(0),
                unacknowledged: AtomicU64::new(0),
                blocked_reported: AtomicBool::new(false),
            }),
            handler: CachePadded(HandlerLine {
                ack: AtomicU64::new(0),
                pushed: AtomicBool::new(false),
                declined: AtomicU64::new(0),
                preemptions: AtomicU64::new(0),
                decline_reasons: safepoint::DeclineCounters::new(),
                park: AtomicU8::new(Park::No as u8),
            }),
        }
    }

    /// Called once on the worker thread, before its first
    /// `coroutine_started`: records the thread id, publishes the slot in the
    /// thread-local the handler reads, and ensures the thread has an
    /// alternate signal stack (`urgent_stackful::sys::ensure_alt_stack`,
    /// sized from `AT_MINSIGSTKSZ` plus what the handlers need). If none can
    /// be set up, async preemption is turned off for this slot (cooperative
    /// requests remain). Registering another slot replaces the previous
    /// registration.
    pub fn register_current_thread(self: &Arc<Self>) {
        // The handler reads the thread's panic count (a thread-local):
        // touch it here, outside any handler.
        let _ = std::thread::panicking();
        if urgent_stackful::sys::ensure_alt_stack().is_err() {
            self.async_enabled.store(false, Ordering::Relaxed);
        }
        // A new thread: a signal still marked pending went to the previous
        // one (or nowhere), and it has not been reported.
        self.sysmon.signal_pending.store(false, Ordering::Relaxed);
        self.sysmon.blocked_reported.store(false, Ordering::Relaxed);
        self.tid.store(gettid(), Ordering::Release);
        safepoint::prepare_thread();
        REGISTRATION.with(|r| {
            let mut r = r.borrow_mut();
            // Drop the previous registration first (it clears CURRENT).
            *r = None;
            CURRENT.with(|c| c.set(Arc::as_ptr(self)));
            *r = Some(Registration(self.clone()));
        });
    }

    /// The worker is about to resume a coroutine whose usable stack is
    /// `[stack_lo, stack_hi)`: records the run start, bumps the tick (which also
    /// invalidates any older request), marks the coroutine running, and wakes
    /// sysmon if it sleeps with no deadline.
    pub fn coroutine_started(&self, stack_lo: usize, stack_hi: usize) {
        let w = &self.worker;
        w.stack_lo.store(stack_lo, Ordering::Relaxed);
        w.stack_hi.store(stack_hi, Ordering::Relaxed);
        w.run_start.store(now_ns(), Ordering::Relaxed);
        w.tick.store(
            w.tick.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Release,
        );
        w.state.store(RUNNING_COROUTINE, Ordering::Release);
        // The Dekker half of sysmon's idle sleep (fence, then `idle`).
        self.monitor.gate.published();
    }

    /// The coroutine returned control to the worker (finished, suspended or
    /// preempted): clears the running state and bumps the tick.
    pub fn coroutine_stopped(&self) {
        let w = &self.worker;
        w.state.store(IDLE, Ordering::Release);
        w.tick.store(
            w.tick.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Release,
        );
    }

    /// The worker starts polling a plain future: bump tick, `state = FUTURE`.
    /// No clock read. Wakes sysmon if it sleeps with no deadline (a relaxed
    /// check: a wake-up lost to a race costs at most one `long_polls` count).
    pub fn future_started(&self) {
        let w = &self.worker;
        w.tick.store(
            w.tick.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
        w.state.store(RUNNING_FUTURE, Ordering::Release);
        self.monitor.gate.hint();
    }

    /// The worker runs runtime code or goes to sleep: bump tick, `state = IDLE`.
    pub fn idle(&self) {
        let w = &self.worker;
        w.tick.store(
            w.tick.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
        w.state.store(IDLE, Ordering::Release);
    }

    /// Asks for the preemption of the coroutine this slot runs now, without
    /// waiting for its quantum: sets the request for the current run (seen
    /// by [`should_yield`]) and, with async preemption on, signals the
    /// worker. Returns false if no coroutine is running. Counts as a
    /// `preempt_request`. Callable from any thread; sysmon retries as usual
    /// if the handler declines. Only tests and benches use it today
    /// ([`diagnostics::request_preempt`]).
    pub(crate) fn request_preempt(&self) -> bool {
        let Some(sysmon::Sample {
            state: RUNNING_COROUTINE,
            tick,
            ..
        }) = sysmon::snapshot(self)
        else {
            return false;
        };
        self.sysmon.request_tick.store(tick, Ordering::Release);
        self.sysmon.preempt_requests.fetch_add(1, Ordering::Relaxed);
        if self.async_enabled() && gettid() != self.tid.load(Ordering::Relaxed) {
            sysmon::send_signal(self, std::process::id() as i32);
            // Let sysmon schedule retries in case the handler declines.
            self.monitor.gate.kick();
        }
        true
    }

    /// What the worker is doing now, for diagnostics (`URGENT_SCHEDTRACE`):
    /// a racy snapshot, never used for decisions.
    pub fn activity(&self) -> Activity {
        match self.worker.state.load(Ordering::Relaxed) {
            RUNNING_FUTURE => Activity::Future,
            RUNNING_COROUTINE => {
                let start = self.worker.run_start.load(Ordering::Relaxed);
                Activity::Coroutine(Duration::from_nanos(now_ns().saturating_sub(start)))
            }
            _ => Activity::Idle,
        }
    }

    /// Index of this slot in its [`Preemptor`] (workers first, then the
    /// slots added later).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Counters of this slot alone.
    pub fn metrics(&self) -> PreemptMetrics {
        PreemptMetrics {
            preempt_requests: self.sysmon.preempt_requests.load(Ordering::Relaxed),
            preemptions: self.handler.preemptions.load(Ordering::Relaxed),
            preempt_declined: self.handler.declined.load(Ordering::Relaxed),
            long_polls: self.sysmon.long_polls.load(Ordering::Relaxed),
            unacknowledged_signals: self.sysmon.unacknowledged.load(Ordering::Relaxed),
            declines: self.handler.decline_reasons.declines(),
        }
    }

    /// What the handler does at points that hold thread-affine state (and,
    /// with [`ThreadPark::Always`], at every point).
    pub fn set_thread_park(&self, mode: ThreadPark) {
        self.park_mode.store(mode as u8, Ordering::Relaxed);
    }

    /// Number of SIGURGs the handler has seen on this slot's thread (Go's
    /// `preemptGen`).
    pub fn acks(&self) -> u64 {
        self.handler.ack.load(Ordering::Relaxed)
    }

    /// Whether async preemption is enabled for this slot.
    pub fn async_enabled(&self) -> bool {
        self.async_enabled.load(Ordering::Relaxed)
    }

    fn should_yield(&self) -> bool {
        let tick = self.worker.tick.load(Ordering::Relaxed);
        if self.worker.state.load(Ordering::Relaxed) != RUNNING_COROUTINE {
            return false;
        }
        self.sysmon.request_tick.load(Ordering::Relaxed) == tick
            || now_ns().saturating_sub(self.worker.run_start.load(Ordering::Relaxed))
                >= self.quantum_ns
    }
}

/// What a worker is doing, from [`Slot::activity`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// Runtime code, or parked.
    Idle,
    /// Polling a plain future.
    Future,
    /// Running a coroutine, for this long so far.
    Coroutine(Duration),
}

/// One per runtime: owns the slots (one per worker thread, plus any added
/// later with [`Preemptor::add_slot`]) and the sysmon thread
/// (`urgent-sysmon`). Dropping it stops sysmon (slots stay valid for threads
/// still holding them, but nobody watches them any more).
pub struct Preemptor {
    slots: Arc<sysmon::SlotList>,
    workers: usize,
    quantum_ns: u64,
    monitor: Arc<sysmon::Sysmon>,
    sysmon: Option<JoinHandle<()>>,
    async_enabled: bool,
    quantum: Duration,
}

impl Preemptor {
    /// Creates `workers` slots and spawns sysmon. When async preemption is on
    /// (`config.async_preempt`, target supported, `.symtab` present) it also builds the symbol table (once per process, rebuilt if
    /// new prefixes were registered) and installs the SIGURG handler (once per
    /// process, chained to the previous one).
    ///
    /// Errors: `InvalidInput` for zero workers or a zero quantum; the OS error
    /// if sigaction or the thread spawn fails.
    pub fn start(config: Config, workers: usize) -> io::Result<Preemptor> {
        if workers == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "urgent-preempt: zero workers",
            ));
        }
        if config.quantum.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "urgent-preempt: zero quantum",
            ));
        }
        if config.async_preempt && !arch::SUPPORTED {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                eprintln!(
                    "urgent: asynchronous preemption is implemented on x86_64 Linux only; on this \
                     target CPU tasks are preempted cooperatively (urgent::task::checkpoint, \
                     urgent::wait)"
                )
            });
        }
        let mut async_enabled = config.async_preempt && arch::SUPPORTED;
        if async_enabled {
            symtab::add_prefixes(&config.deny_prefixes, &[]);
            async_enabled = symtab::ensure_built();
        }
        if async_enabled {
            signal::install()?;
        }
        let quantum_ns = u64::try_from(config.quantum.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let retake_ns = config
            .retake_after
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1));
        let monitor = Arc::new(sysmon::Sysmon::new());
        let slots = Arc::new(sysmon::SlotList::with_capacity(workers + MAX_ADDED_SLOTS));
        for _ in 0..workers {
            slots.add(None, |i| {
                Arc::new(Slot::new(i, quantum_ns, async_enabled, monitor.clone()))
            });
        }
        let sysmon = {
            let slots = slots.clone();
            let monitor = monitor.clone();
            std::thread::Builder::new()
                .name("urgent-sysmon".into())
                .stack_size(256 * 1024)
                .spawn(move || sysmon::run(slots, monitor, quantum_ns, async_enabled, retake_ns))?
        };
        Ok(Preemptor {
            slots,
            workers,
            quantum_ns,
            monitor,
            sysmon: Some(sysmon),
            async_enabled,
            quantum: config.quantum,
        })
    }

    /// The slot of worker `worker`, one of the `workers` given to
    /// [`Preemptor::start`] (panics if out of range).
    pub fn slot(&self, worker: usize) -> Arc<Slot> {
        assert!(
            worker < self.workers,
            "urgent-preempt: no worker {worker} (the preemptor has {} workers); \
             threads added later get their slot from Preemptor::add_slot",
            self.workers
        );
        self.slots
            .get(worker)
            .expect("worker slots are added at start")
            .clone()
    }

    /// A slot for a thread created after the start (e.g. a spare thread
    /// that takes over a worker's core), watched by sysmon like the workers'
    /// slots. The thread registers it with [`Slot::register_current_thread`]
    /// and drops it when it exits; the slot is then handed out again by a
    /// later call. Its index ([`Slot::index`]) is at least the number of
    /// workers.
    ///
    /// Errors: more than 1024 added slots held at once (`OutOfMemory`,
    /// naming the limit).
    pub fn add_slot(&self) -> io::Result<Arc<Slot>> {
        let async_enabled = self.async_enabled;
        let (quantum_ns, monitor) = (self.quantum_ns, &self.monitor);
        self.slots
            .add(Some(self.workers), |i| {
                Arc::new(Slot::new(i, quantum_ns, async_enabled, monitor.clone()))
            })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!(
                        "urgent-preempt: all {MAX_ADDED_SLOTS} added slots are held by live \
                         threads; drop the slots of threads that exited"
                    ),
                )
            })
    }

    /// Counters summed over all slots (added ones included).
    pub fn metrics(&self) -> PreemptMetrics {
        let mut m = PreemptMetrics::default();
        for s in self.slots.iter() {
            m += s.metrics();
        }
        m
    }

    /// Whether this preemptor sends signals (async preemption on).
    pub fn async_enabled(&self) -> bool {
        self.async_enabled
    }

    /// Sets the function sysmon calls, with a slot's index, when that
    /// slot's thread should lose its core ([`Config::retake_after`]): stuck
    /// in one poll of a future, or blocked in the kernel inside a coroutine
    /// run it could not preempt. It runs on the sysmon thread: keep it short
    /// and non-blocking. Only the first call takes effect.
    pub fn set_retake_handler(&self, handler: impl Fn(usize) + Send + Sync + 'static) {
        let _ = self.monitor.retake.set(Box::new(handler));
    }

    /// Retakes handed to the retake handler so far.
    pub fn retakes(&self) -> u64 {
        self.monitor.retakes.load(Ordering::Relaxed)
    }

    /// The configured quantum.
    pub fn quantum(&self) -> Duration {
        self.quantum
    }
}

impl Drop for Preemptor {
    fn drop(&mut self) {
        self.monitor.gate.shutdown();
        if let Some(t) = self.sysmon.take() {
            // The retake handler runs on sysmon and may drop the last
            // reference to the executor that owns this preemptor: sysmon
            // cannot join itself; it exits on its own after the shutdown.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

pub(crate) static HOOK: AtomicUsize = AtomicUsize::new(0);

/// Sets (once, or again with the same semantics) the function the trampoline
/// calls on the coroutine's stack to suspend the preempted coroutine, e.g. a
/// fn calling `urgent_stackful::suspend(SuspendKind::Preempted)`. When it
/// returns the trampoline restores all state and resumes the interrupted
/// code. Until a hook is set the handler declines every preemption.
pub fn set_preempt_hook(hook: fn()) {
    HOOK.store(hook as usize, Ordering::Release);
}

/// Allows async preemption in functions whose demangled name (or owning
/// path) starts with `prefix`, overriding the built-in deny list (but not
/// [`Config::deny_prefixes`]). For the executor's CPU-task entry shim, into
/// which user closures are inlined, e.g.
/// `allow_prefix("urgent_executor::cpu::run_user_closure")`. Takes effect at
/// the next [`Preemptor::start`] (the table is rebuilt if needed).
pub fn allow_prefix(prefix: &str) {
    symtab::add_prefixes(&[], &[prefix.to_string()]);
}

/// For `urgent::task::checkpoint()`: true if this thread's slot has a pending
/// preempt request for the running coroutine or the coroutine has run past
/// its quantum. An atomic load or two and at most a clock read (vDSO). False
/// on non-worker threads and when no coroutine is running.
pub fn should_yield() -> bool {
    let p = current_slot();
    if p.is_null() {
        return false;
    }
    // SAFETY: the registration keeps the slot alive while CURRENT points at it.
    unsafe { &*p }.should_yield()
}

/// What the handler asked of the preempt hook, from [`take_park_request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Park {
    /// Switch coroutines: the point is pure.
    No = 0,
    /// Park the thread although the point is pure ([`ThreadPark::Always`]):
    /// switching instead would be safe.
    AtPurePoint = 1,
    /// Park the thread: the point holds thread-affine state (a frame of
    /// std's sync, stdio, thread, panicking... modules, or a running panic);
    /// another task must not run on this thread until the task moves on.
    AtAffinePoint = 2,
}

/// In the preempt hook: what the handler asked for (a coroutine switch or a
/// thread park). Clears the request. [`Park::No`] on threads without a
/// slot.
pub fn take_park_request() -> Park {
    let p = current_slot();
    if p.is_null() {
        return Park::No;
    }
    // SAFETY: the registration keeps the slot alive while CURRENT points at it.
    match unsafe { &*p }
        .handler
        .park
        .swap(Park::No as u8, Ordering::Relaxed)
    {
        1 => Park::AtPurePoint,
        2 => Park::AtAffinePoint,
        _ => Park::No,
    }
}

/// Whether the current thread is a worker running a coroutine right now
/// (for `urgent::preempt::is_cpu_task()`; false on other threads).
pub fn in_coroutine() -> bool {
    let p = current_slot();
    // SAFETY: the registration keeps the slot alive while CURRENT points at it.
    !p.is_null() && unsafe { &*p }.worker.state.load(Ordering::Relaxed) == RUNNING_COROUTINE
}

/// Nestable guard: no async preemption on this thread while it lives
/// (cooperative yields are the caller's business). `!Send`: it must be
/// dropped on the thread that created it.
#[must_use = "preemption is re-enabled when the guard is dropped"]
pub struct NoPreempt {
    _not_send: PhantomData<*const ()>,
}

/// Disables async preemption on this thread until the guard is dropped.
pub fn disable() -> NoPreempt {
    NO_PREEMPT.with(|c| c.set(c.get() + 1));
    // The handler runs on this thread: order the increment before the
    // guarded code's memory accesses.
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    NoPreempt {
        _not_send: PhantomData,
    }
}

impl Drop for NoPreempt {
    fn drop(&mut self) {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        NO_PREEMPT.with(|c| c.set(c.get().saturating_sub(1)));
    }
}

/// Whether a [`NoPreempt`] guard is alive on this thread.
pub fn is_disabled() -> bool {
    NO_PREEMPT.with(|c| c.get()) != 0
}

/// Test and benchmark hooks: not part of the API, may change at any time.
#[doc(hidden)]
pub mod diagnostics {
    use crate::{arch, symtab, Preemptor, Slot};
    use std::sync::atomic::Ordering;

    /// Whether async preemption can work in this process: x86_64 Linux and
    /// an executable with a `.symtab` (builds the symbol table on first call;
    /// warns once on stderr if it is missing).
    pub fn async_preempt_supported() -> bool {
        arch::SUPPORTED && symtab::ensure_built()
    }

    /// `Some(true)` if `pc` lies in a function of the executable in which
    /// async preemption is allowed, `Some(false)` if in a denied one, `None`
    /// if outside every known function or no table is built yet (call
    /// [`async_preempt_supported`] first).
    pub fn pc_preemptible(pc: usize) -> Option<bool> {
        symtab::lookup(pc)
    }

    /// Number of functions in the symbol table (0 if none).
    pub fn symbol_count() -> usize {
        symtab::len()
    }

    /// Size in bytes of the extended-state area the trampoline saves and the
    /// instruction used ("xsavec", "xsave", "fxsave"; "none" if
    /// unsupported). Valid after a preemptor with async preemption started.
    pub fn xsave_info() -> (usize, &'static str) {
        (arch::xsave_size(), arch::xsave_mode_name())
    }

    /// Whether `name` (a demangled, hash-free function path) would be
    /// allowed for async preemption given the built-in list and the prefixes
    /// registered so far.
    pub fn name_preemptible(name: &str, extra_deny: &[String]) -> bool {
        symtab::name_allowed_with_registered(name, extra_deny)
    }

    /// Asks for the preemption of the coroutine `slot` runs now, without
    /// waiting for its quantum: sets the request for the current run (seen
    /// by [`should_yield`](crate::should_yield)) and, with async preemption
    /// on, signals the worker. Returns false if no coroutine is running.
    /// Counts as a `preempt_request`. Callable from any thread; sysmon
    /// retries as usual if the handler declines.
    pub fn request_preempt(slot: &Slot) -> bool {
        slot.request_preempt()
    }

    /// How many times `p`'s sysmon thread has woken up and scanned the
    /// slots.
    pub fn sysmon_wakeups(p: &Preemptor) -> u64 {
        p.monitor.wakeups.load(Ordering::Relaxed)
    }
}
