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

/// Default bound of the `SUMMARY` map (keys: processes × kinds).
pub const SUMMARY_MAX_ENTRIES: u32 = 4096;

/// One key of the `SUMMARY` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SummaryKey {
    pub tgid: u32,
    /// [`SUMMARY_PIN`], [`SUMMARY_UNPIN`] or [`SUMMARY_IOCTL`].
    pub kind: u16,
    /// Ioctls: [`ioctl_sub`]; 0 otherwise.
    pub sub: u16,
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
    /// The comm of the task that made this CPU's first call (0-padded).
    pub comm: [u8; crate::COMM_LEN],
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
    assert!(size_of::<SummaryValue>() == 56 + 4 * BUCKETS);
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
    fn ioctl_subs_round_trip() {
        for sub in 0..4 {
            assert_eq!(ioctl_sub(ioctl_cmd_of(sub)), sub);
        }
    }
}
