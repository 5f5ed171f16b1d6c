//! The second layer of xtask: installing and building tools. Debian packages
//! through the host's apt or a private one ([`apt`]), the eBPF toolchain
//! and packages each command declares it needs ([`setup`]), stock Debian
//! kernels ([`stock`]), Prometheus and promtool ([`prometheus`]), the
//! Debian root file system of the service VM ([`rootfs`]), real builds of
//! the accelerator libraries the `--op` presets probe ([`reallibs`]), and
//! the release binaries ([`build`]).
//!
//! Imports only [`crate::base`].

pub mod apt;
pub mod build;
pub mod prometheus;
pub mod reallibs;
pub mod rootfs;
pub mod setup;
pub mod stock;
