//! Requests (`--op`) in `report` and `compare`: per process (or command)
//! and op, the request-latency histogram (`op` series) with its faulted
//! part (`op_faulted`), the share of the slowest 1 % / 0.1 % that had an IO
//! page fault inside ([`crate::model::requests::TailShare`]), and
//! `compare`'s request-level verdict: did op p99 / p99.9 drop (the same
//! rule and intervals as every percentile verdict), did the faulted share
//! of the tail drop (95 % Wilson intervals). Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{fmt_with_ci, table};
use crate::{
    formats::MergedSeries,
    model::{
        hist::{self, Hist},
        requests::{TailShare, TAIL_QUANTILES},
        Kind,
    },
};

/// The requests of one process (or command) and op.
#[derive(Clone, Debug, Default)]
pub struct OpHists {
    pub all: Option<Hist>,
    pub faulted: Option<Hist>,
}

/// Request histograms of merged series by (pid or `-`, comm, op); `by_comm`
/// merges the pids of one command (what `compare` matches on).
pub fn op_hists<'a>(
    merged: impl IntoIterator<Item = &'a MergedSeries>,
    by_comm: bool,
) -> BTreeMap<(String, String, String), OpHists> {
    let mut out: BTreeMap<(String, String, String), OpHists> = BTreeMap::new();
    for m in merged {
        let kind = m.tag.model_kind();
        if !matches!(kind, Some(Kind::Op | Kind::OpFaulted)) {
            continue;
        }
        let pid = if by_comm {
            String::new()
        } else {
            m.tag.pid.map_or_else(|| "-".to_string(), |p| p.to_string())
        };
        let e = out
            .entry((pid, m.tag.comm.clone(), m.tag.device.clone()))
            .or_default();
        let slot = if kind == Some(Kind::Op) {
            &mut e.all
        } else {
            &mut e.faulted
        };
        hist::merge(slot.get_or_insert_with(hist::new_hist), &m.hist);
    }
    out
}

/// One side of a faulted-tail comparison.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TailSide {
    /// Requests in the tail.
    pub tail: u64,
    /// Of those, with a fault inside.
    pub faulted: u64,
    pub share: f64,
    /// 95 % Wilson interval of the share.
    pub low: f64,
    pub high: f64,
}

impl TailSide {
    fn of(h: &OpHists, q: f64) -> Option<TailSide> {
        let t = TailShare::of(h.all.as_ref()?, h.faulted.as_ref(), q)?;
        let (low, high) = t.interval();
        Some(TailSide {
            tail: t.tail,
            faulted: t.faulted,
            share: t.share(),
            low,
            high,
        })
    }

    /// `faulted/tail = 42% [30, 55]`.
    pub fn text(&self) -> String {
        format!(
            "{}/{} = {:.0}% [{:.0}, {:.0}]",
            self.faulted,
            self.tail,
            self.share * 100.0,
            self.low * 100.0,
            self.high * 100.0
        )
    }
}

/// The report's table: per process and op, requests, faulted requests and
/// the faulted share of the slowest 1 % and 0.1 %. Empty without requests.
pub fn render_report(merged: &BTreeMap<String, MergedSeries>) -> String {
    let ops = op_hists(merged.values(), false);
    if ops.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = ops
        .iter()
        .map(|((pid, comm, op), h)| {
            let n = h.all.as_ref().map_or(0, |h| h.len());
            let f = h.faulted.as_ref().map_or(0, |h| h.len());
            let mut row = vec![
                pid.clone(),
                comm.clone(),
                op.clone(),
                n.to_string(),
                f.to_string(),
            ];
            for (_, q) in TAIL_QUANTILES {
                row.push(TailSide::of(h, q).map_or_else(|| "-".to_string(), |t| t.text()));
            }
            row
        })
        .collect();
    let mut out = String::from(
        "\nrequests with an IO page fault of their process inside (--op), and their share of \
         the slowest 1 % (P99 TAIL) and 0.1 % (P99.9 TAIL):\n",
    );
    out.push_str(&table(
        &[
            "PID",
            "COMM",
            "OP",
            "REQUESTS",
            "FAULTED",
            "P99 TAIL FAULTED",
            "P99.9 TAIL FAULTED",
        ],
        &rows,
        &[true, false, false, true, true, false, false],
    ));
    out.push_str(
        "tail shares: faulted/in tail = share [95% Wilson interval, %]; the op_faulted and \
         op_clean rows above are the latencies of each part\n",
    );
    out
}

/// One quantile of one op in `compare`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpQuantile {
    /// `p99` or `p99.9`.
    pub quantile: &'static str,
    pub baseline: super::compare::ProcSide,
    pub candidate: super::compare::ProcSide,
    pub verdict: super::compare::Verdict,
    pub faulted_tail_baseline: Option<TailSide>,
    pub faulted_tail_candidate: Option<TailSide>,
    /// Did the faulted share of this tail drop?
    pub faulted_tail_verdict: super::compare::Verdict,
}

/// The request-level verdict of one command and op.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RequestVerdict {
    pub comm: String,
    pub op: String,
    pub requests_baseline: u64,
    pub requests_candidate: u64,
    pub quantiles: Vec<OpQuantile>,
}

/// The faulted share's verdict: reduced (eliminated when no faulted
/// request is left) or worse only when the 95 % intervals are disjoint;
/// unchanged when the shares differ by at most `t` (a fraction);
/// inconclusive otherwise.
pub fn share_verdict(
    b: Option<&TailSide>,
    c: Option<&TailSide>,
    t: f64,
) -> super::compare::Verdict {
    use super::compare::Verdict;
    match (b, c) {
        (None, None) => Verdict::Unchanged,
        (Some(_), None) => Verdict::Missing,
        (None, Some(c)) if c.faulted == 0 => Verdict::Unchanged,
        (None, Some(_)) => Verdict::Worse,
        (Some(b), Some(c)) => {
            if c.high < b.low {
                if c.faulted == 0 {
                    Verdict::Eliminated
                } else {
                    Verdict::Reduced
                }
            } else if b.high < c.low {
                Verdict::Worse
            } else if (c.share - b.share).abs() <= t {
                Verdict::Unchanged
            } else {
                Verdict::Inconclusive
            }
        }
    }
}

/// Matched (command, op) pairs of two recordings and their verdicts;
/// `latency_verdict` is `compare`'s rule for one metric.
pub fn verdicts(
    base: &BTreeMap<(String, String, String), OpHists>,
    cand: &BTreeMap<(String, String, String), OpHists>,
    tolerance: f64,
    latency_verdict: impl Fn(Option<&Hist>, Option<&Hist>, &str) -> OpLatency,
) -> Vec<RequestVerdict> {
    let keys: std::collections::BTreeSet<_> = base.keys().chain(cand.keys()).collect();
    keys.into_iter()
        .map(|k| {
            let empty = OpHists::default();
            let b = base.get(k).unwrap_or(&empty);
            let c = cand.get(k).unwrap_or(&empty);
            let quantiles = TAIL_QUANTILES
                .iter()
                .map(|&(name, q)| {
                    let l = latency_verdict(b.all.as_ref(), c.all.as_ref(), name);
                    let tb = TailSide::of(b, q);
                    let tc = TailSide::of(c, q);
                    OpQuantile {
                        quantile: name,
                        baseline: l.baseline,
                        candidate: l.candidate,
                        verdict: l.verdict,
                        faulted_tail_verdict: share_verdict(tb.as_ref(), tc.as_ref(), tolerance),
                        faulted_tail_baseline: tb,
                        faulted_tail_candidate: tc,
                    }
                })
                .collect();
            RequestVerdict {
                comm: k.1.clone(),
                op: k.2.clone(),
                requests_baseline: b.all.as_ref().map_or(0, |h| h.len()),
                requests_candidate: c.all.as_ref().map_or(0, |h| h.len()),
                quantiles,
            }
        })
        .collect()
}

/// A latency verdict of one metric, from `compare`.
pub struct OpLatency {
    pub baseline: super::compare::ProcSide,
    pub candidate: super::compare::ProcSide,
    pub verdict: super::compare::Verdict,
}

/// `compare`'s request section as text.
pub fn render_compare(v: &[RequestVerdict]) -> String {
    if v.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = v
        .iter()
        .flat_map(|r| {
            r.quantiles.iter().map(move |q| {
                let side = |s: &super::compare::ProcSide| {
                    s.metric_ns
                        .map_or_else(|| "-".to_string(), |m| fmt_with_ci(m, s.interval))
                };
                let tail = |t: &Option<TailSide>| t.map_or_else(|| "-".to_string(), |t| t.text());
                vec![
                    r.comm.clone(),
                    r.op.clone(),
                    format!("{} → {}", r.requests_baseline, r.requests_candidate),
                    q.quantile.to_string(),
                    q.verdict.name().to_string(),
                    format!("{} → {}", side(&q.baseline), side(&q.candidate)),
                    q.faulted_tail_verdict.name().to_string(),
                    format!(
                        "{} → {}",
                        tail(&q.faulted_tail_baseline),
                        tail(&q.faulted_tail_candidate)
                    ),
                ]
            })
        })
        .collect();
    let mut out = String::from(
        "\nrequests (--op), per command and op: did the op's p99 / p99.9 drop, and the share of \
         its slowest 1 % / 0.1 % with an IO page fault inside:\n",
    );
    out.push_str(&table(
        &[
            "PROCESS",
            "OP",
            "REQUESTS",
            "TAIL",
            "LATENCY",
            "OP LATENCY",
            "FAULTED TAIL",
            "FAULTED/IN TAIL = SHARE [95%]",
        ],
        &rows,
        &[false, false, false, false, false, false, false, false],
    ));
    out.push_str(
        "request rule: each op percentile as every percentile verdict above; the faulted share \
         of a tail reduced (eliminated: none left) or worse only when the 95% Wilson intervals \
         are disjoint, unchanged within the tolerance (percentage points), else inconclusive; \
         goal: every op's --metric tail (p99.9 unless --metric p99) reduced or eliminated, and \
         no faulted share worse\n",
    );
    out
}
