//! dotstub: a DNS-over-TLS privacy stub resolver.
//!
//! One query's way through, and the module that owns each step:
//!
//! ```text
//! client --UDP/TCP--> listen      receive into a reused buffer, cap connections and queries
//!         --> wire::Query         borrowed, checked view of the query; FORMERR/NOTIMP/REFUSED here
//!         --> resolver            join an identical question in flight, or forward it
//!         --> upstream::Pool      pick an upstream (policy, health), pipeline on a pooled,
//!                                 authenticated TLS connection, query padded (padding)
//!         --> wire::Answer        the upstream's answer without its OPT record
//!         --> dnssec              secure, insecure or bogus, from the trust anchors down
//!                                 (resolver applies it: AD bit, or SERVFAIL with an EDE)
//!         --> cache               stored with its verdict, per client DO/CD; hits are
//!                                 answered from here (resolver::Resolver::answer_now)
//!         --> reply to client     the client's ID and spelling, its own OPT, TC=1 if too big
//! ```
//!
//! [`config`] reads and checks the TOML file; [`metrics`] counts what
//! happens; [`netwatch`] tells the upstream pool when the network changed
//! or the machine woke from sleep. [`Server`] wires it all together; [`lookup`] resolves one
//! question the same way for `dotstub query`, and [`padding_probe`]
//! measures padding policies against the upstreams for `dotstub padding
//! probe`.

#![deny(unsafe_code)]

pub mod cache;
pub mod config;
pub mod dnssec;
pub mod listen;
pub mod lookup;
pub mod metrics;
pub mod netwatch;
pub mod padding;
#[cfg(feature = "lab")]
pub mod padding_lab;
pub mod padding_probe;
pub mod resolver;
mod text_table;
pub mod upstream;
pub mod wire;

use std::{error::Error, fmt, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    cache::{Cache, Clock},
    config::{Config, DnssecConfig},
    dnssec::Validator,
    listen::{BindError, Context, Listeners},
    metrics::Metrics,
    netwatch::Events,
    padding::PaddingPolicy,
    resolver::{Resolver, Settings},
    upstream::{Pool, SetupError},
};

/// Environment variable naming the file that receives TLS secrets
/// (the NSS key log format Wireshark reads).
pub const KEY_LOG_ENV: &str = "SSLKEYLOGFILE";

/// Extra time given at shutdown beyond the query timeout, for answers to
/// reach their clients.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Why dotstub could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// TLS could not be set up for an upstream.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// A UDP worker thread could not be started.
    #[error("cannot start a UDP worker thread")]
    Thread(#[source] std::io::Error),
}

/// A resolver with its sockets bound, ready to serve.
#[derive(Debug)]
pub struct Server {
    config: Config,
    listeners: Listeners,
    resolver: Arc<Resolver>,
    metrics: Arc<Metrics>,
    /// Where network changes are learned: the system's, unless replaced.
    network_events: Events,
}

impl Server {
    /// Binds the listen addresses and prepares the upstreams of `config`.
    /// Call it inside a tokio runtime: the sockets register with its reactor.
    pub fn bind(config: Config) -> Result<Self, RunError> {
        Self::bind_with_clock(config, Clock::system())
    }

    /// [`Server::bind`], with the cache reading `clock`: a manual clock
    /// lets tests and simulations move time without waiting.
    pub fn bind_with_clock(config: Config, clock: Clock) -> Result<Self, RunError> {
        let key_log = std::env::var_os(KEY_LOG_ENV).is_some_and(|path| !path.is_empty());
        let metrics = Arc::new(Metrics::new(
            config.upstreams.iter().map(|u| u.label.as_str()),
        ));
        let pool = Pool::new(&config, &metrics, key_log)?;
        let listeners = Listeners::bind(&config.listen, config.listen.udp_workers.get())?;
        if key_log {
            warn!(
                "{KEY_LOG_ENV} is set: TLS secrets are being written to that file, and anyone \
                 who can read it can decrypt captured upstream traffic"
            );
        }
        let cache = config
            .cache
            .enabled
            .then(|| Cache::new(&config.cache, Arc::clone(&metrics.cache)));
        let settings = Settings::from_config(&config);
        let resolver = Arc::new(Resolver::new(
            pool,
            cache,
            Validator::from_config(&config.dnssec),
            settings,
            clock,
            Arc::clone(&metrics),
        ));
        Ok(Self {
            config,
            listeners,
            resolver,
            metrics,
            network_events: Events::System,
        })
    }

    /// Learns network changes from `events` instead of the system
    /// ([`Events::manual`]: tests, simulations).
    pub fn with_network_events(mut self, events: Events) -> Self {
        self.network_events = events;
        self
    }

    /// The addresses clients can reach, in configured order; each serves
    /// UDP and TCP on the same port.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.local_addrs()
    }

    /// The live counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// The resolver behind the listeners.
    pub fn resolver(&self) -> Arc<Resolver> {
        Arc::clone(&self.resolver)
    }

    /// Serves until `shutdown` completes, then stops accepting queries and
    /// gives those in flight the query timeout to be answered.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        let tracker = TaskTracker::new();
        let listen = &self.config.listen;
        let context = Context {
            resolver: Arc::clone(&self.resolver),
            metrics: Arc::clone(&self.metrics),
            queries: Arc::new(Semaphore::new(listen.max_queries_in_flight.get())),
            tcp_connections: Arc::new(Semaphore::new(listen.max_tcp_connections.get())),
            tcp_idle_timeout: listen.tcp_idle_timeout,
            tcp_pipeline_limit: listen.max_queries_per_tcp_connection.get(),
            shutdown: CancellationToken::new(),
        };
        info!(
            upstreams = self.config.upstreams.len(),
            policy = %self.config.forward.policy,
            padding = %self.config.padding,
            dnssec = %DnssecSummary(&self.config.dnssec),
            "dotstub started"
        );
        self.warn_about_weak_settings();
        // Dropped, `udp_workers` stops the listeners and wakes the UDP
        // worker threads, which live outside any runtime: at shutdown, and
        // if `run` is dropped before it finishes (its runtime went away).
        let udp_workers = self
            .listeners
            .serve(context, &tracker)
            .map_err(RunError::Thread)?;
        let watching = CancellationToken::new();
        let watcher = tokio::spawn(netwatch::watch(
            self.network_events,
            Arc::clone(&self.resolver),
            watching.clone(),
        ));
        // Dropped, the guard stops the watcher, also if `run` is dropped
        // before it finishes.
        let watching = watching.drop_guard();
        shutdown.await;
        info!("shutting down: no new queries, answering those in flight");
        drop(udp_workers);
        drop(watching);
        let _ = watcher.await;
        tracker.close();
        let background = self.resolver.background();
        background.close();
        let grace = self.config.forward.timeout + SHUTDOWN_GRACE;
        let finished = async { tokio::join!(tracker.wait(), background.wait()) };
        if tokio::time::timeout(grace, finished).await.is_err() {
            warn!("queries still in flight at shutdown were dropped");
        }
        info!("dotstub stopped");
        Ok(())
    }
}

impl Server {
    /// Settings that weaken privacy are allowed, never silent.
    fn warn_about_weak_settings(&self) {
        let unpadded = self.config.upstreams.iter();
        for upstream in unpadded.filter(|u| u.padding == PaddingPolicy::None) {
            warn!(
                upstream = %upstream.label,
                "query padding is off for this upstream: the length of each query shows \
                 the name asked"
            );
        }
        if !self.config.dnssec.validate {
            warn!("DNSSEC validation is off: answers are taken as the upstreams send them");
        }
        for address in self.local_addrs().iter().filter(|a| !a.ip().is_loopback()) {
            warn!(
                %address,
                "listening beyond loopback: anyone who can reach this address can use \
                 dotstub (it has no access control yet)"
            );
        }
    }
}

/// What the start-up line says of validation: off, or its trust anchors.
struct DnssecSummary<'a>(&'a DnssecConfig);

impl fmt::Display for DnssecSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.validate, &self.0.trust_anchor_file) {
            (false, _) => f.write_str("off"),
            (true, None) => f.write_str("validating from the root KSKs"),
            (true, Some(file)) => write!(f, "validating from the anchors in {}", file.display()),
        }
    }
}

/// Displays an error and its chain of causes, `: `-separated, once.
pub struct ErrorChain<'a>(pub &'a dyn Error);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
