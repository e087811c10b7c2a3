//! The records of a message and their TTLs (RFC 1035 §4.1.3, RFC 2181 §8):
//! walking them without allocating, and reading or rewriting a TTL in place.

use super::{HEADER_LEN, Header, RecordSpan, WireError, read_u32, rtype, skip_name};

/// The section a record is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Answer.
    Answer,
    /// Authority.
    Authority,
    /// Additional.
    Additional,
}

/// Every resource record after the question section, in order.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    message: &'a [u8],
    pos: usize,
    /// Records left in the answer, authority and additional sections.
    left: [u16; 3],
}

impl<'a> Records<'a> {
    /// Starts after the question section of `message`.
    pub fn new(message: &'a [u8]) -> Result<Self, WireError> {
        let header = Header::parse(message)?;
        let mut pos = HEADER_LEN;
        for _ in 0..header.qdcount() {
            pos = skip_name(message, pos)? + 4;
        }
        if pos > message.len() {
            return Err(WireError::Short);
        }
        let left = [header.ancount(), header.nscount(), header.arcount()];
        Ok(Self { message, pos, left })
    }
}

impl Iterator for Records<'_> {
    type Item = Result<(Section, RecordSpan), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let index = self.left.iter().position(|&left| left > 0)?;
        self.left[index] -= 1;
        let section = [Section::Answer, Section::Authority, Section::Additional][index];
        match RecordSpan::parse(self.message, self.pos) {
            Ok(span) => {
                self.pos = span.end;
                Some(Ok((section, span)))
            }
            Err(error) => {
                self.left = [0; 3];
                Some(Err(error))
            }
        }
    }
}

impl RecordSpan {
    /// Offset of the TTL field.
    pub fn ttl_offset(&self) -> usize {
        self.fields + 4
    }

    /// Whether TTL decrements apply: every record but OPT, whose TTL field
    /// holds flags (RFC 6891 §6.1.3).
    pub fn has_ttl(&self) -> bool {
        self.rtype != rtype::OPT
    }

    /// The SOA MINIMUM field, the last 32 bits of SOA RDATA (RFC 1035
    /// §3.3.13), which bounds the negative TTL (RFC 2308 §5).
    pub fn soa_minimum(&self, message: &[u8]) -> Option<u32> {
        if self.rtype != rtype::SOA || self.end - self.rdata_start < 22 {
            return None;
        }
        read_u32(message, self.end - 4).ok()
    }
}

/// Reads the TTL at `offset`.
pub fn read_ttl(message: &[u8], offset: usize) -> Option<u32> {
    read_u32(message, offset).ok()
}

/// Writes `ttl` at `offset`; out-of-bounds offsets are ignored.
pub fn write_ttl(message: &mut [u8], offset: usize, ttl: u32) {
    if let Some(field) = message.get_mut(offset..offset + 4) {
        field.copy_from_slice(&ttl.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn message() -> Vec<u8> {
        let name = Name::from_ascii("a.test.").unwrap();
        let mut message = Message::new(1, MessageType::Response, OpCode::Query);
        message.add_query(Query::query(name.clone(), RecordType::A));
        message.add_answer(Record::from_rdata(
            name.clone(),
            300,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        let soa = SOA::new(name.clone(), name.clone(), 1, 2, 3, 4, 55);
        message.add_authority(Record::from_rdata(name.clone(), 600, RData::SOA(soa)));
        message.add_additional(Record::from_rdata(name, 77, RData::A(A::new(192, 0, 2, 2))));
        message.to_vec().unwrap()
    }

    #[test]
    fn walks_every_section_in_order() {
        let bytes = message();
        let records: Vec<(Section, RecordSpan)> =
            Records::new(&bytes).unwrap().map(Result::unwrap).collect();
        let sections: Vec<Section> = records.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            sections,
            [Section::Answer, Section::Authority, Section::Additional]
        );
        let ttls: Vec<u32> = records
            .iter()
            .map(|(_, r)| read_ttl(&bytes, r.ttl_offset()).unwrap())
            .collect();
        assert_eq!(ttls, [300, 600, 77]);
        assert_eq!(records[1].1.soa_minimum(&bytes), Some(55));
        assert_eq!(records[0].1.soa_minimum(&bytes), None);
    }

    #[test]
    fn rewrites_a_ttl_in_place() {
        let mut bytes = message();
        let first = Records::new(&bytes).unwrap().next().unwrap().unwrap().1;
        write_ttl(&mut bytes, first.ttl_offset(), 42);
        assert_eq!(Message::from_vec(&bytes).unwrap().answers[0].ttl, 42);
    }

    #[test]
    fn a_short_record_ends_the_walk_with_an_error() {
        let bytes = message();
        let mut records = Records::new(&bytes[..bytes.len() - 3]).unwrap();
        assert!(records.by_ref().take(2).all(|r| r.is_ok()));
        assert_eq!(records.next().unwrap().unwrap_err(), WireError::Short);
        assert!(records.next().is_none());
    }
}
