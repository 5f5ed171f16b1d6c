//! The Prometheus text exposition (format 0.0.4) of a model [`Snapshot`]:
//! what `serve` answers on `/metrics`. Pure: imports no aya, tokio or
//! ratatui and never reads a clock or a file; the process and BPF figures
//! come in as arguments ([`SelfStats`], [`BpfStats`]).
//!
//! # Metric families
//!
//! Per process (labels `pid`, `comm`; IOPFs also `device`):
//!
//! | name | type | what |
//! |---|---|---|
//! | `uacce_trace_iopf_latency_seconds` | histogram | IO page fault, report to response |
//! | `uacce_trace_pin_latency_seconds` | histogram | `pin_user_pages*` call |
//! | `uacce_trace_unpin_latency_seconds` | histogram | `unpin_user_page*` call |
//! | `uacce_trace_uacce_ctrl_latency_seconds` | histogram | uacce_ctrl / mempinfd PIN and UNPIN ioctl |
//! | `uacce_trace_iopf_errors_total` | counter | IOPFs answered with an invalid/failure response |
//! | `uacce_trace_pin_errors_total` | counter | pin calls that failed (-errno) |
//! | `uacce_trace_uacce_ctrl_errors_total` | counter | pin/unpin ioctls that failed |
//! | `uacce_trace_pin_pages_total` | counter | pages pinned by successful pin calls |
//! | `uacce_trace_unpin_pages_total` | counter | pages released by unpin calls |
//! | `uacce_trace_iopfs_in_pinned_total` | counter | IOPFs on an address pinned at the time (should stay 0; left out in summary mode, which knows no pinned ranges) |
//! | `uacce_trace_pinned_pages` | gauge | pages pinned now (pin ledger) |
//!
//! The `_count` of each histogram is the number of IOPFs / calls (the IOPF
//! and pin counters); `_sum` is their total latency.
//!
//! Whole tool: `uacce_trace_info` (version, mode, kernel),
//! `uacce_trace_events_total`, `uacce_trace_lost_total{reason}` (everything
//! lost, by reason: one series per `losses::LossReason` that is a loss,
//! zeros included, so that a dashboard sees every reason before it
//! happens), `uacce_trace_dropped_records_total` (the sum of
//! `uacce_trace_lost_total`, kept for dashboards that predate the reasons),
//! `uacce_trace_nested_calls_total` (nested calls folded into their outer
//! call: no loss), `uacce_trace_unanswered_iopfs_total` (also
//! `lost_total{reason="iopf_unanswered"}`),
//! `uacce_trace_processes` (processes held), `uacce_trace_folded_processes_total`
//! (aged out), `uacce_trace_replay_complete` (replay only); the tool's own
//! overhead as the standard `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_start_time_seconds`, `process_open_fds`, and, while kernel
//! programs are loaded, `uacce_trace_bpf_programs`,
//! `uacce_trace_bpf_run_seconds_total`, `uacce_trace_bpf_runs_total` (time
//! and runs of our programs in the kernel: counted only while BPF run-time
//! statistics are on, see `uacce_trace_bpf_stats_enabled` and
//! `serve --bpf-stats`).
//!
//! # Buckets
//!
//! Cumulative `le` buckets at 1-2-5 steps per decade from 1 µs to 10 s
//! ([`BUCKETS_NS`], 22 finite buckets plus `+Inf`): IOPFs take a few µs to
//! milliseconds, pin calls from under a µs (they land in the first bucket)
//! to seconds for large long-term pins. A quantile estimated by Prometheus
//! (`histogram_quantile`, linear inside a bucket) is therefore within the
//! bucket that holds the true value: at most a factor 2.5 wide. The counts
//! come from the tool's HDR histograms (3 significant digits): a sample is
//! counted in a bucket when the lowest value of its HDR bucket is at most
//! `le`, so a sample within 0.1 % above a boundary may be counted below it.
//! `_sum` is Σ count × the middle of each HDR bucket (relative error ≤ 0.05 %).
//!
//! # Bounded cardinality
//!
//! Series exist only for processes the model holds: at most
//! `--max-processes` (default 128) plus `[unattrib:PASID]` (IOPFs of unknown
//! owner, `pid=""`). A process with no event for `--idle-after` (default
//! 60 s) and no pinned pages ages out: its series disappear (Prometheus
//! marks them stale, as for a finished pod) and its history moves into the
//! model's `[other]` bucket. `[other]` is exported only as a gauge (its
//! pinned pages, `pid=""`, `comm="[other]"`) and through
//! `uacce_trace_folded_processes_total`: exporting its histograms and
//! counters would count every folded process twice in `rate()`/`increase()`
//! over the moment it was folded. A process that comes back after ageing
//! out starts new counters (a counter reset, which `rate()` handles). At
//! most `max_processes × (4 histograms × 25 samples + 7 counters/gauges)`
//! per-process samples (≈ 14 k at the defaults, ~100 with a handful of
//! busy processes).

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
};

use super::labels::{Key, LabelSet, SeriesCap};
use crate::{
    ingest::losses::LossReason,
    model::{hist, Hist, Kind, ProcId, Snapshot},
};

/// Upper bounds (`le`) of the histogram buckets, in ns: 1-2-5 per decade,
/// 1 µs to 10 s.
pub const BUCKETS_NS: [u64; 22] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The tool's own process, from `/proc/self` (see `serve::selfstat`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SelfStats {
    /// User + system CPU time.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    /// Start of the process, seconds since the epoch, when known.
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<u64>,
}

/// Our kernel programs' run-time statistics (from `/proc/self/fdinfo`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BpfStats {
    /// BPF programs this process holds.
    pub programs: u64,
    /// Total time our programs ran, ns (0 unless statistics are on).
    pub run_time_ns: u64,
    /// Total runs (0 unless statistics are on).
    pub run_count: u64,
    /// Whether run-time statistics are being collected.
    pub stats_enabled: bool,
}

/// `Exposition::mode` of live summary mode.
pub const MODE_SUMMARY: &str = "summary";

/// Everything one exposition shows.
#[derive(Clone, Copy, Debug)]
pub struct Exposition<'a> {
    pub snapshot: &'a Snapshot,
    /// `live`, [`MODE_SUMMARY`] or `replay`.
    pub mode: &'a str,
    /// Kernel release the events come from.
    pub kernel: &'a str,
    /// Replay only: whether the whole recording has been ingested.
    pub replay_complete: Option<bool>,
    pub self_stats: Option<SelfStats>,
    pub bpf: Option<BpfStats>,
    /// The labels of the per-process families (`--labels`).
    pub labels: LabelSet,
    /// cgroup label per process (tgid); a process not in it has `""`.
    pub cgroups: &'a HashMap<u32, String>,
}

/// Name of the latency histogram family of a kind.
pub fn latency_metric(kind: Kind) -> &'static str {
    match kind {
        Kind::Iopf => "uacce_trace_iopf_latency_seconds",
        Kind::Pin => "uacce_trace_pin_latency_seconds",
        Kind::Unpin => "uacce_trace_unpin_latency_seconds",
        Kind::UacceCtrl => "uacce_trace_uacce_ctrl_latency_seconds",
        Kind::Op => "uacce_trace_op_latency_seconds",
        Kind::OpFaulted => "uacce_trace_op_faulted_latency_seconds",
        Kind::OpClean => "uacce_trace_op_clean_latency_seconds",
    }
}

fn latency_help(kind: Kind) -> &'static str {
    match kind {
        Kind::Iopf => "IO page fault latency, report to response (_count: IOPFs).",
        Kind::Pin => "pin_user_pages* call latency (_count: pin calls).",
        Kind::Unpin => "unpin_user_page* call latency (_count: unpin calls).",
        Kind::UacceCtrl => "uacce_ctrl/mempinfd pin and unpin ioctl latency (_count: ioctls).",
        Kind::Op => "Request (--op) latency, entry to return (_count: requests).",
        Kind::OpFaulted => {
            "Latency of the requests (--op) with an IO page fault of their process inside."
        }
        Kind::OpClean => "Latency of the requests (--op) without an IO page fault inside.",
    }
}

fn errors_metric(kind: Kind) -> Option<(&'static str, &'static str)> {
    match kind {
        Kind::Iopf => Some((
            "uacce_trace_iopf_errors_total",
            "IO page faults answered with an invalid or failure response.",
        )),
        Kind::Pin => Some(("uacce_trace_pin_errors_total", "Pin calls that failed.")),
        Kind::Unpin | Kind::Op | Kind::OpFaulted | Kind::OpClean => None,
        Kind::UacceCtrl => Some((
            "uacce_trace_uacce_ctrl_errors_total",
            "uacce_ctrl/mempinfd pin and unpin ioctls that failed.",
        )),
    }
}

/// Escape a label value (backslash, double quote, line feed).
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Nanoseconds as a decimal number of seconds, exact (`1500` → `0.0000015`).
pub fn seconds(ns: u64) -> String {
    let whole = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let f = format!("{frac:09}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// A float sample value (`NaN`, `+Inf`, `-Inf` spelled the Prometheus way).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Cumulative counts per bucket of [`BUCKETS_NS`] (see the module docs),
/// the total count and the sum in ns.
pub fn cumulative_buckets(h: &Hist) -> (Vec<u64>, u64, u128) {
    let mut per = vec![0u64; BUCKETS_NS.len()];
    let mut sum: u128 = 0;
    for v in h.iter_recorded() {
        let value = v.value_iterated_to();
        let count = v.count_at_value();
        let lowest = h.lowest_equivalent(value);
        sum += u128::from(h.median_equivalent(value)) * u128::from(count);
        if let Some(i) = BUCKETS_NS.iter().position(|&le| lowest <= le) {
            per[i] = per[i].saturating_add(count);
        }
    }
    let mut acc = 0u64;
    for c in &mut per {
        acc = acc.saturating_add(*c);
        *c = acc;
    }
    (per, h.len(), sum)
}

/// Writes families: `# HELP`, `# TYPE`, then the samples, grouped.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: &str) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }
}

/// `labels` and `extra` joined by a comma, either possibly empty.
fn join(labels: &str, extra: &str) -> String {
    match (labels.is_empty(), extra.is_empty()) {
        (true, _) => extra.to_string(),
        (_, true) => labels.to_string(),
        _ => format!("{labels},{extra}"),
    }
}

/// The label values of a process-level series under `--labels`.
fn key_of(
    e: &Exposition<'_>,
    proc_id: ProcId,
    comm: &str,
    device: Option<&str>,
    op: Option<&str>,
) -> Key {
    let l = e.labels;
    Key {
        pid: l
            .pid
            .then(|| proc_id.pid().map_or_else(String::new, |p| p.to_string())),
        comm: l.comm.then(|| comm.to_string()),
        device: device.filter(|_| l.device).map(str::to_string),
        cgroup: l.cgroup.then(|| match proc_id {
            ProcId::Pid(p) => e.cgroups.get(&p).cloned().unwrap_or_default(),
            _ => String::new(),
        }),
        op: op.map(str::to_string),
    }
}

/// The key of a model series: its process, the device of an IOPF series,
/// the op of a request series.
fn series_key(e: &Exposition<'_>, s: &crate::model::SeriesSnapshot) -> Key {
    let device = (s.key.kind == Kind::Iopf).then_some(s.key.device.as_str());
    let op = s.key.kind.is_request().then_some(s.key.device.as_str());
    key_of(e, s.key.proc_id, &s.key.comm, device, op)
}

/// Merged histograms and summed error counts per key.
type Groups = BTreeMap<Key, (Hist, u64)>;

fn add_group(groups: &mut Groups, key: Key, h: &Hist, errors: u64) {
    match groups.get_mut(&key) {
        Some((acc, n)) => {
            hist::merge(acc, h);
            *n += errors;
        }
        None => {
            groups.insert(key, (h.clone(), errors));
        }
    }
}

/// `groups` moved to where `place` says (a key it does not know goes to
/// its overflow series), merged again.
fn regroup(groups: Groups, place: &HashMap<Key, Key>) -> Groups {
    let mut out = Groups::new();
    for (k, (h, n)) in groups {
        let to = place.get(&k).cloned().unwrap_or_else(|| k.overflow());
        add_group(&mut out, to, &h, n);
    }
    out
}

/// Sums of a per-process value per key, capped as family `name`.
fn per_process_sums(
    name: &'static str,
    rows: impl Iterator<Item = (Key, u64)>,
    cap: &mut SeriesCap,
) -> BTreeMap<Key, u64> {
    let mut sums = BTreeMap::<Key, u64>::new();
    for (k, v) in rows {
        *sums.entry(k).or_default() += v;
    }
    let place = cap.place(name, &sums.keys().cloned().collect());
    let mut out = BTreeMap::<Key, u64>::new();
    for (k, v) in sums {
        let to = place.get(&k).cloned().unwrap_or_else(|| k.overflow());
        *out.entry(to).or_default() += v;
    }
    out
}

/// The share of each op's slowest requests that had a fault
/// (`model::requests`), per label set of the op family (`ops`) with the
/// faulted requests grouped the same way (`faulted`).
fn render_tail_shares(o: &mut Out, ops: &Groups, faulted: &Groups) {
    use crate::model::requests::{TailShare, TAIL_QUANTILES};
    let name = "uacce_trace_op_faulted_tail_ratio";
    o.family(
        name,
        "gauge",
        "Share of the slowest requests (--op; tail=p99: slowest 1 %, p99.9: slowest 0.1 %) \
         that had an IO page fault of their process inside.",
    );
    for (k, (h, _)) in ops {
        let labels = k.render(escape_label);
        let f = faulted.get(k).map(|(h, _)| h);
        for (tail, q) in TAIL_QUANTILES {
            if let Some(t) = TailShare::of(h, f, q) {
                o.sample(
                    name,
                    &join(&labels, &format!("tail=\"{tail}\"")),
                    &float(t.share()),
                );
            }
        }
    }
}

/// Render the exposition; `cap` bounds the label sets per family (and
/// remembers them from one scrape to the next).
pub fn render(e: &Exposition<'_>, cap: &mut SeriesCap) -> String {
    let snap = e.snapshot;
    let mut o = Out(String::with_capacity(16 * 1024));
    o.family(
        "uacce_trace_info",
        "gauge",
        "uacce-trace version, event source (live: every call read; summary: live, pins, ioctls and IO page faults counted in the kernel; replay) and kernel release.",
    );
    o.sample(
        "uacce_trace_info",
        &format!(
            "version=\"{}\",mode=\"{}\",kernel=\"{}\"",
            escape_label(env!("CARGO_PKG_VERSION")),
            escape_label(e.mode),
            escape_label(e.kernel)
        ),
        "1",
    );
    // `[other]` holds folded histories: not exported per process (module docs).
    let exported = || {
        snap.series
            .iter()
            .filter(|s| s.key.proc_id != ProcId::Other)
    };
    let mut op_place = HashMap::new();
    let mut op_groups = Groups::new();
    let mut faulted_raw = Groups::new();
    for kind in Kind::ALL {
        // Request families only when requests are traced (`--op`).
        if kind.is_request() && !exported().any(|s| s.key.kind == kind) {
            continue;
        }
        let name = latency_metric(kind);
        let mut groups = Groups::new();
        for s in exported().filter(|s| s.key.kind == kind) {
            add_group(&mut groups, series_key(e, s), &s.hist, s.errors);
        }
        if kind == Kind::OpFaulted {
            faulted_raw = groups.clone();
        }
        let place = cap.place(name, &groups.keys().cloned().collect());
        let groups = regroup(groups, &place);
        o.family(name, "histogram", latency_help(kind));
        for (k, (h, _)) in &groups {
            let labels = k.render(escape_label);
            let (cum, count, sum_ns) = cumulative_buckets(h);
            let bucket = format!("{name}_bucket");
            for (le, c) in BUCKETS_NS.iter().zip(&cum) {
                o.sample(
                    &bucket,
                    &join(&labels, &format!("le=\"{}\"", seconds(*le))),
                    &c.to_string(),
                );
            }
            o.sample(&bucket, &join(&labels, "le=\"+Inf\""), &count.to_string());
            o.sample(&format!("{name}_sum"), &labels, &float(sum_ns as f64 / 1e9));
            o.sample(&format!("{name}_count"), &labels, &count.to_string());
        }
        // The errors counter follows its histogram's label sets.
        if let Some((ename, help)) = errors_metric(kind) {
            o.family(ename, "counter", help);
            for (k, (_, errors)) in &groups {
                o.sample(ename, &k.render(escape_label), &errors.to_string());
            }
        }
        if kind == Kind::Op {
            op_place = place;
            op_groups = groups;
        }
    }
    if !op_groups.is_empty() {
        // Faulted requests grouped as the op family is.
        let faulted = regroup(faulted_raw, &op_place);
        render_tail_shares(&mut o, &op_groups, &faulted);
    }
    let procs = || {
        snap.processes
            .iter()
            .filter(|p| matches!(p.proc_id, ProcId::Pid(_)))
    };
    type PerProc = fn(&crate::model::ProcessSnapshot) -> u64;
    let counters: [(&'static str, &str, PerProc); 3] = [
        (
            "uacce_trace_pin_pages_total",
            "Pages pinned by successful pin calls.",
            |p| p.ledger.pin_pages_total,
        ),
        (
            "uacce_trace_unpin_pages_total",
            "Pages released by unpin calls.",
            |p| p.ledger.unpin_pages_total,
        ),
        (
            "uacce_trace_iopfs_in_pinned_total",
            "IO page faults on an address the owner had pinned at the time (should stay 0).",
            |p| p.faults_in_pinned,
        ),
    ];
    for (name, help, get) in counters {
        // Summary mode knows no pinned ranges: no count rather than a 0.
        if e.mode == MODE_SUMMARY && name == "uacce_trace_iopfs_in_pinned_total" {
            continue;
        }
        o.family(name, "counter", help);
        let rows = procs().map(|p| (key_of(e, p.proc_id, &p.comm, None, None), get(p)));
        for (k, v) in per_process_sums(name, rows, cap) {
            o.sample(name, &k.render(escape_label), &v.to_string());
        }
    }
    o.family(
        "uacce_trace_pinned_pages",
        "gauge",
        "Pages pinned now (pins minus unpins); comm=\"[other]\": processes aged out.",
    );
    let rows = snap
        .processes
        .iter()
        .filter(|p| !matches!(p.proc_id, ProcId::Unattributed(_)))
        .map(|p| {
            (
                key_of(e, p.proc_id, &p.comm, None, None),
                p.ledger.pinned_pages,
            )
        });
    for (k, v) in per_process_sums("uacce_trace_pinned_pages", rows, cap) {
        o.sample(
            "uacce_trace_pinned_pages",
            &k.render(escape_label),
            &v.to_string(),
        );
    }
    let folded = snap
        .processes
        .iter()
        .find(|p| p.proc_id == ProcId::Other)
        .map_or(0, |p| p.folded_processes);
    let held = procs().count();
    let globals: [(&str, &str, &str, u64); 5] = [
        (
            "uacce_trace_events_total",
            "counter",
            "Events ingested (including loss samples).",
            snap.events,
        ),
        (
            "uacce_trace_dropped_records_total",
            "counter",
            "Everything lost, every reason: the sum of uacce_trace_lost_total (kept for compatibility).",
            snap.losses.total(),
        ),
        (
            "uacce_trace_unanswered_iopfs_total",
            "counter",
            "IO page faults reported but never answered (also uacce_trace_lost_total{reason=\"iopf_unanswered\"}).",
            snap.losses.get(LossReason::IopfUnanswered),
        ),
        (
            "uacce_trace_processes",
            "gauge",
            "Processes with their own series (bounded by --max-processes).",
            held as u64,
        ),
        (
            "uacce_trace_folded_processes_total",
            "counter",
            "Processes aged out (idle) or evicted (too many) into [other].",
            folded,
        ),
    ];
    for (name, kind, help, v) in globals {
        o.family(name, kind, help);
        o.sample(name, "", &v.to_string());
    }
    o.family(
        "uacce_trace_lost_total",
        "counter",
        "Events lost or misattributed, by reason (every reason, zeros included).",
    );
    for (r, n) in snap.losses.iter().filter(|(r, _)| r.is_loss()) {
        o.sample(
            "uacce_trace_lost_total",
            &format!("reason=\"{}\"", r.name()),
            &n.to_string(),
        );
    }
    o.family(
        "uacce_trace_nested_calls_total",
        "counter",
        "Nested calls folded into their outer call (not a loss).",
    );
    o.sample(
        "uacce_trace_nested_calls_total",
        "",
        &snap.losses.get(LossReason::Nested).to_string(),
    );
    o.family(
        "uacce_trace_series_folded_total",
        "counter",
        &format!(
            "Label sets folded into a family's [other] series because the family \
             already had --max-series ({}) of them.",
            cap.max()
        ),
    );
    o.sample(
        "uacce_trace_series_folded_total",
        "",
        &cap.folded_total().to_string(),
    );
    if let Some(done) = e.replay_complete {
        o.family(
            "uacce_trace_replay_complete",
            "gauge",
            "Whether the whole recording has been replayed (1) or not yet (0).",
        );
        o.sample(
            "uacce_trace_replay_complete",
            "",
            if done { "1" } else { "0" },
        );
    }
    if let Some(s) = e.self_stats {
        o.family(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        o.sample("process_cpu_seconds_total", "", &float(s.cpu_seconds));
        o.family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        o.sample(
            "process_resident_memory_bytes",
            "",
            &s.resident_bytes.to_string(),
        );
        o.family(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
        );
        o.sample(
            "process_virtual_memory_bytes",
            "",
            &s.virtual_bytes.to_string(),
        );
        if let Some(t) = s.start_time_seconds {
            o.family(
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
            );
            o.sample("process_start_time_seconds", "", &float(t));
        }
        if let Some(n) = s.open_fds {
            o.family(
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
            );
            o.sample("process_open_fds", "", &n.to_string());
        }
    }
    if let Some(b) = e.bpf {
        o.family(
            "uacce_trace_bpf_programs",
            "gauge",
            "Kernel programs uacce-trace has loaded.",
        );
        o.sample("uacce_trace_bpf_programs", "", &b.programs.to_string());
        o.family(
            "uacce_trace_bpf_stats_enabled",
            "gauge",
            "1 while the kernel collects BPF run-time statistics (serve --bpf-stats or sysctl kernel.bpf_stats_enabled).",
        );
        o.sample(
            "uacce_trace_bpf_stats_enabled",
            "",
            if b.stats_enabled { "1" } else { "0" },
        );
        o.family(
            "uacce_trace_bpf_run_seconds_total",
            "counter",
            "Time uacce-trace's kernel programs ran (while statistics are on).",
        );
        o.sample(
            "uacce_trace_bpf_run_seconds_total",
            "",
            &float(b.run_time_ns as f64 / 1e9),
        );
        o.family(
            "uacce_trace_bpf_runs_total",
            "counter",
            "Runs of uacce-trace's kernel programs (while statistics are on).",
        );
        o.sample("uacce_trace_bpf_runs_total", "", &b.run_count.to_string());
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ingest::event::{Event, HookType, IopfEvent, LossSample, PinEvent},
        ingest::losses::Ledger,
        model::{hist, Aggregator, ModelConfig},
    };
    use uacce_trace_common::PinFunc;

    fn iopf(ts: u64, tgid: Option<u32>, latency_ns: u64) -> Event {
        Event::Iopf(IopfEvent {
            ts_ns: ts,
            latency_ns,
            tgid,
            comm: if tgid.is_some() {
                "f\"i\\o\n".into()
            } else {
                String::new()
            },
            device: "0000:00:02.0".into(),
            pasid: 1,
            grpid: 0,
            perm: 3,
            flags: 1,
            addr: 0x1000,
            response: u32::from(latency_ns == 7_000),
            hook: HookType::Kprobe,
        })
    }

    fn pin(ts: u64, tgid: u32, func: PinFunc, pages: i64) -> Event {
        Event::Pin(PinEvent {
            ts_ns: ts,
            latency_ns: 800,
            tgid,
            tid: tgid,
            comm: format!("p{tgid}"),
            func,
            hook: HookType::Kprobe,
            start: 0x10_0000,
            nr_pages: pages.unsigned_abs(),
            ret: pages,
            gup_flags: 0,
            longterm: false,
        })
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(1_000), "0.000001");
        assert_eq!(seconds(5_000_000), "0.005");
        assert_eq!(seconds(1_000_000_000), "1");
        assert_eq!(seconds(10_000_000_000), "10");
        assert_eq!(seconds(1_500_000_001), "1.500000001");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(0.25), "0.25");
    }

    #[test]
    fn buckets_are_cumulative_and_exact_on_boundaries() {
        let mut h = hist::new_hist();
        for v in [
            500,
            1_000,
            1_001,
            5_000,
            50_000,
            3_000_000_000,
            20_000_000_000,
        ] {
            hist::record(&mut h, v);
        }
        let (cum, count, sum) = cumulative_buckets(&h);
        assert_eq!(count, 7);
        assert_eq!(cum[0], 2, "500 ns and exactly 1 µs are ≤ 1 µs");
        assert_eq!(cum[1], 3);
        assert_eq!(cum[2], 4, "exactly 5 µs is ≤ 5 µs");
        assert_eq!(cum[5], 5, "50 µs within HDR resolution");
        assert_eq!(cum[20], 6);
        assert_eq!(cum[21], 6, "20 s is only in +Inf");
        assert!(cum.windows(2).all(|w| w[0] <= w[1]));
        let exact: u128 = 500 + 1_000 + 1_001 + 5_000 + 50_000 + 3_000_000_000 + 20_000_000_000;
        let err = (sum as f64 - exact as f64).abs() / exact as f64;
        assert!(err < 0.001, "sum {sum} vs {exact}");
    }

    fn sample_snapshot() -> Snapshot {
        let mut agg = Aggregator::new(ModelConfig {
            start_ns: Some(0),
            idle_after_ns: 10_000,
            ..Default::default()
        });
        agg.ingest(&iopf(100, Some(7), 3_000));
        agg.ingest(&iopf(9_000, Some(7), 7_000));
        agg.ingest(&iopf(300, None, 40_000));
        agg.ingest(&pin(400, 9, PinFunc::PinUserPagesFast, 4));
        agg.ingest(&pin(500, 9, PinFunc::PinUserPagesFast, -14));
        // Process 11 pins and unpins, then idles out into [other].
        agg.ingest(&pin(600, 11, PinFunc::PinUserPagesFast, 2));
        agg.ingest(&pin(700, 11, PinFunc::UnpinUserPages, 2));
        let mut losses = Ledger::new();
        losses.set(LossReason::RingFullPin, 1);
        losses.set(LossReason::IopfUnanswered, 2);
        losses.set(LossReason::Nested, 5);
        agg.ingest(&Event::Loss(LossSample { ts_ns: 800, losses }));
        agg.take_interval(10_750);
        agg.snapshot(10_750)
    }

    #[test]
    fn exposition_has_every_family_once_and_escapes_labels() {
        let snap = sample_snapshot();
        let text = render(
            &Exposition {
                snapshot: &snap,
                mode: "replay",
                kernel: "6.12.0",
                replay_complete: Some(true),
                self_stats: Some(SelfStats {
                    cpu_seconds: 0.5,
                    resident_bytes: 4096,
                    virtual_bytes: 8192,
                    start_time_seconds: Some(1.7e9),
                    open_fds: Some(9),
                }),
                bpf: Some(BpfStats {
                    programs: 2,
                    run_time_ns: 1_500,
                    run_count: 3,
                    stats_enabled: true,
                }),
                labels: LabelSet::default(),
                cgroups: &HashMap::new(),
            },
            &mut SeriesCap::new(1000),
        );
        // Every TYPE line is unique and its samples follow it contiguously.
        let mut seen = std::collections::BTreeSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default().to_string();
                assert!(seen.insert(name.clone()), "{name} twice");
                current = name;
            } else if !line.starts_with('#') {
                assert!(line.starts_with(&current), "{line} outside {current}");
            }
        }
        let pid7 = r#"pid="7",comm="f\"i\\o\n",device="0000:00:02.0""#;
        for want in [
            format!("uacce_trace_iopf_latency_seconds_bucket{{{pid7},le=\"0.000002\"}} 0"),
            format!("uacce_trace_iopf_latency_seconds_bucket{{{pid7},le=\"0.000005\"}} 1"),
            format!("uacce_trace_iopf_latency_seconds_bucket{{{pid7},le=\"0.00001\"}} 2"),
            format!("uacce_trace_iopf_latency_seconds_bucket{{{pid7},le=\"+Inf\"}} 2"),
            format!("uacce_trace_iopf_latency_seconds_count{{{pid7}}} 2"),
            format!("uacce_trace_iopf_errors_total{{{pid7}}} 1"),
            r#"uacce_trace_iopf_latency_seconds_count{pid="",comm="[unattrib:1]",device="0000:00:02.0"} 1"#.into(),
            r#"uacce_trace_pin_errors_total{pid="9",comm="p9"} 1"#.into(),
            r#"uacce_trace_pin_pages_total{pid="9",comm="p9"} 4"#.into(),
            r#"uacce_trace_pinned_pages{pid="9",comm="p9"} 4"#.into(),
            r#"uacce_trace_pinned_pages{pid="",comm="[other]"} 0"#.into(),
            "uacce_trace_dropped_records_total 3".into(),
            "uacce_trace_unanswered_iopfs_total 2".into(),
            r#"uacce_trace_lost_total{reason="ring_full_pin"} 1"#.into(),
            r#"uacce_trace_lost_total{reason="iopf_unanswered"} 2"#.into(),
            r#"uacce_trace_lost_total{reason="stale_inflight"} 0"#.into(),
            "uacce_trace_nested_calls_total 5".into(),
            "uacce_trace_folded_processes_total 1".into(),
            "uacce_trace_processes 2".into(),
            "uacce_trace_replay_complete 1".into(),
            "process_cpu_seconds_total 0.5".into(),
            "uacce_trace_bpf_run_seconds_total 0.0000015".into(),
            "uacce_trace_bpf_runs_total 3".into(),
            r#"uacce_trace_info{version="0.1.0",mode="replay",kernel="6.12.0"} 1"#.into(),
        ] {
            assert!(text.contains(&format!("{want}\n")), "missing {want}:\n{text}");
        }
        // One lost_total series per loss reason, none for `nested`; they
        // sum to the total.
        let lost: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("uacce_trace_lost_total{"))
            .collect();
        assert_eq!(
            lost.len(),
            LossReason::ALL.iter().filter(|r| r.is_loss()).count()
        );
        assert!(!text.contains(r#"reason="nested""#), "{text}");
        let sum: u64 = lost
            .iter()
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(sum, 3);
        // The folded process (11) has no series of its own.
        assert!(!text.contains("pid=\"11\""), "{text}");
        assert!(!text.contains("_count{pid=\"\",comm=\"[other]\""), "{text}");
    }

    /// Two processes named `zip` (pids 1 and 2) with IOPFs on one device
    /// and pins, a third (`cat`, pid 3) on another device.
    fn two_zips() -> Snapshot {
        let mut agg = Aggregator::new(ModelConfig {
            start_ns: Some(0),
            ..Default::default()
        });
        let mut t = 0;
        for (pid, comm, dev, n, base) in [
            (1, "zip", "0000:6a:00.0", 30u64, 2_000u64),
            (2, "zip", "0000:6a:00.0", 50, 300_000),
            (3, "cat", "0000:6b:00.0", 7, 40_000),
        ] {
            for i in 0..n {
                t += 10;
                let mut ev = iopf(t, Some(pid), base + i * 997);
                if let Event::Iopf(f) = &mut ev {
                    f.comm = comm.into();
                    f.device = dev.into();
                }
                agg.ingest(&ev);
            }
            t += 10;
            let mut p = pin(t, pid, PinFunc::PinUserPagesFast, 4 * i64::from(pid));
            if let Event::Pin(e) = &mut p {
                e.comm = comm.into();
            }
            agg.ingest(&p);
        }
        agg.snapshot(t)
    }

    fn render_with(
        snap: &Snapshot,
        labels: &str,
        cgroups: &HashMap<u32, String>,
        cap: &mut SeriesCap,
    ) -> String {
        render(
            &Exposition {
                snapshot: snap,
                mode: "replay",
                kernel: "k",
                replay_complete: None,
                self_stats: None,
                bpf: None,
                labels: LabelSet::parse(labels).unwrap_or_default(),
                cgroups,
            },
            cap,
        )
    }

    /// The value of the sample line that starts with `series`.
    fn value(text: &str, series: &str) -> u64 {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn dropping_pid_sums_counters_and_merges_histograms() {
        let snap = two_zips();
        let none = HashMap::new();
        let by_pid = render_with(&snap, "pid,comm,device", &none, &mut SeriesCap::new(1000));
        let by_comm = render_with(&snap, "comm,device", &none, &mut SeriesCap::new(1000));
        assert!(!by_comm.contains("pid="), "{by_comm}");
        let name = "uacce_trace_iopf_latency_seconds";
        let dev = r#"device="0000:6a:00.0""#;
        for le in BUCKETS_NS
            .iter()
            .map(|le| seconds(*le))
            .chain(["+Inf".to_string()])
        {
            let one = |pid: u32| {
                value(
                    &by_pid,
                    &format!("{name}_bucket{{pid=\"{pid}\",comm=\"zip\",{dev},le=\"{le}\"}}"),
                )
            };
            let merged = value(
                &by_comm,
                &format!("{name}_bucket{{comm=\"zip\",{dev},le=\"{le}\"}}"),
            );
            assert_eq!(merged, one(1) + one(2), "le={le}");
        }
        assert_eq!(
            value(&by_comm, &format!("{name}_count{{comm=\"zip\",{dev}}}")),
            80
        );
        assert_eq!(
            value(
                &by_comm,
                &format!("{name}_count{{comm=\"cat\",device=\"0000:6b:00.0\"}}")
            ),
            7
        );
        assert_eq!(
            value(&by_comm, r#"uacce_trace_pin_pages_total{comm="zip"}"#),
            4 + 8
        );
        assert_eq!(
            value(&by_comm, r#"uacce_trace_pinned_pages{comm="zip"}"#),
            12
        );
        assert_eq!(
            value(
                &by_comm,
                r#"uacce_trace_pin_latency_seconds_count{comm="zip"}"#
            ),
            2
        );
        // Only the device: pin families lose every label and become one
        // series each; IOPFs one per device.
        let by_dev = render_with(&snap, "device", &none, &mut SeriesCap::new(1000));
        assert_eq!(value(&by_dev, "uacce_trace_pin_pages_total"), 4 + 8 + 12);
        assert_eq!(value(&by_dev, &format!("{name}_count{{{dev}}}")), 80);
        assert!(
            by_dev.contains("uacce_trace_pin_latency_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{by_dev}"
        );
        // The default is the exposition from before --labels, byte for byte
        // in its label order.
        assert_eq!(
            value(
                &by_pid,
                &format!("{name}_count{{pid=\"2\",comm=\"zip\",{dev}}}")
            ),
            50
        );
        assert!(
            by_pid.contains("uacce_trace_series_folded_total 0\n"),
            "{by_pid}"
        );
    }

    #[test]
    fn cgroup_labels_and_the_series_cap() {
        let snap = two_zips();
        let cgroups: HashMap<u32, String> =
            [(1, "docker-aaaaaaaaaaaa"), (2, "docker-bbbbbbbbbbbb")]
                .into_iter()
                .map(|(p, c)| (p, c.to_string()))
                .collect();
        let text = render_with(&snap, "comm,cgroup", &cgroups, &mut SeriesCap::new(1000));
        assert_eq!(
            value(
                &text,
                r#"uacce_trace_iopf_latency_seconds_count{comm="zip",cgroup="docker-bbbbbbbbbbbb"}"#
            ),
            50
        );
        // pid 3 has no cgroup known: "".
        assert_eq!(
            value(
                &text,
                r#"uacce_trace_pin_pages_total{comm="cat",cgroup=""}"#
            ),
            12
        );
        // A cap of 1 per family: the first label set keeps its series, the
        // others fold into [other], counted once per family and label set.
        let mut cap = SeriesCap::new(1);
        let text = render_with(&snap, "pid,comm,device", &none_map(), &mut cap);
        let over = r#"pid="[other]",comm="[other]""#;
        assert_eq!(
            value(&text, r#"uacce_trace_pin_pages_total{pid="1",comm="zip"}"#),
            4
        );
        assert_eq!(
            value(&text, &format!("uacce_trace_pin_pages_total{{{over}}}")),
            8 + 12
        );
        assert_eq!(
            value(
                &text,
                &format!("uacce_trace_iopf_latency_seconds_count{{{over},device=\"[other]\"}}")
            ),
            57
        );
        // 2 folded in each of iopf, pin, pin_pages, unpin_pages,
        // iopfs_in_pinned and pinned_pages.
        assert_eq!(value(&text, "uacce_trace_series_folded_total"), 12);
        assert!(!text.contains(r#"pid="2""#), "{text}");
        // The next scrape folds nothing new.
        let again = render_with(&snap, "pid,comm,device", &none_map(), &mut cap);
        assert_eq!(value(&again, "uacce_trace_series_folded_total"), 12);
        assert_eq!(again, text);
    }

    fn none_map() -> HashMap<u32, String> {
        HashMap::new()
    }

    #[test]
    fn requests_have_op_series_and_a_faulted_tail_share() {
        use crate::ingest::event::RequestEvent;
        let mut agg = Aggregator::new(ModelConfig::default());
        // 1000 requests; the 10 slowest had a fault.
        for i in 0..1000u64 {
            let slow = i % 100 == 0;
            agg.ingest(&Event::Request(RequestEvent {
                ts_ns: 1_000 + i * 10_000,
                latency_ns: if slow { 3_000_000 } else { 4_000 },
                tgid: 5,
                tid: 6,
                comm: "zip".into(),
                op: "wd_do_comp_sync".into(),
                ret: 0,
                faults: u32::from(slow),
                fault_ns: if slow { 1_000_000 } else { 0 },
            }));
        }
        let snap = agg.snapshot(20_000_000);
        let text = render_with(
            &snap,
            "pid,comm,device",
            &none_map(),
            &mut SeriesCap::new(1000),
        );
        let l = r#"pid="5",comm="zip",op="wd_do_comp_sync""#;
        for want in [
            format!("uacce_trace_op_latency_seconds_count{{{l}}} 1000"),
            format!("uacce_trace_op_faulted_latency_seconds_count{{{l}}} 10"),
            format!("uacce_trace_op_clean_latency_seconds_count{{{l}}} 990"),
            format!("uacce_trace_op_faulted_tail_ratio{{{l},tail=\"p99\"}} 1"),
            format!("uacce_trace_op_faulted_tail_ratio{{{l},tail=\"p99.9\"}} 1"),
        ] {
            assert!(
                text.contains(&format!("{want}\n")),
                "missing {want}:\n{text}"
            );
        }
        // Without pid the op keeps its label, and the tail share is that
        // of the merged requests.
        let text = render_with(&snap, "comm", &none_map(), &mut SeriesCap::new(1000));
        let want =
            r#"uacce_trace_op_faulted_tail_ratio{comm="zip",op="wd_do_comp_sync",tail="p99"} 1"#;
        assert!(text.contains(&format!("{want}\n")), "{text}");
        // Without requests there are no request families.
        let empty = Aggregator::new(ModelConfig::default()).snapshot(0);
        let text = render_with(
            &empty,
            "pid,comm,device",
            &none_map(),
            &mut SeriesCap::new(1000),
        );
        assert!(!text.contains("uacce_trace_op"), "{text}");
    }
}
