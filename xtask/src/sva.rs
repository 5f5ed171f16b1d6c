//! `cargo xtask sva`: boots the test kernel on the patched QEMU of
//! `cargo xtask qemu` (an Intel IOMMU with `svm=on` and the
//! `uacce-sva-test` accelerator, [`qemu::SVA_MACHINE_ARGS`]) and checks the
//! real SVA path without the tool: the IOMMU advertises what SVA needs, the
//! guest driver (`xtask/kernel/uacce_sva_test/`) binds the device to uacce
//! with SVA, and `sva-workload` (`xtask/kernel/sva_workload.c`) gets one
//! page request per absent page, reported through
//! `iommu_report_device_fault` from the page request IRQ thread and
//! answered once each, and none after pinning through `/dev/uacce_ctrl`;
//! two processes at once too. A thin scenario on [`crate::vm`]: `/init` is
//! `xtask/vm-guest/sva.sh`, whose `check <name> ok|FAIL` lines come back
//! as console section `sva`.
//!
//! Then the tool on that machine ([`tool_run`], unless `--no-tool`): per
//! hook type of `--hooks` (fentry and kprobe), `uacce-trace trace --json`
//! attached before the same workloads and started while a fourth one
//! already holds its PASID (it faults once the tool runs), its events
//! checked against what the workloads measured themselves: each process's
//! SVA bind seen with its PASID (two processes at once: two PASIDs; the
//! fourth's PASID found by the start-up scan instead), every page of its fault
//! phase reported once, attributed to it through that PASID (the reports
//! come from the page request IRQ thread: the ftrace check above), inside
//! its fault phase's brackets and answered (successfully) inside them too,
//! none in its pinned phase, and the pages of its pin calls equal to the
//! `nr_foll_pin_acquired` rise it measured. Both clocks are the guest's
//! CLOCK_MONOTONIC (bpf_ktime_get_ns, clock_gettime), so the brackets
//! are exact: no tolerance.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::base::{cache, fs::remove_if_exists, Arch};
use crate::toolchain::setup::{self, Need};
use crate::vm::console::{self, json_lines, kv, u};
use crate::vm::image::GUEST_TOOL;
use crate::vm::{guest, image, programs, qemu, Hooks};

/// The guest script.
const SCRIPT: &str = include_str!("../vm-guest/sva.sh");
/// Where the guest finds the workload.
const GUEST_SVA: &str = "/usr/bin/sva-workload";
/// Seconds the tool may take to start tracing (loading and attaching its
/// programs under TCG takes a few; vm-test allows the same).
const TRACE_START_TIMEOUT_S: u32 = 60;

/// Command-line flags of `cargo xtask sva`.
#[derive(Debug, clap::Args)]
pub struct SvaArgs {
    /// Pages each workload phase touches (one page request each).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pages: u32,
    /// Seconds the VM may run before QEMU is killed.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Hook types `uacce-trace trace` runs with on that machine, one after
    /// the other in the same VM (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Hooks::Fentry, Hooks::Kprobe])]
    hooks: Vec<Hooks>,
    /// Only the machine's own checks, without the tool (nothing is built
    /// with cargo).
    #[arg(long)]
    no_tool: bool,
    /// Leave out the extra run with the first hook type and
    /// `trace --vendor-report` (the core report function unhooked, so that
    /// the `intel_iommu:prq_report` row reports).
    #[arg(long)]
    no_vendor_report: bool,
    /// Use the binaries already in target/release instead of building.
    #[arg(long)]
    no_build: bool,
}

impl SvaArgs {
    /// Options from `sva` command-line arguments (for `cargo xtask test`).
    pub fn parse_from(args: &[&str]) -> Result<Self> {
        crate::base::parse_args("sva", args)
    }

    /// The tool's runs, in order; none with `--no-tool`.
    fn tool_runs(&self) -> Vec<ToolRun> {
        if self.no_tool {
            return Vec::new();
        }
        let mut runs: Vec<ToolRun> = self
            .hooks
            .iter()
            .map(|&hooks| ToolRun {
                hooks,
                vendor: false,
            })
            .collect();
        if let (Some(&hooks), false) = (self.hooks.first(), self.no_vendor_report) {
            runs.push(ToolRun {
                hooks,
                vendor: true,
            });
        }
        runs
    }
}

/// One run of the tool in the SVA VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ToolRun {
    hooks: Hooks,
    /// `--vendor-report`: the IO page faults come from the
    /// `intel_iommu:prq_report` tracepoint instead of the core function.
    vendor: bool,
}

impl ToolRun {
    /// Its name in the guest's `HOOKS` and in the section names.
    fn name(self) -> String {
        if self.vendor {
            format!("{}-vendor", self.hooks.as_str())
        } else {
            self.hooks.as_str().to_owned()
        }
    }

    /// The hook type of the `iopf_report` row its plan must show: the
    /// fault events name the response's hook, so the report side is
    /// checked on the "tracing started" line.
    fn report_hook(self) -> &'static str {
        if self.vendor {
            "tracepoint"
        } else {
            self.hooks.as_str()
        }
    }
}

/// The `/init` of the SVA VM; `runs` empty: without the tool.
fn init_script(pages: u32, runs: &[ToolRun]) -> String {
    let tool = if runs.is_empty() { "" } else { GUEST_TOOL };
    let hooks: Vec<String> = runs.iter().map(|r| r.name()).collect();
    guest::init(
        "sva",
        &[
            ("SVA", GUEST_SVA.into()),
            ("PAGES", pages.to_string()),
            ("TOOL", tool.into()),
            ("HOOKS", hooks.join(" ")),
            ("START_TICKS", (TRACE_START_TIMEOUT_S * 10).to_string()),
        ],
        SCRIPT,
    )
}

/// `cargo xtask sva`: Ok(true) when every check passed.
pub fn run(args: &SvaArgs) -> Result<bool> {
    let hooks = args.tool_runs();
    setup::ensure(&[Need::Packages(&["busybox-static", "gzip"])])?;
    if !hooks.is_empty() && !args.no_build {
        setup::ensure(&[Need::BpfToolchain])?;
    }
    let built = if hooks.is_empty() {
        None
    } else {
        Some(crate::vm::build(false, args.no_build)?)
    };
    let qemu_program = crate::qemu::ensure_qemu()?;
    let kernel_dir = crate::kernel::ensure_test_kernel()?;
    let work = cache::vm_work()?.join("sva");
    remove_if_exists(&work)?;
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let base = work.join("base.cpio.gz");
    let base_raw = match &built {
        Some((tool, workload)) => image::base_archive(&image::BaseContents {
            tool: tool.as_deref(),
            workload,
        })?,
        None => image::busybox_archive(Arch::host())?.finish(),
    };
    image::write_gzip(&base_raw, &base)?;
    let programs = programs::ensure(&kernel_dir, Arch::host())?;
    let extra: Vec<(PathBuf, &str)> = vec![(programs.sva(), GUEST_SVA)];
    let initrd = work.join("initrd.gz");
    image::write_vm_image_with(&base, &init_script(args.pages, &hooks), &extra, &initrd)?;

    let log = work.join("console.log");
    eprintln!(
        "sva: booting on {} (TCG), console in {}",
        qemu_program.display(),
        log.display()
    );
    let timeout = Duration::from_secs(args.timeout);
    let boot = qemu::boot_sva(
        &qemu_program,
        &kernel_dir.join("bzImage"),
        &initrd,
        &log,
        timeout,
    )?;
    let text = fs::read(&log).with_context(|| format!("reading {}", log.display()))?;
    let console = console::parse(&String::from_utf8_lossy(&text));
    let lines = console.lines("sva");
    for line in lines {
        eprintln!("sva: {line}");
    }
    let mut failed: Vec<String> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("check "))
        .filter_map(|c| c.rsplit_once(' '))
        .filter(|(_, verdict)| *verdict != "ok")
        .map(|(name, _)| name.to_owned())
        .collect();
    let checks = lines.iter().filter(|l| l.starts_with("check ")).count();
    if !lines.iter().any(|l| l == "done") {
        failed.push("the guest did not finish".to_owned());
    }
    for section in ["sva-a", "sva-b", "sva-c"] {
        match workload(&console, section, args.pages) {
            Ok(summary) => eprintln!("sva: {section}: {summary}"),
            Err(e) => failed.push(format!("{section}: {e}")),
        }
    }
    for run in hooks.iter().filter(|r| !r.vendor) {
        match doctor_plan(&console, run.hooks.as_str()) {
            Ok(summary) => eprintln!("sva: doctor {}: {summary}", run.hooks.as_str()),
            Err(e) => failed.push(format!("doctor {}: {e:#}", run.hooks.as_str())),
        }
    }
    for run in &hooks {
        let name = run.name();
        match tool_run(
            &console,
            &name,
            run.hooks.as_str(),
            run.report_hook(),
            args.pages,
        ) {
            Ok(summary) => eprintln!("sva: tool {name}: {summary}"),
            Err(e) => {
                for line in console.lines(&format!("tool-{name}-err")) {
                    eprintln!("sva: tool {name} stderr: {line}");
                }
                failed.push(format!("tool {name}: {e:#}"));
            }
        }
    }
    let how = match boot.status {
        Some(s) => format!(
            "QEMU exited ({s}) after {:.1} s",
            boot.elapsed.as_secs_f64()
        ),
        None => format!("QEMU killed after the {}-s limit", timeout.as_secs()),
    };
    if checks == 0 || !failed.is_empty() {
        eprintln!(
            "sva: FAIL ({how}; {} failed of {checks} checks: {}); console in {}",
            failed.len(),
            failed.join(", "),
            log.display()
        );
        return Ok(false);
    }
    eprintln!(
        "sva: ok ({checks} checks and 3 workloads; {} run(s) of the tool; {how})",
        hooks.len()
    );
    Ok(true)
}

/// The most faults of a pass (64) whose vendor report may come late.
const MAX_LATE_REPORTS: u64 = 8;

/// The tool's closing ledger (`stopped`): d's unbind at its exit, whose
/// bind came before the tool started (`unbind_unknown`), and nothing else,
/// but with the `intel_iommu:prq_report` row (`vendor`) faults whose report
/// came after their response. The kernel fires that tracepoint after
/// `intel_prq_report()` has handed the fault on (drivers/iommu/intel/prq.c),
/// so the iopf worker on another CPU may answer it first: the response is
/// then counted `iopf_response_without_report` and the report, left
/// waiting, `iopf_pending_at_exit` or `iopf_unanswered`, one of each per
/// such fault (2 of 256 faults of four vendor passes on 2026-12-03). Returns
/// how many.
fn late_vendor_reports(stopped: &Value, vendor: bool) -> Result<u64> {
    let losses = stopped.get("losses").and_then(Value::as_object);
    let loss = |k: &str| {
        losses
            .and_then(|l| l.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let late = if vendor {
        loss("iopf_response_without_report")
    } else {
        0
    };
    let known = [
        "unbind_unknown",
        "iopf_response_without_report",
        "iopf_pending_at_exit",
        "iopf_unanswered",
    ];
    let others = losses.is_some_and(|l| l.keys().any(|k| !known.contains(&k.as_str())));
    if others
        || loss("unbind_unknown") != 1
        || loss("iopf_pending_at_exit") + loss("iopf_unanswered") != late
        || late > MAX_LATE_REPORTS
        || u(stopped, "dropped") != Some(1 + 2 * late)
    {
        bail!(
            "the tool lost events (want only d's unbind_unknown{}): {stopped}",
            if vendor {
                ", and with the vendor row as many responses without a report as late reports"
            } else {
                ""
            }
        );
    }
    Ok(late)
}

/// The rows of the Intel SVA path that `doctor`'s plan must show on this
/// machine, each attached with the hook type asked for: (event, function).
const DOCTOR_ROWS: [(&str, &str); 5] = [
    ("iopf_report", "iommu_report_device_fault"),
    ("iopf_response", "iopf_group_response"),
    ("pasid_bind", "iommu_sva_get_pasid"),
    ("pasid_unbind", "iommu_sva_unbind_device"),
    ("uacce_queue", "uacce_fops_open"),
];

/// `doctor --hooks HOOKS` on the SVA machine: it exits 0, its plan hooks
/// the Intel path's core rows with that hook type, keeps
/// `intel_iommu:prq_report` as the set-aside vendor row, and says which
/// attribution sources and report paths are proven in emulation.
fn doctor_plan(console: &console::Console, hooks: &str) -> Result<String> {
    let rc = console
        .lines("sva")
        .iter()
        .find_map(|l| l.strip_prefix(&format!("doctor hooks={hooks} rc=")))
        .context("no `doctor` line from the guest")?
        .to_owned();
    if rc != "0" {
        bail!("doctor exited {rc}");
    }
    let text = console.lines(&format!("doctor-{hooks}"));
    let row = |event: &str, function: &str| {
        text.iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.len() >= 3 && w[0] == event && w[1] == function)
            .map(|w| w[2].to_owned())
    };
    for (event, function) in DOCTOR_ROWS {
        match row(event, function) {
            Some(h) if h == hooks => {}
            Some(h) => bail!("doctor's plan hooks {event} {function} with {h}, not {hooks}"),
            None => bail!("doctor's plan has no row {event} {function}"),
        }
    }
    if row("iopf_report", "intel_iommu:prq_report").as_deref() != Some("NONE") {
        bail!("doctor's plan does not keep intel_iommu:prq_report as the set-aside vendor row");
    }
    for claim in [
        "SVA bind/unbind hooks    proven in emulation",
        "Intel VT-d page requests",
    ] {
        if !text.iter().any(|l| l.contains(claim)) {
            bail!("doctor does not say `{claim}`");
        }
    }
    Ok(format!(
        "{} Intel SVA rows hooked with {hooks}, intel_iommu:prq_report set aside",
        DOCTOR_ROWS.len()
    ))
}

/// One workload's phases, checked against what it measured itself: every
/// page of the fault phase asked for once, none of the pinned phase, the
/// pin moved `nr_foll_pin_acquired` by the page count; a summary line.
fn workload(console: &console::Console, section: &str, pages: u32) -> Result<String> {
    let lines = json_lines(console, section);
    let phase = |name: &str| -> Result<&Value> {
        lines
            .iter()
            .find(|l| l.get("sva_phase").and_then(Value::as_str) == Some(name))
            .with_context(|| format!("no {name} phase line"))
    };
    let fault = phase("fault")?;
    let pinned = phase("pinned")?;
    let reqs = |l: &Value| u(l, "page_requests").unwrap_or(u64::MAX);
    let span_us = |l: &Value| {
        u(l, "t1_ns")
            .zip(u(l, "t0_ns"))
            .map_or(0, |(a, b)| a.saturating_sub(b) / 1000)
    };
    if reqs(fault) != u64::from(pages) {
        bail!("fault phase: {} page requests, not {pages}", reqs(fault));
    }
    if reqs(pinned) != 0 {
        bail!("pinned phase: {} page requests, not 0", reqs(pinned));
    }
    // Two processes pin at once in sva-b and sva-c: the guest checks the
    // sum of their pins instead.
    if section == "sva-a" && u(pinned, "pinned_pages") != Some(u64::from(pages)) {
        bail!(
            "the pin moved nr_foll_pin_acquired by {:?}, not {pages}",
            u(pinned, "pinned_pages")
        );
    }
    let ok = lines
        .iter()
        .any(|l| l.get("sva_workload").and_then(Value::as_str) == Some("ok"));
    if !ok {
        bail!("the workload did not end with \"ok\"");
    }
    Ok(format!(
        "{pages} faults in {} us ({} us per fault), pinned run {} us",
        span_us(fault),
        span_us(fault) / u64::from(pages),
        span_us(pinned)
    ))
}

/// One workload of a tool run: its pid and its phases' lines.
struct Run {
    pid: u64,
    fault: Value,
    pinned: Value,
}

/// The workload lines of section `section`, which must have ended "ok".
fn run_of(console: &console::Console, section: &str) -> Result<Run> {
    let lines = json_lines(console, section);
    let phase = |name: &str| -> Result<Value> {
        lines
            .iter()
            .find(|l| l.get("sva_phase").and_then(Value::as_str) == Some(name))
            .cloned()
            .with_context(|| format!("{section}: no {name} phase line"))
    };
    if !lines
        .iter()
        .any(|l| l.get("sva_workload").and_then(Value::as_str) == Some("ok"))
    {
        bail!("{section}: the workload did not end with \"ok\"");
    }
    let fault = phase("fault")?;
    let pinned = phase("pinned")?;
    let pid = u(&fault, "pid").with_context(|| format!("{section}: no pid"))?;
    Ok(Run { pid, fault, pinned })
}

/// The tool's run `hooks` (sections `tool-<hooks>*`), checked against the
/// four workloads it watched (see the module documentation): its plan
/// reports IO page faults through `report_hook` (`tracepoint`: the
/// `intel_iommu:prq_report` row, the only vendor report row the test
/// kernel has) and they are answered through `response_hook`; a summary
/// line with the fault latencies.
fn tool_run(
    console: &console::Console,
    hooks: &str,
    response_hook: &str,
    report_hook: &str,
    pages: u32,
) -> Result<String> {
    let pages = u64::from(pages);
    let info = console
        .lines("sva")
        .iter()
        .find(|l| l.starts_with(&format!("tool hooks={hooks} ")))
        .map(|l| {
            kv(l)
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>()
        })
        .context("no `tool` line from the guest")?;
    let field = |k: &str| info.get(k).map_or("?", String::as_str);
    if field("started") != "1" {
        bail!("the tool did not start tracing (rc {})", field("stop_rc"));
    }
    if field("d_bound_first") != "1" {
        bail!("workload d did not bind before the tool started");
    }
    for k in ["a", "b", "c", "d"] {
        if field(k) != "0" {
            bail!("workload {k} exited {}", field(k));
        }
    }
    if field("stop_sig") != "INT" || field("stop_rc") != "0" {
        bail!(
            "the tool did not end cleanly on SIGINT (ended by {}, exit {})",
            field("stop_sig"),
            field("stop_rc")
        );
    }
    let plan = format!("iopf_report: {report_hook} ");
    if !console
        .lines(&format!("tool-{hooks}-err"))
        .iter()
        .any(|l| l.starts_with("uacce-trace: tracing started") && l.contains(&plan))
    {
        bail!(
            "the tool's \"tracing started\" line does not show `{}`",
            plan.trim_end()
        );
    }
    let events = json_lines(console, &format!("tool-{hooks}"));
    let of = |kind: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e.get("event").and_then(Value::as_str) == Some(kind))
            .collect()
    };
    let stopped = of("stopped");
    let late = match stopped.as_slice() {
        [s] => late_vendor_reports(s, report_hook == "tracepoint")?,
        _ => bail!("no (single) \"stopped\" line: the tool did not end its stream"),
    };
    let iopfs = of("iopf");
    let unattributed = iopfs.iter().filter(|e| u(e, "tgid").is_none()).count();
    if unattributed > 0 {
        bail!("{unattributed} IO page faults attributed to no process");
    }
    if iopfs.len() as u64 + late != 4 * pages {
        bail!(
            "{} IO page faults in all and {late} counted late, not {} (4 workloads of \
             {pages} pages)",
            iopfs.len(),
            4 * pages
        );
    }
    let mut missing = 0;
    // Who held a PASID when the tool started (the first line).
    let scanned: Vec<(u64, u64)> = of("pasid_scan")
        .iter()
        .flat_map(|e| {
            e.get("owners")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|o| u(&o, "tgid").zip(u(&o, "pasid")))
        .collect();
    let mut pasids = Vec::new();
    let mut latencies = Vec::new();
    let mut pinned_bc = 0;
    for name in ["a", "b", "c", "d"] {
        let run = run_of(console, &format!("tool-{hooks}-{name}"))?;
        let pid = run.pid;
        let mine = |e: &&&Value| u(e, "tgid") == Some(pid);
        // The bind: uacce's open binds the process's mm and reports its
        // PASID; d bound before the tool started, which finds it by the
        // start-up scan instead.
        let binds: Vec<u64> = of("pasid_bind")
            .iter()
            .filter(mine)
            .filter_map(|e| u(e, "pasid"))
            .collect();
        let scan: Vec<u64> = scanned
            .iter()
            .filter(|(tgid, _)| *tgid == pid)
            .map(|(_, p)| *p)
            .collect();
        let pasid = match (name, binds.as_slice(), scan.as_slice()) {
            ("d", [], [p]) => *p,
            ("d", b, s) => bail!(
                "workload d (pid {pid}, bound first): pasid_bind events {b:?}, start-up scan \
                 {s:?}; want the scan only"
            ),
            (_, [p], []) => *p,
            (_, b, s) => bail!(
                "workload {name} (pid {pid}): pasid_bind events {b:?}, start-up scan {s:?}; \
                 want one bind"
            ),
        };
        pasids.push(pasid);
        let faults: Vec<&&Value> = iopfs.iter().filter(mine).collect();
        let (t0, t1) = (u(&run.fault, "t0_ns"), u(&run.fault, "t1_ns"));
        let (Some(t0), Some(t1)) = (t0, t1) else {
            bail!("workload {name}: no fault-phase brackets");
        };
        let base = u(&run.fault, "addr").unwrap_or(0);
        let mut addrs = Vec::new();
        for f in &faults {
            let ts = u(f, "ts_ns").unwrap_or(0);
            let lat = u(f, "latency_ns").unwrap_or(u64::MAX);
            let addr = u(f, "addr").unwrap_or(0);
            if u(f, "pasid") != Some(pasid) {
                bail!(
                    "workload {name}: a fault of PASID {:?}, not its {pasid}: {f}",
                    u(f, "pasid")
                );
            }
            if f.get("hook").and_then(Value::as_str) != Some(response_hook) {
                bail!(
                    "workload {name}: a fault answered through another hook type than \
                     {response_hook}: {f}"
                );
            }
            if u(f, "response") != Some(0) {
                bail!("workload {name}: a fault not answered with success: {f}");
            }
            if ts < t0 || ts.saturating_add(lat) > t1 {
                bail!(
                    "workload {name}: a fault reported at {ts} and answered {lat} ns later, \
                     outside its fault phase [{t0}, {t1}]"
                );
            }
            if addr < base || addr >= base + pages * 4096 {
                bail!("workload {name}: fault address {addr:#x} outside its buffer at {base:#x}");
            }
            addrs.push(addr / 4096);
            latencies.push(lat);
        }
        addrs.sort_unstable();
        addrs.dedup();
        // With the vendor row a fault whose report came after its response
        // is counted late, not seen: the others once each.
        let seen = faults.len() as u64;
        if addrs.len() as u64 != seen || seen > pages || (late == 0 && seen != pages) {
            bail!(
                "workload {name}: {seen} faults on {} distinct pages, want each of its {pages} \
                 pages once",
                addrs.len()
            );
        }
        missing += pages - seen;
        // Pins: the pages its pin calls pinned, against the vmstat rise.
        let pinned: u64 = of("pin")
            .iter()
            .filter(mine)
            .filter_map(|e| u(e, "pinned"))
            .sum();
        if pinned != pages {
            bail!("workload {name}: its pin calls pinned {pinned} pages, not {pages}");
        }
        // a and d pinned alone: their own vmstat delta is their pin.
        if (name == "a" || name == "d") && u(&run.pinned, "pinned_pages") != Some(pinned) {
            bail!(
                "workload {name}: pin calls pinned {pinned} pages, nr_foll_pin_acquired rose \
                 by {:?}",
                u(&run.pinned, "pinned_pages")
            );
        }
        if name == "b" || name == "c" {
            pinned_bc += pinned;
        }
    }
    if missing != late {
        bail!("{missing} faults of the workloads not seen, {late} counted late");
    }
    let vmstat_bc: u64 = field("pins_bc").parse().unwrap_or(u64::MAX);
    if pinned_bc != vmstat_bc {
        bail!("workloads b and c: pin calls pinned {pinned_bc} pages, nr_foll_pin_acquired rose by {vmstat_bc}");
    }
    if pasids[1] == pasids[2] {
        bail!(
            "workloads b and c ran at once with the same PASID {}",
            pasids[1]
        );
    }
    latencies.sort_unstable();
    let us = |ns: u64| ns as f64 / 1000.0;
    Ok(format!(
        "{} faults, each once, attributed through PASIDs {pasids:?} (a, b, c bound while \
         tracing, d found by the start-up scan); report-to-response min {:.0} us, median \
         {:.0} us, max {:.0} us; pins = vmstat{}",
        latencies.len(),
        us(latencies[0]),
        us(latencies[latencies.len() / 2]),
        us(latencies[latencies.len() - 1]),
        if late > 0 {
            format!(
                "; {late} fault(s) reported by the vendor tracepoint after their response \
                 (counted, not paired)"
            )
        } else {
            String::new()
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_names_the_program() {
        let args = SvaArgs::parse_from(&[]).expect("defaults");
        let init = init_script(8, &args.tool_runs());
        assert!(init.contains(&format!("\nSVA={GUEST_SVA}\n")));
        assert!(init.contains("\nPAGES=8\n"));
        assert!(init.contains(&format!("\nTOOL={GUEST_TOOL}\n")));
        assert!(init.contains("\nHOOKS='fentry kprobe fentry-vendor'\n"));
        guest::assert_sh_syntax(&init);
        let init = init_script(8, &[]);
        assert!(init.contains("\nTOOL=''\n"));
        guest::assert_sh_syntax(&init);
    }

    #[test]
    fn workload_checks() {
        let text = "@@UT-BEGIN sva-a\n\
            {\"sva_phase\":\"fault\",\"page_requests\":4,\"t0_ns\":1000,\"t1_ns\":9000}\n\
            {\"sva_phase\":\"pinned\",\"page_requests\":0,\"pinned_pages\":4,\"t0_ns\":1,\"t1_ns\":2}\n\
            {\"sva_workload\":\"ok\"}\n\
            @@UT-END sva-a lines=3 bytes=0\n";
        let console = console::parse(text);
        assert!(workload(&console, "sva-a", 4).is_ok());
        assert!(workload(&console, "sva-a", 5).is_err());
        assert!(workload(&console, "sva-b", 4).is_err());
    }

    #[test]
    fn doctor_plan_checks() {
        let plan = [
            "  EVENT         FUNCTION                           HOOK       NOT CHOSEN",
            "  iopf_report   iommu_report_device_fault          kprobe     ",
            "  iopf_response iopf_group_response                kprobe     ",
            "  iopf_report   intel_iommu:prq_report             NONE       tracepoint: core \
             function iommu_report_device_fault is hooked and preferred",
            "  uacce_queue   uacce_fops_open                    kprobe     ",
            "  pasid_bind    iommu_sva_get_pasid                kprobe     ",
            "  pasid_unbind  iommu_sva_unbind_device            kprobe     ",
            "                  SVA bind/unbind hooks    proven in emulation (emulated VT-d)",
            "IOPF report paths: Intel VT-d page requests (IRQ thread)",
        ];
        let console = |rc: &str, lines: &[&str]| {
            console::parse(&format!(
                "@@UT-BEGIN sva\ndoctor hooks=kprobe rc={rc}\n@@UT-END sva lines=1 bytes=0\n\
                 @@UT-BEGIN doctor-kprobe\n{}\n@@UT-END doctor-kprobe lines={} bytes=0\n",
                lines.join("\n"),
                lines.len()
            ))
        };
        assert!(doctor_plan(&console("0", &plan), "kprobe").is_ok());
        assert!(doctor_plan(&console("0", &plan), "fentry").is_err());
        assert!(doctor_plan(&console("1", &plan), "kprobe").is_err());
        for skip in 0..plan.len() {
            let fewer: Vec<&str> = (0..plan.len())
                .filter(|&i| i != skip && i != 0)
                .map(|i| plan[i])
                .collect();
            if skip != 0 {
                assert!(
                    doctor_plan(&console("0", &fewer), "kprobe").is_err(),
                    "without line {skip}"
                );
            }
        }
    }

    /// A console of a tool run with 2 pages per phase: workloads a, b, c
    /// (pids 10, 20, 30; PASIDs 1, 2, 3), `events` the tool's lines.
    fn tool_console(events: &[String], pins_bc: u64) -> console::Console {
        let mut text = format!(
            "@@UT-BEGIN sva\ntool hooks=fentry started=1 start_polls=30 d_bound_first=1 a=0 \
             b=0 c=0 d=0 pins_bc={pins_bc} stop_sig=INT stop_rc=0\n\
             @@UT-END sva lines=1 bytes=0\n"
        );
        let section = |name: &str, lines: &[String]| {
            format!(
                "@@UT-BEGIN {name}\n{}\n@@UT-END {name} lines={} bytes=0\n",
                lines.join("\n"),
                lines.len()
            )
        };
        for (k, pid) in [("a", 10), ("b", 20), ("c", 30), ("d", 40)] {
            let lines = [
                format!(
                    "{{\"sva_phase\":\"fault\",\"pid\":{pid},\"addr\":\"0x{pid}000\",\
                     \"page_requests\":2,\"t0_ns\":{},\"t1_ns\":{}}}",
                    pid * 1000,
                    pid * 1000 + 900
                ),
                format!(
                    "{{\"sva_phase\":\"pinned\",\"pid\":{pid},\"page_requests\":0,\
                     \"pinned_pages\":2,\"t0_ns\":{},\"t1_ns\":{}}}",
                    pid * 1000 + 950,
                    pid * 1000 + 990
                ),
                format!("{{\"sva_workload\":\"ok\",\"pid\":{pid}}}"),
            ];
            text.push_str(&section(&format!("tool-fentry-{k}"), &lines));
        }
        text.push_str(&section("tool-fentry", events));
        text.push_str(&section(
            "tool-fentry-err",
            &[
                "uacce-trace: tracing started (23 hooks attached; pin: fentry · \
               iopf_report: fentry · iopf_response: fentry)"
                    .to_string(),
            ],
        ));
        console::parse(&text)
    }

    fn good_events() -> Vec<String> {
        let mut ev = vec![
            "{\"event\":\"pasid_scan\",\"owners\":[{\"pasid\":4,\"tgid\":40,\"comm\":\"w\"}]}"
                .to_string(),
        ];
        for (pasid, pid) in [(1u64, 10u64), (2, 20), (3, 30), (4, 40)] {
            let base = u64::from_str_radix(&format!("{pid}000"), 16).expect("hex");
            if pid != 40 {
                ev.push(format!(
                    "{{\"event\":\"pasid_bind\",\"tgid\":{pid},\"pasid\":{pasid},\
                     \"hook\":\"fentry\"}}"
                ));
            }
            for page in 0..2 {
                ev.push(format!(
                    "{{\"event\":\"iopf\",\"ts_ns\":{},\"latency_ns\":100,\"tgid\":{pid},\
                     \"pasid\":{pasid},\"addr\":\"{:#x}\",\"response\":0,\"hook\":\"fentry\"}}",
                    pid * 1000 + 100 + 200 * page,
                    base + page * 4096
                ));
            }
            ev.push(format!(
                "{{\"event\":\"pin\",\"tgid\":{pid},\"pinned\":2,\"hook\":\"fentry\"}}"
            ));
        }
        ev.push(
            "{\"event\":\"stopped\",\"events\":19,\"dropped\":1,\
             \"losses\":{\"unbind_unknown\":1}}"
                .into(),
        );
        ev
    }

    /// `events` with `edit` applied to the `n`-th line of kind `kind`.
    fn edited(events: &[String], kind: &str, n: usize, edit: impl Fn(&mut Value)) -> Vec<String> {
        let mut seen = 0;
        events
            .iter()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).expect("json");
                if v["event"] == kind {
                    if seen == n {
                        edit(&mut v);
                    }
                    seen += 1;
                }
                v.to_string()
            })
            .collect()
    }

    #[test]
    fn late_vendor_reports_are_counted_pairs() {
        let stopped = |dropped: u64, losses: Value| serde_json::json!({"event": "stopped", "dropped": dropped, "losses": losses});
        let clean = stopped(1, serde_json::json!({"unbind_unknown": 1}));
        assert_eq!(late_vendor_reports(&clean, false).ok(), Some(0));
        assert_eq!(late_vendor_reports(&clean, true).ok(), Some(0));
        let one = stopped(
            3,
            serde_json::json!({"unbind_unknown": 1, "iopf_response_without_report": 1,
                               "iopf_pending_at_exit": 1}),
        );
        assert_eq!(late_vendor_reports(&one, true).ok(), Some(1));
        // The core report function never fires late.
        assert!(late_vendor_reports(&one, false).is_err());
        // A response without its late report, or another loss.
        let unpaired = stopped(
            2,
            serde_json::json!({"unbind_unknown": 1, "iopf_response_without_report": 1}),
        );
        assert!(late_vendor_reports(&unpaired, true).is_err());
        let other = stopped(2, serde_json::json!({"unbind_unknown": 1, "ring_full": 1}));
        assert!(late_vendor_reports(&other, true).is_err());
    }

    #[test]
    fn tool_run_checks() {
        let tool_run_fentry =
            |c: &console::Console, h: &str, pages: u32| tool_run(c, h, "fentry", "fentry", pages);
        let ok = good_events();
        let r = tool_run(&tool_console(&ok, 4), "fentry", "fentry", "fentry", 2);
        assert!(r.is_ok(), "{r:?}");
        // The other hook type's sections are absent.
        assert!(tool_run(&tool_console(&ok, 4), "kprobe", "kprobe", "kprobe", 2).is_err());
        // Reported through the core function where the vendor row was forced.
        assert!(tool_run(&tool_console(&ok, 4), "fentry", "fentry", "tracepoint", 2).is_err());
        // vmstat disagreeing with the pin calls.
        assert!(tool_run_fentry(&tool_console(&ok, 5), "fentry", 2).is_err());
        // A fault seen twice (same page) instead of another page's.
        let twice = edited(&ok, "iopf", 1, |v| v["addr"] = "0x10000".into());
        assert!(tool_run_fentry(&tool_console(&twice, 4), "fentry", 2).is_err());
        // A fault attributed to nobody, or to another process.
        let nobody = edited(&ok, "iopf", 5, |v| v["tgid"] = Value::Null);
        assert!(tool_run_fentry(&tool_console(&nobody, 4), "fentry", 2).is_err());
        let other = edited(&ok, "iopf", 5, |v| v["tgid"] = 20.into());
        assert!(tool_run_fentry(&tool_console(&other, 4), "fentry", 2).is_err());
        // A fault answered after its phase ended, or reported before it.
        let late = edited(&ok, "iopf", 2, |v| v["latency_ns"] = 900.into());
        assert!(tool_run_fentry(&tool_console(&late, 4), "fentry", 2).is_err());
        let early = edited(&ok, "iopf", 2, |v| v["ts_ns"] = 19_999.into());
        assert!(tool_run_fentry(&tool_console(&early, 4), "fentry", 2).is_err());
        // Seen through another hook type, or answered with a failure.
        let hook = edited(&ok, "iopf", 0, |v| v["hook"] = "kprobe".into());
        assert!(tool_run_fentry(&tool_console(&hook, 4), "fentry", 2).is_err());
        let refused = edited(&ok, "iopf", 0, |v| v["response"] = 1.into());
        assert!(tool_run_fentry(&tool_console(&refused, 4), "fentry", 2).is_err());
        // b and c with one PASID.
        let shared: Vec<String> = ok
            .iter()
            .map(|l| l.replace("\"pasid\":3", "\"pasid\":2"))
            .collect();
        assert!(tool_run_fentry(&tool_console(&shared, 4), "fentry", 2).is_err());
        // No bind seen for a.
        let unbound = edited(&ok, "pasid_bind", 0, |v| v["tgid"] = 99.into());
        assert!(tool_run_fentry(&tool_console(&unbound, 4), "fentry", 2).is_err());
        // d bound before the start but the scan missed it, or it also bound.
        let unscanned = edited(&ok, "pasid_scan", 0, |v| v["owners"] = Value::Array(vec![]));
        assert!(tool_run_fentry(&tool_console(&unscanned, 4), "fentry", 2).is_err());
        let mut rebound = ok.clone();
        rebound
            .push("{\"event\":\"pasid_bind\",\"tgid\":40,\"pasid\":4,\"hook\":\"fentry\"}".into());
        assert!(tool_run_fentry(&tool_console(&rebound, 4), "fentry", 2).is_err());
        // Lost events.
        let lost = edited(&ok, "stopped", 0, |v| {
            v["dropped"] = 2.into();
            v["losses"]["ring_full"] = 1.into();
        });
        assert!(tool_run_fentry(&tool_console(&lost, 4), "fentry", 2).is_err());
    }
}
