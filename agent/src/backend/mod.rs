//! Backends: where secret values live. Each one implements [`Backend`]; the composition root
//! (`app.rs`) builds the configured ones into a [`Backends`] table keyed by reference prefix.
//!
//! To add one: a file here, a variant in `config::BackendConfig`, an arm in `app::build_backends`,
//! a section in the README. ARCHITECTURE.md has the recipe.

pub mod aws;
pub mod guard;
pub mod local;
pub mod memory;
pub mod vault;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;

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

/// The configured backends, by reference prefix.
#[derive(Clone, Default)]
pub struct Backends(BTreeMap<BackendKind, Configured>);

impl Backends {
    pub fn insert(&mut self, backend: Arc<dyn Backend>, ttl: Duration) {
        self.0.insert(backend.kind(), Configured { backend, ttl });
    }

    pub fn get(&self, kind: BackendKind) -> Option<&Configured> {
        self.0.get(&kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = BackendKind> + '_ {
        self.0.keys().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (BackendKind, &Configured)> + '_ {
        self.0.iter().map(|(kind, configured)| (*kind, configured))
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
