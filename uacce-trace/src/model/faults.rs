//! Fault addresses of one process, counted per block and coalesced into
//! regions, with how many faults hit a range the process had pinned at that
//! moment. Pure; imports no aya, tokio or ratatui and never reads a clock.
//!
//! Memory is bounded: faults are counted per block of `2^shift` bytes
//! (a page, 4 KiB, at first). When more than `max_blocks` distinct blocks
//! are held the block size doubles and neighbouring blocks merge, as often
//! as needed: a process faulting all over its address space ends up with
//! coarser regions, never with unbounded memory. Regions are maximal runs
//! of adjacent non-empty blocks.

use std::collections::BTreeMap;

/// Starting block size: 4 KiB pages.
pub const INITIAL_SHIFT: u32 = 12;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Block {
    faults: u64,
    in_pinned: u64,
}

/// A run of adjacent faulting blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRegion {
    /// First byte of the region.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Faults in the region.
    pub faults: u64,
    /// Of those, faults on an address that was pinned when it faulted.
    pub in_pinned: u64,
}

/// Fault addresses of one process.
#[derive(Clone, Debug)]
pub struct FaultMap {
    shift: u32,
    max_blocks: usize,
    blocks: BTreeMap<u64, Block>,
    total: u64,
    in_pinned: u64,
    /// Of `total`: faults counted without an address (summary mode).
    unplaced: u64,
}

impl FaultMap {
    /// An empty map holding at most `max_blocks` blocks (at least 1).
    pub fn new(max_blocks: usize) -> FaultMap {
        FaultMap {
            shift: INITIAL_SHIFT,
            max_blocks: max_blocks.max(1),
            blocks: BTreeMap::new(),
            total: 0,
            in_pinned: 0,
            unplaced: 0,
        }
    }

    /// Count `n` faults whose addresses are not known (summary mode counts
    /// them in the kernel): in [`FaultMap::total`], in no region.
    pub fn count_unplaced(&mut self, n: u64) {
        self.total += n;
        self.unplaced += n;
    }

    /// Faults counted without an address ([`FaultMap::count_unplaced`]).
    pub fn unplaced(&self) -> u64 {
        self.unplaced
    }

    /// Count one fault at `addr`; `pinned` when the address was pinned.
    pub fn record(&mut self, addr: u64, pinned: bool) {
        self.total += 1;
        let b = self.blocks.entry(addr >> self.shift).or_default();
        b.faults += 1;
        if pinned {
            b.in_pinned += 1;
            self.in_pinned += 1;
        }
        while self.blocks.len() > self.max_blocks && self.shift < 63 {
            self.coarsen();
        }
    }

    fn coarsen(&mut self) {
        self.shift += 1;
        let old = std::mem::take(&mut self.blocks);
        for (k, b) in old {
            let nb = self.blocks.entry(k >> 1).or_default();
            nb.faults += b.faults;
            nb.in_pinned += b.in_pinned;
        }
    }

    /// All faults recorded.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Faults on an address that was pinned at the time.
    pub fn in_pinned(&self) -> u64 {
        self.in_pinned
    }

    /// Current block size in bytes.
    pub fn block_bytes(&self) -> u64 {
        1u64 << self.shift
    }

    /// Maximal runs of adjacent faulting blocks, sorted by address.
    pub fn regions(&self) -> Vec<FaultRegion> {
        let mut out: Vec<FaultRegion> = Vec::new();
        for (&k, b) in &self.blocks {
            let start = k << self.shift;
            let end = start.saturating_add(1u64 << self.shift);
            match out.last_mut() {
                Some(r) if r.end == start => {
                    r.end = end;
                    r.faults += b.faults;
                    r.in_pinned += b.in_pinned;
                }
                _ => out.push(FaultRegion {
                    start,
                    end,
                    faults: b.faults,
                    in_pinned: b.in_pinned,
                }),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_pages_coalesce() {
        let mut f = FaultMap::new(16);
        f.record(0x1000, false);
        f.record(0x1fff, true);
        f.record(0x2000, false);
        f.record(0x9000, false);
        assert_eq!(
            f.regions(),
            vec![
                FaultRegion {
                    start: 0x1000,
                    end: 0x3000,
                    faults: 3,
                    in_pinned: 1
                },
                FaultRegion {
                    start: 0x9000,
                    end: 0xa000,
                    faults: 1,
                    in_pinned: 0
                }
            ]
        );
        assert_eq!((f.total(), f.in_pinned()), (4, 1));
    }

    #[test]
    fn unplaced_faults_count_in_the_total_only() {
        let mut f = FaultMap::new(16);
        f.record(0x1000, false);
        f.count_unplaced(63);
        assert_eq!((f.total(), f.unplaced(), f.regions().len()), (64, 63, 1));
        assert_eq!(f.regions()[0].faults, 1);
    }

    #[test]
    fn coarsens_when_full() {
        let mut f = FaultMap::new(4);
        for i in 0..64u64 {
            f.record(i * 0x10000, false);
        }
        assert!(f.blocks.len() <= 4);
        assert!(f.block_bytes() > 4096);
        assert_eq!(f.regions().iter().map(|r| r.faults).sum::<u64>(), 64);
    }
}
