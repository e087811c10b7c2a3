//! The cache key: what makes two questions the same answer. The name in
//! lower case (RFC 4343), the type and class, and the bits that change the
//! answer (DO, CD). Built on the stack for a lookup; boxed only to insert.

use crate::wire::{self, Query};

/// Longest key: flags, a 255-octet name, type and class.
const MAX_KEY: usize = 1 + 255 + 4;
const DNSSEC_OK: u8 = 1;
const CHECKING_DISABLED: u8 = 2;

/// A key as stored in the cache and the in-flight map.
pub type Key = Box<[u8]>;

/// A key built on the stack from a query; no allocation.
#[derive(Clone, Copy)]
pub struct KeyBuf {
    bytes: [u8; MAX_KEY],
    len: usize,
}

impl KeyBuf {
    /// A key of nothing, to [`set`](KeyBuf::set) in place.
    pub const EMPTY: Self = Self {
        bytes: [0; MAX_KEY],
        len: 0,
    };

    /// The key of `query`.
    pub fn of(query: &Query<'_>) -> Self {
        let mut key = Self::EMPTY;
        key.set(query);
        key
    }

    /// Makes this the key of `query`, written where it lives: the hit path
    /// builds its key so, since a key returned by value was copied (all
    /// 272 octets) on every hit.
    pub fn set(&mut self, query: &Query<'_>) {
        let question = query.question().as_bytes();
        let name_len = query.question().name().len();
        // A checked question is at most 255 + 4 octets, so it fits.
        self.len = 1 + question.len();
        self.bytes[0] = 0;
        if query.dnssec_ok() {
            self.bytes[0] |= DNSSEC_OK;
        }
        if query.checking_disabled() {
            self.bytes[0] |= CHECKING_DISABLED;
        }
        wire::copy(&mut self.bytes[1..self.len], question);
        self.bytes[1..1 + name_len].make_ascii_lowercase();
    }

    /// The key's octets, to look up with.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// An owned copy, to insert.
    pub fn to_key(&self) -> Key {
        self.as_bytes().into()
    }
}

impl std::fmt::Debug for KeyBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KeyBuf").field(&self.as_bytes()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::query_bytes;

    #[test]
    fn names_differing_in_case_share_a_key() {
        let upper = query_bytes(b"\x03WWW\x07Example\x00", 1, None);
        let lower = query_bytes(b"\x03www\x07example\x00", 1, None);
        let a = KeyBuf::of(&Query::parse(&upper).unwrap());
        let b = KeyBuf::of(&Query::parse(&lower).unwrap());
        assert_eq!(a.as_bytes(), b.as_bytes());
        assert_eq!(&a.as_bytes()[1..5], b"\x03www");
    }

    #[test]
    fn type_do_and_cd_change_the_key() {
        let plain = query_bytes(b"\x01a\x00", 1, None);
        let aaaa = query_bytes(b"\x01a\x00", 28, None);
        let with_do = query_bytes(b"\x01a\x00", 1, Some((1232, b""))); // sets DO
        let mut with_cd = plain.clone();
        with_cd[3] |= 0x10;
        let keys: Vec<Key> = [plain, aaaa, with_do, with_cd]
            .iter()
            .map(|packet| KeyBuf::of(&Query::parse(packet).unwrap()).to_key())
            .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
