//! Raw recordings (`.utrace`): the streaming reader and the replay batcher,
//! and what `report`, `record --replay` and `serve --replay` do with a
//! recording that reads fine (the aggregator, the report, the exports).

#![no_main]

use libfuzzer_sys::fuzz_target;
use uacce_trace::{
    analysis,
    export::{self, Format},
    model::{Aggregator, ModelConfig},
    rawfile::{RawReader, Replay, ReplayItem},
};

fuzz_target!(|data: &[u8]| {
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
            let _ = export::render(format, &header.run_meta(), &windows);
        }
    }
    // The off-line path: load, report.
    if let Ok(loaded) = analysis::load_bytes("fuzz.utrace", data) {
        let _ = analysis::report::render_all(&[loaded]);
    }
});
