//! Allocation-free DNS wire format: the bytes of a message, read and patched in place.
//!
//! This module owns everything dotstub does to DNS messages on the hot path:
//! reading a client's query ([`Query`]), building the query sent upstream
//! ([`write_upstream_query`]), turning an upstream response
//! into a stored [`Answer`] and writing that answer for one client
//! ([`Answer::write_for_client`]), and the short error replies (FORMERR, NOTIMP,
//! REFUSED, SERVFAIL, BADVERS) in [`reply`].
//!
//! It does no I/O, knows nothing of tokio, and never allocates except in
//! [`Answer::from_upstream`], which runs once per upstream answer. Every
//! function works on `&[u8]` / `&mut [u8]`, checks bounds once and returns a
//! small `Copy` error instead of panicking, so hostile input can only be
//! answered or dropped.
//!
//! References: RFC 1035 §4 (message format), RFC 6891 (EDNS(0) and OPT),
//! RFC 7830 (Padding option), RFC 7828 (edns-tcp-keepalive), RFC 8914 (EDE).

mod answer;
mod header;
mod name;
mod opt;
mod query;
pub mod reply;
mod ttl;
mod upstream_query;
mod writer;

pub use answer::{
    Answer, AnswerParts, Recipient, Transport, UpstreamEdns, Written, udp_reply_bound,
};
pub use header::{Header, HeaderMut, Rcode, flag};
pub use name::{NameDisplay, skip_name};
pub use opt::{EdnsOptions, OptRecord, option_code};
#[cfg(test)]
pub(crate) use query::tests::query_bytes;
pub use query::{ClientEdns, Query, QueryError, Question};
pub use ttl::{Records, Section, read_ttl, write_ttl};
pub use upstream_query::{UPSTREAM_UDP_SIZE, UpstreamQuestion, write_upstream_query};
pub use writer::{Overflow, Writer, copy, ensure_len};

/// Length of the fixed DNS header (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;

/// Largest DNS message: the TCP length prefix is 16 bits (RFC 1035 §4.2.2).
pub const MAX_MESSAGE_LEN: usize = 65_535;

/// Record type numbers dotstub looks at.
pub mod rtype {
    /// OPT pseudo-record (RFC 6891).
    pub const OPT: u16 = 41;
    /// Incremental zone transfer (RFC 1995).
    pub const IXFR: u16 = 251;
    /// Full zone transfer (RFC 5936).
    pub const AXFR: u16 = 252;
    /// SOA record, carries the negative TTL (RFC 2308).
    pub const SOA: u16 = 6;
    /// Name server record; the root's is what dotstub probes upstreams with.
    pub const NS: u16 = 2;
    /// DNSSEC signature (RFC 4034 §3).
    pub const RRSIG: u16 = 46;
    /// DNSSEC denial of existence (RFC 4034 §4).
    pub const NSEC: u16 = 47;
    /// DNSSEC hashed denial of existence (RFC 5155).
    pub const NSEC3: u16 = 50;
}

/// Why a message could not be read. Small and `Copy`: hostile input is
/// counted and dropped or answered, never formatted into a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message ends before a field it announces.
    #[error("message is shorter than its contents claim")]
    Short,
    /// A name breaks RFC 1035 §3.1 rules (label over 63 octets, name over
    /// 255, unknown label type, or a compression loop).
    #[error("malformed domain name")]
    BadName,
    /// A structural rule is broken (bad OPT, wrong counts, options overrun).
    #[error("malformed message")]
    Malformed,
}

/// Reads a big-endian `u16` at `pos`.
fn read_u16(packet: &[u8], pos: usize) -> Result<u16, WireError> {
    match packet.get(pos..pos + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(WireError::Short),
    }
}

/// Reads a big-endian `u32` at `pos`.
fn read_u32(packet: &[u8], pos: usize) -> Result<u32, WireError> {
    match packet.get(pos..pos + 4) {
        Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
        _ => Err(WireError::Short),
    }
}

//---- Record walking ----

/// The fixed fields of one resource record, located in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    /// Offset of the owner name.
    pub start: usize,
    /// Offset of the TYPE field (just after the owner name).
    pub fields: usize,
    /// Record type.
    pub rtype: u16,
    /// Record class (for OPT: the requestor's UDP payload size).
    pub class: u16,
    /// TTL (for OPT: extended RCODE, version and flags).
    pub ttl: u32,
    /// Offset of the RDATA.
    pub rdata_start: usize,
    /// Offset just past the RDATA, which is where the next record starts.
    pub end: usize,
}

impl RecordSpan {
    /// Reads the record starting at `start`.
    pub fn parse(packet: &[u8], start: usize) -> Result<Self, WireError> {
        let fields = skip_name(packet, start)?;
        let rtype = read_u16(packet, fields)?;
        let class = read_u16(packet, fields + 2)?;
        let ttl = read_u32(packet, fields + 4)?;
        let rdlen = usize::from(read_u16(packet, fields + 8)?);
        let rdata_start = fields + 10;
        let end = rdata_start + rdlen;
        if end > packet.len() {
            return Err(WireError::Short);
        }
        Ok(Self {
            start,
            fields,
            rtype,
            class,
            ttl,
            rdata_start,
            end,
        })
    }

    /// The RDATA octets.
    pub fn rdata<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        packet.get(self.rdata_start..self.end).unwrap_or_default()
    }
}

/// Offset of the first record after the question section, and the offsets
/// where the answer, authority and additional sections start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sections {
    /// Offset just past the question section.
    pub answer: usize,
    /// Offset of the first authority record.
    pub authority: usize,
    /// Offset of the first additional record.
    pub additional: usize,
}

impl Sections {
    /// Walks the question, answer and authority sections of `packet`.
    pub fn locate(packet: &[u8], header: &Header) -> Result<Self, WireError> {
        let mut pos = HEADER_LEN;
        for _ in 0..header.qdcount() {
            pos = skip_name(packet, pos)? + 4;
            if pos > packet.len() {
                return Err(WireError::Short);
            }
        }
        let answer = pos;
        let authority = skip_data_records(packet, answer, header.ancount())?;
        let additional = skip_data_records(packet, authority, header.nscount())?;
        Ok(Self {
            answer,
            authority,
            additional,
        })
    }
}

/// Skips `count` records from `pos`, returning the offset after the last.
fn skip_records(packet: &[u8], mut pos: usize, count: u16) -> Result<usize, WireError> {
    for _ in 0..count {
        pos = RecordSpan::parse(packet, pos)?.end;
    }
    Ok(pos)
}

/// [`skip_records`] for the answer and authority sections, where an OPT
/// record has no place (RFC 6891 §6.1.1: it is hop-by-hop, and only in
/// the additional section): such a message is malformed, so no upstream's
/// options ever reach a client as data.
fn skip_data_records(packet: &[u8], mut pos: usize, count: u16) -> Result<usize, WireError> {
    for _ in 0..count {
        let record = RecordSpan::parse(packet, pos)?;
        if record.rtype == rtype::OPT {
            return Err(WireError::Malformed);
        }
        pos = record.end;
    }
    Ok(pos)
}

/// Finds the OPT record in the additional section that starts at `pos`
/// and holds `count` records. Returns the OPT record and how many records
/// precede it. Two OPT records are malformed (RFC 6891 §6.1.1).
pub(crate) fn find_opt(
    packet: &[u8],
    mut pos: usize,
    count: u16,
) -> Result<Option<(RecordSpan, u16)>, WireError> {
    let mut found = None;
    for index in 0..count {
        let record = RecordSpan::parse(packet, pos)?;
        if record.rtype == rtype::OPT {
            if found.is_some() {
                return Err(WireError::Malformed);
            }
            found = Some((record, index));
        }
        pos = record.end;
    }
    Ok(found)
}
