//! `uacce-trace serve`: a Prometheus endpoint. Events from the live tracer
//! (or a replayed raw recording) go through the same [`Aggregator`] as
//! `record` and `top`; `GET /metrics` renders its current state in the
//! Prometheus text format ([`metrics`], where the metric names, buckets and
//! the cardinality bound are documented). A headless consumer: it reads
//! the clock, handles signals and sockets; the exposition itself is pure.
//!
//! - Listens on `127.0.0.1:19211` by default; any other address only when
//!   given with `--listen`, with a warning when it is not a loopback
//!   address (the metrics name processes and devices of the host).
//! - One task owns the aggregator: it ingests event batches and answers
//!   scrape requests from the connection tasks over a channel, so a scrape
//!   sees a consistent state and nothing is locked. Up to
//!   [`MAX_CONNECTIONS`] connections are served at once (fewer where the
//!   open-file limit cannot be raised that far: [`connection_limit`]), so
//!   a crowd of slow clients, each dropped after `http::READ_TIMEOUT`
//!   without a complete request head, does not keep a scrape waiting;
//!   beyond that, clients wait in the kernel's listen backlog.
//! - Idle processes age out every [`AGE_EVERY_NS`] (live: monotonic clock;
//!   replay: event time) after `--idle-after` without an event.
//! - `--replay FILE` ingests a raw recording (as fast as it can, or at the
//!   recorded pace with `--realtime`) and then keeps serving its final
//!   state until stopped; `uacce_trace_replay_complete` says when it is
//!   all in. A bad recording ends `serve` with exit status 2.
//! - SIGINT/SIGTERM stop it cleanly (exit 0): the tracer is stopped and
//!   drained, the listener closed (the event source handles the signals).
//!   SIGPIPE is ignored (Rust's default), so a scraper that goes away
//!   mid-response costs nothing but that response.
//!
//! Exit status: 0 after a signal, 1 when tracing cannot start, 2 for an
//! unusable recording or listen address.

pub mod http;
pub mod labels;
pub mod metrics;
pub mod selfstat;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use tokio::sync::{mpsc, Semaphore};

use crate::{
    commands::{dropped_text, open_failed},
    exit,
    ingest::event::Event,
    ingest::live::TracerOptions,
    ingest::source::{block_on, Item, Kind, LiveOptions, Origin, Source, StopOn},
    kernel::{ring::monotonic_ns, system::task_cgroup},
    model::{Aggregator, ModelConfig},
    status,
};

/// The default listen address (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:19211";
/// Connections served at once; more wait in the kernel's listen backlog.
pub const MAX_CONNECTIONS: usize = 4096;
/// File descriptors kept free of connections (the BPF maps and programs,
/// the ring, /proc reads).
const RESERVED_FDS: u64 = 128;
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
    /// Labels of the per-process families (`--labels`).
    pub labels: labels::LabelSet,
    /// Label sets per metric family (`--max-series`).
    pub max_series: usize,
    pub tracer: TracerOptions,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 19211))),
            replay: None,
            realtime: false,
            idle_after_ns: ModelConfig::default().idle_after_ns,
            max_processes: ModelConfig::default().max_processes,
            bpf_stats: false,
            labels: labels::LabelSet::default(),
            max_series: labels::DEFAULT_MAX_SERIES,
            tracer: TracerOptions::default(),
        }
    }
}

/// Run `serve`. Returns the exit code.
pub fn run(opts: ServeOptions) -> anyhow::Result<u8> {
    block_on(serve(opts))?
}

fn bad_input(msg: impl std::fmt::Display) -> u8 {
    log::error!("{msg}");
    exit::BAD_INPUT
}

async fn serve(opts: ServeOptions) -> anyhow::Result<u8> {
    let live_opts = LiveOptions {
        tracer: opts.tracer,
        print_warning: true,
        ..Default::default()
    };
    let origin = Origin::replay_or_live(opts.replay.as_deref(), opts.realtime, live_opts);
    let mut src = match Source::open(origin, StopOn::Interrupt).await {
        Ok(s) => s,
        // Stopped before the recording even started: exit 0.
        Err(e) => return Ok(open_failed(&e, exit::OK)),
    };
    let live = src.live().is_some();
    let stats_fd = if live && opts.bpf_stats {
        match selfstat::enable_bpf_stats() {
            Ok(fd) => Some(fd),
            Err(e) => {
                log::warn!(
                    "BPF run-time statistics unavailable: {e} \
                     (needs Linux 5.8+ and CAP_SYS_ADMIN)"
                );
                None
            }
        }
    } else {
        None
    };
    if live {
        status!("{}", src.started_line());
    }
    let kernel = src.meta.kernel.clone();
    let start_ns = (!live).then_some(src.meta.start_mono_ns);

    if !opts.listen.ip().is_loopback() {
        log::warn!(
            "listening on {}, which other hosts may reach; \
             the metrics name the processes and devices of this host",
            opts.listen
        );
    }
    let listener = match tokio::net::TcpListener::bind(opts.listen).await {
        Ok(l) => l,
        Err(e) => {
            let code = bad_input(format_args!("cannot listen on {}: {e}", opts.listen));
            let _ = src.stream.end().await;
            return Ok(code);
        }
    };
    let local = listener.local_addr().unwrap_or(opts.listen);
    let mode = match (live, opts.tracer.summary) {
        (false, _) => "replay",
        (true, true) => metrics::MODE_SUMMARY,
        (true, false) => "live",
    };
    status!("serving http://{local}/metrics ({mode})");

    let mut agg = Aggregator::new(ModelConfig {
        start_ns,
        idle_after_ns: opts.idle_after_ns,
        max_processes: opts.max_processes.max(1),
        ..Default::default()
    });
    let connections = connection_limit();
    let (scrape_tx, mut scrape_rx) = mpsc::channel::<http::ScrapeRequest>(connections);
    let acceptor = tokio::spawn(accept_loop(listener, scrape_tx.clone(), connections));
    let mut next_age_ns = if live {
        monotonic_ns().saturating_add(AGE_EVERY_NS)
    } else {
        start_ns.unwrap_or(0).saturating_add(AGE_EVERY_NS)
    };
    let mut age_tick = tokio::time::interval(Duration::from_secs(1));
    age_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cap = labels::SeriesCap::new(opts.max_series);
    let mut folded_said = 0u64;
    // cgroup labels, live only (a recording's processes are not ours to
    // look up): read when a process is first seen, so that one which ends
    // before the next scrape keeps its label.
    let want_cgroups = live && opts.labels.cgroup;
    let mut cgroups = Cgroups::default();
    let mut scrapes = 0u64;
    let mut events = 0u64;
    let mut source_open = true;
    let mut complete = false;
    let stop = src.stop.clone();
    let exit = loop {
        tokio::select! {
            item = src.stream.next(), if source_open => match item {
                Some(Ok(Item::Batch(batch))) => {
                    events += event_count(&batch);
                    for ev in &batch {
                        if !live && ev.ts_ns() >= next_age_ns {
                            // Event time drives ageing in a replay (one step
                            // however far the clock jumped).
                            agg.take_interval(ev.ts_ns());
                            next_age_ns = ev.ts_ns().saturating_add(AGE_EVERY_NS);
                        }
                        if want_cgroups {
                            if let Some(tgid) = ev.tgid() {
                                cgroups.see(tgid);
                            }
                        }
                        agg.ingest(ev);
                    }
                }
                Some(Ok(Item::Mark(_))) => {}
                Some(Err(e)) => break bad_input(e),
                None => {
                    source_open = false;
                    if stop.cause().is_some() {
                        break exit::OK;
                    }
                    if live {
                        // The tracer ended on its own: its error is
                        // reported below.
                        break exit::FAILURE;
                    }
                    complete = true;
                    if let Kind::Replay { name, .. } = &src.kind {
                        status!("replayed {events} events from {name}; serving until stopped");
                    }
                }
            },
            req = scrape_rx.recv() => {
                if let Some(reply) = req {
                    scrapes += 1;
                    let now = if live { monotonic_ns() } else { agg.latest_ns() };
                    let snapshot = agg.snapshot(now);
                    let (bpf, complete) = if live {
                        (selfstat::bpf_stats(stats_fd.is_some()), None)
                    } else {
                        (None, Some(complete))
                    };
                    if want_cgroups {
                        cgroups.keep_only(snapshot.processes.iter().filter_map(|p| p.proc_id.pid()));
                    }
                    let text = metrics::render(
                        &metrics::Exposition {
                            snapshot: &snapshot,
                            mode,
                            kernel: &kernel,
                            replay_complete: complete,
                            self_stats: selfstat::self_stats(),
                            bpf,
                            labels: opts.labels,
                            cgroups: &cgroups.labels,
                        },
                        &mut cap,
                    );
                    if cap.folded_total() > folded_said {
                        log::warn!(
                            "{} label sets folded into [other] series so far: a metric family \
                             reached --max-series {} (uacce_trace_series_folded_total)",
                            cap.folded_total(),
                            cap.max()
                        );
                        folded_said = cap.folded_total();
                    }
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
            _ = stop.wait() => break exit::OK,
        }
    };
    // Close the listening socket before draining the tracer.
    acceptor.abort();
    let _ = acceptor.await;
    drop(scrape_tx);
    // Stop the tracer (if it still runs) and take in what it still has:
    // those events happened before the stop, so the closing count includes
    // them (a replay's stream ends at once once stopped).
    src.stop.request();
    while let Some(item) = src.stream.next().await {
        match item {
            Ok(Item::Batch(batch)) => {
                events += event_count(&batch);
                agg.ingest_all(&batch);
            }
            Ok(Item::Mark(_)) => {}
            Err(_) => break,
        }
    }
    let ended = src.stream.end().await;
    let mut dropped = String::new();
    if live {
        match ended {
            Ok(losses) => dropped = format!(", {}", dropped_text(&losses)),
            Err(e) => {
                log::error!("{e}");
                return Ok(exit::FAILURE);
            }
        }
    }
    status!("stopped serving ({events} events{dropped}, {scrapes} scrapes)");
    Ok(exit)
}

/// Processes tracked for the cgroup label before it is dropped whatever
/// the model holds (a fork storm between two scrapes).
const MAX_CGROUP_CACHE: usize = 65_536;

/// The cgroup label of each process seen (`labels::cgroup_label` of its
/// cgroup v2 path; `""` when the process was gone before it was read).
#[derive(Default)]
struct Cgroups {
    labels: HashMap<u32, String>,
}

impl Cgroups {
    /// Read the cgroup of `tgid` unless known.
    fn see(&mut self, tgid: u32) {
        if self.labels.contains_key(&tgid) {
            return;
        }
        if self.labels.len() >= MAX_CGROUP_CACHE {
            self.labels.clear();
        }
        let label = task_cgroup(tgid)
            .map(|p| labels::cgroup_label(&p))
            .unwrap_or_default();
        self.labels.insert(tgid, label);
    }

    /// Keep the processes the model still holds, and look up those that
    /// it attributed later (IOPFs through their PASID).
    fn keep_only(&mut self, pids: impl Iterator<Item = u32>) {
        let keep: std::collections::HashSet<u32> = pids.collect();
        self.labels.retain(|p, _| keep.contains(p));
        for p in keep {
            self.see(p);
        }
    }
}

/// Events of a batch as `record` counts them: the source's loss samples
/// are not events.
fn event_count(batch: &[Event]) -> u64 {
    batch.iter().map(Event::weight).sum()
}

/// How many connections to serve at once: [`MAX_CONNECTIONS`], with the
/// soft open-file limit raised to what that needs (up to the hard limit);
/// less when the hard limit is lower, said once.
fn connection_limit() -> usize {
    let want = MAX_CONNECTIONS as u64 + RESERVED_FDS;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 16;
    }
    if lim.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own; raising the soft
        // limit up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    let n = lim
        .rlim_cur
        .saturating_sub(RESERVED_FDS)
        .clamp(16, MAX_CONNECTIONS as u64) as usize;
    if n < MAX_CONNECTIONS {
        log::warn!(
            "serving at most {n} connections at once (open-file limit {}); \
             raise LimitNOFILE / ulimit -n for more",
            lim.rlim_cur
        );
    }
    n
}

/// Accept connections, at most `limit` in service at a time, each
/// answered by its own task (which asks the serve loop for the body).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    scrapes: mpsc::Sender<http::ScrapeRequest>,
    limit: usize,
) {
    let permits = Arc::new(Semaphore::new(limit));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_listen_is_loopback() {
        let o = ServeOptions::default();
        assert!(o.listen.ip().is_loopback());
        assert_eq!(o.listen.port(), 19211);
    }
}
