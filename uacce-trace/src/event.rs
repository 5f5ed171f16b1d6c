//! Domain events: what the kernel programs observed, decoded from the wire
//! records into owned, typed values. Independent of aya; produced by
//! `source`, consumed by the output and aggregation code.

use std::fmt;

use serde::Serialize;
use uacce_trace_common::{PinFunc, HOOK_FENTRY, HOOK_KPROBE};

/// Kind of kernel hook an event came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookType {
    /// fentry/fexit (BPF trampoline).
    Fentry,
    /// kprobe/kretprobe.
    Kprobe,
    /// Static tracepoint.
    Tracepoint,
}

impl HookType {
    /// Name used on the command line, in `doctor` and in output.
    pub const fn name(self) -> &'static str {
        match self {
            HookType::Fentry => "fentry",
            HookType::Kprobe => "kprobe",
            HookType::Tracepoint => "tracepoint",
        }
    }

    /// Decode the `hook` byte of a wire record.
    pub const fn from_wire(v: u8) -> Option<HookType> {
        match v {
            HOOK_FENTRY => Some(HookType::Fentry),
            HOOK_KPROBE => Some(HookType::Kprobe),
            _ => None,
        }
    }
}

impl fmt::Display for HookType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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

    /// The errno of a failed pin call.
    pub fn errno(&self) -> Option<i32> {
        (self.is_pin() && self.ret < 0).then(|| i32::try_from(-self.ret).unwrap_or(i32::MAX))
    }
}

/// Everything the tool reports, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Pin(PinEvent),
}

/// Turn a NUL-padded `comm` into a string (lossy for non-UTF-8 bytes).
pub fn comm_to_string(comm: &[u8]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
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
    }
}
