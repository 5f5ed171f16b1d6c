# SPDX-License-Identifier: MIT OR Apache-2.0
#
# sva.sh: the /init of the SVA machine (`cargo xtask sva`, xtask/src/sva.rs):
# the test kernel on the patched QEMU, whose uacce-sva-test accelerator
# faults through the emulated VT-d. Parameters, set in front of guest_lib.sh:
#   SVA    the sva-workload program
#   PAGES  pages per phase
#   TOOL   uacce-trace, or empty: the checks without the tool only
#   HOOKS  --hooks values the tool runs with, one after the other; a value
#          ending in -vendor adds `--vendor-report` (the core report
#          function left unhooked: intel_iommu:prq_report reports)
#   START_TICKS  0.1-s polls the tool may take to start tracing
# Every result is a line of /tmp/sva: `check <name> ok|FAIL` or
# information; the workloads' own JSON lines go to section `sva-a`, `sva-b`
# and `sva-c`; the host reads them back. Then, with TOOL, per hook type:
# `uacce-trace trace --json` attached before the same workloads (one
# process, then two at once) and started while a fourth (d) already holds
# its PASID, its events in section `tool-<hooks>` and the workloads' lines
# in `tool-<hooks>-a|b|c|d`, checked by the host against each other
# (xtask/src/sva.rs).

OUT=/tmp/sva
say() { echo "$*" >> $OUT; }
: > $OUT
echo "@@UT-BOOTED $(uname -r)"
say "uptime_s $(cut -d' ' -f1 /proc/uptime)"
check() { name=$1; shift; if "$@" >/dev/null 2>&1; then say "check $name ok"; else say "check $name FAIL"; fi; }

# The IOMMU: scalable mode, PASID, first-stage, PRS (VT-d ECAP bits).
ecap=$(cat /sys/class/iommu/dmar0/intel-iommu/ecap 2>/dev/null)
say "dmar0 ecap $ecap cap $(cat /sys/class/iommu/dmar0/intel-iommu/cap 2>/dev/null)"
bit() { [ -n "$ecap" ] && [ $(( (0x$ecap >> $1) & 1 )) = 1 ]; }
check ecap_prs bit 29
check ecap_pasid bit 40
check ecap_pds bit 42
check ecap_smts bit 43
check ecap_flts bit 47
check ecap_smpwc bit 48

# The accelerator: bound to its driver, with ATS, PASID and PRI enabled.
dev=
for d in /sys/bus/pci/devices/*; do
  [ "$(cat $d/vendor):$(cat $d/device)" = "0x1b36:0x1f5a" ] && dev=$d
done
say "device ${dev:-none} driver $(basename "$(readlink $dev/driver 2>/dev/null)" 2>/dev/null)"
check sva_device test -n "$dev"
check sva_driver test "$(basename "$(readlink $dev/driver 2>/dev/null)" 2>/dev/null)" = uacce_sva_test
# config word at OFFSET (the device's fixed capability offsets).
word() { od -An -tx2 -j $(($1)) -N2 $dev/config 2>/dev/null | tr -d ' '; }
flag() { w=$(word $1); [ -n "$w" ] && [ $(( 0x$w & $2 )) != 0 ]; }
say "ats_ctrl $(word 0x106) pasid_ctrl $(word 0x116) pri_ctrl $(word 0x124)"
check ats_enabled flag 0x106 0x8000
check pasid_enabled flag 0x116 1
check pri_enabled flag 0x124 1
node=$(ls /sys/class/uacce 2>/dev/null | grep "^uacce_sva_test-" | head -n 1)
say "uacce ${node:-none} flags $(cat /sys/class/uacce/$node/flags 2>/dev/null) available $(cat /sys/class/uacce/$node/available_instances 2>/dev/null)"
check uacce_node test -c "/dev/$node"
check uacce_sva_flag test "$(( $(cat /sys/class/uacce/$node/flags 2>/dev/null || echo 0) & 1 ))" = 1

# The function tracer counts the report and response calls and names the
# task that made them (the page request IRQ thread).
T=/sys/kernel/tracing
calls() { grep -c " $1 <-" $T/trace; }
tasks() { grep " $1 <-" $T/trace | sed 's/^ *\(.*\)-[0-9]* *\[.*/\1/' | sort -u | tr '\n' ' '; }
echo 0 > $T/tracing_on
echo > $T/trace
echo "iommu_report_device_fault iopf_group_response intel_iommu_page_response iommu_sva_bind_device" > $T/set_ftrace_filter
echo function > $T/current_tracer
echo 1 > $T/events/intel_iommu/prq_report/enable 2>/dev/null
echo 1 > $T/tracing_on

# One process: faults, then pins.
"$SVA" "$PAGES" "/dev/$node" > /tmp/sva-a 2>&1; rc=$?
check workload_a test $rc = 0
rep=$(calls iommu_report_device_fault); resp=$(calls iopf_group_response); vresp=$(calls intel_iommu_page_response)
prq=$(grep -c 'prq_report:' $T/trace)
say "ftrace a: bind=$(calls iommu_sva_bind_device) report=$rep response=$resp intel_response=$vresp prq_report=$prq"
rt=$(tasks iommu_report_device_fault)
say "report tasks: $rt"
check faults_a test "$rep $resp $vresp $prq" = "$PAGES $PAGES $PAGES $PAGES"
# Every reporting task is an IRQ thread (and there is one).
irq_only=FAIL
for t in $rt; do
  case "$t" in irq/*) irq_only=ok ;; *) irq_only=FAIL; break ;; esac
done
say "check report_from_irq_thread $irq_only"

# Two processes at once, each with its own queue and PASID.
# nr_foll_pin_acquired after folding the per-CPU deltas.
pins() { echo 1 > /proc/sys/vm/stat_refresh; awk '$1 == "nr_foll_pin_acquired" { print $2 }' /proc/vmstat; }
echo > $T/trace
p0=$(pins)
"$SVA" "$PAGES" "/dev/$node" --shared-vmstat > /tmp/sva-b 2>&1 &
pb=$!
"$SVA" "$PAGES" "/dev/$node" --shared-vmstat > /tmp/sva-c 2>&1 &
pc=$!
wait $pb; rb=$?
wait $pc; rc2=$?
p1=$(pins)
check workload_b test $rb = 0
check workload_c test $rc2 = 0
say "pins bc: $((p1 - p0))"
check pins_bc test "$((p1 - p0))" = "$((2 * PAGES))"
rep=$(calls iommu_report_device_fault); resp=$(calls iopf_group_response)
say "ftrace bc: bind=$(calls iommu_sva_bind_device) report=$rep response=$resp"
check faults_bc test "$rep $resp" = "$((2 * PAGES)) $((2 * PAGES))"
echo 0 > $T/tracing_on
grep 'prq_report:' $T/trace | head -n 4 | sed 's/^/prq /' >> $OUT
dmesg | grep -iE 'dmar|uacce_sva|pasid|prq|iopf' | tail -n 20 | sed 's/^/dmesg /' >> $OUT
check no_dmar_fault_lines sh -c "! dmesg | grep -q 'DMAR: \[DMA'"
say "uptime_s $(cut -d' ' -f1 /proc/uptime)"

# The tool, once per hook type, with the function tracer off (only the
# tool hooks these functions now).
echo nop > $T/current_tracer
echo > $T/set_ftrace_filter
echo 0 > $T/events/intel_iommu/prq_report/enable 2>/dev/null
sections="sva $OUT
sva-a /tmp/sva-a
sva-b /tmp/sva-b
sva-c /tmp/sva-c"
if [ -n "$TOOL" ]; then
  for h in $HOOKS; do
    # d: bound (its PASID taken) before the tool starts, faulting after;
    # the tool learns its PASID from the start-up scan.
    "$SVA" "$PAGES" "/dev/$node" --wait-for /tmp/go-$h > /tmp/tool-$h-d 2>&1 &
    pd=$!
    wait_started $pd /tmp/tool-$h-d '"sva_open"' 300
    dbound=$started
    hk=${h%-vendor}
    vendor=
    [ "$hk" != "$h" ] && vendor=--vendor-report
    # doctor on this machine (its plan for these hooks; d's PASID bound).
    if [ -z "$vendor" ]; then
      "$TOOL" doctor --hooks "$hk" > /tmp/doctor-$h 2>&1
      say "doctor hooks=$h rc=$?"
      sections="$sections
doctor-$h /tmp/doctor-$h"
    fi
    "$TOOL" -v trace --json --hooks "$hk" $vendor > /tmp/tool-$h 2> /tmp/tool-$h-err &
    tp=$!
    wait_started $tp /tmp/tool-$h-err '^uacce-trace: tracing started' $START_TICKS
    polls=$n
    "$SVA" "$PAGES" "/dev/$node" > /tmp/tool-$h-a 2>&1; ra=$?
    p0=$(pins)
    "$SVA" "$PAGES" "/dev/$node" --shared-vmstat > /tmp/tool-$h-b 2>&1 &
    pb=$!
    "$SVA" "$PAGES" "/dev/$node" --shared-vmstat > /tmp/tool-$h-c 2>&1 &
    pc=$!
    wait $pb; rb=$?
    wait $pc; rc2=$?
    p1=$(pins)
    # d alone after b and c, so that its own vmstat delta is its pin.
    : > /tmp/go-$h
    wait $pd; rd=$?
    stop_tracer $tp 30
    say "tool hooks=$h started=$started start_polls=$polls d_bound_first=$dbound a=$ra b=$rb c=$rc2 d=$rd pins_bc=$((p1 - p0)) stop_sig=$stop_sig stop_rc=$stop_rc"
    sections="$sections
tool-$h /tmp/tool-$h
tool-$h-err /tmp/tool-$h-err
tool-$h-a /tmp/tool-$h-a
tool-$h-b /tmp/tool-$h-b
tool-$h-c /tmp/tool-$h-c
tool-$h-d /tmp/tool-$h-d"
  done
fi
say "uptime_s $(cut -d' ' -f1 /proc/uptime)"
say "done"
finish "$sections"
