//! Pin ledger: what one process has pinned right now, from pin/unpin events
//! and pin ioctls. Pure data structure; imports no aya, tokio or ratatui and
//! never reads a clock.
//!
//! # How the ledger works (and where it has to guess)
//!
//! Three facts are kept per process:
//!
//! 1. **Pinned pages — exact.** `pin_user_pages*` calls add the pages they
//!    pinned (`ret` > 0), `unpin_user_page*` calls subtract the pages they
//!    released. If a process unpins more than it was seen pinning (pins made
//!    before tracing started, or pages unpinned by another task on its behalf)
//!    the count stays at 0 and the excess is counted in
//!    [`LedgerSummary::unmatched_unpin_pages`], so
//!    `pinned_pages == pin_pages_total - unpin_pages_total + unmatched_unpin_pages`
//!    always holds and the count is never negative.
//! 2. **Grants — best effort.** Every successful pin call with an address
//!    becomes a grant `(start, pages)`. Unpin events carry only a page count,
//!    so they consume grants by rule: a grant of exactly that many pages,
//!    searched newest first among the last [`EXACT_MATCH_WINDOW`] grants
//!    (drivers usually release what they pinned in one call); otherwise
//!    pages of unknown address first, then the oldest grants (FIFO, shrinking
//!    the oldest from its start). Invariant: the pages of all grants plus
//!    `unknown_address_pages` equal `pinned_pages`. A process with more than
//!    `max_grants` grants folds its oldest grants into the unknown-address
//!    pages (memory stays bounded; ranges get less precise, never wrong in
//!    the page count).
//! 3. **Ioctl ranges — exact.** `uacce_ctrl`/`mempinfd` PIN and UNPIN ioctls
//!    carry `addr` and `size`: successful PINs add the page-aligned range,
//!    UNPINs remove it. An UNPIN also tells us that grants inside its range
//!    are gone: if an earlier page-only unpin consumed a different grant of
//!    the same size, the overlapping part of the remaining grants is turned
//!    into unknown-address pages (honest rather than wrong).
//!
//! The pinned *ranges* reported (and used to decide whether a fault hit a
//! pinned range) are the union of grant ranges and ioctl ranges, coalesced:
//! sorted, never overlapping, never adjacent. Pages pinned twice (two pin
//! references on one page) count twice in `pinned_pages` (as in
//! `/proc/vmstat` `nr_foll_pin_acquired`) but once in the ranges.

use std::collections::{BTreeMap, VecDeque};

/// How many of the newest grants an unpin searches for one of exactly its size.
pub const EXACT_MATCH_WINDOW: usize = 64;

/// A set of half-open address ranges `[start, end)`, kept coalesced: sorted,
/// non-overlapping, non-adjacent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// start → end.
    map: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// An empty set.
    pub fn new() -> RangeSet {
        RangeSet::default()
    }

    /// True when no range is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Add `[start, end)`, merging with overlapping or adjacent ranges.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        // A range starting at or before `start` that reaches it.
        if let Some((&ps, &pe)) = self.map.range(..=s).next_back() {
            if pe >= s {
                s = ps;
                e = e.max(pe);
            }
        }
        let covered: Vec<u64> = self.map.range(s..=e).map(|(&k, _)| k).collect();
        for k in covered {
            if let Some(ke) = self.map.remove(&k) {
                e = e.max(ke);
            }
        }
        self.map.insert(s, e);
    }

    /// Remove `[start, end)`, splitting ranges that stick out on either side.
    pub fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut touched: Vec<(u64, u64)> = Vec::new();
        if let Some((&ps, &pe)) = self.map.range(..start).next_back() {
            if pe > start {
                touched.push((ps, pe));
            }
        }
        touched.extend(self.map.range(start..end).map(|(&s, &e)| (s, e)));
        for (s, e) in touched {
            self.map.remove(&s);
            if s < start {
                self.map.insert(s, start);
            }
            if e > end {
                self.map.insert(end, e);
            }
        }
    }

    /// True when `addr` lies in a range.
    pub fn contains(&self, addr: u64) -> bool {
        self.map
            .range(..=addr)
            .next_back()
            .is_some_and(|(_, &e)| addr < e)
    }

    /// The ranges, sorted by start.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.map.iter().map(|(&s, &e)| (s, e))
    }

    /// Total bytes covered.
    pub fn bytes(&self) -> u64 {
        self.map
            .iter()
            .fold(0u64, |acc, (&s, &e)| acc.saturating_add(e - s))
    }
}

/// Pages pinned by one pin call at a known address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Grant {
    start: u64,
    pages: u64,
}

/// Totals of a [`PinLedger`], cheap to copy into snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerSummary {
    /// Pages pinned now (exact, see the module docs).
    pub pinned_pages: u64,
    /// Pages pinned by all successful pin calls seen.
    pub pin_pages_total: u64,
    /// Pages released by all unpin calls seen.
    pub unpin_pages_total: u64,
    /// Unpinned pages that no seen pin accounts for.
    pub unmatched_unpin_pages: u64,
    /// Pinned pages whose address is not known (see the module docs).
    pub unknown_address_pages: u64,
    /// Successful pin calls.
    pub pin_calls: u64,
    /// Failed pin calls (`ret` < 0).
    pub pin_errors: u64,
    /// Unpin calls.
    pub unpin_calls: u64,
    /// Pages pinned with `FOLL_LONGTERM`.
    pub longterm_pages_total: u64,
    /// Successful PIN ioctls.
    pub pin_ioctls: u64,
    /// Successful UNPIN ioctls.
    pub unpin_ioctls: u64,
    /// Pin/unpin ioctls that failed.
    pub ioctl_errors: u64,
    /// Pages pinned by the `pin_user_pages*` calls inside PIN ioctls.
    pub ioctl_pin_pages: u64,
    /// Pages released by the `unpin_user_page*` calls inside UNPIN ioctls.
    pub ioctl_unpin_pages: u64,
}

impl LedgerSummary {
    /// Add another process's totals (used when folding into "other").
    pub fn absorb(&mut self, o: &LedgerSummary) {
        self.pinned_pages = self.pinned_pages.saturating_add(o.pinned_pages);
        self.pin_pages_total = self.pin_pages_total.saturating_add(o.pin_pages_total);
        self.unpin_pages_total = self.unpin_pages_total.saturating_add(o.unpin_pages_total);
        self.unmatched_unpin_pages = self
            .unmatched_unpin_pages
            .saturating_add(o.unmatched_unpin_pages);
        self.unknown_address_pages = self
            .unknown_address_pages
            .saturating_add(o.unknown_address_pages);
        self.pin_calls = self.pin_calls.saturating_add(o.pin_calls);
        self.pin_errors = self.pin_errors.saturating_add(o.pin_errors);
        self.unpin_calls = self.unpin_calls.saturating_add(o.unpin_calls);
        self.longterm_pages_total = self
            .longterm_pages_total
            .saturating_add(o.longterm_pages_total);
        self.pin_ioctls = self.pin_ioctls.saturating_add(o.pin_ioctls);
        self.unpin_ioctls = self.unpin_ioctls.saturating_add(o.unpin_ioctls);
        self.ioctl_errors = self.ioctl_errors.saturating_add(o.ioctl_errors);
        self.ioctl_pin_pages = self.ioctl_pin_pages.saturating_add(o.ioctl_pin_pages);
        self.ioctl_unpin_pages = self.ioctl_unpin_pages.saturating_add(o.ioctl_unpin_pages);
    }

    /// Pin and unpin ioctls, failed ones included.
    pub fn ioctl_calls(&self) -> u64 {
        self.pin_ioctls
            .saturating_add(self.unpin_ioctls)
            .saturating_add(self.ioctl_errors)
    }
}

/// Live pinned pages and ranges of one process.
#[derive(Clone, Debug)]
pub struct PinLedger {
    page_size: u64,
    max_grants: usize,
    sum: LedgerSummary,
    grants: VecDeque<Grant>,
    ioctl: RangeSet,
    /// Union of grant and ioctl ranges; `None` when it must be rebuilt.
    union: Option<RangeSet>,
}

impl PinLedger {
    /// An empty ledger. `page_size` must be a power of two; `max_grants` ≥ 1.
    pub fn new(page_size: u64, max_grants: usize) -> PinLedger {
        PinLedger {
            page_size: page_size.max(1),
            max_grants: max_grants.max(1),
            sum: LedgerSummary::default(),
            grants: VecDeque::new(),
            ioctl: RangeSet::new(),
            union: Some(RangeSet::new()),
        }
    }

    /// Totals.
    pub fn summary(&self) -> LedgerSummary {
        self.sum
    }

    /// Pages held by the grants (for invariant checks).
    pub fn grant_pages(&self) -> u64 {
        self.grants
            .iter()
            .fold(0u64, |acc, g| acc.saturating_add(g.pages))
    }

    /// A successful or failed pin call: `start` user address (0 unknown),
    /// `ret` pages pinned or -errno.
    pub fn pin(&mut self, start: u64, ret: i64, longterm: bool) {
        let Ok(pages) = u64::try_from(ret) else {
            self.sum.pin_errors += 1;
            return;
        };
        self.sum.pin_calls += 1;
        if pages == 0 {
            return;
        }
        // Page counts saturate: a corrupt recording may claim 2^63 pages.
        self.sum.pin_pages_total = self.sum.pin_pages_total.saturating_add(pages);
        self.sum.pinned_pages = self.sum.pinned_pages.saturating_add(pages);
        if longterm {
            self.sum.longterm_pages_total = self.sum.longterm_pages_total.saturating_add(pages);
        }
        if start == 0 {
            self.sum.unknown_address_pages = self.sum.unknown_address_pages.saturating_add(pages);
            return;
        }
        let start = start & !(self.page_size - 1);
        self.grants.push_back(Grant { start, pages });
        while self.grants.len() > self.max_grants {
            if let Some(old) = self.grants.pop_front() {
                self.sum.unknown_address_pages =
                    self.sum.unknown_address_pages.saturating_add(old.pages);
            }
        }
        self.union = None;
    }

    /// Summary mode: `ok` successful pin calls that pinned `pages` pages
    /// at addresses not known (`longterm` of them with `FOLL_LONGTERM`),
    /// and `errors` failed ones.
    pub fn pin_counted(&mut self, ok: u64, errors: u64, pages: u64, longterm: u64) {
        self.sum.pin_calls = self.sum.pin_calls.saturating_add(ok);
        self.sum.pin_errors = self.sum.pin_errors.saturating_add(errors);
        self.sum.pin_pages_total = self.sum.pin_pages_total.saturating_add(pages);
        self.sum.pinned_pages = self.sum.pinned_pages.saturating_add(pages);
        self.sum.longterm_pages_total = self.sum.longterm_pages_total.saturating_add(longterm);
        self.sum.unknown_address_pages = self.sum.unknown_address_pages.saturating_add(pages);
    }

    /// Summary mode: `calls` unpin calls that released `pages` pages.
    pub fn unpin_counted(&mut self, calls: u64, pages: u64) {
        self.sum.unpin_calls = self.sum.unpin_calls.saturating_add(calls);
        self.release(pages);
    }

    /// Summary mode: `ok` successful pin (`pin`) or unpin ioctls and
    /// `errors` failed ones, ranges not known.
    pub fn ioctls_counted(&mut self, pin: bool, ok: u64, errors: u64) {
        if pin {
            self.sum.pin_ioctls = self.sum.pin_ioctls.saturating_add(ok);
        } else {
            self.sum.unpin_ioctls = self.sum.unpin_ioctls.saturating_add(ok);
        }
        self.sum.ioctl_errors = self.sum.ioctl_errors.saturating_add(errors);
    }

    /// Pages (un)pinned by the pin calls inside pin (`pin`) or unpin
    /// ioctls, as the kernel credited them to the ioctl (both modes). The
    /// pin calls themselves are counted by [`PinLedger::pin`] and
    /// [`PinLedger::unpin`]; this only says how many pages the ioctls moved.
    pub fn ioctl_pages(&mut self, pin: bool, pages: u64) {
        let slot = if pin {
            &mut self.sum.ioctl_pin_pages
        } else {
            &mut self.sum.ioctl_unpin_pages
        };
        *slot = slot.saturating_add(pages);
    }

    /// An unpin call that released `pages` pages (address unknown).
    pub fn unpin(&mut self, pages: u64) {
        self.sum.unpin_calls += 1;
        self.release(pages);
    }

    /// `pages` pages were released: the grants they most likely came from
    /// are dropped.
    fn release(&mut self, pages: u64) {
        if pages == 0 {
            return;
        }
        self.sum.unpin_pages_total = self.sum.unpin_pages_total.saturating_add(pages);
        let take = pages.min(self.sum.pinned_pages);
        self.sum.unmatched_unpin_pages =
            self.sum.unmatched_unpin_pages.saturating_add(pages - take);
        self.sum.pinned_pages -= take;
        if take == 0 {
            return;
        }
        self.union = None;
        // 1. A grant of exactly this size, newest first.
        let window_start = self.grants.len().saturating_sub(EXACT_MATCH_WINDOW);
        if let Some(i) = (window_start..self.grants.len())
            .rev()
            .find(|&i| self.grants[i].pages == take)
        {
            self.grants.remove(i);
            return;
        }
        // 2. Pages of unknown address, then 3. the oldest grants.
        let mut left = take;
        let from_unknown = left.min(self.sum.unknown_address_pages);
        self.sum.unknown_address_pages -= from_unknown;
        left -= from_unknown;
        while left > 0 {
            let Some(front) = self.grants.front_mut() else {
                break;
            };
            if front.pages <= left {
                left -= front.pages;
                self.grants.pop_front();
            } else {
                front.pages -= left;
                front.start = front
                    .start
                    .saturating_add(left.saturating_mul(self.page_size));
                left = 0;
            }
        }
        // `left` is 0 here by the invariant grants + unknown == pinned ≥ take.
        if left > 0 {
            self.sum.unknown_address_pages = 0;
        }
    }

    fn aligned(&self, addr: u64, size: u64) -> (u64, u64) {
        let mask = self.page_size - 1;
        let start = addr & !mask;
        let end = addr.saturating_add(size).saturating_add(mask) & !mask;
        (start, end)
    }

    /// A PIN ioctl covering `[addr, addr + size)`; `ok` when it succeeded.
    pub fn pin_ioctl(&mut self, addr: u64, size: u64, ok: bool) {
        if !ok {
            self.sum.ioctl_errors += 1;
            return;
        }
        self.sum.pin_ioctls += 1;
        let (s, e) = self.aligned(addr, size);
        self.ioctl.insert(s, e);
        self.union = None;
    }

    /// An UNPIN ioctl covering `[addr, addr + size)`; `ok` when it succeeded.
    pub fn unpin_ioctl(&mut self, addr: u64, size: u64, ok: bool) {
        if !ok {
            self.sum.ioctl_errors += 1;
            return;
        }
        self.sum.unpin_ioctls += 1;
        let (s, e) = self.aligned(addr, size);
        self.ioctl.remove(s, e);
        // Grants overlapping the released range: their address is no longer
        // believable; keep their pages, forget where they are.
        let page = self.page_size;
        let mut kept = VecDeque::with_capacity(self.grants.len());
        for g in self.grants.drain(..) {
            let g_end = g.start.saturating_add(g.pages.saturating_mul(page));
            if g_end <= s || g.start >= e {
                kept.push_back(g);
                continue;
            }
            let mut moved = g.pages;
            if g.start < s {
                let pages = (s - g.start) / page;
                kept.push_back(Grant {
                    start: g.start,
                    pages,
                });
                moved -= pages;
            }
            if g_end > e {
                let pages = (g_end - e) / page;
                kept.push_back(Grant { start: e, pages });
                moved -= pages;
            }
            self.sum.unknown_address_pages = self.sum.unknown_address_pages.saturating_add(moved);
        }
        self.grants = kept;
        self.union = None;
    }

    fn rebuild(&self) -> RangeSet {
        let mut set = self.ioctl.clone();
        for g in &self.grants {
            set.insert(
                g.start,
                g.start
                    .saturating_add(g.pages.saturating_mul(self.page_size)),
            );
        }
        set
    }

    /// The pinned ranges (union of grants and ioctl ranges), coalesced.
    pub fn ranges(&mut self) -> &RangeSet {
        if self.union.is_none() {
            self.union = Some(self.rebuild());
        }
        self.union.get_or_insert_with(RangeSet::new)
    }

    /// The pinned ranges without caching (for `&self` users).
    pub fn ranges_now(&self) -> RangeSet {
        match &self.union {
            Some(u) => u.clone(),
            None => self.rebuild(),
        }
    }

    /// True when `addr` lies in a pinned range right now.
    pub fn is_pinned(&mut self, addr: u64) -> bool {
        self.ranges().contains(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 4096;

    #[test]
    fn rangeset_merges_and_splits() {
        let mut r = RangeSet::new();
        r.insert(10, 20);
        r.insert(30, 40);
        r.insert(20, 30);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(10, 40)]);
        r.remove(15, 25);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(10, 15), (25, 40)]);
        r.insert(0, 100);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(0, 100)]);
        r.remove(0, 100);
        assert!(r.is_empty());
        r.insert(5, 5);
        assert!(r.is_empty());
    }

    #[test]
    fn exact_size_unpin_removes_that_grant() {
        let mut l = PinLedger::new(P, 16);
        l.pin(0x10000, 4, false);
        l.pin(0x80000, 2, true);
        l.unpin(4);
        assert_eq!(l.summary().pinned_pages, 2);
        assert_eq!(
            l.ranges().iter().collect::<Vec<_>>(),
            vec![(0x80000, 0x80000 + 2 * P)]
        );
        assert_eq!(l.summary().longterm_pages_total, 2);
    }

    #[test]
    fn partial_unpin_shrinks_oldest_grant() {
        let mut l = PinLedger::new(P, 16);
        l.pin(0x10000, 4, false);
        l.pin(0x80000, 4, false);
        l.unpin(3);
        assert_eq!(
            l.ranges().iter().collect::<Vec<_>>(),
            vec![
                (0x10000 + 3 * P, 0x10000 + 4 * P),
                (0x80000, 0x80000 + 4 * P)
            ]
        );
        assert!(l.is_pinned(0x80000));
        assert!(!l.is_pinned(0x10000));
    }

    #[test]
    fn over_unpin_is_counted_not_negative() {
        let mut l = PinLedger::new(P, 16);
        l.pin(0x10000, 1, false);
        l.unpin(5);
        let s = l.summary();
        assert_eq!(
            (s.pinned_pages, s.unmatched_unpin_pages, s.unpin_pages_total),
            (0, 4, 5)
        );
        assert!(l.ranges().is_empty());
    }

    #[test]
    fn ioctl_ranges_and_relocation() {
        let mut l = PinLedger::new(P, 16);
        l.pin_ioctl(0x20000, 3 * P, true);
        l.pin(0x20000, 3, false);
        assert_eq!(
            l.ranges().iter().collect::<Vec<_>>(),
            vec![(0x20000, 0x20000 + 3 * P)]
        );
        l.unpin_ioctl(0x20000 + P, P, true);
        // The grant's middle page is now of unknown address.
        let s = l.summary();
        assert_eq!((s.pinned_pages, s.unknown_address_pages), (3, 1));
        assert!(!l.is_pinned(0x20000 + P));
        assert!(l.is_pinned(0x20000));
        l.pin_ioctl(0, 0, false);
        assert_eq!(l.summary().ioctl_errors, 1);
    }

    #[test]
    fn grant_cap_folds_into_unknown() {
        let mut l = PinLedger::new(P, 2);
        for i in 0..5u64 {
            l.pin(0x100000 * (i + 1), 1, false);
        }
        let s = l.summary();
        assert_eq!((s.pinned_pages, s.unknown_address_pages), (5, 3));
        assert_eq!(l.grant_pages() + s.unknown_address_pages, s.pinned_pages);
    }

    #[test]
    fn failed_pins_count_as_errors() {
        let mut l = PinLedger::new(P, 4);
        l.pin(0x1000, -14, false);
        assert_eq!(l.summary().pin_errors, 1);
        assert_eq!(l.summary().pinned_pages, 0);
    }
}
