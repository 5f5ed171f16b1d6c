//! The `--op qpl` preset against a real build of Intel QPL (Debian's
//! `libqpl1`, unpacked by `cargo xtask test` into the tool cache, see
//! `xtask/src/toolchain/reallibs.rs`), on the host's real uprobes. No
//! accelerator is involved: the requests run QPL's software path.
//!
//! A small C program (`tests/data/presets/qpl_requests.c`) linked against
//! that libqpl maps it, says `ready`, and on the test's word makes N
//! synchronous requests, `qpl_execute_job` of a CRC-64 job, each result
//! checked against a plain C CRC-64. `uacce-trace trace --json --op qpl`
//! is attached in between. Checked: the tool says the preset resolved
//! `qpl_execute_job` in exactly that library file (mapped by a running
//! process); exactly N `qpl_execute_job` requests of the program's pid,
//! each with QPL_STS_OK (0) as its return value; every other request of
//! the program (QPL's software path calls `qpl_submit_job` inside
//! `qpl_execute_job`) lies inside one of them on the same thread; no
//! request lost.
//!
//! Needs root (or CAP_BPF and CAP_PERFMON), a binary built with its eBPF
//! object, a C compiler and the QPL root that `cargo xtask test` fetches
//! (`UACCE_TRACE_QPL_ROOT`); without them it is reported as skipped, with
//! the reason.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use common::{note, skip, Lack};
use uacce_trace::kernel::{attach, system};

/// Requests the program makes.
const N: usize = 300;

/// A child process that is killed and reaped when the test returns early.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch folder removed when the test returns.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("uacce-trace-presets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The QPL root, or why there is none (and which kind of lack it is).
fn qpl_root() -> Result<PathBuf, (Lack, String)> {
    if let Some(why) = std::env::var_os("UACCE_TRACE_QPL_UNAVAILABLE") {
        return Err((
            Lack::Host,
            format!(
                "no real QPL build could be fetched: {}",
                why.to_string_lossy()
            ),
        ));
    }
    match std::env::var_os("UACCE_TRACE_QPL_ROOT") {
        Some(root) => Ok(PathBuf::from(root)),
        None => Err((
            Lack::Setup,
            "UACCE_TRACE_QPL_ROOT is not set: `cargo xtask test` fetches Debian's libqpl \
             into the tool cache and sets it"
                .into(),
        )),
    }
}

/// Compiles the request program against the QPL root: its headers and
/// library, and that root's dynamic loader (sid's glibc, which libqpl
/// needs).
fn build_program(root: &Path, out: &Path) -> Result<(), String> {
    let lib = root.join("usr/lib/x86_64-linux-gnu");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/presets/qpl_requests.c");
    let output = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(out)
        .arg(&src)
        .arg(format!("-I{}", root.join("usr/include").display()))
        .arg(format!("-L{}", lib.display()))
        .arg("-lqpl")
        // libqpl's glibc 2.38 symbols are resolved at run time by the
        // root's glibc, not by the host's at link time.
        .arg("-Wl,--allow-shlib-undefined")
        .arg(format!(
            "-Wl,--dynamic-linker={}",
            lib.join("ld-linux-x86-64.so.2").display()
        ))
        .output()
        .map_err(|e| format!("running cc: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cc {}: {}",
            src.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

#[test]
fn qpl_preset_counts_real_libqpl_requests() {
    if let Err(e) = system::check_privileges() {
        return skip(Lack::Root, &e);
    }
    if let Err(attach::SourceError::StubObject) = attach::verify_all_programs().map(|_| ()) {
        return skip(
            Lack::Setup,
            "built with UACCE_TRACE_EBPF_STUB=1: no eBPF object",
        );
    }
    let root = match qpl_root() {
        Ok(r) => r,
        Err((lack, why)) => return skip(lack, &why),
    };
    let lib_dir = root.join("usr/lib/x86_64-linux-gnu");
    let library = std::fs::read_dir(&lib_dir)
        .expect("QPL root")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libqpl.so.") && n.matches('.').count() >= 4)
        })
        .unwrap_or_else(|| panic!("no libqpl.so.X.Y.Z in {}", lib_dir.display()));
    let dir = TempDir::new();
    let program = dir.0.join("qpl_requests");
    if let Err(e) = build_program(&root, &program) {
        if Command::new("cc").arg("--version").output().is_err() {
            return skip(Lack::Setup, "no C compiler (`cc`)");
        }
        panic!("{e}");
    }

    let mut workload = Reaped(
        Command::new(&program)
            .arg(N.to_string())
            .env("LD_LIBRARY_PATH", &lib_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the QPL program"),
    );
    let pid = workload.0.id();
    let mut win = workload.0.stdin.take().expect("stdin");
    let mut wout = BufReader::new(workload.0.stdout.take().expect("stdout"));
    let mut line = String::new();
    wout.read_line(&mut line).expect("read the program");
    assert_eq!(
        line.trim(),
        format!("ready {pid}"),
        "the QPL program did not start"
    );

    let mut tracer = Reaped(
        Command::new(env!("CARGO_BIN_EXE_uacce-trace"))
            .args(["trace", "--json", "--op", "qpl"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn uacce-trace"),
    );
    let mut terr = BufReader::new(tracer.0.stderr.take().expect("stderr")).lines();
    let mut said = Vec::new();
    loop {
        match terr.next() {
            Some(Ok(l)) => {
                let started = l.starts_with("uacce-trace: tracing started");
                said.push(l);
                if started {
                    break;
                }
            }
            _ => panic!("trace exited before attaching: {said:#?}"),
        }
    }
    let terr = std::thread::spawn(move || terr.map_while(Result::ok).collect::<Vec<String>>());
    let mut tout = tracer.0.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = tout.read_to_string(&mut s);
        s
    });

    writeln!(win, "go").expect("to the program");
    let mut rest = String::new();
    wout.read_to_string(&mut rest).expect("read the program");
    let status = workload.0.wait().expect("wait for the program");
    assert!(
        status.success() && rest.trim() == format!("done {N} 0"),
        "the QPL program: {status:?}, said {rest:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(tracer.0.id() as i32, libc::SIGINT) };
    let tstatus = tracer.0.wait().expect("wait for trace");
    let stdout = reader.join().unwrap_or_default();
    let stderr = terr.join().unwrap_or_default();
    assert!(tstatus.success(), "trace: {tstatus:?}: {stderr:#?}");

    // The preset resolved in this very copy of libqpl, found mapped.
    let resolved = said
        .iter()
        .find(|l| l.starts_with("uacce-trace: op qpl: "))
        .unwrap_or_else(|| panic!("no `op qpl:` line: {said:#?}"));
    let want_tail = format!(" in {} (mapped by 1 process)", library.display());
    assert!(
        resolved.contains("qpl_execute_job") && resolved.ends_with(&want_tail),
        "{resolved:?}: wanted qpl_execute_job{want_tail}"
    );

    // (ts, end, tid, ret) per op, of this program.
    let mut by_op: std::collections::BTreeMap<String, Vec<(u64, u64, u64, u64)>> =
        Default::default();
    let mut losses = serde_json::Value::Null;
    for l in stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("NDJSON {l:?}: {e}"));
        if v["event"] == "loss" {
            losses = v["losses"].clone();
        }
        if v["event"] != "request" || v["tgid"].as_u64() != Some(u64::from(pid)) {
            continue;
        }
        let ts = v["ts_ns"].as_u64().expect("ts_ns");
        let lat = v["latency_ns"].as_u64().expect("latency_ns");
        by_op
            .entry(v["op"].as_str().expect("op").to_string())
            .or_default()
            .push((
                ts,
                ts + lat,
                v["tid"].as_u64().expect("tid"),
                v["ret"].as_u64().expect("ret"),
            ));
    }
    let execute = by_op.remove("qpl_execute_job").unwrap_or_default();
    assert_eq!(
        execute.len(),
        N,
        "qpl_execute_job requests of pid {pid}; all ops: {:?}",
        by_op.keys().collect::<Vec<_>>()
    );
    assert!(
        execute.iter().all(|r| r.2 == u64::from(pid) && r.3 == 0),
        "every request on the program's thread, returning QPL_STS_OK"
    );
    let mut counts = vec![format!("qpl_execute_job {}", execute.len())];
    for (op, reqs) in &by_op {
        for r in reqs {
            assert!(
                execute
                    .iter()
                    .any(|e| e.2 == r.2 && e.0 <= r.0 && r.1 <= e.1),
                "{op} request {r:?} lies inside no qpl_execute_job request"
            );
        }
        counts.push(format!("{op} {} (nested)", reqs.len()));
    }
    for reason in ["request_return_missed", "ring_full_request"] {
        let n = losses[reason].as_u64().unwrap_or(0);
        assert_eq!(n, 0, "{n} lost as {reason}: {losses}");
    }
    note(&format!(
        "{} ({}): {}; requests of pid {pid}: {}",
        resolved.trim_start_matches("uacce-trace: "),
        std::env::var("UACCE_TRACE_QPL_VERSIONS")
            .unwrap_or_default()
            .replace('\n', ", "),
        "software path, no accelerator",
        counts.join(", ")
    ));
}
