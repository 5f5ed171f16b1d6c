//! Off-line analysis of recordings: loading hlog, json and raw files into
//! one shape ([`Loaded`]), `report` (percentile tables, pin ledger, fault
//! regions) and `compare` (before/after deltas and a verdict with an exit
//! code). Imports no aya, tokio or ratatui and never reads a clock; reads
//! only the files it is given (or standard input for `-`).

pub mod compare;
pub mod report;
pub mod requests;

use std::io::Read;

use thiserror::Error;

use crate::{
    formats::{self, RecordedSeries, Recording, Sniffed, TagInfo},
    ingest::losses::LossReason,
    ingest::rawfile::{RawReader, Record},
    ingest::run::RunMeta,
    model::{Aggregator, ModelConfig, Snapshot},
};

/// An input that could not be used, with the file it came from.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{name}: {reason}")]
pub struct LoadError {
    /// File name as given (`-` is shown as `standard input`).
    pub name: String,
    pub reason: String,
}

/// What kind of file an input was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    Hlog,
    Json,
    Raw,
}

impl InputKind {
    pub const fn name(self) -> &'static str {
        match self {
            InputKind::Hlog => "hlog",
            InputKind::Json => "json",
            InputKind::Raw => "raw",
        }
    }
}

/// What a raw recording adds: the model's full state at its end.
#[derive(Clone, Debug)]
pub struct RawDetails {
    pub header: RunMeta,
    pub snapshot: Snapshot,
    pub marks: usize,
}

/// One loaded input.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub name: String,
    pub kind: InputKind,
    pub recording: Recording,
    pub raw: Option<RawDetails>,
}

pub use crate::ingest::source::display_name;

/// Read an input argument: a path, or `-` for standard input.
pub fn read_input(arg: &str) -> Result<Vec<u8>, LoadError> {
    let name = display_name(arg);
    let mut bytes = Vec::new();
    let res = if arg == "-" {
        std::io::stdin().lock().read_to_end(&mut bytes)
    } else {
        std::fs::File::open(arg).and_then(|mut f| f.read_to_end(&mut bytes))
    };
    res.map_err(|e| LoadError {
        name,
        reason: format!("cannot read: {e}"),
    })?;
    Ok(bytes)
}

/// Load an input argument (see [`load_bytes`]).
pub fn load(arg: &str) -> Result<Loaded, LoadError> {
    let bytes = read_input(arg)?;
    load_bytes(&display_name(arg), &bytes)
}

/// Replay a raw recording through the model: its final snapshot, as a
/// recording of one interval per series, plus the details.
pub fn replay_raw(bytes: &[u8]) -> Result<(Recording, RawDetails), String> {
    let (mut reader, header) = RawReader::open(bytes).map_err(|e| e.to_string())?;
    let mut agg = Aggregator::new(ModelConfig {
        start_ns: Some(header.start_mono_ns),
        ..Default::default()
    });
    let mut marks = 0;
    while let Some(rec) = reader.next_record().map_err(|e| e.to_string())? {
        match rec {
            Record::Event(ev) => agg.ingest(&ev),
            Record::Mark(_) => marks += 1,
        }
    }
    let end = agg.latest_ns();
    let snapshot = agg.snapshot(end);
    let duration_s = end.saturating_sub(header.start_mono_ns) as f64 / 1e9;
    let recording = Recording {
        start_unix_s: Some(header.start_unix_ns as f64 / 1e9),
        series: snapshot
            .series
            .iter()
            .map(|s| RecordedSeries {
                start_s: 0.0,
                duration_s,
                tag: TagInfo::of_key(&s.key),
                hist: s.hist.clone(),
                errors: Some(s.errors),
            })
            .collect(),
        dropped: Some(snapshot.losses.total()),
        unanswered: Some(snapshot.losses.get(LossReason::IopfUnanswered)),
        losses: Some(snapshot.losses.clone()),
    };
    Ok((
        recording,
        RawDetails {
            header,
            snapshot,
            marks,
        },
    ))
}

/// Load the bytes of an input named `name`: hlog, json or raw, told apart
/// by content.
pub fn load_bytes(name: &str, bytes: &[u8]) -> Result<Loaded, LoadError> {
    let err = |reason: String| LoadError {
        name: name.to_string(),
        reason,
    };
    let kind = formats::sniff(bytes).map_err(|e| err(e.to_string()))?;
    let text = || std::str::from_utf8(bytes).map_err(|_| err("not UTF-8 text".into()));
    Ok(match kind {
        Sniffed::Hlog => Loaded {
            name: name.to_string(),
            kind: InputKind::Hlog,
            recording: formats::hlog::read(text()?).map_err(|e| err(e.to_string()))?,
            raw: None,
        },
        Sniffed::Json => Loaded {
            name: name.to_string(),
            kind: InputKind::Json,
            recording: formats::json::read(text()?).map_err(|e| err(e.to_string()))?,
            raw: None,
        },
        Sniffed::Raw => {
            let (recording, details) = replay_raw(bytes).map_err(err)?;
            Loaded {
                name: name.to_string(),
                kind: InputKind::Raw,
                recording,
                raw: Some(details),
            }
        }
    })
}

/// `report FILE...`: print the reports to `out`; returns the exit code
/// (0, or 2 when an input is unusable; a broken pipe ends quietly).
pub fn report_command(files: &[String], out: &mut dyn std::io::Write) -> u8 {
    if files.is_empty() {
        log::error!("report needs at least one FILE (or --replay FILE)");
        return crate::exit::BAD_INPUT;
    }
    let mut loaded = Vec::new();
    for f in files {
        match load(f) {
            Ok(l) => loaded.push(l),
            Err(e) => {
                log::error!("{e}");
                return crate::exit::BAD_INPUT;
            }
        }
    }
    let _ = out.write_all(report::render_all(&loaded).as_bytes());
    let _ = out.flush();
    0
}

/// `compare BASELINE CANDIDATE`: print the comparison to `out`; returns the
/// exit code (0 goal met, 1 not met, 2 bad input).
pub fn compare_command(
    baseline: &str,
    candidate: &str,
    opts: &compare::CompareOptions,
    json: bool,
    out: &mut dyn std::io::Write,
) -> u8 {
    if !opts.tolerance_pct.is_finite() || !(0.0..100.0).contains(&opts.tolerance_pct) {
        log::error!("--tolerance must be between 0 and 100 (percent)");
        return crate::exit::BAD_INPUT;
    }
    let (b, c) = match (load(baseline), load(candidate)) {
        (Ok(b), Ok(c)) => (b, c),
        (Err(e), _) | (_, Err(e)) => {
            log::error!("{e}");
            return crate::exit::BAD_INPUT;
        }
    };
    let unknown = compare::unknown_comms(&b, &c, &opts.comms);
    if !unknown.is_empty() {
        log::error!(
            "--comm {}: no series of that command in either recording",
            unknown.join(", ")
        );
        return crate::exit::BAD_INPUT;
    }
    let result = compare::compare(&b, &c, opts);
    let text = if json {
        let mut j = compare::render_json(&result);
        j.push('\n');
        j
    } else {
        compare::render_text(&result)
    };
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    result.exit_code()
}

/// Latency with a unit and 3 significant digits (`-` for none).
pub fn fmt_ns(ns: Option<f64>) -> String {
    let Some(ns) = ns else {
        return "-".to_string();
    };
    let a = ns.abs();
    if a < 1e3 {
        format!("{ns:.0}ns")
    } else if a < 1e6 {
        format!("{:.1}µs", ns / 1e3)
    } else if a < 1e9 {
        format!("{:.1}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

/// The line under every table of percentiles with intervals.
pub(crate) const CI_NOTE: &str =
    "percentiles: value [95% confidence interval, same unit] by order \
     statistics; — marks an open side (too few samples)\n";

/// A confidence interval in the unit [`fmt_ns`] gives `point`, without
/// the unit: `[11.8, 13.1]`; `—` marks an open side (`[11.8, —)`: too few
/// samples for an upper bound). Empty without an interval.
pub fn fmt_ci(point: u64, iv: Option<crate::model::Interval>) -> String {
    let Some(iv) = iv else {
        return String::new();
    };
    let a = point as f64;
    let (div, decimals) = if a < 1e3 {
        (1.0, 0)
    } else if a < 1e6 {
        (1e3, 1)
    } else if a < 1e9 {
        (1e6, 1)
    } else {
        (1e9, 2)
    };
    let f = |v: u64| format!("{:.*}", decimals, v as f64 / div);
    format!(
        "{}{}, {}{}",
        if iv.low_ns.is_some() { "[" } else { "(" },
        iv.low_ns.map_or_else(|| "—".to_string(), f),
        iv.high_ns.map_or_else(|| "—".to_string(), f),
        if iv.high_ns.is_some() { "]" } else { ")" },
    )
}

/// `12.3µs [11.8, 13.1]`: a percentile with its interval ([`fmt_ci`]).
pub fn fmt_with_ci(point: u64, iv: Option<crate::model::Interval>) -> String {
    let ci = fmt_ci(point, iv);
    let v = fmt_ns(Some(point as f64));
    if ci.is_empty() {
        v
    } else {
        format!("{v} {ci}")
    }
}

/// Pad a string to `width` characters (not bytes) on the right.
pub(crate) fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

/// Pad a string to `width` characters on the left.
pub(crate) fn lpad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    format!("{}{s}", " ".repeat(width.saturating_sub(n)))
}

/// Render rows as columns separated by two spaces; `right[i]` aligns
/// column `i` to the right.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let cell = if right.get(i).copied().unwrap_or(false) {
                lpad(c, w)
            } else if i == last {
                c.clone()
            } else {
                pad(c, w)
            };
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(&cell);
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_inputs_name_the_file() {
        for (bytes, want) in [
            (&b""[..], "empty file"),
            (&b"garbage garbage"[..], "unrecognised format"),
            (&b"\x89UTRACE\n\x01\x00"[..], "truncated"),
            (&b"\x89UTRACE\n\x07\x00\x00\x00\x00\x00"[..], "version 7"),
            (&b"{\"x\":1}\n"[..], "line 1"),
            (
                &b"#[Histogram log format version 1.3]\nTag=a,0,1,2,AAAA\n"[..],
                "line 2",
            ),
        ] {
            let e = load_bytes("in.file", bytes).map(|_| ()).err();
            let e = e.unwrap_or_else(|| panic!("{bytes:?} loaded"));
            assert_eq!(e.name, "in.file");
            assert!(e.to_string().starts_with("in.file: "), "{e}");
            assert!(e.reason.contains(want), "{e} lacks {want}");
        }
        let e = load("/nonexistent/dir/x.hlog").map(|_| ()).err();
        assert!(e.is_some_and(|e| e
            .to_string()
            .contains("/nonexistent/dir/x.hlog: cannot read")));
    }

    #[test]
    fn latency_format() {
        assert_eq!(fmt_ns(None), "-");
        assert_eq!(fmt_ns(Some(999.0)), "999ns");
        assert_eq!(fmt_ns(Some(12_345.0)), "12.3µs");
        assert_eq!(fmt_ns(Some(-12_345_678.0)), "-12.3ms");
        assert_eq!(fmt_ns(Some(2e9)), "2.00s");
        let iv = |l, h| {
            Some(crate::model::Interval {
                low_ns: l,
                high_ns: h,
            })
        };
        assert_eq!(
            fmt_with_ci(12_345, iv(Some(11_800), Some(13_100))),
            "12.3µs [11.8, 13.1]"
        );
        assert_eq!(
            fmt_with_ci(12_345, iv(Some(11_800), None)),
            "12.3µs [11.8, —)"
        );
        assert_eq!(fmt_with_ci(345, iv(None, None)), "345ns (—, —)");
        assert_eq!(
            fmt_with_ci(3_900_000, iv(Some(3_100_000), Some(12_000_000))),
            "3.9ms [3.1, 12.0]"
        );
        assert_eq!(fmt_with_ci(345, None), "345ns");
    }
}
