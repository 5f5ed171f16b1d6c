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
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{
    built_binaries, f, fmt_ns, fmt_ratio, json_of, loadavg, machine, median, proc_cpu, publish,
    raise_priority, setup_host, table, utc_now, Common,
};

/// Options of `bench ioctl`.
#[derive(clap::Args, Debug)]
pub(super) struct IoctlArgs {
    /// ioctl calls per measured loop.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Rounds; each runs every mode once, in the same order.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Milliseconds between a tracer's readiness line and the loop's start
    /// (start-up work such as scanning processes stays out of the window).
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    #[command(flatten)]
    common: Common,
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

/// What runs beside the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tracer {
    None,
    Bpftrace(&'static str),
    Record,
    /// `serve`, in summary mode (its default) or with `--per-event`.
    Serve {
        summary: bool,
    },
}

/// The modes, in the order each round runs them.
const MODES: &[(&str, Tracer)] = &[
    ("untraced", Tracer::None),
    (
        "bpftrace, filter only (floor)",
        Tracer::Bpftrace(FILTER_ONLY),
    ),
    ("bpftrace, per-pid latency hist()", Tracer::Bpftrace(HIST)),
    ("uacce-trace record (per-event)", Tracer::Record),
    (
        "uacce-trace serve --per-event",
        Tracer::Serve { summary: false },
    ),
    (
        "uacce-trace serve (summary, its default)",
        Tracer::Serve { summary: true },
    ),
];
const UNTRACED: usize = 0;
const FILTER: usize = 1;
const BPFTRACE: usize = 2;

/// One loop run.
#[derive(Clone, Debug, Default)]
struct Run {
    /// Whole machine busy ns per call over the loop.
    machine: f64,
    wall: f64,
    /// The loop thread's own CPU ns per call.
    thread: f64,
    /// The tracer process's CPU ns per call (all its threads), sampled just
    /// before and after the loop process.
    tracer: f64,
    /// What the tracer said it saw (its last status line), if anything.
    saw: Option<String>,
    /// In a run with kernel BPF statistics: the run time of the programs
    /// that ran once per call, per call, in all and by program.
    bpf: f64,
    bpf_programs: Vec<(String, f64)>,
}

/// A tracer started and ready; its stdout and stderr lines arrive on
/// `lines` from two reader threads.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

fn forward(from: impl Read + Send + 'static, to: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if to.send(line).is_err() {
                break;
            }
        }
    });
}

/// Starts `cmd` and waits (at most 60 s) for a line containing `ready`.
fn start(mut cmd: Command, ready: &str, what: &str) -> Result<Running> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let (tx, rx) = mpsc::channel();
    forward(child.stdout.take().context("stdout")?, tx.clone());
    forward(child.stderr.take().context("stderr")?, tx);
    let mut running = Running {
        child,
        lines: rx,
        seen: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match running.lines.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains(ready);
                running.seen.push(line);
                if done {
                    return Ok(running);
                }
            }
            Err(e) => {
                let _ = running.child.kill();
                let _ = running.child.wait();
                bail!(
                    "{what} never printed {ready:?} ({}); it said:\n{}",
                    if matches!(e, mpsc::RecvTimeoutError::Timeout) {
                        "60 s"
                    } else {
                        "exited"
                    },
                    running.seen.join("\n")
                );
            }
        }
    }
}

impl Running {
    /// SIGINT, wait (30 s, then SIGKILL); all it printed.
    fn stop(mut self, what: &str) -> Result<Vec<String>> {
        let pid = i32::try_from(self.child.id()).context("pid")?;
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{what} did not stop within 30 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The readers end when the pipes close.
        self.seen.extend(self.lines.iter());
        // `record` exits 128 + SIGINT when stopped by it, after writing.
        if !status.success() && status.code() != Some(128 + libc::SIGINT) {
            bail!(
                "{what} failed ({status}); it said:\n{}",
                self.seen.join("\n")
            );
        }
        Ok(self.seen)
    }
}

/// The tracer's command line for `mode`, and its readiness line.
fn tracer_command(tracer: Tracer, tool: &Path, scratch: &Path) -> Option<(Command, &'static str)> {
    match tracer {
        Tracer::None => None,
        Tracer::Bpftrace(prog) => {
            let mut c = Command::new("bpftrace");
            // Line-buffered: "Attaching N probes..." must arrive at once.
            c.args(["-B", "line", "-e", prog]);
            Some((c, "Attaching"))
        }
        Tracer::Record => {
            let mut c = Command::new(tool);
            c.arg("record").arg("-o").arg(scratch);
            // "recording to FILE (…; N hooks attached; PLAN)"
            Some((c, "hooks attached"))
        }
        Tracer::Serve { summary } => {
            let mut c = Command::new(tool);
            // Port 0: a free loopback port, chosen by the kernel.
            c.args(["serve", "--listen", "127.0.0.1:0"]);
            if !summary {
                c.arg("--per-event");
            }
            // "tracing started (N hooks attached; PLAN)"
            Some((c, "hooks attached"))
        }
    }
}

/// The last line a tracer printed that says what it saw: uacce-trace's
/// "wrote … (N events; M dropped)" / "stopped serving (N events, …)", or
/// for bpftrace the number of `@lat` histograms printed.
fn saw(tracer: Tracer, lines: &[String]) -> Option<String> {
    match tracer {
        Tracer::None => None,
        Tracer::Bpftrace(prog) if prog == HIST => Some(format!(
            "{} @lat histogram(s)",
            lines.iter().filter(|l| l.starts_with("@lat[")).count()
        )),
        Tracer::Bpftrace(_) => None,
        Tracer::Record | Tracer::Serve { .. } => lines
            .iter()
            .rev()
            .find(|l| l.contains(" events"))
            .map(|l| l.trim_start_matches("uacce-trace: ").to_string()),
    }
}

/// One loop under `tracer`, with kernel BPF statistics when `stats`.
fn run_mode(
    tracer: Tracer,
    tool: &Path,
    args: &IoctlArgs,
    scratch: &Path,
    stats: bool,
) -> Result<Run> {
    let what = format!("{tracer:?}");
    let running = match tracer_command(tracer, tool, scratch) {
        Some((cmd, ready)) => {
            let r = start(cmd, ready, &what)?;
            std::thread::sleep(Duration::from_millis(args.settle_ms));
            Some(r)
        }
        None => None,
    };
    let tracer_cpu = || {
        running
            .as_ref()
            .and_then(|r| proc_cpu(r.child.id()).ok())
            .map_or(0.0, |(cpu, _)| cpu)
    };
    let cpu0 = tracer_cpu();
    let mut cmd = Command::new(tool);
    cmd.args(["bench", "ioctl-loop", "--count", &args.count.to_string()]);
    if stats {
        cmd.arg("--bpf-stats");
    }
    let v: Result<Value> = json_of(&mut cmd, "uacce-trace bench ioctl-loop");
    let cpu1 = tracer_cpu();
    let lines = match running {
        Some(r) => r.stop(&what)?,
        None => Vec::new(),
    };
    let _ = fs::remove_file(scratch);
    let v = v?;
    let calls = f(&v, "/trigger/calls").max(1.0);
    let bpf_programs = v["bpf_programs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("?").to_string(),
                f(p, "/run_time_ns") / calls,
            )
        })
        .collect();
    Ok(Run {
        machine: f(&v, "/trigger/machine_busy_ns_per_call"),
        wall: f(&v, "/trigger/ns_per_call"),
        thread: f(&v, "/trigger/cpu_ns_per_call"),
        tracer: (cpu1 - cpu0) * 1e9 / calls,
        saw: saw(tracer, &lines),
        bpf: f(&v, "/bpf_ns_per_call"),
        bpf_programs,
    })
}

/// Runs `cargo xtask bench ioctl`.
pub(super) fn run(args: &IoctlArgs) -> Result<()> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench ioctl loads BPF programs and needs root");
    }
    setup_host()?;
    let (tool, _) = built_binaries(args.common.no_build)?;
    let priority = raise_priority(&args.common);
    let load_before = loadavg();
    let others = other_jobs();
    let started = Instant::now();
    let scratch =
        std::env::temp_dir().join(format!("uacce-bench-ioctl-{}.hlog", std::process::id()));
    let rounds = args.rounds.max(1);
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); MODES.len()];
    let mut stats: Vec<Vec<Run>> = vec![Vec::new(); MODES.len()];
    for round in 0..rounds {
        for (i, (name, tracer)) in MODES.iter().enumerate() {
            eprintln!(
                "bench: ioctl loop, round {} of {rounds}: {name}…",
                round + 1
            );
            runs[i].push(run_mode(*tracer, &tool, args, &scratch, false)?);
        }
        // BPF statistics cost time themselves: separate runs.
        for (i, (name, tracer)) in MODES.iter().enumerate().skip(1) {
            eprintln!(
                "bench: ioctl loop, round {} of {rounds}: {name}, BPF statistics…",
                round + 1
            );
            stats[i].push(run_mode(*tracer, &tool, args, &scratch, true)?);
        }
    }
    let load_after = loadavg();
    let bpftrace_version = Command::new("bpftrace")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let tool_version = Command::new(&tool)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let facts = Facts {
        when: utc_now(),
        seconds: started.elapsed().as_secs(),
        priority: priority.what.clone(),
        load: format!("{load_before} before, {load_after} after"),
        others,
        versions: format!("{bpftrace_version}; {tool_version}"),
    };
    drop(priority);
    publish("ioctl", &report(args, &runs, &stats, &facts), &args.common)
}

/// Other heavy jobs seen when the bench started (the project's own test
/// suite, builds), for the report.
fn other_jobs() -> String {
    // Not plain "cargo": `cargo xtask` runs this very command.
    let busy: Vec<&str> = [
        "xtask test",
        "cargo build",
        "cargo test",
        "cargo clippy",
        "rustc",
        "qemu-system",
    ]
    .into_iter()
    .filter(|p| {
        Command::new("pgrep")
            .args(["-f", p])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
    .collect();
    if busy.is_empty() {
        "none seen (no xtask test, cargo build/test/clippy, rustc or QEMU process)".into()
    } else {
        format!("running at the start: {}", busy.join(", "))
    }
}

/// Where and when the runs were made.
struct Facts {
    when: String,
    seconds: u64,
    priority: String,
    load: String,
    others: String,
    versions: String,
}

/// The added whole-machine ns/call of mode `i` in each round (minus the
/// untraced run of the same round).
fn added(runs: &[Vec<Run>], i: usize) -> Vec<f64> {
    runs[i]
        .iter()
        .zip(&runs[UNTRACED])
        .map(|(r, u)| r.machine - u.machine)
        .collect()
}

/// Per-round ratios of mode `i`'s added cost to mode `to`'s.
fn ratios(runs: &[Vec<Run>], i: usize, to: usize) -> Vec<f64> {
    added(runs, i)
        .iter()
        .zip(added(runs, to))
        .map(|(a, b)| a / b)
        .collect()
}

fn report(args: &IoctlArgs, runs: &[Vec<Run>], stats: &[Vec<Run>], facts: &Facts) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Whole-machine cost per event: ioctl tracepoints (host)\n\n\
         `cargo xtask bench ioctl`, {}; {} s.\n",
        facts.when, facts.seconds
    );
    let mut list = machine();
    list.push(("tracers".into(), facts.versions.clone()));
    list.push(("priority".into(), facts.priority.clone()));
    list.push(("load average".into(), facts.load.clone()));
    list.push(("other jobs".into(), facts.others.clone()));
    for (k, v) in &list {
        let _ = writeln!(out, "- {k}: {v}");
    }
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
        rounds = args.rounds.max(1),
        settle = args.settle_ms,
        res = 2.0 * 1e7 / args.count.max(1) as f64,
        filter = FILTER_ONLY.replace("} tracepoint", "}\ntracepoint"),
        hist = HIST.replace("} tracepoint", "}\ntracepoint"),
    );
    let rows: Vec<Vec<String>> = MODES
        .iter()
        .enumerate()
        .map(|(i, (name, tracer))| {
            let col = |g: fn(&Run) -> f64| median(runs[i].iter().map(g).collect());
            let traced = i != UNTRACED;
            let dash = || "–".to_string();
            vec![
                (*name).to_string(),
                fmt_ns(col(|r| r.machine)),
                if traced {
                    fmt_ns(median(added(runs, i)))
                } else {
                    dash()
                },
                if traced {
                    added(runs, i)
                        .iter()
                        .map(|v| fmt_ns(*v))
                        .collect::<Vec<_>>()
                        .join(", ")
                } else {
                    dash()
                },
                if traced {
                    fmt_ratio(median(ratios(runs, i, BPFTRACE)))
                } else {
                    dash()
                },
                if traced {
                    fmt_ratio(median(ratios(runs, i, FILTER)))
                } else {
                    dash()
                },
                fmt_ns(col(|r| r.wall)),
                fmt_ns(col(|r| r.thread)),
                if *tracer == Tracer::None {
                    dash()
                } else {
                    fmt_ns(col(|r| r.tracer))
                },
                if traced {
                    fmt_ns(median(stats[i].iter().map(|r| r.bpf).collect()))
                } else {
                    dash()
                },
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &[
            "mode",
            "whole-machine busy ns/call",
            "added ns/call (whole machine)",
            "added, each round",
            "vs bpftrace hist()",
            "vs filter only",
            "wall ns/call",
            "traced thread CPU ns/call (that thread only)",
            "tracer process CPU ns/call",
            "BPF ns/call",
        ],
        &rows,
    ));
    let _ = writeln!(
        out,
        "\n\"BPF ns/call\": the kernel's BPF run-time statistics \
         (`BPF_ENABLE_STATS`) of the programs that ran at least once per call, from \
         separate runs with statistics on (they cost time themselves), one per mode and \
         round, medians; by program, last round:\n"
    );
    for (i, (name, _)) in MODES.iter().enumerate().skip(1) {
        let progs = stats[i].last().map_or_else(String::new, |r| {
            r.bpf_programs
                .iter()
                .map(|(p, ns)| format!("`{p}` {}", fmt_ns(*ns)))
                .collect::<Vec<_>>()
                .join(", ")
        });
        let _ = writeln!(out, "- {name}: {progs}");
    }
    let mut said = Vec::new();
    for (i, (name, _)) in MODES.iter().enumerate() {
        if let Some(s) = runs[i].iter().rev().find_map(|r| r.saw.clone()) {
            said.push(format!("{name}: {s}"));
        }
    }
    if !said.is_empty() {
        let _ = writeln!(
            out,
            "\nWhat the tracers saw in their last run (warm-up calls included):\n"
        );
        for s in said {
            let _ = writeln!(out, "- {s}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(machine: f64) -> Run {
        Run {
            machine,
            ..Run::default()
        }
    }

    #[test]
    fn added_and_ratios_are_per_round() {
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); MODES.len()];
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
            rounds: 2,
            settle_ms: 0,
            common: Common {
                no_build: true,
                no_renice: true,
                no_write: true,
            },
        };
        let mut stats: Vec<Vec<Run>> = vec![Vec::new(); MODES.len()];
        stats[3].push(Run {
            bpf: 700.0,
            bpf_programs: vec![("ioctl_enter".into(), 400.0), ("ioctl_exit".into(), 300.0)],
            ..Run::default()
        });
        let text = report(&args, &runs, &stats, &facts);
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

    #[test]
    fn tracers_say_what_they_saw() {
        let lines = vec![
            "uacce-trace: tracing started (9 hooks attached; plan)".to_string(),
            "uacce-trace: wrote /tmp/x.hlog (1050000 events; 0 dropped)".to_string(),
        ];
        assert_eq!(
            saw(Tracer::Record, &lines).as_deref(),
            Some("wrote /tmp/x.hlog (1050000 events; 0 dropped)")
        );
        let bt = vec![
            "Attaching 2 probes...".to_string(),
            "@lat[42]: ".to_string(),
        ];
        assert_eq!(
            saw(Tracer::Bpftrace(HIST), &bt).as_deref(),
            Some("1 @lat histogram(s)")
        );
        assert_eq!(saw(Tracer::Bpftrace(FILTER_ONLY), &bt), None);
    }
}
