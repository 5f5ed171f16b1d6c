//! Latency histograms: the one histogram configuration the tool uses
//! (HdrHistogram, 3 significant digits, auto-resizing, values in ns) and
//! the summary statistics every output shows. Pure; no aya, tokio, ratatui,
//! no clock.

use hdrhistogram::Histogram;

/// A latency histogram, values in nanoseconds.
pub type Hist = Histogram<u64>;

/// Significant decimal digits kept by every histogram (0.1 % value error).
pub const SIGFIG: u8 = 3;

/// Quantiles every output reports, with their column names.
pub const QUANTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

/// Where summary mode's last latency bucket (2^37 ns and up) is recorded:
/// its lower bound, since it has no upper one.
pub const SUMMARY_CEILING_NS: u64 = 1 << (uacce_trace_common::summary::MAX_EXP + 1);

/// A new, empty, auto-resizing histogram.
pub fn new_hist() -> Hist {
    match Histogram::new(SIGFIG) {
        Ok(h) => h,
        // `Histogram::new` fails only for sigfig > 5.
        Err(e) => unreachable!("a histogram with {SIGFIG} significant digits: {e}"),
    }
}

/// Record one latency; values beyond the trackable range saturate.
pub fn record(h: &mut Hist, value_ns: u64) {
    record_n(h, value_ns, 1);
}

/// Record `count` samples of one value; the histogram grows as needed and
/// saturates only beyond what it can represent.
pub fn record_n(h: &mut Hist, value_ns: u64, count: u64) {
    if h.record_n(value_ns, count).is_err() {
        h.saturating_record_n(value_ns, count);
    }
}

/// Add `src` into `dst`. Both are auto-resizing, so this cannot fail for
/// histograms made by [`new_hist`]; for decoded histograms with a smaller
/// range the values are re-recorded one bucket at a time, saturating.
pub fn merge(dst: &mut Hist, src: &Hist) {
    if dst.add(src).is_err() {
        for v in src.iter_recorded() {
            record_n(dst, v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// Summary statistics of one histogram (all values in ns).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Summary {
    /// Summarise `h`; all zero when it is empty.
    pub fn of(h: &Hist) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    /// The value of a metric by its name (`count`, `min`, `mean`, `p50`,
    /// `p90`, `p99`, `p99.9`, `max`).
    pub fn metric(&self, name: &str) -> Option<f64> {
        Some(match name {
            "count" => self.count as f64,
            "min" => self.min as f64,
            "mean" => self.mean,
            "p50" => self.p50 as f64,
            "p90" => self.p90 as f64,
            "p99" => self.p99 as f64,
            "p99.9" => self.p999 as f64,
            "max" => self.max as f64,
            _ => return None,
        })
    }
}

/// Names accepted by [`Summary::metric`].
pub const METRICS: [&str; 8] = ["count", "min", "mean", "p50", "p90", "p99", "p99.9", "max"];

/// Non-empty buckets as `(highest equivalent value, count)`, ascending.
pub fn buckets(h: &Hist) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Rebuild a histogram from [`buckets`] output.
pub fn from_buckets(buckets: &[(u64, u64)]) -> Hist {
    let mut h = new_hist();
    for &(v, c) in buckets {
        record_n(&mut h, v, c);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_buckets_round_trip() {
        let mut h = new_hist();
        for v in [100, 200, 300, 40_000, 5_000_000] {
            record(&mut h, v);
        }
        let s = Summary::of(&h);
        assert_eq!(s.count, 5);
        assert_eq!(s.min, 100);
        assert!(s.max >= 5_000_000 && s.max < 5_010_000);
        let back = from_buckets(&buckets(&h));
        assert_eq!(buckets(&back), buckets(&h));
        assert_eq!(Summary::of(&back).p50, s.p50);
        assert_eq!(Summary::of(&new_hist()), Summary::default());
        assert_eq!(s.metric("p99.9"), Some(s.p999 as f64));
        assert_eq!(s.metric("p42"), None);
    }
}
