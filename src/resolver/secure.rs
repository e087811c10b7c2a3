//! DNSSEC on the miss path: an upstream answer, asked with DO=1 and CD=1,
//! turned into what the client that asked should get (RFC 4035 §3.2):
//! validated unless the client set CD, AD set only when secure, SERVFAIL
//! with an Extended DNS Error when bogus, and without RRSIG, NSEC and NSEC3
//! records when the client did not set DO.

use std::time::Instant;

use hickory_proto::{
    dnssec::rdata::DNSSECRData,
    op::Message,
    rr::{Name, RData, Record, RecordType},
    serialize::binary::BinEncodable,
};
use tracing::debug;

use crate::{
    dnssec::{Failure, Fetch, FetchError, Validated, Validator, Verdict, ede},
    metrics::DnssecCounters,
    upstream::Pool,
    wire::{Answer, Query, Question, Section, UpstreamQuestion, rtype},
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
        let name = name.to_bytes().map_err(|_| FetchError)?;
        let wire = Question::section(&name, u16::from(rtype));
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

    fn out_of_time(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

/// What `query`'s client gets of `answer`, validated by `validator`
/// within `fetch`'s deadline: SERVFAIL, counted as indeterminate, when
/// validation does not end by then.
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
        return for_client(answer, message.as_ref(), query, None);
    }
    let Some(message) = message else {
        counters.bogus.inc();
        let reason = (ede::DNSSEC_BOGUS, "malformed upstream answer");
        return Answer::servfail(query.question(), reason).ok();
    };
    let question = message.queries.first()?;
    let (qname, qtype) = (question.name(), question.query_type());
    let validation = validator.validate(qname, qtype, &message, fetch);
    let Ok(validated) = tokio::time::timeout_at(fetch.deadline.into(), validation).await else {
        // The DS and DNSKEY fetches did not end in the query's time.
        counters.indeterminate.inc();
        return servfail_out_of_time(query);
    };
    debug!(verdict = ?validated.verdict, "validated");
    match &validated.verdict {
        Verdict::Secure => {
            counters.secure.inc();
            for_client(answer, Some(&message), query, Some(&validated))
        }
        Verdict::Insecure => {
            counters.insecure.inc();
            for_client(answer, Some(&message), query, None)
        }
        Verdict::Bogus(failure) => {
            counters.bogus.inc();
            servfail(query, failure)
        }
        Verdict::Indeterminate(failure) => {
            counters.indeterminate.inc();
            servfail(query, failure)
        }
    }
}

/// `answer` as `query`'s client gets it. When `secure`: AD set, only the
/// RRsets validation checked, in the section they were checked in (no
/// additional section: RFC 4035 §3.2.3), TTLs no longer than the
/// signatures last nor than their Original TTL (RFC 4035 §5.3.3). Always: no RRSIG, NSEC or NSEC3
/// unless the client set DO (RFC 4035 §3.2.1) or asked for that type.
pub fn for_client(
    answer: Answer,
    message: Option<&Message>,
    query: &Query<'_>,
    secure: Option<&Validated>,
) -> Option<Answer> {
    let qtype = query.question().qtype();
    let hidden = |code: u16| {
        !query.dnssec_ok()
            && code != qtype
            && matches!(code, rtype::RRSIG | rtype::NSEC | rtype::NSEC3)
    };
    let keep = |section: Section, record: &Record| {
        if hidden(u16::from(record.record_type())) {
            return false;
        }
        let Some(validated) = secure else {
            return true;
        };
        let covered = match &record.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => sig.input().type_covered,
            _ => record.record_type(),
        };
        section != Section::Additional && validated.is_checked(section, &record.name, covered)
    };
    let mut answer = match message {
        Some(message) => keeping(answer, message, keep)?,
        None => answer,
    };
    if let Some(validated) = secure {
        let valid_for = validated.valid_for.unwrap_or(u32::MAX);
        answer
            .rewrite_ttls(|section, record, ttl| {
                let original = validated.original_ttl(section, RecordType::from(record.rtype));
                ttl.min(valid_for).min(original.unwrap_or(u32::MAX))
            })
            .ok()?;
    }
    answer.set_authentic(secure.is_some()).ok()?;
    Some(answer)
}

/// SERVFAIL for `query` when validation ran out of the query's time.
fn servfail_out_of_time(query: &Query<'_>) -> Option<Answer> {
    let reason = "DS and DNSKEY fetches did not finish within the timeout";
    Answer::servfail(query.question(), (ede::NO_REACHABLE_AUTHORITY, reason)).ok()
}

/// SERVFAIL for `query`, the EDE saying what failed and where.
fn servfail(query: &Query<'_>, failure: &Failure) -> Option<Answer> {
    let text = failure.to_string();
    Answer::servfail(query.question(), (failure.code, &text)).ok()
}

/// `answer` with only the records of `message` that `keep` keeps; the
/// same answer, not re-encoded, when it keeps them all.
fn keeping(
    answer: Answer,
    message: &Message,
    keep: impl Fn(Section, &Record) -> bool,
) -> Option<Answer> {
    let sections = [
        (Section::Answer, &message.answers),
        (Section::Authority, &message.authorities),
        (Section::Additional, &message.additionals),
    ];
    let all_kept = sections
        .iter()
        .all(|(section, records)| records.iter().all(|record| keep(*section, record)));
    if all_kept {
        return Some(answer);
    }
    let mut kept = message.clone();
    for (section, records) in [
        (Section::Answer, &mut kept.answers),
        (Section::Authority, &mut kept.authorities),
        (Section::Additional, &mut kept.additionals),
    ] {
        records.retain(|record| keep(section, record));
    }
    answer.with_message(&kept.to_vec().ok()?).ok()
}
