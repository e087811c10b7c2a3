//! Upstream connections: a small pool per upstream, queries pipelined over
//! it and matched back by random message IDs, edns-tcp-keepalive, idle
//! close and TLS session resumption.

use std::{collections::HashSet, time::Duration};

use futures_util::future::join_all;
use hickory_proto::rr::RecordType;

use dotstub::upstream::Health;

use crate::support::{
    certs::TestPki,
    client::{self, a_records},
    dot_upstream::{DotUpstream, Script},
    fixtures::{KEEPALIVE_OPTION, expected_a},
    server::{Dotstub, Harness, Options, TLS_NAME, config_text},
};

/// Sends `count` concurrent UDP queries for distinct names, all with the
/// same client ID, and checks every answer.
async fn concurrent_queries(rig: &Harness, count: usize, client_id: u16) {
    let queries = (0..count).map(|i| async move {
        let name = format!("host{i}.pool.test.");
        let mut query = client::query(&name, RecordType::A);
        query.metadata.id = client_id;
        let reply = client::udp(rig.dotstub.addr, &query).await;
        assert_eq!(a_records(&reply), [expected_a(&name)], "{name}");
    });
    join_all(queries).await;
}

#[tokio::test]
async fn five_hundred_concurrent_queries_share_the_configured_connections() {
    let options = Options {
        forward: "connections_per_upstream = 2",
        ..Options::default()
    };
    let rig = Harness::with(Script::Delay(Duration::from_millis(50)), options).await;
    concurrent_queries(&rig, 500, 0x1234).await;
    assert!(
        rig.upstream.connections() <= 2,
        "{} connections",
        rig.upstream.connections()
    );
    assert!(rig.upstream.peak_open_connections() <= 2);
    assert_eq!(rig.upstream.received().len(), 500);
}

#[tokio::test]
async fn out_of_order_answers_are_matched_to_their_queries() {
    let options = Options {
        forward: "connections_per_upstream = 1",
        ..Options::default()
    };
    let rig = Harness::with(Script::Reorder { batch: 10 }, options).await;
    concurrent_queries(&rig, 10, 7).await;
    assert_eq!(
        rig.upstream.connections(),
        1,
        "all ten went over one connection"
    );
}

#[tokio::test]
async fn upstream_ids_are_random_and_never_the_clients() {
    let rig = Harness::start(Script::Delay(Duration::from_millis(200))).await;
    concurrent_queries(&rig, 100, 0x4242).await;
    let received = rig.upstream.received();
    let ids: Vec<u16> = received
        .iter()
        .map(|q| u16::from_be_bytes([q.bytes[0], q.bytes[1]]))
        .collect();
    assert!(
        !ids.contains(&0x4242),
        "the client's ID never goes upstream"
    );
    // All 100 were in flight together, so on each connection their IDs
    // must all differ (two connections may happen to pick the same one).
    let per_connection: HashSet<(usize, u16)> = received
        .iter()
        .zip(&ids)
        .map(|(q, id)| (q.connection, *id))
        .collect();
    assert_eq!(per_connection.len(), 100);
    let sequential = ids
        .windows(2)
        .filter(|w| w[1] == w[0].wrapping_add(1))
        .count();
    assert!(sequential < 5, "IDs look sequential: {ids:?}");
}

#[tokio::test]
async fn first_query_on_each_connection_carries_tcp_keepalive() {
    let rig = Harness::start(Script::Answer).await;
    for i in 0..8 {
        let query = client::query(&format!("k{i}.test."), RecordType::A);
        assert_eq!(
            a_records(&client::udp(rig.dotstub.addr, &query).await).len(),
            1
        );
    }
    let mut seen = HashSet::new();
    for query in rig.upstream.received() {
        let options = client::option_codes(query.message.as_ref().expect("query parses"));
        let first = seen.insert(query.connection);
        assert_eq!(
            options.contains(&KEEPALIVE_OPTION),
            first,
            "connection {}",
            query.connection
        );
    }
    assert_eq!(seen.len(), rig.upstream.connections());
}

#[tokio::test]
async fn idle_upstream_connection_closes_and_resumes_tls() {
    let options = Options {
        forward: "idle_timeout_ms = 200",
        ..Options::default()
    };
    let rig = Harness::with(Script::Answer, options).await;
    client::udp(rig.dotstub.addr, &client::query("a.test.", RecordType::A)).await;
    client::eventually("dotstub closes the idle connection", || {
        rig.upstream.open_connections() == 0
    })
    .await;
    let reply = client::udp(rig.dotstub.addr, &client::query("b.test.", RecordType::A)).await;
    assert_eq!(a_records(&reply), [expected_a("b.test")]);
    assert_eq!(rig.upstream.connections(), 2);
    assert_eq!(
        rig.upstream.handshakes_resumed(),
        1,
        "the second connection resumes the session"
    );
    assert_eq!(rig.dotstub.metrics.upstream(0).unwrap().resumed.get(), 1);
}

#[tokio::test]
async fn shorter_keepalive_from_the_server_wins() {
    // dotstub's own idle timeout is long; the server asks for 300 ms.
    let options = Options {
        forward: "idle_timeout_ms = 60000",
        ..Options::default()
    };
    let rig = Harness::with(Script::Answer, options).await;
    rig.upstream.set_keepalive(Some(Duration::from_millis(300)));
    client::udp(rig.dotstub.addr, &client::query("a.test.", RecordType::A)).await;
    assert_eq!(rig.upstream.open_connections(), 1);
    client::eventually("dotstub honours the server's keepalive", || {
        rig.upstream.open_connections() == 0
    })
    .await;
}

#[tokio::test]
async fn server_asking_to_close_gets_a_fresh_connection_next_time() {
    let rig = Harness::start(Script::Answer).await;
    rig.upstream.set_keepalive(Some(Duration::ZERO));
    client::udp(rig.dotstub.addr, &client::query("a.test.", RecordType::A)).await;
    client::eventually("dotstub closes on keepalive 0", || {
        rig.upstream.open_connections() == 0
    })
    .await;
    let reply = client::udp(rig.dotstub.addr, &client::query("b.test.", RecordType::A)).await;
    assert_eq!(a_records(&reply), [expected_a("b.test")]);
    assert_eq!(rig.upstream.connections(), 2);
}

#[tokio::test]
async fn round_robin_spreads_and_ordered_sticks_to_the_first() {
    for (policy, expect_both) in [("round-robin", true), ("ordered", false)] {
        let pki = crate::support::certs::TestPki::new();
        let first =
            DotUpstream::start(pki.leaf(crate::support::server::TLS_NAME), Script::Answer).await;
        let second =
            DotUpstream::start(pki.leaf(crate::support::server::TLS_NAME), Script::Answer).await;
        let tables = [("first", &first), ("second", &second)]
            .map(|(label, u)| crate::support::server::upstream_table(label, u.addr(), &pki, ""))
            .concat();
        let forward = format!("policy = \"{policy}\"");
        let options = Options {
            forward: Box::leak(forward.into_boxed_str()),
            ..Options::default()
        };
        let dotstub = crate::support::server::Dotstub::start(&crate::support::server::config_text(
            &options, &tables,
        ));
        for i in 0..10 {
            client::udp(
                dotstub.addr,
                &client::query(&format!("rr{i}.test."), RecordType::A),
            )
            .await;
        }
        let (a, b) = (first.received().len(), second.received().len());
        assert_eq!(a + b, 10);
        if expect_both {
            assert!(a >= 4 && b >= 4, "{policy}: {a} and {b}");
        } else {
            assert_eq!((a, b), (10, 0), "{policy}");
        }
    }
}

#[tokio::test]
async fn an_address_that_fails_hands_over_to_the_next_at_once() {
    // The first address, IPv6 and tried first, refuses (or, without IPv6,
    // is unreachable): the IPv4 one connects at once, and the upstream is
    // not counted as failing.
    let pki = TestPki::new();
    let upstream = DotUpstream::start(pki.leaf(TLS_NAME), Script::Answer).await;
    let dead = std::net::TcpListener::bind("[::1]:0")
        .and_then(|listener| listener.local_addr())
        .map_or_else(|_| "[::1]:9".to_owned(), |addr| addr.to_string());
    let table = format!(
        "[[upstream]]\nlabel = \"rig\"\naddresses = [\"{}\", \"{dead}\"]\n\
         tls_name = \"{TLS_NAME}\"\nca_file = {:?}\n",
        upstream.addr(),
        pki.ca_file().display().to_string(),
    );
    let dotstub = Dotstub::start(&config_text(&Options::default(), &table));
    for i in 0..3 {
        let name = format!("raced{i}.pool.test.");
        let bytes = client::encode(&client::query(&name, RecordType::A));
        let reply = client::udp_bytes(dotstub.addr, &bytes, Duration::from_millis(200))
            .await
            .expect("answered well within the 250 ms attempt delay");
        let reply = hickory_proto::op::Message::from_vec(&reply).unwrap();
        assert_eq!(a_records(&reply), [expected_a(&name)]);
    }
    let counters = dotstub.metrics.upstream(0).unwrap();
    assert_eq!(counters.connect_failures.get(), 0);
    assert_eq!(dotstub.upstream_health(0), Some(Health::Up));
}
