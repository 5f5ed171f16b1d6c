//! uacce-trace: IO page faults and page pinning of SVA accelerators (uacce,
//! idxd, AMD PPR), per process.
//!
//! Layers, bottom to top ([`LAYERS`]; docs/architecture.md, "Data flow
//! and layers"). A module imports only from its own top-level module or
//! from lower layers, never from a higher one or from another module of
//! its own layer, and a command module never imports another command
//! module; `tests/layers.rs` reads every `crate::` path in `src` and fails
//! otherwise.
//! - `exit`, `logger`: exit statuses; diagnostics on standard error (a
//!   `log` backend and the `status!` macro). They import nothing.
//! - `kernel`: the kernel boundary: what the kernel offers (`system`,
//!   `kconfig`, `btf`), what we hook and how (`plan`);
//! - `ingest`: where events come from: wire records → domain events
//!   (`event`, `decode`), IO page fault pairing, PASID attribution, the
//!   process tree, the loss ledger (`losses`), the raw recording format
//!   (`rawfile`), the live tracer (`live`), the run's metadata and clocks
//!   (`run`) and the one event source every command consumes (`source`:
//!   live or replay, the stop signal, the loss ledger);
//! - `model`: the aggregator (histograms, pin ledger, fault regions; pure,
//!   no clock);
//! - `formats`: hlog/json/csv writers and readers;
//! - `analysis`: `report` and `compare` (pure);
//! - `commands`: `trace`, `record`, `serve`, `doctor` (and the benchmark
//!   driver), each a sink of `ingest::source`; `tui`: `top`, the live
//!   per-process screen, another sink;
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

/// The layers of `src`, bottom to top; the modules of one layer are peers
/// that do not import each other. `tests/layers.rs` checks the imports
/// against this list.
pub const LAYERS: &[&[&str]] = &[
    &["exit", "logger"],
    &["kernel"],
    &["ingest"],
    &["model"],
    &["formats"],
    &["analysis"],
    &["commands", "tui"],
    &["cli"],
];

/// How a test that cannot run says so (shared with the integration tests
/// and xtask's).
#[cfg(test)]
#[path = "../tests/common/skip.rs"]
pub(crate) mod test_skip;
