//! The `/init` of a main test VM (busybox `sh`, runs as PID 1): the
//! parameters of [`GuestPlan`] in front of `xtask/vm-guest/vm-test.sh`.
//!
//! It mounts the pseudo filesystems, reads the kernel's pin counters
//! (`nr_foll_pin_acquired` / `nr_foll_pin_released`, after
//! `vm/stat_refresh` folds the per-CPU deltas), starts the tracer, runs the
//! workload, reads the counters again, stops the tracer with SIGINT, runs
//! `uacce-trace doctor`, and prints every result on the serial console
//! between markers the host parses ([`crate::vm::console`]):
//!
//! ```text
//! @@UT-BEGIN <name>
//! ...the file's lines...
//! @@UT-END <name> lines=<N> bytes=<M>
//! ```
//!
//! The line and byte counts let the host notice kernel messages mixed into
//! a section. `@@UT-DONE` ends the output; then the VM powers off.

use crate::vm::guest::{self, GUEST_IOPF_WORKLOAD, GUEST_UACCE_CTRL_PIN};
use crate::vm::image::{GUEST_TOOL, GUEST_WORKLOAD};

/// Seconds the guest waits for the tracer's `tracing started` line (BTF
/// parsing and BPF verification are slow under TCG).
const TRACE_START_TIMEOUT_S: u32 = 60;
/// Seconds the guest waits for the tracer to exit after each signal.
const TRACE_STOP_TIMEOUT_S: u32 = 20;

/// What one VM runs.
pub struct GuestPlan<'a> {
    /// `--hooks` value for the tracer; `None` runs the workload alone.
    pub hooks: Option<&'a str>,
    /// Arguments of `uacce-workload` (already safe to splice into `sh`:
    /// only `[A-Za-z0-9,-]` and spaces; checked by the caller).
    pub workload_args: &'a str,
    /// On the project's test kernel: also run two IOPF workloads at once
    /// (different PASIDs and response delays) and the `/dev/uacce_ctrl`
    /// fixture's pin test, after the io_uring workload.
    pub test_kernel: bool,
}

/// Arguments of the two concurrent IOPF workloads: PASIDs 257 and 258
/// (owned by no process: attributed to the reporting task, which the mock
/// makes the workload itself), response delay classes 0, 200 µs and 2 ms in
/// different orders, and disjoint group ids and addresses. Not PASID 1: the
/// PASID holder takes the first global PASID.
pub const IOPF_A_ARGS: &str =
    "--count 12 --delays-us 0,200,2000 --pasid 257 --grpid 1 --addr 0x10000000";
/// Second IOPF workload.
pub const IOPF_B_ARGS: &str =
    "--count 12 --delays-us 2000,0,200 --pasid 258 --grpid 1001 --addr 0x20000000";
/// Third IOPF workload, run with the PASID holder's PASID: its faults
/// belong to the holder (another process, bound before the tracer
/// started), not to the workload that reports them.
pub const IOPF_C_ARGS: &str = "--count 6 --delays-us 0,200 --grpid 2001 --addr 0x30000000";
/// Command name of the PASID holder (a copy of `uacce-ctrl-pin`).
pub const PASID_HOLDER_COMM: &str = "pasid-holder";
/// The fixture's uacce device (no SVA).
pub const UACCE_FIXTURE_DEV: &str = "/dev/uacce_fixture-0";

/// Extra sections of a test-kernel run.
pub const TEST_KERNEL_SECTIONS: &[(&str, &str)] = &[
    ("iopf-a", "/tmp/iopf-a.json"),
    ("iopf-a.err", "/tmp/iopf-a.err"),
    ("iopf-b", "/tmp/iopf-b.json"),
    ("iopf-b.err", "/tmp/iopf-b.err"),
    ("uacce-ctrl", "/tmp/uacce-ctrl.json"),
    ("uacce-ctrl.err", "/tmp/uacce-ctrl.err"),
    ("vmstat-uacce-before", "/tmp/vmstat-uacce-before"),
    ("vmstat-uacce-after", "/tmp/vmstat-uacce-after"),
    ("pasid-holder", "/tmp/pasid-holder.json"),
    ("pasid-holder.err", "/tmp/pasid-holder.err"),
    ("holder-warnings", "/tmp/holder-warnings"),
    ("iopf-c", "/tmp/iopf-c.json"),
    ("iopf-c.err", "/tmp/iopf-c.err"),
    ("uacce-queue", "/tmp/uacce-queue.json"),
    ("uacce-queue.err", "/tmp/uacce-queue.err"),
];

/// Sections the script prints, in order: (name, guest file).
pub const SECTIONS: &[(&str, &str)] = &[
    ("status", "/tmp/status"),
    ("workload", "/tmp/workload.json"),
    ("workload.err", "/tmp/workload.err"),
    ("vmstat-before", "/tmp/vmstat-before"),
    ("vmstat-after", "/tmp/vmstat-after"),
    ("trace.err", "/tmp/trace.err"),
    ("doctor", "/tmp/doctor.json"),
    ("doctor.err", "/tmp/doctor.err"),
    // `doctor --dump-facts`: copied from the VM's log folder into
    // uacce-trace/tests/data/facts/<kernel>.json to refresh the planner's
    // and doctor's recorded-facts tests.
    ("facts", "/tmp/facts.json"),
    ("events", "/tmp/events.ndjson"),
];

/// The guest script (parameters in its header comment).
const SCRIPT: &str = include_str!("../../vm-guest/vm-test.sh");

/// `name file` lines of `sections`.
fn lines_of(sections: &[(&str, &str)]) -> String {
    sections
        .iter()
        .map(|(name, file)| format!("{name} {file}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `/init` script for `plan`.
pub fn init_script(plan: &GuestPlan<'_>) -> String {
    let mut sections: Vec<(&str, &str)> = SECTIONS.to_vec();
    if plan.hooks.is_some() {
        sections.extend(super::summary::SECTIONS);
    }
    if plan.test_kernel {
        sections.extend(TEST_KERNEL_SECTIONS);
        sections.extend(super::attribution::SECTIONS);
        sections.extend(super::requests::SECTIONS);
        sections.extend(super::pinverdict::SECTIONS);
    }
    guest::init(
        "vm-test",
        &[
            ("HOOKS", plan.hooks.unwrap_or("").into()),
            ("TOOL", GUEST_TOOL.into()),
            ("WORKLOAD", GUEST_WORKLOAD.into()),
            ("WORKLOAD_ARGS", plan.workload_args.into()),
            ("START_TICKS", (TRACE_START_TIMEOUT_S * 10).to_string()),
            ("STOP_S", TRACE_STOP_TIMEOUT_S.to_string()),
            ("TEST_KERNEL", u8::from(plan.test_kernel).to_string()),
            ("IOPF", GUEST_IOPF_WORKLOAD.into()),
            ("UACCE", GUEST_UACCE_CTRL_PIN.into()),
            ("UACCE_DEV", UACCE_FIXTURE_DEV.into()),
            ("HOLDER", PASID_HOLDER_COMM.into()),
            ("LATE_HOLDER", super::attribution::LATE_HOLDER_COMM.into()),
            ("IOPF_A_ARGS", IOPF_A_ARGS.into()),
            ("IOPF_B_ARGS", IOPF_B_ARGS.into()),
            ("IOPF_C_ARGS", IOPF_C_ARGS.into()),
            ("ATTR_MODES", super::attribution::modes_param()),
            (
                "REQ_ARGS",
                if plan.test_kernel {
                    super::requests::REQ_ARGS.into()
                } else {
                    String::new()
                },
            ),
            ("REQ_SYMBOL", super::requests::SYMBOL.into()),
            (
                "PIN_ARGS",
                if plan.test_kernel {
                    super::pinverdict::PIN_ARGS.into()
                } else {
                    String::new()
                },
            ),
            ("PIN_METRIC", super::pinverdict::PIN_METRIC.into()),
            ("SECTIONS", lines_of(&sections)),
        ],
        SCRIPT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::guest::assert_sh_syntax;

    #[test]
    fn script_without_tool() {
        let script = init_script(&GuestPlan {
            hooks: None,
            workload_args: "iouring --size-kib 1024 --count 4",
            test_kernel: false,
        });
        assert!(script.contains("\nTEST_KERNEL=0\n"));
        assert!(!script.contains("attr-a /tmp/attr-a.json"));
        assert!(script.contains("\nREQ_ARGS=''\n"));
        assert!(script.contains("\nPIN_ARGS=''\n"));
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.contains("\nHOOKS=''\n"));
        assert!(script.contains("WORKLOAD_ARGS='iouring --size-kib 1024 --count 4'"));
        assert!(script.contains("\nevents /tmp/events.ndjson'\n"));
        assert!(script.ends_with("finish \"$SECTIONS\"\n"));
        assert!(script.contains("\nSTART_TICKS=600\n"));
        assert_sh_syntax(&script);
    }

    #[test]
    fn script_with_hooks() {
        let script = init_script(&GuestPlan {
            hooks: Some("kprobe"),
            workload_args: "iouring",
            test_kernel: true,
        });
        assert!(script.contains("\nIOPF=/usr/bin/iopf-workload\n"));
        assert!(script.contains("\nIOPF_A_ARGS='--count 12 "));
        assert!(script.contains("\nuacce-ctrl /tmp/uacce-ctrl.json\n"));
        assert!(script.contains("\nattr-noresp.err /tmp/attr-noresp.err\n"));
        assert!(script.contains("\nreq-trace.err /tmp/req-trace.err\n"));
        assert!(script.contains("\npin-compare.err /tmp/pin-compare.err'\n"));
        assert!(script.contains("\nPIN_ARGS='--requests 1000 "));
        assert!(script.contains("\nHOOKS=kprobe\n"));
        assert!(script.contains("\nsummary /tmp/summary.json\n"));
        assert!(script.contains("\nREQ_ARGS='--requests 30 "));
        assert!(script.contains("\nreq-events /tmp/req-events.ndjson\n"));
        assert!(script.contains("\nSTOP_S=20\n"));
        // The PASID holder starts before the tracer; its PASID reaches the
        // third IOPF workload.
        let holder = script.find("--hold-pasid").expect("holder started");
        assert!(holder < script.find("\"$TOOL\" trace").expect("tracer started"));
        assert!(script.contains(r#"sed -n 's/.*"pasid":\([0-9]*\).*/\1/p'"#));
        assert!(script.contains(r#"$IOPF_C_ARGS --pasid "${holder_pasid:-0}""#));
        assert_sh_syntax(&script);
    }
}
