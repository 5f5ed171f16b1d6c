//! `uacce-trace serve`: a Prometheus endpoint. Events from the live tracer
//! (or a replayed raw recording) go through the same [`Aggregator`] as
//! `record` and `top`; `GET /metrics` renders its current state in the
//! Prometheus text format ([`metrics`], where the metric names, buckets and
//! the cardinality bound are documented). A headless consumer: it reads
//! the clock, handles signals and sockets; the exposition itself is pure.
//!
//! - Listens on `127.0.0.1:9435` by default; any other address only when
//!   given with `--listen`, with a warning when it is not a loopback
//!   address (the metrics name processes and devices of the host).
//! - One task owns the aggregator: it ingests event batches and answers
//!   scrape requests from the connection tasks over a channel, so a scrape
//!   sees a consistent state and nothing is locked. At most
//!   [`MAX_CONNECTIONS`] connections are served at once; further clients
//!   wait in the kernel's listen backlog until one finishes.
//! - Idle processes age out every [`AGE_EVERY_NS`] (live: monotonic clock;
//!   replay: event time) after `--idle-after` without an event.
//! - `--replay FILE` ingests a raw recording (as fast as it can, or at the
//!   recorded pace with `--realtime`) and then keeps serving its final
//!   state until stopped; `uacce_trace_replay_complete` says when it is
//!   all in. A bad recording ends `serve` with exit status 2.
//! - SIGINT/SIGTERM stop it cleanly (exit 0): the tracer is stopped and
//!   drained, the listener closed. SIGPIPE is ignored (Rust's default), so a
//!   scraper that goes away mid-response costs nothing but that response.
//!
//! Exit status: 0 after a signal, 1 when tracing cannot start, 2 for an
//! unusable recording or listen address.

pub mod http;
pub mod metrics;
pub mod selfstat;

use std::{
    io::{self, Read},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, Semaphore};

use crate::{
    commands::record::{monotonic_ns, EXIT_BAD_INPUT},
    ingest::event::Event,
    ingest::live::TracerOptions,
    ingest::rawfile::{RawError, RawReader, Replay, ReplayItem},
    model::{Aggregator, ModelConfig},
};

/// The default listen address (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9435";
/// Connections served at once; more wait in the kernel's listen backlog.
pub const MAX_CONNECTIONS: usize = 16;
/// How often idle processes are aged out.
pub const AGE_EVERY_NS: u64 = 10_000_000_000;

/// Options of `serve`, validated.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Replay this raw recording (`-`: standard input) instead of tracing.
    pub replay: Option<String>,
    /// With `replay`: at the recorded pace.
    pub realtime: bool,
    /// A process idle this long (and holding no pinned pages) ages out.
    pub idle_after_ns: u64,
    /// Processes held with their own series.
    pub max_processes: usize,
    /// Ask the kernel for BPF run-time statistics (live only).
    pub bpf_stats: bool,
    pub tracer: TracerOptions,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9435))),
            replay: None,
            realtime: false,
            idle_after_ns: ModelConfig::default().idle_after_ns,
            max_processes: ModelConfig::default().max_processes,
            bpf_stats: false,
            tracer: TracerOptions::default(),
        }
    }
}

/// Where events come from.
enum Source {
    Live {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        reader: tokio::task::JoinHandle<
            Result<crate::ingest::losses::Ledger, crate::ingest::live::SourceError>,
        >,
        stats_fd: Option<std::os::fd::OwnedFd>,
    },
    Replay {
        name: String,
        producer: Option<tokio::task::JoinHandle<Result<u64, RawError>>>,
        complete: bool,
    },
}

/// Run `serve`. Returns the exit code.
pub fn run(opts: ServeOptions) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let code = rt.block_on(serve(opts));
    // A replay producer blocked reading standard input must not keep the
    // process alive after a signal.
    rt.shutdown_timeout(Duration::from_millis(100));
    code
}

fn bad_input(msg: impl std::fmt::Display) -> u8 {
    eprintln!("uacce-trace: error: {msg}");
    EXIT_BAD_INPUT
}

/// Feed a recording's batches into `tx`, at the recorded pace when
/// `realtime`; stops early when the receiver is gone. Returns the events sent.
fn produce<R: Read>(
    reader: RawReader<R>,
    tx: &mpsc::Sender<Vec<Event>>,
    realtime: bool,
) -> Result<u64, RawError> {
    let started = Instant::now();
    let mut sent = 0u64;
    for item in Replay::new(reader) {
        let ReplayItem::Batch { events, due_ns } = item? else {
            continue;
        };
        if realtime {
            let due = started + Duration::from_nanos(due_ns);
            loop {
                let now = Instant::now();
                if now >= due || tx.is_closed() {
                    break;
                }
                std::thread::sleep((due - now).min(Duration::from_millis(50)));
            }
        }
        sent += events.len() as u64;
        if tx.blocking_send(events).is_err() {
            break;
        }
    }
    Ok(sent)
}

async fn serve(opts: ServeOptions) -> anyhow::Result<u8> {
    use tokio::signal::unix::{signal, SignalKind};
    // Signal handlers first, so a signal right after the start is ours.
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;

    let (tx, mut rx) = mpsc::channel::<Vec<Event>>(64);
    let mut kernel = String::new();
    let mut start_ns = None;
    let mut source = match &opts.replay {
        Some(input) => {
            let name = crate::analysis::display_name(input);
            // Opening and reading happen on a blocking thread: a stalled
            // standard input must not keep signals from being handled.
            let (header_tx, header_rx) = tokio::sync::oneshot::channel();
            let (input, realtime, tx) = (input.clone(), opts.realtime, tx.clone());
            let producer = tokio::task::spawn_blocking(move || {
                let opened = if input == "-" {
                    Ok(Box::new(io::stdin()) as Box<dyn Read + Send>)
                } else {
                    std::fs::File::open(&input)
                        .map(|f| Box::new(io::BufReader::new(f)) as Box<dyn Read + Send>)
                        .map_err(RawError::from)
                };
                match opened.and_then(RawReader::open) {
                    Ok((reader, header)) => {
                        let _ = header_tx.send(Ok(header));
                        produce(reader, &tx, realtime)
                    }
                    Err(e) => {
                        let _ = header_tx.send(Err(e));
                        Ok(0)
                    }
                }
            });
            let header = tokio::select! {
                h = header_rx => h,
                // Stopped before the recording even started.
                _ = int.recv() => return Ok(0),
                _ = term.recv() => return Ok(0),
            };
            let header = match header {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => return Ok(bad_input(format_args!("{name}: {e}"))),
                Err(_) => return Ok(bad_input(format_args!("{name}: the reader failed"))),
            };
            kernel.clone_from(&header.kernel);
            start_ns = Some(header.start_mono_ns);
            Source::Replay {
                name,
                producer: Some(producer),
                complete: false,
            }
        }
        None => {
            let (tracer, inspection) = match crate::ingest::live::Tracer::start(opts.tracer) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("uacce-trace: {e}");
                    return Ok(1);
                }
            };
            if let Some(problem) = tracer.plan().core_problem() {
                eprintln!("uacce-trace: warning: {problem}");
            }
            kernel.clone_from(&inspection.kernel);
            let stats_fd = if opts.bpf_stats {
                match selfstat::enable_bpf_stats() {
                    Ok(fd) => Some(fd),
                    Err(e) => {
                        eprintln!(
                            "uacce-trace: warning: BPF run-time statistics unavailable: {e} \
                             (needs Linux 5.8+ and CAP_SYS_ADMIN)"
                        );
                        None
                    }
                }
            } else {
                None
            };
            eprintln!(
                "uacce-trace: tracing started ({} hooks attached; {})",
                tracer.hooks_attached(),
                tracer.plan().summary()
            );
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let tx = tx.clone();
            Source::Live {
                stop: Some(stop_tx),
                reader: tokio::spawn(tracer.run(tx, async move {
                    let _ = stop_rx.await;
                })),
                stats_fd,
            }
        }
    };
    // Only the source's clones keep the channel open.
    drop(tx);

    if !opts.listen.ip().is_loopback() {
        eprintln!(
            "uacce-trace: warning: listening on {}, which other hosts may reach; \
             the metrics name the processes and devices of this host",
            opts.listen
        );
    }
    let listener = match tokio::net::TcpListener::bind(opts.listen).await {
        Ok(l) => l,
        Err(e) => {
            let code = bad_input(format_args!("cannot listen on {}: {e}", opts.listen));
            stop_source(&mut source, &mut rx).await;
            return Ok(code);
        }
    };
    let local = listener.local_addr().unwrap_or(opts.listen);
    let mode = if opts.replay.is_some() {
        "replay"
    } else {
        "live"
    };
    eprintln!("uacce-trace: serving http://{local}/metrics ({mode})");

    let mut agg = Aggregator::new(ModelConfig {
        start_ns,
        idle_after_ns: opts.idle_after_ns,
        max_processes: opts.max_processes.max(1),
        ..Default::default()
    });
    let (scrape_tx, mut scrape_rx) = mpsc::channel::<http::ScrapeRequest>(MAX_CONNECTIONS);
    let acceptor = tokio::spawn(accept_loop(listener, scrape_tx.clone()));
    let live = matches!(source, Source::Live { .. });
    let mut next_age_ns = if live {
        monotonic_ns().saturating_add(AGE_EVERY_NS)
    } else {
        start_ns.unwrap_or(0).saturating_add(AGE_EVERY_NS)
    };
    let mut age_tick = tokio::time::interval(Duration::from_secs(1));
    age_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut scrapes = 0u64;
    let mut events = 0u64;
    let mut source_open = true;
    let exit = loop {
        tokio::select! {
            batch = rx.recv(), if source_open => match batch {
                Some(batch) => {
                    events += batch.len() as u64;
                    for ev in &batch {
                        if !live && ev.ts_ns() >= next_age_ns {
                            // Event time drives ageing in a replay (one step
                            // however far the clock jumped).
                            agg.take_interval(ev.ts_ns());
                            next_age_ns = ev.ts_ns().saturating_add(AGE_EVERY_NS);
                        }
                        agg.ingest(ev);
                    }
                }
                None => {
                    source_open = false;
                    match &mut source {
                        Source::Replay { name, producer, complete } => {
                            let res = match producer.take() {
                                Some(p) => p.await,
                                None => Ok(Ok(0)),
                            };
                            match res {
                                Ok(Ok(events)) => {
                                    *complete = true;
                                    eprintln!(
                                        "uacce-trace: replayed {events} events from {name}; \
                                         serving until stopped"
                                    );
                                }
                                Ok(Err(e)) => break bad_input(format_args!("{name}: {e}")),
                                Err(e) => break bad_input(format_args!("{name}: {e}")),
                            }
                        }
                        // The tracer ended on its own: its error is
                        // reported below.
                        Source::Live { .. } => break 1,
                    }
                }
            },
            req = scrape_rx.recv() => {
                if let Some(reply) = req {
                    scrapes += 1;
                    let now = if live { monotonic_ns() } else { agg.latest_ns() };
                    let snapshot = agg.snapshot(now);
                    let (bpf, complete) = match &source {
                        Source::Live { stats_fd, .. } => {
                            (selfstat::bpf_stats(stats_fd.is_some()), None)
                        }
                        Source::Replay { complete, .. } => (None, Some(*complete)),
                    };
                    let text = metrics::render(&metrics::Exposition {
                        snapshot: &snapshot,
                        mode,
                        kernel: &kernel,
                        replay_complete: complete,
                        self_stats: selfstat::self_stats(),
                        bpf,
                    });
                    let _ = reply.send(text);
                }
            }
            _ = age_tick.tick(), if live => {
                let now = monotonic_ns();
                if now >= next_age_ns {
                    agg.take_interval(now);
                    next_age_ns = now.saturating_add(AGE_EVERY_NS);
                }
            }
            _ = int.recv() => break 0,
            _ = term.recv() => break 0,
        }
    };
    // Close the listening socket before draining the tracer.
    acceptor.abort();
    let _ = acceptor.await;
    drop(scrape_tx);
    if source_open {
        // Stop the tracer and drain what it still has.
        stop_source(&mut source, &mut rx).await;
    }
    let mut dropped = String::new();
    if let Source::Live { reader, .. } = source {
        match reader.await {
            Ok(Ok(losses)) => {
                dropped = format!(", {}", crate::commands::trace::dropped_text(&losses))
            }
            Ok(Err(e)) => {
                eprintln!("uacce-trace: error: {e}");
                return Ok(1);
            }
            Err(e) => {
                eprintln!("uacce-trace: error: the tracer failed: {e}");
                return Ok(1);
            }
        }
    }
    eprintln!("uacce-trace: stopped serving ({events} events{dropped}, {scrapes} scrapes)");
    Ok(exit)
}

/// Accept connections, at most [`MAX_CONNECTIONS`] in service at a time,
/// each answered by its own task (which asks the serve loop for the body).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    scrapes: mpsc::Sender<http::ScrapeRequest>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let scrapes = scrapes.clone();
                tokio::spawn(async move {
                    http::handle(stream, scrapes).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Stop the source and drain its channel.
async fn stop_source(source: &mut Source, rx: &mut mpsc::Receiver<Vec<Event>>) {
    match source {
        Source::Live { stop, .. } => {
            if let Some(s) = stop.take() {
                let _ = s.send(());
            }
            while rx.recv().await.is_some() {}
        }
        Source::Replay { .. } => {
            // The producer stops at its next send once the receiver is gone.
            rx.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_listen_is_loopback() {
        let o = ServeOptions::default();
        assert!(o.listen.ip().is_loopback());
        assert_eq!(o.listen.port(), 9435);
    }
}
