//! Checks a test VM's results, from the sections [`crate::vm::console`]
//! parsed out of its console log. [`check`] asserts:
//!
//! - (a) the workload ran and printed its JSON line;
//! - (b) after `stat_refresh`, the `nr_foll_pin_acquired` and
//!   `nr_foll_pin_released` deltas both equal the workload's expected pages;
//! - (c) the tool's `pin` records of the workload's tgid sum (`pinned`) to
//!   the expected pinned pages and its `unpin` records (`nr_pages`) to the
//!   expected unpinned pages, and its totals over all processes equal the
//!   vmstat deltas;
//! - (d) every `pin` record of the workload has `"longterm":true`;
//! - (e) with `--hooks fentry|kprobe`, every record came from that hook;
//! - (f) the tool stopped on SIGINT, exited 0 and reported 0 dropped events;
//! - (g) `uacce-trace doctor --json` said `"ok":true`.
//!
//! Records are read as untyped JSON, so added fields and unknown `event`
//! kinds do not break the checks.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::vm::console::{u, vmstat, Console, Section};

/// What a VM was asked to do.
pub struct Expect<'a> {
    /// Whether the tool ran (not `--no-tool`).
    pub tool: bool,
    /// The hook kind forced with `--hooks`, if not `auto`.
    pub forced_hook: Option<&'a str>,
    /// The IOPF response function of this kernel's era
    /// (`iommu_page_response` ≤6.8, `iopf_group_response` 6.9+), which the
    /// plan must choose while the other one is absent.
    pub iopf_response: Option<&'a str>,
    /// Commands whose pins run after the io_uring workload's vmstat window
    /// (checked on their own): left out of the all-process totals.
    pub exclude_comms: &'a [&'a str],
}

/// Result of [`check`].
#[derive(Debug, Default)]
pub struct Verdict {
    /// Failed assertions; empty means PASS.
    pub failures: Vec<String>,
    /// Facts worth printing either way (deltas, counts, hooks seen).
    pub notes: Vec<String>,
    /// Sections the failures concern, to print.
    pub relevant: BTreeSet<String>,
}

impl Verdict {
    pub(super) fn fail(&mut self, sections: &[&str], msg: impl Into<String>) {
        self.failures.push(msg.into());
        self.relevant
            .extend(sections.iter().map(|s| (*s).to_string()));
    }
}

/// `key=value` lines of the status section.
fn status_map(console: &Console) -> BTreeMap<String, String> {
    console
        .lines("status")
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The number after `key` in `uacce-trace: stopped: 12 events, 0 dropped`.
/// Calls in flight at attach that a run started on a quiet guest may meet.
const MAX_IN_FLIGHT_AT_START: u64 = 2;

/// The reasons of the loss ledger in `trace --json`'s final `stopped`
/// line that the run did not provoke on purpose, as `reason n`. On purpose:
/// IOPFs whose PASID has no owner (`iopf_unattributed`, which must equal
/// the IOPF records without a tgid) and, where the attribution block ran,
/// the IOPF groups its orphan faults leave unanswered (checked exactly by
/// its (s)). Every other reason is a loss.
fn unexplained_losses(console: &Console) -> Vec<String> {
    let records: Vec<Value> = console
        .lines("events")
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let Some(losses) = records
        .iter()
        .rev()
        .find(|r| r.get("event").and_then(Value::as_str) == Some("stopped"))
        .and_then(|r| r.get("losses"))
        .and_then(Value::as_object)
    else {
        return vec!["no final `stopped` line with a loss ledger".into()];
    };
    let unowned = records
        .iter()
        .filter(|r| r.get("event").and_then(Value::as_str) == Some("iopf"))
        .filter(|r| r.get("tgid").is_none_or(Value::is_null))
        .count() as u64;
    let attribution_ran = !console.lines("attr-noresp").is_empty();
    losses
        .iter()
        .filter_map(|(reason, n)| Some((reason, n.as_u64()?)))
        .filter(|&(reason, n)| {
            n > 0
                && !(reason == "iopf_unattributed" && n == unowned)
                && !(attribution_ran
                    && matches!(
                        reason.as_str(),
                        "iopf_unanswered" | "iopf_superseded" | "iopf_pending_at_exit"
                    ))
                && reason != "nested"
                // A call already inside a hooked function while the tracer
                // attached (e.g. a kworker still tearing down an earlier
                // workload's io_uring buffers): the window's edge, not a
                // loss of the run; (c) still checks every page in it.
                && !(reason == "in_flight_at_start" && n <= MAX_IN_FLIGHT_AT_START)
        })
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect()
}

fn count_before(line: &str, word: &str) -> Option<u64> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let at = tokens
        .iter()
        .position(|t| t.trim_end_matches([',', '.', ';']) == word)?;
    tokens.get(at.checked_sub(1)?)?.parse().ok()
}

/// The workload's JSON result: (pid, expected pinned, expected unpinned).
pub(super) fn workload_result(console: &Console) -> Option<(u64, u64, u64)> {
    console.lines("workload").iter().find_map(|line| {
        let v: Value = serde_json::from_str(line).ok()?;
        if v.get("workload")?.as_str()? != "iouring" {
            return None;
        }
        Some((
            u(&v, "pid")?,
            u(&v, "expected_pinned_pages")?,
            u(&v, "expected_unpinned_pages")?,
        ))
    })
}

/// Totals of the tool's records.
#[derive(Default)]
struct Tally {
    records: u64,
    pin_all: u64,
    unpin_all: u64,
    pin_workload: u64,
    unpin_workload: u64,
    pin_records_workload: u64,
    not_longterm: u64,
    hooks: BTreeSet<String>,
    wrong_hook: u64,
    bad_lines: Vec<String>,
    missing_fields: Vec<String>,
}

fn tally(
    console: &Console,
    pid: Option<u64>,
    forced_hook: Option<&str>,
    exclude_comms: &[&str],
) -> Tally {
    let mut t = Tally::default();
    for line in console.lines("events") {
        if line.trim().is_empty() {
            continue;
        }
        let record: Value = match serde_json::from_str(line) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                t.bad_lines.push(line.clone());
                continue;
            }
        };
        t.records += 1;
        let kind = record.get("event").and_then(Value::as_str).unwrap_or("");
        let hook = record.get("hook").and_then(Value::as_str);
        if let Some(hook) = hook {
            t.hooks.insert(hook.to_string());
            // Tracepoint records (pin ioctls) have no alternative hook.
            if hook != "tracepoint" && forced_hook.is_some_and(|f| f != hook) {
                t.wrong_hook += 1;
            }
        }
        // Processes checked against their own vmstat window elsewhere (the
        // test kernel's uacce_ctrl fixture) stay out of this window's totals.
        if record
            .get("comm")
            .and_then(Value::as_str)
            .is_some_and(|c| exclude_comms.contains(&c))
        {
            continue;
        }
        let field = if kind == "pin" {
            "pinned"
        } else if kind == "unpin" {
            "nr_pages"
        } else {
            continue; // other event kinds: not counted here
        };
        if hook.is_none() && forced_hook.is_some() {
            t.wrong_hook += 1;
        }
        let (Some(tgid), Some(pages)) = (u(&record, "tgid"), u(&record, field)) else {
            t.missing_fields
                .push(format!("{kind} record without tgid or {field}: {line}"));
            continue;
        };
        let ours = pid == Some(tgid);
        if kind == "pin" {
            t.pin_all += pages;
            if ours {
                t.pin_workload += pages;
                t.pin_records_workload += 1;
                if record.get("longterm").and_then(Value::as_bool) != Some(true) {
                    t.not_longterm += 1;
                }
            }
        } else {
            t.unpin_all += pages;
            if ours {
                t.unpin_workload += pages;
            }
        }
    }
    t
}

/// The start of every VM's verdict: the guest booted, its output is
/// complete, and every section arrived whole.
pub fn completeness(console: &Console) -> Verdict {
    let mut v = Verdict::default();
    if console.booted.is_none() {
        v.fail(
            &[],
            "the guest never reached /init (no boot marker on the console)",
        );
    } else if !console.done {
        v.fail(
            &[],
            "the guest output is incomplete (no end marker): /init died or timed out",
        );
    }
    for (name, section) in &console.sections {
        if let Some(problem) = &section.problem {
            v.fail(&[name], format!("section {name}: {problem}"));
        }
    }
    v
}

/// Checks a finished VM's console against `expect`.
pub fn check(console: &Console, expect: &Expect<'_>) -> Verdict {
    let mut v = completeness(console);
    if console.booted.is_none() {
        return v;
    }
    let status = status_map(console);
    let st = |k: &str| status.get(k).map(String::as_str).unwrap_or("");

    // (a) the workload.
    let workload = workload_result(console);
    if st("workload_rc") != "0" {
        v.fail(
            &["status", "workload", "workload.err"],
            format!("(a) workload exited with status {:?}", st("workload_rc")),
        );
    }
    let Some((pid, exp_pin, exp_unpin)) = workload else {
        v.fail(
            &["workload", "workload.err"],
            "(a) no JSON result line from the workload",
        );
        return v;
    };
    v.notes.push(format!(
        "workload pid {pid}: expects {exp_pin} pinned / {exp_unpin} unpinned pages"
    ));

    // (b) vmstat.
    let deltas = match (
        vmstat(console, "vmstat-before"),
        vmstat(console, "vmstat-after"),
    ) {
        (Some(b), Some(a)) => Some((a.0.wrapping_sub(b.0), a.1.wrapping_sub(b.1))),
        _ => {
            v.fail(
                &["vmstat-before", "vmstat-after"],
                "(b) nr_foll_pin_acquired/released missing from /proc/vmstat",
            );
            None
        }
    };
    if let Some((acq, rel)) = deltas {
        v.notes
            .push(format!("vmstat delta: acquired +{acq}, released +{rel}"));
        if acq != exp_pin || rel != exp_unpin {
            v.fail(
                &["vmstat-before", "vmstat-after", "workload"],
                format!(
                    "(b) vmstat deltas acquired +{acq} / released +{rel} != workload's {exp_pin} / {exp_unpin}"
                ),
            );
        }
    }

    if !expect.tool {
        return v;
    }

    // The tracer's life.
    let trace_err = ["status", "trace.err"];
    if st("trace_started") != "1" {
        v.fail(
            &trace_err,
            "the tracer never printed `uacce-trace: tracing started`",
        );
    } else {
        let ds: f64 = st("trace_start_wait_ds").parse().unwrap_or(0.0);
        v.notes
            .push(format!("tracer ready after ~{:.1} s", ds / 10.0));
    }
    // The tracer runs with -v: its programs were loaded (and passed the
    // verifier) with the aya-log diagnostics live.
    if !console
        .lines("trace.err")
        .iter()
        .any(|l| l.starts_with("uacce-trace: info: kernel programs' diagnostics on"))
    {
        v.fail(
            &trace_err,
            "the tracer (-v) did not load its programs with their aya-log diagnostics on",
        );
    }
    if st("trace_stop_signal") != "INT" {
        v.fail(
            &trace_err,
            format!(
                "(f) the tracer did not exit on SIGINT (stopped by SIG{})",
                st("trace_stop_signal")
            ),
        );
    }
    if st("trace_rc") != "0" {
        v.fail(
            &trace_err,
            format!("(f) the tracer exited with status {:?}", st("trace_rc")),
        );
    }
    // (f) drops.
    let stopped = console
        .lines("trace.err")
        .iter()
        .find(|l| l.starts_with("uacce-trace: stopped"));
    match stopped.and_then(|l| count_before(l, "dropped")) {
        Some(0) => {}
        Some(d) => {
            let unexplained = unexplained_losses(console);
            if !unexplained.is_empty() {
                v.fail(
                    &trace_err,
                    format!(
                        "(f) the tracer dropped {d} events: {}",
                        unexplained.join(", ")
                    ),
                );
            }
        }
        None => v.fail(
            &trace_err,
            "(f) no `uacce-trace: stopped: N events, D dropped` line",
        ),
    }

    // (c), (d), (e) from the records.
    let t = tally(console, Some(pid), expect.forced_hook, expect.exclude_comms);
    v.notes.push(format!(
        "tool: {} records; workload pinned {} / unpinned {}; all processes pinned {} / unpinned {}; hooks {:?}",
        t.records, t.pin_workload, t.unpin_workload, t.pin_all, t.unpin_all, t.hooks
    ));
    if let Some(first) = t.bad_lines.first() {
        v.fail(
            &["events"],
            format!(
                "{} event lines are not JSON objects, first: {first}",
                t.bad_lines.len()
            ),
        );
    }
    if let Some(first) = t.missing_fields.first() {
        v.fail(
            &["events"],
            format!(
                "{} records lack fields, first: {first}",
                t.missing_fields.len()
            ),
        );
    }
    if t.pin_workload != exp_pin || t.unpin_workload != exp_unpin {
        v.fail(
            &["events", "workload"],
            format!(
                "(c) tool saw {} pinned / {} unpinned pages for tgid {pid}, workload expects {exp_pin} / {exp_unpin}",
                t.pin_workload, t.unpin_workload
            ),
        );
    }
    if let Some((acq, rel)) = deltas {
        if t.pin_all != acq || t.unpin_all != rel {
            v.fail(
                &["events", "vmstat-before", "vmstat-after"],
                format!(
                    "(c) tool's totals {} pinned / {} unpinned != vmstat deltas +{acq} / +{rel}",
                    t.pin_all, t.unpin_all
                ),
            );
        }
    }
    if t.pin_records_workload == 0 {
        v.fail(&["events"], "(d) no pin records for the workload");
    } else if t.not_longterm > 0 {
        v.fail(
            &["events"],
            format!(
                "(d) {} of {} pin records of the workload lack \"longterm\":true",
                t.not_longterm, t.pin_records_workload
            ),
        );
    }
    if let Some(hook) = expect.forced_hook {
        if t.wrong_hook > 0 {
            v.fail(
                &["events"],
                format!(
                    "(e) {} records did not come from the forced hook {hook:?} (seen {:?})",
                    t.wrong_hook, t.hooks
                ),
            );
        }
    }

    // (g) doctor.
    let doctor_text = console
        .sections
        .get("doctor")
        .map(Section::text)
        .unwrap_or_default();
    match serde_json::from_str::<Value>(&doctor_text) {
        Ok(doc) => {
            if doc.get("ok").and_then(Value::as_bool) != Some(true) {
                v.fail(
                    &["doctor", "doctor.err"],
                    "(g) doctor --json did not say \"ok\":true",
                );
            }
            if let Some(expected) = expect.iopf_response {
                check_iopf_era(&mut v, &doc, expected, console);
            }
        }
        Err(e) => v.fail(
            &["doctor", "doctor.err", "status"],
            format!(
                "(g) doctor --json output is not JSON ({e}); exit status {:?}",
                st("doctor_rc")
            ),
        ),
    }
    v
}

/// The row of `function` in `doctor --json`'s plan, if it has one.
pub fn plan_row<'a>(doc: &'a Value, function: &str) -> Option<&'a Value> {
    doc.get("plan")?
        .as_array()?
        .iter()
        .find(|h| h.get("function").and_then(Value::as_str) == Some(function))
}

/// (h) The IOPF hooks of the kernel's era: report and the era's response
/// function chosen by doctor's plan, the other response function absent,
/// and the tracer attached an IOPF response hook.
fn check_iopf_era(v: &mut Verdict, doc: &Value, expected: &str, console: &Console) {
    let entry = |f: &str| plan_row(doc, f);
    let other = if expected == "iopf_group_response" {
        "iommu_page_response"
    } else {
        "iopf_group_response"
    };
    for f in ["iommu_report_device_fault", expected] {
        let chosen =
            entry(f).and_then(|h| h.get("chosen").and_then(Value::as_str).map(str::to_string));
        match chosen {
            Some(hook) => v.notes.push(format!("plan: {f} -> {hook}")),
            None => v.fail(
                &["doctor"],
                format!("(h) doctor's plan chose no hook for {f}"),
            ),
        }
    }
    if entry(other).and_then(|h| h.get("absent").and_then(Value::as_bool)) != Some(true) {
        v.fail(
            &["doctor"],
            format!("(h) {other} should be absent in this kernel's era"),
        );
    }
    let started = console
        .sections
        .get("trace.err")
        .map(Section::text)
        .unwrap_or_default();
    if !started.lines().any(|l| {
        l.starts_with("uacce-trace: tracing started") && !l.contains("iopf_response: none")
    }) {
        v.fail(
            &["trace.err"],
            "(h) the tracer attached no IOPF response hook",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::console::parse;
    use crate::vm::guest::{BEGIN, END};

    /// Console text for a run where the tool saw `pins`/`unpins` pages.
    fn log(pins: u64, unpins: u64, dropped: u64, hook: &str) -> String {
        let events = [
            format!(
                r#"{{"event":"pin","tgid":77,"tid":77,"comm":"uacce-workload","hook":"{hook}","pinned":{pins},"nr_pages":{pins},"longterm":true,"extra":1}}"#
            ),
            format!(
                r#"{{"event":"unpin","tgid":77,"tid":77,"hook":"{hook}","nr_pages":{unpins}}}"#
            ),
            r#"{"event":"iopf","tgid":1,"hook":"kprobe"}"#.to_string(),
        ];
        let section = |name: &str, lines: &[String]| {
            let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
            let mut s = format!("{BEGIN} {name}\r\n");
            for l in lines {
                s.push_str(l);
                s.push_str("\r\n");
            }
            s.push_str(&format!(
                "{END} {name} lines={} bytes={bytes}\r\n",
                lines.len()
            ));
            s
        };
        let mut out = String::from("\x1b[2Jjunk\r\n@@UT-BOOTED 6.12.0-test\r\n");
        out += &section(
            "status",
            &[
                "workload_rc=0".into(),
                "trace_started=1".into(),
                "trace_start_wait_ds=42".into(),
                "trace_stop_signal=INT".into(),
                "trace_rc=0".into(),
            ],
        );
        out += &section(
            "workload",
            &[r#"{"workload":"iouring","pid":77,"rounds":1,"pages_per_round":[256],"expected_pinned_pages":256,"expected_unpinned_pages":256}"#.into()],
        );
        out += &section(
            "vmstat-before",
            &[
                "nr_foll_pin_acquired 10".into(),
                "nr_foll_pin_released 10".into(),
            ],
        );
        out += &section(
            "vmstat-after",
            &[
                "nr_foll_pin_acquired 266".into(),
                "nr_foll_pin_released 266".into(),
            ],
        );
        out += &section(
            "trace.err",
            &[
                "uacce-trace: info: kernel programs' diagnostics on (aya-log, level INFO)".into(),
                "uacce-trace: tracing started (fentry)".into(),
                format!("uacce-trace: stopped: 3 events, {dropped} dropped"),
            ],
        );
        out += &section(
            "doctor",
            &["{".into(), r#"  "ok": true"#.into(), "}".into()],
        );
        out += &section("events", &events);
        out += "@@UT-DONE\r\n";
        out
    }

    #[test]
    fn passing_run() {
        let console = parse(&log(256, 256, 0, "fentry"));
        assert_eq!(console.booted.as_deref(), Some("6.12.0-test"));
        assert!(console.done);
        let v = check(
            &console,
            &Expect {
                tool: true,
                forced_hook: None,
                iopf_response: None,
                exclude_comms: &[],
            },
        );
        assert!(v.failures.is_empty(), "{:?}", v.failures);
    }

    #[test]
    fn failing_run() {
        let console = parse(&log(255, 256, 3, "kprobe"));
        let v = check(
            &console,
            &Expect {
                tool: true,
                forced_hook: Some("fentry"),
                iopf_response: None,
                exclude_comms: &[],
            },
        );
        let all = v.failures.join("\n");
        assert!(all.contains("(c) tool saw 255 pinned"), "{all}");
        assert!(all.contains("(f) the tracer dropped 3 events"), "{all}");
        assert!(all.contains("(e) 3 records"), "{all}");
        assert!(v.relevant.contains("events"));
    }

    #[test]
    fn kernel_lines_are_dropped_and_garbage_detected() {
        let mut text = log(256, 256, 0, "fentry");
        text = text.replacen(
            "nr_foll_pin_acquired 266\r\n",
            "nr_foll_pin_acquired 266\r\n[   12.345678] random noise\r\n",
            1,
        );
        let console = parse(&text);
        assert!(console.sections["vmstat-after"].problem.is_none());
        assert_eq!(console.lines("vmstat-after").len(), 2);

        let text =
            log(256, 256, 0, "fentry").replacen("nr_foll_pin_released 266", "nr_foll_pin_rel", 1);
        let console = parse(&text);
        assert!(console.sections["vmstat-after"].problem.is_some());
    }

    #[test]
    fn stop_line() {
        assert_eq!(
            count_before("uacce-trace: stopped: 12 events, 3 dropped", "dropped"),
            Some(3)
        );
        assert_eq!(
            count_before("uacce-trace: stopped: 12 events, 0 dropped", "events"),
            Some(12)
        );
        assert_eq!(count_before("nothing", "dropped"), None);
    }
}
