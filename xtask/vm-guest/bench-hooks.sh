# SPDX-License-Identifier: MIT OR Apache-2.0
#
# bench-hooks.sh: the /init of the `cargo xtask bench hooks` VM
# (xtask/src/bench.rs). Parameters, set in front of guest_lib.sh:
#   TOOL, WORKLOAD, IOPF  guest paths of uacce-trace, uacce-workload and
#                         iopf-workload
#   PIN_ROUNDS     io_uring registrations per pin loop
#   FAULTS         faults per IOPF loop
#   REPS           cycles of (untraced, then each traced mode)
#   BPFTRACE       guest path of bpftrace (the peer; empty: not run)
#   BT_FENTRY, BT_KPROBE  the peer's programs for each hook type
# Results are `@@BENCH ...` lines on the console.

echo "@@BENCH booted $(uname -r)"
# avail: the guest's MemAvailable in MiB.
avail() {
    awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo
}
echo "@@BENCH mem boot $(avail)"

# busy: the whole guest's busy time in USER_HZ ticks (1/100 s): user,
# nice, system, irq, softirq and steal of every CPU (/proc/stat).
busy() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# loops MODE N: N runs of each loop, printed as
#   @@BENCH pin MODE REP ROUNDS ELAPSED_NS RC BUSY_TICKS
#   @@BENCH iopf MODE REP FAULTS SUM(trigger->response-written)_NS SPAN_NS RC BUSY_TICKS
# (BUSY_TICKS: the whole guest over the loop's process).
loops() {
    r=1
    while [ "$r" -le "$2" ]; do
        t0=$("$TOOL" bench clock)
        b0=$(busy)
        $WORKLOAD iouring --size-kib 4 --count $PIN_ROUNDS --one-ring > /tmp/w.json 2> /tmp/w.err
        rc=$?
        b1=$(busy)
        t1=$("$TOOL" bench clock)
        echo "@@BENCH pin $1 $r $PIN_ROUNDS $((t1 - t0)) $rc $((b1 - b0))"
        b0=$(busy)
        $IOPF --count $FAULTS --delays-us 0 > /tmp/i.json 2> /tmp/i.err
        rc=$?
        b1=$(busy)
        s=$(awk 'function val(k,  i, s) { i = index($0, "\"" k "\":"); s = substr($0, i + length(k) + 3); return s + 0 }
/"fault":/ { tt = val("t_trigger"); td = val("t_write_done"); sum += td - tt; n++; if (n == 1) first = tt; last = td }
END { printf "%d %.0f %.0f\n", n, sum, last - first }' /tmp/i.json)
        echo "@@BENCH iopf $1 $r $s $rc $((b1 - b0))"
        r=$((r + 1))
    done
}

# Modes interleaved: each cycle runs the loops untraced, then under each
# hook type (the tracer started and stopped around them), then under the
# peer, bpftrace, with the same hook types; BPF statistics are taken in one
# extra run at the end of the last cycle.
c=1
while [ "$c" -le $REPS ]; do
    loops off 1
    # MODE: a hook type, per-event; MODE-summary: the same in summary mode;
    # bpftrace-MODE: the peer's one-liner on that hook type.
    for h in fentry kprobe fentry-summary kprobe-summary bpftrace-fentry bpftrace-kprobe; do
        case "$h" in
            bpftrace-*)
                [ -n "$BPFTRACE" ] || continue
                if [ "$h" = bpftrace-fentry ]; then prog=$BT_FENTRY; else prog=$BT_KPROBE; fi
                # Line-buffered: "Attaching N probes..." must arrive at once.
                "$BPFTRACE" -B line -e "$prog" > "/tmp/out-$h" 2> "/tmp/rec-$h.err" &
                tpid=$!
                wait_started "$tpid" "/tmp/out-$h" 'Attaching' 3000
                # bpftrace says "Attaching N probes..." before it attaches
                # them (under TCG that takes seconds): wait until it holds
                # one perf event (kprobes) or BPF link (fentry) per probe.
                if [ "$started" = 1 ]; then
                    want=$(sed -n 's/^Attaching \([0-9]*\) probe.*/\1/p' "/tmp/out-$h")
                    while [ "$n" -lt 3000 ] && alive "$tpid"; do
                        have=$(ls -l "/proc/$tpid/fd" 2>/dev/null | grep -c -e perf_event -e bpf_link)
                        [ "$have" -ge "${want:-1}" ] && break
                        usleep 100000
                        n=$((n + 1))
                    done
                    [ "$have" -ge "${want:-1}" ] || started=0
                fi
                ;;
            *)
                case "$h" in
                    *-summary) set -- --summary --format json -o "/tmp/rec-$h.json" ;;
                    *) set -- -o "/tmp/rec-$h.hlog" ;;
                esac
                "$TOOL" record --hooks "${h%-summary}" "$@" > "/tmp/out-$h" 2> "/tmp/rec-$h.err" &
                tpid=$!
                wait_started "$tpid" "/tmp/rec-$h.err" 'recording to' 1800
                ;;
        esac
        if [ "$started" = 1 ]; then
            echo "@@BENCH started $h $((n / 10))"
            echo "@@BENCH mem $h $(avail)"
            loops "$h" 1
            if [ "$c" -eq $REPS ]; then
                echo 1 > /proc/sys/kernel/bpf_stats_enabled
                loops "$h-stats" 1
                echo 0 > /proc/sys/kernel/bpf_stats_enabled
                echo "@@BENCH progs $h $("$TOOL" bench progs)"
            fi
        else
            echo "@@BENCH tracer $h error: not started after $((n / 10)) s"
        fi
        stop_tracer "$tpid" 60
        while read -r line; do echo "@@BENCH tracer $h $line"; done < "/tmp/rec-$h.err"
        # bpftrace's histograms (printed when stopped: `@map[key]:` lines,
        # then bucket rows): the events it saw.
        grep '^[[@]' "/tmp/out-$h" | while read -r line; do echo "@@BENCH bthist $h $line"; done
    done
    c=$((c + 1))
done
loops off 1
echo "@@BENCH done"
sleep 1
poweroff -f
