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
//!    downloaded from other suites of the machine's own Debian mirror.
//!
//! Every step says on stderr what it does, or `ok (cached)` when it is done
//! already; a second run does nothing and needs no network. Other commands
//! declare the [`Need`]s they have and call [`ensure`] first.

use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::base::cache;
use crate::base::fs::{list_dir, move_file, remove_if_exists};
use crate::base::process::{capture, run_to_stderr};
use crate::base::Arch;
use crate::toolchain::apt::{self, Mirror, PackageRecord, PrivateApt};

/// The bpf-linker release that is installed.
const BPF_LINKER_VERSION: &str = "0.13.0";

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

/// The Debian meta package whose dependencies lead to the current kernel
/// of architecture `arch` (`linux-image-amd64`, `linux-image-arm64`).
fn kernel_meta_package(arch: Arch) -> String {
    format!("linux-image-{}", arch.debian())
}

/// How many dependency levels below the meta package are searched for the
/// kernel image (7.2 in sid: meta -> linux-image-<ver> -> linux-binary-<ver>).
const KERNEL_SEARCH_DEPTH: usize = 3;

/// A stock Debian kernel the VM tests boot.
#[derive(Debug, Clone, Copy)]
pub struct StockKernel {
    /// Folder name under the kernels cache, e.g. `debian-6.12`.
    pub name: &'static str,
    /// Debian suite it is downloaded from.
    pub suite: &'static str,
    /// Expected `major.minor` of its release.
    pub series: &'static str,
    /// The architecture of the kernel (and of the VM that boots it).
    pub arch: Arch,
}

const STOCK_KERNELS: &[StockKernel] = &[
    StockKernel {
        name: "debian-6.1",
        suite: "bookworm",
        series: "6.1",
        arch: Arch::X86_64,
    },
    StockKernel {
        name: "debian-6.12",
        suite: "trixie",
        series: "6.12",
        arch: Arch::X86_64,
    },
    StockKernel {
        name: "debian-7.2",
        suite: "sid",
        series: "7.2",
        arch: Arch::X86_64,
    },
];

/// Stock arm64 kernels: Debian's generic arm64 6.12. Its SMMUv3 driver is
/// built in but without SVA, so IOMMU_IOPF is off and the IOPF core
/// functions do not exist; the pin tests and the SMMUv3 fallback rows of the
/// planner are checked on it.
const ARM64_KERNELS: &[StockKernel] = &[StockKernel {
    name: "debian-6.12-arm64",
    suite: "trixie",
    series: "6.12",
    arch: Arch::Aarch64,
}];

/// The stock arm64 kernels `setup` downloads.
#[allow(dead_code)] // for the VM test commands (the matrix names it)
pub fn arm64_kernel_list() -> &'static [StockKernel] {
    ARM64_KERNELS
}

/// The Debian package of the foreign guests' static busybox.
const GUEST_BUSYBOX_PACKAGE: &str = "busybox-static";

/// The static busybox for guests of `arch` (the host's own for the host
/// architecture; Debian's arm64 `busybox-static`, downloaded by `setup`,
/// for arm64).
pub fn guest_busybox(arch: Arch) -> Result<PathBuf> {
    Ok(cache::root()?
        .join("guest")
        .join(arch.debian())
        .join("busybox"))
}

/// The x86-64 stock kernels `setup` downloads, oldest first.
#[allow(dead_code)] // for the VM test commands
pub fn kernel_list() -> &'static [StockKernel] {
    STOCK_KERNELS
}

/// Folder of one stock kernel: `vmlinuz`, `config` (when the packages have
/// one), `version` (the kernel release, one line) and `packages`.
pub fn kernel_dir(name: &str) -> Result<PathBuf> {
    Ok(cache::kernels()?.join(name))
}

/// The kernel release string (`uname -r`) of an installed stock kernel.
#[allow(dead_code)] // for the VM test commands
pub fn kernel_release(name: &str) -> Result<String> {
    let path = kernel_dir(name)?.join("version");
    let text = fs::read_to_string(&path)
        .with_context(|| format!("reading {} (run `cargo xtask setup`)", path.display()))?;
    Ok(text.trim().to_owned())
}

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

impl SetupOptions {
    /// Only what building the eBPF programs needs.
    pub fn toolchain_only() -> Self {
        Self {
            bpf_toolchain: true,
            packages: false,
            kernels: false,
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

/// Everything: toolchain, host packages, kernels (for VM tests and benches).
#[allow(dead_code)] // for the VM test and bench commands
pub fn ensure_all() -> Result<()> {
    run(&SetupOptions::default())
}

/// Only what building the eBPF programs needs (rust-src, bpf-linker).
#[allow(dead_code)] // for the build commands
pub fn ensure_toolchain() -> Result<()> {
    run(&SetupOptions::toolchain_only())
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
                ensure_kernels()?;
                ensure_guest_busybox(Arch::Aarch64)?;
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
struct Step {
    label: String,
    start: Instant,
}

impl Step {
    fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            start: Instant::now(),
        }
    }

    fn cached(&self, detail: &str) {
        if detail.is_empty() {
            eprintln!("setup: {}: ok (cached)", self.label);
        } else {
            eprintln!("setup: {}: ok (cached: {detail})", self.label);
        }
    }

    fn say(&self, msg: &str) {
        eprintln!("setup: {}: {msg}", self.label);
    }

    fn done(&self, detail: &str) {
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
    Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION)
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

fn write_stamp(path: &Path, text: &str) -> Result<()> {
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

// ---------------------------------------------------------------------------
// 4. Stock kernels

fn ensure_kernels() -> Result<()> {
    let mut mirror: Option<Mirror> = None;
    for kernel in STOCK_KERNELS.iter().chain(ARM64_KERNELS) {
        ensure_kernel(kernel, &mut mirror)?;
    }
    Ok(())
}

/// The stock kernel `name` alone (the demo's fallback boots one).
pub fn ensure_stock_kernel(name: &str) -> Result<()> {
    let kernel = STOCK_KERNELS
        .iter()
        .chain(ARM64_KERNELS)
        .find(|k| k.name == name)
        .with_context(|| format!("unknown stock kernel {name:?}"))?;
    ensure_kernel(kernel, &mut None)
}

/// Downloads `kernel` unless it is in the cache; `mirror` is looked up once.
fn ensure_kernel(kernel: &StockKernel, mirror: &mut Option<Mirror>) -> Result<()> {
    let step = Step::new(format!("kernel {} ({})", kernel.name, kernel.suite));
    let dir = kernel_dir(kernel.name)?;
    if dir.join("vmlinuz").is_file() && dir.join("version").is_file() {
        let release = kernel_release(kernel.name)?;
        step.cached(&release);
        return Ok(());
    }
    let mirror = match mirror {
        Some(m) => m.clone(),
        None => {
            let m = apt::host_mirror()?;
            *mirror = Some(m.clone());
            m
        }
    };
    download_kernel(kernel, &mirror, &dir, &step)
        .with_context(|| format!("getting kernel {} from suite {}", kernel.name, kernel.suite))
}

/// Private apt state of one suite and architecture (amd64 keeps the
/// suite's plain name, as before arm64 was added).
fn private_apt_dir(suite: &str, arch: Arch) -> Result<PathBuf> {
    Ok(match arch {
        Arch::X86_64 => cache::apt()?.join(suite),
        other => cache::apt()?.join(format!("{suite}-{}", other.debian())),
    })
}

/// Downloads Debian's `busybox-static` of `arch` into [`guest_busybox`].
/// It comes from the host's own suite, so it is the same busybox version
/// (and applet list) as the host's: the image builder lists the applets
/// with the host's busybox, which cannot run the arm64 one.
fn ensure_guest_busybox(arch: Arch) -> Result<()> {
    if arch == Arch::host() {
        return Ok(());
    }
    let step = Step::new(format!("guest busybox ({})", arch.debian()));
    let dest = guest_busybox(arch)?;
    if dest.is_file() {
        step.cached(&dest.display().to_string());
        return Ok(());
    }
    let suite = apt::host_codename()?;
    let mirror = apt::host_mirror()?;
    let apt_dir = private_apt_dir(&suite, arch)?;
    let apt = PrivateApt::for_arch(&apt_dir, &mirror, &suite, arch.debian())?;
    step.say(&format!(
        "apt-get update for suite {suite} ({})",
        arch.debian()
    ));
    apt.update()?;
    let record = apt.show(GUEST_BUSYBOX_PACKAGE)?.with_context(|| {
        format!(
            "suite {suite} has no {GUEST_BUSYBOX_PACKAGE} for {}",
            arch.debian()
        )
    })?;
    step.say(&format!("downloading {} {}", record.name, record.version));
    let work = apt_dir.join("work");
    remove_if_exists(&work)?;
    let deb = apt.download(&record, &work.join("debs"))?;
    let unpacked = work.join("root");
    capture(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))
        .with_context(|| format!("unpacking {}", deb.display()))?;
    let binary = ["usr/bin/busybox", "bin/busybox"]
        .iter()
        .map(|p| unpacked.join(p))
        .find(|p| p.is_file())
        .with_context(|| format!("no busybox binary in {}", deb.display()))?;
    crate::base::arch::check_elf_machine(&binary, arch)?;
    let parent = dest.parent().context("busybox path has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let partial = dest.with_extension("partial");
    move_file(&binary, &partial)?;
    fs::rename(&partial, &dest)
        .with_context(|| format!("renaming {} to {}", partial.display(), dest.display()))?;
    write_stamp(
        &parent.join("busybox.package"),
        &format!("{} {}\n", record.name, record.version),
    )?;
    remove_if_exists(&work)?;
    apt.clean()?;
    step.done(&format!("{} {}", record.name, record.version));
    Ok(())
}

/// Files of a kernel found in unpacked packages.
struct KernelFiles {
    vmlinuz: PathBuf,
    config: Option<PathBuf>,
    release: String,
}

fn download_kernel(kernel: &StockKernel, mirror: &Mirror, dest: &Path, step: &Step) -> Result<()> {
    let apt_dir = private_apt_dir(kernel.suite, kernel.arch)?;
    let apt = PrivateApt::for_arch(&apt_dir, mirror, kernel.suite, kernel.arch.debian())?;
    step.say(&format!(
        "apt-get update for suite {} (private state in {})",
        kernel.suite,
        apt_dir.display()
    ));
    apt.update()?;
    let meta_name = kernel_meta_package(kernel.arch);
    let meta = apt
        .show(&meta_name)?
        .with_context(|| format!("suite {} has no package {meta_name}", kernel.suite))?;
    step.say(&format!("{} {}", meta.name, meta.version));

    let work = apt_dir.join("work");
    remove_if_exists(&work)?;
    let debs = work.join("debs");
    let unpacked = work.join("root");
    fs::create_dir_all(&unpacked).with_context(|| format!("creating {}", unpacked.display()))?;

    let mut visited = HashSet::from([meta.name.clone()]);
    let mut level = followed_dependencies(&apt, &meta, &mut visited)?;
    let mut used = Vec::new();
    let mut found = None;
    for _ in 0..KERNEL_SEARCH_DEPTH {
        if level.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for record in level {
            step.say(&format!(
                "downloading {} {}{}",
                record.name,
                record.version,
                record
                    .size
                    .map(|s| format!(" ({})", human_size(s)))
                    .unwrap_or_default()
            ));
            let deb = apt.download(&record, &debs)?;
            capture(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))
                .with_context(|| format!("unpacking {}", deb.display()))?;
            fs::remove_file(&deb).with_context(|| format!("removing {}", deb.display()))?;
            next.extend(followed_dependencies(&apt, &record, &mut visited)?);
            used.push(format!("{} {}", record.name, record.version));
        }
        found = find_kernel_files(&unpacked)?;
        if found.is_some() {
            break;
        }
        level = next;
    }
    let files = found.with_context(|| {
        format!(
            "no vmlinuz in {} or the packages it depends on ({})",
            meta.name,
            used.join(", ")
        )
    })?;
    if !release_in_series(&files.release, kernel.series) {
        bail!(
            "suite {} now carries kernel {} but {} expects {}.x; update STOCK_KERNELS in \
             xtask/src/toolchain/setup.rs",
            kernel.suite,
            files.release,
            kernel.name,
            kernel.series
        );
    }

    // Assemble next to the destination, then move it in place in one rename.
    let partial = dest.with_file_name(format!("{}.partial", kernel.name));
    remove_if_exists(&partial)?;
    fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    move_file(&files.vmlinuz, &partial.join("vmlinuz"))?;
    if let Some(config) = &files.config {
        move_file(config, &partial.join("config"))?;
    }
    write_stamp(&partial.join("version"), &format!("{}\n", files.release))?;
    write_stamp(&partial.join("packages"), &(used.join("\n") + "\n"))?;
    remove_if_exists(dest)?;
    fs::rename(&partial, dest)
        .with_context(|| format!("renaming {} to {}", partial.display(), dest.display()))?;

    remove_if_exists(&work)?;
    apt.clean()?;
    let size = fs::metadata(dest.join("vmlinuz"))
        .map(|m| m.len())
        .unwrap_or(0);
    step.done(&format!(
        "{}, vmlinuz {}{}",
        files.release,
        human_size(size),
        if files.config.is_some() {
            " + config"
        } else {
            ""
        }
    ));
    Ok(())
}

/// Whether a dependency may lead to the kernel image or its config.
fn followable(name: &str) -> bool {
    name.starts_with("linux-image-")
        || name.starts_with("linux-binary-")
        || name
            .strip_prefix("linux-base-")
            .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
}

/// The dependencies of `record` worth downloading, as candidate records
/// (`-unsigned` image variants preferred), skipping names already seen.
fn followed_dependencies(
    apt: &PrivateApt,
    record: &PackageRecord,
    visited: &mut HashSet<String>,
) -> Result<Vec<PackageRecord>> {
    let mut out = Vec::new();
    for group in &record.depends {
        let Some(name) = group.iter().find(|n| followable(n)) else {
            continue;
        };
        if !visited.insert(name.clone()) {
            continue;
        }
        if name.starts_with("linux-image-") && !name.ends_with("-unsigned") {
            let unsigned = format!("{name}-unsigned");
            if let Some(found) = apt.show(&unsigned)? {
                visited.insert(unsigned);
                out.push(found);
                continue;
            }
        }
        if let Some(found) = apt.show(name)? {
            out.push(found);
        }
    }
    Ok(out)
}

/// Looks for `boot/vmlinuz-<release>` or `usr/lib/modules/<release>/vmlinuz`
/// (regular files) and the matching config under `root`.
fn find_kernel_files(root: &Path) -> Result<Option<KernelFiles>> {
    let mut candidates: Vec<(PathBuf, String)> = Vec::new();
    for (entry, name) in list_dir(&root.join("boot"))? {
        if let Some(release) = name.strip_prefix("vmlinuz-") {
            candidates.push((entry, release.to_owned()));
        }
    }
    for modules in ["usr/lib/modules", "lib/modules"] {
        for (entry, release) in list_dir(&root.join(modules))? {
            candidates.push((entry.join("vmlinuz"), release));
        }
    }
    candidates.retain(|(path, _)| fs::symlink_metadata(path).is_ok_and(|m| m.is_file()));
    candidates.sort();
    let Some((vmlinuz, release)) = candidates.into_iter().next() else {
        return Ok(None);
    };
    let config = [
        root.join("boot").join(format!("config-{release}")),
        root.join("usr/lib/modules").join(&release).join("config"),
        root.join("lib/modules").join(&release).join("config"),
    ]
    .into_iter()
    .find(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()));
    Ok(Some(KernelFiles {
        vmlinuz,
        config,
        release,
    }))
}

/// Whether `release` (e.g. `6.12.57+deb13-amd64`) is of `series` (`6.12`).
fn release_in_series(release: &str, series: &str) -> bool {
    release
        .strip_prefix(series)
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with(|c: char| c.is_ascii_digit()))
}

fn human_size(bytes: u64) -> String {
    // Display only: precision loss in the conversion does not matter.
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_match() {
        assert!(release_in_series("6.1.0-40-amd64", "6.1"));
        assert!(!release_in_series("6.12.57+deb13-amd64", "6.1"));
        assert!(release_in_series("6.12.57+deb13-amd64", "6.12"));
        assert!(release_in_series("7.2+deb14-amd64", "7.2"));
        assert!(!release_in_series("7.20.1-amd64", "7.2"));
        assert!(!release_in_series("6.1", "6.1"));
    }

    #[test]
    fn followable_names() {
        assert!(followable("linux-image-6.1.0-40-amd64"));
        assert!(followable("linux-binary-7.2.13+deb14-amd64"));
        assert!(followable("linux-base-7.2.13+deb14-amd64"));
        assert!(!followable("linux-base"));
        assert!(!followable("linux-base-amd64"));
        assert!(!followable("linux-modules-7.2.13+deb14-amd64"));
        assert!(!followable("initramfs-tools"));
    }

    #[test]
    fn kernel_names_unique() {
        let all: Vec<&StockKernel> = kernel_list().iter().chain(arm64_kernel_list()).collect();
        let names: HashSet<_> = all.iter().map(|k| k.name).collect();
        assert_eq!(names.len(), all.len());
        assert!(kernel_list().iter().all(|k| k.arch == Arch::X86_64));
        assert!(arm64_kernel_list().iter().all(|k| k.arch == Arch::Aarch64));
        assert_eq!(kernel_meta_package(Arch::Aarch64), "linux-image-arm64");
    }
}
