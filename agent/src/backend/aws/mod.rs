//! What the AWS backends share: SDK configuration (loaded lazily, on the first call, so the
//! agent makes no AWS call and no metadata lookup at startup), each backend's `CallGuard` (rate
//! limit and retries), and the mapping of SDK errors onto `BackendError`.

pub(crate) mod role;

use std::{future::Future, sync::Arc, time::Duration};

use super::{
    error_chain,
    guard::{CallGuard, Limits},
    BackendError, Listed,
};
#[cfg(any(feature = "ssm", feature = "sm", feature = "s3"))]
use crate::backend::registry::{Dev, DevContext};
use crate::{
    backend::{
        registry::{BackendSettings, BuildContext},
        Backend,
    },
    config::AwsBackendConfig,
};
use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_ssm::{
    config::{http::HttpResponse, SharedHttpClient},
    error::{ProvideErrorMetadata, SdkError},
};

/// Dev mode serves an AWS backend (with `config`, the dev TTL set) only when the environment
/// holds credentials: without them every read would wait on the SDK's credential chain and
/// fill the log with its warnings. Instance or SSO credentials the environment does not show:
/// `PSST_DEV_AWS=1`.
#[cfg(any(feature = "ssm", feature = "sm", feature = "s3"))]
pub(crate) fn dev(context: &DevContext<'_>, config: impl FnOnce(AwsBackendConfig) -> Dev) -> Dev {
    let keys = context.var(&["AWS_ACCESS_KEY_ID"]).is_some()
        && context.var(&["AWS_SECRET_ACCESS_KEY"]).is_some();
    let named = context
        .var(&[
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ])
        .is_some();
    // The shared credentials file, where the SDK looks for it.
    let file = match context.var(&["AWS_SHARED_CREDENTIALS_FILE"]) {
        Some(file) => Some(std::path::PathBuf::from(file)),
        None => context
            .var(&["HOME"])
            .map(|home| std::path::Path::new(&home).join(".aws/credentials")),
    }
    .is_some_and(|file| file.is_file());
    let forced = context.var(&["PSST_DEV_AWS"]).as_deref() == Some("1");
    if !(keys || named || file || forced) {
        return Dev::Off(
            "off in dev mode: no AWS credentials in the environment (set AWS_PROFILE or \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or PSST_DEV_AWS=1 for instance \
             credentials)"
                .into(),
        );
    }
    config(AwsBackendConfig {
        ttl: context.ttl,
        ..AwsBackendConfig::default()
    })
}

/// An AWS backend type's `[[backend]]` settings: the keys every AWS backend takes.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct AwsConfig<S: AwsService> {
    pub keys: AwsBackendConfig,
    #[serde(skip)]
    service: std::marker::PhantomData<S>,
}

impl<S: AwsService> AwsConfig<S> {
    pub(crate) fn new(keys: AwsBackendConfig) -> Self {
        Self {
            keys,
            service: std::marker::PhantomData,
        }
    }

    /// As `Dev::On`: dev mode's settings for this service.
    #[cfg(any(feature = "ssm", feature = "sm", feature = "s3"))]
    pub(crate) fn dev(keys: AwsBackendConfig) -> Dev {
        Dev::On(Arc::new(Self::new(keys)))
    }
}

/// What sets one AWS backend type apart when it is built.
pub(crate) trait AwsService: std::fmt::Debug + PartialEq + Send + Sync + 'static {
    /// The service's name in messages and metrics.
    const SERVICE: &'static str;
    /// Requests per second when `rate_limit` is unset.
    const RATE_LIMIT: u32;

    fn build(settings: AwsSettings, context: &BuildContext) -> Arc<dyn Backend>;
}

impl<S: AwsService> BackendSettings for AwsConfig<S> {
    fn ttl(&self) -> Duration {
        self.keys.ttl
    }

    fn problems(&self) -> Vec<String> {
        self.keys.problems()
    }

    fn build(&self, context: &BuildContext) -> anyhow::Result<Arc<dyn Backend>> {
        let settings = AwsSettings::new(S::SERVICE, &self.keys, S::RATE_LIMIT);
        Ok(S::build(settings, context))
    }
}

/// The settings of one AWS backend, resolved from its config.
#[derive(Clone, Debug)]
pub(crate) struct AwsSettings {
    pub service: &'static str,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub rate_limit: u32,
    pub burst: u32,
    pub max_wait: Duration,
    pub kms_key_id: Option<String>,
    /// An assumed role's credentials (`role.rs`); None: the standard chain, the agent's own.
    pub credentials: Option<SharedCredentialsProvider>,
    /// The HTTP client (connection pool) of this backend, shared with its role-scoped copies:
    /// connections carry no credentials (every request is signed), so sessions need no pool
    /// of their own. Set by the first SDK configuration loaded.
    pub(crate) http_client: Arc<std::sync::OnceLock<SharedHttpClient>>,
}

impl AwsSettings {
    pub(crate) fn new(
        service: &'static str,
        config: &AwsBackendConfig,
        default_rate_limit: u32,
    ) -> Self {
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
            credentials: None,
            http_client: Arc::default(),
        }
    }

    /// The same settings with an assumed role's credentials.
    pub(crate) fn under_role(&self, credentials: SharedCredentialsProvider) -> Self {
        Self {
            credentials: Some(credentials),
            ..self.clone()
        }
    }

    /// The rate limit and retries for this backend's calls: shared by the backend and its
    /// role-scoped copies, so the limit holds per service, not per role.
    pub(crate) fn guard(&self) -> Arc<CallGuard> {
        Arc::new(CallGuard::new(
            self.service,
            Limits {
                rate_limit: self.rate_limit,
                burst: self.burst,
                max_wait: self.max_wait,
                max_attempts: self.max_attempts,
            },
        ))
    }

    /// The SDK configuration: the standard chain (environment, profile, web identity for EKS
    /// IRSA, ECS container credentials, instance metadata), with this backend's region and
    /// endpoint on top. SDK retries are off: `CallGuard` retries, so every attempt is rate-limited.
    pub(crate) async fn sdk_config(&self) -> SdkConfig {
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
        if let Some(credentials) = &self.credentials {
            loader = loader.credentials_provider(credentials.clone());
        }
        if let Some(http_client) = self.http_client.get() {
            loader = loader.http_client(http_client.clone());
        }
        let config = loader.load().await;
        if let Some(http_client) = config.http_client() {
            let _ = self.http_client.set(http_client);
        }
        config
    }
}

/// Every page of a listing, sorted by name: `page(token)` fetches the page after `token` (None:
/// the first) and returns its entries and the next page's token (None: that was the last).
pub(crate) async fn list_pages<K, F, Fut>(mut page: F) -> Result<Vec<Listed>, BackendError>
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
pub(crate) fn classify<E>(
    service: &str,
    what: &str,
    error: SdkError<E, HttpResponse>,
) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &error {
        // A refusal whose body the SDK cannot read (an emulator answering a JSON service in
        // XML): the status alone says it was a refusal, not an outage.
        SdkError::ResponseError(context) if context.raw().status().as_u16() == 403 => {
            BackendError::AgentDenied(format!(
                "{service} refused the agent's credentials for {what} (HTTP 403, AccessDenied)"
            ))
        }
        SdkError::ServiceError(context)
            if context.err().code().is_none() && context.raw().status().as_u16() == 403 =>
        {
            BackendError::AgentDenied(format!(
                "{service} refused the agent's credentials for {what} (HTTP 403, AccessDenied)"
            ))
        }
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
pub(crate) fn classify_code(service: &str, what: &str, code: &str, message: &str) -> BackendError {
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
#[cfg(any(feature = "ssm", feature = "sm", feature = "s3"))]
pub(crate) fn system_time(t: &aws_smithy_types::DateTime) -> Option<std::time::SystemTime> {
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
}
