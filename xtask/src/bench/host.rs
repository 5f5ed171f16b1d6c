//! The host side-by-side of `bench ioctl` and `bench requests`: one loop
//! of the tool's hidden `uacce-trace bench …` drivers (an ordinary process,
//! traced like any other) run once per mode and round, untraced, under
//! bpftrace programs and under `uacce-trace record` / `serve`; a tracer is
//! started, waited for (its readiness line, then a settle time) before the
//! loop and stopped (SIGINT) after it. The loop reports its wall time, its
//! own CPU time and the whole machine's busy CPU time (`/proc/stat`) over
//! the loop alone; here they become the added cost per event over the
//! untraced run of the same round, its per-round ratios to the bpftrace
//! programs' and medians, in one table whose columns both benches share.
//!
//! Every mode list starts the same way: [`UNTRACED`], then the bpftrace
//! floor ([`FILTER`]: the same hooks, programs that do nothing), then the
//! bpftrace one-liner the tool is compared with ([`BPFTRACE`]); the tool's
//! modes follow.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{
    built_binaries, f, fmt_ns, fmt_ratio, json_of, loadavg, machine, median, proc_cpu,
    raise_priority, setup_host, table, utc_now, Common, Priority,
};

/// The untraced mode's index in every mode list.
pub(super) const UNTRACED: usize = 0;
/// The bpftrace floor's (programs on the same hooks that do nothing).
pub(super) const FILTER: usize = 1;
/// The bpftrace one-liner's that the tool is compared with.
pub(super) const BPFTRACE: usize = 2;

/// What runs beside the loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tracer {
    None,
    /// A bpftrace program; `hist`: it keeps `@lat` histograms, which
    /// bpftrace prints when stopped.
    Bpftrace {
        prog: String,
        hist: bool,
    },
    /// `uacce-trace record -o FILE` (per-event).
    Record,
    /// `serve`, in summary mode (its default) or with `--per-event`.
    Serve {
        summary: bool,
    },
}

/// One mode of a bench: its row name and its tracer.
#[derive(Clone, Debug)]
pub(super) struct Mode {
    pub name: String,
    pub tracer: Tracer,
}

impl Mode {
    pub fn new(name: &str, tracer: Tracer) -> Self {
        Mode {
            name: name.to_string(),
            tracer,
        }
    }
}

/// One loop run.
#[derive(Clone, Debug, Default)]
pub(super) struct Run {
    /// Whole machine busy ns per call over the loop.
    pub machine: f64,
    pub wall: f64,
    /// The loop thread's own CPU ns per call.
    pub thread: f64,
    /// The tracer process's CPU ns per call (all its threads), sampled just
    /// before and after the loop process.
    pub tracer: f64,
    /// What the tracer said it saw (its last status line), if anything.
    pub saw: Option<String>,
    /// In a run with kernel BPF statistics: the run time of the programs
    /// that ran once per call, per call, in all and by program.
    pub bpf: f64,
    pub bpf_programs: Vec<(String, f64)>,
}

/// Runs per mode (outer: the mode's index), in round order.
pub(super) type PerMode = Vec<Vec<Run>>;

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

/// N of bpftrace's "Attaching N probes..." (printed before it attaches
/// them).
fn probes_announced(line: &str) -> Option<usize> {
    line.strip_prefix("Attaching ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Attachments `pid` holds: its perf event (kprobes, uprobes, tracepoints)
/// and BPF link (fentry, …) descriptors.
fn attachments(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|t| {
            let t = t.to_string_lossy();
            t.contains("perf_event") || t.contains("bpf_link")
        })
        .count()
}

/// Waits (at most 60 s) until bpftrace's process holds one attachment per
/// announced probe.
fn wait_attached(pid: u32, want: usize, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while attachments(pid) < want {
        if Instant::now() > deadline {
            bail!("{what}: {want} probes announced, not attached within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The sum of the counts of the histograms bpftrace printed (`[lo, hi)
/// COUNT |@@@|` lines), i.e. the events its `hist()` took in.
pub(super) fn hist_total(lines: &[String]) -> u64 {
    lines
        .iter()
        .filter_map(|l| {
            let l = l.trim_start();
            if !l.starts_with('[') {
                return None;
            }
            let after = &l[l.find([')', ']'])? + 1..];
            after.split('|').next()?.trim().parse::<u64>().ok()
        })
        .sum()
}

/// The last line a tracer printed that says what it saw: uacce-trace's
/// "wrote … (N events; M dropped)" / "stopped serving (N events, …)", or
/// for a bpftrace `hist()` program the number of `@lat` histograms printed
/// and the events in them.
fn saw(tracer: &Tracer, lines: &[String]) -> Option<String> {
    match tracer {
        Tracer::None | Tracer::Bpftrace { hist: false, .. } => None,
        Tracer::Bpftrace { hist: true, .. } => {
            let n = lines.iter().filter(|l| l.starts_with("@lat[")).count();
            let total = hist_total(lines);
            Some(if total > 0 {
                format!("{n} @lat histogram(s), {total} events in them")
            } else {
                format!("{n} @lat histogram(s)")
            })
        }
        Tracer::Record | Tracer::Serve { .. } => lines
            .iter()
            .rev()
            .find(|l| l.contains(" events"))
            .map(|l| l.trim_start_matches("uacce-trace: ").to_string()),
    }
}

/// One bench's loop and how its tracers run.
pub(super) struct HostLoop<'a> {
    tool: &'a Path,
    /// The loop: `uacce-trace bench SUBCOMMAND --count N …`.
    loop_args: Vec<String>,
    /// Arguments every uacce-trace tracer gets after its own (`--op …`).
    tool_args: Vec<String>,
    /// Milliseconds between a tracer's readiness line and the loop's start.
    settle_ms: u64,
    /// `record`'s output file (removed after each run).
    scratch: PathBuf,
}

impl HostLoop<'_> {
    /// The tracer's command line for `tracer`, and its readiness line.
    fn tracer_command(&self, tracer: &Tracer) -> Option<(Command, &'static str)> {
        match tracer {
            Tracer::None => None,
            Tracer::Bpftrace { prog, .. } => {
                let mut c = Command::new("bpftrace");
                // Line-buffered: "Attaching N probes..." must arrive at once.
                c.args(["-B", "line", "-e", prog]);
                Some((c, "Attaching"))
            }
            Tracer::Record => {
                let mut c = Command::new(self.tool);
                c.arg("record").arg("-o").arg(&self.scratch);
                c.args(&self.tool_args);
                // "recording to FILE (…; N hooks attached; PLAN)"
                Some((c, "hooks attached"))
            }
            Tracer::Serve { summary } => {
                let mut c = Command::new(self.tool);
                // Port 0: a free loopback port, chosen by the kernel.
                c.args(["serve", "--listen", "127.0.0.1:0"]);
                if !summary {
                    c.arg("--per-event");
                }
                c.args(&self.tool_args);
                // "tracing started (N hooks attached; PLAN)"
                Some((c, "hooks attached"))
            }
        }
    }

    /// One loop under `mode`'s tracer, with kernel BPF statistics when
    /// `stats`.
    fn run_mode(&self, mode: &Mode, stats: bool) -> Result<Run> {
        let what = &mode.name;
        let running = match self.tracer_command(&mode.tracer) {
            Some((cmd, ready)) => {
                let r = start(cmd, ready, what)?;
                if let Some(want) = r.seen.last().and_then(|l| probes_announced(l)) {
                    wait_attached(r.child.id(), want, what)?;
                }
                std::thread::sleep(Duration::from_millis(self.settle_ms));
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
        let mut cmd = Command::new(self.tool);
        cmd.arg("bench").args(&self.loop_args);
        if stats {
            cmd.arg("--bpf-stats");
        }
        let label = format!("uacce-trace bench {}", self.loop_args.join(" "));
        let v: Result<Value> = json_of(&mut cmd, &label);
        let cpu1 = tracer_cpu();
        let lines = match running {
            Some(r) => r.stop(what)?,
            None => Vec::new(),
        };
        let _ = fs::remove_file(&self.scratch);
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
            saw: saw(&mode.tracer, &lines),
            bpf: f(&v, "/bpf_ns_per_call"),
            bpf_programs,
        })
    }

    /// `rounds` rounds, each running every mode once in order, then every
    /// traced mode once more with BPF statistics (they cost time
    /// themselves: separate runs). Returns (runs, statistics runs) per mode.
    pub fn rounds(&self, label: &str, modes: &[Mode], rounds: u32) -> Result<(PerMode, PerMode)> {
        let mut runs: PerMode = vec![Vec::new(); modes.len()];
        let mut stats: PerMode = vec![Vec::new(); modes.len()];
        for round in 0..rounds {
            for (i, mode) in modes.iter().enumerate() {
                eprintln!(
                    "bench: {label}, round {} of {rounds}: {}…",
                    round + 1,
                    mode.name
                );
                runs[i].push(self.run_mode(mode, false)?);
            }
            for (i, mode) in modes.iter().enumerate().skip(1) {
                eprintln!(
                    "bench: {label}, round {} of {rounds}: {}, BPF statistics…",
                    round + 1,
                    mode.name
                );
                stats[i].push(self.run_mode(mode, true)?);
            }
        }
        Ok((runs, stats))
    }
}

/// The options `bench ioctl` and `bench requests` share.
#[derive(clap::Args, Debug)]
pub(super) struct RoundArgs {
    /// Rounds; each runs every mode once, in the same order.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Milliseconds between a tracer's readiness line and the loop's start
    /// (start-up work such as scanning processes stays out of the window).
    #[arg(long, default_value_t = 1000)]
    pub settle_ms: u64,
    #[command(flatten)]
    pub common: Common,
}

/// What a host bench holds from its start to its report: the bench build
/// of the tool, the raised priority and what the machine was doing.
pub(super) struct Session {
    pub tool: PathBuf,
    priority: Priority,
    load_before: String,
    others: String,
    started: Instant,
}

impl Session {
    /// Root, the toolchain and packages, the tool built with its bench
    /// driver, the priority raised (`bench NAME`, for messages).
    pub fn begin(name: &str, common: &Common) -> Result<Self> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("bench {name} loads BPF programs and needs root");
        }
        setup_host()?;
        let (tool, _) = built_binaries(common.no_build)?;
        let priority = raise_priority(common);
        Ok(Session {
            tool,
            priority,
            load_before: loadavg(),
            others: other_jobs(),
            started: Instant::now(),
        })
    }

    /// The loop `uacce-trace bench LOOP --count COUNT`, the tool's tracers
    /// getting `tool_args`; `record` writes to a scratch file named after
    /// `name`.
    pub fn host_loop(
        &self,
        name: &str,
        call_loop: &str,
        count: u64,
        tool_args: Vec<String>,
        settle_ms: u64,
    ) -> HostLoop<'_> {
        HostLoop {
            tool: &self.tool,
            loop_args: vec![call_loop.into(), "--count".into(), count.to_string()],
            tool_args,
            settle_ms,
            scratch: std::env::temp_dir()
                .join(format!("uacce-bench-{name}-{}.hlog", std::process::id())),
        }
    }

    /// Restores the priority; where, when and beside what the runs were
    /// made.
    pub fn end(self) -> Facts {
        let facts = Facts {
            when: utc_now(),
            seconds: self.started.elapsed().as_secs(),
            priority: self.priority.what.clone(),
            load: format!("{} before, {} after", self.load_before, loadavg()),
            others: self.others,
            versions: format!(
                "{}; {}",
                version_of(Path::new("bpftrace")),
                version_of(&self.tool)
            ),
        };
        drop(self.priority);
        facts
    }
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

/// The first line `program --version` prints.
pub(super) fn version_of(program: &Path) -> String {
    Command::new(program)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Where and when the runs were made.
pub(super) struct Facts {
    pub when: String,
    pub seconds: u64,
    pub priority: String,
    pub load: String,
    pub others: String,
    pub versions: String,
}

impl Facts {
    /// The machine and the circumstances, as a markdown list.
    pub fn list(&self) -> String {
        let mut list = machine();
        list.push(("tracers".into(), self.versions.clone()));
        list.push(("priority".into(), self.priority.clone()));
        list.push(("load average".into(), self.load.clone()));
        list.push(("other jobs".into(), self.others.clone()));
        let mut out = String::new();
        for (k, v) in &list {
            let _ = writeln!(out, "- {k}: {v}");
        }
        out
    }
}

/// The added whole-machine ns/call of mode `i` in each round (minus the
/// untraced run of the same round).
pub(super) fn added(runs: &[Vec<Run>], i: usize) -> Vec<f64> {
    runs[i]
        .iter()
        .zip(&runs[UNTRACED])
        .map(|(r, u)| r.machine - u.machine)
        .collect()
}

/// Per-round ratios of mode `i`'s added cost to mode `to`'s.
pub(super) fn ratios(runs: &[Vec<Run>], i: usize, to: usize) -> Vec<f64> {
    added(runs, i)
        .iter()
        .zip(added(runs, to))
        .map(|(a, b)| a / b)
        .collect()
}

/// The cost table (one row per mode, medians over rounds), the BPF time by
/// program and what the tracers saw. `unit`: what one loop call is ("call",
/// "request"); `reference`: the bpftrace one-liner's column name.
pub(super) fn cost_table(
    modes: &[Mode],
    runs: &[Vec<Run>],
    stats: &[Vec<Run>],
    unit: &str,
    reference: &str,
) -> String {
    let rows: Vec<Vec<String>> = modes
        .iter()
        .enumerate()
        .map(|(i, mode)| {
            let col = |g: fn(&Run) -> f64| median(runs[i].iter().map(g).collect());
            let traced = i != UNTRACED;
            let dash = || "–".to_string();
            vec![
                mode.name.clone(),
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
                if mode.tracer == Tracer::None {
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
    let heads = [
        "mode".to_string(),
        format!("whole-machine busy ns/{unit}"),
        format!("added ns/{unit} (whole machine)"),
        "added, each round".into(),
        format!("vs {reference}"),
        "vs filter only".into(),
        format!("wall ns/{unit}"),
        format!("traced thread CPU ns/{unit} (that thread only)"),
        format!("tracer process CPU ns/{unit}"),
        format!("BPF ns/{unit}"),
    ];
    let heads: Vec<&str> = heads.iter().map(String::as_str).collect();
    let mut out = String::from("\n");
    out.push_str(&table(&heads, &rows));
    let _ = writeln!(
        out,
        "\n\"BPF ns/{unit}\": the kernel's BPF run-time statistics \
         (`BPF_ENABLE_STATS`) of the programs that ran at least once per {unit}, from \
         separate runs with statistics on (they cost time themselves), one per mode and \
         round, medians; by program, last round:\n"
    );
    for (i, mode) in modes.iter().enumerate().skip(1) {
        let progs = stats[i].last().map_or_else(String::new, |r| {
            r.bpf_programs
                .iter()
                .map(|(p, ns)| format!("`{p}` {}", fmt_ns(*ns)))
                .collect::<Vec<_>>()
                .join(", ")
        });
        let _ = writeln!(out, "- {}: {progs}", mode.name);
    }
    let mut said = Vec::new();
    for (i, mode) in modes.iter().enumerate() {
        if let Some(s) = runs[i].iter().rev().find_map(|r| r.saw.clone()) {
            said.push(format!("{}: {s}", mode.name));
        }
    }
    if !said.is_empty() {
        let _ = writeln!(
            out,
            "\nWhat the tracers saw in their last run (warm-up {unit}s included):\n"
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

    #[test]
    fn bpftrace_histograms_are_summed() {
        let lines: Vec<String> = [
            "Attaching 2 probes...",
            "@lat[24013]: ",
            "[0]                    3 |@                |",
            "[4K, 8K)          208140 |@@@@@@@@@@@@@@@@@|",
            "[8M, 16M)              6 |                 |",
            "",
            "@lat[7]:",
            "[1]                    1 |@@@@@@@@@@@@@@@@@|",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        assert_eq!(hist_total(&lines), 208_150);
        let hist = Tracer::Bpftrace {
            prog: String::new(),
            hist: true,
        };
        assert_eq!(
            saw(&hist, &lines).as_deref(),
            Some("2 @lat histogram(s), 208150 events in them")
        );
        assert_eq!(hist_total(&["[1, 2) x |".to_string()]), 0);
    }

    #[test]
    fn announced_probes() {
        assert_eq!(probes_announced("Attaching 2 probes..."), Some(2));
        assert_eq!(probes_announced("Attaching 1 probe..."), Some(1));
        assert_eq!(probes_announced("recording to x (9 hooks attached)"), None);
        // This process holds no perf event or BPF link.
        assert_eq!(attachments(std::process::id()), 0);
    }

    #[test]
    fn tracers_say_what_they_saw() {
        let lines = vec![
            "uacce-trace: tracing started (9 hooks attached; plan)".to_string(),
            "uacce-trace: wrote /tmp/x.hlog (1050000 events; 0 dropped)".to_string(),
        ];
        assert_eq!(
            saw(&Tracer::Record, &lines).as_deref(),
            Some("wrote /tmp/x.hlog (1050000 events; 0 dropped)")
        );
        let bt = vec![
            "Attaching 2 probes...".to_string(),
            "@lat[42]: ".to_string(),
        ];
        let bpftrace = |hist| Tracer::Bpftrace {
            prog: String::new(),
            hist,
        };
        assert_eq!(
            saw(&bpftrace(true), &bt).as_deref(),
            Some("1 @lat histogram(s)")
        );
        assert_eq!(saw(&bpftrace(false), &bt), None);
        assert_eq!(saw(&Tracer::None, &lines), None);
    }
}
