//! uacce-trace: IO page faults and page pinning of SVA accelerators (uacce,
//! idxd, AMD PPR), per process.
//!
//! Layers, bottom to top (docs/architecture.md, "Data flow and layers");
//! a module imports only from its own layer or the ones below:
//! - `kernel`: the kernel boundary: what the kernel offers (`system`,
//!   `kconfig`, `btf`), what we hook and how (`plan`);
//! - `ingest`: where events come from: wire records → domain events
//!   (`event`, `decode`), IO page fault pairing, PASID attribution, the
//!   process tree, the loss ledger (`losses`), the raw recording format
//!   (`rawfile`) and the live tracer (`live`);
//! - `model`: the aggregator (histograms, pin ledger, fault regions; pure,
//!   no clock);
//! - `formats`: hlog/json/csv writers and readers;
//! - `analysis`: `report` and `compare` (pure);
//! - `commands`: `trace`, `record`, `serve`, `doctor` (and the benchmark
//!   driver); `tui`: `top`, the live per-process screen;
//! - `cli`: argument parsing and dispatch.

#![cfg_attr(not(test), deny(clippy::print_stderr))]

pub mod analysis;
pub mod cli;
pub mod commands;
pub mod exit;
pub mod formats;
pub mod ingest;
pub mod kernel;
pub mod logger;
pub mod model;
pub mod tui;

/// How a test that cannot run says so (shared with the integration tests
/// and xtask's).
#[cfg(test)]
#[path = "../tests/common/skip.rs"]
pub(crate) mod test_skip;
