//! Retry pacing for background tasks while the database is unreachable: waits double from
//! 100 ms up to 5 s, and reset after a success, so an outage costs neither log floods nor
//! connection storms, and recovery is noticed within seconds.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(100);
const LONGEST: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Notes a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Notes a failure and waits before the next try; logs the first failure of a run, then
    /// every tenth.
    pub async fn fail(&mut self, task: &str, error: &crate::error::Error) {
        if self.failures.is_multiple_of(10) {
            tracing::warn!(task, error = %error.detail(), failures = self.failures + 1, "background task failed; retrying");
        }
        self.failures = self.failures.saturating_add(1);
        let wait = FIRST.saturating_mul(1 << self.failures.min(6)).min(LONGEST);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_double_up_to_five_seconds() {
        let mut backoff = Backoff::default();
        let error = crate::error::Error::Unavailable;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let started = tokio::time::Instant::now();
            backoff.fail("test", &error).await;
            waits.push(started.elapsed().as_millis());
        }
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        backoff.reset();
        let started = tokio::time::Instant::now();
        backoff.fail("test", &error).await;
        assert_eq!(started.elapsed().as_millis(), 200);
    }
}
