//! Summary mode: the pin, unpin and pin-ioctl exits add each call to the
//! per-CPU `SUMMARY` map instead of writing a record, and the IO page
//! fault hooks pair reports with responses here ([`iopf_report`],
//! [`iopf_response`]) and add each answered group to `IOPF_SUMMARY`, a
//! map of its own so that the pin kinds' key stays 8 bytes (layout and buckets:
//! `uacce_trace_common::summary`). User space turns it on at load
//! (`SUMMARY_MODE`) and reads the map once per interval.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, PerCpuHashMap},
};
use uacce_trace_common::{
    counter,
    summary::{
        bucket_of, iopf_slot, IopfSlot, IopfSummaryKey, SummaryKey, SummaryValue, FLAG_LAST_PAGE,
        IOPF_TABLE_SLOTS, IOPF_TIMEOUT_NS, SLOT_CLOSED, SLOT_FREE, SLOT_OPEN, SLOT_SAMPLED,
        SUMMARY_IOPF, SUMMARY_MAX_ENTRIES,
    },
    IopfKey, COMM_LEN,
};

use crate::{comm_into, count, kernel_str_into};

/// Per process and kind: this CPU's totals. Not preallocated: memory
/// grows with the keys in use (a value is about 1.2 KiB per CPU), not with
/// the bound, which user space may change at load.
#[map]
static SUMMARY: PerCpuHashMap<SummaryKey, SummaryValue> =
    PerCpuHashMap::with_max_entries(SUMMARY_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// Per (reporting user task or 0, PASID, device): this CPU's answered IO
/// page fault groups. Apart from `SUMMARY` so that the pin kinds, called
/// far more often, hash an 8-byte key and not this 16-byte one.
#[map]
static IOPF_SUMMARY: PerCpuHashMap<IopfSummaryKey, SummaryValue> =
    PerCpuHashMap::with_max_entries(SUMMARY_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// One all-zero value, never written: what a new key starts from (too big
/// for the 512-byte stack).
#[map]
static SUMMARY_ZERO: Array<SummaryValue> = Array::with_max_entries(1, 0);

/// 1: summary mode (set by user space at load).
#[unsafe(no_mangle)]
static SUMMARY_MODE: u32 = 0;

/// Summary mode: IO page fault groups awaiting their response, at
/// `iopf_slot(dev, pasid, grpid)`: one row of 512 slots per (device,
/// PASID) hash, one slot per group index, the key stored for the response
/// to check. An array: a lookup is an index, no hashing of the key and no
/// allocation, cheaper than a hash map's insert and delete per group.
#[map]
static IOPF_TABLE: Array<IopfSlot> = Array::with_max_entries(IOPF_TABLE_SLOTS, 0);

/// One new group in 2^`IOPF_SAMPLE_SHIFT` goes to the ring as in per-event
/// mode, so that summary mode still shows where faults hit (fault
/// regions); 0: none (set by user space at load).
#[unsafe(no_mangle)]
static IOPF_SAMPLE_SHIFT: u32 = 6;

/// The running kernel's `FOLL_LONGTERM` bit (set by user space at load;
/// 0 when unknown, then no page counts as long-term).
#[unsafe(no_mangle)]
static FOLL_LONGTERM: u32 = 0;

#[inline(always)]
pub(crate) fn enabled() -> bool {
    // SAFETY: a read of a global; volatile so the default is not folded.
    unsafe { core::ptr::read_volatile(&SUMMARY_MODE) != 0 }
}

#[inline(always)]
pub(crate) fn is_longterm(gup_flags: u32) -> bool {
    // SAFETY: as above.
    let bit = unsafe { core::ptr::read_volatile(&FOLL_LONGTERM) };
    bit != 0 && gup_flags & bit != 0
}

/// One call, as the summary keeps it.
pub(crate) struct Call {
    pub kind: u16,
    pub sub: u16,
    pub latency_ns: u64,
    pub error: bool,
    pub pages: u64,
    pub longterm_pages: u64,
}

/// Adds `call` of process `tgid` to its key's totals on this CPU. False
/// when the key is new and the map is full (counted as `SUMMARY_FULL`):
/// the caller then writes the call to the ring.
#[inline(always)]
pub(crate) fn add(tgid: u32, call: Call) -> bool {
    let key = SummaryKey {
        tgid,
        kind: call.kind,
        sub: call.sub,
    };
    add_to(&SUMMARY, key, tgid, call, |v| comm_into(&mut v.comm))
}

/// [`add`] under `key` of `map` (`tgid`: the key's process, for the
/// diagnostic); `names` fills the comm (and device name) of a value that
/// has none on this CPU yet.
#[inline(always)]
fn add_to<K>(
    map: &PerCpuHashMap<K, SummaryValue>,
    key: K,
    tgid: u32,
    call: Call,
    names: impl FnOnce(&mut SummaryValue),
) -> bool {
    let value = match map.get_ptr_mut(&key) {
        Some(v) => v,
        None => {
            let Some(zero) = SUMMARY_ZERO.get(0) else {
                return false;
            };
            // Another CPU may make the key first (EEXIST): the lookup
            // below finds it either way.
            let _ = map.insert(&key, zero, u64::from(BPF_NOEXIST));
            match map.get_ptr_mut(&key) {
                Some(v) => v,
                None => {
                    if crate::count_first(counter::SUMMARY_FULL) {
                        diag!(
                            "summary map full: calls of process {} and later new ones go to the ring",
                            tgid
                        );
                    }
                    return false;
                }
            }
        }
    };
    // SAFETY: this CPU's value of the key, from the lookup; per-CPU, and
    // the programs do not nest on a CPU for the same call.
    let v = unsafe { &mut *value };
    v.calls = v.calls.wrapping_add(1);
    if call.error {
        v.errors = v.errors.wrapping_add(1);
    }
    v.pages = v.pages.wrapping_add(call.pages);
    v.longterm_pages = v.longterm_pages.wrapping_add(call.longterm_pages);
    v.latency_sum_ns = v.latency_sum_ns.wrapping_add(call.latency_ns);
    if v.comm[0] == 0 {
        names(v);
    }
    if let Some(b) = v.buckets.get_mut(bucket_of(call.latency_ns)) {
        *b = b.wrapping_add(1);
    }
    true
}

/// `v` as a plain number to the verifier. The fentry hooks' device
/// argument is a typed kernel pointer (BTF), and the verifier refuses
/// shifts and other bit operations on pointers (EACCES: "bitwise operator
/// … on pointer prohibited"), which the slot's hash needs; a value read
/// back through a helper is a scalar. Costs one probe read, in summary
/// mode's IOPF path only.
#[inline(always)]
fn scalar(v: u64) -> u64 {
    let spilled = v;
    // SAFETY: probe read of this program's own stack slot.
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel(&spilled as *const u64) }.unwrap_or(0)
}

#[inline(always)]
fn sample_shift() -> u32 {
    // SAFETY: a read of a global; volatile so the default is not folded.
    unsafe { core::ptr::read_volatile(&IOPF_SAMPLE_SHIFT) }
}

/// Summary mode, a fault of group `key` reported by the current task
/// (`user`: a user task; `dev_name`: kernel address of the device's name,
/// 0 unknown): kept in [`IOPF_TABLE`] (true), or to be written to the ring
/// by the caller (false: a sampled group, or its slot is held by another
/// live group, counted as `IOPF_TABLE_COLLISION`). The table follows
/// user space's pairing (`ingest::pairing`): a group stays open until its
/// `LAST_PAGE` fault; a report for a closed group still waiting starts a
/// new group (the waiting one is counted superseded).
///
/// Two CPUs writing one slot at once (two groups of one row and group
/// index reported in the same instant) can leave a mixed key; the
/// response of such a group then finds no match and goes to the ring,
/// where user space counts it as a response without report.
#[inline(always)]
pub(crate) fn iopf_report(key: IopfKey, flags: u32, user: bool, dev_name: u64) -> bool {
    let key = IopfKey {
        dev: scalar(key.dev),
        ..key
    };
    let Some(slot) = IOPF_TABLE.get_ptr_mut(iopf_slot(key.dev, key.pasid, key.grpid)) else {
        return false;
    };
    // SAFETY: a valid map value pointer (array: never freed).
    let s = unsafe { &mut *slot };
    let last = flags & FLAG_LAST_PAGE != 0;
    let state = s.state & 3;
    let sampled = s.state & SLOT_SAMPLED;
    let mine =
        state != SLOT_FREE && s.dev == key.dev && s.pasid == key.pasid && s.grpid == key.grpid;
    if mine && state == SLOT_OPEN {
        // One more fault of the open group (user space counts it too
        // when the group is sampled).
        if last {
            s.state = SLOT_CLOSED | sampled;
        }
        return sampled == 0;
    }
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let mut sample = false;
    if mine {
        // Closed and still waiting: its response was not seen. A sampled
        // group's successor stays sampled, so that user space, which has
        // the waiting group, counts it.
        if sampled != 0 {
            sample = true;
        } else {
            count(counter::IOPF_TABLE_SUPERSEDED);
        }
    } else if state != SLOT_FREE {
        if now.wrapping_sub(s.ts_ns) <= IOPF_TIMEOUT_NS {
            count(counter::IOPF_TABLE_COLLISION);
            return false;
        }
        // Never answered; user space times out a sampled one itself.
        if sampled == 0 {
            count(counter::IOPF_TABLE_STALE);
        }
    }
    let shift = sample_shift();
    if !sample && shift != 0 && shift < 32 {
        // SAFETY: helper without preconditions.
        sample = unsafe { bpf_get_prandom_u32() } & ((1u32 << shift) - 1) == 0;
    }
    s.dev = key.dev;
    s.pasid = key.pasid;
    s.grpid = key.grpid;
    s.ts_ns = now;
    s.dev_name = dev_name;
    s.reporter_tgid = if user {
        (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32
    } else {
        0
    };
    if !sample {
        comm_into(&mut s.reporter_comm);
    }
    s.state = if last { SLOT_CLOSED } else { SLOT_OPEN } | if sample { SLOT_SAMPLED } else { 0 };
    !sample
}

/// What [`iopf_response`] did with a response.
pub(crate) enum Response {
    /// Added to [`IOPF_SUMMARY`]; nothing to write.
    Counted,
    /// Its group is not in the table (or is sampled): the caller writes
    /// the response to the ring for user space to pair.
    Ring,
    /// Its group was in the table but the summary map is full: the caller
    /// writes the group's report (from the slot) and then the response.
    RingWithReport(IopfSlot),
}

/// Summary mode, the response to group `key` (`code`: the response code):
/// added to [`IOPF_SUMMARY`] when the group is in [`IOPF_TABLE`] (the slot is
/// freed), else to be written to the ring by the caller (sampled,
/// collided, reported before the tracer started; a miss is counted as
/// `IOPF_TABLE_MISS`). A response for device `d` also takes a group
/// reported for device 0 (hooks that do not know the device), as user
/// space's pairing does.
#[inline(always)]
pub(crate) fn iopf_response(key: IopfKey, code: u32) -> Response {
    let key = IopfKey {
        dev: scalar(key.dev),
        ..key
    };
    let mut slot = find(key);
    if slot.is_none() && key.dev != 0 {
        slot = find(IopfKey { dev: 0, ..key });
    }
    let Some(slot) = slot else {
        count(counter::IOPF_TABLE_MISS);
        return Response::Ring;
    };
    // SAFETY: a valid map value pointer (array: never freed).
    let s = unsafe { &mut *slot };
    let sampled = s.state & SLOT_SAMPLED != 0;
    s.state = SLOT_FREE;
    if sampled {
        return Response::Ring;
    }
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let summary_key = IopfSummaryKey {
        tgid: s.reporter_tgid,
        pasid: s.pasid,
        dev: s.dev,
    };
    let call = Call {
        kind: SUMMARY_IOPF,
        sub: 0,
        latency_ns: now.saturating_sub(s.ts_ns),
        error: code != 0,
        pages: 0,
        longterm_pages: 0,
    };
    let (comm, name) = (s.reporter_comm, s.dev_name);
    if add_to(&IOPF_SUMMARY, summary_key, s.reporter_tgid, call, |v| {
        v.comm = comm;
        kernel_str_into(name, &mut v.dev_name);
    }) {
        Response::Counted
    } else {
        Response::RingWithReport(*s)
    }
}

/// The slot of group `key` when it holds that group.
#[inline(always)]
fn find(key: IopfKey) -> Option<*mut IopfSlot> {
    let slot = IOPF_TABLE.get_ptr_mut(iopf_slot(key.dev, key.pasid, key.grpid))?;
    // SAFETY: a valid map value pointer (array: never freed).
    let s = unsafe { &*slot };
    (s.state & 3 != SLOT_FREE && s.dev == key.dev && s.pasid == key.pasid && s.grpid == key.grpid)
        .then_some(slot)
}

const _: () = assert!(COMM_LEN == 16);
