//! Counters, registered once at start-up and bumped with one atomic add.
//!
//! Nothing here allocates or formats per query: every counter is a named
//! field, and per-upstream counters live in a slice indexed like the
//! configured upstreams. [`Metrics::render_prometheus`] writes them all in
//! the Prometheus text format, on demand.

use std::{
    fmt::{self, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of the client side: listeners and the resolver.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Queries received over UDP.
    pub udp_queries: Counter,
    /// Queries received over TCP.
    pub tcp_queries: Counter,
    /// Messages too short for a DNS header, dropped.
    pub dropped_short: Counter,
    /// Messages with QR=1 (responses), dropped.
    pub dropped_responses: Counter,
    /// UDP queries dropped because `max_queries_in_flight` were being resolved.
    pub dropped_overload: Counter,
    /// Queries answered FORMERR.
    pub formerr: Counter,
    /// Queries answered NOTIMP.
    pub notimp: Counter,
    /// Queries answered REFUSED (zone transfers).
    pub refused: Counter,
    /// Queries answered BADVERS.
    pub badvers: Counter,
    /// Queries answered SERVFAIL because no upstream answered in time.
    pub servfail: Counter,
    /// UDP answers sent with TC=1 because they did not fit.
    pub truncated: Counter,
    /// Client Subnet options removed from client queries.
    pub client_subnet_stripped: Counter,
    /// Queries that joined an identical question already in flight.
    pub coalesced: Counter,
    /// TCP client connections accepted.
    pub tcp_accepted: Counter,
    /// TCP client connections refused: `max_tcp_connections` were open.
    pub tcp_refused: Counter,
    /// TCP client connections closed for idleness.
    pub tcp_idle_closed: Counter,
}

/// Counters of one upstream.
#[derive(Debug, Default)]
pub struct UpstreamCounters {
    /// The upstream's label.
    pub label: String,
    /// Queries written to this upstream.
    pub queries: Counter,
    /// Answers matched to a query.
    pub answers: Counter,
    /// TLS connections opened (handshake completed).
    pub connections: Counter,
    /// Handshakes that resumed an earlier TLS session.
    pub resumed: Counter,
    /// TCP connects that failed.
    pub connect_failures: Counter,
    /// TLS handshakes that failed, certificate and pin checks included.
    pub tls_failures: Counter,
    /// Attempts that ran out of time.
    pub timeouts: Counter,
    /// Frames that were not an answer to an outstanding query: the
    /// connection is closed and its queries retried.
    pub protocol_errors: Counter,
    /// Queries re-sent because their connection closed before answering.
    pub resent: Counter,
    /// Answers that carried a Padding option.
    pub padded_answers: Counter,
}

/// Every counter of a running dotstub.
#[derive(Debug)]
pub struct Metrics {
    /// Client side.
    pub server: ServerCounters,
    /// One entry per configured upstream, in configured order.
    pub upstreams: Box<[Arc<UpstreamCounters>]>,
}

impl Metrics {
    /// Registers the counters for upstreams with these labels.
    pub fn new<'a>(upstream_labels: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            server: ServerCounters::default(),
            upstreams: upstream_labels
                .into_iter()
                .map(|label| {
                    Arc::new(UpstreamCounters {
                        label: label.to_owned(),
                        ..Default::default()
                    })
                })
                .collect(),
        }
    }

    /// The counters of upstream `index` (configured order).
    pub fn upstream(&self, index: usize) -> Option<&UpstreamCounters> {
        self.upstreams.get(index).map(|counters| &**counters)
    }

    /// Writes every counter in the Prometheus text exposition format.
    pub fn render_prometheus(&self, out: &mut String) -> fmt::Result {
        let s = &self.server;
        for (name, counter) in [
            ("udp_queries", &s.udp_queries),
            ("tcp_queries", &s.tcp_queries),
            ("dropped_short", &s.dropped_short),
            ("dropped_responses", &s.dropped_responses),
            ("dropped_overload", &s.dropped_overload),
            ("formerr", &s.formerr),
            ("notimp", &s.notimp),
            ("refused", &s.refused),
            ("badvers", &s.badvers),
            ("servfail", &s.servfail),
            ("truncated", &s.truncated),
            ("client_subnet_stripped", &s.client_subnet_stripped),
            ("coalesced", &s.coalesced),
            ("tcp_accepted", &s.tcp_accepted),
            ("tcp_refused", &s.tcp_refused),
            ("tcp_idle_closed", &s.tcp_idle_closed),
        ] {
            writeln!(out, "dotstub_{name}_total {}", counter.get())?;
        }
        for u in self.upstreams.iter() {
            let label = &u.label;
            for (name, counter) in [
                ("queries", &u.queries),
                ("answers", &u.answers),
                ("connections", &u.connections),
                ("resumed", &u.resumed),
                ("connect_failures", &u.connect_failures),
                ("tls_failures", &u.tls_failures),
                ("timeouts", &u.timeouts),
                ("protocol_errors", &u.protocol_errors),
                ("resent", &u.resent),
                ("padded_answers", &u.padded_answers),
            ] {
                writeln!(
                    out,
                    "dotstub_upstream_{name}_total{{upstream=\"{label}\"}} {}",
                    counter.get()
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_with_its_value() {
        let metrics = Metrics::new(["quad9", "cloudflare"]);
        metrics.server.formerr.inc();
        metrics.server.formerr.inc();
        metrics.upstream(1).unwrap().answers.inc();
        let mut text = String::new();
        metrics.render_prometheus(&mut text).unwrap();
        assert!(text.contains("dotstub_formerr_total 2\n"));
        assert!(text.contains("dotstub_upstream_answers_total{upstream=\"cloudflare\"} 1\n"));
        assert!(text.contains("dotstub_upstream_answers_total{upstream=\"quad9\"} 0\n"));
        assert_eq!(text.lines().count(), 16 + 2 * 10);
    }
}
