//! Golden files of every output: hlog, json, csv, raw, the report of each
//! input kind and the comparison (text and JSON), byte for byte, from the
//! synthetic runs in `common`. Re-bless with UACCE_TRACE_BLESS=1.
//!
//! Also: writing twice gives the same bytes, and every format read back
//! holds the same histograms as every other.

mod common;

use std::fs;

use common::{after, before, check_golden, record, scratch};
use uacce_trace::{
    analysis::{self, compare},
    formats::Format,
    model::hist,
};

const FORMATS: [(Format, &str); 4] = [
    (Format::Hlog, "hlog"),
    (Format::Json, "json"),
    (Format::Csv, "csv"),
    (Format::Raw, "utrace"),
];

fn outputs(run: &str) -> Vec<(String, Vec<u8>)> {
    let dir = scratch(&format!("golden-{run}"));
    let items = if run == "before" { before() } else { after() };
    let out = FORMATS
        .iter()
        .map(|(f, ext)| {
            let name = format!("{run}.{ext}");
            let path = dir.join(&name);
            record(&path, *f, &items, "fio --name=bench");
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, bytes)
        })
        .collect();
    let _ = fs::remove_dir_all(&dir);
    out
}

#[test]
fn every_format_matches_its_golden_file() {
    for run in ["before", "after"] {
        let first = outputs(run);
        let second = outputs(run);
        assert_eq!(first, second, "output is not deterministic");
        for (name, bytes) in &first {
            check_golden(name, bytes);
        }
    }
}

#[test]
fn formats_agree_with_each_other() {
    let outs = outputs("before");
    let loaded: Vec<_> = outs
        .iter()
        .filter(|(n, _)| !n.ends_with(".csv"))
        .map(|(n, b)| analysis::load_bytes(n, b).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let merged: Vec<_> = loaded.iter().map(|l| l.recording.merged()).collect();
    for (l, m) in loaded.iter().zip(&merged).skip(1) {
        assert_eq!(
            m.keys().collect::<Vec<_>>(),
            merged[0].keys().collect::<Vec<_>>(),
            "{}",
            l.name
        );
        for (tag, s) in m {
            let h0 = &merged[0][tag].hist;
            assert_eq!(
                hist::buckets(&s.hist),
                hist::buckets(h0),
                "{} {tag}",
                l.name
            );
        }
        // Every reason counts: 2 ring-buffer losses + 1 unanswered IOPF.
        assert_eq!(l.recording.dropped, Some(3), "{}", l.name);
        assert_eq!(l.recording.unanswered, Some(1), "{}", l.name);
        assert_eq!(
            l.recording.losses.as_ref().map(|x| x.breakdown()),
            Some("ring_full_pin 2, iopf_unanswered 1".into()),
            "{}",
            l.name
        );
    }
}

#[test]
fn reports_match_their_golden_files() {
    for run in ["before", "after"] {
        for (name, bytes) in outputs(run) {
            if name.ends_with(".csv") {
                continue;
            }
            let loaded = analysis::load_bytes(&name, &bytes).unwrap_or_else(|e| panic!("{e}"));
            let text = analysis::report::render(&loaded);
            check_golden(&format!("report-{name}.txt"), text.as_bytes());
        }
    }
}

#[test]
fn comparisons_match_their_golden_files() {
    let b = outputs("before");
    let a = outputs("after");
    let load = |v: &[(String, Vec<u8>)], ext: &str| {
        let (n, bytes) = v
            .iter()
            .find(|(n, _)| n.ends_with(ext))
            .unwrap_or_else(|| panic!("no {ext}"));
        analysis::load_bytes(n, bytes).unwrap_or_else(|e| panic!("{e}"))
    };
    let o = compare::CompareOptions {
        allow_drops: false,
        ..Default::default()
    };
    // Pinning eliminated fio's faults: goal met.
    let c = compare::compare(&load(&b, ".hlog"), &load(&a, ".hlog"), &o);
    assert!(c.goal_met, "{:?}", c.reasons);
    check_golden(
        "compare-before-after.txt",
        compare::render_text(&c).as_bytes(),
    );
    check_golden(
        "compare-before-after.json",
        format!("{}\n", compare::render_json(&c)).as_bytes(),
    );
    // The other way round it got worse: not met.
    let c = compare::compare(&load(&a, ".json"), &load(&b, ".utrace"), &o);
    assert!(!c.goal_met);
    assert_eq!(c.exit_code(), compare::EXIT_NOT_MET);
    check_golden(
        "compare-after-before.txt",
        compare::render_text(&c).as_bytes(),
    );
}
