//! `cargo xtask test`: every test tier, the README's test command (CI runs
//! it through `.ci/run`).
//!
//! 1. setup (idempotent: rust-src, bpf-linker, Debian packages, the PyPI
//!    `hdrhistogram` module, stock kernels);
//! 2. lint: `cargo fmt --check`; clippy of the user-space crates against a
//!    stub eBPF object (in `target/stub`, so the real build stays valid);
//!    clippy of the eBPF crate with nightly for `bpfel-unknown-none` (in
//!    `target/bpf-lint`); each clippy once as released and once with the
//!    `bench` features (the benchmark driver and programs). Each step
//!    counts as one test;
//! 3. unit: `cargo test --release` of the workspace (unit, golden and, as
//!    root, host BPF tests; among them the man page and completion drift
//!    test, and the `--op qpl` preset test against Debian's libqpl, which
//!    is fetched into the tool cache first, see [`reallibs`]); the counts
//!    come from libtest's `test result:` lines; then
//!    `cargo xtask dist --vm` ([`dist_test`]): the static binaries of both
//!    architectures (the host's runs `--version` and `doctor`), tarballs,
//!    .deb files, lintian on each, and the amd64 .deb's service in a Debian
//!    VM with systemd;
//! 4. prom: the Grafana dashboard and Prometheus rules of
//!    `uacce-trace/dist/` with Debian's Prometheus (downloaded into the tool
//!    cache): `promtool check rules`, `promtool test rules`, then every
//!    dashboard variable, panel query and recording rule against a server
//!    scraping `serve --replay --realtime` of the demo recording, each one
//!    test (see [`crate::prom`]);
//! 5. vm: the VM matrix of `cargo xtask vm-test` (each VM counts as one),
//!    the demo's streamed recording checked (`cargo xtask demo --no-tui
//!    --check`, one test), the demo's before/after pinning pair and
//!    `compare`'s request verdict on it (one test), `cargo xtask sva` (the
//!    patched QEMU built into the cache first when missing; the SVA
//!    machine's checks and the tool with fentry, kprobes and the forced
//!    `intel_iommu:prq_report` row on it, one test), `cargo xtask demo
//!    --sva --no-tui --check` (the SVA machine's stream checked, one test),
//!    then the soak of `cargo xtask soak` (one test;
//!    `--soak-minutes`, 10 by default, 0 skips it);
//! 6. fuzz: every cargo-fuzz target of `uacce-trace/fuzz` for
//!    `--fuzz-seconds` (30 by default) each; a crash fails (see
//!    [`fuzz_tier`]).
//!
//! A failing tier does not stop the others. The run ends with a per-tier
//! table, the tests' notes (e.g. which programs this host's verifier
//! refused), the skipped tests with their reasons, the names of the failed
//! tests and exactly one closing line `N passed, N failed, N skipped`; the
//! exit status is non-zero when anything failed.
//!
//! Skips: a Rust test that cannot run calls the helper of
//! `uacce-trace/tests/common/skip.rs`, which appends `binary<TAB>test<TAB>
//! reason` to the file `UACCE_TRACE_SKIP_FILE` names (set here for the unit
//! tier); libtest counts such a test as passed, so the runner moves it to
//! skipped (see [`LibtestParser`]). Under `CI=true` the helper fails the
//! test instead when what is missing is the project's to install, or root.
//! Tiers left out, `#[ignore]`d tests, a soak of 0 minutes and the demo's
//! stock-kernel fallback (a failure under `CI=true`) count as skipped too.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::ValueEnum;

use crate::base::Arch;
use crate::base::{cache, ci};
use crate::demo::DemoResult;
use crate::toolchain::{build, prometheus, reallibs, setup};
use crate::{prom, soak, vm_test};

/// A tier of `cargo xtask test`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Tier {
    /// rustfmt and clippy (stub build, and the eBPF crate with nightly).
    Lint,
    /// `cargo test --release`: unit, golden and host BPF tests.
    Unit,
    /// The Grafana dashboard and Prometheus rules against a real Prometheus.
    Prom,
    /// Stock Debian kernels (and test kernels) in QEMU, then the soak.
    Vm,
    /// cargo-fuzz targets, each for a bounded time (nightly).
    Fuzz,
}

impl Tier {
    fn name(self) -> &'static str {
        match self {
            Tier::Lint => "lint",
            Tier::Unit => "unit",
            Tier::Prom => "prom",
            Tier::Vm => "vm",
            Tier::Fuzz => "fuzz",
        }
    }
}

/// Options of `cargo xtask test`.
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Skip the VM tier (QEMU).
    #[arg(long)]
    skip_vm: bool,
    /// Skip the lint tier (rustfmt, clippy).
    #[arg(long)]
    skip_lint: bool,
    /// Skip the fuzz tier.
    #[arg(long)]
    skip_fuzz: bool,
    /// Run only this tier (setup always runs first).
    #[arg(long, value_enum, conflicts_with_all = ["skip_vm", "skip_lint", "skip_fuzz"])]
    only: Option<Tier>,
    /// Minutes of the soak in the VM tier (0: no soak; 1 counts as 2, its
    /// least). CI runs the full 10.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=600))]
    soak_minutes: u64,
    /// Seconds each fuzz target runs in the fuzz tier.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    fuzz_seconds: u64,
}

impl TestArgs {
    /// Why `tier` does not run, if it does not.
    fn left_out(&self, tier: Tier) -> Option<String> {
        if self.runs(tier) {
            return None;
        }
        Some(match self.only {
            Some(only) => format!("not run (--only {})", only.name()),
            None => format!("not run (--skip-{})", tier.name()),
        })
    }

    fn runs(&self, tier: Tier) -> bool {
        match self.only {
            Some(only) => only == tier,
            None => match tier {
                Tier::Lint => !self.skip_lint,
                Tier::Unit | Tier::Prom => true,
                Tier::Vm => !self.skip_vm,
                Tier::Fuzz => !self.skip_fuzz,
            },
        }
    }
}

/// Counts of one tier (or of all of them).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counts {
    passed: u64,
    failed: u64,
    skipped: u64,
    /// Names of the failed tests.
    failures: Vec<String>,
    /// The skipped tests: name, and why.
    skips: Vec<(String, String)>,
    /// Lines a test asked to be shown (`note` of the tests' skip helper,
    /// e.g. which programs this host's verifier refused): test, text.
    notes: Vec<(String, String)>,
}

impl Counts {
    fn pass(&mut self) {
        self.passed += 1;
    }

    fn fail(&mut self, name: impl Into<String>) {
        self.failed += 1;
        self.failures.push(name.into());
    }

    fn skip(&mut self, name: impl Into<String>, why: impl Into<String>) {
        self.skipped += 1;
        self.skips.push((name.into(), why.into()));
    }

    fn add(&mut self, other: &Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.failures.extend(other.failures.iter().cloned());
        self.skips.extend(other.skips.iter().cloned());
        self.notes.extend(other.notes.iter().cloned());
    }

    fn line(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// What one tier did, for the closing table.
struct TierResult {
    name: &'static str,
    counts: Counts,
    elapsed: Duration,
}

/// Runs `cargo xtask test`; `Ok(false)` when some test failed (skips do
/// not fail the run). The last line printed is `N passed, N failed, N
/// skipped`.
pub fn run(args: &TestArgs) -> Result<bool> {
    let start = Instant::now();
    let root = crate::base::workspace_root()?;
    let tiers: Vec<Tier> = [Tier::Lint, Tier::Unit, Tier::Prom, Tier::Vm, Tier::Fuzz]
        .into_iter()
        .filter(|t| args.runs(*t))
        .collect();
    let total_steps = tiers.len() + 1;
    let mut results = Vec::new();

    // 1. setup. The VM tier is the only one that needs the kernels.
    header(
        1,
        total_steps,
        "setup",
        "toolchain, Debian packages, kernels",
    );
    let t = Instant::now();
    let mut counts = Counts::default();
    let opts = setup::SetupOptions {
        kernels: tiers.contains(&Tier::Vm),
        ..setup::SetupOptions::default()
    };
    match setup::run(&opts) {
        Ok(()) => counts.pass(),
        Err(err) => {
            println!("setup FAILED: {err:#}");
            println!("(going on: the tiers below will show what this breaks)");
            counts.fail("setup");
        }
    }
    results.push(finish_tier("setup", counts, t));

    // Whether the unit tier built the release binaries in this run.
    let mut release_built = false;
    for (i, tier) in tiers.iter().enumerate() {
        let t = Instant::now();
        let counts = match tier {
            Tier::Lint => {
                header(
                    i + 2,
                    total_steps,
                    "lint",
                    "rustfmt, clippy (stub eBPF object), clippy of the eBPF crate (nightly)",
                );
                lint(&root)
            }
            Tier::Unit => {
                header(
                    i + 2,
                    total_steps,
                    "unit",
                    "cargo test --release: unit, golden and host BPF tests; cargo xtask dist",
                );
                let (mut counts, built) = unit(&root);
                release_built = built;
                counts.add(&dist_test());
                counts
            }
            Tier::Prom => {
                header(
                    i + 2,
                    total_steps,
                    "prom",
                    "promtool on the rules; dashboard queries and rules against Prometheus \
                     scraping serve --replay",
                );
                prom_tier(&root, release_built)
            }
            Tier::Vm => {
                header(
                    i + 2,
                    total_steps,
                    "vm",
                    "kernels in QEMU (TCG): the tool against the kernel's pin counters",
                );
                let mut counts = vm_tier(release_built);
                counts.add(&demo_test(release_built));
                counts.add(&demo_pair_test(release_built));
                counts.add(&sva_test(release_built));
                counts.add(&demo_sva_test(release_built));
                counts.add(&soak_test(args.soak_minutes, release_built));
                counts
            }
            Tier::Fuzz => {
                header(
                    i + 2,
                    total_steps,
                    "fuzz",
                    &format!(
                        "cargo-fuzz targets, {} s each (nightly, AddressSanitizer)",
                        args.fuzz_seconds
                    ),
                );
                fuzz_tier(&root, args.fuzz_seconds)
            }
        };
        results.push(finish_tier(tier.name(), counts, t));
    }

    // Tiers left out count as skipped, saying why, in their place.
    for (i, tier) in [Tier::Lint, Tier::Unit, Tier::Prom, Tier::Vm, Tier::Fuzz]
        .into_iter()
        .enumerate()
    {
        if let Some(why) = args.left_out(tier) {
            let mut counts = Counts::default();
            counts.skip(format!("{} tier", tier.name()), why);
            // After setup and the tiers before this one.
            let at = (i + 1).min(results.len());
            results.insert(
                at,
                TierResult {
                    name: tier.name(),
                    counts,
                    elapsed: Duration::ZERO,
                },
            );
        }
    }

    let mut total = Counts::default();
    println!();
    println!("==== summary ====");
    for r in &results {
        println!(
            "{:<6} {:<40} {:>7.1} s",
            r.name,
            r.counts.line(),
            r.elapsed.as_secs_f64()
        );
        total.add(&r.counts);
    }
    println!(
        "{:<6} {:<40} {:>7.1} s",
        "total",
        "",
        start.elapsed().as_secs_f64()
    );
    print!("{}", closing(&total));
    Ok(total.failed == 0)
}

/// The end of the summary: the tests' notes, the skipped tests with their
/// reasons, the failed ones, and the closing line `N passed, N failed, N
/// skipped`.
fn closing(total: &Counts) -> String {
    let mut out = String::new();
    if !total.notes.is_empty() {
        out.push_str("notes:\n");
        for (name, text) in &total.notes {
            out.push_str(&format!("  {name}: {text}\n"));
        }
    }
    if !total.skips.is_empty() {
        out.push_str("skipped:\n");
        for (name, why) in &total.skips {
            out.push_str(&format!("  {name}: {why}\n"));
        }
    }
    if !total.failures.is_empty() {
        out.push_str("failed:\n");
        for name in &total.failures {
            out.push_str(&format!("  {name}\n"));
        }
    }
    out.push_str(&total.line());
    out.push('\n');
    out
}

fn header(n: usize, of: usize, name: &str, what: &str) {
    println!();
    println!("==== [{n}/{of}] {name}: {what} ====");
    flush();
}

fn finish_tier(name: &'static str, counts: Counts, start: Instant) -> TierResult {
    let elapsed = start.elapsed();
    println!(
        "---- {name}: {} in {:.1} s",
        counts.line(),
        elapsed.as_secs_f64()
    );
    flush();
    TierResult {
        name,
        counts,
        elapsed,
    }
}

fn flush() {
    let _ = std::io::stdout().flush();
}

/// The target folder (`CARGO_TARGET_DIR` or `<workspace>/target`).
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| root.join("target"), PathBuf::from)
}

/// Shows a command line the way a person would type it.
fn describe(cmd: &Command) -> String {
    let envs: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| format!("{}={}", k.to_string_lossy(), v.to_string_lossy())))
        .collect();
    envs.into_iter()
        .chain(std::iter::once(
            cmd.get_program().to_string_lossy().into_owned(),
        ))
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` with the terminal's stdout/stderr; returns its status.
fn run_inherit(cmd: &mut Command) -> Result<ExitStatus> {
    println!("$ {}", describe(cmd));
    flush();
    cmd.stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {}", describe(cmd)))
}

/// A `cargo` that is the rustup proxy (so `+nightly` and components work),
/// with the variables of the enclosing `cargo run` removed.
fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root);
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTDOC",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

// ---------------------------------------------------------------------------
// Lint tier

fn lint(root: &Path) -> Counts {
    let mut counts = Counts::default();
    let target = target_dir(root);

    let mut step = |name: &str, cmd: &mut Command| {
        let t = Instant::now();
        match run_inherit(cmd) {
            Ok(s) if s.success() => {
                println!("ok: {name} ({:.1} s)", t.elapsed().as_secs_f64());
                counts.pass();
            }
            Ok(s) => {
                println!("FAILED: {name} ({s})");
                counts.fail(format!("lint: {name}"));
            }
            Err(err) => {
                println!("FAILED: {name}: {err:#}");
                counts.fail(format!("lint: {name}"));
            }
        }
        flush();
    };

    step(
        "cargo fmt --check",
        cargo(root).args(["fmt", "--all", "--", "--check"]),
    );
    // Each crate once as released and once with the benchmark driver and
    // its programs (the `bench` features, which release builds leave out).
    for (name, features) in [
        ("cargo clippy (user space, stub eBPF object)", None),
        (
            "cargo clippy (user space, stub eBPF object, --features uacce-trace/bench)",
            Some("uacce-trace/bench"),
        ),
    ] {
        let mut cmd = cargo(root);
        cmd.env("UACCE_TRACE_EBPF_STUB", "1").args([
            "clippy",
            "--workspace",
            // Only meaningful for bpfel-unknown-none: checked below.
            "--exclude",
            "uacce-trace-ebpf",
            "--all-targets",
        ]);
        if let Some(f) = features {
            cmd.args(["--features", f]);
        }
        cmd.arg("--target-dir")
            .arg(target.join("stub"))
            .args(["--", "-D", "warnings"]);
        step(name, &mut cmd);
    }

    const EBPF: &str = "cargo clippy (eBPF crate, nightly, bpfel-unknown-none)";
    match nightly_clippy_available() {
        Ok(()) => {
            for features in [None, Some("bench")] {
                let mut cmd = Command::new("rustup");
                cmd.current_dir(root)
                    .env_remove("RUSTUP_TOOLCHAIN")
                    .env_remove("RUSTC")
                    .env_remove("RUSTC_WRAPPER")
                    .env_remove("RUSTC_WORKSPACE_WRAPPER")
                    .args([
                        "run",
                        "nightly",
                        "cargo",
                        "clippy",
                        "-p",
                        "uacce-trace-ebpf",
                    ])
                    .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"]);
                if let Some(f) = features {
                    cmd.args(["--features", f]);
                }
                cmd.arg("--target-dir")
                    .arg(target.join("bpf-lint"))
                    .args(["--", "-D", "warnings"]);
                let name = match features {
                    None => EBPF.to_string(),
                    Some(f) => format!("{EBPF}, --features {f}"),
                };
                step(&name, &mut cmd);
            }
        }
        // rustup installs clippy for nightly just above: under CI its
        // absence is a failure.
        Err(why) if ci() => {
            println!("FAILED: {EBPF}: {why} (a failure under CI=true)");
            counts.fail(format!("lint: {EBPF}: {why}"));
        }
        Err(why) => {
            println!("SKIPPED: {EBPF}: {why}");
            counts.skip(format!("lint: {EBPF}"), why);
        }
    }
    counts
}

/// Whether nightly has clippy (installing the component when it is missing).
fn nightly_clippy_available() -> std::result::Result<(), String> {
    let works = || {
        Command::new("rustup")
            .args(["run", "nightly", "cargo", "clippy", "--version"])
            .env_remove("RUSTUP_TOOLCHAIN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works() {
        return Ok(());
    }
    println!("nightly has no clippy; rustup component add clippy --toolchain nightly");
    let added = Command::new("rustup")
        .args(["component", "add", "clippy", "--toolchain", "nightly"])
        .stdin(Stdio::null())
        .status();
    if works() {
        return Ok(());
    }
    Err(match added {
        Ok(s) => format!(
            "the nightly toolchain has no clippy and `rustup component add clippy \
             --toolchain nightly` failed ({s}); that nightly may not ship clippy"
        ),
        Err(e) => format!("rustup not usable ({e})"),
    })
}

// ---------------------------------------------------------------------------
// Unit tier

/// The workspace's host crates: uacce-trace-ebpf is a no_std
/// bpfel-unknown-none crate with nothing to run on the host (the lint tier
/// checks it; aya-build compiles it for the tool).
const HOST_CRATES: &[&str] = &["--workspace", "--exclude", "uacce-trace-ebpf"];

/// Runs the unit tier; also says whether the release binaries (tool and
/// guest workload) were built, so that the VM tier can use them as they are.
fn unit(root: &Path) -> (Counts, bool) {
    // What `cargo test` builds, in one invocation first: the binaries in
    // target/release then come from the same feature resolution as the tests
    // (`--workspace` turns on the member crates' own default features), so
    // `cargo test` compiles nothing more and the VM tier uses them as they
    // are instead of rebuilding the tool for `-p uacce-trace` (≈1 min).
    let built = run_inherit(
        cargo(root)
            .args(["build", "--release"])
            .args(HOST_CRATES)
            .args(["--lib", "--bins", "--tests", "--examples"]),
    )
    .is_ok_and(|s| s.success());
    if !built {
        println!("(build failed; cargo test below shows the errors)");
    }

    let mut counts = Counts::default();
    let mut parser = LibtestParser::default();
    // The files the tests record their skips and notes in.
    let records = target_dir(root).join("xtask-test");
    let mut cmd = cargo(root);
    for (env, file, slot) in [
        (SKIP_FILE_ENV, "skips.tsv", &mut parser.skip_file),
        (NOTE_FILE_ENV, "notes.tsv", &mut parser.note_file),
    ] {
        match RecordFile::create(records.join(file)) {
            Ok(f) => {
                cmd.env(env, &f.path);
                *slot = Some(f);
            }
            Err(e) => {
                println!("FAILED: {e:#}");
                counts.fail(format!("unit: {env}: {e}"));
            }
        }
    }
    // A real build of Intel QPL for the `--op qpl` preset test
    // (tests/presets.rs); when it cannot be had, the test skips saying why.
    match reallibs::qpl() {
        Ok(qpl) => {
            println!(
                "QPL for the preset test: {}",
                qpl.versions.replace('\n', ", ")
            );
            cmd.env(QPL_ROOT_ENV, &qpl.root)
                .env(QPL_VERSIONS_ENV, &qpl.versions);
        }
        Err(e) => {
            println!("QPL for the preset test: not available: {e:#}");
            cmd.env(QPL_UNAVAILABLE_ENV, format!("{e:#}"));
        }
    }
    cmd.args(["test", "--release"])
        .args(HOST_CRATES)
        .arg("--no-fail-fast");
    println!("$ {}", describe(&cmd));
    flush();
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")
    {
        Ok(c) => c,
        Err(err) => {
            println!("FAILED: {err:#}");
            counts.fail("unit: cargo test could not start");
            return (counts, built);
        }
    };
    if let Some(stdout) = child.stdout.take() {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    print!("{line}");
                    parser.line(line.trim_end_matches(['\n', '\r']));
                }
            }
        }
    }
    flush();
    let status = child.wait();
    counts.add(&parser.counts);
    match status {
        Ok(s) if s.success() => {
            if parser.results == 0 {
                counts.fail("unit: cargo test ran no test binary");
            }
        }
        Ok(s) => {
            if counts.failed == 0 {
                // A build error, or a test binary that crashed before its
                // summary line.
                counts.fail(format!(
                    "unit: cargo test exited with {s} (build failure or a crashed test binary; \
                     see above)"
                ));
            }
        }
        Err(err) => counts.fail(format!("unit: waiting for cargo test: {err}")),
    }
    (counts, built)
}

/// The variable naming the file the tests' skip helper
/// (`uacce-trace/tests/common/skip.rs`) appends its skips to.
const SKIP_FILE_ENV: &str = "UACCE_TRACE_SKIP_FILE";
/// The same for its notes.
const NOTE_FILE_ENV: &str = "UACCE_TRACE_NOTE_FILE";
/// The unpacked QPL root (`reallibs::qpl`) that tests/presets.rs runs.
const QPL_ROOT_ENV: &str = "UACCE_TRACE_QPL_ROOT";
/// The Debian packages and versions in it, for the test's report.
const QPL_VERSIONS_ENV: &str = "UACCE_TRACE_QPL_VERSIONS";
/// Why there is none (the test skips with this reason).
const QPL_UNAVAILABLE_ENV: &str = "UACCE_TRACE_QPL_UNAVAILABLE";

/// One line of the skip or note file: `binary<TAB>test<TAB>text`, as the
/// helper writes it (`test<TAB>text` is read too).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    /// The test binary (`host_bpf`, `uacce_trace`), or empty.
    binary: String,
    /// The test's name as libtest prints it.
    test: String,
    text: String,
}

impl Record {
    fn parse(line: &str) -> Option<Record> {
        let mut f = line.splitn(3, '\t');
        let (a, b, c) = (f.next()?, f.next()?, f.next());
        Some(match c {
            Some(c) => Record {
                binary: a.into(),
                test: b.into(),
                text: c.into(),
            },
            None => Record {
                binary: String::new(),
                test: a.into(),
                text: b.into(),
            },
        })
    }

    /// `unit: binary: test`.
    fn name(&self) -> String {
        if self.binary.is_empty() {
            format!("unit: {}", self.test)
        } else {
            format!("unit: {}: {}", self.binary, self.test)
        }
    }
}

/// A file the tests append records to; read as they come.
struct RecordFile {
    path: PathBuf,
    /// Bytes read so far.
    offset: usize,
}

impl RecordFile {
    /// An empty file at `path` (the folder is made).
    fn create(path: PathBuf) -> Result<RecordFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, b"").with_context(|| format!("creating {}", path.display()))?;
        Ok(RecordFile { path, offset: 0 })
    }

    /// The whole lines written since the last call.
    fn take_new(&mut self) -> Vec<Record> {
        let Ok(bytes) = std::fs::read(&self.path) else {
            return Vec::new();
        };
        let Some(new) = bytes.get(self.offset..) else {
            return Vec::new();
        };
        let Some(end) = new.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        self.offset += end + 1;
        String::from_utf8_lossy(&new[..end])
            .lines()
            .filter_map(Record::parse)
            .collect()
    }
}

/// Reads libtest's output (`test NAME ... ok|FAILED|ignored[, reason]`,
/// `test result: ok. N passed; M failed; K ignored; ...`) and, at each
/// `test result:` line (one test binary done), the skips and notes its tests
/// recorded: a recorded skip of a test libtest counted as passed moves it
/// from passed to skipped.
#[derive(Default)]
struct LibtestParser {
    counts: Counts,
    /// `test result:` lines seen.
    results: u32,
    /// Tests of the current binary reported `ok`, and `FAILED`.
    ok: Vec<String>,
    failed: Vec<String>,
    skip_file: Option<RecordFile>,
    note_file: Option<RecordFile>,
}

impl LibtestParser {
    fn line(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("test result: ") {
            self.results += 1;
            let mut passed = 0;
            // "ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in …"
            let body = rest.split_once(". ").map_or(rest, |(_, b)| b);
            for part in body.split(';') {
                let mut words = part.split_whitespace();
                let (Some(n), Some(what)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(n) = n.parse::<u64>() else { continue };
                match what {
                    "passed" => passed += n,
                    "failed" => self.counts.failed += n,
                    "ignored" => self.counts.skipped += n,
                    _ => {}
                }
            }
            let skips = self
                .skip_file
                .as_mut()
                .map(RecordFile::take_new)
                .unwrap_or_default();
            for r in skips {
                self.binary_skip(r, &mut passed);
            }
            self.counts.passed += passed;
            if let Some(f) = self.note_file.as_mut() {
                for r in f.take_new() {
                    println!("note: {}: {}", r.name(), r.text);
                    self.counts.notes.push((r.name(), r.text));
                }
            }
            self.ok.clear();
            self.failed.clear();
        } else if let Some(rest) = line.strip_prefix("test ") {
            let Some((name, outcome)) = rest.split_once(" ... ") else {
                return;
            };
            let name = name.strip_suffix(" - should panic").unwrap_or(name);
            if outcome == "ok" {
                self.ok.push(name.to_string());
            } else if outcome == "FAILED" {
                self.failed.push(name.to_string());
                self.counts.failures.push(format!("unit: {name}"));
            } else if outcome == "ignored" {
                self.counts
                    .skips
                    .push((format!("unit: {name}"), "#[ignore]".into()));
            } else if let Some(why) = outcome.strip_prefix("ignored, ") {
                self.counts
                    .skips
                    .push((format!("unit: {name}"), format!("#[ignore]: {why}")));
            }
        }
    }

    /// A skip recorded by a test of the binary that just ended, whose
    /// `passed` count it comes out of.
    fn binary_skip(&mut self, r: Record, passed: &mut u64) {
        if let Some(i) = self.ok.iter().position(|n| *n == r.test) {
            self.ok.swap_remove(i);
        } else if self.failed.contains(&r.test) || *passed == 0 {
            // It failed after all (or libtest counted it as nothing): the
            // failure stands.
            println!(
                "note: {} recorded a skip but did not pass: {}",
                r.name(),
                r.text
            );
            return;
        }
        *passed -= 1;
        println!("SKIPPED: {}: {}", r.name(), r.text);
        self.counts.skip(r.name(), r.text);
    }
}

// ---------------------------------------------------------------------------
// Prom tier

/// The prom tier (see [`crate::prom`]): each promtool run, dashboard
/// variable, panel query, rule and the alert check is one test.
fn prom_tier(root: &Path, release_built: bool) -> Counts {
    let mut counts = Counts::default();
    let record = |counts: &mut Counts, check: prom::Check| match check.result {
        Ok(detail) => {
            println!("ok: {}: {detail}", check.name);
            counts.pass();
        }
        Err(err) => {
            println!("FAILED: {}: {err:#}", check.name);
            counts.fail(format!("prom: {}", check.name));
        }
    };
    let tools = match prometheus::ensure() {
        Ok(t) => t,
        Err(err) => {
            println!("FAILED: prometheus and promtool: {err:#}");
            counts.fail(format!("prom: prometheus and promtool: {err}"));
            return counts;
        }
    };
    println!("using {} ({})", tools.promtool.display(), tools.package);
    for check in prom::promtool_checks(root, &tools) {
        record(&mut counts, check);
    }
    let tool = if release_built {
        println!("using the release binary built by the unit tier");
        Ok(target_dir(root).join("release").join("uacce-trace"))
    } else {
        build::build_release(Arch::host(), true, false)
            .and_then(|b| b.tool.context("cargo build reported no uacce-trace"))
    };
    let t = Instant::now();
    let scratch = target_dir(root).join("xtask-test").join("prom");
    match tool.and_then(|tool| prom::live_checks(root, &tools, &tool, &scratch)) {
        Ok(checks) => {
            for check in checks {
                record(&mut counts, check);
            }
            println!(
                "live check done in {:.1} s (logs in {})",
                t.elapsed().as_secs_f64(),
                scratch.display()
            );
        }
        Err(err) => {
            println!("FAILED: live check: {err:#}");
            counts.fail(format!("prom: live check: {err}"));
        }
    }
    flush();
    counts
}

// ---------------------------------------------------------------------------
// dist, in the unit tier

/// `cargo xtask dist` as tests of the unit tier: "dist: artifacts" (both
/// static binaries built, static and of their architecture, the host's
/// runs `--version` and `doctor`, both tarballs and .deb files and
/// SHA256SUMS written) and one "dist: lintian <deb>" per package (no tag
/// left that an override does not justify). About 4 minutes on a fresh
/// 2-core machine (the host's static build; the arm64 one is the VM
/// tier's), 40 s when built.
fn dist_test() -> Counts {
    let mut counts = Counts::default();
    let t = Instant::now();
    let out = match crate::base::workspace_root() {
        Ok(root) => root.join("target").join("dist"),
        Err(err) => {
            counts.fail(format!("dist: artifacts: {err:#}"));
            return counts;
        }
    };
    match crate::dist::dist(&crate::base::Arch::ALL, &out, true) {
        Ok(artifacts) => {
            println!(
                "ok dist: artifacts in {:.1} s: {}",
                t.elapsed().as_secs_f64(),
                artifacts
                    .files
                    .iter()
                    .filter_map(|f| f.file_name().and_then(|n| n.to_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            counts.pass();
            vm_dist_service(&artifacts.files, &mut counts);
            for deb in artifacts
                .files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "deb"))
            {
                let name = deb.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                let complaints: Vec<&String> = artifacts
                    .lintian
                    .iter()
                    .filter(|l| l.starts_with(name))
                    .collect();
                if complaints.is_empty() {
                    println!("ok dist: lintian {name}");
                    counts.pass();
                } else {
                    for c in &complaints {
                        println!("lintian: {c}");
                    }
                    counts.fail(format!("dist: lintian {name}"));
                }
            }
        }
        Err(err) => {
            println!("FAILED dist: {err:#}");
            counts.fail(format!("dist: artifacts: {err}"));
        }
    }
    flush();
    counts
}

/// "dist: systemd VM": the amd64 .deb installed and its service checked in
/// a Debian VM with systemd (`dist::service_vm`; ≈ 1 min, + ≈ 1 min for
/// debootstrap on the first run).
fn vm_dist_service(files: &[PathBuf], counts: &mut Counts) {
    let name = "dist: systemd VM (dpkg -i, the unit, capabilities, /metrics)";
    let Some(deb) = crate::dist::service_vm::amd64_deb(files) else {
        counts.fail(format!("{name}: no amd64 .deb"));
        return;
    };
    if !crate::toolchain::apt::is_root() {
        let why = "needs root (debootstrap builds the Debian root once)";
        if ci() {
            println!("FAIL {name}: {why} (a failure under CI=true)");
            counts.fail(format!("{name}: {why}"));
        } else {
            println!("SKIPPED {name}: {why}");
            counts.skip(name, why);
        }
        return;
    }
    let t = Instant::now();
    match crate::dist::service_vm::check(deb) {
        Ok(outcome) if outcome.failures.is_empty() => {
            println!("ok {name} in {:.1} s", t.elapsed().as_secs_f64());
            for n in &outcome.notes {
                println!("   {n}");
            }
            counts.pass();
        }
        Ok(outcome) => {
            println!("FAIL {name}:");
            for f in &outcome.failures {
                println!("   {f}");
            }
            counts.fail(name);
        }
        Err(err) => {
            println!("FAIL {name}: {err:#}");
            counts.fail(format!("{name}: {err}"));
        }
    }
    flush();
}

// VM tier

/// The VM matrix; with `release_built`, on the binaries the unit tier built.
fn vm_tier(release_built: bool) -> Counts {
    let mut counts = Counts::default();
    let args: &[&str] = if release_built {
        println!("using the release binaries built by the unit tier");
        &["--no-build"]
    } else {
        &[]
    };
    match vm_test::VmTestArgs::parse_from(args).and_then(|a| vm_test::run_matrix(&a)) {
        Ok(summary) => {
            counts.passed = summary.passed.len() as u64;
            for name in summary.failed {
                counts.fail(format!("vm: {name}"));
            }
        }
        Err(err) => {
            println!("FAILED: {err:#}");
            counts.fail(format!("vm: {err}"));
        }
    }
    counts
}

/// `cargo xtask demo --no-tui --record --check` (12-s workload, ~2 min) as
/// one test of the VM tier: the streamed recording shows the demo's
/// faulting and pinning processes and the pinning one's faults stopping.
///
/// Where the test kernel cannot be built, the demo falls back to a stock
/// kernel and its check only asks for pin calls: that counts as skipped,
/// with the reason, and fails under `CI=true`.
fn demo_test(release_built: bool) -> Counts {
    let name = "demo (streamed recording, checked)";
    let t = Instant::now();
    let result = crate::base::cache::vm_work().and_then(|dir| {
        let rec = dir.join("demo-test.utrace");
        crate::demo::run_demo(&crate::demo::DemoArgs::for_test(rec, release_built))
    });
    demo_outcome(name, t, result, ci())
}

/// The demo's before/after pinning pair (`--pin never`, `--pin early`,
/// 10 s each, both checked) and `uacce-trace compare` on it
/// ([`crate::demo::run_pin_pair`]): `--comm ml-infer` meets the goal with
/// ml-infer's request p99 reduced and its faulted tail eliminated (exit 0);
/// every process together does not (exit 1 or 3). The fallback is a skip,
/// as for [`demo_test`].
fn demo_pair_test(release_built: bool) -> Counts {
    let name = "demo before/after pinning (compare's request verdict)";
    let t = Instant::now();
    let result = crate::base::cache::vm_work()
        .and_then(|dir| crate::demo::run_pin_pair(&dir, release_built));
    demo_outcome(name, t, result, ci())
}

/// `cargo xtask sva` (one test): the patched QEMU built into the cache
/// when it is not there (`cargo xtask qemu`), the test kernel on its
/// emulated VT-d and SVA accelerator, the machine's own checks, then
/// `uacce-trace trace` with fentry, with kprobes and with the
/// `intel_iommu:prq_report` row forced (`--vendor-report`), each checked
/// against the SVA workloads ([`crate::sva`]).
fn sva_test(release_built: bool) -> Counts {
    let name = "sva (emulated VT-d + SVA accelerator; the tool with fentry, kprobe, prq_report)";
    let t = Instant::now();
    let args: &[&str] = if release_built { &["--no-build"] } else { &[] };
    let result = crate::sva::SvaArgs::parse_from(args).and_then(|a| crate::sva::run(&a));
    vm_outcome(name, t, result)
}

/// Seconds of the VM tier's `demo --sva` workload: 6 s of fault rounds, then
/// 6 s of pinned ones (3 s and 6 s per process: at least the 2 s its check
/// needs to see the faults stop).
const DEMO_SVA_SECONDS: u32 = 12;

/// `cargo xtask demo --sva --no-tui --record --check` (one test, 40-60 s
/// once QEMU is cached by [`sva_test`]): the stream from the SVA machine
/// shows each process's IOPFs, attributed through its PASID, equal to its
/// device queue's page-request count, stopping at its pin
/// ([`crate::demo::check_sva_recording`]). It has no fallback.
fn demo_sva_test(release_built: bool) -> Counts {
    let name = "demo --sva (streamed recording on the emulated SVA path, checked)";
    let t = Instant::now();
    let result = crate::base::cache::vm_work().and_then(|dir| {
        let rec = dir.join("demo-sva-test.utrace");
        crate::demo::run_demo(&crate::demo::DemoArgs::for_sva_test(
            rec,
            release_built,
            DEMO_SVA_SECONDS,
        ))
    });
    demo_outcome(name, t, result, ci())
}

/// The VM-tier counts of a demo run (see [`demo_test`]).
fn demo_outcome(name: &str, t: Instant, result: Result<DemoResult>, ci: bool) -> Counts {
    match result {
        Ok(DemoResult::Fallback(why)) => {
            let why = format!(
                "FALLBACK: stock-kernel run, only pins > 0 checked, no IO page fault checks \
                 ({why})"
            );
            let mut counts = Counts::default();
            if ci {
                println!("FAIL {name}: {why} (a failure under CI=true)");
                counts.fail(format!("vm: {name}: {why}"));
            } else {
                println!(
                    "SKIPPED {name} in {:.1} s: {why}",
                    t.elapsed().as_secs_f64()
                );
                counts.skip(format!("vm: {name}"), why);
            }
            flush();
            counts
        }
        other => vm_outcome(name, t, other.map(|o| o == DemoResult::Passed)),
    }
}

/// One VM-tier test that ran as a whole since `t`: `Ok(true)` passed,
/// `Ok(false)` failed its checks, `Err` could not run.
fn vm_outcome(name: &str, t: Instant, result: Result<bool>) -> Counts {
    let mut counts = Counts::default();
    match result {
        Ok(true) => {
            println!("PASS {name} in {:.1} s", t.elapsed().as_secs_f64());
            counts.pass();
        }
        Ok(false) => {
            println!("FAIL {name} in {:.1} s", t.elapsed().as_secs_f64());
            counts.fail(format!("vm: {name}"));
        }
        Err(err) => {
            println!("FAILED: {name}: {err:#}");
            counts.fail(format!("vm: {name}: {err}"));
        }
    }
    flush();
    counts
}

/// The soak (`cargo xtask soak`) as one test of the VM tier.
fn soak_test(minutes: u64, release_built: bool) -> Counts {
    if minutes == 0 {
        println!("SKIPPED: soak (--soak-minutes 0)");
        let mut counts = Counts::default();
        counts.skip("vm: soak", "--soak-minutes 0");
        return counts;
    }
    let args = soak::SoakArgs::for_test(minutes, release_built);
    let name = format!("soak ({} min)", args.minutes);
    println!("booting the soak VM ({} min)…", args.minutes);
    flush();
    let t = Instant::now();
    vm_outcome(&name, t, soak::run_soak(&args))
}

// ---------------------------------------------------------------------------
// Fuzz tier

/// The fuzz targets of `uacce-trace/fuzz/Cargo.toml`.
const FUZZ_TARGETS: &[&str] = &["decode", "rawfile", "hlog", "json"];

/// cargo-fuzz, from the project's tool cache, installed there (`cargo
/// install --root`, from the registry cargo is configured with) when
/// missing.
fn cargo_fuzz() -> Result<PathBuf> {
    let root = cache::tools()?;
    let bin = root.join("bin").join("cargo-fuzz");
    if bin.is_file() {
        return Ok(bin);
    }
    let status = run_inherit(
        Command::new("cargo")
            .env_remove("RUSTUP_TOOLCHAIN")
            .args(["install", "cargo-fuzz", "--locked", "--root"])
            .arg(&root),
    )?;
    if !status.success() || !bin.is_file() {
        anyhow::bail!(
            "`cargo install cargo-fuzz --root {}` failed ({status})",
            root.display()
        );
    }
    Ok(bin)
}

/// The host triple of nightly (cargo-fuzz builds for it explicitly, so the
/// binaries are under `<target-dir>/<triple>/release/`).
fn nightly_host() -> Result<String> {
    let out = Command::new("rustup")
        .args(["run", "nightly", "rustc", "-vV"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdin(Stdio::null())
        .output()
        .context("running rustc -vV (nightly)")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("`rustc -vV` of nightly names no host")
}

/// What libFuzzer's `-print_final_stats=1` says: executions, and the
/// `Done N runs in S second(s)` line.
fn fuzz_execs(output: &str) -> Option<u64> {
    output.lines().find_map(|l| {
        l.trim()
            .strip_prefix("stat::number_of_executed_units:")
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Builds every target once (`cargo +nightly fuzz build -a`: AddressSanitizer,
/// debug assertions and overflow checks), then runs each for `seconds`
/// (`-max_total_time`) from the committed seeds (`fuzz/seeds/<target>`) and
/// the corpus the earlier runs left. The target folder and the corpus live
/// in the cache (`fuzz/`), outside the clone, so a second run only
/// rebuilds what changed and starts from what the last one learnt. Each
/// target is one test: a crash (libFuzzer's non-zero exit) fails it and
/// names the input libFuzzer saved under `uacce-trace/fuzz/artifacts/`.
fn fuzz_tier(root: &Path, seconds: u64) -> Counts {
    let mut counts = Counts::default();
    let fuzz_dir = root.join("uacce-trace").join("fuzz");
    let cache = match cache::root() {
        Ok(c) => c.join("fuzz"),
        Err(e) => {
            counts.fail(format!("fuzz: cache folder: {e:#}"));
            return counts;
        }
    };
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !nightly {
        println!(
            "FAILED: the fuzz tier needs the nightly toolchain (rustup toolchain install nightly)"
        );
        counts.fail("fuzz: no nightly toolchain");
        return counts;
    }
    let t = Instant::now();
    let bin = match cargo_fuzz() {
        Ok(b) => b,
        Err(e) => {
            println!("FAILED: cargo-fuzz: {e:#}");
            counts.fail(format!("fuzz: cargo-fuzz: {e}"));
            return counts;
        }
    };
    println!(
        "cargo-fuzz: {} ({:.1} s)",
        bin.display(),
        t.elapsed().as_secs_f64()
    );
    let target_dir = cache.join("target");
    let fuzz = |args: &[&str]| {
        let mut cmd = Command::new("rustup");
        cmd.current_dir(root.join("uacce-trace"))
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            // The library alone: no eBPF object, no bpf-linker.
            .env("UACCE_TRACE_EBPF_STUB", "1")
            .args(["run", "nightly"])
            .arg(&bin)
            .arg("fuzz")
            .args(args);
        cmd
    };
    let t = Instant::now();
    let target_s = target_dir.to_string_lossy().into_owned();
    match run_inherit(&mut fuzz(&["build", "-a", "--target-dir", &target_s])) {
        Ok(s) if s.success() => {
            println!(
                "built the fuzz targets in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
        other => {
            let why = match other {
                Ok(s) => s.to_string(),
                Err(e) => format!("{e:#}"),
            };
            println!("FAILED: cargo fuzz build ({why})");
            counts.fail("fuzz: build");
            return counts;
        }
    }
    // The binaries just built are run directly (what `cargo fuzz run` does
    // after building again): the run tests exactly what was built, even
    // when the sources change meanwhile.
    let bin_dir = match nightly_host() {
        Ok(triple) => target_dir.join(triple).join("release"),
        Err(e) => {
            println!("FAILED: {e:#}");
            counts.fail(format!("fuzz: {e}"));
            return counts;
        }
    };
    let mut table = Vec::new();
    for target in FUZZ_TARGETS {
        let corpus = cache.join("corpus").join(target);
        let artifacts = fuzz_dir.join("artifacts").join(target);
        if let Err(e) =
            std::fs::create_dir_all(&corpus).and_then(|()| std::fs::create_dir_all(&artifacts))
        {
            counts.fail(format!("fuzz {target}: corpus/artifacts folder: {e}"));
            continue;
        }
        let seeds = fuzz_dir.join("seeds").join(target);
        let mut cmd = Command::new(bin_dir.join(target));
        cmd.arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(format!("-max_total_time={seconds}"))
            .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
            .arg(&corpus);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        println!("$ {}", describe(&cmd));
        flush();
        let t = Instant::now();
        // libFuzzer reports on stderr: keep it for the stats, show the tail.
        let out = cmd.stdin(Stdio::null()).output();
        let secs = t.elapsed().as_secs_f64();
        match out {
            Ok(o) => {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                let execs = fuzz_execs(&text);
                let shown = execs.map_or_else(|| "?".into(), |n| n.to_string());
                table.push(format!(
                    "  {target:<8} {shown:>12} execs  {secs:>6.1} s  {}",
                    if o.status.success() { "ok" } else { "CRASH" }
                ));
                if o.status.success() && execs.is_some_and(|n| n > 0) {
                    println!("ok: fuzz {target}: {shown} execs in {secs:.1} s");
                    counts.pass();
                } else {
                    let lines: Vec<&str> = text.lines().collect();
                    // The panic message (with its location), then the tail
                    // (libFuzzer's summary and the input's file name).
                    for (i, l) in lines.iter().enumerate() {
                        if l.contains("panicked at") || l.contains("ERROR: AddressSanitizer") {
                            for l in lines.iter().skip(i).take(2) {
                                println!("  | {l}");
                            }
                            println!("  | …");
                            break;
                        }
                    }
                    for l in lines.iter().skip(lines.len().saturating_sub(20)) {
                        println!("  | {l}");
                    }
                    println!(
                        "FAILED: fuzz {target} ({}); a crashing input is kept under {}",
                        o.status,
                        fuzz_dir.join("artifacts").join(target).display()
                    );
                    counts.fail(format!("fuzz: {target}"));
                }
            }
            Err(e) => {
                println!("FAILED: fuzz {target}: {e}");
                counts.fail(format!("fuzz: {target}: {e}"));
            }
        }
        flush();
    }
    println!("fuzz targets (execs in {seconds} s each):");
    for row in table {
        println!("{row}");
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_stats() {
        let out = "INFO: Seed: 1\n#2 INITED\nDone 123 runs in 30 second(s)\n\
                   stat::number_of_executed_units: 123456\nstat::peak_rss_mb: 80\n";
        assert_eq!(fuzz_execs(out), Some(123_456));
        assert_eq!(fuzz_execs("crash\n"), None);
    }

    #[test]
    fn libtest_lines() {
        let mut p = LibtestParser::default();
        for line in [
            "running 3 tests",
            "test a::b ... ok",
            "test a::c ... FAILED",
            "test a::d ... ignored",
            "test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; \
             finished in 0.01s",
            "test e ... ignored, writes the seeds",
            "test result: ok. 7 passed; 0 failed; 1 ignored; 0 measured; 2 filtered out; \
             finished in 1.00s",
            "test x ... FAILED extra",
        ] {
            p.line(line);
        }
        assert_eq!(p.results, 2);
        assert_eq!(
            p.counts,
            Counts {
                passed: 8,
                failed: 1,
                skipped: 2,
                failures: vec!["unit: a::c".into()],
                skips: vec![
                    ("unit: a::d".into(), "#[ignore]".into()),
                    ("unit: e".into(), "#[ignore]: writes the seeds".into()),
                ],
                notes: vec![],
            }
        );
    }

    /// A scratch file for one test.
    fn scratch_file(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir.join(name)
    }

    /// Appends raw lines to a record file.
    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open");
        f.write_all(text.as_bytes()).expect("write");
    }

    /// Skips recorded during a binary's run move its tests from passed to
    /// skipped at its `test result:` line, by name; a test that failed
    /// keeps its failure; a half-written line waits for its end.
    #[test]
    fn recorded_skips_move_tests_from_passed_to_skipped() {
        let skips = scratch_file("skips.tsv");
        let notes = scratch_file("notes.tsv");
        let mut p = LibtestParser {
            skip_file: Some(RecordFile::create(skips.clone()).expect("skip file")),
            note_file: Some(RecordFile::create(notes.clone()).expect("note file")),
            ..LibtestParser::default()
        };
        p.line("running 4 tests");
        append(&skips, "host_bpf\tdoctor\tnot root\n");
        append(&skips, "host_bpf\tbroken\tno tmux\n");
        append(&notes, "host_bpf\tverifier\tverified (2): a, b\n");
        for line in [
            "test doctor ... ok",
            "test verifier ... ok",
            "test plain ... ok",
            "test broken ... FAILED",
        ] {
            p.line(line);
        }
        // The next binary's skip, half written when this one ends.
        append(&skips, "cli\tlater");
        p.line("test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out");
        assert_eq!(
            (p.counts.passed, p.counts.failed, p.counts.skipped),
            (2, 1, 1)
        );
        assert_eq!(
            p.counts.skips,
            vec![("unit: host_bpf: doctor".into(), "not root".into())]
        );
        assert_eq!(
            p.counts.notes,
            vec![(
                "unit: host_bpf: verifier".into(),
                "verified (2): a, b".into()
            )]
        );
        assert_eq!(p.counts.failures, vec!["unit: broken".to_string()]);

        append(&skips, "\ttmux missing\n");
        p.line("test later ... ok");
        p.line("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
        assert_eq!(
            (p.counts.passed, p.counts.failed, p.counts.skipped),
            (2, 1, 2)
        );
        assert_eq!(
            p.counts.skips[1],
            ("unit: cli: later".into(), "tmux missing".into())
        );
        // A record whose name libtest did not print (a skip from another
        // thread) still moves one pass; never below zero.
        append(&skips, "unknown-name\twhy\nmore\twhy\n");
        p.line("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
        assert_eq!(
            (p.counts.passed, p.counts.failed, p.counts.skipped),
            (2, 1, 3)
        );
        assert_eq!(
            p.counts.skips[2],
            ("unit: unknown-name".into(), "why".into())
        );
        let _ = std::fs::remove_file(skips);
        let _ = std::fs::remove_file(notes);
    }

    /// What the tests' helper writes is what the runner reads; under CI a
    /// missing prerequisite the project installs fails instead.
    #[test]
    fn the_tests_helper_writes_what_the_runner_reads() {
        use crate::test_skip::{self as helper, Lack};
        assert_eq!(helper::SKIP_FILE_ENV, SKIP_FILE_ENV);
        assert_eq!(helper::NOTE_FILE_ENV, NOTE_FILE_ENV);
        let path = scratch_file("helper.tsv");
        let mut file = RecordFile::create(path.clone()).expect("record file");
        let reason = "no\ttmux\nsecond line";
        helper::skip_in(Lack::Setup, reason, false, Some(path.as_os_str()));
        helper::skip_in(Lack::Host, "no BTF", true, Some(path.as_os_str()));
        let records = file.take_new();
        let me = helper::test_name();
        assert!(
            me.ends_with("the_tests_helper_writes_what_the_runner_reads"),
            "{me}"
        );
        assert_eq!(
            records,
            vec![
                Record {
                    binary: "xtask".into(),
                    test: me.clone(),
                    text: "no tmux | second line".into(),
                },
                Record {
                    binary: "xtask".into(),
                    test: me,
                    text: "no BTF".into(),
                },
            ]
        );
        for lack in [Lack::Setup, Lack::Root] {
            let p = path.clone();
            let failed = std::thread::spawn(move || {
                helper::skip_in(lack, "missing", true, Some(p.as_os_str()));
            })
            .join();
            assert!(failed.is_err(), "{lack:?} under CI must fail");
        }
        assert!(file.take_new().is_empty(), "a CI failure records no skip");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn closing_line() {
        let mut c = Counts::default();
        c.pass();
        c.fail("x");
        assert_eq!(c.line(), "1 passed, 1 failed, 0 skipped");
        c.skip("unit: host_bpf: doctor", "not root");
        c.skip("vm tier", "not run (--only unit)");
        c.notes
            .push(("unit: host_bpf: v".into(), "verified (1): a".into()));
        assert_eq!(
            closing(&c),
            "notes:\n  unit: host_bpf: v: verified (1): a\n\
             skipped:\n  unit: host_bpf: doctor: not root\n  vm tier: not run (--only unit)\n\
             failed:\n  x\n\
             1 passed, 1 failed, 2 skipped\n"
        );
        let mut ok = Counts::default();
        ok.pass();
        assert_eq!(closing(&ok), "1 passed, 0 failed, 0 skipped\n");
    }

    /// The demo's stock-kernel fallback is a skip with its reason, and a
    /// failure under CI.
    #[test]
    fn demo_fallback_is_not_a_pass() {
        let t = Instant::now();
        let fallback = || Ok(DemoResult::Fallback("no compiler".into()));
        let c = demo_outcome("demo", t, fallback(), false);
        assert_eq!((c.passed, c.failed, c.skipped), (0, 0, 1));
        assert!(c.skips[0].1.contains("FALLBACK") && c.skips[0].1.contains("no compiler"));
        let c = demo_outcome("demo", t, fallback(), true);
        assert_eq!((c.passed, c.failed, c.skipped), (0, 1, 0));
        let c = demo_outcome("demo", t, Ok(DemoResult::Passed), true);
        assert_eq!((c.passed, c.failed, c.skipped), (1, 0, 0));
        let c = demo_outcome("demo", t, Ok(DemoResult::Failed), false);
        assert_eq!((c.passed, c.failed, c.skipped), (0, 1, 0));
        let c = demo_outcome("demo", t, Err(anyhow::anyhow!("no qemu")), false);
        assert_eq!((c.passed, c.failed, c.skipped), (0, 1, 0));
    }

    #[test]
    fn vm_arguments() {
        assert!(vm_test::VmTestArgs::parse_from(&[]).is_ok());
        assert!(vm_test::VmTestArgs::parse_from(&["--no-build"]).is_ok());
        assert!(vm_test::VmTestArgs::parse_from(&["--bogus"]).is_err());
    }

    #[test]
    fn tier_selection() {
        let a = TestArgs {
            skip_vm: true,
            skip_lint: false,
            skip_fuzz: false,
            only: None,
            soak_minutes: 10,
            fuzz_seconds: 30,
        };
        assert!(a.runs(Tier::Lint) && a.runs(Tier::Unit) && !a.runs(Tier::Vm));
        let a = TestArgs {
            skip_vm: false,
            skip_lint: false,
            skip_fuzz: false,
            only: Some(Tier::Vm),
            soak_minutes: 2,
            fuzz_seconds: 30,
        };
        assert!(!a.runs(Tier::Lint) && !a.runs(Tier::Unit) && a.runs(Tier::Vm));
        assert!(!a.runs(Tier::Fuzz));
        assert_eq!(a.left_out(Tier::Vm), None);
        assert_eq!(
            a.left_out(Tier::Lint).as_deref(),
            Some("not run (--only vm)")
        );
    }

    #[test]
    fn left_out_tiers_say_why() {
        let a = TestArgs {
            skip_vm: true,
            skip_lint: false,
            skip_fuzz: true,
            only: None,
            soak_minutes: 10,
            fuzz_seconds: 30,
        };
        assert_eq!(a.left_out(Tier::Vm).as_deref(), Some("not run (--skip-vm)"));
        assert_eq!(
            a.left_out(Tier::Fuzz).as_deref(),
            Some("not run (--skip-fuzz)")
        );
        assert_eq!(a.left_out(Tier::Lint), None);
    }
}
