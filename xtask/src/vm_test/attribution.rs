//! IOPF attribution and pairing edge cases on the project's test kernel,
//! with faults raised as a real IOMMU raises them: from a kworker (the
//! mock's TRIGGER_IOPF with the perm bit of
//! `xtask/kernel/iommufd-selftest-iopf.patch`), while another process owns
//! the PASID or nobody does. Each mode is one `iopf-workload` run (a second
//! or less under TCG) while the tracer runs, after the other test-kernel
//! workloads; its faults use addresses in [`ADDR_RANGE`], which the other
//! IOPF checks leave to this module.
//!
//! - (n) `attr-a`: kworker faults with the PASID of the holder that took it
//!   before the tracer started: attributed to the holder (start-up scan).
//! - (o) `attr-late`: kworker faults with the PASID of a second holder
//!   started after the tracer: attributed to it, or, where the tool has no
//!   live source for the fixture's PASID (it takes no SVA bind path),
//!   unattributed; never to the workload or the kworker. Which one is a
//!   note.
//! - (p) `attr-b`: kworker faults with a PASID nobody owns: unattributed
//!   (no tgid, no comm), keyed by the mock device's name and the PASID.
//! - (q) `attr-wrap`: 600 faults from the process, group ids modulo 512
//!   (reused after the group closed): each a new group, attributed to the
//!   reporting user task, latency inside its bracket.
//! - (r) `attr-twodev`: two mock devices raise the same PASID and group id
//!   in each round, 3 pages per group (2 without LAST_PAGE), group ids
//!   modulo 3: one record per (device, group) with the first page's address
//!   and the right device, none for later pages.
//! - (s) `attr-noresp`: two groups left unanswered, then the fault fd and
//!   /dev/iommu closed: iommufd answers them with INVALID through
//!   `iopf_group_response()`, so each is one record with response 1 and a
//!   latency inside [close start - read, close done - trigger]; then three
//!   faults with one group id, each with LAST_PAGE, on a device without a
//!   fault handler (the driver's `page_response` op answers them,
//!   `iopf_group_response()` never runs): no record, and three unanswered
//!   groups (a report for a closed key is a new group), counted by the
//!   tool's exit line `IOPF groups unanswered: N (timed out), M pending at
//!   exit` (N + M) or a loss-ledger counter `iopf_unanswered`.
//!
//! Everywhere: no IOPF record is charged to a kworker (comm `kworker/...`)
//! or, for kworker faults, to the process that asked for them.
//!
//! Fields of `uacce-trace trace --json` relied on: IOPF records
//! `{"event":"iopf","tgid":N|null,"comm":S,"device":S,"pasid":N,
//! "grpid":N,"addr":"0x..","latency_ns":N,"response":N}` (and
//! `"nr_faults":N`, checked against the group's pages when present); the
//! stderr line starting `uacce-trace: stopped`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::report::Verdict;
use crate::vm::console::{json_lines, s, u, Console};

/// Fault addresses of this module's modes (the workloads' `--addr`).
pub const ADDR_RANGE: std::ops::Range<u64> = 0x4000_0000..0x5000_0000;

/// Command name of the holder started after the tracer.
pub const LATE_HOLDER_COMM: &str = "late-holder";

/// The modes, in the order the guest runs them: (section, PASID, arguments
/// after the PASID). PASID `holder` or `late`: that holder's (the guest
/// script reads them; see [`modes_param`]).
const MODES: &[(&str, &str, &str)] = &[
    (
        "attr-a",
        "holder",
        "--kworker --count 4 --delays-us 0,200 --grpid 3001 --addr 0x40000000",
    ),
    (
        "attr-late",
        "late",
        "--kworker --count 4 --delays-us 200,0 --grpid 3101 --addr 0x41000000",
    ),
    (
        "attr-b",
        "700",
        "--kworker --count 4 --delays-us 0,200 --grpid 3201 --addr 0x42000000",
    ),
    (
        "attr-wrap",
        "701",
        "--count 600 --delays-us 0 --grpid 300 --grpid-mod 512 --addr 0x43000000",
    ),
    (
        "attr-twodev",
        "702",
        "--kworker --devices 2 --pages 3 --count 8 --grpid 1 --grpid-mod 3 --delays-us 0,200 --addr 0x45000000",
    ),
    (
        "attr-noresp",
        "703",
        "--kworker --count 4 --unanswered 2 --orphans 3 --delays-us 0,200 --grpid 3301 --addr 0x46000000",
    ),
];

/// [`MODES`] as the `ATTR_MODES` parameter of `vm-guest/vm-test.sh`: one
/// `name pasid args...` line each, run while the tracer runs, between the
/// late holder's start and end.
pub fn modes_param() -> String {
    MODES
        .iter()
        .map(|(name, pasid, args)| format!("{name} {pasid} {args}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sections of [`guest_block`]'s files.
pub const SECTIONS: &[(&str, &str)] = &[
    ("late-holder", "/tmp/late-holder.json"),
    ("late-holder.err", "/tmp/late-holder.err"),
    ("attr-a", "/tmp/attr-a.json"),
    ("attr-a.err", "/tmp/attr-a.err"),
    ("attr-late", "/tmp/attr-late.json"),
    ("attr-late.err", "/tmp/attr-late.err"),
    ("attr-b", "/tmp/attr-b.json"),
    ("attr-b.err", "/tmp/attr-b.err"),
    ("attr-wrap", "/tmp/attr-wrap.json"),
    ("attr-wrap.err", "/tmp/attr-wrap.err"),
    ("attr-twodev", "/tmp/attr-twodev.json"),
    ("attr-twodev.err", "/tmp/attr-twodev.err"),
    ("attr-noresp", "/tmp/attr-noresp.json"),
    ("attr-noresp.err", "/tmp/attr-noresp.err"),
];

/// One group as the workload saw it.
#[derive(Debug)]
struct Group {
    dev: u64,
    pasid: u64,
    grpid: u64,
    addr: u64,
    pages: u64,
    lower_ns: u64,
    upper_ns: u64,
    code: u64,
}

/// One workload run.
#[derive(Debug, Default)]
struct Run {
    pid: u64,
    kworker: bool,
    /// Mock device names by `dev` index ("" when sysfs did not say).
    devices: Vec<String>,
    groups: Vec<Group>,
    /// Orphan faults: (device name, pasid, grpid, addr).
    orphans: Vec<(String, u64, u64, u64)>,
}

fn parse_run(console: &Console, section: &str) -> Result<Run, String> {
    let lines = json_lines(console, section);
    let setup = lines
        .iter()
        .find_map(|l| l.get("setup"))
        .ok_or(format!("{section}: no setup line"))?;
    if !lines
        .iter()
        .any(|l| l.get("iopf_workload").and_then(Value::as_str) == Some("ok"))
    {
        return Err(format!("{section}: the workload did not end with \"ok\""));
    }
    let mut run = Run {
        pid: u(setup, "pid").ok_or(format!("{section}: setup without pid"))?,
        kworker: setup.get("kworker").and_then(Value::as_bool) == Some(true),
        devices: setup
            .get("devices")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|d| s(d, "name").to_string()).collect())
            .unwrap_or_default(),
        ..Run::default()
    };
    let orphan_name = setup
        .get("orphan")
        .map(|o| s(o, "name").to_string())
        .unwrap_or_default();
    for l in &lines {
        if l.get("fault").is_some() {
            let get = |k: &str| u(l, k).ok_or(format!("{section}: fault line without {k}: {l}"));
            if l.get("match").and_then(Value::as_bool) != Some(true) {
                return Err(format!("{section}: the fault read back differs: {l}"));
            }
            run.groups.push(Group {
                dev: get("dev")?,
                pasid: get("pasid")?,
                grpid: get("grpid")?,
                addr: get("addr")?,
                pages: get("pages")?,
                lower_ns: get("t_write_start")?.saturating_sub(get("t_read")?),
                upper_ns: get("t_write_done")?.saturating_sub(get("t_trigger")?),
                code: get("code")?,
            });
        } else if l.get("orphan").is_some() {
            let get = |k: &str| u(l, k).ok_or(format!("{section}: orphan line without {k}: {l}"));
            run.orphans.push((
                orphan_name.clone(),
                get("pasid")?,
                get("grpid")?,
                get("addr")?,
            ));
        }
    }
    if run.groups.is_empty() {
        return Err(format!("{section}: no fault lines"));
    }
    Ok(run)
}

/// Who a mode's faults belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Pid(u64),
    Unattributed,
    /// The late holder if a live source names it, else unattributed.
    PidOrUnattributed(u64),
}

fn holder_of(console: &Console, section: &str) -> Option<u64> {
    json_lines(console, section).iter().find_map(|l| {
        (l.get("pasid_holder").and_then(Value::as_str) == Some("ok"))
            .then(|| u(l, "pid"))
            .flatten()
    })
}

/// The count of unanswered IOPF groups the tool reported: the exit line's
/// `N (timed out), M pending at exit` (N + M, 0 when absent; older tools),
/// or the loss ledger of `trace --json`'s final `stopped` line.
fn reported_unanswered(console: &Console) -> (u64, Option<u64>) {
    let stopped = console
        .lines("trace.err")
        .iter()
        .find(|l| l.starts_with("uacce-trace: stopped"))
        .cloned()
        .unwrap_or_default();
    let number_before = |text: &str, what: &str| -> u64 {
        text.find(what)
            .map(|i| {
                text[..i]
                    .trim_end()
                    .rsplit(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    let line_total =
        number_before(&stopped, "(timed out)") + number_before(&stopped, "pending at exit");
    // The loss ledger of `trace --json`'s last line: a group is
    // unanswered when it timed out, was superseded by a new group of its
    // key (its response never seen), or still waited at stop.
    let ledger = console
        .lines("events")
        .iter()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("event").and_then(|e| e.as_str()) == Some("stopped"))
        .map(|v| {
            ["iopf_unanswered", "iopf_superseded", "iopf_pending_at_exit"]
                .iter()
                .filter_map(|r| {
                    v.get("losses")
                        .and_then(|l| l.get(*r))
                        .and_then(|n| n.as_u64())
                })
                .sum::<u64>()
        });
    (line_total, ledger)
}

/// (n) to (s) on a parsed console.
pub fn check(console: &Console, v: &mut Verdict) {
    let events: Vec<Value> = json_lines(console, "events");
    let iopfs: Vec<&Value> = events.iter().filter(|e| s(e, "event") == "iopf").collect();
    // Nothing charged to a kworker, anywhere.
    let kworker: Vec<&&Value> = iopfs
        .iter()
        .filter(|e| s(e, "comm").starts_with("kworker"))
        .collect();
    if let Some(e) = kworker.first() {
        v.fail(
            &["events"],
            format!(
                "(n) {} IOPF records charged to a kworker, e.g. {e}",
                kworker.len()
            ),
        );
    }
    let mut by_addr: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for e in &iopfs {
        if let Some(a) = u(e, "addr").filter(|a| ADDR_RANGE.contains(a)) {
            by_addr.entry(a).or_default().push(e);
        }
    }
    let holder = holder_of(console, "pasid-holder");
    let late = holder_of(console, "late-holder");
    let mut expected_unanswered = 0u64;
    let mut used_addrs = BTreeSet::new();
    let mut late_outcome = None;
    for (section, _, _) in MODES {
        let sections = ["events", section, &format!("{section}.err")];
        let run = match parse_run(console, section) {
            Ok(r) => r,
            Err(e) => {
                v.fail(&sections, format!("(n-s) {e}"));
                continue;
            }
        };
        let owner = match *section {
            "attr-a" => match holder {
                Some(p) => Owner::Pid(p),
                None => {
                    v.fail(
                        &["pasid-holder"],
                        "(n) the PASID holder did not report its PASID",
                    );
                    continue;
                }
            },
            "attr-late" => match late {
                Some(p) => Owner::PidOrUnattributed(p),
                None => {
                    v.fail(
                        &["late-holder", "late-holder.err"],
                        "(o) the late holder did not report its PASID",
                    );
                    continue;
                }
            },
            "attr-wrap" => Owner::Pid(run.pid),
            _ => Owner::Unattributed,
        };
        let mut bad = Vec::new();
        // Device names by `dev` index: from sysfs, else learnt (and then
        // required to be consistent and distinct).
        let mut learnt: BTreeMap<u64, String> = BTreeMap::new();
        let mut attributed = 0usize;
        let mut unattributed = 0usize;
        for g in &run.groups {
            used_addrs.insert(g.addr);
            let seen = by_addr.get(&g.addr).map_or(&[][..], Vec::as_slice);
            let [e] = seen else {
                bad.push(format!(
                    "dev {} pasid {} grpid {} addr {:#x}: {} records, want 1",
                    g.dev,
                    g.pasid,
                    g.grpid,
                    g.addr,
                    seen.len()
                ));
                continue;
            };
            // Later pages of a multi-page group fold into the first.
            for j in 1..g.pages {
                let a = g.addr + j * 4096;
                used_addrs.insert(a);
                if by_addr.contains_key(&a) {
                    bad.push(format!(
                        "page {j} of group {} on dev {} (addr {a:#x}) has a record of its own",
                        g.grpid, g.dev
                    ));
                }
            }
            if u(e, "pasid") != Some(g.pasid) || u(e, "grpid") != Some(g.grpid) {
                bad.push(format!(
                    "addr {:#x}: pasid/grpid {:?}/{:?}, want {}/{}",
                    g.addr,
                    e.get("pasid"),
                    e.get("grpid"),
                    g.pasid,
                    g.grpid
                ));
            }
            let device = s(e, "device");
            let want_dev = run
                .devices
                .get(usize::try_from(g.dev).unwrap_or(usize::MAX))
                .filter(|n| !n.is_empty());
            match want_dev {
                Some(want) if device != want => bad.push(format!(
                    "addr {:#x}: device {device:?}, want {want:?}",
                    g.addr
                )),
                Some(_) => {}
                None => {
                    let name = learnt.entry(g.dev).or_insert_with(|| device.to_string());
                    if name != device || device.is_empty() {
                        bad.push(format!(
                            "addr {:#x}: device {device:?}, dev {} was {name:?} before",
                            g.addr, g.dev
                        ));
                    }
                }
            }
            if let Some(n) = u(e, "nr_faults").filter(|n| *n != g.pages) {
                bad.push(format!(
                    "addr {:#x}: nr_faults {n}, want the group's {} pages",
                    g.addr, g.pages
                ));
            }
            if u(e, "response") != Some(g.code) {
                bad.push(format!(
                    "addr {:#x}: response {:?}, want {}",
                    g.addr,
                    e.get("response"),
                    g.code
                ));
            }
            match u(e, "latency_ns") {
                Some(lat) if (g.lower_ns..=g.upper_ns).contains(&lat) => {}
                lat => bad.push(format!(
                    "addr {:#x}: latency {lat:?} ns outside the guest's bracket [{}, {}]",
                    g.addr, g.lower_ns, g.upper_ns
                )),
            }
            let tgid = u(e, "tgid");
            if run.kworker && tgid == Some(run.pid) {
                bad.push(format!(
                    "addr {:#x}: a kworker's fault charged to pid {}, which only asked for it",
                    g.addr, run.pid
                ));
            }
            match (owner, tgid) {
                (Owner::Pid(p), Some(t)) | (Owner::PidOrUnattributed(p), Some(t)) if t == p => {
                    attributed += 1;
                }
                (Owner::Unattributed, None) | (Owner::PidOrUnattributed(_), None) => {
                    unattributed += 1;
                    if !s(e, "comm").is_empty() || device.is_empty() {
                        bad.push(format!(
                            "addr {:#x}: unattributed, but comm {:?} / device {device:?} \
                             (want no comm, the device and the PASID)",
                            g.addr,
                            s(e, "comm")
                        ));
                    }
                }
                (want, got) => bad.push(format!(
                    "addr {:#x}: owner tgid {got:?} ({}), want {want:?}",
                    g.addr,
                    s(e, "owner")
                )),
            }
        }
        let names: BTreeSet<&String> = learnt.values().collect();
        if names.len() < learnt.len() {
            bad.push(format!("two mock devices under one name: {learnt:?}"));
        }
        for (device, pasid, grpid, addr) in &run.orphans {
            used_addrs.insert(*addr);
            if let Some(e) = by_addr.get(addr) {
                bad.push(format!(
                    "orphan fault {addr:#x} (device {device:?} pasid {pasid} grpid {grpid}, \
                     answered by the driver's page_response op) has a record: {e:?}"
                ));
            }
            expected_unanswered += 1;
        }
        let tag = match *section {
            "attr-a" => "(n)",
            "attr-late" => "(o)",
            "attr-b" => "(p)",
            "attr-wrap" => "(q)",
            "attr-twodev" => "(r)",
            _ => "(s)",
        };
        for b in bad.iter().take(8) {
            v.fail(&sections, format!("{tag} {section}: {b}"));
        }
        if bad.len() > 8 {
            v.fail(
                &sections,
                format!("{tag} {section}: {} more problems", bad.len() - 8),
            );
        }
        if *section == "attr-late" {
            late_outcome = Some((attributed, unattributed));
        }
        if bad.is_empty() {
            v.notes.push(format!(
                "{tag} {section}: {} groups ({} attributed, {} unattributed, owner {owner:?}, {}), \
                 each once with its device and a latency inside its bracket{}",
                run.groups.len(),
                attributed,
                unattributed,
                if run.kworker {
                    "reported by a kworker"
                } else {
                    "reported by the process"
                },
                if run.orphans.is_empty() {
                    String::new()
                } else {
                    format!("; {} orphan faults without a record", run.orphans.len())
                }
            ));
        }
    }
    match late_outcome {
        Some((a, 0)) if a > 0 => v
            .notes
            .push("(o) a PASID taken after the tracer started was attributed live".into()),
        Some((0, n)) if n > 0 => v.notes.push(
            "(o) a PASID taken after the tracer started (fixture, no SVA bind) stays \
             unattributed: no live attribution source fires for it"
                .into(),
        ),
        _ => {}
    }
    // Records in this module's range that no mode raised.
    let strays: Vec<u64> = by_addr
        .keys()
        .filter(|a| !used_addrs.contains(a))
        .copied()
        .collect();
    if !strays.is_empty() {
        v.fail(
            &["events"],
            format!(
                "(n-s) {} IOPF records at addresses no mode raised: {:x?}",
                strays.len(),
                &strays[..strays.len().min(8)]
            ),
        );
    }
    let (line, ledger) = reported_unanswered(console);
    if line == expected_unanswered || ledger == Some(expected_unanswered) {
        v.notes.push(format!(
            "(s) unanswered IOPF groups: {expected_unanswered} expected, exit line {line}, \
             ledger iopf_unanswered {ledger:?}"
        ));
    } else {
        v.fail(
            &["trace.err", "attr-noresp"],
            format!(
                "(s) unanswered IOPF groups: {expected_unanswered} expected (orphan faults, \
                 each a group of its own), the tool's exit line says {line}, \
                 ledger iopf_unanswered {ledger:?}"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::console::parse;

    fn section(name: &str, lines: &[String]) -> String {
        let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
        format!(
            "@@UT-BEGIN {name}\n{}@@UT-END {name} lines={} bytes={bytes}\n",
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
            lines.len()
        )
    }

    /// A console where each mode raised one group at its base address
    /// (attr-noresp: plus one orphan), and the tool recorded `records`.
    fn console(records: &[String], stopped: &str) -> Console {
        let mut log = String::from("@@UT-BOOTED 6.12.117\n");
        log += &section(
            "pasid-holder",
            &[r#"{"pasid_holder":"ok","pid":48,"pasid":1}"#.into()],
        );
        log += &section(
            "late-holder",
            &[r#"{"pasid_holder":"ok","pid":49,"pasid":2}"#.into()],
        );
        for (i, (name, _, _)) in MODES.iter().enumerate() {
            let addr = 0x4000_0000u64 + (i as u64) * 0x100_0000;
            let kworker = *name != "attr-wrap";
            let mut lines = vec![
                format!(
                    r#"{{"setup":{{"pid":{},"kworker":{kworker},"devices":[{{"idev":2,"name":"iommufd_mock{i}"}}],"orphan":{{"idev":3,"name":"iommufd_mock9"}}}}}}"#,
                    60 + i
                ),
                format!(
                    r#"{{"fault":0,"dev":0,"pasid":{},"grpid":5,"addr":{addr},"pages":1,"t_trigger":1000,"t_read":2000,"t_write_start":3000,"t_write_done":9000,"code":0,"match":true}}"#,
                    700 + i
                ),
            ];
            if *name == "attr-noresp" {
                lines.push(format!(
                    r#"{{"orphan":0,"pasid":703,"grpid":7,"addr":{}}}"#,
                    addr + 0x10000
                ));
            }
            lines.push(r#"{"iopf_workload":"ok"}"#.into());
            log += &section(name, &lines);
        }
        log += &section("trace.err", &[stopped.to_string()]);
        log += &section("events", records);
        parse(&(log + "@@UT-DONE\n"))
    }

    fn record(i: usize, tgid: Option<u64>, latency: u64) -> String {
        let addr = 0x4000_0000u64 + (i as u64) * 0x100_0000;
        let tgid = tgid.map_or("null".to_string(), |t| t.to_string());
        let comm = if tgid == "null" { "" } else { "x" };
        format!(
            r#"{{"event":"iopf","tgid":{tgid},"comm":"{comm}","device":"iommufd_mock{i}","pasid":{},"grpid":5,"addr":"{addr:#x}","latency_ns":{latency},"response":0}}"#,
            700 + i
        )
    }

    fn good() -> Vec<String> {
        vec![
            record(0, Some(48), 4000),
            record(1, None, 4000),
            record(2, None, 4000),
            record(3, Some(63), 4000),
            record(4, None, 4000),
            record(5, None, 4000),
        ]
    }

    const ONE_PENDING: &str =
        "uacce-trace: stopped: 7 events, 0 dropped; IOPF groups unanswered: 0 (timed out), 1 pending at exit";

    #[test]
    fn all_modes_pass() {
        let c = console(&good(), ONE_PENDING);
        let mut v = Verdict::default();
        check(&c, &mut v);
        assert!(v.failures.is_empty(), "{:?}", v.failures);
        assert!(v.notes.iter().any(|n| n.contains("stays unattributed")));
    }

    #[test]
    fn wrong_owner_latency_device_and_counts_fail() {
        // attr-b charged to the workload (pid 62); attr-wrap's latency
        // outside; attr-twodev on another device; no unanswered counted.
        let mut records = good();
        records[2] = record(2, Some(62), 4000);
        records[3] = record(3, Some(63), 500);
        records[4] = records[4].replace("iommufd_mock4", "iommufd_mock0");
        records.push(
            r#"{"event":"iopf","tgid":null,"comm":"kworker/u4:1","device":"d","pasid":1,"grpid":1,"addr":"0x4f000000","latency_ns":1,"response":0}"#
                .into(),
        );
        let c = console(&records, "uacce-trace: stopped: 7 events, 0 dropped");
        let mut v = Verdict::default();
        check(&c, &mut v);
        let all = v.failures.join("\n");
        for want in [
            "(p) attr-b",
            "charged to pid 62",
            "(q) attr-wrap: addr 0x43000000: latency",
            "(r) attr-twodev: addr 0x44000000: device",
            "charged to a kworker",
            "no mode raised",
            "(s) unanswered IOPF groups: 1 expected",
        ] {
            assert!(all.contains(want), "{want}: {all}");
        }
    }

    #[test]
    fn ledger_counter_is_accepted() {
        let mut records = good();
        records.push(
            r#"{"event":"stopped","events":7,"dropped":3,"losses":{"iopf_superseded":2,"iopf_pending_at_exit":1}}"#
                .into(),
        );
        let c = console(&records, "uacce-trace: stopped: 7 events, 3 dropped");
        assert_eq!(reported_unanswered(&c), (0, Some(3)));
        let c = console(&good(), ONE_PENDING);
        assert_eq!(reported_unanswered(&c), (1, None));
    }

    #[test]
    fn modes_are_one_line_each() {
        let p = modes_param();
        assert_eq!(p.lines().count(), MODES.len());
        assert!(p.contains("\nattr-b 700 --kworker "));
        assert!(p.starts_with("attr-a holder --kworker "));
    }
}
