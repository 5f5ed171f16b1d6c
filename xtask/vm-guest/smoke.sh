# SPDX-License-Identifier: MIT OR Apache-2.0
#
# smoke.sh: the /init of the test kernel's smoke VM (`cargo xtask kernel
# --smoke`, xtask/src/smoke.rs). Parameters, set in front of guest_lib.sh:
#   SYMBOLS  the hooked functions (kernel::hooked_functions), space-separated
#   PIN      the uacce_ctrl pin test program
#   IOPF     the IOPF workload
#   FAULTS   how many faults the IOPF workload triggers
# Every result is a line of /tmp/smoke: `check <name> ok|FAIL` or
# information; the host reads it back as section `smoke`.

OUT=/tmp/smoke
say() { echo "$*" >> $OUT; }
: > $OUT
echo "@@UT-BOOTED $(uname -r)"
say "uptime_s $(cut -d' ' -f1 /proc/uptime)"
say "release $(uname -r)"
at() { say "at $(cut -d' ' -f1 /proc/uptime) s: $*"; }
check() { name=$1; shift; if "$@" >/dev/null 2>&1; then say "check $name ok"; else say "check $name FAIL"; fi; }
check dev_uacce_ctrl test -c /dev/uacce_ctrl
check dev_iommu test -c /dev/iommu
check btf test -f /sys/kernel/btf/vmlinux
check kprobe_pmu test -d /sys/bus/event_source/devices/kprobe
check stat_refresh test -f /proc/sys/vm/stat_refresh
at devices
T=/sys/kernel/tracing
# Generated on every read, which is slow under TCG: read each once.
cat /proc/kallsyms > /tmp/kallsyms
cut -d' ' -f3 /tmp/kallsyms > /tmp/kallsyms.names
cp $T/available_filter_functions /tmp/filter_functions
for s in $SYMBOLS; do
  check kallsyms_$s grep -qx "$s" /tmp/kallsyms.names
  check ftrace_$s grep -qx "$s" /tmp/filter_functions
done
at symbols
grep -E 'uacce_ctrl_unl_ioctl|uacce_pin_page|iommu_report_device_fault|iopf_group_response|uacce_fops_open' /tmp/kallsyms | sed 's/^/kallsyms /' >> $OUT

# count calls of a traced function in the trace buffer
calls() { grep -c " $1 <-" $T/trace; }
trace_on() { echo 0 > $T/tracing_on; echo > $T/trace; echo "$*" > $T/set_ftrace_filter; echo function > $T/current_tracer; echo 1 > $T/tracing_on; }
trace_off() { echo 0 > $T/tracing_on; }

trace_on uacce_ctrl_open uacce_ctrl_release uacce_ctrl_unl_ioctl uacce_pin_page uacce_unpin_page
"$PIN" 16 > /tmp/pin.out 2>&1; rc=$?
trace_off
sed 's/^/pin /' /tmp/pin.out >> $OUT
check uacce_ctrl_pin test $rc = 0
o=$(calls uacce_ctrl_open); r=$(calls uacce_ctrl_release); i=$(calls uacce_ctrl_unl_ioctl); p=$(calls uacce_pin_page); u=$(calls uacce_unpin_page)
say "ftrace open=$o release=$r ioctl=$i pin=$p unpin=$u"
check ftrace_uacce_ctrl test "$o $r $i $p $u" = "1 1 7 4 3"

at uacce_ctrl
trace_on iommu_report_device_fault iopf_group_response
"$IOPF" --count "$FAULTS" > /tmp/iopf.out 2>&1; rc=$?
trace_off
sed 's/^/iopf /' /tmp/iopf.out >> $OUT
check iopf_workload test $rc = 0
rep=$(calls iommu_report_device_fault); resp=$(calls iopf_group_response)
say "ftrace report=$rep response=$resp"
check ftrace_iopf test "$rep $resp" = "$FAULTS $FAULTS"
at iopf
say "done"
finish "smoke $OUT"
