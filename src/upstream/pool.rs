//! The set of upstreams: which one gets a query (policy and health), a few
//! pipelined connections to each, and the retry loop that fits every
//! attempt inside the client's deadline.

use std::{
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info, warn};

use super::{
    SetupError, UpstreamError,
    conn::{Conn, InFlight, Reply, Settings},
    connector::Connector,
    health::{Health, Transition},
};
use crate::{
    ErrorChain,
    config::{Config, SelectionPolicy},
    metrics::{Metrics, UpstreamCounters},
    wire::UpstreamQuestion,
};

/// How often one query is re-sent after a connection closed before
/// answering anything, before that counts as a failure of the upstream.
/// Closes after answers are normal and cost no more than time.
const MAX_EARLY_RESENDS: u32 = 2;

thread_local! {
    /// The lane of upstream connections this thread uses; UDP worker `n`
    /// uses lane `n` (modulo the lanes), other threads lane 0.
    static LANE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Makes the calling thread use lane `lane` of every upstream's
/// connections. Connections are opened by, and run on, the thread that
/// needs them, so a UDP worker's queries, their connection and their
/// answers stay on one thread.
pub fn use_lane(lane: usize) {
    LANE.set(lane);
}

/// An answer and where it came from.
#[derive(Debug)]
pub struct Exchange {
    /// The answer.
    pub reply: Reply,
    /// Index of the upstream that answered, in configured order.
    pub upstream: usize,
}

/// All configured upstreams.
#[derive(Debug)]
pub struct Pool {
    upstreams: Vec<Upstream>,
    policy: SelectionPolicy,
    /// Round-robin position.
    next: AtomicUsize,
    /// Cancels every connection task when the pool goes.
    _shutdown: DropGuard,
}

impl Pool {
    /// Prepares TLS for every upstream of `config`; connections open on
    /// first use. With `key_log`, TLS secrets go to SSLKEYLOGFILE.
    pub fn new(config: &Config, metrics: &Metrics, key_log: bool) -> Result<Self, SetupError> {
        let workers = config.listen.addresses.len() * config.listen.udp_workers.get();
        let shutdown = CancellationToken::new();
        let settings = |padding| Settings {
            idle_timeout: config.forward.idle_timeout,
            handshake_timeout: config.forward.timeout,
            padding,
            limit: Arc::default(),
            max_queries: config.forward.max_queries_per_connection.get(),
        };
        let per_upstream = config.forward.connections_per_upstream.get()
            * config.forward.max_queries_per_connection.get();
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        for (upstream, counters) in config.upstreams.iter().zip(metrics.upstreams.iter()) {
            upstreams.push(Upstream {
                label: upstream.label.clone(),
                connector: Arc::new(Connector::new(upstream, &config.forward, key_log)?),
                settings: settings(upstream.padding),
                lanes: Lane::split(config.forward.connections_per_upstream.get(), workers),
                permits: Arc::new(Semaphore::new(per_upstream)),
                health: Mutex::new(Health::Up),
                counters: Arc::clone(counters),
                shutdown: shutdown.clone(),
            });
        }
        Ok(Self {
            upstreams,
            policy: config.forward.policy,
            next: AtomicUsize::new(0),
            _shutdown: shutdown.drop_guard(),
        })
    }

    /// The label of upstream `index`.
    pub fn label(&self, index: usize) -> &str {
        self.upstreams.get(index).map_or("", |u| u.label.as_str())
    }

    /// The health of upstream `index`.
    pub fn health(&self, index: usize) -> Option<Health> {
        self.upstreams.get(index).map(|u| *u.health())
    }

    /// Sends `question` and returns the first answer, trying upstreams in
    /// policy order until one answers or `deadline` passes. Each upstream
    /// is tried once per call, plus re-sends when a connection closes under
    /// the query; an attempt gets half the time left unless it is the
    /// last candidate, so a silent upstream cannot eat the whole budget.
    pub async fn exchange(
        &self,
        question: &UpstreamQuestion<'_>,
        deadline: Instant,
    ) -> Result<Exchange, UpstreamError> {
        let mut tried = vec![false; self.upstreams.len()];
        let mut last_error = UpstreamError::Timeout;
        let mut early_resends = 0;
        while let Some(index) = self.select(&tried, Instant::now()) {
            let Some(upstream) = self.upstreams.get(index) else {
                break;
            };
            let now = Instant::now();
            let Some(remaining) = deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                break;
            };
            let untried = tried.iter().filter(|t| !**t).count();
            let budget = if untried > 1 {
                remaining / 2
            } else {
                remaining
            };
            match upstream.exchange(question, budget).await {
                Ok(reply) => {
                    upstream.record_success();
                    return Ok(Exchange {
                        reply,
                        upstream: index,
                    });
                }
                Err(UpstreamError::Closed) => upstream.counters.resent.inc(),
                Err(UpstreamError::ClosedEarly) if early_resends < MAX_EARLY_RESENDS => {
                    early_resends += 1;
                    upstream.counters.resent.inc();
                }
                Err(error) => {
                    // Busy is our own congestion, not the upstream's fault.
                    if !matches!(error, UpstreamError::Busy) {
                        upstream.record_failure(&error);
                    }
                    if let Some(tried) = tried.get_mut(index) {
                        *tried = true;
                    }
                    last_error = error;
                }
            }
        }
        Err(last_error)
    }

    /// Picks the next upstream not yet tried: by policy among those whose
    /// backoff has passed, or else the one due soonest, so backoff never
    /// stops service for good.
    fn select(&self, tried: &[bool], now: Instant) -> Option<usize> {
        let count = self.upstreams.len();
        let start = match self.policy {
            SelectionPolicy::Ordered => 0,
            SelectionPolicy::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % count.max(1),
        };
        let candidates = (0..count)
            .map(|offset| (start + offset) % count)
            .filter(|&i| !tried.get(i).copied().unwrap_or(true));
        let healths: Vec<(usize, Health)> = candidates
            .filter_map(|i| self.upstreams.get(i).map(|u| (i, *u.health())))
            .collect();
        healths
            .iter()
            .find(|(_, health)| health.is_available(now))
            .or_else(|| healths.iter().min_by_key(|(_, health)| health.retry_at()))
            .map(|(index, _)| *index)
    }
}

//---- Lanes ----

/// Some of an upstream's connections: those of one or more UDP workers.
#[derive(Debug)]
struct Lane {
    /// Open connections, at most `max`. A std mutex held only to pick or
    /// add one.
    conns: Mutex<Vec<Conn>>,
    max: usize,
}

impl Lane {
    /// `connections` shared out among `workers`: one lane per worker while
    /// there are connections enough, never more lanes than connections.
    fn split(connections: usize, workers: usize) -> Box<[Lane]> {
        let lanes = workers.clamp(1, connections);
        (0..lanes)
            .map(|lane| Lane {
                conns: Mutex::new(Vec::new()),
                max: connections / lanes + usize::from(lane < connections % lanes),
            })
            .collect()
    }
}

//---- Upstream ----

/// One upstream: its connector, its open connections and its health.
#[derive(Debug)]
struct Upstream {
    label: String,
    connector: Arc<Connector>,
    settings: Settings,
    /// `connections_per_upstream` shared out among the UDP workers.
    lanes: Box<[Lane]>,
    /// In-flight slots across its connections: `connections_per_upstream`
    /// times `max_queries_per_connection`. A query waits for one.
    permits: Arc<Semaphore>,
    health: Mutex<Health>,
    counters: Arc<UpstreamCounters>,
    shutdown: CancellationToken,
}

impl Upstream {
    /// One attempt within `budget`: wait for an in-flight slot, send, and
    /// wait for the answer.
    async fn exchange(
        &self,
        question: &UpstreamQuestion<'_>,
        budget: Duration,
    ) -> Result<Reply, UpstreamError> {
        let started = Instant::now();
        let permit = tokio::time::timeout(budget, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| UpstreamError::Busy)?
            .map_err(|_| UpstreamError::Closed)?;
        let in_flight = self.send(question, permit)?;
        let left = budget.saturating_sub(started.elapsed());
        tokio::time::timeout(left, in_flight.reply())
            .await
            .unwrap_or(Err(UpstreamError::Timeout))
    }

    /// Writes on the least loaded open connection, opening one when every
    /// open connection is busy and the limit allows.
    fn send(
        &self,
        question: &UpstreamQuestion<'_>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<InFlight, UpstreamError> {
        let lane = &self.lanes[LANE.get() % self.lanes.len()];
        let mut conns = lane
            .conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        conns.retain(Conn::is_open);
        let least = conns
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| c.load())
            .map(|(i, c)| (i, c.load()));
        let index = match least {
            Some((index, load)) if load == 0 || conns.len() >= lane.max => index,
            _ => {
                conns.push(Conn::open(
                    Arc::clone(&self.connector),
                    self.settings.clone(),
                    Arc::clone(&self.counters),
                    self.shutdown.child_token(),
                ));
                conns.len() - 1
            }
        };
        conns
            .get(index)
            .ok_or(UpstreamError::Closed)?
            .send(question, permit)
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record_success(&self) {
        if self.health().record_success() == Transition::Recovered {
            info!(upstream = %self.label, "upstream answering again");
        }
    }

    /// Logs a failure once, when the upstream goes from up to backing off;
    /// repeats while it stays down are debug.
    fn record_failure(&self, error: &UpstreamError) {
        if error.is_timeout() {
            self.counters.timeouts.inc();
        }
        let now = Instant::now();
        let (transition, retry_at) = {
            let mut health = self.health();
            (health.record_failure(now), health.retry_at())
        };
        let retry_in = retry_at.map(|at| at.saturating_duration_since(now));
        let (label, error) = (&self.label, ErrorChain(error));
        if transition == Transition::WentDown {
            warn!(upstream = %label, %error, ?retry_in, "upstream failed, backing off");
        } else {
            debug!(upstream = %label, %error, ?retry_in, "upstream still failing");
        }
    }
}
