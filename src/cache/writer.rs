//! The cache's writer: one thread that builds and inserts every entry, so
//! all cached answers are allocated (and, when evicted, freed) by a thread
//! that allocates nothing else. Measured on a 4 MiB cache, entries built on
//! the query tasks' threads cost up to 1.7 times their weight in resident
//! memory, their allocations interleaved with those of queries in flight;
//! built here, about their weight.

use std::sync::{
    Arc,
    mpsc::{Receiver, SyncSender, sync_channel},
};

use super::{Entry, Insert, Policy, Store, Times, lifetime};
use crate::metrics::CacheCounters;

/// Inserts waiting for the writer; beyond, inserts are dropped and counted.
const QUEUE: usize = 1024;

/// Starts the writer thread; it ends when the returned sender is dropped.
pub(super) fn spawn(
    store: Arc<Store>,
    policy: Policy,
    counters: Arc<CacheCounters>,
) -> std::io::Result<SyncSender<Insert>> {
    let (sender, inserts) = sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("dotstub-cache".into())
        .spawn(move || write(&store, &policy, &counters, &inserts))?;
    Ok(sender)
}

fn write(store: &Store, policy: &Policy, counters: &CacheCounters, inserts: &Receiver<Insert>) {
    for insert in inserts {
        store_one(store, policy, counters, &insert);
        let _ = insert.stored.send(());
    }
}

/// Prepares the answer and stores it, unless it may not be cached or is
/// too big for the cache.
fn store_one(store: &Store, policy: &Policy, counters: &CacheCounters, insert: &Insert) {
    let mut answer = (*insert.answer).clone();
    let Some(lifetime) = lifetime::prepare(&mut answer, &policy.limits) else {
        return;
    };
    let times = Times {
        now: insert.now,
        lifetime,
        stale_for: policy.stale_for,
        prefetch: policy.prefetch,
    };
    let Some(entry) = Entry::new(answer, times) else {
        return;
    };
    let key = insert.key.as_bytes();
    if entry.weight() + key.len() as u64 > store.shard_capacity() {
        counters.inserts_refused.inc();
        return;
    }
    counters.inserts.inc();
    store.insert(key.into(), Arc::new(entry));
}
