//! From a client's packet to the reply bytes.
//!
//! [`Resolver::answer_now`] is the hot path: parse, look up the cache,
//! write the answer (or an error reply) for this client, with no heap
//! allocation and no await. Everything else is [`Resolver::answer_later`]:
//! join an identical question in flight or ask upstream, serve stale
//! answers when upstreams fail or are slow (RFC 8767), and refresh popular
//! answers before they expire.
//!
//! Every accepted query gets a reply within `forward.timeout_ms`: an
//! answer, a stale answer, or SERVFAIL with an Extended DNS Error.

mod coalesce;
mod secure;

pub use secure::for_client as answer_for_client;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, debug_span};

use self::{
    coalesce::{InFlight, Outcome, Role},
    secure::PoolFetch,
};
use crate::{
    cache::{Cache, Clock, Hit, KeyBuf, Millis},
    config::Config,
    dnssec::Validator,
    metrics::Metrics,
    upstream::{Pool, UpstreamError},
    wire::{
        Answer, NameDisplay, Query, QueryError, Recipient, Transport, UpstreamQuestion, Written,
        ensure_len,
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

/// Why dotstub answers a query SERVFAIL without resolving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unserved {
    /// `max_queries_in_flight` queries are being resolved already.
    Overloaded,
    /// dotstub is shutting down: the query came in before the signal,
    /// and is answered rather than dropped with its connection.
    ShuttingDown,
}

impl Unserved {
    /// What happened, also sent to EDNS clients as EDE EXTRA-TEXT.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Overloaded => "resolver overloaded: too many queries in flight",
            Self::ShuttingDown => "resolver shutting down",
        }
    }
}

/// What [`Resolver::answer_now`] could do without waiting.
#[derive(Debug)]
pub enum Immediate {
    /// A reply of this length is in the buffer.
    Reply(usize),
    /// Send nothing.
    Drop,
    /// The query needs upstream; true when the cache holds an expired
    /// answer that may stand in for a fresh one.
    Forward(bool),
}

/// How a fresh resolution raced against serving a stale answer.
#[derive(Debug)]
enum Race {
    /// It answered in time.
    Fresh(Arc<Resolved>),
    /// It failed in time (a finished task must not be awaited again).
    Failed(ResolveError),
    /// It is still running.
    Running(JoinHandle<Outcome>),
}

impl Race {
    /// What the resolution came to, waiting for it if it still runs.
    async fn outcome(self) -> Outcome {
        match self {
            Self::Fresh(resolved) => Ok(resolved),
            Self::Failed(error) => Err(error),
            Self::Running(refresh) => refresh.await.unwrap_or(Err(ResolveError::Unreachable)),
        }
    }
}

/// How the resolver answers, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Budget of one client query.
    pub timeout: Duration,
    /// Largest UDP answer, advertised to clients.
    pub max_udp_size: u16,
    /// How long a client with a stale answer waits for a fresh one;
    /// `None` when serve-stale is off.
    pub stale_answer_after: Option<Duration>,
}

impl Settings {
    /// The settings in `config`.
    pub fn from_config(config: &Config) -> Self {
        let cache = &config.cache;
        Self {
            timeout: config.forward.timeout,
            max_udp_size: config.listen.max_udp_size,
            stale_answer_after: (cache.enabled && cache.serve_stale)
                .then_some(cache.stale_answer_after),
        }
    }
}

/// Answers client queries from the cache and through the upstream pool.
#[derive(Debug)]
pub struct Resolver {
    pool: Pool,
    cache: Option<Cache>,
    /// Validates answers when `[dnssec] validate` is on.
    validator: Option<Validator>,
    in_flight: InFlight,
    clock: Clock,
    settings: Settings,
    /// Refreshes that outlive the query that started them.
    background: TaskTracker,
    metrics: Arc<Metrics>,
}

impl Resolver {
    /// A resolver forwarding through `pool`, caching in `cache` and
    /// validating with `validator` when given.
    pub fn new(
        pool: Pool,
        cache: Option<Cache>,
        validator: Option<Validator>,
        settings: Settings,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Self {
        let in_flight = InFlight::default();
        let background = TaskTracker::new();
        Self {
            pool,
            cache,
            validator,
            in_flight,
            clock,
            settings,
            background,
            metrics,
        }
    }

    /// The upstream pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// How it answers.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The cache, when enabled.
    pub fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }

    /// The cache clock's time: read once per batch of received queries.
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Background refreshes still running.
    pub fn background(&self) -> &TaskTracker {
        &self.background
    }

    /// Writes into `out` what can be answered without waiting: a cached
    /// answer or an error reply. No heap allocation, except to start a
    /// prefetch once per nearly expired answer, and to grow `out` when its
    /// capacity is short of the reply (the UDP listener's never is).
    pub fn answer_now(
        self: &Arc<Self>,
        packet: &[u8],
        transport: Transport,
        now: Millis,
        out: &mut Vec<u8>,
    ) -> Immediate {
        let query = match Query::parse(packet) {
            Ok(query) => query,
            Err(error) => return self.refuse(packet, error, out),
        };
        let Some(cache) = &self.cache else {
            return Immediate::Forward(false);
        };
        let mut key = KeyBuf::EMPTY;
        key.set(&query);
        match cache.answer(&key, &self.recipient(&query, transport), now, out) {
            Hit::Fresh(written) => Immediate::Reply(self.count_written(written)),
            Hit::Prefetch(written) => {
                self.prefetch(packet);
                Immediate::Reply(self.count_written(written))
            }
            Hit::Stale => Immediate::Forward(true),
            Hit::Miss => Immediate::Forward(false),
        }
    }

    /// Answers what [`Resolver::answer_now`] forwarded: from upstream, or
    /// from `stale` when upstreams fail or are slower than
    /// `stale_answer_after_ms`.
    pub async fn answer_later(
        self: &Arc<Self>,
        packet: &[u8],
        transport: Transport,
        stale: bool,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let query = Query::parse(packet).ok()?;
        if query.edns().is_some_and(|edns| edns.client_subnet) {
            self.metrics.server.client_subnet_stripped.inc();
        }
        let question = query.question();
        let span =
            debug_span!("query", qname = %NameDisplay(question.name()), qtype = question.qtype());
        let outcome = match (stale, self.settings.stale_answer_after) {
            (true, Some(wait)) => {
                let raced = self
                    .fresh_or_stale(packet, wait)
                    .instrument(span.clone())
                    .await;
                match raced {
                    Race::Fresh(resolved) => Ok(resolved),
                    // Late or failed: the stale answer, unless it went
                    // meanwhile; then the fresh one, or why not.
                    late => match self.write_stale(&query, transport, out) {
                        Some(len) => return Some(len),
                        None => late.outcome().await,
                    },
                }
            }
            _ => self.resolve(&query).instrument(span.clone()).await,
        };
        // Nothing below awaits, so the span can simply be entered.
        let _entered = span.enter();
        self.write_outcome(&query, transport, outcome, out)
    }

    /// The whole path for one client message: [`Resolver::answer_now`],
    /// then [`Resolver::answer_later`] when needed. Returns the reply's
    /// length in `out`, or `None` to send nothing.
    pub async fn reply(
        self: &Arc<Self>,
        packet: &[u8],
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        match self.answer_now(packet, transport, self.now(), out) {
            Immediate::Reply(len) => Some(len),
            Immediate::Drop => None,
            Immediate::Forward(stale) => self.answer_later(packet, transport, stale, out).await,
        }
    }

    /// Answers `query` from upstream, sharing the exchange with identical
    /// questions already in flight; the leader stores the answer in the
    /// cache. Only an answer is shared: when the exchange it joined fails,
    /// a query with time left asks again itself.
    pub async fn resolve(&self, query: &Query<'_>) -> Result<Arc<Resolved>, ResolveError> {
        let deadline = Instant::now() + self.settings.timeout;
        let key = KeyBuf::of(query);
        let mut joined = false;
        loop {
            let mut follow = match self.in_flight.lead_or_join(key.as_bytes()) {
                Role::Lead(leader) => {
                    let outcome = self.forward(query, deadline).await;
                    if let (Ok(resolved), Some(cache)) = (&outcome, &self.cache) {
                        cache.insert(&key, &resolved.answer, self.clock.now());
                    }
                    leader.publish(&outcome);
                    return outcome;
                }
                Role::Follow(follow) => follow,
            };
            if !joined {
                self.metrics.server.coalesced.inc();
                joined = true;
            }
            let waited =
                tokio::time::timeout_at(deadline.into(), follow.wait_for(Option::is_some)).await;
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

    async fn forward(&self, query: &Query<'_>, deadline: Instant) -> Outcome {
        // A validator needs the signatures, and the data even when bogus,
        // to decide itself (RFC 4035 §3.2.2, RFC 6840 §5.9).
        let validating = self.validator.is_some();
        let question = UpstreamQuestion {
            question: *query.question(),
            dnssec_ok: validating || query.dnssec_ok(),
            checking_disabled: validating || query.checking_disabled(),
        };
        let exchange =
            tokio::time::timeout_at(deadline.into(), self.pool.exchange(&question, deadline))
                .await
                .unwrap_or(Err(UpstreamError::Timeout));
        match exchange {
            Ok(exchange) => Ok(Arc::new(Resolved {
                answer: match &self.validator {
                    Some(validator) => {
                        let fetch = PoolFetch {
                            pool: &self.pool,
                            deadline,
                            counters: &self.metrics.dnssec,
                        };
                        // Boxed: validation's state is 3 KB, and every miss's
                        // task would carry (and move) it, validating or not.
                        Box::pin(secure::judge(
                            validator,
                            &fetch,
                            query,
                            exchange.reply.answer,
                        ))
                        .await
                        .ok_or(ResolveError::Unreachable)?
                    }
                    None => exchange.reply.answer,
                },
                upstream: exchange.upstream,
                padded: exchange.reply.padded,
                len: exchange.reply.len,
                rtt: exchange.reply.rtt,
            })),
            Err(UpstreamError::Timeout | UpstreamError::Busy) => Err(ResolveError::Timeout),
            Err(_) => Err(ResolveError::Unreachable),
        }
    }

    /// Answers what can be answered without waiting (a cached answer, an
    /// error reply), and everything else SERVFAIL for `why`: for queries
    /// that get no resolution, yet must get an answer.
    pub fn answer_now_or_servfail(
        self: &Arc<Self>,
        packet: &[u8],
        transport: Transport,
        why: Unserved,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        match self.answer_now(packet, transport, self.now(), out) {
            Immediate::Reply(len) => Some(len),
            Immediate::Drop => None,
            Immediate::Forward(_) => self.servfail_unserved(packet, why, out),
        }
    }

    /// Writes SERVFAIL, with an Extended DNS Error saying `why`, for a
    /// query [`Resolver::answer_now`] forwarded; counted per reason.
    pub fn servfail_unserved(
        &self,
        packet: &[u8],
        why: Unserved,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let query = Query::parse(packet).ok()?;
        let server = &self.metrics.server;
        match why {
            Unserved::Overloaded => server.overloaded.inc(),
            Unserved::ShuttingDown => server.shutting_down.inc(),
        }
        ensure_len(out, MAX_SHORT_REPLY);
        let reason = (ede::OTHER, why.as_str());
        reply::write_servfail(&query, reason, self.settings.max_udp_size, out).ok()
    }

    //---- Serve-stale and prefetch ----

    /// Races a fresh resolution against `wait`. It runs in the background
    /// either way, so the cache is refreshed for the next client.
    async fn fresh_or_stale(self: &Arc<Self>, packet: &[u8], wait: Duration) -> Race {
        let mut refresh = self.spawn_refresh(packet);
        match tokio::time::timeout(wait, &mut refresh).await {
            Ok(Ok(Ok(resolved))) => Race::Fresh(resolved),
            Ok(Ok(Err(error))) => Race::Failed(error),
            Ok(Err(_task_failed)) => Race::Failed(ResolveError::Unreachable),
            Err(_elapsed) => Race::Running(refresh),
        }
    }

    /// Writes the cache's expired answer for `query`, TTLs 30 (RFC 8767).
    fn write_stale(
        &self,
        query: &Query<'_>,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let cache = self.cache.as_ref()?;
        let key = KeyBuf::of(query);
        let now = self.clock.now();
        let written = cache.answer_stale(&key, &self.recipient(query, transport), now, out)?;
        debug!("answered stale");
        Some(self.count_written(written))
    }

    /// Refreshes a nearly expired answer in the background.
    fn prefetch(self: &Arc<Self>, packet: &[u8]) {
        drop(self.spawn_refresh(packet));
    }

    /// Resolves `packet` again in a task of its own, which stores the
    /// answer in the cache whoever waits for it.
    fn spawn_refresh(self: &Arc<Self>, packet: &[u8]) -> JoinHandle<Outcome> {
        let resolver = Arc::clone(self);
        let packet = packet.to_vec();
        self.background.spawn(async move {
            let query = Query::parse(&packet).map_err(|_| ResolveError::Unreachable)?;
            resolver.resolve(&query).await
        })
    }

    //---- Writing replies ----

    fn write_outcome(
        &self,
        query: &Query<'_>,
        transport: Transport,
        outcome: Outcome,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let udp_size = self.settings.max_udp_size;
        match outcome {
            Ok(resolved) => {
                let (rcode, rtt) = (resolved.answer.rcode(), resolved.rtt);
                debug!(upstream = resolved.upstream, rcode, ?rtt, "answered");
                let to = self.recipient(query, transport);
                let written = resolved.answer.write_for_client(&to, out).ok()?;
                Some(self.count_written(written))
            }
            Err(error) => {
                debug!(%error, "answering SERVFAIL");
                self.metrics.server.servfail.inc();
                ensure_len(out, MAX_SHORT_REPLY);
                let reason = (ede::NO_REACHABLE_AUTHORITY, error.as_str());
                reply::write_servfail(query, reason, udp_size, out).ok()
            }
        }
    }

    fn recipient<'q>(&self, query: &'q Query<'q>, transport: Transport) -> Recipient<'q> {
        Recipient {
            query,
            transport,
            udp_size: self.settings.max_udp_size,
        }
    }

    fn count_written(&self, written: Written) -> usize {
        if !written.whole {
            self.metrics.server.truncated.inc();
        }
        written.len
    }

    fn refuse(&self, packet: &[u8], error: QueryError, out: &mut Vec<u8>) -> Immediate {
        let server = &self.metrics.server;
        match error {
            QueryError::TooShort => server.dropped_short.inc(),
            QueryError::NotAQuery => server.dropped_responses.inc(),
            QueryError::Malformed => server.formerr.inc(),
            QueryError::UnsupportedOpcode => server.notimp.inc(),
            QueryError::BadEdnsVersion => server.badvers.inc(),
            QueryError::ZoneTransfer => server.refused.inc(),
        }
        ensure_len(out, MAX_SHORT_REPLY);
        match reply::write_refusal(packet, error, self.settings.max_udp_size, out) {
            Some(len) => Immediate::Reply(len),
            None => Immediate::Drop,
        }
    }
}
