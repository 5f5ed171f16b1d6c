//! `serve --labels` and `--max-series` through the binary (no root): a
//! recording made here with the raw writer (two processes named `zip`,
//! one `cat`) is replayed and scraped; dropping `pid` must merge the two
//! `zip` processes exactly (counts and every `le` bucket summed), and a cap
//! of one label set per family must fold the rest into `[other]` series,
//! counted by `uacce_trace_series_folded_total` and warned about.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::serve::{start, Serve};

use uacce_trace::{
    ingest::event::{Event, HookType, IopfEvent, PinEvent},
    ingest::rawfile::RawWriter,
    ingest::run::RunMeta,
};
use uacce_trace_common::PinFunc;

const START: u64 = 7_000_000_000_000;
const DEV: &str = "0000:6a:00.0";

/// pids 11 and 12 are `zip` (20 and 30 IOPFs), 13 is `cat` (5 IOPFs on
/// another device); each pins once.
fn events() -> Vec<Event> {
    let mut v = Vec::new();
    let mut t = START;
    for (pid, comm, dev, n) in [
        (11u32, "zip", DEV, 20u64),
        (12, "zip", DEV, 30),
        (13, "cat", "0000:6b:00.0", 5),
    ] {
        for i in 0..n {
            t += 1_000;
            v.push(Event::Iopf(IopfEvent {
                ts_ns: t,
                latency_ns: 1_500 * u64::from(pid - 10) + i * 4_001,
                tgid: Some(pid),
                comm: comm.into(),
                device: dev.into(),
                pasid: pid,
                grpid: i as u32,
                perm: 3,
                flags: 1,
                addr: 0x7f00_0000_0000 + i * 4096,
                response: 0,
                hook: HookType::Kprobe,
            }));
        }
        t += 1_000;
        v.push(Event::Pin(PinEvent {
            ts_ns: t,
            latency_ns: 2_000,
            tgid: pid,
            tid: pid,
            comm: comm.into(),
            func: PinFunc::PinUserPagesFast,
            hook: HookType::Kprobe,
            start: 0x7e00_0000_0000,
            nr_pages: u64::from(pid),
            ret: i64::from(pid),
            gup_flags: 0,
            longterm: false,
        }));
    }
    v
}

fn write_recording(path: &Path) {
    let header = RunMeta {
        start_unix_ns: 1_700_000_000_000_000_000,
        start_mono_ns: START,
        kernel: "6.12.0-labels-test".into(),
        plan: "iopf: kprobe".into(),
        command: String::new(),
    };
    let file = std::fs::File::create(path).expect("create recording");
    let mut w = RawWriter::new(std::io::BufWriter::new(file), &header).expect("header");
    for e in &events() {
        w.write_event(e).expect("write event");
    }
    w.finish().expect("finish").flush().expect("flush");
}

fn scrape(addr: &str) -> String {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").expect("send");
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The body once the whole recording is in.
fn complete(s: &Serve) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = scrape(&s.addr);
        if body.contains("\nuacce_trace_replay_complete 1\n") {
            return body;
        }
        assert!(Instant::now() < deadline, "replay never completed:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn value(body: &str, series: &str) -> u64 {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
}

/// `le` → cumulative count of `family_bucket` lines whose labels start
/// with `labels`.
fn buckets(body: &str, family: &str, labels: &str) -> Vec<(String, u64)> {
    let prefix = format!("{family}_bucket{{{labels},le=\"");
    body.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, tail) = rest.split_once('"')?;
            Some((le.to_string(), tail.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn dropping_pid_merges_the_processes_of_a_command() {
    let dir = common::scratch("serve-labels");
    let rec = dir.join("labels.utrace");
    write_recording(&rec);
    let by_pid = complete(&start(&rec, &[]));
    let by_comm = complete(&start(&rec, &["--labels", "comm,device"]));
    let fam = "uacce_trace_iopf_latency_seconds";
    let zip = |pid: u32| {
        buckets(
            &by_pid,
            fam,
            &format!("pid=\"{pid}\",comm=\"zip\",device=\"{DEV}\""),
        )
    };
    let merged = buckets(&by_comm, fam, &format!("comm=\"zip\",device=\"{DEV}\""));
    assert_eq!(merged.len(), 23, "22 finite buckets and +Inf: {merged:?}");
    for ((m, a), b) in merged.iter().zip(zip(11)).zip(zip(12)) {
        assert_eq!(m.0, a.0);
        assert_eq!(m.1, a.1 + b.1, "le={}", m.0);
    }
    assert_eq!(
        value(
            &by_comm,
            &format!("{fam}_count{{comm=\"zip\",device=\"{DEV}\"}}")
        ),
        50
    );
    assert_eq!(
        value(&by_comm, r#"uacce_trace_pin_pages_total{comm="zip"}"#),
        11 + 12
    );
    assert_eq!(
        value(&by_comm, r#"uacce_trace_pinned_pages{comm="cat"}"#),
        13
    );
    assert!(!by_comm.contains("pid=\""), "{by_comm}");
    // The default keeps what serve always exported.
    assert_eq!(
        value(
            &by_pid,
            &format!("{fam}_count{{pid=\"12\",comm=\"zip\",device=\"{DEV}\"}}")
        ),
        30
    );
    assert_eq!(value(&by_pid, "uacce_trace_series_folded_total"), 0);
    // In a replay the cgroup label is known for no process.
    let by_cgroup = complete(&start(&rec, &["--labels", "cgroup"]));
    assert_eq!(
        value(&by_cgroup, &format!("{fam}_count{{cgroup=\"\"}}")),
        55
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_family_folds_new_label_sets_into_other() {
    let dir = common::scratch("serve-max-series");
    let rec = dir.join("labels.utrace");
    write_recording(&rec);
    let s = start(&rec, &["--max-series", "1", "--labels", "pid,comm"]);
    let body = complete(&s);
    let fam = "uacce_trace_iopf_latency_seconds";
    assert_eq!(
        value(&body, &format!("{fam}_count{{pid=\"11\",comm=\"zip\"}}")),
        20
    );
    assert_eq!(
        value(
            &body,
            &format!("{fam}_count{{pid=\"[other]\",comm=\"[other]\"}}")
        ),
        35
    );
    assert_eq!(
        value(
            &body,
            r#"uacce_trace_pin_pages_total{pid="[other]",comm="[other]"}"#
        ),
        25
    );
    assert!(!body.contains(r#"pid="12""#), "{body}");
    let folded = value(&body, "uacce_trace_series_folded_total");
    assert!(folded >= 2, "{body}");
    // A later scrape folds nothing new.
    assert_eq!(
        value(&scrape(&s.addr), "uacce_trace_series_folded_total"),
        folded
    );
    let warned = std::iter::from_fn(|| s.err.recv_timeout(Duration::from_secs(5)).ok())
        .find(|l| l.contains("folded"))
        .expect("a warning on standard error");
    assert!(
        warned.contains("folded into [other]") && warned.contains("--max-series 1"),
        "{warned}"
    );
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_labels_are_a_usage_error() {
    for (args, says) in [
        (
            &["--labels", "pid,container"][..],
            "choose among pid, comm, device, cgroup",
        ),
        (&["--labels", "pid,pid"][..], "given twice"),
        (&["--max-series", "0"][..], "--max-series"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_uacce-trace"))
            .args(["serve", "--replay", "x.utrace"])
            .args(args)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
