//! The start-up PASID scan's kernel half: load the scan program
//! (`uacce-trace-ebpf/src/uacce.rs`) with its own small ring buffer, run it
//! once from this thread's system call, and hand back its state and raw
//! records. Decoding them is `ingest::scan`'s job.

use aya::{
    maps::{Array, RingBuf},
    EbpfLoader,
};
use uacce_trace_common::{hooks::PASID_SCAN, KernelConfig, ScanState};

use crate::kernel::{
    attach::{self, SourceError, OBJECT},
    kconfig, system,
};

/// What the scan program left behind.
#[derive(Clone, Debug, Default)]
pub struct RawScan {
    pub state: ScanState,
    /// One record per process whose mm holds a PASID.
    pub records: Vec<Vec<u8>>,
}

/// The tracepoint the scan program runs from, `category:name`.
pub fn tracepoint() -> &'static str {
    "syscalls:sys_enter_getpgid"
}

/// Run the scan program once; never fatal to the caller: the error says
/// why it could not run.
pub fn run(config: &kconfig::Resolved) -> Result<RawScan, String> {
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
        .map_max_entries(attach::LOG_RING, 4096)
        .override_global("CONFIG", &cfg, true)
        .override_global("SCAN_TID", &tid, true)
        .override_global(attach::LOG_LEVEL_GLOBAL, &0u8, false)
        .load(OBJECT)
        .map_err(|e| format!("loading the object: {e}"))?;
    let via = tracepoint();
    attach::load_and_attach(&mut ebpf, PASID_SCAN).map_err(|e| format!("tracepoint {via}: {e}"))?;
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
            "the scan program did not run (tracepoint {via} did not fire)"
        ));
    }
    let ring_map = ebpf.take_map("EVENTS").ok_or("map EVENTS missing")?;
    let mut ring = RingBuf::try_from(ring_map).map_err(|e| format!("map EVENTS: {e}"))?;
    let mut records = Vec::new();
    while let Some(item) = ring.next() {
        records.push(item.to_vec());
    }
    Ok(RawScan { state, records })
}
