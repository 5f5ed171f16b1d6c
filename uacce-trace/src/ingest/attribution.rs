//! IOPF attribution (docs/architecture.md, "Attribution"): a fault
//! belongs to the process that owns its PASID, never blindly to `current`.
//!
//! 1. The PASID → (tgid, comm) table, learnt from bind events (process
//!    context: `iommu_sva_get_pasid` return during uacce/idxd open) and
//!    forgotten at unbind. Binds are counted per owner: an mm bound twice
//!    (two queues, two devices) keeps its owner until the last unbind. A
//!    PASID reused by another process after an unbind is attributed to
//!    the new owner.
//! 2. Otherwise the reporting task, only when it was a user task (the
//!    decoder leaves `tgid` empty for kernel threads: on real hardware
//!    faults are reported from IRQ threads and workqueues; only iommufd's
//!    self-test mock reports from the faulting process's ioctl).
//! 3. Otherwise unattributed: shown per (device, PASID), counted in
//!    [`AttributionCounts::unattributed`] (a loss reason of the ledger).
//!
//! Processes that bound their PASID before the tool started are found by
//! the start-up scan (`source::scan_pasids`, a walk of the task list
//! reading each mm's PASID) and seeded with [`Attributor::seed`] before the
//! first event. A uacce queue opened on an SVA device (`uacce_fops_open`
//! with a PASID) is a bind too; its release is an unbind.
//!
//! Summary mode (`ingest::summary`): the kernel counts faults per
//! (reporting user task or 0, PASID, device) and user space attributes
//! each interval's counts when it reads them ([`Attributor::attribute_counted`]),
//! with the same rules and the owners known at that moment: the ring's
//! binds are read first, and an owner unbound since the previous reading
//! still owns its PASID for that reading ([`Attributor::reading_done`]
//! forgets it). A PASID that changed owners twice within one interval has
//! its faults of that interval attributed to the newer owner.
//!
//! Pure: no aya, no clock.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::ingest::event::{Event, IopfEvent, QueueOp};

/// A PASID and the process whose mm holds it (start-up scan).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PasidOwner {
    pub pasid: u32,
    pub tgid: u32,
    pub comm: String,
}

/// How the IOPFs seen so far were attributed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AttributionCounts {
    /// To the PASID's owner (bind, uacce queue or start-up scan).
    pub by_owner: u64,
    /// To the reporting task, a user task, for want of an owner.
    pub by_reporter: u64,
    /// To nobody: no owner known and reported by a kernel thread.
    pub unattributed: u64,
}

/// One PASID's owner and how many of its binds are live.
#[derive(Debug, Clone)]
struct Owner {
    tgid: u32,
    comm: String,
    binds: u32,
}

/// The PASID owner table.
#[derive(Debug, Default, Clone)]
pub struct Attributor {
    owners: HashMap<u32, Owner>,
    /// Owners unbound since the last summary reading (summary mode).
    recent: HashMap<u32, Owner>,
    /// PASIDs that had more than one owner since the last summary reading
    /// (summary mode).
    changed: HashSet<u32>,
    /// Summary mode: faults charged to the last of a PASID's owners within
    /// one reading interval ([`Attributor::owner_changed`]).
    owner_changed: u64,
    counts: AttributionCounts,
}

impl Attributor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Seed the table with owners found before any event (the start-up
    /// scan); a later bind of the same PASID by another process replaces
    /// them.
    pub fn seed(&mut self, owners: &[PasidOwner]) {
        for o in owners {
            self.owners.insert(
                o.pasid,
                Owner {
                    tgid: o.tgid,
                    comm: o.comm.clone(),
                    binds: 1,
                },
            );
        }
    }

    /// A bind of `pasid` by `tgid`: one more bind of the same owner, or a
    /// new owner (the PASID was reused).
    fn bind(&mut self, pasid: u32, tgid: u32, comm: &str) {
        match self.owners.get_mut(&pasid) {
            Some(o) if o.tgid == tgid => {
                o.binds = o.binds.saturating_add(1);
                comm.clone_into(&mut o.comm);
            }
            previous => {
                // Another process held the PASID since the last reading:
                // that reading's counted faults cannot be split.
                let before = previous
                    .map(|o| o.tgid)
                    .or_else(|| self.recent.get(&pasid).map(|o| o.tgid));
                if before.is_some_and(|t| t != tgid) {
                    self.changed.insert(pasid);
                }
                self.owners.insert(
                    pasid,
                    Owner {
                        tgid,
                        comm: comm.to_string(),
                        binds: 1,
                    },
                );
            }
        }
    }

    /// An unbind of `pasid` by `tgid`: forgets the owner at its last
    /// unbind; an unbind by anyone else must not drop the owner.
    fn unbind(&mut self, pasid: u32, tgid: u32) {
        if let Some(o) = self.owners.get_mut(&pasid) {
            if o.tgid == tgid {
                o.binds = o.binds.saturating_sub(1);
                if o.binds == 0 {
                    if let Some(o) = self.owners.remove(&pasid) {
                        self.recent.insert(pasid, o);
                    }
                }
            }
        }
    }

    /// Summary mode: `calls` faults of `pasid` counted in the kernel since
    /// the last reading, reported by process `reporter` (`comm`; 0: a
    /// kernel thread). Returns the process and comm they belong to, `None`
    /// when unattributed; counted like per-event faults, by `calls`.
    pub fn attribute_counted(
        &mut self,
        pasid: u32,
        reporter: u32,
        comm: &str,
        calls: u64,
    ) -> Option<(u32, String)> {
        if let Some(o) = self.owners.get(&pasid).or_else(|| self.recent.get(&pasid)) {
            self.counts.by_owner += calls;
            if self.changed.contains(&pasid) {
                self.owner_changed += calls;
            }
            Some((o.tgid, o.comm.clone()))
        } else if reporter != 0 {
            self.counts.by_reporter += calls;
            Some((reporter, comm.to_string()))
        } else {
            self.counts.unattributed += calls;
            None
        }
    }

    /// Summary mode: a reading is attributed; owners unbound before it
    /// are forgotten.
    pub fn reading_done(&mut self) {
        self.recent.clear();
        self.changed.clear();
    }

    /// Summary mode: faults counted in the kernel of a PASID whose owner
    /// changed within one reading interval (unbound by one process, bound
    /// by another), all charged to the last owner: the kernel's key holds
    /// no time, so some may be the earlier owner's
    /// (`LossReason::IopfOwnerChanged`).
    pub fn owner_changed(&self) -> u64 {
        self.owner_changed
    }

    /// Learn from a bind/unbind event; attribute an IOPF event in place.
    /// Other events pass unchanged.
    pub fn process(&mut self, ev: &mut Event) {
        match ev {
            Event::Queue(q) if q.pasid != 0 && q.ret == 0 && q.op == QueueOp::Open => {
                self.bind(q.pasid, q.tgid, &q.comm);
            }
            Event::Queue(q) if q.pasid != 0 && q.op == QueueOp::Release => {
                self.unbind(q.pasid, q.tgid);
            }
            Event::Pasid(p) if p.bound => self.bind(p.pasid, p.tgid, &p.comm),
            Event::Pasid(p) => self.unbind(p.pasid, p.tgid),
            Event::Iopf(f) => self.attribute(f),
            _ => {}
        }
    }

    fn attribute(&mut self, f: &mut IopfEvent) {
        if let Some(o) = self.owners.get(&f.pasid) {
            f.tgid = Some(o.tgid);
            f.comm.clone_from(&o.comm);
            self.counts.by_owner += 1;
        } else if f.tgid.is_some() {
            self.counts.by_reporter += 1;
        } else {
            self.counts.unattributed += 1;
        }
    }

    /// How the IOPFs seen so far were attributed.
    pub fn counts(&self) -> AttributionCounts {
        self.counts
    }

    /// Number of PASIDs with a known owner.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}

/// How an IOPF's owner reads in output.
pub fn owner_label(f: &IopfEvent) -> String {
    match f.tgid {
        Some(tgid) => format!("{tgid}/{}", f.comm),
        None => format!("pasid {} (unattributed)", f.pasid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::event::{HookType, PasidEvent};

    fn bind(tgid: u32, comm: &str, pasid: u32, bound: bool) -> Event {
        Event::Pasid(PasidEvent {
            ts_ns: 0,
            tgid,
            comm: comm.into(),
            pasid,
            bound,
            hook: HookType::Fentry,
        })
    }

    /// A fault reported from a kernel thread (no user reporter).
    fn fault(pasid: u32) -> Event {
        Event::Iopf(IopfEvent {
            ts_ns: 1,
            latency_ns: 2,
            tgid: None,
            comm: String::new(),
            device: "0000:00:02.0".into(),
            pasid,
            grpid: 1,
            perm: 1,
            flags: 2,
            addr: 0x1000,
            response: 0,
            hook: HookType::Kprobe,
        })
    }

    /// A fault on `pasid` as reported from the context of task `tgid`
    /// (`comm`), which need not own the PASID.
    fn fault_reported_by(pasid: u32, tgid: u32, comm: &str) -> Event {
        let mut ev = fault(pasid);
        if let Event::Iopf(f) = &mut ev {
            f.tgid = Some(tgid);
            f.comm = comm.into();
        }
        ev
    }

    fn owner(a: &mut Attributor, mut ev: Event) -> String {
        a.process(&mut ev);
        match ev {
            Event::Iopf(f) => owner_label(&f),
            _ => unreachable!(),
        }
    }

    #[test]
    fn bind_fault_unbind_reuse() {
        let mut a = Attributor::new();
        assert_eq!(owner(&mut a, fault(5)), "pasid 5 (unattributed)");
        a.process(&mut bind(100, "zip_bench", 5, true));
        assert_eq!(owner(&mut a, fault(5)), "100/zip_bench");
        assert_eq!(owner(&mut a, fault(6)), "pasid 6 (unattributed)");
        a.process(&mut bind(100, "zip_bench", 5, false));
        assert_eq!(owner(&mut a, fault(5)), "pasid 5 (unattributed)");
        // The PASID is reused by another process.
        a.process(&mut bind(200, "sec_bench", 5, true));
        assert_eq!(owner(&mut a, fault(5)), "200/sec_bench");
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn owner_beats_the_reporting_task() {
        let mut a = Attributor::new();
        let ev = fault_reported_by(7, 42, "irq-helper");
        assert_eq!(owner(&mut a, ev.clone()), "42/irq-helper");
        a.process(&mut bind(300, "owner", 7, true));
        assert_eq!(owner(&mut a, ev), "300/owner");
    }

    #[test]
    fn seeded_owner_from_the_start_up_scan() {
        let mut a = Attributor::new();
        // The reporting task (the mock reports from the faulting ioctl)
        // is another process: the scanned owner wins.
        let ev = fault_reported_by(1, 42, "iopf-workload");
        a.seed(&[PasidOwner {
            pasid: 1,
            tgid: 7,
            comm: "holder".into(),
        }]);
        assert_eq!(owner(&mut a, ev), "7/holder");
        // A bind seen later replaces the seeded owner.
        a.process(&mut bind(8, "new", 1, true));
        assert_eq!(owner(&mut a, fault(1)), "8/new");
    }

    #[test]
    fn uacce_queue_open_and_release_bind() {
        use crate::ingest::event::QueueEvent;
        let q = |op, pasid| {
            Event::Queue(QueueEvent {
                ts_ns: 0,
                latency_ns: 0,
                tgid: 5,
                tid: 5,
                comm: "zip".into(),
                op,
                device: "hisi_zip-0".into(),
                pasid,
                ret: 0,
                queue: 1,
                hook: HookType::Kprobe,
            })
        };
        let mut a = Attributor::new();
        a.process(&mut q(QueueOp::Open, 0));
        assert!(a.is_empty(), "a queue without SVA binds nothing");
        a.process(&mut q(QueueOp::Open, 3));
        assert_eq!(owner(&mut a, fault(3)), "5/zip");
        a.process(&mut q(QueueOp::Release, 3));
        assert_eq!(owner(&mut a, fault(3)), "pasid 3 (unattributed)");
    }

    #[test]
    fn a_second_bind_survives_the_first_unbind() {
        let mut a = Attributor::new();
        // One process binds its mm twice (two queues or two devices).
        a.process(&mut bind(4, "twice", 11, true));
        a.process(&mut bind(4, "twice", 11, true));
        a.process(&mut bind(4, "twice", 11, false));
        assert_eq!(owner(&mut a, fault(11)), "4/twice");
        a.process(&mut bind(4, "twice", 11, false));
        assert_eq!(owner(&mut a, fault(11)), "pasid 11 (unattributed)");
        let c = a.counts();
        assert_eq!((c.by_owner, c.by_reporter, c.unattributed), (1, 0, 1));
    }

    #[test]
    fn kernel_thread_reports_are_never_charged_to_anyone_but_the_owner() {
        let mut a = Attributor::new();
        // A kworker reports (no user reporter): unattributed, counted.
        assert_eq!(owner(&mut a, fault(12)), "pasid 12 (unattributed)");
        a.seed(&[PasidOwner {
            pasid: 12,
            tgid: 70,
            comm: "owner".into(),
        }]);
        assert_eq!(owner(&mut a, fault(12)), "70/owner");
        assert_eq!(owner(&mut a, fault_reported_by(13, 42, "mock")), "42/mock");
        let c = a.counts();
        assert_eq!((c.by_owner, c.by_reporter, c.unattributed), (1, 1, 1));
    }

    #[test]
    fn counted_faults_follow_the_same_rules_and_an_owner_outlives_its_unbind_by_one_reading() {
        let mut a = Attributor::new();
        assert_eq!(a.attribute_counted(5, 0, "kworker/0:1", 3), None);
        assert_eq!(
            a.attribute_counted(5, 42, "mock", 2),
            Some((42, "mock".into()))
        );
        a.process(&mut bind(100, "owner", 5, true));
        assert_eq!(
            a.attribute_counted(5, 42, "mock", 4),
            Some((100, "owner".into()))
        );
        // Unbound inside the interval: its faults of the interval are
        // still its own at the reading.
        a.process(&mut bind(100, "owner", 5, false));
        assert_eq!(
            a.attribute_counted(5, 0, "", 1),
            Some((100, "owner".into()))
        );
        a.reading_done();
        assert_eq!(a.attribute_counted(5, 0, "", 1), None);
        let c = a.counts();
        assert_eq!((c.by_owner, c.by_reporter, c.unattributed), (5, 2, 4));
        assert_eq!(a.owner_changed(), 0);
    }

    #[test]
    fn counted_faults_of_a_pasid_that_changed_owner_within_a_reading_are_counted() {
        let mut a = Attributor::new();
        a.process(&mut bind(100, "first", 5, true));
        a.process(&mut bind(100, "first", 5, false));
        a.process(&mut bind(200, "second", 5, true));
        // All charged to the last owner, and counted as such.
        assert_eq!(
            a.attribute_counted(5, 0, "", 3),
            Some((200, "second".into()))
        );
        assert_eq!(a.owner_changed(), 3);
        // The next reading has one owner only.
        a.reading_done();
        a.attribute_counted(5, 0, "", 2);
        assert_eq!(a.owner_changed(), 3);
        // A new bind without an unbind seen (the old owner's records lost)
        // is a change too; a second bind of the same owner is not.
        a.process(&mut bind(300, "third", 5, true));
        a.process(&mut bind(300, "third", 5, true));
        a.attribute_counted(5, 0, "", 1);
        assert_eq!(a.owner_changed(), 4);
        a.reading_done();
        a.process(&mut bind(300, "third", 5, true));
        a.attribute_counted(5, 0, "", 1);
        assert_eq!(a.owner_changed(), 4);
    }

    #[test]
    fn stale_unbind_does_not_drop_new_owner() {
        let mut a = Attributor::new();
        a.process(&mut bind(1, "old", 9, true));
        a.process(&mut bind(2, "new", 9, true));
        a.process(&mut bind(1, "old", 9, false));
        assert_eq!(owner(&mut a, fault(9)), "2/new");
    }
}
