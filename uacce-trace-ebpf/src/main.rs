//! uacce-trace kernel programs.
//!
//! Pin tracing: every exported `pin_user_pages*` / `unpin_user_page*` variant
//! gets four programs, `<base>_fentry`, `<base>_fexit`, `<base>_kprobe` and
//! `<base>_kretprobe` (base names in `uacce_trace_common::PinFunc`). User space
//! loads and attaches one pair per function, as its hook planner decides. The
//! entry half stores the arguments per thread in an LRU map (bounded: a lost
//! exit cannot leak), the exit half emits one fixed-size `PinRecord` into the
//! one ring buffer. Failed reservations are counted per CPU, never silent.
//!
//! Must not depend on anything but aya-ebpf and the common wire types.

#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated},
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use uacce_trace_common::{
    counter,
    summary::{SUMMARY_PIN, SUMMARY_UNPIN},
    InflightKey, PinFunc, PinInflight, PinRecord, RecordHeader, COMM_LEN, DEV_NAME_LEN,
    HOOK_FENTRY, HOOK_KPROBE, KIND_PIN, KIND_UNPIN, RECORD_VERSION,
};

/// A rare diagnostic (a map insert that fails, a table full), shown by
/// `uacce-trace -v`: aya-log at info level into its own ring (`AYA_LOGS`).
/// User space sets `AYA_LOG_LEVEL` at load time; below info (no `-v`) the
/// verifier drops the code as dead, so it costs nothing then. Callers send
/// one only on the first occurrence per CPU ([`count_first`]): never a
/// message per call.
macro_rules! diag {
    ($($arg:tt)+) => {
        aya_log_ebpf::info!(&(), $($arg)+)
    };
}

#[cfg(feature = "bench")]
mod bench;
mod iopf;
mod proc;
mod request;
mod smmu;
mod summary;
mod uacce;

/// The one ring buffer; user space may resize it at load time.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Per-CPU counters, indexed by `uacce_trace_common::counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Values user space sets while tracing; index
/// `counter::RUNTIME_ATTACH_DONE`: `bpf_ktime_get_ns()` once every hook is
/// attached (0 while attaching).
#[map]
static RUNTIME: Array<u64> = Array::with_max_entries(1, 0);

/// In-flight pin calls, per thread.
#[map]
static PIN_INFLIGHT: LruHashMap<InflightKey, PinInflight> = LruHashMap::with_max_entries(8192, 0);

/// In-flight unpin calls, per thread. Separate from pins so an unpin made
/// inside a pin call (long-term pin migration) is still reported.
#[map]
static UNPIN_INFLIGHT: LruHashMap<InflightKey, PinInflight> = LruHashMap::with_max_entries(8192, 0);

/// Wake-up policy of every submit, set by user space: 1 = the batching of
/// [`submit_flags`] (the default), 0 = the kernel's default (wake the
/// reader whenever it has caught up, so a fast reader is woken for nearly
/// every record). Only `uacce-trace bench pipeline --wakeup adaptive` sets
/// 0, to compare both (built with the `bench` feature only).
#[cfg(feature = "bench")]
#[unsafe(no_mangle)]
static BENCH_WAKEUP: u32 = 1;

/// Flags for submitting a record of `size` bytes to [`EVENTS`]: wake the
/// reader once per batch, not once per record. The kernel's default wakes
/// it whenever it has caught up, i.e. for nearly every record when it keeps
/// up, and the wake-up (irq_work, then a cross-CPU wake) costs the traced
/// task more than the program itself (`cargo xtask bench pipeline`). Here
/// only the record that makes the unread data cross 1/8 of the ring forces
/// a wake-up, and every record does while more than half is unread (the
/// reader is behind); so does the record that finds the ring empty (the
/// reader has caught up and sleeps), so the first record after a quiet
/// spell is seen at once and an idle reader needs no timer. Once woken, the
/// reader drains at most every 10 ms (`source::RING_POLL`): records that
/// arrive meanwhile find the ring non-empty and wake nobody, so a steady
/// stream costs the traced tasks at most ~100 wake-ups per second. The
/// others are submitted with `BPF_RB_NO_WAKEUP`. A slow safety timer in
/// user space (`source::RING_SAFETY_POLL`) covers a wake-up that
/// concurrent producers missed. Call between reserve and submit.
#[inline(always)]
pub(crate) fn submit_flags(size: usize) -> u64 {
    // SAFETY: a read of a global; volatile so the default is not folded
    // (user space may rewrite it before load).
    #[cfg(feature = "bench")]
    if unsafe { core::ptr::read_volatile(&BENCH_WAKEUP) } == 0 {
        return 0;
    }
    // Unread bytes, the record just reserved and its 8-byte header included.
    let avail = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let ring = EVENTS.query(BPF_RB_RING_SIZE as u64);
    let threshold = ring >> 3;
    // The kernel rounds each record (8-byte header included) up to 8 bytes.
    let this = (size as u64 + 8 + 7) & !7;
    let crossed = avail >= threshold && avail.saturating_sub(this) < threshold;
    let was_empty = avail <= this;
    if was_empty || crossed || avail >= ring >> 1 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Copies a finished record into [`EVENTS`] with [`submit_flags`]; a full
/// ring is counted (`RINGBUF_FULL`), never silent. For records built
/// before the reservation; the pin exit reserves first and writes in place.
#[inline(always)]
pub(crate) fn emit<T: 'static>(kind: u16, record: T) {
    match EVENTS.reserve::<T>(0) {
        Some(mut slot) => {
            slot.write(record);
            slot.submit(submit_flags(core::mem::size_of::<T>()));
        }
        None => count_ring_full(kind),
    }
}

/// Counts a record of `kind` lost to a full ring.
#[inline(always)]
pub(crate) fn count_ring_full(kind: u16) {
    count(counter::ringbuf_full(kind));
}

/// Zero-fills `slot` with 8-byte stores and returns it as a record, to be
/// filled field by field in place.
///
/// Not struct literals: rustc zero-fills a literal's byte arrays and
/// padding with `memset` calls, and on BPF every `memset` is a call of
/// aya-ebpf's byte-at-a-time loop (about 200 instructions per IOPF report
/// before this). The stores are volatile so that LLVM can neither merge
/// them back into such a call nor move the record to another stack slot.
#[inline(always)]
pub(crate) fn zero_fill<T: Copy>(slot: &mut core::mem::MaybeUninit<T>) -> &mut T {
    const { assert!(core::mem::size_of::<T>().is_multiple_of(8) && core::mem::align_of::<T>() >= 8) };
    let words = slot.as_mut_ptr().cast::<u64>();
    let mut i = 0;
    while i < core::mem::size_of::<T>() / 8 {
        // SAFETY: in bounds of `slot`, 8-byte aligned (asserted above).
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
    // SAFETY: every byte is initialised, and all-zero is a valid value of
    // the plain-data records this is used for.
    unsafe { slot.assume_init_mut() }
}

/// Writes the current task's comm straight into `out` (a field of the
/// record being built); the kernel zero-fills it on failure.
///
/// Not aya's `bpf_get_current_comm()`: it returns the array by value in a
/// `Result`, which rustc lowers on BPF to byte-by-byte copies and calls of
/// a byte-loop `memset` subprogram (over 100 single-byte instructions per
/// record in the IOPF report programs). Filled in place, an 8-byte aligned
/// field costs the helper call and two zeroing stores.
#[inline(always)]
pub(crate) fn comm_into(out: &mut [u8; COMM_LEN]) {
    // SAFETY: the helper writes at most COMM_LEN bytes into `out`.
    unsafe { generated::bpf_get_current_comm(out.as_mut_ptr().cast(), COMM_LEN as u32) };
}

/// Copies the kernel C string at `src` straight into `out` (NUL-terminated,
/// truncated to fit; the bytes after the NUL keep their value, so build
/// `out` zeroed). `src` 0 leaves `out` alone. In place for the same reason
/// as [`comm_into`].
#[inline(always)]
pub(crate) fn kernel_str_into(src: u64, out: &mut [u8; DEV_NAME_LEN]) {
    if src != 0 {
        // SAFETY: probe read of a kernel string into `out`; faults are
        // returned as errors (and leave `out` zeroed).
        unsafe {
            generated::bpf_probe_read_kernel_str(
                out.as_mut_ptr().cast(),
                DEV_NAME_LEN as u32,
                src as *const _,
            )
        };
    }
}

#[inline(always)]
pub(crate) fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: the pointer comes from the map lookup and is valid for this
        // CPU while the program runs; per-CPU, so no other writer.
        unsafe { *slot += 1 };
    }
}

/// [`count`], and whether this is the first on this CPU (a [`diag`] is
/// sent then only).
#[inline(always)]
pub(crate) fn count_first(index: u32) -> bool {
    match COUNTERS.get_ptr_mut(index) {
        Some(slot) => {
            // SAFETY: as in `count`.
            let was = unsafe { *slot };
            // SAFETY: as in `count`.
            unsafe { *slot = was + 1 };
            was == 0
        }
        None => false,
    }
}

#[inline(always)]
fn inflight_map(func: PinFunc) -> &'static LruHashMap<InflightKey, PinInflight> {
    if func.is_pin() {
        &PIN_INFLIGHT
    } else {
        &UNPIN_INFLIGHT
    }
}

/// Arguments of one call as read by the entry hook.
struct PinArgs {
    start: u64,
    nr_pages: u64,
    gup_flags: u32,
}

/// True when a call of `inner` may legitimately run inside a call of
/// `outer` on the same thread, i.e. the kernel nests these exported
/// functions. The only such path in 5.8 – 7.x is
/// `unpin_user_pages_dirty_lock(pages, n, make_dirty = false)`, which calls
/// `unpin_user_pages(pages, n)` (mm/gup.c; process_vm_readv takes it).
/// No exported pin function calls another one; unpins inside a pin call
/// (the long-term pin migration path, `memfd_pin_folios`'s error path) go
/// to the separate unpin map. Anything else found in flight on entry is a
/// leftover whose exit was missed.
#[inline(always)]
fn may_nest(outer: u16, inner: PinFunc) -> bool {
    outer == PinFunc::UnpinUserPagesDirtyLock as u16 && matches!(inner, PinFunc::UnpinUserPages)
}

/// A nested call must start within this long of its outer call; an older
/// in-flight record is a leftover (no unpin takes seconds).
const NEST_MAX_NS: u64 = 10_000_000_000;

/// `-EEXIST`, what an update with `BPF_NOEXIST` returns for a key in use.
pub(crate) const EEXIST: i32 = -17;

#[inline(always)]
fn on_entry(func: PinFunc, args: PinArgs) {
    let tid = bpf_get_current_pid_tgid() as u32;
    let map = inflight_map(func);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let value = PinInflight {
        ts_ns: now,
        start: args.start,
        nr_pages: args.nr_pages,
        gup_flags: args.gup_flags,
        func: func as u16,
        depth: 0,
    };
    // The common case, no call of this thread in flight, costs one map
    // operation; only a key in use is looked at.
    match map.insert(tid, value, u64::from(aya_ebpf::bindings::BPF_NOEXIST)) {
        Ok(()) => return,
        Err(EEXIST) => {}
        Err(e) => {
            if count_first(counter::INFLIGHT_FULL) {
                diag!(
                    "pin/unpin in-flight map: insert failed ({}), call not timed",
                    e
                );
            }
            return;
        }
    }
    if let Some(outer) = map.get_ptr_mut(tid) {
        // SAFETY: valid map value pointer; only this thread uses its key.
        let (outer_func, outer_ts, outer_depth) =
            unsafe { ((*outer).func, (*outer).ts_ns, (*outer).depth) };
        if outer_depth == 0
            && may_nest(outer_func, func)
            && now.wrapping_sub(outer_ts) < NEST_MAX_NS
        {
            // SAFETY: as above.
            unsafe { (*outer).depth = 1 };
            count(counter::NESTED);
            return;
        }
        // The earlier call of this thread never saw its exit: replaced
        // below, counted as lost.
        count(counter::STALE_INFLIGHT);
    }
    if let Err(e) = map.insert(tid, value, 0) {
        if count_first(counter::INFLIGHT_FULL) {
            diag!(
                "pin/unpin in-flight map: replacing a stale entry failed ({})",
                e
            );
        }
    }
}

/// Counts an exit whose entry is unknown: while the tracer attaches (or
/// just after) it is a call that began before every hook was attached
/// (`EXIT_AT_ATTACH`, the window's edge: its pages are not in the tool's
/// numbers, and the ledger says so); later it is a missed or evicted entry
/// (`EXIT_WITHOUT_ENTRY`).
#[inline(always)]
pub(crate) fn count_exit_without_entry(now: u64) {
    let done = RUNTIME
        .get(counter::RUNTIME_ATTACH_DONE)
        .copied()
        .unwrap_or(0);
    if done == 0 || now < done.saturating_add(counter::ATTACH_EDGE_NS) {
        count(counter::EXIT_AT_ATTACH);
    } else {
        count(counter::EXIT_WITHOUT_ENTRY);
    }
}

/// `ret`: the function's return value; `None` for the void unpin functions.
#[inline(always)]
fn on_exit(func: PinFunc, hook: u8, ret: Option<i64>) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let map = inflight_map(func);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(entry) = map.get_ptr_mut(tid) else {
        count_exit_without_entry(now);
        return;
    };
    // SAFETY: valid map value pointer; only this thread uses its key.
    let entry_value = unsafe { *entry };
    if entry_value.func != func as u16 {
        if entry_value.depth > 0 {
            // The nested call returns; its outer call reports the pages.
            // SAFETY: as above.
            unsafe { (*entry).depth = 0 };
        } else {
            // Not this call's record: its own entry was missed. The record
            // stays for the call it belongs to.
            count_exit_without_entry(now);
        }
        return;
    }
    // The outer call returns (a nested call whose exit was missed leaves
    // `depth` 1: the outer call still reports its pages).
    let _ = map.remove(tid);
    let ret = ret.unwrap_or(entry_value.nr_pages as i64);
    let pages = u64::try_from(ret).unwrap_or(0);
    if summary::enabled() {
        let longterm = func.is_pin() && summary::is_longterm(entry_value.gup_flags);
        let call = summary::Call {
            kind: if func.is_pin() {
                SUMMARY_PIN
            } else {
                SUMMARY_UNPIN
            },
            sub: 0,
            latency_ns: now.wrapping_sub(entry_value.ts_ns),
            error: ret < 0,
            pages,
            longterm_pages: if longterm { pages } else { 0 },
        };
        if summary::add((pid_tgid >> 32) as u32, call) {
            iopf::credit_pin_to_ioctl(tid, pages);
            return;
        }
    }
    let Some(mut slot) = EVENTS.reserve::<PinRecord>(0) else {
        count_ring_full(if func.is_pin() { KIND_PIN } else { KIND_UNPIN });
        return;
    };
    // Filled in place in the ring (see `zero_fill`).
    let r = zero_fill(&mut slot);
    r.header = RecordHeader {
        kind: if func.is_pin() { KIND_PIN } else { KIND_UNPIN },
        version: RECORD_VERSION,
        size: core::mem::size_of::<PinRecord>() as u32,
    };
    r.ts_ns = entry_value.ts_ns;
    r.latency_ns = now.wrapping_sub(entry_value.ts_ns);
    r.tgid = (pid_tgid >> 32) as u32;
    r.tid = tid;
    r.start = entry_value.start;
    r.nr_pages = entry_value.nr_pages;
    r.ret = ret;
    r.gup_flags = entry_value.gup_flags;
    r.func = func as u16;
    r.hook = hook;
    comm_into(&mut r.comm);
    slot.submit(submit_flags(core::mem::size_of::<PinRecord>()));
    iopf::credit_pin_to_ioctl(tid, pages);
}

/// Where a function keeps the arguments we read. `None` = not an argument.
struct ArgSpec {
    start: Option<usize>,
    nr_pages: Option<usize>,
    /// `nr_pages` is a C `int` (sign-extend the low 32 bits).
    nr_is_int: bool,
    gup_flags: Option<usize>,
    /// Return value is a C `int` rather than `long`.
    ret_is_int: bool,
}

const fn spec(func: PinFunc) -> ArgSpec {
    let (start, nr_pages, nr_is_int, gup_flags, ret_is_int) = match func {
        PinFunc::PinUserPages => (Some(0), Some(1), false, Some(2), false),
        PinFunc::PinUserPagesFast => (Some(0), Some(1), true, Some(2), true),
        PinFunc::PinUserPagesRemote => (Some(1), Some(2), false, Some(3), false),
        PinFunc::PinUserPagesUnlocked => (Some(0), Some(1), false, Some(3), false),
        // (memfd, start offset, end, folios, max_folios: unsigned int, offset)
        PinFunc::MemfdPinFolios => (Some(1), Some(4), true, None, false),
        PinFunc::UnpinUserPage | PinFunc::UnpinFolio => (None, None, false, None, false),
        PinFunc::UnpinUserPages
        | PinFunc::UnpinUserPagesDirtyLock
        | PinFunc::UnpinUserPageRangeDirtyLock
        | PinFunc::UnpinFolios
        | PinFunc::UnpinUserFolio => (None, Some(1), false, None, false),
    };
    ArgSpec {
        start,
        nr_pages,
        nr_is_int,
        gup_flags,
        ret_is_int,
    }
}

#[inline(always)]
fn args_from(func: PinFunc, arg: impl Fn(usize) -> u64) -> PinArgs {
    let s = spec(func);
    let nr_pages = match s.nr_pages {
        Some(i) if s.nr_is_int => arg(i) as i32 as i64 as u64,
        Some(i) => arg(i),
        None => 1,
    };
    PinArgs {
        start: s.start.map_or(0, &arg),
        nr_pages,
        gup_flags: s.gup_flags.map_or(0, |i| arg(i) as u32),
    }
}

#[inline(always)]
fn ret_from(func: PinFunc, raw: u64) -> Option<i64> {
    if !func.is_pin() {
        return None;
    }
    Some(if spec(func).ret_is_int {
        raw as i32 as i64
    } else {
        raw as i64
    })
}

/// The four programs of one function.
macro_rules! pin_programs {
    ($func:expr, $fentry:ident, $fexit:ident, $kprobe:ident, $kretprobe:ident) => {
        #[fentry]
        pub fn $fentry(ctx: FEntryContext) -> i32 {
            on_entry($func, args_from($func, |i| ctx.arg::<u64>(i)));
            0
        }

        #[fexit]
        pub fn $fexit(ctx: FExitContext) -> i32 {
            let raw: u64 = ctx.ret().unwrap_or(0);
            on_exit($func, HOOK_FENTRY, ret_from($func, raw));
            0
        }

        #[kprobe]
        pub fn $kprobe(ctx: ProbeContext) -> u32 {
            on_entry($func, args_from($func, |i| ctx.arg::<u64>(i).unwrap_or(0)));
            0
        }

        #[kretprobe]
        pub fn $kretprobe(ctx: RetProbeContext) -> u32 {
            let raw: u64 = ctx.ret();
            on_exit($func, HOOK_KPROBE, ret_from($func, raw));
            0
        }
    };
}

pin_programs!(
    PinFunc::PinUserPages,
    pup_fentry,
    pup_fexit,
    pup_kprobe,
    pup_kretprobe
);
pin_programs!(
    PinFunc::PinUserPagesFast,
    pup_fast_fentry,
    pup_fast_fexit,
    pup_fast_kprobe,
    pup_fast_kretprobe
);
pin_programs!(
    PinFunc::PinUserPagesRemote,
    pup_remote_fentry,
    pup_remote_fexit,
    pup_remote_kprobe,
    pup_remote_kretprobe
);
pin_programs!(
    PinFunc::PinUserPagesUnlocked,
    pup_unlocked_fentry,
    pup_unlocked_fexit,
    pup_unlocked_kprobe,
    pup_unlocked_kretprobe
);
pin_programs!(
    PinFunc::MemfdPinFolios,
    memfd_pin_fentry,
    memfd_pin_fexit,
    memfd_pin_kprobe,
    memfd_pin_kretprobe
);
pin_programs!(
    PinFunc::UnpinUserPage,
    unpin_page_fentry,
    unpin_page_fexit,
    unpin_page_kprobe,
    unpin_page_kretprobe
);
pin_programs!(
    PinFunc::UnpinUserPages,
    unpin_pages_fentry,
    unpin_pages_fexit,
    unpin_pages_kprobe,
    unpin_pages_kretprobe
);
pin_programs!(
    PinFunc::UnpinUserPagesDirtyLock,
    unpin_pages_dirty_fentry,
    unpin_pages_dirty_fexit,
    unpin_pages_dirty_kprobe,
    unpin_pages_dirty_kretprobe
);
pin_programs!(
    PinFunc::UnpinUserPageRangeDirtyLock,
    unpin_range_dirty_fentry,
    unpin_range_dirty_fexit,
    unpin_range_dirty_kprobe,
    unpin_range_dirty_kretprobe
);
pin_programs!(
    PinFunc::UnpinFolio,
    unpin_folio_fentry,
    unpin_folio_fexit,
    unpin_folio_kprobe,
    unpin_folio_kretprobe
);
pin_programs!(
    PinFunc::UnpinFolios,
    unpin_folios_fentry,
    unpin_folios_fexit,
    unpin_folios_kprobe,
    unpin_folios_kretprobe
);
pin_programs!(
    PinFunc::UnpinUserFolio,
    unpin_user_folio_fentry,
    unpin_user_folio_fexit,
    unpin_user_folio_kprobe,
    unpin_user_folio_kretprobe
);

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
