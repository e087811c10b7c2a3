//! Connections that die without closing: a TLS connection that goes silent
//! (what lost NAT state, a new WAN address or a suspended laptop leaves
//! behind) or a stream that falls out of step costs at most the one query
//! whose time ran out on it; the connection is condemned, its other
//! queries are re-sent on a fresh one, and the upstream is not blamed. A
//! network change starts the pool afresh.

use std::time::Duration;

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};

use dotstub::{netwatch::Change, upstream::Health};

use crate::support::{
    client::{self, a_records},
    dot_upstream::Script,
    fixtures::expected_a,
    server::{Dotstub, Harness, Options},
};

/// One connection, a short budget: what a silent connection costs shows
/// in one query.
const ONE_CONNECTION: Options = Options {
    forward: "connections_per_upstream = 1\ntimeout_ms = 600",
    listen: "",
    padding: "",
    cache: "enabled = false",
    upstream: "",
    dnssec: "",
};

/// Sends one query over UDP and returns its reply, which must come within `wait`.
async fn ask(dotstub: &Dotstub, name: &str, wait: Duration) -> Message {
    let bytes = client::encode(&client::query(name, RecordType::A));
    let reply = client::udp_bytes(dotstub.addr, &bytes, wait)
        .await
        .unwrap_or_else(|| panic!("no reply to {name} within {wait:?}"));
    Message::from_vec(&reply).expect("reply parses")
}

async fn answered(dotstub: &Dotstub, name: &str, wait: Duration) {
    let reply = ask(dotstub, name, wait).await;
    assert_eq!(a_records(&reply), [expected_a(name)], "{name}");
}

#[tokio::test]
async fn a_connection_that_goes_silent_costs_one_query_and_is_replaced() {
    let rig = Harness::with(Script::Answer, ONE_CONNECTION).await;
    let dotstub = &rig.dotstub;
    answered(dotstub, "before.dead.test.", Duration::from_secs(2)).await;
    // The connection stays open; nothing comes back on it any more.
    rig.upstream.set_script(Script::Stall);
    let lost = ask(dotstub, "lost.dead.test.", Duration::from_secs(2)).await;
    assert_eq!(lost.metadata.response_code, ResponseCode::ServFail);
    // The next queries go out on a fresh connection at once: the upstream
    // is not backing off, since the connection, not it, had died.
    rig.upstream.set_script(Script::Answer);
    for i in 0..3 {
        let name = format!("after{i}.dead.test.");
        answered(dotstub, &name, Duration::from_millis(500)).await;
    }
    let counters = dotstub.metrics.upstream(0).unwrap();
    assert_eq!(counters.condemned.get(), 1);
    assert_eq!(rig.upstream.connections(), 2);
    assert_eq!(dotstub.upstream_health(0), Some(Health::Up));
    assert_eq!(dotstub.metrics.server.servfail.get(), 1);
}

#[tokio::test]
async fn queries_behind_the_one_that_ran_out_are_resent_on_a_fresh_connection() {
    let rig = Harness::with(Script::Answer, ONE_CONNECTION).await;
    let dotstub = &rig.dotstub;
    answered(dotstub, "before.dead.test.", Duration::from_secs(2)).await;
    rig.upstream.set_script(Script::Stall);
    let addr = dotstub.addr;
    let first = client::ask_in_background(addr, "first.dead.test.", Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(250)).await;
    let second = client::ask_in_background(addr, "second.dead.test.", Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Both were written on the silent connection; the upstream answers
    // again, but only on a new connection.
    rig.upstream.set_script(Script::Answer);
    let first = first.await.unwrap().expect("a reply");
    assert_eq!(first.metadata.response_code, ResponseCode::ServFail);
    // When the first query's time ran out, the second, with time left, was
    // re-sent at once.
    let second = second.await.unwrap().expect("a reply");
    assert_eq!(a_records(&second), [expected_a("second.dead.test")]);
    let counters = dotstub.metrics.upstream(0).unwrap();
    assert_eq!(counters.condemned.get(), 1);
    assert!(counters.resent.get() >= 1);
    let asked_second: Vec<usize> = rig
        .upstream
        .received()
        .iter()
        .filter(|q| {
            q.message.as_ref().is_some_and(|m| {
                m.queries
                    .first()
                    .is_some_and(|q| q.name().to_ascii() == "second.dead.test.")
            })
        })
        .map(|q| q.connection)
        .collect();
    assert_eq!(
        asked_second,
        [0, 1],
        "sent on the old, re-sent on a new one"
    );
}

#[tokio::test]
async fn a_stream_out_of_step_costs_one_query() {
    let rig = Harness::with(Script::OutOfStep { answers: 2 }, ONE_CONNECTION).await;
    let dotstub = &rig.dotstub;
    answered(dotstub, "one.dead.test.", Duration::from_secs(2)).await;
    answered(dotstub, "two.dead.test.", Duration::from_secs(2)).await;
    // Its answer comes, honest, behind two stray octets: dotstub waits for
    // a 4,096-octet frame that never completes.
    let lost = ask(dotstub, "three.dead.test.", Duration::from_secs(2)).await;
    assert_eq!(lost.metadata.response_code, ResponseCode::ServFail);
    for i in 0..2 {
        let name = format!("fresh{i}.dead.test.");
        answered(dotstub, &name, Duration::from_millis(500)).await;
    }
    assert_eq!(dotstub.metrics.upstream(0).unwrap().condemned.get(), 1);
    assert_eq!(dotstub.metrics.server.servfail.get(), 1);
}

#[tokio::test]
async fn a_network_change_ends_backoff_connections_and_tls_sessions() {
    let options = Options {
        cache: "enabled = false",
        ..Options::default()
    };
    let rig = Harness::with(Script::Answer, options).await;
    let dotstub = &rig.dotstub;
    answered(dotstub, "first.change.test.", Duration::from_secs(2)).await;
    assert_eq!(rig.upstream.open_connections(), 1);
    rig.upstream.set_script(Script::RefuseTls);
    dotstub.network_changed(Change::Routes);
    client::eventually("the old connection is closed", || {
        rig.upstream.open_connections() == 0
    })
    .await;
    // The probe that follows the change finds new connections refused:
    // the upstream backs off, and while it does, queries fail at once.
    client::eventually("the probe fails", || {
        matches!(dotstub.upstream_health(0), Some(Health::Backoff { .. }))
    })
    .await;
    let refused = ask(dotstub, "refused.change.test.", Duration::from_millis(300)).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::ServFail);
    // The machine wakes from sleep: backoff is forgotten, the probe opens
    // a connection that does not resume the session of the network before
    // (RFC 8446 appendix C.4), and the next query finds it ready.
    rig.upstream.set_script(Script::Answer);
    let slept = Duration::from_secs(600);
    dotstub.network_changed(Change::Resumed { slept });
    client::eventually("the probe is answered", || {
        dotstub.upstream_health(0) == Some(Health::Up) && rig.upstream.connections() == 2
    })
    .await;
    let probe = rig
        .upstream
        .received()
        .pop()
        .and_then(|q| q.message)
        .unwrap();
    let asked = probe.queries.first().unwrap();
    assert_eq!(
        (asked.name().to_ascii().as_str(), asked.query_type()),
        (".", RecordType::NS)
    );
    answered(dotstub, "second.change.test.", Duration::from_millis(500)).await;
    assert_eq!(rig.upstream.connections(), 2, "the probe's connection");
    assert_eq!(rig.upstream.handshakes_resumed(), 0);
}

#[tokio::test]
async fn without_a_network_change_sessions_resume() {
    // The counterpart of the test above: what it asserts is not resumed
    // would be, without the change.
    let options = Options {
        cache: "enabled = false",
        forward: "idle_timeout_ms = 100",
        ..Options::default()
    };
    let rig = Harness::with(Script::Answer, options).await;
    answered(&rig.dotstub, "first.resume.test.", Duration::from_secs(2)).await;
    client::eventually("the idle connection is closed", || {
        rig.upstream.open_connections() == 0
    })
    .await;
    answered(&rig.dotstub, "second.resume.test.", Duration::from_secs(2)).await;
    assert_eq!(rig.upstream.connections(), 2);
    assert_eq!(rig.upstream.handshakes_resumed(), 1);
}
