//! HdrHistogram interval log, format 1.3, as written by the Java
//! `HistogramLogWriter` and read by HistogramLogAnalyzer, the Java/Python/Go
//! `HistogramLogReader`s and the Rust `hdrhistogram` crate:
//!
//! ```text
//! #[Histogram log format version 1.3]
//! #[StartTime: 1700000000.000 (seconds since epoch), 2023-11-14T22:13:20.000Z]
//! #[BaseTime: 1700000000.000 (seconds since epoch)]
//! #uacce-trace: ... (comments: units, tag syntax, kernel, hooks)
//! "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
//! Tag=iopf/1234/fio/0000:00:02.0,0.000,1.000,0.052,HISTFAAAA...
//! ```
//!
//! Timestamps are seconds since BaseTime (the run start), histogram values
//! nanoseconds, `Interval_Max` milliseconds (the Java convention), the
//! histogram V2 + DEFLATE in base64. Lost records are noted in comments
//! (`#[uacce-trace loss: ...]`, `#[uacce-trace totals: ...]`) that other
//! readers skip; the totals line closes every log we write, so our reader
//! tells a log cut short from a complete one (logs of other tools, without
//! `#uacce-trace:` comments, are read as they are). No aya, tokio,
//! ratatui, no clock.

use std::io::{Read, Write};

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};

use super::{
    f3, iso8601_utc, one_line, tag, ExportError, ReadError, RecordedSeries, Recording, RunMeta,
};
use crate::{
    ingest::losses::{Ledger, LossReason},
    model::{Hist, IntervalWindow},
};

/// First line of every log.
pub const VERSION_LINE: &str = "#[Histogram log format version 1.3]";
/// What the version line starts with.
const VERSION_PREFIX: &str = "#[Histogram log format version ";
/// Log versions read: 1.2 (HdrHistogram 2.1.x) and 1.3 (adds `Tag=`), both
/// with V2 histograms. Older logs hold V0/V1 histograms; a newer version
/// may change the rows: refused with a message rather than misread.
const SUPPORTED_VERSIONS: &[&str] = &["1.2", "1.3"];
/// The legend line.
pub const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"";
/// Cookie bases; bits 4–7 hold the word size (0x10 for 8 bytes, what every
/// current writer uses), which readers mask off as the Java decoder does.
const V2_COOKIE: u32 = 0x1c84_9303;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304;
const WORD_SIZE_BITS: u32 = 0xf0;
/// V2 header: cookie, payload length, offset, digits, low, high, ratio.
const V2_HEADER_BYTES: usize = 40;
/// Largest inflated histogram accepted (a 3-digit histogram up to 2^63 is
/// about 0.5 MiB before compression).
const MAX_INFLATED: u64 = 64 << 20;

/// Writes interval rows to an hlog.
pub struct HlogWriter<W: Write> {
    w: W,
    meta: RunMeta,
    ser: V2DeflateSerializer,
    buf: Vec<u8>,
    text: String,
    losses_total: Ledger,
}

impl<W: Write> HlogWriter<W> {
    /// Write the header.
    pub fn new(mut w: W, meta: &RunMeta) -> Result<Self, ExportError> {
        let start = meta.start_unix_ns as f64 / 1e9;
        writeln!(w, "{VERSION_LINE}")?;
        writeln!(
            w,
            "#[StartTime: {} (seconds since epoch), {}]",
            f3(start),
            iso8601_utc(meta.start_unix_ns)
        )?;
        writeln!(w, "#[BaseTime: {} (seconds since epoch)]", f3(start))?;
        writeln!(
            w,
            "#uacce-trace: latencies in ns (Interval_Max in ms); timestamps in s since BaseTime"
        )?;
        writeln!(
            w,
            "#uacce-trace: Tag=KIND/PID/COMM/DEVICE, KIND iopf|pin|unpin|uacce_ctrl|op|op_faulted|op_clean, PID - for [unattrib:PASID] and [other], DEVICE the op for op kinds, - for none"
        )?;
        writeln!(w, "#uacce-trace: kernel {}", one_line(&meta.kernel))?;
        writeln!(w, "#uacce-trace: hooks {}", one_line(&meta.plan))?;
        writeln!(w, "{LEGEND}")?;
        Ok(HlogWriter {
            w,
            meta: meta.clone(),
            ser: V2DeflateSerializer::new(),
            buf: Vec::new(),
            text: String::new(),
            losses_total: Ledger::new(),
        })
    }

    /// Append the rows of one interval.
    pub fn write_interval(&mut self, win: &IntervalWindow) -> Result<(), ExportError> {
        let start = f3(self.meta.offset_s(win.start_ns));
        let len = f3(win.end_ns.saturating_sub(win.start_ns) as f64 / 1e9);
        for s in &win.series {
            self.buf.clear();
            self.ser
                .serialize(&s.hist, &mut self.buf)
                .map_err(|e| ExportError::Encode(e.to_string()))?;
            self.text.clear();
            base64::engine::general_purpose::STANDARD.encode_string(&self.buf, &mut self.text);
            writeln!(
                self.w,
                "Tag={},{start},{len},{},{}",
                tag::tag(&s.key),
                f3(s.hist.max() as f64 / 1e6),
                self.text
            )?;
        }
        if !win.losses.is_empty() {
            writeln!(
                self.w,
                "#[uacce-trace loss: interval {start} dropped {} unanswered {} ({})]",
                win.losses.total(),
                win.losses.get(LossReason::IopfUnanswered),
                win.losses.breakdown()
            )?;
        }
        self.losses_total = win.losses_total.clone();
        Ok(())
    }

    /// Write the totals comment and flush.
    pub fn finish(mut self) -> Result<W, ExportError> {
        writeln!(
            self.w,
            "#[uacce-trace totals: dropped {} unanswered {}]",
            self.losses_total.total(),
            self.losses_total.get(LossReason::IopfUnanswered)
        )?;
        // A line of its own: readers of the totals line above stay happy.
        writeln!(
            self.w,
            "#[uacce-trace losses: {}]",
            self.losses_total.breakdown()
        )?;
        self.w.flush()?;
        Ok(self.w)
    }
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Check a V2 (uncompressed) encoding before handing it to the decoder, so
/// that garbage cannot make it allocate or read beyond the input.
fn check_v2(b: &[u8]) -> Result<(), String> {
    if be_u32(b, 0).map(|c| c & !WORD_SIZE_BITS) != Some(V2_COOKIE) {
        return Err("not a V2 histogram".into());
    }
    let payload = be_u32(b, 4).ok_or("histogram header cut short")? as usize;
    if b.len() < V2_HEADER_BYTES || payload > b.len() - V2_HEADER_BYTES {
        return Err("histogram payload cut short".into());
    }
    if be_u32(b, 12).is_none_or(|d| d > 5) {
        return Err("histogram precision out of range".into());
    }
    Ok(())
}

/// Decode one base64 V2 or V2+DEFLATE histogram (the last column of a row).
pub fn decode_histogram(b64: &str) -> Result<Hist, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    let mut v2: Vec<u8> = match be_u32(&bytes, 0).map(|c| c & !WORD_SIZE_BITS) {
        Some(V2_COMPRESSED_COOKIE) => {
            let len = be_u32(&bytes, 4).ok_or("histogram header cut short")? as usize;
            let body = bytes
                .get(8..8usize.saturating_add(len))
                .ok_or("compressed histogram cut short")?;
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(body)
                .take(MAX_INFLATED)
                .read_to_end(&mut out)
                .map_err(|e| format!("histogram does not inflate: {e}"))?;
            out
        }
        Some(V2_COOKIE) => bytes,
        Some(c) => return Err(format!("unsupported histogram encoding (cookie {c:#x})")),
        None => return Err("histogram too short".into()),
    };
    check_v2(&v2)?;
    // The decoder accepts only the 8-byte-word cookie.
    v2[..4].copy_from_slice(&(V2_COOKIE | 0x10).to_be_bytes());
    Deserializer::new()
        .deserialize(&mut &v2[..])
        .map_err(|e| format!("histogram does not decode: {e:?}"))
}

fn parse_f64(s: &str, what: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{what} `{s}` is not a number"))
}

fn header_number(rest: &str) -> Option<f64> {
    rest.split_whitespace()
        .next()?
        .trim_end_matches(',')
        .parse()
        .ok()
}

fn loss_totals(rest: &str) -> Option<(u64, u64)> {
    // "dropped D unanswered U]"
    let words: Vec<&str> = rest.trim_end_matches(']').split_whitespace().collect();
    match words.as_slice() {
        ["dropped", d, "unanswered", u] => Some((d.parse().ok()?, u.parse().ok()?)),
        _ => None,
    }
}

fn loss_reasons(rest: &str) -> Option<Ledger> {
    // " reason N, reason N]" (empty when nothing was lost)
    let mut l = Ledger::new();
    for part in rest.trim().trim_end_matches(']').split(',') {
        if part.trim().is_empty() {
            continue;
        }
        let (name, n) = part.trim().split_once(' ')?;
        l.add_named(name, n.trim().parse().ok()?);
    }
    Some(l)
}

/// Read a whole hlog.
pub fn read(text: &str) -> Result<Recording, ReadError> {
    let mut rec = Recording::default();
    let mut base: Option<f64> = None;
    let mut saw_anything = false;
    let mut ours = false;
    let mut totals = false;
    for (i, raw_line) in text.lines().enumerate() {
        let line_no = i + 1;
        let err = |reason: String| ReadError::Line {
            line: line_no,
            reason,
        };
        let line = raw_line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        saw_anything = true;
        if let Some(rest) = line.strip_prefix(VERSION_PREFIX) {
            let version = rest.trim_end().trim_end_matches(']').trim();
            if !SUPPORTED_VERSIONS.contains(&version) {
                return Err(err(format!(
                    "unsupported HdrHistogram log format version `{}` (this reader handles {})",
                    one_line(&version.chars().take(40).collect::<String>()),
                    SUPPORTED_VERSIONS.join(" and ")
                )));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("#[StartTime:") {
            rec.start_unix_s =
                Some(header_number(rest).ok_or_else(|| err("StartTime without a number".into()))?);
            continue;
        }
        if let Some(rest) = line.strip_prefix("#[BaseTime:") {
            base =
                Some(header_number(rest).ok_or_else(|| err("BaseTime without a number".into()))?);
            continue;
        }
        if let Some(rest) = line.strip_prefix("#[uacce-trace totals:") {
            let (d, u) = loss_totals(rest)
                .ok_or_else(|| err("unreadable uacce-trace totals line".into()))?;
            rec.dropped = Some(d);
            rec.unanswered = Some(u);
            totals = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("#[uacce-trace losses:") {
            rec.losses = Some(
                loss_reasons(rest)
                    .ok_or_else(|| err("unreadable uacce-trace losses line".into()))?,
            );
            continue;
        }
        if line.starts_with("#uacce-trace:") {
            ours = true;
        }
        if line.starts_with('#') || line.starts_with("\"StartTimestamp\"") {
            continue;
        }
        let (tag_str, rest) = match line.strip_prefix("Tag=") {
            Some(r) => match r.split_once(',') {
                Some((t, rest)) => (t, rest),
                None => return Err(err("a Tag= row without fields".into())),
            },
            None => ("", line),
        };
        let fields: Vec<&str> = rest.split(',').collect();
        let [start, len, max, payload] = fields.as_slice() else {
            return Err(err(format!(
                "expected 4 comma-separated fields after the tag, found {}",
                fields.len()
            )));
        };
        let start_s = parse_f64(start, "StartTimestamp").map_err(err)?;
        let duration_s = parse_f64(len, "Interval_Length").map_err(err)?;
        parse_f64(max, "Interval_Max").map_err(err)?;
        let hist = decode_histogram(payload).map_err(err)?;
        // Without a BaseTime, timestamps are absolute when StartTime says so
        // (the Java reader's year heuristic); make them relative.
        let start_s = match (base, rec.start_unix_s) {
            (None, Some(st)) if start_s > st - 365.0 * 86_400.0 => start_s - st,
            _ => start_s,
        };
        rec.series.push(RecordedSeries {
            start_s,
            duration_s,
            tag: tag::parse(tag_str),
            hist,
            errors: None,
        });
    }
    if !saw_anything {
        return Err(ReadError::Empty);
    }
    if ours && !totals {
        return Err(ReadError::Truncated(
            "the closing `#[uacce-trace totals: ...]` line is missing (the log was cut short)",
        ));
    }
    if rec.series.is_empty() && rec.start_unix_s.is_none() && !text.contains("Histogram log") {
        return Err(ReadError::UnknownFormat);
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::hist;

    #[test]
    fn decode_rejects_garbage_without_panicking() {
        let mut h = hist::new_hist();
        for v in [1u64, 10, 100, 1000, 123_456] {
            hist::record(&mut h, v);
        }
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&h, &mut buf)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let good = base64::engine::general_purpose::STANDARD.encode(&buf);
        let back = decode_histogram(&good).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hist::buckets(&back), hist::buckets(&h));
        // Every prefix and many single-byte corruptions: errors, no panic.
        for cut in 0..buf.len() {
            let s = base64::engine::general_purpose::STANDARD.encode(&buf[..cut]);
            assert!(decode_histogram(&s).is_err(), "prefix {cut} decoded");
        }
        for i in 0..buf.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut b = buf.clone();
                b[i] ^= x;
                let _ = decode_histogram(&base64::engine::general_purpose::STANDARD.encode(&b));
            }
        }
        assert!(decode_histogram("!!!").is_err());
        assert!(decode_histogram("").is_err());
    }

    #[test]
    fn reader_errors_name_the_line() {
        let text = format!("{VERSION_LINE}\n{LEGEND}\nTag=a,1.0,2.0\n");
        assert_eq!(
            read(&text).map(|_| ()),
            Err(ReadError::Line {
                line: 3,
                reason: "expected 4 comma-separated fields after the tag, found 2".into()
            })
        );
        let text = format!("{VERSION_LINE}\n0.0,x,1.0,HISTFAAA\n");
        assert!(matches!(read(&text), Err(ReadError::Line { line: 2, .. })));
        assert!(read(&format!("{VERSION_LINE}\n")).is_ok());
        let ours = format!("{VERSION_LINE}\n#uacce-trace: kernel x\n{LEGEND}\n");
        assert!(matches!(read(&ours), Err(ReadError::Truncated(_))));
        let done = format!("{ours}#[uacce-trace totals: dropped 3 unanswered 4]\n");
        for bad in ["2.0", "1.01", "", "1.3x"] {
            let text = format!("#[Histogram log format version {bad}]\n{LEGEND}\n");
            match read(&text) {
                Err(ReadError::Line { line: 1, reason }) => {
                    assert!(
                        reason.contains("unsupported HdrHistogram log format version"),
                        "{reason}"
                    );
                    assert!(reason.contains("1.2 and 1.3"), "{reason}");
                }
                other => panic!("version {bad:?}: {other:?}"),
            }
        }
        let v12 = "#[Histogram log format version 1.2]\n";
        assert!(read(v12).is_ok());
        let rec = read(&done).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((rec.dropped, rec.unanswered), (Some(3), Some(4)));
        assert_eq!(rec.losses, None);
        let by_reason = format!(
            "{done}#[uacce-trace losses: ring_full_pin 2, iopf_unanswered 4, from_a_newer_version 1]\n"
        );
        let rec = read(&by_reason).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            rec.losses.map(|l| l.breakdown()),
            Some("ring_full_pin 2, iopf_unanswered 4, unknown 1".into())
        );
        let empty = read(&format!("{done}#[uacce-trace losses: ]\n"));
        assert_eq!(empty.map(|r| r.losses), Ok(Some(Ledger::new())));
        let bad = read(&format!("{done}#[uacce-trace losses: ring_full_pin x]\n"));
        assert!(matches!(bad, Err(ReadError::Line { line: 5, .. })));
    }
}
