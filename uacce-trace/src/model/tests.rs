//! Unit and property tests of the aggregator, driven by synthetic events.

use proptest::prelude::*;
use uacce_trace_common::PinFunc;

use super::*;
use crate::ingest::event::{HookType, LossSample};
use crate::ingest::losses::{Ledger, LossReason};

const P: u64 = 4096;

fn pin(ts: u64, tgid: u32, start: u64, pages: i64, latency: u64) -> Event {
    Event::Pin(PinEvent {
        ts_ns: ts,
        latency_ns: latency,
        tgid,
        tid: tgid,
        comm: format!("proc{tgid}"),
        func: PinFunc::PinUserPagesFast,
        hook: HookType::Kprobe,
        start,
        nr_pages: pages.unsigned_abs(),
        ret: pages,
        gup_flags: 0,
        longterm: false,
    })
}

fn unpin(ts: u64, tgid: u32, pages: u64, latency: u64) -> Event {
    Event::Pin(PinEvent {
        ts_ns: ts,
        latency_ns: latency,
        tgid,
        tid: tgid,
        comm: format!("proc{tgid}"),
        func: PinFunc::UnpinUserPages,
        hook: HookType::Kprobe,
        start: 0,
        nr_pages: pages,
        ret: pages as i64,
        gup_flags: 0,
        longterm: false,
    })
}

fn iopf(ts: u64, tgid: Option<u32>, addr: u64, latency: u64) -> Event {
    Event::Iopf(IopfEvent {
        ts_ns: ts,
        latency_ns: latency,
        tgid,
        comm: tgid.map(|t| format!("proc{t}")).unwrap_or_default(),
        device: "0000:00:02.0".into(),
        pasid: 1,
        grpid: 0,
        perm: 2,
        flags: 0,
        addr,
        response: 0,
        hook: HookType::Kprobe,
    })
}

fn ioctl(ts: u64, tgid: u32, cmd: PinIoctl, addr: u64, size: u64) -> Event {
    Event::PinIoctl(PinIoctlEvent {
        ts_ns: ts,
        latency_ns: 1000,
        tgid,
        tid: tgid,
        comm: format!("proc{tgid}"),
        cmd,
        addr,
        size,
        ret: 0,
        hook: HookType::Tracepoint,
        pin_calls: 1,
        pages: size.div_ceil(4096),
        driver_call: None,
    })
}

fn loss(ts: u64, dropped: u64, unanswered: u64) -> Event {
    let mut losses = Ledger::new();
    losses.set(LossReason::RingFullPin, dropped);
    losses.set(LossReason::IopfUnanswered, unanswered);
    Event::Loss(LossSample { ts_ns: ts, losses })
}

#[test]
fn faults_inside_pinned_ranges_are_counted_at_that_moment() {
    let mut a = Aggregator::new(ModelConfig::default());
    a.ingest(&pin(10, 7, 0x10000, 4, 500));
    a.ingest(&iopf(20, Some(7), 0x11000, 3000)); // pinned
    a.ingest(&unpin(30, 7, 4, 200));
    a.ingest(&iopf(40, Some(7), 0x11000, 4000)); // no longer pinned
    a.ingest(&iopf(50, None, 0x11000, 5000));
    let s = a.snapshot(100);
    let p = &s.processes[0];
    assert_eq!(p.proc_id, ProcId::Pid(7));
    assert_eq!((p.faults, p.faults_in_pinned), (2, 1));
    assert_eq!(p.ledger.pinned_pages, 0);
    assert_eq!(p.fault_regions.len(), 1);
    assert_eq!(s.processes[1].proc_id, ProcId::Unattributed(1));
    let kinds: Vec<(Kind, ProcId, u64)> = s
        .series
        .iter()
        .map(|x| (x.key.kind, x.key.proc_id, x.count))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (Kind::Iopf, ProcId::Pid(7), 2),
            (Kind::Iopf, ProcId::Unattributed(1), 1),
            (Kind::Pin, ProcId::Pid(7), 1),
            (Kind::Unpin, ProcId::Pid(7), 1),
        ]
    );
}

#[test]
fn intervals_split_samples_and_loss() {
    let mut a = Aggregator::new(ModelConfig {
        start_ns: Some(0),
        ..Default::default()
    });
    a.ingest(&pin(10, 1, 0x1000, 1, 100));
    a.ingest(&loss(20, 3, 1));
    let w1 = a.take_interval(1000);
    a.ingest(&pin(1010, 1, 0x2000, 1, 200));
    a.ingest(&loss(1020, 5, 1));
    let w2 = a.take_interval(2000);
    let w3 = a.take_interval(3000);
    let un = |l: &Ledger| l.get(LossReason::IopfUnanswered);
    assert_eq!(
        (w1.start_ns, w1.end_ns, w1.losses.total(), un(&w1.losses)),
        (0, 1000, 4, 1)
    );
    assert_eq!(
        (
            w2.start_ns,
            w2.losses.total(),
            un(&w2.losses),
            w2.losses_total.total()
        ),
        (1000, 2, 0, 6)
    );
    assert_eq!(w2.losses.breakdown(), "ring_full_pin 2");
    // A loss the consumer counts itself is added to the samples'.
    a.count_loss(LossReason::ProcUnplaceable, 4);
    let w4 = a.take_interval(4000);
    assert_eq!(w4.losses.breakdown(), "proc_unplaceable 4");
    assert_eq!(a.snapshot(4000).losses.total(), 10);
    assert_eq!(w1.series.len(), 1);
    assert_eq!(w2.series[0].hist.len(), 1);
    assert!(w3.series.is_empty());
    assert_eq!(a.snapshot(3000).series[0].count, 2);
}

#[test]
fn idle_processes_fold_into_other_without_losing_counts() {
    let mut a = Aggregator::new(ModelConfig {
        idle_after_ns: 1_000,
        start_ns: Some(0),
        ..Default::default()
    });
    a.ingest(&pin(10, 1, 0x1000, 2, 100));
    a.ingest(&unpin(20, 1, 2, 100));
    a.ingest(&pin(30, 2, 0x1000, 2, 100)); // keeps pages pinned: stays
    a.take_interval(500);
    assert_eq!(a.process_count(), 2);
    a.take_interval(5_000);
    assert_eq!(a.process_count(), 1);
    let s = a.snapshot(5_000);
    let other = s
        .processes
        .iter()
        .find(|p| p.proc_id == ProcId::Other)
        .cloned();
    let other = other.unwrap_or_else(|| panic!("no [other] in {:?}", s.processes));
    assert_eq!(other.folded_processes, 1);
    assert_eq!(other.ledger.pin_pages_total, 2);
    let total: u64 = s.series.iter().map(|x| x.count).sum();
    assert_eq!(total, 3);
}

#[test]
fn process_cap_bounds_memory_under_churn() {
    let mut a = Aggregator::new(ModelConfig {
        max_processes: 8,
        ..Default::default()
    });
    for pid in 0..2_000u32 {
        a.ingest(&pin(u64::from(pid), pid, 0x1000, 1, 100));
        a.ingest(&unpin(u64::from(pid), pid, 1, 100));
    }
    assert!(a.process_count() <= 8);
    let s = a.snapshot(10_000);
    assert_eq!(s.series.iter().map(|x| x.count).sum::<u64>(), 4_000);
    assert!(s.series.len() <= 2 * 9);
}

#[test]
fn a_busy_process_outlives_churn_seen_at_the_same_time() {
    // One summary-mode reading: every process gets the reading's time.
    let mut a = Aggregator::new(ModelConfig {
        max_processes: 4,
        ..Default::default()
    });
    for _ in 0..100 {
        a.ingest(&pin(5, 1, 0x1000, 1, 100));
    }
    for pid in 100..110u32 {
        a.ingest(&pin(5, pid, 0x1000, 1, 100));
    }
    let s = a.snapshot(10);
    let busy = s.processes.iter().find(|p| p.proc_id == ProcId::Pid(1));
    assert!(
        busy.is_some(),
        "the busy process was folded: {:?}",
        s.processes
    );
    assert_eq!(s.series.iter().map(|x| x.count).sum::<u64>(), 110);
}

#[test]
fn ioctl_ranges_count_as_pinned() {
    let mut a = Aggregator::new(ModelConfig::default());
    a.ingest(&ioctl(1, 3, PinIoctl::UaccePin, 0x40000, 8 * P));
    a.ingest(&iopf(2, Some(3), 0x40000 + 5 * P, 100));
    a.ingest(&ioctl(3, 3, PinIoctl::UacceUnpin, 0x40000, 8 * P));
    a.ingest(&iopf(4, Some(3), 0x40000 + 5 * P, 100));
    let s = a.snapshot(5);
    assert_eq!(
        (s.processes[0].faults, s.processes[0].faults_in_pinned),
        (2, 1)
    );
    let l = &s.processes[0].ledger;
    assert_eq!((l.pin_ioctls, l.unpin_ioctls, l.ioctl_calls()), (1, 1, 2));
    // The pages the pin calls inside each ioctl moved, as credited.
    assert_eq!((l.ioctl_pin_pages, l.ioctl_unpin_pages), (8, 8));
    assert!(s.series.iter().any(|x| x.key.kind == Kind::UacceCtrl));
}

/// A random operation on one process's ledger.
#[derive(Clone, Debug)]
enum Op {
    Pin { page: u64, pages: i64 },
    Unpin { pages: u64 },
    IoctlPin { page: u64, pages: u64 },
    IoctlUnpin { page: u64, pages: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..64, -2i64..16).prop_map(|(page, pages)| Op::Pin { page, pages }),
        (0u64..20).prop_map(|pages| Op::Unpin { pages }),
        (0u64..64, 0u64..16).prop_map(|(page, pages)| Op::IoctlPin { page, pages }),
        (0u64..64, 0u64..16).prop_map(|(page, pages)| Op::IoctlUnpin { page, pages }),
    ]
}

proptest! {
    #[test]
    fn ledger_invariants(ops in proptest::collection::vec(op(), 0..200), max_grants in 1usize..8) {
        let mut l = PinLedger::new(P, max_grants);
        let (mut pinned_sum, mut unpinned_sum) = (0u64, 0u64);
        for op in ops {
            match op {
                Op::Pin { page, pages } => {
                    l.pin(0x100_0000 + page * P, pages, false);
                    pinned_sum += u64::try_from(pages).unwrap_or(0);
                }
                Op::Unpin { pages } => {
                    l.unpin(pages);
                    unpinned_sum += pages;
                }
                Op::IoctlPin { page, pages } => l.pin_ioctl(0x100_0000 + page * P, pages * P, true),
                Op::IoctlUnpin { page, pages } => l.unpin_ioctl(0x100_0000 + page * P, pages * P, true),
            }
            let s = l.summary();
            // Pinned pages equal the sum of pins minus unpins (the excess
            // unpins are counted, never making the count negative).
            prop_assert_eq!(s.pinned_pages + unpinned_sum, pinned_sum + s.unmatched_unpin_pages);
            prop_assert_eq!(s.pin_pages_total, pinned_sum);
            prop_assert_eq!(s.unpin_pages_total, unpinned_sum);
            prop_assert_eq!(l.grant_pages() + s.unknown_address_pages, s.pinned_pages);
            // Ranges never overlap (nor touch: they are coalesced).
            let ranges: Vec<(u64, u64)> = l.ranges().iter().collect();
            for r in &ranges {
                prop_assert!(r.0 < r.1);
            }
            for w in ranges.windows(2) {
                prop_assert!(w[0].1 < w[1].0, "overlap or adjacency: {:?}", w);
            }
            prop_assert_eq!(l.ranges_now(), l.ranges().clone());
            if s.pinned_pages == 0 {
                prop_assert_eq!(l.grant_pages(), 0);
            }
        }
    }

}

proptest! {
    // Each case builds histograms up to seconds wide: keep the count modest.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn merged_intervals_equal_recording_everything(
        samples in proptest::collection::vec((0u64..10_000, 0u32..4, 1u64..5_000_000_000, any::<bool>()), 1..300),
        cuts in proptest::collection::vec(0u64..10_000, 0..10),
    ) {
        let mut samples = samples;
        samples.sort_by_key(|s| s.0);
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut a = Aggregator::new(ModelConfig { start_ns: Some(0), ..Default::default() });
        let mut merged: std::collections::BTreeMap<SeriesKey, Hist> = Default::default();
        let mut add = |w: IntervalWindow| {
            for s in w.series {
                hist::merge(merged.entry(s.key).or_insert_with(hist::new_hist), &s.hist);
            }
        };
        let mut cut_iter = cuts.into_iter().peekable();
        for (ts, pid, lat, is_fault) in samples {
            while let Some(&c) = cut_iter.peek() {
                if c > ts { break; }
                add(a.take_interval(c));
                cut_iter.next();
            }
            let ev = if is_fault { iopf(ts, Some(pid), 0x1000 * u64::from(pid), lat) } else { pin(ts, pid, 0x1000, 1, lat) };
            a.ingest(&ev);
        }
        add(a.take_interval(20_000));
        let snap = a.snapshot(20_000);
        prop_assert_eq!(snap.series.len(), merged.len());
        for s in &snap.series {
            let m = merged.get(&s.key);
            prop_assert!(m.is_some());
            if let Some(m) = m {
                prop_assert_eq!(hist::buckets(m), hist::buckets(&s.hist));
                prop_assert_eq!(Summary::of(m), s.summary);
            }
        }
    }
}

fn summary_event(ts: u64, tgid: u32, kind: SummaryKind, calls: u64, pages: u64) -> Event {
    use uacce_trace_common::summary::bucket_of;
    Event::Summary(SummaryEvent {
        ts_ns: ts,
        tgid,
        comm: "fio".into(),
        kind,
        pasid: if kind == SummaryKind::Iopf { 9 } else { 0 },
        device: if kind == SummaryKind::Iopf {
            "mock0".into()
        } else {
            String::new()
        },
        calls,
        errors: 1,
        pages,
        longterm_pages: pages / 2,
        latency_sum_ns: 0,
        buckets: vec![(bucket_of(1000), calls - 1), (bucket_of(90_000), 1)],
    })
}

/// Summary mode: counts go to the series (at bucket upper bounds, so no
/// percentile is below the exact one and none more than a bucket above),
/// errors and page counts to the ledger, and the event count is the calls.
#[test]
fn summary_events_count_calls_pages_and_latencies() {
    use uacce_trace_common::summary::{bucket_high, bucket_of};
    let mut a = Aggregator::new(ModelConfig::default());
    a.ingest(&summary_event(1_000, 7, SummaryKind::Pin, 100, 400));
    a.ingest(&summary_event(2_000, 7, SummaryKind::Unpin, 10, 300));
    a.ingest(&summary_event(
        3_000,
        7,
        SummaryKind::Ioctl(PinIoctl::UaccePin),
        5,
        64,
    ));
    let s = a.snapshot(4_000);
    assert_eq!(s.events, 115);
    let p = &s.processes[0];
    assert_eq!(p.proc_id, ProcId::Pid(7));
    assert_eq!((p.ledger.pin_calls, p.ledger.pin_errors), (99, 1));
    assert_eq!(p.ledger.pin_pages_total, 400);
    assert_eq!(p.ledger.longterm_pages_total, 200);
    assert_eq!(
        (p.ledger.unpin_calls, p.ledger.unpin_pages_total),
        (10, 300)
    );
    assert_eq!(p.ledger.pinned_pages, 100);
    assert_eq!((p.ledger.pin_ioctls, p.ledger.ioctl_errors), (4, 1));
    assert_eq!(
        (p.ledger.ioctl_pin_pages, p.ledger.ioctl_unpin_pages),
        (64, 0)
    );
    let pin = s
        .series
        .iter()
        .find(|x| x.key.kind == Kind::Pin)
        .expect("pin series");
    assert_eq!((pin.count, pin.errors), (100, 1));
    let p50 = pin.summary.p50;
    assert!(p50 >= 1000 && bucket_of(p50) == bucket_of(1000), "{p50}");
    assert!(pin.summary.max >= bucket_high(bucket_of(90_000)));
}

/// Summary mode's IO page faults: per process and device, or per PASID
/// when unattributed (tgid 0); counted as faults of the process, in no
/// fault region (no addresses), next to the sampled per-event ones.
#[test]
fn summary_iopfs_count_per_process_device_and_unattributed_pasid() {
    let mut a = Aggregator::new(ModelConfig::default());
    a.ingest(&summary_event(1_000, 7, SummaryKind::Iopf, 50, 0));
    a.ingest(&summary_event(2_000, 0, SummaryKind::Iopf, 4, 0));
    // One sampled fault of process 7 came per-event, with its address.
    a.ingest(&Event::Iopf(IopfEvent {
        ts_ns: 2_500,
        latency_ns: 1_200,
        tgid: Some(7),
        comm: "fio".into(),
        device: "mock0".into(),
        pasid: 9,
        grpid: 1,
        perm: 1,
        flags: 2,
        addr: 0x10_0000,
        response: 0,
        hook: HookType::Fentry,
    }));
    let s = a.snapshot(3_000);
    assert_eq!(s.events, 55);
    let p = &s.processes[0];
    assert_eq!(p.proc_id, ProcId::Pid(7));
    assert_eq!(
        (p.faults, p.faults_unplaced, p.faults_in_pinned),
        (51, 50, 0)
    );
    assert_eq!(p.fault_regions.len(), 1);
    assert_eq!(p.fault_regions[0].faults, 1);
    let iopf: Vec<_> = s
        .series
        .iter()
        .filter(|x| x.key.kind == Kind::Iopf)
        .collect();
    assert_eq!(iopf.len(), 2);
    assert_eq!(iopf[0].key.proc_id, ProcId::Pid(7));
    assert_eq!(iopf[0].key.device, "mock0");
    assert_eq!((iopf[0].count, iopf[0].errors), (51, 1));
    assert_eq!(iopf[1].key.proc_id, ProcId::Unattributed(9));
    assert_eq!(iopf[1].key.comm, "[unattrib:9]");
    assert_eq!(iopf[1].count, 4);
    assert_eq!(s.processes[1].faults, 4);
}
