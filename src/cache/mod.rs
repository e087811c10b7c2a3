//! The answer cache: wire-format answers keyed by question, bounded by
//! memory, read on the hot path without allocating.
//!
//! - [`Cache::lookup`] says whether an answer is fresh, fresh but due for
//!   a prefetch, stale but servable (RFC 8767), or missing;
//! - [`Cache::insert`] hands an answer to the writer thread (`writer`),
//!   which decides with `lifetime` whether and how long it is kept
//!   (RFC 2308 for negative answers) and stores an [`Entry`];
//! - [`KeyBuf`] builds the key on the stack; [`Clock`] gives the time.
//!
//! Storage is quick_cache: sharded, weighted by each entry's memory, read
//! under a shard's read lock for a few nanoseconds. Its eviction policy is
//! CLOCK-Pro/S3-FIFO-like rather than strict LRU: as cheap on a hit (no
//! list to reorder under a write lock) and not flushed by one scan of
//! names asked once.

mod clock;
mod entry;
mod key;
mod lifetime;
mod writer;

use std::sync::{Arc, mpsc::SyncSender};

use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};
use tokio::sync::oneshot;

pub use clock::{Clock, ManualClock, Millis};
pub use entry::{Entry, STALE_TTL, Times};
pub use key::{Key, KeyBuf};
pub use lifetime::{Limits, SERVFAIL_TTL};

use crate::{config::CacheConfig, metrics::CacheCounters, wire::Answer};

/// Entries expected per MiB of `max_bytes`, to size the table up front.
const ENTRIES_PER_MIB: u64 = 2048;

/// What the cache holds for a question.
#[derive(Debug)]
pub enum Lookup {
    /// A fresh answer.
    Fresh(Arc<Entry>),
    /// A fresh answer near its end: serve it, and refresh it in the
    /// background (this hit is the only one told so).
    Prefetch(Arc<Entry>),
    /// An expired answer that may be served if upstreams fail or are slow.
    Stale(Arc<Entry>),
    /// Nothing usable.
    Miss,
}

type Store = quick_cache::sync::Cache<Key, Arc<Entry>, EntryWeight, DefaultHashBuilder, Evictions>;

/// The answer cache.
#[derive(Debug)]
pub struct Cache {
    /// Shared with the writer thread, which alone inserts.
    store: Arc<Store>,
    /// Where inserts go: to the writer thread.
    writer: SyncSender<Insert>,
    counters: Arc<CacheCounters>,
}

impl Cache {
    /// An empty cache sized and tuned by `config`, with its writer thread.
    pub fn new(config: &CacheConfig, counters: Arc<CacheCounters>) -> std::io::Result<Self> {
        let max_bytes = config.max_bytes as u64;
        let items = (max_bytes / (1024 * 1024)).max(1) * ENTRIES_PER_MIB;
        let evictions = Evictions(Arc::clone(&counters));
        let store = Arc::new(Store::with(
            items as usize,
            max_bytes,
            EntryWeight,
            DefaultHashBuilder::default(),
            evictions,
        ));
        let policy = Policy {
            limits: config.limits,
            stale_for: if config.serve_stale {
                config.max_stale.as_millis() as Millis
            } else {
                0
            },
            prefetch: config.prefetch,
        };
        let writer = writer::spawn(Arc::clone(&store), policy, Arc::clone(&counters))?;
        Ok(Self {
            store,
            writer,
            counters,
        })
    }

    /// What the cache holds for `key` at `now`. Allocation-free.
    pub fn lookup(&self, key: &[u8], now: Millis) -> Lookup {
        let Some(entry) = self.store.get(key) else {
            self.counters.misses.inc();
            return Lookup::Miss;
        };
        if entry.is_fresh(now) {
            self.counters.hits.inc();
            if entry.claim_prefetch(now) {
                self.counters.prefetches.inc();
                return Lookup::Prefetch(entry);
            }
            return Lookup::Fresh(entry);
        }
        self.counters.misses.inc();
        if entry.is_servable_stale(now) {
            return Lookup::Stale(entry);
        }
        self.store.remove(key);
        Lookup::Miss
    }

    /// Stores `answer` under `key` if it may be cached, and returns once it
    /// is stored. The writer thread builds the entry, so every cached
    /// answer is allocated by one thread: its memory is not scattered
    /// among the allocations of the queries in flight, and `max_bytes`
    /// holds for the process's resident memory, not only for the entries.
    pub async fn insert(&self, key: &KeyBuf, answer: &Arc<Answer>, now: Millis) {
        let (stored, done) = oneshot::channel();
        let insert = Insert {
            key: *key,
            answer: Arc::clone(answer),
            now,
            stored,
        };
        match self.writer.try_send(insert) {
            Ok(()) => {
                let _ = done.await;
            }
            Err(_) => self.counters.inserts_dropped.inc(),
        }
    }

    /// Memory the entries cost, by the cache's own count, in octets.
    pub fn weight(&self) -> u64 {
        self.store.weight()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }
}

/// What the writer needs to turn an answer into an entry.
#[derive(Debug, Clone, Copy)]
struct Policy {
    limits: Limits,
    /// How long past expiry an entry may be served stale; 0 when off.
    stale_for: Millis,
    prefetch: bool,
}

/// One answer for the writer thread to store.
struct Insert {
    key: KeyBuf,
    answer: Arc<Answer>,
    now: Millis,
    /// Told when the answer is stored (or refused).
    stored: oneshot::Sender<()>,
}

/// Weighs an entry by the memory it costs.
#[derive(Debug, Clone, Copy)]
struct EntryWeight;

impl Weighter<Key, Arc<Entry>> for EntryWeight {
    fn weight(&self, key: &Key, entry: &Arc<Entry>) -> u64 {
        entry.weight() + key.len() as u64
    }
}

/// Counts entries pushed out to make room.
#[derive(Debug, Clone)]
struct Evictions(Arc<CacheCounters>);

impl Lifecycle<Key, Arc<Entry>> for Evictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: Key, _: Arc<Entry>) {
        self.0.evictions.inc();
    }
}

#[cfg(test)]
mod tests;
