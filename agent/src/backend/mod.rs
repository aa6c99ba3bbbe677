//! Backends: where secret values live. Each one implements [`Backend`]; the composition root
//! (`app.rs`) builds the configured ones into a [`Backends`] table keyed by reference prefix.
//!
//! To add one: a file here, a variant in `config::BackendConfig`, an arm in `app::build_backends`,
//! a section in the README. ARCHITECTURE.md has the recipe.

pub mod local;
pub mod memory;

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
}

/// A listing entry: metadata only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The name within the backend (no prefix).
    pub name: String,
    pub version_id: String,
    pub updated_at: Option<SystemTime>,
}

/// A version a backend has just written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub version_id: String,
    pub created_at: Option<SystemTime>,
}

/// What went wrong in a backend. Messages name secrets and causes, never values.
#[derive(Debug, thiserror::Error)]
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
    #[error("{0}")]
    Unsupported(String),
    /// Stored data that cannot be read back: corruption, tampering, a wrong master key.
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Internal(String),
}

/// A place secrets are read from and written to.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    fn kind(&self) -> BackendKind;

    /// Reads the version the reference selects (its `#key`, if any, is the caller's business).
    async fn fetch(&self, reference: &SecretRef) -> Result<Fetched, BackendError>;

    /// Lists current secrets whose names start with `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError>;

    /// Writes `value` as the new current version of the named secret.
    async fn put(&self, name: &str, value: SecretValue) -> Result<Written, BackendError>;
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
}
