//! Whole-stack safe points seen from the runtime (issue 12): CPU tasks that
//! spend their time in `core`/`alloc` (sort, BTreeMap) and libm are
//! preempted, with bit-identical results; println- and allocation-heavy
//! tasks never tear or lose a line and never deadlock; a sorting task on the
//! only worker lets a 1 ms sleeper run. Behaviour only; time bounds are
//! generous. Run in debug and release builds alike.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{guard, is_child, rt};

fn async_preempt_available() -> bool {
    let ok = cfg!(all(target_arch = "x86_64", target_os = "linux"))
        && std::env::var("URGENT_ASYNC_PREEMPT").as_deref() != Ok("0");
    if !ok {
        eprintln!("async preemption unavailable here: test skipped");
    }
    ok
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Sorting: `sort_unstable` of integers and `sort` of strings (core/alloc).
fn sort_work(seed: u64, rounds: u64) -> u64 {
    let mut s = seed | 1;
    let mut h = 0u64;
    for _ in 0..rounds {
        let mut v: Vec<u64> = (0..20_000).map(|_| xorshift(&mut s)).collect();
        v.sort_unstable();
        let mut w: Vec<String> = v
            .iter()
            .step_by(16)
            .map(|x| format!("{:x}", x ^ 0x5555))
            .collect();
        w.sort();
        h = h.wrapping_mul(31).wrapping_add(v[v.len() / 3]) ^ w[w.len() / 2].len() as u64;
    }
    h
}

/// BTreeMap inserts, lookups and removals (alloc).
fn btree_work(seed: u64, rounds: u64) -> u64 {
    let mut s = seed | 1;
    let mut h = 0u64;
    for _ in 0..rounds {
        let mut m = BTreeMap::new();
        for i in 0..10_000u64 {
            m.insert(xorshift(&mut s) % 50_000, i);
        }
        for _ in 0..5_000 {
            m.remove(&(xorshift(&mut s) % 50_000));
        }
        h = h.wrapping_mul(31).wrapping_add(m.len() as u64);
        h ^= m
            .iter()
            .step_by(97)
            .fold(0u64, |a, (k, v)| a.wrapping_add(k ^ v));
    }
    h
}

/// f64 math through libm (sin, cos, exp, ln, powf, atan2).
fn libm_work(seed: u64, rounds: u64) -> u64 {
    let mut acc = 0.0f64;
    for r in 0..rounds {
        for i in 0..20_000u64 {
            let x = ((seed + r * 20_000 + i) % 100_000) as f64 * 1e-4;
            acc +=
                x.sin() * x.cos() + (x * 0.5).exp() - (x + 1.0).ln() + x.powf(1.7) - x.atan2(1.5);
        }
    }
    acc.to_bits()
}

/// Many preemptions inside core/alloc code and libm leave results
/// bit-identical to an unpreempted run.
#[test]
fn core_alloc_and_libm_work_is_preempted_bit_identically() {
    if !async_preempt_available() {
        return;
    }
    guard(|| {
        let rounds = if cfg!(debug_assertions) { 12 } else { 120 };
        type Job = fn(u64, u64) -> u64;
        let jobs: [(&str, Job); 3] = [
            ("sort", sort_work),
            ("btree", btree_work),
            ("libm", libm_work),
        ];
        let expected: Vec<u64> = (0..6).map(|i| (jobs[i % 3].1)(i as u64, rounds)).collect();
        let rt = rt(2, Duration::from_micros(100));
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let f = jobs[i % 3].1;
                rt.spawn_cpu(move || f(i as u64, rounds))
            })
            .collect();
        let got: Vec<u64> = support::join_all(&rt, handles);
        for i in 0..6 {
            assert_eq!(
                got[i],
                expected[i],
                "{} job {i} differs after preemption",
                jobs[i % 3].0
            );
        }
        let m = rt.metrics();
        // Before whole-stack classification almost every PC here was in
        // core/alloc/libm and declined: a handful of preemptions at most.
        assert!(m.preemptions() >= 200, "too few preemptions: {m:?}");
        eprintln!(
            "bit-identical through {} preemptions ({m:?})",
            m.preemptions()
        );
    });
}

/// A CPU task sorting on the only worker lets a 1 ms sleeper keep running.
#[test]
fn sorting_task_on_one_worker_lets_a_sleeper_run() {
    if !async_preempt_available() {
        return;
    }
    guard(|| {
        let rt = rt(1, Duration::from_millis(2));
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let sorter = rt.spawn_cpu(move || {
            // Sorts until the sleeper is done, or 20 s at most.
            let end = Instant::now() + Duration::from_secs(20);
            let mut seed = 7u64;
            let mut rounds = 0u64;
            while !s.load(Relaxed) && Instant::now() < end {
                let mut v: Vec<u64> = (0..100_000).map(|_| xorshift(&mut seed)).collect();
                v.sort_unstable();
                std::hint::black_box(&v);
                rounds += 1;
            }
            (rounds, s.load(Relaxed))
        });
        let wakes = rt.block_on(rt.spawn(async move {
            for _ in 0..30 {
                urgent::time::sleep(Duration::from_millis(1)).await;
            }
            stop.store(true, Relaxed);
            30
        }));
        assert_eq!(wakes.unwrap(), 30);
        let (rounds, stopped) = rt.block_on(sorter).unwrap();
        assert!(
            stopped,
            "the sleeper only ran after the sort gave up: the sort was never preempted"
        );
        assert!(rounds > 0);
        assert!(rt.metrics().preemptions() > 0, "{:?}", rt.metrics());
    });
}

const LINES: usize = 1500;
const PAD: &str = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz";

/// Child half of `println_and_allocation_heavy_tasks_lose_and_tear_nothing`.
#[test]
fn println_child() {
    if !is_child() {
        return;
    }
    let rt = rt(2, Duration::from_micros(100));
    let handles: Vec<_> = (0..4)
        .map(|k| {
            rt.spawn_cpu(move || {
                let mut total = 0usize;
                for i in 0..LINES {
                    // Allocation-heavy work between the lines.
                    let v: Vec<String> = (0..32).map(|j| format!("{k}-{i}-{j}")).collect();
                    let mut m = std::collections::HashMap::new();
                    for s in &v {
                        m.insert(s.clone(), s.len());
                    }
                    total = total.wrapping_add(m.values().sum::<usize>());
                    println!("LINE {k} {i} {PAD} END");
                }
                total
            })
        })
        .collect();
    rt.block_on(async {
        for h in handles {
            h.await.unwrap();
        }
    });
    println!("CHILD preemptions {}", rt.metrics().preemptions());
}

/// println- and allocation-heavy CPU tasks at a 100 µs quantum: no torn
/// line, no lost line, no deadlock (a child process, killed after 120 s).
#[test]
fn println_and_allocation_heavy_tasks_lose_and_tear_nothing() {
    if !async_preempt_available() {
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "println_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("URGENT_TEST_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let end = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the println/alloc child deadlocked (killed after 120 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = reader.join().unwrap();
    assert!(status.success(), "child failed ({status}):\n{out}");
    let mut seen = vec![vec![false; LINES]; 4];
    for line in out
        .lines()
        .filter(|l| l.contains("LINE") || l.contains("END"))
    {
        // libtest prints "test println_child ... " with no newline first.
        let line = line.strip_prefix("test println_child ... ").unwrap_or(line);
        let parts: Vec<&str> = line.split(' ').collect();
        assert!(
            parts.len() == 5 && parts[0] == "LINE" && parts[3] == PAD && parts[4] == "END",
            "torn line: {line:?}"
        );
        let k: usize = parts[1].parse().unwrap();
        let i: usize = parts[2].parse().unwrap();
        assert!(!seen[k][i], "duplicated line {line:?}");
        seen[k][i] = true;
    }
    for (k, s) in seen.iter().enumerate() {
        let missing = s.iter().filter(|&&x| !x).count();
        assert_eq!(missing, 0, "task {k} lost {missing} lines");
    }
    let pre = out
        .lines()
        .find_map(|l| l.strip_prefix("CHILD preemptions "))
        .unwrap_or("?");
    eprintln!("all {} lines intact through {pre} preemptions", 4 * LINES);
}
