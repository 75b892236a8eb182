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
    parse_timeout(std::env::var(TIMEOUT_ENV).ok().as_deref()).unwrap_or_else(|e| panic!("{e}"))
}

/// [`timeout`] from the value of [`TIMEOUT_ENV`], if set.
fn parse_timeout(value: Option<&str>) -> Result<Duration, String> {
    let Some(s) = value else {
        return Ok(DEFAULT_TIMEOUT);
    };
    match s.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
        _ => Err(format!(
            "{TIMEOUT_ENV}={s:?}: expected a positive number of seconds, e.g. {TIMEOUT_ENV}=60"
        )),
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

#[cfg(test)]
#[path = "../build/inputs.rs"]
#[allow(dead_code)]
mod inputs;

#[cfg(test)]
mod tests {
    use super::inputs::{tokio_tests_dir, tokio_version, Exclusions};
    use super::*;
    use std::path::Path;

    #[test]
    fn timeout_values() {
        assert_eq!(parse_timeout(None), Ok(DEFAULT_TIMEOUT));
        assert_eq!(parse_timeout(Some(" 5 ")), Ok(Duration::from_secs(5)));
        for bad in ["0", "-1", "1.5", "soon"] {
            let e = parse_timeout(Some(bad)).unwrap_err();
            assert!(
                e.contains(
                    "expected a positive number of seconds, e.g. TOKIO_SUITE_TIMEOUT_SECS=60"
                ),
                "{e}"
            );
        }
    }

    #[test]
    fn random_range_stays_in_range() {
        let mut seen = [false; 4];
        for _ in 0..1000 {
            let v = random_range(0..4);
            seen[v as usize] = true;
        }
        assert_eq!(seen, [true; 4]);
        assert_eq!(random_range(-3..-2), -3);
    }

    const LOCK: &str = "[[package]]\nname = \"tokio\"\nversion = \"1.54.1\"\n\n[[package]]\nname = \"tokio-test\"\nversion = \"0.4.5\"\n";

    #[test]
    fn version_from_the_lock() {
        let lock = Path::new("Cargo.lock");
        assert_eq!(tokio_version(LOCK, lock).unwrap(), "1.54.1");
        let e = tokio_version("", lock).unwrap_err();
        assert!(
            e.contains("no `tokio` package in Cargo.lock; run `cargo generate-lockfile`"),
            "{e}"
        );
        let two = format!("{LOCK}[[package]]\nname = \"tokio\"\nversion = \"0.2.25\"\n");
        let e = tokio_version(&two, lock).unwrap_err();
        assert!(e.contains("several tokio versions"), "{e}");
    }

    #[test]
    fn missing_tokio_sources_name_cargo_fetch() {
        let empty = std::env::temp_dir().join(format!("tokio-suite-empty-{}", std::process::id()));
        let e = tokio_tests_dir("1.54.1", None, &empty).unwrap_err();
        assert!(e.contains("tokio 1.54.1's tests/ folder is not in"), "{e}");
        assert!(e.contains("Run `cargo fetch` to download it"), "{e}");
        let e = tokio_tests_dir("1.54.1", Some(&empty), &empty).unwrap_err();
        assert!(e.contains("TOKIO_SUITE_SRC is set but"), "{e}");
        assert!(
            e.contains("point it at a tokio 1.54.1 source folder"),
            "{e}"
        );
    }

    #[test]
    fn exclusions_parse_match_and_report_stale_lines() {
        let file = Path::new("exclusions.txt");
        let text = "# comment\n\nio_copy::copy_is_cooperative  a  never yields\n\
                    task_join_set::local::*  c  LocalRuntime\nsync_mpsc::gone b  renamed\n";
        let mut ex = Exclusions::parse(text, file).unwrap();
        assert_eq!(
            ex.find("io_copy::copy_is_cooperative"),
            Some(("a".into(), "never yields".into()))
        );
        assert_eq!(ex.find("task_join_set::local::x").unwrap().0, "c");
        assert_eq!(ex.find("io_copy::copy"), None);
        let e = ex.check_all_used(file).unwrap_err();
        assert!(e.contains("name no test of the ported files"), "{e}");
        assert!(e.contains("exclusions.txt:5: sync_mpsc::gone"), "{e}");

        let e = Exclusions::parse("io_copy::copy a", file).err().unwrap();
        assert!(
            e.contains("exclusions.txt:1: expected `file::test <category> <reason>`"),
            "{e}"
        );
        let e = Exclusions::parse("io_copy::copy z because", file)
            .err()
            .unwrap();
        assert!(e.contains("unknown category \"z\"; use one of a ("), "{e}");
    }
}
