//! Summary mode against per-event mode, on the same calls in the same
//! boot: in a main VM with the tool, `record --summary --format json`
//! runs beside `trace --json` (xtask/vm-guest/vm-test.sh), both attached
//! before the workloads start and stopped after they end. For the
//! processes that ran entirely inside both lifetimes (the io_uring
//! workload, and on the test kernel every run of the uacce_ctrl fixture):
//!
//! - (s1) the summary recorder started, stopped on SIGINT with status 130
//!   (`record`'s status when interrupted) and said `0 dropped`;
//! - (s2) per process and kind (pin, unpin, uacce_ctrl ioctl) its count
//!   equals the number of `trace` records of that process and kind;
//! - (s3) its p50, p99 and p99.9 lie within one summary bucket
//!   (`uacce_trace_common::summary`) of the per-event ones (nearest rank
//!   of the records' own latencies).

use std::collections::BTreeMap;

use serde_json::Value;
use uacce_trace_common::summary::bucket_of;

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
        Some(l) if l.contains(" 0 dropped") => v.notes.push(format!("summary: {l}")),
        other => v.fail(
            &sections,
            format!("(s1) record --summary's closing line does not say 0 dropped: {other:?}"),
        ),
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
        // (s3)
        let mut shown = Vec::new();
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
            let e = exact_quantile(&lat, q);
            let s = bucket_quantile(buckets, q);
            shown.push(format!("{name} {e}/{s}"));
            if bucket_of(e).abs_diff(bucket_of(s)) > 1 {
                v.fail(
                    &sections,
                    format!(
                        "(s3) pid {pid} {kind}: {name} per-event {e} ns, summary {s} ns: \
                         more than one bucket apart"
                    ),
                );
            }
        }
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
