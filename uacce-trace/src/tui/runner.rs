//! `uacce-trace top`: the I/O around the pure parts. Starts the source
//! (live tracer, or a raw recording read on a thread, paced or as fast as
//! possible), reads keys on a thread, and on a fixed tick turns the
//! [`Feed`] into a [`TopData`](super::feed::TopData) message for the
//! [`App`] and draws it. Events only feed the aggregator; drawing happens
//! on ticks and after keys, never per event.
//!
//! Exit: 0 on `q`, 128 + signal on SIGINT/SIGTERM/SIGHUP, 1 when tracing
//! cannot start (the reason is printed before the screen is taken over),
//! 2 for an unusable recording. The terminal is restored on every path.

use std::{
    io::{self, Read},
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context;
use crossterm::event::Event as TermEvent;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::{
    app::{key_to_msg, App, CostState, Effect, Msg, SourceInfo, SourceKind},
    cost::CostProbe,
    feed::Feed,
    term, view,
};
use crate::{
    commands::record::{monotonic_ns, EXIT_BAD_INPUT},
    ingest::event::Event,
    ingest::live::{Tracer, TracerOptions},
    ingest::rawfile::{RawReader, Replay, ReplayItem},
    model::ModelConfig,
};

/// Options of `top`, validated.
#[derive(Clone, Debug)]
pub struct TopOptions {
    /// Replay this raw recording (`-`: standard input) instead of tracing.
    pub replay: Option<String>,
    /// With `replay`: at the recorded pace (else as fast as possible).
    pub realtime: bool,
    /// Refresh and rate interval.
    pub interval_ns: u64,
    pub tracer: TracerOptions,
}

/// What the source thread/task sends.
enum Input {
    Batch(Vec<Event>),
    Finished,
    Failed(String),
}

/// The time the screen describes.
enum Clock {
    /// CLOCK_MONOTONIC, the clock of live event timestamps.
    Live,
    /// Event time of a replay.
    Replay {
        realtime: bool,
        start_ns: u64,
        /// First event time and when it arrived (recorded pace).
        anchor: Option<(u64, Instant)>,
        finished: bool,
    },
}

impl Clock {
    fn now(&self, feed: &Feed) -> u64 {
        match self {
            Clock::Live => monotonic_ns(),
            Clock::Replay {
                realtime,
                start_ns,
                anchor,
                finished,
            } => {
                if *finished || !*realtime {
                    return feed.latest_ns().max(*start_ns);
                }
                match anchor {
                    Some((ts, at)) => ts
                        .saturating_add(u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX)),
                    None => *start_ns,
                }
            }
        }
    }

    /// Whether ticks close intervals (else only event time does).
    fn ticks_close_intervals(&self) -> bool {
        match self {
            Clock::Live => true,
            Clock::Replay {
                realtime, finished, ..
            } => *realtime && !*finished,
        }
    }
}

/// A started source.
struct Source {
    info: SourceInfo,
    start_ns: u64,
    clock: Clock,
    rx: mpsc::Receiver<Input>,
    /// Stops the live tracer.
    stop: Option<oneshot::Sender<()>>,
    /// Live: the task forwarding the tracer's batches (ends after the stop).
    task: Option<tokio::task::JoinHandle<()>>,
    cost: Option<Result<CostProbe, String>>,
}

/// Run `top`. Returns the exit code.
pub fn run(opts: TopOptions) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(opts))
}

fn start_live(opts: &TopOptions) -> Result<Source, u8> {
    let (tracer, inspection) = match Tracer::start(opts.tracer) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("uacce-trace: cannot start tracing: {e}");
            eprintln!(
                "uacce-trace: `uacce-trace doctor` shows what this kernel offers; \
                 `uacce-trace top --replay FILE` shows a recording without root"
            );
            return Err(1);
        }
    };
    let info = SourceInfo {
        kernel: inspection.kernel.clone(),
        plan: tracer.plan().summary(),
        source: SourceKind::Live {
            hooks: tracer.hooks_attached(),
        },
        warning: tracer.plan().core_problem(),
    };
    let cost = CostProbe::start(&tracer.loaded_programs());
    let start_ns = monotonic_ns();
    let (tx, rx) = mpsc::channel::<Input>(64);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ev_tx, mut ev_rx) = mpsc::channel::<Vec<Event>>(64);
    let reader = tokio::spawn(tracer.run(ev_tx, async move {
        let _ = stop_rx.await;
    }));
    let task = tokio::spawn(async move {
        while let Some(b) = ev_rx.recv().await {
            if tx.send(Input::Batch(b)).await.is_err() {
                return;
            }
        }
        let failure = match reader.await {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => format!("tracing stopped: {e}"),
            Err(e) => format!("tracing stopped: {e}"),
        };
        let _ = tx.send(Input::Failed(failure)).await;
    });
    Ok(Source {
        info,
        start_ns,
        clock: Clock::Live,
        rx,
        stop: Some(stop_tx),
        task: Some(task),
        cost: Some(cost),
    })
}

fn start_replay(input: &str, realtime: bool) -> Result<Source, u8> {
    let name = crate::analysis::display_name(input);
    let reader: Box<dyn Read + Send> = if input == "-" {
        Box::new(io::stdin())
    } else {
        match std::fs::File::open(input) {
            Ok(f) => Box::new(io::BufReader::new(f)),
            Err(e) => {
                eprintln!("uacce-trace: {name}: {e}");
                return Err(EXIT_BAD_INPUT);
            }
        }
    };
    let (reader, header) = match RawReader::open(reader) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("uacce-trace: {name}: {e}");
            return Err(EXIT_BAD_INPUT);
        }
    };
    let short = if input == "-" {
        "stdin".to_string()
    } else {
        Path::new(input)
            .file_name()
            .map_or_else(|| input.to_string(), |n| n.to_string_lossy().into_owned())
    };
    let info = SourceInfo {
        kernel: header.kernel.clone(),
        plan: header.plan.clone(),
        source: SourceKind::Replay {
            name: short,
            realtime,
        },
        warning: None,
    };
    let (tx, rx) = mpsc::channel::<Input>(64);
    let spawned = std::thread::Builder::new()
        .name("top-replay".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            for item in Replay::new(reader) {
                match item {
                    Ok(ReplayItem::Batch { events, due_ns }) => {
                        if realtime {
                            let due = started + Duration::from_nanos(due_ns);
                            let now = std::time::Instant::now();
                            if due > now {
                                std::thread::sleep(due - now);
                            }
                        }
                        if tx.blocking_send(Input::Batch(events)).is_err() {
                            return;
                        }
                    }
                    Ok(ReplayItem::Mark(_)) => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Input::Failed(format!("{name}: {e}")));
                        return;
                    }
                }
            }
            let _ = tx.blocking_send(Input::Finished);
        });
    if let Err(e) = spawned {
        eprintln!("uacce-trace: cannot start the replay thread: {e}");
        return Err(1);
    }
    Ok(Source {
        info,
        start_ns: header.start_mono_ns,
        clock: Clock::Replay {
            realtime,
            start_ns: header.start_mono_ns,
            anchor: None,
            finished: false,
        },
        rx,
        stop: None,
        task: None,
        cost: None,
    })
}

/// Reads terminal events on a thread until `stop` is set or nobody listens.
fn spawn_keys(stop: Arc<AtomicBool>) -> mpsc::Receiver<TermEvent> {
    let (tx, rx) = mpsc::channel(64);
    let _ = std::thread::Builder::new()
        .name("top-keys".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match crossterm::event::poll(Duration::from_millis(200)) {
                    Ok(true) => match crossterm::event::read() {
                        Ok(ev) => {
                            if tx.blocking_send(ev).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    },
                    Ok(false) => {}
                    Err(_) => return,
                }
            }
        });
    rx
}

/// Ticks every interval. When the clock drives the intervals (live,
/// recorded pace) the first tick comes just after the running interval
/// ends, so that every tick closes one.
fn ticker(interval_ns: u64, clock: &Clock, feed: &Feed) -> tokio::time::Interval {
    let period = Duration::from_nanos(interval_ns.max(1_000_000));
    let first = match (clock.ticks_close_intervals(), feed.next_end_ns()) {
        (true, Some(end)) => {
            let wait = end.saturating_sub(clock.now(feed)).min(interval_ns);
            Duration::from_nanos(wait) + Duration::from_millis(2)
        }
        _ => period,
    };
    let mut t = tokio::time::interval_at(Instant::now() + first, period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

async fn run_async(opts: TopOptions) -> anyhow::Result<u8> {
    use tokio::signal::unix::{signal, SignalKind};

    // Signal handlers first, so a signal right after the start is ours.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    if opts.replay.as_deref() == Some("-") && io_is_terminal_stdin() {
        eprintln!("uacce-trace: reading a raw recording from standard input…");
    }
    let source = match &opts.replay {
        Some(input) => start_replay(input, opts.realtime),
        None => start_live(&opts),
    };
    let mut source = match source {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let mut cost = match source.cost.take() {
        Some(Ok(probe)) => Some(probe),
        Some(Err(why)) => {
            // Shown once; the header keeps saying why.
            source.cost = Some(Err(why));
            None
        }
        None => None,
    };
    let mut app = App::new(source.info.clone(), opts.interval_ns);
    if let Some(Err(why)) = &source.cost {
        app.update(Msg::Cost(CostState::Unavailable(why.clone())));
    }
    let mut feed = Feed::new(
        opts.interval_ns,
        Some(source.start_ns),
        ModelConfig::default(),
    );
    let mut guard = term::enter().context("top needs a terminal")?;
    let key_stop = Arc::new(AtomicBool::new(false));
    let mut keys = spawn_keys(key_stop.clone());
    let mut keys_open = true;
    let mut source_open = true;
    let mut tick = ticker(app.interval_ns(), &source.clock, &feed);
    app.update(Msg::Data(Box::new(feed.view(source.clock.now(&feed)))));
    let mut result: anyhow::Result<u8> = Ok(0);
    let draw = |guard: &mut term::Guard, app: &App| -> anyhow::Result<()> {
        guard
            .terminal
            .draw(|f| view::draw(f, app))
            .context("drawing the screen")?;
        Ok(())
    };
    if let Err(e) = draw(&mut guard, &app) {
        result = Err(e);
    }
    while result.is_ok() {
        let mut redraw = false;
        tokio::select! {
            m = source.rx.recv(), if source_open => match m {
                Some(Input::Batch(b)) => {
                    let mut anchored = false;
                    if let Clock::Replay { anchor: anchor @ None, .. } = &mut source.clock {
                        if let Some(first) = b.first() {
                            *anchor = Some((first.ts_ns(), Instant::now()));
                            anchored = true;
                        }
                    }
                    feed.ingest(&b);
                    if anchored {
                        tick = ticker(app.interval_ns(), &source.clock, &feed);
                    }
                }
                Some(Input::Finished) => {
                    feed.close_partial();
                    if let Clock::Replay { finished, .. } = &mut source.clock {
                        *finished = true;
                    }
                    app.update(Msg::SourceFinished);
                    app.update(Msg::Data(Box::new(feed.view(source.clock.now(&feed)))));
                    redraw = true;
                }
                Some(Input::Failed(e)) => {
                    app.update(Msg::SourceFailed(e));
                    redraw = true;
                }
                None => source_open = false,
            },
            _ = tick.tick() => {
                let now = source.clock.now(&feed);
                if source.clock.ticks_close_intervals() {
                    feed.advance_to(now);
                }
                app.update(Msg::Data(Box::new(feed.view(now))));
                if let Some(c) = cost.as_mut() {
                    app.update(Msg::Cost(c.sample(now)));
                }
                redraw = true;
            }
            k = keys.recv(), if keys_open => match k {
                Some(TermEvent::Key(key)) => {
                    if let Some(msg) = key_to_msg(&app, key) {
                        match app.update(msg) {
                            Effect::Quit => break,
                            Effect::SetInterval(ns) => {
                                feed.set_interval(ns);
                                tick = ticker(ns, &source.clock, &feed);
                            }
                            Effect::None => {}
                        }
                        redraw = true;
                    }
                }
                Some(TermEvent::Resize(..)) => redraw = true,
                Some(_) => {}
                None => keys_open = false,
            },
            _ = sigint.recv() => { result = Ok(128 + 2); break; }
            _ = sigterm.recv() => { result = Ok(128 + 15); break; }
            _ = sighup.recv() => { result = Ok(128 + 1); break; }
        }
        if redraw {
            if let Err(e) = draw(&mut guard, &app) {
                result = Err(e);
            }
        }
    }
    // Give the terminal back first, then wind the source down.
    key_stop.store(true, Ordering::Relaxed);
    drop(guard);
    if let Some(stop) = source.stop.take() {
        let _ = stop.send(());
    }
    drop(source.rx);
    if let Some(task) = source.task.take() {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    result
}

fn io_is_terminal_stdin() -> bool {
    use std::io::IsTerminal;
    io::stdin().is_terminal()
}
