//! The live tracer: plans hooks on the running kernel (`kernel::inspect`
//! over `kernel::facts::LiveFacts`), attaches them (`kernel::attach`),
//! seeds attribution with the start-up PASID scan (`ingest::scan`), and
//! turns the ring buffer's records (`kernel::ring`) into domain events that
//! go out on a bounded channel, with the loss ledger.

use aya::{
    maps::{MapData, PerCpuArray},
    Ebpf,
};
use tokio::sync::mpsc;

use crate::{
    ingest::attribution::Attributor,
    ingest::decode::{DecodeContext, Decoder},
    ingest::event::{Event, LossSample, SummaryKind},
    ingest::losses::{self, Ledger, LossReason},
    ingest::requests::RequestJoin,
    kernel::{
        attach::{self, OBJECT},
        facts::LiveFacts,
        ops::OpPlan,
        plan::{EventKind, HookPreference, Plan},
        ring::{self, monotonic_ns, Ended, Ring, RingLoop},
        system,
    },
};
use crate::{
    ingest::scan::{scan_pasids, PasidScan},
    ingest::summary::SummaryDiff,
    kernel::{attach::SourceError, inspect::Inspection, summary::SummaryMap},
};

/// Inspect the running kernel and plan hooks (see [`crate::kernel::inspect`]).
pub fn inspect(pref: HookPreference) -> Inspection {
    crate::kernel::inspect::inspect(&LiveFacts::new(), pref)
}

/// Loaded and attached programs plus the ring buffer.
pub struct Tracer {
    /// Owns the programs and their links: dropping it detaches everything.
    _ebpf: Ebpf,
    ring: Ring,
    counters: PerCpuArray<MapData, u64>,
    /// Summary mode: the kernel's map and the last reading of it.
    summary: Option<(SummaryMap, SummaryDiff)>,
    /// Summary-map keys of kinds this version does not know.
    summary_unknown: u64,
    /// Summary-map read errors.
    summary_read_errors: u64,
    /// Summary mode: calls counted under a pid handed out again.
    summary_pid_reused: u64,
    /// Decodes records and pairs IO page fault reports with responses.
    decoder: Decoder,
    attributor: Attributor,
    /// Annotates each request with the IO page faults inside it.
    requests: RequestJoin,
    /// Requests in flight at stop on threads that no longer exist
    /// ([`LossReason::RequestThreadExited`]).
    request_thread_exited: u64,
    undecodable: u64,
    /// Pin ioctls with no pin call credited ([`losses::pin_not_credited`]).
    pin_not_credited: u64,
    plan: Plan,
    hooks_attached: usize,
    scan: PasidScan,
    /// The programs' diagnostics, passed on once a second (`-v`).
    bpf_log: Option<attach::BpfLogger>,
}

/// Options for [`Tracer::start`].
#[derive(Clone, Copy, Debug)]
pub struct TracerOptions {
    pub hooks: HookPreference,
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Summary mode: pins, unpins, pin ioctls and IO page faults (paired
    /// in the kernel) are counted in the kernel and read once per tick as
    /// [`Event::Summary`] (`uacce_trace_common::summary`); sampled fault
    /// groups and what the kernel's tables cannot hold stay per-event.
    pub summary: bool,
    /// User-space functions timed as requests (`--op`, resolved by
    /// `kernel::ops::resolve`; leaked once per run by the command line so
    /// that the options stay `Copy`).
    pub ops: Option<&'static OpPlan>,
    /// `trace --vendor-report` (hidden, for tests): leave the core IOPF
    /// report functions unhooked so that a vendor row reports
    /// ([`Plan::set_aside_core_reports`]).
    pub vendor_report: bool,
}

impl Default for TracerOptions {
    fn default() -> Self {
        TracerOptions {
            hooks: HookPreference::Auto,
            ring_bytes: 4 << 20,
            summary: false,
            ops: None,
            vendor_report: false,
        }
    }
}

/// Most events [`Tracer::run`] sends in one batch.
pub const MAX_BATCH: usize = 4096;

/// How long a reported IOPF group may wait for its response before it is
/// counted as unanswered and dropped from the pairing table.
pub const IOPF_TIMEOUT_NS: u64 = uacce_trace_common::summary::IOPF_TIMEOUT_NS;

impl Tracer {
    /// Check privileges, plan, load and attach. Fails when the core events
    /// cannot be traced.
    pub fn start(opts: TracerOptions) -> Result<(Tracer, Inspection), SourceError> {
        Self::start_with(opts, false)
    }

    /// [`Tracer::start`], and with `follow_processes` the process-tree
    /// programs too (`record -- COMMAND`; see [`Tracer::follow_children_of`]).
    pub fn start_with(
        opts: TracerOptions,
        follow_processes: bool,
    ) -> Result<(Tracer, Inspection), SourceError> {
        system::check_privileges().map_err(SourceError::Privileges)?;
        if OBJECT.is_empty() {
            return Err(SourceError::StubObject);
        }
        // The kernel's BTF is read once, for planning and for attaching.
        let facts = LiveFacts::new();
        let mut inspection = crate::kernel::inspect::inspect(&facts, opts.hooks);
        if opts.vendor_report {
            inspection.plan.set_aside_core_reports();
        }
        if let Err(why) = &inspection.ring_buffer {
            return Err(SourceError::NothingToTrace(why.clone()));
        }
        let mut attached = attach::attach_plan(
            &mut inspection,
            facts.aya_btf(),
            opts.ring_bytes,
            follow_processes,
            opts.summary,
        )?;
        let mut decoder = Decoder::new(DecodeContext {
            foll_longterm: inspection.foll_longterm.value,
        });
        if let Some(ops) = opts.ops.filter(|o| !o.is_empty()) {
            crate::kernel::ops::attach(&mut attached.ebpf, ops).map_err(|e| {
                SourceError::NothingToTrace(format!("cannot attach the --op probes: {e}"))
            })?;
            attach::mark_attach_done(&mut attached.ebpf)?;
            decoder.ops = ops.names.clone();
        }
        // After attaching, so a bind from now on is seen by its hook and
        // one before is found here: seeds the owner table before the first
        // event is read.
        let scan = scan_pasids(&inspection.config);
        let mut attributor = Attributor::new();
        if let Ok(found) = &scan.result {
            attributor.seed(&found.owners);
        }
        let plan = inspection.plan.clone();
        Ok((
            Tracer {
                _ebpf: attached.ebpf,
                ring: Ring::new(attached.ring)?,
                counters: attached.counters,
                summary: attached.summary.map(|map| (map, SummaryDiff::new())),
                summary_unknown: 0,
                summary_read_errors: 0,
                summary_pid_reused: 0,
                decoder,
                attributor,
                requests: RequestJoin::default(),
                request_thread_exited: 0,
                undecodable: 0,
                pin_not_credited: 0,
                plan,
                hooks_attached: attached.hooks,
                scan,
                bpf_log: attached.logger,
            },
            inspection,
        ))
    }

    /// The plan after attaching (attach failures recorded).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Whether the process-tree programs are attached, or why not.
    pub fn follows_processes(&self) -> Result<(), String> {
        let rows: Vec<_> = self
            .plan
            .hooks
            .iter()
            .filter(|h| h.kind == EventKind::Process)
            .collect();
        if !rows.is_empty() && rows.iter().all(|h| h.chosen.is_some()) {
            return Ok(());
        }
        let why: Vec<String> = rows
            .iter()
            .filter(|h| h.chosen.is_none())
            .map(|h| {
                let reasons: Vec<&str> = h.rejected.iter().map(|r| r.reason.as_str()).collect();
                format!("{}: {}", h.function, reasons.join("; "))
            })
            .collect();
        Err(if why.is_empty() {
            "no process-tree hook in the plan".into()
        } else {
            why.join(", ")
        })
    }

    /// Follow the children of process `tgid` from now on (the tracer's
    /// own pid, before it starts the command): each becomes a followed
    /// process, and so do its descendants, reported as
    /// [`Event::Proc`](crate::ingest::event::Event::Proc) in ring order.
    pub fn follow_children_of(&mut self, tgid: u32) -> Result<(), SourceError> {
        self.set_follow(tgid, uacce_trace_common::FOLLOW_CHILDREN)
    }

    fn set_follow(&mut self, tgid: u32, value: u32) -> Result<(), SourceError> {
        let map_err = |source| SourceError::Map {
            name: "FOLLOW",
            source,
        };
        let mut follow: aya::maps::HashMap<_, u32, u32> = aya::maps::HashMap::try_from(
            self._ebpf
                .map_mut("FOLLOW")
                .ok_or(SourceError::Missing("map FOLLOW"))?,
        )
        .map_err(map_err)?;
        follow.insert(tgid, value, 0).map_err(map_err)
    }

    /// Number of functions hooked.
    pub fn hooks_attached(&self) -> usize {
        self.hooks_attached
    }

    /// Kernel ids and names of the programs loaded now, so that `top`'s
    /// cost reading sums the BPF statistics of exactly these programs.
    pub fn loaded_programs(&self) -> Vec<(u32, String)> {
        self._ebpf
            .programs()
            .filter_map(|(name, p)| p.info().ok().map(|i| (i.id(), name.to_string())))
            .collect()
    }

    /// Runs the kernel skipped, summed over the tool's programs (see
    /// [`system::prog_recursion_misses`]).
    fn recursion_misses(&self) -> u64 {
        use std::os::fd::AsFd;
        self._ebpf
            .programs()
            .filter_map(|(_, p)| p.fd().ok())
            .filter_map(|fd| system::prog_recursion_misses(fd.as_fd()))
            .fold(0, u64::wrapping_add)
    }

    /// The start-up PASID scan that seeded attribution.
    pub fn pasid_scan(&self) -> &PasidScan {
        &self.scan
    }

    /// Decode what is in the ring buffer into `out`, at most
    /// [`MAX_BATCH`] records; true when it stopped at that limit.
    fn drain(&mut self, out: &mut Vec<Event>) -> bool {
        while out.len() < MAX_BATCH {
            let Some(item) = self.ring.next_record() else {
                return false;
            };
            match self.decoder.decode(&item) {
                Ok(Some(mut ev)) => {
                    if let Event::PinIoctl(i) = &ev {
                        self.pin_not_credited += u64::from(losses::pin_not_credited(i));
                    }
                    self.attributor.process(&mut ev);
                    self.requests.process(&mut ev);
                    out.push(ev);
                }
                Ok(None) => {}
                Err(err) => {
                    self.undecodable += 1;
                    log::warn!("undecodable record: {err}");
                }
            }
        }
        true
    }

    /// Send everything in the ring buffer to `tx` in batches of at most
    /// [`MAX_BATCH`] events, yielding between them so that a consumer on
    /// the same thread runs in between: memory stays bounded and the ring
    /// keeps being emptied while a burst is aggregated. False when the
    /// consumer went away.
    async fn forward(&mut self, tx: &mpsc::Sender<Vec<Event>>) -> bool {
        loop {
            let mut batch = Vec::new();
            let more = self.drain(&mut batch);
            if !batch.is_empty() && tx.send(batch).await.is_err() {
                return false;
            }
            if !more {
                return true;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Everything lost so far, by reason: the kernel counters summed over
    /// CPUs and the user side's counts.
    pub fn counters(&self) -> Ledger {
        let get = |i: u32| -> u64 {
            self.counters
                .get(&i, 0)
                .map(|v| v.iter().copied().fold(0u64, u64::wrapping_add))
                .unwrap_or(0)
        };
        let mut l = Ledger::from_kernel_counters(get);
        // IO page faults are paired here, so their counts are too.
        let pairing = self.decoder.pairing.counts();
        l.add(LossReason::IopfPendingFull, pairing.pending_full);
        l.add(
            LossReason::IopfResponseWithoutReport,
            pairing.response_without_report,
        );
        l.add(
            LossReason::IopfUnanswered,
            pairing.unanswered - pairing.superseded,
        );
        l.add(LossReason::IopfSuperseded, pairing.superseded);
        l.add(
            LossReason::IopfUnattributed,
            self.attributor.counts().unattributed,
        );
        l.add(LossReason::ProgRecursionMiss, self.recursion_misses());
        l.add(LossReason::Undecodable, self.undecodable);
        l.add(LossReason::PinNotCredited, self.pin_not_credited);
        l.add(LossReason::Undecodable, self.summary_unknown);
        l.add(LossReason::SummaryReadError, self.summary_read_errors);
        l.add(
            LossReason::IopfOwnerChanged,
            self.attributor.owner_changed(),
        );
        l.add(LossReason::SummaryPidReused, self.summary_pid_reused);
        l.add(LossReason::RequestThreadExited, self.request_thread_exited);
        if let Ok(found) = &self.scan.result {
            l.add(LossReason::ScanLost, u64::from(found.lost));
        }
        l
    }

    /// Summary mode: what the kernel counted since the last reading, as
    /// events (nothing in per-event mode). Keys of processes gone at two
    /// readings in a row are removed from the map after their last counts.
    fn read_summary(&mut self, now_ns: u64) -> Vec<Event> {
        let Some((map, diff)) = &mut self.summary else {
            return Vec::new();
        };
        let (values, error) = map.read();
        if let Some(e) = error {
            self.summary_read_errors += 1;
            log::warn!("reading the summary map: {e}");
        }
        let reading = diff.update(now_ns, values, system::process_start_ticks);
        for key in &reading.remove {
            map.remove(key);
        }
        self.summary_unknown += reading.unknown;
        self.summary_pid_reused += reading.pid_reused;
        let mut events: Vec<Event> = Vec::with_capacity(reading.events.len());
        for mut e in reading.events {
            if e.kind == SummaryKind::Iopf {
                // The reporter, as the kernel keyed it, becomes the owner.
                match self
                    .attributor
                    .attribute_counted(e.pasid, e.tgid, &e.comm, e.calls)
                {
                    Some((tgid, comm)) => (e.tgid, e.comm) = (tgid, comm),
                    None => (e.tgid, e.comm) = (0, String::new()),
                }
            }
            events.push(Event::Summary(e));
        }
        self.attributor.reading_done();
        events
    }

    /// Send this tick's summary reading to `tx`, after what the ring holds
    /// (the binds that attribute the reading's faults); false when the
    /// consumer went away.
    async fn forward_summary(&mut self, now_ns: u64, tx: &mpsc::Sender<Vec<Event>>) -> bool {
        if self.summary.is_none() {
            return true;
        }
        if !self.forward(tx).await {
            return false;
        }
        let events = self.read_summary(now_ns);
        events.is_empty() || tx.send(events).await.is_ok()
    }

    /// Summary mode: the kernel's IO page fault groups still waiting at
    /// stop, (within the timeout, older); (0, 0) in per-event mode.
    fn iopf_waiting_in_kernel(&self, now_ns: u64) -> (u64, u64) {
        self.summary
            .as_ref()
            .map_or((0, 0), |(map, _)| map.iopf_waiting(now_ns, IOPF_TIMEOUT_NS))
    }

    /// Requests (`--op`) still in flight whose thread is gone: the thread
    /// exited inside the call, whose return will never come. The others
    /// are simply still running (not a loss).
    fn requests_of_exited_threads(&self) -> u64 {
        let Some(map) = self._ebpf.map("REQ_INFLIGHT") else {
            return 0;
        };
        let Ok(inflight) = aya::maps::HashMap::<
            _,
            uacce_trace_common::RequestKey,
            uacce_trace_common::RequestInflight,
        >::try_from(map) else {
            return 0;
        };
        inflight
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !system::process_exists(k.tid))
            .count() as u64
    }

    /// Remove IOPF groups older than `timeout_ns` from the pairing table,
    /// counting them as unanswered; returns how many remain.
    fn sweep(&mut self, now_ns: u64, timeout_ns: u64) -> u64 {
        self.decoder.pairing.sweep(now_ns, timeout_ns)
    }

    /// Pass the programs' diagnostics on to the log.
    fn flush_bpf_log(&mut self) {
        if let Some(l) = &mut self.bpf_log {
            l.flush();
        }
    }

    fn loss_sample(ts_ns: u64, losses: Ledger) -> Event {
        Event::Loss(LossSample { ts_ns, losses })
    }

    /// Read events and send them in batches until `stop` resolves; then
    /// drain what is left, so nothing recorded before the stop is lost.
    /// Returns the final losses (IOPF groups still waiting counted as
    /// `iopf_pending_at_exit`), which the last loss sample carries too.
    pub async fn run(
        mut self,
        tx: mpsc::Sender<Vec<Event>>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Ledger, SourceError> {
        let mut running = Running {
            tracer: &mut self,
            tx: &tx,
            last_loss: Ledger::new(),
        };
        if ring::run(&mut running, stop).await? == Ended::ConsumerGone {
            return Ok(self.counters());
        }
        self.forward(&tx).await;
        self.flush_bpf_log();
        self.request_thread_exited = self.requests_of_exited_threads();
        let now = monotonic_ns();
        // The summary's last counts, after the ring's last records.
        self.forward_summary(now, &tx).await;
        let remaining = self.sweep(now, IOPF_TIMEOUT_NS);
        let (waiting, unanswered) = self.iopf_waiting_in_kernel(now);
        let mut losses = self.counters();
        losses.add(LossReason::IopfPendingAtExit, remaining + waiting);
        losses.add(LossReason::IopfUnanswered, unanswered);
        // Always, even when nothing was lost: the final state.
        let _ = tx.send(vec![Self::loss_sample(now, losses.clone())]).await;
        log::debug!("ring fd {} drained", self.ring.raw_fd());
        Ok(losses)
    }
}

/// [`ring::run`] for a running tracer: its records go to `tx`, and once a
/// second the pairing table is swept and a loss sample sent if anything
/// changed.
struct Running<'a> {
    tracer: &'a mut Tracer,
    tx: &'a mpsc::Sender<Vec<Event>>,
    last_loss: Ledger,
}

impl RingLoop for Running<'_> {
    fn ring(&mut self) -> &mut Ring {
        &mut self.tracer.ring
    }

    async fn forward(&mut self) -> bool {
        self.tracer.forward(self.tx).await
    }

    async fn tick(&mut self) -> bool {
        self.tracer.flush_bpf_log();
        let now = monotonic_ns();
        self.tracer.sweep(now, IOPF_TIMEOUT_NS);
        if !self.tracer.forward_summary(now, self.tx).await {
            return false;
        }
        // A loss sample only when something changed, so a quiet run stays
        // quiet.
        let c = self.tracer.counters();
        if c != self.last_loss {
            self.last_loss = c.clone();
            if self
                .tx
                .send(vec![Tracer::loss_sample(now, c)])
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }
}

#[cfg(feature = "bench")]
impl Tracer {
    /// A tracer whose only programs are the bench source's: every
    /// `getppid(2)` of process `tgid` becomes an IOPF record in the ring
    /// buffer, read and decoded by [`Tracer::run`] like real ones
    /// (`crate::commands::bench`).
    /// `batched_wakeup`: the programs wake the reader once per batch of
    /// records instead of whenever it has caught up (the kernel default).
    /// `burst`: records per call (1 to 16).
    pub fn start_bench(
        ring_bytes: u32,
        tgid: u32,
        batched_wakeup: bool,
        burst: u32,
    ) -> Result<Tracer, SourceError> {
        use aya::{maps::RingBuf, EbpfLoader};
        system::check_privileges().map_err(SourceError::Privileges)?;
        if OBJECT.is_empty() {
            return Err(SourceError::StubObject);
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", ring_bytes)
            .map_max_entries(attach::LOG_RING, 4096)
            .override_global(attach::LOG_LEVEL_GLOBAL, &0u8, false)
            .override_global("BENCH_TGID", &tgid, true)
            .override_global("BENCH_WAKEUP", &u32::from(batched_wakeup), true)
            .override_global("BENCH_BURST", &burst.clamp(1, 16), true)
            .load(OBJECT)
            .map_err(SourceError::Load)?;
        for program in uacce_trace_common::hooks::BENCH {
            attach::load_and_attach(&mut ebpf, program).map_err(SourceError::NothingToTrace)?;
        }
        let mut take = |name: &'static str| {
            ebpf.take_map(name)
                .ok_or(SourceError::Missing("a map of the object"))
        };
        let map_err = |name: &'static str| move |source| SourceError::Map { name, source };
        let ring = RingBuf::try_from(take("EVENTS")?).map_err(map_err("EVENTS"))?;
        let counters = PerCpuArray::try_from(take("COUNTERS")?).map_err(map_err("COUNTERS"))?;
        Ok(Tracer {
            _ebpf: ebpf,
            ring: Ring::new(ring)?,
            counters,
            summary: None,
            summary_unknown: 0,
            summary_read_errors: 0,
            summary_pid_reused: 0,
            decoder: Decoder::default(),
            attributor: Attributor::new(),
            requests: RequestJoin::default(),
            request_thread_exited: 0,
            undecodable: 0,
            pin_not_credited: 0,
            plan: Plan::default(),
            hooks_attached: uacce_trace_common::hooks::BENCH.len(),
            scan: PasidScan::skipped("not run by the bench source"),
            bpf_log: None,
        })
    }
}
