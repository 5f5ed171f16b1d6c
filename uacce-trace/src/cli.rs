//! Command line: clap definitions, validation into typed options, dispatch.
//! `run` returns the process exit code: 0 ok, 1 failure, 2 bad usage/input.

use std::io;

use clap::{Parser, Subcommand};

use crate::{doctor, plan::HookPreference, source::TracerOptions, trace};

const ABOUT: &str = "See IO page faults (IOPFs) and page pinning of SVA accelerators \
(uacce, idxd, AMD PPR) per process, with eBPF.";

const LONG_ABOUT: &str = "See IO page faults (IOPFs) and page pinning of SVA accelerators \
(uacce, idxd, AMD PPR) per process, with eBPF.

Hooks are chosen per kernel at run time (fentry/fexit where permitted, else \
kprobe/kretprobe); `uacce-trace doctor` shows the plan and why. Tracing needs \
root, or CAP_BPF and CAP_PERFMON.";

#[derive(Parser, Debug)]
#[command(name = "uacce-trace", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check what this kernel offers and show the hook plan.
    ///
    /// Prints kernel version, BTF, ring buffer, tracefs, kprobes, fentry
    /// permission, privileges, the /proc/vmstat pin counters, the running
    /// kernel's FOLL_LONGTERM bit, and for every hooked function the chosen
    /// hook or why none fits. Exit status 0 when pin and unpin events can be
    /// traced, 1 otherwise.
    Doctor {
        /// Which hook types the plan may use.
        #[arg(long, value_enum, default_value_t = HookPreference::Auto)]
        hooks: HookPreference,
        /// Machine-readable output (one JSON object).
        #[arg(long)]
        json: bool,
    },
    /// Print one line per pin/unpin call until Ctrl-C or SIGTERM.
    ///
    /// Human-readable columns by default, NDJSON with stable field names
    /// with --json (event, ts_ns, tgid, tid, comm, func, hook, start,
    /// nr_pages, ret, pinned, gup_flags, longterm, latency_ns). A summary
    /// with the number of events and drops goes to stderr at the end.
    Trace {
        /// Which hook types to use (forcing one is for tests and odd kernels).
        #[arg(long, value_enum, default_value_t = HookPreference::Auto)]
        hooks: HookPreference,
        /// NDJSON output.
        #[arg(long)]
        json: bool,
        /// Ring buffer size: a power of two of at least 4K, e.g. 256K, 4M, 64M.
        #[arg(long, default_value = "4M", value_parser = parse_ring_size)]
        ring_size: u32,
    },
}

/// Parse `4M`, `256K`, `65536`: a power of two between 4 KiB and 1 GiB.
pub fn parse_ring_size(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 4M or 256K"))?;
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))?;
    if !(4096..=(1 << 30)).contains(&bytes) || !bytes.is_power_of_two() {
        return Err(format!(
            "`{s}`: the ring buffer size must be a power of two between 4K and 1G"
        ));
    }
    u32::try_from(bytes).map_err(|_| format!("`{s}` is too large"))
}

/// Run a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> u8 {
    let result = match cli.command {
        Command::Doctor { hooks, json } => {
            let stdout = io::stdout();
            doctor::run(hooks, json, &mut stdout.lock()).map_err(anyhow::Error::from)
        }
        Command::Trace {
            hooks,
            json,
            ring_size,
        } => trace::run(
            TracerOptions {
                hooks,
                ring_bytes: ring_size,
            },
            json,
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("uacce-trace: error: {e:#}");
            1
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_size("4M"), Ok(4 << 20));
        assert_eq!(parse_ring_size("256k"), Ok(256 << 10));
        assert_eq!(parse_ring_size("65536"), Ok(65536));
        assert!(parse_ring_size("3M").is_err());
        assert!(parse_ring_size("1K").is_err());
        assert!(parse_ring_size("2G").is_err());
        assert!(parse_ring_size("lots").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
