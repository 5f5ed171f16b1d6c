//! Ring-buffer records: `targets::decode_records`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| {
    targets::decode_records(data);
});
