//! The bodies of the fuzz targets, shared by the libFuzzer binaries
//! (`fuzz_targets/*.rs`, `cargo fuzz`) and the stable-Rust smoke test
//! (`uacce-trace/tests/fuzz_smoke.rs`), so both exercise the same paths.
//! Included with `#[path]`; it only depends on the `uacce_trace` library.

use uacce_trace::{
    analysis,
    commands::serve::{self, metrics},
    commands::trace,
    formats::{self, Format},
    ingest::attribution::Attributor,
    ingest::decode::{DecodeContext, Decoder},
    ingest::rawfile::{RawReader, Replay, ReplayItem},
    model::{Aggregator, ModelConfig},
};

/// Ring-buffer records → events (`decode::Decoder`, IOPF pairing
/// included), then what the live
/// path does with them: attribution, the aggregator, the `trace` lines,
/// the Prometheus exposition. The first byte picks the decode context; the
/// rest is one record, or several records cut at `size` fields when they
/// parse.
pub fn decode_records(data: &[u8]) {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let mut decoder = Decoder::new(DecodeContext {
        foll_longterm: (sel & 1 == 1).then(|| 1u32 << (sel >> 3)),
    });
    let mut attributor = Attributor::new();
    let mut agg = Aggregator::new(ModelConfig {
        max_processes: 4,
        max_grants: 8,
        max_fault_blocks: 8,
        idle_after_ns: 1_000,
        ..Default::default()
    });
    // Records as the ring buffer hands them out: one per item. Use the
    // header's size field to split, when it is sane.
    while !rest.is_empty() {
        let size = rest
            .get(4..8)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .filter(|&s| s >= 8 && s <= rest.len())
            .unwrap_or(rest.len());
        let (record, tail) = rest.split_at(size);
        rest = tail;
        if let Ok(Some(mut ev)) = decoder.decode(record) {
            attributor.process(&mut ev);
            let _ = trace::json_line(&ev);
            let _ = trace::human_line(&ev);
            agg.ingest(&ev);
            if sel & 2 == 2 {
                let _ = agg.take_interval(ev.ts_ns());
            }
        }
    }
    let snap = agg.snapshot(agg.latest_ns());
    // The input also picks serve's labels (each choice of pid, comm,
    // device, cgroup) and a small or a roomy series cap.
    let pick = |bit: u8| sel & bit == bit;
    let labels = serve::labels::LabelSet {
        pid: !pick(4),
        comm: !pick(8),
        device: !pick(16),
        cgroup: pick(32),
    };
    let cgroups = std::collections::HashMap::from([(1u32, "docker-0123456789ab".to_string())]);
    let mut cap = serve::labels::SeriesCap::new(if pick(64) { 1 } else { 1000 });
    let _ = metrics::render(
        &metrics::Exposition {
            snapshot: &snap,
            mode: "live",
            kernel: "fuzz",
            replay_complete: None,
            self_stats: None,
            bpf: None,
            labels,
            cgroups: &cgroups,
        },
        &mut cap,
    );
}

/// Raw recordings (`.utrace`): the streaming reader and the replay
/// batcher, and what `report`, `record --replay` and `serve --replay` do
/// with a recording that reads fine (the aggregator, the report, the
/// exports).
pub fn raw_recording(data: &[u8]) {
    // The replay path: batches and marks, intervals closed by event time.
    if let Ok((reader, header)) = RawReader::open(data) {
        let mut agg = Aggregator::new(ModelConfig {
            start_ns: Some(header.start_mono_ns),
            max_processes: 4,
            max_grants: 8,
            max_fault_blocks: 8,
            ..Default::default()
        });
        let mut windows = Vec::new();
        for item in Replay::new(reader) {
            match item {
                Ok(ReplayItem::Batch { events, .. }) => agg.ingest_all(&events),
                Ok(ReplayItem::Mark(ts)) => windows.push(agg.take_interval(ts)),
                Err(_) => break,
            }
        }
        windows.push(agg.take_interval(agg.latest_ns()));
        for format in [Format::Hlog, Format::Json, Format::Csv] {
            let _ = formats::render(format, &header, &windows);
        }
    }
    // The off-line path: load, report.
    if let Ok(loaded) = analysis::load_bytes("fuzz.utrace", data) {
        let _ = analysis::report::render_all(&[loaded]);
    }
}

/// HdrHistogram interval logs (`hlog`: base64 + DEFLATE + V2 histogram
/// decoding) or uacce-trace NDJSON recordings: the reader, then `report`
/// and `compare` on what it read.
pub fn text_recording(data: &[u8], hlog: bool) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let read = if hlog {
        formats::hlog::read(text)
    } else {
        formats::json::read(text)
    };
    if let Ok(rec) = read {
        let _ = rec.merged();
        let _ = (rec.interval_count(), rec.span_s());
    }
    let name = if hlog { "fuzz.hlog" } else { "fuzz.json" };
    if let Ok(loaded) = analysis::load_bytes(name, data) {
        let _ = analysis::report::render_all(std::slice::from_ref(&loaded));
        let c = analysis::compare::compare(&loaded, &loaded, &Default::default());
        let _ = analysis::compare::render_text(&c);
        let _ = analysis::compare::render_json(&c);
    }
}
