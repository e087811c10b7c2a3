//! The cache-hit path makes no heap allocation: 10,000 hits through the
//! real UDP listener, after warm-up, while a counting global allocator
//! counts every allocation in the process. Once for a plain answer, once
//! for a secure one (dotstub validating, the client asking with DO=1 and
//! getting AD=1 and the RRSIGs).
//!
//! This is a test binary of its own, so nothing else allocates beside
//! it: its tests take turns (`alone`), dotstub's runtimes and the
//! in-process upstream sit idle while only hits flow, and the client
//! thread reuses its buffers and is itself excluded from the count.

// Test code may panic on what cannot happen.
#![allow(clippy::unwrap_used)]

// Shared with the `it` binary; this test needs only part of it.
#[allow(dead_code, unused_imports)]
#[path = "../it/support/mod.rs"]
mod support;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    io::Write,
    net::UdpSocket,
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hickory_proto::{
    op::Message,
    rr::{RecordType, rdata::opt::EdnsOption},
};
use tempfile::NamedTempFile;

use crate::support::{
    certs::TestPki,
    client,
    dot_upstream::{DotUpstream, Script},
    fixtures::expected_a,
    server::{Dotstub, Options, TLS_NAME, config_text, upstream_table},
    signed::Hierarchy,
};

/// Hits measured after warm-up.
const HITS: usize = 10_000;

thread_local! {
    /// Set on the client's thread, whose allocations are not dotstub's.
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
}

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Held by each test for its whole run: the count is process-wide, so a
/// second test running beside the one measuring would be counted too.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn alone() -> MutexGuard<'static, ()> {
    // A test that failed must not fail the other through poisoning.
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The system allocator, counting allocations.
struct CountingAllocator;

fn count() {
    if !EXCLUDED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed unchanged to the system allocator, which
// upholds GlobalAlloc's contract; counting touches only an atomic and a
// const-initialised thread-local, neither of which allocates.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as this function's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as this function's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as this function's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as this function's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn ten_thousand_cache_hits_allocate_nothing() {
    let _alone = alone();
    let query = client::query("hot.alloc.test.", RecordType::A);
    let upstream_queries =
        hits_allocate_nothing(Script::Answer, Options::default(), &query, |warm| {
            assert_eq!(client::a_records(warm), [expected_a("hot.alloc.test")]);
        });
    assert_eq!(upstream_queries, 1, "one miss, then only hits");
}

#[test]
fn ten_thousand_secure_cache_hits_allocate_nothing() {
    let _alone = alone();
    let hierarchy = Hierarchy::shared();
    let mut anchor = NamedTempFile::new().unwrap();
    anchor
        .write_all(hierarchy.trust_anchor_text().as_bytes())
        .unwrap();
    let path = anchor.path().display().to_string();
    let dnssec = format!("validate = true\ntrust_anchor_file = {path:?}");
    let options = Options {
        dnssec: Box::leak(dnssec.into_boxed_str()),
        ..Options::default()
    };
    let mut query = client::query("www.ecdsap256.tld.", RecordType::A);
    query.edns.as_mut().unwrap().set_dnssec_ok(true);
    let upstream_queries = hits_allocate_nothing(hierarchy.script(), options, &query, |warm| {
        assert!(warm.metadata.authentic_data, "AD=1: the answer is secure");
        assert_eq!(client::a_records(warm).len(), 1);
        let rrsigs = warm
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::RRSIG);
        assert_eq!(rrsigs.count(), 1, "DO=1 gets the RRSIG");
        let options = warm.edns.as_ref().unwrap().options().as_ref();
        let ede = options
            .iter()
            .any(|(_, option)| matches!(option, EdnsOption::Unknown(15, _)));
        assert!(!ede, "no Extended DNS Error on a secure answer");
    });
    assert!(
        upstream_queries > 1,
        "the miss fetched the chain of trust too ({upstream_queries} queries)"
    );
}

/// Starts an upstream following `script` and dotstub configured by
/// `options` in front of it, warms the cache with `query` over UDP, checks
/// the warm reply with `check`, then asserts that 10,000 more replies are
/// cache hits that allocate nothing and ask upstream nothing. Returns how
/// many queries the upstream received in all.
fn hits_allocate_nothing(
    script: Script,
    options: Options,
    query: &Message,
    check: impl FnOnce(&Message),
) -> usize {
    let others = tokio::runtime::Runtime::new().unwrap();
    let pki = TestPki::new();
    let upstream = others.block_on(DotUpstream::start(pki.leaf(TLS_NAME), script));
    let dotstub_runtime = tokio::runtime::Runtime::new().unwrap();
    let config = config_text(&options, &upstream_table("rig", upstream.addr(), &pki, ""));
    let dotstub = dotstub_runtime.block_on(async { Dotstub::start(&config) });

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(client::CLIENT_TIMEOUT))
        .unwrap();
    client.connect(dotstub.addr).unwrap();
    let query = client::encode(query);
    let mut reply = vec![0u8; 4096];
    let exchange = |reply: &mut [u8]| {
        client.send(&query).unwrap();
        client.recv(reply).unwrap()
    };
    // Warm-up: the first query is a miss, the rest fill every lazy buffer.
    for _ in 0..100 {
        exchange(&mut reply);
    }
    let len = exchange(&mut reply);
    check(&Message::from_vec(&reply[..len]).unwrap());
    let upstream_queries = upstream.received().len();
    let hits_before = dotstub.metrics.cache.hits.get();
    EXCLUDED.set(true);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..HITS {
        exchange(&mut reply);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    EXCLUDED.set(false);
    assert_eq!(dotstub.metrics.cache.hits.get() - hits_before, HITS as u64);
    assert_eq!(upstream.received().len(), upstream_queries, "only hits");
    assert_eq!(
        allocations, 0,
        "{allocations} heap allocations on the hit path"
    );
    // Stopped, not dropped: `stop` returns once the UDP worker threads
    // have ended, so none is still winding down (and allocating) while
    // the next test counts.
    dotstub_runtime.block_on(dotstub.stop());
    dotstub_runtime.shutdown_timeout(Duration::from_secs(1));
    upstream_queries
}
