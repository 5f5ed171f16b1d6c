//! The only module that touches aya: inspects the running kernel (BTF, trial
//! loads), plans hooks, loads and attaches the kernel programs, reads the
//! ring buffer with tokio's `AsyncFd` and decodes records into domain events
//! that go out on a bounded channel.

use std::{collections::BTreeMap, os::fd::AsRawFd};

use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{FEntry, FExit, KProbe},
    Btf as AyaBtf, Ebpf, EbpfLoader,
};
use serde::Serialize;
use thiserror::Error;
use tokio::{
    io::{unix::AsyncFd, Interest},
    sync::mpsc,
};
use uacce_trace_common::{counter, PinFunc};

use crate::{
    btf::Btf,
    decode::{decode, DecodeContext},
    event::{Event, HookType},
    plan::{self, Facts, HookPreference, Plan},
    system,
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
        ProgramError::LoadError { io_error, .. } => format!("BPF_PROG_LOAD: {io_error}"),
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
    let names: Vec<&str> = PinFunc::ALL.iter().map(|f| f.symbol()).collect();
    let mut symbols = system::symbol_facts(&names, tracefs.as_deref(), debugfs.as_deref());
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
    };
    let plan = plan::plan(&facts, pref);
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
    }
}

/// Per-CPU counters summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Records lost because the ring buffer was full.
    pub ringbuf_full: u64,
    /// Exit hooks that found no entry (entry missed or evicted).
    pub exit_without_entry: u64,
    /// Nested calls folded into their outer call.
    pub nested: u64,
    /// Entries that could not be stored.
    pub inflight_full: u64,
    /// Records user space could not decode.
    pub undecodable: u64,
}

impl Counters {
    /// Records lost for any reason.
    pub fn dropped(&self) -> u64 {
        self.ringbuf_full + self.inflight_full + self.undecodable
    }
}

/// Loaded and attached programs plus the ring buffer.
pub struct Tracer {
    /// Owns the programs and their links: dropping it detaches everything.
    _ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
    ctx: DecodeContext,
    undecodable: u64,
    plan: Plan,
    hooks_attached: usize,
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

fn attach_pair(
    ebpf: &mut Ebpf,
    func: PinFunc,
    hook: HookType,
    aya_btf: Option<&AyaBtf>,
) -> Result<(), String> {
    let base = func.program_base();
    let symbol = func.symbol();
    match hook {
        HookType::Fentry => {
            let btf = aya_btf.ok_or("no kernel BTF")?;
            let entry: &mut FEntry = ebpf
                .program_mut(&format!("{base}_fentry"))
                .ok_or("fentry program missing")?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| e.to_string())?;
            entry
                .load(symbol, btf)
                .map_err(|e| format!("fentry {}", describe_program_error(&e)))?;
            let entry_link = entry.attach().map_err(|e| format!("fentry attach: {e}"))?;
            let exit: Result<&mut FExit, String> = ebpf
                .program_mut(&format!("{base}_fexit"))
                .ok_or_else(|| "fexit program missing".to_string())
                .and_then(|p| {
                    p.try_into()
                        .map_err(|e: aya::programs::ProgramError| e.to_string())
                });
            let result = exit.and_then(|exit| {
                exit.load(symbol, btf)
                    .map_err(|e| format!("fexit {}", describe_program_error(&e)))?;
                exit.attach()
                    .map(|_| ())
                    .map_err(|e| format!("fexit attach: {e}"))
            });
            if result.is_err() {
                if let Some(Ok(p)) = ebpf
                    .program_mut(&format!("{base}_fentry"))
                    .map(<&mut FEntry>::try_from)
                {
                    let _ = p.detach(entry_link);
                }
            }
            result
        }
        HookType::Kprobe => {
            let entry: &mut KProbe = ebpf
                .program_mut(&format!("{base}_kprobe"))
                .ok_or("kprobe program missing")?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| e.to_string())?;
            entry
                .load()
                .map_err(|e| format!("kprobe {}", describe_program_error(&e)))?;
            let entry_link = entry
                .attach(symbol, 0)
                .map_err(|e| format!("kprobe attach: {e}"))?;
            let exit: Result<&mut KProbe, String> = ebpf
                .program_mut(&format!("{base}_kretprobe"))
                .ok_or_else(|| "kretprobe program missing".to_string())
                .and_then(|p| {
                    p.try_into()
                        .map_err(|e: aya::programs::ProgramError| e.to_string())
                });
            let result = exit.and_then(|exit| {
                exit.load()
                    .map_err(|e| format!("kretprobe {}", describe_program_error(&e)))?;
                exit.attach(symbol, 0)
                    .map(|_| ())
                    .map_err(|e| format!("kretprobe attach: {e}"))
            });
            if result.is_err() {
                if let Some(Ok(p)) = ebpf
                    .program_mut(&format!("{base}_kprobe"))
                    .map(<&mut KProbe>::try_from)
                {
                    let _ = p.detach(entry_link);
                }
            }
            result
        }
        HookType::Tracepoint => Err("no tracepoint program for this function".into()),
    }
}

impl Tracer {
    /// Check privileges, plan, load and attach. Fails when the core events
    /// cannot be traced.
    pub fn start(opts: TracerOptions) -> Result<(Tracer, Inspection), SourceError> {
        if OBJECT.is_empty() {
            return Err(SourceError::StubObject);
        }
        system::check_privileges().map_err(SourceError::Privileges)?;
        let mut inspection = inspect(opts.hooks);
        if let Err(why) = &inspection.ring_buffer {
            return Err(SourceError::NothingToTrace(why.clone()));
        }
        let aya_btf = AyaBtf::from_sys_fs().ok();
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", opts.ring_bytes)
            .load(OBJECT)
            .map_err(SourceError::Load)?;
        let mut attached = 0;
        for hook in &mut inspection.plan.hooks {
            while let Some(chosen) = hook.chosen {
                match attach_pair(&mut ebpf, hook.pin_func, chosen, aya_btf.as_ref()) {
                    Ok(()) => {
                        attached += 1;
                        break;
                    }
                    Err(reason) => hook.reject_chosen(chosen, reason),
                }
            }
        }
        if let Some(problem) = inspection.plan.core_problem() {
            return Err(SourceError::NothingToTrace(problem));
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
                ctx: DecodeContext {
                    foll_longterm: inspection.foll_longterm.value,
                },
                undecodable: 0,
                plan,
                hooks_attached: attached,
            },
            inspection,
        ))
    }

    /// The plan after attaching (attach failures recorded).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Number of functions hooked.
    pub fn hooks_attached(&self) -> usize {
        self.hooks_attached
    }

    /// Decode everything currently in the ring buffer into `out`.
    fn drain(&mut self, out: &mut Vec<Event>) {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            match decode(&item, &self.ctx) {
                Ok(ev) => out.push(ev),
                Err(err) => {
                    self.undecodable += 1;
                    log::warn!("undecodable record: {err}");
                }
            }
        }
    }

    /// Counters summed over CPUs.
    pub fn counters(&self) -> Counters {
        let get = |i: u32| -> u64 {
            self.counters
                .get(&i, 0)
                .map(|v| v.iter().copied().fold(0u64, u64::wrapping_add))
                .unwrap_or(0)
        };
        Counters {
            ringbuf_full: get(counter::RINGBUF_FULL),
            exit_without_entry: get(counter::EXIT_WITHOUT_ENTRY),
            nested: get(counter::NESTED),
            inflight_full: get(counter::INFLIGHT_FULL),
            undecodable: self.undecodable,
        }
    }

    /// Read events and send them in batches until `stop` resolves; then
    /// drain what is left, so nothing recorded before the stop is lost.
    /// Returns the final counters.
    pub async fn run(
        mut self,
        tx: mpsc::Sender<Vec<Event>>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Counters, SourceError> {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                guard = self.ring.readable_mut() => {
                    let mut guard = guard?;
                    guard.clear_ready();
                    drop(guard);
                    let mut batch = Vec::new();
                    self.drain(&mut batch);
                    if !batch.is_empty() && tx.send(batch).await.is_err() {
                        // The consumer went away (e.g. stdout closed).
                        return Ok(self.counters());
                    }
                }
            }
        }
        let mut batch = Vec::new();
        self.drain(&mut batch);
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        log::debug!("ring fd {} drained", self.ring.get_ref().as_raw_fd());
        Ok(self.counters())
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
/// verifier: kprobe-type programs for every function, fentry-type programs
/// against each function present in BTF. For the host test tier.
pub fn verify_all_programs() -> Result<Vec<VerifierResult>, SourceError> {
    if OBJECT.is_empty() {
        return Err(SourceError::StubObject);
    }
    let aya_btf = AyaBtf::from_sys_fs().ok();
    let btf = Btf::from_sys_fs().ok();
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("EVENTS", 4096)
        .load(OBJECT)
        .map_err(SourceError::Load)?;
    let mut results = Vec::new();
    for func in PinFunc::ALL {
        let base = func.program_base();
        let target = func.symbol();
        for suffix in ["kprobe", "kretprobe"] {
            let name = format!("{base}_{suffix}");
            let result = match ebpf.program_mut(&name).map(<&mut KProbe>::try_from) {
                Some(Ok(p)) => p.load().map_err(|e| describe_program_error(&e)),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("missing from the object".into()),
            };
            results.push(VerifierResult {
                program: name,
                hook: HookType::Kprobe,
                target,
                result,
            });
        }
        let in_btf = btf.as_ref().is_some_and(|b| b.func(target).is_some());
        for suffix in ["fentry", "fexit"] {
            let name = format!("{base}_{suffix}");
            let result = if !in_btf {
                Err("target not in kernel BTF".to_string())
            } else if let Some(aya_btf) = aya_btf.as_ref() {
                let prog = ebpf.program_mut(&name);
                match (suffix, prog) {
                    ("fentry", Some(p)) => <&mut FEntry>::try_from(p)
                        .map_err(|e| e.to_string())
                        .and_then(|p| {
                            p.load(target, aya_btf)
                                .map_err(|e| describe_program_error(&e))
                        }),
                    (_, Some(p)) => <&mut FExit>::try_from(p)
                        .map_err(|e| e.to_string())
                        .and_then(|p| {
                            p.load(target, aya_btf)
                                .map_err(|e| describe_program_error(&e))
                        }),
                    (_, None) => Err("missing from the object".into()),
                }
            } else {
                Err("no kernel BTF".into())
            };
            results.push(VerifierResult {
                program: name,
                hook: HookType::Fentry,
                target,
                result,
            });
        }
    }
    Ok(results)
}
