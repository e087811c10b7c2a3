//! Turns the raw tables into a [`Config`], collecting every problem so the
//! user sees them all at once.

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
    num::NonZeroUsize,
    path::PathBuf,
    time::Duration,
};

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use toml::Spanned;

use super::{
    CacheConfig, Config, ConfigError, DnssecConfig, ForwardConfig, ListenConfig, Problem, Roots,
    UpstreamConfig,
    schema::{
        DEFAULT_DOT_PORT, RawCache, RawConfig, RawDnssec, RawForward, RawListen, RawUpstream,
    },
};
use crate::{cache::Limits, dnssec::TrustAnchors, padding::PaddingPolicy, upstream::SpkiPin};

/// Smallest `max_udp_size`: every DNS client accepts 512 (RFC 1035 §4.2.1).
const MIN_UDP_SIZE: u16 = 512;
/// Longest query budget: a client gave up long before.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest idle timeout, for clients and upstreams.
const MAX_IDLE: Duration = Duration::from_secs(3600);
/// Most TCP clients, and most client queries in flight.
const MAX_CLIENTS: usize = 65_536;
/// Most UDP workers per address; also the cap when counting CPUs.
const MAX_UDP_WORKERS: usize = 64;
/// Most connections to one upstream.
const MAX_CONNECTIONS: usize = 64;
/// Most queries in flight on one upstream connection. Live and abandoned
/// queries together then hold at most 8,192 of the 65,536 message IDs, so
/// a free random ID is found at once.
const MAX_PER_CONNECTION: usize = 4096;
/// Smallest cache: a few 32 KiB pages, their index and scratch page.
const MIN_CACHE_BYTES: usize = 256 * 1024;
/// Largest cache: 64 GiB.
const MAX_CACHE_BYTES: usize = 64 << 30;
/// Longest TTL kept: RFC 2181 §8 allows 2^31 - 1, but a week is plenty.
const MAX_TTL: u32 = 604_800;
/// Most names in the DNSSEC key cache.
const MAX_KEY_CACHE_NAMES: usize = 1 << 20;
/// Longest stale window: a week (RFC 8767 §5 suggests 1 to 3 days).
const MAX_STALE: Duration = Duration::from_secs(604_800);

/// Collects problems while the tables are checked.
struct Checker<'a> {
    text: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn report(&mut self, key: &str, spanned: Option<&Spanned<String>>, message: impl ToString) {
        let span = spanned.map(Spanned::span);
        self.problems
            .push(Problem::new(key, message.to_string()).at_span(self.text, span));
    }

    /// A count from 1 to `max`.
    fn count(&mut self, key: &str, value: usize, max: usize) -> NonZeroUsize {
        match NonZeroUsize::new(value).filter(|n| n.get() <= max) {
            Some(count) => count,
            None => {
                self.report(
                    key,
                    None,
                    format!("expected a number from 1 to {max}, found {value}"),
                );
                NonZeroUsize::MIN
            }
        }
    }

    /// A duration from 1 ms to `max`.
    fn duration(&mut self, key: &str, value: Duration, max: Duration) -> Duration {
        if value.is_zero() || value > max {
            let (found, max) = (value.as_millis(), max.as_millis());
            self.report(key, None, format!("expected 1 to {max} ms, found {found}"));
        }
        value.clamp(Duration::from_millis(1), max)
    }
}

/// Checks `raw` (read from `text`, named `origin`) and builds the [`Config`].
pub(super) fn validate(raw: RawConfig, text: &str, origin: &str) -> Result<Config, ConfigError> {
    let mut checker = Checker {
        text,
        problems: Vec::new(),
    };
    let listen = check_listen(&mut checker, raw.listen);
    let forward = check_forward(&mut checker, raw.forward);
    let padding = check_padding(&mut checker, "padding.queries", &raw.padding.queries);
    let upstreams = check_upstreams(&mut checker, raw.upstream, padding);
    let cache = check_cache(&mut checker, raw.cache);
    let dnssec = check_dnssec(&mut checker, raw.dnssec);
    if checker.problems.is_empty() {
        Ok(Config {
            origin: origin.to_owned(),
            listen,
            forward,
            upstreams,
            cache,
            padding,
            dnssec,
            log: raw.log.level,
        })
    } else {
        checker.problems.sort_by_key(|p| p.position);
        Err(ConfigError::invalid(origin, checker.problems))
    }
}

fn check_listen(checker: &mut Checker<'_>, raw: RawListen) -> ListenConfig {
    let mut addresses = Vec::new();
    for (index, spanned) in raw.addresses.iter().enumerate() {
        match spanned.get_ref().parse::<SocketAddr>() {
            Ok(address) => addresses.push(address),
            Err(_) => checker.report(
                &format!("listen.addresses[{index}]"),
                Some(spanned),
                format!(
                    "expected IP:port, like 127.0.0.1:53 or [::1]:53, found {:?}",
                    spanned.get_ref()
                ),
            ),
        }
    }
    if raw.addresses.is_empty() {
        checker.report(
            "listen.addresses",
            None,
            "expected at least one address, found none",
        );
    }
    if raw.max_udp_size < MIN_UDP_SIZE {
        checker.report(
            "listen.max_udp_size",
            None,
            format!("expected 512 or more, found {}", raw.max_udp_size),
        );
    }
    let idle = checker.duration("listen.tcp_idle_timeout_ms", raw.tcp_idle_timeout, MAX_IDLE);
    let udp_workers = match raw.udp_workers {
        0 => std::thread::available_parallelism()
            .map_or(1, NonZeroUsize::get)
            .min(MAX_UDP_WORKERS),
        workers => workers,
    };
    ListenConfig {
        addresses,
        max_udp_size: raw.max_udp_size.max(MIN_UDP_SIZE),
        udp_workers: checker.count("listen.udp_workers", udp_workers, MAX_UDP_WORKERS),
        tcp_idle_timeout: idle,
        max_tcp_connections: checker.count(
            "listen.max_tcp_connections",
            raw.max_tcp_connections,
            MAX_CLIENTS,
        ),
        max_queries_per_tcp_connection: checker.count(
            "listen.max_queries_per_tcp_connection",
            raw.max_queries_per_tcp_connection,
            MAX_PER_CONNECTION,
        ),
        max_queries_in_flight: checker.count(
            "listen.max_queries_in_flight",
            raw.max_queries_in_flight,
            MAX_CLIENTS,
        ),
    }
}

fn check_forward(checker: &mut Checker<'_>, raw: RawForward) -> ForwardConfig {
    let connections = raw.connections_per_upstream;
    let per_connection = raw.max_queries_per_connection;
    ForwardConfig {
        policy: raw.policy,
        timeout: checker.duration("forward.timeout_ms", raw.timeout, MAX_TIMEOUT),
        connections_per_upstream: checker.count(
            "forward.connections_per_upstream",
            connections,
            MAX_CONNECTIONS,
        ),
        idle_timeout: checker.duration("forward.idle_timeout_ms", raw.idle_timeout, MAX_IDLE),
        tls13_only: raw.tls13_only,
        tls_resumption: raw.tls_resumption,
        max_queries_per_connection: checker.count(
            "forward.max_queries_per_connection",
            per_connection,
            MAX_PER_CONNECTION,
        ),
    }
}

fn check_cache(checker: &mut Checker<'_>, raw: RawCache) -> CacheConfig {
    let max_bytes = checker
        .count("cache.max_bytes", raw.max_bytes, MAX_CACHE_BYTES)
        .get();
    if max_bytes < MIN_CACHE_BYTES {
        let message = format!("expected at least {MIN_CACHE_BYTES} (256 KiB), found {max_bytes}");
        checker.report("cache.max_bytes", None, message);
    }
    if raw.min_ttl > raw.max_ttl {
        let (min, max) = (raw.min_ttl, raw.max_ttl);
        checker.report(
            "cache.min_ttl",
            None,
            format!("expected at most max_ttl ({max}), found {min}"),
        );
    }
    if raw.max_ttl > MAX_TTL {
        checker.report(
            "cache.max_ttl",
            None,
            format!("expected at most {MAX_TTL}, found {}", raw.max_ttl),
        );
    }
    if raw.max_negative_ttl > MAX_TTL {
        let found = raw.max_negative_ttl;
        checker.report(
            "cache.max_negative_ttl",
            None,
            format!("expected at most {MAX_TTL}, found {found}"),
        );
    }
    let stale_after = checker.duration(
        "cache.stale_answer_after_ms",
        raw.stale_answer_after,
        MAX_TIMEOUT,
    );
    let max_stale = checker.duration("cache.max_stale_s", raw.max_stale, MAX_STALE);
    CacheConfig {
        enabled: raw.enabled,
        max_bytes,
        limits: Limits {
            min_ttl: raw.min_ttl,
            max_ttl: raw.max_ttl,
            max_negative_ttl: raw.max_negative_ttl,
        },
        serve_stale: raw.serve_stale,
        stale_answer_after: stale_after,
        max_stale,
        prefetch: raw.prefetch,
    }
}

/// A padding policy (`key` names it in messages); the default when wrong.
fn check_padding(checker: &mut Checker<'_>, key: &str, raw: &Spanned<String>) -> PaddingPolicy {
    raw.get_ref()
        .parse::<PaddingPolicy>()
        .unwrap_or_else(|err| {
            checker.report(key, Some(raw), err);
            PaddingPolicy::default()
        })
}

fn check_upstreams(
    checker: &mut Checker<'_>,
    raw: Vec<RawUpstream>,
    padding: PaddingPolicy,
) -> Vec<UpstreamConfig> {
    if raw.is_empty() {
        checker.report(
            "upstream",
            None,
            "expected at least one [[upstream]] table, found none (dotstub has no built-in \
             upstream in a configuration file: name the servers you trust)",
        );
    }
    let mut labels = HashSet::new();
    let mut upstreams = Vec::new();
    for (index, upstream) in raw.into_iter().enumerate() {
        let key = format!("upstream[{index}]");
        if let Some(config) = check_upstream(checker, &key, upstream, padding) {
            if !labels.insert(config.label.clone()) {
                checker.report(
                    &format!("{key}.label"),
                    None,
                    format!(
                        "expected a label no other upstream has, found {:?} again",
                        config.label
                    ),
                );
            }
            upstreams.push(config);
        }
    }
    upstreams
}

fn check_upstream(
    checker: &mut Checker<'_>,
    key: &str,
    raw: RawUpstream,
    global_padding: PaddingPolicy,
) -> Option<UpstreamConfig> {
    let addresses = check_upstream_addresses(checker, key, &raw);
    let tls_name = ServerName::try_from(raw.tls_name.get_ref().clone()).ok();
    if tls_name.is_none() {
        checker.report(
            &format!("{key}.tls_name"),
            Some(&raw.tls_name),
            format!(
                "expected the DNS name (or IP address) the server's certificate is valid for, \
                 like dns.quad9.net, found {:?}",
                raw.tls_name.get_ref()
            ),
        );
    }
    let mut spki_pins = Vec::new();
    for (index, pin) in raw.spki_pins.iter().enumerate() {
        match pin.get_ref().parse::<SpkiPin>() {
            Ok(pin) => spki_pins.push(pin),
            Err(err) => checker.report(&format!("{key}.spki_pins[{index}]"), Some(pin), err),
        }
    }
    let roots = match raw
        .ca_file
        .as_ref()
        .filter(|path| !path.get_ref().is_empty())
    {
        None => Some(Roots::BuiltIn),
        Some(path) => read_ca_file(path.get_ref())
            .map_err(|message| checker.report(&format!("{key}.ca_file"), Some(path), message))
            .ok(),
    };
    let own_padding = raw
        .padding
        .as_ref()
        .filter(|policy| !policy.get_ref().is_empty())
        .map(|policy| check_padding(checker, &format!("{key}.padding"), policy));
    let addresses = addresses?;
    let label = raw
        .label
        .map_or_else(|| addresses[0].to_string(), Spanned::into_inner);
    Some(UpstreamConfig {
        label,
        addresses,
        tls_name: tls_name?,
        spki_pins,
        roots: roots?,
        padding: own_padding.unwrap_or(global_padding),
        padding_overridden: own_padding.is_some(),
    })
}

fn check_dnssec(checker: &mut Checker<'_>, raw: RawDnssec) -> DnssecConfig {
    let key_cache_names = checker.count(
        "dnssec.key_cache_names",
        raw.key_cache_names,
        MAX_KEY_CACHE_NAMES,
    );
    let file = raw
        .trust_anchor_file
        .filter(|path| !path.get_ref().is_empty());
    let anchors = match &file {
        None => TrustAnchors::default(),
        Some(path) => read_trust_anchor_file(path.get_ref()).unwrap_or_else(|message| {
            checker.report("dnssec.trust_anchor_file", Some(path), message);
            TrustAnchors::default()
        }),
    };
    DnssecConfig {
        validate: raw.validate,
        anchors,
        trust_anchor_file: file.map(|path| PathBuf::from(path.into_inner())),
        key_cache_names,
    }
}

fn read_trust_anchor_file(path: &str) -> Result<TrustAnchors, String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("cannot read {path}: {err}"))?;
    TrustAnchors::parse(&text).map_err(|err| format!("{path} {err}"))
}

/// The upstream's addresses: `address`, or the list `addresses`, one of
/// the two and not empty.
fn check_upstream_addresses(
    checker: &mut Checker<'_>,
    key: &str,
    raw: &RawUpstream,
) -> Option<Vec<SocketAddr>> {
    let (listed, path): (Vec<_>, fn(&str, usize) -> String) = match &raw.address {
        Some(_) if !raw.addresses.is_empty() => {
            let message = "expected `address` or `addresses`, found both";
            checker.report(&format!("{key}.addresses"), raw.addresses.first(), message);
            return None;
        }
        Some(address) => (vec![address], |key, _| format!("{key}.address")),
        None => (raw.addresses.iter().collect(), |key, index| {
            format!("{key}.addresses[{index}]")
        }),
    };
    if listed.is_empty() {
        let message = "expected `address` (or `addresses`, a list), found neither";
        checker.report(&format!("{key}.address"), None, message);
        return None;
    }
    let mut addresses = Vec::with_capacity(listed.len());
    for (index, spanned) in listed.into_iter().enumerate() {
        match parse_upstream_address(spanned.get_ref()) {
            Some(address) => addresses.push(address),
            None => checker.report(
                &path(key, index),
                Some(spanned),
                format!(
                    "expected an IP address with an optional port, like 9.9.9.9:853 or \
                     [2620:fe::fe]:853, found {:?}",
                    spanned.get_ref()
                ),
            ),
        }
    }
    (addresses.len() == raw.addresses.len().max(1)).then_some(addresses)
}

/// `IP`, `IP:port`, `IPv6` or `[IPv6]:port`; port 853 when absent.
fn parse_upstream_address(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, DEFAULT_DOT_PORT))
    })
}

fn read_ca_file(path: &str) -> Result<Roots, String> {
    let path = PathBuf::from(path);
    let certificates = CertificateDer::pem_file_iter(&path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|err| {
            format!(
                "cannot read PEM certificates from {}: {err}",
                path.display()
            )
        })?;
    if certificates.is_empty() {
        return Err(format!(
            "expected PEM certificates in {}, found none",
            path.display()
        ));
    }
    Ok(Roots::CaFile { path, certificates })
}
