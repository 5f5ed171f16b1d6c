//! Summary mode started onto a busy workload three times during one run
//! of it (`record --summary --format json`, then `serve` in its default
//! summary mode, scraped, then `record --summary` again), on the host's
//! real hook for the tool: the `sys_enter/exit_ioctl` tracepoints, which
//! catch `ioctl(fd, UACCE_CMD_PIN, …)` on any file (here /dev/null, where
//! every such call fails with ENOTTY: an error, as the kernel returns it).
//!
//! No test harness (`harness = false`): the same executable is the
//! workload (`summary_windows helper-workload THREADS`), two threads
//! making those ioctls back to back at full speed, each call bracketed by
//! its own CLOCK_MONOTONIC reads (t0 before, t1 after). The tracer is
//! started while they run; around each step the test asks the workload
//! for a mark, a CLOCK_MONOTONIC time the workload takes itself, at which
//! every thread tallies, exactly, how many of its calls (and of their
//! errors) began or ended before it (below: how, without logging every
//! call). From two marks the test then knows the calls wholly inside the
//! interval between them and the calls overlapping it.
//!
//! `record --summary`: marks `launch` (before the tracer is spawned),
//! `ready` (after it printed `recording to`, i.e. after its hooks are
//! attached), `stop` (before SIGINT) and `exited` (after it was reaped).
//! Its count and errors for the workload's pid (NDJSON rows of kind
//! `uacce_ctrl`, all intervals summed) lie between the calls wholly
//! inside [ready, stop] and those overlapping [launch, exited]: the
//! kernel counts a call at its `sys_exit` when it saw its `sys_enter`
//! (`ioctl_end`); attaching is done before `recording to` is printed, so
//! every call that began after `ready` has its entry seen; `record` reads
//! the maps a last time after SIGINT, and a call's summary update is done
//! before the syscall returns, so every call that ended before `stop` is
//! in that last reading. Conversely a counted call entered the kernel
//! after the hooks were attached (after `launch`) and left it before the
//! last reading (before `exited`).
//!
//! `serve`: marks `launch`, `ready` (after `serving`), m0 (after the first
//! scrape, count c0), e (a window later), and one after each later scrape;
//! it is scraped until the growth c1 − c0 of
//! `uacce_trace_uacce_ctrl_latency_seconds_count{pid}` covers the calls
//! wholly inside [m0, e] (the workload counts them; `serve` reads the
//! kernel's counts once a second, so a scrape lags: the 20 s deadline is
//! reached only when a call is lost, it bounds no value), and c1 stays
//! below the calls overlapping [launch, the last scrape's mark]; errors
//! (`uacce_trace_uacce_ctrl_errors_total`) alike.
//!
//! Every lifetime: the loss ledger (the rows' `losses`, serve's
//! `uacce_trace_lost_total`) names no reason but the start edge
//! (`in_flight_at_start`: calls that returned while the hooks were being
//! attached); the closing line says `0 dropped`, or names only that
//! reason; every thread had calls wholly inside the window; `record`
//! exits 130 (SIGINT, after writing the file), `serve` 0; the workload
//! still made calls after the last stop (stopped mid-stream) and exited 0.
//!
//! No timing tolerance is involved: a descheduled thread or tracer only
//! moves calls between the two sets, which are computed from the
//! workload's own timestamps. The upper bound is wide: it includes the
//! calls made during the tracer's start-up (1.2–2.2 s with both cores
//! busy, measured) and stop (0.2–1.1 s), about 1.5–2.8 times the calls
//! wholly inside, so the test prints, per window, the count against both
//! bounds. It does not catch a call counted twice under load;
//! `host_bpf`'s `summary_mode_matches_per_event_on_the_same_calls` does
//! (the count of a burst of calls equal to the per-event records of them).
//!
//! The tallies, exact without a log of every call: the workload's main
//! thread announces a mark (`PENDING` = its number), reads the clock
//! (m), publishes m (`VALUE`, then `GEN`), and waits until every thread
//! has tallied it. A thread checks `PENDING` and `GEN` after each call
//! (sequentially consistent loads, plain moves on x86). A call that ended
//! before the thread saw `PENDING` ended before m (its t1 was read before
//! a load that preceded the store that preceded the clock read); a call
//! that began after the thread saw `GEN` began after m. Only the calls in
//! between (a few, or more while the main thread is descheduled between
//! its stores) are kept and compared with m one by one.
//!
//! Needs root (or CAP_BPF and CAP_PERFMON) and a binary built with its
//! eBPF object, otherwise it prints `SKIP` and why (a failure under
//! `CI=true`). About 16 s on a 2-core machine.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    os::fd::AsRawFd,
    process::{Command, ExitCode, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::SeqCst},
        Arc, Mutex,
    },
    time::Duration,
};

#[path = "common/harness.rs"]
mod harness;
#[path = "common/skip.rs"]
mod skip;

use harness::{closing_losses, edge, now_ns, read_line, say, scrape, start_helper, Reaped};

/// `UACCE_CMD_PIN`: `_IOW('W', 2, struct { u64 addr; u64 size; })`.
const UACCE_CMD_PIN: u64 = 0x4010_5702;
/// Tracer lifetimes in one workload run.
const WINDOWS: usize = 3;
/// How long each lifetime lasts between `ready` and `stop`.
const WINDOW: Duration = Duration::from_secs(3);
/// Workload threads.
const THREADS: usize = 2;

/// At one mark, one thread's tallies: (calls, errors) of its calls that
/// ended before it (`t1 < m`), began before it (`t0 < m`), ended by it
/// (`t1 <= m`) and began by it (`t0 <= m`).
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    ended_before: [u64; 2],
    began_before: [u64; 2],
    ended_by: [u64; 2],
    began_by: [u64; 2],
}

impl Tally {
    fn fields(&self) -> [u64; 8] {
        let [a, b, c, d] = [
            self.ended_before,
            self.began_before,
            self.ended_by,
            self.began_by,
        ];
        [a[0], a[1], b[0], b[1], c[0], c[1], d[0], d[1]]
    }

    fn parse(f: &[u64]) -> Tally {
        Tally {
            ended_before: [f[0], f[1]],
            began_before: [f[2], f[3]],
            ended_by: [f[4], f[5]],
            began_by: [f[6], f[7]],
        }
    }
}

/// The mark announced (its number), its time, the last one published.
static PENDING: AtomicU64 = AtomicU64::new(0);
static VALUE: AtomicU64 = AtomicU64::new(0);
static GEN: AtomicU64 = AtomicU64::new(0);
/// Marks tallied, all threads together.
static ACKS: AtomicU64 = AtomicU64::new(0);

/// One thread's loop: ioctls until `stop`; returns its tallies, one per mark.
fn busy_thread(stop: &AtomicBool, tallies: &Mutex<Vec<Tally>>) {
    let devnull = std::fs::File::open("/dev/null").expect("open /dev/null");
    let range: [u64; 2] = [0x7f12_3456_7000, 4096];
    let (mut calls, mut errors) = (0u64, 0u64);
    let mut seen = 0u64;
    // Calls that may lie on either side of the pending mark, and the
    // tallies before the first of them.
    let mut kept: Vec<(u64, u64, bool)> = Vec::with_capacity(1 << 16);
    let mut base = (0u64, 0u64);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let t0 = now_ns();
        // SAFETY: ioctl on /dev/null with a pointer to our buffer.
        let r = unsafe { libc::ioctl(devnull.as_raw_fd(), UACCE_CMD_PIN as _, range.as_ptr()) };
        let t1 = now_ns();
        let err = r != 0;
        if kept.is_empty() && PENDING.load(SeqCst) > seen {
            base = (calls, errors);
        }
        if !kept.is_empty() || PENDING.load(SeqCst) > seen {
            kept.push((t0, t1, err));
        }
        calls += 1;
        errors += u64::from(err);
        if GEN.load(SeqCst) > seen {
            if kept.is_empty() {
                base = (calls - 1, errors - u64::from(err));
                kept.push((t0, t1, err));
            }
            let m = VALUE.load(SeqCst);
            let count = |f: &dyn Fn(u64, u64) -> bool| {
                let mut c = [base.0, base.1];
                for &(a, b, e) in &kept {
                    if f(a, b) {
                        c[0] += 1;
                        c[1] += u64::from(e);
                    }
                }
                c
            };
            tallies.lock().expect("lock").push(Tally {
                ended_before: count(&|_, b| b < m),
                began_before: count(&|a, _| a < m),
                ended_by: count(&|_, b| b <= m),
                began_by: count(&|a, _| a <= m),
            });
            kept.clear();
            seen += 1;
            ACKS.fetch_add(1, SeqCst);
        }
    }
}

/// Calls (and errors) wholly inside [mark `i`, mark `j`], all threads.
fn inside(tallies: &[Vec<Tally>], i: usize, j: usize) -> [u64; 2] {
    let mut n = [0; 2];
    for th in tallies {
        for (k, n) in n.iter_mut().enumerate() {
            *n += th[j].ended_by[k].saturating_sub(th[i].began_before[k]);
        }
    }
    n
}

/// Calls (and errors) overlapping [mark `i`, mark `j`], all threads.
fn overlapping(tallies: &[Vec<Tally>], i: usize, j: usize) -> [u64; 2] {
    let mut n = [0; 2];
    for th in tallies {
        for (k, n) in n.iter_mut().enumerate() {
            *n += th[j].began_by[k] - th[i].ended_before[k];
        }
    }
    n
}

/// `summary_windows helper-workload THREADS`: prints `ready` once the
/// threads run, answers on its standard input each `mark` with the mark's
/// CLOCK_MONOTONIC time (once every thread tallied it), `inside I J` with
/// the calls and errors wholly inside [mark I, mark J], and `quit` with
/// each thread's tallies (`thread T mark I` and 8 numbers), then exits.
fn workload(threads: usize) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    let out: Vec<Arc<Mutex<Vec<Tally>>>> = (0..threads).map(|_| Arc::default()).collect();
    let handles: Vec<_> = out
        .iter()
        .map(|tallies| {
            let stop = Arc::clone(&stop);
            let tallies = Arc::clone(tallies);
            std::thread::spawn(move || busy_thread(&stop, &tallies))
        })
        .collect();
    let snapshot = || -> Vec<Vec<Tally>> {
        out.iter()
            .map(|t| t.lock().expect("lock").clone())
            .collect()
    };
    std::thread::sleep(Duration::from_millis(100));
    say("ready".into());
    let mut marks = 0u64;
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap_or_default();
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["inside", i, j] = words.as_slice() {
            let (i, j) = (i.parse().unwrap_or(0), j.parse().unwrap_or(0));
            let n = inside(&snapshot(), i, j);
            say(format!("{} {}", n[0], n[1]));
            continue;
        }
        if words != ["mark"] {
            break;
        }
        marks += 1;
        PENDING.store(marks, SeqCst);
        let m = now_ns();
        VALUE.store(m, SeqCst);
        GEN.store(marks, SeqCst);
        while ACKS.load(SeqCst) < marks * threads as u64 {
            std::thread::yield_now();
        }
        say(m.to_string());
    }
    stop.store(true, SeqCst);
    for h in handles {
        let _ = h.join();
    }
    for (t, tallies) in snapshot().iter().enumerate() {
        for (i, tally) in tallies.iter().enumerate() {
            let f = tally.fields().map(|x| x.to_string()).join(" ");
            say(format!("thread {t} mark {i} {f}"));
        }
    }
    ExitCode::SUCCESS
}

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_uacce-trace"))
}

/// What one tracer lifetime counted for the workload, and the marks that
/// bound it: every call wholly inside [surely.0, surely.1] is counted,
/// none that does not overlap [possibly.0, possibly.1].
struct Lifetime {
    what: &'static str,
    /// Indices of the launch and ready marks (start-up).
    started: (usize, usize),
    surely: (usize, usize),
    possibly: (usize, usize),
    /// [calls, errors] counted.
    counted: [u64; 2],
    /// [calls, errors] counted before `surely.0` and not in `counted`
    /// (serve: the first scrape), off the upper bound.
    before: [u64; 2],
    /// Losses by reason (non-zero ones).
    ledger: BTreeMap<String, u64>,
    closing: String,
    log: Vec<String>,
}

/// The workload under test, driven through its standard input.
struct Workload {
    child: Reaped,
    input: std::process::ChildStdin,
    output: BufReader<std::process::ChildStdout>,
    marks: usize,
    /// The marks' CLOCK_MONOTONIC times.
    times: Vec<u64>,
}

impl Workload {
    fn start() -> Result<Workload, String> {
        let (child, input, output) = start_helper(&[&THREADS.to_string()])?;
        Ok(Workload {
            child,
            input,
            output,
            marks: 0,
            times: Vec::new(),
        })
    }

    /// A mark: its index (its time is in the tallies' terms).
    fn mark(&mut self) -> Result<usize, String> {
        writeln!(self.input, "mark").map_err(|e| format!("to workload: {e}"))?;
        let line = read_line(&mut self.output);
        let t = line
            .parse::<u64>()
            .map_err(|_| format!("the workload answered {line:?} to a mark"))?;
        self.times.push(t);
        self.marks += 1;
        Ok(self.marks - 1)
    }

    /// Calls wholly inside [mark `i`, mark `j`] so far.
    fn inside(&mut self, i: usize, j: usize) -> Result<u64, String> {
        writeln!(self.input, "inside {i} {j}").map_err(|e| format!("to workload: {e}"))?;
        let line = read_line(&mut self.output);
        line.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("the workload answered {line:?} to inside"))
    }

    /// Milliseconds from mark `i` to mark `j`.
    fn ms(&self, i: usize, j: usize) -> f64 {
        (self.times[j] - self.times[i]) as f64 / 1e6
    }
}

/// Reads `child`'s standard error up to the line starting with `ready`.
fn read_until(
    child: &mut std::process::Child,
    ready: &str,
) -> Result<
    (
        std::io::Lines<BufReader<std::process::ChildStderr>>,
        Vec<String>,
    ),
    String,
> {
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(l)) => {
                let found = l.starts_with(ready);
                log.push(l);
                if found {
                    return Ok((lines, log));
                }
            }
            _ => return Err(format!("the tracer ended before attaching: {log:?}")),
        }
    }
}

/// The tool live, its standard error piped.
fn spawn_tool(args: &[&str]) -> Result<Reaped, String> {
    Ok(Reaped(
        tool()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {args:?}: {e}"))?,
    ))
}

/// Start `record --summary --format json`, wait for it to attach, let it
/// run [`WINDOW`], SIGINT it; marks around each step.
fn record_lifetime(w: &mut Workload, out: &std::path::Path, pid: u64) -> Result<Lifetime, String> {
    let launch = w.mark()?;
    let out_arg = out.display().to_string();
    let mut rec = spawn_tool(&["record", "--summary", "--format", "json", "-o", &out_arg])?;
    let (lines, mut log) = read_until(&mut rec.0, "uacce-trace: recording to")?;
    let ready = w.mark()?;
    std::thread::sleep(WINDOW);
    let stop = w.mark()?;
    // SAFETY: a signal to our own child, not yet reaped.
    unsafe { libc::kill(rec.0.id() as i32, libc::SIGINT) };
    log.extend(lines.map_while(Result::ok));
    let status = rec.0.wait().map_err(|e| format!("wait for record: {e}"))?;
    let exited = w.mark()?;
    // Interrupted, `record` exits 128 + SIGINT after writing the file.
    if status.code() != Some(130) {
        return Err(format!("record exit status {status:?}: {log:?}"));
    }
    let closing = log
        .iter()
        .find(|l| l.starts_with("uacce-trace: wrote "))
        .cloned()
        .ok_or_else(|| format!("no closing line: {log:?}"))?;
    let text = std::fs::read_to_string(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut counted = [0u64; 2];
    let mut ledger = BTreeMap::<String, u64>::new();
    for line in text.lines() {
        let row: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("NDJSON {line:?}: {e}"))?;
        if let Some(l) = row["losses"].as_object() {
            for (reason, n) in l {
                *ledger.entry(reason.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
        if row["kind"] == "uacce_ctrl" && row["pid"].as_u64() == Some(pid) {
            counted[0] += row["count"].as_u64().unwrap_or(0);
            counted[1] += row["errors"].as_u64().unwrap_or(0);
        }
    }
    Ok(Lifetime {
        what: "record --summary",
        started: (launch, ready),
        surely: (ready, stop),
        possibly: (launch, exited),
        counted,
        before: [0; 2],
        ledger,
        closing,
        log,
    })
}

/// The samples named `name` with `label` among their labels: (the other
/// labels, value).
fn samples<'a>(body: &'a str, name: &str, label: &str) -> Vec<(&'a str, u64)> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| series.split('{').next() == Some(name) && series.contains(label))
        .filter_map(|(series, v)| Some((series, v.parse::<f64>().ok()? as u64)))
        .collect()
}

/// [calls, errors] of the workload's pid in a scrape.
fn scraped(body: &str, pid_label: &str) -> [u64; 2] {
    let sum = |name| samples(body, name, pid_label).iter().map(|s| s.1).sum();
    [
        sum("uacce_trace_uacce_ctrl_latency_seconds_count"),
        sum("uacce_trace_uacce_ctrl_errors_total"),
    ]
}

/// `serve` (summary mode, its default) started, scraped once it serves
/// (c0, then mark m0), after [`WINDOW`] (mark e) scraped until the calls
/// wholly inside [m0, e] are in (the workload counts them; a deadline that
/// only a lost call reaches: `serve` reads the kernel's counts once a
/// second), then stopped with SIGINT.
fn serve_lifetime(w: &mut Workload, pid: u64) -> Result<Lifetime, String> {
    let launch = w.mark()?;
    let mut serve = spawn_tool(&["serve", "--listen", "127.0.0.1:0"])?;
    let (lines, mut log) = read_until(&mut serve.0, "uacce-trace: serving http://")?;
    let ready = w.mark()?;
    let addr = log
        .last()
        .and_then(|l| l.strip_prefix("uacce-trace: serving http://"))
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
        .to_string();
    let pid_label = format!("pid=\"{pid}\"");
    let c0 = scraped(&scrape(&addr)?, &pid_label);
    let m0 = w.mark()?;
    std::thread::sleep(WINDOW);
    let e = w.mark()?;
    let need = w.inside(m0, e)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (mut body, mut c1, mut last);
    loop {
        body = scrape(&addr)?;
        c1 = scraped(&body, &pid_label);
        last = w.mark()?;
        if c1[0].saturating_sub(c0[0]) >= need || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: a signal to our own child, not yet reaped.
    unsafe { libc::kill(serve.0.id() as i32, libc::SIGINT) };
    log.extend(lines.map_while(Result::ok));
    let status = serve.0.wait().map_err(|e| format!("wait for serve: {e}"))?;
    if status.code() != Some(0) {
        return Err(format!("serve exit status {status:?}: {log:?}"));
    }
    let closing = log
        .iter()
        .find(|l| l.starts_with("uacce-trace: stopped serving"))
        .cloned()
        .ok_or_else(|| format!("no closing line: {log:?}"))?;
    let ledger = samples(&body, "uacce_trace_lost_total", "reason=")
        .into_iter()
        .filter(|s| s.1 > 0)
        .map(|(series, n)| {
            let reason = series.split('"').nth(1).unwrap_or(series);
            (reason.to_string(), n)
        })
        .collect();
    Ok(Lifetime {
        what: "serve",
        started: (launch, ready),
        surely: (m0, e),
        possibly: (launch, last),
        counted: [c1[0] - c0[0], c1[1] - c0[1]],
        before: c0,
        ledger,
        closing,
        log,
    })
}

/// See the module docs.
fn summary_windows_on_a_busy_workload() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!(
        "uacce-trace-summary-windows-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut w = Workload::start()?;
    let pid = u64::from(w.child.0.id());
    // The workload runs before the first tracer starts.
    std::thread::sleep(Duration::from_millis(300));
    let mut lives = Vec::new();
    for i in 0..WINDOWS {
        lives.push(if i == 1 {
            serve_lifetime(&mut w, pid)?
        } else {
            record_lifetime(&mut w, &dir.join(format!("window{i}.json")), pid)?
        });
        std::thread::sleep(Duration::from_millis(300));
    }
    let after = w.mark()?;
    writeln!(w.input, "quit").map_err(|e| format!("to workload: {e}"))?;
    // tallies[thread][mark]
    let mut tallies = vec![vec![Tally::default(); w.marks]; THREADS];
    for line in (&mut w.output).lines().map_while(Result::ok) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let nums: Vec<u64> = f.iter().filter_map(|x| x.parse().ok()).collect();
        if f.first() != Some(&"thread") || nums.len() != 10 {
            return Err(format!("workload line {line:?}"));
        }
        let (t, m) = (nums[0] as usize, nums[1] as usize);
        if t >= THREADS || m >= w.marks {
            return Err(format!("workload line {line:?}"));
        }
        tallies[t][m] = Tally::parse(&nums[2..]);
    }
    let status = w
        .child
        .0
        .wait()
        .map_err(|e| format!("wait for workload: {e}"))?;
    if !status.success() {
        return Err(format!("workload exit status {status:?}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut failures = Vec::new();
    let last_exit = lives.last().map_or(0, |l| l.possibly.1);
    for (t, th) in tallies.iter().enumerate() {
        if th[after].began_by[0] == th[last_exit].ended_before[0] {
            failures.push(format!("thread {t} made no call after the last stop"));
        }
    }
    for (i, life) in lives.iter().enumerate() {
        let (lo, hi) = (
            inside(&tallies, life.surely.0, life.surely.1),
            overlapping(&tallies, life.possibly.0, life.possibly.1),
        );
        for (t, th) in tallies.iter().enumerate() {
            if th[life.surely.1].ended_by[0] <= th[life.surely.0].began_before[0] {
                failures.push(format!("window {i}: thread {t} made no call inside it"));
            }
        }
        let c = life.counted;
        println!(
            "window {i} ({}): start-up {:.0} ms, window {:.0} ms; {} calls counted ({} errors), \
             wholly inside the window {} ({} errors), overlapping the tracer's life {} ({} \
             errors){}; ledger {:?}; {}",
            life.what,
            w.ms(life.started.0, life.started.1),
            w.ms(life.surely.0, life.surely.1),
            c[0],
            c[1],
            lo[0],
            lo[1],
            hi[0],
            hi[1],
            if life.before == [0, 0] {
                String::new()
            } else {
                format!(", {} of them counted before the window", life.before[0])
            },
            life.ledger,
            life.closing
        );
        for (k, what) in [(0, "calls"), (1, "errors")] {
            if c[k] < lo[k] || c[k] + life.before[k] > hi[k] {
                failures.push(format!(
                    "window {i} ({}): {} {what} counted, outside [{}, {}]",
                    life.what,
                    c[k],
                    lo[k],
                    hi[k] - life.before[k].min(hi[k])
                ));
            }
        }
        if let Some(r) = life.ledger.keys().find(|r| *r != "in_flight_at_start") {
            failures.push(format!(
                "window {i}: loss reason {r} (not an edge): {:?}",
                life.ledger
            ));
        }
        if let Err(e) = closing_losses(&life.closing, edge) {
            failures.push(format!("window {i}: {e}; log {:?}", life.log));
        }
    }
    harness::verdict(failures)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("helper-workload") {
        let threads = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(THREADS);
        return workload(threads);
    }
    harness::run(&[(
        "summary_windows_on_a_busy_workload",
        summary_windows_on_a_busy_workload,
        true,
    )])
}
