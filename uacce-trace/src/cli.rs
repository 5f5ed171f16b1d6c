//! Command line: clap definitions, validation into typed options, dispatch.
//! `run` returns the process exit code: 0 ok, 1 failure, 2 bad usage/input.

use std::io;

use clap::{Parser, Subcommand};

use std::path::PathBuf;

use crate::{
    analysis,
    commands::record::{self, RecordOptions},
    commands::trace,
    commands::{self, doctor},
    formats::Format,
    ingest::live::TracerOptions,
    kernel::plan::HookPreference,
    model::Kind,
};

const ABOUT: &str = "See IO page faults (IOPFs) and page pinning of SVA accelerators \
(uacce, idxd, AMD PPR) per process, with eBPF.";

const LONG_ABOUT: &str = "See IO page faults (IOPFs) and page pinning of SVA accelerators \
(uacce, idxd, AMD PPR) per process, with eBPF.

Hooks are chosen per kernel at run time (fentry/fexit where permitted, else \
kprobe/kretprobe); `uacce-trace doctor` shows the plan and why. Tracing needs \
root, or CAP_BPF and CAP_PERFMON.";

#[derive(Parser, Debug)]
#[command(name = "uacce-trace", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Live per-process view of IOPFs and pinning (q quits, ? help).
    ///
    /// A table of the processes with IOPFs or pins: faults per second and
    /// in all, IOPF latency percentiles, pinned pages, pin calls per
    /// second, faults inside pinned ranges; Enter shows one process in
    /// detail (latency histograms, the last minute, hottest faulting
    /// regions, pinned ranges, PASIDs). The header shows the hook plan,
    /// events/s, drops, unanswered faults and the BPF programs' own cost.
    ///
    /// Live tracing needs root (or CAP_BPF and CAP_PERFMON); --replay shows
    /// a raw recording (`record --raw`, `-` for standard input, e.g. piped
    /// from another machine) without privileges. Exit status 1 when tracing
    /// cannot start, 2 for an unusable recording.
    Top {
        /// Show a raw recording (`-`: standard input) instead of tracing.
        #[arg(long, value_name = "FILE|-")]
        replay: Option<String>,
        /// With --replay: deliver events at the recorded pace (the default).
        #[arg(long, requires = "replay", conflicts_with = "fast")]
        realtime: bool,
        /// With --replay: read the whole recording as fast as possible.
        #[arg(long, requires = "replay")]
        fast: bool,
        /// Refresh and rate interval, e.g. 1s, 500ms (+/- change it).
        #[arg(long, default_value = "1s", value_parser = commands::parse_duration)]
        interval: u64,
        /// Which hook types to use.
        #[arg(long, value_enum, default_value_t = HookPreference::Auto)]
        hooks: HookPreference,
        /// Time calls of a user-space function as requests (repeatable):
        /// BINARY:SYMBOL[:PID] (a program or library, a function in it,
        /// optionally one process only), or a preset resolved in the
        /// libraries running processes have mapped: uadk (libwd's
        /// wd_do_*_sync), qpl (qpl_execute_job, qpl_submit_job,
        /// qpl_wait_job), dml (dml_execute_job). Each request is joined with
        /// the IO page faults of its process reported inside it.
        #[arg(long = "op", value_name = "BINARY:SYMBOL[:PID]|uadk|qpl|dml", value_parser = crate::kernel::ops::parse_op, conflicts_with = "replay")]
        op: Vec<crate::kernel::ops::OpArg>,
        /// Ring buffer size: a power of two of at least 4K, e.g. 256K, 4M, 64M.
        #[arg(long, default_value = "4M", value_parser = commands::parse_ring_size)]
        ring_size: u32,
    },
    /// Check what this kernel offers and show the hook plan.
    ///
    /// Prints kernel version, BTF, ring buffer, tracefs, kprobes, fentry
    /// permission, privileges, the /proc/vmstat pin counters, the running
    /// kernel's FOLL_LONGTERM bit, and for every hooked function the chosen
    /// hook or why none fits. Exit status 0 when pin and unpin events can be
    /// traced, 1 otherwise.
    Doctor {
        /// Which hook types the plan may use.
        #[arg(long, value_enum, default_value_t = HookPreference::Auto)]
        hooks: HookPreference,
        /// Machine-readable output (one JSON object).
        #[arg(long)]
        json: bool,
        /// Write the facts learnt about this kernel as JSON to FILE (`-`:
        /// stdout, instead of the report), for the planner's tests.
        #[arg(long, value_name = "FILE", hide = true)]
        dump_facts: Option<std::path::PathBuf>,
    },
    /// Print one line per pin/unpin call until Ctrl-C or SIGTERM.
    ///
    /// Human-readable columns by default, NDJSON with stable field names
    /// with --json (event, ts_ns, tgid, tid, comm, func, hook, start,
    /// nr_pages, ret, pinned, gup_flags, longterm, latency_ns). With --op,
    /// also one line per request (`"event":"request"`: op, ts_ns,
    /// latency_ns, tgid, tid, comm, ret, faults, fault_ns: the IO page
    /// faults of its process reported inside it and their time inside it).
    /// A summary with the number of events and drops goes to stderr at the
    /// end.
    Trace {
        /// Which hook types to use (forcing one is for tests and odd kernels).
        #[arg(long, value_enum, default_value_t = HookPreference::Auto)]
        hooks: HookPreference,
        /// NDJSON output.
        #[arg(long)]
        json: bool,
        /// Time calls of a user-space function as requests (repeatable):
        /// BINARY:SYMBOL[:PID] (a program or library, a function in it,
        /// optionally one process only), or a preset resolved in the
        /// libraries running processes have mapped: uadk (libwd's
        /// wd_do_*_sync), qpl (qpl_execute_job, qpl_submit_job,
        /// qpl_wait_job), dml (dml_execute_job). Each request is joined with
        /// the IO page faults of its process reported inside it.
        #[arg(long = "op", value_name = "BINARY:SYMBOL[:PID]|uadk|qpl|dml", value_parser = crate::kernel::ops::parse_op)]
        op: Vec<crate::kernel::ops::OpArg>,
        /// Ring buffer size: a power of two of at least 4K, e.g. 256K, 4M, 64M.
        #[arg(long, default_value = "4M", value_parser = commands::parse_ring_size)]
        ring_size: u32,
    },
    /// Record latency histograms (or the raw event stream) to a file.
    ///
    /// One histogram per interval and series (kind/process/device: IOPF
    /// report-to-response, pin, unpin and uacce_ctrl ioctl latencies), as an
    /// HdrHistogram interval log (hlog), NDJSON, CSV, or the raw decoded
    /// events (raw; replays through `record --replay` and `report`). The
    /// format follows the output's extension (.hlog, .json, .csv, .utrace)
    /// unless --format says otherwise. The file appears complete when
    /// recording ends (also on Ctrl-C/SIGTERM), never truncated. SIGUSR1
    /// closes the current interval (a benchmark phase mark).
    ///
    /// With `-- COMMAND ARGS...` the command is started once the hooks are
    /// attached; only it and its descendants are recorded (followed from
    /// the kernel's fork and exit events, so even a child that lives for
    /// microseconds is kept), recording stops when it exits, and the exit
    /// status is the command's. Exit status 2
    /// for unusable input or output files, 1 when tracing cannot start.
    Record {
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// Output format (default: from the extension, else hlog).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Same as --format raw.
        #[arg(long, conflicts_with = "format")]
        raw: bool,
        /// Interval length, e.g. 1s, 500ms, 1m.
        #[arg(long, default_value = "1s", value_parser = commands::parse_duration)]
        interval: u64,
        /// Stop after this long (e.g. 30s, 5m).
        #[arg(long, value_parser = commands::parse_duration)]
        duration: Option<u64>,
        /// Read events from a raw recording (`-`: standard input) instead of tracing.
        #[arg(long, value_name = "FILE|-", conflicts_with = "command")]
        replay: Option<String>,
        /// With --replay: deliver events at the recorded pace.
        #[arg(long, requires = "replay")]
        realtime: bool,
        /// Which hook types to use.
        #[arg(long, value_enum, default_value_t = HookPreference::Auto)]
        hooks: HookPreference,
        /// Time calls of a user-space function as requests (repeatable):
        /// BINARY:SYMBOL[:PID] (a program or library, a function in it,
        /// optionally one process only), or a preset resolved in the
        /// libraries running processes have mapped: uadk (libwd's
        /// wd_do_*_sync), qpl (qpl_execute_job, qpl_submit_job,
        /// qpl_wait_job), dml (dml_execute_job). Each request is joined with
        /// the IO page faults of its process reported inside it.
        #[arg(long = "op", value_name = "BINARY:SYMBOL[:PID]|uadk|qpl|dml", value_parser = crate::kernel::ops::parse_op, conflicts_with = "replay")]
        op: Vec<crate::kernel::ops::OpArg>,
        /// Ring buffer size: a power of two of at least 4K, e.g. 256K, 4M, 64M.
        #[arg(long, default_value = "4M", value_parser = commands::parse_ring_size)]
        ring_size: u32,
        /// Command to run and trace (with its descendants).
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Percentile tables of recordings (hlog, json or raw).
    ///
    /// Per tag (all intervals merged): count, errors, min, mean, p50, p90,
    /// p99, p99.9, max; each percentile with its 95 % confidence interval by
    /// order statistics (`12.3µs [11.8, 13.1]`, same unit; `[11.8, —)`: too
    /// few samples for an upper bound). For raw recordings also the pin
    /// ledger per process, the faults inside pinned ranges and the hottest
    /// faulting regions. Exit status 2 when an input is unusable.
    Report {
        /// Recordings to report on (`-`: standard input).
        #[arg(value_name = "FILE")]
        files: Vec<String>,
        /// A raw recording to report on (same as naming it as a FILE).
        #[arg(long, value_name = "FILE|-")]
        replay: Option<String>,
    },
    /// Did a change remove the IOPF jitter? BASELINE vs CANDIDATE.
    ///
    /// Per series (matched by kind, command name and device: pids differ
    /// between runs) the change of count, p50, p99, p99.9 and max, each
    /// percentile with its 95 % confidence interval (order statistics); per
    /// process a verdict (eliminated, reduced, unchanged, inconclusive,
    /// worse, missing) with the rule printed. Reduced (worse) needs the
    /// change beyond --tolerance AND the CANDIDATE interval entirely below
    /// (above) the BASELINE one; a change beyond the tolerance that the
    /// intervals do not back (they overlap, or one rests on too few samples
    /// to be closed: p99.9 needs 3688) is inconclusive. min, mean and max
    /// have no interval: the change alone decides. Exit status 0 when the
    /// goal is met, 1 when it is not, 2 when an input is unusable, 3 when
    /// it is not met only because of inconclusive verdicts.
    Compare {
        /// Recording before the change (hlog, json or raw; `-`: stdin).
        baseline: String,
        /// Recording after the change.
        candidate: String,
        /// The statistic the verdict compares.
        #[arg(long, default_value = "p99.9", value_parser = clap::builder::PossibleValuesParser::new(analysis::compare::VERDICT_METRICS))]
        metric: String,
        /// Absolute goal: every process's CANDIDATE metric at most this (e.g. 50us).
        #[arg(long, value_name = "LATENCY", value_parser = commands::parse_latency)]
        max: Option<u64>,
        /// Relative change, in percent, that counts as reduced or worse.
        #[arg(long, default_value_t = 10.0)]
        tolerance: f64,
        /// Which series the verdict looks at.
        #[arg(long, default_value = "iopf", value_parser = parse_kind)]
        kind: Kind,
        /// Do not fail the goal when CANDIDATE lost records.
        #[arg(long)]
        allow_drops: bool,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Serve Prometheus metrics on http://127.0.0.1:9435/metrics.
    ///
    /// Per process (and device): IOPF, pin, unpin and uacce_ctrl latency
    /// histograms in seconds (1-2-5 buckets from 1us to 10s), error and page
    /// counters, pinned pages now; drops, unanswered faults and the tool's
    /// own CPU time, memory and BPF run time. Processes idle for
    /// --idle-after age out of the series (at most --max-processes are
    /// kept). Loopback only unless --listen names another address.
    ///
    /// Live tracing needs root (or CAP_BPF and CAP_PERFMON); --replay serves
    /// a raw recording, then keeps serving its final state. Stops on
    /// SIGINT/SIGTERM (exit 0). Exit status 1 when tracing cannot start, 2
    /// for an unusable recording or listen address.
    Serve {
        /// Address and port to listen on (e.g. 127.0.0.1:9435, [::1]:9435, 0.0.0.0:9435).
        #[arg(long, default_value = crate::commands::serve::DEFAULT_LISTEN, value_name = "ADDR:PORT")]
        listen: std::net::SocketAddr,
        /// Serve a raw recording (`-`: standard input) instead of tracing.
        #[arg(long, value_name = "FILE|-")]
        replay: Option<String>,
        /// With --replay: deliver events at the recorded pace.
        #[arg(long, requires = "replay")]
        realtime: bool,
        /// A process without events for this long (and no pinned pages) ages out.
        #[arg(long, default_value = "60s", value_parser = commands::parse_duration)]
        idle_after: u64,
        /// Most processes with series of their own (the least recent go first).
        #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        max_processes: u32,
        /// Have the kernel time BPF programs while serving (Linux 5.8+; small
        /// cost on every BPF program of the system).
        #[arg(long, conflicts_with = "replay")]
        bpf_stats: bool,
        /// Which hook types to use.
        #[arg(long, value_enum, default_value_t = HookPreference::Auto)]
        hooks: HookPreference,
        /// Time calls of a user-space function as requests (repeatable):
        /// BINARY:SYMBOL[:PID] (a program or library, a function in it,
        /// optionally one process only), or a preset resolved in the
        /// libraries running processes have mapped: uadk (libwd's
        /// wd_do_*_sync), qpl (qpl_execute_job, qpl_submit_job,
        /// qpl_wait_job), dml (dml_execute_job). Each request is joined with
        /// the IO page faults of its process reported inside it.
        #[arg(long = "op", value_name = "BINARY:SYMBOL[:PID]|uadk|qpl|dml", value_parser = crate::kernel::ops::parse_op, conflicts_with = "replay")]
        op: Vec<crate::kernel::ops::OpArg>,
        /// Ring buffer size: a power of two of at least 4K, e.g. 256K, 4M, 64M.
        #[arg(long, default_value = "4M", value_parser = commands::parse_ring_size)]
        ring_size: u32,
    },
    /// Benchmark drivers for `cargo xtask bench` (JSON on stdout).
    #[cfg(feature = "bench")]
    #[command(hide = true, subcommand)]
    Bench(crate::commands::bench::BenchCommand),
}

/// Parse a series kind name.
pub fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::from_name(s).ok_or_else(|| {
        format!("`{s}`: expected iopf, pin, unpin, uacce_ctrl, op, op_faulted or op_clean")
    })
}

/// Run a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> u8 {
    let result = match cli.command {
        Command::Top {
            replay,
            realtime: _,
            fast,
            interval,
            hooks,
            op,
            ring_size,
        } => crate::tui::run(crate::tui::TopOptions {
            replay,
            realtime: !fast,
            interval_ns: interval,
            tracer: TracerOptions {
                hooks,
                ring_bytes: ring_size,
                ops: match resolve_ops(op) {
                    Ok(o) => o,
                    Err(code) => return code,
                },
            },
        }),
        Command::Doctor {
            hooks,
            json,
            dump_facts,
        } => {
            let stdout = io::stdout();
            doctor::run(hooks, json, dump_facts.as_deref(), &mut stdout.lock())
                .map_err(anyhow::Error::from)
        }
        Command::Trace {
            hooks,
            json,
            op,
            ring_size,
        } => trace::run(
            TracerOptions {
                hooks,
                ring_bytes: ring_size,
                ops: match resolve_ops(op) {
                    Ok(o) => o,
                    Err(code) => return code,
                },
            },
            json,
        ),
        Command::Record {
            output,
            format,
            raw,
            interval,
            duration,
            replay,
            realtime,
            hooks,
            op,
            ring_size,
            command,
        } => {
            let ops = match resolve_ops(op) {
                Ok(o) => o,
                Err(code) => return code,
            };
            let format = if raw {
                Format::Raw
            } else {
                format
                    .or_else(|| Format::from_path(&output))
                    .unwrap_or(Format::Hlog)
            };
            record::run(RecordOptions {
                output,
                format,
                interval_ns: interval,
                duration_ns: duration,
                replay,
                realtime,
                tracer: TracerOptions {
                    hooks,
                    ring_bytes: ring_size,
                    ops,
                },
                command,
            })
        }
        Command::Report { mut files, replay } => {
            files.extend(replay);
            let stdout = io::stdout();
            Ok(analysis::report_command(&files, &mut stdout.lock()))
        }
        Command::Compare {
            baseline,
            candidate,
            metric,
            max,
            tolerance,
            kind,
            allow_drops,
            json,
        } => {
            let opts = analysis::compare::CompareOptions {
                metric,
                max_ns: max,
                tolerance_pct: tolerance,
                kind,
                allow_drops,
            };
            let stdout = io::stdout();
            Ok(analysis::compare_command(
                &baseline,
                &candidate,
                &opts,
                json,
                &mut stdout.lock(),
            ))
        }
        Command::Serve {
            listen,
            replay,
            realtime,
            idle_after,
            max_processes,
            bpf_stats,
            hooks,
            op,
            ring_size,
        } => crate::commands::serve::run(crate::commands::serve::ServeOptions {
            listen,
            replay,
            realtime,
            idle_after_ns: idle_after,
            max_processes: max_processes as usize,
            bpf_stats,
            tracer: TracerOptions {
                hooks,
                ring_bytes: ring_size,
                ops: match resolve_ops(op) {
                    Ok(o) => o,
                    Err(code) => return code,
                },
            },
        }),
        #[cfg(feature = "bench")]
        Command::Bench(cmd) => crate::commands::bench::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            log::error!("{e:#}");
            1
        }
    }
}

/// Resolve the `--op` arguments (see `kernel::ops`) and say what was
/// found where; the plan lives as long as the process (the tracer's
/// options are `Copy`). Err: the exit status (2: bad input).
fn resolve_ops(
    args: Vec<crate::kernel::ops::OpArg>,
) -> Result<Option<&'static crate::kernel::ops::OpPlan>, u8> {
    if args.is_empty() {
        return Ok(None);
    }
    match crate::kernel::ops::resolve(&args) {
        Ok(plan) => {
            for note in &plan.notes {
                crate::status!("{note}");
            }
            Ok(Some(Box::leak(Box::new(plan))))
        }
        Err(e) => {
            log::error!("{e}");
            Err(crate::exit::BAD_INPUT)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
