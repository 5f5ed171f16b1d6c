//! Summary mode against per-event mode, on the same calls in the same
//! boot: in a main VM with the tool, `record --summary --format json`
//! runs beside `trace --json` (xtask/vm-guest/vm-test.sh), both attached
//! before the workloads start and stopped after they end. For the
//! processes that ran entirely inside both lifetimes (the io_uring
//! workload, and on the test kernel every run of the uacce_ctrl fixture):
//!
//! - (s1) the summary recorder started, stopped on SIGINT with status 130
//!   (`record`'s status when interrupted), and its loss ledger names no
//!   reason but the IO page fault ones (that path is the same in both
//!   modes, and the attribution modes of the test kernel cause them on
//!   purpose; [`super::attribution`] checks them) and the start edge
//!   (`in_flight_at_start`);
//! - (s2) per process and kind its count equals the number of `trace`
//!   records of that process and kind.
//!
//! Latencies are noted, not compared: with two tracers on one kprobe, each
//! one's entry-to-exit window holds the other one's handlers (under TCG
//! several µs of ring writes for `trace`), so the same call measures
//! differently in each. The host test
//! `summary_mode_matches_per_event_on_the_same_calls` (tracepoints, where
//! that difference is small) checks percentiles within one bucket.

use std::collections::BTreeMap;

use serde_json::Value;

use super::report::{num, workload_result, Verdict};
use super::testkernel::FIXTURE_COMM;
use crate::vm::console::Console;

/// Sections of the summary recorder.
pub const SECTIONS: &[(&str, &str)] = &[
    ("summary", "/tmp/summary.json"),
    ("summary.err", "/tmp/summary.err"),
];

/// Per (pid, kind): latencies of the per-event records, or the summary's
/// (value, count) buckets.
type PerEvent = BTreeMap<(u64, &'static str), Vec<u64>>;
type Summary = BTreeMap<(u64, &'static str), Vec<(u64, u64)>>;

/// The summary's kind name of a `trace` record's `event`.
fn kind_of_event(event: &str) -> Option<&'static str> {
    match event {
        "pin" => Some("pin"),
        "unpin" => Some("unpin"),
        "pin_ioctl" => Some("uacce_ctrl"),
        _ => None,
    }
}

fn per_event(console: &Console, keep: &dyn Fn(u64, &str) -> bool) -> PerEvent {
    let mut out = PerEvent::new();
    for line in console.lines("events") {
        let Ok(r) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(kind) = r
            .get("event")
            .and_then(Value::as_str)
            .and_then(kind_of_event)
        else {
            continue;
        };
        let comm = r.get("comm").and_then(Value::as_str).unwrap_or("");
        let (Some(pid), Some(lat)) = (num(&r, "tgid"), num(&r, "latency_ns")) else {
            continue;
        };
        if keep(pid, comm) {
            out.entry((pid, kind)).or_default().push(lat);
        }
    }
    out
}

fn summary(console: &Console, keep: &dyn Fn(u64, &str) -> bool) -> Summary {
    let mut out = Summary::new();
    for line in console.lines("summary") {
        let Ok(r) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let kind = match r.get("kind").and_then(Value::as_str) {
            Some("pin") => "pin",
            Some("unpin") => "unpin",
            Some("uacce_ctrl") => "uacce_ctrl",
            _ => continue,
        };
        let comm = r.get("comm").and_then(Value::as_str).unwrap_or("");
        let Some(pid) = num(&r, "pid") else { continue };
        if !keep(pid, comm) {
            continue;
        }
        let buckets = r.get("buckets").and_then(Value::as_array);
        let entry = out.entry((pid, kind)).or_default();
        for b in buckets.into_iter().flatten() {
            if let (Some(v), Some(c)) = (
                b.get(0).and_then(Value::as_u64),
                b.get(1).and_then(Value::as_u64),
            ) {
                entry.push((v, c));
            }
        }
    }
    out
}

/// The reasons named in a closing line's `N dropped (reason n, …)`.
fn loss_reasons(line: &str) -> Vec<&str> {
    let Some(rest) = line.split(" dropped (").nth(1) else {
        return Vec::new();
    };
    rest.split(')')
        .next()
        .unwrap_or("")
        .split(", ")
        .filter_map(|part| part.split_whitespace().next())
        .collect()
}

/// Nearest-rank quantile of sorted values.
fn rank(n: u64, q: f64) -> u64 {
    ((q * n as f64).ceil() as u64).clamp(1, n.max(1))
}

fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
    sorted[(rank(sorted.len() as u64, q) - 1) as usize]
}

fn bucket_quantile(buckets: &[(u64, u64)], q: f64) -> u64 {
    let mut b = buckets.to_vec();
    b.sort_unstable();
    let n = b.iter().map(|(_, c)| c).sum();
    let want = rank(n, q);
    let mut seen = 0;
    for (v, c) in b {
        seen += c;
        if seen >= want {
            return v;
        }
    }
    0
}

/// The checks (module docs); notes the compared counts.
pub fn check(console: &Console, v: &mut Verdict) {
    let status = console.pairs("status");
    let st = |k: &str| status.get(k).map(String::as_str).unwrap_or("");
    let sections = ["status", "summary", "summary.err", "events"];
    // (s1)
    if st("summary_started") != "1" {
        v.fail(&sections, "(s1) record --summary did not start");
        return;
    }
    if st("summary_stop_signal") != "INT" || st("summary_rc") != "130" {
        v.fail(
            &sections,
            format!(
                "(s1) record --summary ended by SIG{} with status {:?}",
                st("summary_stop_signal"),
                st("summary_rc")
            ),
        );
    }
    let closing = console
        .lines("summary.err")
        .iter()
        .find(|l| l.contains("uacce-trace: wrote "));
    match closing {
        Some(l) => {
            v.notes.push(format!("summary: {l}"));
            let unexpected: Vec<&str> = loss_reasons(l)
                .into_iter()
                .filter(|r| !r.starts_with("iopf_") && *r != "in_flight_at_start")
                .collect();
            if !unexpected.is_empty() {
                v.fail(
                    &sections,
                    format!("(s1) record --summary lost calls: {unexpected:?} in {l}"),
                );
            }
        }
        None => v.fail(&sections, "(s1) record --summary wrote no closing line"),
    }
    // Processes that ran entirely inside both tracers' lives.
    let workload = workload_result(console).map(|(pid, _, _)| pid);
    let keep = |pid: u64, comm: &str| Some(pid) == workload || comm == FIXTURE_COMM;
    let exact = per_event(console, &keep);
    let summed = summary(console, &keep);
    if exact.is_empty() {
        v.fail(
            &sections,
            "(s2) no per-event records of the compared processes",
        );
        return;
    }
    let keys: std::collections::BTreeSet<_> = exact.keys().chain(summed.keys()).collect();
    for key @ (pid, kind) in keys {
        let mut lat = exact.get(key).cloned().unwrap_or_default();
        lat.sort_unstable();
        let buckets = summed.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let n_summary: u64 = buckets.iter().map(|(_, c)| c).sum();
        // (s2)
        if n_summary != lat.len() as u64 {
            v.fail(
                &sections,
                format!(
                    "(s2) pid {pid} {kind}: summary counted {n_summary} calls, per-event {}",
                    lat.len()
                ),
            );
            continue;
        }
        let shown: Vec<String> = [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)]
            .iter()
            .map(|(name, q)| {
                format!(
                    "{name} {}/{}",
                    exact_quantile(&lat, *q),
                    bucket_quantile(buckets, *q)
                )
            })
            .collect();
        v.notes.push(format!(
            "summary = per-event: pid {pid} {kind} {} calls; ns per-event/summary {}",
            lat.len(),
            shown.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_reasons_of_a_closing_line() {
        let l = "uacce-trace: wrote /tmp/s.json (1782 events; 31 dropped \
                 (iopf_pending_at_exit 1, iopf_superseded 2, ring_full_pin 28))";
        assert_eq!(
            loss_reasons(l),
            ["iopf_pending_at_exit", "iopf_superseded", "ring_full_pin"]
        );
        assert!(loss_reasons("uacce-trace: wrote x (5 events; 0 dropped)").is_empty());
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let sorted: Vec<u64> = (1..=1000).collect();
        assert_eq!(exact_quantile(&sorted, 0.99), 990);
        assert_eq!(exact_quantile(&sorted, 0.999), 999);
        assert_eq!(exact_quantile(&[5], 0.5), 5);
        let buckets = [(100, 989), (2000, 10), (9000, 1)];
        assert_eq!(bucket_quantile(&buckets, 0.99), 2000);
        assert_eq!(bucket_quantile(&buckets, 0.5), 100);
        assert_eq!(bucket_quantile(&buckets, 1.0), 9000);
    }
}
