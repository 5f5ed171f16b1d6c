//! `cargo xtask demo`: the README's main command. Shows `uacce-trace trace`
//! live on a real kernel without touching the host's kernel.
//!
//! Runs setup (idempotent; the stock kernels come from it), builds the
//! release binaries, then boots a stock Debian kernel (6.12 unless
//! `--kernel`) under QEMU (TCG) with an initramfs whose `/init` starts
//! `uacce-trace trace` (human-readable, on the serial console) and runs the
//! `uacce-workload` guest program for a few rounds with pauses: each round
//! registers one io_uring buffer of a different size (the kernel pins it
//! long-term) and unregisters it (unpins). Then the guest compares the
//! workload's pages with the kernel's `nr_foll_pin_*` counters and powers
//! off. The serial console is copied to the terminal as it comes and to
//! `vm/demo/console.log` in the cache.
//!
//! QEMU shows only the guest's console (no firmware banners) and gets no
//! terminal on stdin (so it never switches the terminal to raw mode); Ctrl-C reaches QEMU and xtask alike, xtask kills QEMU if it is
//! still there and restores the terminal settings it saw at start.
//!
//! Reuses the VM test pieces: the image builder ([`vm::image`]) and the QEMU
//! command line ([`vm::qemu`]).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::vm::{self, image, qemu, Hooks};
use crate::{cache, setup};

/// Buffer sizes (KiB) of the workload's rounds, one io_uring registration
/// each; kept small-ish because every unpinned page is one trace line on
/// kernels that unpin page by page.
const ROUND_SIZES_KIB: &[u32] = &[16, 64, 4, 128, 32, 8, 256, 16, 64, 4];
/// Pause after each round.
const ROUND_PAUSE_US: u32 = 1_500_000;
/// Tenths of a second the guest waits for `tracing started` (BTF parsing
/// and BPF verification are slow under TCG).
const TRACE_START_TICKS: u32 = 600;
/// The line the guest prints when everything ran.
const DONE: &str = "[demo] done.";

/// Options of `cargo xtask demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Stock kernel to boot: debian-6.1, debian-6.12 or debian-7.2 (or just
    /// 6.1, 6.12, 7.2).
    #[arg(long, default_value = "debian-6.12")]
    kernel: String,
    /// Hooks the tracer uses (`uacce-trace trace --hooks`).
    #[arg(long, value_enum, default_value_t = Hooks::Auto)]
    hooks: Hooks,
    /// Seconds before QEMU is stopped.
    #[arg(long, default_value_t = 240)]
    timeout: u64,
}

/// Set by the SIGINT/SIGTERM handler.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Runs the demo; `Ok(false)` when the guest did not get to the end.
pub fn run(args: &DemoArgs) -> Result<bool> {
    if !cfg!(target_arch = "x86_64") {
        bail!("the demo boots an x86-64 guest with binaries built for the host; run it on an x86-64 machine");
    }
    let kernel = find_kernel(&args.kernel)?;
    println!(
        "uacce-trace demo: installs what it needs (first run: several minutes), builds the tool,\n\
         then boots Debian {} under QEMU and shows `uacce-trace trace` live while an io_uring\n\
         workload pins and unpins buffers. Nothing is loaded into this machine's kernel.",
        kernel.series
    );
    let _ = std::io::stdout().flush();
    setup::ensure_all()?;
    qemu::check_installed()?;
    let dir = setup::kernel_dir(kernel.name)?;
    let vmlinuz = dir.join("vmlinuz");
    if !vmlinuz.is_file() {
        bail!("{} is missing after setup", vmlinuz.display());
    }
    let release = setup::kernel_release(kernel.name)?;

    let (tool, workload) = vm::build(false, false)?;
    let tool = tool.context("the build did not produce uacce-trace")?;
    let work = cache::vm_work()?.join("demo");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let base = work.join("base.cpio.gz");
    let raw = image::base_archive(&image::BaseContents {
        tool: Some(&tool),
        workload: &workload,
    })?;
    image::write_gzip(&raw, &base)?;
    let initrd = work.join("initramfs.cpio.gz");
    image::write_vm_image(&base, &init_script(args.hooks), &initrd)?;
    let log = work.join("console.log");

    println!();
    println!(
        "booting Debian {} ({release}) under QEMU (TCG, ~15 s), then ~{} s of live trace \
         (hooks: {}); Ctrl-C stops it.",
        kernel.series,
        ROUND_SIZES_KIB.len() as u64 * u64::from(ROUND_PAUSE_US) / 1_000_000 + 5,
        args.hooks.as_str()
    );
    println!();
    let _ = std::io::stdout().flush();

    let terminal = Terminal::save();
    let outcome = boot(&vmlinuz, &initrd, &log, Duration::from_secs(args.timeout));
    terminal.restore();
    let outcome = outcome?;

    println!();
    println!("console log: {}", log.display());
    if outcome.interrupted {
        println!("interrupted: QEMU stopped");
        return Ok(false);
    }
    if outcome.timed_out {
        println!("QEMU stopped after {} s (--timeout)", args.timeout);
        return Ok(false);
    }
    if !outcome.done {
        println!("the guest did not finish the demo (see the console output above)");
        return Ok(false);
    }
    println!(
        "demo finished in {:.1} s. Next: `cargo xtask test` runs every test tier.",
        outcome.elapsed.as_secs_f64()
    );
    Ok(true)
}

/// The stock kernel named `name` (`debian-6.12` or `6.12`).
fn find_kernel(name: &str) -> Result<setup::StockKernel> {
    let full = if name.starts_with("debian-") {
        name.to_string()
    } else {
        format!("debian-{name}")
    };
    setup::kernel_list()
        .iter()
        .find(|k| k.name == full)
        .copied()
        .with_context(|| {
            format!(
                "unknown kernel {name:?}; choose one of: {}",
                setup::kernel_list()
                    .iter()
                    .map(|k| k.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The guest's `/init`.
fn init_script(hooks: Hooks) -> String {
    let sizes: Vec<String> = ROUND_SIZES_KIB.iter().map(u32::to_string).collect();
    format!(
        r#"#!/bin/sh
# Generated by `cargo xtask demo`; runs as PID 1 in the demo VM.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
TOOL={tool}
WORKLOAD={workload}
HOOKS={hooks}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

say() {{ echo "[demo] $*"; }}
alive() {{ [ -r "/proc/$1/status" ] && ! grep -q '^State:.*Z' "/proc/$1/status"; }}
counter() {{
    echo 1 > /proc/sys/vm/stat_refresh
    grep "^$1 " /proc/vmstat | cut -d' ' -f2
}}

say "Linux $(uname -r) is up; starting: uacce-trace trace --hooks $HOOKS"
acq0=$(counter nr_foll_pin_acquired)
rel0=$(counter nr_foll_pin_released)
"$TOOL" trace --hooks "$HOOKS" 2> /tmp/trace.err &
tpid=$!
n=0
started=0
while [ "$n" -lt {start_ticks} ]; do
    if grep -q '^uacce-trace: tracing started' /tmp/trace.err; then
        started=1
        break
    fi
    alive "$tpid" || break
    usleep 100000
    n=$((n + 1))
done
cat /tmp/trace.err

if [ "$started" = 1 ]; then
    say "hooks attached after $((n / 10)).$((n % 10)) s; now {rounds} rounds of io_uring buffer registration"
    round=0
    pinned=0
    for kib in {sizes}; do
        round=$((round + 1))
        say "round $round/{rounds}: register a $kib KiB io_uring buffer (pinned long-term), then unregister it"
        if "$WORKLOAD" iouring --size-kib "$kib" --count 1 > /tmp/w.json 2> /tmp/w.err; then
            p=$(sed -n 's/.*"expected_pinned_pages":\([0-9]*\).*/\1/p' /tmp/w.json)
            pinned=$((pinned + ${{p:-0}}))
        else
            say "the workload failed: $(cat /tmp/w.err)"
        fi
        usleep {pause_us}
    done
    for sig in INT TERM KILL; do
        kill -"$sig" "$tpid" 2>/dev/null
        n=0
        while alive "$tpid" && [ "$n" -lt 100 ]; do usleep 100000; n=$((n + 1)); done
        alive "$tpid" || break
    done
    wait "$tpid" 2>/dev/null
    grep -v '^uacce-trace: tracing started' /tmp/trace.err
    acq1=$(counter nr_foll_pin_acquired)
    rel1=$(counter nr_foll_pin_released)
    say "the workload pinned $pinned pages; the kernel's nr_foll_pin_acquired moved by $((acq1 - acq0)), nr_foll_pin_released by $((rel1 - rel0))"
    say "done."
else
    say "uacce-trace trace did not start (its messages are above)"
fi
say "powering off"
sleep 1
poweroff -f
"#,
        tool = image::GUEST_TOOL,
        workload = image::GUEST_WORKLOAD,
        hooks = hooks.as_str(),
        start_ticks = TRACE_START_TICKS,
        rounds = ROUND_SIZES_KIB.len(),
        sizes = sizes.join(" "),
        pause_us = ROUND_PAUSE_US,
    )
}

/// How the demo VM ended.
struct Outcome {
    /// The guest printed [`DONE`].
    done: bool,
    interrupted: bool,
    timed_out: bool,
    elapsed: Duration,
}

/// Boots the VM with its console copied to our stdout and to `log`.
fn boot(vmlinuz: &Path, initrd: &Path, log: &Path, timeout: Duration) -> Result<Outcome> {
    let mut log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    INTERRUPTED.store(false, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; the previous handler is not needed.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let start = Instant::now();
    let mut child = qemu::command(vmlinuz, initrd, qemu::Console::Terminal)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let mut console = child
        .stdout
        .take()
        .context("QEMU's stdout was not captured")?;
    let copier = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut out = std::io::stdout();
        let mut to_terminal = true;
        let mut buf = [0u8; 4096];
        loop {
            match console.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let chunk = &buf[..n];
                    if to_terminal && (out.write_all(chunk).is_err() || out.flush().is_err()) {
                        // stdout went away (e.g. `| head`): keep the log.
                        to_terminal = false;
                    }
                    let _ = log_file.write_all(chunk);
                    seen.extend_from_slice(chunk);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        seen
    });

    let (mut interrupted, mut timed_out) = (false, false);
    loop {
        if child.try_wait().context("waiting for QEMU")?.is_some() {
            break;
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            interrupted = true;
        } else if start.elapsed() >= timeout {
            timed_out = true;
        }
        if interrupted || timed_out {
            // QEMU usually went away with the same Ctrl-C; either way reap it.
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Ctrl-C after QEMU's own exit still counts as an interruption.
    interrupted |= INTERRUPTED.load(Ordering::SeqCst);
    let seen = copier.join().unwrap_or_default();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: restores the default disposition; no handler runs after.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let text = String::from_utf8_lossy(&seen);
    Ok(Outcome {
        done: text.lines().any(|l| l.trim_end() == DONE),
        interrupted,
        timed_out,
        elapsed: start.elapsed(),
    })
}

/// The terminal settings of stdin at start, restored at the end (QEMU never
/// gets the terminal, but a killed child must not leave it raw either).
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
    fn kernel_names() -> Result<()> {
        assert_eq!(find_kernel("6.12")?.name, "debian-6.12");
        assert_eq!(find_kernel("debian-7.2")?.name, "debian-7.2");
        assert!(find_kernel("5.10").is_err());
        Ok(())
    }

    #[test]
    fn script() {
        let s = init_script(Hooks::Kprobe);
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("HOOKS=kprobe\n"));
        assert!(s.contains("for kib in 16 64 4 128 32 8 256 16 64 4; do"));
        assert!(s.contains("say \"done.\""));
        assert!(s.contains("usleep 1500000"));
        assert!(s.contains("${p:-0}"));
    }
}
