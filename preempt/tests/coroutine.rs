//! Preemption with real stackful coroutines (corosensei), the way the
//! executor uses this crate: the hook suspends the coroutine back to its
//! worker, which reports `coroutine_stopped` and later resumes it — on the
//! same thread, or on another one (Go's `migrate_preempted` semantics).

mod common;

use common::*;
use corosensei::stack::{DefaultStack, Stack};
use corosensei::{Coroutine, CoroutineResult, Yielder};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use urgent_preempt::{Config, Preemptor, Slot};

type Co = Coroutine<(), (), Vec<[u64; 17]>, DefaultStack>;

thread_local! {
    static YIELDER: Cell<*const Yielder<(), ()>> = const { Cell::new(std::ptr::null()) };
}

/// The executor-style hook: suspend the running coroutine.
fn suspend_hook() {
    let y = YIELDER.with(|c| c.get());
    assert!(!y.is_null(), "preempted outside a coroutine");
    // SAFETY: set by the worker to the yielder of the coroutine it resumes;
    // the coroutine (and so the yielder) is alive while it runs.
    unsafe { (*y).suspend(()) };
}

/// A coroutine running `rounds` x `asm_gpr_work(iters)`; returns it, its
/// stack bounds and the cell that will hold its yielder's address.
fn make_coroutine(rounds: usize, iters: u64) -> (Co, usize, usize, Arc<AtomicUsize>) {
    let stack = DefaultStack::new(256 * 1024).unwrap();
    let (lo, hi) = (stack.limit().get(), stack.base().get());
    let yielder = Arc::new(AtomicUsize::new(0));
    let y2 = yielder.clone();
    let co = Coroutine::with_stack(stack, move |y: &Yielder<(), ()>, ()| {
        y2.store(y as *const _ as usize, Ordering::Release);
        YIELDER.with(|c| c.set(y));
        (0..rounds).map(|_| asm_gpr_work(iters)).collect::<Vec<_>>()
    });
    (co, lo, hi, yielder)
}

/// Resumes `co` once on this thread as worker `slot`.
fn resume_once(
    slot: &Slot,
    co: &mut Co,
    lo: usize,
    hi: usize,
    y: &AtomicUsize,
) -> Option<Vec<[u64; 17]>> {
    YIELDER.with(|c| c.set(y.load(Ordering::Acquire) as *const _));
    slot.coroutine_started(lo, hi);
    let r = co.resume(());
    slot.coroutine_stopped();
    match r {
        CoroutineResult::Yield(()) => None,
        CoroutineResult::Return(v) => Some(v),
    }
}

fn start() -> Preemptor {
    urgent_preempt::set_preempt_hook(suspend_hook);
    Preemptor::start(
        Config {
            quantum: Duration::from_micros(100),
            ..Config::default()
        },
        2,
    )
    .unwrap()
}

#[test]
fn preempted_coroutine_resumes_bit_identically() {
    let _s = serial();
    let p = start();
    let reference = asm_gpr_work(1_000_000);
    let slot = p.slot(0);
    let (out, suspensions) = std::thread::spawn(move || {
        slot.register_current_thread();
        let (mut co, lo, hi, y) = make_coroutine(150, 1_000_000);
        let mut suspensions = 0u64;
        loop {
            match resume_once(&slot, &mut co, lo, hi, &y) {
                None => suspensions += 1,
                Some(v) => break (v, suspensions),
            }
        }
    })
    .join()
    .unwrap();
    let m = p.metrics();
    eprintln!("coroutine: {suspensions} suspensions, {m:?}");
    assert!(out.iter().all(|r| *r == reference));
    assert_eq!(suspensions, m.preemptions);
    assert!(m.preemptions >= 20, "{m:?}");
}

struct SendCo(Co, usize, usize, Arc<AtomicUsize>);
// SAFETY: the coroutine is only ever resumed by one thread at a time (handed
// over through a channel), and its body uses no thread-local state across
// preemption points except YIELDER, which each worker sets before resuming.
unsafe impl Send for SendCo {}

#[test]
fn preempted_coroutine_migrates_between_workers() {
    let _s = serial();
    let p = start();
    let reference = asm_gpr_work(1_000_000);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..2).map(|_| mpsc::channel::<SendCo>()).unzip();
    let (done_tx, done_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for (i, rx) in rxs.into_iter().enumerate() {
        let slot = p.slot(i);
        let other = txs[1 - i].clone();
        let done = done_tx.clone();
        handles.push(std::thread::spawn(move || {
            slot.register_current_thread();
            let mut resumes = 0u64;
            while let Ok(SendCo(mut co, lo, hi, y)) = rx.recv() {
                resumes += 1;
                match resume_once(&slot, &mut co, lo, hi, &y) {
                    None => {
                        let _ = other.send(SendCo(co, lo, hi, y));
                    }
                    Some(v) => {
                        done.send(v).unwrap();
                        break;
                    }
                }
            }
            resumes
        }));
    }
    let (co, lo, hi, y) = make_coroutine(150, 1_000_000);
    txs[0].send(SendCo(co, lo, hi, y)).unwrap();
    let out = done_rx.recv_timeout(Duration::from_secs(120)).unwrap();
    drop(txs);
    let resumes: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let m = p.metrics();
    eprintln!("migrating coroutine: resumes per worker {resumes:?}, {m:?}");
    assert!(out.iter().all(|r| *r == reference));
    assert!(resumes.iter().all(|&r| r >= 5), "{resumes:?}");
}

/// DESIGN §8: integer/f64 and AVX2 state bit-identical through ≥ 100k
/// preemptions at a 100 µs quantum. Takes 10+ s of CPU, so opt-in:
/// `cargo test -p urgent-preempt --test coroutine -- --ignored`.
#[test]
#[ignore]
fn hundred_thousand_preemptions() {
    let _s = serial();
    let p = start();
    let avx = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    let gpr_ref = asm_gpr_work(200_000);
    // SAFETY: only called when AVX2 and FMA are available.
    let avx_ref = avx.then(|| unsafe { avx_fma_work(200_000) });
    let slot = p.slot(0);
    let (bad, suspensions) = std::thread::spawn(move || {
        slot.register_current_thread();
        let stack = DefaultStack::new(256 * 1024).unwrap();
        let (lo, hi) = (stack.limit().get(), stack.base().get());
        let y = Arc::new(AtomicUsize::new(0));
        let y2 = y.clone();
        let mut co: Coroutine<(), (), u64, DefaultStack> =
            Coroutine::with_stack(stack, move |yl: &Yielder<(), ()>, ()| {
                y2.store(yl as *const _ as usize, Ordering::Release);
                YIELDER.with(|c| c.set(yl));
                let mut bad = 0u64;
                let end = std::time::Instant::now() + Duration::from_secs(600);
                while PREEMPTIONS.load(Ordering::Relaxed) < 100_000
                    && std::time::Instant::now() < end
                {
                    bad += u64::from(asm_gpr_work(200_000) != gpr_ref);
                    if let Some(r) = avx_ref {
                        // SAFETY: AVX2 and FMA were detected.
                        bad += u64::from(unsafe { avx_fma_work(200_000) } != r);
                    }
                }
                bad
            });
        let mut suspensions = 0u64;
        loop {
            YIELDER.with(|c| c.set(y.load(Ordering::Acquire) as *const _));
            slot.coroutine_started(lo, hi);
            let r = co.resume(());
            slot.coroutine_stopped();
            PREEMPTIONS.store(slot.metrics().preemptions, Ordering::Relaxed);
            match r {
                CoroutineResult::Yield(()) => suspensions += 1,
                CoroutineResult::Return(bad) => break (bad, suspensions),
            }
        }
    })
    .join()
    .unwrap();
    eprintln!("100k: {suspensions} suspensions, {:?}", p.metrics());
    assert_eq!(bad, 0);
    assert!(suspensions >= 100_000);
}

static PREEMPTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
