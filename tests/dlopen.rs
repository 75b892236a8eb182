//! No lost requests across a library loaded after start (issue 12): the
//! module table is built when the runtime starts, so a library `dlopen`ed
//! later is in no known object. A CPU task whose hot loop calls into it is
//! declined with `UnknownPc`; sysmon sees the handler's flag, rebuilds the
//! table, and the library's code is classified from then on.
//!
//! libz is the late library: Rust's std does not link it, and flate2's
//! default backend is miniz_oxide, so nothing else in this test binary loads
//! it. The test is skipped (with a message) where libz is missing or already
//! loaded.

mod support;

use std::ffi::{c_uint, c_ulong, c_void};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{guard, rt};
use urgent_preempt::diagnostics::{async_preempt_supported, pc_preemptible};

type Crc32 = unsafe extern "C" fn(c_ulong, *const u8, c_uint) -> c_ulong;

/// Whether libz is mapped in this process already.
fn libz_loaded() -> bool {
    ["libz.so.1", "libz.so"].iter().any(|name| {
        let c = std::ffi::CString::new(*name).unwrap();
        // SAFETY: RTLD_NOLOAD only looks the name up; a handle it returns
        // holds a reference, released right away.
        unsafe {
            let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY);
            if !h.is_null() {
                libc::dlclose(h);
            }
            !h.is_null()
        }
    })
}

/// Opens libz (kept loaded for the life of the process) and returns its
/// `crc32`, or `None` if it is not installed.
fn open_libz() -> Option<Crc32> {
    // SAFETY: dlopen/dlsym with NUL-terminated names; the handle is never
    // closed, so the function pointer stays valid; crc32 has this signature
    // in zlib.h (uLong crc32(uLong crc, const Bytef *buf, uInt len)).
    unsafe {
        let h: *mut c_void = libc::dlopen(c"libz.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if h.is_null() {
            return None;
        }
        let f = libc::dlsym(h, c"crc32".as_ptr());
        (!f.is_null()).then(|| std::mem::transmute::<*mut c_void, Crc32>(f))
    }
}

#[inline(never)]
fn spin(n: u64) -> u64 {
    let mut x = n | 1;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x)
}

/// A late library's code goes from "unknown" to classified once a CPU task
/// runs in it: sysmon rebuilt the table. The task keeps being preempted in
/// its own code meanwhile (the requests declined inside libz are retried).
#[test]
fn a_library_loaded_after_start_is_classified_once_a_task_runs_in_it() {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux"))
        || std::env::var("URGENT_ASYNC_PREEMPT").as_deref() == Ok("0")
    {
        eprintln!("async preemption unavailable here: test skipped");
        return;
    }
    guard(|| {
        let rt = rt(1, Duration::from_millis(1));
        assert!(async_preempt_supported(), "test binaries have a .symtab");
        if libz_loaded() {
            eprintln!("libz is already loaded in this process: test skipped");
            return;
        }
        let Some(crc32) = open_libz() else {
            eprintln!("libz.so.1 is not installed: test skipped");
            return;
        };
        let pc = crc32 as usize;
        assert_eq!(
            pc_preemptible(pc),
            None,
            "libz was loaded after the table was built: its code is unknown"
        );

        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let task = rt.spawn_cpu(move || {
            let buf = vec![0x5au8; 256 * 1024];
            let mut h: u64 = 0;
            while !stop2.load(Relaxed) {
                // SAFETY: buf is valid for its length, which fits a c_uint.
                h ^= unsafe { crc32(h as c_ulong, buf.as_ptr(), buf.len() as c_uint) } as u64;
                h ^= spin(20_000);
            }
            h
        });

        let deadline = Instant::now() + Duration::from_secs(30);
        let classified = loop {
            if let Some(c) = pc_preemptible(pc) {
                break Some(c);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // A few more quanta of preemption with the new table.
        let before = rt.metrics().preemptions();
        let until = Instant::now() + Duration::from_secs(20);
        while rt.metrics().preemptions() < before + 5 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Relaxed);
        rt.block_on(task).expect("the CPU task finishes");
        let m = rt.metrics();
        let d = m.declines();
        assert!(
            classified.is_some(),
            "libz's crc32 is still in no known object 30 s after a task started running it: \
             sysmon did not rebuild the module table (declines: {d:?})"
        );
        assert_eq!(
            classified,
            Some(false),
            "crc32 is a C symbol off the leaf allow list: never"
        );
        assert!(
            d.unknown_pc > 0,
            "the handler met libz's code before the rebuild: {d:?}"
        );
        assert!(
            m.preemptions() >= before + 5,
            "the task is still preempted in its own code after the rebuild \
             ({} preemptions, declines {d:?})",
            m.preemptions()
        );
    });
}
