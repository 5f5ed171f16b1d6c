//! The tool's own cost in the kernel while `top` runs live: BPF run-time
//! statistics (`BPF_ENABLE_STATS`, kernel 5.8+) summed over the loaded
//! programs whose names are ours, turned into ns per program run and CPU
//! share per interval.
//!
//! The one place besides `source` that calls aya, and only to read program
//! info: nothing is loaded or attached here. [`cost_between`] and
//! [`program_names`] are pure; [`CostProbe`] does the syscalls.

use std::{
    collections::HashSet,
    os::fd::OwnedFd,
    time::{Duration, SystemTime},
};

use uacce_trace_common::PinFunc;

use super::app::CostState;

/// Kernel program names are cut to this many bytes (`BPF_OBJ_NAME_LEN` − 1).
pub const KERNEL_NAME_LEN: usize = 15;

/// Programs of the eBPF object besides the pin/unpin ones (see
/// `uacce-trace-ebpf/src/iopf.rs`).
const OTHER_PROGRAMS: [&str; 13] = [
    "iopf_report_fentry",
    "iopf_report_kprobe",
    "iopf_group_response_fentry",
    "iopf_group_response_kprobe",
    "iommu_page_response_fentry",
    "iommu_page_response_kprobe",
    "ioctl_enter",
    "ioctl_exit",
    "sva_get_pasid_fexit",
    "sva_get_pasid_kprobe",
    "sva_get_pasid_kretprobe",
    "sva_unbind_fentry",
    "sva_unbind_kprobe",
];

/// The names our programs have in the kernel (cut to [`KERNEL_NAME_LEN`]).
pub fn program_names() -> HashSet<String> {
    let mut names = HashSet::new();
    for f in PinFunc::ALL {
        for suffix in ["fentry", "fexit", "kprobe", "kretprobe"] {
            names.insert(format!("{}_{suffix}", f.program_base()));
        }
    }
    names.extend(OTHER_PROGRAMS.iter().map(|s| s.to_string()));
    names
        .into_iter()
        .map(|n| n.chars().take(KERNEL_NAME_LEN).collect())
        .collect()
}

/// Run time and runs of our programs at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// When (CLOCK_MONOTONIC ns).
    pub at_ns: u64,
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// The cost between two readings.
pub fn cost_between(prev: Totals, cur: Totals) -> CostState {
    let wall_ns = cur.at_ns.saturating_sub(prev.at_ns);
    if wall_ns == 0 {
        return CostState::Measuring;
    }
    let runs = cur.run_count.saturating_sub(prev.run_count);
    let time_ns = cur.run_time_ns.saturating_sub(prev.run_time_ns);
    CostState::Known {
        ns_per_run: (runs > 0).then(|| time_ns as f64 / runs as f64),
        runs_per_s: runs as f64 * 1e9 / wall_ns as f64,
        cpu_pct: time_ns as f64 * 100.0 / wall_ns as f64,
    }
}

/// Keeps BPF statistics enabled while it lives and reads them.
pub struct CostProbe {
    /// Statistics stay enabled while this descriptor is open.
    _stats: OwnedFd,
    names: HashSet<String>,
    /// Programs loaded before this (another instance's) are not ours.
    loaded_since: SystemTime,
    last: Option<Totals>,
}

impl CostProbe {
    /// Enable statistics. `loaded_since`: just before our programs were
    /// loaded. The error says why the cost cannot be shown.
    pub fn start(loaded_since: SystemTime) -> Result<CostProbe, String> {
        let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .map_err(|e| format!("BPF stats: {}", e.io_error))?;
        Ok(CostProbe {
            _stats: fd,
            names: program_names(),
            loaded_since: loaded_since
                .checked_sub(Duration::from_secs(2))
                .unwrap_or(loaded_since),
            last: None,
        })
    }

    fn totals(&self, at_ns: u64) -> Totals {
        let mut t = Totals {
            at_ns,
            ..Totals::default()
        };
        for info in aya::programs::loaded_programs().flatten() {
            let ours = info.name_as_str().is_some_and(|n| self.names.contains(n))
                && info.loaded_at().is_none_or(|at| at >= self.loaded_since);
            if ours {
                t.run_time_ns = t
                    .run_time_ns
                    .saturating_add(u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX));
                t.run_count = t.run_count.saturating_add(info.run_count());
            }
        }
        t
    }

    /// Read the statistics at `at_ns` and return the cost since the last read.
    pub fn sample(&mut self, at_ns: u64) -> CostState {
        let cur = self.totals(at_ns);
        let out = match self.last {
            Some(prev) => cost_between(prev, cur),
            None => CostState::Measuring,
        };
        self.last = Some(cur);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_like_the_kernel_does() {
        let names = program_names();
        assert!(names.contains("pup_fast_fentry"));
        assert!(names.contains("iommu_page_resp"));
        assert!(names.contains("ioctl_enter"));
        assert!(names.iter().all(|n| n.len() <= KERNEL_NAME_LEN));
    }

    #[test]
    fn cost_is_time_per_run_and_cpu_share() {
        let a = Totals {
            at_ns: 1_000_000_000,
            run_time_ns: 5_000,
            run_count: 10,
        };
        let b = Totals {
            at_ns: 2_000_000_000,
            run_time_ns: 5_000 + 150_000,
            run_count: 10 + 1_000,
        };
        assert_eq!(
            cost_between(a, b),
            CostState::Known {
                ns_per_run: Some(150.0),
                runs_per_s: 1000.0,
                cpu_pct: 0.015,
            }
        );
        assert!(matches!(
            cost_between(
                a,
                Totals {
                    at_ns: a.at_ns + 1,
                    ..a
                }
            ),
            CostState::Known {
                ns_per_run: None,
                ..
            }
        ));
        assert_eq!(cost_between(a, a), CostState::Measuring);
    }
}
