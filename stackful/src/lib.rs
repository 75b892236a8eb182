//! Stackful coroutines for the urgent runtime: stacks, context switch, the
//! coroutine type, and the guard-page overflow report.
//!
//! This crate knows nothing of executors, run queues or preemption signals.
//! The executor runs each CPU task (`spawn_cpu`) as a [`Coroutine`] on a
//! pooled [`Stack`]; the preempt crate's signal trampoline calls
//! [`suspend`]`(`[`SuspendKind::Preempted`]`)` on the coroutine's own stack,
//! and cooperative points (`wait`, `checkpoint`, `yield_now`) call
//! [`suspend`]`(`[`SuspendKind::Yield`]`)`. The switch itself is corosensei's:
//! a handful of instructions with balanced call/return (so the return-address
//! predictor keeps working) and DWARF CFI that lets unwinders, backtraces,
//! gdb and perf walk from coroutine frames into the frames of the resumer.
//!
//! # Cost
//!
//! `benches/coroutine.rs` at the workspace root measures it. The switch is
//! cheapest when [`suspend`] (which is `#[inline]`) ends up in the frame that
//! loops around it: the coroutine then resumes where the return-address
//! predictor expects. Suspending from a deeper, non-inlined function costs two
//! return mispredictions per round trip (several times the switch itself);
//! keep the path from a hot cooperative yield point to `suspend` inlinable.
//!
//! # States
//!
//! ```text
//!            resume                suspend(kind)
//!   new ───────────────▶ running ───────────────▶ suspended(Yield | Preempted)
//!    │                    │  ▲                          │        │
//!    │ drop               │  └──────── resume ──────────┘        │ drop
//!    ▼                    ▼ f returns / panics            ┌──────┴──────┐
//!  (closure dropped)    finished ── drop ──▶ stack back ◀─┘ Yield:      │ Preempted: frames
//!                                            to the pool    unwound     ▼ discarded, not unwound
//!                                                         stack quarantined: stays mapped,
//!                                                         never pooled or reused (leaked)
//! ```
//!
//! - **new**: created by [`Coroutine::new`]; the closure sits on the top of the
//!   coroutine's stack. Dropping it drops the closure.
//! - **running**: inside [`Coroutine::resume`] on some thread. Exactly one
//!   coroutine per thread is *current* (nested resumes stack up and unstack).
//! - **suspended(Yield)**: stopped inside a [`suspend`] call, a call site.
//!   Resumable on any thread; dropping it unwinds its stack (destructors run).
//! - **suspended(Preempted)**: stopped inside [`suspend`] called from the
//!   preemption trampoline, which interrupted arbitrary code. Resumable;
//!   dropping it discards its frames *without running destructors* (the
//!   interrupted PC is not a call site, so it cannot be unwound), and
//!   **quarantines its stack**: it stays mapped and is never pooled, reused
//!   or unmapped, because something may still point into it (a scoped thread
//!   writing into an array there, an intrusive waiter or timer entry pinned
//!   there, a thread-local pointing at a local). Reusing it would let those
//!   writes land in the next coroutine's frames. Both leaks are the
//!   documented price of aborting a preempted task; [`leaked_stacks`] counts
//!   the stacks.
//! - **finished**: the closure returned ([`Resume::Finished`]) or panicked
//!   ([`Resume::Panicked`], the panic was caught on the coroutine's stack).
//!   Resuming again panics.
//!
//! # Who may touch what
//!
//! - A [`Coroutine`] is owned by one party at a time (it is `Send`, not
//!   `Sync`): the executor moves it between its queues and resumes it with
//!   `&mut`. Its book-keeping record (parent link, current suspension kind,
//!   unwinding flag, panic payload, output flag, stack bounds) lives in 128
//!   bytes near the top of its own stack, right above corosensei's parent
//!   link (the `Yielder`), with the slot for the closure's return value
//!   above it, so none of them moves when the `Coroutine` value moves.
//! - Each thread has one *current* pointer holding the running coroutine's
//!   yielder (null on a plain thread); the record is at a fixed offset from
//!   it. On x86_64 Linux it is an 8-byte TLS slot defined in `arch/`,
//!   accessed with single `fs`-relative instructions; elsewhere a
//!   const-initialised `thread_local!`. It is written only by
//!   [`Coroutine::resume`] (set before the switch in, restored after the
//!   switch out, so nested resumes stack up) and by `Drop` around the forced
//!   unwind. [`suspend`] only reads it (with one instruction, or through an
//!   out-of-line call, so that a preemption cannot split the read), before
//!   switching out; after the switch it touches nothing, because by then the
//!   coroutine may run on another thread.
//! - The suspension kind is recorded by the resumer from the value that
//!   crossed the switch; the coroutine never writes its own record on the
//!   fast path. The panic payload slot and the return-value slot are written
//!   by the coroutine's root frame, once, and emptied by `resume` or
//!   [`Coroutine::take_output`] (or `Drop`).
//! - The SIGSEGV/SIGBUS handler reads the current pointer and the guard bounds
//!   next to it; nothing else. It allocates nothing and takes no lock. It
//!   runs on the alternate signal stack that [`init_thread`] installs (std's
//!   threads also have a small one).
//! - The signal layer (alternate stacks sized from `AT_MINSIGSTKSZ`, handler
//!   installation and chaining, the page size) lives here, in `signal.rs`,
//!   and is shared with the preempt crate through the hidden `sys` module.
//!
//! # Stack pools
//!
//! - A [`Stack`] is an `mmap(MAP_NORESERVE)` reservation with a guard page at
//!   its low end; its usable size is a page multiple between 16 KiB and 1 GiB.
//! - A stack belongs to exactly one of: a [`Stack`] value, a [`Coroutine`]
//!   (new, running, suspended or finished), the calling thread's pool, the
//!   global pool, or the quarantine (no owner: leaked for good, see
//!   suspended(Preempted) above). Pools hold no pointers into live
//!   coroutines.
//! - On entering a pool a stack's pages below its top 16 KiB (the warm
//!   prefix) are given back with `madvise(MADV_DONTNEED)`, so idle stacks cost
//!   at most the warm prefix each. The syscall is skipped when canary words in
//!   the lowest page of the warm prefix, written at the previous pooling, are
//!   intact (the stack was not used that deep since), and forced every 1024th
//!   pooling regardless. Pools are bounded (32 per thread, 256 global); beyond
//!   that stacks are unmapped (without the `madvise`). A thread's pool moves
//!   to the global pool when the thread exits.
//! - Guard pages are installed with `madvise(MADV_GUARD_INSTALL)` (Linux
//!   6.13+), which keeps a stack to one mapping (VMA) that merges with its
//!   neighbours: 100 000 stacks stay far below `vm.max_map_count`. Older
//!   kernels get `mprotect(PROT_NONE)`, two VMAs per stack.
//! - [`Stack::new`] looks in the thread's pool, then the global pool, for a
//!   stack of the same size before mapping a new one.
//!
//! # Example
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
//! use std::sync::Arc;
//! use urgent_stackful::{suspend, Coroutine, Resume, Stack, SuspendKind};
//!
//! urgent_stackful::init_thread();
//! let steps = Arc::new(AtomicUsize::new(0));
//! let s = steps.clone();
//! let mut co = Coroutine::new(Stack::new(256 * 1024).unwrap(), move || {
//!     s.fetch_add(1, Relaxed);
//!     suspend(SuspendKind::Yield);
//!     s.fetch_add(1, Relaxed);
//! });
//! assert!(matches!(co.resume(), Resume::Suspended(SuspendKind::Yield)));
//! assert_eq!(steps.load(Relaxed), 1);
//! // Resume on another thread.
//! let co = std::thread::spawn(move || {
//!     assert!(matches!(co.resume(), Resume::Finished));
//!     co
//! })
//! .join()
//! .unwrap();
//! assert!(co.is_finished());
//! assert_eq!(steps.load(Relaxed), 2);
//! ```

#![warn(missing_docs)]

#[cfg(not(unix))]
compile_error!("urgent-stackful supports Linux (x86_64, aarch64) only");

mod arch;
mod coroutine;
mod signal;
mod stack;
#[doc(hidden)]
pub mod sync;
#[doc(hidden)]
pub mod sys;

/// The context-switch crate underneath, for baseline benchmarks only; not
/// part of the API.
#[doc(hidden)]
pub use corosensei as __corosensei;

pub use coroutine::{
    current_stack_bounds, in_coroutine, suspend, Coroutine, Resume, SuspendKind, MAX_INLINE_CLOSURE,
};
pub use signal::{init_thread, thread_initialized, ALT_STACK_SIZE};
pub use stack::{
    leaked_stacks, pooled_stacks, validate_stack_size, Stack, DEFAULT_STACK_SIZE, MAX_STACK_SIZE,
    MIN_STACK_SIZE, WARM_PREFIX,
};
