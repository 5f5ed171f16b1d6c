//! `uacce-trace top`: the live per-process view (ratatui + crossterm),
//! from the tracer or a raw recording.
//!
//! Structure (bandwhich/bpftop style):
//! - [`feed`]: pure; the aggregator plus rates, history and PASIDs, turned
//!   into an owned [`feed::TopData`] per tick. No clock, no terminal.
//! - [`app`]: pure; the screen state, key → [`app::Msg`] → `update`.
//! - [`view`]: pure; draws the state into a ratatui frame.
//! - [`fmt`]: pure; compact number formatting.
//! - [`runner`]: the I/O: sources, key thread, tick, signals.
//! - [`term`]: full-screen mode and its restoration (drop guard, panic hook).
//! - [`cost`]: BPF run-time statistics of our programs (live only).
//!
//! Nothing here logs to the terminal; `feed`, `app`, `view` and `fmt`
//! import no aya or tokio and never read a clock.

pub mod app;
pub mod cost;
pub mod feed;
pub mod fmt;
pub mod runner;
pub mod term;
pub mod view;

#[cfg(test)]
mod tests;

pub use runner::{run, TopOptions};
