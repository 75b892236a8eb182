//! Guards the one private detail of corosensei that urgent-stackful relies
//! on: where corosensei keeps a coroutine's *parent link*, the word a
//! `&Yielder` points at. `stackful/src/coroutine.rs` finds the running
//! coroutine's record at `yielder + PARENT_LINK_OFFSET` and the yielder at
//! `base - PARENT_LINK_OFFSET`, where `base` is the stack base it gave
//! corosensei. corosensei is pinned exactly (`=0.3.x` in the workspace
//! Cargo.toml) because of this; when the pin moves, these tests say whether
//! the layout still holds.
//!
//! The offset is read from the source of `coroutine.rs` itself, so the test
//! checks the value the code uses, against the real corosensei.

use std::cell::Cell;

use urgent_stackful::__corosensei::stack::{DefaultStack, Stack as _};
use urgent_stackful::__corosensei::{Coroutine as RawCoroutine, CoroutineResult, Yielder};
use urgent_stackful::{suspend, Coroutine, Resume, Stack, SuspendKind};

const FIX: &str = "corosensei's parent-link layout is not what urgent-stackful assumes: \
                   fix PARENT_LINK_OFFSET and yielder_of/running_of in \
                   stackful/src/coroutine.rs for this corosensei version (or go back to \
                   the version pinned in the workspace Cargo.toml)";

/// `PARENT_LINK_OFFSET` as written in `stackful/src/coroutine.rs`.
fn parent_link_offset() -> usize {
    const SRC: &str = include_str!("../src/coroutine.rs");
    const DECL: &str = "const PARENT_LINK_OFFSET: usize =";
    let line = SRC
        .lines()
        .find_map(|l| l.trim().strip_prefix(DECL))
        .unwrap_or_else(|| {
            panic!("`{DECL} N;` not found in stackful/src/coroutine.rs: update this test")
        });
    line.trim()
        .trim_end_matches(';')
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("cannot parse PARENT_LINK_OFFSET from {line:?}: {e}"))
}

/// Address of a local in the caller's frame, to locate the resumer's stack.
#[inline(never)]
fn here() -> usize {
    let x = 0u8;
    std::hint::black_box(&x) as *const u8 as usize
}

/// Resumes `co` from `depth` extra frames deeper, returning the address of a
/// local in the innermost one.
#[inline(never)]
fn resume_at_depth(
    co: &mut RawCoroutine<(), usize, (), DefaultStack>,
    depth: u32,
) -> (usize, CoroutineResult<usize, ()>) {
    let pad = std::hint::black_box([0u8; 512]);
    if depth > 0 {
        let r = resume_at_depth(co, depth - 1);
        std::hint::black_box(&pad);
        return r;
    }
    let sp = here();
    (sp, co.resume(()))
}

#[test]
fn yielder_is_the_parent_link_at_base_minus_offset() {
    let off = parent_link_offset();
    let stack = DefaultStack::new(64 * 1024).unwrap();
    let base = stack.base().get();
    let seen = std::rc::Rc::new(Cell::new((0usize, 0usize, 0usize, 0usize)));
    let s = seen.clone();
    let mut co = RawCoroutine::with_stack(stack, move |y: &Yielder<(), usize>, ()| {
        let y_addr = y as *const Yielder<(), usize> as usize;
        // SAFETY: `y` is a live `&Yielder`, a single word (the parent link,
        // initialised while the coroutine runs): reading it as a usize stays
        // inside the referent.
        let link1 = unsafe { *(y_addr as *const usize) };
        y.suspend(1);
        // SAFETY: as above.
        let link2 = unsafe { *(y_addr as *const usize) };
        s.set((y_addr, link1, link2, 0));
    });
    let (sp1, r1) = resume_at_depth(&mut co, 0);
    assert!(matches!(r1, CoroutineResult::Yield(1)));
    let (sp2, r2) = resume_at_depth(&mut co, 8);
    assert!(matches!(r2, CoroutineResult::Return(())));
    let (y_addr, link1, link2, _) = seen.get();
    assert_eq!(
        y_addr,
        base - off,
        "{FIX}: the Yielder is at base - {} (base {base:#x}), the code assumes base - {off}",
        base.wrapping_sub(y_addr)
    );
    // What corosensei wrote there is the resumer's stack pointer, a little
    // below the resuming frame's locals, and it follows the resumer.
    for (link, sp) in [(link1, sp1), (link2, sp2)] {
        assert!(
            link < sp && sp - link < 4096,
            "{FIX}: the word at the Yielder ({link:#x}) is not the resumer's stack pointer \
             (resumer's frame at {sp:#x})"
        );
    }
    assert!(
        link2 < link1,
        "{FIX}: the parent link did not follow a deeper resumer"
    );
}

#[test]
fn stackful_coroutines_find_their_yielder() {
    // Coroutine::new's first entry checks `yielder == base - offset` and
    // panics with "unexpected corosensei stack layout" otherwise; suspend and
    // resume then go through the parent link on both paths.
    let mut co = Coroutine::new(Stack::new(64 * 1024).unwrap(), || {
        suspend(SuspendKind::Yield);
        suspend(SuspendKind::Preempted);
        7u32
    });
    for want in [SuspendKind::Yield, SuspendKind::Preempted] {
        match co.resume() {
            Resume::Suspended(k) => assert_eq!(k, want),
            Resume::Panicked(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                panic!("{FIX}: the coroutine panicked: {msg}");
            }
            Resume::Finished => panic!("{FIX}: finished early"),
        }
    }
    assert!(matches!(co.resume(), Resume::Finished));
    assert_eq!(co.take_output(), Some(7));
}
