//! A Debian root file system with systemd, for the VM that installs the
//! `.deb` and runs the packaged service (`cargo xtask dist --vm`): built
//! once with `debootstrap --variant=minbase` from the machine's own Debian
//! mirror (read from its apt configuration), trimmed (apt lists and
//! caches, docs, locales, man pages), and cached under `rootfs/` with a
//! stamp naming its recipe; a second run reuses it without network.
//!
//! Only the host's architecture (amd64): an arm64 root needs debootstrap's
//! second stage run under emulation, which this machine does not set up.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::base::cache;
use crate::base::process::run_to_stderr;
use crate::toolchain::apt;
use crate::toolchain::setup::{self, Need, Step};

/// The Debian suite of the root file system.
pub const SUITE: &str = "bookworm";

/// Packages on top of minbase: systemd as PID 1 (`systemd-sysv`), D-Bus
/// for `systemctl`, procps.
const INCLUDE: &str = "systemd,systemd-sysv,dbus,procps";

/// Folders emptied after debootstrap (nothing the VM reads).
const TRIM: &[&str] = &[
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/locale",
    "usr/share/man",
];

/// The cached root of `debootstrap --variant=minbase --include=INCLUDE
/// SUITE` for amd64, building it first when missing or of another recipe.
pub fn ensure_debian_rootfs() -> Result<PathBuf> {
    setup::ensure(&[Need::Packages(&["debootstrap"])])?;
    let step = Step::new(format!(
        "Debian {SUITE} root file system with systemd (amd64)"
    ));
    let recipe =
        format!("debootstrap --variant=minbase --include={INCLUDE} {SUITE} amd64\ntrim {TRIM:?}\n");
    let key = cache::key([recipe.as_bytes()]);
    let base = cache::root()?.join("rootfs");
    let dir = base.join(format!("{SUITE}-amd64-{key}"));
    let stamp = dir.join(".uacce-trace-rootfs");
    if fs::read_to_string(&stamp).is_ok_and(|s| s == recipe) {
        step.cached(&dir.display().to_string());
        return Ok(dir);
    }
    if !apt::is_root() {
        bail!("debootstrap needs root (it creates device nodes and chroots)");
    }
    let mirror = apt::host_mirror()?;
    let tmp = base.join(format!("{SUITE}-amd64-{key}.partial"));
    for d in [&tmp, &dir] {
        if d.exists() {
            fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
        }
    }
    fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    step.say(&format!(
        "debootstrap {SUITE} from {} (about a minute)",
        mirror.uri
    ));
    let mut cmd = Command::new("debootstrap");
    cmd.args(["--variant=minbase", "--arch=amd64"])
        .arg(format!("--include={INCLUDE}"));
    if let Some(keyring) = &mirror.signed_by {
        cmd.arg(format!("--keyring={keyring}"));
    }
    cmd.arg(SUITE).arg(&tmp).arg(&mirror.uri);
    run_to_stderr(&mut cmd).context("debootstrap of the VM's root file system")?;
    for t in TRIM {
        let d = tmp.join(t);
        if d.is_dir() {
            fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
    }
    fs::write(tmp.join(".uacce-trace-rootfs"), &recipe).context("writing the rootfs stamp")?;
    fs::rename(&tmp, &dir)
        .with_context(|| format!("moving {} to {}", tmp.display(), dir.display()))?;
    step.done(&dir.display().to_string());
    Ok(dir)
}
