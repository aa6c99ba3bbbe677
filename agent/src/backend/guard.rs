//! The rate limit, retries and circuit breaker every call to a remote backend (AWS, Vault) goes
//! through.

use std::{future::Future, num::NonZeroU32, sync::Mutex, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use tokio::time::Instant;

use super::BackendError;

/// Failed attempts in a row (the service unreachable or timing out) that open a backend's
/// circuit: from then on its calls fail at once, and readers get their stale values at once.
pub(crate) const DEFAULT_BREAKER_FAILURES: u32 = 3;
/// How long an open circuit refuses calls before it lets one probe through.
pub(crate) const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(5);

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
///
/// A circuit breaker sits in front of both: once `DEFAULT_BREAKER_FAILURES` attempts in a row
/// found the service unreachable, calls fail at once (no retries, no waiting) until the cooldown
/// has passed; then one call is let through as a probe (a single attempt) while the others keep
/// failing at once. An outage costs one probe per cooldown, not every reader's retries.
pub(crate) struct CallGuard {
    service: &'static str,
    limiter: DefaultDirectRateLimiter,
    max_wait: Duration,
    backoff: ExponentialBuilder,
    circuit: Circuit,
}

impl CallGuard {
    pub(crate) fn new(service: &'static str, settings: Limits) -> Self {
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
            circuit: Circuit::new(DEFAULT_BREAKER_FAILURES, DEFAULT_BREAKER_COOLDOWN),
        }
    }

    /// The service this guard protects, as its messages name it.
    pub(crate) fn service(&self) -> &'static str {
        self.service
    }

    /// Where the circuit breaker stands now.
    pub(crate) fn circuit_state(&self) -> CircuitState {
        self.circuit.state()
    }

    /// A read: retried on any transient failure.
    pub(crate) async fn call<T, F, Fut>(&self, attempt: F) -> Result<T, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        self.run(attempt, BackendError::is_transient).await
    }

    /// A write: retried only when the service said it did not act (throttling). A timeout or a
    /// dropped connection may hide a write that happened, and writing again would add a version.
    pub(crate) async fn call_write<T, F, Fut>(&self, attempt: F) -> Result<T, BackendError>
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
        let mut last_error = None;
        loop {
            let mut ticket = match self.circuit.admit() {
                Ok(ticket) => ticket,
                Err(reopens_in) => {
                    return Err(last_error.unwrap_or_else(|| {
                        BackendError::Unavailable(format!(
                            "{} failed repeatedly; calls are held back for {:?} more",
                            self.service, reopens_in
                        ))
                    }))
                }
            };
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
            let result = attempt().await;
            let outage = matches!(&result, Err(BackendError::Unavailable(_)));
            ticket.settle(outage, self.service);
            match result {
                Ok(value) => return Ok(value),
                // A probe is one attempt: the service has been failing.
                Err(e) if retry(&e) && !ticket.probe => match delays.next() {
                    Some(delay) => {
                        tracing::debug!(service = self.service, error = %e, ?delay, "retrying");
                        tokio::time::sleep(delay).await;
                        last_error = Some(e);
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }
}

/// A circuit breaker's state, as metrics show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls fail at once until the cooldown ends.
    Open,
    /// One probe is out; other calls fail at once until it answers.
    HalfOpen,
}

impl CircuitState {
    pub const ALL: [CircuitState; 3] = [Self::Closed, Self::Open, Self::HalfOpen];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant },
    Probing,
}

struct Circuit {
    threshold: u32,
    cooldown: Duration,
    breaker: Mutex<Breaker>,
}

/// Leave to make one attempt; settled with its outcome. A probe dropped unsettled (its caller
/// went away) lets the next call probe at once.
struct Ticket<'a> {
    circuit: &'a Circuit,
    probe: bool,
    settled: bool,
}

impl Circuit {
    fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            breaker: Mutex::new(Breaker::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> CircuitState {
        match *self.lock() {
            Breaker::Closed { .. } => CircuitState::Closed,
            Breaker::Open { .. } => CircuitState::Open,
            Breaker::Probing => CircuitState::HalfOpen,
        }
    }

    /// A ticket for one attempt, or how long until the circuit lets a probe through.
    fn admit(&self) -> Result<Ticket<'_>, Duration> {
        let mut breaker = self.lock();
        let probe = match *breaker {
            Breaker::Closed { .. } => false,
            Breaker::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(until - now);
                }
                *breaker = Breaker::Probing;
                true
            }
            Breaker::Probing => return Err(Duration::ZERO),
        };
        Ok(Ticket {
            circuit: self,
            probe,
            settled: false,
        })
    }
}

impl Ticket<'_> {
    /// Records one attempt: `outage` when the service could not be reached or did not answer.
    /// Any answer, an error one included, shows the service is up.
    fn settle(&mut self, outage: bool, service: &'static str) {
        self.settled = true;
        let circuit = self.circuit;
        let mut breaker = circuit.lock();
        let open = |breaker: &mut Breaker| {
            *breaker = Breaker::Open {
                until: Instant::now() + circuit.cooldown,
            }
        };
        match (*breaker, outage) {
            (Breaker::Closed { .. }, false) => *breaker = Breaker::Closed { failures: 0 },
            (Breaker::Closed { failures }, true) if failures + 1 >= circuit.threshold => {
                tracing::warn!(
                    service,
                    failures = failures + 1,
                    cooldown = ?circuit.cooldown,
                    "backend unreachable: circuit opened, its calls fail at once (stale values \
                     are served) until a probe gets through"
                );
                open(&mut breaker);
            }
            (Breaker::Closed { failures }, true) => {
                *breaker = Breaker::Closed {
                    failures: failures + 1,
                }
            }
            (Breaker::Probing, false) if self.probe => {
                tracing::info!(service, "backend answered the probe: circuit closed");
                *breaker = Breaker::Closed { failures: 0 };
            }
            (Breaker::Probing, true) if self.probe => open(&mut breaker),
            // A call admitted before the circuit opened ends while it is open or probing: the
            // probe decides.
            _ => {}
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            let mut breaker = self.circuit.lock();
            if matches!(*breaker, Breaker::Probing) {
                *breaker = Breaker::Open {
                    until: Instant::now(),
                };
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

        // A fresh guard for each case: three outages in a row opened the first one's circuit.
        let guard = self::guard(1000, Duration::from_secs(1), 3);
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

        let guard = self::guard(1000, Duration::from_secs(1), 3);
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

    async fn down(guard: &CallGuard, calls: &std::sync::atomic::AtomicU32) -> BackendError {
        guard
            .call(|| {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Err::<(), _>(BackendError::Unavailable("connection refused".into())) }
            })
            .await
            .unwrap_err()
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_opens_the_circuit_and_costs_one_probe_per_cooldown() {
        use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
        let guard = guard(1000, Duration::from_secs(1), 3);
        let calls = AtomicU32::new(0);
        assert_eq!(guard.circuit_state(), CircuitState::Closed);
        // The first reader's retries find the service down three times: the circuit opens.
        down(&guard, &calls).await;
        assert_eq!(calls.load(SeqCst), DEFAULT_BREAKER_FAILURES);
        assert_eq!(guard.circuit_state(), CircuitState::Open);

        // Every other reader fails at once, without an attempt and without waiting.
        let started = Instant::now();
        for _ in 0..50 {
            let e = down(&guard, &calls).await;
            assert!(e.is_transient(), "{e}");
        }
        assert_eq!(calls.load(SeqCst), DEFAULT_BREAKER_FAILURES);
        assert_eq!(started.elapsed(), Duration::ZERO);

        // After the cooldown one probe (one attempt, no retries) goes out; it fails: open again.
        tokio::time::advance(DEFAULT_BREAKER_COOLDOWN).await;
        down(&guard, &calls).await;
        assert_eq!(calls.load(SeqCst), DEFAULT_BREAKER_FAILURES + 1);
        assert_eq!(guard.circuit_state(), CircuitState::Open);
        down(&guard, &calls).await;
        assert_eq!(calls.load(SeqCst), DEFAULT_BREAKER_FAILURES + 1);

        // The service is back: the next probe closes the circuit and calls flow again.
        tokio::time::advance(DEFAULT_BREAKER_COOLDOWN).await;
        let answered = guard.call(|| async { Ok::<_, BackendError>(7) }).await;
        assert_eq!(answered.unwrap(), 7);
        assert_eq!(guard.circuit_state(), CircuitState::Closed);
        down(&guard, &calls).await;
        assert_eq!(
            calls.load(SeqCst),
            DEFAULT_BREAKER_FAILURES + 4,
            "retried again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_probe_at_a_time_and_an_error_answer_closes_the_circuit() {
        let guard = std::sync::Arc::new(guard(1000, Duration::from_secs(1), 3));
        let calls = std::sync::atomic::AtomicU32::new(0);
        down(&guard, &calls).await;
        tokio::time::advance(DEFAULT_BREAKER_COOLDOWN).await;
        // The probe hangs (a blackholed service): everyone else fails at once meanwhile.
        let (release, hold) = tokio::sync::oneshot::channel::<()>();
        let probe = {
            let guard = std::sync::Arc::clone(&guard);
            let mut hold = Some(hold);
            tokio::spawn(async move {
                guard
                    .call(|| {
                        let hold = hold.take();
                        async move {
                            if let Some(hold) = hold {
                                let _ = hold.await;
                            }
                            Err::<(), _>(BackendError::NotFound("no such secret".into()))
                        }
                    })
                    .await
            })
        };
        while guard.circuit_state() != CircuitState::HalfOpen {
            tokio::task::yield_now().await;
        }
        let before = calls.load(std::sync::atomic::Ordering::SeqCst);
        assert!(down(&guard, &calls).await.is_transient());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), before);
        // The probe's answer is an error, but an answer: the service is up again.
        release.send(()).unwrap();
        assert!(matches!(
            probe.await.unwrap(),
            Err(BackendError::NotFound(_))
        ));
        assert_eq!(guard.circuit_state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_whose_caller_gave_up_lets_the_next_call_probe() {
        let guard = guard(1000, Duration::from_secs(1), 3);
        let calls = std::sync::atomic::AtomicU32::new(0);
        down(&guard, &calls).await;
        tokio::time::advance(DEFAULT_BREAKER_COOLDOWN).await;
        let abandoned = tokio::time::timeout(
            Duration::from_millis(10),
            guard.call(std::future::pending::<Result<(), BackendError>>),
        )
        .await;
        assert!(abandoned.is_err());
        assert_eq!(guard.circuit_state(), CircuitState::Open);
        let answered = guard.call(|| async { Ok::<_, BackendError>(()) }).await;
        assert!(answered.is_ok());
        assert_eq!(guard.circuit_state(), CircuitState::Closed);
    }
}
