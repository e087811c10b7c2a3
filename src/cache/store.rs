//! The cache's memory: entries packed one after another into fixed-size
//! pages, written as a log and recycled oldest page first, with a second
//! chance for entries hit since they were written (CLOCK, page by page).
//!
//! Memory is the pages plus the index, and nothing else: no allocation per
//! entry, so `max_bytes` bounds resident memory and a cache of small
//! answers costs about 80 octets a name. The store is split into shards,
//! each behind its own read-write lock: a hit holds a read lock while it
//! copies its entry out; an insert takes the write lock.

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
    max_pages: usize,
    /// The page being written.
    head: usize,
    index: Index,
    /// Where second-chance entries wait while their page is recycled.
    scratch: Box<[u8]>,
    hasher: RandomState,
}

#[derive(Debug)]
struct Page {
    bytes: Box<[u8]>,
    /// Octets written.
    fill: usize,
}

impl Shard {
    /// An empty shard that may grow to `max_pages` pages.
    pub(super) fn new(max_pages: usize, hasher: RandomState) -> Self {
        Self {
            pages: Vec::new(),
            max_pages: max_pages.max(MIN_PAGES),
            head: 0,
            index: Index::default(),
            scratch: vec![0u8; PAGE].into_boxed_slice(),
            hasher,
        }
    }

    /// Memory taken, in octets: pages, index and scratch page.
    pub(super) fn bytes(&self) -> usize {
        (self.pages.len() + 1) * PAGE + self.index.bytes()
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
            self.index.remove(slot);
            let times = entry.times();
            let servable = times.stored_at + Millis::from(times.lifetime) * 1000 >= horizon;
            if value & REFERENCED != 0 && servable {
                let start = usize::from(location.offset);
                self.scratch[kept..kept + entry.len()]
                    .copy_from_slice(&written[start..start + entry.len()]);
                kept += entry.len();
            } else {
                counters.evictions.inc();
            }
        }
        let Some(page) = self.pages.get_mut(number) else {
            return;
        };
        page.bytes[..kept].copy_from_slice(&self.scratch[..kept]);
        page.fill = kept;
        let mut offset = 0;
        while let Some(entry) = EntryView::at(&page.bytes[..kept], offset) {
            let tag = index::tag_of(self.hasher.hash_one(entry.key()));
            self.index.insert(
                tag,
                Location {
                    page: number as u16,
                    offset: offset as u16,
                },
            );
            offset += entry.len();
        }
    }
}

/// The entry at `location`, if the pages hold one there.
fn entry_at(pages: &[Page], location: Location) -> Option<EntryView<'_>> {
    let page = pages.get(usize::from(location.page))?;
    EntryView::at(&page.bytes[..page.fill], usize::from(location.offset))
}
