//! EDNS towards clients: their UDP size is honoured (TC=1 and a retry over
//! TCP gets it whole), their Client Subnet option never leaves the machine,
//! an OPT record comes back only when they sent one, BADVERS for EDNS
//! versions other than 0.

use hickory_proto::{
    op::{Edns, ResponseCode},
    rr::{
        RecordType,
        rdata::opt::{ClientSubnet, EdnsOption},
    },
};

use crate::support::{
    client::{self, Tcp, option_codes},
    dot_upstream::Script,
    fixtures::{BIG_NAME, BIG_TXT_RECORDS, MEDIUM_NAME, MEDIUM_TXT_RECORDS},
    server::Harness,
};

/// RFC 7871 option code.
const CLIENT_SUBNET: u16 = 8;

#[tokio::test]
async fn client_subnet_is_never_forwarded() {
    let rig = Harness::start(Script::Answer).await;
    let mut query = client::query("ecs.edns.test.", RecordType::A);
    let subnet: ClientSubnet = "198.51.100.0/24".parse().unwrap();
    query
        .edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Subnet(subnet));
    assert!(
        option_codes(&query).contains(&CLIENT_SUBNET),
        "the test query does carry ECS"
    );
    let reply = client::udp(rig.dotstub.addr, &query).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    let upstream_query = rig.upstream.received().remove(0).message.unwrap();
    assert!(!option_codes(&upstream_query).contains(&CLIENT_SUBNET));
    assert!(
        !upstream_query
            .to_vec()
            .unwrap()
            .windows(3)
            .any(|w| w == [198, 51, 100])
    );
    assert_eq!(rig.dotstub.metrics.server.client_subnet_stripped.get(), 1);
}

#[tokio::test]
async fn answer_too_big_for_udp_is_truncated_and_whole_over_tcp() {
    let rig = Harness::start(Script::Answer).await;
    for query in [
        client::query(BIG_NAME, RecordType::TXT),
        client::query_without_edns(BIG_NAME, RecordType::TXT),
    ] {
        let over_udp = client::udp(rig.dotstub.addr, &query).await;
        assert!(
            over_udp.metadata.truncation,
            "TC=1 tells the client to retry over TCP"
        );
        assert!(over_udp.answers.is_empty());
        assert_eq!(over_udp.queries.len(), 1);
        assert!(over_udp.to_vec().unwrap().len() <= 512);
        let mut tcp = Tcp::connect(rig.dotstub.addr).await;
        tcp.send(&query).await;
        let over_tcp = tcp.recv().await;
        assert!(!over_tcp.metadata.truncation);
        assert_eq!(over_tcp.answers.len(), BIG_TXT_RECORDS);
    }
    assert_eq!(rig.dotstub.metrics.server.truncated.get(), 2);
}

#[tokio::test]
async fn client_udp_size_is_honoured_up_to_the_servers_limit() {
    let rig = Harness::start(Script::Answer).await;
    // The medium answer is over 512 octets and under 1232.
    let with_size = |size| {
        let mut query = client::query(MEDIUM_NAME, RecordType::TXT);
        query.edns.as_mut().unwrap().set_max_payload(size);
        query
    };
    let fits = client::udp(rig.dotstub.addr, &with_size(1232)).await;
    assert!(!fits.metadata.truncation);
    assert_eq!(fits.answers.len(), MEDIUM_TXT_RECORDS);
    assert!(fits.to_vec().unwrap().len() > 512);
    assert_eq!(
        fits.edns.as_ref().unwrap().max_payload(),
        1232,
        "dotstub advertises its own limit"
    );
    for too_small in [
        with_size(512),
        client::query_without_edns(MEDIUM_NAME, RecordType::TXT),
    ] {
        let reply = client::udp(rig.dotstub.addr, &too_small).await;
        assert!(reply.metadata.truncation && reply.answers.is_empty());
    }
    let mut huge = client::query(BIG_NAME, RecordType::TXT);
    huge.edns.as_mut().unwrap().set_max_payload(65_000);
    let reply = client::udp(rig.dotstub.addr, &huge).await;
    assert!(
        reply.metadata.truncation,
        "the client's 65000 is capped at max_udp_size"
    );
}

#[tokio::test]
async fn opt_record_comes_back_only_to_edns_clients() {
    let rig = Harness::start(Script::Answer).await;
    let plain = client::udp(
        rig.dotstub.addr,
        &client::query_without_edns("a.edns.test.", RecordType::A),
    )
    .await;
    assert!(plain.edns.is_none());
    let mut query = client::query("a.edns.test.", RecordType::A);
    query.edns.as_mut().unwrap().set_dnssec_ok(true);
    let with_edns = client::udp(rig.dotstub.addr, &query).await;
    assert!(
        with_edns.edns.as_ref().unwrap().flags().dnssec_ok,
        "DO is copied back (RFC 3225)"
    );
}

#[tokio::test]
async fn unknown_edns_version_gets_badvers() {
    let rig = Harness::start(Script::Answer).await;
    let mut query = client::query("v1.edns.test.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    query.set_edns(edns);
    let reply = client::udp(rig.dotstub.addr, &query).await;
    // 16 is BADVERS with an OPT record (RFC 6891); hickory names it BADSIG.
    assert_eq!(u16::from(reply.metadata.response_code), 16);
    assert_eq!(reply.edns.as_ref().unwrap().version(), 0);
    assert!(rig.upstream.received().is_empty());
}
