//! Request tracing: a uprobe at the entry and a uretprobe at the return of
//! user-space functions (`--op BINARY:SYMBOL`, the UADK/QPL/DML presets).
//! User space attaches the same two programs to every probed function, with
//! the op's number as the attach cookie; each outermost call becomes one
//! `RequestRecord` (entry time, latency, return value, thread).
//!
//! In flight: one entry per (thread, op) in an LRU map (bounded: a return
//! that never comes cannot leak). Recursion of the same op is told apart
//! from a call whose return was missed by the user stack pointer: a deeper
//! frame (lower address) is a recursive call (counted in `depth`, only the
//! outermost call is reported); an entry at the same or an outer frame means
//! the call in flight never returned through its uretprobe (longjmp,
//! exception unwinding, a thread that exited and whose id came back): it is
//! replaced and counted as `REQUEST_RETURN_MISSED`.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated},
    macros::{map, uprobe, uretprobe},
    maps::LruHashMap,
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use uacce_trace_common::{
    counter, RecordHeader, RequestInflight, RequestKey, RequestRecord, KIND_REQUEST, RECORD_VERSION,
};

use crate::{
    comm_into, count, count_exit_without_entry, count_ring_full, submit_flags, zero_fill, EVENTS,
};

/// Requests in flight, per (thread, op).
#[map]
static REQ_INFLIGHT: LruHashMap<RequestKey, RequestInflight> =
    LruHashMap::with_max_entries(16384, 0);

/// A recursive call's frame lies below its caller's by less than this; a
/// lower stack pointer further away is another stack (a new thread that
/// reuses an exited thread's id), not recursion.
const MAX_RECURSION_SPAN: u64 = 64 << 20;

/// Index of the stack pointer in the user `pt_regs` the probe sees, as
/// 8-byte words (x86-64: `struct pt_regs.sp`; arm64: `user_pt_regs.sp`).
#[allow(unexpected_cfgs)]
const SP_WORD: Option<usize> = if cfg!(bpf_target_arch = "x86_64") {
    Some(19)
} else if cfg!(bpf_target_arch = "aarch64") {
    Some(31)
} else {
    None
};

#[inline(always)]
fn user_sp(regs: *const u64) -> u64 {
    match SP_WORD {
        // SAFETY: a read of the probe's own register context, in bounds
        // of `pt_regs` on this architecture.
        Some(i) => unsafe { *regs.add(i) },
        None => 0,
    }
}

#[inline(always)]
fn key(ctx: *mut core::ffi::c_void, tid: u32) -> RequestKey {
    // SAFETY: the helper reads the cookie of the link that runs us.
    let op = unsafe { generated::bpf_get_attach_cookie(ctx) } as u32;
    RequestKey { tid, op }
}

#[uprobe]
pub fn req_uprobe(ctx: ProbeContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let key = key(ctx.as_ptr(), tid);
    let sp = user_sp(ctx.regs as *const u64);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(outer) = REQ_INFLIGHT.get_ptr_mut(key) {
        // SAFETY: valid map value pointer; only this thread uses its key.
        let outer_sp = unsafe { (*outer).sp };
        if sp != 0 && sp < outer_sp && outer_sp - sp < MAX_RECURSION_SPAN {
            // SAFETY: as above.
            unsafe {
                (*outer).depth += 1;
                if (*outer).depth > (*outer).max_depth {
                    (*outer).max_depth = (*outer).depth;
                }
            }
            return 0;
        }
        // The call in flight never returned through its uretprobe.
        count(counter::REQUEST_RETURN_MISSED);
    }
    let value = RequestInflight {
        ts_ns: now,
        sp,
        depth: 0,
        max_depth: 0,
    };
    if let Err(e) = REQ_INFLIGHT.insert(key, value, 0) {
        if crate::count_first(counter::INFLIGHT_FULL) {
            diag!(
                "request in-flight map: insert failed ({}), request not timed",
                e
            );
        }
    }
    0
}

#[uretprobe]
pub fn req_uretprobe(ctx: RetProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let key = key(ctx.as_ptr(), tid);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(entry) = REQ_INFLIGHT.get_ptr_mut(key) else {
        count_exit_without_entry(now);
        return 0;
    };
    // SAFETY: valid map value pointer; only this thread uses its key.
    let value = unsafe { *entry };
    if value.depth > 0 {
        // A recursive call returns; the outermost one reports.
        // SAFETY: as above.
        unsafe { (*entry).depth = value.depth - 1 };
        return 0;
    }
    let _ = REQ_INFLIGHT.remove(key);
    let Some(mut slot) = EVENTS.reserve::<RequestRecord>(0) else {
        count_ring_full(KIND_REQUEST);
        return 0;
    };
    let r = zero_fill(&mut slot);
    r.header = RecordHeader {
        kind: KIND_REQUEST,
        version: RECORD_VERSION,
        size: core::mem::size_of::<RequestRecord>() as u32,
    };
    r.ts_ns = value.ts_ns;
    r.latency_ns = now.wrapping_sub(value.ts_ns);
    r.ret = ctx.ret::<u64>() as i64;
    r.tgid = (pid_tgid >> 32) as u32;
    r.tid = tid;
    r.op = key.op;
    r.depth = value.max_depth;
    comm_into(&mut r.comm);
    slot.submit(submit_flags(core::mem::size_of::<RequestRecord>()));
    0
}
