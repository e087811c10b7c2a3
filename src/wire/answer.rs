//! An upstream's answer, kept in wire form without its OPT record, and
//! written out for each client that asked: that client's ID, RD bit and
//! spelling of the name, its own OPT record, and TC=1 when it does not fit.

use super::{
    HEADER_LEN, Header, HeaderMut, OptRecord, Query, Question, Rcode, RecordSpan, Records, Section,
    Sections, UPSTREAM_UDP_SIZE, WireError, Writer, find_opt, flag,
    opt::{OPT_FIXED_LEN, option_code, write_opt},
    read_ttl,
    reply::{MAX_SHORT_REPLY, ReplyEdns, ShortReply},
    skip_records, write_ttl,
    writer::{Overflow, ensure_len},
};

/// How the answer travels to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain UDP: the answer must fit the client's payload size, capped by
    /// dotstub's own maximum.
    Udp,
    /// Plain TCP: any size up to 65,535 octets.
    Tcp,
}

/// What [`Answer::write_for_client`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Length of the reply.
    pub len: usize,
    /// Whether the whole stored message was copied, at the same offsets:
    /// false for a truncated (TC=1) or substituted reply.
    pub whole: bool,
}

/// Facts about the upstream's OPT record that belong to the connection,
/// not to the answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamEdns {
    /// The server's edns-tcp-keepalive TIMEOUT in units of 100 ms (RFC 7828).
    pub keepalive: Option<u16>,
    /// Whether the response carried a Padding option (RFC 7830).
    pub padded: bool,
    /// The UDP payload size the server advertised in its OPT record
    /// (RFC 6891 §6.2.3); `None` when the response had no OPT record.
    pub udp_size: Option<u16>,
}

/// An answer from upstream, ready to be written for any client that asked
/// the same question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response without its OPT record; ARCOUNT adjusted. The ID and the
    /// spelling of the question are patched per client.
    message: Box<[u8]>,
    /// Length of the question section (name, type, class).
    question_len: usize,
    /// The 12-bit RCODE (header bits plus the OPT's extended bits).
    rcode: u16,
    /// Options passed on to EDNS clients: only Extended DNS Errors.
    options: Box<[u8]>,
}

impl Answer {
    /// Reads an upstream response to `asked`. Fails when it is not a
    /// response, asks another question, or is malformed; the caller treats
    /// that as a protocol error of the upstream.
    pub fn from_upstream(
        response: &[u8],
        asked: &Question<'_>,
    ) -> Result<(Self, UpstreamEdns), WireError> {
        let header = Header::parse(response)?;
        if !header.has(flag::QR) || header.qdcount() != 1 {
            return Err(WireError::Malformed);
        }
        let question = Question::parse(response, HEADER_LEN)?;
        if !question.matches(asked) {
            return Err(WireError::Malformed);
        }
        let sections = Sections::locate(response, &header)?;
        let Some((span, before)) = find_opt(response, sections.additional, header.arcount())?
        else {
            // Octets after the last record are not the answer's: kept, a
            // client's OPT record would be written after them.
            let end = skip_records(response, sections.additional, header.arcount())?;
            let answer = Self::new(&response[..end], &question, u16::from(header.rcode()), &[]);
            return Ok((answer, UpstreamEdns::default()));
        };
        let opt = OptRecord::from_span(response, &span)?;
        // Records after the OPT are additional data a client can do without;
        // cutting at the OPT keeps every compression pointer valid.
        let mut message = response[..span.start].to_vec();
        HeaderMut::new(&mut message)?.set_arcount(before);
        let rcode = u16::from(opt.extended_rcode) << 4 | u16::from(header.rcode());
        let mut forwarded = Vec::new();
        let mut edns = UpstreamEdns {
            udp_size: Some(opt.udp_size),
            ..UpstreamEdns::default()
        };
        for (code, data) in opt.options() {
            match code {
                option_code::EXTENDED_ERROR => {
                    let mut option = [0u8; 4];
                    option[..2].copy_from_slice(&code.to_be_bytes());
                    option[2..].copy_from_slice(&(data.len() as u16).to_be_bytes());
                    forwarded.extend_from_slice(&option);
                    forwarded.extend_from_slice(data);
                }
                option_code::TCP_KEEPALIVE => {
                    edns.keepalive = data.first_chunk::<2>().map(|t| u16::from_be_bytes(*t));
                }
                option_code::PADDING => edns.padded = true,
                _ => {}
            }
        }
        let answer = Self::new(&message, &question, rcode, &forwarded);
        Ok((answer, edns))
    }

    /// A SERVFAIL dotstub decided on itself for `question`, with an
    /// Extended DNS Error (code, EXTRA-TEXT) for EDNS clients.
    pub fn servfail(
        question: &Question<'_>,
        extended_error: (u16, &str),
    ) -> Result<Self, WireError> {
        let mut bytes = [0; MAX_SHORT_REPLY];
        let reply = ShortReply {
            id: 0,
            flags: flag::QR | flag::RA | Rcode::ServFail.header_bits(),
            question: Some(question.as_bytes()),
            extended_rcode: 0,
            edns: Some(ReplyEdns {
                udp_size: UPSTREAM_UDP_SIZE,
                dnssec_ok: false,
                extended_error: Some(extended_error),
            }),
        };
        let len = reply.write(&mut bytes).map_err(|_| WireError::Malformed)?;
        let written = bytes.get(..len).ok_or(WireError::Short)?;
        Ok(Self::from_upstream(written, question)?.0)
    }

    /// This answer with its message replaced by `message` (the same
    /// question, records rewritten), RCODE and options kept.
    pub fn with_message(&self, message: &[u8]) -> Result<Self, WireError> {
        let question = Question::parse(message, HEADER_LEN)?;
        Ok(Self::new(message, &question, self.rcode, &self.options))
    }

    /// Sets or clears the AD bit (RFC 4035 §3.2.3) in the stored header.
    pub fn set_authentic(&mut self, authentic: bool) -> Result<(), WireError> {
        let flags = Header::parse(&self.message)?.flags() & !flag::AD;
        let ad = if authentic { flag::AD } else { 0 };
        HeaderMut::new(&mut self.message)?.set_flags(flags | ad);
        Ok(())
    }

    fn new(message: &[u8], question: &Question<'_>, rcode: u16, options: &[u8]) -> Self {
        Self {
            message: message.into(),
            question_len: question.as_bytes().len(),
            rcode,
            options: options.into(),
        }
    }

    /// The full 12-bit response code.
    pub fn rcode(&self) -> u16 {
        self.rcode
    }

    /// Whether the upstream set TC: such an answer is incomplete.
    pub fn is_truncated(&self) -> bool {
        Header::parse(&self.message).is_ok_and(|header| header.has(flag::TC))
    }

    /// Octets of Extended DNS Error options passed on to clients.
    pub fn options_len(&self) -> usize {
        self.options.len()
    }

    /// Sets each record's TTL to what `ttl` returns for it, in place;
    /// `ttl` sees the section, the record and its current TTL.
    pub fn rewrite_ttls(
        &mut self,
        mut ttl: impl FnMut(Section, &RecordSpan, u32) -> u32,
    ) -> Result<(), WireError> {
        let spans: Vec<(Section, RecordSpan)> =
            Records::new(&self.message)?.collect::<Result<_, _>>()?;
        for (section, span) in spans {
            let offset = span.ttl_offset();
            let current = read_ttl(&self.message, offset).ok_or(WireError::Short)?;
            write_ttl(&mut self.message, offset, ttl(section, &span, current));
        }
        Ok(())
    }

    /// The stored message: the upstream's response without its OPT record.
    pub fn as_bytes(&self) -> &[u8] {
        &self.message
    }

    /// The answer as parts to write from.
    pub fn parts(&self) -> AnswerParts<'_> {
        let (header, rest) = self.message.split_at(HEADER_LEN.min(self.message.len()));
        AnswerParts {
            header: header.try_into().unwrap_or(&[0; HEADER_LEN]),
            question_len: self.question_len,
            records: rest.get(self.question_len..).unwrap_or_default(),
            rcode: self.rcode,
            options: &self.options,
        }
    }

    /// Writes this answer for `to`; see [`AnswerParts::write_for_client`].
    pub fn write_for_client(
        &self,
        to: &Recipient<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Written, Overflow> {
        self.parts().write_for_client(to, out)
    }
}

/// Whom a reply is written for: the client's query, the transport it came
/// over, and dotstub's own UDP payload limit.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'q> {
    /// The client's query: its ID, RD bit, spelling of the name, EDNS.
    pub query: &'q Query<'q>,
    /// UDP or TCP.
    pub transport: Transport,
    /// dotstub's UDP payload limit, advertised in the reply and used to
    /// cap what a UDP client may ask.
    pub udp_size: u16,
}

//---- AnswerParts ----

/// An answer as the parts a reply is written from, borrowed from an
/// [`Answer`] or from a cache entry. The question is not among them: the
/// reply carries the client's own, which has the same length, so every
/// compression pointer in the records stays valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerParts<'a> {
    /// The upstream's header (counts included).
    pub header: &'a [u8; HEADER_LEN],
    /// Length of the question section that sits between header and records.
    pub question_len: usize,
    /// Everything after the question: answer, authority and additional
    /// records, without OPT.
    pub records: &'a [u8],
    /// The 12-bit RCODE.
    pub rcode: u16,
    /// Extended DNS Error options passed on to EDNS clients.
    pub options: &'a [u8],
}

impl AnswerParts<'_> {
    /// Length of the message the parts make, question included.
    pub fn message_len(&self) -> usize {
        HEADER_LEN + self.question_len + self.records.len()
    }

    /// The longest reply [`AnswerParts::write_for_client`] can write.
    fn max_client_len(&self) -> usize {
        (self.message_len() + OPT_FIXED_LEN + self.options.len()).max(super::reply::MAX_SHORT_REPLY)
    }

    /// The longest reply it can write for `to`: over UDP, no more than
    /// dotstub's UDP limit (or a short truncated reply).
    fn reply_len_bound(&self, to: &Recipient<'_>) -> usize {
        match to.transport {
            Transport::Tcp => self.max_client_len(),
            Transport::Udp => self.max_client_len().min(udp_reply_bound(to.udp_size)),
        }
    }

    /// Writes the answer for `to` into `out`, grown first to the longest
    /// reply it can be (never shrunk, so a reused buffer costs nothing):
    /// the client's ID, its RD bit and spelling of the name, its own OPT
    /// record, TC=1 when it does not fit.
    pub fn write_for_client(
        &self,
        to: &Recipient<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Written, Overflow> {
        ensure_len(out, self.reply_len_bound(to));
        let out = out.as_mut_slice();
        let Recipient {
            query,
            transport,
            udp_size,
        } = *to;
        let client_edns = query.edns();
        let extended_rcode = (self.rcode >> 4) as u8;
        if client_edns.is_none() && extended_rcode != 0 {
            // An extended RCODE cannot be said without OPT (RFC 6891 §6.1.3).
            let len = super::reply::write_servfail(query, (0, ""), udp_size, out)?;
            return Ok(Written { len, whole: false });
        }
        let limit = match transport {
            Transport::Tcp => super::MAX_MESSAGE_LEN,
            Transport::Udp => {
                usize::from(client_edns.map_or(512, |e| e.udp_size.min(udp_size).max(512)))
            }
        };
        let opt_len = client_edns.map_or(0, |_| OPT_FIXED_LEN + self.options.len());
        let edns = client_edns.map(|e| ReplyEdns {
            udp_size,
            dnssec_ok: e.dnssec_ok,
            extended_error: None,
        });
        let header = Header::parse(self.header).map_err(|_| Overflow)?;
        if self.message_len() + opt_len > limit {
            let len = self.write_truncated(&header, query, edns, out)?;
            return Ok(Written { len, whole: false });
        }
        let mut w = Writer::new(out);
        w.put(self.header)?;
        w.put(query.question().as_bytes())?;
        w.put(self.records)?;
        if let Some(edns) = edns {
            write_opt(
                &mut w,
                edns.udp_size,
                extended_rcode,
                edns.dnssec_ok,
                self.options,
            )?;
        }
        let arcount = header.arcount() + u16::from(edns.is_some());
        HeaderMut::new(w.written_mut())
            .map_err(|_| Overflow)?
            .set_id(query.id())
            .set_flags(client_flags(&header, query))
            .set_arcount(arcount);
        Ok(Written {
            len: w.len(),
            whole: true,
        })
    }

    /// The header and question alone, TC=1, so the client retries over TCP
    /// (RFC 1035 §4.2.1, RFC 7766 §5).
    fn write_truncated(
        &self,
        header: &Header,
        query: &Query<'_>,
        edns: Option<ReplyEdns<'_>>,
        out: &mut [u8],
    ) -> Result<usize, Overflow> {
        ShortReply {
            id: query.id(),
            flags: client_flags(header, query) | flag::TC,
            question: Some(query.question().as_bytes()),
            extended_rcode: (self.rcode >> 4) as u8,
            edns,
        }
        .write(out)
    }
}

/// The longest UDP reply dotstub writes when its UDP limit is `udp_size`:
/// an answer that fits, or a short truncated one.
pub fn udp_reply_bound(udp_size: u16) -> usize {
    usize::from(udp_size).max(super::reply::MAX_SHORT_REPLY)
}

/// The upstream's flags as this client should see them: its own RD and CD back,
/// RA set, AA cleared (dotstub is not the authority), and AD only for a
/// client that set DO or AD (RFC 6840 §5.8).
fn client_flags(upstream: &Header, query: &Query<'_>) -> u16 {
    let client = query.header();
    let wants_ad = query.dnssec_ok() || client.has(flag::AD);
    // RD and CD are the client's own (RFC 4035 §3.2.2): dotstub may have
    // asked upstream with CD=1 to validate itself.
    let mut flags = upstream.flags() & !(flag::RD | flag::CD | flag::AA | flag::AD);
    flags |= flag::RA | (client.flags() & (flag::RD | flag::CD));
    if wants_ad && upstream.has(flag::AD) {
        flags |= flag::AD;
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::query::tests::query_bytes;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
    use hickory_proto::rr::rdata::opt::EdnsOption;
    use hickory_proto::rr::rdata::{A, TXT};
    use hickory_proto::rr::{Name, RData, Record};

    const NAME: &[u8] = b"\x03www\x07example\x00";

    /// An upstream response to NAME/A with `answers` A records and, when
    /// `options` is given, an OPT record carrying them.
    fn upstream(answers: usize, txt_len: usize, options: Option<Vec<EdnsOption>>) -> Vec<u8> {
        let mut message = Message::new(0x1111, MessageType::Response, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.metadata.authoritative = true;
        let name = Name::from_ascii("WWW.example.").unwrap();
        message.add_query(hickory_proto::op::Query::query(name.clone(), 1.into()));
        for i in 0..answers {
            message.add_answer(Record::from_rdata(
                name.clone(),
                300,
                RData::A(A::new(192, 0, 2, i as u8)),
            ));
        }
        if txt_len > 0 {
            let txt = TXT::new(vec!["x".repeat(200); txt_len / 200]);
            message.add_additional(Record::from_rdata(name.clone(), 300, RData::TXT(txt)));
        }
        if let Some(options) = options {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            for option in options {
                edns.options_mut().insert(option);
            }
            message.set_edns(edns);
        }
        message.to_vec().unwrap()
    }

    fn asked() -> Vec<u8> {
        let mut raw = NAME.to_vec();
        raw.extend_from_slice(&[0, 1, 0, 1]);
        raw
    }

    fn write(answer: &Answer, client: &[u8], transport: Transport) -> Message {
        let query = Query::parse(client).unwrap();
        let mut out = vec![0u8; 65_535];
        let to = Recipient {
            query: &query,
            transport,
            udp_size: 1232,
        };
        let written = answer.write_for_client(&to, &mut out).unwrap();
        let reply = Message::from_vec(&out[..written.len]).unwrap();
        let substituted =
            reply.metadata.truncation || reply.metadata.response_code == ResponseCode::ServFail;
        assert_eq!(written.whole, !substituted);
        reply
    }

    #[test]
    fn strips_padding_and_keepalive_keeps_ede() {
        let options = vec![
            EdnsOption::Unknown(option_code::TCP_KEEPALIVE, vec![0, 50]),
            EdnsOption::Unknown(option_code::EXTENDED_ERROR, vec![0, 3]),
            EdnsOption::Unknown(option_code::PADDING, vec![0; 40]),
        ];
        let response = upstream(2, 0, Some(options));
        let raw = asked();
        let (answer, edns) =
            Answer::from_upstream(&response, &Question::parse(&raw, 0).unwrap()).unwrap();
        assert_eq!(
            edns,
            UpstreamEdns {
                keepalive: Some(50),
                padded: true,
                udp_size: Some(1232),
            }
        );
        let client = query_bytes(NAME, 1, Some((1232, b"")));
        let reply = write(&answer, &client, Transport::Udp);
        let opt = reply.edns.as_ref().expect("EDNS client gets OPT");
        assert!(
            opt.option(hickory_proto::rr::rdata::opt::EdnsCode::Padding)
                .is_none()
        );
        assert!(
            opt.option(hickory_proto::rr::rdata::opt::EdnsCode::Keepalive)
                .is_none()
        );
        assert!(opt.option(option_code::EXTENDED_ERROR.into()).is_some());
        assert_eq!(reply.answers.len(), 2);
    }

    #[test]
    fn octets_after_the_last_record_are_not_kept() {
        // Fuzzing finding F1: kept, they sat between the records and the
        // OPT record written for an EDNS client, which read them as its OPT.
        let mut response = upstream(1, 0, None);
        response.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let raw = asked();
        let (answer, _) =
            Answer::from_upstream(&response, &Question::parse(&raw, 0).unwrap()).unwrap();
        let client = query_bytes(NAME, 1, Some((1232, b"")));
        let reply = write(&answer, &client, Transport::Udp);
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.edns.as_ref().map(Edns::max_payload), Some(1232));
    }

    #[test]
    fn an_opt_record_outside_the_additional_section_is_malformed() {
        // Fuzzing finding F2: kept, it reached EDNS clients as a second OPT.
        let mut message = Message::from_vec(&upstream(1, 0, None)).unwrap();
        let mut opt = Record::from_rdata(
            Name::root(),
            0,
            RData::OPT(hickory_proto::rr::rdata::OPT::default()),
        );
        opt.dns_class = hickory_proto::rr::DNSClass::for_opt(1232);
        message.add_authority(opt);
        let response = message.to_vec().unwrap();
        let raw = asked();
        let asked = Question::parse(&raw, 0).unwrap();
        assert_eq!(
            Answer::from_upstream(&response, &asked).err(),
            Some(WireError::Malformed)
        );
    }

    #[test]
    fn patches_id_rd_case_and_clears_aa() {
        let response = upstream(1, 0, None);
        let raw = asked();
        let (answer, _) =
            Answer::from_upstream(&response, &Question::parse(&raw, 0).unwrap()).unwrap();
        let mut client = query_bytes(NAME, 1, None);
        client[2] &= !0x01; // RD=0
        let reply = write(&answer, &client, Transport::Udp);
        assert_eq!(reply.metadata.id, 0xabcd);
        assert!(!reply.metadata.recursion_desired && !reply.metadata.authoritative);
        assert!(reply.metadata.recursion_available);
        assert_eq!(reply.queries[0].name().to_string(), "www.example.");
        assert!(reply.edns.is_none(), "no OPT for a client that sent none");
    }

    #[test]
    fn ad_only_for_clients_that_asked_for_it() {
        let mut message = Message::from_vec(&upstream(1, 0, Some(vec![]))).unwrap();
        message.metadata.authentic_data = true;
        let response = message.to_vec().unwrap();
        let raw = asked();
        let (answer, _) =
            Answer::from_upstream(&response, &Question::parse(&raw, 0).unwrap()).unwrap();
        let plain = write(&answer, &query_bytes(NAME, 1, None), Transport::Udp);
        assert!(!plain.metadata.authentic_data);
        let with_do = write(
            &answer,
            &query_bytes(NAME, 1, Some((1232, b""))),
            Transport::Udp,
        );
        assert!(with_do.metadata.authentic_data, "query_bytes sets DO");
        let mut with_ad = query_bytes(NAME, 1, None);
        with_ad[3] |= 0x20;
        assert!(
            write(&answer, &with_ad, Transport::Udp)
                .metadata
                .authentic_data
        );
    }

    #[test]
    fn too_big_for_udp_is_truncated_but_whole_over_tcp() {
        let response = upstream(1, 1000, Some(vec![]));
        let raw = asked();
        let (answer, _) =
            Answer::from_upstream(&response, &Question::parse(&raw, 0).unwrap()).unwrap();
        let plain = query_bytes(NAME, 1, None);
        let small = write(&answer, &plain, Transport::Udp);
        assert!(small.metadata.truncation);
        assert!(small.answers.is_empty() && small.additionals.is_empty());
        assert_eq!(small.queries.len(), 1);
        let edns_client = query_bytes(NAME, 1, Some((4096, b"")));
        let fits = write(&answer, &edns_client, Transport::Udp);
        assert!(!fits.metadata.truncation);
        assert_eq!(fits.additionals.len(), 1);
        let whole = write(&answer, &plain, Transport::Tcp);
        assert!(!whole.metadata.truncation);
        assert_eq!(whole.answers.len(), 1);
    }

    #[test]
    fn refuses_answers_to_other_questions() {
        let response = upstream(1, 0, None);
        let other = b"\x03www\x07example\x00\x00\x1c\x00\x01";
        let err = Answer::from_upstream(&response, &Question::parse(other, 0).unwrap());
        assert_eq!(err.unwrap_err(), WireError::Malformed);
        let mut query = response.clone();
        query[2] &= 0x7f;
        let raw = asked();
        assert!(Answer::from_upstream(&query, &Question::parse(&raw, 0).unwrap()).is_err());
    }

    #[test]
    fn extended_rcode_without_client_opt_becomes_servfail() {
        let mut message = Message::from_vec(&upstream(0, 0, Some(vec![]))).unwrap();
        message.metadata.response_code = ResponseCode::BADCOOKIE;
        let mut edns = message.edns.take().unwrap();
        edns.set_rcode_high(ResponseCode::BADCOOKIE.high());
        message.set_edns(edns);
        let response = message.to_vec().unwrap();
        let raw = asked();
        let (answer, _) =
            Answer::from_upstream(&response, &Question::parse(&raw, 0).unwrap()).unwrap();
        assert_eq!(answer.rcode(), 23);
        let reply = write(&answer, &query_bytes(NAME, 1, None), Transport::Udp);
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    }
}
