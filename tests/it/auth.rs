//! Strict authentication of upstreams (RFC 7858 §4.2, RFC 8310): the chain
//! must lead to the configured roots, the certificate must be valid for
//! `tls_name`, and when pins are set one must match. An upstream that
//! fails is never sent a query.

use std::time::Duration;

use hickory_proto::{op::ResponseCode, rr::RecordType};

use crate::support::{
    certs::TestPki,
    client::{self, a_records},
    dot_upstream::{DotUpstream, Script},
    fixtures::expected_a,
    server::{Dotstub, Options, TLS_NAME, config_text, upstream_table},
};

/// dotstub trusting `trusted`'s CA, expecting `TLS_NAME`, with `extra`
/// lines in the upstream table, in front of `upstream`.
fn dotstub_for(trusted: &TestPki, upstream: &DotUpstream, extra: &str) -> Dotstub {
    let table = upstream_table("rig", upstream.addr(), trusted, extra);
    Dotstub::start(&config_text(&Options::default(), &table))
}

async fn assert_refused(dotstub: &Dotstub, upstream: &DotUpstream) {
    let reply = client::udp(dotstub.addr, &client::query("auth.test.", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(
        upstream.received().is_empty(),
        "no query reaches an unauthenticated upstream"
    );
    assert!(dotstub.metrics.upstream(0).unwrap().tls_failures.get() >= 1);
}

async fn assert_answered(dotstub: &Dotstub, name: &str) {
    let reply = client::udp(dotstub.addr, &client::query(name, RecordType::A)).await;
    assert_eq!(a_records(&reply), [expected_a(name)]);
}

#[tokio::test]
async fn certificate_for_another_name_is_refused() {
    let pki = TestPki::new();
    let upstream = DotUpstream::start(pki.leaf("other.test"), Script::Answer).await;
    assert_refused(&dotstub_for(&pki, &upstream, ""), &upstream).await;
}

#[tokio::test]
async fn certificate_from_an_untrusted_ca_is_refused() {
    let (trusted, stranger) = (TestPki::new(), TestPki::new());
    let upstream = DotUpstream::start(stranger.leaf(TLS_NAME), Script::Answer).await;
    assert_refused(&dotstub_for(&trusted, &upstream, ""), &upstream).await;
}

#[tokio::test]
async fn valid_certificate_with_another_key_than_pinned_is_refused() {
    let pki = TestPki::new();
    let upstream = DotUpstream::start(pki.leaf(TLS_NAME), Script::Answer).await;
    let other_key = pki.leaf(TLS_NAME).leaf_spki_pin;
    let dotstub = dotstub_for(&pki, &upstream, &format!("spki_pins = [\"{other_key}\"]"));
    assert_refused(&dotstub, &upstream).await;
}

#[tokio::test]
async fn leaf_or_ca_pin_is_accepted() {
    let pki = TestPki::new();
    let identity = pki.leaf(TLS_NAME);
    let (leaf, ca) = (identity.leaf_spki_pin.clone(), identity.ca_spki_pin.clone());
    let upstream = DotUpstream::start(identity, Script::Answer).await;
    let unrelated = pki.leaf(TLS_NAME).leaf_spki_pin;
    for pins in [format!("\"{leaf}\""), format!("\"{unrelated}\", \"{ca}\"")] {
        let dotstub = dotstub_for(&pki, &upstream, &format!("spki_pins = [{pins}]"));
        assert_answered(&dotstub, "auth.test.").await;
    }
}

#[tokio::test]
async fn refused_upstream_is_skipped_for_a_good_one() {
    let pki = TestPki::new();
    let impostor = DotUpstream::start(pki.leaf("impostor.test"), Script::Answer).await;
    let good = DotUpstream::start(pki.leaf(TLS_NAME), Script::Answer).await;
    let tables = upstream_table("impostor", impostor.addr(), &pki, "")
        + &upstream_table("good", good.addr(), &pki, "");
    let options = Options {
        forward: "policy = \"ordered\"",
        ..Options::default()
    };
    let dotstub = Dotstub::start(&config_text(&options, &tables));
    for i in 0..3 {
        assert_answered(&dotstub, &format!("a{i}.auth.test.")).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(impostor.received().is_empty());
    assert_eq!(good.received().len(), 3);
}

#[tokio::test]
async fn pinned_certificate_appended_by_an_impostor_is_not_enough() {
    // Certificates are public: an impostor with any valid certificate for
    // the name can send the real server's along. Only keys on the verified
    // path count.
    let pki = TestPki::new();
    let real = pki.leaf(TLS_NAME);
    let mut impostor = pki.leaf(TLS_NAME);
    impostor.chain.insert(1, real.chain[0].clone());
    let upstream = DotUpstream::start(impostor, Script::Answer).await;
    let pin = format!("spki_pins = [\"{}\"]", real.leaf_spki_pin);
    assert_refused(&dotstub_for(&pki, &upstream, &pin), &upstream).await;
}
