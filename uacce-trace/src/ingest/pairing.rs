//! IO page fault pairing: a report record and the response to its group
//! become one complete [`IopfRecord`] with its latency.
//!
//! The kernel programs write each report and each response to the ring as
//! they happen (`IopfResponseRecord` in uacce-trace-common says why the
//! pairing is not done there). The ring keeps reservation order and a
//! response is reserved after its report, so here a response always finds
//! its report already seen, unless the report was lost or came before the
//! tracer attached. Pure: no aya, no clock (sweeps get the time).
//!
//! Groups follow the kernel's (and PCIe PRI's) semantics. A page request
//! group (device, PASID, group index) stays open while its faults arrive;
//! the fault flagged `LAST_PAGE` closes it, and only then does the kernel
//! answer the group (one response for the whole group). A device may not
//! reuse a group index before that response, so a report for a key whose
//! group is closed and still waiting is a new group: the waiting one never
//! got a response the tracer saw (its response took a path no hook sees,
//! or its record was lost) and is counted as unanswered, never given the
//! new group's latency; a report never folds into a stale group. Group
//! indices wrap (9 bits in PRI), which is the same case once the earlier
//! group was answered.

use std::collections::HashMap;

use serde::Serialize;
use uacce_trace_common::{IopfKey, IopfRecord, IopfResponseRecord, KIND_IOPF};

use crate::ingest::inthash::BuildIntHasher;

/// Most groups awaiting a response at once (the bound of the kernel map
/// this replaces); reports beyond it are counted as lost.
pub const MAX_PENDING: usize = 16_384;

/// `iommu_fault_page_request.flags` bit: the last fault of its group
/// (`IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE`, the same bit in every kernel).
pub const FLAG_LAST_PAGE: u32 = 1 << 1;

/// What pairing could not pair, and what it folded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PairingCounts {
    /// Reports lost because [`MAX_PENDING`] groups were already waiting.
    pub pending_full: u64,
    /// Responses to a group with no report seen (reported before the
    /// tracer attached, its report lost, or swept as unanswered).
    pub response_without_report: u64,
    /// Faults reported again for a group still open (multi-page groups);
    /// folded into the group's `nr_faults`.
    pub group_faults: u64,
    /// Groups never answered within the sweep's timeout, or superseded by
    /// a new group of the same key before their response was seen.
    pub unanswered: u64,
    /// Of `unanswered`: groups superseded by a new report of their key.
    pub superseded: u64,
}

/// A reported group: its first fault, and whether its last came.
#[derive(Debug, Clone, Copy)]
struct Group {
    record: IopfRecord,
    closed: bool,
}

/// Reported groups awaiting their response.
#[derive(Debug, Default)]
pub struct IopfPairing {
    pending: HashMap<IopfKey, Group, BuildIntHasher>,
    counts: PairingCounts,
}

fn key_of(dev: u64, pasid: u32, grpid: u32) -> IopfKey {
    IopfKey { dev, pasid, grpid }
}

impl IopfPairing {
    pub fn new() -> Self {
        Self::default()
    }

    /// A report: one more fault of its group while the group is open, or
    /// a new group (see the module docs); the group's first report is
    /// kept, a `LAST_PAGE` report closes it.
    pub fn report(&mut self, record: IopfRecord) {
        let key = key_of(record.dev, record.pasid, record.grpid);
        let last = record.flags & FLAG_LAST_PAGE != 0;
        if let Some(group) = self.pending.get_mut(&key) {
            if !group.closed {
                group.record.nr_faults = group.record.nr_faults.wrapping_add(1);
                group.closed = last;
                self.counts.group_faults += 1;
                return;
            }
            // A closed group still waiting: its response was not seen.
            self.counts.unanswered += 1;
            self.counts.superseded += 1;
            *group = Group {
                record,
                closed: last,
            };
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.counts.pending_full += 1;
            return;
        }
        self.pending.insert(
            key,
            Group {
                record,
                closed: last,
            },
        );
    }

    /// A response: closes its group, reported for the same device or, for
    /// hooks that do not know the device (vendor tracepoints, the SMMUv3
    /// event hook), for device 0. The complete record has kind
    /// [`KIND_IOPF`], the latency, response code and response hook.
    pub fn respond(&mut self, response: &IopfResponseRecord) -> Option<IopfRecord> {
        let key = key_of(response.dev, response.pasid, response.grpid);
        let open = self
            .pending
            .remove(&key)
            .or_else(|| self.pending.remove(&IopfKey { dev: 0, ..key }));
        let Some(Group { mut record, .. }) = open else {
            self.counts.response_without_report += 1;
            return None;
        };
        record.header.kind = KIND_IOPF;
        record.latency_ns = response.ts_ns.saturating_sub(record.ts_ns);
        record.response = response.response;
        record.hook = response.hook;
        Some(record)
    }

    /// Drops groups reported more than `timeout_ns` before `now_ns`,
    /// counting them as unanswered; returns how many still wait.
    pub fn sweep(&mut self, now_ns: u64, timeout_ns: u64) -> u64 {
        let before = self.pending.len();
        self.pending
            .retain(|_, g| now_ns.saturating_sub(g.record.ts_ns) <= timeout_ns);
        self.counts.unanswered += (before - self.pending.len()) as u64;
        self.pending.len() as u64
    }

    /// Groups waiting now.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    pub fn counts(&self) -> PairingCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uacce_trace_common::{RecordHeader, KIND_IOPF_REPORT, KIND_IOPF_RESPONSE, RECORD_VERSION};

    fn report(dev: u64, grpid: u32, ts_ns: u64) -> IopfRecord {
        IopfRecord {
            header: RecordHeader {
                kind: KIND_IOPF_REPORT,
                version: RECORD_VERSION,
                size: 128,
            },
            ts_ns,
            dev,
            pasid: 5,
            grpid,
            addr: 0x1000 * u64::from(grpid),
            nr_faults: 1,
            ..Default::default()
        }
    }

    fn response(dev: u64, grpid: u32, ts_ns: u64) -> IopfResponseRecord {
        IopfResponseRecord {
            header: RecordHeader {
                kind: KIND_IOPF_RESPONSE,
                version: RECORD_VERSION,
                size: 40,
            },
            ts_ns,
            dev,
            pasid: 5,
            grpid,
            response: 1,
            hook: 2,
            _pad: [0; 3],
        }
    }

    #[test]
    fn a_response_completes_its_report() {
        let mut p = IopfPairing::new();
        p.report(report(7, 3, 1_000));
        p.report(report(7, 4, 1_500));
        let done = p.respond(&response(7, 3, 4_000)).expect("paired");
        assert_eq!(done.header.kind, KIND_IOPF);
        assert_eq!((done.latency_ns, done.response, done.hook), (3_000, 1, 2));
        assert_eq!((done.addr, done.nr_faults), (0x3000, 1));
        assert_eq!(p.waiting(), 1);
        assert_eq!(p.counts(), PairingCounts::default());
    }

    #[test]
    fn more_faults_of_a_group_are_folded_into_the_first() {
        let mut p = IopfPairing::new();
        p.report(report(7, 3, 1_000));
        p.report(report(7, 3, 1_200));
        p.report(report(7, 3, 1_300));
        let done = p.respond(&response(7, 3, 2_000)).expect("paired");
        assert_eq!(
            (done.ts_ns, done.latency_ns, done.nr_faults),
            (1_000, 1_000, 3)
        );
        assert_eq!(p.counts().group_faults, 2);
    }

    #[test]
    fn device_zero_reports_pair_with_any_device_response() {
        let mut p = IopfPairing::new();
        p.report(report(0, 9, 100));
        assert!(p
            .respond(&response(0xffff_8880_0000_1000, 9, 300))
            .is_some());
        // The device's own report wins over a device-0 one.
        p.report(report(0, 9, 100));
        p.report(report(7, 9, 200));
        assert_eq!(p.respond(&response(7, 9, 500)).map(|r| r.dev), Some(7));
        assert_eq!(p.respond(&response(7, 9, 600)).map(|r| r.dev), Some(0));
    }

    #[test]
    fn unpaired_responses_and_stale_reports_are_counted() {
        let mut p = IopfPairing::new();
        assert!(p.respond(&response(7, 1, 10)).is_none());
        p.report(report(7, 2, 1_000));
        p.report(report(7, 3, 9_000));
        assert_eq!(p.sweep(10_000, 5_000), 1);
        let c = p.counts();
        assert_eq!((c.response_without_report, c.unanswered), (1, 1));
        // A swept group's late response is one without a report.
        assert!(p.respond(&response(7, 2, 11_000)).is_none());
        assert_eq!(p.counts().response_without_report, 2);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut p = IopfPairing::new();
        for g in 0..MAX_PENDING as u32 + 10 {
            p.report(IopfRecord {
                pasid: g,
                ..report(1, 0, 1)
            });
        }
        assert_eq!(p.waiting(), MAX_PENDING);
        assert_eq!(p.counts().pending_full, 10);
    }

    fn last(r: IopfRecord) -> IopfRecord {
        IopfRecord {
            flags: FLAG_LAST_PAGE,
            ..r
        }
    }

    #[test]
    fn a_report_for_a_closed_group_starts_a_new_one() {
        let mut p = IopfPairing::new();
        // Group 3: two faults, the second is its last page.
        p.report(report(7, 3, 1_000));
        p.report(last(report(7, 3, 1_100)));
        // Its response is never seen; the device reuses index 3.
        p.report(last(report(7, 3, 50_000)));
        let done = p.respond(&response(7, 3, 50_700)).expect("paired");
        // The new group's latency, not the stale one's.
        assert_eq!(
            (done.ts_ns, done.latency_ns, done.nr_faults),
            (50_000, 700, 1)
        );
        let c = p.counts();
        assert_eq!((c.unanswered, c.superseded, c.group_faults), (1, 1, 1));
        assert_eq!(p.waiting(), 0);
    }

    #[test]
    fn group_indices_that_wrap_pair_exactly() {
        let mut p = IopfPairing::new();
        // 2000 single-fault groups over 9-bit group indices: each answered
        // before its index comes round again, each latency its own.
        for i in 0..2_000u64 {
            let g = (i % 512) as u32;
            p.report(last(report(7, g, i * 100)));
            let done = p.respond(&response(7, g, i * 100 + 7)).expect("paired");
            assert_eq!((done.ts_ns, done.latency_ns), (i * 100, 7));
        }
        assert_eq!(p.counts(), PairingCounts::default());
    }

    #[test]
    fn two_devices_sharing_a_pasid_do_not_mix() {
        let mut p = IopfPairing::new();
        p.report(last(report(7, 1, 1_000)));
        p.report(last(report(8, 1, 2_000)));
        assert_eq!(
            p.respond(&response(8, 1, 2_500))
                .map(|r| (r.dev, r.latency_ns)),
            Some((8, 500))
        );
        assert_eq!(
            p.respond(&response(7, 1, 4_000))
                .map(|r| (r.dev, r.latency_ns)),
            Some((7, 3_000))
        );
        assert_eq!(p.counts(), PairingCounts::default());
    }

    #[test]
    fn a_response_never_yields_negative_latency() {
        let mut p = IopfPairing::new();
        p.report(report(7, 3, 5_000));
        assert_eq!(
            p.respond(&response(7, 3, 4_000)).map(|r| r.latency_ns),
            Some(0)
        );
    }
}
