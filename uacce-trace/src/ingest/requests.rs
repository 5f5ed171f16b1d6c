//! The join of requests and IO page faults: each [`RequestEvent`] is
//! annotated, in ring order, with the IOPFs attributed to the same process
//! whose report time lies inside the request (`faults`) and the part of
//! their report-to-response time inside it (`fault_ns`).
//!
//! An IOPF becomes an event when its response is seen, a request when its
//! uretprobe runs; a synchronous request waits for its device, which waits
//! for the fault's response, so the fault comes first in the ring. A fault
//! answered only after the request returned (an asynchronous API) is not
//! joined. Faults are kept per process for [`KEEP_NS`] behind the newest
//! one, at most [`MAX_PER_PROCESS`] of them (the oldest go first), so
//! memory stays bounded. Pure: no clock; time is the events'.

use std::collections::{HashMap, VecDeque};

use crate::ingest::{
    event::{Event, RequestEvent},
    inthash::BuildIntHasher,
};

/// Faults older than this behind a process's newest fault are forgotten
/// (no request in flight is expected to be longer).
pub const KEEP_NS: u64 = 60_000_000_000;
/// Faults kept per process.
pub const MAX_PER_PROCESS: usize = 65_536;
/// Processes with faults kept at once (the one whose newest fault is
/// oldest goes first).
pub const MAX_PROCESSES: usize = 4096;

/// See the module docs.
#[derive(Debug, Default)]
pub struct RequestJoin {
    /// Per process: (report time, response time) of recent faults, in
    /// arrival order.
    faults: HashMap<u32, VecDeque<(u64, u64)>, BuildIntHasher>,
}

impl RequestJoin {
    /// Remember an IOPF, or annotate a request; other events pass.
    pub fn process(&mut self, ev: &mut Event) {
        match ev {
            Event::Iopf(f) => {
                let Some(tgid) = f.tgid else {
                    return;
                };
                if !self.faults.contains_key(&tgid) && self.faults.len() >= MAX_PROCESSES {
                    let victim = self
                        .faults
                        .iter()
                        .min_by_key(|(_, q)| q.back().map_or(0, |x| x.0))
                        .map(|(&p, _)| p);
                    if let Some(v) = victim {
                        self.faults.remove(&v);
                    }
                }
                let q = self.faults.entry(tgid).or_default();
                q.push_back((f.ts_ns, f.ts_ns.saturating_add(f.latency_ns)));
                let newest = f.ts_ns;
                while q.len() > MAX_PER_PROCESS
                    || q.front()
                        .is_some_and(|x| x.0.saturating_add(KEEP_NS) < newest)
                {
                    q.pop_front();
                }
            }
            Event::Request(r) => self.annotate(r),
            _ => {}
        }
    }

    fn annotate(&self, r: &mut RequestEvent) {
        let Some(q) = self.faults.get(&r.tgid) else {
            return;
        };
        let (start, end) = (r.ts_ns, r.end_ns());
        let mut n = 0u32;
        let mut inside = 0u64;
        for &(report, response) in q {
            if report >= start && report <= end {
                n = n.saturating_add(1);
                inside = inside.saturating_add(response.min(end) - report);
            }
        }
        r.faults = n;
        r.fault_ns = inside;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::event::{HookType, IopfEvent};

    fn fault(tgid: Option<u32>, ts: u64, lat: u64) -> Event {
        Event::Iopf(IopfEvent {
            ts_ns: ts,
            latency_ns: lat,
            tgid,
            comm: "w".into(),
            device: "d".into(),
            pasid: 1,
            grpid: 0,
            perm: 0,
            flags: 0,
            addr: 0,
            response: 0,
            hook: HookType::Fentry,
        })
    }

    fn request(tgid: u32, ts: u64, lat: u64) -> Event {
        Event::Request(RequestEvent {
            ts_ns: ts,
            latency_ns: lat,
            tgid,
            tid: tgid,
            comm: "w".into(),
            op: "f".into(),
            ret: 0,
            faults: 0,
            fault_ns: 0,
        })
    }

    fn joined(j: &mut RequestJoin, mut ev: Event) -> (u32, u64) {
        j.process(&mut ev);
        match ev {
            Event::Request(r) => (r.faults, r.fault_ns),
            _ => unreachable!(),
        }
    }

    #[test]
    fn faults_inside_the_request_of_the_same_process() {
        let mut j = RequestJoin::default();
        for mut f in [
            fault(Some(1), 100, 10),  // before the request
            fault(Some(1), 1000, 50), // inside
            fault(Some(1), 1990, 50), // reported inside, answered after: 10 inside
            fault(Some(2), 1500, 5),  // another process
            fault(None, 1500, 5),     // unattributed
            fault(Some(1), 2001, 1),  // after
        ] {
            j.process(&mut f);
        }
        assert_eq!(joined(&mut j, request(1, 1000, 1000)), (2, 60));
        assert_eq!(joined(&mut j, request(1, 3000, 1000)), (0, 0));
        assert_eq!(joined(&mut j, request(3, 1000, 1000)), (0, 0));
        assert_eq!(joined(&mut j, request(2, 1400, 200)), (1, 5));
    }

    #[test]
    fn old_faults_are_forgotten() {
        let mut j = RequestJoin::default();
        j.process(&mut fault(Some(1), 10, 1));
        j.process(&mut fault(Some(1), 10 + KEEP_NS + 1, 1));
        assert_eq!(j.faults[&1].len(), 1);
    }
}
