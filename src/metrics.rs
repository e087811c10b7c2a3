//! Counters, registered once at start-up and bumped with one atomic add.
//!
//! Nothing here allocates or formats per query: every counter is a named
//! field, and per-upstream counters live in a slice indexed like the
//! configured upstreams.
//! They are read through [`crate::Server::metrics`].

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use crate::padding::{RESPONSE_BLOCKS, block_of_all};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
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
    /// UDP datagrams longer than any query dotstub reads (4 KiB), dropped.
    pub dropped_oversize: Counter,
    /// Queries answered SERVFAIL at once because `max_queries_in_flight`
    /// were being resolved.
    pub overloaded: Counter,
    /// Queries read from TCP clients after the shutdown signal that needed
    /// upstream, answered SERVFAIL.
    pub shutting_down: Counter,
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

/// Counters of the answer cache.
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Lookups that found a fresh answer.
    pub hits: Counter,
    /// Lookups that found nothing fresh.
    pub misses: Counter,
    /// Answers stored.
    pub inserts: Counter,
    /// Answers too big for a cache entry, not stored.
    pub inserts_refused: Counter,
    /// Answers dropped to make room, or expired, when their page was recycled.
    pub evictions: Counter,
    /// Expired answers served because upstreams failed or were slow.
    pub stale_served: Counter,
    /// Background refreshes of answers near expiry.
    pub prefetches: Counter,
}

/// Counters of DNSSEC validation.
#[derive(Debug, Default)]
pub struct DnssecCounters {
    /// Answers validated secure.
    pub secure: Counter,
    /// Answers proven insecure.
    pub insecure: Counter,
    /// Answers found bogus, answered SERVFAIL.
    pub bogus: Counter,
    /// Answers left undecided because a DS or DNSKEY fetch failed.
    pub indeterminate: Counter,
    /// Answers passed on unvalidated because the client set CD.
    pub unchecked: Counter,
    /// DS and DNSKEY queries sent upstream (the key cache missed).
    pub key_fetches: Counter,
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
    /// Connections condemned because a query's time ran out with nothing
    /// read on them since it was written (a dead path, a lost NAT entry).
    pub condemned: Counter,
    /// Queries sent to this upstream as hedges: another upstream had not
    /// answered them within its hedge delay.
    pub hedges: Counter,
    /// Hedges this upstream answered first.
    pub hedges_won: Counter,
    /// Answers that carried a Padding option.
    pub padded_answers: Counter,
    /// Padded answers whose length (TCP prefix excluded) is a multiple of
    /// the block of [`RESPONSE_BLOCKS`] at the same index: where one equals
    /// `padded_answers`, every padded answer fits that block.
    pub padded_answer_blocks: [Counter; RESPONSE_BLOCKS.len()],
}

impl UpstreamCounters {
    /// Counts a padded answer `len` octets long.
    pub fn record_padded_answer(&self, len: usize) {
        self.padded_answers.inc();
        for (block, counter) in RESPONSE_BLOCKS.iter().zip(&self.padded_answer_blocks) {
            if len.is_multiple_of(*block) {
                counter.inc();
            }
        }
    }

    /// The block the upstream pads its answers to: the greatest of
    /// [`RESPONSE_BLOCKS`] dividing every padded answer so far; `None`
    /// before a padded answer, or when no block fits them all (random or
    /// maximal padding, say).
    pub fn answer_block(&self) -> Option<usize> {
        let divided = self.padded_answer_blocks.iter().map(Counter::get);
        block_of_all(self.padded_answers.get(), divided)
    }
}

/// Every counter of a running dotstub.
#[derive(Debug)]
pub struct Metrics {
    /// Client side.
    pub server: ServerCounters,
    /// The answer cache.
    pub cache: Arc<CacheCounters>,
    /// DNSSEC validation.
    pub dnssec: DnssecCounters,
    /// One entry per configured upstream, in configured order.
    pub upstreams: Box<[Arc<UpstreamCounters>]>,
}

impl Metrics {
    /// Registers the counters for upstreams with these labels.
    pub fn new<'a>(upstream_labels: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            server: ServerCounters::default(),
            cache: Arc::default(),
            dnssec: DnssecCounters::default(),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::padding::response_block;

    #[test]
    fn counters_count_per_upstream() {
        let metrics = Metrics::new(["quad9", "cloudflare"]);
        metrics.server.formerr.inc();
        metrics.server.formerr.add(2);
        metrics.upstream(1).unwrap().answers.inc();
        assert_eq!(metrics.server.formerr.get(), 3);
        assert_eq!(metrics.upstream(0).unwrap().answers.get(), 0);
        assert_eq!(metrics.upstream(1).unwrap().label, "cloudflare");
        assert!(metrics.upstream(2).is_none());
    }

    #[test]
    fn answer_block_agrees_with_response_block() {
        let metrics = Metrics::new(["rig"]);
        let upstream = metrics.upstream(0).unwrap();
        assert_eq!(upstream.answer_block(), None);
        for lengths in [&[468, 936][..], &[512], &[512, 640], &[100]] {
            for &len in lengths {
                upstream.record_padded_answer(len);
            }
            let all = [468, 936, 512, 512, 640, 100];
            let seen = &all[..upstream.padded_answers.get() as usize];
            assert_eq!(
                upstream.answer_block(),
                response_block(seen.iter().copied())
            );
        }
        assert_eq!(upstream.answer_block(), None);
    }
}
