//! The cache's clock: milliseconds since it started, read once per batch
//! of received queries. Tests and simulations drive a manual clock instead
//! of waiting.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Milliseconds since the clock started.
pub type Millis = u64;

/// Where the cache reads the time.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The monotonic system clock.
    System {
        /// When this clock read 0.
        start: Instant,
    },
    /// A clock that moves only when told to, shared with its [`ManualClock`].
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// The monotonic system clock, starting now.
    pub fn system() -> Self {
        Self::System {
            start: Instant::now(),
        }
    }

    /// A clock at 0 that moves only through the returned handle.
    pub fn manual() -> (Self, ManualClock) {
        let now = Arc::new(AtomicU64::new(0));
        (Self::Manual(Arc::clone(&now)), ManualClock(now))
    }

    /// The time now.
    pub fn now(&self) -> Millis {
        match self {
            // u64 milliseconds last 584 million years.
            Self::System { start } => start.elapsed().as_millis() as Millis,
            Self::Manual(now) => now.load(Ordering::Relaxed),
        }
    }
}

/// Moves a [`Clock::Manual`] forward.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0
            .fetch_add(by.as_millis() as Millis, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let (clock, hand) = Clock::manual();
        assert_eq!(clock.now(), 0);
        hand.advance(Duration::from_secs(3));
        assert_eq!(clock.now(), 3000);
    }

    #[test]
    fn system_clock_starts_near_zero_and_never_goes_back() {
        let clock = Clock::system();
        let first = clock.now();
        assert!(first < 1000);
        assert!(clock.now() >= first);
    }
}
