//! The answer cache: wire-format answers keyed by question, bounded by
//! memory, answered from on the hot path without allocating.
//!
//! - [`Cache::answer`] writes a fresh cached answer for a client, or says
//!   it is stale but servable (RFC 8767), or missing;
//! - [`Cache::answer_stale`] writes a stale one when upstreams fail;
//! - [`Cache::insert`] decides with `lifetime` whether and how long an
//!   answer is kept (RFC 2308 for negative answers) and stores it;
//! - `store` holds the entries in pages, `index` finds them, `entry` is
//!   their layout; [`KeyBuf`] builds keys on the stack, [`Clock`] gives
//!   the time.
//!
//! Storage is written by hand because it is the hot path and the memory
//! bound: general-purpose caches (quick_cache was the first version) cost
//! an allocation or three per entry, which made a cache of small answers
//! take about 340 octets a name and, with allocator fragmentation, up to
//! 1.7 times `max_bytes` of resident memory. Pages cost about 80 octets a
//! name and exactly what they are.

mod clock;
mod entry;
mod index;
mod key;
mod lifetime;
mod store;

use std::{
    hash::BuildHasher,
    sync::{Arc, RwLock, RwLockReadGuard},
};

use foldhash::fast::RandomState;

pub use clock::{Clock, ManualClock, Millis};
pub use entry::{STALE_TTL, Times};

use self::entry::Ttls;
pub use key::{Key, KeyBuf};
pub use lifetime::{Limits, SERVFAIL_TTL};

use self::store::{PAGE, Shard};
use crate::{
    config::CacheConfig,
    metrics::CacheCounters,
    wire::{Answer, Recipient, Written},
};

/// Most shards; fewer for small caches, so each keeps enough pages.
const MAX_SHARDS: usize = 16;
/// Share of its lifetime after which a hit triggers a prefetch: 90 %,
/// leaving the last 10 % (RFC 8767 §5 and unbound's prefetch).
const PREFETCH_AT_PERCENT: u64 = 90;

/// What the cache did for a client's query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// Answered from a fresh entry.
    Fresh(Written),
    /// Answered from a fresh entry near its end: refresh it in the
    /// background (this hit is the only one told so).
    Prefetch(Written),
    /// An expired entry is there, servable if upstreams fail or are slow.
    Stale,
    /// Nothing usable.
    Miss,
}

/// The answer cache.
#[derive(Debug)]
pub struct Cache {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    limits: Limits,
    /// How long past expiry an entry may be served stale; 0 when off.
    stale_for: Millis,
    prefetch: bool,
    counters: Arc<CacheCounters>,
}

impl Cache {
    /// An empty cache sized and tuned by `config`. Pages are allocated as
    /// answers arrive, up to `max_bytes` with the index.
    pub fn new(config: &CacheConfig, counters: Arc<CacheCounters>) -> Self {
        // MAX_SHARDS is a power of two, so rounding up stays within it.
        let shards = (config.max_bytes / (64 * PAGE))
            .clamp(1, MAX_SHARDS)
            .next_power_of_two();
        let budget = config.max_bytes / shards;
        let hasher = RandomState::default();
        let shards = (0..shards)
            .map(|_| RwLock::new(Shard::new(budget, hasher.clone())))
            .collect();
        let stale_for = if config.serve_stale {
            config.max_stale.as_millis() as Millis
        } else {
            0
        };
        Self {
            shards,
            hasher,
            limits: config.limits,
            stale_for,
            prefetch: config.prefetch,
            counters,
        }
    }

    /// The shard that holds keys hashing to `hash`.
    fn shard_of(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[hash as usize & (self.shards.len() - 1)]
    }

    /// `shard`, read-locked. A panic elsewhere while holding a lock leaves
    /// the shard consistent (it only ever holds whole entries), so poison
    /// is ignored.
    fn read<'a>(&self, shard: &'a RwLock<Shard>) -> RwLockReadGuard<'a, Shard> {
        shard
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the cached answer for `to` into `out` if it is fresh.
    /// Allocation-free as long as `out` has the capacity (the UDP
    /// listener's has 64 KiB).
    pub fn answer(&self, key: &KeyBuf, to: &Recipient<'_>, now: Millis, out: &mut Vec<u8>) -> Hit {
        let hash = self.hasher.hash_one(key.as_bytes());
        let shard = self.read(self.shard_of(hash));
        // Only a fresh entry near its end: an expired one is refreshed by
        // the miss it causes.
        let due = |times: Times| {
            self.prefetch && now >= times.after(PREFETCH_AT_PERCENT) && now < times.expires_at()
        };
        let Some(found) = shard.find(key.as_bytes(), hash, |entry| due(entry.times())) else {
            self.counters.misses.inc();
            return Hit::Miss;
        };
        let times = found.entry.times();
        let fresh_until = times.expires_at();
        if now >= fresh_until {
            self.counters.misses.inc();
            return if now < fresh_until + self.stale_for {
                Hit::Stale
            } else {
                Hit::Miss
            };
        }
        self.counters.hits.inc();
        let Ok(written) = found.entry.write(to, Ttls::Aged { now }, out) else {
            return Hit::Miss;
        };
        if found.claimed_prefetch {
            self.counters.prefetches.inc();
            Hit::Prefetch(written)
        } else {
            Hit::Fresh(written)
        }
    }

    /// Writes the expired answer for `to` as a stale one (TTL 30), if
    /// it is still within the stale window.
    pub fn answer_stale(
        &self,
        key: &KeyBuf,
        to: &Recipient<'_>,
        now: Millis,
        out: &mut Vec<u8>,
    ) -> Option<Written> {
        let hash = self.hasher.hash_one(key.as_bytes());
        let shard = self.read(self.shard_of(hash));
        let found = shard.find(key.as_bytes(), hash, |_| false)?;
        let times = found.entry.times();
        let servable_until = times.expires_at() + self.stale_for;
        if now >= servable_until {
            return None;
        }
        let written = found.entry.write(to, Ttls::Stale, out).ok()?;
        self.counters.stale_served.inc();
        Some(written)
    }

    /// Stores `answer` under `key` if it may be cached.
    pub fn insert(&self, key: &KeyBuf, answer: &Answer, now: Millis) {
        let mut answer = answer.clone();
        let Some(lifetime) = lifetime::prepare(&mut answer, &self.limits) else {
            return;
        };
        let times = Times {
            stored_at: now,
            lifetime,
        };
        let horizon = now.saturating_sub(self.stale_for);
        let hash = self.hasher.hash_one(key.as_bytes());
        let mut shard = self
            .shard_of(hash)
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if shard.insert(
            key.as_bytes(),
            hash,
            &answer,
            times,
            horizon,
            &self.counters,
        ) {
            self.counters.inserts.inc();
        } else {
            self.counters.inserts_refused.inc();
        }
    }

    /// Memory the cache takes, in octets: pages, indexes, scratch pages.
    pub fn weight(&self) -> u64 {
        self.shards
            .iter()
            .map(|shard| self.read(shard).bytes() as u64)
            .sum()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| self.read(shard).len()).sum()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
