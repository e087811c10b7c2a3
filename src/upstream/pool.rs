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

use futures_util::{StreamExt, stream::FuturesUnordered};
use tokio::sync::Semaphore;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info, warn};

use super::{
    SetupError, UpstreamError,
    conn::{Conn, InFlight, Reply, Settings},
    connector::Connector,
    health::{Health, Transition},
    rtt::{MIN_HEDGE_DELAY, RttEstimate},
};
use crate::{
    ErrorChain,
    config::{Config, SelectionPolicy},
    metrics::{Metrics, UpstreamCounters},
    wire::{Question, UpstreamQuestion, rtype},
};

/// The least time left for a new attempt (a re-send, the next upstream, a
/// hedge) to be started: with less, it could only time out, and blame an
/// upstream or a connection for it.
const MIN_ATTEMPT_TIME: Duration = MIN_HEDGE_DELAY;

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
    /// The longest hedge delay: half the query timeout.
    longest_hedge: Duration,
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
                rtt: Mutex::default(),
                counters: Arc::clone(counters),
                shutdown: shutdown.clone(),
            });
        }
        Ok(Self {
            upstreams,
            policy: config.forward.policy,
            next: AtomicUsize::new(0),
            longest_hedge: config.forward.timeout / 2,
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

    /// Starts afresh after a network change (a new address or route, a
    /// resume from sleep): every connection is closed and its queries
    /// re-sent on fresh ones, backoff is forgotten, and so are TLS
    /// sessions, which would let an upstream link this network's
    /// connections to the last one's (RFC 8446 appendix C.4).
    pub fn network_changed(&self) {
        for upstream in &self.upstreams {
            upstream.network_changed();
        }
    }

    /// Asks every upstream for the root's NS records at once, each on a
    /// fresh connection after [`Pool::network_changed`], so their health
    /// is known before clients ask and the first client query finds a
    /// connection ready. Returns how many answered by `deadline`.
    pub async fn probe_all(&self, deadline: Instant) -> usize {
        let root_ns = Question::section(&[0], rtype::NS);
        let Ok(question) = Question::parse(&root_ns, 0) else {
            return 0;
        };
        let question = UpstreamQuestion {
            question,
            dnssec_ok: false,
            checking_disabled: false,
        };
        let probes = (0..self.upstreams.len()).map(|index| {
            let pick = Pick { index, probe: None };
            self.attempt(pick, &question, deadline, false)
        });
        let attempts = futures_util::future::join_all(probes).await;
        attempts.iter().filter(|a| a.result.is_ok()).count()
    }

    /// Sends `question` and returns the first answer, trying upstreams in
    /// policy order until one answers or `deadline` passes.
    ///
    /// - An attempt that has no answer after its upstream's hedge delay
    ///   (`srtt + 4 × rttvar`, within 100 ms and half the query timeout)
    ///   is also sent to the next upstream that is up; the first answer
    ///   wins.
    /// - A failed attempt moves on to the next upstream at once; a query
    ///   whose connection closed under it is re-sent on a fresh one.
    /// - An upstream backing off gets no query until its delay has passed,
    ///   then one probe at a time; while none is up, one is probed every
    ///   250 ms. With no upstream up and no probe due, the exchange fails
    ///   at once ([`UpstreamError::Unavailable`]).
    pub async fn exchange(
        &self,
        question: &UpstreamQuestion<'_>,
        deadline: Instant,
    ) -> Result<Exchange, UpstreamError> {
        let mut run = Run::new(self.upstreams.len(), deadline);
        let mut attempts = FuturesUnordered::new();
        let first = self
            .select(&run.tried, Instant::now(), Probes::Allowed)
            .ok_or(UpstreamError::Unavailable)?;
        run.started(first.index);
        attempts.push(self.attempt(first, question, deadline, false));
        loop {
            let finished = tokio::select! {
                finished = attempts.next() => finished,
                () = sleep_until_or_never(self.hedge_at(&run)) => {
                    run.latest = None;
                    if let Some(next) = self.hedge(&mut run) {
                        attempts.push(self.attempt(next, question, deadline, true));
                    }
                    continue;
                }
            };
            let Some(attempt) = finished else {
                return Err(run.last_error);
            };
            let hedge = attempt.hedge;
            match self.settle(&mut run, attempt) {
                Settled::Answered(exchange) => return Ok(exchange),
                Settled::Next(Some(next)) => {
                    attempts.push(self.attempt(next, question, deadline, hedge));
                }
                Settled::Next(None) => {}
            }
        }
    }

    /// When the latest attempt is due a hedge: its upstream's hedge delay
    /// after it started, unless that leaves too little time to be worth it.
    fn hedge_at(&self, run: &Run) -> Option<Instant> {
        let (index, started) = run.latest?;
        let at = started + self.upstreams.get(index)?.hedge_delay(self.longest_hedge);
        (at + MIN_ATTEMPT_TIME <= run.deadline).then_some(at)
    }

    /// The upstream a hedge goes to, counted: the next one that is up.
    fn hedge(&self, run: &mut Run) -> Option<Pick<'_>> {
        let next = self.select(&run.tried, Instant::now(), Probes::Forbidden)?;
        self.upstreams[next.index].counters.hedges.inc();
        run.started(next.index);
        Some(next)
    }

    /// What an attempt's end means for the exchange: its answer, or the
    /// next attempt to start (a re-send on a fresh connection, or the next
    /// upstream), if any and if there is time for it.
    fn settle(&self, run: &mut Run, attempt: Attempt) -> Settled<'_> {
        let Attempt {
            index,
            hedge,
            result,
        } = attempt;
        let upstream = &self.upstreams[index];
        let resend = match result {
            Ok(reply) => {
                if hedge {
                    upstream.counters.hedges_won.inc();
                }
                let upstream = index;
                return Settled::Answered(Exchange { reply, upstream });
            }
            Err(UpstreamError::Closed) => true,
            Err(UpstreamError::ClosedEarly) if run.early_resends < MAX_EARLY_RESENDS => {
                run.early_resends += 1;
                true
            }
            Err(error) => {
                if matches!(error, UpstreamError::ClosedEarly) {
                    upstream.record_failure(&error);
                }
                run.last_error = error;
                false
            }
        };
        // With almost no time left, a new attempt could only time out,
        // and blame an upstream (or a connection) for it.
        if run.deadline.saturating_duration_since(Instant::now()) < MIN_ATTEMPT_TIME {
            if resend {
                run.last_error = UpstreamError::Timeout;
            }
            return Settled::Next(None);
        }
        let next = if resend {
            upstream.counters.resent.inc();
            Some(Pick { index, probe: None })
        } else {
            self.select(&run.tried, Instant::now(), Probes::Allowed)
        };
        if let Some(next) = &next {
            run.started(next.index);
        }
        Settled::Next(next)
    }

    /// One attempt at the upstream `pick` names, its health updated by
    /// the result. `hedge` marks an attempt started because another was
    /// slow.
    async fn attempt(
        &self,
        pick: Pick<'_>,
        question: &UpstreamQuestion<'_>,
        deadline: Instant,
        hedge: bool,
    ) -> Attempt {
        // A probe's slot (held in `pick` from the moment it was taken) is
        // given back if the attempt ends without a verdict: another
        // upstream answered first, the client gave up.
        let Pick {
            index,
            probe: _slot,
        } = pick;
        let upstream = &self.upstreams[index];
        let result = upstream.exchange(question, deadline).await;
        match &result {
            Ok(reply) => upstream.record_success(reply.rtt),
            Err(error) if error.blames_upstream() => upstream.record_failure(error),
            // Closes are re-sent, and judged by the pool.
            Err(_) => {}
        }
        Attempt {
            index,
            hedge,
            result,
        }
    }

    /// Picks the next upstream not yet tried, in policy order: the first
    /// that is up or, when `probes` allows, due for its probe (taking
    /// it); failing both, while no upstream is up, one due for an early
    /// probe. `None` when there is none.
    fn select(&self, tried: &[bool], now: Instant, probes: Probes) -> Option<Pick<'_>> {
        let count = self.upstreams.len();
        let start = match self.policy {
            SelectionPolicy::Ordered => 0,
            SelectionPolicy::RoundRobin => self.next.fetch_add(1, Ordering::Relaxed) % count.max(1),
        };
        let candidates = || {
            (0..count)
                .map(move |offset| (start + offset) % count)
                .filter(|&i| !tried.get(i).copied().unwrap_or(true))
        };
        for index in candidates() {
            let mut health = self.upstreams[index].health();
            if health.is_up() {
                return Some(Pick { index, probe: None });
            }
            if probes == Probes::Allowed && health.start_probe(now, false) {
                return Some(self.probe(index));
            }
        }
        if probes == Probes::Forbidden {
            return None;
        }
        let all_down = !self.upstreams.iter().any(|u| u.health().is_up());
        let index =
            candidates().find(|&i| self.upstreams[i].health().start_probe(now, all_down))?;
        Some(self.probe(index))
    }

    /// A pick of upstream `index` for the probe it has just given out.
    fn probe(&self, index: usize) -> Pick<'_> {
        let slot = self.upstreams.get(index).map(ProbeSlot);
        Pick { index, probe: slot }
    }
}

/// The upstream an attempt goes to.
struct Pick<'a> {
    /// Its index.
    index: usize,
    /// Its probe slot, when the attempt is its probe (it is backing off):
    /// held from the moment it is taken, so it is given back however the
    /// attempt ends, even unstarted.
    probe: Option<ProbeSlot<'a>>,
}

/// How an attempt's end leaves an exchange.
enum Settled<'a> {
    /// With an answer.
    Answered(Exchange),
    /// Going on: with this attempt started, or only those still running.
    Next(Option<Pick<'a>>),
}

/// Whether [`Pool::select`] may pick an upstream that is backing off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probes {
    /// Yes, as its one probe.
    Allowed,
    /// No: hedges go only to upstreams that are up.
    Forbidden,
}

/// The state of one [`Pool::exchange`].
#[derive(Debug)]
struct Run {
    /// Upstreams given an attempt, by index.
    tried: Vec<bool>,
    /// Re-sends after connections closed before answering anything.
    early_resends: u32,
    /// Why the last failed attempt failed.
    last_error: UpstreamError,
    /// The latest attempt started and when: the one a hedge would back up.
    latest: Option<(usize, Instant)>,
    /// When the client's time is up.
    deadline: Instant,
}

impl Run {
    fn new(upstreams: usize, deadline: Instant) -> Self {
        Self {
            tried: vec![false; upstreams],
            early_resends: 0,
            last_error: UpstreamError::Unavailable,
            latest: None,
            deadline,
        }
    }

    fn started(&mut self, index: usize) {
        if let Some(tried) = self.tried.get_mut(index) {
            *tried = true;
        }
        self.latest = Some((index, Instant::now()));
    }
}

/// How one attempt ended.
#[derive(Debug)]
struct Attempt {
    index: usize,
    hedge: bool,
    result: Result<Reply, UpstreamError>,
}

/// An upstream's probe slot, given back when an attempt ends without a
/// verdict: [`Health::end_probe`] changes nothing once a result is in.
struct ProbeSlot<'a>(&'a Upstream);

impl Drop for ProbeSlot<'_> {
    fn drop(&mut self) {
        self.0.health().end_probe();
    }
}

/// Sleeps until `at`, or forever when `None`.
async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
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
    fn lock(&self) -> MutexGuard<'_, Vec<Conn>> {
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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
    /// Round-trip times of its answers, for the hedge delay.
    rtt: Mutex<RttEstimate>,
    counters: Arc<UpstreamCounters>,
    shutdown: CancellationToken,
}

impl Upstream {
    /// One attempt, until `deadline`: wait for an in-flight slot, send, and
    /// wait for the answer.
    async fn exchange(
        &self,
        question: &UpstreamQuestion<'_>,
        deadline: Instant,
    ) -> Result<Reply, UpstreamError> {
        let until = tokio::time::Instant::from_std(deadline);
        let permit = tokio::time::timeout_at(until, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| UpstreamError::Busy)?
            .map_err(|_| UpstreamError::Closed)?;
        let mut in_flight = self.send(question, deadline, permit)?;
        match tokio::time::timeout_at(until, in_flight.reply()).await {
            Ok(result) => result,
            Err(_elapsed) => Err(in_flight.timed_out()),
        }
    }

    /// Writes on the least loaded open connection, opening one when every
    /// open connection is busy and the limit allows. A connection found
    /// condemned for silence without ever answering, and not yet blamed
    /// (the query that found it silent was answered elsewhere, a hedge),
    /// fails the upstream, and the query moves on.
    fn send(
        &self,
        question: &UpstreamQuestion<'_>,
        deadline: Instant,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<InFlight, UpstreamError> {
        let lane = &self.lanes[LANE.get() % self.lanes.len()];
        let mut conns = lane.lock();
        let mut never_answered = false;
        conns.retain(|conn| {
            never_answered |= conn.take_blame();
            conn.is_open()
        });
        if never_answered {
            // Blamed here, once. This query moves on to another upstream
            // (a `Silent` failure blames nobody again).
            self.record_failure(&UpstreamError::Timeout);
            return Err(UpstreamError::Silent);
        }
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
            .send(question, deadline, permit)
    }

    /// Closes every connection; the queries in flight on them are re-sent
    /// on fresh ones. Backoff and TLS sessions are forgotten.
    fn network_changed(&self) {
        for lane in &self.lanes {
            for conn in lane.lock().drain(..) {
                conn.retire();
            }
        }
        self.health().reset();
        self.connector.forget_sessions();
    }

    /// How long a query waits for this upstream before it is hedged.
    fn hedge_delay(&self, longest: Duration) -> Duration {
        self.rtt().hedge_delay(longest)
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn rtt(&self) -> MutexGuard<'_, RttEstimate> {
        self.rtt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record_success(&self, rtt: Duration) {
        self.rtt().sample(rtt);
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
        let retry_in_s = retry_at.map_or(0, |at| at.saturating_duration_since(now).as_secs());
        let (label, error) = (&self.label, ErrorChain(error));
        if transition == Transition::WentDown {
            warn!(upstream = %label, %error, retry_in_s, "upstream failed, backing off");
        } else {
            debug!(upstream = %label, %error, retry_in_s, "upstream still failing");
        }
    }
}
