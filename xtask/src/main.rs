//! `cargo xtask`: developer tasks for uacce-trace.
//!
//! Commands install what they need themselves (`setup` runs first,
//! idempotently), so the README's two commands work on a fresh machine.

mod base;
mod bench;
mod demo;
mod dist;
mod kernel;
mod layers;
mod prom;
mod qemu;
mod smoke;
mod soak;
mod sva;
mod test;
/// How a test that cannot run says so (shared with uacce-trace's tests).
#[cfg(test)]
#[path = "../../uacce-trace/tests/common/skip.rs"]
mod test_skip;
mod toolchain;
mod vm;
mod vm_test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use base::cache;
use toolchain::{build, setup};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "uacce-trace developer tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boot the test kernel in QEMU and watch `uacce-trace top` live while processes fault and pin.
    Demo(demo::DemoArgs),
    /// Run every test tier (setup, lint, unit/golden/host BPF, VM); ends with `N passed, N failed`.
    Test(test::TestArgs),
    /// Benchmarks: `pipeline` (host, root) and `hooks` (VM); tables into xtask/docs/benchmarks.md.
    Bench(bench::BenchArgs),
    /// Build the release tool, for the host or `--target aarch64-unknown-linux-gnu` (cross, static).
    Build(build::BuildArgs),
    /// Release artifacts: static binaries, tarballs, .deb files (lintian-checked) and SHA256SUMS for x86_64 and aarch64.
    Dist(dist::DistArgs),
    /// Print the cache folder.
    CacheDir,
    /// Install the eBPF toolchain, Debian packages and stock kernels (idempotent).
    Setup(setup::SetupArgs),
    /// Boot stock kernels in QEMU and check the tool against the kernel's pin counters.
    VmTest(vm_test::VmTestArgs),
    /// Soak on the test kernel: minutes of pins, IOPFs and process churn; memory, maps and counts checked.
    Soak(soak::SoakArgs),
    /// Build (or find cached) the test kernel: Linux 6.12 with iommufd's IOPF mock and /dev/uacce_ctrl.
    Kernel(kernel::KernelArgs),
    /// Boot the test kernel on the patched QEMU: its SVA accelerator faults through the emulated VT-d; checks, then the tool's trace against the workloads.
    Sva(sva::SvaArgs),
    /// Build (or find cached) the QEMU with the SVA test accelerator: Debian's QEMU 10.2 source + xtask/qemu patches.
    Qemu(qemu::QemuArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Bench(args) => bench::run(&args),
        Cmd::Build(args) => build::run(&args),
        Cmd::CacheDir => cache::root().map(|p| println!("{}", p.display())),
        Cmd::Dist(args) => match dist::run(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(err) => Err(err),
        },
        Cmd::Setup(args) => setup::run(&(&args).into()),
        Cmd::Kernel(args) => smoke::run(&args),
        Cmd::Qemu(args) => qemu::run(&args),
        // The verdict line is the last one printed; a FAIL exits 1 quietly.
        Cmd::Sva(args) => match sva::run(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(err) => Err(err),
        },
        // PASS/FAIL is the last line; a FAIL exits 1 quietly.
        Cmd::Soak(args) => match soak::run(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(err) => Err(err),
        },
        Cmd::Demo(args) => match demo::run(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(err) => Err(err),
        },
        // The summary line is the last one printed; failures exit 1 quietly.
        Cmd::Test(args) => match test::run(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(err) => Err(err),
        },
        // The summary line must stay last: a failed matrix exits 1 quietly.
        Cmd::VmTest(args) => match vm_test::run(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(err) => Err(err),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
