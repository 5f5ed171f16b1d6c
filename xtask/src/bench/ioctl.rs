//! `cargo xtask bench ioctl` (host, root): what tracing costs the whole
//! machine per event, on the one hook this host lets the tool's real
//! programs run on — the `sys_enter/exit_ioctl` tracepoints, which keep
//! `ioctl(UACCE_CMD_PIN)` on any file descriptor.
//!
//! `uacce-trace bench ioctl-loop` (an ordinary process, traced like any
//! other) calls `ioctl(UACCE_CMD_PIN)` on `/dev/null` N times and reports
//! its wall time, its own CPU time and the busy CPU time of the whole
//! machine (`/proc/stat`, every CPU: the loop, the tracer's threads, kernel
//! work) over the loop alone. Each round runs it untraced, under two
//! bpftrace programs (a filter-only floor and the per-pid latency `hist()`
//! one-liner), under `uacce-trace record` and under `uacce-trace serve`;
//! a tracer is started, waited for (its readiness line, then a settle
//! time) before the loop and stopped after it. Reported: the whole-machine
//! busy time added per call over the untraced run of the same round, its
//! ratios to the two bpftrace programs' (same round), and medians.

use std::fmt::Write as _;

use anyhow::Result;

use super::host::{cost_table, Facts, Mode, RoundArgs, Run, Session, Tracer};
use super::publish;

/// Options of `bench ioctl`.
#[derive(clap::Args, Debug)]
pub(super) struct IoctlArgs {
    /// ioctl calls per measured loop.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    #[command(flatten)]
    run: RoundArgs,
}

/// Floor: on entry, compare the command and do nothing; on exit, a
/// program that compares the pid with 0 (never true for a process) and does
/// nothing. Both tracepoints run a program on every ioctl, as the tool's do.
const FILTER_ONLY: &str = "tracepoint:syscalls:sys_enter_ioctl /args->cmd == 0x40105702/ { } \
tracepoint:syscalls:sys_exit_ioctl /pid == 0/ { }";

/// The one-liner a user would write: per-pid enter→exit latency `hist()`,
/// start times in a map keyed by thread, all in the kernel.
const HIST: &str = "tracepoint:syscalls:sys_enter_ioctl /args->cmd == 0x40105702/ { @start[tid] = nsecs; } \
tracepoint:syscalls:sys_exit_ioctl /@start[tid]/ { @lat[pid] = hist(nsecs - @start[tid]); delete(@start[tid]); }";

/// The modes, in the order each round runs them (untraced, the bpftrace
/// floor, the bpftrace one-liner, then the tool's: see [`super::host`]).
fn modes() -> Vec<Mode> {
    let bpftrace = |prog: &str, hist| Tracer::Bpftrace {
        prog: prog.to_string(),
        hist,
    };
    vec![
        Mode::new("untraced", Tracer::None),
        Mode::new(
            "bpftrace, filter only (floor)",
            bpftrace(FILTER_ONLY, false),
        ),
        Mode::new("bpftrace, per-pid latency hist()", bpftrace(HIST, true)),
        Mode::new("uacce-trace record (per-event)", Tracer::Record),
        Mode::new(
            "uacce-trace serve --per-event",
            Tracer::Serve { summary: false },
        ),
        Mode::new(
            "uacce-trace serve (summary, its default)",
            Tracer::Serve { summary: true },
        ),
    ]
}

/// Runs `cargo xtask bench ioctl`.
pub(super) fn run(args: &IoctlArgs) -> Result<()> {
    let session = Session::begin("ioctl", &args.run.common)?;
    let bench = session.host_loop(
        "ioctl",
        "ioctl-loop",
        args.count,
        Vec::new(),
        args.run.settle_ms,
    );
    let modes = modes();
    let (runs, stats) = bench.rounds("ioctl loop", &modes, args.run.rounds.max(1))?;
    let facts = session.end();
    publish(
        "ioctl",
        &report(args, &modes, &runs, &stats, &facts),
        &args.run.common,
    )
}

fn report(
    args: &IoctlArgs,
    modes: &[Mode],
    runs: &[Vec<Run>],
    stats: &[Vec<Run>],
    facts: &Facts,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Whole-machine cost per event: ioctl tracepoints (host)\n\n\
         `cargo xtask bench ioctl`, {}; {} s.\n",
        facts.when, facts.seconds
    );
    out.push_str(&facts.list());
    let _ = writeln!(
        out,
        "\n`uacce-trace bench ioctl-loop --count {count}`, an ordinary process pinned to \
         CPU 1, calls `ioctl(fd, UACCE_CMD_PIN, &{{addr, size}})` on `/dev/null` \
         {count} times (after {warm} warm-up calls); each call fails with ENOTTY and \
         pins nothing, but passes the `sys_enter_ioctl`/`sys_exit_ioctl` tracepoints \
         with the command the tool's real programs keep, so they record it (reading \
         the 16-byte range from user memory) like a real pin ioctl. {rounds} round(s), \
         each running the modes below once, in this order; a tracer is started, \
         waited for (uacce-trace's `… hooks attached` line, bpftrace's `Attaching`, then \
         {settle} ms) before the loop and stopped (SIGINT) after it.\n\n\
         - whole-machine busy: all CPUs' user + nice + system + irq + softirq + steal \
           time from `/proc/stat` (everything but idle and iowait: the loop, the \
           tracer's threads, kernel work, and whatever else the machine ran) over the \
           loop alone, per call; \"added\" subtracts the untraced run of the same \
           round. `/proc/stat` is tick-sampled (10 ms), i.e. about ±{res:.0} ns/call per run.\n\
         - the ratios are per round (same round's runs), then the median;\n\
         - wall: the loop's own time per call; \"traced thread CPU\" is the loop \
           thread's CPU time only (user + system, BPF programs that ran in it \
           included), the figure the earlier tables used; \"tracer process CPU\" is \
           the tracer's utime + stime (all its threads) around the loop process.\n\n\
         The bpftrace programs, on the same two tracepoints:\n\n\
         - filter only: on entry, compare `args->cmd` with `UACCE_CMD_PIN` and do \
           nothing; on exit, compare the pid with 0 (never true) and do nothing:\n\n\
         ```\n{filter}\n```\n\n\
         - per-pid latency `hist()`: entry stores `nsecs` in a map keyed by thread \
           when the command matches; exit, when the thread has a start time, adds \
           the latency to a per-pid histogram and deletes the start:\n\n\
         ```\n{hist}\n```\n\n\
         `uacce-trace record -o FILE.hlog` (per-event: every ioctl is a ring-buffer \
         record read, decoded and aggregated in user space; default hlog format, 1 s \
         intervals) and `uacce-trace serve --listen 127.0.0.1:0 --per-event` (the same \
         path into Prometheus histograms) trace every process, as a user runs them. \
         `uacce-trace serve --listen 127.0.0.1:0` runs in its default summary mode: \
         the exit program adds each ioctl to a per-CPU, per-process log-linear \
         histogram in the kernel and writes no record; user space reads the map once \
         a second.\n",
        count = args.count,
        warm = args.count / 20,
        rounds = args.run.rounds.max(1),
        settle = args.run.settle_ms,
        res = 2.0 * 1e7 / args.count.max(1) as f64,
        filter = FILTER_ONLY.replace("} tracepoint", "}\ntracepoint"),
        hist = HIST.replace("} tracepoint", "}\ntracepoint"),
    );
    out.push_str(&cost_table(modes, runs, stats, "call", "bpftrace hist()"));
    out
}

#[cfg(test)]
mod tests {
    use super::super::host::{added, ratios, BPFTRACE, FILTER};
    use super::super::Common;
    use super::*;

    fn run(machine: f64) -> Run {
        Run {
            machine,
            ..Run::default()
        }
    }

    #[test]
    fn added_and_ratios_are_per_round() {
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); modes().len()];
        for (i, per_round) in [
            [100.0, 200.0],
            [300.0, 400.0],
            [600.0, 600.0],
            [1100.0, 1000.0],
            [1200.0, 1200.0],
        ]
        .iter()
        .enumerate()
        {
            runs[i] = per_round.iter().map(|&m| run(m)).collect();
        }
        assert_eq!(added(&runs, BPFTRACE), vec![500.0, 400.0]);
        assert_eq!(ratios(&runs, 3, BPFTRACE), vec![2.0, 2.0]);
        assert_eq!(ratios(&runs, 3, FILTER), vec![5.0, 4.0]);
        let facts = Facts {
            when: "now".into(),
            seconds: 1,
            priority: "p".into(),
            load: "l".into(),
            others: "o".into(),
            versions: "v".into(),
        };
        let args = IoctlArgs {
            count: 1000,
            run: RoundArgs {
                rounds: 2,
                settle_ms: 0,
                common: Common {
                    no_build: true,
                    no_renice: true,
                    no_write: true,
                },
            },
        };
        let mut stats: Vec<Vec<Run>> = vec![Vec::new(); modes().len()];
        stats[3].push(Run {
            bpf: 700.0,
            bpf_programs: vec![("ioctl_enter".into(), 400.0), ("ioctl_exit".into(), 300.0)],
            ..Run::default()
        });
        let text = report(&args, &modes(), &runs, &stats, &facts);
        assert!(
            text.contains(
                "| uacce-trace record (per-event) | 1050 | 900 | 1000, 800 | 2.00× | 4.50× |"
            ),
            "{text}"
        );
        assert!(text.contains("/args->cmd == 0x40105702/"));
        assert!(text.contains("| 700 |"), "{text}");
        assert!(
            text.contains("- uacce-trace record (per-event): `ioctl_enter` 400, `ioctl_exit` 300")
        );
    }
}
