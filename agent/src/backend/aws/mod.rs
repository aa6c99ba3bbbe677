//! What the AWS backends share: SDK configuration (loaded lazily, on the first call, so the
//! agent makes no AWS call and no metadata lookup at startup), the rate limit and retries every
//! call goes through, and the mapping of SDK errors onto `BackendError`.

pub mod s3;
pub mod sm;
pub mod ssm;

use std::{future::Future, num::NonZeroU32, time::Duration};

use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region, SdkConfig};
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::{error_chain, BackendError, Listed};
use crate::config::AwsBackendConfig;

/// The settings of one AWS backend, resolved from its config.
#[derive(Clone, Debug)]
pub struct AwsSettings {
    pub service: &'static str,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub rate_limit: u32,
    pub burst: u32,
    pub max_wait: Duration,
    pub kms_key_id: Option<String>,
}

impl AwsSettings {
    pub fn new(service: &'static str, config: &AwsBackendConfig, default_rate_limit: u32) -> Self {
        let rate_limit = config.rate_limit.unwrap_or(default_rate_limit);
        Self {
            service,
            region: config.region.clone(),
            endpoint: config.endpoint.clone(),
            timeout: config.timeout,
            max_attempts: config.max_attempts,
            rate_limit,
            burst: config.burst.unwrap_or(rate_limit),
            max_wait: config.max_wait,
            kms_key_id: config.kms_key_id.clone(),
        }
    }

    /// The SDK configuration: the standard chain (environment, profile, web identity for EKS
    /// IRSA, ECS container credentials, instance metadata), with this backend's region and
    /// endpoint on top. SDK retries are off: `CallGuard` retries, so every attempt is rate-limited.
    async fn sdk_config(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.timeout)
                    .operation_attempt_timeout(self.timeout)
                    .build(),
            );
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        loader.load().await
    }
}

/// Every AWS call goes through here: one token from the backend's token bucket per attempt, and
/// transient failures retried with exponential backoff and full jitter.
pub struct CallGuard {
    service: &'static str,
    limiter: DefaultDirectRateLimiter,
    max_wait: Duration,
    backoff: ExponentialBuilder,
}

impl CallGuard {
    pub fn new(settings: &AwsSettings) -> Self {
        let rate = NonZeroU32::new(settings.rate_limit.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(settings.burst.max(1)).expect("at least 1");
        Self {
            service: settings.service,
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

/// Every page of a listing, sorted by name: `page(token)` fetches the page after `token` (None:
/// the first) and returns its entries and the next page's token (None: that was the last).
pub async fn list_pages<K, F, Fut>(mut page: F) -> Result<Vec<Listed>, BackendError>
where
    F: FnMut(Option<K>) -> Fut,
    Fut: Future<Output = Result<(Vec<Listed>, Option<K>), BackendError>>,
{
    let mut listed = Vec::new();
    let mut token = None;
    loop {
        let (entries, next) = page(token).await?;
        listed.extend(entries);
        match next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listed)
}

/// Maps an SDK error onto the agent's error kinds. `what` names the secret for messages.
pub fn classify<E, R>(service: &str, what: &str, error: SdkError<E, R>) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match &error {
        SdkError::ServiceError(context) => {
            let err = context.err();
            let code = err.code().unwrap_or("Unknown");
            let message = err.message().unwrap_or("").to_owned();
            classify_code(service, what, code, &message)
        }
        SdkError::TimeoutError(_) => {
            BackendError::Unavailable(format!("{service} did not answer in time"))
        }
        _ => {
            let chain = error_chain(&error);
            if chain.contains("credentials") || chain.contains("Credentials") {
                BackendError::AgentDenied(format!(
                    "the agent found no usable AWS credentials ({chain}); give it some through the \
                     environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), a profile (AWS_PROFILE), \
                     a web identity token (EKS IRSA), ECS container credentials or an instance profile"
                ))
            } else if chain.contains("region")
                && (chain.contains("not") || chain.contains("must be set"))
            {
                BackendError::AgentDenied(format!(
                    "no AWS region is configured for {service}: set `region` in its [[backend]] or AWS_REGION ({chain})"
                ))
            } else {
                BackendError::Unavailable(format!("cannot reach {service}: {chain}"))
            }
        }
    }
}

/// Error codes of Parameter Store, Secrets Manager and KMS (as these services report them).
fn classify_code(service: &str, what: &str, code: &str, message: &str) -> BackendError {
    let detail = if message.is_empty() {
        code.to_owned()
    } else {
        format!("{code}: {message}")
    };
    match code {
        "ParameterNotFound"
        | "ParameterVersionNotFound"
        | "ResourceNotFoundException"
        | "NoSuchKey"
        | "NoSuchVersion"
        | "NotFound" => BackendError::NotFound(format!("{what} not found")),
        "NoSuchBucket" => BackendError::NotFound(format!("{what} not found: no such bucket")),
        // KMS: the ciphertext does not belong to its key or its encryption context.
        "InvalidCiphertextException" | "IncorrectKeyException" => {
            BackendError::Corrupt(format!("{service} cannot decrypt {what} ({detail})"))
        }
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "TooManyUpdates"
        | "ThrottledException"
        | "SlowDown" => {
            BackendError::Throttled(format!("{service} throttled the agent ({detail})"))
        }
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "DecryptionFailure"
        | "KMSAccessDeniedException"
        | "KMSDisabledException"
        | "KMSInvalidStateException"
        | "KMSNotFoundException"
        | "NotFoundException"
        | "DisabledException"
        | "KeyUnavailableException"
        | "InvalidKeyUsageException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken" => BackendError::AgentDenied(format!(
            "{service} refused the agent's credentials for {what} ({detail})"
        )),
        "InternalServerError"
        | "InternalServiceError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "KMSInternalException"
        | "DependencyTimeoutException" => {
            BackendError::Unavailable(format!("{service} failed ({detail})"))
        }
        "ValidationException"
        | "InvalidParameterException"
        | "InvalidRequestException"
        | "InvalidKeyId"
        | "ParameterPatternMismatchException"
        | "HierarchyLevelLimitExceededException"
        | "InvalidParameterValue" => BackendError::InvalidArgument(format!(
            "{service} rejected the request for {what} ({detail})"
        )),
        _ => BackendError::Internal(format!("{service} error for {what} ({detail})")),
    }
}

/// Converts an AWS timestamp.
fn system_time(t: &aws_smithy_types::DateTime) -> Option<std::time::SystemTime> {
    std::time::SystemTime::try_from(*t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        let kind = |code| classify_code("ssm", "ssm:/x", code, "m");
        assert!(matches!(
            kind("ParameterNotFound"),
            BackendError::NotFound(_)
        ));
        assert!(matches!(
            kind("ResourceNotFoundException"),
            BackendError::NotFound(_)
        ));
        assert!(matches!(
            kind("ThrottlingException"),
            BackendError::Throttled(_)
        ));
        assert!(matches!(
            kind("AccessDeniedException"),
            BackendError::AgentDenied(_)
        ));
        assert!(matches!(
            kind("InternalServerError"),
            BackendError::Unavailable(_)
        ));
        assert!(matches!(
            kind("ValidationException"),
            BackendError::InvalidArgument(_)
        ));
        assert!(matches!(kind("Weird"), BackendError::Internal(_)));
        let denied = kind("AccessDeniedException").to_string();
        assert!(denied.contains("agent's credentials"), "{denied}");
    }

    fn guard(rate: u32, max_wait: Duration, attempts: u32) -> CallGuard {
        CallGuard::new(&AwsSettings {
            service: "test",
            region: None,
            endpoint: None,
            timeout: Duration::from_secs(1),
            max_attempts: attempts,
            rate_limit: rate,
            burst: rate,
            max_wait,
            kms_key_id: None,
        })
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
