//! The `pins` VM of `vm-test`: every pin path with a real user of it, then
//! the busy-start test ([`super::busy`]).
//!
//! One tracer (`trace --json`) runs while the guest runs, one after the
//! other, each with `/proc/vmstat` read around it (after `stat_refresh`):
//!
//! | mode | user | pin function (6.12) | unpin function (6.12) |
//! |---|---|---|---|
//! | `iouring` | io_uring buffer registration | `pin_user_pages_fast` (6.1: `pin_user_pages`) | `unpin_user_page` per page |
//! | `odirect` | `O_DIRECT` read of `/dev/ram0` (brd) | `pin_user_pages_fast` | `unpin_user_folio` / `unpin_user_page` |
//! | `pvm` | `process_vm_readv` from a child | `pin_user_pages_remote` | `unpin_user_pages_dirty_lock` → `unpin_user_pages` (counted once) |
//! | `udmabuf` | `UDMABUF_CREATE` on a sealed memfd, close | `memfd_pin_folios` | `unpin_folios` / `unpin_folio` |
//! | `uacce_ctrl` | the test kernel's `/dev/uacce_ctrl` fixture | `pin_user_pages_fast` | `unpin_user_pages` |
//!
//! (what each kernel really takes is read from the events and printed as
//! a note). A mode whose device is missing (`/dev/ram0`, `/dev/udmabuf`,
//! `/dev/uacce_ctrl`: only the test kernel has them) is reported as not
//! run, with the reason; the stock kernels must have `iouring` and `pvm`.
//!
//! - (p1) each mode that ran exited 0 with its JSON tally;
//! - (p2) its vmstat deltas equal its tally (pinned = acquired, unpinned =
//!   released);
//! - (p3) the tool's pin/unpin records of its process sum to the tally
//!   exactly (a nested unpin counted twice, or a missed one, fails), and
//!   the tool's records of all processes inside the mode's vmstat window
//!   equal the deltas;
//! - (p4) records come from the forced hook type;
//! - (p5) the tracer stopped on SIGINT with status 0 and dropped nothing
//!   (at most two calls in flight at attach: the window's edge).
//!
//! The kernel's pin/unpin symbols (`/proc/kallsyms`) are printed as a note
//! next to the functions each mode exercised ("verifier only": present,
//! hooked by doctor's plan, never called by a workload): the README's table of which
//! function is exercised by which workload comes from these notes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::report::Verdict;
use crate::vm::console::{json_lines, s, u, vmstat, Console};
use crate::vm::guest::{self, GUEST_UACCE_CTRL_PIN};
use crate::vm::image::{GUEST_TOOL, GUEST_WORKLOAD};

/// The pin-path modes in the order the guest runs them.
pub const MODES: &[&str] = &["iouring", "odirect", "pvm", "udmabuf", "uacce_ctrl"];

/// Modes every kernel of the matrix must run (the others need devices only
/// the test kernel has).
const REQUIRED_EVERYWHERE: &[&str] = &["iouring", "pvm"];

/// Modes the test kernel must run as well.
const REQUIRED_ON_TEST_KERNEL: &[&str] = &["odirect", "udmabuf", "uacce_ctrl"];

/// What one mode needs and runs: (device it needs, `-` for none; program,
/// `workload` or `uacce`; arguments).
fn mode_command(mode: &str) -> (&'static str, &'static str, &'static str) {
    match mode {
        "iouring" => ("-", "workload", "iouring --size-kib 64,4 --count 4"),
        "odirect" => (
            "/dev/ram0",
            "workload",
            "odirect --dev /dev/ram0 --size-kib 64 --count 4",
        ),
        "pvm" => ("-", "workload", "pvm --size-kib 64 --count 4"),
        "udmabuf" => (
            "/dev/udmabuf",
            "workload",
            "udmabuf --size-kib 64 --count 4",
        ),
        _ => ("/dev/uacce_ctrl", "uacce", "16"),
    }
}

/// [`MODES`] as the `PP_MODES` parameter of `vm-guest/pins.sh`.
fn modes_param() -> String {
    MODES
        .iter()
        .map(|mode| {
            let (dev, prog, args) = mode_command(mode);
            format!("{mode} {dev} {prog} {args}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sections of the pin-path part.
fn sections() -> Vec<(String, String)> {
    let mut out = vec![
        ("pp-status".to_string(), "/tmp/pp-status".to_string()),
        ("symbols".into(), "/tmp/symbols".into()),
        ("trace.err".into(), "/tmp/trace.err".into()),
        ("events".into(), "/tmp/events.ndjson".into()),
        ("doctor".into(), "/tmp/doctor.json".into()),
    ];
    for mode in MODES {
        for (suffix, file) in [
            ("", format!("/tmp/pp-{mode}.json")),
            (".err", format!("/tmp/pp-{mode}.err")),
            ("-before", format!("/tmp/pp-{mode}-before")),
            ("-after", format!("/tmp/pp-{mode}-after")),
        ] {
            out.push((format!("pp-{mode}{suffix}"), file));
        }
    }
    out
}

/// The guest script (parameters in its header comment).
const SCRIPT: &str = include_str!("../../vm-guest/pins.sh");

/// The `/init` of a `pins` VM: pin paths under one tracer, then the busy
/// test with three tracer lifetimes.
pub fn init_script(hooks: &str, test_kernel: bool) -> String {
    let sections: Vec<String> = sections()
        .into_iter()
        .chain(
            super::busy::sections()
                .iter()
                .map(|(n, f)| (n.to_string(), f.to_string())),
        )
        .map(|(name, file)| format!("{name} {file}"))
        .collect();
    let mut params = vec![
        ("HOOKS", hooks.to_string()),
        ("TOOL", GUEST_TOOL.into()),
        ("WORKLOAD", GUEST_WORKLOAD.into()),
        ("TEST_KERNEL", u8::from(test_kernel).to_string()),
        ("UACCE", GUEST_UACCE_CTRL_PIN.into()),
        ("PP_MODES", modes_param()),
    ];
    params.extend(super::busy::params());
    params.push(("SECTIONS", sections.join("\n")));
    guest::init("vm-test (pins)", &params, SCRIPT)
}

/// The `key=value` pairs of a status line.
fn kv(line: &str) -> BTreeMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|t| t.split_once('='))
        .collect()
}

/// One mode's tally: (pid or none (by comm), pinned, unpinned).
fn tally(console: &Console, mode: &str) -> Option<(Option<u64>, u64, u64)> {
    let section = format!("pp-{mode}");
    json_lines(console, &section).iter().find_map(|l| {
        if mode == "uacce_ctrl" {
            // The fixture's program pins its buffer twice (pin/unpin, then
            // pin and close): 2 × pages each way.
            (s(l, "uacce_ctrl_pin") == "ok").then(|| {
                let p = u(l, "pages")? * 2;
                Some((None, p, p))
            })?
        } else if mode == "iouring" {
            Some((
                Some(u(l, "pid")?),
                u(l, "expected_pinned_pages")?,
                u(l, "expected_unpinned_pages")?,
            ))
        } else {
            (s(l, "workload") == mode).then_some(())?;
            Some((
                Some(u(l, "pid")?),
                u(l, "pinned_pages")?,
                u(l, "unpinned_pages")?,
            ))
        }
    })
}

/// Pages and calls of the tool's pin/unpin records, per function.
#[derive(Default)]
struct PerFunc {
    pinned: u64,
    unpinned: u64,
    funcs: BTreeMap<String, (u64, u64)>,
}

/// (p1)–(p5) and the function notes.
pub fn check(console: &Console, hooks: Option<&str>, test_kernel: bool, v: &mut Verdict) {
    let status: BTreeMap<String, String> = console
        .lines("status")
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let st = |k: &str| status.get(k).map_or("", String::as_str);
    if st("trace_started") != "1" {
        v.fail(
            &["status", "trace.err"],
            "(p5) the pin-path tracer never started",
        );
        return;
    }
    if st("trace_stop_signal") != "INT" || st("trace_rc") != "0" {
        v.fail(
            &["status", "trace.err"],
            format!(
                "(p5) the pin-path tracer stopped by SIG{} with status {:?}",
                st("trace_stop_signal"),
                st("trace_rc")
            ),
        );
    }
    match super::busy::stopped_counts(console.lines("trace.err")) {
        // The tracer starts on a quiet guest: at most a call or two of an
        // earlier step (a kworker's deferred unpin) in flight at attach.
        Some(c) if c.dropped == c.in_flight_at_start() && c.in_flight_at_start() <= 2 => {}
        Some(c) => v.fail(
            &["trace.err"],
            format!("(p5) the tracer dropped {}", c.dropped),
        ),
        None => v.fail(
            &["trace.err"],
            "(p5) no `stopped: N events, D dropped` line",
        ),
    }
    let events = json_lines(console, "events");
    let pins: Vec<&Value> = events
        .iter()
        .filter(|e| matches!(s(e, "event"), "pin" | "unpin"))
        .collect();
    if let Some(hook) = hooks.filter(|h| *h != "auto") {
        let wrong = pins.iter().filter(|e| s(e, "hook") != hook).count();
        if wrong > 0 {
            v.fail(
                &["events"],
                format!("(p4) {wrong} pin/unpin records not from the forced hook {hook}"),
            );
        }
    }

    let mut ran = BTreeMap::new();
    for line in console.lines("pp-status") {
        let m = kv(line);
        if let Some(mode) = m.get("mode") {
            ran.insert(
                mode.to_string(),
                (m.get("rc").copied(), m.get("missing").copied()),
            );
        }
    }
    let mut exercised: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut not_run = Vec::new();
    for mode in MODES {
        let required = REQUIRED_EVERYWHERE.contains(mode)
            || (test_kernel && REQUIRED_ON_TEST_KERNEL.contains(mode));
        let sec = format!("pp-{mode}");
        let err = format!("pp-{mode}.err");
        match ran.get(*mode) {
            None => {
                v.fail(&["pp-status"], format!("(p1) {mode}: never ran"));
                continue;
            }
            Some((None, Some(dev))) => {
                if required {
                    v.fail(&["pp-status"], format!("(p1) {mode}: {dev} missing"));
                } else {
                    not_run.push(format!("{mode} (no {dev})"));
                }
                continue;
            }
            Some((rc, _)) if *rc != Some("0") => {
                v.fail(
                    &[&sec, &err],
                    format!("(p1) {mode} exited with status {rc:?}"),
                );
                continue;
            }
            Some(_) => {}
        }
        let Some((pid, exp_pin, exp_unpin)) = tally(console, mode) else {
            v.fail(&[&sec, &err], format!("(p1) {mode}: no tally line"));
            continue;
        };
        let before = format!("pp-{mode}-before");
        let after = format!("pp-{mode}-after");
        let delta = match (vmstat(console, &before), vmstat(console, &after)) {
            (Some(b), Some(a)) => (a.0.wrapping_sub(b.0), a.1.wrapping_sub(b.1)),
            _ => {
                v.fail(
                    &[&before, &after],
                    format!("(p2) {mode}: vmstat unreadable"),
                );
                continue;
            }
        };
        if delta != (exp_pin, exp_unpin) {
            v.fail(
                &[&sec, &before, &after],
                format!(
                    "(p2) {mode}: vmstat +{} / +{} != tally {exp_pin} / {exp_unpin}",
                    delta.0, delta.1
                ),
            );
        }
        let mut ours = PerFunc::default();
        for e in &pins {
            let mine = match pid {
                Some(p) => u(e, "tgid") == Some(p),
                None => s(e, "comm") == super::testkernel::FIXTURE_COMM,
            };
            if !mine {
                continue;
            }
            let pin = s(e, "event") == "pin";
            let pages = if pin {
                u(e, "pinned")
            } else {
                u(e, "nr_pages")
            }
            .unwrap_or(0);
            let f = ours.funcs.entry(s(e, "func").to_string()).or_default();
            f.0 += 1;
            f.1 += pages;
            if pin {
                ours.pinned += pages;
            } else {
                ours.unpinned += pages;
            }
            exercised
                .entry(s(e, "func").to_string())
                .or_default()
                .insert((*mode).to_string());
        }
        if (ours.pinned, ours.unpinned) != (exp_pin, exp_unpin) {
            v.fail(
                &["events", &sec],
                format!(
                    "(p3) {mode}: tool saw {} pinned / {} unpinned, tally {exp_pin} / {exp_unpin} (vmstat +{} / +{})",
                    ours.pinned, ours.unpinned, delta.0, delta.1
                ),
            );
        }
        let funcs: Vec<String> = ours
            .funcs
            .iter()
            .map(|(f, (calls, pages))| format!("{f} {calls}×/{pages}p"))
            .collect();
        v.notes.push(format!(
            "{mode}: tally {exp_pin}/{exp_unpin}, vmstat +{}/+{}, tool {}/{} via {}",
            delta.0,
            delta.1,
            ours.pinned,
            ours.unpinned,
            funcs.join(", ")
        ));
    }
    if !not_run.is_empty() {
        v.notes.push(format!("not run: {}", not_run.join(", ")));
    }
    // The kernel's pin/unpin symbols: which ones a workload exercised.
    let symbols: BTreeSet<String> = console
        .lines("symbols")
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .collect();
    let traced: BTreeSet<&str> = [
        "pin_user_pages",
        "pin_user_pages_fast",
        "pin_user_pages_remote",
        "pin_user_pages_unlocked",
        "memfd_pin_folios",
        "unpin_user_page",
        "unpin_user_pages",
        "unpin_user_pages_dirty_lock",
        "unpin_user_page_range_dirty_lock",
        "unpin_folio",
        "unpin_folios",
        "unpin_user_folio",
    ]
    .into_iter()
    .collect();
    let doctor: Option<Value> = serde_json::from_str(&console.lines("doctor").join("\n")).ok();
    let hooked = |f: &str| {
        doctor
            .as_ref()
            .and_then(|d| super::report::plan_row(d, f))
            .and_then(|r| r.get("chosen"))
            .is_some_and(|c| !c.is_null())
    };
    let mut table = Vec::new();
    for f in &traced {
        let entry = match (symbols.contains(*f), exercised.get(*f)) {
            (_, Some(modes)) => modes.iter().cloned().collect::<Vec<_>>().join("+"),
            (true, None) if hooked(f) => "verifier only".to_string(),
            (true, None) => "present, not hooked".to_string(),
            (false, None) => "absent".to_string(),
        };
        table.push(format!("{f}={entry}"));
    }
    v.notes.push(format!("functions: {}", table.join(" ")));
}
