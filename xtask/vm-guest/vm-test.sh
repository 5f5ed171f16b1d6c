# SPDX-License-Identifier: MIT OR Apache-2.0
#
# vm-test.sh: the /init of a main `cargo xtask vm-test` VM
# (xtask/src/vm_test/script.rs). Parameters, set in front of guest_lib.sh:
#   HOOKS          --hooks of the tracer; empty: the workload runs alone
#   TOOL, WORKLOAD guest paths of uacce-trace and uacce-workload
#   WORKLOAD_ARGS  arguments of uacce-workload
#   START_TICKS    0.1-s polls to wait for `tracing started`
#   STOP_S         seconds to wait for the tracer after each signal
#   TEST_KERNEL    1 on the project's test kernel: a PASID holder before
#                  the tracer, two IOPF workloads at once, the uacce_ctrl
#                  fixture, a third IOPF workload on the holder's PASID,
#                  the attribution modes (ATTR_MODES)
#   IOPF, UACCE    guest paths of iopf-workload and uacce-ctrl-pin
#   UACCE_DEV      the fixture's uacce device (no SVA)
#   HOLDER, LATE_HOLDER  command names of the two PASID holders
#   IOPF_A_ARGS, IOPF_B_ARGS, IOPF_C_ARGS  the three IOPF workloads
#   ATTR_MODES     one `name pasid args...` line per attribution mode; pasid
#                  `holder` or `late` is that holder's PASID
#   REQ_ARGS       (test kernel) iopf-workload's arguments for the request
#                  run (`--op`, xtask/src/vm_test/requests.rs); empty: none
#   REQ_SYMBOL     its request function
#   PIN_ARGS       (test kernel) iopf-workload's arguments for the
#                  before/after pinning runs (xtask/src/vm_test/pinverdict.rs;
#                  the second adds --pin-buffer); empty: none
#   PIN_METRIC     compare's --metric for their decided verdict
#   SECTIONS       one `name file` line per result section, in order
# With HOOKS, `record --summary` runs beside `trace` on the same calls.
# Results go out as sections; @@UT-DONE ends the output.

echo "@@UT-BOOTED $(uname -r)"

echo 1 > /proc/sys/vm/stat_refresh
grep '^nr_foll_pin' /proc/vmstat > /tmp/vmstat-before

if [ "$TEST_KERNEL" = 1 ]; then
    # A process takes a PASID through the fixture and keeps it (the
    # tracer's start-up scan must find it).
    cp "$UACCE" /tmp/$HOLDER
    /tmp/$HOLDER --hold-pasid > /tmp/pasid-holder.json 2> /tmp/pasid-holder.err &
    hpid=$!
    n=0
    while [ "$n" -lt 50 ] && ! grep -q pasid_holder /tmp/pasid-holder.json; do
        usleep 100000
        n=$((n + 1))
    done
    holder_pasid=$(sed -n 's/.*"pasid":\([0-9]*\).*/\1/p' /tmp/pasid-holder.json)
fi

started=0
tpid=
if [ -n "$HOOKS" ]; then
    # -v: the kernel programs load with their diagnostics (aya-log) live.
    "$TOOL" -v trace --json --hooks "$HOOKS" > /tmp/events.ndjson 2> /tmp/trace.err &
    tpid=$!
    wait_started "$tpid" /tmp/trace.err '^uacce-trace: tracing started' $START_TICKS
    start_wait_ds=$n
    trace_started=$started
    # Summary mode beside it, on the same calls (xtask/src/vm_test/summary.rs).
    "$TOOL" record --summary --hooks "$HOOKS" --format json -o /tmp/summary.json \
        2> /tmp/summary.err &
    spid=$!
    wait_started "$spid" /tmp/summary.err 'hooks attached' $START_TICKS
    summary_started=$started
    started=$trace_started
fi

"$WORKLOAD" $WORKLOAD_ARGS > /tmp/workload.json 2> /tmp/workload.err
workload_rc=$?

echo 1 > /proc/sys/vm/stat_refresh
grep '^nr_foll_pin' /proc/vmstat > /tmp/vmstat-after

if [ "$TEST_KERNEL" = 1 ]; then
    "$IOPF" $IOPF_A_ARGS > /tmp/iopf-a.json 2> /tmp/iopf-a.err &
    apid=$!
    "$IOPF" $IOPF_B_ARGS > /tmp/iopf-b.json 2> /tmp/iopf-b.err &
    bpid=$!
    wait "$apid"; iopf_a_rc=$?
    wait "$bpid"; iopf_b_rc=$?
    echo 1 > /proc/sys/vm/stat_refresh
    grep '^nr_foll_pin' /proc/vmstat > /tmp/vmstat-uacce-before
    "$UACCE" 16 > /tmp/uacce-ctrl.json 2> /tmp/uacce-ctrl.err
    uacce_rc=$?
    echo 1 > /proc/sys/vm/stat_refresh
    grep '^nr_foll_pin' /proc/vmstat > /tmp/vmstat-uacce-after
    "$IOPF" $IOPF_C_ARGS --pasid "${holder_pasid:-0}" > /tmp/iopf-c.json 2> /tmp/iopf-c.err
    "$UACCE" --queue $UACCE_DEV > /tmp/uacce-queue.json 2> /tmp/uacce-queue.err

    # IOPF attribution and pairing modes (xtask/src/vm_test/attribution.rs)
    cp "$UACCE" /tmp/$LATE_HOLDER
    /tmp/$LATE_HOLDER --hold-pasid > /tmp/late-holder.json 2> /tmp/late-holder.err &
    lhpid=$!
    wait_started "$lhpid" /tmp/late-holder.json pasid_holder 50
    late_pasid=$(sed -n 's/.*"pasid":\([0-9]*\).*/\1/p' /tmp/late-holder.json)
    while read -r name pasid args; do
        [ -n "$name" ] || continue
        case "$pasid" in
            holder) pasid=${holder_pasid:-0} ;;
            late) pasid=${late_pasid:-0} ;;
        esac
        "$IOPF" --pasid "$pasid" $args > /tmp/$name.json 2> /tmp/$name.err < /dev/null
    done <<EOF_MODES
$ATTR_MODES
EOF_MODES
    kill "$lhpid" 2>/dev/null
    wait "$lhpid" 2>/dev/null
fi

trace_rc=
trace_stop=
doctor_rc=
if [ -n "$tpid" ]; then
    stop_tracer "$tpid" $STOP_S
    trace_stop=$stop_sig
    trace_rc=$stop_rc
    stop_tracer "$spid" $STOP_S
    summary_stop=$stop_sig
    summary_rc=$stop_rc
    "$TOOL" doctor --json > /tmp/doctor.json 2> /tmp/doctor.err
    doctor_rc=$?
    # The kernel's facts as the tool reads them: the recordings in
    # uacce-trace/tests/data/facts are refreshed from this section.
    "$TOOL" doctor --dump-facts /tmp/facts.json 2>> /tmp/doctor.err
fi

# Requests (`--op`, xtask/src/vm_test/requests.rs): a tracer of its own
# on the workload's request function, after the main tracer stopped (its
# faults are not the main checks' business).
if [ "$TEST_KERNEL" = 1 ] && [ -n "$HOOKS" ] && [ -n "$REQ_ARGS" ]; then
    main_started=$started
    "$TOOL" trace --json --hooks "$HOOKS" --op "$IOPF:$REQ_SYMBOL" \
        > /tmp/req-events.ndjson 2> /tmp/req-trace.err &
    rpid=$!
    wait_started "$rpid" /tmp/req-trace.err '^uacce-trace: tracing started' $START_TICKS
    "$IOPF" $REQ_ARGS > /tmp/requests.json 2> /tmp/requests.err < /dev/null
    for sig in INT TERM KILL; do
        kill -"$sig" "$rpid" 2>/dev/null
        wait_gone "$rpid" $STOP_S && break
    done
    wait "$rpid"
    echo "req_trace_started=$started req_trace_rc=$?" >> /tmp/req-trace.err
    started=$main_started
fi

# Before/after pinning (xtask/src/vm_test/pinverdict.rs): the same request
# workload recorded twice (raw, `--op`), without and then with its buffer
# pinned through /dev/uacce_ctrl; `compare` runs here, on the two files.
if [ "$TEST_KERNEL" = 1 ] && [ -n "$HOOKS" ] && [ -n "$PIN_ARGS" ]; then
    main_started=$started
    for run in before after; do
        pin=
        [ "$run" = after ] && pin=--pin-buffer
        "$TOOL" record --format raw --hooks "$HOOKS" --op "$IOPF:$REQ_SYMBOL" \
            -o /tmp/pin-$run.utrace 2> /tmp/pin-$run-rec.err &
        rpid=$!
        wait_started "$rpid" /tmp/pin-$run-rec.err '^uacce-trace: recording to' $START_TICKS
        rec_started=$started
        "$IOPF" $PIN_ARGS $pin > /tmp/pin-$run.json 2> /tmp/pin-$run.err < /dev/null
        stop_tracer "$rpid" $STOP_S
        echo "pin_${run}_started=$rec_started pin_${run}_stop=$stop_sig pin_${run}_rc=$stop_rc" \
            >> /tmp/pin-compare.status
    done
    "$TOOL" compare --json --metric "$PIN_METRIC" /tmp/pin-before.utrace /tmp/pin-after.utrace \
        > /tmp/pin-compare.json 2> /tmp/pin-compare.err
    echo "compare_rc=$?" >> /tmp/pin-compare.status
    "$TOOL" compare --metric "$PIN_METRIC" /tmp/pin-before.utrace /tmp/pin-after.utrace \
        > /tmp/pin-compare.txt 2>> /tmp/pin-compare.err
    # The default metric, p99.9, rests on too few requests here.
    "$TOOL" compare --json /tmp/pin-before.utrace /tmp/pin-after.utrace \
        > /tmp/pin-compare-p999.json 2>> /tmp/pin-compare.err
    echo "compare_p999_rc=$?" >> /tmp/pin-compare.status
    started=$main_started
fi

# The holder exits, and the kernel frees its PASID at mm teardown
# (`mm_pasid_drop`); kernel warnings (an `ida_free` of a PASID not
# allocated, a bad free) are collected.
if [ -n "$hpid" ]; then
    kill "$hpid" 2>/dev/null
    wait "$hpid" 2>/dev/null
    sleep 1
    dmesg | grep -e 'ida_free' -e 'WARNING:' -e 'BUG:' > /tmp/holder-warnings
    echo "holder_exit=done" >> /tmp/holder-warnings
fi

{
    echo "kernel=$(uname -r)"
    echo "hooks=$HOOKS"
    echo "workload_rc=$workload_rc"
    echo "trace_started=$started"
    echo "trace_start_wait_ds=$start_wait_ds"
    echo "trace_stop_signal=$trace_stop"
    echo "trace_rc=$trace_rc"
    echo "summary_started=$summary_started"
    echo "summary_stop_signal=$summary_stop"
    echo "summary_rc=$summary_rc"
    echo "doctor_rc=$doctor_rc"
    echo "iopf_a_rc=$iopf_a_rc"
    echo "iopf_b_rc=$iopf_b_rc"
    echo "uacce_rc=$uacce_rc"
    if [ -r /proc/sys/kernel/io_uring_disabled ]; then
        echo "io_uring_disabled=$(cat /proc/sys/kernel/io_uring_disabled)"
    fi
} > /tmp/status

finish "$SECTIONS"
