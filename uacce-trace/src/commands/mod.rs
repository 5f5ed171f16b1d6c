//! The commands that consume events: each is a sink of the event source.

#[cfg(feature = "bench")]
pub mod bench;
pub mod doctor;
pub mod record;
pub mod serve;
pub mod trace;
