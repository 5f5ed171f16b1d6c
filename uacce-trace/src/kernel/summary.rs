//! Reading the `SUMMARY` and `IOPF_SUMMARY` maps of summary mode
//! (layout: `uacce_trace_common::summary`): every key's values summed over
//! the CPUs, the two maps' keys as one [`Key`]. What the sums mean, and
//! their differences, is `ingest::summary`'s job.

use aya::maps::{Array, MapData, PerCpuHashMap};
use uacce_trace_common::summary::{
    IopfSlot, IopfSummaryKey, SummaryKey, SummaryValue, SLOT_FREE, SLOT_SAMPLED,
};

/// A key of either summary map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// `SUMMARY`: pins, unpins and pin ioctls per process.
    Call(SummaryKey),
    /// `IOPF_SUMMARY`: answered IO page fault groups per (reporting user
    /// task or 0, PASID, device).
    Iopf(IopfSummaryKey),
}

impl Key {
    /// The key's process (IO page faults: the reporting user task, 0 for
    /// a kernel thread).
    pub fn tgid(&self) -> u32 {
        match self {
            Key::Call(k) => k.tgid,
            Key::Iopf(k) => k.tgid,
        }
    }
}

/// The kernel's `SUMMARY` and `IOPF_SUMMARY` maps, and `IOPF_TABLE`, its
/// IO page fault groups awaiting their response.
pub struct SummaryMap {
    map: PerCpuHashMap<MapData, SummaryKey, SummaryValue>,
    iopf: PerCpuHashMap<MapData, IopfSummaryKey, SummaryValue>,
    iopf_table: Array<MapData, IopfSlot>,
}

impl SummaryMap {
    pub fn new(
        map: PerCpuHashMap<MapData, SummaryKey, SummaryValue>,
        iopf: PerCpuHashMap<MapData, IopfSummaryKey, SummaryValue>,
        iopf_table: Array<MapData, IopfSlot>,
    ) -> SummaryMap {
        SummaryMap {
            map,
            iopf,
            iopf_table,
        }
    }

    /// IO page fault groups in the kernel's pairing table that still wait
    /// for their response: (reported within `timeout_ns` of `now_ns`,
    /// older). Sampled groups are left out (user space's pairing has them).
    pub fn iopf_waiting(&self, now_ns: u64, timeout_ns: u64) -> (u64, u64) {
        let (mut recent, mut old) = (0, 0);
        for slot in self.iopf_table.iter().filter_map(Result::ok) {
            if slot.state & 3 == SLOT_FREE || slot.state & SLOT_SAMPLED != 0 {
                continue;
            }
            if now_ns.saturating_sub(slot.ts_ns) <= timeout_ns {
                recent += 1;
            } else {
                old += 1;
            }
        }
        (recent, old)
    }

    /// Every key of both maps with its values summed over the CPUs
    /// (wrapping, as the kernel counts), and the comm of the first CPU
    /// that has one. Keys that vanish while being read are skipped; a read
    /// error ends that map's read with what was read so far, and is
    /// returned with it.
    pub fn read(&self) -> (Vec<(Key, Box<SummaryValue>)>, Option<String>) {
        let mut out = Vec::new();
        let calls = read_into(&self.map, "SUMMARY", Key::Call, &mut out);
        let iopfs = read_into(&self.iopf, "IOPF_SUMMARY", Key::Iopf, &mut out);
        (out, calls.or(iopfs))
    }

    /// Forget `key` (its process is gone and its last counts were read).
    pub fn remove(&mut self, key: &Key) {
        // Already gone is fine: nothing else removes keys.
        let _ = match key {
            Key::Call(k) => self.map.remove(k),
            Key::Iopf(k) => self.iopf.remove(k),
        };
    }
}

/// Every key of `map` (`name`), as `key`, with its values summed over the
/// CPUs, appended to `out`; a read error ends the read and is returned.
fn read_into<K: aya::Pod>(
    map: &PerCpuHashMap<MapData, K, SummaryValue>,
    name: &str,
    key: impl Fn(K) -> Key,
    out: &mut Vec<(Key, Box<SummaryValue>)>,
) -> Option<String> {
    for item in map.iter() {
        match item {
            Ok((k, per_cpu)) => out.push((key(k), Box::new(sum(per_cpu.iter())))),
            Err(e) => return Some(format!("{name}: {e}")),
        }
    }
    None
}

/// The CPUs' values of one key, summed.
pub fn sum<'a>(values: impl Iterator<Item = &'a SummaryValue>) -> SummaryValue {
    let mut t = SummaryValue::ZERO;
    for v in values {
        t.calls = t.calls.wrapping_add(v.calls);
        t.errors = t.errors.wrapping_add(v.errors);
        t.pages = t.pages.wrapping_add(v.pages);
        t.longterm_pages = t.longterm_pages.wrapping_add(v.longterm_pages);
        t.latency_sum_ns = t.latency_sum_ns.wrapping_add(v.latency_sum_ns);
        if t.comm[0] == 0 {
            t.comm = v.comm;
        }
        if t.dev_name[0] == 0 {
            t.dev_name = v.dev_name;
        }
        for (a, b) in t.buckets.iter_mut().zip(v.buckets.iter()) {
            *a = a.wrapping_add(*b);
        }
    }
    t
}
