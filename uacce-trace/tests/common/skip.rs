//! The one way a test says it cannot run: [`skip`] (the whole test returns
//! early) and [`skip_part`] (one part of it cannot run), and [`note`] (a
//! line the test runner shows, e.g. what this host's verifier refused).
//!
//! libtest has no "skipped" outcome: a test that returns early counts as
//! passed. So a skip is also appended, as `binary<TAB>test<TAB>reason`, to
//! the file named by `UACCE_TRACE_SKIP_FILE` (set by `cargo xtask test`),
//! which then counts that test as skipped, by name, with the reason. Notes
//! go the same way to `UACCE_TRACE_NOTE_FILE`.
//!
//! Under `CI=true` a test that lacks something the project installs itself
//! (`cargo xtask setup`: Debian packages such as tmux, prometheus, busybox,
//! bpftrace; the python `hdrh` module; bpf-linker for the eBPF object) or
//! root (CI runs as root) fails instead, with the reason. What the host
//! itself does not offer (kernel BTF, kprobes, fentry, another architecture)
//! stays a skip everywhere.
//!
//! Compiled into the integration tests (`tests/common/mod.rs`), into the
//! library's unit tests and into xtask's (`#[path]`), so it uses std only.

#![allow(dead_code)]

use std::io::Write as _;

/// The file `cargo xtask test` reads the skips from.
pub const SKIP_FILE_ENV: &str = "UACCE_TRACE_SKIP_FILE";
/// The file `cargo xtask test` reads the notes from.
pub const NOTE_FILE_ENV: &str = "UACCE_TRACE_NOTE_FILE";

/// What a test lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lack {
    /// Something `cargo xtask setup` installs: a failure under `CI=true`.
    Setup,
    /// Root (or CAP_BPF and CAP_PERFMON): a failure under `CI=true`.
    Root,
    /// Something this host does not offer: a skip everywhere.
    Host,
}

impl Lack {
    /// Why this lack fails under CI, if it does.
    fn fails_in_ci(self) -> Option<&'static str> {
        match self {
            Lack::Setup => Some("`cargo xtask setup` installs it"),
            Lack::Root => Some("CI runs as root"),
            Lack::Host => None,
        }
    }
}

/// Whether this is a CI run (`CI=true`, or `CI=1`).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The running test's name as libtest prints it (libtest runs each test in
/// a thread named after it).
pub fn test_name() -> String {
    match std::thread::current().name() {
        Some(n) if n != "main" => n.to_string(),
        _ => "?".to_string(),
    }
}

/// `text` on one line without tabs, at most 4000 characters (a list of
/// every program fits; a long log is cut).
pub fn one_line(text: &str) -> String {
    let mut s: String = text
        .trim()
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
        .replace('\t', " ");
    if s.chars().count() > 4000 {
        s = s.chars().take(3999).collect::<String>() + "…";
    }
    s
}

/// The test binary's name: `host_bpf` for `target/release/deps/host_bpf-<hash>`.
pub fn binary_name() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_deref()
        .and_then(std::path::Path::file_stem)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, hash)) if !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => stem,
    }
}

/// Appends `binary<TAB>name<TAB>text` to the file `path`, if any.
fn append(path: Option<&std::ffi::OsStr>, name: &str, text: &str) {
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return;
    };
    let line = format!(
        "{}\t{}\t{}\n",
        one_line(&binary_name()),
        one_line(name),
        one_line(text)
    );
    // One write of one short line to a file opened for appending: lines of
    // tests running in parallel do not interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!("cannot record {line:?} in {}: {e}", path.to_string_lossy());
    }
}

/// Why a skip is a failure under CI (`why`, unless `reason` says it).
fn ci_failure(reason: &str, why: &str) -> String {
    if reason.contains(why) {
        "a failure under CI=true".to_string()
    } else {
        format!("a failure under CI=true: {why}")
    }
}

/// The running test cannot run: fails under `CI=true` when `lack` is
/// something the project provides, else records the skip and returns (the
/// caller returns right after).
pub fn skip(lack: Lack, reason: &str) {
    skip_in(
        lack,
        reason,
        ci(),
        std::env::var_os(SKIP_FILE_ENV).as_deref(),
    );
}

/// [`skip`] with the CI verdict and the skip file given.
pub fn skip_in(lack: Lack, reason: &str, ci: bool, file: Option<&std::ffi::OsStr>) {
    let name = test_name();
    if let (true, Some(why)) = (ci, lack.fails_in_ci()) {
        panic!("{name} cannot run: {reason} ({})", ci_failure(reason, why));
    }
    eprintln!("SKIP {name}: {reason}");
    append(file, &name, reason);
}

/// One part of the running test cannot run (the rest does): fails under
/// `CI=true` when `lack` is something the project provides, else records
/// a note `part skipped: …` and returns.
pub fn skip_part(lack: Lack, part: &str, reason: &str) {
    let name = test_name();
    if let (true, Some(why)) = (ci(), lack.fails_in_ci()) {
        panic!(
            "{name}: the {part} cannot run: {reason} ({})",
            ci_failure(reason, why)
        );
    }
    eprintln!("SKIP {name} ({part}): {reason}");
    append(
        std::env::var_os(NOTE_FILE_ENV).as_deref(),
        &name,
        &format!("{part} skipped: {reason}"),
    );
}

/// A line about the running test that the test runner shows even when the
/// test passes (libtest keeps a passing test's output to itself).
pub fn note(text: &str) {
    let name = test_name();
    eprintln!("{name}: {text}");
    append(std::env::var_os(NOTE_FILE_ENV).as_deref(), &name, text);
}
