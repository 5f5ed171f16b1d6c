//! Bench source (`cargo xtask bench pipeline`): IOPF-shaped records from a
//! syscall that a trigger loop calls, through the same `EVENTS` ring buffer
//! and the same user-space decode → aggregate path as real IO page faults.
//!
//! Never part of the hook plan: user space attaches these two programs only
//! for `uacce-trace bench`, and they emit nothing unless the calling
//! process is `BENCH_TGID` (0 by default, which no process making system
//! calls has).
//!
//! They mirror the real report → response pairing of `iopf.rs`, so their
//! cost is that of one traced IOPF: the "report" (`sys_enter_getppid`)
//! builds the pending record (timestamp, comm, device name) and stores it in
//! a hash map; the "response" (`sys_exit_getppid`) takes it out, computes
//! the latency and writes the 128-byte `IopfRecord` into the ring.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use uacce_trace_common::{
    counter, IopfRecord, RecordHeader, COMM_LEN, DEV_NAME_LEN, HOOK_TRACEPOINT,
    IOPF_REPORTER_IS_USER, KIND_IOPF, RECORD_VERSION,
};

use crate::{count, EVENTS};

/// The process whose `getppid` calls become records; set by user space at
/// load time (0: none).
#[unsafe(no_mangle)]
static BENCH_TGID: u32 = 0;

/// Wake-up policy of the bench's ring-buffer submits, set by user space:
/// 0 = the kernel's default (wake the reader whenever it has caught up, so
/// a fast reader is woken for nearly every record), 1 = what every other
/// program does ([`crate::submit_flags`]: once per batch). Lets one run
/// compare both.
#[unsafe(no_mangle)]
static BENCH_WAKEUP: u32 = 1;

/// Records written per call (1..=[`MAX_BURST`]), set by user space: lets
/// one trigger thread offer more records per second than it can make
/// system calls.
#[unsafe(no_mangle)]
static BENCH_BURST: u32 = 1;
const MAX_BURST: u32 = 16;

/// Pending "faults" of the bench, per thread (the real path keys by fault
/// group; one per thread is all a syscall loop can have in flight).
#[map]
static BENCH_PENDING: HashMap<u32, IopfRecord> = HashMap::with_max_entries(256, 0);

/// `dev` of bench records (a recognisable non-pointer).
const BENCH_DEV: u64 = 0xbe4c_0000_0000_0001;
/// Fault addresses cycle through this many pages above `BENCH_ADDR`, so the
/// aggregator's fault map sees a realistic working set.
const BENCH_PAGES: u64 = 1024;
const BENCH_ADDR: u64 = 0x7f00_0000_0000;

#[inline(always)]
fn bench_tgid() -> u32 {
    // SAFETY: a read of a global; volatile so the default is not folded
    // (user space rewrites it before load).
    unsafe { core::ptr::read_volatile(&BENCH_TGID) }
}

/// "Report": `sys_enter_getppid` of the bench process.
#[tracepoint]
pub fn bench_report(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if tgid != bench_tgid() {
        return 0;
    }
    let tid = pid_tgid as u32;
    // SAFETY: helper without preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let mut dev_name = [0u8; DEV_NAME_LEN];
    dev_name[..6].copy_from_slice(b"bench0");
    let seq = ts >> 8;
    let pending = IopfRecord {
        header: RecordHeader {
            kind: KIND_IOPF,
            version: RECORD_VERSION,
            size: core::mem::size_of::<IopfRecord>() as u32,
        },
        ts_ns: ts,
        latency_ns: 0,
        dev: BENCH_DEV,
        addr: BENCH_ADDR + (seq % BENCH_PAGES) * 4096,
        pasid: 1,
        grpid: seq as u32 & 0x1ff,
        perm: 3,
        flags: 2,
        response: 0,
        nr_faults: 1,
        reporter_tgid: tgid,
        flags2: IOPF_REPORTER_IS_USER,
        reporter_comm: bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]),
        dev_name,
        hook: HOOK_TRACEPOINT,
        _pad: [0; 7],
    };
    if BENCH_PENDING.insert(tid, pending, 0).is_err() {
        count(counter::IOPF_PENDING_FULL);
    }
    0
}

/// "Response": `sys_exit_getppid` of the bench process.
#[tracepoint]
pub fn bench_response(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 != bench_tgid() {
        return 0;
    }
    let tid = pid_tgid as u32;
    let Some(pending) = BENCH_PENDING.get_ptr(tid) else {
        count(counter::RESPONSE_WITHOUT_REPORT);
        return 0;
    };
    // SAFETY: valid map value pointer; only this thread uses its key.
    let mut record = unsafe { *pending };
    let _ = BENCH_PENDING.remove(tid);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    record.latency_ns = now.wrapping_sub(record.ts_ns);
    // SAFETY: reads of globals (see `bench_tgid`).
    let (wakeup, burst) = unsafe {
        (
            core::ptr::read_volatile(&BENCH_WAKEUP),
            core::ptr::read_volatile(&BENCH_BURST),
        )
    };
    for i in 0..MAX_BURST {
        if i >= burst {
            break;
        }
        match EVENTS.reserve::<IopfRecord>(0) {
            Some(mut slot) => {
                slot.write(record);
                let flags = if wakeup == 0 {
                    0
                } else {
                    crate::submit_flags(core::mem::size_of::<IopfRecord>())
                };
                slot.submit(flags);
            }
            None => count(counter::RINGBUF_FULL),
        }
        // The next record of a burst: the next page and group.
        record.addr = BENCH_ADDR + ((record.addr - BENCH_ADDR + 4096) % (BENCH_PAGES * 4096));
        record.grpid = (record.grpid + 1) & 0x1ff;
    }
    0
}
