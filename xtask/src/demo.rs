//! `cargo xtask demo`: the README's main command. Boots the project's test
//! kernel under QEMU with a workload of a few processes that fault through
//! iommufd's mock device and pin pages, traces them with `uacce-trace`
//! inside the guest, and shows `uacce-trace top` live in this terminal.
//! Nothing is loaded into this machine's kernel.
//!
//! # Data path
//!
//! ```text
//! guest: uacce-trace record --format raw -o /dev/ttyS1   (second serial port, raw mode)
//!   -> QEMU -serial pipe: (the VM's second serial port into a FIFO in the cache)
//!   -> xtask (copies the stream; --record tees it into a file)
//!   -> host: uacce-trace top --replay -   (owns the terminal)
//! ```
//!
//! The guest's console (first serial port, QEMU's stdout) goes to
//! `vm/demo/console.log` in the cache and QEMU's own messages to
//! `vm/demo/qemu.log`, never over the screen. Until the raw stream starts (boot, BPF verification under
//! TCG) this prints progress: the build steps and the guest's `[demo]`
//! lines. `top` starts when the stream's first bytes arrive.
//!
//! # The workload ([`workload`], guest program `xtask/kernel/uacce_demo.c`)
//!
//! Four processes for `--seconds`: `dma-copy` faults steadily with short
//! response delays; `ml-infer` faults with a long tail of delays, then
//! (at 40 % of the run) pins its buffer through `/dev/uacce_ctrl`: its
//! faults go on for 1.5 s inside the pinned range (`FINPIN` counts them),
//! then stop; `zip-job` faults in bursts; `rdma-reg` pins a buffer with
//! io_uring and keeps registering and unregistering another one (pin
//! calls/s, no faults). The three faulting processes work in requests
//! (calls of [`REQUEST_SYMBOL`], which the guest's tracer probes with
//! `--op`); a fault that falls due is raised inside the next request.
//! `--pin never|early` changes only `ml-infer`: it never pins, or pins
//! before its first fault; `--before-after DIR` records that pair and
//! checks `uacce-trace compare` on it ([`run_pin_pair`]).
//!
//! # `--sva`: the emulated SVA path
//!
//! The same boot, stream and `top`, on the SVA machine of `cargo xtask sva`
//! (the patched QEMU, [`qemu::sva_command`], work folder `vm/demo-sva`): two
//! processes ([`sva_workload`]) run `sva-workload --rounds --gap-ms`
//! (`xtask/kernel/sva_workload.c`) through links of their names on the
//! `uacce-sva-test` accelerator, each with its own PASID: fault rounds on
//! fresh pages for half the run (page requests through the emulated VT-d,
//! reported from its IRQ thread), then a pin through `/dev/uacce_ctrl` and
//! rounds on the pinned pages without faults. `--check` runs
//! [`check_sva_recording`]. No fallback: without the patched QEMU or the
//! test kernel there is no SVA path (QEMU builds once, 11-35 min).
//!
//! Without the test kernel (it could not be built) the demo falls back to
//! a stock Debian kernel with pins only (io_uring buffer registrations of
//! the `uacce-workload` program), and says so.
//!
//! # Ending
//!
//! `q` (or Ctrl-C, a key while `top` has the terminal) quits `top`; then
//! QEMU is killed. When the guest finishes first, the stream ends and `top`
//! shows the final state until `q`. Ctrl-C before `top` started stops
//! QEMU. QEMU runs in its own process group, so the terminal's Ctrl-C
//! reaches only xtask (and `top`), which kill it; the terminal settings
//! seen at start are restored at the end.
//!
//! `--no-tui` runs without `top` (for tests and for making the shipped
//! recording), `--record FILE` keeps the stream, and `--check` then
//! verifies the recording through `uacce-trace record --replay` and
//! `uacce-trace report` ([`check_recording`]), request counts against the
//! program's own tallies included.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::base::cache;
use crate::kernel;
use crate::toolchain::setup::{self, Need};
use crate::toolchain::stock;
use crate::vm::{self, guest, image, programs, qemu, Hooks};

/// Tenths of a second the guest waits for the tracer's "recording to" line
/// (BTF parsing and BPF verification are slow under TCG).
const TRACE_START_TICKS: u32 = 900;
/// The line the guest prints when everything ran.
const DONE: &str = "[demo] done.";
/// Where the guest finds the demo program.
const GUEST_DEMO: &str = "/usr/bin/uacce-demo";
/// The guest's tty that carries the raw recording (QEMU's second `-serial`).
const STREAM_TTY: &str = "/dev/ttyS1";
/// Raw recording interval in the guest: the stream is flushed at least this
/// often, so `top` lags the guest by at most about this much.
const STREAM_INTERVAL: &str = "250ms";
/// Stock kernel of the fallback.
const FALLBACK_KERNEL: &str = "debian-6.12";

/// When `ml-infer` pins its buffer (`cargo xtask demo --pin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pin {
    /// At 40 % of the run: its faults (and its requests' faults) stop
    /// 1.5 s later, while the other processes go on faulting.
    Midway,
    /// Never: it faults all the run (a "before pinning" recording).
    Never,
    /// At its start, before any fault: it never faults (an "after
    /// pinning" recording).
    Early,
}

impl Pin {
    fn as_str(self) -> &'static str {
        match self {
            Pin::Midway => "midway",
            Pin::Never => "never",
            Pin::Early => "early",
        }
    }
}

/// Options of `cargo xtask demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Seconds the guest workload runs (the live view stays until `q`).
    #[arg(long, default_value_t = 60)]
    seconds: u32,
    /// When ml-infer pins its buffer: `midway` (the demo's story), `never`
    /// and `early` make a before/after pair for `uacce-trace compare`
    /// (README, "Before and after").
    #[arg(long, value_enum, default_value_t = Pin::Midway)]
    pin: Pin,
    /// Record the before/after pair into DIR instead (`--pin never`, then
    /// `--pin early`, 10 s each, no `top`, both checked) and print
    /// `uacce-trace compare --metric p99 --comm ml-infer` on it; exit
    /// status 1 when a run or the expected verdict fails.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["record", "check", "pin", "stock"])]
    before_after: Option<PathBuf>,
    /// Do not start `top`: print progress until the guest is done (tests,
    /// making a recording).
    #[arg(long)]
    no_tui: bool,
    /// Also write the raw recording streamed from the guest to FILE.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// After the run, check the recording (faulting and pinning processes,
    /// the pinning process's faults stopping); exit status 1 when it fails.
    /// Needs --record.
    #[arg(long, requires = "record")]
    check: bool,
    /// Boot a stock kernel (debian-6.1, debian-6.12, debian-7.2) instead
    /// of the test kernel: pins only, no IOPFs.
    #[arg(long, value_name = "NAME")]
    stock: Option<String>,
    /// Hooks the tracer uses (`uacce-trace record --hooks`).
    #[arg(long, value_enum, default_value_t = Hooks::Auto)]
    hooks: Hooks,
    /// Seconds before QEMU is stopped (default: the workload plus 5 minutes).
    #[arg(long)]
    timeout: Option<u64>,
    /// Use the release binaries already in target/ (no cargo build).
    #[arg(long)]
    no_build: bool,
    /// The emulated SVA path instead of iommufd's mock: the patched QEMU of
    /// `cargo xtask qemu` (built once, 11-35 min on 2 cores), whose
    /// uacce-sva-test accelerator faults through the emulated VT-d; two
    /// processes with their own PASIDs fault for half the run, then pin
    /// through /dev/uacce_ctrl and stop faulting.
    #[arg(long, conflicts_with_all = ["stock", "pin", "before_after"])]
    sva: bool,
}

impl DemoArgs {
    /// The VM tier's check of the demo path (`cargo xtask test`): no TUI, a
    /// 12-s workload recorded into `record`, checked.
    pub fn for_test(record: PathBuf, no_build: bool) -> DemoArgs {
        Self::for_test_pinned(record, no_build, Pin::Midway, 12)
    }

    /// The same for one side of the before/after pair: `pin` never or
    /// early, `seconds` long.
    pub fn for_test_pinned(record: PathBuf, no_build: bool, pin: Pin, seconds: u32) -> DemoArgs {
        DemoArgs {
            seconds,
            pin,
            before_after: None,
            no_tui: true,
            record: Some(record),
            check: true,
            stock: None,
            hooks: Hooks::Auto,
            timeout: Some(300),
            no_build,
            sva: false,
        }
    }

    /// `demo --sva --no-tui --check` for the VM tier: a `seconds`-long
    /// workload recorded into `record`, checked. QEMU may run for
    /// [`SVA_TEST_TIMEOUT_S`].
    pub fn for_sva_test(record: PathBuf, no_build: bool, seconds: u32) -> DemoArgs {
        DemoArgs {
            sva: true,
            timeout: Some(SVA_TEST_TIMEOUT_S),
            ..Self::for_test_pinned(record, no_build, Pin::Midway, seconds)
        }
    }
}

/// Seconds QEMU may run in the VM tier's `demo --sva` check: a 12-s run
/// took 27-28 s at load 1-5, and 240 s when it ran under `nice` beside two
/// full-priority busy loops on the 2-core machine (TCG starved; the check
/// still passed, its bounds being in guest time); 2.5 times that.
const SVA_TEST_TIMEOUT_S: u64 = 600;

/// Set by the SIGINT/SIGTERM handler.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Which kernel the demo boots.
enum Guest {
    /// The test kernel folder (bzImage and the guest programs' headers).
    Test(PathBuf),
    /// A stock kernel: its vmlinuz and a name for messages.
    Stock { vmlinuz: PathBuf, name: String },
    /// The test kernel folder on the SVA machine of the patched QEMU
    /// (`qemu`).
    Sva { dir: PathBuf, qemu: PathBuf },
}

/// How a demo run ended.
/// What the demo installs first: the eBPF toolchain (it builds the tool),
/// QEMU, the guest's busybox and gzip for the initramfs. The test kernel
/// builds itself; a stock kernel is fetched only for the fallback.
const NEEDS: &[Need] = &[
    Need::BpfToolchain,
    Need::Packages(&["qemu-system-x86", "busybox-static", "gzip"]),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoResult {
    /// The guest got to the end (and, with `--check`, the check passed).
    Passed,
    /// The guest did not get to the end, or the check failed.
    Failed,
    /// The test kernel could not be built (the reason): the demo ran on the
    /// stock-kernel fallback, where there are no IO page faults and the
    /// check only asks for pin calls; it passed that much.
    Fallback(String),
}

/// Runs the demo; `Ok(false)` when the guest did not get to the end or the
/// check failed, and, under `CI=true`, when it ran on the stock-kernel
/// fallback (elsewhere the fallback says so and is `Ok(true)`).
pub fn run(args: &DemoArgs) -> Result<bool> {
    let result = match &args.before_after {
        Some(dir) => {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            run_pin_pair(dir, args.no_build)?
        }
        None => run_demo(args)?,
    };
    Ok(match result {
        DemoResult::Passed => true,
        DemoResult::Failed => false,
        DemoResult::Fallback(_) if crate::base::ci() => {
            println!("demo: the stock-kernel fallback fails under CI=true");
            false
        }
        DemoResult::Fallback(_) => true,
    })
}

/// Runs the demo; see [`DemoResult`].
pub fn run_demo(args: &DemoArgs) -> Result<DemoResult> {
    if !cfg!(target_arch = "x86_64") {
        bail!("the demo boots an x86-64 guest with binaries built for the host; run it on an x86-64 machine");
    }
    if args.seconds < 5 {
        bail!("--seconds must be at least 5");
    }
    if args.sva {
        println!(
            "uacce-trace demo --sva: installs what it needs, builds the patched QEMU once (11-35 min\n\
             on 2 cores) and the test kernel once (about 6 min), builds the tool, boots the test kernel\n\
             on QEMU's emulated VT-d with the uacce-sva-test accelerator and shows `uacce-trace top`\n\
             live while two processes fault through it, then pin. Emulation under TCG, not hardware.\n\
             Nothing is loaded into this machine's kernel."
        );
    } else {
        println!(
            "uacce-trace demo: installs what it needs (first run: several minutes; the test kernel\n\
             builds once, about 6 min on 2 cores), builds the tool, boots the test kernel under QEMU and\n\
             shows `uacce-trace top` live while four processes fault and pin in the VM.\n\
             Nothing is loaded into this machine's kernel."
        );
    }
    let _ = std::io::stdout().flush();
    setup::ensure(NEEDS)?;
    if !args.sva {
        qemu::check_installed()?;
    }
    // Why the demo runs on the fallback, if it does.
    let mut fallback = None;
    let guest = match &args.stock {
        Some(name) => stock_guest(name)?,
        // No fallback: the SVA path needs both the patched QEMU and the test
        // kernel's driver.
        None if args.sva => Guest::Sva {
            qemu: crate::qemu::ensure_qemu()?,
            dir: kernel::ensure_test_kernel()?,
        },
        None => match kernel::ensure_test_kernel() {
            Ok(dir) => Guest::Test(dir),
            Err(e) => {
                println!(
                    "demo: the test kernel could not be built ({e:#});\n\
                     demo: FALLBACK: stock Debian {FALLBACK_KERNEL}: pins only, no IO page faults."
                );
                fallback = Some(format!("the test kernel could not be built: {e:#}"));
                stock_guest(FALLBACK_KERNEL)?
            }
        },
    };
    let passed = || match &fallback {
        None => DemoResult::Passed,
        Some(why) => DemoResult::Fallback(why.clone()),
    };

    let (tool, workload) = vm::build(false, args.no_build)?;
    let tool = tool.context("the build did not produce uacce-trace")?;
    // Its own folder: `demo` and `demo --sva` may run at once.
    let work = cache::vm_work()?.join(if args.sva { "demo-sva" } else { "demo" });
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let base = work.join("base.cpio.gz");
    let raw = image::base_archive(&image::BaseContents {
        tool: Some(&tool),
        workload: &workload,
    })?;
    image::write_gzip(&raw, &base)?;
    let initrd = work.join("initramfs.cpio.gz");
    let (kernel_image, script, extra) = match &guest {
        Guest::Test(dir) => (
            dir.join("bzImage"),
            init_script(args.hooks, args.seconds, args.pin, true),
            vec![(
                programs::ensure(dir, crate::base::Arch::X86_64)?.demo(),
                GUEST_DEMO,
            )],
        ),
        Guest::Stock { vmlinuz, .. } => (
            vmlinuz.clone(),
            init_script(args.hooks, args.seconds, args.pin, false),
            Vec::new(),
        ),
        Guest::Sva { dir, .. } => (
            dir.join("bzImage"),
            sva_init_script(args.hooks, args.seconds),
            vec![(
                programs::ensure(dir, crate::base::Arch::X86_64)?.sva(),
                GUEST_SVA,
            )],
        ),
    };
    if extra.is_empty() {
        image::write_vm_image(&base, &script, &initrd)?;
    } else {
        image::write_vm_image_with(&base, &script, &extra, &initrd)?;
    }
    let console = work.join("console.log");
    let qemu_log = work.join("qemu.log");

    let what = match &guest {
        Guest::Test(dir) => format!(
            "the test kernel ({})",
            fs::read_to_string(dir.join("version"))
                .unwrap_or_default()
                .trim()
        ),
        Guest::Stock { name, .. } => format!("stock {name} (pins only)"),
        Guest::Sva { dir, .. } => format!(
            "the test kernel ({}) on the SVA machine (emulated VT-d and accelerator)",
            fs::read_to_string(dir.join("version"))
                .unwrap_or_default()
                .trim()
        ),
    };
    println!();
    println!(
        "booting {what} under QEMU (TCG): ~1 min until the tracer runs, then a {} s workload{}.",
        args.seconds,
        if args.no_tui {
            ""
        } else {
            "; `top` starts with the stream, q quits"
        }
    );
    println!("guest console: {}", console.display());
    let _ = std::io::stdout().flush();

    let timeout = Duration::from_secs(
        args.timeout
            .unwrap_or(u64::from(args.seconds) + 300)
            .max(30),
    );
    let terminal = Terminal::save();
    let outcome = boot(&Boot {
        kernel: &kernel_image,
        initrd: &initrd,
        console: &console,
        qemu_log: &qemu_log,
        tool: &tool,
        sva_qemu: match &guest {
            Guest::Sva { qemu, .. } => Some(qemu.as_path()),
            _ => None,
        },
        record: args.record.as_deref(),
        tui: !args.no_tui,
        timeout,
    });
    terminal.restore();
    let outcome = outcome?;

    println!();
    println!("guest console: {}", console.display());
    if let Some(r) = &args.record {
        println!(
            "recording: {} ({} bytes)",
            r.display(),
            outcome.stream_bytes
        );
    }
    if let Some(code) = outcome.top_status {
        if code != 0 {
            println!("uacce-trace top exited with status {code}");
        }
    }
    if outcome.interrupted {
        println!("interrupted: QEMU stopped");
        return Ok(DemoResult::Failed);
    }
    if outcome.timed_out {
        println!("QEMU stopped after {} s (--timeout)", timeout.as_secs());
        return Ok(DemoResult::Failed);
    }
    if outcome.quit_early {
        println!("top quit before the guest finished: QEMU stopped");
        return Ok(if outcome.top_status == Some(0) {
            passed()
        } else {
            DemoResult::Failed
        });
    }
    if !outcome.done {
        println!(
            "the guest did not finish the demo; its console is in {}",
            console.display()
        );
        if let Ok(text) = fs::read_to_string(&console) {
            for line in text.lines().rev().take(15).collect::<Vec<_>>().iter().rev() {
                println!("  | {}", line.trim_end());
            }
        }
        return Ok(DemoResult::Failed);
    }
    println!(
        "demo finished in {:.1} s ({} bytes streamed).",
        outcome.elapsed.as_secs_f64(),
        outcome.stream_bytes
    );
    if args.check {
        let Some(rec) = &args.record else {
            bail!("--check needs --record");
        };
        let console_text = fs::read_to_string(&console)
            .with_context(|| format!("reading {}", console.display()))?;
        let test_kernel = matches!(guest, Guest::Test(_));
        let checked = if args.sva {
            check_sva_recording(&tool, rec, &console_text, args.seconds)
        } else {
            check_recording(&tool, rec, &console_text, test_kernel, args.pin)
        };
        return match checked {
            Ok(lines) => {
                for l in lines {
                    println!("check: ok: {l}");
                }
                match &fallback {
                    None => println!("demo check passed"),
                    Some(why) => println!(
                        "demo check: FALLBACK, not the demo's check: on stock {FALLBACK_KERNEL} \
                         only pin calls were asked for (pins > 0); the IO page fault checks did \
                         not run ({why})"
                    ),
                }
                Ok(passed())
            }
            Err(e) => {
                println!("demo check FAILED: {e:#}");
                Ok(DemoResult::Failed)
            }
        };
    }
    if let Some(why) = &fallback {
        println!("demo: FALLBACK: ran on stock {FALLBACK_KERNEL}, pins only ({why})");
    }
    if !args.no_tui {
        println!("Next: `cargo xtask test` runs every test tier.");
    }
    Ok(passed())
}

/// Seconds of each run of the before/after pair in the VM tier: 10 s of
/// ml-infer's 100 requests a second close the p99 intervals (368 needed).
pub const PAIR_SECONDS: u32 = 10;

/// The before/after pinning pair (README, "Before and after"): the demo
/// with `--pin never`, then with `--pin early`, each recorded into `dir`
/// and checked, then `uacce-trace compare` on the two ([`check_pair`]).
/// A run that did not pass (or fell back) ends it with its result.
pub fn run_pin_pair(dir: &Path, no_build: bool) -> Result<DemoResult> {
    let before = dir.join("demo-pin-never.utrace");
    let after = dir.join("demo-pin-early.utrace");
    let mut built = no_build;
    for (pin, rec) in [(Pin::Never, &before), (Pin::Early, &after)] {
        println!(
            "demo pair: --pin {} --record {}",
            pin.as_str(),
            rec.display()
        );
        match run_demo(&DemoArgs::for_test_pinned(
            rec.clone(),
            built,
            pin,
            PAIR_SECONDS,
        ))? {
            DemoResult::Passed => {}
            other => return Ok(other),
        }
        built = true;
    }
    let (tool, _) = vm::build(false, true)?;
    let tool = tool.context("no uacce-trace binary")?;
    let text = Command::new(&tool)
        .args([
            "compare",
            "--metric",
            PAIR_METRIC,
            "--comm",
            PINNING_PROCESS,
        ])
        .arg(&before)
        .arg(&after)
        .output()
        .with_context(|| format!("running {} compare", tool.display()))?;
    println!(
        "\n$ uacce-trace compare --metric {PAIR_METRIC} --comm {PINNING_PROCESS} {} {}\n{}",
        before.display(),
        after.display(),
        String::from_utf8_lossy(&text.stdout)
    );
    Ok(match check_pair(&tool, &before, &after) {
        Ok(lines) => {
            for l in lines {
                println!("pair: ok: {l}");
            }
            println!("demo pair check passed");
            DemoResult::Passed
        }
        Err(e) => {
            println!("demo pair check FAILED: {e:#}");
            DemoResult::Failed
        }
    })
}

/// `uacce-trace compare --json --metric p99 [--comm ml-infer] BEFORE
/// AFTER`: its JSON and exit status.
fn compare_json(
    tool: &Path,
    before: &Path,
    after: &Path,
    comm: Option<&str>,
) -> Result<(Value, i32)> {
    let mut cmd = Command::new(tool);
    cmd.args(["compare", "--json", "--metric", PAIR_METRIC]);
    if let Some(c) = comm {
        cmd.args(["--comm", c]);
    }
    let out = cmd
        .arg(before)
        .arg(after)
        .output()
        .with_context(|| format!("running {} compare", tool.display()))?;
    let code = out.status.code().unwrap_or(-1);
    let json = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "`uacce-trace compare` (exit {code}) printed no JSON: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    Ok((json, code))
}

/// The metric of the pair's verdict: 10-s runs have about 1000 requests of
/// ml-infer, enough for p99 (368), not for p99.9 (3688).
pub const PAIR_METRIC: &str = "p99";

/// The pair's checks: `compare --comm ml-infer` meets the goal (exit 0:
/// ml-infer's IOPFs eliminated, its op p99 reduced and the faulted share of
/// its p99 tail eliminated); `compare` of every process does not (exit 1
/// or 3: the other processes did not change, and their IOPF p99s rest on
/// too few faults to be called reduced). Returns what was checked.
fn check_pair(tool: &Path, before: &Path, after: &Path) -> Result<Vec<String>> {
    let (only, code) = compare_json(tool, before, after, Some(PINNING_PROCESS))?;
    let (all, all_code) = compare_json(tool, before, after, None)?;
    check_pair_json(&only, code, &all, all_code)
}

/// [`check_pair`] on compare's JSON and exit codes.
fn check_pair_json(only: &Value, code: i32, all: &Value, all_code: i32) -> Result<Vec<String>> {
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let op_p99 = |doc: &Value, comm: &str| -> Option<Value> {
        doc.get("requests")?
            .as_array()?
            .iter()
            .find(|r| str_of(r, "comm") == comm && str_of(r, "op") == REQUEST_SYMBOL)?
            .get("quantiles")?
            .as_array()?
            .iter()
            .find(|q| str_of(q, "quantile") == PAIR_METRIC)
            .cloned()
    };
    let mut ok = Vec::new();
    let q = op_p99(only, PINNING_PROCESS)
        .with_context(|| format!("compare has no {PINNING_PROCESS} {REQUEST_SYMBOL} verdict"))?;
    let (latency, share) = (str_of(&q, "verdict"), str_of(&q, "faulted_tail_verdict"));
    let side = |k: &str| {
        q.get(k)
            .and_then(|s| s.get("metric_ns"))
            .and_then(Value::as_u64)
            .map_or_else(
                || "-".to_string(),
                |ns| format!("{:.0} µs", ns as f64 / 1e3),
            )
    };
    let iopf = only
        .get("processes")
        .and_then(Value::as_array)
        .and_then(|p| p.iter().find(|p| str_of(p, "comm") == PINNING_PROCESS))
        .map(|p| str_of(p, "verdict"));
    if latency != "reduced"
        || share != "eliminated"
        || iopf.as_deref() != Some("eliminated")
        || code != 0
    {
        bail!(
            "compare --comm {PINNING_PROCESS} --metric {PAIR_METRIC}: exit {code} (want 0), op \
             {PAIR_METRIC} {latency} (want reduced), faulted tail {share} (want eliminated), \
             IOPFs {iopf:?} (want eliminated); reasons {:?}",
            only.get("reasons")
        );
    }
    ok.push(format!(
        "compare --comm {PINNING_PROCESS} --metric {PAIR_METRIC}: exit 0; its {REQUEST_SYMBOL} \
         {PAIR_METRIC} reduced ({} → {}), the faulted share of its {PAIR_METRIC} tail \
         eliminated, its IOPFs eliminated",
        side("baseline"),
        side("candidate")
    ));
    if all_code != 1 && all_code != 3 {
        bail!(
            "compare of every process: exit {all_code}, want 1 or 3 (the other processes did not \
             change): {:?}",
            all.get("reasons")
        );
    }
    let dma = op_p99(all, "dma-copy")
        .map(|q| str_of(&q, "verdict"))
        .context("compare has no dma-copy request verdict")?;
    ok.push(format!(
        "compare of every process: exit {all_code} (not met: the others did not pin); dma-copy's \
         {REQUEST_SYMBOL} {PAIR_METRIC}: {dma}"
    ));
    Ok(ok)
}

/// The stock kernel `name` (`debian-6.12` or `6.12`), installed by setup.
fn stock_guest(name: &str) -> Result<Guest> {
    let full = if name.starts_with("debian-") {
        name.to_string()
    } else {
        format!("debian-{name}")
    };
    let kernel = stock::kernel_list()
        .iter()
        .find(|k| k.name == full)
        .copied()
        .with_context(|| {
            format!(
                "unknown kernel {name:?}; choose one of: {}",
                stock::kernel_list()
                    .iter()
                    .map(|k| k.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    stock::ensure_stock_kernel(kernel.name)?;
    let vmlinuz = stock::kernel_dir(kernel.name)?.join("vmlinuz");
    if !vmlinuz.is_file() {
        bail!("{} is missing after setup", vmlinuz.display());
    }
    Ok(Guest::Stock {
        vmlinuz,
        name: kernel.name.to_string(),
    })
}

/// One process of the demo workload.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoProcess {
    /// Its command name (what `top` shows).
    pub name: &'static str,
    /// Arguments of `uacce-demo` after `--name NAME --seconds S`.
    pub args: String,
    /// Whether it faults.
    pub faults: bool,
    /// Whether it pins.
    pub pins: bool,
    /// Whether it makes requests (calls of [`REQUEST_SYMBOL`]).
    pub requests: bool,
}

/// The demo program's request function, traced with `--op`.
pub const REQUEST_SYMBOL: &str = "demo_request";

/// The test-kernel workload for a run of `seconds` with `ml-infer`
/// pinning as `pin` says (see the module docs).
pub fn workload(seconds: u32, pin: Pin) -> Vec<DemoProcess> {
    let pin_at = f64::from(seconds) * 0.4;
    let ml_pin = match pin {
        Pin::Midway => format!(" --pin-with uacce --pin-at {pin_at:.1} --faults-after-pin 1.5"),
        Pin::Never => String::new(),
        Pin::Early => " --pin-with uacce --pin-at 0 --faults-after-pin 0".into(),
    };
    vec![
        DemoProcess {
            name: "dma-copy",
            args: "--rate 20 --delay-us 20,400 --pasid 1 --pages 128 --request-rate 100 \
                   --request-us 100"
                .into(),
            faults: true,
            pins: false,
            requests: true,
        },
        DemoProcess {
            name: "ml-infer",
            args: format!(
                "--rate 30 --delay-us 50,20000 --pasid 2 --pages 256 --request-rate 100 \
                 --request-us 150{ml_pin}"
            ),
            faults: pin != Pin::Early,
            pins: pin != Pin::Never,
            requests: true,
        },
        DemoProcess {
            name: "zip-job",
            args: "--rate 60 --burst 2000,3000 --delay-us 10,250 --pasid 3 --pages 64 \
                   --request-rate 50 --request-us 200"
                .into(),
            faults: true,
            pins: false,
            requests: true,
        },
        DemoProcess {
            name: "rdma-reg",
            args: "--pin-with iouring --pin-at 1 --pages 32 --churn-ms 1000 --churn-pages 8".into(),
            faults: false,
            pins: true,
            requests: false,
        },
    ]
}

/// The name of the process that pins and then stops faulting.
pub const PINNING_PROCESS: &str = "ml-infer";

/// The guest script (parameters in its header comment).
const SCRIPT: &str = include_str!("../vm-guest/demo.sh");

/// The guest's `/init`: its parameters, then `vm-guest/demo.sh`.
fn init_script(hooks: Hooks, seconds: u32, pin: Pin, test_kernel: bool) -> String {
    let processes: Vec<String> = workload(seconds, pin)
        .iter()
        .map(|p| format!("{} {}", p.name, p.args))
        .collect();
    let pin_note = match pin {
        Pin::Midway => format!(
            "ml-infer pins its buffer at {:.0} s and its faults stop",
            f64::from(seconds) * 0.4
        ),
        Pin::Never => "ml-infer never pins (--pin never)".into(),
        Pin::Early => "ml-infer pins its buffer at its start and never faults (--pin early)".into(),
    };
    let op = if test_kernel {
        format!("{GUEST_DEMO}:{REQUEST_SYMBOL}")
    } else {
        String::new()
    };
    demo_init(hooks, seconds, test_kernel, pin_note, op, &processes, "")
}

/// The guest's `/init` of `demo --sva`: [`sva_workload`] on the SVA
/// machine.
fn sva_init_script(hooks: Hooks, seconds: u32) -> String {
    let processes: Vec<String> = sva_workload(seconds)
        .iter()
        // --shared-vmstat: both pin at about the same time, so one's
        // nr_foll_pin_acquired delta may hold the other's pin (seen: 48 =
        // 16 + 32); `cargo xtask sva` checks pins against vmstat.
        .map(|p| {
            format!(
                "{} {} --shared-vmstat --rounds {} --gap-ms {}",
                p.name, p.pages, p.rounds, p.gap_ms
            )
        })
        .collect();
    demo_init(
        hooks,
        seconds,
        true,
        String::new(),
        String::new(),
        &processes,
        GUEST_SVA,
    )
}

/// `vm-guest/demo.sh` with its parameters (see its header).
fn demo_init(
    hooks: Hooks,
    seconds: u32,
    test_kernel: bool,
    pin_note: String,
    op: String,
    processes: &[String],
    sva: &str,
) -> String {
    guest::init(
        "demo",
        &[
            ("TOOL", image::GUEST_TOOL.into()),
            ("WORKLOAD", image::GUEST_WORKLOAD.into()),
            ("DEMO", GUEST_DEMO.into()),
            ("SVA", sva.into()),
            ("HOOKS", hooks.as_str().into()),
            ("TTY", STREAM_TTY.into()),
            ("INTERVAL", STREAM_INTERVAL.into()),
            ("START_TICKS", TRACE_START_TICKS.to_string()),
            ("RUN_SECONDS", seconds.to_string()),
            ("TEST_KERNEL", u8::from(test_kernel).to_string()),
            ("PIN_NOTE", pin_note),
            ("OP", op),
            ("PROCESSES", processes.join("\n")),
        ],
        SCRIPT,
    )
}

/// Where the guest finds the SVA workload program (`xtask/kernel/sva_workload.c`).
const GUEST_SVA: &str = "/usr/bin/sva-workload";

/// One process of `demo --sva`: `sva-workload` run through a link named
/// `name` (its command name), `rounds` fault phases of `pages` fresh pages
/// `gap_ms` apart, then its pin through `/dev/uacce_ctrl` and `rounds`
/// pinned phases on the pinned pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvaProcess {
    pub name: &'static str,
    pub pages: u32,
    pub gap_ms: u32,
    pub rounds: u32,
}

/// The two processes of `demo --sva` for a run of about `seconds`: the
/// fault phases take the first half (plus the faults' own time: 1-10 ms
/// per page under TCG), the pinned phases the second. Different page
/// counts and pauses, so that `top` shows two rates.
pub fn sva_workload(seconds: u32) -> Vec<SvaProcess> {
    [("sva-zip", 16, 250), ("sva-sec", 32, 500)]
        .into_iter()
        .map(|(name, pages, gap_ms)| SvaProcess {
            name,
            pages,
            gap_ms,
            rounds: (seconds * 1000 / 2 / gap_ms).max(1),
        })
        .collect()
}

/// What [`boot`] needs.
struct Boot<'a> {
    kernel: &'a Path,
    initrd: &'a Path,
    console: &'a Path,
    qemu_log: &'a Path,
    tool: &'a Path,
    /// The patched QEMU of the SVA machine (`--sva`); `None`: the
    /// distribution's QEMU.
    sva_qemu: Option<&'a Path>,
    record: Option<&'a Path>,
    tui: bool,
    timeout: Duration,
}

/// How the demo VM ended.
struct Outcome {
    /// The guest printed [`DONE`].
    done: bool,
    interrupted: bool,
    timed_out: bool,
    /// `top` was quit while the guest still ran.
    quit_early: bool,
    /// `top`'s exit status, when it ran.
    top_status: Option<i32>,
    stream_bytes: u64,
    elapsed: Duration,
}

/// The QEMU command: the console (first serial port) on QEMU's stdout, the
/// stream (second serial port) into the FIFO `<fifo>.out` (QEMU's `pipe:`
/// backend also opens `<fifo>.in` for the guest's input, which stays empty).
fn qemu_command(b: &Boot<'_>, fifo: &Path) -> Command {
    let mut cmd = match b.sva_qemu {
        Some(program) => qemu::sva_command(program, b.kernel, b.initrd),
        None => qemu::command(b.kernel, b.initrd, qemu::Console::Terminal),
    };
    let mut pipe = std::ffi::OsString::from("pipe:");
    pipe.push(fifo);
    cmd.arg("-serial").arg(pipe);
    cmd
}

/// Creates the FIFOs `<base>.in` and `<base>.out` afresh.
fn make_fifos(base: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    for ext in ["in", "out"] {
        let path = base.with_extension(ext);
        let _ = fs::remove_file(&path);
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .with_context(|| format!("{} contains a NUL byte", path.display()))?;
        // SAFETY: mkfifo reads the NUL-terminated path, which outlives the call.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("creating the FIFO {}", path.display()));
        }
    }
    Ok(())
}

/// Boots the VM, waits for the stream, runs `top` on it (or not), and
/// reaps everything.
fn boot(b: &Boot<'_>) -> Result<Outcome> {
    let mut console_log =
        File::create(b.console).with_context(|| format!("creating {}", b.console.display()))?;
    let qemu_err =
        File::create(b.qemu_log).with_context(|| format!("creating {}", b.qemu_log.display()))?;
    let mut record = match b.record {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    // Per process: a second demo (or the test tier's) must not share it.
    let fifo = b
        .console
        .with_file_name(format!("stream-{}", std::process::id()));
    make_fifos(&fifo)?;
    INTERRUPTED.store(false, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; the previous handler is not needed.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let start = Instant::now();
    // Its own process group: the terminal's Ctrl-C is ours to handle.
    let mut qemu = qemu_command(b, &fifo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(qemu_err)
        .process_group(0)
        .spawn()
        .with_context(|| {
            format!(
                "starting {}",
                b.sva_qemu
                    .unwrap_or(Path::new("qemu-system-x86_64"))
                    .display()
            )
        })?;
    let console = qemu
        .stdout
        .take()
        .context("QEMU's stdout was not captured")?;
    let (con_tx, con_rx) = mpsc::channel::<String>();
    let console_thread = std::thread::spawn(move || {
        let mut reader = BufReader::new(console);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let _ = console_log.write_all(&line);
                    let text = String::from_utf8_lossy(&line);
                    if con_tx.send(text.trim_end().to_string()).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = console_log.flush();
    });
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let out_fifo = fifo.with_extension("out");
    let stream_thread = std::thread::spawn(move || {
        // Blocks until QEMU opens its end; EOF once QEMU has exited.
        let Ok(mut stream) = File::open(&out_fifo) else {
            return;
        };
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });

    let mut out = Outcome {
        done: false,
        interrupted: false,
        timed_out: false,
        quit_early: false,
        top_status: None,
        stream_bytes: 0,
        elapsed: Duration::ZERO,
    };
    let mut top: Option<(Child, Option<ChildStdin>)> = None;
    let mut top_started = false;
    let mut stream_open = true;
    let mut qemu_done = false;
    let mut last_flush = Instant::now();
    loop {
        // Guest progress goes to the terminal until top owns it.
        while let Ok(line) = con_rx.try_recv() {
            if line == DONE {
                out.done = true;
            }
            if !top_started && line.starts_with("[demo]") {
                println!("{line}");
            }
        }
        let _ = std::io::stdout().flush();
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(chunk) => {
                out.stream_bytes += chunk.len() as u64;
                if let Some(r) = record.as_mut() {
                    r.write_all(&chunk).context("writing the recording")?;
                }
                if b.tui && !top_started {
                    top_started = true;
                    let mut child = Command::new(b.tool)
                        .args(["top", "--replay", "-"])
                        .stdin(Stdio::piped())
                        .spawn()
                        .with_context(|| format!("starting {} top", b.tool.display()))?;
                    let stdin = child.stdin.take();
                    top = Some((child, stdin));
                }
                if let Some((_, stdin)) = top.as_mut() {
                    // top gone (write error): the exit check below sees it.
                    if stdin.as_mut().is_some_and(|s| s.write_all(&chunk).is_err()) {
                        *stdin = None;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if stream_open {
                    stream_open = false;
                    // EOF for top: it shows the end of the recording.
                    if let Some((_, stdin)) = top.as_mut() {
                        *stdin = None;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if last_flush.elapsed() >= Duration::from_millis(500) {
            if let Some(r) = record.as_mut() {
                r.flush().context("writing the recording")?;
            }
            last_flush = Instant::now();
        }
        if !qemu_done && qemu.try_wait().context("waiting for QEMU")?.is_some() {
            qemu_done = true;
            if !top_started {
                // The stream thread may still wait for QEMU to open the FIFO.
                let _ = File::options()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(fifo.with_extension("out"));
            }
        }
        if let Some((child, _)) = top.as_mut() {
            if let Some(status) = child.try_wait().context("waiting for top")? {
                out.top_status = Some(status.code().unwrap_or(1));
                out.quit_early = !qemu_done;
                top = None;
                break;
            }
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            out.interrupted = true;
            break;
        }
        if !qemu_done && start.elapsed() >= b.timeout {
            out.timed_out = true;
            break;
        }
        // Without top the run ends with QEMU and the end of its stream.
        if qemu_done && !stream_open && top.is_none() {
            break;
        }
    }
    // QEMU first (it may still run), then top (on Ctrl-C before it quit).
    let _ = qemu.kill();
    let _ = qemu.wait();
    if let Some((mut child, stdin)) = top.take() {
        drop(stdin);
        // SAFETY: kill(2) of our own child, not yet reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let status = child.wait().context("waiting for top")?;
        out.top_status = Some(status.code().unwrap_or(1));
    }
    // Unblock a stream thread still opening the FIFO (QEMU never did).
    let _ = File::options()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo.with_extension("out"));
    drop(rx);
    let _ = stream_thread.join();
    let _ = console_thread.join();
    while let Ok(line) = con_rx.try_recv() {
        if line == DONE {
            out.done = true;
        }
        if !top_started && line.starts_with("[demo]") {
            println!("{line}");
        }
    }
    if let Some(mut r) = record.take() {
        r.flush().context("writing the recording")?;
    }
    for ext in ["in", "out"] {
        let _ = fs::remove_file(fifo.with_extension(ext));
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: restores the default disposition; no handler runs after.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    out.interrupted |= INTERRUPTED.load(Ordering::SeqCst);
    out.elapsed = start.elapsed();
    Ok(out)
}

/// IOPF and pin counts per interval of one process, from the JSON replay.
#[derive(Debug, Default, Clone)]
struct ProcSeries {
    /// Interval start (s from the recording's start) -> IOPFs.
    iopf: BTreeMap<u64, u64>,
    /// Pin calls (`pin` series) and uacce_ctrl ioctls.
    pins: u64,
    ioctls: u64,
    /// Requests (`op` series) and those with a fault inside (`op_faulted`).
    requests: u64,
    faulted_requests: u64,
}

impl ProcSeries {
    /// Start of the last interval with an IOPF, `None` without any.
    fn last_fault_s(&self) -> Option<u64> {
        self.iopf
            .iter()
            .rev()
            .find(|(_, &c)| c > 0)
            .map(|(&k, _)| k)
    }
}

/// Checks a demo recording: it is complete; the faulting processes have
/// IOPFs and the pinning ones pins; the pinning process's faults stop
/// after its pin while another process goes on faulting; faults inside
/// pinned ranges were seen. On a stock kernel: pins only. Returns what was
/// checked, one line each.
pub fn check_recording(
    tool: &Path,
    recording: &Path,
    console: &str,
    test_kernel: bool,
    pin: Pin,
) -> Result<Vec<String>> {
    let (report_text, series) = replay(tool, recording)?;
    let mut ok = vec!["the recording is complete and readable (`uacce-trace report`)".to_string()];
    ok.extend(check_series(
        &series,
        console,
        &report_text,
        test_kernel,
        pin,
    )?);
    Ok(ok)
}

/// `uacce-trace report` of `recording` (its text; it must succeed) and its
/// per-process series from `record --replay --format json --interval 1s`.
fn replay(tool: &Path, recording: &Path) -> Result<(String, BTreeMap<String, ProcSeries>)> {
    let report = Command::new(tool)
        .arg("report")
        .arg(recording)
        .output()
        .with_context(|| format!("running {} report", tool.display()))?;
    let report_text = String::from_utf8_lossy(&report.stdout).into_owned();
    if !report.status.success() {
        bail!(
            "`uacce-trace report {}` failed ({}): {}",
            recording.display(),
            report.status,
            String::from_utf8_lossy(&report.stderr).trim()
        );
    }
    let json = Command::new(tool)
        .args(["record", "--format", "json", "--interval", "1s", "--replay"])
        .arg(recording)
        .args(["-o", "/dev/stdout"])
        .output()
        .with_context(|| format!("running {} record --replay", tool.display()))?;
    if !json.status.success() {
        bail!(
            "`uacce-trace record --replay` failed ({}): {}",
            json.status,
            String::from_utf8_lossy(&json.stderr).trim()
        );
    }
    let series = series_by_comm(&String::from_utf8_lossy(&json.stdout));
    Ok((report_text, series))
}

/// Checks a `demo --sva` recording of a run of `seconds` against the
/// workloads' own tallies on the console ([`check_sva_series`]).
pub fn check_sva_recording(
    tool: &Path,
    recording: &Path,
    console: &str,
    seconds: u32,
) -> Result<Vec<String>> {
    let (report_text, series) = replay(tool, recording)?;
    let mut ok = vec!["the recording is complete and readable (`uacce-trace report`)".to_string()];
    ok.extend(check_sva_series(&series, console, &report_text, seconds)?);
    Ok(ok)
}

/// The JSON lines of SVA process `name` on the console (`[demo-sva] NAME:
/// {...}`: not `[demo]`, so not echoed on the terminal).
fn sva_lines(console: &str, name: &str) -> Vec<Value> {
    let prefix = format!("[demo-sva] {name}: ");
    console
        .lines()
        .filter_map(|l| serde_json::from_str(l.trim_end().strip_prefix(&prefix)?).ok())
        .collect()
}

/// The checks of [`check_sva_recording`]: per process of
/// [`sva_workload`], the program ended "ok" after all its rounds; the
/// IOPFs the recording attributes to it (by command name: the faults are
/// reported from the page request IRQ thread, so only its PASID names the
/// process) equal the page requests its device queue counted in its fault
/// phases, and its pinned phases counted none; its uacce_ctrl pin was
/// seen; its faults in the recording span no longer than its fault
/// phases: a span of F s covers one-second bins whose first and last
/// differ by at most ceil(F); one more second of slack for the bins
/// counting from the tracer's start and its 250-ms raw flushes; with
/// pinned phases of at least 2 s after them, so faults in the pinned phase
/// would show. (The count check is the exact one: the device counted no
/// page request after the pin, and the recording holds no fault beyond the
/// fault phases' count.)
/// Every IOPF of the recording belongs to these processes (none left on
/// the IRQ thread or unattributed); none inside a pinned range.
fn check_sva_series(
    series: &BTreeMap<String, ProcSeries>,
    console: &str,
    report_text: &str,
    seconds: u32,
) -> Result<Vec<String>> {
    let mut ok = Vec::new();
    let mut expected_total = 0;
    for p in sva_workload(seconds) {
        let lines = sva_lines(console, p.name);
        let phase = |name: &str| -> Vec<&Value> {
            lines
                .iter()
                .filter(|l| l.get("sva_phase").and_then(Value::as_str) == Some(name))
                .collect()
        };
        let (fault, pinned) = (phase("fault"), phase("pinned"));
        let verdict = lines
            .iter()
            .find_map(|l| l.get("sva_workload").and_then(Value::as_str));
        if verdict != Some("ok") {
            bail!(
                "{}: the workload ended {verdict:?}, not \"ok\" (its lines on the console: {})",
                p.name,
                lines.len()
            );
        }
        let rounds = p.rounds as usize;
        if fault.len() != rounds || pinned.len() != rounds {
            bail!(
                "{}: {} fault and {} pinned phases on the console, not {rounds} each",
                p.name,
                fault.len(),
                pinned.len()
            );
        }
        let u = |l: &Value, k: &str| l.get(k).and_then(Value::as_u64).unwrap_or(0);
        let tally: u64 = fault.iter().map(|l| u(l, "page_requests")).sum();
        let after_pin: u64 = pinned.iter().map(|l| u(l, "page_requests")).sum();
        if after_pin != 0 {
            bail!(
                "{}: the device counted {after_pin} page requests in the pinned phases",
                p.name
            );
        }
        let s = series
            .get(p.name)
            .with_context(|| format!("no events of process {} in the recording", p.name))?;
        let faults: u64 = s.iopf.values().sum();
        if faults != tally {
            bail!(
                "{}: {faults} IOPFs in the recording, the device counted {tally} page requests",
                p.name
            );
        }
        if s.ioctls == 0 {
            bail!("{}: its uacce_ctrl pin is not in the recording", p.name);
        }
        expected_total += tally;
        let (Some(first), Some(last)) = (s.iopf.keys().next().copied(), s.last_fault_s()) else {
            bail!("{}: no IOPF intervals", p.name);
        };
        let secs = |ns: u64| ns as f64 / 1e9;
        let t0 = fault.first().map_or(0, |l| u(l, "t0_ns"));
        let t_pin = fault.last().map_or(0, |l| u(l, "t1_ns"));
        let t_end = pinned.last().map_or(0, |l| u(l, "t1_ns"));
        let fault_span = secs(t_pin.saturating_sub(t0));
        let pinned_span = secs(t_end.saturating_sub(t_pin));
        if pinned_span < 2.0 {
            bail!(
                "{}: the pinned phases lasted {pinned_span:.1} s, too short to show the faults stop",
                p.name
            );
        }
        if (last - first) as f64 > fault_span.ceil() + 1.0 {
            bail!(
                "{}: IOPFs from {first} s to {last} s of the recording, longer than its fault \
                 phases ({fault_span:.1} s): faults after the pin",
                p.name
            );
        }
        ok.push(format!(
            "{}: {faults} IOPFs attributed to it = the {tally} page requests of its {rounds} \
             fault phases; from {first} s to {last} s ({fault_span:.1} s of fault phases), none in \
             its {pinned_span:.1} s of pinned phases; {} uacce_ctrl ioctls",
            p.name, s.ioctls
        ));
    }
    let total: u64 = series.values().map(|s| s.iopf.values().sum::<u64>()).sum();
    if total != expected_total {
        let others: Vec<String> = series
            .iter()
            .filter(|(comm, s)| {
                !sva_workload(seconds)
                    .iter()
                    .any(|p| p.name == comm.as_str())
                    && s.iopf.values().sum::<u64>() > 0
            })
            .map(|(comm, s)| format!("{comm}: {}", s.iopf.values().sum::<u64>()))
            .collect();
        bail!(
            "{total} IOPFs in the recording, {expected_total} of the workloads; the others: {}",
            others.join(", ")
        );
    }
    ok.push(format!(
        "all {total} IOPFs of the recording attributed to the workloads through their PASIDs \
         (none left on the page request IRQ thread)"
    ));
    if let Some(in_pinned) = report_text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("faults inside pinned ranges:")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    }) {
        if in_pinned != 0 {
            bail!("{in_pinned} faults inside pinned ranges");
        }
        ok.push("no faults inside pinned ranges".into());
    }
    Ok(ok)
}

/// A phase line of process `name` on the guest console (its JSON).
fn phase_line(console: &str, name: &str, phase: &str) -> Option<Value> {
    console.lines().find_map(|l| {
        let v: Value = serde_json::from_str(l.get(l.find('{')?..)?.trim()).ok()?;
        (v.get("demo")?.as_str()? == name && v.get("phase")?.as_str()? == phase).then_some(v)
    })
}

/// The checks of [`check_recording`] on the replay's per-process series,
/// the guest console (the processes' phase lines: the pinning process's
/// times, every process's request tallies) and the text of `uacce-trace
/// report`.
fn check_series(
    series: &BTreeMap<String, ProcSeries>,
    console: &str,
    report_text: &str,
    test_kernel: bool,
    pin: Pin,
) -> Result<Vec<String>> {
    let mut ok = Vec::new();
    if !test_kernel {
        let pins: u64 = series.values().map(|s| s.pins).sum();
        if pins == 0 {
            bail!("no pin calls in the recording");
        }
        ok.push(format!("{pins} pin calls (stock kernel: pins only)"));
        return Ok(ok);
    }
    let get = |name: &str| -> Result<&ProcSeries> {
        series
            .get(name)
            .with_context(|| format!("no events of process {name} in the recording"))
    };
    for p in workload(60, pin) {
        let s = get(p.name)?;
        let faults: u64 = s.iopf.values().sum();
        if p.faults && faults == 0 {
            bail!("{}: no IOPFs", p.name);
        }
        if !p.faults && faults > 0 {
            bail!("{}: {faults} IOPFs, expected none", p.name);
        }
        if p.pins && s.pins + s.ioctls == 0 {
            bail!("{}: no pin calls", p.name);
        }
        if !p.pins && s.ioctls > 0 {
            bail!("{}: {} uacce_ctrl ioctls, expected none", p.name, s.ioctls);
        }
        ok.push(format!(
            "{}: {faults} IOPFs, {} pin calls, {} uacce_ctrl ioctls",
            p.name, s.pins, s.ioctls
        ));
        // Requests: what the tracer saw is what the program counted.
        let end = phase_line(console, p.name, "end")
            .with_context(|| format!("the console lacks {}'s end line", p.name))?;
        let tally = |key: &str| end.get(key).and_then(Value::as_u64).unwrap_or(0);
        let (made, faulted) = (tally("requests"), tally("faulted_requests"));
        if p.requests && (made == 0 || (p.faults && faulted == 0) || (!p.faults && faulted > 0)) {
            bail!(
                "{}: the program made {made} requests, {faulted} with faults inside: \
                 not what its options ask for",
                p.name
            );
        }
        if (s.requests, s.faulted_requests) != (made, faulted) {
            bail!(
                "{}: {} requests traced, {} with faults inside; the program made {made}, \
                 {faulted} with faults inside",
                p.name,
                s.requests,
                s.faulted_requests
            );
        }
        if p.requests {
            ok.push(format!(
                "{}: {made} requests ({REQUEST_SYMBOL}) traced, {faulted} with IOPFs inside, \
                 as the program counted",
                p.name
            ));
        }
    }
    let in_pinned = report_text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("faults inside pinned ranges:")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
        })
        .context("the report has no `faults inside pinned ranges` line")?;
    if pin != Pin::Midway {
        // No process faults inside a range it pinned: ml-infer pins before
        // its first fault or never.
        if in_pinned != 0 {
            bail!(
                "{in_pinned} faults inside pinned ranges with --pin {}",
                pin.as_str()
            );
        }
        ok.push(format!(
            "--pin {}: no faults inside pinned ranges",
            pin.as_str()
        ));
        return Ok(ok);
    }
    // The phase lines of the pinning process, from the console.
    let phase_t = |phase: &str| {
        phase_line(console, PINNING_PROCESS, phase).and_then(|v| v.get("t")?.as_u64())
    };
    let (Some(t0), Some(_pinned), Some(t_stop), Some(t_end)) = (
        phase_t("start"),
        phase_t("pinned"),
        phase_t("faults_stopped"),
        phase_t("end"),
    ) else {
        bail!("the console lacks {PINNING_PROCESS}'s phase lines (start, pinned, faults_stopped, end)");
    };
    let pinner = get(PINNING_PROCESS)?;
    let other = get("dma-copy")?;
    let first_s = *pinner.iopf.keys().next().unwrap_or(&0);
    let (Some(last_pinner), Some(last_other)) = (pinner.last_fault_s(), other.last_fault_s())
    else {
        bail!("no IOPF intervals");
    };
    // Faults stop at t_stop - t0 after the process started; the recording's
    // intervals count from the tracer's start, earlier: compare lengths.
    let fault_span = t_stop.saturating_sub(t0) / 1_000_000_000;
    let run_span = t_end.saturating_sub(t0) / 1_000_000_000;
    if last_pinner.saturating_sub(first_s) > fault_span + 1 {
        bail!(
            "{PINNING_PROCESS} faulted until {last_pinner} s (first at {first_s} s), after its faults should have stopped ({fault_span} s in)"
        );
    }
    if last_other < last_pinner + run_span.saturating_sub(fault_span) / 2 {
        bail!(
            "dma-copy stopped faulting at {last_other} s, not clearly after {PINNING_PROCESS} ({last_pinner} s)"
        );
    }
    ok.push(format!(
        "{PINNING_PROCESS}: IOPFs from {first_s} s to {last_pinner} s, none after its pin \
         (+1.5 s); dma-copy faulted until {last_other} s"
    ));
    if in_pinned == 0 {
        bail!("no faults inside pinned ranges (ml-infer faults for 1.5 s after its pin)");
    }
    ok.push(format!("{in_pinned} faults inside pinned ranges"));
    Ok(ok)
}

/// Per command name, from `record --format json` lines.
fn series_by_comm(json: &str) -> BTreeMap<String, ProcSeries> {
    let mut out: BTreeMap<String, ProcSeries> = BTreeMap::new();
    for line in json.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let (Some(kind), Some(comm)) = (
            v.get("kind").and_then(Value::as_str),
            v.get("comm").and_then(Value::as_str),
        ) else {
            continue;
        };
        let count = v.get("count").and_then(Value::as_u64).unwrap_or(0);
        let start = v.get("start").and_then(Value::as_f64).unwrap_or(0.0);
        let s = out.entry(comm.to_string()).or_default();
        match kind {
            "iopf" => *s.iopf.entry(start.max(0.0) as u64).or_default() += count,
            "pin" => s.pins += count,
            "uacce_ctrl" => s.ioctls += count,
            "op" => s.requests += count,
            "op_faulted" => s.faulted_requests += count,
            _ => {}
        }
    }
    out
}

/// The terminal settings of stdin at start, restored at the end (`top`
/// restores them itself; this covers a killed `top`).
struct Terminal(Option<libc::termios>);

impl Terminal {
    fn save() -> Self {
        // SAFETY: isatty and tcgetattr only read the descriptor's state into
        // a zeroed struct owned here.
        unsafe {
            if libc::isatty(libc::STDIN_FILENO) != 1 {
                return Self(None);
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) != 0 {
                return Self(None);
            }
            Self(Some(t))
        }
    }

    fn restore(&self) {
        if let Some(t) = &self.0 {
            // SAFETY: `t` came from tcgetattr on the same descriptor.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_kernel_names() -> Result<()> {
        assert!(stock_guest("5.10").is_err());
        Ok(())
    }

    #[test]
    fn script_runs_every_process() {
        let s = init_script(Hooks::Kprobe, 30, Pin::Midway, true);
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("\nHOOKS=kprobe\n"));
        assert!(s.contains("\nTTY=/dev/ttyS1\n"));
        assert!(s.contains("\nTEST_KERNEL=1\nPIN_NOTE='ml-infer pins its buffer at 12 s"));
        assert!(s.contains("\nOP=/usr/bin/uacce-demo:demo_request\n"));
        assert!(s.contains("--hooks \"$HOOKS\" $op -o $TTY"));
        assert!(s.contains("-o $TTY"));
        assert!(s.contains("stty -F $TTY raw"));
        for p in workload(30, Pin::Midway) {
            assert!(s.contains(&format!("{} {}", p.name, p.args)), "{}", p.name);
        }
        assert!(s.contains("\"$DEMO\" --name $name --seconds $RUN_SECONDS $args"));
        assert!(s.contains("--pin-at 12.0"));
        assert!(s.contains("say \"done.\""));
        let stock = init_script(Hooks::Auto, 30, Pin::Midway, false);
        assert!(stock.contains("\nTEST_KERNEL=0\n"));
        assert!(stock.contains("\nOP=''\n"));
        let never = init_script(Hooks::Auto, 30, Pin::Never, true);
        assert!(!never.contains("--pin-at 12.0"));
        assert!(never.contains("ml-infer never pins"));
        let early = init_script(Hooks::Auto, 30, Pin::Early, true);
        assert!(early.contains("--pin-with uacce --pin-at 0 --faults-after-pin 0"));
        assert!(stock.contains("\"$WORKLOAD\" iouring"));
        guest::assert_sh_syntax(&s);
        guest::assert_sh_syntax(&stock);
    }

    #[test]
    fn sva_script_runs_both_workloads() {
        let s = sva_init_script(Hooks::Auto, 20);
        assert!(s.contains("\nSVA=/usr/bin/sva-workload\n"));
        assert!(s.contains("\nOP=''\n"));
        assert!(
            s.contains("sva-zip 16 --shared-vmstat --rounds 40 --gap-ms 250"),
            "{s}"
        );
        assert!(
            s.contains("sva-sec 32 --shared-vmstat --rounds 20 --gap-ms 500"),
            "{s}"
        );
        assert!(s.contains("ln -sf \"$SVA\" /usr/bin/$name"));
        assert!(init_script(Hooks::Auto, 20, Pin::Midway, true).contains("\nSVA=''\n"));
        guest::assert_sh_syntax(&s);
        for p in sva_workload(60) {
            assert!(p.name.len() <= 8, "{}", p.name);
        }
        assert!(sva_workload(5).iter().all(|p| p.rounds >= 5));
    }

    /// A console of a `demo --sva` run of 20 s: every phase of each
    /// process `ms` apart from 1 s, its fault phases with `requests` page
    /// requests each (its pages), its pinned phases with `pinned_reqs`.
    fn sva_console(pinned_reqs: u64, ends_ok: bool) -> String {
        let mut out = String::from("[demo] noise\n");
        for p in sva_workload(20) {
            let mut t = 1_000_000_000u64;
            for (phase, reqs) in [("fault", u64::from(p.pages)), ("pinned", pinned_reqs)] {
                for _ in 0..p.rounds {
                    out.push_str(&format!(
                        "[demo-sva] {}: {{\"sva_phase\":\"{phase}\",\"pid\":5,\"page_requests\":{reqs},\
                         \"t0_ns\":{t},\"t1_ns\":{}}}\n",
                        p.name,
                        t + 10_000_000
                    ));
                    t += u64::from(p.gap_ms) * 1_000_000;
                }
            }
            let verdict = if ends_ok { "ok" } else { "fail" };
            out.push_str(&format!(
                "[demo-sva] {}: {{\"sva_workload\":\"{verdict}\",\"pid\":5}}\n",
                p.name
            ));
        }
        out
    }

    /// Series of that run: each process's faults spread over seconds
    /// 0..`until` (its whole tally, 640), its pin ioctl, and `irq` IOPFs
    /// left on the page request IRQ thread.
    fn sva_series(until: u64, irq: u64) -> BTreeMap<String, ProcSeries> {
        let mut json = String::new();
        for name in ["sva-zip", "sva-sec"] {
            for s in 0..until {
                let count = 640 / until + u64::from(s < 640 % until);
                json.push_str(&format!(
                    "{{\"comm\":\"{name}\",\"count\":{count},\"kind\":\"iopf\",\"start\":{s}.0}}\n"
                ));
            }
            json.push_str(&format!(
                "{{\"comm\":\"{name}\",\"count\":1,\"kind\":\"uacce_ctrl\",\"start\":10.0}}\n"
            ));
        }
        if irq > 0 {
            json.push_str(&format!(
                "{{\"comm\":\"irq/24-dmar0-pr\",\"count\":{irq},\"kind\":\"iopf\",\"start\":3.0}}\n"
            ));
        }
        series_by_comm(&json)
    }

    #[test]
    fn the_sva_check_passes_a_good_run_and_fails_bad_ones() {
        let none = "faults inside pinned ranges: 0 (should be 0)\n";
        let check = |series, console: &str, report| check_sva_series(&series, console, report, 20);
        let good = check(sva_series(10, 0), &sva_console(0, true), none);
        assert!(good.is_ok(), "{good:?}");
        // Faults until the end of the run: not stopped by the pin.
        let err = check(sva_series(20, 0), &sva_console(0, true), none);
        assert!(
            format!("{err:?}").contains("faults after the pin"),
            "{err:?}"
        );
        // The device counted page requests after the pin.
        assert!(check(sva_series(10, 0), &sva_console(1, true), none).is_err());
        // A workload that failed, or no workload lines at all.
        assert!(check(sva_series(10, 0), &sva_console(0, false), none).is_err());
        assert!(check(sva_series(10, 0), "", none).is_err());
        // Faults left on the IRQ thread (not attributed through the PASID).
        let err = check(sva_series(10, 5), &sva_console(0, true), none);
        assert!(format!("{err:?}").contains("irq/24-dmar0-pr: 5"), "{err:?}");
        // A fault missing from the recording.
        let mut short = sva_series(10, 0);
        if let Some(s) = short.get_mut("sva-zip") {
            *s.iopf.entry(0).or_default() -= 1;
        }
        let err = check(short, &sva_console(0, true), none);
        assert!(format!("{err:?}").contains("639 IOPFs"), "{err:?}");
        // Faults inside a pinned range.
        let some = "faults inside pinned ranges: 3 (should be 0)\n";
        assert!(check(sva_series(10, 0), &sva_console(0, true), some).is_err());
    }

    #[test]
    fn names_fit_the_comm_column() {
        // Shown whole in top's COMM column at 80 columns (8 characters),
        // and within the kernel's TASK_COMM_LEN - 1 anyway.
        for p in workload(60, Pin::Midway) {
            assert!(p.name.len() <= 8, "{}", p.name);
        }
        assert!(workload(60, Pin::Midway)
            .iter()
            .any(|p| p.name == PINNING_PROCESS));
    }

    /// Series like a 20-s demo run's: `ml-infer` faults for 9.5 s (or
    /// none with `pinner_until` `None`); each of the three faulting
    /// processes makes 100 requests a second, 20 with faults inside
    /// (ml-infer's while it faults).
    fn demo_series(pinner_until: Option<u64>) -> BTreeMap<String, ProcSeries> {
        let mut json = String::new();
        for s in 0..20u64 {
            json.push_str(&format!(
                "{{\"comm\":\"dma-copy\",\"count\":20,\"kind\":\"iopf\",\"start\":{s}.0}}\n\
                 {{\"comm\":\"zip-job\",\"count\":30,\"kind\":\"iopf\",\"start\":{s}.0}}\n\
                 {{\"comm\":\"rdma-reg\",\"count\":1,\"kind\":\"pin\",\"start\":{s}.0}}\n"
            ));
            for comm in ["dma-copy", "zip-job", "ml-infer"] {
                let faulted = comm != "ml-infer" || pinner_until.is_some_and(|u| s <= u);
                json.push_str(&format!(
                    "{{\"comm\":\"{comm}\",\"count\":100,\"kind\":\"op\",\"start\":{s}.0}}\n"
                ));
                if faulted {
                    json.push_str(&format!(
                        "{{\"comm\":\"{comm}\",\"count\":20,\"kind\":\"op_faulted\",\"start\":{s}.0}}\n"
                    ));
                }
            }
            if pinner_until.is_some_and(|u| s <= u) {
                json.push_str(&format!(
                    "{{\"comm\":\"ml-infer\",\"count\":30,\"kind\":\"iopf\",\"start\":{s}.0}}\n"
                ));
            }
        }
        json.push_str(
            "{\"comm\":\"ml-infer\",\"count\":2,\"kind\":\"uacce_ctrl\",\"start\":8.0}\n",
        );
        series_by_comm(&json)
    }

    /// The end lines of the processes: 2000 requests each, `ml_faulted`
    /// of ml-infer's with faults inside, 400 of the others'.
    fn end_lines(ml_faulted: u64) -> String {
        let mut out = String::new();
        for (name, faulted) in [
            ("dma-copy", 400),
            ("zip-job", 400),
            ("ml-infer", ml_faulted),
            ("rdma-reg", 0),
        ] {
            let requests = if name == "rdma-reg" { 0 } else { 2000 };
            out.push_str(&format!(
                "{{\"demo\":\"{name}\",\"pid\":9,\"phase\":\"end\",\"t\":21000000000,\
                 \"faults\":1,\"churn\":0,\"requests\":{requests},\"faulted_requests\":{faulted}}}\n"
            ));
        }
        out
    }

    const CONSOLE: &str = "[    1.0] noise\n\
        {\"demo\":\"ml-infer\",\"pid\":9,\"phase\":\"start\",\"t\":1000000000}\n\
        {\"demo\":\"ml-infer\",\"pid\":9,\"phase\":\"pinned\",\"t\":9000000000,\"addr\":1,\"pages\":256}\n\
        {\"demo\":\"ml-infer\",\"pid\":9,\"phase\":\"faults_stopped\",\"t\":10500000000,\"faults\":285}\n";
    const REPORT: &str = "faults inside pinned ranges: 45 (should be 0: ...)\n";

    #[test]
    fn the_check_passes_a_good_run_and_fails_bad_ones() {
        let console = format!("{CONSOLE}{}", end_lines(200));
        let check =
            |series, console: &str, report, pin| check_series(&series, console, report, true, pin);
        let good = check(demo_series(Some(9)), &console, REPORT, Pin::Midway);
        assert!(good.is_ok(), "{good:?}");
        // Faults that do not stop after the pin.
        let all_along = format!("{CONSOLE}{}", end_lines(400));
        let err = check(demo_series(Some(19)), &all_along, REPORT, Pin::Midway);
        assert!(format!("{err:?}").contains("faulted until 19 s"), "{err:?}");
        // No fault inside a pinned range.
        let none = "faults inside pinned ranges: 0 (should be 0)\n";
        assert!(check(demo_series(Some(9)), &console, none, Pin::Midway).is_err());
        // A process missing, or the phase lines.
        let mut partial = demo_series(Some(9));
        partial.remove("rdma-reg");
        assert!(check(partial, &console, REPORT, Pin::Midway).is_err());
        assert!(check(demo_series(Some(9)), &end_lines(200), REPORT, Pin::Midway).is_err());
        assert!(check(demo_series(Some(9)), "", REPORT, Pin::Midway).is_err());
        // Requests traced that the program did not count, or the reverse.
        let more = format!("{CONSOLE}{}", end_lines(199));
        let err = check(demo_series(Some(9)), &more, REPORT, Pin::Midway);
        assert!(
            format!("{err:?}").contains("ml-infer: 2000 requests traced, 200 with faults inside; the program made 2000, 199"),
            "{err:?}"
        );
        // Before/after pairs: never pinned (no phase lines needed, no
        // uacce_ctrl ioctl of ml-infer then) and pinned early (no fault).
        let mut never = demo_series(Some(19));
        if let Some(s) = never.get_mut("ml-infer") {
            s.ioctls = 0;
        }
        let never_console = end_lines(400);
        assert!(check(never.clone(), &never_console, none, Pin::Never).is_ok());
        assert!(check(never.clone(), &never_console, REPORT, Pin::Never).is_err());
        assert!(check(demo_series(Some(19)), &never_console, none, Pin::Never).is_err());
        let early_console = end_lines(0);
        assert!(check(demo_series(None), &early_console, none, Pin::Early).is_ok());
        assert!(check(demo_series(None), &end_lines(400), none, Pin::Early).is_err());
        assert!(check(never, &early_console, none, Pin::Early).is_err());
        // Stock kernel: pins are enough.
        assert!(check_series(&demo_series(Some(9)), "", "", false, Pin::Midway).is_ok());
        assert!(check_series(&BTreeMap::new(), "", "", false, Pin::Midway).is_err());
    }

    /// compare's JSON for the pair, cut to the fields relied on.
    fn pair_json(ml: (&str, &str), iopf: &str, dma: &str) -> Value {
        let q = |comm: &str, verdict: &str, share: &str| {
            format!(
                r#"{{"comm":"{comm}","op":"demo_request","quantiles":[{{"quantile":"p99",
                "verdict":"{verdict}","faulted_tail_verdict":"{share}",
                "baseline":{{"metric_ns":3900000}},"candidate":{{"metric_ns":210000}}}}]}}"#
            )
        };
        serde_json::from_str(&format!(
            r#"{{"requests":[{},{}],"processes":[{{"comm":"ml-infer","verdict":"{iopf}"}}],
            "reasons":[]}}"#,
            q("ml-infer", ml.0, ml.1),
            q("dma-copy", dma, "unchanged")
        ))
        .expect("JSON")
    }

    #[test]
    fn the_pair_check_wants_mlinfer_decided_and_the_rest_not_met() {
        let good = pair_json(("reduced", "eliminated"), "eliminated", "unchanged");
        let lines = check_pair_json(&good, 0, &good, 1).expect("passes");
        assert!(lines[0].contains("reduced (3900 µs → 210 µs)"), "{lines:?}");
        assert!(
            lines[1].contains("dma-copy's demo_request p99: unchanged"),
            "{lines:?}"
        );
        assert!(check_pair_json(&good, 0, &good, 3).is_ok());
        assert!(check_pair_json(&good, 3, &good, 1).is_err());
        assert!(check_pair_json(&good, 0, &good, 0).is_err());
        for bad in [
            pair_json(("inconclusive", "eliminated"), "eliminated", "unchanged"),
            pair_json(("reduced", "inconclusive"), "eliminated", "unchanged"),
            pair_json(("reduced", "eliminated"), "reduced", "unchanged"),
        ] {
            assert!(check_pair_json(&bad, 0, &good, 1).is_err());
        }
    }

    #[test]
    fn json_series_by_comm() {
        let json = r#"{"comm":"a","count":3,"kind":"iopf","start":0.000}
{"comm":"a","count":2,"kind":"iopf","start":1.000}
{"comm":"a","count":1,"kind":"uacce_ctrl","start":1.000}
{"comm":"b","count":4,"kind":"pin","start":2.000}
{"drops":1,"duration":1.0,"kind":"loss","start":3.0,"unanswered":0}"#;
        let s = series_by_comm(json);
        assert_eq!(s["a"].iopf.values().sum::<u64>(), 5);
        assert_eq!(s["a"].iopf.keys().copied().collect::<Vec<_>>(), [0, 1]);
        assert_eq!((s["a"].ioctls, s["b"].pins), (1, 4));
    }
}
