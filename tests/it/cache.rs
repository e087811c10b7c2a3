//! The answer cache seen from a client: hits keep the client's ID and
//! spelling with TTLs lowered by the time spent in the cache; DO and CD
//! are cached apart; negative answers live as the SOA says, SERVFAIL a few
//! seconds, truncated answers not at all; stale answers stand in when the
//! upstream fails; popular answers are refreshed before they expire.
//! The cache runs on a manual clock, so no test waits for a TTL.

use std::time::Duration;

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};

use crate::support::{
    client::{self, a_records},
    dot_upstream::Script,
    fixtures::{NEGATIVE_TTL, TTL, expected_a},
    server::{Harness, Options},
};

/// How long to wait for a background refresh to reach the upstream.
const REFRESH_WAIT: Duration = Duration::from_secs(5);

async fn ask(rig: &Harness, name: &str) -> Message {
    client::udp(rig.dotstub.addr, &client::query(name, RecordType::A)).await
}

fn upstream_queries(rig: &Harness) -> usize {
    rig.upstream.received().len()
}

#[tokio::test]
async fn hit_keeps_the_clients_id_and_spelling_and_lowers_the_ttl() {
    let (rig, clock) = Harness::with_manual_clock(Script::Answer, Options::default()).await;
    let first = ask(&rig, "www.cache.test.").await;
    assert_eq!(first.answers[0].ttl, TTL);
    clock.advance(Duration::from_secs(100));
    let query = client::query("WwW.CaChE.TeSt.", RecordType::A);
    let hit = client::udp(rig.dotstub.addr, &query).await;
    assert_eq!(hit.metadata.id, query.metadata.id);
    assert_eq!(hit.queries[0].name().to_ascii(), "WwW.CaChE.TeSt.");
    assert_eq!(hit.answers[0].ttl, TTL - 100);
    assert_eq!(a_records(&hit), [expected_a("www.cache.test")]);
    assert_eq!(
        upstream_queries(&rig),
        1,
        "the second answer came from the cache"
    );
    assert_eq!(rig.dotstub.metrics.cache.hits.get(), 1);
}

#[tokio::test]
async fn do_and_cd_are_cached_apart() {
    let rig = Harness::start(Script::Answer).await;
    let mut with_do = client::query("bits.cache.test.", RecordType::A);
    with_do.edns.as_mut().unwrap().set_dnssec_ok(true);
    let mut with_cd = client::query("bits.cache.test.", RecordType::A);
    with_cd.metadata.checking_disabled = true;
    let plain = client::query("bits.cache.test.", RecordType::A);
    for _ in 0..2 {
        for query in [&plain, &with_do, &with_cd] {
            client::udp(rig.dotstub.addr, query).await;
        }
    }
    assert_eq!(upstream_queries(&rig), 3);
    assert_eq!(rig.dotstub.metrics.cache.hits.get(), 3);
}

#[tokio::test]
async fn negative_answer_is_cached_for_the_soa_ttl() {
    let (rig, clock) = Harness::with_manual_clock(Script::Answer, Options::default()).await;
    let first = ask(&rig, "gone.nx.test.").await;
    assert_eq!(first.metadata.response_code, ResponseCode::NXDomain);
    // Half-way, before the prefetch window of the last 10 %.
    clock.advance(Duration::from_secs(u64::from(NEGATIVE_TTL) / 2));
    let cached = ask(&rig, "gone.nx.test.").await;
    assert_eq!(cached.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(cached.authorities[0].ttl, NEGATIVE_TTL / 2);
    assert_eq!(upstream_queries(&rig), 1);
    clock.advance(Duration::from_secs(u64::from(NEGATIVE_TTL)));
    ask(&rig, "gone.nx.test.").await;
    assert_eq!(upstream_queries(&rig), 2, "expired: asked again");
}

#[tokio::test]
async fn servfail_is_cached_five_seconds_and_truncation_never() {
    let (rig, clock) = Harness::with_manual_clock(Script::Answer, Options::default()).await;
    for _ in 0..3 {
        let reply = ask(&rig, "x.servfail.test.").await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    }
    assert_eq!(
        upstream_queries(&rig),
        1,
        "a failing name does not hammer the upstream"
    );
    clock.advance(Duration::from_secs(6));
    ask(&rig, "x.servfail.test.").await;
    assert_eq!(upstream_queries(&rig), 2);
    for _ in 0..2 {
        let mut tcp = client::Tcp::connect(rig.dotstub.addr).await;
        tcp.send(&client::query("x.tc.test.", RecordType::A)).await;
        assert!(tcp.recv().await.metadata.truncation);
    }
    assert_eq!(
        upstream_queries(&rig),
        4,
        "truncated answers are not cached"
    );
}

#[tokio::test]
async fn stale_answer_stands_in_when_the_upstream_is_silent() {
    let options = Options {
        cache: "stale_answer_after_ms = 200",
        ..Options::default()
    };
    let (rig, clock) = Harness::with_manual_clock(Script::Answer, options).await;
    ask(&rig, "old.cache.test.").await;
    clock.advance(Duration::from_secs(u64::from(TTL) + 60));
    rig.upstream.set_script(Script::Stall);
    let stale = ask(&rig, "old.cache.test.").await;
    assert_eq!(a_records(&stale), [expected_a("old.cache.test")]);
    assert_eq!(stale.answers[0].ttl, 30, "RFC 8767's stale TTL");
    assert_eq!(rig.dotstub.metrics.cache.stale_served.get(), 1);
}

#[tokio::test]
async fn stale_answer_comes_at_once_when_the_upstream_fails() {
    // stale_answer_after_ms is long: only the failure can explain a quick answer.
    let options = Options {
        cache: "stale_answer_after_ms = 2500",
        ..Options::default()
    };
    let (rig, clock) = Harness::with_manual_clock(Script::Answer, options).await;
    ask(&rig, "old.cache.test.").await;
    clock.advance(Duration::from_secs(u64::from(TTL) + 60));
    rig.upstream.set_script(Script::Garbage);
    let query = client::encode(&client::query("old.cache.test.", RecordType::A));
    let reply = client::udp_bytes(rig.dotstub.addr, &query, Duration::from_millis(1500))
        .await
        .expect("the stale answer comes before stale_answer_after_ms");
    let stale = Message::from_vec(&reply).unwrap();
    assert_eq!(stale.answers[0].ttl, 30);
    assert_eq!(rig.dotstub.metrics.cache.stale_served.get(), 1);
}

#[tokio::test]
async fn stale_entry_is_refreshed_when_the_upstream_answers() {
    let (rig, clock) = Harness::with_manual_clock(Script::Answer, Options::default()).await;
    ask(&rig, "renew.cache.test.").await;
    clock.advance(Duration::from_secs(u64::from(TTL) + 1));
    let fresh = ask(&rig, "renew.cache.test.").await;
    assert_eq!(
        fresh.answers[0].ttl, TTL,
        "a fresh answer, not the stale one"
    );
    assert_eq!(upstream_queries(&rig), 2);
    assert_eq!(rig.dotstub.metrics.cache.stale_served.get(), 0);
}

#[tokio::test]
async fn prefetch_refreshes_a_popular_answer_once_before_it_expires() {
    let (rig, clock) = Harness::with_manual_clock(Script::Answer, Options::default()).await;
    ask(&rig, "hot.cache.test.").await;
    clock.advance(Duration::from_secs(u64::from(TTL) * 95 / 100));
    for _ in 0..5 {
        let hit = ask(&rig, "hot.cache.test.").await;
        assert_eq!(a_records(&hit), [expected_a("hot.cache.test")]);
    }
    let refreshed = async {
        while upstream_queries(&rig) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(REFRESH_WAIT, refreshed)
        .await
        .expect("the answer is refreshed");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(upstream_queries(&rig), 2, "one refresh, however many hits");
    let renewed = ask(&rig, "hot.cache.test.").await;
    assert_eq!(
        renewed.answers[0].ttl, TTL,
        "the cache holds the refreshed answer"
    );
    assert_eq!(rig.dotstub.metrics.cache.prefetches.get(), 1);
}

#[tokio::test]
async fn disabled_cache_sends_every_query_upstream() {
    let options = Options {
        cache: "enabled = false",
        ..Options::default()
    };
    let rig = Harness::with(Script::Answer, options).await;
    for _ in 0..3 {
        ask(&rig, "same.cache.test.").await;
    }
    assert_eq!(upstream_queries(&rig), 3);
}
