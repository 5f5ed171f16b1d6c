//! The runner of the test binaries without libtest (`harness = false`:
//! the same executable is also the workload, `BINARY helper-workload …`),
//! and what their tests share: the workload's clock, a child that is
//! killed on an early return, a line read from a child.
//!
//! The runner prints libtest's lines, so that `cargo xtask test` counts
//! these tests; a test that cannot run prints `SKIP` and why (as an
//! ignored test with a reason: a skip there), and fails instead under `CI=true` (CI runs as
//! root and builds the eBPF object).

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Write},
    process::{ChildStdin, ChildStdout, Command, ExitCode, Stdio},
    time::Duration,
};

use uacce_trace::kernel::{attach, system};

/// A test: `Err` says what failed.
pub type Test = fn() -> Result<(), String>;

/// CLOCK_MONOTONIC in ns, the clock of the tool's timestamps.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A child process that is killed and reaped when the test returns early.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// This test executable started again as `helper-workload ARGS…`, its
/// standard input and output piped, once it printed `ready`.
pub fn start_helper(args: &[&str]) -> Result<(Reaped, ChildStdin, BufReader<ChildStdout>), String> {
    let mut child = Reaped(
        Command::new(std::env::current_exe().expect("current exe"))
            .arg("helper-workload")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn workload: {e}"))?,
    );
    let input = child.0.stdin.take().expect("stdin");
    let mut output = BufReader::new(child.0.stdout.take().expect("stdout"));
    if read_line(&mut output) != "ready" {
        return Err("the workload did not start".into());
    }
    Ok((child, input, output))
}

/// Why the tests that trace cannot run here: no root (or CAP_BPF and
/// CAP_PERFMON), or a binary built without its eBPF object.
pub fn bpf_skip_reason() -> Option<String> {
    if let Err(e) = system::check_privileges() {
        return Some(e);
    }
    if let Err(attach::SourceError::StubObject) = attach::verify_all_programs().map(|_| ()) {
        return Some("built with UACCE_TRACE_EBPF_STUB=1: no eBPF object".into());
    }
    None
}

/// The losses a closing line (`wrote …`, `stopped …`) names: `0 dropped`,
/// or `N dropped (reason n, …; not lost: …)` whose reasons sum to N;
/// `Err` when they are not all `allowed`, or the line says neither.
pub fn closing_losses(
    closing: &str,
    allowed: fn(&str) -> bool,
) -> Result<std::collections::BTreeMap<String, u64>, String> {
    let mut losses = std::collections::BTreeMap::new();
    let (before, after) = closing
        .split_once(" dropped")
        .ok_or_else(|| format!("no losses in {closing:?}"))?;
    let total: u64 = before
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no loss count in {closing:?}"))?;
    if total > 0 {
        let list = after
            .strip_prefix(" (")
            .and_then(|l| l.split([')', ';']).next())
            .ok_or_else(|| format!("no loss reasons in {closing:?}"))?;
        for item in list.split(", ") {
            let (reason, n) = item
                .rsplit_once(' ')
                .and_then(|(r, n)| Some((r.to_string(), n.parse::<u64>().ok()?)))
                .ok_or_else(|| format!("loss {item:?} in {closing:?}"))?;
            losses.insert(reason, n);
        }
    }
    if losses.values().sum::<u64>() != total {
        return Err(format!("the reasons do not sum to the losses: {closing:?}"));
    }
    match losses.keys().find(|r| !allowed(r)) {
        Some(r) => Err(format!("lost as {r}: {closing}")),
        None => Ok(losses),
    }
}

/// The start edge: calls that returned while the hooks were being
/// attached (`in_flight_at_start`).
pub fn edge(reason: &str) -> bool {
    reason == "in_flight_at_start"
}

/// Plain `GET /metrics` (no gzip): the body.
pub fn scrape(addr: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = String::new();
    c.read_to_string(&mut buf)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = buf.split_once("\r\n\r\n").ok_or("no HTTP head")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("scrape answered {head:?}"));
    }
    Ok(body.to_string())
}

/// A helper workload's answer to the test: one line on its standard
/// output, flushed at once (the test waits for it).
pub fn say(s: String) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{s}");
    let _ = o.flush();
}

/// One line from a child, trimmed ("" at its end).
pub fn read_line(r: &mut impl BufRead) -> String {
    let mut s = String::new();
    r.read_line(&mut s).expect("read workload");
    s.trim().to_string()
}

/// `Ok` when nothing failed, else every failure, one a line.
pub fn verdict(failures: Vec<String>) -> Result<(), String> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// Runs `tests` (name, test, needs root and the eBPF object), those whose
/// name contains the first non-flag argument if there is one; those that
/// need BPF are skipped where [`bpf_skip_reason`] says why.
pub fn run(tests: &[(&str, Test, bool)]) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let skip = if tests.iter().any(|t| t.2) {
        bpf_skip_reason()
    } else {
        None
    };
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-'));
    let (mut passed, mut failed, mut skipped, mut filtered) = (0, 0, 0, 0);
    for &(name, test, needs_bpf) in tests {
        if filter.is_some_and(|f| !name.contains(f.as_str())) {
            filtered += 1;
            continue;
        }
        if let (true, Some(why)) = (needs_bpf, &skip) {
            if super::skip::ci() {
                println!("{name}: cannot run under CI=true: {why}");
                println!("test {name} ... FAILED");
                failed += 1;
            } else {
                // libtest's line for an ignored test with a reason, which
                // `cargo xtask test` lists among the skips.
                println!("test {name} ... ignored, SKIP: {why}");
                skipped += 1;
            }
            continue;
        }
        let t0 = std::time::Instant::now();
        match test() {
            Ok(()) => {
                println!("{name}: {:.1} s", t0.elapsed().as_secs_f64());
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(e) => {
                println!("{name}: {e}");
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!(
        "test result: {}. {passed} passed; {failed} failed; {skipped} ignored; 0 measured; \
         {filtered} filtered out",
        if failed > 0 { "FAILED" } else { "ok" }
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
