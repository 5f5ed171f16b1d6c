# SPDX-License-Identifier: MIT OR Apache-2.0
#
# bench-hooks.sh: the /init of the `cargo xtask bench hooks` VM
# (xtask/src/bench.rs). Parameters, set in front of guest_lib.sh:
#   TOOL, WORKLOAD, IOPF  guest paths of uacce-trace, uacce-workload and
#                         iopf-workload
#   PIN_ROUNDS     io_uring registrations per pin loop
#   FAULTS         faults per IOPF loop
#   REPS           cycles of (untraced, fentry, kprobe)
# Results are `@@BENCH ...` lines on the console.

echo "@@BENCH booted $(uname -r)"

# loops MODE N: N runs of each loop, printed as
#   @@BENCH pin MODE REP ROUNDS ELAPSED_NS RC
#   @@BENCH iopf MODE REP FAULTS SUM(trigger->response-written)_NS SPAN_NS RC
loops() {
    r=1
    while [ "$r" -le "$2" ]; do
        t0=$("$TOOL" bench clock)
        $WORKLOAD iouring --size-kib 4 --count $PIN_ROUNDS > /tmp/w.json 2> /tmp/w.err
        rc=$?
        t1=$("$TOOL" bench clock)
        echo "@@BENCH pin $1 $r $PIN_ROUNDS $((t1 - t0)) $rc"
        $IOPF --count $FAULTS --delays-us 0 > /tmp/i.json 2> /tmp/i.err
        rc=$?
        s=$(awk 'function val(k,  i, s) { i = index($0, "\"" k "\":"); s = substr($0, i + length(k) + 3); return s + 0 }
/"fault":/ { tt = val("t_trigger"); td = val("t_write_done"); sum += td - tt; n++; if (n == 1) first = tt; last = td }
END { printf "%d %.0f %.0f\n", n, sum, last - first }' /tmp/i.json)
        echo "@@BENCH iopf $1 $r $s $rc"
        r=$((r + 1))
    done
}

# Modes interleaved: each cycle runs the loops untraced, then under each
# hook type (the tracer started and stopped around them); BPF statistics
# are taken in one extra run at the end of the last cycle.
c=1
while [ "$c" -le $REPS ]; do
    loops off 1
    for h in fentry kprobe; do
        "$TOOL" record --hooks "$h" -o "/tmp/rec-$h.hlog" > /dev/null 2> "/tmp/rec-$h.err" &
        tpid=$!
        wait_started "$tpid" "/tmp/rec-$h.err" 'recording to' 1800
        if [ "$started" = 1 ]; then
            echo "@@BENCH started $h $((n / 10))"
            loops "$h" 1
            if [ "$c" -eq $REPS ]; then
                echo 1 > /proc/sys/kernel/bpf_stats_enabled
                loops "$h-stats" 1
                echo 0 > /proc/sys/kernel/bpf_stats_enabled
                echo "@@BENCH progs $h $("$TOOL" bench progs)"
            fi
        fi
        kill -INT "$tpid" 2>/dev/null
        wait "$tpid"
        while read -r line; do echo "@@BENCH tracer $h $line"; done < "/tmp/rec-$h.err"
    done
    c=$((c + 1))
done
loops off 1
echo "@@BENCH done"
sleep 1
poweroff -f
