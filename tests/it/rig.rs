//! Tests of the test rig itself: the PKI, the fixture zone and every `Script`
//! of the DoT upstream, driven by a minimal tokio-rustls client, so that a
//! failing dotstub test can be trusted to point at dotstub, not at the rig.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::support::certs::{CA_COMMON_NAME, TestPki, spki_pin_of};
use crate::support::dot_upstream::{DotUpstream, Script};
use crate::support::fixtures::{self, BIG_NAME, NX_SUFFIX, TTL};

const TLS_NAME: &str = "dns.test";

async fn within<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), test)
        .await
        .expect("rig test timed out")
}

async fn eventually(condition: impl Fn() -> bool) {
    while !condition() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A bare DoT client trusting only one test CA.
struct Client {
    tls: TlsStream<TcpStream>,
}

fn trusting(pki: &TestPki, versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_cert()).expect("CA certificate is valid");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

impl Client {
    async fn connect(config: &Arc<ClientConfig>, addr: SocketAddr) -> io::Result<Client> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(TLS_NAME).expect("valid server name");
        let tls = TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await?;
        Ok(Client { tls })
    }

    async fn send(&mut self, message: &[u8]) {
        let len = u16::try_from(message.len()).expect("query fits a frame");
        let mut wire = len.to_be_bytes().to_vec();
        wire.extend_from_slice(message);
        self.tls.write_all(&wire).await.expect("send query");
    }

    async fn recv_bytes(&mut self) -> io::Result<Vec<u8>> {
        let len = self.tls.read_u16().await?;
        let mut message = vec![0; usize::from(len)];
        self.tls.read_exact(&mut message).await?;
        Ok(message)
    }

    async fn recv(&mut self) -> Message {
        let bytes = self.recv_bytes().await.expect("an answer");
        Message::from_vec(&bytes).expect("answer parses")
    }

    async fn send_query(&mut self, query: &Message) {
        self.send(&query.to_vec().expect("encode query")).await;
    }

    async fn ask(&mut self, query: &Message) -> Message {
        self.send_query(query).await;
        self.recv().await
    }
}

async fn start(script: Script) -> (TestPki, DotUpstream, Arc<ClientConfig>) {
    let pki = TestPki::new();
    let upstream = DotUpstream::start(pki.leaf(TLS_NAME), script).await;
    let config = trusting(&pki, rustls::ALL_VERSIONS);
    (pki, upstream, config)
}

/// An upstream following `script` and one client connected to it.
async fn connected(script: Script) -> (DotUpstream, Client) {
    let (_pki, upstream, config) = start(script).await;
    let client = Client::connect(&config, upstream.addr())
        .await
        .expect("connect");
    (upstream, client)
}

fn query(id: u16, name: &str, query_type: RecordType, edns: Option<Edns>) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    let name = Name::from_ascii(name).expect("valid name");
    message.queries.push(Query::query(name, query_type));
    message.edns = edns;
    message
}

fn edns(padding: bool) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    if padding {
        edns.options_mut()
            .insert(EdnsOption::Unknown(fixtures::PADDING_OPTION, vec![0; 16]));
    }
    edns
}

fn addresses(response: &Message) -> Vec<RData> {
    response.answers.iter().map(|r| r.data.clone()).collect()
}

// The leaf and CA keys are P-256; their SPKI is this 27-octet prefix plus the point.
fn p256_spki(cert_der: &[u8]) -> &[u8] {
    const PREFIX: [u8; 13] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    ];
    let start = cert_der
        .windows(PREFIX.len())
        .position(|w| w == PREFIX)
        .expect("certificate has a P-256 SPKI");
    &cert_der[start..start + 91]
}

#[test]
fn pki_writes_ca_pem_and_pins_match_certificates() {
    let pki = TestPki::new();
    assert!(pki.ca_file().starts_with(pki.dir()));
    let pem = std::fs::read_to_string(pki.ca_file()).expect("CA PEM readable");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let ca = pki.ca_cert();
    let has_cn = ca
        .windows(CA_COMMON_NAME.len())
        .any(|w| w == CA_COMMON_NAME.as_bytes());
    assert!(has_cn);
    let identity = pki.leaf(TLS_NAME).clone();
    assert_eq!(identity.chain.len(), 2);
    assert_eq!(identity.chain[1], ca);
    assert_eq!(
        identity.leaf_spki_pin,
        spki_pin_of(p256_spki(&identity.chain[0]))
    );
    assert_eq!(identity.ca_spki_pin, spki_pin_of(p256_spki(&ca)));
    assert_eq!(
        identity.leaf_spki_pin.len(),
        44,
        "base64 of 32 octets, padded"
    );
    assert_ne!(pki.leaf(TLS_NAME).leaf_spki_pin, identity.leaf_spki_pin);
}

#[tokio::test]
async fn a_and_aaaa_answers_echo_the_question_exactly() {
    within(async {
        let (upstream, mut client) = connected(Script::Answer).await;
        let sent = query(0x1234, "WwW.ExAmple.TeSt.", RecordType::A, None);
        let sent_bytes = sent.to_vec().expect("encode");
        client.send(&sent_bytes).await;
        let got = client.recv_bytes().await.expect("answer");
        assert_eq!(
            got[12..sent_bytes.len()],
            sent_bytes[12..],
            "question echoed byte for byte"
        );
        let response = Message::from_vec(&got).expect("parses");
        assert_eq!(response.metadata.id, 0x1234);
        assert_eq!(response.metadata.message_type, MessageType::Response);
        assert!(response.metadata.recursion_desired && response.metadata.recursion_available);
        let expected = fixtures::expected_a("www.example.test");
        assert_eq!(expected.octets()[0], 10);
        assert_eq!(addresses(&response), [RData::A(expected.into())]);
        assert_eq!(response.answers[0].ttl, TTL);
        assert_eq!(response.answers[0].name.to_ascii(), "WwW.ExAmple.TeSt.");
        assert!(response.edns.is_none(), "no OPT without one in the query");

        let v6 = client
            .ask(&query(2, "www.example.test.", RecordType::AAAA, None))
            .await;
        let expected = fixtures::expected_aaaa("WWW.example.test.");
        assert_eq!(expected.octets()[0], 0xfd);
        assert_eq!(addresses(&v6), [RData::AAAA(expected.into())]);

        let received = upstream.received();
        assert_eq!(received.len(), 2);
        assert_eq!(received[0].bytes, sent_bytes);
        assert_eq!(received[0].message.as_ref(), Some(&sent));
    })
    .await
}

#[tokio::test]
async fn pads_only_padded_queries_and_adds_keepalive() {
    within(async {
        let (upstream, mut client) = connected(Script::Answer).await;
        let mut with_do = edns(true);
        with_do.set_dnssec_ok(true);
        client
            .send_query(&query(1, "pad.test.", RecordType::A, Some(with_do)))
            .await;
        let padded = client.recv_bytes().await.expect("answer");
        assert_eq!(padded.len() % fixtures::PADDING_BLOCK, 0);
        let padded = Message::from_vec(&padded)
            .expect("parses")
            .edns
            .expect("OPT echoed");
        assert!(padded.option(EdnsCode::Padding).is_some());
        assert!(padded.flags().dnssec_ok);
        assert_eq!(padded.max_payload(), fixtures::EDNS_PAYLOAD);

        upstream.set_keepalive(Some(Duration::from_secs(2)));
        let plain = client
            .ask(&query(2, "pad.test.", RecordType::A, Some(edns(false))))
            .await;
        let plain = plain.edns.expect("OPT echoed");
        assert!(plain.option(EdnsCode::Padding).is_none());
        assert!(!plain.flags().dnssec_ok);
        let keepalive = EdnsOption::Unknown(fixtures::KEEPALIVE_OPTION, vec![0, 20]);
        assert_eq!(plain.option(EdnsCode::Keepalive), Some(&keepalive));
    })
    .await
}

#[tokio::test]
async fn delays_send_answers_out_of_order_on_one_connection() {
    within(async {
        let slow = ("Slow.Test".to_owned(), Duration::from_millis(300));
        let (upstream, mut client) = connected(Script::DelayByName(vec![slow])).await;
        for (id, name) in [(1, "slow.test."), (2, "fast.test.")] {
            let message = query(id, name, RecordType::A, None);
            client.send_query(&message).await;
        }
        assert_eq!(client.recv().await.metadata.id, 2);
        assert_eq!(client.recv().await.metadata.id, 1);

        upstream.set_script(Script::Delay(Duration::from_millis(300)));
        client
            .send_query(&query(3, "a.test.", RecordType::A, None))
            .await;
        eventually(|| upstream.received().len() == 3).await;
        upstream.set_script(Script::Delay(Duration::from_millis(1)));
        client
            .send_query(&query(4, "b.test.", RecordType::A, None))
            .await;
        assert_eq!(client.recv().await.metadata.id, 4);
        assert_eq!(client.recv().await.metadata.id, 3);
        assert!(upstream.received().iter().all(|q| q.connection == 0));
    })
    .await
}

#[tokio::test]
async fn reorder_answers_each_batch_in_reverse() {
    within(async {
        let (_upstream, mut client) = connected(Script::Reorder { batch: 3 }).await;
        for id in 1..=3 {
            client
                .send_query(&query(id, "r.test.", RecordType::A, None))
                .await;
        }
        for id in [3, 2, 1] {
            assert_eq!(client.recv().await.metadata.id, id);
        }
    })
    .await
}

#[tokio::test]
async fn close_after_answers_then_eof() {
    within(async {
        let (upstream, mut client) = connected(Script::CloseAfter { answers: 2 }).await;
        for id in 1..=3 {
            client
                .send_query(&query(id, "c.test.", RecordType::A, None))
                .await;
        }
        assert_eq!(client.recv().await.metadata.id, 1);
        assert_eq!(client.recv().await.metadata.id, 2);
        let end = client.tls.read(&mut [0; 1]).await;
        assert_eq!(end.expect("close_notify, not an error"), 0);
        assert_eq!(upstream.received().len(), 3);
        drop(client);
        eventually(|| upstream.open_connections() == 0).await;
    })
    .await
}

#[tokio::test]
async fn reset_mid_answer_cuts_the_answer_short() {
    within(async {
        let (_upstream, mut client) = connected(Script::ResetMidAnswer { answers: 1 }).await;
        for id in 1..=2 {
            client
                .send_query(&query(id, "r.test.", RecordType::A, None))
                .await;
        }
        assert_eq!(client.recv().await.metadata.id, 1);
        let len = client
            .tls
            .read_u16()
            .await
            .expect("the length prefix arrives");
        let mut body = Vec::new();
        let cut = client
            .tls
            .read_to_end(&mut body)
            .await
            .expect_err("no clean end");
        assert!(
            !body.is_empty() && body.len() < usize::from(len),
            "{} octets",
            body.len()
        );
        assert_eq!(cut.kind(), io::ErrorKind::ConnectionReset, "{cut}");
    })
    .await
}

#[tokio::test]
async fn wrong_id_and_garbage_answers() {
    within(async {
        let (upstream, mut client) = connected(Script::WrongId).await;
        let response = client
            .ask(&query(0x1111, "w.test.", RecordType::A, None))
            .await;
        assert_eq!(response.metadata.id, 0x1111 ^ 0x5a5a);
        assert_eq!(
            addresses(&response),
            [RData::A(fixtures::expected_a("w.test").into())]
        );

        upstream.set_script(Script::Garbage);
        client
            .send_query(&query(7, "g.test.", RecordType::A, None))
            .await;
        let garbage = client.recv_bytes().await.expect("a frame");
        assert!(Message::from_vec(&garbage).is_err());

        upstream.set_script(Script::Stall);
        client
            .send_query(&query(8, "s.test.", RecordType::A, None))
            .await;
        let stalled = tokio::time::timeout(Duration::from_millis(200), client.recv_bytes()).await;
        assert!(stalled.is_err(), "stalled upstream answered");
        assert_eq!(upstream.received().len(), 3);
    })
    .await
}

#[tokio::test]
async fn out_of_step_writes_stray_octets_before_honest_answers() {
    within(async {
        let (_upstream, mut client) = connected(Script::OutOfStep { answers: 1 }).await;
        let first = client
            .ask(&query(1, "in-step.test.", RecordType::A, None))
            .await;
        assert_eq!(first.metadata.id, 1);
        client
            .send_query(&query(2, "out-of-step.test.", RecordType::A, None))
            .await;
        // Read as a frame, the stray octets announce 4,096 octets; what
        // really follows is the honest answer, length-prefixed.
        assert_eq!(client.tls.read_u16().await.unwrap(), 0x1000);
        let honest = client.recv().await;
        assert_eq!(honest.metadata.id, 2);
        assert_eq!(
            addresses(&honest),
            [RData::A(fixtures::expected_a("out-of-step.test").into())]
        );
    })
    .await
}

#[tokio::test]
async fn handshake_fails_for_untrusted_ca_and_refused_tls() {
    within(async {
        let (_pki, upstream, _config) = start(Script::Answer).await;
        let stranger = trusting(&TestPki::new(), rustls::ALL_VERSIONS);
        assert!(Client::connect(&stranger, upstream.addr()).await.is_err());
        assert_eq!(upstream.connections(), 0);

        let (_pki, refusing, config) = start(Script::RefuseTls).await;
        assert!(Client::connect(&config, refusing.addr()).await.is_err());
        assert_eq!(refusing.connections(), 0);
    })
    .await
}

#[tokio::test]
async fn counts_connections_and_stops_on_drop() {
    within(async {
        let (_pki, upstream, config) = start(Script::Answer).await;
        let mut first = Client::connect(&config, upstream.addr())
            .await
            .expect("connect");
        let mut second = Client::connect(&config, upstream.addr())
            .await
            .expect("connect");
        first.ask(&query(1, "one.test.", RecordType::A, None)).await;
        second
            .ask(&query(2, "two.test.", RecordType::A, None))
            .await;
        assert_eq!(upstream.connections(), 2);
        assert_eq!(upstream.open_connections(), 2);
        let arrivals: Vec<_> = upstream.received().iter().map(|q| q.connection).collect();
        assert_eq!(arrivals.len(), 2);
        assert_ne!(arrivals[0], arrivals[1]);
        drop(first);
        eventually(|| upstream.open_connections() == 1).await;
        assert_eq!(upstream.peak_open_connections(), 2);

        let addr = upstream.addr();
        drop(upstream);
        assert!(
            second.recv_bytes().await.is_err(),
            "connection closed with the server"
        );
        while TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await
}

#[tokio::test]
async fn tls12_and_tls13_negotiate_dot_and_resume() {
    within(async {
        let (pki, upstream, _config) = start(Script::Answer).await;
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            let mut config = (*trusting(&pki, &[version])).clone();
            config.alpn_protocols = vec![b"dot".to_vec()];
            let config = Arc::new(config);
            for id in 1..=2 {
                let mut client = Client::connect(&config, upstream.addr())
                    .await
                    .expect("connect");
                let session = client.tls.get_ref().1;
                assert_eq!(session.protocol_version(), Some(version.version));
                assert_eq!(session.alpn_protocol(), Some(&b"dot"[..]));
                // The round trip makes a TLS 1.3 client read its session ticket.
                client.ask(&query(id, "t.test.", RecordType::A, None)).await;
            }
        }
        assert_eq!(upstream.connections(), 4);
        assert_eq!(upstream.handshakes_resumed(), 2);
    })
    .await
}

#[tokio::test]
async fn nxdomain_nodata_and_big_txt() {
    within(async {
        let (_upstream, mut client) = connected(Script::Answer).await;
        let nx_name = format!("a.b.{NX_SUFFIX}");
        let nx = client.ask(&query(1, &nx_name, RecordType::A, None)).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert!(nx.answers.is_empty());
        let Some(RData::SOA(soa)) = nx.authorities.first().map(|r| &r.data) else {
            panic!("NXDOMAIN without SOA: {nx:?}");
        };
        assert_eq!(soa.minimum, fixtures::NEGATIVE_TTL);

        let nodata = client.ask(&query(2, "x.test.", RecordType::MX, None)).await;
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);

        client
            .send_query(&query(3, "BIG.test.", RecordType::TXT, None))
            .await;
        let big = client.recv_bytes().await.expect("answer");
        assert!(big.len() > 4096, "only {} octets", big.len());
        let big = Message::from_vec(&big).expect("parses");
        let strings: Vec<Vec<u8>> = big
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::TXT(txt) => txt.txt_data.concat(),
                other => panic!("not TXT: {other:?}"),
            })
            .collect();
        assert_eq!(strings, fixtures::big_txt_strings());
        assert_eq!(strings.len(), fixtures::BIG_TXT_RECORDS);
        assert!(
            strings
                .iter()
                .all(|s| s.len() == fixtures::BIG_TXT_STRING_LEN)
        );
        assert!(fixtures::same_name(BIG_NAME, "big.TEST"));
    })
    .await
}

#[tokio::test]
async fn malformed_queries_get_formerr_or_nothing() {
    within(async {
        let (upstream, mut client) = connected(Script::Answer).await;
        let mut two = query(0x0a0a, "one.test.", RecordType::A, None);
        two.queries.push(Query::query(
            Name::from_ascii("two.test.").expect("name"),
            RecordType::A,
        ));
        assert_eq!(
            client.ask(&two).await.metadata.response_code,
            ResponseCode::FormErr
        );

        // A header claiming one question that is not there, then a frame too short for a header.
        client
            .send(&[0xbe, 0xef, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0])
            .await;
        client.send(&[1, 2, 3]).await;
        let formerr = client.recv().await;
        assert_eq!(formerr.metadata.id, 0xbeef);
        assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);
        let unanswered = tokio::time::timeout(Duration::from_millis(200), client.recv_bytes());
        assert!(unanswered.await.is_err());
        let received = upstream.received();
        assert_eq!(received.len(), 3);
        assert!(received[1].message.is_none() && received[2].message.is_none());
        assert_eq!(received[2].bytes, [1, 2, 3]);
    })
    .await
}
