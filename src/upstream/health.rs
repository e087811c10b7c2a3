//! Whether an upstream should get queries: up, or backing off after a
//! failure with an exponentially growing, capped delay.
//!
//! Backoff never wedges: an upstream whose delay has passed is offered one
//! query again, and when every upstream is backing off the pool still
//! probes the one due soonest, so service returns with the network.

use std::time::{Duration, Instant};

/// First backoff delay after a failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest backoff delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The health of one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Answering.
    Up,
    /// Failed `failures` times in a row; not offered queries before `until`,
    /// unless every upstream is backing off.
    Backoff {
        /// When it may be tried again.
        until: Instant,
        /// Consecutive failures.
        failures: u32,
    },
}

/// What changed when a result was recorded, so the caller can log a
/// failure once when it starts and once when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing worth a log line.
    Same,
    /// Was up, now backing off.
    WentDown,
    /// Was backing off, now up.
    Recovered,
}

impl Health {
    /// Whether it may get a query at `now`.
    pub fn is_available(&self, now: Instant) -> bool {
        match self {
            Self::Up => true,
            Self::Backoff { until, .. } => *until <= now,
        }
    }

    /// When it may get a query again; `None` when up.
    pub fn retry_at(&self) -> Option<Instant> {
        match self {
            Self::Up => None,
            Self::Backoff { until, .. } => Some(*until),
        }
    }

    /// Records an answer.
    pub fn record_success(&mut self) -> Transition {
        let was = *self;
        *self = Self::Up;
        if was == Self::Up {
            Transition::Same
        } else {
            Transition::Recovered
        }
    }

    /// Records a failure at `now`: the delay doubles from 1 s up to 60 s.
    /// Failures while a backoff is running (queries that were already in
    /// flight when it started) do not lengthen it: one outage, one step.
    pub fn record_failure(&mut self, now: Instant) -> Transition {
        let failures = match self {
            Self::Up => 1,
            Self::Backoff { until, .. } if now < *until => return Transition::Same,
            Self::Backoff { failures, .. } => failures.saturating_add(1),
        };
        let delay = FIRST_BACKOFF
            .saturating_mul(1 << (failures - 1).min(16))
            .min(MAX_BACKOFF);
        let transition = if *self == Self::Up {
            Transition::WentDown
        } else {
            Transition::Same
        };
        *self = Self::Backoff {
            until: now + delay,
            failures,
        };
        transition
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let now = Instant::now();
        let mut health = Health::Up;
        assert_eq!(health.record_failure(now), Transition::WentDown);
        assert_eq!(health.retry_at(), Some(now + Duration::from_secs(1)));
        let mut delays = Vec::new();
        let mut at = now;
        for _ in 0..9 {
            at = health.retry_at().unwrap();
            assert_eq!(health.record_failure(at), Transition::Same);
            delays.push((health.retry_at().unwrap() - at).as_secs());
        }
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert!(at > now);
    }

    #[test]
    fn failures_during_a_backoff_do_not_lengthen_it() {
        let now = Instant::now();
        let mut health = Health::Up;
        health.record_failure(now);
        for _ in 0..7 {
            assert_eq!(health.record_failure(now), Transition::Same);
        }
        assert_eq!(health.retry_at(), Some(now + FIRST_BACKOFF));
    }

    #[test]
    fn available_again_when_the_delay_has_passed() {
        let now = Instant::now();
        let mut health = Health::Up;
        health.record_failure(now);
        assert!(!health.is_available(now));
        assert!(health.is_available(now + FIRST_BACKOFF));
        assert_eq!(health.record_success(), Transition::Recovered);
        assert!(health.is_available(now));
        assert_eq!(health.record_success(), Transition::Same);
    }
}
