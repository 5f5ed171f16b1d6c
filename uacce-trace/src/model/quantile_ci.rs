//! Distribution-free confidence intervals for quantiles of a [`Hist`], by
//! order statistics. The one place every percentile shown with its
//! uncertainty (IOPF, pin, unpin, ioctl histograms today; request
//! histograms later) gets its interval. Pure; no aya, tokio, ratatui, no
//! clock.
//!
//! For `n` samples and quantile `q` the number `B` of samples at or below
//! the true quantile `ξ_q` is binomial(n, q) (for a continuous
//! distribution). With `X_(1) ≤ … ≤ X_(n)` the sorted samples,
//! `P(X_(l) ≤ ξ_q ≤ X_(u)) ≥ P(l ≤ B ≤ u − 1)`. The ranks are chosen equal
//! tailed: `l` is the largest rank with `P(B ≤ l − 1) ≤ α/2` and `u` the
//! smallest with `P(B ≥ u) ≤ α/2`, `α = 1 −` [`CONFIDENCE`], so the
//! interval `[X_(l), X_(u)]` covers `ξ_q` with probability at least 95 %.
//!
//! The binomial tails are computed **exactly** (summing the probability
//! mass in log space) for `n ≤` [`EXACT_MAX_N`], and with the **normal
//! approximation with a continuity correction** above it, where `n` is so
//! large that the two agree to a rank or so.
//!
//! When no rank `l ≥ 1` (or `u ≤ n`) satisfies its tail bound, that side
//! of the interval does not exist: the interval is **open** on that side
//! and the percentile rests on too few samples. A two-sided interval for
//! p99.9 needs `0.999ⁿ ≤ 0.025`, i.e. at least 3688 samples
//! ([`min_samples`] computes it for any quantile).
//!
//! Values are read from the histogram at those ranks and widened to the
//! edges of their buckets (the histogram keeps 3 significant digits), so
//! the interval also covers the histogram's own rounding.

use serde::Serialize;

use super::hist::Hist;

/// Confidence level of every interval.
pub const CONFIDENCE: f64 = 0.95;

/// The standard normal quantile at `1 − (1 − CONFIDENCE)/2` (97.5 %).
const Z: f64 = 1.959_963_984_540_054;

/// Up to this many samples the binomial tails are summed exactly.
pub const EXACT_MAX_N: u64 = 1_000_000;

/// A confidence interval for a quantile, ns; `None` on a side means open
/// there (too few samples for that bound).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Interval {
    pub low_ns: Option<u64>,
    pub high_ns: Option<u64>,
}

impl Interval {
    /// Both bounds exist.
    pub fn is_closed(&self) -> bool {
        self.low_ns.is_some() && self.high_ns.is_some()
    }

    /// This interval lies entirely below `other` (needs this one's upper
    /// and `other`'s lower bound).
    pub fn entirely_below(&self, other: &Interval) -> bool {
        matches!((self.high_ns, other.low_ns), (Some(h), Some(l)) if h < l)
    }
}

/// `α/2`: the probability allowed in each tail.
fn tail() -> f64 {
    (1.0 - CONFIDENCE) / 2.0
}

/// Smallest `k` in `0..=n` with `P(Bin(n, p) ≤ k) > a`, summing the mass
/// exactly from 0 upwards in log space; `n + 1` when none (cannot happen
/// for `a < 1`).
fn first_cdf_above(n: u64, p: f64, a: f64) -> u64 {
    if p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
    let mut ln_pmf = n as f64 * ln_q;
    let mut cdf = 0.0;
    for k in 0..=n {
        cdf += ln_pmf.exp();
        if cdf > a {
            return k;
        }
        // pmf(k+1) = pmf(k) · (n − k)/(k + 1) · p/(1 − p)
        ln_pmf += ((n - k) as f64 / (k + 1) as f64).ln() + ln_p - ln_q;
    }
    n + 1
}

/// 1-based ranks `(l, u)` of the order statistics bounding quantile `q` of
/// `n` samples at [`CONFIDENCE`]; `None` where that bound does not exist.
pub fn rank_bounds(n: u64, q: f64) -> (Option<u64>, Option<u64>) {
    if n == 0 {
        return (None, None);
    }
    if n > EXACT_MAX_N {
        return rank_bounds_normal(n, q);
    }
    rank_bounds_exact(n, q)
}

/// [`rank_bounds`] by exact binomial tails.
fn rank_bounds_exact(n: u64, q: f64) -> (Option<u64>, Option<u64>) {
    let a = tail();
    // l − 1 = the largest k with P(B ≤ k) ≤ a = first k above a, minus 1.
    let k = first_cdf_above(n, q, a);
    let low = (k >= 1).then_some(k); // l = k (the last k' ≤ a is k − 1)
                                     // P(B ≥ u) = P(n − B ≤ n − u) with n − B ~ Bin(n, 1 − q): the
                                     // largest m = n − u with P(B' ≤ m) ≤ a is first_cdf_above − 1.
    let m = first_cdf_above(n, 1.0 - q, a);
    let high = (m >= 1).then(|| n + 1 - m); // u = n − (m − 1)
    (low, high)
}

/// [`rank_bounds`] by the normal approximation with a continuity
/// correction: `P(B ≤ k) ≈ Φ((k + ½ − nq)/σ)`, `σ² = nq(1 − q)`.
fn rank_bounds_normal(n: u64, q: f64) -> (Option<u64>, Option<u64>) {
    let nf = n as f64;
    let mean = nf * q;
    let sd = (nf * q * (1.0 - q)).sqrt();
    let l = (mean + 0.5 - Z * sd).floor();
    let u = (mean + 0.5 + Z * sd).ceil();
    (
        (l >= 1.0).then_some(l as u64),
        (u <= nf).then_some(u as u64),
    )
}

/// The fewest samples with a two-sided (closed) interval for quantile `q`.
pub fn min_samples(q: f64) -> u64 {
    let mut n = 1u64;
    // Exponential then binary search: closedness is monotone in n.
    let closed = |n: u64| {
        let (l, u) = rank_bounds(n, q);
        l.is_some() && u.is_some()
    };
    while !closed(n) {
        if n > EXACT_MAX_N * 4 {
            return n;
        }
        n *= 2;
    }
    let (mut lo, mut hi) = (n / 2, n);
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if closed(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// Value (the highest equivalent of its bucket) of the `rank`-th smallest
/// sample, 1-based.
fn value_at_rank(h: &Hist, rank: u64) -> u64 {
    let mut seen = 0;
    for v in h.iter_recorded() {
        seen += v.count_at_value();
        if seen >= rank {
            return v.value_iterated_to();
        }
    }
    h.max()
}

/// The confidence interval for quantile `q` of `h`; `None` when `h` is
/// empty. The interval always contains the histogram's point value
/// `value_at_quantile(q)`.
pub fn quantile_ci(h: &Hist, q: f64) -> Option<Interval> {
    if h.is_empty() {
        return None;
    }
    let point = h.value_at_quantile(q);
    let (l, u) = rank_bounds(h.len(), q);
    Some(Interval {
        low_ns: l.map(|r| h.lowest_equivalent(value_at_rank(h, r)).min(point)),
        high_ns: u.map(|r| h.highest_equivalent(value_at_rank(h, r)).max(point)),
    })
}

/// The quantile behind a metric name of [`super::hist::METRICS`]
/// (`p50` → 0.5 …); `None` for `count`, `min`, `mean`, `max`.
pub fn metric_quantile(name: &str) -> Option<f64> {
    super::hist::QUANTILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, q)| *q)
}

/// [`quantile_ci`] of a metric by name; `None` for metrics without an
/// interval or an empty histogram.
pub fn metric_ci(h: &Hist, name: &str) -> Option<Interval> {
    quantile_ci(h, metric_quantile(name)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::hist;

    #[test]
    fn small_cases_match_binomial_tables() {
        // Median, 95 %: the textbook ranks (e.g. Conover, Table A3).
        assert_eq!(rank_bounds(5, 0.5), (None, None), "n=5 has no 95% interval");
        assert_eq!(rank_bounds(6, 0.5), (Some(1), Some(6)));
        assert_eq!(rank_bounds(10, 0.5), (Some(2), Some(9)));
        assert_eq!(rank_bounds(20, 0.5), (Some(6), Some(15)));
        assert_eq!(rank_bounds(100, 0.5), (Some(40), Some(61)));
        // p90 of 100: B ~ Bin(100, 0.9), P(B ≤ 83) = 0.0206, P(B ≤ 84) = 0.0399;
        // P(B ≥ 96) = 0.0237, P(B ≥ 95) = 0.0576.
        assert_eq!(rank_bounds(100, 0.9), (Some(84), Some(96)));
        assert_eq!(rank_bounds(0, 0.5), (None, None));
    }

    #[test]
    fn minimum_samples_are_computed() {
        // 0.999^n ≤ 0.025 ⇔ n ≥ ln 0.025 / ln 0.999 = 3687.2.
        assert_eq!(min_samples(0.999), 3688);
        assert_eq!(min_samples(0.99), 368);
        assert_eq!(min_samples(0.9), 36);
        assert_eq!(min_samples(0.5), 6);
        assert_eq!(rank_bounds(3687, 0.999).1, None);
        assert!(rank_bounds(3688, 0.999).1.is_some());
        // The example: p99.9 of 20 samples has no upper bound.
        assert_eq!(rank_bounds(20, 0.999).1, None);
    }

    #[test]
    fn ranks_are_monotone_and_bracket_the_point() {
        for q in [0.5, 0.9, 0.99, 0.999] {
            let mut prev = (0, 0);
            for n in (1..3000).step_by(7).chain([10_000, 100_000]) {
                let (l, u) = rank_bounds(n, q);
                let point = ((q * n as f64).ceil() as u64).max(1);
                if let Some(l) = l {
                    assert!(l <= point && l >= prev.0, "q={q} n={n} l={l}");
                    prev.0 = l;
                }
                if let Some(u) = u {
                    assert!(u >= point && u <= n && u >= prev.1, "q={q} n={n} u={u}");
                    prev.1 = u;
                }
            }
        }
        // Higher quantiles have higher ranks.
        let r = |q| rank_bounds(1000, q);
        assert!(r(0.5).0 < r(0.9).0 && r(0.9).0 < r(0.99).0);
    }

    #[test]
    fn normal_approximation_agrees_with_exact() {
        for (n, q) in [(200_000, 0.5), (500_000, 0.99), (1_000_000, 0.999)] {
            let (el, eu) = rank_bounds_exact(n, q);
            let (nl, nu) = rank_bounds_normal(n, q);
            let d = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| a.abs_diff(b));
            assert!(d(el, nl).is_some_and(|d| d <= 2), "{n} {q}: {el:?} {nl:?}");
            assert!(d(eu, nu).is_some_and(|d| d <= 2), "{n} {q}: {eu:?} {nu:?}");
        }
    }

    /// splitmix64: a seeded generator, enough for a simulation.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        /// Uniform in (0, 1).
        fn unit(&mut self) -> f64 {
            ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
    }

    #[test]
    fn coverage_by_simulation() {
        // Exponential latencies, mean 100 µs: ξ_q = −100 µs · ln(1 − q).
        let mut rng = Rng(0x5eed_1234);
        for (q, n, draws) in [(0.5, 200, 1000), (0.99, 1000, 1000), (0.999, 5000, 400)] {
            let truth = -100_000.0 * (1.0f64 - q).ln();
            let mut covered = 0;
            for _ in 0..draws {
                let mut h = hist::new_hist();
                for _ in 0..n {
                    hist::record(&mut h, (-100_000.0 * rng.unit().ln()) as u64);
                }
                let iv = quantile_ci(&h, q).unwrap_or_default();
                let (lo, hi) = (iv.low_ns.unwrap_or(0), iv.high_ns.unwrap_or(u64::MAX));
                assert!(iv.is_closed(), "q={q} n={n}: {iv:?}");
                if lo as f64 <= truth && truth <= hi as f64 {
                    covered += 1;
                }
            }
            let cov = covered as f64 / draws as f64;
            // At least nominal (minus simulation noise), and not uselessly
            // wide either.
            assert!((0.93..=0.995).contains(&cov), "q={q} n={n}: coverage {cov}");
        }
    }

    #[test]
    fn intervals_from_histograms() {
        let mut h = hist::new_hist();
        for v in 1..=1000u64 {
            hist::record(&mut h, v * 1000);
        }
        let iv = quantile_ci(&h, 0.5).unwrap_or_default();
        // Ranks (469, 532) of 1..=1000 µs.
        assert_eq!(rank_bounds(1000, 0.5), (Some(469), Some(532)));
        assert!(
            iv.low_ns.is_some_and(|l| (468_000..=469_000).contains(&l)),
            "{iv:?}"
        );
        assert!(
            iv.high_ns.is_some_and(|u| (532_000..=533_000).contains(&u)),
            "{iv:?}"
        );
        let p = h.value_at_quantile(0.5);
        assert!(iv.low_ns <= Some(p) && Some(p) <= iv.high_ns);
        // p99.9 of 1000 samples: open above.
        let top = quantile_ci(&h, 0.999).unwrap_or_default();
        assert!(top.low_ns.is_some() && top.high_ns.is_none(), "{top:?}");
        assert_eq!(quantile_ci(&hist::new_hist(), 0.5), None);
        assert_eq!(metric_ci(&h, "mean"), None);
        assert_eq!(metric_ci(&h, "p50"), Some(iv));
        let below = Interval {
            low_ns: Some(1),
            high_ns: Some(5),
        };
        assert!(below.entirely_below(&Interval {
            low_ns: Some(6),
            high_ns: None
        }));
        assert!(!below.entirely_below(&Interval {
            low_ns: Some(5),
            high_ns: Some(9)
        }));
        assert!(!below.entirely_below(&Interval::default()));
    }
}
