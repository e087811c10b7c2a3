//! The OPT pseudo-record of EDNS(0) (RFC 6891 §6.1): reading one and its
//! options, writing one.

use super::{RecordSpan, WireError, Writer, rtype, writer::Overflow};

/// EDNS option codes dotstub handles (IANA "DNS EDNS0 Option Codes").
pub mod option_code {
    /// Name server identifier (RFC 5001).
    pub const NSID: u16 = 3;
    /// Client subnet (RFC 7871): never forwarded.
    pub const CLIENT_SUBNET: u16 = 8;
    /// DNS cookie (RFC 7873): hop by hop.
    pub const COOKIE: u16 = 10;
    /// edns-tcp-keepalive (RFC 7828): hop by hop.
    pub const TCP_KEEPALIVE: u16 = 11;
    /// Padding (RFC 7830): hop by hop, only on encrypted transports.
    pub const PADDING: u16 = 12;
    /// Extended DNS error (RFC 8914).
    pub const EXTENDED_ERROR: u16 = 15;
}

/// The DO bit in the OPT TTL's flag half (RFC 3225).
const DNSSEC_OK: u32 = 0x8000;
/// Octets of an OPT record with empty RDATA: root name, type, class, TTL, RDLEN.
pub(super) const OPT_FIXED_LEN: usize = 11;
/// Octets of an option's code and length fields.
pub(super) const OPTION_HEADER_LEN: usize = 4;

/// An OPT record as read from a message, its options validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptRecord<'a> {
    /// The sender's UDP payload size (the CLASS field).
    pub udp_size: u16,
    /// The upper eight bits of the extended RCODE.
    pub extended_rcode: u8,
    /// EDNS version; only 0 is defined.
    pub version: u8,
    /// Whether the DO bit is set.
    pub dnssec_ok: bool,
    options: &'a [u8],
}

impl<'a> OptRecord<'a> {
    /// Reads the OPT record located at `span`. Its owner must be the root
    /// and its options must exactly fill the RDATA (RFC 6891 §6.1.2).
    pub fn from_span(packet: &'a [u8], span: &RecordSpan) -> Result<Self, WireError> {
        if span.rtype != rtype::OPT || packet.get(span.start) != Some(&0) {
            return Err(WireError::Malformed);
        }
        let options = span.rdata(packet);
        EdnsOptions::check(options)?;
        let [extended_rcode, version, _, _] = span.ttl.to_be_bytes();
        Ok(Self {
            udp_size: span.class,
            extended_rcode,
            version,
            dnssec_ok: span.ttl & DNSSEC_OK != 0,
            options,
        })
    }

    /// The options, in the order they were sent.
    pub fn options(&self) -> EdnsOptions<'a> {
        EdnsOptions(self.options)
    }

    /// The data of the first option with `code`, if present.
    pub fn option(&self, code: u16) -> Option<&'a [u8]> {
        self.options()
            .find(|&(c, _)| c == code)
            .map(|(_, data)| data)
    }
}

/// Iterator over `(code, data)` of an option list already checked by
/// [`OptRecord::from_span`].
#[derive(Debug, Clone, Copy)]
pub struct EdnsOptions<'a>(&'a [u8]);

impl EdnsOptions<'_> {
    fn check(mut rest: &[u8]) -> Result<(), WireError> {
        while !rest.is_empty() {
            let len = match rest.get(2..4) {
                Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
                _ => return Err(WireError::Malformed),
            };
            rest = rest
                .get(OPTION_HEADER_LEN + len..)
                .ok_or(WireError::Malformed)?;
        }
        Ok(())
    }
}

impl<'a> Iterator for EdnsOptions<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (head, rest) = self.0.split_first_chunk::<OPTION_HEADER_LEN>()?;
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let (data, rest) = rest.split_at_checked(len)?;
        self.0 = rest;
        Some((code, data))
    }
}

/// Writes an OPT record whose RDATA is `options` (already encoded).
pub(super) fn write_opt(
    out: &mut Writer<'_>,
    udp_size: u16,
    extended_rcode: u8,
    dnssec_ok: bool,
    options: &[u8],
) -> Result<(), Overflow> {
    let flags = if dnssec_ok { DNSSEC_OK } else { 0 };
    out.put_u8(0)?;
    out.put_u16(rtype::OPT)?;
    out.put_u16(udp_size)?;
    out.put_u32(u32::from(extended_rcode) << 24 | flags)?;
    out.put_u16(u16::try_from(options.len()).map_err(|_| Overflow)?)?;
    out.put(options)
}

/// Writes one option (code, length, data).
pub(super) fn write_option(out: &mut Writer<'_>, code: u16, data: &[u8]) -> Result<(), Overflow> {
    out.put_u16(code)?;
    out.put_u16(u16::try_from(data.len()).map_err(|_| Overflow)?)?;
    out.put(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt_message(options: &[u8], ttl: u32) -> Vec<u8> {
        let mut buf = vec![0u8; 64];
        let mut w = Writer::new(&mut buf);
        w.put_u8(0).unwrap();
        w.put_u16(rtype::OPT).unwrap();
        w.put_u16(1232).unwrap();
        w.put_u32(ttl).unwrap();
        w.put_u16(options.len() as u16).unwrap();
        w.put(options).unwrap();
        let len = w.len();
        buf.truncate(len);
        buf
    }

    #[test]
    fn reads_flags_and_options() {
        let packet = opt_message(b"\x00\x0c\x00\x02\x00\x00\x00\x0b\x00\x00", 0x0100_8000);
        let span = RecordSpan::parse(&packet, 0).unwrap();
        let opt = OptRecord::from_span(&packet, &span).unwrap();
        assert_eq!(
            (opt.udp_size, opt.extended_rcode, opt.version),
            (1232, 1, 0)
        );
        assert!(opt.dnssec_ok);
        let codes: Vec<u16> = opt.options().map(|(code, _)| code).collect();
        assert_eq!(codes, [option_code::PADDING, option_code::TCP_KEEPALIVE]);
        assert_eq!(opt.option(option_code::PADDING), Some(&[0u8, 0][..]));
        assert_eq!(opt.option(option_code::COOKIE), None);
    }

    #[test]
    fn option_overrunning_rdata_is_malformed() {
        let packet = opt_message(b"\x00\x0c\x00\x09\x00", 0);
        let span = RecordSpan::parse(&packet, 0).unwrap();
        assert_eq!(
            OptRecord::from_span(&packet, &span),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn written_opt_reads_back() {
        let mut buf = [0u8; 32];
        let mut w = Writer::new(&mut buf);
        write_opt(&mut w, 1232, 0, true, b"\x00\x0f\x00\x02\x00\x16").unwrap();
        let len = w.len();
        let span = RecordSpan::parse(&buf[..len], 0).unwrap();
        let opt = OptRecord::from_span(&buf[..len], &span).unwrap();
        assert!(opt.dnssec_ok);
        assert_eq!(
            opt.option(option_code::EXTENDED_ERROR),
            Some(&[0u8, 0x16][..])
        );
    }
}
