//! From a client's packet to the reply bytes: parse, join an identical
//! question already in flight or forward it, and write the answer (or the
//! error) for this client.
//!
//! Every accepted query gets a reply within `forward.timeout_ms`: an
//! answer, or SERVFAIL with an Extended DNS Error saying why.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tokio::sync::watch;
use tracing::{Instrument, debug, debug_span};

use crate::{
    metrics::Metrics,
    upstream::{Pool, UpstreamError},
    wire::{
        Answer, Header, NameDisplay, Query, QueryError, Transport, UpstreamQuestion, flag,
        reply::{self, MAX_SHORT_REPLY, ede},
    },
};

/// An upstream's answer to one question, shared by every client that asked it.
#[derive(Debug)]
pub struct Resolved {
    /// The answer, written per client.
    pub answer: Answer,
    /// Index of the upstream that answered.
    pub upstream: usize,
    /// Whether the upstream padded its answer.
    pub padded: bool,
    /// Size of the upstream's answer on the wire.
    pub len: usize,
    /// Round-trip time of the exchange that produced it.
    pub rtt: Duration,
}

/// Why a question got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The deadline passed before any upstream answered.
    #[error("{}", self.as_str())]
    Timeout,
    /// Every upstream failed (refused, TLS, protocol error).
    #[error("{}", self.as_str())]
    Unreachable,
}

impl ResolveError {
    /// What happened, also sent to EDNS clients as EDE EXTRA-TEXT.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "no upstream answered within the timeout",
            Self::Unreachable => "every upstream failed",
        }
    }
}

type Outcome = Result<Arc<Resolved>, ResolveError>;
/// Where followers wait for a leader's outcome.
type Shared = watch::Receiver<Option<Outcome>>;

/// What makes two client questions the same upstream question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    /// Name, type and class, the name in lower case (RFC 4343).
    question: Box<[u8]>,
    dnssec_ok: bool,
    checking_disabled: bool,
}

/// Resolves client queries through the upstream pool.
#[derive(Debug)]
pub struct Resolver {
    pool: Pool,
    /// Questions being asked upstream now. A std mutex: looked up and
    /// updated without awaiting.
    in_flight: Mutex<HashMap<Key, Shared>>,
    timeout: Duration,
    max_udp_size: u16,
    metrics: Arc<Metrics>,
}

impl Resolver {
    /// A resolver forwarding through `pool`; each client query gets
    /// `timeout`, and UDP answers are capped at `max_udp_size`.
    pub fn new(pool: Pool, timeout: Duration, max_udp_size: u16, metrics: Arc<Metrics>) -> Self {
        Self {
            pool,
            in_flight: Mutex::new(HashMap::new()),
            timeout,
            max_udp_size,
            metrics,
        }
    }

    /// The upstream pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Writes into `out` the reply to the client message `packet`, received
    /// over `transport`, and returns its length; `None` means drop it.
    pub async fn reply(
        &self,
        packet: &[u8],
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let query = match Query::parse(packet) {
            Ok(query) => query,
            Err(error) => {
                self.count_refusal(error);
                out.resize(MAX_SHORT_REPLY, 0);
                return reply::write_refusal(packet, error, self.max_udp_size, out);
            }
        };
        if query.edns().is_some_and(|edns| edns.client_subnet) {
            self.metrics.server.client_subnet_stripped.inc();
        }
        let question = query.question();
        let span =
            debug_span!("query", qname = %NameDisplay(question.name()), qtype = question.qtype());
        let outcome = self.resolve(&query).instrument(span.clone()).await;
        // Nothing below awaits, so the span can simply be entered.
        let _entered = span.enter();
        match outcome {
            Ok(resolved) => {
                let (rcode, rtt) = (resolved.answer.rcode(), resolved.rtt);
                debug!(upstream = resolved.upstream, rcode, ?rtt, "answered");
                out.resize(resolved.answer.max_client_len(), 0);
                let len = resolved
                    .answer
                    .write_for_client(&query, transport, self.max_udp_size, out)
                    .ok()?;
                if Header::parse(out).is_ok_and(|h| h.has(flag::TC)) {
                    self.metrics.server.truncated.inc();
                }
                Some(len)
            }
            Err(error) => {
                debug!(%error, "answering SERVFAIL");
                self.metrics.server.servfail.inc();
                out.resize(MAX_SHORT_REPLY, 0);
                let reason = (ede::NO_REACHABLE_AUTHORITY, error.as_str());
                reply::write_servfail(&query, reason, self.max_udp_size, out).ok()
            }
        }
    }

    /// Answers `query` from upstream, sharing the exchange with identical
    /// questions already in flight. Only an answer is shared: when the
    /// exchange it joined fails, a query with time left asks again itself.
    pub async fn resolve(&self, query: &Query<'_>) -> Result<Arc<Resolved>, ResolveError> {
        let deadline = Instant::now() + self.timeout;
        let key = Key::of(query);
        let mut joined = false;
        loop {
            let mut outcome = match self.lead_or_join(&key) {
                Ok(leader) => return self.lead(query, key, leader, deadline).await,
                Err(outcome) => outcome,
            };
            if !joined {
                self.metrics.server.coalesced.inc();
                joined = true;
            }
            let waited =
                tokio::time::timeout_at(deadline.into(), outcome.wait_for(Option::is_some)).await;
            match waited {
                Ok(Ok(shared)) => {
                    if let Some(Ok(resolved)) = shared.as_ref() {
                        return Ok(Arc::clone(resolved));
                    }
                }
                Ok(Err(_leader_cancelled)) => {}
                Err(_elapsed) => return Err(ResolveError::Timeout),
            }
        }
    }

    /// Becomes the leader for `key` (the sender to publish on), or returns
    /// the outcome to wait for of the leader already asking.
    fn lead_or_join(&self, key: &Key) -> Result<watch::Sender<Option<Outcome>>, Shared> {
        let mut in_flight = self.lock();
        match in_flight.get(key) {
            Some(outcome) => Err(outcome.clone()),
            None => {
                let (tx, rx) = watch::channel(None);
                in_flight.insert(key.clone(), rx);
                Ok(tx)
            }
        }
    }

    /// Asks upstream and publishes the outcome to every follower.
    async fn lead(
        &self,
        query: &Query<'_>,
        key: Key,
        publish: watch::Sender<Option<Outcome>>,
        deadline: Instant,
    ) -> Outcome {
        let remove = InFlightGuard {
            resolver: self,
            key,
        };
        let outcome = self.forward(query, deadline).await;
        // Gone from the map before followers wake, so a follower that asks
        // again starts a new exchange instead of finding this one.
        drop(remove);
        publish.send_replace(Some(outcome.clone()));
        outcome
    }

    async fn forward(&self, query: &Query<'_>, deadline: Instant) -> Outcome {
        let question = UpstreamQuestion {
            question: *query.question(),
            dnssec_ok: query.dnssec_ok(),
            checking_disabled: query.checking_disabled(),
        };
        let exchange =
            tokio::time::timeout_at(deadline.into(), self.pool.exchange(&question, deadline))
                .await
                .unwrap_or(Err(UpstreamError::Timeout));
        match exchange {
            Ok(exchange) => Ok(Arc::new(Resolved {
                answer: exchange.reply.answer,
                upstream: exchange.upstream,
                padded: exchange.reply.padded,
                len: exchange.reply.len,
                rtt: exchange.reply.rtt,
            })),
            Err(UpstreamError::Timeout | UpstreamError::Busy) => Err(ResolveError::Timeout),
            Err(_) => Err(ResolveError::Unreachable),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Shared>> {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count_refusal(&self, error: QueryError) {
        let server = &self.metrics.server;
        match error {
            QueryError::TooShort => server.dropped_short.inc(),
            QueryError::NotAQuery => server.dropped_responses.inc(),
            QueryError::Malformed => server.formerr.inc(),
            QueryError::UnsupportedOpcode => server.notimp.inc(),
            QueryError::BadEdnsVersion => server.badvers.inc(),
            QueryError::ZoneTransfer => server.refused.inc(),
        }
    }
}

impl Key {
    fn of(query: &Query<'_>) -> Self {
        let mut question: Box<[u8]> = query.question().as_bytes().into();
        let name_len = query.question().name().len();
        question[..name_len].make_ascii_lowercase();
        Self {
            question,
            dnssec_ok: query.dnssec_ok(),
            checking_disabled: query.checking_disabled(),
        }
    }
}

/// Removes a question from the in-flight map when its leader is done,
/// whether it finished or was cancelled.
struct InFlightGuard<'a> {
    resolver: &'a Resolver,
    key: Key,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.resolver.lock().remove(&self.key);
    }
}
