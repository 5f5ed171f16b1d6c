//! IO page fault report → response pairing, pin ioctls on the syscall
//! tracepoints, and PASID bind/unbind.
//!
//! Report hooks (`iommu_report_device_fault`, both signatures: the second
//! argument points at a struct that starts with `struct iommu_fault`) write
//! each fault to the ring as an `IopfRecord` of kind `KIND_IOPF_REPORT`;
//! response hooks (`iopf_group_response` 6.9+, `iommu_page_response` ≤6.8)
//! write an `IopfResponseRecord`. User space pairs them by (device, pasid,
//! grpid) and computes the latency (no pairing map here: see
//! `IopfResponseRecord` for why). Offsets come from user space (`CONFIG`,
//! computed from the running kernel's BTF).

use aya_ebpf::EbpfContext as _;
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_user,
    },
    macros::{fentry, fexit, kprobe, kretprobe, map, tracepoint},
    maps::{Array, LruHashMap},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext},
};
use uacce_trace_common::{
    counter, ioctl_cmd,
    summary::{ioctl_sub, SUMMARY_IOCTL},
    BindRecord, IoctlInflight, IoctlRecord, IopfKey, IopfRecord, IopfResponseRecord, KernelConfig,
    RecordHeader, BIND_OP_BIND, BIND_OP_UNBIND, COMM_LEN, HOOK_FENTRY, HOOK_KPROBE,
    HOOK_TRACEPOINT, IOPF_REPORTER_IS_USER, KIND_BIND, KIND_IOCTL, KIND_IOPF_REPORT,
    KIND_IOPF_RESPONSE, RECORD_VERSION,
};

use crate::{
    comm_into, count, count_ring_full, emit, kernel_str_into, submit_flags, zero_fill, EVENTS,
};

/// Offsets and constants of the running kernel, set by user space at load.
#[unsafe(no_mangle)]
static CONFIG: KernelConfig = KernelConfig::FALLBACK;

/// One field of [`CONFIG`], read alone (volatile, like [`cfg`], which
/// copies the whole struct: too much for the hottest programs).
macro_rules! cfg_field {
    ($field:ident) => {
        // SAFETY: a read of a field of a global; volatile as in `cfg`.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!(CONFIG.$field)) }
    };
}

#[inline(always)]
pub(crate) fn cfg() -> KernelConfig {
    // SAFETY: a read of a global; volatile so the compiler does not fold
    // the default value (user space rewrites it before load).
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

/// In-flight pin ioctls per thread.
#[map]
pub(crate) static IOCTL_INFLIGHT: LruHashMap<u32, IoctlInflight> =
    LruHashMap::with_max_entries(4096, 0);

/// PASID of each live SVA handle, to report unbinds.
#[map]
static SVA_HANDLES: LruHashMap<u64, BindRecord> = LruHashMap::with_max_entries(4096, 0);

/// Live binds per SVA handle: since 6.2 a second bind of the same (device,
/// mm) returns the same handle with its `users` count raised, and each
/// unbind lowers it; the handle's PASID stays bound until the last one.
#[map]
static SVA_HANDLE_BINDS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(4096, 0);

/// Handle argument of an in-flight `iommu_sva_get_pasid` (kprobe path).
#[map]
static GET_PASID_INFLIGHT: LruHashMap<u32, u64> = LruHashMap::with_max_entries(1024, 0);

/// Index 0: 1 once user space attached the `uacce_ctrl_unl_ioctl` symbol
/// hook, which then records the uacce_ctrl ioctls itself (only those that
/// reach the driver); the syscall tracepoint keeps the mempinfd ones.
#[map]
pub(crate) static IOCTL_SYMBOL_LIVE: Array<u32> = Array::with_max_entries(1, 0);

#[inline(always)]
pub(crate) fn read_u32(addr: u64) -> u32 {
    // SAFETY: probe read of kernel memory; faults are returned as errors.
    unsafe { bpf_probe_read_kernel(addr as *const u32) }.unwrap_or(0)
}

#[inline(always)]
pub(crate) fn read_u64(addr: u64) -> u64 {
    // SAFETY: as above.
    unsafe { bpf_probe_read_kernel(addr as *const u64) }.unwrap_or(0)
}

#[inline(always)]
pub(crate) fn known(offset: u32) -> bool {
    offset != KernelConfig::UNKNOWN
}

#[inline(always)]
fn on_report(dev: u64, fault_container: u64) {
    let c = cfg();
    let fault = fault_container + u64::from(c.fault_in_report);
    let key = IopfKey {
        dev,
        pasid: read_u32(fault + u64::from(c.prm_pasid)),
        grpid: read_u32(fault + u64::from(c.prm_grpid)),
    };
    let name = if known(c.device_name) {
        read_u64(dev + u64::from(c.device_name))
    } else {
        0
    };
    let fields = ReportFields {
        addr: read_u64(fault + u64::from(c.prm_addr)),
        perm: read_u32(fault + u64::from(c.prm_perm)),
        flags: read_u32(fault + u64::from(c.prm_flags)),
    };
    store_report(key, fields, name, true);
}

/// What a report says besides its key.
struct ReportFields {
    addr: u64,
    perm: u32,
    flags: u32,
}

/// Writes the report of one fault of group `key`; `dev_name` is the
/// kernel address of the device's name (0: unknown). In summary mode the
/// group goes to the pairing table instead (`summary::iopf_report`) where
/// `lasting_name`: the name outlives this program (the device's, not a
/// tracepoint record's, whose reports stay per-event).
#[inline(always)]
fn store_report(key: IopfKey, fields: ReportFields, dev_name: u64, lasting_name: bool) {
    let c = cfg();
    let mut user = false;
    if known(c.task_flags) {
        // SAFETY: helper without preconditions.
        let task = unsafe { bpf_get_current_task() };
        let task_flags = read_u32(task + u64::from(c.task_flags));
        user = task_flags & c.pf_kthread == 0 && (bpf_get_current_pid_tgid() >> 32) != 0;
    }
    if lasting_name
        && crate::summary::enabled()
        && crate::summary::iopf_report(key, fields.flags, user, dev_name)
    {
        return;
    }
    emit_report(|r| {
        r.dev = key.dev;
        r.addr = fields.addr;
        r.pasid = key.pasid;
        r.grpid = key.grpid;
        r.perm = fields.perm;
        r.flags = fields.flags;
        if user {
            r.flags2 = IOPF_REPORTER_IS_USER;
        }
        kernel_str_into(dev_name, &mut r.dev_name);
    });
}

/// Writes a fault report ([`KIND_IOPF_REPORT`]) straight into the ring:
/// time, reporting task and comm here, the fault's fields by `fill`. No
/// pairing map: user space pairs it with the response (see
/// `IopfResponseRecord`). A full ring is counted, never silent.
#[inline(always)]
pub(crate) fn emit_report(fill: impl FnOnce(&mut IopfRecord)) {
    write_report(|r| {
        // SAFETY: helper without preconditions.
        r.ts_ns = unsafe { bpf_ktime_get_ns() };
        r.reporter_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        comm_into(&mut r.reporter_comm);
        fill(r);
    });
}

/// Reserves a report record of one fault in the ring, zeroed with its
/// header, and submits it once `fill` wrote the rest; a full ring is
/// counted.
#[inline(always)]
fn write_report(fill: impl FnOnce(&mut IopfRecord)) {
    let Some(mut slot) = EVENTS.reserve::<IopfRecord>(0) else {
        count_ring_full(KIND_IOPF_REPORT);
        return;
    };
    let r = zero_fill(&mut slot);
    r.header = RecordHeader {
        kind: KIND_IOPF_REPORT,
        version: RECORD_VERSION,
        size: core::mem::size_of::<IopfRecord>() as u32,
    };
    r.nr_faults = 1;
    fill(r);
    slot.submit(submit_flags(core::mem::size_of::<IopfRecord>()));
}

/// Writes the response to group `key` ([`KIND_IOPF_RESPONSE`]); in summary
/// mode adds it to the summary when its group is in the pairing table.
#[inline(always)]
pub(crate) fn on_response(key: IopfKey, code: u32, hook: u8) {
    if crate::summary::enabled() {
        match crate::summary::iopf_response(key, code) {
            crate::summary::Response::Counted => return,
            crate::summary::Response::Ring => {}
            crate::summary::Response::RingWithReport(group) => emit_group_report(&group),
        }
    }
    emit_response(key, code, hook);
}

/// Summary mode, the summary map full: the report of a group kept in the
/// pairing table, written now from what the table kept (no address,
/// permissions or flags), so that user space pairs it with its response.
#[inline(always)]
fn emit_group_report(group: &uacce_trace_common::summary::IopfSlot) {
    write_report(|r| {
        r.ts_ns = group.ts_ns;
        r.dev = group.dev;
        r.pasid = group.pasid;
        r.grpid = group.grpid;
        r.reporter_tgid = group.reporter_tgid;
        if group.reporter_tgid != 0 {
            r.flags2 = IOPF_REPORTER_IS_USER;
        }
        r.reporter_comm = group.reporter_comm;
        kernel_str_into(group.dev_name, &mut r.dev_name);
    });
}

/// Writes the response record of group `key`.
#[inline(always)]
fn emit_response(key: IopfKey, code: u32, hook: u8) {
    let Some(mut slot) = EVENTS.reserve::<IopfResponseRecord>(0) else {
        count_ring_full(KIND_IOPF_RESPONSE);
        return;
    };
    let r = zero_fill(&mut slot);
    r.header = RecordHeader {
        kind: KIND_IOPF_RESPONSE,
        version: RECORD_VERSION,
        size: core::mem::size_of::<IopfResponseRecord>() as u32,
    };
    // SAFETY: helper without preconditions.
    r.ts_ns = unsafe { bpf_ktime_get_ns() };
    r.dev = key.dev;
    r.pasid = key.pasid;
    r.grpid = key.grpid;
    r.response = code;
    r.hook = hook;
    slot.submit(submit_flags(core::mem::size_of::<IopfResponseRecord>()));
}

/// 6.9+: `iopf_group_response(struct iopf_group *group, enum … status)`.
#[inline(always)]
fn on_group_response(group: u64, code: u32, hook: u8) {
    let c = cfg();
    let fault = group + u64::from(c.fault_in_group);
    let dev = if known(c.group_fault_param) && known(c.fault_param_dev) {
        let param = read_u64(group + u64::from(c.group_fault_param));
        read_u64(param + u64::from(c.fault_param_dev))
    } else {
        0
    };
    let key = IopfKey {
        dev,
        pasid: read_u32(fault + u64::from(c.prm_pasid)),
        grpid: read_u32(fault + u64::from(c.prm_grpid)),
    };
    on_response(key, code, hook);
}

/// ≤6.8: `iommu_page_response(struct device *dev, struct iommu_page_response *msg)`.
#[inline(always)]
fn on_page_response(dev: u64, msg: u64, hook: u8) {
    let c = cfg();
    let key = IopfKey {
        dev,
        pasid: read_u32(msg + u64::from(c.resp_pasid)),
        grpid: read_u32(msg + u64::from(c.resp_grpid)),
    };
    on_response(key, read_u32(msg + u64::from(c.resp_code)), hook);
}

#[fentry]
pub fn iopf_report_fentry(ctx: FEntryContext) -> i32 {
    on_report(ctx.arg::<u64>(0), ctx.arg::<u64>(1));
    0
}

#[kprobe]
pub fn iopf_report_kprobe(ctx: ProbeContext) -> u32 {
    on_report(
        ctx.arg::<u64>(0).unwrap_or(0),
        ctx.arg::<u64>(1).unwrap_or(0),
    );
    0
}

#[fentry]
pub fn iopf_group_response_fentry(ctx: FEntryContext) -> i32 {
    on_group_response(ctx.arg::<u64>(0), ctx.arg::<u64>(1) as u32, HOOK_FENTRY);
    0
}

#[kprobe]
pub fn iopf_group_response_kprobe(ctx: ProbeContext) -> u32 {
    on_group_response(
        ctx.arg::<u64>(0).unwrap_or(0),
        ctx.arg::<u64>(1).unwrap_or(0) as u32,
        HOOK_KPROBE,
    );
    0
}

#[fentry]
pub fn iommu_page_response_fentry(ctx: FEntryContext) -> i32 {
    on_page_response(ctx.arg::<u64>(0), ctx.arg::<u64>(1), HOOK_FENTRY);
    0
}

#[kprobe]
pub fn iommu_page_response_kprobe(ctx: ProbeContext) -> u32 {
    on_page_response(
        ctx.arg::<u64>(0).unwrap_or(0),
        ctx.arg::<u64>(1).unwrap_or(0),
        HOOK_KPROBE,
    );
    0
}

// ------------------------------------------------- vendor tracepoints

/// Address of the device name in a `__data_loc char[]` field (offset in
/// the low 16 bits, length in the high 16, relative to the record); 0
/// where the field is unknown.
#[inline(always)]
fn tp_dev_name(ctx: &TracePointContext, field: u32) -> u64 {
    if !known(field) {
        return 0;
    }
    // SAFETY: probe read relative to the tracepoint record.
    let loc = unsafe { ctx.read_at::<u32>(field as usize) }.unwrap_or(0);
    ctx.as_ptr() as u64 + u64::from(loc & 0xffff)
}

#[inline(always)]
fn tp_u32(ctx: &TracePointContext, offset: u32) -> u32 {
    // SAFETY: probe read relative to the tracepoint record.
    unsafe { ctx.read_at::<u32>(offset as usize) }.unwrap_or(0)
}

/// An optional field of a vendor tracepoint: 0 where this kernel lacks it.
#[inline(always)]
fn tp_u32_or0(ctx: &TracePointContext, offset: u32) -> u32 {
    if known(offset) {
        tp_u32(ctx, offset)
    } else {
        0
    }
}

/// The pending-fault key of a vendor `iommu:dev_*` record, `None` unless
/// both its PASID and group fields are known. These records name the
/// device only as a string, so the key's device is 0.
#[inline(always)]
fn tp_key(ctx: &TracePointContext, pasid: u32, grpid: u32) -> Option<IopfKey> {
    if !known(pasid) || !known(grpid) {
        return None;
    }
    Some(IopfKey {
        dev: 0,
        pasid: tp_u32(ctx, pasid),
        grpid: tp_u32(ctx, grpid),
    })
}

/// `intel_iommu:prq_report`: the raw VT-d page request descriptor
/// (`struct page_req_dsc`): qw0 pasid_present bit 8, pasid bits 32–51,
/// exe_req 52, pm_req 53; qw1 rd_req bit 0, wr_req 1, lpig 2, prg_index
/// bits 3–11, addr from bit 12. No device pointer: keyed with device 0.
#[tracepoint]
pub fn prq_report_tp(ctx: TracePointContext) -> u32 {
    let c = cfg();
    if !known(c.tp_prq_dw0) || !known(c.tp_prq_dw1) {
        return 0;
    }
    let dw0 = tp_u64(&ctx, c.tp_prq_dw0);
    let dw1 = tp_u64(&ctx, c.tp_prq_dw1);
    let bit = |v: u64, n: u32| ((v >> n) & 1) as u32;
    let key = IopfKey {
        dev: 0,
        pasid: ((dw0 >> 32) & 0xf_ffff) as u32,
        grpid: ((dw1 >> 3) & 0x1ff) as u32,
    };
    let fields = ReportFields {
        addr: dw1 & !0xfff,
        perm: bit(dw1, 0) | (bit(dw1, 1) << 1) | (bit(dw0, 52) << 2) | (bit(dw0, 53) << 3),
        flags: bit(dw0, 8) | (bit(dw1, 2) << 1),
    };
    store_report(key, fields, tp_dev_name(&ctx, c.tp_prq_dev), false);
    0
}

/// `iommu:dev_fault` (vendor trees): the fault's fields by name.
#[tracepoint]
pub fn dev_fault_tp(ctx: TracePointContext) -> u32 {
    let c = cfg();
    let Some(key) = tp_key(&ctx, c.tp_fault_pasid, c.tp_fault_grpid) else {
        return 0;
    };
    let fields = ReportFields {
        addr: if known(c.tp_fault_addr) {
            tp_u64(&ctx, c.tp_fault_addr)
        } else {
            0
        },
        perm: tp_u32_or0(&ctx, c.tp_fault_perm),
        flags: tp_u32_or0(&ctx, c.tp_fault_flags),
    };
    store_report(key, fields, tp_dev_name(&ctx, c.tp_fault_dev), false);
    0
}

/// `iommu:dev_page_response` (vendor trees).
#[tracepoint]
pub fn dev_page_response_tp(ctx: TracePointContext) -> u32 {
    let c = cfg();
    let Some(key) = tp_key(&ctx, c.tp_resp_pasid, c.tp_resp_grpid) else {
        return 0;
    };
    on_response(key, tp_u32_or0(&ctx, c.tp_resp_code), HOOK_TRACEPOINT);
    0
}

// ---------------------------------------------------------------- ioctls

#[inline(always)]
fn tp_u64(ctx: &TracePointContext, offset: u32) -> u64 {
    // SAFETY: probe read relative to the tracepoint record.
    unsafe { ctx.read_at::<u64>(offset as usize) }.unwrap_or(0)
}

#[tracepoint]
pub fn ioctl_enter(ctx: TracePointContext) -> u32 {
    // Every ioctl of the system comes here: one read of `fd`, `cmd` and
    // `arg` where they are consecutive 8-byte fields (the syscall
    // tracepoints' layout in every kernel seen), three reads otherwise.
    let (fd_at, cmd_at, arg_at) = (
        cfg_field!(tp_ioctl_fd),
        cfg_field!(tp_ioctl_cmd),
        cfg_field!(tp_ioctl_arg),
    );
    let [fd, cmd, arg] = if cmd_at == fd_at.wrapping_add(8) && arg_at == cmd_at.wrapping_add(8) {
        // SAFETY: probe read relative to the tracepoint record.
        unsafe { ctx.read_at::<[u64; 3]>(fd_at as usize) }.unwrap_or([0; 3])
    } else {
        [
            tp_u64(&ctx, fd_at),
            tp_u64(&ctx, cmd_at),
            tp_u64(&ctx, arg_at),
        ]
    };
    let cmd = cmd as u32;
    if !matches!(
        cmd,
        ioctl_cmd::UACCE_CMD_PIN
            | ioctl_cmd::UACCE_CMD_UNPIN
            | ioctl_cmd::MEM_CMD_PIN
            | ioctl_cmd::MEM_CMD_UNPIN
    ) {
        return 0;
    }
    let uacce = matches!(cmd, ioctl_cmd::UACCE_CMD_PIN | ioctl_cmd::UACCE_CMD_UNPIN);
    if uacce && IOCTL_SYMBOL_LIVE.get(0).copied() == Some(1) {
        return 0;
    }
    ioctl_begin(cmd, arg, fd as u32, HOOK_TRACEPOINT);
    0
}

/// Opens the in-flight entry of a pin ioctl seen by `hook` (the
/// `sys_enter_ioctl` tracepoint, or the entry of `uacce_ctrl_unl_ioctl`);
/// `arg` points at the user's range.
#[inline(always)]
pub(crate) fn ioctl_begin(cmd: u32, arg: u64, fd: u32, hook: u8) {
    // The user's range feeds the pinned-range ledger, which summary mode
    // does not keep: not read there.
    let range = if crate::summary::enabled() {
        [0, 0]
    } else {
        // SAFETY: probe read of user memory; faults are returned as errors.
        unsafe { bpf_probe_read_user(arg as *const [u64; 2]) }.unwrap_or([0, 0])
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    let value = IoctlInflight {
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        addr: range[0],
        size: range[1],
        cmd,
        fd,
        pin_calls: 0,
        pages: 0,
        hook,
        inner: 0,
        _pad: 0,
        inner_ret: 0,
    };
    // The common case, nothing of this thread in flight, costs one map
    // operation.
    match IOCTL_INFLIGHT.insert(tid, value, u64::from(aya_ebpf::bindings::BPF_NOEXIST)) {
        Ok(()) => return,
        Err(crate::EEXIST) => {}
        Err(e) => {
            if crate::count_first(counter::INFLIGHT_FULL) {
                diag!(
                    "pin ioctl in-flight map: insert failed ({}), ioctl not timed",
                    e
                );
            }
            return;
        }
    }
    if let Some(open) = IOCTL_INFLIGHT.get_ptr(tid) {
        // SAFETY: valid map value pointer.
        let open_hook = unsafe { (*open).hook };
        // The driver's own entry hook runs inside the syscall whose
        // tracepoint opened the entry (both record it until user space
        // sets IOCTL_SYMBOL_LIVE right after attaching): the same call,
        // taken over. Anything else is an earlier ioctl whose exit was
        // missed.
        if !(open_hook == HOOK_TRACEPOINT && hook != HOOK_TRACEPOINT) {
            count(counter::STALE_INFLIGHT);
        }
    }
    if let Err(e) = IOCTL_INFLIGHT.insert(tid, value, 0) {
        if crate::count_first(counter::INFLIGHT_FULL) {
            diag!("pin ioctl in-flight map: replacing an entry failed ({})", e);
        }
    }
}

/// Closes the in-flight entry opened by `hook` and emits its record.
/// `entry_due`: the caller knows this call is a pin ioctl that `hook`'s
/// entry half recorded (the driver's fexit, which sees the command), so a
/// missing entry is a loss; the syscall tracepoint and the kretprobe see
/// every ioctl and cannot tell.
#[inline(always)]
pub(crate) fn ioctl_end(ret: i64, hook: u8, entry_due: bool) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let Some(entry) = IOCTL_INFLIGHT.get_ptr(tid) else {
        if entry_due {
            // SAFETY: helper without preconditions.
            crate::count_exit_without_entry(unsafe { bpf_ktime_get_ns() });
        }
        return;
    };
    // SAFETY: valid map value pointer.
    let entry = unsafe { *entry };
    if entry.hook != hook {
        return;
    }
    let _ = IOCTL_INFLIGHT.remove(tid);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // Summary mode: the call is counted, unless its driver call succeeded
    // without a pin call credited to it, which user space must see as a
    // record to count it (`pin_not_credited`).
    let uncredited = entry.inner != 0 && entry.inner_ret == 0 && entry.pin_calls == 0;
    if crate::summary::enabled() && !uncredited {
        let call = crate::summary::Call {
            kind: SUMMARY_IOCTL,
            sub: ioctl_sub(entry.cmd),
            latency_ns: now.wrapping_sub(entry.ts_ns),
            error: ret != 0,
            pages: u64::from(entry.pages),
            longterm_pages: 0,
        };
        if crate::summary::add((pid_tgid >> 32) as u32, call) {
            return;
        }
    }
    let Some(mut slot) = EVENTS.reserve::<IoctlRecord>(0) else {
        count_ring_full(KIND_IOCTL);
        return;
    };
    // Filled in place in the ring (see `zero_fill`).
    let r = zero_fill(&mut slot);
    r.header = RecordHeader {
        kind: KIND_IOCTL,
        version: RECORD_VERSION,
        size: core::mem::size_of::<IoctlRecord>() as u32,
    };
    r.ts_ns = entry.ts_ns;
    r.latency_ns = now.wrapping_sub(entry.ts_ns);
    r.addr = entry.addr;
    r.size = entry.size;
    r.ret = ret;
    r.tgid = (pid_tgid >> 32) as u32;
    r.tid = tid;
    r.cmd = entry.cmd;
    r.fd = entry.fd;
    r.hook = hook;
    r.inner = entry.inner;
    r.pin_calls = entry.pin_calls.min(u32::from(u16::MAX)) as u16;
    r.pages = entry.pages;
    r.inner_ret = entry.inner_ret;
    comm_into(&mut r.comm);
    slot.submit(submit_flags(core::mem::size_of::<IoctlRecord>()));
}

/// The driver's `uacce_pin_page`/`uacce_unpin_page` returned inside the
/// current thread's pin ioctl: note it on the ioctl's entry.
#[inline(always)]
pub(crate) fn ioctl_inner(bit: u8, ret: i32) {
    let tid = bpf_get_current_pid_tgid() as u32;
    if let Some(entry) = IOCTL_INFLIGHT.get_ptr_mut(tid) {
        // SAFETY: valid map value pointer; only this thread uses its key.
        unsafe {
            (*entry).inner |= bit;
            (*entry).inner_ret = ret;
        }
    }
}

/// Called by the pin/unpin exit hooks: when this thread is inside a pin
/// ioctl, the call and its pages are credited to the ioctl.
#[inline(always)]
pub(crate) fn credit_pin_to_ioctl(tid: u32, pages: u64) {
    if let Some(entry) = IOCTL_INFLIGHT.get_ptr_mut(tid) {
        // SAFETY: valid map value pointer; only this thread uses its key.
        unsafe {
            (*entry).pin_calls = (*entry).pin_calls.wrapping_add(1);
            (*entry).pages = (*entry).pages.wrapping_add(pages as u32);
        }
    }
}

#[tracepoint]
pub fn ioctl_exit(ctx: TracePointContext) -> u32 {
    ioctl_end(
        tp_u64(&ctx, cfg_field!(tp_exit_ret)) as i64,
        HOOK_TRACEPOINT,
        false,
    );
    0
}

// ------------------------------------------------------------ PASID binds

#[inline(always)]
fn emit_bind(mut record: BindRecord) {
    record.header = RecordHeader {
        kind: KIND_BIND,
        version: RECORD_VERSION,
        size: core::mem::size_of::<BindRecord>() as u32,
    };
    emit(KIND_BIND, record);
}

#[inline(always)]
fn on_get_pasid(handle: u64, pasid: u32, hook: u8) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let mut record = BindRecord {
        header: RecordHeader::default(),
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        handle,
        tgid: (pid_tgid >> 32) as u32,
        pasid,
        op: BIND_OP_BIND,
        hook: u32::from(hook),
        comm: [0; COMM_LEN],
    };
    comm_into(&mut record.comm);
    if let Some(binds) = SVA_HANDLE_BINDS.get_ptr_mut(handle) {
        // A further bind of a known handle (each bind asks for the PASID
        // once): user space counts binds per owner, so it is reported too.
        // SAFETY: valid map value pointer.
        unsafe { *binds = (*binds).saturating_add(1) };
    } else {
        let _ = SVA_HANDLE_BINDS.insert(handle, 1, 0);
    }
    let _ = SVA_HANDLES.insert(handle, record, 0);
    emit_bind(record);
}

#[inline(always)]
fn on_unbind(handle: u64, hook: u8) {
    let Some(bound) = SVA_HANDLES.get_ptr(handle) else {
        // Bound before the tracer started, or evicted: its owner is not
        // known here (user space may still know it from the scan).
        count(counter::UNBIND_UNKNOWN);
        return;
    };
    // SAFETY: valid map value pointer.
    let mut record = unsafe { *bound };
    let left = match SVA_HANDLE_BINDS.get_ptr_mut(handle) {
        // SAFETY: valid map value pointer.
        Some(binds) => unsafe {
            *binds = (*binds).saturating_sub(1);
            *binds
        },
        None => 0,
    };
    if left == 0 {
        let _ = SVA_HANDLES.remove(handle);
        let _ = SVA_HANDLE_BINDS.remove(handle);
    }
    // SAFETY: helper without preconditions.
    record.ts_ns = unsafe { bpf_ktime_get_ns() };
    record.op = BIND_OP_UNBIND;
    record.hook = u32::from(hook);
    emit_bind(record);
}

#[fexit]
pub fn sva_get_pasid_fexit(ctx: FExitContext) -> i32 {
    let handle = ctx.arg::<u64>(0);
    let pasid: u64 = ctx.ret().unwrap_or(0);
    on_get_pasid(handle, pasid as u32, HOOK_FENTRY);
    0
}

#[kprobe]
pub fn sva_get_pasid_kprobe(ctx: ProbeContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let _ = GET_PASID_INFLIGHT.insert(tid, ctx.arg::<u64>(0).unwrap_or(0), 0);
    0
}

#[kretprobe]
pub fn sva_get_pasid_kretprobe(ctx: RetProbeContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(handle) = GET_PASID_INFLIGHT.get_ptr(tid) else {
        // SAFETY: helper without preconditions.
        crate::count_exit_without_entry(unsafe { bpf_ktime_get_ns() });
        return 0;
    };
    // SAFETY: valid map value pointer.
    let handle = unsafe { *handle };
    let _ = GET_PASID_INFLIGHT.remove(tid);
    on_get_pasid(handle, ctx.ret::<u64>() as u32, HOOK_KPROBE);
    0
}

#[fentry]
pub fn sva_unbind_fentry(ctx: FEntryContext) -> i32 {
    on_unbind(ctx.arg::<u64>(0), HOOK_FENTRY);
    0
}

#[kprobe]
pub fn sva_unbind_kprobe(ctx: ProbeContext) -> u32 {
    on_unbind(ctx.arg::<u64>(0).unwrap_or(0), HOOK_KPROBE);
    0
}
