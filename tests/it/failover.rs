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
async fn silent_first_upstream_fails_over_within_the_timeout() {
    let pki = TestPki::new();
    let silent = DotUpstream::start(pki.leaf(TLS_NAME), Script::Stall).await;
    let good = DotUpstream::start(pki.leaf(TLS_NAME), Script::Answer).await;
    let options = Options {
        forward: "policy = \"ordered\"\ntimeout_ms = 1000",
        ..Options::default()
    };
    let dotstub = start_with(&pki, &[&silent, &good], false, &options);
    let reply = within(&dotstub, "late.failover.test.", Duration::from_millis(1500)).await;
    assert_eq!(a_records(&reply), [expected_a("late.failover.test")]);
    assert_eq!(
        silent.received().len(),
        1,
        "the silent upstream was tried first"
    );
    assert_eq!(dotstub.metrics.upstream(0).unwrap().timeouts.get(), 1);
    // Backing off now: the next query goes straight to the good upstream.
    within(&dotstub, "next.failover.test.", Duration::from_millis(500)).await;
    assert_eq!(silent.received().len(), 1);
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
async fn backoff_never_wedges_when_the_upstream_returns() {
    let rig = Harness::start(Script::RefuseTls).await;
    let reply = within(&rig.dotstub, "a.failover.test.", Duration::from_secs(4)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(
        rig.dotstub.metrics.upstream(0).unwrap().tls_failures.get(),
        1
    );
    // The only upstream is backing off, but it is still probed: service
    // comes back with the upstream, without a restart.
    rig.upstream.set_script(Script::Answer);
    let reply = within(&rig.dotstub, "b.failover.test.", Duration::from_secs(4)).await;
    assert_eq!(a_records(&reply), [expected_a("b.failover.test")]);
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
    // The slots came back, and the connection full of given-up queries was
    // replaced: ordinary names are answered.
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
    let rig = Harness::with(Script::Stall, options).await;
    let addr = rig.dotstub.addr;
    let first = tokio::spawn(async move {
        let bytes = client::encode(&client::query("retry.failover.test.", RecordType::A));
        client::udp_bytes(addr, &bytes, Duration::from_secs(3)).await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The client retransmits while the first attempt still waits.
    let retry = tokio::spawn(async move {
        let bytes = client::encode(&client::query("retry.failover.test.", RecordType::A));
        client::udp_bytes(addr, &bytes, Duration::from_secs(3)).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    rig.upstream.set_script(Script::Answer);
    let first = Message::from_vec(&first.await.unwrap().expect("first reply")).unwrap();
    assert_eq!(first.metadata.response_code, ResponseCode::ServFail);
    let retry = Message::from_vec(&retry.await.unwrap().expect("retry reply")).unwrap();
    assert_eq!(a_records(&retry), [expected_a("retry.failover.test")]);
}
