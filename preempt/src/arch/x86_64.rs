//! x86_64 Linux: the yield trampoline (Go's `asyncPreempt`), the call injection
//! (Go's `pushCall`) and the CPUID/XCR0 probing that sizes the extended-state
//! save area. All assembly of the crate lives in this file.
//!
//! # Frame built by [`push_call`] and the trampoline
//!
//! ```text
//!   interrupted RSP ->  +---------------------+  (CFA of the trampoline frame)
//!                       | 128-byte red zone   |  left untouched
//!                       +---------------------+
//!                       | interrupted RIP     |  pushed by push_call ("return address")
//!   entry RSP ------->  +---------------------+
//!                       | RFLAGS              |
//!                       | RBP                 |  <- RBP after the prologue
//!                       | RAX RBX RCX RDX RSI |
//!                       | RDI R8 .. R15       |  14 GPRs, 112 bytes
//!                       | (padding)           |
//!                       | XSAVE area          |  64-byte aligned, XSAVE_SIZE bytes
//!                       | MXCSR, x87 CW slot  |  64 bytes (see "Floating-point control modes")
//!                       +---------------------+  <- 64-byte aligned, call into Rust
//! ```
//!
//! The epilogue reloads the extended state, pops the GPRs and RFLAGS and ends in
//! `ret 128`: pop the interrupted RIP, then drop the red zone, which leaves RSP
//! exactly at its interrupted value.
//!
//! The CFI describes this frame: CFA = interrupted RSP, return address at
//! CFA-136, RBP and every GPR at its slot, and `.cfi_signal_frame` so unwinders
//! (libgcc, libunwind, perf, gdb) do not subtract one from the interrupted PC,
//! which is not a call site.
//!
//! # Floating-point control modes
//!
//! MXCSR (SSE rounding, flush-to-zero, denormals-are-zero, exception masks)
//! and the x87 control word are per-thread state that a task may change (C
//! libraries, `fesetround`, `_mm_setcsr`). Left alone, a preempted task's
//! modes would stay in force on its worker, and every task, future and
//! runtime routine that runs there next would compute with them. So after
//! the save the trampoline keeps the task's two control words in a slot
//! below the save area, loads the defaults (MXCSR 0x1F80, x87 control word
//! 0x037F) and only then calls into Rust; on resume, after the restore, it
//! loads the task's control words back from that slot.
//!
//! The explicit reload is there because the restore alone is not obviously
//! enough. FXRSTOR and the standard-form XRSTOR load MXCSR from the area
//! whenever SSE or AVX is requested (XCR0 always has both x87 and SSE), but
//! XSAVEC uses the init optimisation: it writes a component only if the
//! processor tracks it as in use (XINUSE), records that in XSTATE_BV, and the
//! compacted XRSTOR sets MXCSR to 0x1F80 when XSTATE_BV's SSE bit is clear.
//! Whether a non-default MXCSR alone keeps SSE "in use" (when every XMM
//! register is zero) is not something we could pin down in the manual; with
//! the reload it does not matter. The x87 control word has the same shape
//! (component 0 in its init state restores as 0x037F). The exception
//! *flags* (MXCSR bits 0..5, the x87 status word) are saved and restored
//! with the task by the restore itself. `tests/soundness.rs` checks the
//! whole path: a task with FTZ/round-toward-zero keeps them, bit-exact,
//! through preemptions, and its neighbours on the worker never see them.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};

/// Bytes between the interrupted RSP and the trampoline's entry RSP: red zone
/// (128) plus the pushed return address (8).
pub const PUSHED_BYTES: usize = 128 + 8;

/// Bytes of the trampoline frame besides the XSAVE area: RFLAGS, RBP, 14 GPRs,
/// up to 63 bytes of alignment padding, and the 64-byte slot for the task's
/// floating-point control words below the XSAVE area.
pub const GPR_FRAME_BYTES: usize = 16 * 8 + 64 + 64;

/// Extended-state save strategy used by the trampoline.
const MODE_FXSAVE: u8 = 0;
const MODE_XSAVE: u8 = 1;
const MODE_XSAVEC: u8 = 2;

/// Read by the trampoline (through `sym`): size of the save area in bytes.
static XSAVE_SIZE: AtomicUsize = AtomicUsize::new(4096);
/// Read by the trampoline: XSAVE requested-feature bitmap (XCR0), low half.
static XSAVE_MASK_LO: AtomicU32 = AtomicU32::new(u32::MAX);
/// Read by the trampoline: XSAVE requested-feature bitmap, high half.
static XSAVE_MASK_HI: AtomicU32 = AtomicU32::new(u32::MAX);
/// Read by the trampoline: one of the `MODE_*` constants.
static XSAVE_MODE: AtomicU8 = AtomicU8::new(MODE_FXSAVE);

/// Probes CPUID leaf 1 / 0xD and XCR0 and fills the statics the trampoline
/// reads. Must run before the first call can be pushed; the caller
/// guarantees that by calling it before installing the signal handler.
/// Idempotent (the probe runs once; later calls wait for it).
pub fn init() {
    static PROBE: std::sync::Once = std::sync::Once::new();
    PROBE.call_once(probe);
}

fn probe() {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // CPUID is available on every x86_64 CPU (safe intrinsic).
    let leaf1 = __cpuid(1);
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    let xsave = leaf1.ecx & (1 << 26) != 0;
    if !(osxsave && xsave) {
        XSAVE_MODE.store(MODE_FXSAVE, Ordering::Relaxed);
        XSAVE_SIZE.store(512 + 64, Ordering::Relaxed);
        return;
    }
    let xcr0 = xgetbv0();
    // Leaf 0xD exists when XSAVE is supported (CPUID.1:ECX.XSAVE).
    let d0 = __cpuid_count(0xD, 0);
    let d1 = __cpuid_count(0xD, 1);
    let xsavec = d1.eax & (1 << 1) != 0;
    // d0.ebx: standard-format size for the features enabled in XCR0.
    // d1.ebx: compacted size for XCR0 | IA32_XSS, an upper bound for XSAVEC.
    let size = (d0.ebx.max(d1.ebx) as usize).max(512 + 64);
    XSAVE_SIZE.store(size.next_multiple_of(64), Ordering::Relaxed);
    XSAVE_MASK_LO.store(xcr0 as u32, Ordering::Relaxed);
    XSAVE_MASK_HI.store((xcr0 >> 32) as u32, Ordering::Relaxed);
    XSAVE_MODE.store(
        if xsavec { MODE_XSAVEC } else { MODE_XSAVE },
        Ordering::Relaxed,
    );
}

/// Size of the extended-state area the trampoline reserves (valid after
/// [`init`]).
pub fn xsave_size() -> usize {
    XSAVE_SIZE.load(Ordering::Relaxed)
}

/// Bytes of stack the trampoline itself takes below the interrupted RSP:
/// the red zone and pushed return address, the register frame and the
/// extended-state area, as sized on this CPU. Probes the CPU if needed.
pub fn trampoline_bytes() -> usize {
    init();
    PUSHED_BYTES + GPR_FRAME_BYTES + xsave_size()
}

/// Human-readable name of the save instruction in use (for diagnostics).
pub fn xsave_mode_name() -> &'static str {
    match XSAVE_MODE.load(Ordering::Relaxed) {
        MODE_XSAVEC => "xsavec",
        MODE_XSAVE => "xsave",
        _ => "fxsave",
    }
}

fn xgetbv0() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: only called after CPUID reported OSXSAVE, so XGETBV is enabled;
    // it reads XCR0 into EDX:EAX and touches nothing else.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Interrupted RIP and RSP read from a signal's `ucontext_t`.
///
/// # Safety
/// `ctx` must be the third argument of an `SA_SIGINFO` handler.
pub unsafe fn context_pc_sp(ctx: *mut libc::c_void) -> (usize, usize) {
    let uc = ctx as *const libc::ucontext_t;
    // SAFETY: the caller passes the kernel-provided ucontext, valid for reads
    // for the duration of the handler.
    let gregs = unsafe { &(*uc).uc_mcontext.gregs };
    (
        gregs[libc::REG_RIP as usize] as usize,
        gregs[libc::REG_RSP as usize] as usize,
    )
}

/// Go's `pushCall`: make the interrupted thread, when the handler returns, run
/// the trampoline as if the interrupted instruction had called it.
///
/// Skips the 128-byte System V red zone (Go needs no red zone; Rust/C code
/// does), stores the interrupted RIP as the return address and points RIP at
/// the trampoline.
///
/// # Safety
/// `ctx` must be the ucontext of the current handler invocation, and the
/// 136 bytes below the interrupted RSP must be writable memory that the
/// interrupted code does not use (checked by the caller: RSP lies inside the
/// coroutine stack with headroom).
pub unsafe fn push_call(ctx: *mut libc::c_void) {
    let uc = ctx as *mut libc::ucontext_t;
    // SAFETY: see the function contract; the ucontext is ours to rewrite until
    // the handler returns, when the kernel reloads registers from it.
    unsafe {
        let gregs = &mut (*uc).uc_mcontext.gregs;
        let pc = gregs[libc::REG_RIP as usize] as usize;
        let sp = gregs[libc::REG_RSP as usize] as usize - PUSHED_BYTES;
        (sp as *mut usize).write(pc);
        gregs[libc::REG_RSP as usize] = sp as i64;
        gregs[libc::REG_RIP as usize] = trampoline_address() as i64;
    }
}

extern "C" {
    fn urgent_preempt_trampoline();
}

/// Address of the trampoline's first instruction.
pub fn trampoline_address() -> usize {
    urgent_preempt_trampoline as *const () as usize
}

// The trampoline. See the module docs for the frame layout. Only RBX (callee
// saved, holds the save-area pointer across the call) and RBP (frame pointer)
// are relied upon after the call into Rust; everything else is reloaded.
global_asm!(
    ".text",
    ".globl urgent_preempt_trampoline",
    ".type urgent_preempt_trampoline,@function",
    ".p2align 4",
    "urgent_preempt_trampoline:",
    ".cfi_startproc",
    ".cfi_signal_frame",
    // CFA = interrupted RSP = entry RSP + 8 + 128; return address at CFA-136.
    ".cfi_def_cfa_offset 136",
    ".cfi_offset %rip, -136",
    "pushfq",
    ".cfi_adjust_cfa_offset 8",
    "pushq %rbp",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset %rbp, -152",
    "movq %rsp, %rbp",
    ".cfi_def_cfa_register %rbp",
    "pushq %rax",
    ".cfi_offset %rax, -160",
    "pushq %rbx",
    ".cfi_offset %rbx, -168",
    "pushq %rcx",
    ".cfi_offset %rcx, -176",
    "pushq %rdx",
    ".cfi_offset %rdx, -184",
    "pushq %rsi",
    ".cfi_offset %rsi, -192",
    "pushq %rdi",
    ".cfi_offset %rdi, -200",
    "pushq %r8",
    ".cfi_offset %r8, -208",
    "pushq %r9",
    ".cfi_offset %r9, -216",
    "pushq %r10",
    ".cfi_offset %r10, -224",
    "pushq %r11",
    ".cfi_offset %r11, -232",
    "pushq %r12",
    ".cfi_offset %r12, -240",
    "pushq %r13",
    ".cfi_offset %r13, -248",
    "pushq %r14",
    ".cfi_offset %r14, -256",
    "pushq %r15",
    ".cfi_offset %r15, -264",
    // The System V ABI requires DF clear on calls.
    "cld",
    // Reserve the 64-byte aligned extended-state area; RBX points at it.
    "subq {size}(%rip), %rsp",
    "andq $-64, %rsp",
    "movq %rsp, %rbx",
    // Zero the 64-byte XSAVE header (bytes 512..576): XRSTOR faults on a
    // non-zero reserved field and plain XSAVE does not write all of it.
    "xorl %eax, %eax",
    "movq %rax, 512(%rbx)",
    "movq %rax, 520(%rbx)",
    "movq %rax, 528(%rbx)",
    "movq %rax, 536(%rbx)",
    "movq %rax, 544(%rbx)",
    "movq %rax, 552(%rbx)",
    "movq %rax, 560(%rbx)",
    "movq %rax, 568(%rbx)",
    "movl {mask_lo}(%rip), %eax",
    "movl {mask_hi}(%rip), %edx",
    "movzbl {mode}(%rip), %ecx",
    "cmpl $2, %ecx",
    "je 12f",
    "cmpl $1, %ecx",
    "je 11f",
    "fxsave64 (%rbx)",
    "jmp 13f",
    "11:",
    "xsave64 (%rbx)",
    "jmp 13f",
    "12:",
    "xsavec64 (%rbx)",
    "13:",
    // Floating-point control modes (see the module docs): keep the task's
    // MXCSR (at 0) and x87 control word (at 4) in a 64-byte slot below the
    // save area, then load the defaults for the runtime and whatever runs on
    // this worker next: MXCSR 0x1F80 (all exceptions masked, round to
    // nearest, no FTZ/DAZ) and control word 0x037F (all masked, round to
    // nearest, 64-bit precision), through the scratch words at 8 and 12.
    // 64 bytes keep RSP 64-byte aligned.
    "subq $64, %rsp",
    "stmxcsr (%rsp)",
    "fnstcw 4(%rsp)",
    "movl $0x1F80, 8(%rsp)",
    "ldmxcsr 8(%rsp)",
    "movw $0x037F, 12(%rsp)",
    "fldcw 12(%rsp)",
    // RSP is 64-byte aligned here, so 16-byte aligned at the call as the ABI
    // requires.
    "call {rust}",
    "movl {mask_lo}(%rip), %eax",
    "movl {mask_hi}(%rip), %edx",
    "movzbl {mode}(%rip), %ecx",
    "testl %ecx, %ecx",
    "je 14f",
    "xrstor64 (%rbx)",
    "jmp 15f",
    "14:",
    "fxrstor64 (%rbx)",
    "15:",
    // The task's own control modes, whatever the restore did with them.
    "ldmxcsr -64(%rbx)",
    "fldcw -60(%rbx)",
    "leaq -112(%rbp), %rsp",
    "popq %r15",
    "popq %r14",
    "popq %r13",
    "popq %r12",
    "popq %r11",
    "popq %r10",
    "popq %r9",
    "popq %r8",
    "popq %rdi",
    "popq %rsi",
    "popq %rdx",
    "popq %rcx",
    "popq %rbx",
    "popq %rax",
    "popq %rbp",
    ".cfi_def_cfa %rsp, 144",
    ".cfi_restore %rbp",
    "popfq",
    ".cfi_adjust_cfa_offset -8",
    // Pop the interrupted RIP, then skip the red zone.
    "retq $128",
    ".cfi_endproc",
    ".size urgent_preempt_trampoline, .-urgent_preempt_trampoline",
    size = sym XSAVE_SIZE,
    mask_lo = sym XSAVE_MASK_LO,
    mask_hi = sym XSAVE_MASK_HI,
    mode = sym XSAVE_MODE,
    rust = sym crate::signal::trampoline_rust,
    options(att_syntax)
);
