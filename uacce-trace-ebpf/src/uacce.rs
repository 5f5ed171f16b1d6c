//! uacce: the queue life cycle (`uacce_fops_open`, `uacce_fops_release`,
//! `UACCE_CMD_START_Q`/`PUT_Q` through `uacce_fops_unl_ioctl`), the RFC
//! `/dev/uacce_ctrl` driver's own functions (`uacce_ctrl_unl_ioctl`,
//! `uacce_pin_page`, `uacce_unpin_page`) and the start-up PASID scan.
//!
//! Every hooked function is static in its driver, so only the exact uacce
//! paths reach these programs: no filtering on file types is needed.
//! Offsets come from `CONFIG` (user space, from the running kernel's BTF);
//! a program whose offsets are unknown reads nothing it cannot trust.

use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_loop,
        bpf_probe_read_kernel,
    },
    macros::{fentry, fexit, kprobe, kretprobe, map, tracepoint},
    maps::{Array, LruHashMap},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext},
};
use uacce_trace_common::{
    counter, ioctl_cmd, BindRecord, QueueInflight, QueueRecord, RecordHeader, ScanState,
    BIND_OP_SCAN, COMM_LEN, DEV_NAME_LEN, HOOK_FENTRY, HOOK_KPROBE, HOOK_TRACEPOINT,
    IOCTL_INNER_PIN_PAGE, IOCTL_INNER_UNPIN_PAGE, KIND_BIND, KIND_QUEUE, QUEUE_OP_OPEN,
    QUEUE_OP_PUT, QUEUE_OP_RELEASE, QUEUE_OP_START, RECORD_VERSION, SCAN_MAX_TASKS,
    UACCE_CMD_PUT_Q, UACCE_CMD_START_Q,
};

use crate::{
    comm_into, count, emit,
    iopf::{cfg, ioctl_begin, ioctl_end, ioctl_inner, known, read_u32, read_u64},
    kernel_str_into, EVENTS,
};

// ------------------------------------------------------------ queue life

/// In-flight `uacce_fops_open` / `uacce_fops_unl_ioctl` (kprobe path).
#[map]
static QUEUE_INFLIGHT: LruHashMap<u32, QueueInflight> = LruHashMap::with_max_entries(1024, 0);

/// The `struct uacce_queue *` of an open uacce file.
#[inline(always)]
fn queue_of(file: u64) -> u64 {
    let c = cfg();
    if !known(c.file_private_data) || file == 0 {
        return 0;
    }
    read_u64(file + u64::from(c.file_private_data))
}

#[inline(always)]
fn emit_queue(op: u32, ts_ns: u64, file: u64, ret: i64, hook: u8) {
    let c = cfg();
    let queue = queue_of(file);
    let mut pasid = 0;
    let mut name_ptr = 0;
    if queue != 0 {
        if known(c.queue_pasid) {
            pasid = read_u32(queue + u64::from(c.queue_pasid));
        }
        if known(c.queue_uacce) && known(c.uacce_dev) && known(c.device_name) {
            let uacce = read_u64(queue + u64::from(c.queue_uacce));
            if uacce != 0 {
                name_ptr = read_u64(uacce + u64::from(c.uacce_dev) + u64::from(c.device_name));
            }
        }
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let mut record = QueueRecord {
        header: RecordHeader {
            kind: KIND_QUEUE,
            version: RECORD_VERSION,
            size: core::mem::size_of::<QueueRecord>() as u32,
        },
        ts_ns,
        latency_ns: now.wrapping_sub(ts_ns),
        queue,
        ret,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        op,
        pasid,
        comm: [0; COMM_LEN],
        dev_name: [0; DEV_NAME_LEN],
        hook,
        _pad: [0; 7],
    };
    comm_into(&mut record.comm);
    kernel_str_into(name_ptr, &mut record.dev_name);
    emit(KIND_QUEUE, record);
}

#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn queue_cmd_op(cmd: u32) -> Option<u32> {
    match cmd {
        UACCE_CMD_START_Q => Some(QUEUE_OP_START),
        UACCE_CMD_PUT_Q => Some(QUEUE_OP_PUT),
        _ => None,
    }
}

#[inline(always)]
fn queue_enter(op: u32, file: u64) {
    let tid = bpf_get_current_pid_tgid() as u32;
    let value = QueueInflight {
        ts_ns: now_ns(),
        file,
        op,
        _pad: 0,
    };
    if QUEUE_INFLIGHT.get_ptr(tid).is_some() {
        // An earlier call of this thread never saw its exit.
        count(counter::STALE_INFLIGHT);
    }
    if let Err(e) = QUEUE_INFLIGHT.insert(tid, value, 0) {
        if crate::count_first(counter::INFLIGHT_FULL) {
            diag!("uacce queue in-flight map: insert failed ({})", e);
        }
    }
}

#[inline(always)]
fn queue_return(ret: i64) {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(entry) = QUEUE_INFLIGHT.get_ptr(tid) else {
        crate::count_exit_without_entry(now_ns());
        return;
    };
    // SAFETY: valid map value pointer.
    let entry = unsafe { *entry };
    let _ = QUEUE_INFLIGHT.remove(tid);
    // A failed open leaves no queue behind the file.
    let file = if entry.op == QUEUE_OP_OPEN && ret != 0 {
        0
    } else {
        entry.file
    };
    emit_queue(entry.op, entry.ts_ns, file, ret, HOOK_KPROBE);
}

/// `uacce_fops_open(struct inode *, struct file *)`: the queue (and on SVA
/// devices its PASID) exists once it returns 0.
#[fexit]
pub fn uacce_open_fexit(ctx: FExitContext) -> i32 {
    let file = ctx.arg::<u64>(1);
    let ret = ctx.ret::<u64>().unwrap_or(0) as i32 as i64;
    // fexit has no entry time: the record's latency is 0.
    emit_queue(
        QUEUE_OP_OPEN,
        now_ns(),
        if ret == 0 { file } else { 0 },
        ret,
        HOOK_FENTRY,
    );
    0
}

#[kprobe]
pub fn uacce_open_kprobe(ctx: ProbeContext) -> u32 {
    queue_enter(QUEUE_OP_OPEN, ctx.arg::<u64>(1).unwrap_or(0));
    0
}

#[kretprobe]
pub fn uacce_open_kretprobe(ctx: RetProbeContext) -> u32 {
    queue_return(ctx.ret::<u64>() as i32 as i64);
    0
}

/// `uacce_fops_release(struct inode *, struct file *)`: hooked at entry,
/// before the queue is freed.
#[fentry]
pub fn uacce_release_fentry(ctx: FEntryContext) -> i32 {
    emit_queue(
        QUEUE_OP_RELEASE,
        now_ns(),
        ctx.arg::<u64>(1),
        0,
        HOOK_FENTRY,
    );
    0
}

#[kprobe]
pub fn uacce_release_kprobe(ctx: ProbeContext) -> u32 {
    emit_queue(
        QUEUE_OP_RELEASE,
        now_ns(),
        ctx.arg::<u64>(1).unwrap_or(0),
        0,
        HOOK_KPROBE,
    );
    0
}

/// `uacce_fops_unl_ioctl(struct file *, unsigned int cmd, unsigned long)`:
/// only START_Q and PUT_Q are queue life-cycle steps.
#[fexit]
pub fn uacce_ioctl_fexit(ctx: FExitContext) -> i32 {
    let Some(op) = queue_cmd_op(ctx.arg::<u64>(1) as u32) else {
        return 0;
    };
    let ret = ctx.ret::<u64>().unwrap_or(0) as i64;
    emit_queue(op, now_ns(), ctx.arg::<u64>(0), ret, HOOK_FENTRY);
    0
}

#[kprobe]
pub fn uacce_ioctl_kprobe(ctx: ProbeContext) -> u32 {
    let Some(op) = queue_cmd_op(ctx.arg::<u64>(1).unwrap_or(0) as u32) else {
        return 0;
    };
    queue_enter(op, ctx.arg::<u64>(0).unwrap_or(0));
    0
}

#[kretprobe]
pub fn uacce_ioctl_kretprobe(ctx: RetProbeContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    // Other commands stored nothing: no entry is normal here.
    if QUEUE_INFLIGHT.get_ptr(tid).is_none() {
        return 0;
    }
    queue_return(ctx.ret::<u64>() as i64);
    0
}

// ------------------------------------------------------- /dev/uacce_ctrl

#[inline(always)]
fn is_uacce_pin_cmd(cmd: u32) -> bool {
    matches!(cmd, ioctl_cmd::UACCE_CMD_PIN | ioctl_cmd::UACCE_CMD_UNPIN)
}

/// `long uacce_ctrl_unl_ioctl(struct file *, unsigned int cmd, unsigned long arg)`.
/// The fd is not known here (u32::MAX).
#[fentry]
pub fn uacce_ctrl_ioctl_fentry(ctx: FEntryContext) -> i32 {
    let cmd = ctx.arg::<u64>(1) as u32;
    if is_uacce_pin_cmd(cmd) {
        ioctl_begin(cmd, ctx.arg::<u64>(2), u32::MAX, HOOK_FENTRY);
    }
    0
}

#[fexit]
pub fn uacce_ctrl_ioctl_fexit(ctx: FExitContext) -> i32 {
    if is_uacce_pin_cmd(ctx.arg::<u64>(1) as u32) {
        ioctl_end(ctx.ret::<u64>().unwrap_or(0) as i64, HOOK_FENTRY, true);
    }
    0
}

#[kprobe]
pub fn uacce_ctrl_ioctl_kprobe(ctx: ProbeContext) -> u32 {
    let cmd = ctx.arg::<u64>(1).unwrap_or(0) as u32;
    if is_uacce_pin_cmd(cmd) {
        ioctl_begin(cmd, ctx.arg::<u64>(2).unwrap_or(0), u32::MAX, HOOK_KPROBE);
    }
    0
}

#[kretprobe]
pub fn uacce_ctrl_ioctl_kretprobe(ctx: RetProbeContext) -> u32 {
    // Closes only an entry this hook opened (pin commands).
    ioctl_end(ctx.ret::<u64>() as i64, HOOK_KPROBE, false);
    0
}

/// The fexit and kretprobe programs of a driver function whose `int`
/// return is noted, as `$bit`, on the pin ioctl it runs in (aya needs one
/// function per program).
macro_rules! driver_call_programs {
    ($bit:expr, $fexit:ident, $kretprobe:ident) => {
        #[fexit]
        pub fn $fexit(ctx: FExitContext) -> i32 {
            ioctl_inner($bit, ctx.ret::<u64>().unwrap_or(0) as i32);
            0
        }

        #[kretprobe]
        pub fn $kretprobe(ctx: RetProbeContext) -> u32 {
            ioctl_inner($bit, ctx.ret::<u64>() as i32);
            0
        }
    };
}

// `int uacce_pin_page(priv, addr)` / `int uacce_unpin_page(priv, addr)`:
// their return, linked to the ioctl they run in.
driver_call_programs!(
    IOCTL_INNER_PIN_PAGE,
    uacce_pin_page_fexit,
    uacce_pin_page_kretprobe
);
driver_call_programs!(
    IOCTL_INNER_UNPIN_PAGE,
    uacce_unpin_page_fexit,
    uacce_unpin_page_kretprobe
);

// ------------------------------------------------------- start-up scan

/// Thread that triggers the scan (user space sets it at load; 0 = never).
#[unsafe(no_mangle)]
static SCAN_TID: u32 = 0;

/// Index 0: the counts of the last scan.
#[map]
static SCAN_STATE: Array<ScanState> = Array::with_max_entries(1, 0);

#[inline(always)]
fn scan_tid() -> u32 {
    // SAFETY: a read of a global; volatile so the default is not folded.
    unsafe { core::ptr::read_volatile(&SCAN_TID) }
}

/// One task of the walk: a [`BindRecord`] (`BIND_OP_SCAN`) when its mm
/// holds a PASID. Returns 1 when one was found.
#[inline(always)]
fn scan_task(task: u64, lost: &mut u32) -> u32 {
    let c = cfg();
    let mm = read_u64(task + u64::from(c.task_mm));
    if mm == 0 {
        return 0; // kernel thread
    }
    let pasid = if known(c.mm_iommu_mm) && known(c.iommu_mm_pasid) {
        let iommu_mm = read_u64(mm + u64::from(c.mm_iommu_mm));
        if iommu_mm == 0 {
            return 0;
        }
        read_u32(iommu_mm + u64::from(c.iommu_mm_pasid))
    } else if known(c.mm_pasid) {
        read_u32(mm + u64::from(c.mm_pasid))
    } else {
        return 0;
    };
    // 0 is never an SVA PASID (RID_PASID); u32::MAX is IOMMU_PASID_INVALID.
    if pasid == 0 || pasid == u32::MAX {
        return 0;
    }
    // SAFETY: probe read of the task's comm (a fixed array).
    let comm =
        unsafe { bpf_probe_read_kernel((task + u64::from(c.task_comm)) as *const [u8; COMM_LEN]) }
            .unwrap_or([0u8; COMM_LEN]);
    let record = BindRecord {
        header: RecordHeader {
            kind: KIND_BIND,
            version: RECORD_VERSION,
            size: core::mem::size_of::<BindRecord>() as u32,
        },
        ts_ns: now_ns(),
        handle: task,
        tgid: read_u32(task + u64::from(c.task_tgid)),
        pasid,
        op: BIND_OP_SCAN,
        hook: u32::from(HOOK_TRACEPOINT),
        comm,
    };
    match EVENTS.reserve::<BindRecord>(0) {
        Some(mut slot) => {
            slot.write(record);
            slot.submit(0);
        }
        None => *lost += 1,
    }
    1
}

/// State of one walk, shared with the [`scan_step`] callback.
#[repr(C)]
struct ScanWalk {
    start: u64,
    task: u64,
    state: ScanState,
}

/// One step of the walk (a `bpf_loop` callback: verified once, however
/// many tasks there are). Returns 1 to stop.
#[inline(never)]
extern "C" fn scan_step(_index: u64, ctx: *mut c_void) -> i64 {
    let c = cfg();
    let walk = ctx.cast::<ScanWalk>();
    // SAFETY: `ctx` is the `ScanWalk` on the caller's stack (bpf_loop).
    let (task, start) = unsafe { ((*walk).task, (*walk).start) };
    if task == 0 {
        return 1;
    }
    let mut lost = 0u32;
    let found = scan_task(task, &mut lost);
    let next = read_u64(task + u64::from(c.task_tasks));
    let next_task = next.wrapping_sub(u64::from(c.task_tasks));
    // SAFETY: as above.
    unsafe {
        (*walk).state.visited += 1;
        (*walk).state.found += found;
        (*walk).state.lost += lost;
        if next == 0 {
            return 1;
        }
        (*walk).task = next_task;
        if next_task == start {
            (*walk).state.complete = 1;
            return 1;
        }
    }
    0
}

/// Start-up scan of processes whose mm already holds a PASID (bound before
/// the tool started). Attached to a syscall tracepoint that user space then
/// triggers once from thread `SCAN_TID`: walks the list of thread-group
/// leaders (`task_struct.tasks`, RCU-protected; the program runs under
/// rcu_read_lock) from the caller's leader around to itself, with
/// `bpf_loop` (5.17+; an unrolled loop of thousands of steps is too
/// complex for the verifier).
#[tracepoint]
pub fn pasid_scan(_ctx: TracePointContext) -> u32 {
    if bpf_get_current_pid_tgid() as u32 != scan_tid() {
        return 0;
    }
    let c = cfg();
    if !known(c.task_tasks) || !known(c.task_group_leader) || !known(c.task_mm) {
        return 0;
    }
    // SAFETY: helper without preconditions.
    let current = unsafe { bpf_get_current_task() };
    let start = read_u64(current + u64::from(c.task_group_leader));
    let mut walk = ScanWalk {
        start,
        task: start,
        state: ScanState::default(),
    };
    // SAFETY: the callback is a BPF function of this object; the context
    // pointer is our stack variable, valid for the whole call.
    unsafe {
        bpf_loop(
            SCAN_MAX_TASKS,
            scan_step as *mut c_void,
            (&mut walk as *mut ScanWalk).cast(),
            0,
        );
    }
    if let Some(slot) = SCAN_STATE.get_ptr_mut(0) {
        // SAFETY: valid pointer into the array map.
        unsafe { *slot = walk.state };
    }
    0
}
