//! The loss ledger: every way an event can be lost or misattributed, by
//! reason, as cumulative counts. One type for every output: `trace`'s final
//! line and `--json`, `record`'s summary and files, `report`/`compare`,
//! `top`'s header and losses panel, `serve`'s `uacce_trace_lost_total`.
//!
//! "drops 0" means "nothing was lost": [`Ledger::total`] sums every reason
//! except the informational ones ([`LossReason::is_loss`] false: nested
//! calls folded into their outer call).
//!
//! [`LossReason::name`] is stable (JSON keys, Prometheus label values, the
//! raw recording's loss record); a name is never reused for another
//! meaning. Pure: no clock, no aya, no terminal.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uacce_trace_common::{
    counter, KIND_BIND, KIND_IOCTL, KIND_IOPF_REPORT, KIND_IOPF_RESPONSE, KIND_PIN, KIND_PROC,
    KIND_QUEUE, KIND_REQUEST, KIND_UNPIN,
};

use crate::ingest::event::PinIoctlEvent;

macro_rules! reasons {
    ($($(#[$doc:meta])* $v:ident = $name:literal, $loss:literal, $desc:literal;)*) => {
        /// Why an event was lost (or, for the few that are not losses,
        /// what the tool folded). See the module docs.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum LossReason {
            $($(#[$doc])* $v,)*
        }

        impl LossReason {
            /// Every reason, in display order.
            pub const ALL: &'static [LossReason] = &[$(LossReason::$v,)*];

            /// Stable snake_case name (JSON key, Prometheus label, raw id).
            pub const fn name(self) -> &'static str {
                match self { $(LossReason::$v => $name,)* }
            }

            /// One line for people.
            pub const fn describe(self) -> &'static str {
                match self { $(LossReason::$v => $desc,)* }
            }

            /// Counted in [`Ledger::total`] (false: shown as information).
            pub const fn is_loss(self) -> bool {
                match self { $(LossReason::$v => $loss,)* }
            }
        }
    };
}

reasons! {
    /// A pin record did not fit in the ring buffer.
    RingFullPin = "ring_full_pin", true, "pin calls lost: ring buffer full";
    /// An unpin record did not fit in the ring buffer.
    RingFullUnpin = "ring_full_unpin", true, "unpin calls lost: ring buffer full";
    /// A pin ioctl record did not fit in the ring buffer.
    RingFullIoctl = "ring_full_ioctl", true, "pin ioctls lost: ring buffer full";
    /// A PASID bind/unbind record did not fit in the ring buffer.
    RingFullBind = "ring_full_bind", true, "PASID binds/unbinds lost: ring buffer full";
    /// A queue record did not fit in the ring buffer.
    RingFullQueue = "ring_full_queue", true, "queue open/start/put/release lost: ring buffer full";
    /// An IOPF report did not fit in the ring buffer.
    RingFullIopfReport = "ring_full_iopf_report", true, "IO page fault reports lost: ring buffer full";
    /// An IOPF response did not fit in the ring buffer.
    RingFullIopfResponse = "ring_full_iopf_response", true, "IO page fault responses lost: ring buffer full";
    /// A process-tree record did not fit in the ring buffer.
    RingFullProc = "ring_full_proc", true, "process fork/exit records lost: ring buffer full";
    /// A request record did not fit in the ring buffer.
    RingFullRequest = "ring_full_request", true, "requests (--op) lost: ring buffer full";
    /// A request whose return was missed (longjmp, exception, thread exit).
    RequestReturnMissed = "request_return_missed", true, "requests (--op) lost: the call never returned through its probe (longjmp, exception unwinding, thread exit)";
    /// A request still in flight when tracing stopped, on a thread that
    /// no longer exists: its return was never seen.
    RequestThreadExited = "request_thread_exited", true, "requests (--op) lost: the thread exited inside the call";
    /// A record of another kind (or counted by an older eBPF object at
    /// the legacy total index) did not fit in the ring buffer.
    RingFullOther = "ring_full_other", true, "other records lost: ring buffer full";
    /// Runs of the tool's programs the kernel skipped because the same
    /// program was already running on that CPU (`recursion_misses`).
    ProgRecursionMiss = "prog_recursion_miss", true, "events the kernel skipped: the program was already running on that CPU (bpf_prog_info.recursion_misses)";
    /// An entry could not be stored in an in-flight map.
    InflightFull = "inflight_full", true, "calls lost: in-flight map full at entry";
    /// An exit found no entry after attaching.
    ExitWithoutEntry = "exit_without_entry", true, "calls lost: missed or evicted entry";
    /// An entry replaced a leftover in-flight call whose exit was missed.
    StaleInflight = "stale_inflight", true, "missed exit: a leftover in-flight call replaced";
    /// Calls in flight when tracing started (exit seen, entry before it).
    InFlightAtStart = "in_flight_at_start", true, "calls that began before every hook was attached; their pages are not counted";
    /// An SVA unbind of a handle whose bind was not seen.
    UnbindUnknown = "unbind_unknown", true, "PASID unbinds whose bind was not seen";
    /// A record user space could not decode.
    Undecodable = "undecodable", true, "records user space could not decode";
    /// An IOPF report found the pairing table full.
    IopfPendingFull = "iopf_pending_full", true, "IO page fault reports lost: pairing table full";
    /// An IOPF response to a group with no report seen.
    IopfResponseWithoutReport = "iopf_response_without_report", true, "IO page fault responses whose report was not seen";
    /// An IOPF group never answered within the timeout (swept).
    IopfUnanswered = "iopf_unanswered", true, "IO page fault groups never answered (timed out)";
    /// An IOPF group still awaiting its response when tracing stopped.
    IopfPendingAtExit = "iopf_pending_at_exit", true, "IO page fault groups still awaiting a response at stop";
    /// A closed IOPF group still waiting when a new report of its key
    /// came (its response took a path no hook sees, or was lost).
    IopfSuperseded = "iopf_superseded", true, "IO page fault groups whose key was reused before their response was seen";
    /// A fault whose PASID owner is unknown.
    IopfUnattributed = "iopf_unattributed", true, "IO page faults whose PASID owner is unknown";
    /// A pin ioctl whose driver function succeeded without a pin/unpin
    /// call credited to it.
    PinNotCredited = "pin_not_credited", true, "pin ioctls whose driver pin/unpin ran but no pin call was credited";
    /// Owners the start-up PASID scan found that did not fit.
    ScanLost = "scan_lost", true, "start-up PASID scan records lost (owners not learnt)";
    /// `record -- COMMAND` events not placeable in the process tree.
    ProcUnplaceable = "proc_unplaceable", true, "events of the traced command not placeable in its process tree";
    /// A forked process of `record -- COMMAND` could not join the
    /// kernel's follow set (map full): its children are not followed.
    ProcFollowFull = "proc_follow_full", true, "processes of the traced command not followed: follow map full";
    /// Old recordings: records lost, reason not recorded.
    LegacyDropped = "legacy_dropped", true, "records lost (older recording: reason not recorded)";
    /// A reason a newer uacce-trace recorded that this one does not know.
    Unknown = "unknown", true, "losses of reasons this version does not know (newer recording)";
    /// Summary mode: a reading of the kernel's summary map failed part-way.
    SummaryReadError = "summary_read_error", true, "summary-map readings that failed part-way (the counts not read come with the next reading; at stop they are lost)";
    /// Summary mode: IO page faults of a PASID whose owner changed within
    /// one reading interval, all charged to the last owner.
    IopfOwnerChanged = "iopf_owner_changed", true, "IO page faults counted in the kernel (summary mode) for a PASID that changed owner within one reading: all charged to the last owner, some may be the earlier one's";
    /// Summary mode: calls counted under a pid that another process got
    /// since the previous reading, charged to the new process.
    SummaryPidReused = "summary_pid_reused", true, "calls counted in the kernel (summary mode) under a pid handed out again within one reading: charged to the new process, some may be the exited one's";
    /// Not a loss: a nested call folded into its outer call.
    Nested = "nested", false, "not a loss: nested calls folded into their outer call";
    /// Not a loss: summary mode's map was full, so the call went to the
    /// ring as a record.
    SummaryFull = "summary_full", false, "not a loss: calls written as records because the summary map was full";
    /// Not a loss: summary mode, an IO page fault group whose slot in the
    /// kernel's pairing table was held by another group went to the ring.
    IopfTableCollision = "iopf_table_collision", false, "not a loss: IO page faults written as records because their slot in the kernel's pairing table was taken (summary mode)";
    /// Not a loss: summary mode, a response whose group was not in the
    /// kernel's pairing table (sampled, collided, reported before the
    /// start) went to the ring for user space to pair.
    IopfTableMiss = "iopf_table_miss", false, "not a loss: IO page fault responses written as records because their group was not in the kernel's pairing table (sampled groups among them; summary mode)";
}

impl LossReason {
    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// The reason named `name` (see [`LossReason::name`]).
    pub fn from_name(name: &str) -> Option<LossReason> {
        Self::ALL.iter().copied().find(|r| r.name() == name)
    }

    /// The ring-buffer loss reason of a record kind (`KIND_*`).
    pub fn ring_full(kind: u16) -> LossReason {
        match kind {
            KIND_PIN => LossReason::RingFullPin,
            KIND_UNPIN => LossReason::RingFullUnpin,
            KIND_IOCTL => LossReason::RingFullIoctl,
            KIND_BIND => LossReason::RingFullBind,
            KIND_QUEUE => LossReason::RingFullQueue,
            KIND_IOPF_REPORT => LossReason::RingFullIopfReport,
            KIND_IOPF_RESPONSE => LossReason::RingFullIopfResponse,
            KIND_PROC => LossReason::RingFullProc,
            KIND_REQUEST => LossReason::RingFullRequest,
            _ => LossReason::RingFullOther,
        }
    }

    /// The reason a kernel counter index (`uacce_trace_common::counter`)
    /// feeds; `None` for unused indices.
    pub fn of_kernel_counter(index: u32) -> Option<LossReason> {
        Some(match index {
            counter::RINGBUF_FULL => LossReason::RingFullOther,
            counter::EXIT_WITHOUT_ENTRY => LossReason::ExitWithoutEntry,
            counter::NESTED => LossReason::Nested,
            counter::INFLIGHT_FULL => LossReason::InflightFull,
            counter::STALE_INFLIGHT => LossReason::StaleInflight,
            counter::EXIT_AT_ATTACH => LossReason::InFlightAtStart,
            counter::UNBIND_UNKNOWN => LossReason::UnbindUnknown,
            counter::FOLLOW_FULL => LossReason::ProcFollowFull,
            counter::SUMMARY_FULL => LossReason::SummaryFull,
            counter::IOPF_TABLE_COLLISION => LossReason::IopfTableCollision,
            counter::IOPF_TABLE_MISS => LossReason::IopfTableMiss,
            counter::IOPF_TABLE_SUPERSEDED => LossReason::IopfSuperseded,
            counter::IOPF_TABLE_STALE => LossReason::IopfUnanswered,
            counter::REQUEST_RETURN_MISSED => LossReason::RequestReturnMissed,
            i if (counter::RINGBUF_FULL_BASE..counter::COUNT).contains(&i) => {
                // The index is `RINGBUF_FULL_BASE + (kind & 15)`.
                LossReason::ring_full((i - counter::RINGBUF_FULL_BASE) as u16)
            }
            _ => return None,
        })
    }
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// True when a pin ioctl's driver `uacce_pin_page`/`uacce_unpin_page` ran
/// and succeeded but no `pin_user_pages*`/`unpin_user_page*` call was
/// credited to the ioctl (`pin_calls == 0`): the pin happened where no hook
/// saw it, so the ioctl's pages are missing from the tool's numbers. A
/// driver call that failed may not have reached a pin call at all, so it
/// is not counted.
pub fn pin_not_credited(ev: &PinIoctlEvent) -> bool {
    ev.pin_calls == 0 && ev.driver_call.is_some_and(|d| d.ret == 0)
}

/// Cumulative counts by [`LossReason`]. Boxed: it travels in every loss
/// sample, and [`crate::ingest::event::Event`] stays small.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ledger {
    counts: Box<[u64; LossReason::COUNT]>,
}

// By hand: arrays of more than 32 elements have no derived `Default`.
impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            counts: Box::new([0; LossReason::COUNT]),
        }
    }
}

impl Ledger {
    /// Nothing counted.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// A ledger with these counts (the rest 0).
    pub fn from_counts(counts: &[(LossReason, u64)]) -> Ledger {
        let mut l = Ledger::new();
        for &(r, n) in counts {
            l.add(r, n);
        }
        l
    }

    pub fn get(&self, r: LossReason) -> u64 {
        self.counts[r as usize]
    }

    pub fn set(&mut self, r: LossReason, n: u64) {
        self.counts[r as usize] = n;
    }

    /// Adds `n` (saturating: counts from a file may be anything).
    pub fn add(&mut self, r: LossReason, n: u64) {
        let c = &mut self.counts[r as usize];
        *c = c.saturating_add(n);
    }

    /// Everything lost (informational reasons left out), saturating.
    pub fn total(&self) -> u64 {
        LossReason::ALL
            .iter()
            .filter(|r| r.is_loss())
            .fold(0u64, |t, &r| t.saturating_add(self.get(r)))
    }

    /// Records lost because the ring buffer was full, every kind.
    pub fn ring_full(&self) -> u64 {
        self.iter()
            .filter(|(r, _)| r.name().starts_with("ring_full_"))
            .fold(0u64, |t, (_, n)| t.saturating_add(n))
    }

    /// True when no reason, informational ones included, has a count.
    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|&c| c == 0)
    }

    /// Every reason with its count, zero included, in display order.
    pub fn iter(&self) -> impl Iterator<Item = (LossReason, u64)> + '_ {
        LossReason::ALL.iter().map(|&r| (r, self.get(r)))
    }

    /// The reasons with a non-zero count, in display order.
    pub fn iter_nonzero(&self) -> impl Iterator<Item = (LossReason, u64)> + '_ {
        self.iter().filter(|&(_, n)| n != 0)
    }

    /// Adds every count of `other` (ledgers of separate sources).
    pub fn merge(&mut self, other: &Ledger) {
        for (r, n) in other.iter() {
            self.add(r, n);
        }
    }

    /// Per reason, the larger count (two cumulative samples of one source:
    /// the newer state, even when samples arrive out of order).
    pub fn max(&mut self, other: &Ledger) {
        for (c, o) in self.counts.iter_mut().zip(other.counts.iter()) {
            *c = (*c).max(*o);
        }
    }

    /// Per reason, what `self` counts beyond `earlier` (saturating at 0).
    pub fn since(&self, earlier: &Ledger) -> Ledger {
        let mut d = self.clone();
        for (c, o) in d.counts.iter_mut().zip(earlier.counts.iter()) {
            *c = c.saturating_sub(*o);
        }
        d
    }

    /// `reason count, reason count` of the non-zero reasons ("" when none).
    pub fn breakdown(&self) -> String {
        self.iter_nonzero()
            .map(|(r, n)| format!("{} {n}", r.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The kernel's per-CPU counters (`uacce_trace_common::counter`, summed
    /// over CPUs by `get`) by reason; unused indices are left out.
    pub fn from_kernel_counters(get: impl Fn(u32) -> u64) -> Ledger {
        let mut l = Ledger::new();
        for i in 0..counter::COUNT {
            if let Some(r) = LossReason::of_kernel_counter(i) {
                l.add(r, get(i));
            }
        }
        l
    }

    /// For people: the non-zero loss reasons, `reason n, reason n`, then
    /// what was counted without a loss, `; not lost: nested n` ("" when
    /// nothing was counted). [`Ledger::breakdown`] is the plain list.
    pub fn human(&self) -> String {
        let part = |loss: bool| {
            self.iter_nonzero()
                .filter(|(r, _)| r.is_loss() == loss)
                .map(|(r, n)| format!("{} {n}", r.name()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (part(true), part(false)) {
            (lost, info) if info.is_empty() => lost,
            (lost, info) if lost.is_empty() => format!("not lost: {info}"),
            (lost, info) => format!("{lost}; not lost: {info}"),
        }
    }

    /// Adds a count recorded under `name`: an unknown name (a newer
    /// recording) is summed into [`LossReason::Unknown`].
    pub fn add_named(&mut self, name: &str, n: u64) {
        self.add(
            LossReason::from_name(name).unwrap_or(LossReason::Unknown),
            n,
        );
    }
}

/// A JSON object of the non-zero reasons, `{"ring_full_pin": 3, ...}`.
impl Serialize for Ledger {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter_nonzero().map(|(r, n)| (r.name(), n)))
    }
}

/// Reads the object [`Serialize`] writes; unknown names are summed into
/// [`LossReason::Unknown`].
impl<'de> Deserialize<'de> for Ledger {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ledger, D::Error> {
        let map = std::collections::BTreeMap::<String, u64>::deserialize(d)?;
        let mut l = Ledger::new();
        for (name, n) in map {
            l.add_named(&name, n);
        }
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::event::{DriverCall, HookType, PinIoctl};

    #[test]
    fn total_leaves_out_nested_and_counts_the_rest() {
        let mut l = Ledger::new();
        l.set(LossReason::Nested, 100);
        assert_eq!(l.total(), 0);
        assert!(!l.is_empty());
        for (i, &r) in LossReason::ALL.iter().enumerate() {
            l.add(r, i as u64 + 1);
        }
        let expect: u64 = LossReason::ALL
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_loss())
            .map(|(i, _)| i as u64 + 1)
            .sum();
        assert_eq!(l.total(), expect);
        assert_eq!(
            LossReason::ALL
                .iter()
                .filter(|r| !r.is_loss())
                .collect::<Vec<_>>(),
            [
                &LossReason::Nested,
                &LossReason::SummaryFull,
                &LossReason::IopfTableCollision,
                &LossReason::IopfTableMiss
            ]
        );
    }

    #[test]
    fn names_are_unique_stable_snake_case() {
        let mut names: Vec<&str> = LossReason::ALL.iter().map(|r| r.name()).collect();
        for n in &names {
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{n}");
            assert_eq!(LossReason::from_name(n).map(LossReason::name), Some(*n));
        }
        // Names are a file format and label values: these must never change.
        assert_eq!(LossReason::RingFullIoctl.name(), "ring_full_ioctl");
        assert_eq!(LossReason::InFlightAtStart.name(), "in_flight_at_start");
        assert_eq!(LossReason::IopfUnanswered.name(), "iopf_unanswered");
        assert_eq!(LossReason::Nested.name(), "nested");
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), LossReason::COUNT);
        assert!(LossReason::ALL.iter().all(|r| !r.describe().is_empty()));
        assert_eq!(LossReason::ALL.len(), 38);
    }

    #[test]
    fn kernel_counters_map_to_reasons() {
        let r = |k| LossReason::of_kernel_counter(counter::ringbuf_full(k));
        assert_eq!(r(KIND_PIN), Some(LossReason::RingFullPin));
        assert_eq!(r(KIND_IOCTL), Some(LossReason::RingFullIoctl));
        assert_eq!(r(KIND_PROC), Some(LossReason::RingFullProc));
        assert_eq!(r(3), Some(LossReason::RingFullOther));
        assert_eq!(
            LossReason::of_kernel_counter(counter::RINGBUF_FULL),
            Some(LossReason::RingFullOther)
        );
        assert_eq!(
            LossReason::of_kernel_counter(counter::EXIT_AT_ATTACH),
            Some(LossReason::InFlightAtStart)
        );
        assert_eq!(
            LossReason::of_kernel_counter(counter::IOPF_TABLE_COLLISION),
            Some(LossReason::IopfTableCollision)
        );
        assert_eq!(
            LossReason::of_kernel_counter(counter::IOPF_TABLE_STALE),
            Some(LossReason::IopfUnanswered)
        );
        assert_eq!(LossReason::of_kernel_counter(6), None);
        assert_eq!(LossReason::of_kernel_counter(counter::COUNT), None);
    }

    #[test]
    fn every_used_kernel_counter_is_in_the_ledger() {
        // Index i holds i + 1: every used index shows up once, unused ones
        // (6, 15) not at all.
        let l = Ledger::from_kernel_counters(|i| u64::from(i) + 1);
        assert_eq!(l.get(LossReason::ExitWithoutEntry), 2);
        assert_eq!(l.get(LossReason::Nested), 3);
        assert_eq!(l.get(LossReason::InflightFull), 4);
        assert_eq!(l.get(LossReason::StaleInflight), 8);
        assert_eq!(l.get(LossReason::InFlightAtStart), 9);
        assert_eq!(l.get(LossReason::UnbindUnknown), 10);
        assert_eq!(
            l.get(LossReason::RingFullIoctl),
            u64::from(counter::ringbuf_full(KIND_IOCTL)) + 1
        );
        assert_eq!(l.get(LossReason::RequestReturnMissed), 14);
        assert_eq!(l.get(LossReason::IopfSuperseded), 13);
        assert_eq!(l.get(LossReason::IopfUnanswered), 15);
        assert_eq!(
            (
                l.get(LossReason::IopfTableCollision),
                l.get(LossReason::IopfTableMiss)
            ),
            (5, 6)
        );
        assert_eq!(
            l.get(LossReason::RingFullRequest),
            u64::from(counter::ringbuf_full(KIND_REQUEST)) + 1
        );
        // ring_full_other: legacy index 0, and kinds 0, 3 (KIND_IOPF, never
        // in the ring now), 10, 11 and 13..15.
        let other: u64 = [0u32, 16, 19, 26, 27, 29, 30, 31]
            .iter()
            .map(|&i| u64::from(i) + 1)
            .sum();
        assert_eq!(l.get(LossReason::RingFullOther), other);
        let used: u64 = (0..counter::COUNT)
            .filter(|i| ![2, 4, 5, 6, 11, 15].contains(i))
            .map(|i| u64::from(i) + 1)
            .sum();
        assert_eq!(l.total(), used, "every used counter but NESTED counts");
    }

    #[test]
    fn max_since_merge_and_breakdown() {
        let mut a = Ledger::new();
        a.set(LossReason::RingFullPin, 5);
        a.set(LossReason::IopfUnanswered, 1);
        let mut b = Ledger::new();
        b.set(LossReason::RingFullPin, 3);
        b.set(LossReason::Undecodable, 2);
        let mut m = a.clone();
        m.max(&b);
        assert_eq!(
            m.breakdown(),
            "ring_full_pin 5, undecodable 2, iopf_unanswered 1"
        );
        assert_eq!(m.since(&a).breakdown(), "undecodable 2");
        m.merge(&b);
        assert_eq!(m.get(LossReason::RingFullPin), 8);
        m.add(LossReason::RingFullPin, u64::MAX);
        assert_eq!(m.total(), u64::MAX);
        assert_eq!(Ledger::new().breakdown(), "");
        let mut n = Ledger::from_counts(&[(LossReason::Nested, 4)]);
        assert_eq!(n.human(), "not lost: nested 4");
        n.add(LossReason::Undecodable, 1);
        assert_eq!(n.human(), "undecodable 1; not lost: nested 4");
        assert_eq!(n.breakdown(), "undecodable 1, nested 4");
        assert_eq!(Ledger::new().human(), "");
    }

    #[test]
    fn serde_round_trip_keeps_unknown_names() {
        let mut l = Ledger::new();
        l.set(LossReason::StaleInflight, 7);
        l.set(LossReason::Nested, 2);
        let s = serde_json::to_string(&l).unwrap();
        assert_eq!(s, r#"{"stale_inflight":7,"nested":2}"#);
        assert_eq!(serde_json::from_str::<Ledger>(&s).unwrap(), l);
        let newer: Ledger =
            serde_json::from_str(r#"{"from_the_future":3,"later_still":1,"undecodable":1}"#)
                .unwrap();
        assert_eq!(newer.get(LossReason::Unknown), 4);
        assert_eq!(newer.total(), 5);
    }

    #[test]
    fn pin_not_credited_needs_a_successful_driver_call_and_no_pin_call() {
        let mut ev = PinIoctlEvent {
            ts_ns: 0,
            latency_ns: 0,
            tgid: 1,
            tid: 1,
            comm: "x".into(),
            cmd: PinIoctl::UaccePin,
            addr: 0,
            size: 4096,
            ret: 0,
            hook: HookType::Tracepoint,
            pin_calls: 0,
            pages: 0,
            driver_call: None,
        };
        assert!(!pin_not_credited(&ev));
        ev.driver_call = Some(DriverCall {
            function: "uacce_pin_page",
            ret: 0,
        });
        assert!(pin_not_credited(&ev));
        ev.pin_calls = 1;
        assert!(!pin_not_credited(&ev));
        ev.pin_calls = 0;
        ev.driver_call = Some(DriverCall {
            function: "uacce_pin_page",
            ret: -17,
        });
        assert!(!pin_not_credited(&ev));
    }
}
