//! Finds entries in the pages: an open-addressing hash table of 64-bit
//! slots, probed linearly, with backward-shift deletion.
//!
//! A slot packs, from the high bits down: 30 bits of the key's hash (the
//! tag, which also gives the slot's home position), a *referenced* bit set
//! by hits (second chance at recycling), a *prefetch claimed* bit, and the
//! entry's location (page and offset). Readers only load slots and set
//! those two bits atomically; the table's shape changes only under the
//! shard's write lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of a slot below the tag.
const TAG_SHIFT: u32 = 34;
/// Set by a hit: the entry earns a second chance when its page is recycled.
pub(super) const REFERENCED: u64 = 1 << 33;
/// Set by the one hit that starts a prefetch.
pub(super) const PREFETCH_CLAIMED: u64 = 1 << 32;
const LOCATION: u64 = u32::MAX as u64;
/// Grow when more than 4/5 of the slots are taken: the index is about a
/// fifth of the cache's memory, and linear probing stays short (about 3
/// slots for a hit, 13 for a miss, at the limit).
const MAX_LOAD_NUM: usize = 4;
const MAX_LOAD_DEN: usize = 5;
/// Slots of a new index.
const INITIAL_SLOTS: usize = 256;

/// Where an entry sits: page number and offset in the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Location {
    pub page: u16,
    pub offset: u16,
}

impl Location {
    fn pack(self) -> u64 {
        u64::from(self.page) << 16 | u64::from(self.offset)
    }

    fn unpack(slot: u64) -> Self {
        Self {
            page: (slot >> 16) as u16,
            offset: slot as u16,
        }
    }
}

/// The 30-bit tag of a hash, never 0 so that a taken slot is never 0.
pub(super) fn tag_of(hash: u64) -> u64 {
    (hash >> TAG_SHIFT).max(1)
}

/// The index of one shard.
#[derive(Debug)]
pub(super) struct Index {
    slots: Box<[AtomicU64]>,
    len: usize,
}

impl Default for Index {
    fn default() -> Self {
        Self::with_slots(INITIAL_SLOTS)
    }
}

impl Index {
    fn with_slots(count: usize) -> Self {
        Self {
            slots: (0..count).map(|_| AtomicU64::new(0)).collect(),
            len: 0,
        }
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Entries indexed.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Memory the slots take, in octets.
    pub(super) fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<AtomicU64>()
    }

    /// The slots whose tag is `tag`, in probe order: slot number, value.
    pub(super) fn probe(&self, tag: u64) -> impl Iterator<Item = (usize, u64)> + '_ {
        let mask = self.mask();
        let home = tag as usize & mask;
        (0..self.slots.len())
            .map(move |step| (home + step) & mask)
            .map(|slot| (slot, self.slots[slot].load(Ordering::Relaxed)))
            .take_while(|&(_, value)| value != 0)
            .filter(move |&(_, value)| value >> TAG_SHIFT == tag)
    }

    /// The slot that indexes `location` under `tag`.
    pub(super) fn find_location(&self, tag: u64, location: Location) -> Option<(usize, u64)> {
        self.probe(tag)
            .find(|&(_, value)| Self::location(value) == location)
    }

    /// The location a slot value points at.
    pub(super) fn location(value: u64) -> Location {
        Location::unpack(value & LOCATION)
    }

    /// Sets `bit` (REFERENCED or PREFETCH_CLAIMED) in `slot`; returns the
    /// value it had before. Allowed under the read lock.
    pub(super) fn set(&self, slot: usize, bit: u64) -> u64 {
        self.slots[slot].fetch_or(bit, Ordering::Relaxed)
    }

    /// Whether one more entry would load the table beyond 4/5: [`grow`]
    /// it, or remove entries, before inserting.
    ///
    /// [`grow`]: Index::grow
    pub(super) fn is_full(&self) -> bool {
        (self.len + 1) * MAX_LOAD_DEN > self.slots.len() * MAX_LOAD_NUM
    }

    /// Indexes `location` under `tag`; the key must not be indexed yet,
    /// and the table must not be full (the shard sees to both).
    pub(super) fn insert(&mut self, tag: u64, location: Location) {
        debug_assert!(!self.is_full(), "insert into a full index");
        self.place(tag << TAG_SHIFT | location.pack());
    }

    /// Puts a slot value at the first free slot from its home.
    fn place(&mut self, value: u64) {
        let mask = self.mask();
        let mut slot = (value >> TAG_SHIFT) as usize & mask;
        while self.slots[slot].load(Ordering::Relaxed) != 0 {
            slot = (slot + 1) & mask;
        }
        self.slots[slot].store(value, Ordering::Relaxed);
        self.len += 1;
    }

    /// Points `slot` at `location` instead, its flags cleared: the entry
    /// moved within the pages. Its key, so its place in the table, is the
    /// same.
    pub(super) fn relocate(&mut self, slot: usize, location: Location) {
        let value = self.slots[slot].load(Ordering::Relaxed);
        let tag = value >> TAG_SHIFT << TAG_SHIFT;
        self.slots[slot].store(tag | location.pack(), Ordering::Relaxed);
    }

    /// Empties `slot` and shifts back the entries after it that may move
    /// closer to their home, so probes never stop at a hole too early.
    pub(super) fn remove(&mut self, slot: usize) {
        let mask = self.mask();
        let mut hole = slot;
        let mut next = (hole + 1) & mask;
        loop {
            let value = self.slots[next].load(Ordering::Relaxed);
            if value == 0 {
                break;
            }
            let home = (value >> TAG_SHIFT) as usize & mask;
            // Moves if its home is not within (hole, next], cyclically.
            if (next.wrapping_sub(home) & mask) >= (next.wrapping_sub(hole) & mask) {
                self.slots[hole].store(value, Ordering::Relaxed);
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.slots[hole].store(0, Ordering::Relaxed);
        self.len -= 1;
    }

    /// Doubles the table, which takes [`Index::bytes`] more octets.
    pub(super) fn grow(&mut self) {
        let mut bigger = Self::with_slots(self.slots.len() * 2);
        for value in self.slots.iter().map(|slot| slot.load(Ordering::Relaxed)) {
            if value != 0 {
                bigger.place(value);
            }
        }
        *self = bigger;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(page: u16, offset: u16) -> Location {
        Location { page, offset }
    }

    fn locations(index: &Index, tag: u64) -> Vec<Location> {
        index
            .probe(tag)
            .map(|(_, value)| Index::location(value))
            .collect()
    }

    #[test]
    fn finds_what_it_holds_across_collisions() {
        let mut index = Index::default();
        // Three tags with the same home slot, and one elsewhere.
        let home = 5;
        let (a, b, c, d) = (home | 1 << 20, home | 2 << 20, home | 3 << 20, 9);
        index.insert(a, at(0, 0));
        index.insert(b, at(0, 64));
        index.insert(c, at(1, 0));
        index.insert(d, at(2, 8));
        assert_eq!(locations(&index, b), [at(0, 64)]);
        assert_eq!(locations(&index, d), [at(2, 8)]);
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn removal_keeps_later_collisions_reachable() {
        let mut index = Index::default();
        let tags: Vec<u64> = (1..=6).map(|i| 7 | i << 20).collect();
        for (i, &tag) in tags.iter().enumerate() {
            index.insert(tag, at(0, i as u16));
        }
        let (slot, _) = index.probe(tags[1]).next().unwrap();
        index.remove(slot);
        for (i, &tag) in tags.iter().enumerate().filter(|&(i, _)| i != 1) {
            assert_eq!(locations(&index, tag), [at(0, i as u16)], "tag {i}");
        }
        assert!(locations(&index, tags[1]).is_empty());
        assert_eq!(index.len(), 5);
    }

    #[test]
    fn wraps_around_the_end_of_the_table() {
        let mut index = Index::default();
        let last = INITIAL_SLOTS as u64 - 1;
        let tags = [last | 1 << 20, last | 2 << 20, last | 3 << 20];
        for (i, &tag) in tags.iter().enumerate() {
            index.insert(tag, at(3, i as u16));
        }
        let (slot, _) = index.probe(tags[0]).next().unwrap();
        index.remove(slot);
        assert_eq!(locations(&index, tags[2]), [at(3, 2)]);
    }

    #[test]
    fn grows_and_keeps_bits() {
        let tag_of_entry = |i: u64| tag_of(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut index = Index::default();
        for i in 0..8u64 {
            index.insert(tag_of_entry(i), at(0, i as u16));
        }
        let tag = tag_of_entry(7);
        let (slot, _) = index.probe(tag).next().unwrap();
        assert_eq!(index.set(slot, REFERENCED) & REFERENCED, 0);
        assert_eq!(index.set(slot, REFERENCED) & REFERENCED, REFERENCED);
        let small = index.bytes();
        for i in 8..1000u64 {
            if index.is_full() {
                index.grow();
            }
            index.insert(tag_of_entry(i), at(0, i as u16));
        }
        assert!(index.bytes() > small, "the index grew");
        assert!(index.bytes() >= 1000 * 8 * MAX_LOAD_DEN / MAX_LOAD_NUM);
        // The bit set before the growth is still set after it.
        let (_, value) = index.probe(tag).next().unwrap();
        assert_eq!(value & REFERENCED, REFERENCED);
        assert_eq!(locations(&index, tag), [at(0, 7)]);
    }
}
