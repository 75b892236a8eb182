//! tokio's own integration tests, run under `#[urgent::test]`.
//!
//! This crate holds no test code of tokio's. Its build script (`build.rs`)
//! finds the `tests/` folder that tokio's published crate ships (in cargo's
//! registry copy of the tokio version in `Cargo.lock`), copies the selected
//! runtime-agnostic files into `OUT_DIR` with the test attribute rewritten
//! (`#[tokio::test]` becomes `#[urgent::test]`), marks the excluded tests
//! `#[ignore = "tokio-suite (x): reason"]` from `exclusions.txt`, and the
//! `tokio_suite` test target `include!`s them, one module per tokio file, in
//! one test binary:
//!
//! ```text
//! cargo test -p urgent-tokio-suite --test tokio_suite
//! ```
//!
//! `docs/tokio-suite.md` at the repository root records the result and
//! explains the exclusion categories.
//!
//! This library is the suite's only shim: a watchdog. The build script
//! inserts `let _watch = urgent_tokio_suite::watch(module_path!(), "name");`
//! as the first statement of every ported test, so a test that hangs ends the
//! test binary with a message naming it, after [`timeout`], instead of
//! leaving CI hanging. Everything else in the ported files is tokio's text
//! with only the attribute changed.

use std::io::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Environment variable that overrides [`timeout`], in whole seconds.
pub const TIMEOUT_ENV: &str = "TOKIO_SUITE_TIMEOUT_SECS";

/// How long one test may run when [`TIMEOUT_ENV`] is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The per-test limit: [`TIMEOUT_ENV`] if set to a positive integer,
/// otherwise [`DEFAULT_TIMEOUT`].
///
/// # Panics
///
/// If [`TIMEOUT_ENV`] is set to something other than a positive integer.
pub fn timeout() -> Duration {
    match std::env::var(TIMEOUT_ENV) {
        Err(_) => DEFAULT_TIMEOUT,
        Ok(s) => match s.trim().parse::<u64>() {
            Ok(n) if n > 0 => Duration::from_secs(n),
            _ => panic!(
                "{TIMEOUT_ENV}={s:?}: expected a positive number of seconds, e.g. {TIMEOUT_ENV}=60"
            ),
        },
    }
}

/// One running test, as the watchdog sees it.
struct Running {
    id: u64,
    name: String,
    since: Instant,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    running: Vec<Running>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let limit = timeout();
        std::thread::Builder::new()
            .name("tokio-suite-watchdog".into())
            .spawn(move || watchdog(limit))
            .expect("tokio-suite: cannot start the watchdog thread");
        Mutex::new(Registry::default())
    })
}

/// Checks the running tests every few hundred milliseconds; ends the process
/// when one has run longer than `limit`.
fn watchdog(limit: Duration) {
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        let hung: Vec<&Running> = reg
            .running
            .iter()
            .filter(|r| r.since.elapsed() > limit)
            .collect();
        if hung.is_empty() {
            continue;
        }
        // Straight to the stderr handle: libtest captures `eprintln!` of this
        // thread (it inherits the capture of the test that started it).
        let mut err = std::io::stderr().lock();
        for r in &hung {
            let _ = writeln!(
                err,
                "tokio-suite: test {} has run for more than {limit:?}: it hangs. \
                 Exclude it in tokio-suite/exclusions.txt with its reason, \
                 or raise {TIMEOUT_ENV}.",
                r.name
            );
        }
        let others: Vec<&str> = reg
            .running
            .iter()
            .filter(|r| r.since.elapsed() <= limit)
            .map(|r| r.name.as_str())
            .collect();
        if !others.is_empty() {
            let _ = writeln!(err, "tokio-suite: also running: {}", others.join(", "));
        }
        std::process::exit(101);
    }
}

/// Registration of one running test with the watchdog; dropping it (the test
/// returned or panicked) unregisters the test.
#[must_use = "the test is watched only while the guard lives"]
pub struct Watch {
    id: u64,
}

/// Registers the test `name` of module `module` with the watchdog until the
/// returned guard drops.
pub fn watch(module: &str, name: &str) -> Watch {
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    reg.next_id += 1;
    let id = reg.next_id;
    // module_path!() starts with the test crate's name; libtest names tests
    // without it.
    let module = module.split_once("::").map_or("", |(_, rest)| rest);
    let name = if module.is_empty() {
        name.to_string()
    } else {
        format!("{module}::{name}")
    };
    reg.running.push(Running {
        id,
        name,
        since: Instant::now(),
    });
    Watch { id }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        reg.running.retain(|r| r.id != self.id);
    }
}

/// A stand-in for `rand::random_range` over `i32`, the one call of rand in
/// the ported files (`sync_broadcast::sender_len_random`), which the test
/// target reaches through `extern crate urgent_tokio_suite as rand`.
/// A xorshift generator seeded per thread from std's random hash keys: only
/// the spread of values matters to that test.
///
/// # Panics
///
/// If `range` is empty.
pub fn random_range(range: std::ops::Range<i32>) -> i32 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};
    assert!(
        range.start < range.end,
        "random_range: empty range {range:?}"
    );
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x9e37_79b9_7f4a_7c15);
            h.finish() | 1
        });
    }
    let x = STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    });
    let span = (i64::from(range.end) - i64::from(range.start)) as u64;
    range.start + (x % span) as i32
}
