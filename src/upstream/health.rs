//! Whether an upstream should get queries: up, or backing off after a
//! failure with an exponentially growing, capped delay.
//!
//! Backing off fails fast: until its delay has passed an upstream gets no
//! query, and then exactly one, the probe, while the others go elsewhere
//! or get SERVFAIL at once; none waits out its budget behind an upstream
//! known to be failing. Backoff never wedges: every delay ends in a probe,
//! a network change ([`Health::reset`]) ends them all at once, and while
//! no upstream is up at all, one is probed every [`ALL_DOWN_PROBE_EVERY`]
//! whatever its delay, so service returns as soon as an upstream does.

use std::time::{Duration, Instant};

/// First backoff delay after a failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest backoff delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// While every upstream backs off, how often one is probed anyway (only
/// when queries come: an idle dotstub sends nothing).
pub const ALL_DOWN_PROBE_EVERY: Duration = Duration::from_millis(250);

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
        /// When the last probe went out, or the failure was recorded.
        probed_at: Instant,
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

    /// Whether a probe may go to it at `now`: no other probe is out, and
    /// its delay has passed, or, when `all_down` (no upstream is up),
    /// [`ALL_DOWN_PROBE_EVERY`] has since the last probe.
    pub fn is_due(&self, now: Instant, all_down: bool) -> bool {
        match self {
            Self::Up => false,
            Self::Backoff {
                until,
                probing,
                probed_at,
                ..
            } => {
                let early = all_down && *probed_at + ALL_DOWN_PROBE_EVERY <= now;
                !probing && (*until <= now || early)
            }
        }
    }

    /// Takes the probe when it is due at `now`; true when taken. A probe
    /// before the delay has passed does not lengthen the backoff if it
    /// fails: the schedule stays as it was.
    pub fn start_probe(&mut self, now: Instant, all_down: bool) -> bool {
        let due = self.is_due(now, all_down);
        if let Self::Backoff {
            probing, probed_at, ..
        } = self
            && due
        {
            *probing = true;
            *probed_at = now;
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
            probed_at: now,
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
        assert!(!health.start_probe(now, false), "not before the delay");
        let due = now + FIRST_BACKOFF;
        assert!(health.start_probe(due, false));
        assert!(
            !health.start_probe(due, false),
            "a second probe while one is out"
        );
        health.end_probe();
        assert!(
            health.start_probe(due, false),
            "an abandoned probe frees the slot"
        );
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
        assert!(health.start_probe(due, false));
        assert_eq!(health.record_failure(due), Transition::Same);
        assert_eq!(health.retry_at(), Some(due + 2 * FIRST_BACKOFF));
        assert!(!health.start_probe(due + FIRST_BACKOFF, false));
    }

    #[test]
    fn with_every_upstream_down_probes_come_early_without_lengthening_the_delay() {
        let now = Instant::now();
        let mut health = Health::Up;
        for step in 0..4 {
            health.record_failure(now + MAX_BACKOFF * step);
        }
        let failed_at = now + MAX_BACKOFF * 3;
        let until = health.retry_at().unwrap();
        assert_eq!(until - failed_at, 8 * FIRST_BACKOFF);
        assert!(!health.start_probe(failed_at, true), "not at once");
        let early = failed_at + ALL_DOWN_PROBE_EVERY;
        assert!(!health.start_probe(early, false), "not while another is up");
        assert!(health.start_probe(early, true));
        assert!(!health.start_probe(early + ALL_DOWN_PROBE_EVERY / 2, true));
        assert_eq!(health.record_failure(early), Transition::Same);
        health.end_probe();
        assert_eq!(health.retry_at(), Some(until), "the schedule stands");
        assert!(health.start_probe(early + ALL_DOWN_PROBE_EVERY, true));
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
