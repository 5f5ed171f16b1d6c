//! The commands that consume events: each is a sink of the event source
//! ([`crate::ingest::source`]). What they share lives here: the value
//! parsers of their options and the loss text of their last line. A command
//! module never imports another one (`tests/layers.rs` checks).

#[cfg(feature = "bench")]
pub mod bench;
pub mod doctor;
pub mod record;
pub mod serve;
pub mod trace;

use crate::{
    exit,
    ingest::{losses::Ledger, source::OpenError},
    status,
};

/// Say why the event source could not be opened and return the exit
/// status: 1 when tracing cannot start, 2 for an unusable recording;
/// `stopped` (said nothing) when a stop came before a replay's header.
pub fn open_failed(e: &OpenError, stopped: u8) -> u8 {
    match e {
        OpenError::Stopped { .. } => stopped,
        OpenError::Input { .. } => {
            log::error!("{e}");
            exit::BAD_INPUT
        }
        OpenError::Signals(_) => {
            log::error!("{e}");
            exit::FAILURE
        }
        OpenError::Tracer(_) | OpenError::Follow(_) => {
            status!("{e}");
            exit::FAILURE
        }
    }
}

/// Parse `1s`, `500ms`, `250us`, `2m`, `1h`, `1.5s` or plain seconds into ns.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    parse_with_units(s, 1e9).and_then(|ns| {
        if ns == 0 {
            Err(format!("`{s}`: the duration must be positive"))
        } else {
            Ok(ns)
        }
    })
}

/// Parse a latency: `800ns`, `250us`, `1.5ms`, `2s` or plain nanoseconds.
pub fn parse_latency(s: &str) -> Result<u64, String> {
    parse_with_units(s, 1.0)
}

fn parse_with_units(s: &str, bare_unit_ns: f64) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult = match unit.trim() {
        "" => bare_unit_ns,
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        u => return Err(format!("`{s}`: unknown unit `{u}` (ns, us, ms, s, m, h)")),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a number with a unit, like 1s or 250us"))?;
    let ns = v * mult;
    if !ns.is_finite() || ns < 0.0 || ns > u64::MAX as f64 {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(ns.round() as u64)
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

/// `M dropped (reason n, reason n)`: everything lost and every non-zero
/// loss reason, then what was folded without a loss (`nested`). `0
/// dropped` only when every loss reason is 0.
pub fn dropped_text(l: &Ledger) -> String {
    let human = l.human();
    if l.total() > 0 {
        format!("{} dropped ({human})", l.total())
    } else if !human.is_empty() {
        format!("0 dropped; {human}")
    } else {
        "0 dropped".to_string()
    }
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
    fn durations_and_latencies() {
        assert_eq!(parse_duration("1s"), Ok(1_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration("2m"), Ok(120_000_000_000));
        assert_eq!(parse_duration("3"), Ok(3_000_000_000));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("1parsec").is_err());
        assert_eq!(parse_latency("800"), Ok(800));
        assert_eq!(parse_latency("250us"), Ok(250_000));
        assert_eq!(parse_latency("1.5ms"), Ok(1_500_000));
    }
}
