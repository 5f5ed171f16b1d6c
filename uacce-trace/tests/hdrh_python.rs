//! An independent implementation reads our hlog: the `hdrhistogram` package
//! from PyPI (module `hdrh`) decodes every row, and its counts, min, max,
//! percentiles and buckets must equal ours. Skips, saying why, when
//! `python3 -c 'import hdrh'` fails (`cargo xtask setup` installs it: a
//! failure under `CI=true`).
//!
//! Percentiles: the Java reference and the Rust crate take the value at rank
//! ceil(q·n); the Python package rounds (floor(q·n + 0.5)). Python's own
//! `get_value_at_percentile` must match ours wherever the two ranks agree;
//! the Java rule applied to Python's decoded counts must match always.

mod common;

use std::{fs, path::Path, process::Command};

use common::{before, record, scratch, Format, START_UNIX};
use uacce_trace::{
    formats::{self, RunMeta},
    model::{hist, Aggregator, Kind, ModelConfig, ProcId, SeriesKey, Summary, WindowSeries},
};

const SCRIPT: &str = r#"
import json, math, sys
from hdrh.log import HistogramLogReader
from hdrh.histogram import HdrHistogram
def java_rule(h, q):
    target = max(1, math.ceil(q * h.get_total_count()))
    total = 0
    for i in h.get_recorded_iterator():
        total += i.count_at_value_iterated_to
        if total >= target:
            return i.value_iterated_to
    return 0
reader = HistogramLogReader(sys.argv[1], HdrHistogram(1, 3600 * 10**9, 3))
rows = []
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    rows.append({
        "tag": h.get_tag(),
        "start_ms": h.get_start_time_stamp(),
        "count": h.get_total_count(),
        "min": h.get_min_value(),
        "max": h.get_max_value(),
        "native": [h.get_value_at_percentile(p) for p in (50.0, 90.0, 99.0, 99.9)],
        "java": [java_rule(h, q) for q in (0.5, 0.9, 0.99, 0.999)],
        "buckets": [[i.value_iterated_to, i.count_at_value_iterated_to]
                    for i in h.get_recorded_iterator()],
    })
print(json.dumps(rows))
"#;

fn hdrh_missing() -> Option<String> {
    match Command::new("python3").args(["-c", "import hdrh"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => {
            Some(format!(
            "python3 cannot import hdrh ({}); `pip install hdrhistogram` or `cargo xtask setup`",
            String::from_utf8_lossy(&o.stderr).trim().lines().last().unwrap_or("")
        ))
        }
        Err(e) => Some(format!("no python3: {e}")),
    }
}

fn python_rows(dir: &Path, hlog: &Path) -> Vec<serde_json::Value> {
    let script = dir.join("read_hlog.py");
    fs::write(&script, SCRIPT).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new("python3")
        .arg(&script)
        .arg(hlog)
        .output()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("python output: {e}"))
}

/// Compare python's view of each row with the same rows read by us.
fn check(dir: &Path, hlog: &Path) -> usize {
    let py = python_rows(dir, hlog);
    let text = fs::read_to_string(hlog).unwrap_or_else(|e| panic!("{e}"));
    let ours = formats::hlog::read(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(py.len(), ours.series.len(), "row count");
    let start = ours.start_unix_s.unwrap_or(0.0);
    let mut agreeing = 0;
    for (p, o) in py.iter().zip(&ours.series) {
        let s = Summary::of(&o.hist);
        let tag = &o.tag.tag;
        let u = |k: &str| {
            p[k].as_u64()
                .unwrap_or_else(|| panic!("{tag}: {k} = {}", p[k]))
        };
        assert_eq!(p["tag"].as_str(), Some(tag.as_str()));
        assert_eq!(u("count"), s.count, "{tag} count");
        assert_eq!(u("min"), s.min, "{tag} min");
        assert_eq!(u("max"), s.max, "{tag} max");
        let ours = [s.p50, s.p90, s.p99, s.p999];
        let java: Vec<u64> =
            serde_json::from_value(p["java"].clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            java, ours,
            "{tag}: percentiles (ceil rank) of python's decode"
        );
        let native: Vec<u64> =
            serde_json::from_value(p["native"].clone()).unwrap_or_else(|e| panic!("{e}"));
        for (i, q) in [0.5f64, 0.9, 0.99, 0.999].into_iter().enumerate() {
            let n = s.count as f64;
            let (ceil_rank, round_rank) = ((q * n).ceil(), (q * n + 0.5).floor());
            if ceil_rank == round_rank {
                assert_eq!(native[i], ours[i], "{tag}: python's own p{}", q * 100.0);
                agreeing += 1;
            }
        }
        let buckets: Vec<(u64, u64)> =
            serde_json::from_value(p["buckets"].clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(buckets, hist::buckets(&o.hist), "{tag} buckets");
        let start_ms = p["start_ms"].as_f64().unwrap_or(-1.0);
        assert!(
            (start_ms - (start + o.start_s) * 1000.0).abs() < 0.5,
            "{tag}: start {start_ms} ms"
        );
    }
    assert!(agreeing > 0, "no percentile compared with python's own");
    py.len()
}

#[test]
fn python_hdrh_decodes_the_synthetic_run() {
    if let Some(why) = hdrh_missing() {
        common::skip(common::Lack::Setup, &why);
        return;
    }
    let dir = scratch("hdrh");
    let hlog = dir.join("before.hlog");
    record(&hlog, Format::Hlog, &before(), "fio");
    let rows = check(&dir, &hlog);
    assert!(rows >= 10, "{rows} rows");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn python_hdrh_decodes_wide_ranges() {
    if let Some(why) = hdrh_missing() {
        common::skip(common::Lack::Setup, &why);
        return;
    }
    let dir = scratch("hdrh-wide");
    // Values from 0 ns to an hour, dense and sparse, in two intervals.
    let mut agg = Aggregator::new(ModelConfig {
        start_ns: Some(0),
        ..Default::default()
    });
    drop(agg.take_interval(0));
    let mut windows = Vec::new();
    let mut x: u64 = 12345;
    for interval in 0..2u64 {
        let mut h = hist::new_hist();
        for i in 0..20_000u64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let v = match i % 5 {
                0 => i,
                1 => (x >> 40) % 1_000_000,
                2 => 1 << ((x >> 58) % 42),
                3 => 3_600_000_000_000 - (x >> 30) % 1000,
                _ => 100_000 + (x >> 50),
            };
            hist::record(&mut h, v);
        }
        let mut win = agg.take_interval((interval + 1) * 5_000_000_000);
        win.series = vec![WindowSeries {
            key: SeriesKey {
                kind: Kind::Iopf,
                proc_id: ProcId::Pid(7),
                comm: "wide".into(),
                device: "dev".into(),
            },
            hist: h,
            errors: 0,
        }];
        windows.push(win);
    }
    let meta = RunMeta {
        start_unix_ns: START_UNIX,
        start_mono_ns: 0,
        kernel: "k".into(),
        plan: "p".into(),
        command: String::new(),
    };
    let bytes = formats::render(Format::Hlog, &meta, &windows).unwrap_or_else(|e| panic!("{e}"));
    let hlog = dir.join("wide.hlog");
    fs::write(&hlog, bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(check(&dir, &hlog), 2);
    let _ = fs::remove_dir_all(&dir);
}
