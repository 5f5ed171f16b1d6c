//! Synthetic recordings for the export, analysis and CLI tests: two runs
//! of a benchmark (`fio`) on an accelerator, before and after pinning its
//! buffers, built from a fixed pseudo-random sequence (no clock), and the
//! golden-file helper (`UACCE_TRACE_BLESS=1` rewrites the files).

#![allow(dead_code)]

pub mod serve;
pub mod skip;

use std::path::{Path, PathBuf};

pub use uacce_trace::formats::Format;
use uacce_trace::{
    commands::record::Recorder,
    ingest::event::{
        Event, HookType, IopfEvent, LossSample, PasidEvent, PinEvent, PinIoctl, PinIoctlEvent,
    },
    ingest::run::RunMeta,
};
use uacce_trace_common::PinFunc;

// Not every test binary uses each of them.
#[allow(unused_imports)]
pub use skip::{note, skip, skip_part, Lack};

/// CLOCK_MONOTONIC at the start of the synthetic runs.
pub const START_MONO: u64 = 1_000_000_000_000;
/// Wall clock at the start.
pub const START_UNIX: u64 = 1_700_000_000_000_000_000;
pub const SEC: u64 = 1_000_000_000;
pub const FIO: u32 = 1234;
pub const QEMU: u32 = 555;
pub const DEV: &str = "0000:00:02.0";
pub const PIN_BASE: u64 = 0x7f00_0000_0000;
pub const BUF_BASE: u64 = 0x7f10_0000_0000;

/// An event or an interval mark, in recorded order.
#[derive(Clone, Debug)]
pub enum Item {
    Ev(Event),
    Mark(u64),
}

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

pub fn header(command: &str) -> RunMeta {
    RunMeta {
        start_unix_ns: START_UNIX,
        start_mono_ns: START_MONO,
        kernel: "6.12.0-uacce-test".into(),
        plan: "pin: kprobe; unpin: kprobe; iopf: fentry".into(),
        command: command.into(),
    }
}

fn pin(
    ts: u64,
    tgid: u32,
    comm: &str,
    func: PinFunc,
    start: u64,
    pages: u64,
    latency: u64,
) -> Event {
    Event::Pin(PinEvent {
        ts_ns: ts,
        latency_ns: latency,
        tgid,
        tid: tgid + 1,
        comm: comm.into(),
        func,
        hook: HookType::Kprobe,
        start,
        nr_pages: pages,
        ret: pages as i64,
        gup_flags: 0x10103,
        longterm: func.is_pin(),
    })
}

fn iopf(ts: u64, tgid: Option<u32>, device: &str, addr: u64, latency: u64) -> Event {
    Event::Iopf(IopfEvent {
        ts_ns: ts,
        latency_ns: latency,
        tgid,
        comm: if tgid.is_some() {
            "fio".into()
        } else {
            String::new()
        },
        device: device.into(),
        pasid: 2,
        grpid: (ts % 256) as u32,
        perm: 3,
        flags: 1,
        addr,
        response: 0,
        hook: HookType::Fentry,
    })
}

fn ioctl(ts: u64, cmd: PinIoctl, addr: u64, size: u64, latency: u64) -> Event {
    Event::PinIoctl(PinIoctlEvent {
        ts_ns: ts,
        latency_ns: latency,
        tgid: FIO,
        tid: FIO + 1,
        comm: "fio".into(),
        cmd,
        addr,
        size,
        ret: 0,
        hook: HookType::Tracepoint,
        pin_calls: 1,
        pages: size / 4096,
        driver_call: None,
    })
}

fn qemu_pins(rng: &mut Lcg, out: &mut Vec<(u64, Event)>) {
    for i in 0..20u64 {
        let ts = START_MONO + 50_000_000 + i * 140_000_000;
        let pages = rng.range(1, 9);
        let addr = 0x5500_0000_0000 + i * 0x10_0000;
        out.push((
            ts,
            pin(
                ts,
                QEMU,
                "qemu-kvm",
                PinFunc::PinUserPagesRemote,
                addr,
                pages,
                rng.range(800, 6_000),
            ),
        ));
        let ts2 = ts + 30_000_000;
        out.push((
            ts2,
            pin(
                ts2,
                QEMU,
                "qemu-kvm",
                PinFunc::UnpinUserPagesDirtyLock,
                0,
                pages,
                rng.range(300, 2_000),
            ),
        ));
    }
}

fn sorted(mut v: Vec<(u64, Event)>) -> Vec<Item> {
    v.sort_by_key(|(ts, _)| *ts);
    v.into_iter().map(|(_, e)| Item::Ev(e)).collect()
}

/// Before pinning: fio faults on its buffers all run long (with a few
/// multi-millisecond outliers), some faults nobody owns, a loss sample,
/// and a phase mark at 2.5 s.
pub fn before() -> Vec<Item> {
    let mut rng = Lcg(42);
    let mut v: Vec<(u64, Event)> = Vec::new();
    let t0 = START_MONO + 5_000_000;
    v.push((
        t0,
        Event::Pasid(PasidEvent {
            ts_ns: t0,
            tgid: FIO,
            comm: "fio".into(),
            pasid: 2,
            bound: true,
            hook: HookType::Kprobe,
        }),
    ));
    // A small pinned control block; one fault still lands in it.
    let t1 = START_MONO + 10_000_000;
    v.push((
        t1,
        pin(
            t1,
            FIO,
            "fio",
            PinFunc::PinUserPagesFast,
            PIN_BASE,
            16,
            4_200,
        ),
    ));
    for i in 0..300u64 {
        let ts = START_MONO + 20_000_000 + i * 9_500_000;
        let addr = BUF_BASE + rng.range(0, 96) * 4096 + rng.range(0, 4096);
        let latency = if i % 97 == 13 {
            rng.range(2_000_000, 4_000_000)
        } else {
            rng.range(20_000, 200_000)
        };
        v.push((ts, iopf(ts, Some(FIO), DEV, addr, latency)));
    }
    let t2 = START_MONO + 700_000_000;
    v.push((
        t2,
        iopf(t2, Some(FIO), DEV, PIN_BASE + 3 * 4096 + 8, 35_000),
    ));
    for i in 0..5u64 {
        let ts = START_MONO + 300_000_000 + i * 400_000_000;
        v.push((
            ts,
            iopf(
                ts,
                None,
                "0000:00:03.0",
                0x1000 * i,
                rng.range(40_000, 90_000),
            ),
        ));
    }
    let t3 = START_MONO + 1_500_000_000;
    v.push((
        t3,
        Event::Loss(LossSample {
            ts_ns: t3,
            losses: uacce_trace::ingest::losses::Ledger::from_counts(&[
                (uacce_trace::ingest::losses::LossReason::RingFullPin, 2),
                (uacce_trace::ingest::losses::LossReason::IopfUnanswered, 1),
            ]),
        }),
    ));
    let t4 = START_MONO + 2_900_000_000;
    v.push((
        t4,
        pin(t4, FIO, "fio", PinFunc::UnpinUserPages, 0, 16, 1_100),
    ));
    qemu_pins(&mut rng, &mut v);
    let mut items = sorted(v);
    let mark = START_MONO + 2_500_000_000;
    let at = items
        .iter()
        .position(|i| matches!(i, Item::Ev(e) if e.ts_ns() >= mark))
        .unwrap_or(items.len());
    items.insert(at, Item::Mark(mark));
    items
}

/// After pinning: fio pins its whole buffer through uacce_ctrl up front
/// and takes no faults; qemu-kvm does what it did before.
pub fn after() -> Vec<Item> {
    let mut rng = Lcg(7);
    let mut v: Vec<(u64, Event)> = Vec::new();
    let t0 = START_MONO + 5_000_000;
    let size = 96 * 4096;
    v.push((
        t0 + 1_000,
        pin(
            t0 + 1_000,
            FIO,
            "fio",
            PinFunc::PinUserPagesFast,
            BUF_BASE,
            96,
            61_000,
        ),
    ));
    v.push((t0, ioctl(t0, PinIoctl::UaccePin, BUF_BASE, size, 75_000)));
    let t1 = START_MONO + 2_950_000_000;
    v.push((
        t1 + 1_000,
        pin(
            t1 + 1_000,
            FIO,
            "fio",
            PinFunc::UnpinUserPages,
            0,
            96,
            12_000,
        ),
    ));
    v.push((t1, ioctl(t1, PinIoctl::UacceUnpin, BUF_BASE, size, 20_000)));
    qemu_pins(&mut rng, &mut v);
    sorted(v)
}

/// Write `items` through the library's recorder, as `record --replay` does.
pub fn record(path: &Path, format: Format, items: &[Item], command: &str) {
    let mut rec = Recorder::create(path, format, &header(command), SEC, None)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut last = START_MONO;
    for item in items {
        let res = match item {
            Item::Ev(e) => {
                last = last.max(e.ts_ns());
                if format == Format::Raw {
                    rec.events(std::slice::from_ref(e))
                } else {
                    rec.events_by_event_time(std::slice::from_ref(e))
                }
            }
            Item::Mark(ts) => rec.mark(*ts),
        };
        res.unwrap_or_else(|e| panic!("{e}"));
    }
    rec.finish(last).unwrap_or_else(|e| panic!("{e}"));
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "uacce-trace-test-{}-{n}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
}

/// Compare `actual` with the golden file `name` byte for byte; rewrite it
/// instead when UACCE_TRACE_BLESS=1.
pub fn check_golden(name: &str, actual: &[u8]) {
    let path = golden_dir().join(name);
    if std::env::var("UACCE_TRACE_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("blessed {}", path.display());
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UACCE_TRACE_BLESS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let shown: String = String::from_utf8_lossy(actual).chars().take(4000).collect();
        panic!(
            "{} differs from the output (run with UACCE_TRACE_BLESS=1 to accept):\n{shown}",
            path.display(),
        );
    }
}
