//! EDNS(0) padding (RFC 7830, RFC 8467): every upstream query is padded to
//! the block, the Padding option last and all zeros; no answer to a local
//! client carries padding.

use std::collections::HashSet;

use hickory_proto::{
    op::Message,
    rr::{RecordType, rdata::opt::EdnsOption},
};

use crate::support::{
    client::{self, Tcp, a_records, option_codes},
    dot_upstream::Script,
    fixtures::PADDING_OPTION,
    server::{Harness, Options},
};

/// Names of many lengths, so the padding lengths differ.
fn names() -> Vec<String> {
    (1..40)
        .step_by(3)
        .map(|n| format!("{}.padding.test.", "x".repeat(n)))
        .collect()
}

/// The Padding option's data, checking it is the last option.
fn padding_of(message: &Message) -> Option<Vec<u8>> {
    let edns = message.edns.as_ref()?;
    let options = edns.options().as_ref();
    let (_, last) = options.last()?;
    let EdnsOption::Unknown(PADDING_OPTION, data) = last else {
        assert!(
            !option_codes(message).contains(&PADDING_OPTION),
            "padding must be the last option"
        );
        return None;
    };
    Some(data.clone())
}

async fn send_all(rig: &Harness) {
    for name in names() {
        let reply = client::udp(rig.dotstub.addr, &client::query(&name, RecordType::A)).await;
        assert_eq!(a_records(&reply).len(), 1);
    }
}

#[tokio::test]
async fn every_upstream_query_is_padded_to_the_block() {
    for (policy, block) in [
        ("", 128),
        ("queries = \"block:64\"", 64),
        ("queries = \"block:468\"", 468),
    ] {
        let rig = Harness::with(
            Script::Answer,
            Options {
                padding: policy,
                ..Options::default()
            },
        )
        .await;
        send_all(&rig).await;
        let received = rig.upstream.received();
        assert_eq!(received.len(), names().len());
        for query in received {
            assert_eq!(
                query.bytes.len() % block,
                0,
                "{policy}: {} octets",
                query.bytes.len()
            );
            let message = query.message.expect("upstream query parses");
            let padding = padding_of(&message).expect("padding option present and last");
            assert!(padding.iter().all(|&b| b == 0), "padding octets are zero");
        }
    }
}

#[tokio::test]
async fn policy_none_sends_no_padding_option() {
    let options = Options {
        padding: "queries = \"none\"",
        ..Options::default()
    };
    let rig = Harness::with(Script::Answer, options).await;
    send_all(&rig).await;
    let received = rig.upstream.received();
    for query in &received {
        assert!(!option_codes(query.message.as_ref().unwrap()).contains(&PADDING_OPTION));
    }
    // Lengths grow with the names; the first query on each connection also
    // carries edns-tcp-keepalive, 4 octets more, so leave those out.
    let mut first = HashSet::new();
    let lengths: Vec<usize> = received
        .iter()
        .filter(|query| !first.insert(query.connection))
        .map(|query| query.bytes.len())
        .collect();
    assert!(
        lengths.windows(2).all(|w| w[0] < w[1]),
        "unpadded lengths follow the names: {lengths:?}"
    );
}

#[tokio::test]
async fn answers_to_local_clients_are_never_padded() {
    let rig = Harness::start(Script::Answer).await;
    // The first answer comes from upstream, the second from the cache.
    let query = client::query("www.padding.test.", RecordType::A);
    let over_udp = client::udp(rig.dotstub.addr, &query).await;
    let mut tcp = Tcp::connect(rig.dotstub.addr).await;
    tcp.send(&query).await;
    let over_tcp = tcp.recv().await;
    for reply in [over_udp, over_tcp] {
        assert_eq!(a_records(&reply).len(), 1);
        assert!(
            reply.edns.is_some(),
            "an EDNS client gets an OPT record back"
        );
        assert!(!option_codes(&reply).contains(&PADDING_OPTION));
        assert!(
            reply.to_vec().unwrap().len() < 468,
            "the upstream's 468-octet padding is gone"
        );
    }
    let upstream = rig.dotstub.metrics.upstream(0).unwrap();
    assert_eq!(upstream.padded_answers.get(), 1, "the upstream did pad");
    assert_eq!(rig.dotstub.metrics.cache.hits.get(), 1);
}
