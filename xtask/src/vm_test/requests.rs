//! Requests (`uacce-trace --op`, issue 16) on the project's test kernel:
//! after the main tracer stopped, a tracer of its own probes the request
//! function of `iopf-workload --requests N` (`iopf_request`, a uprobe and a
//! uretprobe on a static guest binary), whose request `i` raises `i % 3`
//! mock IO page faults through the kernel's real IOPF path and logs its own
//! CLOCK_MONOTONIC brackets (around the call and inside it).
//!
//! - (t) every request is traced exactly once (matched by its id, the
//!   function's return value; no other request of the workload), with the
//!   workload's pid;
//! - (u) its entry lies inside the outer bracket and its latency between
//!   the inner and the outer one;
//! - (v) its "had a fault" flag (`faults > 0`) equals the program's, and
//!   its fault count is the program's: the join of requests and IOPFs;
//! - (w) no request lost (`request_return_missed`, `ring_full_request`,
//!   `exit_without_entry`, `request_thread_exited` all 0).
//!
//! Fields relied on: the workload's `{"request":i,"faults":F,"t_enter":ns,
//! "t_exit":ns,"inner_start":ns,"inner_end":ns}` and `{"setup":{"pid":N}}`,
//! and `trace --json`'s `{"event":"request","op":S,"ts_ns":N,
//! "latency_ns":N,"tgid":N,"ret":N,"faults":N}` and final `stopped` line.

use std::collections::BTreeMap;

use serde_json::Value;

use super::report::Verdict;
use crate::vm::console::{json_lines, s, u, Console};

/// The workload's arguments: 30 requests (10 without faults, 10 with one,
/// 10 with two), each fault answered 200 µs after it was read; addresses
/// of their own.
pub const REQ_ARGS: &str =
    "--requests 30 --delays-us 200 --pasid 259 --grpid 3001 --addr 0x60000000";
/// Requests the workload makes.
const REQUESTS: u64 = 30;
/// The probed symbol.
pub const SYMBOL: &str = "iopf_request";

/// The sections this module reads.
pub const SECTIONS: &[(&str, &str)] = &[
    ("requests", "/tmp/requests.json"),
    ("requests.err", "/tmp/requests.err"),
    ("req-events", "/tmp/req-events.ndjson"),
    ("req-trace.err", "/tmp/req-trace.err"),
];

const ALL: [&str; 4] = ["requests", "requests.err", "req-events", "req-trace.err"];

pub fn check(console: &Console, v: &mut Verdict) {
    let logged: Vec<Value> = json_lines(console, "requests");
    let pid = logged
        .iter()
        .find_map(|l| l.get("setup").and_then(|s| u(s, "pid")));
    let requests: Vec<&Value> = logged
        .iter()
        .filter(|l| l.get("request").is_some())
        .collect();
    if requests.len() as u64 != REQUESTS || pid.is_none() {
        v.fail(
            &ALL,
            format!(
                "(t) the request workload logged {} requests (want {REQUESTS}) and pid {pid:?}",
                requests.len()
            ),
        );
        return;
    }
    let events = json_lines(console, "req-events");
    let mut traced: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for e in events.iter().filter(|e| s(e, "event") == "request") {
        if u(e, "tgid") != pid || s(e, "op") != SYMBOL {
            v.fail(&ALL, format!("(t) a request of something else: {e}"));
            continue;
        }
        traced
            .entry(u(e, "ret").unwrap_or(u64::MAX))
            .or_default()
            .push(e);
    }
    let mut faulted = 0;
    let mut bad = 0;
    for l in &requests {
        let id = u(l, "request").unwrap_or(u64::MAX);
        let got = traced.remove(&id).unwrap_or_default();
        let [e] = got.as_slice() else {
            v.fail(&ALL, format!("(t) request {id} traced {} times", got.len()));
            bad += 1;
            continue;
        };
        let (ts, lat) = (u(e, "ts_ns").unwrap_or(0), u(e, "latency_ns").unwrap_or(0));
        let (t0, t1) = (u(l, "t_enter").unwrap_or(0), u(l, "t_exit").unwrap_or(0));
        let (i0, i1) = (
            u(l, "inner_start").unwrap_or(0),
            u(l, "inner_end").unwrap_or(0),
        );
        if ts < t0 || ts > i0 || ts + lat > t1 || lat < i1.saturating_sub(i0) {
            v.fail(
                &ALL,
                format!(
                    "(u) request {id}: traced [{ts}, {}] not between the inner bracket [{i0}, {i1}] and the outer one [{t0}, {t1}]",
                    ts + lat
                ),
            );
            bad += 1;
        }
        let want = u(l, "faults").unwrap_or(0);
        let got_faults = u(e, "faults").unwrap_or(0);
        if (want > 0) != (got_faults > 0) || want != got_faults {
            v.fail(
                &ALL,
                format!("(v) request {id}: {got_faults} faults traced inside, the program raised {want}"),
            );
            bad += 1;
        }
        faulted += u64::from(want > 0);
    }
    if !traced.is_empty() {
        v.fail(
            &ALL,
            format!(
                "(t) requests traced that the workload did not make: {:?}",
                traced.keys()
            ),
        );
    }
    let stopped = events
        .iter()
        .rev()
        .find(|e| s(e, "event") == "stopped")
        .and_then(|e| e.get("losses"));
    match stopped {
        None => v.fail(&ALL, "(w) no final `stopped` line with a loss ledger"),
        Some(losses) => {
            for reason in [
                "request_return_missed",
                "ring_full_request",
                "exit_without_entry",
                "request_thread_exited",
            ] {
                if u(losses, reason).unwrap_or(0) != 0 {
                    v.fail(&ALL, format!("(w) requests lost: {reason} in {losses}"));
                }
            }
        }
    }
    if bad == 0 {
        v.notes.push(format!(
            "(t-w) {REQUESTS} requests traced once each through uprobes, inside their brackets; \
             {faulted} with mock IOPFs inside, flags and counts equal to the program's"
        ));
    }
}
