//! `uacce-trace top`: the I/O around the pure parts. Opens the event source
//! ([`crate::ingest::source`]: the live tracer, or a raw recording paced or
//! as fast as possible), reads keys on a thread, and on a fixed tick turns the
//! [`Feed`] into a [`TopData`](super::feed::TopData) message for the
//! [`App`] and draws it. Events only feed the aggregator; drawing happens
//! on ticks and after keys, never per event.
//!
//! Exit: 0 on `q`, 128 + signal on SIGINT/SIGTERM/SIGHUP, 1 when tracing
//! cannot start (the reason is printed before the screen is taken over),
//! 2 for an unusable recording. The terminal is restored on every path.

use std::{
    io,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context;
use crossterm::event::Event as TermEvent;
use tokio::{sync::mpsc, time::Instant};

use super::{
    app::{key_to_msg, App, CostState, Effect, Msg, SourceInfo, SourceKind},
    cost::CostProbe,
    feed::Feed,
    term, view,
};
use crate::{
    exit,
    ingest::live::TracerOptions,
    ingest::run::Clock,
    ingest::source::{block_on, Cause, Item, Kind, LiveOptions, OpenError, Origin, Source, StopOn},
    logger,
    model::ModelConfig,
    status,
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

/// Run `top`. Returns the exit code.
pub fn run(opts: TopOptions) -> anyhow::Result<u8> {
    block_on(run_async(opts))?
}

/// Open the source and say what it is; `Err` holds the exit code.
async fn open(opts: &TopOptions) -> anyhow::Result<Result<(Source, SourceInfo), u8>> {
    if opts.replay.as_deref() == Some("-") && io_is_terminal_stdin() {
        status!("reading a raw recording from standard input…");
    }
    let live = LiveOptions {
        tracer: opts.tracer,
        // Shown in the header instead.
        print_warning: false,
        ..Default::default()
    };
    let origin = Origin::replay_or_live(opts.replay.as_deref(), opts.realtime, live);
    let src = match Source::open(origin, StopOn::InterruptOrHangup).await {
        Ok(s) => s,
        Err(OpenError::Signals(e)) => return Err(e.into()),
        Err(OpenError::Stopped { cause, .. }) => {
            return Ok(Err(match cause {
                Cause::Signal(sig) => exit::signalled(sig),
                Cause::Requested => exit::OK,
            }))
        }
        Err(e @ OpenError::Input { .. }) => {
            status!("{e}");
            return Ok(Err(exit::BAD_INPUT));
        }
        Err(e) => {
            status!("cannot start tracing: {e}");
            status!(
                "`uacce-trace doctor` shows what this kernel offers; \
                 `uacce-trace top --replay FILE` shows a recording without root"
            );
            return Ok(Err(exit::FAILURE));
        }
    };
    let source = match (&src.kind, opts.replay.as_deref()) {
        (Kind::Live(live), _) => SourceKind::Live {
            hooks: live.hooks_attached,
            summary: opts.tracer.summary,
        },
        (Kind::Replay { .. }, input) => SourceKind::Replay {
            name: short_name(input.unwrap_or("-")),
            realtime: opts.realtime,
        },
    };
    let info = SourceInfo {
        kernel: src.meta.kernel.clone(),
        plan: src.meta.plan.clone(),
        source,
        warning: src.live().and_then(|l| l.warning.clone()),
    };
    Ok(Ok((src, info)))
}

/// The file name of a recording (`stdin` for standard input).
fn short_name(input: &str) -> String {
    if input == "-" {
        "stdin".to_string()
    } else {
        Path::new(input)
            .file_name()
            .map_or_else(|| input.to_string(), |n| n.to_string_lossy().into_owned())
    }
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
            let wait = end
                .saturating_sub(clock.now(feed.latest_ns()))
                .min(interval_ns);
            Duration::from_nanos(wait) + Duration::from_millis(2)
        }
        _ => period,
    };
    let mut t = tokio::time::interval_at(Instant::now() + first, period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

async fn run_async(opts: TopOptions) -> anyhow::Result<u8> {
    let (mut src, info) = match open(&opts).await? {
        Ok(opened) => opened,
        Err(code) => return Ok(code),
    };
    let probe = src.live().map(|l| CostProbe::start(&l.loaded_programs));
    let mut app = App::new(info, opts.interval_ns);
    let mut cost = match probe {
        Some(Ok(probe)) => Some(probe),
        Some(Err(why)) => {
            // Shown once; the header keeps saying why.
            app.update(Msg::Cost(CostState::Unavailable(why)));
            None
        }
        None => None,
    };
    let mut feed = Feed::new(
        opts.interval_ns,
        Some(src.meta.start_mono_ns),
        ModelConfig::default(),
    );
    let stop = src.stop.clone();
    let mut guard = term::enter().context("top needs a terminal")?;
    // Diagnostics wait until the terminal is ours again.
    let held = logger::hold();
    let key_stop = Arc::new(AtomicBool::new(false));
    let mut keys = spawn_keys(key_stop.clone());
    let mut keys_open = true;
    let mut source_open = true;
    let now = |src: &Source, feed: &Feed| src.stream.clock().now(feed.latest_ns());
    let mut tick = ticker(app.interval_ns(), src.stream.clock(), &feed);
    app.update(Msg::Data(Box::new(feed.view(now(&src, &feed)))));
    let mut result: anyhow::Result<u8> = Ok(exit::OK);
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
    let mut failed = false;
    while result.is_ok() {
        let mut redraw = false;
        let was_anchored = src.stream.clock().anchored();
        tokio::select! {
            m = src.stream.next(), if source_open => match m {
                Some(Ok(Item::Batch(b))) => {
                    feed.ingest(&b);
                    if !was_anchored && src.stream.clock().anchored() {
                        tick = ticker(app.interval_ns(), src.stream.clock(), &feed);
                    }
                }
                Some(Ok(Item::Mark(_))) => {}
                Some(Err(e)) => {
                    failed = true;
                    app.update(Msg::SourceFailed(e.to_string()));
                    redraw = true;
                }
                None => {
                    source_open = false;
                    if src.live().is_some() {
                        // The tracer ended on its own.
                        if let Err(e) = src.stream.end().await {
                            app.update(Msg::SourceFailed(format!("tracing stopped: {e}")));
                            redraw = true;
                        }
                    } else if !failed && stop.cause().is_none() {
                        feed.close_partial();
                        app.update(Msg::SourceFinished);
                        app.update(Msg::Data(Box::new(feed.view(now(&src, &feed)))));
                        redraw = true;
                    }
                }
            },
            _ = tick.tick() => {
                let now = now(&src, &feed);
                if src.stream.clock().ticks_close_intervals() {
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
                                tick = ticker(ns, src.stream.clock(), &feed);
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
            cause = stop.wait() => {
                result = Ok(match cause {
                    Cause::Signal(sig) => exit::signalled(sig),
                    Cause::Requested => exit::OK,
                });
                break;
            }
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
    drop(held);
    let _ = tokio::time::timeout(Duration::from_secs(2), src.stream.end()).await;
    result
}

fn io_is_terminal_stdin() -> bool {
    use std::io::IsTerminal;
    io::stdin().is_terminal()
}
