//! Where events come from, for every command: [`Source::open`] starts the
//! live tracer or a replay of a raw recording and hands back the same
//! thing either way: the run's metadata ([`RunMeta`]), a [`Stream`] of
//! event batches with its [`Clock`], one [`Stop`] and, at the end, one loss
//! ledger. `record`, `trace`, `serve`, `top` (and the benchmark driver,
//! through [`Source::from_tracer`]) are sinks of it.
//!
//! - **Stop**: SIGINT and SIGTERM (and SIGHUP where a command asks) are
//!   caught here and only here, before the tracer starts, so a signal
//!   right after "tracing started" is never lost to the default
//!   disposition. A stop (a signal, or a command's own [`Stop::request`])
//!   stops the tracer, which drains the ring and ends the stream; a
//!   replay's stream ends at once. SIGPIPE stays ignored (Rust's runtime
//!   sets that): a write to a closed pipe fails with `EPIPE`, which the
//!   commands treat as the reader going away, not as an error.
//! - **Live**: plan, load, attach ([`Tracer::start_with`]), optionally
//!   follow a process tree, print the plan's warning once, stamp the run's
//!   start on both clocks, start reading the ring.
//! - **Replay**: the input (a file or standard input) is opened and read on
//!   a blocking thread, so a stalled pipe never keeps a stop from being
//!   handled; at the recorded pace ([`Pacing::Recorded`]) that thread
//!   waits until each batch is due. Marks (SIGUSR1 phase marks of a raw
//!   recording) come through in order.
//! - [`block_on`] runs a command's async body and does not wait for a
//!   reading thread still blocked on its input.
//!
//! Imports the kernel boundary and the rest of `ingest`; nothing above.

use std::{
    future::Future,
    io::{self, Read},
    sync::Arc,
    time::{Duration, Instant},
};

use thiserror::Error;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use crate::ingest::{
    event::Event,
    live::{Tracer, TracerOptions},
    losses::Ledger,
    rawfile::{RawError, RawReader, Replay, ReplayItem},
    run::{Clock, RunMeta},
    scan::PasidScan,
};
use crate::kernel::attach::SourceError;

/// Batches in flight between the tracer (or the replay thread) and a sink.
pub const CHANNEL_BATCHES: usize = 64;
/// Longest single sleep of a paced replay thread, so that it notices soon
/// when nobody reads any more.
const PACE_STEP: Duration = Duration::from_millis(50);

/// Run a command's async body on a current-thread runtime. A replay
/// thread blocked on a stalled standard input does not keep the process
/// alive afterwards.
pub fn block_on<F: Future>(body: F) -> io::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(body);
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(out)
}

/// How an input argument is named in messages (`-`: standard input).
pub fn display_name(arg: &str) -> String {
    if arg == "-" {
        "standard input".to_string()
    } else {
        arg.to_string()
    }
}

// ---- stop ---------------------------------------------------------------

/// Why a run stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// This signal arrived (the first one counts).
    Signal(i32),
    /// The command asked ([`Stop::request`]: a key, a deadline, the
    /// traced command's exit, an output failure).
    Requested,
}

/// The one stop signal of a run. Clones share it; it stays set once set.
#[derive(Clone, Debug)]
pub struct Stop {
    tx: Arc<watch::Sender<Option<Cause>>>,
}

/// The signals that stop every command.
pub const STOP_SIGNALS: [i32; 2] = [libc::SIGINT, libc::SIGTERM];

impl Stop {
    /// A stop that only [`Stop::request`] sets (no signal handlers).
    pub fn manual() -> Stop {
        Stop {
            tx: Arc::new(watch::channel(None).0),
        }
    }

    /// Catch `signals` from now on (inside a runtime): the first sets the
    /// stop. The handlers are installed before this returns.
    pub fn install(signals: &[i32]) -> io::Result<Stop> {
        use tokio::signal::unix::{signal, SignalKind};
        let stop = Stop::manual();
        for &sig in signals {
            let mut s = signal(SignalKind::from_raw(sig))?;
            let tx = Arc::clone(&stop.tx);
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    set(&tx, Cause::Signal(sig));
                }
            });
        }
        Ok(stop)
    }

    /// Stop now (does nothing when already stopped).
    pub fn request(&self) {
        set(&self.tx, Cause::Requested);
    }

    /// Why the run stopped, if it did.
    pub fn cause(&self) -> Option<Cause> {
        *self.tx.borrow()
    }

    /// The signal that stopped the run, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.cause() {
            Some(Cause::Signal(s)) => Some(s),
            _ => None,
        }
    }

    /// Resolves once the run is stopped (at once when it already is).
    pub async fn wait(&self) -> Cause {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(c) = *rx.borrow_and_update() {
                return c;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

fn set(tx: &watch::Sender<Option<Cause>>, cause: Cause) {
    tx.send_if_modified(|c| {
        if c.is_none() {
            *c = Some(cause);
            true
        } else {
            false
        }
    });
}

// ---- opening --------------------------------------------------------------

/// What to open.
#[derive(Clone, Debug)]
pub enum Origin {
    /// Trace this kernel.
    Live(LiveOptions),
    /// Replay a raw recording.
    Replay(ReplayOptions),
}

/// Options of a live source.
#[derive(Clone, Debug, Default)]
pub struct LiveOptions {
    pub tracer: TracerOptions,
    /// Follow the process tree below this process (attach the fork/exit
    /// programs and seed them with it) before anything is run.
    pub follow_children_of: Option<u32>,
    /// The command line being traced (stamped into the run's metadata).
    pub command: String,
    /// Print the plan's warning on standard error (`top` shows it on its
    /// screen instead).
    pub print_warning: bool,
}

/// Options of a replay.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// A path, or `-` for standard input.
    pub input: String,
    pub pacing: Pacing,
}

/// How fast a replay delivers its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// As fast as they can be read.
    Fast,
    /// At the recorded pace.
    Recorded,
}

impl Origin {
    /// A replay of `replay` (at the recorded pace when `realtime`) when
    /// one is given (`--replay`), else live tracing with `live`.
    pub fn replay_or_live(replay: Option<&str>, realtime: bool, live: LiveOptions) -> Origin {
        match replay {
            Some(input) => Origin::Replay(ReplayOptions {
                input: input.to_string(),
                pacing: if realtime {
                    Pacing::Recorded
                } else {
                    Pacing::Fast
                },
            }),
            None => Origin::Live(live),
        }
    }
}

/// Which signals stop the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StopOn {
    /// SIGINT and SIGTERM.
    #[default]
    Interrupt,
    /// SIGINT, SIGTERM and SIGHUP (an interactive view whose terminal
    /// went away).
    InterruptOrHangup,
}

/// Why a source could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(#[source] io::Error),
    /// Tracing could not start.
    #[error("{0}")]
    Tracer(#[source] SourceError),
    /// The process tree cannot be followed.
    #[error("cannot follow the command's processes: {0}")]
    Follow(String),
    /// The recording is unusable.
    #[error("{name}: {source}")]
    Input {
        name: String,
        #[source]
        source: RawError,
    },
    /// Stopped before a replay's header arrived.
    #[error("interrupted before {name} delivered a recording header")]
    Stopped { name: String, cause: Cause },
}

/// Why a stream failed.
#[derive(Debug, Error)]
pub enum Failure {
    /// The tracer stopped with an error.
    #[error("{0}")]
    Tracer(#[source] SourceError),
    /// The recording turned out unusable part-way.
    #[error("{name}: {source}")]
    Input {
        name: String,
        #[source]
        source: RawError,
    },
    /// The reading task failed.
    #[error("the reader failed: {0}")]
    Task(String),
}

/// What a live source knows beyond the run's metadata.
#[derive(Clone, Debug)]
pub struct LiveInfo {
    pub hooks_attached: usize,
    /// Why the core events may not all be traced.
    pub warning: Option<String>,
    /// BPF program ids and names (for the cost probe).
    pub loaded_programs: Vec<(u32, String)>,
    /// Who held a PASID before tracing started.
    pub pasid_scan: PasidScan,
}

/// Where the events come from.
#[derive(Clone, Debug)]
pub enum Kind {
    Live(LiveInfo),
    Replay { name: String, pacing: Pacing },
}

/// An opened source.
pub struct Source {
    pub meta: RunMeta,
    pub kind: Kind,
    pub stream: Stream,
    pub stop: Stop,
}

impl Source {
    /// Install the stop signals, then start the tracer or the replay.
    pub async fn open(origin: Origin, stop_on: StopOn) -> Result<Source, OpenError> {
        let signals: &[i32] = match stop_on {
            StopOn::Interrupt => &STOP_SIGNALS,
            StopOn::InterruptOrHangup => &[libc::SIGINT, libc::SIGTERM, libc::SIGHUP],
        };
        let stop = Stop::install(signals).map_err(OpenError::Signals)?;
        match origin {
            Origin::Live(opts) => open_live(opts, stop),
            Origin::Replay(opts) => open_replay(opts, stop).await,
        }
    }

    /// A live source over a tracer started elsewhere (the benchmark
    /// driver's bench programs), stopped by `stop`.
    pub fn from_tracer(tracer: Tracer, meta: RunMeta, stop: Stop) -> Source {
        let info = live_info(&tracer);
        let stream = Stream::live(tracer, stop.clone());
        Source {
            meta,
            kind: Kind::Live(info),
            stream,
            stop,
        }
    }

    /// The live source's facts (`None` in a replay).
    pub fn live(&self) -> Option<&LiveInfo> {
        match &self.kind {
            Kind::Live(info) => Some(info),
            Kind::Replay { .. } => None,
        }
    }

    /// `tracing started (N hooks attached; PLAN)` (live only).
    pub fn started_line(&self) -> String {
        format!(
            "tracing started ({} hooks attached; {})",
            self.live().map_or(0, |l| l.hooks_attached),
            self.meta.plan
        )
    }
}

fn live_info(tracer: &Tracer) -> LiveInfo {
    LiveInfo {
        hooks_attached: tracer.hooks_attached(),
        warning: tracer.plan().core_problem(),
        loaded_programs: tracer.loaded_programs(),
        pasid_scan: tracer.pasid_scan().clone(),
    }
}

fn open_live(opts: LiveOptions, stop: Stop) -> Result<Source, OpenError> {
    let follow = opts.follow_children_of.is_some();
    let (mut tracer, inspection) =
        Tracer::start_with(opts.tracer, follow).map_err(OpenError::Tracer)?;
    if let Some(pid) = opts.follow_children_of {
        // Before anything is run: its fork is the first one followed.
        tracer.follows_processes().map_err(OpenError::Follow)?;
        tracer
            .follow_children_of(pid)
            .map_err(|e| OpenError::Follow(e.to_string()))?;
    }
    let info = live_info(&tracer);
    if opts.print_warning {
        if let Some(problem) = &info.warning {
            log::warn!("{problem}");
        }
    }
    let meta = RunMeta::starting_now(
        inspection.kernel.clone(),
        tracer.plan().summary(),
        opts.command,
    );
    let stream = Stream::live(tracer, stop.clone());
    Ok(Source {
        meta,
        kind: Kind::Live(info),
        stream,
        stop,
    })
}

type ReplayMsg = Result<ReplayItem, RawError>;

async fn open_replay(opts: ReplayOptions, stop: Stop) -> Result<Source, OpenError> {
    let name = display_name(&opts.input);
    let (header_tx, header_rx) = oneshot::channel();
    let (tx, rx) = mpsc::channel::<ReplayMsg>(4);
    let (input, pacing) = (opts.input.clone(), opts.pacing);
    tokio::task::spawn_blocking(move || {
        let opened = if input == "-" {
            Ok(Box::new(io::stdin()) as Box<dyn Read + Send>)
        } else {
            std::fs::File::open(&input)
                .map(|f| Box::new(io::BufReader::new(f)) as Box<dyn Read + Send>)
                .map_err(RawError::from)
        };
        match opened.and_then(RawReader::open) {
            Ok((reader, header)) => {
                if header_tx.send(Ok(header)).is_ok() {
                    produce(reader, &tx, pacing);
                }
            }
            Err(e) => {
                let _ = header_tx.send(Err(e));
            }
        }
    });
    let header = tokio::select! {
        h = header_rx => h,
        cause = stop.wait() => return Err(OpenError::Stopped { name, cause }),
    };
    let meta = match header {
        Ok(Ok(h)) => h,
        Ok(Err(source)) => return Err(OpenError::Input { name, source }),
        Err(_) => {
            let e = io::Error::other("the reading thread ended without a header");
            return Err(OpenError::Input {
                name,
                source: e.into(),
            });
        }
    };
    let stream = Stream {
        inner: Inner::Replay {
            rx,
            name: name.clone(),
        },
        clock: Clock::event_time(meta.start_mono_ns, pacing == Pacing::Recorded),
        stop: stop.clone(),
        failed: false,
    };
    Ok(Source {
        meta,
        kind: Kind::Replay { name, pacing },
        stream,
        stop,
    })
}

/// The replay thread: read the recording and send its items, each batch
/// when it is due at the recorded pace. Ends at the end of the recording,
/// at the first error (sent), or when nobody reads any more.
fn produce<R: Read>(reader: RawReader<R>, tx: &mpsc::Sender<ReplayMsg>, pacing: Pacing) {
    let started = Instant::now();
    for item in Replay::new(reader) {
        if let (Ok(ReplayItem::Batch { due_ns, .. }), Pacing::Recorded) = (&item, pacing) {
            let due = started + Duration::from_nanos(*due_ns);
            loop {
                let now = Instant::now();
                if now >= due || tx.is_closed() {
                    break;
                }
                std::thread::sleep((due - now).min(PACE_STEP));
            }
        }
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

// ---- the stream -------------------------------------------------------------

/// One item of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// Events in time order within the batch.
    Batch(Vec<Event>),
    /// A phase mark at this time (replays of recordings that have them).
    Mark(u64),
}

enum Inner {
    Live {
        rx: mpsc::Receiver<Vec<Event>>,
        reader: Option<JoinHandle<Result<Ledger, SourceError>>>,
    },
    Replay {
        rx: mpsc::Receiver<ReplayMsg>,
        name: String,
    },
}

/// Event batches and the clock they live in.
pub struct Stream {
    inner: Inner,
    clock: Clock,
    stop: Stop,
    /// A failure was handed out (a replay's clock then does not finish).
    failed: bool,
}

impl Stream {
    fn live(tracer: Tracer, stop: Stop) -> Stream {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let s = stop.clone();
        let reader = tokio::spawn(tracer.run(tx, async move {
            s.wait().await;
        }));
        Stream {
            inner: Inner::Live {
                rx,
                reader: Some(reader),
            },
            clock: Clock::Monotonic,
            stop,
            failed: false,
        }
    }

    /// The clock of this stream's events (a replay's is anchored by the
    /// first batch and stops at the end).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The next item; `None` at the end: the tracer stopped and drained
    /// (live), the recording is all in, or the run was stopped (replay).
    /// A failure comes once, then the end.
    pub async fn next(&mut self) -> Option<Result<Item, Failure>> {
        match &mut self.inner {
            Inner::Live { rx, .. } => rx.recv().await.map(|b| Ok(Item::Batch(b))),
            Inner::Replay { rx, name } => {
                // Yielding lets the runtime run its signal driver even when
                // items are always ready (a fast replay), so a long replay
                // stops promptly.
                tokio::task::yield_now().await;
                let msg = tokio::select! {
                    biased;
                    _ = self.stop.wait() => None,
                    m = rx.recv() => m,
                };
                let Some(msg) = msg else {
                    rx.close();
                    if self.stop.cause().is_none() && !self.failed {
                        self.clock.finish();
                    }
                    return None;
                };
                Some(match msg {
                    Ok(ReplayItem::Batch { events, .. }) => {
                        if let Some(first) = events.first() {
                            self.clock.arrived(first.ts_ns());
                        }
                        Ok(Item::Batch(events))
                    }
                    Ok(ReplayItem::Mark(ts)) => Ok(Item::Mark(ts)),
                    Err(source) => {
                        self.failed = true;
                        Err(Failure::Input {
                            name: name.clone(),
                            source,
                        })
                    }
                })
            }
        }
    }

    /// Take no more items: the tracer stops at its next send, a replay
    /// thread at its next item.
    pub fn close(&mut self) {
        match &mut self.inner {
            Inner::Live { rx, .. } => rx.close(),
            Inner::Replay { rx, .. } => rx.close(),
        }
    }

    /// Stop (when not stopped yet), let the tracer drain into nowhere and
    /// return its final losses. A replay's losses are in its events, so
    /// its ledger is empty. Called again, returns an empty ledger.
    pub async fn end(&mut self) -> Result<Ledger, Failure> {
        self.stop.request();
        match &mut self.inner {
            Inner::Live { rx, reader } => {
                while rx.recv().await.is_some() {}
                match reader.take() {
                    Some(r) => match r.await {
                        Ok(res) => res.map_err(Failure::Tracer),
                        Err(e) => Err(Failure::Task(e.to_string())),
                    },
                    None => Ok(Ledger::new()),
                }
            }
            Inner::Replay { rx, .. } => {
                rx.close();
                Ok(Ledger::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::rawfile::RawWriter;

    fn recording(events: &[Event], mark_after: Option<usize>) -> Vec<u8> {
        let meta = RunMeta {
            start_mono_ns: 1_000,
            kernel: "k".into(),
            ..Default::default()
        };
        let mut w = RawWriter::new(Vec::new(), &meta).unwrap_or_else(|e| panic!("{e}"));
        for (i, ev) in events.iter().enumerate() {
            w.write_event(ev).unwrap_or_else(|e| panic!("{e}"));
            if mark_after == Some(i) {
                w.write_mark(ev.ts_ns()).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        w.finish().unwrap_or_else(|e| panic!("{e}"))
    }

    fn loss(ts_ns: u64) -> Event {
        Event::Loss(crate::ingest::event::LossSample {
            ts_ns,
            losses: Ledger::new(),
        })
    }

    fn replay_of(bytes: Vec<u8>, pacing: Pacing) -> (RunMeta, Vec<Result<Item, String>>, Clock) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("uacce-trace-source-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("r.utrace");
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
        let input = path.display().to_string();
        let out = block_on(async move {
            let mut src = Source::open(
                Origin::Replay(ReplayOptions { input, pacing }),
                StopOn::Interrupt,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            let mut items = Vec::new();
            while let Some(i) = src.stream.next().await {
                items.push(i.map_err(|e| e.to_string()));
            }
            assert!(src.stream.end().await.is_ok_and(|l| l.total() == 0));
            (src.meta, items, src.stream.clock().clone())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&dir);
        out
    }

    #[test]
    fn replay_delivers_batches_marks_and_finishes_the_clock() {
        let evs = [loss(2_000), loss(3_000), loss(50_000_000)];
        let (meta, items, clock) = replay_of(recording(&evs, Some(0)), Pacing::Fast);
        assert_eq!(meta.start_mono_ns, 1_000);
        assert_eq!(meta.kernel, "k");
        assert_eq!(
            items,
            vec![
                Ok(Item::Batch(vec![loss(2_000)])),
                Ok(Item::Mark(2_000)),
                Ok(Item::Batch(vec![loss(3_000)])),
                Ok(Item::Batch(vec![loss(50_000_000)])),
            ]
        );
        assert_eq!(clock.now(50_000_000), 50_000_000);
        assert!(!clock.ticks_close_intervals());
    }

    #[test]
    fn paced_replay_waits_for_the_recorded_time() {
        let evs = [loss(1_000), loss(60_000_000)];
        let started = Instant::now();
        let (_, items, _) = replay_of(recording(&evs, None), Pacing::Recorded);
        assert_eq!(items.len(), 2);
        assert!(started.elapsed() >= Duration::from_millis(59));
    }

    #[test]
    fn a_bad_recording_fails_to_open_and_a_truncated_one_fails_late() {
        let r = block_on(Source::open(
            Origin::Replay(ReplayOptions {
                input: "/nonexistent/r.utrace".into(),
                pacing: Pacing::Fast,
            }),
            StopOn::Interrupt,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(r, Err(OpenError::Input { ref name, .. }) if name == "/nonexistent/r.utrace")
        );
        let mut bytes = recording(&[loss(2_000), loss(3_000)], None);
        bytes.truncate(bytes.len() - 3);
        let (_, items, _) = replay_of(bytes, Pacing::Fast);
        assert!(items
            .last()
            .is_some_and(|i| i.as_ref().is_err_and(|e| e.contains("truncated"))));
    }

    #[test]
    fn stop_is_level_triggered_and_keeps_the_first_cause() {
        block_on(async {
            let stop = Stop::manual();
            assert_eq!(stop.cause(), None);
            let waiter = {
                let s = stop.clone();
                tokio::spawn(async move { s.wait().await })
            };
            stop.request();
            assert_eq!(waiter.await.ok(), Some(Cause::Requested));
            assert_eq!(stop.wait().await, Cause::Requested);
            assert_eq!(stop.signal(), None);
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(display_name("-"), "standard input");
    }
}
