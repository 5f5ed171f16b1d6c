#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# service.sh: the check of `cargo xtask dist --vm`, run by systemd in a
# Debian root with the stock kernel (ut-check.service, a oneshot after
# multi-user.target). Installs the .deb as an administrator would, enables
# the unit, runs a pin workload and scrapes /metrics; the host checks what
# the sections say (xtask/src/dist/service_vm.rs). Prints the sections of
# vm-guest/guest_lib.sh's protocol on the serial console, then powers off.
# Parameters (set by the host above this line): SIZE_KIB, COUNT.

exec >/dev/ttyS0 2>&1
export SYSTEMD_COLORS=0 SYSTEMD_PAGER=cat
echo "@@UT-BOOTED $(uname -r)"
out=/run/ut
mkdir -p "$out"

section() {
    [ -f "$2" ] || return 0
    { cat "$2"; [ -n "$(tail -c 1 "$2")" ] && echo; } > "$out/section.out"
    echo "@@UT-BEGIN $1"
    cat "$out/section.out"
    echo "@@UT-END $1 lines=$(wc -l < "$out/section.out") bytes=$(wc -c < "$out/section.out")"
}

scrape() {
    # bash's /dev/tcp: the root has no curl.
    { exec 3<>/dev/tcp/127.0.0.1/19211 &&
        printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3 &&
        cat <&3; } 2>/dev/null
    exec 3>&-
}

dpkg -i /root/uacce-trace.deb > "$out/dpkg" 2>&1
echo "rc=$?" >> "$out/dpkg"
getent passwd uacce-trace > "$out/user"
systemctl enable --now uacce-trace.service > "$out/enable" 2>&1
echo "rc=$?" >> "$out/enable"

# Until the service says it serves (hooks attached), at most 180 s.
n=0
while [ "$n" -lt 180 ] && ! journalctl -u uacce-trace.service -o cat | grep -q 'serving http'; do
    sleep 1
    n=$((n + 1))
done
echo "waited=$n" > "$out/wait"

pid=$(systemctl show -p MainPID --value uacce-trace.service)
grep -E '^(Uid|Gid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' "/proc/$pid/status" > "$out/status"
uacce-workload iouring --size-kib "$SIZE_KIB" --count "$COUNT" > "$out/workload" 2>&1

# The counters reach /metrics once the ring is drained: scrape until the
# workload's pages are there, at most 30 s.
want=$(sed -n 's/.*"expected_pinned_pages":\([0-9]*\).*/\1/p' "$out/workload")
n=0
while [ "$n" -lt 30 ]; do
    scrape > "$out/metrics"
    got=$(grep '^uacce_trace_pin_pages_total{.*comm="uacce-workload"' "$out/metrics" | awk '{s += $2} END {print s + 0}')
    [ -n "$want" ] && [ "$got" -ge "$want" ] && break
    sleep 1
    n=$((n + 1))
done
systemctl show -p ActiveState -p SubState -p User -p NRestarts uacce-trace.service > "$out/show"
journalctl -u uacce-trace.service -o cat > "$out/journal"
systemd-analyze security uacce-trace.service > "$out/security" 2>&1

for s in dpkg user enable wait status workload show journal security metrics; do
    section "$s" "$out/$s"
done
echo "@@UT-DONE"
sleep 1
systemctl poweroff --force --force
