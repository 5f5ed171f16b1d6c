//! Facts about the running system that are read from files: kernel release,
//! tracefs/debugfs, the kprobe PMU, kallsyms, the kprobe blacklist,
//! `/proc/vmstat` pin counters and the caller's privileges.
//!
//! No aya here; loading trial programs is `source`'s job. Paths are
//! parameters where tests need to point them elsewhere.

use std::{
    collections::{BTreeMap, HashSet},
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use crate::kernel::plan::SymbolFacts;

/// `uname -r`.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it or fails.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".into();
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `(major, minor)` of a release string such as `6.12.57+deb13-amd64`.
pub fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Where the kernel's BTF is.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The BTF file given with `--btf`, for kernels without BTF in /sys.
static BTF_PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Read the kernel's BTF from `path` instead of [`VMLINUX_BTF`] (a
/// BTFHub-style file for the running kernel), for the rest of the
/// process; the first call wins.
pub fn use_btf_file(path: PathBuf) {
    let _ = BTF_PATH.set(path);
}

/// Where the kernel's BTF is read from: the `--btf` file, else
/// [`VMLINUX_BTF`].
pub fn btf_path() -> &'static Path {
    BTF_PATH
        .get()
        .map_or(Path::new(VMLINUX_BTF), PathBuf::as_path)
}

/// The kprobe PMU; absent when CONFIG_KPROBES is off.
pub const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe/type";

fn mounted(dir: &str, probe_file: &str) -> bool {
    Path::new(dir).join(probe_file).exists()
}

fn try_mount(fstype: &str, dir: &str) -> bool {
    let (Ok(src), Ok(target), Ok(fs)) = (
        std::ffi::CString::new("nodev"),
        std::ffi::CString::new(dir),
        std::ffi::CString::new(fstype),
    ) else {
        return false;
    };
    // SAFETY: valid NUL-terminated strings; null data is allowed.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fs.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    rc == 0
}

/// The tracefs mount point, mounting it at `/sys/kernel/tracing` if it is
/// not mounted and we may (root). `None` when unavailable.
pub fn tracefs() -> Option<PathBuf> {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if mounted(dir, "available_events") {
            return Some(PathBuf::from(dir));
        }
    }
    let dir = "/sys/kernel/tracing";
    (Path::new(dir).is_dir() && try_mount("tracefs", dir) && mounted(dir, "available_events"))
        .then(|| PathBuf::from(dir))
}

/// The debugfs mount point, mounting it if needed and allowed.
pub fn debugfs() -> Option<PathBuf> {
    let dir = "/sys/kernel/debug";
    if mounted(dir, "kprobes") || mounted(dir, "tracing") {
        return Some(PathBuf::from(dir));
    }
    (Path::new(dir).is_dir() && try_mount("debugfs", dir) && mounted(dir, "kprobes"))
        .then(|| PathBuf::from(dir))
}

/// Whether kprobes can be created: the PMU must exist.
pub fn kprobe_support() -> Result<(), String> {
    if Path::new(KPROBE_PMU).exists() {
        Ok(())
    } else {
        Err(format!(
            "no kprobe PMU ({KPROBE_PMU} missing: kernel built without CONFIG_KPROBES)"
        ))
    }
}

/// Read a symbol list and keep the names of interest. `parse` maps a line to
/// a symbol name.
fn scan_symbols(
    path: &Path,
    wanted: &HashSet<&str>,
    parse: impl Fn(&str) -> Option<&str>,
) -> Option<HashSet<String>> {
    let file = fs::File::open(path).ok()?;
    let mut found = HashSet::new();
    for line in BufReader::new(file).lines() {
        let line = line.ok()?;
        if let Some(name) = parse(&line) {
            if wanted.contains(name) {
                found.insert(name.to_string());
            }
        }
    }
    Some(found)
}

/// `/proc/kallsyms` line: `addr type name [module]`; text symbols only.
fn kallsyms_name(line: &str) -> Option<&str> {
    let mut it = line.split_whitespace();
    let _addr = it.next()?;
    let kind = it.next()?;
    let name = it.next()?;
    matches!(kind, "t" | "T").then_some(name)
}

/// `available_filter_functions` line: `name [module]` (6.5+ may append
/// an address column with `available_filter_functions_addrs`).
fn filter_function_name(line: &str) -> Option<&str> {
    line.split_whitespace().next()
}

/// kprobe blacklist line: `0xstart-0xend\tname`.
fn blacklist_name(line: &str) -> Option<&str> {
    line.split_whitespace().nth(1)
}

/// The `format` file of tracepoint `category:name` under `tracefs`.
pub fn tracepoint_format(tracefs: &Path, tracepoint: &str) -> Option<String> {
    let (category, name) = tracepoint.split_once(':')?;
    std::fs::read_to_string(
        tracefs
            .join("events")
            .join(category)
            .join(name)
            .join("format"),
    )
    .ok()
}

/// Per-symbol facts for `names`. `in_btf` is filled by the caller (it owns
/// the parsed BTF).
pub fn symbol_facts(
    names: &[&str],
    tracefs: Option<&Path>,
    debugfs: Option<&Path>,
) -> BTreeMap<String, SymbolFacts> {
    let wanted: HashSet<&str> = names.iter().copied().collect();
    let kallsyms = scan_symbols(Path::new("/proc/kallsyms"), &wanted, kallsyms_name);
    let traceable = tracefs.and_then(|t| {
        scan_symbols(
            &t.join("available_filter_functions"),
            &wanted,
            filter_function_name,
        )
    });
    let blacklist = debugfs
        .and_then(|d| scan_symbols(&d.join("kprobes/blacklist"), &wanted, blacklist_name))
        .unwrap_or_default();
    names
        .iter()
        .map(|&n| {
            (
                n.to_string(),
                SymbolFacts {
                    in_btf: false,
                    in_kallsyms: kallsyms.as_ref().is_some_and(|k| k.contains(n)),
                    traceable: traceable.as_ref().map(|t| t.contains(n)),
                    blacklisted: blacklist.contains(n),
                },
            )
        })
        .collect()
}

/// `nr_foll_pin_acquired` and `nr_foll_pin_released` from `/proc/vmstat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PinCounters {
    pub acquired: u64,
    pub released: u64,
}

/// Parse `/proc/vmstat` text.
pub fn parse_vmstat_pins(text: &str) -> Option<PinCounters> {
    let mut acquired = None;
    let mut released = None;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        match (it.next(), it.next().and_then(|v| v.parse::<u64>().ok())) {
            (Some("nr_foll_pin_acquired"), Some(v)) => acquired = Some(v),
            (Some("nr_foll_pin_released"), Some(v)) => released = Some(v),
            _ => {}
        }
    }
    Some(PinCounters {
        acquired: acquired?,
        released: released?,
    })
}

/// Read the pin counters, folding per-CPU deltas first when `refresh` (the
/// counters lag otherwise; writing `/proc/sys/vm/stat_refresh` needs root).
pub fn vmstat_pins(refresh: bool) -> Option<PinCounters> {
    if refresh {
        let _ = fs::write("/proc/sys/vm/stat_refresh", "1");
    }
    parse_vmstat_pins(&fs::read_to_string("/proc/vmstat").ok()?)
}

/// Capability numbers (linux/capability.h).
const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Parse `CapEff` from `/proc/self/status` text.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// What each capability the tool may lack is for (the start-up message).
pub fn capability_use(name: &str) -> &'static str {
    match name {
        "CAP_BPF" => "load the BPF programs and maps",
        "CAP_PERFMON" => "attach kprobes, fentry and tracepoints",
        "CAP_DAC_READ_SEARCH" => {
            "read tracefs and debugfs (root-only folders): tracepoint ids and formats, \
             traceable functions, the kprobe blacklist"
        }
        _ => "",
    }
}

/// The capabilities missing for tracing, as names; empty when we may trace.
/// CAP_SYS_ADMIN covers CAP_BPF and CAP_PERFMON on every kernel (before
/// 5.8 it is the only way); otherwise both are needed. When tracefs exists
/// but this process may not read it (`tracefs_denied`: it is mode 0700,
/// root's), CAP_DAC_READ_SEARCH (or CAP_DAC_OVERRIDE) is needed too.
pub fn missing_capabilities(cap_eff: u64, tracefs_denied: bool) -> Vec<&'static str> {
    let has = |cap: u32| cap_eff & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_SYS_ADMIN) {
        if !has(CAP_BPF) {
            missing.push("CAP_BPF");
        }
        if !has(CAP_PERFMON) {
            missing.push("CAP_PERFMON");
        }
    }
    if tracefs_denied && !has(CAP_DAC_READ_SEARCH) && !has(CAP_DAC_OVERRIDE) {
        missing.push("CAP_DAC_READ_SEARCH");
    }
    missing
}

/// Whether tracefs is there but this process may not list it.
fn tracefs_denied() -> bool {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .any(|d| fs::read_dir(d).is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied))
}

/// The message for `missing` capabilities: which, what each is for, and
/// what to do.
pub fn privileges_message(missing: &[&str], euid_root: bool) -> String {
    let what: Vec<String> = missing
        .iter()
        .map(|c| format!("{c} (to {})", capability_use(c)))
        .collect();
    format!(
        "tracing needs root, or the capabilities CAP_BPF, CAP_PERFMON and \
         CAP_DAC_READ_SEARCH (kernels before 5.8: CAP_SYS_ADMIN and \
         CAP_DAC_READ_SEARCH); this process{} lacks {}. Run it with sudo, or \
         grant them: `sudo setcap cap_bpf,cap_perfmon,cap_dac_read_search+ep \
         $(command -v uacce-trace)`; the systemd unit uacce-trace.service \
         grants them (AmbientCapabilities=)",
        if euid_root { ", although root," } else { "" },
        what.join(", ")
    )
}

/// `Err(message)` naming what is missing when this process may not trace.
pub fn check_privileges() -> Result<(), String> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = parse_cap_eff(&status).unwrap_or(0);
    let missing = missing_capabilities(cap_eff, tracefs_denied());
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    Err(privileges_message(&missing, euid == 0))
}

/// Whether process or thread `tgid` still exists (its `/proc` entry,
/// which threads have too; a zombie keeps one until it is reaped).
pub fn process_exists(tgid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{tgid}")).exists()
}

/// The start time of process `tgid` (clock ticks after boot, field 22 of
/// `/proc/PID/stat`): with the pid, the process's identity, since a pid
/// can be handed out again. `None` when the process is gone.
pub fn process_start_ticks(tgid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{tgid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

/// Field 22 of a `/proc/PID/stat` line; the comm (field 2) may hold spaces
/// and parentheses, so fields are counted after its last `)`.
pub fn parse_start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state): field 22 is its 20th.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The cgroup v2 path in the text of `/proc/PID/cgroup`: its `0::PATH`
/// line (the unified hierarchy; on a pure cgroup v1 system there is none).
pub fn parse_cgroup_v2(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The cgroup v2 path of process `tgid` (`/proc/PID/cgroup` is readable
/// by every user), relative to our cgroup namespace; `None` when the
/// process is gone or the system has no cgroup v2 hierarchy.
pub fn task_cgroup(tgid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/cgroup")).ok()?;
    parse_cgroup_v2(&text).map(str::to_string)
}

/// `bpf_prog_info.recursion_misses` of the program behind `fd` (5.12+):
/// runs the kernel skipped because the program was already running on
/// that CPU (a trampoline program preempted, or reentered from an
/// interrupt). Such an event never reaches the program, so only this
/// counter knows it was lost. `None` when the kernel does not say.
pub fn prog_recursion_misses(fd: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    use std::os::fd::AsRawFd;
    /// `BPF_OBJ_GET_INFO_BY_FD`.
    const CMD: libc::c_long = 15;
    /// `struct bpf_prog_info` up to and including `recursion_misses`.
    const INFO_LEN: usize = 216;
    /// Offset of `recursion_misses` (uapi, stable).
    const MISSES: usize = 208;
    let mut info = [0u64; INFO_LEN / 8];
    // struct { __u32 bpf_fd; __u32 info_len; __aligned_u64 info; }
    let mut attr = [0u64; 2];
    attr[0] = u64::from(fd.as_raw_fd() as u32) | ((INFO_LEN as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    // SAFETY: bpf(2) with a zeroed attribute of the size given; the kernel
    // writes at most `info_len` bytes into `info` and the length it wrote
    // back into `attr`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            CMD,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr) as libc::c_uint,
        )
    };
    let written = (attr[0] >> 32) as usize;
    (rc == 0 && written > MISSES).then(|| info[MISSES / 8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_of_a_stat_line_and_of_this_process() {
        let line = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(parse_start_ticks(line), Some(987_654));
        assert_eq!(parse_start_ticks("garbage"), None);
        let me = std::process::id();
        assert!(process_start_ticks(me).is_some());
        assert_eq!(process_start_ticks(me), process_start_ticks(me));
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("6.12.57+deb13-amd64"), Some((6, 12)));
        assert_eq!(parse_version("6.1.0-37-amd64"), Some((6, 1)));
        assert_eq!(parse_version("7.2.1"), Some((7, 2)));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn cgroup_v2_line() {
        let hybrid = "12:cpuset:/\n1:name=systemd:/user.slice\n0::/user.slice/user-0.slice/session-3.scope\n";
        assert_eq!(
            parse_cgroup_v2(hybrid),
            Some("/user.slice/user-0.slice/session-3.scope")
        );
        assert_eq!(parse_cgroup_v2("0::/\n"), Some("/"));
        assert_eq!(parse_cgroup_v2("4:memory:/x\n"), None);
        // Our own process, read for real: where the system has cgroup v2
        // at all, the path is absolute.
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        match (parse_cgroup_v2(&own), task_cgroup(std::process::id())) {
            (Some(p), Some(q)) => {
                assert!(q.starts_with('/'), "{q}");
                assert_eq!(p, q);
            }
            (None, None) => {}
            other => panic!("{other:?} from {own}"),
        }
        assert_eq!(task_cgroup(u32::MAX), None);
    }

    #[test]
    fn vmstat() {
        let text = "nr_free_pages 1\nnr_foll_pin_acquired 512\nnr_foll_pin_released 256\n";
        assert_eq!(
            parse_vmstat_pins(text),
            Some(PinCounters {
                acquired: 512,
                released: 256
            })
        );
        assert_eq!(parse_vmstat_pins("nr_free_pages 1\n"), None);
    }

    #[test]
    fn capabilities() {
        assert_eq!(
            parse_cap_eff("Name:\tx\nCapEff:\t000001ffffffffff\n"),
            Some(0x1ff_ffff_ffff)
        );
        assert!(missing_capabilities(0x1ff_ffff_ffff, true).is_empty());
        assert_eq!(
            missing_capabilities(0, false),
            vec!["CAP_BPF", "CAP_PERFMON"]
        );
        assert_eq!(
            missing_capabilities(0, true),
            vec!["CAP_BPF", "CAP_PERFMON", "CAP_DAC_READ_SEARCH"]
        );
        assert_eq!(
            missing_capabilities(1 << CAP_BPF, false),
            vec!["CAP_PERFMON"]
        );
        let bpf_perfmon = (1 << CAP_BPF) | (1 << CAP_PERFMON);
        assert!(missing_capabilities(bpf_perfmon, false).is_empty());
        assert_eq!(
            missing_capabilities(bpf_perfmon, true),
            vec!["CAP_DAC_READ_SEARCH"]
        );
        assert!(missing_capabilities(bpf_perfmon | (1 << CAP_DAC_READ_SEARCH), true).is_empty());
        assert!(missing_capabilities(bpf_perfmon | (1 << CAP_DAC_OVERRIDE), true).is_empty());
        assert!(missing_capabilities(1 << CAP_SYS_ADMIN, false).is_empty());
        let msg = privileges_message(&["CAP_PERFMON"], false);
        assert!(
            msg.contains("lacks CAP_PERFMON (to attach kprobes"),
            "{msg}"
        );
        assert!(
            msg.contains("setcap cap_bpf,cap_perfmon,cap_dac_read_search+ep"),
            "{msg}"
        );
    }

    #[test]
    fn symbol_line_parsers() {
        assert_eq!(
            kallsyms_name("ffffffff81234560 T pin_user_pages_fast"),
            Some("pin_user_pages_fast")
        );
        assert_eq!(kallsyms_name("ffffffff81234560 D some_data"), None);
        assert_eq!(
            filter_function_name("unpin_user_page [foo]"),
            Some("unpin_user_page")
        );
        assert_eq!(
            blacklist_name("0xffffffff81000000-0xffffffff81000010\tdo_int3"),
            Some("do_int3")
        );
    }
}
