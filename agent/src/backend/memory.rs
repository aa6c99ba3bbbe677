//! An in-memory backend: the fake behind the `Backend` trait that unit tests use. It counts
//! fetches, can be made to fail, and can hold fetches until released, so tests can observe
//! coalescing and stale serving without a real store.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::SystemTime,
};

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::{Backend, BackendError, Fetched, Listed, Written};
use crate::{
    reference::{BackendKind, SecretRef, Selector},
    secret::SecretValue,
};

#[derive(Clone)]
pub(crate) struct MemoryBackend {
    kind: BackendKind,
    inner: Arc<Inner>,
}

struct Inner {
    secrets: Mutex<BTreeMap<String, Vec<SecretValue>>>,
    fetches: AtomicU64,
    unavailable: AtomicBool,
    // When set, each fetch waits for a permit: tests release them to control timing.
    gate: Mutex<Option<Arc<Semaphore>>>,
}

impl MemoryBackend {
    pub(crate) fn new(kind: BackendKind) -> Self {
        Self {
            kind,
            inner: Arc::new(Inner {
                secrets: Mutex::new(BTreeMap::new()),
                fetches: AtomicU64::new(0),
                unavailable: AtomicBool::new(false),
                gate: Mutex::new(None),
            }),
        }
    }

    pub(crate) fn insert(&self, name: &str, value: &[u8]) {
        self.inner
            .secrets
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .push(SecretValue::from_slice(value));
    }

    pub(crate) fn fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::SeqCst)
    }

    pub(crate) fn set_unavailable(&self, unavailable: bool) {
        self.inner.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Makes fetches wait until the returned semaphore gets permits.
    pub(crate) fn hold_fetches(&self) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        *self.inner.gate.lock().unwrap() = Some(Arc::clone(&gate));
        gate
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    async fn fetch(&self, reference: &SecretRef) -> Result<Fetched, BackendError> {
        self.inner.fetches.fetch_add(1, Ordering::SeqCst);
        let gate = self.inner.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.acquire().await.expect("gate open").forget();
        }
        if self.inner.unavailable.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable("memory backend is down".into()));
        }
        let secrets = self.inner.secrets.lock().unwrap();
        let versions = secrets
            .get(reference.name())
            .ok_or_else(|| BackendError::NotFound(format!("secret {reference} not found")))?;
        let index = match reference.selector() {
            None => versions.len() - 1,
            Some(Selector::Version(v)) => v
                .parse::<usize>()
                .ok()
                .and_then(|v| v.checked_sub(1))
                .filter(|i| *i < versions.len())
                .ok_or_else(|| BackendError::NotFound(format!("secret {reference} not found")))?,
            Some(other) => {
                return Err(BackendError::InvalidArgument(format!(
                    "no {other} selector here"
                )))
            }
        };
        Ok(Fetched {
            value: versions[index].clone(),
            version_id: (index + 1).to_string(),
            stages: Vec::new(),
            created_at: None,
            canonical_name: None,
            alias: None,
            aws: None,
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackendError> {
        let secrets = self.inner.secrets.lock().unwrap();
        Ok(secrets
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, versions)| Listed {
                name: name.clone(),
                version_id: versions.len().to_string(),
                updated_at: None,
            })
            .collect())
    }

    async fn put(&self, name: &str, value: SecretValue) -> Result<Written, BackendError> {
        let mut secrets = self.inner.secrets.lock().unwrap();
        let versions = secrets.entry(name.to_owned()).or_default();
        versions.push(value);
        Ok(Written {
            version_id: versions.len().to_string(),
            created_at: Some(SystemTime::now()),
        })
    }
}
