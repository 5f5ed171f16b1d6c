//! Build-dependency shim: `uacce-trace/build.rs` depends on this crate so
//! cargo rebuilds the tool when the programs change. The programs themselves
//! are the `uacce-trace` binary target (`src/main.rs`), compiled for
//! `bpfel-unknown-none` by aya-build.
#![no_std]
