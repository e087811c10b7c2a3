//! One cached answer as it sits in a page: a fixed header, the key, the
//! upstream's header and records (the question is left out: a reply
//! carries the client's own), the Extended DNS Error options, and where
//! each TTL field falls in a reply. Written once by [`encode`], read in
//! place through [`EntryView`].
//
// Layout, little-endian, unaligned; every octet counts, a cache of small
// answers is mostly headers:
//   0  u16  records length         8  u16  question length
//   2  u16  options length        10  [12] upstream header
//   4  u16  TTL field count       22  u32  stored at (clock, whole seconds)
//   6  u16  RCODE                 26  u32  lifetime (s)
//                                 30  key (question length + 1), records,
//                                     options, TTL offsets (u16 each)

use super::clock::Millis;
use crate::wire::{
    Answer, AnswerParts, HEADER_LEN, Overflow, Recipient, Records, Written, read_ttl, write_ttl,
};

/// Octets before the key.
const FIXED: usize = 30;

/// TTL of an answer served stale (RFC 8767 §4).
pub const STALE_TTL: u32 = 30;

/// The TTLs a cached answer is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ttls {
    /// As stored, lowered by the whole seconds spent in the cache by `now`.
    Aged {
        /// Now.
        now: Millis,
    },
    /// All 30 s, for an expired answer served stale (RFC 8767 §4).
    Stale,
}

/// How long an entry lives and when it was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    /// When it was stored (kept to the whole second).
    pub stored_at: Millis,
    /// Seconds it stays fresh.
    pub lifetime: u32,
}

impl Times {
    /// When `percent` of its lifetime has passed; 100 is when it expires.
    pub fn after(&self, percent: u64) -> Millis {
        self.stored_at + u64::from(self.lifetime) * percent * 10
    }

    /// When it expires.
    pub fn expires_at(&self) -> Millis {
        self.after(100)
    }
}

/// The octets `answer` takes as an entry under `key`, or `None` when it
/// cannot be stored (malformed, or too long for 16-bit lengths).
pub(super) fn encoded_len(key: &[u8], answer: &Answer) -> Option<usize> {
    let ttls = Records::new(answer.as_bytes()).ok()?.count();
    let parts = answer.parts();
    let len = FIXED + key.len() + parts.records.len() + parts.options.len() + 2 * ttls;
    u16::try_from(len).ok().map(usize::from)
}

/// Writes `answer` as an entry into `out`, which is [`encoded_len`] long.
pub(super) fn encode(key: &[u8], answer: &Answer, times: Times, out: &mut [u8]) -> Option<()> {
    let parts = answer.parts();
    let message = answer.as_bytes();
    let ttls = Records::new(message).ok()?;
    let count = ttls.clone().count();
    let (fixed, rest) = out.split_at_mut_checked(FIXED)?;
    put_u16(fixed, 0, u16::try_from(parts.records.len()).ok()?);
    put_u16(fixed, 2, u16::try_from(parts.options.len()).ok()?);
    put_u16(fixed, 4, u16::try_from(count).ok()?);
    put_u16(fixed, 6, parts.rcode);
    put_u16(fixed, 8, u16::try_from(parts.question_len).ok()?);
    fixed.get_mut(10..22)?.copy_from_slice(parts.header);
    let stored_at = u32::try_from(times.stored_at / 1000).unwrap_or(u32::MAX);
    fixed
        .get_mut(22..26)?
        .copy_from_slice(&stored_at.to_le_bytes());
    fixed
        .get_mut(26..30)?
        .copy_from_slice(&times.lifetime.to_le_bytes());
    let mut at = 0;
    for part in [key, parts.records, parts.options] {
        rest.get_mut(at..at + part.len())?.copy_from_slice(part);
        at += part.len();
    }
    for record in ttls {
        let offset = u16::try_from(record.ok()?.1.ttl_offset()).ok()?;
        put_u16(rest, at, offset);
        at += 2;
    }
    Some(())
}

fn put_u16(out: &mut [u8], at: usize, value: u16) {
    if let Some(field) = out.get_mut(at..at + 2) {
        field.copy_from_slice(&value.to_le_bytes());
    }
}

fn get_u16(bytes: &[u8], at: usize) -> usize {
    bytes
        .get(at..at + 2)
        .map_or(0, |b| usize::from(u16::from_le_bytes([b[0], b[1]])))
}

/// An entry read in place from its page.
#[derive(Debug, Clone, Copy)]
pub(super) struct EntryView<'a> {
    bytes: &'a [u8],
}

impl<'a> EntryView<'a> {
    /// The entry starting at `page[offset..]`, if one fits there.
    pub(super) fn at(page: &'a [u8], offset: usize) -> Option<Self> {
        let rest = page.get(offset..)?;
        let fixed = rest.get(..FIXED)?;
        let key_len = get_u16(fixed, 8) + 1;
        let len = FIXED + key_len + get_u16(fixed, 0) + get_u16(fixed, 2) + 2 * get_u16(fixed, 4);
        rest.get(..len).map(|bytes| Self { bytes })
    }

    /// Octets the entry takes.
    pub(super) fn len(&self) -> usize {
        self.bytes.len()
    }

    fn question_len(&self) -> usize {
        get_u16(self.bytes, 8)
    }

    fn body(&self, from: usize, len: usize) -> &'a [u8] {
        self.bytes
            .get(FIXED + from..FIXED + from + len)
            .unwrap_or_default()
    }

    /// The key it is stored under.
    pub(super) fn key(&self) -> &'a [u8] {
        self.body(0, self.question_len() + 1)
    }

    /// When it was stored and for how long it is fresh.
    pub(super) fn times(&self) -> Times {
        let field = |at: usize| {
            let mut value = [0u8; 4];
            value.copy_from_slice(self.bytes.get(at..at + 4).unwrap_or(&[0; 4]));
            u32::from_le_bytes(value)
        };
        Times {
            stored_at: Millis::from(field(22)) * 1000,
            lifetime: field(26),
        }
    }

    /// The answer's parts, to write a reply from.
    pub(super) fn parts(&self) -> AnswerParts<'a> {
        let key_len = self.question_len() + 1;
        let records_len = get_u16(self.bytes, 0);
        AnswerParts {
            header: self
                .bytes
                .get(10..10 + HEADER_LEN)
                .and_then(|h| h.try_into().ok())
                .unwrap_or(&[0; HEADER_LEN]),
            question_len: self.question_len(),
            records: self.body(key_len, records_len),
            rcode: get_u16(self.bytes, 6) as u16,
            options: self.body(key_len + records_len, get_u16(self.bytes, 2)),
        }
    }

    fn ttl_offsets(&self) -> impl Iterator<Item = usize> + 'a {
        let bytes = self.bytes;
        let start = bytes.len().saturating_sub(2 * get_u16(bytes, 4));
        (start..bytes.len())
            .step_by(2)
            .map(move |at| get_u16(bytes, at))
    }

    /// Writes it for `to`, its TTLs as `ttls` says.
    pub(super) fn write(
        &self,
        to: &Recipient<'_>,
        ttls: Ttls,
        out: &mut Vec<u8>,
    ) -> Result<Written, Overflow> {
        let written = self.parts().write_for_client(to, out)?;
        if written.whole {
            let elapsed = match ttls {
                Ttls::Aged { now } => now.saturating_sub(self.times().stored_at) / 1000,
                Ttls::Stale => 0,
            };
            let elapsed = u32::try_from(elapsed).unwrap_or(u32::MAX);
            for offset in self.ttl_offsets() {
                if let Some(ttl) = read_ttl(out, offset) {
                    let ttl = match ttls {
                        Ttls::Aged { .. } => ttl.saturating_sub(elapsed),
                        Ttls::Stale => STALE_TTL,
                    };
                    write_ttl(out, offset, ttl);
                }
            }
        }
        Ok(written)
    }
}
