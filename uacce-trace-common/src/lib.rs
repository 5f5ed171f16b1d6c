//! Wire types shared by the uacce-trace kernel programs and the user-space
//! tool: fixed-size `#[repr(C)]` records written into the one BPF ring buffer,
//! the keys and values of the programs' maps, and the numbering of hooked
//! functions and counters.
//!
//! Integers only, explicit padding, sizes and offsets asserted at compile
//! time, so both sides agree byte for byte. No domain logic lives here: the
//! user-space `source` module turns these records into domain events.
//! `#![no_std]` (the kernel side has no std); the `user` feature adds
//! `aya::Pod` implementations for the user side.

#![no_std]

pub mod hooks;
pub mod summary;

/// Version of the record layout; bumped on any change to a record below.
pub const RECORD_VERSION: u16 = 2;

/// `RecordHeader::kind` of a [`PinRecord`] describing a pin call.
pub const KIND_PIN: u16 = 1;
/// `RecordHeader::kind` of a [`PinRecord`] describing an unpin call.
pub const KIND_UNPIN: u16 = 2;

/// Which kind of hook produced a record.
pub const HOOK_FENTRY: u8 = 1;
/// A kprobe/kretprobe pair produced the record.
pub const HOOK_KPROBE: u8 = 2;

/// Length of `task_struct::comm` (TASK_COMM_LEN).
pub const COMM_LEN: usize = 16;

/// `RecordHeader::kind` of an [`IopfRecord`]: a fault group reported and
/// answered (paired; what user space makes of a report and its response).
pub const KIND_IOPF: u16 = 3;
/// `RecordHeader::kind` of an [`IopfRecord`] written by a report hook: one
/// fault, `latency_ns`, `response` and `hook` still 0. User space pairs it
/// with the group's [`IopfResponseRecord`].
pub const KIND_IOPF_REPORT: u16 = 7;
/// `RecordHeader::kind` of an [`IopfResponseRecord`].
pub const KIND_IOPF_RESPONSE: u16 = 8;
/// `RecordHeader::kind` of an [`IoctlRecord`]: a pin/unpin ioctl.
pub const KIND_IOCTL: u16 = 4;
/// `RecordHeader::kind` of a [`BindRecord`]: a PASID bound to or unbound
/// from a process.
pub const KIND_BIND: u16 = 5;

/// `RecordHeader::kind` of a [`QueueRecord`]: a uacce queue opened,
/// started (`UACCE_CMD_START_Q`), put (`UACCE_CMD_PUT_Q`) or released.
pub const KIND_QUEUE: u16 = 6;

/// `RecordHeader::kind` of a [`ProcRecord`]: a process-tree record (fork,
/// exit) from the `sched_process_fork` / `sched_process_exit` tracepoints.
pub const KIND_PROC: u16 = 9;

/// `RecordHeader::kind` of a [`RequestRecord`]: one user-space request
/// (a probed library or program function, `--op`), entry to return.
pub const KIND_REQUEST: u16 = 12;

/// One user-space request: a call of a function probed with a uprobe at
/// entry and a uretprobe at return (`uacce-trace-ebpf/src/request.rs`).
/// Only the outermost call of a recursion is reported.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestRecord {
    pub header: RecordHeader,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) at entry.
    pub ts_ns: u64,
    /// Return time minus entry time.
    pub latency_ns: u64,
    /// The function's return value (the return register, as a signed long).
    pub ret: i64,
    pub tgid: u32,
    pub tid: u32,
    /// The op's number (the uprobe's attach cookie; user space maps it to
    /// the op's name).
    pub op: u32,
    /// Deepest recursion seen below the outermost call (0: none).
    pub depth: u32,
    pub comm: [u8; COMM_LEN],
}

/// Key of the requests' in-flight map: one entry per (thread, op).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RequestKey {
    pub tid: u32,
    pub op: u32,
}

/// Value of the requests' in-flight map: the outermost call in flight.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestInflight {
    pub ts_ns: u64,
    /// User stack pointer at entry: a deeper frame (lower address) of the
    /// same thread is a recursive call, the same or a higher one means the
    /// earlier call never returned through its uretprobe (longjmp,
    /// exception unwinding, a thread that exited and whose id came back).
    pub sp: u64,
    /// Recursive calls in flight below the outermost one.
    pub depth: u32,
    /// Deepest recursion seen.
    pub max_depth: u32,
}

/// `ProcRecord::op`: a followed process forked a new process (`tgid`).
pub const PROC_OP_FORK: u32 = 1;
/// `ProcRecord::op`: the last thread of followed process `tgid` exited.
pub const PROC_OP_EXIT: u32 = 2;

/// `FOLLOW` map value: a followed process (its children are followed, and
/// its exit is reported).
pub const FOLLOW_MEMBER: u32 = 1;
/// `FOLLOW` map value: only the children of this process are followed (the
/// tracer itself, which starts the command).
pub const FOLLOW_CHILDREN: u32 = 2;

/// Most processes followed at once (entries of the `FOLLOW` map).
pub const FOLLOW_MAX: u32 = 65_536;

/// A followed process forked or exited ([`KIND_PROC`]).
///
/// Only processes in the kernel's `FOLLOW` set are reported: a fork whose
/// parent process is followed (the child joins the set there and then, in
/// the parent's context, before the child runs) and the exit of a followed
/// process's last thread (it leaves the set). Thread creation is not a
/// fork here (the child's `tgid` is the parent's).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcRecord {
    pub header: RecordHeader,
    /// `bpf_ktime_get_ns()` at the fork or exit.
    pub ts_ns: u64,
    /// [`PROC_OP_FORK`] or [`PROC_OP_EXIT`].
    pub op: u32,
    /// Fork: the new process. Exit: the process that ended.
    pub tgid: u32,
    /// Fork: the forking process. Exit: 0.
    pub parent_tgid: u32,
    /// Fork: the forking thread. Exit: the last thread.
    pub tid: u32,
    /// Process-tree records lost so far (ring buffer full, `FOLLOW` full),
    /// all CPUs; concurrent losses may count once, but once a loss happened
    /// it is never 0 again: a reader that sees it non-zero knows its tree
    /// may have a gap.
    pub lost: u64,
    /// The forking (exiting) task's comm.
    pub comm: [u8; COMM_LEN],
}

/// `IopfRecord::flags2` bit: the task that reported the fault was a user
/// task (the iommufd mock reports from the faulting process's ioctl; real
/// hardware reports from an IRQ thread, never the owner).
pub const IOPF_REPORTER_IS_USER: u32 = 1;

/// Length of the device name kept in records.
pub const DEV_NAME_LEN: usize = 32;

/// First bytes of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    /// One of the `KIND_*` constants.
    pub kind: u16,
    /// [`RECORD_VERSION`] of the program that wrote the record.
    pub version: u16,
    /// Size of the whole record in bytes.
    pub size: u32,
}

/// One `pin_user_pages*` / `unpin_user_page*` call, entry to exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinRecord {
    pub header: RecordHeader,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) at function entry.
    pub ts_ns: u64,
    /// Exit time minus entry time.
    pub latency_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub comm: [u8; COMM_LEN],
    /// User start address (pin variants); 0 where the function takes pages.
    pub start: u64,
    /// Pages asked for (pin) or handed back (unpin).
    pub nr_pages: u64,
    /// Return value of a pin function: pages pinned, or -errno.
    /// For unpin functions (which return void) the pages unpinned.
    pub ret: i64,
    /// `gup_flags` argument as the kernel saw it (0 for unpin).
    pub gup_flags: u32,
    /// A [`PinFunc`] value.
    pub func: u16,
    /// [`HOOK_FENTRY`] or [`HOOK_KPROBE`].
    pub hook: u8,
    pub _pad: u8,
}

/// One IO page fault group: report (first fault) to response.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IopfRecord {
    pub header: RecordHeader,
    /// Report time of the group's first fault.
    pub ts_ns: u64,
    /// Report to response.
    pub latency_ns: u64,
    /// `struct device *` (identity only).
    pub dev: u64,
    /// Address of the first fault of the group.
    pub addr: u64,
    pub pasid: u32,
    pub grpid: u32,
    pub perm: u32,
    /// `iommu_fault_page_request.flags`.
    pub flags: u32,
    /// Response code (`enum iommu_page_response_code`).
    pub response: u32,
    /// Faults reported in the group before its response.
    pub nr_faults: u32,
    /// Task that reported the first fault.
    pub reporter_tgid: u32,
    /// `IOPF_REPORTER_IS_USER`, …
    pub flags2: u32,
    pub reporter_comm: [u8; COMM_LEN],
    /// `dev_name(dev)`, NUL-padded, truncated.
    pub dev_name: [u8; DEV_NAME_LEN],
    /// Hook of the response ([`HOOK_FENTRY`] or [`HOOK_KPROBE`]).
    pub hook: u8,
    pub _pad: [u8; 7],
}

/// A fault group: what pairs a report with its response.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IopfKey {
    pub dev: u64,
    pub pasid: u32,
    pub grpid: u32,
}

/// A response to a fault group ([`KIND_IOPF_RESPONSE`]).
///
/// The hooks do not pair reports with responses: a report writes its
/// [`IopfRecord`] to the ring at once and the response this record, and
/// user space pairs them by [`IopfKey`], falling back to device 0 for
/// reports from hooks that do not know the device. Pairing in the kernel
/// took a hash-map insert at every report and a lookup and delete at every
/// response, which cost more than both ring-buffer writes together (`cargo
/// xtask bench pipeline`). The ring keeps reservation order, and a
/// response is always reserved after its report (the report hooks run
/// before the fault is handed on), so user space sees the report first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IopfResponseRecord {
    pub header: RecordHeader,
    /// `bpf_ktime_get_ns()` at the response.
    pub ts_ns: u64,
    /// `struct device *` (identity only; 0 where unknown).
    pub dev: u64,
    pub pasid: u32,
    pub grpid: u32,
    /// Response code (`enum iommu_page_response_code`).
    pub response: u32,
    /// [`HOOK_FENTRY`], [`HOOK_KPROBE`] or [`HOOK_TRACEPOINT`].
    pub hook: u8,
    pub _pad: [u8; 3],
}

/// The ioctls whose `cmd` the syscall tracepoints keep.
pub mod ioctl_cmd {
    /// `_IOW('W', 2, struct uacce_pin_address)` (uacce_ctrl RFC).
    pub const UACCE_CMD_PIN: u32 = 0x4010_5702;
    /// `_IOW('W', 3, struct uacce_pin_address)`.
    pub const UACCE_CMD_UNPIN: u32 = 0x4010_5703;
    /// `_IOW('M', 0, struct mem_pin_address)` (mempinfd RFC v3).
    pub const MEM_CMD_PIN: u32 = 0x4010_4d00;
    /// `_IOW('M', 1, struct mem_pin_address)`.
    pub const MEM_CMD_UNPIN: u32 = 0x4010_4d01;
}

/// A pin/unpin ioctl, syscall entry to exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoctlRecord {
    pub header: RecordHeader,
    pub ts_ns: u64,
    pub latency_ns: u64,
    /// `struct { __u64 addr; __u64 size; }` read from the user argument.
    pub addr: u64,
    pub size: u64,
    /// Syscall return value.
    pub ret: i64,
    pub tgid: u32,
    pub tid: u32,
    pub cmd: u32,
    pub fd: u32,
    pub comm: [u8; COMM_LEN],
    /// [`HOOK_TRACEPOINT`] (syscall tracepoints) or [`HOOK_FENTRY`] /
    /// [`HOOK_KPROBE`] (`uacce_ctrl_unl_ioctl` itself).
    pub hook: u8,
    /// `IOCTL_INNER_*` bits: the driver's `uacce_pin_page` /
    /// `uacce_unpin_page` ran inside this ioctl (symbol hooks).
    pub inner: u8,
    /// `pin_user_pages*`/`unpin_user_page*` calls this thread made while
    /// inside the ioctl: the link from the ioctl to the pins it caused.
    pub pin_calls: u16,
    /// Pages those calls pinned (pin ioctls) or unpinned (unpin ioctls).
    pub pages: u32,
    /// Return value of the inner `uacce_pin_page`/`uacce_unpin_page`.
    pub inner_ret: i32,
    pub _pad: u32,
}

/// `IoctlRecord::inner` bit: `uacce_pin_page` returned inside the ioctl.
pub const IOCTL_INNER_PIN_PAGE: u8 = 1;
/// `IoctlRecord::inner` bit: `uacce_unpin_page` returned inside the ioctl.
pub const IOCTL_INNER_UNPIN_PAGE: u8 = 2;

/// In-flight ioctl, per thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoctlInflight {
    pub ts_ns: u64,
    pub addr: u64,
    pub size: u64,
    pub cmd: u32,
    pub fd: u32,
    /// Pin/unpin calls seen inside the ioctl so far, and their pages.
    pub pin_calls: u32,
    pub pages: u32,
    /// Hook that opened the entry (the exit of the same hook closes it).
    pub hook: u8,
    /// `IOCTL_INNER_*` seen so far, and the last inner return value.
    pub inner: u8,
    pub _pad: u16,
    pub inner_ret: i32,
}

/// `QueueRecord::op`: `uacce_fops_open` returned.
pub const QUEUE_OP_OPEN: u32 = 1;
/// `uacce_fops_release` (the file's last close).
pub const QUEUE_OP_RELEASE: u32 = 2;
/// `UACCE_CMD_START_Q` through `uacce_fops_unl_ioctl`.
pub const QUEUE_OP_START: u32 = 3;
/// `UACCE_CMD_PUT_Q` through `uacce_fops_unl_ioctl`.
pub const QUEUE_OP_PUT: u32 = 4;

/// uacce queue ioctls (include/uapi/misc/uacce/uacce.h).
pub const UACCE_CMD_START_Q: u32 = 0x5700;
/// `_IO('W', 1)`.
pub const UACCE_CMD_PUT_Q: u32 = 0x5701;

/// One step of a uacce queue's life.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueRecord {
    pub header: RecordHeader,
    pub ts_ns: u64,
    /// Entry to return (0 for release, hooked at entry only).
    pub latency_ns: u64,
    /// `struct uacce_queue *` (identity of the queue).
    pub queue: u64,
    /// Return value (0 or -errno).
    pub ret: i64,
    pub tgid: u32,
    pub tid: u32,
    /// A `QUEUE_OP_*` value.
    pub op: u32,
    /// The queue's PASID (0 when the device is not SVA).
    pub pasid: u32,
    pub comm: [u8; COMM_LEN],
    /// `dev_name(&uacce->dev)`, e.g. `hisi_zip-0`.
    pub dev_name: [u8; DEV_NAME_LEN],
    pub hook: u8,
    pub _pad: [u8; 7],
}

/// In-flight `uacce_fops_open` / `uacce_fops_unl_ioctl` call, per thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueInflight {
    pub ts_ns: u64,
    pub file: u64,
    pub op: u32,
    pub _pad: u32,
}

/// Counts of the start-up PASID scan, written by the scan program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanState {
    /// Thread-group leaders visited.
    pub visited: u32,
    /// Of those, with a PASID on their mm (one [`BindRecord`] each).
    pub found: u32,
    /// 1 when the walk came back to where it started (whole list seen).
    pub complete: u32,
    /// Records that did not fit in the ring buffer.
    pub lost: u32,
}

/// Most tasks the scan visits (the `bpf_loop` bound).
pub const SCAN_MAX_TASKS: u32 = 1 << 20;

/// `BindRecord::op` values.
pub const BIND_OP_BIND: u32 = 1;
/// The PASID handle was released.
pub const BIND_OP_UNBIND: u32 = 2;
/// Found by the start-up scan: the task's mm already had this PASID
/// (`handle` is the `task_struct *`).
pub const BIND_OP_SCAN: u32 = 3;

/// A PASID learnt (`iommu_sva_get_pasid` return, process context) or
/// forgotten (`iommu_sva_unbind_device`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindRecord {
    pub header: RecordHeader,
    pub ts_ns: u64,
    /// `struct iommu_sva *` handle (identity).
    pub handle: u64,
    pub tgid: u32,
    pub pasid: u32,
    pub op: u32,
    pub hook: u32,
    pub comm: [u8; COMM_LEN],
}

/// Hook kind value for records from static tracepoints.
pub const HOOK_TRACEPOINT: u8 = 3;

/// Kernel facts user space computes from BTF (or the stable fallback
/// layout) and hands to the programs as the global `CONFIG`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelConfig {
    /// Offset of `struct iommu_fault` in the report argument
    /// (`iopf_fault`/`iommu_fault_event`) and in `iopf_group` (`last_fault`).
    pub fault_in_report: u32,
    pub fault_in_group: u32,
    /// Offsets inside `struct iommu_fault` (prm.* already added).
    pub prm_flags: u32,
    pub prm_pasid: u32,
    pub prm_grpid: u32,
    pub prm_perm: u32,
    pub prm_addr: u32,
    /// `iopf_group.fault_param` (pointer) and `iommu_fault_param.dev`.
    pub group_fault_param: u32,
    pub fault_param_dev: u32,
    /// `device.kobj.name` (pointer to the name).
    pub device_name: u32,
    /// `iommu_page_response.{pasid,grpid,code}` (≤6.8 response path).
    pub resp_pasid: u32,
    pub resp_grpid: u32,
    pub resp_code: u32,
    /// `task_struct.flags` and the PF_KTHREAD bit.
    pub task_flags: u32,
    pub pf_kthread: u32,
    /// `syscalls:sys_enter_ioctl` field offsets and `sys_exit_ioctl` ret.
    pub tp_ioctl_fd: u32,
    pub tp_ioctl_cmd: u32,
    pub tp_ioctl_arg: u32,
    pub tp_exit_ret: u32,
    pub _pad: u32,
    /// Start-up PASID scan: `task_struct.{tasks,group_leader,tgid,mm,comm}`.
    pub task_tasks: u32,
    pub task_group_leader: u32,
    pub task_tgid: u32,
    pub task_mm: u32,
    pub task_comm: u32,
    /// 6.8+: `mm_struct.iommu_mm` and `iommu_mm_data.pasid`; ≤6.7:
    /// `mm_struct.pasid`. Unknown where the kernel has no such field.
    pub mm_iommu_mm: u32,
    pub iommu_mm_pasid: u32,
    pub mm_pasid: u32,
    /// uacce queues: `file.private_data`, `uacce_queue.{pasid,uacce}`,
    /// `uacce_device.dev` (its name via `device_name`).
    pub file_private_data: u32,
    pub queue_pasid: u32,
    pub queue_uacce: u32,
    pub uacce_dev: u32,
    /// Vendor tracepoints (tracefs format offsets; unknown where absent):
    /// `intel_iommu:prq_report` `dw0`, `dw1` and the `__data_loc` of `dev`;
    pub tp_prq_dw0: u32,
    pub tp_prq_dw1: u32,
    pub tp_prq_dev: u32,
    /// `iommu:dev_fault` `pasid`, `grpid`, `flags`, `prot`/`perm`, `addr`,
    /// `__data_loc device`;
    pub tp_fault_pasid: u32,
    pub tp_fault_grpid: u32,
    pub tp_fault_flags: u32,
    pub tp_fault_perm: u32,
    pub tp_fault_addr: u32,
    pub tp_fault_dev: u32,
    /// `iommu:dev_page_response` `pasid`, `grpid`, `code`.
    pub tp_resp_pasid: u32,
    pub tp_resp_grpid: u32,
    pub tp_resp_code: u32,
    /// Process tree: `task_struct.signal` and `signal_struct.live` (threads
    /// not yet exiting; 0 once the last one is in `do_exit`).
    pub task_signal: u32,
    pub signal_live: u32,
}

impl KernelConfig {
    /// The layout that has held from 5.x through 7.x (docs/architecture.md,
    /// "Hook planning", kernel offsets); used where BTF does not say otherwise.
    pub const FALLBACK: KernelConfig = KernelConfig {
        fault_in_report: 0,
        fault_in_group: 0,
        prm_flags: 8,
        prm_pasid: 12,
        prm_grpid: 16,
        prm_perm: 20,
        prm_addr: 24,
        group_fault_param: 0xffff_ffff,
        fault_param_dev: 0xffff_ffff,
        device_name: 0xffff_ffff,
        resp_pasid: 12,
        resp_grpid: 16,
        resp_code: 20,
        task_flags: 0xffff_ffff,
        pf_kthread: 0x0020_0000,
        tp_ioctl_fd: 16,
        tp_ioctl_cmd: 24,
        tp_ioctl_arg: 32,
        tp_exit_ret: 16,
        _pad: 0,
        task_tasks: 0xffff_ffff,
        task_group_leader: 0xffff_ffff,
        task_tgid: 0xffff_ffff,
        task_mm: 0xffff_ffff,
        task_comm: 0xffff_ffff,
        mm_iommu_mm: 0xffff_ffff,
        iommu_mm_pasid: 0xffff_ffff,
        mm_pasid: 0xffff_ffff,
        file_private_data: 0xffff_ffff,
        queue_pasid: 0xffff_ffff,
        queue_uacce: 0xffff_ffff,
        uacce_dev: 0xffff_ffff,
        tp_prq_dw0: 0xffff_ffff,
        tp_prq_dw1: 0xffff_ffff,
        tp_prq_dev: 0xffff_ffff,
        tp_fault_pasid: 0xffff_ffff,
        tp_fault_grpid: 0xffff_ffff,
        tp_fault_flags: 0xffff_ffff,
        tp_fault_perm: 0xffff_ffff,
        tp_fault_addr: 0xffff_ffff,
        tp_fault_dev: 0xffff_ffff,
        tp_resp_pasid: 0xffff_ffff,
        tp_resp_grpid: 0xffff_ffff,
        tp_resp_code: 0xffff_ffff,
        task_signal: 0xffff_ffff,
        signal_live: 0xffff_ffff,
    };

    /// Marker for "offset unknown: do not read".
    pub const UNKNOWN: u32 = 0xffff_ffff;
}

/// Key of the in-flight map that carries entry arguments to the exit hook.
/// The thread id (lower half of `bpf_get_current_pid_tgid`).
pub type InflightKey = u32;

/// Value of the in-flight map: what the entry hook saw.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinInflight {
    pub ts_ns: u64,
    pub start: u64,
    pub nr_pages: u64,
    pub gup_flags: u32,
    pub func: u16,
    /// Nested pin/unpin calls of the same thread below the outermost one
    /// (e.g. `unpin_user_pages_dirty_lock` calling `unpin_user_pages` on
    /// 6.1); only the outermost call is reported, so pages are counted once.
    pub depth: u16,
}

/// Indices into the per-CPU `COUNTERS` array: the kernel half of the loss
/// ledger (user space adds its own reasons; docs/architecture.md, "Loss
/// ledger").
pub mod counter {
    /// Unused since ring-buffer losses are counted per record kind
    /// ([`ringbuf_full`]); kept so that the indices stay stable.
    pub const RINGBUF_FULL: u32 = 0;
    /// Loss: an exit hook found no entry once attaching was done (the
    /// kprobe missed the entry, or the LRU in-flight map evicted it).
    pub const EXIT_WITHOUT_ENTRY: u32 = 1;
    /// Not a loss: a nested call folded into its outer call (only
    /// `unpin_user_pages_dirty_lock` → `unpin_user_pages`).
    pub const NESTED: u32 = 2;
    /// Loss: an entry could not be stored in an in-flight map.
    pub const INFLIGHT_FULL: u32 = 3;
    /// Not a loss: summary mode, an IOPF report found its `IOPF_TABLE`
    /// slot held by another live group and went to the ring as a record
    /// (user space pairs it). Per-event mode pairs in user space, which
    /// counts its own losses; this index counted that table's overflow
    /// when pairing was done in the kernel before.
    pub const IOPF_TABLE_COLLISION: u32 = 4;
    /// Not a loss: summary mode, an IOPF response whose group was not in
    /// `IOPF_TABLE` (sampled or collided groups, groups reported before the
    /// tracer started) went to the ring for user space to pair.
    pub const IOPF_TABLE_MISS: u32 = 5;
    /// Unused since IOPFs are paired in user space; kept so that the
    /// indices stay stable.
    pub const IOPF_GROUP_FAULTS: u32 = 6;
    /// Loss: an entry found a leftover in-flight record of its thread that
    /// cannot be its caller, i.e. the exit of that earlier call was missed
    /// (a kretprobe out of instances, a call in flight while its hooks were
    /// attached); the leftover was replaced, the earlier call is lost.
    pub const STALE_INFLIGHT: u32 = 7;
    /// The window's edge: an exit without entry while the tracer was
    /// attaching or within [`ATTACH_EDGE_NS`] after (a call that began
    /// before every hook was attached). Its pages are not in the tool's
    /// numbers; the ledger shows it as `in_flight_at_start`.
    pub const EXIT_AT_ATTACH: u32 = 8;
    /// Attribution loss: an SVA unbind of a handle whose bind was not seen
    /// (bound before the tracer started, or evicted from the handle map).
    pub const UNBIND_UNKNOWN: u32 = 9;
    /// Loss: a forked process could not join the kernel's `FOLLOW` set (map
    /// full), so its own children are not followed.
    pub const FOLLOW_FULL: u32 = 10;
    /// Not a loss: a call in summary mode whose key did not fit in the
    /// full `SUMMARY` map went to the ring as a record instead.
    pub const SUMMARY_FULL: u32 = 11;
    /// Loss: summary mode, an IOPF report found its group closed (its last
    /// fault seen) and still waiting: the waiting group's response took a
    /// path no hook sees, and the report starts a new group (user space's
    /// `iopf_superseded`).
    pub const IOPF_TABLE_SUPERSEDED: u32 = 12;
    /// Loss: a request (`--op`) entry found a call of the same thread and
    /// op in flight that cannot be its caller (same or outer stack frame):
    /// that call never returned through its uretprobe (longjmp, exception
    /// unwinding, a thread that exited); it was replaced, its request lost.
    pub const REQUEST_RETURN_MISSED: u32 = 13;
    /// Loss: summary mode, an IOPF report took over the `IOPF_TABLE` slot
    /// of a group older than `summary::IOPF_TIMEOUT_NS`, never answered
    /// (user space's `iopf_unanswered`).
    pub const IOPF_TABLE_STALE: u32 = 14;
    /// First of the per-record-kind ring-buffer losses ([`ringbuf_full`]).
    pub const RINGBUF_FULL_BASE: u32 = 16;
    /// Number of counters.
    pub const COUNT: u32 = 32;

    /// Loss: a record of `kind` (a `KIND_*` value) did not fit in the ring.
    pub const fn ringbuf_full(kind: u16) -> u32 {
        RINGBUF_FULL_BASE + (kind as u32 & 15)
    }

    /// How long after attaching an exit without entry still counts as a
    /// call in flight at start ([`EXIT_AT_ATTACH`]) rather than a loss.
    pub const ATTACH_EDGE_NS: u64 = 1_000_000_000;

    /// Index of the attach-done time in the `RUNTIME` array map: user space
    /// writes `bpf_ktime_get_ns()` there once every hook is attached.
    pub const RUNTIME_ATTACH_DONE: u32 = 0;
}

/// The kernel functions whose calls become [`PinRecord`]s.
///
/// Argument positions are stable across 5.10 – 7.x for the arguments we
/// read (only trailing `vmas` arguments were dropped in 6.5).
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PinFunc {
    /// `pin_user_pages(start, nr_pages, gup_flags, pages[, vmas])`
    PinUserPages = 0,
    /// `pin_user_pages_fast(start, nr_pages, gup_flags, pages)`
    PinUserPagesFast = 1,
    /// `pin_user_pages_remote(mm, start, nr_pages, gup_flags, pages[, vmas], locked)`
    PinUserPagesRemote = 2,
    /// `pin_user_pages_unlocked(start, nr_pages, pages, gup_flags)`
    PinUserPagesUnlocked = 3,
    /// `memfd_pin_folios(memfd, start, end, folios, max_folios, offset)`
    /// (6.11+, udmabuf): returns the folios pinned, one pin reference (and
    /// one `nr_foll_pin_acquired`) each; `start` is a file offset.
    MemfdPinFolios = 4,
    /// `unpin_user_page(page)`
    UnpinUserPage = 16,
    /// `unpin_user_pages(pages, npages)`
    UnpinUserPages = 17,
    /// `unpin_user_pages_dirty_lock(pages, npages, make_dirty)`
    UnpinUserPagesDirtyLock = 18,
    /// `unpin_user_page_range_dirty_lock(page, npages, make_dirty)`
    UnpinUserPageRangeDirtyLock = 19,
    /// `unpin_folio(folio)` (6.11+): one pin reference
    UnpinFolio = 20,
    /// `unpin_folios(folios, nfolios)` (6.11+): one reference per folio
    UnpinFolios = 21,
    /// `unpin_user_folio(folio, npages)` (6.12+)
    UnpinUserFolio = 22,
}

impl PinFunc {
    /// Every hooked function, pin variants first.
    pub const ALL: [PinFunc; 12] = [
        PinFunc::PinUserPages,
        PinFunc::PinUserPagesFast,
        PinFunc::PinUserPagesRemote,
        PinFunc::PinUserPagesUnlocked,
        PinFunc::MemfdPinFolios,
        PinFunc::UnpinUserPage,
        PinFunc::UnpinUserPages,
        PinFunc::UnpinUserPagesDirtyLock,
        PinFunc::UnpinUserPageRangeDirtyLock,
        PinFunc::UnpinFolio,
        PinFunc::UnpinFolios,
        PinFunc::UnpinUserFolio,
    ];

    /// The kernel symbol.
    pub const fn symbol(self) -> &'static str {
        match self {
            PinFunc::PinUserPages => "pin_user_pages",
            PinFunc::PinUserPagesFast => "pin_user_pages_fast",
            PinFunc::PinUserPagesRemote => "pin_user_pages_remote",
            PinFunc::PinUserPagesUnlocked => "pin_user_pages_unlocked",
            PinFunc::MemfdPinFolios => "memfd_pin_folios",
            PinFunc::UnpinUserPage => "unpin_user_page",
            PinFunc::UnpinUserPages => "unpin_user_pages",
            PinFunc::UnpinUserPagesDirtyLock => "unpin_user_pages_dirty_lock",
            PinFunc::UnpinUserPageRangeDirtyLock => "unpin_user_page_range_dirty_lock",
            PinFunc::UnpinFolio => "unpin_folio",
            PinFunc::UnpinFolios => "unpin_folios",
            PinFunc::UnpinUserFolio => "unpin_user_folio",
        }
    }

    /// Base name of the four programs (`<base>_fentry`, `<base>_fexit`,
    /// `<base>_kprobe`, `<base>_kretprobe`) in the object.
    pub const fn program_base(self) -> &'static str {
        match self {
            PinFunc::PinUserPages => "pup",
            PinFunc::PinUserPagesFast => "pup_fast",
            PinFunc::PinUserPagesRemote => "pup_remote",
            PinFunc::PinUserPagesUnlocked => "pup_unlocked",
            PinFunc::MemfdPinFolios => "memfd_pin",
            PinFunc::UnpinUserPage => "unpin_page",
            PinFunc::UnpinUserPages => "unpin_pages",
            PinFunc::UnpinUserPagesDirtyLock => "unpin_pages_dirty",
            PinFunc::UnpinUserPageRangeDirtyLock => "unpin_range_dirty",
            PinFunc::UnpinFolio => "unpin_folio",
            PinFunc::UnpinFolios => "unpin_folios",
            PinFunc::UnpinUserFolio => "unpin_user_folio",
        }
    }

    /// True for the `pin_*` family, false for `unpin_*`.
    pub const fn is_pin(self) -> bool {
        (self as u16) < 16
    }

    /// Decode the `func` field of a record.
    pub const fn from_u16(v: u16) -> Option<PinFunc> {
        Some(match v {
            0 => PinFunc::PinUserPages,
            1 => PinFunc::PinUserPagesFast,
            2 => PinFunc::PinUserPagesRemote,
            3 => PinFunc::PinUserPagesUnlocked,
            4 => PinFunc::MemfdPinFolios,
            16 => PinFunc::UnpinUserPage,
            17 => PinFunc::UnpinUserPages,
            18 => PinFunc::UnpinUserPagesDirtyLock,
            19 => PinFunc::UnpinUserPageRangeDirtyLock,
            20 => PinFunc::UnpinFolio,
            21 => PinFunc::UnpinFolios,
            22 => PinFunc::UnpinUserFolio,
            _ => return None,
        })
    }
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<RecordHeader>() == 8);
    assert!(size_of::<PinRecord>() == 80);
    assert!(offset_of!(PinRecord, ts_ns) == 8);
    assert!(offset_of!(PinRecord, latency_ns) == 16);
    assert!(offset_of!(PinRecord, tgid) == 24);
    assert!(offset_of!(PinRecord, tid) == 28);
    assert!(offset_of!(PinRecord, comm) == 32);
    assert!(offset_of!(PinRecord, start) == 48);
    assert!(offset_of!(PinRecord, nr_pages) == 56);
    assert!(offset_of!(PinRecord, ret) == 64);
    assert!(offset_of!(PinRecord, gup_flags) == 72);
    assert!(offset_of!(PinRecord, func) == 76);
    assert!(offset_of!(PinRecord, hook) == 78);
    assert!(size_of::<PinInflight>() == 32);
    assert!(size_of::<IopfRecord>() == 128);
    assert!(offset_of!(IopfRecord, dev) == 24);
    assert!(offset_of!(IopfRecord, pasid) == 40);
    assert!(offset_of!(IopfRecord, reporter_comm) == 72);
    assert!(offset_of!(IopfRecord, dev_name) == 88);
    assert!(offset_of!(IopfRecord, hook) == 120);
    assert!(size_of::<IopfResponseRecord>() == 40);
    assert!(offset_of!(IopfResponseRecord, response) == 32);
    assert!(size_of::<IopfKey>() == 16);
    assert!(size_of::<IoctlRecord>() == 96);
    assert!(offset_of!(IoctlRecord, tgid) == 48);
    assert!(offset_of!(IoctlRecord, comm) == 64);
    assert!(offset_of!(IoctlRecord, hook) == 80);
    assert!(offset_of!(IoctlRecord, inner) == 81);
    assert!(offset_of!(IoctlRecord, pin_calls) == 82);
    assert!(offset_of!(IoctlRecord, pages) == 84);
    assert!(offset_of!(IoctlRecord, inner_ret) == 88);
    assert!(size_of::<IoctlInflight>() == 48);
    assert!(size_of::<QueueRecord>() == 112);
    assert!(offset_of!(QueueRecord, op) == 48);
    assert!(offset_of!(QueueRecord, comm) == 56);
    assert!(offset_of!(QueueRecord, dev_name) == 72);
    assert!(offset_of!(QueueRecord, hook) == 104);
    assert!(size_of::<QueueInflight>() == 24);
    assert!(size_of::<ScanState>() == 16);
    assert!(size_of::<BindRecord>() == 56);
    assert!(offset_of!(BindRecord, comm) == 40);
    assert!(size_of::<KernelConfig>() == 184);
    assert!(offset_of!(KernelConfig, task_signal) == 176);
    assert!(offset_of!(KernelConfig, signal_live) == 180);
    assert!(size_of::<ProcRecord>() == 56);
    assert!(offset_of!(ProcRecord, ts_ns) == 8);
    assert!(offset_of!(ProcRecord, op) == 16);
    assert!(offset_of!(ProcRecord, tgid) == 20);
    assert!(offset_of!(ProcRecord, parent_tgid) == 24);
    assert!(offset_of!(ProcRecord, tid) == 28);
    assert!(offset_of!(ProcRecord, lost) == 32);
    assert!(offset_of!(ProcRecord, comm) == 40);
    assert!(offset_of!(PinInflight, depth) == 30);
    assert!(size_of::<RequestRecord>() == 64);
    assert!(offset_of!(RequestRecord, ret) == 24);
    assert!(offset_of!(RequestRecord, tgid) == 32);
    assert!(offset_of!(RequestRecord, op) == 40);
    assert!(offset_of!(RequestRecord, comm) == 48);
    assert!(size_of::<RequestKey>() == 8);
    assert!(size_of::<RequestInflight>() == 24);
};

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data: integers and byte arrays only, explicit
    // padding, no invalid bit patterns.
    unsafe impl aya::Pod for super::PinRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PinInflight {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IopfRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IopfResponseRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IopfKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ScanState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::summary::SummaryKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::summary::IopfSummaryKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::summary::SummaryValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::summary::IopfSlot {}
    unsafe impl aya::Pod for super::RequestKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RequestInflight {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn func_numbering_round_trips() {
        for f in PinFunc::ALL {
            assert_eq!(PinFunc::from_u16(f as u16), Some(f));
            assert_eq!(f.is_pin(), !f.symbol().starts_with("unpin_"));
        }
        assert_eq!(PinFunc::from_u16(5), None);
    }
}
