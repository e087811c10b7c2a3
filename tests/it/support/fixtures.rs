//! The rig's deterministic zone: what a rig upstream answers to each query, and
//! how a response is finished for the wire (EDNS keepalive, RFC 8467 padding).
//! Tests compute the same answers with `expected_a` / `expected_aaaa` to check
//! that dotstub relayed them unchanged.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, Message, Metadata, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;

/// TXT queries for this name get [`BIG_TXT_RECORDS`] records, far over 4096 octets.
pub const BIG_NAME: &str = "big.test.";
/// Any name at or under this one is NXDOMAIN, with an SOA in the authority section.
pub const NX_SUFFIX: &str = "nx.test.";
/// Any name at or under this one gets SERVFAIL.
pub const SERVFAIL_SUFFIX: &str = "servfail.test.";
/// Any name at or under this one gets an empty answer with TC=1.
pub const TRUNCATED_SUFFIX: &str = "tc.test.";
/// TTL of every positive answer record.
pub const TTL: u32 = 300;
/// SOA MINIMUM and SOA record TTL of negative answers (RFC 2308 negative TTL).
pub const NEGATIVE_TTL: u32 = 60;
/// UDP payload size advertised in every response OPT record.
pub const EDNS_PAYLOAD: u16 = 1232;
/// Padded responses are a multiple of this many octets (RFC 8467 §4.1).
pub const PADDING_BLOCK: usize = 468;
/// EDNS option code of edns-tcp-keepalive (RFC 7828).
pub const KEEPALIVE_OPTION: u16 = 11;
/// EDNS option code of Padding (RFC 7830).
pub const PADDING_OPTION: u16 = 12;
/// Number of TXT records in the answer for [`BIG_NAME`].
pub const BIG_TXT_RECORDS: usize = 30;
/// TXT answer between 512 and 1232 octets on the wire: the first
/// [`MEDIUM_TXT_RECORDS`] records of the big set.
pub const MEDIUM_NAME: &str = "medium.test.";
/// Number of TXT records in the answer for [`MEDIUM_NAME`].
pub const MEDIUM_TXT_RECORDS: usize = 4;
/// Length of the single character-string in each big TXT record.
pub const BIG_TXT_STRING_LEN: usize = 200;

/// The answer the rig gives to a query message (before any padding / keepalive is added).
pub fn answer(query: &Message) -> Message {
    let mut response = response_to(&query.metadata);
    response.queries = query.queries.clone();
    response.edns = query.edns.as_ref().map(|edns| {
        let mut reply = Edns::new();
        reply.set_max_payload(EDNS_PAYLOAD);
        reply.set_dnssec_ok(edns.flags().dnssec_ok);
        reply
    });
    let [question] = query.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    let qname = &question.name;
    if name(NX_SUFFIX).zone_of(qname) {
        response.metadata.response_code = ResponseCode::NXDomain;
        response.authorities.push(soa(name(NX_SUFFIX)));
        return response;
    }
    if name(SERVFAIL_SUFFIX).zone_of(qname) {
        response.metadata.response_code = ResponseCode::ServFail;
        return response;
    }
    if name(TRUNCATED_SUFFIX).zone_of(qname) {
        response.metadata.truncation = true;
        return response;
    }
    let text = qname.to_ascii();
    let data = match question.query_type {
        RecordType::A => vec![RData::A(A(expected_a(&text)))],
        RecordType::AAAA => vec![RData::AAAA(AAAA(expected_aaaa(&text)))],
        RecordType::TXT if same_name(&text, BIG_NAME) => big_txt(),
        RecordType::TXT if same_name(&text, MEDIUM_NAME) => {
            big_txt().into_iter().take(MEDIUM_TXT_RECORDS).collect()
        }
        _ => Vec::new(),
    };
    if data.is_empty() {
        // NODATA: every name is treated as its own zone apex, so the SOA owner is the qname.
        response.authorities.push(soa(qname.clone()));
    }
    response.answers = data
        .into_iter()
        .map(|rdata| Record::from_rdata(qname.clone(), TTL, rdata))
        .collect();
    response
}

/// FORMERR for a frame that is not a DNS message but starts with a header;
/// `None` when even the 12-octet header is missing.
pub fn formerr_for(bytes: &[u8]) -> Option<Message> {
    let header = Header::from_bytes(bytes.get(..12)?).ok()?;
    let mut response = response_to(&header.metadata);
    response.metadata.response_code = ResponseCode::FormErr;
    Some(response)
}

/// Encodes `response` to `query` for the wire: adds edns-tcp-keepalive when
/// `keepalive` is set, then, if the query was padded, pads to a multiple of
/// [`PADDING_BLOCK`]. Both only where the response has an OPT record.
/// `None` if hickory cannot encode it.
pub fn encode_response(
    mut response: Message,
    query: Option<&Message>,
    keepalive: Option<Duration>,
) -> Option<Vec<u8>> {
    let Some(edns) = response.edns.as_mut() else {
        return response.to_vec().ok();
    };
    if let Some(timeout) = keepalive {
        let units = u16::try_from(timeout.as_millis() / 100).unwrap_or(u16::MAX);
        let option = EdnsOption::Unknown(KEEPALIVE_OPTION, units.to_be_bytes().to_vec());
        edns.options_mut().insert(option);
    }
    let padded = query
        .and_then(|query| query.edns.as_ref())
        .is_some_and(|edns| edns.option(EdnsCode::Padding).is_some());
    let unpadded = response.to_vec().ok()?;
    if !padded {
        return Some(unpadded);
    }
    // The option's own 4-octet header counts towards the block too.
    let fill = (PADDING_BLOCK - (unpadded.len() + 4) % PADDING_BLOCK) % PADDING_BLOCK;
    let option = EdnsOption::Unknown(PADDING_OPTION, vec![0; fill]);
    response.edns.as_mut()?.options_mut().insert(option);
    let wire = response.to_vec().ok()?;
    assert_eq!(wire.len() % PADDING_BLOCK, 0, "padding arithmetic is off");
    Some(wire)
}

/// The A address the rig answers for `name`: 10.0.0.0/8 plus 24 bits of its hash.
pub fn expected_a(name: &str) -> Ipv4Addr {
    let low_bits = fnv1a64(name) & 0x00ff_ffff;
    Ipv4Addr::from(0x0a00_0000 | low_bits as u32)
}

/// The AAAA address the rig answers for `name`: fd00::/8 plus 64 bits of its hash.
pub fn expected_aaaa(name: &str) -> Ipv6Addr {
    Ipv6Addr::from((0xfd_u128 << 120) | u128::from(fnv1a64(name)))
}

/// `name` as the rig compares names: lowercased, without the trailing dot.
pub fn normalize_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Whether two names are the same DNS name (ASCII case and trailing dot ignored).
pub fn same_name(a: &str, b: &str) -> bool {
    normalize_name(a) == normalize_name(b)
}

/// The TXT character-strings of the big answer, in answer order.
pub fn big_txt_strings() -> Vec<Vec<u8>> {
    (0..BIG_TXT_RECORDS)
        .map(|i| {
            let tag = format!("{i:02}:");
            tag.bytes()
                .chain(std::iter::repeat(b'x'))
                .take(BIG_TXT_STRING_LEN)
                .collect()
        })
        .collect()
}

fn big_txt() -> Vec<RData> {
    big_txt_strings()
        .iter()
        .map(|string| RData::TXT(TXT::from_bytes(vec![string.as_slice()])))
        .collect()
}

// Header fields every rig response shares, whatever its rcode.
fn response_to(query: &Metadata) -> Message {
    let mut response = Message::response(query.id, query.op_code);
    response.metadata.recursion_desired = query.recursion_desired;
    response.metadata.recursion_available = true;
    response
}

fn soa(zone: Name) -> Record {
    let soa = SOA::new(
        name("ns.test."),
        name("hostmaster.test."),
        1,
        3600,
        600,
        86400,
        NEGATIVE_TTL,
    );
    Record::from_rdata(zone, NEGATIVE_TTL, RData::SOA(soa))
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("fixture names are valid")
}

// FNV-1a: tiny, stable across Rust versions (unlike std's hasher), good enough spread.
fn fnv1a64(name: &str) -> u64 {
    normalize_name(name)
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}
