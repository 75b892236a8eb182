//! The whole-stack walk done inside the signal handler: a minimal x86_64 CFA
//! interpreter over the module table's pre-parsed `.eh_frame_hdr`/`.eh_frame`
//! (gimli does the DWARF CFI evaluation, into a fixed-size context on the
//! handler's stack: no allocation).
//!
//! Rules of the walk (DESIGN §5.4):
//! * frame 0 is the interrupted PC itself; every later frame is looked up at
//!   `return address - 1` (the call instruction);
//! * a PC in no known object is *never* (and flags the table for a rebuild);
//! * a frame whose function is *never* ends the walk with *never*; *base*
//!   (an entry shim, `__rust_begin_short_backtrace`, a coroutine's start
//!   function) ends it with the worst class seen so far;
//! * only CFA = RSP/RBP + offset, return address saved at CFA + n, RBP saved
//!   at CFA + n or unchanged are followed: any other rule (DWARF
//!   expressions, as in corosensei's stack-switch CFI that leads into the
//!   worker's stack) is *never*; there is no frame-pointer fallback;
//! * every stack read is bounds-checked against the coroutine's stack
//!   `[lo, hi)`, the CFA must grow strictly, and leaving the stack is
//!   *never*: garbage return addresses cannot classify as pure;
//! * at most [`MAX_FRAMES`] frames and [`MAX_WALK_NS`]: past either, *never*.
//!
//! A per-thread direct-mapped cache (allocated by `prepare_thread`, outside
//! the handler) remembers, per PC, the class and the unwind rule, keyed by
//! the table's generation; it only saves time, the walk is the same without.

use super::classify::Class;
use super::modules::{Module, Table};
use super::Reason;
use gimli::{
    CfaRule, EhFrame, Register, RegisterRule, UnwindContext, UnwindContextStorage, UnwindSection,
    X86_64,
};

/// Frames walked at most before giving up (*never*).
pub(crate) const MAX_FRAMES: usize = 128;
/// Time spent walking at most before giving up (*never*). A cold walk
/// costs about 0.25 µs per frame in release and 5 µs in debug builds (gimli
/// unoptimised); a warm one (per-thread cache) 10 ns and 80 ns. A walk cut
/// short keeps the entries it computed, so the retry gets further.
pub(crate) const MAX_WALK_NS: u64 = if cfg!(debug_assertions) {
    300_000
} else {
    100_000
};

/// gimli storage kept inline (on the handler's stack): x86_64 CFI never
/// tracks more than the 17 GPRs + RA, and DW_CFA_remember_state nests
/// shallowly.
pub(crate) struct InlineStore;

impl<T: gimli::ReaderOffset> UnwindContextStorage<T> for InlineStore {
    type Rules = [(Register, RegisterRule<T>); 24];
    type Stack = [gimli::UnwindTableRow<T, Self>; 4];
}

pub(crate) type Ctx = UnwindContext<usize, InlineStore>;

const RA_UNDEFINED: i32 = i32::MIN;

/// How to get from a frame to its caller.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Rule {
    /// CFA = (RBP if set, else RSP) + cfa_off.
    cfa_rbp: bool,
    cfa_off: i32,
    /// Return address at CFA + ra_off, or `RA_UNDEFINED` (outermost frame).
    ra_off: i32,
    /// RBP of the caller saved at CFA + bp_off (else unchanged).
    bp_saved: bool,
    bp_off: i32,
}

/// Interprets the CFI row of `pc` in `m`.
fn compute_rule(m: &Module, ctx: &mut Ctx, pc: usize) -> Result<Rule, Reason> {
    let eh = m.eh.as_ref().ok_or(Reason::NoUnwindInfo)?;
    let table = eh.hdr.table().ok_or(Reason::NoUnwindInfo)?;
    let row = table
        .unwind_info_for_address(
            &eh.frame,
            &eh.bases,
            ctx,
            pc as u64,
            EhFrame::cie_from_offset,
        )
        .map_err(|_| Reason::NoUnwindInfo)?;
    let mut rule = Rule::default();
    match *row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            rule.cfa_rbp = match register {
                X86_64::RSP => false,
                X86_64::RBP => true,
                _ => return Err(Reason::NoUnwindInfo),
            };
            rule.cfa_off = i32::try_from(offset).map_err(|_| Reason::NoUnwindInfo)?;
        }
        CfaRule::Expression(_) => return Err(Reason::NoUnwindInfo),
    }
    rule.ra_off = match row.register(X86_64::RA) {
        RegisterRule::Offset(n) => i32::try_from(n)
            .ok()
            .filter(|&n| n != RA_UNDEFINED)
            .ok_or(Reason::NoUnwindInfo)?,
        RegisterRule::Undefined => RA_UNDEFINED,
        _ => return Err(Reason::NoUnwindInfo),
    };
    match row.register(X86_64::RBP) {
        RegisterRule::Offset(n) => {
            rule.bp_saved = true;
            rule.bp_off = i32::try_from(n).map_err(|_| Reason::NoUnwindInfo)?;
        }
        RegisterRule::SameValue | RegisterRule::Undefined => {}
        _ => return Err(Reason::NoUnwindInfo),
    }
    Ok(rule)
}

/// One cache line's worth of what is known about a PC.
#[derive(Clone, Copy, Default)]
struct Entry {
    key: usize,
    generation: u32,
    class: u8,
    rule: Rule,
}

const CACHE_SLOTS: usize = 2048;

/// The per-thread cache (see the module docs).
pub(crate) struct Cache {
    entries: [Entry; CACHE_SLOTS],
}

impl Cache {
    pub(crate) fn new_boxed() -> Box<Cache> {
        Box::new(Cache {
            entries: [Entry::default(); CACHE_SLOTS],
        })
    }

    fn slot(key: usize) -> usize {
        (key ^ (key >> 11) ^ (key >> 23)) % CACHE_SLOTS
    }
}

/// Registers of the frame being unwound.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Regs {
    pub(crate) pc: usize,
    pub(crate) sp: usize,
    pub(crate) bp: usize,
}

/// Reads the word at `addr` if `[addr, addr + 8)` lies inside `[lo, hi)`.
#[inline]
fn read_word(addr: usize, lo: usize, hi: usize) -> Option<usize> {
    if addr < lo || addr.checked_add(8)? > hi || !addr.is_multiple_of(8) {
        return None;
    }
    // SAFETY: the caller promises `[lo, hi)` is mapped readable memory (the
    // coroutine's stack); the word lies inside it and is aligned.
    Some(unsafe { std::ptr::read_volatile(addr as *const usize) })
}

/// What the walk found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every frame up to the base is pure.
    Pure,
    /// Some frame is thread-affine, none is never.
    Affine,
    /// Decline.
    Never(Reason),
}

/// Walks the stack from `regs` (the interrupted state) up to the base of the
/// coroutine whose stack is `[lo, hi)`, classifying every frame.
///
/// Async-signal-safe: no allocation, no lock; reads only the table (leaked,
/// immutable), `cache`, and stack words inside `[lo, hi)`. The caller must
/// guarantee that `[lo, hi)` is readable memory.
pub(crate) fn walk(
    table: &Table,
    regs: Regs,
    lo: usize,
    hi: usize,
    cache: Option<&mut Cache>,
    now_ns: fn() -> u64,
) -> Verdict {
    walk_observed(table, regs, lo, hi, cache, now_ns, |_, _| {})
}

/// [`walk`], calling `observe(lookup_pc, class)` for each frame classified
/// (tests and diagnostics).
pub(crate) fn walk_observed(
    table: &Table,
    mut regs: Regs,
    lo: usize,
    hi: usize,
    mut cache: Option<&mut Cache>,
    now_ns: fn() -> u64,
    mut observe: impl FnMut(usize, Class),
) -> Verdict {
    let start = now_ns();
    let mut worst = Class::Pure;
    let mut first = true;
    for n in 0..MAX_FRAMES {
        if n % 16 == 15 && now_ns().saturating_sub(start) > MAX_WALK_NS {
            return Verdict::Never(Reason::WalkLimit);
        }
        let key = if first {
            regs.pc
        } else {
            regs.pc.wrapping_sub(1)
        };
        let cached = cache.as_deref().and_then(|c| {
            let e = &c.entries[Cache::slot(key)];
            (e.key == key && e.generation == table.generation).then_some((e.class, e.rule))
        });
        let (class, rule) = match cached {
            Some((class, rule)) => (Class::from_u8(class), rule),
            None => {
                let Some(m) = table.find(key) else {
                    super::note_unknown_pc();
                    return Verdict::Never(Reason::UnknownPc);
                };
                let class = m.class_of(key);
                let rule = match class {
                    Class::Never => {
                        observe(key, class);
                        return Verdict::Never(Reason::NeverFrame);
                    }
                    Class::Base => Rule::default(),
                    _ => {
                        let mut ctx = Ctx::new_in();
                        match compute_rule(m, &mut ctx, key) {
                            Ok(r) => r,
                            Err(why) => return Verdict::Never(why),
                        }
                    }
                };
                if let Some(c) = cache.as_deref_mut() {
                    c.entries[Cache::slot(key)] = Entry {
                        key,
                        generation: table.generation,
                        class: class as u8,
                        rule,
                    };
                }
                (class, rule)
            }
        };
        observe(key, class);
        match class {
            Class::Never => return Verdict::Never(Reason::NeverFrame),
            Class::Base => break,
            c => worst = worst.max(c),
        }
        // Unwind one frame.
        let base = if rule.cfa_rbp { regs.bp } else { regs.sp };
        let Some(cfa) = base.checked_add_signed(rule.cfa_off as isize) else {
            return Verdict::Never(Reason::BadStack);
        };
        if cfa <= regs.sp || cfa > hi {
            return Verdict::Never(Reason::BadStack);
        }
        if rule.ra_off == RA_UNDEFINED {
            // The outermost frame of a thread (`_start`, `clone`): no base
            // frame was seen, so this is not a coroutine we understand.
            return Verdict::Never(Reason::BadStack);
        }
        let ra = cfa
            .checked_add_signed(rule.ra_off as isize)
            .and_then(|a| read_word(a, lo, hi));
        let Some(ra) = ra.filter(|&ra| ra > 1) else {
            return Verdict::Never(Reason::BadStack);
        };
        if rule.bp_saved {
            match cfa
                .checked_add_signed(rule.bp_off as isize)
                .and_then(|a| read_word(a, lo, hi))
            {
                Some(bp) => regs.bp = bp,
                None => return Verdict::Never(Reason::BadStack),
            }
        }
        regs.sp = cfa;
        regs.pc = ra;
        first = false;
        if n + 1 == MAX_FRAMES {
            return Verdict::Never(Reason::WalkLimit);
        }
    }
    match worst {
        Class::Affine => Verdict::Affine,
        _ => Verdict::Pure,
    }
}
