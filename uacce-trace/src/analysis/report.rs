//! `uacce-trace report FILE...`: for each recording, a percentile table per
//! tag (all intervals merged), each percentile with its 95 % confidence
//! interval ([`crate::model::quantile_ci`]); for raw recordings also the pin
//! ledger per process, the faults inside pinned ranges and the hottest
//! faulting regions. Plain text, deterministic. No aya, tokio, ratatui, no
//! clock.

use std::fmt::Write as _;

use super::{fmt_ci, fmt_ns, lpad, table, Loaded, CI_NOTE};
use crate::{
    formats::iso8601_utc,
    model::{quantile_ci, ProcId, Summary},
};

/// Faulting regions shown per process.
pub const TOP_REGIONS: usize = 10;

fn opt_count(v: Option<u64>) -> String {
    v.map_or_else(|| "unknown".to_string(), |v| v.to_string())
}

/// The report of one loaded input.
pub fn render(input: &Loaded) -> String {
    let rec = &input.recording;
    let mut out = String::new();
    let _ = writeln!(out, "== {} ({}) ==", input.name, input.kind.name());
    let start = rec
        .start_unix_s
        .filter(|s| *s >= 0.0)
        .map(|s| iso8601_utc((s * 1e9) as u64))
        .unwrap_or_else(|| "unknown".to_string());
    let merged = rec.merged();
    let intervals = if input.raw.is_some() {
        "events".to_string()
    } else {
        format!("{} intervals", rec.interval_count())
    };
    let _ = writeln!(
        out,
        "start {start}; {intervals} over {:.3} s; {} tags; dropped {}; unanswered IOPFs {}",
        rec.span_s(),
        merged.len(),
        opt_count(rec.dropped),
        opt_count(rec.unanswered),
    );
    if let Some(raw) = &input.raw {
        let _ = writeln!(
            out,
            "kernel {}; hooks {}; command {}; {} events, {} interval marks",
            if raw.header.kernel.is_empty() {
                "unknown"
            } else {
                &raw.header.kernel
            },
            if raw.header.plan.is_empty() {
                "unknown"
            } else {
                &raw.header.plan
            },
            if raw.header.command.is_empty() {
                "(whole system)"
            } else {
                &raw.header.command
            },
            raw.snapshot.events,
            raw.marks,
        );
    }
    if let Some(l) = rec.losses.as_ref().filter(|l| !l.is_empty()) {
        let _ = writeln!(out, "losses by reason: {}", l.human());
    }
    if rec.dropped.is_some_and(|d| d > 0) {
        let _ = writeln!(
            out,
            "WARNING: records were lost; counts and percentiles miss those events"
        );
    }
    out.push('\n');
    if merged.is_empty() {
        out.push_str("no samples\n");
    } else {
        let rows: Vec<Vec<String>> = merged
            .values()
            .map(|m| {
                let s = Summary::of(&m.hist);
                let kind = if m.tag.kind.is_empty() {
                    "?"
                } else {
                    &m.tag.kind
                };
                let n = |v: u64| fmt_ns(Some(v as f64));
                // The value right-aligned, then its interval: values line
                // up, and so do the intervals' opening brackets.
                let q = |v: u64, name: &str| {
                    let ci = fmt_ci(v, quantile_ci::metric_ci(&m.hist, name));
                    format!("{} {ci}", lpad(&n(v), 7))
                };
                vec![
                    kind.to_string(),
                    m.tag.pid.map_or_else(|| "-".to_string(), |p| p.to_string()),
                    if m.tag.kind.is_empty() {
                        m.tag.tag.clone()
                    } else {
                        m.tag.comm.clone()
                    },
                    if m.tag.device.is_empty() {
                        "-".to_string()
                    } else {
                        m.tag.device.clone()
                    },
                    s.count.to_string(),
                    m.errors.map_or_else(|| "-".to_string(), |e| e.to_string()),
                    n(s.min),
                    fmt_ns(Some(s.mean)),
                    q(s.p50, "p50"),
                    q(s.p90, "p90"),
                    q(s.p99, "p99"),
                    q(s.p999, "p99.9"),
                    n(s.max),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "KIND", "PID", "COMM", "DEVICE", "COUNT", "ERRORS", "MIN", "MEAN", "P50", "P90",
                "P99", "P99.9", "MAX",
            ],
            &rows,
            &[
                false, true, false, false, true, true, true, true, false, false, false, false, true,
            ],
        ));
        out.push_str(CI_NOTE);
        out.push_str(&super::requests::render_report(&merged));
    }
    if let Some(raw) = &input.raw {
        render_raw(&mut out, &raw.snapshot);
    }
    out
}

fn proc_label(id: ProcId) -> String {
    id.pid().map_or_else(|| "-".to_string(), |p| p.to_string())
}

fn render_raw(out: &mut String, snap: &crate::model::Snapshot) {
    let procs: Vec<_> = snap
        .processes
        .iter()
        .filter(|p| !matches!(p.proc_id, ProcId::Unattributed(_)))
        .collect();
    out.push_str("\npin ledger (pages; ranges are the union of pinned address ranges now):\n");
    if procs.is_empty() {
        out.push_str("no processes\n");
    } else {
        let rows: Vec<Vec<String>> = procs
            .iter()
            .map(|p| {
                let l = &p.ledger;
                let range_bytes: u64 = p.pinned_ranges.iter().map(|(s, e)| e - s).sum();
                vec![
                    proc_label(p.proc_id),
                    p.comm.clone(),
                    l.pinned_pages.to_string(),
                    l.pin_pages_total.to_string(),
                    l.unpin_pages_total.to_string(),
                    l.unmatched_unpin_pages.to_string(),
                    l.unknown_address_pages.to_string(),
                    l.longterm_pages_total.to_string(),
                    l.pin_calls.to_string(),
                    l.pin_errors.to_string(),
                    l.unpin_calls.to_string(),
                    format!("{}/{}", l.pin_ioctls, l.unpin_ioctls),
                    format!("{} ({} KiB)", p.pinned_ranges.len(), range_bytes / 1024),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "PID",
                "COMM",
                "PINNED",
                "PINS",
                "UNPINS",
                "UNMATCHED",
                "UNKNOWN_ADDR",
                "LONGTERM",
                "PIN_CALLS",
                "PIN_ERRORS",
                "UNPIN_CALLS",
                "IOCTLS",
                "RANGES",
            ],
            &rows,
            &[
                true, false, true, true, true, true, true, true, true, true, true, true, true,
            ],
        ));
    }
    let faulting: Vec<_> = snap.processes.iter().filter(|p| p.faults > 0).collect();
    let inside: u64 = faulting.iter().map(|p| p.faults_in_pinned).sum();
    let _ = writeln!(
        out,
        "\nfaults inside pinned ranges: {inside} (should be 0: a fault on a pinned page means the pin did not cover what the device touched)"
    );
    if faulting.is_empty() {
        out.push_str("no IOPFs\n");
        return;
    }
    let rows: Vec<Vec<String>> = faulting
        .iter()
        .map(|p| {
            vec![
                proc_label(p.proc_id),
                p.comm.clone(),
                p.faults.to_string(),
                p.faults_in_pinned.to_string(),
                p.fault_regions.len().to_string(),
                if p.fault_block_bytes > 0 {
                    format!("{} KiB", p.fault_block_bytes / 1024)
                } else {
                    "-".to_string()
                },
            ]
        })
        .collect();
    out.push_str(&table(
        &["PID", "COMM", "FAULTS", "IN_PINNED", "REGIONS", "BLOCK"],
        &rows,
        &[true, false, true, true, true, true],
    ));
    let mut rows = Vec::new();
    for p in &faulting {
        let mut regions = p.fault_regions.clone();
        regions.sort_by(|a, b| b.faults.cmp(&a.faults).then(a.start.cmp(&b.start)));
        for r in regions.iter().take(TOP_REGIONS) {
            rows.push(vec![
                proc_label(p.proc_id),
                p.comm.clone(),
                format!("{:#x}", r.start),
                format!("{:#x}", r.end),
                format!("{} KiB", (r.end - r.start) / 1024),
                r.faults.to_string(),
                r.in_pinned.to_string(),
            ]);
        }
    }
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "\nhottest faulting regions (top {TOP_REGIONS} per process; unpinned ones are what to pin next):"
        );
        out.push_str(&table(
            &["PID", "COMM", "START", "END", "SIZE", "FAULTS", "IN_PINNED"],
            &rows,
            &[true, false, true, true, true, true, true],
        ));
    }
}

/// Report every input; inputs are separated by a blank line.
pub fn render_all(inputs: &[Loaded]) -> String {
    inputs.iter().map(render).collect::<Vec<_>>().join("\n")
}
