//! IO page fault pairing: a report record and the response to its group
//! become one complete [`IopfRecord`] with its latency.
//!
//! The kernel programs write each report and each response to the ring as
//! they happen (`IopfResponseRecord` in uacce-trace-common says why the
//! pairing is not done there). The ring keeps reservation order and a
//! response is reserved after its report, so here a response always finds
//! its report already seen, unless the report was lost or came before the
//! tracer attached. Pure: no aya, no clock (sweeps get the time).

use std::collections::HashMap;

use serde::Serialize;
use uacce_trace_common::{IopfKey, IopfRecord, IopfResponseRecord, KIND_IOPF};

use crate::inthash::BuildIntHasher;

/// Most groups awaiting a response at once (the bound of the kernel map
/// this replaces); reports beyond it are counted as lost.
pub const MAX_PENDING: usize = 16_384;

/// What pairing could not pair, and what it folded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PairingCounts {
    /// Reports lost because [`MAX_PENDING`] groups were already waiting.
    pub pending_full: u64,
    /// Responses to a group with no report seen (reported before the
    /// tracer attached, its report lost, or swept as unanswered).
    pub response_without_report: u64,
    /// Faults reported again for a group already waiting (multi-page
    /// groups); folded into the group's `nr_faults`.
    pub group_faults: u64,
    /// Groups never answered within the sweep's timeout.
    pub unanswered: u64,
}

/// Reported groups awaiting their response.
#[derive(Debug, Default)]
pub struct IopfPairing {
    pending: HashMap<IopfKey, IopfRecord, BuildIntHasher>,
    counts: PairingCounts,
}

fn key_of(dev: u64, pasid: u32, grpid: u32) -> IopfKey {
    IopfKey { dev, pasid, grpid }
}

impl IopfPairing {
    pub fn new() -> Self {
        Self::default()
    }

    /// A report: opens its group, or counts one more fault of a group
    /// already waiting (the group's first report is kept).
    pub fn report(&mut self, record: IopfRecord) {
        let key = key_of(record.dev, record.pasid, record.grpid);
        if let Some(open) = self.pending.get_mut(&key) {
            open.nr_faults = open.nr_faults.wrapping_add(1);
            self.counts.group_faults += 1;
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.counts.pending_full += 1;
            return;
        }
        self.pending.insert(key, record);
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
        let Some(mut record) = open else {
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
            .retain(|_, r| now_ns.saturating_sub(r.ts_ns) <= timeout_ns);
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
