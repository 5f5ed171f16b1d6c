//! uacce-trace: IO page faults and page pinning of SVA accelerators (uacce,
//! idxd, AMD PPR), per process.
//!
//! Module map (docs/architecture.md, "Data flow and layers"):
//! - `source`: the only aya user: inspect the kernel, plan, load, attach,
//!   read the ring buffer, decode into events;
//! - `decode`, `event`: wire records → domain events (pure); `pairing`:
//!   IO page fault reports + responses → complete faults (pure); `inthash`:
//!   the hasher of maps keyed by kernel-chosen integers;
//! - `plan`: hook planning as data (pure); `system`: facts read from files;
//!   `btf`: a small parser of kernel BTF;
//! - `model`: the aggregator (histograms, pin ledger, fault regions;
//!   pure, no clock); `export`: hlog/json/csv writers and readers;
//!   `rawfile`: the raw recording format and replay; `analysis`: `report`
//!   and `compare`; `losses`: the loss ledger by reason, shown by every
//!   output;
//! - consumers: `trace` (one line per event), `doctor`, `record`, `tui`
//!   (`top`, the live per-process screen), `serve` (Prometheus `/metrics`);
//! - `cli`: argument parsing and validation.

/// `eprintln!` that never panics. std's panics when stderr is a broken pipe
/// (`uacce-trace record … 2>&1 | head`), which would turn a finished
/// recording into a crash with exit status 101. Defined before the modules,
/// so it shadows std's macro in all of them.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod analysis;
pub mod attribution;
pub mod bench;
pub mod btf;
pub mod cli;
pub mod decode;
pub mod doctor;
pub mod event;
pub mod export;
pub mod inthash;
pub mod kconfig;
pub mod losses;
pub mod model;
pub mod pairing;
pub mod plan;
pub mod proctree;
pub mod rawfile;
pub mod record;
pub mod serve;
pub mod source;
pub mod system;
pub mod trace;
pub mod tui;

/// How a test that cannot run says so (shared with the integration tests
/// and xtask's).
#[cfg(test)]
#[path = "../tests/common/skip.rs"]
pub(crate) mod test_skip;
