//! The only module that touches aya: inspects the running kernel (BTF, trial
//! loads), plans hooks, loads and attaches the kernel programs, reads the
//! ring buffer with tokio's `AsyncFd` and decodes records into domain events
//! that go out on a bounded channel.

use std::{collections::BTreeMap, os::fd::AsRawFd};

use aya::{
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{FEntry, FExit, KProbe, RawTracePoint, TracePoint},
    Btf as AyaBtf, Ebpf, EbpfLoader,
};
use serde::Serialize;
use thiserror::Error;
use tokio::{
    io::{unix::AsyncFd, Interest},
    sync::mpsc,
};
use uacce_trace_common::{counter, KernelConfig, PinFunc, ScanState};

use crate::{
    ingest::attribution::{Attributor, PasidOwner},
    ingest::decode::{decode_scan, DecodeContext, Decoder},
    ingest::event::{Event, HookType, LossSample},
    ingest::losses::{self, Ledger, LossReason},
    kernel::btf::Btf,
    kernel::kconfig,
    kernel::plan::{self, Facts, HookPreference, Plan, Program},
    kernel::system,
};

/// The compiled kernel programs (empty when built with UACCE_TRACE_EBPF_STUB).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/uacce-trace"));

/// Errors of the tracing source, with what the user can do about them.
#[derive(Debug, Error)]
pub enum SourceError {
    #[error(
        "this uacce-trace was built without its eBPF programs (UACCE_TRACE_EBPF_STUB=1); \
         rebuild with `cargo xtask setup && cargo build --release`"
    )]
    StubObject,
    #[error("{0}")]
    Privileges(String),
    #[error("cannot trace: {0}")]
    NothingToTrace(String),
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object lacks {0}")]
    Missing(&'static str),
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("reading the ring buffer: {0}")]
    Io(#[from] std::io::Error),
}

/// The running kernel's `FOLL_LONGTERM` bit and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FollLongterm {
    pub value: Option<u32>,
    pub origin: String,
}

/// Everything learnt about the running kernel before attaching.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    pub kernel: String,
    /// `Ok(types)` with the number of BTF types, or why BTF is unusable.
    pub btf: Result<usize, String>,
    pub tracefs: Option<String>,
    pub kprobes: Result<(), String>,
    pub fentry: Result<(), String>,
    pub ring_buffer: Result<(), String>,
    pub foll_longterm: FollLongterm,
    pub privileges: Result<(), String>,
    pub plan: Plan,
    /// Parameter counts of hooked functions in BTF (`pin_user_pages` lost its
    /// `vmas` argument in 6.5).
    pub params: BTreeMap<String, usize>,
    /// Offsets handed to the programs and where each came from.
    pub config: kconfig::Resolved,
}

fn foll_longterm(btf: Option<&Btf>, release: &str) -> FollLongterm {
    if let Some(v) = btf.and_then(|b| b.enum_value("FOLL_LONGTERM")) {
        if let Ok(value) = u32::try_from(v) {
            return FollLongterm {
                value: Some(value),
                origin: "kernel BTF (enum FOLL_LONGTERM)".into(),
            };
        }
    }
    // Before 6.3 the FOLL_* flags were #defines (no BTF); the value was
    // 0x10000 from 4.x through 6.2 (include/linux/mm.h).
    match system::parse_version(release) {
        Some(v) if v < (6, 3) => FollLongterm {
            value: Some(0x10000),
            origin:
                "not in this kernel's BTF (a #define before 6.3); 0x10000 from the 5.x–6.2 headers"
                    .into(),
        },
        _ => FollLongterm {
            value: None,
            origin: "not in this kernel's BTF; long-term pins cannot be flagged".into(),
        },
    }
}

fn describe_program_error(err: &aya::programs::ProgramError) -> String {
    use aya::programs::ProgramError;
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            // The verifier's last words say why (EPERM has none).
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .rev()
                .take(2)
                .collect();
            if tail.is_empty() {
                format!("BPF_PROG_LOAD: {io_error}")
            } else {
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("BPF_PROG_LOAD: {io_error} (verifier: {})", tail.join(" / "))
            }
        }
        ProgramError::SyscallError(e) => format!("{e}"),
        other => other.to_string(),
    }
}

/// Try to load one fentry program: the truthful answer to "are tracing
/// programs permitted here?" (sandboxes return EPERM; old kernels EINVAL).
fn probe_fentry(aya_btf: Option<&AyaBtf>, target: Option<&str>) -> Result<(), String> {
    let aya_btf = aya_btf.ok_or("no kernel BTF")?;
    let target = target.ok_or("no pin function in BTF to test with")?;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("EVENTS", 4096)
        .load(OBJECT)
        .map_err(|e| format!("loading the object: {e}"))?;
    let base = PinFunc::ALL
        .iter()
        .find(|f| f.symbol() == target)
        .map(|f| f.program_base())
        .ok_or("unknown target")?;
    let name = format!("{base}_fentry");
    let prog: &mut FEntry = ebpf
        .program_mut(&name)
        .ok_or("program missing from the object")?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load(target, aya_btf).map_err(|e| {
        format!(
            "trial load of a fentry program: {}",
            describe_program_error(&e)
        )
    })
}

fn probe_ring_buffer() -> Result<(), String> {
    match aya::sys::is_map_supported(aya::maps::MapType::RingBuf) {
        Ok(true) => Ok(()),
        Ok(false) => Err("BPF ring buffer maps are not supported (needs Linux 5.8+)".into()),
        Err(e) => Err(format!("probing ring buffer support: {e}")),
    }
}

/// Inspect the running kernel and plan hooks. Works without privileges
/// (what needs them is reported as unknown).
pub fn inspect(pref: HookPreference) -> Inspection {
    let kernel = system::kernel_release();
    let privileges = system::check_privileges();
    let btf = Btf::from_sys_fs();
    let btf_ref = btf.as_ref().ok();
    let tracefs = system::tracefs();
    let debugfs = system::debugfs();
    let targets = plan::targets();
    let names: Vec<&str> = targets
        .iter()
        .filter(|t| !t.hooks.contains(&HookType::Tracepoint))
        .map(|t| t.function)
        .collect();
    let mut symbols = system::symbol_facts(&names, tracefs.as_deref(), debugfs.as_deref());
    let format = |tp: &str| -> Option<String> {
        let (cat, name) = tp.split_once(':')?;
        std::fs::read_to_string(
            tracefs
                .as_ref()?
                .join("events")
                .join(cat)
                .join(name)
                .join("format"),
        )
        .ok()
    };
    let mut tracepoints = BTreeMap::new();
    for t in targets
        .iter()
        .filter(|t| t.hooks.contains(&HookType::Tracepoint))
    {
        let found = match &tracefs {
            None => Err("tracefs is not mounted".to_string()),
            Some(_) if format(t.function).is_some() => Ok(()),
            Some(_) => Err("tracepoint not in this kernel (no format file in tracefs)".to_string()),
        };
        tracepoints.insert(t.function.to_string(), found);
    }
    let mut config = kconfig::resolve(
        btf_ref,
        format("syscalls:sys_enter_ioctl").as_deref(),
        format("syscalls:sys_exit_ioctl").as_deref(),
    );
    let (prq, fault, resp) = (
        format("intel_iommu:prq_report"),
        format("iommu:dev_fault"),
        format("iommu:dev_page_response"),
    );
    config.add_vendor_tracepoints(kconfig::VendorFormats {
        prq_report: prq.as_deref(),
        dev_fault: fault.as_deref(),
        dev_page_response: resp.as_deref(),
    });
    let mut params = BTreeMap::new();
    for (name, facts) in symbols.iter_mut() {
        if let Some(f) = btf_ref.and_then(|b| b.func(name)) {
            facts.in_btf = true;
            params.insert(name.clone(), f.params.len());
        }
    }
    let stub = OBJECT.is_empty();
    let (fentry, ring_buffer) = match (&privileges, stub) {
        (_, true) => {
            let why = SourceError::StubObject.to_string();
            (Err(why.clone()), Err(why))
        }
        (Err(_), _) => {
            let why = "unknown: needs root or CAP_BPF+CAP_PERFMON to probe".to_string();
            (Err(why.clone()), Err(why))
        }
        (Ok(()), false) => {
            let aya_btf = AyaBtf::from_sys_fs().ok();
            let target = symbols
                .iter()
                .find(|(n, s)| s.in_btf && n.starts_with("pin_"))
                .map(|(n, _)| n.as_str());
            (probe_fentry(aya_btf.as_ref(), target), probe_ring_buffer())
        }
    };
    let kprobes = system::kprobe_support();
    let facts = Facts {
        fentry: fentry.clone(),
        kprobe: kprobes.clone(),
        symbols,
        tracepoints,
    };
    let mut plan = plan::plan(&facts, pref);
    // The process-tree rows: say when they are used, and what stops them.
    let follow_problem = config.follow_problem();
    for h in plan
        .hooks
        .iter_mut()
        .filter(|h| h.program.follows_processes())
    {
        h.note = Some("attached only by `record -- COMMAND`".into());
        if let Some(why) = &follow_problem {
            while let Some(chosen) = h.chosen {
                h.reject_chosen(chosen, why.clone());
            }
        }
    }
    Inspection {
        foll_longterm: foll_longterm(btf_ref, &kernel),
        kernel,
        btf: btf
            .as_ref()
            .map(|b| b.last_type_id() as usize)
            .map_err(|e| e.to_string()),
        tracefs: tracefs.map(|p| p.display().to_string()),
        kprobes,
        fentry,
        ring_buffer,
        privileges,
        plan,
        params,
        config,
    }
}

/// Loaded and attached programs plus the ring buffer.
pub struct Tracer {
    /// Owns the programs and their links: dropping it detaches everything.
    _ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
    /// Decodes records and pairs IO page fault reports with responses.
    decoder: Decoder,
    attributor: Attributor,
    undecodable: u64,
    /// Pin ioctls with no pin call credited ([`losses::pin_not_credited`]).
    pin_not_credited: u64,
    plan: Plan,
    hooks_attached: usize,
    scan: PasidScan,
}

/// Options for [`Tracer::start`].
#[derive(Clone, Copy, Debug)]
pub struct TracerOptions {
    pub hooks: HookPreference,
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_bytes: u32,
}

impl Default for TracerOptions {
    fn default() -> Self {
        TracerOptions {
            hooks: HookPreference::Auto,
            ring_bytes: 4 << 20,
        }
    }
}

/// How one program of a target attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attach {
    FEntry,
    FExit,
    KProbe,
    KRetProbe,
    Tracepoint(&'static str, &'static str),
    /// A raw tracepoint, by event name.
    RawTracepoint(&'static str),
}

/// The programs serving `program` through `hook`, in attach order: every
/// exit half before its entry half. Attached the other way round, a call
/// that is inside the function when its entry hook attaches but returns
/// before its exit hook does leaves an in-flight record behind, which
/// stood for a call forever; exit first, such a call only meets an exit
/// without entry, counted as `EXIT_AT_ATTACH` (in flight at start).
fn programs(program: Program, hook: HookType) -> Vec<(String, Attach)> {
    let pair = |base: &str| match hook {
        HookType::Fentry => vec![
            (format!("{base}_fexit"), Attach::FExit),
            (format!("{base}_fentry"), Attach::FEntry),
        ],
        _ => vec![
            (format!("{base}_kretprobe"), Attach::KRetProbe),
            (format!("{base}_kprobe"), Attach::KProbe),
        ],
    };
    let entry = |base: &str| match hook {
        HookType::Fentry => vec![(format!("{base}_fentry"), Attach::FEntry)],
        _ => vec![(format!("{base}_kprobe"), Attach::KProbe)],
    };
    match (program, hook) {
        (Program::PrqReport, HookType::Tracepoint) => vec![(
            "prq_report_tp".into(),
            Attach::Tracepoint("intel_iommu", "prq_report"),
        )],
        (Program::DevFault, HookType::Tracepoint) => {
            vec![(
                "dev_fault_tp".into(),
                Attach::Tracepoint("iommu", "dev_fault"),
            )]
        }
        (Program::DevPageResponse, HookType::Tracepoint) => vec![(
            "dev_page_response_tp".into(),
            Attach::Tracepoint("iommu", "dev_page_response"),
        )],
        (Program::ProcFork, HookType::Tracepoint) => vec![(
            "proc_fork".into(),
            Attach::RawTracepoint("sched_process_fork"),
        )],
        (Program::ProcExit, HookType::Tracepoint) => vec![(
            "proc_exit".into(),
            Attach::Tracepoint("sched", "sched_process_exit"),
        )],
        (Program::ProcFork | Program::ProcExit, _) => Vec::new(),
        (_, HookType::Tracepoint) if program != Program::PinIoctl => Vec::new(),
        (Program::Pin(f), _) => pair(f.program_base()),
        (Program::IopfReport, _) => entry("iopf_report"),
        (Program::GroupResponse, _) => entry("iopf_group_response"),
        (Program::PageResponse, _) => entry("iommu_page_response"),
        (Program::SmmuEvent, _) => entry("smmu_evt"),
        (Program::SmmuPageResponse, _) => entry("smmu_page_response"),
        (Program::SvaGetPasid, HookType::Fentry) => {
            vec![("sva_get_pasid_fexit".into(), Attach::FExit)]
        }
        (Program::SvaGetPasid, _) => pair("sva_get_pasid"),
        (Program::SvaUnbind, _) => entry("sva_unbind"),
        (Program::PinIoctl, HookType::Tracepoint) => vec![
            (
                "ioctl_exit".into(),
                Attach::Tracepoint("syscalls", "sys_exit_ioctl"),
            ),
            (
                "ioctl_enter".into(),
                Attach::Tracepoint("syscalls", "sys_enter_ioctl"),
            ),
        ],
        (Program::PinIoctl, _) => Vec::new(),
        (Program::UacceCtrlIoctl, _) => pair("uacce_ctrl_ioctl"),
        (Program::UaccePinPage, HookType::Fentry) => {
            vec![("uacce_pin_page_fexit".into(), Attach::FExit)]
        }
        (Program::UaccePinPage, _) => {
            vec![("uacce_pin_page_kretprobe".into(), Attach::KRetProbe)]
        }
        (Program::UacceUnpinPage, HookType::Fentry) => {
            vec![("uacce_unpin_page_fexit".into(), Attach::FExit)]
        }
        (Program::UacceUnpinPage, _) => {
            vec![("uacce_unpin_page_kretprobe".into(), Attach::KRetProbe)]
        }
        (Program::UacceOpen, HookType::Fentry) => {
            vec![("uacce_open_fexit".into(), Attach::FExit)]
        }
        (Program::UacceOpen, _) => pair("uacce_open"),
        (Program::UacceRelease, _) => entry("uacce_release"),
        (Program::UacceIoctl, HookType::Fentry) => {
            vec![("uacce_ioctl_fexit".into(), Attach::FExit)]
        }
        (Program::UacceIoctl, _) => pair("uacce_ioctl"),
        (Program::PrqReport | Program::DevFault | Program::DevPageResponse, _) => Vec::new(),
    }
}

fn typed<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the object"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())
}

/// Load one program through the verifier (no attach).
fn load_one(
    ebpf: &mut Ebpf,
    name: &str,
    attach: Attach,
    symbol: &str,
    btf: Option<&AyaBtf>,
) -> Result<(), String> {
    let desc = |e: aya::programs::ProgramError| format!("{name}: {}", describe_program_error(&e));
    match attach {
        Attach::FEntry => typed::<FEntry>(ebpf, name)?
            .load(symbol, btf.ok_or("no kernel BTF")?)
            .map_err(desc),
        Attach::FExit => typed::<FExit>(ebpf, name)?
            .load(symbol, btf.ok_or("no kernel BTF")?)
            .map_err(desc),
        Attach::KProbe | Attach::KRetProbe => typed::<KProbe>(ebpf, name)?.load().map_err(desc),
        Attach::Tracepoint(..) => typed::<TracePoint>(ebpf, name)?.load().map_err(desc),
        Attach::RawTracepoint(_) => typed::<RawTracePoint>(ebpf, name)?.load().map_err(desc),
    }
}

fn attach_one(ebpf: &mut Ebpf, name: &str, attach: Attach, symbol: &str) -> Result<(), String> {
    let desc = |e: aya::programs::ProgramError| format!("{name} attach: {e}");
    match attach {
        Attach::FEntry => typed::<FEntry>(ebpf, name)?
            .attach()
            .map(drop)
            .map_err(desc),
        Attach::FExit => typed::<FExit>(ebpf, name)?.attach().map(drop).map_err(desc),
        Attach::KProbe | Attach::KRetProbe => typed::<KProbe>(ebpf, name)?
            .attach(symbol, 0)
            .map(drop)
            .map_err(desc),
        Attach::Tracepoint(category, tp) => typed::<TracePoint>(ebpf, name)?
            .attach(category, tp)
            .map(drop)
            .map_err(desc),
        Attach::RawTracepoint(tp) => typed::<RawTracePoint>(ebpf, name)?
            .attach(tp)
            .map(drop)
            .map_err(desc),
    }
}

/// Unload a program (and detach its links); errors mean it was not loaded.
fn unload_one(ebpf: &mut Ebpf, name: &str, attach: Attach) {
    let _ = match attach {
        Attach::FEntry => typed::<FEntry>(ebpf, name).map(|p| p.unload()),
        Attach::FExit => typed::<FExit>(ebpf, name).map(|p| p.unload()),
        Attach::KProbe | Attach::KRetProbe => typed::<KProbe>(ebpf, name).map(|p| p.unload()),
        Attach::Tracepoint(..) => typed::<TracePoint>(ebpf, name).map(|p| p.unload()),
        Attach::RawTracepoint(_) => typed::<RawTracePoint>(ebpf, name).map(|p| p.unload()),
    };
}

/// Load and attach every program of a target through `hook`; on any
/// failure unload what was attached so the target is all-or-nothing.
fn attach_target(
    ebpf: &mut Ebpf,
    program: Program,
    hook: HookType,
    symbol: &str,
    btf: Option<&AyaBtf>,
) -> Result<(), String> {
    let progs = programs(program, hook);
    if progs.is_empty() {
        return Err(format!("no {hook} program for this target"));
    }
    let mut done: Vec<&str> = Vec::new();
    for (name, attach) in &progs {
        let result = load_one(ebpf, name, *attach, symbol, btf)
            .and_then(|()| attach_one(ebpf, name, *attach, symbol));
        if let Err(e) = result {
            for (undo, undo_attach) in progs.iter().take(done.len() + 1) {
                unload_one(ebpf, undo, *undo_attach);
            }
            return Err(e);
        }
        done.push(name);
    }
    Ok(())
}

/// Most events [`Tracer::run`] sends in one batch.
pub const MAX_BATCH: usize = 4096;

/// Shortest time between two drains of the ring buffer in [`Tracer::run`]:
/// a wake-up that comes sooner waits for the rest, so a steady stream
/// wakes the reader (and costs the traced tasks a wake-up) at most ~100
/// times a second. The eBPF side wakes the reader when a record finds the
/// ring empty (`submit_flags`), so the first record after a quiet spell is
/// read at once.
pub const RING_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// How often [`Tracer::run`] drains the ring buffer without a wake-up: a
/// safety net for a wake-up that concurrent producers missed. Slow, so an
/// idle tracer wakes ~10 times a second (`cargo xtask bench tui`).
pub const RING_SAFETY_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a reported IOPF group may wait for its response before it is
/// counted as unanswered and dropped from the pairing table.
pub const IOPF_TIMEOUT_NS: u64 = 5_000_000_000;

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

impl Tracer {
    /// Check privileges, plan, load and attach. Fails when the core events
    /// cannot be traced.
    pub fn start(opts: TracerOptions) -> Result<(Tracer, Inspection), SourceError> {
        Self::start_with(opts, false)
    }

    /// [`Tracer::start`], and with `follow_processes` the process-tree
    /// programs too (`record -- COMMAND`; see [`Tracer::follow_children_of`]).
    pub fn start_with(
        opts: TracerOptions,
        follow_processes: bool,
    ) -> Result<(Tracer, Inspection), SourceError> {
        system::check_privileges().map_err(SourceError::Privileges)?;
        if OBJECT.is_empty() {
            return Err(SourceError::StubObject);
        }
        let mut inspection = inspect(opts.hooks);
        if let Err(why) = &inspection.ring_buffer {
            return Err(SourceError::NothingToTrace(why.clone()));
        }
        let aya_btf = AyaBtf::from_sys_fs().ok();
        let config = inspection.config.config;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", opts.ring_bytes)
            .override_global("CONFIG", &config, true)
            .load(OBJECT)
            .map_err(SourceError::Load)?;
        let mut attached = 0;
        for i in 0..inspection.plan.hooks.len() {
            // A vendor row comes after its core rows: their attach results
            // decide whether it is needed.
            inspection.plan.reconsider_vendor_row(i);
            let follow_problem = inspection.config.follow_problem();
            let hook = &mut inspection.plan.hooks[i];
            if hook.program.follows_processes() {
                let why = if !follow_processes {
                    Some("not needed: only `record -- COMMAND` follows processes".to_string())
                } else {
                    follow_problem
                };
                if let Some(why) = why {
                    while let Some(chosen) = hook.chosen {
                        hook.reject_chosen(chosen, why.clone());
                    }
                    continue;
                }
            }
            while let Some(chosen) = hook.chosen {
                match attach_target(
                    &mut ebpf,
                    hook.program,
                    chosen,
                    hook.function,
                    aya_btf.as_ref(),
                ) {
                    Ok(()) => {
                        attached += 1;
                        break;
                    }
                    Err(reason) => hook.reject_chosen(chosen, reason),
                }
            }
        }
        if attached == 0 {
            let problem = inspection
                .plan
                .core_problem()
                .unwrap_or_else(|| "no hook could be attached".into());
            return Err(SourceError::NothingToTrace(problem));
        }
        // The driver's ioctl hook records the uacce_ctrl ioctls; the
        // syscall tracepoint must then leave them alone (no double count).
        let symbol_ioctl = inspection
            .plan
            .hooks
            .iter()
            .any(|h| h.program == Program::UacceCtrlIoctl && h.chosen.is_some());
        if symbol_ioctl {
            let mut live: Array<_, u32> = Array::try_from(
                ebpf.map_mut("IOCTL_SYMBOL_LIVE")
                    .ok_or(SourceError::Missing("map IOCTL_SYMBOL_LIVE"))?,
            )
            .map_err(|source| SourceError::Map {
                name: "IOCTL_SYMBOL_LIVE",
                source,
            })?;
            live.set(0, 1, 0).map_err(|source| SourceError::Map {
                name: "IOCTL_SYMBOL_LIVE",
                source,
            })?;
        }
        // Every hook is attached: from now on an exit without entry is a
        // loss, not a call that was in flight at start.
        {
            let mut runtime: Array<_, u64> = Array::try_from(
                ebpf.map_mut("RUNTIME")
                    .ok_or(SourceError::Missing("map RUNTIME"))?,
            )
            .map_err(|source| SourceError::Map {
                name: "RUNTIME",
                source,
            })?;
            runtime
                .set(counter::RUNTIME_ATTACH_DONE, monotonic_ns(), 0)
                .map_err(|source| SourceError::Map {
                    name: "RUNTIME",
                    source,
                })?;
        }
        // After attaching, so a bind from now on is seen by its hook and
        // one before is found here: seeds the owner table before the first
        // event is read.
        let scan = scan_pasids(&inspection.config);
        let mut attributor = Attributor::new();
        if let Ok(found) = &scan.result {
            attributor.seed(&found.owners);
        }
        let ring_map = ebpf
            .take_map("EVENTS")
            .ok_or(SourceError::Missing("map EVENTS"))?;
        let ring = RingBuf::try_from(ring_map).map_err(|source| SourceError::Map {
            name: "EVENTS",
            source,
        })?;
        let counters_map = ebpf
            .take_map("COUNTERS")
            .ok_or(SourceError::Missing("map COUNTERS"))?;
        let counters = PerCpuArray::try_from(counters_map).map_err(|source| SourceError::Map {
            name: "COUNTERS",
            source,
        })?;
        let plan = inspection.plan.clone();
        Ok((
            Tracer {
                _ebpf: ebpf,
                // SAFETY: the RingBuf owns its map fd, which stays open and
                // unchanged until the AsyncFd (and with it the RingBuf) drops.
                ring: unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
                    .map_err(std::io::Error::from)?,
                counters,
                decoder: Decoder::new(DecodeContext {
                    foll_longterm: inspection.foll_longterm.value,
                }),
                attributor,
                undecodable: 0,
                pin_not_credited: 0,
                plan,
                hooks_attached: attached,
                scan,
            },
            inspection,
        ))
    }

    /// The plan after attaching (attach failures recorded).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Whether the process-tree programs are attached, or why not.
    pub fn follows_processes(&self) -> Result<(), String> {
        let rows: Vec<_> = self
            .plan
            .hooks
            .iter()
            .filter(|h| h.program.follows_processes())
            .collect();
        if !rows.is_empty() && rows.iter().all(|h| h.chosen.is_some()) {
            return Ok(());
        }
        let why: Vec<String> = rows
            .iter()
            .filter(|h| h.chosen.is_none())
            .map(|h| {
                let reasons: Vec<&str> = h.rejected.iter().map(|r| r.reason.as_str()).collect();
                format!("{}: {}", h.function, reasons.join("; "))
            })
            .collect();
        Err(if why.is_empty() {
            "no process-tree hook in the plan".into()
        } else {
            why.join(", ")
        })
    }

    /// Follow the children of process `tgid` from now on (the tracer's
    /// own pid, before it starts the command): each becomes a followed
    /// process, and so do its descendants, reported as
    /// [`Event::Proc`](crate::ingest::event::Event::Proc) in ring order.
    pub fn follow_children_of(&mut self, tgid: u32) -> Result<(), SourceError> {
        self.set_follow(tgid, uacce_trace_common::FOLLOW_CHILDREN)
    }

    fn set_follow(&mut self, tgid: u32, value: u32) -> Result<(), SourceError> {
        let map_err = |source| SourceError::Map {
            name: "FOLLOW",
            source,
        };
        let mut follow: aya::maps::HashMap<_, u32, u32> = aya::maps::HashMap::try_from(
            self._ebpf
                .map_mut("FOLLOW")
                .ok_or(SourceError::Missing("map FOLLOW"))?,
        )
        .map_err(map_err)?;
        follow.insert(tgid, value, 0).map_err(map_err)
    }

    /// Number of functions hooked.
    pub fn hooks_attached(&self) -> usize {
        self.hooks_attached
    }

    /// Kernel ids and names of the programs loaded now, so that `top`'s
    /// cost reading sums the BPF statistics of exactly these programs.
    pub fn loaded_programs(&self) -> Vec<(u32, String)> {
        self._ebpf
            .programs()
            .filter_map(|(name, p)| p.info().ok().map(|i| (i.id(), name.to_string())))
            .collect()
    }

    /// Runs the kernel skipped, summed over the tool's programs (see
    /// [`system::prog_recursion_misses`]).
    fn recursion_misses(&self) -> u64 {
        use std::os::fd::AsFd;
        self._ebpf
            .programs()
            .filter_map(|(_, p)| p.fd().ok())
            .filter_map(|fd| system::prog_recursion_misses(fd.as_fd()))
            .fold(0, u64::wrapping_add)
    }

    /// The start-up PASID scan that seeded attribution.
    pub fn pasid_scan(&self) -> &PasidScan {
        &self.scan
    }

    /// Decode what is in the ring buffer into `out`, at most
    /// [`MAX_BATCH`] records; true when it stopped at that limit.
    fn drain(&mut self, out: &mut Vec<Event>) -> bool {
        let ring = self.ring.get_mut();
        while out.len() < MAX_BATCH {
            let Some(item) = ring.next() else {
                return false;
            };
            match self.decoder.decode(&item) {
                Ok(Some(mut ev)) => {
                    if let Event::PinIoctl(i) = &ev {
                        self.pin_not_credited += u64::from(losses::pin_not_credited(i));
                    }
                    self.attributor.process(&mut ev);
                    out.push(ev);
                }
                Ok(None) => {}
                Err(err) => {
                    self.undecodable += 1;
                    log::warn!("undecodable record: {err}");
                }
            }
        }
        true
    }

    /// Send everything in the ring buffer to `tx` in batches of at most
    /// [`MAX_BATCH`] events, yielding between them so that a consumer on
    /// the same thread runs in between: memory stays bounded and the ring
    /// keeps being emptied while a burst is aggregated. False when the
    /// consumer went away.
    async fn forward(&mut self, tx: &mpsc::Sender<Vec<Event>>) -> bool {
        loop {
            let mut batch = Vec::new();
            let more = self.drain(&mut batch);
            if !batch.is_empty() && tx.send(batch).await.is_err() {
                return false;
            }
            if !more {
                return true;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Everything lost so far, by reason: the kernel counters summed over
    /// CPUs and the user side's counts.
    pub fn counters(&self) -> Ledger {
        let get = |i: u32| -> u64 {
            self.counters
                .get(&i, 0)
                .map(|v| v.iter().copied().fold(0u64, u64::wrapping_add))
                .unwrap_or(0)
        };
        let mut l = Ledger::from_kernel_counters(get);
        // IO page faults are paired here, so their counts are too.
        let pairing = self.decoder.pairing.counts();
        l.add(LossReason::IopfPendingFull, pairing.pending_full);
        l.add(
            LossReason::IopfResponseWithoutReport,
            pairing.response_without_report,
        );
        l.add(
            LossReason::IopfUnanswered,
            pairing.unanswered - pairing.superseded,
        );
        l.add(LossReason::IopfSuperseded, pairing.superseded);
        l.add(
            LossReason::IopfUnattributed,
            self.attributor.counts().unattributed,
        );
        l.add(LossReason::ProgRecursionMiss, self.recursion_misses());
        l.add(LossReason::Undecodable, self.undecodable);
        l.add(LossReason::PinNotCredited, self.pin_not_credited);
        if let Ok(found) = &self.scan.result {
            l.add(LossReason::ScanLost, u64::from(found.lost));
        }
        l
    }

    /// Remove IOPF groups older than `timeout_ns` from the pairing table,
    /// counting them as unanswered; returns how many remain.
    fn sweep(&mut self, now_ns: u64, timeout_ns: u64) -> u64 {
        self.decoder.pairing.sweep(now_ns, timeout_ns)
    }

    fn loss_sample(ts_ns: u64, losses: Ledger) -> Event {
        Event::Loss(LossSample { ts_ns, losses })
    }

    /// Read events and send them in batches until `stop` resolves; then
    /// drain what is left, so nothing recorded before the stop is lost.
    /// Returns the final losses (IOPF groups still waiting counted as
    /// `iopf_pending_at_exit`), which the last loss sample carries too.
    pub async fn run(
        mut self,
        tx: mpsc::Sender<Vec<Event>>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Ledger, SourceError> {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_loss = Ledger::new();
        let mut poll = tokio::time::interval(RING_SAFETY_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_drain = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = &mut stop => break,
                // Records whose wake-up was missed are picked up here at
                // the latest.
                _ = poll.tick() => {
                    last_drain = tokio::time::Instant::now();
                    if !self.forward(&tx).await {
                        return Ok(self.counters());
                    }
                }
                _ = tick.tick() => {
                    let now = monotonic_ns();
                    self.sweep(now, IOPF_TIMEOUT_NS);
                    // A loss sample only when something changed, so a quiet
                    // run stays quiet.
                    let c = self.counters();
                    if c != last_loss {
                        last_loss = c.clone();
                        if tx.send(vec![Self::loss_sample(now, c)]).await.is_err() {
                            return Ok(self.counters());
                        }
                    }
                }
                guard = self.ring.readable_mut() => {
                    let mut guard = guard?;
                    guard.clear_ready();
                    drop(guard);
                    // Coalesce: records arriving while we wait find the
                    // ring non-empty and wake nobody.
                    let due = last_drain + RING_POLL;
                    tokio::select! {
                        () = &mut stop => break,
                        () = tokio::time::sleep_until(due) => {}
                    }
                    last_drain = tokio::time::Instant::now();
                    poll.reset();
                    if !self.forward(&tx).await {
                        // The consumer went away (e.g. stdout closed).
                        return Ok(self.counters());
                    }
                }
            }
        }
        self.forward(&tx).await;
        let now = monotonic_ns();
        let remaining = self.sweep(now, IOPF_TIMEOUT_NS);
        let mut losses = self.counters();
        losses.add(LossReason::IopfPendingAtExit, remaining);
        // Always, even when nothing was lost: the final state.
        let _ = tx.send(vec![Self::loss_sample(now, losses.clone())]).await;
        log::debug!("ring fd {} drained", self.ring.get_ref().as_raw_fd());
        Ok(losses)
    }
}

/// What the start-up PASID scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScanFound {
    /// Thread-group leaders visited.
    pub tasks: u32,
    /// The walk came back to its start (every process seen).
    pub complete: bool,
    /// Records lost (ring buffer full).
    pub lost: u32,
    /// Processes whose mm holds a PASID.
    pub owners: Vec<PasidOwner>,
}

/// The start-up PASID scan (docs/architecture.md, "Attribution"): processes that
/// bound a PASID before the tool started, found by walking the task list
/// in a BPF program. Never fatal: `result` says why it could not run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PasidScan {
    /// Where this kernel keeps an mm's PASID.
    pub pasid_field: &'static str,
    /// The tracepoint the scan program ran from.
    pub via: &'static str,
    #[serde(flatten, with = "scan_result")]
    pub result: Result<ScanFound, String>,
}

mod scan_result {
    use serde::{Serialize, Serializer};

    use super::ScanFound;

    #[derive(Serialize)]
    struct Repr<'a> {
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        found: Option<&'a ScanFound>,
    }

    pub fn serialize<S: Serializer>(
        r: &Result<ScanFound, String>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        Repr {
            ok: r.is_ok(),
            reason: r.as_ref().err().map(String::as_str),
            found: r.as_ref().ok(),
        }
        .serialize(s)
    }
}

/// The syscall whose entry tracepoint runs the scan, called once by the
/// scanning thread (any other thread's calls are ignored by the program).
const SCAN_TRACEPOINT: (&str, &str) = ("syscalls", "sys_enter_getpgid");

impl PasidScan {
    fn skipped(reason: &str) -> Self {
        PasidScan {
            pasid_field: "none",
            via: "syscalls:sys_enter_getpgid",
            result: Err(reason.to_string()),
        }
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        match &self.result {
            Ok(f) => {
                let owners: Vec<String> = f
                    .owners
                    .iter()
                    .map(|o| format!("pasid {} -> {}/{}", o.pasid, o.tgid, o.comm))
                    .collect();
                format!(
                    "{} processes scanned{}, {} with a PASID{}{}",
                    f.tasks,
                    if f.complete {
                        ""
                    } else {
                        " (list not complete)"
                    },
                    f.owners.len(),
                    if owners.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", owners.join(", "))
                    },
                    if f.lost > 0 {
                        format!(" ({} lost)", f.lost)
                    } else {
                        String::new()
                    }
                )
            }
            Err(why) => format!("not run: {why}"),
        }
    }
}

/// Run the start-up PASID scan with its own instance of the object (its own
/// small ring buffer), so it works before, after or without a [`Tracer`].
pub fn scan_pasids(config: &kconfig::Resolved) -> PasidScan {
    let mut scan = PasidScan::skipped("");
    scan.pasid_field = config.pasid_location();
    scan.result = run_scan(config);
    scan
}

fn run_scan(config: &kconfig::Resolved) -> Result<ScanFound, String> {
    if OBJECT.is_empty() {
        return Err(SourceError::StubObject.to_string());
    }
    system::check_privileges()?;
    if let Some(problem) = config.scan_problem() {
        return Err(problem);
    }
    // SAFETY: plain syscall without arguments.
    let tid = unsafe { libc::gettid() };
    let tid = u32::try_from(tid).map_err(|_| "gettid failed".to_string())?;
    let cfg: KernelConfig = config.config;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("EVENTS", 1 << 20)
        .override_global("CONFIG", &cfg, true)
        .override_global("SCAN_TID", &tid, true)
        .load(OBJECT)
        .map_err(|e| format!("loading the object: {e}"))?;
    let (category, tp) = SCAN_TRACEPOINT;
    let attach = Attach::Tracepoint(category, tp);
    load_one(&mut ebpf, "pasid_scan", attach, tp, None)
        .and_then(|()| attach_one(&mut ebpf, "pasid_scan", attach, tp))
        .map_err(|e| format!("tracepoint {category}:{tp}: {e}"))?;
    // SAFETY: plain syscall; runs the program above on this thread.
    unsafe { libc::getpgid(0) };
    let state_map = ebpf
        .map("SCAN_STATE")
        .ok_or("map SCAN_STATE missing from the object")?;
    let state: Array<_, ScanState> =
        Array::try_from(state_map).map_err(|e| format!("map SCAN_STATE: {e}"))?;
    let state = state
        .get(&0, 0)
        .map_err(|e| format!("reading SCAN_STATE: {e}"))?;
    if state.visited == 0 {
        return Err(format!(
            "the scan program did not run (tracepoint {category}:{tp} did not fire)"
        ));
    }
    let ring_map = ebpf.take_map("EVENTS").ok_or("map EVENTS missing")?;
    let mut ring = RingBuf::try_from(ring_map).map_err(|e| format!("map EVENTS: {e}"))?;
    let mut owners = Vec::new();
    let mut undecodable = 0u32;
    while let Some(item) = ring.next() {
        match decode_scan(&item) {
            Ok(owner) => owners.push(owner),
            Err(e) => {
                // An owner not learnt: counted with the scan's losses.
                undecodable = undecodable.saturating_add(1);
                log::warn!("undecodable scan record: {e}");
            }
        }
    }
    owners.sort_by_key(|o| o.pasid);
    Ok(ScanFound {
        tasks: state.visited,
        complete: state.complete == 1,
        lost: state.lost.saturating_add(undecodable),
        owners,
    })
}

/// Programs of the bench source (`uacce-trace-ebpf/src/bench.rs`), never
/// in the hook plan: `(program, tracepoint category, tracepoint)`.
pub const BENCH_PROGRAMS: [(&str, &str, &str); 2] = [
    ("bench_report", "syscalls", "sys_enter_getppid"),
    ("bench_response", "syscalls", "sys_exit_getppid"),
];

impl Tracer {
    /// A tracer whose only programs are the bench source's: every
    /// `getppid(2)` of process `tgid` becomes an IOPF record in the ring
    /// buffer, read and decoded by [`Tracer::run`] like real ones
    /// (`crate::commands::bench`).
    /// `batched_wakeup`: the programs wake the reader once per batch of
    /// records instead of whenever it has caught up (the kernel default).
    /// `burst`: records per call (1 to 16).
    pub fn start_bench(
        ring_bytes: u32,
        tgid: u32,
        batched_wakeup: bool,
        burst: u32,
    ) -> Result<Tracer, SourceError> {
        system::check_privileges().map_err(SourceError::Privileges)?;
        if OBJECT.is_empty() {
            return Err(SourceError::StubObject);
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", ring_bytes)
            .override_global("BENCH_TGID", &tgid, true)
            .override_global("BENCH_WAKEUP", &u32::from(batched_wakeup), true)
            .override_global("BENCH_BURST", &burst.clamp(1, 16), true)
            .load(OBJECT)
            .map_err(SourceError::Load)?;
        for (name, category, tp) in BENCH_PROGRAMS {
            let attach = Attach::Tracepoint(category, tp);
            load_one(&mut ebpf, name, attach, tp, None)
                .and_then(|()| attach_one(&mut ebpf, name, attach, tp))
                .map_err(SourceError::NothingToTrace)?;
        }
        let mut take = |name: &'static str| {
            ebpf.take_map(name)
                .ok_or(SourceError::Missing("a map of the object"))
        };
        let map_err = |name: &'static str| move |source| SourceError::Map { name, source };
        let ring = RingBuf::try_from(take("EVENTS")?).map_err(map_err("EVENTS"))?;
        let counters = PerCpuArray::try_from(take("COUNTERS")?).map_err(map_err("COUNTERS"))?;
        Ok(Tracer {
            _ebpf: ebpf,
            // SAFETY: as in `start`: the RingBuf owns its map fd until the
            // AsyncFd drops.
            ring: unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
                .map_err(std::io::Error::from)?,
            counters,
            decoder: Decoder::default(),
            attributor: Attributor::new(),
            undecodable: 0,
            pin_not_credited: 0,
            plan: Plan::default(),
            hooks_attached: BENCH_PROGRAMS.len(),
            scan: PasidScan::skipped("not run by the bench source"),
        })
    }
}

/// Result of loading one program of the object through the verifier.
#[derive(Clone, Debug, Serialize)]
pub struct VerifierResult {
    pub program: String,
    pub hook: HookType,
    pub target: &'static str,
    pub result: Result<(), String>,
}

/// Load (not attach) every program in the object through the kernel
/// verifier, for every target and hook type the plan knows: kprobe-type and
/// tracepoint programs always; fentry-type programs against their target
/// when it is in BTF. Programs of the object that no target uses are
/// reported as failures (the plan's table must cover the object).
pub fn verify_all_programs() -> Result<Vec<VerifierResult>, SourceError> {
    if OBJECT.is_empty() {
        return Err(SourceError::StubObject);
    }
    let aya_btf = AyaBtf::from_sys_fs().ok();
    let btf = Btf::from_sys_fs().ok();
    let config = kconfig::resolve(btf.as_ref(), None, None).config;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("EVENTS", 4096)
        .override_global("CONFIG", &config, true)
        .load(OBJECT)
        .map_err(SourceError::Load)?;
    let mut results = Vec::new();
    let mut covered = std::collections::BTreeSet::new();
    for target in plan::targets() {
        for &hook in target.hooks {
            for (name, attach) in programs(target.program, hook) {
                // A program shared by several targets (renamed functions)
                // is verified once: a loaded program cannot load again.
                if !covered.insert(name.clone()) {
                    continue;
                }
                let in_btf = btf
                    .as_ref()
                    .is_some_and(|b| b.func(target.function).is_some());
                let result = match attach {
                    Attach::FEntry | Attach::FExit if !in_btf => {
                        Err("target not in kernel BTF".to_string())
                    }
                    _ => load_one(&mut ebpf, &name, attach, target.function, aya_btf.as_ref()),
                };
                results.push(VerifierResult {
                    program: name,
                    hook,
                    target: target.function,
                    result,
                });
            }
        }
    }
    for (name, category, tp) in
        BENCH_PROGRAMS
            .iter()
            .copied()
            .chain([("pasid_scan", SCAN_TRACEPOINT.0, SCAN_TRACEPOINT.1)])
    {
        covered.insert(name.to_string());
        results.push(VerifierResult {
            program: name.to_string(),
            hook: HookType::Tracepoint,
            target: tp,
            result: load_one(&mut ebpf, name, Attach::Tracepoint(category, tp), tp, None),
        });
    }
    let uncovered: Vec<String> = ebpf
        .programs()
        .map(|(name, _)| name.to_string())
        .filter(|name| !covered.contains(name))
        .collect();
    for name in uncovered {
        results.push(VerifierResult {
            program: name,
            hook: HookType::Kprobe,
            target: "?",
            result: Err("program in the object is not used by any planned target".into()),
        });
    }
    Ok(results)
}
