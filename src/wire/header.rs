//! The 12-octet DNS header (RFC 1035 §4.1.1): a `Copy` reader and an
//! in-place patcher.

use super::{HEADER_LEN, WireError};

/// Flag bits of the header's second 16-bit word.
pub mod flag {
    /// Query (0) or response (1).
    pub const QR: u16 = 0x8000;
    /// Authoritative answer.
    pub const AA: u16 = 0x0400;
    /// Truncated.
    pub const TC: u16 = 0x0200;
    /// Recursion desired.
    pub const RD: u16 = 0x0100;
    /// Recursion available.
    pub const RA: u16 = 0x0080;
    /// Authentic data (RFC 4035 §3.2.3).
    pub const AD: u16 = 0x0020;
    /// Checking disabled (RFC 4035 §3.2.2).
    pub const CD: u16 = 0x0010;
}

const OPCODE_SHIFT: u16 = 11;
const OPCODE_MASK: u16 = 0x7800;
const RCODE_MASK: u16 = 0x000f;

/// Response codes dotstub writes itself (RFC 1035 §4.1.1, RFC 6891 §9).
/// Values above 15 need an OPT record for their upper 8 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Rcode {
    /// No error.
    NoError = 0,
    /// The query could not be interpreted.
    FormErr = 1,
    /// The server could not answer.
    ServFail = 2,
    /// The name does not exist.
    NxDomain = 3,
    /// The kind of query is not supported.
    NotImp = 4,
    /// The server refuses this query.
    Refused = 5,
    /// The client's EDNS version is not supported (extended RCODE 16).
    BadVers = 16,
}

impl Rcode {
    /// The low four bits, which go in the header.
    pub fn header_bits(self) -> u16 {
        self as u16 & RCODE_MASK
    }

    /// The upper eight bits, which go in the OPT record's TTL field.
    pub fn extended_bits(self) -> u8 {
        // An extended RCODE is 12 bits wide, so shifting out the low 4 leaves 8.
        (self as u16 >> 4) as u8
    }
}

/// A copy of a message header, read once after checking the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header([u8; HEADER_LEN]);

impl Header {
    /// Reads the header of `packet`; fails when it has fewer than 12 octets.
    pub fn parse(packet: &[u8]) -> Result<Self, WireError> {
        packet
            .first_chunk::<HEADER_LEN>()
            .map(|bytes| Self(*bytes))
            .ok_or(WireError::Short)
    }

    fn word(&self, index: usize) -> u16 {
        let [hi, lo] = [self.0[index * 2], self.0[index * 2 + 1]];
        u16::from_be_bytes([hi, lo])
    }

    /// Message ID.
    pub fn id(&self) -> u16 {
        self.word(0)
    }

    /// The flags word: QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE.
    pub fn flags(&self) -> u16 {
        self.word(1)
    }

    /// Whether one of the [`flag`] bits is set.
    pub fn has(&self, flag: u16) -> bool {
        self.flags() & flag != 0
    }

    /// The 4-bit opcode (0 is QUERY).
    pub fn opcode(&self) -> u8 {
        // Masked to 4 bits, so the cast cannot truncate.
        ((self.flags() & OPCODE_MASK) >> OPCODE_SHIFT) as u8
    }

    /// The low four bits of the response code.
    pub fn rcode(&self) -> u8 {
        (self.flags() & RCODE_MASK) as u8
    }

    /// Number of questions.
    pub fn qdcount(&self) -> u16 {
        self.word(2)
    }

    /// Number of answer records.
    pub fn ancount(&self) -> u16 {
        self.word(3)
    }

    /// Number of authority records.
    pub fn nscount(&self) -> u16 {
        self.word(4)
    }

    /// Number of additional records (OPT included).
    pub fn arcount(&self) -> u16 {
        self.word(5)
    }

    /// The raw 12 octets.
    pub fn as_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.0
    }
}

/// In-place edits of the header at the front of a message buffer.
pub struct HeaderMut<'a>(&'a mut [u8; HEADER_LEN]);

impl<'a> HeaderMut<'a> {
    /// Borrows the header of `packet`; fails when it has fewer than 12 octets.
    pub fn new(packet: &'a mut [u8]) -> Result<Self, WireError> {
        packet
            .first_chunk_mut::<HEADER_LEN>()
            .map(Self)
            .ok_or(WireError::Short)
    }

    fn set_word(&mut self, index: usize, value: u16) {
        let [hi, lo] = value.to_be_bytes();
        self.0[index * 2] = hi;
        self.0[index * 2 + 1] = lo;
    }

    fn flags(&self) -> u16 {
        u16::from_be_bytes([self.0[2], self.0[3]])
    }

    /// Sets the message ID.
    pub fn set_id(&mut self, id: u16) -> &mut Self {
        self.set_word(0, id);
        self
    }

    /// Sets the whole flags word.
    pub fn set_flags(&mut self, flags: u16) -> &mut Self {
        self.set_word(1, flags);
        self
    }

    /// Sets or clears one [`flag`] bit.
    pub fn set_flag(&mut self, flag: u16, on: bool) -> &mut Self {
        let flags = if on {
            self.flags() | flag
        } else {
            self.flags() & !flag
        };
        self.set_word(1, flags);
        self
    }

    /// Sets the low four bits of the response code.
    pub fn set_rcode(&mut self, rcode: Rcode) -> &mut Self {
        let flags = (self.flags() & !RCODE_MASK) | rcode.header_bits();
        self.set_word(1, flags);
        self
    }

    /// Sets the four section counts.
    pub fn set_counts(&mut self, qd: u16, an: u16, ns: u16, ar: u16) -> &mut Self {
        self.set_word(2, qd);
        self.set_word(3, an);
        self.set_word(4, ns);
        self.set_word(5, ar);
        self
    }

    /// Sets the additional-record count alone.
    pub fn set_arcount(&mut self, ar: u16) -> &mut Self {
        self.set_word(5, ar);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_packet_has_no_header() {
        assert_eq!(Header::parse(&[0; 11]), Err(WireError::Short));
    }

    #[test]
    fn reads_fields() {
        let bytes = [0x12, 0x34, 0x81, 0xa3, 0, 1, 0, 2, 0, 3, 0, 4];
        let header = Header::parse(&bytes).unwrap();
        assert_eq!(header.id(), 0x1234);
        assert!(header.has(flag::QR) && header.has(flag::RD) && header.has(flag::RA));
        assert!(!header.has(flag::TC) && header.has(flag::AD));
        assert_eq!(header.opcode(), 0);
        assert_eq!(header.rcode(), 3);
        assert_eq!(
            (
                header.qdcount(),
                header.ancount(),
                header.nscount(),
                header.arcount()
            ),
            (1, 2, 3, 4)
        );
    }

    #[test]
    fn patches_in_place() {
        let mut bytes = [0u8; 14];
        HeaderMut::new(&mut bytes)
            .unwrap()
            .set_id(0xbeef)
            .set_flag(flag::QR, true)
            .set_flag(flag::TC, true)
            .set_rcode(Rcode::ServFail)
            .set_counts(1, 0, 0, 1);
        let header = Header::parse(&bytes).unwrap();
        assert_eq!(header.id(), 0xbeef);
        assert!(header.has(flag::QR) && header.has(flag::TC));
        assert_eq!(header.rcode(), 2);
        assert_eq!(header.arcount(), 1);
        HeaderMut::new(&mut bytes)
            .unwrap()
            .set_flag(flag::TC, false);
        assert!(!Header::parse(&bytes).unwrap().has(flag::TC));
    }

    #[test]
    fn badvers_splits_into_header_and_opt_bits() {
        assert_eq!(Rcode::BadVers.header_bits(), 0);
        assert_eq!(Rcode::BadVers.extended_bits(), 1);
        assert_eq!(Rcode::Refused.extended_bits(), 0);
    }
}
