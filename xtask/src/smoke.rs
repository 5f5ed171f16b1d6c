//! `cargo xtask kernel --smoke`: boots the test kernel under QEMU (TCG) and
//! checks it, a thin scenario on [`crate::vm`]: the image is the shared
//! busybox base plus the two guest programs, `/init` is
//! `xtask/vm-guest/smoke.sh` (devices, symbols, BTF, the kprobe PMU, both
//! guest programs under the function tracer), and its result lines come
//! back as the console section `smoke`: `check <name> ok|FAIL`, information,
//! `done` at the end.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::base::{cache, fs::remove_if_exists, Arch};
use crate::kernel::{self, KernelArgs};
use crate::toolchain::setup::{self, Need};
use crate::vm::guest::{self, GUEST_IOPF_WORKLOAD, GUEST_UACCE_CTRL_PIN};
use crate::vm::{console, image, programs, qemu};

/// The guest script.
const SCRIPT: &str = include_str!("../vm-guest/smoke.sh");

/// What `--smoke` installs first.
const NEEDS: &[Need] = &[Need::Packages(&[
    "qemu-system-x86",
    "busybox-static",
    "gzip",
])];

/// Faults the smoke VM's IOPF workload triggers.
const FAULTS: u32 = 12;

/// `cargo xtask kernel [--smoke]`: builds (or finds) the kernel, smoke-tests
/// it when asked, and prints its folder on stdout.
pub fn run(args: &KernelArgs) -> Result<()> {
    if args.smoke && args.arch() != Arch::X86_64 {
        bail!("--smoke boots the x86 kernel only; the arm64 one is checked by `cargo xtask vm-test --kernel test-6.12-arm64`");
    }
    let dir = kernel::run(args)?;
    if args.smoke {
        smoke(&dir, Duration::from_secs(args.smoke_timeout))?;
    }
    println!("{}", dir.display());
    Ok(())
}

/// The smoke VM's `/init`.
fn init_script() -> String {
    guest::init(
        "kernel --smoke",
        &[
            ("SYMBOLS", kernel::hooked_functions().join(" ")),
            ("PIN", GUEST_UACCE_CTRL_PIN.into()),
            ("IOPF", GUEST_IOPF_WORKLOAD.into()),
            ("FAULTS", FAULTS.to_string()),
        ],
        SCRIPT,
    )
}

fn smoke(kernel_dir: &Path, timeout: Duration) -> Result<()> {
    setup::ensure(NEEDS)?;
    let work = cache::test_kernels()?.join("smoke");
    remove_if_exists(&work)?;
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let base = work.join("base.cpio.gz");
    image::write_gzip(&image::busybox_archive(Arch::host())?.finish(), &base)?;
    let programs = programs::ensure(kernel_dir, Arch::host())?;
    let extra: Vec<(PathBuf, &str)> = vec![
        (programs.pin(), GUEST_UACCE_CTRL_PIN),
        (programs.iopf(), GUEST_IOPF_WORKLOAD),
    ];
    let initrd = work.join("initrd.gz");
    image::write_vm_image_with(&base, &init_script(), &extra, &initrd)?;

    let log = work.join("console.log");
    eprintln!(
        "kernel: smoke: booting under QEMU (TCG), console in {}",
        log.display()
    );
    let boot = qemu::boot(&kernel_dir.join("bzImage"), &initrd, &log, timeout)?;
    let text = fs::read(&log).with_context(|| format!("reading {}", log.display()))?;
    let console = console::parse(&String::from_utf8_lossy(&text));
    let report = SmokeReport::from_lines(console.lines("smoke"));
    for line in &report.lines {
        eprintln!("kernel: smoke: {line}");
    }
    let how = match boot.status {
        Some(s) => format!(
            "QEMU exited ({s}) after {:.1} s",
            boot.elapsed.as_secs_f64()
        ),
        None => format!("QEMU killed after the {}-s limit", timeout.as_secs()),
    };
    let init_at = report
        .init_uptime_s
        .map(|t| format!("; /init started at {t:.2} s uptime"))
        .unwrap_or_default();
    if !report.passed() {
        bail!(
            "smoke test failed: {how}{init_at}; {} of {} checks failed{}{}{}; console in {}",
            report.failed.len(),
            report.checks,
            if report.failed.is_empty() { "" } else { ": " },
            report.failed.join(", "),
            if report.done {
                ""
            } else {
                "; /init did not finish"
            },
            log.display()
        );
    }
    eprintln!(
        "kernel: smoke ok ({} checks; {how}{init_at})",
        report.checks
    );
    Ok(())
}

/// What the smoke VM's `/init` reported.
#[derive(Debug, Default)]
struct SmokeReport {
    /// Every line of the section.
    lines: Vec<String>,
    /// How many `check` lines there were.
    checks: usize,
    /// The names of the checks that did not say `ok`.
    failed: Vec<String>,
    /// Whether `/init` got to its end.
    done: bool,
    /// Uptime when `/init` started (kernel boot time under TCG).
    init_uptime_s: Option<f64>,
}

impl SmokeReport {
    fn from_lines(lines: &[String]) -> Self {
        let mut report = Self::default();
        for line in lines {
            if let Some(check) = line.strip_prefix("check ") {
                report.checks += 1;
                match check.rsplit_once(' ') {
                    Some((_, "ok")) => {}
                    Some((name, _)) => report.failed.push(name.to_owned()),
                    None => report.failed.push(check.to_owned()),
                }
            } else if line == "done" {
                report.done = true;
            } else if let Some(t) = line.strip_prefix("uptime_s ") {
                if report.init_uptime_s.is_none() {
                    report.init_uptime_s = t.trim().parse().ok();
                }
            }
            report.lines.push(line.clone());
        }
        report
    }

    fn passed(&self) -> bool {
        self.done && self.checks > 0 && self.failed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn smoke_report_parsing() {
        let report = SmokeReport::from_lines(&lines(
            "uptime_s 1.25\ncheck a ok\ncheck b FAIL\nuptime_s 9.0\ndone\n",
        ));
        assert_eq!(report.checks, 2);
        assert_eq!(report.failed, vec!["b"]);
        assert!(report.done);
        assert_eq!(report.init_uptime_s, Some(1.25));
        assert!(!report.passed());
        assert!(SmokeReport::from_lines(&lines("check a ok\ndone\n")).passed());
        assert!(!SmokeReport::from_lines(&lines("check a ok\n")).passed());
    }

    #[test]
    fn smoke_init_names_programs() {
        let init = init_script();
        assert!(init.contains(&format!("\nPIN={GUEST_UACCE_CTRL_PIN}\n")));
        assert!(init.contains(&format!("\nFAULTS={FAULTS}\n")));
        assert!(init.contains("SYMBOLS='uacce_ctrl_open "));
        assert!(init.contains("\"$IOPF\" --count \"$FAULTS\""));
        assert!(init.ends_with("finish \"smoke $OUT\"\n"));
        guest::assert_sh_syntax(&init);
    }
}
