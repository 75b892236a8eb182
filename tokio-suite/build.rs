//! Builds the `tokio_suite` test target from tokio's own test files.
//!
//! Steps, each failing with a message that names the fix:
//! 1. read the tokio version from the workspace's `Cargo.lock`;
//! 2. find that version's `tests/` folder in cargo's registry sources
//!    (`$CARGO_HOME/registry/src/*/tokio-<version>/tests`; cargo extracts it
//!    there because tokio is a dependency of this crate), or in
//!    `$TOKIO_SUITE_SRC` if set (a tokio source tree, e.g. a vendored copy);
//! 3. for each file of [`FILES`], parse it with syn to find its test
//!    functions, then write a copy to `OUT_DIR` where, on the same lines,
//!    - `#[tokio::test(...)]` (and `#[maybe_tokio_test]`, tokio's alias for it)
//!      becomes `#[urgent::test]`, keeping `worker_threads = N` and dropping
//!      the `flavor`, which urgent does not have;
//!    - a test named in `exclusions.txt`, or one that runs with paused time
//!      (`start_paused = true`, or a `time::pause()` call in a test with the
//!      runtime attribute), gets `#[ignore = "tokio-suite (x): reason"]`;
//!    - every test body starts with a watchdog guard
//!      (`urgent_tokio_suite::watch`), so a hang ends the binary with the
//!      test's name instead of stalling CI;
//! 4. write `suite.rs` (one `#[path] mod` per file, `include!`d by
//!    `tests/tokio_suite.rs`), `summary.txt` (counts per file and per
//!    exclusion category) and `kinds.txt` (each named test and whether it
//!    runs under `#[urgent::test]` or is a plain `#[test]`).
//!
//! Edits keep every line where it was, so a panic location in the copy is
//! the same line as in tokio's original.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use syn::spanned::Spanned;

#[path = "build/inputs.rs"]
mod inputs;
use inputs::{Exclusions, CATEGORIES};

/// tokio's test files that do not depend on tokio's runtime internals.
const FILES: &[&str] = &[
    // TCP, UDP and unix sockets.
    "tcp_accept",
    "tcp_accept_ready",
    "tcp_connect",
    "tcp_echo",
    "tcp_into_split",
    "tcp_into_std",
    "tcp_peek",
    "tcp_shutdown",
    "tcp_socket",
    "tcp_split",
    "tcp_stream",
    "udp",
    "uds_cred",
    "uds_datagram",
    "uds_socket",
    "uds_split",
    "uds_stream",
    "unix_shutdown",
    // I/O utilities.
    "buffered",
    "duplex_stream",
    "io_buf_reader",
    "io_buf_writer",
    "io_chain",
    "io_copy",
    "io_copy_bidirectional",
    "io_copy_buf",
    "io_fill_buf",
    "io_lines",
    "io_mem_stream",
    "io_read",
    "io_read_buf",
    "io_read_exact",
    "io_read_int",
    "io_read_line",
    "io_read_to_end",
    "io_read_to_string",
    "io_read_until",
    "io_repeat",
    "io_sink",
    "io_split",
    "io_take",
    "io_util_empty",
    "io_write",
    "io_write_all",
    "io_write_all_buf",
    "io_write_buf",
    "io_write_int",
    // Synchronization.
    "sync_barrier",
    "sync_broadcast",
    "sync_broadcast_weak",
    "sync_mpsc",
    "sync_mpsc_weak",
    "sync_mutex",
    "sync_mutex_owned",
    "sync_notify",
    "sync_once_cell",
    "sync_oneshot",
    "sync_rwlock",
    "sync_semaphore",
    "sync_semaphore_owned",
    "sync_set_once",
    "sync_watch",
    // Time without paused time.
    "time_interval",
    "time_sleep",
    "time_timeout",
    // Tasks and macros.
    "task_join_set",
    "task_local",
    "task_yield_now",
    "macros_join",
    "macros_select",
    "macros_try_join",
];

/// tokio's helper modules (`tests/support/`) that the files above declare.
const SUPPORT: &[&str] = &["io_vec.rs", "leaked_buffers.rs", "mpsc_stream.rs"];

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env("OUT_DIR"));
    let lock = manifest_dir.join("../Cargo.lock");
    let exclusions_path = manifest_dir.join("exclusions.txt");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/inputs.rs");
    println!("cargo:rerun-if-changed={}", lock.display());
    println!("cargo:rerun-if-changed={}", exclusions_path.display());
    println!("cargo:rerun-if-env-changed=TOKIO_SUITE_SRC");
    println!("cargo:rerun-if-env-changed=CARGO_HOME");
    // cfgs tokio's tests test that are never set here.
    println!("cargo::rustc-check-cfg=cfg(tokio_unstable, miri)");

    let version = inputs::tokio_version(&read(&lock), &lock).unwrap_or_else(|e| panic!("{e}"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("tokio-suite: neither CARGO_HOME nor HOME is set");
    let src_override = std::env::var_os("TOKIO_SUITE_SRC").map(PathBuf::from);
    let tests = inputs::tokio_tests_dir(&version, src_override.as_deref(), &cargo_home)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut exclusions = Exclusions::parse(&read(&exclusions_path), &exclusions_path)
        .unwrap_or_else(|e| panic!("{e}"));

    std::fs::create_dir_all(out_dir.join("support")).expect("create OUT_DIR/support");
    for name in SUPPORT {
        let from = tests.join("support").join(name);
        let text = read(&from);
        write(&out_dir.join("support").join(name), &text);
    }

    let mut suite = String::new();
    let mut summary = Summary::default();
    // `file::module::test urgent|plain` for each test found by name (tests
    // stamped out by macro templates are not named): for counting results.
    let mut kinds = String::new();
    for file in FILES {
        let path = tests.join(format!("{file}.rs"));
        let ported = port(file, &read(&path), &mut exclusions);
        let dest = out_dir.join(format!("{file}.rs"));
        write(&dest, &ported.text);
        // The copies are tokio's code: its lints are tokio's business.
        writeln!(
            suite,
            "#[allow(warnings, clippy::all, clippy::pedantic)]\n#[path = {:?}]\nmod {file};",
            dest.display().to_string()
        )
        .unwrap();
        summary.add(file, &ported);
        for t in &ported.tests {
            let kind = match t.kind {
                Kind::Runtime => "urgent",
                Kind::Plain => "plain",
            };
            writeln!(kinds, "{} {kind}", t.path).unwrap();
        }
    }
    exclusions
        .check_all_used(&exclusions_path)
        .unwrap_or_else(|e| panic!("{e}"));
    write(&out_dir.join("suite.rs"), &suite);
    write(&out_dir.join("kinds.txt"), &kinds);
    write(
        &out_dir.join("summary.txt"),
        &summary.render(&version, &tests),
    );
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("tokio-suite: {name} is not set by cargo"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("tokio-suite: cannot read {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text)
        .unwrap_or_else(|e| panic!("tokio-suite: cannot write {}: {e}", path.display()));
}

/// How a test function is marked in tokio's file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `#[tokio::test]` or `#[maybe_tokio_test]`: runs on a runtime.
    Runtime,
    /// `#[test]`: no runtime, or one the test builds itself.
    Plain,
}

struct Test {
    path: String,
    kind: Kind,
    /// `(category, reason)` when the test is excluded.
    excluded: Option<(String, String)>,
}

struct Ported {
    text: String,
    tests: Vec<Test>,
}

/// A replacement of `text[start..end]`, in byte offsets.
struct Edit {
    start: usize,
    end: usize,
    with: String,
}

/// Byte offsets of `proc_macro2` line/column positions in one text.
struct Offsets<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Offsets<'a> {
    fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Offsets { text, line_starts }
    }

    /// `line` is 1-based, `column` counts chars from 0.
    fn of(&self, pos: proc_macro2::LineColumn) -> usize {
        let start = self.line_starts[pos.line - 1];
        let rest = &self.text[start..];
        start
            + rest
                .char_indices()
                .nth(pos.column)
                .map_or(rest.len(), |(i, _)| i)
    }
}

fn port(file: &str, text: &str, exclusions: &mut Exclusions) -> Ported {
    let ast = syn::parse_file(text)
        .unwrap_or_else(|e| panic!("tokio-suite: cannot parse tokio's tests/{file}.rs: {e}"));
    let offsets = Offsets::new(text);
    let mut edits = Vec::new();
    let mut tests = Vec::new();
    visit_items(
        &ast.items, file, &offsets, exclusions, &mut edits, &mut tests,
    );
    macro_templates(file, text, &mut edits);
    // tokio's alias of its attribute, used as `#[maybe_tokio_test]`.
    for (at, _) in text.match_indices("use tokio::test as maybe_tokio_test;") {
        edits.push(Edit {
            start: at,
            end: at + "use tokio::test".len(),
            with: "use urgent::test".into(),
        });
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.start));
    let mut out = text.to_string();
    for e in edits {
        out.replace_range(e.start..e.end, &e.with);
    }
    let left = out
        .lines()
        .position(|l| l.contains("tokio::test") && !l.trim_start().starts_with("//"));
    assert!(
        left.is_none(),
        "tokio-suite: tests/{file}.rs:{}: a `tokio::test` the build script did not rewrite; \
         leave the file out of FILES in build.rs or teach port() the form",
        left.unwrap_or(0) + 1
    );
    Ported { text: out, tests }
}

/// Rewrites the `#[tokio::test]` attributes that the syn walk did not see:
/// those in `macro_rules!` templates, which stamp out one test per
/// invocation. Their tests cannot be named in `exclusions.txt`.
fn macro_templates(file: &str, text: &str, edits: &mut Vec<Edit>) {
    for (at, _) in text.match_indices("#[tokio::test") {
        if edits.iter().any(|e| e.start == at) {
            continue;
        }
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        if text[line_start..at].trim_start().starts_with("//") {
            continue;
        }
        let end =
            at + text[at..].find(']').unwrap_or_else(|| {
                panic!("tokio-suite: tests/{file}.rs: unterminated attribute at byte {at}")
            }) + 1;
        let attrs = syn::parse::Parser::parse_str(syn::Attribute::parse_outer, &text[at..end])
            .unwrap_or_else(|e| {
                panic!("tokio-suite: tests/{file}.rs: bad attribute at byte {at}: {e}")
            });
        let args = runtime_args(&attrs[0].meta, file);
        assert!(
            !args.start_paused,
            "tokio-suite: tests/{file}.rs: a macro template with paused time; leave the file out"
        );
        edits.push(Edit {
            start: at,
            end,
            with: format!("#[{}]", urgent_attr(&args)),
        });
        // The watchdog guard, named after the template's `fn $name`.
        let fn_at = end
            + text[end..]
                .find("fn ")
                .unwrap_or_else(|| panic!("tokio-suite: tests/{file}.rs: no fn after byte {end}"));
        let name_start = fn_at + 3;
        let name_len = text[name_start..]
            .find(|c: char| !(c == '$' || c == '_' || c.is_alphanumeric()))
            .unwrap_or(0);
        let name = &text[name_start..name_start + name_len];
        let brace = name_start
            + text[name_start..]
                .find('{')
                .unwrap_or_else(|| panic!("tokio-suite: tests/{file}.rs: no body after {name}"))
            + 1;
        let name_expr = if name.starts_with('$') {
            format!("stringify!({name})")
        } else {
            format!("{name:?}")
        };
        edits.push(Edit {
            start: brace,
            end: brace,
            with: format!(
                " let _tokio_suite_watch = ::urgent_tokio_suite::watch(module_path!(), {name_expr});"
            ),
        });
    }
}

fn visit_items(
    items: &[syn::Item],
    module: &str,
    offsets: &Offsets<'_>,
    exclusions: &mut Exclusions,
    edits: &mut Vec<Edit>,
    tests: &mut Vec<Test>,
) {
    for item in items {
        match item {
            syn::Item::Mod(m) => {
                if let Some((_, items)) = &m.content {
                    let module = format!("{module}::{}", m.ident);
                    visit_items(items, &module, offsets, exclusions, edits, tests);
                }
            }
            syn::Item::Fn(f) => {
                if let Some(test) = port_fn(f, module, offsets, exclusions, edits) {
                    tests.push(test);
                }
            }
            _ => {}
        }
    }
}

/// Whether `path` is tokio's test attribute (`tokio::test`, or the
/// `maybe_tokio_test` alias of it).
fn is_tokio_test(path: &syn::Path) -> bool {
    let segs: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    matches!(
        segs.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["tokio", "test"] | ["maybe_tokio_test"]
    )
}

/// `#[urgent::test]` text for tokio's attribute `meta`.
fn urgent_attr(args: &RuntimeArgs) -> String {
    match args.worker_threads {
        Some(n) => format!("urgent::test(worker_threads = {n})"),
        None => "urgent::test".to_string(),
    }
}

/// The rewrite of one function, if it is a test.
fn port_fn(
    f: &syn::ItemFn,
    module: &str,
    offsets: &Offsets<'_>,
    exclusions: &mut Exclusions,
    edits: &mut Vec<Edit>,
) -> Option<Test> {
    let name = f.sig.ident.to_string();
    let path = format!("{module}::{name}");
    let span_of = |attr: &syn::Attribute| {
        (
            offsets.of(attr.pound_token.span.start()),
            offsets.of(attr.bracket_token.span.close().end()),
        )
    };

    // Where tokio's attribute is: a whole `#[tokio::test(..)]`, or the
    // `tokio::test(..)` inside `#[cfg_attr(pred, tokio::test(..))]`.
    let mut direct = None;
    let mut plain = None;
    let mut in_cfg_attr = Vec::new();
    for attr in &f.attrs {
        if is_tokio_test(attr.path()) {
            direct = Some(attr);
        } else if attr.path().is_ident("test") {
            plain = Some(attr);
        } else if attr.path().is_ident("cfg_attr") {
            let metas = attr
                .parse_args_with(
                    syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated,
                )
                .unwrap_or_else(|e| panic!("tokio-suite: cannot read a cfg_attr of {path}: {e}"));
            for meta in metas.into_iter().skip(1) {
                if is_tokio_test(meta.path()) {
                    in_cfg_attr.push((attr, meta));
                }
            }
        }
    }
    let kind = if direct.is_some() || !in_cfg_attr.is_empty() {
        Kind::Runtime
    } else if plain.is_some() {
        Kind::Plain
    } else {
        return None;
    };

    let mut excluded = exclusions.find(&path);
    let mut args = Vec::new();
    if let Some(attr) = direct {
        args.push(runtime_args(&attr.meta, &path));
    }
    for (_, meta) in &in_cfg_attr {
        args.push(runtime_args(meta, &path));
    }
    let body = &offsets.text[offsets.of(f.block.span().start())..offsets.of(f.block.span().end())];
    if excluded.is_none() && kind == Kind::Runtime {
        if args.iter().any(|a| a.start_paused) {
            excluded = Some((
                "c".into(),
                "paused time (start_paused = true) needs tokio's current_thread runtime".into(),
            ));
        } else if body.contains("time::pause()") {
            excluded = Some((
                "c".into(),
                "paused time (time::pause()) needs tokio's current_thread runtime".into(),
            ));
        }
    }
    let already_ignored = f.attrs.iter().any(|a| a.path().is_ident("ignore"));
    let ignore = match (&excluded, already_ignored) {
        (Some((category, reason)), false) => {
            format!(
                " #[ignore = {:?}]",
                format!("tokio-suite ({category}): {reason}")
            )
        }
        _ => String::new(),
    };

    if let Some(attr) = direct.or(plain) {
        let (start, end) = span_of(attr);
        let original = &offsets.text[start..end];
        // Keep the line count: a multi-line attribute becomes one line
        // followed by as many newlines as it spanned.
        let newlines = "\n".repeat(original.matches('\n').count());
        let head = match direct {
            Some(_) => format!("#[{}]", urgent_attr(&args[0])),
            None => original.replace('\n', " "),
        };
        edits.push(Edit {
            start,
            end,
            with: format!("{head}{ignore}{newlines}"),
        });
    } else {
        for ((_, meta), args) in in_cfg_attr.iter().zip(&args) {
            let start = offsets.of(meta.span().start());
            let end = offsets.of(meta.span().end());
            edits.push(Edit {
                start,
                end,
                with: urgent_attr(args),
            });
        }
        let (_, end) = span_of(in_cfg_attr.last().unwrap().0);
        edits.push(Edit {
            start: end,
            end,
            with: ignore,
        });
    }

    // The watchdog guard goes after the body's `{` and its inner attributes.
    let body = match f
        .attrs
        .iter()
        .rfind(|a| matches!(a.style, syn::AttrStyle::Inner(_)))
    {
        Some(inner) => offsets.of(inner.span().end()),
        None => offsets.of(f.block.brace_token.span.open().end()),
    };
    edits.push(Edit {
        start: body,
        end: body,
        with: format!(
            " let _tokio_suite_watch = ::urgent_tokio_suite::watch(module_path!(), {name:?});"
        ),
    });
    Some(Test {
        path,
        kind,
        excluded,
    })
}

#[derive(Default)]
struct RuntimeArgs {
    worker_threads: Option<u64>,
    start_paused: bool,
}

/// Reads the arguments of tokio's attribute `meta`; those urgent has no use
/// for (`flavor`, `unhandled_panic`, `name`) are dropped.
fn runtime_args(meta: &syn::Meta, test: &str) -> RuntimeArgs {
    let mut args = RuntimeArgs::default();
    let syn::Meta::List(list) = meta else {
        return args;
    };
    list.parse_nested_meta(|meta| {
        let value: syn::Lit = meta.value()?.parse()?;
        if meta.path.is_ident("worker_threads") {
            if let syn::Lit::Int(n) = &value {
                args.worker_threads = Some(n.base10_parse()?);
            }
        } else if meta.path.is_ident("start_paused") {
            args.start_paused = matches!(value, syn::Lit::Bool(b) if b.value);
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("tokio-suite: cannot read the test attribute of {test}: {e}"));
    args
}

#[derive(Default)]
struct Summary {
    files: usize,
    runtime: usize,
    plain: usize,
    /// category -> excluded test paths
    excluded: BTreeMap<String, Vec<String>>,
    per_file: Vec<(String, usize, usize, usize)>,
}

impl Summary {
    fn add(&mut self, file: &str, ported: &Ported) {
        self.files += 1;
        let runtime = ported
            .tests
            .iter()
            .filter(|t| t.kind == Kind::Runtime)
            .count();
        let plain = ported.tests.len() - runtime;
        let mut excluded = 0;
        for t in &ported.tests {
            if let Some((category, _)) = &t.excluded {
                excluded += 1;
                self.excluded
                    .entry(category.clone())
                    .or_default()
                    .push(t.path.clone());
            }
        }
        self.runtime += runtime;
        self.plain += plain;
        self.per_file
            .push((file.to_string(), runtime, plain, excluded));
    }

    fn render(&self, version: &str, tests: &Path) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "tokio {version} tests from {}\nfiles ported: {}\ntest functions: {} with the runtime attribute, {} plain #[test] \
             (before cfg; cfg'd-out ones do not run)",
            tests.display(),
            self.files,
            self.runtime,
            self.plain
        );
        for (category, what) in CATEGORIES {
            let n = self.excluded.get(*category).map_or(0, Vec::len);
            let _ = writeln!(s, "excluded ({category}) {what}: {n}");
        }
        let _ = writeln!(s, "\nfile runtime-tests plain-tests excluded");
        for (file, runtime, plain, excluded) in &self.per_file {
            let _ = writeln!(s, "{file} {runtime} {plain} {excluded}");
        }
        s
    }
}
