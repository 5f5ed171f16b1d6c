//! Real builds of the accelerator libraries whose entry points the tool's
//! `--op` presets probe, for the host test `uacce-trace/tests/presets.rs`.
//!
//! Intel QPL: Debian packages `libqpl1` and `libqpl-dev` (only in sid,
//! not in bookworm or trixie), fetched with the private apt of
//! [`super::apt`] (the mirror read from the machine's apt sources) and
//! unpacked with `dpkg-deb -x` into `libs/qpl/root` of the tool cache.
//! sid's libqpl needs glibc 2.38 (`__isoc23_strtol`), newer than
//! bookworm's, so sid's `libc6`, `libstdc++6` and `libgcc-s1` are
//! unpacked next to it: the test program runs with that root's dynamic
//! loader and libraries, the library itself unmodified. Needs no root and
//! leaves the machine's packages alone; a second call finds the folder and
//! needs no network.
//!
//! UADK (`libwd*`) and Intel DML (`libdml`) have no Debian package in
//! bookworm, trixie or sid; the test of their presets is not possible here.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::apt::{self, PrivateApt};
use crate::base::cache;
use crate::base::fs::{read_trimmed, remove_if_exists};
use crate::base::process::capture;

/// The suite that has libqpl.
const SUITE: &str = "sid";
/// What is unpacked into the root (the library, its headers, and the C
/// and C++ runtime it was built against).
const PACKAGES: &[&str] = &["libqpl1", "libqpl-dev", "libc6", "libstdc++6", "libgcc-s1"];
/// The file in the cache folder that lists the unpacked packages and their
/// versions; written last, so a folder with it is complete.
const VERSIONS: &str = "versions";

/// QPL unpacked in the cache.
#[derive(Debug, Clone)]
pub struct Qpl {
    /// Root folder holding `usr/lib/x86_64-linux-gnu/libqpl.so.*`,
    /// `usr/include/qpl/` and sid's `ld-linux-x86-64.so.2` and `libc.so.6`.
    pub root: PathBuf,
    /// `package version` per line, for people.
    pub versions: String,
}

/// The cached QPL root, downloading it first when it is not there (amd64
/// hosts only: the Debian packages fetched are amd64's).
pub fn qpl() -> Result<Qpl> {
    let dir = cache::root()?.join("libs").join("qpl");
    let root = dir.join("root");
    if let Ok(versions) = read_trimmed(&dir.join(VERSIONS)) {
        return Ok(Qpl { root, versions });
    }
    if std::env::consts::ARCH != "x86_64" {
        anyhow::bail!(
            "the QPL test fetches Debian's amd64 packages; this host is {}",
            std::env::consts::ARCH
        );
    }
    remove_if_exists(&dir)?;
    let partial = dir.with_extension("partial");
    remove_if_exists(&partial)?;
    fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mirror = apt::host_mirror()?;
    let apt_dir = cache::apt()?.join(SUITE);
    let apt = PrivateApt::new(&apt_dir, &mirror, SUITE)?;
    eprintln!(
        "reallibs: apt-get update for suite {SUITE} (private state in {})",
        apt_dir.display()
    );
    apt.update()?;
    let mut versions = String::new();
    let fetched = (|| -> Result<()> {
        for &package in PACKAGES {
            let record = apt
                .show(package)?
                .with_context(|| format!("suite {SUITE} has no package {package}"))?;
            let deb = apt.download(&record, &partial.join("debs"))?;
            capture(
                std::process::Command::new("dpkg-deb")
                    .arg("-x")
                    .arg(&deb)
                    .arg(partial.join("root")),
            )
            .with_context(|| format!("unpacking {}", deb.display()))?;
            eprintln!("reallibs: {package} {} from {SUITE}", record.version);
            versions.push_str(&format!("{package} {} ({SUITE})\n", record.version));
        }
        Ok(())
    })();
    apt.clean()?;
    fetched?;
    remove_if_exists(&partial.join("debs"))?;
    fs::write(partial.join(VERSIONS), &versions)
        .with_context(|| format!("writing {}", partial.join(VERSIONS).display()))?;
    fs::rename(&partial, &dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    Ok(Qpl {
        root,
        versions: versions.trim().to_owned(),
    })
}
