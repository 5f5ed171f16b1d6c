# SPDX-License-Identifier: MIT OR Apache-2.0
#
# demo.sh: the /init of the demo VM (`cargo xtask demo`, xtask/src/demo.rs).
# Parameters, set in front of guest_lib.sh:
#   TOOL, WORKLOAD, DEMO  guest paths of uacce-trace, uacce-workload and
#                         uacce-demo
#   HOOKS                 --hooks of the tracer
#   TTY                   the serial port the raw recording streams to
#   INTERVAL              --interval of `uacce-trace record`
#   START_TICKS           0.1-s polls to wait for the tracer to start
#   RUN_SECONDS           how long the workload runs
#   TEST_KERNEL           1: the test kernel (PROCESSES fault and pin);
#                         0: a stock kernel (io_uring pins only)
#   PIN_NOTE              when ml-infer pins its buffer (for the message)
#   OP                    `--op` of the tracer (the demo program's request
#                         function, BINARY:SYMBOL); empty: no requests
#   PROCESSES             one `name args...` line per uacce-demo process;
#                         with SVA: one `name pages args...` line per
#                         sva-workload process
#   SVA                   empty, or (`demo --sva`, the SVA machine) the guest
#                         path of sva-workload: PROCESSES run it through a
#                         link of their name on the uacce_sva_test queue,
#                         each with its own PASID; its JSON lines come back
#                         as `[demo] name: {...}`

say() { echo "[demo] $*"; }

say "Linux $(uname -r) is up"
# The raw recording is binary: no newline translation, echo or flow control.
stty -F $TTY raw -echo -ixon -ixoff -crtscts clocal 115200 || say "stty $TTY failed"
op=
[ -n "$OP" ] && op="--op $OP"
say "starting the tracer: uacce-trace record --format raw $op -o $TTY (streamed to the host)"
"$TOOL" record --format raw --interval $INTERVAL --hooks "$HOOKS" $op -o $TTY 2> /tmp/rec.err &
tpid=$!
wait_started "$tpid" /tmp/rec.err '^uacce-trace: recording to' $START_TICKS
sed 's/^/[demo] tracer: /' /tmp/rec.err

failed=0
if [ "$started" = 1 ]; then
    say "tracer ready after $((n / 10)).$((n % 10)) s"
    if [ -n "$SVA" ]; then
        node=$(ls /sys/class/uacce 2>/dev/null | grep '^uacce_sva_test-' | head -n 1)
        if [ -z "$node" ]; then
            say "no uacce_sva_test node: the SVA device or its driver is missing"
            failed=1
        else
            say "workload: $(echo "$PROCESSES" | wc -l) processes on /dev/$node for about $RUN_SECONDS s, each with its own PASID: the accelerator faults on their unpinned pages (page requests through the emulated VT-d), then they pin through /dev/uacce_ctrl and the faults stop"
            pids=""
            while read -r name pages args; do
                [ -n "$name" ] || continue
                # The link's name is the process's command name.
                ln -sf "$SVA" /usr/bin/$name
                /usr/bin/$name "$pages" "/dev/$node" $args > /tmp/$name.out 2> /tmp/$name.err &
                pids="$pids $!"
            done <<EOF_SVA
$PROCESSES
EOF_SVA
            for p in $pids; do wait "$p" || failed=1; done
            while read -r name pages args; do
                [ -n "$name" ] || continue
                sed "s|^|[demo-sva] $name: |" /tmp/$name.out
                [ -s /tmp/$name.err ] && sed "s|^|[demo] $name stderr: |" /tmp/$name.err
            done <<EOF_SVA
$PROCESSES
EOF_SVA
        fi
    elif [ "$TEST_KERNEL" = 1 ]; then
        say "workload: 4 processes for $RUN_SECONDS s (dma-copy, ml-infer, zip-job fault through the iommufd mock; $PIN_NOTE; rdma-reg pins with io_uring; the three faulting ones make requests, some with faults inside)"
        pids=""
        while read -r name args; do
            [ -n "$name" ] || continue
            "$DEMO" --name $name --seconds $RUN_SECONDS $args 2> /tmp/$name.err &
            pids="$pids $!"
        done <<EOF_PROCESSES
$PROCESSES
EOF_PROCESSES
        for p in $pids; do wait "$p" || failed=1; done
        for f in /tmp/*.err; do [ -s "$f" ] && sed "s|^|[demo] $f: |" "$f"; done
    else
        say "workload (stock kernel: pins only): io_uring buffer registrations for $RUN_SECONDS s"
        end=$(( $(cut -d. -f1 /proc/uptime) + RUN_SECONDS ))
        while [ "$(cut -d. -f1 /proc/uptime)" -lt "$end" ]; do
            for kib in 16 64 4 128 32; do
                "$WORKLOAD" iouring --size-kib "$kib" --count 1 > /dev/null 2> /tmp/w.err || failed=1
                usleep 500000
            done
        done
        [ -s /tmp/w.err ] && sed 's/^/[demo] workload: /' /tmp/w.err
    fi
    say "workload finished (failed=$failed); stopping the tracer"
    for sig in INT TERM KILL; do
        kill -"$sig" "$tpid" 2>/dev/null
        n=0
        while alive "$tpid" && [ "$n" -lt 100 ]; do usleep 100000; n=$((n + 1)); done
        alive "$tpid" || break
    done
    wait "$tpid" 2>/dev/null
    grep -v '^uacce-trace: recording to' /tmp/rec.err | sed 's/^/[demo] tracer: /'
    # Let the serial port drain the end of the recording.
    sleep 2
    [ "$failed" = 0 ] && say "done."
else
    say "uacce-trace record did not start (its messages are above)"
fi
say "powering off"
poweroff -f
