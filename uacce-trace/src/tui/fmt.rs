//! Compact number formatting for the `top` screen: latencies, counts, rates,
//! sizes and addresses in at most five or six columns. Pure string
//! functions; no terminal, no clock.

/// A latency in at most 5 columns: `850ns`, `1.2us`, `850us`, `1.2ms`,
/// `850ms`, `1.2s`, `85s`, `14m`; `-` for none.
pub fn lat(ns: u64) -> String {
    if ns == 0 {
        return "-".into();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    for (scale, unit) in [(1e3, "us"), (1e6, "ms"), (1e9, "s")] {
        let v = ns as f64 / scale;
        // Below a thousand once rounded: this unit; else the next one.
        if v.round() < 1000.0 {
            return one_decimal_below_ten(v, unit);
        }
    }
    let m = ns as f64 / 60e9;
    if m.round() < 1000.0 {
        return format!("{:.0}m", m);
    }
    let h = ns as f64 / 3600e9;
    if h.round() < 1000.0 {
        return format!("{h:.0}h");
    }
    let d = ns as f64 / 86_400e9;
    if d.round() < 1000.0 {
        format!("{d:.0}d")
    } else {
        ">999d".into()
    }
}

/// `1.2us` below 9.95, `12us` above.
fn one_decimal_below_ten(v: f64, unit: &str) -> String {
    if v < 9.95 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.0}{unit}")
    }
}

/// A count in at most 5 columns: `12345`, `123k`, `1.2M`, `12G`.
pub fn count(n: u64) -> String {
    if n < 100_000 {
        return n.to_string();
    }
    scaled(n as f64)
}

fn scaled(v: f64) -> String {
    for (scale, unit) in [(1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T")] {
        let x = v / scale;
        if x.round() < 1000.0 {
            return one_decimal_below_ten(x, unit);
        }
    }
    format!("{:.0}P", v / 1e15)
}

/// A rate per second in at most 5 columns: `0`, `0.5`, `12.5`, `1234`,
/// `123k`.
pub fn rate(per_s: f64) -> String {
    if !per_s.is_finite() || per_s <= 0.0 {
        return "0".into();
    }
    if per_s < 0.05 {
        return "<0.1".into();
    }
    if per_s < 99.95 {
        return format!("{per_s:.1}");
    }
    if per_s.round() < 100_000.0 {
        return format!("{per_s:.0}");
    }
    scaled(per_s)
}

/// A byte size: `4K`, `64K`, `1.5M`, `2G`.
pub fn bytes(b: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (scale, unit) in UNITS {
        if b >= scale {
            let v = b as f64 / scale as f64;
            return if b.is_multiple_of(scale) || v >= 9.95 {
                format!("{v:.0}{unit}")
            } else {
                format!("{v:.1}{unit}")
            };
        }
    }
    format!("{b}B")
}

/// A grid value of a histogram row label: `200ns`, `1us`, `20ms`, `1s`,
/// `1.5us` (values are multiples of a power of ten, so integers mostly).
pub fn grid(ns: u64) -> String {
    let (scale, unit) = match ns {
        0..=999 => return format!("{ns}ns"),
        1_000..=999_999 => (1e3, "us"),
        1_000_000..=999_999_999 => (1e6, "ms"),
        _ => (1e9, "s"),
    };
    let v = ns as f64 / scale;
    if v.fract() == 0.0 {
        format!("{v:.0}{unit}")
    } else {
        format!("{v}{unit}")
    }
}

/// Elapsed time as `45s`, `12m03s`, `3h02m`.
pub fn elapsed(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// An interval length: `250ms`, `1s`, `2.5s`.
pub fn interval(ns: u64) -> String {
    if ns < 1_000_000_000 {
        format!("{}ms", ns / 1_000_000)
    } else if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else {
        format!("{:.1}s", ns as f64 / 1e9)
    }
}

/// A PCI-style device name without the usual `0000:` domain.
pub fn device(name: &str) -> &str {
    name.strip_prefix("0000:").unwrap_or(name)
}

/// An address in hex, `0x7f0000001000`.
pub fn addr(a: u64) -> String {
    format!("{a:#x}")
}

/// Truncate to `width` characters, marking the cut with `…`.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// Word-wrap `text` into lines of at most `width` characters, at most
/// `max_lines` of them (the last one cut with `…` when text is left).
pub fn wrap(text: &str, width: usize, max_lines: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let need = cur.chars().count() + usize::from(!cur.is_empty()) + word.chars().count();
        if !cur.is_empty() && need > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    if lines.len() > max_lines.max(1) {
        lines.truncate(max_lines.max(1));
        if let Some(last) = lines.last_mut() {
            let cut: String = last.chars().take(width.saturating_sub(1)).collect();
            *last = format!("{cut}…");
        }
    }
    lines.into_iter().map(|l| fit(&l, width)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fit_five_columns() {
        let cases = [
            (0, "-"),
            (850, "850ns"),
            (999, "999ns"),
            (1_000, "1.0us"),
            (1_234, "1.2us"),
            (9_949, "9.9us"),
            (9_960, "10us"),
            (999_400, "999us"),
            (999_600, "1.0ms"),
            (12_300_000, "12ms"),
            (999_999_999, "1.0s"),
            (1_500_000_000, "1.5s"),
            (85_000_000_000, "85s"),
            (999_000_000_000, "999s"),
            (999_600_000_000, "17m"),
        ];
        for (ns, want) in cases {
            assert_eq!(lat(ns), want, "{ns}");
        }
        for shift in 0..64 {
            for v in [1u64 << shift, (1u64 << shift) - 1, (1u64 << shift) + 7] {
                assert!(lat(v).chars().count() <= 5, "{v} → {}", lat(v));
            }
        }
    }

    #[test]
    fn counts_and_rates_fit_five_columns() {
        assert_eq!(count(99_999), "99999");
        assert_eq!(count(100_000), "100k");
        assert_eq!(count(999_499), "999k");
        assert_eq!(count(999_500), "1.0M");
        assert_eq!(count(12_345_678), "12M");
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(0.01), "<0.1");
        assert_eq!(rate(12.34), "12.3");
        assert_eq!(rate(99.96), "100");
        assert_eq!(rate(123_456.0), "123k");
        for shift in 0..64 {
            let v = 1u64 << shift;
            assert!(count(v).chars().count() <= 5, "{v} → {}", count(v));
            assert!(
                rate(v as f64).chars().count() <= 5,
                "{v} → {}",
                rate(v as f64)
            );
        }
    }

    #[test]
    fn sizes_grids_and_names() {
        assert_eq!(bytes(4096), "4K");
        assert_eq!(bytes(3 << 19), "1.5M");
        assert_eq!(bytes(100), "100B");
        assert_eq!(grid(200), "200ns");
        assert_eq!(grid(20_000), "20us");
        assert_eq!(grid(1_000_000_000), "1s");
        assert_eq!(elapsed(3_723_000_000_000), "1h02m");
        assert_eq!(elapsed(65_000_000_000), "1m05s");
        assert_eq!(interval(250_000_000), "250ms");
        assert_eq!(interval(2_000_000_000), "2s");
        assert_eq!(device("0000:00:02.0"), "00:02.0");
        assert_eq!(device("wq0.0"), "wq0.0");
        assert_eq!(fit("qemu-system-x86", 8), "qemu-sy…");
        assert_eq!(fit("fio", 8), "fio");
        assert_eq!(wrap("aa bb cc dd", 5, 3), ["aa bb", "cc dd"]);
        assert_eq!(wrap("aa bb cc dd ee ff", 5, 2), ["aa bb", "cc d…"]);
        assert_eq!(wrap("abcdefgh", 4, 2), ["abc…"]);
    }
}
