//! HdrHistogram interval logs: the reader (`export::hlog::read`, with its
//! base64 + DEFLATE + V2 histogram decoding), then `report` and `compare`
//! on what it read.

#![no_main]

use libfuzzer_sys::fuzz_target;
use uacce_trace::{analysis, export};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rec) = export::hlog::read(text) {
        let _ = rec.merged();
        let _ = (rec.interval_count(), rec.span_s());
    }
    if let Ok(loaded) = analysis::load_bytes("fuzz.hlog", data) {
        let _ = analysis::report::render_all(std::slice::from_ref(&loaded));
        let c = analysis::compare::compare(&loaded, &loaded, &Default::default());
        let _ = analysis::compare::render_text(&c);
        let _ = analysis::compare::render_json(&c);
    }
});
