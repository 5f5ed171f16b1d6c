//! Request tracing (`--op`) on the host's real uprobes, against the
//! workload's own clock.
//!
//! No test harness (`harness = false`): the same executable is the
//! workload (`requests helper-workload THREADS`). Its request function
//! [`uacce_trace_test_request`] (an unmangled, never-inlined symbol the
//! tool probes) returns the request's id, recurses in some requests (only
//! the outermost call is a request) and sleeps in others; each thread
//! logs every request's own CLOCK_MONOTONIC bracket (before the call,
//! after it) and the bracket measured inside the function. The workload
//! is already running when the tracer attaches, and it timestamps the
//! window itself (on the test's word, on its standard input). Checked:
//! every request wholly inside the window is traced exactly once (matched
//! by its id, the function's return value), with its thread, its entry
//! inside the outer bracket and its latency between the inner and the
//! outer one; every traced request is one the workload made, and one
//! traced inside the window but not made wholly inside it straddles an
//! edge of the window (its probes fired inside, the workload's clock
//! reads around the call did not: at most one per thread and edge); no
//! request was lost. And the error paths: a missing binary, an unknown symbol, bad
//! syntax and a preset found nowhere exit with status 2 and say why.
//!
//! `requests_in_three_lifetimes`: during ONE workload run the tracer is
//! started and stopped three times, each window timestamped by the
//! workload (`launch` before the tracer is spawned, `ready` after it said
//! it attached, `stop` before SIGINT, `exited` after it was reaped):
//!
//! 1. `trace --json --op`: the per-request checks above, and every traced
//!    request is one the workload made (no phantom), at most as many as
//!    overlapped [launch, exited];
//! 2. `record --op -o FILE.utrace`: `record --replay FILE --format json`
//!    exports op rows whose count for the workload lies between the
//!    requests wholly inside [ready, stop] and those overlapping [launch,
//!    exited], none with a fault (the host has no IOPF hook), and `report
//!    FILE` prints the same count;
//! 3. `serve --op`, scraped at the window's start (count c0, then a mark
//!    m0) and after its end (mark e): the growth of
//!    `uacce_trace_op_latency_seconds_count{pid}` covers every request
//!    wholly inside [m0, e] and each count stays below the requests that
//!    overlapped serve's life up to that scrape; the `+Inf` bucket equals
//!    the count; no request loss reason is counted.
//!
//! In every lifetime the closing line says `0 dropped` or names only the
//! start edge (`in_flight_at_start`) and a full ring buffer (`ring_full_*`:
//! the tracers see every process's pin ioctls, and another test's flood of
//! them, e.g. `summary_windows` run at the same time, overflows the ring);
//! a request of a window may be missing only when as many were counted as
//! `ring_full_request` (named, never silent); the tracer exits as a signal asks
//! (0; `record` 130), and every workload thread still makes requests
//! after the last stop (stopped mid-stream); the workload exits 0.
//!
//! No timing tolerance: a traced request's entry uprobe fired after the
//! attach (after `launch`), its return before the stop (`exited`), so it
//! overlaps [launch, exited]; one wholly inside [ready, stop] has both
//! probes fired while attached. `serve` answers a scrape from the events
//! it has read so far, which lag the ring buffer, so after `e` it is
//! scraped until the requests wholly inside [m0, e] are in (the workload
//! counts them, once every thread finished a request after `e`): a
//! 20 s deadline that only a lost request reaches, not a bound on the
//! lag. About 12 s (3 × 1.5 s windows and the tracer's start-ups).
//!
//! The error paths need nothing; the tracing test needs root (or CAP_BPF
//! and CAP_PERFMON) and a binary built with its eBPF object, otherwise it
//! prints `SKIP` and why (a failure under `CI=true`).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    process::{Command, ExitCode, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

#[path = "common/harness.rs"]
mod harness;
#[path = "common/serve.rs"]
mod serve;
#[path = "common/skip.rs"]
mod skip;

use harness::{closing_losses, edge, now_ns, read_line, say, scrape, start_helper, Reaped};

const SYMBOL: &str = "uacce_trace_test_request";

/// The request: `depth` recursive calls below the outermost one, then
/// `work_ns` of spinning (or a 1 ms sleep when `sleep`); writes the bracket
/// it measured inside the outermost call into `inner` and returns `id`.
///
/// # Safety
/// `inner` points to two writable `u64`s.
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn uacce_trace_test_request(
    id: u64,
    depth: u32,
    work_ns: u64,
    sleep: bool,
    inner: *mut u64,
) -> u64 {
    let start = now_ns();
    if depth > 0 {
        // SAFETY: same pointer, same contract.
        std::hint::black_box(unsafe {
            uacce_trace_test_request(id + 1_000_000_000, depth - 1, work_ns / 2, false, inner)
        });
    }
    if sleep {
        std::thread::sleep(Duration::from_millis(1));
    } else {
        while now_ns() - start < work_ns {
            std::hint::spin_loop();
        }
    }
    // SAFETY: the caller's two u64s; the outermost call writes last.
    unsafe {
        if depth > 0 || *inner == 0 {
            *inner = start;
        }
        *inner.add(1) = now_ns();
    }
    std::hint::black_box(id)
}

/// One request as the workload saw it.
#[derive(Clone, Copy, Debug)]
struct Logged {
    id: u64,
    tid: u32,
    t0: u64,
    t1: u64,
    inner0: u64,
    inner1: u64,
}

/// `requests helper-workload THREADS`: request loops on THREADS threads;
/// prints `ready` once every thread made requests, then answers on its
/// standard input `mark` (or `start`, `end`) with the CLOCK_MONOTONIC time
/// of that moment, `inside A B` with the number of requests wholly inside
/// [A, B] (once every thread has finished a request after B, so that
/// none of them is still to be logged), and `quit` with every request it
/// made, one per line.
fn workload(threads: u32) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    // One log per thread, locked once per request (uncontended but for
    // `inside`).
    let logs: Vec<Arc<Mutex<Vec<Logged>>>> = (0..threads)
        .map(|_| Arc::new(Mutex::new(Vec::new())))
        .collect();
    let mut handles = Vec::new();
    for t in 0..threads {
        let stop = Arc::clone(&stop);
        let mine = Arc::clone(&logs[t as usize]);
        handles.push(std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as u32;
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = u64::from(t) * 100_000_000 + i;
                let mut inner = [0u64; 2];
                let depth = if i.is_multiple_of(5) { 2 } else { 0 };
                let work = 20_000 + (i % 7) * 15_000;
                let t0 = now_ns();
                // SAFETY: `inner` holds two u64s.
                let ret = unsafe {
                    uacce_trace_test_request(
                        id,
                        depth,
                        work,
                        i.is_multiple_of(11),
                        inner.as_mut_ptr(),
                    )
                };
                let t1 = now_ns();
                assert_eq!(ret, id);
                mine.lock().expect("lock").push(Logged {
                    id,
                    tid,
                    t0,
                    t1,
                    inner0: inner[0],
                    inner1: inner[1],
                });
                i += 1;
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(200));
    say("ready".into());
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap_or_default();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["start"] | ["end"] | ["mark"] => say(now_ns().to_string()),
            ["inside", a, b] => {
                let (a, b): (u64, u64) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
                while logs
                    .iter()
                    .any(|l| l.lock().expect("lock").last().is_none_or(|r| r.t1 <= b))
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let n: usize = logs
                    .iter()
                    .map(|l| {
                        let l = l.lock().expect("lock");
                        l.iter().filter(|r| r.t0 >= a && r.t1 <= b).count()
                    })
                    .sum();
                say(n.to_string());
            }
            _ => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    for l in logs.iter().flat_map(|l| l.lock().expect("lock").clone()) {
        say(format!(
            "{} {} {} {} {} {}",
            l.id, l.tid, l.t0, l.t1, l.inner0, l.inner1
        ));
    }
    ExitCode::SUCCESS
}

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_uacce-trace"))
}

/// Bad `--op` arguments: exit status 2 and a message that says what is
/// wrong, before anything is traced (no privileges needed).
fn error_paths() -> Result<(), String> {
    let me = std::env::current_exe().expect("current exe");
    let me = me.display().to_string();
    let cases: Vec<(String, &str)> = vec![
        (
            "/nonexistent/libnothing.so:f".to_string(),
            "binary `/nonexistent/libnothing.so` not found",
        ),
        (
            format!("{me}:no_such_request_function"),
            "no function `no_such_request_function`",
        ),
        // Similar names are offered.
        (
            format!("{me}:uacce_trace_test_req"),
            "similar: uacce_trace_test_request",
        ),
        ("just-a-word".to_string(), "expected BINARY:SYMBOL[:PID]"),
        (format!("{me}:{SYMBOL}:notapid"), "is not a process id"),
        (format!("{me}:{SYMBOL}:999999999"), "no process 999999999"),
        ("dml".to_string(), "none of dml_execute_job found"),
    ];
    let mut bad = Vec::new();
    for (arg, want) in cases {
        for cmd in [&["trace", "--json"][..], &["record", "-o", "/tmp/x.hlog"]] {
            let out = tool()
                .args(cmd)
                .args(["--op", &arg])
                .output()
                .expect("run uacce-trace");
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.code() != Some(2) || !stderr.contains(want) || stderr.contains("panicked")
            {
                bad.push(format!(
                    "{cmd:?} --op {arg}: status {:?}, stderr {stderr:?}, wanted status 2 and {want:?}",
                    out.status.code()
                ));
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("\n"))
    }
}

/// The workload, driven through its standard input.
struct Workload {
    child: Reaped,
    input: std::process::ChildStdin,
    output: BufReader<std::process::ChildStdout>,
}

impl Workload {
    fn start(threads: u32) -> Result<Workload, String> {
        let (child, input, output) = start_helper(&[&threads.to_string()])?;
        Ok(Workload {
            child,
            input,
            output,
        })
    }

    fn pid(&self) -> u64 {
        u64::from(self.child.0.id())
    }

    /// `command`'s one-number answer.
    fn ask(&mut self, command: &str) -> Result<u64, String> {
        writeln!(self.input, "{command}").map_err(|e| format!("to workload: {e}"))?;
        let line = read_line(&mut self.output);
        line.parse()
            .map_err(|_| format!("the workload answered {line:?} to {command:?}"))
    }

    /// The workload's CLOCK_MONOTONIC now.
    fn mark(&mut self) -> Result<u64, String> {
        self.ask("mark")
    }

    /// Every request it made; it must exit 0.
    fn quit(mut self) -> Result<Vec<Logged>, String> {
        writeln!(self.input, "quit").map_err(|e| format!("to workload: {e}"))?;
        let mut logged = Vec::new();
        for line in (&mut self.output).lines().map_while(Result::ok) {
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if f.len() != 6 {
                return Err(format!("workload line {line:?}"));
            }
            logged.push(Logged {
                id: f[0],
                tid: f[1] as u32,
                t0: f[2],
                t1: f[3],
                inner0: f[4],
                inner1: f[5],
            });
        }
        let status = self.child.0.wait().map_err(|e| format!("wait: {e}"))?;
        if !status.success() {
            return Err(format!("workload exit status {status:?}"));
        }
        Ok(logged)
    }
}

/// Requests of the workload wholly inside [a, b].
fn inside(logged: &[Logged], a: u64, b: u64) -> usize {
    logged.iter().filter(|l| l.t0 >= a && l.t1 <= b).count()
}

/// Requests of the workload overlapping [a, b].
fn overlapping(logged: &[Logged], a: u64, b: u64) -> usize {
    logged.iter().filter(|l| l.t1 >= a && l.t0 <= b).count()
}

/// `--op` for the workload's request function.
fn op_arg() -> String {
    let me = std::env::current_exe().expect("current exe");
    format!("{}:{SYMBOL}", me.display())
}

/// A live tracer child: its standard error read up to the line that
/// starts with `ready`, then drained by a thread; its standard output
/// collected by another (a full pipe would stall it).
struct Tracer {
    child: Reaped,
    said: Vec<String>,
    err: std::thread::JoinHandle<Vec<String>>,
    out: std::thread::JoinHandle<String>,
}

impl Tracer {
    fn start(args: &[&str], ready: &str) -> Result<Tracer, String> {
        let mut child = Reaped(
            tool()
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("spawn {args:?}: {e}"))?,
        );
        let mut lines = BufReader::new(child.0.stderr.take().expect("stderr")).lines();
        let mut said = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    let started = line.starts_with(ready);
                    said.push(line);
                    if started {
                        break;
                    }
                }
                _ => return Err(format!("{args:?} exited before attaching: {said:?}")),
            }
        }
        let err = std::thread::spawn(move || lines.map_while(Result::ok).collect());
        let mut stdout = child.0.stdout.take().expect("stdout");
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
            s
        });
        Ok(Tracer {
            child,
            said,
            err,
            out,
        })
    }

    /// SIGINT; the exit status, standard output and all of standard error.
    fn stop(mut self) -> Result<(Option<i32>, String, Vec<String>), String> {
        // SAFETY: a signal to our own child, not yet reaped.
        unsafe { libc::kill(self.child.0.id() as i32, libc::SIGINT) };
        let status = self.child.0.wait().map_err(|e| format!("wait: {e}"))?;
        let out = self.out.join().unwrap_or_default();
        self.said.extend(self.err.join().unwrap_or_default());
        Ok((status.code(), out, self.said))
    }
}

/// `trace --json` records of `pid`'s requests by id (each once), and the
/// last loss record's ledger.
fn traced_requests(
    stdout: &str,
    pid: u64,
) -> Result<(BTreeMap<u64, serde_json::Value>, serde_json::Value), String> {
    let mut traced = BTreeMap::new();
    let mut losses = serde_json::Value::Null;
    for line in stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("NDJSON {line:?}: {e}"))?;
        if v["event"] == "loss" {
            losses = v["losses"].clone();
        }
        if v["event"] != "request" || v["tgid"].as_u64() != Some(pid) {
            continue;
        }
        if v["op"] != SYMBOL {
            return Err(format!("op name {}", v["op"]));
        }
        let id = v["ret"].as_u64().ok_or("ret")?;
        if traced.insert(id, v.clone()).is_some() {
            return Err(format!("request {id} traced twice"));
        }
    }
    Ok((traced, losses))
}

/// The requests a tracer's closing line says it lost for want of room
/// in its ring buffer (`ring_full_request`); `Err` when it names a loss
/// other than the start edge and a full ring (which the pin ioctls of
/// another process flooding the tracepoint can cause: losses it names).
fn requests_lost(said: &[String], closing: &str) -> Result<u64, String> {
    let line = said
        .iter()
        .find(|l| l.starts_with(closing))
        .ok_or_else(|| format!("no closing line {closing:?} in {said:?}"))?;
    let losses = closing_losses(line, |r| edge(r) || r.starts_with("ring_full_"))?;
    Ok(losses.get("ring_full_request").copied().unwrap_or(0))
}

/// Per-event checks of one tracer lifetime against the workload's log:
/// every traced request is one the workload made (by id, the function's
/// return value), on its thread, inside its outer bracket, with a latency
/// no shorter than the bracket measured inside the function; every request
/// wholly inside [w0, w1] was traced, but for at most `lost` (counted as
/// lost by the tool), and any other traced request that lies inside it
/// straddles one of its edges. Returns the number inside.
fn check_window(
    traced: &BTreeMap<u64, serde_json::Value>,
    logged: &[Logged],
    (w0, w1): (u64, u64),
    lost: u64,
) -> Result<usize, String> {
    let by_id: std::collections::HashMap<u64, &Logged> = logged.iter().map(|l| (l.id, l)).collect();
    for (id, v) in traced {
        let Some(l) = by_id.get(id) else {
            return Err(format!("traced request {id} was never made: {v}"));
        };
        let ts = v["ts_ns"].as_u64().ok_or("ts_ns")?;
        let lat = v["latency_ns"].as_u64().ok_or("latency_ns")?;
        let tid = v["tid"].as_u64().ok_or("tid")?;
        if tid != u64::from(l.tid) {
            return Err(format!("request {id}: tid {tid}, workload says {}", l.tid));
        }
        if ts < l.t0 || ts + lat > l.t1 {
            return Err(format!(
                "request {id}: traced [{ts}, {}] outside the workload's bracket [{}, {}]",
                ts + lat,
                l.t0,
                l.t1
            ));
        }
        if lat < l.inner1 - l.inner0 || ts > l.inner0 {
            return Err(format!(
                "request {id}: traced latency {lat} from {ts}, shorter than the bracket \
                 measured inside the function [{}, {}]",
                l.inner0, l.inner1
            ));
        }
    }
    let window: Vec<&Logged> = logged.iter().filter(|l| l.t0 >= w0 && l.t1 <= w1).collect();
    if window.len() < 100 {
        return Err(format!("only {} requests in the window", window.len()));
    }
    let missing: Vec<&&Logged> = window
        .iter()
        .filter(|l| !traced.contains_key(&l.id))
        .collect();
    if missing.len() as u64 > lost {
        return Err(format!(
            "{} requests of the window were not traced, {lost} counted as lost; the first: {:?}",
            missing.len(),
            missing[0]
        ));
    }
    // Nothing else of the window: a traced request that lies inside it is
    // one the workload made there, or one whose bracket straddles an edge
    // of the window (the probes fired inside it, the workload's clock reads
    // around the call did not; the mark is read by another thread at any
    // moment). A thread has one request in flight at a time, so at most one
    // per thread and edge.
    let mut straddling = std::collections::BTreeSet::new();
    for (id, v) in traced {
        let ts = v["ts_ns"].as_u64().unwrap_or(0);
        let end = ts + v["latency_ns"].as_u64().unwrap_or(0);
        let l = by_id[id];
        if ts < w0 || end > w1 || (l.t0 >= w0 && l.t1 <= w1) {
            continue;
        }
        let edge = if l.t0 < w0 && w0 <= l.t1 {
            w0
        } else if l.t0 <= w1 && w1 < l.t1 {
            w1
        } else {
            return Err(format!(
                "request {id} traced inside the window, made outside it: {l:?}"
            ));
        };
        if !straddling.insert((l.tid, edge)) {
            return Err(format!(
                "two requests of thread {} straddle the edge {edge} of the window",
                l.tid
            ));
        }
    }
    Ok(window.len())
}

/// The workload already running, the tracer attached to it, the window
/// timestamped by the workload: see the module docs.
fn requests_in_window() -> Result<(), String> {
    let mut w = Workload::start(3)?;
    let pid = w.pid();
    let op = op_arg();
    let tracer = Tracer::start(
        &["trace", "--json", "--op", &op],
        "uacce-trace: tracing started",
    )?;
    let w0 = w.mark()?;
    std::thread::sleep(Duration::from_millis(1500));
    let w1 = w.mark()?;
    std::thread::sleep(Duration::from_millis(200));
    let (status, stdout, said) = tracer.stop()?;
    let logged = w.quit()?;
    if status != Some(0) {
        return Err(format!("trace exit status {status:?}: {said:?}"));
    }
    let lost = requests_lost(&said, "uacce-trace: stopped:")?;
    println!("{}", said.join("\n"));
    let (traced, _) = traced_requests(&stdout, pid)?;
    let checked = check_window(&traced, &logged, (w0, w1), lost)?;
    println!(
        "ok: {checked} requests inside the workload's window on 3 threads (1 in 5 recursing \
         twice, 1 in 11 sleeping), each traced once, inside its own bracket, but for {lost} \
         counted as lost to a full ring; {} traced in the whole run",
        traced.len()
    );
    Ok(())
}

/// The value of the sample `name{…}` whose labels include all of `labels`
/// (summed over the matching series), 0 when there is none.
fn sample(body: &str, name: &str, labels: &[&str]) -> u64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|x| series.contains(x))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Three tracer lifetimes in one workload run (see the module docs):
/// `trace --json`, `record --op -o FILE` (raw) with its export and
/// report, and `serve --op` scraped.
fn requests_in_three_lifetimes() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("uacce-trace-requests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut w = Workload::start(3)?;
    let pid = w.pid();
    let op = op_arg();
    std::thread::sleep(Duration::from_millis(300));
    let window = Duration::from_millis(1500);

    // 1: trace --json.
    let launch1 = w.mark()?;
    let tracer = Tracer::start(
        &["trace", "--json", "--op", &op],
        "uacce-trace: tracing started",
    )?;
    let (a1, b1) = (w.mark()?, {
        std::thread::sleep(window);
        w.mark()?
    });
    let (status1, stdout1, said1) = tracer.stop()?;
    let exited1 = w.mark()?;

    // 2: record --op, raw.
    let raw = dir.join("requests.utrace");
    let raw_arg = raw.display().to_string();
    let launch2 = w.mark()?;
    let tracer = Tracer::start(
        &["record", "--op", &op, "-o", &raw_arg],
        "uacce-trace: recording to",
    )?;
    let (a2, b2) = (w.mark()?, {
        std::thread::sleep(window);
        w.mark()?
    });
    let (status2, _, said2) = tracer.stop()?;
    let exited2 = w.mark()?;

    // 3: serve --op, scraped at the window's start and after its end.
    let launch3 = w.mark()?;
    let serve = serve::start_with(&[std::ffi::OsStr::new("--op"), std::ffi::OsStr::new(&op)]);
    let pid_label = format!("pid=\"{pid}\"");
    let count_of = |body: &str| {
        sample(
            body,
            "uacce_trace_op_latency_seconds_count",
            &[&pid_label, &format!("op=\"{SYMBOL}\"")],
        )
    };
    let c0 = count_of(&scrape(&serve.addr)?);
    let after_c0 = w.mark()?;
    std::thread::sleep(window);
    let b3 = w.mark()?;
    // Requests that returned before `b3` reach `serve` through the ring
    // buffer: scraped until they are in (a deadline, not a tolerance).
    let need = w.ask(&format!("inside {after_c0} {b3}"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let lost_of = |body: &str| {
        sample(
            body,
            "uacce_trace_lost_total",
            &["reason=\"ring_full_request\""],
        )
    };
    let (mut c1, mut body1, mut after_c1);
    loop {
        body1 = scrape(&serve.addr)?;
        c1 = count_of(&body1);
        after_c1 = w.mark()?;
        if c1.saturating_sub(c0) + lost_of(&body1) >= need || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: a signal to our own child, not yet reaped.
    unsafe { libc::kill(serve.child.id() as i32, libc::SIGINT) };
    let serve_said: Vec<String> = serve.err.iter().collect();
    let mut serve = serve;
    let status3 = serve.child.wait().map_err(|e| format!("wait: {e}"))?;
    let exited3 = w.mark()?;

    // Stopped mid-stream: the workload still runs.
    std::thread::sleep(Duration::from_millis(200));
    let after = w.mark()?;
    let logged = w.quit()?;
    let mut failures = Vec::new();
    let mut fail = |r: Result<(), String>| {
        if let Err(e) = r {
            failures.push(e);
        }
    };

    // 1: per request.
    fail((|| {
        if status1 != Some(0) {
            return Err(format!("trace exit status {status1:?}: {said1:?}"));
        }
        let lost = requests_lost(&said1, "uacce-trace: stopped:")?;
        let (traced, _) = traced_requests(&stdout1, pid)?;
        let n = check_window(&traced, &logged, (a1, b1), lost)
            .map_err(|e| format!("trace lifetime: {e}"))?;
        let upper = overlapping(&logged, launch1, exited1);
        if traced.len() > upper {
            return Err(format!(
                "trace: {} traced, {upper} overlapped it",
                traced.len()
            ));
        }
        println!(
            "1 trace --json: {n} requests wholly inside the {:.0} ms window, each traced once \
             ({lost} lost to a full ring); {} traced in its lifetime ({upper} overlapped it)",
            (b1 - a1) as f64 / 1e6,
            traced.len()
        );
        Ok(())
    })());

    // 2: the recording, exported and reported.
    fail((|| {
        if status2 != Some(130) {
            return Err(format!("record exit status {status2:?}: {said2:?}"));
        }
        let lost = requests_lost(&said2, "uacce-trace: wrote ")?;
        let json = dir.join("requests.json");
        let out = tool()
            .args(["record", "--replay", &raw_arg, "--format", "json", "-o"])
            .arg(&json)
            .output()
            .map_err(|e| format!("record --replay: {e}"))?;
        if !out.status.success() {
            return Err(format!("record --replay: {out:?}"));
        }
        let text =
            std::fs::read_to_string(&json).map_err(|e| format!("{}: {e}", json.display()))?;
        let (mut ops, mut faulted, mut clean) = (0u64, 0u64, 0u64);
        for line in text.lines() {
            let row: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("NDJSON {line:?}: {e}"))?;
            if row["pid"].as_u64() != Some(pid) || row["device"] != SYMBOL {
                continue;
            }
            let n = row["count"].as_u64().unwrap_or(0);
            match row["kind"].as_str() {
                Some("op") => ops += n,
                Some("op_faulted") => faulted += n,
                Some("op_clean") => clean += n,
                _ => {}
            }
        }
        let (lo, hi) = (
            inside(&logged, a2, b2),
            overlapping(&logged, launch2, exited2),
        );
        if ops + lost < lo as u64 || ops as usize > hi || faulted != 0 || clean != ops {
            return Err(format!(
                "record: the export has {ops} requests ({faulted} with a fault, {clean} \
                 without, {lost} lost); {lo} were wholly inside the window, {hi} overlapped \
                 the lifetime"
            ));
        }
        let report = tool()
            .arg("report")
            .arg(&raw)
            .output()
            .map_err(|e| format!("report: {e}"))?;
        let text = String::from_utf8_lossy(&report.stdout);
        let row = text
            .lines()
            .find(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.first() == Some(&"op") && f.get(1) == Some(&pid.to_string().as_str())
            })
            .ok_or_else(|| format!("report: no op row of {pid}: {text}"))?;
        let count: u64 = row
            .split_whitespace()
            .nth(4)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("report row {row:?}"))?;
        if !report.status.success() || count != ops {
            return Err(format!(
                "report says {count} requests, the export {ops}: {row}"
            ));
        }
        println!(
            "2 record --op: {ops} requests recorded (export and report agree), {lo} wholly \
             inside the {:.0} ms window, {hi} overlapped the lifetime, {lost} lost to a \
             full ring",
            (b2 - a2) as f64 / 1e6
        );
        Ok(())
    })());

    // 3: the scrapes.
    fail((|| {
        if status3.code() != Some(0) {
            return Err(format!("serve exit status {status3:?}: {serve_said:?}"));
        }
        requests_lost(&serve_said, "uacce-trace: stopped serving")?;
        let got = c1.saturating_sub(c0);
        let lost = lost_of(&body1);
        let upper = overlapping(&logged, launch3, after_c1) as u64;
        let inside_now = inside(&logged, after_c0, b3) as u64;
        if got + lost < inside_now
            || c1 > upper
            || c0 > overlapping(&logged, launch3, after_c0) as u64
        {
            return Err(format!(
                "serve: {c0} then {c1} requests scraped ({lost} lost to a full ring); \
                 {inside_now} were wholly between \
                 the scrapes' window [{after_c0}, {b3}] (workload said {need}), {upper} \
                 overlapped serve's life up to the second scrape"
            ));
        }
        let bucket_inf = sample(
            &body1,
            "uacce_trace_op_latency_seconds_bucket",
            &[&pid_label, "le=\"+Inf\""],
        );
        let faulted = sample(
            &body1,
            "uacce_trace_op_faulted_latency_seconds_count",
            &[&pid_label],
        );
        if bucket_inf != c1 || faulted != 0 {
            return Err(format!(
                "serve: +Inf bucket {bucket_inf}, _count {c1}, faulted {faulted}"
            ));
        }
        for reason in ["request_return_missed", "request_thread_exited"] {
            let n = sample(
                &body1,
                "uacce_trace_lost_total",
                &[&format!("reason=\"{reason}\"")],
            );
            if n != 0 {
                return Err(format!("serve: {n} lost as {reason}"));
            }
        }
        println!(
            "3 serve --op: {got} requests between the scrapes ({lost} lost to a full ring), \
             {inside_now} wholly inside the {:.0} ms between them, {upper} overlapped serve's \
             life; {}",
            (b3 - after_c0) as f64 / 1e6,
            serve_said.join(" | ")
        );
        Ok(())
    })());

    for (t, tid) in logged
        .iter()
        .map(|l| l.tid)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .enumerate()
    {
        if !logged
            .iter()
            .any(|l| l.tid == tid && l.t0 > exited3 && l.t1 <= after)
        {
            failures.push(format!("thread {t} made no request after the last stop"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    harness::verdict(failures)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("helper-workload") {
        let threads = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
        return workload(threads);
    }
    harness::run(&[
        ("bad_op_arguments_exit_2", error_paths, false),
        ("requests_in_window", requests_in_window, true),
        (
            "requests_in_three_lifetimes",
            requests_in_three_lifetimes,
            true,
        ),
    ])
}
