//! The test VM's initramfs: a gzip-compressed newc cpio archive written here
//! (no `cpio` tool needed), holding a static busybox with its applet links,
//! the tool and the workload with the shared libraries `ldd` lists for them
//! (at the same paths as on the host, dynamic loader included), and `/init`.
//!
//! The large part (busybox, binaries, libraries) is built once per
//! `vm-test` run; each VM gets it plus a small second archive with its own
//! `/init`. The kernel unpacks concatenated archives in order
//! (Documentation/driver-api/early-userspace/buffer-format.rst), so
//! the image for one VM is just the two files one after the other.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::base::Arch;

/// Where the guest finds the tool.
pub const GUEST_TOOL: &str = "/usr/bin/uacce-trace";
/// Where the guest finds the workload.
pub const GUEST_WORKLOAD: &str = "/usr/bin/uacce-workload";
/// Where the guest finds busybox (the applet links point at it).
const GUEST_BUSYBOX: &str = "/bin/busybox";

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Writer of a newc ("070701") cpio archive in memory.
///
/// Paths are absolute guest paths; missing parent directories are added
/// automatically, and a path added twice keeps its first entry.
pub struct Newc {
    buf: Vec<u8>,
    next_ino: u32,
    seen: BTreeSet<String>,
}

impl Newc {
    /// An empty archive.
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            next_ino: 1,
            seen: BTreeSet::new(),
        }
    }

    /// Adds a directory (and its parents).
    pub fn dir(&mut self, path: &str) -> Result<()> {
        let name = Self::name(path)?;
        if name.is_empty() || self.seen.contains(&name) {
            return Ok(());
        }
        self.parents(&name)?;
        self.entry(&name, S_IFDIR | 0o755, 2, (0, 0), &[])
    }

    /// Adds a regular file with permission bits `perm`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<()> {
        let name = Self::name(path)?;
        if self.seen.contains(&name) {
            return Ok(());
        }
        self.parents(&name)?;
        self.entry(&name, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// Adds a symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let name = Self::name(path)?;
        if self.seen.contains(&name) {
            return Ok(());
        }
        self.parents(&name)?;
        self.entry(&name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        let name = Self::name(path)?;
        if self.seen.contains(&name) {
            return Ok(());
        }
        self.parents(&name)?;
        self.entry(&name, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    /// Ends the archive with its trailer and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.header("TRAILER!!!", 0, 0, 1, 0, (0, 0));
        self.buf
    }

    /// Archive name of an absolute guest path ("/bin/sh" -> "bin/sh").
    fn name(path: &str) -> Result<String> {
        let Some(rel) = path.strip_prefix('/') else {
            bail!("initramfs path {path:?} is not absolute");
        };
        let rel = rel.trim_end_matches('/');
        if rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
            && !rel.is_empty()
        {
            bail!("initramfs path {path:?} is not normalized");
        }
        Ok(rel.to_string())
    }

    /// Adds the missing parent directories of archive name `name`.
    fn parents(&mut self, name: &str) -> Result<()> {
        let mut prefix = String::new();
        let parts: Vec<&str> = name.split('/').collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if !self.seen.contains(&prefix) {
                let dir = prefix.clone();
                self.entry(&dir, S_IFDIR | 0o755, 2, (0, 0), &[])?;
            }
        }
        Ok(())
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<()> {
        let size = u32::try_from(data.len())
            .with_context(|| format!("{name}: too large for a newc archive"))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(name, ino, mode, nlink, size, rdev);
        self.buf.extend_from_slice(data);
        self.pad();
        self.seen.insert(name.to_string());
        Ok(())
    }

    fn header(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, size: u32, rdev: (u32, u32)) {
        let namesize = name.len() + 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed, so images are reproducible
            size,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            u32::try_from(namesize).unwrap_or(u32::MAX),
            0, // check
        ];
        self.buf.extend_from_slice(b"070701");
        for field in fields {
            self.buf
                .extend_from_slice(format!("{field:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

/// Host binaries to put into the base image.
pub struct BaseContents<'a> {
    /// `target/release/uacce-trace`, unless the run is workload-only.
    pub tool: Option<&'a Path>,
    /// `target/release/uacce-workload`.
    pub workload: &'a Path,
}

/// Finds the host's static busybox (package busybox-static).
fn find_busybox() -> Result<PathBuf> {
    for candidate in ["/bin/busybox", "/usr/bin/busybox", "/sbin/busybox"] {
        let path = Path::new(candidate);
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
    }
    bail!("busybox not found (looked in /bin, /usr/bin, /sbin); run `cargo xtask setup` (installs busybox-static)")
}

/// Shared libraries `ldd` lists for `binary`, dynamic loader included, as
/// absolute paths (the same paths the guest needs them at).
pub fn ldd(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .stdin(Stdio::null())
        .output()
        .context("running ldd (package libc-bin)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        bail!("ldd {} failed: {}", binary.display(), text.trim());
    }
    parse_ldd(&text).with_context(|| format!("ldd {}", binary.display()))
}

/// Parses `ldd` output: `name => /path (0x..)` and `/path (0x..)` lines;
/// entries without a path (the vDSO) are skipped.
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let target = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    bail!("library {} not found", name.trim());
                }
                rest.split_whitespace().next().unwrap_or("")
            }
            None => line.split_whitespace().next().unwrap_or(""),
        };
        if target.starts_with('/') {
            libs.push(PathBuf::from(target));
        }
    }
    Ok(libs)
}

/// Adds a host file at the same guest path (following links on the host).
fn add_host_file(cpio: &mut Newc, host: &Path, guest: &str, perm: u32) -> Result<()> {
    let data = fs::read(host).with_context(|| format!("reading {}", host.display()))?;
    cpio.file(guest, perm, &data)
}

/// Adds `binary` at `guest` plus the libraries it needs.
fn add_binary(cpio: &mut Newc, binary: &Path, guest: &str) -> Result<()> {
    add_host_file(cpio, binary, guest, 0o755)?;
    for lib in ldd(binary)? {
        let guest_lib = lib
            .to_str()
            .with_context(|| format!("library path {} is not UTF-8", lib.display()))?
            .to_string();
        add_host_file(cpio, &lib, &guest_lib, 0o755)?;
    }
    Ok(())
}

/// `binary` at `guest` plus the libraries `ldd` lists for it, as an
/// uncompressed archive of its own, to be appended to one VM's image (a
/// host tool that only that VM needs, such as `bench hooks`' bpftrace).
pub fn binary_archive(binary: &Path, guest: &str) -> Result<Vec<u8>> {
    let mut cpio = Newc::new();
    add_binary(&mut cpio, binary, guest)?;
    Ok(cpio.finish())
}

/// Builds the uncompressed base archive: directories, device nodes, busybox
/// and its applets, the binaries and their libraries.
pub fn base_archive(contents: &BaseContents<'_>) -> Result<Vec<u8>> {
    base_archive_for(Arch::host(), contents)
}

/// The folders, device nodes and busybox (with a link per applet) of a
/// guest of `arch`: what every initramfs starts with.
pub fn busybox_archive(arch: Arch) -> Result<Newc> {
    let mut cpio = Newc::new();
    for dir in [
        "/bin",
        "/sbin",
        "/usr/bin",
        "/usr/sbin",
        "/etc",
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
        "/root",
        "/run",
    ] {
        cpio.dir(dir)?;
    }
    // The kernel opens /dev/console for init before /init can mount
    // devtmpfs; /dev/null is handy until then too.
    cpio.char_dev("/dev/console", 0o600, 5, 1)?;
    cpio.char_dev("/dev/null", 0o666, 1, 3)?;

    let busybox = find_busybox()?;
    if arch == Arch::host() {
        add_binary(&mut cpio, &busybox, GUEST_BUSYBOX)?;
    } else {
        let guest = crate::toolchain::stock::guest_busybox(arch)?;
        if !guest.is_file() {
            bail!(
                "{} is missing; run `cargo xtask setup` (downloads Debian's {} busybox-static)",
                guest.display(),
                arch.debian()
            );
        }
        crate::base::arch::check_elf_machine(&guest, arch)?;
        add_host_file(&mut cpio, &guest, GUEST_BUSYBOX, 0o755)?;
    }
    let list = Command::new(&busybox)
        .arg("--list-full")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} --list-full", busybox.display()))?;
    if !list.status.success() {
        bail!("{} --list-full failed", busybox.display());
    }
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        if applet.is_empty() || applet.ends_with("/busybox") || applet.contains("..") {
            continue;
        }
        cpio.symlink(&format!("/{applet}"), GUEST_BUSYBOX)?;
    }
    Ok(cpio)
}

/// [`base_archive`] for a guest of `arch`. A foreign guest gets Debian's
/// static busybox of its architecture (from `cargo xtask setup`); the applet
/// links come from the host's busybox, which is the same Debian version, as
/// the foreign one cannot run here. Its binaries must be static (`ldd`
/// cannot list a foreign binary's libraries): `xtask build` links them so.
pub fn base_archive_for(arch: Arch, contents: &BaseContents<'_>) -> Result<Vec<u8>> {
    if arch != Arch::host() {
        for binary in std::iter::once(contents.workload).chain(contents.tool) {
            crate::base::arch::check_elf_machine(binary, arch)?;
            if crate::base::arch::has_interpreter(binary)? {
                bail!(
                    "{} is dynamically linked; a {} guest needs static binaries (`cargo xtask build --target {}`)",
                    binary.display(),
                    arch.debian(),
                    arch.rust_target()
                );
            }
        }
    }
    let mut cpio = busybox_archive(arch)?;
    add_binary(&mut cpio, contents.workload, GUEST_WORKLOAD)?;
    if let Some(tool) = contents.tool {
        add_binary(&mut cpio, tool, GUEST_TOOL)?;
    }
    Ok(cpio.finish())
}

/// An archive holding `/init` (mode 0755) with `script`, plus extra static programs `(host path, guest path)`,
/// test kernel's guest programs, which belong to one VM only.
pub fn init_archive_with(script: &str, extra: &[(PathBuf, &str)]) -> Result<Vec<u8>> {
    let mut cpio = Newc::new();
    cpio.file("/init", 0o755, script.as_bytes())?;
    for (host, guest) in extra {
        add_host_file(&mut cpio, host, guest, 0o755)?;
    }
    Ok(cpio.finish())
}

/// Writes `data` gzip-compressed to `out` (through the `gzip` program).
pub fn write_gzip(data: &[u8], out: &Path) -> Result<()> {
    let raw = out.with_extension("raw");
    fs::write(&raw, data).with_context(|| format!("writing {}", raw.display()))?;
    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let status = Command::new("gzip")
        .args(["-n", "-6", "-c"])
        .arg(&raw)
        .stdin(Stdio::null())
        .stdout(file)
        .status()
        .context("running gzip")?;
    let _ = fs::remove_file(&raw);
    if !status.success() {
        bail!("gzip of {} failed ({status})", raw.display());
    }
    Ok(())
}

/// A whole root file system (`dir`, e.g. a debootstrap'ed Debian) as a
/// gzip'd newc archive, through `find | cpio` (device nodes, owners and
/// links kept, which [`Newc`] does not write); cached in `vm/rootfs/` by
/// the folder's name (which carries its recipe's key). Returns its path.
pub fn dir_archive_gz(dir: &Path) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("no folder name in {}", dir.display()))?;
    let cache = crate::base::cache::vm_work()?.join("rootfs");
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let out = cache.join(format!("{name}.cpio.gz"));
    if out.is_file() {
        return Ok(out);
    }
    let partial = cache.join(format!("{name}.cpio.gz.partial"));
    let status = Command::new("bash")
        .arg("-c")
        .arg("set -o pipefail; cd \"$1\" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1 -n > \"$2\"")
        .arg("bash")
        .arg(dir)
        .arg(&partial)
        .stdin(Stdio::null())
        .status()
        .context("running find | cpio | gzip")?;
    if !status.success() {
        bail!("packing {} failed ({status})", dir.display());
    }
    fs::rename(&partial, &out).with_context(|| format!("moving {}", partial.display()))?;
    Ok(out)
}

/// Writes the image of one VM: the base archive followed by its `/init`.
pub fn write_vm_image(base_gz: &Path, script: &str, out: &Path) -> Result<()> {
    write_vm_image_with(base_gz, script, &[], out)
}

/// [`write_vm_image`] with extra static programs in the VM's own archive.
pub fn write_vm_image_with(
    base_gz: &Path,
    script: &str,
    extra: &[(PathBuf, &str)],
    out: &Path,
) -> Result<()> {
    let init_gz = out.with_extension("init.gz");
    write_gzip(&init_archive_with(script, extra)?, &init_gz)?;
    let mut image = fs::read(base_gz).with_context(|| format!("reading {}", base_gz.display()))?;
    image.extend(fs::read(&init_gz).with_context(|| format!("reading {}", init_gz.display()))?);
    let _ = fs::remove_file(&init_gz);
    fs::write(out, image).with_context(|| format!("writing {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines() -> Result<()> {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let libs = parse_ldd(text)?;
        assert_eq!(
            libs,
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_err());
        Ok(())
    }

    #[test]
    fn newc_layout() -> Result<()> {
        let mut cpio = Newc::new();
        cpio.file("/a/b", 0o644, b"hello")?;
        cpio.file("/a/b", 0o644, b"again")?;
        let bytes = cpio.finish();
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        // Directory "a", file "a/b" (once), trailer.
        assert_eq!(text.matches("070701").count(), 3);
        assert!(text.contains("a/b\0"));
        assert!(text.contains("hello"));
        assert!(!text.contains("again"));
        assert!(text.contains("TRAILER!!!\0"));
        // Header of the file: ino 2, regular file 0644, size 5, namesize 4.
        let at = text.find("a/b\0").unwrap_or(0);
        let header = &text[at - 110..at];
        assert_eq!(&header[6..14], "00000002");
        assert_eq!(&header[14..22], "000081A4");
        assert_eq!(&header[54..62], "00000005");
        assert_eq!(&header[94..102], "00000004");
        Ok(())
    }

    #[test]
    fn names_must_be_absolute() {
        assert!(Newc::new().file("rel", 0o644, b"").is_err());
        assert!(Newc::new().file("/a/../b", 0o644, b"").is_err());
    }
}
