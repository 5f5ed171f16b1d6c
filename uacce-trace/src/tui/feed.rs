//! The data behind `top`: an [`Aggregator`] plus what only the screen needs
//! (per-interval rates, the last minute of history for the sparklines, the
//! PASIDs and devices of every process), turned into an owned [`TopData`]
//! on every tick. Requests (`--op`) come as the model's `op`, `op_faulted`
//! and `op_clean` series, per op ([`OpStats`], [`OpDetail`]); the
//! `uacce_ctrl` ioctls as its `uacce_ctrl` series and the pin ledger's
//! ioctl counters (per-event and summary mode alike).
//!
//! Pure like the model: imports no aya, tokio, crossterm or ratatui and
//! never reads a clock. Time is the events' timestamps or the `now_ns`
//! argument; intervals are closed on event time (`advance_to`) so that a
//! replay, fast or paced, gives the same rates and history as the live run.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::{
    ingest::event::Event,
    ingest::losses::Ledger,
    model::{
        hist,
        requests::{TailShare, TAIL_QUANTILES},
        Aggregator, FaultRegion, Hist, Kind, LedgerSummary, ModelConfig, ProcId, ProcessSnapshot,
        SeriesSnapshot, Summary,
    },
};

/// How much history the sparklines keep (event time).
pub const HISTORY_NS: u64 = 60_000_000_000;
/// Hottest fault regions kept per process.
pub const MAX_REGIONS: usize = 32;
/// Pinned ranges kept per process (lowest addresses first).
pub const MAX_RANGES: usize = 32;
/// After a gap longer than this many intervals the missed ones are merged
/// into one (a quiet recording must not cost thousands of empty intervals).
const MAX_CATCH_UP: u64 = 120;

/// One interval of one process, for the sparklines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// End of the interval.
    pub end_ns: u64,
    /// Its length.
    pub span_ns: u64,
    /// IOPFs in the interval.
    pub iopfs: u64,
    /// p99 IOPF latency of the interval (0 without faults).
    pub iopf_p99_ns: u64,
    /// Pin calls in the interval.
    pub pin_calls: u64,
    /// Requests (`--op`, all ops) that began in the interval.
    pub ops: u64,
    /// Their p99 latency (0 without requests).
    pub op_p99_ns: u64,
    /// `uacce_ctrl`/mempinfd pin and unpin ioctls in the interval.
    pub ioctls: u64,
}

impl Sample {
    /// IOPFs per second of the interval.
    pub fn iopf_per_s(&self) -> f64 {
        per_s(self.iopfs, self.span_ns)
    }

    /// Pin calls per second of the interval.
    pub fn pin_calls_per_s(&self) -> f64 {
        per_s(self.pin_calls, self.span_ns)
    }

    /// Requests per second of the interval.
    pub fn ops_per_s(&self) -> f64 {
        per_s(self.ops, self.span_ns)
    }

    /// Pin ioctls per second of the interval.
    pub fn ioctls_per_s(&self) -> f64 {
        per_s(self.ioctls, self.span_ns)
    }

    fn is_zero(&self) -> bool {
        self.iopfs == 0 && self.pin_calls == 0 && self.ops == 0 && self.ioctls == 0
    }
}

fn per_s(n: u64, span_ns: u64) -> f64 {
    if span_ns == 0 {
        0.0
    } else {
        n as f64 * 1e9 / span_ns as f64
    }
}

/// A PASID seen for a process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PasidInfo {
    pub pasid: u32,
    /// `Some(true)` bound, `Some(false)` released, `None` only seen in faults.
    pub bound: Option<bool>,
    /// Devices that faulted on it.
    pub devices: Vec<String>,
}

/// Requests (`--op`) of one process: of one op, or of all its ops together.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpStats {
    /// Requests that began in the last closed interval, per second.
    pub per_s: f64,
    /// Request latency (entry to return) since the start.
    pub latency: Summary,
    /// The slowest 1 % and 0.1 % of the requests and how many of them had
    /// an IO page fault inside ([`TAIL_QUANTILES`] order).
    pub tails: Vec<TailShare>,
}

impl OpStats {
    fn of(all: &Hist, faulted: Option<&Hist>, per_s: f64) -> OpStats {
        OpStats {
            per_s,
            latency: Summary::of(all),
            tails: TAIL_QUANTILES
                .iter()
                .filter_map(|&(_, q)| TailShare::of(all, faulted, q))
                .collect(),
        }
    }

    /// The slowest 1 % (`None` without requests).
    pub fn tail_p99(&self) -> Option<&TailShare> {
        self.tails.first()
    }
}

/// One op of one process in the drill-down: its requests, split into
/// those with an IO page fault inside and those without.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpDetail {
    /// The op (the probed symbol).
    pub op: String,
    pub stats: OpStats,
    pub faulted: Summary,
    /// Non-empty buckets `(highest equivalent value, count)`.
    pub faulted_buckets: Vec<(u64, u64)>,
    pub clean: Summary,
    pub clean_buckets: Vec<(u64, u64)>,
}

/// Everything the drill-down shows about one process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcDetail {
    /// IOPF latency (all devices) and its non-empty buckets
    /// `(highest equivalent value, count)`.
    pub iopf: Summary,
    pub iopf_buckets: Vec<(u64, u64)>,
    /// `pin_user_pages*` call latency and buckets.
    pub pin: Summary,
    pub pin_buckets: Vec<(u64, u64)>,
    pub unpin: Summary,
    /// `uacce_ctrl`/mempinfd ioctl latency and its buckets.
    pub ioctl: Summary,
    pub ioctl_buckets: Vec<(u64, u64)>,
    /// Requests per op, most requests first.
    pub ops: Vec<OpDetail>,
    pub ledger: LedgerSummary,
    /// Hottest regions first (at most [`MAX_REGIONS`]).
    pub regions: Vec<FaultRegion>,
    /// Regions in all.
    pub region_count: usize,
    /// Faults counted in the kernel without an address (summary mode):
    /// the regions then hold only the sampled groups.
    pub faults_unplaced: u64,
    pub fault_block_bytes: u64,
    /// Pinned ranges by address (at most [`MAX_RANGES`]).
    pub ranges: Vec<(u64, u64)>,
    pub range_count: usize,
    pub pinned_bytes: u64,
    pub pasids: Vec<PasidInfo>,
    /// The last minute, oldest first.
    pub history: Vec<Sample>,
    /// For `[other]`: processes folded into it.
    pub folded_processes: u64,
}

/// One line of the process table, with its drill-down.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcRow {
    pub proc_id: ProcId,
    pub comm: String,
    /// Devices that faulted for it, sorted.
    pub devices: Vec<String>,
    /// IOPFs per second over the last closed interval.
    pub iopf_per_s: f64,
    pub iopf_total: u64,
    /// IOPF latency since the start (all devices).
    pub iopf: Summary,
    pub pinned_pages: u64,
    /// Pin calls per second over the last closed interval.
    pub pin_calls_per_s: f64,
    pub pin_calls_total: u64,
    /// Faults inside ranges pinned at the time (should be 0).
    pub faults_in_pinned: u64,
    /// Requests (`--op`) of all its ops together; `None` without any.
    pub ops: Option<OpStats>,
    /// `uacce_ctrl`/mempinfd pin and unpin ioctls per second over the last
    /// closed interval.
    pub ioctls_per_s: f64,
    /// Pin and unpin ioctls since the start, failed ones included.
    pub ioctl_calls: u64,
    /// Of those, failed.
    pub ioctl_errors: u64,
    /// Pages the pin calls inside its PIN ioctls pinned, since the start.
    pub ioctl_pages: u64,
    pub detail: ProcDetail,
}

impl ProcRow {
    /// The pid as text, `-` for the buckets.
    pub fn pid_text(&self) -> String {
        self.proc_id
            .pid()
            .map_or_else(|| "-".to_string(), |p| p.to_string())
    }
}

/// What the screen shows at one tick; owns its data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopData {
    pub start_ns: u64,
    pub now_ns: u64,
    /// Events ingested (loss samples not counted).
    pub events: u64,
    /// Events per second over the last closed interval.
    pub events_per_s: f64,
    /// Everything lost, by reason (cumulative).
    pub losses: Ledger,
    /// By process id (`[unattrib:PASID]` and `[other]` last).
    pub rows: Vec<ProcRow>,
}

impl TopData {
    /// Some process made a request (`--op`).
    pub fn has_requests(&self) -> bool {
        self.rows.iter().any(|r| r.ops.is_some())
    }

    /// Some process made a `uacce_ctrl`/mempinfd pin or unpin ioctl.
    pub fn has_ioctls(&self) -> bool {
        self.rows.iter().any(|r| r.ioctl_calls > 0)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Rates {
    iopfs: u64,
    pin_calls: u64,
    ops: u64,
    ioctls: u64,
}

/// One process's part of an interval.
#[derive(Clone, Debug, Default)]
struct ProcWindow {
    rates: Rates,
    iopf: Option<Hist>,
    op: Option<Hist>,
    /// Requests per op.
    ops: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default)]
struct LastWindow {
    span_ns: u64,
    events: u64,
    per_proc: HashMap<ProcId, Rates>,
    /// Requests per (process, op).
    per_op: HashMap<(ProcId, String), u64>,
}

#[derive(Clone, Debug, Default)]
struct PasidTrack {
    last_seen_ns: u64,
    pasids: BTreeMap<u32, (Option<bool>, BTreeSet<String>)>,
}

/// Aggregator plus screen state. See the module docs.
#[derive(Clone, Debug)]
pub struct Feed {
    agg: Aggregator,
    interval_ns: u64,
    next_end_ns: Option<u64>,
    events: u64,
    events_at_interval_start: u64,
    last: LastWindow,
    history: HashMap<ProcId, VecDeque<Sample>>,
    pasids: HashMap<ProcId, PasidTrack>,
}

impl Feed {
    /// An empty feed with intervals of `interval_ns`, the first one starting
    /// at `start_ns` (`None`: at the first event).
    pub fn new(interval_ns: u64, start_ns: Option<u64>, model: ModelConfig) -> Feed {
        let interval_ns = interval_ns.max(1);
        Feed {
            agg: Aggregator::new(ModelConfig { start_ns, ..model }),
            interval_ns,
            next_end_ns: start_ns.map(|s| s.saturating_add(interval_ns)),
            events: 0,
            events_at_interval_start: 0,
            last: LastWindow::default(),
            history: HashMap::new(),
            pasids: HashMap::new(),
        }
    }

    /// Interval length.
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// Newest event time (or the start).
    pub fn latest_ns(&self) -> u64 {
        self.agg.latest_ns()
    }

    /// When the running interval ends (`None` before the first event when
    /// no start was given).
    pub fn next_end_ns(&self) -> Option<u64> {
        self.next_end_ns
    }

    /// Events ingested (loss samples not counted).
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Change the interval; the current one ends `interval_ns` after it began.
    pub fn set_interval(&mut self, interval_ns: u64) {
        let interval_ns = interval_ns.max(1);
        if let Some(end) = self.next_end_ns {
            let start = end.saturating_sub(self.interval_ns);
            self.next_end_ns = Some(start.saturating_add(interval_ns));
        }
        self.interval_ns = interval_ns;
    }

    /// Ingest a batch in arrival order, closing intervals on event time.
    pub fn ingest(&mut self, batch: &[Event]) {
        for ev in batch {
            let ts = ev.ts_ns();
            if self.next_end_ns.is_none() {
                self.next_end_ns = Some(ts.saturating_add(self.interval_ns));
            }
            self.advance_to(ts);
            self.track_pasid(ev);
            self.agg.ingest(ev);
            self.events += ev.weight();
        }
    }

    fn track_pasid(&mut self, ev: &Event) {
        let (proc_id, ts, pasid, bound, device) = match ev {
            Event::Pasid(p) => (ProcId::Pid(p.tgid), p.ts_ns, p.pasid, Some(p.bound), None),
            Event::Iopf(f) => (
                f.tgid.map_or(ProcId::Unattributed(f.pasid), ProcId::Pid),
                f.ts_ns,
                f.pasid,
                None,
                Some(&f.device),
            ),
            _ => return,
        };
        let cap = self.agg.config().max_processes.saturating_mul(4).max(16);
        if !self.pasids.contains_key(&proc_id) && self.pasids.len() >= cap {
            // Bounded under churn: forget the process seen least recently.
            if let Some(old) = self
                .pasids
                .iter()
                .min_by_key(|(id, t)| (t.last_seen_ns, **id))
                .map(|(id, _)| *id)
            {
                self.pasids.remove(&old);
            }
        }
        let track = self.pasids.entry(proc_id).or_default();
        track.last_seen_ns = track.last_seen_ns.max(ts);
        let entry = track.pasids.entry(pasid).or_default();
        if bound.is_some() {
            entry.0 = bound;
        }
        if let Some(d) = device {
            if !entry.1.contains(d) {
                entry.1.insert(d.clone());
            }
        }
    }

    /// Close every interval that ends at or before `ts_ns`.
    pub fn advance_to(&mut self, ts_ns: u64) {
        let Some(mut end) = self.next_end_ns else {
            return;
        };
        if ts_ns < end {
            return;
        }
        let behind = (ts_ns - end) / self.interval_ns;
        if behind > MAX_CATCH_UP {
            end = end.saturating_add(behind.saturating_mul(self.interval_ns));
        }
        while ts_ns >= end {
            self.close(end);
            if end == u64::MAX {
                // The end of time: nothing can follow.
                break;
            }
            end = end.saturating_add(self.interval_ns);
        }
        self.next_end_ns = Some(end);
    }

    /// Close the running interval at the newest event (end of a replay), so
    /// that the rates describe the last stretch of the recording.
    pub fn close_partial(&mut self) {
        let Some(end) = self.next_end_ns else {
            return;
        };
        let start = end.saturating_sub(self.interval_ns);
        let latest = self.agg.latest_ns();
        if latest > start {
            self.close(latest);
            self.next_end_ns = Some(latest.saturating_add(self.interval_ns));
        }
    }

    fn close(&mut self, end_ns: u64) {
        let win = self.agg.take_interval(end_ns);
        let span_ns = win.end_ns - win.start_ns;
        let mut per: BTreeMap<ProcId, ProcWindow> = BTreeMap::new();
        for s in &win.series {
            let e = per.entry(s.key.proc_id).or_default();
            match s.key.kind {
                Kind::Iopf => {
                    e.rates.iopfs += s.hist.len();
                    hist::merge(e.iopf.get_or_insert_with(hist::new_hist), &s.hist);
                }
                Kind::Pin => e.rates.pin_calls += s.hist.len(),
                Kind::UacceCtrl => e.rates.ioctls += s.hist.len(),
                Kind::Op => {
                    e.rates.ops += s.hist.len();
                    *e.ops.entry(s.key.device.clone()).or_default() += s.hist.len();
                    hist::merge(e.op.get_or_insert_with(hist::new_hist), &s.hist);
                }
                // Sub-histograms of `Op`: counted there.
                Kind::Unpin | Kind::OpFaulted | Kind::OpClean => {}
            }
        }
        let p99 = |h: &Option<Hist>| h.as_ref().map_or(0, |h| h.value_at_quantile(0.99));
        for (id, w) in &per {
            let sample = Sample {
                end_ns: win.end_ns,
                span_ns,
                iopfs: w.rates.iopfs,
                iopf_p99_ns: p99(&w.iopf),
                pin_calls: w.rates.pin_calls,
                ops: w.rates.ops,
                op_p99_ns: p99(&w.op),
                ioctls: w.rates.ioctls,
            };
            if !sample.is_zero() {
                self.history.entry(*id).or_default().push_back(sample);
            }
        }
        for (id, samples) in self.history.iter_mut() {
            if !per.contains_key(id) {
                samples.push_back(Sample {
                    end_ns: win.end_ns,
                    span_ns,
                    ..Sample::default()
                });
            }
            while samples
                .front()
                .is_some_and(|f| win.end_ns.saturating_sub(f.end_ns) >= HISTORY_NS)
            {
                samples.pop_front();
            }
        }
        self.history.retain(|_, s| s.iter().any(|x| !x.is_zero()));
        let per_op = per
            .iter()
            .flat_map(|(&id, w)| w.ops.iter().map(move |(op, &n)| ((id, op.clone()), n)))
            .collect();
        self.last = LastWindow {
            span_ns,
            events: self.events - self.events_at_interval_start,
            per_proc: per.into_iter().map(|(id, w)| (id, w.rates)).collect(),
            per_op,
        };
        self.events_at_interval_start = self.events;
    }

    /// What the screen shows at `now_ns` (the newest known time).
    pub fn view(&self, now_ns: u64) -> TopData {
        let snap = self.agg.snapshot(now_ns);
        let mut by_proc: HashMap<ProcId, Vec<&SeriesSnapshot>> = HashMap::new();
        for s in &snap.series {
            by_proc.entry(s.key.proc_id).or_default().push(s);
        }
        let rows = snap
            .processes
            .iter()
            .map(|p| self.row(p, by_proc.get(&p.proc_id).map_or(&[][..], |v| v)))
            .collect();
        TopData {
            start_ns: snap.start_ns,
            now_ns,
            events: self.events,
            events_per_s: per_s(self.last.events, self.last.span_ns),
            losses: snap.losses,
            rows,
        }
    }

    fn row(&self, p: &ProcessSnapshot, series: &[&SeriesSnapshot]) -> ProcRow {
        let of = |kind: Kind| series.iter().filter(move |s| s.key.kind == kind);
        let mut devices: Vec<String> = of(Kind::Iopf).map(|s| s.key.device.clone()).collect();
        devices.sort();
        devices.dedup();
        let iopf_hist = merged(of(Kind::Iopf).map(|s| &s.hist));
        let pin_hist = merged(of(Kind::Pin).map(|s| &s.hist));
        let summary = |kind: Kind| {
            let mut it = of(kind);
            match (it.next(), it.next()) {
                (Some(s), None) => s.summary,
                (None, _) => Summary::default(),
                _ => Summary::of(&merged(of(kind).map(|s| &s.hist))),
            }
        };
        let iopf = Summary::of(&iopf_hist);
        let ioctl_hist = merged(of(Kind::UacceCtrl).map(|s| &s.hist));
        let (ops, op_rows) = self.requests(p.proc_id, series);
        let rates = self
            .last
            .per_proc
            .get(&p.proc_id)
            .copied()
            .unwrap_or_default();
        let mut regions = p.fault_regions.clone();
        regions.sort_by(|a, b| b.faults.cmp(&a.faults).then(a.start.cmp(&b.start)));
        regions.truncate(MAX_REGIONS);
        let pasids = self
            .pasids
            .get(&p.proc_id)
            .map(|t| {
                t.pasids
                    .iter()
                    .map(|(&pasid, (bound, devs))| PasidInfo {
                        pasid,
                        bound: *bound,
                        devices: devs.iter().cloned().collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let detail = ProcDetail {
            iopf,
            iopf_buckets: hist::buckets(&iopf_hist),
            pin: Summary::of(&pin_hist),
            pin_buckets: hist::buckets(&pin_hist),
            unpin: summary(Kind::Unpin),
            ioctl: Summary::of(&ioctl_hist),
            ioctl_buckets: hist::buckets(&ioctl_hist),
            ops: op_rows,
            ledger: p.ledger,
            regions,
            region_count: p.fault_regions.len(),
            faults_unplaced: p.faults_unplaced,
            fault_block_bytes: p.fault_block_bytes,
            ranges: p.pinned_ranges.iter().copied().take(MAX_RANGES).collect(),
            range_count: p.pinned_ranges.len(),
            pinned_bytes: p
                .pinned_ranges
                .iter()
                .fold(0u64, |acc, (s, e)| acc.saturating_add(e - s)),
            pasids,
            history: self
                .history
                .get(&p.proc_id)
                .map(|h| h.iter().copied().collect())
                .unwrap_or_default(),
            folded_processes: p.folded_processes,
        };
        ProcRow {
            proc_id: p.proc_id,
            comm: p.comm.clone(),
            devices,
            iopf_per_s: per_s(rates.iopfs, self.last.span_ns),
            iopf_total: iopf.count,
            iopf,
            pinned_pages: p.ledger.pinned_pages,
            pin_calls_per_s: per_s(rates.pin_calls, self.last.span_ns),
            pin_calls_total: p.ledger.pin_calls + p.ledger.pin_errors,
            faults_in_pinned: p.faults_in_pinned,
            ops,
            ioctls_per_s: per_s(rates.ioctls, self.last.span_ns),
            ioctl_calls: p.ledger.ioctl_calls(),
            ioctl_errors: p.ledger.ioctl_errors,
            ioctl_pages: p.ledger.ioctl_pin_pages,
            detail,
        }
    }

    /// The requests of one process: all ops together (`None` without
    /// requests) and per op, most requests first.
    fn requests(
        &self,
        proc_id: ProcId,
        series: &[&SeriesSnapshot],
    ) -> (Option<OpStats>, Vec<OpDetail>) {
        let mut by_op: BTreeMap<&str, [Option<&Hist>; 3]> = BTreeMap::new();
        for s in series {
            let slot = match s.key.kind {
                Kind::Op => 0,
                Kind::OpFaulted => 1,
                Kind::OpClean => 2,
                _ => continue,
            };
            by_op.entry(s.key.device.as_str()).or_default()[slot] = Some(&s.hist);
        }
        let mut all: Option<Hist> = None;
        let mut faulted_all: Option<Hist> = None;
        let mut rows = Vec::new();
        for (op, [a, f, c]) in by_op {
            let Some(a) = a.filter(|h| !h.is_empty()) else {
                continue;
            };
            hist::merge(all.get_or_insert_with(hist::new_hist), a);
            if let Some(f) = f {
                hist::merge(faulted_all.get_or_insert_with(hist::new_hist), f);
            }
            let n = self
                .last
                .per_op
                .get(&(proc_id, op.to_string()))
                .copied()
                .unwrap_or(0);
            let empty = hist::new_hist();
            rows.push(OpDetail {
                op: op.to_string(),
                stats: OpStats::of(a, f, per_s(n, self.last.span_ns)),
                faulted: Summary::of(f.unwrap_or(&empty)),
                faulted_buckets: f.map(hist::buckets).unwrap_or_default(),
                clean: Summary::of(c.unwrap_or(&empty)),
                clean_buckets: c.map(hist::buckets).unwrap_or_default(),
            });
        }
        rows.sort_by(|a, b| {
            b.stats
                .latency
                .count
                .cmp(&a.stats.latency.count)
                .then_with(|| a.op.cmp(&b.op))
        });
        let rate = self.last.per_proc.get(&proc_id).map_or(0, |r| r.ops);
        let stats =
            all.map(|a| OpStats::of(&a, faulted_all.as_ref(), per_s(rate, self.last.span_ns)));
        (stats, rows)
    }
}

/// All histograms merged into one.
fn merged<'a>(hists: impl Iterator<Item = &'a Hist>) -> Hist {
    let mut out = hist::new_hist();
    for h in hists {
        hist::merge(&mut out, h);
    }
    out
}
