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
root, or CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH (the systemd unit \
uacce-trace.service runs `serve` with exactly these).";

#[derive(Parser, Debug)]
#[command(name = "uacce-trace", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More diagnostics on standard error: -v info, -vv debug, -vvv trace
    /// (also UACCE_TRACE_LOG=LEVEL or RUST_LOG=uacce_trace=LEVEL).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The running kernel's BTF from FILE (e.g. from BTFHub) instead of
    /// /sys/kernel/btf/vmlinux, for kernels built without it in /sys; the
    /// hook plan and the loader both use it.
    #[arg(long, value_name = "FILE", global = true)]
    pub btf: Option<PathBuf>,
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
    /// Live tracing needs root (or CAP_BPF, CAP_PERFMON and
    /// CAP_DAC_READ_SEARCH); --replay shows
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
        /// Count pin, unpin and uacce_ctrl calls and IO page faults in the
        /// kernel (as `serve` does by default) instead of reading every
        /// one: cheaper, but latencies are bucket upper bounds and pinned
        /// ranges (and faults inside them) are not known. Fault regions
        /// are sampled: one IO page fault group in 64 is read per event.
        #[arg(long, conflicts_with = "replay")]
        summary: bool,
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
        /// For tests: leave the core IOPF report functions unhooked, so
        /// that a vendor row (e.g. intel_iommu:prq_report) reports instead.
        #[arg(long, hide = true)]
        vendor_report: bool,
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
        /// Count pin, unpin and uacce_ctrl calls and IO page faults
        /// (paired in the kernel) in the kernel (summary mode, as `serve`
        /// does by default): cheaper per call; latencies become log-linear
        /// bucket upper bounds (at most 12.5 % above), counted once a
        /// second, and pinned ranges are not known. Not with --raw.
        #[arg(long, conflicts_with_all = ["replay", "raw"])]
        summary: bool,
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
        /// Compare only this command name (repeatable): e.g. the process
        /// that was changed, while others ran unchanged beside it. A name
        /// in neither recording is an error (exit 2).
        #[arg(long = "comm", value_name = "NAME")]
        comms: Vec<String>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Serve Prometheus metrics on http://127.0.0.1:19211/metrics.
    ///
    /// Per process (and device): IOPF, pin, unpin and uacce_ctrl latency
    /// histograms in seconds (1-2-5 buckets from 1us to 10s), error and page
    /// counters, pinned pages now; drops, unanswered faults and the tool's
    /// own CPU time, memory and BPF run time. Processes idle for
    /// --idle-after age out of the series (at most --max-processes are
    /// kept). Loopback only unless --listen names another address.
    ///
    /// Live, it runs in summary mode unless --per-event: the kernel
    /// programs count pin, unpin and uacce_ctrl calls per process, and IO
    /// page faults per (process, device) paired in the kernel, in per-CPU
    /// histograms (log-linear buckets at most 12.5 % wide), read once a
    /// second, instead of writing every call to the ring buffer. In
    /// summary mode pinned address
    /// ranges are not known, so faults inside pinned ranges are not
    /// counted (uacce_trace_iopfs_in_pinned_total is left out), and
    /// latency percentiles are bucket upper bounds.
    ///
    /// Live tracing needs root (or CAP_BPF, CAP_PERFMON and
    /// CAP_DAC_READ_SEARCH); --replay serves
    /// a raw recording, then keeps serving its final state. Stops on
    /// SIGINT/SIGTERM (exit 0). Exit status 1 when tracing cannot start, 2
    /// for an unusable recording or listen address.
    Serve {
        /// Address and port to listen on (e.g. 127.0.0.1:19211, [::1]:19211, 0.0.0.0:19211).
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
        /// Labels of the per-process series, comma-separated, among pid, comm,
        /// device (IO page faults) and cgroup (the process's cgroup v2 path,
        /// a container scope shortened to RUNTIME-ID, e.g. docker-4f1a2b3c4d5e,
        /// a Kubernetes pod without one to pod-UID; live only, "" in a
        /// replay). A label left out aggregates: the series that then share
        /// their labels are summed, histograms merged.
        #[arg(long, default_value = "pid,comm,device", value_name = "LABEL,...", value_parser = crate::commands::serve::labels::LabelSet::parse)]
        labels: crate::commands::serve::labels::LabelSet,
        /// Most label sets per metric family; further ones are folded into
        /// the family's series whose labels are all "[other]", counted by
        /// uacce_trace_series_folded_total.
        #[arg(long, default_value_t = crate::commands::serve::labels::DEFAULT_MAX_SERIES as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        max_series: u32,
        /// Have the kernel time BPF programs while serving (Linux 5.8+; small
        /// cost on every BPF program of the system).
        #[arg(long, conflicts_with = "replay")]
        bpf_stats: bool,
        /// Write every pin, unpin and ioctl call to the ring buffer and
        /// aggregate in user space (exact latencies, pinned ranges and
        /// faults inside them; costs more CPU per call).
        #[arg(long, conflicts_with = "replay")]
        per_event: bool,
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
    /// Write the man pages and shell completions (for packagers).
    ///
    /// Generated from these very definitions, so they never drift from
    /// `--help`: DIR/man/uacce-trace.1 and one page per subcommand
    /// (uacce-trace-top.1, …), DIR/completions/uacce-trace.bash, _uacce-trace
    /// (zsh) and uacce-trace.fish. Prints the paths written.
    #[command(hide = true)]
    Generate {
        /// Output folder (created when missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
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
    if let Some(path) = cli.btf {
        if let Err(e) = std::fs::File::open(&path) {
            log::error!("--btf {}: {e}", path.display());
            return crate::exit::BAD_INPUT;
        }
        crate::kernel::system::use_btf_file(path);
    }
    let result = match cli.command {
        Command::Top {
            replay,
            realtime: _,
            fast,
            interval,
            summary,
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
                summary,
                ops: match resolve_ops(op) {
                    Ok(o) => o,
                    Err(code) => return code,
                },
                vendor_report: false,
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
            vendor_report,
        } => trace::run(
            TracerOptions {
                hooks,
                ring_bytes: ring_size,
                summary: false,
                ops: match resolve_ops(op) {
                    Ok(o) => o,
                    Err(code) => return code,
                },
                vendor_report,
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
            summary,
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
                    summary,
                    ops,
                    vendor_report: false,
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
            comms,
            json,
        } => {
            let opts = analysis::compare::CompareOptions {
                metric,
                max_ns: max,
                tolerance_pct: tolerance,
                kind,
                allow_drops,
                comms,
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
            labels,
            max_series,
            per_event,
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
            labels,
            max_series: max_series as usize,
            tracer: TracerOptions {
                hooks,
                ring_bytes: ring_size,
                summary: !per_event,
                ops: match resolve_ops(op) {
                    Ok(o) => o,
                    Err(code) => return code,
                },
                vendor_report: false,
            },
        }),
        Command::Generate { out } => write_assets(&out)
            .map(|paths| {
                for p in paths {
                    println!("{}", p.display());
                }
                crate::exit::OK
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "writing man pages and completions into {}: {e}",
                    out.display()
                )
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

/// The shells completions are written for, with their file names (the
/// names bash-completion, zsh's `fpath` and fish look up for `uacce-trace`).
pub const COMPLETIONS: &[(clap_complete::Shell, &str)] = &[
    (clap_complete::Shell::Bash, "uacce-trace.bash"),
    (clap_complete::Shell::Zsh, "_uacce-trace"),
    (clap_complete::Shell::Fish, "uacce-trace.fish"),
];

/// The subcommands a user sees: not hidden, not clap's `help`.
fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// Writes `dir/man/uacce-trace.1`, `dir/man/uacce-trace-SUB.1` for every
/// visible subcommand, and `dir/completions/` for every shell of
/// [`COMPLETIONS`], all from [`Cli`]'s definitions; returns the paths.
/// Deterministic (no date in the pages), so two runs write the same bytes.
pub fn write_assets(dir: &std::path::Path) -> io::Result<Vec<PathBuf>> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    cmd.build();
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut written = Vec::new();
    let mut page = |name: String, c: clap::Command| -> io::Result<()> {
        let mut bytes = Vec::new();
        clap_mangen::Man::new(c.display_name(name.clone())).render(&mut bytes)?;
        let path = man.join(format!("{name}.1"));
        std::fs::write(&path, bytes)?;
        written.push(path);
        Ok(())
    };
    page("uacce-trace".to_owned(), cmd.clone())?;
    for sub in visible_subcommands(&cmd) {
        page(format!("uacce-trace-{}", sub.get_name()), sub.clone())?;
    }
    for (shell, file) in COMPLETIONS {
        let mut bytes = Vec::new();
        clap_complete::generate(*shell, &mut cmd.clone(), "uacce-trace", &mut bytes);
        let path = completions.join(file);
        std::fs::write(&path, bytes)?;
        written.push(path);
    }
    Ok(written)
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

    /// The generated man pages and completions cover every visible
    /// subcommand and every one of its long options: a subcommand or flag
    /// added to the definitions without reaching them fails here.
    #[test]
    fn man_pages_and_completions_cover_the_cli() {
        use clap::CommandFactory;
        let dir = std::env::temp_dir().join(format!("uacce-trace-assets-{}", std::process::id()));
        let written = write_assets(&dir).expect("writing assets");
        let mut cmd = Cli::command();
        cmd.build();
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let main_page = read(dir.join("man/uacce-trace.1"));
        let completions: Vec<(String, String)> = COMPLETIONS
            .iter()
            .map(|(_, f)| ((*f).to_owned(), read(dir.join("completions").join(f))))
            .collect();
        let subs: Vec<&clap::Command> = visible_subcommands(&cmd).collect();
        assert!(subs.len() >= 7, "only {} subcommands", subs.len());
        for sub in &subs {
            let name = sub.get_name();
            let page = read(dir.join(format!("man/uacce-trace-{name}.1")));
            assert!(
                main_page.contains(&format!("uacce\\-trace\\-{name}(1)")),
                "main page lacks {name}"
            );
            assert!(
                page.contains(&format!(".TH uacce-trace-{name} 1")),
                "{name}: header"
            );
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    let man_flag = format!("\\-\\-{}", long.replace('-', "\\-"));
                    assert!(
                        page.contains(&man_flag),
                        "man page of {name} lacks --{long}"
                    );
                    for (file, text) in &completions {
                        assert!(text.contains(long), "{file} lacks {name} --{long}");
                    }
                }
            }
            for (file, text) in &completions {
                assert!(text.contains(name), "{file} lacks the subcommand {name}");
            }
        }
        // Nothing hidden leaks into the pages, and nothing else is written.
        assert!(
            !main_page.contains("generate"),
            "the hidden generate command is in the man page"
        );
        assert_eq!(written.len(), 1 + subs.len() + COMPLETIONS.len());
        // Deterministic: a second run writes the same bytes.
        let again =
            std::env::temp_dir().join(format!("uacce-trace-assets2-{}", std::process::id()));
        write_assets(&again).expect("writing assets again");
        for p in &written {
            let rel = p.strip_prefix(&dir).expect("under dir");
            assert_eq!(
                read(p.clone()),
                read(again.join(rel)),
                "{} differs",
                rel.display()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&again);
    }
}
