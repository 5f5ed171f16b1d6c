//! `cargo xtask bench requests` (host, root): what request tracing
//! (`--op BINARY:SYMBOL`, issue 16) costs the whole machine per request,
//! against the bpftrace uprobe one-liner a user would write instead.
//!
//! `uacce-trace bench request-loop` (an ordinary process, traced like any
//! other) calls `uacce_trace_bench_request`, an empty, never-inlined
//! function of the tool's own (bench) binary, N times; uprobes reach it
//! through the binary's symbol table like any library's request function
//! (`wd_do_comp_sync`, `qpl_execute_job`). Each round runs the loop
//! untraced, under two bpftrace programs on a uprobe and a uretprobe of
//! the function (a floor that does nothing, and the per-pid latency
//! `hist()` one-liner), under `uacce-trace record --op BIN:SYM` and under
//! `uacce-trace serve --op BIN:SYM` (its default mode: requests are
//! per-event in every mode); the rest is [`super::host`]'s, as in
//! `bench ioctl`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::host::{cost_table, Facts, Mode, RoundArgs, Run, Session, Tracer};
use super::publish;

/// The probed function of `uacce-trace bench request-loop`
/// (`uacce-trace/src/commands/bench.rs`).
const SYMBOL: &str = "uacce_trace_bench_request";

/// Options of `bench requests`.
#[derive(clap::Args, Debug)]
pub(super) struct RequestsArgs {
    /// Requests (calls of the probed function) per measured loop.
    #[arg(long, default_value_t = 200_000)]
    count: u64,
    #[command(flatten)]
    run: RoundArgs,
}

/// The probe point `BINARY:SYMBOL`, in both tools' syntax.
fn site(tool: &str) -> String {
    format!("{tool}:{SYMBOL}")
}

/// Floor: a uprobe and a uretprobe on the function whose programs compare
/// the pid with 0 (never true for a process) and do nothing; the uprobe
/// machinery (breakpoint, return trampoline) is all they cost.
fn filter_only(tool: &str) -> String {
    let s = site(tool);
    format!("uprobe:{s} /pid == 0/ {{ }} uretprobe:{s} /pid == 0/ {{ }}")
}

/// The one-liner a user would write: per-pid entry→return latency
/// `hist()`, start times in a map keyed by thread, all in the kernel.
fn hist(tool: &str) -> String {
    let s = site(tool);
    format!(
        "uprobe:{s} {{ @start[tid] = nsecs; }} \
         uretprobe:{s} /@start[tid]/ {{ @lat[pid] = hist(nsecs - @start[tid]); delete(@start[tid]); }}"
    )
}

/// The modes, in the order each round runs them (untraced, the bpftrace
/// floor, the bpftrace one-liner, then the tool's: see [`super::host`]).
fn modes(tool: &str) -> Vec<Mode> {
    vec![
        Mode::new("untraced", Tracer::None),
        Mode::new(
            "bpftrace, uprobe + uretprobe doing nothing (floor)",
            Tracer::Bpftrace {
                prog: filter_only(tool),
                hist: false,
            },
        ),
        Mode::new(
            "bpftrace, per-pid latency hist()",
            Tracer::Bpftrace {
                prog: hist(tool),
                hist: true,
            },
        ),
        Mode::new("uacce-trace record --op (per-event)", Tracer::Record),
        Mode::new(
            "uacce-trace serve --op (its default mode; requests per-event)",
            Tracer::Serve { summary: true },
        ),
    ]
}

/// The tool's path as both probe syntaxes need it: absolute, UTF-8, no
/// whitespace (bpftrace splits on it) and no `:` (both split on it).
fn probe_path(tool: &Path) -> Result<String> {
    let abs =
        std::fs::canonicalize(tool).with_context(|| format!("resolving {}", tool.display()))?;
    let s = abs
        .to_str()
        .context("the tool's path must be UTF-8")?
        .to_string();
    if s.contains(|c: char| c.is_whitespace() || c == ':') {
        bail!("the tool's path {s:?} has a space or ':', which uprobe syntax cannot take");
    }
    Ok(s)
}

/// Runs `cargo xtask bench requests`.
pub(super) fn run(args: &RequestsArgs) -> Result<()> {
    let session = Session::begin("requests", &args.run.common)?;
    let tool = probe_path(&session.tool)?;
    let bench = session.host_loop(
        "requests",
        "request-loop",
        args.count,
        vec!["--op".into(), site(&tool)],
        args.run.settle_ms,
    );
    let modes = modes(&tool);
    let (runs, stats) = bench.rounds("request loop", &modes, args.run.rounds.max(1))?;
    let facts = session.end();
    publish(
        "requests",
        &report(args, &tool, &modes, &runs, &stats, &facts),
        &args.run.common,
    )
}

fn report(
    args: &RequestsArgs,
    tool: &str,
    modes: &[Mode],
    runs: &[Vec<Run>],
    stats: &[Vec<Run>],
    facts: &Facts,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Whole-machine cost per request: `--op` uprobes (host)\n\n\
         `cargo xtask bench requests`, {}; {} s.\n",
        facts.when, facts.seconds
    );
    out.push_str(&facts.list());
    // Programs as written, with the binary's path shortened for reading.
    let shown = |prog: String| {
        prog.replace(tool, "UACCE_TRACE")
            .replace("} uretprobe", "}\nuretprobe")
    };
    let _ = writeln!(
        out,
        "\n`uacce-trace bench request-loop --count {count}`, an ordinary process pinned \
         to CPU 1, calls `{SYMBOL}` {count} times (after {warm} warm-up calls): an empty, \
         never-inlined function of the tool's bench binary (`UACCE_TRACE` below), found by \
         its ELF symbol like a library's request function (`wd_do_comp_sync`, \
         `qpl_execute_job`). Untraced a call costs a few ns; traced, each one hits a \
         uprobe at entry and a uretprobe at return, so the figures below are what \
         tracing adds to one request, whatever the request does. {rounds} round(s), \
         each running the modes below once, in this order; a tracer is started, waited \
         for (uacce-trace's `… hooks attached` line, bpftrace's `Attaching`, then \
         {settle} ms) before the loop and stopped (SIGINT) after it.\n\n\
         - whole-machine busy: all CPUs' user + nice + system + irq + softirq + steal \
           time from `/proc/stat` (everything but idle and iowait: the loop, the \
           tracer's threads, kernel work, and whatever else the machine ran) over the \
           loop alone, per request; \"added\" subtracts the untraced run of the same \
           round. `/proc/stat` is tick-sampled (10 ms), i.e. about ±{res:.0} ns/request \
           per run. The untraced loop lasts well under a tick, so it cannot take out \
           what other processes ran meanwhile: on a busy machine (see the load average \
           and other jobs above) whole-machine busy exceeds the wall time and the \
           added figures include the others' work; read them from an idle machine.\n\
         - the ratios are per round (same round's runs), then the median;\n\
         - wall: the loop's own time per request; \"traced thread CPU\" is the loop \
           thread's CPU time only (user + system, the uprobe handling and BPF programs \
           that ran in it included); \"tracer process CPU\" is the tracer's utime + \
           stime (all its threads) around the loop process.\n\n\
         The bpftrace programs, on the same uprobe and uretprobe:\n\n\
         - doing nothing: both compare the pid with 0 (never true); what is left is \
           the cost of the probes themselves (breakpoint trap, return trampoline, \
           program call):\n\n\
         ```\n{filter}\n```\n\n\
         - per-pid latency `hist()`: entry stores `nsecs` in a map keyed by thread; \
           return, when the thread has a start time, adds the latency to a per-pid \
           histogram and deletes the start:\n\n\
         ```\n{hist}\n```\n\n\
         `uacce-trace record -o FILE.hlog --op UACCE_TRACE:{SYMBOL}` and \
         `uacce-trace serve --listen 127.0.0.1:0 --op UACCE_TRACE:{SYMBOL}` trace every \
         process, all their default hooks attached, as a user runs them. Requests are \
         per-event in every mode (docs/architecture.md, \"Requests\"): the uprobe keeps \
         the entry in a per-thread map (`REQ_INFLIGHT`, with the recursion check), the \
         uretprobe writes a 64-byte record into the ring, user space joins it with \
         the process's IO page faults and adds it to the op's histograms (hlog for \
         `record`, Prometheus histograms for `serve`, whose default summary mode \
         concerns pins and ioctls only).\n",
        count = args.count,
        warm = args.count / 20,
        rounds = args.run.rounds.max(1),
        settle = args.run.settle_ms,
        res = 2.0 * 1e7 / args.count.max(1) as f64,
        filter = shown(filter_only(tool)),
        hist = shown(hist(tool)),
    );
    out.push_str(&cost_table(
        modes,
        runs,
        stats,
        "request",
        "bpftrace hist()",
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::super::Common;
    use super::*;

    #[test]
    fn programs_probe_the_bench_function() {
        let p = hist("/t/uacce-trace");
        assert!(
            p.starts_with("uprobe:/t/uacce-trace:uacce_trace_bench_request { @start[tid] = nsecs; } uretprobe:/t/uacce-trace:uacce_trace_bench_request /@start[tid]/"),
            "{p}"
        );
        let m = modes("/t/uacce-trace");
        assert_eq!(m.len(), 5);
        assert_eq!(m[super::super::host::UNTRACED].tracer, Tracer::None);
        assert!(matches!(
            &m[super::super::host::BPFTRACE].tracer,
            Tracer::Bpftrace { hist: true, .. }
        ));
        assert!(matches!(
            &m[super::super::host::FILTER].tracer,
            Tracer::Bpftrace { hist: false, prog } if prog.contains("/pid == 0/")
        ));
    }

    #[test]
    fn report_shows_the_programs_and_the_table() {
        let tool = "/w/target/release/uacce-trace";
        let m = modes(tool);
        let runs: Vec<Vec<Run>> = [100.0, 3100.0, 5100.0, 10100.0, 9100.0]
            .iter()
            .map(|&machine| {
                vec![Run {
                    machine,
                    ..Run::default()
                }]
            })
            .collect();
        let stats: Vec<Vec<Run>> = vec![Vec::new(); m.len()];
        let facts = Facts {
            when: "now".into(),
            seconds: 1,
            priority: "p".into(),
            load: "l".into(),
            others: "o".into(),
            versions: "v".into(),
        };
        let args = RequestsArgs {
            count: 1000,
            run: RoundArgs {
                rounds: 1,
                settle_ms: 0,
                common: Common {
                    no_build: true,
                    no_renice: true,
                    no_write: true,
                },
            },
        };
        let text = report(&args, tool, &m, &runs, &stats, &facts);
        assert!(
            text.contains("uprobe:UACCE_TRACE:uacce_trace_bench_request { @start[tid] = nsecs; }\nuretprobe:UACCE_TRACE:"),
            "{text}"
        );
        assert!(!text.contains(tool), "{text}");
        assert!(
            text.contains("| added ns/request (whole machine) |"),
            "{text}"
        );
        assert!(
            text.contains(
                "| uacce-trace record --op (per-event) | 10100 | 10000 | 10000 | 2.00× | 3.33× |"
            ),
            "{text}"
        );
    }

    #[test]
    fn odd_tool_paths_are_refused() {
        let dir = std::env::temp_dir().join(format!("uacce bench {}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("uacce-trace");
        std::fs::write(&file, b"").expect("file");
        let e = probe_path(&file).expect_err("a space");
        assert!(e.to_string().contains("space"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
