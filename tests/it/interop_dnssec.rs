//! DNSSEC validation against real servers (issue 4): nsd serving a small
//! hierarchy under `test.` that `.ci/interop-dnssec.sh` signs with
//! ldns-signzone at CI time, behind a non-validating unbound
//! (`module-config: "iterator"`) offering DNS-over-TLS on 127.0.0.1:8854.
//! dotstub validates with the trust anchor of `test.`; the script's header
//! lists the zones and what each holds. Ignored by default; `.ci/run`
//! runs them with `--ignored interop`.

use std::{env, net::Ipv4Addr};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType},
};

use crate::support::{
    client::{self, Tcp, a_records, extended_error},
    server::{Dotstub, Options, config_text},
};

/// INFO-CODE 6, DNSSEC Bogus.
const DNSSEC_BOGUS: u16 = 6;
/// INFO-CODE 9, DNSKEY Missing.
const DNSKEY_MISSING: u16 = 9;

/// Where `.ci/interop-dnssec.sh` put unbound and the trust anchors.
struct Hierarchy {
    addr: String,
    name: String,
    ca: String,
    /// The DS of `test.`'s key-signing key.
    anchor_ds: String,
    /// That key-signing key itself.
    anchor_dnskey: String,
}

impl Hierarchy {
    fn from_env() -> Hierarchy {
        let var = |name: &str| {
            env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run the interop tests through .ci/run")
            })
        };
        Hierarchy {
            addr: var("DOTSTUB_INTEROP_DNSSEC_ADDR"),
            name: var("DOTSTUB_INTEROP_DNSSEC_NAME"),
            ca: var("DOTSTUB_INTEROP_DNSSEC_CA"),
            anchor_ds: var("DOTSTUB_INTEROP_DNSSEC_ANCHOR"),
            anchor_dnskey: var("DOTSTUB_INTEROP_DNSSEC_ANCHOR_DNSKEY"),
        }
    }

    /// dotstub validating from the DS anchor, unbound its only upstream.
    fn dotstub(&self) -> Dotstub {
        self.dotstub_with_anchor(&self.anchor_ds)
    }

    fn dotstub_with_anchor(&self, anchor: &str) -> Dotstub {
        let (addr, name, ca) = (&self.addr, &self.name, &self.ca);
        let table = format!(
            "[[upstream]]\nlabel = \"unbound\"\naddress = \"{addr}\"\n\
             tls_name = \"{name}\"\nca_file = {ca:?}\n"
        );
        let dnssec = format!("validate = true\ntrust_anchor_file = {anchor:?}");
        let options = Options {
            dnssec: Box::leak(dnssec.into_boxed_str()),
            ..Options::default()
        };
        Dotstub::start(&config_text(&options, &table))
    }
}

#[tokio::test]
#[ignore = "needs nsd and unbound from .ci/run"]
async fn interop_dnssec_secure_answers_are_authenticated() {
    let dotstub = Hierarchy::from_env().dotstub();
    for (name, address) in [
        ("www.test.", Ipv4Addr::new(192, 0, 2, 1)),
        ("www.secure.test.", Ipv4Addr::new(192, 0, 2, 2)),
    ] {
        let reply = ask(&dotstub, name, RecordType::A).await;
        assert_verdict(&reply, ResponseCode::NoError, true, name);
        assert_eq!(a_records(&reply), [address], "{name}");
        assert!(has_rrsig(&reply), "{name}: RRSIG for a DO=1 client");
    }
    let reply = ask(&dotstub, "txt.secure.test.", RecordType::TXT).await;
    assert_verdict(&reply, ResponseCode::NoError, true, "txt.secure.test.");
    let RData::TXT(text) = &reply.answers[0].data else {
        panic!("TXT expected: {reply:?}")
    };
    assert_eq!(text.to_string(), "dotstub dnssec interop");
}

#[tokio::test]
#[ignore = "needs nsd and unbound from .ci/run"]
async fn interop_dnssec_nxdomain_and_nodata_in_signed_zones_are_authenticated() {
    let dotstub = Hierarchy::from_env().dotstub();
    for name in ["nx.test.", "nx.secure.test."] {
        let reply = ask(&dotstub, name, RecordType::A).await;
        assert_verdict(&reply, ResponseCode::NXDomain, true, name);
        assert!(has_nsec(&reply), "{name}: the NSEC proof for a DO=1 client");
    }
    let reply = ask(&dotstub, "www.secure.test.", RecordType::TXT).await;
    assert_verdict(&reply, ResponseCode::NoError, true, "www.secure.test. TXT");
    assert!(reply.answers.is_empty(), "NODATA: {reply:?}");
    assert!(has_nsec(&reply), "NODATA: the NSEC proof for a DO=1 client");
}

#[tokio::test]
#[ignore = "needs nsd and unbound from .ci/run"]
async fn interop_dnssec_unsigned_delegation_is_insecure() {
    let dotstub = Hierarchy::from_env().dotstub();
    let reply = ask(&dotstub, "www.insecure.test.", RecordType::A).await;
    assert_verdict(&reply, ResponseCode::NoError, false, "www.insecure.test.");
    assert_eq!(a_records(&reply), [Ipv4Addr::new(192, 0, 2, 3)]);
    assert_eq!(extended_error(&reply), None);
}

#[tokio::test]
#[ignore = "needs nsd and unbound from .ci/run"]
async fn interop_dnssec_corrupted_signature_is_bogus() {
    let dotstub = Hierarchy::from_env().dotstub();
    let reply = ask(&dotstub, "www.bogus.test.", RecordType::A).await;
    assert_bogus(&reply, DNSSEC_BOGUS, "www.bogus.test");
    // The rest of the zone is signed correctly.
    let reply = ask(&dotstub, "nx.bogus.test.", RecordType::A).await;
    assert_verdict(&reply, ResponseCode::NXDomain, true, "nx.bogus.test.");
}

#[tokio::test]
#[ignore = "needs nsd and unbound from .ci/run"]
async fn interop_dnssec_ds_matching_no_key_is_bogus() {
    let dotstub = Hierarchy::from_env().dotstub();
    let reply = ask(&dotstub, "www.ds-mismatch.test.", RecordType::A).await;
    assert_bogus(&reply, DNSKEY_MISSING, "ds-mismatch.test");
}

#[tokio::test]
#[ignore = "needs nsd and unbound from .ci/run"]
async fn interop_dnssec_dnskey_anchor_works_like_the_ds_anchor() {
    // The key file as ldns-keygen wrote it, `;{id = ...}` comment included.
    let hierarchy = Hierarchy::from_env();
    let dotstub = hierarchy.dotstub_with_anchor(&hierarchy.anchor_dnskey);
    let reply = ask(&dotstub, "www.secure.test.", RecordType::A).await;
    assert_verdict(&reply, ResponseCode::NoError, true, "www.secure.test.");
    let reply = ask(&dotstub, "www.bogus.test.", RecordType::A).await;
    assert_bogus(&reply, DNSSEC_BOGUS, "www.bogus.test");
}

//---- Helpers ----

/// Asks dotstub over TCP with DO=1.
async fn ask(dotstub: &Dotstub, name: &str, qtype: RecordType) -> Message {
    let mut query = client::query(name, qtype);
    query.edns.as_mut().unwrap().set_dnssec_ok(true);
    let mut tcp = Tcp::connect(dotstub.addr).await;
    tcp.send(&query).await;
    tcp.recv().await
}

/// `rcode` and AD as given; CD=0 as in the query (RFC 4035 §3.2.2), although
/// dotstub asked unbound with CD=1.
fn assert_verdict(reply: &Message, rcode: ResponseCode, ad: bool, what: &str) {
    let metadata = &reply.metadata;
    assert_eq!(
        (metadata.response_code, metadata.authentic_data),
        (rcode, ad),
        "{what}: rcode and AD (EDE {:?})",
        extended_error(reply)
    );
    assert!(
        !metadata.checking_disabled,
        "{what}: CD copied from the query"
    );
}

/// SERVFAIL, no data, EDE `code` with EXTRA-TEXT naming `culprit`.
fn assert_bogus(reply: &Message, code: u16, culprit: &str) {
    assert_verdict(reply, ResponseCode::ServFail, false, culprit);
    assert!(reply.answers.is_empty(), "{culprit}: {reply:?}");
    let (found, text) = extended_error(reply).unwrap_or_else(|| panic!("{culprit}: no EDE"));
    assert_eq!(found, code, "{culprit}: EDE {found} {text:?}");
    assert!(
        text.to_ascii_lowercase().contains(culprit),
        "{culprit}: EDE text {text:?}"
    );
}

fn has_rrsig(reply: &Message) -> bool {
    let mut records = reply.answers.iter();
    records.any(|record| record.record_type() == RecordType::RRSIG)
}

fn has_nsec(reply: &Message) -> bool {
    let mut records = reply.authorities.iter();
    records.any(|record| record.record_type() == RecordType::NSEC)
}
