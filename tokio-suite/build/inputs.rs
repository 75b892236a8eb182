//! The build script's inputs, without syn so that the library's unit tests
//! can check the error messages: the tokio version in `Cargo.lock`, where
//! tokio's `tests/` folder is, and `exclusions.txt`.
//!
//! Shared by `build.rs` and `src/lib.rs` (tests only) through `#[path]`.

use std::path::{Path, PathBuf};

/// Exclusion categories: the letter used in `exclusions.txt` and what it means.
pub const CATEGORIES: &[(&str, &str)] = &[
    (
        "a",
        "tokio's cooperative budget does not apply inside urgent tasks",
    ),
    (
        "b",
        "blocking calls inside async code do not panic under urgent",
    ),
    (
        "c",
        "tokio-internal API or runtime flavor (LocalRuntime, paused time, current_thread scheduling)",
    ),
];

/// The version of the `tokio` package in the text of `Cargo.lock`.
pub fn tokio_version(lock_text: &str, lock: &Path) -> Result<String, String> {
    let mut lines = lock_text.lines();
    let mut versions = Vec::new();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"tokio\"" {
            if let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
            {
                versions.push(v.trim_matches('"').to_string());
            }
        }
    }
    match versions.as_slice() {
        [v] => Ok(v.clone()),
        [] => Err(format!(
            "tokio-suite: no `tokio` package in {}; run `cargo generate-lockfile`",
            lock.display()
        )),
        _ => Err(format!(
            "tokio-suite: several tokio versions in {} ({versions:?}); the suite needs one",
            lock.display()
        )),
    }
}

/// The `tests/` folder of tokio `version`'s published sources: under
/// `src_override` (a tokio source folder) if given, otherwise in
/// `cargo_home/registry/src/*/tokio-<version>/`.
pub fn tokio_tests_dir(
    version: &str,
    src_override: Option<&Path>,
    cargo_home: &Path,
) -> Result<PathBuf, String> {
    if let Some(src) = src_override {
        let tests = src.join("tests");
        if tests.join("tcp_echo.rs").is_file() {
            return Ok(tests);
        }
        return Err(format!(
            "tokio-suite: TOKIO_SUITE_SRC is set but {} holds no tokio tests; \
             point it at a tokio {version} source folder (the one with Cargo.toml) or unset it",
            tests.display()
        ));
    }
    let src = cargo_home.join("registry").join("src");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&src)
        .into_iter()
        .flatten()
        .flatten()
        .map(|index| index.path().join(format!("tokio-{version}")).join("tests"))
        .filter(|tests| tests.join("tcp_echo.rs").is_file())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        format!(
            "tokio-suite: tokio {version}'s tests/ folder is not in {}/*/tokio-{version}/. \
             Run `cargo fetch` to download it, or set TOKIO_SUITE_SRC to a tokio {version} \
             source folder",
            src.display()
        )
    })
}

/// One line of `exclusions.txt`: `path category reason`.
pub struct Exclusion {
    /// `file::module::test`, or `file::module::*` for a whole module.
    pub path: String,
    pub category: String,
    pub reason: String,
    pub line: usize,
    pub used: bool,
}

/// The lines of `exclusions.txt`.
pub struct Exclusions(pub Vec<Exclusion>);

impl Exclusions {
    /// Parses the text of `exclusions.txt` (`file` names it in errors).
    pub fn parse(text: &str, file: &Path) -> Result<Exclusions, String> {
        let mut all = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // One word, then the next, then the rest of the line.
            let split = |s: &str| -> Option<(String, String)> {
                let s = s.trim_start();
                let end = s.find(char::is_whitespace)?;
                Some((s[..end].to_string(), s[end..].trim_start().to_string()))
            };
            let parsed = split(line).and_then(|(test, rest)| {
                split(&rest).map(|(category, reason)| (test, category, reason))
            });
            let Some((test, category, reason)) = parsed.filter(|(_, _, r)| !r.is_empty()) else {
                return Err(format!(
                    "tokio-suite: {}:{line_no}: expected `file::test <category> <reason>`, got {line:?}",
                    file.display()
                ));
            };
            if !CATEGORIES.iter().any(|(c, _)| *c == category.as_str()) {
                return Err(format!(
                    "tokio-suite: {}:{line_no}: unknown category {category:?}; use one of {}",
                    file.display(),
                    CATEGORIES
                        .iter()
                        .map(|(c, what)| format!("{c} ({what})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            all.push(Exclusion {
                path: test,
                category,
                reason,
                line: line_no,
                used: false,
            });
        }
        Ok(Exclusions(all))
    }

    /// The `(category, reason)` of test `test` (`file::module::name`), if
    /// excluded; marks the matching line used.
    pub fn find(&mut self, test: &str) -> Option<(String, String)> {
        let e = self.0.iter_mut().find(|e| match e.path.strip_suffix('*') {
            Some(prefix) => test.starts_with(prefix),
            None => e.path == test,
        })?;
        e.used = true;
        Some((e.category.clone(), e.reason.clone()))
    }

    /// An error naming the lines that matched no test.
    pub fn check_all_used(&self, file: &Path) -> Result<(), String> {
        let stale: Vec<String> = self
            .0
            .iter()
            .filter(|e| !e.used)
            .map(|e| format!("{}:{}: {}", file.display(), e.line, e.path))
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        Err(format!(
            "tokio-suite: these exclusions name no test of the ported files \
             (renamed or removed in this tokio version?); delete or fix them:\n{}",
            stale.join("\n")
        ))
    }
}
