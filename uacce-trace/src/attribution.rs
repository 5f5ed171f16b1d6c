//! IOPF attribution (design.md "Attribution rules"): a fault belongs to
//! the process that owns its PASID, never blindly to `current`.
//!
//! 1. The PASID → (tgid, comm) table, learnt from bind events (process
//!    context: `iommu_sva_get_pasid` return during uacce/idxd open) and
//!    forgotten at unbind. A PASID reused by another process after an
//!    unbind is attributed to the new owner.
//! 2. Otherwise the reporting task, only when it was a user task (the
//!    decoder leaves `tgid` empty for kernel threads: on real hardware
//!    faults are reported from IRQ threads).
//! 3. Otherwise unattributed: "pasid N (unattributed)".
//!
//! Processes that bound their PASID before the tool started are found by
//! the start-up scan (`source::scan_pasids`, a walk of the task list
//! reading each mm's PASID) and seeded with [`Attributor::seed`] before the
//! first event. A uacce queue opened on an SVA device (`uacce_fops_open`
//! with a PASID) is a bind too; its release is an unbind.
//!
//! Pure: no aya, no clock.

use std::collections::HashMap;

use serde::Serialize;

use crate::event::{Event, IopfEvent, QueueOp};

/// A PASID and the process whose mm holds it (start-up scan).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PasidOwner {
    pub pasid: u32,
    pub tgid: u32,
    pub comm: String,
}

/// The PASID owner table.
#[derive(Debug, Default, Clone)]
pub struct Attributor {
    owners: HashMap<u32, (u32, String)>,
}

impl Attributor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Seed the table with owners found before any event (the start-up
    /// scan); a later bind of the same PASID replaces them.
    pub fn seed(&mut self, owners: &[PasidOwner]) {
        for o in owners {
            self.owners.insert(o.pasid, (o.tgid, o.comm.clone()));
        }
    }

    /// Learn from a bind/unbind event; attribute an IOPF event in place.
    /// Other events pass unchanged.
    pub fn process(&mut self, ev: &mut Event) {
        match ev {
            Event::Queue(q) if q.pasid != 0 && q.ret == 0 && q.op == QueueOp::Open => {
                self.owners.insert(q.pasid, (q.tgid, q.comm.clone()));
            }
            Event::Queue(q)
                if q.pasid != 0
                    && q.op == QueueOp::Release
                    && self
                        .owners
                        .get(&q.pasid)
                        .is_some_and(|(tgid, _)| *tgid == q.tgid) =>
            {
                self.owners.remove(&q.pasid);
            }
            Event::Pasid(p) if p.bound => {
                self.owners.insert(p.pasid, (p.tgid, p.comm.clone()));
            }
            // Forget only if the unbinding process is the known owner: an
            // unbind by someone else must not drop the new owner.
            Event::Pasid(p)
                if self
                    .owners
                    .get(&p.pasid)
                    .is_some_and(|(tgid, _)| *tgid == p.tgid) =>
            {
                self.owners.remove(&p.pasid);
            }
            Event::Iopf(f) => self.attribute(f),
            _ => {}
        }
    }

    fn attribute(&self, f: &mut IopfEvent) {
        if let Some((tgid, comm)) = self.owners.get(&f.pasid) {
            f.tgid = Some(*tgid);
            f.comm.clone_from(comm);
        }
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
    use crate::event::{HookType, PasidEvent};

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
        use crate::event::QueueEvent;
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
    fn stale_unbind_does_not_drop_new_owner() {
        let mut a = Attributor::new();
        a.process(&mut bind(1, "old", 9, true));
        a.process(&mut bind(2, "new", 9, true));
        a.process(&mut bind(1, "old", 9, false));
        assert_eq!(owner(&mut a, fault(9)), "2/new");
    }
}
