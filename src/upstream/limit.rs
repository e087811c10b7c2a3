//! The largest message an upstream takes, as it advertised in the OPT
//! record of its responses (RFC 6891 §6.2.3): no padded query goes beyond
//! it (RFC 7830 §3, RFC 8467 §4). One per upstream, shared by its
//! connections, learned from every response.
//
// Until the first response, the limit is `UNKNOWN_UPSTREAM_SIZE`, 1232.
// Why not RFC 6891's floor of 512: every DoT resolver in use advertises
// 1232 or more since DNS flag day 2020 (unbound, knot-resolver, BIND,
// Quad9, Cloudflare and Google all do), dotstub advertises 1232 itself,
// and starting at 512 would make the first `max:N` query of every
// upstream shorter than the rest, an outlier that marks a fresh
// connection. Over TCP the size bounds nothing in the transport anyway;
// it is the peer's stated preference, which is why it is honoured as soon
// as it is known.

use std::sync::atomic::{AtomicU16, Ordering};

/// The limit used until an upstream has answered: 1232, DNS flag day
/// 2020's size, which dotstub also advertises.
pub const UNKNOWN_UPSTREAM_SIZE: u16 = 1232;

/// Smallest size honoured: RFC 6891 §6.2.5 treats anything lower as 512,
/// and a response without an OPT record means 512 (RFC 1035 §4.2.1).
pub const MIN_UPSTREAM_SIZE: u16 = 512;

/// An upstream's advertised UDP payload size, read lock-free on every
/// query and written on every response; an atomic because the
/// connections of one upstream run on different threads.
#[derive(Debug)]
pub struct PaddingLimit(AtomicU16);

impl Default for PaddingLimit {
    fn default() -> Self {
        Self(AtomicU16::new(UNKNOWN_UPSTREAM_SIZE))
    }
}

impl PaddingLimit {
    /// The largest padded query, in octets.
    pub fn get(&self) -> usize {
        usize::from(self.0.load(Ordering::Relaxed))
    }

    /// Takes the size from a response's OPT record (`None`: no OPT record).
    pub fn learn(&self, udp_size: Option<u16>) {
        let size = udp_size.unwrap_or(MIN_UPSTREAM_SIZE).max(MIN_UPSTREAM_SIZE);
        self.0.store(size, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_the_advertised_size_never_below_512() {
        let limit = PaddingLimit::default();
        assert_eq!(limit.get(), 1232);
        limit.learn(Some(4096));
        assert_eq!(limit.get(), 4096);
        limit.learn(Some(100));
        assert_eq!(limit.get(), 512);
        limit.learn(Some(700));
        limit.learn(None);
        assert_eq!(limit.get(), 512);
    }
}
