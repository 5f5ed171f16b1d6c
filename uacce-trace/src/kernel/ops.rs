//! Requests (`--op`): which user-space functions to time, where they are
//! and how their probes attach.
//!
//! - [`parse_op`]: one `--op` argument, `BINARY:SYMBOL[:PID]` or a preset
//!   (`uadk`, `qpl`, `dml`);
//! - [`resolve`]: every argument to probe locations: the ELF symbol's file
//!   offset in the binary (what a uprobe takes; section-relative, so PIE
//!   executables and shared libraries with any load layout are right), and
//!   for presets the known synchronous entry points in every copy of the
//!   library that a running process has mapped (`/proc/*/maps`), else in
//!   the usual library directories; it says which were found;
//! - [`attach`]: the request programs (`uacce-trace-ebpf/src/request.rs`)
//!   on every location, return half first, the op's number as the attach
//!   cookie.
//!
//! Reads files and `/proc`; the kernel boundary.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    num::NonZeroU32,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use aya::{
    programs::{uprobe::UProbeAttachPoint, uprobe::UProbeScope, UProbe},
    Ebpf,
};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use uacce_trace_common::hooks::{Attach, REQUEST};

/// A library family whose synchronous request entry points are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// UADK (`libwd*.so`, HiSilicon accelerators).
    Uadk,
    /// Intel QPL (`libqpl.so`).
    Qpl,
    /// Intel DML (`libdml.so`).
    Dml,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Uadk, Preset::Qpl, Preset::Dml];

    pub const fn name(self) -> &'static str {
        match self {
            Preset::Uadk => "uadk",
            Preset::Qpl => "qpl",
            Preset::Dml => "dml",
        }
    }

    /// Library file names start with this (and hold `.so`).
    pub const fn library_prefix(self) -> &'static str {
        match self {
            Preset::Uadk => "libwd",
            Preset::Qpl => "libqpl",
            Preset::Dml => "libdml",
        }
    }

    /// The entry points timed as requests.
    pub const fn symbols(self) -> &'static [&'static str] {
        match self {
            Preset::Uadk => &[
                "wd_do_comp_sync",
                "wd_do_comp_sync2",
                "wd_do_comp_strm",
                "wd_do_cipher_sync",
                "wd_do_digest_sync",
                "wd_do_aead_sync",
                "wd_do_rsa_sync",
                "wd_do_dh_sync",
                "wd_do_ecc_sync",
            ],
            Preset::Qpl => &["qpl_execute_job", "qpl_submit_job", "qpl_wait_job"],
            Preset::Dml => &["dml_execute_job"],
        }
    }
}

/// One `--op` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpArg {
    Preset(Preset),
    Probe {
        binary: String,
        symbol: String,
        pid: Option<u32>,
    },
}

impl fmt::Display for OpArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpArg::Preset(p) => f.write_str(p.name()),
            OpArg::Probe {
                binary,
                symbol,
                pid: None,
            } => write!(f, "{binary}:{symbol}"),
            OpArg::Probe {
                binary,
                symbol,
                pid: Some(pid),
            } => write!(f, "{binary}:{symbol}:{pid}"),
        }
    }
}

/// Parse one `--op` argument (a clap value parser).
pub fn parse_op(s: &str) -> Result<OpArg, String> {
    if let Some(p) = Preset::ALL.into_iter().find(|p| p.name() == s) {
        return Ok(OpArg::Preset(p));
    }
    let usage = "expected BINARY:SYMBOL[:PID] (e.g. /usr/lib/libwd_comp.so.2:wd_do_comp_sync, \
                 ./app:do_request:1234) or a preset: uadk, qpl, dml";
    let parts: Vec<&str> = s.split(':').collect();
    let (binary, symbol, pid) = match parts.as_slice() {
        [b, sym] => (*b, *sym, None),
        [b, sym, pid] => {
            let pid = pid
                .parse::<u32>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("`{s}`: PID `{pid}` is not a process id; {usage}"))?;
            (*b, *sym, Some(pid))
        }
        _ => return Err(format!("`{s}`: {usage}")),
    };
    if binary.is_empty() {
        return Err(format!("`{s}`: no BINARY; {usage}"));
    }
    if symbol.is_empty() || symbol.contains(char::is_whitespace) {
        return Err(format!("`{s}`: no SYMBOL; {usage}"));
    }
    Ok(OpArg::Probe {
        binary: binary.to_string(),
        symbol: symbol.to_string(),
        pid,
    })
}

/// One place a probe attaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSite {
    /// The op's number (index into [`OpPlan::names`], the attach cookie).
    pub op: u32,
    pub binary: PathBuf,
    pub symbol: String,
    /// File offset of the symbol in `binary`.
    pub offset: u64,
    /// Only this process (`BINARY:SYMBOL:PID`).
    pub pid: Option<u32>,
}

/// Every request probe of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpPlan {
    /// Op names by number (the symbol; `SYMBOL@BINARY` when the same symbol
    /// of two different binaries was asked for).
    pub names: Vec<String>,
    pub sites: Vec<ProbeSite>,
    /// What was resolved where, and which preset entry points were not
    /// found, for people.
    pub notes: Vec<String>,
}

impl OpPlan {
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }
}

/// The file offset of function `symbol` in the ELF file `data`.
pub fn symbol_offset(data: &[u8], symbol: &str) -> Result<u64, SymbolError> {
    let file = object::File::parse(data).map_err(|e| SymbolError::NotElf(e.to_string()))?;
    let found = file
        .symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.is_definition() && s.kind() == SymbolKind::Text && s.name() == Ok(symbol));
    let Some(sym) = found else {
        let mut near: BTreeSet<String> = BTreeSet::new();
        let needle = symbol.to_ascii_lowercase();
        for s in file.symbols().chain(file.dynamic_symbols()) {
            if let Ok(name) = s.name() {
                if s.is_definition()
                    && s.kind() == SymbolKind::Text
                    && name.to_ascii_lowercase().contains(&needle)
                {
                    near.insert(name.to_string());
                }
            }
        }
        return Err(SymbolError::NotFound {
            near: near.into_iter().take(5).collect(),
        });
    };
    let index = sym
        .section_index()
        .ok_or_else(|| SymbolError::NotElf("symbol without a section".into()))?;
    let section = file
        .section_by_index(index)
        .map_err(|e| SymbolError::NotElf(e.to_string()))?;
    let (file_offset, _) = section
        .file_range()
        .ok_or_else(|| SymbolError::NotElf("symbol in a section without file data".into()))?;
    sym.address()
        .checked_sub(section.address())
        .and_then(|rel| rel.checked_add(file_offset))
        .ok_or_else(|| SymbolError::NotElf("symbol outside its section".into()))
}

/// Why a symbol has no probe location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SymbolError {
    NotElf(String),
    NotFound { near: Vec<String> },
}

/// Why `--op` cannot be served; the command exits with status 2.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--op {arg}: {why}")]
pub struct OpError {
    pub arg: String,
    pub why: String,
}

/// Libraries mapped by running processes: path → processes mapping it.
/// Paths are the ones the processes see; when this process cannot open
/// one (another mount namespace), `/proc/PID/root/PATH` is used.
fn mapped_files(matches: impl Fn(&str) -> bool) -> BTreeMap<PathBuf, BTreeSet<u32>> {
    let mut out: BTreeMap<PathBuf, BTreeSet<u32>> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        for line in maps.lines() {
            // address perms offset dev inode path
            let Some(path) = line.split_whitespace().nth(5) else {
                continue;
            };
            if !path.starts_with('/') || line.ends_with("(deleted)") {
                continue;
            }
            let name = Path::new(path)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            if !matches(name) {
                continue;
            }
            let mut p = PathBuf::from(path);
            if std::fs::metadata(&p).is_err() {
                p = PathBuf::from(format!("/proc/{pid}/root{path}"));
            }
            out.entry(p).or_default().insert(pid);
        }
    }
    out
}

/// Library directories searched when no process maps a preset's library.
const LIBRARY_DIRS: &[&str] = &[
    "/usr/local/lib",
    "/usr/local/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/lib",
    "/lib64",
];

fn installed_files(matches: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = LIBRARY_DIRS.iter().map(PathBuf::from).collect();
    // Multiarch directories (`/usr/lib/x86_64-linux-gnu`, …).
    for base in ["/usr/lib", "/lib"] {
        if let Ok(rd) = std::fs::read_dir(base) {
            for e in rd.flatten() {
                let name = e.file_name();
                if name.to_str().is_some_and(|n| n.ends_with("-linux-gnu")) {
                    dirs.push(e.path());
                }
            }
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_name().to_str().is_some_and(&matches) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// One file per (device, inode): the same library seen under several paths
/// is probed once (a uprobe is per inode).
fn dedup_files(files: Vec<(PathBuf, String)>) -> Vec<(PathBuf, String)> {
    let mut seen = BTreeSet::new();
    files
        .into_iter()
        .filter(|(p, _)| match std::fs::metadata(p) {
            Ok(m) => seen.insert((m.dev(), m.ino())),
            Err(_) => false,
        })
        .collect()
}

/// Find `binary` as given, else a mapped file of that name (a bare name),
/// else on `PATH`.
fn locate_binary(binary: &str, pid: Option<u32>) -> Result<PathBuf, String> {
    let p = Path::new(binary);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    if let Some(pid) = pid {
        let inside = PathBuf::from(format!(
            "/proc/{pid}/root/{}",
            binary.trim_start_matches('/')
        ));
        if binary.starts_with('/') && inside.exists() {
            return Ok(inside);
        }
    }
    if !binary.contains('/') {
        if let Some((path, _)) = mapped_files(|n| n == binary).into_iter().next() {
            return Ok(path);
        }
        if let Some(path) = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(binary))
                .find(|c| c.is_file())
        }) {
            return Ok(path);
        }
    }
    Err(format!("binary `{binary}` not found"))
}

fn describe_symbol_error(symbol: &str, binary: &Path, e: SymbolError) -> String {
    match e {
        SymbolError::NotElf(why) => format!("{}: not a usable ELF file: {why}", binary.display()),
        SymbolError::NotFound { near } if near.is_empty() => {
            format!("no function `{symbol}` in {}", binary.display())
        }
        SymbolError::NotFound { near } => format!(
            "no function `{symbol}` in {} (similar: {})",
            binary.display(),
            near.join(", ")
        ),
    }
}

/// Resolve every `--op` argument into probe sites. Errors (missing
/// binary, unknown symbol, a preset found nowhere, a process that does
/// not exist) name the argument.
pub fn resolve(args: &[OpArg]) -> Result<OpPlan, OpError> {
    let mut plan = OpPlan::default();
    // (symbol, binary) per op name, to tell same-named symbols apart.
    let mut op_of: BTreeMap<String, u32> = BTreeMap::new();
    let mut add_site = |plan: &mut OpPlan, name: String, site: ProbeSite| {
        let next = plan.names.len() as u32;
        let op = *op_of.entry(name.clone()).or_insert_with(|| {
            plan.names.push(name);
            next
        });
        let site = ProbeSite { op, ..site };
        if !plan.sites.contains(&site) {
            plan.sites.push(site);
        }
    };
    // Symbols given explicitly: the name is the symbol unless two binaries
    // share it.
    let mut explicit: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in args {
        if let OpArg::Probe { binary, symbol, .. } = a {
            explicit
                .entry(symbol.clone())
                .or_default()
                .insert(binary.clone());
        }
    }
    for a in args {
        let err = |why: String| OpError {
            arg: a.to_string(),
            why,
        };
        match a {
            OpArg::Probe {
                binary,
                symbol,
                pid,
            } => {
                if let Some(pid) = pid {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        return Err(err(format!("no process {pid}")));
                    }
                }
                let path = locate_binary(binary, *pid).map_err(err)?;
                let data = std::fs::read(&path)
                    .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
                let offset = symbol_offset(&data, symbol)
                    .map_err(|e| err(describe_symbol_error(symbol, &path, e)))?;
                let name = if explicit.get(symbol).is_some_and(|b| b.len() > 1) {
                    format!("{symbol}@{binary}")
                } else {
                    symbol.clone()
                };
                plan.notes.push(format!(
                    "op {name}: {symbol} at {:#x} in {}{}",
                    offset,
                    path.display(),
                    pid.map(|p| format!(", process {p} only"))
                        .unwrap_or_default()
                ));
                add_site(
                    &mut plan,
                    name,
                    ProbeSite {
                        op: 0,
                        binary: path,
                        symbol: symbol.clone(),
                        offset,
                        pid: *pid,
                    },
                );
            }
            OpArg::Preset(preset) => {
                let prefix = preset.library_prefix();
                let matches = |n: &str| n.starts_with(prefix) && n.contains(".so");
                let mapped = mapped_files(matches);
                let (files, origin): (Vec<(PathBuf, String)>, &str) = if mapped.is_empty() {
                    (
                        installed_files(matches)
                            .into_iter()
                            .map(|p| (p, "installed, mapped by no running process".to_string()))
                            .collect(),
                        "installed",
                    )
                } else {
                    (
                        mapped
                            .into_iter()
                            .map(|(p, pids)| {
                                let n = pids.len();
                                (
                                    p,
                                    format!(
                                        "mapped by {n} process{}",
                                        if n == 1 { "" } else { "es" }
                                    ),
                                )
                            })
                            .collect(),
                        "mapped",
                    )
                };
                let files = dedup_files(files);
                let mut found_any: BTreeSet<&str> = BTreeSet::new();
                for (path, how) in &files {
                    let Ok(data) = std::fs::read(path) else {
                        continue;
                    };
                    let mut here = Vec::new();
                    for &symbol in preset.symbols() {
                        if let Ok(offset) = symbol_offset(&data, symbol) {
                            here.push(symbol);
                            found_any.insert(symbol);
                            add_site(
                                &mut plan,
                                symbol.to_string(),
                                ProbeSite {
                                    op: 0,
                                    binary: path.clone(),
                                    symbol: symbol.to_string(),
                                    offset,
                                    pid: None,
                                },
                            );
                        }
                    }
                    if !here.is_empty() {
                        plan.notes.push(format!(
                            "op {}: {} in {} ({how})",
                            preset.name(),
                            here.join(", "),
                            path.display()
                        ));
                    }
                }
                if found_any.is_empty() {
                    return Err(err(format!(
                        "none of {} found: no {prefix}*.so library {} ({} checked); \
                         name the library with BINARY:SYMBOL",
                        preset.symbols().join(", "),
                        if origin == "mapped" {
                            "mapped by a running process has them"
                        } else {
                            "is mapped by a running process or installed in the usual directories"
                        },
                        files.len()
                    )));
                }
                let missing: Vec<&str> = preset
                    .symbols()
                    .iter()
                    .copied()
                    .filter(|s| !found_any.contains(s))
                    .collect();
                if !missing.is_empty() {
                    plan.notes.push(format!(
                        "op {}: not found (not probed): {}",
                        preset.name(),
                        missing.join(", ")
                    ));
                }
            }
        }
    }
    Ok(plan)
}

/// Load the request programs and attach them at every site of `plan`,
/// return half first. Returns the number of sites attached; fails on the
/// first site that cannot be attached (the run would miss its requests).
pub(crate) fn attach(ebpf: &mut Ebpf, plan: &OpPlan) -> Result<usize, String> {
    fn uprobe<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe, String> {
        ebpf.program_mut(name)
            .ok_or_else(|| format!("program {name} missing from the object"))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())
    }
    for program in REQUEST {
        let name = program.to_string();
        uprobe(ebpf, &name)?.load().map_err(|e| {
            format!(
                "{name}: {}",
                crate::kernel::attach::describe_program_error(&e)
            )
        })?;
    }
    for site in &plan.sites {
        for program in REQUEST {
            debug_assert!(matches!(program.attach, Attach::UProbe | Attach::URetProbe));
            let name = program.to_string();
            let prog = uprobe(ebpf, &name)?;
            let scope = match site.pid.and_then(NonZeroU32::new) {
                Some(pid) => UProbeScope::OneProcess(pid),
                None => UProbeScope::AllProcesses,
            };
            let point = UProbeAttachPoint {
                location: site.offset.into(),
                cookie: Some(u64::from(site.op)),
            };
            prog.attach(point, &site.binary, scope).map_err(|e| {
                format!(
                    "{name} on {} in {}: {e}",
                    site.symbol,
                    site.binary.display()
                )
            })?;
        }
    }
    Ok(plan.sites.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_syntax() {
        assert_eq!(parse_op("uadk"), Ok(OpArg::Preset(Preset::Uadk)));
        assert_eq!(
            parse_op("/bin/x:f"),
            Ok(OpArg::Probe {
                binary: "/bin/x".into(),
                symbol: "f".into(),
                pid: None
            })
        );
        assert_eq!(
            parse_op("x:f:12").map(|a| a.to_string()),
            Ok("x:f:12".to_string())
        );
        for bad in [
            "nothing", "x:", ":f", "x:f:0", "x:f:abc", "a:b:c:d", "x:f g",
        ] {
            assert!(parse_op(bad).is_err(), "{bad}");
        }
    }

    /// The offset of a function of this very test binary, checked against
    /// its own load address: the bytes at the offset are the function's.
    #[test]
    fn symbol_offset_of_own_function() {
        let exe = std::fs::read("/proc/self/exe").expect("own executable");
        let off = symbol_offset(&exe, "uacce_trace_ops_test_probe_target").expect("found");
        let addr = uacce_trace_ops_test_probe_target as *const () as usize;
        // The mapping that holds the function: file offset + (addr - start).
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let exe_path = std::fs::read_link("/proc/self/exe").expect("link");
        let mut expect = None;
        for l in maps.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 || Path::new(f[5]) != exe_path {
                continue;
            }
            let (s, e) = f[0].split_once('-').expect("range");
            let (s, e) = (
                usize::from_str_radix(s, 16).expect("hex"),
                usize::from_str_radix(e, 16).expect("hex"),
            );
            if (s..e).contains(&addr) {
                let file_off = u64::from_str_radix(f[2], 16).expect("hex");
                expect = Some(file_off + (addr - s) as u64);
            }
        }
        assert_eq!(Some(off), expect);
        assert!(matches!(
            symbol_offset(&exe, "no_such_function_anywhere"),
            Err(SymbolError::NotFound { .. })
        ));
        assert!(matches!(
            symbol_offset(b"not an elf", "f"),
            Err(SymbolError::NotElf(_))
        ));
    }

    #[unsafe(no_mangle)]
    #[inline(never)]
    extern "C" fn uacce_trace_ops_test_probe_target() -> u64 {
        std::hint::black_box(42)
    }
}
