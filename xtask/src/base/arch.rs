//! The CPU architectures the tool is built for and the test VMs emulate,
//! and the ELF checks that tell a binary's architecture.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// A CPU architecture the tool is built for and the test VMs emulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The Rust target triple.
    pub const fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// The Debian architecture name.
    pub const fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The architecture of a Rust target triple.
    pub fn from_rust_target(triple: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.rust_target() == triple)
            .with_context(|| {
                format!(
                    "unsupported target {triple:?}; supported: {}",
                    Self::ALL.map(Arch::rust_target).join(", ")
                )
            })
    }

    /// The architecture xtask itself was built for.
    pub const fn host() -> Self {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }

    /// The cross C compiler (Debian `gcc-<triple>`), used as the linker.
    pub const fn cross_gcc(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu-gcc",
            Arch::Aarch64 => "aarch64-linux-gnu-gcc",
        }
    }

    /// The binutils `strip` for this architecture's binaries (Debian
    /// `binutils-<triple>`).
    pub const fn strip_tool(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu-strip",
            Arch::Aarch64 => "aarch64-linux-gnu-strip",
        }
    }

    /// Cargo's per-target environment variable prefix, e.g.
    /// `CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU`.
    pub fn cargo_env_prefix(self) -> String {
        format!(
            "CARGO_TARGET_{}",
            self.rust_target().to_ascii_uppercase().replace('-', "_")
        )
    }
}

/// ELF `e_machine` of each architecture.
const fn elf_machine(arch: Arch) -> u16 {
    match arch {
        Arch::X86_64 => 62,   // EM_X86_64
        Arch::Aarch64 => 183, // EM_AARCH64
    }
}

/// Fails unless `path` is a 64-bit little-endian ELF file for `arch`.
pub fn check_elf_machine(path: &Path, arch: Arch) -> Result<()> {
    let mut header = [0u8; 20];
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    std::io::Read::read_exact(&mut file, &mut header)
        .with_context(|| format!("reading the ELF header of {}", path.display()))?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        bail!("{} is not a 64-bit little-endian ELF file", path.display());
    }
    let machine = u16::from_le_bytes([header[18], header[19]]);
    if machine != elf_machine(arch) {
        bail!(
            "{} is built for ELF machine {machine}, not {} ({})",
            path.display(),
            arch.rust_target(),
            elf_machine(arch)
        );
    }
    Ok(())
}

/// Whether the ELF file at `path` names a program interpreter (a dynamic
/// loader), i.e. needs shared libraries at run time. Read from the program
/// headers, so it works for foreign architectures too (`ldd` does not).
pub fn has_interpreter(path: &Path) -> Result<bool> {
    const PT_INTERP: u32 = 3;
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let field = |at: usize, len: usize| -> Result<u64> {
        let bytes = data
            .get(at..at + len)
            .with_context(|| format!("{}: truncated ELF header", path.display()))?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    if data.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        bail!("{} is not a 64-bit little-endian ELF file", path.display());
    }
    let phoff = usize::try_from(field(0x20, 8)?)?;
    let phentsize = usize::try_from(field(0x36, 2)?)?;
    let phnum = usize::try_from(field(0x38, 2)?)?;
    for i in 0..phnum {
        if field(phoff + i * phentsize, 4)? == u64::from(PT_INTERP) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip() -> Result<()> {
        for arch in Arch::ALL {
            assert_eq!(Arch::from_rust_target(arch.rust_target())?, arch);
        }
        assert!(Arch::from_rust_target("riscv64gc-unknown-linux-gnu").is_err());
        assert_eq!(
            Arch::Aarch64.cargo_env_prefix(),
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU"
        );
        Ok(())
    }

    #[test]
    fn elf_machine_of_xtask_itself() -> Result<()> {
        let exe = std::env::current_exe()?;
        check_elf_machine(&exe, Arch::host())?;
        let other = if Arch::host() == Arch::X86_64 {
            Arch::Aarch64
        } else {
            Arch::X86_64
        };
        assert!(check_elf_machine(&exe, other).is_err());
        // xtask's own test binary is linked dynamically.
        assert!(has_interpreter(&exe)?);
        Ok(())
    }
}
