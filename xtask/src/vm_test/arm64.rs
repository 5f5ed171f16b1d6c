//! Extra checks of an arm64 VM (Debian's stock arm64 6.12): the SMMUv3
//! driver's entry points stand in for the IOPF core there.
//!
//! That kernel has the SMMUv3 driver built in but `IOMMU_IOPF` off (no SVA),
//! so `iommu_report_device_fault` and `iopf_group_response` do not exist,
//! while `arm_smmu_page_response` (an ops callback, never inlined) and
//! usually `arm_smmu_handle_evt` do. The planner must pick the SMMUv3 rows
//! as fallbacks and the tracer must attach them with the VM's hook type:
//! this runs the arm64 programs through the arm64 verifier and attaches
//! them (fentry trampolines, kprobes) in a real arm64 kernel. No SMMU
//! raises stall faults under QEMU, so no IOPF records are expected.
//!
//! - (s1) doctor's plan: core report/response functions absent;
//!   `arm_smmu_page_response` chosen, with the fallback note;
//!   `arm_smmu_handle_evt` chosen unless absent (inlined) in this build.
//! - (s2) the tracer's `tracing started` line names the VM's hook type
//!   (`fentry`/`kprobe`) for `iopf_response`, and for `iopf_report` when the
//!   event handler exists.

use serde_json::Value;

use super::report::{plan_row, Verdict};
use crate::vm::console::{Console, Section};

/// Checks (s1) and (s2); `hook` is the forced hook type, if any.
pub fn check(console: &Console, hook: Option<&str>, v: &mut Verdict) {
    let doctor = console
        .sections
        .get("doctor")
        .map(Section::text)
        .unwrap_or_default();
    let Ok(doc) = serde_json::from_str::<Value>(&doctor) else {
        // report::check already failed (g) for this.
        return;
    };
    let entry = |f: &str| plan_row(&doc, f);
    let absent = |f: &str| entry(f).and_then(|h| h.get("absent").and_then(Value::as_bool));
    for core in ["iommu_report_device_fault", "iopf_group_response"] {
        if absent(core) != Some(true) {
            v.fail(
                &["doctor"],
                format!("(s1) {core} should be absent (IOMMU_IOPF is off in Debian's arm64 6.12)"),
            );
        }
    }
    let handler_present = absent("arm_smmu_handle_evt") == Some(false);
    let mut wanted = vec!["arm_smmu_page_response"];
    if handler_present {
        wanted.push("arm_smmu_handle_evt");
    } else {
        v.notes
            .push("arm_smmu_handle_evt is absent (inlined) in this kernel".into());
    }
    for f in &wanted {
        let Some(h) = entry(f) else {
            v.fail(
                &["doctor"],
                format!("(s1) doctor's plan has no row for {f}"),
            );
            continue;
        };
        match h.get("chosen").and_then(Value::as_str) {
            Some(chosen) => v.notes.push(format!("plan: {f} -> {chosen}")),
            None => v.fail(
                &["doctor"],
                format!("(s1) doctor's plan chose no hook for {f}"),
            ),
        }
        if !h
            .get("note")
            .and_then(Value::as_str)
            .is_some_and(|n| n.contains("no core function"))
        {
            v.fail(
                &["doctor"],
                format!("(s1) {f} is not marked as the fallback for the missing core function"),
            );
        }
    }

    let Some(hook) = hook else {
        return;
    };
    let started = console
        .sections
        .get("trace.err")
        .map(Section::text)
        .unwrap_or_default();
    let line = started
        .lines()
        .find(|l| l.starts_with("uacce-trace: tracing started"))
        .unwrap_or_default();
    let mut kinds = vec!["iopf_response"];
    if handler_present {
        kinds.push("iopf_report");
    }
    for kind in kinds {
        let want = format!("{kind}: {hook}");
        if !line.contains(&want) {
            v.fail(
                &["trace.err"],
                format!("(s2) the tracer did not attach the SMMUv3 {kind} hook with {hook} ({want:?} missing)"),
            );
        }
    }
}
