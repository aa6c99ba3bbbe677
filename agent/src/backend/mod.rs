//! Backends: where secret values live. Each backend is a folder here behind its Cargo feature,
//! with its type in the registry (`registry.rs`: reference rules, `[[backend]]` keys, dev mode,
//! construction) and an implementation of [`Backend`]; the composition root (`app.rs`) builds
//! the configured ones into a [`Backends`] table keyed by reference prefix.
//!
//! To add one: a folder here, a line in `registry::REGISTRY`, a feature in `agent/Cargo.toml`,
//! a section in the README. ARCHITECTURE.md has the recipe.

pub(crate) mod aws;
pub(crate) mod guard;
#[cfg(feature = "local")]
pub(crate) mod local;
#[cfg(test)]
pub(crate) mod memory;
pub(crate) mod registry;
#[cfg(feature = "s3")]
pub(crate) mod s3;
#[cfg(feature = "sm")]
pub(crate) mod sm;
#[cfg(feature = "ssm")]
pub(crate) mod ssm;
#[cfg(feature = "vault")]
pub(crate) mod vault;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;

use self::aws::role::{AssumedRole, RoleSessions};
use crate::{
    reference::{BackendKind, SecretRef},
    secret::SecretValue,
};

/// One version of a secret as a backend returns it.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub value: SecretValue,
    pub version_id: String,
    pub stages: Vec<String>,
    pub created_at: Option<SystemTime>,
    /// The backend's own name for the secret, when the reference named it another way (a
    /// Secrets Manager ARN): the cache and the policy use it.
    pub canonical_name: Option<String>,
    /// Another name this secret is known by from now on (Secrets Manager: its full ARN, which
    /// `cache_key` maps every spelling to): the cache files the entry under it as well.
    pub alias: Option<String>,
    /// What Secrets Manager or Parameter Store said about the value besides the value, for the
    /// AWS-shaped bodies of the HTTP front door (`http/aws.rs`). None for the other backends.
    pub aws: Option<Box<AwsMetadata>>,
}

/// The metadata an AWS `GetSecretValue` or `GetParameter` answer carries next to the value.
/// Boxed in [`Fetched`] and the cache entry, so an entry of another backend pays one pointer.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsMetadata {
    pub arn: String,
    /// The service's own name for the secret or parameter.
    pub name: String,
    pub shape: ValueShape,
}

/// How the service holds the value.
#[derive(Clone, PartialEq, Eq)]
pub enum ValueShape {
    /// Secrets Manager `SecretString`.
    SecretString,
    /// Secrets Manager `SecretBinary`.
    SecretBinary,
    /// A Parameter Store parameter: its `Type` (String, StringList, SecureString) and `DataType`.
    Parameter { kind: String, data_type: String },
}

impl AwsMetadata {
    /// Bytes it holds, for the cache's weigher.
    pub fn weight(&self) -> usize {
        let shape = match &self.shape {
            ValueShape::Parameter { kind, data_type } => kind.len() + data_type.len(),
            _ => 0,
        };
        std::mem::size_of::<Self>() + self.arn.len() + self.name.len() + shape
    }
}

/// Names and ARNs are not secret, but stay out of logs with the rest of an entry.
impl std::fmt::Debug for AwsMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AwsMetadata { .. }")
    }
}

/// A listing entry: metadata only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The name within the backend (no prefix).
    pub name: String,
    pub version_id: String,
    pub updated_at: Option<SystemTime>,
}

/// Which versions of a secret a backend has, without their values: what change detection polls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionState {
    /// The current version's id; None when the secret does not exist (any more).
    pub current: Option<String>,
    /// A version staged to become current (Secrets Manager's AWSPENDING), if any.
    pub pending: Option<String>,
}

/// A version a backend has just written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub version_id: String,
    pub created_at: Option<SystemTime>,
}

/// What went wrong in a backend. Messages name secrets and causes, never values.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// The backend refused the agent itself (its credentials or key), not the caller.
    #[error("{0}")]
    AgentDenied(String),
    /// AWS refused the IAM role the caller reads under (`[[role]]` in the policy): the
    /// caller's `PERMISSION_DENIED`. Never served stale over: IAM said no to this workload.
    #[error("{0}")]
    RoleDenied(String),
    /// Worth retrying later: the backend could not be reached or is overloaded.
    #[error("{0}")]
    Unavailable(String),
    /// The agent's own rate limit (or the backend's throttling) held the call back too long.
    #[error("{0}")]
    Throttled(String),
    #[error("{0}")]
    Unsupported(String),
    /// Stored data that cannot be read back: corruption, tampering, a wrong master key.
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Internal(String),
}

impl BackendError {
    /// Worth serving a stale value over, and worth retrying.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Throttled(_))
    }

    /// Worth serving a cached value over, up to `cache.max_stale`: the failure says nothing
    /// about the secret. Besides transient failures, that is the agent's own credentials being
    /// refused (a revoked or expired Vault token, an AWS role whose session lapsed): callers keep
    /// their values while the agent is fixed, and `FAILED_PRECONDITION` follows after max_stale.
    /// Not retried, though: the same credentials would be refused again.
    pub fn serves_stale(&self) -> bool {
        self.is_transient() || matches!(self, Self::AgentDenied(_))
    }
}

/// An error and its sources, `: `-separated: what a transport failure says, for messages.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A place secrets are read from and written to.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    fn kind(&self) -> BackendKind;

    /// Reads the version the reference selects (its `#key`, if any, is the caller's business).
    async fn fetch(&self, reference: &SecretRef) -> Result<Fetched, BackendError>;

    /// The cache key for a reference, when the backend knows a better one than the reference
    /// itself: several spellings of one secret (a name, its ARN, a partial ARN) map to one key,
    /// so they share one entry and one fetch. The key is also what gets fetched.
    fn cache_key(&self, _reference: &SecretRef) -> Option<SecretRef> {
        None
    }

    /// Reads many at once; one result per reference, in order. Backends with a batch call
    /// (Parameter Store's GetParameters, Secrets Manager's BatchGetSecretValue) override it.
    async fn fetch_many(&self, references: &[SecretRef]) -> Vec<Result<Fetched, BackendError>> {
        futures::future::join_all(references.iter().map(|r| self.fetch(r))).await
    }

    /// The versions of a secret, by the cheapest call the backend has. Change detection calls
    /// this once per interval per watched secret. The default reads the value, which works
    /// everywhere; backends with a metadata call override it.
    async fn versions(&self, reference: &SecretRef) -> Result<VersionState, BackendError> {
        match self.fetch(reference).await {
            Ok(fetched) => Ok(VersionState {
                current: Some(fetched.version_id),
                pending: None,
            }),
            Err(BackendError::NotFound(_)) => Ok(VersionState::default()),
            Err(e) => Err(e),
        }
    }

    /// Whether `versions` can report a pending version (Secrets Manager's AWSPENDING). When it
    /// cannot, a watch poller woken by a change event reads the secret (the event dropped its
    /// cached value, so the next reader would read it anyway) and compares version ids, saving
    /// the metadata call: one call per host per change instead of two.
    fn has_pending_versions(&self) -> bool {
        false
    }

    /// Starts a rotation the backend runs itself (Secrets Manager with a rotation Lambda).
    /// Returns false when the secret has none, and the agent then rotates it with `rotate`.
    async fn start_managed_rotation(&self, _name: &str) -> Result<bool, BackendError> {
        Ok(false)
    }

    /// Makes `value` the new current version as a rotation. The default writes it as `put`
    /// does; Secrets Manager stages it (AWSPENDING) before moving AWSCURRENT to it.
    async fn rotate(&self, name: &str, value: SecretValue) -> Result<Written, BackendError> {
        self.put(name, value).await
    }

    /// The same backend reading and writing with `credentials` (an assumed IAM role's) instead
    /// of the agent's own, sharing this backend's rate limits. None: the backend has no notion
    /// of IAM roles (local, vault), and callers read it as the agent.
    fn under_role(
        &self,
        _credentials: aws_credential_types::provider::SharedCredentialsProvider,
    ) -> Option<Arc<dyn Backend>> {
        None
    }

    /// Lists current secrets whose names start with `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError>;

    /// Writes `value` as the new current version of the named secret.
    async fn put(&self, name: &str, value: SecretValue) -> Result<Written, BackendError>;

    /// The circuit breakers of the services this backend calls (one per `CallGuard`), for
    /// metrics. Backends that call no remote service have none.
    fn circuits(&self) -> Vec<(&'static str, guard::CircuitState)> {
        Vec::new()
    }
}

/// A backend as configured: the backend and how long its values stay fresh in the cache.
#[derive(Clone)]
pub struct Configured {
    pub backend: Arc<dyn Backend>,
    pub ttl: Duration,
}

/// The configured backends, by reference prefix, and the IAM role sessions the AWS ones read
/// under for callers mapped to a role.
#[derive(Clone, Default)]
pub struct Backends {
    /// In registry order; a handful at most, so a scan beats a map.
    by_kind: Vec<(BackendKind, Configured)>,
    /// Dev mode: the backends it left off, and why.
    off: Vec<(BackendKind, String)>,
    roles: Option<Arc<RoleSessions>>,
}

impl Backends {
    pub fn insert(&mut self, backend: Arc<dyn Backend>, ttl: Duration) {
        let kind = backend.kind();
        let configured = Configured { backend, ttl };
        match self.by_kind.binary_search_by(|(k, _)| k.cmp(&kind)) {
            Ok(i) => self.by_kind[i].1 = configured,
            Err(i) => self.by_kind.insert(i, (kind, configured)),
        }
    }

    /// Records that dev mode left `kind` off, and why (`Config::dev_off`).
    pub fn off(&mut self, kind: BackendKind, why: String) {
        self.off.push((kind, why));
    }

    /// Why dev mode left `kind` off, if it did.
    pub fn why_off(&self, kind: BackendKind) -> Option<&str> {
        self.off
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, why)| why.as_str())
    }

    /// Lets callers mapped to an IAM role read the AWS backends under it.
    pub fn with_roles(mut self, roles: Arc<RoleSessions>) -> Self {
        self.roles = Some(roles);
        self
    }

    pub fn roles(&self) -> Option<&Arc<RoleSessions>> {
        self.roles.as_ref()
    }

    /// The backend as the agent itself reads it.
    pub fn get(&self, kind: BackendKind) -> Option<&Configured> {
        self.by_kind
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, configured)| configured)
    }

    /// The backend as a read made `as` this role sees it (the agent's own, for None). None when
    /// the kind is not configured, or a role is asked of a backend that cannot take one, or no
    /// role sessions are set up: never the agent's credentials in place of a role's.
    pub fn resolve(
        &self,
        kind: BackendKind,
        role: Option<&Arc<AssumedRole>>,
    ) -> Option<Configured> {
        let base = self.get(kind)?;
        let Some(role) = role else {
            return Some(base.clone());
        };
        let backend = self.roles.as_ref()?.backend(role, &base.backend)?;
        Some(Configured {
            backend,
            ttl: base.ttl,
        })
    }

    pub fn kinds(&self) -> impl Iterator<Item = BackendKind> + '_ {
        self.by_kind.iter().map(|(kind, _)| *kind)
    }

    pub fn iter(&self) -> impl Iterator<Item = (BackendKind, &Configured)> + '_ {
        self.by_kind
            .iter()
            .map(|(kind, configured)| (*kind, configured))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_retried_and_what_is_served_stale_over() {
        let all = [
            BackendError::NotFound(String::new()),
            BackendError::InvalidArgument(String::new()),
            BackendError::AgentDenied(String::new()),
            BackendError::RoleDenied(String::new()),
            BackendError::Unavailable(String::new()),
            BackendError::Throttled(String::new()),
            BackendError::Unsupported(String::new()),
            BackendError::Corrupt(String::new()),
            BackendError::Internal(String::new()),
        ];
        let kinds = |f: fn(&BackendError) -> bool| {
            all.iter()
                .filter(|e| f(e))
                .map(|e| format!("{e:?}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            kinds(BackendError::is_transient),
            ["Unavailable(\"\")", "Throttled(\"\")"]
        );
        assert_eq!(
            kinds(BackendError::serves_stale),
            ["AgentDenied(\"\")", "Unavailable(\"\")", "Throttled(\"\")"]
        );
    }
}
