//! Requests and their faults: the share of the slowest requests that had
//! an IO page fault inside them, from a request-latency histogram
//! ([`Kind::Op`](super::Kind::Op)) and the histogram of its faulted
//! requests ([`Kind::OpFaulted`](super::Kind::OpFaulted)). Pure.
//!
//! The slowest `1 − q` of the requests are the `⌈(1 − q)·n⌉` slowest (at
//! least one); both histograms share one bucket layout, so the faulted ones
//! among them are counted from the same bucket on. Requests tied with the
//! fastest of the tail (same bucket) are all in it, so the tail may hold a
//! few more requests than `(1 − q)·n`.

use super::hist::Hist;

/// The tails every output reports, with their names: the slowest 1 % and
/// 0.1 % of the requests.
pub const TAIL_QUANTILES: [(&str, f64); 2] = [("p99", 0.99), ("p99.9", 0.999)];

/// How many of the slowest requests had a fault.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TailShare {
    /// The quantile the tail starts at.
    pub q: f64,
    /// Its fastest latency (the lowest value of its fastest bucket).
    pub threshold_ns: u64,
    /// Requests in the tail.
    pub tail: u64,
    /// Of those, with at least one fault inside.
    pub faulted: u64,
}

impl TailShare {
    /// The tail at quantile `q` of `all`, and how many of it are in
    /// `faulted` (a sub-histogram of `all`); `None` when `all` is empty.
    pub fn of(all: &Hist, faulted: Option<&Hist>, q: f64) -> Option<TailShare> {
        if all.is_empty() {
            return None;
        }
        // The k slowest requests, and the requests tied with the slowest
        // of them (same bucket).
        // (1 − q)·n rounded up, without the float error of 1 − q (0.01000…009).
        let k = ((all.len() as f64 * (1.0 - q) - 1e-6).ceil() as u64).max(1);
        let buckets: Vec<(u64, u64)> = all
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        let mut tail = 0u64;
        let mut from = 0u64;
        for &(value, count) in buckets.iter().rev() {
            tail += count;
            from = all.lowest_equivalent(value);
            if tail >= k {
                break;
            }
        }
        let threshold_ns = from;
        let count_from = |h: &Hist| {
            h.iter_recorded()
                .filter(|v| v.value_iterated_to() >= from)
                .map(|v| v.count_at_value())
                .sum::<u64>()
        };
        let faulted = faulted.map_or(0, count_from).min(tail);
        Some(TailShare {
            q,
            threshold_ns,
            tail,
            faulted,
        })
    }

    /// The faulted share, 0 to 1.
    pub fn share(&self) -> f64 {
        if self.tail == 0 {
            0.0
        } else {
            self.faulted as f64 / self.tail as f64
        }
    }

    /// The 95 % Wilson score interval of the share, `(low, high)`.
    pub fn interval(&self) -> (f64, f64) {
        wilson(self.faulted, self.tail)
    }
}

/// The 95 % Wilson score interval of a proportion `k / n`; `(0, 1)` for
/// `n` 0.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let n = n as f64;
    let p = k as f64 / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let denom = 1.0 + z2 / n;
    (
        ((centre - half) / denom).max(0.0),
        ((centre + half) / denom).min(1.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::hist::{new_hist, record};

    #[test]
    fn the_slow_faulted_requests_make_the_tail() {
        let mut all = new_hist();
        let mut faulted = new_hist();
        // 990 fast clean requests, 10 slow ones of which 8 faulted.
        for _ in 0..990 {
            record(&mut all, 10_000);
        }
        for i in 0..10 {
            record(&mut all, 1_000_000);
            if i < 8 {
                record(&mut faulted, 1_000_000);
            }
        }
        let t = TailShare::of(&all, Some(&faulted), 0.99).expect("not empty");
        assert_eq!((t.tail, t.faulted), (10, 8));
        assert!((t.share() - 0.8).abs() < 1e-9);
        let (lo, hi) = t.interval();
        assert!(lo < 0.8 && hi > 0.8 && lo > 0.4 && hi <= 1.0);
        // No faulted histogram: no faulted requests.
        assert_eq!(TailShare::of(&all, None, 0.99).map(|t| t.faulted), Some(0));
        assert_eq!(TailShare::of(&new_hist(), None, 0.99), None);
    }

    #[test]
    fn wilson_bounds() {
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        let (lo, hi) = wilson(0, 100);
        assert!(lo < 1e-12 && hi > 0.0 && hi < 0.05);
        let (lo, hi) = wilson(100, 100);
        assert!(hi > 1.0 - 1e-12 && lo > 0.95);
    }
}
