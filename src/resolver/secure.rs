//! DNSSEC on the miss path: an upstream answer, asked with DO=1 and CD=1,
//! turned into what the client that asked should get (RFC 4035 §3.2):
//! validated unless the client set CD, AD set only when secure, SERVFAIL
//! with an Extended DNS Error when bogus, and without RRSIG, NSEC and NSEC3
//! records when the client did not set DO.

use std::time::Instant;

use hickory_proto::{
    op::Message,
    rr::{Name, RecordType},
    serialize::binary::BinEncodable,
};
use tracing::debug;

use crate::{
    dnssec::{Failure, Fetch, FetchError, Validator, Verdict, ede},
    metrics::DnssecCounters,
    upstream::Pool,
    wire::{Answer, Query, Question, UpstreamQuestion, rtype},
};

/// DS and DNSKEY fetches through the upstream pool, within a client's
/// deadline.
pub struct PoolFetch<'a> {
    /// The pool the client's own query went through.
    pub pool: &'a Pool,
    /// The client query's deadline.
    pub deadline: Instant,
    /// Where fetches and verdicts are counted.
    pub counters: &'a DnssecCounters,
}

impl Fetch for PoolFetch<'_> {
    async fn fetch(&self, name: &Name, rtype: RecordType) -> Result<Message, FetchError> {
        let mut wire = name.to_bytes().map_err(|_| FetchError)?;
        wire.extend_from_slice(&u16::from(rtype).to_be_bytes());
        wire.extend_from_slice(&1u16.to_be_bytes()); // class IN
        let question = Question::parse(&wire, 0).map_err(|_| FetchError)?;
        self.counters.key_fetches.inc();
        let asked = UpstreamQuestion {
            question,
            dnssec_ok: true,
            checking_disabled: true,
        };
        let exchange = tokio::time::timeout_at(
            self.deadline.into(),
            self.pool.exchange(&asked, self.deadline),
        )
        .await
        .map_err(|_| FetchError)?
        .map_err(|_| FetchError)?;
        Message::from_vec(exchange.reply.answer.as_bytes()).map_err(|_| FetchError)
    }
}

/// What `query`'s client gets of `answer`, validated by `validator`.
pub async fn judge(
    validator: &Validator,
    fetch: &PoolFetch<'_>,
    query: &Query<'_>,
    answer: Answer,
) -> Option<Answer> {
    let counters = fetch.counters;
    let message = Message::from_vec(answer.as_bytes()).ok();
    if query.checking_disabled() {
        // The client validates itself and wants the data as it is.
        counters.unchecked.inc();
        return for_client(answer, message.as_ref(), query, false, None);
    }
    let Some(message) = message else {
        counters.bogus.inc();
        let reason = (ede::DNSSEC_BOGUS, "malformed upstream answer");
        return Answer::servfail(query.question(), reason).ok();
    };
    let question = message.queries.first()?;
    let (qname, qtype) = (question.name(), question.query_type());
    let validated = validator.validate(qname, qtype, &message, fetch).await;
    debug!(verdict = ?validated.verdict, "validated");
    match validated.verdict {
        Verdict::Secure => {
            counters.secure.inc();
            for_client(answer, Some(&message), query, true, validated.valid_for)
        }
        Verdict::Insecure => {
            counters.insecure.inc();
            for_client(answer, Some(&message), query, false, None)
        }
        Verdict::Bogus(failure) => {
            counters.bogus.inc();
            servfail(query, &failure)
        }
        Verdict::Indeterminate(failure) => {
            counters.indeterminate.inc();
            servfail(query, &failure)
        }
    }
}

/// `answer` as `query`'s client gets it: AD set when `authentic`, TTLs no
/// longer than `valid_for`, DNSSEC records hidden unless it set DO.
fn for_client(
    answer: Answer,
    message: Option<&Message>,
    query: &Query<'_>,
    authentic: bool,
    valid_for: Option<u32>,
) -> Option<Answer> {
    let mut answer = match message {
        Some(message) if !query.dnssec_ok() => without_dnssec_records(answer, message, query)?,
        _ => answer,
    };
    if let Some(valid_for) = valid_for {
        answer.rewrite_ttls(|_, _, ttl| ttl.min(valid_for)).ok()?;
    }
    answer.set_authentic(authentic).ok()?;
    Some(answer)
}

/// SERVFAIL for `query` when validation ran out of the query's time.
pub fn out_of_time(query: &Query<'_>) -> Option<Answer> {
    let reason = "DS and DNSKEY fetches did not finish within the timeout";
    Answer::servfail(query.question(), (ede::NO_REACHABLE_AUTHORITY, reason)).ok()
}

/// SERVFAIL for `query`, the EDE saying what failed and where.
fn servfail(query: &Query<'_>, failure: &Failure) -> Option<Answer> {
    let text = failure.to_string();
    Answer::servfail(query.question(), (failure.code, &text)).ok()
}

/// `answer` without the RRSIG, NSEC and NSEC3 records a client that did
/// not set DO must not see (RFC 4035 §3.2.1), unless it asked for them.
fn without_dnssec_records(answer: Answer, message: &Message, query: &Query<'_>) -> Option<Answer> {
    let qtype = query.question().qtype();
    let hidden = |record_type: RecordType| {
        let code = u16::from(record_type);
        code != qtype && matches!(code, rtype::RRSIG | rtype::NSEC | rtype::NSEC3)
    };
    let sections = [&message.answers, &message.authorities, &message.additionals];
    if !sections
        .iter()
        .any(|records| records.iter().any(|r| hidden(r.record_type())))
    {
        return Some(answer);
    }
    let mut stripped = message.clone();
    for records in [
        &mut stripped.answers,
        &mut stripped.authorities,
        &mut stripped.additionals,
    ] {
        records.retain(|record| !hidden(record.record_type()));
    }
    answer.with_message(&stripped.to_vec().ok()?).ok()
}
