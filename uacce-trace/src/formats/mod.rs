//! Histogram outputs for benchmark tooling: writers of HdrHistogram interval
//! logs (`hlog`), NDJSON (`json`) and CSV (`csv`) from the model's
//! [`IntervalWindow`]s, and readers of hlog and json back into histograms
//! (for `report` and `compare`).
//!
//! Imports no aya, tokio or ratatui and never reads a clock: run start
//! times come in [`RunMeta`]. Output is deterministic: series in key order,
//! JSON keys sorted, floats with a fixed number of decimals. Files are
//! written through [`AtomicFile`] (temporary file + rename).
//!
//! Common to all formats: one record per interval and series (tag syntax in
//! [`tag`]), interval start in seconds since the run start (BaseTime),
//! latencies in nanoseconds. An interval without samples writes no rows;
//! one with lost records but no samples writes a `loss` row (json, csv) or
//! comment (hlog), so drops are never silent.

pub mod atomic;
pub mod csv;
pub mod hlog;
pub mod json;
pub mod tag;

use std::{collections::BTreeMap, fmt, io::Write};

use thiserror::Error;

pub use self::{atomic::AtomicFile, tag::TagInfo};
use crate::model::{hist, Hist, IntervalWindow};

/// An output format of `record`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// HdrHistogram interval log 1.3 (HistogramLogAnalyzer, hdrh tools).
    Hlog,
    /// NDJSON: one object per interval and series.
    Json,
    /// CSV: one row per interval and series.
    Csv,
    /// The decoded event stream (replays through every command).
    Raw,
}

impl Format {
    /// Name on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Format::Hlog => "hlog",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Raw => "raw",
        }
    }

    /// The format a file name suggests (`.hlog`, `.json`/`.ndjson`,
    /// `.csv`, `.utrace`/`.raw`).
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "hlog" => Format::Hlog,
            "json" | "ndjson" | "jsonl" => Format::Json,
            "csv" => Format::Csv,
            "utrace" | "raw" => Format::Raw,
            _ => return None,
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the writers need to know about the run (one type with the raw
/// recording's header).
pub use crate::ingest::run::RunMeta;

/// Why writing an output failed.
#[derive(Debug, Error)]
pub enum ExportError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("encoding a histogram: {0}")]
    Encode(String),
}

/// Why an input could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReadError {
    #[error("empty file")]
    Empty,
    #[error("not text (and not a raw recording)")]
    NotText,
    #[error(
        "unrecognised format: expected an HdrHistogram log, uacce-trace NDJSON or a raw recording"
    )]
    UnknownFormat,
    #[error("CSV holds no histograms; report and compare read hlog, json or raw recordings")]
    Csv,
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("truncated: {0}")]
    Truncated(&'static str),
}

/// Format of an input, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniffed {
    Hlog,
    Json,
    Raw,
}

/// Tell the format of an input from its content.
pub fn sniff(bytes: &[u8]) -> Result<Sniffed, ReadError> {
    if bytes.is_empty() {
        return Err(ReadError::Empty);
    }
    if bytes.starts_with(crate::ingest::rawfile::MAGIC) {
        return Ok(Sniffed::Raw);
    }
    let head = &bytes[..bytes.len().min(4096)];
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // A multi-byte character cut at the 4 KiB boundary is fine.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).map_err(|_| ReadError::NotText)?
        }
        Err(_) => return Err(ReadError::NotText),
    };
    let t = text.trim_start();
    if t.is_empty() {
        return Err(ReadError::Empty);
    }
    if t.starts_with('{') {
        Ok(Sniffed::Json)
    } else if t.starts_with('#') || t.starts_with("\"StartTimestamp\"") || t.starts_with("Tag=") {
        Ok(Sniffed::Hlog)
    } else if t.starts_with(csv::HEADER) {
        Err(ReadError::Csv)
    } else {
        Err(ReadError::UnknownFormat)
    }
}

/// One histogram of one interval, as read back from a file.
#[derive(Clone, Debug)]
pub struct RecordedSeries {
    /// Interval start, seconds since the run start.
    pub start_s: f64,
    pub duration_s: f64,
    pub tag: TagInfo,
    pub hist: Hist,
    /// Errors in the interval (json only).
    pub errors: Option<u64>,
}

/// An hlog or json file read back.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    /// Run start, seconds since the epoch, when the file says.
    pub start_unix_s: Option<f64>,
    /// Rows in file order.
    pub series: Vec<RecordedSeries>,
    /// Records lost, when the file says.
    pub dropped: Option<u64>,
    /// IOPFs unanswered, when the file says.
    pub unanswered: Option<u64>,
    /// Everything lost by reason, when the file says (files of older
    /// versions only have `dropped`).
    pub losses: Option<crate::ingest::losses::Ledger>,
}

/// All intervals of one tag merged.
#[derive(Clone, Debug)]
pub struct MergedSeries {
    pub tag: TagInfo,
    pub hist: Hist,
    pub errors: Option<u64>,
    pub intervals: usize,
}

impl Recording {
    /// Every tag's intervals merged into one histogram, sorted by tag.
    pub fn merged(&self) -> BTreeMap<String, MergedSeries> {
        let mut out: BTreeMap<String, MergedSeries> = BTreeMap::new();
        for s in &self.series {
            let m = out
                .entry(s.tag.tag.clone())
                .or_insert_with(|| MergedSeries {
                    tag: s.tag.clone(),
                    hist: hist::new_hist(),
                    errors: None,
                    intervals: 0,
                });
            hist::merge(&mut m.hist, &s.hist);
            if let Some(e) = s.errors {
                m.errors = Some(m.errors.unwrap_or(0) + e);
            }
            m.intervals += 1;
        }
        out
    }

    /// Number of distinct intervals (by start time).
    pub fn interval_count(&self) -> usize {
        let mut starts: Vec<u64> = self
            .series
            .iter()
            .map(|s| (s.start_s * 1000.0).round() as u64)
            .collect();
        starts.sort_unstable();
        starts.dedup();
        starts.len()
    }

    /// Seconds covered: from the first interval start to the last interval end.
    pub fn span_s(&self) -> f64 {
        let first = self
            .series
            .iter()
            .map(|s| s.start_s)
            .fold(f64::INFINITY, f64::min);
        let last = self
            .series
            .iter()
            .map(|s| s.start_s + s.duration_s)
            .fold(f64::NEG_INFINITY, f64::max);
        if first.is_finite() && last.is_finite() {
            (last - first).max(0.0)
        } else {
            0.0
        }
    }
}

/// A writer of one of the interval formats.
pub enum IntervalWriter<W: Write> {
    Hlog(hlog::HlogWriter<W>),
    Json(json::JsonWriter<W>),
    Csv(csv::CsvWriter<W>),
}

impl<W: Write> IntervalWriter<W> {
    /// Start writing `format` (not `raw`, which is an event stream) to `w`.
    pub fn new(format: Format, w: W, meta: &RunMeta) -> Result<Option<Self>, ExportError> {
        Ok(Some(match format {
            Format::Hlog => IntervalWriter::Hlog(hlog::HlogWriter::new(w, meta)?),
            Format::Json => IntervalWriter::Json(json::JsonWriter::new(w, meta)),
            Format::Csv => IntervalWriter::Csv(csv::CsvWriter::new(w, meta)?),
            Format::Raw => return Ok(None),
        }))
    }

    /// Append one interval.
    pub fn write_interval(&mut self, win: &IntervalWindow) -> Result<(), ExportError> {
        match self {
            IntervalWriter::Hlog(w) => w.write_interval(win),
            IntervalWriter::Json(w) => w.write_interval(win),
            IntervalWriter::Csv(w) => w.write_interval(win),
        }
    }

    /// Write any trailer, flush, and hand back the writer.
    pub fn finish(self) -> Result<W, ExportError> {
        match self {
            IntervalWriter::Hlog(w) => w.finish(),
            IntervalWriter::Json(w) => w.finish(),
            IntervalWriter::Csv(w) => w.finish(),
        }
    }
}

/// Render a whole run into bytes (tests, small outputs).
pub fn render(
    format: Format,
    meta: &RunMeta,
    windows: &[IntervalWindow],
) -> Result<Vec<u8>, ExportError> {
    let Some(mut w) = IntervalWriter::new(format, Vec::new(), meta)? else {
        return Err(ExportError::Encode("raw is not an interval format".into()));
    };
    for win in windows {
        w.write_interval(win)?;
    }
    w.finish()
}

/// `1700000000.123` → `2023-11-14T22:13:20.123Z` (UTC, no clock involved).
pub fn iso8601_utc(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let ms = (unix_ns % 1_000_000_000) / 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// A float with exactly three decimals (`-0.000` printed as `0.000`).
pub fn f3(x: f64) -> String {
    let s = format!("{x:.3}");
    if s == "-0.000" {
        "0.000".to_string()
    } else {
        s
    }
}

/// One line of text: line breaks replaced by spaces.
pub(crate) fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601_utc(1_700_000_000_123_000_000),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            iso8601_utc(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b""), Err(ReadError::Empty));
        assert_eq!(sniff(b"  \n"), Err(ReadError::Empty));
        assert_eq!(sniff(b"{\"a\":1}"), Ok(Sniffed::Json));
        assert_eq!(
            sniff(b"#[Histogram log format version 1.3]"),
            Ok(Sniffed::Hlog)
        );
        assert_eq!(sniff(b"\xff\xfe\x00garbage"), Err(ReadError::NotText));
        assert_eq!(sniff(b"hello"), Err(ReadError::UnknownFormat));
        assert_eq!(sniff(csv::HEADER.as_bytes()), Err(ReadError::Csv));
        assert_eq!(sniff(crate::ingest::rawfile::MAGIC), Ok(Sniffed::Raw));
    }

    #[test]
    fn formats_from_paths() {
        use std::path::Path;
        assert_eq!(
            Format::from_path(Path::new("a/run.hlog")),
            Some(Format::Hlog)
        );
        assert_eq!(
            Format::from_path(Path::new("run.NDJSON")),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_path(Path::new("run.utrace")),
            Some(Format::Raw)
        );
        assert_eq!(Format::from_path(Path::new("run")), None);
        assert_eq!(f3(-0.0001), "0.000");
        assert_eq!(f3(1.23456), "1.235");
    }
}
