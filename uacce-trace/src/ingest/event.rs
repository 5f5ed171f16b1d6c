//! Domain events: what the kernel programs observed, decoded from the wire
//! records into owned, typed values. Independent of aya; produced by
//! `ingest::live`, consumed by the output and aggregation code.

use serde::Serialize;
use uacce_trace_common::PinFunc;

pub use crate::kernel::plan::HookType;

/// One `pin_user_pages*` or `unpin_user_page*` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinEvent {
    /// CLOCK_MONOTONIC nanoseconds at function entry.
    pub ts_ns: u64,
    /// Entry to exit.
    pub latency_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub comm: String,
    pub func: PinFunc,
    pub hook: HookType,
    /// User start address (pin variants), 0 otherwise.
    pub start: u64,
    /// Pages asked for (pin) or handed back (unpin).
    pub nr_pages: u64,
    /// Pin: pages pinned or -errno. Unpin: pages unpinned.
    pub ret: i64,
    pub gup_flags: u32,
    /// `gup_flags` holds the running kernel's `FOLL_LONGTERM` bit.
    pub longterm: bool,
}

impl PinEvent {
    /// True for `pin_*` calls, false for `unpin_*`.
    pub fn is_pin(&self) -> bool {
        self.func.is_pin()
    }

    /// Pages this call pinned (pin) or unpinned (unpin); 0 on error.
    pub fn pages(&self) -> u64 {
        u64::try_from(self.ret).unwrap_or(0)
    }

    /// The errno of a failed pin call. `ret` comes from the kernel (or a
    /// file) unchecked: `i64::MIN` has no negation and must not panic
    /// (found by the `decode` fuzz target).
    pub fn errno(&self) -> Option<i32> {
        (self.is_pin() && self.ret < 0).then(|| {
            self.ret
                .checked_neg()
                .and_then(|v| i32::try_from(v).ok())
                .unwrap_or(i32::MAX)
        })
    }
}

/// One IO page fault: the device's page request reported by the IOMMU
/// driver and the response the kernel sent back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IopfEvent {
    /// CLOCK_MONOTONIC nanoseconds when the fault was reported.
    pub ts_ns: u64,
    /// Report to response.
    pub latency_ns: u64,
    /// Process owning the PASID (docs/architecture.md, "Attribution"); `None`
    /// when unattributed.
    pub tgid: Option<u32>,
    /// Owner's command name, empty when unattributed.
    pub comm: String,
    /// Device name (`dev_name()`, e.g. `0000:00:02.0`).
    pub device: String,
    pub pasid: u32,
    pub grpid: u32,
    /// `IOMMU_FAULT_PERM_*` bits: READ 1, WRITE 2, EXEC 4, PRIV 8.
    pub perm: u32,
    /// `IOMMU_FAULT_PAGE_REQUEST_*` flags.
    pub flags: u32,
    /// Faulting address (a CPU virtual address under SVA).
    pub addr: u64,
    /// Response code: 0 success, 1 invalid, 2 failure.
    pub response: u32,
    pub hook: HookType,
}

/// Which pin ioctl of `/dev/uacce_ctrl` (RFC) or `mempinfd` (RFC v3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PinIoctl {
    UaccePin,
    UacceUnpin,
    MemPin,
    MemUnpin,
}

impl PinIoctl {
    /// The ioctl of command number `cmd`, if it is one of these.
    pub fn from_cmd(cmd: u32) -> Option<PinIoctl> {
        use uacce_trace_common::ioctl_cmd;
        Some(match cmd {
            ioctl_cmd::UACCE_CMD_PIN => PinIoctl::UaccePin,
            ioctl_cmd::UACCE_CMD_UNPIN => PinIoctl::UacceUnpin,
            ioctl_cmd::MEM_CMD_PIN => PinIoctl::MemPin,
            ioctl_cmd::MEM_CMD_UNPIN => PinIoctl::MemUnpin,
            _ => return None,
        })
    }
}

/// One pin/unpin ioctl on `/dev/uacce_ctrl` or a mempinfd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinIoctlEvent {
    pub ts_ns: u64,
    pub latency_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub comm: String,
    pub cmd: PinIoctl,
    pub addr: u64,
    pub size: u64,
    /// ioctl return value (0 or -errno).
    pub ret: i64,
    pub hook: HookType,
    /// `pin_user_pages*`/`unpin_user_page*` calls made inside this ioctl
    /// (counted in the kernel per thread) and the pages they (un)pinned.
    pub pin_calls: u32,
    pub pages: u64,
    /// The driver's `uacce_pin_page`/`uacce_unpin_page` that ran inside
    /// this ioctl and its return value (symbol hooks; `None` where they are
    /// not hooked or the ioctl never reached them).
    pub driver_call: Option<DriverCall>,
}

/// A driver function the ioctl reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DriverCall {
    /// `uacce_pin_page` or `uacce_unpin_page`.
    pub function: &'static str,
    pub ret: i32,
}

/// One step of a uacce queue's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueOp {
    /// `open()` of `/dev/<driver>-<n>` (`uacce_fops_open` returned).
    Open,
    /// `UACCE_CMD_START_Q`.
    StartQ,
    /// `UACCE_CMD_PUT_Q`.
    PutQ,
    /// The last close (`uacce_fops_release`).
    Release,
}

impl QueueOp {
    pub const fn name(self) -> &'static str {
        match self {
            QueueOp::Open => "open",
            QueueOp::StartQ => "start_q",
            QueueOp::PutQ => "put_q",
            QueueOp::Release => "release",
        }
    }
}

/// A uacce queue opened, started, put or released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEvent {
    pub ts_ns: u64,
    /// Entry to return (0 where only one side is hooked).
    pub latency_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub comm: String,
    pub op: QueueOp,
    /// uacce device name, e.g. `hisi_zip-0` (`/dev/hisi_zip-0`).
    pub device: String,
    /// The queue's PASID (0 on devices without SVA).
    pub pasid: u32,
    /// Return value (0 or -errno).
    pub ret: i64,
    /// `struct uacce_queue *`, to follow one queue.
    pub queue: u64,
    pub hook: HookType,
}

/// A PASID bound to a process (learnt in process context when the process
/// opened its accelerator queue) or released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasidEvent {
    pub ts_ns: u64,
    pub tgid: u32,
    pub comm: String,
    pub pasid: u32,
    /// True for a bind, false for an unbind.
    pub bound: bool,
    pub hook: HookType,
}

/// Cumulative loss counters by reason, sampled by the source (the model
/// keeps the latest; a recording carries them so a replay shows them too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LossSample {
    pub ts_ns: u64,
    /// Everything lost so far, by reason.
    pub losses: crate::ingest::losses::Ledger,
}

/// A followed process forked or ended (`record -- COMMAND` only): the
/// process tree, in ring order with the other events (`crate::ingest::proctree`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcEvent {
    pub ts_ns: u64,
    /// Fork: the new process. Exit: the process that ended.
    pub tgid: u32,
    /// `Some(parent process)` for a fork, `None` for an exit.
    pub parent: Option<u32>,
    /// Fork: the forking thread. Exit: the last thread.
    pub tid: u32,
    pub comm: String,
    /// Process-tree records the kernel lost before this one (non-zero:
    /// the tree may have a gap).
    pub lost: u64,
}

/// One user-space request (`--op`): a call of a probed function, entry to
/// return, with the IO page faults of its process reported inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestEvent {
    /// CLOCK_MONOTONIC nanoseconds at entry.
    pub ts_ns: u64,
    /// Entry to return.
    pub latency_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub comm: String,
    /// The op's name (the probed symbol).
    pub op: String,
    /// The function's return value (the return register).
    pub ret: i64,
    /// IO page faults attributed to this process whose report time lies
    /// inside `[ts_ns, ts_ns + latency_ns]` (`crate::ingest::requests`).
    pub faults: u32,
    /// Their report-to-response time inside the request, summed.
    pub fault_ns: u64,
}

impl RequestEvent {
    /// The return time.
    pub fn end_ns(&self) -> u64 {
        self.ts_ns.saturating_add(self.latency_ns)
    }
}

/// Everything the tool reports, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Pin(PinEvent),
    Iopf(IopfEvent),
    PinIoctl(PinIoctlEvent),
    Pasid(PasidEvent),
    Queue(QueueEvent),
    Loss(LossSample),
    /// Process tree; only while following a command's processes.
    Proc(ProcEvent),
    /// Summary mode: one process's calls of one kind in one interval.
    Summary(SummaryEvent),
    /// A user-space request (`--op`).
    Request(RequestEvent),
}

/// What a [`SummaryEvent`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SummaryKind {
    Pin,
    Unpin,
    Ioctl(PinIoctl),
    /// IO page fault groups, report to response, of one PASID on one
    /// device (`SummaryEvent::pasid`, `SummaryEvent::device`).
    Iopf,
}

/// Summary mode: the calls of one kind that one process made in one
/// interval, as the kernel counted them (`ingest::summary`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryEvent {
    /// CLOCK_MONOTONIC ns when the kernel's counts were read (the end of
    /// the interval).
    pub ts_ns: u64,
    /// The calling process. IO page faults: the process they are
    /// attributed to (`ingest::attribution`), 0 when unattributed (no
    /// process has tgid 0).
    pub tgid: u32,
    pub comm: String,
    pub kind: SummaryKind,
    /// IO page faults: the groups' PASID; 0 otherwise.
    pub pasid: u32,
    /// IO page faults: the device's name; empty otherwise.
    pub device: String,
    pub calls: u64,
    /// Failed calls (pins: `ret` < 0; ioctls: `ret` ≠ 0; IO page faults:
    /// answered with a response code other than success).
    pub errors: u64,
    /// Pins: pages pinned; unpins: pages released; ioctls: pages their
    /// pin calls pinned or released.
    pub pages: u64,
    /// Pins: pages pinned with `FOLL_LONGTERM`.
    pub longterm_pages: u64,
    pub latency_sum_ns: u64,
    /// Calls per latency bucket: (bucket index of
    /// `uacce_trace_common::summary`, calls), buckets with calls only.
    pub buckets: Vec<(usize, u64)>,
}

impl Event {
    /// How many observed events this one stands for: the calls of a
    /// summary, none for a loss sample, else 1.
    pub fn weight(&self) -> u64 {
        match self {
            Event::Summary(e) => e.calls,
            Event::Loss(_) => 0,
            _ => 1,
        }
    }

    /// The process the event names itself (an IOPF's owner may only be
    /// known later, from its PASID; a loss sample has none).
    pub fn tgid(&self) -> Option<u32> {
        match self {
            Event::Pin(e) => Some(e.tgid),
            Event::Iopf(e) => e.tgid,
            Event::PinIoctl(e) => Some(e.tgid),
            Event::Pasid(e) => Some(e.tgid),
            Event::Queue(e) => Some(e.tgid),
            Event::Loss(_) => None,
            Event::Proc(e) => Some(e.tgid),
            Event::Summary(e) => Some(e.tgid),
            Event::Request(e) => Some(e.tgid),
        }
    }

    /// The event's timestamp (CLOCK_MONOTONIC ns).
    pub fn ts_ns(&self) -> u64 {
        match self {
            Event::Pin(e) => e.ts_ns,
            Event::Iopf(e) => e.ts_ns,
            Event::PinIoctl(e) => e.ts_ns,
            Event::Pasid(e) => e.ts_ns,
            Event::Queue(e) => e.ts_ns,
            Event::Loss(e) => e.ts_ns,
            Event::Proc(e) => e.ts_ns,
            Event::Summary(e) => e.ts_ns,
            Event::Request(e) => e.ts_ns,
        }
    }
}

/// Turn a NUL-padded `comm` into a string (lossy for non-UTF-8 bytes).
pub fn comm_to_string(comm: &[u8]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    // Valid UTF-8 (nearly always) skips the slower lossy scan.
    match std::str::from_utf8(&comm[..end]) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(&comm[..end]).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_stops_at_nul() {
        assert_eq!(comm_to_string(b"io_uring\0\0\0\0\0\0\0\0"), "io_uring");
        assert_eq!(comm_to_string(b"0123456789abcdef"), "0123456789abcdef");
    }

    #[test]
    fn pages_and_errno() {
        let mut e = PinEvent {
            ts_ns: 1,
            latency_ns: 2,
            tgid: 3,
            tid: 3,
            comm: "x".into(),
            func: PinFunc::PinUserPagesFast,
            hook: HookType::Kprobe,
            start: 0x1000,
            nr_pages: 4,
            ret: 4,
            gup_flags: 0,
            longterm: false,
        };
        assert_eq!((e.pages(), e.errno()), (4, None));
        e.ret = -14;
        assert_eq!((e.pages(), e.errno()), (0, Some(14)));
        // Garbage from a damaged file or a fuzzer: no overflow panic.
        e.ret = i64::MIN;
        assert_eq!((e.pages(), e.errno()), (0, Some(i32::MAX)));
    }
}
