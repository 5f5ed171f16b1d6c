//! The second layer of xtask: installing and building tools. Debian packages
//! through the host's apt or a private one ([`apt`]), the eBPF toolchain
//! and packages each command declares it needs ([`setup`]), stock Debian
//! kernels ([`stock`]), Prometheus and promtool ([`prometheus`]), the
//! Debian root file system of the service VM ([`rootfs`]), and the
//! release binaries ([`build`]).
//!
//! Imports only [`crate::base`].

pub mod apt;
pub mod build;
pub mod prometheus;
pub mod rootfs;
pub mod setup;
pub mod stock;
