//! Summary mode, user side: the kernel's running totals per (process,
//! kind) (`kernel::summary`) become one [`SummaryEvent`] per key and
//! interval, the difference to the previous reading. Pure: the caller
//! reads the map and says which processes are alive.
//!
//! IO page faults are keyed by (reporting user task or 0, PASID, device):
//! the events carry the reporter as `tgid` and its comm; the caller
//! attributes them to the PASID's owner (`Attributor::attribute_counted`)
//! as it attributes per-event faults. Their keys are removed once the
//! reporter is gone, as other keys; a key of reporter 0 (kernel threads)
//! stays while the tracer runs (one per PASID and device).
//!
//! Processes that exit: a key whose process is gone at two readings in a
//! row is read a last time and then removed from the kernel's map (the
//! second reading catches calls made while the process was exiting, such
//! as the unpins of its teardown), so the map holds live processes only.

use std::collections::{HashMap, HashSet};

use uacce_trace_common::summary::{
    ioctl_cmd_of, SummaryValue, SUMMARY_IOCTL, SUMMARY_PIN, SUMMARY_UNPIN,
};

use crate::ingest::event::{comm_to_string, PinIoctl, SummaryEvent, SummaryKind};
use crate::kernel::summary::Key;

/// The previous reading of every key.
#[derive(Default)]
pub struct SummaryDiff {
    prev: HashMap<Key, Box<SummaryValue>>,
    /// Processes found gone at the previous reading.
    gone: HashSet<u32>,
    /// The start time (the caller's identity of a process) each key's
    /// process had when last found alive.
    started: HashMap<u32, u64>,
}

/// What one reading gave.
#[derive(Debug, Default)]
pub struct Reading {
    pub events: Vec<SummaryEvent>,
    /// Keys to remove from the kernel's map now.
    pub remove: Vec<Key>,
    /// Keys of a kind this version does not know (skipped).
    pub unknown: u64,
    /// Calls of this reading under a pid that another process holds now
    /// (the pid was handed out again since the previous reading): charged
    /// to the new process, some may be the old one's
    /// (`LossReason::SummaryPidReused`).
    pub pid_reused: u64,
}

impl SummaryDiff {
    pub fn new() -> SummaryDiff {
        SummaryDiff::default()
    }

    /// Difference of `now` (every key's totals at `ts_ns`) to the previous
    /// reading; `start_of(tgid)` is a process's start time (`None`: it no
    /// longer exists), which tells a pid handed out again from the same
    /// process.
    pub fn update(
        &mut self,
        ts_ns: u64,
        now: Vec<(Key, Box<SummaryValue>)>,
        start_of: impl Fn(u32) -> Option<u64>,
    ) -> Reading {
        let mut out = Reading::default();
        let mut gone_now = HashSet::new();
        // One look per process and reading, and whether its pid was
        // reused since the previous reading.
        let mut seen: HashMap<u32, (Option<u64>, bool)> = HashMap::new();
        for (key, value) in now {
            let Some(kind) = kind_of(&key) else {
                out.unknown += 1;
                continue;
            };
            // Kernel-thread reporters of IO page faults have key 0.
            let tgid = key.tgid();
            let (start, reused) = *seen.entry(tgid).or_insert_with(|| {
                if tgid == 0 {
                    return (Some(0), false);
                }
                let start = start_of(tgid);
                let reused = match start {
                    // Alive after being found gone, or started anew.
                    Some(s) => {
                        self.gone.contains(&tgid)
                            || self.started.get(&tgid).is_some_and(|&was| was != s)
                    }
                    None => false,
                };
                if let Some(s) = start {
                    self.started.insert(tgid, s);
                }
                (start, reused)
            });
            let zero = SummaryValue::ZERO;
            let before = self.prev.get(&key).map_or(&zero, |b| b);
            if let Some(ev) = delta(ts_ns, &key, kind, before, &value) {
                if reused {
                    out.pid_reused += ev.calls;
                }
                out.events.push(ev);
            }
            let dead = start.is_none();
            if dead && self.gone.contains(&tgid) {
                self.prev.remove(&key);
                self.started.remove(&tgid);
                out.remove.push(key);
            } else {
                if dead {
                    gone_now.insert(tgid);
                }
                self.prev.insert(key, value);
            }
        }
        self.gone = gone_now;
        out
    }
}

fn kind_of(key: &Key) -> Option<SummaryKind> {
    let key = match key {
        Key::Iopf(_) => return Some(SummaryKind::Iopf),
        Key::Call(k) => k,
    };
    Some(match key.kind {
        SUMMARY_PIN => SummaryKind::Pin,
        SUMMARY_UNPIN => SummaryKind::Unpin,
        SUMMARY_IOCTL => SummaryKind::Ioctl(match key.sub {
            0..=3 => PinIoctl::from_cmd(ioctl_cmd_of(key.sub))?,
            _ => return None,
        }),
        _ => return None,
    })
}

/// `after - before` as an event; `None` when no call was made between.
fn delta(
    ts_ns: u64,
    key: &Key,
    kind: SummaryKind,
    before: &SummaryValue,
    after: &SummaryValue,
) -> Option<SummaryEvent> {
    let calls = after.calls.wrapping_sub(before.calls);
    if calls == 0 {
        return None;
    }
    let buckets = after
        .buckets
        .iter()
        .zip(before.buckets.iter())
        .enumerate()
        .filter_map(|(i, (a, b))| {
            let n = a.wrapping_sub(*b);
            (n != 0).then_some((i, u64::from(n)))
        })
        .collect();
    let (pasid, device) = match key {
        Key::Iopf(k) => (k.pasid, comm_to_string(&after.dev_name)),
        Key::Call(_) => (0, String::new()),
    };
    Some(SummaryEvent {
        ts_ns,
        tgid: key.tgid(),
        comm: comm_to_string(&after.comm),
        kind,
        pasid,
        device,
        calls,
        errors: after.errors.wrapping_sub(before.errors),
        pages: after.pages.wrapping_sub(before.pages),
        longterm_pages: after.longterm_pages.wrapping_sub(before.longterm_pages),
        latency_sum_ns: after.latency_sum_ns.wrapping_sub(before.latency_sum_ns),
        buckets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use uacce_trace_common::summary::{bucket_of, IopfSummaryKey, SummaryKey};

    fn value(calls: u64, latencies: &[u64]) -> Box<SummaryValue> {
        let mut v = Box::new(SummaryValue::ZERO);
        v.calls = calls;
        v.pages = calls * 2;
        v.comm[..3].copy_from_slice(b"app");
        for &l in latencies {
            v.buckets[bucket_of(l)] = v.buckets[bucket_of(l)].wrapping_add(1);
        }
        v
    }

    fn key(tgid: u32) -> Key {
        Key::Call(SummaryKey {
            tgid,
            kind: SUMMARY_PIN,
            sub: 0,
        })
    }

    #[test]
    fn differences_per_interval_and_quiet_keys_say_nothing() {
        let mut d = SummaryDiff::new();
        let r = d.update(10, vec![(key(1), value(2, &[100, 5000]))], |_| Some(1));
        assert_eq!(r.events.len(), 1);
        let e = &r.events[0];
        assert_eq!((e.calls, e.pages, e.comm.as_str()), (2, 4, "app"));
        assert_eq!(e.buckets, vec![(bucket_of(100), 1), (bucket_of(5000), 1)]);
        let r = d.update(20, vec![(key(1), value(3, &[100, 5000, 5000]))], |_| {
            Some(1)
        });
        assert_eq!(r.events[0].calls, 1);
        assert_eq!(r.events[0].buckets, vec![(bucket_of(5000), 1)]);
        let r = d.update(30, vec![(key(1), value(3, &[100, 5000, 5000]))], |_| {
            Some(1)
        });
        assert!(r.events.is_empty());
    }

    #[test]
    fn counters_that_wrap_still_give_the_difference() {
        let mut d = SummaryDiff::new();
        let mut a = value(u64::MAX, &[]);
        a.buckets[3] = u32::MAX;
        d.update(1, vec![(key(1), a)], |_| Some(1));
        let mut b = value(1, &[]);
        b.buckets[3] = 1;
        let r = d.update(2, vec![(key(1), b)], |_| Some(1));
        assert_eq!(r.events[0].calls, 2);
        assert_eq!(r.events[0].buckets, vec![(3, 2)]);
    }

    #[test]
    fn a_gone_process_is_read_once_more_then_removed() {
        let mut d = SummaryDiff::new();
        d.update(1, vec![(key(7), value(1, &[10]))], |_| Some(1));
        // Gone: its late calls still count, the key stays.
        let r = d.update(2, vec![(key(7), value(3, &[10, 10, 10]))], |_| None);
        assert_eq!(r.events[0].calls, 2);
        assert!(r.remove.is_empty());
        // Gone twice: last counts, then removed.
        let r = d.update(3, vec![(key(7), value(4, &[10, 10, 10, 10]))], |_| None);
        assert_eq!(r.events[0].calls, 1);
        assert_eq!(r.remove, vec![key(7)]);
        // A new process with the same tgid starts from zero.
        let r = d.update(4, vec![(key(7), value(1, &[10]))], |_| Some(1));
        assert_eq!(r.events[0].calls, 1);
        assert_eq!(r.pid_reused, 0);
    }

    #[test]
    fn a_pid_handed_out_again_before_its_key_is_removed_is_counted() {
        let mut d = SummaryDiff::new();
        d.update(1, vec![(key(7), value(1, &[10]))], |_| Some(100));
        // Gone once, then alive again: another process has the pid.
        let r = d.update(2, vec![(key(7), value(2, &[10, 10]))], |_| None);
        assert_eq!(r.pid_reused, 0);
        let r = d.update(3, vec![(key(7), value(5, &[10; 5]))], |_| Some(300));
        assert_eq!((r.events[0].calls, r.pid_reused), (3, 3));
        // Quiet afterwards: nothing more to count.
        let r = d.update(4, vec![(key(7), value(6, &[10; 6]))], |_| Some(300));
        assert_eq!((r.events[0].calls, r.pid_reused), (1, 0));
        // Reused between two readings without being seen gone: the start
        // time tells.
        let r = d.update(5, vec![(key(7), value(8, &[10; 8]))], |_| Some(400));
        assert_eq!((r.events[0].calls, r.pid_reused), (2, 2));
        // Kernel-thread reporters (0) are nobody's pid.
        let k = Key::Iopf(IopfSummaryKey {
            tgid: 0,
            pasid: 1,
            dev: 1,
        });
        let r = d.update(6, vec![(k, value(1, &[10]))], |_| Some(9));
        assert_eq!(r.pid_reused, 0);
    }

    #[test]
    fn iopf_keys_carry_pasid_and_device_and_kernel_reporters_stay() {
        let mut d = SummaryDiff::new();
        let k = Key::Iopf(IopfSummaryKey {
            tgid: 0,
            pasid: 9,
            dev: 0xffff_8880_0000_1000,
        });
        let mut v = value(3, &[4000, 4000, 90_000]);
        v.errors = 1;
        v.dev_name[..5].copy_from_slice(b"mock0");
        let r = d.update(5, vec![(k, v.clone())], |_| None);
        let e = &r.events[0];
        assert_eq!(e.kind, SummaryKind::Iopf);
        assert_eq!((e.tgid, e.pasid, e.device.as_str()), (0, 9, "mock0"));
        assert_eq!((e.calls, e.errors), (3, 1));
        // Reporter 0 is no process: never removed as gone.
        let r = d.update(6, vec![(k, v.clone())], |_| None);
        let r2 = d.update(7, vec![(k, v)], |_| None);
        assert!(r.remove.is_empty() && r2.remove.is_empty());
        // Pins have no PASID or device.
        let r = d.update(8, vec![(key(3), value(1, &[5]))], |_| Some(1));
        assert_eq!((r.events[0].pasid, r.events[0].device.as_str()), (0, ""));
    }

    #[test]
    fn unknown_kinds_are_counted_not_decoded() {
        let mut d = SummaryDiff::new();
        let k = Key::Call(SummaryKey {
            tgid: 1,
            kind: 99,
            sub: 0,
        });
        let r = d.update(1, vec![(k, value(1, &[1]))], |_| Some(1));
        assert!(r.events.is_empty());
        assert_eq!(r.unknown, 1);
    }
}
