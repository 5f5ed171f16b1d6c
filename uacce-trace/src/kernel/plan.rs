//! Hook planning as data (docs/architecture.md, "Hook planning").
//!
//! For every event kind an ordered list of candidate hooks; each candidate is
//! checked against [`Facts`] about the running kernel and either kept (in
//! preference order) or rejected with a reason. `source` attaches the first
//! viable candidate and records attach-time failures here too, so `doctor`
//! and `trace` can show exactly why each hook was or was not chosen.
//!
//! Pure: no aya, no I/O. `system` gathers the facts.

use std::{collections::BTreeMap, fmt};

use serde::Serialize;
use uacce_trace_common::{HOOK_FENTRY, HOOK_KPROBE, HOOK_TRACEPOINT};

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
            HOOK_TRACEPOINT => Some(HookType::Tracepoint),
            _ => None,
        }
    }
}

impl fmt::Display for HookType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub use uacce_trace_common::hooks::{preferred_over, EventKind, Hook, HOOKS};

/// The hook types that can serve a catalog entry, in preference order.
pub fn hook_types(entry: &Hook) -> &'static [HookType] {
    if entry.is_tracepoint() {
        &[HookType::Tracepoint]
    } else {
        &[HookType::Fentry, HookType::Kprobe]
    }
}

/// Start of the reason a vendor row was set aside for a core function.
const PREFERRED: &str = "core function ";

fn kind_name<S: serde::Serializer>(kind: &EventKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.name())
}

/// Which hook types the user allows (`--hooks`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HookPreference {
    /// fentry/fexit where permitted, else kprobe/kretprobe.
    #[default]
    Auto,
    /// Only fentry/fexit.
    Fentry,
    /// Only kprobe/kretprobe.
    Kprobe,
}

/// Facts about one kernel function.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SymbolFacts {
    /// A FUNC of this name is in the kernel's BTF.
    pub in_btf: bool,
    /// Listed in /proc/kallsyms as a text symbol.
    pub in_kallsyms: bool,
    /// Listed in tracefs `available_filter_functions`; `None` when that file
    /// could not be read.
    pub traceable: Option<bool>,
    /// Listed in the kprobe blacklist (debugfs `kprobes/blacklist`).
    pub blacklisted: bool,
}

/// What the planner needs to know about the running kernel.
#[derive(Clone, Debug)]
pub struct Facts {
    /// `Ok` when fentry/fexit programs load here, else why not.
    pub fentry: Result<(), String>,
    /// `Ok` when kprobes can be attached here, else why not.
    pub kprobe: Result<(), String>,
    /// Per function name.
    pub symbols: BTreeMap<String, SymbolFacts>,
    /// Tracepoints (`category:name`) that exist, or why they cannot be used.
    pub tracepoints: BTreeMap<String, Result<(), String>>,
}

/// A rejected candidate and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub hook: HookType,
    pub reason: String,
}

/// The plan for one hook target (one kernel function).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedHook {
    #[serde(serialize_with = "kind_name")]
    pub kind: EventKind,
    pub function: &'static str,
    /// The catalog entry planned.
    #[serde(skip)]
    pub entry: &'static Hook,
    /// The hook in use, once attached (or the planner's first choice before).
    pub chosen: Option<HookType>,
    /// Candidates still to try, in order (the first is `chosen`).
    #[serde(skip)]
    pub viable: Vec<HookType>,
    pub rejected: Vec<Rejection>,
    /// The function does not exist in this kernel at all (normal for
    /// variants added or removed in other versions).
    pub absent: bool,
    /// Why a vendor fallback row is in use, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl PlannedHook {
    /// Record that `hook` failed to load or attach and move on to the next
    /// viable candidate.
    pub fn reject_chosen(&mut self, hook: HookType, reason: String) {
        self.viable.retain(|h| *h != hook);
        self.rejected.push(Rejection { hook, reason });
        self.chosen = self.viable.first().copied();
    }
}

/// The whole plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub hooks: Vec<PlannedHook>,
}

fn check(hook: HookType, sym: &SymbolFacts, facts: &Facts) -> Result<(), String> {
    match hook {
        HookType::Fentry => {
            if !sym.in_btf {
                return Err("function not in the kernel's BTF".into());
            }
            facts
                .fentry
                .clone()
                .map_err(|why| format!("fentry unavailable: {why}"))
        }
        HookType::Kprobe => {
            facts
                .kprobe
                .clone()
                .map_err(|why| format!("kprobes unavailable: {why}"))?;
            if !sym.in_kallsyms && sym.traceable != Some(true) {
                return Err("symbol not in /proc/kallsyms".into());
            }
            if sym.blacklisted {
                return Err("symbol is on the kprobe blacklist".into());
            }
            if sym.traceable == Some(false) {
                return Err("symbol not in available_filter_functions (notrace or inlined)".into());
            }
            Ok(())
        }
        HookType::Tracepoint => Err("no tracepoint exists for this event".into()),
    }
}

fn check_tracepoint(function: &str, facts: &Facts) -> Result<(), String> {
    match facts.tracepoints.get(function) {
        Some(r) => r.clone(),
        None => Err("tracepoint not found in tracefs".into()),
    }
}

/// Build the plan from the facts and the user's preference.
pub fn plan(facts: &Facts, pref: HookPreference) -> Plan {
    let mut hooks = Vec::new();
    for entry in HOOKS {
        let function = entry.target;
        let is_tracepoint = entry.is_tracepoint();
        let sym = facts.symbols.get(function).cloned().unwrap_or_default();
        let absent = if is_tracepoint {
            matches!(facts.tracepoints.get(function), Some(Err(_)))
        } else {
            !sym.in_btf && !sym.in_kallsyms && sym.traceable != Some(true)
        };
        let mut viable = Vec::new();
        let mut rejected = Vec::new();
        for &hook in hook_types(entry) {
            let allowed = match pref {
                // Tracepoints are not a choice: they are the only hook of
                // their targets.
                _ if hook == HookType::Tracepoint => true,
                HookPreference::Auto => true,
                HookPreference::Fentry => hook == HookType::Fentry,
                HookPreference::Kprobe => hook == HookType::Kprobe,
            };
            let verdict = if absent && !is_tracepoint {
                Err("function not in this kernel".to_string())
            } else if !allowed {
                Err(format!("not allowed by --hooks {}", pref_name(pref)))
            } else if is_tracepoint {
                check_tracepoint(function, facts)
            } else {
                check(hook, &sym, facts)
            };
            match verdict {
                Ok(()) => viable.push(hook),
                Err(reason) => rejected.push(Rejection { hook, reason }),
            }
        }
        hooks.push(PlannedHook {
            kind: entry.kind,
            function,
            entry,
            chosen: viable.first().copied(),
            viable,
            rejected,
            absent,
            note: None,
        });
    }
    let mut plan = Plan { hooks };
    plan.settle_vendor_rows();
    plan
}

fn pref_name(pref: HookPreference) -> &'static str {
    match pref {
        HookPreference::Auto => "auto",
        HookPreference::Fentry => "fentry",
        HookPreference::Kprobe => "kprobe",
    }
}

impl Plan {
    /// Which core function (if any) makes the vendor row `function`
    /// unnecessary: one of [`preferred_over`] that has a hook.
    pub fn core_hooked_instead_of(&self, function: &str) -> Option<&'static str> {
        let core = preferred_over(function);
        self.hooks
            .iter()
            .find(|h| core.contains(&h.function) && h.chosen.is_some())
            .map(|h| h.function)
    }

    /// Drop vendor rows whose core functions are hooked, saying so; a
    /// vendor row stays (and says why) only where the core has no hook.
    /// Called after planning and again by `source` after attaching the core
    /// rows, so an attach failure of the core brings the vendor row in.
    pub fn settle_vendor_rows(&mut self) {
        let decisions: Vec<(usize, Option<&'static str>)> = self
            .hooks
            .iter()
            .enumerate()
            .filter(|(_, h)| !preferred_over(h.function).is_empty())
            .map(|(i, h)| (i, self.core_hooked_instead_of(h.function)))
            .collect();
        for (i, core) in decisions {
            let h = &mut self.hooks[i];
            match core {
                Some(core) if h.chosen.is_some() => {
                    // `viable` is kept: `reconsider_vendor_row` brings the
                    // row back if the core fails to attach.
                    let reason = format!("{PREFERRED}{core} is hooked and preferred");
                    for &hook in &h.viable {
                        h.rejected.push(Rejection {
                            hook,
                            reason: reason.clone(),
                        });
                    }
                    h.chosen = None;
                }
                None if h.chosen.is_some() => {
                    h.note = Some(format!(
                        "used because no core function ({}) could be hooked",
                        preferred_over(h.function).join(", ")
                    ));
                }
                _ => {}
            }
        }
    }

    /// `trace --vendor-report` (a test of the fallback, hidden): the core
    /// IOPF report functions that a vendor row stands in for are left
    /// unhooked, so that the vendor row (e.g. `intel_iommu:prq_report`)
    /// reports instead, as on a kernel whose core function cannot be
    /// hooked; [`Plan::reconsider_vendor_row`] brings it in at attach.
    pub fn set_aside_core_reports(&mut self) {
        let cores: Vec<&'static str> = self
            .hooks
            .iter()
            .filter(|h| h.kind == EventKind::IopfReport)
            .flat_map(|h| preferred_over(h.function).iter().copied())
            .collect();
        for h in self
            .hooks
            .iter_mut()
            .filter(|h| cores.contains(&h.function))
        {
            while let Some(chosen) = h.chosen {
                h.reject_chosen(chosen, "set aside by --vendor-report".into());
            }
        }
    }

    /// Before attaching row `i`: a vendor row set aside for its core
    /// functions is taken back when none of them ended up hooked.
    pub fn reconsider_vendor_row(&mut self, i: usize) {
        let Some(function) = self.hooks.get(i).map(|h| h.function) else {
            return;
        };
        if preferred_over(function).is_empty() || self.core_hooked_instead_of(function).is_some() {
            return;
        }
        let h = &mut self.hooks[i];
        if h.chosen.is_some() || h.viable.is_empty() {
            return;
        }
        h.rejected.retain(|r| !r.reason.starts_with(PREFERRED));
        h.chosen = h.viable.first().copied();
        h.note = Some(format!(
            "used because no core function ({}) could be hooked",
            preferred_over(function).join(", ")
        ));
    }

    /// Hooks that have a chosen hook type.
    pub fn chosen(&self) -> impl Iterator<Item = &PlannedHook> {
        self.hooks.iter().filter(|h| h.chosen.is_some())
    }

    /// Why the core events cannot be traced, if they cannot: at least one
    /// pin and one unpin function must be hooked.
    pub fn core_problem(&self) -> Option<String> {
        let mut missing = Vec::new();
        for kind in [EventKind::Pin, EventKind::Unpin] {
            if !self.chosen().any(|h| h.kind == kind) {
                missing.push(kind.name());
            }
        }
        if missing.is_empty() {
            return None;
        }
        // The same reason usually applies to every function: say it once.
        let mut reasons: Vec<String> = Vec::new();
        for h in self
            .hooks
            .iter()
            .filter(|h| !h.absent && missing.contains(&h.kind.name()))
        {
            for r in &h.rejected {
                if !reasons.contains(&r.reason) {
                    reasons.push(r.reason.clone());
                }
            }
        }
        Some(format!(
            "no usable hook for {} events{}",
            missing.join(" and "),
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join("; "))
            }
        ))
    }

    /// One-line summary per kind, e.g. `pin: kprobe · unpin: fentry+kprobe`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for kind in EventKind::ALL {
            let mut types: Vec<&str> = self
                .chosen()
                .filter(|h| h.kind == kind)
                .filter_map(|h| h.chosen.map(HookType::name))
                .collect();
            types.sort_unstable();
            types.dedup();
            let chosen = if types.is_empty() {
                "none".to_string()
            } else {
                types.join("+")
            };
            parts.push(format!("{}: {}", kind.name(), chosen));
        }
        // Only where processes are followed (`record -- COMMAND`).
        if self.chosen().any(|h| h.kind == EventKind::Process) {
            parts.push(format!("{}: tracepoint", EventKind::Process.name()));
        }
        parts.join(" · ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(fentry: bool, kprobe: bool) -> Facts {
        let mut symbols = BTreeMap::new();
        for f in [
            "pin_user_pages",
            "pin_user_pages_fast",
            "unpin_user_page",
            "unpin_user_pages",
        ] {
            symbols.insert(
                f.to_string(),
                SymbolFacts {
                    in_btf: true,
                    in_kallsyms: true,
                    traceable: Some(true),
                    blacklisted: false,
                },
            );
        }
        let mut tracepoints = BTreeMap::new();
        tracepoints.insert("syscalls:sys_enter_ioctl".to_string(), Ok(()));
        Facts {
            tracepoints,
            fentry: if fentry {
                Ok(())
            } else {
                Err("BPF_PROG_LOAD of a fentry program: EPERM".into())
            },
            kprobe: if kprobe {
                Ok(())
            } else {
                Err("no kprobe PMU".into())
            },
            symbols,
        }
    }

    /// The index of `f`'s row in the plan.
    fn row(p: &Plan, f: &str) -> usize {
        p.hooks
            .iter()
            .position(|h| h.function == f)
            .expect("planned")
    }

    fn hook<'a>(p: &'a Plan, f: &str) -> &'a PlannedHook {
        p.hooks
            .iter()
            .find(|h| h.function == f)
            .expect("function planned")
    }

    #[test]
    fn prefers_fentry_and_falls_back_to_kprobe() {
        let p = plan(&facts(true, true), HookPreference::Auto);
        assert_eq!(
            hook(&p, "pin_user_pages_fast").chosen,
            Some(HookType::Fentry)
        );
        let p = plan(&facts(false, true), HookPreference::Auto);
        let h = hook(&p, "pin_user_pages_fast");
        assert_eq!(h.chosen, Some(HookType::Kprobe));
        assert_eq!(h.rejected.len(), 1);
        assert!(h.rejected[0].reason.contains("EPERM"));
        assert_eq!(p.core_problem(), None);
        assert_eq!(
            p.summary(),
            "pin: kprobe · unpin: kprobe · iopf_report: none · iopf_response: none · \
             uacce_ctrl: tracepoint · pasid_bind: none · pasid_unbind: none · uacce_queue: none"
        );
    }

    #[test]
    fn absent_functions_are_marked_not_errors() {
        let p = plan(&facts(true, true), HookPreference::Auto);
        let h = hook(&p, "unpin_user_folio");
        assert!(h.absent);
        assert_eq!(h.chosen, None);
        assert!(h
            .rejected
            .iter()
            .all(|r| r.reason == "function not in this kernel"));
    }

    #[test]
    fn forced_hook_type_is_respected_and_explained() {
        let p = plan(&facts(true, true), HookPreference::Kprobe);
        let h = hook(&p, "pin_user_pages");
        assert_eq!(h.chosen, Some(HookType::Kprobe));
        assert_eq!(h.rejected[0].reason, "not allowed by --hooks kprobe");
        assert_eq!(
            hook(&p, "syscalls:sys_enter_ioctl").chosen,
            Some(HookType::Tracepoint)
        );
        let p = plan(&facts(false, true), HookPreference::Fentry);
        let problem = p.core_problem().expect("nothing usable");
        assert_eq!(
            problem,
            "no usable hook for pin and unpin events (fentry unavailable: \
             BPF_PROG_LOAD of a fentry program: EPERM; not allowed by --hooks fentry)"
        );
    }

    #[test]
    fn blacklisted_and_untraceable_symbols_are_rejected() {
        let mut f = facts(false, true);
        if let Some(s) = f.symbols.get_mut("pin_user_pages") {
            s.blacklisted = true;
        }
        if let Some(s) = f.symbols.get_mut("unpin_user_pages") {
            s.traceable = Some(false);
        }
        let p = plan(&f, HookPreference::Auto);
        assert_eq!(hook(&p, "pin_user_pages").chosen, None);
        assert!(hook(&p, "pin_user_pages").rejected[1]
            .reason
            .contains("blacklist"));
        assert!(hook(&p, "unpin_user_pages").rejected[1]
            .reason
            .contains("available_filter_functions"));
    }

    #[test]
    fn iopf_response_follows_the_kernel_era() {
        // 6.1: iommu_page_response exists, iopf_group_response does not.
        let mut f = facts(true, true);
        for name in ["iommu_report_device_fault", "iommu_page_response"] {
            f.symbols.insert(
                name.to_string(),
                SymbolFacts {
                    in_btf: true,
                    in_kallsyms: true,
                    traceable: Some(true),
                    blacklisted: false,
                },
            );
        }
        let p = plan(&f, HookPreference::Kprobe);
        assert_eq!(
            hook(&p, "iommu_page_response").chosen,
            Some(HookType::Kprobe)
        );
        assert!(hook(&p, "iopf_group_response").absent);
        assert!(p.summary().contains("iopf_response: kprobe"));
        // A missing tracepoint is reported as such.
        f.tracepoints.insert(
            "syscalls:sys_enter_ioctl".into(),
            Err("no syscall tracepoints".into()),
        );
        let p = plan(&f, HookPreference::Auto);
        assert_eq!(hook(&p, "syscalls:sys_enter_ioctl").chosen, None);
    }

    #[test]
    fn smmu_rows_only_where_the_core_is_missing() {
        let present = SymbolFacts {
            in_btf: true,
            in_kallsyms: true,
            traceable: Some(true),
            blacklisted: false,
        };
        // Debian's arm64 6.12: SMMUv3 built in, IOMMU_IOPF off, so the
        // core report/response functions do not exist.
        let mut f = facts(true, true);
        for name in ["arm_smmu_handle_evt", "arm_smmu_page_response"] {
            f.symbols.insert(name.to_string(), present.clone());
        }
        let p = plan(&f, HookPreference::Kprobe);
        for name in ["arm_smmu_handle_evt", "arm_smmu_page_response"] {
            let h = hook(&p, name);
            assert_eq!(h.chosen, Some(HookType::Kprobe), "{name}");
            assert!(h
                .note
                .as_deref()
                .is_some_and(|n| n.contains("no core function")));
        }
        assert!(hook(&p, "arm_smmu_handle_event").absent);
        assert_eq!(hook(&p, "arm_smmu_handle_evt").entry.base, "smmu_evt");
        assert!(p.summary().contains("iopf_report: kprobe"));
        assert!(p.summary().contains("iopf_response: kprobe"));
        // With IOMMU_IOPF (SVA on): the core functions win.
        for name in ["iommu_report_device_fault", "iopf_group_response"] {
            f.symbols.insert(name.to_string(), present.clone());
        }
        let p = plan(&f, HookPreference::Auto);
        assert_eq!(
            hook(&p, "iommu_report_device_fault").chosen,
            Some(HookType::Fentry)
        );
        for name in ["arm_smmu_handle_evt", "arm_smmu_page_response"] {
            let h = hook(&p, name);
            assert_eq!(h.chosen, None, "{name}");
            assert!(h
                .rejected
                .iter()
                .any(|r| r.reason.contains("is hooked and preferred")));
        }
    }

    fn sym() -> SymbolFacts {
        SymbolFacts {
            in_btf: true,
            in_kallsyms: true,
            traceable: Some(true),
            blacklisted: false,
        }
    }

    #[test]
    fn vendor_tracepoints_only_without_the_core_functions() {
        // Intel 6.12: the core report function and prq_report both exist.
        let mut f = facts(true, true);
        f.symbols.insert("iommu_report_device_fault".into(), sym());
        f.tracepoints
            .insert("intel_iommu:prq_report".into(), Ok(()));
        f.tracepoints.insert(
            "iommu:dev_fault".into(),
            Err("tracepoint not in this kernel (no format file in tracefs)".into()),
        );
        let p = plan(&f, HookPreference::Auto);
        let prq = hook(&p, "intel_iommu:prq_report");
        assert_eq!(prq.chosen, None);
        assert_eq!(
            prq.rejected[0].reason,
            "core function iommu_report_device_fault is hooked and preferred"
        );
        assert!(hook(&p, "iommu:dev_fault").absent);
        assert_eq!(
            hook(&p, "iommu_report_device_fault").chosen,
            Some(HookType::Fentry)
        );
        // The core fails to attach: the vendor row comes back, saying why.
        let mut p = p;
        let core = row(&p, "iommu_report_device_fault");
        p.hooks[core].reject_chosen(HookType::Fentry, "attach: EBUSY".into());
        p.hooks[core].reject_chosen(HookType::Kprobe, "attach: ENOENT".into());
        let i = row(&p, "intel_iommu:prq_report");
        p.reconsider_vendor_row(i);
        let prq = &p.hooks[i];
        assert_eq!(prq.chosen, Some(HookType::Tracepoint));
        assert!(prq.rejected.is_empty());
        assert_eq!(
            prq.note.as_deref(),
            Some("used because no core function (iommu_report_device_fault) could be hooked")
        );
        // --vendor-report: the core report function is set aside and the
        // vendor row reports; the response side keeps its core function.
        let mut f2 = facts(true, true);
        f2.symbols.insert("iommu_report_device_fault".into(), sym());
        f2.symbols.insert("iopf_group_response".into(), sym());
        f2.tracepoints
            .insert("intel_iommu:prq_report".into(), Ok(()));
        let mut p = plan(&f2, HookPreference::Auto);
        p.set_aside_core_reports();
        assert_eq!(hook(&p, "iommu_report_device_fault").chosen, None);
        assert!(hook(&p, "iommu_report_device_fault")
            .rejected
            .iter()
            .any(|r| r.reason == "set aside by --vendor-report"));
        assert_eq!(
            hook(&p, "iopf_group_response").chosen,
            Some(HookType::Fentry)
        );
        let i = row(&p, "intel_iommu:prq_report");
        p.reconsider_vendor_row(i);
        assert_eq!(p.hooks[i].chosen, Some(HookType::Tracepoint));
        // A kernel without the core function (e.g. its IOPF path compiled
        // out) uses the tracepoint from the start.
        let mut f = facts(false, true);
        f.tracepoints
            .insert("intel_iommu:prq_report".into(), Ok(()));
        let p = plan(&f, HookPreference::Auto);
        assert_eq!(
            hook(&p, "intel_iommu:prq_report").chosen,
            Some(HookType::Tracepoint)
        );
        assert!(p.summary().contains("iopf_report: tracepoint"));
    }

    #[test]
    fn uacce_symbols_where_they_exist() {
        let mut f = facts(false, true);
        for name in [
            "uacce_ctrl_unl_ioctl",
            "uacce_pin_page",
            "uacce_unpin_page",
            "uacce_fops_open",
            "uacce_fops_release",
            "uacce_fops_unl_ioctl",
        ] {
            f.symbols.insert(name.into(), sym());
        }
        let p = plan(&f, HookPreference::Auto);
        for name in ["uacce_ctrl_unl_ioctl", "uacce_pin_page", "uacce_fops_open"] {
            assert_eq!(hook(&p, name).chosen, Some(HookType::Kprobe), "{name}");
        }
        // The tracepoint stays: it keeps the mempinfd ioctls.
        assert_eq!(
            hook(&p, "syscalls:sys_enter_ioctl").chosen,
            Some(HookType::Tracepoint)
        );
        assert!(p.summary().ends_with("uacce_queue: kprobe"));
        // Stock kernels have none of them: absent, not errors.
        let p = plan(&facts(false, true), HookPreference::Auto);
        assert!(hook(&p, "uacce_ctrl_unl_ioctl").absent);
        assert!(hook(&p, "uacce_fops_open").absent);
    }

    #[test]
    fn attach_failure_moves_to_next_candidate() {
        let mut p = plan(&facts(true, true), HookPreference::Auto);
        let h = p
            .hooks
            .iter_mut()
            .find(|h| h.function == "pin_user_pages")
            .expect("planned");
        h.reject_chosen(HookType::Fentry, "attach: EBUSY".into());
        assert_eq!(h.chosen, Some(HookType::Kprobe));
        h.reject_chosen(HookType::Kprobe, "attach: ENOENT".into());
        assert_eq!(h.chosen, None);
        assert_eq!(h.rejected.len(), 2);
    }
}
