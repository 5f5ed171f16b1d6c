//! Where xtask keeps what it installs and downloads: a cache folder outside
//! the clone, so a second run (and a second clone) on the same machine reuses
//! bpf-linker, kernels and built images.
//!
//! `UACCE_TRACE_CACHE` overrides the location; otherwise
//! `$XDG_CACHE_HOME/uacce-trace` or `~/.cache/uacce-trace`.
//! `uacce-trace/build.rs` computes the same folder to find bpf-linker.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Root of the cache.
pub fn root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("UACCE_TRACE_CACHE").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir).join("uacce-trace"));
    }
    let home = std::env::var_os("HOME")
        .context("neither UACCE_TRACE_CACHE, XDG_CACHE_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache").join("uacce-trace"))
}

/// Folder whose `bin/` holds bpf-linker (`cargo install --root`).
pub fn tools() -> Result<PathBuf> {
    Ok(root()?.join("tools"))
}

/// Folder holding one sub-folder per stock kernel (`kernels/<name>/vmlinuz`).
pub fn kernels() -> Result<PathBuf> {
    Ok(root()?.join("kernels"))
}

/// Folder of the test kernels that `cargo xtask kernel` builds (one
/// sub-folder per input hash, plus `source/` and `build/`).
pub fn test_kernels() -> Result<PathBuf> {
    Ok(root()?.join("test-kernels"))
}

/// Scratch space for VM images (initramfs) and logs.
#[allow(dead_code)] // for the VM test commands
pub fn vm_work() -> Result<PathBuf> {
    Ok(root()?.join("vm"))
}

/// LLVM prefix that bpf-linker is built against: `lib/` holds symlinks to the
/// nightly toolchain's own libLLVM (bpf-linker keeps an rpath to it).
pub fn llvm_nightly() -> Result<PathBuf> {
    Ok(root()?.join("llvm-nightly"))
}

/// The bpf-linker binary that `cargo xtask setup` installs.
pub fn bpf_linker() -> Result<PathBuf> {
    Ok(tools()?.join("bin").join("bpf-linker"))
}

/// Private apt state (one folder per Debian suite) for downloading kernels.
pub fn apt() -> Result<PathBuf> {
    Ok(root()?.join("apt"))
}

/// Compiled guest programs of the test kernels (`vm::programs`; one
/// sub-folder per input hash and architecture).
pub fn guest_programs() -> Result<PathBuf> {
    Ok(root()?.join("guest-programs"))
}

/// A cache key over `inputs`: FNV-1a (64 bit) over each input prefixed by
/// its length (little-endian u64), as 16 hex digits.
pub fn key<'a>(inputs: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for input in inputs {
        let len = u64::try_from(input.len()).unwrap_or(u64::MAX).to_le_bytes();
        for byte in len.iter().chain(input) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}
