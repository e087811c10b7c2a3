//! A query policy and a response policy, measured together, and the
//! default grid of pairs.
//!
//! Syntax: `QUERY[/RESPONSE]`, each a [`PaddingPolicy`] (`none`,
//! `block:N`, `max:N`, `random:N`, `random-block:N:K`). Without `/` the
//! same policy pads both. A response part that starts with a digit keeps
//! the query policy's kind and gives only its numbers: `block:128/468` is
//! `block:128` for queries and `block:468` for responses,
//! `random-block:128:2/468:1` is `random-block:468:1` for responses.
//! Displayed in that shortest form.

use std::{fmt, str::FromStr};

use crate::padding::PaddingPolicy;

/// The policy for queries and the one for responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyPair {
    /// How queries are padded.
    pub query: PaddingPolicy,
    /// How responses are padded.
    pub response: PaddingPolicy,
}

impl PolicyPair {
    /// No padding either way: the trace as it is.
    pub const NONE: Self = Self {
        query: PaddingPolicy::None,
        response: PaddingPolicy::None,
    };

    /// Whether either side's padded length depends on chance.
    pub fn is_random(&self) -> bool {
        self.query.is_random() || self.response.is_random()
    }
}

/// The pairs measured when none is given: no padding, RFC 8467's
/// block-length candidates (query blocks 32 to 256 against response
/// blocks 128 to 1024, the recommended 128/468 among them), and one each
/// of its maximal-length, random-length and random-block-length policies.
pub fn default_grid() -> Vec<PolicyPair> {
    const QUERY_BLOCKS: [u16; 4] = [32, 64, 128, 256];
    const RESPONSE_BLOCKS: [u16; 4] = [128, 256, 468, 1024];
    let mut grid = vec!["none".to_owned()];
    for query in QUERY_BLOCKS {
        for response in RESPONSE_BLOCKS {
            grid.push(format!("block:{query}/{response}"));
        }
    }
    for pair in [
        "max:1500/4096",
        "random:64/256",
        "random-block:128:1/468:1",
        "random-block:128:2/468:1",
    ] {
        grid.push(pair.to_owned());
    }
    grid.iter()
        .map(|text| text.parse::<PolicyPair>().expect("the default grid parses"))
        .collect()
}

/// A policy pair that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected QUERY[/RESPONSE], each \"none\", \"block:N\", \"max:N\", \"random:N\" or \
     \"random-block:N:K\" (a RESPONSE of only numbers keeps the query's kind), found {0:?}"
)]
pub struct BadPolicyPair(pub String);

impl FromStr for PolicyPair {
    type Err = BadPolicyPair;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadPolicyPair(text.to_owned());
        let (query_text, response_text) = match text.split_once('/') {
            Some((query, response)) => (query, Some(response)),
            None => (text, None),
        };
        let query: PaddingPolicy = query_text.parse().map_err(|_| bad())?;
        let response = match response_text {
            None => query,
            Some(numbers) if numbers.starts_with(|c: char| c.is_ascii_digit()) => {
                let kind = kind(&query).ok_or_else(bad)?;
                format!("{kind}:{numbers}").parse().map_err(|_| bad())?
            }
            Some(full) => full.parse().map_err(|_| bad())?,
        };
        Ok(Self { query, response })
    }
}

impl fmt::Display for PolicyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.query == self.response {
            return write!(f, "{}", self.query);
        }
        let response = self.response.to_string();
        match kind(&self.query) {
            Some(kind) if kind == kind_of_text(&response) => {
                let numbers = response.get(kind.len() + 1..).unwrap_or_default();
                write!(f, "{}/{numbers}", self.query)
            }
            _ => write!(f, "{}/{response}", self.query),
        }
    }
}

/// The name of a policy with numbers, as written before its first `:`.
fn kind(policy: &PaddingPolicy) -> Option<&'static str> {
    match policy {
        PaddingPolicy::None => None,
        PaddingPolicy::Block(_) => Some("block"),
        PaddingPolicy::Max(_) => Some("max"),
        PaddingPolicy::Random(_) => Some("random"),
        PaddingPolicy::RandomBlock { .. } => Some("random-block"),
    }
}

fn kind_of_text(text: &str) -> &str {
    text.split(':').next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(text: &str) -> PolicyPair {
        text.parse().unwrap()
    }

    #[test]
    fn a_numbers_only_response_keeps_the_query_kind() {
        let block = pair("block:128/468");
        assert_eq!(block.query.to_string(), "block:128");
        assert_eq!(block.response.to_string(), "block:468");
        let random = pair("random-block:128:2/468:1");
        assert_eq!(random.response.to_string(), "random-block:468:1");
        assert_eq!(pair("max:1500/4096").response.to_string(), "max:4096");
    }

    #[test]
    fn one_policy_pads_both_sides() {
        let both = pair("block:128");
        assert_eq!(both.query, both.response);
        assert_eq!(pair("none").response, PaddingPolicy::None);
    }

    #[test]
    fn displays_in_the_shortest_form_and_parses_back() {
        for (text, shown) in [
            ("none", "none"),
            ("none/none", "none"),
            ("block:128/block:468", "block:128/468"),
            ("block:128/468", "block:128/468"),
            ("block:128/max:4096", "block:128/max:4096"),
            (
                "random:16/random-block:468:1",
                "random:16/random-block:468:1",
            ),
            ("random-block:128:2/468:1", "random-block:128:2/468:1"),
            ("none/block:468", "none/block:468"),
            ("block:468/none", "block:468/none"),
        ] {
            assert_eq!(pair(text).to_string(), shown, "{text}");
            assert_eq!(pair(shown), pair(text), "{shown}");
        }
    }

    #[test]
    fn malformed_pairs_are_refused() {
        for text in [
            "",
            "/",
            "block:128/",
            "none/468",
            "block:128/468/512",
            "block:128/468:1",
            "random-block:128:2/468",
            "blok:128",
        ] {
            assert!(text.parse::<PolicyPair>().is_err(), "{text}");
        }
    }

    #[test]
    fn the_default_grid_holds_the_recommended_pair_and_every_kind() {
        let grid = default_grid();
        assert_eq!(grid.len(), 21);
        assert!(grid.contains(&pair("block:128/468")));
        assert!(grid.contains(&pair("none")));
        for kind in ["max:", "random:", "random-block:"] {
            assert!(
                grid.iter().any(|p| p.to_string().starts_with(kind)),
                "{kind}"
            );
        }
    }
}
