//! One cached answer: the wire message with its TTL fields located, when
//! it was stored, and until when it is fresh, stale-but-servable, and due
//! for a prefetch. Writing it for a client copies it and patches the ID,
//! the spelling of the name and each TTL: no allocation.

use std::sync::atomic::{AtomicBool, Ordering};

use super::clock::Millis;
use crate::wire::{Answer, Overflow, Query, Records, Transport, Written, read_ttl, write_ttl};

/// TTL of an answer served stale (RFC 8767 §4).
pub const STALE_TTL: u32 = 30;

/// Octets an entry costs beyond its message and key: the cache's slot,
/// the allocation headers of the key, the entry and its message, and the
/// entry's own fields. Counted so `max_bytes` bounds real memory.
const OVERHEAD: usize = 256;

/// Share of its lifetime after which a hit triggers a prefetch: 90 %,
/// leaving the last 10 % (RFC 8767 §5 and unbound's prefetch).
const PREFETCH_AT_PERCENT: u64 = 90;

/// A cached answer.
#[derive(Debug)]
pub struct Entry {
    answer: Answer,
    /// Offsets of every TTL field in the stored message.
    ttl_offsets: Box<[u16]>,
    stored_at: Millis,
    fresh_until: Millis,
    stale_until: Millis,
    /// When a hit starts a refresh; `None` without prefetch.
    prefetch_from: Option<Millis>,
    /// Set by the one hit that starts the refresh.
    prefetching: AtomicBool,
    weight: u64,
}

/// When an entry stops being fresh and stops being servable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    /// Now.
    pub now: Millis,
    /// Seconds it stays fresh.
    pub lifetime: u32,
    /// How long past that it may be served stale, in milliseconds; 0 off.
    pub stale_for: Millis,
    /// Whether hits near the end refresh it.
    pub prefetch: bool,
}

impl Entry {
    /// An entry for `answer`, already prepared for the cache.
    pub fn new(answer: Answer, times: Times) -> Option<Self> {
        let ttl_offsets: Box<[u16]> = Records::new(answer.as_bytes())
            .ok()?
            .map(|record| {
                record
                    .ok()
                    .and_then(|(_, span)| u16::try_from(span.ttl_offset()).ok())
            })
            .collect::<Option<_>>()?;
        let lifetime = Millis::from(times.lifetime) * 1000;
        let fresh_until = times.now + lifetime;
        let weight =
            (OVERHEAD + answer.as_bytes().len() + answer.options_len() + 2 * ttl_offsets.len())
                as u64;
        Some(Self {
            answer,
            ttl_offsets,
            stored_at: times.now,
            fresh_until,
            stale_until: fresh_until + times.stale_for,
            prefetch_from: times
                .prefetch
                .then(|| times.now + lifetime * PREFETCH_AT_PERCENT / 100),
            prefetching: AtomicBool::new(false),
            weight,
        })
    }

    /// Whether it is fresh at `now`.
    pub fn is_fresh(&self, now: Millis) -> bool {
        now < self.fresh_until
    }

    /// Whether it may still be served stale at `now`.
    pub fn is_servable_stale(&self, now: Millis) -> bool {
        now < self.stale_until
    }

    /// Whether this hit should start the one refresh of a nearly expired
    /// entry: true once, for the first hit in its last 10 %.
    pub fn claim_prefetch(&self, now: Millis) -> bool {
        self.prefetch_from.is_some_and(|from| now >= from)
            && !self.prefetching.swap(true, Ordering::Relaxed)
    }

    /// Memory it costs, in octets (without its key).
    pub fn weight(&self) -> u64 {
        self.weight
    }

    /// The stored answer.
    pub fn answer(&self) -> &Answer {
        &self.answer
    }

    /// Writes it for `query` with every TTL lowered by the whole seconds
    /// it spent in the cache.
    pub fn write(
        &self,
        query: &Query<'_>,
        transport: Transport,
        udp_size: u16,
        now: Millis,
        out: &mut [u8],
    ) -> Result<Written, Overflow> {
        let elapsed = u32::try_from(now.saturating_sub(self.stored_at) / 1000).unwrap_or(u32::MAX);
        self.write_with(query, transport, udp_size, out, |ttl| {
            ttl.saturating_sub(elapsed)
        })
    }

    /// Writes it for `query` as a stale answer: every TTL 30 (RFC 8767 §4).
    pub fn write_stale(
        &self,
        query: &Query<'_>,
        transport: Transport,
        udp_size: u16,
        out: &mut [u8],
    ) -> Result<Written, Overflow> {
        self.write_with(query, transport, udp_size, out, |_| STALE_TTL)
    }

    fn write_with(
        &self,
        query: &Query<'_>,
        transport: Transport,
        udp_size: u16,
        out: &mut [u8],
        ttl: impl Fn(u32) -> u32,
    ) -> Result<Written, Overflow> {
        let written = self
            .answer
            .write_for_client(query, transport, udp_size, out)?;
        if written.whole {
            let stored = self.answer.as_bytes();
            for &offset in self.ttl_offsets.iter() {
                let offset = usize::from(offset);
                if let Some(stored_ttl) = read_ttl(stored, offset) {
                    write_ttl(out, offset, ttl(stored_ttl));
                }
            }
        }
        Ok(written)
    }
}
