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
//! iommu_page_response *)` (every version with stall support). User space
//! pairs it with the group reported for this device by the core hook when
//! there is one, else with the one the SMMU report hook keyed with device 0.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use uacce_trace_common::{IopfKey, DEV_NAME_LEN, HOOK_FENTRY, HOOK_KPROBE};

use crate::iopf::{cfg, emit_report, on_response, read_u32};

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
fn sid_name(sid: u32, name: &mut [u8; DEV_NAME_LEN]) {
    const PREFIX: &[u8; 9] = b"smmu-sid-";
    const HEX: &[u8; 16] = b"0123456789abcdef";
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
    let grpid = (raw[1] & EVTQ_1_STAG_MASK) as u32;
    let sid = (raw[0] >> EVTQ_0_SID_SHIFT) as u32;
    // Keyed with device 0; the event queue thread is a kernel thread, never
    // the faulting process, so no IOPF_REPORTER_IS_USER.
    emit_report(|r| {
        r.addr = raw[2];
        r.pasid = pasid;
        r.grpid = grpid;
        r.perm = perm;
        r.flags = flags;
        sid_name(sid, &mut r.dev_name);
    });
}

#[inline(always)]
fn on_smmu_response(dev: u64, resp: u64, hook: u8) {
    let c = cfg();
    let pasid = read_u32(resp + u64::from(c.resp_pasid));
    let grpid = read_u32(resp + u64::from(c.resp_grpid));
    let code = read_u32(resp + u64::from(c.resp_code));
    // User space pairs it with this device's report from the core hook
    // when there is one, else with the SMMU hook's (device 0).
    on_response(IopfKey { dev, pasid, grpid }, code, hook);
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
