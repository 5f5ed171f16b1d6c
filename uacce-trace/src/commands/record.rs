//! `uacce-trace record`: trace (or replay) events into interval histograms
//! (hlog, json, csv) or a raw recording, optionally for one command and its
//! descendants only. This is a headless consumer like `trace`: it reads the
//! clock and runs the command; events, signals and replay come from the
//! one event source (`ingest::source`), the aggregation and the formats
//! live in `model`, `formats` and `ingest::rawfile`.
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
    path::{Path, PathBuf},
    time::Duration,
};

use thiserror::Error;

use crate::{
    commands::{dropped_text, open_failed},
    exit,
    formats::{AtomicFile, ExportError, Format, IntervalWriter},
    ingest::event::Event,
    ingest::live::TracerOptions,
    ingest::losses::LossReason,
    ingest::proctree::{event_tgid, ProcTree, Verdict},
    ingest::rawfile::RawWriter,
    ingest::run::RunMeta,
    ingest::source::{block_on, Cause, Item, LiveOptions, OpenError, Origin, Source, Stop, StopOn},
    kernel::ring::monotonic_ns,
    model::{Aggregator, ModelConfig},
    status,
};

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
}

enum Sink {
    Intervals(Box<IntervalWriter<AtomicFile>>),
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
        header: &RunMeta,
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
            match IntervalWriter::new(format, file, header).map_err(out_err)? {
                Some(w) => Sink::Intervals(Box::new(w)),
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
        self.events += ev.weight();
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

fn report_error(e: &impl std::fmt::Display) -> u8 {
    log::error!("{e}");
    exit::BAD_INPUT
}

/// Run `record`. Returns the exit code.
pub fn run(opts: RecordOptions) -> anyhow::Result<u8> {
    block_on(async move {
        match &opts.replay {
            Some(input) => replay(&opts, input).await,
            None => live(&opts).await,
        }
    })?
}

async fn replay(opts: &RecordOptions, input: &str) -> anyhow::Result<u8> {
    let origin = Origin::replay_or_live(Some(input), opts.realtime, LiveOptions::default());
    let mut src = match Source::open(origin, StopOn::Interrupt).await {
        Ok(s) => s,
        // Stopped before the recording's header arrived: there is nothing
        // to write a valid file from; exit 130 like any interrupted replay.
        Err(OpenError::Stopped { name, .. }) => {
            status!("interrupted before {name} delivered a recording header; nothing written");
            return Ok(exit::signalled(libc::SIGINT));
        }
        Err(e) => return Ok(open_failed(&e, exit::OK)),
    };
    let start_ns = src.meta.start_mono_ns;
    let mut rec =
        match Recorder::create(&opts.output, opts.format, &src.meta, opts.interval_ns, None) {
            Ok(r) => r,
            Err(e) => return Ok(report_error(&e)),
        };
    let stop_at = opts.duration_ns.map(|d| start_ns.saturating_add(d));
    let mut last_ts = start_ns;
    while let Some(item) = src.stream.next().await {
        let res = match item {
            // Whatever was read is still in the recorder, but the input
            // is bad: say so and leave no output behind.
            Err(e) => {
                drop(rec);
                return Ok(report_error(&e));
            }
            Ok(Item::Mark(ts)) => rec.mark(ts),
            Ok(Item::Batch(mut batch)) => {
                if let Some(stop) = stop_at {
                    batch.retain(|e| e.ts_ns() < stop);
                }
                if let Some(last) = batch.last() {
                    last_ts = last_ts.max(last.ts_ns());
                }
                if opts.format == Format::Raw {
                    rec.events(&batch)
                } else {
                    rec.events_by_event_time(&batch)
                }
            }
        };
        if let Err(e) = res {
            return Ok(report_error(&e));
        }
        if stop_at.is_some_and(|s| last_ts >= s) {
            break;
        }
    }
    let interrupted = src.stop.signal().is_some();
    let (events, filtered) = (rec.events, rec.filtered_out);
    let end = stop_at.map_or(last_ts, |s| s.min(last_ts.max(start_ns)));
    if let Err(e) = rec.finish(end) {
        return Ok(report_error(&e));
    }
    status!(
        "replayed {events} events{} into {} ({})",
        if filtered > 0 {
            format!(" ({filtered} left out)")
        } else {
            String::new()
        },
        opts.output.display(),
        opts.format
    );
    Ok(if interrupted {
        exit::signalled(libc::SIGINT)
    } else {
        exit::OK
    })
}

async fn live(opts: &RecordOptions) -> anyhow::Result<u8> {
    use tokio::signal::unix::{signal, SignalKind};

    if opts.tracer.summary && opts.format == Format::Raw {
        log::error!(
            "--summary counts calls in the kernel: there are no events to store in a raw \
             recording; choose hlog, json or csv"
        );
        return Ok(exit::BAD_INPUT);
    }

    // Before the tracer starts, so a mark right after the start is ours.
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let follow = !opts.command.is_empty();
    let origin = Origin::Live(LiveOptions {
        tracer: opts.tracer,
        follow_children_of: follow.then(std::process::id),
        command: opts.command.join(" "),
        print_warning: true,
    });
    let mut src = match Source::open(origin, StopOn::Interrupt).await {
        Ok(s) => s,
        Err(e) => return Ok(open_failed(&e, exit::OK)),
    };
    let me = std::process::id();
    let mut child = None;
    if let Some((prog, args)) = opts.command.split_first() {
        match std::process::Command::new(prog).args(args).spawn() {
            Ok(c) => child = Some(c),
            Err(e) => {
                status!("cannot run `{prog}`: {e}");
                return Ok(exit::CANNOT_RUN);
            }
        }
    }
    let child_pid = child.as_ref().map(|c| c.id());
    let filter = child_pid.map(|pid| ProcTree::new(pid, me));
    let mut rec = match Recorder::create(
        &opts.output,
        opts.format,
        &src.meta,
        opts.interval_ns,
        filter,
    ) {
        Ok(r) => r,
        Err(e) => {
            if let Some(pid) = child_pid {
                // SAFETY: plain kill(2) of the child we just started.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            }
            return Ok(report_error(&e));
        }
    };
    status!(
        "recording to {} ({}, {} s intervals; {} hooks attached; {}){}",
        opts.output.display(),
        opts.format,
        crate::formats::f3(opts.interval_ns as f64 / 1e9),
        src.live().map_or(0, |l| l.hooks_attached),
        src.meta.plan,
        child_pid.map_or_else(String::new, |p| format!("; command pid {p}"))
    );
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
    let stop = src.stop.clone();
    let mut stop_handled = false;
    loop {
        let stopping = stop.cause().is_some();
        let stop_now = tokio::select! {
            item = src.stream.next() => match item {
                Some(Ok(Item::Batch(b))) => {
                    if failure.is_none() {
                        if let Err(e) = rec.events(&b) {
                            failure = Some(e);
                        }
                    }
                    failure.is_some()
                }
                Some(_) => false,
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
            _ = stop.wait(), if !stopping => true,
            res = async { match waiter.as_mut() { Some(w) => w.await, None => std::future::pending().await } }, if child_running => {
                child_running = false;
                status = Some(match res {
                    Ok(Ok(s)) => exit::of_status(s),
                    _ => exit::FAILURE,
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
            stop.request();
        }
        if !stop_handled && stop.cause().is_some() {
            stop_handled = true;
            forward_stop(&stop, &mut signalled, child_pid, child_running);
        }
    }
    // The tracer can end the stream before the loop saw the stop.
    if !stop_handled && stop.cause().is_some() {
        forward_stop(&stop, &mut signalled, child_pid, child_running);
    }
    let mut losses = src.stream.end().await?;
    let end = monotonic_ns();
    let (events, filtered, unplaceable) = (rec.events, rec.filtered_out, rec.proc_unplaceable());
    losses.add(LossReason::ProcUnplaceable, unplaceable);
    if let Some(e) = failure {
        return Ok(report_error(&e));
    }
    if let Err(e) = rec.finish(end) {
        return Ok(report_error(&e));
    }
    status!(
        "wrote {} ({events} events{}; {})",
        opts.output.display(),
        if child_pid.is_some() {
            format!(", {filtered} from other processes left out, {unplaceable} unplaceable")
        } else {
            String::new()
        },
        dropped_text(&losses)
    );
    if let Some(code) = status {
        return Ok(if timed_out { exit::OK } else { code });
    }
    if child_running {
        // Stopped by a signal or --duration while the command still runs:
        // the signal was forwarded; wait for it so its status is ours.
        if let Some(w) = waiter.take() {
            if let Ok(Ok(s)) = w.await {
                return Ok(if timed_out {
                    exit::OK
                } else {
                    exit::of_status(s)
                });
            }
        }
    }
    Ok(match signalled {
        Some(_) if timed_out => exit::OK,
        Some(sig) => exit::signalled(sig),
        None => exit::OK,
    })
}

/// Act on the stop (once, whoever set it: a signal, `--duration`, the
/// command's exit, an output failure): note the signal that caused it and
/// forward that signal (or `--duration`'s SIGTERM) to the command while it
/// runs.
fn forward_stop(stop: &Stop, signalled: &mut Option<i32>, child: Option<u32>, running: bool) {
    if let Some(Cause::Signal(sig)) = stop.cause() {
        signalled.get_or_insert(sig);
    }
    if let (Some(sig), Some(pid), true) = (*signalled, child, running) {
        // SAFETY: kill(2) of our own child, which has not been reaped
        // (`running`), so the pid is still its own.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
}
