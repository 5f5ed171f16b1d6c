//! The aggregator: ingests domain [`Event`]s and keeps per (process, kind,
//! device) latency histograms, counts, a pin ledger per process, fault
//! addresses per process and the loss counters; hands out immutable
//! [`Snapshot`]s and per-interval [`IntervalWindow`]s.
//!
//! Pure: imports no aya, tokio or ratatui and never reads a clock. Time is
//! the events' timestamps (CLOCK_MONOTONIC ns) or an argument.
//!
//! # Series
//!
//! A series is keyed by [`SeriesKey`]: kind (`iopf`, `pin`, `unpin`,
//! `uacce_ctrl`), process and device (`""` for everything but IOPFs). A
//! process is identified by its tgid; the command name shown is the one of
//! the first event seen from it (threads may rename themselves). IOPFs whose
//! owner is unknown go to one `[unattrib:PASID]` process per PASID (its
//! series are per device, so each (device, PASID) has its own histogram).
//!
//! # Bounded memory under process churn
//!
//! Every process costs a few histograms (≈100–200 KiB each for latencies up
//! to a second at 3 significant digits), a ledger of at most
//! [`ModelConfig::max_grants`] grants and a fault map of at most
//! [`ModelConfig::max_fault_blocks`] blocks. Processes are folded into the
//! `[other]` process (their histograms merged into its series of the same
//! kind and device, their ledger and fault totals added, their ranges and
//! fault regions dropped):
//!
//! - at the end of an interval ([`Aggregator::take_interval`]), when no
//!   event of theirs was seen for [`ModelConfig::idle_after_ns`] (default
//!   60 s) and they hold no pinned pages (a process that keeps pages pinned
//!   stays visible: it may be a leak);
//! - when a new process appears while [`ModelConfig::max_processes`]
//!   (default 128) are held: the one seen least recently goes first, and
//!   among those last seen at the same time the one with the fewest calls
//!   (in summary mode every process of one reading has the reading's time:
//!   with the pid as the tie-break, a busy long-lived process with a low
//!   pid went to `[other]` whenever a reading brought more new processes
//!   than the cap, as in the arm64 `pins` VM's fixture churn).
//!
//! Counts are never lost by folding: merging keeps every sample.

pub mod faults;
pub mod hist;
pub mod ledger;
pub mod quantile_ci;
pub mod requests;

use std::collections::{BTreeMap, HashMap};

use uacce_trace_common::summary;

use crate::{
    ingest::event::{
        Event, IopfEvent, PinEvent, PinIoctl, PinIoctlEvent, RequestEvent, SummaryEvent,
        SummaryKind,
    },
    ingest::inthash::BuildIntHasher,
    ingest::losses::{Ledger, LossReason},
};

pub use self::{
    faults::{FaultMap, FaultRegion},
    hist::{Hist, Summary},
    ledger::{LedgerSummary, PinLedger, RangeSet},
    quantile_ci::Interval,
};

/// What a series measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// IO page fault, report to response.
    Iopf,
    /// `pin_user_pages*` call latency.
    Pin,
    /// `unpin_user_page*` call latency.
    Unpin,
    /// `uacce_ctrl` / mempinfd pin and unpin ioctl latency.
    UacceCtrl,
    /// User-space request latency (`--op`); the series' device is the op.
    Op,
    /// The requests of [`Kind::Op`] with at least one IO page fault of
    /// their process reported inside them.
    OpFaulted,
    /// The requests of [`Kind::Op`] without one.
    OpClean,
}

impl Kind {
    /// Every kind, in output order.
    pub const ALL: [Kind; 7] = [
        Kind::Iopf,
        Kind::Pin,
        Kind::Unpin,
        Kind::UacceCtrl,
        Kind::Op,
        Kind::OpFaulted,
        Kind::OpClean,
    ];

    /// Name used in tags and outputs.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Iopf => "iopf",
            Kind::Pin => "pin",
            Kind::Unpin => "unpin",
            Kind::UacceCtrl => "uacce_ctrl",
            Kind::Op => "op",
            Kind::OpFaulted => "op_faulted",
            Kind::OpClean => "op_clean",
        }
    }

    /// A request kind (`op`, `op_faulted`, `op_clean`).
    pub const fn is_request(self) -> bool {
        matches!(self, Kind::Op | Kind::OpFaulted | Kind::OpClean)
    }

    /// Parse [`Kind::name`].
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// Which process a series belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProcId {
    /// A process by tgid.
    Pid(u32),
    /// IOPFs of this PASID whose owner is unknown.
    Unattributed(u32),
    /// Processes folded away for memory's sake (see the module docs).
    Other,
}

/// Prefix of the command name of [`ProcId::Unattributed`]
/// (`[unattrib:PASID]`, see [`unattributed_comm`]; short enough for
/// `top`'s COMM column).
pub const UNATTRIBUTED_COMM: &str = "[unattrib:";

/// Command name of the `[unattrib:PASID]` row of `pasid`.
pub fn unattributed_comm(pasid: u32) -> String {
    format!("{UNATTRIBUTED_COMM}{pasid}]")
}

/// True for the command names of the `[unattrib:PASID]` and `[other]`
/// rows, which are not processes.
pub fn is_bucket_comm(comm: &str) -> bool {
    comm == OTHER_COMM || comm.starts_with(UNATTRIBUTED_COMM)
}
/// Command name of [`ProcId::Other`].
pub const OTHER_COMM: &str = "[other]";

impl ProcId {
    /// The tgid, if this is a real process.
    pub fn pid(self) -> Option<u32> {
        match self {
            ProcId::Pid(p) => Some(p),
            _ => None,
        }
    }
}

/// Identity of one series.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub kind: Kind,
    pub proc_id: ProcId,
    pub comm: String,
    /// Device name for IOPFs, `""` otherwise.
    pub device: String,
}

/// Tunables of the aggregator (defaults in [`ModelConfig::default`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    /// Bytes per page for turning page counts into ranges (4096; events do
    /// not carry the page size, 64 KiB-page arm64 kernels need 65536).
    pub page_size: u64,
    /// A process with no event for this long (event time) and no pinned
    /// pages is folded into `[other]` at the end of an interval.
    pub idle_after_ns: u64,
    /// At most this many processes are held (plus the two buckets).
    pub max_processes: usize,
    /// Pin grants kept per process (see [`ledger`]).
    pub max_grants: usize,
    /// Fault blocks kept per process (see [`faults`]).
    pub max_fault_blocks: usize,
    /// Start of the first interval; `None`: the first event's timestamp.
    pub start_ns: Option<u64>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            page_size: 4096,
            idle_after_ns: 60_000_000_000,
            max_processes: 128,
            max_grants: 4096,
            max_fault_blocks: 4096,
            start_ns: None,
        }
    }
}

#[derive(Clone, Debug)]
struct SeriesState {
    kind: Kind,
    device: String,
    cumulative: Hist,
    errors: u64,
    /// This interval's histogram, created on the first sample.
    interval: Option<Hist>,
    interval_errors: u64,
}

impl SeriesState {
    fn new(kind: Kind, device: &str) -> SeriesState {
        SeriesState {
            kind,
            device: device.to_string(),
            cumulative: hist::new_hist(),
            errors: 0,
            interval: None,
            interval_errors: 0,
        }
    }

    fn record(&mut self, latency_ns: u64, error: bool) {
        hist::record(&mut self.cumulative, latency_ns);
        hist::record(self.interval.get_or_insert_with(hist::new_hist), latency_ns);
        if error {
            self.errors += 1;
            self.interval_errors += 1;
        }
    }

    /// Summary mode: `count` samples of latency bucket `bucket`, recorded
    /// at the bucket's largest value (so a percentile is never below the
    /// per-event one and at most one bucket above it).
    fn record_bucket(&mut self, bucket: usize, count: u64) {
        let v = summary::bucket_high(bucket).min(hist::SUMMARY_CEILING_NS);
        hist::record_n(&mut self.cumulative, v, count);
        hist::record_n(self.interval.get_or_insert_with(hist::new_hist), v, count);
    }

    fn count_errors(&mut self, errors: u64) {
        self.errors += errors;
        self.interval_errors += errors;
    }

    fn absorb(&mut self, o: &SeriesState) {
        hist::merge(&mut self.cumulative, &o.cumulative);
        self.errors += o.errors;
        if let Some(oi) = &o.interval {
            hist::merge(self.interval.get_or_insert_with(hist::new_hist), oi);
        }
        self.interval_errors += o.interval_errors;
    }
}

#[derive(Clone, Debug)]
struct ProcState {
    comm: String,
    last_seen_ns: u64,
    ledger: PinLedger,
    faults: FaultMap,
    series: Vec<SeriesState>,
}

impl ProcState {
    fn new(comm: &str, ts_ns: u64, cfg: &ModelConfig) -> ProcState {
        ProcState {
            comm: comm.to_string(),
            last_seen_ns: ts_ns,
            ledger: PinLedger::new(cfg.page_size, cfg.max_grants),
            faults: FaultMap::new(cfg.max_fault_blocks),
            series: Vec::new(),
        }
    }

    /// Samples in its series so far (requests count three times: op,
    /// faulted or clean; good enough to rank processes by activity).
    fn calls(&self) -> u64 {
        self.series.iter().map(|s| s.cumulative.len()).sum()
    }

    fn series(&mut self, kind: Kind, device: &str) -> &mut SeriesState {
        let i = match self
            .series
            .iter()
            .position(|s| s.kind == kind && s.device == device)
        {
            Some(i) => i,
            None => {
                self.series.push(SeriesState::new(kind, device));
                self.series.len() - 1
            }
        };
        &mut self.series[i]
    }
}

/// Pin ledger and fault totals folded into `[other]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FoldedTotals {
    ledger: LedgerSummary,
    faults: u64,
    faults_in_pinned: u64,
    processes: u64,
}

/// One series in a [`Snapshot`].
#[derive(Clone, Debug)]
pub struct SeriesSnapshot {
    pub key: SeriesKey,
    /// Samples since the start.
    pub count: u64,
    /// Failed calls / faults answered with an error, since the start.
    pub errors: u64,
    /// Samples in the current interval.
    pub interval_count: u64,
    /// `interval_count` per second of the current interval so far.
    pub rate_per_s: f64,
    /// Statistics of all samples since the start.
    pub summary: Summary,
    /// All samples since the start.
    pub hist: Hist,
}

/// One process in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessSnapshot {
    pub proc_id: ProcId,
    pub comm: String,
    pub last_seen_ns: u64,
    pub ledger: LedgerSummary,
    /// Pinned ranges now, `[start, end)`, coalesced.
    pub pinned_ranges: Vec<(u64, u64)>,
    pub faults: u64,
    /// Faults on an address that was pinned at the time (should be 0).
    pub faults_in_pinned: u64,
    /// Faulting regions, by address.
    pub fault_regions: Vec<FaultRegion>,
    /// Of `faults`: counted in the kernel without an address (summary
    /// mode), in no region; the regions then hold the sampled faults.
    pub faults_unplaced: u64,
    /// Block size the regions are counted in.
    pub fault_block_bytes: u64,
    /// For `[other]`: how many processes were folded into it.
    pub folded_processes: u64,
}

/// The state of the aggregator at one moment; owns its data.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Start of the first interval.
    pub start_ns: u64,
    /// The time the snapshot describes (argument of [`Aggregator::snapshot`]).
    pub now_ns: u64,
    /// Start of the current interval.
    pub interval_start_ns: u64,
    /// Events ingested.
    pub events: u64,
    /// Series sorted by key.
    pub series: Vec<SeriesSnapshot>,
    /// Processes sorted by id (`[unattrib:PASID]` and `[other]` last, when present).
    pub processes: Vec<ProcessSnapshot>,
    /// Everything lost, by reason (latest cumulative sample plus what the
    /// consumer counted, [`Aggregator::count_loss`]).
    pub losses: Ledger,
}

/// One series of one interval.
#[derive(Clone, Debug)]
pub struct WindowSeries {
    pub key: SeriesKey,
    pub hist: Hist,
    pub errors: u64,
}

/// Everything that happened in one interval `[start_ns, end_ns)`.
#[derive(Clone, Debug)]
pub struct IntervalWindow {
    pub start_ns: u64,
    pub end_ns: u64,
    /// Series with samples in the interval, sorted by key.
    pub series: Vec<WindowSeries>,
    /// Lost in the interval, by reason.
    pub losses: Ledger,
    /// Lost since the start, by reason, at the end of the interval.
    pub losses_total: Ledger,
}

/// The aggregator. See the module docs.
#[derive(Clone, Debug)]
pub struct Aggregator {
    cfg: ModelConfig,
    procs: HashMap<u32, ProcState, BuildIntHasher>,
    unattributed: BTreeMap<u32, ProcState>,
    other: ProcState,
    folded: FoldedTotals,
    start_ns: Option<u64>,
    interval_start_ns: Option<u64>,
    latest_ns: u64,
    events: u64,
    /// Per reason, the largest cumulative loss sample.
    sampled_losses: Ledger,
    /// Losses the consumer counted itself ([`Aggregator::count_loss`]).
    local_losses: Ledger,
    losses_at_interval_start: Ledger,
}

impl Aggregator {
    /// An empty aggregator.
    pub fn new(cfg: ModelConfig) -> Aggregator {
        Aggregator {
            unattributed: BTreeMap::new(),
            other: ProcState::new(OTHER_COMM, 0, &cfg),
            procs: HashMap::default(),
            folded: FoldedTotals::default(),
            start_ns: cfg.start_ns,
            interval_start_ns: cfg.start_ns,
            latest_ns: cfg.start_ns.unwrap_or(0),
            events: 0,
            sampled_losses: Ledger::new(),
            local_losses: Ledger::new(),
            losses_at_interval_start: Ledger::new(),
            cfg,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Number of processes held (without the two buckets).
    pub fn process_count(&self) -> usize {
        self.procs.len()
    }

    /// Everything lost so far, by reason: the source's latest cumulative
    /// sample plus the losses counted with [`Aggregator::count_loss`].
    pub fn losses(&self) -> Ledger {
        let mut l = self.sampled_losses.clone();
        l.merge(&self.local_losses);
        l
    }

    /// Count `n` losses of `reason` that the consumer itself found (not in
    /// the source's samples), e.g. `record -- COMMAND`'s events it could
    /// not place in the process tree ([`LossReason::ProcUnplaceable`]).
    /// Shown in every snapshot and interval from now on.
    pub fn count_loss(&mut self, reason: LossReason, n: u64) {
        self.local_losses.add(reason, n);
    }

    /// Timestamp of the newest event (or the configured start).
    pub fn latest_ns(&self) -> u64 {
        self.latest_ns
    }

    /// Ingest a batch of events in arrival order.
    pub fn ingest_all<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        for e in events {
            self.ingest(e);
        }
    }

    /// Ingest one event.
    pub fn ingest(&mut self, ev: &Event) {
        let ts = ev.ts_ns();
        self.events += ev.weight().max(1);
        if self.start_ns.is_none() {
            self.start_ns = Some(ts);
        }
        if self.interval_start_ns.is_none() {
            self.interval_start_ns = Some(ts);
        }
        self.latest_ns = self.latest_ns.max(ts);
        match ev {
            Event::Pin(p) => self.ingest_pin(p),
            Event::Iopf(f) => self.ingest_iopf(f),
            Event::PinIoctl(i) => self.ingest_ioctl(i),
            // Binds matter to attribution, which the source already did.
            Event::Pasid(_) => {}
            // Queue life cycle: shown by `trace`, not aggregated (yet).
            Event::Queue(_) => {}
            // The process tree only decides which events are recorded.
            Event::Proc(_) => {}
            Event::Request(r) => self.ingest_request(r),
            Event::Loss(l) => self.sampled_losses.max(&l.losses),
            Event::Summary(e) => self.ingest_summary(e),
        }
    }

    fn ingest_summary(&mut self, e: &SummaryEvent) {
        if e.kind == SummaryKind::Iopf {
            return self.ingest_iopf_summary(e);
        }
        let st = self.proc_mut(e.tgid, &e.comm, e.ts_ns);
        let ok = e.calls.saturating_sub(e.errors);
        let kind = match e.kind {
            SummaryKind::Pin => {
                st.ledger
                    .pin_counted(ok, e.errors, e.pages, e.longterm_pages);
                Kind::Pin
            }
            SummaryKind::Unpin => {
                st.ledger.unpin_counted(e.calls, e.pages);
                Kind::Unpin
            }
            SummaryKind::Ioctl(cmd) => {
                let pin = matches!(cmd, PinIoctl::UaccePin | PinIoctl::MemPin);
                st.ledger.ioctls_counted(pin, ok, e.errors);
                st.ledger.ioctl_pages(pin, e.pages);
                Kind::UacceCtrl
            }
            SummaryKind::Iopf => Kind::Iopf,
        };
        let series = st.series(kind, "");
        for &(bucket, count) in &e.buckets {
            series.record_bucket(bucket, count);
        }
        series.count_errors(e.errors);
    }

    /// Summary mode's IO page faults: counted per process (tgid 0:
    /// unattributed, per PASID) and device, without addresses, so in no
    /// fault region and never in a pinned range.
    fn ingest_iopf_summary(&mut self, e: &SummaryEvent) {
        let st = if e.tgid != 0 {
            let st = self.proc_mut(e.tgid, &e.comm, e.ts_ns);
            st.faults.count_unplaced(e.calls);
            st
        } else {
            let cfg = &self.cfg;
            let st = self
                .unattributed
                .entry(e.pasid)
                .or_insert_with(|| ProcState::new(&unattributed_comm(e.pasid), e.ts_ns, cfg));
            st.last_seen_ns = st.last_seen_ns.max(e.ts_ns);
            st
        };
        let series = st.series(Kind::Iopf, &e.device);
        for &(bucket, count) in &e.buckets {
            series.record_bucket(bucket, count);
        }
        series.count_errors(e.errors);
    }

    fn proc_mut(&mut self, pid: u32, comm: &str, ts: u64) -> &mut ProcState {
        if !self.procs.contains_key(&pid) {
            if self.procs.len() >= self.cfg.max_processes.max(1) {
                // Least recently seen first; among processes last seen at
                // the same time (every process of one summary-mode reading
                // is), the one with the fewest calls.
                let victim = self
                    .procs
                    .iter()
                    .min_by_key(|(&p, s)| (s.last_seen_ns, s.calls(), p))
                    .map(|(&p, _)| p);
                if let Some(v) = victim {
                    self.fold(v);
                }
            }
            self.procs.insert(pid, ProcState::new(comm, ts, &self.cfg));
        }
        let cfg = self.cfg;
        let st = self
            .procs
            .entry(pid)
            .or_insert_with(|| ProcState::new(comm, ts, &cfg));
        st.last_seen_ns = st.last_seen_ns.max(ts);
        st
    }

    fn ingest_pin(&mut self, p: &PinEvent) {
        let st = self.proc_mut(p.tgid, &p.comm, p.ts_ns);
        if p.is_pin() {
            st.ledger.pin(p.start, p.ret, p.longterm);
            st.series(Kind::Pin, "").record(p.latency_ns, p.ret < 0);
        } else {
            st.ledger.unpin(p.pages());
            st.series(Kind::Unpin, "").record(p.latency_ns, false);
        }
    }

    fn ingest_iopf(&mut self, f: &IopfEvent) {
        let error = f.response != 0;
        match f.tgid {
            Some(pid) => {
                let st = self.proc_mut(pid, &f.comm, f.ts_ns);
                let pinned = st.ledger.is_pinned(f.addr);
                st.faults.record(f.addr, pinned);
                st.series(Kind::Iopf, &f.device).record(f.latency_ns, error);
            }
            None => {
                // Addresses of unknown owners mean nothing together: count only.
                let cfg = &self.cfg;
                let st = self
                    .unattributed
                    .entry(f.pasid)
                    .or_insert_with(|| ProcState::new(&unattributed_comm(f.pasid), f.ts_ns, cfg));
                st.last_seen_ns = st.last_seen_ns.max(f.ts_ns);
                st.series(Kind::Iopf, &f.device).record(f.latency_ns, error);
            }
        }
    }

    fn ingest_ioctl(&mut self, i: &PinIoctlEvent) {
        let st = self.proc_mut(i.tgid, &i.comm, i.ts_ns);
        let ok = i.ret == 0;
        st.ledger.ioctl_pages(
            matches!(i.cmd, PinIoctl::UaccePin | PinIoctl::MemPin),
            i.pages,
        );
        match i.cmd {
            PinIoctl::UaccePin | PinIoctl::MemPin => st.ledger.pin_ioctl(i.addr, i.size, ok),
            PinIoctl::UacceUnpin | PinIoctl::MemUnpin => st.ledger.unpin_ioctl(i.addr, i.size, ok),
        }
        st.series(Kind::UacceCtrl, "").record(i.latency_ns, !ok);
    }

    fn ingest_request(&mut self, r: &RequestEvent) {
        let st = self.proc_mut(r.tgid, &r.comm, r.ts_ns);
        st.series(Kind::Op, &r.op).record(r.latency_ns, false);
        let split = if r.faults > 0 {
            Kind::OpFaulted
        } else {
            Kind::OpClean
        };
        st.series(split, &r.op).record(r.latency_ns, false);
    }

    /// Fold process `pid` into `[other]`.
    fn fold(&mut self, pid: u32) {
        let Some(st) = self.procs.remove(&pid) else {
            return;
        };
        for s in &st.series {
            self.other.series(s.kind, &s.device).absorb(s);
        }
        self.other.last_seen_ns = self.other.last_seen_ns.max(st.last_seen_ns);
        self.folded.ledger.absorb(&st.ledger.summary());
        self.folded.faults += st.faults.total();
        self.folded.faults_in_pinned += st.faults.in_pinned();
        self.folded.processes += 1;
    }

    fn key(kind: Kind, proc_id: ProcId, comm: &str, device: &str) -> SeriesKey {
        SeriesKey {
            kind,
            proc_id,
            comm: comm.to_string(),
            device: device.to_string(),
        }
    }

    fn all_procs(&self) -> impl Iterator<Item = (ProcId, &ProcState)> {
        let mut pids: Vec<u32> = self.procs.keys().copied().collect();
        pids.sort_unstable();
        pids.into_iter()
            .filter_map(|p| self.procs.get(&p).map(|s| (ProcId::Pid(p), s)))
            .chain(
                self.unattributed
                    .iter()
                    .map(|(&pasid, st)| (ProcId::Unattributed(pasid), st)),
            )
            .chain([(ProcId::Other, &self.other)])
    }

    /// Close the current interval at `end_ns` and return what it held;
    /// the next interval starts at `end_ns`. Idle processes are folded into
    /// `[other]` afterwards (see the module docs).
    pub fn take_interval(&mut self, end_ns: u64) -> IntervalWindow {
        let start_ns = self.interval_start_ns.unwrap_or(end_ns);
        let end_ns = end_ns.max(start_ns);
        let mut series = Vec::new();
        let mut take = |proc_id: ProcId, st: &mut ProcState| {
            for s in &mut st.series {
                let hist = s.interval.take();
                let errors = std::mem::take(&mut s.interval_errors);
                if let Some(hist) = hist.filter(|h| !h.is_empty()) {
                    series.push(WindowSeries {
                        key: Self::key(s.kind, proc_id, &st.comm, &s.device),
                        hist,
                        errors,
                    });
                }
            }
        };
        for (&pid, st) in self.procs.iter_mut() {
            take(ProcId::Pid(pid), st);
        }
        for (&pasid, st) in self.unattributed.iter_mut() {
            take(ProcId::Unattributed(pasid), st);
        }
        take(ProcId::Other, &mut self.other);
        series.sort_by(|a, b| a.key.cmp(&b.key));
        let window = IntervalWindow {
            start_ns,
            end_ns,
            series,
            losses: self.losses().since(&self.losses_at_interval_start),
            losses_total: self.losses(),
        };
        self.losses_at_interval_start = self.losses();
        self.interval_start_ns = Some(end_ns);
        if self.start_ns.is_none() {
            self.start_ns = Some(start_ns);
        }
        self.latest_ns = self.latest_ns.max(end_ns);
        let idle: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, s)| {
                s.ledger.summary().pinned_pages == 0
                    && end_ns.saturating_sub(s.last_seen_ns) >= self.cfg.idle_after_ns
            })
            .map(|(&p, _)| p)
            .collect();
        for p in idle {
            self.fold(p);
        }
        window
    }

    /// The state at `now_ns` (used for rates; pass the newest known time).
    pub fn snapshot(&self, now_ns: u64) -> Snapshot {
        let interval_start = self.interval_start_ns.unwrap_or(now_ns);
        let elapsed_s = now_ns.saturating_sub(interval_start) as f64 / 1e9;
        let mut series = Vec::new();
        let mut processes = Vec::new();
        for (proc_id, st) in self.all_procs() {
            for s in &st.series {
                let interval_count = s.interval.as_ref().map_or(0, |h| h.len());
                series.push(SeriesSnapshot {
                    key: Self::key(s.kind, proc_id, &st.comm, &s.device),
                    count: s.cumulative.len(),
                    errors: s.errors,
                    interval_count,
                    rate_per_s: if elapsed_s > 0.0 {
                        interval_count as f64 / elapsed_s
                    } else {
                        0.0
                    },
                    summary: Summary::of(&s.cumulative),
                    hist: s.cumulative.clone(),
                });
            }
            let p = match proc_id {
                ProcId::Pid(_) => ProcessSnapshot {
                    proc_id,
                    comm: st.comm.clone(),
                    last_seen_ns: st.last_seen_ns,
                    ledger: st.ledger.summary(),
                    pinned_ranges: st.ledger.ranges_now().iter().collect(),
                    faults: st.faults.total(),
                    faults_in_pinned: st.faults.in_pinned(),
                    fault_regions: st.faults.regions(),
                    faults_unplaced: st.faults.unplaced(),
                    fault_block_bytes: st.faults.block_bytes(),
                    folded_processes: 0,
                },
                ProcId::Unattributed(_) => {
                    if st.series.is_empty() {
                        continue;
                    }
                    ProcessSnapshot {
                        proc_id,
                        comm: st.comm.clone(),
                        last_seen_ns: st.last_seen_ns,
                        ledger: LedgerSummary::default(),
                        pinned_ranges: Vec::new(),
                        faults: st.series.iter().map(|s| s.cumulative.len()).sum(),
                        faults_in_pinned: 0,
                        fault_regions: Vec::new(),
                        faults_unplaced: 0,
                        fault_block_bytes: 0,
                        folded_processes: 0,
                    }
                }
                ProcId::Other => {
                    if self.folded.processes == 0 {
                        continue;
                    }
                    ProcessSnapshot {
                        proc_id,
                        comm: st.comm.clone(),
                        last_seen_ns: st.last_seen_ns,
                        ledger: self.folded.ledger,
                        pinned_ranges: Vec::new(),
                        faults: self.folded.faults,
                        faults_in_pinned: self.folded.faults_in_pinned,
                        fault_regions: Vec::new(),
                        faults_unplaced: 0,
                        fault_block_bytes: 0,
                        folded_processes: self.folded.processes,
                    }
                }
            };
            processes.push(p);
        }
        series.sort_by(|a, b| a.key.cmp(&b.key));
        Snapshot {
            start_ns: self.start_ns.unwrap_or(now_ns),
            now_ns,
            interval_start_ns: interval_start,
            events: self.events,
            series,
            processes,
            losses: self.losses(),
        }
    }
}

#[cfg(test)]
mod tests;
