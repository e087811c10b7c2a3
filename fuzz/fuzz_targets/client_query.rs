//! A client's query, as the UDP and TCP listeners hand it to the resolver:
//! `wire::Query::parse`, then everything the hot path does with a parsed
//! query (accessors, the cache key, the upstream query built from it, a
//! SERVFAIL for it), or the refusal written when it does not parse.
//!
//! Checked besides "no panic": what dotstub writes from a client's query
//! reads back with its own parser.

#![no_main]

use dotstub::{
    cache::KeyBuf,
    wire::{
        self, Answer, Header, NameDisplay, Query, QueryError, Recipient, Transport,
        UpstreamQuestion, flag,
        reply::{self, MAX_SHORT_REPLY, ede},
    },
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Query::parse(data) {
        Ok(query) => parsed(&query),
        Err(error) => refused(data, error),
    }
});

fn parsed(query: &Query<'_>) {
    let question = query.question();
    let name = question.name();
    assert_eq!(name.len() + 4, question.as_bytes().len());
    assert!(question.matches(question));
    let _ = (
        question.qtype(),
        question.qclass(),
        query.id(),
        query.header(),
    );
    let _ = (query.edns(), query.dnssec_ok(), query.checking_disabled());
    // What `level = "debug"` logs.
    let _ = NameDisplay(name).to_string();

    // The cache key: one flag octet, then the question, name lowercased.
    let key = KeyBuf::of(query);
    let mut in_place = KeyBuf::EMPTY;
    in_place.set(query);
    assert_eq!(key.as_bytes(), in_place.as_bytes());
    assert_eq!(key.as_bytes().len(), 1 + question.as_bytes().len());
    assert!(key.as_bytes()[1..1 + name.len()].eq_ignore_ascii_case(name));
    assert_eq!(&*key.to_key(), key.as_bytes());

    upstream_query(query);
    servfail(query);
}

/// The query sent upstream for this question (as `upstream::conn::encode`
/// builds it), which must itself be a query dotstub would accept.
fn upstream_query(query: &Query<'_>) {
    let asked = UpstreamQuestion {
        question: *query.question(),
        dnssec_ok: true,
        checking_disabled: query.checking_disabled(),
    };
    let mut frame = vec![0u8; wire::HEADER_LEN + query.question().as_bytes().len() + 19 + 468];
    for (keepalive, block) in [(true, 128usize), (false, 468), (false, 0)] {
        let padding = |len: usize| (block > 0).then(|| (block - len % block) % block);
        let len = wire::write_upstream_query(&asked, 0x4242, keepalive, padding, &mut frame)
            .expect("sized as conn::encode sizes it");
        let sent = &frame[..len];
        if block > 0 {
            assert_eq!(len % block, 0, "padded to the block");
        }
        let back = Query::parse(sent).expect("dotstub's own upstream query parses");
        assert!(back.question().matches(query.question()));
        assert_eq!(back.id(), 0x4242);
        assert!(back.dnssec_ok());
    }
}

/// The SERVFAIL dotstub sends when every upstream failed, written
/// directly and through a stored [`Answer`].
fn servfail(query: &Query<'_>) {
    let mut out = vec![0u8; MAX_SHORT_REPLY];
    let text = "no upstream answered, and the text is long enough to be cut at 128 octets \
                so that the short reply bound is what is tested here, not the text";
    let len = reply::write_servfail(query, (ede::NO_REACHABLE_AUTHORITY, text), 1232, &mut out)
        .expect("MAX_SHORT_REPLY bounds every SERVFAIL");
    let header = Header::parse(&out[..len]).expect("has a header");
    assert_eq!(header.id(), query.id());
    assert_eq!(header.rcode(), 2);
    assert_eq!(header.has(flag::RD), query.header().has(flag::RD));

    let answer = Answer::servfail(query.question(), (ede::DNSKEY_MISSING, text))
        .expect("a SERVFAIL for a checked question reads back");
    for transport in [Transport::Udp, Transport::Tcp] {
        let to = Recipient {
            query,
            transport,
            udp_size: 1232,
        };
        let mut out = Vec::new();
        let written = answer
            .write_for_client(&to, &mut out)
            .expect("fits its own bound");
        let header = Header::parse(&out[..written.len]).expect("has a header");
        assert_eq!(header.id(), query.id());
    }
}

/// The reply to a message that is not a query dotstub forwards: nothing
/// for those it drops, else a short reply with the client's ID.
fn refused(data: &[u8], error: QueryError) {
    let mut out = vec![0u8; MAX_SHORT_REPLY];
    let written = reply::write_refusal(data, error, 1232, &mut out);
    match (error.rcode(), written) {
        (None, None) => {}
        (None, Some(_)) => panic!("{error:?} is dropped, yet a reply was written"),
        (Some(_), None) => panic!("{error:?} is answered, yet no reply fits MAX_SHORT_REPLY"),
        (Some(rcode), Some(len)) => {
            let header = Header::parse(&out[..len]).expect("has a header");
            let request = Header::parse(data).expect("answered messages have a header");
            assert_eq!(header.id(), request.id());
            assert!(header.has(flag::QR));
            assert_eq!(u16::from(header.rcode()), rcode.header_bits());
        }
    }
}
