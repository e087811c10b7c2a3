//! Bad input gets a clear answer or is dropped and counted, never a crash:
//! FORMERR for a bad question, NOTIMP for other opcodes, REFUSED for zone
//! transfers, silence for runts and responses, and dotstub keeps serving.

use std::time::Duration;

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::support::{
    client::{self, Tcp, a_records},
    dot_upstream::Script,
    fixtures::expected_a,
    server::Harness,
};

/// How long to wait for a reply that should not come.
const SILENCE: Duration = Duration::from_millis(300);

/// A query for `www.bad.test A` with ID 0xbeef, as raw bytes.
fn raw_query() -> Vec<u8> {
    let mut query = client::query_without_edns("www.bad.test.", RecordType::A);
    query.metadata.id = 0xbeef;
    client::encode(&query)
}

async fn still_answers(rig: &Harness) {
    let reply = client::udp(
        rig.dotstub.addr,
        &client::query("alive.bad.test.", RecordType::A),
    )
    .await;
    assert_eq!(a_records(&reply), [expected_a("alive.bad.test")]);
}

async fn rcode_of(rig: &Harness, packet: &[u8]) -> ResponseCode {
    let reply = client::udp_bytes(rig.dotstub.addr, packet, client::CLIENT_TIMEOUT)
        .await
        .expect("a reply");
    let reply = Message::from_vec(&reply).expect("reply parses");
    assert_eq!(
        reply.metadata.id, 0xbeef,
        "the reply carries the query's ID"
    );
    reply.metadata.response_code
}

#[tokio::test]
async fn runts_and_responses_are_dropped_and_counted() {
    let rig = Harness::start(Script::Answer).await;
    assert_eq!(
        client::udp_bytes(rig.dotstub.addr, &[0xbe, 0xef, 1], SILENCE).await,
        None
    );
    let mut response = raw_query();
    response[2] |= 0x80;
    assert_eq!(
        client::udp_bytes(rig.dotstub.addr, &response, SILENCE).await,
        None
    );
    let server = &rig.dotstub.metrics.server;
    assert_eq!(
        (server.dropped_short.get(), server.dropped_responses.get()),
        (1, 1)
    );
    still_answers(&rig).await;
}

#[tokio::test]
async fn bad_question_sections_get_formerr() {
    let rig = Harness::start(Script::Answer).await;
    let good = raw_query();
    let mut two_questions = good.clone();
    two_questions[5] = 2;
    let mut no_question = good[..12].to_vec();
    no_question[5] = 0;
    let truncated_name = good[..16].to_vec();
    let mut bad_label = good.clone();
    bad_label[12] = 0x43; // label type 01: extended labels, retired
    let mut compressed = good[..12].to_vec();
    compressed.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    for (what, packet) in [
        ("two questions", two_questions),
        ("no question", no_question),
        ("truncated name", truncated_name),
        ("bad label", bad_label),
        ("compressed question", compressed),
    ] {
        assert_eq!(
            rcode_of(&rig, &packet).await,
            ResponseCode::FormErr,
            "{what}"
        );
    }
    assert_eq!(rig.dotstub.metrics.server.formerr.get(), 5);
    assert!(
        rig.upstream.received().is_empty(),
        "nothing malformed goes upstream"
    );
}

#[tokio::test]
async fn other_opcodes_get_notimp_and_zone_transfers_refused() {
    let rig = Harness::start(Script::Answer).await;
    let mut notify = raw_query();
    notify[2] |= 4 << 3;
    assert_eq!(rcode_of(&rig, &notify).await, ResponseCode::NotImp);
    let mut axfr = client::query_without_edns("bad.test.", RecordType::AXFR);
    axfr.metadata.id = 0xbeef;
    assert_eq!(
        rcode_of(&rig, &client::encode(&axfr)).await,
        ResponseCode::Refused
    );
    assert!(rig.upstream.received().is_empty());
}

#[tokio::test]
async fn random_garbage_never_stops_the_server() {
    let rig = Harness::start(Script::Answer).await;
    let mut rng = StdRng::seed_from_u64(7858);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let template = raw_query();
    for round in 0..2000 {
        let mut packet = if round % 2 == 0 {
            let len = rng.random_range(0..600);
            (0..len).map(|_| rng.random::<u8>()).collect::<Vec<u8>>()
        } else {
            // Mutations of a real query reach deeper into the parser.
            let mut packet = template.clone();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..packet.len());
                packet[at] = rng.random();
            }
            packet.truncate(rng.random_range(0..=packet.len()));
            packet
        };
        if let Some(flags) = packet.get_mut(2) {
            *flags &= 0x7f; // QR=0, so the parser sees it as a query
        }
        socket.send_to(&packet, rig.dotstub.addr).await.unwrap();
    }
    let mut tcp = Tcp::connect(rig.dotstub.addr).await;
    tcp.send_bytes(&[0xbe, 0xef, 0x01]).await;
    tcp.send_bytes(&template[..14]).await;
    let formerr = Message::from_vec(&tcp.recv_bytes().await.expect("FORMERR over TCP")).unwrap();
    assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);
    tcp.send(&client::query("tcp.bad.test.", RecordType::A))
        .await;
    assert_eq!(
        a_records(&tcp.recv().await),
        [expected_a("tcp.bad.test")],
        "the connection lives on"
    );
    still_answers(&rig).await;
}
