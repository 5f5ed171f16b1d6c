//! `uacce-trace top` end to end: the real binary in a tmux pane (80x24) on
//! raw recordings written here from synthetic events (one with requests,
//! `--op`, and uacce_ctrl pin ioctls), and on the demo
//! recording shipped in `tests/data/demo.utrace` (made in the demo VM). It starts, shows the
//! expected processes, sorts and filters on keys, drills down (and through
//! its sections with Tab), quits on `q`
//! with exit status 0, and the terminal is restored (alternate screen left,
//! the shell prompt back). Skips, saying why, when tmux is not installed
//! (a failure under `CI=true`: `cargo xtask setup` installs it).
//! No root needed.

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use uacce_trace::{
    ingest::event::{
        Event, HookType, IopfEvent, LossSample, PasidEvent, PinEvent, PinIoctl, PinIoctlEvent,
        RequestEvent,
    },
    ingest::rawfile::RawWriter,
    ingest::run::RunMeta,
};
use uacce_trace_common::PinFunc;

const SEC: u64 = 1_000_000_000;
const START: u64 = 5_000 * SEC;
const PROMPT: &str = "e2e$ ";

fn iopf(ts: u64, tgid: u32, comm: &str, dev: &str, pasid: u32, addr: u64, lat: u64) -> Event {
    Event::Iopf(IopfEvent {
        ts_ns: ts,
        latency_ns: lat,
        tgid: Some(tgid),
        comm: comm.into(),
        device: dev.into(),
        pasid,
        grpid: 0,
        perm: 2,
        flags: 0,
        addr,
        response: 0,
        hook: HookType::Fentry,
    })
}

fn pin(ts: u64, tgid: u32, comm: &str, start: u64, pages: i64) -> Event {
    Event::Pin(PinEvent {
        ts_ns: ts,
        latency_ns: 3_000 + (ts % 5_000),
        tgid,
        tid: tgid,
        comm: comm.into(),
        func: PinFunc::PinUserPagesFast,
        hook: HookType::Fentry,
        start,
        nr_pages: pages.unsigned_abs(),
        ret: pages,
        gup_flags: 0,
        longterm: true,
    })
}

/// Four processes over three seconds: `fio` faults most, `zip_test`
/// faults on two devices, `qemu-kvm` a little, `ioring` only pins (the
/// most pages).
fn recording(path: &Path) {
    let mut evs = Vec::new();
    let procs: [(u32, &str, &str, u32, u64, u64); 4] = [
        (1234, "fio", "0000:00:02.0", 3, 300, 20_000),
        (2002, "zip_test", "0000:00:02.0", 7, 120, 8_000),
        (2002, "zip_test", "0000:00:03.0", 8, 40, 9_000),
        (2001, "qemu-kvm", "0000:00:03.0", 5, 20, 60_000),
    ];
    for &(tgid, comm, dev, pasid, per_s, lat) in &procs {
        evs.push(Event::Pasid(PasidEvent {
            ts_ns: START + 1,
            tgid,
            comm: comm.into(),
            pasid,
            bound: true,
            hook: HookType::Kprobe,
        }));
        for s in 0..3u64 {
            for i in 0..per_s {
                let ts = START + s * SEC + 10 + i * (SEC / per_s);
                let addr = 0x7f00_0000_0000 + u64::from(tgid) * 0x1000_0000 + (i % 50) * 4096;
                evs.push(iopf(ts, tgid, comm, dev, pasid, addr, lat + (i * 37) % lat));
            }
        }
    }
    for s in 0..3u64 {
        for i in 0..8u64 {
            let ts = START + s * SEC + 1_000 + i;
            evs.push(pin(
                ts,
                4000,
                "ioring",
                0x6000_0000 + (s * 8 + i) * 0x10_0000,
                256,
            ));
        }
        evs.push(pin(
            START + s * SEC + 2_000,
            1234,
            "fio",
            0x5000_0000 + s * 0x10_000,
            4,
        ));
    }
    evs.push(Event::Loss(LossSample {
        ts_ns: START + 2 * SEC,
        losses: Default::default(),
    }));
    write_recording(path, evs);
}

fn write_recording(path: &Path, mut evs: Vec<Event>) {
    evs.sort_by_key(Event::ts_ns);
    let header = RunMeta {
        start_unix_ns: 1_700_000_000 * SEC,
        start_mono_ns: START,
        kernel: "6.12.0-e2e".into(),
        plan: "pin: fentry · unpin: fentry · iopf: fentry".into(),
        command: String::new(),
    };
    let file = fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut w =
        RawWriter::new(std::io::BufWriter::new(file), &header).unwrap_or_else(|e| panic!("{e}"));
    for e in &evs {
        w.write_event(e).unwrap_or_else(|e| panic!("{e}"));
    }
    w.finish().unwrap_or_else(|e| panic!("{e}"));
}

/// Requests and pin ioctls over three seconds: `infer` (3001) makes 200
/// `infer_request`s a second, one in twenty with an IO page fault inside
/// (slow, 1-2 ms; the rest 50-100 µs); `pinner` (3002) makes 100 PIN and
/// 100 UNPIN ioctls a second on `/dev/uacce_ctrl`, 16 pages each, every
/// tenth PIN failing.
fn request_recording(path: &Path) {
    let mut evs = Vec::new();
    for s in 0..3u64 {
        for i in 0..200u64 {
            let ts = START + s * SEC + 10 + i * (SEC / 200);
            let faulted = i % 20 == 7;
            if faulted {
                evs.push(iopf(
                    ts + 50_000,
                    3001,
                    "infer",
                    "0000:00:02.0",
                    4,
                    0x7f00_0000 + i * 4096,
                    600_000,
                ));
            }
            evs.push(Event::Request(RequestEvent {
                ts_ns: ts,
                latency_ns: if faulted {
                    1_000_000 + i * 4_000
                } else {
                    50_000 + (i * 250) % 50_000
                },
                tgid: 3001,
                tid: 3001,
                comm: "infer".into(),
                op: "infer_request".into(),
                ret: 0,
                faults: u32::from(faulted),
                fault_ns: if faulted { 600_000 } else { 0 },
            }));
        }
        for i in 0..100u64 {
            let ts = START + s * SEC + 20 + i * (SEC / 100);
            for (cmd, ret, at) in [
                (PinIoctl::UaccePin, if i % 10 == 3 { -12 } else { 0 }, ts),
                (PinIoctl::UacceUnpin, 0, ts + 5_000),
            ] {
                evs.push(Event::PinIoctl(PinIoctlEvent {
                    ts_ns: at,
                    latency_ns: 8_000 + (i * 97) % 20_000,
                    tgid: 3002,
                    tid: 3002,
                    comm: "pinner".into(),
                    cmd,
                    addr: 0x6000_0000,
                    size: 16 * 4096,
                    ret,
                    hook: HookType::Tracepoint,
                    pin_calls: u32::from(ret == 0),
                    pages: if ret == 0 { 16 } else { 0 },
                    driver_call: None,
                }));
            }
        }
    }
    write_recording(path, evs);
}

/// True, after saying the test is skipped, where tmux is not installed.
fn tmux_missing() -> bool {
    match Command::new("tmux").arg("-V").output() {
        Ok(_) => false,
        Err(e) => {
            common::skip(
                common::Lack::Setup,
                &format!("tmux cannot run ({e}); `cargo xtask setup` installs it"),
            );
            true
        }
    }
}

/// A tmux server of our own (its own socket, no user config), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running tmux: {e}"))
    }

    fn start(socket: String, shell_cmd: &str) -> Tmux {
        let t = Tmux { socket };
        let o = t.cmd(&[
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            "80",
            "-y",
            "24",
            shell_cmd,
        ]);
        assert!(o.status.success(), "tmux new-session: {o:?}");
        t
    }

    /// A bash with no user config and a known prompt in a fresh server
    /// (socket `uacce-trace-e2e-<name>-<pid>`), once the prompt shows.
    fn clean_shell(name: &str) -> Tmux {
        let shell = format!(
            "env -i PATH=/usr/bin:/bin TERM=xterm-256color PS1='{PROMPT}' HOME=/tmp \
             bash --norc --noprofile -i"
        );
        let tmux = Tmux::start(
            format!("uacce-trace-e2e-{name}-{}", std::process::id()),
            &shell,
        );
        tmux.wait_for("the shell prompt", |s| s.contains(PROMPT.trim_end()));
        tmux
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let o = self.cmd(&["send-keys", "-t", "e2e", k]);
            assert!(o.status.success(), "send-keys {k}: {o:?}");
            // One key at a time, as a person would: the app sees each.
            thread::sleep(Duration::from_millis(60));
        }
    }

    fn text(&self, text: &str) {
        let o = self.cmd(&["send-keys", "-t", "e2e", "-l", text]);
        assert!(o.status.success(), "send-keys -l: {o:?}");
    }

    fn capture(&self) -> String {
        let o = self.cmd(&["capture-pane", "-p", "-t", "e2e"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn alternate_on(&self) -> bool {
        let o = self.cmd(&["display-message", "-p", "-t", "e2e", "#{alternate_on}"]);
        String::from_utf8_lossy(&o.stdout).trim() == "1"
    }

    /// Wait until the pane satisfies `pred`; panics with the screen after 15 s.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; the screen:\n{screen}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn table_rows(screen: &str) -> Vec<String> {
    // Table rows follow the header line with PID and COMM.
    screen
        .lines()
        .skip_while(|l| !(l.contains("PID") && l.contains("COMM")))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The cells of a table row by column title (titles and cells without
/// spaces; the selection mark dropped).
fn cells(screen: &str, row: &str) -> std::collections::HashMap<String, String> {
    let header = screen
        .lines()
        .find(|l| l.contains("PID") && l.contains("COMM"))
        .unwrap_or_default();
    header
        .split_whitespace()
        .map(str::to_string)
        .zip(row.replace('▶', " ").split_whitespace().map(str::to_string))
        .collect()
}

/// A fresh folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("uacce-trace-tui-e2e-{}-{test}", std::process::id()));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

#[test]
fn top_replays_sorts_filters_drills_down_and_restores_the_terminal() {
    if tmux_missing() {
        return;
    }
    let dir = scratch("keys");
    let rec = dir.join("e2e.utrace");
    recording(&rec);
    let bin = env!("CARGO_BIN_EXE_uacce-trace");
    let tmux = Tmux::clean_shell("keys");
    tmux.text(&format!(
        "clear; {bin} top --replay {} --fast; echo \"top exited $?\"",
        rec.display()
    ));
    tmux.keys(&["Enter"]);

    // Starts and shows the final state of the replay.
    let s = tmux.wait_for("the replay to finish", |s| s.contains("replay finished"));
    assert!(
        tmux.alternate_on(),
        "top should draw on the alternate screen"
    );
    assert!(s.contains("replay e2e.utrace (fast)"), "{s}");
    assert!(s.contains("kernel 6.12.0-e2e"), "{s}");
    assert!(s.contains("4 of 4 processes · sort IOPF/s ▼"), "{s}");
    let rows = table_rows(&s);
    let order: Vec<&str> = ["fio", "zip_test", "qemu-kvm", "ioring"]
        .into_iter()
        .filter(|c| rows.iter().any(|r| r.contains(c)))
        .collect();
    assert_eq!(order.len(), 4, "all four processes shown:\n{s}");
    assert!(rows[0].contains("fio") && rows[0].contains('▶'), "{s}");
    assert!(
        rows[1].contains("zip_test") && rows[1].contains("2 devs"),
        "{s}"
    );
    assert!(rows[3].contains("ioring"), "{s}");

    // Sort: `s`, six columns right (IOPF/s → PINNED), done.
    tmux.keys(&["s"]);
    tmux.wait_for("sort mode", |s| s.contains("SORT by IOPF/s"));
    tmux.keys(&["Right", "Right", "Right", "Right", "Right", "Right"]);
    tmux.wait_for("sort by PINNED", |s| s.contains("SORT by PINNED ▼"));
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the table sorted by PINNED", |s| {
        s.contains("sort PINNED ▼") && s.contains("q quit")
    });
    let rows = table_rows(&s);
    assert!(rows[0].contains("ioring"), "most pinned pages first:\n{s}");
    assert!(rows[1].contains("fio"), "{s}");

    // Filter: `/qemu`, Enter.
    tmux.keys(&["/"]);
    tmux.text("qemu");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the filtered table", |s| {
        s.contains("1 of 4 processes") && s.contains("filter \"qemu\"")
    });
    let rows = table_rows(&s);
    assert_eq!(rows.len(), 1, "{s}");
    assert!(
        rows[0].contains("2001") && rows[0].contains("qemu-kvm"),
        "{s}"
    );

    // Drill down into it.
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the drill-down", |s| s.contains("PID 2001 qemu-kvm"));
    for want in [
        "PASIDs 5 on 00:03.0",
        "IOPF latency (60 faults)",
        "pin call latency",
        "IOPF/s",
        "p99",
        "hottest fault regions",
        "pinned ranges",
        "Esc back",
    ] {
        assert!(s.contains(want), "no {want:?} in the drill-down:\n{s}");
    }

    // Back, clear the filter, quit.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the table again", |s| s.contains("1 of 4 processes"));
    tmux.keys(&["Escape"]);
    tmux.wait_for("the filter cleared", |s| s.contains("4 of 4 processes"));
    tmux.keys(&["q"]);
    let s = tmux.wait_for("top to exit", |s| s.contains("top exited"));
    assert!(s.contains("top exited 0"), "{s}");
    let s = tmux.wait_for("the prompt after top", |s| {
        s.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim_end() == PROMPT.trim_end())
    });
    assert!(!tmux.alternate_on(), "alternate screen still on:\n{s}");
    assert!(
        !s.contains("q quit"),
        "the screen of top is left behind:\n{s}"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// `top` on a recording with requests and pin ioctls: the request and
/// ioctl columns fill in, and the drill-down's sections show the faulted
/// and clean request histograms and the ioctl histogram.
#[test]
fn top_replays_requests_and_pin_ioctls() {
    if tmux_missing() {
        return;
    }
    let dir = scratch("requests");
    let rec = dir.join("requests.utrace");
    request_recording(&rec);
    let bin = env!("CARGO_BIN_EXE_uacce-trace");
    let tmux = Tmux::clean_shell("requests");
    tmux.text(&format!(
        "clear; {bin} top --replay {} --fast; echo \"top exited $?\"",
        rec.display()
    ));
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the replay to finish", |s| s.contains("replay finished"));
    for title in ["OPS/s", "OPp99", "OPp99.9", "TAIL%F", "CTL/s"] {
        assert!(s.contains(title), "no {title} column:\n{s}");
    }
    let rows = table_rows(&s);
    let infer = rows
        .iter()
        .find(|r| r.contains("infer"))
        .unwrap_or_else(|| panic!("no infer row:\n{s}"));
    // About 200 requests/s (the last, partial interval of the replay);
    // the slowest 1 % (6 of 600) all faulted.
    let cell = |row: &str, col: &str| cells(&s, row).get(col).cloned().unwrap_or_default();
    let ops: f64 = cell(infer, "OPS/s").parse().unwrap_or(0.0);
    assert!((190.0..=210.0).contains(&ops), "{infer}");
    assert_eq!(cell(infer, "TAIL%F"), "100%", "{infer}");
    let pinner = rows
        .iter()
        .find(|r| r.contains("pinner"))
        .unwrap_or_else(|| panic!("no pinner row:\n{s}"));
    // About 200 ioctls/s, not a row of zeros.
    let ctl: f64 = cell(pinner, "CTL/s").parse().unwrap_or(0.0);
    assert!((190.0..=210.0).contains(&ctl), "{pinner}");

    // The request process: summary line, then its requests section.
    tmux.keys(&["/"]);
    tmux.text("infer");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the filtered table", |s| s.contains("filter \"infer\""));
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the drill-down", |s| s.contains("PID 3001 infer"));
    assert!(s.contains("requests 600 ("), "{s}");
    assert!(s.contains("slowest 1 % 100% faulted"), "{s}");
    tmux.keys(&["Tab"]);
    let s = tmux.wait_for("the requests section", |s| s.contains("with faults ("));
    for want in [
        "infer_request · 600 requests",
        "slowest 1 %: 6/6 faulted (100%",
        "with faults (30, p99",
        "without (570, p99",
        "OPS/s",
    ] {
        assert!(s.contains(want), "no {want:?}:\n{s}");
    }
    tmux.keys(&["Escape"]);
    tmux.wait_for("the table again", |s| s.contains("filter \"infer\""));
    tmux.keys(&["Escape"]);
    tmux.wait_for("the filter cleared", |s| s.contains("2 of 2 processes"));

    // The ioctl process: its uacce_ctrl section.
    tmux.keys(&["/"]);
    tmux.text("pinner");
    tmux.keys(&["Enter", "Enter", "Tab"]);
    let s = tmux.wait_for("the uacce_ctrl section", |s| {
        s.contains("uacce_ctrl ioctl latency")
    });
    assert!(s.contains("PIN 270 · UNPIN 300 · failed 30"), "{s}");
    assert!(s.contains("uacce_ctrl ioctl latency (600 calls)"), "{s}");
    tmux.keys(&["q"]);
    let s = tmux.wait_for("top to exit", |s| s.contains("top exited"));
    assert!(s.contains("top exited 0"), "{s}");
    assert!(!tmux.alternate_on(), "alternate screen still on:\n{s}");
    let _ = fs::remove_dir_all(&dir);
}

/// The recording shipped in the repository, made by
/// `cargo xtask demo --no-tui --record` on the test kernel (README "Demo").
const DEMO_RECORDING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/demo.utrace");

/// The demo's processes: command name -> (tgid, IOPFs, faults on the
/// process's pinned pages are not counted here), read from the recording.
fn demo_processes() -> std::collections::BTreeMap<String, (u32, u64)> {
    use uacce_trace::ingest::rawfile::{RawReader, Record};
    let file = fs::File::open(DEMO_RECORDING).unwrap_or_else(|e| panic!("{DEMO_RECORDING}: {e}"));
    let (mut reader, _) = RawReader::open(std::io::BufReader::new(file))
        .unwrap_or_else(|e| panic!("{DEMO_RECORDING}: {e}"));
    let mut procs = std::collections::BTreeMap::new();
    for rec in reader
        .read_all()
        .unwrap_or_else(|e| panic!("{DEMO_RECORDING}: {e}"))
    {
        let (tgid, comm, fault) = match &rec {
            Record::Event(Event::Iopf(f)) => match f.tgid {
                Some(t) => (t, f.comm.clone(), 1),
                None => continue,
            },
            Record::Event(Event::Pin(p)) => (p.tgid, p.comm.clone(), 0),
            Record::Event(Event::PinIoctl(i)) => (i.tgid, i.comm.clone(), 0),
            _ => continue,
        };
        let e = procs.entry(comm).or_insert((tgid, 0));
        assert_eq!(e.0, tgid, "one process per demo command name");
        e.1 += fault;
    }
    procs
}

/// `top` on the shipped demo recording: the four demo processes with their
/// pids, sorted by faults inside pinned ranges (only `ml-infer` has them:
/// it pinned its buffer and faulted 1.5 s more), filtered, drilled into.
#[test]
fn top_shows_the_shipped_demo_recording() {
    if tmux_missing() {
        return;
    }
    let procs = demo_processes();
    for comm in ["dma-copy", "ml-infer", "zip-job", "rdma-reg"] {
        assert!(
            procs.contains_key(comm),
            "{comm} not in {DEMO_RECORDING}: {procs:?}"
        );
    }
    assert_eq!(procs["rdma-reg"].1, 0, "rdma-reg only pins");
    let bin = env!("CARGO_BIN_EXE_uacce-trace");
    let tmux = Tmux::clean_shell("demo");
    tmux.text(&format!(
        "clear; {bin} top --replay {DEMO_RECORDING} --fast; echo \"top exited $?\""
    ));
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the replay to finish", |s| s.contains("replay finished"));
    assert!(s.contains("replay demo.utrace (fast)"), "{s}");
    let rows = table_rows(&s);
    for (comm, (pid, _)) in &procs {
        assert!(
            rows.iter()
                .any(|r| r.contains(&pid.to_string()) && r.contains(comm.as_str())),
            "no row with {pid} {comm}:\n{s}"
        );
    }

    // Sort by INPIN: `s`, Right until it is the sort column, Enter.
    tmux.keys(&["s"]);
    tmux.wait_for("sort mode", |s| s.contains("SORT by"));
    for _ in 0..12 {
        if tmux.capture().contains("SORT by INPIN") {
            break;
        }
        tmux.keys(&["Right"]);
    }
    tmux.wait_for("sort by INPIN", |s| s.contains("SORT by INPIN ▼"));
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the table sorted by INPIN", |s| {
        s.contains("sort INPIN ▼") && s.contains("q quit")
    });
    let rows = table_rows(&s);
    assert!(
        rows[0].contains("ml-infer"),
        "the process that faulted on its pinned buffer first:\n{s}"
    );

    // Filter on the pinning process and drill down.
    let (pid, faults) = procs["ml-infer"];
    tmux.keys(&["/"]);
    tmux.text("infer");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the filtered table", |s| s.contains("filter \"infer\""));
    let rows = table_rows(&s);
    assert_eq!(rows.len(), 1, "{s}");
    assert!(rows[0].contains(&pid.to_string()), "{s}");
    tmux.keys(&["Enter"]);
    let header = format!("PID {pid} ml-infer");
    let s = tmux.wait_for("the drill-down", |s| s.contains(&header));
    for want in [
        format!("IOPF latency ({faults} faults)"),
        "PASIDs 2".to_string(),
        "hottest fault regions".to_string(),
        "Esc back".to_string(),
    ] {
        assert!(s.contains(&want), "no {want:?} in the drill-down:\n{s}");
    }
    tmux.keys(&["Escape"]);
    tmux.wait_for("the table again", |s| s.contains("filter \"infer\""));
    tmux.keys(&["q"]);
    let s = tmux.wait_for("top to exit", |s| s.contains("top exited"));
    assert!(s.contains("top exited 0"), "{s}");
    assert!(!tmux.alternate_on(), "alternate screen still on:\n{s}");
}

#[test]
fn top_restores_the_terminal_on_sigterm() {
    if tmux_missing() {
        return;
    }
    let dir = scratch("sigterm");
    let rec = dir.join("term.utrace");
    recording(&rec);
    let bin = env!("CARGO_BIN_EXE_uacce-trace");
    let tmux = Tmux::clean_shell("term");
    // At the recorded pace, with a fast tick.
    tmux.text(&format!(
        "clear; {bin} top --replay {} --interval 100ms; echo \"top exited $?\"",
        rec.display()
    ));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the table", |s| s.contains("fio"));
    let o = tmux.cmd(&["display-message", "-p", "-t", "e2e", "#{pane_pid}"]);
    let shell_pid = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let children = fs::read_to_string(format!("/proc/{shell_pid}/task/{shell_pid}/children"))
        .unwrap_or_else(|e| panic!("children of the shell {shell_pid}: {e}"));
    let top_pid = children
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no child of the shell {shell_pid}"))
        .to_string();
    let o = Command::new("kill")
        .args(["-TERM", &top_pid])
        .output()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(o.status.success(), "{o:?}");
    let s = tmux.wait_for("top to exit", |s| s.contains("top exited"));
    assert!(s.contains("top exited 143"), "128 + SIGTERM:\n{s}");
    assert!(!tmux.alternate_on(), "alternate screen still on:\n{s}");
    assert!(
        !s.contains("q quit"),
        "the screen of top is left behind:\n{s}"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn top_with_a_bad_recording_says_so_and_exits_2() {
    let dir = scratch("bad");
    let bad = dir.join("bad.utrace");
    fs::write(&bad, b"not a recording").unwrap_or_else(|e| panic!("{e}"));
    let o = Command::new(env!("CARGO_BIN_EXE_uacce-trace"))
        .args(["top", "--replay"])
        .arg(&bad)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad.utrace") && err.contains("bad magic"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let o = Command::new(env!("CARGO_BIN_EXE_uacce-trace"))
        .args(["top", "--fast"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.status.code(), Some(2), "--fast needs --replay");
    let _ = fs::remove_dir_all(&dir);
}
