//! Configuration: the TOML schema, its defaults, the embedded default file,
//! and the checked [`Config`] that the rest of dotstub receives.
//!
//! Reading happens in two steps. serde reads the file into the `Raw*`
//! structs of [`schema`] (unknown keys are refused there), then
//! [`validate`] turns those into a [`Config`] and reports every problem at
//! once, each with the file, the key path, the line and column, and what
//! was expected. Nothing outside this module sees the raw structs.
//!
//! The embedded default is `config/dotstub.toml` itself, compiled in, so the
//! documented example and the default cannot drift apart.

mod display;
mod error;
mod schema;
mod validate;

use std::{
    net::SocketAddr,
    num::NonZeroUsize,
    path::{Path, PathBuf},
    time::Duration,
};

use rustls::pki_types::{CertificateDer, ServerName};

pub use error::{ConfigError, Problem};
pub use schema::{LogLevel, SelectionPolicy};

use crate::{cache::Limits, dnssec::TrustAnchors, padding::PaddingPolicy, upstream::SpkiPin};

/// The embedded default configuration: `config/dotstub.toml`.
pub const EMBEDDED: &str = include_str!("../../config/dotstub.toml");

/// What the origin of the embedded configuration is called in messages.
pub const EMBEDDED_ORIGIN: &str = "<embedded default config>";

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from: a file path or [`EMBEDDED_ORIGIN`].
    pub origin: String,
    /// Local listeners.
    pub listen: ListenConfig,
    /// How queries are forwarded.
    pub forward: ForwardConfig,
    /// The upstream DoT servers, in configured order (at least one).
    pub upstreams: Vec<UpstreamConfig>,
    /// The answer cache.
    pub cache: CacheConfig,
    /// Padding of upstream queries (`[padding] queries`), for every
    /// upstream without a policy of its own.
    pub padding: PaddingPolicy,
    /// DNSSEC validation.
    pub dnssec: DnssecConfig,
    /// Log verbosity.
    pub log: LogLevel,
}

/// `[dnssec]`: validation of answers from the trust anchors down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnssecConfig {
    /// Whether answers are validated (default true). Upstream queries then
    /// carry DO=1 and CD=1, and clients see AD=1 only on secure answers.
    pub validate: bool,
    /// Where validation starts: the root's KSKs, or `trust_anchor_file`.
    pub anchors: TrustAnchors,
    /// The file the anchors came from, when not built in.
    pub trust_anchor_file: Option<PathBuf>,
    /// Names whose keys or delegation status the key cache remembers.
    pub key_cache_names: NonZeroUsize,
}

/// `[cache]`: the answer cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Whether answers are cached at all.
    pub enabled: bool,
    /// Memory the cache may use, in octets.
    pub max_bytes: usize,
    /// TTL clamps, in seconds.
    pub limits: Limits,
    /// Serve expired answers when upstreams fail or are slow (RFC 8767).
    pub serve_stale: bool,
    /// How long a client waits for a fresh answer before a stale one.
    pub stale_answer_after: Duration,
    /// How long past expiry an answer may still be served stale.
    pub max_stale: Duration,
    /// Refresh popular answers before they expire.
    pub prefetch: bool,
}

/// `[listen]`: where clients reach dotstub and what it will carry for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenConfig {
    /// UDP and TCP are served on each address.
    pub addresses: Vec<SocketAddr>,
    /// Largest UDP answer sent and the size advertised to clients.
    pub max_udp_size: u16,
    /// UDP sockets (and worker threads) per address.
    pub udp_workers: NonZeroUsize,
    /// A TCP client connection with nothing to read or answer for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// TCP client connections open at once; more are refused and counted.
    pub max_tcp_connections: NonZeroUsize,
    /// Queries of one TCP client answered or queued at once; past that,
    /// dotstub stops reading from it until answers go out.
    pub max_queries_per_tcp_connection: NonZeroUsize,
    /// Client queries being resolved at once; more are dropped (UDP) or wait (TCP).
    pub max_queries_in_flight: NonZeroUsize,
}

/// `[forward]`: upstream selection, budgets and connection reuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Which healthy upstream gets the next query.
    pub policy: SelectionPolicy,
    /// Budget for one client query, retries included.
    pub timeout: Duration,
    /// TLS connections kept per upstream; queries pipeline over them.
    pub connections_per_upstream: NonZeroUsize,
    /// An upstream connection idle this long is closed (or sooner if the
    /// server's edns-tcp-keepalive says so).
    pub idle_timeout: Duration,
    /// Refuse TLS 1.2.
    pub tls13_only: bool,
    /// Resume TLS sessions within one network (sessions are forgotten on
    /// every network change); false turns resumption off entirely.
    pub tls_resumption: bool,
    /// Queries in flight on one upstream connection at once.
    pub max_queries_per_connection: NonZeroUsize,
}

/// One `[[upstream]]`: a DoT server and how to authenticate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Name used in logs and metrics.
    pub label: String,
    /// Addresses and ports (853 unless given), at least one; connections
    /// race them, IPv6 first (RFC 8305).
    pub addresses: Vec<SocketAddr>,
    /// The name (or IP) the certificate must be valid for; also sent as SNI.
    pub tls_name: ServerName<'static>,
    /// When not empty, one certificate in the presented chain must match.
    pub spki_pins: Vec<SpkiPin>,
    /// Trust roots for this upstream.
    pub roots: Roots,
    /// Padding of the queries sent to it: its own `padding`, or
    /// `[padding] queries` when it has none (RFC 8467 §4).
    pub padding: PaddingPolicy,
    /// Whether `padding` is the upstream's own rather than `[padding]`'s.
    pub padding_overridden: bool,
}

/// Which roots a certificate chain must lead to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The Mozilla roots built in through webpki-roots.
    BuiltIn,
    /// The certificates of a PEM file, instead of the built-in roots.
    CaFile {
        /// The file, for messages.
        path: PathBuf,
        /// Its certificates.
        certificates: Vec<CertificateDer<'static>>,
    },
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The embedded default configuration.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::from_toml(EMBEDDED, EMBEDDED_ORIGIN)
    }

    /// Reads and checks TOML `text`; `origin` names it in error messages,
    /// and relative `ca_file` paths are taken from the working directory.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let raw = schema::parse(text, origin)?;
        validate::validate(raw, text, origin)
    }
}

#[cfg(test)]
mod tests;
