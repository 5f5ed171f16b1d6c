//! The bottom layer of xtask: running programs, files and folders, the
//! workspace and cache paths, and the architectures we build for.
//!
//! Imports nothing else from xtask; every other module may use it.

pub mod arch;
pub mod cache;
pub mod fs;
pub mod process;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use arch::Arch;

/// The workspace root (xtask's parent folder).
pub fn workspace_root() -> Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask's manifest folder has no parent")
}

/// A command's options from its arguments (without the command's name),
/// for commands that run others (`cargo xtask test`); `name` names them in
/// errors.
pub fn parse_args<T: clap::Args + clap::FromArgMatches>(
    name: &'static str,
    args: &[&str],
) -> Result<T> {
    let matches = T::augment_args(clap::Command::new(name))
        .no_binary_name(true)
        .try_get_matches_from(args)
        .with_context(|| format!("{name} arguments"))?;
    T::from_arg_matches(&matches).with_context(|| format!("{name} arguments"))
}

/// Whether this is a CI run (`CI=true`, or `CI=1`): a prerequisite the
/// project installs itself that is missing then fails instead of skipping,
/// and so does the demo's stock-kernel fallback.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}
