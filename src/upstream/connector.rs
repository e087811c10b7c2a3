//! Opens an authenticated TLS connection to one upstream: TCP connect, then
//! a rustls handshake that checks the chain against the configured roots,
//! the certificate name against `tls_name`, and the SPKI pins if any.

use std::sync::Arc;

use rustls::{
    ClientConfig, KeyLogFile, RootCertStore,
    client::WebPkiServerVerifier,
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
    tls: Arc<ClientConfig>,
}

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
            tls: Arc::new(config),
        })
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
            .map_err(|err| UpstreamError::Connect(Arc::new(err)))?;
        let stream = TlsConnector::from(Arc::clone(&self.tls))
            .connect(self.server_name.clone(), wrap(tcp))
            .await
            .map_err(|err| UpstreamError::Tls(Arc::new(err)))?;
        let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        Ok((stream, resumed))
    }
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
    if key_log {
        config.key_log = Arc::new(KeyLogFile::new());
    }
    Ok(config)
}
