//! ARM SMMUv3 IOPF hooks: the driver's own entry points, used only where
//! the core ones (`iommu_report_device_fault`, `iopf_group_response` /
//! `iommu_page_response`) cannot be hooked (user space decides; see
//! `plan.rs`). This is the stall model HiSilicon Kunpeng accelerators use.
//!
//! Report: `arm_smmu_handle_evt(struct arm_smmu_device *, u64 *evt)`
//! (5.13–6.13) and `arm_smmu_handle_event(smmu, u64 *evt, struct
//! arm_smmu_event *)` (6.15+) get the raw 32-byte event queue record as
//! their second argument. It is decoded here exactly as the driver does
//! before it calls the core: only stalled translation, address size,
//! access and permission faults become page requests; the stall tag is
//! the group id; the substream id, when valid, is the PASID. The driver
//! has no `struct device *` yet at that point (it looks the master up by
//! stream id afterwards), so the group is keyed with device 0 and the
//! stream id goes into the record's device name (`smmu-sid-<hex>`).
//!
//! Response: `arm_smmu_page_response(struct device *, <fault> *, struct
//! iommu_page_response *)` (every version with stall support). It
//! completes the group reported for this device by the core hook when
//! there is one, else the one the SMMU report hook keyed with device 0.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use uacce_trace_common::{
    counter, IopfKey, IopfRecord, RecordHeader, COMM_LEN, DEV_NAME_LEN, HOOK_FENTRY, HOOK_KPROBE,
    KIND_IOPF, RECORD_VERSION,
};

use crate::{
    count,
    iopf::{cfg, on_response, read_u32, IOPF_PENDING},
};

// Event queue record fields (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.h).
const EVTQ_0_ID_MASK: u64 = 0xff;
const EVTQ_0_SSV: u64 = 1 << 11;
const EVTQ_0_SSID_SHIFT: u64 = 12;
const EVTQ_0_SSID_MASK: u64 = 0xf_ffff;
const EVTQ_0_SID_SHIFT: u64 = 32;
const EVTQ_1_STAG_MASK: u64 = 0xffff;
const EVTQ_1_STALL: u64 = 1 << 31;
const EVTQ_1_PNU: u64 = 1 << 33;
const EVTQ_1_IND: u64 = 1 << 34;
const EVTQ_1_RNW: u64 = 1 << 35;
/// `EVT_ID_TRANSLATION_FAULT` … `EVT_ID_PERMISSION_FAULT`.
const EVT_ID_FIRST_PAGE_FAULT: u64 = 0x10;
const EVT_ID_LAST_PAGE_FAULT: u64 = 0x13;

// `struct iommu_fault_page_request` flags and permissions (stable ABI).
const PAGE_REQUEST_PASID_VALID: u32 = 1 << 0;
const PAGE_REQUEST_LAST_PAGE: u32 = 1 << 1;
const PERM_READ: u32 = 1 << 0;
const PERM_WRITE: u32 = 1 << 1;
const PERM_EXEC: u32 = 1 << 2;
const PERM_PRIV: u32 = 1 << 3;

/// `smmu-sid-` followed by the stream id in hex.
#[inline(always)]
fn sid_name(sid: u32) -> [u8; DEV_NAME_LEN] {
    const PREFIX: &[u8; 9] = b"smmu-sid-";
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut name = [0u8; DEV_NAME_LEN];
    let mut i = 0;
    while i < PREFIX.len() {
        name[i] = PREFIX[i];
        i += 1;
    }
    let mut n = 0;
    while n < 8 {
        let nibble = (sid >> (28 - 4 * n)) & 0xf;
        name[PREFIX.len() + n] = HEX[nibble as usize];
        n += 1;
    }
    name
}

#[inline(always)]
fn on_smmu_event(evt: u64) {
    // SAFETY: probe read of kernel memory; faults are returned as errors.
    let Ok(raw) = (unsafe { bpf_probe_read_kernel(evt as *const [u64; 3]) }) else {
        return;
    };
    let id = raw[0] & EVTQ_0_ID_MASK;
    if !(EVT_ID_FIRST_PAGE_FAULT..=EVT_ID_LAST_PAGE_FAULT).contains(&id)
        || raw[1] & EVTQ_1_STALL == 0
    {
        // Not a page request: the driver does not report it either.
        return;
    }
    let mut perm = if raw[1] & EVTQ_1_RNW != 0 {
        PERM_READ
    } else {
        PERM_WRITE
    };
    if raw[1] & EVTQ_1_IND != 0 {
        perm |= PERM_EXEC;
    }
    if raw[1] & EVTQ_1_PNU != 0 {
        perm |= PERM_PRIV;
    }
    let mut flags = PAGE_REQUEST_LAST_PAGE;
    let mut pasid = 0;
    if raw[0] & EVTQ_0_SSV != 0 {
        flags |= PAGE_REQUEST_PASID_VALID;
        pasid = ((raw[0] >> EVTQ_0_SSID_SHIFT) & EVTQ_0_SSID_MASK) as u32;
    }
    let key = IopfKey {
        dev: 0,
        pasid,
        grpid: (raw[1] & EVTQ_1_STAG_MASK) as u32,
    };
    if let Some(pending) = IOPF_PENDING.get_ptr_mut(key) {
        // SAFETY: valid map value pointer; a racing increment only affects
        // this informational count.
        unsafe { (*pending).nr_faults = (*pending).nr_faults.wrapping_add(1) };
        count(counter::IOPF_GROUP_FAULTS);
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let pending = IopfRecord {
        header: RecordHeader {
            kind: KIND_IOPF,
            version: RECORD_VERSION,
            size: core::mem::size_of::<IopfRecord>() as u32,
        },
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        latency_ns: 0,
        dev: 0,
        addr: raw[2],
        pasid,
        grpid: key.grpid,
        perm,
        flags,
        response: 0,
        nr_faults: 1,
        reporter_tgid: (pid_tgid >> 32) as u32,
        // The event queue thread is a kernel thread: never the faulting
        // process, so no IOPF_REPORTER_IS_USER.
        flags2: 0,
        reporter_comm: bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]),
        dev_name: sid_name((raw[0] >> EVTQ_0_SID_SHIFT) as u32),
        hook: 0,
        _pad: [0; 7],
    };
    if IOPF_PENDING.insert(key, pending, 0).is_err() {
        count(counter::IOPF_PENDING_FULL);
    }
}

#[inline(always)]
fn on_smmu_response(dev: u64, resp: u64, hook: u8) {
    let c = cfg();
    let pasid = read_u32(resp + u64::from(c.resp_pasid));
    let grpid = read_u32(resp + u64::from(c.resp_grpid));
    let code = read_u32(resp + u64::from(c.resp_code));
    let core = IopfKey { dev, pasid, grpid };
    let key = if IOPF_PENDING.get_ptr(core).is_some() {
        core
    } else {
        IopfKey { dev: 0, ..core }
    };
    on_response(key, code, hook);
}

#[fentry]
pub fn smmu_evt_fentry(ctx: FEntryContext) -> i32 {
    on_smmu_event(ctx.arg::<u64>(1));
    0
}

#[kprobe]
pub fn smmu_evt_kprobe(ctx: ProbeContext) -> u32 {
    on_smmu_event(ctx.arg::<u64>(1).unwrap_or(0));
    0
}

#[fentry]
pub fn smmu_page_response_fentry(ctx: FEntryContext) -> i32 {
    on_smmu_response(ctx.arg::<u64>(0), ctx.arg::<u64>(2), HOOK_FENTRY);
    0
}

#[kprobe]
pub fn smmu_page_response_kprobe(ctx: ProbeContext) -> u32 {
    on_smmu_response(
        ctx.arg::<u64>(0).unwrap_or(0),
        ctx.arg::<u64>(2).unwrap_or(0),
        HOOK_KPROBE,
    );
    0
}
