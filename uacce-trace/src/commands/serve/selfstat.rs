//! The tool's own overhead, for `/metrics`: CPU time and memory from
//! `/proc/self/stat`, and the run time of its kernel programs from
//! `/proc/self/fdinfo` (the kernel prints `run_time_ns` and `run_cnt` for
//! every BPF program fd since Linux 5.1; they grow only while BPF run-time
//! statistics are on). Parsing is pure; the readers only read files under
//! `/proc`, except [`enable_bpf_stats`], which asks the kernel (5.8+) to
//! collect run-time statistics for as long as the returned fd is open.
//! No aya, no tokio.

use std::{
    fs,
    os::fd::{FromRawFd, OwnedFd},
};

use super::metrics::{BpfStats, SelfStats};

/// Fields of `/proc/<pid>/stat` the exposition needs, in clock ticks and pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    /// Start after boot, in clock ticks.
    pub start_ticks: u64,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
}

/// Parse a `/proc/<pid>/stat` line (the comm may hold spaces and
/// parentheses: fields are counted after the last `)`).
pub fn parse_stat(stat: &str) -> Option<ProcStat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state): field n is index n - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
    Some(ProcStat {
        utime_ticks: num(14)?,
        stime_ticks: num(15)?,
        start_ticks: num(22)?,
        vsize_bytes: num(23)?,
        rss_pages: u64::try_from(f.get(24 - 3)?.parse::<i64>().ok()?).unwrap_or(0),
    })
}

/// `btime` (boot time, seconds since the epoch) from `/proc/stat`.
pub fn parse_btime(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf takes an integer and has no memory effects.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|&v| v > 0)
}

/// This process's CPU time and memory; `None` when `/proc` is unreadable.
pub fn self_stats() -> Option<SelfStats> {
    let stat = parse_stat(&fs::read_to_string("/proc/self/stat").ok()?)?;
    let ticks = sysconf(libc::_SC_CLK_TCK).unwrap_or(100) as f64;
    let page = sysconf(libc::_SC_PAGESIZE).unwrap_or(4096);
    let start_time_seconds = fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_btime(&s))
        .map(|b| b as f64 + stat.start_ticks as f64 / ticks);
    let open_fds = fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
    Some(SelfStats {
        cpu_seconds: (stat.utime_ticks + stat.stime_ticks) as f64 / ticks,
        resident_bytes: stat.rss_pages.saturating_mul(page),
        virtual_bytes: stat.vsize_bytes,
        start_time_seconds,
        open_fds,
    })
}

/// `(run_time_ns, run_cnt)` of a BPF program's fdinfo text; `None` when
/// the text is not a BPF program's (no `prog_type`).
pub fn parse_prog_fdinfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().parse::<u64>().unwrap_or(0))
        })
    };
    field("prog_type")?;
    Some((
        field("run_time_ns").unwrap_or(0),
        field("run_cnt").unwrap_or(0),
    ))
}

/// Statistics of the BPF programs this process holds (`None`: it holds
/// none, e.g. in replay mode). `stats_fd_held`: [`enable_bpf_stats`] succeeded.
pub fn bpf_stats(stats_fd_held: bool) -> Option<BpfStats> {
    let mut s = BpfStats {
        stats_enabled: stats_fd_held
            || fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
                .is_ok_and(|v| v.trim() == "1"),
        ..Default::default()
    };
    for entry in fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let is_prog =
            fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy() == "anon_inode:bpf-prog");
        if !is_prog {
            continue;
        }
        let info = entry.file_name();
        let Ok(text) = fs::read_to_string(format!("/proc/self/fdinfo/{}", info.to_string_lossy()))
        else {
            continue;
        };
        if let Some((ns, cnt)) = parse_prog_fdinfo(&text) {
            s.programs += 1;
            s.run_time_ns = s.run_time_ns.saturating_add(ns);
            s.run_count = s.run_count.saturating_add(cnt);
        }
    }
    (s.programs > 0).then_some(s)
}

/// `BPF_ENABLE_STATS` (Linux 5.8+): the kernel times every BPF program run
/// while the returned fd is open (a small cost on every program of the
/// system, which is why `serve` asks for it only with `--bpf-stats`).
pub fn enable_bpf_stats() -> std::io::Result<OwnedFd> {
    const BPF_ENABLE_STATS: libc::c_long = 32;
    const BPF_STATS_RUN_TIME: u32 = 0;
    // union bpf_attr's enable_stats member: { __u32 type; }, padded.
    let attr: [u32; 4] = [BPF_STATS_RUN_TIME, 0, 0, 0];
    // SAFETY: bpf(2) with a pointer to an initialised attribute buffer of
    // the size passed; the kernel only reads it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_ENABLE_STATS,
            attr.as_ptr(),
            std::mem::size_of_val(&attr) as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("fd out of range"))?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let line = "4242 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 1 0 9000 123456789 300 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                utime_ticks: 150,
                stime_ticks: 50,
                start_ticks: 9000,
                vsize_bytes: 123_456_789,
                rss_pages: 300,
            })
        );
        assert_eq!(parse_stat("4242 (short) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_btime("cpu 1 2\n"), None);
    }

    #[test]
    fn this_process() {
        let s = self_stats().expect("/proc/self/stat is readable");
        assert!(s.resident_bytes > 0 && s.virtual_bytes >= s.resident_bytes);
        assert!(s.open_fds.is_some_and(|n| n >= 3));
        assert!(s.start_time_seconds.is_some_and(|t| t > 1e9));
    }

    #[test]
    fn prog_fdinfo() {
        let text = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nprog_type:\t5\nprog_jited:\t1\nprog_tag:\t3b185187f1855c4c\nmemlock:\t4096\nprog_id:\t36\nrun_time_ns:\t1500\nrun_cnt:\t3\nrecursion_misses:\t0\n";
        assert_eq!(parse_prog_fdinfo(text), Some((1500, 3)));
        assert_eq!(
            parse_prog_fdinfo("pos:\t0\nflags:\t0\nmap_type:\t2\n"),
            None
        );
        // Kernels before 5.1 have no run_time_ns: zero, not missing.
        assert_eq!(parse_prog_fdinfo("prog_type:\t5\n"), Some((0, 0)));
    }
}
