//! `cargo xtask qemu`: builds the QEMU that emulates an SVA accelerator
//! faulting through an emulated Intel VT-d: Debian's QEMU source package
//! plus the project's patches in `xtask/qemu/`, x86_64 system emulator
//! only.
//!
//! 1. Source: `qemu` [`SOURCE_VERSION`] from Debian [`SOURCE_SUITE`]
//!    (`deb-src`), downloaded with a private apt ([`crate::toolchain::apt`])
//!    from the machine's own mirror into `qemu/download/`, then
//!    `dpkg-source -x` (Debian's patches applied) into
//!    `qemu/work/<version>/src/`. The version is pinned: the patches are
//!    written against it.
//! 2. Meson: QEMU 10.2 wants meson >= 1.5 and the machine's Debian
//!    (bookworm) has 1.0, so trixie's `meson` package (architecture `all`)
//!    is downloaded the same way and unpacked into `qemu/meson/<version>/`;
//!    it runs from there with `PYTHONPATH`, nothing is installed.
//! 3. Patches: [`PATCHES`] (`xtask/qemu/*.patch`), `patch -p1`. The set in
//!    place is remembered in the tree; a different set is first reversed,
//!    so that only the files it touches are rebuilt.
//! 4. `configure` with [`CONFIGURE_ARGS`] (x86_64-softmmu, only the SVA
//!    machine's devices, no optional features, no debug info, Debian's
//!    firmware folders) into `qemu/work/<version>/build/`
//!    (kept for incremental rebuilds), then `ninja qemu-system-x86_64` under
//!    `nice`, full output in `build.log` there.
//! 5. The binary, without its debug info, is copied into `qemu/<key>/` with
//!    `source` (package and version) and `build-seconds`; then it must list
//!    the `uacce-sva-test` device and the `svm` property of `intel-iommu`.
//!
//! The key hashes [`RECIPE_VERSION`], the source version, the configure
//! arguments and the patches. A cached result is returned without network.
//! The firmware (SeaBIOS, option ROMs) comes from Debian's `seabios`,
//! `qemu-system-data` and `ipxe-qemu` packages, which the source package
//! does not carry.
//!
//! Imports only `base` and `toolchain`; needs root only to install missing
//! Debian packages.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::base::cache;
use crate::base::fs::{elapsed, mib, remove_if_exists, write_if_changed, Lock};
use crate::base::process::{capture, run_logged, run_patch};
use crate::toolchain::apt::{self, PrivateApt};
use crate::toolchain::setup::{self, Need};

/// The Debian source package.
const SOURCE_PACKAGE: &str = "qemu";
/// The version the patches are written against.
pub const SOURCE_VERSION: &str = "1:10.2.2+ds-1";
/// The Debian suite whose source index lists it.
const SOURCE_SUITE: &str = "sid";
/// Suite and package of the meson that configures it.
const MESON_SUITE: &str = "trixie";
const MESON_PACKAGE: &str = "meson";

/// Patches applied to the unpacked source (`patch -p1`), in order:
/// (file name under `xtask/qemu/`, text). The Intel IOMMU's `svm` property
/// and the `uacce-sva-test` device; the device set of the SVA machine
/// (`configs/devices/x86_64-softmmu/uacce-sva.mak`: q35, the Intel IOMMU
/// and that device; q35 selects its chipset, serial port and ACPI).
const PATCHES: &[(&str, &str)] = &[
    (
        "uacce-sva-test.patch",
        include_str!("../qemu/uacce-sva-test.patch"),
    ),
    (
        "uacce-sva-devices.patch",
        include_str!("../qemu/uacce-sva-devices.patch"),
    ),
];

/// The device set of [`CONFIGURE_ARGS`] (`configs/devices/x86_64-softmmu/`),
/// added by `uacce-sva-devices.patch`.
const DEVICES: &str = "uacce-sva";

/// `configure` arguments: the x86_64 system emulator with only the devices
/// the SVA machine uses (`--without-default-devices`: 1,357 build steps
/// instead of 1,603), no optional libraries, no debug info (the cached
/// binary is stripped anyway; it only made the compile slower), no docs;
/// firmware from Debian's packages.
const CONFIGURE_ARGS: &[&str] = &[
    "--target-list=x86_64-softmmu",
    "--without-default-features",
    "--without-default-devices",
    "--with-devices-x86_64=uacce-sva",
    "--disable-debug-info",
    "--disable-docs",
    "--disable-werror",
    "--disable-download",
    "--disable-install-blobs",
    "--firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu",
];

/// Bumped whenever the steps below change what they produce.
const RECIPE_VERSION: &str = "1";

/// The program the result folder holds.
pub const PROGRAM: &str = "qemu-system-x86_64";

/// Debian packages the build needs, and the firmware the binary loads.
const BUILD_PACKAGES: &[&str] = &[
    "dpkg-dev",
    "gcc",
    "libc6-dev",
    "ninja-build",
    "pkg-config",
    "python3",
    "python3-setuptools",
    "python3-venv",
    "libglib2.0-dev",
    "zlib1g-dev",
    "libpixman-1-dev",
    "patch",
    "xz-utils",
    "binutils",
    "seabios",
    "qemu-system-data",
    "ipxe-qemu",
];

/// File in the source tree naming the patch set in place (its text).
const APPLIED: &str = ".uacce-trace-patches";
/// File in the build folder holding the configure arguments it was made with.
const CONFIGURED: &str = ".uacce-trace-configure";

/// Command-line flags of `cargo xtask qemu`.
#[derive(Debug, clap::Args)]
pub struct QemuArgs {
    /// Parallel ninja jobs (default: CPUs).
    #[arg(long)]
    jobs: Option<usize>,
}

/// `cargo xtask qemu`: the folder holding the patched QEMU, built first
/// when needed.
pub fn run(args: &QemuArgs) -> Result<()> {
    let dir = ensure(args.jobs)?;
    println!("{}", dir.join(PROGRAM).display());
    Ok(())
}

/// The patched QEMU binary, built first when the cache has none for the
/// current inputs. Progress goes to stderr.
pub fn ensure_qemu() -> Result<PathBuf> {
    Ok(ensure(None)?.join(PROGRAM))
}

fn root() -> Result<PathBuf> {
    Ok(cache::root()?.join("qemu"))
}

/// The key of the result folder.
fn cache_key() -> String {
    let fixed: Vec<&[u8]> = vec![
        RECIPE_VERSION.as_bytes(),
        SOURCE_VERSION.as_bytes(),
        b"configure",
    ];
    let args = CONFIGURE_ARGS.iter().map(|a| a.as_bytes());
    let patches = PATCHES
        .iter()
        .flat_map(|(name, text)| [name.as_bytes(), text.as_bytes()]);
    cache::key(fixed.into_iter().chain(args).chain(patches))
}

fn is_complete(dir: &Path) -> bool {
    ["source", "build-seconds", PROGRAM]
        .iter()
        .all(|f| dir.join(f).is_file())
}

fn ensure(jobs: Option<usize>) -> Result<PathBuf> {
    let start = Instant::now();
    let root = root()?;
    let dir = root.join(cache_key());
    if is_complete(&dir) {
        eprintln!("qemu: ok (cached: {SOURCE_PACKAGE} {SOURCE_VERSION})");
        return Ok(dir);
    }
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let _lock = Lock::acquire(&root.join(".lock"), "`cargo xtask qemu`")?;
    if is_complete(&dir) {
        return Ok(dir);
    }
    setup::ensure(&[Need::Packages(BUILD_PACKAGES)])?;
    let bare = SOURCE_VERSION
        .split_once(':')
        .map_or(SOURCE_VERSION, |(_, v)| v);
    let work = root.join("work").join(bare);
    let tree = work.join("src");
    let meson = ensure_meson(&root)?;
    ensure_source(&root, &tree)?;
    apply_patches(&tree)?;
    let devices = tree.join(format!("configs/devices/x86_64-softmmu/{DEVICES}.mak"));
    if !devices.is_file() {
        bail!("{} is missing after the patches", devices.display());
    }
    let build = work.join("build");
    let env_path = meson.join("usr/lib/python3/dist-packages");
    configure(&tree, &build, &env_path)?;
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let compile_start = Instant::now();
    let log = build.join("build.log");
    eprintln!(
        "qemu: nice ninja -j{jobs} {PROGRAM} (from scratch on 2 cores: 2-11 min, up to 35 min when they are shared; log {})",
        log.display()
    );
    let mut cmd = Command::new("nice");
    cmd.arg("ninja")
        .arg(format!("-j{jobs}"))
        .arg("-C")
        .arg(&build)
        .arg(PROGRAM)
        .env("PYTHONPATH", &env_path)
        .env("LC_ALL", "C");
    run_logged(&mut cmd, &log, "qemu: build").context("building QEMU")?;
    let compile_secs = compile_start.elapsed().as_secs();

    let partial = dir.with_extension("partial");
    remove_if_exists(&partial)?;
    fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    capture(
        Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(partial.join(PROGRAM))
            .arg(build.join(PROGRAM)),
    )
    .context("copying the QEMU binary without debug info")?;
    fs::write(
        partial.join("source"),
        format!("{SOURCE_PACKAGE} {SOURCE_VERSION} ({SOURCE_SUITE}) + xtask/qemu patches\n"),
    )
    .context("writing the source note")?;
    fs::write(partial.join("build-seconds"), format!("{compile_secs}\n"))
        .context("writing the build time")?;
    check_binary(&partial.join(PROGRAM))?;
    remove_if_exists(&dir)?;
    fs::rename(&partial, &dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    let size = fs::metadata(dir.join(PROGRAM)).map_or(0, |m| m.len());
    eprintln!(
        "qemu: ok ({PROGRAM} {:.1} MiB; compile {}, {} in all) -> {}",
        mib(size),
        elapsed(compile_start),
        elapsed(start),
        dir.display()
    );
    Ok(dir)
}

/// Trixie's meson, unpacked under `qemu/meson/<version>/`; returns that
/// folder (its `usr/lib/python3/dist-packages` goes on `PYTHONPATH`).
fn ensure_meson(root: &Path) -> Result<PathBuf> {
    let base = root.join("meson");
    if let Some(dir) = fs::read_dir(&base)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.join(".complete").is_file())
    {
        return Ok(dir);
    }
    let mirror = apt::host_mirror()?;
    let apt_dir = cache::apt()?.join(format!("{MESON_SUITE}-qemu"));
    let apt = PrivateApt::new(&apt_dir, &mirror, MESON_SUITE)?;
    eprintln!("qemu: apt-get update for suite {MESON_SUITE} (for {MESON_PACKAGE})");
    apt.update()?;
    let record = apt
        .show(MESON_PACKAGE)?
        .with_context(|| format!("suite {MESON_SUITE} has no package {MESON_PACKAGE}"))?;
    let deb = apt.download(&record, &root.join("download"))?;
    let dir = base.join(&record.version);
    remove_if_exists(&dir)?;
    fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    capture(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))
        .with_context(|| format!("unpacking {}", deb.display()))?;
    if !dir
        .join("usr/lib/python3/dist-packages/mesonbuild")
        .is_dir()
    {
        bail!("{} holds no mesonbuild package", deb.display());
    }
    fs::write(dir.join(".complete"), "").context("marking meson unpacked")?;
    apt.clean()?;
    eprintln!("qemu: meson {} ok", record.version);
    Ok(dir)
}

/// The unpacked source (`dpkg-source -x`) at `tree`, downloaded first when
/// `qemu/download/` lacks it.
fn ensure_source(root: &Path, tree: &Path) -> Result<()> {
    if tree.join("configure").is_file() && tree.join(".uacce-trace-complete").is_file() {
        return Ok(());
    }
    let start = Instant::now();
    let download = root.join("download");
    let mut dsc = download.join(apt::dsc_name(SOURCE_PACKAGE, SOURCE_VERSION));
    if !dsc.is_file() {
        let mirror = apt::host_mirror()?;
        let apt_dir = cache::apt()?.join(format!("{SOURCE_SUITE}-src"));
        let apt = PrivateApt::for_sources(&apt_dir, &mirror, SOURCE_SUITE)?;
        eprintln!("qemu: apt-get update for the sources of suite {SOURCE_SUITE}");
        apt.update()?;
        if !apt.has_source(SOURCE_PACKAGE, SOURCE_VERSION)? {
            bail!(
                "the mirror's {SOURCE_SUITE} sources no longer list {SOURCE_PACKAGE} \
                 {SOURCE_VERSION}, which xtask/qemu/*.patch are written for; port the \
                 patches to the version it lists (`apt-cache showsrc qemu` with {})",
                apt_dir.join("apt.conf").display()
            );
        }
        eprintln!("qemu: downloading {SOURCE_PACKAGE} {SOURCE_VERSION} (about 39 MB)");
        dsc = apt.download_source(SOURCE_PACKAGE, SOURCE_VERSION, &download)?;
        apt.clean()?;
    }
    remove_if_exists(tree)?;
    if let Some(parent) = tree.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    eprintln!("qemu: dpkg-source -x {}", dsc.display());
    capture(
        Command::new("dpkg-source")
            .arg("-x")
            .arg(&dsc)
            .arg(tree)
            .env("LC_ALL", "C"),
    )
    .with_context(|| format!("unpacking {}", dsc.display()))?;
    fs::write(tree.join(".uacce-trace-complete"), "").context("marking the source unpacked")?;
    eprintln!("qemu: source ok ({})", elapsed(start));
    Ok(())
}

/// The text of [`PATCHES`], concatenated in order.
fn patch_set() -> String {
    PATCHES.iter().map(|(_, text)| *text).collect()
}

/// Puts [`PATCHES`] in place in `tree`: an earlier set named by [`APPLIED`]
/// is reversed first; a patch that does not apply fails with patch's words.
fn apply_patches(tree: &Path) -> Result<()> {
    let applied_path = tree.join(APPLIED);
    let wanted = patch_set();
    let applied = fs::read_to_string(&applied_path).unwrap_or_default();
    if applied == wanted {
        return Ok(());
    }
    if !applied.is_empty() {
        if let Err(out) = run_patch(tree, &applied, &["-R"])? {
            bail!(
                "reversing the earlier patches in {} failed: {out}; remove that folder",
                tree.display()
            );
        }
        remove_if_exists(&applied_path)?;
        eprintln!("qemu: reversed the earlier patches");
    }
    for (name, text) in PATCHES {
        if let Err(out) = run_patch(tree, text, &["--forward"])? {
            bail!(
                "xtask/qemu/{name} does not apply to {}: {out}",
                tree.display()
            );
        }
        eprintln!("qemu: applied xtask/qemu/{name}");
    }
    write_if_changed(&applied_path, &wanted)
}

/// Runs `configure` into `build` unless it was made with the same arguments.
fn configure(tree: &Path, build: &Path, python_path: &Path) -> Result<()> {
    let wanted = CONFIGURE_ARGS.join("\n");
    let done = build.join(CONFIGURED);
    if build.join("build.ninja").is_file()
        && fs::read_to_string(&done).is_ok_and(|text| text == wanted)
    {
        return Ok(());
    }
    remove_if_exists(build)?;
    fs::create_dir_all(build).with_context(|| format!("creating {}", build.display()))?;
    eprintln!("qemu: configure {}", CONFIGURE_ARGS.join(" "));
    let log = build.join("configure.log");
    let mut cmd = Command::new("nice");
    cmd.arg(tree.join("configure"))
        .arg("--python=/usr/bin/python3")
        .args(CONFIGURE_ARGS)
        .current_dir(build)
        .env("PYTHONPATH", python_path)
        .env("LC_ALL", "C");
    run_logged(&mut cmd, &log, "qemu: configure").context("configuring QEMU")?;
    fs::write(&done, wanted).with_context(|| format!("writing {}", done.display()))
}

/// The built binary runs and offers what the patches add.
fn check_binary(program: &Path) -> Result<()> {
    let devices = capture(Command::new(program).args(["-device", "help"]))
        .context("listing the devices of the built QEMU")?;
    if !devices.contains("\"uacce-sva-test\"") {
        bail!("{} has no uacce-sva-test device", program.display());
    }
    let props =
        capture(Command::new(program).args(["-machine", "q35", "-device", "intel-iommu,help"]))
            .context("listing the properties of intel-iommu")?;
    if !props.lines().any(|l| l.trim_start().starts_with("svm=")) {
        bail!("{}'s intel-iommu has no svm property", program.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_covers_the_patches_and_arguments() {
        let key = cache_key();
        assert_eq!(key.len(), 16);
        assert_eq!(key, cache_key());
        assert!(PATCHES
            .iter()
            .all(|(_, text)| text.contains("uacce-sva-test") || text.contains("intel_iommu")));
        assert!(CONFIGURE_ARGS.contains(&"--target-list=x86_64-softmmu"));
        // The device set named on the command line is the one a patch adds.
        let arg = format!("--with-devices-x86_64={DEVICES}");
        assert!(CONFIGURE_ARGS.contains(&arg.as_str()));
        let mak = format!("+++ b/configs/devices/x86_64-softmmu/{DEVICES}.mak");
        assert!(PATCHES.iter().any(|(_, text)| text.contains(&mak)));
    }

    /// The patch touches only files that exist in the source (or adds new
    /// ones), with `a/` and `b/` prefixes for `patch -p1`.
    #[test]
    fn patch_headers_are_p1() {
        for (name, text) in PATCHES {
            let files: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("+++ "))
                .collect();
            assert!(!files.is_empty(), "{name}: no files");
            for file in files {
                assert!(file.starts_with("b/"), "{name}: {file}");
                assert!(!file.contains('\t'), "{name}: timestamp in {file}");
            }
        }
    }
}
