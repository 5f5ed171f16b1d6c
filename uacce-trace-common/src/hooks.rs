//! The hook catalog: every kernel function and tracepoint the tool hooks,
//! the event kind it yields, the programs of the eBPF object that serve it
//! and how each attaches. The one list: the planner's targets
//! (`uacce-trace/src/kernel/plan.rs`), the loader's program names
//! (`kernel/attach.rs`) and xtask's test-kernel symbol checks are derived
//! from it, and a unit test (`kernel::attach::tests`) fails when the
//! object's program set and [`all_programs`] disagree. Adding a hook means
//! writing its programs in `uacce-trace-ebpf` and one entry here.
//!
//! Data only (`no_std`, no allocation); the kernel programs do not use it.

use core::fmt;

use crate::PinFunc;

/// What kind of event a hook produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    Pin,
    Unpin,
    IopfReport,
    IopfResponse,
    PinIoctl,
    PasidBind,
    PasidUnbind,
    /// uacce queue open/release and START_Q/PUT_Q.
    Queue,
    /// Process forks and exits (`record -- COMMAND` follows the command's
    /// processes with them). Not in [`EventKind::ALL`], the kinds every
    /// mode reports: attached only when following.
    Process,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::Pin,
        EventKind::Unpin,
        EventKind::IopfReport,
        EventKind::IopfResponse,
        EventKind::PinIoctl,
        EventKind::PasidBind,
        EventKind::PasidUnbind,
        EventKind::Queue,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            EventKind::Pin => "pin",
            EventKind::Unpin => "unpin",
            EventKind::IopfReport => "iopf_report",
            EventKind::IopfResponse => "iopf_response",
            EventKind::PinIoctl => "uacce_ctrl",
            EventKind::PasidBind => "pasid_bind",
            EventKind::PasidUnbind => "pasid_unbind",
            EventKind::Queue => "uacce_queue",
            EventKind::Process => "process",
        }
    }
}

/// How one program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    FEntry,
    FExit,
    KProbe,
    KRetProbe,
    /// A static tracepoint: category, event.
    Tracepoint(&'static str, &'static str),
    /// A raw tracepoint, by event name.
    RawTracepoint(&'static str),
    /// A uprobe on a user-space function (`--op`), at entry.
    UProbe,
    /// A uretprobe on a user-space function, at return.
    URetProbe,
}

/// One program of the object: `<base>_<suffix>` (`<base>` alone when the
/// suffix is empty), and how it attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Program {
    pub base: &'static str,
    pub suffix: &'static str,
    pub attach: Attach,
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.suffix.is_empty() {
            f.write_str(self.base)
        } else {
            write!(f, "{}_{}", self.base, self.suffix)
        }
    }
}

/// Which halves of a kernel function one hook type observes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halves {
    /// Entry only (`_fentry` / `_kprobe`).
    Entry,
    /// Return only (`_fexit` / `_kretprobe`).
    Exit,
    /// Both: the entry stores, the return emits.
    Both,
}

/// How a catalog entry is hooked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A kernel function: fentry/fexit preferred, else kprobe/kretprobe.
    Function { fentry: Halves, kprobe: Halves },
    /// Tracepoint programs, in attach order.
    Tracepoint(&'static [Program]),
}

/// One hook target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hook {
    /// Kernel symbol, or `category:name` of a tracepoint.
    pub target: &'static str,
    pub kind: EventKind,
    /// Program base name (function programs are `<base>_fentry` etc.).
    pub base: &'static str,
    pub probe: Probe,
    /// The kernels that have the target, for people.
    pub kernels: &'static str,
    /// Core functions preferred over this vendor row: it is used only when
    /// none of them got a hook (they see every vendor's faults with the
    /// fields we pair on; a vendor hook only its own, with other fields).
    pub preferred: &'static [&'static str],
    /// The test kernel (xtask's kernel build) must have it in BTF.
    pub in_test_kernel: bool,
}

impl Hook {
    /// A function target.
    const fn func(
        target: &'static str,
        kind: EventKind,
        base: &'static str,
        fentry: Halves,
        kprobe: Halves,
        kernels: &'static str,
    ) -> Hook {
        Hook {
            target,
            kind,
            base,
            probe: Probe::Function { fentry, kprobe },
            kernels,
            preferred: &[],
            in_test_kernel: false,
        }
    }

    /// A tracepoint target.
    const fn tp(
        target: &'static str,
        kind: EventKind,
        programs: &'static [Program],
        kernels: &'static str,
    ) -> Hook {
        Hook {
            target,
            kind,
            base: programs[0].base,
            probe: Probe::Tracepoint(programs),
            kernels,
            preferred: &[],
            in_test_kernel: false,
        }
    }

    const fn prefer(mut self, core: &'static [&'static str]) -> Hook {
        self.preferred = core;
        self
    }

    const fn tested(mut self) -> Hook {
        self.in_test_kernel = true;
        self
    }

    /// A tracepoint target (only [`Hook::tracepoint_programs`] serve it).
    pub const fn is_tracepoint(&self) -> bool {
        matches!(self.probe, Probe::Tracepoint(_))
    }

    /// Programs attached through fentry/fexit, in attach order (every
    /// return half before its entry half: a call in flight while the entry
    /// half attaches then meets only an exit without entry, counted as in
    /// flight at start, instead of leaving an entry behind forever).
    pub fn fentry_programs(&self) -> impl Iterator<Item = Program> {
        self.function_programs(true)
    }

    /// Programs attached through kprobe/kretprobe, in attach order.
    pub fn kprobe_programs(&self) -> impl Iterator<Item = Program> {
        self.function_programs(false)
    }

    /// Tracepoint programs, in attach order.
    pub fn tracepoint_programs(&self) -> impl Iterator<Item = Program> {
        let list: &'static [Program] = match self.probe {
            Probe::Tracepoint(list) => list,
            Probe::Function { .. } => &[],
        };
        list.iter().copied()
    }

    fn function_programs(&self, fentry: bool) -> impl Iterator<Item = Program> {
        let halves = match self.probe {
            Probe::Function { fentry: f, .. } if fentry => Some(f),
            Probe::Function { kprobe: k, .. } => Some(k),
            Probe::Tracepoint(_) => None,
        };
        let (exit, entry) = if fentry {
            (("fexit", Attach::FExit), ("fentry", Attach::FEntry))
        } else {
            (("kretprobe", Attach::KRetProbe), ("kprobe", Attach::KProbe))
        };
        let base = self.base;
        let prog = move |(suffix, attach): (&'static str, Attach)| Program {
            base,
            suffix,
            attach,
        };
        let (first, second) = match halves {
            None => (None, None),
            Some(Halves::Entry) => (Some(entry), None),
            Some(Halves::Exit) => (Some(exit), None),
            Some(Halves::Both) => (Some(exit), Some(entry)),
        };
        first.map(prog).into_iter().chain(second.map(prog))
    }

    /// Every program of this entry, all hook types.
    pub fn programs(&self) -> impl Iterator<Item = Program> {
        self.fentry_programs()
            .chain(self.kprobe_programs())
            .chain(self.tracepoint_programs())
    }
}

const fn pin(f: PinFunc) -> Hook {
    let kernels = match f {
        PinFunc::MemfdPinFolios | PinFunc::UnpinFolio | PinFunc::UnpinFolios => "6.11+",
        PinFunc::UnpinUserFolio => "6.12+",
        _ => "all",
    };
    let hook = Hook::func(
        f.symbol(),
        if f.is_pin() {
            EventKind::Pin
        } else {
            EventKind::Unpin
        },
        f.program_base(),
        Halves::Both,
        Halves::Both,
        kernels,
    );
    match f {
        PinFunc::PinUserPagesFast | PinFunc::UnpinUserPages => hook.tested(),
        _ => hook,
    }
}

const fn tp(base: &'static str, suffix: &'static str, attach: Attach) -> Program {
    Program {
        base,
        suffix,
        attach,
    }
}

/// The RFC driver's `uacce_ctrl_unl_ioctl`: the uacce_ctrl pin ioctls at
/// the driver, which the syscall tracepoint then leaves to it.
pub const UACCE_CTRL_IOCTL: Hook = Hook::func(
    "uacce_ctrl_unl_ioctl",
    EventKind::PinIoctl,
    "uacce_ctrl_ioctl",
    Halves::Both,
    Halves::Both,
    "uacce_ctrl driver (RFC)",
)
.tested();

/// Every hook target, in planning order; for each event kind its
/// candidates in preference order.
pub const HOOKS: &[Hook] = &[
    pin(PinFunc::PinUserPages),
    pin(PinFunc::PinUserPagesFast),
    pin(PinFunc::PinUserPagesRemote),
    pin(PinFunc::PinUserPagesUnlocked),
    pin(PinFunc::MemfdPinFolios),
    pin(PinFunc::UnpinUserPage),
    pin(PinFunc::UnpinUserPages),
    pin(PinFunc::UnpinUserPagesDirtyLock),
    pin(PinFunc::UnpinUserPageRangeDirtyLock),
    pin(PinFunc::UnpinFolio),
    pin(PinFunc::UnpinFolios),
    pin(PinFunc::UnpinUserFolio),
    // Both signatures of the report function.
    Hook::func(
        "iommu_report_device_fault",
        EventKind::IopfReport,
        "iopf_report",
        Halves::Entry,
        Halves::Entry,
        "IOMMU_IOPF",
    )
    .tested(),
    Hook::func(
        "iopf_group_response",
        EventKind::IopfResponse,
        "iopf_group_response",
        Halves::Entry,
        Halves::Entry,
        "6.9+",
    )
    .tested(),
    Hook::func(
        "iommu_page_response",
        EventKind::IopfResponse,
        "iommu_page_response",
        Halves::Entry,
        Halves::Entry,
        "up to 6.8",
    ),
    // SMMUv3 driver entry points: after the core functions, used only
    // where those cannot be hooked. The handler is
    // `arm_smmu_handle_evt(smmu, u64 *evt)` up to 6.13 and
    // `arm_smmu_handle_event(smmu, u64 *evt, event)` from 6.15 (6.14's
    // two-argument form without the raw event is not decoded).
    Hook::func(
        "arm_smmu_handle_evt",
        EventKind::IopfReport,
        "smmu_evt",
        Halves::Entry,
        Halves::Entry,
        "arm64 SMMUv3, up to 6.13",
    )
    .prefer(&["iommu_report_device_fault"]),
    Hook::func(
        "arm_smmu_handle_event",
        EventKind::IopfReport,
        "smmu_evt",
        Halves::Entry,
        Halves::Entry,
        "arm64 SMMUv3, 6.15+",
    )
    .prefer(&["iommu_report_device_fault"]),
    Hook::func(
        "arm_smmu_page_response",
        EventKind::IopfResponse,
        "smmu_page_response",
        Halves::Entry,
        Halves::Entry,
        "arm64 SMMUv3",
    )
    .prefer(&["iopf_group_response", "iommu_page_response"]),
    // Vendor tracepoints: `intel_iommu:prq_report` (Intel page request
    // queue), `iommu:dev_fault` / `iommu:dev_page_response` (vendor trees).
    Hook::tp(
        "intel_iommu:prq_report",
        EventKind::IopfReport,
        &[tp(
            "prq_report",
            "tp",
            Attach::Tracepoint("intel_iommu", "prq_report"),
        )],
        "Intel VT-d",
    )
    .prefer(&["iommu_report_device_fault"]),
    Hook::tp(
        "iommu:dev_fault",
        EventKind::IopfReport,
        &[tp(
            "dev_fault",
            "tp",
            Attach::Tracepoint("iommu", "dev_fault"),
        )],
        "vendor trees",
    )
    .prefer(&["iommu_report_device_fault"]),
    Hook::tp(
        "iommu:dev_page_response",
        EventKind::IopfResponse,
        &[tp(
            "dev_page_response",
            "tp",
            Attach::Tracepoint("iommu", "dev_page_response"),
        )],
        "vendor trees",
    )
    .prefer(&["iopf_group_response", "iommu_page_response"]),
    // The driver's own function first: it sees only real uacce_ctrl
    // ioctls; the tracepoint then keeps the mempinfd ones (and all of them
    // where the symbol does not exist).
    UACCE_CTRL_IOCTL,
    // `uacce_pin_page` / `uacce_unpin_page` return, linked to the ioctl.
    Hook::func(
        "uacce_pin_page",
        EventKind::PinIoctl,
        "uacce_pin_page",
        Halves::Exit,
        Halves::Exit,
        "uacce_ctrl driver (RFC)",
    )
    .tested(),
    Hook::func(
        "uacce_unpin_page",
        EventKind::PinIoctl,
        "uacce_unpin_page",
        Halves::Exit,
        Halves::Exit,
        "uacce_ctrl driver (RFC)",
    )
    .tested(),
    // Filtered on the pin ioctl numbers in the kernel.
    Hook::tp(
        "syscalls:sys_enter_ioctl",
        EventKind::PinIoctl,
        &[
            tp(
                "ioctl",
                "exit",
                Attach::Tracepoint("syscalls", "sys_exit_ioctl"),
            ),
            tp(
                "ioctl",
                "enter",
                Attach::Tracepoint("syscalls", "sys_enter_ioctl"),
            ),
        ],
        "all (syscall tracepoints)",
    ),
    Hook::func(
        "uacce_fops_open",
        EventKind::Queue,
        "uacce_open",
        Halves::Exit,
        Halves::Both,
        "CONFIG_UACCE",
    )
    .tested(),
    Hook::func(
        "uacce_fops_release",
        EventKind::Queue,
        "uacce_release",
        Halves::Entry,
        Halves::Entry,
        "CONFIG_UACCE",
    ),
    Hook::func(
        "uacce_fops_unl_ioctl",
        EventKind::Queue,
        "uacce_ioctl",
        Halves::Exit,
        Halves::Both,
        "CONFIG_UACCE",
    ),
    // A PASID bound in process context (its return).
    Hook::func(
        "iommu_sva_get_pasid",
        EventKind::PasidBind,
        "sva_get_pasid",
        Halves::Exit,
        Halves::Both,
        "IOMMU_SVA",
    ),
    Hook::func(
        "iommu_sva_unbind_device",
        EventKind::PasidUnbind,
        "sva_unbind",
        Halves::Entry,
        Halves::Entry,
        "IOMMU_SVA",
    ),
    // The process tree (`record -- COMMAND` only, `uacce-trace-ebpf/src/
    // proc.rs`). The fork program is a raw tracepoint of the same event (it
    // needs the child's task); both exist wherever the tracefs format does.
    Hook::tp(
        "sched:sched_process_fork",
        EventKind::Process,
        &[tp(
            "proc",
            "fork",
            Attach::RawTracepoint("sched_process_fork"),
        )],
        "all",
    ),
    Hook::tp(
        "sched:sched_process_exit",
        EventKind::Process,
        &[tp(
            "proc",
            "exit",
            Attach::Tracepoint("sched", "sched_process_exit"),
        )],
        "all",
    ),
];

/// The start-up PASID scan (`uacce-trace-ebpf/src/uacce.rs`), never in the
/// plan: run once from a syscall the scanning thread makes.
pub const PASID_SCAN: Program = Program {
    base: "pasid_scan",
    suffix: "",
    attach: Attach::Tracepoint("syscalls", "sys_enter_getpgid"),
};

/// The bench source (`uacce-trace-ebpf/src/bench.rs`, built only with the
/// `bench` feature), never in the plan: every `getppid(2)` of the bench
/// process becomes an IOPF report and response.
pub const BENCH: [Program; 2] = [
    Program {
        base: "bench_report",
        suffix: "",
        attach: Attach::Tracepoint("syscalls", "sys_enter_getppid"),
    },
    Program {
        base: "bench_response",
        suffix: "",
        attach: Attach::Tracepoint("syscalls", "sys_exit_getppid"),
    },
];

/// The request programs (`uacce-trace-ebpf/src/request.rs`), never in the
/// plan: attached to the user-space functions named with `--op`, once per
/// function, the return half first (a call in flight while the entry half
/// attaches then meets only a return without entry, counted as in flight
/// at start, instead of leaving an entry behind).
pub const REQUEST: [Program; 2] = [
    Program {
        base: "req",
        suffix: "uretprobe",
        attach: Attach::URetProbe,
    },
    Program {
        base: "req",
        suffix: "uprobe",
        attach: Attach::UProbe,
    },
];

/// The catalog entry of `target`.
pub fn hook(target: &str) -> Option<&'static Hook> {
    HOOKS.iter().find(|h| h.target == target)
}

/// The core functions preferred over `target`, if it is a vendor row.
pub fn preferred_over(target: &str) -> &'static [&'static str] {
    hook(target).map_or(&[], |h| h.preferred)
}

/// Every program the object must hold: the catalog's, the PASID scan, the
/// request programs and,
/// with `bench`, the bench source. A program serving several targets
/// (renamed functions) is listed once per target.
pub fn all_programs(bench: bool) -> impl Iterator<Item = Program> {
    let bench: &'static [Program] = if bench { &BENCH } else { &[] };
    HOOKS
        .iter()
        .flat_map(Hook::programs)
        .chain(core::iter::once(PASID_SCAN))
        .chain(REQUEST)
        .chain(bench.iter().copied())
}

/// The kernel functions the test kernel must offer (in BTF, hookable):
/// what xtask's kernel smoke test and BTF check look for.
pub fn test_kernel_functions() -> impl Iterator<Item = &'static str> {
    HOOKS.iter().filter(|h| h.in_test_kernel).map(|h| h.target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_unique_and_pins_follow_pinfunc() {
        for (i, h) in HOOKS.iter().enumerate() {
            assert!(
                HOOKS[..i].iter().all(|o| o.target != h.target),
                "{} twice",
                h.target
            );
        }
        for f in PinFunc::ALL {
            let h = hook(f.symbol()).expect("every PinFunc is hooked");
            assert_eq!(h.base, f.program_base());
        }
    }

    #[test]
    fn programs_attach_exit_first() {
        let h = hook("pin_user_pages_fast").expect("in the catalog");
        let mut names = [Program {
            base: "",
            suffix: "",
            attach: Attach::FEntry,
        }; 2];
        for (slot, p) in names.iter_mut().zip(h.kprobe_programs()) {
            *slot = p;
        }
        assert_eq!(names[0].attach, Attach::KRetProbe);
        assert_eq!(names[1].attach, Attach::KProbe);
        assert_eq!(names[1].suffix, "kprobe");
        assert_eq!(h.tracepoint_programs().count(), 0);
        let sva = hook("iommu_sva_get_pasid").expect("in the catalog");
        assert_eq!(sva.fentry_programs().count(), 1);
        assert_eq!(sva.kprobe_programs().count(), 2);
    }

    #[test]
    fn test_kernel_functions_cover_every_kind_the_vm_tests_check() {
        // The VM tier checks pins, unpins, IOPF reports and responses, the
        // uacce_ctrl ioctl and uacce queues on the test kernel: each needs
        // at least one function the kernel build must keep in BTF.
        for kind in [
            EventKind::Pin,
            EventKind::Unpin,
            EventKind::IopfReport,
            EventKind::IopfResponse,
            EventKind::PinIoctl,
            EventKind::Queue,
        ] {
            assert!(
                test_kernel_functions().any(|f| hook(f).is_some_and(|h| h.kind == kind)),
                "no test-kernel function for {kind:?}"
            );
        }
        // Only kernel functions: a tracepoint is not in BTF as a FUNC.
        for f in test_kernel_functions() {
            assert!(
                matches!(hook(f).map(|h| h.probe), Some(Probe::Function { .. })),
                "{f}"
            );
        }
        assert_eq!(
            preferred_over("arm_smmu_page_response"),
            &["iopf_group_response", "iommu_page_response"]
        );
        assert!(preferred_over("pin_user_pages").is_empty());
    }
}
