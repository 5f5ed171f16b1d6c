//! uacce-trace: IO page faults and page pinning of SVA accelerators (uacce,
//! idxd, AMD PPR), per process.
//!
//! Module map (design.md "Data flow"):
//! - `source`: the only aya user: inspect the kernel, plan, load, attach,
//!   read the ring buffer, decode into events;
//! - `decode`, `event`: wire records → domain events (pure);
//! - `plan`: hook planning as data (pure); `system`: facts read from files;
//!   `btf`: a small parser of kernel BTF;
//! - consumers: `trace` (one line per event), `doctor`;
//! - `cli`: argument parsing and validation.

pub mod attribution;
pub mod btf;
pub mod cli;
pub mod decode;
pub mod doctor;
pub mod event;
pub mod kconfig;
pub mod plan;
pub mod source;
pub mod system;
pub mod trace;
