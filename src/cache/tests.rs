//! The cache's rules, on a manual clock.

use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query as HickoryQuery, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;
use crate::{
    metrics::CacheCounters,
    wire::{Query, Question, Transport},
};

const SECOND: Millis = 1000;

fn config(max_bytes: usize) -> CacheConfig {
    CacheConfig {
        enabled: true,
        max_bytes,
        limits: Limits {
            min_ttl: 0,
            max_ttl: 86_400,
            max_negative_ttl: 3600,
        },
        serve_stale: true,
        stale_answer_after: Duration::from_millis(1800),
        max_stale: Duration::from_secs(86_400),
        prefetch: true,
    }
}

fn cache(max_bytes: usize) -> (Cache, Arc<CacheCounters>) {
    let counters = Arc::new(CacheCounters::default());
    let cache = Cache::new(&config(max_bytes), Arc::clone(&counters)).unwrap();
    (cache, counters)
}

/// An upstream response for `name`: A records with `ttl`, or the SOA of a
/// negative answer when `rcode` is NXDOMAIN.
fn response(name: &str, rcode: ResponseCode, ttl: u32, tc: bool) -> Vec<u8> {
    let owner = Name::from_ascii(name).unwrap();
    let mut message = Message::new(7, MessageType::Response, OpCode::Query);
    message.metadata.response_code = rcode;
    message.metadata.truncation = tc;
    message.add_query(HickoryQuery::query(owner.clone(), RecordType::A));
    if rcode == ResponseCode::NoError {
        message.add_answer(Record::from_rdata(
            owner,
            ttl,
            RData::A(A::new(192, 0, 2, 1)),
        ));
    } else if rcode == ResponseCode::NXDomain {
        let soa = SOA::new(owner.clone(), owner.clone(), 1, 2, 3, 4, ttl);
        message.add_authority(Record::from_rdata(owner, 3600, RData::SOA(soa)));
    }
    message.to_vec().unwrap()
}

fn answer(bytes: &[u8]) -> Answer {
    Answer::from_upstream(bytes, &Question::parse(bytes, 12).unwrap())
        .unwrap()
        .0
}

/// A client query for `name` with ID 0x4242, as the client spelled it.
fn client(name: &str) -> Vec<u8> {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.add_query(HickoryQuery::query(
        Name::from_ascii(name).unwrap(),
        RecordType::A,
    ));
    message.to_vec().unwrap()
}

fn key(packet: &[u8]) -> KeyBuf {
    KeyBuf::of(&Query::parse(packet).unwrap())
}

async fn store(cache: &Cache, name: &str, rcode: ResponseCode, ttl: u32, now: Millis) {
    let packet = client(name);
    let answer = Arc::new(answer(&response(name, rcode, ttl, false)));
    cache.insert(&key(&packet), &answer, now).await;
}

fn reply(entry: &Entry, packet: &[u8], now: Millis) -> Message {
    let mut out = [0u8; 1024];
    let query = Query::parse(packet).unwrap();
    let written = entry
        .write(&query, Transport::Udp, 1232, now, &mut out)
        .unwrap();
    Message::from_vec(&out[..written.len]).unwrap()
}

fn fresh(lookup: Lookup) -> Arc<Entry> {
    match lookup {
        Lookup::Fresh(entry) | Lookup::Prefetch(entry) => entry,
        other => panic!("expected a fresh entry, got {other:?}"),
    }
}

#[tokio::test]
async fn hit_patches_id_case_and_ttl() {
    let (cache, counters) = cache(1 << 20);
    store(&cache, "www.example.", ResponseCode::NoError, 300, 0).await;
    let packet = client("WwW.ExAmple.");
    let entry = fresh(cache.lookup(key(&packet).as_bytes(), 10 * SECOND + 999));
    let message = reply(&entry, &packet, 10 * SECOND + 999);
    assert_eq!(message.metadata.id, 0x4242);
    assert_eq!(message.queries[0].name().to_ascii(), "WwW.ExAmple.");
    assert_eq!(
        message.answers[0].ttl, 290,
        "ten whole seconds spent in the cache"
    );
    assert_eq!((counters.hits.get(), counters.inserts.get()), (1, 1));
}

#[tokio::test]
async fn expired_entry_is_stale_then_gone() {
    let (cache, counters) = cache(1 << 20);
    store(&cache, "a.example.", ResponseCode::NoError, 60, 0).await;
    let key = key(&client("a.example."));
    let Lookup::Stale(entry) = cache.lookup(key.as_bytes(), 61 * SECOND) else {
        panic!("stale")
    };
    let mut out = [0u8; 512];
    let packet = client("a.example.");
    let written = entry
        .write_stale(
            &Query::parse(&packet).unwrap(),
            Transport::Udp,
            1232,
            &mut out,
        )
        .unwrap();
    let message = Message::from_vec(&out[..written.len]).unwrap();
    assert_eq!(message.answers[0].ttl, STALE_TTL);
    let past_window = 61 * SECOND + 86_400 * SECOND;
    assert!(matches!(
        cache.lookup(key.as_bytes(), past_window),
        Lookup::Miss
    ));
    assert!(
        cache.is_empty(),
        "an entry past its stale window is removed"
    );
    assert_eq!(counters.misses.get(), 2);
}

#[tokio::test]
async fn negative_answer_lives_as_long_as_the_soa_says() {
    let (cache, _) = cache(1 << 20);
    store(&cache, "nx.example.", ResponseCode::NXDomain, 120, 0).await;
    let key = key(&client("nx.example."));
    let entry = fresh(cache.lookup(key.as_bytes(), 119 * SECOND));
    let message = reply(&entry, &client("nx.example."), 119 * SECOND);
    assert_eq!(message.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        message.authorities[0].ttl, 1,
        "120 s negative TTL, 119 s spent"
    );
    assert!(matches!(
        cache.lookup(key.as_bytes(), 120 * SECOND),
        Lookup::Stale(_)
    ));
}

#[tokio::test]
async fn servfail_is_kept_five_seconds_and_truncated_answers_not_at_all() {
    let (cache, _) = cache(1 << 20);
    store(&cache, "fail.example.", ResponseCode::ServFail, 0, 0).await;
    let failing = key(&client("fail.example."));
    fresh(cache.lookup(failing.as_bytes(), 4 * SECOND));
    assert!(!matches!(
        cache.lookup(failing.as_bytes(), 5 * SECOND),
        Lookup::Fresh(_)
    ));
    let truncated = Arc::new(answer(&response(
        "tc.example.",
        ResponseCode::NoError,
        300,
        true,
    )));
    cache
        .insert(&key(&client("tc.example.")), &truncated, 0)
        .await;
    assert!(matches!(
        cache.lookup(key(&client("tc.example.")).as_bytes(), 0),
        Lookup::Miss
    ));
}

#[tokio::test]
async fn prefetch_fires_once_in_the_last_tenth() {
    let (cache, counters) = cache(1 << 20);
    store(&cache, "p.example.", ResponseCode::NoError, 100, 0).await;
    let key = key(&client("p.example."));
    fresh(cache.lookup(key.as_bytes(), 89 * SECOND));
    assert!(matches!(
        cache.lookup(key.as_bytes(), 91 * SECOND),
        Lookup::Prefetch(_)
    ));
    fresh(cache.lookup(key.as_bytes(), 92 * SECOND));
    assert_eq!(counters.prefetches.get(), 1);
}

#[tokio::test]
async fn memory_bound_evicts_and_counts() {
    let max_bytes = 64 * 1024;
    let (cache, counters) = cache(max_bytes);
    for i in 0..2000 {
        let name = format!("host{i}.example.");
        store(&cache, &name, ResponseCode::NoError, 300, 0).await;
    }
    assert!(
        cache.weight() <= max_bytes as u64,
        "{} > {max_bytes}",
        cache.weight()
    );
    assert!(cache.len() < 2000);
    assert!(counters.evictions.get() > 0);
    assert_eq!(counters.inserts.get(), 2000);
}

#[tokio::test]
async fn answer_bigger_than_a_shard_is_refused_and_counted() {
    let (cache, counters) = cache(64 * 1024);
    let owner = Name::from_ascii("big.example.").unwrap();
    let mut message = Message::new(7, MessageType::Response, OpCode::Query);
    message.add_query(HickoryQuery::query(owner.clone(), RecordType::TXT));
    // About 26 KB: more than a shard of a 64 KiB cache can hold.
    for _ in 0..100 {
        let txt = TXT::new(vec!["x".repeat(250)]);
        message.add_answer(Record::from_rdata(owner.clone(), 300, RData::TXT(txt)));
    }
    let bytes = message.to_vec().unwrap();
    let big = client("big.example.");
    cache.insert(&key(&big), &Arc::new(answer(&bytes)), 0).await;
    assert_eq!(
        (counters.inserts_refused.get(), counters.inserts.get()),
        (1, 0)
    );
    assert!(cache.is_empty());
}
