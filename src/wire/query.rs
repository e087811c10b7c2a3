//! A client's query, read without allocating: header, the one question,
//! and the EDNS parameters that shape the answer (RFC 1035 §4.1.2,
//! RFC 6891 §6.1).

use super::{
    HEADER_LEN, Header, Rcode, Sections, WireError, find_opt, flag,
    name::uncompressed_name_len,
    opt::{OptRecord, option_code},
    read_u16, rtype,
};

/// The question section of a query: a borrowed, checked, uncompressed name
/// followed by QTYPE and QCLASS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Question<'a> {
    raw: &'a [u8],
}

impl<'a> Question<'a> {
    /// Reads the question at `pos`, which must not be compressed.
    pub fn parse(packet: &'a [u8], pos: usize) -> Result<Self, WireError> {
        let name_len = uncompressed_name_len(packet, pos)?;
        let raw = packet
            .get(pos..pos + name_len + 4)
            .ok_or(WireError::Short)?;
        Ok(Self { raw })
    }

    /// The question section for `name` (wire form, uncompressed), `qtype`
    /// and class IN, for questions dotstub asks itself. Check it with
    /// [`Question::parse`].
    pub fn section(name: &[u8], qtype: u16) -> Vec<u8> {
        let mut section = Vec::with_capacity(name.len() + 4);
        section.extend_from_slice(name);
        section.extend_from_slice(&qtype.to_be_bytes());
        section.extend_from_slice(&1u16.to_be_bytes()); // class IN
        section
    }

    /// The name in wire form, in the client's spelling.
    pub fn name(&self) -> &'a [u8] {
        &self.raw[..self.raw.len() - 4]
    }

    /// QTYPE.
    pub fn qtype(&self) -> u16 {
        read_u16(self.raw, self.raw.len() - 4).unwrap_or_default()
    }

    /// QCLASS.
    pub fn qclass(&self) -> u16 {
        read_u16(self.raw, self.raw.len() - 2).unwrap_or_default()
    }

    /// Name, type and class as they appear on the wire.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether `other` asks the same thing: names compared without regard
    /// to ASCII case (RFC 4343), type and class exactly. Length octets are
    /// at most 63, below every letter, so a case-insensitive compare of the
    /// whole wire name is exact.
    pub fn matches(&self, other: &Question<'_>) -> bool {
        self.name().eq_ignore_ascii_case(other.name())
            && self.type_and_class() == other.type_and_class()
    }

    fn type_and_class(&self) -> &'a [u8] {
        &self.raw[self.raw.len() - 4..]
    }
}

/// The EDNS parameters of a client's query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientEdns {
    /// The client's UDP payload size, never taken below 512 (RFC 6891 §6.2.3).
    pub udp_size: u16,
    /// Whether the client set DO (RFC 3225).
    pub dnssec_ok: bool,
    /// Whether the client sent an EDNS Client Subnet option, which dotstub
    /// never forwards (RFC 7871 §7.1.2 lets a forwarder drop it).
    pub client_subnet: bool,
}

/// Why a client's message is not a query dotstub forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    /// Shorter than a header: nothing to answer to. Dropped.
    TooShort,
    /// QR is set: a response, never answered, so dotstub cannot be made to
    /// loop with another server. Dropped.
    NotAQuery,
    /// Bad question section, counts or OPT record: FORMERR.
    Malformed,
    /// An opcode other than QUERY: NOTIMP.
    UnsupportedOpcode,
    /// EDNS version other than 0: BADVERS (RFC 6891 §6.1.3).
    BadEdnsVersion,
    /// AXFR or IXFR, which a stub does not serve: REFUSED.
    ZoneTransfer,
}

impl QueryError {
    /// The response code to answer with, or `None` when the message is dropped.
    pub fn rcode(self) -> Option<Rcode> {
        match self {
            Self::TooShort | Self::NotAQuery => None,
            Self::Malformed => Some(Rcode::FormErr),
            Self::UnsupportedOpcode => Some(Rcode::NotImp),
            Self::BadEdnsVersion => Some(Rcode::BadVers),
            Self::ZoneTransfer => Some(Rcode::Refused),
        }
    }
}

impl From<WireError> for QueryError {
    fn from(_: WireError) -> Self {
        Self::Malformed
    }
}

/// A client's query, checked once, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    header: Header,
    question: Question<'a>,
    edns: Option<ClientEdns>,
}

impl<'a> Query<'a> {
    /// Reads and checks a client's query.
    pub fn parse(packet: &'a [u8]) -> Result<Self, QueryError> {
        let header = Header::parse(packet).map_err(|_| QueryError::TooShort)?;
        if header.has(flag::QR) {
            return Err(QueryError::NotAQuery);
        }
        if header.opcode() != 0 {
            return Err(QueryError::UnsupportedOpcode);
        }
        if header.qdcount() != 1 {
            return Err(QueryError::Malformed);
        }
        let question = Question::parse(packet, HEADER_LEN)?;
        let sections = Sections::locate(packet, &header)?;
        let edns = match find_opt(packet, sections.additional, header.arcount())? {
            Some((span, _)) => Some(read_client_edns(&OptRecord::from_span(packet, &span)?)?),
            None => None,
        };
        match question.qtype() {
            rtype::OPT => Err(QueryError::Malformed),
            rtype::AXFR | rtype::IXFR => Err(QueryError::ZoneTransfer),
            _ => Ok(Self {
                header,
                question,
                edns,
            }),
        }
    }

    /// The query's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The client's message ID.
    pub fn id(&self) -> u16 {
        self.header.id()
    }

    /// The question.
    pub fn question(&self) -> &Question<'a> {
        &self.question
    }

    /// The client's EDNS parameters, when it sent an OPT record.
    pub fn edns(&self) -> Option<&ClientEdns> {
        self.edns.as_ref()
    }

    /// Whether the client asked for DNSSEC records (DO=1).
    pub fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|edns| edns.dnssec_ok)
    }

    /// Whether the client set CD (RFC 4035 §3.2.2).
    pub fn checking_disabled(&self) -> bool {
        self.header.has(flag::CD)
    }
}

fn read_client_edns(opt: &OptRecord<'_>) -> Result<ClientEdns, QueryError> {
    if opt.version != 0 {
        return Err(QueryError::BadEdnsVersion);
    }
    Ok(ClientEdns {
        udp_size: opt.udp_size.max(512),
        dnssec_ok: opt.dnssec_ok,
        client_subnet: opt.option(option_code::CLIENT_SUBNET).is_some(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A query for `name` (wire form) and `qtype`, with an optional OPT
    /// record whose RDATA is `options`.
    pub(crate) fn query_bytes(name: &[u8], qtype: u16, opt: Option<(u16, &[u8])>) -> Vec<u8> {
        let mut packet = vec![
            0xab,
            0xcd,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(opt.is_some()),
        ];
        packet.extend_from_slice(name);
        packet.extend_from_slice(&qtype.to_be_bytes());
        packet.extend_from_slice(&[0, 1]);
        if let Some((udp_size, options)) = opt {
            packet.extend_from_slice(&[0, 0, 41]);
            packet.extend_from_slice(&udp_size.to_be_bytes());
            packet.extend_from_slice(&[0, 0, 0x80, 0]);
            packet.extend_from_slice(&(options.len() as u16).to_be_bytes());
            packet.extend_from_slice(options);
        }
        packet
    }

    #[test]
    fn reads_question_and_edns() {
        let ecs = b"\x00\x08\x00\x07\x00\x01\x18\x00\xc0\x00\x02";
        let packet = query_bytes(b"\x03www\x07Example\x00", 28, Some((100, ecs)));
        let query = Query::parse(&packet).unwrap();
        assert_eq!(query.id(), 0xabcd);
        assert_eq!(query.question().name(), b"\x03www\x07Example\x00");
        assert_eq!(
            (query.question().qtype(), query.question().qclass()),
            (28, 1)
        );
        let edns = query.edns().unwrap();
        assert_eq!(edns.udp_size, 512, "sizes below 512 count as 512");
        assert!(edns.dnssec_ok && edns.client_subnet);
    }

    #[test]
    fn question_match_ignores_case_only() {
        let a = query_bytes(b"\x03WwW\x00", 1, None);
        let b = query_bytes(b"\x03www\x00", 1, None);
        let c = query_bytes(b"\x03www\x00", 28, None);
        let qa = *Query::parse(&a).unwrap().question();
        assert!(qa.matches(Query::parse(&b).unwrap().question()));
        assert!(!qa.matches(Query::parse(&c).unwrap().question()));
        // 65 (HTTPS) and 97 differ only in ASCII case when read as letters.
        let https = query_bytes(b"\x03www\x00", 65, None);
        let other = query_bytes(b"\x03www\x00", 97, None);
        let https = *Query::parse(&https).unwrap().question();
        assert!(!https.matches(Query::parse(&other).unwrap().question()));
    }

    #[test]
    fn classifies_bad_queries() {
        assert_eq!(Query::parse(&[0; 11]), Err(QueryError::TooShort));
        let mut response = query_bytes(b"\x00", 1, None);
        response[2] |= 0x80;
        assert_eq!(Query::parse(&response), Err(QueryError::NotAQuery));
        let mut notify = query_bytes(b"\x00", 6, None);
        notify[2] |= 4 << 3;
        assert_eq!(Query::parse(&notify), Err(QueryError::UnsupportedOpcode));
        let mut two_questions = query_bytes(b"\x00", 1, None);
        two_questions[5] = 2;
        assert_eq!(Query::parse(&two_questions), Err(QueryError::Malformed));
        let truncated = query_bytes(b"\x05ab\x00", 1, None);
        assert_eq!(Query::parse(&truncated[..15]), Err(QueryError::Malformed));
        assert_eq!(
            Query::parse(&query_bytes(b"\x00", 252, None)),
            Err(QueryError::ZoneTransfer)
        );
        assert_eq!(
            Query::parse(&query_bytes(b"\x00", 41, None)),
            Err(QueryError::Malformed)
        );
    }

    #[test]
    fn edns_version_and_duplicate_opt() {
        let mut v1 = query_bytes(b"\x00", 1, Some((1232, b"")));
        let version_at = v1.len() - 5;
        v1[version_at] = 1;
        assert_eq!(Query::parse(&v1), Err(QueryError::BadEdnsVersion));
        let mut twice = query_bytes(b"\x00", 1, Some((1232, b"")));
        let opt = twice[17..].to_vec();
        twice.extend_from_slice(&opt);
        twice[11] = 2;
        assert_eq!(Query::parse(&twice), Err(QueryError::Malformed));
    }

    #[test]
    fn error_rcodes() {
        assert_eq!(QueryError::TooShort.rcode(), None);
        assert_eq!(QueryError::Malformed.rcode(), Some(Rcode::FormErr));
        assert_eq!(QueryError::UnsupportedOpcode.rcode(), Some(Rcode::NotImp));
        assert_eq!(QueryError::ZoneTransfer.rcode(), Some(Rcode::Refused));
    }
}
