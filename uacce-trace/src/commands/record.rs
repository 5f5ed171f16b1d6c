//! `uacce-trace record`: trace (or replay) events into interval histograms
//! (hlog, json, csv) or a raw recording, optionally for one command and its
//! descendants only. This is a headless consumer like `trace`: it reads the
//! clock, handles signals and runs the command; the aggregation and the
//! formats live in `model`, `export` and `rawfile`.
//!
//! - Intervals end every `--interval` (live: on the monotonic clock; replay:
//!   on event time) and on SIGUSR1 (benchmark phase marks; a raw recording
//!   stores the mark).
//! - The output is written to a temporary file and renamed at the end; on
//!   SIGINT/SIGTERM the events already read are drained, the last interval
//!   closed and the file committed: never a truncated file.
//! - With `-- COMMAND`, the command starts after the hooks are attached;
//!   recording stops when it exits and `record` exits with its status
//!   (128 + signal when it was killed). SIGINT/SIGTERM are forwarded to it.
//!   When `--duration` ends first, the command gets SIGTERM and `record`
//!   exits 0 once it is gone.
//!
//! # Which events belong to the command
//!
//! An event belongs to the command when its process (tgid; an IOPF's PASID
//! owner) is the command or descends from it. The kernel reports the
//! command's process tree as it grows, in ring order with the events
//! (`sched_process_fork`/`sched_process_exit` programs, attached only
//! here, before the command starts), so every descendant is placed when it
//! is born, however short its life: see `crate::ingest::proctree`. Events that
//! cannot be decided (the kernel lost process-tree records) are left out
//! and counted as "unplaceable".

use std::{
    io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use thiserror::Error;

use crate::{
    formats::{AtomicFile, ExportError, Format, IntervalWriter},
    ingest::event::Event,
    ingest::live::TracerOptions,
    ingest::losses::LossReason,
    ingest::proctree::{event_tgid, ProcTree, Verdict},
    ingest::rawfile::{RawError, RawHeader, RawReader, RawWriter, Replay, ReplayItem},
    model::{Aggregator, ModelConfig},
};

/// Exit code for bad input or output files.
pub const EXIT_BAD_INPUT: u8 = 2;

/// Options of `record`, validated.
#[derive(Clone, Debug)]
pub struct RecordOptions {
    pub output: PathBuf,
    pub format: Format,
    pub interval_ns: u64,
    pub duration_ns: Option<u64>,
    /// Replay this raw recording (`-`: standard input) instead of tracing.
    pub replay: Option<String>,
    /// Replay at the recorded pace instead of as fast as possible.
    pub realtime: bool,
    pub tracer: TracerOptions,
    pub command: Vec<String>,
}

/// Why recording failed.
#[derive(Debug, Error)]
pub enum RecordError {
    /// The output could not be created or written.
    #[error("{path}: {source}")]
    Output {
        path: String,
        #[source]
        source: ExportError,
    },
    /// The replay input is unusable.
    #[error("{name}: {source}")]
    Input {
        name: String,
        #[source]
        source: RawError,
    },
}

/// Parse `1s`, `500ms`, `250us`, `2m`, `1h`, `1.5s` or plain seconds into ns.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    parse_with_units(s, 1e9).and_then(|ns| {
        if ns == 0 {
            Err(format!("`{s}`: the duration must be positive"))
        } else {
            Ok(ns)
        }
    })
}

/// Parse a latency: `800ns`, `250us`, `1.5ms`, `2s` or plain nanoseconds.
pub fn parse_latency(s: &str) -> Result<u64, String> {
    parse_with_units(s, 1.0)
}

fn parse_with_units(s: &str, bare_unit_ns: f64) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult = match unit.trim() {
        "" => bare_unit_ns,
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        u => return Err(format!("`{s}`: unknown unit `{u}` (ns, us, ms, s, m, h)")),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a number with a unit, like 1s or 250us"))?;
    let ns = v * mult;
    if !ns.is_finite() || ns < 0.0 || ns > u64::MAX as f64 {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(ns.round() as u64)
}

enum Sink {
    Intervals(IntervalWriter<AtomicFile>),
    Raw(RawWriter<AtomicFile>),
}

/// Everything between events and the output file. Synchronous: the async
/// live loop and the replay loop both drive it.
pub struct Recorder {
    agg: Aggregator,
    sink: Sink,
    path: String,
    filter: Option<ProcTree>,
    interval_ns: u64,
    /// End of the current interval (event-time driven recordings).
    next_end_ns: u64,
    /// Events written or aggregated (loss samples not counted).
    pub events: u64,
    /// Events left out by the command filter.
    pub filtered_out: u64,
    /// Intervals closed.
    pub intervals: u64,
}

impl Recorder {
    /// Create the output (a temporary file next to `path`) and write its header.
    pub fn create(
        path: &Path,
        format: Format,
        header: &RawHeader,
        interval_ns: u64,
        filter: Option<ProcTree>,
    ) -> Result<Self, RecordError> {
        let name = path.display().to_string();
        let out_err = |source: ExportError| RecordError::Output {
            path: name.clone(),
            source,
        };
        let file = AtomicFile::create(path).map_err(|e| out_err(e.into()))?;
        let sink = if format == Format::Raw {
            Sink::Raw(RawWriter::new(file, header).map_err(|e| out_err(e.into()))?)
        } else {
            match IntervalWriter::new(format, file, &header.run_meta()).map_err(out_err)? {
                Some(w) => Sink::Intervals(w),
                None => {
                    return Err(out_err(ExportError::Encode(
                        "not an interval format".into(),
                    )))
                }
            }
        };
        Ok(Recorder {
            agg: Aggregator::new(ModelConfig {
                start_ns: Some(header.start_mono_ns),
                ..Default::default()
            }),
            sink,
            path: name,
            filter,
            interval_ns: interval_ns.max(1),
            next_end_ns: header.start_mono_ns.saturating_add(interval_ns.max(1)),
            events: 0,
            filtered_out: 0,
            intervals: 0,
        })
    }

    fn out_err(&self, source: ExportError) -> RecordError {
        RecordError::Output {
            path: self.path.clone(),
            source,
        }
    }

    fn keep(&mut self, ev: &Event) -> Verdict {
        let Some(filter) = self.filter.as_mut() else {
            return Verdict::Member;
        };
        match event_tgid(ev) {
            None => Verdict::Member,
            Some(None) => Verdict::Other,
            Some(Some(tgid)) => filter.verdict(tgid, ev.ts_ns()),
        }
    }

    /// Take one event (already in time order within its batch).
    fn event(&mut self, ev: &Event) -> Result<(), RecordError> {
        if let Event::Proc(p) = ev {
            // The tree decides; it is not recorded itself.
            if let Some(tree) = self.filter.as_mut() {
                tree.observe(p);
            }
            return Ok(());
        }
        match self.keep(ev) {
            Verdict::Member => {}
            Verdict::Other => {
                self.filtered_out += 1;
                return Ok(());
            }
            // Counted by the tree (`proc_unplaceable`).
            Verdict::Unplaceable => return Ok(()),
        }
        if !matches!(ev, Event::Loss(_)) {
            self.events += 1;
        }
        // The source's loss samples carry the events this recorder could
        // not place (a cumulative count too), so the file shows them.
        let placed;
        let ev = match ev {
            Event::Loss(l) => {
                let mut l = l.clone();
                l.losses
                    .add(LossReason::ProcUnplaceable, self.proc_unplaceable());
                placed = Event::Loss(l);
                &placed
            }
            other => other,
        };
        match &mut self.sink {
            Sink::Raw(w) => w.write_event(ev).map_err(|e| RecordError::Output {
                path: self.path.clone(),
                source: e.into(),
            }),
            Sink::Intervals(_) => {
                self.agg.ingest(ev);
                Ok(())
            }
        }
    }

    /// Take a batch (live: intervals are closed by the caller's clock).
    pub fn events(&mut self, batch: &[Event]) -> Result<(), RecordError> {
        for ev in batch {
            self.event(ev)?;
        }
        Ok(())
    }

    /// Take a batch whose event times drive the intervals (replay).
    pub fn events_by_event_time(&mut self, batch: &[Event]) -> Result<(), RecordError> {
        for ev in batch {
            let ts = ev.ts_ns();
            if ts >= self.next_end_ns {
                let end = self.next_end_ns;
                self.close_interval(end)?;
                // The intervals between here and `ts` are empty: close them
                // as one, so a gap in event time (or a corrupt timestamp
                // near 2^64) costs one step, not one per interval.
                if ts >= self.next_end_ns {
                    let skip = (ts - self.next_end_ns) / self.interval_ns;
                    let end = self
                        .next_end_ns
                        .saturating_add(skip.saturating_mul(self.interval_ns));
                    self.close_interval(end)?;
                }
            }
            self.event(ev)?;
        }
        Ok(())
    }

    /// Close the current interval at `end_ns` and write it. A raw recording
    /// is flushed instead, so that one streamed live (`-o` a pipe or a
    /// serial port, read by `top --replay -`) lags by at most an interval.
    pub fn close_interval(&mut self, end_ns: u64) -> Result<(), RecordError> {
        self.next_end_ns = end_ns.saturating_add(self.interval_ns);
        if let Sink::Raw(w) = &mut self.sink {
            if let Err(e) = w.flush() {
                return Err(self.out_err(e.into()));
            }
        }
        if let Sink::Intervals(w) = &mut self.sink {
            let win = self.agg.take_interval(end_ns);
            self.intervals += 1;
            if let Err(e) = w.write_interval(&win) {
                return Err(self.out_err(e));
            }
        }
        Ok(())
    }

    /// A phase mark at `ts_ns`: closes the interval (raw: stores the mark).
    pub fn mark(&mut self, ts_ns: u64) -> Result<(), RecordError> {
        if let Sink::Raw(w) = &mut self.sink {
            self.next_end_ns = ts_ns.saturating_add(self.interval_ns);
            return w.write_mark(ts_ns).map_err(|e| RecordError::Output {
                path: self.path.clone(),
                source: e.into(),
            });
        }
        self.close_interval(ts_ns)
    }

    /// Events left out because their process could not be placed (the
    /// loss reason `proc_unplaceable`).
    pub fn proc_unplaceable(&self) -> u64 {
        self.filter.as_ref().map_or(0, |f| f.proc_unplaceable)
    }

    /// Close the last interval at `end_ns`, finish the format and rename
    /// the file into place.
    pub fn finish(mut self, end_ns: u64) -> Result<(), RecordError> {
        if matches!(self.sink, Sink::Intervals(_)) {
            let end = end_ns.max(self.agg.latest_ns());
            self.close_interval(end)?;
        }
        let path = self.path.clone();
        let err = |source: ExportError| RecordError::Output {
            path: path.clone(),
            source,
        };
        let file = match self.sink {
            Sink::Intervals(w) => w.finish().map_err(err)?,
            Sink::Raw(w) => w.finish().map_err(|e| err(e.into()))?,
        };
        file.commit().map_err(|e| err(e.into()))
    }
}

/// CLOCK_MONOTONIC now, ns (the clock of event timestamps).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn report_error(e: &RecordError) -> u8 {
    eprintln!("uacce-trace: error: {e}");
    EXIT_BAD_INPUT
}

/// Run `record`. Returns the exit code.
pub fn run(opts: RecordOptions) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let code = rt.block_on(async move {
        match &opts.replay {
            Some(input) => replay(&opts, input).await,
            None => live(&opts).await,
        }
    });
    // A replay reader blocked on a stalled standard input must not keep
    // the process alive after a signal.
    rt.shutdown_timeout(Duration::from_millis(100));
    code
}

async fn replay(opts: &RecordOptions, input: &str) -> anyhow::Result<u8> {
    use tokio::signal::unix::{signal, SignalKind};
    let name = crate::analysis::display_name(input);
    let in_err = |source: RawError| RecordError::Input {
        name: name.clone(),
        source,
    };
    // Signal handlers first. Opening and reading happen on a blocking
    // thread: a standard input on which nothing arrives (a stalled pipe
    // from another machine) must not keep SIGINT/SIGTERM from being
    // handled. The events of the batch being read when the input stalls
    // (at most 10 ms of event time) are not in the file.
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let (header_tx, header_rx) = tokio::sync::oneshot::channel();
    let (item_tx, mut items) = tokio::sync::mpsc::channel::<Result<ReplayItem, RawError>>(4);
    let source = input.to_string();
    tokio::task::spawn_blocking(move || {
        let opened = if source == "-" {
            Ok(Box::new(io::stdin()) as Box<dyn io::Read + Send>)
        } else {
            std::fs::File::open(&source)
                .map(|f| Box::new(io::BufReader::new(f)) as Box<dyn io::Read + Send>)
                .map_err(RawError::from)
        };
        match opened.and_then(RawReader::open) {
            Ok((reader, header)) => {
                if header_tx.send(Ok(header)).is_ok() {
                    for item in Replay::new(reader) {
                        if item_tx.blocking_send(item).is_err() {
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                let _ = header_tx.send(Err(e));
            }
        }
    });
    let header = tokio::select! {
        h = header_rx => h,
        // Stopped before the recording's header arrived: there is nothing
        // to write a valid file from.
        _ = int.recv() => return Ok(stopped_before_header(&name)),
        _ = term.recv() => return Ok(stopped_before_header(&name)),
    };
    let header = match header {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return Ok(report_error(&in_err(e))),
        Err(_) => {
            let e = io::Error::other("the reading thread ended without a header");
            return Ok(report_error(&in_err(e.into())));
        }
    };
    let mut rec = match Recorder::create(&opts.output, opts.format, &header, opts.interval_ns, None)
    {
        Ok(r) => r,
        Err(e) => return Ok(report_error(&e)),
    };
    let started = tokio::time::Instant::now();
    let stop_at = opts
        .duration_ns
        .map(|d| header.start_mono_ns.saturating_add(d));
    let mut last_ts = header.start_mono_ns;
    let mut interrupted = false;
    loop {
        // Yielding lets the runtime run its signal driver even when items
        // are always ready (a fast replay), so a long replay stops promptly.
        tokio::task::yield_now().await;
        let item = tokio::select! {
            biased;
            _ = int.recv() => None,
            _ = term.recv() => None,
            item = items.recv() => match item {
                Some(i) => Some(i),
                None => break,
            },
        };
        let Some(item) = item else {
            interrupted = true;
            break;
        };
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                // Whatever was read is still in the recorder, but the input
                // is bad: say so and leave no output behind.
                drop(rec);
                return Ok(report_error(&in_err(e)));
            }
        };
        match item {
            ReplayItem::Mark(ts) => {
                if let Err(e) = rec.mark(ts) {
                    return Ok(report_error(&e));
                }
            }
            ReplayItem::Batch { events, due_ns } => {
                if opts.realtime {
                    let due = started + Duration::from_nanos(due_ns);
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        _ = int.recv() => { interrupted = true; }
                        _ = term.recv() => { interrupted = true; }
                    }
                    if interrupted {
                        break;
                    }
                }
                let mut batch = events;
                if let Some(stop) = stop_at {
                    batch.retain(|e| e.ts_ns() < stop);
                }
                if let Some(last) = batch.last() {
                    last_ts = last_ts.max(last.ts_ns());
                }
                let res = if opts.format == Format::Raw {
                    rec.events(&batch)
                } else {
                    rec.events_by_event_time(&batch)
                };
                if let Err(e) = res {
                    return Ok(report_error(&e));
                }
                if stop_at.is_some_and(|s| last_ts >= s) {
                    break;
                }
            }
        }
    }
    let (events, filtered) = (rec.events, rec.filtered_out);
    let end = stop_at.map_or(last_ts, |s| s.min(last_ts.max(header.start_mono_ns)));
    if let Err(e) = rec.finish(end) {
        return Ok(report_error(&e));
    }
    eprintln!(
        "uacce-trace: replayed {events} events{} into {} ({})",
        if filtered > 0 {
            format!(" ({filtered} left out)")
        } else {
            String::new()
        },
        opts.output.display(),
        opts.format
    );
    Ok(if interrupted { 130 } else { 0 })
}

/// SIGINT/SIGTERM before a replay's header arrived: nothing is written (a
/// valid file needs the header); exit 130 like any interrupted replay.
fn stopped_before_header(name: &str) -> u8 {
    eprintln!(
        "uacce-trace: interrupted before {name} delivered a recording header; nothing written"
    );
    130
}

/// Exit code of a finished command, shell style.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
        (None, Some(sig)) => u8::try_from((128 + sig) & 0xff).unwrap_or(1),
        _ => 1,
    }
}

async fn live(opts: &RecordOptions) -> anyhow::Result<u8> {
    use tokio::signal::unix::{signal, SignalKind};

    use crate::ingest::live::Tracer;

    // Signal handlers first, so a signal right after the start is ours.
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let follow = !opts.command.is_empty();
    let (mut tracer, inspection) = match Tracer::start_with(opts.tracer, follow) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("uacce-trace: {e}");
            return Ok(1);
        }
    };
    if follow {
        // Before the command starts: its fork is the first one followed.
        if let Err(why) = tracer.follows_processes() {
            eprintln!("uacce-trace: cannot follow the command's processes: {why}");
            return Ok(1);
        }
        if let Err(e) = tracer.follow_children_of(std::process::id()) {
            eprintln!("uacce-trace: cannot follow the command's processes: {e}");
            return Ok(1);
        }
    }
    if let Some(problem) = tracer.plan().core_problem() {
        eprintln!("uacce-trace: warning: {problem}");
    }
    let header = RawHeader {
        start_unix_ns: unix_ns(),
        start_mono_ns: monotonic_ns(),
        kernel: inspection.kernel.clone(),
        plan: tracer.plan().summary(),
        command: opts.command.join(" "),
    };
    let me = std::process::id();
    let mut child = None;
    if let Some((prog, args)) = opts.command.split_first() {
        match std::process::Command::new(prog).args(args).spawn() {
            Ok(c) => child = Some(c),
            Err(e) => {
                eprintln!("uacce-trace: cannot run `{prog}`: {e}");
                return Ok(127);
            }
        }
    }
    let child_pid = child.as_ref().map(|c| c.id());
    let filter = child_pid.map(|pid| ProcTree::new(pid, me));
    let mut rec =
        match Recorder::create(&opts.output, opts.format, &header, opts.interval_ns, filter) {
            Ok(r) => r,
            Err(e) => {
                if let Some(pid) = child_pid {
                    // SAFETY: plain kill(2) of the child we just started.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                }
                return Ok(report_error(&e));
            }
        };
    eprintln!(
        "uacce-trace: recording to {} ({}, {} s intervals; {} hooks attached; {}){}",
        opts.output.display(),
        opts.format,
        crate::formats::f3(opts.interval_ns as f64 / 1e9),
        tracer.hooks_attached(),
        tracer.plan().summary(),
        child_pid.map_or_else(String::new, |p| format!("; command pid {p}"))
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut stop_tx = Some(stop_tx);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Event>>(64);
    let reader = tokio::spawn(tracer.run(tx, async move {
        let _ = stop_rx.await;
    }));
    let mut waiter = child.map(|mut c| tokio::task::spawn_blocking(move || c.wait()));
    let period = Duration::from_nanos(opts.interval_ns.max(1_000_000));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = opts
        .duration_ns
        .map(|d| tokio::time::Instant::now() + Duration::from_nanos(d));
    let mut status: Option<u8> = None;
    let mut child_running = waiter.is_some();
    let mut signalled: Option<i32> = None;
    let mut timed_out = false;
    let mut failure: Option<RecordError> = None;
    loop {
        let stopping = stop_tx.is_none();
        let stop_now = tokio::select! {
            batch = rx.recv() => match batch {
                Some(b) => {
                    if failure.is_none() {
                        if let Err(e) = rec.events(&b) {
                            failure = Some(e);
                        }
                    }
                    failure.is_some()
                }
                None => break,
            },
            _ = tick.tick(), if !stopping => {
                if let Err(e) = rec.close_interval(monotonic_ns()) {
                    failure = Some(e);
                }
                failure.is_some()
            }
            _ = usr1.recv(), if !stopping => {
                if let Err(e) = rec.mark(monotonic_ns()) {
                    failure = Some(e);
                }
                tick.reset();
                failure.is_some()
            }
            _ = int.recv(), if !stopping => { signalled = Some(libc::SIGINT); true }
            _ = term.recv(), if !stopping => { signalled = Some(libc::SIGTERM); true }
            res = async { match waiter.as_mut() { Some(w) => w.await, None => std::future::pending().await } }, if child_running => {
                child_running = false;
                status = Some(match res {
                    Ok(Ok(s)) => exit_code(s),
                    _ => 1,
                });
                true
            }
            () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } }, if !stopping => {
                // The recording is of the command: end it with the recording.
                if child_running {
                    signalled = Some(libc::SIGTERM);
                    timed_out = true;
                }
                true
            }
        };
        if stop_now {
            if let (Some(sig), Some(pid), true) = (signalled, child_pid, child_running) {
                // SAFETY: kill(2) of our own child, which has not been reaped
                // (child_running), so the pid is still its own.
                unsafe { libc::kill(pid as libc::pid_t, sig) };
            }
            if let Some(tx) = stop_tx.take() {
                let _ = tx.send(());
            }
        }
    }
    let mut losses = reader.await??;
    let end = monotonic_ns();
    let (events, filtered, unplaceable) = (rec.events, rec.filtered_out, rec.proc_unplaceable());
    losses.add(LossReason::ProcUnplaceable, unplaceable);
    if let Some(e) = failure {
        return Ok(report_error(&e));
    }
    if let Err(e) = rec.finish(end) {
        return Ok(report_error(&e));
    }
    eprintln!(
        "uacce-trace: wrote {} ({events} events{}; {})",
        opts.output.display(),
        if child_pid.is_some() {
            format!(", {filtered} from other processes left out, {unplaceable} unplaceable")
        } else {
            String::new()
        },
        crate::commands::trace::dropped_text(&losses)
    );
    if let Some(code) = status {
        return Ok(if timed_out { 0 } else { code });
    }
    if child_running {
        // Stopped by a signal or --duration while the command still runs:
        // the signal was forwarded; wait for it so its status is ours.
        if let Some(w) = waiter.take() {
            if let Ok(Ok(s)) = w.await {
                return Ok(if timed_out { 0 } else { exit_code(s) });
            }
        }
    }
    Ok(match signalled {
        Some(_) if timed_out => 0,
        Some(sig) => u8::try_from(128 + sig).unwrap_or(1),
        None => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_latencies() {
        assert_eq!(parse_duration("1s"), Ok(1_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration("2m"), Ok(120_000_000_000));
        assert_eq!(parse_duration("3"), Ok(3_000_000_000));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("1parsec").is_err());
        assert_eq!(parse_latency("800"), Ok(800));
        assert_eq!(parse_latency("250us"), Ok(250_000));
        assert_eq!(parse_latency("1.5ms"), Ok(1_500_000));
    }
}
