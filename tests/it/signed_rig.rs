//! The signed hierarchy checks itself, without a validator: every signature
//! in the good answers verifies against its zone's DNSKEY, DS records match
//! (or fail to match) as planned, NSEC and NSEC3 chains are sorted and
//! closed with the right hashes, denials carry their proofs, and the faults
//! show where the cases say.

use std::time::{SystemTime, UNIX_EPOCH};

use data_encoding::{BASE32_DNSSEC, BASE64};
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS, NSEC, NSEC3, RRSIG};
use hickory_proto::dnssec::{Algorithm, DigestType, Nsec3HashAlgorithm, PublicKey, TBS, Verifier};
use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::support::{
    client,
    dot_upstream::{Responder, Script},
    server::Harness,
    signed::{CASES, Case, ED448, Hierarchy, SHORT_LIFETIME, TTL, Verdict, Zone, nsec3_owner},
};

//---- Signatures ----

#[test]
fn every_signature_in_good_answers_verifies_with_its_zone_key() {
    let mut checked = 0;
    for case in CASES.iter().filter(|case| case.verdict != Verdict::Bogus) {
        let response = ask(case.qname, case.qtype);
        for section in [&response.answers, &response.authorities] {
            for (owner, rrsig) in rrsigs(section) {
                verify(owner, rrsig, section).unwrap_or_else(|err| panic!("{case}: {err}"));
                checked += 1;
            }
        }
    }
    for zone in Hierarchy::shared().zones().filter(|zone| zone.is_signed()) {
        let response = ask(&zone.apex().to_ascii(), RecordType::DNSKEY);
        let dnskeys = rrsigs(&response.answers);
        assert_eq!(dnskeys.len(), 1, "{}: one KSK signs DNSKEY", zone.apex());
        verify(dnskeys[0].0, dnskeys[0].1, &response.answers).unwrap();
    }
    assert!(checked > 50, "only {checked} signatures seen");
}

#[test]
fn unsigned_zones_send_no_signatures() {
    for qname in [
        "www.insecure.tld.",
        "www.ds-unsigned.tld.",
        "www.unsigned.nsec3-optout.tld.",
    ] {
        let response = ask(qname, RecordType::A);
        assert_eq!(client::a_records(&response).len(), 1, "{qname}");
        assert!(rrsigs(&response.answers).is_empty(), "{qname}");
    }
}

#[test]
fn faulty_signatures_fail_as_their_cases_say() {
    let now = now();
    let sig_of = |qname: &str| {
        let response = ask(qname, RecordType::A);
        let (owner, rrsig) = rrsigs(&response.answers)[0];
        (
            verify(owner, rrsig, &response.answers),
            rrsig.input().clone(),
        )
    };
    assert!(sig_of("corrupt.bogus.tld.").0.is_err());
    let (_, expired) = sig_of("expired.bogus.tld.");
    assert!(expired.sig_expiration.get() < now);
    let (_, future) = sig_of("future.bogus.tld.");
    assert!(future.sig_inception.get() > now);
    let (unpublished, _) = sig_of("unpublished.bogus.tld.");
    assert!(unpublished.unwrap_err().contains("no DNSKEY"));
    let stripped = ask("stripped.bogus.tld.", RecordType::A);
    assert_eq!(client::a_records(&stripped).len(), 1);
    assert!(rrsigs(&stripped.answers).is_empty());
}

#[test]
fn ed448_zone_signs_with_rfc_8080_keys_and_signatures() {
    let keys = dnskeys("ed448.tld.");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].algorithm(), ED448);
    assert_eq!(keys[0].public_key().public_bytes().len(), 57);
    let response = ask("www.ed448.tld.", RecordType::A);
    let (owner, rrsig) = rrsigs(&response.answers)[0];
    assert_eq!(rrsig.input().algorithm, ED448);
    assert_eq!(rrsig.sig().len(), 114);
    verify(owner, rrsig, &response.answers).unwrap();
    let mut flipped = response.answers.clone();
    for record in &mut flipped {
        if let RData::A(address) = &mut record.data {
            address.0 = std::net::Ipv4Addr::new(192, 0, 2, 99);
        }
    }
    assert!(
        verify(owner, rrsig, &flipped).is_err(),
        "an Ed448 signature over other data must fail"
    );
}

#[test]
fn short_lived_zone_signatures_expire_before_its_ttls() {
    let now = now();
    let mut checked = 0;
    for (qname, qtype) in [
        ("short-lived.tld.", RecordType::DNSKEY),
        ("www.short-lived.tld.", RecordType::A),
        ("nx.short-lived.tld.", RecordType::A),
    ] {
        let response = ask(qname, qtype);
        for section in [&response.answers, &response.authorities] {
            for (owner, rrsig) in rrsigs(section) {
                verify(owner, rrsig, section).unwrap();
                let left = rrsig.input().sig_expiration.get() - now;
                assert!(left <= SHORT_LIFETIME, "{owner}: {left} s left");
                assert_eq!(rrsig.input().original_ttl, TTL);
                checked += 1;
            }
            assert!(section.iter().all(|record| record.ttl == TTL), "{qname}");
        }
    }
    assert!(checked >= 4, "only {checked} signatures seen");
}

//---- Chain of trust ----

#[test]
fn root_trust_anchor_matches_the_root_ksk() {
    let hierarchy = Hierarchy::shared();
    let root_keys = dnskeys(".");
    let line = hierarchy.trust_anchor_text();
    let (head, rdata) = line.trim().split_once(" DS ").unwrap();
    assert_eq!(head, ". 3600 IN");
    let RData::DNSSEC(DNSSECRData::DS(ds)) = RData::try_from_str(RecordType::DS, rdata).unwrap()
    else {
        panic!("not a DS: {line}");
    };
    assert_eq!(ds.digest_type(), DigestType::SHA256);
    let ksk = matching_key(&ds, &Name::root(), &root_keys).expect("the anchor names the root KSK");
    assert!(ksk.secure_entry_point());
    let line = hierarchy.trust_anchor_dnskey_text();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[..6], [".", "3600", "IN", "DNSKEY", "257", "3"]);
    assert_eq!(fields[6], u8::from(ksk.algorithm()).to_string());
    assert_eq!(
        BASE64.decode(fields[7].as_bytes()).unwrap(),
        ksk.public_key().public_bytes()
    );
    assert_eq!(root_keys.len(), 2, "the root has a KSK and a ZSK");
}

#[test]
fn each_delegation_ds_matches_its_childs_ksk_or_fails_as_planned() {
    for zone in Hierarchy::shared()
        .zones()
        .filter(|zone| !zone.apex().is_root())
    {
        let apex = zone.apex().to_ascii();
        let response = ask(&apex, RecordType::DS);
        let ds: Vec<&DS> = response.answers.iter().filter_map(as_ds).collect();
        let keys = dnskeys(&apex);
        let matched = ds
            .iter()
            .filter(|ds| matching_key(ds, zone.apex(), &keys).is_some());
        let matched = matched.count();
        match apex.as_str() {
            "insecure.tld." | "insecure.nsec3.tld." | "unsigned.nsec3-optout.tld." => {
                assert!(ds.is_empty() && keys.is_empty(), "{apex}");
                assert!(has_denial(&response.authorities), "{apex}: no DS is proven");
            }
            "stripped-ds.tld." => assert!(ds.is_empty() && !has_denial(&response.authorities)),
            "unknown-alg.tld." => {
                assert!(!ds.is_empty());
                assert!(
                    ds.iter()
                        .all(|ds| ds.algorithm() == Algorithm::Unknown(200))
                );
            }
            "ds-mismatch.tld." | "ds-bad-digest.tld." | "ds-unsigned.tld." => {
                assert!(!ds.is_empty() && matched == 0, "{apex}");
            }
            "unknown-digest.tld." => assert_eq!((ds.len(), matched), (2, 1)),
            "unknown-digest-only.tld." => {
                assert_eq!((ds.len(), matched), (1, 0));
                let key = &keys[0];
                assert_eq!(ds[0].digest_type(), DigestType::from(200));
                assert_eq!(ds[0].algorithm(), key.algorithm(), "a known algorithm");
                assert_eq!(ds[0].key_tag(), key.calculate_key_tag().unwrap());
            }
            _ => assert_eq!((ds.len(), matched), (1, 1), "{apex}"),
        }
    }
}

//---- Denial ----

#[test]
fn nsec_chains_are_sorted_and_closed() {
    for zone in Hierarchy::shared().zones().filter(|zone| zone.is_signed()) {
        let chain = zone.chain();
        assert!(chain.len() > 2, "{}", zone.apex());
        match zone.nsec3_params() {
            None => {
                let owners: Vec<&Name> = chain.iter().map(|record| &record.name).collect();
                assert!(
                    owners.windows(2).all(|pair| pair[0] < pair[1]),
                    "{}",
                    zone.apex()
                );
                assert_eq!(owners[0], zone.apex());
                let nexts = chain
                    .iter()
                    .map(|record| as_nsec(record).unwrap().next_domain_name());
                let expected = owners[1..].iter().copied().chain([zone.apex()]);
                assert!(
                    nexts.eq(expected),
                    "{}: next names follow the owners",
                    zone.apex()
                );
            }
            Some(_) => {
                let hashes: Vec<Vec<u8>> = chain
                    .iter()
                    .map(|record| owner_hash(record, zone))
                    .collect();
                assert!(
                    hashes.windows(2).all(|pair| pair[0] < pair[1]),
                    "{}",
                    zone.apex()
                );
                for (index, record) in chain.iter().enumerate() {
                    let next = &hashes[(index + 1) % hashes.len()];
                    let nsec3 = as_nsec3(record).unwrap();
                    assert_eq!(nsec3.next_hashed_owner_name(), next.as_slice());
                }
            }
        }
    }
}

#[test]
fn nsec3_owners_are_the_hashes_of_the_zone_names() {
    let hierarchy = Hierarchy::shared();
    for apex in [
        "nsec3.tld.",
        "nsec3-salted.tld.",
        "nsec3-optout.tld.",
        "nsec3-iter500.tld.",
    ] {
        let zone = hierarchy.zone(apex);
        let params = zone.nsec3_params().unwrap();
        let chain = zone.chain();
        let owner = |name: &str| {
            let name = Name::from_ascii(format!("{name}{apex}")).unwrap();
            let hash = Nsec3HashAlgorithm::SHA1.hash(&params.salt, &name, params.iterations);
            nsec3_owner(hash.unwrap().as_ref(), zone.apex())
        };
        for name in ["", "www.", "ns.", "w.", "*.w.", "ent.", "sub.ent."] {
            let record = chain.iter().find(|record| record.name == owner(name));
            let nsec3 = as_nsec3(record.unwrap_or_else(|| panic!("{name}{apex}"))).unwrap();
            assert_eq!(nsec3.iterations(), params.iterations);
            assert_eq!(nsec3.salt(), params.salt.as_slice());
            assert_eq!(nsec3.opt_out(), params.opt_out, "{apex}");
        }
        let apex_types = chain
            .iter()
            .find(|record| record.name == owner(""))
            .unwrap();
        assert!(
            as_nsec3(apex_types)
                .unwrap()
                .type_set()
                .contains(RecordType::NSEC3PARAM)
        );
        let empty = as_nsec3(
            chain
                .iter()
                .find(|record| record.name == owner("ent."))
                .unwrap(),
        );
        assert_eq!(
            empty.unwrap().type_bit_maps().count(),
            0,
            "an ENT has no types"
        );
        let delegation = chain
            .iter()
            .find(|record| record.name == owner("unsigned."));
        assert!(
            delegation.is_none(),
            "opt-out leaves unsigned delegations out"
        );
    }
    let insecure = Name::from_ascii("insecure.nsec3.tld.").unwrap();
    let zone = hierarchy.zone("nsec3.tld.");
    let hash = zone.nsec3_params().unwrap().hash(&insecure);
    let chain = zone.chain();
    let record = chain
        .iter()
        .find(|record| record.name == nsec3_owner(&hash, zone.apex()));
    let types: Vec<RecordType> = as_nsec3(record.unwrap()).unwrap().type_bit_maps().collect();
    assert_eq!(types, [RecordType::NS], "an unsigned delegation: NS only");
}

#[test]
fn denials_carry_the_soa_and_their_proofs() {
    let negative = |case: &&Case| {
        case.verdict != Verdict::Bogus
            && ask(case.qname, case.qtype)
                .answers
                .iter()
                .all(|record| record.record_type() != case.qtype)
    };
    let mut checked = 0;
    for case in CASES.iter().filter(negative) {
        let response = ask(case.qname, case.qtype);
        assert_eq!(response.metadata.response_code, case.rcode, "{case}");
        let soa = response
            .authorities
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA);
        assert_eq!(soa.count(), 1, "{case}");
        if case.verdict == Verdict::Secure || case.qname.contains("nsec3") {
            check_proof(case, &response).unwrap_or_else(|err| panic!("{case}: {err}"));
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} proofs checked");
}

#[test]
fn wildcard_answers_keep_the_wildcards_signature() {
    for zone in ["nsec.tld.", "nsec3.tld.", "nsec3-salted.tld."] {
        let qname = format!("x.w.{zone}");
        let response = ask(&qname, RecordType::A);
        let (owner, rrsig) = rrsigs(&response.answers)[0];
        assert_eq!(owner.to_ascii(), qname);
        let wildcard_labels = Name::from_ascii(format!("w.{zone}")).unwrap().num_labels();
        assert_eq!(rrsig.input().num_labels, wildcard_labels, "{qname}");
        assert!(
            has_denial(&response.authorities),
            "{qname}: proof that x.w does not exist"
        );
    }
}

#[test]
fn faulty_denials_miss_their_proofs() {
    for qname in ["missing-proof.nsec.tld.", "missing-proof.nsec3.tld."] {
        let response = ask(qname, RecordType::A);
        assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
        assert!(!has_denial(&response.authorities), "{qname}");
        assert_eq!(response.authorities.len(), 2, "{qname}: SOA and its RRSIG");
    }
    for qname in ["wrong-proof.nsec.tld.", "wrong-proof.nsec3.tld."] {
        let response = ask(qname, RecordType::A);
        assert!(has_denial(&response.authorities), "{qname}");
        let name = Name::from_ascii(qname).unwrap();
        let covered = response
            .authorities
            .iter()
            .any(|record| covers(record, &name));
        assert!(!covered, "{qname}: the proof must not cover the name");
    }
}

//---- Responder ----

#[test]
fn responder_answers_like_a_resolver_asked_with_do_and_cd() {
    let query = dnssec_query("www.ecdsap256.tld.", RecordType::A);
    let response = Hierarchy::shared().answer(&query);
    let header = &response.metadata;
    assert_eq!(header.id, query.metadata.id);
    assert!(header.recursion_available && header.recursion_desired);
    assert!(!header.authoritative && !header.authentic_data);
    assert_eq!(response.queries, query.queries);
    assert!(response.edns.as_ref().unwrap().flags().dnssec_ok);
    assert_eq!(client::a_records(&response).len(), 1);
    let without_edns = client::query_without_edns("www.ecdsap256.tld.", RecordType::A);
    assert!(Hierarchy::shared().answer(&without_edns).edns.is_none());
}

#[test]
fn chains_cross_zones_with_each_zones_signatures() {
    let signers = |qname: &str| {
        let response = ask(qname, RecordType::A);
        let types: Vec<RecordType> = response.answers.iter().map(Record::record_type).collect();
        let signers: Vec<String> = rrsigs(&response.answers)
            .iter()
            .map(|(_, rrsig)| rrsig.input().signer_name.to_ascii())
            .collect();
        (types, signers)
    };
    let (types, signed_by) = signers("cname.ecdsap256.tld.");
    use RecordType::{A, CNAME, DNAME, RRSIG};
    assert_eq!(types, [CNAME, RRSIG, A, RRSIG]);
    assert_eq!(signed_by, ["ecdsap256.tld.", "ed25519.tld."]);
    let (types, signed_by) = signers("www.dname.ecdsap256.tld.");
    assert_eq!(
        types,
        [DNAME, RRSIG, CNAME, A, RRSIG],
        "the CNAME is unsigned"
    );
    assert_eq!(signed_by, ["ecdsap256.tld.", "ed25519.tld."]);
    let (types, signed_by) = signers("cname-insecure.ecdsap256.tld.");
    assert_eq!(types, [CNAME, RRSIG, A]);
    assert_eq!(signed_by, ["ecdsap256.tld."]);
    let (types, signed_by) = signers("two-hops.ecdsap256.tld.");
    assert_eq!(types, [CNAME, RRSIG, CNAME, RRSIG, A, RRSIG]);
    assert_eq!(
        signed_by,
        ["ecdsap256.tld.", "ed25519.tld.", "ecdsap256.tld."]
    );
    let (types, signed_by) = signers("www.dname-insecure.ecdsap256.tld.");
    assert_eq!(types, [DNAME, RRSIG, CNAME, A], "the target is unsigned");
    assert_eq!(signed_by, ["ecdsap256.tld."]);
}

#[test]
fn silenced_queries_get_no_answer_and_others_do() {
    let Script::Respond(Responder(respond)) =
        Hierarchy::shared().script_silent_on("ECDSAP256.tld.", RecordType::DS)
    else {
        panic!("a responder script");
    };
    assert!(respond(&dnssec_query("ecdsap256.tld.", RecordType::DS)).is_none());
    let other_type = respond(&dnssec_query("ecdsap256.tld.", RecordType::DNSKEY));
    assert!(!other_type.unwrap().answers.is_empty());
    let other_name = respond(&dnssec_query("ed25519.tld.", RecordType::DS));
    assert!(!other_name.unwrap().answers.is_empty());
}

#[tokio::test]
async fn dot_upstream_serves_the_hierarchy() {
    let rig = Harness::start(Hierarchy::shared().script()).await;
    let reply = client::udp(
        rig.dotstub.addr,
        &dnssec_query("www.ed25519.tld.", RecordType::A),
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(client::a_records(&reply).len(), 1);
}

//---- Helpers ----

/// A query with DO=1 and CD=1, as a validator sends upstream.
fn dnssec_query(qname: &str, qtype: RecordType) -> Message {
    let mut query = client::query(qname, qtype);
    query.metadata.checking_disabled = true;
    query.edns.as_mut().map(Edns::enable_dnssec);
    query
}

fn ask(qname: &str, qtype: RecordType) -> Message {
    Hierarchy::shared().answer(&dnssec_query(qname, qtype))
}

fn now() -> u32 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u32::try_from(now.as_secs()).unwrap()
}

fn rrsigs(section: &[Record]) -> Vec<(&Name, &RRSIG)> {
    section
        .iter()
        .filter_map(|r| Some((&r.name, as_rrsig(r)?)))
        .collect()
}

fn as_rrsig(record: &Record) -> Option<&RRSIG> {
    match &record.data {
        RData::DNSSEC(DNSSECRData::RRSIG(rrsig)) => Some(rrsig),
        _ => None,
    }
}

fn dnskeys(apex: &str) -> Vec<DNSKEY> {
    let response = ask(apex, RecordType::DNSKEY);
    let dnskey = |record: &Record| match &record.data {
        RData::DNSSEC(DNSSECRData::DNSKEY(key)) => Some(key.clone()),
        _ => None,
    };
    response.answers.iter().filter_map(dnskey).collect()
}

fn as_ds(record: &Record) -> Option<&DS> {
    match &record.data {
        RData::DNSSEC(DNSSECRData::DS(ds)) => Some(ds),
        _ => None,
    }
}

fn as_nsec(record: &Record) -> Option<&NSEC> {
    match &record.data {
        RData::DNSSEC(DNSSECRData::NSEC(nsec)) => Some(nsec),
        _ => None,
    }
}

fn as_nsec3(record: &Record) -> Option<&NSEC3> {
    match &record.data {
        RData::DNSSEC(DNSSECRData::NSEC3(nsec3)) => Some(nsec3),
        _ => None,
    }
}

fn has_denial(section: &[Record]) -> bool {
    section
        .iter()
        .any(|r| as_nsec(r).is_some() || as_nsec3(r).is_some())
}

/// The DNSKEY `ds` names: same key tag and algorithm, and the digest matches.
fn matching_key<'k>(ds: &DS, owner: &Name, keys: &'k [DNSKEY]) -> Option<&'k DNSKEY> {
    keys.iter().find(|key| {
        key.calculate_key_tag().unwrap() == ds.key_tag()
            && key.algorithm() == ds.algorithm()
            && ds.covers(owner, key).unwrap_or(false)
    })
}

/// Checks `rrsig` over its RRset in `section` with the signer's DNSKEY,
/// and that it is valid now.
fn verify(owner: &Name, rrsig: &RRSIG, section: &[Record]) -> Result<(), String> {
    let input = rrsig.input();
    let keys = dnskeys(&input.signer_name.to_ascii());
    let key = keys
        .iter()
        .find(|key| {
            key.calculate_key_tag().unwrap() == input.key_tag && key.algorithm() == input.algorithm
        })
        .ok_or_else(|| format!("{owner}: no DNSKEY with tag {}", input.key_tag))?;
    let now = now();
    if !(input.sig_inception.get()..=input.sig_expiration.get()).contains(&now) {
        return Err(format!("{owner}: signature not valid now"));
    }
    let covered = section
        .iter()
        .filter(|record| &record.name == owner && record.record_type() == input.type_covered);
    if key.algorithm() == ED448 {
        // hickory cannot verify Ed448; the TBS octets are the same.
        let tbs = TBS::from_input(owner, DNSClass::IN, input, covered).unwrap();
        let public = key.public_key().public_bytes();
        return ed448_verifies(public, tbs.as_ref(), rrsig.sig())
            .then_some(())
            .ok_or_else(|| format!("{owner} {}: Ed448 signature fails", input.type_covered));
    }
    key.verify_rrsig(owner, DNSClass::IN, rrsig, covered)
        .map_err(|err| format!("{owner} {}: {err}", input.type_covered))
}

/// RFC 8032 PureEdDSA Ed448, as RFC 8080 uses it.
fn ed448_verifies(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    use ed448_goldilocks_plus::{Signature, VerifyingKey};
    let key = VerifyingKey::from_bytes(public.try_into().unwrap()).unwrap();
    let signature = Signature::from_bytes(signature.try_into().unwrap()).unwrap();
    key.verify_raw(&signature, message).is_ok()
}

fn owner_hash(record: &Record, zone: &Zone) -> Vec<u8> {
    assert!(zone.apex().zone_of(&record.name));
    let label = record.name.iter().next().unwrap().to_ascii_uppercase();
    BASE32_DNSSEC.decode(&label.to_ascii_lowercase()).unwrap()
}

/// Whether an NSEC/NSEC3 record matches or covers `name` (NSEC3 hashes with
/// its own parameters).
fn covers(record: &Record, name: &Name) -> bool {
    if let Some(nsec) = as_nsec(record) {
        return between(&record.name, name, nsec.next_domain_name());
    }
    let Some(nsec3) = as_nsec3(record) else {
        return false;
    };
    let hash = Nsec3HashAlgorithm::SHA1
        .hash(nsec3.salt(), name, nsec3.iterations())
        .unwrap();
    let label = record.name.iter().next().unwrap().to_ascii_lowercase();
    let owner = BASE32_DNSSEC.decode(&label).unwrap();
    between(
        &owner,
        &hash.as_ref().to_vec(),
        &nsec3.next_hashed_owner_name().to_vec(),
    )
}

/// `owner <= value < next` in a closed chain (the last link wraps around).
fn between<T: Ord>(owner: &T, value: &T, next: &T) -> bool {
    if owner < next {
        owner <= value && value < next
    } else {
        owner <= value || value < next
    }
}

/// Checks the NSEC/NSEC3 proof of a negative answer, by what the case is:
/// `nx.`/`missing-proof.` names (closest encloser: the apex), `x.w.`
/// wildcard NODATA, else NODATA at an existing name.
fn check_proof(case: &Case, response: &Message) -> Result<(), String> {
    let qname = Name::from_ascii(case.qname).unwrap();
    let zone = Hierarchy::shared()
        .zones()
        .filter(|zone| zone.apex().zone_of(&qname))
        .last()
        .unwrap();
    let proof: Vec<&Record> = response
        .authorities
        .iter()
        .filter(|r| as_nsec(r).is_some() || as_nsec3(r).is_some())
        .collect();
    let owner = |name: &Name| match zone.nsec3_params() {
        Some(params) => nsec3_owner(&params.hash(name), zone.apex()),
        None => name.clone(),
    };
    let matching = |name: &Name| proof.iter().find(|record| record.name == owner(name));
    let covered = |name: &Name| proof.iter().any(|record| covers(record, name));
    let lacks_type = |name: &Name| {
        let record = matching(name).ok_or(format!("no NSEC/NSEC3 matches {name}"))?;
        let types = as_nsec(record)
            .map(|nsec| nsec.type_set().contains(case.qtype))
            .or_else(|| as_nsec3(record).map(|nsec3| nsec3.type_set().contains(case.qtype)));
        match types {
            Some(false) => Ok(()),
            _ => Err(format!("{name} has {}", case.qtype)),
        }
    };
    let require = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_owned()) };
    let nsec3 = zone.nsec3_params().is_some();
    if case.rcode == ResponseCode::NXDomain {
        require(covered(&qname), "the name is not covered")?;
        let wildcard = zone.apex().prepend_label("*").unwrap();
        require(covered(&wildcard), "the wildcard is not covered")?;
        require(
            !nsec3 || matching(zone.apex()).is_some(),
            "no closest encloser match",
        )
    } else if case.qname.starts_with("x.w.") {
        let wildcard = qname.base_name().prepend_label("*").unwrap();
        require(covered(&qname), "the name is not covered")?;
        lacks_type(&wildcard)
    } else if case.qname.starts_with("ent.") && !nsec3 {
        let denial = proof.iter().find(|record| covers(record, &qname));
        let next = denial
            .and_then(|record| as_nsec(record))
            .map(NSEC::next_domain_name);
        require(
            next.is_some_and(|next| qname.zone_of(next)),
            "the ENT's next name is not below it",
        )
    } else {
        lacks_type(&qname)
    }
}
