#!/usr/bin/env bash
# Run every fuzz target (or those named) for a bounded time each, seeded
# from seeds/ (made by tests/fuzz_smoke.rs), keeping what libFuzzer finds in
# corpus/ and crashes in artifacts/. Needs nightly and cargo-fuzz
# (`cargo install cargo-fuzz`); builds with overflow checks (-a).
#
#   uacce-trace/fuzz/run.sh [SECONDS] [TARGET...]     default: 30 s, all four
#
# Exit status: non-zero as soon as a target crashes (the input is in
# artifacts/<target>/).
set -euo pipefail
secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode rawfile hlog json)
here=$(cd "$(dirname "$0")" && pwd)
# The library only: no eBPF object, no bpf-linker (see uacce-trace/build.rs).
export UACCE_TRACE_EBPF_STUB=1
cd "$here/.."
for t in "${targets[@]}"; do
    mkdir -p "$here/corpus/$t"
    echo "== fuzz $t for ${secs}s"
    cargo +nightly fuzz run -a "$t" "$here/corpus/$t" "$here/seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
