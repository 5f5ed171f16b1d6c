//! NDJSON: one object per interval and series, keys sorted, floats with
//! three decimals, latencies in ns:
//!
//! ```text
//! {"buckets":[[1001,3],[2003,1]],"comm":"fio","count":4,"device":"0000:00:02.0",
//!  "drops":0,"duration":1.000,"errors":0,"kind":"iopf","losses":{},"max":2003,"mean":1251.500,
//!  "min":1000,"p50":1001,"p90":2003,"p99":2003,"p99.9":2003,"pid":1234,
//!  "start":0.000,"tag":"iopf/1234/fio/0000:00:02.0","unanswered":0,"unit":"ns"}
//! ```
//!
//! (one line in the file). `start` and `duration` are seconds (start since
//! the run start); `buckets` lists every non-empty histogram bucket as
//! `[highest value in the bucket, count]`, enough to rebuild the histogram
//! exactly; `drops` is everything lost in that interval (for the whole
//! run, not the series), `losses` the same by reason (non-zero reasons,
//! `losses::LossReason` names), `unanswered` the IOPFs left unanswered
//! (also in `drops` and `losses`, as `iopf_unanswered`); `pid`
//! is `null` for the `[unattrib:PASID]` and `[other]` buckets. An interval
//! with losses but no samples writes `{"drops":..,"duration":..,"kind":"loss",
//! "losses":{..},"start":..,"unanswered":..}`. No aya, tokio, ratatui, no clock.

use std::io::Write;

use serde::Deserialize;

use super::{f3, tag, ExportError, ReadError, RecordedSeries, Recording, RunMeta};
use crate::{
    ingest::losses::{Ledger, LossReason},
    model::{hist, IntervalWindow, Summary},
};

/// Writes NDJSON rows.
pub struct JsonWriter<W: Write> {
    w: W,
    meta: RunMeta,
}

fn json_str(s: &str) -> String {
    // Serialising a &str cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

impl<W: Write> JsonWriter<W> {
    /// NDJSON has no header.
    pub fn new(w: W, meta: &RunMeta) -> Self {
        JsonWriter {
            w,
            meta: meta.clone(),
        }
    }

    /// Append the rows of one interval.
    pub fn write_interval(&mut self, win: &IntervalWindow) -> Result<(), ExportError> {
        let start = f3(self.meta.offset_s(win.start_ns));
        let duration = f3(win.end_ns.saturating_sub(win.start_ns) as f64 / 1e9);
        let drops = win.losses.total();
        let unanswered = win.losses.get(LossReason::IopfUnanswered);
        let losses = serde_json::to_string(&win.losses).unwrap_or_else(|_| "{}".into());
        for s in &win.series {
            let sum = Summary::of(&s.hist);
            let buckets: Vec<String> = hist::buckets(&s.hist)
                .into_iter()
                .map(|(v, c)| format!("[{v},{c}]"))
                .collect();
            let pid = s
                .key
                .proc_id
                .pid()
                .map_or_else(|| "null".to_string(), |p| p.to_string());
            writeln!(
                self.w,
                "{{\"buckets\":[{}],\"comm\":{},\"count\":{},\"device\":{},\"drops\":{},\"duration\":{duration},\"errors\":{},\"kind\":\"{}\",\"losses\":{losses},\"max\":{},\"mean\":{},\"min\":{},\"p50\":{},\"p90\":{},\"p99\":{},\"p99.9\":{},\"pid\":{pid},\"start\":{start},\"tag\":{},\"unanswered\":{},\"unit\":\"ns\"}}",
                buckets.join(","),
                json_str(&s.key.comm),
                sum.count,
                json_str(&s.key.device),
                drops,
                s.errors,
                s.key.kind.name(),
                sum.max,
                f3(sum.mean),
                sum.min,
                sum.p50,
                sum.p90,
                sum.p99,
                sum.p999,
                json_str(&tag::tag(&s.key)),
                unanswered,
            )?;
        }
        if win.series.is_empty() && !win.losses.is_empty() {
            writeln!(
                self.w,
                "{{\"drops\":{drops},\"duration\":{duration},\"kind\":\"loss\",\"losses\":{losses},\"start\":{start},\"unanswered\":{unanswered}}}",
            )?;
        }
        Ok(())
    }

    /// Flush.
    pub fn finish(mut self) -> Result<W, ExportError> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// The fields a reader needs (others are ignored).
#[derive(Deserialize)]
struct Row {
    kind: String,
    start: f64,
    duration: f64,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    buckets: Option<Vec<(u64, u64)>>,
    #[serde(default)]
    errors: Option<u64>,
    #[serde(default)]
    drops: Option<u64>,
    #[serde(default)]
    unanswered: Option<u64>,
    /// By reason (files from older versions have none).
    #[serde(default)]
    losses: Option<Ledger>,
}

/// Read a whole NDJSON file written by [`JsonWriter`].
pub fn read(text: &str) -> Result<Recording, ReadError> {
    let mut rec = Recording::default();
    // Loss per interval start (ms), counted once per interval.
    let mut loss: std::collections::BTreeMap<i64, (u64, u64, Ledger)> = Default::default();
    let mut by_reason = false;
    let mut any = false;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let err = |reason: String| ReadError::Line {
            line: line_no,
            reason,
        };
        if line.trim().is_empty() {
            continue;
        }
        any = true;
        let row: Row = serde_json::from_str(line)
            .map_err(|e| err(format!("not a uacce-trace JSON row: {e}")))?;
        if !row.start.is_finite() || !row.duration.is_finite() {
            return Err(err("start/duration are not numbers".into()));
        }
        let key = (row.start * 1000.0).round() as i64;
        let e = loss.entry(key).or_default();
        e.0 = e.0.max(row.drops.unwrap_or(0));
        e.1 = e.1.max(row.unanswered.unwrap_or(0));
        if let Some(l) = &row.losses {
            by_reason = true;
            e.2.max(l);
        }
        if row.kind == "loss" {
            continue;
        }
        if let Some(u) = row.unit.as_deref().filter(|u| *u != "ns") {
            return Err(err(format!("unit `{u}` is not ns")));
        }
        let tag_str = row.tag.ok_or_else(|| err("row without a tag".into()))?;
        let buckets = row
            .buckets
            .ok_or_else(|| err("row without buckets".into()))?;
        let h = hist::from_buckets(&buckets);
        if let Some(c) = row.count {
            if c != h.len() {
                return Err(err(format!(
                    "count {c} does not match the buckets' {}",
                    h.len()
                )));
            }
        }
        rec.series.push(RecordedSeries {
            start_s: row.start,
            duration_s: row.duration,
            tag: tag::parse(&tag_str),
            hist: h,
            errors: row.errors,
        });
    }
    if !any {
        return Err(ReadError::Empty);
    }
    rec.dropped = Some(loss.values().map(|l| l.0).sum());
    rec.unanswered = Some(loss.values().map(|l| l.1).sum());
    if by_reason {
        let mut total = Ledger::new();
        for l in loss.values() {
            total.merge(&l.2);
        }
        rec.losses = Some(total);
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rows_name_the_line() {
        assert!(matches!(
            read("{\"a\":1}\n"),
            Err(ReadError::Line { line: 1, .. })
        ));
        let bad_count = r#"{"buckets":[[5,2]],"count":3,"duration":1.0,"kind":"pin","start":0.0,"tag":"pin/1/x/-","unit":"ns"}"#;
        assert!(matches!(
            read(&format!("\n{bad_count}\n")),
            Err(ReadError::Line { line: 2, .. })
        ));
        let us = r#"{"buckets":[],"duration":1.0,"kind":"pin","start":0.0,"tag":"pin/1/x/-","unit":"us"}"#;
        assert!(read(us).is_err());
        assert_eq!(read("\n\n").map(|_| ()), Err(ReadError::Empty));
    }
}
