//! The kernel facts the programs need as numbers: struct offsets from the
//! running kernel's BTF (falling back to the layout that held from 5.x to
//! 7.x; docs/architecture.md, "Hook planning", kernel offsets) and
//! tracepoint field offsets from tracefs `format` files. Each value records
//! where it came from, for `doctor`.
//!
//! Pure: the BTF and format text are arguments. No aya.

use serde::Serialize;
use uacce_trace_common::KernelConfig;

use crate::kernel::btf::Btf;

/// Where one value of the [`KernelConfig`] came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub field: &'static str,
    pub value: u32,
    /// `btf`, `tracefs`, `fallback` or `unknown`.
    pub source: &'static str,
    /// The BTF path or format field used.
    pub from: String,
}

/// The config handed to the programs and how each value was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resolved {
    #[serde(skip)]
    pub config: KernelConfig,
    pub origins: Vec<Origin>,
}

/// Byte offset of a member (`struct`, dotted path) in the kernel's BTF.
pub type MemberOffset<'a> = &'a dyn Fn(&str, &str) -> Option<u32>;

struct Resolver<'a> {
    member: MemberOffset<'a>,
    origins: Vec<Origin>,
}

impl Resolver<'_> {
    /// Sum of member offsets along `(struct, path)` pairs, from BTF, or the
    /// fallback.
    fn offset(&mut self, field: &'static str, chain: &[(&str, &str)], fallback: u32) -> u32 {
        let from = chain
            .iter()
            .map(|(s, p)| format!("{s}.{p}"))
            .collect::<Vec<_>>()
            .join(" + ");
        let found = chain
            .iter()
            .try_fold(0u32, |acc, (s, p)| (self.member)(s, p).map(|o| acc + o));
        let (value, source) = match found {
            Some(v) => (v, "btf"),
            None if fallback == KernelConfig::UNKNOWN => (fallback, "unknown"),
            None => (fallback, "fallback"),
        };
        self.origins.push(Origin {
            field,
            value,
            source,
            from,
        });
        value
    }
}

/// Offset of the first of `containers` that exists in BTF, plus `inner`.
fn first_container<'a>(
    member: MemberOffset<'_>,
    containers: &[(&'a str, &'a str)],
) -> (&'a str, &'a str) {
    containers
        .iter()
        .copied()
        .find(|(s, p)| member(s, p).is_some())
        .unwrap_or(containers[0])
}

/// Resolve every offset from `btf` (if any).
pub fn resolve(
    btf: Option<&Btf>,
    enter_ioctl_format: Option<&str>,
    exit_ioctl_format: Option<&str>,
) -> Resolved {
    let member = |s: &str, p: &str| btf?.member(s, p).map(|m| m.offset_bytes);
    resolve_with(&member, enter_ioctl_format, exit_ioctl_format)
}

/// Resolve every offset from the member offsets `member` answers.
pub fn resolve_with(
    member: MemberOffset<'_>,
    enter_ioctl_format: Option<&str>,
    exit_ioctl_format: Option<&str>,
) -> Resolved {
    let fb = KernelConfig::FALLBACK;
    let mut r = Resolver {
        member,
        origins: Vec::new(),
    };
    // The report argument: `struct iopf_fault` (6.9+) or
    // `struct iommu_fault_event` (≤6.8); both start with `struct iommu_fault fault`.
    let report = first_container(
        member,
        &[("iopf_fault", "fault"), ("iommu_fault_event", "fault")],
    );
    let fault_in_report = r.offset("fault_in_report", &[report], fb.fault_in_report);
    let fault_in_group = r.offset(
        "fault_in_group",
        &[("iopf_group", "last_fault"), ("iopf_fault", "fault")],
        fb.fault_in_group,
    );
    let prm = |r: &mut Resolver, field, member, fallback| {
        r.offset(
            field,
            &[("iommu_fault", "prm"), ("iommu_fault_page_request", member)],
            fallback,
        )
    };
    let prm_flags = prm(&mut r, "prm_flags", "flags", fb.prm_flags);
    let prm_pasid = prm(&mut r, "prm_pasid", "pasid", fb.prm_pasid);
    let prm_grpid = prm(&mut r, "prm_grpid", "grpid", fb.prm_grpid);
    let prm_perm = prm(&mut r, "prm_perm", "perm", fb.prm_perm);
    let prm_addr = prm(&mut r, "prm_addr", "addr", fb.prm_addr);
    let group_fault_param = r.offset(
        "group_fault_param",
        &[("iopf_group", "fault_param")],
        KernelConfig::UNKNOWN,
    );
    let fault_param_dev = r.offset(
        "fault_param_dev",
        &[("iommu_fault_param", "dev")],
        KernelConfig::UNKNOWN,
    );
    let device_name = r.offset(
        "device_name",
        &[("device", "kobj.name")],
        KernelConfig::UNKNOWN,
    );
    let resp_pasid = r.offset(
        "resp_pasid",
        &[("iommu_page_response", "pasid")],
        fb.resp_pasid,
    );
    let resp_grpid = r.offset(
        "resp_grpid",
        &[("iommu_page_response", "grpid")],
        fb.resp_grpid,
    );
    let resp_code = r.offset(
        "resp_code",
        &[("iommu_page_response", "code")],
        fb.resp_code,
    );
    let task_flags = r.offset(
        "task_flags",
        &[("task_struct", "flags")],
        KernelConfig::UNKNOWN,
    );
    // Start-up PASID scan and uacce queues: layouts that depend on the
    // kernel's configuration, so there is no stable fallback (unknown: the
    // programs that need them read nothing).
    let unknown = KernelConfig::UNKNOWN;
    let task_tasks = r.offset("task_tasks", &[("task_struct", "tasks")], unknown);
    let task_group_leader = r.offset(
        "task_group_leader",
        &[("task_struct", "group_leader")],
        unknown,
    );
    let task_tgid = r.offset("task_tgid", &[("task_struct", "tgid")], unknown);
    let task_mm = r.offset("task_mm", &[("task_struct", "mm")], unknown);
    let task_comm = r.offset("task_comm", &[("task_struct", "comm")], unknown);
    // Process tree (`record -- COMMAND`): a thread group ends when
    // `signal->live` drops to 0.
    let task_signal = r.offset("task_signal", &[("task_struct", "signal")], unknown);
    let signal_live = r.offset("signal_live", &[("signal_struct", "live")], unknown);
    // 6.8+ keeps the PASID in `mm->iommu_mm->pasid`, 5.18–6.7 in `mm->pasid`.
    let mm_iommu_mm = r.offset("mm_iommu_mm", &[("mm_struct", "iommu_mm")], unknown);
    let iommu_mm_pasid = r.offset("iommu_mm_pasid", &[("iommu_mm_data", "pasid")], unknown);
    let mm_pasid = r.offset("mm_pasid", &[("mm_struct", "pasid")], unknown);
    let file_private_data = r.offset("file_private_data", &[("file", "private_data")], unknown);
    let queue_pasid = r.offset("queue_pasid", &[("uacce_queue", "pasid")], unknown);
    let queue_uacce = r.offset("queue_uacce", &[("uacce_queue", "uacce")], unknown);
    let uacce_dev = r.offset("uacce_dev", &[("uacce_device", "dev")], unknown);
    let mut tp = |field: &'static str, format: Option<&str>, name: &str, fallback: u32| {
        let found = format.and_then(|f| tracepoint_field_offset(f, name));
        let (value, source) = match found {
            Some(v) => (v, "tracefs"),
            None => (fallback, "fallback"),
        };
        r.origins.push(Origin {
            field,
            value,
            source,
            from: format!("format field {name}"),
        });
        value
    };
    let tp_ioctl_fd = tp("tp_ioctl_fd", enter_ioctl_format, "fd", fb.tp_ioctl_fd);
    let tp_ioctl_cmd = tp("tp_ioctl_cmd", enter_ioctl_format, "cmd", fb.tp_ioctl_cmd);
    let tp_ioctl_arg = tp("tp_ioctl_arg", enter_ioctl_format, "arg", fb.tp_ioctl_arg);
    let tp_exit_ret = tp("tp_exit_ret", exit_ioctl_format, "ret", fb.tp_exit_ret);
    Resolved {
        config: KernelConfig {
            fault_in_report,
            fault_in_group,
            prm_flags,
            prm_pasid,
            prm_grpid,
            prm_perm,
            prm_addr,
            group_fault_param,
            fault_param_dev,
            device_name,
            resp_pasid,
            resp_grpid,
            resp_code,
            task_flags,
            // PF_KTHREAD has been 0x00200000 since 2.6.
            pf_kthread: fb.pf_kthread,
            tp_ioctl_fd,
            tp_ioctl_cmd,
            tp_ioctl_arg,
            tp_exit_ret,
            _pad: 0,
            task_tasks,
            task_group_leader,
            task_tgid,
            task_mm,
            task_comm,
            mm_iommu_mm,
            iommu_mm_pasid,
            mm_pasid,
            file_private_data,
            queue_pasid,
            queue_uacce,
            uacce_dev,
            task_signal,
            signal_live,
            ..fb
        },
        origins: r.origins,
    }
}

/// tracefs `format` texts of the vendor IOPF tracepoints, where they exist.
#[derive(Clone, Copy, Debug, Default)]
pub struct VendorFormats<'a> {
    /// `intel_iommu:prq_report`
    pub prq_report: Option<&'a str>,
    /// `iommu:dev_fault` (vendor trees)
    pub dev_fault: Option<&'a str>,
    /// `iommu:dev_page_response` (vendor trees)
    pub dev_page_response: Option<&'a str>,
}

impl Resolved {
    /// Add the field offsets of the vendor tracepoints that exist; the
    /// others stay unknown (their programs then read nothing).
    pub fn add_vendor_tracepoints(&mut self, f: VendorFormats<'_>) {
        let mut tp = |field: &'static str, format: Option<&str>, names: &[&str]| -> u32 {
            let Some(format) = format else {
                return KernelConfig::UNKNOWN;
            };
            let found = names
                .iter()
                .find_map(|n| tracepoint_field_offset(format, n).map(|o| (o, *n)));
            let (value, source, name) = match found {
                Some((o, n)) => (o, "tracefs", n),
                None => (KernelConfig::UNKNOWN, "unknown", names[0]),
            };
            self.origins.push(Origin {
                field,
                value,
                source,
                from: format!("format field {name}"),
            });
            value
        };
        let c = &mut self.config;
        c.tp_prq_dw0 = tp("tp_prq_dw0", f.prq_report, &["dw0"]);
        c.tp_prq_dw1 = tp("tp_prq_dw1", f.prq_report, &["dw1"]);
        c.tp_prq_dev = tp("tp_prq_dev", f.prq_report, &["dev"]);
        c.tp_fault_pasid = tp("tp_fault_pasid", f.dev_fault, &["pasid"]);
        c.tp_fault_grpid = tp("tp_fault_grpid", f.dev_fault, &["grpid"]);
        c.tp_fault_flags = tp("tp_fault_flags", f.dev_fault, &["flags"]);
        c.tp_fault_perm = tp("tp_fault_perm", f.dev_fault, &["prot", "perm"]);
        c.tp_fault_addr = tp("tp_fault_addr", f.dev_fault, &["addr"]);
        c.tp_fault_dev = tp("tp_fault_dev", f.dev_fault, &["device", "dev"]);
        c.tp_resp_pasid = tp("tp_resp_pasid", f.dev_page_response, &["pasid"]);
        c.tp_resp_grpid = tp("tp_resp_grpid", f.dev_page_response, &["grpid"]);
        c.tp_resp_code = tp("tp_resp_code", f.dev_page_response, &["code"]);
    }

    /// Why the start-up PASID scan cannot run on this kernel, if it cannot:
    /// it needs the task list. (A kernel whose mm has no PASID field, i.e.
    /// without CONFIG_IOMMU_SVA or before 5.18, is still walked: nobody can
    /// hold a PASID there, which the scan then confirms.)
    pub fn scan_problem(&self) -> Option<String> {
        let c = &self.config;
        let unknown = KernelConfig::UNKNOWN;
        let task = [
            c.task_tasks,
            c.task_group_leader,
            c.task_tgid,
            c.task_mm,
            c.task_comm,
        ];
        if task.contains(&unknown) {
            return Some("task_struct offsets unknown (no usable kernel BTF)".into());
        }
        None
    }

    /// Why processes cannot be followed on this kernel (`record --
    /// COMMAND`), if they cannot: the fork program reads the new task's
    /// tgid. (Without `signal_struct.live` a process ends when its leader
    /// thread exits.)
    pub fn follow_problem(&self) -> Option<String> {
        (self.config.task_tgid == KernelConfig::UNKNOWN)
            .then(|| "task_struct.tgid offset unknown (no usable kernel BTF)".into())
    }

    /// Where this kernel keeps an mm's PASID, for `doctor`.
    pub fn pasid_location(&self) -> &'static str {
        let c = &self.config;
        if c.mm_iommu_mm != KernelConfig::UNKNOWN && c.iommu_mm_pasid != KernelConfig::UNKNOWN {
            "mm->iommu_mm->pasid"
        } else if c.mm_pasid != KernelConfig::UNKNOWN {
            "mm->pasid"
        } else {
            "none (no CONFIG_IOMMU_SVA or before 5.18: no process can hold one)"
        }
    }
}

/// Offset of `name` in a tracefs `format` file, e.g. from
/// `\tfield:unsigned int cmd;\toffset:24;\tsize:8;\tsigned:0;`.
pub fn tracepoint_field_offset(format: &str, name: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';');
        let decl = parts.next()?.trim().strip_prefix("field:")?;
        let field_name = decl.split_whitespace().last()?.trim_start_matches('*');
        if field_name != name {
            return None;
        }
        parts.find_map(|p| p.trim().strip_prefix("offset:")?.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTER: &str = "name: sys_enter_ioctl\nID: 1\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\
\tfield:unsigned int fd;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:unsigned int cmd;\toffset:24;\tsize:8;\tsigned:0;\n\
\tfield:unsigned long arg;\toffset:32;\tsize:8;\tsigned:0;\n";

    #[test]
    fn tracepoint_offsets() {
        assert_eq!(tracepoint_field_offset(ENTER, "fd"), Some(16));
        assert_eq!(tracepoint_field_offset(ENTER, "cmd"), Some(24));
        assert_eq!(tracepoint_field_offset(ENTER, "arg"), Some(32));
        assert_eq!(tracepoint_field_offset(ENTER, "ret"), None);
    }

    /// `intel_iommu:prq_report` as in 6.12's drivers/iommu/intel/trace.h.
    const PRQ: &str = "name: prq_report\nID: 1234\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:u64 dw0;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:u64 dw1;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:u64 dw2;\toffset:24;\tsize:8;\tsigned:0;\n\
\tfield:u64 dw3;\toffset:32;\tsize:8;\tsigned:0;\n\
\tfield:unsigned long seq;\toffset:40;\tsize:8;\tsigned:0;\n\
\tfield:__data_loc char[] iommu;\toffset:48;\tsize:4;\tsigned:0;\n\
\tfield:__data_loc char[] dev;\toffset:52;\tsize:4;\tsigned:0;\n";

    #[test]
    fn vendor_tracepoint_offsets_from_their_format() {
        let mut r = resolve(None, None, None);
        r.add_vendor_tracepoints(VendorFormats {
            prq_report: Some(PRQ),
            ..Default::default()
        });
        assert_eq!(
            (
                r.config.tp_prq_dw0,
                r.config.tp_prq_dw1,
                r.config.tp_prq_dev
            ),
            (8, 16, 52)
        );
        // Absent tracepoints stay unknown: their programs read nothing.
        assert_eq!(r.config.tp_fault_pasid, KernelConfig::UNKNOWN);
        assert_eq!(r.config.tp_resp_code, KernelConfig::UNKNOWN);
    }

    #[test]
    fn without_btf_uses_the_stable_layout() {
        let r = resolve(None, None, None);
        assert_eq!(r.config, KernelConfig::FALLBACK);
        assert!(r.origins.iter().all(|o| o.source != "btf"));
        assert_eq!(
            r.scan_problem().as_deref(),
            Some("task_struct offsets unknown (no usable kernel BTF)")
        );
    }

    #[test]
    fn live_btf_agrees_with_the_stable_layout() {
        let btf = match Btf::from_sys_fs() {
            Ok(btf) => btf,
            Err(e) => {
                crate::test_skip::skip(
                    crate::test_skip::Lack::Host,
                    &format!("no readable kernel BTF on this host: {e}"),
                );
                return;
            }
        };
        let r = resolve(Some(&btf), Some(ENTER), None);
        if btf.member("iommu_fault", "prm").is_some() {
            assert_eq!(r.config.prm_pasid, 12);
            assert_eq!(r.config.prm_grpid, 16);
            assert_eq!(r.config.prm_addr, 24);
        }
        assert_ne!(r.config.task_flags, KernelConfig::UNKNOWN);
        assert_ne!(r.config.device_name, KernelConfig::UNKNOWN);
        assert_eq!(r.config.tp_ioctl_cmd, 24);
    }
}
