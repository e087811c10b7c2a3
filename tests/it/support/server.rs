//! dotstub started in-process on loopback port 0, in front of rig upstreams.

use std::{net::SocketAddr, sync::Arc};

use dotstub::{
    RunError, Server,
    cache::{Clock, ManualClock},
    config::Config,
    metrics::Metrics,
    netwatch::{Change, Events},
    resolver::Resolver,
    upstream::Health,
};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use super::{
    certs::TestPki,
    dot_upstream::{DotUpstream, Script},
};

/// The name rig certificates are issued for and dotstub is told to expect.
pub const TLS_NAME: &str = "dot.test";

/// One `[[upstream]]` table for a rig upstream trusted through `pki`'s CA;
/// `extra` adds lines (pins, say).
pub fn upstream_table(label: &str, addr: SocketAddr, pki: &TestPki, extra: &str) -> String {
    let ca_file = pki.ca_file().display().to_string();
    format!(
        "[[upstream]]\nlabel = {label:?}\naddress = \"{addr}\"\ntls_name = \"{TLS_NAME}\"\n\
         ca_file = {ca_file:?}\n{extra}\n"
    )
}

/// Lines added to the tables of a test configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Extra `[listen]` lines.
    pub listen: &'static str,
    /// `[forward]` lines.
    pub forward: &'static str,
    /// `[padding]` lines; empty keeps the default (block:128).
    pub padding: &'static str,
    /// `[cache]` lines; empty keeps the defaults (on, 16 MiB).
    pub cache: &'static str,
    /// Extra lines for each rig upstream's table.
    pub upstream: &'static str,
    /// `[dnssec]` lines; empty turns validation off, since the fixture
    /// zone is unsigned.
    pub dnssec: &'static str,
}

/// A configuration that listens on 127.0.0.1 port 0, with `upstreams`
/// (already formatted tables).
pub fn config_text(options: &Options, upstreams: &str) -> String {
    let Options {
        listen,
        forward,
        padding,
        cache,
        dnssec,
        ..
    } = options;
    let dnssec = match *dnssec {
        "" => "validate = false",
        lines => lines,
    };
    format!(
        "[listen]\naddresses = [\"127.0.0.1:0\"]\n{listen}\n[forward]\n{forward}\n\
         [padding]\n{padding}\n[cache]\n{cache}\n[dnssec]\n{dnssec}\n{upstreams}"
    )
}

/// A running in-process dotstub; dropping it shuts it down.
pub struct Dotstub {
    /// Where clients reach it over UDP and TCP.
    pub addr: SocketAddr,
    /// Its live counters.
    pub metrics: Arc<Metrics>,
    resolver: Arc<Resolver>,
    /// Feeds dotstub's network watcher: the host's own events never reach it.
    network: mpsc::UnboundedSender<Change>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), RunError>>>,
}

impl Dotstub {
    /// Binds and serves the configuration in `text`.
    pub fn start(text: &str) -> Dotstub {
        Self::start_with_clock(text, Clock::system())
    }

    /// Binds and serves the configuration in `text`, the cache reading `clock`.
    pub fn start_with_clock(text: &str, clock: Clock) -> Dotstub {
        let config = Config::from_toml(text, "test config").expect("test configuration is valid");
        let (network, events) = Events::manual();
        let server = Server::bind_with_clock(config, clock)
            .expect("dotstub binds loopback port 0")
            .with_network_events(events);
        let addr = server.local_addrs()[0];
        let metrics = server.metrics();
        let resolver = server.resolver();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Dotstub {
            addr,
            metrics,
            resolver,
            network,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The health of upstream `index`, as the pool sees it.
    pub fn upstream_health(&self, index: usize) -> Option<Health> {
        self.resolver.pool().health(index)
    }

    /// Tells dotstub's network watcher that `change` happened.
    pub fn network_changed(&self, change: Change) {
        self.network.send(change).expect("the network watcher runs");
    }

    /// Shuts down and waits until `run` has returned.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = task.await.expect("dotstub run task does not panic");
            result.expect("dotstub runs until told to stop");
        }
    }
}

impl Drop for Dotstub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The usual setup: a PKI, one rig upstream following a script, and
/// dotstub in front of it.
pub struct Harness {
    /// Keeps the CA's directory for as long as the test runs.
    _pki: TestPki,
    /// The upstream.
    pub upstream: DotUpstream,
    /// dotstub.
    pub dotstub: Dotstub,
}

impl Harness {
    /// One upstream with `script`, default configuration.
    pub async fn start(script: Script) -> Harness {
        Self::with(script, Options::default()).await
    }

    /// One upstream with `script`, configuration changed by `options`.
    pub async fn with(script: Script, options: Options) -> Harness {
        Self::with_clock(script, options, Clock::system()).await
    }

    /// Like [`Harness::with`], with dotstub's cache on a manual clock.
    pub async fn with_manual_clock(script: Script, options: Options) -> (Harness, ManualClock) {
        let (clock, hand) = Clock::manual();
        (Self::with_clock(script, options, clock).await, hand)
    }

    async fn with_clock(script: Script, options: Options, clock: Clock) -> Harness {
        let pki = TestPki::new();
        let upstream = DotUpstream::start(pki.leaf(TLS_NAME), script).await;
        let table = upstream_table("rig", upstream.addr(), &pki, options.upstream);
        let dotstub = Dotstub::start_with_clock(&config_text(&options, &table), clock);
        Harness {
            _pki: pki,
            upstream,
            dotstub,
        }
    }
}

/// dotstub in front of several rig upstreams, all trusted through `pki`,
/// labelled in order; `refused` adds an upstream that refuses connections
/// first in the list.
pub fn start_with(
    pki: &TestPki,
    upstreams: &[&DotUpstream],
    refused: bool,
    options: &Options,
) -> Dotstub {
    let mut tables = String::new();
    if refused {
        tables.push_str(&upstream_table(
            "refused",
            refused_address(),
            pki,
            options.upstream,
        ));
    }
    for (index, upstream) in upstreams.iter().enumerate() {
        tables.push_str(&upstream_table(
            &format!("rig{index}"),
            upstream.addr(),
            pki,
            options.upstream,
        ));
    }
    Dotstub::start(&config_text(options, &tables))
}

/// A loopback address where nothing listens: connections are refused.
pub fn refused_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("bound address")
}
