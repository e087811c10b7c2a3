//! Short replies dotstub writes itself: header, the question when there is
//! one, and an OPT record when the client sent one. Used for FORMERR,
//! NOTIMP, REFUSED, BADVERS, SERVFAIL and for truncated (TC=1) answers.

use super::{
    HEADER_LEN, Header, Query, QueryError, Question, Rcode, Writer, flag,
    opt::{OPT_FIXED_LEN, OPTION_HEADER_LEN, option_code, write_opt},
    writer::Overflow,
};

/// Extended DNS Error info codes dotstub sends (RFC 8914 §4).
pub mod ede {
    /// 0: Other Error, explained by its EXTRA-TEXT (dotstub's own state:
    /// overloaded, shutting down).
    pub const OTHER: u16 = 0;
    /// 6: DNSSEC Bogus. A signature does not verify, or no key signed it.
    pub const DNSSEC_BOGUS: u16 = 6;
    /// 7: Signature Expired.
    pub const SIGNATURE_EXPIRED: u16 = 7;
    /// 8: Signature Not Yet Valid.
    pub const SIGNATURE_NOT_YET_VALID: u16 = 8;
    /// 9: DNSKEY Missing. No DNSKEY matches the DS (or the trust anchor).
    pub const DNSKEY_MISSING: u16 = 9;
    /// 10: RRSIGs Missing. A secure zone sent data without signatures.
    pub const RRSIGS_MISSING: u16 = 10;
    /// 12: NSEC Missing. A denial came without a valid NSEC/NSEC3 proof.
    pub const NSEC_MISSING: u16 = 12;
    /// 22: No Reachable Authority. Every upstream failed or timed out, or
    /// a DS or DNSKEY fetch did.
    pub const NO_REACHABLE_AUTHORITY: u16 = 22;
    /// 23: Network Error.
    pub const NETWORK_ERROR: u16 = 23;
}

/// Longest EXTRA-TEXT dotstub writes; keeps every error reply well under 512.
const MAX_EXTRA_TEXT: usize = 128;

/// The OPT record of a short reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyEdns<'a> {
    /// UDP payload size dotstub advertises.
    pub udp_size: u16,
    /// The client's DO bit, copied (RFC 3225 §3).
    pub dnssec_ok: bool,
    /// An Extended DNS Error: info code and EXTRA-TEXT (RFC 8914).
    pub extended_error: Option<(u16, &'a str)>,
}

/// The parts of a short reply.
pub(super) struct ShortReply<'a> {
    pub id: u16,
    /// The full flags word, low RCODE bits included.
    pub flags: u16,
    pub question: Option<&'a [u8]>,
    pub extended_rcode: u8,
    pub edns: Option<ReplyEdns<'a>>,
}

impl ShortReply<'_> {
    pub(super) fn write(&self, out: &mut [u8]) -> Result<usize, Overflow> {
        let mut w = Writer::new(out);
        w.put_u16(self.id)?;
        w.put_u16(self.flags)?;
        w.put_u16(u16::from(self.question.is_some()))?;
        w.put_u32(0)?;
        w.put_u16(u16::from(self.edns.is_some()))?;
        if let Some(question) = self.question {
            w.put(question)?;
        }
        if let Some(edns) = &self.edns {
            let mut options = [0u8; OPTION_HEADER_LEN + 2 + MAX_EXTRA_TEXT];
            let mut ow = Writer::new(&mut options);
            if let Some((code, text)) = edns.extended_error {
                let text = &text.as_bytes()[..text.len().min(MAX_EXTRA_TEXT)];
                ow.put_u16(option_code::EXTENDED_ERROR)?;
                ow.put_u16(u16::try_from(2 + text.len()).map_err(|_| Overflow)?)?;
                ow.put_u16(code)?;
                ow.put(text)?;
            }
            let options_len = ow.len();
            write_opt(
                &mut w,
                edns.udp_size,
                self.extended_rcode,
                edns.dnssec_ok,
                &options[..options_len],
            )?;
        }
        Ok(w.len())
    }
}

/// Flags of a reply to `header`: QR and RA set, opcode and RD copied, RCODE.
fn reply_flags(header: &Header, rcode: Rcode) -> u16 {
    let copied = header.flags() & (0x7800 | flag::RD);
    flag::QR | flag::RA | copied | rcode.header_bits()
}

/// Writes the reply to a message that failed [`Query::parse`] with `error`,
/// or returns `None` when such a message is dropped. The question is echoed
/// when it can be read, as is the client's EDNS, which BADVERS requires.
pub fn write_refusal(
    packet: &[u8],
    error: QueryError,
    udp_size: u16,
    out: &mut [u8],
) -> Option<usize> {
    let rcode = error.rcode()?;
    let header = Header::parse(packet).ok()?;
    let question = (header.qdcount() == 1)
        .then(|| Question::parse(packet, HEADER_LEN).ok())
        .flatten()
        .map(|q| q.as_bytes());
    let edns = (error == QueryError::BadEdnsVersion).then_some(ReplyEdns {
        udp_size,
        dnssec_ok: false,
        extended_error: None,
    });
    ShortReply {
        id: header.id(),
        flags: reply_flags(&header, rcode),
        question,
        extended_rcode: rcode.extended_bits(),
        edns,
    }
    .write(out)
    .ok()
}

/// Writes a SERVFAIL for `query`, with an Extended DNS Error when the client
/// speaks EDNS.
pub fn write_servfail(
    query: &Query<'_>,
    extended_error: (u16, &str),
    udp_size: u16,
    out: &mut [u8],
) -> Result<usize, Overflow> {
    ShortReply {
        id: query.id(),
        flags: reply_flags(query.header(), Rcode::ServFail),
        question: Some(query.question().as_bytes()),
        extended_rcode: 0,
        edns: query.edns().map(|edns| ReplyEdns {
            udp_size,
            dnssec_ok: edns.dnssec_ok,
            extended_error: Some(extended_error),
        }),
    }
    .write(out)
}

/// The longest reply [`write_refusal`] and [`write_servfail`] can produce.
pub const MAX_SHORT_REPLY: usize =
    HEADER_LEN + 255 + 4 + OPT_FIXED_LEN + OPTION_HEADER_LEN + 2 + MAX_EXTRA_TEXT;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::query::tests::query_bytes;
    use crate::wire::{OptRecord, RecordSpan, Sections};

    fn read_opt(message: &[u8]) -> Option<OptRecord<'_>> {
        let header = Header::parse(message).unwrap();
        let sections = Sections::locate(message, &header).unwrap();
        (header.arcount() == 1).then(|| {
            let span = RecordSpan::parse(message, sections.additional).unwrap();
            OptRecord::from_span(message, &span).unwrap()
        })
    }

    #[test]
    fn formerr_echoes_id_and_readable_question() {
        let mut packet = query_bytes(b"\x03www\x00", 1, None);
        packet[11] = 3; // three additional records that are not there
        let mut out = [0u8; MAX_SHORT_REPLY];
        let len = write_refusal(&packet, QueryError::Malformed, 1232, &mut out).unwrap();
        let header = Header::parse(&out[..len]).unwrap();
        assert_eq!(header.id(), 0xabcd);
        assert_eq!(header.rcode(), 1);
        assert!(header.has(flag::QR) && header.has(flag::RD));
        assert_eq!(header.qdcount(), 1);
        assert_eq!(&out[12..len], b"\x03www\x00\x00\x01\x00\x01");
    }

    #[test]
    fn dropped_errors_write_nothing() {
        let mut out = [0u8; MAX_SHORT_REPLY];
        assert_eq!(
            write_refusal(&[0; 5], QueryError::TooShort, 1232, &mut out),
            None
        );
    }

    #[test]
    fn badvers_carries_opt_with_extended_rcode() {
        let packet = query_bytes(b"\x00", 1, Some((1232, b"")));
        let mut out = [0u8; MAX_SHORT_REPLY];
        let len = write_refusal(&packet, QueryError::BadEdnsVersion, 1232, &mut out).unwrap();
        let opt = read_opt(&out[..len]).expect("BADVERS needs an OPT record");
        assert_eq!((opt.extended_rcode, opt.version), (1, 0));
        assert_eq!(Header::parse(&out).unwrap().rcode(), 0);
    }

    #[test]
    fn servfail_names_the_failure_for_edns_clients() {
        let packet = query_bytes(b"\x01a\x00", 1, Some((4096, b"")));
        let query = Query::parse(&packet).unwrap();
        let mut out = [0u8; MAX_SHORT_REPLY];
        let len = write_servfail(
            &query,
            (ede::NO_REACHABLE_AUTHORITY, "all down"),
            1232,
            &mut out,
        )
        .unwrap();
        assert_eq!(Header::parse(&out).unwrap().rcode(), 2);
        let opt = read_opt(&out[..len]).unwrap();
        assert!(opt.dnssec_ok, "DO is copied from the query");
        assert_eq!(opt.udp_size, 1232);
        let ede = opt.option(option_code::EXTENDED_ERROR).unwrap();
        assert_eq!(ede, b"\x00\x16all down");
    }
}
