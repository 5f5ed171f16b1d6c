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
//! Pure: no aya, no clock. Limitation: processes that bound their PASID
//! before the tool started are not in the table (no start-up scan yet), so
//! their faults fall to rules 2–3.

use std::collections::HashMap;

use crate::event::{Event, IopfEvent};

/// The PASID owner table.
#[derive(Debug, Default, Clone)]
pub struct Attributor {
    owners: HashMap<u32, (u32, String)>,
}

impl Attributor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Learn from a bind/unbind event; attribute an IOPF event in place.
    /// Other events pass unchanged.
    pub fn process(&mut self, ev: &mut Event) {
        match ev {
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
        let mut ev = fault(7);
        if let Event::Iopf(f) = &mut ev {
            f.tgid = Some(42);
            f.comm = "irq-helper".into();
        }
        assert_eq!(owner(&mut a, ev.clone()), "42/irq-helper");
        a.process(&mut bind(300, "owner", 7, true));
        assert_eq!(owner(&mut a, ev), "300/owner");
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
