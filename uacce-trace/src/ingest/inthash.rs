//! A hasher for maps keyed by integers the kernel hands out (pids, fault
//! group keys): one rotate-xor-multiply step per integer instead of std's
//! SipHash. SipHash resists hash flooding, which such keys do not need, and
//! took an eighth of the ingest time (pids, `model`) and 13 % of decode +
//! aggregate (IOPF group keys, `pairing`) in `cargo xtask bench pipeline`.

use std::hash::{BuildHasherDefault, Hasher};

/// See the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct IntHasher(u64);

/// For `HashMap<K, V, BuildIntHasher>`.
pub type BuildIntHasher = BuildHasherDefault<IntHasher>;

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the odd multiplier keeps the low bits (the
        // bucket index) distinct for distinct integers.
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}
