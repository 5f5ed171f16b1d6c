# SPDX-License-Identifier: MIT OR Apache-2.0
#
# pins.sh: the /init of a `pins` VM of `cargo xtask vm-test`
# (xtask/src/vm_test/pinpaths.rs and busy.rs): every pin path with a real
# user under one tracer, then the busy test with WINDOWS tracer lifetimes.
# Parameters, set in front of guest_lib.sh:
#   HOOKS, TOOL, WORKLOAD  --hooks, guest paths of uacce-trace and
#                          uacce-workload
#   TEST_KERNEL    1 on the project's test kernel (fixture loop in busy)
#   UACCE          guest path of uacce-ctrl-pin
#   PP_MODES       one `mode device program args...` line per pin path;
#                  device `-`: none needed; program `workload` or `uacce`
#   BUSY_PAUSE_US, BUSY_SIZE_KIB  the busy workload's pause and buffer
#   WINDOWS        the tracer lifetimes, e.g. `1 2 3`
#   WINDOW_S       seconds each lifetime lasts after `tracing started`
#   SUMMARY_WINDOWS  then the summary-mode lifetimes (`record --summary
#                  --format json`), e.g. `1 2 3`
#   BPFTOOL        guest path of bpftool (listed programs before each stop)
#   FIXTURE_PAGES  pages of each fixture run during the busy test
#   SECTIONS       one `name file` line per result section, in order

echo "@@UT-BOOTED $(uname -r)"

grep -E ' (pin_user_pages[a-z_]*|unpin_[a-z_]*|memfd_pin_folios)$' /proc/kallsyms \
    | awk '{print $2, $3}' | sort -k2 > /tmp/symbols

"$TOOL" trace --json --hooks "$HOOKS" > /tmp/events.ndjson 2> /tmp/trace.err &
tpid=$!
wait_started "$tpid" /tmp/trace.err '^uacce-trace: tracing started' 600
pp_started=$started
echo "@@UT-STEP pin paths (tracer started=$started) $(cut -d' ' -f1 /proc/uptime)"

# Every mode with vmstat around it: /tmp/pp-<mode>.{json,err},
# /tmp/pp-<mode>-{before,after}, and `mode=<m> rc=<rc>|missing=<dev>` in
# /tmp/pp-status.
: > /tmp/pp-status
while read -r mode dev prog args; do
    [ -n "$mode" ] || continue
    case "$prog" in
        workload) prog=$WORKLOAD ;;
        uacce) prog=$UACCE ;;
    esac
    if [ "$dev" = - ] || [ -e "$dev" ]; then
        echo 1 > /proc/sys/vm/stat_refresh
        grep '^nr_foll_pin' /proc/vmstat > /tmp/pp-$mode-before
        "$prog" $args > /tmp/pp-$mode.json 2> /tmp/pp-$mode.err < /dev/null
        rc=$?
        echo 1 > /proc/sys/vm/stat_refresh
        grep '^nr_foll_pin' /proc/vmstat > /tmp/pp-$mode-after
        echo "mode=$mode rc=$rc" >> /tmp/pp-status
    else
        echo "mode=$mode missing=$dev" >> /tmp/pp-status
    fi
done <<EOF_MODES
$PP_MODES
EOF_MODES

stop_tracer "$tpid" 20
pp_stop=$stop_sig
pp_rc=$stop_rc
"$TOOL" doctor --json > /tmp/doctor.json 2> /tmp/doctor.err
echo "@@UT-STEP busy $(cut -d' ' -f1 /proc/uptime)"

# ---- busy start, stop mid-stream, restarts
echo 1 > /proc/sys/vm/stat_refresh
grep '^nr_foll_pin' /proc/vmstat > /tmp/busy-vmstat-before
rm -f /tmp/busy.stop
: > /tmp/windows
cpid=
"$WORKLOAD" busy --nice 19 --pause-us $BUSY_PAUSE_US --threads 2 --size-kib $BUSY_SIZE_KIB --seconds 600 --stop-file /tmp/busy.stop --log /tmp/busy.log > /tmp/busy.json 2> /tmp/busy.err &
bpid=$!
if [ "$TEST_KERNEL" = 1 ] && [ -e /dev/uacce_ctrl ]; then
    ( while [ ! -e /tmp/busy.stop ]; do "$UACCE" $FIXTURE_PAGES > /dev/null 2>&1; echo x >> /tmp/busy-ctrl.count; done ) &
    cpid=$!
fi
sleep 1
# lifetime KIND I ERR PATTERN: the tracer just started in the background
# ($!) with its standard error in ERR: wait for PATTERN (its readiness
# line), let it run WINDOW_S, stop it; one `KIND=I` line of its times in
# /tmp/windows (t_launch: set by the caller before the start).
lifetime() {
    tpid=$!
    wait_started "$tpid" "$3" "$4" 600
    t_ready=$("$WORKLOAD" now)
    sleep $WINDOW_S
    t_stop=$("$WORKLOAD" now)
    if [ "$1" = window ] && [ -x $BPFTOOL ]; then $BPFTOOL prog show > /tmp/busy-progs$2.txt 2>&1; fi
    echo "@@UT-STEP $1 $2 stopping $(cut -d' ' -f1 /proc/uptime)"
    stop_tracer "$tpid" 20
    t_gone=$("$WORKLOAD" now)
    echo "@@UT-STEP $1 $2 started=$started $(cut -d' ' -f1 /proc/uptime)"
    echo "$1=$2 started=$started t_launch=$t_launch t_ready=$t_ready t_stop=$t_stop t_gone=$t_gone signal=$stop_sig rc=$stop_rc" >> /tmp/windows
    sleep 1
}
for i in $WINDOWS; do
    t_launch=$("$WORKLOAD" now)
    "$TOOL" trace --json --hooks "$HOOKS" > /tmp/busy-ev$i.ndjson 2> /tmp/busy-trace$i.err &
    lifetime window $i /tmp/busy-trace$i.err '^uacce-trace: tracing started'
done
# The same workload, summary mode (the kernel counts, the map is read at
# stop): t_launch before the start, t_gone after the exit bound what the
# totals can hold (xtask/src/vm_test/busy.rs, summary windows).
for i in $SUMMARY_WINDOWS; do
    t_launch=$("$WORKLOAD" now)
    "$TOOL" record --summary --format json -o /tmp/busy-sum$i.json --hooks "$HOOKS" > /dev/null 2> /tmp/busy-sum$i.err &
    lifetime summary $i /tmp/busy-sum$i.err '^uacce-trace: recording to'
done
if alive "$bpid"; then echo "busy_alive_at_end=1" >> /tmp/windows; else echo "busy_alive_at_end=0" >> /tmp/windows; fi
touch /tmp/busy.stop
wait "$bpid"
echo "busy_rc=$?" >> /tmp/windows
if [ -n "$cpid" ]; then
    wait "$cpid"
    echo "fixture_loop_runs=$(wc -l < /tmp/busy-ctrl.count)" >> /tmp/windows
fi
echo 1 > /proc/sys/vm/stat_refresh
grep '^nr_foll_pin' /proc/vmstat > /tmp/busy-vmstat-after
for i in $WINDOWS; do
    "$WORKLOAD" compact < /tmp/busy-ev$i.ndjson | gzip -c | base64 > /tmp/busy-ev$i.b64
done
gzip -c /tmp/busy.log | base64 > /tmp/busy-log.b64
echo "@@UT-STEP busy done $(cut -d' ' -f1 /proc/uptime)"

{
    echo "kernel=$(uname -r)"
    echo "hooks=$HOOKS"
    echo "trace_started=$pp_started"
    echo "trace_stop_signal=$pp_stop"
    echo "trace_rc=$pp_rc"
} > /tmp/status
section status /tmp/status
finish "$SECTIONS"
