//! dotstub's integration tests: one binary, one module per behaviour.
//!
//! Everything is hermetic: each test mints its own certificates, starts its
//! own DNS-over-TLS upstream (`support::dot_upstream`) and its own dotstub
//! on 127.0.0.1 port 0, and talks to them over loopback only. Tests named
//! `interop_*` need real servers started by `.ci/run` and are ignored by
//! default.

// Test code may panic on what cannot happen; clippy's test exemption does
// not reach helpers outside #[test] functions.
#![allow(clippy::unwrap_used)]

mod support;

// The test rig's own tests: the upstream does what the other tests assume.
mod rig;

// The signed hierarchy's own tests: signatures, DS, NSEC/NSEC3 chains and proofs.
mod signed_rig;

// Answers over UDP and TCP, TCP pipelining, connection caps, idle close, shutdown.
mod listener;

// Upstream connection pool: pipelining, IDs, keepalive, idle close, resumption, policy.
mod pool;

// EDNS(0) padding of upstream queries (every policy, per upstream, the
// limit), the upstream's answer padding, none on local answers.
mod padding;

// dotstub padding eval: the docs' worked example, captures against CSVs, plot, JSON, bad input.
#[cfg(feature = "lab")]
mod padding_eval;

// `dotstub padding probe` against the test upstream: sizes on the wire.
mod padding_probe;

// Client EDNS: UDP size and truncation, Client Subnet, OPT, BADVERS.
mod edns;

// Retries, failover, SERVFAIL within the timeout, backoff that never wedges.
mod failover;

// Connections that die quietly (silent, out of step) cost at most one
// query; a network change starts the pool afresh (issue 13).
mod dead_connections;

// Certificate chain, name and SPKI pin checks.
mod auth;

// Malformed and unwanted client input.
mod bad_input;

// Identical questions in flight share one upstream query.
mod coalescing;

// The answer cache: hits, TTLs, negative and SERVFAIL caching, serve-stale, prefetch.
mod cache;

// The dotstub binary: check-config, query, signals, logs, key log, bind errors.
mod cli;

// DNSSEC validation end to end against the signed hierarchy (issue 4).
mod dnssec;

// Faults in network namespaces, real binary: link flap, moved address, silent connections (issue 13).
mod netns;

// Against a real unbound DoT server started by .ci/run (ignored by default).
mod interop;

// DNSSEC validation of a signed hierarchy served by nsd through a non-validating unbound (.ci/run).
mod interop_dnssec;
