//! Raw recordings (`.utrace`): `targets::raw_recording`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| {
    targets::raw_recording(data);
});
