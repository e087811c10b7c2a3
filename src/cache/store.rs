//! The cache's memory: entries packed one after another into fixed-size
//! pages, written as a log and recycled oldest page first, with a second
//! chance for entries hit since they were written (CLOCK, page by page).
//!
//! Memory is the pages, the index and one scratch page, and nothing else:
//! no allocation per entry. Each shard keeps all three within its share of
//! `max_bytes`: pages may take 85% of it at first; when the index must
//! double, the pages it would crowd out are given up if not yet allocated,
//! and when they are, the index stops growing and the oldest pages are
//! recycled instead. So `max_bytes` bounds resident memory whatever the
//! size of the answers, and a cache of small answers costs about 80 octets
//! a name. The store is split into shards, each behind its own read-write
//! lock: a hit holds a read lock while it copies its entry out; an insert
//! takes the write lock.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use super::{
    clock::Millis,
    entry::{self, EntryView, Times},
    index::{self, Index, Location, PREFETCH_CLAIMED, REFERENCED},
};
use crate::{metrics::CacheCounters, wire::Answer};

/// Octets in a page.
pub(super) const PAGE: usize = 32 * 1024;
/// Largest entry: a quarter page, so a page always holds several.
pub(super) const MAX_ENTRY: usize = PAGE / 4;
/// Fewest pages a shard works with: one being written, others to recycle.
pub(super) const MIN_PAGES: usize = 3;
/// Share of a shard's memory its pages may take before the index claims
/// more; the rest is for the index and the scratch page.
const PAGE_SHARE_PERCENT: usize = 85;

/// A found entry, read under the shard's read lock.
pub(super) struct Found<'a> {
    /// The entry, in place.
    pub entry: EntryView<'a>,
    /// Whether this lookup claimed the entry's one prefetch.
    pub claimed_prefetch: bool,
}

/// One shard: its pages, the write position, its index.
#[derive(Debug)]
pub(super) struct Shard {
    pages: Vec<Page>,
    /// Pages it may allocate: lowered as the index grows.
    max_pages: usize,
    /// Octets the pages, index and scratch page may take together.
    budget: usize,
    /// The page being written.
    head: usize,
    index: Index,
    /// Where second-chance entries wait while their page is recycled;
    /// allocated at the first recycling, reserved in the budget from the
    /// start.
    scratch: Vec<u8>,
    hasher: RandomState,
}

#[derive(Debug)]
struct Page {
    bytes: Box<[u8]>,
    /// Octets written.
    fill: usize,
}

impl Shard {
    /// An empty shard whose pages, index and scratch page may take
    /// `budget` octets together (but never fewer than [`MIN_PAGES`] pages).
    pub(super) fn new(budget: usize, hasher: RandomState) -> Self {
        let for_pages = budget.saturating_sub(PAGE) * PAGE_SHARE_PERCENT / 100;
        Self {
            pages: Vec::new(),
            max_pages: (for_pages / PAGE).max(MIN_PAGES),
            budget,
            head: 0,
            index: Index::default(),
            scratch: Vec::new(),
            hasher,
        }
    }

    /// Memory taken, in octets: pages, index and scratch page.
    pub(super) fn bytes(&self) -> usize {
        self.pages.len() * PAGE + self.scratch.len() + self.index.bytes()
    }

    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// The entry stored under `key`, now marked as hit. When
    /// `due_for_prefetch` says so and no hit has yet, this one claims the
    /// entry's prefetch.
    pub(super) fn find(
        &self,
        key: &[u8],
        hash: u64,
        due_for_prefetch: impl Fn(&EntryView<'_>) -> bool,
    ) -> Option<Found<'_>> {
        let (slot, value, entry) = self.lookup(key, hash)?;
        // A hit on a popular name finds the bit set already: no write to
        // the slot's cache line, which every UDP worker reads.
        let before = match value & REFERENCED {
            0 => self.index.set(slot, REFERENCED),
            _ => value,
        };
        let claimed_prefetch = before & PREFETCH_CLAIMED == 0
            && due_for_prefetch(&entry)
            && self.index.set(slot, PREFETCH_CLAIMED) & PREFETCH_CLAIMED == 0;
        Some(Found {
            entry,
            claimed_prefetch,
        })
    }

    /// The entry under `key`, its slot and the slot's value.
    fn lookup(&self, key: &[u8], hash: u64) -> Option<(usize, u64, EntryView<'_>)> {
        self.index
            .probe(index::tag_of(hash))
            .find_map(|(slot, value)| {
                let entry = entry_at(&self.pages, Index::location(value))?;
                (entry.key() == key).then_some((slot, value, entry))
            })
    }

    /// Stores `answer` under `key`, replacing what was there. Entries not
    /// servable after `horizon` are dropped when their page is recycled.
    /// Returns false when it is too big to store.
    pub(super) fn insert(
        &mut self,
        key: &[u8],
        hash: u64,
        answer: &Answer,
        times: Times,
        horizon: Millis,
        counters: &CacheCounters,
    ) -> bool {
        let Some(len) = entry::encoded_len(key, answer).filter(|&len| len <= MAX_ENTRY) else {
            return false;
        };
        if let Some((slot, _, _)) = self.lookup(key, hash) {
            self.index.remove(slot);
        }
        self.make_index_room(horizon, counters);
        let Some(location) = self.reserve(len, horizon, counters) else {
            return false;
        };
        let Some(page) = self.pages.get_mut(usize::from(location.page)) else {
            return false;
        };
        let start = usize::from(location.offset);
        if entry::encode(key, answer, times, &mut page.bytes[start..start + len]).is_none() {
            page.fill = start;
            return false;
        }
        self.index.insert(index::tag_of(hash), location);
        true
    }

    /// Room in the index for one more entry, within the budget: the index
    /// doubles if the pages allocated leave room for it (and the pages
    /// not yet allocated that it needs are given up); otherwise the pages
    /// stop growing and the oldest are recycled until entries leave.
    fn make_index_room(&mut self, horizon: Millis, counters: &CacheCounters) {
        if !self.index.is_full() {
            return;
        }
        let fixed = PAGE + 2 * self.index.bytes();
        if self.pages.len() * PAGE + fixed <= self.budget {
            self.index.grow();
            let for_pages = (self.budget - fixed) / PAGE;
            self.max_pages = self.max_pages.min(for_pages).max(MIN_PAGES);
            return;
        }
        self.max_pages = self.pages.len();
        for _ in 0..=2 * self.max_pages {
            if !self.index.is_full() {
                return;
            }
            self.advance(horizon, counters);
        }
    }

    /// Room for `len` octets at the head. Every page recycled on the way
    /// clears the second-chance bits of what it keeps, so after two turns
    /// of the ring there is room for any entry up to [`MAX_ENTRY`].
    fn reserve(
        &mut self,
        len: usize,
        horizon: Millis,
        counters: &CacheCounters,
    ) -> Option<Location> {
        for _ in 0..=2 * self.max_pages {
            if let Some(page) = self.pages.get_mut(self.head)
                && page.fill + len <= PAGE
            {
                let offset = page.fill;
                page.fill += len;
                return Some(Location {
                    page: self.head as u16,
                    offset: offset as u16,
                });
            }
            self.advance(horizon, counters);
        }
        None
    }

    /// Moves the head to the next page: a new one while the shard may
    /// grow, else the oldest, recycled.
    fn advance(&mut self, horizon: Millis, counters: &CacheCounters) {
        if self.pages.len() < self.max_pages {
            self.pages.push(Page {
                bytes: vec![0u8; PAGE].into_boxed_slice(),
                fill: 0,
            });
            self.head = self.pages.len() - 1;
        } else {
            self.head = (self.head + 1) % self.pages.len();
            self.recycle(self.head, horizon, counters);
        }
    }

    /// Empties page `number`. Its entries leave the index; those hit since
    /// they were written and still servable after `horizon` are written
    /// back at the start of the page, without their bits.
    fn recycle(&mut self, number: usize, horizon: Millis, counters: &CacheCounters) {
        let Some(page) = self.pages.get(number) else {
            return;
        };
        self.scratch.resize(PAGE, 0);
        let written = &page.bytes[..page.fill];
        let mut kept = 0;
        let mut offset = 0;
        while let Some(entry) = EntryView::at(written, offset) {
            let location = Location {
                page: number as u16,
                offset: offset as u16,
            };
            offset += entry.len();
            let tag = index::tag_of(self.hasher.hash_one(entry.key()));
            // Not indexed here: replaced by a newer entry for the same key.
            let Some((slot, value)) = self.index.find_location(tag, location) else {
                continue;
            };
            let times = entry.times();
            let servable = times.expires_at() >= horizon;
            if value & REFERENCED != 0 && servable {
                let start = usize::from(location.offset);
                self.scratch[kept..kept + entry.len()]
                    .copy_from_slice(&written[start..start + entry.len()]);
                // Kept entries move down the page; an entry is never moved
                // onto one not yet visited, so each is still found where
                // it was.
                let moved_to = Location {
                    page: number as u16,
                    offset: kept as u16,
                };
                self.index.relocate(slot, moved_to);
                kept += entry.len();
            } else {
                self.index.remove(slot);
                counters.evictions.inc();
            }
        }
        let Some(page) = self.pages.get_mut(number) else {
            return;
        };
        page.bytes[..kept].copy_from_slice(&self.scratch[..kept]);
        page.fill = kept;
    }
}

/// The entry at `location`, if the pages hold one there.
fn entry_at(pages: &[Page], location: Location) -> Option<EntryView<'_>> {
    let page = pages.get(usize::from(location.page))?;
    EntryView::at(&page.bytes[..page.fill], usize::from(location.offset))
}
