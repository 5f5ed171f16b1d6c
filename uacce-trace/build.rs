//! Builds the kernel programs (`uacce-trace-ebpf`) with the nightly toolchain
//! through aya-build and leaves the object at `$OUT_DIR/uacce-trace`.
//!
//! `UACCE_TRACE_EBPF_STUB=1` writes an empty object instead, so `cargo check`,
//! clippy and unit tests need neither nightly nor bpf-linker; such a binary
//! refuses to trace and says why. bpf-linker is looked up in PATH and in the
//! cache folder where `cargo xtask setup` installs it.

use std::{env, ffi::OsString, fs, path::PathBuf};

use anyhow::{anyhow, Context as _};

const STUB_ENV: &str = "UACCE_TRACE_EBPF_STUB";

fn cache_root() -> Option<PathBuf> {
    let non_empty = |k: &str| env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("UACCE_TRACE_CACHE") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = non_empty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("uacce-trace"));
    }
    non_empty("HOME").map(|home| PathBuf::from(home).join(".cache").join("uacce-trace"))
}

fn main() -> anyhow::Result<()> {
    for var in [STUB_ENV, "UACCE_TRACE_CACHE", "XDG_CACHE_HOME"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let stub = env::var(STUB_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if stub {
        fs::write(out_dir.join("uacce-trace"), b"").context("writing the stub object")?;
        println!("cargo:rustc-cfg=ebpf_stub");
        println!("cargo::rustc-check-cfg=cfg(ebpf_stub)");
        return Ok(());
    }
    println!("cargo::rustc-check-cfg=cfg(ebpf_stub)");

    // Let the nested nightly cargo find bpf-linker where `xtask setup` puts it.
    if let Some(tools) = cache_root().map(|c| c.join("tools").join("bin")) {
        if tools.join("bpf-linker").exists() {
            let path = env::var_os("PATH").unwrap_or_default();
            let mut paths: Vec<PathBuf> = env::split_paths(&path).collect();
            paths.insert(0, tools);
            let joined: OsString = env::join_paths(paths).context("joining PATH")?;
            // SAFETY: build scripts are single-threaded at this point.
            unsafe { env::set_var("PATH", joined) };
        }
    }

    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir
        .parent()
        .context("workspace root")?
        .join("uacce-trace-ebpf");
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    // The bench programs exist only in builds with the bench feature
    // (`cargo xtask bench`); release builds leave them out.
    let features: &[&str] = if env::var_os("CARGO_FEATURE_BENCH").is_some() {
        &["bench"]
    } else {
        &[]
    };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "uacce-trace-ebpf",
            root_dir,
            features,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the eBPF programs failed; run `cargo xtask setup` (installs rust-src and \
         bpf-linker), or set UACCE_TRACE_EBPF_STUB=1 to build without them",
    )
}
