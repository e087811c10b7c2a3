//! Opens an authenticated TLS connection to one upstream: TCP connect, then
//! a rustls handshake that checks the chain against the configured roots,
//! the certificate name against `tls_name`, and the SPKI pins if any.
//!
//! The TCP socket is told to find a dead peer itself: keepalive probes
//! after a short idle time, and TCP_USER_TIMEOUT (Linux) bounded by the
//! query budget, so a path that stopped carrying packets is reported in
//! seconds instead of after minutes of retransmissions.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use rustls::{
    ClientConfig, KeyLogFile, RootCertStore,
    client::{Resumption, WebPkiServerVerifier},
    pki_types::ServerName,
    version::{TLS12, TLS13},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use super::{SetupError, UpstreamError, pin::PinnedVerifier};
use crate::config::{ForwardConfig, Roots, UpstreamConfig};

/// ALPN identifier of DNS over TLS (RFC 7858 §3.1, IANA "dot").
const ALPN_DOT: &[u8] = b"dot";

/// Connects to one upstream. Holds the rustls configuration, so every
/// connection to this upstream shares its TLS session cache and can resume.
#[derive(Debug)]
pub(super) struct Connector {
    /// The upstream's label, for logs.
    pub(super) label: String,
    address: std::net::SocketAddr,
    server_name: ServerName<'static>,
    /// Replaced, with an empty session cache, by [`Connector::forget_sessions`];
    /// a std mutex held only to clone the `Arc` out.
    tls: Mutex<Arc<ClientConfig>>,
    /// Whether sessions are resumed at all (`forward.tls_resumption`).
    resumption: bool,
    /// TCP_USER_TIMEOUT and the keepalive schedule: the query budget.
    dead_peer_after: Duration,
}

/// Idle time before the first keepalive probe, and the time between
/// probes: a connection whose peer vanished dies within a few seconds,
/// at the cost of a probe a second on an idle one.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(2);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_PROBES: u32 = 3;

impl Connector {
    /// Builds the TLS configuration for `upstream`. With `key_log`, session
    /// secrets go to the file named by SSLKEYLOGFILE.
    pub(super) fn new(
        upstream: &UpstreamConfig,
        forward: &ForwardConfig,
        key_log: bool,
    ) -> Result<Self, SetupError> {
        let config = client_config(upstream, forward, key_log).map_err(|source| SetupError {
            label: upstream.label.clone(),
            source,
        })?;
        Ok(Self {
            label: upstream.label.clone(),
            address: upstream.address,
            server_name: upstream.tls_name.clone(),
            tls: Mutex::new(Arc::new(config)),
            resumption: forward.tls_resumption,
            dead_peer_after: forward.timeout,
        })
    }

    /// Drops every TLS session kept for resumption: after a network
    /// change, a resumed session would let the upstream link the new
    /// network's connections to the old one's (RFC 8446 appendix C.4).
    pub(super) fn forget_sessions(&self) {
        if !self.resumption {
            return;
        }
        let mut tls = self
            .tls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut fresh = ClientConfig::clone(&tls);
        fresh.resumption = Resumption::default();
        *tls = Arc::new(fresh);
    }

    /// Connects and completes an authenticated handshake. Returns the
    /// stream and whether the session was resumed.
    pub(super) async fn connect(&self) -> Result<(TlsStream<TcpStream>, bool), UpstreamError> {
        self.connect_over(|tcp| tcp).await
    }

    /// [`Connector::connect`], with TLS running over what `wrap` makes of
    /// the TCP stream (the padding probe counts the octets of each record).
    pub(super) async fn connect_over<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        wrap: impl FnOnce(TcpStream) -> S,
    ) -> Result<(TlsStream<S>, bool), UpstreamError> {
        let tcp = TcpStream::connect(self.address)
            .await
            .map_err(|err| UpstreamError::Connect(Arc::new(err)))?;
        // Queries are small and pipelined: send each at once.
        tcp.set_nodelay(true)
            .and_then(|()| detect_dead_peer(&tcp, self.dead_peer_after))
            .map_err(|err| UpstreamError::Connect(Arc::new(err)))?;
        let tls = Arc::clone(
            &self
                .tls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let stream = TlsConnector::from(tls)
            .connect(self.server_name.clone(), wrap(tcp))
            .await
            .map_err(|err| UpstreamError::Tls(Arc::new(err)))?;
        let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        Ok((stream, resumed))
    }
}

/// Keepalive probes on the idle connection, and on Linux a bound on how
/// long written data may stay unacknowledged (TCP_USER_TIMEOUT, which
/// also bounds the probes): `budget`, the query timeout.
fn detect_dead_peer(tcp: &TcpStream, budget: Duration) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(tcp);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    socket.set_tcp_keepalive(&keepalive)?;
    set_user_timeout(&socket, budget)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_user_timeout(socket: &socket2::SockRef<'_>, budget: Duration) -> std::io::Result<()> {
    socket.set_tcp_user_timeout(Some(budget))
}

/// Elsewhere the keepalive probes alone find a dead peer.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_user_timeout(_socket: &socket2::SockRef<'_>, _budget: Duration) -> std::io::Result<()> {
    Ok(())
}

fn client_config(
    upstream: &UpstreamConfig,
    forward: &ForwardConfig,
    key_log: bool,
) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match &upstream.roots {
        Roots::BuiltIn => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Roots::CaFile { certificates, .. } => {
            roots.add_parsable_certificates(certificates.iter().cloned());
        }
    }
    let anchors = roots.roots.clone();
    let algorithms = provider.signature_verification_algorithms;
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|err| rustls::Error::General(err.to_string()))?;
    let versions: &[&rustls::SupportedProtocolVersion] = if forward.tls13_only {
        &[&TLS13]
    } else {
        &[&TLS13, &TLS12]
    };
    let builder = ClientConfig::builder_with_provider(provider).with_protocol_versions(versions)?;
    let mut config = if upstream.spki_pins.is_empty() {
        builder.with_webpki_verifier(webpki).with_no_client_auth()
    } else {
        let pins = upstream.spki_pins.clone();
        let pinned = PinnedVerifier::new(webpki, anchors, algorithms, pins);
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(pinned))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![ALPN_DOT.to_vec()];
    if !forward.tls_resumption {
        config.resumption = Resumption::disabled();
    }
    if key_log {
        config.key_log = Arc::new(KeyLogFile::new());
    }
    Ok(config)
}
