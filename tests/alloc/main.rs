//! The cache-hit path makes no heap allocation: 10,000 hits through the
//! real UDP listener, after warm-up, while a counting global allocator
//! counts every allocation in the process.
//!
//! This is a test binary of its own, with this one test, so nothing else
//! allocates beside it: dotstub's runtimes and the in-process upstream sit
//! idle while only hits flow, and the client thread reuses its buffers and
//! is itself excluded from the count.

// Test code may panic on what cannot happen.
#![allow(clippy::unwrap_used)]

// Shared with the `it` binary; this test needs only part of it.
#[allow(dead_code, unused_imports)]
#[path = "../it/support/mod.rs"]
mod support;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    net::UdpSocket,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use hickory_proto::{op::Message, rr::RecordType};

use crate::support::{
    certs::TestPki,
    client,
    dot_upstream::{DotUpstream, Script},
    fixtures::expected_a,
    server::{Dotstub, Options, TLS_NAME, config_text, upstream_table},
};

/// Hits measured after warm-up.
const HITS: usize = 10_000;

thread_local! {
    /// Set on the client's thread, whose allocations are not dotstub's.
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
}

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

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
    let others = tokio::runtime::Runtime::new().unwrap();
    let pki = TestPki::new();
    let upstream = others.block_on(DotUpstream::start(pki.leaf(TLS_NAME), Script::Answer));
    let dotstub_runtime = tokio::runtime::Runtime::new().unwrap();
    let config = config_text(
        &Options::default(),
        &upstream_table("rig", upstream.addr(), &pki, ""),
    );
    let dotstub = dotstub_runtime.block_on(async { Dotstub::start(&config) });

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(client::CLIENT_TIMEOUT))
        .unwrap();
    client.connect(dotstub.addr).unwrap();
    let query = client::encode(&client::query("hot.alloc.test.", RecordType::A));
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
    let warm = Message::from_vec(&reply[..len]).unwrap();
    assert_eq!(client::a_records(&warm), [expected_a("hot.alloc.test")]);
    let hits_before = dotstub.metrics.cache.hits.get();
    EXCLUDED.set(true);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..HITS {
        exchange(&mut reply);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    EXCLUDED.set(false);
    assert_eq!(dotstub.metrics.cache.hits.get() - hits_before, HITS as u64);
    assert_eq!(upstream.received().len(), 1, "one miss, then only hits");
    assert_eq!(
        allocations, 0,
        "{allocations} heap allocations on the hit path"
    );
    drop(dotstub);
    dotstub_runtime.shutdown_timeout(Duration::from_secs(1));
}
