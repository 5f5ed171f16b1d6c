//! The tool's own cost in the kernel while `top` runs live: BPF run-time
//! statistics (`BPF_ENABLE_STATS`, kernel 5.8+) summed over the programs
//! the tracer loaded (their kernel ids, from
//! [`Tracer::loaded_programs`](crate::ingest::live::Tracer::loaded_programs): no
//! list of names to keep in step with the eBPF crate, and another
//! instance's programs are never counted), turned into ns per program run
//! and CPU share per interval.
//!
//! The one place besides `source` that calls aya, and only to read program
//! info: nothing is loaded or attached here. [`cost_between`] and
//! [`sum_ours`] are pure; [`CostProbe`] does the syscalls.

use std::{collections::HashSet, os::fd::OwnedFd};

use super::app::CostState;

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

/// One program's statistics: kernel id, run time (ns), runs.
pub type ProgramStats = (u32, u64, u64);

/// Sums the statistics of the programs whose ids are in `ours`.
pub fn sum_ours(
    at_ns: u64,
    ours: &HashSet<u32>,
    programs: impl IntoIterator<Item = ProgramStats>,
) -> Totals {
    let mut t = Totals {
        at_ns,
        ..Totals::default()
    };
    for (id, run_time_ns, run_count) in programs {
        if ours.contains(&id) {
            t.run_time_ns = t.run_time_ns.saturating_add(run_time_ns);
            t.run_count = t.run_count.saturating_add(run_count);
        }
    }
    t
}

/// Keeps BPF statistics enabled while it lives and reads them.
pub struct CostProbe {
    /// Statistics stay enabled while this descriptor is open.
    _stats: OwnedFd,
    /// Kernel ids of our programs.
    ids: HashSet<u32>,
    last: Option<Totals>,
}

impl CostProbe {
    /// Enable statistics for `programs` (`(id, name)` from
    /// [`Tracer::loaded_programs`](crate::ingest::live::Tracer::loaded_programs)).
    /// The error says why the cost cannot be shown.
    pub fn start(programs: &[(u32, String)]) -> Result<CostProbe, String> {
        if programs.is_empty() {
            return Err("no BPF program ids".into());
        }
        let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .map_err(|e| format!("BPF stats: {}", e.io_error))?;
        Ok(CostProbe {
            _stats: fd,
            ids: programs.iter().map(|(id, _)| *id).collect(),
            last: None,
        })
    }

    fn totals(&self, at_ns: u64) -> Totals {
        let stats = aya::programs::loaded_programs().flatten().map(|info| {
            (
                info.id(),
                u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                info.run_count(),
            )
        });
        sum_ours(at_ns, &self.ids, stats)
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
    fn only_our_programs_are_summed() {
        let ours: HashSet<u32> = [7, 9].into_iter().collect();
        let t = sum_ours(
            42,
            &ours,
            [(7, 1_000, 10), (8, 50_000, 500), (9, 2_000, 5), (10, 1, 1)],
        );
        assert_eq!(
            t,
            Totals {
                at_ns: 42,
                run_time_ns: 3_000,
                run_count: 15,
            }
        );
        assert_eq!(sum_ours(1, &HashSet::new(), [(7, 1, 1)]).run_count, 0);
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
