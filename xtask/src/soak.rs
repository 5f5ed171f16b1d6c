//! `cargo xtask soak`: a long run on the project's test kernel, to show
//! that the tracer's memory stays bounded, its kernel pairing maps do not
//! leak and its counts stay exact while processes come and go.
//!
//! One VM (QEMU, TCG) boots the test kernel (`cargo xtask kernel`) with
//! `xtask/vm-guest/soak.sh` as `/init`. The guest records with
//! `uacce-trace record --raw` while four lanes of short-lived processes run
//! for `--minutes`: `/dev/uacce_ctrl` PIN/UNPIN (`uacce-ctrl-pin`), io_uring
//! buffer register/unregister (`uacce-workload`) and two lanes of mock IO
//! page faults through iommufd (`iopf-workload`). Every `--sample-seconds`
//! the guest writes the tracer's VmRSS/VmHWM and the entries of its BPF
//! pairing maps (read with `bpftool`, copied into the guest); at the end it
//! stops the tracer with SIGINT and sums `uacce-trace report` of the
//! recording. The host then checks:
//!
//! - pages pinned / unpinned in the tool's recording equal the
//!   `nr_foll_pin_acquired` / `nr_foll_pin_released` deltas of
//!   `/proc/vmstat` (after `vm/stat_refresh`) and the guest programs' own
//!   tallies;
//! - IOPF records equal the faults the IOPF lanes triggered and read back;
//! - no IOPF group unanswered (IOPFs are paired in user space), nothing
//!   dropped, and every kernel pairing map empty once the workload is over
//!   (`PIN_INFLIGHT`, `UNPIN_INFLIGHT`, `IOCTL_INFLIGHT`, …);
//! - memory bounded: the tracer's VmHWM grows by less than
//!   [`HWM_GROWTH_BOUND_KB`] after the warm-up ([`WARMUP_S`]), i.e. the
//!   peak is reached early and churn does not add to it;
//! - at least [`MIN_PROCS_PER_MINUTE`] short-lived processes a minute.
//!
//! The table of samples and the counts are printed; the exit status is 0
//! only on PASS. Files go to `vm/soak/` in the cache (`console.log` and one
//! file per section).

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::base::{cache, Arch};
use crate::toolchain::setup::{self, Need};
use crate::vm::console::{self, kv, vmstat, Console};
use crate::vm::{guest, image, programs, qemu};
use crate::{kernel, vm};

/// The guest's `/init`, after the variables and [`guest::LIB`] that
/// [`init_script`] puts in front.
const DRIVER: &str = include_str!("../vm-guest/soak.sh");

/// Seconds after the start of the workload that count as warm-up: ring
/// buffer pages, BTF and allocator arenas are in by then.
pub const WARMUP_S: u64 = 60;
/// Most the tracer's peak RSS (VmHWM) may grow after the warm-up. The
/// tracer streams a raw recording to a file and keeps per-process state
/// for live processes only, so growth is the allocator settling, not
/// something that scales with the run's length or the processes seen.
pub const HWM_GROWTH_BOUND_KB: u64 = 8 * 1024;
/// Short-lived processes a minute the lanes must at least start.
pub const MIN_PROCS_PER_MINUTE: u64 = 60;

/// What the soak installs first: the eBPF toolchain (it builds the tool),
/// QEMU, busybox and gzip for the guest, bpftool (copied into it).
const NEEDS: &[Need] = &[
    Need::BpfToolchain,
    Need::Packages(&["qemu-system-x86", "busybox-static", "gzip", "bpftool"]),
];

/// Guest path of bpftool.
const GUEST_BPFTOOL: &str = "/usr/sbin/bpftool";

/// The pairing maps sampled (keys of the guest's sample lines) and whether
/// the tracer must have them: `QUEUE_INFLIGHT` is newer than the others
/// and only checked where it exists.
const MAPS: &[(&str, bool)] = &[
    ("pin_inflight", true),
    ("unpin_inflight", true),
    ("ioctl_inflight", true),
    ("get_pasid_inflight", true),
    ("queue_inflight", false),
];

/// Options of `cargo xtask soak`.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// Minutes the workload runs (CI: 10; at least 2: memory is judged after a 1-minute warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=600))]
    pub minutes: u64,
    /// Seconds between samples of memory and map entries.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub sample_seconds: u64,
    /// Use the binaries already in target/release instead of building.
    #[arg(long)]
    pub no_build: bool,
    /// Keep the VM image afterwards (logs are always kept).
    #[arg(long)]
    pub keep: bool,
}

impl SoakArgs {
    /// The soak of the VM tier of `cargo xtask test`.
    pub fn for_test(minutes: u64, no_build: bool) -> Self {
        SoakArgs {
            minutes: minutes.max(2),
            sample_seconds: 30,
            no_build,
            keep: false,
        }
    }
}

/// `cargo xtask soak`: setup first (idempotent), then the soak. `Ok(false)`
/// on FAIL (details printed).
pub fn run(args: &SoakArgs) -> Result<bool> {
    setup::ensure(NEEDS)?;
    run_soak(args)
}

/// The `/init` of the soak VM: its parameters, then `vm-guest/soak.sh`.
fn init_script(args: &SoakArgs) -> String {
    guest::init(
        "soak",
        &[
            ("SOAK_SECONDS", (args.minutes * 60).to_string()),
            ("SAMPLE_SECONDS", args.sample_seconds.to_string()),
            ("HOOKS", "auto".into()),
            ("TOOL", image::GUEST_TOOL.into()),
            ("WORKLOAD", image::GUEST_WORKLOAD.into()),
            ("IOPF", guest::GUEST_IOPF_WORKLOAD.into()),
            ("UACCE", guest::GUEST_UACCE_CTRL_PIN.into()),
            ("BPFTOOL", GUEST_BPFTOOL.into()),
        ],
        DRIVER,
    )
}

/// Boots the soak VM and checks it; `Ok(false)` on FAIL.
pub fn run_soak(args: &SoakArgs) -> Result<bool> {
    if !cfg!(target_arch = "x86_64") {
        bail!("the soak boots an x86-64 guest with binaries built for the host");
    }
    qemu::check_installed()?;
    let kernel_dir = kernel::ensure_test_kernel()?;
    let programs = programs::ensure(&kernel_dir, Arch::X86_64)?;
    let bz = kernel_dir.join("bzImage");
    let (tool, workload) = vm::build(false, args.no_build)?;
    let tool = tool.context("no tool binary")?;

    let dir = cache::vm_work()?.join("soak");
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let base = dir.join("base.cpio.gz");
    let raw = image::base_archive(&image::BaseContents {
        tool: Some(&tool),
        workload: &workload,
    })?;
    image::write_gzip(&raw, &base)?;

    let bpftool = setup::find_bpftool()?;
    let mut extra: Vec<(PathBuf, String)> = vec![
        (programs.iopf(), guest::GUEST_IOPF_WORKLOAD.into()),
        (programs.pin(), guest::GUEST_UACCE_CTRL_PIN.into()),
        (bpftool.clone(), GUEST_BPFTOOL.into()),
    ];
    for lib in image::ldd(&bpftool)? {
        let guest = lib
            .to_str()
            .with_context(|| format!("library path {} is not UTF-8", lib.display()))?
            .to_string();
        extra.push((lib, guest));
    }
    let extra_refs: Vec<(PathBuf, &str)> =
        extra.iter().map(|(h, g)| (h.clone(), g.as_str())).collect();
    let img = dir.join("initramfs.cpio.gz");
    image::write_vm_image_with(&base, &init_script(args), &extra_refs, &img)?;

    // Boot, tracer start (BTF under TCG), the soak, the report: generous.
    let timeout = Duration::from_secs(args.minutes * 60 + 600);
    let log = dir.join("console.log");
    println!(
        "soak: {} min of pins, IOPFs and process churn on the test kernel, a sample every {} s \
         (console: {})",
        args.minutes,
        args.sample_seconds,
        log.display()
    );
    let started = Instant::now();
    let boot = qemu::boot(&bz, &img, &log, timeout)?;
    let text = String::from_utf8_lossy(
        &fs::read(&log).with_context(|| format!("reading {}", log.display()))?,
    )
    .into_owned();
    let console = console::parse(&text);
    for (name, section) in &console.sections {
        let _ = fs::write(dir.join(name), section.lines.join("\n") + "\n");
    }
    let mut outcome = analyse(&console, args.minutes);
    match boot.status {
        None => outcome.failures.insert(
            0,
            format!("QEMU killed after {} s (time limit)", timeout.as_secs()),
        ),
        Some(s) if !s.success() => outcome.failures.insert(0, format!("QEMU exited with {s}")),
        Some(_) => {}
    }
    print!("{}", outcome.render());
    println!("QEMU ran {:.1} s", started.elapsed().as_secs_f64());
    if outcome.failures.is_empty() {
        if !args.keep {
            let _ = fs::remove_file(&img);
        }
        println!("soak: PASS");
        Ok(true)
    } else {
        for f in &outcome.failures {
            println!("  FAILED: {f}");
        }
        println!("soak: FAIL (console log: {})", log.display());
        Ok(false)
    }
}

/// One sample line of the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sample {
    t_s: u64,
    rss_kb: Option<u64>,
    hwm_kb: Option<u64>,
    /// Entries per map (`None`: bpftool could not tell).
    maps: Vec<Option<u64>>,
    procs: u64,
    recording_bytes: u64,
}

impl Sample {
    fn parse(line: &str) -> Option<Sample> {
        let m: BTreeMap<String, String> = kv(line).into_iter().collect();
        let num = |k: &str| m.get(k).and_then(|v| v.parse::<u64>().ok());
        Some(Sample {
            t_s: num("t")?,
            rss_kb: num("rss_kb"),
            hwm_kb: num("hwm_kb"),
            maps: MAPS.iter().map(|(k, _)| num(k)).collect(),
            procs: num("procs").unwrap_or(0),
            recording_bytes: num("recording_bytes").unwrap_or(0),
        })
    }
}

/// What the soak found.
#[derive(Debug, Default)]
struct Outcome {
    samples: Vec<Sample>,
    /// (what, value) rows of the counts table.
    counts: Vec<(String, String)>,
    failures: Vec<String>,
}

impl Outcome {
    fn fail(&mut self, why: impl Into<String>) {
        self.failures.push(why.into());
    }

    fn count(&mut self, what: &str, value: impl std::fmt::Display) {
        self.counts.push((what.to_string(), value.to_string()));
    }

    /// The memory-over-time table and the counts.
    fn render(&self) -> String {
        let opt = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
        let mut s = String::new();
        s.push_str("memory and pairing maps over time (tracer in the guest):\n");
        s.push_str(&format!(
            "{:>6} {:>9} {:>9}",
            "t(s)", "RSS(KiB)", "HWM(KiB)"
        ));
        for (m, _) in MAPS {
            s.push_str(&format!(" {m:>w$}", w = m.len()));
        }
        s.push_str(&format!(" {:>7} {:>9}\n", "procs", "rec(KiB)"));
        for x in &self.samples {
            s.push_str(&format!(
                "{:>6} {:>9} {:>9}",
                x.t_s,
                opt(x.rss_kb),
                opt(x.hwm_kb)
            ));
            for ((m, _), v) in MAPS.iter().zip(&x.maps) {
                s.push_str(&format!(" {:>w$}", opt(*v), w = m.len()));
            }
            s.push_str(&format!(
                " {:>7} {:>9}\n",
                x.procs,
                x.recording_bytes / 1024
            ));
        }
        s.push_str("counts:\n");
        let w = self.counts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &self.counts {
            s.push_str(&format!("  {k:<w$}  {v}\n"));
        }
        s
    }
}

/// The checks of the module docs, on a parsed console.
fn analyse(console: &Console, minutes: u64) -> Outcome {
    let mut o = Outcome::default();
    if console.booted.is_none() {
        o.fail("the guest never reached /init");
        return o;
    }
    if !console.done {
        o.fail("the guest did not finish its script (no @@UT-DONE)");
    }
    let status = console.pairs("status");
    if status.get("record_started").map(String::as_str) != Some("1") {
        o.fail(format!(
            "the tracer did not start: {}",
            console.lines("record.err").join(" | ")
        ));
        return o;
    }
    o.samples = console
        .lines("samples")
        .iter()
        .filter_map(|l| Sample::parse(l))
        .collect();
    if o.samples.len() < 2 {
        o.fail(format!("only {} samples", o.samples.len()));
        return o;
    }

    // Tallies of the lanes.
    let mut lanes: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for l in console.lines("tallies") {
        let Some((lane, rest)) = l.split_once(' ') else {
            continue;
        };
        lanes.insert(
            lane.to_string(),
            kv(rest)
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
                .collect(),
        );
    }
    let lane = |name: &str, key: &str| lanes.get(name).and_then(|m| m.get(key)).copied();
    let sum = |key: &str| -> u64 {
        lanes
            .values()
            .filter_map(|m| m.get(key))
            .copied()
            .sum::<u64>()
    };
    for name in ["uacce", "iouring", "iopf-a", "iopf-b"] {
        if !lanes.contains_key(name) {
            o.fail(format!("lane {name} left no tally"));
        }
    }
    let procs = sum("procs");
    let guest_pinned = sum("pinned");
    let guest_unpinned = sum("unpinned");
    let guest_faults = sum("faults");
    let fails = sum("fails");
    o.count(
        "short-lived processes (uacce / iouring / iopf-a / iopf-b)",
        format!(
            "{procs} ({} / {} / {} / {})",
            lane("uacce", "procs").unwrap_or(0),
            lane("iouring", "procs").unwrap_or(0),
            lane("iopf-a", "procs").unwrap_or(0),
            lane("iopf-b", "procs").unwrap_or(0)
        ),
    );
    if procs < MIN_PROCS_PER_MINUTE * minutes {
        o.fail(format!(
            "{procs} processes in {minutes} min, want at least {} a minute",
            MIN_PROCS_PER_MINUTE
        ));
    }
    if fails > 0 {
        o.fail(format!(
            "{fails} workload runs failed (see the tallies section)"
        ));
    }

    // The tool's totals.
    let totals: BTreeMap<String, u64> = console
        .lines("totals")
        .iter()
        .flat_map(|l| kv(l))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    let tool = |k: &str| totals.get(k).copied();
    if status.get("record_rc").map(String::as_str) != Some("130") {
        o.fail(format!(
            "record ended with {:?} after SIG{}, want 130 after SIGINT",
            status.get("record_rc"),
            status.get("record_stop_signal").map_or("?", String::as_str)
        ));
    }
    if status.get("report_rc").map(String::as_str) != Some("0") {
        o.fail(format!(
            "report of the recording failed ({:?}): {}",
            status.get("report_rc"),
            console.lines("report.err").join(" | ")
        ));
    }

    // Pins against /proc/vmstat and the guest's tallies.
    match (
        vmstat(console, "vmstat-before"),
        vmstat(console, "vmstat-after"),
        tool("pinned_pages"),
        tool("unpinned_pages"),
    ) {
        (Some((a0, r0)), Some((a1, r1)), Some(p), Some(u)) => {
            let (da, dr) = (a1.saturating_sub(a0), r1.saturating_sub(r0));
            o.count(
                "pages pinned: tool / vmstat nr_foll_pin_acquired delta / guest tally",
                format!("{p} / {da} / {guest_pinned}"),
            );
            o.count(
                "pages unpinned: tool / vmstat nr_foll_pin_released delta / guest tally",
                format!("{u} / {dr} / {guest_unpinned}"),
            );
            if (p, u) != (da, dr) {
                o.fail(format!(
                    "tool pinned/unpinned {p}/{u} pages, vmstat says +{da}/+{dr}"
                ));
            }
            if (p, u) != (guest_pinned, guest_unpinned) {
                o.fail(format!(
                    "tool pinned/unpinned {p}/{u} pages, the guest programs {guest_pinned}/{guest_unpinned}"
                ));
            }
        }
        _ => o.fail("vmstat or the tool's page totals missing"),
    }
    if let (Some(pc), Some(uc)) = (tool("pin_calls"), tool("unpin_calls")) {
        o.count("pin / unpin calls traced", format!("{pc} / {uc}"));
    }
    match tool("held_pages") {
        Some(0) => {}
        Some(h) => o.fail(format!("the pin ledger still holds {h} pages at the end")),
        None => o.fail("the report has no pin ledger totals"),
    }

    // IOPFs against the lanes' own count.
    match tool("iopf_records") {
        Some(n) => {
            o.count(
                "IOPFs: tool records / faults the guest triggered and answered",
                format!("{n} / {guest_faults}"),
            );
            if n != guest_faults {
                o.fail(format!(
                    "tool recorded {n} IOPFs, the guest triggered {guest_faults}"
                ));
            }
            if guest_faults == 0 {
                o.fail("the IOPF lanes triggered no fault");
            }
        }
        None => o.fail("the report has no IOPF total"),
    }
    let dropped = tool("dropped").unwrap_or(u64::MAX);
    let unanswered = tool("unanswered").unwrap_or(u64::MAX);
    o.count(
        "dropped records / unanswered IOPF groups",
        format!("{dropped} / {unanswered}"),
    );
    if dropped != 0 || unanswered != 0 {
        o.fail(format!(
            "{dropped} records dropped, {unanswered} IOPF groups unanswered"
        ));
    }

    // Pairing maps: empty once the workload is over.
    if let Some(last) = o.samples.last().cloned() {
        let left: Vec<String> = MAPS
            .iter()
            .zip(&last.maps)
            .filter(|((_, required), n)| match n {
                Some(n) => *n != 0,
                None => *required,
            })
            .map(|((m, _), n)| format!("{m}={}", n.map_or("?".into(), |n| n.to_string())))
            .collect();
        let peak: Vec<String> = MAPS
            .iter()
            .enumerate()
            .map(|(i, (m, _))| {
                let p = o
                    .samples
                    .iter()
                    .filter_map(|s| s.maps[i])
                    .max()
                    .unwrap_or(0);
                format!("{m} {p}")
            })
            .collect();
        o.count(
            "pairing map entries, most seen in a sample",
            peak.join(", "),
        );
        if !left.is_empty() {
            o.fail(format!(
                "pairing map entries left after the workload ended: {}",
                left.join(", ")
            ));
        }
    }

    for (what, key) in [
        ("guest boot until /init (uptime)", "booted_at_uptime"),
        (
            "tracer start-up (BTF, verifier under TCG)",
            "record_start_wait_ds",
        ),
        ("tracer stop after SIGINT", "record_stop_seconds"),
        ("report of the recording", "report_seconds"),
    ] {
        if let Some(v) = status.get(key) {
            let secs = if key.ends_with("_ds") {
                v.parse::<f64>()
                    .map_or_else(|_| v.clone(), |d| format!("{:.1}", d / 10.0))
            } else {
                v.clone()
            };
            o.count(what, format!("{secs} s"));
        }
    }

    // Memory: the peak after warm-up, and the resident size.
    let warm = o.samples.iter().find(|s| s.t_s >= WARMUP_S).cloned();
    let last = o.samples.last().cloned();
    match (
        warm.as_ref().and_then(|s| s.hwm_kb),
        last.as_ref().and_then(|s| s.hwm_kb),
    ) {
        (Some(w), Some(l)) => {
            let growth = l.saturating_sub(w);
            o.count(
                "tracer VmHWM after warm-up / at the end / growth (bound)",
                format!(
                    "{w} KiB (t={} s) / {l} KiB / {growth} KiB (< {HWM_GROWTH_BOUND_KB} KiB)",
                    warm.as_ref().map_or(0, |s| s.t_s)
                ),
            );
            if growth >= HWM_GROWTH_BOUND_KB {
                o.fail(format!(
                    "the tracer's VmHWM grew by {growth} KiB after the warm-up, bound {HWM_GROWTH_BOUND_KB} KiB"
                ));
            }
        }
        _ => o.fail(format!(
            "no memory sample after the {WARMUP_S} s warm-up (run at least 2 minutes)"
        )),
    }
    if let (Some(w), Some(l)) = (
        warm.as_ref().and_then(|s| s.rss_kb),
        last.as_ref().and_then(|s| s.rss_kb),
    ) {
        let most = o.samples.iter().filter_map(|s| s.rss_kb).max().unwrap_or(l);
        let growth = l.saturating_sub(w);
        o.count(
            "tracer VmRSS after warm-up / at the end / most sampled / growth (bound)",
            format!("{w} KiB / {l} KiB / {most} KiB / {growth} KiB (< {HWM_GROWTH_BOUND_KB} KiB)"),
        );
        if growth >= HWM_GROWTH_BOUND_KB {
            o.fail(format!(
                "the tracer's VmRSS grew by {growth} KiB after the warm-up, bound {HWM_GROWTH_BOUND_KB} KiB"
            ));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(totals: &str, last_maps: &str, hwm_end: u64) -> String {
        format!(
            "noise\n\x1bc\x1b[?7l@@UT-BOOTED 6.12.117\n\
@@UT-BEGIN status\nrecord_start_wait_ds=80\nrecord_started=1\nrecord_rc=130\nrecord_stop_signal=INT\nreport_rc=0\n@@UT-END status lines=5 bytes=1\n\
@@UT-BEGIN samples\n\
t=0 rss_kb=9000 hwm_kb=9000 pin_inflight=0 unpin_inflight=0 ioctl_inflight=0 get_pasid_inflight=0 procs=0 recording_bytes=100\n\
t=60 rss_kb=10000 hwm_kb=11000 pin_inflight=2 unpin_inflight=0 ioctl_inflight=0 get_pasid_inflight=0 procs=300 recording_bytes=2048\n\
t=122 rss_kb=10000 hwm_kb={hwm_end} {last_maps} procs=600 recording_bytes=4096\n\
@@UT-END samples lines=3 bytes=1\n\
@@UT-BEGIN tallies\n\
iopf-a procs=100 faults=1600 fails=0\niopf-b procs=100 faults=1600 fails=0\n\
iouring procs=100 pinned=1000 unpinned=1000 fails=0\nuacce procs=300 pinned=500 unpinned=500 fails=0\n\
@@UT-END tallies lines=4 bytes=1\n\
@@UT-BEGIN vmstat-before\nnr_foll_pin_acquired 10\nnr_foll_pin_released 10\n@@UT-END vmstat-before lines=2 bytes=1\n\
@@UT-BEGIN vmstat-after\nnr_foll_pin_acquired 1510\nnr_foll_pin_released 1510\n@@UT-END vmstat-after lines=2 bytes=1\n\
@@UT-BEGIN totals\n{totals}\n@@UT-END totals lines=1 bytes=1\n\
@@UT-DONE\n"
        )
    }

    const GOOD: &str = "iopf_records=3200 iopf_rows=200 pin_calls=900 unpin_calls=900 \
pinned_pages=1500 unpinned_pages=1500 held_pages=0 ledger_rows=400 dropped=0 unanswered=0";
    const EMPTY_MAPS: &str =
        "pin_inflight=0 unpin_inflight=0 ioctl_inflight=0 get_pasid_inflight=0";

    #[test]
    fn a_clean_soak_passes() {
        let o = analyse(&console::parse(&log(GOOD, EMPTY_MAPS, 12000)), 2);
        assert!(o.failures.is_empty(), "{:?}", o.failures);
        assert_eq!(o.samples.len(), 3);
        let table = o.render();
        assert!(table.contains("1500 / 1500 / 1500"), "{table}");
        assert!(table.contains("3200 / 3200"), "{table}");
        assert!(
            table.contains("11000 KiB (t=60 s) / 12000 KiB / 1000 KiB"),
            "{table}"
        );
    }

    #[test]
    fn each_problem_fails() {
        let cases: [(&str, &str, u64, &str); 5] = [
            (
                &GOOD.replace("pinned_pages=1500 ", "pinned_pages=1499 "),
                EMPTY_MAPS,
                12000,
                "vmstat says",
            ),
            (
                &GOOD.replace("iopf_records=3200", "iopf_records=3199"),
                EMPTY_MAPS,
                12000,
                "the guest triggered",
            ),
            (
                GOOD,
                &EMPTY_MAPS.replace("pin_inflight=0", "pin_inflight=3"),
                12000,
                "pin_inflight=3",
            ),
            (GOOD, EMPTY_MAPS, 11000 + HWM_GROWTH_BOUND_KB, "VmHWM grew"),
            (
                &GOOD.replace("unanswered=0", "unanswered=2"),
                EMPTY_MAPS,
                12000,
                "2 IOPF groups unanswered",
            ),
        ];
        for (totals, maps, hwm, want) in cases {
            let o = analyse(&console::parse(&log(totals, maps, hwm)), 2);
            assert!(
                o.failures.iter().any(|f| f.contains(want)),
                "want {want:?} in {:?}",
                o.failures
            );
        }
    }

    #[test]
    fn too_few_processes_fail() {
        let o = analyse(&console::parse(&log(GOOD, EMPTY_MAPS, 12000)), 20);
        assert!(o.failures.iter().any(|f| f.contains("processes in 20 min")));
    }

    #[test]
    fn script_sets_the_variables() {
        let s = init_script(&SoakArgs::for_test(3, true));
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("\nSOAK_SECONDS=180\n"));
        assert!(s.contains("\nSAMPLE_SECONDS=30\n"));
        assert!(s.contains("\nIOPF=/usr/bin/iopf-workload\n"));
        assert!(s.contains("poweroff -f"));
        guest::assert_sh_syntax(&s);
    }

    /// The guest's awk totals of a `report`, run with the host's busybox
    /// on the golden report of `before.utrace` (306 IOPFs, 100 pages pinned
    /// and unpinned, 3 dropped: 2 ring-buffer losses and 1 unanswered, which
    /// is also counted as dropped since every loss reason is).
    #[test]
    fn guest_awk_sums_the_golden_report() {
        let start = DRIVER.find("awk '").map(|i| i + 5);
        let end = DRIVER.find("' /tmp/report.txt");
        let (Some(start), Some(end)) = (start, end) else {
            panic!("no awk program in the driver");
        };
        let report = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../uacce-trace/tests/golden/report-before.utrace.txt");
        let out = match std::process::Command::new("busybox")
            .args(["awk", &DRIVER[start..end]])
            .arg(&report)
            .output()
        {
            Ok(o) => o,
            Err(e) => {
                crate::test_skip::skip(
                    crate::test_skip::Lack::Setup,
                    &format!("busybox not runnable ({e}); `cargo xtask setup` installs it"),
                );
                return;
            }
        };
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "iopf_records=306 iopf_rows=2 pin_calls=21 unpin_calls=21 pinned_pages=100 \
             unpinned_pages=100 held_pages=0 ledger_rows=2 dropped=3 unanswered=1",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn no_boot_fails() {
        let o = analyse(&console::parse("garbage\n"), 2);
        assert_eq!(
            o.failures,
            vec!["the guest never reached /init".to_string()]
        );
    }
}
