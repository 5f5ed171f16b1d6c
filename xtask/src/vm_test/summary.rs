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
//! On the project's test kernel, IO page faults too (summary mode pairs
//! them in the kernel, `uacce-trace-ebpf/src/summary.rs`), every one of the
//! run (both tracers see all of them), per (owner, device), the owner a
//! pid or `[unattrib:PASID]`:
//!
//! - (s3) there are per-event IOPF records, and per (owner, device) the
//!   summary's count equals the number of `trace`'s IOPF records (the
//!   sampled groups that summary mode reads per event are in its rows
//!   too);
//! - (s4) p50, p99 and p99.9 of the summary lie within one bucket
//!   (`uacce_trace_common::summary::bucket_of`) of the per-event order
//!   statistics between ranks `q·n − d` and `q·n + d`, `d` =
//!   max(2, ⌈n/20⌉) faults ([`rank_slack`]), a side beyond rank 1 or n
//!   unbounded ([`within_rank_band`]); how many were within one
//!   bucket of the per-event percentile itself is noted. Not closer: the
//!   two tracers time the same fault each with its own hooks, and each
//!   one's report-to-response window holds the other's handlers (under TCG
//!   several µs of ring writes for `trace`), and the host may preempt a
//!   vCPU thread between two handlers, which lengthens that one fault in
//!   one tracer only, by as long as the host likes; and `trace`, attached
//!   first, runs its response program before the summary's, so when its
//!   ring was empty the reader's wake-up (an interrupt and a task wake-up,
//!   tens to hundreds of µs under TCG) lands inside the summary's window,
//!   which would explain (not verified) why the summary's p99 of the
//!   600-fault process mostly reads
//!   higher (125 vs 59, 180 vs 103, 360 vs 246 µs seen). So single faults
//!   measure differently in each, arbitrarily so for a few of them; a
//!   percentile resting on few faults moves with them (CI, on a loaded
//!   2-core host, saw p99 of 600 faults at 59 µs per-event and a summary
//!   bucket of 125 µs: six faults measured longer by the summary's
//!   tracer; another run the slowest of 600 at 3.7 ms per-event and
//!   4.6 ms in summary). A percentile is a rank, so the slack is in
//!   ranks, not in time, and near an end it is one-sided: a wrong bucket, a unit error or a pairing that times the wrong
//!   report moves the whole distribution and is caught at p50, whose band
//!   (ranks 270–330 of 600) stays narrow;
//! - (s5) nothing lost that per-event mode did not lose: the summary's IO
//!   page fault losses (`iopf_unanswered` + `iopf_superseded` +
//!   `iopf_pending_at_exit`, which the attribution block provokes, and
//!   `iopf_unattributed`) equal those in `trace`'s final ledger.
//!
//! Latencies are noted, not compared: with two tracers on one kprobe, each
//! one's entry-to-exit window holds the other one's handlers (under TCG
//! several µs of ring writes for `trace`), so the same call measures
//! differently in each (the host test
//! `summary_mode_matches_per_event_on_the_same_calls` bounds them within a
//! factor of 2 on the ioctl tracepoints; the bucket arithmetic is tested
//! exactly by unit tests).

use std::collections::BTreeMap;

use serde_json::Value;

use super::report::{workload_result, Verdict};
use super::testkernel::FIXTURE_COMM;
use crate::vm::console::{json_lines, u, Console};

/// Sections of the summary recorder.
pub const SECTIONS: &[(&str, &str)] = &[
    ("summary", "/tmp/summary.json"),
    ("summary.err", "/tmp/summary.err"),
];

/// Per (pid, kind): latencies of the per-event records, or the summary's
/// (value, count) buckets.
type PerEvent = BTreeMap<(u64, &'static str), Vec<u64>>;
type Summary = BTreeMap<(u64, &'static str), Vec<(u64, u64)>>;
/// IO page faults per (owner, device): the owner a pid or
/// `[unattrib:PASID]`.
type IopfKey = (String, String);

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
    for r in json_lines(console, "events") {
        let Some(kind) = r
            .get("event")
            .and_then(Value::as_str)
            .and_then(kind_of_event)
        else {
            continue;
        };
        let comm = r.get("comm").and_then(Value::as_str).unwrap_or("");
        let (Some(pid), Some(lat)) = (u(&r, "tgid"), u(&r, "latency_ns")) else {
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
    for r in json_lines(console, "summary") {
        let kind = match r.get("kind").and_then(Value::as_str) {
            Some("pin") => "pin",
            Some("unpin") => "unpin",
            Some("uacce_ctrl") => "uacce_ctrl",
            _ => continue,
        };
        let comm = r.get("comm").and_then(Value::as_str).unwrap_or("");
        let Some(pid) = u(&r, "pid") else { continue };
        if !keep(pid, comm) {
            continue;
        }
        out.entry((pid, kind)).or_default().extend(buckets(&r));
    }
    out
}

/// A summary row's `buckets`: its (value, count) pairs.
fn buckets(row: &Value) -> impl Iterator<Item = (u64, u64)> + '_ {
    row.get("buckets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| Some((b.get(0)?.as_u64()?, b.get(1)?.as_u64()?)))
}

/// One key's two sides: the per-event latencies (sorted), the summary's
/// (value, count) buckets, and how many calls those buckets hold.
fn both_sides<'a, K: Ord>(
    exact: &BTreeMap<K, Vec<u64>>,
    summed: &'a BTreeMap<K, Vec<(u64, u64)>>,
    key: &K,
) -> (Vec<u64>, &'a [(u64, u64)], u64) {
    let mut lat = exact.get(key).cloned().unwrap_or_default();
    lat.sort_unstable();
    let buckets = summed.get(key).map(Vec::as_slice).unwrap_or(&[]);
    let n_summary = buckets.iter().map(|(_, c)| c).sum();
    (lat, buckets, n_summary)
}

/// `trace`'s IOPF records: latencies per (owner, device).
fn per_event_iopfs(console: &Console) -> BTreeMap<IopfKey, Vec<u64>> {
    let mut out: BTreeMap<IopfKey, Vec<u64>> = BTreeMap::new();
    for r in json_lines(console, "events") {
        if r.get("event").and_then(Value::as_str) != Some("iopf") {
            continue;
        }
        let owner = match u(&r, "tgid") {
            Some(pid) => pid.to_string(),
            None => format!("[unattrib:{}]", u(&r, "pasid").unwrap_or(0)),
        };
        let device = r.get("device").and_then(Value::as_str).unwrap_or("");
        if let Some(lat) = u(&r, "latency_ns") {
            out.entry((owner, device.to_string()))
                .or_default()
                .push(lat);
        }
    }
    out
}

/// The summary's `iopf` rows: (value, count) buckets per (owner, device).
fn summary_iopfs(console: &Console) -> BTreeMap<IopfKey, Vec<(u64, u64)>> {
    let mut out: BTreeMap<IopfKey, Vec<(u64, u64)>> = BTreeMap::new();
    for r in json_lines(console, "summary") {
        if r.get("kind").and_then(Value::as_str) != Some("iopf") {
            continue;
        }
        let owner = match u(&r, "pid") {
            Some(pid) => pid.to_string(),
            None => r
                .get("comm")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        };
        let device = r.get("device").and_then(Value::as_str).unwrap_or("");
        out.entry((owner, device.to_string()))
            .or_default()
            .extend(buckets(&r));
    }
    out
}

/// (s4): a summary percentile `summed` within one bucket of the exact
/// `exact`.
fn within_a_bucket(exact: u64, summed: u64) -> bool {
    use uacce_trace_common::summary::bucket_of;
    bucket_of(exact).abs_diff(bucket_of(summed)) <= 1
}

/// (s4): the faults each tracer may time differently from the other (the
/// module docs say why): 2, or one in 20.
fn rank_slack(n: usize) -> usize {
    n.div_ceil(20).max(2)
}

/// (s4): the summary's `q`-quantile `summed` is within one bucket of the
/// per-event order statistics (`sorted`, not empty) between ranks
/// `q·n − d` and `q·n + d` ([`rank_slack`]). A side whose rank falls
/// outside 1..=n has no bound: the `d` faults one tracer may time
/// differently may be the slowest (or fastest) ones, by any amount, so a
/// percentile within `d` ranks of an end is bounded from the other side
/// only (p99 and p99.9 of 600 faults only from below, p50 of 4 only from
/// above).
fn within_rank_band(sorted: &[u64], q: f64, summed: u64) -> bool {
    use uacce_trace_common::summary::bucket_of;
    let n = sorted.len();
    let r = rank(n as u64, q) as usize;
    let d = rank_slack(n);
    let b = bucket_of(summed);
    let above_lo = r <= d || b + 1 >= bucket_of(sorted[r - d - 1]);
    let below_hi = r + d > n || b <= bucket_of(sorted[r + d - 1]) + 1;
    above_lo && below_hi
}

/// The loss counts named in a closing line's `N dropped (reason n, …;
/// not lost: …)`, losses only.
fn loss_counts(line: &str) -> BTreeMap<String, u64> {
    let Some(rest) = line.split(" dropped (").nth(1) else {
        return BTreeMap::new();
    };
    rest.split([')', ';'])
        .next()
        .unwrap_or("")
        .split(", ")
        .filter_map(|part| {
            let mut w = part.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.parse().ok()?))
        })
        .collect()
}

/// (s5): IO page fault losses of the summary's closing line and of
/// `trace`'s final ledger, as (groups never answered, unattributed).
fn iopf_losses(console: &Console) -> Option<((u64, u64), (u64, u64))> {
    let unanswered = ["iopf_unanswered", "iopf_superseded", "iopf_pending_at_exit"];
    let closing = console
        .lines("summary.err")
        .iter()
        .find(|l| l.contains("uacce-trace: wrote "))?
        .to_string();
    let summary = loss_counts(&closing);
    let get = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let s = (
        unanswered.iter().map(|k| get(&summary, k)).sum(),
        get(&summary, "iopf_unattributed"),
    );
    let stopped: Value = console
        .lines("events")
        .iter()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r.get("event").and_then(Value::as_str) == Some("stopped"))?;
    let losses = stopped.get("losses")?;
    let n = |k: &str| losses.get(k).and_then(Value::as_u64).unwrap_or(0);
    let t = (
        unanswered.iter().map(|k| n(k)).sum(),
        n("iopf_unattributed"),
    );
    Some((s, t))
}

/// (s3), (s4), (s5).
fn check_iopfs(console: &Console, v: &mut Verdict) {
    let sections = ["summary", "summary.err", "events"];
    let exact = per_event_iopfs(console);
    let summed = summary_iopfs(console);
    if exact.is_empty() {
        v.fail(&sections, "(s3) no per-event IOPF records to compare with");
        return;
    }
    let keys: std::collections::BTreeSet<&IopfKey> = exact.keys().chain(summed.keys()).collect();
    let mut total = 0;
    let (mut in_bucket, mut compared) = (0, 0);
    for key @ (owner, device) in keys {
        let (lat, buckets, n_summary) = both_sides(&exact, &summed, key);
        if n_summary != lat.len() as u64 {
            v.fail(
                &sections,
                format!(
                    "(s3) {owner} on {device:?}: summary counted {n_summary} IO page faults, \
                     per-event {}",
                    lat.len()
                ),
            );
            continue;
        }
        total += lat.len();
        let mut shown = Vec::new();
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
            let (e, s) = (exact_quantile(&lat, q), bucket_quantile(buckets, q));
            shown.push(format!("{name} {e}/{s}"));
            compared += 1;
            in_bucket += u32::from(within_a_bucket(e, s));
            if !within_rank_band(&lat, q, s) {
                let d = rank_slack(lat.len());
                v.fail(
                    &sections,
                    format!(
                        "(s4) {owner} on {device:?}: {name} per-event {e} ns, summary {s} ns: \
                         more than a bucket outside the per-event values {d} ranks either side"
                    ),
                );
            }
        }
        v.notes.push(format!(
            "summary = per-event: {owner} iopf on {device:?} {} faults; ns per-event/summary {}",
            lat.len(),
            shown.join(", ")
        ));
    }
    v.notes.push(format!(
        "summary = per-event: {total} IO page faults in all; {in_bucket} of {compared} \
         percentiles within one bucket"
    ));
    match iopf_losses(console) {
        Some((s, t)) if s == t => v.notes.push(format!(
            "summary = per-event: IOPF groups unanswered {}, unattributed faults {}",
            s.0, s.1
        )),
        Some((s, t)) => v.fail(
            &sections,
            format!(
                "(s5) IOPF losses (unanswered groups, unattributed faults): summary {s:?}, \
                 per-event {t:?}"
            ),
        ),
        None => v.fail(&sections, "(s5) no closing loss ledger to compare"),
    }
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

/// The checks (module docs); notes the compared counts. `test_kernel`:
/// the run raised IO page faults, which are compared too.
pub fn check(console: &Console, test_kernel: bool, v: &mut Verdict) {
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
    if test_kernel {
        check_iopfs(console, v);
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
        let (lat, buckets, n_summary) = both_sides(&exact, &summed, key);
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
    fn a_bucket_apart_or_5_percent() {
        use uacce_trace_common::summary::{bucket_high, bucket_of};
        let v = 300_000;
        assert!(within_a_bucket(v, bucket_high(bucket_of(v))));
        assert!(within_a_bucket(v, bucket_high(bucket_of(v) + 1)));
        assert!(!within_a_bucket(v, bucket_high(bucket_of(v) + 2)));
        assert!(!within_a_bucket(v, 2 * v));
        // Just below an edge: the other tracer's 3 % longer measurement.
        let edge = bucket_high(bucket_of(v));
        assert!(within_a_bucket(
            edge - 1,
            bucket_high(bucket_of(edge + 3 * edge / 100))
        ));
    }

    #[test]
    fn a_percentile_within_its_rank_band() {
        use uacce_trace_common::summary::{bucket_high, bucket_of};
        // 600 faults of 1..=600 µs: p50 is 300 µs, its band ranks 270..330;
        // p99 is 594 µs, bounded from below only (rank 564).
        let sorted: Vec<u64> = (1..=600).map(|i| i * 1000).collect();
        assert_eq!(rank_slack(600), 30);
        assert_eq!(rank_slack(4), 2);
        let at = |v: u64| bucket_high(bucket_of(v));
        assert!(within_rank_band(&sorted, 0.5, at(300_000)));
        assert!(within_rank_band(&sorted, 0.5, at(330_000)));
        assert!(within_rank_band(&sorted, 0.99, at(594_000)));
        assert!(within_rank_band(&sorted, 0.99, at(540_000)));
        // One fault timed longer by the summary's tracer (CI: 3.7 ms
        // per-event, 4.6 ms summary for the slowest of 600).
        assert!(within_rank_band(&sorted, 0.999, at(760_000)));
        // Twice the value or a unit error at p50, a tail far too short: caught.
        assert!(!within_rank_band(&sorted, 0.5, at(600_000)));
        assert!(!within_rank_band(&sorted, 0.5, at(150_000)));
        assert!(!within_rank_band(&sorted, 0.5, at(300)));
        assert!(!within_rank_band(&sorted, 0.99, at(300_000)));
        assert!(!within_rank_band(&sorted, 0.999, at(594)));
        // Few faults: p50 of 4 bounded from above only, by the slowest.
        let few = [295_000, 300_000, 388_000, 900_000];
        assert!(within_rank_band(&few, 0.5, at(388_000)));
        assert!(within_rank_band(&few, 0.5, at(20_000)));
        assert!(!within_rank_band(&few, 0.5, at(2_000_000)));
        assert!(!within_rank_band(&few, 0.999, at(200_000)));
    }

    #[test]
    fn loss_counts_of_a_closing_line() {
        let l = "uacce-trace: wrote /tmp/s.json (17 events; 3 dropped \
                 (iopf_superseded 2, iopf_pending_at_exit 1; not lost: iopf_table_miss 4))";
        let c = loss_counts(l);
        assert_eq!(c.len(), 2);
        assert_eq!((c["iopf_superseded"], c["iopf_pending_at_exit"]), (2, 1));
        assert!(loss_counts("uacce-trace: wrote x (5 events; 0 dropped)").is_empty());
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
