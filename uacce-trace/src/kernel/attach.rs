//! Loading and attaching the kernel programs (`uacce-trace-ebpf`) with aya:
//! the embedded object, the programs of each catalog entry
//! (`uacce_trace_common::hooks`) per hook type, all-or-nothing attach of a
//! target, and the verifier check of every program (`verify_all_programs`).
//!
//! Knows nothing of events or the ring buffer (`kernel::ring`).

use std::collections::BTreeSet;

use aya::{
    maps::{Array, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{FEntry, FExit, KProbe, RawTracePoint, TracePoint, UProbe},
    Btf as AyaBtf, Ebpf, EbpfLoader,
};
use serde::Serialize;
use thiserror::Error;
use uacce_trace_common::{
    counter,
    hooks::{self, Attach, Hook, Program, PASID_SCAN, UACCE_CTRL_IOCTL},
};

use crate::kernel::{
    facts::LiveFacts,
    inspect::Inspection,
    kconfig,
    plan::{hook_types, EventKind, HookType, HOOKS},
    ring::monotonic_ns,
    summary::SummaryMap,
};

/// The compiled kernel programs (empty when built with UACCE_TRACE_EBPF_STUB).
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/uacce-trace"));

/// The global of aya-log-ebpf with the most verbose level the programs
/// send (aya-log's numbering: 0 off, 1 error … 5 trace). A constant at
/// load time: the verifier removes the logging code of the levels above.
pub(crate) const LOG_LEVEL_GLOBAL: &str = "AYA_LOG_LEVEL";
/// aya-log's ring (the programs' diagnostics); loads that send none shrink it.
pub(crate) const LOG_RING: &str = "AYA_LOGS";
/// The size of [`LOG_RING`] in loads that send no diagnostics.
const LOG_RING_UNUSED_BYTES: u32 = 4096;

/// aya-log's level for ours: the programs' diagnostics (sent at info
/// level) are on with `-v` and off otherwise.
pub fn bpf_log_level(level: log::LevelFilter) -> u8 {
    match level {
        log::LevelFilter::Off => 0,
        log::LevelFilter::Error => 1,
        log::LevelFilter::Warn => 2,
        log::LevelFilter::Info => 3,
        log::LevelFilter::Debug => 4,
        log::LevelFilter::Trace => 5,
    }
}

/// Passes the kernel programs' diagnostics (aya-log records) on to the
/// tool's logger, saying where they come from.
#[derive(Clone, Copy, Debug)]
pub struct KernelLog;

impl log::Log for KernelLog {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        log::logger().enabled(meta)
    }

    fn log(&self, record: &log::Record<'_>) {
        log::logger().log(
            &log::Record::builder()
                .level(record.level())
                .target(record.target())
                .args(format_args!("kernel program: {}", record.args()))
                .build(),
        );
    }

    fn flush(&self) {}
}

/// Reads the programs' diagnostics from [`LOG_RING`].
pub type BpfLogger = aya_log::EbpfLogger<KernelLog>;

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

/// The object built with the bench programs (`bench` feature).
pub const BENCH_BUILD: bool = cfg!(feature = "bench");

pub(crate) fn describe_program_error(err: &aya::programs::ProgramError) -> String {
    use aya::programs::ProgramError;
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            // The verifier's last words say why (EPERM has none).
            let log = verifier_log.to_string();
            // The statistics lines at the end say nothing about why.
            let tail: Vec<&str> = log
                .lines()
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty()
                        && !l.starts_with("processed ")
                        && !l.starts_with("stack depth ")
                        && !l.starts_with("verification time ")
                })
                .rev()
                .take(3)
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
pub(crate) fn probe_fentry(aya_btf: Option<&AyaBtf>, target: Option<&str>) -> Result<(), String> {
    let aya_btf = aya_btf.ok_or("no kernel BTF")?;
    let target = target.ok_or("no pin function in BTF to test with")?;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("EVENTS", 4096)
        .map_max_entries(LOG_RING, LOG_RING_UNUSED_BYTES)
        .override_global(LOG_LEVEL_GLOBAL, &0u8, false)
        .load(OBJECT)
        .map_err(|e| format!("loading the object: {e}"))?;
    let program = hooks::hook(target)
        .and_then(|h| h.fentry_programs().find(|p| p.attach == Attach::FEntry))
        .ok_or("unknown target")?;
    let prog: &mut FEntry = ebpf
        .program_mut(&program.to_string())
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

pub(crate) fn probe_ring_buffer() -> Result<(), String> {
    match aya::sys::is_map_supported(aya::maps::MapType::RingBuf) {
        Ok(true) => Ok(()),
        Ok(false) => Err("BPF ring buffer maps are not supported (needs Linux 5.8+)".into()),
        Err(e) => Err(format!("probing ring buffer support: {e}")),
    }
}

/// The programs serving `entry` through `hook`, in attach order (every
/// exit half before its entry half, see [`Hook::fentry_programs`]).
pub fn programs(entry: &Hook, hook: HookType) -> Vec<Program> {
    match hook {
        HookType::Fentry => entry.fentry_programs().collect(),
        HookType::Kprobe => entry.kprobe_programs().collect(),
        HookType::Tracepoint => entry.tracepoint_programs().collect(),
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
pub(crate) fn load_one(
    ebpf: &mut Ebpf,
    program: Program,
    symbol: &str,
    btf: Option<&AyaBtf>,
) -> Result<(), String> {
    let name = program.to_string();
    let name = name.as_str();
    let desc = |e: aya::programs::ProgramError| format!("{name}: {}", describe_program_error(&e));
    match program.attach {
        Attach::FEntry => typed::<FEntry>(ebpf, name)?
            .load(symbol, btf.ok_or("no kernel BTF")?)
            .map_err(desc),
        Attach::FExit => typed::<FExit>(ebpf, name)?
            .load(symbol, btf.ok_or("no kernel BTF")?)
            .map_err(desc),
        Attach::KProbe | Attach::KRetProbe => typed::<KProbe>(ebpf, name)?.load().map_err(desc),
        Attach::Tracepoint(..) => typed::<TracePoint>(ebpf, name)?.load().map_err(desc),
        Attach::RawTracepoint(_) => typed::<RawTracePoint>(ebpf, name)?.load().map_err(desc),
        Attach::UProbe | Attach::URetProbe => typed::<UProbe>(ebpf, name)?.load().map_err(desc),
    }
}

pub(crate) fn attach_one(ebpf: &mut Ebpf, program: Program, symbol: &str) -> Result<(), String> {
    let name = program.to_string();
    let name = name.as_str();
    let desc = |e: aya::programs::ProgramError| format!("{name} attach: {e}");
    match program.attach {
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
        // Attached per user-space function by `kernel::ops::attach`.
        Attach::UProbe | Attach::URetProbe => {
            Err(format!("{name}: uprobes attach through --op, not here"))
        }
    }
}

/// Load and attach one program of a tracepoint (bench, PASID scan).
pub(crate) fn load_and_attach(ebpf: &mut Ebpf, program: Program) -> Result<(), String> {
    let event = match program.attach {
        Attach::Tracepoint(_, event) | Attach::RawTracepoint(event) => event,
        _ => "",
    };
    load_one(ebpf, program, event, None).and_then(|()| attach_one(ebpf, program, event))
}

/// Unload a program (and detach its links); errors mean it was not loaded.
fn unload_one(ebpf: &mut Ebpf, program: Program) {
    let name = program.to_string();
    let name = name.as_str();
    let _ = match program.attach {
        Attach::FEntry => typed::<FEntry>(ebpf, name).map(|p| p.unload()),
        Attach::FExit => typed::<FExit>(ebpf, name).map(|p| p.unload()),
        Attach::KProbe | Attach::KRetProbe => typed::<KProbe>(ebpf, name).map(|p| p.unload()),
        Attach::Tracepoint(..) => typed::<TracePoint>(ebpf, name).map(|p| p.unload()),
        Attach::RawTracepoint(_) => typed::<RawTracePoint>(ebpf, name).map(|p| p.unload()),
        Attach::UProbe | Attach::URetProbe => typed::<UProbe>(ebpf, name).map(|p| p.unload()),
    };
}

/// Load and attach every program of a target through `hook`; on any
/// failure unload what was attached so the target is all-or-nothing.
pub(crate) fn attach_target(
    ebpf: &mut Ebpf,
    entry: &Hook,
    hook: HookType,
    btf: Option<&AyaBtf>,
) -> Result<(), String> {
    let progs = programs(entry, hook);
    if progs.is_empty() {
        return Err(format!("no {hook} program for this target"));
    }
    for (done, program) in progs.iter().enumerate() {
        let result = load_one(ebpf, *program, entry.target, btf)
            .and_then(|()| attach_one(ebpf, *program, entry.target));
        if let Err(e) = result {
            for undo in progs.iter().take(done + 1) {
                unload_one(ebpf, *undo);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// The object loaded with a plan attached, and the maps its reader takes.
pub struct Attached {
    /// Owns the programs and their links: dropping it detaches everything.
    pub ebpf: Ebpf,
    pub ring: RingBuf<MapData>,
    pub counters: PerCpuArray<MapData, u64>,
    /// Summary mode's map; `None` in per-event mode.
    pub summary: Option<SummaryMap>,
    /// The programs' diagnostics (`-v`); `None` when the object has no
    /// log ring.
    pub logger: Option<BpfLogger>,
    /// Rows attached.
    pub hooks: usize,
}

/// Load the object (offsets from `inspection`, a ring of `ring_bytes`) and
/// attach every planned row with its first viable hook type, recording
/// attach failures in the plan; the process-tree rows only when
/// `follow_processes`. Then tell the programs that attaching is done.
pub fn attach_plan(
    inspection: &mut Inspection,
    btf: Option<&AyaBtf>,
    ring_bytes: u32,
    follow_processes: bool,
    summary: bool,
) -> Result<Attached, SourceError> {
    let longterm = inspection.foll_longterm.value.unwrap_or(0);
    let log_level = bpf_log_level(log::max_level());
    // The loader relocates with the BTF the plan was made from (aya would
    // read /sys/kernel/btf/vmlinux again, or fail without it: `--btf`).
    let mut ebpf = EbpfLoader::new()
        .btf(btf)
        .map_max_entries("EVENTS", ring_bytes)
        .override_global("CONFIG", &inspection.config.config, true)
        .override_global("SUMMARY_MODE", &u32::from(summary), true)
        .override_global("FOLL_LONGTERM", &longterm, true)
        .override_global(LOG_LEVEL_GLOBAL, &log_level, false)
        .load(OBJECT)
        .map_err(SourceError::Load)?;
    let logger = match BpfLogger::init_with_logger(&mut ebpf, KernelLog) {
        Ok(l) => {
            log::info!(
                "kernel programs' diagnostics on (aya-log, level {})",
                log::max_level()
            );
            Some(l)
        }
        Err(e) => {
            log::debug!("kernel programs' diagnostics unavailable: {e}");
            None
        }
    };
    let mut attached = 0;
    for i in 0..inspection.plan.hooks.len() {
        // A vendor row comes after its core rows: their attach results
        // decide whether it is needed.
        inspection.plan.reconsider_vendor_row(i);
        let follow_problem = inspection.config.follow_problem();
        let hook = &mut inspection.plan.hooks[i];
        if hook.kind == EventKind::Process {
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
            match attach_target(&mut ebpf, hook.entry, chosen, btf) {
                Ok(()) => {
                    attached += 1;
                    break;
                }
                Err(reason) => {
                    // Planned but refused (the verifier, the attach): said
                    // here, since the fallback may be a hook that never fires.
                    log::warn!("{} ({chosen}) not attached: {reason}", hook.function);
                    hook.reject_chosen(chosen, reason)
                }
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
        .any(|h| h.function == UACCE_CTRL_IOCTL.target && h.chosen.is_some());
    if symbol_ioctl {
        set_entry(
            &mut ebpf,
            "IOCTL_SYMBOL_LIVE",
            "map IOCTL_SYMBOL_LIVE",
            0,
            1u32,
        )?;
    }
    // Every hook is attached: from now on an exit without entry is a
    // loss, not a call that was in flight at start.
    set_entry(
        &mut ebpf,
        "RUNTIME",
        "map RUNTIME",
        counter::RUNTIME_ATTACH_DONE,
        monotonic_ns(),
    )?;
    let map_err = |name: &'static str| move |source| SourceError::Map { name, source };
    let ring = ebpf
        .take_map("EVENTS")
        .ok_or(SourceError::Missing("map EVENTS"))?;
    let ring = RingBuf::try_from(ring).map_err(map_err("EVENTS"))?;
    let counters = ebpf
        .take_map("COUNTERS")
        .ok_or(SourceError::Missing("map COUNTERS"))?;
    let counters = PerCpuArray::try_from(counters).map_err(map_err("COUNTERS"))?;
    let summary = if summary {
        let map = ebpf
            .take_map("SUMMARY")
            .ok_or(SourceError::Missing("map SUMMARY"))?;
        let iopf = ebpf
            .take_map("IOPF_SUMMARY")
            .ok_or(SourceError::Missing("map IOPF_SUMMARY"))?;
        let table = ebpf
            .take_map("IOPF_TABLE")
            .ok_or(SourceError::Missing("map IOPF_TABLE"))?;
        Some(SummaryMap::new(
            PerCpuHashMap::try_from(map).map_err(map_err("SUMMARY"))?,
            PerCpuHashMap::try_from(iopf).map_err(map_err("IOPF_SUMMARY"))?,
            Array::try_from(table).map_err(map_err("IOPF_TABLE"))?,
        ))
    } else {
        None
    };
    Ok(Attached {
        ebpf,
        ring,
        counters,
        summary,
        logger,
        hooks: attached,
    })
}

/// Stamp the attach-done time again after hooks attached late (the
/// request uprobes, `kernel::ops::attach`): exits without entry within
/// `ATTACH_EDGE_NS` of it are calls in flight at start.
pub(crate) fn mark_attach_done(ebpf: &mut Ebpf) -> Result<(), SourceError> {
    set_entry(
        ebpf,
        "RUNTIME",
        "map RUNTIME",
        counter::RUNTIME_ATTACH_DONE,
        monotonic_ns(),
    )
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
/// verifier, for every target and hook type the catalog knows: kprobe-type
/// and tracepoint programs always; fentry-type programs against their
/// target when it is in BTF. Programs of the object that the catalog does
/// not list are reported as failures.
pub fn verify_all_programs() -> Result<Vec<VerifierResult>, SourceError> {
    if OBJECT.is_empty() {
        return Err(SourceError::StubObject);
    }
    let facts = LiveFacts::new();
    let config = kconfig::resolve(facts.btf_reader(), None, None).config;
    // Summary mode on: the verifier prunes what a constant global turns
    // off, and with it on, both the summary path and the record path (its
    // fallback when the map is full) are live.
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("EVENTS", 4096)
        .override_global("CONFIG", &config, true)
        .override_global("SUMMARY_MODE", &1u32, true)
        // Any bit: keeps the long-term branch live.
        .override_global("FOLL_LONGTERM", &1u32, true)
        // Every level: the diagnostics (aya-log) are verified too.
        .override_global(
            LOG_LEVEL_GLOBAL,
            &bpf_log_level(log::LevelFilter::Trace),
            false,
        )
        .load(OBJECT)
        .map_err(SourceError::Load)?;
    let mut results = Vec::new();
    let mut covered = BTreeSet::new();
    for entry in HOOKS {
        let in_btf = facts
            .btf_reader()
            .is_some_and(|b| b.func(entry.target).is_some());
        for &hook in hook_types(entry) {
            for program in programs(entry, hook) {
                // A program shared by several targets (renamed functions)
                // is verified once: a loaded program cannot load again.
                let name = program.to_string();
                if !covered.insert(name.clone()) {
                    continue;
                }
                let result = match program.attach {
                    Attach::FEntry | Attach::FExit if !in_btf => {
                        Err("target not in kernel BTF".to_string())
                    }
                    _ => load_one(&mut ebpf, program, entry.target, facts.aya_btf()),
                };
                results.push(VerifierResult {
                    program: name,
                    hook,
                    target: entry.target,
                    result,
                });
            }
        }
    }
    let extra: &[Program] = if BENCH_BUILD { &hooks::BENCH } else { &[] };
    for &program in extra.iter().chain([&PASID_SCAN]) {
        let Attach::Tracepoint(_, tp) = program.attach else {
            continue;
        };
        covered.insert(program.to_string());
        results.push(VerifierResult {
            program: program.to_string(),
            hook: HookType::Tracepoint,
            target: tp,
            result: load_one(&mut ebpf, program, tp, None),
        });
    }
    // The request programs load without a target (uprobes attach to
    // user-space functions chosen at run time).
    for program in hooks::REQUEST {
        covered.insert(program.to_string());
        results.push(VerifierResult {
            program: program.to_string(),
            hook: HookType::Kprobe,
            target: "uprobe (--op)",
            result: load_one(&mut ebpf, program, "", None),
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
            result: Err("program in the object is not in the hook catalog".into()),
        });
    }
    Ok(results)
}

/// Writes `value` at `index` of the array map `name` (`missing`: the
/// error's text when the object has no such map).
fn set_entry<T: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    missing: &'static str,
    index: u32,
    value: T,
) -> Result<(), SourceError> {
    let mut map: Array<_, T> =
        Array::try_from(ebpf.map_mut(name).ok_or(SourceError::Missing(missing))?)
            .map_err(|source| SourceError::Map { name, source })?;
    map.set(index, value, 0)
        .map_err(|source| SourceError::Map { name, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The object's programs and the catalog's agree, both ways: a program
    /// written without a catalog entry, or an entry naming a program that
    /// does not exist, fails here.
    #[test]
    fn catalog_matches_the_object() {
        if OBJECT.is_empty() {
            crate::test_skip::skip(
                crate::test_skip::Lack::Setup,
                "built with UACCE_TRACE_EBPF_STUB=1: no eBPF object to compare",
            );
            return;
        }
        let object = aya_obj::Object::parse(OBJECT).expect("the embedded object parses");
        let in_object: BTreeSet<String> = object.programs.keys().cloned().collect();
        let in_catalog: BTreeSet<String> = hooks::all_programs(BENCH_BUILD)
            .map(|p| p.to_string())
            .collect();
        let not_in_catalog: Vec<_> = in_object.difference(&in_catalog).collect();
        let not_in_object: Vec<_> = in_catalog.difference(&in_object).collect();
        assert!(
            not_in_catalog.is_empty() && not_in_object.is_empty(),
            "programs in the object but not in the hook catalog: {not_in_catalog:?}; \
             in the catalog but not in the object: {not_in_object:?}"
        );
    }
}
