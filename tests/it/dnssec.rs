//! DNSSEC validation end to end (issue 4): dotstub, told to validate with
//! the private root's trust anchor, in front of an upstream serving the
//! signed hierarchy (`support::signed`) as a resolver would with DO=1 and
//! CD=1. Each case of `signed::CASES` must end in its rcode, AD bit and
//! Extended DNS Error; clients without DO see no DNSSEC records; CD=1 gets
//! the data unchecked; upstream queries ask for DO=1 and CD=1.

use std::io::Write;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Record, RecordType};
use tempfile::NamedTempFile;

use crate::support::{
    client::{self, Tcp},
    server::{Harness, Options},
    signed::{CASES, Case, Hierarchy, Verdict},
};

/// EDNS option code of Extended DNS Errors (RFC 8914).
const EDE_OPTION: u16 = 15;

/// dotstub validating with an anchor file, in front of the hierarchy.
struct Validating {
    rig: Harness,
    /// The trust anchor file, kept until the test ends.
    _anchor: NamedTempFile,
}

impl Validating {
    /// Anchored on the root's DS.
    async fn start() -> Validating {
        Self::with_anchor(&Hierarchy::shared().trust_anchor_text()).await
    }

    async fn with_anchor(text: &str) -> Validating {
        let mut anchor = NamedTempFile::new().unwrap();
        anchor.write_all(text.as_bytes()).unwrap();
        let path = anchor.path().display().to_string();
        let dnssec = format!("validate = true\ntrust_anchor_file = {path:?}");
        let options = Options {
            dnssec: Box::leak(dnssec.into_boxed_str()),
            ..Options::default()
        };
        let rig = Harness::with(Hierarchy::shared().script(), options).await;
        Validating {
            rig,
            _anchor: anchor,
        }
    }

    /// Asks over TCP, so RSA-signed answers are never truncated.
    async fn ask(&self, query: &Message) -> Message {
        let mut tcp = Tcp::connect(self.rig.dotstub.addr).await;
        tcp.send(query).await;
        tcp.recv().await
    }
}

#[tokio::test]
async fn every_case_ends_in_its_rcode_ad_bit_and_extended_error() {
    let dotstub = Validating::start().await;
    let mut failures = Vec::new();
    for case in CASES {
        let reply = dotstub.ask(&with_do(case)).await;
        failures.extend(mismatch(case, &reply).map(|why| format!("{case}: {why}")));
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn clients_without_do_get_no_dnssec_records_and_no_ad() {
    let dotstub = Validating::start().await;
    for case in CASES.iter().filter(|case| case.verdict == Verdict::Secure) {
        let plain = client::query(case.qname, case.qtype);
        let without_edns = client::query_without_edns(case.qname, case.qtype);
        for query in [plain, without_edns] {
            let reply = dotstub.ask(&query).await;
            assert_eq!(reply.metadata.response_code, case.rcode, "{case}");
            assert!(
                !reply.metadata.authentic_data,
                "{case}: AD without DO or AD in the query"
            );
            let dnssec = reply.all_sections().filter(|r| is_dnssec(r)).count();
            assert_eq!(dnssec, 0, "{case}: DNSSEC records without DO");
        }
    }
}

#[tokio::test]
async fn ad_in_the_query_asks_for_ad_without_do() {
    // RFC 6840 §5.7: a client that sets AD understands it.
    let dotstub = Validating::start().await;
    let mut query = client::query("www.ecdsap256.tld.", RecordType::A);
    query.metadata.authentic_data = true;
    let reply = dotstub.ask(&query).await;
    assert!(reply.metadata.authentic_data);
    assert_eq!(reply.all_sections().filter(|r| is_dnssec(r)).count(), 0);
    let mut query = client::query("www.insecure.tld.", RecordType::A);
    query.metadata.authentic_data = true;
    assert!(!dotstub.ask(&query).await.metadata.authentic_data);
}

#[tokio::test]
async fn checking_disabled_gets_bogus_data_unvalidated() {
    let dotstub = Validating::start().await;
    for case in CASES.iter().filter(|case| case.verdict == Verdict::Bogus) {
        let mut query = with_do(case);
        query.metadata.checking_disabled = true;
        let reply = dotstub.ask(&query).await;
        assert_eq!(reply.metadata.response_code, case.rcode, "{case}");
        assert!(!reply.metadata.authentic_data, "{case}");
        assert_eq!(extended_error(&reply), None, "{case}");
    }
    let corrupt = CASES
        .iter()
        .find(|case| case.qname == "corrupt.bogus.tld.")
        .unwrap();
    let mut query = with_do(corrupt);
    query.metadata.checking_disabled = true;
    assert_eq!(client::a_records(&dotstub.ask(&query).await).len(), 1);
}

#[tokio::test]
async fn bogus_answers_fail_for_clients_without_do_too() {
    let dotstub = Validating::start().await;
    let reply = dotstub
        .ask(&client::query("corrupt.bogus.tld.", RecordType::A))
        .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(reply.answers.is_empty());
}

#[tokio::test]
async fn cached_secure_answers_stay_authenticated() {
    let dotstub = Validating::start().await;
    for qname in ["www.rsasha256.tld.", "nx.nsec3.tld.", "x.w.nsec.tld."] {
        let case = CASES.iter().find(|case| case.qname == qname).unwrap();
        let first = dotstub.ask(&with_do(case)).await;
        let asked = dotstub.rig.upstream.received().len();
        let again = dotstub.ask(&with_do(case)).await;
        assert_eq!(
            dotstub.rig.upstream.received().len(),
            asked,
            "{case}: from the cache"
        );
        assert!(
            first.metadata.authentic_data && again.metadata.authentic_data,
            "{case}"
        );
        assert_eq!(again.metadata.response_code, case.rcode, "{case}");
        assert_eq!(again.answers.len(), first.answers.len(), "{case}");
    }
}

#[tokio::test]
async fn upstream_queries_ask_for_dnssec_records_unchecked() {
    let dotstub = Validating::start().await;
    for qname in ["www.ed25519.tld.", "nx.nsec.tld.", "www.insecure.tld."] {
        dotstub.ask(&client::query(qname, RecordType::A)).await;
    }
    let received = dotstub.rig.upstream.received();
    assert!(received.len() > 3, "the chain of trust was fetched too");
    for query in received {
        let query = query.message.unwrap();
        let edns = query.edns.as_ref().expect("upstream queries carry OPT");
        assert!(edns.flags().dnssec_ok, "DO=1: {:?}", query.queries);
        assert!(
            query.metadata.checking_disabled,
            "CD=1: {:?}",
            query.queries
        );
    }
}

#[tokio::test]
async fn dnskey_trust_anchor_works_like_a_ds_anchor() {
    let anchor = Hierarchy::shared().trust_anchor_dnskey_text();
    let dotstub = Validating::with_anchor(&anchor).await;
    let case = CASES
        .iter()
        .find(|case| case.qname == "www.ecdsap256.tld.")
        .unwrap();
    let reply = dotstub.ask(&with_do(case)).await;
    assert_eq!(mismatch(case, &reply), None);
}

//---- Helpers ----

/// The case's query with DO=1.
fn with_do(case: &Case) -> Message {
    let mut query = client::query(case.qname, case.qtype);
    query.edns.as_mut().unwrap().set_dnssec_ok(true);
    query
}

/// What in `reply` differs from what `case` expects, if anything.
fn mismatch(case: &Case, reply: &Message) -> Option<String> {
    let rcode = reply.metadata.response_code;
    let found = extended_error(reply);
    let expected = case.validated_rcode();
    if rcode != expected {
        return Some(format!(
            "rcode {rcode} (EDE {found:?}), expected {expected}"
        ));
    }
    let secure = case.verdict == Verdict::Secure;
    if reply.metadata.authentic_data != secure {
        return Some(format!(
            "AD={}, expected {}",
            reply.metadata.authentic_data, secure
        ));
    }
    let expected = case.ede.map(|ede| ede.code);
    if found.as_ref().map(|(code, _)| *code) != expected {
        return Some(format!("EDE {found:?}, expected {expected:?}"));
    }
    let (Some(ede), Some((_, text))) = (case.ede, found) else {
        return None;
    };
    let culprit = ede.culprit.trim_end_matches('.');
    let named = text.to_ascii_lowercase().contains(culprit);
    (!named).then(|| format!("EDE text {text:?} does not name {culprit}"))
}

/// The Extended DNS Error's INFO-CODE and EXTRA-TEXT, if there is one.
fn extended_error(reply: &Message) -> Option<(u16, String)> {
    let options = reply.edns.as_ref()?.options().as_ref();
    options.iter().find_map(|(_, option)| match option {
        EdnsOption::Unknown(EDE_OPTION, data) if data.len() >= 2 => {
            let code = u16::from_be_bytes([data[0], data[1]]);
            Some((code, String::from_utf8_lossy(&data[2..]).into_owned()))
        }
        _ => None,
    })
}

/// Records only DO=1 brings (RFC 4035 §3.2.1); DS and DNSKEY are data.
fn is_dnssec(record: &Record) -> bool {
    matches!(
        record.record_type(),
        RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3
    )
}
