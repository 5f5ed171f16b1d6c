//! `uacce-trace compare BASELINE CANDIDATE`: did the change (pinning) remove
//! the IOPF jitter? Per series the deltas of count, p50, p99, p99.9 and max,
//! each percentile with its 95 % confidence interval; per process a verdict
//! with the rule printed; an exit code a CI job can gate on. No aya, tokio,
//! ratatui, no clock.
//!
//! Process ids differ between runs, so series are matched by kind, command
//! name and device; processes of the same name are merged (their pids are
//! listed). Tags not in uacce-trace's syntax are matched by the whole tag.
//!
//! # Verdicts (per process, over all its series of `--kind`, default iopf)
//!
//! With `B`, `C` the metric (`--metric`, default p99.9) in BASELINE and
//! CANDIDATE, `t` the tolerance (`--tolerance`, default 10 %) and, for a
//! percentile metric, `I(B)`, `I(C)` its 95 % confidence intervals
//! (distribution-free, by order statistics: [`crate::model::quantile_ci`]):
//!
//! - **eliminated**: the process had samples in BASELINE and none in
//!   CANDIDATE (where it still appears);
//! - **reduced**: `C ≤ B × (1 − t)` and `I(C)` lies entirely below `I(B)`;
//! - **worse**: `C ≥ B × (1 + t)` and `I(C)` lies entirely above `I(B)`, or
//!   samples in CANDIDATE and none in BASELINE;
//! - **inconclusive**: the change exceeds the tolerance but the intervals
//!   overlap, or one of them is open (the percentile rests on too few
//!   samples: a two-sided interval for p99.9 needs 3688 samples);
//! - **unchanged**: otherwise (also: no samples in either run).
//!
//! `min`, `mean` and `max` have no interval: for them reduced and worse
//! are decided by the point change alone, and never inconclusive.
//!
//! - **missing**: samples in BASELINE, the process absent from CANDIDATE
//!   (it did not run: nothing can be concluded). The `[unattrib:PASID]` and
//!   `[other]` buckets are never missing: their absence is no samples.
//!
//! # Goal and exit code
//!
//! Without `--max`: met when no process is worse, inconclusive or missing
//! and no process still has samples with verdict unchanged. With `--max L`:
//! met when no process is missing and every process's CANDIDATE metric is
//! ≤ L (the point value; the verdicts do not enter). In both cases
//! CANDIDATE must have lost no records (unless `--allow-drops`): lost
//! records could be the very faults in question.
//!
//! Exit codes: 0 goal met, 1 goal not met, 2 bad input, 3 goal not met only
//! because of inconclusive verdicts (more samples could decide it).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{fmt_ns, fmt_with_ci, table, Loaded, CI_NOTE};
use crate::model::{hist, is_bucket_comm, quantile_ci, Hist, Interval, Kind, Summary};

/// Exit code: the goal is met.
pub const EXIT_MET: u8 = crate::exit::OK;
/// Exit code: the goal is not met.
pub const EXIT_NOT_MET: u8 = crate::exit::FAILURE;
/// Exit code: an input could not be used.
pub const EXIT_BAD_INPUT: u8 = crate::exit::BAD_INPUT;
/// Exit code: the goal is not met only because of inconclusive verdicts.
pub const EXIT_INCONCLUSIVE: u8 = crate::exit::INCONCLUSIVE;

/// Options of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareOptions {
    /// One of [`hist::METRICS`] except `count`.
    pub metric: String,
    /// Absolute goal for the CANDIDATE metric, ns.
    pub max_ns: Option<u64>,
    /// Relative change that counts as reduced/worse, percent.
    pub tolerance_pct: f64,
    /// Which series the verdict looks at.
    pub kind: Kind,
    /// Lost records in CANDIDATE do not fail the goal.
    pub allow_drops: bool,
    /// Only these command names (empty: every process). The rest of both
    /// recordings is left out of the series, the verdicts and the goal.
    pub comms: Vec<String>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            metric: "p99.9".into(),
            max_ns: None,
            tolerance_pct: 10.0,
            kind: Kind::Iopf,
            allow_drops: false,
            comms: Vec::new(),
        }
    }
}

/// Metrics usable with `--metric`.
pub const VERDICT_METRICS: [&str; 7] = ["min", "mean", "p50", "p90", "p99", "p99.9", "max"];

/// A verdict for one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Eliminated,
    Reduced,
    Unchanged,
    Inconclusive,
    Worse,
    Missing,
}

impl Verdict {
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Eliminated => "eliminated",
            Verdict::Reduced => "reduced",
            Verdict::Unchanged => "unchanged",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Worse => "worse",
            Verdict::Missing => "missing",
        }
    }
}

/// The statistics compared per series; each percentile with its 95 %
/// confidence interval (`null` bounds: open, too few samples).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    #[serde(rename = "p99.9")]
    pub p999: u64,
    pub max: u64,
    pub p50_ci: Option<Interval>,
    pub p99_ci: Option<Interval>,
    #[serde(rename = "p99.9_ci")]
    pub p999_ci: Option<Interval>,
}

impl Stats {
    fn of(h: &Hist) -> Stats {
        let s = Summary::of(h);
        Stats {
            count: s.count,
            p50: s.p50,
            p99: s.p99,
            p999: s.p999,
            max: s.max,
            p50_ci: quantile_ci::metric_ci(h, "p50"),
            p99_ci: quantile_ci::metric_ci(h, "p99"),
            p999_ci: quantile_ci::metric_ci(h, "p99.9"),
        }
    }
}

/// One matched series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeriesDelta {
    /// `kind/comm/device` (or a foreign tag).
    pub key: String,
    pub kind: String,
    pub comm: String,
    pub device: String,
    pub baseline: Option<Stats>,
    pub candidate: Option<Stats>,
}

/// Metric and count of one process in one run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ProcSide {
    pub count: u64,
    /// The metric in ns; `None` without samples.
    pub metric_ns: Option<u64>,
    /// Its 95 % confidence interval; `None` without samples or for a
    /// metric without one (min, mean, max).
    pub interval: Option<Interval>,
}

/// The verdict for one process.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessVerdict {
    pub comm: String,
    pub pids_baseline: Vec<u32>,
    pub pids_candidate: Vec<u32>,
    pub verdict: Verdict,
    pub baseline: ProcSide,
    pub candidate: ProcSide,
    /// Relative change of the metric, percent (None when undefined).
    pub change_pct: Option<f64>,
}

/// Loss counters of one input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Loss {
    /// Everything lost (every reason).
    pub dropped: Option<u64>,
    pub unanswered: Option<u64>,
    /// By reason (non-zero ones), when the input says.
    pub losses: Option<crate::ingest::losses::Ledger>,
}

impl Loss {
    /// ` (reason n, reason n)` of the non-zero reasons, or "".
    fn reasons(&self) -> String {
        match self.losses.as_ref().filter(|l| !l.is_empty()) {
            Some(l) => format!(" ({})", l.human()),
            None => String::new(),
        }
    }
}

/// The whole comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub baseline: String,
    pub candidate: String,
    pub kind: &'static str,
    pub metric: String,
    pub tolerance_pct: f64,
    pub max_ns: Option<u64>,
    /// `--comm`: the only command names compared (empty: all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub comms: Vec<String>,
    pub rule: String,
    pub series: Vec<SeriesDelta>,
    pub processes: Vec<ProcessVerdict>,
    /// The request-level verdicts (`--op` recordings; none otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<super::requests::RequestVerdict>,
    pub loss_baseline: Loss,
    pub loss_candidate: Loss,
    pub goal_met: bool,
    /// The goal is not met only because of inconclusive verdicts.
    pub inconclusive: bool,
    /// Why the goal is (not) met, one sentence each.
    pub reasons: Vec<String>,
}

impl Comparison {
    /// The exit code for this result.
    pub fn exit_code(&self) -> u8 {
        if self.goal_met {
            EXIT_MET
        } else if self.inconclusive {
            EXIT_INCONCLUSIVE
        } else {
            EXIT_NOT_MET
        }
    }
}

/// The rule in words, as printed.
pub fn rule(o: &CompareOptions) -> String {
    let t = o.tolerance_pct;
    let m = &o.metric;
    let k = o.kind.name();
    let goal = match o.max_ns {
        Some(l) => format!(
            "goal: no process missing and every process's CANDIDATE {m} ≤ {}",
            fmt_ns(Some(l as f64))
        ),
        None => "goal: no process worse, inconclusive or missing, and none still sampled with verdict unchanged"
            .into(),
    };
    let drops = if o.allow_drops {
        ""
    } else {
        "; CANDIDATE must have lost no records"
    };
    let (reduced, worse, inconclusive) = match quantile_ci::metric_quantile(m) {
        Some(q) => (
            format!(
                "{m} at least {t}% lower and CANDIDATE's {conf}% interval entirely below BASELINE's",
                conf = quantile_ci::CONFIDENCE * 100.0
            ),
            format!("{m} at least {t}% higher and CANDIDATE's interval entirely above BASELINE's"),
            format!(
                "inconclusive = a change of at least {t}% but the intervals overlap or one is open \
                 ({m} needs {} samples for a two-sided interval); ",
                quantile_ci::min_samples(q)
            ),
        ),
        None => (
            format!("{m} at least {t}% lower (no interval for {m})"),
            format!("{m} at least {t}% higher"),
            String::new(),
        ),
    };
    format!(
        "per process over its {k} series: eliminated = {k} samples in BASELINE, none in CANDIDATE; \
         reduced = {reduced}; worse = {worse}, or samples only in CANDIDATE; {inconclusive}\
         unchanged = otherwise; missing = sampled in BASELINE, absent from CANDIDATE; {goal}{drops}"
    )
}

/// Matching key of a series: kind, comm, device (pids differ between runs).
fn match_key(t: &crate::formats::TagInfo) -> (String, String, String, String) {
    if t.kind.is_empty() {
        (String::new(), String::new(), String::new(), t.tag.clone())
    } else {
        (
            t.kind.clone(),
            t.comm.clone(),
            t.device.clone(),
            String::new(),
        )
    }
}

struct Side {
    series: BTreeMap<(String, String, String, String), Hist>,
    /// comm → pids.
    procs: BTreeMap<String, BTreeSet<u32>>,
    /// comm → merged histogram of the verdict kind.
    kind_hist: BTreeMap<String, Hist>,
}

fn side(l: &Loaded, kind: Kind) -> Side {
    let mut s = Side {
        series: BTreeMap::new(),
        procs: BTreeMap::new(),
        kind_hist: BTreeMap::new(),
    };
    for m in l.recording.merged().into_values() {
        let k = match_key(&m.tag);
        hist::merge(s.series.entry(k).or_insert_with(hist::new_hist), &m.hist);
        if m.tag.kind.is_empty() {
            continue;
        }
        let pids = s.procs.entry(m.tag.comm.clone()).or_default();
        if let Some(p) = m.tag.pid {
            pids.insert(p);
        }
        if m.tag.model_kind() == Some(kind) {
            hist::merge(
                s.kind_hist
                    .entry(m.tag.comm.clone())
                    .or_insert_with(hist::new_hist),
                &m.hist,
            );
        }
    }
    s
}

fn metric_of(h: Option<&Hist>, metric: &str) -> ProcSide {
    match h.filter(|h| !h.is_empty()) {
        Some(h) => ProcSide {
            count: h.len(),
            metric_ns: Summary::of(h).metric(metric).map(|v| v.round() as u64),
            interval: quantile_ci::metric_ci(h, metric),
        },
        None => ProcSide {
            count: 0,
            metric_ns: None,
            interval: None,
        },
    }
}

/// The verdict when both runs have samples: the point change against the
/// tolerance, then (for percentiles) the intervals.
fn sampled_verdict(bs: &ProcSide, cs: &ProcSide, t: f64) -> Verdict {
    let (bm, cm) = (
        bs.metric_ns.unwrap_or(0) as f64,
        cs.metric_ns.unwrap_or(0) as f64,
    );
    let lower = cm <= bm * (1.0 - t);
    let higher = cm >= bm * (1.0 + t);
    if !lower && !higher {
        return Verdict::Unchanged;
    }
    let (Some(bi), Some(ci)) = (bs.interval, cs.interval) else {
        // A metric without an interval: the point change decides.
        return if lower {
            Verdict::Reduced
        } else {
            Verdict::Worse
        };
    };
    if !bi.is_closed() || !ci.is_closed() {
        Verdict::Inconclusive
    } else if lower && ci.entirely_below(&bi) {
        Verdict::Reduced
    } else if higher && bi.entirely_below(&ci) {
        Verdict::Worse
    } else {
        Verdict::Inconclusive
    }
}

/// `l` with only the series of the command names `comms` (all when
/// empty).
pub fn only_comms(l: &Loaded, comms: &[String]) -> Loaded {
    let mut l = l.clone();
    if !comms.is_empty() {
        l.recording
            .series
            .retain(|s| !s.tag.kind.is_empty() && comms.contains(&s.tag.comm));
    }
    l
}

/// The names of `comms` that neither input has a series of.
pub fn unknown_comms(base: &Loaded, cand: &Loaded, comms: &[String]) -> Vec<String> {
    comms
        .iter()
        .filter(|c| {
            ![base, cand]
                .iter()
                .any(|l| l.recording.series.iter().any(|s| &s.tag.comm == *c))
        })
        .cloned()
        .collect()
}

/// Compare two loaded inputs (only the processes of `o.comms`, when
/// named).
pub fn compare(base: &Loaded, cand: &Loaded, o: &CompareOptions) -> Comparison {
    if o.comms.is_empty() {
        compare_all(base, cand, o)
    } else {
        compare_all(&only_comms(base, &o.comms), &only_comms(cand, &o.comms), o)
    }
}

fn compare_all(base: &Loaded, cand: &Loaded, o: &CompareOptions) -> Comparison {
    let b = side(base, o.kind);
    let c = side(cand, o.kind);
    let keys: BTreeSet<_> = b.series.keys().chain(c.series.keys()).cloned().collect();
    let series = keys
        .into_iter()
        .map(|k| {
            let stats = |s: &Side| s.series.get(&k).map(Stats::of);
            let (kind, comm, device, foreign) = k.clone();
            SeriesDelta {
                key: if foreign.is_empty() {
                    format!(
                        "{kind}/{comm}/{}",
                        if device.is_empty() { "-" } else { &device }
                    )
                } else {
                    foreign
                },
                kind,
                comm,
                device,
                baseline: stats(&b),
                candidate: stats(&c),
            }
        })
        .collect();
    let comms: BTreeSet<&String> = b.kind_hist.keys().chain(c.kind_hist.keys()).collect();
    let t = o.tolerance_pct / 100.0;
    let mut processes = Vec::new();
    for comm in comms {
        let bs = metric_of(b.kind_hist.get(comm), &o.metric);
        let cs = metric_of(c.kind_hist.get(comm), &o.metric);
        // The [unattrib:PASID] and [other] buckets are not processes that
        // can fail to run: their absence means no samples.
        let is_bucket = is_bucket_comm(comm);
        let present_in_c = is_bucket || c.procs.contains_key(comm);
        let change_pct = match (bs.metric_ns, cs.metric_ns) {
            (Some(bm), Some(cm)) if bm > 0 => Some((cm as f64 - bm as f64) / bm as f64 * 100.0),
            _ => None,
        };
        let verdict = match (bs.count, cs.count) {
            (0, 0) => Verdict::Unchanged,
            (_, 0) if !present_in_c => Verdict::Missing,
            (_, 0) => Verdict::Eliminated,
            (0, _) => Verdict::Worse,
            _ => sampled_verdict(&bs, &cs, t),
        };
        let pids = |s: &Side| -> Vec<u32> {
            s.procs
                .get(comm)
                .map(|p| p.iter().copied().collect())
                .unwrap_or_default()
        };
        processes.push(ProcessVerdict {
            comm: comm.clone(),
            pids_baseline: pids(&b),
            pids_candidate: pids(&c),
            verdict,
            baseline: bs,
            candidate: cs,
            change_pct,
        });
    }
    let mut reasons = Vec::new();
    let mut undecided = Vec::new();
    for p in &processes {
        match (p.verdict, o.max_ns) {
            (Verdict::Inconclusive, None) => undecided.push(format!(
                "{}: {} change inconclusive ({})",
                p.comm,
                o.metric,
                why_inconclusive(p)
            )),
            (Verdict::Missing, _) => reasons.push(format!(
                "{}: sampled in BASELINE but absent from CANDIDATE",
                p.comm
            )),
            (Verdict::Worse, None) => reasons.push(format!("{}: worse", p.comm)),
            (Verdict::Unchanged, None) if p.candidate.count > 0 => {
                reasons.push(format!("{}: {} not reduced", p.comm, o.metric))
            }
            (_, Some(l)) => {
                if let Some(m) = p.candidate.metric_ns.filter(|m| *m > l) {
                    reasons.push(format!(
                        "{}: CANDIDATE {} {} above the goal {}",
                        p.comm,
                        o.metric,
                        fmt_ns(Some(m as f64)),
                        fmt_ns(Some(l as f64))
                    ));
                }
            }
            _ => {}
        }
    }
    let requests = request_verdicts(base, cand, t);
    request_goal(&requests, o, &mut reasons, &mut undecided);
    let loss = |l: &Loaded| Loss {
        dropped: l.recording.dropped,
        unanswered: l.recording.unanswered,
        losses: l.recording.losses.clone(),
    };
    let loss_candidate = loss(cand);
    if !o.allow_drops {
        if let Some(d) = loss_candidate.dropped.filter(|d| *d > 0) {
            reasons.push(format!(
                "CANDIDATE lost {d} records{}; its counts cannot be trusted (--allow-drops to accept)",
                loss_candidate.reasons()
            ));
        }
    }
    let inconclusive = reasons.is_empty() && !undecided.is_empty();
    reasons.append(&mut undecided);
    let goal_met = reasons.is_empty();
    if goal_met {
        reasons.push(if !requests.is_empty() {
            "every process and op meets the goal".to_string()
        } else if processes.is_empty() {
            format!("no {} samples in either run", o.kind.name())
        } else {
            "every process meets the goal".to_string()
        });
    }
    Comparison {
        baseline: base.name.clone(),
        candidate: cand.name.clone(),
        kind: o.kind.name(),
        metric: o.metric.clone(),
        tolerance_pct: o.tolerance_pct,
        max_ns: o.max_ns,
        comms: o.comms.clone(),
        rule: rule(o),
        series,
        processes,
        requests,
        loss_baseline: loss(base),
        loss_candidate,
        goal_met,
        inconclusive,
        reasons,
    }
}

/// The request-level verdicts (`--op`): per command and op, the op's p99
/// and p99.9 with [`sampled_verdict`]'s rule and the faulted share of each
/// tail ([`super::requests::share_verdict`]).
fn request_verdicts(base: &Loaded, cand: &Loaded, t: f64) -> Vec<super::requests::RequestVerdict> {
    use super::requests::{op_hists, verdicts, OpLatency};
    let b = op_hists(base.recording.merged().values(), true);
    let c = op_hists(cand.recording.merged().values(), true);
    if b.is_empty() && c.is_empty() {
        return Vec::new();
    }
    verdicts(&b, &c, t, |bh, ch, metric| {
        let bs = metric_of(bh, metric);
        let cs = metric_of(ch, metric);
        let verdict = match (bs.count, cs.count) {
            (0, 0) => Verdict::Unchanged,
            (_, 0) => Verdict::Missing,
            (0, _) => Verdict::Worse,
            _ => sampled_verdict(&bs, &cs, t),
        };
        OpLatency {
            baseline: bs,
            candidate: cs,
            verdict,
        }
    })
}

/// The request-level goal: every op's `--metric` tail (p99.9 unless
/// `--metric p99`) reduced or eliminated (with `--max`: at most that), no
/// faulted share of a tail worse.
fn request_goal(
    requests: &[super::requests::RequestVerdict],
    o: &CompareOptions,
    reasons: &mut Vec<String>,
    undecided: &mut Vec<String>,
) {
    let metric = if o.metric == "p99" { "p99" } else { "p99.9" };
    for r in requests {
        let who = format!("{} {}", r.comm, r.op);
        for q in &r.quantiles {
            if q.faulted_tail_verdict == Verdict::Worse {
                reasons.push(format!(
                    "{who}: the share of its slowest requests ({} tail) with a fault rose",
                    q.quantile
                ));
            }
            if q.quantile != metric {
                continue;
            }
            match (q.verdict, o.max_ns) {
                (_, Some(l)) => {
                    if let Some(m) = q.candidate.metric_ns.filter(|m| *m > l) {
                        reasons.push(format!(
                            "{who}: CANDIDATE request {metric} {} above the goal {}",
                            fmt_ns(Some(m as f64)),
                            fmt_ns(Some(l as f64))
                        ));
                    }
                }
                (Verdict::Reduced | Verdict::Eliminated, None) => {}
                (Verdict::Inconclusive, None) => undecided.push(format!(
                    "{who}: request {metric} change inconclusive ({})",
                    why_inconclusive(&ProcessVerdict {
                        comm: who.clone(),
                        pids_baseline: Vec::new(),
                        pids_candidate: Vec::new(),
                        verdict: q.verdict,
                        baseline: q.baseline,
                        candidate: q.candidate,
                        change_pct: None,
                    })
                )),
                (Verdict::Missing, None) => {
                    reasons.push(format!("{who}: requests in BASELINE but none in CANDIDATE"))
                }
                (Verdict::Worse, None) => reasons.push(format!("{who}: request {metric} worse")),
                (Verdict::Unchanged, None) => {
                    reasons.push(format!("{who}: request {metric} not reduced"))
                }
            }
        }
    }
}

/// Why a verdict is inconclusive, in words.
fn why_inconclusive(p: &ProcessVerdict) -> String {
    let open = |s: &ProcSide| s.interval.is_some_and(|i| !i.is_closed());
    match (open(&p.baseline), open(&p.candidate)) {
        (true, true) => format!(
            "too few samples in both runs: {} and {}",
            p.baseline.count, p.candidate.count
        ),
        (true, false) => format!("too few samples in BASELINE: {}", p.baseline.count),
        (false, true) => format!("too few samples in CANDIDATE: {}", p.candidate.count),
        (false, false) => "the confidence intervals overlap".to_string(),
    }
}

fn arrow(b: Option<u64>, c: Option<u64>, latency: bool) -> String {
    let f = |v: Option<u64>| match v {
        None => "-".to_string(),
        Some(v) if latency => fmt_ns(Some(v as f64)),
        Some(v) => v.to_string(),
    };
    format!("{} → {}{}", f(b), f(c), pct(b, c))
}

/// `b [lo, hi] → c [lo, hi] (±x%)`: two latencies with their intervals.
fn arrow_ci_of(
    b: Option<u64>,
    bi: Option<Interval>,
    c: Option<u64>,
    ci: Option<Interval>,
) -> String {
    let side = |v: Option<u64>, i| v.map_or_else(|| "-".to_string(), |v| fmt_with_ci(v, i));
    format!("{} → {}{}", side(b, bi), side(c, ci), pct(b, c))
}

/// ` (±x%)`, or "" when undefined.
fn pct(b: Option<u64>, c: Option<u64>) -> String {
    match (b, c) {
        (Some(b), Some(c)) if b > 0 => {
            format!(" ({:+.1}%)", (c as f64 - b as f64) / b as f64 * 100.0)
        }
        _ => String::new(),
    }
}

fn loss_text(l: &Loss) -> String {
    let f = |v: Option<u64>| v.map_or_else(|| "unknown".to_string(), |v| v.to_string());
    format!(
        "dropped {}{}, unanswered IOPFs {}",
        f(l.dropped),
        l.reasons(),
        f(l.unanswered)
    )
}

/// The comparison as text.
pub fn render_text(c: &Comparison) -> String {
    let mut out = format!(
        "baseline:  {} ({})\ncandidate: {} ({})\n",
        c.baseline,
        loss_text(&c.loss_baseline),
        c.candidate,
        loss_text(&c.loss_candidate)
    );
    if !c.comms.is_empty() {
        out.push_str(&format!(
            "only:      {} (--comm; other processes left out)\n",
            c.comms.join(", ")
        ));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = c
        .series
        .iter()
        .map(|s| {
            let g =
                |f: fn(&Stats) -> u64| (s.baseline.as_ref().map(f), s.candidate.as_ref().map(f));
            let q = |f: fn(&Stats) -> u64, i: fn(&Stats) -> Option<Interval>| {
                let (b, c) = (s.baseline.as_ref(), s.candidate.as_ref());
                arrow_ci_of(b.map(f), b.and_then(i), c.map(f), c.and_then(i))
            };
            let (bc, cc) = g(|x| x.count);
            let (bmax, cmax) = g(|x| x.max);
            vec![
                s.key.clone(),
                arrow(bc.or(Some(0)), cc.or(Some(0)), false),
                q(|x| x.p50, |x| x.p50_ci),
                q(|x| x.p99, |x| x.p99_ci),
                q(|x| x.p999, |x| x.p999_ci),
                arrow(bmax, cmax, true),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "SERIES (kind/comm/device)",
            "COUNT",
            "P50",
            "P99",
            "P99.9",
            "MAX",
        ],
        &rows,
        &[false, false, false, false, false, false],
    ));
    out.push('\n');
    out.push_str(CI_NOTE);
    out.push_str(&format!("\nrule: {}\n\n", c.rule));
    if c.processes.is_empty() {
        out.push_str(&format!("no process has {} samples\n", c.kind));
    } else {
        let rows: Vec<Vec<String>> = c
            .processes
            .iter()
            .map(|p| {
                let pids = |v: &[u32]| {
                    if v.is_empty() {
                        "-".to_string()
                    } else {
                        v.iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    }
                };
                vec![
                    p.comm.clone(),
                    p.verdict.name().to_string(),
                    format!("{} → {}", p.baseline.count, p.candidate.count),
                    arrow_ci_of(
                        p.baseline.metric_ns,
                        p.baseline.interval,
                        p.candidate.metric_ns,
                        p.candidate.interval,
                    ),
                    format!("{} → {}", pids(&p.pids_baseline), pids(&p.pids_candidate)),
                ]
            })
            .collect();
        let metric_col = c.metric.to_uppercase();
        out.push_str(&table(
            &["PROCESS", "VERDICT", "SAMPLES", &metric_col, "PIDS"],
            &rows,
            &[false, false, false, false, false],
        ));
    }
    out.push_str(&super::requests::render_compare(&c.requests));
    out.push_str(&format!(
        "\ngoal {}: {} (exit {})\n",
        if c.goal_met { "met" } else { "NOT met" },
        c.reasons.join("; "),
        c.exit_code()
    ));
    out
}

/// The comparison as one JSON object (keys in declaration order).
pub fn render_json(c: &Comparison) -> String {
    serde_json::to_string_pretty(c).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        analysis::InputKind,
        formats::{RecordedSeries, Recording, TagInfo},
        model::{ProcId, SeriesKey},
    };

    fn series(kind: Kind, pid: u32, comm: &str, values: &[u64]) -> RecordedSeries {
        let mut h = hist::new_hist();
        for &v in values {
            hist::record(&mut h, v);
        }
        RecordedSeries {
            start_s: 0.0,
            duration_s: 1.0,
            tag: TagInfo::of_key(&SeriesKey {
                kind,
                proc_id: ProcId::Pid(pid),
                comm: comm.into(),
                device: if kind == Kind::Iopf {
                    "dev0".into()
                } else if kind.is_request() {
                    "wd_do_comp_sync".into()
                } else {
                    String::new()
                },
            }),
            hist: h,
            errors: None,
        }
    }

    fn loaded(name: &str, series: Vec<RecordedSeries>, dropped: u64) -> Loaded {
        Loaded {
            name: name.into(),
            kind: InputKind::Hlog,
            recording: Recording {
                start_unix_s: None,
                series,
                dropped: Some(dropped),
                unanswered: Some(0),
                losses: None,
            },
            raw: None,
        }
    }

    fn lat(n: usize, v: u64) -> Vec<u64> {
        vec![v; n]
    }

    fn verdicts(c: &Comparison) -> Vec<(&str, Verdict)> {
        c.processes
            .iter()
            .map(|p| (p.comm.as_str(), p.verdict))
            .collect()
    }

    /// Requests of one run: `clean` fast ones without a fault, `slow`
    /// ones of which `faulted` had one.
    fn request_run(
        pid: u32,
        clean: usize,
        slow: usize,
        slow_ns: u64,
        faulted: usize,
    ) -> Vec<RecordedSeries> {
        let mut all = lat(clean, 10_000);
        all.extend(lat(slow, slow_ns));
        let mut clean_v = lat(clean, 10_000);
        clean_v.extend(lat(slow - faulted, slow_ns));
        vec![
            series(Kind::Op, pid, "zip", &all),
            series(Kind::OpFaulted, pid, "zip", &lat(faulted, slow_ns)),
            series(Kind::OpClean, pid, "zip", &clean_v),
        ]
    }

    #[test]
    fn request_level_verdict() {
        // Before: 20 000 requests, the slowest 2 % take 2 ms and 95 % of
        // them faulted. After pinning: the tail is 20 µs and fault-free.
        let base = loaded("before", request_run(1, 19_600, 400, 2_000_000, 380), 0);
        let cand = loaded("after", request_run(2, 19_600, 400, 20_000, 0), 0);
        let c = compare(&base, &cand, &CompareOptions::default());
        assert_eq!(c.requests.len(), 1);
        let r = &c.requests[0];
        assert_eq!((r.comm.as_str(), r.op.as_str()), ("zip", "wd_do_comp_sync"));
        for q in &r.quantiles {
            assert_eq!(q.verdict, Verdict::Reduced, "{q:?}");
            assert_eq!(q.faulted_tail_verdict, Verdict::Eliminated, "{q:?}");
        }
        let tb = r.quantiles[0].faulted_tail_baseline.expect("tail");
        // The tail of the slowest 1 % holds the requests tied with it.
        assert_eq!((tb.tail, tb.faulted), (400, 380));
        assert!(c.goal_met, "{:?}", c.reasons);
        assert_eq!(c.exit_code(), EXIT_MET);
        let text = render_text(&c);
        assert!(text.contains("380/400 = 95%"), "{text}");
        assert!(render_json(&c).contains("\"faulted_tail_verdict\": \"eliminated\""));
        // The other way round: worse, and the faulted share rose.
        let c = compare(&cand, &base, &CompareOptions::default());
        assert_eq!(c.requests[0].quantiles[1].verdict, Verdict::Worse);
        assert_eq!(
            c.requests[0].quantiles[1].faulted_tail_verdict,
            Verdict::Worse
        );
        assert_eq!(c.exit_code(), EXIT_NOT_MET);
        assert!(
            c.reasons.iter().any(|r| r.contains("with a fault rose")),
            "{:?}",
            c.reasons
        );
        // 20 requests: the tails rest on one request; inconclusive.
        let small_b = loaded("b", request_run(1, 18, 2, 2_000_000, 2), 0);
        let small_c = loaded("c", request_run(2, 18, 2, 1_000_000, 1), 0);
        let c = compare(&small_b, &small_c, &CompareOptions::default());
        assert_eq!(c.requests[0].quantiles[1].verdict, Verdict::Inconclusive);
        assert_eq!(c.exit_code(), EXIT_INCONCLUSIVE, "{:?}", c.reasons);
        // Recordings without requests have no request section.
        let plain = loaded("p", vec![series(Kind::Pin, 1, "x", &[5])], 0);
        let c = compare(&plain, &plain, &CompareOptions::default());
        assert!(c.requests.is_empty());
        assert!(!render_json(&c).contains("requests"));
    }

    #[test]
    fn comm_filter_compares_only_the_named_processes() {
        // zip pinned and lost its faulted tail; dma ran unchanged beside
        // it (same requests, faults and IOPFs in both runs).
        let mut before = request_run(1, 19_600, 400, 2_000_000, 380);
        let mut after = request_run(2, 19_600, 400, 20_000, 0);
        for (run, pid) in [(&mut before, 3), (&mut after, 4)] {
            run.push(series(
                Kind::Iopf,
                pid,
                "dma",
                &spread(4000, 10_000, 90_000),
            ));
            run.push(series(Kind::Op, pid, "dma", &spread(4000, 50_000, 900_000)));
        }
        before.push(series(Kind::Iopf, 1, "zip", &spread(4000, 10_000, 90_000)));
        let (base, cand) = (loaded("before", before, 0), loaded("after", after, 0));
        // All processes: dma's IOPFs and requests are not reduced.
        let all = compare(&base, &cand, &CompareOptions::default());
        assert_eq!(all.exit_code(), EXIT_NOT_MET, "{:?}", all.reasons);
        assert_eq!(all.requests.len(), 2);
        assert!(
            all.reasons.iter().any(|r| r.starts_with("dma")),
            "{:?}",
            all.reasons
        );
        // Only zip: its IOPFs eliminated, its requests reduced; goal met.
        let o = CompareOptions {
            comms: vec!["zip".into()],
            ..Default::default()
        };
        let zip = compare(&base, &cand, &o);
        assert_eq!(verdicts(&zip), vec![("zip", Verdict::Eliminated)]);
        assert_eq!(zip.requests.len(), 1);
        assert!(zip.series.iter().all(|s| s.comm == "zip"));
        assert_eq!(zip.exit_code(), EXIT_MET, "{:?}", zip.reasons);
        assert!(render_text(&zip).contains("only:      zip (--comm"));
        assert!(render_json(&zip).contains("\"comms\": ["));
        assert!(!render_json(&all).contains("\"comms\""));
        // A name in neither recording is reported.
        assert_eq!(
            unknown_comms(&base, &cand, &["zip".into(), "nope".into()]),
            ["nope"]
        );
    }

    #[test]
    fn eliminated_when_faults_are_gone() {
        let base = loaded(
            "before",
            vec![
                series(Kind::Iopf, 100, "bench", &lat(50, 80_000)),
                series(Kind::Pin, 100, "bench", &[900]),
            ],
            0,
        );
        let cand = loaded(
            "after",
            vec![series(Kind::Pin, 200, "bench", &[1000; 3])],
            0,
        );
        let c = compare(&base, &cand, &CompareOptions::default());
        assert_eq!(verdicts(&c), vec![("bench", Verdict::Eliminated)]);
        assert!(c.goal_met);
        assert_eq!(c.exit_code(), EXIT_MET);
        assert_eq!(c.processes[0].pids_baseline, vec![100]);
        assert_eq!(c.processes[0].pids_candidate, vec![200]);
        let text = render_text(&c);
        assert!(text.contains("rule: per process"), "{text}");
        assert!(text.contains("goal met"), "{text}");
        assert!(text.contains("iopf/bench/dev0"), "{text}");
    }

    #[test]
    fn reduced_unchanged_worse_and_tolerance() {
        // Enough samples (5000) for a closed p99.9 interval.
        let base = loaded(
            "b",
            vec![
                series(Kind::Iopf, 1, "a", &lat(5000, 100_000)),
                series(Kind::Iopf, 2, "b", &lat(5000, 100_000)),
                series(Kind::Iopf, 3, "c", &lat(5000, 100_000)),
            ],
            0,
        );
        let cand = loaded(
            "c",
            vec![
                series(Kind::Iopf, 4, "a", &lat(5000, 50_000)),
                series(Kind::Iopf, 5, "b", &lat(5000, 105_000)),
                series(Kind::Iopf, 6, "c", &lat(5000, 200_000)),
                series(Kind::Iopf, 7, "d", &lat(1, 1_000)),
            ],
            0,
        );
        let c = compare(&base, &cand, &CompareOptions::default());
        assert_eq!(
            verdicts(&c),
            vec![
                ("a", Verdict::Reduced),
                ("b", Verdict::Unchanged),
                ("c", Verdict::Worse),
                ("d", Verdict::Worse),
            ]
        );
        assert!(!c.goal_met);
        assert_eq!(c.exit_code(), EXIT_NOT_MET);
        // A 2% tolerance does not change b: 5% is more than 2%: worse.
        let c2 = compare(
            &base,
            &cand,
            &CompareOptions {
                tolerance_pct: 2.0,
                ..Default::default()
            },
        );
        assert_eq!(c2.processes[1].verdict, Verdict::Worse);
    }

    /// `n` latencies spread evenly over `lo..=hi` ns.
    fn spread(n: u64, lo: u64, hi: u64) -> Vec<u64> {
        (0..n)
            .map(|i| lo + (hi - lo) * i / (n - 1).max(1))
            .collect()
    }

    #[test]
    fn p999_of_20_samples_is_inconclusive() {
        // The example: a 50 % drop of p99.9 resting on 20 samples.
        let base = loaded(
            "b",
            vec![series(Kind::Iopf, 1, "a", &spread(20, 50_000, 200_000))],
            0,
        );
        let cand = loaded(
            "c",
            vec![series(Kind::Iopf, 2, "a", &spread(20, 25_000, 100_000))],
            0,
        );
        let c = compare(&base, &cand, &CompareOptions::default());
        assert_eq!(verdicts(&c), vec![("a", Verdict::Inconclusive)]);
        let p = &c.processes[0];
        assert!(
            p.change_pct.is_some_and(|x| x < -45.0),
            "{:?}",
            p.change_pct
        );
        assert!(p.candidate.interval.is_some_and(|i| i.high_ns.is_none()));
        assert!(!c.goal_met && c.inconclusive);
        assert_eq!(c.exit_code(), EXIT_INCONCLUSIVE);
        assert!(
            c.reasons[0].contains("too few samples in both runs: 20 and 20"),
            "{:?}",
            c.reasons
        );
        let text = render_text(&c);
        assert!(text.contains("inconclusive = "), "{text}");
        assert!(text.contains("p99.9 needs 3688 samples"), "{text}");
        assert!(text.contains(", —) → "), "{text}");
        assert!(text.contains("(exit 3)"), "{text}");
        // The mean has no interval: the point change decides.
        let c = compare(
            &base,
            &cand,
            &CompareOptions {
                metric: "mean".into(),
                ..Default::default()
            },
        );
        assert_eq!(verdicts(&c), vec![("a", Verdict::Reduced)]);
        assert!(c.rule.contains("no interval for mean"), "{}", c.rule);
        assert_eq!(c.exit_code(), EXIT_MET);
    }

    #[test]
    fn large_samples_with_a_real_drop_are_reduced() {
        let base = loaded(
            "b",
            vec![series(
                Kind::Iopf,
                1,
                "a",
                &spread(20_000, 10_000, 1_000_000),
            )],
            0,
        );
        let cand = loaded(
            "c",
            vec![series(Kind::Iopf, 2, "a", &spread(20_000, 5_000, 500_000))],
            0,
        );
        let c = compare(&base, &cand, &CompareOptions::default());
        assert_eq!(verdicts(&c), vec![("a", Verdict::Reduced)]);
        let (bi, ci) = (
            c.processes[0].baseline.interval,
            c.processes[0].candidate.interval,
        );
        assert!(
            bi.zip(ci).is_some_and(|(b, c)| c.entirely_below(&b)),
            "{bi:?} {ci:?}"
        );
        assert!(c.goal_met);
        // And the other way round: worse, a definite failure.
        let c = compare(&cand, &base, &CompareOptions::default());
        assert_eq!(verdicts(&c), vec![("a", Verdict::Worse)]);
        assert_eq!(c.exit_code(), EXIT_NOT_MET);
    }

    #[test]
    fn overlapping_intervals_are_inconclusive_and_exit_codes() {
        // 5000 samples: p99.9 rests on the top 10, which move down 20 %.
        let tail = |scale: u64| -> Vec<u64> {
            let mut v = lat(4990, 100_000);
            v.extend((0..10).map(|i| (1_000_000 + 100_000 * i) * scale / 10));
            v
        };
        let base = loaded("b", vec![series(Kind::Iopf, 1, "a", &tail(10))], 0);
        let cand = loaded(
            "c",
            vec![
                series(Kind::Iopf, 2, "a", &tail(8)),
                series(Kind::Iopf, 3, "new", &[5_000]),
            ],
            0,
        );
        let o = CompareOptions::default();
        let c = compare(&base, &cand, &o);
        let p = &c.processes[0];
        assert_eq!(p.verdict, Verdict::Inconclusive);
        assert!(
            p.change_pct.is_some_and(|x| x < -10.0),
            "{:?}",
            p.change_pct
        );
        assert!(p.baseline.interval.is_some_and(|i| i.is_closed()));
        assert!(p.candidate.interval.is_some_and(|i| i.is_closed()));
        assert!(
            c.reasons.iter().any(|r| r.contains("intervals overlap")),
            "{:?}",
            c.reasons
        );
        // "new" is worse (samples only in CANDIDATE): a definite failure.
        assert_eq!(c.processes[1].verdict, Verdict::Worse);
        assert!(!c.inconclusive);
        assert_eq!(c.exit_code(), EXIT_NOT_MET);
        // Without it only the inconclusive verdict stands: exit 3.
        let cand = loaded("c", vec![series(Kind::Iopf, 2, "a", &tail(8))], 0);
        let c = compare(&base, &cand, &o);
        assert_eq!(c.exit_code(), EXIT_INCONCLUSIVE);
        let v: serde_json::Value =
            serde_json::from_str(&render_json(&c)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v["inconclusive"], serde_json::Value::Bool(true));
        assert_eq!(v["processes"][0]["verdict"], "inconclusive");
        assert!(v["processes"][0]["candidate"]["interval"]["high_ns"].is_u64());
        assert!(v["series"][0]["baseline"]["p99.9_ci"]["low_ns"].is_u64());
        // Lost records are definite: exit 1 even with the inconclusive one.
        let cand = loaded("c", vec![series(Kind::Iopf, 2, "a", &tail(8))], 4);
        assert_eq!(compare(&base, &cand, &o).exit_code(), EXIT_NOT_MET);
    }

    #[test]
    fn absolute_goal_with_max() {
        let base = loaded("b", vec![series(Kind::Iopf, 1, "a", &lat(100, 100_000))], 0);
        let cand = loaded("c", vec![series(Kind::Iopf, 2, "a", &lat(100, 98_000))], 0);
        let mut o = CompareOptions::default();
        assert!(!compare(&base, &cand, &o).goal_met, "unchanged is not met");
        o.max_ns = Some(99_000);
        let c = compare(&base, &cand, &o);
        assert!(c.goal_met, "{:?}", c.reasons);
        o.max_ns = Some(50_000);
        let c = compare(&base, &cand, &o);
        assert!(!c.goal_met);
        assert!(c.reasons[0].contains("above the goal"), "{:?}", c.reasons);
    }

    #[test]
    fn missing_process_and_drops_fail_the_goal() {
        let base = loaded("b", vec![series(Kind::Iopf, 1, "a", &lat(10, 100_000))], 0);
        let cand = loaded("c", vec![series(Kind::Pin, 2, "other", &[5])], 0);
        let c = compare(&base, &cand, &CompareOptions::default());
        assert_eq!(verdicts(&c), vec![("a", Verdict::Missing)]);
        assert!(!c.goal_met);
        let base = loaded("b", vec![series(Kind::Iopf, 1, "a", &lat(10, 100_000))], 0);
        let cand = loaded("c", vec![series(Kind::Pin, 2, "a", &[5])], 3);
        let c = compare(&base, &cand, &CompareOptions::default());
        assert_eq!(verdicts(&c), vec![("a", Verdict::Eliminated)]);
        assert!(!c.goal_met, "drops must fail the goal");
        let c = compare(
            &base,
            &cand,
            &CompareOptions {
                allow_drops: true,
                ..Default::default()
            },
        );
        assert!(c.goal_met);
    }

    #[test]
    fn no_samples_in_either_run_is_met_and_json_is_valid() {
        let base = loaded("b", vec![series(Kind::Pin, 1, "a", &[5])], 0);
        let cand = loaded("c", vec![], 0);
        let c = compare(&base, &cand, &CompareOptions::default());
        assert!(c.processes.is_empty());
        assert!(c.goal_met);
        let v: serde_json::Value =
            serde_json::from_str(&render_json(&c)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v["goal_met"], serde_json::Value::Bool(true));
        assert_eq!(v["series"][0]["candidate"], serde_json::Value::Null);
    }
}
