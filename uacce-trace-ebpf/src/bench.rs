//! Bench source (`cargo xtask bench pipeline`): IOPF-shaped records from a
//! syscall that a trigger loop calls, through the same `EVENTS` ring buffer
//! and the same user-space decode → aggregate path as real IO page faults.
//!
//! Never part of the hook plan: user space attaches these two programs only
//! for `uacce-trace bench`, and they emit nothing unless the calling
//! process is `BENCH_TGID` (0 by default, which no process making system
//! calls has).
//!
//! They call the report and response writers of `iopf.rs` themselves, so
//! their cost is that of one traced IOPF: the "report"
//! (`sys_enter_getppid`) writes a 128-byte report record (timestamp,
//! reporter, comm, device name), the "response" (`sys_exit_getppid`) a
//! 40-byte response record; user space pairs them and computes the latency
//! as for real faults.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use uacce_trace_common::{IopfKey, HOOK_TRACEPOINT, IOPF_REPORTER_IS_USER};

use crate::iopf::{emit_report, on_response};

/// The process whose `getppid` calls become records; set by user space at
/// load time (0: none).
#[unsafe(no_mangle)]
static BENCH_TGID: u32 = 0;

/// IO page faults per call (1..=[`MAX_BURST`]), set by user space: lets
/// one trigger thread offer more faults per second than it can make
/// system calls.
#[unsafe(no_mangle)]
static BENCH_BURST: u32 = 1;
const MAX_BURST: u32 = 16;

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

#[inline(always)]
fn burst() -> u32 {
    // SAFETY: a read of a global (see `bench_tgid`).
    unsafe { core::ptr::read_volatile(&BENCH_BURST) }
}

/// Fault group `i` of a call by thread `tid`: the report and the response
/// of one call compute the same keys, as a device's fault and its answer
/// name the same group.
#[inline(always)]
fn key(tid: u32, i: u32) -> IopfKey {
    IopfKey {
        dev: BENCH_DEV,
        pasid: 1,
        grpid: (tid.wrapping_mul(MAX_BURST) + i) & 0x1ff,
    }
}

/// "Report": `sys_enter_getppid` of the bench process; the same
/// [`emit_report`] as `iommu_report_device_fault`'s hooks.
#[tracepoint]
pub fn bench_report(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 != bench_tgid() {
        return 0;
    }
    let tid = pid_tgid as u32;
    let burst = burst();
    for i in 0..MAX_BURST {
        if i >= burst {
            break;
        }
        let k = key(tid, i);
        emit_report(|r| {
            // The page cycles with the report time (a working set of
            // BENCH_PAGES pages).
            let page = (r.ts_ns >> 8) + u64::from(i);
            r.dev = k.dev;
            r.addr = BENCH_ADDR + (page % BENCH_PAGES) * 4096;
            r.pasid = k.pasid;
            r.grpid = k.grpid;
            r.perm = 3;
            r.flags = 2;
            r.flags2 = IOPF_REPORTER_IS_USER;
            // The hooks read the name from kernel memory; one aligned
            // store here.
            // SAFETY: an 8-byte store into the 8-aligned `dev_name` field.
            unsafe {
                *(r.dev_name.as_mut_ptr() as *mut u64) = u64::from_le_bytes(*b"bench0\0\0");
            }
        });
    }
    0
}

/// "Response": `sys_exit_getppid` of the bench process; the same
/// [`on_response`] as the response hooks.
#[tracepoint]
pub fn bench_response(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if (pid_tgid >> 32) as u32 != bench_tgid() {
        return 0;
    }
    let tid = pid_tgid as u32;
    let burst = burst();
    for i in 0..MAX_BURST {
        if i >= burst {
            break;
        }
        on_response(key(tid, i), 0, HOOK_TRACEPOINT);
    }
    0
}
