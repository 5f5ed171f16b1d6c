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
//! outer one; no other request of the window is reported; no request was
//! lost. And the error paths: a missing binary, an unknown symbol, bad
//! syntax and a preset found nowhere exit with status 2 and say why.
//!
//! The error paths need nothing; the tracing test needs root (or CAP_BPF
//! and CAP_PERFMON) and a binary built with its eBPF object, otherwise it
//! prints `SKIP` and why (a failure under `CI=true`).

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, ExitCode, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use uacce_trace::kernel::{attach, system};

#[path = "common/harness.rs"]
mod harness;
#[path = "common/skip.rs"]
mod skip;

use harness::{now_ns, read_line, Reaped};

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
/// prints `ready` once every thread made requests, then answers `mark` (or
/// `start`, `end`) on its standard input with the CLOCK_MONOTONIC time of
/// that moment, and `quit` with every request it made, one per line.
fn workload(threads: u32) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    let logs: Arc<Mutex<Vec<Logged>>> = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for t in 0..threads {
        let stop = Arc::clone(&stop);
        let logs = Arc::clone(&logs);
        handles.push(std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as u32;
            let mut mine = Vec::new();
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
                mine.push(Logged {
                    id,
                    tid,
                    t0,
                    t1,
                    inner0: inner[0],
                    inner1: inner[1],
                });
                i += 1;
            }
            logs.lock().expect("lock").extend(mine);
        }));
    }
    std::thread::sleep(Duration::from_millis(200));
    let stdout = std::io::stdout();
    let say = |s: String| {
        let mut o = stdout.lock();
        let _ = writeln!(o, "{s}");
        let _ = o.flush();
    };
    say("ready".into());
    for line in std::io::stdin().lock().lines() {
        match line.as_deref() {
            Ok("start") | Ok("end") | Ok("mark") => say(now_ns().to_string()),
            _ => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    for l in logs.lock().expect("lock").iter() {
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

/// The workload already running, the tracer attached to it, the window
/// timestamped by the workload: see the module docs.
fn requests_in_window() -> Result<(), String> {
    let mut workload = Reaped(
        Command::new(std::env::current_exe().expect("current exe"))
            .args(["helper-workload", "3"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn workload"),
    );
    let pid = workload.0.id();
    let mut win = workload.0.stdin.take().expect("stdin");
    let mut wout = BufReader::new(workload.0.stdout.take().expect("stdout"));
    if read_line(&mut wout) != "ready" {
        return Err("the workload did not start".into());
    }
    let me = std::env::current_exe().expect("current exe");
    let mut tracer = Reaped(
        tool()
            .args(["trace", "--json", "--op"])
            .arg(format!("{}:{SYMBOL}", me.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn trace"),
    );
    let mut terr = BufReader::new(tracer.0.stderr.take().expect("stderr")).lines();
    let mut said = Vec::new();
    loop {
        match terr.next() {
            Some(Ok(line)) => {
                let started = line.starts_with("uacce-trace: tracing started");
                said.push(line);
                if started {
                    break;
                }
            }
            _ => return Err(format!("trace exited before attaching: {said:?}")),
        }
    }
    let terr = std::thread::spawn(move || terr.map_while(Result::ok).collect::<Vec<String>>());
    // The tracer's stdout is read while it runs (a full pipe would stall it).
    let mut tout = tracer.0.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut tout, &mut s);
        s
    });
    writeln!(win, "start").expect("to workload");
    let w0: u64 = read_line(&mut wout).parse().expect("window start");
    std::thread::sleep(Duration::from_millis(1500));
    writeln!(win, "end").expect("to workload");
    let w1: u64 = read_line(&mut wout).parse().expect("window end");
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(tracer.0.id() as i32, libc::SIGINT) };
    let status = tracer.0.wait().expect("wait for trace");
    let stdout = reader.join().unwrap_or_default();
    let stderr = terr.join().unwrap_or_default();
    writeln!(win, "quit").expect("to workload");
    let mut logged = Vec::new();
    for line in wout.lines().map_while(Result::ok) {
        let f: Vec<u64> = line
            .split_whitespace()
            .map(|x| x.parse().expect("number"))
            .collect();
        logged.push(Logged {
            id: f[0],
            tid: f[1] as u32,
            t0: f[2],
            t1: f[3],
            inner0: f[4],
            inner1: f[5],
        });
    }
    let _ = workload.0.wait();
    if !status.success() {
        return Err(format!("trace exit status {status:?}: {stderr:?}"));
    }
    println!("{}", said.join("\n"));
    let mut traced = std::collections::BTreeMap::new();
    let mut final_losses = serde_json::Value::Null;
    for line in stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("NDJSON {line:?}: {e}"))?;
        if v["event"] == "loss" {
            final_losses = v["losses"].clone();
        }
        if v["event"] != "request" || v["tgid"].as_u64() != Some(u64::from(pid)) {
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
    let window: Vec<&Logged> = logged.iter().filter(|l| l.t0 >= w0 && l.t1 <= w1).collect();
    if window.len() < 100 {
        return Err(format!("only {} requests in the window", window.len()));
    }
    let mut checked = 0;
    for l in &window {
        let Some(v) = traced.get(&l.id) else {
            return Err(format!(
                "request {} of the window was not traced: {l:?}",
                l.id
            ));
        };
        let ts = v["ts_ns"].as_u64().ok_or("ts_ns")?;
        let lat = v["latency_ns"].as_u64().ok_or("latency_ns")?;
        let tid = v["tid"].as_u64().ok_or("tid")?;
        if tid != u64::from(l.tid) {
            return Err(format!(
                "request {}: tid {tid}, workload says {}",
                l.id, l.tid
            ));
        }
        if ts < l.t0 || ts + lat > l.t1 {
            return Err(format!(
                "request {}: traced [{ts}, {}] outside the workload's bracket [{}, {}]",
                l.id,
                ts + lat,
                l.t0,
                l.t1
            ));
        }
        if lat < l.inner1 - l.inner0 || ts > l.inner0 {
            return Err(format!(
                "request {}: traced latency {lat} from {ts}, shorter than the bracket measured inside the function [{}, {}]",
                l.id, l.inner0, l.inner1
            ));
        }
        checked += 1;
    }
    // Nothing else of the window: every traced request that lies inside it
    // is one the workload made there.
    let in_window = traced
        .values()
        .filter(|v| {
            let ts = v["ts_ns"].as_u64().unwrap_or(0);
            let end = ts + v["latency_ns"].as_u64().unwrap_or(0);
            ts >= w0 && end <= w1
        })
        .count();
    if in_window != window.len() {
        return Err(format!(
            "{in_window} traced requests inside the window, the workload made {}",
            window.len()
        ));
    }
    for reason in [
        "request_return_missed",
        "ring_full_request",
        "exit_without_entry",
    ] {
        let n = final_losses[reason].as_u64().unwrap_or(0);
        if n != 0 {
            return Err(format!("{n} lost as {reason}: {final_losses}"));
        }
    }
    println!(
        "ok: {checked} requests inside the workload's window on 3 threads (1 in 5 recursing \
         twice, 1 in 11 sleeping), each traced once, inside its own bracket; {} traced in \
         the whole run",
        traced.len()
    );
    Ok(())
}

fn skip_reason() -> Option<String> {
    if let Err(e) = system::check_privileges() {
        return Some(e);
    }
    if let Err(attach::SourceError::StubObject) = attach::verify_all_programs().map(|_| ()) {
        return Some("built with UACCE_TRACE_EBPF_STUB=1: no eBPF object".into());
    }
    None
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("helper-workload") {
        let threads = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
        return workload(threads);
    }
    harness::run(
        &[
            ("bad_op_arguments_exit_2", error_paths, false),
            ("requests_in_window", requests_in_window, true),
        ],
        skip_reason(),
    )
}
