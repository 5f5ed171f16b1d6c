//! The test kernel's guest programs: static C in `xtask/kernel/`
//! (`uacce_ctrl_pin.c`, `iopf_workload.c`, `uacce_demo.c`, `sva_workload.c`, sharing
//! `ut_guest.h`), compiled against the uapi headers the test kernel folder
//! holds (`include/`, see [`crate::kernel::GUEST_HEADERS`]): `gcc` for the
//! host, `aarch64-linux-gnu-gcc` for an arm64 guest.
//!
//! They have their own cache key (the sources, the headers, the compiler
//! and its flags, the architecture, [`RECIPE_VERSION`]), so editing a
//! program rebuilds only the programs (seconds), never the kernel. The
//! result is `<cache>/guest-programs/<key>-<arch>/` with the four
//! binaries; the sources are compiled into xtask, so the result does not
//! depend on the working directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::base::cache;
use crate::base::fs::{elapsed, remove_if_exists};
use crate::base::process::capture;
use crate::base::Arch;
use crate::kernel::{GUEST_HEADERS, GUEST_INCLUDE};
use crate::toolchain::setup::{self, Need};

/// Bumped whenever the build below changes what it produces.
const RECIPE_VERSION: &str = "1";

/// The header every program includes (`#include "ut_guest.h"`).
const HEADER: (&str, &str) = ("ut_guest.h", include_str!("../../kernel/ut_guest.h"));

/// (binary name, source file name, source text), one per program.
const PROGRAMS: &[(&str, &str, &str)] = &[
    (
        PIN_BINARY,
        "uacce_ctrl_pin.c",
        include_str!("../../kernel/uacce_ctrl_pin.c"),
    ),
    (
        IOPF_BINARY,
        "iopf_workload.c",
        include_str!("../../kernel/iopf_workload.c"),
    ),
    (
        DEMO_BINARY,
        "uacce_demo.c",
        include_str!("../../kernel/uacce_demo.c"),
    ),
    (
        SVA_BINARY,
        "sva_workload.c",
        include_str!("../../kernel/sva_workload.c"),
    ),
];

/// `/dev/uacce_ctrl` pins; checks the pin counters.
const PIN_BINARY: &str = "uacce-ctrl-pin";
/// IO page faults through iommufd's self-test mock device.
const IOPF_BINARY: &str = "iopf-workload";
/// One faulting/pinning process of `cargo xtask demo`.
const DEMO_BINARY: &str = "uacce-demo";
/// A client of QEMU's SVA test accelerator: faults, then pins.
const SVA_BINARY: &str = "sva-workload";

/// Compiler flags (before `-I`).
const CFLAGS: &[&str] = &["-static", "-O2", "-Wall", "-Wextra"];

/// Debian packages the host compiler needs (the arm64 cross compiler comes
/// with [`setup::ensure_cross`]).
const HOST_PACKAGES: &[&str] = &["gcc", "libc6-dev"];

/// The built programs of one test kernel and architecture.
#[derive(Debug, Clone)]
pub struct Programs {
    dir: PathBuf,
}

impl Programs {
    /// `uacce-ctrl-pin`: `/dev/uacce_ctrl` pins.
    pub fn pin(&self) -> PathBuf {
        self.dir.join(PIN_BINARY)
    }

    /// `iopf-workload`: IO page faults through the iommufd mock device.
    pub fn iopf(&self) -> PathBuf {
        self.dir.join(IOPF_BINARY)
    }

    /// `uacce-demo`: the demo's guest process.
    pub fn demo(&self) -> PathBuf {
        self.dir.join(DEMO_BINARY)
    }

    /// `sva-workload`: IO page faults of the SVA test accelerator, then
    /// pinned buffers (needs the QEMU of `cargo xtask qemu`).
    pub fn sva(&self) -> PathBuf {
        self.dir.join(SVA_BINARY)
    }
}

/// The programs for the test kernel in `kernel_dir` (of `arch`), built
/// first when the cache has none for the current inputs.
pub fn ensure(kernel_dir: &Path, arch: Arch) -> Result<Programs> {
    let include = kernel_dir.join(GUEST_INCLUDE);
    let mut headers = Vec::new();
    for (name, _) in GUEST_HEADERS {
        let path = include.join(name);
        let text = fs::read(&path).with_context(|| {
            format!(
                "reading {} (a test kernel folder of `cargo xtask kernel`)",
                path.display()
            )
        })?;
        headers.push((*name, text));
    }
    let dir = cache::guest_programs()?.join(cache_key(arch, &headers));
    if is_complete(&dir) {
        return Ok(Programs { dir });
    }

    let start = Instant::now();
    let cc = compiler(arch);
    if arch == Arch::host() {
        setup::ensure(&[Need::Packages(HOST_PACKAGES)])?;
    } else {
        setup::ensure_cross(arch)?;
    }
    // Built next to the destination and renamed into place whole, so a
    // second xtask never sees half of it.
    let partial = dir.with_extension(format!("partial-{}", std::process::id()));
    remove_if_exists(&partial)?;
    let src = partial.join("src");
    fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
    fs::write(src.join(HEADER.0), HEADER.1)
        .with_context(|| format!("writing {}", src.join(HEADER.0).display()))?;
    for (binary, file, text) in PROGRAMS {
        let path = src.join(file);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        capture(
            Command::new(cc)
                .args(CFLAGS)
                .arg("-I")
                .arg(&include)
                .arg("-o")
                .arg(partial.join(binary))
                .arg(&path),
        )
        .with_context(|| format!("compiling xtask/kernel/{file} with {cc}"))?;
    }
    remove_if_exists(&src)?;
    remove_if_exists(&dir)?;
    fs::rename(&partial, &dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    eprintln!(
        "guest programs: ok ({PIN_BINARY}, {IOPF_BINARY}, {DEMO_BINARY}; {}, {}) -> {}",
        arch.debian(),
        elapsed(start),
        dir.display()
    );
    Ok(Programs { dir })
}

/// The C compiler for `arch`.
fn compiler(arch: Arch) -> &'static str {
    if arch == Arch::host() {
        "gcc"
    } else {
        arch.cross_gcc()
    }
}

fn is_complete(dir: &Path) -> bool {
    PROGRAMS
        .iter()
        .all(|(binary, _, _)| dir.join(binary).is_file())
}

/// Cache key ([`cache::key`]) over every input, then `-<arch>`.
fn cache_key(arch: Arch, headers: &[(&str, Vec<u8>)]) -> String {
    let mut inputs: Vec<&[u8]> = vec![
        RECIPE_VERSION.as_bytes(),
        arch.debian().as_bytes(),
        compiler(arch).as_bytes(),
    ];
    inputs.extend(CFLAGS.iter().map(|f| f.as_bytes()));
    inputs.extend([HEADER.0.as_bytes(), HEADER.1.as_bytes()]);
    for (_, file, text) in PROGRAMS {
        inputs.extend([file.as_bytes(), text.as_bytes()]);
    }
    for (name, text) in headers {
        inputs.extend([name.as_bytes(), text.as_slice()]);
    }
    format!("{}-{}", cache::key(inputs), arch.debian())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_arch_and_headers() {
        let headers = vec![("iommufd_test.h", b"a".to_vec())];
        let other = vec![("iommufd_test.h", b"b".to_vec())];
        let x86 = cache_key(Arch::X86_64, &headers);
        assert!(x86.ends_with("-amd64"));
        assert_eq!(x86, cache_key(Arch::X86_64, &headers));
        assert_ne!(x86, cache_key(Arch::Aarch64, &headers));
        assert_ne!(x86, cache_key(Arch::X86_64, &other));
        assert!(cache_key(Arch::Aarch64, &headers).ends_with("-arm64"));
    }

    #[test]
    fn every_program_includes_the_shared_header() {
        for (_, file, text) in PROGRAMS {
            assert!(
                text.contains("#include \"ut_guest.h\""),
                "xtask/kernel/{file} does not include ut_guest.h"
            );
        }
    }
}
