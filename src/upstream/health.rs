//! Whether an upstream should get queries: up, or backing off after a
//! failure with an exponentially growing, capped delay.
//!
//! Backing off fails fast: until its delay has passed an upstream gets no
//! query, and then exactly one, the probe, while the others go elsewhere
//! or get SERVFAIL at once; none waits out its budget behind an upstream
//! known to be failing. Backoff never wedges: every delay ends in a probe,
//! and a network change ([`Health::reset`]) ends them all at once.

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
    /// Failed `failures` times in a row; offered no query before `until`,
    /// then one probe at a time.
    Backoff {
        /// When it may be probed again.
        until: Instant,
        /// Consecutive failures.
        failures: u32,
        /// Whether a probe query is out.
        probing: bool,
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
    /// Whether it takes queries without a probe: it is up.
    pub fn is_up(&self) -> bool {
        matches!(self, Self::Up)
    }

    /// Whether a probe may go to it at `now`: its delay has passed and no
    /// other probe is out.
    pub fn is_due(&self, now: Instant) -> bool {
        match self {
            Self::Up => false,
            Self::Backoff { until, probing, .. } => *until <= now && !probing,
        }
    }

    /// Takes the probe when it is due at `now`; true when taken.
    pub fn start_probe(&mut self, now: Instant) -> bool {
        let due = self.is_due(now);
        if let Self::Backoff { probing, .. } = self {
            *probing |= due;
        }
        due
    }

    /// Gives the probe back unanswered (its query was abandoned), so the
    /// next query may probe.
    pub fn end_probe(&mut self) {
        if let Self::Backoff { probing, .. } = self {
            *probing = false;
        }
    }

    /// Forgets the failures: the network changed, so the past says nothing
    /// of what works now.
    pub fn reset(&mut self) {
        *self = Self::Up;
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
            probing: false,
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
    fn one_probe_at_a_time_once_the_delay_has_passed() {
        let now = Instant::now();
        let mut health = Health::Up;
        health.record_failure(now);
        assert!(!health.is_up());
        assert!(!health.start_probe(now), "not before the delay");
        let due = now + FIRST_BACKOFF;
        assert!(health.start_probe(due));
        assert!(!health.start_probe(due), "a second probe while one is out");
        health.end_probe();
        assert!(health.start_probe(due), "an abandoned probe frees the slot");
        assert_eq!(health.record_success(), Transition::Recovered);
        assert!(health.is_up());
        assert_eq!(health.record_success(), Transition::Same);
    }

    #[test]
    fn a_failed_probe_backs_off_longer() {
        let now = Instant::now();
        let mut health = Health::Up;
        health.record_failure(now);
        let due = now + FIRST_BACKOFF;
        assert!(health.start_probe(due));
        assert_eq!(health.record_failure(due), Transition::Same);
        assert_eq!(health.retry_at(), Some(due + 2 * FIRST_BACKOFF));
        assert!(!health.start_probe(due + FIRST_BACKOFF));
    }

    #[test]
    fn reset_forgets_the_failures() {
        let now = Instant::now();
        let mut health = Health::Up;
        for step in 0..5 {
            health.record_failure(now + MAX_BACKOFF * step);
        }
        health.reset();
        assert!(health.is_up());
        assert_eq!(health.record_failure(now), Transition::WentDown);
        assert_eq!(health.retry_at(), Some(now + FIRST_BACKOFF));
    }
}
