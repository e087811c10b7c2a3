//! Opens an authenticated TLS connection to one upstream: TCP connect, then
//! a rustls handshake that checks the chain against the configured roots,
//! the certificate name against `tls_name`, and the SPKI pins if any.
//!
//! The TCP socket is told to find a dead peer itself: keepalive probes
//! after a short idle time, and TCP_USER_TIMEOUT (Linux) bounded by the
//! query budget, so a path that stopped carrying packets is reported in
//! seconds instead of after minutes of retransmissions.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::{StreamExt, stream::FuturesUnordered};

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
    /// Its addresses, in the order RFC 8305 tries them: IPv6 and IPv4
    /// interleaved, IPv6 first.
    addresses: Vec<SocketAddr>,
    /// Index in `addresses` of the one that connected last: tried first.
    preferred: AtomicUsize,
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

/// How long a connection attempt runs alone before the next address is
/// tried beside it (RFC 8305 §5's recommended 250 ms).
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

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
            addresses: interleave_families(&upstream.addresses),
            preferred: AtomicUsize::new(0),
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
        let (index, tcp) = self
            .connect_tcp()
            .await
            .map_err(|err| UpstreamError::Connect(Arc::new(err)))?;
        // The address counts as working once TLS works over it: one that
        // takes TCP but stalls or fails the handshake (a middlebox, a path
        // MTU black hole) goes to the back of the line, however the
        // handshake ends, a timeout included.
        let mut verdict = AddressVerdict {
            connector: self,
            index,
            worked: false,
        };
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
        verdict.worked = true;
        let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        Ok((stream, resumed))
    }
}

/// Sets which address is tried first next time, when dropped: this one
/// if it `worked`, else the one after it.
struct AddressVerdict<'a> {
    connector: &'a Connector,
    index: usize,
    worked: bool,
}

impl Drop for AddressVerdict<'_> {
    fn drop(&mut self) {
        let count = self.connector.addresses.len().max(1);
        let first = if self.worked {
            self.index
        } else {
            (self.index + 1) % count
        };
        self.connector.preferred.store(first, Ordering::Relaxed);
    }
}

impl Connector {
    /// Races TCP connections to the addresses as RFC 8305 §5 says: the
    /// next attempt starts when the one before fails, or after
    /// [`ATTEMPT_DELAY`] without an answer; the first to connect wins
    /// (returned with its index). An address that fails at once (network
    /// unreachable: an IPv4-only or IPv6-only network) costs nothing but
    /// its turn.
    async fn connect_tcp(&self) -> std::io::Result<(usize, TcpStream)> {
        let count = self.addresses.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut order = (0..count).map(|offset| (first + offset) % count);
        let attempt = |index: usize| {
            let address = self.addresses[index];
            async move { (index, TcpStream::connect(address).await) }
        };
        let mut attempts = FuturesUnordered::new();
        let mut last_error = None;
        let mut next_at = None;
        if let Some(index) = order.next() {
            attempts.push(attempt(index));
            next_at = Some(tokio::time::Instant::now() + ATTEMPT_DELAY);
        }
        loop {
            let wait = async {
                match next_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            // An attempt failed, or the last one started has had its time:
            // either way the next address gets its turn.
            tokio::select! {
                finished = attempts.next() => match finished {
                    Some((index, Ok(tcp))) => return Ok((index, tcp)),
                    Some((_, Err(error))) => last_error = Some(error),
                    None => {}
                },
                () = wait => {}
            }
            match order.next() {
                Some(index) => {
                    attempts.push(attempt(index));
                    next_at = Some(tokio::time::Instant::now() + ATTEMPT_DELAY);
                }
                None if attempts.is_empty() => {
                    return Err(last_error.unwrap_or_else(|| {
                        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address")
                    }));
                }
                None => next_at = None,
            }
        }
    }
}

/// IPv6 and IPv4 addresses alternating, IPv6 first, each family in its
/// configured order (RFC 8305 §4).
fn interleave_families(addresses: &[SocketAddr]) -> Vec<SocketAddr> {
    let (mut v6, mut v4) = (
        addresses.iter().filter(|a| a.is_ipv6()).peekable(),
        addresses.iter().filter(|a| a.is_ipv4()).peekable(),
    );
    let mut ordered = Vec::with_capacity(addresses.len());
    while v6.peek().is_some() || v4.peek().is_some() {
        ordered.extend(v6.next());
        ordered.extend(v4.next());
    }
    ordered
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(addresses: &[&str]) -> Vec<SocketAddr> {
        addresses.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn families_alternate_ipv6_first() {
        let configured = parsed(&["9.9.9.9:853", "149.112.112.112:853", "[2620:fe::fe]:853"]);
        assert_eq!(
            interleave_families(&configured),
            parsed(&["[2620:fe::fe]:853", "9.9.9.9:853", "149.112.112.112:853"])
        );
        let one = parsed(&["192.0.2.1:853"]);
        assert_eq!(interleave_families(&one), one);
    }

    #[tokio::test]
    async fn the_socket_is_told_to_find_a_dead_peer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        detect_dead_peer(&tcp, Duration::from_millis(3000)).unwrap();
        let socket = socket2::SockRef::from(&tcp);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), KEEPALIVE_PROBES);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(3000))
        );
    }
}
