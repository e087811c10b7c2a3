//! EDNS(0) padding policies for queries sent upstream (RFC 7830, RFC 8467).
//!
//! A policy answers one question: given the length a query would have with
//! an empty Padding option, how many padding octets to add. The wire code
//! asks it last, after every other option is written.

use std::{fmt, num::NonZeroU16, str::FromStr};

/// How upstream queries are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaddingPolicy {
    /// No Padding option at all. Leaks the length of every name asked.
    None,
    /// Block-length padding (RFC 8467 §4.1): the message is padded to a
    /// multiple of the block size. RFC 8467 recommends 128 for queries.
    Block(NonZeroU16),
}

/// RFC 8467 §4.1's recommended block size for queries.
pub const RECOMMENDED_QUERY_BLOCK: NonZeroU16 = match NonZeroU16::new(128) {
    Some(block) => block,
    None => unreachable!(),
};

/// Largest block: beyond 16 KiB padding only wastes bandwidth, and the
/// bound keeps every padded query within the 65,535 octets TCP can frame.
pub const MAX_BLOCK: u16 = 16_384;

impl Default for PaddingPolicy {
    fn default() -> Self {
        Self::Block(RECOMMENDED_QUERY_BLOCK)
    }
}

impl PaddingPolicy {
    /// Padding octets to add to a message that is `len` octets long with an
    /// empty Padding option in place, or `None` for no option at all.
    pub fn padding_for(&self, len: usize) -> Option<usize> {
        match self {
            Self::None => None,
            Self::Block(block) => {
                let block = usize::from(block.get());
                Some((block - len % block) % block)
            }
        }
    }

    /// The most padding octets one query can get.
    pub fn max_padding(&self) -> usize {
        match self {
            Self::None => 0,
            Self::Block(block) => usize::from(block.get()) - 1,
        }
    }
}

/// A padding policy string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected \"none\" or \"block:N\" with N from 1 to 16384, found {0:?}")]
pub struct BadPolicy(pub String);

impl FromStr for PaddingPolicy {
    type Err = BadPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadPolicy(text.to_owned());
        match text.split_once(':') {
            None if text == "none" => Ok(Self::None),
            Some(("block", size)) => size
                .parse::<NonZeroU16>()
                .ok()
                .filter(|block| block.get() <= MAX_BLOCK)
                .map(Self::Block)
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for PaddingPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Block(block) => write!(f, "block:{block}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_padding_reaches_the_next_multiple() {
        let policy: PaddingPolicy = "block:128".parse().unwrap();
        assert_eq!(policy.padding_for(32), Some(96));
        assert_eq!(policy.padding_for(128), Some(0));
        assert_eq!(policy.padding_for(129), Some(127));
        for len in 16..600 {
            let padded = len + policy.padding_for(len).unwrap();
            assert_eq!(padded % 128, 0);
            assert!(padded - len < 128);
        }
    }

    #[test]
    fn none_adds_no_option() {
        assert_eq!(PaddingPolicy::None.padding_for(40), None);
    }

    #[test]
    fn parses_and_displays() {
        for text in ["none", "block:128", "block:1", "block:468"] {
            assert_eq!(text.parse::<PaddingPolicy>().unwrap().to_string(), text);
        }
        for text in [
            "",
            "block",
            "block:0",
            "block:-1",
            "block:70000",
            "block:16385",
            "random:4",
            "None",
        ] {
            assert!(text.parse::<PaddingPolicy>().is_err(), "{text}");
        }
        assert_eq!(PaddingPolicy::default().to_string(), "block:128");
    }
}
