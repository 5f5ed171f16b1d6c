//! Summary mode: the pin, unpin and pin-ioctl exits add each call to the
//! per-CPU `SUMMARY` map instead of writing a record (layout and buckets:
//! `uacce_trace_common::summary`). User space turns it on at load
//! (`SUMMARY_MODE`) and reads the map once per interval.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    macros::map,
    maps::{Array, PerCpuHashMap},
};
use uacce_trace_common::{
    counter,
    summary::{bucket_of, SummaryKey, SummaryValue, SUMMARY_MAX_ENTRIES},
};

use crate::comm_into;

/// Per process and kind: this CPU's totals. Not preallocated: memory
/// grows with the keys in use (a value is about 1.2 KiB per CPU), not with
/// the bound, which user space may change at load.
#[map]
static SUMMARY: PerCpuHashMap<SummaryKey, SummaryValue> =
    PerCpuHashMap::with_max_entries(SUMMARY_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// One all-zero value, never written: what a new key starts from (too big
/// for the 512-byte stack).
#[map]
static SUMMARY_ZERO: Array<SummaryValue> = Array::with_max_entries(1, 0);

/// 1: summary mode (set by user space at load).
#[unsafe(no_mangle)]
static SUMMARY_MODE: u32 = 0;

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
    let value = match SUMMARY.get_ptr_mut(key) {
        Some(v) => v,
        None => {
            let Some(zero) = SUMMARY_ZERO.get(0) else {
                return false;
            };
            // Another CPU may make the key first (EEXIST): the lookup
            // below finds it either way.
            let _ = SUMMARY.insert(key, zero, u64::from(BPF_NOEXIST));
            match SUMMARY.get_ptr_mut(key) {
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
        comm_into(&mut v.comm);
    }
    if let Some(b) = v.buckets.get_mut(bucket_of(call.latency_ns)) {
        *b = b.wrapping_add(1);
    }
    true
}
