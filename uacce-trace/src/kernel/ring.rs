//! Reading the one BPF ring buffer: the map behind tokio's `AsyncFd`, and
//! the wake-up loop (coalesced wake-ups, a slow safety poll, a one-second
//! tick) that hands the records to whoever decodes them ([`RingLoop`]).
//!
//! Raw bytes only: decoding into events is the ingest layer's job.

use std::{future::Future, os::fd::AsRawFd, time::Duration};

use aya::maps::{ring_buf::RingBufItem, MapData, RingBuf};
use tokio::io::{unix::AsyncFd, Interest};

/// Shortest time between two drains of the ring buffer: a wake-up that
/// comes sooner waits for the rest, so a steady stream wakes the reader
/// (and costs the traced tasks a wake-up) at most ~100 times a second. The
/// eBPF side wakes the reader when a record finds the ring empty
/// (`submit_flags`), so the first record after a quiet spell is read at
/// once.
pub const RING_POLL: Duration = Duration::from_millis(10);

/// How often the ring is drained without a wake-up: a safety net for a
/// wake-up that concurrent producers missed. Slow, so an idle tracer wakes
/// ~10 times a second (`cargo xtask bench tui`).
pub const RING_SAFETY_POLL: Duration = Duration::from_millis(100);

/// `CLOCK_MONOTONIC` in nanoseconds, the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// The ring buffer map, readable through the runtime.
pub struct Ring {
    fd: AsyncFd<RingBuf<MapData>>,
}

impl Ring {
    /// Register the map with the runtime.
    pub fn new(ring: RingBuf<MapData>) -> std::io::Result<Ring> {
        // SAFETY: the RingBuf owns its map fd, which stays open and
        // unchanged until the AsyncFd (and with it the RingBuf) drops.
        let fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }?;
        Ok(Ring { fd })
    }

    /// The next record, if any.
    pub fn next_record(&mut self) -> Option<RingBufItem<'_>> {
        self.fd.get_mut().next()
    }

    /// The map's file descriptor (for logs).
    pub fn raw_fd(&self) -> i32 {
        self.fd.get_ref().as_raw_fd()
    }
}

/// What the loop drives: drain the ring on wake-ups and polls, and do the
/// periodic work once a second.
pub(crate) trait RingLoop {
    fn ring(&mut self) -> &mut Ring;
    /// Hand on everything in the ring; false when the consumer went away.
    async fn forward(&mut self) -> bool;
    /// The once-a-second work; false when the consumer went away.
    async fn tick(&mut self) -> bool;
}

/// Why [`run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// `stop` resolved (the caller drains what is left).
    Stopped,
    /// The consumer went away (e.g. stdout closed).
    ConsumerGone,
}

/// Drain the ring on wake-ups (coalesced to [`RING_POLL`]) and every
/// [`RING_SAFETY_POLL`], tick once a second, until `stop` resolves.
pub(crate) async fn run<L: RingLoop>(
    l: &mut L,
    stop: impl Future<Output = ()>,
) -> std::io::Result<Ended> {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poll = tokio::time::interval(RING_SAFETY_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_drain = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = &mut stop => return Ok(Ended::Stopped),
            // Records whose wake-up was missed are picked up here at
            // the latest.
            _ = poll.tick() => {
                last_drain = tokio::time::Instant::now();
                if !l.forward().await {
                    return Ok(Ended::ConsumerGone);
                }
            }
            _ = tick.tick() => {
                if !l.tick().await {
                    return Ok(Ended::ConsumerGone);
                }
            }
            guard = l.ring().fd.readable_mut() => {
                let mut guard = guard?;
                guard.clear_ready();
                drop(guard);
                // Coalesce: records arriving while we wait find the
                // ring non-empty and wake nobody.
                let due = last_drain + RING_POLL;
                tokio::select! {
                    () = &mut stop => return Ok(Ended::Stopped),
                    () = tokio::time::sleep_until(due) => {}
                }
                last_drain = tokio::time::Instant::now();
                poll.reset();
                if !l.forward().await {
                    return Ok(Ended::ConsumerGone);
                }
            }
        }
    }
}
