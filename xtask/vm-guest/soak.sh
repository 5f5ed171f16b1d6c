# SPDX-License-Identifier: MIT OR Apache-2.0
#
# soak.sh: the /init of the soak VM (`cargo xtask soak`), busybox sh
# as PID 1 on the project's test kernel. `xtask/src/soak.rs` puts a few
# variable assignments in front of it (SOAK_SECONDS, SAMPLE_SECONDS, HOOKS,
# TOOL, WORKLOAD, IOPF, UACCE, BPFTOOL) and parses what it prints.
#
# It starts `uacce-trace record --raw`, then for SOAK_SECONDS runs four
# lanes at once, each a loop of short-lived processes (process churn):
#   - uacce: uacce-ctrl-pin N (1..32 pages): PIN/UNPIN ioctls on
#     /dev/uacce_ctrl, a pin released by close();
#   - iouring: uacce-workload iouring: io_uring buffer register/unregister;
#   - iopf-a, iopf-b: iopf-workload: mock IO page faults through iommufd,
#     answered after 0, 100 or 1000 us; disjoint PASIDs per lane, group ids
#     that never repeat.
# Every lane keeps its own tally (processes started, pages it pinned, faults
# it triggered and got back) from the programs' own JSON lines. A sampler
# writes one line every SAMPLE_SECONDS: the tracer's VmRSS/VmHWM and the
# entries of the tracer's BPF pairing maps (bpftool). At the end it folds
# the per-CPU vmstat deltas (vm/stat_refresh), reads the maps once more,
# stops the tracer with SIGINT and runs `uacce-trace report` on the
# recording; awk sums the report's per-process rows into totals.
#
# Output sections: @@UT-BEGIN <name> ... @@UT-END <name> lines=N bytes=M.
# Mounts, `alive`, `wait_started` and `section` come from guest_lib.sh,
# which soak.rs puts in front of this file.

mount -t bpf bpf /sys/fs/bpf 2>/dev/null
echo "@@UT-BOOTED $(uname -r)"
echo "booted_at_uptime=$(cut -d. -f1 /proc/uptime)" > /tmp/boot-status

now() { cut -d. -f1 /proc/uptime; }

# Entries of the tracer's BPF map NAME ("?" when bpftool cannot tell).
map_entries() {
    n=$("$BPFTOOL" map dump name "$1" 2>/dev/null | sed -n 's/^Found \([0-9]*\) element.*/\1/p' | head -n 1)
    echo "${n:-?}"
}

# One sample line: seconds since the soak began, the tracer's memory, map entries.
sample() {
    rss=$(sed -n 's/^VmRSS:[^0-9]*\([0-9]*\).*/\1/p' "/proc/$tpid/status" 2>/dev/null)
    hwm=$(sed -n 's/^VmHWM:[^0-9]*\([0-9]*\).*/\1/p' "/proc/$tpid/status" 2>/dev/null)
    procs=0
    for f in /tmp/tally-*; do
        [ -f "$f" ] || continue
        p=$(sed -n 's/^procs=\([0-9]*\).*/\1/p' "$f")
        procs=$((procs + ${p:-0}))
    done
    rec=$(stat -c %s /tmp/.soak.utrace.*.tmp 2>/dev/null | head -n 1)
    echo "t=$(($(now) - start)) rss_kb=${rss:-?} hwm_kb=${hwm:-?} pin_inflight=$(map_entries PIN_INFLIGHT) unpin_inflight=$(map_entries UNPIN_INFLIGHT) ioctl_inflight=$(map_entries IOCTL_INFLIGHT) get_pasid_inflight=$(map_entries GET_PASID_INFLI) queue_inflight=$(map_entries QUEUE_INFLIGHT) procs=$procs recording_bytes=${rec:-0}"
}

# tally LANE LINE: replaces the lane's tally file at once (the sampler
# reads it at any moment).
tally() {
    echo "$2" > "/tmp/.tally-$1.new"
    mv "/tmp/.tally-$1.new" "/tmp/tally-$1"
}

# lane_uacce: uacce-ctrl-pin with 1..32 pages; each run pins its range
# twice (PIN, and again before close) when the ioctls succeed.
lane_uacce() {
    i=0; pinned=0; fails=0
    while [ "$(now)" -lt "$end" ]; do
        pages=$((1 + i % 32))
        "$UACCE" "$pages" > /tmp/lane-uacce.out 2>&1
        # Its own vmstat checks fail while other lanes pin at the same time;
        # what counts here is which pin ioctls succeeded.
        ok=$(grep -c '"step":"pin[a-z_]*","errno":0,"want_errno":0' /tmp/lane-uacce.out)
        [ "$ok" -eq 2 ] || fails=$((fails + 1))
        pinned=$((pinned + ok * pages))
        i=$((i + 1))
        tally uacce "procs=$i pinned=$pinned unpinned=$pinned fails=$fails"
    done
}

lane_iouring() {
    i=0; pinned=0; unpinned=0; fails=0
    while [ "$(now)" -lt "$end" ]; do
        kib=$((4 * (1 + i % 16)))
        if "$WORKLOAD" iouring --size-kib "$kib,4" --count 2 > /tmp/lane-iouring.out 2>&1; then
            p=$(sed -n 's/.*"expected_pinned_pages":\([0-9]*\).*/\1/p' /tmp/lane-iouring.out)
            u=$(sed -n 's/.*"expected_unpinned_pages":\([0-9]*\).*/\1/p' /tmp/lane-iouring.out)
            pinned=$((pinned + ${p:-0}))
            unpinned=$((unpinned + ${u:-0}))
        else
            fails=$((fails + 1))
        fi
        i=$((i + 1))
        tally iouring "procs=$i pinned=$pinned unpinned=$unpinned fails=$fails"
    done
}

# lane_iopf NAME FIRST_PASID GRPID_BASE: 16 faults per process over 4
# PASIDs of its own; group ids go up and never repeat.
lane_iopf() {
    i=0; faults=0; fails=0
    while [ "$(now)" -lt "$end" ]; do
        pasid=$(($2 + i % 4))
        grpid=$(($3 + i * 16))
        if "$IOPF" --count 16 --delays-us 0,100,1000 --pasid "$pasid" --grpid "$grpid" \
            --addr 0x10000000 > "/tmp/lane-$1.out" 2>&1; then
            n=$(sed -n 's/.*"iopf_workload":"ok","faults":\([0-9]*\).*/\1/p' "/tmp/lane-$1.out")
            faults=$((faults + ${n:-0}))
        else
            fails=$((fails + 1))
            # A failed run still answered the faults it printed.
            n=$(grep -c '"fault":' "/tmp/lane-$1.out")
            faults=$((faults + n))
        fi
        i=$((i + 1))
        tally "$1" "procs=$i faults=$faults fails=$fails"
    done
}

# Everything but the output runs in a subshell: a shell error there (ash
# exits on a bad arithmetic expression) must not take PID 1 down before the
# results are printed.
soak_body() {
    "$TOOL" record --raw -o /tmp/soak.utrace --hooks "$HOOKS" > /tmp/record.out 2> /tmp/record.err &
    tpid=$!
    wait_started "$tpid" /tmp/record.err '^uacce-trace: recording to' 1200
    cat /tmp/boot-status > /tmp/status
    echo "record_start_wait_ds=$n" >> /tmp/status
    echo "record_started_at_uptime=$(now)" >> /tmp/status
    echo "record_started=$started" >> /tmp/status
    "$BPFTOOL" map show > /tmp/maps 2>&1

    if [ "$started" = 1 ]; then
        echo 1 > /proc/sys/vm/stat_refresh
        grep '^nr_foll_pin' /proc/vmstat > /tmp/vmstat-before
        start=$(now)
        end=$((start + SOAK_SECONDS))
        : > /tmp/samples
        sample >> /tmp/samples
        lane_uacce &
        l1=$!
        lane_iouring &
        l2=$!
        lane_iopf iopf-a 1 1 &
        l3=$!
        lane_iopf iopf-b 5 1000000001 &
        l4=$!
        next=$((start + SAMPLE_SECONDS))
        while [ "$(now)" -lt "$end" ]; do
            if [ "$(now)" -ge "$next" ]; then
                sample >> /tmp/samples
                next=$((next + SAMPLE_SECONDS))
            fi
            sleep 1
        done
        wait "$l1" "$l2" "$l3" "$l4"
        echo "lanes_done_at=$(($(now) - start))" >> /tmp/status
        # Every fault answered, every pin released: the maps must be empty once
        # the tracer has read the ring. Give it a moment, then look.
        sleep 2
        sample >> /tmp/samples
        echo 1 > /proc/sys/vm/stat_refresh
        grep '^nr_foll_pin' /proc/vmstat > /tmp/vmstat-after
        for f in /tmp/tally-*; do
            echo "${f#/tmp/tally-} $(cat "$f")"
        done > /tmp/tallies
    fi

    stop=
    t0=$(now)
    if alive "$tpid"; then
        for sig in INT TERM KILL; do
            kill -"$sig" "$tpid" 2>/dev/null
            stop=$sig
            n=0
            while alive "$tpid" && [ "$n" -lt 600 ]; do
                usleep 100000
                n=$((n + 1))
            done
            alive "$tpid" || break
        done
    fi
    wait "$tpid"
    echo "record_rc=$?" >> /tmp/status
    echo "record_stop_signal=$stop" >> /tmp/status
    echo "record_stop_seconds=$(($(now) - t0))" >> /tmp/status
    ls -l /tmp/soak.utrace >> /tmp/status 2>&1

    if [ -f /tmp/soak.utrace ]; then
        t0=$(now)
        "$TOOL" report /tmp/soak.utrace > /tmp/report.txt 2> /tmp/report.err
        echo "report_rc=$?" >> /tmp/status
        echo "report_seconds=$(($(now) - t0))" >> /tmp/status
        # Totals over the report's rows: IOPF records (per-kind table, COUNT),
        # pages pinned and unpinned (pin ledger, PINS and UNPINS). Columns are
        # found by their header names.
        awk '
            # -1: the report did not say (fails on the host).
            BEGIN { dropped = -1; unanswered = -1 }
            /^KIND / { table = 1; for (i = 1; i <= NF; i++) tcol[$i] = i; next }
            /^pin ledger/ { table = 0; ledger = 1; next }
            ledger && /^ *PID / { for (i = 1; i <= NF; i++) lcol[$i] = i; next }
            NF == 0 { table = 0; if (ledger && lcol["PINS"]) ledger = 0; next }
            table && $1 == "iopf" { iopf += $tcol["COUNT"]; iopf_rows++ }
            table && $1 == "pin" { pin_calls += $tcol["COUNT"] }
            table && $1 == "unpin" { unpin_calls += $tcol["COUNT"] }
            ledger && lcol["PINS"] { pins += $lcol["PINS"]; unpins += $lcol["UNPINS"]; held += $lcol["PINNED"]; ledger_rows++ }
            /unanswered IOPFs/ { for (i = 1; i <= NF; i++) if ($i == "IOPFs") unanswered = $(i + 1) + 0 }
            /; dropped / { for (i = 1; i <= NF; i++) if ($i == "dropped") dropped = $(i + 1) + 0 }
            END {
                printf "iopf_records=%d iopf_rows=%d pin_calls=%d unpin_calls=%d ", iopf, iopf_rows, pin_calls, unpin_calls
                printf "pinned_pages=%d unpinned_pages=%d held_pages=%d ledger_rows=%d ", pins, unpins, held, ledger_rows
                printf "dropped=%d unanswered=%d\n", dropped, unanswered
            }' /tmp/report.txt > /tmp/totals
        head -n 12 /tmp/report.txt > /tmp/report-head
    fi
}

( soak_body )
echo "soak_body_rc=$?" >> /tmp/status

section status /tmp/status
section record.err /tmp/record.err
section maps /tmp/maps
section samples /tmp/samples
section tallies /tmp/tallies
section vmstat-before /tmp/vmstat-before
section vmstat-after /tmp/vmstat-after
section totals /tmp/totals
section report-head /tmp/report-head
section report.err /tmp/report.err
echo "@@UT-DONE"
sleep 1
poweroff -f
