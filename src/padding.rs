//! EDNS(0) padding policies (RFC 7830, RFC 8467): how long a padded
//! message becomes.
//!
//! A policy turns the length a message would have with an empty Padding
//! option into a [`Spread`]: the padded lengths it may get, all equally
//! likely. The wire code draws one ([`PaddingPolicy::padding_for`]) and
//! writes the option last; the padding evaluator reads the whole spread.
//! No padded length goes beyond the limit the receiver advertised, nor
//! below the message itself. [`PaddingPolicy::padding_from_os`] draws from
//! the operating system's CSPRNG; [`response_block`] reads back the block
//! a server padded its responses to.

use std::{convert::Infallible, fmt, num::NonZeroU16, str::FromStr};

use rand::{Rng, RngExt, TryRng, rngs::SysRng};

/// How messages are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaddingPolicy {
    /// No Padding option at all. Leaks the length of every name asked.
    None,
    /// Block-length padding (RFC 8467 §4.1): the message is padded to a
    /// multiple of the block size. RFC 8467 recommends 128 for queries
    /// and 468 for responses.
    Block(NonZeroU16),
    /// Maximal-length padding (RFC 8467 §4.2): every message is padded to
    /// this many octets, or to the largest size the receiver takes.
    Max(NonZeroU16),
    /// Random-length padding (RFC 8467 §4.3): 0 to this many octets,
    /// uniformly at random.
    Random(u16),
    /// Random-block-length padding (RFC 8467 §4.4): padded to a multiple
    /// of `block`, then 0 to `extra_blocks` whole blocks more, uniformly at
    /// random.
    RandomBlock {
        /// The block size.
        block: NonZeroU16,
        /// Most extra blocks added.
        extra_blocks: u16,
    },
}

/// RFC 8467 §4.1's recommended block size for queries.
pub const RECOMMENDED_QUERY_BLOCK: NonZeroU16 = match NonZeroU16::new(128) {
    Some(block) => block,
    None => unreachable!(),
};

/// Largest block, maximal length and random range: beyond 16 KiB padding
/// only wastes bandwidth, and the bound keeps every padded query within the
/// 65,535 octets TCP can frame.
pub const MAX_BLOCK: u16 = 16_384;

/// Most extra blocks of random-block padding.
pub const MAX_EXTRA_BLOCKS: u16 = 64;

impl Default for PaddingPolicy {
    fn default() -> Self {
        Self::Block(RECOMMENDED_QUERY_BLOCK)
    }
}

/// The padded lengths a policy may give one message, all equally likely:
/// `count` targets from `first`, `step` apart, each cut to the limit and
/// never below the message's own length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    first: usize,
    step: usize,
    count: usize,
    len: usize,
    limit: usize,
}

impl Spread {
    /// How many equally likely outcomes there are (at least one).
    pub fn count(&self) -> usize {
        self.count
    }

    /// The `index`th outcome.
    pub fn nth(&self, index: usize) -> usize {
        let target = self.first.saturating_add(index.saturating_mul(self.step));
        target.min(self.limit).max(self.len)
    }

    /// One outcome drawn uniformly from `rng` (no draw when there is one).
    pub fn draw(&self, rng: &mut impl Rng) -> usize {
        match self.count {
            1 => self.nth(0),
            count => self.nth(rng.random_range(0..count)),
        }
    }

    /// Every outcome, in order (repeats where targets were cut to the limit).
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.count).map(|index| self.nth(index))
    }
}

impl PaddingPolicy {
    /// The padded lengths of a message `len` octets long with an empty
    /// Padding option, whose receiver takes at most `limit` octets; `None`
    /// when the policy adds no option.
    pub fn spread(&self, len: usize, limit: usize) -> Option<Spread> {
        let round_up = |block: NonZeroU16| len.next_multiple_of(usize::from(block.get()));
        let (first, step, count) = match *self {
            Self::None => return None,
            Self::Block(block) => (round_up(block), 0, 1),
            Self::Max(max) => (usize::from(max.get()), 0, 1),
            Self::Random(most) => (len, 1, usize::from(most) + 1),
            Self::RandomBlock {
                block,
                extra_blocks,
            } => (
                round_up(block),
                usize::from(block.get()),
                usize::from(extra_blocks) + 1,
            ),
        };
        Some(Spread {
            first,
            step,
            count,
            len,
            limit,
        })
    }

    /// Padding octets to add to a message `len` octets long with an empty
    /// Padding option, for a receiver that takes at most `limit` octets,
    /// drawn from `rng` when the policy is random; `None` for no option.
    pub fn padding_for(&self, len: usize, limit: usize, rng: &mut impl Rng) -> Option<usize> {
        Some(self.spread(len, limit)?.draw(rng) - len)
    }

    /// [`PaddingPolicy::padding_for`] with the operating system's CSPRNG
    /// (RFC 8467 §4.3 asks for a cryptographically strong source: an
    /// observer who could predict the draws could undo them). Should the OS
    /// fail to give randomness, the largest outcome is used: more padding,
    /// never less.
    pub fn padding_from_os(&self, len: usize, limit: usize) -> Option<usize> {
        let mut rng = OsRandom { failed: false };
        let padding = self.padding_for(len, limit, &mut rng)?;
        if !rng.failed {
            return Some(padding);
        }
        let most = self.spread(len, limit)?.iter().max().unwrap_or(len);
        Some(most - len)
    }

    /// The most padding octets one message can get.
    pub fn max_padding(&self) -> usize {
        match *self {
            Self::None => 0,
            Self::Block(block) => usize::from(block.get()) - 1,
            Self::Max(max) => usize::from(max.get()),
            Self::Random(most) => usize::from(most),
            Self::RandomBlock {
                block,
                extra_blocks,
            } => usize::from(block.get()) * (usize::from(extra_blocks) + 1) - 1,
        }
    }

    /// Whether the padded length depends on chance.
    pub fn is_random(&self) -> bool {
        matches!(self, Self::Random(_) | Self::RandomBlock { .. })
    }
}

//---- Randomness ----

/// The OS CSPRNG ([`SysRng`], getrandom) as an infallible generator that
/// remembers a failure instead of panicking; a failed draw reads as zero.
struct OsRandom {
    failed: bool,
}

impl OsRandom {
    fn or_fail<T: Default>(&mut self, drawn: Result<T, rand::rngs::SysError>) -> T {
        drawn.unwrap_or_else(|_| {
            self.failed = true;
            T::default()
        })
    }
}

impl TryRng for OsRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.or_fail(SysRng.try_next_u32()))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.or_fail(SysRng.try_next_u64()))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        let filled = SysRng.try_fill_bytes(dst);
        self.or_fail(filled);
        Ok(())
    }
}

//---- Response padding ----

/// Blocks a server may pad its responses to, greatest first: RFC 8467
/// §4.1 recommends 468; the others are the powers of two servers and
/// proxies use.
pub const RESPONSE_BLOCKS: [usize; 7] = [512, 468, 256, 128, 64, 32, 16];

/// The greatest of [`RESPONSE_BLOCKS`] that divides every length in
/// `padded` (lengths of padded responses, TCP length prefix excluded);
/// `None` when there is none or no length at all. An inference: a few
/// answers can make a 128-octet server look like a 512-octet one, until
/// an answer of 640 octets says otherwise.
pub fn response_block(padded: impl IntoIterator<Item = usize>) -> Option<usize> {
    let mut lengths = 0;
    let mut divided = [0; RESPONSE_BLOCKS.len()];
    for len in padded {
        lengths += 1;
        for (block, divided) in RESPONSE_BLOCKS.iter().zip(&mut divided) {
            *divided += u64::from(len.is_multiple_of(*block));
        }
    }
    block_of_all(lengths, divided)
}

/// [`response_block`] from a tally: of `lengths` padded lengths, how many
/// each of [`RESPONSE_BLOCKS`] divides (`divided`, in the same order).
pub fn block_of_all(lengths: u64, divided: impl IntoIterator<Item = u64>) -> Option<usize> {
    RESPONSE_BLOCKS
        .iter()
        .zip(divided)
        .find(|&(_, divided)| lengths > 0 && divided == lengths)
        .map(|(block, _)| *block)
}

/// A padding policy string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected \"none\", \"block:N\", \"max:N\", \"random:N\" or \"random-block:N:K\" \
     (N from 1 to 16384, random:N from 0, K from 0 to 64), found {0:?}"
)]
pub struct BadPolicy(pub String);

impl FromStr for PaddingPolicy {
    type Err = BadPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadPolicy(text.to_owned());
        let size = |n: &str| {
            n.parse::<NonZeroU16>()
                .ok()
                .filter(|n| n.get() <= MAX_BLOCK)
                .ok_or_else(bad)
        };
        let mut parts = text.split(':');
        let policy = match (parts.next(), parts.next(), parts.next()) {
            (Some("none"), None, None) => Self::None,
            (Some("block"), Some(n), None) => Self::Block(size(n)?),
            (Some("max"), Some(n), None) => Self::Max(size(n)?),
            (Some("random"), Some(n), None) => Self::Random(
                n.parse::<u16>()
                    .ok()
                    .filter(|n| *n <= MAX_BLOCK)
                    .ok_or_else(bad)?,
            ),
            (Some("random-block"), Some(n), Some(k)) => Self::RandomBlock {
                block: size(n)?,
                extra_blocks: k
                    .parse::<u16>()
                    .ok()
                    .filter(|k| *k <= MAX_EXTRA_BLOCKS)
                    .ok_or_else(bad)?,
            },
            _ => return Err(bad()),
        };
        match parts.next() {
            None => Ok(policy),
            Some(_) => Err(bad()),
        }
    }
}

impl fmt::Display for PaddingPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Block(block) => write!(f, "block:{block}"),
            Self::Max(max) => write!(f, "max:{max}"),
            Self::Random(most) => write!(f, "random:{most}"),
            Self::RandomBlock {
                block,
                extra_blocks,
            } => write!(f, "random-block:{block}:{extra_blocks}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> PaddingPolicy {
        text.parse().unwrap()
    }

    fn outcomes(text: &str, len: usize, limit: usize) -> Vec<usize> {
        policy(text).spread(len, limit).unwrap().iter().collect()
    }

    #[test]
    fn block_padding_reaches_the_next_multiple() {
        let block = policy("block:128");
        let mut rng = rand::rng();
        assert_eq!(block.padding_for(32, 1232, &mut rng), Some(96));
        assert_eq!(block.padding_for(128, 1232, &mut rng), Some(0));
        assert_eq!(block.padding_for(129, 1232, &mut rng), Some(127));
        for len in 16..600 {
            let padded = len + block.padding_for(len, 1232, &mut rng).unwrap();
            assert_eq!(padded % 128, 0);
            assert!(padded - len < 128);
        }
    }

    #[test]
    fn no_policy_pads_beyond_the_limit_or_below_the_message() {
        assert_eq!(outcomes("block:468", 500, 900), [900]);
        assert_eq!(outcomes("max:1500", 40, 1232), [1232]);
        assert_eq!(outcomes("max:512", 700, 1232), [700]);
        assert_eq!(outcomes("random:3", 1230, 1232), [1230, 1231, 1232, 1232]);
        assert_eq!(outcomes("random-block:128:2", 100, 300), [128, 256, 300]);
    }

    #[test]
    fn random_policies_spread_uniformly_over_their_range() {
        assert_eq!(outcomes("random:4", 50, 1232), [50, 51, 52, 53, 54]);
        assert_eq!(
            outcomes("random-block:64:3", 70, 4096),
            [128, 192, 256, 320]
        );
        let random = policy("random-block:64:3");
        assert!(random.is_random() && !policy("block:64").is_random());
        let mut rng = rand::rng();
        let mut seen = [false; 4];
        for _ in 0..400 {
            let padded = 70 + random.padding_for(70, 4096, &mut rng).unwrap();
            assert_eq!(padded % 64, 0);
            seen[(padded - 128) / 64] = true;
        }
        assert_eq!(seen, [true; 4], "every outcome drawn in 400 tries");
    }

    #[test]
    fn max_padding_bounds_every_outcome() {
        for text in ["block:128", "max:1500", "random:300", "random-block:128:3"] {
            let policy = policy(text);
            for len in [12, 100, 127, 129, 700] {
                let most = policy.spread(len, 65_535).unwrap().iter().max().unwrap();
                assert!(most - len <= policy.max_padding(), "{text} at {len}");
            }
        }
    }

    #[test]
    fn none_adds_no_option() {
        assert_eq!(PaddingPolicy::None.spread(40, 1232), None);
        assert_eq!(
            PaddingPolicy::None.padding_for(40, 1232, &mut rand::rng()),
            None
        );
    }

    #[test]
    fn os_randomness_stays_in_the_spread() {
        let random = policy("random-block:64:3");
        let mut seen = [false; 4];
        for _ in 0..400 {
            let padded = 70 + random.padding_from_os(70, 4096).unwrap();
            seen[(padded - 128) / 64] = true;
        }
        assert_eq!(seen, [true; 4], "every outcome drawn in 400 tries");
        assert_eq!(policy("block:128").padding_from_os(100, 1232), Some(28));
        assert_eq!(PaddingPolicy::None.padding_from_os(100, 1232), None);
    }

    #[test]
    fn response_block_is_the_greatest_common_candidate() {
        assert_eq!(response_block([468, 936, 468]), Some(468));
        assert_eq!(response_block([512]), Some(512));
        assert_eq!(response_block([512, 640]), Some(128));
        assert_eq!(response_block([1232]), Some(16));
        assert_eq!(response_block([100, 468]), None);
        assert_eq!(response_block([]), None);
    }

    #[test]
    fn parses_and_displays() {
        for text in [
            "none",
            "block:128",
            "block:1",
            "block:468",
            "max:1500",
            "random:0",
            "random:255",
            "random-block:128:2",
        ] {
            assert_eq!(policy(text).to_string(), text);
        }
        for text in [
            "",
            "block",
            "block:0",
            "block:-1",
            "block:70000",
            "block:16385",
            "max:0",
            "random",
            "random:-1",
            "random-block:128",
            "random-block:128:65",
            "block:128:1",
            "None",
        ] {
            assert!(text.parse::<PaddingPolicy>().is_err(), "{text}");
        }
        assert_eq!(PaddingPolicy::default().to_string(), "block:128");
    }
}
