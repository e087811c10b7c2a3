//! How long an upstream takes to answer: a smoothed round-trip time and
//! its variation, kept as TCP keeps them for its retransmission timer
//! (RFC 6298 §2), and the hedge delay derived from them: how long a query
//! waits for this upstream before it is also sent to the next one.

use std::time::Duration;

/// Shortest hedge delay: below it, jitter alone would double the queries.
pub const MIN_HEDGE_DELAY: Duration = Duration::from_millis(100);

/// An upstream's round-trip time estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RttEstimate {
    /// Smoothed RTT; `None` before the first answer.
    srtt: Option<Duration>,
    /// Smoothed mean deviation of the samples from `srtt`.
    rttvar: Duration,
}

impl RttEstimate {
    /// Takes one answer's round-trip time (RFC 6298 §2.2 and §2.3, with
    /// alpha 1/8 and beta 1/4).
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let deviation = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + deviation) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// The smoothed RTT, once there is one.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// How long to wait before hedging: `srtt + 4 × rttvar`, clamped
    /// between [`MIN_HEDGE_DELAY`] and `longest`; `longest` before the
    /// first answer.
    pub fn hedge_delay(&self, longest: Duration) -> Duration {
        let longest = longest.max(MIN_HEDGE_DELAY);
        self.srtt.map_or(longest, |srtt| {
            (srtt + self.rttvar * 4).clamp(MIN_HEDGE_DELAY, longest)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn first_sample_sets_srtt_and_half_of_it_as_variation() {
        let mut rtt = RttEstimate::default();
        assert_eq!(rtt.hedge_delay(1500 * MS), 1500 * MS);
        rtt.sample(40 * MS);
        assert_eq!(rtt.srtt(), Some(40 * MS));
        // 40 + 4 × 20 ms.
        assert_eq!(rtt.hedge_delay(1500 * MS), 120 * MS);
    }

    #[test]
    fn steady_samples_converge_and_the_delay_reaches_its_floor() {
        let mut rtt = RttEstimate::default();
        for _ in 0..50 {
            rtt.sample(10 * MS);
        }
        assert_eq!(rtt.srtt(), Some(10 * MS));
        assert_eq!(rtt.hedge_delay(1500 * MS), MIN_HEDGE_DELAY);
    }

    #[test]
    fn a_slow_answer_raises_the_delay_up_to_its_ceiling() {
        let mut rtt = RttEstimate::default();
        rtt.sample(50 * MS);
        rtt.sample(50 * MS);
        let before = rtt.hedge_delay(1500 * MS);
        rtt.sample(450 * MS);
        // srtt 100 ms, rttvar (3 × 12.5 + 400) / 4 = 109.375 ms.
        assert_eq!(rtt.srtt(), Some(100 * MS));
        assert!(rtt.hedge_delay(1500 * MS) > before);
        assert_eq!(rtt.hedge_delay(300 * MS), 300 * MS);
    }
}
