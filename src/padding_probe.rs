//! `dotstub padding probe`: what each padding policy costs and shows on the
//! wire of real upstreams. A list of names goes through every configured
//! upstream under every chosen policy, over authenticated TLS, and
//! [`ProbeReport`] gives per upstream × policy the DNS and TLS record sizes
//! of queries and answers, whether and to which block the upstream padded
//! its answers, and the round-trip times.
//!
//! The exchanges themselves are [`crate::upstream::ProbeConn`]'s; this
//! module chooses what to send, in which order, and sums up.
//
// Each policy gets a connection of its own per upstream, opened with one
// unmeasured warm-up query (root NS): it learns the upstream's EDNS size,
// so every measured query meets the same limit, carries the connection's
// edns-tcp-keepalive, and absorbs the TLS 1.3 session tickets that would
// otherwise count as answer records. Queries go one at a time; for name i
// the policies take turns starting at policy i, so no policy always meets
// the upstream's cache cold (or warm) for a name.

use std::{fmt, str::FromStr, time::Duration};

use hickory_proto::serialize::binary::BinEncodable;

use crate::{
    config::Config,
    lookup::{QuestionError, parse_name, parse_qtype},
    padding::{PaddingPolicy, response_block},
    upstream::{ProbeConn, ProbeTarget, Sample, SetupError, UpstreamError},
    wire::{Question, UpstreamQuestion},
};

/// Policies probed when none is given: RFC 8467's candidates (block-length
/// for queries and for responses, random-length, random-block-length,
/// maximal) and no padding as the baseline.
pub const DEFAULT_POLICIES: [&str; 6] = [
    "none",
    "block:128",
    "block:468",
    "random:128",
    "random-block:128:2",
    "max:1232",
];

/// Names probed when no file is given: widely used names of many lengths,
/// so unpadded query sizes differ.
pub const SAMPLE_NAMES: [&str; 16] = [
    "a.co",
    "x.com",
    "bbc.co.uk",
    "google.com",
    "github.com",
    "example.org",
    "wikipedia.org",
    "www.ietf.org",
    "www.iana.org",
    "stackoverflow.com",
    "www.rfc-editor.org",
    "mail.protonmail.com",
    "www.nlnetlabs.nl",
    "dns.quad9.net",
    "en.wikipedia.org",
    "login.microsoftonline.com",
];

/// Consecutive failures after which a policy's connection to an upstream
/// is given up for the rest of the run.
const MAX_CONSECUTIVE_FAILURES: usize = 3;

/// Why the probe could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Nothing to send.
    #[error("no names to probe")]
    NoNames,
    /// A name or the type does not parse.
    #[error(transparent)]
    Question(#[from] QuestionError),
    /// TLS could not be set up for an upstream.
    #[error(transparent)]
    Setup(#[from] SetupError),
}

/// What to probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Policies, each probed on every upstream.
    pub policies: Vec<PaddingPolicy>,
    /// Names asked, in order.
    pub names: Vec<String>,
    /// Record type asked for every name.
    pub qtype: u16,
}

impl ProbeOptions {
    /// `policies` (empty: [`DEFAULT_POLICIES`]), the names of `names_text`
    /// (one per line, `#` starts a comment; `None`: [`SAMPLE_NAMES`]) and
    /// `qtype` (a mnemonic or a number).
    pub fn new(
        policies: Vec<PaddingPolicy>,
        names_text: Option<&str>,
        qtype: &str,
    ) -> Result<Self, ProbeError> {
        let policies = if policies.is_empty() {
            DEFAULT_POLICIES
                .iter()
                .map(|text| PaddingPolicy::from_str(text).expect("default policies parse"))
                .collect()
        } else {
            policies
        };
        let names: Vec<String> = match names_text {
            Some(text) => text
                .lines()
                .map(|line| line.split('#').next().unwrap_or_default().trim())
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect(),
            None => SAMPLE_NAMES.iter().map(|name| (*name).to_owned()).collect(),
        };
        if names.is_empty() {
            return Err(ProbeError::NoNames);
        }
        let qtype = parse_qtype(qtype)?;
        Ok(Self {
            policies,
            names,
            qtype: u16::from(qtype),
        })
    }
}

/// Runs the probe: every name through every upstream of `config` under
/// every policy of `options`. Failed exchanges are counted, not fatal.
pub async fn probe(config: &Config, options: &ProbeOptions) -> Result<ProbeReport, ProbeError> {
    let questions = options
        .names
        .iter()
        .map(|name| question_bytes(name, options.qtype))
        .collect::<Result<Vec<_>, _>>()?;
    let warm_up = question_bytes(".", 2)?;
    let plan = Plan {
        policies: &options.policies,
        questions: &questions,
        warm_up: &warm_up,
        validating: config.dnssec.validate,
    };
    let mut upstreams = Vec::new();
    for upstream in &config.upstreams {
        let target = ProbeTarget::new(upstream, &config.forward)?;
        upstreams.push(plan.run(&upstream.label, &target).await);
    }
    Ok(ProbeReport { upstreams })
}

/// The question section for `name`/`qtype`, class IN.
fn question_bytes(name: &str, qtype: u16) -> Result<Vec<u8>, QuestionError> {
    let bad = || QuestionError::BadName(name.to_owned());
    let bytes = Question::section(&parse_name(name)?.to_bytes().map_err(|_| bad())?, qtype);
    Question::parse(&bytes, 0).map_err(|_| bad())?;
    Ok(bytes)
}

/// One run's questions and policies, applied to each upstream in turn.
struct Plan<'a> {
    policies: &'a [PaddingPolicy],
    questions: &'a [Vec<u8>],
    warm_up: &'a [u8],
    /// DO=1 and CD=1, as dotstub asks when it validates.
    validating: bool,
}

impl Plan<'_> {
    async fn run(&self, label: &str, target: &ProbeTarget) -> UpstreamProbe {
        let count = self.policies.len();
        let mut conns: Vec<Option<ProbeConn>> = (0..count).map(|_| None).collect();
        let mut rows: Vec<ProbeRow> = self
            .policies
            .iter()
            .map(|&policy| ProbeRow::new(policy))
            .collect();
        for (index, question) in self.questions.iter().enumerate() {
            for turn in 0..count {
                let at = (index + turn) % count;
                let (Some(row), Some(slot)) = (rows.get_mut(at), conns.get_mut(at)) else {
                    continue;
                };
                if row.consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
                    row.skipped += 1;
                    continue;
                }
                let result = self.exchange(target, slot, question, &row.policy).await;
                if result.is_err() {
                    *slot = None;
                }
                row.record(result);
            }
        }
        UpstreamProbe {
            label: label.to_owned(),
            limit: target.limit(),
            rows,
        }
    }

    /// One measured exchange, on `slot`'s connection, opened (and warmed
    /// up) first when there is none.
    async fn exchange(
        &self,
        target: &ProbeTarget,
        slot: &mut Option<ProbeConn>,
        question: &[u8],
        policy: &PaddingPolicy,
    ) -> Result<Sample, UpstreamError> {
        let conn = match slot {
            Some(conn) => conn,
            None => {
                let mut conn = target.connect().await?;
                conn.exchange(&self.upstream_question(self.warm_up)?, policy)
                    .await?;
                slot.insert(conn)
            }
        };
        conn.exchange(&self.upstream_question(question)?, policy)
            .await
    }

    fn upstream_question<'q>(
        &self,
        bytes: &'q [u8],
    ) -> Result<UpstreamQuestion<'q>, UpstreamError> {
        Ok(UpstreamQuestion {
            question: Question::parse(bytes, 0).map_err(|_| UpstreamError::Protocol)?,
            dnssec_ok: self.validating,
            checking_disabled: self.validating,
        })
    }
}

//---- Report ----

/// What the probe saw.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// One per upstream, in configured order.
    pub upstreams: Vec<UpstreamProbe>,
}

/// What the probe saw of one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamProbe {
    /// The upstream's label.
    pub label: String,
    /// Its advertised EDNS size at the end of the run: the limit of every
    /// measured query.
    pub limit: usize,
    /// One row per policy, in the order given.
    pub rows: Vec<ProbeRow>,
}

/// One upstream under one policy.
#[derive(Debug, Clone)]
pub struct ProbeRow {
    /// The policy its queries were padded by.
    pub policy: PaddingPolicy,
    /// Every answered query, in the order sent (warm-ups left out).
    pub samples: Vec<Sample>,
    /// Queries that got no answer.
    pub failures: usize,
    /// Why the last failure failed.
    pub last_error: Option<UpstreamError>,
    /// Names not sent: the policy was given up after
    /// `MAX_CONSECUTIVE_FAILURES` failures in a row.
    pub skipped: usize,
    consecutive_failures: usize,
}

impl ProbeRow {
    fn new(policy: PaddingPolicy) -> Self {
        Self {
            policy,
            samples: Vec::new(),
            failures: 0,
            last_error: None,
            skipped: 0,
            consecutive_failures: 0,
        }
    }

    fn record(&mut self, result: Result<Sample, UpstreamError>) {
        match result {
            Ok(sample) => {
                self.samples.push(sample);
                self.consecutive_failures = 0;
            }
            Err(error) => {
                self.failures += 1;
                self.consecutive_failures += 1;
                self.last_error = Some(error);
            }
        }
    }

    /// Answers that carried a Padding option.
    pub fn padded_responses(&self) -> usize {
        self.samples.iter().filter(|s| s.response_padded).count()
    }

    /// The block the upstream padded its answers to (see
    /// [`response_block`]).
    pub fn response_block(&self) -> Option<usize> {
        let padded = self.samples.iter().filter(|s| s.response_padded);
        response_block(padded.map(|s| s.response_len))
    }

    /// Distinct query sizes: what an observer can tell the names apart by.
    pub fn distinct_query_sizes(&self) -> usize {
        let mut sizes: Vec<u64> = self
            .samples
            .iter()
            .map(|s| s.query_records.octets)
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes.len()
    }

    /// The `quantile` (0 to 1) of the round-trip times, nearest rank.
    pub fn rtt_quantile(&self, quantile: f64) -> Option<Duration> {
        let mut rtts: Vec<Duration> = self.samples.iter().map(|s| s.rtt).collect();
        rtts.sort_unstable();
        let rank = (quantile * rtts.len() as f64).ceil() as usize;
        rtts.get(rank.saturating_sub(1)).copied()
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut table = vec![HEADINGS.map(str::to_owned).to_vec()];
        for upstream in &self.upstreams {
            table.extend(upstream.rows.iter().map(|row| row.cells(&upstream.label)));
        }
        // Upstream and policy left-aligned, the figures right-aligned.
        f.write_str(&crate::text_table::aligned(&table, 2))?;
        f.write_str(LEGEND)?;
        for UpstreamProbe { label, limit, .. } in &self.upstreams {
            writeln!(
                f,
                "{label}: queries padded to at most {limit} octets (its EDNS size)"
            )?;
        }
        for upstream in &self.upstreams {
            for row in &upstream.rows {
                let Some(error) = &row.last_error else {
                    continue;
                };
                let (label, policy) = (&upstream.label, row.policy);
                let error = crate::ErrorChain(error);
                write!(f, "{label} {policy}: last failure: {error}")?;
                match row.skipped {
                    0 => writeln!(f)?,
                    skipped => writeln!(f, "; given up, {skipped} names not sent")?,
                }
            }
        }
        Ok(())
    }
}

const HEADINGS: [&str; 13] = [
    "upstream",
    "policy",
    "answered",
    "lost",
    "query dns",
    "query tls",
    "sizes",
    "answer dns",
    "answer tls",
    "padded",
    "block",
    "rtt p50",
    "rtt p90",
];

const LEGEND: &str = "\nSizes in octets: dns is the DNS message, tls the TLS records that \
                      carried it (headers and\nencryption included); sizes counts distinct query \
                      sizes on the wire; block is the greatest of\n512, 468, 256, 128, 64, 32, \
                      16 dividing every padded answer; rtt in milliseconds.\n";

impl ProbeRow {
    fn cells(&self, upstream: &str) -> Vec<String> {
        let samples = &self.samples;
        let range = |values: &mut dyn Iterator<Item = u64>| {
            let values: Vec<u64> = values.collect();
            match (values.iter().min(), values.iter().max()) {
                (Some(min), Some(max)) if min == max => min.to_string(),
                (Some(min), Some(max)) => format!("{min}-{max}"),
                _ => "-".to_owned(),
            }
        };
        let millis = |rtt: Option<Duration>| {
            rtt.map_or("-".to_owned(), |rtt| {
                format!("{:.1}", rtt.as_secs_f64() * 1000.0)
            })
        };
        vec![
            upstream.to_owned(),
            self.policy.to_string(),
            samples.len().to_string(),
            self.failures.to_string(),
            range(&mut samples.iter().map(|s| s.query_len as u64)),
            range(&mut samples.iter().map(|s| s.query_records.octets)),
            self.distinct_query_sizes().to_string(),
            range(&mut samples.iter().map(|s| s.response_len as u64)),
            range(&mut samples.iter().map(|s| s.response_records.octets)),
            format!("{}/{}", self.padded_responses(), samples.len()),
            self.response_block()
                .map_or("-".to_owned(), |block| block.to_string()),
            millis(self.rtt_quantile(0.5)),
            millis(self.rtt_quantile(0.9)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(rtts: &[u64]) -> ProbeRow {
        let mut row = ProbeRow::new(PaddingPolicy::default());
        for (index, &ms) in rtts.iter().enumerate() {
            let records = crate::upstream::Records {
                count: 1,
                octets: 150,
            };
            row.record(Ok(Sample {
                query_len: 128,
                query_records: records,
                response_len: 468 * (index % 2 + 1),
                response_records: records,
                response_padded: true,
                rtt: Duration::from_millis(ms),
            }));
        }
        row
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let row = row(&[5, 1, 4, 2, 3, 10, 9, 8, 7, 6]);
        assert_eq!(row.rtt_quantile(0.5), Some(Duration::from_millis(5)));
        assert_eq!(row.rtt_quantile(0.9), Some(Duration::from_millis(9)));
        assert_eq!(ProbeRow::new(PaddingPolicy::None).rtt_quantile(0.5), None);
        assert_eq!(row.response_block(), Some(468));
        assert_eq!(row.distinct_query_sizes(), 1);
    }

    #[test]
    fn options_default_to_the_sample_and_the_candidates() {
        let options = ProbeOptions::new(Vec::new(), None, "a").unwrap();
        assert_eq!(options.policies.len(), DEFAULT_POLICIES.len());
        assert_eq!(options.names.len(), SAMPLE_NAMES.len());
        assert_eq!(options.qtype, 1);
        let text = "# names\nexample.org\n\n  www.example.org # www\n";
        let options = ProbeOptions::new(Vec::new(), Some(text), "AAAA").unwrap();
        assert_eq!(options.names, ["example.org", "www.example.org"]);
        assert!(matches!(
            ProbeOptions::new(Vec::new(), Some("# none\n"), "A"),
            Err(ProbeError::NoNames)
        ));
        for name in SAMPLE_NAMES {
            question_bytes(name, 1).unwrap();
        }
        assert!(question_bytes("a..b", 1).is_err());
    }
}
