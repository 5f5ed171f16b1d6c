//! Everything learnt about a kernel before attaching: the facts
//! ([`KernelFacts`], live or recorded), the offsets handed to the programs
//! and the hook plan. Pure given the facts: `doctor` and the planner tests
//! run it on recorded facts of each supported kernel.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::kernel::{
    facts::KernelFacts,
    kconfig,
    plan::{self, EventKind, Facts, HookPreference, Plan, HOOKS},
    system,
};

/// The running kernel's `FOLL_LONGTERM` bit and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FollLongterm {
    pub value: Option<u32>,
    pub origin: String,
}

/// Everything learnt about the running kernel before attaching.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    pub kernel: String,
    /// `Ok(types)` with the number of BTF types, or why BTF is unusable.
    pub btf: Result<usize, String>,
    pub tracefs: Option<String>,
    pub kprobes: Result<(), String>,
    pub fentry: Result<(), String>,
    pub ring_buffer: Result<(), String>,
    pub foll_longterm: FollLongterm,
    pub privileges: Result<(), String>,
    pub plan: Plan,
    /// Parameter counts of hooked functions in BTF (`pin_user_pages` lost its
    /// `vmas` argument in 6.5).
    pub params: BTreeMap<String, usize>,
    /// Offsets handed to the programs and where each came from.
    pub config: kconfig::Resolved,
}

fn foll_longterm(facts: &dyn KernelFacts, release: &str) -> FollLongterm {
    if let Some(v) = facts.enum_value("FOLL_LONGTERM") {
        if let Ok(value) = u32::try_from(v) {
            return FollLongterm {
                value: Some(value),
                origin: "kernel BTF (enum FOLL_LONGTERM)".into(),
            };
        }
    }
    // Before 6.3 the FOLL_* flags were #defines (no BTF); the value was
    // 0x10000 from 4.x through 6.2 (include/linux/mm.h).
    match system::parse_version(release) {
        Some(v) if v < (6, 3) => FollLongterm {
            value: Some(0x10000),
            origin:
                "not in this kernel's BTF (a #define before 6.3); 0x10000 from the 5.x–6.2 headers"
                    .into(),
        },
        _ => FollLongterm {
            value: None,
            origin: "not in this kernel's BTF; long-term pins cannot be flagged".into(),
        },
    }
}

/// Inspect a kernel and plan hooks. Works without privileges (what needs
/// them is reported as unknown).
pub fn inspect(facts: &dyn KernelFacts, pref: HookPreference) -> Inspection {
    let kernel = facts.release();
    let privileges = facts.privileges();
    let btf = facts.btf();
    let tracefs = facts.tracefs();
    let names: Vec<&str> = HOOKS
        .iter()
        .filter(|h| !h.is_tracepoint())
        .map(|h| h.target)
        .collect();
    let mut symbols = facts.symbols(&names);
    let format = |tp: &str| facts.tracepoint_format(tp);
    let mut tracepoints = BTreeMap::new();
    for h in HOOKS.iter().filter(|h| h.is_tracepoint()) {
        let found = match &tracefs {
            None => Err("tracefs is not mounted".to_string()),
            Some(_) if format(h.target).is_some() => Ok(()),
            Some(_) => Err("tracepoint not in this kernel (no format file in tracefs)".to_string()),
        };
        tracepoints.insert(h.target.to_string(), found);
    }
    let member = |s: &str, p: &str| facts.member_offset(s, p);
    let mut config = kconfig::resolve_with(
        &member,
        format("syscalls:sys_enter_ioctl").as_deref(),
        format("syscalls:sys_exit_ioctl").as_deref(),
    );
    let (prq, fault, resp) = (
        format("intel_iommu:prq_report"),
        format("iommu:dev_fault"),
        format("iommu:dev_page_response"),
    );
    config.add_vendor_tracepoints(kconfig::VendorFormats {
        prq_report: prq.as_deref(),
        dev_fault: fault.as_deref(),
        dev_page_response: resp.as_deref(),
    });
    let mut params = BTreeMap::new();
    for (name, sym) in symbols.iter_mut() {
        if let Some(n) = facts.func_params(name) {
            sym.in_btf = true;
            params.insert(name.clone(), n);
        }
    }
    let target = symbols
        .iter()
        .find(|(n, s)| s.in_btf && n.starts_with("pin_"))
        .map(|(n, _)| n.as_str());
    let fentry = facts.fentry(target);
    let ring_buffer = facts.ring_buffer();
    let kprobes = facts.kprobes();
    let plan_facts = Facts {
        fentry: fentry.clone(),
        kprobe: kprobes.clone(),
        symbols,
        tracepoints,
    };
    let mut plan = plan::plan(&plan_facts, pref);
    // The process-tree rows: say when they are used, and what stops them.
    let follow_problem = config.follow_problem();
    for h in plan
        .hooks
        .iter_mut()
        .filter(|h| h.kind == EventKind::Process)
    {
        h.note = Some("attached only by `record -- COMMAND`".into());
        if let Some(why) = &follow_problem {
            while let Some(chosen) = h.chosen {
                h.reject_chosen(chosen, why.clone());
            }
        }
    }
    Inspection {
        foll_longterm: foll_longterm(facts, &kernel),
        kernel,
        btf,
        tracefs,
        kprobes,
        fentry,
        ring_buffer,
        privileges,
        plan,
        params,
        config,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{
        facts::fixtures,
        plan::{HookType, PlannedHook},
    };

    fn row<'a>(i: &'a Inspection, function: &str) -> &'a PlannedHook {
        i.plan
            .hooks
            .iter()
            .find(|h| h.function == function)
            .unwrap_or_else(|| panic!("{function} planned"))
    }

    fn chosen(i: &Inspection, function: &str) -> Option<HookType> {
        row(i, function).chosen
    }

    /// The plan each supported kernel gets, from its recorded facts.
    #[test]
    fn plans_of_the_recorded_kernels() {
        let mut seen = Vec::new();
        for (name, facts) in fixtures() {
            let auto = inspect(&facts, HookPreference::Auto);
            let kprobe = inspect(&facts, HookPreference::Kprobe);
            // Every row of the catalog is planned, in catalog order.
            let planned: Vec<&str> = auto.plan.hooks.iter().map(|h| h.function).collect();
            let catalog: Vec<&str> = HOOKS.iter().map(|h| h.target).collect();
            assert_eq!(planned, catalog, "{name}");
            // Where kprobes work, --hooks kprobe traces pins and unpins.
            if facts.kprobes.is_ok() {
                assert_eq!(kprobe.plan.core_problem(), None, "{name}");
                assert_eq!(
                    chosen(&kprobe, "pin_user_pages_fast"),
                    Some(HookType::Kprobe),
                    "{name}"
                );
            }
            if facts.fentry.is_ok() {
                assert_eq!(
                    chosen(&auto, "pin_user_pages_fast"),
                    Some(HookType::Fentry),
                    "{name}"
                );
            }
            let report = chosen(&auto, "iommu_report_device_fault");
            match name.as_str() {
                "test-6.12" | "test-6.12-arm64" => {
                    // The test kernel has the IOPF core and the uacce drivers.
                    assert!(report.is_some(), "{name}");
                    assert!(chosen(&auto, "iopf_group_response").is_some(), "{name}");
                    assert!(row(&auto, "iommu_page_response").absent, "{name}");
                    for f in uacce_trace_common::hooks::test_kernel_functions() {
                        assert!(auto.params.contains_key(f), "{name}: {f} in BTF");
                    }
                }
                "debian-6.12" | "debian-7.2" => {
                    assert!(report.is_some(), "{name}");
                    assert!(chosen(&auto, "iopf_group_response").is_some(), "{name}");
                    assert!(row(&auto, "iommu_page_response").absent, "{name}");
                    assert!(row(&auto, "uacce_fops_open").absent, "{name}: UACCE off");
                    // The Intel tracepoint is set aside for the core function.
                    let prq = row(&auto, "intel_iommu:prq_report");
                    if !prq.absent {
                        assert_eq!(prq.chosen, None, "{name}");
                    }
                }
                "debian-6.1" => {
                    assert!(report.is_some(), "{name}");
                    assert!(chosen(&auto, "iommu_page_response").is_some(), "{name}");
                    assert!(row(&auto, "iopf_group_response").absent, "{name}");
                    // FOLL_LONGTERM was a #define before 6.3.
                    assert_eq!(auto.foll_longterm.value, Some(0x10000), "{name}");
                }
                "debian-6.12-arm64" => {
                    // IOMMU_IOPF off: the SMMUv3 rows stand in.
                    assert!(row(&auto, "iommu_report_device_fault").absent, "{name}");
                    assert!(
                        chosen(&kprobe, "arm_smmu_page_response").is_some(),
                        "{name}"
                    );
                    assert!(kprobe.plan.summary().contains("iopf_response: kprobe"));
                }
                _ => {
                    // A kernel that allows neither fentry nor kprobes (this
                    // project's sandboxed hosts) cannot trace pins.
                    if facts.fentry.is_err() && facts.kprobes.is_err() {
                        assert!(auto.plan.core_problem().is_some(), "{name}");
                    }
                }
            }
            seen.push(name);
        }
        assert!(seen.iter().any(|n| n.starts_with("debian-")), "{seen:?}");
    }
}
