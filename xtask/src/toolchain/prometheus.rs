//! Prometheus and promtool for the `prom` test tier: Debian's `prometheus`
//! package of the machine's own suite, fetched with the private apt of
//! [`super::apt`] (`apt-get download`, the mirror read from the machine's
//! apt sources) and unpacked with `dpkg-deb -x` into the tool cache
//! (`tools/prometheus/`). Needs no root and leaves the machine's packages
//! alone; a second call finds it there and needs no network.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::setup::{write_stamp, Step};
use super::stock::unpack_host_package;
use crate::base::cache;
use crate::base::fs::{move_file, read_trimmed, remove_if_exists};
use crate::base::Arch;

/// The Debian package holding both programs.
const PACKAGE: &str = "prometheus";

/// The two programs, from the cache.
#[derive(Debug, Clone)]
pub struct PromTools {
    pub prometheus: PathBuf,
    pub promtool: PathBuf,
    /// `prometheus VERSION`, the Debian package they came from.
    pub package: String,
}

/// Where the programs are kept.
fn dir() -> Result<PathBuf> {
    Ok(cache::tools()?.join("prometheus"))
}

/// The cached programs, downloading Debian's package first when they are
/// not there.
pub fn ensure() -> Result<PromTools> {
    let step = Step::new("prometheus and promtool");
    let dir = dir()?;
    let tools = PromTools {
        prometheus: dir.join("prometheus"),
        promtool: dir.join("promtool"),
        package: String::new(),
    };
    let stamp = dir.join("package");
    if tools.prometheus.is_file() && tools.promtool.is_file() && stamp.is_file() {
        let package = read_trimmed(&stamp)?;
        step.cached(&package);
        return Ok(PromTools { package, ..tools });
    }
    let arch = Arch::host();
    // Its own work folder: the kernels' downloads use `work` of the same suite.
    let got = unpack_host_package(PACKAGE, arch, "work-prometheus", &step)?;
    let unpacked = got.root();
    // Assembled next to the destination, then moved in place in one rename.
    let partial = dir.with_extension("partial");
    remove_if_exists(&partial)?;
    fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    for name in ["prometheus", "promtool"] {
        let from = unpacked.join("usr/bin").join(name);
        if !from.is_file() {
            anyhow::bail!("{} has no usr/bin/{name}", got.deb.display());
        }
        crate::base::arch::check_elf_machine(&from, arch)?;
        move_file(&from, &partial.join(name))?;
    }
    let package = got.package();
    write_stamp(&partial.join("package"), &format!("{package}\n"))?;
    remove_if_exists(&dir)?;
    fs::rename(&partial, &dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    got.finish()?;
    step.done(&package);
    Ok(PromTools { package, ..tools })
}
