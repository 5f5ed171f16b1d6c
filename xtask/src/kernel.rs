//! `cargo xtask kernel`: builds the uacce-trace test kernel, a Linux 6.12
//! in which IO page faults really go through `iommu_report_device_fault()`
//! and `iopf_group_response()` (iommufd's self-test mock device) and which
//! has `/dev/uacce_ctrl` (the pin ioctls of the never-merged uacce_ctrl RFC,
//! from a fixture of ours built in).
//!
//! 1. Source: Debian's `linux-source-6.12` (suite trixie), downloaded with
//!    the private apt of [`crate::toolchain::apt`] from the machine's own mirror, its
//!    tarball unpacked into the cache (`test-kernels/source/<version>/`).
//! 2. Fixture: `xtask/kernel/uacce_ctrl/uacce_ctrl.c` copied into that tree
//!    as `drivers/misc/uacce/uacce_ctrl_fixture.c` and added to the folder's
//!    Makefile (built in: the kernel has no module support); likewise, on
//!    x86, `xtask/kernel/uacce_sva_test/uacce_sva_test.c` (the uacce driver
//!    of QEMU's SVA test accelerator, see `qemu.rs`). Then the
//!    patches of [`PATCHES`] (`xtask/kernel/*.patch`), `patch -p1`, once.
//! 3. Config: `make tinyconfig`, `xtask/kernel/test-kernel-6.12.config`
//!    merged with `merge_config.sh -m`, `make olddefconfig`; every `=y` of
//!    the fragment must survive.
//! 4. `make bzImage` out of tree (`test-kernels/build/<version>/`, kept for
//!    incremental rebuilds), full output in `build.log` there; then every
//!    function the tracer hooks must be a `FUNC` in vmlinux's BTF (bpftool).
//! 5. Guest headers: the (patched) uapi headers the guest programs compile
//!    against, copied into the result's `include/` (see [`GUEST_HEADERS`]).
//!    The programs themselves are built by `vm::programs` under their own
//!    cache key, so that editing one does not rebuild the kernel.
//!
//! The result is `test-kernels/<key>/` with `bzImage`, `config`,
//! `System.map`, `version` (the kernel release), `source` (the package and
//! its version) and `include/`; the key hashes the kernel's inputs in
//! `xtask/kernel/` (fragment, fixture, patches), the package version and
//! [`RECIPE_VERSION`]. A cached kernel is returned at once without network:
//! the version of the unpacked source is used (`--refresh` asks the mirror
//! for a newer package). The inputs are compiled into xtask, so the result
//! does not depend on the working directory.
//!
//! `--smoke` then boots the kernel (`smoke.rs`, a scenario on `vm/`).
//!
//! `--arm64` cross-compiles the same for arm64 (`ARCH=arm64
//! CROSS_COMPILE=aarch64-linux-gnu-`, fragment
//! `xtask/kernel/test-kernel-6.12-arm64.config`, result `Image`) into
//! `test-kernels/<key>-arm64/`, built in
//! `test-kernels/build/<version>-arm64/`.
//!
//! This module owns no VM harness and imports only `base` and `toolchain`:
//! the scenarios call [`ensure_test_kernel`] and boot the result with
//! `vm/`. [`hooked_functions`] is the symbol list the BTF check here and the
//! smoke test use. It needs root only to install missing Debian packages.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::base::cache;
use crate::base::fs::{
    elapsed, list_dir, mib, read_trimmed, remove_if_exists, write_if_changed, Lock,
};
use crate::base::process::{capture, run_logged, run_patch};
use crate::base::Arch;
use crate::toolchain::apt::{self, PrivateApt};

/// The Debian package holding the kernel source tarball.
const SOURCE_PACKAGE: &str = "linux-source-6.12";
/// The Debian suite it comes from.
const SOURCE_SUITE: &str = "trixie";

/// Config fragment merged over `make tinyconfig`.
const FRAGMENT: &str = include_str!("../kernel/test-kernel-6.12.config");
/// The arm64 fragment (`--arm64`): PL011 console, SMMUv3 with SVA (which
/// selects IOMMU_IOPF) instead of the x86 console and Intel IOMMU.
const FRAGMENT_ARM64: &str = include_str!("../kernel/test-kernel-6.12-arm64.config");

/// The config fragment of `arch`.
fn fragment(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => FRAGMENT,
        Arch::Aarch64 => FRAGMENT_ARM64,
    }
}

/// File name of the kernel image in the result folder (`bzImage` on x86,
/// the uncompressed `Image` on arm64, which QEMU boots directly).
pub fn image_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "bzImage",
        Arch::Aarch64 => "Image",
    }
}

/// The make target and its output in the build folder.
fn image_target(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::X86_64 => ("bzImage", "arch/x86/boot/bzImage"),
        Arch::Aarch64 => ("Image", "arch/arm64/boot/Image"),
    }
}
/// The `/dev/uacce_ctrl` fixture, built into the kernel.
const FIXTURE: &str = include_str!("../kernel/uacce_ctrl/uacce_ctrl.c");
/// Patches applied to the unpacked source (`patch -p1`), in order:
/// (file name under `xtask/kernel/`, text). The iommufd mock's
/// TRIGGER_IOPF gets two perm bits: report from a kworker, and a page
/// request that is not its group's last.
const PATCHES: &[(&str, &str)] = &[(
    "iommufd-selftest-iopf.patch",
    include_str!("../kernel/iommufd-selftest-iopf.patch"),
)];

/// Bumped whenever the steps below change what they produce, so that every
/// cached kernel is rebuilt (3: the guest programs left the kernel folder
/// and its key; it holds their headers instead).
const RECIPE_VERSION: &str = "3";

/// Where the fixture goes in the source tree, and the Makefile line that
/// builds it (the folder is entered only with `CONFIG_UACCE`).
const FIXTURE_IN_TREE: &str = "drivers/misc/uacce/uacce_ctrl_fixture.c";
const FIXTURE_MAKEFILE: &str = "drivers/misc/uacce/Makefile";
const FIXTURE_MAKE_LINE: &str = "obj-y += uacce_ctrl_fixture.o";

/// The driver of QEMU's `uacce-sva-test` accelerator (`xtask/qemu/`), a
/// uacce device with SVA; built into the x86 kernel only (the device sits
/// behind the emulated Intel IOMMU), so only the x86 key hashes it.
const SVA_DRIVER: &str = include_str!("../kernel/uacce_sva_test/uacce_sva_test.c");
const SVA_DRIVER_IN_TREE: &str = "drivers/misc/uacce/uacce_sva_test.c";
const SVA_DRIVER_MAKE_LINE: &str = "obj-$(CONFIG_X86) += uacce_sva_test.o";
/// Patches for the x86 kernel's SVA only, applied to the shared tree like
/// [`PATCHES`] but hashed into the x86 key only (what they change is
/// x86-only): Debian's 6.12.117 refuses `iommu_sva_bind_device` on x86
/// (`-EOPNOTSUPP`, a stable-kernel guard against the IOMMU walking freed
/// kernel page tables); the SVA test accelerator needs the bind.
const X86_PATCHES: &[(&str, &str)] = &[(
    "x86-sva-bind.patch",
    include_str!("../kernel/x86-sva-bind.patch"),
)];

/// Options the fragment does not name but the tests rely on; they must come
/// out of `olddefconfig` as `=y`.
const DERIVED_OPTIONS: &[&str] = &[
    // Selected by INTEL_IOMMU_SVM; without it the IOPF report is a stub.
    "CONFIG_IOMMU_IOPF",
    "CONFIG_IOMMU_SVA",
    // BPF trampolines (fentry/fexit) on x86.
    "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS",
    "CONFIG_KRETPROBES",
];

/// Debian packages the kernel build needs.
const BUILD_PACKAGES: &[&str] = &[
    "make",
    "gcc",
    "libc6-dev",
    "flex",
    "bison",
    "libelf-dev",
    "dwarves",
    "bc",
    "libssl-dev",
    "rsync",
    "xz-utils",
    "bpftool",
    "patch",
];

/// Files of a finished test kernel folder (besides [`GUEST_HEADERS`]).
const RESULT_FILES: &[&str] = &["bzImage", "config", "System.map", "version", "source"];

/// Folder of a test kernel folder that holds [`GUEST_HEADERS`] (an `-I`
/// folder for the guest programs).
pub const GUEST_INCLUDE: &str = "include";

/// Command-line flags of `cargo xtask kernel`.
#[derive(Debug, clap::Args)]
pub struct KernelArgs {
    /// Ask the mirror for a newer linux-source-6.12 than the unpacked one
    /// (needs network; rebuilds when there is one).
    #[arg(long)]
    refresh: bool,
    /// Parallel make jobs (default: CPUs + 1).
    #[arg(long)]
    jobs: Option<usize>,
    /// Then boot the kernel in QEMU and check the fixture, the symbols, BTF,
    /// kprobes and the IOPF workload.
    #[arg(long)]
    pub smoke: bool,
    /// Seconds the smoke VM may run before QEMU is killed.
    #[arg(long, default_value_t = 300)]
    pub smoke_timeout: u64,
    /// Cross-compile the arm64 test kernel (SMMUv3 + SVA) and its guest
    /// programs instead (Debian's aarch64-linux-gnu cross toolchain).
    #[arg(long)]
    arm64: bool,
}

impl KernelArgs {
    /// The architecture asked for.
    pub fn arch(&self) -> Arch {
        if self.arm64 {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }
}

/// `cargo xtask kernel` without `--smoke` (see `smoke.rs`): the kernel
/// folder, built first when needed.
pub fn run(args: &KernelArgs) -> Result<PathBuf> {
    ensure(args.refresh, args.jobs, args.arch())
}

/// The test kernel folder (see the module docs for its files), built first
/// when the cache has none for the current inputs. Progress goes to stderr.
pub fn ensure_test_kernel() -> Result<PathBuf> {
    ensure(false, None, Arch::X86_64)
}

/// [`ensure_test_kernel`] for `arch` (arm64: cross-compiled).
pub fn ensure_test_kernel_for(arch: Arch) -> Result<PathBuf> {
    ensure(false, None, arch)
}

// ---------------------------------------------------------------------------
// The whole build

fn ensure(refresh: bool, jobs: Option<usize>, arch: Arch) -> Result<PathBuf> {
    let start = Instant::now();
    let root = cache::test_kernels()?;
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    // A finished kernel is renamed into place whole, so it can be used
    // without waiting for a build of another kernel (arm64's takes long).
    if !refresh {
        if let Some(dir) = cached(&root, arch)? {
            return Ok(dir);
        }
    }
    let _lock = Lock::acquire(&root.join(".lock"), "`cargo xtask kernel`")?;

    if !refresh {
        if let Some(dir) = cached(&root, arch)? {
            return Ok(dir);
        }
    }
    let local = local_source(&root)?;

    ensure_packages(BUILD_PACKAGES)?;
    if arch != Arch::host() {
        crate::toolchain::setup::ensure_cross(arch)?;
    }
    let source = get_source(&root, local, refresh)?;
    let dir = root.join(cache_key_for(arch, &source.version));
    if is_complete(&dir, arch) {
        eprintln!("kernel: ok (cached: {SOURCE_PACKAGE} {})", source.version);
        return Ok(dir);
    }

    let build_dir = root.join("build").join(match arch {
        Arch::X86_64 => source.version.clone(),
        other => format!("{}-{}", source.version, other.debian()),
    });
    fs::create_dir_all(&build_dir).with_context(|| format!("creating {}", build_dir.display()))?;
    install_fixture(&source.tree)?;
    apply_patches(&source.tree)?;
    configure(&source.tree, &build_dir, arch)?;
    let jobs =
        jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() + 1));
    compile(&source.tree, &build_dir, jobs, arch)?;
    check_btf(&build_dir.join("vmlinux"))?;

    // Assemble next to the destination, then move it in place in one rename.
    let partial = dir.with_extension("partial");
    remove_if_exists(&partial)?;
    fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    copy_guest_headers(&source.tree, &partial.join(GUEST_INCLUDE))?;
    for (from, to) in [
        (image_target(arch).1, image_name(arch)),
        (".config", "config"),
        ("System.map", "System.map"),
        ("include/config/kernel.release", "version"),
    ] {
        let from = build_dir.join(from);
        fs::copy(&from, partial.join(to))
            .with_context(|| format!("copying {} into {}", from.display(), partial.display()))?;
    }
    fs::write(
        partial.join("source"),
        format!("{SOURCE_PACKAGE} {} ({SOURCE_SUITE})\n", source.version),
    )
    .with_context(|| format!("writing {}", partial.join("source").display()))?;
    remove_if_exists(&dir)?;
    fs::rename(&partial, &dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;

    let size = fs::metadata(dir.join(image_name(arch))).map_or(0, |m| m.len());
    eprintln!(
        "kernel: ok ({}, {} {:.1} MiB; {} in all) -> {}",
        read_trimmed(&dir.join("version"))?,
        image_name(arch),
        mib(size),
        elapsed(start),
        dir.display()
    );
    Ok(dir)
}

/// The finished kernel of `arch` for the unpacked source, if there is one.
fn cached(root: &Path, arch: Arch) -> Result<Option<PathBuf>> {
    let Some(source) = local_source(root)? else {
        return Ok(None);
    };
    let dir = root.join(cache_key_for(arch, &source.version));
    if !is_complete(&dir, arch) {
        return Ok(None);
    }
    eprintln!(
        "kernel: ok (cached: {}, {} {})",
        read_trimmed(&dir.join("version"))?,
        SOURCE_PACKAGE,
        source.version
    );
    Ok(Some(dir))
}

fn is_complete(dir: &Path, arch: Arch) -> bool {
    RESULT_FILES
        .iter()
        .map(|f| if *f == "bzImage" { image_name(arch) } else { f })
        .all(|f| dir.join(f).is_file())
        && GUEST_HEADERS
            .iter()
            .all(|(to, _)| dir.join(GUEST_INCLUDE).join(to).is_file())
}

/// [`cache_key`] of the kernel of `arch`: x86's also hashes the SVA test
/// driver; arm64's its fragment, and it ends in `-arm64`.
fn cache_key_for(arch: Arch, source_version: &str) -> String {
    match arch {
        Arch::X86_64 => {
            let patches: String = X86_PATCHES
                .iter()
                .map(|(name, text)| format!("{name}\0{text}\0"))
                .collect();
            cache_key(&format!("{source_version}\0{SVA_DRIVER}\0{patches}"))
        }
        other => format!(
            "{}-{}",
            cache_key(&format!(
                "{source_version}\0{}\0{}",
                other.debian(),
                fragment(other)
            )),
            other.debian()
        ),
    }
}

/// Cache key ([`cache::key`]) over the kernel's inputs: the guest programs
/// are not among them (`vm::programs` has their own key).
fn cache_key(source_version: &str) -> String {
    let fixed: [&[u8]; 4] = [
        RECIPE_VERSION.as_bytes(),
        source_version.as_bytes(),
        FRAGMENT.as_bytes(),
        FIXTURE.as_bytes(),
    ];
    let patches = PATCHES
        .iter()
        .flat_map(|(name, text)| [name.as_bytes(), text.as_bytes()]);
    cache::key(fixed.into_iter().chain(patches))
}

// ---------------------------------------------------------------------------
// Debian packages

fn ensure_packages(names: &[&str]) -> Result<()> {
    let missing = apt::missing_packages(names)?;
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("kernel: installing Debian packages {}", missing.join(" "));
    apt::install_packages(&missing)?;
    let still = apt::missing_packages(names)?;
    if !still.is_empty() {
        bail!(
            "still missing after apt-get install: {}; try: {}",
            still.join(" "),
            apt::install_hint(&still)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 1. Source

/// An unpacked kernel source tree.
struct Source {
    /// Debian version of the package it came from.
    version: String,
    /// The tree (holds `Makefile`, `scripts/`, ...).
    tree: PathBuf,
}

/// Marker written into `source/<version>/` once the tree is complete.
const COMPLETE_MARK: &str = ".complete";

/// The unpacked source in the cache, if there is a complete one (the newest
/// by modification time if, against expectations, there are several).
fn local_source(root: &Path) -> Result<Option<Source>> {
    let sources = root.join("source");
    let entries = match fs::read_dir(&sources) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {}", sources.display())),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", sources.display()))?;
        let Some(version) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let mark = entry.path().join(COMPLETE_MARK);
        let Ok(meta) = fs::metadata(&mark) else {
            continue;
        };
        let tree = entry.path().join(SOURCE_PACKAGE);
        if tree.join("Makefile").is_file() {
            found.push((meta.modified().ok(), Source { version, tree }));
        }
    }
    found.sort_by_key(|(modified, _)| *modified);
    Ok(found.pop().map(|(_, source)| source))
}

/// The source to build: the local one, or (when there is none, or
/// `refresh` finds a newer package) a freshly downloaded one. Older trees
/// and their build folders are removed when a new one arrives.
fn get_source(root: &Path, local: Option<Source>, refresh: bool) -> Result<Source> {
    if let (Some(source), false) = (&local, refresh) {
        return Ok(Source {
            version: source.version.clone(),
            tree: source.tree.clone(),
        });
    }
    let start = Instant::now();
    let mirror = apt::host_mirror()?;
    let apt_dir = cache::apt()?.join(SOURCE_SUITE);
    let apt = PrivateApt::new(&apt_dir, &mirror, SOURCE_SUITE)?;
    eprintln!(
        "kernel: apt-get update for suite {SOURCE_SUITE} (private state in {})",
        apt_dir.display()
    );
    apt.update()?;
    let record = apt
        .show(SOURCE_PACKAGE)?
        .with_context(|| format!("suite {SOURCE_SUITE} has no package {SOURCE_PACKAGE}"))?;
    if let Some(source) = local.filter(|s| s.version == record.version) {
        eprintln!("kernel: {SOURCE_PACKAGE} {} is the newest", source.version);
        apt.clean()?;
        return Ok(source);
    }

    let sources = root.join("source");
    let dest = sources.join(&record.version);
    let partial = sources.join(format!("{}.partial", record.version));
    remove_if_exists(&partial)?;
    fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    eprintln!(
        "kernel: downloading {SOURCE_PACKAGE} {}{}",
        record.version,
        record
            .size
            .map(|s| format!(" ({:.1} MiB)", mib(s)))
            .unwrap_or_default()
    );
    let deb = apt.download(&record, &partial.join("deb"))?;
    let unpacked = partial.join("deb-root");
    capture(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))
        .with_context(|| format!("unpacking {}", deb.display()))?;
    let tarball = find_tarball(&unpacked.join("usr/src"))?;
    let downloaded = elapsed(start);
    let unpack_start = Instant::now();
    eprintln!("kernel: unpacking {}", tarball.display());
    capture(
        Command::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(&partial),
    )
    .with_context(|| format!("unpacking {}", tarball.display()))?;
    remove_if_exists(&unpacked)?;
    remove_if_exists(&partial.join("deb"))?;
    let tree = partial.join(SOURCE_PACKAGE);
    if !tree.join("Makefile").is_file() {
        bail!("{} did not unpack to {}", tarball.display(), tree.display());
    }
    fs::write(partial.join(COMPLETE_MARK), format!("{}\n", record.version))
        .with_context(|| format!("writing {}", partial.join(COMPLETE_MARK).display()))?;
    remove_if_exists(&dest)?;
    fs::rename(&partial, &dest)
        .with_context(|| format!("renaming {} to {}", partial.display(), dest.display()))?;
    apt.clean()?;
    eprintln!(
        "kernel: source ok ({SOURCE_PACKAGE} {}; download {downloaded}, unpack {})",
        record.version,
        elapsed(unpack_start)
    );

    // One tree at a time: the others (and their build folders) are stale.
    for sub in ["source", "build"] {
        for (path, name) in list_dir(&root.join(sub))? {
            if name != record.version {
                eprintln!("kernel: removing stale {}", path.display());
                remove_if_exists(&path)?;
            }
        }
    }
    Ok(Source {
        version: record.version,
        tree: dest.join(SOURCE_PACKAGE),
    })
}

/// The `linux-source-*.tar.*` in the unpacked package's `usr/src`.
fn find_tarball(dir: &Path) -> Result<PathBuf> {
    list_dir(dir)?
        .into_iter()
        .find(|(_, name)| name.starts_with("linux-source-") && name.contains(".tar"))
        .map(|(path, _)| path)
        .with_context(|| format!("no linux-source-*.tar.* in {}", dir.display()))
}

// ---------------------------------------------------------------------------
// 2. Fixture

/// Copies the fixture and the SVA test driver into the tree and adds them
/// to the folder's Makefile;
/// files that are already right are left alone (their times too, so make
/// does not rebuild them).
fn install_fixture(tree: &Path) -> Result<()> {
    for (in_tree, source, make_line) in [
        (FIXTURE_IN_TREE, FIXTURE, FIXTURE_MAKE_LINE),
        (SVA_DRIVER_IN_TREE, SVA_DRIVER, SVA_DRIVER_MAKE_LINE),
    ] {
        write_if_changed(&tree.join(in_tree), source)?;
        let makefile = tree.join(FIXTURE_MAKEFILE);
        let text = fs::read_to_string(&makefile)
            .with_context(|| format!("reading {}", makefile.display()))?;
        if !text.lines().any(|l| l.trim() == make_line) {
            let mut text = text;
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str("# uacce-trace test fixture (cargo xtask kernel)\n");
            text.push_str(make_line);
            text.push('\n');
            fs::write(&makefile, text)
                .with_context(|| format!("writing {}", makefile.display()))?;
        }
    }
    Ok(())
}

/// Applies [`PATCHES`] to `tree` (shared by every build of this source
/// version): a patch that already reverses cleanly is in place and left
/// alone (the file keeps its time, so make does not rebuild it); one that
/// neither reverses nor applies fails the build with patch's own words.
fn apply_patches(tree: &Path) -> Result<()> {
    for (name, text) in PATCHES.iter().chain(X86_PATCHES) {
        if run_patch(tree, text, &["-R", "--dry-run"])?.is_ok() {
            continue;
        }
        if let Err(out) = run_patch(tree, text, &["--forward", "--dry-run"])? {
            bail!(
                "xtask/kernel/{name} does not apply to {} (a new source version?): {out}",
                tree.display()
            );
        }
        if let Err(out) = run_patch(tree, text, &["--forward"])? {
            bail!("applying xtask/kernel/{name} to {}: {out}", tree.display());
        }
        eprintln!("kernel: applied xtask/kernel/{name}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. Config

/// `make` in `tree`, building out of tree into `build_dir`.
/// [`make`] for a kernel of `arch` (`ARCH=` and `CROSS_COMPILE=` when it is
/// not the host's).
fn make_for(tree: &Path, build_dir: &Path, arch: Arch) -> Command {
    let mut cmd = Command::new("make");
    if arch == Arch::Aarch64 && Arch::host() != Arch::Aarch64 {
        cmd.args(["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-"]);
    }
    cmd.arg("-C")
        .arg(tree)
        .arg(format!("O={}", build_dir.display()))
        .env("LC_ALL", "C")
        // A jobserver of a calling make or cargo is not ours to use.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    cmd
}

fn configure(tree: &Path, build_dir: &Path, arch: Arch) -> Result<()> {
    let start = Instant::now();
    let wanted = fragment(arch);
    eprintln!(
        "kernel: config ({}): tinyconfig + xtask/kernel/test-kernel-6.12{}.config",
        arch.debian(),
        if arch == Arch::X86_64 { "" } else { "-arm64" }
    );
    capture(make_for(tree, build_dir, arch).arg("tinyconfig")).context("make tinyconfig")?;
    let fragment = build_dir.join("uacce-trace.config");
    fs::write(&fragment, wanted).with_context(|| format!("writing {}", fragment.display()))?;
    capture(
        Command::new(tree.join("scripts/kconfig/merge_config.sh"))
            .args(["-m", ".config", "uacce-trace.config"])
            .current_dir(build_dir)
            .env("LC_ALL", "C"),
    )
    .context("merging the config fragment")?;
    capture(make_for(tree, build_dir, arch).arg("olddefconfig")).context("make olddefconfig")?;

    let config_path = build_dir.join(".config");
    let config = fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let lost = lost_options(wanted, &config);
    if !lost.is_empty() {
        bail!(
            "these options of xtask/kernel/test-kernel-6.12.config are not `=y` after \
             olddefconfig (a dependency is missing from the fragment): {}; see {}",
            lost.join(" "),
            config_path.display()
        );
    }
    eprintln!("kernel: config ok ({})", elapsed(start));
    Ok(())
}

/// The `=y` options of `fragment` (and [`DERIVED_OPTIONS`]) that `config`
/// does not set to `y`.
fn lost_options(fragment: &str, config: &str) -> Vec<String> {
    let set: Vec<&str> = config
        .lines()
        .filter_map(|l| l.strip_suffix("=y"))
        .collect();
    fragment
        .lines()
        .filter_map(|l| l.trim().strip_suffix("=y"))
        .filter(|name| name.starts_with("CONFIG_"))
        .chain(DERIVED_OPTIONS.iter().copied())
        .filter(|name| !set.contains(name))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------
// 4. Compile

fn compile(tree: &Path, build_dir: &Path, jobs: usize, arch: Arch) -> Result<()> {
    let log = build_dir.join("build.log");
    let target = image_target(arch).0;
    eprintln!(
        "kernel: make -j{jobs} {target} (about 6 min on 2 cores from scratch; log {})",
        log.display()
    );
    let mut cmd = make_for(tree, build_dir, arch);
    cmd.arg(format!("-j{jobs}")).arg(target);
    run_logged(&mut cmd, &log, "kernel: build").context("building the kernel")
}

/// The functions the test kernel must keep in BTF as `FUNC`s, hookable
/// with fentry and kprobes: the hook catalog's test-kernel functions
/// (`uacce_trace_common::hooks`, the one list of what the tool hooks) and
/// the `/dev/uacce_ctrl` fixture's own open and release, which the smoke
/// test checks although the tool does not hook them.
pub fn hooked_functions() -> Vec<&'static str> {
    ["uacce_ctrl_open", "uacce_ctrl_release"]
        .into_iter()
        .chain(uacce_trace_common::hooks::test_kernel_functions())
        .collect()
}

/// Checks that every one of [`hooked_functions`] is a `FUNC` in the BTF of
/// `vmlinux` (the same BTF the kernel exposes at /sys/kernel/btf/vmlinux).
fn check_btf(vmlinux: &Path) -> Result<()> {
    let dump = capture(
        Command::new("bpftool")
            .args(["btf", "dump", "file"])
            .arg(vmlinux),
    )
    .context("dumping the kernel's BTF")?;
    let missing = missing_btf_funcs(&dump, &hooked_functions());
    if !missing.is_empty() {
        bail!(
            "not in the BTF of {} as FUNC (inlined or renamed?): {}",
            vmlinux.display(),
            missing.join(" ")
        );
    }
    eprintln!(
        "kernel: BTF ok ({} hooked functions)",
        hooked_functions().len()
    );
    Ok(())
}

/// The names of `wanted` that no `[id] FUNC 'name' ...` line of a
/// `bpftool btf dump` declares.
fn missing_btf_funcs<'a>(dump: &str, wanted: &[&'a str]) -> Vec<&'a str> {
    let funcs: std::collections::HashSet<&str> = dump
        .lines()
        .filter_map(|l| l.split_once("] FUNC '"))
        .filter_map(|(_, rest)| rest.split_once('\''))
        .map(|(name, _)| name)
        .collect();
    wanted
        .iter()
        .filter(|name| !funcs.contains(*name))
        .copied()
        .collect()
}

// ---------------------------------------------------------------------------
// 5. Guest headers

/// Headers the guest programs take from the tree the kernel is built from
/// (the self-test op numbers are positional, and the patches add perm
/// bits), as path under [`GUEST_INCLUDE`] -> tree path.
pub const GUEST_HEADERS: &[(&str, &str)] = &[
    ("linux/iommufd.h", "include/uapi/linux/iommufd.h"),
    ("iommufd_test.h", "drivers/iommu/iommufd/iommufd_test.h"),
];

/// Copies [`GUEST_HEADERS`] from `tree` into `include`.
fn copy_guest_headers(tree: &Path, include: &Path) -> Result<()> {
    for (to, from) in GUEST_HEADERS {
        let to = include.join(to);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::copy(tree.join(from), &to).with_context(|| {
            format!("copying {} to {}", tree.join(from).display(), to.display())
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Small helpers

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_kernel_is_its_own() {
        assert_ne!(
            cache_key_for(Arch::X86_64, "6.12.1-1"),
            cache_key_for(Arch::Aarch64, "6.12.1-1")
        );
        // Only x86 builds the SVA test driver in, so only its key has it.
        assert_ne!(
            cache_key_for(Arch::X86_64, "6.12.1-1"),
            cache_key("6.12.1-1")
        );
        assert!(cache_key_for(Arch::Aarch64, "6.12.1-1").ends_with("-arm64"));
        // SVA of the SMMUv3 selects IOMMU_IOPF there; nothing x86 is asked for.
        assert!(FRAGMENT_ARM64.contains("CONFIG_ARM_SMMU_V3_SVA=y"));
        assert!(!FRAGMENT_ARM64.contains("INTEL_IOMMU"));
        assert!(!FRAGMENT_ARM64.contains("SERIAL_8250"));
        assert_eq!(image_name(Arch::Aarch64), "Image");
    }

    #[test]
    fn fragment_options_are_well_formed() {
        for line in FRAGMENT
            .lines()
            .chain(FRAGMENT_ARM64.lines())
            .map(str::trim)
        {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            assert!(
                line.starts_with("CONFIG_") && line.ends_with("=y"),
                "unexpected fragment line {line:?}"
            );
        }
    }

    #[test]
    fn lost_options_found() {
        let fragment = "# c\nCONFIG_A=y\nCONFIG_B=y\n";
        let mut config = String::from("CONFIG_A=y\n# CONFIG_B is not set\n");
        for name in DERIVED_OPTIONS {
            config.push_str(&format!("{name}=y\n"));
        }
        assert_eq!(lost_options(fragment, &config), vec!["CONFIG_B"]);
        config.push_str("CONFIG_B=y\n");
        assert!(lost_options(fragment, &config).is_empty());
    }

    #[test]
    fn btf_funcs_from_dump() {
        let dump = "[1] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED\n\
                    [2] FUNC_PROTO '(anon)' ret_type_id=1 vlen=0\n\
                    [3] FUNC 'uacce_pin_page' type_id=2 linkage=static\n\
                    [4] FUNC 'uacce_pin_page_x' type_id=2 linkage=static\n";
        assert_eq!(
            missing_btf_funcs(dump, &["uacce_pin_page", "uacce_unpin_page", "int"]),
            vec!["uacce_unpin_page", "int"]
        );
    }

    /// The patches apply to the unpacked source, or are already in it.
    #[test]
    fn patches_fit_the_unpacked_source() {
        let Ok(root) = cache::test_kernels() else {
            eprintln!("SKIP: no cache folder");
            return;
        };
        let Ok(Some(source)) = local_source(&root) else {
            eprintln!("SKIP: no unpacked kernel source (`cargo xtask kernel` unpacks one)");
            return;
        };
        for (name, text) in PATCHES.iter().chain(X86_PATCHES) {
            let reverses = run_patch(&source.tree, text, &["-R", "--dry-run"]).unwrap();
            let applies = run_patch(&source.tree, text, &["--forward", "--dry-run"]).unwrap();
            // Exactly one: in place, or applies.
            assert!(
                reverses.is_ok() != applies.is_ok(),
                "{name}: {reverses:?} {applies:?}"
            );
        }
    }

    #[test]
    fn key_depends_on_version() {
        assert_ne!(cache_key("6.12.1-1"), cache_key("6.12.1-2"));
        assert_eq!(cache_key("6.12.1-1").len(), 16);
    }
}
