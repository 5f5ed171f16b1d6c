//! The fuzz targets' checks (`uacce-trace/fuzz/`) on stable Rust, bounded:
//! random bytes and mutated valid inputs through ring-record decoding, the
//! raw recording reader, and the hlog and NDJSON readers, each followed by
//! what the tool does with what it read. Nothing may panic (debug builds
//! also check integer overflow). This is the libFuzzer-free fallback that
//! runs in every `cargo test`; the coverage-guided runs are in
//! `uacce-trace/fuzz/README.md`.
//!
//! `UACCE_TRACE_FUZZ_SEEDS=DIR` writes the seed inputs of every target to
//! `DIR/<target>/` (how `uacce-trace/fuzz/seeds/` was made).

mod common;
/// The fuzz targets' bodies, shared with `uacce-trace/fuzz/fuzz_targets/`.
#[path = "../fuzz/targets.rs"]
mod targets;

use proptest::prelude::*;
use uacce_trace_common::{
    ioctl_cmd, BindRecord, IoctlRecord, IopfRecord, PinFunc, PinRecord, RecordHeader, BIND_OP_BIND,
    BIND_OP_UNBIND, HOOK_FENTRY, HOOK_KPROBE, HOOK_TRACEPOINT, KIND_BIND, KIND_IOCTL, KIND_IOPF,
    KIND_PIN, KIND_UNPIN, RECORD_VERSION,
};

fn bytes_of<T: Copy>(r: &T) -> Vec<u8> {
    // SAFETY: the wire types are repr(C) integer-only structs without
    // implicit padding (size asserts in uacce-trace-common).
    unsafe { std::slice::from_raw_parts((r as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}

fn header(kind: u16, size: usize) -> RecordHeader {
    RecordHeader {
        kind,
        version: RECORD_VERSION,
        size: size as u32,
    }
}

fn comm(s: &[u8]) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..s.len()].copy_from_slice(s);
    c
}

/// One valid record of every kind.
fn decode_seeds() -> Vec<Vec<u8>> {
    let pin = PinRecord {
        header: header(KIND_PIN, std::mem::size_of::<PinRecord>()),
        ts_ns: 1_000,
        latency_ns: 900,
        tgid: 42,
        tid: 43,
        comm: comm(b"fio"),
        start: 0x7f00_0000_0000,
        nr_pages: 16,
        ret: 16,
        gup_flags: 0x10103,
        func: PinFunc::PinUserPagesFast as u16,
        hook: HOOK_KPROBE,
        _pad: 0,
    };
    let unpin = PinRecord {
        header: header(KIND_UNPIN, std::mem::size_of::<PinRecord>()),
        func: PinFunc::UnpinUserPages as u16,
        ret: 16,
        ..pin
    };
    let mut dev_name = [0u8; 32];
    dev_name[..12].copy_from_slice(b"0000:00:02.0");
    let iopf = IopfRecord {
        header: header(KIND_IOPF, std::mem::size_of::<IopfRecord>()),
        ts_ns: 2_000,
        latency_ns: 70_000,
        addr: 0x7f00_0000_3000,
        pasid: 3,
        grpid: 9,
        perm: 3,
        flags: 1,
        reporter_tgid: 42,
        reporter_comm: comm(b"fio"),
        dev_name,
        hook: HOOK_FENTRY,
        flags2: uacce_trace_common::IOPF_REPORTER_IS_USER,
        ..Default::default()
    };
    let mut out = vec![bytes_of(&pin), bytes_of(&unpin), bytes_of(&iopf)];
    for cmd in [
        ioctl_cmd::UACCE_CMD_PIN,
        ioctl_cmd::UACCE_CMD_UNPIN,
        ioctl_cmd::MEM_CMD_PIN,
        ioctl_cmd::MEM_CMD_UNPIN,
    ] {
        out.push(bytes_of(&IoctlRecord {
            header: header(KIND_IOCTL, std::mem::size_of::<IoctlRecord>()),
            ts_ns: 3_000,
            latency_ns: 5_000,
            addr: 0x7f00_0000_0000,
            size: 65_536,
            tgid: 42,
            tid: 42,
            cmd,
            comm: comm(b"fio"),
            hook: HOOK_TRACEPOINT,
            pin_calls: 1,
            pages: 16,
            ..Default::default()
        }));
    }
    for op in [BIND_OP_BIND, BIND_OP_UNBIND] {
        out.push(bytes_of(&BindRecord {
            header: header(KIND_BIND, std::mem::size_of::<BindRecord>()),
            ts_ns: 500,
            tgid: 42,
            pasid: 3,
            op,
            hook: u32::from(HOOK_KPROBE),
            comm: comm(b"fio"),
            ..Default::default()
        }));
    }
    out
}

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(common::golden_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

// ---- seeds and mutations ----------------------------------------------

fn seeds() -> [(&'static str, Vec<Vec<u8>>); 4] {
    [
        ("decode", {
            let recs = decode_seeds();
            let mut all = vec![std::iter::once(1u8).chain(recs.concat()).collect()];
            all.extend(recs.into_iter().map(|r| [vec![3u8], r].concat()));
            all
        }),
        (
            "rawfile",
            vec![golden("before.utrace"), golden("after.utrace")],
        ),
        ("hlog", vec![golden("before.hlog"), golden("after.hlog")]),
        ("json", vec![golden("before.json"), golden("after.json")]),
    ]
}

fn run_target(name: &str, data: &[u8]) {
    match name {
        "decode" => targets::decode_records(data),
        "rawfile" => targets::raw_recording(data),
        "hlog" => targets::text_recording(data, true),
        _ => targets::text_recording(data, false),
    }
}

/// Apply `(position, byte)` edits, a cut and an insertion to `seed`.
fn mutate(seed: &[u8], edits: &[(usize, u8)], cut: usize, insert: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    if b.is_empty() {
        return insert.to_vec();
    }
    for &(at, v) in edits {
        let i = at % b.len();
        b[i] = v;
    }
    let at = cut % (b.len() + 1);
    let mut out = b[..at].to_vec();
    out.extend_from_slice(insert);
    out.extend_from_slice(&b[at..]);
    out
}

/// Not a test: writes the fuzz seeds when asked (ignored otherwise, so it
/// shows as skipped rather than as a pass that checked nothing).
#[test]
#[ignore = "writes the fuzz seeds: UACCE_TRACE_FUZZ_SEEDS=DIR cargo test --test fuzz_smoke \
            write_seeds -- --ignored"]
fn write_seeds_when_asked() {
    let Some(dir) = std::env::var_os("UACCE_TRACE_FUZZ_SEEDS") else {
        panic!("UACCE_TRACE_FUZZ_SEEDS=DIR names the folder the seeds are written to");
    };
    for (target, inputs) in seeds() {
        let d = std::path::Path::new(&dir).join(target);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i}")), input)
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
    }
}

#[test]
fn seeds_run_clean() {
    for (target, inputs) in seeds() {
        for input in &inputs {
            run_target(target, input);
        }
    }
}

#[test]
fn every_truncation_of_every_seed() {
    for (target, inputs) in seeds() {
        for input in &inputs {
            // Every cut for small inputs, a spread for large ones.
            let step = (input.len() / 512).max(1);
            for cut in (0..input.len()).step_by(step) {
                run_target(target, &input[..cut]);
            }
        }
    }
}

/// Where proptest keeps the inputs that failed, to try them first next time.
/// The default (`SourceParallel`) looks for a `lib.rs`/`main.rs` above the
/// test's source and finds none for an integration test (and says so on
/// every run); cargo runs tests in the package folder, so this is
/// `uacce-trace/tests/fuzz_smoke.proptest-regressions` (commit it when it
/// appears).
const REGRESSIONS: &str = "tests/fuzz_smoke.proptest-regressions";

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(REGRESSIONS),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes(target in 0usize..4, data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let name = ["decode", "rawfile", "hlog", "json"][target];
        run_target(name, &data);
    }

    #[test]
    fn mutated_seeds(
        target in 0usize..4,
        which in any::<usize>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
        insert in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let (name, inputs) = &seeds()[target];
        let seed = &inputs[which % inputs.len()];
        run_target(name, &mutate(seed, &edits, cut, &insert));
    }
}
