//! Unit tests of the whole-stack walk on real and forged stacks, and an
//! ignored benchmark of its cost (`walk_cost`).

use super::modules::{self, Table};
use super::unwind::{walk, Cache, Regs, Verdict};
use super::{Class, Reason};
use std::sync::OnceLock;

const ENTRY: &str = "urgent_preempt::safepoint::tests::pure::entry";

/// A table where `tests::pure::*` is user code and `pure::entry` is the
/// entry shim (the base of the walk).
fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| modules::build(&[], &[ENTRY.to_string()]).expect("test binary has .symtab"))
}

fn now() -> u64 {
    crate::now_ns()
}

/// Usable bounds of the current thread's stack.
fn own_stack() -> (usize, usize) {
    // SAFETY: pthread_getattr_np on the current thread fills `attr`, which
    // is destroyed after reading.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        assert_eq!(libc::pthread_attr_getstack(&attr, &mut addr, &mut size), 0);
        libc::pthread_attr_destroy(&mut attr);
        (addr as usize + 16 * 1024, addr as usize + size)
    }
}

/// Stand-ins for user code (all of `safepoint::tests` is pure by a
/// test-only rule in `classify`).
pub(super) mod pure {
    use super::Regs;

    /// The entry shim: calls `f` at `depth` extra frames with the registers
    /// of the deepest frame.
    #[inline(never)]
    pub fn entry(depth: usize, f: &mut dyn FnMut(Regs)) {
        recurse(depth, f);
        std::hint::black_box(());
    }

    #[inline(never)]
    pub fn recurse(depth: usize, f: &mut dyn FnMut(Regs)) {
        if depth == 0 {
            capture(f);
        } else {
            recurse(depth - 1, f);
        }
        std::hint::black_box(depth);
    }

    #[inline(never)]
    pub fn capture(f: &mut dyn FnMut(Regs)) {
        // SAFETY: getcontext fills a zeroed ucontext with this frame's
        // registers as of its return.
        let regs = unsafe {
            let mut uc: libc::ucontext_t = std::mem::zeroed();
            assert_eq!(libc::getcontext(&mut uc), 0);
            let g = &uc.uc_mcontext.gregs;
            Regs {
                pc: g[libc::REG_RIP as usize] as usize,
                sp: g[libc::REG_RSP as usize] as usize,
                bp: g[libc::REG_RBP as usize] as usize,
            }
        };
        f(regs);
        std::hint::black_box(());
    }

    /// Calls `f` from inside std's `Once` (thread-affine code).
    #[inline(never)]
    pub fn under_once(f: &mut dyn FnMut(Regs)) {
        let once = std::sync::Once::new();
        once.call_once(|| capture(f));
    }
}

#[test]
fn real_stack_up_to_the_entry_is_pure() {
    let (lo, hi) = own_stack();
    for depth in [0, 1, 16, 100] {
        // As in the handler: a walk that hits the time limit (cold cache,
        // or the OS descheduled us) is retried; the entries it computed
        // stay in the cache, so a retry gets further.
        let mut cache = Cache::new_boxed();
        let mut verdicts = Vec::new();
        pure::entry(depth, &mut |r| {
            for _ in 0..50 {
                let v = walk(table(), r, lo, hi, Some(&mut *cache), now);
                verdicts.push(v);
                if v == Verdict::Pure {
                    break;
                }
            }
            // Without a cache: the same answer, or the time limit.
            let v = walk(table(), r, lo, hi, None, now);
            assert!(
                matches!(v, Verdict::Pure | Verdict::Never(Reason::WalkLimit)),
                "{v:?}"
            );
        });
        assert_eq!(
            verdicts.last(),
            Some(&Verdict::Pure),
            "depth {depth}: {verdicts:?}"
        );
        assert!(verdicts
            .iter()
            .all(|v| matches!(v, Verdict::Pure | Verdict::Never(Reason::WalkLimit))));
    }
    // Deeper than the frame limit: never.
    let mut cache = Cache::new_boxed();
    let mut v = None;
    pure::entry(200, &mut |r| {
        for _ in 0..50 {
            v = Some(walk(table(), r, lo, hi, Some(&mut *cache), now));
        }
    });
    assert_eq!(v, Some(Verdict::Never(Reason::WalkLimit)));
}

#[test]
fn a_frame_under_std_sync_is_thread_affine() {
    let (lo, hi) = own_stack();
    let mut v = None;
    pure::entry(2, &mut |_| {
        pure::under_once(&mut |r| v = Some(trace(r, lo, hi)));
    });
    assert_eq!(v, Some(Verdict::Affine));
}

#[test]
fn a_denied_frame_anywhere_makes_the_stack_never() {
    let deny = ["urgent_preempt::safepoint::tests::pure::recurse".to_string()];
    let t = modules::build(&deny, &[ENTRY.to_string()]).unwrap();
    let (lo, hi) = own_stack();
    let mut v = None;
    // The PC is in `capture` (pure); `recurse` is further up.
    pure::entry(3, &mut |r| v = Some(walk(&t, r, lo, hi, None, now)));
    assert_eq!(v, Some(Verdict::Never(Reason::NeverFrame)));
}

#[test]
fn without_the_entry_shim_the_walk_ends_at_the_thread_base() {
    // libtest runs each test under its `__rust_begin_short_backtrace`.
    let t = modules::build(&[], &[]).unwrap();
    let (lo, hi) = own_stack();
    let mut v = None;
    pure::recurse(3, &mut |r| v = Some(walk(&t, r, lo, hi, None, now)));
    assert_eq!(v, Some(Verdict::Pure));
}

#[test]
fn unknown_and_never_pcs() {
    let (lo, hi) = own_stack();
    let sp_here = 0usize;
    let sp_here = &sp_here as *const usize as usize;
    let regs = |pc| Regs {
        pc,
        sp: sp_here,
        bp: 0,
    };
    // SAFETY: an anonymous mapping, only its address is used.
    let anon = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    } as usize;
    super::take_unknown_pc();
    assert_eq!(
        walk(table(), regs(anon + 16), lo, hi, None, now),
        Verdict::Never(Reason::UnknownPc)
    );
    assert!(super::take_unknown_pc(), "sysmon is told to rebuild");
    for name in [c"malloc", c"getpid", c"pthread_mutex_lock"] {
        // SAFETY: dlsym with a NUL-terminated name.
        let a = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
        assert_eq!(
            walk(table(), regs(a + 1), lo, hi, None, now),
            Verdict::Never(Reason::NeverFrame),
            "{name:?}"
        );
    }
    // The runtime itself.
    let own = crate::should_yield as *const () as usize;
    assert_eq!(
        table().find(own + 1).unwrap().class_of(own + 1),
        Class::Never
    );
    // SAFETY: unmapping the mapping made above.
    unsafe { libc::munmap(anon as *mut libc::c_void, 4096) };
}

/// xorshift64*.
fn rng(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Child half of `walk_never_reads_outside_the_stack`.
#[test]
fn garbage_child() {
    if std::env::var_os("URGENT_SAFEPOINT_GARBAGE_CHILD").is_none() {
        return;
    }
    let page = 4096usize;
    let data_pages = 4usize;
    // Guard page, data pages, guard page: any read outside the data faults.
    // SAFETY: fresh anonymous mapping; the guards are made inaccessible.
    let base = unsafe {
        let len = (data_pages + 2) * page;
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        libc::mprotect(p, page, libc::PROT_NONE);
        libc::mprotect(
            (p as usize + (data_pages + 1) * page) as *mut _,
            page,
            libc::PROT_NONE,
        );
        p as usize
    };
    let (lo, hi) = (base + page, base + (data_pages + 1) * page);
    let words = (hi - lo) / 8;
    // SAFETY: the data pages are ours, readable and writable.
    let stack = unsafe { std::slice::from_raw_parts_mut(lo as *mut usize, words) };
    let code: Vec<usize> = [
        pure::recurse as *const () as usize,
        pure::capture as *const () as usize,
        pure::entry as *const () as usize,
        rng as *const () as usize,
    ]
    .to_vec();
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut cache = Cache::new_boxed();
    let mut counts = [0u64; 3];
    for round in 0..20_000 {
        for w in stack.iter_mut() {
            let r = rng(&mut s);
            *w = match r % 4 {
                0 => code[(r >> 8) as usize % code.len()] + (r >> 20) as usize % 64,
                1 => lo + (r >> 8) as usize % (hi - lo + 64),
                2 => r as usize,
                _ => (r >> 40) as usize,
            };
        }
        let r = rng(&mut s);
        let regs = Regs {
            pc: code[r as usize % code.len()] + (r >> 8) as usize % 48,
            sp: lo + (rng(&mut s) as usize % (hi - lo + 32)).saturating_sub(16),
            bp: match r % 3 {
                0 => lo + (r >> 16) as usize % (hi - lo),
                1 => rng(&mut s) as usize,
                _ => 0,
            },
        };
        let c = (round % 2 == 0).then_some(&mut *cache);
        let v = walk(table(), regs, lo, hi, c, now);
        counts[match v {
            Verdict::Pure => 0,
            Verdict::Affine => 1,
            Verdict::Never(_) => 2,
        }] += 1;
    }
    println!("garbage walks: pure/affine/never = {counts:?}");
}

#[test]
fn walk_never_reads_outside_the_stack() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "safepoint::tests::garbage_child", "--nocapture"])
        .env("URGENT_SAFEPOINT_GARBAGE_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("garbage walks"),
        "the walk faulted on a forged stack: {:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Cost of one walk at 16 and 64 frames (`cargo test -p urgent-preempt
/// --release --lib walk_cost -- --ignored --nocapture`).
#[test]
#[ignore]
fn walk_cost() {
    let (lo, hi) = own_stack();
    for depth in [16usize, 64] {
        for cached in [false, true] {
            let mut cache = Cache::new_boxed();
            let mut ns: Vec<u64> = Vec::with_capacity(20_000);
            let mut limits = 0u64;
            pure::entry(depth - 3, &mut |r| {
                for _ in 0..20_000 {
                    let c = cached.then_some(&mut *cache);
                    let t = std::time::Instant::now();
                    let v = walk(table(), r, lo, hi, c, now);
                    ns.push(t.elapsed().as_nanos() as u64);
                    // The time limit can trip when the OS deschedules us.
                    assert!(
                        matches!(v, Verdict::Pure | Verdict::Never(Reason::WalkLimit)),
                        "{v:?}"
                    );
                    limits += u64::from(v != Verdict::Pure);
                }
            });
            ns.sort_unstable();
            println!(
                "walk {depth} frames, {}: p50 {} ns, p99 {} ns ({limits} time-limited)",
                if cached { "warm cache" } else { "no cache" },
                ns[ns.len() / 2],
                ns[ns.len() * 99 / 100]
            );
        }
    }
}

/// Name of the executable's function holding `pc` (test diagnostics).
fn name_of(pc: usize) -> String {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read("/proc/self/exe").unwrap();
    let file = object::File::parse(&*data).unwrap();
    let me = pure::entry as *const () as usize;
    let link = file
        .symbols()
        .find(|s| s.name().is_ok_and(|n| n.contains("4pure5entry")))
        .map(|s| s.address() as usize)
        .unwrap();
    // PIE: the load bias is where `entry` is minus its link-time address.
    let bias = me - link;
    for s in file.symbols() {
        let a = s.address() as usize + bias;
        if a <= pc && pc < a + s.size() as usize {
            return format!("{:#}", rustc_demangle::demangle(s.name().unwrap_or("?")));
        }
    }
    format!("{pc:#x} (not in the executable)")
}

/// Prints each frame the walk classifies (debugging aid for failures).
fn trace(r: Regs, lo: usize, hi: usize) -> Verdict {
    let mut frames = Vec::new();
    let v =
        super::unwind::walk_observed(table(), r, lo, hi, None, now, |pc, c| frames.push((pc, c)));
    for (pc, c) in frames {
        eprintln!("  {c:?} {}", name_of(pc));
    }
    v
}
