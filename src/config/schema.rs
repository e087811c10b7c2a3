//! The TOML schema as serde reads it: one struct per table, unknown keys
//! refused, every default in a named `default_*` function that `Default`
//! shares. Values that need checking beyond their TOML type stay
//! `Spanned<String>` here so [`super::validate`] can point at them.

use std::{ops::Range, time::Duration};

use serde::Deserialize;
use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use super::{ConfigError, Problem};

//---- Defaults ----

/// Listen on loopback, on a port that needs no privilege; systemd-resolved
/// drop-ins and dnsmasq hand-offs on routers point here.
pub const DEFAULT_LISTEN: [&str; 2] = ["127.0.0.1:5453", "[::1]:5453"];
/// DNS flag day 2020: answers up to 1232 octets avoid IP fragmentation.
pub const DEFAULT_MAX_UDP_SIZE: u16 = 1232;
/// One UDP worker: it answers a few hundred thousand cached queries a
/// second, far beyond a laptop's or a home network's needs, and each
/// worker more costs a thread and, when idle, wake-ups.
pub const DEFAULT_UDP_WORKERS: usize = 1;
/// RFC 7766 §6.2.3 leaves it to the server; 10 s frees idle clients quickly.
pub const DEFAULT_TCP_IDLE_TIMEOUT_MS: u64 = 10_000;
/// Enough for a busy home network, small enough for a 64 MB router.
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 128;
/// Client queries being resolved at once.
pub const DEFAULT_MAX_QUERIES_IN_FLIGHT: usize = 1024;
/// Pipelined queries of one TCP client answered or queued at once.
pub const DEFAULT_MAX_QUERIES_PER_TCP_CONNECTION: usize = 64;
/// Budget for one client query: below the 5 s a glibc client waits.
pub const DEFAULT_TIMEOUT_MS: u64 = 3000;
/// Two connections per upstream: one can be reopened while the other serves.
pub const DEFAULT_CONNECTIONS_PER_UPSTREAM: usize = 2;
/// Idle upstream connections close after 10 s (RFC 7766 §6.2.3, RFC 7858 §3.4).
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 10_000;
/// Queries in flight on one upstream connection.
pub const DEFAULT_MAX_QUERIES_PER_CONNECTION: usize = 128;
/// RFC 8467 §4.1: pad queries to 128-octet blocks.
pub const DEFAULT_PADDING: &str = "block:128";
/// DoT's port (RFC 7858 §3.1).
pub const DEFAULT_DOT_PORT: u16 = 853;
/// 16 MiB of answers: tens of thousands of names, little for a router.
pub const DEFAULT_CACHE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// A day: the usual cap on TTLs (unbound's cache-max-ttl).
pub const DEFAULT_MAX_TTL: u32 = 86_400;
/// RFC 2308 §5 suggests one to three hours for negative answers.
pub const DEFAULT_MAX_NEGATIVE_TTL: u32 = 3600;
/// RFC 8767 §5 suggests 1.8 s before answering stale.
pub const DEFAULT_STALE_ANSWER_AFTER_MS: u64 = 1800;
/// RFC 8767 §5 suggests keeping stale data one to three days.
pub const DEFAULT_MAX_STALE_S: u64 = 86_400;

/// Names whose DNSSEC keys or delegation status are remembered: every zone
/// and delegation a busy home network touches in a day, a few MiB at most.
pub const DEFAULT_KEY_CACHE_NAMES: usize = 4096;

fn default_listen() -> Vec<Spanned<String>> {
    DEFAULT_LISTEN
        .iter()
        .map(|a| Spanned::new(0..0, (*a).to_owned()))
        .collect()
}
fn default_max_udp_size() -> u16 {
    DEFAULT_MAX_UDP_SIZE
}
fn default_tcp_idle_timeout() -> Duration {
    Duration::from_millis(DEFAULT_TCP_IDLE_TIMEOUT_MS)
}
fn default_max_tcp_connections() -> usize {
    DEFAULT_MAX_TCP_CONNECTIONS
}
fn default_max_queries_in_flight() -> usize {
    DEFAULT_MAX_QUERIES_IN_FLIGHT
}
fn default_max_queries_per_tcp_connection() -> usize {
    DEFAULT_MAX_QUERIES_PER_TCP_CONNECTION
}
fn default_timeout() -> Duration {
    Duration::from_millis(DEFAULT_TIMEOUT_MS)
}
fn default_connections_per_upstream() -> usize {
    DEFAULT_CONNECTIONS_PER_UPSTREAM
}
fn default_idle_timeout() -> Duration {
    Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS)
}
fn default_max_queries_per_connection() -> usize {
    DEFAULT_MAX_QUERIES_PER_CONNECTION
}
fn default_true() -> bool {
    true
}
fn default_cache_max_bytes() -> usize {
    DEFAULT_CACHE_MAX_BYTES
}
fn default_max_ttl() -> u32 {
    DEFAULT_MAX_TTL
}
fn default_max_negative_ttl() -> u32 {
    DEFAULT_MAX_NEGATIVE_TTL
}
fn default_stale_answer_after() -> Duration {
    Duration::from_millis(DEFAULT_STALE_ANSWER_AFTER_MS)
}
fn default_max_stale() -> Duration {
    Duration::from_secs(DEFAULT_MAX_STALE_S)
}
fn default_padding() -> Spanned<String> {
    Spanned::new(0..0, DEFAULT_PADDING.to_owned())
}

//---- Tables ----

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listen: RawListen,
    pub forward: RawForward,
    pub upstream: Vec<RawUpstream>,
    pub cache: RawCache,
    pub padding: RawPadding,
    pub dnssec: RawDnssec,
    pub log: RawLog,
}

/// `[listen]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawListen {
    pub addresses: Vec<Spanned<String>>,
    pub max_udp_size: u16,
    pub udp_workers: usize,
    #[serde(rename = "tcp_idle_timeout_ms", with = "millis")]
    pub tcp_idle_timeout: Duration,
    pub max_tcp_connections: usize,
    pub max_queries_per_tcp_connection: usize,
    pub max_queries_in_flight: usize,
}

impl Default for RawListen {
    fn default() -> Self {
        Self {
            addresses: default_listen(),
            max_udp_size: default_max_udp_size(),
            udp_workers: DEFAULT_UDP_WORKERS,
            tcp_idle_timeout: default_tcp_idle_timeout(),
            max_tcp_connections: default_max_tcp_connections(),
            max_queries_per_tcp_connection: default_max_queries_per_tcp_connection(),
            max_queries_in_flight: default_max_queries_in_flight(),
        }
    }
}

/// `[forward]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawForward {
    pub policy: SelectionPolicy,
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    pub connections_per_upstream: usize,
    #[serde(rename = "idle_timeout_ms", with = "millis")]
    pub idle_timeout: Duration,
    pub tls13_only: bool,
    pub tls_resumption: bool,
    pub max_queries_per_connection: usize,
}

impl Default for RawForward {
    fn default() -> Self {
        Self {
            policy: SelectionPolicy::default(),
            timeout: default_timeout(),
            connections_per_upstream: default_connections_per_upstream(),
            idle_timeout: default_idle_timeout(),
            tls13_only: false,
            tls_resumption: true,
            max_queries_per_connection: default_max_queries_per_connection(),
        }
    }
}

/// `[[upstream]]`. An address (`address`, or several in `addresses`) and
/// the name are required; there is no default upstream in code, so no
/// query goes anywhere the user did not choose.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    #[serde(default)]
    pub label: Option<Spanned<String>>,
    #[serde(default)]
    pub address: Option<Spanned<String>>,
    #[serde(default)]
    pub addresses: Vec<Spanned<String>>,
    pub tls_name: Spanned<String>,
    #[serde(default)]
    pub spki_pins: Vec<Spanned<String>>,
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    /// Empty or absent: `[padding] queries`.
    #[serde(default)]
    pub padding: Option<Spanned<String>>,
}

/// `[cache]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawCache {
    pub enabled: bool,
    pub max_bytes: usize,
    pub min_ttl: u32,
    pub max_ttl: u32,
    pub max_negative_ttl: u32,
    pub serve_stale: bool,
    #[serde(rename = "stale_answer_after_ms", with = "millis")]
    pub stale_answer_after: Duration,
    #[serde(rename = "max_stale_s", with = "seconds")]
    pub max_stale: Duration,
    pub prefetch: bool,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            enabled: default_true(),
            max_bytes: default_cache_max_bytes(),
            min_ttl: 0,
            max_ttl: default_max_ttl(),
            max_negative_ttl: default_max_negative_ttl(),
            serve_stale: default_true(),
            stale_answer_after: default_stale_answer_after(),
            max_stale: default_max_stale(),
            prefetch: default_true(),
        }
    }
}

/// `[padding]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawPadding {
    pub queries: Spanned<String>,
}

impl Default for RawPadding {
    fn default() -> Self {
        Self {
            queries: default_padding(),
        }
    }
}

/// `[dnssec]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawDnssec {
    pub validate: bool,
    pub trust_anchor_file: Option<Spanned<String>>,
    pub key_cache_names: usize,
}

impl Default for RawDnssec {
    fn default() -> Self {
        Self {
            validate: default_true(),
            trust_anchor_file: None,
            key_cache_names: DEFAULT_KEY_CACHE_NAMES,
        }
    }
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLog {
    pub level: LogLevel,
}

//---- Modes ----

/// `forward.policy`: which healthy upstream gets the next query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectionPolicy {
    /// Spread queries over the healthy upstreams in turn.
    #[default]
    RoundRobin,
    /// Always the first healthy upstream in configured order.
    Ordered,
}

/// `log.level`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Only what an operator must act on.
    Error,
    /// Also degraded service (an upstream down, a certificate refused).
    Warn,
    /// Also lifecycle: start, listen, shutdown. Never clients or names.
    #[default]
    Info,
    /// Per query: names and clients appear here.
    Debug,
    /// Everything.
    Trace,
}

//---- Reading ----

/// Whole milliseconds in TOML, a `Duration` in Rust.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

/// Whole seconds in TOML, a `Duration` in Rust.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

/// Reads `text` into the raw tables; a TOML or type error becomes one
/// [`Problem`] naming the key path and the position.
pub(super) fn parse(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
    let refuse = |key: &str, error: &toml::de::Error| {
        let problem = Problem::new(key, error.message()).at_span(text, error.span());
        ConfigError::invalid(origin, vec![problem])
    };
    let document = DeTable::parse(text).map_err(|error| refuse("", &error))?;
    RawConfig::deserialize(toml::de::Deserializer::from(document)).map_err(|error| {
        // The error has the span of the value (or key, or table) refused;
        // the document, read again, tells whose it is.
        let key = match (DeTable::parse(text), error.span()) {
            (Ok(document), Some(span)) => key_at(document.get_ref(), &span).unwrap_or_default(),
            _ => String::new(),
        };
        refuse(&key, &error)
    })
}

/// The path (`upstream[0].address`) of the innermost key or value of
/// `table` whose text holds `span`.
fn key_at(table: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let path = key.get_ref().to_string();
        path_in(value, span, path.clone()).or_else(|| holds(key.span(), span).then_some(path))
    })
}

/// `path` extended to the innermost part of `value` holding `span`, or
/// `path` itself if only the value as a whole holds it.
fn path_in(value: &Spanned<DeValue<'_>>, span: &Range<usize>, path: String) -> Option<String> {
    let inner = match value.get_ref() {
        DeValue::Table(table) => key_at(table, span).map(|key| format!("{path}.{key}")),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| path_in(item, span, format!("{path}[{index}]"))),
        _ => None,
    };
    inner.or_else(|| holds(value.span(), span).then_some(path))
}

fn holds(outer: Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}
