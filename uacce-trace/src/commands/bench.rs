//! Benchmark drivers behind the hidden `uacce-trace bench` command, which
//! `cargo xtask bench pipeline` and `bench ioctl` run (docs/architecture.md,
//! "Performance principles"). Not a user interface: the output is one JSON
//! object per run on stdout.
//!
//! - `bench pipeline --rate R`: the bench source ([`Tracer::start_bench`]:
//!   IOPF-shaped records from `getppid(2)` tracepoints, only for this
//!   process) feeds the real ring buffer → the commands' event source
//!   ([`Source::from_tracer`]: [`Tracer::run`] reads, decodes, attributes
//!   and batches) → [`Aggregator`] (+ hlog interval encoding
//!   every second, as `record` does) on one tokio current-thread runtime,
//!   i.e. one thread, while a trigger thread calls `getppid` at `R` calls/s
//!   (0: as fast as it can). Reports events consumed, drops, the consumer
//!   thread's CPU ns per event, the bench programs' BPF run time per event
//!   (kernel BPF stats), peak memory and the trigger's ns per call.
//! - `bench trigger --count N`: the trigger loop alone, untraced or under
//!   another tracer (`bpftrace -c`): ns per call, and with `--bpf-stats` the
//!   run time of every BPF program that ran about once per call.
//! - `bench ioctl-loop --count N`: `ioctl(UACCE_CMD_PIN)` on `/dev/null`
//!   N times, an ordinary program's system call that the tool's real
//!   `sys_enter/exit_ioctl` programs (and any other tracer on those
//!   tracepoints) see: the loop's wall time, its own CPU time and the whole
//!   machine's busy CPU time (`/proc/stat`) over the loop alone.
//! - `bench request-loop --count N`: N calls of [`uacce_trace_bench_request`],
//!   an empty, never-inlined, unmangled function of this binary that
//!   request tracing (`--op THIS-BINARY:uacce_trace_bench_request`) and
//!   bpftrace's `uprobe:`/`uretprobe:` can probe: the same figures, per
//!   request.
//! - `bench decode --events N`: decode + attribute + aggregate of
//!   in-memory bench records, no kernel: the user-side ceiling on one core
//!   (also the target for callgrind).

use std::{
    os::fd::{FromRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use serde::Serialize;
use uacce_trace_common::{
    hooks::BENCH, IopfRecord, IopfResponseRecord, RecordHeader, HOOK_TRACEPOINT,
    IOPF_REPORTER_IS_USER, KIND_IOPF_REPORT, KIND_IOPF_RESPONSE, RECORD_VERSION,
};

use crate::{
    formats::{Format, IntervalWriter, RunMeta},
    ingest::attribution::Attributor,
    ingest::decode::Decoder,
    ingest::event::Event,
    ingest::live::Tracer,
    ingest::losses::LossReason,
    ingest::source::{Item, Source, Stop},
    model::{Aggregator, ModelConfig},
};

/// `uacce-trace bench …` (hidden).
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Bench source → ring buffer → decode → aggregate at an offered rate.
    Pipeline {
        /// Offered records per second; 0: as fast as the trigger goes.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Records the bench program writes per getppid call (1 to 16): one
        /// trigger thread can then offer more records than it makes calls.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
        burst: u32,
        /// How long the trigger runs, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        duration_ms: u64,
        /// Stop after this many calls (with --rate 0: a timed loop of N calls).
        #[arg(long)]
        count: Option<u64>,
        /// Ring buffer size.
        #[arg(long, default_value = "4M", value_parser = crate::commands::parse_ring_size)]
        ring_size: u32,
        /// Enable kernel BPF run-time statistics (costs tens of ns per run).
        #[arg(long)]
        bpf_stats: bool,
        /// Ring-buffer wake-ups: once per batch, or the kernel's default.
        #[arg(long, value_enum, default_value_t = Wakeup::Batched)]
        wakeup: Wakeup,
        /// Leave the threads unpinned (by default the consumer runs on CPU
        /// 0 and the trigger on CPU 1).
        #[arg(long)]
        no_pin: bool,
    },
    /// The trigger loop alone (untraced, or under another tracer).
    Trigger {
        /// getppid calls.
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// Enable kernel BPF run-time statistics and report the programs
        /// that ran once per call.
        #[arg(long)]
        bpf_stats: bool,
        /// Write the JSON result here instead of stdout.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Leave the thread unpinned (by default it runs on CPU 1, like the
        /// trigger of `bench pipeline`).
        #[arg(long)]
        no_pin: bool,
    },
    /// `ioctl(UACCE_CMD_PIN)` on /dev/null in a loop (fails with ENOTTY):
    /// the host's one hook that runs the tool's real programs.
    IoctlLoop(LoopArgs),
    /// Calls of `uacce_trace_bench_request` (an empty function of this
    /// binary, for `--op` and uprobes) in a loop.
    RequestLoop(LoopArgs),
    /// Print CLOCK_MONOTONIC in ns (for shell scripts timing a command).
    Clock,
    /// Print every loaded BPF program's run count and run time (kernel BPF
    /// statistics, e.g. with `kernel.bpf_stats_enabled=1`).
    Progs,
    /// Decode + attribute + aggregate in-memory bench records (no kernel).
    Decode {
        /// Records to process.
        #[arg(long, default_value_t = 5_000_000)]
        events: u64,
        /// Records per batch (as read from the ring in one wake-up).
        #[arg(long, default_value_t = 4096)]
        batch: usize,
    },
}

/// Options of the call loops (`ioctl-loop`, `request-loop`).
#[derive(clap::Args, Debug)]
pub struct LoopArgs {
    /// Calls in the measured loop (after a warm-up of 1/20 as many).
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Enable kernel BPF run-time statistics and report the programs
    /// that ran once per call.
    #[arg(long)]
    bpf_stats: bool,
    /// Leave the thread unpinned (by default it runs on CPU 1, like the
    /// trigger of `bench pipeline`).
    #[arg(long)]
    no_pin: bool,
}

impl LoopArgs {
    /// `call_loop` as these options say, as JSON.
    fn run(
        &self,
        call_loop: fn(u64, bool) -> anyhow::Result<TriggerAlone>,
    ) -> anyhow::Result<String> {
        if !self.no_pin {
            pin_to_cpu(TRIGGER_CPU);
        }
        Ok(serde_json::to_string(&call_loop(
            self.count,
            self.bpf_stats,
        )?)?)
    }
}

/// Wake-up policy of the bench programs' ring-buffer submits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wakeup {
    /// The tool's policy: wake the reader when a record finds the ring
    /// empty or crosses 1/8 of it; the reader drains at most every 10 ms.
    Batched,
    /// The kernel's default: wake whenever the reader has caught up.
    Adaptive,
}

/// Run a bench command; prints its JSON result.
pub fn run(cmd: BenchCommand) -> anyhow::Result<u8> {
    let json = match cmd {
        BenchCommand::Pipeline {
            rate,
            burst,
            duration_ms,
            count,
            ring_size,
            bpf_stats,
            wakeup,
            no_pin,
        } => serde_json::to_string(&pipeline(&PipelineOptions {
            pin: !no_pin,
            rate,
            burst,
            duration_ns: duration_ms.saturating_mul(1_000_000),
            count,
            ring_bytes: ring_size,
            bpf_stats,
            wakeup,
        })?)?,
        BenchCommand::Trigger {
            count,
            bpf_stats,
            out,
            no_pin,
        } => {
            if !no_pin {
                pin_to_cpu(TRIGGER_CPU);
            }
            let json = serde_json::to_string(&trigger_alone(count, bpf_stats)?)?;
            if let Some(path) = out {
                std::fs::write(path, format!("{json}\n"))?;
                return Ok(0);
            }
            json
        }
        BenchCommand::IoctlLoop(a) => a.run(ioctl_loop)?,
        BenchCommand::RequestLoop(a) => a.run(request_loop)?,
        BenchCommand::Clock => mono_ns().to_string(),
        BenchCommand::Progs => serde_json::to_string(&prog_stats())?,
        BenchCommand::Decode { events, batch } => {
            serde_json::to_string(&decode_aggregate(events, batch.max(1)))?
        }
    };
    println!("{json}");
    Ok(0)
}

// ------------------------------------------------------------------ clocks

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CPU time of the calling thread.
fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Voluntary and involuntary context switches of the calling thread.
fn thread_switches() -> (u64, u64) {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    (
        u64::try_from(ru.ru_nvcsw).unwrap_or(0),
        u64::try_from(ru.ru_nivcsw).unwrap_or(0),
    )
}

/// Busy CPU time of the whole machine so far, all CPUs, in ns: everything
/// in `/proc/stat`'s `cpu` line but idle and iowait (user, nice, system,
/// irq, softirq, steal; guest time is inside user). Tick-sampled by the
/// kernel (USER_HZ resolution), so meaningful over long windows only; 0
/// when unreadable.
pub fn machine_busy_ns() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| busy_ticks(&s))
        .map_or(0, |ticks| {
            // SAFETY: sysconf has no preconditions.
            let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
                .unwrap_or(100)
                .max(1);
            ticks.saturating_mul(1_000_000_000 / hz)
        })
}

/// user + nice + system + irq + softirq + steal of the `cpu` line.
fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// Peak resident set size of this process (`VmHWM`), KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

// ----------------------------------------------------------------- trigger

/// CPU of the consumer thread (ring read, decode, aggregate).
pub const CONSUMER_CPU: usize = 0;
/// CPU of the trigger loop, in every mode (untraced, under any tracer).
pub const TRIGGER_CPU: usize = 1;

/// Pin the calling thread to `cpu`, when the machine has it: on a shared
/// 2-core machine this keeps the spinning trigger and the consumer off
/// each other's core. Best effort.
pub fn pin_to_cpu(cpu: usize) {
    if std::thread::available_parallelism().map_or(1, usize::from) <= cpu {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes
    // inside it (cpu < CPU_SETSIZE); sched_setaffinity(0) is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[inline(always)]
fn getppid() {
    // SAFETY: getppid(2) has no arguments and cannot fail. Through
    // syscall(2) so no libc may cache it.
    unsafe { libc::syscall(libc::SYS_getppid) };
}

/// What the trigger loop did.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TriggerResult {
    pub calls: u64,
    pub elapsed_ns: u64,
    /// Wall ns per call (the loop's cost, tracer included; inflated when
    /// other processes take the CPU away).
    pub ns_per_call: f64,
    /// CPU time of the trigger thread (user + system, BPF programs
    /// included), which preemption by other processes does not inflate.
    pub cpu_ns: u64,
    pub cpu_ns_per_call: f64,
    /// Busy CPU time of the whole machine over the loop ([`machine_busy_ns`]:
    /// all CPUs, the tracers' threads and kernel work included).
    pub machine_busy_ns: u64,
    pub machine_busy_ns_per_call: f64,
    /// Calls per second achieved.
    pub rate: f64,
    /// Calls made before the measured ones (not in the figures above).
    pub warmup_calls: u64,
}

impl TriggerResult {
    fn new(calls: u64, elapsed_ns: u64, cpu_ns: u64, machine_busy_ns: u64) -> Self {
        TriggerResult {
            calls,
            elapsed_ns,
            ns_per_call: elapsed_ns as f64 / calls.max(1) as f64,
            cpu_ns,
            cpu_ns_per_call: cpu_ns as f64 / calls.max(1) as f64,
            machine_busy_ns,
            machine_busy_ns_per_call: machine_busy_ns as f64 / calls.max(1) as f64,
            rate: calls as f64 * 1e9 / elapsed_ns.max(1) as f64,
            warmup_calls: 0,
        }
    }
}

/// `count` calls back to back.
fn trigger_count(count: u64) -> TriggerResult {
    timed_loop(count, getppid)
}

/// `call` `count` times back to back, timed: wall, this thread's CPU and
/// the whole machine's busy CPU over the loop alone.
#[inline(always)]
fn timed_loop(count: u64, mut call: impl FnMut()) -> TriggerResult {
    let machine = machine_busy_ns();
    let (start, cpu) = (mono_ns(), thread_cpu_ns());
    for _ in 0..count {
        call();
    }
    let (end, cpu_end) = (mono_ns(), thread_cpu_ns());
    TriggerResult::new(
        count,
        end - start,
        cpu_end - cpu,
        machine_busy_ns().saturating_sub(machine),
    )
}

/// Calls at `rate` per second (0: flat out) for `duration_ns`, or until
/// `max_calls`. Behind schedule it catches up in a burst.
fn trigger_paced(rate: u64, duration_ns: u64, max_calls: u64) -> TriggerResult {
    let machine = machine_busy_ns();
    let (start, cpu) = (mono_ns(), thread_cpu_ns());
    let mut done = 0u64;
    loop {
        let now = mono_ns();
        let elapsed = now - start;
        if elapsed >= duration_ns || done >= max_calls {
            return TriggerResult::new(
                done,
                elapsed,
                thread_cpu_ns() - cpu,
                machine_busy_ns().saturating_sub(machine),
            );
        }
        let due = if rate == 0 {
            done + 256
        } else {
            u64::try_from(u128::from(elapsed) * u128::from(rate) / 1_000_000_000)
                .unwrap_or(u64::MAX)
        }
        .min(max_calls);
        if done >= due {
            std::hint::spin_loop();
            continue;
        }
        // At most 1 ms worth of calls per clock read.
        let burst = (due - done).min((rate / 1000).max(256));
        for _ in 0..burst {
            getppid();
        }
        done += burst;
    }
}

// --------------------------------------------------------------- BPF stats

const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_ENABLE_STATS: libc::c_long = 32;
/// `struct bpf_prog_info` up to and including `run_cnt` (uapi offsets).
const PROG_INFO_LEN: usize = 208;
const PROG_INFO_NAME: usize = 64;
const PROG_INFO_RUN_TIME: usize = 192;
const PROG_INFO_RUN_CNT: usize = 200;

fn bpf(cmd: libc::c_long, attr: &mut [u64]) -> libc::c_long {
    // SAFETY: bpf(2) with a zero-initialised attribute buffer of the given
    // size, which the kernel reads (and writes back for GET_NEXT_ID).
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr) as libc::c_uint,
        )
    }
}

/// Kernel BPF run-time statistics, on while this lives.
pub struct StatsGuard(#[allow(dead_code)] OwnedFd);

/// Turn on `BPF_STATS_RUN_TIME` (needs CAP_SYS_ADMIN).
pub fn enable_bpf_stats() -> std::io::Result<StatsGuard> {
    let mut attr = [0u64; 1]; // { __u32 type = BPF_STATS_RUN_TIME (0) }
    let fd = bpf(BPF_ENABLE_STATS, &mut attr);
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new file descriptor the kernel just returned to us.
    Ok(StatsGuard(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// One loaded BPF program's counters.
#[derive(Clone, Debug, Serialize)]
pub struct ProgStat {
    pub id: u32,
    pub name: String,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// Counters of every loaded BPF program.
pub fn prog_stats() -> Vec<ProgStat> {
    let mut out = Vec::new();
    let mut id = 0u32;
    loop {
        // union bpf_attr { __u32 start_id; __u32 next_id; … }
        let mut attr = [0u64; 2];
        attr[0] = u64::from(id);
        if bpf(BPF_PROG_GET_NEXT_ID, &mut attr) < 0 {
            break;
        }
        id = (attr[0] >> 32) as u32;
        let mut attr = [0u64; 2];
        attr[0] = u64::from(id);
        let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr);
        if fd < 0 {
            continue;
        }
        // SAFETY: a new file descriptor, closed when `owned` drops.
        let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut info = [0u64; PROG_INFO_LEN / 8];
        // struct { __u32 bpf_fd; __u32 info_len; __aligned_u64 info; }
        let mut attr = [0u64; 2];
        attr[0] = u64::from(fd as u32) | ((PROG_INFO_LEN as u64) << 32);
        attr[1] = info.as_mut_ptr() as u64;
        let rc = bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr);
        drop(owned);
        if rc < 0 {
            continue;
        }
        let bytes: Vec<u8> = info.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let name = &bytes[PROG_INFO_NAME..PROG_INFO_NAME + 16];
        let end = name.iter().position(|&b| b == 0).unwrap_or(16);
        out.push(ProgStat {
            id,
            name: String::from_utf8_lossy(&name[..end]).into_owned(),
            run_time_ns: info[PROG_INFO_RUN_TIME / 8],
            run_cnt: info[PROG_INFO_RUN_CNT / 8],
        });
    }
    out
}

/// Programs whose run count grew by at least `min_runs` between `before`
/// and `after`: (name, runs, run time ns) of the growth.
fn busy_programs(before: &[ProgStat], after: &[ProgStat], min_runs: u64) -> Vec<ProgStat> {
    after
        .iter()
        .filter_map(|a| {
            let b = before.iter().find(|b| b.id == a.id);
            let runs = a.run_cnt - b.map_or(0, |b| b.run_cnt.min(a.run_cnt));
            let time = a.run_time_ns - b.map_or(0, |b| b.run_time_ns.min(a.run_time_ns));
            (runs >= min_runs).then(|| ProgStat {
                id: a.id,
                name: a.name.clone(),
                run_time_ns: time,
                run_cnt: runs,
            })
        })
        .collect()
}

/// Result of `bench trigger`.
#[derive(Debug, Serialize)]
pub struct TriggerAlone {
    pub trigger: TriggerResult,
    /// With --bpf-stats: programs that ran at least once per call.
    pub bpf_programs: Vec<ProgStat>,
    /// Their run time summed, per call.
    pub bpf_ns_per_call: Option<f64>,
}

fn trigger_alone(count: u64, bpf_stats: bool) -> anyhow::Result<TriggerAlone> {
    loop_alone(count, bpf_stats, getppid)
}

/// `call` in a timed loop of `count` after a warm-up of `count / 20`, and
/// with `bpf_stats` the BPF programs that ran at least once per call.
fn loop_alone(count: u64, bpf_stats: bool, call: impl FnMut()) -> anyhow::Result<TriggerAlone> {
    let mut call = call;
    let guard = bpf_stats.then(enable_bpf_stats).transpose()?;
    // Warm up (page in, caches, CPU frequency).
    let warmup = timed_loop(count / 20, &mut call);
    let after_warmup = if bpf_stats { prog_stats() } else { Vec::new() };
    let mut trigger = timed_loop(count, &mut call);
    trigger.warmup_calls = warmup.calls;
    let (bpf_programs, bpf_ns_per_call) = if bpf_stats {
        let progs = busy_programs(&after_warmup, &prog_stats(), count);
        let total: u64 = progs.iter().map(|p| p.run_time_ns).sum();
        let per = (!progs.is_empty()).then(|| total as f64 / count.max(1) as f64);
        (progs, per)
    } else {
        (Vec::new(), None)
    };
    drop(guard);
    Ok(TriggerAlone {
        trigger,
        bpf_programs,
        bpf_ns_per_call,
    })
}

// -------------------------------------------------------------- ioctl loop

/// `ioctl(fd, UACCE_CMD_PIN, &{addr, size})` on `/dev/null` `count` times
/// after a warm-up of `count / 20`: each call enters and leaves the
/// `sys_enter/exit_ioctl` tracepoints with the command the tool keeps and
/// fails with ENOTTY (nothing is pinned).
fn ioctl_loop(count: u64, bpf_stats: bool) -> anyhow::Result<TriggerAlone> {
    use std::os::fd::AsRawFd;
    let devnull = std::fs::File::open("/dev/null")?;
    let fd = devnull.as_raw_fd();
    // struct uacce_pin_address { __u64 addr; __u64 size; }
    let range: [u64; 2] = [0x7f12_3456_7000, 4096];
    let call = || {
        // SAFETY: ioctl on /dev/null with a pointer to a live 16-byte
        // buffer, which the kernel only reads; it fails with ENOTTY.
        unsafe {
            libc::ioctl(
                fd,
                uacce_trace_common::ioctl_cmd::UACCE_CMD_PIN as _,
                range.as_ptr(),
            )
        };
    };
    loop_alone(count, bpf_stats, call)
}

// ------------------------------------------------------------ request loop

/// The request of `bench request-loop` (`cargo xtask bench requests`
/// probes it by this name): does nothing but return its
/// argument, so a traced call costs what the probes add. Unmangled and
/// never inlined, so it is a symbol of the binary that uprobes find and
/// every call really enters it; `black_box` keeps the compiler from
/// treating it as pure.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn uacce_trace_bench_request(i: u64) -> u64 {
    std::hint::black_box(i)
}

/// [`uacce_trace_bench_request`] `count` times after a warm-up of
/// `count / 20`: each call enters and returns through the probes that
/// request tracing (or bpftrace) attached to it.
fn request_loop(count: u64, bpf_stats: bool) -> anyhow::Result<TriggerAlone> {
    let mut i = 0u64;
    let call = || {
        i = uacce_trace_bench_request(std::hint::black_box(i)).wrapping_add(1);
    };
    loop_alone(count, bpf_stats, call)
}

// ---------------------------------------------------------------- pipeline

/// Options of `bench pipeline`.
#[derive(Clone, Copy, Debug)]
pub struct PipelineOptions {
    /// Offered records per second (0: flat out).
    pub rate: u64,
    /// Records per call.
    pub burst: u32,
    pub duration_ns: u64,
    pub count: Option<u64>,
    pub ring_bytes: u32,
    pub bpf_stats: bool,
    pub wakeup: Wakeup,
    /// Consumer on [`CONSUMER_CPU`], trigger on [`TRIGGER_CPU`].
    pub pin: bool,
}

/// Result of `bench pipeline`.
#[derive(Debug, Serialize)]
pub struct PipelineResult {
    /// Offered rate (0: as fast as the trigger goes).
    pub offered_rate: u64,
    /// Records per trigger call.
    pub burst: u32,
    pub ring_bytes: u32,
    pub wakeup: Wakeup,
    pub trigger: TriggerResult,
    /// Records written or lost: calls × burst.
    pub produced: u64,
    /// Produced records per second.
    pub produced_per_s: f64,
    /// Events the aggregator ingested.
    pub consumed: u64,
    /// Consumed events per second of trigger time.
    pub consumed_per_s: f64,
    /// Records lost in the kernel (ring buffer full).
    pub dropped: u64,
    /// Records that could not be decoded.
    pub undecodable: u64,
    /// Records that never arrived (should equal `dropped`).
    pub missing: u64,
    /// CPU time of the consumer thread (ring read, decode, aggregate).
    pub consumer_cpu_ns: u64,
    pub consumer_cpu_ns_per_event: f64,
    /// Consumer CPU busy fraction over the trigger's run.
    pub consumer_cpu_share: f64,
    /// Bench programs' BPF run time per record (report + response).
    pub bpf_ns_per_event: Option<f64>,
    /// … and per trigger call.
    pub bpf_ns_per_call: Option<f64>,
    /// Peak resident set size of the process, KiB.
    pub peak_rss_kib: u64,
    /// Batches received from the source, and the largest.
    pub batches: u64,
    pub max_batch: u64,
    /// Voluntary context switches of the consumer thread (it waited for
    /// records) and involuntary ones (another task took its CPU).
    pub consumer_sleeps: u64,
    pub consumer_preemptions: u64,
}

/// Run the pipeline once (needs root and the eBPF object).
pub fn pipeline(opts: &PipelineOptions) -> anyhow::Result<PipelineResult> {
    if opts.pin {
        pin_to_cpu(CONSUMER_CPU);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(pipeline_async(*opts))
}

async fn pipeline_async(opts: PipelineOptions) -> anyhow::Result<PipelineResult> {
    let tracer = Tracer::start_bench(
        opts.ring_bytes,
        std::process::id(),
        opts.wakeup == Wakeup::Batched,
        opts.burst,
    )?;
    let stats_guard = opts.bpf_stats.then(enable_bpf_stats).transpose()?;
    let is_bench = |p: &ProgStat| BENCH.iter().any(|b| b.to_string() == p.name);
    let stats_before: Vec<ProgStat> = if opts.bpf_stats {
        prog_stats().into_iter().filter(is_bench).collect()
    } else {
        Vec::new()
    };

    let start_mono = mono_ns();
    let meta = RunMeta {
        start_unix_ns: 0,
        start_mono_ns: start_mono,
        kernel: String::new(),
        plan: "bench".into(),
        command: String::new(),
    };
    // The same event source as the commands, stopped by the driver (not by
    // signals) once the trigger is done.
    let stop = Stop::manual();
    let mut source = Source::from_tracer(tracer, meta.clone(), stop.clone());
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<TriggerResult>();
    let go = Arc::new(AtomicBool::new(false));
    let go2 = Arc::clone(&go);
    let burst = u64::from(opts.burst.max(1));
    let (rate, duration_ns, count) = (opts.rate / burst, opts.duration_ns, opts.count);
    let pin = opts.pin;
    let trigger = std::thread::spawn(move || {
        if pin {
            pin_to_cpu(TRIGGER_CPU);
        }
        while !go2.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        let r = match count {
            Some(n) if rate == 0 => {
                // Warm up like `bench trigger` (its records are consumed
                // and counted in `produced` too).
                let w = trigger_count(n / 20);
                let mut r = trigger_count(n);
                r.warmup_calls = w.calls;
                r
            }
            Some(n) => trigger_paced(rate, u64::MAX, n),
            None => trigger_paced(rate, duration_ns, u64::MAX),
        };
        let _ = done_tx.send(r);
    });

    let mut agg = Aggregator::new(ModelConfig {
        start_ns: Some(start_mono),
        ..Default::default()
    });
    let mut hlog = IntervalWriter::new(Format::Hlog, std::io::sink(), &meta)?
        .ok_or_else(|| anyhow::anyhow!("hlog is an interval format"))?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;

    let cpu0 = thread_cpu_ns();
    let (vcsw0, ivcsw0) = thread_switches();
    go.store(true, Ordering::Release);
    let mut consumed = 0u64;
    let mut batches = 0u64;
    let mut max_batch = 0u64;
    let mut trig: Option<TriggerResult> = None;
    let mut stats_after: Vec<ProgStat> = Vec::new();
    loop {
        tokio::select! {
            item = source.stream.next() => match item {
                Some(Ok(Item::Batch(b))) => {
                    batches += 1;
                    max_batch = max_batch.max(b.len() as u64);
                    consumed += b.iter().filter(|e| matches!(e, Event::Iopf(_))).count() as u64;
                    agg.ingest_all(&b);
                }
                Some(Ok(Item::Mark(_))) => {}
                Some(Err(e)) => return Err(e.into()),
                None => break,
            },
            _ = tick.tick() => {
                let win = agg.take_interval(mono_ns());
                hlog.write_interval(&win)?;
            }
            r = &mut done_rx, if trig.is_none() => {
                trig = Some(r.unwrap_or_default());
                // Before the reader stops: stopping unloads the programs.
                if opts.bpf_stats {
                    stats_after = prog_stats().into_iter().filter(is_bench).collect();
                }
                // Let the reader drain what is in the ring, then stop it.
                stop.request();
            }
        }
    }
    let cpu = thread_cpu_ns() - cpu0;
    let (vcsw, ivcsw) = thread_switches();
    let counters = source.stream.end().await?;
    let _ = trigger.join();
    let trig = trig.unwrap_or_default();
    let produced = (trig.calls + trig.warmup_calls) * burst;
    let bpf_total = opts.bpf_stats.then(|| {
        busy_programs(&stats_before, &stats_after, 0)
            .iter()
            .map(|p| p.run_time_ns)
            .sum::<u64>() as f64
    });
    drop(stats_guard);
    let _ = hlog.finish();
    Ok(PipelineResult {
        offered_rate: opts.rate,
        burst: opts.burst,
        ring_bytes: opts.ring_bytes,
        wakeup: opts.wakeup,
        trigger: trig,
        produced,
        produced_per_s: (trig.calls * burst) as f64 * 1e9 / trig.elapsed_ns.max(1) as f64,
        consumed,
        consumed_per_s: consumed as f64 * 1e9 / trig.elapsed_ns.max(1) as f64,
        dropped: counters.ring_full(),
        undecodable: counters.get(LossReason::Undecodable),
        missing: produced.saturating_sub(consumed),
        consumer_cpu_ns: cpu,
        consumer_cpu_ns_per_event: cpu as f64 / consumed.max(1) as f64,
        consumer_cpu_share: cpu as f64 / trig.elapsed_ns.max(1) as f64,
        bpf_ns_per_event: bpf_total.map(|t| t / produced.max(1) as f64),
        bpf_ns_per_call: bpf_total.map(|t| t / (trig.calls + trig.warmup_calls).max(1) as f64),
        peak_rss_kib: peak_rss_kib(),
        batches,
        max_batch,
        consumer_sleeps: vcsw - vcsw0,
        consumer_preemptions: ivcsw - ivcsw0,
    })
}

// ------------------------------------------------------------------ decode

/// A bench fault as the kernel programs write it: the report (`seq`
/// varies the timestamp, address and group like the real stream does) and
/// the response to its group.
pub fn bench_records(seq: u64, tgid: u32) -> (IopfRecord, IopfResponseRecord) {
    let mut report = IopfRecord {
        header: RecordHeader {
            kind: KIND_IOPF_REPORT,
            version: RECORD_VERSION,
            size: std::mem::size_of::<IopfRecord>() as u32,
        },
        ts_ns: 1_000_000_000 + seq * 500,
        dev: 0xbe4c_0000_0000_0001,
        addr: 0x7f00_0000_0000 + (seq % 1024) * 4096,
        pasid: 1,
        grpid: (seq & 0x1ff) as u32,
        perm: 3,
        flags: 2,
        nr_faults: 1,
        reporter_tgid: tgid,
        flags2: IOPF_REPORTER_IS_USER,
        ..Default::default()
    };
    report.reporter_comm[..11].copy_from_slice(b"uacce-trace");
    report.dev_name[..6].copy_from_slice(b"bench0");
    let response = IopfResponseRecord {
        header: RecordHeader {
            kind: KIND_IOPF_RESPONSE,
            version: RECORD_VERSION,
            size: std::mem::size_of::<IopfResponseRecord>() as u32,
        },
        ts_ns: report.ts_ns + 150 + (seq * 2_654_435_761) % 5000,
        dev: report.dev,
        pasid: report.pasid,
        grpid: report.grpid,
        response: 0,
        hook: HOOK_TRACEPOINT,
        _pad: [0; 3],
    };
    (report, response)
}

fn record_bytes<T: Copy>(r: &T) -> &[u8] {
    // SAFETY: the wire records are repr(C) plain data without implicit
    // padding.
    unsafe { std::slice::from_raw_parts((r as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// Result of `bench decode`.
#[derive(Debug, Serialize)]
pub struct DecodeResult {
    pub events: u64,
    pub batch: usize,
    pub cpu_ns: u64,
    pub ns_per_event: f64,
    pub events_per_s: f64,
    pub peak_rss_kib: u64,
}

/// Decode + pair + attribute + aggregate `events` IO page faults (a report
/// and a response record each) in batches, the way [`Tracer::run`] and
/// `record` do, on this thread.
pub fn decode_aggregate(events: u64, batch: usize) -> DecodeResult {
    // A ring's worth of distinct faults, cycled.
    let records: Vec<(IopfRecord, IopfResponseRecord)> =
        (0..32_768).map(|s| bench_records(s, 4242)).collect();
    let mut decoder = Decoder::default();
    let mut attributor = Attributor::new();
    let mut agg = Aggregator::new(ModelConfig {
        start_ns: Some(1_000_000_000),
        ..Default::default()
    });
    let cpu0 = thread_cpu_ns();
    let mut done = 0u64;
    let mut next_interval = 1_000_000_000u64 + 1_000_000_000;
    while done < events {
        let n = (events - done).min(batch as u64);
        let mut out = Vec::new();
        for i in done..done + n {
            let (report, response) = &records[(i % records.len() as u64) as usize];
            for bytes in [record_bytes(report), record_bytes(response)] {
                if let Ok(Some(mut ev)) = decoder.decode(bytes) {
                    attributor.process(&mut ev);
                    out.push(ev);
                }
            }
        }
        agg.ingest_all(&out);
        done += n;
        // Intervals at the pace of the synthetic timestamps (2 M/s).
        let latest = agg.latest_ns();
        if latest >= next_interval {
            std::hint::black_box(agg.take_interval(next_interval));
            next_interval += 1_000_000_000;
        }
    }
    let cpu = thread_cpu_ns() - cpu0;
    std::hint::black_box(agg.snapshot(agg.latest_ns()));
    DecodeResult {
        events,
        batch,
        cpu_ns: cpu,
        ns_per_event: cpu as f64 / events.max(1) as f64,
        events_per_s: events as f64 * 1e9 / cpu.max(1) as f64,
        peak_rss_kib: peak_rss_kib(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_records_decode_as_attributed_iopfs() {
        let (report, response) = bench_records(7, 99);
        let mut decoder = Decoder::default();
        assert!(matches!(decoder.decode(record_bytes(&report)), Ok(None)));
        let Ok(Some(Event::Iopf(e))) = decoder.decode(record_bytes(&response)) else {
            panic!("bench records do not decode");
        };
        assert_eq!(
            (e.tgid, e.comm.as_str(), e.device.as_str()),
            (Some(99), "uacce-trace", "bench0")
        );
        assert_eq!(e.latency_ns, response.ts_ns - report.ts_ns);
    }

    #[test]
    fn decode_aggregate_counts_every_event() {
        let r = decode_aggregate(10_000, 1000);
        assert_eq!(r.events, 10_000);
        assert!(r.ns_per_event > 0.0);
    }

    #[test]
    fn paced_trigger_keeps_its_count() {
        let r = trigger_paced(0, u64::MAX, 1000);
        assert_eq!(r.calls, 1000);
        let r = trigger_paced(1_000_000, 5_000_000, u64::MAX);
        assert!(r.calls > 0 && r.calls <= 5_100, "{}", r.calls);
    }

    #[test]
    fn busy_ticks_leave_out_idle_and_iowait() {
        let stat = "cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 5 0 2 500 3 1 1 2 0 0\n";
        assert_eq!(busy_ticks(stat), Some(10 + 1 + 5 + 2 + 3 + 4));
        assert_eq!(busy_ticks("cpu0 1 2 3\n"), None);
    }

    #[test]
    fn ioctl_loop_counts_its_calls() {
        let r = ioctl_loop(1000, false).expect("loop").trigger;
        assert_eq!((r.calls, r.warmup_calls), (1000, 50));
        assert!(r.elapsed_ns > 0);
    }

    #[test]
    fn request_loop_calls_the_request_function() {
        let r = request_loop(1000, false).expect("loop").trigger;
        assert_eq!((r.calls, r.warmup_calls), (1000, 50));
        assert_eq!(uacce_trace_bench_request(7), 7);
    }

    #[test]
    fn busy_programs_takes_differences() {
        let p = |id, t, c| ProgStat {
            id,
            name: format!("p{id}"),
            run_time_ns: t,
            run_cnt: c,
        };
        let before = vec![p(1, 100, 10), p(2, 5, 1)];
        let after = vec![p(1, 1100, 1010), p(2, 6, 2), p(3, 50, 1000)];
        let busy = busy_programs(&before, &after, 1000);
        assert_eq!(busy.len(), 2);
        assert_eq!((busy[0].run_time_ns, busy[0].run_cnt), (1000, 1000));
        assert_eq!(busy[1].id, 3);
    }
}
