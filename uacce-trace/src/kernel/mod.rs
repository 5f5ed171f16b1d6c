//! The kernel boundary: what the running kernel offers and how the tool
//! hooks it.

pub mod btf;
pub mod kconfig;
pub mod plan;
pub mod system;
