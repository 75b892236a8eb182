//! Allocator internals are never a safe point (issue 12), whether malloc
//! lives in `libc.so.6` or is linked into the executable (`-C
//! target-feature=+crt-static`: then `_int_malloc`, `_int_free`,
//! `malloc_consolidate` and `__lll_lock_wait_private` are symbols of the
//! executable, and a name-only allow list would let a task be stopped while
//! it holds the arena lock). Two allocation-heavy CPU tasks on one worker at
//! a 100 µs quantum: if one is switched out inside malloc holding the arena
//! lock, the other blocks on that lock forever on the same thread. CI runs
//! this file with a statically linked glibc as well (`.ci/run`).
//!
//! The scenario runs in a child process with a timeout, so a hang fails the
//! test with a message instead of hanging the suite.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{is_child, rt};

/// How long the child may take (it needs well under a second unloaded).
const TIMEOUT: Duration = Duration::from_secs(120);

/// Allocation-heavy work of every size class: small boxes, growing vectors,
/// strings, a map, and frees in another order than the allocations.
fn alloc_work(seed: u64, rounds: u64) -> u64 {
    let mut s = seed | 1;
    let mut h = 0u64;
    for _ in 0..rounds {
        let mut boxes: Vec<Box<[u64]>> = Vec::new();
        for i in 0..2_000u64 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let len = 1 + (s % 300) as usize;
            boxes.push(vec![i; len].into_boxed_slice());
            if s.is_multiple_of(3) {
                let j = (s as usize / 3) % boxes.len();
                h = h.wrapping_add(boxes.swap_remove(j).len() as u64);
            }
        }
        let mut m = std::collections::BTreeMap::new();
        for b in &boxes {
            m.insert(format!("{:x}", b[0] ^ b.len() as u64), b.len());
        }
        let big: Vec<u8> = vec![7; 200_000 + (s % 100_000) as usize];
        h = h
            .wrapping_mul(31)
            .wrapping_add(m.len() as u64 + big.len() as u64);
    }
    h
}

/// The child's body: two allocating tasks on one worker, each preempted many
/// times; both must finish with the results a plain thread computes.
#[test]
fn child_two_allocating_tasks_on_one_worker() {
    if !is_child() {
        return;
    }
    let rounds = if cfg!(debug_assertions) { 30 } else { 200 };
    let expected = [alloc_work(1, rounds), alloc_work(2, rounds)];
    let rt = rt(1, Duration::from_micros(100));
    let a = rt.spawn_cpu(move || alloc_work(1, rounds));
    let b = rt.spawn_cpu(move || alloc_work(2, rounds));
    let got = rt.block_on(async { [a.await.unwrap(), b.await.unwrap()] });
    assert_eq!(got, expected);
    let m = rt.metrics();
    eprintln!(
        "preemptions {} requests {} declines {:?}",
        m.preemptions(),
        m.preempt_requests(),
        m.declines()
    );
}

/// Runs the child test with a timeout; on a hang, names the thread states
/// seen in /proc before killing it.
#[test]
fn allocating_tasks_on_one_worker_do_not_deadlock_in_malloc() {
    if is_child() {
        return;
    }
    let name = "child_two_allocating_tasks_on_one_worker";
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("URGENT_TEST_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the test binary as a child");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for the child") {
            break Some(st);
        }
        if start.elapsed() > TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let Some(status) = status else {
        let threads = thread_states(child.id());
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "two allocating CPU tasks on one worker hung for {TIMEOUT:?}: a task was \
             preempted inside the allocator while holding its lock (thread states: {threads})"
        );
    };
    let log = err_t.join().unwrap() + &out_t.join().unwrap();
    assert!(status.success(), "the child failed ({status}):\n{log}");
    assert!(log.contains("1 passed"), "the child ran no test:\n{log}");
}

/// `name: state wchan` of each thread of `pid`, for the hang message.
fn thread_states(pid: u32) -> String {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "unavailable".into();
    };
    let mut v = Vec::new();
    for e in dir.flatten() {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let wchan = std::fs::read_to_string(p.join("wchan")).unwrap_or_default();
        let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or("?")
            .to_string();
        v.push(format!("{} {state} {wchan}", comm.trim()));
    }
    v.join(", ")
}
