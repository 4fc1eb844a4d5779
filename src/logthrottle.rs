//! A failure that repeats, told to the operator's log without flooding it: the first failure
//! of a streak is said, then at most one line per period with a count of the failures since,
//! and the streak's end once. The wording stays with each caller; this only decides when.

use std::time::{Duration, Instant};

pub struct LogThrottle {
    every: Duration,
    streak: Option<Streak>,
}

struct Streak {
    failures: u64,
    /// Failures since the last line, the one being counted included.
    unsaid: u64,
    said_at: Instant,
}

/// What the log should say of a failure.
#[derive(Debug, PartialEq, Eq)]
pub enum Say {
    /// The first failure of a streak.
    First,
    /// The streak lasts: `since` failures since the last line, this one included.
    Again { since: u64 },
}

impl LogThrottle {
    /// Says a lasting failure again at most once `every` period.
    pub const fn new(every: Duration) -> LogThrottle {
        LogThrottle { every, streak: None }
    }

    /// A failure at `now`: whether the log says it, and how.
    pub fn failed(&mut self, now: Instant) -> Option<Say> {
        let Some(s) = &mut self.streak else {
            self.streak = Some(Streak { failures: 1, unsaid: 0, said_at: now });
            return Some(Say::First);
        };
        s.failures += 1;
        s.unsaid += 1;
        if now.saturating_duration_since(s.said_at) < self.every {
            return None;
        }
        s.said_at = now;
        Some(Say::Again { since: std::mem::take(&mut s.unsaid) })
    }

    /// A success: ends the streak, if one was on, and returns how many failures it had.
    pub fn recovered(&mut self) -> Option<u64> {
        self.streak.take().map(|s| s.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(5);

    #[test]
    fn the_first_failure_is_said_and_the_next_within_the_period_are_not() {
        let t0 = Instant::now();
        let mut log = LogThrottle::new(EVERY);
        assert_eq!(log.failed(t0), Some(Say::First));
        assert_eq!(log.failed(t0 + Duration::from_secs(1)), None);
        assert_eq!(log.failed(t0 + Duration::from_millis(4999)), None);
    }

    #[test]
    fn a_lasting_failure_is_said_again_after_the_period_with_a_count() {
        let t0 = Instant::now();
        let mut log = LogThrottle::new(EVERY);
        log.failed(t0);
        log.failed(t0 + Duration::from_secs(1));
        log.failed(t0 + Duration::from_secs(2));
        assert_eq!(log.failed(t0 + EVERY), Some(Say::Again { since: 3 }));
        assert_eq!(log.failed(t0 + EVERY + Duration::from_secs(1)), None);
        assert_eq!(log.failed(t0 + EVERY * 2), Some(Say::Again { since: 2 }));
    }

    #[test]
    fn recovery_is_said_once_and_only_after_a_failure() {
        let t0 = Instant::now();
        let mut log = LogThrottle::new(EVERY);
        assert_eq!(log.recovered(), None);
        log.failed(t0);
        log.failed(t0 + Duration::from_secs(1));
        assert_eq!(log.recovered(), Some(2));
        assert_eq!(log.recovered(), None);
    }

    #[test]
    fn after_recovery_the_next_failure_is_said_in_full_again() {
        let t0 = Instant::now();
        let mut log = LogThrottle::new(EVERY);
        log.failed(t0);
        log.recovered();
        assert_eq!(log.failed(t0 + Duration::from_secs(1)), Some(Say::First));
    }
}
