//! uacce-trace: IO page faults and page pinning of SVA accelerators (uacce,
//! idxd, AMD PPR), per process.
//!
//! Module map (design.md "Data flow"):
//! - `source`: the only aya user: inspect the kernel, plan, load, attach,
//!   read the ring buffer, decode into events;
//! - `decode`, `event`: wire records → domain events (pure);
//! - `plan`: hook planning as data (pure); `system`: facts read from files;
//!   `btf`: a small parser of kernel BTF;
//! - `model`: the aggregator (histograms, pin ledger, fault regions;
//!   pure, no clock); `export`: hlog/json/csv writers and readers;
//!   `rawfile`: the raw recording format and replay; `analysis`: `report`
//!   and `compare`;
//! - consumers: `trace` (one line per event), `doctor`, `record`;
//! - `cli`: argument parsing and validation.

pub mod analysis;
pub mod attribution;
pub mod btf;
pub mod cli;
pub mod decode;
pub mod doctor;
pub mod event;
pub mod export;
pub mod kconfig;
pub mod model;
pub mod plan;
pub mod rawfile;
pub mod record;
pub mod source;
pub mod system;
pub mod trace;
