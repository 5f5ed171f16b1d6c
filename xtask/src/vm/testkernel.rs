//! Checks of a run on the project's test kernel (`cargo xtask kernel`):
//! real IO page faults through the iommufd mock and pins through the
//! `/dev/uacce_ctrl` fixture, compared with what the guest programs measured
//! themselves.
//!
//! - (i) every fault the two IOPF workloads triggered appears exactly once
//!   in the tool's output, attributed to the process that triggered it, with
//!   pasid/grpid/perm/addr decoded right, and its report→response latency
//!   inside the bracket the workload measured on CLOCK_MONOTONIC:
//!   `t_write_start - t_read <= latency <= t_write_done - t_trigger`;
//!   no other IOPF records; no group left unanswered or pending.
//! - (j) the fixture's pin ioctls are linked to the `pin_user_pages_fast`
//!   calls they caused; the fixture process's pinned/unpinned pages equal
//!   the `/proc/vmstat` deltas around it; closing the fd unpinned all.

use std::collections::BTreeMap;

use serde_json::Value;

use super::report::{Console, Verdict};

/// One fault as the workload saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fault {
    pid: u64,
    pasid: u64,
    grpid: u64,
    perm: u64,
    addr: u64,
    lower_ns: u64,
    upper_ns: u64,
}

fn json_lines(console: &Console, section: &str) -> Vec<Value> {
    console
        .lines(section)
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn u(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s
            .strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .or_else(|| s.parse().ok()),
        _ => None,
    }
}

fn workload_faults(console: &Console, section: &str) -> Result<Vec<Fault>, String> {
    let lines = json_lines(console, section);
    let pid = lines
        .iter()
        .find_map(|l| l.get("setup").and_then(|s| u(s, "pid")))
        .ok_or(format!("{section}: no setup line with the pid"))?;
    let ok = lines
        .iter()
        .any(|l| l.get("iopf_workload").and_then(Value::as_str) == Some("ok"));
    if !ok {
        return Err(format!("{section}: the workload did not end with \"ok\""));
    }
    lines
        .iter()
        .filter(|l| l.get("fault").is_some())
        .map(|l| {
            let get = |k: &str| u(l, k).ok_or(format!("{section}: fault line without {k}: {l}"));
            Ok(Fault {
                pid,
                pasid: get("pasid")?,
                grpid: get("grpid")?,
                perm: get("perm")?,
                addr: get("addr")?,
                lower_ns: get("t_write_start")?.saturating_sub(get("t_read")?),
                upper_ns: get("t_write_done")?.saturating_sub(get("t_trigger")?),
            })
        })
        .collect()
}

fn vmstat_delta(console: &Console, before: &str, after: &str) -> Option<(u64, u64)> {
    let read = |name: &str| -> Option<(u64, u64)> {
        let mut acq = None;
        let mut rel = None;
        for l in console.lines(name) {
            let mut it = l.split_whitespace();
            match (it.next(), it.next().and_then(|v| v.parse::<u64>().ok())) {
                (Some("nr_foll_pin_acquired"), Some(v)) => acq = Some(v),
                (Some("nr_foll_pin_released"), Some(v)) => rel = Some(v),
                _ => {}
            }
        }
        Some((acq?, rel?))
    };
    let (a0, r0) = read(before)?;
    let (a1, r1) = read(after)?;
    Some((a1.saturating_sub(a0), r1.saturating_sub(r0)))
}

/// (i) and (j) on a parsed console.
pub fn check(console: &Console, v: &mut Verdict) {
    let events = json_lines(console, "events");
    check_iopf(console, &events, v);
    check_uacce_ctrl(console, &events, v);
}

fn check_iopf(console: &Console, events: &[Value], v: &mut Verdict) {
    let mut faults = Vec::new();
    for section in ["iopf-a", "iopf-b"] {
        match workload_faults(console, section) {
            Ok(f) => faults.extend(f),
            Err(e) => v.fail(&[section, &format!("{section}.err")], format!("(i) {e}")),
        }
    }
    if faults.is_empty() {
        v.fail(
            &["iopf-a", "iopf-b"],
            "(i) the IOPF workloads reported no faults",
        );
        return;
    }
    let iopfs: Vec<&Value> = events
        .iter()
        .filter(|e| e.get("event").and_then(Value::as_str) == Some("iopf"))
        .collect();
    let mut by_key: BTreeMap<(u64, u64), Vec<&Value>> = BTreeMap::new();
    for e in &iopfs {
        by_key
            .entry((
                u(e, "pasid").unwrap_or(u64::MAX),
                u(e, "grpid").unwrap_or(u64::MAX),
            ))
            .or_default()
            .push(e);
    }
    let mut margins_low = Vec::new();
    let mut margins_high = Vec::new();
    let mut bad = Vec::new();
    for f in &faults {
        let seen = by_key
            .get(&(f.pasid, f.grpid))
            .map_or(&[][..], Vec::as_slice);
        let [e] = seen else {
            bad.push(format!(
                "pasid {} grpid {}: {} records, want 1",
                f.pasid,
                f.grpid,
                seen.len()
            ));
            continue;
        };
        if u(e, "tgid") != Some(f.pid) {
            bad.push(format!(
                "pasid {} grpid {}: owner {:?}, want pid {}",
                f.pasid,
                f.grpid,
                e.get("owner"),
                f.pid
            ));
        }
        if u(e, "perm") != Some(f.perm) || u(e, "addr") != Some(f.addr) {
            bad.push(format!(
                "pasid {} grpid {}: perm/addr {:?}/{:?}, want {}/{:#x}",
                f.pasid,
                f.grpid,
                e.get("perm"),
                e.get("addr"),
                f.perm,
                f.addr
            ));
        }
        match u(e, "latency_ns") {
            Some(lat) if (f.lower_ns..=f.upper_ns).contains(&lat) => {
                margins_low.push(lat - f.lower_ns);
                margins_high.push(f.upper_ns - lat);
            }
            lat => bad.push(format!(
                "pasid {} grpid {}: latency {lat:?} ns outside the guest's bracket [{}, {}]",
                f.pasid, f.grpid, f.lower_ns, f.upper_ns
            )),
        }
    }
    if iopfs.len() != faults.len() {
        bad.push(format!(
            "{} IOPF records for {} faults triggered",
            iopfs.len(),
            faults.len()
        ));
    }
    for b in bad.iter().take(10) {
        v.fail(&["events", "iopf-a", "iopf-b"], format!("(i) {b}"));
    }
    let stopped = console
        .lines("trace.err")
        .iter()
        .find(|l| l.starts_with("uacce-trace: stopped"))
        .cloned()
        .unwrap_or_default();
    if stopped.contains("unanswered") {
        v.fail(
            &["trace.err"],
            format!("(i) pairing entries left: {stopped}"),
        );
    }
    if bad.is_empty() {
        let stat = |m: &[u64]| {
            let mut m = m.to_vec();
            m.sort_unstable();
            (
                m.first().copied().unwrap_or(0),
                m.get(m.len() / 2).copied().unwrap_or(0),
            )
        };
        let (lo_min, lo_med) = stat(&margins_low);
        let (hi_min, hi_med) = stat(&margins_high);
        v.notes.push(format!(
            "IOPF: {} faults from 2 processes, each once, attributed and inside its bracket; \
             latency above read->write by min {lo_min} ns / median {lo_med} ns, below \
             trigger->write-done by min {hi_min} ns / median {hi_med} ns",
            faults.len()
        ));
    }
}

/// `comm` of the fixture's test program.
pub const FIXTURE_COMM: &str = "uacce-ctrl-pin";

fn check_uacce_ctrl(console: &Console, events: &[Value], v: &mut Verdict) {
    let ok = json_lines(console, "uacce-ctrl")
        .iter()
        .any(|l| l.get("uacce_ctrl_pin").and_then(Value::as_str) == Some("ok"));
    if !ok {
        v.fail(
            &["uacce-ctrl", "uacce-ctrl.err"],
            "(j) uacce-ctrl-pin did not end with \"ok\"",
        );
        return;
    }
    let comm = FIXTURE_COMM;
    let of = |kind: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e.get("event").and_then(Value::as_str) == Some(kind))
            .filter(|e| e.get("comm").and_then(Value::as_str) == Some(comm))
            .collect()
    };
    let ioctls = of("pin_ioctl");
    let pins = of("pin");
    let unpins = of("unpin");
    let pinned: u64 = pins.iter().filter_map(|e| u(e, "pinned")).sum();
    let unpinned: u64 = unpins.iter().filter_map(|e| u(e, "nr_pages")).sum();
    let Some((acquired, released)) =
        vmstat_delta(console, "vmstat-uacce-before", "vmstat-uacce-after")
    else {
        v.fail(
            &["vmstat-uacce-before", "vmstat-uacce-after"],
            "(j) vmstat around the fixture unreadable",
        );
        return;
    };
    if (pinned, unpinned) != (acquired, released) {
        v.fail(
            &["events", "vmstat-uacce-before", "vmstat-uacce-after"],
            format!("(j) tool saw {pinned} pinned / {unpinned} unpinned, vmstat +{acquired} / +{released}"),
        );
    }
    if pinned != unpinned {
        v.fail(
            &["events"],
            format!(
                "(j) closing the fd should unpin everything: {pinned} pinned, {unpinned} unpinned"
            ),
        );
    }
    if pins
        .iter()
        .any(|e| e.get("longterm").and_then(Value::as_bool) != Some(true))
    {
        v.fail(&["events"], "(j) a fixture pin was not flagged long-term");
    }
    let ok_pins: Vec<&&Value> = ioctls
        .iter()
        .filter(|e| {
            e.get("cmd").and_then(Value::as_str) == Some("uacce_pin") && u(e, "ret") == Some(0)
        })
        .collect();
    if ok_pins.is_empty() {
        v.fail(&["events"], "(j) no successful UACCE_CMD_PIN ioctl traced");
    }
    for e in &ok_pins {
        let pages = u(e, "size").unwrap_or(0).div_ceil(4096);
        if u(e, "pin_calls") != Some(1) || u(e, "pages") != Some(pages) {
            v.fail(
                &["events"],
                format!("(j) pin ioctl not linked to its pin_user_pages_fast call: {e}"),
            );
        }
    }
    if !pins
        .iter()
        .all(|e| e.get("func").and_then(Value::as_str) == Some("pin_user_pages_fast"))
    {
        v.fail(
            &["events"],
            "(j) the fixture pinned through something else than pin_user_pages_fast",
        );
    }
    v.notes.push(format!(
        "uacce_ctrl: {} ioctls ({} successful pins linked), {pinned} pages pinned / {unpinned} unpinned = vmstat +{acquired} / +{released}",
        ioctls.len(),
        ok_pins.len()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::report::parse;

    fn console(latency: u64, tgid: u64) -> Console {
        let log = format!(
            "@@UT-BOOTED 6.12.117\n\
@@UT-BEGIN iopf-a\n\
{{\"setup\":{{\"pid\":50}}}}\n\
{{\"fault\":0,\"pasid\":1,\"grpid\":1,\"perm\":3,\"addr\":268435456,\"delay_us\":0,\"t_trigger\":1000,\"t_read\":2000,\"t_write_start\":3000,\"t_write_done\":9000,\"match\":true}}\n\
{{\"iopf_workload\":\"ok\",\"faults\":1,\"mismatches\":0}}\n\
@@UT-END iopf-a lines=3 bytes=0\n\
@@UT-BEGIN events\n\
{{\"event\":\"iopf\",\"ts_ns\":1500,\"latency_ns\":{latency},\"tgid\":{tgid},\"comm\":\"iopf-workload\",\"owner\":\"x\",\"device\":\"d\",\"pasid\":1,\"grpid\":1,\"perm\":3,\"flags\":\"0x2\",\"addr\":\"0x10000000\",\"response\":0,\"hook\":\"fentry\"}}\n\
@@UT-END events lines=1 bytes=0\n\
@@UT-DONE\n"
        );
        parse(&log)
    }

    #[test]
    fn bracket_and_owner() {
        let mut v = Verdict::default();
        check_iopf(
            &console(4000, 50),
            &json_lines(&console(4000, 50), "events"),
            &mut v,
        );
        // iopf-b is missing: that alone fails, but nothing about the fault.
        assert!(
            v.failures.iter().all(|f| f.contains("iopf-b")),
            "{:?}",
            v.failures
        );
        let mut v = Verdict::default();
        let c = console(500, 50);
        check_iopf(&c, &json_lines(&c, "events"), &mut v);
        assert!(
            v.failures
                .iter()
                .any(|f| f.contains("outside the guest's bracket")),
            "{:?}",
            v.failures
        );
        let mut v = Verdict::default();
        let c = console(4000, 51);
        check_iopf(&c, &json_lines(&c, "events"), &mut v);
        assert!(
            v.failures.iter().any(|f| f.contains("owner")),
            "{:?}",
            v.failures
        );
    }
}
