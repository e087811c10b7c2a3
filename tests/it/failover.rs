//! A failing upstream costs a retry, never a hang: closed connections are
//! re-sent, dead or misbehaving upstreams are skipped within the query's
//! timeout, SERVFAIL (with an Extended DNS Error) when all fail, and
//! backoff never stops service for good.

use std::time::Duration;

use futures_util::future::join_all;
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};

use dotstub::upstream::{ALL_DOWN_PROBE_EVERY, Health};

use crate::support::{
    certs::TestPki,
    client::{self, a_records},
    dot_upstream::{DotUpstream, Script},
    fixtures::expected_a,
    server::{Dotstub, Harness, Options, TLS_NAME, start_with},
};

/// RFC 8914 info code for "No Reachable Authority".
const NO_REACHABLE_AUTHORITY: u16 = 22;

async fn concurrent(dotstub: &Dotstub, count: usize) {
    join_all((0..count).map(|i| async move {
        let name = format!("q{i}.failover.test.");
        let reply = client::udp(dotstub.addr, &client::query(&name, RecordType::A)).await;
        assert_eq!(a_records(&reply), [expected_a(&name)], "{name}");
    }))
    .await;
}

/// Sends one query and returns the reply, which must come within `wait`.
async fn within(dotstub: &Dotstub, name: &str, wait: Duration) -> Message {
    let bytes = client::encode(&client::query(name, RecordType::A));
    let reply = client::udp_bytes(dotstub.addr, &bytes, wait)
        .await
        .expect("a reply within the timeout");
    Message::from_vec(&reply).expect("reply parses")
}

fn extended_error(message: &Message) -> Option<u16> {
    client::extended_error(message).map(|(code, _)| code)
}

#[tokio::test]
async fn queries_on_a_closed_connection_are_resent() {
    let options = Options {
        forward: "connections_per_upstream = 1",
        ..Options::default()
    };
    let rig = Harness::with(Script::CloseAfter { answers: 3 }, options).await;
    concurrent(&rig.dotstub, 20).await;
    assert!(
        rig.upstream.connections() > 1,
        "the upstream did close connections"
    );
    assert!(rig.dotstub.metrics.upstream(0).unwrap().resent.get() > 0);
}

#[tokio::test]
async fn reset_mid_answer_loses_no_query() {
    let rig = Harness::start(Script::ResetMidAnswer { answers: 2 }).await;
    concurrent(&rig.dotstub, 10).await;
    assert!(rig.upstream.connections() > 1);
}

#[tokio::test]
async fn refused_first_upstream_fails_over_to_the_next() {
    let pki = TestPki::new();
    let good = DotUpstream::start(pki.leaf(TLS_NAME), Script::Answer).await;
    let options = Options {
        forward: "policy = \"ordered\"",
        ..Options::default()
    };
    let dotstub = start_with(&pki, &[&good], true, &options);
    concurrent(&dotstub, 5).await;
    assert!(dotstub.metrics.upstream(0).unwrap().connect_failures.get() >= 1);
    assert_eq!(good.received().len(), 5);
}

#[tokio::test]
async fn silent_first_upstream_is_hedged_then_backed_off() {
    let pki = TestPki::new();
    let silent = DotUpstream::start(pki.leaf(TLS_NAME), Script::Stall).await;
    let good = DotUpstream::start(pki.leaf(TLS_NAME), Script::Answer).await;
    let options = Options {
        forward: "policy = \"ordered\"\ntimeout_ms = 1000",
        ..Options::default()
    };
    let dotstub = start_with(&pki, &[&silent, &good], false, &options);
    // With no round trip measured yet, the hedge waits half the timeout
    // (500 ms), then the good upstream answers: well before the timeout.
    let reply = within(&dotstub, "late.failover.test.", Duration::from_millis(900)).await;
    assert_eq!(a_records(&reply), [expected_a("late.failover.test")]);
    assert_eq!(
        silent.received().len(),
        1,
        "the silent upstream was tried first"
    );
    let (silent_counters, good_counters) = (
        dotstub.metrics.upstream(0).unwrap(),
        dotstub.metrics.upstream(1).unwrap(),
    );
    assert_eq!(good_counters.hedges.get(), 1);
    assert_eq!(good_counters.hedges_won.get(), 1);
    // When the query's time is up, the connection that never answered is
    // condemned, and the next query finds it so: the silent upstream backs
    // off, and that query moves on at once.
    client::eventually("the silent connection is condemned", || {
        silent_counters.condemned.get() == 1
    })
    .await;
    within(&dotstub, "next.failover.test.", Duration::from_millis(400)).await;
    within(&dotstub, "third.failover.test.", Duration::from_millis(400)).await;
    assert_eq!(silent.received().len(), 1);
    assert_eq!(silent_counters.timeouts.get(), 1);
    assert!(matches!(
        dotstub.upstream_health(0),
        Some(Health::Backoff { .. })
    ));
}

#[tokio::test]
async fn all_upstreams_down_gives_servfail_with_an_extended_error() {
    let pki = TestPki::new();
    let dotstub = start_with(&pki, &[], true, &Options::default());
    let reply = within(&dotstub, "down.failover.test.", Duration::from_secs(4)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(extended_error(&reply), Some(NO_REACHABLE_AUTHORITY));
    assert_eq!(dotstub.metrics.server.servfail.get(), 1);
}

#[tokio::test]
async fn all_upstreams_silent_gives_servfail_within_the_timeout() {
    let options = Options {
        forward: "timeout_ms = 500",
        ..Options::default()
    };
    let rig = Harness::with(Script::Stall, options).await;
    let reply = within(
        &rig.dotstub,
        "stall.failover.test.",
        Duration::from_millis(1000),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(extended_error(&reply), Some(NO_REACHABLE_AUTHORITY));
}

#[tokio::test]
async fn a_failing_upstream_is_skipped_while_it_backs_off_then_probed() {
    let pki = TestPki::new();
    let refusing = DotUpstream::start(pki.leaf(TLS_NAME), Script::RefuseTls).await;
    let good = DotUpstream::start(pki.leaf(TLS_NAME), Script::Answer).await;
    let options = Options {
        forward: "policy = \"ordered\"",
        cache: "enabled = false",
        ..Options::default()
    };
    let dotstub = start_with(&pki, &[&refusing, &good], false, &options);
    let first = within(&dotstub, "a.failover.test.", Duration::from_secs(2)).await;
    assert_eq!(a_records(&first), [expected_a("a.failover.test")]);
    let counters = dotstub.metrics.upstream(0).unwrap();
    assert_eq!(counters.tls_failures.get(), 1);
    // While it backs off (1 s), the other upstream gets every query and
    // nothing is tried on the failing one.
    refusing.set_script(Script::Answer);
    for i in 0..5 {
        let name = format!("b{i}.failover.test.");
        let reply = within(&dotstub, &name, Duration::from_millis(500)).await;
        assert_eq!(a_records(&reply), [expected_a(&name)]);
    }
    // Once its delay has passed, one query probes it, and it is back.
    let probed = async {
        while refusing.received().is_empty() {
            within(&dotstub, "c.failover.test.", Duration::from_secs(2)).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(3), probed)
        .await
        .expect("probed once the backoff delay passed");
    assert_eq!(counters.tls_failures.get() + counters.connections.get(), 2);
    assert_eq!(dotstub.upstream_health(0), Some(Health::Up));
}

#[tokio::test]
async fn with_every_upstream_down_queries_fail_fast_and_service_returns_with_one() {
    let options = Options {
        cache: "enabled = false",
        ..Options::default()
    };
    let rig = Harness::with(Script::RefuseTls, options).await;
    let counters = rig.dotstub.metrics.upstream(0).unwrap();
    // A second of queries, 20 a second: each answered SERVFAIL at once,
    // far within the 3 s budget, with one probe each 250 ms at most
    // (counted against the time the loop really took, on a slow machine).
    let started = std::time::Instant::now();
    for i in 0..20 {
        let name = format!("down{i}.failover.test.");
        let reply = within(&rig.dotstub, &name, Duration::from_millis(500)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(extended_error(&reply), Some(NO_REACHABLE_AUTHORITY));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let probes = counters.tls_failures.get();
    let intervals = started.elapsed().as_millis() / ALL_DOWN_PROBE_EVERY.as_millis();
    let most = u64::try_from(intervals).unwrap() + 2;
    assert!(
        (2..=most).contains(&probes),
        "{probes} connection attempts, at most {most}"
    );
    assert!(probes < 20, "not one probe per query: {probes}");
    // The upstream returns: within a probe interval, service does too,
    // without a restart and although its backoff delay has not passed.
    rig.upstream.set_script(Script::Answer);
    let answered = async {
        loop {
            let reply = within(&rig.dotstub, "up.failover.test.", Duration::from_secs(2)).await;
            if reply.metadata.response_code == ResponseCode::NoError {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let reply = tokio::time::timeout(Duration::from_millis(1000), answered)
        .await
        .expect("answered within a probe interval of the upstream's return");
    assert_eq!(a_records(&reply), [expected_a("up.failover.test")]);
}

#[tokio::test]
async fn garbage_and_wrong_ids_are_never_taken_as_answers() {
    for script in [Script::Garbage, Script::WrongId] {
        let pki = TestPki::new();
        let bad = DotUpstream::start(pki.leaf(TLS_NAME), script.clone()).await;
        let good = DotUpstream::start(pki.leaf(TLS_NAME), Script::Answer).await;
        let options = Options {
            forward: "policy = \"ordered\"",
            ..Options::default()
        };
        let dotstub = start_with(&pki, &[&bad, &good], false, &options);
        let reply = within(&dotstub, "x.failover.test.", Duration::from_secs(4)).await;
        assert_eq!(
            a_records(&reply),
            [expected_a("x.failover.test")],
            "{script:?}"
        );
        assert_eq!(bad.received().len(), 1, "{script:?}");
        assert_eq!(
            dotstub.metrics.upstream(0).unwrap().protocol_errors.get(),
            1,
            "{script:?}"
        );
        // Alone, such an upstream yields SERVFAIL, not its bad data.
        let alone = Harness::start(script.clone()).await;
        let reply = within(&alone.dotstub, "y.failover.test.", Duration::from_secs(4)).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::ServFail,
            "{script:?}"
        );
    }
}

#[tokio::test]
async fn queries_the_upstream_never_answers_do_not_use_up_its_slots() {
    // Four slots in all; the upstream silently drops every "lost" name.
    let options = Options {
        forward: "connections_per_upstream = 1\nmax_queries_per_connection = 4\ntimeout_ms = 300",
        ..Options::default()
    };
    let lost = (0..4)
        .map(|i| (format!("lost{i}.failover.test"), Duration::from_secs(3600)))
        .collect();
    let rig = Harness::with(Script::DelayByName(lost), options).await;
    let warm = within(&rig.dotstub, "warm.failover.test.", Duration::from_secs(2)).await;
    assert_eq!(a_records(&warm), [expected_a("warm.failover.test")]);
    join_all((0..4).map(|i| {
        let dotstub = &rig.dotstub;
        async move {
            let reply = within(
                dotstub,
                &format!("lost{i}.failover.test."),
                Duration::from_secs(2),
            )
            .await;
            assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        }
    }))
    .await;
    // The slots came back, and the connection that went silent was
    // condemned and replaced, without blaming the upstream: ordinary names
    // are answered at once.
    for i in 0..5 {
        let name = format!("found{i}.failover.test.");
        let reply = within(&rig.dotstub, &name, Duration::from_secs(2)).await;
        assert_eq!(a_records(&reply), [expected_a(&name)]);
    }
}

#[tokio::test]
async fn a_retry_joining_a_failing_query_gets_its_own_attempt() {
    let options = Options {
        forward: "timeout_ms = 1000",
        ..Options::default()
    };
    let rig = Harness::with(Script::Answer, options).await;
    let addr = rig.dotstub.addr;
    // The connection answers once, then goes silent: the first query's
    // timeout condemns it without blaming the upstream.
    within(&rig.dotstub, "warm.failover.test.", Duration::from_secs(2)).await;
    rig.upstream.set_script(Script::Stall);
    let name = "retry.failover.test.";
    let first = client::ask_in_background(addr, name, Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The client retransmits while the first attempt still waits.
    let retry = client::ask_in_background(addr, name, Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(100)).await;
    rig.upstream.set_script(Script::Answer);
    let first = first.await.unwrap().expect("first reply");
    assert_eq!(first.metadata.response_code, ResponseCode::ServFail);
    let retry = retry.await.unwrap().expect("retry reply");
    assert_eq!(a_records(&retry), [expected_a("retry.failover.test")]);
}
