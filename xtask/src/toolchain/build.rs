//! `cargo xtask build [--target T]`: the release binaries, for the host or
//! cross-compiled for arm64 (the HiSilicon Kunpeng platform the uacce users
//! run on).
//!
//! The eBPF object depends on the target architecture: kprobe programs read
//! their arguments from the architecture's `struct pt_regs` (`di`, `si`, …
//! on x86-64; `regs[0]`, `regs[1]`, … on arm64). aya-build takes
//! `bpf_target_arch` from `CARGO_CFG_TARGET_ARCH` of the build script that
//! calls it (`uacce-trace/build.rs`), which cargo sets to the *target's*
//! architecture, so a `--target aarch64-unknown-linux-gnu` build embeds an
//! object compiled with `--cfg bpf_target_arch="aarch64"`.
//!
//! The cross linker and static linking are passed through cargo's
//! per-target environment variables here, not through a committed
//! `.cargo/config.toml`, so a person's own builds are not affected. arm64
//! binaries are linked statically (glibc, `+crt-static`): the test VMs'
//! initramfs then needs no arm64 shared libraries, and the binary runs on
//! any arm64 Linux. [`build_static`] builds the host's architecture the
//! same way (`--target` named, so build scripts and proc macros stay
//! dynamic), for `cargo xtask dist`: the release artifacts of both
//! architectures are the binaries the VM tests run, linked the one way.
//!
//! Static glibc, not musl: it is what the arm64 VM tests have always run,
//! the binary resolves no names (no NSS: `--listen` takes an address, not a
//! host name) so static glibc's one caveat does not apply, and musl's
//! allocator is slower on the event path.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::base::arch::check_elf_machine;
use crate::base::Arch;

/// Options of `cargo xtask build`.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Rust target triple: x86_64-unknown-linux-gnu (the host) or
    /// aarch64-unknown-linux-gnu (cross-compiled, statically linked).
    #[arg(long, default_value = Arch::host().rust_target())]
    target: String,
    /// Also build the `uacce-workload` guest program of the VM tests.
    #[arg(long)]
    workload: bool,
}

/// Runs `cargo xtask build`: prints the path of each binary built.
pub fn run(args: &BuildArgs) -> Result<()> {
    let arch = Arch::from_rust_target(&args.target)?;
    super::setup::ensure(&[super::setup::Need::BpfToolchain])?;
    if arch != Arch::host() {
        crate::toolchain::setup::ensure_cross(arch)?;
    }
    let built = build_release(arch, true, args.workload)?;
    if let Some(tool) = &built.tool {
        println!("{}", tool.display());
    }
    if let Some(workload) = &built.workload {
        println!("{}", workload.display());
    }
    Ok(())
}

/// Release binaries of one architecture.
#[derive(Debug, Default)]
pub struct Built {
    /// `uacce-trace`.
    pub tool: Option<PathBuf>,
    /// `uacce-workload` (the VM tests' guest program).
    pub workload: Option<PathBuf>,
}

/// The per-target environment of a static build for `arch` (used with
/// `--target`): the cross linker for a foreign architecture, and
/// `+crt-static` appended to the person's own flags for that target.
fn static_env(cmd: &mut Command, arch: Arch) {
    let prefix = arch.cargo_env_prefix();
    if arch != Arch::host() {
        cmd.env(format!("{prefix}_LINKER"), arch.cross_gcc());
    }
    // Appended to whatever the person set for this target.
    let mut flags = std::env::var(format!("{prefix}_RUSTFLAGS")).unwrap_or_default();
    if !flags.is_empty() {
        flags.push(' ');
    }
    flags.push_str("-C target-feature=+crt-static");
    cmd.env(format!("{prefix}_RUSTFLAGS"), flags);
}

/// Builds the release `uacce-trace` and/or `uacce-workload` for `arch`
/// (`cargo build --release --target <triple>` for a foreign one) and
/// returns their paths, as cargo reports them.
pub fn build_release(arch: Arch, tool: bool, workload: bool) -> Result<Built> {
    build_release_with(arch, tool, workload, &[])
}

/// The statically linked release `uacce-trace` for `arch`, the host's
/// included (`cargo build --release --target <triple>` with
/// `+crt-static`, in `target/<triple>/release/`); fails unless the result
/// is an ELF file of `arch` without a program interpreter.
pub fn build_static(arch: Arch) -> Result<PathBuf> {
    // With the workload, like the VM tests' build: one cargo invocation
    // unifies the dependencies' features across both packages, so building
    // the tool alone would link a different binary (and rebuild it each
    // time the two alternate). This way the arm64 binary shipped is the
    // very file the arm64 VMs run.
    let built = cargo_build(arch, true, true, true, &[])?;
    let tool = built
        .tool
        .context("cargo build did not report the uacce-trace executable")?;
    if crate::base::arch::has_interpreter(&tool)? {
        bail!(
            "{} is linked dynamically (it names a program interpreter)",
            tool.display()
        );
    }
    Ok(tool)
}

/// [`build_release`] with cargo `features` (e.g. `uacce-trace/bench`).
pub fn build_release_with(
    arch: Arch,
    tool: bool,
    workload: bool,
    features: &[&str],
) -> Result<Built> {
    cargo_build(arch, arch != Arch::host(), tool, workload, features)
}

/// `cargo build --release`, with `--target` and static linking when
/// `static_link` (always for a foreign `arch`).
fn cargo_build(
    arch: Arch,
    static_link: bool,
    tool: bool,
    workload: bool,
    features: &[&str],
) -> Result<Built> {
    if !tool && !workload {
        return Ok(Built::default());
    }
    let root = crate::base::workspace_root()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root).args([
        "build",
        "--release",
        "--message-format=json-render-diagnostics",
    ]);
    if static_link {
        cmd.args(["--target", arch.rust_target()]);
        static_env(&mut cmd, arch);
    }
    if tool {
        cmd.args(["-p", "uacce-trace", "--bin", "uacce-trace"]);
    }
    if workload {
        cmd.args(["-p", "xtask", "--bin", "uacce-workload"]);
    }
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    eprintln!(
        "building release binaries for {}{}…",
        arch.rust_target(),
        if static_link { " (static)" } else { "" }
    );
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !out.status.success() {
        bail!(
            "cargo build --release failed for {} ({})",
            arch.rust_target(),
            out.status
        );
    }
    let built = artifacts(&String::from_utf8_lossy(&out.stdout));
    if tool && built.tool.is_none() {
        bail!("cargo build did not report the uacce-trace executable");
    }
    if workload && built.workload.is_none() {
        bail!("cargo build did not report the uacce-workload executable");
    }
    for path in built.tool.iter().chain(&built.workload) {
        check_elf_machine(path, arch)?;
    }
    Ok(built)
}

/// The executables in cargo's JSON messages.
fn artifacts(stdout: &str) -> Built {
    let mut built = Built::default();
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if msg.get("reason").and_then(Value::as_str) != Some("compiler-artifact") {
            continue;
        }
        let exe = msg
            .get("executable")
            .and_then(Value::as_str)
            .map(PathBuf::from);
        match msg.pointer("/target/name").and_then(Value::as_str) {
            Some("uacce-trace") if exe.is_some() => built.tool = exe,
            Some("uacce-workload") if exe.is_some() => built.workload = exe,
            _ => {}
        }
    }
    built
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_env_sets_linker_and_static() {
        if Arch::host() == Arch::Aarch64 {
            crate::test_skip::skip(
                crate::test_skip::Lack::Host,
                "the host is arm64: aarch64 is not a cross build here",
            );
            return;
        }
        let mut cmd = Command::new("true");
        static_env(&mut cmd, Arch::Aarch64);
        let envs: Vec<(String, String)> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        assert!(envs.contains(&(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER".into(),
            "aarch64-linux-gnu-gcc".into()
        )));
        assert!(envs.iter().any(
            |(k, v)| k == "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS"
                && v.ends_with("-C target-feature=+crt-static")
        ));
    }

    #[test]
    fn static_host_build_keeps_the_host_linker() {
        let mut cmd = Command::new("true");
        static_env(&mut cmd, Arch::host());
        let prefix = Arch::host().cargo_env_prefix();
        let keys: Vec<String> = cmd
            .get_envs()
            .filter_map(|(k, _)| k.to_str().map(str::to_owned))
            .collect();
        assert_eq!(keys, vec![format!("{prefix}_RUSTFLAGS")]);
    }
}
