//! Builds the query dotstub sends upstream for a client's question: a fresh
//! header, the question, and an OPT record with only dotstub's own options,
//! the Padding option last (RFC 7830 §3, RFC 8467 §4).

use super::{
    HeaderMut, Question, Writer, flag,
    opt::{OPTION_HEADER_LEN, option_code, write_opt, write_option},
    writer::Overflow,
};

/// UDP payload size dotstub advertises upstream. Over TLS it bounds nothing,
/// but DNS flag day 2020's 1232 keeps resolvers that reuse it for UDP safe.
pub const UPSTREAM_UDP_SIZE: u16 = 1232;

/// What dotstub asks an upstream for one client question. Nothing else
/// of the client's query travels: no client EDNS option (so no Client
/// Subnet, no cookie) and never the client's message ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamQuestion<'a> {
    /// The question, in the spelling of the first client that asked it.
    pub question: Question<'a>,
    /// DO bit (RFC 3225).
    pub dnssec_ok: bool,
    /// CD bit (RFC 4035 §3.2.2).
    pub checking_disabled: bool,
}

/// Writes the upstream query for `question` with message ID `id` into `out`
/// and returns its length. With `tcp_keepalive` it carries an empty
/// edns-tcp-keepalive option (RFC 7828 §3.2.1). `padding` is asked, last,
/// how many padding octets to add given the message length with an empty
/// Padding option; `None` adds no Padding option at all.
pub fn write_upstream_query(
    question: &UpstreamQuestion<'_>,
    id: u16,
    tcp_keepalive: bool,
    padding: impl FnOnce(usize) -> Option<usize>,
    out: &mut [u8],
) -> Result<usize, Overflow> {
    let mut w = Writer::new(out);
    w.put_zeros(super::HEADER_LEN)?;
    w.put(question.question.as_bytes())?;
    let mut options = [0u8; OPTION_HEADER_LEN];
    let options_len = if tcp_keepalive {
        write_option(
            &mut Writer::new(&mut options),
            option_code::TCP_KEEPALIVE,
            &[],
        )?;
        OPTION_HEADER_LEN
    } else {
        0
    };
    write_opt(
        &mut w,
        UPSTREAM_UDP_SIZE,
        0,
        question.dnssec_ok,
        &options[..options_len],
    )?;
    if let Some(pad) = padding(w.len() + OPTION_HEADER_LEN) {
        w.put_u16(option_code::PADDING)?;
        w.put_u16(u16::try_from(pad).map_err(|_| Overflow)?)?;
        w.put_zeros(pad)?;
        let rdlen = options_len + OPTION_HEADER_LEN + pad;
        let len = w.len();
        let rdlen_at = len - rdlen - 2;
        let rdlen = u16::try_from(rdlen).map_err(|_| Overflow)?.to_be_bytes();
        w.written_mut()[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen);
    }
    let len = w.len();
    HeaderMut::new(w.written_mut())
        .map_err(|_| Overflow)?
        .set_id(id)
        .set_flag(flag::RD, true)
        .set_flag(flag::CD, question.checking_disabled)
        .set_counts(1, 0, 0, 1);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Header, OptRecord, RecordSpan, Sections};

    fn question(packet: &[u8]) -> Question<'_> {
        Question::parse(packet, 0).unwrap()
    }

    fn opt_of(message: &[u8]) -> OptRecord<'_> {
        let header = Header::parse(message).unwrap();
        let sections = Sections::locate(message, &header).unwrap();
        let span = RecordSpan::parse(message, sections.additional).unwrap();
        assert_eq!(span.end, message.len(), "OPT is the last record");
        OptRecord::from_span(message, &span).unwrap()
    }

    #[test]
    fn pads_to_the_block_with_padding_last() {
        let raw = b"\x07example\x03com\x00\x00\x01\x00\x01";
        let q = UpstreamQuestion {
            question: question(raw),
            dnssec_ok: true,
            checking_disabled: true,
        };
        let mut buf = [0xffu8; 512];
        let len = write_upstream_query(&q, 0x4242, true, |n| Some((128 - n % 128) % 128), &mut buf)
            .unwrap();
        assert_eq!(len, 128);
        let message = &buf[..len];
        let header = Header::parse(message).unwrap();
        assert_eq!(header.id(), 0x4242);
        assert!(header.has(flag::RD) && header.has(flag::CD) && !header.has(flag::QR));
        let opt = opt_of(message);
        assert!(opt.dnssec_ok);
        let options: Vec<(u16, &[u8])> = opt.options().collect();
        assert_eq!(options.len(), 2);
        assert_eq!(options[0], (option_code::TCP_KEEPALIVE, &[][..]));
        assert_eq!(options[1].0, option_code::PADDING);
        assert!(
            options[1].1.iter().all(|&b| b == 0),
            "padding octets are zero"
        );
    }

    #[test]
    fn no_padding_option_when_policy_says_none() {
        let raw = b"\x00\x00\x02\x00\x01";
        let q = UpstreamQuestion {
            question: question(raw),
            dnssec_ok: false,
            checking_disabled: false,
        };
        let mut buf = [0u8; 64];
        let len = write_upstream_query(&q, 1, false, |_| None, &mut buf).unwrap();
        assert_eq!(len, 12 + 5 + 11);
        assert_eq!(opt_of(&buf[..len]).options().count(), 0);
    }

    #[test]
    fn too_small_buffer_overflows() {
        let raw = b"\x00\x00\x01\x00\x01";
        let q = UpstreamQuestion {
            question: question(raw),
            dnssec_ok: false,
            checking_disabled: false,
        };
        let mut buf = [0u8; 64];
        assert_eq!(
            write_upstream_query(&q, 1, false, |_| Some(100), &mut buf),
            Err(Overflow)
        );
    }
}
