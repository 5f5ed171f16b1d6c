//! Tests of the `top` screen: frames as insta snapshots at 80x24 and
//! 120x40 (ratatui `TestBackend`), state changes through key → message →
//! update, and the feed's rates, history and PASIDs. All data comes from
//! synthetic events with fixed timestamps; nothing reads a clock.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::{backend::TestBackend, Terminal};
use uacce_trace_common::PinFunc;

use super::{
    app::{
        key_to_msg, App, Column, CostState, Effect, Group, Mode, Msg, Section, SourceInfo,
        SourceKind,
    },
    feed::{Feed, ProcRow, TopData},
    view,
};
use crate::{
    ingest::event::{
        Event, HookType, IopfEvent, LossSample, PasidEvent, PinEvent, PinIoctl, PinIoctlEvent,
        RequestEvent, SummaryEvent, SummaryKind,
    },
    ingest::losses::{Ledger, LossReason},
    model::{ModelConfig, ProcId},
};

const SEC: u64 = 1_000_000_000;
const START: u64 = 1_000 * SEC;
const DEV_A: &str = "0000:00:02.0";
const DEV_B: &str = "0000:00:03.0";

// ---- synthetic events ------------------------------------------------------

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn iopf(
    ts: u64,
    tgid: Option<u32>,
    comm: &str,
    dev: &str,
    pasid: u32,
    addr: u64,
    lat: u64,
) -> Event {
    Event::Iopf(IopfEvent {
        ts_ns: ts,
        latency_ns: lat,
        tgid,
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

fn pin(ts: u64, tgid: u32, comm: &str, start: u64, pages: i64, lat: u64) -> Event {
    Event::Pin(PinEvent {
        ts_ns: ts,
        latency_ns: lat,
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

fn unpin(ts: u64, tgid: u32, comm: &str, pages: u64) -> Event {
    Event::Pin(PinEvent {
        ts_ns: ts,
        latency_ns: 800,
        tgid,
        tid: tgid,
        comm: comm.into(),
        func: PinFunc::UnpinUserPages,
        hook: HookType::Fentry,
        start: 0,
        nr_pages: pages,
        ret: pages as i64,
        gup_flags: 0,
        longterm: false,
    })
}

fn bind(ts: u64, tgid: u32, comm: &str, pasid: u32, bound: bool) -> Event {
    Event::Pasid(PasidEvent {
        ts_ns: ts,
        tgid,
        comm: comm.into(),
        pasid,
        bound,
        hook: HookType::Kprobe,
    })
}

/// A process faulting on a device.
struct Faulter<'a> {
    tgid: u32,
    comm: &'a str,
    dev: &'a str,
    pasid: u32,
    secs: u64,
    per_s: u64,
    lat_ns: u64,
}

/// `f` faulting for `secs` seconds, `per_s` faults a second with latencies
/// around `lat_ns` and a tail, on addresses in three regions.
fn faulting(rng: &mut Lcg, out: &mut Vec<Event>, f: Faulter) {
    let (tgid, comm, dev, pasid, lat_ns) = (f.tgid, f.comm, f.dev, f.pasid, f.lat_ns);
    out.push(bind(START + 1, tgid, comm, pasid, true));
    let base = 0x7f00_0000_0000 + u64::from(tgid) * 0x1_0000_0000;
    for s in 0..f.secs {
        for i in 0..f.per_s {
            let ts = START + s * SEC + 1 + i * (SEC / f.per_s.max(1));
            let region = rng.range(0, 3) * 0x100_0000;
            let addr = base + region + rng.range(0, 64) * 4096;
            let tail = rng.range(0, 1000);
            let lat = if tail > 995 {
                lat_ns * rng.range(20, 60)
            } else if tail > 950 {
                lat_ns * rng.range(3, 8)
            } else {
                rng.range(lat_ns / 2, lat_ns * 3 / 2)
            };
            out.push(iopf(ts, Some(tgid), comm, dev, pasid, addr, lat));
        }
    }
}

fn fa<'a>(
    tgid: u32,
    comm: &'a str,
    dev: &'a str,
    pasid: u32,
    secs: u64,
    per_s: u64,
    lat_ns: u64,
) -> Faulter<'a> {
    Faulter {
        tgid,
        comm,
        dev,
        pasid,
        secs,
        per_s,
        lat_ns,
    }
}

/// A process pinning 16 buffers of 64 pages, unpinning 4.
fn pinning(rng: &mut Lcg, out: &mut Vec<Event>, tgid: u32, comm: &str, secs: u64) {
    let base = 0x7e00_0000_0000 + u64::from(tgid) * 0x1_0000_0000;
    for s in 0..secs {
        for i in 0..4u64 {
            let ts = START + s * SEC + 100 + i * 1000;
            let start = base + (s * 4 + i) * 0x40_000;
            out.push(pin(ts, tgid, comm, start, 64, rng.range(2_000, 9_000)));
        }
        if s % 2 == 1 {
            out.push(unpin(START + s * SEC + 500_000, tgid, comm, 64));
        }
    }
}

fn sorted(mut evs: Vec<Event>) -> Vec<Event> {
    evs.sort_by_key(Event::ts_ns);
    evs
}

/// One process: `fio` faulting on one device, pinning some buffers,
/// with a fault inside a pinned range.
fn one_process_events() -> Vec<Event> {
    let mut rng = Lcg(7);
    let mut evs = Vec::new();
    faulting(
        &mut rng,
        &mut evs,
        fa(1234, "fio", DEV_A, 3, 5, 200, 12_000),
    );
    pinning(&mut rng, &mut evs, 1234, "fio", 5);
    // A fault inside the first pinned buffer (pinned at START + 100).
    evs.push(iopf(
        START + 2 * SEC + 7,
        Some(1234),
        "fio",
        DEV_A,
        3,
        0x7e00_0000_0000 + 1234 * 0x1_0000_0000 + 0x1000,
        30_000,
    ));
    sorted(evs)
}

/// Seven processes and unattributed faults.
fn many_events() -> Vec<Event> {
    let mut rng = Lcg(42);
    let mut evs = Vec::new();
    for f in [
        fa(1234, "fio", DEV_A, 3, 5, 200, 12_000),
        fa(2001, "qemu-system-x86", DEV_B, 5, 5, 50, 40_000),
        fa(2002, "zip_bench", DEV_A, 7, 5, 400, 6_000),
        fa(2002, "zip_bench", DEV_B, 8, 5, 20, 9_000),
        fa(3100, "sec_test", DEV_B, 9, 3, 10, 150_000),
    ] {
        faulting(&mut rng, &mut evs, f);
    }
    pinning(&mut rng, &mut evs, 1234, "fio", 5);
    pinning(&mut rng, &mut evs, 4000, "io_uring-bench", 5);
    pinning(&mut rng, &mut evs, 4100, "rdma_server", 2);
    evs.push(Event::PinIoctl(PinIoctlEvent {
        ts_ns: START + 3 * SEC,
        latency_ns: 40_000,
        tgid: 4100,
        tid: 4100,
        comm: "rdma_server".into(),
        cmd: PinIoctl::UaccePin,
        addr: 0x5000_0000,
        size: 1 << 20,
        ret: 0,
        hook: HookType::Tracepoint,
        pin_calls: 1,
        pages: 256,
        driver_call: None,
    }));
    evs.push(bind(START + 4 * SEC, 2001, "qemu-system-x86", 5, false));
    for i in 0..30 {
        evs.push(iopf(
            START + SEC / 2 + i * (SEC / 10),
            None,
            "",
            DEV_B,
            11,
            0x1000 * i,
            25_000,
        ));
    }
    sorted(evs)
}

fn request(
    ts: u64,
    tgid: u32,
    comm: &str,
    op: &str,
    lat: u64,
    faults: u32,
    fault_ns: u64,
) -> Event {
    Event::Request(RequestEvent {
        ts_ns: ts,
        latency_ns: lat,
        tgid,
        tid: tgid,
        comm: comm.into(),
        op: op.into(),
        ret: 0,
        faults,
        fault_ns,
    })
}

fn pin_ioctl(
    ts: u64,
    tgid: u32,
    comm: &str,
    cmd: PinIoctl,
    ret: i64,
    pages: u64,
    lat: u64,
) -> Event {
    Event::PinIoctl(PinIoctlEvent {
        ts_ns: ts,
        latency_ns: lat,
        tgid,
        tid: tgid,
        comm: comm.into(),
        cmd,
        addr: 0x5000_0000 + u64::from(tgid) * 0x100_0000,
        size: pages * 4096,
        ret,
        hook: HookType::Tracepoint,
        pin_calls: u32::from(ret == 0),
        pages: if ret == 0 { pages } else { 0 },
        driver_call: None,
    })
}

/// Requests (`--op`) and pin ioctls, five seconds:
/// - `ml-infer` (163): 100 `infer` requests a second; in the first two
///   seconds one in ten has an IO page fault inside and is slow; then it
///   pins its buffer through `uacce_ctrl` and no request faults again;
/// - `zip-job` (164): two ops, `wd_do_comp_sync` (50/s, three slow
///   faulted ones) and `wd_do_comp_sync2` (10/s, clean);
/// - `pinner` (165): 200 PIN and 200 UNPIN ioctls a second, one PIN in
///   fifty failing, 16 pages each;
/// - `fio` (1234) faulting without requests.
fn request_events() -> Vec<Event> {
    let mut rng = Lcg(99);
    let mut evs = Vec::new();
    faulting(&mut rng, &mut evs, fa(1234, "fio", DEV_A, 3, 5, 50, 12_000));
    let base = 0x7f00_0000_0000 + 163 * 0x1_0000_0000;
    for s in 0..5u64 {
        for i in 0..100u64 {
            let ts = START + s * SEC + 1_000 + i * (SEC / 100);
            if s < 2 && i % 10 == 3 {
                // The fault inside: reported 100 µs in, answered 400 µs later.
                evs.push(iopf(
                    ts + 100_000,
                    Some(163),
                    "ml-infer",
                    DEV_B,
                    2,
                    base + i * 4096,
                    400_000,
                ));
                let lat = rng.range(900_000, 1_400_000);
                evs.push(request(ts, 163, "ml-infer", "infer", lat, 1, 400_000));
            } else {
                let lat = rng.range(50_000, 150_000);
                evs.push(request(ts, 163, "ml-infer", "infer", lat, 0, 0));
            }
        }
        if s == 2 {
            let ts = START + 2 * SEC + 500;
            evs.push(pin(
                ts,
                163,
                "ml-infer",
                0x5000_0000 + 163 * 0x100_0000,
                256,
                30_000,
            ));
            evs.push(pin_ioctl(
                ts,
                163,
                "ml-infer",
                PinIoctl::UaccePin,
                0,
                256,
                60_000,
            ));
        }
        for i in 0..50u64 {
            let ts = START + s * SEC + 2_000 + i * (SEC / 50);
            let slow = s == 1 && i < 3;
            let (lat, faults) = if slow {
                (2_000_000 + i * 100_000, 2)
            } else {
                (rng.range(20_000, 40_000), 0)
            };
            evs.push(request(
                ts,
                164,
                "zip-job",
                "wd_do_comp_sync",
                lat,
                faults,
                faults as u64 * 300_000,
            ));
        }
        for i in 0..10u64 {
            let ts = START + s * SEC + 3_000 + i * (SEC / 10);
            let lat = rng.range(60_000, 90_000);
            evs.push(request(ts, 164, "zip-job", "wd_do_comp_sync2", lat, 0, 0));
        }
        for i in 0..200u64 {
            let ts = START + s * SEC + 4_000 + i * (SEC / 200);
            let ret = if i % 50 == 7 { -12 } else { 0 };
            let lat = rng.range(5_000, 40_000);
            evs.push(pin_ioctl(
                ts,
                165,
                "pinner",
                PinIoctl::UaccePin,
                ret,
                16,
                lat,
            ));
            evs.push(pin_ioctl(
                ts + 1_000,
                165,
                "pinner",
                PinIoctl::UacceUnpin,
                0,
                16,
                lat / 2,
            ));
        }
    }
    sorted(evs)
}

fn feed_of(events: &[Event]) -> Feed {
    let mut feed = Feed::new(SEC, Some(START), ModelConfig::default());
    feed.ingest(events);
    feed.advance_to(START + 5 * SEC);
    feed
}

fn data_of(events: &[Event]) -> Box<TopData> {
    Box::new(feed_of(events).view(START + 5 * SEC))
}

fn replay_info() -> SourceInfo {
    SourceInfo {
        kernel: "6.12.0-uacce-test".into(),
        plan: "pin: fentry · unpin: fentry · iopf: fentry · pasid: fexit · uacce_ctrl: tracepoint"
            .into(),
        source: SourceKind::Replay {
            name: "demo.utrace".into(),
            realtime: true,
        },
        warning: None,
    }
}

fn live_info() -> SourceInfo {
    SourceInfo {
        kernel: "6.1.0-18-amd64".into(),
        plan: "pin: kprobe · unpin: kprobe · iopf: none · pasid: none · uacce_ctrl: tracepoint"
            .into(),
        source: SourceKind::Live {
            hooks: 9,
            summary: false,
        },
        warning: Some(
            "no usable hook for IOPF events (iommu_report_device_fault: not in this kernel; \
             vendor tracepoints: none): only pins are traced"
                .into(),
        ),
    }
}

fn app_with(info: SourceInfo, data: Box<TopData>) -> App {
    let mut app = App::new(info, SEC);
    app.update(Msg::Data(data));
    app
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn press(app: &mut App, code: KeyCode) -> Effect {
    match key_to_msg(app, key(code)) {
        Some(msg) => app.update(msg),
        None => Effect::None,
    }
}

fn type_keys(app: &mut App, s: &str) {
    for c in s.chars() {
        press(app, KeyCode::Char(c));
    }
}

fn render(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap_or_else(|e| panic!("{e}"));
    t.draw(|f| view::draw(f, app))
        .unwrap_or_else(|e| panic!("{e}"));
    t.backend().to_string()
}

/// Snapshot the frame at both sizes.
fn frames(name: &str, app: &App) {
    for (w, h) in [(80, 24), (120, 40)] {
        let frame = render(app, w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), frame);
    }
}

fn pids(app: &App) -> Vec<String> {
    app.visible_rows().iter().map(|r| r.pid_text()).collect()
}

// ---- frames ----------------------------------------------------------------

#[test]
fn frame_empty() {
    let feed = Feed::new(SEC, Some(START), ModelConfig::default());
    let app = app_with(replay_info(), Box::new(feed.view(START)));
    frames("empty", &app);
    let mut live = app_with(live_info(), Box::new(feed.view(START)));
    live.update(Msg::Cost(CostState::Measuring));
    let frame = render(&live, 80, 24);
    assert!(frame.contains("no IOPFs or pins seen yet"), "{frame}");
    frames("empty_live", &live);
}

#[test]
fn frame_one_process() {
    let app = app_with(replay_info(), data_of(&one_process_events()));
    frames("one_process", &app);
}

#[test]
fn frame_many_processes() {
    let mut app = app_with(live_info(), data_of(&many_events()));
    app.update(Msg::Cost(CostState::Known {
        ns_per_run: Some(142.4),
        runs_per_s: 1234.0,
        cpu_pct: 0.0176,
    }));
    frames("many", &app);
}

#[test]
fn frame_sorted() {
    let mut app = app_with(replay_info(), data_of(&many_events()));
    press(&mut app, KeyCode::Char('s'));
    // IOPF/s → TOTAL → p50 → p99, then reversed: ascending p99.
    for _ in 0..3 {
        press(&mut app, KeyCode::Right);
    }
    press(&mut app, KeyCode::Char('r'));
    assert_eq!(app.sort(), (Column::P99, false));
    frames("sorted_mode", &app);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.mode(), Mode::Table);
    frames("sorted", &app);
}

#[test]
fn frame_filtered() {
    let mut app = app_with(replay_info(), data_of(&many_events()));
    press(&mut app, KeyCode::Char('/'));
    type_keys(&mut app, "03.0");
    frames("filter_typing", &app);
    press(&mut app, KeyCode::Enter);
    frames("filtered", &app);
    press(&mut app, KeyCode::Char('f'));
    type_keys(&mut app, "zzz");
    press(&mut app, KeyCode::Enter);
    frames("filtered_nothing", &app);
}

#[test]
fn frame_drill_down() {
    let mut app = app_with(replay_info(), data_of(&many_events()));
    // The top row by IOPF/s is zip_bench (two devices).
    assert_eq!(pids(&app)[0], "2002");
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.mode(), Mode::Detail);
    frames("detail", &app);
    // fio: faults, pins, a fault inside a pinned range.
    let mut app = app_with(replay_info(), data_of(&one_process_events()));
    press(&mut app, KeyCode::Enter);
    frames("detail_one", &app);
}

#[test]
fn frame_drops() {
    let mut evs = many_events();
    evs.push(Event::Loss(LossSample {
        ts_ns: START + 4 * SEC,
        losses: Ledger::from_counts(&[
            (LossReason::RingFullPin, 1229),
            (LossReason::IopfUnanswered, 5),
        ]),
    }));
    let app = app_with(replay_info(), data_of(&sorted(evs)));
    let frame = render(&app, 80, 24);
    assert!(frame.contains("drops 1234 (incomplete"), "{frame}");
    frames("drops", &app);
}

/// One loss sample with `losses`, a second after some traffic.
fn data_with_losses(losses: Ledger) -> Box<TopData> {
    let mut evs = many_events();
    evs.push(Event::Loss(LossSample {
        ts_ns: START + 4 * SEC,
        losses,
    }));
    data_of(&sorted(evs))
}

#[test]
fn header_never_says_drops_0_while_any_reason_counts() {
    for &r in LossReason::ALL {
        let app = app_with(
            replay_info(),
            data_with_losses(Ledger::from_counts(&[(r, 1)])),
        );
        let frame = render(&app, 80, 24);
        if r.is_loss() {
            assert!(!frame.contains("drops 0"), "{}: {frame}", r.name());
            assert!(
                frame.contains("drops 1 (incomplete"),
                "{}: {frame}",
                r.name()
            );
        } else {
            // Folded nested calls are not a loss.
            assert!(frame.contains("drops 0"), "{}: {frame}", r.name());
        }
    }
    // Nothing counted at all: "drops 0".
    let app = app_with(replay_info(), data_with_losses(Ledger::new()));
    assert!(render(&app, 80, 24).contains("drops 0"));
}

#[test]
fn losses_panel_lists_every_reason_with_its_count() {
    let losses = Ledger::from_counts(&[
        (LossReason::ExitWithoutEntry, 7),
        (LossReason::RingFullIoctl, 3),
    ]);
    let mut app = app_with(replay_info(), data_with_losses(losses));
    press(&mut app, KeyCode::Char('d'));
    assert!(app.losses());
    let frame = render(&app, 120, 40);
    assert!(frame.contains("losses by reason"), "{frame}");
    assert!(frame.contains("10 lost in total"), "{frame}");
    for (r, n) in [
        (LossReason::ExitWithoutEntry, 7),
        (LossReason::RingFullIoctl, 3),
    ] {
        let line = frame
            .lines()
            .find(|l| l.contains(r.name()))
            .unwrap_or_else(|| panic!("{} not listed: {frame}", r.name()));
        assert!(line.contains(&format!("{n} {}", r.name())), "{line}");
        assert!(line.contains(r.describe()), "{line}");
    }
    // Every reason is listed at 50 rows (zeros too).
    let tall = render(&app, 120, 50);
    for r in LossReason::ALL {
        assert!(tall.contains(r.name()), "{} missing: {tall}", r.name());
    }
    frames("losses_panel", &app);
    // Any key closes it; `L` opens it too, also from the drill-down,
    // whose header shows the drops as well.
    press(&mut app, KeyCode::Esc);
    assert!(!app.losses());
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.mode(), Mode::Detail);
    assert!(render(&app, 80, 24).contains("drops 10 (incomplete"));
    press(&mut app, KeyCode::Char('L'));
    assert!(app.losses());
    // 80x24 cannot hold every reason: the non-zero ones come first.
    let small = render(&app, 80, 24);
    assert!(small.contains("exit_without_entry"), "{small}");
    assert!(small.contains("more reasons at 0"), "{small}");
    // The help lists the key.
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Char('?'));
    assert!(render(&app, 100, 30).contains("d L      losses"));
}

#[test]
fn frame_error_banner() {
    let mut app = app_with(replay_info(), data_of(&many_events()));
    app.update(Msg::SourceFailed(
        "demo.utrace: truncated at byte 4096: record body".into(),
    ));
    frames("error", &app);
}

#[test]
fn frame_replay_finished_paused_and_help() {
    let mut app = app_with(replay_info(), data_of(&many_events()));
    app.update(Msg::SourceFinished);
    press(&mut app, KeyCode::Char('p'));
    frames("finished_paused", &app);
    press(&mut app, KeyCode::Char('?'));
    frames("help", &app);
}

// ---- requests (`--op`) and uacce_ctrl ioctls -------------------------------

fn row_of(data: &TopData, pid: u32) -> &ProcRow {
    data.rows
        .iter()
        .find(|r| r.proc_id == ProcId::Pid(pid))
        .unwrap_or_else(|| panic!("no row for {pid}"))
}

#[test]
fn feed_requests_per_process_and_op() {
    let data = data_of(&request_events());
    assert!(data.has_requests() && data.has_ioctls());
    let ml = row_of(&data, 163);
    let ops = ml.ops.as_ref().expect("ml-infer made requests");
    assert_eq!(ops.latency.count, 500);
    // The last interval (4 s – 5 s): 100 requests.
    assert!((ops.per_s - 100.0).abs() < 1e-9, "{}", ops.per_s);
    // The 20 faulted requests are the slowest: p99 among them, and the
    // slowest 1 % (5) and 0.1 % (1) all faulted.
    assert!(ops.latency.p99 >= 900_000, "{:?}", ops.latency);
    let tails: Vec<(u64, u64)> = ops.tails.iter().map(|t| (t.tail, t.faulted)).collect();
    assert_eq!(tails, [(5, 5), (1, 1)]);
    let infer = &ml.detail.ops[0];
    assert_eq!(infer.op, "infer");
    assert_eq!((infer.faulted.count, infer.clean.count), (20, 480));
    assert_eq!(
        infer.faulted_buckets.iter().map(|b| b.1).sum::<u64>(),
        20,
        "faulted buckets hold every faulted request"
    );
    assert!(infer.clean.max < 150_200 && infer.faulted.min >= 899_000);
    // The tail collapses once the buffer is pinned: per-interval p99.
    let p99s: Vec<u64> = ml.detail.history.iter().map(|x| x.op_p99_ns).collect();
    assert_eq!(p99s.len(), 5);
    assert!(p99s[..2].iter().all(|&v| v >= 900_000), "{p99s:?}");
    assert!(p99s[2..].iter().all(|&v| v < 151_000), "{p99s:?}");
    assert!(ml.detail.history.iter().all(|x| x.ops == 100));
    // Its one PIN ioctl.
    assert_eq!(
        (ml.ioctl_calls, ml.ioctl_errors, ml.ioctl_pages),
        (1, 0, 256)
    );

    // Two ops, most requests first, each with its own rate.
    let zip = row_of(&data, 164);
    let names: Vec<&str> = zip.detail.ops.iter().map(|o| o.op.as_str()).collect();
    assert_eq!(names, ["wd_do_comp_sync", "wd_do_comp_sync2"]);
    let rates: Vec<f64> = zip.detail.ops.iter().map(|o| o.stats.per_s).collect();
    assert_eq!(rates, [50.0, 10.0]);
    assert_eq!(zip.ops.as_ref().map(|o| o.latency.count), Some(300));
    assert_eq!(zip.detail.ops[0].faulted.count, 3);
    assert_eq!(zip.detail.ops[1].faulted_buckets, []);

    // The ioctl process: calls/s, errors, pages; and its histogram.
    let pinner = row_of(&data, 165);
    assert_eq!(pinner.ioctl_calls, 2_000);
    assert_eq!(pinner.ioctl_errors, 20);
    assert_eq!(pinner.ioctl_pages, (1_000 - 20) * 16);
    assert!((pinner.ioctls_per_s - 400.0).abs() < 1e-9);
    assert_eq!(pinner.detail.ioctl.count, 2_000);
    assert_eq!(
        pinner.detail.ioctl_buckets.iter().map(|b| b.1).sum::<u64>(),
        2_000
    );
    assert!(pinner.ops.is_none() && pinner.detail.ops.is_empty());
    assert_eq!(pinner.detail.ledger.ioctl_unpin_pages, 1_000 * 16);
    // No requests, no ioctls: nothing made up.
    let fio = row_of(&data, 1234);
    assert!(fio.ops.is_none());
    assert_eq!((fio.ioctl_calls, fio.ioctls_per_s), (0, 0.0));
}

#[test]
fn frame_requests_table_and_drill_down() {
    let mut app = app_with(replay_info(), data_of(&request_events()));
    // Every group has data: all its columns are sortable.
    assert_eq!(app.columns().len(), Column::ALL.len());
    for (w, h) in [(80, 24), (120, 40)] {
        let frame = render(&app, w, h);
        for title in ["OPS/s", "OPp99", "OPp99.9", "TAIL%F", "CTL/s"] {
            assert!(frame.contains(title), "{title} at {w}x{h}:\n{frame}");
        }
    }
    frames("requests", &app);
    // Sort by the faulted tail share: ml-infer (100 %) first.
    app.update(Msg::SortMode);
    while app.sort().0 != Column::OpTailFaulted {
        app.update(Msg::SortNext);
    }
    app.update(Msg::SortDone);
    assert_eq!(pids(&app)[..2], ["163", "164"]);
    let frame = render(&app, 80, 24);
    let line = frame
        .lines()
        .find(|l| l.contains("ml-infer"))
        .unwrap_or_else(|| panic!("{frame}"));
    assert!(line.contains("100%"), "{line}");
    frames("requests_by_tail", &app);
    // Processes without requests stay last either way.
    press(&mut app, KeyCode::Char('r'));
    assert_eq!(app.sort(), (Column::OpTailFaulted, false));
    let order = pids(&app);
    assert!(
        order[..2].contains(&"163".to_string()) && order[..2].contains(&"164".to_string()),
        "{order:?}"
    );
    press(&mut app, KeyCode::Char('r'));

    // ml-infer's drill-down: three sections.
    press(&mut app, KeyCode::Home);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.detail(), Some(ProcId::Pid(163)));
    assert_eq!(app.section(), Section::Faults);
    let frame = render(&app, 80, 24);
    assert!(frame.contains("requests 500 (100/s)"), "{frame}");
    assert!(frame.contains("slowest 1 % 100% faulted"), "{frame}");
    assert!(frame.contains("Tab: next section"), "{frame}");
    frames("requests_detail_faults", &app);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.section(), Section::Requests);
    let frame = render(&app, 120, 40);
    for want in [
        "infer · 500 requests (100/s)",
        "slowest 1 %: 5/5 faulted (100%, CI 57–100%)",
        "with faults (20,",
        "without (480,",
        "OPS/s",
        "op p99",
    ] {
        assert!(frame.contains(want), "{want:?}:\n{frame}");
    }
    frames("requests_detail_requests", &app);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.section(), Section::Ioctls);
    frames("requests_detail_ioctls", &app);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.section(), Section::Faults, "Tab wraps around");
    press(&mut app, KeyCode::BackTab);
    assert_eq!(app.section(), Section::Ioctls);

    // zip-job: two ops in the requests section; the section stays chosen
    // for the next process that has it.
    press(&mut app, KeyCode::BackTab);
    press(&mut app, KeyCode::Down);
    assert_eq!(app.detail(), Some(ProcId::Pid(164)));
    assert_eq!(app.section(), Section::Requests);
    let frame = render(&app, 80, 24);
    assert!(frame.contains("wd_do_comp_sync ·"), "{frame}");
    assert!(frame.contains("wd_do_comp_sync2 ·"), "{frame}");
    frames("requests_detail_two_ops", &app);
    // A process without requests shows its faults instead.
    press(&mut app, KeyCode::End);
    assert!(app.detail_row().is_some_and(|r| r.ops.is_none()));
    assert_eq!(app.section(), Section::Faults);

    // The ioctl-only process: its uacce_ctrl section.
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Char('/'));
    type_keys(&mut app, "pinner");
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.section(), Section::Ioctls);
    let frame = render(&app, 80, 24);
    let wide = render(&app, 120, 40);
    assert!(
        wide.contains("uacce_ctrl 2000 (400/s, 20 failed)"),
        "{wide}"
    );
    for want in [
        "PIN 980 · UNPIN 1000 · failed 20 · pages pinned 15680, released 16000",
        "ioctl latency p50 ",
        "uacce_ctrl ioctl latency (2000 calls)",
        "CTL/s",
    ] {
        assert!(frame.contains(want), "{want:?}:\n{frame}");
    }
    frames("ioctls_detail", &app);
}

/// Many ops: the requests section shows what fits and says how many more;
/// no size panics.
#[test]
fn many_ops_fit_and_small_screens_do_not_panic() {
    let mut evs = Vec::new();
    for op in 0..10u64 {
        for i in 0..=op {
            evs.push(request(
                START + i * 1_000 + op,
                42,
                "multi",
                &format!("op{op}"),
                10_000 * (op + 1),
                u32::from(i % 2 == 0),
                0,
            ));
        }
    }
    let mut app = app_with(replay_info(), data_of(&sorted(evs)));
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.section(), Section::Requests);
    let frame = render(&app, 80, 24);
    // Most requests first: op9 (10 requests) on top.
    assert!(frame.contains("op9 · 10 requests"), "{frame}");
    assert!(frame.contains("more ops with fewer requests"), "{frame}");
    for (w, h) in [(120, 40), (40, 10), (20, 5), (1, 1)] {
        render(&app, w, h);
    }
    press(&mut app, KeyCode::Tab);
    for (w, h) in [(80, 24), (20, 5), (1, 1)] {
        render(&app, w, h);
    }
}

/// `top --summary`: pin ioctls counted in the kernel arrive as weighted
/// `Event::Summary`s; the ioctl columns and histogram count the calls, not
/// the events.
#[test]
fn summary_mode_ioctls_fill_the_columns() {
    use uacce_trace_common::summary::bucket_of;
    let mut evs = Vec::new();
    for s in 1..=5u64 {
        for (kind, calls, errors, pages) in [
            (SummaryKind::Ioctl(PinIoctl::UaccePin), 1_000, 10, 16_000),
            (SummaryKind::Ioctl(PinIoctl::UacceUnpin), 990, 0, 15_840),
            (SummaryKind::Pin, 990, 0, 15_840),
        ] {
            evs.push(Event::Summary(SummaryEvent {
                ts_ns: START + s * SEC - 1,
                tgid: 777,
                comm: "uacce_pin_bench".into(),
                kind,
                pasid: 0,
                device: String::new(),
                calls,
                errors,
                pages,
                longterm_pages: 0,
                latency_sum_ns: 0,
                buckets: vec![(bucket_of(8_000), calls - 5), (bucket_of(200_000), 5)],
            }));
        }
    }
    let data = data_of(&evs);
    let r = row_of(&data, 777);
    assert_eq!(r.ioctl_calls, 5 * 1_990);
    assert_eq!(r.ioctl_errors, 50);
    assert_eq!(r.ioctl_pages, 5 * 16_000);
    assert!(
        (r.ioctls_per_s - 1_990.0).abs() < 1e-9,
        "{}",
        r.ioctls_per_s
    );
    assert_eq!(r.detail.ioctl.count, 5 * 1_990);
    assert_eq!(data.events, 5 * (1_000 + 990 + 990));
    let mut app = app_with(
        SourceInfo {
            source: SourceKind::Live {
                hooks: 9,
                summary: true,
            },
            warning: None,
            ..live_info()
        },
        data,
    );
    app.update(Msg::Cost(CostState::Measuring));
    let frame = render(&app, 80, 24);
    let line = frame
        .lines()
        .find(|l| l.contains("uacce_pin"))
        .unwrap_or_else(|| panic!("{frame}"));
    assert!(line.contains("1990") && line.contains("50"), "{line}");
    frames("summary_ioctls", &app);
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.section(), Section::Ioctls);
    frames("summary_ioctls_detail", &app);
}

/// A raw recording with requests, replayed the way `top --replay` reads
/// it (`rawfile::Replay` batches into the feed): the same rows as the
/// events fed directly, and the request columns on screen.
#[test]
fn replay_of_a_recording_with_requests() {
    use crate::ingest::{
        rawfile::{RawReader, RawWriter, Replay, ReplayItem},
        run::RunMeta,
    };
    let evs = request_events();
    let meta = RunMeta {
        start_unix_ns: 1_700_000_000 * SEC,
        start_mono_ns: START,
        kernel: "6.12.0-uacce-test".into(),
        plan: "op: uprobe".into(),
        command: String::new(),
    };
    let mut w = RawWriter::new(Vec::new(), &meta).unwrap_or_else(|e| panic!("{e}"));
    for e in &evs {
        w.write_event(e).unwrap_or_else(|e| panic!("{e}"));
    }
    let bytes = w.finish().unwrap_or_else(|e| panic!("{e}"));
    let (reader, back) = RawReader::open(&bytes[..]).unwrap_or_else(|e| panic!("{e}"));
    let mut feed = Feed::new(SEC, Some(back.start_mono_ns), ModelConfig::default());
    let mut requests = 0;
    for item in Replay::new(reader) {
        match item.unwrap_or_else(|e| panic!("{e}")) {
            ReplayItem::Batch { events, .. } => {
                requests += events
                    .iter()
                    .filter(|e| matches!(e, Event::Request(_)))
                    .count();
                feed.ingest(&events);
            }
            ReplayItem::Mark(_) => {}
        }
    }
    feed.advance_to(START + 5 * SEC);
    assert_eq!(requests, 500 + 300);
    let replayed = feed.view(START + 5 * SEC);
    let direct = data_of(&evs);
    assert_eq!(
        replayed.rows, direct.rows,
        "the replay shows what was recorded"
    );
    let app = app_with(replay_info(), Box::new(replayed));
    let frame = render(&app, 120, 40);
    let line = frame
        .lines()
        .find(|l| l.contains("ml-infer"))
        .unwrap_or_else(|| panic!("{frame}"));
    // OPS/s 100, the faulted tail 100 %.
    assert!(line.contains(" 100 ") && line.contains("100%"), "{line}");
}

// ---- keys → messages → update ---------------------------------------------

#[test]
fn keys_map_to_messages_by_mode() {
    let mut app = app_with(replay_info(), data_of(&many_events()));
    let m = |app: &App, code| key_to_msg(app, key(code));
    assert_eq!(m(&app, KeyCode::Char('q')), Some(Msg::Quit));
    assert_eq!(m(&app, KeyCode::Esc), Some(Msg::Quit));
    assert_eq!(m(&app, KeyCode::Char('j')), Some(Msg::Down));
    assert_eq!(m(&app, KeyCode::Up), Some(Msg::Up));
    assert_eq!(m(&app, KeyCode::Enter), Some(Msg::Open));
    assert_eq!(m(&app, KeyCode::Char('s')), Some(Msg::SortMode));
    assert_eq!(m(&app, KeyCode::Char('f')), Some(Msg::FilterMode));
    assert_eq!(m(&app, KeyCode::Char('/')), Some(Msg::FilterMode));
    assert_eq!(m(&app, KeyCode::Char('p')), Some(Msg::TogglePause));
    assert_eq!(m(&app, KeyCode::Char('+')), Some(Msg::LongerInterval));
    assert_eq!(m(&app, KeyCode::Char('-')), Some(Msg::ShorterInterval));
    assert_eq!(m(&app, KeyCode::Char('?')), Some(Msg::ToggleHelp));
    assert_eq!(m(&app, KeyCode::Char('x')), None);
    assert_eq!(
        key_to_msg(
            &app,
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
        ),
        Some(Msg::Quit)
    );
    // Sort mode: arrows and `s` move the column.
    app.update(Msg::SortMode);
    assert_eq!(m(&app, KeyCode::Right), Some(Msg::SortNext));
    assert_eq!(m(&app, KeyCode::Char('s')), Some(Msg::SortNext));
    assert_eq!(m(&app, KeyCode::Left), Some(Msg::SortPrev));
    assert_eq!(m(&app, KeyCode::Esc), Some(Msg::SortDone));
    // Filter mode: letters are text, q included.
    app.update(Msg::SortDone);
    app.update(Msg::FilterMode);
    assert_eq!(m(&app, KeyCode::Char('q')), Some(Msg::FilterInput('q')));
    assert_eq!(m(&app, KeyCode::Esc), Some(Msg::FilterCancel));
    app.update(Msg::FilterCancel);
    // Detail: Esc goes back, q quits, Tab/t and BackTab/T switch sections.
    app.update(Msg::Open);
    assert_eq!(m(&app, KeyCode::Esc), Some(Msg::Back));
    assert_eq!(m(&app, KeyCode::Tab), Some(Msg::Section(true)));
    assert_eq!(m(&app, KeyCode::Char('t')), Some(Msg::Section(true)));
    assert_eq!(m(&app, KeyCode::BackTab), Some(Msg::Section(false)));
    assert_eq!(m(&app, KeyCode::Char('q')), Some(Msg::Quit));
    // Help: any key closes it.
    app.update(Msg::ToggleHelp);
    assert_eq!(m(&app, KeyCode::Char('x')), Some(Msg::ToggleHelp));
}

#[test]
fn sorting_cycles_and_reverses() {
    let mut app = app_with(replay_info(), data_of(&many_events()));
    assert_eq!(app.sort(), (Column::IopfRate, true));
    assert_eq!(
        pids(&app),
        ["2002", "1234", "2001", "3100", "-", "4000", "4100"]
    );
    press(&mut app, KeyCode::Char('s'));
    assert_eq!(app.mode(), Mode::Sort);
    press(&mut app, KeyCode::Left);
    press(&mut app, KeyCode::Left);
    press(&mut app, KeyCode::Left);
    assert_eq!(
        app.sort(),
        (Column::Pid, false),
        "text columns ascend first"
    );
    assert_eq!(
        pids(&app),
        ["1234", "2001", "2002", "3100", "4000", "4100", "-"]
    );
    // `s` cycles through the shown columns back to where it started:
    // the ioctl ones (rdma_server made one), not the request ones.
    assert_eq!(app.columns().len(), 15);
    assert!(app.columns().contains(&Column::CtlRate));
    assert!(!app.columns().contains(&Column::OpRate));
    for _ in 0..app.columns().len() {
        press(&mut app, KeyCode::Char('s'));
    }
    assert_eq!(app.sort().0, Column::Pid);
    press(&mut app, KeyCode::Char('r'));
    assert_eq!(app.sort(), (Column::Pid, true));
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.mode(), Mode::Table);
    // Direct keys in the table.
    press(&mut app, KeyCode::Char('>'));
    assert_eq!(app.sort(), (Column::Comm, false));
    assert_eq!(app.visible_rows()[0].comm, "[unattrib:11]");
    for _ in 0..8 {
        press(&mut app, KeyCode::Char('>'));
    }
    assert_eq!(app.sort(), (Column::Pinned, true));
    assert_eq!(pids(&app)[..3], ["1234", "4000", "4100"], "ties by pid");
}

#[test]
fn selection_follows_the_process_and_drills_down() {
    let mut app = app_with(replay_info(), data_of(&many_events()));
    assert_eq!(app.selected(), Some(ProcId::Pid(2002)));
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Down);
    assert_eq!(app.selected(), Some(ProcId::Pid(2001)));
    press(&mut app, KeyCode::Char('k'));
    assert_eq!(app.selected(), Some(ProcId::Pid(1234)));
    press(&mut app, KeyCode::Up);
    press(&mut app, KeyCode::Up);
    assert_eq!(app.selected(), Some(ProcId::Pid(2002)), "stops at the top");
    press(&mut app, KeyCode::End);
    assert_eq!(app.selected(), Some(ProcId::Pid(4100)));
    press(&mut app, KeyCode::Home);
    press(&mut app, KeyCode::Char('j'));
    // Re-sorting keeps the selected process, wherever it moves.
    app.update(Msg::SortNext);
    app.update(Msg::SortNext);
    assert_eq!(app.selected(), Some(ProcId::Pid(1234)));
    press(&mut app, KeyCode::Enter);
    assert_eq!(
        (app.mode(), app.detail()),
        (Mode::Detail, Some(ProcId::Pid(1234)))
    );
    assert_eq!(app.detail_row().map(|r| r.comm.as_str()), Some("fio"));
    // New data keeps the drill-down on the same process.
    app.update(Msg::Data(data_of(&many_events())));
    assert_eq!(app.detail(), Some(ProcId::Pid(1234)));
    // Arrows in the drill-down move to the neighbouring process.
    press(&mut app, KeyCode::Down);
    assert_ne!(app.detail(), Some(ProcId::Pid(1234)));
    assert_eq!(app.detail(), app.selected());
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.mode(), Mode::Table);
    assert_eq!(press(&mut app, KeyCode::Char('q')), Effect::Quit);
}

#[test]
fn filter_types_keeps_and_clears() {
    let mut app = app_with(replay_info(), data_of(&many_events()));
    press(&mut app, KeyCode::Char('/'));
    type_keys(&mut app, "BENCH");
    assert_eq!(app.filter(), "BENCH");
    assert_eq!(pids(&app), ["2002", "4000"], "case-insensitive on COMM");
    assert_eq!(app.selected(), Some(ProcId::Pid(2002)));
    press(&mut app, KeyCode::Backspace);
    press(&mut app, KeyCode::Enter);
    assert_eq!((app.mode(), app.filter()), (Mode::Table, "BENC"));
    // Esc in the table clears a filter before it quits.
    assert_eq!(press(&mut app, KeyCode::Esc), Effect::None);
    assert_eq!(app.filter(), "");
    assert_eq!(pids(&app).len(), 7);
    // By pid and by device.
    press(&mut app, KeyCode::Char('f'));
    type_keys(&mut app, "3100");
    assert_eq!(pids(&app), ["3100"]);
    press(&mut app, KeyCode::Esc);
    assert_eq!((app.mode(), app.filter()), (Mode::Table, ""));
    press(&mut app, KeyCode::Char('f'));
    type_keys(&mut app, "03.0");
    assert_eq!(pids(&app), ["2002", "2001", "3100", "-"]);
    assert_eq!(press(&mut app, KeyCode::Esc), Effect::None);
    assert_eq!(press(&mut app, KeyCode::Esc), Effect::Quit);
}

#[test]
fn pause_freezes_and_interval_steps() {
    let mut app = app_with(replay_info(), data_of(&one_process_events()));
    press(&mut app, KeyCode::Char('p'));
    assert!(app.paused());
    app.update(Msg::Data(data_of(&many_events())));
    assert_eq!(pids(&app), ["1234"], "frozen while paused");
    press(&mut app, KeyCode::Char('p'));
    assert_eq!(pids(&app).len(), 7, "the newest data on resume");
    assert_eq!(
        press(&mut app, KeyCode::Char('+')),
        Effect::SetInterval(2 * SEC)
    );
    assert_eq!(
        press(&mut app, KeyCode::Char('-')),
        Effect::SetInterval(SEC)
    );
    for _ in 0..10 {
        press(&mut app, KeyCode::Char('-'));
    }
    assert_eq!(app.interval_ns(), 100_000_000);
    assert_eq!(press(&mut app, KeyCode::Char('-')), Effect::None);
    press(&mut app, KeyCode::Char('?'));
    assert!(app.help());
    assert_eq!(press(&mut app, KeyCode::Char('j')), Effect::None);
    assert!(!app.help());
}

// ---- feed ------------------------------------------------------------------

#[test]
fn feed_rates_history_and_pasids() {
    let feed = feed_of(&many_events());
    let data = feed.view(START + 5 * SEC);
    let row = |pid: u32| {
        data.rows
            .iter()
            .find(|r| r.proc_id == ProcId::Pid(pid))
            .unwrap_or_else(|| panic!("no row for {pid}"))
    };
    let zip = row(2002);
    assert_eq!(zip.devices, [DEV_A, DEV_B]);
    assert_eq!(zip.iopf_total, 5 * 420);
    assert!((zip.iopf_per_s - 420.0).abs() < 1e-9, "{}", zip.iopf_per_s);
    assert_eq!(zip.detail.history.len(), 5);
    assert!(zip.detail.history.iter().all(|s| s.iopfs == 420));
    let pasids: Vec<(u32, Option<bool>)> = zip
        .detail
        .pasids
        .iter()
        .map(|p| (p.pasid, p.bound))
        .collect();
    assert_eq!(pasids, [(7, Some(true)), (8, Some(true))]);
    let qemu = row(2001);
    assert_eq!(qemu.detail.pasids[0].bound, Some(false));
    assert_eq!(qemu.detail.pasids[0].devices, [DEV_B]);
    // sec_test faulted for 3 of 5 seconds: two zero samples at the end.
    let sec = row(3100);
    let iopfs: Vec<u64> = sec.detail.history.iter().map(|s| s.iopfs).collect();
    assert_eq!(iopfs, [10, 10, 10, 0, 0]);
    assert_eq!(sec.iopf_per_s, 0.0);
    let fio = row(1234);
    assert_eq!(fio.pinned_pages, 5 * 4 * 64 - 2 * 64);
    assert!((fio.pin_calls_per_s - 4.0).abs() < 1e-9);
    assert_eq!(fio.detail.ranges.len(), fio.detail.range_count.min(32));
    let unattributed = data
        .rows
        .iter()
        .find(|r| r.proc_id == ProcId::Unattributed(11))
        .unwrap_or_else(|| panic!("no [unattributed]"));
    assert_eq!(unattributed.iopf_total, 30);
    assert_eq!(unattributed.detail.pasids[0].pasid, 11);
    assert!(data.events_per_s > 0.0);
}

#[test]
fn feed_history_keeps_a_minute_and_gaps_are_bounded() {
    let mut feed = Feed::new(SEC, Some(START), ModelConfig::default());
    for s in 0..90 {
        feed.ingest(&[iopf(
            START + s * SEC + 1,
            Some(1),
            "a",
            DEV_A,
            1,
            0x1000,
            5_000,
        )]);
    }
    feed.advance_to(START + 90 * SEC);
    let d = feed.view(START + 90 * SEC);
    let h = &d.rows[0].detail.history;
    assert_eq!(h.len(), 60);
    assert_eq!(h[59].end_ns, START + 90 * SEC);
    // A day of silence costs a bounded number of intervals.
    feed.advance_to(START + 86_400 * SEC);
    let d = feed.view(START + 86_400 * SEC);
    assert!(d.rows.iter().all(|r| r.detail.history.is_empty()));
    assert_eq!(d.rows[0].iopf_per_s, 0.0);
}

#[test]
fn feed_interval_change_and_partial_close() {
    let mut feed = Feed::new(SEC, Some(START), ModelConfig::default());
    feed.ingest(&[iopf(START + 10, Some(1), "a", DEV_A, 1, 0x1000, 5_000)]);
    feed.set_interval(2 * SEC);
    feed.advance_to(START + SEC + 1);
    assert_eq!(
        feed.view(START + SEC + 1).rows[0].iopf_per_s,
        0.0,
        "not closed"
    );
    feed.advance_to(START + 2 * SEC);
    assert!((feed.view(START + 2 * SEC).rows[0].iopf_per_s - 0.5).abs() < 1e-9);
    // A replay's end closes the running interval at the last event.
    let mut feed = Feed::new(SEC, Some(START), ModelConfig::default());
    feed.ingest(&[
        iopf(START + 10, Some(1), "a", DEV_A, 1, 0x1000, 5_000),
        iopf(START + SEC / 2, Some(1), "a", DEV_A, 1, 0x1000, 5_000),
    ]);
    feed.close_partial();
    let rate = feed.view(feed.latest_ns()).rows[0].iopf_per_s;
    assert!((rate - 4.0).abs() < 1e-9, "{rate}");
}

#[test]
fn histogram_rows_are_log_linear_and_fit() {
    let buckets = [(1_500, 3), (2_100, 5), (9_000, 1), (45_000, 2)];
    let rows = view::hist_rows(&buckets, 100);
    assert_eq!(rows.first(), Some(&(1_000, 2_000, 3)));
    assert_eq!(rows.last(), Some(&(40_000, 50_000, 2)));
    assert_eq!(rows.iter().map(|r| r.2).sum::<u64>(), 11);
    let coarse = view::hist_rows(&buckets, 6);
    assert_eq!(
        coarse,
        [
            (1_000, 2_000, 3),
            (2_000, 5_000, 5),
            (5_000, 10_000, 1),
            (10_000, 20_000, 0),
            (20_000, 50_000, 2)
        ]
    );
    assert_eq!(view::hist_rows(&buckets, 2).len(), 2);
    assert!(view::hist_rows(&[], 5).is_empty());
}

#[test]
fn sparklines_are_right_aligned_and_never_hide_small_values() {
    assert_eq!(view::spark(&[0, 1, 8, 4, 100], 7), "   ▁▁▁█");
    assert_eq!(view::spark(&[1, 2, 3, 4, 5, 6, 7, 8], 8), "▁▂▃▄▅▆▇█");
    assert_eq!(view::spark(&[5, 1, 2], 2), "▄█");
    assert_eq!(view::spark(&[], 3), "   ");
    assert_eq!(view::spark(&[0, 0], 2), "  ");
}

#[test]
fn columns_fit_80_and_grow() {
    let w = |cols: &[(Column, u16)]| cols.iter().map(|c| c.1).sum::<u16>() + cols.len() as u16 - 1;
    let base = [Group::Base];
    let c80 = view::columns(80, &base);
    assert_eq!(c80.len(), 12);
    assert_eq!(w(&c80), 80);
    let c120 = view::columns(120, &base);
    assert_eq!(w(&c120), 120);
    let c60 = view::columns(60, &base);
    assert!(w(&c60) <= 60 && c60.len() < 12);
    assert!(c60.iter().any(|c| c.0 == Column::IopfRate));
    // With ioctls and requests: every one of their columns but the
    // first to go fits 80, all but p50 fit 120.
    let all = [Group::Base, Group::Ioctls, Group::Requests];
    let has = |cols: &[(Column, u16)], c: Column| cols.iter().any(|x| x.0 == c);
    let c80 = view::columns(80, &all);
    assert!(w(&c80) == 80, "{c80:?}");
    for c in [
        Column::Pid,
        Column::Comm,
        Column::IopfRate,
        Column::P99,
        Column::Pinned,
        Column::CtlRate,
        Column::OpRate,
        Column::OpP99,
        Column::OpP999,
        Column::OpTailFaulted,
    ] {
        assert!(has(&c80, c), "{c:?} not in {c80:?}");
    }
    let c120 = view::columns(120, &all);
    assert_eq!(w(&c120), 120);
    assert_eq!(c120.len(), Column::ALL.len() - 1);
    assert!(!has(&c120, Column::P50));
    // Titles fit their columns at every width.
    for width in [40, 60, 80, 100, 120, 200] {
        for (c, cw) in view::columns(width, &all) {
            assert!(
                c.title().chars().count() <= usize::from(cw),
                "{c:?} at {width}"
            );
        }
        assert!(w(&view::columns(width, &all)) <= width.max(80));
    }
}

#[test]
fn extreme_values_render_without_panicking() {
    let mut evs = Vec::new();
    for (i, ts) in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX]
        .into_iter()
        .enumerate()
    {
        let i = i as u64;
        evs.push(iopf(
            ts,
            Some(u32::MAX),
            "\u{1b}[31mévil\tcomm",
            "",
            u32::MAX,
            u64::MAX - i,
            u64::MAX - i,
        ));
        evs.push(iopf(ts, None, "", &"d".repeat(300), 0, 0, 0));
        evs.push(pin(ts, u32::MAX, "x", u64::MAX - 4095, i64::MAX, u64::MAX));
        evs.push(pin(ts, 1, "y", 0, -14, 0));
        evs.push(unpin(ts, u32::MAX, "x", u64::MAX));
        evs.push(Event::Loss(LossSample {
            ts_ns: ts,
            losses: {
                let mut l = Ledger::new();
                for &r in LossReason::ALL {
                    l.set(r, u64::MAX);
                }
                l
            },
        }));
    }
    let mut feed = Feed::new(1, Some(0), ModelConfig::default());
    feed.ingest(&evs);
    feed.advance_to(u64::MAX);
    feed.close_partial();
    let mut app = app_with(replay_info(), Box::new(feed.view(u64::MAX)));
    for (w, h) in [(80, 24), (120, 40), (20, 5), (1, 1)] {
        render(&app, w, h);
        for k in [
            KeyCode::Enter,
            KeyCode::Down,
            KeyCode::Esc,
            KeyCode::Char('?'),
            KeyCode::Esc,
            KeyCode::Char('d'),
            KeyCode::Esc,
        ] {
            press(&mut app, k);
            render(&app, w, h);
        }
    }
}
