//! Debian packages for `cargo xtask setup`.
//!
//! Two jobs:
//! - the host packages the VM tests and benchmarks need (`dpkg-query` to see
//!   what is missing, `apt-get install` for that only);
//! - a private apt configuration per Debian suite (its own sources list,
//!   lists, cache and an empty dpkg status, all under the xtask cache) that
//!   downloads stock kernel packages from other suites of the machine's own
//!   Debian mirror while leaving the machine's apt state untouched.
//!
//! The mirror is read from the machine's apt sources at run time; no address
//! is written into the project.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::base::fs::write_if_changed;
use crate::base::process::{capture, run_to_stderr};

const OS_RELEASE: &str = "/etc/os-release";
const SOURCES_LIST: &str = "/etc/apt/sources.list";
const SOURCES_PARTS: &str = "/etc/apt/sources.list.d";

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------
// Host packages

/// The packages of `names` that are not installed on this machine.
pub fn missing_packages(names: &[&str]) -> Result<Vec<String>> {
    // dpkg-query exits 1 when it knows nothing about one of the names, but it
    // still prints the others, so the exit status is not checked.
    let out = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package}\t${Status}\n")
        .args(names)
        .env("LC_ALL", "C")
        .output()
        .context("running dpkg-query (is this a Debian system?)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(name, _)| name.split(':').next().unwrap_or(name))
        .collect();
    Ok(names
        .iter()
        .filter(|name| !installed.contains(name))
        .map(|name| (*name).to_owned())
        .collect())
}

/// The command a person runs to install `names`.
pub fn install_hint(names: &[String]) -> String {
    format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        names.join(" ")
    )
}

/// Installs `names` with the machine's apt (`apt-get update` first). Needs root.
pub fn install_packages(names: &[String]) -> Result<()> {
    if !is_root() {
        bail!(
            "missing Debian packages: {}; installing them needs root. Run as root:\n    {}",
            names.join(" "),
            install_hint(names)
        );
    }
    run_to_stderr(
        Command::new("apt-get")
            .args(["-q", "update"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("apt-get update")?;
    run_to_stderr(
        Command::new("apt-get")
            .args(["-q", "install", "-y", "--no-install-recommends"])
            .args(names)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("apt-get install {}", names.join(" ")))
}

// ---------------------------------------------------------------------------
// The machine's Debian mirror

/// A Debian mirror entry found in the machine's apt sources.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// Base URI of the archive (what goes after `deb` in a sources line).
    pub uri: String,
    /// The key file the machine's entry names (`signed-by`), if it names one.
    pub signed_by: Option<String>,
}

/// One `deb`/`deb-src` entry of an apt sources file, either format.
#[derive(Debug, Default, Clone, PartialEq)]
struct SourceEntry {
    types: Vec<String>,
    uris: Vec<String>,
    suites: Vec<String>,
    components: Vec<String>,
    signed_by: Option<String>,
    enabled: bool,
}

/// The machine's main Debian suite (`VERSION_CODENAME` of /etc/os-release).
pub fn host_codename() -> Result<String> {
    let text = fs::read_to_string(OS_RELEASE).with_context(|| format!("reading {OS_RELEASE}"))?;
    text.lines()
        .filter_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .find(|v| !v.is_empty())
        .with_context(|| format!("no VERSION_CODENAME in {OS_RELEASE}"))
}

/// Finds the mirror that serves the machine's main Debian suite with the
/// `main` component, from the machine's apt sources.
pub fn host_mirror() -> Result<Mirror> {
    let codename = host_codename()?;
    let mut entries = Vec::new();
    let main_list = Path::new(SOURCES_LIST);
    if main_list.exists() {
        let text = fs::read_to_string(main_list)
            .with_context(|| format!("reading {}", main_list.display()))?;
        entries.extend(parse_one_line_sources(&text));
    }
    if let Ok(dir) = fs::read_dir(SOURCES_PARTS) {
        let mut files: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files {
            let parse: fn(&str) -> Vec<SourceEntry> =
                match file.extension().and_then(|e| e.to_str()) {
                    Some("list") => parse_one_line_sources,
                    Some("sources") => parse_deb822_sources,
                    _ => continue,
                };
            let text =
                fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            entries.extend(parse(&text));
        }
    }
    pick_mirror(&entries, &codename).with_context(|| {
        format!(
            "no enabled `deb` entry for suite `{codename}` with component `main` in \
             {SOURCES_LIST} or {SOURCES_PARTS}/*.list|*.sources; the kernels are downloaded \
             from the same Debian mirror the machine uses"
        )
    })
}

fn pick_mirror(entries: &[SourceEntry], codename: &str) -> Option<Mirror> {
    entries
        .iter()
        .filter(|e| e.enabled)
        .filter(|e| e.types.iter().any(|t| t == "deb"))
        .filter(|e| e.suites.iter().any(|s| s == codename))
        .filter(|e| e.components.iter().any(|c| c == "main"))
        .find_map(|e| {
            e.uris.first().map(|uri| Mirror {
                uri: uri.trim_end_matches('/').to_owned(),
                signed_by: e.signed_by.clone(),
            })
        })
}

/// Parses the one-line format: `deb [opt=val ...] URI SUITE COMPONENT...`.
fn parse_one_line_sources(text: &str) -> Vec<SourceEntry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut tokens = line.split_whitespace();
        let Some(kind) = tokens.next() else { continue };
        if kind != "deb" && kind != "deb-src" {
            continue;
        }
        let mut entry = SourceEntry {
            types: vec![kind.to_owned()],
            enabled: true,
            ..SourceEntry::default()
        };
        let mut rest: Vec<&str> = tokens.collect();
        if rest.first().is_some_and(|t| t.starts_with('[')) {
            // Options run up to the token that ends with ']'.
            let end = rest.iter().position(|t| t.ends_with(']')).unwrap_or(0);
            let options = rest.drain(..=end).collect::<Vec<_>>().join(" ");
            for option in options
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split_whitespace()
            {
                if let Some(value) = option.strip_prefix("signed-by=") {
                    entry.signed_by = Some(value.to_owned());
                }
            }
        }
        let mut rest = rest.into_iter();
        let (Some(uri), Some(suite)) = (rest.next(), rest.next()) else {
            continue;
        };
        entry.uris.push(uri.to_owned());
        entry.suites.push(suite.to_owned());
        entry.components = rest.map(str::to_owned).collect();
        entries.push(entry);
    }
    entries
}

/// Parses the deb822 format (`*.sources`): paragraphs of `Field: value`.
fn parse_deb822_sources(text: &str) -> Vec<SourceEntry> {
    parse_paragraphs(text)
        .into_iter()
        .filter_map(|fields| {
            let list = |name: &str| -> Vec<String> {
                fields
                    .get(name)
                    .map(|v| v.split_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default()
            };
            let entry = SourceEntry {
                types: list("types"),
                uris: list("uris"),
                suites: list("suites"),
                components: list("components"),
                // Only a single key file path can be passed on; an inline key
                // (several lines) is left to the machine's trusted keys.
                signed_by: fields
                    .get("signed-by")
                    .map(|v| v.trim())
                    .filter(|v| v.starts_with('/') && !v.contains(char::is_whitespace))
                    .map(str::to_owned),
                enabled: fields
                    .get("enabled")
                    .is_none_or(|v| !v.trim().eq_ignore_ascii_case("no")),
            };
            (!entry.types.is_empty() && !entry.uris.is_empty()).then_some(entry)
        })
        .collect()
}

/// Splits deb822 text (apt sources or `apt-cache show` output) into
/// paragraphs; field names are lower-cased, continuation lines are joined
/// with newlines, `#` comment lines are skipped.
fn parse_paragraphs(text: &str) -> Vec<HashMap<String, String>> {
    let mut paragraphs = Vec::new();
    let mut current: HashMap<String, String> = HashMap::new();
    let mut last_key: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            last_key = None;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(value) = last_key.as_ref().and_then(|k| current.get_mut(k)) {
                value.push('\n');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            let key = key.trim().to_ascii_lowercase();
            current.insert(key.clone(), value.trim().to_owned());
            last_key = Some(key);
        }
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    paragraphs
}

// ---------------------------------------------------------------------------
// Private apt for one suite

/// A package record as `apt-cache show` prints it (candidate version).
#[derive(Debug, Clone)]
pub struct PackageRecord {
    pub name: String,
    pub version: String,
    /// Download size in bytes, when the record says.
    pub size: Option<u64>,
    /// Dependencies: each entry lists the alternatives (`a | b`) by name.
    pub depends: Vec<Vec<String>>,
}

/// apt, pointed at a private sources list for one suite of the machine's
/// mirror, with its own lists, cache and an empty dpkg status, all in `dir`.
pub struct PrivateApt {
    dir: PathBuf,
    conf: PathBuf,
}

impl PrivateApt {
    /// Writes the private configuration for `suite` (amd64 packages) under `dir`.
    pub fn new(dir: &Path, mirror: &Mirror, suite: &str) -> Result<Self> {
        Self::for_arch(dir, mirror, suite, "amd64")
    }

    /// [`PrivateApt::new`] for the packages of Debian architecture `arch`
    /// (e.g. `arm64`): the sources entry is restricted to it and apt takes it
    /// as its native architecture, so `show` and `download` see its packages.
    pub fn for_arch(dir: &Path, mirror: &Mirror, suite: &str, arch: &str) -> Result<Self> {
        let mut options = vec![format!("arch={arch}"), "target=Packages".to_owned()];
        if let Some(key) = &mirror.signed_by {
            options.push(format!("signed-by={key}"));
        }
        let line = format!("deb [{}] {} {suite} main\n", options.join(" "), mirror.uri);
        Self::with_sources(dir, &line, suite, arch)
    }

    /// apt for the source packages (`deb-src`) of `suite`: [`Self::has_source`]
    /// looks them up and [`Self::download_source`] fetches them.
    pub fn for_sources(dir: &Path, mirror: &Mirror, suite: &str) -> Result<Self> {
        let options = mirror
            .signed_by
            .as_ref()
            .map(|key| format!("[signed-by={key}] "))
            .unwrap_or_default();
        let line = format!("deb-src {options}{} {suite} main\n", mirror.uri);
        Self::with_sources(dir, &line, suite, "amd64")
    }

    /// Writes the private configuration with `sources_line` as its only
    /// sources entry.
    fn with_sources(dir: &Path, sources_line: &str, suite: &str, arch: &str) -> Result<Self> {
        for sub in ["lists/partial", "cache/archives/partial", "preferences.d"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        }
        let sources = dir.join("sources.list");
        write_if_changed(&sources, sources_line)?;
        let status = dir.join("status");
        if !status.exists() {
            fs::write(&status, "").with_context(|| format!("creating {}", status.display()))?;
        }
        let d = dir.display();
        // Read after the machine's configuration (so its proxy settings stay),
        // then every path that apt writes or reads state from is redirected.
        let conf_text = format!(
            "// Written by `cargo xtask setup`: apt for suite {suite} only, state kept here.\n\
             Dir::Etc::SourceList \"{d}/sources.list\";\n\
             Dir::Etc::SourceParts \"-\";\n\
             Dir::Etc::Preferences \"{d}/preferences\";\n\
             Dir::Etc::PreferencesParts \"{d}/preferences.d\";\n\
             Dir::State::Lists \"{d}/lists\";\n\
             Dir::State::Status \"{d}/status\";\n\
             Dir::State::extended_states \"{d}/extended_states\";\n\
             Dir::Cache \"{d}/cache\";\n\
             Dir::Cache::pkgcache \"pkgcache.bin\";\n\
             Dir::Cache::srcpkgcache \"srcpkgcache.bin\";\n\
             Acquire::Languages \"none\";\n\
             APT::Architecture \"{arch}\";\n\
             APT::Architectures {{ \"{arch}\"; }};\n\
             #clear APT::Update::Pre-Invoke;\n\
             #clear APT::Update::Post-Invoke;\n\
             #clear APT::Update::Post-Invoke-Success;\n\
             {}",
            if is_root() {
                // Files here are not readable by the `_apt` sandbox user.
                "APT::Sandbox::User \"root\";\n"
            } else {
                "Debug::NoLocking \"true\";\n"
            }
        );
        let conf = dir.join("apt.conf");
        write_if_changed(&conf, &conf_text)?;
        Ok(Self {
            dir: dir.to_owned(),
            conf,
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("-c").arg(&self.conf).env("LC_ALL", "C");
        cmd
    }

    /// `apt-get update` for this suite only.
    pub fn update(&self) -> Result<()> {
        capture(self.command("apt-get").args(["-qq", "update"]))
            .with_context(|| format!("apt-get update with {}", self.conf.display()))
            .map(drop)
    }

    /// The candidate record of `package`, or `None` when the suite has no such
    /// (real) package.
    pub fn show(&self, package: &str) -> Result<Option<PackageRecord>> {
        let out = self
            .command("apt-cache")
            .args(["show", "--no-all-versions", package])
            .output()
            .with_context(|| format!("running apt-cache show {package}"))?;
        if !out.status.success() {
            // Unknown or purely virtual package.
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(parse_paragraphs(&text)
            .into_iter()
            .find(|p| p.get("package").map(String::as_str) == Some(package))
            .map(|p| PackageRecord {
                name: package.to_owned(),
                version: p.get("version").cloned().unwrap_or_default(),
                size: p.get("size").and_then(|s| s.parse().ok()),
                depends: p
                    .get("depends")
                    .map(|d| parse_depends(d))
                    .unwrap_or_default(),
            }))
    }

    /// Downloads the `.deb` of `record` into `into`; returns its path.
    pub fn download(&self, record: &PackageRecord, into: &Path) -> Result<PathBuf> {
        fs::create_dir_all(into).with_context(|| format!("creating {}", into.display()))?;
        let spec = format!("{}={}", record.name, record.version);
        capture(
            self.command("apt-get")
                .args(["-qq", "download", &spec])
                .current_dir(into),
        )
        .with_context(|| format!("apt-get download {spec}"))?;
        let prefix = format!("{}_", record.name);
        fs::read_dir(into)
            .with_context(|| format!("reading {}", into.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
            .with_context(|| format!("apt-get download {spec} left no .deb in {}", into.display()))
    }

    /// Whether the suite's source index lists `package` at exactly `version`.
    pub fn has_source(&self, package: &str, version: &str) -> Result<bool> {
        let out = self
            .command("apt-cache")
            .args(["showsrc", "--only-source", package])
            .output()
            .with_context(|| format!("running apt-cache showsrc {package}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(out.status.success()
            && parse_paragraphs(&text)
                .iter()
                .any(|p| p.get("version").map(String::as_str) == Some(version)))
    }

    /// Downloads the files of source package `package` at `version` (its
    /// `.dsc`, the orig and debian tarballs) into `into`, checked against
    /// the index's hashes by apt; returns the `.dsc`.
    pub fn download_source(&self, package: &str, version: &str, into: &Path) -> Result<PathBuf> {
        fs::create_dir_all(into).with_context(|| format!("creating {}", into.display()))?;
        let spec = format!("{package}={version}");
        capture(
            self.command("apt-get")
                .args(["-qq", "source", "--download-only", &spec])
                .current_dir(into),
        )
        .with_context(|| format!("apt-get source --download-only {spec}"))?;
        let dsc = into.join(dsc_name(package, version));
        if !dsc.is_file() {
            bail!("apt-get source {spec} left no {}", dsc.display());
        }
        Ok(dsc)
    }

    /// Removes the downloaded package lists and caches (tens of MB per
    /// suite); the configuration stays, and the next use runs `update` again.
    pub fn clean(&self) -> Result<()> {
        for sub in ["lists", "cache"] {
            let path = self.dir.join(sub);
            if path.exists() {
                fs::remove_dir_all(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// File name of the `.dsc` of source package `package` at `version` (the
/// version without its epoch).
pub fn dsc_name(package: &str, version: &str) -> String {
    let bare = version.split_once(':').map_or(version, |(_, v)| v);
    format!("{package}_{bare}.dsc")
}

/// Parses a `Depends` value into groups of alternative package names
/// (version constraints and architecture qualifiers dropped).
fn parse_depends(value: &str) -> Vec<Vec<String>> {
    value
        .split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| alt.split_whitespace().next())
                .map(|name| {
                    let name = name.split('(').next().unwrap_or(name);
                    name.split(':').next().unwrap_or(name).to_owned()
                })
                .filter(|name| !name.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|group| !group.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_picks_main_suite() {
        let text = "Types: deb\n# a comment\nURIs: file:///srv/a/debian/\n\
                    Suites: bookworm bookworm-updates\nComponents: main\n\
                    Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                    Types: deb\nURIs: file:///srv/b/debian-security\n\
                    Suites: bookworm-security\nComponents: main\n";
        let entries = parse_deb822_sources(text);
        assert_eq!(entries.len(), 2);
        let mirror = pick_mirror(&entries, "bookworm").expect("mirror");
        assert_eq!(mirror.uri, "file:///srv/a/debian");
        assert_eq!(
            mirror.signed_by.as_deref(),
            Some("/usr/share/keyrings/debian-archive-keyring.gpg")
        );
        assert!(pick_mirror(&entries, "trixie").is_none());
    }

    #[test]
    fn deb822_disabled_and_inline_key() {
        let text = "Enabled: no\nTypes: deb\nURIs: file:///srv/a/debian\nSuites: bookworm\n\
                    Components: main\n\n\
                    Types: deb deb-src\nURIs: file:///srv/b/debian\nSuites: bookworm\n\
                    Components: main contrib\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n";
        let entries = parse_deb822_sources(text);
        let mirror = pick_mirror(&entries, "bookworm").expect("mirror");
        assert_eq!(mirror.uri, "file:///srv/b/debian");
        assert_eq!(mirror.signed_by, None);
    }

    #[test]
    fn one_line_format() {
        let text = "# comment\n\
                    deb-src file:///srv/a/debian bookworm main\n\
                    deb [ arch=amd64 signed-by=/k.gpg ] file:///srv/b/debian bookworm-updates main\n\
                    deb [arch=amd64 signed-by=/k.gpg] file:///srv/c/debian/ bookworm main contrib # x\n";
        let entries = parse_one_line_sources(text);
        assert_eq!(entries.len(), 3);
        let mirror = pick_mirror(&entries, "bookworm").expect("mirror");
        assert_eq!(mirror.uri, "file:///srv/c/debian");
        assert_eq!(mirror.signed_by.as_deref(), Some("/k.gpg"));
    }

    #[test]
    fn dsc_name_drops_the_epoch() {
        assert_eq!(dsc_name("qemu", "1:10.2.2+ds-1"), "qemu_10.2.2+ds-1.dsc");
        assert_eq!(dsc_name("hello", "2.10-3"), "hello_2.10-3.dsc");
    }

    #[test]
    fn depends_groups() {
        let deps = parse_depends(
            "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, \
             linux-binary-7.2.13+deb14-amd64 (= 7.2.13-1), kmod:any",
        );
        assert_eq!(
            deps,
            vec![
                vec!["dracut", "initramfs-tools", "linux-initramfs-tool"],
                vec!["linux-binary-7.2.13+deb14-amd64"],
                vec!["kmod"],
            ]
        );
    }
}
