//! Upstream DNS-over-TLS servers (RFC 7858): authenticated connections,
//! pooled and pipelined (RFC 7766 §6.2.1.1), and the choice of which
//! upstream answers a query.
//!
//! - [`Pool`] is the entry point: [`Pool::exchange`] sends one question and
//!   retries on other upstreams within the caller's deadline.
//! - `pool` picks an upstream by policy and health; each upstream keeps a
//!   few connections (`conn`), opened on demand through its `connector`,
//!   which checks the certificate chain, the name and the SPKI `pin`s.
//! - `health` holds the backoff state machine, `rtt` each upstream's
//!   round-trip estimate and the hedge delay made from it.
//! - `limit` keeps each upstream's advertised EDNS size, the bound of
//!   query padding.
//! - `probe` measures padding policies on the wire, for
//!   [`crate::padding_probe`].
//!
//! Strict privacy: a query is written only on a connection whose handshake
//! and authentication succeeded. There is no clear-text path at all.

mod conn;
mod connector;
mod health;
mod limit;
mod pin;
mod pool;
mod probe;
mod rtt;

use std::{io, sync::Arc};

pub use conn::Reply;
pub use health::{ALL_DOWN_PROBE_EVERY, FIRST_BACKOFF, Health, MAX_BACKOFF};
pub use limit::{MIN_UPSTREAM_SIZE, PaddingLimit, UNKNOWN_UPSTREAM_SIZE};
pub use pin::{BadPin, SpkiPin};
pub use pool::{Exchange, Pool, use_lane};
pub use probe::{ProbeConn, ProbeTarget, Records, Sample};
pub use rtt::{MIN_HEDGE_DELAY, RttEstimate};

/// Why an exchange with an upstream failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The TCP connection could not be made.
    #[error("cannot connect")]
    Connect(#[source] Arc<io::Error>),
    /// The TLS handshake failed, certificate, name and pin checks included.
    #[error("TLS handshake failed")]
    Tls(#[source] Arc<io::Error>),
    /// No answer within the time this attempt had.
    #[error("no answer in time")]
    Timeout,
    /// Every in-flight slot for the upstream stayed taken for the whole
    /// attempt: dotstub's own congestion, not a failure of the upstream.
    #[error("too many queries in flight to this upstream")]
    Busy,
    /// The connection closed before the answer came, after answering
    /// others: normal life for DoT (idle close, server restart). The query
    /// is re-sent on a fresh connection as often as the deadline allows.
    #[error("connection closed before the answer")]
    Closed,
    /// The connection closed before answering anything. Re-sent a few
    /// times, then counted as a failure of the upstream, so a server that
    /// drops every connection is not hammered.
    #[error("connection closed before answering any query")]
    ClosedEarly,
    /// The upstream sent something that is not an answer to a query on the
    /// connection (garbage, an unknown ID, another question).
    #[error("answer does not match any query sent")]
    Protocol,
    /// A query's time ran out with nothing at all read since it was
    /// written, on a connection that had answered before: the connection
    /// is condemned as dead (a lost NAT entry, a new address), and the
    /// upstream not blamed.
    #[error("connection went silent")]
    Silent,
    /// No upstream was up, and none was due for a probe: failing fast
    /// rather than waiting behind upstreams known to be failing.
    #[error("every upstream is failing and backing off")]
    Unavailable,
}

impl UpstreamError {
    /// Whether the connection closed under the query, which is then
    /// re-sent on a fresh connection to the same upstream.
    pub fn is_connection_closed(&self) -> bool {
        matches!(self, Self::Closed | Self::ClosedEarly)
    }

    /// Whether it was a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// Whether it counts against the upstream (backoff). Not a close,
    /// which is re-sent; not `Busy`, dotstub's own congestion; not
    /// `Silent`, a connection that died after answering, the path's fault.
    pub fn blames_upstream(&self) -> bool {
        !(self.is_connection_closed() || matches!(self, Self::Busy | Self::Silent))
    }
}

/// Why the pool could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for upstream {label}")]
pub struct SetupError {
    /// The upstream's label.
    pub label: String,
    /// Why.
    #[source]
    pub source: rustls::Error,
}
