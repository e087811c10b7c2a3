//! The metrics of one policy pair on one trace (docs/padding.md gives the
//! formulas and a worked example).
//!
//! - beta: padded octets over unpadded octets (queries, responses, both).
//!   Exact: each message counts the mean of its spread.
//! - phi: the attacker's cost of RFC 8467 Appendix A's study. Exact: for
//!   random policies from the spreads' size distributions.
//! - distinct pairs, Shannon entropy and unique share of the padded size
//!   pairs: from the padded histogram; for random policies, the mean over
//!   `runs` draws seeded from `seed`.
//!
//! Everything works on the histogram of distinct unpadded pairs, never on
//! single transactions (except the draws, which are linear).

use std::{collections::HashMap, hash::Hash, num::NonZeroU32};

// Fixed hashing: the same trace is summed in the same order every run, so
// the printed numbers repeat to the last digit.
use foldhash::fast::FixedState;
use rand::{SeedableRng, rngs::StdRng};

use super::{
    policy::PolicyPair,
    trace::{Message, Trace},
};
use crate::padding::{PaddingPolicy, Spread};

/// How the evaluator pads and draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Largest padded message, in octets, for queries and responses alike
    /// (default 65,535: what a TCP or TLS stream can frame, RFC 1035
    /// §4.2.2). Padding never goes beyond it, nor below the message.
    pub limit: usize,
    /// Draws averaged for a random policy (default 20).
    pub runs: NonZeroU32,
    /// Seed of the first draw; draw `k` uses `seed + k` (default 0).
    pub seed: u64,
}

/// Default of [`Settings::limit`].
pub const DEFAULT_LIMIT: usize = 65_535;
/// Default of [`Settings::runs`].
pub const DEFAULT_RUNS: NonZeroU32 = match NonZeroU32::new(20) {
    Some(runs) => runs,
    None => unreachable!(),
};

impl Default for Settings {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            runs: DEFAULT_RUNS,
            seed: 0,
        }
    }
}

/// What one policy pair costs and leaks on one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The policies measured.
    pub policy: PolicyPair,
    /// Transactions in the trace (N).
    pub n: u64,
    /// Padded over unpadded octets, queries and responses together.
    pub beta: f64,
    /// Padded over unpadded octets of queries.
    pub beta_q: f64,
    /// Padded over unpadded octets of responses.
    pub beta_r: f64,
    /// The attacker's cost, from 1/N (every transaction told apart) to 1
    /// (all look alike).
    pub phi: f64,
    /// Distinct padded (query, response) size pairs.
    pub distinct: f64,
    /// Shannon entropy of the padded size pairs, in bits.
    pub entropy_bits: f64,
    /// Share of transactions whose padded size pair no other has.
    pub unique_share: f64,
    /// Draws averaged (1 for a deterministic pair).
    pub runs: u32,
    /// Expected number of queries of each padded size, by size.
    pub query_sizes: Vec<(usize, f64)>,
    /// Expected number of responses of each padded size, by size.
    pub response_sizes: Vec<(usize, f64)>,
}

/// Measures `policy` on `trace`.
pub fn evaluate(trace: &Trace, policy: &PolicyPair, settings: &Settings) -> Evaluation {
    let index = Indexed::new(trace, policy, settings.limit);
    let n = trace.len();
    let (beta_q, beta_r, beta) = index.beta();
    let phi = index.phi() / (n as f64 * n as f64);
    let runs = match policy.is_random() {
        true => settings.runs.get(),
        false => 1,
    };
    let mut shape = Shape::default();
    for run in 0..runs {
        let mut rng = StdRng::seed_from_u64(settings.seed.wrapping_add(u64::from(run)));
        shape.add(&Shape::of(&index.draw(&mut rng), n));
    }
    let runs_f = f64::from(runs);
    Evaluation {
        policy: *policy,
        n,
        beta,
        beta_q,
        beta_r,
        phi,
        distinct: shape.distinct / runs_f,
        entropy_bits: shape.entropy_bits / runs_f,
        unique_share: shape.unique_share / runs_f,
        runs,
        query_sizes: index
            .queries
            .marginal(index.pairs.iter().map(|p| (p.0, p.2))),
        response_sizes: index
            .responses
            .marginal(index.pairs.iter().map(|p| (p.1, p.2))),
    }
}

//---- One side: the distinct messages and their padded sizes ----

/// The padded sizes one distinct message may get, with their chances.
#[derive(Debug, Clone)]
struct Outcomes {
    unpadded: usize,
    spread: Option<Spread>,
    /// (padded size, probability), sizes distinct and ascending.
    sizes: Vec<(usize, f64)>,
}

impl Outcomes {
    fn new(message: Message, policy: &PaddingPolicy, limit: usize) -> Self {
        let unpadded = usize::from(message.len);
        let spread = policy.spread(message.with_empty_option(), limit);
        let sizes = match spread {
            None => vec![(unpadded, 1.0)],
            Some(spread) => {
                let share = 1.0 / spread.count() as f64;
                let mut sizes: Vec<(usize, f64)> = Vec::with_capacity(spread.count());
                // Outcomes come in order; repeats (cut to the limit) are adjacent.
                for size in spread.iter() {
                    match sizes.last_mut() {
                        Some((last, chance)) if *last == size => *chance += share,
                        _ => sizes.push((size, share)),
                    }
                }
                sizes
            }
        };
        Self {
            unpadded,
            spread,
            sizes,
        }
    }

    fn mean(&self) -> f64 {
        self.sizes.iter().map(|(size, p)| *size as f64 * p).sum()
    }

    fn draw(&self, rng: &mut StdRng) -> usize {
        match self.spread {
            None => self.unpadded,
            Some(spread) => spread.draw(rng),
        }
    }
}

/// The distinct messages of one side, each with its outcomes.
#[derive(Debug, Default)]
struct Side {
    outcomes: Vec<Outcomes>,
}

impl Side {
    fn marginal(&self, counts: impl Iterator<Item = (usize, u64)>) -> Vec<(usize, f64)> {
        let mut by_size: HashMap<usize, f64, FixedState> = HashMap::default();
        for (message, count) in counts {
            for (size, p) in &self.outcomes[message].sizes {
                *by_size.entry(*size).or_default() += count as f64 * p;
            }
        }
        let mut sizes: Vec<(usize, f64)> = by_size.into_iter().collect();
        sizes.sort_by_key(|(size, _)| *size);
        sizes
    }
}

/// The trace with its distinct messages numbered per side.
#[derive(Debug)]
struct Indexed {
    queries: Side,
    responses: Side,
    /// (query index, response index, count): the unpadded histogram U.
    pairs: Vec<(usize, usize, u64)>,
}

impl Indexed {
    fn new(trace: &Trace, policy: &PolicyPair, limit: usize) -> Self {
        let mut numbers: [HashMap<Message, usize, FixedState>; 2] = Default::default();
        let mut sides = [Side::default(), Side::default()];
        let policies = [policy.query, policy.response];
        let mut number = |side: usize, message: Message| {
            *numbers[side].entry(message).or_insert_with(|| {
                let outcomes = &mut sides[side].outcomes;
                outcomes.push(Outcomes::new(message, &policies[side], limit));
                outcomes.len() - 1
            })
        };
        // The trace's hash order differs between runs; numbering and draws
        // must not.
        let mut sorted: Vec<_> = trace.pairs().collect();
        sorted.sort_unstable();
        let pairs: Vec<(usize, usize, u64)> = sorted
            .into_iter()
            .map(|(pair, count)| (number(0, pair.query), number(1, pair.response), count))
            .collect();
        let [queries, responses] = sides;
        Self {
            queries,
            responses,
            pairs,
        }
    }

    /// (beta_q, beta_r, beta), from each message's mean padded size.
    fn beta(&self) -> (f64, f64, f64) {
        let (mut padded, mut unpadded) = ([0.0; 2], [0.0; 2]);
        for &(q, r, count) in &self.pairs {
            let count = count as f64;
            for (side, outcomes) in [&self.queries.outcomes[q], &self.responses.outcomes[r]]
                .into_iter()
                .enumerate()
            {
                padded[side] += count * outcomes.mean();
                unpadded[side] += count * outcomes.unpadded as f64;
            }
        }
        (
            padded[0] / unpadded[0],
            padded[1] / unpadded[1],
            (padded[0] + padded[1]) / (unpadded[0] + unpadded[1]),
        )
    }

    /// phi times N²: the sum over padded pairs (x, y) of E[P(x,y)] times
    /// A(x,y), the number of transactions that can be padded to (x, y).
    /// Equal to the sum over unpadded pairs of U times the expected P over
    /// their reach, and to the sum of P² for a deterministic pair.
    fn phi(&self) -> f64 {
        // First along the response axis: per (query message, padded y).
        let mut half: HashMap<(usize, usize), (f64, f64), FixedState> = HashMap::default();
        for &(q, r, count) in &self.pairs {
            let count = count as f64;
            for &(y, p) in &self.responses.outcomes[r].sizes {
                let cell = half.entry((q, y)).or_default();
                cell.0 += count * p;
                cell.1 += count;
            }
        }
        // Then along the query axis: per padded (x, y).
        let mut full: HashMap<(usize, usize), (f64, f64), FixedState> = HashMap::default();
        for ((q, y), (expected, reach)) in half {
            for &(x, p) in &self.queries.outcomes[q].sizes {
                let cell = full.entry((x, y)).or_default();
                cell.0 += expected * p;
                cell.1 += reach;
            }
        }
        full.values()
            .map(|(expected, reach)| expected * reach)
            .sum()
    }

    /// One draw of every transaction's padded sizes: the padded histogram P.
    fn draw(&self, rng: &mut StdRng) -> HashMap<(usize, usize), u64, FixedState> {
        let mut padded: HashMap<(usize, usize), u64, FixedState> = HashMap::default();
        for &(q, r, count) in &self.pairs {
            let (query, response) = (&self.queries.outcomes[q], &self.responses.outcomes[r]);
            if query.sizes.len() == 1 && response.sizes.len() == 1 {
                *padded
                    .entry((query.sizes[0].0, response.sizes[0].0))
                    .or_default() += count;
                continue;
            }
            for _ in 0..count {
                *padded
                    .entry((query.draw(rng), response.draw(rng)))
                    .or_default() += 1;
            }
        }
        padded
    }
}

//---- Shape of a padded histogram ----

/// Distinct pairs, entropy and unique share of a histogram (or their sums
/// over several draws).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Shape {
    distinct: f64,
    entropy_bits: f64,
    unique_share: f64,
}

impl Shape {
    fn of<K: Eq + Hash>(histogram: &HashMap<K, u64, FixedState>, n: u64) -> Self {
        let n_f = n as f64;
        let entropy_bits = histogram
            .values()
            .map(|&count| {
                let p = count as f64 / n_f;
                -p * p.log2()
            })
            .sum();
        let unique = histogram.values().filter(|&&count| count == 1).count();
        Self {
            distinct: histogram.len() as f64,
            entropy_bits,
            unique_share: unique as f64 / n_f,
        }
    }

    fn add(&mut self, other: &Self) {
        self.distinct += other.distinct;
        self.entropy_bits += other.entropy_bits;
        self.unique_share += other.unique_share;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::padding_lab::{Source, Transaction};

    fn message(len: u16, has_opt: bool) -> Message {
        Message { len, has_opt }
    }

    fn trace(pairs: &[(u16, bool, u16, bool)]) -> Trace {
        let mut trace = Trace::new(Source::Csv { with_opt: true });
        for &(q, qopt, r, ropt) in pairs {
            trace.add(Transaction {
                query: message(q, qopt),
                response: message(r, ropt),
            });
        }
        trace
    }

    fn evaluation(trace: &Trace, policy: &str, limit: usize) -> Evaluation {
        let settings = Settings {
            limit,
            ..Settings::default()
        };
        evaluate(trace, &policy.parse().unwrap(), &settings)
    }

    /// Every padded size each policy can give each message of a trace of
    /// all sizes from 12 to 700, with and without OPT.
    fn all_outcomes(policy: &str, limit: usize) -> Vec<(usize, bool, usize)> {
        let policy: PaddingPolicy = policy.parse().unwrap();
        let mut seen = Vec::new();
        for len in 12..=700 {
            for has_opt in [false, true] {
                let outcomes = Outcomes::new(message(len, has_opt), &policy, limit);
                let total: f64 = outcomes.sizes.iter().map(|(_, p)| p).sum();
                assert!((total - 1.0).abs() < 1e-12);
                for (size, _) in outcomes.sizes {
                    seen.push((usize::from(len), has_opt, size));
                }
            }
        }
        seen
    }

    #[test]
    fn block_sizes_are_multiples_that_hold_the_option() {
        for (len, has_opt, size) in all_outcomes("block:128", 65_535) {
            let needed = len + 4 + if has_opt { 0 } else { 11 };
            assert_eq!(size % 128, 0, "{len}");
            assert!(size >= needed && size - needed < 128, "{len} -> {size}");
        }
    }

    #[test]
    fn no_policy_pads_beyond_the_limit() {
        for policy in ["block:468", "max:1500", "random:300", "random-block:128:3"] {
            for (len, has_opt, size) in all_outcomes(policy, 512) {
                let needed = len + 4 + if has_opt { 0 } else { 11 };
                assert!(size <= 512.max(needed), "{policy}: {len} -> {size}");
                assert!(size >= needed, "{policy}: {len} -> {size}");
            }
        }
    }

    #[test]
    fn random_sizes_stay_in_their_range() {
        for (len, has_opt, size) in all_outcomes("random:40", 65_535) {
            let needed = len + 4 + if has_opt { 0 } else { 11 };
            assert!((needed..=needed + 40).contains(&size));
        }
        for (len, has_opt, size) in all_outcomes("random-block:64:2", 65_535) {
            let first = (len + 4 + if has_opt { 0 } else { 11 }).next_multiple_of(64);
            assert_eq!(size % 64, 0);
            assert!((first..=first + 128).contains(&size), "{len} -> {size}");
        }
        for (len, has_opt, size) in all_outcomes("max:600", 65_535) {
            let needed = len + 4 + if has_opt { 0 } else { 11 };
            assert_eq!(size, needed.max(600), "{len}");
        }
    }

    #[test]
    fn none_keeps_the_unpadded_sizes() {
        let trace = trace(&[
            (30, false, 90, true),
            (30, false, 90, true),
            (40, true, 60, false),
        ]);
        let none = evaluation(&trace, "none", 65_535);
        assert_eq!((none.beta, none.beta_q, none.beta_r), (1.0, 1.0, 1.0));
        assert_eq!(none.distinct, 2.0);
        assert_eq!(none.phi, 5.0 / 9.0);
        assert_eq!(none.query_sizes, [(30, 2.0), (40, 1.0)]);
    }

    #[test]
    fn phi_is_one_when_every_transaction_looks_alike() {
        let trace = trace(&[(30, false, 90, true), (60, true, 300, false)]);
        let max = evaluation(&trace, "max:512/1024", 65_535);
        assert_eq!((max.phi, max.distinct, max.entropy_bits), (1.0, 1.0, 0.0));
        assert_eq!(max.unique_share, 0.0);
    }

    #[test]
    fn random_metrics_repeat_with_the_same_seed_and_vary_with_another() {
        let pairs: Vec<_> = (0..300)
            .map(|i| (20 + i % 10, false, 60 + i % 7, true))
            .collect();
        let trace = trace(&pairs);
        let policy: PolicyPair = "random:4/16".parse().unwrap();
        let seeded = |seed| {
            let settings = Settings {
                seed,
                ..Settings::default()
            };
            evaluate(&trace, &policy, &settings)
        };
        let (first, again, other) = (seeded(7), seeded(7), seeded(8));
        assert_eq!(first, again);
        assert_eq!(first.runs, 20);
        assert_ne!(
            (first.distinct, first.entropy_bits),
            (other.distinct, other.entropy_bits)
        );
        assert_eq!(first.phi, other.phi, "phi is exact, not drawn");
        assert_eq!(first.beta, other.beta, "beta is exact, not drawn");
    }

    #[test]
    fn drawn_beta_converges_to_the_exact_one() {
        let pairs: Vec<_> = (20..220).map(|q| (q, q % 2 == 0, q * 2, true)).collect();
        let trace = trace(&pairs);
        let index = Indexed::new(&trace, &"random-block:64:3/none".parse().unwrap(), 65_535);
        let (exact_q, _, _) = index.beta();
        let mut rng = StdRng::seed_from_u64(1);
        let mut padded = 0.0;
        let rounds = 200;
        for _ in 0..rounds {
            for ((x, _), count) in index.draw(&mut rng) {
                padded += (x as u64 * count) as f64;
            }
        }
        let unpadded: f64 = (20..220).map(f64::from).sum();
        let drawn_q = padded / rounds as f64 / unpadded;
        assert!(
            (drawn_q - exact_q).abs() / exact_q < 0.01,
            "{drawn_q} vs {exact_q}"
        );
    }
}
