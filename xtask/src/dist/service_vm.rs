//! The packaged service in a real system (`cargo xtask dist --vm`, and the
//! unit tier's "dist: systemd VM" test): Debian bookworm with systemd as
//! PID 1 (`toolchain::rootfs`, debootstrap'ed once and cached) boots
//! Debian's stock 6.12 kernel under QEMU from an initramfs; a oneshot unit
//! runs `xtask/vm-guest/service.sh`, which `dpkg -i`s the amd64 `.deb`,
//! `systemctl enable --now uacce-trace`, runs the io_uring pin workload
//! and scrapes `/metrics`. Checked here, from its console sections:
//!
//! - (d1) the package installs (dpkg exit 0) and its postinst created the
//!   system user `uacce-trace` with a nologin shell; the unit enables;
//! - (d2) the service runs (active/running, no restart) as that user, its
//!   effective, permitted, ambient and bounding capability sets are
//!   exactly the unit's `AmbientCapabilities=`, `NoNewPrivs` is set and a
//!   seccomp filter is on (mode 2);
//! - (d3) the tool attached pin hooks under that sandbox (`tracing
//!   started`, pin not `none`);
//! - (d4) the scrape's `uacce_trace_pin_pages_total` and
//!   `uacce_trace_unpin_pages_total` of the workload's process equal the
//!   workload's own pinned and unpinned pages, and nothing was lost;
//! - (d5) `systemd-analyze security` in the guest rates the unit at most
//!   2.0.
//!
//! The IOPF mock needs the project's test kernel, whose tiny configuration
//! cannot run systemd (no cgroups, namespaces or seccomp), so this VM
//! checks pins only; IOPFs under `serve` are the other VM tests' part.
//! amd64 only (see `toolchain::rootfs`); the arm64 static binary runs in
//! the arm64 VMs of `vm-test`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::base::{cache, Arch};
use crate::toolchain::setup::{self, Need};
use crate::toolchain::{build, rootfs, stock};
use crate::vm::console::{self, Console};
use crate::vm::image::{self, Newc};
use crate::vm::qemu;

/// The guest check script (a bash script run by systemd).
const SCRIPT: &str = include_str!("../../vm-guest/service.sh");
/// The stock kernel booted (it has what systemd and the sandbox need).
const KERNEL: &str = "debian-6.12";
/// The workload: rounds of one buffer of this size (256 pages).
const SIZE_KIB: u64 = 1024;
const COUNT: u64 = 4;
/// The whole VM (boot ≈ 17 s, the check ≈ 25 s under TCG on an idle
/// machine); generous for a loaded one.
const TIMEOUT: Duration = Duration::from_secs(600);
/// Highest `systemd-analyze security` exposure accepted.
const MAX_EXPOSURE: f64 = 2.0;

/// The oneshot unit that runs the check once the system is up.
const CHECK_UNIT: &str = "[Unit]
Description=uacce-trace package check (cargo xtask dist --vm)
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/bin/ut-check

[Install]
WantedBy=multi-user.target
";

/// What the VM showed: failed checks (empty: passed) and notes.
#[derive(Debug, Default)]
pub struct Outcome {
    pub failures: Vec<String>,
    pub notes: Vec<String>,
}

fn say(msg: &str) {
    eprintln!("dist vm: {msg}");
}

/// Boots the VM with `deb` (the amd64 package) and checks (d1)–(d5).
pub fn check(deb: &Path) -> Result<Outcome> {
    setup::ensure(&[
        Need::Packages(&["qemu-system-x86", "cpio", "gzip"]),
        Need::StockKernels,
    ])?;
    qemu::check_installed()?;
    let root = rootfs::ensure_debian_rootfs()?;
    say("packing the root file system (cached after the first run)…");
    let base = image::dir_archive_gz(&root)?;
    let workload = build::build_release(Arch::X86_64, false, true)?
        .workload
        .context("cargo build did not report uacce-workload")?;
    let work = cache::vm_work()?.join("dist-service");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let initrd = work.join("initrd.img");
    write_image(&base, deb, &workload, &initrd)?;
    let kernel = stock::kernel_dir(KERNEL)?.join("vmlinuz");
    let log = work.join("console.log");
    say(&format!(
        "booting Debian {} with systemd on {KERNEL} (about a minute; console: {})…",
        rootfs::SUITE,
        log.display()
    ));
    let boot = qemu::boot(&kernel, &initrd, &log, TIMEOUT)?;
    let text = fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    let con = console::parse(&text);
    let unit = fs::read_to_string(
        crate::base::workspace_root()?.join("uacce-trace/dist/systemd/uacce-trace.service"),
    )
    .context("reading the unit")?;
    let mut outcome = checks(&con, &unit);
    if boot.status.is_none() {
        outcome.failures.push(format!(
            "the VM did not power off within {} s (console: {})",
            TIMEOUT.as_secs(),
            log.display()
        ));
    }
    outcome
        .notes
        .push(format!("VM ran {:.0} s", boot.elapsed.as_secs_f64()));
    Ok(outcome)
}

/// The root archive followed by one with `/init` (systemd), the check unit
/// and script, the workload and the package.
fn write_image(base: &Path, deb: &Path, workload: &Path, out: &Path) -> Result<()> {
    let mut cpio = Newc::new();
    cpio.symlink("/init", "/lib/systemd/systemd")?;
    cpio.file("/etc/hostname", 0o644, b"uacce-vm\n")?;
    cpio.file(
        "/etc/systemd/system/ut-check.service",
        0o644,
        CHECK_UNIT.as_bytes(),
    )?;
    cpio.symlink(
        "/etc/systemd/system/multi-user.target.wants/ut-check.service",
        "/etc/systemd/system/ut-check.service",
    )?;
    // Nothing else on the console than the check's sections.
    for getty in ["serial-getty@ttyS0.service", "getty@tty1.service"] {
        cpio.symlink(&format!("/etc/systemd/system/{getty}"), "/dev/null")?;
    }
    let script = format!(
        "#!/bin/bash\n# Generated by `cargo xtask dist --vm`.\nSIZE_KIB={SIZE_KIB}\nCOUNT={COUNT}\n{SCRIPT}"
    );
    cpio.file("/usr/local/bin/ut-check", 0o755, script.as_bytes())?;
    let read = |p: &Path| fs::read(p).with_context(|| format!("reading {}", p.display()));
    cpio.file("/usr/local/bin/uacce-workload", 0o755, &read(workload)?)?;
    cpio.file("/root/uacce-trace.deb", 0o644, &read(deb)?)?;
    let overlay = out.with_extension("overlay.gz");
    image::write_gzip(&cpio.finish(), &overlay)?;
    let mut bytes = read(base)?;
    bytes.extend(read(&overlay)?);
    let _ = fs::remove_file(&overlay);
    fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))
}

/// Capability numbers of the names a unit may list (linux/capability.h).
fn cap_number(name: &str) -> Option<u32> {
    Some(match name {
        "CAP_DAC_OVERRIDE" => 1,
        "CAP_DAC_READ_SEARCH" => 2,
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_IPC_LOCK" => 14,
        "CAP_SYS_PTRACE" => 19,
        "CAP_SYS_ADMIN" => 21,
        "CAP_SYS_RESOURCE" => 24,
        "CAP_SYSLOG" => 34,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        _ => return None,
    })
}

/// The capability mask of the unit's `AmbientCapabilities=`.
fn unit_caps(unit: &str) -> Result<u64> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .context("no AmbientCapabilities= in the unit")?;
    line.split_whitespace().try_fold(0u64, |mask, name| {
        cap_number(name)
            .map(|n| mask | (1u64 << n))
            .with_context(|| format!("unknown capability {name} in the unit"))
    })
}

/// `key: value` lines (a `/proc/PID/status` excerpt) or `key=value` lines.
fn fields(lines: &[String], sep: char) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter_map(|l| l.split_once(sep))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Sum of the samples of `metric` whose labels include `label`.
fn metric_sum(lines: &[String], metric: &str, label: &str) -> Option<u64> {
    let mut found = false;
    let mut sum = 0u64;
    for l in lines {
        let Some(rest) = l.strip_prefix(metric) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) || !rest.contains(label) {
            continue;
        }
        let v: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        found = true;
        // Counters of pages: whole numbers.
        sum += v as u64;
    }
    found.then_some(sum)
}

/// (d1)–(d5) on the parsed console; `unit` is the shipped unit file.
pub fn checks(con: &Console, unit: &str) -> Outcome {
    let mut failures: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    if !con.done {
        failures.push("the guest never finished its check (no @@UT-DONE)".into());
    }
    for (name, s) in &con.sections {
        if let Some(p) = &s.problem {
            failures.push(format!("section {name}: {p}"));
        }
    }
    // (d1)
    let last = |name: &str| con.lines(name).last().cloned().unwrap_or_default();
    if last("dpkg") != "rc=0" {
        failures.push(format!("(d1) dpkg -i failed: {:?}", con.lines("dpkg")));
    }
    let user = con.lines("user").first().cloned().unwrap_or_default();
    let pw: Vec<&str> = user.split(':').collect();
    let uid = pw.get(2).copied().unwrap_or_default().to_owned();
    if pw.first() != Some(&"uacce-trace") || !pw.get(6).is_some_and(|s| s.ends_with("nologin")) {
        failures.push(format!(
            "(d1) no system user uacce-trace with a nologin shell: {user:?}"
        ));
    }
    if last("enable") != "rc=0" {
        failures.push(format!(
            "(d1) systemctl enable --now failed: {:?}",
            con.lines("enable")
        ));
    }
    // (d2)
    let show = fields(con.lines("show"), '=');
    for (k, want) in [
        ("ActiveState", "active"),
        ("SubState", "running"),
        ("User", "uacce-trace"),
        ("NRestarts", "0"),
    ] {
        if show.get(k).map(String::as_str) != Some(want) {
            failures.push(format!("(d2) {k}={:?}, want {want}", show.get(k)));
        }
    }
    let status = fields(con.lines("status"), ':');
    for id in ["Uid", "Gid"] {
        let ids: Vec<&str> = status
            .get(id)
            .map(|v| v.split_whitespace().collect())
            .unwrap_or_default();
        if ids.len() != 4 || ids.iter().any(|x| *x != uid || *x == "0") {
            failures.push(format!(
                "(d2) {id} {ids:?}, want the user's id {uid} four times"
            ));
        }
    }
    match unit_caps(unit) {
        Ok(want) => {
            for set in ["CapEff", "CapPrm", "CapAmb", "CapBnd"] {
                let got = status
                    .get(set)
                    .and_then(|v| u64::from_str_radix(v, 16).ok());
                if got != Some(want) {
                    failures.push(format!(
                        "(d2) {set} {got:x?}, want {want:016x} (the unit's AmbientCapabilities=)"
                    ));
                }
            }
            notes.push(format!(
                "capabilities {want:016x} (CapEff = CapPrm = CapAmb = CapBnd)"
            ));
        }
        Err(e) => failures.push(format!("(d2) {e:#}")),
    }
    if status.get("NoNewPrivs").map(String::as_str) != Some("1") {
        failures.push(format!("(d2) NoNewPrivs {:?}", status.get("NoNewPrivs")));
    }
    if status.get("Seccomp").map(String::as_str) != Some("2") {
        failures.push(format!(
            "(d2) Seccomp {:?}, want 2 (filter)",
            status.get("Seccomp")
        ));
    }
    // (d3)
    let started = con
        .lines("journal")
        .iter()
        .find(|l| l.contains("tracing started"))
        .cloned();
    match &started {
        Some(l) if !l.contains("pin: none") => notes.push(l.trim().to_owned()),
        _ => failures.push(format!(
            "(d3) no pin hook attached: {:?}",
            con.lines("journal")
        )),
    }
    // (d4)
    let workload = con
        .lines("workload")
        .iter()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    let expect = |k: &str| workload.as_ref().and_then(|w| console::u(w, k));
    let metrics = con.lines("metrics");
    for (metric, key) in [
        ("uacce_trace_pin_pages_total", "expected_pinned_pages"),
        ("uacce_trace_unpin_pages_total", "expected_unpinned_pages"),
    ] {
        let got = metric_sum(metrics, metric, "comm=\"uacce-workload\"");
        let want = expect(key);
        if want.is_none() || got != want {
            failures.push(format!(
                "(d4) {metric} of uacce-workload {got:?}, the workload's {key} {want:?}"
            ));
        } else {
            notes.push(format!(
                "{metric} = {} = the workload's {key}",
                got.unwrap_or(0)
            ));
        }
    }
    if metric_sum(metrics, "uacce_trace_dropped_records_total", "") != Some(0) {
        failures.push("(d4) uacce_trace_dropped_records_total is not 0".into());
    }
    // (d5)
    let exposure = con.lines("security").iter().find_map(|l| {
        l.split("Overall exposure level for uacce-trace.service: ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse::<f64>()
            .ok()
    });
    match exposure {
        Some(e) if e <= MAX_EXPOSURE => {
            notes.push(format!("systemd-analyze security in the guest: {e}"))
        }
        other => failures.push(format!(
            "(d5) systemd-analyze security: {other:?}, want at most {MAX_EXPOSURE}"
        )),
    }
    Outcome { failures, notes }
}

/// Where the amd64 `.deb` of `files` is.
pub fn amd64_deb(files: &[PathBuf]) -> Option<&PathBuf> {
    files.iter().find(|f| {
        f.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with("_amd64.deb"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_units_capabilities() -> Result<()> {
        let unit = fs::read_to_string(
            crate::base::workspace_root()?.join("uacce-trace/dist/systemd/uacce-trace.service"),
        )?;
        assert_eq!(unit_caps(&unit)?, 0x0000_00c0_0000_0004);
        assert!(unit_caps("AmbientCapabilities=CAP_NOPE\n").is_err());
        Ok(())
    }

    /// A console without the sections fails every check, not just one.
    #[test]
    fn an_empty_console_fails() -> Result<()> {
        let unit = fs::read_to_string(
            crate::base::workspace_root()?.join("uacce-trace/dist/systemd/uacce-trace.service"),
        )?;
        let o = checks(&console::parse(""), &unit);
        for tag in ["@@UT-DONE", "(d1)", "(d2)", "(d3)", "(d4)", "(d5)"] {
            assert!(
                o.failures.iter().any(|f| f.contains(tag)),
                "{tag}: {:#?}",
                o.failures
            );
        }
        Ok(())
    }

    /// The guest script parses (`bash -n`): a syntax error would only show
    /// as a VM that never reports.
    #[test]
    fn guest_script_parses() -> Result<()> {
        let out = std::process::Command::new("bash")
            .args(["-n", "-c", SCRIPT])
            .output()
            .context("running bash")?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    #[test]
    fn metric_sums() {
        let lines: Vec<String> = [
            "uacce_trace_pin_pages_total{pid=\"1\",comm=\"uacce-workload\"} 512",
            "uacce_trace_pin_pages_total{pid=\"2\",comm=\"uacce-workload\"} 512",
            "uacce_trace_pin_pages_total{pid=\"3\",comm=\"other\"} 7",
            "uacce_trace_pin_pages_total_x{comm=\"uacce-workload\"} 9",
            "uacce_trace_dropped_records_total 0",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            metric_sum(
                &lines,
                "uacce_trace_pin_pages_total",
                "comm=\"uacce-workload\""
            ),
            Some(1024)
        );
        assert_eq!(
            metric_sum(&lines, "uacce_trace_unpin_pages_total", ""),
            None
        );
        assert_eq!(
            metric_sum(&lines, "uacce_trace_dropped_records_total", ""),
            Some(0)
        );
    }
}
