//! `cargo xtask dist`: the release artifacts, for x86_64 and aarch64, built
//! on this machine (arm64 cross-compiled):
//!
//! - the static `uacce-trace` of each architecture with its eBPF object
//!   embedded (`toolchain::build::build_static`, the same static glibc
//!   build the arm64 VM tests run), stripped;
//! - `uacce-trace-VERSION-ARCH-linux.tar.gz`: the binary, man pages, shell
//!   completions, the systemd unit and its sysusers.d file, the Grafana
//!   dashboards and Prometheus rules of `uacce-trace/dist/{grafana,prometheus}`
//!   (whatever files are there), README and licence files;
//! - `uacce-trace_VERSION-1_DEBARCH.deb` (cargo-deb, `[package.metadata.deb]`
//!   of `uacce-trace/Cargo.toml`) with the same files in the Debian places,
//!   checked by lintian (overrides in `uacce-trace/dist/debian/`, each with
//!   its reason);
//! - `SHA256SUMS` of all of them.
//!
//! With `--vm` (and in the unit tier), [`service_vm`] installs the amd64
//! `.deb` in a Debian VM with systemd and checks the running service.
//!
//! [`layout`] is the one list of what is shipped and where, for both
//! formats. Man pages and completions come from the binary itself
//! (`uacce-trace generate`, from its clap definitions), run on the host's
//! architecture. Every step prints its progress on stderr.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

pub mod service_vm;

use crate::base::arch::{check_elf_machine, has_interpreter};
use crate::base::process::{capture, run_to_stderr};
use crate::base::{workspace_root, Arch};
use crate::toolchain::build;
use crate::toolchain::setup::{self, Need};

/// Options of `cargo xtask dist`.
#[derive(clap::Args, Debug)]
pub struct DistArgs {
    /// Build only this architecture (x86_64-unknown-linux-gnu or
    /// aarch64-unknown-linux-gnu); both by default.
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
    /// Output folder (default: target/dist in the workspace).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Skip lintian on the .deb files.
    #[arg(long)]
    pub no_lintian: bool,
    /// Then install the amd64 .deb in a Debian VM with systemd, enable the
    /// unit, run a pin workload and check the service and its /metrics
    /// (see `service_vm`).
    #[arg(long)]
    pub vm: bool,
}

/// What `dist` produced, for the caller (the test tier).
#[derive(Debug, Default)]
pub struct Artifacts {
    /// Every artifact file, SHA256SUMS last.
    pub files: Vec<PathBuf>,
    /// Lintian's complaints (tags not overridden), per .deb.
    pub lintian: Vec<String>,
}

fn say(msg: &str) {
    eprintln!("dist: {msg}");
}

/// Runs `cargo xtask dist`; prints the artifacts with their sizes.
pub fn run(args: &DistArgs) -> Result<bool> {
    let arches = match &args.target {
        Some(t) => vec![Arch::from_rust_target(t)?],
        None => Arch::ALL.to_vec(),
    };
    let out = match &args.out {
        Some(o) => o.clone(),
        None => workspace_root()?.join("target").join("dist"),
    };
    let artifacts = dist(&arches, &out, !args.no_lintian)?;
    for f in &artifacts.files {
        let size = fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        println!("{:>10}  {}", size, f.display());
    }
    for complaint in &artifacts.lintian {
        println!("lintian: {complaint}");
    }
    let mut ok = artifacts.lintian.is_empty();
    if args.vm {
        let deb = service_vm::amd64_deb(&artifacts.files)
            .context("--vm needs the amd64 .deb (leave out --target or name x86_64)")?;
        let outcome = service_vm::check(deb)?;
        for n in &outcome.notes {
            println!("vm: {n}");
        }
        for f in &outcome.failures {
            println!("vm FAILED: {f}");
        }
        println!(
            "systemd VM: {}",
            if outcome.failures.is_empty() {
                "PASS"
            } else {
                "FAIL"
            }
        );
        ok &= outcome.failures.is_empty();
    }
    Ok(ok)
}

/// Builds the artifacts of `arches` into `out`; runs lintian when asked.
pub fn dist(arches: &[Arch], out: &Path, lintian: bool) -> Result<Artifacts> {
    let start = Instant::now();
    setup::ensure(&[Need::BpfToolchain, Need::Packages(setup::DIST_PACKAGES)])?;
    for &arch in arches {
        if arch != Arch::host() {
            setup::ensure_cross(arch)?;
        }
    }
    let cargo_deb = setup::ensure_cargo_deb()?;
    let root = workspace_root()?;
    let version = workspace_version(&root)?;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // Artifacts of an earlier run (another architecture, version) would sit
    // next to a SHA256SUMS that does not list them.
    for old in sorted_files(out)? {
        let name = file_name(&old)?;
        let ours = name == "SHA256SUMS"
            || (name.starts_with("uacce-trace-") && name.ends_with(".tar.gz"))
            || (name.starts_with("uacce-trace_") && name.ends_with(".deb"));
        if ours {
            fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
        }
    }

    // The host's binary writes the man pages and completions (they do not
    // depend on the architecture), so it is built even when not shipped.
    let mut binaries = Vec::new();
    let mut order = vec![Arch::host()];
    order.extend(arches.iter().copied().filter(|a| *a != Arch::host()));
    for arch in order {
        let t = Instant::now();
        say(&format!(
            "building the static binary for {}…",
            arch.rust_target()
        ));
        let bin = build::build_static(arch)?;
        check_elf_machine(&bin, arch)?;
        say(&format!(
            "{}: static, {} ({:.0} s)",
            bin.display(),
            file_type(&bin),
            t.elapsed().as_secs_f64()
        ));
        binaries.push((arch, bin));
    }
    let host_bin = &binaries[0].1;
    smoke_host_binary(host_bin, &version)?;
    let generated = out.join("generated");
    if generated.exists() {
        fs::remove_dir_all(&generated)
            .with_context(|| format!("removing {}", generated.display()))?;
    }
    say("writing man pages and completions (uacce-trace generate)…");
    capture(
        Command::new(host_bin)
            .arg("generate")
            .arg("--out")
            .arg(&generated),
    )?;

    let mut artifacts = Artifacts::default();
    for (arch, bin) in binaries.iter().filter(|(a, _)| arches.contains(a)) {
        let items = layout(&root, &generated)?;
        let stripped = strip(*arch, bin, out)?;
        let tarball = tarball(*arch, &version, &stripped, &items, &root, out)?;
        artifacts.files.push(tarball);
        let deb = deb(*arch, &cargo_deb, bin, &stripped, &items, &root, out)?;
        if lintian {
            artifacts.lintian.extend(run_lintian(&deb)?);
        }
        artifacts.files.push(deb);
    }
    let sums = out.join("SHA256SUMS");
    let names: Vec<String> = artifacts
        .files
        .iter()
        .filter_map(|f| f.file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .collect();
    let text = capture(Command::new("sha256sum").args(&names).current_dir(out))?;
    fs::write(&sums, text).with_context(|| format!("writing {}", sums.display()))?;
    artifacts.files.push(sums);
    say(&format!(
        "done in {:.0} s: {}",
        start.elapsed().as_secs_f64(),
        out.display()
    ));
    Ok(artifacts)
}

/// The workspace's version (`[workspace.package] version`).
fn workspace_version(root: &Path) -> Result<String> {
    let text = fs::read_to_string(root.join("Cargo.toml")).context("reading Cargo.toml")?;
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
        } else if in_package {
            if let Some(v) = line.strip_prefix("version").map(str::trim) {
                if let Some(v) = v.strip_prefix('=') {
                    return Ok(v.trim().trim_matches('"').to_owned());
                }
            }
        }
    }
    bail!("no version in [workspace.package] of Cargo.toml")
}

/// `file`'s description of `path`, or a note that `file` is missing.
fn file_type(path: &Path) -> String {
    Command::new("file")
        .arg("-b")
        .arg(path)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "(`file` not installed)".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

/// The host's static binary runs: `--version` names the workspace version,
/// and `doctor` reads this kernel (exit 0, or 1 when this kernel cannot
/// trace pins; a report either way).
fn smoke_host_binary(bin: &Path, version: &str) -> Result<()> {
    let v = capture(Command::new(bin).arg("--version"))?;
    if v.trim() != format!("uacce-trace {version}") {
        bail!("{} --version printed {:?}", bin.display(), v.trim());
    }
    let doctor = Command::new(bin)
        .arg("doctor")
        .output()
        .with_context(|| format!("running {} doctor", bin.display()))?;
    let text = String::from_utf8_lossy(&doctor.stdout);
    let code = doctor.status.code();
    if !matches!(code, Some(0 | 1)) || !text.contains("kernel") || !text.contains("hook plan") {
        bail!(
            "{} doctor failed ({}):\n{text}{}",
            bin.display(),
            doctor.status,
            String::from_utf8_lossy(&doctor.stderr)
        );
    }
    say(&format!(
        "{} runs here: --version {:?}, doctor exit {}",
        bin.display(),
        v.trim(),
        code.unwrap_or(-1)
    ));
    Ok(())
}

/// One shipped file: where it comes from, its path in the tarball (under
/// the top folder) and in the .deb's file system, its mode, and whether the
/// .deb holds it gzip'd (man pages, docs: Debian policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub src: PathBuf,
    pub tar: Option<String>,
    pub deb: Option<String>,
    pub mode: u32,
    pub gzip_in_deb: bool,
}

/// Every file shipped besides the binary, from the workspace `root` and
/// the `generated` man pages and completions. The systemd unit and the
/// sysusers file reach the .deb through cargo-deb's `systemd-units`
/// (which also writes the maintainer-script snippets), so they have no
/// `deb` path here.
pub fn layout(root: &Path, generated: &Path) -> Result<Vec<Item>> {
    let file = |src: PathBuf, tar: &str, deb: Option<&str>, gzip: bool| Item {
        src,
        tar: Some(tar.to_owned()),
        deb: deb.map(str::to_owned),
        mode: 0o644,
        gzip_in_deb: gzip,
    };
    let mut items = Vec::new();
    let man = generated.join("man");
    for page in sorted_files(&man)? {
        let name = file_name(&page)?;
        items.push(file(
            page.clone(),
            &format!("man/{name}"),
            Some(&format!("usr/share/man/man1/{name}")),
            true,
        ));
    }
    let completions = generated.join("completions");
    for (src, deb) in [
        (
            "uacce-trace.bash",
            "usr/share/bash-completion/completions/uacce-trace",
        ),
        (
            "_uacce-trace",
            "usr/share/zsh/vendor-completions/_uacce-trace",
        ),
        (
            "uacce-trace.fish",
            "usr/share/fish/vendor_completions.d/uacce-trace.fish",
        ),
    ] {
        items.push(file(
            completions.join(src),
            &format!("completions/{src}"),
            Some(deb),
            false,
        ));
    }
    let dist = root.join("uacce-trace").join("dist");
    items.push(file(
        dist.join("systemd/uacce-trace.service"),
        "systemd/uacce-trace.service",
        None,
        false,
    ));
    items.push(file(
        dist.join("systemd/uacce-trace.sysusers"),
        "sysusers.d/uacce-trace.conf",
        None,
        false,
    ));
    // Dashboards and rules: whatever is there, folders kept.
    for kind in ["grafana", "prometheus"] {
        let dir = dist.join(kind);
        if !dir.is_dir() {
            continue;
        }
        for f in walk(&dir)? {
            let rel = f
                .strip_prefix(&dir)
                .context("walked file outside its folder")?
                .to_str()
                .with_context(|| format!("non-UTF-8 name {}", f.display()))?
                .to_owned();
            items.push(file(
                f.clone(),
                &format!("{kind}/{rel}"),
                Some(&format!("usr/share/uacce-trace/{kind}/{rel}")),
                false,
            ));
        }
    }
    items.push(file(
        root.join("README.md"),
        "README.md",
        Some("usr/share/doc/uacce-trace/README.md"),
        true,
    ));
    // The .deb's copyright file (cargo-deb, from license-file) carries the
    // licence there.
    for licence in ["LICENSE-MIT", "LICENSE-APACHE"] {
        items.push(file(root.join(licence), licence, None, false));
    }
    items.push(Item {
        src: dist.join("debian/lintian-overrides"),
        tar: None,
        deb: Some("usr/share/lintian/overrides/uacce-trace".to_owned()),
        mode: 0o644,
        gzip_in_deb: false,
    });
    for item in &items {
        if !item.src.is_file() {
            bail!("{} is missing", item.src.display());
        }
    }
    Ok(items)
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .with_context(|| format!("no UTF-8 file name in {}", path.display()))
}

/// The files directly in `dir`, sorted.
fn sorted_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Every file under `dir`, recursively, sorted.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry
                .with_context(|| format!("reading {}", d.display()))?
                .path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// A stripped copy of `bin` in `out/ARCH/` (the embedded eBPF object is
/// data and stays); still static and of `arch`.
fn strip(arch: Arch, bin: &Path, out: &Path) -> Result<PathBuf> {
    let dir = out.join(arch.debian());
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dest = dir.join("uacce-trace");
    run_to_stderr(
        Command::new(arch.strip_tool())
            .args(["--strip-all", "--remove-section=.comment", "-o"])
            .arg(&dest)
            .arg(bin),
    )?;
    check_elf_machine(&dest, arch)?;
    if has_interpreter(&dest)? {
        bail!("{} is not static", dest.display());
    }
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    say(&format!(
        "{}: stripped {} -> {} bytes",
        arch.rust_target(),
        size(bin),
        size(&dest)
    ));
    Ok(dest)
}

/// The time stamp of every archived file: the last commit's, so the same
/// commit gives the same archives (`SOURCE_DATE_EPOCH` wins).
fn source_date_epoch(root: &Path) -> String {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return v;
    }
    capture(
        Command::new("git")
            .args(["log", "-1", "--format=%ct"])
            .current_dir(root),
    )
    .map(|s| s.trim().to_owned())
    .unwrap_or_else(|_| "0".to_owned())
}

/// Copies `src` to `dest` with `mode`, creating folders.
fn install(src: &Path, dest: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::copy(src, dest)
        .with_context(|| format!("copying {} to {}", src.display(), dest.display()))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", dest.display()))
}

/// `gzip -9n` of `path` in place (`path.gz`; no name or time stored).
fn gzip(path: &Path) -> Result<()> {
    run_to_stderr(Command::new("gzip").args(["-9nf"]).arg(path))
}

/// `uacce-trace-VERSION-ARCH-linux.tar.gz` in `out`.
fn tarball(
    arch: Arch,
    version: &str,
    bin: &Path,
    items: &[Item],
    root: &Path,
    out: &Path,
) -> Result<PathBuf> {
    let top = format!("uacce-trace-{version}-{}-linux", arch_name(arch));
    let stage = out.join(arch.debian()).join("tar");
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    install(bin, &stage.join(&top).join("uacce-trace"), 0o755)?;
    for item in items {
        if let Some(tar) = &item.tar {
            install(&item.src, &stage.join(&top).join(tar), item.mode)?;
        }
    }
    let name = format!("{top}.tar.gz");
    let path = out.join(&name);
    say(&format!("packing {name}…"));
    run_to_stderr(
        Command::new("tar")
            .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
            .arg(format!("--mtime=@{}", source_date_epoch(root)))
            .args(["--use-compress-program=gzip -9n", "-cf"])
            .arg(&path)
            .arg("-C")
            .arg(&stage)
            .arg(&top),
    )?;
    Ok(path)
}

/// The architecture's name in tarball names (`uname -m`'s).
fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64",
        Arch::Aarch64 => "aarch64",
    }
}

/// The .deb of `arch` in `out`: fills cargo-deb's staging tree next to the
/// unstripped binary (`target/<triple>/release/dist-root/`, which
/// `[package.metadata.deb] assets` names) and runs `cargo-deb --no-build`.
fn deb(
    arch: Arch,
    cargo_deb: &Path,
    bin: &Path,
    stripped: &Path,
    items: &[Item],
    root: &Path,
    out: &Path,
) -> Result<PathBuf> {
    let release = bin.parent().context("binary without a folder")?;
    let stage = release.join("dist-root");
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    install(stripped, &stage.join("usr/bin/uacce-trace"), 0o755)?;
    for item in items {
        if let Some(deb) = &item.deb {
            let dest = stage.join(deb);
            install(&item.src, &dest, item.mode)?;
            if item.gzip_in_deb {
                gzip(&dest)?;
            }
        }
    }
    let deb_dir = out.join(arch.debian()).join("deb");
    fs::create_dir_all(&deb_dir).with_context(|| format!("creating {}", deb_dir.display()))?;
    say(&format!("cargo-deb for {}…", arch.debian()));
    let printed = capture(
        Command::new(cargo_deb)
            .args(["--no-build", "--no-strip", "--no-separate-debug-symbols"])
            .args(["-p", "uacce-trace", "--target", arch.rust_target()])
            .arg("--output")
            .arg(&deb_dir)
            .env("SOURCE_DATE_EPOCH", source_date_epoch(root))
            .current_dir(root),
    )?;
    let made = printed
        .lines()
        .map(str::trim)
        .rfind(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .context("cargo-deb did not print the .deb it wrote")?;
    let dest = out.join(file_name(&made)?);
    fs::rename(&made, &dest)
        .with_context(|| format!("moving {} to {}", made.display(), dest.display()))?;
    Ok(dest)
}

/// lintian's tags for `deb` that no override covers (empty: clean).
fn run_lintian(deb: &Path) -> Result<Vec<String>> {
    say(&format!("lintian {}…", deb.display()));
    let out = Command::new("lintian")
        .args([
            "--fail-on",
            "none",
            "--display-info",
            "--no-tag-display-limit",
        ])
        .arg(deb)
        .output()
        .context("running lintian (setup installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let name = file_name(deb)?;
    Ok(lintian_complaints(&text)
        .into_iter()
        .map(|l| format!("{name}: {l}"))
        .collect())
}

/// Overrides of tags that a build may or may not trigger (the spelling
/// check on the binary's bytes, see the overrides file): lintian calls
/// them unused when a build does not, which is no complaint.
const VOLATILE_OVERRIDES: &[&str] = &["spelling-error-in-binary"];

/// The tags of lintian's output that count: every line but notes (`N:`,
/// e.g. its count of overridden hints) and unused overrides of
/// [`VOLATILE_OVERRIDES`].
fn lintian_complaints(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("N:"))
        .filter(|l| {
            !VOLATILE_OVERRIDES
                .iter()
                .any(|t| l.contains(&format!("unused-override {t} ")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lintian_output_filtered() {
        let text = "I: uacce-trace: unused-override spelling-error-in-binary * [usr/bin/uacce-trace] [x:27]\n\
                    N: 0 hints overridden; 1 unused override\n\
                    I: uacce-trace: unused-override no-md5sums-control-file [x:9]\n\
                    E: uacce-trace: statically-linked-binary [usr/bin/uacce-trace]\n";
        assert_eq!(
            lintian_complaints(text),
            vec![
                "I: uacce-trace: unused-override no-md5sums-control-file [x:9]",
                "E: uacce-trace: statically-linked-binary [usr/bin/uacce-trace]",
            ]
        );
    }

    #[test]
    fn version_of_the_workspace() -> Result<()> {
        let root = workspace_root()?;
        let v = workspace_version(&root)?;
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
        Ok(())
    }

    /// The Debian changelog's newest entry is the version being packaged
    /// (lintian cannot see a stale one: it checks the .deb's own version).
    #[test]
    fn debian_changelog_names_the_version() -> Result<()> {
        let root = workspace_root()?;
        let text = fs::read_to_string(root.join("uacce-trace/dist/debian/changelog"))?;
        let first = text.lines().next().unwrap_or_default();
        let want = format!("uacce-trace ({}-1) ", env!("CARGO_PKG_VERSION"));
        assert!(
            first.starts_with(&want),
            "changelog starts {first:?}, want {want:?}"
        );
        Ok(())
    }

    /// The shipped unit stays as locked down as measured: `systemd-analyze
    /// security --offline` (systemd 250+) rates it at most 2.0 (1.9 with
    /// systemd 252 when written), so an option dropped or a capability
    /// added shows here.
    #[test]
    fn unit_exposure_stays_low() -> Result<()> {
        let unit = workspace_root()?.join("uacce-trace/dist/systemd/uacce-trace.service");
        let out = match Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&unit)
            .output()
        {
            Ok(out) => out,
            Err(e) => {
                crate::test_skip::skip(
                    crate::test_skip::Lack::Host,
                    &format!("systemd-analyze cannot run here: {e}"),
                );
                return Ok(());
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| {
                l.split("Overall exposure level for uacce-trace.service: ")
                    .nth(1)
            })
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| {
                format!(
                    "no exposure level in:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
        Ok(())
    }

    /// Every dashboard and rule file under uacce-trace/dist/{grafana,
    /// prometheus} is shipped in both formats, and the layout names only
    /// files that exist (man pages and completions from a real generate
    /// are checked by `uacce-trace`'s own test).
    #[test]
    fn layout_ships_every_dist_file() -> Result<()> {
        let root = workspace_root()?;
        let generated = std::env::temp_dir().join(format!("xtask-dist-{}", std::process::id()));
        for f in [
            "man/uacce-trace.1",
            "completions/uacce-trace.bash",
            "completions/_uacce-trace",
            "completions/uacce-trace.fish",
        ] {
            let p = generated.join(f);
            fs::create_dir_all(p.parent().context("parent")?)?;
            fs::write(&p, "x")?;
        }
        let items = layout(&root, &generated)?;
        for kind in ["grafana", "prometheus"] {
            let dir = root.join("uacce-trace/dist").join(kind);
            if !dir.is_dir() {
                continue;
            }
            for f in walk(&dir)? {
                let item = items
                    .iter()
                    .find(|i| i.src == f)
                    .with_context(|| format!("{} is not shipped", f.display()))?;
                assert!(item.tar.as_deref().is_some_and(|t| t.starts_with(kind)));
                assert!(item
                    .deb
                    .as_deref()
                    .is_some_and(|d| d.starts_with("usr/share/uacce-trace/")));
            }
        }
        let tar: Vec<&str> = items.iter().filter_map(|i| i.tar.as_deref()).collect();
        for want in [
            "man/uacce-trace.1",
            "systemd/uacce-trace.service",
            "README.md",
            "LICENSE-MIT",
            "LICENSE-APACHE",
            "completions/_uacce-trace",
        ] {
            assert!(tar.contains(&want), "tarball lacks {want}");
        }
        let _ = fs::remove_dir_all(&generated);
        Ok(())
    }
}
