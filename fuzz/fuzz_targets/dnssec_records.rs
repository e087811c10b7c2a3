//! DNSSEC validation without a network: `dnssec::Validator::validate` on
//! an upstream answer, with a [`Fetch`] that answers the DS and DNSKEY
//! queries from further messages of the input; and trust anchor text
//! (`TrustAnchors::parse`, what `dnssec.trust_anchor_file` holds).
//!
//! The rest of `dnssec` (RRset grouping, signature checks, NSEC and NSEC3
//! proofs, the chain of trust) is private; `validate` reaches all of it.
//!
//! Input: one control octet, then messages, each a 2-octet big-endian
//! length and that many octets.
//! - control & 3 == 3: the rest is trust anchor text.
//! - otherwise it picks the trust anchors (root DNSKEY, root DS, or the
//!   root and a deeper anchor at `example.`); the first message is the
//!   answer, the others what the fetches get. Each message goes the way
//!   the resolver's do: `wire::Answer::from_upstream` against the question
//!   asked (OPT stripped), then `hickory_proto::op::Message::from_vec`.
//!   A fetch gets the first message that answers its question, or fails.
//!
//! The anchors are the keys of the signed hierarchy `seedgen` builds
//! (fixtures/dnssec-*.txt, written by it), so its seeds validate as
//! secure and mutations of them reach every check behind a signature.
//!
//! After validating, a secure answer goes through the resolver's own
//! shaping for a client that set DO (`resolver::answer_for_client`: only
//! the checked RRsets, TTLs capped, AD), and the answer is validated
//! again on the now-warm key cache.
//!
//! Checked besides "no panic": validation always completes (nothing
//! waits forever), a warm key cache gives the verdict a cold one did, and
//! every RRset a secure answer passes on to the client (with AD=1) is
//! covered, in its own section, by an RRSIG that verifies with a DNSKEY
//! found in the input. The fuzzer cannot forge a signature, so an RRset
//! without one got through unchecked. (The CNAME synthesized from a
//! signed DNAME is unsigned by design and exempt.) And their TTLs stay
//! within the Original TTL of that RRSIG (RFC 4035 §5.3.3).
//!
//! Findings F4 and F5 (README.md "Findings") broke the last two checks;
//! their inputs are in regressions/dnssec_records/.

#![no_main]

use std::{
    future::Future,
    num::NonZeroUsize,
    pin::pin,
    sync::OnceLock,
    task::{Context, Poll, Waker},
};

use dotstub::{
    dnssec::{Fetch, FetchError, TrustAnchors, Validated, Validator, Verdict},
    resolver::answer_for_client,
    wire::{Answer, HEADER_LEN, Query, Question},
};
use hickory_proto::{
    dnssec::{
        PublicKey as _, Verifier as _,
        rdata::{DNSKEY, DNSSECRData, RRSIG},
    },
    op::{Edns, Message},
    rr::{Name, RData, Record, RecordType},
    serialize::binary::{BinEncodable, BinEncoder, NameEncoding},
};
use libfuzzer_sys::fuzz_target;

/// At most this many messages are read from one input.
const MAX_MESSAGES: usize = 24;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    match control & 3 {
        3 => anchor_text(rest),
        which => validate(&anchors()[usize::from(which)], rest),
    }
});

//---- Trust anchor text ----

fn anchor_text(text: &[u8]) {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    match TrustAnchors::parse(text) {
        Ok(anchors) => {
            assert!(
                anchors.iter().next().is_some(),
                "parsed anchors are never empty"
            );
            for anchor in anchors.iter() {
                assert!(!anchor.records.is_empty());
                assert_eq!(
                    anchors.closest(&anchor.zone).map(|a| &a.zone),
                    Some(&anchor.zone)
                );
            }
            let _ = anchors.closest(&Name::root());
        }
        Err(error) => {
            assert!(error.line >= 1, "lines are 1-based");
            let _ = error.to_string();
        }
    }
}

fn anchors() -> &'static [TrustAnchors; 3] {
    static ANCHORS: OnceLock<[TrustAnchors; 3]> = OnceLock::new();
    ANCHORS.get_or_init(|| {
        [
            include_str!("../fixtures/dnssec-root-dnskey.txt"),
            include_str!("../fixtures/dnssec-root-ds.txt"),
            include_str!("../fixtures/dnssec-deeper.txt"),
        ]
        .map(|text| TrustAnchors::parse(text).expect("seedgen writes valid anchors"))
    })
}

//---- Validation ----

fn validate(anchors: &TrustAnchors, rest: &[u8]) {
    let messages = split(rest);
    let Some((&response, fetched)) = messages.split_first() else {
        return;
    };
    let fetch = Replay { messages: fetched };
    // As the resolver does: the answer it got for the question it asked.
    let answer = Question::parse(response, HEADER_LEN)
        .ok()
        .and_then(|question| Answer::from_upstream(response, &question).ok())
        .map(|(answer, _)| answer);
    let bytes = answer.as_ref().map_or(response, Answer::as_bytes);
    let Ok(message) = Message::from_vec(bytes) else {
        return;
    };
    let Some(question) = message.queries.first() else {
        return;
    };
    let (qname, qtype) = (question.name(), question.query_type());
    let validator = Validator::new(anchors.clone(), NonZeroUsize::new(64).expect("not zero"));
    let cold = complete(validator.validate(qname, qtype, &message, &fetch));
    if debug() {
        eprintln!(
            "{qname} {qtype}: {:?}, {} RRsets checked",
            cold.verdict,
            cold.checked.len()
        );
    }
    if let (Some(answer), Verdict::Secure) = (answer, &cold.verdict) {
        for_client(answer, &message, &cold, &messages);
    }
    let warm = complete(validator.validate(qname, qtype, &message, &fetch));
    assert_eq!(
        cold.verdict, warm.verdict,
        "the key cache changed the verdict"
    );
}

/// What the resolver makes of a secure answer for a client that set DO
/// (`resolver::answer_for_client`): checked against the oracle below.
fn for_client(answer: Answer, message: &Message, validated: &Validated, input: &[&[u8]]) {
    let Some(asked) = message.queries.first() else {
        return;
    };
    let mut client = Message::query();
    client.metadata.id = 0x4242;
    client.add_query(asked.clone());
    let mut edns = Edns::new();
    edns.set_dnssec_ok(true);
    client.set_edns(edns);
    let Ok(bytes) = client.to_vec() else {
        return;
    };
    let Ok(query) = Query::parse(&bytes) else {
        return;
    };
    let Some(passed) = answer_for_client(answer, Some(message), &query, Some(validated)) else {
        return;
    };
    let kept = Message::from_vec(passed.as_bytes()).expect("the resolver writes messages that parse");
    assert!(kept.additionals.is_empty(), "a secure answer keeps no additional section");
    assert_signed(&kept, &input_keys(input));
}

//---- Signed-data oracle ----

/// Every DNSKEY in the answer and fetch messages of the input.
fn input_keys(input: &[&[u8]]) -> Vec<DNSKEY> {
    input
        .iter()
        .filter_map(|bytes| Message::from_vec(bytes).ok())
        .flat_map(|message| message.answers)
        .filter_map(|record| match record.data {
            RData::DNSSEC(DNSSECRData::DNSKEY(key)) => Some(key),
            _ => None,
        })
        .collect()
}

/// Checks what a secure answer passes on: each RRset of the answer and
/// authority sections of `kept` is covered by an RRSIG of its own section
/// that verifies with one of `keys`, and its TTLs are within that RRSIG's
/// Original TTL (RFC 4035 §5.3.3).
fn assert_signed(kept: &Message, keys: &[DNSKEY]) {
    let sections = [("answer", &kept.answers), ("authority", &kept.authorities)];
    for (section, records) in sections {
        for (name, rtype, set) in rrsets(records) {
            let original_ttl = records
                .iter()
                .filter_map(|record| match &record.data {
                    RData::DNSSEC(DNSSECRData::RRSIG(sig))
                        if record.name == *name
                            && sig.input().type_covered == rtype
                            && verifies(name, rtype, &set, sig, keys) =>
                    {
                        Some(sig.input().original_ttl)
                    }
                    _ => None,
                })
                .max();
            let Some(original_ttl) = original_ttl else {
                panic!(
                    "a secure answer passes on an RRset with no valid signature in its \
                     {section} section: {name} {rtype}"
                );
            };
            let ttl = set.iter().map(|record| record.ttl).max().unwrap_or(0);
            assert!(
                ttl <= original_ttl,
                "a secure answer passes on {name} {rtype} with TTL {ttl}, over the \
                 Original TTL {original_ttl} of its signature"
            );
        }
    }
}

/// The RRsets of one section, without RRSIGs and without a CNAME that a
/// DNAME of the section synthesizes (unsigned by design, RFC 6672 §5.3.1).
fn rrsets(records: &[Record]) -> Vec<(&Name, RecordType, Vec<&Record>)> {
    let synthesized_cname = records
        .iter()
        .any(|record| record.record_type() == RecordType::DNAME);
    let mut sets: Vec<(&Name, RecordType, Vec<&Record>)> = Vec::new();
    for record in records {
        let rtype = record.record_type();
        if rtype == RecordType::RRSIG || (rtype == RecordType::CNAME && synthesized_cname) {
            continue;
        }
        match sets
            .iter_mut()
            .find(|(name, set_type, _)| *set_type == rtype && **name == record.name)
        {
            Some((_, _, set)) => set.push(record),
            None => sets.push((&record.name, rtype, vec![record])),
        }
    }
    sets
}

fn verifies(
    owner: &Name,
    rtype: RecordType,
    set: &[&Record],
    sig: &RRSIG,
    keys: &[DNSKEY],
) -> bool {
    let Some(data) = signed_data(owner, rtype, set, sig) else {
        return false;
    };
    keys.iter().any(|key| {
        // hickory-proto asserts in debug builds that it knows the algorithm.
        let algorithm = key.public_key().algorithm();
        algorithm == sig.input().algorithm
            && algorithm.is_supported()
            && key.verify(&data, sig.sig()).is_ok()
    })
}

/// RFC 4034 §3.1.8.1: the RRSIG RDATA without the signature, then each
/// record, canonical, sorted, duplicates removed.
fn signed_data(owner: &Name, rtype: RecordType, set: &[&Record], sig: &RRSIG) -> Option<Vec<u8>> {
    let input = sig.input();
    let owner = match input.num_labels < owner.num_labels() {
        true => owner
            .trim_to(usize::from(input.num_labels))
            .prepend_label("*")
            .ok()?,
        false => owner.clone(),
    };
    let mut rdatas = Vec::new();
    for record in set {
        let mut bytes = Vec::new();
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_canonical_form(true);
        encoder.set_name_encoding(NameEncoding::Uncompressed);
        record.data.emit(&mut encoder).ok()?;
        rdatas.push(bytes);
    }
    rdatas.sort_unstable();
    rdatas.dedup();
    let mut data = Vec::new();
    let mut encoder = BinEncoder::new(&mut data);
    encoder.set_canonical_form(true);
    encoder.set_name_encoding(NameEncoding::UncompressedLowercase);
    input.emit(&mut encoder).ok()?;
    for rdata in rdatas {
        owner.emit(&mut encoder).ok()?;
        rtype.emit(&mut encoder).ok()?;
        encoder.emit_u16(1).ok()?;
        encoder.emit_u32(input.original_ttl).ok()?;
        encoder.emit_u16(u16::try_from(rdata.len()).ok()?).ok()?;
        encoder.emit_vec(&rdata).ok()?;
    }
    Some(data)
}

/// Whether to print each verdict (`DOTSTUB_FUZZ_DEBUG=1`), to see what
/// the seeds reach.
fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("DOTSTUB_FUZZ_DEBUG").is_some())
}

/// The length-prefixed messages of `input`.
fn split(mut input: &[u8]) -> Vec<&[u8]> {
    let mut messages = Vec::new();
    while let Some((&[hi, lo], rest)) = input.split_first_chunk::<2>() {
        if messages.len() == MAX_MESSAGES {
            break;
        }
        let len = usize::from(u16::from_be_bytes([hi, lo])).min(rest.len());
        let (message, rest) = rest.split_at(len);
        messages.push(message);
        input = rest;
    }
    messages
}

/// Runs `future` to its end. Every fetch is ready at once and nothing
/// else runs, so a validation still pending after many polls would wait
/// forever in the resolver too.
fn complete<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    for _ in 0..1000 {
        if let Poll::Ready(value) = future.as_mut().poll(&mut context) {
            return value;
        }
    }
    panic!("validation did not complete although every fetch was ready");
}

/// DS and DNSKEY fetches answered from the input's messages.
struct Replay<'a> {
    messages: &'a [&'a [u8]],
}

impl Replay<'_> {
    /// The first message that is an answer to `name`/`rtype`, read as
    /// `resolver::secure::PoolFetch` reads what the pool returns.
    fn answer(&self, name: &Name, rtype: RecordType) -> Result<Message, FetchError> {
        let name = name.to_bytes().map_err(|_| FetchError)?;
        let wire = Question::section(&name, u16::from(rtype));
        let question = Question::parse(&wire, 0).map_err(|_| FetchError)?;
        self.messages
            .iter()
            .find_map(|message| {
                let (answer, _) = Answer::from_upstream(message, &question).ok()?;
                Message::from_vec(answer.as_bytes()).ok()
            })
            .ok_or(FetchError)
    }
}

impl Fetch for Replay<'_> {
    fn fetch(
        &self,
        name: &Name,
        rtype: RecordType,
    ) -> impl Future<Output = Result<Message, FetchError>> + Send {
        std::future::ready(self.answer(name, rtype))
    }

    fn out_of_time(&self) -> bool {
        false
    }
}
