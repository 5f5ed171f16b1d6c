//! `record -- COMMAND` keeps every event of every descendant of the
//! command, however short-lived, and nothing of other processes: the
//! process tree comes from the kernel's fork and exit events, in ring order
//! with the events (`uacce_trace::ingest::proctree`).
//!
//! Runs on the host's real tracepoints: needs root (or CAP_BPF and
//! CAP_PERFMON) and a binary built with its eBPF object; otherwise each
//! test prints `SKIP` and why (a failure under `CI=true`). No test harness (`harness = false`): the
//! same executable is the workload, `proc_tree helper-pin-ioctls N` makes N
//! `UACCE_CMD_PIN` ioctls on /dev/null (they fail with ENOTTY, and the
//! `sys_enter_ioctl` tracepoint records each one).

use std::{
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use uacce_trace_common::ioctl_cmd::UACCE_CMD_PIN;

#[path = "common/harness.rs"]
mod harness;
#[path = "common/skip.rs"]
mod skip;

/// How many times each recording is repeated (the bug was flaky).
const RUNS: usize = 3;

fn pin_ioctls(n: u64) -> ExitCode {
    let Ok(devnull) = std::fs::File::open("/dev/null") else {
        eprintln!("cannot open /dev/null");
        return ExitCode::FAILURE;
    };
    // struct uacce_pin_address { __u64 addr; __u64 size; }
    let range: [u64; 2] = [0x7f12_3456_7000, 4096];
    for _ in 0..n {
        // SAFETY: ioctl on /dev/null with a pointer to our buffer; it fails
        // with ENOTTY and writes nothing.
        let rc = unsafe { libc::ioctl(devnull.as_raw_fd(), UACCE_CMD_PIN as _, range.as_ptr()) };
        if rc != -1 {
            eprintln!("ioctl on /dev/null unexpectedly succeeded");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// `proc_tree helper-threads N`: four threads make N ioctls each, once the main
/// thread (the thread-group leader) has exited on its own; the first also
/// forks a child making N more (a fork from a thread whose leader is
/// gone). The process ends with its last thread: 5 N ioctls in all.
fn threads(n: u64) -> ExitCode {
    let me = std::env::current_exe().expect("current exe");
    for t in 0..4 {
        let me = me.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let _ = pin_ioctls(n);
            if t == 0 {
                let status = Command::new(&me)
                    .args(["helper-pin-ioctls", &n.to_string()])
                    .status();
                assert!(status.is_ok_and(|s| s.success()), "the child failed");
            }
        });
    }
    // SAFETY: ends only this thread (SYS_exit, not exit_group); the others
    // go on and the process ends with the last of them.
    unsafe { libc::syscall(libc::SYS_exit, 0) };
    ExitCode::FAILURE
}

fn me() -> String {
    std::env::current_exe()
        .expect("current exe")
        .display()
        .to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("uacce-proc-tree-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// What `record` wrote: the sum of `uacce_ctrl` counts over every interval
/// and series, and its summary line.
struct Recorded {
    ioctls: u64,
    summary: String,
}

fn record(out: &Path, command: &[&str]) -> Recorded {
    let output = Command::new(env!("CARGO_BIN_EXE_uacce-trace"))
        .args(["record", "-o"])
        .arg(out)
        .args(["--format", "json", "--interval", "10s", "--"])
        .args(command)
        .output()
        .expect("run uacce-trace record");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "record failed: {stderr}");
    let text = std::fs::read_to_string(out).expect("read the recording");
    let mut ioctls = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        if v["kind"] == "uacce_ctrl" {
            ioctls += v["count"].as_u64().expect("count");
        }
    }
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("uacce-trace: wrote"))
        .unwrap_or_else(|| panic!("no summary in: {stderr}"))
        .to_string();
    Recorded { ioctls, summary }
}

/// The number before `label` in the summary, e.g. `3 unplaceable`.
fn summary_count(summary: &str, label: &str) -> u64 {
    let at = summary
        .find(label)
        .unwrap_or_else(|| panic!("no `{label}` in: {summary}"));
    summary[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before `{label}` in: {summary}"))
}

/// A process outside the command that keeps forking children which make
/// the same ioctls, until dropped.
struct Stranger(std::process::Child);

impl Stranger {
    fn start() -> Stranger {
        let script = format!("while :; do '{}' helper-pin-ioctls 7; done", me());
        Stranger(
            Command::new("sh")
                .args(["-c", &script])
                .spawn()
                .expect("spawn the stranger"),
        )
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        // SAFETY: kill(2) of our own child, not yet reaped.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// 100 short-lived processes making ioctls: children, grandchildren
/// (`sh -c` inside `sh -c`), great-grandchildren, background children and
/// orphans (their parent exits first); returns the script and how many
/// ioctls they make.
fn tree_script(dir: &Path) -> (PathBuf, u64) {
    let p = me();
    let d = dir.display();
    let script = format!(
        r#"P='{p}'
i=0; while [ $i -lt 40 ]; do "$P" helper-pin-ioctls 3; i=$((i+1)); done
i=0; while [ $i -lt 20 ]; do sh -c "'$P' helper-pin-ioctls 2; true"; i=$((i+1)); done
i=0; while [ $i -lt 20 ]; do "$P" helper-pin-ioctls 5 & i=$((i+1)); done
wait
i=0; while [ $i -lt 10 ]; do sh -c "sh -c \"'$P' helper-pin-ioctls 1; true\"; true"; i=$((i+1)); done
i=0; while [ $i -lt 10 ]; do sh -c "('$P' helper-pin-ioctls 4; touch '{d}/orphan.'$i) & exit 0"; i=$((i+1)); done
n=0
while [ "$(ls '{d}' | grep -c orphan)" -lt 10 ] && [ $n -lt 500 ]; do sleep 0.01; n=$((n+1)); done
"#
    );
    let path = dir.join("tree.sh");
    std::fs::write(&path, script).expect("write the script");
    (path, 40 * 3 + 20 * 2 + 20 * 5 + 10 + 10 * 4)
}

fn every_descendant_is_recorded() -> Result<(), String> {
    for run in 0..RUNS {
        let dir = scratch(&format!("tree{run}"));
        let (script, expected) = tree_script(&dir);
        let stranger = Stranger::start();
        // Let the stranger get going, so its events are in the window.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let out = dir.join("r.json");
        let r = record(&out, &["sh", &script.display().to_string()]);
        drop(stranger);
        let others = summary_count(&r.summary, "from other processes left out");
        let unplaceable = summary_count(&r.summary, "unplaceable");
        eprintln!(
            "run {run}: {} of {expected} ioctls recorded; {}",
            r.ioctls, r.summary
        );
        if r.ioctls != expected || unplaceable != 0 {
            return Err(format!(
                "run {run}: {} ioctls recorded, expected {expected}; {}",
                r.ioctls, r.summary
            ));
        }
        // The stranger's ioctls were there and were left out (else this
        // test would not show that anything is excluded).
        if others == 0 {
            return Err(format!(
                "run {run}: nothing of the stranger was seen: {}",
                r.summary
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// The user's report: `sh -c 'prog 100; prog 200; prog 300'` recorded 0
/// to 100 of its 600 ioctls.
fn three_commands_in_a_row() -> Result<(), String> {
    let p = me();
    let command = format!(
        "'{p}' helper-pin-ioctls 100; '{p}' helper-pin-ioctls 200; '{p}' helper-pin-ioctls 300"
    );
    for run in 0..RUNS {
        let dir = scratch(&format!("three{run}"));
        let r = record(&dir.join("r.json"), &["sh", "-c", &command]);
        eprintln!(
            "run {run}: {} of 600 ioctls recorded; {}",
            r.ioctls, r.summary
        );
        if r.ioctls != 600 || summary_count(&r.summary, "unplaceable") != 0 {
            return Err(format!(
                "run {run}: {} ioctls recorded, expected 600; {}",
                r.ioctls, r.summary
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Membership is per process: threads are not forks, and a process whose
/// leader thread exited early is still followed (and may still fork) until
/// its last thread exits.
fn threads_outlive_their_leader() -> Result<(), String> {
    let p = me();
    for run in 0..RUNS {
        let dir = scratch(&format!("threads{run}"));
        let r = record(
            &dir.join("r.json"),
            &["sh", "-c", &format!("'{p}' helper-threads 20; true")],
        );
        eprintln!(
            "run {run}: {} of 100 ioctls recorded; {}",
            r.ioctls, r.summary
        );
        if r.ioctls != 100 || summary_count(&r.summary, "unplaceable") != 0 {
            return Err(format!(
                "run {run}: {} ioctls recorded, expected 100; {}",
                r.ioctls, r.summary
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let n = || args.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
    match args.get(1).map(String::as_str) {
        Some("helper-pin-ioctls") => return pin_ioctls(n()),
        Some("helper-threads") => return threads(n()),
        _ => {}
    }
    harness::run(&[
        ("three_commands_in_a_row", three_commands_in_a_row, true),
        (
            "every_descendant_is_recorded",
            every_descendant_is_recorded,
            true,
        ),
        (
            "threads_outlive_their_leader",
            threads_outlive_their_leader,
            true,
        ),
    ])
}
