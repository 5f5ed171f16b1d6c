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

use std::{io::BufRead, process::ExitCode};

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

/// One line from a child, trimmed ("" at its end).
pub fn read_line(r: &mut impl BufRead) -> String {
    let mut s = String::new();
    r.read_line(&mut s).expect("read workload");
    s.trim().to_string()
}

/// Runs `tests` (name, test, needs root and the eBPF object), those whose
/// name contains the first non-flag argument if there is one; `skip` is why
/// the ones that need BPF cannot run here, if they cannot.
pub fn run(tests: &[(&str, Test, bool)], skip: Option<String>) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
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
