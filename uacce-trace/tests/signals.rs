//! SIGINT, SIGTERM and SIGPIPE during `record`, `trace` and `serve`: the
//! process ends by itself (never by the signal's default action, except
//! SIGPIPE, which is ignored), and what it wrote is complete and valid.
//!
//! - `record` replays a synthetic recording at the recorded pace
//!   (`--replay --realtime`), so it needs no root;
//! - `trace` needs root (or CAP_BPF + CAP_PERFMON) and an attachable hook
//!   (on a host like this one only the ioctl tracepoints attach, which is
//!   enough: the test makes pin ioctls on /dev/null); otherwise it skips
//!   (without root or the eBPF object, a failure under `CI=true`);
//! - `serve` replays (no root) and, where tracing works, also runs live.

mod common;

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::Lack;
use uacce_trace::{
    ingest::event::{Event, HookType, IopfEvent, PinEvent},
    ingest::rawfile::RawWriter,
    ingest::run::RunMeta,
};
use uacce_trace_common::PinFunc;

const START: u64 = 7_000_000_000_000;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_uacce-trace"))
}

/// A recording of `secs` seconds: an IOPF every 10 ms, a pin every 100 ms.
fn recording(dir: &Path, secs: u64) -> PathBuf {
    let path = dir.join(format!("paced-{secs}s.utrace"));
    let header = RunMeta {
        start_unix_ns: 1_700_000_000_000_000_000,
        start_mono_ns: START,
        kernel: "6.12.0-signals".into(),
        plan: "iopf: fentry".into(),
        command: String::new(),
    };
    let f = fs::File::create(&path).expect("create recording");
    let mut w = RawWriter::new(std::io::BufWriter::new(f), &header).expect("header");
    for i in 0..secs * 100 {
        let ts = START + i * 10_000_000;
        w.write_event(&Event::Iopf(IopfEvent {
            ts_ns: ts,
            latency_ns: 5_000 + (i % 97) * 1_000,
            tgid: Some(77),
            comm: "bench".into(),
            device: "0000:00:02.0".into(),
            pasid: 1,
            grpid: (i % 256) as u32,
            perm: 3,
            flags: 1,
            addr: 0x7f00_0000_0000 + (i % 32) * 4096,
            response: 0,
            hook: HookType::Fentry,
        }))
        .expect("write");
        if i % 10 == 0 {
            w.write_event(&Event::Pin(PinEvent {
                ts_ns: ts + 1,
                latency_ns: 3_000,
                tgid: 77,
                tid: 77,
                comm: "bench".into(),
                func: PinFunc::PinUserPagesFast,
                hook: HookType::Kprobe,
                start: 0x7e00_0000_0000 + i * 4096,
                nr_pages: 1,
                ret: 1,
                gup_flags: 0,
                longterm: false,
            }))
            .expect("write");
        }
    }
    w.finish().expect("finish").flush().expect("flush");
    path
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) of our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Wait for the child with a limit; kill it and fail when it overstays.
fn wait_limited(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
}

fn wait_for(cond: impl Fn() -> bool, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The temporary file `record` writes before committing `out`.
fn temp_of(out: &Path, pid: u32) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned());
    out.with_file_name(format!(".{}.{pid}.tmp", name.unwrap_or_default()))
}

/// The output is complete: `report` reads it (hlog, json, raw); a CSV has
/// its header and whole lines.
fn assert_complete(out: &Path) {
    let bytes = fs::read(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    assert!(bytes.ends_with(b"\n") || out.extension().is_some_and(|e| e == "utrace"));
    if out.extension().is_some_and(|e| e == "csv") {
        let text = String::from_utf8(bytes).expect("CSV is UTF-8");
        let mut lines = text.lines();
        let header = lines.next().expect("CSV header");
        let cols = header.split(',').count();
        for l in lines {
            assert_eq!(l.split(',').count(), cols, "cut CSV line {l:?}");
        }
        return;
    }
    let o = bin().arg("report").arg(out).output().expect("report");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{} is not a complete recording: {}",
        out.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(report.contains("bench"), "{report}");
}

#[test]
fn record_replay_survives_sigint_sigterm_and_sigpipe() {
    let dir = common::scratch("signals-record");
    let paced = recording(&dir, 6);
    for (sig, name) in [(libc::SIGINT, "int"), (libc::SIGTERM, "term")] {
        for ext in ["hlog", "json", "csv", "utrace"] {
            let out = dir.join(format!("{name}.{ext}"));
            let child = bin()
                .args(["record", "--replay"])
                .arg(&paced)
                .args(["--realtime", "--interval", "500ms", "-o"])
                .arg(&out)
                .stderr(Stdio::piped())
                .spawn()
                .expect("start record");
            let temp = temp_of(&out, child.id());
            wait_for(|| temp.exists(), Duration::from_secs(10), "record to start");
            std::thread::sleep(Duration::from_millis(700));
            signal(&child, sig);
            let o = wait_limited(child, Duration::from_secs(10), "record");
            let err = String::from_utf8_lossy(&o.stderr);
            // Ended by itself (a status, not the signal), as an interrupted run.
            assert!(
                matches!(o.status.code(), Some(130 | 143)),
                "SIGTERM/SIGINT: {:?} {err}",
                o.status
            );
            assert!(!err.contains("panicked"), "{err}");
            assert!(!temp.exists(), "temporary file left");
            assert_complete(&out);
        }
    }
    // SIGPIPE is ignored: the replay runs to its end.
    let short = recording(&dir, 2);
    let out = dir.join("pipe.hlog");
    let child = bin()
        .args(["record", "--replay"])
        .arg(&short)
        .args(["--realtime", "-o"])
        .arg(&out)
        .spawn()
        .expect("start record");
    let temp = temp_of(&out, child.id());
    wait_for(|| temp.exists(), Duration::from_secs(10), "record to start");
    signal(&child, libc::SIGPIPE);
    let o = wait_limited(child, Duration::from_secs(20), "record");
    assert_eq!(o.status.code(), Some(0), "{:?}", o.status);
    assert_complete(&out);
    // Standard error a broken pipe (`2>&1 | head -0`), then SIGINT.
    let out = dir.join("closed-stderr.hlog");
    let (r, w) = pipe();
    drop(r);
    let child = bin()
        .args(["record", "--replay"])
        .arg(&paced)
        .args(["--realtime", "-o"])
        .arg(&out)
        .stderr(w)
        .spawn()
        .expect("start record");
    let temp = temp_of(&out, child.id());
    wait_for(|| temp.exists(), Duration::from_secs(10), "record to start");
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGINT);
    let o = wait_limited(child, Duration::from_secs(10), "record");
    assert_eq!(o.status.code(), Some(130), "{:?}", o.status);
    assert_complete(&out);
    let _ = fs::remove_dir_all(&dir);
}

/// A replay as fast as possible is interruptible too (signals are looked
/// for between batches): SIGINT right after the start ends it with 130 and
/// a complete file holding part of the events (or, on a machine fast enough
/// to finish first, 0 and all of them).
#[test]
fn record_fast_replay_is_interruptible() {
    let dir = common::scratch("signals-fast");
    let big = dir.join("big.utrace");
    {
        let header = RunMeta {
            start_mono_ns: START,
            ..Default::default()
        };
        let f = fs::File::create(&big).expect("create");
        let mut w = RawWriter::new(std::io::BufWriter::new(f), &header).expect("header");
        for i in 0..1_000_000u64 {
            w.write_event(&Event::Iopf(IopfEvent {
                ts_ns: START + i * 1_000,
                latency_ns: 5_000 + i % 1_000,
                tgid: Some(77),
                comm: "bench".into(),
                device: "d".into(),
                pasid: 1,
                grpid: 0,
                perm: 3,
                flags: 1,
                addr: 0x7f00_0000_0000,
                response: 0,
                hook: HookType::Fentry,
            }))
            .expect("write");
        }
        w.finish().expect("finish").flush().expect("flush");
    }
    let out = dir.join("fast.hlog");
    let child = bin()
        .args(["record", "--replay"])
        .arg(&big)
        .arg("-o")
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start record");
    let temp = temp_of(&out, child.id());
    wait_for(|| temp.exists(), Duration::from_secs(10), "record to start");
    signal(&child, libc::SIGINT);
    let o = wait_limited(child, Duration::from_secs(30), "record");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        matches!(o.status.code(), Some(0 | 130)),
        "{:?} {err}",
        o.status
    );
    // Complete, if perhaps empty (a signal before the first batch).
    let r = bin().arg("report").arg(&out).output().expect("report");
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    eprintln!(
        "fast replay, SIGINT at the start: exit {:?}; {err}",
        o.status.code()
    );
    let _ = fs::remove_dir_all(&dir);
}

/// Reads `child`'s stderr until `started` recognises a line; then its
/// value and the rest of stderr, line by line, on a channel. `Err` with
/// what it printed when it exits before that.
fn await_start<T>(
    child: &mut Child,
    started: impl Fn(&str) -> Option<T>,
) -> Result<(T, std::sync::mpsc::Receiver<String>), String> {
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    let value = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(v) = started(&line) {
                    break v;
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            _ => {
                let _ = child.wait();
                return Err(seen);
            }
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    Ok((value, rx))
}

/// Every line the child wrote to stderr. Call after the child exited: the
/// reader thread may still be forwarding its last lines, so wait until it
/// reaches end of file (the channel disconnects), at most 10 s.
fn drain_log(rx: &std::sync::mpsc::Receiver<String>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => out.push(line),
            Err(_) => return out,
        }
    }
}

/// A pipe as two `Stdio`-convertible ends.
fn pipe() -> (fs::File, fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // Close-on-exec: a child must not inherit the read end (it would keep
    // its own stdout pipe alive). SAFETY: pipe2(2) fills the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds are new and owned by nothing else.
    unsafe { (fs::File::from_raw_fd(fds[0]), fs::File::from_raw_fd(fds[1])) }
}

/// One `GET /metrics`: status and body; `None` when nobody answers.
fn scrape(addr: &str) -> Option<(u16, String)> {
    let mut c = std::net::TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_string()))
}

/// A running `serve` and the address it listens on.
struct Serve {
    /// `None` once stopped; a test that fails first kills it on drop, so
    /// no server outlives the test.
    child: Option<Child>,
    addr: String,
    log: std::sync::mpsc::Receiver<String>,
}

impl Serve {
    /// Start `serve ARGS --listen 127.0.0.1:0`; `Err(stderr)` when it
    /// exits before listening.
    fn start(args: &[&str]) -> Result<Serve, String> {
        let mut child = bin()
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("start serve");
        let (addr, log) = await_start(&mut child, |line| {
            line.strip_prefix("uacce-trace: serving http://")
                .map(|rest| rest.split('/').next().unwrap_or_default().to_string())
        })?;
        Ok(Serve {
            child: Some(child),
            addr,
            log,
        })
    }

    /// Send `sig`, expect a clean exit 0, the summary, and the port closed.
    fn stop_with(mut self, sig: i32) {
        let child = self.child.take().expect("serve still running");
        signal(&child, sig);
        let o = wait_limited(child, Duration::from_secs(10), "serve");
        assert_eq!(o.status.code(), Some(0), "{:?}", o.status);
        let log = drain_log(&self.log);
        assert!(
            log.iter()
                .any(|l| l.starts_with("uacce-trace: stopped serving")),
            "{log:?}"
        );
        assert!(!log.iter().any(|l| l.contains("panicked")), "{log:?}");
        assert!(
            std::net::TcpStream::connect(&self.addr).is_err(),
            "still listening"
        );
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn check_scrape(addr: &str) -> String {
    let (status, body) = scrape(addr).expect("serve answers");
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE uacce_trace_iopf_latency_seconds histogram"));
    body
}

#[test]
fn serve_stops_cleanly_on_sigint_and_sigterm_and_ignores_sigpipe() {
    let dir = common::scratch("signals-serve");
    let paced = recording(&dir, 30);
    for (sig, realtime) in [(libc::SIGINT, true), (libc::SIGTERM, false)] {
        let path = paced.to_string_lossy().into_owned();
        let mut args = vec!["--replay", path.as_str()];
        if realtime {
            args.push("--realtime");
        }
        let serve = Serve::start(&args).unwrap_or_else(|e| panic!("serve: {e}"));
        check_scrape(&serve.addr);
        // SIGPIPE: ignored.
        signal(serve.child.as_ref().expect("running"), libc::SIGPIPE);
        // Clients that go away: before sending anything, mid-request, and
        // right after the request without reading the answer.
        for partial in [&b""[..], b"GET /met", b"GET /metrics HTTP/1.1\r\n\r\n"] {
            let mut c = std::net::TcpStream::connect(&serve.addr).expect("connect");
            let _ = c.write_all(partial);
            drop(c);
        }
        // A client that reads a little and then resets the connection.
        {
            let mut c = std::net::TcpStream::connect(&serve.addr).expect("connect");
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("write");
            let mut first = [0u8; 16];
            let _ = c.read(&mut first);
        }
        std::thread::sleep(Duration::from_millis(200));
        let body = check_scrape(&serve.addr);
        if realtime {
            assert!(body.contains("\nuacce_trace_replay_complete 0\n"), "{body}");
        }
        serve.stop_with(sig);
    }
    let _ = fs::remove_dir_all(&dir);
}

/// `serve --replay -` with a standard input that stalls (before the header,
/// and in the middle of the recording) still stops at once on a signal.
#[test]
fn serve_with_a_stalled_stdin_still_stops() {
    // Nothing at all: stopped while waiting for the header.
    let mut child = bin()
        .args(["serve", "--replay", "-", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let stdin = child.stdin.take();
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGINT);
    let o = wait_limited(child, Duration::from_secs(5), "serve waiting for a header");
    assert_eq!(o.status.code(), Some(0), "{:?}", o.status);
    drop(stdin);
    // Half a recording, then nothing.
    let mut child = bin()
        .args(["serve", "--replay", "-", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let raw = fs::read(common::golden_dir().join("before.utrace")).expect("golden");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&raw[..raw.len() / 2]).expect("feed");
    stdin.flush().expect("flush");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited").expect("stderr");
        if let Some(rest) = line.strip_prefix("uacce-trace: serving http://") {
            break rest.split('/').next().unwrap_or_default().to_string();
        }
    };
    wait_for(
        || scrape(&addr).is_some_and(|(_, b)| !b.contains("\nuacce_trace_events_total 0\n")),
        Duration::from_secs(10),
        "the first half to be ingested",
    );
    signal(&child, libc::SIGTERM);
    let o = wait_limited(child, Duration::from_secs(5), "serve with a stalled replay");
    assert_eq!(o.status.code(), Some(0), "{:?}", o.status);
    drop(stdin);
}

/// Why live tracing cannot run here, if it cannot.
fn live_skip_reason() -> Option<(Lack, String)> {
    if let Err(e) = uacce_trace::kernel::system::check_privileges() {
        return Some((Lack::Root, e));
    }
    if let Err(uacce_trace::kernel::attach::SourceError::StubObject) =
        uacce_trace::kernel::attach::verify_all_programs().map(|_| ())
    {
        return Some((
            Lack::Setup,
            "built with UACCE_TRACE_EBPF_STUB=1: no eBPF object".into(),
        ));
    }
    None
}

#[test]
fn serve_live_stops_cleanly() {
    if let Some((lack, why)) = live_skip_reason() {
        common::skip(lack, &why);
        return;
    }
    let serve = match Serve::start(&["--bpf-stats"]) {
        Ok(s) => s,
        Err(log) => {
            common::skip(
                Lack::Host,
                &format!("serve could not start tracing on this host: {log}"),
            );
            return;
        }
    };
    let body = check_scrape(&serve.addr);
    // Live `serve` runs in summary mode unless --per-event.
    assert!(body.contains("mode=\"summary\""), "{body}");
    assert!(body.contains("process_cpu_seconds_total "), "{body}");
    assert!(body.contains("uacce_trace_bpf_programs "), "{body}");
    serve.stop_with(libc::SIGTERM);
}

/// `trace --json` with stdout to `out`, once it says it is attached; `Err`
/// with why when it cannot start.
fn start_trace(stdout: Stdio) -> Result<(Child, std::sync::mpsc::Receiver<String>), String> {
    let mut child = bin()
        .args(["trace", "--json"])
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start trace");
    let ((), log) = await_start(&mut child, |l| {
        l.starts_with("uacce-trace: tracing started").then_some(())
    })?;
    Ok((child, log))
}

/// Pin ioctls on /dev/null (ENOTTY): events for the ioctl tracepoints.
fn make_ioctls(n: usize) {
    use std::os::fd::AsRawFd;
    let devnull = fs::File::open("/dev/null").expect("open /dev/null");
    let range: [u64; 2] = [0x7f12_3456_7000, 4096];
    for _ in 0..n {
        // SAFETY: ioctl on /dev/null with a pointer to our buffer; fails with ENOTTY.
        unsafe { libc::ioctl(devnull.as_raw_fd(), 0x4010_5702u64 as _, range.as_ptr()) };
    }
}

#[test]
fn trace_survives_sigint_sigterm_and_sigpipe() {
    if let Some((lack, why)) = live_skip_reason() {
        common::skip(lack, &why);
        return;
    }
    let dir = common::scratch("signals-trace");
    for (sig, name) in [(libc::SIGINT, "int"), (libc::SIGTERM, "term")] {
        let out = dir.join(format!("{name}.ndjson"));
        let file = fs::File::create(&out).expect("output");
        let (child, log) = match start_trace(Stdio::from(file)) {
            Ok(c) => c,
            Err(why) => {
                common::skip(
                    Lack::Host,
                    &format!("trace could not start tracing on this host: {why}"),
                );
                return;
            }
        };
        make_ioctls(5);
        std::thread::sleep(Duration::from_millis(300));
        signal(&child, sig);
        let o = wait_limited(child, Duration::from_secs(10), "trace");
        assert_eq!(o.status.code(), Some(0), "{:?}", o.status);
        std::thread::sleep(Duration::from_millis(100));
        let log = drain_log(&log);
        assert!(
            log.iter().any(|l| l.starts_with("uacce-trace: stopped:")),
            "{log:?}"
        );
        let text = fs::read_to_string(&out).expect("read output");
        let mut ours = 0;
        for line in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("cut line {line:?}: {e}"));
            if v["event"] == "pin_ioctl" && v["tgid"] == std::process::id() {
                ours += 1;
            }
        }
        assert!(ours >= 5, "{ours} of our 5 ioctls in {}", out.display());
        assert!(text.is_empty() || text.ends_with('\n'));
    }
    // SIGPIPE by kill: ignored; then stdout a pipe whose reader goes away:
    // trace notices on its next write and ends by itself with status 0.
    let (r, w) = pipe();
    let (child, _log) = start_trace(Stdio::from(w)).expect("trace starts again");
    signal(&child, libc::SIGPIPE);
    make_ioctls(2);
    std::thread::sleep(Duration::from_millis(300));
    let mut child = child;
    if !child.try_wait_ref_is_running() {
        panic!("trace died of SIGPIPE sent by kill");
    }
    drop(r);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        make_ioctls(2);
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("trace kept running with stdout gone");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    let _ = fs::remove_dir_all(&dir);
}

trait StillRunning {
    fn try_wait_ref_is_running(&self) -> bool;
}

impl StillRunning for Child {
    /// True while the process exists (signal 0 succeeds and it is not a zombie).
    fn try_wait_ref_is_running(&self) -> bool {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.id())).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next())
            .unwrap_or("X");
        state != "Z" && state != "X"
    }
}

/// `record --replay -` with a standard input on which nothing more arrives
/// (a stalled pipe from another machine): SIGINT/SIGTERM still end it at
/// once, with the events that did arrive in a complete file; stopped
/// before the header arrived, it writes nothing and says so.
#[test]
fn record_replay_from_a_stalled_stdin_stops() {
    let dir = common::scratch("signals-stalled-record");
    let paced = fs::read(recording(&dir, 6)).expect("recording");
    for (sig, name) in [(libc::SIGINT, "int"), (libc::SIGTERM, "term")] {
        // Half a recording, then nothing (the pipe stays open).
        for ext in ["hlog", "utrace"] {
            let out = dir.join(format!("stalled-{name}.{ext}"));
            let mut child = bin()
                .args(["record", "--replay", "-", "-o"])
                .arg(&out)
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start record");
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(&paced[..paced.len() / 2]).expect("feed");
            stdin.flush().expect("flush");
            let temp = temp_of(&out, child.id());
            wait_for(|| temp.exists(), Duration::from_secs(10), "record to start");
            std::thread::sleep(Duration::from_millis(500));
            signal(&child, sig);
            let o = wait_limited(child, Duration::from_secs(5), "record with a stalled stdin");
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(130), "{:?} {err}", o.status);
            assert!(!err.contains("panicked"), "{err}");
            assert!(!temp.exists(), "temporary file left");
            assert_complete(&out);
            drop(stdin);
        }
        // Nothing at all: no header, so no file.
        let out = dir.join(format!("nothing-{name}.hlog"));
        let mut child = bin()
            .args(["record", "--replay", "-", "-o"])
            .arg(&out)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start record");
        let stdin = child.stdin.take();
        std::thread::sleep(Duration::from_millis(300));
        signal(&child, sig);
        let o = wait_limited(child, Duration::from_secs(5), "record waiting for a header");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(130), "{:?} {err}", o.status);
        assert!(err.contains("nothing written"), "{err}");
        assert!(!out.exists());
        drop(stdin);
    }
    let _ = fs::remove_dir_all(&dir);
}

/// `trace` writing to a full pipe nobody reads (its `write(2)` blocks):
/// SIGINT/SIGTERM still end it, with the summary saying how many events
/// could not be written.
#[test]
fn trace_with_a_blocked_stdout_stops() {
    if let Some((lack, why)) = live_skip_reason() {
        common::skip(lack, &why);
        return;
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let (r, w) = pipe();
        let (child, log) = match start_trace(Stdio::from(w)) {
            Ok(c) => c,
            Err(why) => {
                common::skip(
                    Lack::Host,
                    &format!("trace could not start tracing on this host: {why}"),
                );
                return;
            }
        };
        // Far more than a 64 KiB pipe holds (a line is ~250 bytes).
        make_ioctls(3000);
        std::thread::sleep(Duration::from_millis(500));
        assert!(child.try_wait_ref_is_running(), "trace ended by itself");
        signal(&child, sig);
        let o = wait_limited(
            child,
            Duration::from_secs(10),
            "trace with a blocked stdout",
        );
        assert_eq!(o.status.code(), Some(0), "{:?}", o.status);
        std::thread::sleep(Duration::from_millis(100));
        let log = drain_log(&log);
        let summary = log
            .iter()
            .find(|l| l.starts_with("uacce-trace: stopped:"))
            .unwrap_or_else(|| panic!("no summary: {log:?}"));
        assert!(summary.contains("not written"), "{summary}");
        assert!(!log.iter().any(|l| l.contains("panicked")), "{log:?}");
        drop(r);
    }
}
