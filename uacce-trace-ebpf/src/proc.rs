//! Process tree for `record -- COMMAND`: which processes descend from the
//! command, decided when each is born, in ring order with the events.
//!
//! `FOLLOW` holds the followed processes (tgid → `FOLLOW_MEMBER`) and the
//! tracer itself (`FOLLOW_CHILDREN`: only its children, i.e. the command,
//! are followed); user space seeds it before it starts the command.
//!
//! - `proc_fork` (raw tracepoint `sched_process_fork`, arguments `(parent,
//!   child)` task pointers, running in the parent): when the parent's
//!   process is in `FOLLOW` and the child is a new process (its tgid is not
//!   the parent's: thread creation is not followed, membership is per
//!   process), the child joins `FOLLOW` and a `PROC_OP_FORK` record is
//!   written. Both happen before the child first runs, so every record of
//!   the child comes after its fork record in the ring. A raw tracepoint
//!   because the classic one gives only the child's thread id, not its
//!   tgid.
//! - `proc_exit` (tracepoint `sched:sched_process_exit`, running in the
//!   exiting thread): fires per thread; when the thread group is dead
//!   (`signal->live` is 0: the last thread is in `do_exit`; without that
//!   offset, when the leader exits) the process leaves `FOLLOW` and a
//!   `PROC_OP_EXIT` record is written (once: the delete decides).
//!
//! Everything else returns at the first map lookup, so unrelated forks and
//! exits cost one hash lookup.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns},
    macros::{map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap},
    programs::{RawTracePointContext, TracePointContext},
};
use uacce_trace_common::{
    counter, ProcRecord, RecordHeader, FOLLOW_CHILDREN, FOLLOW_MAX, FOLLOW_MEMBER, KIND_PROC,
    PROC_OP_EXIT, PROC_OP_FORK, RECORD_VERSION,
};

use crate::{
    comm_into, count, count_ring_full,
    iopf::{cfg, known, read_u32, read_u64},
    submit_flags, zero_fill, EVENTS,
};

/// Followed processes (see the module docs).
#[map]
static FOLLOW: HashMap<u32, u32> = HashMap::with_max_entries(FOLLOW_MAX, 0);

/// Index 0: process-tree records lost so far, all CPUs. A plain add (the
/// BPF target has no atomic add in Rust): concurrent losses on two CPUs may
/// count once, but the value never goes back to 0, which is what readers
/// rely on (any loss so far means the tree may have a gap).
#[map]
static PROC_LOST: Array<u64> = Array::with_max_entries(1, 0);

/// Notes a lost process-tree record (the caller also counts its reason in
/// the per-CPU counters) where every later record reports it.
#[inline(always)]
fn proc_lost() {
    if let Some(slot) = PROC_LOST.get_ptr_mut(0) {
        // SAFETY: valid pointer into the array map for this program run.
        unsafe {
            let v = core::ptr::read_volatile(slot);
            core::ptr::write_volatile(slot, v.wrapping_add(1).max(1));
        }
    }
}

#[inline(always)]
fn emit_proc(op: u32, tgid: u32, parent_tgid: u32, tid: u32) {
    let Some(mut slot) = EVENTS.reserve::<ProcRecord>(0) else {
        count_ring_full(KIND_PROC);
        proc_lost();
        return;
    };
    let r = zero_fill(&mut slot);
    r.header = RecordHeader {
        kind: KIND_PROC,
        version: RECORD_VERSION,
        size: core::mem::size_of::<ProcRecord>() as u32,
    };
    // SAFETY: helper without preconditions.
    r.ts_ns = unsafe { bpf_ktime_get_ns() };
    r.op = op;
    r.tgid = tgid;
    r.parent_tgid = parent_tgid;
    r.tid = tid;
    r.lost = PROC_LOST.get(0).copied().unwrap_or(0);
    comm_into(&mut r.comm);
    slot.submit(submit_flags(core::mem::size_of::<ProcRecord>()));
}

#[raw_tracepoint]
pub fn proc_fork(ctx: RawTracePointContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let parent = (pid_tgid >> 32) as u32;
    // SAFETY: the value is a plain u32 read once.
    if unsafe { FOLLOW.get(parent) }.is_none() {
        return 0;
    }
    let c = cfg();
    if !known(c.task_tgid) {
        return 0;
    }
    let child_task: u64 = ctx.arg(1);
    let child = read_u32(child_task + u64::from(c.task_tgid));
    if child == parent {
        // A new thread of a followed process: already covered.
        return 0;
    }
    if child == 0 || FOLLOW.insert(child, FOLLOW_MEMBER, 0).is_err() {
        // Its own children will not be followed; the fork itself is still
        // reported below.
        count(counter::FOLLOW_FULL);
        proc_lost();
    }
    emit_proc(PROC_OP_FORK, child, parent, pid_tgid as u32);
    0
}

#[tracepoint]
pub fn proc_exit(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: the value is a plain u32 read once.
    match unsafe { FOLLOW.get(tgid) } {
        Some(&FOLLOW_MEMBER) => {}
        // Not followed, or the tracer (whose own exit nobody reads).
        Some(&FOLLOW_CHILDREN) | Some(_) | None => return 0,
    }
    let c = cfg();
    let tid = pid_tgid as u32;
    let group_dead = if known(c.task_signal) && known(c.signal_live) {
        // SAFETY: helper without preconditions.
        let task = unsafe { bpf_get_current_task() };
        let signal = read_u64(task + u64::from(c.task_signal));
        signal != 0 && read_u32(signal + u64::from(c.signal_live)) == 0
    } else {
        tid == tgid
    };
    if !group_dead {
        return 0;
    }
    // Two threads exiting together may both see `live` 0: the delete
    // decides which one reports.
    if FOLLOW.remove(tgid).is_ok() {
        emit_proc(PROC_OP_EXIT, tgid, 0, tid);
    }
    0
}
