//! Resume from sleep, seen as a jump between two clocks: one that counts
//! suspended time and one that does not. On Linux those are
//! CLOCK_BOOTTIME and CLOCK_MONOTONIC (monotonic time stops during
//! suspend; boot time does not). Elsewhere, wall-clock time against the
//! monotonic clock, which also catches the wall clock being set.
//
// The clocks are a trait so tests drive a suspend without sleeping.

use std::time::Duration;

/// A jump between the clocks smaller than this is noise (scheduling,
/// NTP slewing), not a sleep.
pub const MIN_SLEEP: Duration = Duration::from_secs(3);

/// How often the clocks are compared: coarse, so an idle dotstub wakes
/// rarely.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The two readings compared: one clock that runs through suspend, one
/// that stops.
pub trait Clocks {
    /// Time that keeps running while the machine sleeps.
    fn with_sleep(&self) -> Duration;
    /// Time that stops while it sleeps.
    fn without_sleep(&self) -> Duration;
}

/// The system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClocks;

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Clocks for SystemClocks {
    fn with_sleep(&self) -> Duration {
        read(nix::time::ClockId::CLOCK_BOOTTIME)
    }

    fn without_sleep(&self) -> Duration {
        read(nix::time::ClockId::CLOCK_MONOTONIC)
    }
}

/// A clock's reading; zero if it cannot be read, which shows no jump.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn read(clock: nix::time::ClockId) -> Duration {
    nix::time::clock_gettime(clock).map_or(Duration::ZERO, Duration::from)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Clocks for SystemClocks {
    fn with_sleep(&self) -> Duration {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
    }

    fn without_sleep(&self) -> Duration {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed()
    }
}

/// Watches the gap between the clocks; a growth of [`MIN_SLEEP`] or more
/// is a resume.
#[derive(Debug, Clone, Copy)]
pub struct ResumeDetector {
    /// `with_sleep - without_sleep` at the last check.
    gap: Duration,
}

impl ResumeDetector {
    /// Starts from the clocks' gap now.
    pub fn new(clocks: &impl Clocks) -> Self {
        Self { gap: gap(clocks) }
    }

    /// How long the machine slept since the last check, when it did.
    pub fn check(&mut self, clocks: &impl Clocks) -> Option<Duration> {
        let now = gap(clocks);
        let slept = now.saturating_sub(self.gap);
        // A wall clock set back shrinks the gap: start again from there.
        self.gap = now;
        (slept >= MIN_SLEEP).then_some(slept)
    }
}

fn gap(clocks: &impl Clocks) -> Duration {
    clocks.with_sleep().saturating_sub(clocks.without_sleep())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A machine whose clocks the test moves.
    #[derive(Default)]
    struct Machine {
        awake: Cell<Duration>,
        asleep: Cell<Duration>,
    }

    impl Machine {
        fn run(&self, time: Duration) {
            self.awake.set(self.awake.get() + time);
        }

        fn suspend(&self, time: Duration) {
            self.asleep.set(self.asleep.get() + time);
        }
    }

    impl Clocks for Machine {
        fn with_sleep(&self) -> Duration {
            self.awake.get() + self.asleep.get()
        }

        fn without_sleep(&self) -> Duration {
            self.awake.get()
        }
    }

    #[test]
    fn a_suspend_is_reported_once_with_its_length() {
        let machine = Machine::default();
        let mut detector = ResumeDetector::new(&machine);
        machine.run(CHECK_EVERY);
        assert_eq!(detector.check(&machine), None);
        machine.suspend(Duration::from_secs(600));
        machine.run(Duration::from_millis(10));
        assert_eq!(detector.check(&machine), Some(Duration::from_secs(600)));
        machine.run(CHECK_EVERY);
        assert_eq!(detector.check(&machine), None, "reported once");
    }

    #[test]
    fn jitter_below_the_threshold_is_not_a_resume() {
        let machine = Machine::default();
        let mut detector = ResumeDetector::new(&machine);
        for _ in 0..10 {
            machine.suspend(Duration::from_millis(500));
            assert_eq!(detector.check(&machine), None);
        }
    }

    #[test]
    fn system_clocks_show_no_sleep_while_running() {
        let mut detector = ResumeDetector::new(&SystemClocks);
        assert_eq!(detector.check(&SystemClocks), None);
    }
}
