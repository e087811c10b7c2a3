//! What an upstream sends back over TLS: a byte stream cut into frames by
//! 2-octet length prefixes (tokio_util's `LengthDelimitedCodec`, set up as
//! `upstream::conn::read_answers` sets it up), each frame matched by ID
//! (`Header::parse`) and read against the question asked
//! (`Answer::from_upstream`), then written for a client
//! (`Answer::write_for_client`) and stored in and answered from the cache.
//!
//! Input: one control octet, then the stream. The control octet picks the
//! client query (with or without EDNS, DO, CD, its payload size), the
//! transport, dotstub's UDP limit and how long the answer sat in the cache.
//! Every frame is read against the same question, `www.example. IN A`,
//! asked by the client as `WwW.ExAmPlE.`.
//!
//! Checked besides "no panic": a reply written whole is a message whose
//! records all parse and end where the reply ends, with the client's ID
//! and question, and at most the size the client can take.
//!
//! These checks found F1 (octets after the last record kept) and F2 (an
//! OPT record outside the additional section forwarded), README.md
//! "Findings"; fuzz/regressions/upstream_answer/ holds their inputs.

#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use dotstub::{
    cache::{Cache, Hit, KeyBuf},
    config::{CacheConfig, Config},
    metrics::Metrics,
    wire::{
        self, Answer, Header, Query, Question, Recipient, Records, Transport, Written,
        udp_reply_bound,
    },
};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

/// The question as dotstub asked it upstream.
const ASKED: &[u8] = b"\x03www\x07example\x00\x00\x01\x00\x01";

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let asked = Question::parse(ASKED, 0).expect("a fixed, valid question");
    let client = client_query(control);
    let query = Query::parse(&client).expect("a fixed, valid query");
    let to = Recipient {
        query: &query,
        transport: if control & 0x10 != 0 {
            Transport::Tcp
        } else {
            Transport::Udp
        },
        udp_size: [512, 1232, 1400, 4096][usize::from(control >> 6)],
    };
    let age_ms = u64::from(control & 0x20) * 100_000;

    let mut codec = LengthDelimitedCodec::builder()
        .length_field_length(2)
        .max_frame_length(wire::MAX_MESSAGE_LEN)
        .new_codec();
    let mut buffer = BytesMut::from(stream);
    let cache = Cache::new(cache_config(), Arc::clone(&metrics().cache));
    let key = KeyBuf::of(&query);
    let mut out = Vec::new();
    // At most a few frames: that is what a stream of this size holds,
    // and the codec alone (not this loop) decides where they end.
    while let Ok(Some(frame)) = codec.decode(&mut buffer) {
        // conn.rs takes the ID first, to find the query it answers.
        if Header::parse(&frame).is_err() {
            continue;
        }
        let Ok((answer, _edns)) = Answer::from_upstream(&frame, &asked) else {
            continue;
        };
        let _ = (answer.rcode(), answer.is_truncated(), answer.options_len());
        if let Ok(written) = answer.write_for_client(&to, &mut out) {
            check_reply(&out, written, &to);
        }
        cache.insert(&key, &answer, 0);
        match cache.answer(&key, &to, age_ms, &mut out) {
            Hit::Fresh(written) | Hit::Prefetch(written) => {
                check_reply(&out, written, &to);
            }
            Hit::Stale | Hit::Miss => {}
        }
        if let Some(written) = cache.answer_stale(&key, &to, age_ms, &mut out) {
            check_reply(&out, written, &to);
        }
        let mut authentic = answer.clone();
        let _ = authentic.set_authentic(true);
        let _ = authentic.rewrite_ttls(|_, _, ttl| ttl / 2);
    }
    // The rest of the stream: what a closing connection leaves unread.
    let _ = codec.decode_eof(&mut buffer);
});

/// The client's query for `WwW.ExAmPlE. A`; control bits 0-3 pick EDNS,
/// DO, CD and the client's payload size.
fn client_query(control: u8) -> Vec<u8> {
    let edns = control & 1 != 0;
    let mut packet = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
    if control & 4 != 0 {
        packet[3] |= 0x10; // CD
    }
    packet.extend_from_slice(b"\x03WwW\x07ExAmPlE\x00\x00\x01\x00\x01");
    if edns {
        let udp_size: u16 = if control & 8 != 0 { 4096 } else { 512 };
        let dnssec_ok = if control & 2 != 0 { 0x80 } else { 0 };
        packet.extend_from_slice(&[0, 0, 41]);
        packet.extend_from_slice(&udp_size.to_be_bytes());
        packet.extend_from_slice(&[0, 0, dnssec_ok, 0, 0, 0]);
    }
    packet
}

/// A reply written for `to` is a well-formed message for that client.
fn check_reply(out: &[u8], written: Written, to: &Recipient<'_>) {
    let reply = &out[..written.len];
    let header = Header::parse(reply).expect("a reply has a header");
    assert_eq!(header.id(), to.query.id(), "the client's ID");
    let limit = match to.transport {
        Transport::Tcp => wire::MAX_MESSAGE_LEN,
        Transport::Udp => udp_reply_bound(to.udp_size),
    };
    assert!(
        reply.len() <= limit,
        "reply of {} octets over {limit}",
        reply.len()
    );
    let question = Question::parse(reply, wire::HEADER_LEN).expect("the question is echoed");
    assert_eq!(question.as_bytes(), to.query.question().as_bytes());
    if !written.whole {
        return;
    }
    if to.transport == Transport::Udp {
        let client = to
            .query
            .edns()
            .map_or(512, |e| e.udp_size.min(to.udp_size).max(512));
        assert!(
            reply.len() <= usize::from(client),
            "UDP reply over the client's size"
        );
    }
    // Every record the header counts is there, and nothing after them.
    let mut end = wire::HEADER_LEN + question.as_bytes().len();
    let mut opt = 0;
    for record in Records::new(reply).expect("counts and question read") {
        let (_, span) = record.unwrap_or_else(|error| {
            panic!("reply written whole has an unreadable record: {error:?}")
        });
        opt += usize::from(span.rtype == wire::rtype::OPT);
        end = span.end;
    }
    assert_eq!(end, reply.len(), "octets after the last record");
    let client_edns = usize::from(to.query.edns().is_some());
    assert_eq!(
        opt, client_edns,
        "one OPT record exactly when the client sent one"
    );
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics::new(["fuzz"]))
}

fn cache_config() -> &'static CacheConfig {
    static CONFIG: OnceLock<CacheConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let mut config = Config::embedded().expect("the embedded config loads").cache;
        config.max_bytes = 1 << 20;
        config
    })
}
