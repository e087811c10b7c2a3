//! The cache's rules, on a manual clock.

use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query as HickoryQuery, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;
use crate::wire::{Query, Question, Transport};

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
    (
        Cache::new(&config(max_bytes), Arc::clone(&counters)),
        counters,
    )
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

fn store(cache: &Cache, name: &str, rcode: ResponseCode, ttl: u32, now: Millis) {
    cache.insert(
        &key(&client(name)),
        &answer(&response(name, rcode, ttl, false)),
        now,
    );
}

/// What the cache does for a client asking `name` at `now`, and the reply
/// it wrote, if any.
fn ask(cache: &Cache, name: &str, now: Millis) -> (Hit, Option<Message>) {
    let packet = client(name);
    let query = Query::parse(&packet).unwrap();
    let mut out = Vec::with_capacity(4096);
    let to = Recipient {
        query: &query,
        transport: Transport::Udp,
        udp_size: 1232,
    };
    let hit = cache.answer(&key(&packet), &to, now, &mut out);
    let reply = match hit {
        Hit::Fresh(written) | Hit::Prefetch(written) => {
            Some(Message::from_vec(&out[..written.len]).unwrap())
        }
        Hit::Stale | Hit::Miss => None,
    };
    (hit, reply)
}

fn fresh(cache: &Cache, name: &str, now: Millis) -> Message {
    match ask(cache, name, now) {
        (Hit::Fresh(_) | Hit::Prefetch(_), Some(reply)) => reply,
        (other, _) => panic!("expected a fresh answer, got {other:?}"),
    }
}

#[test]
fn hit_patches_id_case_and_ttl() {
    let (cache, counters) = cache(1 << 20);
    store(&cache, "www.example.", ResponseCode::NoError, 300, 0);
    let reply = fresh(&cache, "WwW.ExAmple.", 10 * SECOND + 999);
    assert_eq!(reply.metadata.id, 0x4242);
    assert_eq!(reply.queries[0].name().to_ascii(), "WwW.ExAmple.");
    assert_eq!(
        reply.answers[0].ttl, 290,
        "ten whole seconds spent in the cache"
    );
    // Everything else is the upstream's answer, unchanged.
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(reply.answers[0].data, RData::A(A::new(192, 0, 2, 1)));
    // The owner name points at the question, so it reads as the client
    // spelled it too.
    assert_eq!(reply.answers[0].name.to_ascii(), "WwW.ExAmple.");
    assert_eq!((counters.hits.get(), counters.inserts.get()), (1, 1));
}

#[test]
fn time_in_cache_counts_from_the_second_it_was_stored_in() {
    // Stored 1.9 s into a second, the entry ages by whole clock seconds:
    // a TTL is never more than what is left, and it expires no later
    // than the upstream said (at most a second early).
    let (cache, _) = cache(1 << 20);
    store(&cache, "sub.example.", ResponseCode::NoError, 10, 1_900);
    assert_eq!(fresh(&cache, "sub.example.", 1_950).answers[0].ttl, 10);
    assert_eq!(fresh(&cache, "sub.example.", 2_000).answers[0].ttl, 9);
    assert_eq!(fresh(&cache, "sub.example.", 10_999).answers[0].ttl, 1);
    assert_eq!(ask(&cache, "sub.example.", 11_000).0, Hit::Stale);
}

#[test]
fn expired_entry_is_stale_then_gone() {
    let (cache, counters) = cache(1 << 20);
    store(&cache, "a.example.", ResponseCode::NoError, 60, 0);
    assert_eq!(ask(&cache, "a.example.", 61 * SECOND).0, Hit::Stale);
    let packet = client("a.example.");
    let query = Query::parse(&packet).unwrap();
    let to = Recipient {
        query: &query,
        transport: Transport::Udp,
        udp_size: 1232,
    };
    let mut out = Vec::with_capacity(4096);
    let written = cache
        .answer_stale(&key(&packet), &to, 61 * SECOND, &mut out)
        .unwrap();
    let stale = Message::from_vec(&out[..written.len]).unwrap();
    assert_eq!(stale.answers[0].ttl, STALE_TTL);
    let past_window = 61 * SECOND + 86_400 * SECOND;
    assert_eq!(ask(&cache, "a.example.", past_window).0, Hit::Miss);
    assert!(
        cache
            .answer_stale(&key(&packet), &to, past_window, &mut out)
            .is_none()
    );
    assert_eq!((counters.misses.get(), counters.stale_served.get()), (2, 1));
}

#[test]
fn negative_answer_lives_as_long_as_the_soa_says() {
    let (cache, _) = cache(1 << 20);
    store(&cache, "nx.example.", ResponseCode::NXDomain, 120, 0);
    let reply = fresh(&cache, "nx.example.", 119 * SECOND);
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        reply.authorities[0].ttl, 1,
        "120 s negative TTL, 119 s spent"
    );
    assert_eq!(ask(&cache, "nx.example.", 120 * SECOND).0, Hit::Stale);
}

#[test]
fn servfail_is_kept_five_seconds_and_truncated_answers_not_at_all() {
    let (cache, _) = cache(1 << 20);
    store(&cache, "fail.example.", ResponseCode::ServFail, 0, 0);
    fresh(&cache, "fail.example.", 4 * SECOND);
    assert_eq!(ask(&cache, "fail.example.", 5 * SECOND).0, Hit::Stale);
    let truncated = answer(&response("tc.example.", ResponseCode::NoError, 300, true));
    cache.insert(&key(&client("tc.example.")), &truncated, 0);
    assert_eq!(ask(&cache, "tc.example.", 0).0, Hit::Miss);
}

#[test]
fn prefetch_fires_once_in_the_last_tenth() {
    let (cache, counters) = cache(1 << 20);
    store(&cache, "p.example.", ResponseCode::NoError, 100, 0);
    assert!(matches!(
        ask(&cache, "p.example.", 89 * SECOND).0,
        Hit::Fresh(_)
    ));
    assert!(matches!(
        ask(&cache, "p.example.", 91 * SECOND).0,
        Hit::Prefetch(_)
    ));
    assert!(matches!(
        ask(&cache, "p.example.", 92 * SECOND).0,
        Hit::Fresh(_)
    ));
    assert_eq!(counters.prefetches.get(), 1);
    // A new answer for the name may be prefetched again.
    store(
        &cache,
        "p.example.",
        ResponseCode::NoError,
        100,
        92 * SECOND,
    );
    assert!(matches!(
        ask(&cache, "p.example.", 183 * SECOND).0,
        Hit::Prefetch(_)
    ));
}

#[test]
fn replacing_an_entry_keeps_one() {
    let (cache, _) = cache(1 << 20);
    for at in 0..5 {
        store(
            &cache,
            "r.example.",
            ResponseCode::NoError,
            300 + at as u32,
            at * SECOND,
        );
    }
    assert_eq!(cache.len(), 1);
    assert_eq!(fresh(&cache, "r.example.", 4 * SECOND).answers[0].ttl, 304);
}

#[test]
fn memory_bound_evicts_and_counts() {
    let max_bytes = 256 * 1024;
    let (cache, counters) = cache(max_bytes);
    for i in 0..20_000 {
        store(
            &cache,
            &format!("host{i}.example."),
            ResponseCode::NoError,
            300,
            0,
        );
    }
    assert!(
        cache.weight() <= max_bytes as u64,
        "{} > {max_bytes}",
        cache.weight()
    );
    assert!(
        cache.len() < 20_000 && cache.len() > 1000,
        "{} entries",
        cache.len()
    );
    assert_eq!(counters.evictions.get() as usize + cache.len(), 20_000);
    assert_eq!(counters.inserts.get(), 20_000);
    // The newest are the ones kept.
    fresh(&cache, "host19999.example.", 0);
    assert_eq!(ask(&cache, "host0.example.", 0).0, Hit::Miss);
}

#[test]
fn entries_hit_since_they_were_written_get_a_second_chance() {
    let (cache, _) = cache(256 * 1024);
    store(&cache, "popular.example.", ResponseCode::NoError, 3000, 0);
    for i in 0..20_000 {
        store(
            &cache,
            &format!("once{i}.example."),
            ResponseCode::NoError,
            3000,
            0,
        );
        if i % 500 == 0 {
            fresh(&cache, "popular.example.", 0);
        }
    }
    fresh(&cache, "popular.example.", 0);
    assert_eq!(
        ask(&cache, "once0.example.", 0).0,
        Hit::Miss,
        "one-hit names were evicted"
    );
}

#[test]
fn entries_kept_through_recycling_answer_with_their_own_records() {
    let (cache, counters) = cache(256 * 1024);
    // Each popular name has a TTL of its own, to tell the answers apart.
    let popular: Vec<(String, u32)> = (0..64)
        .map(|i| (format!("popular{i}.example."), 3000 + i))
        .collect();
    let hit_all = || {
        for (name, ttl) in &popular {
            assert_eq!(fresh(&cache, name, 0).answers[0].ttl, *ttl, "{name}");
        }
    };
    // Between never-hit names: when their page is recycled, those go and
    // the popular ones move down the page.
    for (i, (name, ttl)) in popular.iter().enumerate() {
        store(
            &cache,
            &format!("filler{i}.example."),
            ResponseCode::NoError,
            300,
            0,
        );
        store(&cache, name, ResponseCode::NoError, *ttl, 0);
    }
    for i in 0..20_000 {
        if i % 500 == 0 {
            hit_all();
        }
        store(
            &cache,
            &format!("once{i}.example."),
            ResponseCode::NoError,
            300,
            0,
        );
    }
    assert!(counters.evictions.get() > 10_000, "pages were recycled");
    hit_all();
}

#[test]
fn answer_bigger_than_an_entry_may_be_is_refused_and_counted() {
    let (cache, counters) = cache(1 << 20);
    let owner = Name::from_ascii("big.example.").unwrap();
    let mut message = Message::new(7, MessageType::Response, OpCode::Query);
    message.add_query(HickoryQuery::query(owner.clone(), RecordType::TXT));
    // About 26 KB: more than a quarter page.
    for _ in 0..100 {
        let txt = TXT::new(vec!["x".repeat(250)]);
        message.add_answer(Record::from_rdata(owner.clone(), 300, RData::TXT(txt)));
    }
    let bytes = message.to_vec().unwrap();
    cache.insert(&key(&client("big.example.")), &answer(&bytes), 0);
    assert_eq!(
        (counters.inserts_refused.get(), counters.inserts.get()),
        (1, 0)
    );
    assert!(cache.is_empty());
}

#[test]
fn small_answers_cost_about_a_hundred_octets_each() {
    let (cache, _) = cache(16 << 20);
    for i in 0..50_000 {
        store(
            &cache,
            &format!("n{i}.memory.test."),
            ResponseCode::NoError,
            300,
            0,
        );
    }
    assert_eq!(cache.len(), 50_000);
    let per_name = cache.weight() / 50_000;
    assert!(per_name < 110, "{per_name} octets a name");
}

#[test]
fn what_is_found_is_always_the_latest_answer_stored() {
    // Random inserts and replacements over a small cache that must evict:
    // every lookup either misses or finds the TTL stored last for that name.
    use rand::{RngExt, SeedableRng, rngs::StdRng};
    let (cache, _) = cache(128 * 1024);
    let mut rng = StdRng::seed_from_u64(2308);
    let mut latest = std::collections::HashMap::new();
    let mut found = 0;
    for round in 0..40_000u32 {
        let name = format!("k{}.example.", rng.random_range(0..3000));
        if rng.random_bool(0.5) {
            let ttl = 1000 + round;
            store(&cache, &name, ResponseCode::NoError, ttl, 0);
            latest.insert(name, ttl);
        } else if let (Hit::Fresh(_) | Hit::Prefetch(_), Some(reply)) = ask(&cache, &name, 0) {
            assert_eq!(Some(&reply.answers[0].ttl), latest.get(&name), "{name}");
            found += 1;
        }
    }
    assert!(found > 1000, "only {found} hits");
}

#[test]
fn memory_bound_holds_for_the_shortest_names() {
    // Answers of about 70 octets: for these the index, not the pages, is
    // what outgrows the bound unless the shard weighs both. At 1 MiB the
    // index first doubles within the budget, then may not.
    for max_bytes in [256 << 10, 1 << 20, 4 << 20] {
        let (cache, counters) = cache(max_bytes);
        let names = max_bytes / 24;
        for i in 0..names {
            store(&cache, &format!("h{i}."), ResponseCode::NoError, 300, 0);
        }
        let weight = cache.weight();
        assert!(weight <= max_bytes as u64, "{weight} > {max_bytes}");
        // Still a cache worth its memory: at most 128 octets a name held
        // (the scratch page and index weigh most in the smallest cache).
        assert!(
            cache.len() * 128 >= max_bytes,
            "{} names in {max_bytes} octets",
            cache.len()
        );
        assert_eq!(counters.evictions.get() as usize + cache.len(), names);
        fresh(&cache, &format!("h{}.", names - 1), 0);
    }
}
