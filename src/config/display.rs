//! Prints a [`Config`] back as TOML with every value in effect, defaults
//! included: what `dotstub check-config` shows.

use std::fmt;

use super::{Config, LogLevel, Roots, SelectionPolicy};

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listen = &self.listen;
        let addresses: Vec<String> = listen
            .addresses
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect();
        writeln!(f, "# effective configuration of {}", self.origin)?;
        writeln!(f, "[listen]")?;
        writeln!(f, "addresses = [{}]", addresses.join(", "))?;
        writeln!(f, "max_udp_size = {}", listen.max_udp_size)?;
        writeln!(
            f,
            "tcp_idle_timeout_ms = {}",
            listen.tcp_idle_timeout.as_millis()
        )?;
        writeln!(f, "max_tcp_connections = {}", listen.max_tcp_connections)?;
        writeln!(
            f,
            "max_queries_in_flight = {}",
            listen.max_queries_in_flight
        )?;
        let forward = &self.forward;
        writeln!(f, "\n[forward]")?;
        writeln!(f, "policy = \"{}\"", forward.policy)?;
        writeln!(f, "timeout_ms = {}", forward.timeout.as_millis())?;
        writeln!(
            f,
            "connections_per_upstream = {}",
            forward.connections_per_upstream
        )?;
        writeln!(f, "idle_timeout_ms = {}", forward.idle_timeout.as_millis())?;
        writeln!(f, "tls13_only = {}", forward.tls13_only)?;
        writeln!(
            f,
            "max_queries_per_connection = {}",
            forward.max_queries_per_connection
        )?;
        for upstream in &self.upstreams {
            let pins: Vec<String> = upstream
                .spki_pins
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect();
            let ca_file = match &upstream.roots {
                Roots::BuiltIn => String::new(),
                Roots::CaFile { path, .. } => path.display().to_string(),
            };
            writeln!(f, "\n[[upstream]]")?;
            writeln!(f, "label = {:?}", upstream.label)?;
            writeln!(f, "address = \"{}\"", upstream.address)?;
            writeln!(f, "tls_name = \"{}\"", upstream.tls_name.to_str())?;
            writeln!(f, "spki_pins = [{}]", pins.join(", "))?;
            writeln!(f, "ca_file = {ca_file:?}")?;
        }
        writeln!(f, "\n[padding]")?;
        writeln!(f, "queries = \"{}\"", self.padding)?;
        writeln!(f, "\n[log]")?;
        writeln!(f, "level = \"{}\"", self.log)
    }
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
