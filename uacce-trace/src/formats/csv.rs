//! CSV: a header line, then one row per interval and series with the same
//! statistics as the NDJSON output (latencies in ns, `start`/`duration` in
//! seconds with three decimals, `mean` with three decimals). Text fields are
//! quoted (RFC 4180) when they hold a comma, quote or line break. An
//! interval with losses but no samples writes a row of kind `loss`.
//! `drops` is everything lost in the interval, `losses` the same by reason
//! (`reason=count;…`, non-zero reasons), `unanswered` one of them.
//! No aya, tokio, ratatui, no clock.

use std::io::Write;

use super::{f3, tag, ExportError, RunMeta};
use crate::{
    ingest::losses::LossReason,
    model::{IntervalWindow, Summary},
};

/// The header line.
pub const HEADER: &str = "start,duration,kind,pid,comm,device,tag,unit,count,min,mean,p50,p90,p99,p99.9,max,errors,drops,unanswered,losses";

/// Quote a field when it needs it.
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes CSV rows.
pub struct CsvWriter<W: Write> {
    w: W,
    meta: RunMeta,
}

impl<W: Write> CsvWriter<W> {
    /// Write the header line.
    pub fn new(mut w: W, meta: &RunMeta) -> Result<Self, ExportError> {
        writeln!(w, "{HEADER}")?;
        Ok(CsvWriter {
            w,
            meta: meta.clone(),
        })
    }

    /// Append the rows of one interval.
    pub fn write_interval(&mut self, win: &IntervalWindow) -> Result<(), ExportError> {
        let start = f3(self.meta.offset_s(win.start_ns));
        let duration = f3(win.end_ns.saturating_sub(win.start_ns) as f64 / 1e9);
        let drops = win.losses.total();
        let unanswered = win.losses.get(LossReason::IopfUnanswered);
        // `reason=count;reason=count`: no comma, no quote to escape.
        let losses = win
            .losses
            .iter_nonzero()
            .map(|(r, n)| format!("{}={n}", r.name()))
            .collect::<Vec<_>>()
            .join(";");
        for s in &win.series {
            let m = Summary::of(&s.hist);
            writeln!(
                self.w,
                "{start},{duration},{},{},{},{},{},ns,{},{},{},{},{},{},{},{},{},{},{},{}",
                s.key.kind.name(),
                s.key
                    .proc_id
                    .pid()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                field(&s.key.comm),
                field(&s.key.device),
                field(&tag::tag(&s.key)),
                m.count,
                m.min,
                f3(m.mean),
                m.p50,
                m.p90,
                m.p99,
                m.p999,
                m.max,
                s.errors,
                drops,
                unanswered,
                losses,
            )?;
        }
        if win.series.is_empty() && !win.losses.is_empty() {
            writeln!(
                self.w,
                "{start},{duration},loss,,,,,,,,,,,,,,,{drops},{unanswered},{losses}",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(field("fio"), "fio");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(HEADER.split(',').count(), 20);
    }
}
