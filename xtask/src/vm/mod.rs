//! The guest harness, the only place that builds initramfs images
//! ([`image`]), writes `/init` ([`guest`]: parameters + `guest_lib.sh` +
//! a script), boots QEMU ([`qemu`]) and parses the console protocol
//! ([`console`]). The scenarios (`vm_test`, `soak`, `demo`, `bench`,
//! `smoke`) are thin layers on it.
//!
//! Imports [`crate::base`], [`crate::toolchain`] and [`crate::kernel`],
//! never a command module.

pub mod console;
pub mod guest;
pub mod image;
pub mod programs;
pub mod qemu;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;

use crate::base::{workspace_root, Arch};

/// Which hooks the tool is told to use (`uacce-trace trace --hooks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Hooks {
    /// The tool picks (fentry where the kernel supports it).
    Auto,
    /// BPF trampolines (fentry/fexit).
    Fentry,
    /// kprobes/kretprobes.
    Kprobe,
}

impl Hooks {
    /// The value of `uacce-trace --hooks`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hooks::Auto => "auto",
            Hooks::Fentry => "fentry",
            Hooks::Kprobe => "kprobe",
        }
    }
}

/// Builds the release binaries; returns (tool, workload) paths.
pub fn build(no_tool: bool, no_build: bool) -> Result<(Option<PathBuf>, PathBuf)> {
    build_with(no_tool, no_build, &[])
}

/// [`build`] with cargo `features` (the benchmarks: `uacce-trace/bench`).
pub fn build_with(
    no_tool: bool,
    no_build: bool,
    features: &[&str],
) -> Result<(Option<PathBuf>, PathBuf)> {
    let root = workspace_root()?;
    if no_build {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), PathBuf::from)
            .join("release");
        let workload = target.join("uacce-workload");
        let tool = target.join("uacce-trace");
        for p in std::iter::once(&workload).chain((!no_tool).then_some(&tool)) {
            if !p.is_file() {
                bail!("{} is missing (--no-build)", p.display());
            }
        }
        return Ok(((!no_tool).then_some(tool), workload));
    }
    let built =
        crate::toolchain::build::build_release_with(Arch::host(), !no_tool, true, features)?;
    let workload = built
        .workload
        .context("cargo build did not report the uacce-workload executable")?;
    Ok((built.tool, workload))
}
