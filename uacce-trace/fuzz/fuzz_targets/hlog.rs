//! HdrHistogram interval logs: `targets::text_recording`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| {
    targets::text_recording(data, true);
});
