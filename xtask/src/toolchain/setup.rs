//! `cargo xtask setup`: installs what the other xtask commands need, into the
//! xtask cache (see `base/cache.rs`), idempotently.
//!
//! 1. the nightly toolchain's `rust-src` (aya-build builds the eBPF crate
//!    with `-Z build-std=core`);
//! 2. bpf-linker, built against the nightly toolchain's own libLLVM (the
//!    default build wants LLVM development files of another version);
//! 3. the Debian packages the VM tests and benchmarks use, and the PyPI
//!    package `hdrhistogram` (a test decodes the tool's hlog files with it,
//!    as a second, independent reader);
//! 4. stock Debian kernels (`vmlinuz`, `config`, `version`) for the VM tests,
//!    downloaded from other suites of the machine's own Debian mirror
//!    ([`super::stock`]).
//!
//! Every step says on stderr what it does, or `ok (cached)` when it is done
//! already; a second run does nothing and needs no network. Other commands
//! declare the [`Need`]s they have and call [`ensure`] first.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::base::cache;
use crate::base::process::{capture, run_to_stderr};
use crate::base::Arch;
use crate::toolchain::apt;
use crate::toolchain::stock;

/// The bpf-linker release that is installed.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// The cargo-deb release `cargo xtask dist` builds the .deb files with.
const CARGO_DEB_VERSION: &str = "3.8.0";

/// Debian packages of `cargo xtask dist`: lintian checks the .deb files,
/// the arm64 cross binutils strip the arm64 binary (the amd64 ones come
/// with the host's gcc).
pub const DIST_PACKAGES: &[&str] = &["lintian", "binutils-aarch64-linux-gnu", "binutils"];

/// Debian packages the VM tests (qemu, busybox initramfs), the benchmarks
/// (bpftrace, bpftool as peers), the `top` end-to-end test (tmux) and the
/// `serve` test (a real Prometheus server) need on the host.
const HOST_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "gzip",
    "bpftrace",
    "bpftool",
    "tmux",
    "prometheus",
];

/// Debian packages for the arm64 tier: the emulator, and the cross C
/// toolchain that links the arm64 tool (see `build.rs`).
const ARM64_HOST_PACKAGES: &[&str] = &[
    "qemu-system-arm",
    "gcc-aarch64-linux-gnu",
    "libc6-dev-arm64-cross",
];

/// The cross linker and C library packages of [`ARM64_HOST_PACKAGES`].
const ARM64_CROSS_PACKAGES: &[&str] = &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"];

/// What `setup` does; everything by default.
#[derive(Debug, Clone, Copy)]
pub struct SetupOptions {
    /// nightly `rust-src` and bpf-linker.
    pub bpf_toolchain: bool,
    /// Debian packages on the host (needs root when some are missing).
    pub packages: bool,
    /// Stock Debian kernels for the VM tests.
    pub kernels: bool,
}

impl Default for SetupOptions {
    fn default() -> Self {
        Self {
            bpf_toolchain: true,
            packages: true,
            kernels: true,
        }
    }
}

/// Command-line flags of `cargo xtask setup`.
#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// Skip downloading the stock Debian kernels.
    #[arg(long)]
    pub no_kernels: bool,
    /// Skip installing Debian packages on the host.
    #[arg(long)]
    pub no_packages: bool,
    /// Skip nightly rust-src and bpf-linker.
    #[arg(long)]
    pub no_bpf_toolchain: bool,
}

impl From<&SetupArgs> for SetupOptions {
    fn from(args: &SetupArgs) -> Self {
        Self {
            bpf_toolchain: !args.no_bpf_toolchain,
            packages: !args.no_packages,
            kernels: !args.no_kernels,
        }
    }
}

/// What a command needs installed before it runs; each command declares
/// its list and calls [`ensure`] (so `demo` does not wait for the arm64
/// toolchain or stock kernels it never boots).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nightly `rust-src` and bpf-linker: building the eBPF programs.
    BpfToolchain,
    /// These Debian packages on the host.
    Packages(&'static [&'static str]),
    /// Every host package of the test tiers ([`HOST_PACKAGES`] and the
    /// arm64 tier's), the PyPI `hdrhistogram` and the arm64 Rust target.
    HostPackages,
    /// The stock Debian kernels and the arm64 guest busybox.
    StockKernels,
}

impl SetupOptions {
    /// The [`Need`]s these options select.
    pub fn needs(&self) -> Vec<Need> {
        let mut needs = Vec::new();
        if self.bpf_toolchain {
            needs.push(Need::BpfToolchain);
        }
        if self.packages {
            needs.push(Need::HostPackages);
        }
        if self.kernels {
            needs.push(Need::StockKernels);
        }
        needs
    }
}

/// Runs the selected setup steps.
pub fn run(opts: &SetupOptions) -> Result<()> {
    ensure(&opts.needs())
}

/// Installs what `needs` lists, in order, idempotently.
pub fn ensure(needs: &[Need]) -> Result<()> {
    let start = Instant::now();
    let root = cache::root()?;
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    for need in needs {
        match need {
            Need::BpfToolchain => {
                ensure_rust_src()?;
                ensure_bpf_linker()?;
            }
            Need::Packages(names) => ensure_packages(names)?,
            Need::HostPackages => {
                let wanted: Vec<&str> = HOST_PACKAGES
                    .iter()
                    .chain(ARM64_HOST_PACKAGES)
                    .copied()
                    .collect();
                ensure_packages(&wanted)?;
                ensure_python_hdrh()?;
                ensure_rust_target(Arch::Aarch64)?;
            }
            Need::StockKernels => {
                stock::ensure_kernels()?;
                stock::ensure_guest_busybox(Arch::Aarch64)?;
            }
        }
    }
    eprintln!(
        "setup: all done in {:.1} s (cache: {})",
        start.elapsed().as_secs_f64(),
        root.display()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Progress output

/// One step's progress lines on stderr.
pub(super) struct Step {
    label: String,
    start: Instant,
}

impl Step {
    pub(super) fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            start: Instant::now(),
        }
    }

    pub(super) fn cached(&self, detail: &str) {
        if detail.is_empty() {
            eprintln!("setup: {}: ok (cached)", self.label);
        } else {
            eprintln!("setup: {}: ok (cached: {detail})", self.label);
        }
    }

    pub(super) fn say(&self, msg: &str) {
        eprintln!("setup: {}: {msg}", self.label);
    }

    pub(super) fn done(&self, detail: &str) {
        let secs = self.start.elapsed().as_secs_f64();
        if detail.is_empty() {
            eprintln!("setup: {}: ok ({secs:.1} s)", self.label);
        } else {
            eprintln!("setup: {}: ok ({detail}; {secs:.1} s)", self.label);
        }
    }
}

/// Finds the host's bpftool (Debian package bpftool, installed by setup).
pub fn find_bpftool() -> Result<PathBuf> {
    for p in ["/usr/sbin/bpftool", "/sbin/bpftool", "/usr/bin/bpftool"] {
        if Path::new(p).is_file() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!("bpftool not found; run `cargo xtask setup` (installs the bpftool package)")
}

// ---------------------------------------------------------------------------
// Cross builds

/// What `cargo xtask build --target <arch>` needs: the Rust standard
/// library for the target (stable toolchain, the one that builds the tool)
/// and Debian's cross linker and C library.
pub fn ensure_cross(arch: Arch) -> Result<()> {
    ensure_rust_target(arch)?;
    if arch == Arch::Aarch64 {
        let step = Step::new("Debian cross toolchain (arm64)");
        let missing = apt::missing_packages(ARM64_CROSS_PACKAGES)?;
        if missing.is_empty() {
            step.cached(&ARM64_CROSS_PACKAGES.join(" "));
        } else {
            step.say(&format!("installing {}", missing.join(" ")));
            apt::install_packages(&missing)?;
            step.done(&missing.join(" "));
        }
    }
    Ok(())
}

/// `rustup target add <triple>` for the toolchain cargo uses in the
/// workspace (rustup resolves it from the workspace folder).
fn ensure_rust_target(arch: Arch) -> Result<()> {
    let triple = arch.rust_target();
    let step = Step::new(format!("Rust target {triple}"));
    let root = crate::base::workspace_root()?;
    let installed = capture(
        Command::new("rustup")
            .args(["target", "list", "--installed"])
            .current_dir(&root),
    )
    .context("rustup is needed to add the Rust target")?;
    if installed.lines().any(|l| l.trim() == triple) {
        step.cached("");
        return Ok(());
    }
    step.say(&format!("rustup target add {triple}"));
    run_to_stderr(
        Command::new("rustup")
            .args(["target", "add", triple])
            .current_dir(&root),
    )?;
    step.done("");
    Ok(())
}

// ---------------------------------------------------------------------------
// 1. rust-src

fn ensure_rust_src() -> Result<()> {
    let step = Step::new("nightly toolchain + rust-src");
    let toolchains = capture(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to manage the Rust toolchains")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        step.say("installing the nightly toolchain (minimal profile) with rust-src");
        run_to_stderr(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
        step.done("");
        return Ok(());
    }
    let installed = capture(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if installed.lines().any(|l| l.trim().starts_with("rust-src")) {
        step.cached("");
        return Ok(());
    }
    step.say("rustup component add rust-src --toolchain nightly");
    run_to_stderr(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))?;
    step.done("");
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. bpf-linker against nightly's libLLVM

/// The nightly toolchain's libLLVM: `libLLVM.so.<major>.<minor>-rust-<ver>`.
struct NightlyLlvm {
    path: PathBuf,
    file_name: String,
    major: u32,
}

fn find_nightly_llvm() -> Result<NightlyLlvm> {
    let sysroot = capture(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let mut found = Vec::new();
    for entry in fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let entry = entry.with_context(|| format!("reading {}", lib.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(rest) = name.strip_prefix("libLLVM.so.") else {
            continue;
        };
        if !rest.contains("-rust-") || !entry.path().is_file() {
            continue;
        }
        if let Some(major) = rest.split('.').next().and_then(|m| m.parse().ok()) {
            found.push(NightlyLlvm {
                path: entry.path(),
                file_name: name,
                major,
            });
        }
    }
    match found.len() {
        1 => found.pop().context("unreachable: one entry"),
        0 => bail!(
            "no libLLVM.so.<major>.<minor>-rust-* in {}; bpf-linker is built against it",
            lib.display()
        ),
        _ => bail!(
            "several libLLVM.so.*-rust-* files in {}: {}",
            lib.display(),
            found
                .iter()
                .map(|f| f.file_name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Makes `<prefix>/lib` hold exactly `libLLVM.so` and the exact file name,
/// both symlinks to nightly's libLLVM (stale links of an older nightly go).
fn link_llvm_prefix(prefix: &Path, llvm: &NightlyLlvm) -> Result<()> {
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    for entry in fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let entry = entry.with_context(|| format!("reading {}", lib.display()))?;
        let name = entry.file_name();
        let keep = name == "libLLVM.so" || name.to_str() == Some(llvm.file_name.as_str());
        if !keep {
            fs::remove_file(entry.path())
                .with_context(|| format!("removing stale {}", entry.path().display()))?;
        }
    }
    for name in ["libLLVM.so", llvm.file_name.as_str()] {
        let link = lib.join(name);
        if fs::read_link(&link).is_ok_and(|target| target == llvm.path) {
            continue;
        }
        if fs::symlink_metadata(&link).is_ok() {
            fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
        }
        std::os::unix::fs::symlink(&llvm.path, &link)
            .with_context(|| format!("linking {} -> {}", link.display(), llvm.path.display()))?;
    }
    Ok(())
}

/// Whether `bin --version` runs and reports the wanted release.
fn bpf_linker_works(bin: &Path) -> bool {
    reports_version(bin, BPF_LINKER_VERSION)
}

/// Whether `bin --version` runs and its output names `version`.
fn reports_version(bin: &Path, version: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| {
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(version)
        })
}

fn ensure_bpf_linker() -> Result<()> {
    let step = Step::new(format!("bpf-linker {BPF_LINKER_VERSION}"));
    let nightly = capture(Command::new("rustc").args(["+nightly", "--version"]))?
        .trim()
        .to_owned();
    let llvm = find_nightly_llvm()?;
    let prefix = cache::llvm_nightly()?;
    link_llvm_prefix(&prefix, &llvm)?;

    let bin = cache::bpf_linker()?;
    let stamp = cache::tools()?.join("bpf-linker.stamp");
    let stamp_text = format!(
        "bpf-linker {BPF_LINKER_VERSION}\nllvm {}\n{nightly}\n",
        llvm.file_name
    );
    let detail = format!("LLVM {} of {nightly}", llvm.major);
    if bpf_linker_works(&bin) {
        match fs::read_to_string(&stamp) {
            Ok(text) if text == stamp_text => {
                step.cached(&detail);
                return Ok(());
            }
            Err(err) if err.kind() == ErrorKind::NotFound => {
                // Installed the same way by hand before the stamp existed. It
                // loads, and the prefix now holds only this nightly's libLLVM
                // name, so it links against this nightly's LLVM.
                write_stamp(&stamp, &stamp_text)?;
                step.cached(&format!("{detail}; existing install recorded"));
                return Ok(());
            }
            Ok(_) => step.say("the nightly toolchain changed since the last build; rebuilding"),
            Err(err) => {
                return Err(err).with_context(|| format!("reading {}", stamp.display()));
            }
        }
    }

    let tools = cache::tools()?;
    step.say(&format!(
        "cargo install bpf-linker {BPF_LINKER_VERSION} --features llvm-{} against {} \
         (about a minute)",
        llvm.major, llvm.file_name
    ));
    // Run outside the workspace so its .cargo/config.toml does not apply.
    let root = cache::root()?;
    run_to_stderr(
        Command::new("cargo")
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features"])
            .arg(format!("llvm-{}", llvm.major))
            .arg("--root")
            .arg(&tools)
            .arg("--force")
            .env("LLVM_PREFIX", &prefix)
            .current_dir(&root),
    )
    .context("building bpf-linker")?;
    if !bpf_linker_works(&bin) {
        bail!(
            "{} was installed but `--version` does not run; check that {} links to {}",
            bin.display(),
            prefix.join("lib").display(),
            llvm.path.display()
        );
    }
    write_stamp(&stamp, &stamp_text)?;
    step.done(&detail);
    Ok(())
}

/// Installs cargo-deb [`CARGO_DEB_VERSION`] into the tools folder (from
/// the machine's configured cargo registry) unless that release is there;
/// returns its path.
pub fn ensure_cargo_deb() -> Result<PathBuf> {
    let step = Step::new(format!("cargo-deb {CARGO_DEB_VERSION}"));
    let bin = cache::tools()?.join("bin").join("cargo-deb");
    let works = |bin: &Path| reports_version(bin, CARGO_DEB_VERSION);
    if works(&bin) {
        step.cached("");
        return Ok(bin);
    }
    step.say(&format!(
        "cargo install cargo-deb {CARGO_DEB_VERSION} --locked (a few minutes)"
    ));
    // Outside the workspace, like bpf-linker.
    run_to_stderr(
        Command::new("cargo")
            .args([
                "install",
                "cargo-deb",
                "--version",
                CARGO_DEB_VERSION,
                "--locked",
            ])
            .arg("--root")
            .arg(cache::tools()?)
            .arg("--force")
            .current_dir(cache::root()?),
    )
    .context("building cargo-deb")?;
    if !works(&bin) {
        bail!(
            "{} was installed but `--version` does not report {CARGO_DEB_VERSION}",
            bin.display()
        );
    }
    step.done("");
    Ok(bin)
}

pub(super) fn write_stamp(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

// ---------------------------------------------------------------------------
// 3. Host packages

/// Installs the Debian packages of `wanted` that are missing (root).
fn ensure_packages(wanted: &[&str]) -> Result<()> {
    let step = Step::new("Debian packages");
    let missing = apt::missing_packages(wanted)?;
    if missing.is_empty() {
        step.cached(&wanted.join(" "));
        return Ok(());
    }
    step.say(&format!("installing {}", missing.join(" ")));
    apt::install_packages(&missing)?;
    let still = apt::missing_packages(wanted)?;
    if !still.is_empty() {
        bail!(
            "still missing after apt-get install: {}; try: {}",
            still.join(" "),
            apt::install_hint(&still)
        );
    }
    step.done(&missing.join(" "));
    Ok(())
}

/// The PyPI package whose `hdrh` module reads HdrHistogram interval logs.
const PYTHON_HDRH_PACKAGE: &str = "hdrhistogram";

/// Whether `python3 -c <code>` runs and exits 0.
fn python_ok(code: &str) -> bool {
    Command::new("python3")
        .args(["-c", code])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the PyPI package `hdrhistogram` for the machine's `python3`
/// when `import hdrh` fails, with the machine's own pip configuration
/// (python3 and pip come from Debian when missing).
fn ensure_python_hdrh() -> Result<()> {
    let step = Step::new(format!("python3 module hdrh (PyPI {PYTHON_HDRH_PACKAGE})"));
    if python_ok("import hdrh") {
        step.cached("");
        return Ok(());
    }
    if !python_ok("import pip") {
        let missing = apt::missing_packages(&["python3", "python3-pip"])?;
        if !missing.is_empty() {
            step.say(&format!("installing {}", missing.join(" ")));
            apt::install_packages(&missing)?;
        }
    }
    step.say(&format!("python3 -m pip install {PYTHON_HDRH_PACKAGE}"));
    let install = |extra: &[&str]| -> Result<String> {
        let out = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet"])
            .args(extra)
            .arg(PYTHON_HDRH_PACKAGE)
            .stdin(Stdio::null())
            .output()
            .context("running python3 -m pip")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            bail!(
                "python3 -m pip install {PYTHON_HDRH_PACKAGE} failed:\n{}",
                text.trim()
            )
        }
    };
    if let Err(err) = install(&[]) {
        // A Debian-managed python3 refuses system-wide installs (PEP 668);
        // this module is only a test helper, so install it anyway.
        if !format!("{err:#}").contains("externally-managed-environment") {
            return Err(err);
        }
        step.say("python3 is externally managed (PEP 668); retrying with --break-system-packages");
        install(&["--break-system-packages"])?;
    }
    if !python_ok("import hdrh") {
        bail!("`import hdrh` still fails after pip installed {PYTHON_HDRH_PACKAGE}");
    }
    step.done("");
    Ok(())
}
