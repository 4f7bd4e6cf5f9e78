//! Exponential backoff with jitter: the pause before the next attempt doubles from a
//! minimum to a maximum, and each pause is drawn between half of that and all of it
//! ("equal jitter"), so many clients or links that failed together do not retry in step.
//! Used by the transport's reconnects and the client's retries.

use std::time::Duration;

#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// The longest the next pause may be.
    ceiling: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        assert!(!min.is_zero() && min <= max, "a backoff grows from a positive minimum to its maximum");
        Backoff { min, max, ceiling: min, rng: fastrand::Rng::new() }
    }

    /// The pause before the next attempt; the one after may be twice as long.
    pub fn next_pause(&mut self) -> Duration {
        let ceiling_us = self.ceiling.as_micros() as u64;
        let pause = Duration::from_micros(self.rng.u64(ceiling_us / 2..=ceiling_us));
        self.ceiling = (self.ceiling * 2).min(self.max);
        pause
    }

    /// Back to the minimum (after a success).
    pub fn reset(&mut self) {
        self.ceiling = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: pauses double up to the maximum, each drawn from the upper half of its
    /// range, differ between backoffs (jitter), and start over after a reset.
    #[test]
    fn pauses_grow_with_jitter_and_reset() {
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(80));
        let mut backoff = Backoff::new(min, max);
        let ceilings = [10, 20, 40, 80, 80, 80];
        for ceiling in ceilings.map(Duration::from_millis) {
            let pause = backoff.next_pause();
            assert!(pause >= ceiling / 2 && pause <= ceiling, "{pause:?} outside {:?}..={ceiling:?}", ceiling / 2);
        }
        backoff.reset();
        assert!(backoff.next_pause() <= min);
        let draws: std::collections::HashSet<Duration> = (0..20).map(|_| Backoff::new(max, max).next_pause()).collect();
        assert!(draws.len() > 1, "twenty backoffs drew the same pause: no jitter");
    }
}
