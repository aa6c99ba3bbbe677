//! An AWS backend as one role session reads it.

use std::sync::{atomic::Ordering, Arc};

use async_trait::async_trait;

use super::RoleSession;
use crate::{
    backend::{Backend, BackendError, Fetched, Listed, VersionState, Written},
    reference::{BackendKind, SecretRef},
    secret::SecretValue,
};

/// An AWS backend under a role: every call first makes sure the session has credentials (so
/// STS refusing is `RoleDenied` and STS down is `Unavailable`, each naming the role), then goes
/// to the session's own client; AWS refusing the role is `RoleDenied` too.
pub(super) struct RoleBackend {
    pub(super) session: Arc<RoleSession>,
    pub(super) inner: Arc<dyn Backend>,
}

impl RoleBackend {
    async fn ready(&self) -> Result<(), BackendError> {
        self.session.credentials().await.map(|_| ())
    }

    fn counted<T>(&self, result: Result<T, BackendError>) -> Result<T, BackendError> {
        let counters = &self.session.counters;
        counters.backend_calls.fetch_add(1, Ordering::Relaxed);
        match result {
            Err(e) => {
                if !matches!(e, BackendError::NotFound(_)) {
                    counters.backend_errors.fetch_add(1, Ordering::Relaxed);
                }
                Err(self.denied(e))
            }
            ok => ok,
        }
    }

    fn denied(&self, error: BackendError) -> BackendError {
        match error {
            BackendError::AgentDenied(m) => BackendError::RoleDenied(format!(
                "AWS refused role {}: {}",
                self.session.role,
                m.replace("refused the agent's credentials", "refused the role")
            )),
            other => other,
        }
    }
}

#[async_trait]
impl Backend for RoleBackend {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn cache_key(&self, reference: &SecretRef) -> Option<SecretRef> {
        self.inner.cache_key(reference)
    }

    async fn fetch(&self, reference: &SecretRef) -> Result<Fetched, BackendError> {
        self.ready().await?;
        let result = self.inner.fetch(reference).await;
        self.counted(result)
    }

    async fn fetch_many(&self, references: &[SecretRef]) -> Vec<Result<Fetched, BackendError>> {
        if let Err(e) = self.ready().await {
            return references.iter().map(|_| Err(e.clone())).collect();
        }
        let results = self.inner.fetch_many(references).await;
        // One batch is one call (or a few): counted once, as failed if any item failed.
        let counters = &self.session.counters;
        counters.backend_calls.fetch_add(1, Ordering::Relaxed);
        if results
            .iter()
            .any(|r| matches!(r, Err(e) if !matches!(e, BackendError::NotFound(_))))
        {
            counters.backend_errors.fetch_add(1, Ordering::Relaxed);
        }
        results
            .into_iter()
            .map(|r| r.map_err(|e| self.denied(e)))
            .collect()
    }

    fn has_pending_versions(&self) -> bool {
        self.inner.has_pending_versions()
    }

    async fn versions(&self, reference: &SecretRef) -> Result<VersionState, BackendError> {
        self.ready().await?;
        let result = self.inner.versions(reference).await;
        self.counted(result)
    }

    async fn start_managed_rotation(&self, name: &str) -> Result<bool, BackendError> {
        self.ready().await?;
        let result = self.inner.start_managed_rotation(name).await;
        self.counted(result)
    }

    async fn rotate(&self, name: &str, value: SecretValue) -> Result<Written, BackendError> {
        self.ready().await?;
        let result = self.inner.rotate(name, value).await;
        self.counted(result)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        self.ready().await?;
        let result = self.inner.list(prefix).await;
        self.counted(result)
    }

    async fn put(&self, name: &str, value: SecretValue) -> Result<Written, BackendError> {
        self.ready().await?;
        let result = self.inner.put(name, value).await;
        self.counted(result)
    }
}
