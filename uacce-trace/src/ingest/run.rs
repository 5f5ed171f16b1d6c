//! What a run is: its metadata ([`RunMeta`], the header of a raw recording
//! and what every writer stamps on its output) and the clock a consumer
//! reads ([`Clock`]: the monotonic clock live, event time in a replay).
//! Imports only the kernel layer (for the clock) and nothing async.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::kernel::ring::monotonic_ns;

/// What a run is: when it started (on both clocks), where its events come
/// from. The header of a raw recording; the writers' view of the run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunMeta {
    /// Wall clock at the start, ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// CLOCK_MONOTONIC at the same moment (event timestamps' clock):
    /// interval times are relative to it.
    pub start_mono_ns: u64,
    /// Kernel release the events came from.
    pub kernel: String,
    /// Hook plan summary.
    pub plan: String,
    /// The traced command line, empty when the whole system was traced.
    pub command: String,
}

impl RunMeta {
    /// A run starting now, stamped on both clocks.
    pub fn starting_now(kernel: String, plan: String, command: String) -> RunMeta {
        RunMeta {
            start_unix_ns: unix_ns(),
            start_mono_ns: monotonic_ns(),
            kernel,
            plan,
            command,
        }
    }

    /// Seconds from the run start to monotonic time `ts_ns`.
    pub fn offset_s(&self, ts_ns: u64) -> f64 {
        ts_ns.saturating_sub(self.start_mono_ns) as f64 / 1e9
    }
}

/// Wall clock now, ns since the Unix epoch.
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The time a consumer of events lives in.
#[derive(Clone, Debug)]
pub enum Clock {
    /// CLOCK_MONOTONIC, the clock of live event timestamps.
    Monotonic,
    /// Event time of a replay.
    EventTime {
        /// Events arrive at the recorded pace.
        paced: bool,
        /// The recording's start.
        start_ns: u64,
        /// First event time and when it arrived (recorded pace).
        anchor: Option<(u64, Instant)>,
        /// The whole recording is in.
        finished: bool,
    },
}

impl Clock {
    /// The replay clock of a recording that started at `start_ns`.
    pub fn event_time(start_ns: u64, paced: bool) -> Clock {
        Clock::EventTime {
            paced,
            start_ns,
            anchor: None,
            finished: false,
        }
    }

    /// Whether this is the live (monotonic) clock.
    pub fn is_monotonic(&self) -> bool {
        matches!(self, Clock::Monotonic)
    }

    /// Now, given the latest event time seen (used by a replay: as fast as
    /// possible, or finished, the time is the latest event's; at the
    /// recorded pace it runs on from the first event's arrival).
    pub fn now(&self, latest_event_ns: u64) -> u64 {
        match self {
            Clock::Monotonic => monotonic_ns(),
            Clock::EventTime {
                paced,
                start_ns,
                anchor,
                finished,
            } => {
                if *finished || !*paced {
                    return latest_event_ns.max(*start_ns);
                }
                match anchor {
                    Some((ts, at)) => ts
                        .saturating_add(u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX)),
                    None => *start_ns,
                }
            }
        }
    }

    /// Whether the clock runs: live always, a replay once its first batch
    /// arrived (at the recorded pace: time runs on from then).
    pub fn anchored(&self) -> bool {
        match self {
            Clock::Monotonic => true,
            Clock::EventTime { anchor, .. } => anchor.is_some(),
        }
    }

    /// Whether the passing of time closes intervals (live, or a replay at
    /// the recorded pace until it is all in); else only event time does.
    pub fn ticks_close_intervals(&self) -> bool {
        match self {
            Clock::Monotonic => true,
            Clock::EventTime {
                paced, finished, ..
            } => *paced && !*finished,
        }
    }

    /// A batch whose first event is at `first_ts` arrived: the first one
    /// anchors a replay's clock. Returns whether it did.
    pub fn arrived(&mut self, first_ts: u64) -> bool {
        if let Clock::EventTime {
            anchor: anchor @ None,
            ..
        } = self
        {
            *anchor = Some((first_ts, Instant::now()));
            return true;
        }
        false
    }

    /// The whole recording is in (a replay's time stops at its last event).
    pub fn finish(&mut self) {
        if let Clock::EventTime { finished, .. } = self {
            *finished = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_clock() {
        let mut c = Clock::event_time(100, false);
        assert_eq!(c.now(50), 100);
        assert_eq!(c.now(150), 150);
        assert!(!c.ticks_close_intervals());
        let mut p = Clock::event_time(100, true);
        assert_eq!(p.now(500), 100);
        assert!(p.ticks_close_intervals());
        assert!(p.arrived(200));
        assert!(!p.arrived(300));
        assert!(p.now(0) >= 200);
        p.finish();
        assert_eq!(p.now(400), 400);
        assert!(!p.ticks_close_intervals());
        assert!(!c.arrived(1) || matches!(c, Clock::EventTime { .. }));
        c.finish();
        assert!(Clock::Monotonic.ticks_close_intervals());
    }

    #[test]
    fn offsets() {
        let m = RunMeta {
            start_mono_ns: 1_000_000_000,
            ..Default::default()
        };
        assert_eq!(m.offset_s(3_500_000_000), 2.5);
        assert_eq!(m.offset_s(0), 0.0);
    }
}
