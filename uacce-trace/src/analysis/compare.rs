//! `uacce-trace compare BASELINE CANDIDATE`: did the change (pinning) remove
//! the IOPF jitter? Per series the deltas of count, p50, p99, p99.9 and max;
//! per process a verdict with the rule printed; an exit code a CI job can
//! gate on. No aya, tokio, ratatui, no clock.
//!
//! Process ids differ between runs, so series are matched by kind, command
//! name and device; processes of the same name are merged (their pids are
//! listed). Tags not in uacce-trace's syntax are matched by the whole tag.
//!
//! # Verdicts (per process, over all its series of `--kind`, default iopf)
//!
//! With `B`, `C` the metric (`--metric`, default p99.9) in BASELINE and
//! CANDIDATE and `t` the tolerance (`--tolerance`, default 10 %):
//!
//! - **eliminated**: the process had samples in BASELINE and none in
//!   CANDIDATE (where it still appears);
//! - **reduced**: `C ≤ B × (1 − t)`;
//! - **worse**: `C ≥ B × (1 + t)`, or samples in CANDIDATE and none in
//!   BASELINE;
//! - **unchanged**: otherwise (also: no samples in either run);
//! - **missing**: samples in BASELINE, the process absent from CANDIDATE
//!   (it did not run: nothing can be concluded). The `[unattrib:PASID]` and
//!   `[other]` buckets are never missing: their absence is no samples.
//!
//! # Goal and exit code
//!
//! Without `--max`: met when no process is worse or missing and no process
//! still has samples with verdict unchanged. With `--max L`: met when no
//! process is missing and every process's CANDIDATE metric is ≤ L. In both
//! cases CANDIDATE must have lost no records (unless `--allow-drops`): lost
//! records could be the very faults in question.
//!
//! Exit codes: 0 goal met, 1 goal not met, 2 bad input.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{fmt_ns, table, Loaded};
use crate::model::{hist, is_bucket_comm, Hist, Kind, Summary};

/// Exit code: the goal is met.
pub const EXIT_MET: u8 = crate::exit::OK;
/// Exit code: the goal is not met.
pub const EXIT_NOT_MET: u8 = crate::exit::FAILURE;
/// Exit code: an input could not be used.
pub const EXIT_BAD_INPUT: u8 = crate::exit::BAD_INPUT;

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
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            metric: "p99.9".into(),
            max_ns: None,
            tolerance_pct: 10.0,
            kind: Kind::Iopf,
            allow_drops: false,
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
    Worse,
    Missing,
}

impl Verdict {
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Eliminated => "eliminated",
            Verdict::Reduced => "reduced",
            Verdict::Unchanged => "unchanged",
            Verdict::Worse => "worse",
            Verdict::Missing => "missing",
        }
    }
}

/// The statistics compared per series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    #[serde(rename = "p99.9")]
    pub p999: u64,
    pub max: u64,
}

impl Stats {
    fn of(s: &Summary) -> Stats {
        Stats {
            count: s.count,
            p50: s.p50,
            p99: s.p99,
            p999: s.p999,
            max: s.max,
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
    pub rule: String,
    pub series: Vec<SeriesDelta>,
    pub processes: Vec<ProcessVerdict>,
    pub loss_baseline: Loss,
    pub loss_candidate: Loss,
    pub goal_met: bool,
    /// Why the goal is (not) met, one sentence each.
    pub reasons: Vec<String>,
}

impl Comparison {
    /// The exit code for this result.
    pub fn exit_code(&self) -> u8 {
        if self.goal_met {
            EXIT_MET
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
        None => "goal: no process worse or missing, and none still sampled with verdict unchanged"
            .into(),
    };
    let drops = if o.allow_drops {
        ""
    } else {
        "; CANDIDATE must have lost no records"
    };
    format!(
        "per process over its {k} series: eliminated = {k} samples in BASELINE, none in CANDIDATE; \
         reduced = {m} at least {t}% lower; worse = {m} at least {t}% higher, or samples only in CANDIDATE; \
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
        },
        None => ProcSide {
            count: 0,
            metric_ns: None,
        },
    }
}

/// Compare two loaded inputs.
pub fn compare(base: &Loaded, cand: &Loaded, o: &CompareOptions) -> Comparison {
    let b = side(base, o.kind);
    let c = side(cand, o.kind);
    let keys: BTreeSet<_> = b.series.keys().chain(c.series.keys()).cloned().collect();
    let series = keys
        .into_iter()
        .map(|k| {
            let stats = |s: &Side| s.series.get(&k).map(|h| Stats::of(&Summary::of(h)));
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
            _ => {
                let (bm, cm) = (
                    bs.metric_ns.unwrap_or(0) as f64,
                    cs.metric_ns.unwrap_or(0) as f64,
                );
                if cm <= bm * (1.0 - t) {
                    Verdict::Reduced
                } else if cm >= bm * (1.0 + t) {
                    Verdict::Worse
                } else {
                    Verdict::Unchanged
                }
            }
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
    for p in &processes {
        match (p.verdict, o.max_ns) {
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
    let goal_met = reasons.is_empty();
    if goal_met {
        reasons.push(if processes.is_empty() {
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
        rule: rule(o),
        series,
        processes,
        loss_baseline: loss(base),
        loss_candidate,
        goal_met,
        reasons,
    }
}

fn arrow(b: Option<u64>, c: Option<u64>, latency: bool) -> String {
    let f = |v: Option<u64>| {
        v.map_or_else(
            || "-".to_string(),
            |v| {
                if latency {
                    fmt_ns(Some(v as f64))
                } else {
                    v.to_string()
                }
            },
        )
    };
    let pct = match (b, c) {
        (Some(b), Some(c)) if b > 0 => {
            format!(" ({:+.1}%)", (c as f64 - b as f64) / b as f64 * 100.0)
        }
        _ => String::new(),
    };
    format!("{} → {}{pct}", f(b), f(c))
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
        "baseline:  {} ({})\ncandidate: {} ({})\n\n",
        c.baseline,
        loss_text(&c.loss_baseline),
        c.candidate,
        loss_text(&c.loss_candidate)
    );
    let rows: Vec<Vec<String>> = c
        .series
        .iter()
        .map(|s| {
            let g =
                |f: fn(&Stats) -> u64| (s.baseline.as_ref().map(f), s.candidate.as_ref().map(f));
            let (bc, cc) = g(|x| x.count);
            let (b50, c50) = g(|x| x.p50);
            let (b99, c99) = g(|x| x.p99);
            let (b999, c999) = g(|x| x.p999);
            let (bmax, cmax) = g(|x| x.max);
            vec![
                s.key.clone(),
                arrow(bc.or(Some(0)), cc.or(Some(0)), false),
                arrow(b50, c50, true),
                arrow(b99, c99, true),
                arrow(b999, c999, true),
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
                    arrow(p.baseline.metric_ns, p.candidate.metric_ns, true),
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
        let base = loaded(
            "b",
            vec![
                series(Kind::Iopf, 1, "a", &lat(100, 100_000)),
                series(Kind::Iopf, 2, "b", &lat(100, 100_000)),
                series(Kind::Iopf, 3, "c", &lat(100, 100_000)),
            ],
            0,
        );
        let cand = loaded(
            "c",
            vec![
                series(Kind::Iopf, 4, "a", &lat(10, 50_000)),
                series(Kind::Iopf, 5, "b", &lat(100, 105_000)),
                series(Kind::Iopf, 6, "c", &lat(100, 200_000)),
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
