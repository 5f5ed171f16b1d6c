//! Boots one test VM under QEMU and captures its serial console.
//!
//! x86-64 and arm64 guests, with TCG (multi-threaded): KVM is not usable on
//! the machines this was written on (guests die early), and TCG boots a stock
//! x86-64 kernel with a busybox initramfs in seconds (arm64: `virt` machine,
//! console on the PL011 `ttyAMA0`, about ten times slower). The console (`ttyS0`) goes to
//! QEMU's stdout, which is written to a log file; QEMU is killed when the
//! time limit passes.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::base::{process, Arch};

/// The QEMU program.
const QEMU: &str = "qemu-system-x86_64";

/// Kernel command line. `quiet loglevel=1` keeps kernel messages out of the
/// results; `panic=-1` with `-no-reboot` ends QEMU if `/init` dies.
pub const APPEND: &str = "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init";

/// [`APPEND`] for arm64 guests: the `virt` machine's serial port is a PL011.
pub const APPEND_ARM64: &str = "console=ttyAMA0 quiet loglevel=1 panic=-1 rdinit=/init";

/// The QEMU program of `arch`.
pub const fn program(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => QEMU,
        Arch::Aarch64 => "qemu-system-aarch64",
    }
}

/// The Debian package of [`program`].
const fn package(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "qemu-system-x86",
        Arch::Aarch64 => "qemu-system-arm",
    }
}

/// Machine and CPU arguments of `arch`. arm64: `-cpu max` with
/// `pauth-impdef=on`, because emulating the architected pointer
/// authentication algorithm (QARMA) makes TCG several times slower, and
/// Debian's kernel signs every return address.
fn machine_args(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => &["-cpu", "max"],
        Arch::Aarch64 => &["-M", "virt", "-cpu", "max,pauth-impdef=on"],
    }
}

/// How a boot ended.
pub struct Boot {
    /// QEMU's exit status; `None` when it was killed at the time limit.
    pub status: Option<ExitStatus>,
    /// Wall time from start to exit (or kill).
    pub elapsed: Duration,
}

/// Fails early, with a hint, when QEMU is not installed.
pub fn check_installed() -> Result<()> {
    check_installed_for(Arch::X86_64)
}

/// [`check_installed`] for the QEMU of `arch`.
pub fn check_installed_for(arch: Arch) -> Result<()> {
    let qemu = program(arch);
    let pkg = package(arch);
    match Command::new(qemu)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("{qemu} --version failed ({s}); run `cargo xtask setup`"),
        Err(e) => {
            bail!("{qemu} not found ({e}); run `cargo xtask setup` (installs {pkg})")
        }
    }
}

/// Where the serial console goes and what else the VM shows there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    /// `-nographic`: the firmware's messages (SeaBIOS, iPXE) and the guest's
    /// console on stdout, for a log that the host parses.
    Log,
    /// Only the guest's console on stdout: no VGA, no NIC (so no firmware
    /// banners or terminal-reset sequences), no monitor; for a person
    /// watching a terminal.
    Terminal,
}

/// The QEMU command that boots `kernel` with `initrd` and the console
/// (`ttyS0`) on QEMU's stdout; the caller sets up stdio. Give it a stdin
/// that is not a terminal (`Stdio::null()`): with a terminal on stdin,
/// QEMU switches it to raw mode and catches Ctrl-C itself.
pub fn command(kernel: &Path, initrd: &Path, console: Console) -> Command {
    command_for(Arch::X86_64, kernel, initrd, console)
}

/// [`command`] for a guest of `arch`.
pub fn command_for(arch: Arch, kernel: &Path, initrd: &Path, console: Console) -> Command {
    command_with(arch, kernel, initrd, console, Tcg::Multi)
}

/// How TCG runs the guest's two vCPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tcg {
    /// One host thread per vCPU (`thread=multi`): faster.
    Multi,
    /// Both vCPUs in one host thread, interleaved (`thread=single`): code
    /// patched on one vCPU while the other executes it (fentry/kprobe
    /// attach onto a hot function) is seen coherently. With `thread=multi`
    /// a vCPU can still run the `int3` of a finished `text_poke_bp` and
    /// the guest oopses ("Oops: int3" in `pin_user_pages_fast+0x5`, seen
    /// attaching while two threads pinned at full speed).
    Single,
}

/// [`command_for`] with the TCG threading mode.
pub fn command_with(
    arch: Arch,
    kernel: &Path,
    initrd: &Path,
    console: Console,
    tcg: Tcg,
) -> Command {
    let mut cmd = Command::new(program(arch));
    cmd.args([
        "-accel",
        match tcg {
            Tcg::Multi => "tcg,thread=multi",
            Tcg::Single => "tcg,thread=single",
        },
    ])
    .args(machine_args(arch))
    .args(["-m", "1024", "-smp", "2"])
    .args(match console {
        Console::Log => &["-nographic"][..],
        Console::Terminal => &[
            "-display", "none", "-vga", "none", "-nic", "none", "-serial", "stdio", "-monitor",
            "none",
        ][..],
    })
    .args(["-no-reboot", "-kernel"])
    .arg(kernel)
    .arg("-initrd")
    .arg(initrd)
    .args([
        "-append",
        match arch {
            Arch::X86_64 => APPEND,
            Arch::Aarch64 => APPEND_ARM64,
        },
    ]);
    cmd
}

/// Boots `kernel` with `initrd`, console to `log`, for at most `timeout`.
pub fn boot(kernel: &Path, initrd: &Path, log: &Path, timeout: Duration) -> Result<Boot> {
    boot_for(Arch::X86_64, kernel, initrd, log, timeout)
}

/// [`boot`] for a guest of `arch`.
pub fn boot_for(
    arch: Arch,
    kernel: &Path,
    initrd: &Path,
    log: &Path,
    timeout: Duration,
) -> Result<Boot> {
    boot_with(arch, kernel, initrd, log, timeout, Tcg::Multi)
}

/// [`boot_for`] with the TCG threading mode.
pub fn boot_with(
    arch: Arch,
    kernel: &Path,
    initrd: &Path,
    log: &Path,
    timeout: Duration,
    tcg: Tcg,
) -> Result<Boot> {
    boot_command(
        &mut command_with(arch, kernel, initrd, Console::Log, tcg),
        log,
        timeout,
    )
}

/// Runs the QEMU command `cmd` with its console (stdout and stderr) into
/// `log`, for at most `timeout`.
fn boot_command(cmd: &mut Command, log: &Path, timeout: Duration) -> Result<Boot> {
    let start = Instant::now();
    let mut child = process::spawn_logged(cmd, log)?;
    wait_with_timeout(&mut child, start, timeout)
}

/// Waits for QEMU (`child`, started at `start`) to exit, killing it once
/// `timeout` has passed since `start`.
pub fn wait_with_timeout(
    child: &mut std::process::Child,
    start: Instant,
    timeout: Duration,
) -> Result<Boot> {
    loop {
        if let Some(status) = child.try_wait().context("waiting for QEMU")? {
            return Ok(Boot {
                status: Some(status),
                elapsed: start.elapsed(),
            });
        }
        if start.elapsed() >= timeout {
            // Already gone is fine; either way reap it.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Boot {
                status: None,
                elapsed: start.elapsed(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The machine of the SVA tests: the patched QEMU of `cargo xtask qemu`
/// (`crate::qemu`), a q35 with the Intel IOMMU in scalable mode with
/// first-stage translation, PASID, device IOTLB and `svm=on` (PRS, PDS,
/// SMPWC: what Linux's intel_iommu needs for SVA with PRI), and the
/// `uacce-sva-test` accelerator on the root bus. Interrupt remapping is
/// off: with it, Linux 6.12 under TCG panics at boot ("timer doesn't work
/// through Interrupt-remapped IO-APIC"). The CPU has no LA57:
/// Linux 6.12 refuses SVM when the CPU has 5-level paging and the IOMMU
/// cannot walk it (the model does not advertise FL5LP).
pub const SVA_MACHINE_ARGS: &[&str] = &[
    "-M",
    "q35",
    "-cpu",
    "max,la57=off",
    "-device",
    "intel-iommu,intremap=off,x-scalable-mode=on,x-flts=on,x-pasid-mode=on,device-iotlb=on,svm=on,aw-bits=48",
    "-device",
    "uacce-sva-test",
];

/// Kernel command line of the SVA machine: [`APPEND`] with the IOMMU on in
/// scalable mode.
pub const APPEND_SVA: &str =
    "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init intel_iommu=on,sm_on";

/// The QEMU command of the SVA machine of `qemu_program`
/// ([`SVA_MACHINE_ARGS`]) booting `kernel` with `initrd`, the console
/// (`ttyS0`) on QEMU's stdout; the caller sets up stdio (see [`command`])
/// and may add a second `-serial` (`ttyS1`, `cargo xtask demo --sva`).
pub fn sva_command(qemu_program: &Path, kernel: &Path, initrd: &Path) -> Command {
    let mut cmd = Command::new(qemu_program);
    cmd.args(["-accel", "tcg,thread=multi"])
        .args(SVA_MACHINE_ARGS)
        .args([
            "-m",
            "1024",
            "-smp",
            "2",
            // Only the devices this QEMU has (`--without-default-devices`):
            // no default NIC, VGA, parallel port or monitor; the console
            // is the serial port on stdout.
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
            "-kernel",
        ])
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", APPEND_SVA]);
    cmd
}

/// Boots `kernel` with `initrd` on the SVA machine of `qemu_program`
/// ([`sva_command`]), console to `log`, for at most `timeout`.
pub fn boot_sva(
    qemu_program: &Path,
    kernel: &Path,
    initrd: &Path,
    log: &Path,
    timeout: Duration,
) -> Result<Boot> {
    boot_command(&mut sva_command(qemu_program, kernel, initrd), log, timeout)
}
