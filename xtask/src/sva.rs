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

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::base::{cache, fs::remove_if_exists, Arch};
use crate::toolchain::setup::{self, Need};
use crate::vm::console::{self, json_lines, u};
use crate::vm::{guest, image, programs, qemu};

/// The guest script.
const SCRIPT: &str = include_str!("../vm-guest/sva.sh");
/// Where the guest finds the workload.
const GUEST_SVA: &str = "/usr/bin/sva-workload";

/// Command-line flags of `cargo xtask sva`.
#[derive(Debug, clap::Args)]
pub struct SvaArgs {
    /// Pages each workload phase touches (one page request each).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pages: u32,
    /// Seconds the VM may run before QEMU is killed.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// The `/init` of the SVA VM.
fn init_script(pages: u32) -> String {
    guest::init(
        "sva",
        &[("SVA", GUEST_SVA.into()), ("PAGES", pages.to_string())],
        SCRIPT,
    )
}

/// `cargo xtask sva`: Ok(true) when every check passed.
pub fn run(args: &SvaArgs) -> Result<bool> {
    setup::ensure(&[Need::Packages(&["busybox-static", "gzip"])])?;
    let qemu_program = crate::qemu::ensure_qemu()?;
    let kernel_dir = crate::kernel::ensure_test_kernel()?;
    let work = cache::vm_work()?.join("sva");
    remove_if_exists(&work)?;
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let base = work.join("base.cpio.gz");
    image::write_gzip(&image::busybox_archive(Arch::host())?.finish(), &base)?;
    let programs = programs::ensure(&kernel_dir, Arch::host())?;
    let extra: Vec<(PathBuf, &str)> = vec![(programs.sva(), GUEST_SVA)];
    let initrd = work.join("initrd.gz");
    image::write_vm_image_with(&base, &init_script(args.pages), &extra, &initrd)?;

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
    eprintln!("sva: ok ({checks} checks and 3 workloads; {how})");
    Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_names_the_program() {
        let init = init_script(8);
        assert!(init.contains(&format!("\nSVA={GUEST_SVA}\n")));
        assert!(init.contains("\nPAGES=8\n"));
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
}
