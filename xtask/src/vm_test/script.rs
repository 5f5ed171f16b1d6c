//! The `/init` script of a test VM (busybox `sh`, runs as PID 1).
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

use crate::vm::guest::{BOOTED, DONE, GUEST_IOPF_WORKLOAD, GUEST_UACCE_CTRL_PIN, LIB};
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

/// Test kernel, before the tracer starts: a process takes a PASID through
/// the fixture and keeps it (the tracer's start-up scan must find it).
fn pasid_holder_block() -> String {
    format!(
        r#"
cp "{uacce}" /tmp/{holder}
/tmp/{holder} --hold-pasid > /tmp/pasid-holder.json 2> /tmp/pasid-holder.err &
hpid=$!
n=0
while [ "$n" -lt 50 ] && ! grep -q pasid_holder /tmp/pasid-holder.json; do
    usleep 100000
    n=$((n + 1))
done
holder_pasid=$(sed -n 's/.*"pasid":\([0-9]*\).*/\1/p' /tmp/pasid-holder.json)
"#,
        uacce = GUEST_UACCE_CTRL_PIN,
        holder = PASID_HOLDER_COMM,
    )
}

/// The test-kernel block of the script: IOPF workloads, then the uacce_ctrl
/// fixture with vmstat read around it.
fn test_kernel_block() -> String {
    format!(
        r#"
"{iopf}" {a} > /tmp/iopf-a.json 2> /tmp/iopf-a.err &
apid=$!
"{iopf}" {b} > /tmp/iopf-b.json 2> /tmp/iopf-b.err &
bpid=$!
wait "$apid"; iopf_a_rc=$?
wait "$bpid"; iopf_b_rc=$?
echo 1 > /proc/sys/vm/stat_refresh
grep '^nr_foll_pin' /proc/vmstat > /tmp/vmstat-uacce-before
"{uacce}" 16 > /tmp/uacce-ctrl.json 2> /tmp/uacce-ctrl.err
uacce_rc=$?
echo 1 > /proc/sys/vm/stat_refresh
grep '^nr_foll_pin' /proc/vmstat > /tmp/vmstat-uacce-after
"{iopf}" {c} --pasid "${{holder_pasid:-0}}" > /tmp/iopf-c.json 2> /tmp/iopf-c.err
"{uacce}" --queue {dev} > /tmp/uacce-queue.json 2> /tmp/uacce-queue.err
{attribution}"#,
        iopf = GUEST_IOPF_WORKLOAD,
        uacce = GUEST_UACCE_CTRL_PIN,
        a = IOPF_A_ARGS,
        b = IOPF_B_ARGS,
        c = IOPF_C_ARGS,
        dev = UACCE_FIXTURE_DEV,
        attribution = super::attribution::guest_block(GUEST_IOPF_WORKLOAD, GUEST_UACCE_CTRL_PIN),
    )
}

/// Test kernel, after the tracer stopped: the holder exits, and the kernel
/// frees its PASID at mm teardown (`mm_pasid_drop`); kernel warnings (an
/// `ida_free` of a PASID not allocated, a bad free) are collected.
const PASID_HOLDER_END: &str = r#"
if [ -n "$hpid" ]; then
    kill "$hpid" 2>/dev/null
    wait "$hpid" 2>/dev/null
    sleep 1
    dmesg | grep -e 'ida_free' -e 'WARNING:' -e 'BUG:' > /tmp/holder-warnings
    echo "holder_exit=done" >> /tmp/holder-warnings
fi
"#;

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
    ("events", "/tmp/events.ndjson"),
];

/// The `/init` script for `plan`.
pub fn init_script(plan: &GuestPlan<'_>) -> String {
    let hooks = plan.hooks.unwrap_or("");
    let mut sections = String::new();
    let extra: &[(&str, &str)] = if plan.test_kernel {
        TEST_KERNEL_SECTIONS
    } else {
        &[]
    };
    let attribution: &[(&str, &str)] = if plan.test_kernel {
        super::attribution::SECTIONS
    } else {
        &[]
    };
    for (name, file) in SECTIONS.iter().chain(extra).chain(attribution) {
        sections.push_str(&format!("section {name} {file}\n"));
    }
    let test_kernel = if plan.test_kernel {
        test_kernel_block()
    } else {
        String::new()
    };
    let (holder_start, holder_end) = if plan.test_kernel {
        (pasid_holder_block(), PASID_HOLDER_END.to_string())
    } else {
        (String::new(), String::new())
    };
    format!(
        r#"#!/bin/sh
# Generated by `cargo xtask vm-test`; runs as PID 1 in the test VM.
HOOKS='{hooks}'
TOOL={tool}
WORKLOAD={workload}
WORKLOAD_ARGS='{workload_args}'

{lib}
echo "{booted} $(uname -r)"

echo 1 > /proc/sys/vm/stat_refresh
grep '^nr_foll_pin' /proc/vmstat > /tmp/vmstat-before

{holder_start}
started=0
tpid=
if [ -n "$HOOKS" ]; then
    "$TOOL" trace --json --hooks "$HOOKS" > /tmp/events.ndjson 2> /tmp/trace.err &
    tpid=$!
    wait_started "$tpid" /tmp/trace.err '^uacce-trace: tracing started' {start_ticks}
    start_wait_ds=$n
fi

"$WORKLOAD" $WORKLOAD_ARGS > /tmp/workload.json 2> /tmp/workload.err
workload_rc=$?

echo 1 > /proc/sys/vm/stat_refresh
grep '^nr_foll_pin' /proc/vmstat > /tmp/vmstat-after
{test_kernel}
trace_rc=
trace_stop=
doctor_rc=
if [ -n "$tpid" ]; then
    # A background job of a non-interactive shell starts with SIGINT
    # ignored; a tool that installs its own handler still gets it. Fall
    # back to SIGTERM, then SIGKILL, and say which one ended it.
    for sig in INT TERM KILL; do
        kill -"$sig" "$tpid" 2>/dev/null
        trace_stop=$sig
        wait_gone "$tpid" {stop_s} && break
    done
    wait "$tpid"
    trace_rc=$?
    "$TOOL" doctor --json > /tmp/doctor.json 2> /tmp/doctor.err
    doctor_rc=$?
fi
{holder_end}
{{
    echo "kernel=$(uname -r)"
    echo "hooks=$HOOKS"
    echo "workload_rc=$workload_rc"
    echo "trace_started=$started"
    echo "trace_start_wait_ds=$start_wait_ds"
    echo "trace_stop_signal=$trace_stop"
    echo "trace_rc=$trace_rc"
    echo "doctor_rc=$doctor_rc"
    echo "iopf_a_rc=$iopf_a_rc"
    echo "iopf_b_rc=$iopf_b_rc"
    echo "uacce_rc=$uacce_rc"
    if [ -r /proc/sys/kernel/io_uring_disabled ]; then
        echo "io_uring_disabled=$(cat /proc/sys/kernel/io_uring_disabled)"
    fi
}} > /tmp/status

{sections}echo "{done}"
# Let the serial port drain before the power goes.
sleep 1
poweroff -f
"#,
        tool = GUEST_TOOL,
        workload = GUEST_WORKLOAD,
        workload_args = plan.workload_args,
        lib = LIB,
        booted = BOOTED,
        done = DONE,
        start_ticks = TRACE_START_TIMEOUT_S * 10,
        stop_s = TRACE_STOP_TIMEOUT_S,
        test_kernel = test_kernel,
        holder_start = holder_start,
        holder_end = holder_end,
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
        assert!(!script.contains("iopf-workload"));
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.contains("HOOKS=''\n"));
        assert!(script.contains("WORKLOAD_ARGS='iouring --size-kib 1024 --count 4'"));
        assert!(script.contains("section events /tmp/events.ndjson\n"));
        assert!(script.contains("echo \"@@UT-DONE\"\n"));
        assert!(script.contains(
            "wait_started \"$tpid\" /tmp/trace.err '^uacce-trace: tracing started' 600\n"
        ));
        assert_sh_syntax(&script);
    }

    #[test]
    fn script_with_hooks() {
        let script = init_script(&GuestPlan {
            hooks: Some("kprobe"),
            workload_args: "iouring",
            test_kernel: true,
        });
        assert!(script.contains("\"/usr/bin/iopf-workload\" --count 12"));
        assert!(script.contains("section uacce-ctrl /tmp/uacce-ctrl.json\n"));
        assert!(script.contains("HOOKS='kprobe'\n"));
        assert!(script.contains("wait_gone \"$tpid\" 20 && break"));
        // The PASID holder starts before the tracer; its PASID reaches the
        // third IOPF workload.
        let holder = script.find("--hold-pasid").expect("holder started");
        assert!(holder < script.find("\"$TOOL\" trace").expect("tracer started"));
        assert!(script.contains(r#"sed -n 's/.*"pasid":\([0-9]*\).*/\1/p'"#));
        assert!(script.contains(r#"--pasid "${holder_pasid:-0}""#));
        assert_sh_syntax(&script);
    }
}
