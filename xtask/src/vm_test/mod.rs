//! `cargo xtask vm-test`: runs the tool against real kernels in QEMU.
//!
//! Each VM boots a stock kernel from the cache (`kernels/<name>/vmlinuz`,
//! put there by `cargo xtask setup`) with an initramfs holding busybox, the
//! tool and the `uacce-workload` guest program. Its `/init` traces the
//! workload's io_uring buffer registrations and prints the results on the
//! serial console; the host checks them against the workload's own
//! expectation and the kernel's `nr_foll_pin_*` counters (see [`report`]).
//!
//! Without `--kernel` the matrix runs: debian-6.1 with kprobes, debian-6.12
//! with fentry and with kprobes, debian-7.2 with fentry and with `auto`,
//! the test kernel with fentry and kprobes, and on arm64 (an emulated
//! `virt` machine, the tool cross-built by `xtask build`) Debian's 6.12
//! (`debian-6.12-arm64`) and the arm64 test kernel (`test-6.12-arm64`,
//! `cargo xtask kernel --arm64`), each with fentry and kprobes.
//! `--no-tool` boots each kernel once with the workload alone (checks the
//! harness and the kernel counters while the tool cannot be built).
//! Then the `pins` VMs ([`pinpaths`], [`busy`]; `--suite main|pins|all`):
//! every pin path with a real user, checked per function against the
//! workload's tally and vmstat, and the tracer started onto a busy
//! workload, stopped while it runs, three times.
//!
//! A scenario on [`crate::vm`]: the main VMs' `/init` is
//! `xtask/vm-guest/vm-test.sh` ([`script`]), the `pins` VMs'
//! `xtask/vm-guest/pins.sh`.
//!
//! Work files go to `vm/` in the cache: the shared base image, and per VM
//! `runs/<kernel>-<hooks>/` with `console.log` (the whole serial console)
//! and one file per result section. The VM image is deleted after a PASS
//! unless `--keep`.

mod arm64;
mod attribution;
mod busy;
mod pinpaths;
mod pinverdict;
mod report;
mod requests;
mod script;
mod summary;
mod testkernel;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;

use crate::base::Arch;
use crate::base::{cache, workspace_root};
use crate::toolchain::setup::{self, Need};
use crate::vm::guest::{GUEST_IOPF_WORKLOAD, GUEST_UACCE_CTRL_PIN};
use crate::vm::{build, console, image, qemu, Hooks};

/// What vm-test installs first: everything, as the matrix boots stock
/// kernels of both architectures.
const NEEDS: &[Need] = &[Need::BpfToolchain, Need::HostPackages, Need::StockKernels];

/// Options of `cargo xtask vm-test`.
#[derive(clap::Args, Debug)]
pub struct VmTestArgs {
    /// Kernel from the cache (debian-6.1, debian-6.12, debian-7.2,
    /// test-6.12, debian-6.12-arm64); without it, the whole matrix runs.
    #[arg(long)]
    kernel: Option<String>,
    /// Hooks to force; without --kernel, runs every kernel with them.
    #[arg(long, value_enum)]
    hooks: Option<Hooks>,
    /// Keep each VM's image after a PASS (logs are always kept).
    #[arg(long)]
    keep: bool,
    /// Run the workload alone, without the tool (checks the harness and the
    /// kernel's counters; the tool is not built).
    #[arg(long)]
    no_tool: bool,
    /// Buffer sizes the workload registers each round, in KiB.
    #[arg(long, default_value = "1024,64,4")]
    size_kib: String,
    /// Rounds of the workload.
    #[arg(long, default_value_t = 4)]
    count: u32,
    /// Seconds one VM may run before QEMU is killed (arm64 VMs: four times that).
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// Use the binaries already in target/release instead of building.
    #[arg(long)]
    no_build: bool,
    /// Which VMs: `main` (io_uring pins, IOPFs, fixture), `pins` (every
    /// pin path, then the tracer started onto a busy workload three
    /// times; `vm/pinpaths.rs`, `vm/busy.rs`) or `all`.
    #[arg(long, value_enum, default_value_t = Suite::All)]
    suite: Suite,
}

/// Which kind of VM (`--suite`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// Both.
    All,
    /// The io_uring/IOPF/fixture VM.
    Main,
    /// The pin-path and busy-start VM.
    Pins,
}

impl VmTestArgs {
    /// Options from `vm-test` command-line arguments (for other commands
    /// that run the matrix, e.g. `cargo xtask test`).
    pub fn parse_from(args: &[&str]) -> Result<Self> {
        crate::base::parse_args("vm-test", args)
    }
}

/// The kernels of the matrix and their hook modes.
const MATRIX: &[(&str, &[Hooks])] = &[
    ("debian-6.1", &[Hooks::Kprobe]),
    ("debian-6.12", &[Hooks::Fentry, Hooks::Kprobe]),
    ("debian-7.2", &[Hooks::Fentry, Hooks::Auto]),
    (TEST_KERNEL, &[Hooks::Fentry, Hooks::Kprobe]),
    (ARM64_STOCK_KERNEL, &[Hooks::Fentry, Hooks::Kprobe]),
    (ARM64_TEST_KERNEL, &[Hooks::Fentry, Hooks::Kprobe]),
];

/// The kernels and hook modes of the `pins` VMs ([`pinpaths`], [`busy`]):
/// each pin path on every kernel that has it, with fentry and kprobes on
/// the test kernels of both architectures.
const PINS_MATRIX: &[(&str, &[Hooks])] = &[
    ("debian-6.1", &[Hooks::Kprobe]),
    ("debian-6.12", &[Hooks::Fentry]),
    ("debian-7.2", &[Hooks::Fentry]),
    (TEST_KERNEL, &[Hooks::Fentry, Hooks::Kprobe]),
    (ARM64_TEST_KERNEL, &[Hooks::Fentry, Hooks::Kprobe]),
];

/// The project's test kernel cross-compiled for arm64 (`cargo xtask kernel
/// --arm64`): the same IOPF mock and fixture, IOMMU_IOPF through SMMUv3 SVA.
pub const ARM64_TEST_KERNEL: &str = "test-6.12-arm64";

/// Debian's stock arm64 6.12 kernel (`cargo xtask setup`), booted in an
/// emulated arm64 `virt` machine with the cross-built tool.
pub const ARM64_STOCK_KERNEL: &str = "debian-6.12-arm64";

/// The architecture of a kernel of the matrix: names ending in `-arm64`
/// are arm64 kernels, the rest x86-64.
fn arch_of(kernel: &str) -> Arch {
    if kernel.ends_with("-arm64") {
        Arch::Aarch64
    } else {
        Arch::X86_64
    }
}

/// How much longer than an x86-64 VM an arm64 VM may run: TCG emulates
/// arm64 about four times slower here (boot, BTF parsing, verifier).
const ARM64_TIMEOUT_FACTOR: u32 = 4;

/// The project's own 6.12 test kernel (`cargo xtask kernel`): real IO page
/// faults through the iommufd mock and the `/dev/uacce_ctrl` fixture.
pub const TEST_KERNEL: &str = "test-6.12";

/// One VM to run: a kernel and the hooks (`None`: workload only).
struct Job {
    kernel: String,
    hooks: Option<Hooks>,
    /// A `pins` VM (pin paths and busy start) rather than the main one.
    pins: bool,
}

impl Job {
    fn label(&self) -> String {
        format!(
            "{} ({}{})",
            self.kernel,
            self.hooks.map_or("no tool", Hooks::as_str),
            if self.pins { ", pins" } else { "" }
        )
    }

    fn dir_name(&self) -> String {
        format!(
            "{}-{}{}",
            self.kernel,
            self.hooks.map_or("no-tool", Hooks::as_str),
            if self.pins { "-pins" } else { "" }
        )
    }
}

/// The VMs `args` asks for.
fn jobs(args: &VmTestArgs) -> Vec<Job> {
    let mut jobs = Vec::new();
    if args.suite != Suite::Pins {
        jobs.extend(main_jobs(args));
    }
    if args.suite != Suite::Main && !args.no_tool {
        match &args.kernel {
            Some(k) => jobs.push(Job {
                kernel: k.clone(),
                hooks: Some(args.hooks.unwrap_or(Hooks::Auto)),
                pins: true,
            }),
            None => {
                for (kernel, hooks) in PINS_MATRIX {
                    let hooks = args.hooks.map_or_else(|| hooks.to_vec(), |h| vec![h]);
                    for h in hooks {
                        jobs.push(Job {
                            kernel: (*kernel).to_string(),
                            hooks: Some(h),
                            pins: true,
                        });
                    }
                }
            }
        }
    }
    jobs
}

/// The main VMs `args` asks for.
fn main_jobs(args: &VmTestArgs) -> Vec<Job> {
    let kernels: Vec<(String, Vec<Hooks>)> = match &args.kernel {
        Some(k) => vec![(k.clone(), vec![args.hooks.unwrap_or(Hooks::Auto)])],
        None => MATRIX
            .iter()
            .map(|(k, hooks)| {
                let hooks = args.hooks.map_or_else(|| hooks.to_vec(), |h| vec![h]);
                ((*k).to_string(), hooks)
            })
            .collect(),
    };
    let mut jobs = Vec::new();
    for (kernel, hooks) in kernels {
        if args.no_tool {
            jobs.push(Job {
                kernel,
                hooks: None,
                pins: false,
            });
        } else {
            for h in hooks {
                jobs.push(Job {
                    kernel: kernel.clone(),
                    hooks: Some(h),
                    pins: false,
                });
            }
        }
    }
    jobs
}

/// Refuses workload options that could not be passed to `sh` verbatim.
fn workload_args(args: &VmTestArgs) -> Result<String> {
    if args.size_kib.is_empty()
        || !args
            .size_kib
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',')
    {
        bail!(
            "--size-kib must be numbers separated by commas, got {:?}",
            args.size_kib
        );
    }
    Ok(format!(
        "iouring --size-kib {} --count {}",
        args.size_kib, args.count
    ))
}

/// Shared state of one `vm-test` invocation.
struct Ctx {
    /// The base image of each architecture the jobs need.
    base_images: std::collections::BTreeMap<Arch, PathBuf>,
    runs: PathBuf,
    workload_args: String,
    timeout: Duration,
    keep: bool,
}

/// Boots one VM and checks it; `Ok(false)` is a FAIL with its details
/// already printed.
fn run_job(ctx: &Ctx, job: &Job) -> Result<bool> {
    let arch = arch_of(&job.kernel);
    let base_image = ctx
        .base_images
        .get(&arch)
        .context("no base image for this architecture")?;
    let timeout = match arch {
        Arch::X86_64 => ctx.timeout,
        Arch::Aarch64 => ctx.timeout * ARM64_TIMEOUT_FACTOR,
    };
    // A pins VM starts the tracer four times, three of them onto a busy
    // workload, under single-threaded TCG.
    let timeout = if job.pins { timeout * 2 } else { timeout };
    let test_kernel = job.kernel == TEST_KERNEL || job.kernel == ARM64_TEST_KERNEL;
    // The test kernel's main VM starts five tracers (trace, summary, the
    // request tracer and the two recordings of the before/after pair) and
    // runs every IOPF scenario: half as long again (x86: 172 s of 180 were
    // used under a load average of 12).
    let timeout = if test_kernel && !job.pins {
        timeout * 3 / 2
    } else {
        timeout
    };
    let (kernel_dir, vmlinuz) = if test_kernel {
        let dir = crate::kernel::ensure_test_kernel_for(arch)?;
        let bz = dir.join(crate::kernel::image_name(arch));
        (dir, bz)
    } else {
        let dir = cache::kernels()?.join(&job.kernel);
        let vmlinuz = dir.join("vmlinuz");
        (dir, vmlinuz)
    };
    if !vmlinuz.is_file() {
        bail!(
            "kernel {} is not in the cache ({} missing); run `cargo xtask setup` first",
            job.kernel,
            vmlinuz.display()
        );
    }
    let dir = ctx.runs.join(job.dir_name());
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let hooks = job.hooks.map(Hooks::as_str);
    let script = if job.pins {
        pinpaths::init_script(hooks.unwrap_or("auto"), test_kernel)
    } else {
        script::init_script(&script::GuestPlan {
            hooks,
            workload_args: &ctx.workload_args,
            test_kernel,
        })
    };
    let img = dir.join("initramfs.cpio.gz");
    let mut extra: Vec<(PathBuf, &str)> = if test_kernel {
        let programs = crate::vm::programs::ensure(&kernel_dir, arch)?;
        vec![
            (programs.iopf(), GUEST_IOPF_WORKLOAD),
            (programs.pin(), GUEST_UACCE_CTRL_PIN),
        ]
    } else {
        Vec::new()
    };
    let bpftool_files = if job.pins && arch == Arch::X86_64 {
        busy::bpftool_files()?
    } else {
        Vec::new()
    };
    extra.extend(bpftool_files.iter().map(|(h, g)| (h.clone(), g.as_str())));
    image::write_vm_image_with(base_image, &script, &extra, &img)?;

    let log = dir.join("console.log");
    // The pins VM attaches onto functions other vCPUs are running:
    // single-threaded TCG (see `qemu::Tcg::Single`).
    let tcg = if job.pins {
        qemu::Tcg::Single
    } else {
        qemu::Tcg::Multi
    };
    let read_log = || -> Result<String> {
        Ok(String::from_utf8_lossy(
            &fs::read(&log).with_context(|| format!("reading {}", log.display()))?,
        )
        .into_owned())
    };
    let mut boot = qemu::boot_with(arch, &vmlinuz, &img, &log, timeout, tcg)?;
    let mut text = read_log()?;
    let mut console = console::parse(&text);
    // A kernel that dies before /init never ran the tool or the test, so
    // that boot says nothing about either: boot once more, and say so.
    let mut retried = None;
    if let Some(why) = panic_before_init(&console, &text) {
        let first = dir.join("console-first-boot.log");
        fs::rename(&log, &first).with_context(|| format!("keeping {}", first.display()))?;
        println!("  the kernel died before /init ({why}); booting once more");
        retried = Some(format!(
            "first boot: the kernel died before /init ({why}), console in {}; booted again",
            first.display()
        ));
        boot = qemu::boot_with(arch, &vmlinuz, &img, &log, timeout, tcg)?;
        text = read_log()?;
        console = console::parse(&text);
    }
    for (name, section) in &console.sections {
        let _ = fs::write(dir.join(name), section.text());
    }
    let mut verdict = if job.pins {
        let mut v = report::completeness(&console);
        pinpaths::check(&console, hooks, test_kernel, &mut v);
        busy::check(&console, &mut v);
        v
    } else {
        main_verdict(&console, job, hooks, test_kernel)
    };
    verdict
        .notes
        .insert(0, format!("QEMU ran {:.1} s", boot.elapsed.as_secs_f64()));
    if let Some(note) = retried {
        verdict.notes.insert(0, note);
    }
    match boot.status {
        None => verdict.failures.insert(
            0,
            format!("QEMU killed after {} s (time limit)", timeout.as_secs()),
        ),
        Some(s) if !s.success() => verdict.failures.insert(0, format!("QEMU exited with {s}")),
        Some(_) => {}
    }
    finish(ctx, &kernel_dir, &console, verdict, &img, &log, &text)
}

/// Why the kernel of a boot that never reached /init died, when its
/// console shows it (an oops or a panic), e.g. `Oops: int3` in
/// `sched_clock_tick`: Debian 7.2 under multi-threaded TCG once hit a
/// breakpoint of its own boot-time code patching.
fn panic_before_init(console: &console::Console, text: &str) -> Option<String> {
    if console.booted.is_some() {
        return None;
    }
    let line = |pat: &str| {
        text.lines()
            .find_map(|l| l.find(pat).map(|i| l[i..].trim().to_owned()))
    };
    let what = line("Oops:")
        .or_else(|| line("BUG:"))
        .or_else(|| line("Kernel panic"))?;
    Some(match line("RIP:") {
        Some(rip) => format!("{what}, {rip}"),
        None => what,
    })
}

/// The checks of a main VM.
fn main_verdict(
    console: &console::Console,
    job: &Job,
    hooks: Option<&str>,
    test_kernel: bool,
) -> report::Verdict {
    let mut verdict = report::check(
        console,
        &report::Expect {
            tool: job.hooks.is_some(),
            forced_hook: hooks.filter(|h| *h != "auto"),
            iopf_response: job
                .hooks
                .is_some()
                .then(|| iopf_response_of(&job.kernel))
                .flatten(),
            exclude_comms: if test_kernel {
                &[testkernel::FIXTURE_COMM]
            } else {
                &[]
            },
        },
    );
    if test_kernel && job.hooks.is_some() {
        testkernel::check(console, &mut verdict);
        attribution::check(console, &mut verdict);
        requests::check(console, &mut verdict);
        pinverdict::check(console, &mut verdict);
    }
    if job.kernel == ARM64_STOCK_KERNEL && job.hooks.is_some() {
        arm64::check(console, hooks.filter(|h| *h != "auto"), &mut verdict);
    }
    if job.hooks.is_some() {
        check_recorded_facts(console, &job.kernel, &mut verdict);
        summary::check(console, test_kernel, &mut verdict);
    }
    verdict
}

/// The facts the planner's and `doctor`'s tests replay
/// (`uacce-trace/tests/data/facts/<kernel>.json`) must be what the tool
/// reads from that kernel now: a change of the facts' format or of what
/// the tool asks the kernel shows here, not as a silently stale test.
fn check_recorded_facts(console: &console::Console, kernel: &str, v: &mut report::Verdict) {
    let Ok(root) = workspace_root() else {
        return;
    };
    let file = root.join(format!("uacce-trace/tests/data/facts/{kernel}.json"));
    let Ok(recorded) = fs::read_to_string(&file) else {
        v.notes.push(format!(
            "no recorded facts for {kernel} ({})",
            file.display()
        ));
        return;
    };
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
    let dumped = console.lines("facts").join("\n");
    let (mut recorded, mut dumped) = (parse(&recorded), parse(&dumped));
    if let (Some(a), Some(b)) = (recorded.as_mut(), dumped.as_mut()) {
        let types = |v: &serde_json::Value| v.pointer("/btf/Ok").cloned();
        if types(a) != types(b) {
            v.notes.push(format!(
                "vmlinux BTF types: {} recorded, {} in this build (set aside: not reproducible)",
                types(a).unwrap_or_default(),
                types(b).unwrap_or_default()
            ));
        }
        set_btf_types_aside(a, b);
    }
    match (recorded, dumped) {
        (Some(a), Some(b)) if a == b => v
            .notes
            .push(format!("recorded facts {} are current", file.display())),
        (Some(_), Some(_)) => v.fail(
            &["facts"],
            format!(
                "the kernel's facts differ from {}: copy this VM's `facts` log over it \
                 (and review the planner/doctor snapshots it changes)",
                file.display()
            ),
        ),
        (None, _) => v.fail(&[], format!("{} is not JSON", file.display())),
        (_, None) => v.fail(
            &["facts", "doctor.err"],
            "doctor --dump-facts wrote no JSON",
        ),
    }
}

/// Sets the vmlinux BTF type count aside in both facts (recorded `a`,
/// dumped `b`) when both read BTF: it is a property of the build, not of
/// the kernel's interfaces, and no plan depends on it. The project's test
/// kernels are built with pahole's parallel encoding (`-j`), which the
/// kernel's `scripts/Makefile.btf` says is unreproducible before pahole
/// 1.27: two builds of one source and config with Debian 12's pahole 1.24
/// gave 69,592 and 69,638 types.
fn set_btf_types_aside(a: &mut serde_json::Value, b: &mut serde_json::Value) {
    let counted = |v: &serde_json::Value| v.pointer("/btf/Ok").is_some_and(|n| n.is_u64());
    if counted(a) && counted(b) {
        a["btf"]["Ok"] = 0.into();
        b["btf"]["Ok"] = 0.into();
    }
}

/// Prints a checked VM's outcome; `Ok(false)` is a FAIL.
fn finish(
    ctx: &Ctx,
    kernel_dir: &Path,
    console: &console::Console,
    verdict: report::Verdict,
    img: &Path,
    log: &Path,
    text: &str,
) -> Result<bool> {
    let cached = fs::read_to_string(kernel_dir.join("version")).unwrap_or_default();
    match console.booted.as_deref() {
        Some(booted) => println!("  kernel {booted}"),
        None => println!("  kernel {} did not reach /init", cached.trim()),
    }
    for note in &verdict.notes {
        println!("  {note}");
    }
    if verdict.failures.is_empty() {
        if !ctx.keep {
            let _ = fs::remove_file(img);
        }
        return Ok(true);
    }
    println!("  guest console log: {}", log.display());
    for failure in &verdict.failures {
        println!("  FAILED: {failure}");
    }
    print_sections(console, &verdict, text);
    Ok(false)
}

/// Prints the sections a failure concerns (or the console's tail when the
/// guest printed none).
fn print_sections(console: &console::Console, verdict: &report::Verdict, log: &str) {
    const MAX_LINES: usize = 40;
    let mut names: Vec<&str> = vec!["status"];
    names.extend(verdict.relevant.iter().map(String::as_str));
    names.dedup();
    let mut printed = false;
    for name in names {
        let Some(section) = console.sections.get(name) else {
            println!("  ---- {name}: (not printed by the guest)");
            continue;
        };
        printed = true;
        println!("  ---- {name} ({} lines)", section.lines.len());
        for line in section.lines.iter().take(MAX_LINES) {
            println!("  | {line}");
        }
        if section.lines.len() > MAX_LINES {
            println!(
                "  | … {} more lines in the log",
                section.lines.len() - MAX_LINES
            );
        }
    }
    if !printed {
        let lines: Vec<&str> = log.lines().collect();
        println!("  ---- console (last {MAX_LINES} lines)");
        for line in lines.iter().skip(lines.len().saturating_sub(MAX_LINES)) {
            let printable: String = line
                .chars()
                .filter(|c| !c.is_control() || *c == '\t')
                .collect();
            println!("  | {printable}");
        }
    }
}

/// Labels of the VMs that passed and of those that failed.
#[derive(Debug, Default)]
pub struct Summary {
    /// e.g. `debian-6.12 (fentry)`.
    pub passed: Vec<String>,
    /// Same form; the reasons were printed as the VM finished.
    pub failed: Vec<String>,
}

/// Runs `cargo xtask vm-test`: setup first (idempotent), then the VMs;
/// `Ok(false)` when some VM failed (the summary line `N passed, N failed` is
/// the last thing printed).
pub fn run(args: &VmTestArgs) -> Result<bool> {
    setup::ensure(NEEDS)?;
    let summary = run_matrix(args)?;
    println!(
        "{} passed, {} failed",
        summary.passed.len(),
        summary.failed.len()
    );
    Ok(summary.failed.is_empty())
}

/// Builds, then boots and checks every VM `args` asks for (setup must have
/// run). Prints one PASS/FAIL line per VM but no summary line.
pub fn run_matrix(args: &VmTestArgs) -> Result<Summary> {
    if !cfg!(target_arch = "x86_64") {
        bail!("vm-test boots x86-64 guests with binaries built for the host; run it on an x86-64 machine");
    }
    let workload_args = workload_args(args)?;
    let jobs = jobs(args);
    let arches: std::collections::BTreeSet<Arch> =
        jobs.iter().map(|j| arch_of(&j.kernel)).collect();

    let work = cache::vm_work()?;
    let runs = work.join("runs");
    fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    let mut base_images = std::collections::BTreeMap::new();
    for arch in arches {
        qemu::check_installed_for(arch)?;
        let (tool, workload) = if arch == Arch::host() {
            build(args.no_tool, args.no_build)?
        } else {
            // Cross-built every time (cargo skips it when nothing changed):
            // the unit tier's release build is for the host only.
            let built = crate::toolchain::build::build_release(arch, !args.no_tool, true)?;
            let workload = built
                .workload
                .context("the cross build reported no uacce-workload")?;
            (built.tool, workload)
        };
        // One base image per checkout: the cache is shared by every clone
        // and worktree on the machine, and another one's `vm-test` must
        // not swap the guest programs under a run of this one.
        let checkout = checkout_tag()?;
        let base_image = if arch == Arch::host() {
            work.join(format!("base-{checkout}.cpio.gz"))
        } else {
            work.join(format!("base-{}-{checkout}.cpio.gz", arch.debian()))
        };
        let raw = image::base_archive_for(
            arch,
            &image::BaseContents {
                tool: tool.as_deref(),
                workload: &workload,
            },
        )?;
        image::write_gzip(&raw, &base_image)?;
        base_images.insert(arch, base_image);
    }
    let ctx = Ctx {
        base_images,
        runs,
        workload_args,
        timeout: Duration::from_secs(args.timeout),
        keep: args.keep,
    };

    let mut summary = Summary::default();
    for job in &jobs {
        println!("booting {}…", job.label());
        let start = Instant::now();
        let ok = match run_job(&ctx, job) {
            Ok(ok) => ok,
            Err(err) => {
                println!("  FAILED: {err:#}");
                false
            }
        };
        let secs = start.elapsed().as_secs_f64();
        if ok {
            println!("PASS {} in {secs:.1} s", job.label());
            summary.passed.push(job.label());
        } else {
            println!("FAIL {} in {secs:.1} s", job.label());
            summary.failed.push(job.label());
        }
    }
    Ok(summary)
}

/// A short tag of this checkout's path (FNV-1a), for per-checkout files in
/// the shared cache.
fn checkout_tag() -> Result<String> {
    let root = workspace_root()?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in root.to_string_lossy().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    Ok(format!("{:08x}", h as u32))
}

/// The IOPF response function a stock kernel of this name must have:
/// `iommu_page_response` up to 6.8, `iopf_group_response` from 6.9.
fn iopf_response_of(kernel: &str) -> Option<&'static str> {
    if kernel.starts_with("debian-") && kernel.ends_with("-arm64") {
        // IOMMU_IOPF is off in Debian's arm64 config: no core IOPF
        // functions (the SMMUv3 rows stand in, see `vm/arm64.rs`).
        return None;
    }
    let kernel = kernel.strip_suffix("-arm64").unwrap_or(kernel);
    let version = kernel
        .strip_prefix("debian-")
        .or_else(|| kernel.strip_prefix("test-"))?;
    let (major, minor) = version.split_once('.')?;
    let v = (major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?);
    Some(if v < (6, 9) {
        "iommu_page_response"
    } else {
        "iopf_group_response"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_btf_type_count_is_not_a_fact() {
        let facts = |btf: serde_json::Value| serde_json::json!({"release": "6.12.117", "btf": btf});
        let (mut a, mut b) = (
            facts(serde_json::json!({"Ok": 69592})),
            facts(serde_json::json!({"Ok": 69638})),
        );
        set_btf_types_aside(&mut a, &mut b);
        assert_eq!(a, b);
        // BTF read on one side only is a difference.
        let (mut a, mut b) = (
            facts(serde_json::json!({"Ok": 69592})),
            facts(serde_json::json!({"Err": "no BTF"})),
        );
        set_btf_types_aside(&mut a, &mut b);
        assert_ne!(a, b);
        // Everything else still counts.
        let (mut a, mut b) = (
            facts(serde_json::json!({"Ok": 1})),
            serde_json::json!({"release": "6.12.118", "btf": {"Ok": 2}}),
        );
        set_btf_types_aside(&mut a, &mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn a_boot_that_died_before_init_is_told_apart() {
        let died = "Booting from ROM...\n[    1.505187] Oops: int3: 0000 [#1] SMP NOPTI\n\
                    [    1.506094] RIP: 0010:sched_clock_tick+0x5/0xe0\n\
                    [    1.510216] Kernel panic - not syncing: Fatal exception in interrupt\n";
        assert_eq!(
            panic_before_init(&console::parse(died), died).as_deref(),
            Some("Oops: int3: 0000 [#1] SMP NOPTI, RIP: 0010:sched_clock_tick+0x5/0xe0")
        );
        // Booted: whatever came after /init is the test's to judge.
        let booted = format!("@@UT-BOOTED 7.2.13\n{died}");
        assert_eq!(panic_before_init(&console::parse(&booted), &booted), None);
        // Silent (a hang, a QEMU error): no retry.
        assert_eq!(
            panic_before_init(&console::parse("Booting from ROM...\n"), ""),
            None
        );
    }

    fn args(kernel: Option<&str>, hooks: Option<Hooks>, no_tool: bool) -> VmTestArgs {
        VmTestArgs {
            kernel: kernel.map(str::to_string),
            hooks,
            keep: false,
            no_tool,
            size_kib: "1024".into(),
            count: 4,
            timeout: 180,
            no_build: false,
            suite: Suite::Main,
        }
    }

    fn labels(a: &VmTestArgs) -> Vec<String> {
        jobs(a).iter().map(Job::label).collect()
    }

    #[test]
    fn matrix() {
        assert_eq!(
            labels(&args(None, None, false)),
            [
                "debian-6.1 (kprobe)",
                "debian-6.12 (fentry)",
                "debian-6.12 (kprobe)",
                "debian-7.2 (fentry)",
                "debian-7.2 (auto)",
                "test-6.12 (fentry)",
                "test-6.12 (kprobe)",
                "debian-6.12-arm64 (fentry)",
                "debian-6.12-arm64 (kprobe)",
                "test-6.12-arm64 (fentry)",
                "test-6.12-arm64 (kprobe)"
            ]
        );
        assert_eq!(
            labels(&args(None, None, true)),
            [
                "debian-6.1 (no tool)",
                "debian-6.12 (no tool)",
                "debian-7.2 (no tool)",
                "test-6.12 (no tool)",
                "debian-6.12-arm64 (no tool)",
                "test-6.12-arm64 (no tool)"
            ]
        );
        assert_eq!(
            labels(&args(Some("debian-6.12"), None, false)),
            ["debian-6.12 (auto)"]
        );
        assert_eq!(
            labels(&args(None, Some(Hooks::Fentry), false)),
            [
                "debian-6.1 (fentry)",
                "debian-6.12 (fentry)",
                "debian-7.2 (fentry)",
                "test-6.12 (fentry)",
                "debian-6.12-arm64 (fentry)",
                "test-6.12-arm64 (fentry)"
            ]
        );
    }

    #[test]
    fn pins_matrix() {
        let mut a = args(None, None, false);
        a.suite = Suite::Pins;
        assert_eq!(
            labels(&a),
            [
                "debian-6.1 (kprobe, pins)",
                "debian-6.12 (fentry, pins)",
                "debian-7.2 (fentry, pins)",
                "test-6.12 (fentry, pins)",
                "test-6.12 (kprobe, pins)",
                "test-6.12-arm64 (fentry, pins)",
                "test-6.12-arm64 (kprobe, pins)"
            ]
        );
        a.suite = Suite::All;
        assert_eq!(labels(&a).len(), 11 + 7);
        let mut a = args(Some("test-6.12"), Some(Hooks::Kprobe), false);
        a.suite = Suite::All;
        assert_eq!(
            labels(&a),
            ["test-6.12 (kprobe)", "test-6.12 (kprobe, pins)"]
        );
        // Without the tool there is nothing to compare: no pins VM.
        let mut a = args(None, None, true);
        a.suite = Suite::All;
        assert!(!labels(&a).iter().any(|l| l.contains("pins")));
    }

    #[test]
    fn arm64_kernels_are_recognised() {
        assert_eq!(arch_of(ARM64_STOCK_KERNEL), Arch::Aarch64);
        assert_eq!(arch_of("debian-6.12"), Arch::X86_64);
        assert_eq!(arch_of(TEST_KERNEL), Arch::X86_64);
        assert_eq!(arch_of(ARM64_TEST_KERNEL), Arch::Aarch64);
    }

    #[test]
    fn workload_args_are_checked() {
        let mut a = args(None, None, false);
        a.size_kib = "1024,64,4".into();
        assert!(workload_args(&a).is_ok());
        a.size_kib = "1024;reboot".into();
        assert!(workload_args(&a).is_err());
    }

    #[test]
    fn iopf_response_follows_the_kernel_version() {
        assert_eq!(iopf_response_of("debian-6.1"), Some("iommu_page_response"));
        assert_eq!(iopf_response_of("debian-6.12"), Some("iopf_group_response"));
        assert_eq!(iopf_response_of("debian-7.2"), Some("iopf_group_response"));
        assert_eq!(iopf_response_of("test-6.12"), Some("iopf_group_response"));
        assert_eq!(iopf_response_of("custom"), None);
        assert_eq!(iopf_response_of(ARM64_STOCK_KERNEL), None);
        assert_eq!(
            iopf_response_of(ARM64_TEST_KERNEL),
            Some("iopf_group_response")
        );
    }
}
