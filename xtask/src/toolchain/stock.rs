//! Stock Debian kernels for the VM tests (`vmlinuz`, `config`, `version`),
//! downloaded from other suites of the machine's own Debian mirror through
//! the private apt of [`super::apt`], and Debian's static busybox of a
//! foreign architecture for its guests. Part of `setup` ([`super::setup`]).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::apt::{self, Mirror, PackageRecord, PrivateApt};
use super::setup::{write_stamp, Step};
use crate::base::cache;
use crate::base::fs::{list_dir, move_file, remove_if_exists};
use crate::base::process::capture;
use crate::base::Arch;

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

pub fn ensure_kernels() -> Result<()> {
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
pub fn ensure_guest_busybox(arch: Arch) -> Result<()> {
    if arch == Arch::host() {
        return Ok(());
    }
    let step = Step::new(format!("guest busybox ({})", arch.debian()));
    let dest = guest_busybox(arch)?;
    if dest.is_file() {
        step.cached(&dest.display().to_string());
        return Ok(());
    }
    let got = unpack_host_package(GUEST_BUSYBOX_PACKAGE, arch, "work", &step)?;
    let unpacked = got.root();
    let binary = ["usr/bin/busybox", "bin/busybox"]
        .iter()
        .map(|p| unpacked.join(p))
        .find(|p| p.is_file())
        .with_context(|| format!("no busybox binary in {}", got.deb.display()))?;
    crate::base::arch::check_elf_machine(&binary, arch)?;
    let parent = dest.parent().context("busybox path has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let partial = dest.with_extension("partial");
    move_file(&binary, &partial)?;
    fs::rename(&partial, &dest)
        .with_context(|| format!("renaming {} to {}", partial.display(), dest.display()))?;
    let package = got.package();
    write_stamp(&parent.join("busybox.package"), &format!("{package}\n"))?;
    got.finish()?;
    step.done(&package);
    Ok(())
}

/// A package of the machine's own Debian suite, downloaded with the private
/// apt of that suite and architecture and unpacked (`dpkg-deb -x`) under
/// its `work` folder; [`Unpacked::finish`] removes it all again.
pub(super) struct Unpacked {
    pub record: PackageRecord,
    /// The downloaded `.deb`.
    pub deb: PathBuf,
    apt: PrivateApt,
    work: PathBuf,
}

impl Unpacked {
    /// The unpacked tree.
    pub fn root(&self) -> PathBuf {
        self.work.join("root")
    }

    /// `NAME VERSION`.
    pub fn package(&self) -> String {
        format!("{} {}", self.record.name, self.record.version)
    }

    /// Removes the download and the unpacked tree, and the suite's lists.
    pub fn finish(self) -> Result<()> {
        remove_if_exists(&self.work)?;
        self.apt.clean()
    }
}

/// Downloads `package` of `arch` from the machine's own suite and unpacks it
/// into the folder `work` of that suite's private apt state (callers that
/// may run one after the other use different names).
pub(super) fn unpack_host_package(
    package: &str,
    arch: Arch,
    work: &str,
    step: &Step,
) -> Result<Unpacked> {
    let suite = apt::host_codename()?;
    let mirror = apt::host_mirror()?;
    let apt_dir = private_apt_dir(&suite, arch)?;
    let apt = PrivateApt::for_arch(&apt_dir, &mirror, &suite, arch.debian())?;
    step.say(&format!(
        "apt-get update for suite {suite} ({})",
        arch.debian()
    ));
    apt.update()?;
    let record = apt.show(package)?.with_context(|| {
        format!(
            "suite {suite} has no package {package} for {}",
            arch.debian()
        )
    })?;
    step.say(&format!("downloading {} {}", record.name, record.version));
    let work = apt_dir.join(work);
    remove_if_exists(&work)?;
    let deb = apt.download(&record, &work.join("debs"))?;
    capture(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(work.join("root")),
    )
    .with_context(|| format!("unpacking {}", deb.display()))?;
    Ok(Unpacked {
        record,
        deb,
        apt,
        work,
    })
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
