# SPDX-License-Identifier: MIT OR Apache-2.0
#
# guest_lib.sh: what every guest /init of xtask starts with (busybox sh as
# PID 1): the file systems PID 1 starts without, and shell functions. The
# generating code (vm/guest.rs, demo.rs, bench.rs, soak.rs) puts it after
# its variable assignments (`guest::LIB`).

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

# alive PID: the process exists and is not a zombie.
alive() {
    [ -r "/proc/$1/status" ] && ! grep -q '^State:.*Z' "/proc/$1/status"
}

# wait_started PID FILE PATTERN TICKS: polls every 0.1 s until FILE has a
# line matching PATTERN (started=1), PID has died or TICKS polls have
# passed (started=0); n is the number of polls waited.
wait_started() {
    n=0
    started=0
    while [ "$n" -lt "$4" ]; do
        if grep -q "$3" "$2" 2>/dev/null; then
            started=1
            break
        fi
        alive "$1" || break
        usleep 100000
        n=$((n + 1))
    done
}

# wait_gone PID SECONDS: polls until PID has exited; fails on timeout.
wait_gone() {
    n=0
    while alive "$1"; do
        [ "$n" -ge "$(($2 * 10))" ] && return 1
        usleep 100000
        n=$((n + 1))
    done
    return 0
}

# stop_tracer PID SECONDS: SIGINT, then TERM, then KILL, each given
# SECONDS; sets stop_sig (the one that ended it) and stop_rc. (A background
# job of a non-interactive shell starts with SIGINT ignored; a tool that
# installs its own handler still gets it.)
stop_tracer() {
    for sig in INT TERM KILL; do
        kill -"$sig" "$1" 2>/dev/null
        stop_sig=$sig
        wait_gone "$1" "$2" && break
    done
    wait "$1"
    stop_rc=$?
}

# section NAME FILE: FILE between @@UT-BEGIN/@@UT-END markers, with line
# and byte counts (`guest::BEGIN`, `guest::END`).
section() {
    [ -f "$2" ] || return 0
    { cat "$2"; [ -n "$(tail -c 1 "$2")" ] && echo; } > /tmp/section.out
    echo "@@UT-BEGIN $1"
    cat /tmp/section.out
    echo "@@UT-END $1 lines=$(wc -l < /tmp/section.out) bytes=$(wc -c < /tmp/section.out)"
}

# finish LINES: `section` for each `name file` line of LINES, then the end
# marker @@UT-DONE (`guest::DONE`); the VM powers off.
finish() {
    while read -r name file; do
        [ -n "$name" ] && section "$name" "$file"
    done <<EOF_SECTIONS
$1
EOF_SECTIONS
    echo "@@UT-DONE"
    # Let the serial port drain before the power goes.
    sleep 1
    poweroff -f
}
