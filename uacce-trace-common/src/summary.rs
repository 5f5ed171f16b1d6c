//! Summary mode: what the kernel programs keep instead of writing each
//! call to the ring buffer.
//!
//! In summary mode the pin and unpin exits and the pin-ioctl exits add
//! the call to a [`SummaryValue`] of the per-CPU hash map `SUMMARY`,
//! keyed by process and kind ([`SummaryKey`]): calls, errors, pages and a
//! log-linear latency histogram ([`bucket_of`]). User space reads the map
//! once per interval, sums the CPUs and takes the difference to its last
//! reading. A call whose key finds the map full goes to the ring as a
//! record, as in per-event mode (counted as `SUMMARY_FULL`, not lost).
//!
//! IO page faults ([`SUMMARY_IOPF`]): the report hooks keep each group in
//! the array map `IOPF_TABLE` ([`IopfSlot`], [`iopf_slot`]) and the
//! response hooks take it out, compute the latency and add it to the
//! map `IOPF_SUMMARY` (same values, [`IopfSummaryKey`]: reporting user
//! task or 0, PASID, device; a map of its own so that the pin kinds' key
//! stays 8 bytes, hashed on every call); user
//! space attributes the key to the PASID's owner when it reads the map,
//! as it attributes per-event faults. A group that finds its slot held by
//! another live group goes to the ring as in per-event mode
//! (`IOPF_TABLE_COLLISION`, not lost), and so do one group in
//! 2^`IOPF_SAMPLE_SHIFT` (sampled for the fault regions) and every
//! response whose group is not in the table (user space pairs it).
//!
//! Buckets: values below [`SUB`] ns each have their own bucket; above,
//! every power of two is split into [`SUB`] equal buckets, so a bucket is
//! at most 1/[`SUB`] (12.5 %) of its lower bound wide. Values of 2^37 ns
//! (137 s) and more share the last bucket.

/// Bits of the mantissa kept per power of two.
pub const SUB_BITS: u32 = 3;
/// Buckets per power of two.
pub const SUB: u64 = 1 << SUB_BITS;
/// Largest exponent with buckets of its own (values < 2^(MAX_EXP + 1)).
pub const MAX_EXP: u32 = 36;
/// Number of buckets.
pub const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 1) as usize + 1) * SUB as usize;

/// `SummaryKey::kind` of pin calls (`pin_user_pages*`, `memfd_pin_folios`).
pub const SUMMARY_PIN: u16 = 1;
/// `SummaryKey::kind` of unpin calls.
pub const SUMMARY_UNPIN: u16 = 2;
/// `SummaryKey::kind` of pin/unpin ioctls; `SummaryKey::sub` is the
/// command ([`ioctl_sub`]).
pub const SUMMARY_IOCTL: u16 = 3;

/// The kind of IO page fault groups, report to response (the
/// `IOPF_SUMMARY` map, [`IopfSummaryKey`]; never a `SummaryKey::kind` in
/// the kernel).
pub const SUMMARY_IOPF: u16 = 4;

/// `SummaryKey::sub` of an ioctl command: 0 `UACCE_CMD_PIN`, 1
/// `UACCE_CMD_UNPIN`, 2 `MEM_CMD_PIN`, 3 `MEM_CMD_UNPIN`.
pub const fn ioctl_sub(cmd: u32) -> u16 {
    match cmd {
        crate::ioctl_cmd::UACCE_CMD_PIN => 0,
        crate::ioctl_cmd::UACCE_CMD_UNPIN => 1,
        crate::ioctl_cmd::MEM_CMD_PIN => 2,
        _ => 3,
    }
}

/// The command of an ioctl [`SummaryKey::sub`] (inverse of [`ioctl_sub`]).
pub const fn ioctl_cmd_of(sub: u16) -> u32 {
    match sub {
        0 => crate::ioctl_cmd::UACCE_CMD_PIN,
        1 => crate::ioctl_cmd::UACCE_CMD_UNPIN,
        2 => crate::ioctl_cmd::MEM_CMD_PIN,
        _ => crate::ioctl_cmd::MEM_CMD_UNPIN,
    }
}

/// Default bound of the `SUMMARY` map (keys: processes × kinds) and of
/// the `IOPF_SUMMARY` map (keys: reporter × PASID × device).
pub const SUMMARY_MAX_ENTRIES: u32 = 4096;

/// One key of the `SUMMARY` map: pins, unpins and pin ioctls. Eight
/// bytes, so the hash the kernel computes on every call in summary mode
/// covers one word (IO page faults, which need a PASID and a device, have
/// their own map and key, [`IopfSummaryKey`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SummaryKey {
    /// The calling process.
    pub tgid: u32,
    /// [`SUMMARY_PIN`], [`SUMMARY_UNPIN`] or [`SUMMARY_IOCTL`].
    pub kind: u16,
    /// Ioctls: [`ioctl_sub`]; 0 otherwise.
    pub sub: u16,
}

/// One key of the `IOPF_SUMMARY` map (kind [`SUMMARY_IOPF`]): answered IO
/// page fault groups.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IopfSummaryKey {
    /// The reporting task's process when it was a user task, else 0.
    pub tgid: u32,
    /// The group's PASID.
    pub pasid: u32,
    /// The `struct device *` of the group (identity only; the name is in
    /// [`SummaryValue::dev_name`]).
    pub dev: u64,
}

/// Page-request group indices are 9 bits (PCIe PRI, `prg_index`; VT-d
/// `prg_index`, SMMUv3 `STAG` is wider but the kernel's `grpid` of PRI
/// devices is these 9 bits): at most this many groups of one (device,
/// PASID) are open at once.
pub const IOPF_GROUPS_PER_PASID: u32 = 512;

/// Rows of `IOPF_TABLE`: (device, PASID) pairs with groups in flight at
/// once before two of them share a row (a row holds every group index of
/// one pair, so groups of one pair never collide). 32 rows: 16 384 slots,
/// the bound of user space's per-event pairing table, 896 KiB.
pub const IOPF_TABLE_ROWS: u32 = 32;
/// log2 of [`IOPF_TABLE_ROWS`].
const IOPF_ROW_BITS: u32 = 5;

/// Slots of `IOPF_TABLE`.
pub const IOPF_TABLE_SLOTS: u32 = IOPF_TABLE_ROWS * IOPF_GROUPS_PER_PASID;

/// A group in `IOPF_TABLE` older than this is never going to be answered
/// (user space's per-event pairing uses the same timeout): a report that
/// needs its slot takes it over, counting it as unanswered.
pub const IOPF_TIMEOUT_NS: u64 = 5_000_000_000;

/// `IopfSlot::state`: free.
pub const SLOT_FREE: u32 = 0;
/// `IopfSlot::state`: reported, more faults of the group may come.
pub const SLOT_OPEN: u32 = 1;
/// `IopfSlot::state`: its `LAST_PAGE` fault came; waiting for the response.
pub const SLOT_CLOSED: u32 = 2;
/// `IopfSlot::state` bit: the group is sampled (its records are in the
/// ring and user space pairs it; the slot only keeps its later faults and
/// its response on the same path).
pub const SLOT_SAMPLED: u32 = 4;

/// `iommu_fault_page_request.flags` bit of a group's last fault
/// (`IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE`, the same bit in every kernel).
pub const FLAG_LAST_PAGE: u32 = 1 << 1;

/// One group awaiting its response in `IOPF_TABLE` (summary mode).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IopfSlot {
    /// The group's key, checked by the response (the index is a hash).
    pub dev: u64,
    pub pasid: u32,
    pub grpid: u32,
    /// Report time of the group's first fault.
    pub ts_ns: u64,
    /// Kernel address of the device's name (0: unknown).
    pub dev_name: u64,
    /// The reporting task's process when it was a user task, else 0.
    pub reporter_tgid: u32,
    /// [`SLOT_FREE`], [`SLOT_OPEN`] or [`SLOT_CLOSED`] (bits 0–1), and
    /// [`SLOT_SAMPLED`].
    pub state: u32,
    pub reporter_comm: [u8; crate::COMM_LEN],
}

/// The `IOPF_TABLE` index of group `grpid` of (`dev`, `pasid`): the row
/// is a hash of (device, PASID), the column the group index's 9 bits.
#[inline(always)]
pub const fn iopf_slot(dev: u64, pasid: u32, grpid: u32) -> u32 {
    // A 64-bit mix (multiply, xor-shift, multiply; splitmix64's
    // constants); the device pointer's low 3 bits are alignment.
    let mut h = (dev >> 3) ^ (pasid as u64).wrapping_mul(0x9e37_79b1);
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let row = (h >> (64 - IOPF_ROW_BITS)) as u32;
    row * IOPF_GROUPS_PER_PASID + grpid % IOPF_GROUPS_PER_PASID
}

/// One CPU's totals of one key since the key was made. Counters wrap;
/// user space takes differences (per interval far below 2^32 per bucket).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SummaryValue {
    pub calls: u64,
    /// Pins: `ret` < 0; ioctls: `ret` ≠ 0. Unpins cannot fail.
    pub errors: u64,
    /// Pins: pages pinned (`ret` > 0); unpins: pages released; ioctls:
    /// pages the pin calls inside them pinned or released.
    pub pages: u64,
    /// Pins: pages pinned with `FOLL_LONGTERM`.
    pub longterm_pages: u64,
    /// Sum of latencies (ns).
    pub latency_sum_ns: u64,
    /// The comm of the task that made this CPU's first call (0-padded);
    /// IO page faults: of the first group's reporting task.
    pub comm: [u8; crate::COMM_LEN],
    /// IO page faults: `dev_name()` of the key's device (0-padded,
    /// truncated); 0 otherwise.
    pub dev_name: [u8; crate::DEV_NAME_LEN],
    /// Calls per latency bucket ([`bucket_of`]).
    pub buckets: [u32; BUCKETS],
}

impl SummaryValue {
    /// All zero.
    pub const ZERO: SummaryValue = SummaryValue {
        calls: 0,
        errors: 0,
        pages: 0,
        longterm_pages: 0,
        latency_sum_ns: 0,
        comm: [0; crate::COMM_LEN],
        dev_name: [0; crate::DEV_NAME_LEN],
        buckets: [0; BUCKETS],
    };
}

/// ⌊log2 v⌋ for v ≥ 1 (0 for 0), without a count-leading-zeros
/// instruction (BPF has none): six compare-and-shift steps.
#[inline(always)]
pub const fn log2(v: u64) -> u32 {
    let mut v = v;
    let mut r = 0;
    if v >> 32 != 0 {
        v >>= 32;
        r += 32;
    }
    if v >> 16 != 0 {
        v >>= 16;
        r += 16;
    }
    if v >> 8 != 0 {
        v >>= 8;
        r += 8;
    }
    if v >> 4 != 0 {
        v >>= 4;
        r += 4;
    }
    if v >> 2 != 0 {
        v >>= 2;
        r += 2;
    }
    if v >> 1 != 0 {
        r += 1;
    }
    r
}

/// The bucket of a latency of `v` ns; always < [`BUCKETS`].
#[inline(always)]
pub const fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = log2(v);
    if e > MAX_EXP {
        return BUCKETS - 1;
    }
    // The top SUB_BITS + 1 bits: SUB ≤ m < 2 SUB.
    let m = v >> (e - SUB_BITS);
    let i = (e - SUB_BITS) as usize * SUB as usize + m as usize;
    if i < BUCKETS {
        i
    } else {
        BUCKETS - 1
    }
}

/// The smallest value of bucket `i`.
pub const fn bucket_low(i: usize) -> u64 {
    if i < 2 * SUB as usize {
        return i as u64;
    }
    let e = (i / SUB as usize) as u32 + SUB_BITS - 1;
    let m = (i % SUB as usize) as u64 + SUB;
    m << (e - SUB_BITS)
}

/// The largest value of bucket `i` (`u64::MAX` for the last one).
pub const fn bucket_high(i: usize) -> u64 {
    if i + 1 >= BUCKETS {
        u64::MAX
    } else {
        bucket_low(i + 1) - 1
    }
}

const _: () = {
    use core::mem::size_of;
    assert!(BUCKETS == 280);
    assert!(size_of::<SummaryKey>() == 8);
    assert!(size_of::<IopfSummaryKey>() == 16);
    assert!(size_of::<SummaryValue>() == 88 + 4 * BUCKETS);
    assert!(size_of::<IopfSlot>() == 56);
    assert!(IOPF_TABLE_ROWS == 1 << IOPF_ROW_BITS);
    assert!(size_of::<SummaryValue>().is_multiple_of(8));
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_values_in_order() {
        assert_eq!(bucket_low(0), 0);
        for i in 0..BUCKETS - 1 {
            let (lo, hi) = (bucket_low(i), bucket_high(i));
            assert!(lo <= hi, "bucket {i}: {lo}..{hi}");
            assert_eq!(bucket_of(lo), i, "low of {i}");
            assert_eq!(bucket_of(hi), i, "high of {i}");
            assert_eq!(bucket_low(i + 1), hi + 1);
            // At most 1/SUB of the lower bound wide (exact below 2 SUB).
            assert!((hi - lo + 1) * SUB <= lo.max(SUB), "bucket {i}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(1 << (MAX_EXP + 1)), BUCKETS - 1);
        assert_eq!(bucket_of((1 << (MAX_EXP + 1)) - 1), BUCKETS - 1);
        assert_eq!(bucket_of(1 << MAX_EXP), BUCKETS - SUB as usize);
        for v in [1u64, 7, 8, 15, 16, 17, 1000, 123_456, 9_999_999] {
            let i = bucket_of(v);
            assert!(bucket_low(i) <= v && v <= bucket_high(i), "{v}");
        }
    }

    #[test]
    fn log2_matches_leading_zeros() {
        for v in [1u64, 2, 3, 255, 256, 1 << 40, u64::MAX] {
            assert_eq!(log2(v), 63 - v.leading_zeros());
        }
    }

    #[test]
    fn iopf_slots_keep_the_groups_of_one_pasid_apart() {
        // Every group index of one (device, PASID) has its own slot.
        let dev = 0xffff_8880_0412_3400;
        let mut used = [false; IOPF_TABLE_SLOTS as usize];
        for g in 0..IOPF_GROUPS_PER_PASID {
            let s = iopf_slot(dev, 5, g) as usize;
            assert!(!used[s], "group {g}");
            used[s] = true;
        }
        // Group indices wrap at 9 bits, as the hardware's do.
        assert_eq!(iopf_slot(dev, 5, 3), iopf_slot(dev, 5, 515));
        // Neighbouring PASIDs and devices spread over the rows.
        let rows_used = |slot: &dyn Fn(u64) -> u32| {
            let mut rows = [false; IOPF_TABLE_ROWS as usize];
            for i in 0..64 {
                rows[(slot(i) / IOPF_GROUPS_PER_PASID) as usize] = true;
            }
            rows.iter().filter(|&&r| r).count()
        };
        assert!(rows_used(&|p| iopf_slot(dev, p as u32, 0)) >= 22);
        assert!(rows_used(&|d| iopf_slot(dev + d * 0x400, 5, 0)) >= 22);
        assert!(rows_used(&|d| iopf_slot(dev + d * 0x40, 5, 0)) >= 22);
    }

    #[test]
    fn ioctl_subs_round_trip() {
        for sub in 0..4 {
            assert_eq!(ioctl_sub(ioctl_cmd_of(sub)), sub);
        }
    }
}
