//! The rate limit and retries every call to a remote backend (AWS, Vault) goes through.

use std::{future::Future, num::NonZeroU32, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::BackendError;

/// How much a backend may be asked, and how hard a call is tried.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Requests per second, at most.
    pub rate_limit: u32,
    /// Requests that may go out at once before the rate applies.
    pub burst: u32,
    /// How long a call waits for the rate limit before it fails as throttled.
    pub max_wait: Duration,
    /// Attempts per read, the first included.
    pub max_attempts: u32,
}

/// Every call to a remote backend goes through its guard: one token from the backend's token
/// bucket per attempt, and transient failures retried with exponential backoff and full jitter.
pub struct CallGuard {
    service: &'static str,
    limiter: DefaultDirectRateLimiter,
    max_wait: Duration,
    backoff: ExponentialBuilder,
}

impl CallGuard {
    pub fn new(service: &'static str, settings: Limits) -> Self {
        let rate = NonZeroU32::new(settings.rate_limit.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(settings.burst.max(1)).expect("at least 1");
        Self {
            service,
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            max_wait: settings.max_wait,
            backoff: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(2))
                .with_max_times(settings.max_attempts.saturating_sub(1) as usize)
                .with_jitter(),
        }
    }

    /// A read: retried on any transient failure.
    pub async fn call<T, F, Fut>(&self, attempt: F) -> Result<T, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        self.run(attempt, BackendError::is_transient).await
    }

    /// A write: retried only when the service said it did not act (throttling). A timeout or a
    /// dropped connection may hide a write that happened, and writing again would add a version.
    pub async fn call_write<T, F, Fut>(&self, attempt: F) -> Result<T, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        self.run(attempt, |e| matches!(e, BackendError::Throttled(_)))
            .await
    }

    async fn run<T, F, Fut>(
        &self,
        mut attempt: F,
        retry: fn(&BackendError) -> bool,
    ) -> Result<T, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        let mut delays = self.backoff.build();
        loop {
            // The limit holds for every request the agent sends, however many callers wait.
            if tokio::time::timeout(self.max_wait, self.limiter.until_ready())
                .await
                .is_err()
            {
                return Err(BackendError::Throttled(format!(
                    "the agent's {} rate limit kept this call waiting over {:?}",
                    self.service, self.max_wait
                )));
            }
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(e) if retry(&e) => match delays.next() {
                    Some(delay) => {
                        tracing::debug!(service = self.service, error = %e, ?delay, "retrying");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(rate: u32, max_wait: Duration, attempts: u32) -> CallGuard {
        CallGuard::new(
            "test",
            Limits {
                rate_limit: rate,
                burst: rate,
                max_wait,
                max_attempts: attempts,
            },
        )
    }

    #[tokio::test]
    async fn retries_transient_failures_only() {
        let guard = guard(1000, Duration::from_secs(1), 3);
        let mut calls = 0;
        let result: Result<(), _> = guard
            .call(|| {
                calls += 1;
                async { Err(BackendError::Unavailable("down".into())) }
            })
            .await;
        assert!(matches!(result, Err(BackendError::Unavailable(_))));
        assert_eq!(calls, 3, "max_attempts in all");

        let mut calls = 0;
        let result: Result<(), _> = guard
            .call(|| {
                calls += 1;
                async { Err(BackendError::NotFound("no".into())) }
            })
            .await;
        assert!(matches!(result, Err(BackendError::NotFound(_))));
        assert_eq!(calls, 1);

        let mut calls = 0;
        let result: Result<(), _> = guard
            .call_write(|| {
                calls += 1;
                async { Err(BackendError::Unavailable("timed out".into())) }
            })
            .await;
        assert!(matches!(result, Err(BackendError::Unavailable(_))));
        assert_eq!(calls, 1, "a write that may have happened is not sent again");

        let mut calls = 0;
        let result: Result<(), _> = guard
            .call_write(|| {
                calls += 1;
                async { Err(BackendError::Throttled("slow down".into())) }
            })
            .await;
        assert!(matches!(result, Err(BackendError::Throttled(_))));
        assert_eq!(calls, 3, "throttled writes did not happen: retried");
    }

    #[tokio::test]
    async fn the_rate_limit_holds_a_burst_back() {
        let guard = guard(5, Duration::from_millis(100), 1);
        let mut allowed = 0;
        let mut throttled = 0;
        let started = std::time::Instant::now();
        for _ in 0..20 {
            match guard.call(|| async { Ok::<_, BackendError>(()) }).await {
                Ok(()) => allowed += 1,
                Err(BackendError::Throttled(_)) => throttled += 1,
                Err(e) => panic!("{e}"),
            }
        }
        // Never more than the burst plus what the bucket refilled (5/s) meanwhile.
        let refilled = (started.elapsed().as_secs_f64() * 5.0).ceil() as u32;
        assert!(allowed >= 5, "the burst passes: {allowed}");
        assert!(
            allowed <= 5 + refilled,
            "allowed {allowed}, burst 5 + refilled {refilled}"
        );
        assert!(throttled > 0, "a burst of 20 at 5/s must be held back");
        assert_eq!(allowed + throttled, 20);
    }
}
