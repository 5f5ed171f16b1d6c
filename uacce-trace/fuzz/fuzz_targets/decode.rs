//! Ring-buffer records → events (`decode::decode`), then what the live
//! path does with them: attribution, the aggregator, the `trace` lines.
//! The first byte picks the decode context; the rest is one record, or
//! several records cut at `size` fields when they parse.

#![no_main]

use libfuzzer_sys::fuzz_target;
use uacce_trace::{
    attribution::Attributor,
    decode::{decode, DecodeContext},
    model::{Aggregator, ModelConfig},
    trace,
};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let ctx = DecodeContext {
        foll_longterm: (sel & 1 == 1).then(|| 1u32 << (sel >> 3)),
    };
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
        if let Ok(mut ev) = decode(record, &ctx) {
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
    let _ = uacce_trace::serve::metrics::render(&uacce_trace::serve::metrics::Exposition {
        snapshot: &snap,
        mode: "live",
        kernel: "fuzz",
        replay_complete: None,
        self_stats: None,
        bpf: None,
    });
});
