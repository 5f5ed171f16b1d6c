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

/// Whether this is a CI run (`CI=true`, or `CI=1`): a prerequisite the
/// project installs itself that is missing then fails instead of skipping,
/// and so does the demo's stock-kernel fallback.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}
