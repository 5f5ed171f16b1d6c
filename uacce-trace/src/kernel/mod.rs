//! The kernel boundary: what the running kernel offers and how the tool
//! hooks it. `facts` asks the kernel (or replays a recording), `inspect`
//! turns the facts into offsets and a hook plan (`plan`, from the hook
//! catalog `uacce_trace_common::hooks`), `attach` loads and attaches the
//! programs, `ring` reads their ring buffer, `summary` the summary mode's
//! map, and `scan` runs the start-up PASID scan. Imports nothing above it.

pub mod attach;
pub mod btf;
pub mod facts;
pub mod inspect;
pub mod kconfig;
pub mod ops;
pub mod plan;
pub mod ring;
pub mod scan;
pub mod summary;
pub mod system;
