//! How long an answer may be kept, and with which TTLs (RFC 2181 §8,
//! RFC 2308 §5 and §7): positive answers live as long as their shortest
//! TTL, clamped to `[min_ttl, max_ttl]`; negative ones as long as the SOA
//! says, capped by `max_negative_ttl`; a server failure for a few seconds.
//! Truncated answers and other errors are not kept.

use crate::wire::{Answer, Rcode, Section};

/// Longest a SERVFAIL from upstream is kept (RFC 2308 §7 allows caching
/// it; a few seconds spare the upstreams without hiding a recovery).
pub const SERVFAIL_TTL: u32 = 5;

/// The TTL limits from `[cache]`, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Shortest TTL stored.
    pub min_ttl: u32,
    /// Longest TTL stored.
    pub max_ttl: u32,
    /// Longest negative TTL.
    pub max_negative_ttl: u32,
}

/// Prepares `answer` for the cache: rewrites its TTLs as they will be
/// stored and returns how long it stays fresh, in seconds; `None` when it
/// must not be cached.
pub fn prepare(answer: &mut Answer, limits: &Limits) -> Option<u32> {
    if answer.is_truncated() {
        return None;
    }
    let rcode = answer.rcode();
    let kind = match rcode {
        0 if has_answers(answer) => Kind::Positive,
        0 => Kind::Negative,
        r if r == Rcode::NxDomain as u16 => Kind::Negative,
        r if r == Rcode::ServFail as u16 => Kind::ServerFailure,
        _ => return None,
    };
    let lifetime = match kind {
        Kind::Positive => clamp_all(answer, limits)?,
        Kind::Negative => negative(answer, limits)?,
        Kind::ServerFailure => {
            answer
                .rewrite_ttls(|_, _, ttl| ttl.min(SERVFAIL_TTL))
                .ok()?;
            SERVFAIL_TTL
        }
    };
    (lifetime > 0).then_some(lifetime)
}

enum Kind {
    Positive,
    Negative,
    ServerFailure,
}

fn has_answers(answer: &Answer) -> bool {
    crate::wire::Header::parse(answer.as_bytes()).is_ok_and(|h| h.ancount() > 0)
}

/// Clamps every TTL and returns the shortest.
fn clamp_all(answer: &mut Answer, limits: &Limits) -> Option<u32> {
    let mut shortest = u32::MAX;
    answer
        .rewrite_ttls(|_, _, ttl| {
            let ttl = ttl.clamp(limits.min_ttl, limits.max_ttl);
            shortest = shortest.min(ttl);
            ttl
        })
        .ok()?;
    (shortest != u32::MAX).then_some(shortest)
}

/// RFC 2308 §5: the negative TTL is the smaller of the SOA's TTL and its
/// MINIMUM field, here capped by `max_negative_ttl`; the SOA is stored with
/// that TTL. Without an SOA in the authority section nothing is cached.
fn negative(answer: &mut Answer, limits: &Limits) -> Option<u32> {
    let message = answer.as_bytes().to_vec();
    let mut lifetime = None::<u32>;
    let mut other_shortest = u32::MAX;
    answer
        .rewrite_ttls(|section, span, ttl| {
            let soa_minimum = (section == Section::Authority)
                .then(|| span.soa_minimum(&message))
                .flatten();
            match soa_minimum {
                Some(minimum) if lifetime.is_none() => {
                    let negative = ttl.min(minimum).min(limits.max_negative_ttl);
                    lifetime = Some(negative);
                    negative
                }
                _ => {
                    let ttl = ttl.clamp(limits.min_ttl, limits.max_ttl);
                    other_shortest = other_shortest.min(ttl);
                    ttl
                }
            }
        })
        .ok()?;
    // A CNAME chain ending in NXDOMAIN lives no longer than its CNAMEs.
    lifetime.map(|negative| negative.min(other_shortest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Question, Records, read_ttl};
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    const LIMITS: Limits = Limits {
        min_ttl: 10,
        max_ttl: 1000,
        max_negative_ttl: 600,
    };

    fn answer(rcode: ResponseCode, answers: &[u32], soa: Option<(u32, u32)>, tc: bool) -> Answer {
        let name = Name::from_ascii("a.test.").unwrap();
        let mut message = Message::new(1, MessageType::Response, OpCode::Query);
        message.metadata.response_code = rcode;
        message.metadata.truncation = tc;
        message.add_query(Query::query(name.clone(), RecordType::A));
        for &ttl in answers {
            message.add_answer(Record::from_rdata(
                name.clone(),
                ttl,
                RData::A(A::new(192, 0, 2, 1)),
            ));
        }
        if let Some((ttl, minimum)) = soa {
            let soa = SOA::new(name.clone(), name.clone(), 1, 2, 3, 4, minimum);
            message.add_authority(Record::from_rdata(name, ttl, RData::SOA(soa)));
        }
        let bytes = message.to_vec().unwrap();
        let question = Question::parse(&bytes, 12).unwrap();
        Answer::from_upstream(&bytes, &question).unwrap().0
    }

    fn ttls(answer: &Answer) -> Vec<u32> {
        Records::new(answer.as_bytes())
            .unwrap()
            .map(|r| read_ttl(answer.as_bytes(), r.unwrap().1.ttl_offset()).unwrap())
            .collect()
    }

    #[test]
    fn positive_lives_as_long_as_its_shortest_clamped_ttl() {
        let mut a = answer(ResponseCode::NoError, &[300, 60], None, false);
        assert_eq!(prepare(&mut a, &LIMITS), Some(60));
        let mut short = answer(ResponseCode::NoError, &[2, 5000], None, false);
        assert_eq!(prepare(&mut short, &LIMITS), Some(10));
        assert_eq!(ttls(&short), [10, 1000], "stored TTLs are clamped too");
    }

    #[test]
    fn negative_takes_the_smaller_of_soa_ttl_and_minimum() {
        let mut nx = answer(ResponseCode::NXDomain, &[], Some((300, 120)), false);
        assert_eq!(prepare(&mut nx, &LIMITS), Some(120));
        assert_eq!(ttls(&nx), [120], "the SOA carries the negative TTL");
        let mut nodata = answer(ResponseCode::NoError, &[], Some((3600, 7200)), false);
        assert_eq!(
            prepare(&mut nodata, &LIMITS),
            Some(600),
            "capped by max_negative_ttl"
        );
    }

    #[test]
    fn negative_without_soa_truncated_and_refused_are_not_kept() {
        assert_eq!(
            prepare(
                &mut answer(ResponseCode::NXDomain, &[], None, false),
                &LIMITS
            ),
            None
        );
        assert_eq!(
            prepare(
                &mut answer(ResponseCode::NoError, &[300], None, true),
                &LIMITS
            ),
            None
        );
        assert_eq!(
            prepare(
                &mut answer(ResponseCode::Refused, &[], None, false),
                &LIMITS
            ),
            None
        );
    }

    #[test]
    fn servfail_is_kept_a_few_seconds() {
        let mut failed = answer(ResponseCode::ServFail, &[], None, false);
        assert_eq!(prepare(&mut failed, &LIMITS), Some(SERVFAIL_TTL));
    }

    #[test]
    fn zero_ttl_is_not_kept() {
        let limits = Limits {
            min_ttl: 0,
            ..LIMITS
        };
        assert_eq!(
            prepare(
                &mut answer(ResponseCode::NoError, &[0], None, false),
                &limits
            ),
            None
        );
    }
}
