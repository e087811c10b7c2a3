//! Identical questions in flight at the same time share one upstream query;
//! each client still gets its own ID and its own spelling of the name.

use std::time::Duration;

use futures_util::future::join_all;
use hickory_proto::rr::RecordType;

use crate::support::{
    client::{self, a_records},
    dot_upstream::Script,
    fixtures::expected_a,
    server::Harness,
};

#[tokio::test]
async fn identical_questions_share_one_upstream_query() {
    let rig = Harness::start(Script::Delay(Duration::from_millis(300))).await;
    let spellings = [
        "www.same.test.",
        "WWW.same.test.",
        "wWw.SaMe.TeSt.",
        "www.SAME.test.",
    ];
    let replies = join_all(spellings.iter().cycle().take(12).map(|name| async move {
        let query = client::query(name, RecordType::A);
        (
            query.metadata.id,
            *name,
            client::udp(rig.dotstub.addr, &query).await,
        )
    }))
    .await;
    for (id, name, reply) in replies {
        assert_eq!(reply.metadata.id, id);
        assert_eq!(
            reply.queries[0].name().to_ascii(),
            name,
            "the client's own spelling"
        );
        assert_eq!(a_records(&reply), [expected_a("www.same.test")]);
    }
    assert_eq!(rig.upstream.received().len(), 1);
    assert_eq!(rig.dotstub.metrics.server.coalesced.get(), 11);
}

#[tokio::test]
async fn different_types_or_do_bits_are_asked_separately() {
    let rig = Harness::start(Script::Delay(Duration::from_millis(200))).await;
    let mut with_do = client::query("www.same.test.", RecordType::A);
    with_do.edns.as_mut().unwrap().set_dnssec_ok(true);
    let queries = [
        client::query("www.same.test.", RecordType::A),
        client::query("www.same.test.", RecordType::AAAA),
        with_do,
    ];
    join_all(
        queries
            .iter()
            .map(|query| client::udp(rig.dotstub.addr, query)),
    )
    .await;
    assert_eq!(rig.upstream.received().len(), 3);
    assert_eq!(rig.dotstub.metrics.server.coalesced.get(), 0);
}
