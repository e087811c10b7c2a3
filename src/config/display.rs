//! Prints a [`Config`] back as TOML with every value in effect, defaults
//! included: what `dotstub check-config` shows. Each table prints itself.

use std::{fmt, path::Path};

use super::{
    CacheConfig, Config, DnssecConfig, ForwardConfig, ListenConfig, LogLevel, Roots,
    SelectionPolicy, UpstreamConfig,
};

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# effective configuration of {}", self.origin)?;
        write!(f, "{}\n{}", self.listen, self.forward)?;
        for upstream in &self.upstreams {
            write!(f, "\n{upstream}")?;
        }
        write!(f, "\n{}", self.cache)?;
        writeln!(f, "\n[padding]\nqueries = \"{}\"", self.padding)?;
        write!(f, "\n{}", self.dnssec)?;
        writeln!(f, "\n[log]\nlevel = \"{}\"", self.log)
    }
}

impl fmt::Display for ListenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addresses = quoted(self.addresses.iter());
        writeln!(f, "[listen]\naddresses = [{addresses}]")?;
        writeln!(f, "max_udp_size = {}", self.max_udp_size)?;
        writeln!(f, "udp_workers = {}", self.udp_workers)?;
        let idle = self.tcp_idle_timeout.as_millis();
        writeln!(f, "tcp_idle_timeout_ms = {idle}")?;
        writeln!(f, "max_tcp_connections = {}", self.max_tcp_connections)?;
        let pipeline = self.max_queries_per_tcp_connection;
        writeln!(f, "max_queries_per_tcp_connection = {pipeline}")?;
        writeln!(f, "max_queries_in_flight = {}", self.max_queries_in_flight)
    }
}

impl fmt::Display for ForwardConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[forward]\npolicy = \"{}\"", self.policy)?;
        writeln!(f, "timeout_ms = {}", self.timeout.as_millis())?;
        let connections = self.connections_per_upstream;
        writeln!(f, "connections_per_upstream = {connections}")?;
        writeln!(f, "idle_timeout_ms = {}", self.idle_timeout.as_millis())?;
        writeln!(f, "tls13_only = {}", self.tls13_only)?;
        writeln!(f, "tls_resumption = {}", self.tls_resumption)?;
        let per_connection = self.max_queries_per_connection;
        writeln!(f, "max_queries_per_connection = {per_connection}")
    }
}

impl fmt::Display for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[cache]\nenabled = {}", self.enabled)?;
        writeln!(f, "max_bytes = {}", self.max_bytes)?;
        writeln!(f, "min_ttl = {}", self.limits.min_ttl)?;
        writeln!(f, "max_ttl = {}", self.limits.max_ttl)?;
        writeln!(f, "max_negative_ttl = {}", self.limits.max_negative_ttl)?;
        writeln!(f, "serve_stale = {}", self.serve_stale)?;
        let stale_after = self.stale_answer_after.as_millis();
        writeln!(f, "stale_answer_after_ms = {stale_after}")?;
        writeln!(f, "max_stale_s = {}", self.max_stale.as_secs())?;
        writeln!(f, "prefetch = {}", self.prefetch)
    }
}

impl fmt::Display for DnssecConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.trust_anchor_file.as_deref().unwrap_or(Path::new(""));
        writeln!(f, "[dnssec]\nvalidate = {}", self.validate)?;
        writeln!(
            f,
            "trust_anchor_file = {}",
            toml_string(&file.display().to_string())
        )?;
        writeln!(f, "key_cache_names = {}", self.key_cache_names)
    }
}

impl fmt::Display for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ca_file = match &self.roots {
            Roots::BuiltIn => String::new(),
            Roots::CaFile { path, .. } => path.display().to_string(),
        };
        writeln!(f, "[[upstream]]\nlabel = {}", toml_string(&self.label))?;
        writeln!(f, "addresses = [{}]", quoted(self.addresses.iter()))?;
        writeln!(f, "tls_name = \"{}\"", self.tls_name.to_str())?;
        writeln!(f, "spki_pins = [{}]", quoted(self.spki_pins.iter()))?;
        writeln!(f, "ca_file = {}", toml_string(&ca_file))?;
        if self.padding_overridden {
            writeln!(f, "padding = \"{}\"", self.padding)
        } else {
            writeln!(f, "padding = \"\" # [padding] queries: {}", self.padding)
        }
    }
}

/// `"a", "b"`: a TOML array's contents.
/// `text` as a TOML string, escaped as TOML escapes (Rust's `{:?}` is not
/// TOML: `\u{1b}` does not load back).
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn quoted<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items
        .map(|item| format!("\"{item}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for SelectionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RoundRobin => "round-robin",
            Self::Ordered => "ordered",
        })
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        })
    }
}
